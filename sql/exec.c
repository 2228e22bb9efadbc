/* exec.c -- pull queries: a plan over one LMDB read transaction; the one
 * read path of SQL's pull queries (api/ksql.c), REST's (api/pull.c, whose
 * plan gd_sql_plan_rows makes) and Grafana's (api/grafana.c, whose plan
 * gd_sql_plan_dashboard makes).
 *
 * The plan narrows the scan (key values, window starts: store/query.c
 * seeks to them; or only the newest window holding a row sought); every
 * row read becomes the table's row of values (keys, WINDOWSTART, WINDOWEND,
 * value columns), which the WHERE filters and the select list projects --
 * the WHERE's conjuncts over the row key alone (plan->where_keys) on the
 * key, before the row is decoded, so that a row they refuse is not.
 * The order is total: the ORDER BY columns, then the LMDB row key, so a
 * row's place (its first order value and its key, gd_sql_pos) is where
 * the next page starts -- rows at or before plan->after are skipped (keyset
 * paging). Without an order rows stream out as they are read and LIMIT
 * stops the scan; with one they are kept -- with a LIMIT in a bounded
 * max-heap of that many, however many match; without, all of them up to
 * MAX_SORTED_ROWS -- then sorted and handed over. Strings point into the
 * transaction's pages or the query's arena, both alive until the last row
 * is handed over. The scans stop at the request's deadline
 * (store/query.h), and the query is then an error. */
#include <stdlib.h>
#include <string.h>

#include "../server/json.h"
#include "sql.h"

enum { MAX_SORTED_ROWS = 1000000, MAX_KEY_COMBINATIONS = 4096 };

/* ---- rows of values ---- */

static gd_value json_value(const gd_jval *v, gd_coltype type)
{
    switch (v->t) {
    case GD_J_STR: return (gd_value){.t = GD_V_STR, .s = v->s};
    case GD_J_INT:
        return type == GD_T_DOUBLE ? (gd_value){.t = GD_V_DBL, .d = (double)v->i} : (gd_value){.t = GD_V_INT, .i = v->i};
    case GD_J_DBL: return (gd_value){.t = GD_V_DBL, .d = v->d};
    case GD_J_BOOL: return (gd_value){.t = GD_V_BOOL, .i = v->b};
    default: return (gd_value){.t = GD_V_NULL};
    }
}

/* An ARRAY or MAP column of a row its table published, back into a
 * gd_list in scratch; NULL when the JSON is not one. */
static gd_value json_list(const gd_jval *v, gd_coltype type, gd_arena *scratch)
{
    bool map = type == GD_T_MAP_STRING_BIGINT;
    gd_value out = {.t = GD_V_NULL};
    if (v->t != (map ? GD_J_OBJ : GD_J_ARR)) return out;
    gd_buf b = {0};
    gd_json j;
    gd_jval e;
    gd_str name;
    int more;
    gd_json_init(&j, v->raw, scratch);
    if (map ? gd_json_object_begin(&j) : gd_json_array_begin(&j)) return out;
    while ((more = map ? gd_json_next_key(&j, &name) : gd_json_next_element(&j)) == 1) {
        if (gd_json_value(&j, &e)) break;
        if (map) gd_list_put(&b, (gd_value){.t = GD_V_STR, .s = name});
        gd_list_put(&b, json_value(&e, gd_coltype_member(type)));
    }
    if (more == 0) {
        gd_value text = gd_value_from_buf(&b, scratch); /* frees b */
        out = (gd_value){.t = map ? GD_V_MAP : GD_V_ARRAY, .s = text.s};
    }
    gd_buf_free(&b);
    return out;
}

/* Fills row (width values, NULL first) from a flat JSON object, each member
 * by name at index(name); false when it is not such an object. */
static bool object_row(gd_str json, gd_arena *scratch, gd_value *row, int width,
                       int (*index)(const void *ctx, gd_str name, gd_coltype *type), const void *ctx)
{
    for (int i = 0; i < width; i++) row[i] = (gd_value){.t = GD_V_NULL};
    gd_json j;
    gd_json_init(&j, json, scratch);
    if (gd_json_object_begin(&j)) return false;
    gd_str name;
    int more;
    while ((more = gd_json_next_key(&j, &name)) == 1) {
        gd_jval v;
        if (gd_json_value(&j, &v)) return false;
        gd_coltype type;
        int at = index(ctx, name, &type);
        if (at == -2) return false; /* a member that says the row is no row (deleted) */
        if (at >= 0 && at < width) row[at] = gd_coltype_collection(type) ? json_list(&v, type, scratch) : json_value(&v, type);
    }
    return more == 0;
}

