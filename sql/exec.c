/* exec.c -- pull queries: a plan over one LMDB read transaction.
 *
 * The plan narrows the scan (key values, window starts: store/query.c
 * seeks to them); every row read becomes the table's row of values
 * (keys, WINDOWSTART, WINDOWEND, value columns), which the WHERE filters
 * and the select list projects. Without ORDER BY rows stream out as they
 * are read and LIMIT stops the scan; with it they are gathered, sorted,
 * and cut. Strings point into the transaction's pages or the query's
 * arena, both alive until the last row is handed over. The scans stop at
 * the request's deadline (store/query.h), and the query is then an error. */
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
        if (at >= 0 && at < width) row[at] = json_value(&v, type);
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

static int stream_index(const void *ctx, gd_str name, gd_coltype *type)
{
    const gd_catalog_entry *e = ctx;
    for (int c = 0; c < e->ncols; c++)
        if (gd_str_eq(name, gd_str_c(e->cols[c].name))) return *type = e->cols[c].type, e->cols[c].id;
    return -1;
}

bool gd_sql_event_row(const gd_catalog_entry *e, gd_str json, gd_value *row, int width, gd_arena *scratch)
{
    if (e->is_table) return object_row(json, scratch, row, width, table_index, e->table);
    return object_row(json, scratch, row, width, stream_index, e);
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

/* ---- the scan ---- */

typedef struct {
    const gd_query_plan *plan;
    int64_t now_ms;
    int64_t deadline_ms; /* of the scans; 0: none */
    gd_sql_row_fn fn;
    void *ctx;
    gd_arena arena; /* strings of rows kept for sorting */
    gd_value *in, *out;
    int64_t emitted;
    int stop;
    int rc;
    gd_sql_error *err;
    /* ORDER BY: rows gathered */
    gd_value *rows;
    size_t nrows, cap;
} pull;

static int emit(pull *p, const gd_value *row)
{
    if (p->plan->limit >= 0 && p->emitted >= p->plan->limit) return 1;
    p->emitted++;
    return p->fn(p->ctx, row, p->plan->ncols);
}

static bool gather(pull *p, const gd_value *row)
{
    size_t w = (size_t)p->plan->ncols;
    if (p->nrows == p->cap) {
        if (p->cap >= MAX_SORTED_ROWS) {
            p->rc = gd_sql_fail(p->err, GD_SQL_BAD_STATEMENT,
                                "ORDER BY over more than %d rows: narrow the query with WHERE", MAX_SORTED_ROWS);
            return false;
        }
        size_t cap = p->cap ? p->cap * 2 : 256;
        gd_value *rows = realloc(p->rows, sizeof *rows * w * cap);
        if (!rows) {
            p->rc = gd_sql_fail(p->err, GD_SQL_SERVER_ERROR, "out of memory sorting rows");
            return false;
        }
        p->rows = rows;
        p->cap = cap;
    }
    memcpy(&p->rows[p->nrows++ * w], row, sizeof *row * w);
    return true;
}

static int visit_row(void *ctx, gd_str key, gd_str val)
{
    pull *p = ctx;
    const gd_query_plan *plan = p->plan;
    bool sorting = plan->norder > 0;
    if (!sorting) gd_arena_reset(&p->arena);
    int rc = gd_sql_table_row(plan->source->table, key, val, p->in, &p->arena);
    if (rc == GD_EOF) return 0;
    if (rc) return 0; /* a row that does not decode is not an answer */
    gd_eval ev = {.column = gd_value_array_column, .row = p->in, .now_ms = p->now_ms, .scratch = &p->arena};
    if (plan->where && !gd_expr_true(plan->where, &ev)) return 0;
    for (int c = 0; c < plan->ncols; c++) p->out[c] = gd_expr_eval(plan->proj[c], &ev);
    if (sorting) return gather(p, p->out) ? 0 : (p->stop = 1);
    return p->stop = emit(p, p->out);
}

static int compare_rows(const void *a, const void *b, void *ctx)
{
    const gd_query_plan *plan = ctx;
    const gd_value *x = a, *y = b;
    for (int i = 0; i < plan->norder; i++) {
        int c = plan->order_cols[i];
        gd_value u = x[c], v = y[c];
        int d;
        if (u.t == GD_V_NULL || v.t == GD_V_NULL) d = (u.t == GD_V_NULL) - (v.t == GD_V_NULL); /* nulls last */
        else d = gd_value_cmp(u, v) * (plan->order[i].desc ? -1 : 1);
        if (d) return d;
    }
    return 0;
}

/* Runs the scan for one combination of leading key values. */
static int scan(gd_store *store, MDB_txn *txn, pull *p, const gd_str *prefix, int nprefix)
{
    const gd_query_plan *plan = p->plan;
    gd_query q = {.t = plan->source->table, .mode = GD_WINDOWS_RANGE, .from = plan->window_from, .to = plan->window_to,
                  .deadline_ms = p->deadline_ms};
    for (int k = 0; k < nprefix; k++) q.key_eq[k] = prefix[k];
    return gd_query_run(store, txn, &q, visit_row, p, NULL);
}

/* The key values to seek: the cartesian product of the values given for
 * the leading key columns (the rest are left to the WHERE). */
static int scan_keys(gd_store *store, MDB_txn *txn, pull *p)
{
    const gd_query_plan *plan = p->plan;
    const gd_tabledef *t = plan->source->table;
    int lead = 0;
    size_t combos = 1;
    while (lead < t->nkeys && plan->nkey_values[lead] && combos * (size_t)plan->nkey_values[lead] <= MAX_KEY_COMBINATIONS)
        combos *= (size_t)plan->nkey_values[lead++];
    if (!lead) return scan(store, txn, p, NULL, 0);
    gd_buf text[GD_MAX_KEYS] = {{0}};
    int idx[GD_MAX_KEYS] = {0};
    int rc = GD_OK;
    for (size_t n = 0; n < combos && !rc && !p->stop; n++) {
        gd_str prefix[GD_MAX_KEYS];
        bool fits = true;
        for (int k = 0; k < lead; k++) {
            gd_value v = plan->key_values[k][idx[k]];
            gd_buf_clear(&text[k]);
            if (t->keys[k].type == GD_T_STRING && v.t != GD_V_STR) fits = false;
            if (t->keys[k].type != GD_T_STRING && v.t == GD_V_STR) fits = false;
            gd_key_text(t->keys[k].type == GD_T_DOUBLE ? gd_value_cast(v, GD_T_DOUBLE, NULL) : v, &text[k]);
            prefix[k] = (gd_str){text[k].p ? text[k].p : "", (uint32_t)text[k].len};
        }
        if (fits) rc = scan(store, txn, p, prefix, lead);
        for (int k = lead - 1; k >= 0; k--) { /* next combination */
            if (++idx[k] < plan->nkey_values[k]) break;
            idx[k] = 0;
        }
    }
    for (int k = 0; k < lead; k++) gd_buf_free(&text[k]);
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
    p.in = calloc((size_t)plan->row_width + 1, sizeof *p.in);
    p.out = calloc((size_t)plan->ncols + 1, sizeof *p.out);
    MDB_txn *txn = NULL;
    int rc = !p.in || !p.out ? gd_sql_fail(err, GD_SQL_SERVER_ERROR, "out of memory") : GD_OK;
    if (!rc && gd_store_begin_read(store, &txn)) rc = gd_sql_fail(err, GD_SQL_SERVER_ERROR, "the store cannot be read");
    if (!rc && plan->window_from < plan->window_to) {
        int scanned = scan_keys(store, txn, &p);
        if (scanned == GD_ETIMEDOUT)
            rc = gd_sql_fail(err, GD_SQL_TIMED_OUT, "the query took longer than --request-timeout and was stopped");
        else if (scanned)
            rc = gd_sql_fail(err, GD_SQL_SERVER_ERROR, "reading the table failed");
        if (!rc) rc = p.rc;
    }
    if (!rc && plan->norder) {
        if (p.nrows > 1) qsort_r(p.rows, p.nrows, sizeof *p.rows * (size_t)plan->ncols, compare_rows, (void *)plan);
        for (size_t i = 0; i < p.nrows && !emit(&p, &p.rows[i * (size_t)plan->ncols]); i++) {}
    }
    if (txn) mdb_txn_abort(txn);
    free(p.rows);
    free(p.in);
    free(p.out);
    gd_arena_free(&p.arena);
    return rc;
}
