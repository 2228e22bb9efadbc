/* http.c -- the libmicrohttpd server: routing, replies, health and metrics.
 *
 * MHD runs its own thread pool over epoll; each request is answered on the
 * second call of the access handler (once the body is read), from a reply
 * built in a gd_buf whose memory is handed to MHD. Route handlers are plain
 * functions from (request) to (reply), so they are testable without a
 * socket; push streams answer with a callback response instead (push.c).
 *
 * Every request gets an answer, as JSON, within a bounded time:
 *  - The request target is decoded by gamingd (request.c), not by MHD,
 *    whose per-connection pool (CONNECTION_MEMORY) would otherwise fill with
 *    a record per parameter: the URI log callback, which MHD calls with the
 *    raw target before parsing it, decodes it and then hides the query
 *    string from MHD. Targets over GD_MAX_URI are a 414, header blocks over
 *    MAX_HEADER_BYTES a 431, bodies over MAX_BODY_BYTES a 413. What does not
 *    even fit the pool (a request line or header block of tens of KiB) is
 *    refused by MHD itself, with its own 414/431 status.
 *  - Connections slow to send a request are ended, and the limit always
 *    keeps room for health checks (guard.c). A request's work has the same
 *    time: req.deadline_ms is --request-timeout after its request line, and
 *    scans stop past it (store/query.h), so a worker thread is never kept
 *    by a request whose client was already told 408.
 *  - Host and Origin are checked before routing (netpolicy.c).
 * With --tls-cert, HTTPS offers TLS 1.2 and 1.3 only. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "../sql/sql.h"
#include "routes.h"

enum {
    /* Descriptors kept for everything but HTTP clients: LMDB, Kafka
     * sockets, the log, files being replayed. */
    FD_RESERVE = 256,
    /* Pending connections the kernel holds while the workers accept: a fleet
     * of dashboards reconnecting at once after a restart is thousands of
     * SYNs in a burst, and an overflowing queue costs them seconds of SYN
     * retries or, past the retries, a reset. Measured: 5,000 connects at
     * once overflow 1024 by ~2,000 and 2048 by 0-300. 4096 overflows never,
     * but admits so many at once that libmicrohttpd, accepting 10 per turn
     * of its loop while it resumes thousands of filtered subscribers, took
     * 15-19 s instead of 3-6 s to answer 5,000 filtered subscriptions at
     * 10,000 events/s. (The kernel caps this at net.core.somaxconn.) */
    LISTEN_BACKLOG = 2048,
    /* libmicrohttpd's memory per connection: the request line and headers
     * gamingd accepts (GD_MAX_URI + MAX_HEADER_BYTES) with room to spare.
     * MHD zeroes the whole pool at every request on a kept-alive
     * connection, so it is not made larger than that. */
    CONNECTION_MEMORY = 64 * 1024,
    MAX_HEADER_BYTES = 16 * 1024,
    MAX_HEADERS = 100,
    MAX_BODY_BYTES = 1 << 20,
    IDLE_TIMEOUT_S = 120, /* a kept-alive connection with no request */
};

/* GnuTLS's defaults, but TLS 1.2 and 1.3 only: 1.0 and 1.1 are deprecated
 * (RFC 8996) and GnuTLS's NORMAL still offers them. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

static const int statuses[] = {200, 204, 400, 401, 403, 404, 405, 408, 413, 414, 431, 500, 503};
enum { NSTATUS = sizeof statuses / sizeof statuses[0] };

struct gd_api {
    struct MHD_Daemon *mhd;
    gd_api_ctx ctx;
    gd_push *push;
    gd_guard *guard;
    gd_netpolicy *netpolicy;
    gd_auth *auth; /* NULL: no --api-keys */
    _Atomic uint64_t requests[64][NSTATUS]; /* by route (routes[], then "other") and status */
    pthread_mutex_t log_lock; /* MHD logs from every worker */
    gd_ratelimit log_limit;
};

void gd_reply_error(gd_reply *r, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->status = status;
    r->content_type = "application/json";
    gd_buf_clear(&r->body);
    gd_buf_printf(&r->body, "{\"error_code\":%d,\"message\":", status);
    gd_json_put_cstr(&r->body, msg);
    gd_buf_putc(&r->body, '}');
}

void gd_reply_timed_out(const gd_api_ctx *ctx, gd_reply *r)
{
    gd_reply_error(r, 408, "the request's work took longer than --request-timeout (%lld ms) and was stopped; "
                           "narrow its range or filters", (long long)ctx->cfg->request_timeout_ms);
}

static void reply_json(gd_reply *r, int status, const char *text)
{
    r->status = status;
    r->content_type = "application/json";
    gd_buf_puts(&r->body, text);
}