static int table_index(const void *ctx, gd_str name, gd_coltype *type)
{
    const gd_tabledef *t = ctx;
    int at = 0;
    for (int k = 0; k < t->nkeys; k++, at++)
        if (gd_str_eq(name, gd_str_c(t->keys[k].name))) return *type = t->keys[k].type, at;
    if (gd_table_windowed(t)) {
        if (gd_str_eq(name, gd_str_c("window_start"))) return *type = GD_T_BIGINT, at;
        if (gd_str_eq(name, gd_str_c("window_end"))) return *type = GD_T_BIGINT, at + 1;
        at += 2;
    }
    for (int c = 0; c < t->ncols; c++, at++)
        if (gd_str_eq(name, gd_str_c(t->cols[c].name))) return *type = t->cols[c].type, at;
    if (gd_str_eq(name, gd_str_c("deleted"))) return -2;
    return -1;
}

/* A stream's event names its members in the order of its columns, so the
 * search for a member starts at the column after the last one found: one
 * comparison a member, not a scan of the columns before it (the push-query
 * thread reads every event of a stream someone filters). */
typedef struct {
    const gd_catalog_entry *e;
    int *next;
} stream_cursor;

static int stream_index(const void *ctx, gd_str name, gd_coltype *type)
{
    const stream_cursor *cur = ctx;
    const gd_catalog_entry *e = cur->e;
    for (int k = 0; k < e->ncols; k++) {
        int c = (*cur->next + k) % e->ncols;
        if (!gd_str_eq(name, gd_str_c(e->cols[c].name))) continue;
        *cur->next = c + 1;
        return *type = e->cols[c].type, e->cols[c].id;
    }
    return -1;
}

bool gd_sql_event_row(const gd_catalog_entry *e, gd_str json, gd_value *row, int width, gd_arena *scratch)
{
    if (e->is_table) return object_row(json, scratch, row, width, table_index, e->table);
    int next = 0;
    return object_row(json, scratch, row, width, stream_index, &(stream_cursor){e, &next});
}

int gd_sql_table_row(const gd_tabledef *t, gd_str key, gd_str val, gd_value *row, gd_arena *scratch)
{
    int width = t->nkeys + (gd_table_windowed(t) ? 2 : 0) + t->ncols;
    if (!gd_table_aggregates(t)) { /* a reference row: JSON, its key first */
        if (!object_row(val, scratch, row, width, table_index, t)) return GD_ERR;
        row[0] = (gd_value){.t = GD_V_STR, .s = key};
        return GD_OK;
    }
    gd_str keys[GD_MAX_KEYS];
    gd_slot slots[GD_MAX_COLS];
    gd_row r;
    if (key.len < 8 || gd_groupkey_split(key.p + 8, key.len - 8, t->nkeys, keys) ||
        gd_row_decode(t, val.p, val.len, slots))
        return GD_ERR;
    if (!gd_row_compute(t, keys, gd_rowkey_window(key.p), slots, &r, scratch)) return GD_EOF; /* HAVING */
    int at = 0;
    for (int k = 0; k < t->nkeys; k++) row[at++] = r.keys[k];
    if (gd_table_windowed(t)) {
        row[at++] = (gd_value){.t = GD_V_INT, .i = r.window_start};
        row[at++] = (gd_value){.t = GD_V_INT, .i = r.window_end};
    }
    for (int c = 0; c < t->ncols; c++) row[at++] = r.cols[c];
    return GD_OK;
}

/* ---- the order ---- */

/* Total order of values: nulls below all, numbers (booleans as 0 and 1) by
 * value, strings bytewise and above numbers (a reference row's member may
 * hold either). */
