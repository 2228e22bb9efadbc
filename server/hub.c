/* hub.c -- broadcast rings from one producer to many readers, lock-free.
 *
 * A stream is an index of `nslots` slots and a byte ring of `nbytes` bytes,
 * both powers of two, addressed by absolute positions and byte offsets that
 * only grow. The producer never blocks: before writing an event it evicts
 * (advances tail past) every event whose slot or bytes it is about to reuse,
 * announces the bytes it will write (reserved), and only then writes them.
 * A reader uses an event where it lies (a filter that rejects it costs no
 * copy) and afterwards checks, seqlock-style, that neither its slot nor its
 * bytes were reused meanwhile; if they were, whatever it made of the event
 * is discarded: the event was lost to that reader, who moves to the tail and
 * counts the loss.
 * Readers therefore cost the producer nothing, however many and however
 * slow they are.
 *
 * Readers may thus read bytes the producer is overwriting; the check after
 * the use detects it (the classic seqlock pattern), and the bytes always lie
 * inside the ring, so a torn read is wasted work, never a fault. */
#include "hub.h"

#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    _Atomic uint64_t pos1; /* position + 1 of the event held; 0 while rewritten */
    _Atomic uint64_t id, off;
    _Atomic uint32_t len;
} slot;

typedef struct {
    slot *slots;
    char *bytes;
    uint64_t slot_mask, nbytes;
    _Atomic uint64_t head, tail; /* positions: [tail, head) are held */
    _Atomic uint64_t reserved;   /* byte offsets below it are written or being written */
    _Atomic uint64_t horizon;    /* ids <= horizon may be missing */
    _Atomic int64_t subscribers;
    _Atomic int64_t last_left_ms;
    _Atomic uint64_t published, dropped;
    uint64_t written; /* producer only: end of the bytes written */
    bool lingered;    /* producer only: last gd_hub_wanted said yes */
} stream;

struct gd_hub {
    stream *streams;
    unsigned nstreams;
    int64_t linger_ms;
    _Atomic uint64_t publications; /* any stream; what gd_hub_wait watches */
    _Atomic bool waiter_asleep;
    uint64_t waiter_seen;
    int wake_fd;
};

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 1;
    while (p < n) p <<= 1;
    return p;
}

