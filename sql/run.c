/* run.c -- push queries: one thread evaluates every running push query on
 * the hub's streams and publishes its rows to a stream of its own.
 *
 * A push query reads the push stream of its source (the enriched records,
 * a source topic's records, a table's rows after each change), as an SSE
 * subscriber would: the engine publishes those only while someone listens,
 * and this thread is then that someone. Each event is copied out of the
 * ring, parsed once into a row of values, and handed to every query on
 * that source: a filter and projection, or a transient aggregation kept
 * here since the query started. A query's output rows go to its own hub
 * stream (gd_query_hub), where its clients read them exactly as SSE
 * subscribers read theirs (api/push.c): a thousand clients of a query cost
 * a thousand ring positions, and a slow one loses its oldest rows, told.
 *
 * Identical statements running at once (same text, same right to see
 * personal data) share one query: its rows are computed once for all of
 * them (and its id: /close-query ends only the responses of the caller's
 * key, api/push.c, so the id is not a capability; it is random all the
 * same, so that no one learns how many queries ran). A client that joins a running aggregation sees its groups as they
 * stand, counted since the query started -- more of the stream, never
 * less. The engine never waits for this thread: when it falls behind a
 * source's ring, the events it lost are counted and its queries' clients
 * told. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "../server/json.h"
#include "sql.h"

enum {
    PASS_EVENTS = 4096, /* events of one source per pass, so that others take turns */
    IDLE_MS = 5,
    MAX_TEXT = 64 * 1024,
};

/* A window of a transient aggregation: its groups, in its own arena. */
typedef struct twindow twindow;
struct twindow {
    int64_t start;
    gd_map groups; /* group key -> tgroup */
    gd_arena arena;
    twindow *next; /* newest first */
};

typedef struct {
    gd_str key;
    gd_slot slots[];
} tgroup;

struct gd_push_query {
    char key[4096];    /* what makes two queries the same: pii flag, statement */
    char id[160];      /* the queryId clients see: random, so not guessed */
    gd_arena arena;    /* the plan */
    gd_query_plan plan;
    unsigned slot;     /* its stream: gd_query_hub(slot) */
    unsigned source;   /* the hub stream it reads */
    uint64_t start_pos; /* where in it the query started */
    int refs;          /* clients (under the runner's lock) */
    bool sees_pii, started;
    uint64_t next_id;  /* ids of its rows */
    int64_t stream_time;
    int64_t grace_ms;
    twindow *windows;
    gd_dict dict;
    gd_interner interner;
    gd_push_query *next;
};

/* Where the thread stands in one source's ring. */
typedef struct {
    bool reading;
    uint64_t pos, lost;
} reader;

struct gd_sql_runner {
    gd_hub *hub;
    const gd_catalog *cat;
    pthread_mutex_t lock; /* the list, refs, slots */
    gd_push_query *queries;
    bool slot_used[GD_MAX_QUERY_STREAMS];
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    reader readers[GD_MAX_STREAMS + GD_MAX_TABLES];
    gd_buf event, text, out, key, key_text; /* text: the event being read, which rows point into */
    gd_arena scratch;
    _Atomic uint64_t rows_out, events_in, events_lost;
};

/* ---- output ---- */

static void put_row(const gd_push_query *q, const gd_value *vals, gd_buf *out)
{
    gd_sql_put_row(out, &q->plan, vals, q->sees_pii);
}

static void publish(gd_sql_runner *r, gd_push_query *q, gd_buf *text)
{
    gd_hub_publish(r->hub, gd_query_hub(q->slot), ++q->next_id, text->p, text->len);
    atomic_fetch_add_explicit(&r->rows_out, 1, memory_order_relaxed);
}

/* Projects an input row (over which the plan's select list is bound) and
 * publishes it. */
