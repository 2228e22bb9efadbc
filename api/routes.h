/* routes.h -- inside the api layer: a parsed request and a reply, shared by
 * the server (http.c) and the route handlers. */
#ifndef GD_ROUTES_H
#define GD_ROUTES_H

#include <pthread.h>

#include "api.h"

enum {
    GD_MAX_PARAMS = 32,
    GD_MAX_URI = 8192, /* bytes of a request target; beyond, a 414 */
};

typedef struct {
    const char *name, *value; /* value NULL for "?flag" */
} gd_param;

typedef struct gd_auth gd_auth;

/* What a key may do (auth.c); without --api-keys every request may all. */
enum {
    GD_SCOPE_READ = 1,  /* read data */
    GD_SCOPE_PII = 2,   /* see personal data unmasked */
    GD_SCOPE_ADMIN = 4, /* change the server (SQL DDL) */
    GD_SCOPE_INSTANCE = 8, /* another instance asking for rows it does not hold (peers.c); no user's */
    GD_SCOPE_ALL = 15,
};

/* A request target, decoded (request.c): strings live in storage. The
 * server adds the body and what the caller's key allows. */
typedef struct {
    const char *path;
    gd_param params[GD_MAX_PARAMS];
    int nparams;
    char *storage;
    char error[256]; /* why gd_request_parse refused it */
    const char *body;
    size_t body_len;
    unsigned scopes;                  /* GD_SCOPE_* */
    unsigned char key_digest[32];     /* the key's SHA-256, with --api-keys */
    int64_t deadline_ms;              /* gd_mono_ns() / 1000000: --request-timeout after its request line */
} gd_request;

static inline bool gd_request_sees_pii(const gd_request *req) { return req->scopes & GD_SCOPE_PII; }

/* Decodes a raw request target ("/path?a=1&b"): GD_OK, or the HTTP status
 * to refuse it with (400, 414) and req->error saying why. */
int gd_request_parse(gd_request *req, const char *target);
void gd_request_free(gd_request *req);

typedef struct {
    int status;
    const char *content_type;
    gd_buf body;
} gd_reply;

/* ---- Prometheus's text format (prom.c): every /metrics line ---- */
/* A family's # HELP and # TYPE lines. */
void gd_prom_family(gd_buf *b, const char *name, const char *type, const char *help);
/* One sample, `name{label="value",...} VALUE`: labels are name, value pairs
 * ended by NULL (GD_PROM_LABELS; NULL: none), the values escaped; fmt
 * formats the value. */