static int value_cmp(gd_value a, gd_value b)
{
    if (a.t == GD_V_BOOL) a.t = GD_V_INT;
    if (b.t == GD_V_BOOL) b.t = GD_V_INT;
    if (a.t == GD_V_NULL || b.t == GD_V_NULL) return (a.t != GD_V_NULL) - (b.t != GD_V_NULL);
    if (a.t == GD_V_STR || b.t == GD_V_STR) {
        if (a.t != b.t) return a.t == GD_V_STR ? 1 : -1;
        return gd_value_cmp(a, b);
    }
    if (a.t == GD_V_INT && b.t == GD_V_INT) return (a.i > b.i) - (a.i < b.i);
    double x = a.t == GD_V_INT ? (double)a.i : a.d, y = b.t == GD_V_INT ? (double)b.i : b.d;
    return (x > y) - (x < y);
}

/* Order column i of two rows: nulls first ascending and last descending
 * with nulls_low, else last either way. */
static int column_order(const gd_query_plan *plan, int i, gd_value a, gd_value b)
{
    bool null_a = a.t == GD_V_NULL, null_b = b.t == GD_V_NULL;
    if ((null_a || null_b) && !plan->nulls_low) return null_a - null_b;
    int c = value_cmp(a, b);
    return plan->order[i].desc ? -c : c;
}

/* The row key: the last tie-break, so that the order is total. */
static int key_order(const gd_query_plan *plan, gd_str a, gd_str b)
{
    uint32_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.p, b.p, n) : 0;
    if (!c) c = (a.len > b.len) - (a.len < b.len);
    return plan->key_desc ? -c : c;
}

/* Whether a row at pos comes after plan->after (norder <= 1). */
static bool after_start(const gd_query_plan *plan, const gd_sql_pos *pos)
{
    int c = plan->norder ? column_order(plan, 0, pos->sort, plan->after->sort) : 0;
    return (c ? c : key_order(plan, pos->key, plan->after->key)) > 0;
}

/* ---- the scan ---- */

typedef struct {
    gd_sql_pos pos;
    size_t slot; /* its values: rows[slot * ncols] */
} kept;

typedef struct {
    const gd_query_plan *plan;
    int64_t now_ms;
    int64_t deadline_ms; /* of the scans; 0: none */
    int64_t window_to;   /* plan's, or before an EMIT FINAL table's first open window */
    int64_t final_stream_time; /* an EMIT FINAL table's committed stream time: its sessions closed then show */
    gd_sql_row_fn fn;
    void *ctx;
    gd_arena arena; /* strings of rows kept for sorting */
    gd_value *in, *out;
    int64_t emitted;
    int stop;
    int rc;
    gd_sql_error *err;
    /* sorted: the rows kept -- with a LIMIT, a max-heap of the first
     * LIMIT in the order; without, all of them, as they came */
    kept *heap;
    gd_value *rows;
    size_t n, cap;
} pull;

/* Hands a row over; non-zero when no more are wanted (LIMIT reached: the
 * scan stops at once). */
static int emit(pull *p, const gd_value *row, const gd_sql_pos *pos)
{
    int64_t limit = p->plan->limit;
    if (limit >= 0 && p->emitted >= limit) return 1;
    p->emitted++;
    return p->fn(p->ctx, row, p->plan->ncols, pos) || (limit >= 0 && p->emitted >= limit);
}

/* Two rows in the order: their values and row keys. */
static int rows_cmp(const gd_query_plan *plan, const gd_value *u, gd_str ukey, const gd_value *v, gd_str vkey)
{
    for (int i = 0; i < plan->norder; i++) {
        int c = column_order(plan, i, u[plan->order_cols[i]], v[plan->order_cols[i]]);
        if (c) return c;
    }
    return key_order(plan, ukey, vkey);
}

static const gd_value *kept_row(const pull *p, const kept *k) { return &p->rows[k->slot * (size_t)p->plan->ncols]; }

static int kept_cmp(const void *x, const void *y, void *ctx)
{
    const pull *p = ctx;
    const kept *a = x, *b = y;
    return rows_cmp(p->plan, kept_row(p, a), a->pos.key, kept_row(p, b), b->pos.key);
}

static void swap_kept(pull *p, size_t i, size_t j)
{
    kept tmp = p->heap[i];
    p->heap[i] = p->heap[j];
    p->heap[j] = tmp;
}