static void route_readyz(const gd_api_ctx *ctx, gd_reply *r)
{
    bool ready = atomic_load(&ctx->counters->ready);
    uint64_t applied = 0;
    for (int t = 0; t <= GD_TOPIC_COUNT; t++) applied += atomic_load(&ctx->counters->records_in[t]);
    r->status = ready ? 200 : 503;
    r->content_type = "application/json";
    gd_buf_printf(&r->body, "{\"ready\":%s,\"records_applied\":%llu}", ready ? "true" : "false",
                  (unsigned long long)applied);
}

/* A metric with one value and no labels. */
static void metric_u64(gd_buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    gd_prom_family(b, name, type, help);
    gd_prom_sample(b, name, NULL, "%llu", (unsigned long long)v);
}

/* A metric by source topic; with_unknown: a last value for records whose
 * topic is none of the three. */
static void metric_by_topic(gd_buf *b, const gd_config *cfg, const char *name, const char *help,
                            const _Atomic uint64_t *v, bool with_unknown)
{
    gd_prom_family(b, name, "counter", help);
    for (int t = 0; t < GD_TOPIC_COUNT + with_unknown; t++)
        gd_prom_sample(b, name, GD_PROM_LABELS("topic", t < GD_TOPIC_COUNT ? cfg->topics[t] : "unknown"), "%llu",
                       (unsigned long long)atomic_load(&v[t]));
}

/* Only with --brokers: the consumers' lag and the producer's progress. */
static void kafka_metrics(const gd_config *cfg, const gd_counters *c, gd_buf *b)
{
    bool consuming = cfg->source == GD_SRC_KAFKA;
    if (consuming) {
        gd_prom_family(b, "gamingd_kafka_consumer_lag", "gauge",
                       "Records between the committed position and the high-water marks, by topic (activity: assigned partitions).");
        for (int t = 0; t < GD_TOPIC_COUNT; t++)
            gd_prom_sample(b, "gamingd_kafka_consumer_lag", GD_PROM_LABELS("topic", cfg->topics[t]), "%lld",
                           (long long)atomic_load(&c->consumer_lag[t]));
        metric_u64(b, "gamingd_kafka_rebalances_total", "counter", "Activity partitions assigned or revoked.",
                   atomic_load(&c->kafka_rebalances));
    }
    metric_u64(b, "gamingd_kafka_up", "gauge", "0 while a Kafka client reaches no broker.",
               atomic_load(&c->kafka_unreachable) ? 0 : 1);
    metric_u64(b, "gamingd_kafka_errors_total", "counter", "Errors reported by the Kafka clients (they retry by themselves).",
               atomic_load(&c->kafka_errors));
    metric_u64(b, "gamingd_kafka_produced_total", "counter", "Enriched records handed to the producer.",
               atomic_load(&c->kafka_produced));
    metric_u64(b, "gamingd_kafka_delivered_total", "counter", "Records the brokers acknowledged (output and dead letters).",
               atomic_load(&c->kafka_delivered));
    metric_u64(b, "gamingd_kafka_delivery_failures_total", "counter", "Records the brokers refused for good, or larger than the producer sends.",
               atomic_load(&c->kafka_delivery_failed));
    metric_by_topic(b, cfg, "gamingd_dead_letters_total", "Bad records written to <topic>.dlq, by source topic.",
                    c->dead_letters, false);
}

static void request_metrics(gd_api *api, gd_buf *b);

