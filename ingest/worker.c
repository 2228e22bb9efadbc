/* worker.c -- the windowed tables on a second core.
 *
 * Table work dominates ingest: every record updates nine tables, each a hash
 * lookup into a large map and often a distinct set. The engine keeps the
 * tables whose rows feed the enriched record (it needs them at once) and hands
 * the others to a worker thread with a gd_windows instance of its own. Nothing
 * is shared while both run: each record is copied into a slot of a
 * single-producer, single-consumer ring, with its strings packed in the slot.
 * The slot carries the whole enriched record, figures included, so the worker
 * also writes the Avro output record when there is one: encoding and
 * producing are a fifth of the engine's time per record, and the worker has
 * room for them, while the ring keeps the output in record order.
 *
 * The engine alone writes LMDB. Before a commit it drains the ring, and while
 * the ring is empty the worker does not touch its tables, so the engine can
 * flush, evict and purge them itself (and flush the producer: every record
 * applied has been produced). The worker reads groups that left memory
 * through a read transaction the engine renews after each commit.
 *
 * Records cross in batches, not one by one: the engine publishes what it
 * queued every HANDOFF_BATCH records, and whenever it has nothing to read
 * (gd_worker_flush) or drains, and the worker announces its progress once
 * per batch it applied. An idle worker sleeps on a condition variable at
 * once -- a batch takes the engine far longer to make than a wake-up -- and
 * the engine wakes it when it publishes. The engine, when the ring is full
 * or it drains, sleeps too until the worker is far enough: on two cores
 * shared with the Kafka clients' threads, spinning or yielding would take
 * the very core the other needs. Measured on a 1M-event replay: per-record
 * hand-off with 200 sched_yield()s before sleeping spent a third of the
 * worker's time (an eighth of the process's) yielding. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "window.h"

enum { RING_SLOTS = 4096, SLOT_STRING_BYTES = 624, HANDOFF_BATCH = 32 };

typedef struct {
    gd_activity a;
    gd_game game;
    gd_player player;
    bool has_game, has_player, has_purchase;
    gd_segment segment;
    gd_session_type session_type;
    int64_t processing_timestamp, stream_time;
    uint64_t seq;
    gd_int total_sessions_1h;
    gd_dbl avg_score_1h;
    gd_int active_players_count;
    char strings[SLOT_STRING_BYTES];
} ring_slot;

struct gd_worker {
    gd_windows *w;
    gd_store *store;
    gd_output *out; /* the Avro output, or NULL: the engine produces */
    atomic_bool failed;
    MDB_txn *read_txn; /* where groups that left memory are read back */
    ring_slot *ring;
    uint64_t staged;       /* records written to the ring (engine only) */
    _Atomic uint64_t head; /* records published to the worker (written by the engine) */
    _Atomic uint64_t tail; /* records applied (written by the worker) */
    _Atomic uint64_t awaited_tail; /* the engine sleeps until tail reaches it; 0: it does not */
    atomic_bool stop, sleeping;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* the worker's: records queued */
    pthread_cond_t progress; /* the engine's: awaited_tail reached */
    pthread_t thread;
};

/* Copies *s into the slot's string space; false when it is full. */
static bool pack(ring_slot *slot, size_t *used, gd_str *s)
{
    if (!s->p) return true;
    if (s->len > SLOT_STRING_BYTES - *used) return false;
    memcpy(slot->strings + *used, s->p, s->len);
    s->p = slot->strings + *used;
    *used += s->len;
    return true;
}

/* Packs every string field of a decoded struct (fields: its field table). */
static bool pack_fields(ring_slot *slot, size_t *used, void *row, const gd_fieldspec *fields)
{
    for (const gd_fieldspec *f = fields; f->name; f++)
        if (f->type == GD_FT_STR && !pack(slot, used, (gd_str *)((char *)row + f->offset)))
            return false;
    return true;
}

/* A self-contained copy of e: everything gd_enriched_field can read. */
static bool fill_slot(ring_slot *slot, const gd_enriched *e, int64_t stream_time)
{
    size_t used = 0;
    slot->a = *e->a;
    slot->has_game = e->game != NULL;
    slot->has_player = e->player != NULL;
    if (e->game) slot->game = *e->game;
    if (e->player) slot->player = *e->player;
    slot->has_purchase = e->has_purchase;
    slot->segment = e->segment;
    slot->session_type = e->session_type;
    slot->processing_timestamp = e->processing_timestamp;
    slot->seq = e->seq;
    slot->total_sessions_1h = e->total_sessions_1h;
    slot->avg_score_1h = e->avg_score_1h;
    slot->active_players_count = e->active_players_count;
    slot->stream_time = stream_time;
    return pack_fields(slot, &used, &slot->a, gd_activity_fields) &&
           (!e->game || pack_fields(slot, &used, &slot->game, gd_game_fields)) &&
           (!e->player || pack_fields(slot, &used, &slot->player, gd_player_fields));
}

static void apply_slot(gd_worker *wk, const ring_slot *slot)
{
    gd_enriched e = {
        .a = &slot->a,
        .game = slot->has_game ? &slot->game : NULL,
        .player = slot->has_player ? &slot->player : NULL,
        .segment = slot->segment,
        .session_type = slot->session_type,
        .has_purchase = slot->has_purchase,
        .processing_timestamp = slot->processing_timestamp,
        .seq = slot->seq,
        .total_sessions_1h = slot->total_sessions_1h,
        .avg_score_1h = slot->avg_score_1h,
        .active_players_count = slot->active_players_count,
    };
    gd_windows_apply(wk->w, &e, slot->stream_time, wk->store, wk->read_txn);
    if (wk->out && gd_output_enriched(wk->out, &e, GD_STR_NULL)) atomic_store(&wk->failed, true);
}

