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
} gd_query;

/* Called per matching row with its LMDB key and value (valid for the txn). */
typedef int (*gd_query_fn)(void *ctx, gd_str key, gd_str val);

/* Runs q (for GD_WINDOWS_LATEST, the rows' keys tell which window was
 * chosen). GD_ETIMEDOUT when q's deadline passed: fn has then seen only
 * part of the rows. */
int gd_query_run(gd_store *s, MDB_txn *txn, const gd_query *q, gd_query_fn fn, void *ctx);

#endif
