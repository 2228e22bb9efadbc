/* store.h -- the LMDB layout of gamingd.
 *
 * One LMDB environment in --data-dir holds:
 *   "meta"            source position, stream time, counters, the instance
 *                     id, secrets (see below)
 *   one db per table  named as the table, "<name>@<uid>" for a user's table
 *                     (store/tables.h gives key and row formats; reference
 *                     tables hold key -> JSON row), and "<db>/sets" for the
 *                     distinct sets of a table that has them
 *
 * Only the ingest thread writes: it writes one write transaction per batch,
 * the batch's table rows together with the source position, so a crash at
 * any moment restarts from a consistent cut; the committer's thread begins
 * and commits it (gd_committer). Readers (HTTP threads) open read-only
 * transactions and never wait for the writer.
 *
 * The file never shrinks: it is bounded by reusing the pages retention frees.
 * LMDB gives a page freed by commit N to commit N+2 at the earliest, and only
 * once no reader holds a snapshot older than N+1. Readers here are short: a
 * pull query's for its request, the table worker's renewed after every
 * commit. What bounds the file is then (1) that retention purges at the pace
 * rows are written, and (2) that no commit dirties too many pages, since the
 * pages it and the one before it free wait on top of the live data. Both once
 * failed in a catch-up replay (30 days of event time, 7 d retention: 1.2 GB
 * and growing linearly, RSS past 1 GB, where 0.4 GB plateau): purging was
 * capped at 20,000 rows a table a commit while a commit carried a day of
 * event time, so expired rows piled up and were only deleted after the
 * replay, and a commit was bounded by time alone (a second while busy), so
 * it dirtied hundreds of thousands of pages, held in the heap until the
 * commit and cached by LMDB afterwards. Purging now takes as many rows as the
 * table wrote and then some (ingest/window.c), and a busy batch ends at a
 * bound on its dirty groups (ingest/engine.c).
 *
 * Every function returns GD_OK or an error code the caller must handle. */
#ifndef GD_STORE_H
#define GD_STORE_H

#include <lmdb.h>
#include <pthread.h>

#include "catalog.h"

/* A writer's view of every row written to a table: kind is 'R' (row put),
 * 'S' (sets put) or 'D' (row deleted, val empty). Partitioned mode sends
 * them to the changelog (ingest/route.c). A non-OK return fails the write. */
typedef int (*gd_store_tap_fn)(void *ctx, char kind, const gd_tabledef *t, gd_str key, gd_str val);

enum { GD_STORE_IDLE_READERS = 16 };

typedef struct {
    MDB_env *env;
    MDB_dbi meta;
    char path[4096];
    int lock_fd; /* holds dir/gamingd.lock: one daemon per data dir */
    gd_store_tap_fn tap; /* NULL, or set by the writer around the writes it wants seen */
    void *tap_ctx;
    pthread_mutex_t idle_mu; /* read transactions kept reset for the next reader (store.c) */
    MDB_txn *idle[GD_STORE_IDLE_READERS];
    int nidle;
    const struct gd_query_router *router; /* partitioned mode: set before the HTTP threads start (query.h) */
} gd_store;

/* Opens (creating) the environment in dir; map_size is the largest the data
 * may grow to. Fails when another gamingd has the data dir open: LMDB would
 * let both write, and two writers would interleave their batches. */
int gd_store_open(gd_store *s, const char *dir, size_t map_size);
void gd_store_close(gd_store *s);
/* Opens (creating) the databases of every table of cat, setting each
 * definition's handles; before any reader or writer uses them. */
int gd_store_open_tables(gd_store *s, gd_catalog *cat);
/* The same for one table, in the write transaction that creates it (its
 * handles are usable once txn commits). uid: 0 for a built-in table. */
int gd_store_open_table(gd_store *s, MDB_txn *txn, gd_tabledef *t, uint64_t uid);
/* Deletes every row of a dropped table (its databases stay, empty: their
 * handles may still be in a reader's hands). */
int gd_store_empty_table(gd_store *s, MDB_txn *txn, const gd_tabledef *t);
/* Deletes the databases of a user's table none of whose handles was
 * opened (a quarantined one, dropped), by its name and uid; those that do
 * not exist are no error. */
int gd_store_delete_table(gd_store *s, MDB_txn *txn, const char *name, uint64_t uid);

int gd_store_begin_write(gd_store *s, MDB_txn **txn);
/* A read transaction, for one request: end it with gd_store_end_read, from
 * any thread. Ended ones are kept reset (holding no snapshot, so pinning no
 * page) and renewed by the next begin: beginning one afresh allocates and
 * zeroes room for every named database. */
int gd_store_begin_read(gd_store *s, MDB_txn **txn);
void gd_store_end_read(gd_store *s, MDB_txn *txn);
/* A read transaction a thread keeps, moved to the latest commit; whose:
 * for the error message. */
int gd_store_renew_read(MDB_txn *txn, const char *whose);
int gd_store_commit(MDB_txn *txn); /* aborts the txn on failure */

/* The committer (committer.c): a thread that begins write transactions and
 * commits them while their writer goes on. Its writer uses a transaction
 * from gd_committer_begin to gd_committer_commit or _abort, one at a time.
 *   begin   waits for the last commit, then begins; GD_OK, or that commit's
 *           error (nothing begun), or the begin's
 *   commit  hands the transaction over and returns at once; busy is true
 *           until it is done, and wait returns its rc (once)
 *   wait    waits for the commit handed over; its rc, GD_OK when none
 *   abort   ends a transaction begun and not handed over */
