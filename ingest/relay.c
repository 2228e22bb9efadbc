/* relay.c -- push streams in partitioned mode (SPEC §11): every instance
 * serves every stream whole, though each makes the events of its own
 * partitions only.
 *
 * The streams made from activity -- the enriched records, the activity
 * records, the derived streams, each windowed table's rows after each change
 * -- are made where the records are applied, spread over the instances.
 * Their events are therefore not published to the local hub but produced to
 * one more internal topic, `<application id>-push`, and every instance reads
 * that topic from its end into its own hub. A stream's events all go to one
 * partition, the one its name picks (keyed by the name, as Kafka's own
 * partitioner would), so the topic's partitions share the cluster's streams
 * between them while each stream keeps one order: every instance pushes the
 * same events of a stream in the same order with the same ids -- an event's
 * id is its offset + 1 in its stream's partition -- and a client may resume
 * with Last-Event-ID on any instance, behind any load balancer. One stream's
 * events still ride one partition: every instance reads each stream whole,
 * so a stream's rate is bounded by what one instance reads anyway. The reference streams (games,
 * players, their tables) are made by every instance itself, as in a single
 * instance: every instance reads the reference topics whole.
 *
 * Nothing crosses Kafka for a stream nobody listens to. Each instance says
 * which of these streams it listens to (has subscribers, or had them within
 * the hub's linger) with a `W` record on the same topic, again every
 * ANNOUNCE_MS while it listens; every instance produces a stream's events
 * while an announcement naming it is younger than WANT_TTL_MS. A
 * subscriber's first events may therefore come within a moment of its
 * joining, not at once. Every instance keeps every event it reads in its
 * hub, whether it listens itself or not, so a client that fails over to
 * another instance resumes there without a gap. A resumption is never told
 * "no gap" falsely: once no announcement has named a stream for a while,
 * every tick raises the stream's horizon (hub.h) to the topic's position, so
 * a Last-Event-ID from before is told that events may be missing. The
 * same goes for what came before this instance started reading: each
 * partition is read from where it ended when the instance set up its topics
 * (gd_relay_use_partitions), and that is every stream's horizon there.
 *
 * Records: `E<stream name>\n<event text>` (keyed by the name) and
 * `W<instance id>\n<name>\n...` (partition 0).
 * The topic is writable by whoever the brokers allow, so what is read is
 * checked: an unknown stream, a stream this topic does not carry, or text
 * that is not one line of UTF-8 JSON object is skipped. The ingest thread
 * does all of this: it is the one producer of every hub stream. */
#include <stdlib.h>
#include <string.h>

#include "../store/catalog.h"
#include "ingest.h"

enum {
    ANNOUNCE_MS = 2000,
    WANT_TTL_MS = 10000,
    TICK_MS = 50,
    MAX_EVENT_BYTES = 64 * 1024,
};

struct gd_relay {
    gd_hub *hub;
    gd_output *out;
    const gd_catalog *cat;
    gd_counters *counters;
    char topic[sizeof ((gd_config *)0)->application_id + 8];
    char instance[32];
    bool carries[GD_MAX_STREAMS + GD_MAX_TABLES];
    int64_t wanted_until[GD_MAX_STREAMS + GD_MAX_TABLES]; /* by anyone, as announced */
    bool listening[GD_MAX_STREAMS + GD_MAX_TABLES];       /* here, at the last tick */
    int32_t partition_of[GD_MAX_STREAMS + GD_MAX_TABLES]; /* the one carrying the stream's events */
    int32_t partitions;                                   /* 0 until gd_relay_use_partitions */
    int64_t now_ms, announced_ms, ticked_ns;
    uint64_t last_id[GD_MAX_PUSH_PARTITIONS]; /* of the last record read on each partition: its offset + 1 */
    bool reading[GD_MAX_PUSH_PARTITIONS];     /* the partition's start is known: the horizon is set */
    gd_ratelimit gap_log;
    gd_buf val;
};

/* The streams made from activity (see the top). */
static bool made_from_activity(const gd_catalog_entry *entry, unsigned n)
{
    if (entry->is_table) return gd_table_aggregates(entry->table);
    return n != gd_stream_hub(GD_STREAM_GAMES) && n != gd_stream_hub(GD_STREAM_PLAYERS);
}

