/* push.c -- push streams: GET /v1/streams and GET /v1/streams/{stream}.
 *
 * A subscriber is a position in its stream's ring in the hub
 * (server/hub.h) and a little output buffer; no thread and no queue of its
 * own. A filtered subscription (?column=value...) is a push query like
 * SQL's: the planner compiles its filters (gd_sql_plan_filters, which also
 * decides whether they use personal data), the push-query runner
 * (sql/run.c) evaluates them once per event for every subscriber of the
 * same filters and publishes the events that pass, unchanged and with their
 * ids, to the query's ring, which the subscriber reads instead of its
 * stream's. So the wire format, ids, Last-Event-ID and masking are the same
 * either way; the subscriber still counts as its stream's (subscribers,
 * dropped), and the runner's notice of source events it lost (an event
 * that is a bare number) becomes a dropped notice. A reconnect with
 * Last-Event-ID joins the filters' running query when it has read the
 * source from there, else starts one that first reads the source's replay
 * buffer from after that id. libmicrohttpd asks for more response bytes when the
 * socket can take them (its content-reader callback); the reader formats
 * what the ring holds past the subscriber's position, and when there is
 * nothing it suspends the connection. One waker thread waits on the hub and
 * resumes the suspended subscribers whose stream has moved on (or whose
 * heartbeat is due), at most every PASS_MS so that a busy stream costs one
 * resume per subscriber per pass, not per event; with fewer than
 * BUSY_SUBSCRIBERS, passes cost little and come every LIGHT_PASS_MS, so that a
 * dashboard's few streams see an event within milliseconds, not half a
 * pass (1 subscriber at 10,000 events/s: p50 4 ms, not 14). After a wake
 * has sent something, a subscriber sends again in that wake only when
 * TOPUP_EVENTS or more have come meanwhile, else it sleeps and the next pass
 * takes them with the rest: each send to a loopback socket costs the
 * kernel's whole TCP path, and a top-up of one or two events made a third of
 * the sends (1,000 subscribers on one game: a quarter of the HTTP threads'
 * CPU, docs/figures.md). Such a subscriber sleeps with events waiting, which
 * the waker may have looked past already, so it asks for a pass
 * (wake_for_deferred). The producers (ingest)
 * never wait for any of this: a subscriber that falls a whole replay buffer
 * behind loses the oldest events and is told how many.
 *
 * The kernel send buffer of a stream socket is capped (SNDBUF_BYTES) so that
 * a stalled client shows as stalled to the ring rather than as megabytes
 * queued in the kernel, which with thousands of subscribers would be most
 * of the machine's memory. */
#include <microhttpd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../sql/sql.h"
#include "routes.h"

enum {
    TOPUP_EVENTS = 8,          /* events that make a second send in one wake worth it */
    PASS_MS = 20,              /* the most often suspended subscribers are looked at */
    BUSY_SUBSCRIBERS = 64,     /* ... with this many subscribers or more; else every LIGHT_PASS_MS */
    LIGHT_PASS_MS = 2,
    HEARTBEAT_MS = 15000,      /* a comment line on an idle stream */
    RETRY_MS = 3000,           /* the reconnect delay advised to EventSource */
    BLOCK_BYTES = 32 * 1024,   /* libmicrohttpd's buffer per call */
    SNDBUF_BYTES = 128 * 1024, /* kernel send buffer of a stream socket */
    MAX_FILTERS = GD_MAX_PARAMS,
    MAX_LANES = 16, /* streams in one subscription */
};

/* One stream of a subscription. A subscriber reads one stream, or several
 * in one connection (a page with many charts: browsers open at most six
 * connections to a host). */
typedef struct {
    unsigned stream;              /* in the hub: what is read */
    unsigned counted;             /* in the hub: whose subscriber it counts as (its entry's) */
    gd_push_query *query;         /* a filtered subscription's, whose stream is read; else NULL */
    const char *name;             /* the stream's, for events and notices */
    _Atomic uint64_t pos;         /* next ring position (written by the reader) */
    uint64_t after_id;            /* events up to this id were seen already */
    uint64_t lost, lost_reported; /* events lost to the ring */
    bool personal;                /* some member is personal data */
    const gd_catalog_entry *entry; /* what it streams */
} lane;

typedef struct subscriber subscriber;
struct subscriber {
    gd_push *push;
    struct MHD_Connection *conn;
    lane lanes[MAX_LANES];
    int nlanes;
    int next_lane;                 /* where fill starts: round robin */
    gd_push_format format;
    uint64_t remaining;            /* events left before the stream ends (limit) */
    bool limited;                  /* ended by its limit (a push query says so at its end) */
    bool finished;                 /* the epilogue is written: the response ends */
    char *query_id;                /* a push query's: POST /close-query ends it */
    void (*on_close)(void *ctx);   /* a push query's client leaving */
    void *on_close_ctx;
    _Atomic int64_t last_write_ms; /* for heartbeats */
    bool suspended;                /* under push->lock */
    bool sent_this_wake;           /* bytes were handed over since it was last resumed */
    int nfilters;                  /* until the response starts: the filters, in the request */
    const char *filter_names[MAX_FILTERS], *filter_values[MAX_FILTERS];
    gd_buf out;     /* formatted, not yet handed to libmicrohttpd */
    size_t out_off; /* how much of out was handed over */
    char *direct;   /* while read_stream fills: libmicrohttpd's buffer, written into directly */
    size_t direct_len, direct_max;
    gd_buf event;   /* an event that wraps around the ring's end, copied */
    _Atomic bool sees_pii;      /* else the lanes' email members are masked */
    _Atomic bool revoked;       /* its key was removed: the stream ends */
    unsigned char key_digest[32];
    gd_buf masked;  /* an event with its email masked */
    subscriber *prev, *next;
};

