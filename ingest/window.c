/* window.c -- hot windows: every windowed table of store/tables.h, maintained
 * by one piece of code from the table definitions.
 *
 * Per table, the open windows are a list, newest first (records nearly
 * always hit the newest, out-of-order ones a step or two back). Per window, a
 * map from group key to group, and an arena holding groups, keys, LATEST
 * strings and the lists of TOPK, COLLECT_LIST, ... (store/tables.h: each
 * bounded, grown by doubling): a window that closes is freed in one go. COUNT_DISTINCT sets hold
 * ids of values interned once per record (server/intern.h). Groups touched
 * since the last commit sit on a dirty list; the commit writes each once,
 * however many records touched it, which is what lets ingest outrun LMDB's
 * put rate by an order of magnitude.
 *
 * Lateness (SPEC §5): a record is late for a table when its window has
 * window_end + grace <= stream time. Retention: a window is purged from
 * LMDB once it is closed and window_end + retention <= stream time, and
 * never while window_end + retention is still ahead of the wall clock.
 *
 * A SESSION table keeps sessions instead (store/session.c): per group key
 * the list of its sessions that a record may still change, each on its own
 * allocation; merged and moved sessions leave row keys to delete, which the
 * commit deletes before it writes the dirty sessions. A session leaves
 * memory once closed (gd_sessions_close; EMIT FINAL publishes it then), so
 * no session a record can reach is ever only in LMDB; the purge spares
 * every session still in memory. */
#include <stdlib.h>
#include <string.h>

#include "window.h"

struct gd_hot_group {
    gd_hot_group *next_dirty;
    gd_hot_window *window;
    gd_str key;
    bool dirty;
    bool sets_stored; /* its distinct sets are in the store, apart from its row */
    gd_slot slots[];
};

struct gd_hot_window {
    int64_t start;
    bool partial; /* the store may hold groups of it that memory does not */
    bool written; /* some group of it was written at this flush */
    gd_map groups;
    gd_arena arena;
    gd_hot_window *next;
};

enum { PURGE_ROWS_PER_COMMIT = 20000 };

static bool owns(const gd_windows *w, size_t i) { return w->tables[i].def != NULL; }

bool gd_windows_maintains(const gd_windows *w, unsigned slot) { return slot < GD_MAX_TABLES && owns(w, slot); }

/* The figures of the enriched record (SPEC §4), bound to their tables'
 * columns by name. */
static const gd_figure figure_sources[GD_FIG_COUNT] = {
    [GD_FIG_SESSIONS] = {"gaming_hourly_player_game_stats", "total_sessions_1h", -1, -1},
    [GD_FIG_AVG_SCORE] = {"gaming_hourly_player_game_stats", "avg_score_1h", -1, -1},
    [GD_FIG_ACTIVE_PLAYERS] = {"gaming_active_players_5min", "active_players_count", -1, -1},
};

/* The enriched fields they fill (set_figures). */
static const gd_field figure_fields[GD_FIG_COUNT] = {
    [GD_FIG_SESSIONS] = GD_F_TOTAL_SESSIONS_1H,
    [GD_FIG_AVG_SCORE] = GD_F_AVG_SCORE_1H,
    [GD_FIG_ACTIVE_PLAYERS] = GD_F_ACTIVE_PLAYERS_COUNT,
};

/* A figure's table and column; false when the catalog has no such column
 * kept in a slot. */
static bool find_figure(const gd_catalog *cat, const gd_figure *f, int *slot, int *col)
{
    const gd_tabledef *t = gd_catalog_tabledef(cat, gd_str_c(f->table));
    if (!t) return false;
    *col = gd_table_col(t, f->column);
    *slot = (int)t->slot;
    return *col >= 0 && t->cols[*col].agg != GD_AGG_EXPR;
}

uint64_t gd_windows_figure_tables(const gd_catalog *cat)
{
    uint64_t mask = 0;
    for (int f = 0; f < GD_FIG_COUNT; f++) {
        int slot, col;
        if (find_figure(cat, &figure_sources[f], &slot, &col)) mask |= 1ULL << slot;
    }
    return mask;
}

typedef struct {
    bool (*reads)(gd_field f, void *ctx);
    void *ctx;
} field_visit;

static bool visit_column(const gd_expr *x, void *v)
{
    const field_visit *fv = v;
    return x->op == GD_E_COL && fv->reads((gd_field)x->index, fv->ctx);
}

static bool expr_reads(const gd_expr *x, field_visit *fv) { return x && gd_expr_any(x, visit_column, fv); }

/* A key or an aggregate's argument: a field, or an expression (field < 0). */
static bool field_or_expr_reads(int field, const gd_expr *x, field_visit *fv)
{
    return field >= 0 ? fv->reads((gd_field)field, fv->ctx) : expr_reads(x, fv);
}

