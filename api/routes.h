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
} gd_api_ctx;

/* Sets an error reply: {"error_code": status, "message": "..."}. */
void gd_reply_error(gd_reply *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void gd_route_tables_list(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r);
void gd_route_table_rows(const gd_api_ctx *ctx, const gd_request *req, const char *table,
                         gd_reply *r);

#endif