static void route_metrics(gd_api *api, gd_reply *r)
{
    const gd_counters *c = api->ctx.counters;
    const gd_config *cfg = api->ctx.cfg;
    gd_buf *b = &r->body;
    r->status = 200;
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
    metric_by_topic(b, cfg, "gamingd_records_in_total", "Source records read, by topic.", c->records_in, true);
    metric_by_topic(b, cfg, "gamingd_bad_records_total",
                    "Records that could not be decoded or lacked a required field, by topic.", c->bad_records, true);
    gd_prom_family(b, "gamingd_bad_records_reason_total", "counter",
                   "Records set aside, by reason: invalid (undecodable, a required field missing), future (event time "
                   "beyond --max-future of the wall clock), too_large (beyond --max-record-bytes).");
    for (int rs = 0; rs < GD_BAD_REASON_COUNT; rs++)
        gd_prom_sample(b, "gamingd_bad_records_reason_total", GD_PROM_LABELS("reason", gd_bad_reason_names[rs]), "%llu",
                       (unsigned long long)atomic_load(&c->bad_by_reason[rs]));
    uint64_t out = atomic_load(&c->records_out);
    metric_u64(b, "gamingd_late_records_total", "counter", "Activity records past their window's grace.",
               atomic_load(&c->late_records));
    gd_prom_family(b, "gamingd_records_out_total", "counter", "Enriched records emitted, by output topic.");
    gd_prom_sample(b, "gamingd_records_out_total", GD_PROM_LABELS("topic", cfg->output_topic), "%llu",
                   (unsigned long long)out);
    gd_prom_family(b, "gamingd_enrichment_rate", "gauge", "Share of enriched records that found their game or player row.");
    gd_prom_sample(b, "gamingd_enrichment_rate", GD_PROM_LABELS("table", "games"), "%.6f",
                   out ? (double)atomic_load(&c->with_game) / (double)out : 0.0);
    gd_prom_sample(b, "gamingd_enrichment_rate", GD_PROM_LABELS("table", "players"), "%.6f",
                   out ? (double)atomic_load(&c->with_player) / (double)out : 0.0);
    metric_u64(b, "gamingd_ingest_records_per_second", "gauge", "Source records read per second, over the last second or more.",
               atomic_load(&c->ingest_rate));
    gd_prom_family(b, "gamingd_processing_lag_ms", "gauge", "Processing time minus event time of the last record.");
    gd_prom_sample(b, "gamingd_processing_lag_ms", NULL, "%lld", (long long)atomic_load(&c->last_lag_ms));
    gd_prom_family(b, "gamingd_stream_time_ms", "gauge", "Largest activity_timestamp processed.");
    int64_t st = atomic_load(&c->stream_time);
    gd_prom_sample(b, "gamingd_stream_time_ms", NULL, "%lld", (long long)(st == INT64_MIN ? 0 : st));
    metric_u64(b, "gamingd_commits_total", "counter", "State commits to LMDB.", atomic_load(&c->batches));
    gd_prom_family(b, "gamingd_commit_seconds_total", "counter",
                   "Time the ingest thread spent writing state to LMDB, and waiting for the commit before, while no record moves on.");
    gd_prom_sample(b, "gamingd_commit_seconds_total", NULL, "%.6f", (double)atomic_load(&c->commit_ns) / 1e9);
    gd_prom_family(b, "gamingd_commit_interval_seconds", "gauge",
                   "How often live data is committed now, so how old a pull query's answer may be: --commit-interval, "
                   "or ten times as long as the last commit took when that is longer, up to ten intervals.");
    gd_prom_sample(b, "gamingd_commit_interval_seconds", NULL, "%.3f", (double)atomic_load(&c->commit_interval_ns) / 1e9);
    metric_u64(b, "gamingd_hot_window_bytes", "gauge",
               "Memory of the windows held in memory (the recent ones; older open windows are read back from LMDB).",
               atomic_load(&c->hot_window_bytes));
    metric_u64(b, "gamingd_lmdb_size_bytes", "gauge", "Size of the LMDB data in use.", gd_store_size(api->ctx.store));
    metric_u64(b, "gamingd_ready", "gauge", "1 when the store is open and the sources are caught up.",
               atomic_load(&c->ready) ? 1 : 0);
    if (cfg->brokers[0]) kafka_metrics(cfg, c, b);
    gd_cluster_metrics(&api->ctx, b);
    gd_peers_metrics(api->ctx.peers, b);
    gd_push_metrics(api->push, b);
    uint64_t queries, events_in, events_lost, rows_out;
    gd_sql_runner_metrics(api->ctx.runner, &queries, &events_in, &events_lost, &rows_out);
    metric_u64(b, "gamingd_push_queries", "gauge", "Push queries running (SQL EMIT CHANGES, and filtered /v1/streams subscriptions), identical ones counted once.",
               queries);
    metric_u64(b, "gamingd_push_query_events_total", "counter", "Records the push queries read from their sources.",
               events_in);
    metric_u64(b, "gamingd_push_query_events_lost_total", "counter",
               "Records the push queries missed because they fell a replay buffer behind their source.", events_lost);
    metric_u64(b, "gamingd_push_query_rows_total", "counter", "Rows the push queries published.", rows_out);
    gd_guard_metrics(api->guard, b);
    request_metrics(api, b);
}

/* ---- routes ----
 * One row a route: its path (a prefix when it ends in '/' and `prefix`),
 * the one method it answers (GET routes answer HEAD too, but streams), the
 * scope a key needs for it (0: open to all), and its handler, which gets the
 * path past the prefix. */
typedef void (*route_fn)(gd_api *api, const gd_request *req, const char *rest, gd_reply *r);
/* A route that may answer with a stream: the response, or NULL with r set. */
typedef struct MHD_Response *(*stream_fn)(gd_api *api, struct MHD_Connection *conn, const gd_request *req,
                                          const char *rest, gd_reply *r);
