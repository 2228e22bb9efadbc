/* window.c -- hot windows: every windowed table of store/tables.h, maintained
 * by one piece of code from the table definitions.
 *
 * Per table, the open windows are a list, newest first (records nearly
 * always hit the newest, out-of-order ones a step or two back). Per window, a
 * map from group key to group, and an arena holding groups, keys and LATEST
 * strings: a window that closes is freed in one go. COUNT_DISTINCT sets hold
 * ids of values interned once per record (server/intern.h). Groups touched
 * since the last commit sit on a dirty list; the commit writes each once,
 * however many records touched it, which is what lets ingest outrun LMDB's
 * put rate by an order of magnitude.
 *
 * Lateness (SPEC §5): a record is late for a table when its window has
 * window_end + grace <= stream time. Retention: a window is purged from
 * LMDB once it is closed and window_end + retention <= stream time, and
 * never while window_end + retention is still ahead of the wall clock. */
#include <stdlib.h>
#include <string.h>

#include "window.h"

struct gd_hot_group {
    gd_hot_group *next_dirty;
    gd_hot_window *window;
    gd_str key;
    bool dirty;
    gd_slot slots[];
};

struct gd_hot_window {
    int64_t start;
    bool partial; /* the store may hold groups of it that memory does not */
    gd_map groups;
    gd_arena arena;
    gd_hot_window *next;
};

enum { PURGE_ROWS_PER_COMMIT = 20000, DAY_MS = 24 * 3600 * 1000 };

static bool owns(const gd_windows *w, size_t i)
{
    return gd_tables[i].kind == GD_TABLE_WINDOWED && (w->mask >> i & 1);
}

/* The tables whose rows give the enriched record its figures (SPEC §4). */
#define HOURLY_STATS "gaming_hourly_player_game_stats"
#define ACTIVE_PLAYERS "gaming_active_players_5min"

static const gd_tabledef *table_named(const char *name) { return gd_table_find(name, strlen(name)); }

uint32_t gd_windows_figure_tables(void)
{
    return 1u << gd_table_index(table_named(HOURLY_STATS)) |
           1u << gd_table_index(table_named(ACTIVE_PLAYERS));
}

void gd_windows_init(gd_windows *w, const gd_config *cfg, uint32_t mask)
{
    memset(w, 0, sizeof *w);
    w->mask = mask;
    gd_dict_init(&w->dict);
    w->retention_ms = cfg->retention_ms;
    w->hourly_stats = table_named(HOURLY_STATS);
    w->active_players = table_named(ACTIVE_PLAYERS);
    for (size_t i = 0; i < gd_table_count; i++) {
        const gd_tabledef *def = &gd_tables[i];
        w->tables[i].def = def;
        w->tables[i].newest_start = INT64_MIN;
        /* ksqlDB's default: window size plus grace is 24 hours */
        w->tables[i].grace_ms = cfg->grace_ms >= 0 ? cfg->grace_ms
                                : def->window_ms < DAY_MS ? DAY_MS - def->window_ms : 0;
    }
}

static void release_set(gd_dict *dict, gd_idset *set)
{
    if (!set) return;
    for (uint32_t i = 0; i < set->cap; i++)
        if (set->slots[i]) gd_dict_unref(dict, set->slots[i] - 1);
    gd_idset_free(set);
}

/* Lets go of a group's distinct sets and zeroes its slots. */
static void release_slots(gd_windows *w, const gd_tabledef *def, gd_slot *slots)
{
    for (int c = 0; c < def->ncols; c++)
        if (def->cols[c].agg == GD_AGG_COUNT_DISTINCT) release_set(&w->dict, slots[c].x.set);
    memset(slots, 0, sizeof(gd_slot) * def->ncols);
}

static void free_window(const gd_tabledef *def, gd_hot_window *win, gd_dict *dict)
{
    for (size_t i = 0; i < win->groups.cap; i++) {
        if (!gd_map_live(&win->groups.slots[i])) continue;
        gd_hot_group *g = win->groups.slots[i].val;
        for (int c = 0; c < def->ncols; c++)
            if (def->cols[c].agg == GD_AGG_COUNT_DISTINCT) release_set(dict, g->slots[c].x.set);
    }
    gd_map_free(&win->groups);
    gd_arena_free(&win->arena);
    free(win);
}