struct gd_push {
    gd_hub *hub;
    const gd_catalog *cat;
    gd_sql_runner *runner; /* runs filtered subscriptions */
    gd_auth *auth; /* NULL: no keys */
    unsigned auth_generation;
    pthread_mutex_t lock; /* the list and every subscriber's suspended flag */
    subscriber *subs;
    size_t nsubs;
    atomic_bool closing;
    atomic_bool deferred; /* a subscriber slept with events waiting since the waker's last look */
    pthread_t waker;
    bool waker_started;
};

/* ---- the waker ---- */

/* Events s's streams hold past its positions there. */
static uint64_t waiting_events(const subscriber *s)
{
    uint64_t n = 0;
    for (int i = 0; i < s->nlanes; i++)
        n += gd_hub_head(s->push->hub, s->lanes[i].stream) - atomic_load_explicit(&s->lanes[i].pos, memory_order_relaxed);
    return n;
}

/* Resumes the suspended subscribers with something to send (everyone:
 * all); returns how many subscribers there are. */
static size_t resume_waiting(gd_push *p, bool everyone)
{
    size_t subscribers = 0;
    int64_t now = gd_now_ms();
    pthread_mutex_lock(&p->lock);
    for (subscriber *s = p->subs; s; s = s->next) {
        subscribers++;
        if (!s->suspended) continue;
        if (everyone || waiting_events(s) > 0 ||
            now - atomic_load_explicit(&s->last_write_ms, memory_order_relaxed) >= HEARTBEAT_MS) {
            s->suspended = false;
            MHD_resume_connection(s->conn);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return subscribers;
}

/* After the keys changed (SIGHUP): streams of a key that went away end,
 * and what the remaining keys may see is looked at again. */
static void recheck_keys(gd_push *p)
{
    gd_auth_reload_if_asked(p->auth);
    unsigned generation = gd_auth_generation(p->auth);
    if (generation == p->auth_generation) return;
    p->auth_generation = generation;
    pthread_mutex_lock(&p->lock);
    for (subscriber *s = p->subs; s; s = s->next) {
        unsigned scopes = gd_auth_scopes_of_digest(p->auth, s->key_digest);
        atomic_store(&s->sees_pii, (scopes & GD_SCOPE_PII) != 0);
        if (scopes & GD_SCOPE_READ) continue;
        atomic_store(&s->revoked, true);
        if (s->suspended) {
            s->suspended = false;
            MHD_resume_connection(s->conn);
        }
    }
    pthread_mutex_unlock(&p->lock);
}

static void *waker_main(void *arg)
{
    gd_push *p = arg;
    while (!atomic_load(&p->closing)) {
        int64_t pass = gd_now_ms();
        if (p->auth) recheck_keys(p);
        gd_hub_wait(p->hub, 1000);
        atomic_store(&p->deferred, false); /* after the wait: a later sleeper wakes us again */
        int64_t every = resume_waiting(p, false) >= BUSY_SUBSCRIBERS ? PASS_MS : LIGHT_PASS_MS;
        int64_t spent = gd_now_ms() - pass;
        if (spent < every) gd_sleep_ms(every - spent);
    }
    resume_waiting(p, true); /* they see closing and end */
    return NULL;
}

int gd_push_start(gd_push **out, gd_hub *hub, gd_auth *auth, const gd_catalog *cat, gd_sql_runner *runner)
{
    gd_push *p = calloc(1, sizeof *p);
    if (!p) return GD_ENOMEM;
    p->hub = hub;
    p->cat = cat;
    p->runner = runner;
    p->auth = auth;
    p->auth_generation = gd_auth_generation(auth);
    pthread_mutex_init(&p->lock, NULL);
    if (pthread_create(&p->waker, NULL, waker_main, p)) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        return GD_ERR;
    }
    p->waker_started = true;
    *out = p;
    return GD_OK;
}

void gd_push_close_streams(gd_push *p)
{
    if (!p || !p->waker_started) return;
    atomic_store(&p->closing, true);
    gd_hub_wake(p->hub);
    pthread_join(p->waker, NULL);
    p->waker_started = false;
    /* libmicrohttpd must not be stopped with suspended connections: wait
     * (briefly) for the resumed ones to end */
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&p->lock);
        size_t left = p->nsubs;
        pthread_mutex_unlock(&p->lock);
        if (!left) break;
        resume_waiting(p, true);
        gd_sleep_ms(10);
    }
}

