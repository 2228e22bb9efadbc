/* sse_load.c -- many SSE subscribers on one thread, for make bench.
 *
 *   sse_load PORT PATH CONNECTIONS SECONDS [stall]
 *   sse_load PORT PATH CONNECTIONS SECONDS query FILE
 *
 * With "stall", the subscribers read their response headers and then
 * nothing for SECONDS (clients that never read: what they cost the server
 * is measured on the server's side). With "query", each connection POSTs
 * a push query to PATH (/query-stream): connection i the i-th line of FILE,
 * round robin; a row is a line that starts with '[', and its last column,
 * when a number, is the processing_timestamp its delay is measured from.
 *
 * In PATH, {i} stands for the connection's number from 1, five digits
 * (player_{i}: player_00001, ...): a filter of each subscriber's own.
 *
 * Opens CONNECTIONS subscriptions to PATH (HTTP/1.0, so the body is the bare
 * event stream), waits until every one has its response headers, then counts
 * for SECONDS: events received, "dropped" notices and the events they
 * report lost, and per event the delay from the record's
 * processing_timestamp (when gamingd enriched it, wall clock ms) to its
 * arrival here. Prints one line of key=value figures, subscribed_s being the
 * time from the first connect until every subscription had its headers (the
 * connects go out back to back: a burst, as after a restart). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { LINE_MAX_BYTES = 16384, MAX_DELAY_MS = 60000 };

typedef struct {
    int fd;
    int headers_done;
    size_t len;
    char line[LINE_MAX_BYTES];
} conn;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t delays[MAX_DELAY_MS + 1];
static uint64_t events, drop_notices, dropped;
static int counting, query_rows, ready_conns;

static void count_delay(int64_t processed_ms)
{
    int64_t d = now_ms() - processed_ms;
    delays[d < 0 ? 0 : d > MAX_DELAY_MS ? MAX_DELAY_MS : d]++;
}

/* A push query's row: ["...", 3, 1795900000000] */
static void on_row(const char *p, size_t n)
{
    const char *last = p + n;
    while (last > p && last[-1] != ',') last--;
    if (last > p && *last >= '0' && *last <= '9') count_delay(strtoll(last, NULL, 10));
    events++;
}

static void on_line(const char *p, size_t n)
{
    if (counting && query_rows && n && p[0] == '[') return on_row(p, n);
    if (counting && query_rows && n && p[0] == '{' && memmem(p, n, "\"dropped\":", 10)) {
        drop_notices++;
        dropped += strtoull((const char *)memmem(p, n, "\"dropped\":", 10) + 10, NULL, 10);
        return;
    }
    if (!counting || n < 6 || memcmp(p, "data: ", 6)) return;
    const char *ts = memmem(p, n, "\"processing_timestamp\":", 23);
    if (ts) {
        count_delay(strtoll(ts + 23, NULL, 10));
        events++;
        return;
    }
    const char *dr = memmem(p, n, "\"dropped\":", 10);
    if (dr) {
        drop_notices++;
        dropped += strtoull(dr + 10, NULL, 10);
    } else {
        events++; /* a table row: counted, no timestamp to measure */
    }
}

/* Splits received bytes into lines (memchr, not a byte at a time: this
 * thread shares the machine with gamingd, so what it spends shows in the
 * delays it measures); the first blank line ends the headers. */
static void on_line_of(conn *c, const char *p, size_t n)
{
    if (n && p[n - 1] == '\r') n--;
    if (!c->headers_done) {
        if (!n) {
            c->headers_done = 1;
            ready_conns++;
        }
    } else {
        on_line(p, n);
    }
}

/* Keeps part of a line that a later read ends (up to LINE_MAX_BYTES). */
static void keep(conn *c, const char *p, size_t n)
{
    size_t room = LINE_MAX_BYTES - c->len;
    memcpy(c->line + c->len, p, n < room ? n : room);
    c->len += n < room ? n : room;
}

static void on_bytes(conn *c, const char *p, size_t n)
{
    const char *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t part = (size_t)((nl ? nl : end) - p);
        if (!nl) { /* an unfinished line */
            keep(c, p, part);
            return;
        }
        if (c->len) { /* the end of a line begun in an earlier read */
            keep(c, p, part);
            on_line_of(c, c->line, c->len);
            c->len = 0;
        } else {
            on_line_of(c, p, part);
        }
        p = nl + 1;
    }
}