typedef struct {
    const char *path;
    bool prefix;
    const char *method;
    unsigned scope;
    route_fn fn;      /* or: */
    stream_fn stream; /* a route that streams */
    const char *label; /* for metrics, when not the path */
    bool data;         /* answers from the activity: refused while this instance holds part of it */
} route;

static void route_healthz(gd_api *api, const gd_request *req, const char *rest, gd_reply *r)
{
    (void)api, (void)req, (void)rest;
    reply_json(r, 200, "{\"status\":\"ok\"}");
}
static void route_ready(gd_api *api, const gd_request *req, const char *rest, gd_reply *r)
{
    (void)req, (void)rest;
    route_readyz(&api->ctx, r);
}
static void route_prometheus(gd_api *api, const gd_request *req, const char *rest, gd_reply *r)
{
    (void)req, (void)rest;
    route_metrics(api, r);
}
static void route_tables(gd_api *api, const gd_request *req, const char *rest, gd_reply *r)
{
    (void)rest;
    gd_route_tables_list(&api->ctx, req, r);
}
/* The reference tables are read whole by every instance: served always. */
static void route_rows(gd_api *api, const gd_request *req, const char *rest, gd_reply *r)
{
    const gd_tabledef *t = gd_catalog_tabledef(api->ctx.cat, gd_str_c(rest));
    if ((!t || t->kind == GD_TABLE_WINDOWED) && gd_cluster_refuse_partial(&api->ctx, r)) return;
    gd_route_table_rows(&api->ctx, req, rest, r);
}
static void route_streams(gd_api *api, const gd_request *req, const char *rest, gd_reply *r)
{
    (void)rest;
    gd_route_streams_list(&api->ctx, req, r);
}

static struct MHD_Response *route_push(gd_api *api, struct MHD_Connection *conn, const gd_request *req,
                                       const char *rest, gd_reply *r);
static struct MHD_Response *route_query_stream(gd_api *api, struct MHD_Connection *conn, const gd_request *req,
                                               const char *rest, gd_reply *r);
static struct MHD_Response *route_query(gd_api *api, struct MHD_Connection *conn, const gd_request *req,
                                        const char *rest, gd_reply *r);

/* Routes whose handler needs only the context and the request. */
#define CTX_ROUTE(name, fn)                                                              \
    static void name(gd_api *api, const gd_request *req, const char *rest, gd_reply *r) \
    {                                                                                    \
        (void)rest;                                                                      \
        fn(&api->ctx, req, r);                                                           \
    }
CTX_ROUTE(route_grafana_root, gd_grafana_root)
CTX_ROUTE(route_grafana_metrics, gd_grafana_metrics)
CTX_ROUTE(route_grafana_options, gd_grafana_payload_options)
CTX_ROUTE(route_grafana_query, gd_grafana_query)
CTX_ROUTE(route_grafana_variable, gd_grafana_variable)
CTX_ROUTE(route_grafana_tag_keys, gd_grafana_tag_keys)
CTX_ROUTE(route_grafana_tag_values, gd_grafana_tag_values)
CTX_ROUTE(route_cluster, gd_route_cluster)
CTX_ROUTE(route_internal_rows, gd_route_internal_rows)
CTX_ROUTE(route_ksql, gd_ksql_statements)
CTX_ROUTE(route_close_query, gd_ksql_close_query)
CTX_ROUTE(route_info, gd_ksql_info)
CTX_ROUTE(route_healthcheck, gd_ksql_healthcheck)

static void route_index(gd_api *api, const gd_request *req, const char *rest, gd_reply *r)
{
    (void)api, (void)rest;
    gd_route_page(req, "index.html", r);
}
static void route_asset(gd_api *api, const gd_request *req, const char *rest, gd_reply *r)
{
    (void)api;
    gd_route_page(req, rest, r);
}