void gd_push_free(gd_push *p)
{
    if (!p) return;
    gd_push_close_streams(p);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* ---- one subscriber ---- */

/* A notice: an SSE event of its own type (no id, so Last-Event-ID keeps
 * pointing at data), or in ndjson an object with "notice"; with several
 * streams, it names the stream. */
static bool ksql_format(const subscriber *s) { return s->format >= GD_PUSH_KSQL_DELIMITED; }

/* A push query's notice among its rows: an object where rows are arrays. */
static void put_query_notice(subscriber *s, gd_str object)
{
    switch (s->format) {
    case GD_PUSH_KSQL_JSON: gd_buf_putc(&s->out, ','); /* fall through */
    case GD_PUSH_KSQL_DELIMITED:
        gd_buf_put(&s->out, object.p, object.len);
        gd_buf_putc(&s->out, '\n');
        break;
    default: /* v1: an error message the stream goes on after */
        gd_buf_puts(&s->out, "{\"errorMessage\":");
        gd_buf_put(&s->out, object.p, object.len);
        gd_buf_puts(&s->out, "},\n");
        break;
    }
}

static void put_notice(subscriber *s, const lane *l, const char *type, const char *json_members)
{
    char stream[160] = "";
    if (s->nlanes > 1) snprintf(stream, sizeof stream, "\"stream\":\"%s\",", l->name);
    if (ksql_format(s)) {
        char object[600];
        int n = snprintf(object, sizeof object, "{\"@type\":\"%s\",%s}", type, json_members);
        put_query_notice(s, (gd_str){object, (uint32_t)(n < (int)sizeof object ? n : (int)sizeof object - 1)});
    } else if (s->format == GD_PUSH_NDJSON) gd_buf_printf(&s->out, "{\"notice\":\"%s\",%s%s}\n", type, stream, json_members);
    else gd_buf_printf(&s->out, "event: %s\ndata: {%s%s}\n\n", type, stream, json_members);
}

/* Events lost since the last notice: counted and told. The position moves
 * with the count, under the lock the metrics take, so the dropped figure
 * (counted + unreported_loss) never counts an event twice or goes back. */
static void report_lost(subscriber *s, lane *l, uint64_t pos)
{
    uint64_t n = l->lost - l->lost_reported;
    if (!n) return;
    pthread_mutex_lock(&s->push->lock);
    atomic_store_explicit(&l->pos, pos, memory_order_relaxed);
    gd_hub_count_dropped(s->push->hub, l->counted, n);
    pthread_mutex_unlock(&s->push->lock);
    char members[256];
    snprintf(members, sizeof members,
             "\"dropped\":%llu,\"total_dropped\":%llu,\"message\":\"this subscriber fell behind the "
             "replay buffer and lost its %llu oldest undelivered events\"",
             (unsigned long long)n, (unsigned long long)l->lost, (unsigned long long)n);
    put_notice(s, l, "dropped", members);
    l->lost_reported = l->lost;
}

/* An event of lane l. With several streams an SSE event is typed by its
 * stream's name and its id is every stream's last id, dot separated (what
 * Last-Event-ID gives back to resume them all); an ndjson line is
 * {"stream": name, "data": event}. */
static void put_query_row(subscriber *s, gd_str row)
{
    switch (s->format) {
    case GD_PUSH_KSQL_DELIMITED:
        gd_buf_put(&s->out, row.p, row.len);
        gd_buf_putc(&s->out, '\n');
        break;
    case GD_PUSH_KSQL_JSON:
        gd_buf_putc(&s->out, ',');
        gd_buf_put(&s->out, row.p, row.len);
        break;
    default: /* v1: each element ends with ",\n" but the final message */
        gd_buf_puts(&s->out, "{\"row\":{\"columns\":");
        gd_buf_put(&s->out, row.p, row.len);
        gd_buf_puts(&s->out, "}},\n");
        break;
    }
}

/* Whether an event of a push query's stream is a row (else a notice). */
static bool is_row(const subscriber *s, gd_str text) { return !ksql_format(s) || (text.len && text.p[0] == '['); }

/* Bytes formatted in this fill: in libmicrohttpd's buffer and after them. */
static size_t pending(const subscriber *s) { return s->direct_len + s->out.len; }

/* An SSE event of one stream, "id: N\ndata: TEXT\n\n": straight into
 * libmicrohttpd's buffer while it fits there and nothing waits in s->out to
 * go before it (one copy of the event's text per subscriber, not two), else
 * onto s->out. */
static void put_sse_event(subscriber *s, uint64_t id, gd_str text)
{
    size_t need = 4 + GD_DEC_MAX + 7 + text.len + 2;
    char *dst;
    size_t *len;
    if (!s->out.len && s->direct && s->direct_max - s->direct_len >= need) {
        dst = s->direct;
        len = &s->direct_len;
    } else {
        gd_buf_reserve(&s->out, need);
        dst = s->out.p;
        len = &s->out.len;
    }
    char *p = dst + *len;
    memcpy(p, "id: ", 4);
    p += 4;
    p += gd_format_dec(p, id);
    memcpy(p, "\ndata: ", 7);
    p += 7;
    memcpy(p, text.p, text.len);
    p += text.len;
    memcpy(p, "\n\n", 2);
    *len = (size_t)(p + 2 - dst);
}

static void put_event(subscriber *s, const lane *l, uint64_t id, gd_str text)
{
    if (ksql_format(s)) { /* a push query's rows are masked by the runner */
        if (is_row(s, text)) put_query_row(s, text);
        else put_query_notice(s, text);
        return;
    }
    if (l->personal && !atomic_load_explicit(&s->sees_pii, memory_order_relaxed)) {
        gd_buf_clear(&s->masked);
        gd_mask_json_object(l->entry, text, &s->masked);
        text = (gd_str){s->masked.p, (uint32_t)s->masked.len};
    }
    bool multi = s->nlanes > 1;
    if (s->format == GD_PUSH_NDJSON) {
        if (multi) gd_buf_printf(&s->out, "{\"stream\":\"%s\",\"data\":", l->name);
        gd_buf_put(&s->out, text.p, text.len);
        gd_buf_puts(&s->out, multi ? "}\n" : "\n");
        return;
    }
    if (!multi) {
        put_sse_event(s, id, text);
        return;
    }
    gd_buf_puts(&s->out, "event: ");
    gd_buf_puts(&s->out, l->name);
    gd_buf_puts(&s->out, "\nid: ");
    for (int i = 0; i < s->nlanes; i++) {
        if (i) gd_buf_putc(&s->out, '.');
        gd_buf_put_dec(&s->out, &s->lanes[i] == l ? id : s->lanes[i].after_id);
    }
    gd_buf_puts(&s->out, "\ndata: ");
    gd_buf_put(&s->out, text.p, text.len);
    gd_buf_puts(&s->out, "\n\n");
}

/* Formats events of lane l past its position (into libmicrohttpd's buffer
 * or s->out), up to `want` bytes; false when there was nothing new. */
static bool fill_lane(subscriber *s, lane *l, size_t want)
{
    bool any = false;
    uint64_t pos = atomic_load_explicit(&l->pos, memory_order_relaxed);
    gd_hub *hub = s->push->hub;
    while (s->remaining && pending(s) < want) {
        gd_hub_event ev;
        int rc = gd_hub_peek(hub, l->stream, &pos, &ev, &s->event, &l->lost);
        if (rc == GD_AGAIN) break;
        any = true;
        if (rc != GD_OK) continue; /* lost: pos moved on */
        report_lost(s, l, pos);
        size_t mark = s->out.len, direct_mark = s->direct_len;
        /* a filtered subscription's query tells of source events it lost by their count */
        int64_t n;
        if (l->query && gd_parse_int(ev.text.p, ev.text.len, 0, INT64_MAX, &n) == GD_OK) {
            if (gd_hub_release(hub, l->stream, &pos, &ev, &l->lost)) l->lost += (uint64_t)n;
            continue;
        }
        bool wanted = ev.id > l->after_id;
        if (wanted) put_event(s, l, ev.id, ev.text);
        if (!gd_hub_release(hub, l->stream, &pos, &ev, &l->lost)) {
            s->out.len = mark; /* overwritten while we read it */
            s->direct_len = direct_mark;
            continue;
        }
        if (wanted) {
            l->after_id = ev.id;
            if (is_row(s, ev.text) && !--s->remaining) s->limited = true;
        }
    }
    report_lost(s, l, pos);
    atomic_store_explicit(&l->pos, pos, memory_order_relaxed);
    return any;
}

/* Formats events past the subscriber's positions, up to `want` bytes
 * (what libmicrohttpd takes now, so that a subscriber keeps at most one
 * event's overflow between calls, whatever it reads), its streams taking
 * turns; false when there was nothing new. */
static bool fill(subscriber *s, size_t want)
{
    bool any = false;
    for (int k = 0; k < s->nlanes && s->remaining && pending(s) < want; k++)
        any |= fill_lane(s, &s->lanes[(s->next_lane + k) % s->nlanes], want);
    s->next_lane = (s->next_lane + 1) % s->nlanes;
    return any;
}

static size_t hand_over(subscriber *s, char *buf, size_t max)
{
    size_t n = s->out.len - s->out_off < max ? s->out.len - s->out_off : max;
    memcpy(buf, s->out.p + s->out_off, n);
    s->out_off += n;
    if (s->out_off == s->out.len) {
        gd_buf_clear(&s->out);
        s->out_off = 0;
    }
    return n;
}

/* A push query's response ends with what closes its JSON: the array,
 * and for the v1 format why it ended. */
static void put_epilogue(subscriber *s)
{
    if (s->format == GD_PUSH_KSQL_JSON) gd_buf_putc(&s->out, ']');
    else if (s->format == GD_PUSH_KSQL_V1)
        gd_buf_puts(&s->out, s->limited ? "{\"finalMessage\":\"Limit Reached\"}]" : "{\"finalMessage\":\"Query Completed\"}]");
}

/* A subscriber went to sleep with events waiting: the waker's pass that
 * saw them may be over, and no publication may come to start another, so
 * it is asked for one (once until it next looks). */
static void wake_for_deferred(gd_push *p)
{
    if (!atomic_exchange(&p->deferred, true)) gd_hub_wake(p->hub);
}

static ssize_t read_stream(void *cls, uint64_t offset, char *buf, size_t max)
{
    (void)offset;
    subscriber *s = cls;
    gd_push *p = s->push;
    for (;;) {
        if (s->out.len) {
            atomic_store_explicit(&s->last_write_ms, gd_now_ms(), memory_order_relaxed);
            return (ssize_t)hand_over(s, buf, max);
        }
        if (s->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!s->remaining || atomic_load(&p->closing) || atomic_load(&s->revoked)) {
            s->finished = true;
            put_epilogue(s);
            continue;
        }
        bool topup = s->sent_this_wake;
        if (topup && waiting_events(s) < TOPUP_EVENTS) goto sleep;
        s->direct = buf;
        s->direct_len = 0;
        s->direct_max = max;
        bool any = fill(s, max);
        size_t direct = s->direct_len;
        s->direct = NULL; /* direct_len means nothing until the next fill sets it */
        if (direct) { /* what went to s->out after it is handed over next call */
            s->sent_this_wake = true;
            atomic_store_explicit(&s->last_write_ms, gd_now_ms(), memory_order_relaxed);
            return (ssize_t)direct;
        }
        if (any) continue;
        if (!ksql_format(s) &&
            gd_now_ms() - atomic_load_explicit(&s->last_write_ms, memory_order_relaxed) >= HEARTBEAT_MS) {
            gd_buf_puts(&s->out, s->format == GD_PUSH_NDJSON ? "\n" : ": keepalive\n\n");
            continue;
        }
        /* Nothing to send (or only a top-up): sleep until the waker sees the
         * stream move. The check and the suspension are one step under the
         * lock the waker takes, so an event published in between is not
         * slept through. */
    sleep:
        pthread_mutex_lock(&p->lock);
        bool waiting = waiting_events(s) > 0;
        bool stay = (waiting && !topup) || atomic_load(&p->closing);
        if (!stay) {
            s->sent_this_wake = false;
            s->suspended = true;
            MHD_suspend_connection(s->conn);
        }
        pthread_mutex_unlock(&p->lock);
        if (stay) continue;
        if (waiting) wake_for_deferred(p);
        return 0;
    }
}

/* Events a subscriber that has stopped reading has already lost (the ring
 * moved past them) without having read far enough to be told: counted in
 * the dropped figure as they happen, not only when the reader wakes up.
 * Under p->lock. */
static uint64_t unreported_loss(const subscriber *s, const lane *l)
{
    uint64_t tail = gd_hub_tail(s->push->hub, l->stream), pos = atomic_load_explicit(&l->pos, memory_order_relaxed);
    return tail > pos ? tail - pos : 0;
}

static void free_subscriber(void *cls)
{
    subscriber *s = cls;
    gd_push *p = s->push;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < s->nlanes; i++) /* lost, and now never told */
        gd_hub_count_dropped(p->hub, s->lanes[i].counted, unreported_loss(s, &s->lanes[i]));
    if (s->prev) s->prev->next = s->next;
    else p->subs = s->next;
    if (s->next) s->next->prev = s->prev;
    p->nsubs--;
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < s->nlanes; i++) {
        gd_hub_subscribed(p->hub, s->lanes[i].counted, -1);
        if (s->lanes[i].query) gd_sql_runner_leave(p->runner, s->lanes[i].query);
    }
    if (s->on_close) s->on_close(s->on_close_ctx);
    gd_buf_free(&s->out);
    gd_buf_free(&s->event);
    gd_buf_free(&s->masked);
    free(s->query_id);
    free(s);
}