void gd_windows_free(gd_windows *w)
{
    for (size_t i = 0; i < gd_table_count; i++) {
        gd_hot_table *t = &w->tables[i];
        while (t->windows) {
            gd_hot_window *next = t->windows->next;
            free_window(t->def, t->windows, &w->dict);
            t->windows = next;
        }
    }
    gd_dict_free(&w->dict);
    gd_buf_free(&w->key);
    gd_buf_free(&w->row);
    gd_buf_free(&w->sets);
}

static gd_hot_window *find_window(gd_hot_table *t, int64_t start, bool create)
{
    gd_hot_window **link = &t->windows;
    while (*link && (*link)->start > start) link = &(*link)->next;
    if (*link && (*link)->start == start) return *link;
    if (!create) return NULL;
    gd_hot_window *win = calloc(1, sizeof *win);
    if (!win) {
        gd_error("out of memory opening a window");
        abort();
    }
    win->start = start;
    win->partial = start <= t->newest_start; /* an older window may have left memory */
    if (start > t->newest_start) t->newest_start = start;
    gd_arena_init(&win->arena);
    gd_map_init(&win->groups, &win->arena);
    win->next = *link;
    *link = win;
    return win;
}

static gd_hot_group *find_group(gd_hot_table *t, gd_hot_window *win, gd_str key, bool create)
{
    if (!create) return gd_map_get(&win->groups, key);
    bool created;
    gd_map_slot *s = gd_map_upsert(&win->groups, key, &created);
    if (!created) return s->val;
    size_t size = sizeof(gd_hot_group) + sizeof(gd_slot) * t->def->ncols;
    gd_hot_group *g = gd_arena_alloc(&win->arena, size);
    memset(g, 0, size);
    g->window = win;
    g->key = gd_arena_strdup(&win->arena, key); /* slots move when the map grows */
    s->val = g;
    return g;
}

/* A stored row and its sets (apart, or inline in rows written before they
 * were split off) into slots. */
static int decode_stored(gd_windows *w, const gd_tabledef *def, gd_store *s, MDB_txn *txn, gd_str key, gd_str head,
                         gd_slot *slots, gd_arena *arena)
{
    gd_str sets = GD_STR_NULL;
    if (gd_table_has_sets(def) && gd_store_sets_get(s, txn, def, key, &sets) != GD_OK) sets = GD_STR_NULL;
    return gd_row_decode_full(def, head, sets, slots, arena, &w->dict);
}

/* The group of key in win for an update: in memory, else read back from the
 * store when the window may have left memory, else new. */
static gd_hot_group *group_for_update(gd_windows *w, gd_hot_table *t, gd_hot_window *win,
                                      gd_str key, gd_store *s, MDB_txn *txn)
{
    gd_hot_group *g = find_group(t, win, key, false);
    if (g) return g;
    g = find_group(t, win, key, true);
    if (!win->partial) return g;
    gd_rowkey_encode(&w->row, win->start, key);
    gd_str val;
    int rc = gd_store_row_get(s, txn, t->def, (gd_str){w->row.p, (uint32_t)w->row.len}, &val);
    if (rc == GD_OK && decode_stored(w, t->def, s, txn, (gd_str){w->row.p, (uint32_t)w->row.len}, val, g->slots,
                                     &win->arena)) {
        gd_error("%s: a stored row does not decode; its group starts over", t->def->name);
        release_slots(w, t->def, g->slots);
    }
    return g;
}

static void mark_dirty(gd_hot_table *t, gd_hot_group *g)
{
    if (g->dirty) return;
    g->dirty = true;
    g->next_dirty = t->dirty;
    t->dirty = g;
    t->dirty_count++;
}

/* Ids of the distinct values of one record, interned at most once each. */
typedef struct {
    uint32_t id[GD_F_COUNT];
    bool have[GD_F_COUNT];
} record_ids;

static uint32_t value_id(gd_dict *dict, record_ids *ids, gd_field f, gd_str v)
{
    if (!ids->have[f]) {
        ids->id[f] = gd_dict_intern(dict, v);
        ids->have[f] = true;
    }
    return ids->id[f];
}