static void *map_zeroed(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int gd_hub_open(gd_hub **out, unsigned nstreams, unsigned nlarge, uint32_t events, uint32_t small_events,
                int64_t linger_ms)
{
    gd_hub *h = calloc(1, sizeof *h);
    if (!h) return GD_ENOMEM;
    h->nstreams = nstreams;
    h->linger_ms = linger_ms;
    h->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    h->streams = calloc(nstreams, sizeof *h->streams);
    if (h->wake_fd < 0 || !h->streams) {
        gd_hub_close(h);
        return GD_ENOMEM;
    }
    for (unsigned i = 0; i < nstreams; i++) {
        uint32_t n = i < nlarge ? events : small_events;
        uint64_t nslots = pow2_at_least(n ? n : 1);
        stream *s = &h->streams[i];
        s->slot_mask = nslots - 1;
        s->nbytes = nslots * GD_HUB_BYTES_PER_EVENT;
        /* mapped zero pages: a stream no one reads (most of the push
         * queries' streams, at any time) costs address space, not memory */
        s->slots = map_zeroed(nslots * sizeof *s->slots);
        s->bytes = map_zeroed(s->nbytes);
        if (!s->slots || !s->bytes) {
            gd_hub_close(h);
            return GD_ENOMEM;
        }
    }
    *out = h;
    return GD_OK;
}

void gd_hub_close(gd_hub *h)
{
    if (!h) return;
    for (unsigned i = 0; h->streams && i < h->nstreams; i++) {
        stream *s = &h->streams[i];
        if (s->slots) munmap(s->slots, (s->slot_mask + 1) * sizeof *s->slots);
        if (s->bytes) munmap(s->bytes, s->nbytes);
    }
    free(h->streams);
    if (h->wake_fd >= 0) close(h->wake_fd);
    free(h);
}

unsigned gd_hub_streams(const gd_hub *h) { return h->nstreams; }

void gd_hub_discard(gd_hub *h, unsigned stream_no)
{
    stream *s = &h->streams[stream_no];
    /* the pages read as zeros again: no event held (pos1 0), nothing kept */
    madvise(s->slots, (s->slot_mask + 1) * sizeof *s->slots, MADV_DONTNEED);
    madvise(s->bytes, s->nbytes, MADV_DONTNEED);
    atomic_store(&s->tail, atomic_load(&s->head));
    atomic_store(&s->horizon, 0); /* the next user's ids are its own */
}

static void raise_horizon(stream *s, uint64_t id)
{
    if (id > atomic_load_explicit(&s->horizon, memory_order_relaxed))
        atomic_store_explicit(&s->horizon, id, memory_order_relaxed);
}

void gd_hub_set_horizon(gd_hub *h, unsigned stream_no, uint64_t horizon)
{
    raise_horizon(&h->streams[stream_no], horizon);
}

/* Whether the stream's last subscriber left within the linger. */
static bool left_lately(const gd_hub *h, const stream *s)
{
    int64_t left = atomic_load_explicit(&s->last_left_ms, memory_order_relaxed);
    return left && gd_now_ms() - left < h->linger_ms;
}

static bool has_subscribers(const stream *s) { return atomic_load_explicit(&s->subscribers, memory_order_relaxed) > 0; }

bool gd_hub_listened(const gd_hub *h, unsigned stream_no)
{
    const stream *s = &h->streams[stream_no];
    return has_subscribers(s) || left_lately(h, s);
}

bool gd_hub_wanted(gd_hub *h, unsigned stream_no, uint64_t id)
{
    stream *s = &h->streams[stream_no];
    bool wanted = has_subscribers(s) || (s->lingered && left_lately(h, s));
    s->lingered = wanted;
    if (!wanted) raise_horizon(s, id);
    return wanted;
}

/* Frees the oldest events until the slot for head and the bytes up to end
 * are no longer anyone's. */
static void evict_for(stream *s, uint64_t head, uint64_t end)
{
    uint64_t tail = atomic_load_explicit(&s->tail, memory_order_relaxed);
    while (tail < head) {
        slot *sl = &s->slots[tail & s->slot_mask];
        uint64_t off = atomic_load_explicit(&sl->off, memory_order_relaxed);
        if (head - tail <= s->slot_mask && off + s->nbytes >= end) break;
        raise_horizon(s, atomic_load_explicit(&sl->id, memory_order_relaxed));
        tail++;
    }
    atomic_store_explicit(&s->tail, tail, memory_order_release);
}

static void ring_copy_in(stream *s, uint64_t off, const char *p, size_t n)
{
    size_t at = off & (s->nbytes - 1), first = s->nbytes - at < n ? s->nbytes - at : n;
    memcpy(s->bytes + at, p, first);
    memcpy(s->bytes, p + first, n - first);
}

static void ring_copy_out(const stream *s, uint64_t off, char *p, size_t n)
{
    size_t at = off & (s->nbytes - 1), first = s->nbytes - at < n ? s->nbytes - at : n;
    memcpy(p, s->bytes + at, first);
    memcpy(p + first, s->bytes, n - first);
}

void gd_hub_publish(gd_hub *h, unsigned stream_no, uint64_t id, const char *text, size_t len)
{
    stream *s = &h->streams[stream_no];
    if (len > s->nbytes / 4) { /* would evict most of the buffer: not kept */
        raise_horizon(s, id);
        return;
    }
    uint64_t head = atomic_load_explicit(&s->head, memory_order_relaxed);
    uint64_t off = s->written, end = off + len;
    evict_for(s, head, end);
    slot *sl = &s->slots[head & s->slot_mask];
    atomic_store_explicit(&sl->pos1, 0, memory_order_relaxed);
    atomic_store_explicit(&s->reserved, end, memory_order_relaxed);
    atomic_thread_fence(memory_order_release); /* the marks above before the writes below */
    atomic_store_explicit(&sl->id, id, memory_order_relaxed);
    atomic_store_explicit(&sl->off, off, memory_order_relaxed);
    atomic_store_explicit(&sl->len, (uint32_t)len, memory_order_relaxed);
    ring_copy_in(s, off, text, len);
    atomic_store_explicit(&sl->pos1, head + 1, memory_order_release);
    s->written = end;
    atomic_store_explicit(&s->head, head + 1, memory_order_release);
    atomic_fetch_add_explicit(&s->published, 1, memory_order_relaxed);
    atomic_fetch_add(&h->publications, 1);
    if (atomic_load(&h->waiter_asleep) && atomic_exchange(&h->waiter_asleep, false)) {
        uint64_t one = 1;
        if (write(h->wake_fd, &one, sizeof one) < 0) { /* full counter: a wake is pending */ }
    }
}

uint64_t gd_hub_head(const gd_hub *h, unsigned stream_no)
{
    return atomic_load_explicit(&h->streams[stream_no].head, memory_order_acquire);
}

uint64_t gd_hub_tail(const gd_hub *h, unsigned stream_no)
{
    return atomic_load_explicit(&h->streams[stream_no].tail, memory_order_acquire);
}

/* The reader at *pos fell behind: move it to the oldest event held. */
static int skip_to_tail(stream *s, uint64_t *pos, uint64_t *lost)
{
    uint64_t tail = atomic_load_explicit(&s->tail, memory_order_acquire);
    if (tail <= *pos) tail = *pos + 1; /* its slot is being rewritten: at least that one */
    *lost += tail - *pos;
    *pos = tail;
    return GD_ERR;
}

int gd_hub_peek(gd_hub *h, unsigned stream_no, uint64_t *pos, gd_hub_event *ev, gd_buf *wrap, uint64_t *lost)
{
    stream *s = &h->streams[stream_no];
    uint64_t p = *pos;
    if (p >= atomic_load_explicit(&s->head, memory_order_acquire)) return GD_AGAIN;
    if (p < atomic_load_explicit(&s->tail, memory_order_acquire)) return skip_to_tail(s, pos, lost);
    slot *sl = &s->slots[p & s->slot_mask];
    if (atomic_load_explicit(&sl->pos1, memory_order_acquire) != p + 1) return skip_to_tail(s, pos, lost);
    ev->id = atomic_load_explicit(&sl->id, memory_order_relaxed);
    ev->off = atomic_load_explicit(&sl->off, memory_order_relaxed);
    uint32_t len = atomic_load_explicit(&sl->len, memory_order_relaxed);
    size_t at = ev->off & (s->nbytes - 1);
    if (at + len <= s->nbytes) {
        ev->text = (gd_str){s->bytes + at, len};
        return GD_OK;
    }
    gd_buf_clear(wrap);
    gd_buf_reserve(wrap, len);
    ring_copy_out(s, ev->off, wrap->p, len);
    wrap->len = len;
    ev->text = (gd_str){wrap->p, len};
    return GD_OK;
}

bool gd_hub_release(gd_hub *h, unsigned stream_no, uint64_t *pos, const gd_hub_event *ev, uint64_t *lost)
{
    stream *s = &h->streams[stream_no];
    uint64_t p = *pos;
    atomic_thread_fence(memory_order_acquire); /* the reads of the text before the checks below */
    if (atomic_load_explicit(&s->slots[p & s->slot_mask].pos1, memory_order_relaxed) != p + 1 ||
        atomic_load_explicit(&s->reserved, memory_order_relaxed) - ev->off > s->nbytes) {
        skip_to_tail(s, pos, lost);
        return false;
    }
    *pos = p + 1;
    return true;
}

/* The id of the event at pos, or false when it is no longer held. */
static bool id_at(const stream *s, uint64_t pos, uint64_t *id)
{
    const slot *sl = &s->slots[pos & s->slot_mask];
    if (atomic_load_explicit(&sl->pos1, memory_order_acquire) != pos + 1) return false;
    *id = atomic_load_explicit(&sl->id, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&sl->pos1, memory_order_relaxed) == pos + 1;
}

bool gd_hub_resume(gd_hub *h, unsigned stream_no, uint64_t after_id, uint64_t *pos, uint64_t *oldest_id)
{
    stream *s = &h->streams[stream_no];
    uint64_t head = atomic_load_explicit(&s->head, memory_order_acquire);
    uint64_t lo = atomic_load_explicit(&s->tail, memory_order_acquire), hi = head;
    if (after_id < atomic_load_explicit(&s->horizon, memory_order_acquire)) {
        if (!id_at(s, lo, oldest_id)) *oldest_id = 0;
        *pos = head;
        return false;
    }
    /* ids grow with positions: the first position with a larger id. An
     * event evicted meanwhile reads as "larger" and only moves the answer
     * later, to where the reader's own loss accounting takes over. */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2, id;
        if (id_at(s, mid, &id) && id <= after_id) lo = mid + 1;
        else hi = mid;
    }
    *pos = lo;
    return true;
}