int gd_relay_open(gd_relay **out, const gd_config *cfg, const gd_catalog *cat, gd_hub *hub, gd_output *output,
                  gd_counters *counters, const char *instance_id)
{
    gd_relay *r = calloc(1, sizeof *r);
    if (!r) return GD_ENOMEM;
    r->hub = hub;
    r->out = output;
    r->cat = cat;
    r->counters = counters;
    snprintf(r->topic, sizeof r->topic, "%s-push", cfg->application_id);
    snprintf(r->instance, sizeof r->instance, "%s", instance_id);
    gd_relay_catalog_changed(r);
    r->now_ms = gd_now_ms();
    *out = r;
    return GD_OK;
}

void gd_relay_catalog_changed(gd_relay *r)
{
    for (unsigned n = 0; n < GD_MAX_STREAMS + GD_MAX_TABLES; n++) {
        const gd_catalog_entry *entry = gd_catalog_hub_entry(r->cat, n);
        r->carries[n] = entry && made_from_activity(entry, n) && r->partitions > 0;
        r->partition_of[n] = r->carries[n] ? gd_kafka_key_partition(gd_str_c(entry->name), r->partitions) : -1;
    }
}

/* Every carried stream of partition p may miss ids up to `id`. */
static void set_horizons(gd_relay *r, int32_t p, uint64_t id)
{
    for (unsigned n = 0; r->hub && n < GD_MAX_STREAMS + GD_MAX_TABLES; n++)
        if (r->partition_of[n] == p) gd_hub_set_horizon(r->hub, n, id);
}

void gd_relay_use_partitions(gd_relay *r, int32_t partitions, const int64_t *from)
{
    r->partitions = partitions < GD_MAX_PUSH_PARTITIONS ? partitions : GD_MAX_PUSH_PARTITIONS;
    gd_relay_catalog_changed(r);
    for (int32_t p = 0; p < r->partitions; p++) {
        r->reading[p] = from[p] >= 0;
        r->last_id[p] = r->reading[p] ? (uint64_t)from[p] : 0;
        if (r->reading[p]) set_horizons(r, p, r->last_id[p]);
    }
}

void gd_relay_close(gd_relay *r)
{
    if (!r) return;
    gd_buf_free(&r->val);
    free(r);
}

const char *gd_relay_topic(const gd_relay *r) { return r->topic; }

bool gd_relay_carries(const gd_relay *r, unsigned stream)
{
    return stream < GD_MAX_STREAMS + GD_MAX_TABLES && r->carries[stream];
}

/* Whether some instance listens to the stream now. */
static bool relay_wanted(const gd_relay *r, unsigned stream) { return r->wanted_until[stream] > r->now_ms; }

static int produce(gd_relay *r, int32_t partition, gd_str key)
{
    gd_str value = {r->val.p, (uint32_t)r->val.len};
    int rc = gd_output_internal(r->out, r->topic, partition, key, value);
    if (!rc && r->counters) atomic_fetch_add(&r->counters->cluster.push_bytes, value.len);
    return rc;
}

static int relay_send(gd_relay *r, unsigned stream, const char *text, size_t len)
{
    const gd_catalog_entry *entry = gd_catalog_hub_entry(r->cat, stream);
    if (!entry || len > MAX_EVENT_BYTES) return GD_OK; /* a hub would not keep it either */
    gd_buf_clear(&r->val);
    gd_buf_putc(&r->val, 'E');
    gd_buf_puts(&r->val, entry->name);
    gd_buf_putc(&r->val, '\n');
    gd_buf_put(&r->val, text, len);
    return produce(r, r->partition_of[stream], gd_str_c(entry->name));
}

/* The streams listened to here, announced when one is new or the last
 * announcement ages; the horizon of every stream no one has named for a
 * while raised to here (its producers stop within a tick of each other). */
int gd_relay_tick(gd_relay *r)
{
    int64_t mono = gd_mono_ns();
    if (mono - r->ticked_ns < (int64_t)TICK_MS * 1000000) return GD_OK;
    r->ticked_ns = mono;
    r->now_ms = gd_now_ms();
    bool any = false, new_one = false;
    gd_buf_clear(&r->val);
    gd_buf_putc(&r->val, 'W');
    gd_buf_puts(&r->val, r->instance);
    for (unsigned n = 0; n < GD_MAX_STREAMS + GD_MAX_TABLES; n++) {
        if (!r->carries[n]) continue;
        int32_t p = r->partition_of[n];
        if (r->hub && r->wanted_until[n] - ANNOUNCE_MS <= r->now_ms && r->reading[p])
            gd_hub_set_horizon(r->hub, n, r->last_id[p]);
        bool listening = r->hub && gd_hub_listened(r->hub, n);
        new_one = new_one || (listening && !r->listening[n]);
        r->listening[n] = listening;
        if (!listening) continue;
        any = true;
        r->wanted_until[n] = r->now_ms + WANT_TTL_MS; /* here at once; the others by the announcement */
        gd_buf_putc(&r->val, '\n');
        gd_buf_puts(&r->val, gd_catalog_hub_entry(r->cat, n)->name);
    }
    if (!any || (!new_one && r->now_ms - r->announced_ms < ANNOUNCE_MS)) return GD_OK;
    r->announced_ms = r->now_ms;
    return produce(r, 0, GD_STR_NULL);
}