/* ---- the request ---- */

static unsigned hub_stream_of(const gd_catalog_entry *e) { return e->is_table ? gd_table_hub(e->slot) : gd_stream_hub(e->slot); }

/* The members an entry's events carry, as stream_column(e, i). */
static const char *stream_column(const gd_catalog_entry *e, int i)
{
    if (!e->is_table) return i < e->ncols ? e->cols[i].name : NULL;
    const gd_tabledef *t = e->table;
    if (i < t->nkeys) return t->keys[i].name;
    i -= t->nkeys;
    if (gd_table_windowed(t)) {
        if (i < 2) return i ? "window_end" : "window_start";
        i -= 2;
    }
    return i < t->ncols ? t->cols[i].name : NULL;
}

/* What an entry's push stream carries, for the listing. */
static const char *events_of(const gd_catalog_entry *e)
{
    if (e->is_table) return "the table's row after each change";
    switch (e->kind) {
    case GD_SRC_ENRICHED: return "enriched records";
    case GD_SRC_DERIVED: return "the records of the stream it derives from that pass its WHERE, projected";
    default: return "the source topic's records as decoded";
    }
}

static void list_entry(const gd_api_ctx *ctx, const gd_catalog_entry *e, bool *first, gd_buf *b)
{
    gd_hub_stats st;
    gd_hub_stream_stats(ctx->hub, hub_stream_of(e), &st);
    if (!*first) gd_buf_putc(b, ',');
    *first = false;
    gd_buf_puts(b, "{\"name\":");
    gd_json_put_cstr(b, e->name);
    gd_buf_printf(b, ",\"path\":\"/v1/streams/%s\",\"events\":\"%s\",\"columns\":[", e->name, events_of(e));
    const char *c;
    for (int k = 0; (c = stream_column(e, k)); k++) {
        if (k) gd_buf_putc(b, ',');
        gd_json_put_cstr(b, c);
    }
    gd_buf_puts(b, "],\"personal_columns\":[");
    bool none = true;
    for (int k = 0; (c = stream_column(e, k)); k++) {
        if (!gd_catalog_column_pii(e, c)) continue;
        if (!none) gd_buf_putc(b, ',');
        none = false;
        gd_json_put_cstr(b, c);
    }
    gd_buf_printf(b, "],\"subscribers\":%llu}", (unsigned long long)st.subscribers);
}

