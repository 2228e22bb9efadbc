/* worker.c -- the windowed tables on more cores.
 *
 * Table work dominates ingest: every record updates nine tables, each a hash
 * lookup into a large map and often a distinct set. The engine hands the
 * tables to worker threads (which keeps which: layout_tables in engine.c),
 * each with a gd_windows instance of its own. Nothing is written by two
 * while they run: each record is copied once into a slot of a ring that
 * every worker reads, with its strings packed in the slot; the engine
 * reuses a slot once the slowest worker is past it. The slot
 * carries the whole enriched record, figures included, so a worker can
 * also send the record on in ring order: produce its Avro output record
 * (with two threads: encoding and producing are a fifth of the engine's
 * time per record), or, keeping the figures' tables itself, send it out
 * entirely through the engine's emitter (emit.c).
 *
 * The engine alone writes LMDB. Before a commit it drains the ring, and
 * while the ring is empty the workers do not touch their tables, so the engine
 * can flush, evict and purge them itself (and flush the producer: every
 * record applied has been produced). A worker reads groups that left memory
 * through a read transaction the engine renews after each commit.
 *
 * A commit's rows are encoded on every core (gd_workers_write_dirty): each
 * worker encodes its dirty rows (sorted, row and distinct sets as stored)
 * into a few chunks while the engine encodes and writes its own, writing
 * the workers' chunks between its rows as they come. Encoding is most of
 * a commit's CPU (sorting by row key, walking the sets): on one thread the
 * commit was a third of a replay's time with the worker idle. The chunks
 * bound the memory, so a commit of 100,000 rows costs 1 MiB a worker, not
 * a copy of them all.
 *
 * Records cross in batches, not one by one: the engine publishes what it
 * queued every HANDOFF_BATCH records, and whenever it has nothing to read
 * (gd_workers_flush) or drains, and the worker announces its progress once
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
/* A commit's rows cross to the writer in chunks of about CHUNK_BYTES, at
 * most CHUNKS of them encoded ahead of it: memory stays bounded however
 * many rows a commit writes. */
enum { CHUNK_BYTES = 256 << 10, CHUNKS = 4, NO_SETS = UINT32_MAX };
enum { ENCODE_NONE, ENCODE_ASKED, ENCODE_RUNNING };

/* A row in a chunk: this header, then its key, row and sets bytes. */
typedef struct {
    const gd_tabledef *def;
    uint32_t key_len, row_len, sets_len; /* sets_len NO_SETS: no sets to write */
} chunk_row;

typedef struct {
    gd_activity a;
    gd_game game;
    gd_player player;
    bool has_game, has_player, has_purchase;
    gd_segment segment;
    gd_session_type session_type;
    int64_t processing_timestamp, stream_time;
    bool counted_late; /* by the engine */
    uint64_t seq;
    gd_int total_sessions_1h;
    gd_dbl avg_score_1h;
    gd_int active_players_count;
    char strings[SLOT_STRING_BYTES];
} ring_slot;

typedef struct worker {
    gd_workers *group;
    gd_windows *w;
    gd_output *out; /* the Avro output, or NULL: the engine produces */
    gd_emitter *emit; /* where records go out once applied, or NULL: the engine sends them */
    uint64_t late; /* with emit: records late only for a table reading the figures (gd_workers_take_late) */
    atomic_bool failed;
    MDB_txn *read_txn; /* where groups that left memory are read back */
    _Atomic uint64_t tail; /* records applied (written by the worker) */
    _Atomic uint64_t awaited_tail; /* the engine sleeps until tail reaches it; 0: it does not */
    atomic_bool sleeping;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* the worker's: records queued */
    pthread_cond_t progress; /* the engine's: awaited_tail reached */
    pthread_t thread;
    /* a commit's rows (gd_workers_write_dirty), under mu but for the chunk
     * each side holds: the worker fills chunks[filled % CHUNKS], the
     * engine writes chunks[taken % CHUNKS] */
    _Atomic int encode;       /* ENCODE_* */
    int encode_rc;
    bool encoded;             /* the worker handed over its last chunk */
    _Atomic unsigned filled;  /* the engine may look without the lock */
    unsigned taken;
    gd_store_writer chunked; /* the commit's puts of the worker's rows */
    int write_rc;
    gd_buf chunks[CHUNKS];
    pthread_cond_t chunk_ready, chunk_free;
} worker;

