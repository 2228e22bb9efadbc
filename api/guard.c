/* guard.c -- connections that hold a slot without finishing a request.
 *
 * libmicrohttpd times a connection out only when it goes quiet: a client
 * that sends a byte every few seconds (slowloris) keeps its slot for good,
 * and a thousand such clients fill the connection limit, so that health
 * checks and dashboards are turned away. The guard follows every connection
 * through libmicrohttpd's notifications and knows whether it is waiting
 * (idle, or receiving a request) or answering (its request is whole and
 * its work runs under its own deadline, a response is queued, a push
 * stream runs). Then:
 *   - A sweeper thread, once a second, ends a waiting connection that has
 *     been receiving a request for longer than the request timeout: with a
 *     408 and a JSON error when its request line had arrived, else by
 *     closing it. Whether bytes of a request arrived is read from the
 *     kernel at the sweep (TCP_INFO: any byte on a new connection, data
 *     later than the last answer on a kept-alive one), so idle keep-alive
 *     connections are not taken for slow ones; those are left to
 *     libmicrohttpd's idle timeout. Nothing is read from the kernel per
 *     request: a TCP_INFO at every answer was 6% of a pull's CPU.
 *     While bytes sit unread in the socket's receive queue the wait is the
 *     server's (its workers are busy), not the client's: the clock restarts,
 *     so a request queued behind slow ones is answered, not cut off.
 *   - When a new connection comes within RESERVE of the limit, the waiting
 *     connection that has waited longest is closed, so a health check always
 *     finds room; push streams are refused beyond the limit less RESERVE
 *     (gd_guard_stream_room).
 * A connection is ended with shutdown(2): libmicrohttpd then reads end of
 * file and closes it on its own thread. The guard's lock is held across the
 * shutdown, and libmicrohttpd's close notification (which comes before it
 * closes the socket) takes the same lock, so a socket number is never acted
 * on after it was closed and reused. */
#include <linux/tcp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "routes.h"

enum {
    SWEEP_MS = 1000,
    RESERVE = 32,          /* connections kept for anything but push streams */
    EVICT_AFTER_MS = 1000, /* a connection waiting less long is not evicted */
    /* TCP_INFO's time since data came counts in jiffies (4-10 ms): data
     * less than this after the last answer is taken for the answered
     * request's, not a new one's. A new request sent that soon and then
     * stalled for good is left to the idle timeout. */
    ANSWERED_MARGIN_MS = 20,
};

struct gd_guarded {
    int fd;
    bool answering;
    bool ended;            /* shut down by the guard, not closed yet */
    bool line_received;    /* the request line of the current request arrived */
    bool answered;         /* a request was answered: later data is a new one's */
    int64_t receiving_ms;  /* when bytes of a request were first seen, 0: none */
    int64_t waiting_since; /* ms, monotonic: since started or last answered */
    gd_guarded *prev, *next;
};

struct gd_guard {
    pthread_mutex_t lock;
    gd_guarded *head; /* newest first */
    size_t count, limit;
    int64_t request_timeout_ms;
    bool tls; /* no plain-text 408 can be written on a TLS socket */
    pthread_t sweeper;
    pthread_cond_t wake;
    bool stopping, started;
    _Atomic uint64_t timed_out, evicted;
};

static int64_t mono_ms(void) { return gd_mono_ns() / 1000000; }

/* Under the lock: whether bytes of a request arrived since the connection
 * started or its last request was answered. */
static bool request_arriving(const gd_guarded *c, int64_t now)
{
    struct tcp_info ti;
    socklen_t n = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &n)) return false;
    if (!c->answered) return ti.tcpi_bytes_received > 0;
    return (int64_t)ti.tcpi_last_data_recv + ANSWERED_MARGIN_MS < now - c->waiting_since;
}

/* Whether bytes the client sent wait unread: the server is behind. */
static bool server_behind(int fd)
{
    int unread = 0;
    return ioctl(fd, FIONREAD, &unread) == 0 && unread > 0;
}

