/* committer.c -- a write transaction committed off the ingest thread.
 *
 * Committing a batch is mostly waiting: LMDB writes the dirty pages and
 * fdatasyncs the file. At 10,000 live events/s that was about 50 of the 75 ms
 * a commit held the ingest thread every 170 ms, and every push event behind
 * it waited that long (docs/figures.md). So the ingest thread writes a
 * batch's rows into the transaction and hands it here; this thread commits it
 * while ingest goes on with the next records.
 *
 * LMDB's writer lock is a mutex owned by the thread that began the write
 * transaction, and only that thread may end it. So this thread begins every
 * transaction it commits or aborts, and the ingest thread uses it in between:
 * one thread at a time, handed over under the mutex below, which orders
 * the memory both ways. One transaction exists at a time; beginning the next
 * waits for the last commit. */
#include <stdlib.h>

#include "store.h"

typedef enum { ASK_NONE, ASK_BEGIN, ASK_COMMIT, ASK_ABORT, ASK_STOP } ask_kind;

struct gd_committer {
    gd_store *store;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t asked, done;
    ask_kind ask;   /* what the thread is to do next; ASK_NONE once done */
    MDB_txn *txn;   /* the transaction it began, or is to end */
    int rc;         /* of the last thing done */
    bool unreported; /* a commit handed over whose rc gd_committer_wait has not returned */
    _Atomic bool in_flight; /* a commit handed over and not done, readable without the lock */
};

static void *committer_main(void *arg)
{
    gd_committer *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->ask == ASK_NONE) pthread_cond_wait(&c->asked, &c->mu);
        ask_kind ask = c->ask;
        if (ask == ASK_STOP) break;
        MDB_txn *txn = c->txn;
        pthread_mutex_unlock(&c->mu);
        int rc = GD_OK;
        if (ask == ASK_BEGIN) rc = gd_store_begin_write(c->store, &txn);
        else if (ask == ASK_COMMIT) rc = gd_store_commit(txn);
        else mdb_txn_abort(txn);
        pthread_mutex_lock(&c->mu);
        c->txn = ask == ASK_BEGIN && !rc ? txn : NULL;
        c->rc = rc;
        c->ask = ASK_NONE;
        atomic_store(&c->in_flight, false);
        pthread_cond_broadcast(&c->done);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void free_committer(gd_committer *c)
{
    pthread_cond_destroy(&c->asked);
    pthread_cond_destroy(&c->done);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int gd_committer_start(gd_committer **out, gd_store *s)
{
    gd_committer *c = calloc(1, sizeof *c);
    if (!c) return GD_ENOMEM;
    c->store = s;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->asked, NULL);
    pthread_cond_init(&c->done, NULL);
    if (pthread_create(&c->thread, NULL, committer_main, c)) {
        gd_error("cannot start the committer thread");
        free_committer(c);
        return GD_ERR;
    }
    pthread_setname_np(c->thread, "gd-commit");
    *out = c;
    return GD_OK;
}

/* Waits, lock held, until nothing is asked. */
static void wait_idle(gd_committer *c)
{
    while (c->ask != ASK_NONE) pthread_cond_wait(&c->done, &c->mu);
}

/* Asks the thread for one thing once it is idle; lock held. */
static void post(gd_committer *c, ask_kind ask, MDB_txn *txn)
{
    wait_idle(c);
    c->ask = ask;
    c->txn = txn;
    pthread_cond_signal(&c->asked);
}

/* Asks for one thing and waits for it; its rc, and the transaction begun. */
static int ask_and_wait(gd_committer *c, ask_kind ask, MDB_txn *txn, MDB_txn **begun)
{
    pthread_mutex_lock(&c->mu);
    post(c, ask, txn);
    wait_idle(c);
    int rc = c->rc;
    if (begun) *begun = c->txn;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int gd_committer_begin(gd_committer *c, MDB_txn **txn)
{
    int rc = gd_committer_wait(c);
    if (!rc) rc = ask_and_wait(c, ASK_BEGIN, NULL, txn);
    return rc;
}

void gd_committer_commit(gd_committer *c, MDB_txn *txn)
{
    pthread_mutex_lock(&c->mu);
    wait_idle(c); /* before in_flight is set: an ask still running would clear it */
    c->unreported = true;
    atomic_store(&c->in_flight, true);
    post(c, ASK_COMMIT, txn);
    pthread_mutex_unlock(&c->mu);
}

void gd_committer_abort(gd_committer *c, MDB_txn *txn)
{
    (void)ask_and_wait(c, ASK_ABORT, txn, NULL);
}

bool gd_committer_busy(const gd_committer *c) { return atomic_load(&c->in_flight); }

int gd_committer_wait(gd_committer *c)
{
    pthread_mutex_lock(&c->mu);
    wait_idle(c);
    int rc = c->unreported ? c->rc : GD_OK;
    c->unreported = false;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void gd_committer_stop(gd_committer *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    post(c, ASK_STOP, NULL);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    free_committer(c);
}