static void update_slot(const gd_coldef *c, gd_slot *s, gd_value v, gd_arena *arena,
                        gd_dict *dict, record_ids *ids)
{
    switch (c->agg) {
    case GD_AGG_COUNT_STAR: s->n++; break;
    case GD_AGG_COUNT:
        if (v.t != GD_V_NULL) s->n++;
        break;
    case GD_AGG_SUM_INT:
        if (v.t == GD_V_INT) s->v.i += v.i;
        break;
    case GD_AGG_SUM_DBL:
        if (v.t == GD_V_DBL) s->v.d += v.d;
        else if (v.t == GD_V_INT) s->v.d += (double)v.i;
        break;
    case GD_AGG_AVG:
        if (v.t == GD_V_NULL || v.t == GD_V_STR) break;
        s->n++;
        s->v.d += v.t == GD_V_INT ? (double)v.i : v.d;
        break;
    case GD_AGG_MAX_INT:
        if (v.t != GD_V_INT) break;
        if (!s->n || v.i > s->v.i) s->v.i = v.i;
        s->n = 1;
        break;
    case GD_AGG_COUNT_DISTINCT: {
        if (v.t != GD_V_STR) break;
        if (!s->x.set) {
            s->x.set = gd_arena_alloc(arena, sizeof(gd_idset));
            memset(s->x.set, 0, sizeof(gd_idset));
        }
        uint32_t id = value_id(dict, ids, c->field, v.s);
        if (gd_idset_add(s->x.set, id)) {
            gd_dict_ref(dict, id);
            s->n++;
        }
        break;
    }
    case GD_AGG_LATEST:
        if (v.t == GD_V_STR && !gd_str_eq(s->x.s, v.s)) s->x.s = gd_arena_strdup(arena, v.s);
        break;
    case GD_AGG_PERCENT: break; /* derived when read */
    }
}

/* Whether e goes into table def: its filter holds and no key column is null
 * (a group whose key is null is skipped). */
static bool belongs(const gd_tabledef *def, const gd_enriched *e)
{
    if (def->purchases_only && !e->has_purchase) return false;
    for (int k = 0; k < def->nkeys; k++)
        if (gd_enriched_field(e, def->keys[k].field).t != GD_V_STR) return false;
    return true;
}

/* The group key of e in table def (which e belongs to) into b. */
static void build_group_key(const gd_tabledef *def, const gd_enriched *e, gd_buf *b)
{
    gd_buf_clear(b);
    for (int k = 0; k < def->nkeys; k++)
        gd_groupkey_append(b, gd_enriched_field(e, def->keys[k].field).s);
}

static bool is_late(const gd_hot_table *t, int64_t ts, int64_t stream_time)
{
    int64_t start = gd_window_start(ts, t->def->window_ms);
    return start + t->def->window_ms + t->grace_ms <= stream_time;
}

bool gd_windows_late(const gd_windows *w, const gd_enriched *e, int64_t stream_time)
{
    for (size_t i = 0; i < gd_table_count; i++)
        if (owns(w, i) && belongs(w->tables[i].def, e) &&
            is_late(&w->tables[i], e->a->activity_timestamp, stream_time))
            return true;
    return false;
}

/* The slots of (window, group) as they stand: in memory, else in LMDB. */
static bool lookup_slots(gd_hot_table *t, int64_t start, gd_str key,
                         gd_slot *out, gd_store *s, MDB_txn *txn)
{
    gd_hot_window *win = find_window(t, start, false);
    gd_hot_group *g = win ? find_group(t, win, key, false) : NULL;
    if (g) {
        memcpy(out, g->slots, sizeof(gd_slot) * t->def->ncols);
        return true;
    }
    if (win && !win->partial) return false;
    gd_buf kb = {0};
    gd_rowkey_encode(&kb, start, key);
    gd_str val;
    bool found = gd_store_row_get(s, txn, t->def, (gd_str){kb.p, (uint32_t)kb.len}, &val) == GD_OK &&
                 gd_row_decode(t->def, val.p, val.len, out) == GD_OK;
    gd_buf_free(&kb);
    return found;
}

