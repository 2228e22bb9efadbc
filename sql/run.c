/* run.c -- push queries: one thread evaluates every running push query on
 * the hub's streams and publishes its rows to a stream of its own.
 *
 * A push query reads the push stream of its source (the enriched records,
 * a source topic's records, a table's rows after each change), as an SSE
 * subscriber would: the engine publishes those only while someone listens,
 * and this thread (or, for a filtered subscription, its subscribers) is
 * then that someone. Each event is copied out of the
 * ring, parsed once into a row of values, and handed to every query on
 * that source: a filter and projection, or a transient aggregation kept
 * here since the query started. A query's output rows go to its own hub
 * stream (gd_query_hub), where its clients read them exactly as SSE
 * subscribers read theirs (api/push.c): a thousand clients of a query cost
 * a thousand ring positions, and a slow one loses its oldest rows, told.
 *
 * A filtered SSE subscription (api/push.c) is a query too, planned by
 * gd_sql_plan_filters: its output is the source's event that passes, as
 * it is (masked by its reader, api/push.c), published under the event's
 * own id so that SSE ids and Last-Event-ID mean the same as on the source.
 * Thousands of them on different values of a column would cost thousands
 * of evaluations per event, so the thread keeps an index: each query whose
 * WHERE has an equality of a column to a value is filed under (source,
 * column, value) of the first one, and an event looks up each indexed
 * column's value -- one lookup per event, not one test per query; the
 * others (SQL's, aggregations) are tested each. The thread takes the
 * queries that started and ended since it last looked and changes its list
 * and index by those only; a query whose last client left ends there.
 * A query starts where its source stands now, or, for a subscription
 * resuming after an event, where that event stands in the source's ring:
 * such a query catches up, reading the ring from there on its own (with
 * any others doing so, each event parsed once), until it reaches the
 * thread's position and joins the rest.
 *
 * Identical statements running at once (same text, same right to see
 * personal data) share one query, as do identical filters on one stream
 * (one that covers the resume point asked for): its rows are computed once for all of
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
    CLOSE_SESSIONS_EVERY = 1024, /* records between looks for closed sessions (a look visits every group) */
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
    uint64_t pos;      /* the next source position for it while it catches up (thread only) */
    bool joined;       /* it reads with the thread's shared position (thread only) */
    int refs;          /* clients, and the thread while it runs it (under the runner's lock) */
    bool sees_pii, started;
    bool events;       /* a filtered subscription: the source's events that pass, with their ids */
    int held_at;       /* its place in the thread's list (thread only) */
    uint64_t next_id;  /* ids of its rows (events: the last id published) */
    int64_t stream_time;
    int64_t grace_ms;
    twindow *windows;
    gd_map sessions;   /* SESSION windows: group key -> its open sessions (store/tables.h) */
    unsigned since_closing; /* records since closed sessions were last let go */
    int64_t oldest_open;    /* no open session starts before it: none can close before it + gap + grace */
    gd_dict dict;
    gd_interner interner;
    gd_push_query *next;
    gd_push_query *next_added, *next_ended; /* the changes the thread has yet to take */
};

/* Where the thread stands in one source's ring. */
typedef struct {
    bool reading;
    uint64_t pos, lost;
} reader;

enum { SOURCES = GD_MAX_STREAMS + GD_MAX_TABLES, MAX_INDEXED = 8 };

/* A chain of queries (the thread's, in its index arena). */
typedef struct qlink qlink;
struct qlink {
    gd_push_query *q;
    qlink *next;
};

/* The queries on one source, as the thread finds them for an event: those
 * whose first equality of a column to a value is indexed (by source,
 * column and value, in the runner's index), the others tested each. */
typedef struct {
    int cols[MAX_INDEXED]; /* the columns of the indexed equalities */
    int ncols;
    qlink *others;
    int width; /* values in an input row for every query on it */
} source_queries;