static void emit(gd_sql_runner *r, gd_push_query *q, const gd_value *in, const gd_eval *ctx)
{
    gd_value out[q->plan.ncols + 1];
    gd_eval ev = *ctx;
    ev.row = in;
    for (int i = 0; i < q->plan.ncols; i++) out[i] = gd_expr_eval(q->plan.proj[i], &ev);
    gd_buf_clear(&r->out);
    put_row(q, out, &r->out);
    publish(r, q, &r->out);
}

/* A notice among the rows: a JSON object (rows are arrays). */
static void notice_lost(gd_sql_runner *r, gd_push_query *q, uint64_t n)
{
    gd_buf_clear(&r->out);
    gd_buf_printf(&r->out,
                  "{\"@type\":\"dropped_events\",\"dropped\":%llu,\"message\":\"the query fell behind its source "
                  "and missed %llu records: its aggregates leave them out\"}",
                  (unsigned long long)n, (unsigned long long)n);
    gd_hub_publish(r->hub, gd_query_hub(q->slot), ++q->next_id, r->out.p, r->out.len);
}

/* ---- transient aggregations ---- */

static void free_window(gd_push_query *q, twindow *w)
{
    const gd_tabledef *t = q->plan.aggregate;
    for (size_t i = 0; i < w->groups.cap; i++)
        if (gd_map_live(&w->groups.slots[i])) gd_slots_release(t, ((tgroup *)w->groups.slots[i].val)->slots, &q->dict);
    gd_map_free(&w->groups);
    gd_arena_free(&w->arena);
    free(w);
}

static twindow *window_at(gd_push_query *q, int64_t start)
{
    twindow **link = &q->windows;
    while (*link && (*link)->start > start) link = &(*link)->next;
    if (*link && (*link)->start == start) return *link;
    twindow *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->start = start;
    gd_arena_init(&w->arena);
    gd_map_init(&w->groups, &w->arena);
    w->next = *link;
    *link = w;
    return w;
}

static tgroup *group_at(gd_push_query *q, twindow *w, gd_str key)
{
    bool created;
    gd_map_slot *s = gd_map_upsert(&w->groups, key, &created);
    if (!created) return s->val;
    size_t size = sizeof(tgroup) + sizeof(gd_slot) * q->plan.aggregate->nslots;
    tgroup *g = gd_arena_alloc(&w->arena, size);
    memset(g, 0, size);
    g->key = gd_arena_strdup(&w->arena, key);
    s->val = g;
    return g;
}

/* The table row of a group (keys, window bounds, columns) for the output
 * projection; false when HAVING hides it. */
static bool group_row(gd_push_query *q, int64_t start, const tgroup *g, gd_value *row, gd_arena *scratch)
{
    const gd_tabledef *t = q->plan.aggregate;
    gd_str keys[GD_MAX_KEYS];
    gd_row r;
    if (gd_groupkey_split(g->key.p, g->key.len, t->nkeys, keys) || !gd_row_compute(t, keys, start, g->slots, &r, scratch))
        return false;
    int at = 0;
    for (int k = 0; k < t->nkeys; k++) row[at++] = r.keys[k];
    if (t->window_ms) {
        row[at++] = (gd_value){.t = GD_V_INT, .i = r.window_start};
        row[at++] = (gd_value){.t = GD_V_INT, .i = r.window_end};
    }
    for (int c = 0; c < t->ncols; c++) row[at++] = r.cols[c];
    return true;
}

static void emit_group(gd_sql_runner *r, gd_push_query *q, int64_t start, const tgroup *g, const gd_eval *ctx)
{
    gd_value row[q->plan.row_width + 1];
    if (group_row(q, start, g, row, &r->scratch)) emit(r, q, row, ctx);
}

/* EMIT FINAL: windows whose grace has passed are emitted, then dropped;
 * with EMIT CHANGES they are only dropped (no record can change them). */