static void sift_down(pull *p, size_t i)
{
    for (;;) {
        size_t big = i, l = 2 * i + 1, r = l + 1;
        if (l < p->n && kept_cmp(&p->heap[l], &p->heap[big], p) > 0) big = l;
        if (r < p->n && kept_cmp(&p->heap[r], &p->heap[big], p) > 0) big = r;
        if (big == i) return;
        swap_kept(p, i, big);
        i = big;
    }
}

/* Room for one more kept row; false (the query failed) when there is none. */
static bool make_room(pull *p)
{
    if (p->n < p->cap) return true;
    if (p->cap >= MAX_SORTED_ROWS) {
        p->rc = gd_sql_fail(p->err, GD_SQL_BAD_STATEMENT,
                            "ORDER BY over more than %d rows: narrow the query with WHERE or LIMIT", MAX_SORTED_ROWS);
        return false;
    }
    size_t cap = p->cap ? p->cap * 2 : 256;
    if (p->plan->limit >= 0 && cap > (size_t)p->plan->limit) cap = (size_t)p->plan->limit;
    kept *heap = realloc(p->heap, sizeof *heap * cap);
    if (heap) p->heap = heap;
    gd_value *rows = heap ? realloc(p->rows, sizeof *rows * (size_t)p->plan->ncols * cap) : NULL;
    if (!rows) {
        p->rc = gd_sql_fail(p->err, GD_SQL_SERVER_ERROR, "out of memory sorting rows");
        return false;
    }
    p->rows = rows;
    p->cap = cap;
    return true;
}

/* Keeps a row to sort: every row without LIMIT; with it, the first LIMIT
 * in the order (a bounded max-heap, made once LIMIT rows are kept: fewer
 * need no heap), however many match. */
static bool keep(pull *p, const gd_value *row, const gd_sql_pos *pos)
{
    const gd_query_plan *plan = p->plan;
    size_t w = (size_t)plan->ncols;
    if (plan->limit == 0) return true;
    if (plan->limit < 0 || p->n < (size_t)plan->limit) {
        if (!make_room(p)) return false;
        p->heap[p->n] = (kept){*pos, p->n};
        memcpy(&p->rows[p->n * w], row, sizeof *row * w);
        if (++p->n == (size_t)plan->limit)
            for (size_t i = p->n / 2; i-- > 0;) sift_down(p, i);
        return true;
    }
    kept *top = &p->heap[0]; /* the last of the rows kept */
    if (rows_cmp(plan, row, pos->key, kept_row(p, top), top->pos.key) >= 0) return true;
    top->pos = *pos;
    memcpy(&p->rows[top->slot * w], row, sizeof *row * w);
    sift_down(p, 0);
    return true;
}

/* The part of a table's input row its row key holds: keys (a reference
 * table's one key), window bounds; false when it does not decode. */
static bool key_row(const gd_tabledef *t, gd_str key, gd_value *row)
{
    if (!gd_table_aggregates(t)) {
        row[0] = (gd_value){.t = GD_V_STR, .s = key};
        return true;
    }
    gd_str keys[GD_MAX_KEYS];
    if (key.len < 8 || gd_groupkey_split(key.p + 8, key.len - 8, t->nkeys, keys)) return false;
    for (int k = 0; k < t->nkeys; k++) row[k] = gd_key_value(t->keys[k].type, keys[k]);
    if (gd_table_windowed(t)) {
        row[t->nkeys] = (gd_value){.t = GD_V_INT, .i = gd_rowkey_window(key.p)};
        row[t->nkeys + 1] = gd_table_session(t) ? (gd_value){.t = GD_V_NULL} /* in the row (where_keys has none) */
                                                : (gd_value){.t = GD_V_INT, .i = row[t->nkeys].i + t->window_ms};
    }
    return true;
}