void gd_route_streams_list(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    if (req->nparams) {
        gd_reply_error(r, 400, "unknown parameter '%s': /v1/streams takes none", req->params[0].name);
        return;
    }
    r->status = 200;
    r->content_type = "application/json";
    gd_buf *b = &r->body;
    bool first = true;
    gd_buf_puts(b, "{\"streams\":[");
    for (unsigned i = 0; i < GD_MAX_STREAMS; i++) {
        const gd_catalog_entry *e = gd_catalog_stream(ctx->cat, i);
        if (e) list_entry(ctx, e, &first, b);
    }
    for (unsigned i = 0; i < GD_MAX_TABLES; i++) {
        const gd_catalog_entry *e = gd_catalog_table(ctx->cat, i);
        if (e) list_entry(ctx, e, &first, b);
    }
    gd_buf_puts(b, "]}");
}

static bool parse_count(const char *name, const char *v, uint64_t *out, gd_reply *r)
{
    int64_t n;
    if (!v || gd_parse_int(v, strlen(v), 0, INT64_MAX, &n)) {
        gd_reply_error(r, 400, "%s must be a non-negative integer, not '%s'", name, v ? v : "");
        return false;
    }
    *out = (uint64_t)n;
    return true;
}

/* A Last-Event-ID: one id, or with several streams one id a stream,
 * dot separated, as put_event writes them. */