static void close_windows(gd_sql_runner *r, gd_push_query *q, const gd_eval *ctx)
{
    const gd_tabledef *t = q->plan.aggregate;
    if (!t->window_ms) return;
    twindow **link = &q->windows;
    while (*link && (*link)->start + t->window_ms + q->grace_ms > q->stream_time) link = &(*link)->next;
    while (*link) {
        twindow *w = *link;
        *link = w->next;
        if (q->plan.emit_final)
            for (size_t i = 0; i < w->groups.cap; i++)
                if (gd_map_live(&w->groups.slots[i])) emit_group(r, q, w->start, w->groups.slots[i].val, ctx);
        free_window(q, w);
    }
}

static void aggregate(gd_sql_runner *r, gd_push_query *q, const gd_value *in, const gd_eval *ctx)
{
    const gd_tabledef *t = q->plan.aggregate;
    if (t->where && !gd_expr_true(t->where, ctx)) return;
    gd_buf *key = &r->key;
    gd_buf_clear(key);
    for (int k = 0; k < t->nkeys; k++) {
        gd_value v = t->keys[k].field >= 0 ? in[t->keys[k].field] : gd_expr_eval(t->keys[k].expr, ctx);
        if (v.t == GD_V_NULL) return; /* a group whose key is null is skipped */
        gd_buf_clear(&r->key_text);
        gd_key_text(v, &r->key_text);
        gd_groupkey_append(key, (gd_str){r->key_text.p ? r->key_text.p : "", (uint32_t)r->key_text.len});
    }
    /* event time: the activity's; records without one (games, players) are
     * timed as they are processed */
    gd_stream_kind kind = q->plan.source->kind;
    bool timed = (kind == GD_SRC_ENRICHED || kind == GD_SRC_ACTIVITY) && in[GD_F_EVENT_TIMESTAMP].t == GD_V_INT;
    int64_t ts = timed ? in[GD_F_EVENT_TIMESTAMP].i : ctx->now_ms;
    gd_interner_next_record(&q->interner);
    for (int64_t start = gd_window_first(t, ts); start <= gd_window_last(t, ts); start += gd_window_step(t)) {
        bool late = t->window_ms && start + t->window_ms + q->grace_ms <= q->stream_time;
        twindow *w = late ? NULL : window_at(q, start);
        if (!w) continue;
        tgroup *g = group_at(q, w, (gd_str){key->p ? key->p : "", (uint32_t)key->len});
        for (int c = 0; c < t->nslots; c++) {
            const gd_coldef *col = &t->cols[c];
            if (col->agg == GD_AGG_EXPR) continue;
            gd_value v = col->field >= 0 ? in[col->field] : col->arg ? gd_expr_eval(col->arg, ctx) : (gd_value){0};
            gd_slot_update(col, &g->slots[c], v, &w->arena, &q->interner);
        }
        if (!q->plan.emit_final) emit_group(r, q, start, g, ctx);
    }
    if (ts > q->stream_time) q->stream_time = ts; /* a record past it is late for no window */
    close_windows(r, q, ctx);
}

/* ---- the thread ---- */

static void apply(gd_sql_runner *r, gd_push_query *q, const gd_value *in, int64_t now_ms)
{
    gd_eval ctx = {.column = gd_value_array_column, .row = in, .now_ms = now_ms, .scratch = &r->scratch};
    if (q->plan.kind == GD_PLAN_PUSH_AGGREGATE) {
        aggregate(r, q, in, &ctx);
        return;
    }
    if (q->plan.where && !gd_expr_true(q->plan.where, &ctx)) return;
    emit(r, q, in, &ctx);
}

/* The queries now running, each with a reference the thread holds while
 * it uses them. */
static int running(gd_sql_runner *r, gd_push_query **out, int max)
{
    int n = 0;
    pthread_mutex_lock(&r->lock);
    for (gd_push_query *q = r->queries; q && n < max; q = q->next) {
        q->refs++;
        out[n++] = q;
    }
    pthread_mutex_unlock(&r->lock);
    return n;
}