static void set_figures(gd_windows *w, gd_enriched *e, const gd_tabledef *def, const gd_slot *slots)
{
    if (def == w->hourly_stats) {
        e->total_sessions_1h = slots ? (gd_int){true, gd_row_column(def, slots, 0).i} : (gd_int){0};
        gd_value avg = slots ? gd_row_column(def, slots, 2) : (gd_value){.t = GD_V_NULL};
        e->avg_score_1h = avg.t == GD_V_DBL ? (gd_dbl){true, avg.d} : (gd_dbl){0};
    } else {
        e->active_players_count = slots ? (gd_int){true, gd_row_column(def, slots, 1).i} : (gd_int){0};
    }
}

/* The group's row after a change, to the table's push stream (rows HAVING
 * hides are no event). */
static void publish_row(gd_windows *w, size_t table_index, const gd_hot_group *g, uint64_t seq)
{
    const gd_tabledef *def = &gd_tables[table_index];
    unsigned stream = gd_table_stream(table_index);
    if (!w->hub || !gd_row_visible(def, g->slots) || !gd_hub_wanted(w->hub, stream, seq)) return;
    gd_str keys[GD_MAX_KEYS];
    if (gd_groupkey_split(g->key.p, g->key.len, def->nkeys, keys)) return;
    gd_buf_clear(&w->row);
    gd_row_render(def, keys, g->window->start, g->slots, &w->row);
    gd_hub_publish(w->hub, stream, seq, w->row.p, w->row.len);
}

bool gd_windows_apply(gd_windows *w, gd_enriched *e, int64_t stream_time, gd_store *s,
                      MDB_txn *txn)
{
    bool late_any = false;
    int64_t ts = e->a->activity_timestamp;
    record_ids ids;
    memset(ids.have, 0, sizeof ids.have);
    const gd_tabledef *hs = w->hourly_stats, *ap = w->active_players;
    for (size_t i = 0; i < gd_table_count; i++) {
        gd_hot_table *t = &w->tables[i];
        const gd_tabledef *def = t->def;
        if (!owns(w, i) || !belongs(def, e)) continue;
        build_group_key(def, e, &w->key);
        gd_str key = {w->key.p, (uint32_t)w->key.len};
        int64_t start = gd_window_start(ts, def->window_ms);
        bool figures = def == hs || def == ap;
        if (is_late(t, ts, stream_time)) {
            late_any = true;
            if (figures) {
                gd_slot *slots = w->figures[def == hs ? 0 : 1];
                set_figures(w, e, def, lookup_slots(t, start, key, slots, s, txn) ? slots : NULL);
            }
            continue;
        }
        gd_hot_window *win = find_window(t, start, true);
        gd_hot_group *g = group_for_update(w, t, win, key, s, txn);
        for (int c = 0; c < def->ncols; c++)
            update_slot(&def->cols[c], &g->slots[c], gd_enriched_field(e, def->cols[c].field),
                        &win->arena, &w->dict, &ids);
        mark_dirty(t, g);
        if (figures) set_figures(w, e, def, g->slots);
        publish_row(w, i, g, e->seq);
    }
    return late_any;
}

static int write_dirty(gd_windows *w, gd_hot_table *t, gd_store *s, MDB_txn *txn)
{
    for (gd_hot_group *g = t->dirty; g; g = g->next_dirty) {
        g->dirty = false;
        gd_rowkey_encode(&w->key, g->window->start, g->key);
        bool sets = gd_table_has_sets(t->def);
        gd_row_encode(t->def, g->slots, &w->dict, &w->row, sets ? &w->sets : NULL);
        gd_str key = {w->key.p, (uint32_t)w->key.len};
        int rc = gd_store_row_put(s, txn, t->def, key, (gd_str){w->row.p, (uint32_t)w->row.len});
        if (!rc && sets) rc = gd_store_sets_put(s, txn, t->def, key, (gd_str){w->sets.p, (uint32_t)w->sets.len});
        if (rc == GD_EBADREC) { /* key longer than LMDB takes: in memory only */
            gd_warn("%s: group key of %zu bytes is too long to store", t->def->name, w->key.len);
            continue;
        }
        if (rc) return rc;
    }
    t->dirty = NULL;
    t->dirty_count = 0;
    return GD_OK;
}