void gd_hub_subscribed(gd_hub *h, unsigned stream_no, int delta)
{
    stream *s = &h->streams[stream_no];
    if (delta < 0) atomic_store(&s->last_left_ms, gd_now_ms());
    atomic_fetch_add(&s->subscribers, delta);
}

void gd_hub_stream_stats(const gd_hub *h, unsigned stream_no, gd_hub_stats *out)
{
    stream *s = &h->streams[stream_no];
    int64_t subs = atomic_load(&s->subscribers);
    out->published = atomic_load(&s->published);
    out->dropped = atomic_load(&s->dropped);
    out->subscribers = subs > 0 ? (uint64_t)subs : 0;
}

void gd_hub_count_dropped(gd_hub *h, unsigned stream_no, uint64_t n)
{
    atomic_fetch_add_explicit(&h->streams[stream_no].dropped, n, memory_order_relaxed);
}

bool gd_hub_wait(gd_hub *h, int timeout_ms)
{
    uint64_t now = atomic_load(&h->publications);
    if (now == h->waiter_seen) {
        atomic_store(&h->waiter_asleep, true);
        /* a publication between the load above and the store would not
         * wake us: look again before sleeping */
        if (atomic_load(&h->publications) == h->waiter_seen) {
            struct pollfd p = {.fd = h->wake_fd, .events = POLLIN};
            if (poll(&p, 1, timeout_ms) > 0) {
                uint64_t n;
                if (read(h->wake_fd, &n, sizeof n) < 0) { /* drained already */ }
            }
        }
        atomic_store(&h->waiter_asleep, false);
        now = atomic_load(&h->publications);
    }
    bool changed = now != h->waiter_seen;
    h->waiter_seen = now;
    return changed;
}

void gd_hub_wake(gd_hub *h)
{
    uint64_t one = 1;
    if (write(h->wake_fd, &one, sizeof one) < 0) { /* a wake is pending anyway */ }
}