static int visit_row(void *ctx, gd_str key, gd_str val)
{
    pull *p = ctx;
    const gd_query_plan *plan = p->plan;
    bool sorting = plan->norder > 0 || plan->key_desc;
    if (!sorting) gd_arena_reset(&p->arena);
    gd_eval ev = {.column = gd_value_array_column, .row = p->in, .now_ms = p->now_ms, .scratch = &p->arena};
    if (plan->where_keys && (!key_row(plan->source->table, key, p->in) || !gd_expr_true(plan->where_keys, &ev)))
        return 0; /* refused by its key: not decoded */
    const gd_tabledef *t = plan->source->table;
    int rc = gd_sql_table_row(t, key, val, p->in, &p->arena);
    if (rc == GD_EOF) return 0;
    if (rc) return 0; /* a row that does not decode is not an answer */
    if (plan->final_only && t->session &&
        !gd_session_ended(t, p->in[t->nkeys + 1].i, plan->final_grace_ms, p->final_stream_time))
        return 0; /* a session still open */
    if (plan->where && !gd_expr_true(plan->where, &ev)) return 0;
    for (int c = 0; c < plan->ncols; c++) { /* a column as it is (SELECT *) needs no evaluation */
        const gd_expr *x = plan->proj[c];
        p->out[c] = x->op == GD_E_COL ? p->in[x->index] : gd_expr_eval(x, &ev);
    }
    gd_sql_pos pos = {plan->norder ? p->out[plan->order_cols[0]] : (gd_value){.t = GD_V_NULL}, key, val};
    if (plan->after && !after_start(plan, &pos)) return 0;
    if (sorting) return keep(p, p->out, &pos) ? 0 : (p->stop = 1);
    return p->stop = emit(p, p->out, &pos);
}

/* An EMIT FINAL table shows the windows closed at the stream time its
 * store committed last (read in the same transaction): the end of the
 * plan's window range, cut before the first window still open. */
static int64_t closed_windows_end(const gd_query_plan *plan, int64_t stream_time)
{
    const gd_tabledef *t = plan->source->table;
    if (stream_time == INT64_MIN) return INT64_MIN; /* nothing yet */
    int64_t open = t->session ? stream_time - t->window_ms - plan->final_grace_ms /* a closed one started before */
                              : gd_window_last_closed(t, plan->final_grace_ms, stream_time) + 1;
    return open < plan->window_to ? open : plan->window_to;
}

/* The stream time the store committed last (read in the pull's
 * transaction), or INT64_MIN. */
static int64_t committed_stream_time(gd_store *store, MDB_txn *txn)
{
    gd_str v;
    if (gd_store_meta_get(store, txn, "stream_time", &v) || v.len != 8) return INT64_MIN;
    return (int64_t)gd_get_u64be(v.p);
}

/* Runs the scan for one combination of the key values sought. */
static int scan(gd_store *store, MDB_txn *txn, pull *p, const gd_str *key_eq)
{
    const gd_query_plan *plan = p->plan;
    bool sorting = plan->norder > 0 || plan->key_desc; /* rows kept past visit_row */
    gd_query q = {.t = plan->source->table, .mode = plan->window_latest ? GD_WINDOWS_LATEST : GD_WINDOWS_RANGE,
                  .from = plan->window_from, .to = p->window_to, .deadline_ms = p->deadline_ms,
                  .hold = sorting ? &p->arena : NULL};
    memcpy(q.key_eq, key_eq, sizeof q.key_eq);
    return gd_query_run(store, txn, &q, visit_row, p);
}

/* The key values to seek: the cartesian product of the values given for
 * the key columns, as many columns as keep it within MAX_KEY_COMBINATIONS
 * (the rest are left to the WHERE). */