static const route routes[] = {
    {"/", false, "GET", 0, route_index, NULL, NULL, false},
    {"/assets/", true, "GET", 0, route_asset, NULL, "/assets/{file}", false},
    {"/healthz", false, "GET", 0, route_healthz, NULL, NULL, false},
    {"/readyz", false, "GET", 0, route_ready, NULL, NULL, false},
    {"/metrics", false, "GET", GD_SCOPE_READ, route_prometheus, NULL, NULL, false},
    {"/v1/tables", false, "GET", GD_SCOPE_READ, route_tables, NULL, NULL, false},
    {"/v1/tables/", true, "GET", GD_SCOPE_READ, route_rows, NULL, "/v1/tables/{table}", false},
    {"/v1/streams", false, "GET", GD_SCOPE_READ, route_streams, NULL, NULL, false},
    {"/v1/streams/", true, "GET", GD_SCOPE_READ, NULL, route_push, "/v1/streams/{stream}", true},
    {"/v1/cluster", false, "GET", GD_SCOPE_READ, route_cluster, NULL, NULL, false},
    {"/v1/internal/rows", false, "POST", GD_SCOPE_INSTANCE, route_internal_rows, NULL, NULL, false},
    {"/grafana", false, "GET", GD_SCOPE_READ, route_grafana_root, NULL, NULL, false},
    {"/grafana/", false, "GET", GD_SCOPE_READ, route_grafana_root, NULL, NULL, false},
    {"/grafana/metrics", false, "POST", GD_SCOPE_READ, route_grafana_metrics, NULL, NULL, false},
    {"/grafana/metric-payload-options", false, "POST", GD_SCOPE_READ, route_grafana_options, NULL, NULL, false},
    {"/grafana/query", false, "POST", GD_SCOPE_READ, route_grafana_query, NULL, NULL, true},
    {"/grafana/variable", false, "POST", GD_SCOPE_READ, route_grafana_variable, NULL, NULL, true},
    {"/grafana/tag-keys", false, "POST", GD_SCOPE_READ, route_grafana_tag_keys, NULL, NULL, false},
    {"/grafana/tag-values", false, "POST", GD_SCOPE_READ, route_grafana_tag_values, NULL, NULL, true},
    /* ksqlDB's REST API; DDL checks the admin scope per statement */
    {"/query-stream", false, "POST", GD_SCOPE_READ, NULL, route_query_stream, NULL, true},
    {"/query", false, "POST", GD_SCOPE_READ, NULL, route_query, NULL, true},
    {"/ksql", false, "POST", GD_SCOPE_READ, route_ksql, NULL, NULL, false},
    {"/close-query", false, "POST", GD_SCOPE_READ, route_close_query, NULL, NULL, false},
    {"/info", false, "GET", 0, route_info, NULL, NULL, false},
    {"/healthcheck", false, "GET", 0, route_healthcheck, NULL, NULL, false},
};
enum { NROUTES = sizeof routes / sizeof routes[0] };

static const char *route_label(const route *rt) { return rt->label ? rt->label : rt->path; }

/* The route of a path, or NULL. */
static const route *route_of(const char *path)
{
    for (size_t i = 0; i < NROUTES; i++) {
        size_t n = strlen(routes[i].path);
        if (routes[i].prefix ? !strncmp(path, routes[i].path, n) && path[n] : !strcmp(path, routes[i].path))
            return &routes[i];
    }
    return NULL;
}

static void request_metrics(gd_api *api, gd_buf *b)
{
    gd_prom_family(b, "gamingd_http_requests_total", "counter",
                   "HTTP requests by route and status (401 and 403: refused for want of a key or of a scope).");
    for (size_t rt = 0; rt <= NROUTES; rt++)
        for (int st = 0; st < NSTATUS; st++) {
            uint64_t n = atomic_load(&api->requests[rt][st]);
            if (!n) continue;
            char status[8];
            snprintf(status, sizeof status, "%d", statuses[st]);
            gd_prom_sample(b, "gamingd_http_requests_total",
                           GD_PROM_LABELS("route", rt < NROUTES ? route_label(&routes[rt]) : "other", "status", status),
                           "%llu", (unsigned long long)n);
        }
}

static void count_request(gd_api *api, size_t route_index, int status)
{
    for (int st = 0; st < NSTATUS; st++)
        if (statuses[st] == status) {
            atomic_fetch_add_explicit(&api->requests[route_index][st], 1, memory_order_relaxed);
            return;
        }
}

/* What the server keeps of one request: made by the URI log callback (the
 * first sight of a request), freed when the request completes. */
typedef struct {
    gd_request req;
    int refused; /* gd_request_parse's status: 0, 400, 414, 500 */
    bool announced;
    bool body_too_large;
    gd_buf body;
} request_state;