static bool parse_last_ids(subscriber *s, const char *name, const char *v, gd_reply *r)
{
    const char *p = v ? v : "";
    for (int i = 0; i < s->nlanes; i++) {
        size_t n = strcspn(p, ".");
        char part[24];
        int64_t id;
        if (n == 0 || n >= sizeof part || (i == s->nlanes - 1) != (p[n] == 0)) goto bad;
        memcpy(part, p, n);
        part[n] = 0;
        if (gd_parse_int(part, n, 0, INT64_MAX, &id)) goto bad;
        s->lanes[i].after_id = (uint64_t)id;
        p += n + (p[n] == '.');
    }
    return true;
bad:
    if (s->nlanes > 1)
        gd_reply_error(r, 400, "%s must be %d event ids separated by dots (one a stream), not '%s'", name, s->nlanes,
                       v ? v : "");
    else
        gd_reply_error(r, 400, "%s must be a non-negative integer, not '%s'", name, v ? v : "");
    return false;
}

/* Validates the request into s (the filters point into req). */
static bool parse_subscription(subscriber *s, const gd_request *req, gd_reply *r, bool *has_after)
{
    for (int i = 0; i < req->nparams; i++) {
        const char *name = req->params[i].name, *value = req->params[i].value;
        for (int k = 0; k < i; k++)
            if (!strcmp(req->params[k].name, name)) {
                gd_reply_error(r, 400, "parameter '%s' is given more than once", name);
                return false;
            }
        if (!strcmp(name, "limit")) {
            if (!parse_count("limit", value, &s->remaining, r)) return false;
            if (!s->remaining) {
                gd_reply_error(r, 400, "limit must be at least 1");
                return false;
            }
            continue;
        }
        if (!strcmp(name, "last_event_id")) {
            if (!parse_last_ids(s, "last_event_id", value, r)) return false;
            *has_after = true;
            continue;
        }
        if (s->nlanes > 1) {
            gd_reply_error(r, 400, "filters (here '%s') take a subscription of one stream", name);
            return false;
        }
        s->filter_names[s->nfilters] = name;
        s->filter_values[s->nfilters++] = value ? value : "";
    }
    return true;
}

static lane lane_of(const gd_catalog_entry *e)
{
    unsigned stream = hub_stream_of(e);
    return (lane){.stream = stream, .counted = stream, .name = e->name, .personal = gd_catalog_has_pii(e), .entry = e};
}

int gd_push_check_filters(const gd_catalog_entry *e, const gd_request *req, const gd_str *events, size_t n,
                          bool *matched)
{
    subscriber *s = calloc(1, sizeof *s);
    if (!s) return 500;
    s->nlanes = 1;
    s->lanes[0] = lane_of(e);
    gd_reply r = {0};
    bool has_after = false;
    int status = parse_subscription(s, req, &r, &has_after) ? 200 : r.status;
    gd_arena arena;
    gd_arena_init(&arena);
    gd_query_plan plan = {0};
    gd_sql_error err = {0};
    if (status == 200 && gd_sql_plan_filters(e, s->filter_names, s->filter_values, s->nfilters, &arena, &plan, &err))
        status = err.http_status;
    else if (status == 200 && plan.pii_use.column && !gd_request_sees_pii(req)) status = 403;
    gd_value row[plan.row_width + 1];
    for (size_t i = 0; status == 200 && i < n; i++)
        matched[i] = gd_sql_event_row(e, events[i], row, plan.row_width, &arena) && gd_sql_filters_pass(&plan, row, &arena);
    gd_buf_free(&r.body);
    gd_arena_free(&arena);
    free(s);
    return status;
}

/* Whether the events of l's entry after l->after_id are still in its
 * replay buffer (*pos: the first of them); when not, the subscriber is told
 * and *pos is the live stream. */
static bool resumes(subscriber *s, lane *l, uint64_t *pos)
{
    uint64_t oldest;
    if (gd_hub_resume(s->push->hub, l->counted, l->after_id, pos, &oldest)) return true;
    char members[320];
    snprintf(members, sizeof members,
             "\"last_event_id\":%llu,\"oldest_id\":%llu,\"message\":\"events after id %llu are no longer "
             "in the replay buffer; continuing with live events\"",
             (unsigned long long)l->after_id, (unsigned long long)oldest, (unsigned long long)l->after_id);
    put_notice(s, l, "replay_unavailable", members);
    return false;
}