bool gd_table_reads_any(const gd_tabledef *def, bool (*reads)(gd_field f, void *ctx), void *ctx)
{
    field_visit fv = {reads, ctx};
    if (expr_reads(def->where, &fv)) return true;
    for (int k = 0; k < def->nkeys; k++)
        if (field_or_expr_reads(def->keys[k].field, def->keys[k].expr, &fv)) return true;
    for (int c = 0; c < def->nslots; c++)
        if (field_or_expr_reads(def->cols[c].field, def->cols[c].arg, &fv) || expr_reads(def->cols[c].expr, &fv))
            return true;
    return false;
}

static bool is_figure(gd_field f, void *ctx)
{
    (void)ctx;
    for (int i = 0; i < GD_FIG_COUNT; i++)
        if (figure_fields[i] == f) return true;
    return false;
}

bool gd_table_reads_figures(const gd_tabledef *def) { return gd_table_reads_any(def, is_figure, NULL); }

static void bind_figures(gd_windows *w)
{
    for (int f = 0; f < GD_FIG_COUNT; f++) {
        gd_figure *fig = &w->figures[f];
        *fig = figure_sources[f];
        if (!find_figure(w->cat, fig, &fig->slot, &fig->col)) {
            fig->slot = fig->col = -1;
            gd_warn("the enriched record's %s comes from %s.%s, which is not a kept aggregate: it stays null",
                    fig->column, fig->table, fig->column);
        } else if (!owns(w, (size_t)fig->slot)) fig->slot = -1; /* another instance's */
    }
}

static void set_table(gd_windows *w, const gd_tabledef *def)
{
    gd_hot_table *t = &w->tables[def->slot];
    memset(t, 0, sizeof *t);
    t->def = def;
    t->newest_start = INT64_MIN;
    t->final_through = INT64_MIN;
    t->expired_before = INT64_MIN;
    t->grace_ms = gd_catalog_grace(w->cat, def);
    t->reads_figures = gd_table_reads_figures(def);
    t->oldest_open = INT64_MAX;
    if (def->session) gd_map_init(&t->sessions, NULL);
}

void gd_windows_init(gd_windows *w, const gd_config *cfg, const gd_catalog *cat, uint64_t mask)
{
    memset(w, 0, sizeof *w);
    w->cat = cat;
    gd_dict_init(&w->dict);
    gd_interner_init(&w->interner, &w->dict);
    gd_arena_init(&w->scratch);
    w->retention_ms = cfg->retention_ms;
    for (unsigned i = 0; i < GD_MAX_TABLES; i++) {
        const gd_catalog_entry *e = gd_catalog_table(cat, i);
        if (e && gd_table_aggregates(e->table) && !atomic_load(&e->terminated) && (mask >> i & 1))
            set_table(w, e->table);
    }
    bind_figures(w);
}

/* Lets go of a group's distinct sets and zeroes its slots. */
static void release_slots(gd_windows *w, const gd_tabledef *def, gd_slot *slots)
{
    gd_slots_release(def, slots, &w->dict);
    memset(slots, 0, sizeof(gd_slot) * def->nslots);
}

static void free_window(const gd_tabledef *def, gd_hot_window *win, gd_dict *dict)
{
    for (size_t i = 0; i < win->groups.cap; i++) {
        if (!gd_map_live(&win->groups.slots[i])) continue;
        gd_hot_group *g = win->groups.slots[i].val;
        gd_slots_release(def, g->slots, dict);
    }
    gd_map_free(&win->groups);
    gd_arena_free(&win->arena);
    free(win);
}

/* A session table's sessions: those in the groups' lists, and merged ones
 * still on the dirty list. */
static void free_sessions(gd_windows *w, gd_hot_table *t)
{
    for (size_t i = 0; i < t->sessions.cap; i++) {
        if (!gd_map_live(&t->sessions.slots[i])) continue;
        for (gd_session *s = t->sessions.slots[i].val, *next; s; s = next) {
            next = s->next;
            if (!s->dirty) gd_session_free(t->def, s, &w->dict);
            else s->merged = true; /* freed from the dirty list below */
        }
    }
    for (gd_session *s = t->dirty_sessions, *next; s; s = next) {
        next = s->next_dirty;
        gd_session_free(t->def, s, &w->dict);
    }
    gd_map_free(&t->sessions);
    gd_buf_free(&t->gone_rows);
}

static void free_windows(gd_windows *w, gd_hot_table *t)
{
    while (t->windows) {
        gd_hot_window *next = t->windows->next;
        free_window(t->def, t->windows, &w->dict);
        t->windows = next;
    }
    if (t->def->session) free_sessions(w, t);
}

void gd_windows_remove(gd_windows *w, unsigned slot)
{
    gd_hot_table *t = &w->tables[slot];
    if (!t->def) return;
    free_windows(w, t);
    memset(t, 0, sizeof *t);
    for (int f = 0; f < GD_FIG_COUNT; f++)
        if (w->figures[f].slot == (int)slot) w->figures[f].slot = -1;
}

