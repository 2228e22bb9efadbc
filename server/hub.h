/* hub.h -- the push hub: one broadcast ring per stream, written by the
 * thread that produces the stream and read by any number of subscribers.
 *
 * A stream's ring is its replay buffer: the last `events` events (and at most
 * events x GD_HUB_BYTES_PER_EVENT bytes of their text). A subscriber is only a
 * position in the ring, so a thousand subscribers cost a thousand positions,
 * not a thousand queues. The producer never waits for anyone: it overwrites
 * the oldest event, and a subscriber that had not read it yet learns, on its
 * next read, how many events it lost.
 *
 * Event ids are the producer's: increasing within a stream, not necessarily
 * consecutive (a table stream's id is the sequence number of the record that
 * changed the row). The hub keeps, per stream, the horizon below which
 * events may be missing (evicted, or not published because no one listened),
 * so a reconnecting subscriber can be told whether its Last-Event-ID still
 * resumes without a gap.
 *
 * Threads: each stream has exactly one producer thread (gd_hub_wanted,
 * gd_hub_publish); readers are any threads. Waiting for new events
 * (gd_hub_wait) is for one thread, the one that wakes subscribers. */
#ifndef GD_HUB_H
#define GD_HUB_H

#include "util.h"

enum { GD_HUB_BYTES_PER_EVENT = 1024 };

typedef struct gd_hub gd_hub;

/* Streams [0, nlarge) hold `events` events, the others `small_events`. A
 * stream keeps being produced for linger_ms after its last subscriber left,
 * so a client that reconnects within that time resumes without a gap. */
int gd_hub_open(gd_hub **out, unsigned nstreams, unsigned nlarge, uint32_t events, uint32_t small_events,
                int64_t linger_ms);
void gd_hub_close(gd_hub *h);
unsigned gd_hub_streams(const gd_hub *h);
/* Gives a stream's memory back (its events are dropped); only when no one
 * reads or writes it (a push query's stream between two queries). */
void gd_hub_discard(gd_hub *h, unsigned stream);

/* ---- producer side (the stream's one producer thread) ---- */
/* Whether events of stream should be published now (someone listens or
 * listened lately). When not, the event with this id is counted as missing
 * for resumption, so call it once per would-be event. */
bool gd_hub_wanted(gd_hub *h, unsigned stream, uint64_t id);
void gd_hub_publish(gd_hub *h, unsigned stream, uint64_t id, const char *text, size_t len);
/* Whether someone listens to the stream, or did within the linger; unlike
 * gd_hub_wanted it counts nothing missing, and any thread may ask. */
bool gd_hub_listened(const gd_hub *h, unsigned stream);
/* Events with id <= horizon may be missing (ids before a restart). */
void gd_hub_set_horizon(gd_hub *h, unsigned stream, uint64_t horizon);

/* ---- reader side ---- */
uint64_t gd_hub_head(const gd_hub *h, unsigned stream); /* next position to be written */
uint64_t gd_hub_tail(const gd_hub *h, unsigned stream); /* oldest position held */
/* Reads the event at position *pos in place, without copying it: its text
 * points into the ring (or, for an event that wraps around the ring's end,
 * into wrap). Returns GD_OK, GD_AGAIN when *pos is the head, or GD_ERR when
 * the event was overwritten: *pos then moves to the oldest event held and
 * *lost grows by the events skipped. The producer may overwrite the text
 * while it is used, so a GD_OK is followed by gd_hub_release. */
typedef struct {
    uint64_t id, off;
    gd_str text;
} gd_hub_event;
int gd_hub_peek(gd_hub *h, unsigned stream, uint64_t *pos, gd_hub_event *ev, gd_buf *wrap, uint64_t *lost);
/* True, and *pos advanced past it, when ev stayed intact while it was used;
 * false when it was overwritten meanwhile (whatever was made of it must be
 * discarded; *pos and *lost as for a GD_ERR peek). */
bool gd_hub_release(gd_hub *h, unsigned stream, uint64_t *pos, const gd_hub_event *ev, uint64_t *lost);
/* Where a subscriber that saw every event up to id after_id resumes:
 * returns true and the position of the first event with a larger id, or
 * false when events after after_id may be missing (then *oldest_id is the
 * oldest id held, 0 when none). */
bool gd_hub_resume(gd_hub *h, unsigned stream, uint64_t after_id, uint64_t *pos, uint64_t *oldest_id);
void gd_hub_subscribed(gd_hub *h, unsigned stream, int delta); /* +1 / -1 */

/* Figures for /metrics. */
typedef struct {
    uint64_t published, subscribers, dropped;
} gd_hub_stats;
void gd_hub_stream_stats(const gd_hub *h, unsigned stream, gd_hub_stats *out);
/* Subscribers' readers report the events they lost here. */
void gd_hub_count_dropped(gd_hub *h, unsigned stream, uint64_t n);

/* ---- waiting ---- */
/* Blocks until something was published since the last call, or timeout_ms
 * passed. Returns true when something was published. One thread only. */
bool gd_hub_wait(gd_hub *h, int timeout_ms);
/* Makes a gd_hub_wait in progress return. */
void gd_hub_wake(gd_hub *h);

#endif
