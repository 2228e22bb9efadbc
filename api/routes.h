/* routes.h -- inside the api layer: a parsed request and a reply, shared by
 * the server (http.c) and the route handlers. */
#ifndef GD_ROUTES_H
#define GD_ROUTES_H

#include "api.h"

enum { GD_MAX_PARAMS = 32 };

typedef struct {
    const char *name, *value; /* value NULL for "?flag" */
} gd_param;

typedef struct {
    const char *path;
    gd_param params[GD_MAX_PARAMS];
    int nparams;
    bool too_many_params;
} gd_request;

typedef struct {
    int status;
    const char *content_type;
    gd_buf body;
} gd_reply;

typedef struct {
    const gd_config *cfg;
    gd_store *store;
    gd_counters *counters;
    gd_hub *hub;
} gd_api_ctx;

/* Sets an error reply: {"error_code": status, "message": "..."}. */
void gd_reply_error(gd_reply *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void gd_route_tables_list(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
void gd_route_table_rows(const gd_api_ctx *ctx, const gd_request *req, const char *table,
                         gd_reply *r);

/* ---- push streams (push.c) ---- */
typedef struct gd_push gd_push;
struct MHD_Connection;
struct MHD_Response;
/* Starts the thread that wakes waiting subscribers. */
int gd_push_start(gd_push **out, gd_hub *hub);
/* Ends every stream (before libmicrohttpd stops: none may stay suspended). */
void gd_push_close_streams(gd_push *p);
void gd_push_free(gd_push *p);
void gd_route_streams_list(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
/* The response streaming name to this connection, or NULL with an error in r. */
struct MHD_Response *gd_push_subscribe(gd_push *p, struct MHD_Connection *conn, const gd_request *req,
                                       const char *name, gd_reply *r);
void gd_push_metrics(const gd_push *p, gd_buf *b);

#endif