struct gd_sql_runner {
    gd_hub *hub;
    const gd_catalog *cat;
    pthread_mutex_t lock; /* the lists, refs, slots */
    gd_push_query *queries; /* running: what joins find */
    gd_push_query *added, *ended; /* started, and left by their last client, since the thread last looked */
    bool slot_used[GD_MAX_QUERY_STREAMS];
    /* the thread's: the queries it runs and their index, changed as
     * queries start and end (never rebuilt: thousands of subscriptions
     * coming at once cost one change each) */
    gd_push_query *held[GD_MAX_QUERY_STREAMS];
    int nheld;
    source_queries by_source[SOURCES];
    gd_map index;        /* (source, column, value) -> qlink */
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    reader readers[SOURCES];
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

/* A notice among the rows: a JSON object (rows are arrays); among a
 * filtered subscription's events, the count alone, under the last id (so
 * that resuming past that event skips it). */
static void notice_lost(gd_sql_runner *r, gd_push_query *q, uint64_t n)
{
    gd_buf_clear(&r->out);
    if (q->events) {
        gd_buf_printf(&r->out, "%llu", (unsigned long long)n);
        gd_hub_publish(r->hub, gd_query_hub(q->slot), q->next_id, r->out.p, r->out.len);
        return;
    }
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
static bool group_row(gd_push_query *q, int64_t start, gd_str group, const gd_slot *slots, gd_value *row,
                      gd_arena *scratch)
{
    const gd_tabledef *t = q->plan.aggregate;
    gd_str keys[GD_MAX_KEYS];
    gd_row r;
    if (gd_groupkey_split(group.p, group.len, t->nkeys, keys) || !gd_row_compute(t, keys, start, slots, &r, scratch))
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

static void emit_group(gd_sql_runner *r, gd_push_query *q, int64_t start, gd_str group, const gd_slot *slots,
                       const gd_eval *ctx)
{
    gd_value row[q->plan.row_width + 1];
    if (group_row(q, start, group, slots, row, &r->scratch)) emit(r, q, row, ctx);
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
                if (gd_map_live(&w->groups.slots[i])) {
                    const tgroup *g = w->groups.slots[i].val;
                    emit_group(r, q, w->start, g->key, g->slots, ctx);
                }
        free_window(q, w);
    }
}

/* A push query's merged session is let go at once: its row is not shown
 * again (ksqlDB's push queries show no tombstones). */
static void session_merged(void *ctx, int64_t start, gd_str key, gd_session *merged)
{
    gd_push_query *q = ctx;
    (void)start, (void)key;
    if (merged) gd_session_free(q->plan.aggregate, merged, &q->dict);
}

typedef struct {
    gd_sql_runner *r;
    gd_push_query *q;
    const gd_eval *ctx;
} session_emit;

/* EMIT FINAL: a session's row once it closed (gd_session_fn). */
static void emit_closed_session(void *arg, const gd_session *s)
{
    session_emit *e = arg;
    emit_group(e->r, e->q, s->start, s->key, s->slots, e->ctx);
}

/* A record at ts into its group's session; emits the session's row (EMIT
 * FINAL: the rows of the sessions that closed). */
static void aggregate_session(gd_sql_runner *r, gd_push_query *q, gd_str key, int64_t ts, const gd_value *in,
                              const gd_eval *ctx)
{
    const gd_tabledef *t = q->plan.aggregate;
    if (ts > q->stream_time) q->stream_time = ts;
    gd_session *x = gd_sessions_join(t, &q->sessions, key, ts, q->grace_ms, q->stream_time, &q->dict, session_merged, q);
    if (!x) return;
    for (int c = 0; c < t->nslots; c++) {
        const gd_coldef *col = &t->cols[c];
        if (col->agg == GD_AGG_EXPR || c == t->session_end) continue;
        gd_value v = col->field >= 0 ? in[col->field] : col->arg ? gd_expr_eval(col->arg, ctx) : (gd_value){0};
        gd_slot_update(col, &x->slots[c], v, &x->arena, &q->interner);
    }
    if (x->start < q->oldest_open) q->oldest_open = x->start;
    if (!q->plan.emit_final) emit_group(r, q, x->start, x->key, x->slots, ctx);
    /* a look visits every group: only when one may have closed (a session
     * ends after it starts), and with EMIT CHANGES (nothing to emit) seldom */
    bool may_close = q->stream_time - t->window_ms - q->grace_ms > q->oldest_open;
    if (++q->since_closing >= CLOSE_SESSIONS_EVERY || q->plan.emit_final) {
        if (!may_close) return;
        q->since_closing = 0;
        session_emit emit_ctx = {r, q, ctx};
        q->oldest_open = gd_sessions_close(t, &q->sessions, q->grace_ms, q->stream_time, &q->dict,
                                           q->plan.emit_final ? emit_closed_session : NULL, &emit_ctx);
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
    if (t->session) {
        aggregate_session(r, q, (gd_str){key->p ? key->p : "", (uint32_t)key->len}, ts, in, ctx);
        return;
    }
    int64_t last = gd_window_last(t, ts), step = gd_window_step(t);
    for (int64_t start = gd_window_first(t, ts); start <= last; start += step) {
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
        if (!q->plan.emit_final) emit_group(r, q, start, g->key, g->slots, ctx);
    }
    if (ts > q->stream_time) q->stream_time = ts; /* a record past it is late for no window */
    close_windows(r, q, ctx);
}

/* ---- the thread ---- */

bool gd_sql_filters_pass(const gd_query_plan *plan, const gd_value *row, gd_arena *scratch)
{
    gd_eval ctx = {.column = gd_value_array_column, .row = row, .scratch = scratch};
    return !plan->where || gd_expr_true(plan->where, &ctx);
}

/* An input row for q: event id and its text. */
static void apply(gd_sql_runner *r, gd_push_query *q, const gd_value *in, uint64_t id, gd_str text, int64_t now_ms)
{
    gd_eval ctx = {.column = gd_value_array_column, .row = in, .now_ms = now_ms, .scratch = &r->scratch};
    if (q->plan.kind == GD_PLAN_PUSH_AGGREGATE) {
        aggregate(r, q, in, &ctx);
        return;
    }
    if (q->plan.where && !gd_expr_true(q->plan.where, &ctx)) return;
    if (!q->events) {
        emit(r, q, in, &ctx);
        return;
    }
    gd_hub_publish(r->hub, gd_query_hub(q->slot), id, text.p, text.len);
    q->next_id = id;
    atomic_fetch_add_explicit(&r->rows_out, 1, memory_order_relaxed);
}

static void query_free(gd_sql_runner *r, gd_push_query *q)
{
    if (q->started) gd_hub_subscribed(r->hub, q->source, -1);
    while (q->windows) {
        twindow *next = q->windows->next;
        free_window(q, q->windows);
        q->windows = next;
    }
    for (size_t i = 0; i < q->sessions.cap; i++)
        if (gd_map_live(&q->sessions.slots[i]))
            for (gd_session *x = q->sessions.slots[i].val, *next; x; x = next) {
                next = x->next;
                gd_session_free(q->plan.aggregate, x, &q->dict);
            }
    gd_map_free(&q->sessions);
    gd_interner_free(&q->interner);
    gd_dict_free(&q->dict);
    gd_arena_free(&q->arena);
    free(q);
}

/* A client leaves; the last one hands the query to the thread to end. */
static void release_query(gd_sql_runner *r, gd_push_query *q)
{
    pthread_mutex_lock(&r->lock);
    if (--q->refs == 0) {
        gd_push_query **link = &r->queries;
        while (*link && *link != q) link = &(*link)->next;
        if (*link) *link = q->next;
        q->next_ended = r->ended;
        r->ended = q;
    }
    pthread_mutex_unlock(&r->lock);
}

/* The index key of value v of column col of source: numbers by value (as
 * equality compares them), strings by their bytes. */
static gd_str index_key(gd_buf *b, unsigned source, int col, gd_value v)
{
    if (v.t == GD_V_DBL && v.d >= -9.2e18 && v.d <= 9.2e18 && v.d == (double)(int64_t)v.d) v = (gd_value){.t = GD_V_INT, .i = (int64_t)v.d};
    if (v.t == GD_V_BOOL) v.t = GD_V_INT;
    gd_buf_clear(b);
    gd_buf_printf(b, "%u.%d.%c", source, col, v.t == GD_V_STR ? 's' : v.t == GD_V_INT ? 'i' : 'd');
    gd_value_text(v, b);
    return (gd_str){b->p, (uint32_t)b->len};
}

/* q's first conjunct that is a column equal to a value, or NULL. */
static const gd_expr *indexed_equality(const gd_expr *e)
{
    if (!e) return NULL;
    if (e->op == GD_E_AND) {
        const gd_expr *x = indexed_equality(e->args[0]);
        return x ? x : indexed_equality(e->args[1]);
    }
    bool eq = e->op == GD_E_EQ && e->args[0]->op == GD_E_COL && e->args[1]->op == GD_E_LIT;
    return eq && e->args[1]->lit.t != GD_V_NULL ? e : NULL;
}

/* The chain q is filed in: under the index key of its first equality
 * when it has one (and its source has room for the column: *key set),
 * else its source's others. */
static qlink **chain_of(gd_sql_runner *r, gd_push_query *q, gd_str *key)
{
    source_queries *sq = &r->by_source[q->source];
    const gd_expr *eq = q->plan.kind == GD_PLAN_PUSH_AGGREGATE ? NULL : indexed_equality(q->plan.where);
    int col = eq ? eq->args[0]->index : -1, k = 0;
    while (k < sq->ncols && sq->cols[k] != col) k++;
    if (eq && k == sq->ncols && k < MAX_INDEXED) sq->cols[sq->ncols++] = col;
    if (!eq || k == MAX_INDEXED) return &sq->others;
    *key = index_key(&r->key, q->source, col, eq->args[1]->lit);
    bool created;
    return (qlink **)&gd_map_upsert(&r->index, *key, &created)->val;
}

static void index_query(gd_sql_runner *r, gd_push_query *q)
{
    source_queries *sq = &r->by_source[q->source];
    int width = q->plan.row_width > q->plan.source->width ? q->plan.row_width : q->plan.source->width;
    if (width > sq->width) sq->width = width;
    qlink *l = malloc(sizeof *l);
    if (!l) { /* out of memory: the query sees no events, its clients only its end */
        gd_error("push query %s: out of memory for its index entry", q->id);
        return;
    }
    gd_str key = {0};
    qlink **chain = chain_of(r, q, &key);
    *l = (qlink){q, *chain};
    *chain = l;
}

static void unindex_query(gd_sql_runner *r, gd_push_query *q)
{
    gd_str key = {0};
    qlink **link = chain_of(r, q, &key);
    while (*link && (*link)->q != q) link = &(*link)->next;
    if (!*link) return;
    qlink *l = *link;
    *link = l->next;
    free(l); /* an empty chain leaves its slot NULL: deleted, for the map */
}

/* Takes the queries that started and ended since the thread last looked
 * into its list and index; ends the ended ones. */
static void take_changes(gd_sql_runner *r)
{
    pthread_mutex_lock(&r->lock);
    gd_push_query *added = r->added, *ended = r->ended;
    r->added = r->ended = NULL;
    pthread_mutex_unlock(&r->lock);
    for (gd_push_query *q = added; q; q = q->next_added) {
        q->held_at = r->nheld;
        r->held[r->nheld++] = q;
        index_query(r, q);
    }
    while (ended) {
        gd_push_query *q = ended;
        ended = q->next_ended;
        unindex_query(r, q);
        r->held[q->held_at] = r->held[--r->nheld];
        r->held[q->held_at]->held_at = q->held_at;
        gd_hub_discard(r->hub, gd_query_hub(q->slot)); /* its rows' memory, before the slot is taken again */
        pthread_mutex_lock(&r->lock);
        r->slot_used[q->slot] = false;
        pthread_mutex_unlock(&r->lock);
        query_free(r, q);
    }
}

/* The next event of source at *pos as an input row (width values): GD_OK,
 * GD_AGAIN when there is none, GD_ERR when it is no row of ours (lost,
 * overwritten while read, too long, not a row); *lost grows by the events
 * lost. The text is in r->text. */
static int next_row(gd_sql_runner *r, unsigned source, const gd_catalog_entry *entry, uint64_t *pos, uint64_t *lost,
                    uint64_t *id, gd_value *row, int width)
{
    gd_hub_event ev;
    int rc = gd_hub_peek(r->hub, source, pos, &ev, &r->event, lost);
    if (rc != GD_OK) return rc;
    gd_buf_clear(&r->text);
    if (ev.text.len <= MAX_TEXT) gd_buf_put(&r->text, ev.text.p, ev.text.len);
    if (!gd_hub_release(r->hub, source, pos, &ev, lost) || ev.text.len > MAX_TEXT) return GD_ERR;
    atomic_fetch_add_explicit(&r->events_in, 1, memory_order_relaxed);
    gd_arena_reset(&r->scratch);
    *id = ev.id;
    return gd_sql_event_row(entry, (gd_str){r->text.p, (uint32_t)r->text.len}, row, width, &r->scratch) ? GD_OK : GD_ERR;
}

static const gd_catalog_entry *source_entry(const gd_sql_runner *r, unsigned source)
{
    for (int i = 0; i < r->nheld; i++)
        if (r->held[i]->source == source) return r->held[i]->plan.source;
    return NULL;
}

/* Hands a row to the joined queries on source that may take it: those
 * indexed under one of its values, and the others. */
static void dispatch(gd_sql_runner *r, unsigned source, const gd_value *row, uint64_t id)
{
    source_queries *sq = &r->by_source[source];
    gd_str text = {r->text.p, (uint32_t)r->text.len};
    int64_t now = gd_now_ms();
    for (int k = 0; k < sq->ncols; k++) {
        if (row[sq->cols[k]].t == GD_V_NULL) continue;
        for (qlink *l = gd_map_get(&r->index, index_key(&r->key, source, sq->cols[k], row[sq->cols[k]])); l; l = l->next)
            if (l->q->joined) apply(r, l->q, row, id, text, now);
    }
    for (qlink *l = sq->others; l; l = l->next)
        if (l->q->joined) apply(r, l->q, row, id, text, now);
}

/* Reads what a source's ring holds past the thread's position into the
 * queries on it; the number of events read. */
static size_t read_source(gd_sql_runner *r, unsigned source)
{
    reader *rd = &r->readers[source];
    const gd_catalog_entry *entry = source_entry(r, source);
    if (!entry) return 0;
    int width = r->by_source[source].width;
    gd_value row[width + 1];
    size_t n = 0;
    while (n < PASS_EVENTS) {
        uint64_t lost_before = rd->lost, id;
        int rc = next_row(r, source, entry, &rd->pos, &rd->lost, &id, row, width);
        if (rc == GD_AGAIN) break;
        n++;
        if (rd->lost > lost_before) {
            atomic_fetch_add(&r->events_lost, rd->lost - lost_before);
            for (int i = 0; i < r->nheld; i++)
                if (r->held[i]->source == source && r->held[i]->joined) notice_lost(r, r->held[i], rd->lost - lost_before);
        }
        if (rc == GD_OK) dispatch(r, source, row, id);
    }
    return n;
}

/* Queries that started behind the thread's position in their source (a
 * subscription resuming after an event it saw) read from where each
 * started, together, until they reach it and join; the number of events
 * read. */
static size_t catch_up(gd_sql_runner *r, unsigned source)
{
    reader *rd = &r->readers[source];
    gd_push_query *behind[r->nheld + 1];
    int nb = 0;
    uint64_t pos = UINT64_MAX;
    for (int i = 0; i < r->nheld; i++) {
        gd_push_query *q = r->held[i];
        if (q->source != source || q->joined) continue;
        behind[nb++] = q;
        if (q->pos < pos) pos = q->pos;
    }
    if (!nb) return 0;
    const gd_catalog_entry *entry = behind[0]->plan.source;
    int width = r->by_source[source].width;
    gd_value row[width + 1];
    size_t n = 0;
    while (pos < rd->pos && n < PASS_EVENTS) {
        uint64_t at = pos, lost = 0, id;
        int rc = next_row(r, source, entry, &pos, &lost, &id, row, width);
        if (rc == GD_AGAIN) break;
        n++;
        int64_t now = gd_now_ms();
        for (int i = 0; i < nb; i++) {
            if (behind[i]->pos > at) continue;
            if (lost) notice_lost(r, behind[i], lost);
            if (rc == GD_OK) apply(r, behind[i], row, id, (gd_str){r->text.p, (uint32_t)r->text.len}, now);
        }
    }
    for (int i = 0; i < nb; i++) {
        if (behind[i]->pos < pos) behind[i]->pos = pos;
        behind[i]->joined = behind[i]->pos >= rd->pos;
    }
    return n;
}

/* Starts reading a source where its earliest query started, stops when
 * none reads it; a query that starts at or past the thread's position
 * joins it, one behind catches up. */
static void follow_sources(gd_sql_runner *r)
{
    uint64_t from[SOURCES];
    bool wanted[SOURCES] = {false};
    for (int i = 0; i < r->nheld; i++) {
        unsigned s = r->held[i]->source;
        if (!wanted[s] || r->held[i]->pos < from[s]) from[s] = r->held[i]->pos;
        wanted[s] = true;
    }
    for (unsigned s = 0; s < SOURCES; s++) {
        reader *rd = &r->readers[s];
        if (wanted[s] && !rd->reading) {
            rd->pos = from[s];
            rd->reading = true;
        } else if (!wanted[s]) {
            rd->reading = false;
        }
    }
    for (int i = 0; i < r->nheld; i++) {
        gd_push_query *q = r->held[i];
        if (!q->joined && q->pos >= r->readers[q->source].pos) q->joined = true;
    }
}

static void *runner_main(void *arg)
{
    gd_sql_runner *r = arg;
    while (!atomic_load(&r->stop)) {
        take_changes(r);
        follow_sources(r);
        size_t n = 0;
        for (unsigned s = 0; s < SOURCES; s++)
            if (r->readers[s].reading) n += catch_up(r, s) + read_source(r, s);
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
    gd_map_init(&r->index, NULL);
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
    while (r->ended) { /* ended after the thread's last look */
        gd_push_query *next = r->ended->next_ended;
        query_free(r, r->ended);
        r->ended = next;
    }
    pthread_mutex_destroy(&r->lock);
    gd_buf_free(&r->event);
    gd_buf_free(&r->text);
    gd_buf_free(&r->out);
    gd_buf_free(&r->key);
    gd_buf_free(&r->key_text);
    for (size_t i = 0; i < r->index.cap; i++) /* the chains (the queries are freed above) */
        for (qlink *l = r->index.slots[i].used ? r->index.slots[i].val : NULL, *next; l; l = next) next = l->next, free(l);
    for (unsigned s = 0; s < SOURCES; s++)
        for (qlink *l = r->by_source[s].others, *next; l; l = next) next = l->next, free(l);
    gd_map_free(&r->index);
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

/* A query not yet planned. */
static gd_push_query *alloc_query(gd_sql_error *err)
{
    gd_push_query *q = calloc(1, sizeof *q);
    if (!q) {
        gd_sql_fail(err, GD_SQL_SERVER_ERROR, "out of memory");
        return NULL;
    }
    gd_arena_init(&q->arena);
    gd_dict_init(&q->dict);
    gd_map_init(&q->sessions, NULL);
    q->oldest_open = INT64_MAX;
    gd_interner_init(&q->interner, &q->dict);
    return q;
}

/* A new query for the statement, planned in its own arena. */
static gd_push_query *new_query(gd_sql_runner *r, const char *sql, bool sees_pii, gd_sql_error *err)
{
    gd_push_query *q = alloc_query(err);
    if (!q) return NULL;
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
    q->start_pos = q->pos = gd_hub_head(r->hub, q->source);
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

/* The running query with key, a reference taken; NULL when none. Under
 * the lock. */
static gd_push_query *find_query(gd_sql_runner *r, const char *key, bool (*fits)(const gd_push_query *q, const void *ctx),
                                 const void *ctx)
{
    for (gd_push_query *q = r->queries; q; q = q->next)
        if (key[0] && !strcmp(q->key, key) && (!fits || fits(q, ctx))) {
            q->refs++;
            return q;
        }
    return NULL;
}

/* Starts q: a stream, an id, a place among the running. */
static int install(gd_sql_runner *r, gd_push_query *q, gd_sql_error *err)
{
    unsigned char nonce[16];
    if (getrandom(nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce) {
        query_free(r, q);
        return gd_sql_fail(err, GD_SQL_SERVER_ERROR, "no random bytes for the query's id");
    }
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
    if (!q->events) q->next_id = gd_hub_head(r->hub, gd_query_hub(slot)) + 1;
    q->next = r->queries;
    r->queries = q;
    q->next_added = r->added;
    r->added = q;
    pthread_mutex_unlock(&r->lock);
    return GD_OK;
}

int gd_sql_runner_join(gd_sql_runner *r, const char *sql, bool sees_pii, gd_push_query **out, unsigned *hub_stream,
                       gd_sql_error *err)
{
    char key[sizeof ((gd_push_query *)0)->key];
    query_key(sql, sees_pii, key, sizeof key);
    pthread_mutex_lock(&r->lock);
    gd_push_query *q = find_query(r, key, NULL, NULL);
    pthread_mutex_unlock(&r->lock);
    if (!q) {
        if (!(q = new_query(r, sql, sees_pii, err))) return GD_ERR;
        memcpy(q->key, key, sizeof key);
        if (install(r, q, err)) return GD_ERR;
    }
    *out = q;
    *hub_stream = gd_query_hub(q->slot);
    return GD_OK;
}

/* What identifies a filtered subscription: its entry and its filters in
 * name order, each value with its length (so that no value reads as more
 * filters); "" when that does not fit (the query is then not shared). */
static void filter_key(const gd_catalog_entry *e, const char *const *names, const char *const *values, int n, char *out,
                       size_t cap)
{
    gd_buf b = {0};
    gd_buf_printf(&b, "F%s", e->name);
    const char *last = "";
    for (int k = 0; k < n; k++) { /* names are distinct: each pass takes the next larger */
        int next = -1;
        for (int i = 0; i < n; i++)
            if (strcmp(names[i], last) > 0 && (next < 0 || strcmp(names[i], names[next]) < 0)) next = i;
        last = names[next];
        gd_buf_printf(&b, "\n%s=%zu:%s", names[next], strlen(values[next]), values[next]);
    }
    if (b.len < cap) memcpy(out, b.p, b.len + 1);
    else out[0] = 0;
    gd_buf_free(&b);
}

static bool covers(const gd_push_query *q, const void *from) { return q->start_pos <= *(const uint64_t *)from; }

/* A filtered subscription's query: planned, reading its entry's stream
 * from position from. */
static gd_push_query *new_filter_query(gd_sql_runner *r, const gd_catalog_entry *e, const char *const *names,
                                       const char *const *values, int n, uint64_t from, gd_sql_error *err)
{
    gd_push_query *q = alloc_query(err);
    if (!q) return NULL;
    if (gd_sql_plan_filters(e, names, values, n, &q->arena, &q->plan, err)) {
        query_free(r, q);
        return NULL;
    }
    q->events = true;
    q->source = e->is_table ? gd_table_hub(e->slot) : gd_stream_hub(e->slot);
    q->start_pos = q->pos = from;
    return q;
}

static int refuse_pii(const gd_query_plan *plan, gd_sql_error *err)
{
    char msg[256];
    gd_pii_refusal(plan->pii_use, msg, sizeof msg);
    err->http_status = 403;
    return gd_sql_fail(err, GD_SQL_FORBIDDEN, "%s", msg);
}

int gd_sql_runner_join_filters(gd_sql_runner *r, const gd_catalog_entry *e, const char *const *names,
                               const char *const *values, int n, bool sees_pii, const uint64_t *after_id,
                               gd_push_query **out, unsigned *hub_stream, uint64_t *pos, gd_sql_error *err)
{
    char key[sizeof ((gd_push_query *)0)->key];
    filter_key(e, names, values, n, key, sizeof key);
    unsigned source = e->is_table ? gd_table_hub(e->slot) : gd_stream_hub(e->slot);
    uint64_t from = gd_hub_head(r->hub, source), oldest;
    if (after_id) gd_hub_resume(r->hub, source, *after_id, &from, &oldest);
    pthread_mutex_lock(&r->lock);
    gd_push_query *q = find_query(r, key, covers, &from); /* one that has read the source from there */
    pthread_mutex_unlock(&r->lock);
    if (q) {
        if (q->plan.pii_use.column && !sees_pii) {
            release_query(r, q);
            return refuse_pii(&q->plan, err);
        }
        unsigned stream = gd_query_hub(q->slot);
        if (!after_id || !gd_hub_resume(r->hub, stream, *after_id, pos, &oldest)) *pos = gd_hub_head(r->hub, stream);
    } else {
        if (!(q = new_filter_query(r, e, names, values, n, from, err))) return GD_ERR;
        if (q->plan.pii_use.column && !sees_pii) {
            int rc = refuse_pii(&q->plan, err);
            query_free(r, q);
            return rc;
        }
        memcpy(q->key, key, sizeof key);
        if (install(r, q, err)) return GD_ERR;
        *pos = gd_hub_head(r->hub, gd_query_hub(q->slot));
    }
    *out = q;
    *hub_stream = gd_query_hub(q->slot);
    return GD_OK;
}

void gd_sql_runner_leave(gd_sql_runner *r, gd_push_query *q) { release_query(r, q); }

const char *gd_push_query_id(const gd_push_query *q) { return q->id; }
const gd_query_plan *gd_push_query_plan(const gd_push_query *q) { return &q->plan; }

void gd_sql_runner_list(gd_sql_runner *r, gd_sql_query_fn fn, void *ctx)
{
    pthread_mutex_lock(&r->lock);
    for (gd_push_query *q = r->queries; q; q = q->next) /* filtered subscriptions are not SQL's */
        if (!q->events) fn(ctx, q->id, q->key + 1, q->refs);
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