void gd_prom_sample(gd_buf *b, const char *name, const char *const *labels, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define GD_PROM_LABELS(...) ((const char *const[]){__VA_ARGS__, NULL})

typedef struct gd_push gd_push;
typedef struct gd_sql_runner gd_sql_runner;
typedef struct gd_peers gd_peers;

enum { GD_CURSOR_KEY_BYTES = 64 }; /* AES-256-SIV: two AES-256 keys */

typedef struct {
    const gd_config *cfg;
    gd_store *store;
    gd_catalog *cat;
    gd_push *push;
    gd_sql_runner *runner;
    gd_counters *counters;
    gd_hub *hub;
    gd_peers *peers; /* partitioned mode: the other owners of the tables' rows; else NULL */
    unsigned char cursor_key[GD_CURSOR_KEY_BYTES]; /* seals pull cursors (pull.c); the data dir's */
    pthread_key_t plan_cache; /* each HTTP thread's gd_sql_cache (ksql.c) */
} gd_api_ctx;

/* Sets an error reply: {"error_code": status, "message": "..."}. */
void gd_reply_error(gd_reply *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The error of a request whose work passed req->deadline_ms (GD_ETIMEDOUT):
 * a 408, as the guard answers a request that is not completed in time. */
void gd_reply_timed_out(const gd_api_ctx *ctx, gd_reply *r);

void gd_route_tables_list(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
void gd_route_table_rows(const gd_api_ctx *ctx, const gd_request *req, const char *table,
                         gd_reply *r);

/* ---- what this instance holds (cluster.c) ---- */
void gd_route_cluster(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
/* true, with a 503 in r, while this instance holds part of the activity. */
bool gd_cluster_refuse_partial(const gd_api_ctx *ctx, gd_reply *r);
void gd_cluster_metrics(const gd_api_ctx *ctx, gd_buf *b);

/* ---- partitioned mode: rows from the instances that own them (peers.c) ---- */
/* NULL in *out unless cfg is partitioned. */
int gd_peers_open(gd_peers **out, const gd_config *cfg, gd_counters *counters);
/* What the store hands its queries on aggregations to (store/query.h). */
const struct gd_query_router *gd_peers_router(gd_peers *pe);
void gd_peers_metrics(gd_peers *pe, gd_buf *b);
void gd_peers_close(gd_peers *pe);
/* POST /v1/internal/rows: a page of rows of the tasks this instance holds,
 * for another instance merging an answer. */
void gd_route_internal_rows(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);

/* ---- the Grafana JSON datasource (grafana.c), under /grafana ---- */
void gd_grafana_root(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
void gd_grafana_metrics(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
void gd_grafana_payload_options(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
void gd_grafana_query(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
void gd_grafana_variable(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
void gd_grafana_tag_keys(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
void gd_grafana_tag_values(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);

/* ---- ksqlDB's REST API (ksql.c) ---- */
struct MHD_Connection;
struct MHD_Response;
struct MHD_Response *gd_ksql_query_stream(const gd_api_ctx *ctx, struct MHD_Connection *conn, const gd_request *req,
                                          gd_reply *r);
struct MHD_Response *gd_ksql_query(const gd_api_ctx *ctx, struct MHD_Connection *conn, const gd_request *req,
                                   gd_reply *r);
void gd_ksql_statements(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
void gd_ksql_close_query(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
void gd_ksql_info(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
void gd_ksql_healthcheck(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);

/* ---- the built-in page (page.c) ---- */
typedef struct {
    const char *name; /* "index.html", "app.js", ... */
    const unsigned char *data;
    size_t len;
} gd_page_asset;
extern const gd_page_asset gd_page_assets[]; /* built in by api/page/embed.sh */
extern const size_t gd_page_asset_count;
/* The asset called name (GET / is "index.html"). */
void gd_route_page(const gd_request *req, const char *name, gd_reply *r);

/* ---- push streams (push.c) ---- */
struct MHD_Connection;
struct MHD_Response;
/* Starts the thread that wakes waiting subscribers. */
/* auth: the API keys, or NULL; streams whose key is removed end. runner
 * runs the filters of filtered subscriptions. */
int gd_push_start(gd_push **out, gd_hub *hub, gd_auth *auth, const gd_catalog *cat, gd_sql_runner *runner);
/* Ends every stream (before libmicrohttpd stops: none may stay suspended). */
void gd_push_close_streams(gd_push *p);
void gd_push_free(gd_push *p);
void gd_route_streams_list(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
/* The response streaming name to this connection, or NULL with an error in r. */
struct MHD_Response *gd_push_subscribe(gd_push *p, struct MHD_Connection *conn, const gd_request *req,
                                       const char *name, gd_reply *r);
/* A push query's clients read its rows (JSON arrays) from its hub stream
 * in one of ksqlDB's formats, after a prologue (the header); limit: rows
 * before the response ends (0: none). on_close is called when the client
 * is gone (never when NULL is returned). */
typedef enum { GD_PUSH_SSE, GD_PUSH_NDJSON, GD_PUSH_KSQL_DELIMITED, GD_PUSH_KSQL_JSON, GD_PUSH_KSQL_V1 } gd_push_format;
typedef struct {
    gd_push_format format;
    const char *content_type;
    unsigned hub_stream;
    const char *name;     /* the stream's, for notices */
    gd_str prologue;
    uint64_t limit;
    const char *query_id; /* POST /close-query ends it */
    void (*on_close)(void *ctx);
    void *on_close_ctx;
} gd_push_query_stream;
struct MHD_Response *gd_push_subscribe_query(gd_push *p, struct MHD_Connection *conn, const gd_request *req,
                                             const gd_push_query_stream *qs, gd_reply *r);
/* Ends the responses of a push query that req may end (those of its key;
 * any with the admin scope); how many there were. */
int gd_push_close_query(gd_push *p, const char *query_id, const gd_request *req);
/* Whether req may see that push query (one of its responses is req's). */
bool gd_push_query_visible(gd_push *p, const char *query_id, const gd_request *req);
/* Ends the subscriptions that read a hub stream (its table or stream was
 * dropped). */
void gd_push_end_stream(gd_push *p, unsigned hub_stream);
void gd_push_metrics(gd_push *p, gd_buf *b);
size_t gd_push_count(gd_push *p); /* subscribers now */
/* A subscription's parameters as gd_push_subscribe reads them, planned as
 * it plans them (gd_sql_plan_filters) and applied to events without a
 * connection or the runner (tests, fuzzing): the status it would answer
 * with, and when 200, matched[i] for each event text. */
int gd_push_check_filters(const gd_catalog_entry *e, const gd_request *req, const gd_str *events, size_t n,
                          bool *matched);

/* ---- keys and personal data (auth.c) ---- */
/* NULL in *out without a key file (no authentication). reloads: SIGHUPs
 * received, counted by the signal handler. */
int gd_auth_open(gd_auth **out, const char *path, const _Atomic unsigned *reloads);
void gd_auth_free(gd_auth *a);
/* The scopes of a presented key (0: unknown or none); digest_out, when
 * given, receives its SHA-256 for gd_auth_scopes_of_digest. */
unsigned gd_auth_scopes(gd_auth *a, const char *key, unsigned char digest_out[32]);
unsigned gd_auth_scopes_of_digest(gd_auth *a, const unsigned char digest[32]);
/* Reloads the key file if a SIGHUP came since the last look. */
void gd_auth_reload_if_asked(gd_auth *a);
/* Moves each time the keys in force change. */
unsigned gd_auth_generation(const gd_auth *a);
/* Appends obj, a JSON object gamingd wrote for a row or event of e, to out
 * with every member that is personal in e masked (gd_json_put_masked);
 * "null" when obj is not such an object. */
void gd_mask_json_object(const gd_catalog_entry *e, gd_str obj, gd_buf *out);

/* ---- browsers and the network (netpolicy.c) ---- */
typedef struct gd_netpolicy gd_netpolicy;
int gd_netpolicy_open(gd_netpolicy **out, const gd_config *cfg);
void gd_netpolicy_free(gd_netpolicy *np);
/* Host and Origin of a request (either NULL when absent): GD_OK with
 * *allow_origin the Access-Control-Allow-Origin to answer with (NULL: none),
 * or GD_ERR with a 403 in r. */
int gd_netpolicy_check(const gd_netpolicy *np, const char *host, const char *origin, gd_reply *r,
                       const char **allow_origin);

/* ---- connections (guard.c) ---- */
typedef struct gd_guard gd_guard;
typedef struct gd_guarded gd_guarded; /* one connection */
int gd_guard_open(gd_guard **out, size_t connection_limit, int64_t request_timeout_ms, bool tls);
void gd_guard_close(gd_guard *g);
/* libmicrohttpd's notifications, and what the server sees of a request. */
gd_guarded *gd_guard_started(gd_guard *g, int fd); /* NULL: not followed */
void gd_guard_closed(gd_guard *g, gd_guarded *c);
void gd_guard_line_received(gd_guard *g, gd_guarded *c);
void gd_guard_answering(gd_guard *g, gd_guarded *c); /* the request is whole */
void gd_guard_idle(gd_guard *g, gd_guarded *c);      /* the response was sent */
/* Whether one more push stream leaves room for other requests. */
bool gd_guard_stream_room(const gd_guard *g, size_t streams);
void gd_guard_metrics(const gd_guard *g, gd_buf *b);

#endif