static gd_guarded *guarded(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void *on_request_line(void *cls, const char *target, struct MHD_Connection *conn)
{
    gd_api *api = cls;
    request_state *rs = calloc(1, sizeof *rs);
    if (rs) {
        rs->refused = gd_request_parse(&rs->req, target);
        rs->req.deadline_ms = gd_mono_ns() / 1000000 + api->ctx.cfg->request_timeout_ms;
    }
    /* MHD parses the query string into its connection pool after this
     * call; gamingd has decoded it already, so MHD is shown none. The
     * target lies in the connection's read buffer, which MHD writes itself. */
    char *query = strchr(target, '?');
    if (query) query[1] = 0;
    gd_guard_line_received(api->guard, guarded(conn));
    return rs;
}

static void on_request_done(void *cls, struct MHD_Connection *conn, void **state,
                            enum MHD_RequestTerminationCode why)
{
    (void)why;
    gd_api *api = cls;
    request_state *rs = *state;
    if (rs) {
        gd_request_free(&rs->req);
        gd_buf_free(&rs->body);
        free(rs);
        *state = NULL;
    }
    gd_guard_idle(api->guard, guarded(conn));
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode what)
{
    gd_api *api = cls;
    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci ? gd_guard_started(api->guard, ci->connect_fd) : NULL;
    } else {
        gd_guard_closed(api->guard, *socket_context);
        *socket_context = NULL;
    }
}

typedef struct {
    size_t bytes, count;
} header_size;

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                       const char *value, size_t value_size)
{
    (void)kind;
    (void)key;
    (void)value;
    header_size *hs = cls;
    hs->bytes += key_size + value_size + 4;
    hs->count++;
    return MHD_YES;
}

/* The checks every request passes before its route: the target, the
 * header block, the body, Host and Origin. */
static bool admissible(gd_api *api, struct MHD_Connection *conn, request_state *rs, gd_reply *r,
                       const char **allow_origin)
{
    if (rs->refused) {
        gd_reply_error(r, rs->refused, "%s", rs->req.error);
        return false;
    }
    header_size hs = {0, 0};
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, add_header_size, &hs);
    if (hs.bytes > MAX_HEADER_BYTES || hs.count > MAX_HEADERS) {
        gd_reply_error(r, 431, "the request's headers take %zu bytes in %zu fields; at most %d bytes and %d fields are accepted",
                       hs.bytes, hs.count, MAX_HEADER_BYTES, MAX_HEADERS);
        return false;
    }
    if (rs->body_too_large) {
        gd_reply_error(r, 413, "the request body is larger than %d bytes", MAX_BODY_BYTES);
        return false;
    }
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    return gd_netpolicy_check(api->netpolicy, host, origin, r, allow_origin) == GD_OK;
}

/* Whether one more stream leaves room for other requests (else a 503). */
static bool stream_room(gd_api *api, gd_reply *r)
{
    if (gd_guard_stream_room(api->guard, gd_push_count(api->push))) return true;
    gd_reply_error(r, 503, "too many push subscribers for this server's connection limit; try again later");
    return false;
}

static struct MHD_Response *route_push(gd_api *api, struct MHD_Connection *conn, const gd_request *req,
                                       const char *rest, gd_reply *r)
{
    return stream_room(api, r) ? gd_push_subscribe(api->push, conn, req, rest, r) : NULL;
}

static struct MHD_Response *route_query_stream(gd_api *api, struct MHD_Connection *conn, const gd_request *req,
                                               const char *rest, gd_reply *r)
{
    (void)rest;
    return stream_room(api, r) ? gd_ksql_query_stream(&api->ctx, conn, req, r) : NULL;
}

static struct MHD_Response *route_query(gd_api *api, struct MHD_Connection *conn, const gd_request *req,
                                        const char *rest, gd_reply *r)
{
    (void)rest;
    return stream_room(api, r) ? gd_ksql_query(&api->ctx, conn, req, r) : NULL;
}

/* The key a request presents: `Authorization: Bearer KEY`, or
 * ?access_token=KEY (a browser's EventSource cannot send headers), which
 * is taken out of the parameters the route sees. */
static const char *presented_key(struct MHD_Connection *conn, gd_request *req)
{
    const char *key = NULL;
    for (int i = 0; i < req->nparams; i++)
        if (!strcmp(req->params[i].name, "access_token")) {
            key = req->params[i].value ? req->params[i].value : "";
            memmove(&req->params[i], &req->params[i + 1], sizeof req->params[0] * (size_t)(req->nparams - i - 1));
            req->nparams--;
            break;
        }
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth && !strncasecmp(auth, "Bearer ", 7)) {
        auth += 7;
        while (*auth == ' ') auth++;
        key = auth;
    }
    return key;
}

/* Sets req->scopes; false with a 401 or 403 in r when the route needs a
 * scope the request's key lacks. */