/* Under the lock. */
static void end_connection(gd_guard *g, gd_guarded *c, bool timed_out)
{
    if (timed_out && c->line_received && !g->tls) {
        static const char body[] =
            "{\"error_code\":408,\"message\":\"the request was not completed within the request timeout\"}";
        char msg[256];
        int n = snprintf(msg, sizeof msg,
                         "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         sizeof body - 1, body);
        if (send(c->fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) { /* it is being closed anyway */
        }
    }
    shutdown(c->fd, SHUT_RDWR);
    c->ended = c->answering = true; /* neither swept nor evicted again */
    atomic_fetch_add(timed_out ? &g->timed_out : &g->evicted, 1);
}

/* Under the lock: the connection that has waited longest, if a while. */
static gd_guarded *longest_waiting(gd_guard *g)
{
    gd_guarded *oldest = NULL;
    int64_t before = mono_ms() - EVICT_AFTER_MS;
    for (gd_guarded *c = g->head; c; c = c->next)
        if (!c->answering && c->waiting_since <= before && (!oldest || c->waiting_since < oldest->waiting_since))
            oldest = c;
    return oldest;
}

/* Under the lock: ends waiting connections, longest waiting first, until
 * `free` slots are left below the limit (or no connection qualifies). */
static void make_room(gd_guard *g, size_t free)
{
    size_t ending = 0;
    for (gd_guarded *c = g->head; c; c = c->next) ending += c->ended;
    while (g->count - ending + free > g->limit) {
        gd_guarded *victim = longest_waiting(g);
        if (!victim) return;
        end_connection(g, victim, false);
        ending++;
    }
}

static void sweep(gd_guard *g)
{
    int64_t now = mono_ms();
    pthread_mutex_lock(&g->lock);
    make_room(g, RESERVE);
    for (gd_guarded *c = g->head; c; c = c->next) {
        if (c->answering) continue;
        if (!c->receiving_ms) {
            if (request_arriving(c, now)) c->receiving_ms = now;
        } else if (server_behind(c->fd)) {
            c->receiving_ms = now;
        } else if (now - c->receiving_ms >= g->request_timeout_ms) {
            end_connection(g, c, true);
        }
    }
    pthread_mutex_unlock(&g->lock);
}

static void *sweeper_main(void *arg)
{
    gd_guard *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += SWEEP_MS / 1000;
        pthread_cond_timedwait(&g->wake, &g->lock, &until);
        if (g->stopping) break;
        pthread_mutex_unlock(&g->lock);
        sweep(g);
        pthread_mutex_lock(&g->lock);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

int gd_guard_open(gd_guard **out, size_t connection_limit, int64_t request_timeout_ms, bool tls)
{
    gd_guard *g = calloc(1, sizeof *g);
    if (!g) return GD_ENOMEM;
    g->limit = connection_limit;
    g->request_timeout_ms = request_timeout_ms;
    g->tls = tls;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->wake, NULL);
    if (pthread_create(&g->sweeper, NULL, sweeper_main, g)) {
        gd_guard_close(g);
        return GD_ERR;
    }
    g->started = true;
    *out = g;
    return GD_OK;
}

void gd_guard_close(gd_guard *g)
{
    if (!g) return;
    if (g->started) {
        pthread_mutex_lock(&g->lock);
        g->stopping = true;
        pthread_cond_signal(&g->wake);
        pthread_mutex_unlock(&g->lock);
        pthread_join(g->sweeper, NULL);
    }
    while (g->head) gd_guard_closed(g, g->head);
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

gd_guarded *gd_guard_started(gd_guard *g, int fd)
{
    gd_guarded *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd = fd;
    c->waiting_since = mono_ms();
    pthread_mutex_lock(&g->lock);
    c->next = g->head;
    if (g->head) g->head->prev = c;
    g->head = c;
    g->count++;
    make_room(g, RESERVE / 2); /* before the limit turns anyone away */
    pthread_mutex_unlock(&g->lock);
    return c;
}

void gd_guard_closed(gd_guard *g, gd_guarded *c)
{
    if (!c) return;
    pthread_mutex_lock(&g->lock);
    if (c->prev) c->prev->next = c->next;
    else g->head = c->next;
    if (c->next) c->next->prev = c->prev;
    g->count--;
    pthread_mutex_unlock(&g->lock);
    free(c);
}

void gd_guard_line_received(gd_guard *g, gd_guarded *c)
{
    if (!c) return;
    pthread_mutex_lock(&g->lock);
    c->line_received = true;
    pthread_mutex_unlock(&g->lock);
}

void gd_guard_answering(gd_guard *g, gd_guarded *c)
{
    if (!c) return;
    pthread_mutex_lock(&g->lock);
    c->answering = true;
    pthread_mutex_unlock(&g->lock);
}

void gd_guard_idle(gd_guard *g, gd_guarded *c)
{
    if (!c) return;
    pthread_mutex_lock(&g->lock);
    if (c->ended) {
        pthread_mutex_unlock(&g->lock);
        return;
    }
    c->answering = false;
    c->line_received = false;
    c->answered = true;
    c->receiving_ms = 0;
    c->waiting_since = mono_ms();
    pthread_mutex_unlock(&g->lock);
}

bool gd_guard_stream_room(const gd_guard *g, size_t streams) { return streams + RESERVE < g->limit; }

void gd_guard_metrics(const gd_guard *g, gd_buf *b)
{
    const char *name = "gamingd_http_connections_ended_total";
    gd_prom_family(b, name, "counter",
                   "Connections gamingd ended: timeout (a request not completed within --request-timeout), evicted "
                   "(waiting the longest when the connection limit came near).");
    gd_prom_sample(b, name, GD_PROM_LABELS("reason", "timeout"), "%llu", (unsigned long long)atomic_load(&g->timed_out));
    gd_prom_sample(b, name, GD_PROM_LABELS("reason", "evicted"), "%llu", (unsigned long long)atomic_load(&g->evicted));
}