static void query_free(gd_sql_runner *r, gd_push_query *q)
{
    if (q->started) gd_hub_subscribed(r->hub, q->source, -1);
    while (q->windows) {
        twindow *next = q->windows->next;
        free_window(q, q->windows);
        q->windows = next;
    }
    gd_interner_free(&q->interner);
    gd_dict_free(&q->dict);
    gd_arena_free(&q->arena);
    free(q);
}

static void release_query(gd_sql_runner *r, gd_push_query *q)
{
    pthread_mutex_lock(&r->lock);
    bool last = --q->refs == 0;
    if (last) {
        gd_push_query **link = &r->queries;
        while (*link && *link != q) link = &(*link)->next;
        if (*link) *link = q->next;
    }
    pthread_mutex_unlock(&r->lock);
    if (!last) return;
    gd_hub_discard(r->hub, gd_query_hub(q->slot)); /* its rows' memory, before the slot is taken again */
    pthread_mutex_lock(&r->lock);
    r->slot_used[q->slot] = false;
    pthread_mutex_unlock(&r->lock);
    query_free(r, q);
}

/* Reads what a source's ring holds past the thread's position into the
 * queries on it; the number of events read. */
static size_t read_source(gd_sql_runner *r, unsigned source, gd_push_query **qs, int nq)
{
    reader *rd = &r->readers[source];
    const gd_catalog_entry *entry = NULL;
    for (int i = 0; i < nq; i++)
        if (qs[i]->source == source) entry = qs[i]->plan.source;
    if (!entry) return 0;
    size_t n = 0;
    int width = qs[0]->plan.row_width;
    for (int i = 0; i < nq; i++)
        if (qs[i]->source == source && qs[i]->plan.row_width > width) width = qs[i]->plan.row_width;
    if (entry->width > width) width = entry->width;
    gd_value row[width + 1];
    while (n < PASS_EVENTS) {
        gd_hub_event ev;
        uint64_t lost_before = rd->lost;
        int rc = gd_hub_peek(r->hub, source, &rd->pos, &ev, &r->event, &rd->lost);
        if (rc == GD_AGAIN) break;
        n++;
        if (rc == GD_OK) {
            gd_buf_clear(&r->text);
            if (ev.text.len <= MAX_TEXT) gd_buf_put(&r->text, ev.text.p, ev.text.len);
            if (!gd_hub_release(r->hub, source, &rd->pos, &ev, &rd->lost) || ev.text.len > MAX_TEXT) continue;
        }
        if (rd->lost > lost_before) {
            atomic_fetch_add(&r->events_lost, rd->lost - lost_before);
            for (int i = 0; i < nq; i++)
                if (qs[i]->source == source) notice_lost(r, qs[i], rd->lost - lost_before);
        }
        if (rc != GD_OK) continue;
        atomic_fetch_add_explicit(&r->events_in, 1, memory_order_relaxed);
        gd_arena_reset(&r->scratch);
        if (!gd_sql_event_row(entry, (gd_str){r->text.p, (uint32_t)r->text.len}, row, width, &r->scratch)) continue;
        int64_t now = gd_now_ms();
        for (int i = 0; i < nq; i++)
            if (qs[i]->source == source) apply(r, qs[i], row, now);
    }
    return n;
}

/* Starts and stops reading sources as queries come and go. */
/* Starts reading a source where its earliest query started (each query
 * holds the source's stream open from its join), stops when none reads it. */
static void follow_sources(gd_sql_runner *r, gd_push_query **qs, int nq)
{
    uint64_t from[GD_MAX_STREAMS + GD_MAX_TABLES];
    bool wanted[GD_MAX_STREAMS + GD_MAX_TABLES] = {false};
    for (int i = 0; i < nq; i++) {
        unsigned s = qs[i]->source;
        if (!wanted[s] || qs[i]->start_pos < from[s]) from[s] = qs[i]->start_pos;
        wanted[s] = true;
    }
    for (unsigned s = 0; s < GD_MAX_STREAMS + GD_MAX_TABLES; s++) {
        reader *rd = &r->readers[s];
        if (wanted[s] && !rd->reading) {
            rd->pos = from[s];
            rd->reading = true;
        } else if (!wanted[s]) {
            rd->reading = false;
        }
    }
}