static bool authorized(gd_api *api, struct MHD_Connection *conn, const route *rt, gd_request *req, gd_reply *r)
{
    const char *key = presented_key(conn, req);
    if (!api->auth) {
        req->scopes = GD_SCOPE_ALL;
        return true;
    }
    gd_auth_reload_if_asked(api->auth);
    req->scopes = gd_auth_scopes(api->auth, key, req->key_digest);
    if (!rt->scope || (req->scopes & rt->scope) == rt->scope) return true;
    if (!req->scopes)
        gd_reply_error(r, 401, key ? "unknown API key"
                                   : "this route needs an API key: Authorization: Bearer KEY, or ?access_token=KEY");
    else
        gd_reply_error(r, 403, "this API key lacks the '%s' scope this route needs",
                       rt->scope & GD_SCOPE_ADMIN ? "admin" : rt->scope & GD_SCOPE_INSTANCE ? "instance" : "read");
    return false;
}

/* Routes the request: the reply in r, or a push stream's response. */
static struct MHD_Response *route_request(gd_api *api, struct MHD_Connection *conn, const char *method,
                                          gd_request *req, const route *rt, gd_reply *r)
{
    if (!rt) {
        gd_reply_error(r, 404, "no such resource: %s", req->path);
        return NULL;
    }
    if (!strcmp(method, "OPTIONS")) { /* a CORS preflight: browsers send no key with it */
        r->status = 204;
        return NULL;
    }
    /* HEAD has no meaning for a stream: its headers depend on what it sends */
    bool head = !strcmp(method, "HEAD") && !strcmp(rt->method, "GET") && rt->fn;
    if (strcmp(method, rt->method) && !head) {
        gd_reply_error(r, 405, "%s is not allowed on %s; use %s", method, req->path, rt->method);
        return NULL;
    }
    if (!authorized(api, conn, rt, req, r)) return NULL;
    if (rt->data && gd_cluster_refuse_partial(&api->ctx, r)) return NULL;
    const char *rest = req->path + strlen(rt->path);
    if (rt->stream) return rt->stream(api, conn, req, rest, r);
    rt->fn(api, req, rest, r);
    return NULL;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **state)
{
    (void)url;
    (void)version;
    gd_api *api = cls;
    request_state *rs = *state;
    if (!rs) return MHD_NO; /* out of memory at the request line: close */
    /* The first call only announces the request; answering then makes MHD
     * close the connection. Answer once the body has been read. */
    if (!rs->announced) {
        rs->announced = true;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (rs->body.len + *upload_data_size > MAX_BODY_BYTES) rs->body_too_large = true;
        else gd_buf_put(&rs->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    gd_reply r = {.status = 500, .content_type = "application/json"};
    const char *allow_origin = NULL;
    const route *rt = rs->refused ? NULL : route_of(rs->req.path);
    struct MHD_Response *resp = NULL;
    rs->req.body = rs->body.p;
    rs->req.body_len = rs->body.len;
    /* The request is whole: from here its work's own deadline ends it, not
     * the guard, whose clock may have started while it waited in the queue. */
    gd_guard_answering(api->guard, guarded(conn));
    if (admissible(api, conn, rs, &r, &allow_origin)) resp = route_request(api, conn, method, &rs->req, rt, &r);
    count_request(api, rt ? (size_t)(rt - routes) : NROUTES, r.status);
    if (resp) {
        gd_buf_free(&r.body);
    } else {
        resp = MHD_create_response_from_buffer(r.body.len, r.body.p, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            gd_buf_free(&r.body);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", r.content_type);
    }
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (allow_origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", allow_origin);
        MHD_add_response_header(resp, "Vary", "Origin");
    }
    if (r.status == 204) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Accept, Content-Type, Last-Event-ID, Cache-Control");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
    }
    if (r.status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"gamingd\"");
    if (r.status == 503) MHD_add_response_header(resp, "Retry-After", "5");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* libmicrohttpd's messages (mostly clients that went away mid-stream, one
 * per subscriber when a dashboard fleet disconnects) go to the log like
 * gamingd's own, a few per second at most. */
static void log_mhd_message(void *cls, const char *fmt, va_list ap)
{
    gd_api *api = cls;
    pthread_mutex_lock(&api->log_lock);
    bool allowed = gd_ratelimit_allow(&api->log_limit);
    pthread_mutex_unlock(&api->log_lock);
    if (!allowed) return;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = 0;
    gd_warn("http: %s", msg);
}

/* Every descriptor the process may open, but the reserve, can be a client;
 * libmicrohttpd splits the limit between its worker threads. */
static unsigned connection_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 10000;
    return rl.rlim_cur > 2 * FD_RESERVE ? (unsigned)(rl.rlim_cur - FD_RESERVE) : (unsigned)(rl.rlim_cur / 2);
}

static void api_free(gd_api *api)
{
    gd_push_free(api->push);
    gd_sql_runner_stop(api->ctx.runner);
    gd_auth_free(api->auth);
    gd_guard_close(api->guard);
    gd_netpolicy_free(api->netpolicy);
    if (api->ctx.store) api->ctx.store->router = NULL;
    gd_peers_close(api->ctx.peers);
    pthread_key_delete(api->ctx.plan_cache); /* the threads that held one have ended */
    pthread_mutex_destroy(&api->log_lock);
    free(api);
}

/* Reads a whole file (a TLS certificate or key) into a NUL-terminated buffer. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    gd_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) gd_buf_put(&b, chunk, n);
    fclose(f);
    gd_buf_putc(&b, 0);
    return b.p;
}

static bool loopback_listen(const char *host)
{
    return !strcmp(host, "localhost") || !strncmp(host, "127.", 4) || !strcmp(host, "::1");
}

int gd_api_start(gd_api **out, const gd_config *cfg, gd_store *store, gd_catalog *cat, gd_counters *counters,
                 gd_hub *hub, const _Atomic unsigned *reloads)
{
    gd_api *api = calloc(1, sizeof *api);
    if (!api) return GD_ENOMEM;
    api->ctx = (gd_api_ctx){.cfg = cfg, .store = store, .cat = cat, .counters = counters, .hub = hub};
    if (pthread_key_create(&api->ctx.plan_cache, gd_sql_cache_free)) {
        free(api);
        return GD_ERR;
    }
    pthread_mutex_init(&api->log_lock, NULL);
    unsigned limit = connection_limit();
    bool tls = cfg->tls_cert[0] != 0;
    if (gd_store_secret(store, "cursor_key", api->ctx.cursor_key, sizeof api->ctx.cursor_key) ||
        gd_auth_open(&api->auth, cfg->api_keys, reloads) || gd_netpolicy_open(&api->netpolicy, cfg) ||
        gd_guard_open(&api->guard, limit, cfg->request_timeout_ms, tls) ||
        gd_sql_runner_start(&api->ctx.runner, hub, cat) || gd_push_start(&api->push, hub, api->auth, cat, api->ctx.runner) ||
        gd_peers_open(&api->ctx.peers, cfg, counters)) {
        api_free(api);
        return GD_ERR;
    }
    api->ctx.push = api->push;
    store->router = gd_peers_router(api->ctx.peers); /* before any thread reads */
    if (!api->auth && !loopback_listen(cfg->listen_host))
        gd_warn("listening on %s without --api-keys: anyone who reaches this port reads every table and stream, "
                "player emails included", cfg->listen_host);
    char *cert = tls ? read_file(cfg->tls_cert) : NULL, *key = tls ? read_file(cfg->tls_key) : NULL;
    if (tls && (!cert || !key)) {
        gd_error("cannot read %s", cert ? cfg->tls_key : cfg->tls_cert);
        free(cert);
        free(key);
        api_free(api);
        return GD_ERR;
    }
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME |
                     (tls ? MHD_USE_TLS : 0);
    const char *host = cfg->listen_host;
    if (!strcmp(host, "localhost")) host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)cfg->listen_port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)cfg->listen_port);
        flags |= MHD_USE_IPv6;
    } else {
        gd_error("--listen: '%s' is not an IP address", cfg->listen_host);
        api_free(api);
        return GD_ERR;
    }
    api->mhd = MHD_start_daemon(flags, (uint16_t)cfg->listen_port, NULL, NULL, handle, api,
                                MHD_OPTION_EXTERNAL_LOGGER, log_mhd_message, api,
                                MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads,
                                MHD_OPTION_CONNECTION_LIMIT, limit,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
                                MHD_OPTION_URI_LOG_CALLBACK, on_request_line, api,
                                MHD_OPTION_NOTIFY_COMPLETED, on_request_done, api,
                                MHD_OPTION_NOTIFY_CONNECTION, on_connection, api,
                                MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)LISTEN_BACKLOG,
                                tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, cert,
                                MHD_OPTION_HTTPS_MEM_KEY, key, MHD_OPTION_HTTPS_PRIORITIES, TLS_PRIORITIES,
                                MHD_OPTION_END);
    free(cert); /* MHD keeps its own copy */
    if (key) explicit_bzero(key, strlen(key));
    free(key);
    if (!api->mhd) {
        gd_error("cannot listen on %s:%d", cfg->listen_host, cfg->listen_port);
        api_free(api);
        return GD_ERR;
    }
    *out = api;
    return GD_OK;
}

void gd_api_stop(gd_api *api)
{
    if (!api) return;
    gd_push_close_streams(api->push);
    MHD_stop_daemon(api->mhd);
    api_free(api);
}