static void *worker_main(void *arg)
{
    gd_worker *wk = arg;
    for (;;) {
        uint64_t t = atomic_load_explicit(&wk->tail, memory_order_relaxed);
        uint64_t h = atomic_load_explicit(&wk->head, memory_order_acquire);
        if (t != h) {
            uint64_t end = h - t > HANDOFF_BATCH ? t + HANDOFF_BATCH : h;
            for (; t < end; t++) apply_slot(wk, &wk->ring[t % RING_SLOTS]);
            /* seq_cst store, then the awaited check: wait_for_tail stores
             * awaited_tail, then checks tail, so one of us sees the other */
            atomic_store(&wk->tail, t);
            uint64_t awaited = atomic_load(&wk->awaited_tail);
            if (awaited && t >= awaited) {
                pthread_mutex_lock(&wk->mu);
                atomic_store(&wk->awaited_tail, 0); /* signalled once */
                pthread_cond_signal(&wk->progress);
                pthread_mutex_unlock(&wk->mu);
            }
            continue;
        }
        if (atomic_load(&wk->stop)) return NULL;
        pthread_mutex_lock(&wk->mu);
        atomic_store(&wk->sleeping, true);
        if (t == atomic_load(&wk->head) && !atomic_load(&wk->stop))
            pthread_cond_wait(&wk->wake, &wk->mu);
        atomic_store(&wk->sleeping, false);
        pthread_mutex_unlock(&wk->mu);
    }
}

static void wake(gd_worker *wk)
{
    if (!atomic_load(&wk->sleeping)) return;
    pthread_mutex_lock(&wk->mu);
    pthread_cond_signal(&wk->wake);
    pthread_mutex_unlock(&wk->mu);
}

int gd_worker_start(gd_worker **out, gd_windows *w, gd_store *store, gd_output *output)
{
    gd_worker *wk = calloc(1, sizeof *wk);
    if (!wk || !(wk->ring = malloc(sizeof(ring_slot) * RING_SLOTS))) {
        free(wk);
        return GD_ENOMEM;
    }
    if (gd_store_begin_read(store, &wk->read_txn)) {
        free(wk->ring);
        free(wk);
        return GD_ERR;
    }
    wk->w = w;
    wk->store = store;
    wk->out = output;
    pthread_mutex_init(&wk->mu, NULL);
    pthread_cond_init(&wk->wake, NULL);
    pthread_cond_init(&wk->progress, NULL);
    if (pthread_create(&wk->thread, NULL, worker_main, wk) == 0) {
        pthread_setname_np(wk->thread, "gd-tables");
    } else {
        gd_error("cannot start the table worker thread");
        mdb_txn_abort(wk->read_txn);
        free(wk->ring);
        free(wk);
        return GD_ERR;
    }
    *out = wk;
    return GD_OK;
}

/* Sleeps until the worker has applied the records before position target. */
static void wait_for_tail(gd_worker *wk, uint64_t target)
{
    if (atomic_load_explicit(&wk->tail, memory_order_acquire) >= target) return;
    pthread_mutex_lock(&wk->mu);
    while (atomic_load(&wk->tail) < target) {
        atomic_store(&wk->awaited_tail, target);
        if (atomic_load(&wk->tail) >= target) break;
        pthread_cond_wait(&wk->progress, &wk->mu);
    }
    atomic_store(&wk->awaited_tail, 0);
    pthread_mutex_unlock(&wk->mu);
}

/* Hands the records staged so far to the worker. */
static void publish(gd_worker *wk)
{
    if (atomic_load_explicit(&wk->head, memory_order_relaxed) == wk->staged) return;
    /* seq_cst store, then the sleeping check: the worker's store of sleeping
     * and its check of head are seq_cst too, so one of us sees the other */
    atomic_store(&wk->head, wk->staged);
    wake(wk);
}

bool gd_worker_push(gd_worker *wk, const gd_enriched *e, int64_t stream_time)
{
    uint64_t h = wk->staged;
    if (h - atomic_load_explicit(&wk->tail, memory_order_acquire) == RING_SLOTS) {
        publish(wk);
        wait_for_tail(wk, h - RING_SLOTS / 2); /* then half the ring is free: fewer wake-ups */
    }
    if (!fill_slot(&wk->ring[h % RING_SLOTS], e, stream_time)) return false;
    wk->staged = h + 1;
    if (wk->staged - atomic_load_explicit(&wk->head, memory_order_relaxed) >= HANDOFF_BATCH) publish(wk);
    return true;
}

void gd_worker_flush(gd_worker *wk)
{
    if (wk) publish(wk);
}

void gd_worker_drain(gd_worker *wk)
{
    publish(wk);
    wait_for_tail(wk, wk->staged);
}

bool gd_worker_failed(const gd_worker *wk) { return atomic_load_explicit(&wk->failed, memory_order_relaxed); }

int gd_worker_renew(gd_worker *wk)
{
    mdb_txn_reset(wk->read_txn);
    int rc = mdb_txn_renew(wk->read_txn);
    if (rc) gd_error("lmdb: renewing the worker's read transaction: %s", mdb_strerror(rc));
    return rc ? GD_ERR : GD_OK;
}

void gd_worker_stop(gd_worker *wk)
{
    if (!wk) return;
    gd_worker_drain(wk);
    pthread_mutex_lock(&wk->mu);
    atomic_store(&wk->stop, true);
    pthread_cond_signal(&wk->wake);
    pthread_mutex_unlock(&wk->mu);
    pthread_join(wk->thread, NULL);
    mdb_txn_abort(wk->read_txn);
    pthread_mutex_destroy(&wk->mu);
    pthread_cond_destroy(&wk->wake);
    pthread_cond_destroy(&wk->progress);
    free(wk->ring);
    free(wk);
}