static void *runner_main(void *arg)
{
    gd_sql_runner *r = arg;
    gd_push_query *qs[GD_MAX_QUERY_STREAMS];
    while (!atomic_load(&r->stop)) {
        int nq = running(r, qs, GD_MAX_QUERY_STREAMS);
        follow_sources(r, qs, nq);
        size_t n = 0;
        for (unsigned s = 0; s < GD_MAX_STREAMS + GD_MAX_TABLES; s++)
            if (r->readers[s].reading) n += read_source(r, s, qs, nq);
        for (int i = 0; i < nq; i++) release_query(r, qs[i]);
        if (!n) gd_sleep_ms(IDLE_MS);
    }
    return NULL;
}

int gd_sql_runner_start(gd_sql_runner **out, gd_hub *hub, const gd_catalog *cat)
{
    gd_sql_runner *r = calloc(1, sizeof *r);
    if (!r) return GD_ENOMEM;
    r->hub = hub;
    r->cat = cat;
    pthread_mutex_init(&r->lock, NULL);
    gd_arena_init(&r->scratch);
    if (pthread_create(&r->thread, NULL, runner_main, r)) {
        gd_sql_runner_stop(r);
        return GD_ERR;
    }
    r->thread_started = true;
    *out = r;
    return GD_OK;
}

void gd_sql_runner_stop(gd_sql_runner *r)
{
    if (!r) return;
    atomic_store(&r->stop, true);
    if (r->thread_started) pthread_join(r->thread, NULL);
    while (r->queries) { /* clients that never left (the server is stopping) */
        gd_push_query *next = r->queries->next;
        query_free(r, r->queries);
        r->queries = next;
    }
    pthread_mutex_destroy(&r->lock);
    gd_buf_free(&r->event);
    gd_buf_free(&r->text);
    gd_buf_free(&r->out);
    gd_buf_free(&r->key);
    gd_buf_free(&r->key_text);
    gd_arena_free(&r->scratch);
    free(r);
}

/* ---- joining and leaving ---- */

/* The statement's text with blanks collapsed: what identifies a query. */
static void query_key(const char *sql, bool sees_pii, char *out, size_t cap)
{
    size_t n = 0;
    out[n++] = sees_pii ? 'P' : 'R';
    bool blank = false;
    for (const char *p = sql; *p && n + 2 < cap; p++) {
        bool b = *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r';
        if (b && blank) continue;
        out[n++] = b ? ' ' : *p;
        blank = b;
    }
    while (n > 1 && (out[n - 1] == ' ' || out[n - 1] == ';')) n--;
    out[n] = 0;
}

/* A new query for the statement, planned in its own arena. */
static gd_push_query *new_query(gd_sql_runner *r, const char *sql, bool sees_pii, gd_sql_error *err)
{
    gd_push_query *q = calloc(1, sizeof *q);
    if (!q) {
        gd_sql_fail(err, GD_SQL_SERVER_ERROR, "out of memory");
        return NULL;
    }
    gd_arena_init(&q->arena);
    gd_dict_init(&q->dict);
    gd_interner_init(&q->interner, &q->dict);
    gd_sql_stmt *stmts;
    int n;
    if (gd_sql_parse(gd_str_c(sql), &q->arena, &stmts, &n, err) ||
        gd_sql_plan_query(r->cat, &stmts[0], &q->arena, &q->plan, err)) {
        query_free(r, q);
        return NULL;
    }
    const gd_catalog_entry *src = q->plan.source;
    q->source = src->is_table ? gd_table_hub(src->slot) : gd_stream_hub(src->slot);
    q->sees_pii = sees_pii;
    q->stream_time = INT64_MIN;
    if (q->plan.aggregate) q->grace_ms = gd_catalog_grace(r->cat, q->plan.aggregate);
    /* from now on the source's records are published, and the query reads
     * them from here */
    gd_hub_subscribed(r->hub, q->source, +1);
    q->start_pos = gd_hub_head(r->hub, q->source);
    q->started = true;
    return q;
}