typedef struct gd_committer gd_committer;
int gd_committer_start(gd_committer **out, gd_store *s);
int gd_committer_begin(gd_committer *c, MDB_txn **txn);
void gd_committer_commit(gd_committer *c, MDB_txn *txn);
void gd_committer_abort(gd_committer *c, MDB_txn *txn);
bool gd_committer_busy(const gd_committer *c);
int gd_committer_wait(gd_committer *c);
void gd_committer_stop(gd_committer *c); /* after the last commit; NULL is no-op */

/* Meta values are opaque byte strings. GD_EOF when absent. */
int gd_store_meta_get(gd_store *s, MDB_txn *txn, const char *name, gd_str *out);
int gd_store_meta_put(gd_store *s, MDB_txn *txn, const char *name, const void *p, size_t n);

/* This data dir's instance id (16 hex digits, in out[17]): made at random
 * the first time and kept in meta "instance_id", so it lives as long as the
 * state does -- and made anew when the LMDB file is not the one it was made
 * in (a copy of the data dir: a new replica started from another's state).
 * Opens its own write transaction: call before the engine runs. */
int gd_store_instance_id(gd_store *s, char out[17]);

/* A secret of n random bytes (from getrandom) made the first time and kept
 * in meta under name; one of another length is made anew. Unlike the
 * instance id, a copy of the data dir keeps it: what it seals (pull-query
 * cursors) is then accepted by both, as a client behind a load balancer
 * over replicas started from one state wants. GD_ERR when the kernel gives
 * no randomness: a secret is never made of guessable bytes. Opens its own
 * write transaction: call before the engine runs. */
int gd_store_secret(gd_store *s, const char *name, void *out, size_t n);

/* The longest key LMDB stores (its default build); a longer or empty
 * group key is kept in memory only, and never found in the store. */
enum { GD_STORE_MAX_KEY = 511 };
static inline bool gd_store_key_fits(gd_str key) { return key.len > 0 && key.len <= GD_STORE_MAX_KEY; }

/* Table rows; key/value bytes as tables.h describes. get: GD_EOF when absent;
 * the value points into the map and is valid until the txn ends. */
int gd_store_row_get(gd_store *s, MDB_txn *txn, const gd_tabledef *t, gd_str key, gd_str *val);
int gd_store_row_put(gd_store *s, MDB_txn *txn, const gd_tabledef *t, gd_str key, gd_str val);
int gd_store_row_del(gd_store *s, MDB_txn *txn, const gd_tabledef *t, gd_str key);
/* A commit's rows, table after table, each table's in key order (the
 * window layer sorts them): one cursor per database of the table being
 * written, so that each put starts from the leaf the last one touched
 * instead of from the root, which LMDB's cursor search checks first (5-10%
 * of a commit's time, docs/figures.md). Puts as gd_store_row_put and
 * gd_store_sets_put (sets.p NULL: no sets to write), the tap included.
 * End the writer before anything else writes the table in the transaction. */
typedef struct {
    MDB_txn *txn;
    const gd_tabledef *table; /* whose databases the cursors are on, or NULL */
    MDB_cursor *rows, *sets;
} gd_store_writer;
void gd_store_writer_begin(gd_store_writer *w, MDB_txn *txn);
int gd_store_writer_put(gd_store *s, gd_store_writer *w, const gd_tabledef *t, gd_str key, gd_str row, gd_str sets);
void gd_store_writer_end(gd_store_writer *w);
/* The distinct sets of a row, stored apart from it (tables.h); get: GD_EOF
 * when absent (a row written before they were split off holds them). */
int gd_store_sets_get(gd_store *s, MDB_txn *txn, const gd_tabledef *t, gd_str key, gd_str *val);
int gd_store_sets_put(gd_store *s, MDB_txn *txn, const gd_tabledef *t, gd_str key, gd_str val);

/* Deletes up to max_rows rows of windows starting before window_limit (the
 * oldest first), and their sets; *deleted tells how many rows went. Bounded
 * so that retention never stalls a batch; the caller's bound must still let
 * it keep pace with the rows written (see above). */
int gd_store_purge(gd_store *s, MDB_txn *txn, const gd_tabledef *t, int64_t window_limit,
                   size_t max_rows, size_t *deleted);

/* Deletes every row of windows starting after window_limit (no bound on
 * their number: for repairs at start, not for the ingest path), sets too. */
int gd_store_delete_after(gd_store *s, MDB_txn *txn, const gd_tabledef *t, int64_t window_limit, size_t *deleted);
/* The start of the newest window with a row; GD_EOF when the table is empty. */
int gd_store_newest_window(gd_store *s, MDB_txn *txn, const gd_tabledef *t, int64_t *window_start);

/* Calls fn for each row whose key is >= start (every row when start is
 * empty), in key order, until fn returns non-zero. */
typedef int (*gd_row_fn)(void *ctx, gd_str key, gd_str val);
int gd_store_scan(gd_store *s, MDB_txn *txn, const gd_tabledef *t, gd_str start, gd_row_fn fn,
                  void *ctx);

/* Size of the data file in bytes (for metrics). */
size_t gd_store_size(gd_store *s);

#endif