/* Places lane l in the stream it reads: its entry's (from now, or after
 * its last event id), or for a filtered subscription the stream of the
 * push query that runs its filters (api/push.c's top comment); false with
 * r set when the filters are refused. */
static bool start_position(subscriber *s, lane *l, bool has_after, gd_reply *r)
{
    uint64_t pos = gd_hub_head(s->push->hub, l->stream);
    bool resumed = has_after && resumes(s, l, &pos);
    if (s->nfilters) {
        gd_sql_error err = {0};
        if (gd_sql_runner_join_filters(s->push->runner, l->entry, s->filter_names, s->filter_values, s->nfilters,
                                       atomic_load(&s->sees_pii), resumed ? &l->after_id : NULL, &l->query, &l->stream,
                                       &pos, &err)) {
            gd_reply_error(r, err.http_status ? err.http_status : 500, "%s", err.message);
            return false;
        }
        s->nfilters = 0; /* the request's, gone after this call */
    }
    atomic_store(&l->pos, pos);
    return true;
}

/* The subscription's streams: one name, or several, comma separated. */
static bool parse_streams(subscriber *s, const char *names, gd_reply *r)
{
    char name[128];
    for (const char *p = names; *p;) {
        size_t n = strcspn(p, ",");
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), p);
        const gd_catalog_entry *e = n < sizeof name ? gd_catalog_find(s->push->cat, gd_str_c(name)) : NULL;
        if (!e) {
            gd_reply_error(r, 404, "no such stream: %s (GET /v1/streams lists them)", name);
            return false;
        }
        for (int i = 0; i < s->nlanes; i++)
            if (s->lanes[i].entry == e) {
                gd_reply_error(r, 400, "stream %s is named twice", name);
                return false;
            }
        if (s->nlanes == MAX_LANES) {
            gd_reply_error(r, 400, "at most %d streams in one subscription", MAX_LANES);
            return false;
        }
        s->lanes[s->nlanes++] = lane_of(e);
        p += n + (p[n] == ',');
    }
    if (!s->nlanes) gd_reply_error(r, 404, "no stream named");
    return s->nlanes > 0;
}