void gd_windows_free(gd_windows *w)
{
    for (size_t i = 0; i < GD_MAX_TABLES; i++)
        if (owns(w, i)) free_windows(w, &w->tables[i]);
    gd_dict_free(&w->dict);
    gd_buf_free(&w->order);
    gd_interner_free(&w->interner);
    gd_buf_free(&w->key);
    gd_buf_free(&w->row);
    gd_buf_free(&w->sets);
    gd_buf_free(&w->text);
    gd_arena_free(&w->scratch);
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
    size_t size = sizeof(gd_hot_group) + sizeof(gd_slot) * t->def->nslots;
    gd_hot_group *g = gd_arena_alloc(&win->arena, size);
    memset(g, 0, size);
    g->window = win;
    g->key = gd_arena_strdup(&win->arena, key); /* slots move when the map grows */
    s->val = g;
    return g;
}

/* A stored row and its sets (apart, or inline in rows written before they
 * were split off) into slots; *sets_apart (if not NULL): they were apart. */
static int decode_stored(gd_windows *w, const gd_tabledef *def, gd_store *s, MDB_txn *txn, gd_str key, gd_str head,
                         gd_slot *slots, gd_arena *arena, bool *sets_apart)
{
    gd_str sets = GD_STR_NULL;
    if (gd_table_has_sets(def) && gd_store_sets_get(s, txn, def, key, &sets) != GD_OK) sets = GD_STR_NULL;
    if (sets_apart) *sets_apart = sets.p != NULL;
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
                                     &win->arena, &g->sets_stored)) {
        g->sets_stored = false;
        gd_error("%s: a stored row does not decode; its group starts over", t->def->name);
        release_slots(w, t->def, g->slots);
    }
    return g;
}