/* The carried stream named name, or -1; on partition p unless p is -1. */
static int carried_stream(const gd_relay *r, gd_str name, int32_t p)
{
    const gd_catalog_entry *entry = gd_catalog_find(r->cat, name);
    if (!entry) return -1;
    unsigned n = entry->is_table ? gd_table_hub(entry->slot) : gd_stream_hub(entry->slot);
    return gd_relay_carries(r, n) && (p < 0 || r->partition_of[n] == p) ? (int)n : -1;
}

static bool one_json_object(gd_str t)
{
    return t.len >= 2 && t.len <= MAX_EVENT_BYTES && t.p[0] == '{' && t.p[t.len - 1] == '}' &&
           !memchr(t.p, '\n', t.len) && !memchr(t.p, '\r', t.len) && !memchr(t.p, '\0', t.len) &&
           gd_utf8_valid(t.p, t.len);
}

/* Splits "line\nrest" off s; false when s has no newline. */
static bool next_line(gd_str *s, gd_str *line)
{
    const char *nl = memchr(s->p, '\n', s->len);
    if (!nl) return false;
    *line = (gd_str){s->p, (uint32_t)(nl - s->p)};
    *s = (gd_str){nl + 1, (uint32_t)(s->len - line->len - 1)};
    return true;
}

static void take_wants(gd_relay *r, gd_str rest)
{
    gd_str line;
    if (!next_line(&rest, &line)) return; /* an instance listening to nothing */
    for (bool more = true; more;) {
        more = next_line(&rest, &line);
        if (!more) line = rest;
        int n = carried_stream(r, line, -1);
        if (n >= 0) r->wanted_until[n] = r->now_ms + WANT_TTL_MS;
    }
}

void gd_relay_receive(gd_relay *r, const gd_record *rec)
{
    int32_t p = rec->partition;
    if (p < 0 || p >= r->partitions) return; /* partitions added since: no stream is carried there */
    /* What came before this instance read the partition is not in its hub,
     * nor what it skipped: a reader that fell further behind than the
     * topic's retention starts again at its end. */
    if (!r->reading[p] || (uint64_t)rec->offset != r->last_id[p]) {
        if (r->reading[p] && (uint64_t)rec->offset > r->last_id[p]) {
            if (gd_ratelimit_allow(&r->gap_log))
                gd_warn("%s: records %llu to %lld of partition %d were gone before this instance read them: their "
                        "push events are missing here", r->topic, (unsigned long long)r->last_id[p],
                        (long long)rec->offset - 1, (int)p);
            if (r->counters) atomic_fetch_add(&r->counters->cluster.push_missed, (uint64_t)rec->offset - r->last_id[p]);
        }
        set_horizons(r, p, (uint64_t)rec->offset);
        r->reading[p] = true;
    }
    r->last_id[p] = (uint64_t)rec->offset + 1;
    gd_str v = rec->value;
    if (!v.p || !v.len) return;
    gd_str rest = {v.p + 1, v.len - 1}, name;
    if (v.p[0] == 'W') return take_wants(r, rest);
    if (v.p[0] != 'E' || !next_line(&rest, &name)) return;
    int n = carried_stream(r, name, p); /* a stream's ids are its own partition's offsets */
    if (n < 0 || !r->hub || !one_json_object(rest)) return;
    gd_hub_publish(r->hub, (unsigned)n, r->last_id[p], rest.p, rest.len); /* kept whoever listens: see the top */
}

/* ---- where push events go ---- */

bool gd_push_sink_wanted(gd_push_sink *p, unsigned stream, uint64_t id)
{
    if (p->relay && gd_relay_carries(p->relay, stream)) return relay_wanted(p->relay, stream);
    return p->hub && gd_hub_wanted(p->hub, stream, id);
}

void gd_push_sink_publish(gd_push_sink *p, unsigned stream, uint64_t id, const char *text, size_t len)
{
    if (p->relay && gd_relay_carries(p->relay, stream)) {
        if (relay_send(p->relay, stream, text, len)) p->failed = true;
        return;
    }
    gd_hub_publish(p->hub, stream, id, text, len);
}