static int scan_keys(gd_store *store, MDB_txn *txn, pull *p)
{
    const gd_query_plan *plan = p->plan;
    const gd_tabledef *t = plan->source->table;
    bool sought[GD_MAX_KEYS] = {0};
    size_t combos = 1;
    for (int k = 0; k < t->nkeys; k++)
        if (plan->nkey_values[k] && combos * (size_t)plan->nkey_values[k] <= MAX_KEY_COMBINATIONS) {
            combos *= (size_t)plan->nkey_values[k];
            sought[k] = true;
        }
    gd_buf text[GD_MAX_KEYS] = {{0}};
    int idx[GD_MAX_KEYS] = {0};
    int rc = GD_OK;
    for (size_t n = 0; n < combos && !rc && !p->stop; n++) {
        gd_str key_eq[GD_MAX_KEYS] = {{0}};
        bool fits = true;
        for (int k = 0; k < t->nkeys; k++) {
            if (!sought[k]) continue;
            gd_value v = plan->key_values[k][idx[k]];
            if (t->keys[k].type == GD_T_STRING && v.t != GD_V_STR) fits = false;
            if (t->keys[k].type != GD_T_STRING && v.t == GD_V_STR) fits = false;
            if (v.t == GD_V_STR) { /* a string key's text is the string */
                key_eq[k] = v.s.p ? v.s : (gd_str){"", 0};
                continue;
            }
            gd_buf_clear(&text[k]);
            gd_key_text(t->keys[k].type == GD_T_DOUBLE ? gd_value_cast(v, GD_T_DOUBLE, NULL) : v, &text[k]);
            key_eq[k] = (gd_str){text[k].p ? text[k].p : "", (uint32_t)text[k].len};
        }
        if (fits) rc = scan(store, txn, p, key_eq);
        for (int k = t->nkeys - 1; k >= 0; k--) { /* next combination */
            if (!sought[k]) continue;
            if (++idx[k] < plan->nkey_values[k]) break;
            idx[k] = 0;
        }
    }
    for (int k = 0; k < t->nkeys; k++) gd_buf_free(&text[k]);
    return rc;
}

void gd_sql_put_row(gd_buf *out, const gd_query_plan *plan, const gd_value *row, bool sees_pii)
{
    gd_buf_putc(out, '[');
    for (int i = 0; i < plan->ncols; i++) {
        if (i) gd_buf_putc(out, ',');
        if (plan->pii[i] && !sees_pii) gd_json_put_masked(out, plan->pii[i], row[i]);
        else gd_json_put_value(out, row[i]);
    }
    gd_buf_putc(out, ']');
}

int gd_sql_pull(gd_store *store, const gd_query_plan *plan, int64_t now_ms, int64_t deadline_ms, gd_sql_row_fn fn,
                void *ctx, gd_sql_error *err)
{
    pull p = {.plan = plan, .now_ms = now_ms, .deadline_ms = deadline_ms, .fn = fn, .ctx = ctx, .err = err};
    gd_arena_init(&p.arena);
    p.in = calloc((size_t)plan->row_width + 1 + (size_t)plan->ncols + 1, sizeof *p.in); /* the input row, the output row */
    p.out = p.in ? p.in + plan->row_width + 1 : NULL;
    MDB_txn *txn = NULL;
    int rc = !p.in || !p.out ? gd_sql_fail(err, GD_SQL_SERVER_ERROR, "out of memory") : GD_OK;
    if (!rc && gd_store_begin_read(store, &txn)) rc = gd_sql_fail(err, GD_SQL_SERVER_ERROR, "the store cannot be read");
    if (!rc && plan->after && plan->norder > 1)
        rc = gd_sql_fail(err, GD_SQL_SERVER_ERROR, "a place to start after is for an order by one column");
    p.window_to = plan->window_to;
    if (!rc && plan->final_only) {
        p.final_stream_time = committed_stream_time(store, txn);
        p.window_to = closed_windows_end(plan, p.final_stream_time);
    }
    if (!rc && plan->window_from < p.window_to) {
        int scanned = scan_keys(store, txn, &p);
        if (scanned == GD_ETIMEDOUT)
            rc = gd_sql_fail(err, GD_SQL_TIMED_OUT, "the query took longer than --request-timeout and was stopped");
        else if (scanned == GD_EUNAVAIL)
            rc = gd_sql_fail(err, GD_SQL_UNAVAILABLE, "part of %s is held by another instance that cannot answer now "
                                                      "(a rebalance, or it is down); try again shortly",
                             plan->source->name);
        else if (scanned)
            rc = gd_sql_fail(err, GD_SQL_SERVER_ERROR, "reading the table failed");
        if (!rc) rc = p.rc;
    }
    if (!rc) { /* the rows kept, in order */
        if (p.n > 1) qsort_r(p.heap, p.n, sizeof *p.heap, kept_cmp, &p);
        for (size_t i = 0; i < p.n && !emit(&p, &p.rows[p.heap[i].slot * (size_t)plan->ncols], &p.heap[i].pos); i++) {}
    }
    if (txn) gd_store_end_read(store, txn);
    free(p.heap);
    free(p.rows);
    free(p.in);
    gd_arena_free(&p.arena);
    return rc;
}