/* transient_SOURCE_HEX, as ksqlDB names them (the source upper-cased, a
 * random number), 128 random bits in hex. */
static void set_query_id(gd_push_query *q, const unsigned char nonce[16])
{
    int n = snprintf(q->id, sizeof q->id, "transient_%.100s_", q->plan.source->name);
    for (char *p = q->id + 10; *p; p++)
        if (*p >= 'a' && *p <= 'z') *p -= 32;
    for (int i = 0; i < 16; i++) n += snprintf(q->id + n, sizeof q->id - (size_t)n, "%02x", nonce[i]);
}

int gd_sql_runner_join(gd_sql_runner *r, const char *sql, bool sees_pii, gd_push_query **out, unsigned *hub_stream,
                       gd_sql_error *err)
{
    char key[sizeof ((gd_push_query *)0)->key];
    query_key(sql, sees_pii, key, sizeof key);
    pthread_mutex_lock(&r->lock);
    for (gd_push_query *q = r->queries; q; q = q->next)
        if (!strcmp(q->key, key)) {
            q->refs++;
            pthread_mutex_unlock(&r->lock);
            *out = q;
            *hub_stream = gd_query_hub(q->slot);
            return GD_OK;
        }
    pthread_mutex_unlock(&r->lock);
    unsigned char nonce[16];
    if (getrandom(nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce)
        return gd_sql_fail(err, GD_SQL_SERVER_ERROR, "no random bytes for the query's id");
    gd_push_query *q = new_query(r, sql, sees_pii, err);
    if (!q) return GD_ERR;
    memcpy(q->key, key, sizeof key);
    pthread_mutex_lock(&r->lock);
    unsigned slot = 0;
    while (slot < GD_MAX_QUERY_STREAMS && r->slot_used[slot]) slot++;
    if (slot == GD_MAX_QUERY_STREAMS) {
        pthread_mutex_unlock(&r->lock);
        query_free(r, q);
        err->http_status = 503;
        return gd_sql_fail(err, GD_SQL_UNAVAILABLE, "%d different push queries are running: no room for another",
                           GD_MAX_QUERY_STREAMS);
    }
    r->slot_used[slot] = true;
    q->slot = slot;
    q->refs = 1;
    set_query_id(q, nonce);
    /* its rows start after what the stream's last user left in it */
    q->next_id = gd_hub_head(r->hub, gd_query_hub(slot)) + 1;
    q->next = r->queries;
    r->queries = q;
    pthread_mutex_unlock(&r->lock);
    *out = q;
    *hub_stream = gd_query_hub(slot);
    return GD_OK;
}

void gd_sql_runner_leave(gd_sql_runner *r, gd_push_query *q) { release_query(r, q); }

const char *gd_push_query_id(const gd_push_query *q) { return q->id; }
const gd_query_plan *gd_push_query_plan(const gd_push_query *q) { return &q->plan; }

void gd_sql_runner_list(gd_sql_runner *r, gd_sql_query_fn fn, void *ctx)
{
    pthread_mutex_lock(&r->lock);
    for (gd_push_query *q = r->queries; q; q = q->next) fn(ctx, q->id, q->key + 1, q->refs);
    pthread_mutex_unlock(&r->lock);
}

void gd_sql_runner_metrics(gd_sql_runner *r, uint64_t *queries, uint64_t *events_in, uint64_t *events_lost,
                           uint64_t *rows_out)
{
    pthread_mutex_lock(&r->lock);
    uint64_t n = 0;
    for (gd_push_query *q = r->queries; q; q = q->next) n++;
    pthread_mutex_unlock(&r->lock);
    *queries = n;
    *events_in = atomic_load(&r->events_in);
    *events_lost = atomic_load(&r->events_lost);
    *rows_out = atomic_load(&r->rows_out);
}