/* How long past its end a window stays in memory: until its grace is over,
 * or GD_HOT_MS, whichever is shorter. */
static int64_t kept_ms(const gd_hot_table *t) { return t->grace_ms < GD_HOT_MS ? t->grace_ms : GD_HOT_MS; }

/* Windows past their time in memory leave it (they were just written). */
static void evict_cold(gd_hot_table *t, int64_t stream_time, gd_dict *dict)
{
    gd_hot_window **link = &t->windows;
    while (*link && (*link)->start + t->def->window_ms + kept_ms(t) > stream_time)
        link = &(*link)->next;
    while (*link) {
        gd_hot_window *win = *link;
        *link = win->next;
        free_window(t->def, win, dict);
    }
}

int gd_windows_flush(gd_windows *w, gd_store *s, MDB_txn *txn, int64_t stream_time, int64_t now_ms)
{
    /* retention counts from the stream time, but never from past the wall
     * clock: a record from the future must not age the present out */
    int64_t retention_time = stream_time < now_ms ? stream_time : now_ms;
    w->purge_pending = false;
    for (size_t i = 0; i < gd_table_count; i++) {
        gd_hot_table *t = &w->tables[i];
        if (!owns(w, i)) continue;
        int rc = write_dirty(w, t, s, txn);
        if (rc) return rc;
        if (stream_time == INT64_MIN) continue;
        evict_cold(t, stream_time, &w->dict);
        /* purge windows that are closed and past retention */
        int64_t size = t->def->window_ms;
        int64_t expired = retention_time - w->retention_ms - size + 1;
        int64_t closed = stream_time - t->grace_ms - size + 1;
        size_t deleted;
        rc = gd_store_purge(s, txn, t->def, expired < closed ? expired : closed,
                            PURGE_ROWS_PER_COMMIT, &deleted);
        if (rc) return rc;
        if (deleted == PURGE_ROWS_PER_COMMIT) w->purge_pending = true;
    }
    return GD_OK;
}

typedef struct {
    gd_windows *w;
    gd_hot_table *t;
    int rc;
    gd_store *s;
    MDB_txn *txn;
} load_ctx;

static int load_row(void *ctx, gd_str key, gd_str val)
{
    load_ctx *c = ctx;
    if (key.len < 8) return 0;
    gd_hot_window *win = find_window(c->t, gd_rowkey_window(key.p), true);
    gd_str gkey = {key.p + 8, key.len - 8};
    gd_hot_group *g = find_group(c->t, win, gkey, true);
    if (decode_stored(c->w, c->t->def, c->s, c->txn, key, val, g->slots, &win->arena)) {
        gd_error("%s: a stored row does not decode; its window is not restored", c->t->def->name);
        c->rc = GD_ERR;
        return 1;
    }
    return 0;
}

int gd_windows_load(gd_windows *w, gd_store *s, MDB_txn *txn, int64_t stream_time)
{
    if (stream_time == INT64_MIN) return GD_OK;
    for (size_t i = 0; i < gd_table_count; i++) {
        gd_hot_table *t = &w->tables[i];
        if (!owns(w, i)) continue;
        int64_t first_hot = gd_window_start(stream_time - t->def->window_ms - kept_ms(t) + 1,
                                            t->def->window_ms);
        gd_rowkey_encode(&w->key, first_hot, (gd_str){"", 0});
        load_ctx c = {w, t, GD_OK, s, txn};
        int rc = gd_store_scan(s, txn, t->def, (gd_str){w->key.p, (uint32_t)w->key.len}, load_row, &c);
        if (rc || c.rc) return rc ? rc : c.rc;
        /* no window after that of the stream time can have rows */
        int64_t newest = gd_window_start(stream_time, t->def->window_ms);
        if (newest > t->newest_start) t->newest_start = newest;
    }
    return GD_OK;
}

size_t gd_windows_memory(const gd_windows *w)
{
    size_t total = 0;
    for (size_t i = 0; i < gd_table_count; i++)
        for (const gd_hot_window *win = w->tables[i].windows; win; win = win->next)
            total += win->arena.used_bytes + win->groups.cap * sizeof(gd_map_slot);
    return total + w->dict.ids.cap * sizeof(gd_map_slot);
}