static double percentile(double q)
{
    uint64_t total = 0, seen = 0;
    for (int i = 0; i <= MAX_DELAY_MS; i++) total += delays[i];
    if (!total) return -1;
    for (int i = 0; i <= MAX_DELAY_MS; i++) {
        seen += delays[i];
        if ((double)seen >= q * (double)total) return i;
    }
    return MAX_DELAY_MS;
}

int main(int argc, char **argv)
{
    if (argc != 5 && !(argc == 6 && !strcmp(argv[5], "stall")) && !(argc == 7 && !strcmp(argv[5], "query"))) {
        fprintf(stderr, "usage: sse_load PORT PATH CONNECTIONS SECONDS [stall | query FILE]\n");
        return 2;
    }
    int port = atoi(argv[1]), nconn = atoi(argv[3]), seconds = atoi(argv[4]);
    int stall = argc == 6;
    query_rows = argc == 7;
    char *queries[1024];
    int nqueries = 0;
    if (query_rows) {
        FILE *f = fopen(argv[6], "r");
        char line[4096];
        while (f && nqueries < 1024 && fgets(line, sizeof line, f))
            if (line[0] != '\n') queries[nqueries++] = strdup(line);
        if (f) fclose(f);
        if (!nqueries) {
            fprintf(stderr, "no queries in %s\n", argv[6]);
            return 2;
        }
    }
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    char req[8192];
    int reqlen = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", argv[2]);
    int ep = epoll_create1(0);
    conn *conns = calloc((size_t)nconn, sizeof *conns);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int64_t opened = now_ms();
    for (int i = 0; i < nconn; i++) {
        conn *c = &conns[i];
        if (query_rows) { /* {"sql": the line} -- the lines hold no quote or backslash */
            char body[4200];
            int bl = snprintf(body, sizeof body, "{\"sql\":\"%.*s\"}", (int)strcspn(queries[i % nqueries], "\n"),
                              queries[i % nqueries]);
            reqlen = snprintf(req, sizeof req,
                              "POST %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              "Content-Length: %d\r\n\r\n%s",
                              argv[2], bl, body);
        }
        const char *mark = query_rows ? NULL : strstr(argv[2], "{i}");
        if (mark)
            reqlen = snprintf(req, sizeof req, "GET %.*s%05d%s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
                              (int)(mark - argv[2]), argv[2], i + 1, mark + 3);
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a) ||
            write(c->fd, req, (size_t)reqlen) != reqlen) {
            fprintf(stderr, "connection %d: %s\n", i, strerror(errno));
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }
    static char buf[1 << 16];
    struct epoll_event evs[256];
    int64_t start = now_ms(), count_from = 0, end = 0;
    int open_conns = nconn;
    for (;;) {
        int ready = ready_conns;
        if (!counting && ready == nconn && stall) {
            printf("connections=%d subscribed_s=%.2f stalled_s=%d\n", nconn, (double)(now_ms() - opened) / 1000.0,
                   seconds);
            fflush(stdout);
            sleep((unsigned)seconds);
            return 0;
        }
        if (!counting && ready == nconn) {
            counting = 1;
            count_from = now_ms();
            end = count_from + (int64_t)seconds * 1000;
        }
        if (counting && now_ms() >= end) break;
        if (!counting && now_ms() - start > 60000) {
            fprintf(stderr, "only %d of %d subscriptions answered within 60 s\n", ready, nconn);
            return 1;
        }
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            ssize_t got = read(c->fd, buf, sizeof buf);
            if (got > 0) {
                on_bytes(c, buf, (size_t)got);
            } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                open_conns--;
            }
        }
    }
    double span = (double)(now_ms() - count_from) / 1000.0;
    printf("connections=%d open=%d subscribed_s=%.2f seconds=%.1f events=%llu events_per_s=%.0f "
           "per_subscriber_per_s=%.1f p50_ms=%.0f p99_ms=%.0f drop_notices=%llu dropped=%llu\n",
           nconn, open_conns, (double)(count_from - opened) / 1000.0, span, (unsigned long long)events,
           (double)events / span,
           (double)events / span / nconn, percentile(0.50), percentile(0.99),
           (unsigned long long)drop_notices, (unsigned long long)dropped);
    return 0;
}