/* A row newly dirty in t: counted for its flush and for the batch bound. */
static void count_dirty(gd_windows *w, gd_hot_table *t)
{
    t->dirty_count++;
    /* one writer: a plain load and store, readable from the engine's thread */
    atomic_store_explicit(&w->dirty_rows, atomic_load_explicit(&w->dirty_rows, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void mark_dirty(gd_windows *w, gd_hot_table *t, gd_hot_group *g)
{
    if (g->dirty) return;
    g->dirty = true;
    g->next_dirty = t->dirty;
    t->dirty = g;
    count_dirty(w, t);
}

static gd_value enriched_column(const void *row, int index) { return gd_enriched_field(row, (gd_field)index); }

static gd_eval eval_on(const gd_enriched *e, gd_arena *scratch)
{
    return (gd_eval){.column = enriched_column, .row = e, .now_ms = e->processing_timestamp, .scratch = scratch};
}

/* A column's argument for this record. */
static gd_value argument(const gd_coldef *c, const gd_enriched *e, const gd_eval *ctx)
{
    if (c->field >= 0) return gd_enriched_field(e, (gd_field)c->field);
    return c->arg ? gd_expr_eval(c->arg, ctx) : (gd_value){.t = GD_V_NULL};
}

/* A key column's value for this record. */
static gd_value key_value(const gd_keydef *k, const gd_enriched *e, const gd_eval *ctx)
{
    return k->field >= 0 ? gd_enriched_field(e, (gd_field)k->field) : gd_expr_eval(k->expr, ctx);
}

/* Whether e goes into table def: its WHERE holds and no key column is null
 * (a group whose key is null is skipped). */
static bool belongs(const gd_tabledef *def, const gd_enriched *e, const gd_eval *ctx)
{
    if (def->where && !gd_expr_true(def->where, ctx)) return false;
    for (int k = 0; k < def->nkeys; k++)
        if (key_value(&def->keys[k], e, ctx).t == GD_V_NULL) return false;
    return true;
}

/* The group key of e in table def (which e belongs to) into key; text:
 * scratch for keys that are not strings. */
static void build_group_key(const gd_tabledef *def, const gd_enriched *e, const gd_eval *ctx, gd_buf *key,
                            gd_buf *text)
{
    gd_buf_clear(key);
    for (int k = 0; k < def->nkeys; k++) {
        gd_value v = key_value(&def->keys[k], e, ctx);
        if (v.t == GD_V_STR) {
            gd_groupkey_append(key, v.s);
            continue;
        }
        gd_buf_clear(text);
        gd_key_text(v, text);
        gd_groupkey_append(key, (gd_str){text->p, (uint32_t)text->len});
    }
}

bool gd_table_group_key(const gd_tabledef *def, const gd_enriched *e, gd_arena *scratch, gd_buf *key, gd_buf *text)
{
    gd_eval ctx = eval_on(e, scratch);
    if (!belongs(def, e, &ctx)) return false;
    build_group_key(def, e, &ctx, key, text);
    return true;
}

/* Whether the window at start is closed: its grace has passed. */
static bool window_closed(const gd_hot_table *t, int64_t start, int64_t stream_time)
{
    if (!t->def->window_ms) return false; /* one window for all time */
    return start + t->def->window_ms + t->grace_ms <= stream_time;
}

/* Whether a record at ts comes too late for some window it falls in (the
 * earliest, of a hopping table's). */
static bool is_late(const gd_hot_table *t, int64_t ts, int64_t stream_time)
{
    /* a session table's: the record's own session would be (whether it
     * joins a later one, only the sessions can tell: gd_windows_apply) */
    if (t->def->session) return ts + t->grace_ms < stream_time;
    return window_closed(t, gd_window_first(t->def, ts), stream_time);
}

bool gd_windows_late(const gd_windows *w, const gd_enriched *e, int64_t stream_time, gd_arena *scratch,
                     bool figures_known)
{
    gd_eval ctx = eval_on(e, scratch);
    for (size_t i = 0; i < GD_MAX_TABLES; i++)
        if (owns(w, i) && (figures_known || !w->tables[i].reads_figures) &&
            is_late(&w->tables[i], e->a->activity_timestamp, stream_time) && belongs(w->tables[i].def, e, &ctx))
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
        memcpy(out, g->slots, sizeof(gd_slot) * t->def->nslots);
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

/* The figures e takes from table slot: slots NULL when the group has no
 * row (or none yet). */
static void set_figures(gd_windows *w, gd_enriched *e, unsigned slot, const gd_slot *slots)
{
    for (int f = 0; f < GD_FIG_COUNT; f++) {
        const gd_figure *fig = &w->figures[f];
        if (fig->slot != (int)slot) continue;
        const gd_tabledef *def = w->tables[slot].def;
        gd_value v = slots ? gd_slot_value(&def->cols[fig->col], &slots[fig->col]) : (gd_value){.t = GD_V_NULL};
        if (f == GD_FIG_AVG_SCORE) e->avg_score_1h = v.t == GD_V_DBL ? (gd_dbl){true, v.d} : (gd_dbl){0};
        else {
            gd_int n = v.t == GD_V_INT ? (gd_int){true, v.i} : (gd_int){0};
            if (f == GD_FIG_SESSIONS) e->total_sessions_1h = n;
            else e->active_players_count = n;
        }
    }
}

static bool feeds_figures(const gd_windows *w, unsigned slot)
{
    for (int f = 0; f < GD_FIG_COUNT; f++)
        if (w->figures[f].slot == (int)slot) return true;
    return false;
}

/* A group's row to the table's push stream as event id (rows HAVING hides
 * are no event). */
static void publish_slots(gd_windows *w, const gd_tabledef *def, gd_str group, int64_t start, const gd_slot *slots,
                          uint64_t id)
{
    unsigned stream = gd_table_hub(def->slot);
    if (!w->push || !gd_push_sink_wanted(w->push, stream, id)) return;
    gd_str keys[GD_MAX_KEYS];
    gd_row r;
    if (gd_groupkey_split(group.p, group.len, def->nkeys, keys) ||
        !gd_row_compute(def, keys, start, slots, &r, &w->scratch))
        return;
    gd_buf_clear(&w->row);
    gd_row_render(def, &r, &w->row);
    gd_push_sink_publish(w->push, stream, id, w->row.p, w->row.len);
}

/* The group's row after a change (not for an EMIT FINAL table: its rows go
 * out when their window closes, publish_closed). */
static void publish_row(gd_windows *w, const gd_tabledef *def, const gd_hot_group *g, uint64_t seq)
{
    if (!def->emit_final) publish_slots(w, def, g->key, g->window->start, g->slots, seq);
}

/* ---- session tables ---- */

typedef struct {
    gd_windows *w;
    gd_hot_table *t;
} session_ctx;

/* A session's row is gone (gd_session_gone_fn): its key is deleted at the
 * flush, before the dirty sessions are written; a merged session is freed
 * now, or from the dirty list when it is on it. */
static void session_gone(void *ctx, int64_t start, gd_str key, gd_session *merged)
{
    session_ctx *c = ctx;
    gd_buf *row = &c->w->row; /* scratch here (w->key holds the group key) */
    gd_rowkey_encode(row, start, key);
    gd_buf_put(&c->t->gone_rows, &(uint32_t){(uint32_t)row->len}, 4);
    gd_buf_put(&c->t->gone_rows, row->p, row->len);
    if (!merged) return;
    if (merged->dirty) merged->merged = true;
    else gd_session_free(c->t->def, merged, &c->w->dict);
}

static void mark_session_dirty(gd_windows *w, gd_hot_table *t, gd_session *s)
{
    if (s->dirty) return;
    s->dirty = true;
    s->next_dirty = t->dirty_sessions;
    t->dirty_sessions = s;
    count_dirty(w, t);
}

/* e into its group's session of table t; false when it came too late. */
static bool apply_session(gd_windows *w, gd_hot_table *t, const gd_enriched *e, gd_str key, const gd_eval *ctx,
                          int64_t stream_time)
{
    const gd_tabledef *def = t->def;
    session_ctx gone = {w, t};
    gd_session *s = gd_sessions_join(def, &t->sessions, key, e->a->activity_timestamp, t->grace_ms, stream_time,
                                     &w->dict, session_gone, &gone);
    if (!s) return false;
    for (int c = 0; c < def->nslots; c++)
        if (def->cols[c].agg != GD_AGG_EXPR && c != def->session_end)
            gd_slot_update(&def->cols[c], &s->slots[c], argument(&def->cols[c], e, ctx), &s->arena, &w->interner);
    mark_session_dirty(w, t, s);
    if (s->start < t->oldest_open) t->oldest_open = s->start;
    if (!def->emit_final) publish_slots(w, def, s->key, s->start, s->slots, e->seq);
    return true;
}

bool gd_windows_apply(gd_windows *w, gd_enriched *e, int64_t stream_time, gd_store *s,
                      MDB_txn *txn)
{
    bool late_any = false;
    int64_t ts = e->a->activity_timestamp;
    gd_interner_next_record(&w->interner);
    gd_arena_reset(&w->scratch);
    gd_eval ctx = eval_on(e, &w->scratch);
    for (size_t i = 0; i < GD_MAX_TABLES; i++) {
        gd_hot_table *t = &w->tables[i];
        const gd_tabledef *def = t->def;
        if (!def || !belongs(def, e, &ctx)) continue;
        build_group_key(def, e, &ctx, &w->key, &w->text);
        gd_str key = {w->key.p, (uint32_t)w->key.len};
        if (def->session) {
            late_any |= !apply_session(w, t, e, key, &ctx, stream_time);
            continue;
        }
        bool figures = feeds_figures(w, (unsigned)i); /* built-in, tumbling: one window */
        int64_t last = gd_window_last(def, ts), step = gd_window_step(def);
        for (int64_t start = gd_window_first(def, ts); start <= last; start += step) {
            if (window_closed(t, start, stream_time)) {
                late_any = true;
                if (figures) {
                    gd_slot *slots = w->figure_slots;
                    set_figures(w, e, (unsigned)i, lookup_slots(t, start, key, slots, s, txn) ? slots : NULL);
                }
                continue;
            }
            gd_hot_window *win = find_window(t, start, true);
            gd_hot_group *g = group_for_update(w, t, win, key, s, txn);
            for (int c = 0; c < def->nslots; c++)
                if (def->cols[c].agg != GD_AGG_EXPR)
                    gd_slot_update(&def->cols[c], &g->slots[c], argument(&def->cols[c], e, &ctx), &win->arena,
                                   &w->interner);
            mark_dirty(w, t, g);
            if (figures) set_figures(w, e, (unsigned)i, g->slots);
            publish_row(w, def, g, e->seq);
        }
    }
    return late_any;
}

int gd_windows_store_row(gd_store *s, gd_store_writer *wr, const gd_tabledef *def, gd_str key, gd_str row,
                         gd_str sets)
{
    int rc = gd_store_writer_put(s, wr, def, key, row, sets);
    if (rc == GD_EBADREC) { /* key longer than LMDB takes: in memory only */
        gd_warn("%s: group key of %u bytes is too long to store", def->name, key.len);
        return GD_OK;
    }
    return rc;
}

static gd_str buf_str(const gd_buf *b) { return (gd_str){b->p ? b->p : "", (uint32_t)b->len}; }

/* The row of (start, group key) with slots as stored, handed to emit; its
 * distinct sets too unless sets_stored tells they are in the store already
 * and they gained no member since: a set is rewritten whole, and most
 * updates of a group add no one new to it (a player's next event in the
 * same session and game). */
static int encode_row(gd_windows *w, const gd_tabledef *def, int64_t start, gd_str group, gd_slot *slots,
                      bool sets_stored, gd_row_emit *emit, void *ctx)
{
    gd_rowkey_encode(&w->key, start, group);
    bool sets = gd_table_has_sets(def) && (!sets_stored || gd_row_sets_changed(def, slots));
    if (sets) {
        gd_row_encode(def, slots, &w->dict, &w->row, &w->sets);
        gd_row_sets_stored(def, slots);
    } else {
        gd_row_encode_head(def, slots, &w->row);
    }
    return emit(ctx, def, buf_str(&w->key), buf_str(&w->row), sets ? buf_str(&w->sets) : GD_STR_NULL);
}

typedef struct {
    gd_store *s;
    gd_store_writer writer;
} store_ctx;

static int store_emitted(void *ctx, const gd_tabledef *def, gd_str key, gd_str row, gd_str sets)
{
    store_ctx *c = ctx;
    return gd_windows_store_row(c->s, &c->writer, def, key, row, sets);
}

/* A session table's changes: the rows of sessions merged or moved are
 * deleted, then the dirty sessions written (a moved session may take the
 * key of one deleted). */
static int write_sessions(gd_windows *w, gd_hot_table *t, gd_store *s, MDB_txn *txn)
{
    const gd_tabledef *def = t->def;
    for (size_t at = 0; at + 4 <= t->gone_rows.len;) {
        uint32_t len;
        memcpy(&len, t->gone_rows.p + at, 4);
        int rc = gd_store_row_del(s, txn, def, (gd_str){t->gone_rows.p + at + 4, len});
        if (rc) return rc;
        at += 4 + len;
    }
    gd_buf_clear(&t->gone_rows);
    store_ctx c = {.s = s};
    gd_store_writer_begin(&c.writer, txn);
    int rc = GD_OK;
    while (t->dirty_sessions && !rc) {
        gd_session *x = t->dirty_sessions;
        if (!x->merged) rc = encode_row(w, def, x->start, x->key, x->slots, false, store_emitted, &c);
        t->dirty_sessions = x->next_dirty;
        x->dirty = false;
        if (x->merged) gd_session_free(def, x, &w->dict);
    }
    gd_store_writer_end(&c.writer);
    t->dirty_count = 0;
    return rc;
}

/* Row key order (gd_rowkey_encode; LMDB's memcmp, the shorter first). */
static int by_row_key(const void *a, const void *b)
{
    const gd_hot_group *x = *(gd_hot_group *const *)a, *y = *(gd_hot_group *const *)b;
    if (x->window->start != y->window->start) return x->window->start < y->window->start ? -1 : 1;
    int c = memcmp(x->key.p, y->key.p, x->key.len < y->key.len ? x->key.len : y->key.len);
    return c ? c : (x->key.len > y->key.len) - (x->key.len < y->key.len);
}

/* The dirty groups' rows, in key order, to emit; they are clean after.
 * In key order, each put lands on the page the last one touched or the
 * next, not on a random leaf of the table's tree. */
static int emit_dirty(gd_windows *w, gd_hot_table *t, gd_row_emit *emit, void *ctx)
{
    gd_buf_clear(&w->order);
    for (gd_hot_group *g = t->dirty; g; g = g->next_dirty) gd_buf_put(&w->order, &g, sizeof g);
    gd_hot_group **order = (gd_hot_group **)(void *)w->order.p;
    size_t n = w->order.len / sizeof *order;
    if (n > 1) qsort(order, n, sizeof *order, by_row_key); /* n 0: order may be NULL, which qsort may not get */
    for (size_t i = 0; i < n; i++) {
        gd_hot_group *g = order[i];
        g->dirty = false;
        if (g->window->start < t->expired_before) continue;
        g->window->written = true;
        int rc = encode_row(w, t->def, g->window->start, g->key, g->slots, g->sets_stored, emit, ctx);
        if (rc) return rc;
        g->sets_stored = true;
    }
    t->dirty = NULL; /* dirty_count stays for the flush: its purge bound counts what was written */
    return GD_OK;
}

int gd_windows_emit_dirty(gd_windows *w, gd_row_emit *emit, void *ctx)
{
    for (size_t i = 0; i < GD_MAX_TABLES; i++) {
        if (!owns(w, i) || w->tables[i].def->session) continue;
        int rc = emit_dirty(w, &w->tables[i], emit, ctx);
        if (rc) return rc;
    }
    return GD_OK;
}

/* What is dirty in t into the store (what gd_windows_emit_dirty emitted
 * was written by its caller). */
static int write_dirty(gd_windows *w, gd_hot_table *t, gd_store *s, MDB_txn *txn)
{
    if (t->def->session) return write_sessions(w, t, s, txn);
    store_ctx c = {.s = s};
    gd_store_writer_begin(&c.writer, txn);
    int rc = emit_dirty(w, t, store_emitted, &c);
    gd_store_writer_end(&c.writer);
    t->dirty_count = 0;
    return rc;
}

/* How long past its end a window stays in memory: until its grace is over,
 * or GD_HOT_MS, whichever is shorter; a table without windows keeps its
 * one window for good. */
static int64_t kept_ms(const gd_hot_table *t)
{
    if (!t->def->window_ms) return INT64_MAX / 4;
    return t->grace_ms < GD_HOT_MS ? t->grace_ms : GD_HOT_MS;
}

/* Windows past their time in memory leave it, but not at a flush that
 * wrote some of their groups: that commit may still be under way while the
 * next records are applied, and what they read back comes from the commit
 * before it (ingest/engine.c). The next flush evicts them. */
static void evict_cold(gd_hot_table *t, int64_t stream_time, gd_dict *dict)
{
    gd_hot_window **link = &t->windows;
    while (*link) {
        gd_hot_window *win = *link;
        bool cold = win->start + t->def->window_ms + kept_ms(t) <= stream_time;
        if (!cold || win->written) {
            win->written = false;
            link = &win->next;
            continue;
        }
        *link = win->next;
        free_window(t->def, win, dict);
    }
}

typedef struct {
    gd_windows *w;
    gd_hot_table *t;
    int64_t through; /* the last window start to publish */
    uint64_t id_floor;
} closed_ctx;

/* The id of an EMIT FINAL table's next published row: after the last,
 * and at least floor (see publish_closed). */
static uint64_t next_final_id(gd_hot_table *t, uint64_t floor)
{
    return t->final_id = t->final_id + 1 > floor ? t->final_id + 1 : floor;
}

static int publish_stored_row(void *ctx, gd_str key, gd_str val)
{
    closed_ctx *c = ctx;
    if (key.len < 8) return 0;
    int64_t start = gd_rowkey_window(key.p);
    if (start > c->through) return 1;
    gd_slot slots[GD_MAX_COLS];
    if (gd_row_decode(c->t->def, val.p, val.len, slots)) return 0; /* the figures of the head suffice */
    uint64_t id = next_final_id(c->t, c->id_floor);
    gd_arena_reset(&c->w->scratch);
    publish_slots(c->w, c->t->def, (gd_str){key.p + 8, key.len - 8}, start, slots, id);
    return 0;
}

/* An EMIT FINAL session table's session, as it closes (gd_session_fn). */
static void publish_closed_session(void *ctx, const gd_session *s)
{
    closed_ctx *c = ctx;
    uint64_t id = next_final_id(c->t, c->id_floor);
    gd_arena_reset(&c->w->scratch);
    publish_slots(c->w, c->t->def, s->key, s->start, s->slots, id);
}

/* A session table's sessions no record can change leave memory (they were
 * just written); an EMIT FINAL table's are published as they go. */
static void close_sessions(gd_windows *w, gd_hot_table *t, int64_t stream_time, int64_t now_ms)
{
    closed_ctx c = {w, t, 0, (uint64_t)now_ms * 1000};
    t->oldest_open = gd_sessions_close(t->def, &t->sessions, t->grace_ms, stream_time, &w->dict,
                                       t->def->emit_final ? publish_closed_session : NULL, &c);
}

/* An EMIT FINAL table's windows that closed since the last flush: their
 * rows as stored, to the push stream, each once. Their events are numbered
 * from the wall clock (ms x 1000), so that ids keep increasing across a
 * restart, which publishes nothing closed before it. */
static int publish_closed(gd_windows *w, gd_hot_table *t, gd_store *s, MDB_txn *txn, int64_t stream_time,
                          int64_t now_ms)
{
    if (!t->def->emit_final || t->def->session) return GD_OK; /* sessions: as they close (close_sessions) */
    int64_t through = gd_window_last_closed(t->def, t->grace_ms, stream_time);
    if (through <= t->final_through) return GD_OK;
    int64_t from = t->final_through == INT64_MIN ? INT64_MIN : t->final_through + 1;
    gd_rowkey_encode(&w->key, from, (gd_str){"", 0});
    closed_ctx c = {w, t, through, (uint64_t)now_ms * 1000};
    t->final_through = through;
    return gd_store_scan(s, txn, t->def, (gd_str){w->key.p, (uint32_t)w->key.len}, publish_stored_row, &c);
}

/* Windows of t starting before this are closed and past retention: purged.
 * Retention counts from the stream time, but never from past the wall
 * clock: a record from the future must not age the present out. */
static int64_t purge_limit(const gd_windows *w, const gd_hot_table *t, int64_t stream_time, int64_t now_ms)
{
    int64_t retention_time = stream_time < now_ms ? stream_time : now_ms;
    int64_t size = t->def->window_ms;
    int64_t expired = retention_time - w->retention_ms - size + 1;
    int64_t closed = stream_time - t->grace_ms - size + 1;
    if (t->def->session) { /* kept for the retention from its start; never while open */
        expired = retention_time - w->retention_ms;
        closed = t->oldest_open;
    }
    return expired < closed ? expired : closed;
}

static bool keeps_windows(const gd_hot_table *t, int64_t stream_time)
{
    return stream_time != INT64_MIN && t->def->window_ms;
}

void gd_windows_expire(gd_windows *w, int64_t stream_time, int64_t now_ms)
{
    for (size_t i = 0; i < GD_MAX_TABLES; i++) {
        gd_hot_table *t = &w->tables[i];
        if (!owns(w, i)) continue;
        bool drops = keeps_windows(t, stream_time) && !t->def->session && !t->def->emit_final;
        t->expired_before = drops ? purge_limit(w, t, stream_time, now_ms) : INT64_MIN;
    }
}

int gd_windows_flush(gd_windows *w, gd_store *s, MDB_txn *txn, int64_t stream_time, int64_t now_ms)
{
    w->purge_pending = false;
    atomic_store_explicit(&w->dirty_rows, 0, memory_order_relaxed);
    gd_windows_expire(w, stream_time, now_ms);
    for (size_t i = 0; i < GD_MAX_TABLES; i++) {
        gd_hot_table *t = &w->tables[i];
        if (!owns(w, i)) continue;
        size_t written = t->dirty_count;
        int rc = write_dirty(w, t, s, txn);
        if (rc) return rc;
        if (!keeps_windows(t, stream_time)) continue;
        rc = publish_closed(w, t, s, txn, stream_time, now_ms);
        if (rc) return rc;
        if (t->def->session) close_sessions(w, t, stream_time, now_ms);
        else evict_cold(t, stream_time, &w->dict);
        /* as many rows as were written, and then some, so that purging
         * keeps pace with a catch-up however much event time a commit
         * carries (store.h) */
        size_t deleted, bound = PURGE_ROWS_PER_COMMIT + written;
        rc = gd_store_purge(s, txn, t->def, purge_limit(w, t, stream_time, now_ms), bound, &deleted);
        if (rc) return rc;
        if (deleted == bound) w->purge_pending = true;
    }
    return GD_OK;
}

typedef struct {
    gd_windows *w;
    gd_hot_table *t;
    size_t undecoded; /* stored rows that did not decode */
    gd_store *s;
    MDB_txn *txn;
} load_ctx;

/* A stored row that does not decode starts its group over, as when it is
 * read back for an update (group_for_update): failing would stop the
 * daemon at every start on what its store holds. */
static int load_row(void *ctx, gd_str key, gd_str val)
{
    load_ctx *c = ctx;
    if (key.len < 8) return 0;
    gd_hot_window *win = find_window(c->t, gd_rowkey_window(key.p), true);
    gd_str gkey = {key.p + 8, key.len - 8};
    gd_hot_group *g = find_group(c->t, win, gkey, true);
    if (decode_stored(c->w, c->t->def, c->s, c->txn, key, val, g->slots, &win->arena, &g->sets_stored)) {
        g->sets_stored = false;
        release_slots(c->w, c->t->def, g->slots);
        c->undecoded++;
    }
    return 0;
}

/* A stored session into its group's list (load_table drops the closed
 * ones once all are read: whether one is closed depends on the next). */
static int load_session(void *ctx, gd_str key, gd_str val)
{
    load_ctx *c = ctx;
    if (key.len < 8) return 0;
    const gd_tabledef *def = c->t->def;
    gd_str group = {key.p + 8, key.len - 8};
    gd_session *x = gd_session_new(def, group, gd_rowkey_window(key.p));
    if (decode_stored(c->w, def, c->s, c->txn, key, val, x->slots, &x->arena, NULL)) {
        gd_session_free(def, x, &c->w->dict);
        c->undecoded++;
        return 0;
    }
    x->end = x->slots[def->session_end].v.i;
    gd_sessions_add(&c->t->sessions, x);
    return 0;
}

static int load_table(gd_windows *w, gd_hot_table *t, gd_store *s, MDB_txn *txn, int64_t stream_time)
{
    if (stream_time == INT64_MIN) return GD_OK;
    if (t->def->session) {
        load_ctx c = {w, t, 0, s, txn};
        gd_rowkey_encode(&w->key, INT64_MIN, (gd_str){"", 0});
        int rc = gd_store_scan(s, txn, t->def, (gd_str){w->key.p, (uint32_t)w->key.len}, load_session, &c);
        if (c.undecoded) gd_error("%s: %zu stored sessions did not decode; left out", t->def->name, c.undecoded);
        /* closed before the restart: not published again */
        t->oldest_open = gd_sessions_close(t->def, &t->sessions, t->grace_ms, stream_time, &w->dict, NULL, NULL);
        return rc;
    }
    if (t->def->window_ms) /* what closed before is not published again */
        t->final_through = gd_window_last_closed(t->def, t->grace_ms, stream_time);
    int64_t size = t->def->window_ms;
    int64_t first_hot = size ? gd_window_start(stream_time - size - kept_ms(t) + 1, gd_window_step(t->def)) : 0;
    gd_rowkey_encode(&w->key, first_hot, (gd_str){"", 0});
    load_ctx c = {w, t, 0, s, txn};
    int rc = gd_store_scan(s, txn, t->def, (gd_str){w->key.p, (uint32_t)w->key.len}, load_row, &c);
    if (c.undecoded)
        gd_error("%s: %zu stored row%s did not decode; %s over", t->def->name, c.undecoded,
                 c.undecoded == 1 ? "" : "s", c.undecoded == 1 ? "its group starts" : "their groups start");
    if (rc) return rc;
    /* no window after that of the stream time can have rows */
    int64_t newest = gd_window_last(t->def, stream_time);
    if (newest > t->newest_start) t->newest_start = newest;
    return GD_OK;
}

int gd_windows_load(gd_windows *w, gd_store *s, MDB_txn *txn, int64_t stream_time)
{
    for (size_t i = 0; i < GD_MAX_TABLES; i++) {
        if (!owns(w, i)) continue;
        int rc = load_table(w, &w->tables[i], s, txn, stream_time);
        if (rc) return rc;
    }
    return GD_OK;
}

int gd_windows_note_stored(gd_windows *w, gd_store *s, MDB_txn *txn)
{
    for (size_t i = 0; i < GD_MAX_TABLES; i++) {
        if (!owns(w, i)) continue;
        gd_hot_table *t = &w->tables[i];
        int64_t newest;
        int rc = gd_store_newest_window(s, txn, t->def, &newest);
        if (rc == GD_OK && newest > t->newest_start) t->newest_start = newest;
        else if (rc != GD_OK && rc != GD_EOF) return rc;
    }
    return GD_OK;
}

int gd_windows_add(gd_windows *w, const gd_tabledef *def, gd_store *s, MDB_txn *txn, int64_t stream_time)
{
    set_table(w, def);
    return load_table(w, &w->tables[def->slot], s, txn, stream_time);
}

size_t gd_windows_memory(const gd_windows *w)
{
    size_t total = 0;
    for (size_t i = 0; i < GD_MAX_TABLES; i++) {
        const gd_hot_table *t = &w->tables[i];
        for (const gd_hot_window *win = t->windows; win; win = win->next)
            total += win->arena.used_bytes + win->groups.cap * sizeof(gd_map_slot);
        if (t->def && t->def->session) /* about a session per group, strings aside */
            total += t->sessions.cap * sizeof(gd_map_slot) +
                     t->sessions.count * (sizeof(gd_session) + sizeof(gd_slot) * t->def->nslots);
    }
    return total + w->dict.ids.cap * sizeof(gd_map_slot);
}