static void cap_send_buffer(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    int size = SNDBUF_BYTES;
    if (ci) setsockopt(ci->connect_fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

/* A subscription that was never started. */
static void discard(subscriber *s)
{
    gd_buf_free(&s->out);
    free(s->query_id);
    free(s);
}

/* Starts the response streaming s: its lanes counted as listening and
 * placed, it joins the subscribers the waker looks after. NULL (r set) when
 * libmicrohttpd has no response for it; s is then the caller's. */
static struct MHD_Response *start_response(gd_push *p, subscriber *s, bool has_after, const char *content_type,
                                           gd_reply *r)
{
    int placed = 0;
    struct MHD_Response *resp = NULL;
    while (placed < s->nlanes) {
        lane *l = &s->lanes[placed];
        gd_hub_subscribed(p->hub, l->counted, +1); /* before the position: no event slips between */
        if (!start_position(s, l, has_after, r)) goto fail;
        placed++;
    }
    atomic_store(&s->last_write_ms, gd_now_ms());
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, BLOCK_BYTES, read_stream, s, free_subscriber);
    if (!resp) {
        gd_reply_error(r, 500, "cannot create the stream response");
        goto fail;
    }
    pthread_mutex_lock(&p->lock);
    s->next = p->subs;
    if (p->subs) p->subs->prev = s;
    p->subs = s;
    p->nsubs++;
    pthread_mutex_unlock(&p->lock);
    cap_send_buffer(s->conn);
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    r->status = 200;
    return resp;
fail:
    for (int i = 0; i <= placed && i < s->nlanes; i++) {
        gd_hub_subscribed(p->hub, s->lanes[i].counted, -1);
        if (s->lanes[i].query) gd_sql_runner_leave(p->runner, s->lanes[i].query);
        s->lanes[i].query = NULL;
    }
    return NULL;
}

/* A subscriber for the request's key, or NULL with r set. */
static subscriber *new_subscriber(gd_push *p, struct MHD_Connection *conn, const gd_request *req, gd_reply *r)
{
    if (atomic_load(&p->closing)) {
        gd_reply_error(r, 503, "shutting down");
        return NULL;
    }
    subscriber *s = calloc(1, sizeof *s);
    if (!s) {
        gd_reply_error(r, 500, "out of memory");
        return NULL;
    }
    s->push = p;
    s->conn = conn;
    s->remaining = UINT64_MAX;
    atomic_store(&s->sees_pii, gd_request_sees_pii(req));
    memcpy(s->key_digest, req->key_digest, sizeof s->key_digest);
    return s;
}

struct MHD_Response *gd_push_subscribe(gd_push *p, struct MHD_Connection *conn, const gd_request *req,
                                       const char *names, gd_reply *r)
{
    subscriber *s = new_subscriber(p, conn, req, r);
    if (!s) return NULL;
    bool has_after = false;
    if (!parse_streams(s, names, r)) goto fail;
    const char *last = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
    if (last && *last) {
        if (!parse_last_ids(s, "Last-Event-ID", last, r)) goto fail;
        has_after = true;
    }
    if (!parse_subscription(s, req, r, &has_after)) goto fail;
    const char *accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    s->format = accept && strstr(accept, "application/x-ndjson") ? GD_PUSH_NDJSON : GD_PUSH_SSE;
    if (s->format == GD_PUSH_SSE) gd_buf_printf(&s->out, "retry: %d\n\n", RETRY_MS);
    struct MHD_Response *resp =
        start_response(p, s, has_after, s->format == GD_PUSH_NDJSON ? "application/x-ndjson" : "text/event-stream", r);
    if (resp) return resp;
fail:
    discard(s);
    return NULL;
}

struct MHD_Response *gd_push_subscribe_query(gd_push *p, struct MHD_Connection *conn, const gd_request *req,
                                             const gd_push_query_stream *qs, gd_reply *r)
{
    subscriber *s = new_subscriber(p, conn, req, r);
    if (!s) return NULL;
    if (!(s->query_id = strdup(qs->query_id))) {
        discard(s);
        gd_reply_error(r, 500, "out of memory");
        return NULL;
    }
    if (qs->limit) s->remaining = qs->limit;
    s->format = qs->format;
    s->nlanes = 1;
    s->lanes[0] = (lane){.stream = qs->hub_stream, .counted = qs->hub_stream, .name = qs->name};
    gd_buf_put(&s->out, qs->prologue.p, qs->prologue.len);
    struct MHD_Response *resp = start_response(p, s, false, qs->content_type, r);
    if (!resp) {
        discard(s);
        return NULL;
    }
    s->on_close = qs->on_close; /* from now on the subscriber is the one that leaves */
    s->on_close_ctx = qs->on_close_ctx;
    return resp;
}

/* Ends the subscribers for which ends(s) holds; how many. */
static int end_subscribers(gd_push *p, bool (*ends)(const subscriber *s, const void *ctx), const void *ctx)
{
    int n = 0;
    pthread_mutex_lock(&p->lock);
    for (subscriber *s = p->subs; s; s = s->next) {
        if (!ends(s, ctx)) continue;
        atomic_store(&s->revoked, true);
        n++;
        if (s->suspended) {
            s->suspended = false;
            MHD_resume_connection(s->conn);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* A push query's responses that a caller may end or see: those whose
 * request used its key, or any with the admin scope. */
typedef struct {
    const char *id;
    const gd_request *req;
} query_of_caller;

static bool of_query(const subscriber *s, const void *ctx)
{
    const query_of_caller *q = ctx;
    return s->query_id && !strcmp(s->query_id, q->id) &&
           ((q->req->scopes & GD_SCOPE_ADMIN) || !memcmp(s->key_digest, q->req->key_digest, sizeof s->key_digest));
}

int gd_push_close_query(gd_push *p, const char *query_id, const gd_request *req)
{
    return end_subscribers(p, of_query, &(query_of_caller){query_id, req});
}

bool gd_push_query_visible(gd_push *p, const char *query_id, const gd_request *req)
{
    query_of_caller q = {query_id, req};
    pthread_mutex_lock(&p->lock);
    const subscriber *s = p->subs;
    while (s && !of_query(s, &q)) s = s->next;
    pthread_mutex_unlock(&p->lock);
    return s != NULL;
}

static bool reads_stream(const subscriber *s, const void *stream)
{
    for (int i = 0; i < s->nlanes; i++)
        if (s->lanes[i].counted == *(const unsigned *)stream) return true;
    return false;
}

void gd_push_end_stream(gd_push *p, unsigned hub_stream) { end_subscribers(p, reads_stream, &hub_stream); }

size_t gd_push_count(gd_push *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->nsubs;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void gd_push_metrics(gd_push *p, gd_buf *b)
{
    unsigned n = gd_hub_streams(p->hub);
    gd_hub_stats st[n];
    for (unsigned i = 0; i < n; i++) gd_hub_stream_stats(p->hub, i, &st[i]);
    pthread_mutex_lock(&p->lock);
    for (subscriber *s = p->subs; s; s = s->next)
        for (int i = 0; i < s->nlanes; i++) st[s->lanes[i].counted].dropped += unreported_loss(s, &s->lanes[i]);
    pthread_mutex_unlock(&p->lock);
    static const struct {
        const char *name, *type, *help;
    } figures[] = {
        {"gamingd_stream_subscribers", "gauge", "Push subscribers connected, by stream."},
        {"gamingd_stream_events_published_total", "counter", "Events published to the push hub, by stream (only while someone listens)."},
        {"gamingd_stream_events_dropped_total", "counter", "Events slow subscribers lost because they fell a replay buffer behind, by stream."},
    };
    for (int f = 0; f < 3; f++) {
        gd_prom_family(b, figures[f].name, figures[f].type, figures[f].help);
        for (unsigned i = 0; i < n; i++) {
            const gd_catalog_entry *e = gd_catalog_hub_entry(p->cat, i);
            if (!e) continue;
            gd_prom_sample(b, figures[f].name, GD_PROM_LABELS("stream", e->name), "%llu",
                           (unsigned long long)(f == 0 ? st[i].subscribers : f == 1 ? st[i].published : st[i].dropped));
        }
    }
}
