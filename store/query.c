/* query.c -- see query.h. */
#include "query.h"

#include <string.h>

/* Rows read between looks at the clock: a row can cost milliseconds (Grafana
 * regex filters of 10,000 instructions each), the clock tens of ns. */
enum { DEADLINE_EVERY = 16 };

typedef struct {
    gd_store *s;
    const gd_query *q;
    MDB_cursor *cur;
    gd_buf key;   /* scratch for seek keys */
    gd_buf prefix; /* encoded equality prefix of the leading key columns */
    gd_arena scratch; /* HAVING's strings */
    int nprefix;  /* how many leading key columns the prefix covers */
    gd_query_fn fn;
    void *ctx;
    int stop;
    uint64_t read;  /* rows read, matching or not */
    bool timed_out; /* past q->deadline_ms: stop */
} scan;

static gd_str as_str(MDB_val v) { return (gd_str){v.mv_data, (uint32_t)v.mv_size}; }

int gd_key_cmp(gd_str a, gd_str b)
{
    int c = memcmp(a.p, b.p, a.len < b.len ? a.len : b.len);
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

/* A page that starts after a key seeks there when that is further on. */
static void seek_after(const scan *sc, MDB_val *k)
{
    gd_str after = sc->q->after;
    if (after.p && gd_key_cmp(after, as_str(*k)) > 0) *k = (MDB_val){after.len, (void *)after.p};
}

/* A row before a page's start, or one this instance does not answer for. */
static bool passed_over(const scan *sc, gd_str key)
{
    const gd_query *q = sc->q;
    return (q->after.p && gd_key_cmp(key, q->after) <= 0) || (q->keep && !q->keep(q->keep_ctx, q->t, key));
}

/* Counts a row read; true (and the scan stops) once the deadline passed. */
static bool out_of_time(scan *sc)
{
    if (sc->timed_out) return true;
    if (!sc->q->deadline_ms || ++sc->read % DEADLINE_EVERY) return false;
    if (gd_mono_ns() / 1000000 < sc->q->deadline_ms) return false;
    sc->stop = 1;
    return sc->timed_out = true;
}

static int visit_reference(void *ctx, gd_str key, gd_str val)
{
    scan *sc = ctx;
    return out_of_time(sc) ? 1 : (sc->stop = sc->fn(sc->ctx, key, val));
}

/* Reference tables: a point get, or every row. */
static int run_reference(scan *sc, MDB_txn *txn)
{
    const gd_query *q = sc->q;
    if (q->key_eq[0].p) {
        gd_str val;
        int rc = gd_store_row_get(sc->s, txn, q->t, q->key_eq[0], &val);
        if (rc == GD_EOF) return GD_OK;
        if (rc) return rc;
        sc->fn(sc->ctx, q->key_eq[0], val);
        return GD_OK;
    }
    return gd_store_scan(sc->s, txn, q->t, (gd_str){"", 0}, visit_reference, sc);
}

/* Does a windowed row pass the filters that the prefix does not cover, and
 * HAVING? */
static bool row_matches(scan *sc, gd_str key, gd_str val)
{
    const gd_tabledef *t = sc->q->t;
    gd_str keys[GD_MAX_KEYS];
    if (key.len < 8 || gd_groupkey_split(key.p + 8, key.len - 8, t->nkeys, keys)) return false;
    for (int k = sc->nprefix; k < t->nkeys; k++)
        if (sc->q->key_eq[k].p && !gd_str_eq(sc->q->key_eq[k], keys[k])) return false;
    if (passed_over(sc, key)) return false; /* after the key filters: a task's is worked out from the key */
    if (t->having) {
        gd_slot slots[GD_MAX_COLS];
        gd_row r;
        gd_arena_reset(&sc->scratch);
        if (gd_row_decode(t, val.p, val.len, slots) ||
            !gd_row_compute(t, keys, gd_rowkey_window(key.p), slots, &r, &sc->scratch))
            return false;
    }
    return true;
}

/* Visits the matching rows of window w; counts them in *found. With emit
 * false it stops at the first match (used to find the latest window). */
static int scan_window(scan *sc, int64_t w, bool emit, size_t *found)
{
    gd_rowkey_encode(&sc->key, w, (gd_str){sc->prefix.p, (uint32_t)sc->prefix.len});
    size_t plen = sc->key.len;
    MDB_val k = {sc->key.len, sc->key.p}, v;
    seek_after(sc, &k);
    int rc = mdb_cursor_get(sc->cur, &k, &v, MDB_SET_RANGE);
    for (; rc == 0; rc = mdb_cursor_get(sc->cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < plen || memcmp(k.mv_data, sc->key.p, plen) || out_of_time(sc)) break;
        if (!row_matches(sc, as_str(k), as_str(v))) continue;
        (*found)++;
        if (!emit) return GD_OK;
        if ((sc->stop = sc->fn(sc->ctx, as_str(k), as_str(v)))) return GD_OK;
    }
    return rc && rc != MDB_NOTFOUND ? GD_ERR : GD_OK;
}

/* Range mode without a key prefix: the rows of [from, to) lie together, so
 * one cursor walks them, with no seek per window. */
static int scan_range(scan *sc, int64_t from, int64_t to)
{
    gd_rowkey_encode(&sc->key, from, (gd_str){"", 0});
    MDB_val k = {sc->key.len, sc->key.p}, v;
    seek_after(sc, &k);
    int rc = mdb_cursor_get(sc->cur, &k, &v, MDB_SET_RANGE);
    for (; rc == 0; rc = mdb_cursor_get(sc->cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 8 || gd_rowkey_window(k.mv_data) >= to || out_of_time(sc)) break;
        if (!row_matches(sc, as_str(k), as_str(v))) continue;
        if ((sc->stop = sc->fn(sc->ctx, as_str(k), as_str(v)))) break;
    }
    return rc && rc != MDB_NOTFOUND ? GD_ERR : GD_OK;
}

/* The first window start >= from that holds any row; false when none. */
static bool next_window(scan *sc, int64_t from, int64_t *w)
{
    gd_rowkey_encode(&sc->key, from, (gd_str){"", 0});
    MDB_val k = {sc->key.len, sc->key.p}, v;
    if (mdb_cursor_get(sc->cur, &k, &v, MDB_SET_RANGE) || k.mv_size < 8) return false;
    *w = gd_rowkey_window(k.mv_data);
    return true;
}

/* The newest window start < before that holds any row. */
static bool prev_window(scan *sc, int64_t before, bool first, int64_t *w)
{
    MDB_val k, v;
    int rc;
    if (first) {
        rc = mdb_cursor_get(sc->cur, &k, &v, MDB_LAST);
    } else {
        gd_rowkey_encode(&sc->key, before, (gd_str){"", 0});
        k = (MDB_val){sc->key.len, sc->key.p};
        rc = mdb_cursor_get(sc->cur, &k, &v, MDB_SET_RANGE);
        rc = rc == MDB_NOTFOUND ? mdb_cursor_get(sc->cur, &k, &v, MDB_LAST)
                                : mdb_cursor_get(sc->cur, &k, &v, MDB_PREV);
        if (rc == 0 && k.mv_size >= 8 && gd_rowkey_window(k.mv_data) >= before) return false;
    }
    if (rc || k.mv_size < 8) return false;
    *w = gd_rowkey_window(k.mv_data);
    return true;
}

int gd_query_run(gd_store *s, MDB_txn *txn, const gd_query *q, gd_query_fn fn, void *ctx)
{
    if (s->router && q->t->kind == GD_TABLE_WINDOWED) return s->router->run(s->router->ctx, s, txn, q, fn, ctx);
    return gd_query_run_here(s, txn, q, fn, ctx);
}

int gd_query_run_here(gd_store *s, MDB_txn *txn, const gd_query *q, gd_query_fn fn, void *ctx)
{
    scan sc = {.s = s, .q = q, .fn = fn, .ctx = ctx};
    gd_arena_init(&sc.scratch);
    if (q->t->kind != GD_TABLE_WINDOWED) {
        gd_arena_free(&sc.scratch);
        int rc = run_reference(&sc, txn);
        return sc.timed_out ? GD_ETIMEDOUT : rc;
    }
    for (int k = 0; k < q->t->nkeys && q->key_eq[k].p; k++) {
        gd_groupkey_append(&sc.prefix, q->key_eq[k]);
        sc.nprefix++;
    }
    int rc = mdb_cursor_open(txn, q->t->dbi_rows, &sc.cur);
    if (rc) {
        gd_error("lmdb: cursor: %s", mdb_strerror(rc));
        gd_buf_free(&sc.prefix);
        gd_arena_free(&sc.scratch);
        return GD_ERR;
    }
    int64_t w;
    size_t found = 0;
    rc = GD_OK;
    int64_t from = q->from;
    if (q->after.p && q->after.len >= 8 && gd_rowkey_window(q->after.p) > from) from = gd_rowkey_window(q->after.p);
    if (q->mode == GD_WINDOWS_RANGE && !sc.nprefix) {
        rc = scan_range(&sc, from, q->to);
    } else if (q->mode == GD_WINDOWS_RANGE) {
        for (; !rc && !sc.stop && next_window(&sc, from, &w) && w < q->to;
             from = w + 1)
            rc = scan_window(&sc, w, true, &found);
    } else {
        bool first = true;
        for (int64_t before = 0; !rc && !sc.timed_out && prev_window(&sc, before, first, &w); before = w, first = false) {
            rc = scan_window(&sc, w, false, &found);
            if (found) {
                found = 0;
                rc = scan_window(&sc, w, true, &found);
                break;
            }
        }
    }
    mdb_cursor_close(sc.cur);
    gd_buf_free(&sc.key);
    gd_buf_free(&sc.prefix);
    gd_arena_free(&sc.scratch);
    return sc.timed_out ? GD_ETIMEDOUT : rc;
}
