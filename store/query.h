/* query.h -- pull-query scans over the stored tables (read transactions).
 *
 * A query names a table, optional equality filters on its key columns, and
 * which windows: one window, a range of window starts, or the newest window
 * that has a matching row. The scan uses the key layout of tables.h: rows of
 * a window are contiguous, so a filter on the leading key column is a prefix
 * seek inside each window, and a filter on every key column is a point get.
 * Rows hidden by HAVING are not returned. A scan given a deadline looks at
 * the clock every DEADLINE_EVERY rows it reads (query.c) and stops past it,
 * so a request's work ends with its time, not only its answer. */
#ifndef GD_QUERY_H
#define GD_QUERY_H

#include "store.h"

typedef enum { GD_WINDOWS_LATEST, GD_WINDOWS_RANGE } gd_window_mode;

typedef struct {
    const gd_tabledef *t;
    gd_str key_eq[GD_MAX_KEYS]; /* .p NULL: no filter on that column */
    gd_window_mode mode;
    int64_t from, to; /* GD_WINDOWS_RANGE: window starts in [from, to) */
    int64_t deadline_ms; /* gd_mono_ns() / 1000000 past which the scan stops; 0: none */
    /* Partitioned mode (api/peers.c): which rows this instance answers for
     * (NULL: all), and where a page of a scan starts (.p NULL: at the
     * start; else at the first row whose key sorts after this one). */
    bool (*keep)(void *ctx, const gd_tabledef *t, gd_str key);
    void *keep_ctx;
    gd_str after;
    /* Where rows another instance gave are kept when the caller holds on to
     * rows past fn (a sort): NULL, and they live only through fn's call. */
    gd_arena *hold;
} gd_query;

/* Called per matching row with its LMDB key and value (valid for the txn;
 * a row from another instance, through fn's call, or as q->hold lives). */
typedef int (*gd_query_fn)(void *ctx, gd_str key, gd_str val);

/* Runs q (for GD_WINDOWS_LATEST, the rows' keys tell which window was
 * chosen), rows in LMDB key order. GD_ETIMEDOUT when q's deadline passed:
 * fn has then seen only part of the rows. A store given a router hands it
 * the queries on aggregations (which then answers them whole, or
 * GD_EUNAVAIL); the others, and the router's own scans, run here. */
int gd_query_run(gd_store *s, MDB_txn *txn, const gd_query *q, gd_query_fn fn, void *ctx);
/* The same on this store's rows only. */
int gd_query_run_here(gd_store *s, MDB_txn *txn, const gd_query *q, gd_query_fn fn, void *ctx);

/* Partitioned mode: the rows of an aggregation are held by the instances
 * owning their tasks (api/peers.c), which the router asks. */
struct gd_query_router {
    void *ctx;
    int (*run)(void *ctx, gd_store *s, MDB_txn *txn, const gd_query *q, gd_query_fn fn, void *fn_ctx);
};

/* LMDB's order of keys (its default comparison): bytes, then length. */
int gd_key_cmp(gd_str a, gd_str b);

#endif