/* The workers and the one ring they all read. */
struct gd_workers {
    gd_store *store;
    ring_slot *ring;
    uint64_t staged;       /* records written to the ring (engine only) */
    uint64_t free_below;   /* engine only: no worker's tail was below it when last looked at */
    _Atomic uint64_t head; /* records published to the workers (written by the engine) */
    atomic_bool stop;
    int count;
    worker w[GD_MAX_INGEST_THREADS - 1];
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
static bool fill_slot(ring_slot *slot, const gd_enriched *e, int64_t stream_time, bool counted_late)
{
    size_t used = 0;
    slot->counted_late = counted_late;
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

static void apply_slot(worker *wk, const ring_slot *slot)
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
    bool late = gd_windows_apply(wk->w, &e, slot->stream_time, wk->group->store, wk->read_txn);
    if (wk->emit && late && !slot->counted_late) wk->late++; /* its figures' readers: the engine could not tell */
    if (wk->out && gd_output_enriched(wk->out, &e, GD_STR_NULL)) atomic_store(&wk->failed, true);
    if (wk->emit) {
        gd_emit_enriched(wk->emit, &e, true);
        if (wk->emit->failed) atomic_store(&wk->failed, true);
    }
}

/* ---- a commit's rows ---- */

/* The chunk being filled to the writer; the next one once it is free. */
static void hand_over_chunk(worker *wk)
{
    pthread_mutex_lock(&wk->mu);
    wk->filled++;
    pthread_cond_signal(&wk->chunk_ready);
    while (wk->filled - wk->taken >= CHUNKS) pthread_cond_wait(&wk->chunk_free, &wk->mu);
    pthread_mutex_unlock(&wk->mu);
    gd_buf_clear(&wk->chunks[wk->filled % CHUNKS]); /* written by the engine before it was taken back */
}

static int emit_to_chunk(void *ctx, const gd_tabledef *def, gd_str key, gd_str row, gd_str sets)
{
    worker *wk = ctx;
    gd_buf *c = &wk->chunks[wk->filled % CHUNKS];
    chunk_row h = {def, key.len, row.len, sets.p ? sets.len : NO_SETS};
    gd_buf_put(c, &h, sizeof h);
    gd_buf_put(c, key.p, key.len);
    gd_buf_put(c, row.p, row.len);
    if (sets.p) gd_buf_put(c, sets.p, sets.len);
    if (c->len >= CHUNK_BYTES) hand_over_chunk(wk);
    return GD_OK;
}

static void encode_rows(worker *wk)
{
    gd_buf_clear(&wk->chunks[wk->filled % CHUNKS]);
    int rc = gd_windows_emit_dirty(wk->w, emit_to_chunk, wk);
    pthread_mutex_lock(&wk->mu);
    if (wk->chunks[wk->filled % CHUNKS].len) wk->filled++;
    wk->encode_rc = rc;
    wk->encoded = true;
    pthread_cond_signal(&wk->chunk_ready);
    pthread_mutex_unlock(&wk->mu);
}

/* A chunk's rows into the store. */
static int write_chunk(const gd_buf *c, gd_store *s, gd_store_writer *wr)
{
    for (size_t at = 0; at < c->len;) {
        chunk_row h;
        memcpy(&h, c->p + at, sizeof h);
        const char *p = c->p + at + sizeof h;
        gd_str sets = h.sets_len == NO_SETS ? GD_STR_NULL : (gd_str){p + h.key_len + h.row_len, h.sets_len};
        int rc = gd_windows_store_row(s, wr, h.def, (gd_str){p, h.key_len}, (gd_str){p + h.key_len, h.row_len}, sets);
        if (rc) return rc;
        at += sizeof h + h.key_len + h.row_len + (sets.p ? h.sets_len : 0);
    }
    return GD_OK;
}

/* The chunk the engine takes next into the store, then back to the
 * worker (after a failure it is only taken back). Called with mu held. */
static void write_next_chunk(worker *wk)
{
    gd_buf *c = &wk->chunks[wk->taken % CHUNKS];
    pthread_mutex_unlock(&wk->mu);
    if (!wk->write_rc) wk->write_rc = write_chunk(c, wk->group->store, &wk->chunked);
    if (c->cap > 4 * CHUNK_BYTES) gd_buf_free(c); /* a huge row's */
    pthread_mutex_lock(&wk->mu);
    wk->taken++;
    pthread_cond_signal(&wk->chunk_free);
}

/* Takes every chunk wk has ready into the store. */
static void write_ready_chunks(worker *wk)
{
    if (atomic_load_explicit(&wk->filled, memory_order_relaxed) == wk->taken) return;
    pthread_mutex_lock(&wk->mu);
    while (wk->taken != wk->filled) write_next_chunk(wk);
    pthread_mutex_unlock(&wk->mu);
}

/* The engine's side of a commit. */
typedef struct {
    gd_workers *g;
    gd_store_writer own; /* the puts of the engine's own rows */
} own_rows;

/* The engine's own rows go straight to the store, and with them whatever
 * chunks the workers have ready, so that none need wait for a free one. */
static int store_own_row(void *ctx, const gd_tabledef *def, gd_str key, gd_str row, gd_str sets)
{
    own_rows *o = ctx;
    for (int i = 0; i < o->g->count; i++) {
        write_ready_chunks(&o->g->w[i]);
        if (o->g->w[i].write_rc) return o->g->w[i].write_rc;
    }
    return gd_windows_store_row(o->g->store, &o->own, def, key, row, sets);
}

static void ask_to_encode(worker *wk, MDB_txn *txn)
{
    pthread_mutex_lock(&wk->mu);
    wk->filled = wk->taken = 0;
    wk->encoded = false;
    gd_store_writer_begin(&wk->chunked, txn);
    wk->write_rc = GD_OK;
    atomic_store(&wk->encode, ENCODE_ASKED);
    pthread_cond_signal(&wk->wake);
    pthread_mutex_unlock(&wk->mu);
}

/* Writes wk's chunks as they come until it has encoded every row; how
 * its rows went. */
static int finish_encoding(worker *wk)
{
    pthread_mutex_lock(&wk->mu);
    for (;;) {
        while (wk->taken == wk->filled && !wk->encoded) pthread_cond_wait(&wk->chunk_ready, &wk->mu);
        if (wk->taken == wk->filled) break;
        write_next_chunk(wk);
    }
    atomic_store(&wk->encode, ENCODE_NONE);
    int rc = wk->write_rc ? wk->write_rc : wk->encode_rc;
    pthread_mutex_unlock(&wk->mu);
    gd_store_writer_end(&wk->chunked); /* the flush that follows deletes from these tables */
    return rc;
}

int gd_workers_write_dirty(gd_workers *g, gd_windows *const *own, int nown, MDB_txn *txn)
{
    for (int i = 0; i < g->count; i++) ask_to_encode(&g->w[i], txn);
    own_rows o = {.g = g};
    gd_store_writer_begin(&o.own, txn);
    int rc = GD_OK;
    for (int i = 0; !rc && i < nown; i++) rc = gd_windows_emit_dirty(own[i], store_own_row, &o);
    for (int i = 0; i < g->count; i++) { /* every worker's, whatever failed: none stays waiting */
        int encoded = finish_encoding(&g->w[i]);
        if (!rc) rc = encoded;
    }
    gd_store_writer_end(&o.own);
    return rc;
}

static void *worker_main(void *arg)
{
    worker *wk = arg;
    gd_workers *g = wk->group;
    for (;;) {
        uint64_t t = atomic_load_explicit(&wk->tail, memory_order_relaxed);
        uint64_t h = atomic_load_explicit(&g->head, memory_order_acquire);
        if (t != h) {
            uint64_t end = h - t > HANDOFF_BATCH ? t + HANDOFF_BATCH : h;
            for (; t < end; t++) apply_slot(wk, &g->ring[t % RING_SLOTS]);
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
        if (atomic_load(&g->stop)) return NULL;
        if (atomic_load(&wk->encode) == ENCODE_ASKED) { /* drained: the commit waits for rows, not records */
            atomic_store(&wk->encode, ENCODE_RUNNING);
            encode_rows(wk);
            continue;
        }
        pthread_mutex_lock(&wk->mu);
        atomic_store(&wk->sleeping, true);
        if (t == atomic_load(&g->head) && !atomic_load(&g->stop) && atomic_load(&wk->encode) != ENCODE_ASKED)
            pthread_cond_wait(&wk->wake, &wk->mu);
        atomic_store(&wk->sleeping, false);
        pthread_mutex_unlock(&wk->mu);
    }
}

static void wake(worker *wk)
{
    if (!atomic_load(&wk->sleeping)) return;
    pthread_mutex_lock(&wk->mu);
    pthread_cond_signal(&wk->wake);
    pthread_mutex_unlock(&wk->mu);
}

static void init_worker(worker *wk, gd_workers *g, gd_windows *w)
{
    wk->group = g;
    wk->w = w;
    pthread_mutex_init(&wk->mu, NULL);
    pthread_cond_init(&wk->wake, NULL);
    pthread_cond_init(&wk->progress, NULL);
    pthread_cond_init(&wk->chunk_ready, NULL);
    pthread_cond_init(&wk->chunk_free, NULL);
}

static void free_worker(worker *wk)
{
    if (wk->read_txn) mdb_txn_abort(wk->read_txn);
    pthread_mutex_destroy(&wk->mu);
    pthread_cond_destroy(&wk->wake);
    pthread_cond_destroy(&wk->progress);
    pthread_cond_destroy(&wk->chunk_ready);
    pthread_cond_destroy(&wk->chunk_free);
    for (int i = 0; i < CHUNKS; i++) gd_buf_free(&wk->chunks[i]);
}

static int start_worker(worker *wk)
{
    if (gd_store_begin_read(wk->group->store, &wk->read_txn)) return GD_ERR;
    if (pthread_create(&wk->thread, NULL, worker_main, wk)) {
        gd_error("cannot start a table worker thread");
        return GD_ERR;
    }
    pthread_setname_np(wk->thread, "gd-tables");
    wk->started = true;
    return GD_OK;
}

int gd_workers_start(gd_workers **out, gd_windows *const *windows, int count, gd_store *store, gd_output *output,
                     gd_emitter *emit)
{
    gd_workers *g = calloc(1, sizeof *g);
    if (!g || !(g->ring = malloc(sizeof(ring_slot) * RING_SLOTS))) {
        free(g);
        return GD_ENOMEM;
    }
    g->store = store;
    g->count = count;
    for (int i = 0; i < count; i++) init_worker(&g->w[i], g, windows[i]);
    g->w[0].out = output;
    g->w[0].emit = emit;
    *out = g;
    for (int i = 0; i < count; i++)
        if (start_worker(&g->w[i])) return GD_ERR; /* gd_workers_stop stops those started */
    return GD_OK;
}

/* Sleeps until wk has applied the records before position target. */
static void wait_for_tail(worker *wk, uint64_t target)
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

/* Hands the records staged so far to the workers. */
static void publish(gd_workers *g)
{
    if (atomic_load_explicit(&g->head, memory_order_relaxed) == g->staged) return;
    /* seq_cst store, then the sleeping check: a worker's store of sleeping
     * and its check of head are seq_cst too, so one of us sees the other */
    atomic_store(&g->head, g->staged);
    for (int i = 0; i < g->count; i++) wake(&g->w[i]);
}

/* The slowest worker's position. */
static uint64_t slowest_tail(const gd_workers *g)
{
    uint64_t slowest = UINT64_MAX;
    for (int i = 0; i < g->count; i++) {
        uint64_t t = atomic_load_explicit(&g->w[i].tail, memory_order_acquire);
        if (t < slowest) slowest = t;
    }
    return slowest;
}

bool gd_workers_push(gd_workers *g, const gd_enriched *e, int64_t stream_time, bool late)
{
    uint64_t h = g->staged;
    if (h - g->free_below == RING_SLOTS && h - (g->free_below = slowest_tail(g)) == RING_SLOTS) {
        publish(g);
        for (int i = 0; i < g->count; i++) wait_for_tail(&g->w[i], h - RING_SLOTS / 2); /* fewer wake-ups */
        g->free_below = h - RING_SLOTS / 2;
    }
    if (!fill_slot(&g->ring[h % RING_SLOTS], e, stream_time, late)) return false;
    g->staged = h + 1;
    if (g->staged - atomic_load_explicit(&g->head, memory_order_relaxed) >= HANDOFF_BATCH) publish(g);
    return true;
}

void gd_workers_flush(gd_workers *g) { publish(g); }

void gd_workers_drain(gd_workers *g)
{
    publish(g);
    for (int i = 0; i < g->count; i++) wait_for_tail(&g->w[i], g->staged);
}

uint64_t gd_workers_take_late(gd_workers *g)
{
    uint64_t n = 0;
    for (int i = 0; i < g->count; i++) {
        n += g->w[i].late;
        g->w[i].late = 0;
    }
    return n;
}

bool gd_workers_failed(const gd_workers *g)
{
    for (int i = 0; i < g->count; i++)
        if (atomic_load_explicit(&g->w[i].failed, memory_order_relaxed)) return true;
    return false;
}

int gd_workers_renew(gd_workers *g)
{
    for (int i = 0; i < g->count; i++)
        if (gd_store_renew_read(g->w[i].read_txn, "worker's")) return GD_ERR;
    return GD_OK;
}

void gd_workers_stop(gd_workers *g)
{
    if (!g) return;
    int started = 0;
    while (started < g->count && g->w[started].started) started++;
    publish(g);
    for (int i = 0; i < started; i++) wait_for_tail(&g->w[i], g->staged);
    atomic_store(&g->stop, true);
    for (int i = 0; i < started; i++) wake(&g->w[i]); /* it checks stop after saying it sleeps, as head */
    for (int i = 0; i < started; i++) pthread_join(g->w[i].thread, NULL);
    for (int i = 0; i < g->count; i++) free_worker(&g->w[i]);
    free(g->ring);
    free(g);
}
