/* ksql.c -- ksqlDB's REST API: POST /query-stream, /query, /ksql,
 * /close-query, GET /info, /healthcheck, in ksqlDB's wire formats, so that
 * its CLI, its clients and the curl recipes of its documentation work.
 *
 * Statements are parsed and planned by sql/ (a pull query's plan is kept
 * by the HTTP thread for the next request with the same text: sql/cache.c);
 * a pull query runs here, in
 * one read transaction, and its rows are the response; a push query joins
 * the push-query runner (sql/run.c) and its client reads the query's rows
 * from the hub like an SSE subscriber (push.c), in the format it asked for:
 *   /query-stream  application/vnd.ksqlapi.delimited.v1: a header object,
 *                  then one JSON array a row, a line each; with
 *                  Accept: application/json, one JSON array of them all
 *   /query         application/vnd.ksql.v1+json: [{"header"}, {"row"}, ...]
 * DDL becomes a catalog command the ingest thread applies (store/catalog.h)
 * and is answered once it is committed.
 *
 * Errors are ksqlDB's objects: {"@type":"statement_error","error_code":
 * 40001,"message","statementText","entities":[]} for a statement that
 * cannot run, with the HTTP status of its code.
 *
 * A quarantined definition (store/catalog.h) is shown as ksqlDB shows a
 * persistent query that failed: its query "state":"ERROR" (in SHOW
 * QUERIES and DESCRIBE), its source with "state":"ERROR" and the
 * "errorMessage" (SHOW TABLES / STREAMS, DESCRIBE); DROP removes it. */
#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../sql/sql.h"
#include "../store/func.h"
#include "routes.h"

enum { DDL_TIMEOUT_MS = 10000 };

#define KSQL_SERVER_VERSION "0.29.0"
#define KSQL_SERVICE_ID "gamingd"

/* ---- errors ---- */

static void put_statement(gd_buf *b, gd_str text)
{
    gd_buf tmp = {0};
    gd_buf_put(&tmp, text.p, text.len);
    if (text.len && text.p[text.len - 1] != ';') gd_buf_putc(&tmp, ';');
    gd_json_put_str(b, (gd_str){tmp.p ? tmp.p : "", (uint32_t)tmp.len});
    gd_buf_free(&tmp);
}

static void statement_error_with(gd_reply *r, int status, int code, const char *message, gd_str stmt,
                                 const gd_buf *entities);

static void statement_error(gd_reply *r, int status, int code, const char *message, gd_str stmt)
{
    statement_error_with(r, status, code, message, stmt, NULL);
}

/* entities: the answers to the statements before it, as a JSON array. */
static void statement_error_with(gd_reply *r, int status, int code, const char *message, gd_str stmt,
                                 const gd_buf *entities)
{
    r->status = status;
    r->content_type = "application/json";
    gd_buf_clear(&r->body);
    gd_buf_printf(&r->body, "{\"@type\":\"statement_error\",\"error_code\":%d,\"message\":", code);
    gd_json_put_cstr(&r->body, message);
    gd_buf_puts(&r->body, ",\"statementText\":");
    put_statement(&r->body, stmt);
    gd_buf_puts(&r->body, ",\"entities\":");
    if (entities && entities->len) gd_buf_put(&r->body, entities->p, entities->len);
    else gd_buf_puts(&r->body, "[]");
    gd_buf_putc(&r->body, '}');
}

static void sql_error(gd_reply *r, const gd_sql_error *err, gd_str stmt)
{
    statement_error(r, err->http_status ? err->http_status : 400, err->code ? err->code : GD_SQL_BAD_STATEMENT,
                    err->message, stmt);
}

static void generic_error(gd_reply *r, int status, int code, const char *message)
{
    r->status = status;
    r->content_type = "application/json";
    gd_buf_clear(&r->body);
    gd_buf_printf(&r->body, "{\"@type\":\"generic_error\",\"error_code\":%d,\"message\":", code);
    gd_json_put_cstr(&r->body, message);
    gd_buf_putc(&r->body, '}');
}

/* The request's sessionVariables (an object of names to values, as
 * ksqlDB's clients send them) into vars, copied into arena. */
static bool session_variables(const json_t *obj, gd_sql_vars *vars, gd_arena *arena, gd_reply *r)
{
    if (!obj || json_is_null(obj)) return true;
    if (!json_is_object(obj)) {
        generic_error(r, 400, GD_SQL_BAD_REQUEST, "sessionVariables must be an object of names to values");
        return false;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        if (!json_is_string(v) && !json_is_number(v) && !json_is_boolean(v)) {
            generic_error(r, 400, GD_SQL_BAD_REQUEST, "a session variable's value is a string, number or boolean");
            return false;
        }
        char *dumped = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY); /* a number or boolean as JSON writes it */
        gd_str value = gd_arena_strdup(arena, gd_str_c(dumped ? dumped : json_string_value(v)));
        free(dumped);
        if (!gd_sql_vars_set(vars, gd_arena_strdup(arena, gd_str_c(key)), value)) {
            generic_error(r, 400, GD_SQL_BAD_REQUEST, "too many session variables");
            return false;
        }
    }
    return true;
}

/* The request body's statement text: field of a JSON object, and with vars
 * its sessionVariables (the other members -- properties, streamsProperties
 * -- are accepted and ignored). */
static bool body_text(const gd_request *req, const char *field, char **out, gd_sql_vars *vars, gd_arena *arena,
                      gd_reply *r)
{
    json_error_t jerr;
    json_t *doc = req->body_len ? json_loadb(req->body, req->body_len, 0, &jerr) : NULL;
    json_t *v = json_is_object(doc) ? json_object_get(doc, field) : NULL;
    if (!json_is_string(v)) {
        char msg[256];
        snprintf(msg, sizeof msg, "the request body must be a JSON object with the statement in \"%s\"%s%s", field,
                 doc ? "" : ": ", doc ? "" : (req->body_len ? jerr.text : "the body is empty"));
        generic_error(r, 400, GD_SQL_BAD_REQUEST, msg);
        json_decref(doc);
        return false;
    }
    if (vars && !session_variables(json_object_get(doc, "sessionVariables"), vars, arena, r)) {
        json_decref(doc);
        return false;
    }
    size_t len = json_string_length(v);
    *out = strndup(json_string_value(v), len);
    json_decref(doc);
    if (!*out || strlen(*out) != len) {
        free(*out);
        generic_error(r, 400, GD_SQL_BAD_REQUEST, "the statement holds a NUL character");
        return false;
    }
    return true;
}


/* The request's text (field of the body), with its variables
 * (sessionVariables, then each DEFINE for the statements after it) put
 * in: *whole, in arena. vars: the session variables. */
static bool request_text(const gd_request *req, const char *field, gd_arena *arena, gd_sql_vars *vars, gd_str *whole,
                         gd_reply *r)
{
    char *text;
    if (!body_text(req, field, &text, vars, arena, r)) return false;
    gd_str written = gd_arena_strdup(arena, gd_str_c(text)); /* DEFINE's values point into it */
    free(text);
    gd_sql_vars defined = *vars;
    gd_buf subst = {0};
    gd_sql_error err = {0};
    int rc = gd_sql_substitute(written, &defined, arena, &subst, &err);
    *whole = rc ? written : gd_arena_strdup(arena, (gd_str){subst.p ? subst.p : "", (uint32_t)subst.len});
    gd_buf_free(&subst);
    if (rc) sql_error(r, &err, *whole);
    return !rc;
}

/* The request's statements, parsed: request_text's, in arena. */
static bool parse_request(const gd_request *req, const char *field, gd_arena *arena, gd_sql_vars *vars,
                          gd_str *whole, gd_sql_stmt **stmts, int *n, gd_reply *r)
{
    if (!request_text(req, field, arena, vars, whole, r)) return false;
    gd_sql_error err = {0};
    if (!gd_sql_parse(*whole, arena, stmts, n, &err)) return true;
    sql_error(r, &err, *whole);
    return false;
}

/* ---- rows and headers ---- */

static void put_names(gd_buf *b, const gd_query_plan *plan)
{
    gd_buf_putc(b, '[');
    for (int i = 0; i < plan->ncols; i++) {
        if (i) gd_buf_putc(b, ',');
        gd_json_put_cstr(b, plan->names[i]);
    }
    gd_buf_putc(b, ']');
}

static void put_types(gd_buf *b, const gd_query_plan *plan)
{
    gd_buf_putc(b, '[');
    for (int i = 0; i < plan->ncols; i++) gd_buf_printf(b, "%s\"%s\"", i ? "," : "", gd_coltype_name(plan->types[i]));
    gd_buf_putc(b, ']');
}

/* /query-stream's header object. */
static void put_stream_header(gd_buf *b, const char *query_id, const gd_query_plan *plan)
{
    gd_buf_puts(b, "{\"queryId\":");
    gd_json_put_cstr(b, query_id);
    gd_buf_puts(b, ",\"columnNames\":");
    put_names(b, plan);
    gd_buf_puts(b, ",\"columnTypes\":");
    put_types(b, plan);
    gd_buf_putc(b, '}');
}

/* /query's header: {"header":{"queryId","schema":"`A` STRING, `B` BIGINT"}} */
/* Whether output column i of a pull query is one of its table's keys. */
static bool key_column(const gd_query_plan *plan, int i)
{
    const gd_expr *e = plan->proj[i];
    return plan->kind == GD_PLAN_PULL_TABLE && e->op == GD_E_COL && e->index < plan->source->table->nkeys;
}

static void put_v1_header(gd_buf *b, const char *query_id, const gd_query_plan *plan)
{
    gd_buf schema = {0};
    for (int i = 0; i < plan->ncols; i++)
        gd_buf_printf(&schema, "%s`%s` %s%s", i ? ", " : "", plan->names[i], gd_coltype_name(plan->types[i]),
                      key_column(plan, i) ? " KEY" : "");
    gd_buf_puts(b, "[{\"header\":{\"queryId\":");
    gd_json_put_cstr(b, query_id);
    gd_buf_puts(b, ",\"schema\":");
    gd_json_put_str(b, (gd_str){schema.p ? schema.p : "", (uint32_t)schema.len});
    gd_buf_puts(b, "}}");
    gd_buf_free(&schema);
}

typedef struct {
    gd_push_format format;
    const gd_query_plan *plan;
    bool sees_pii;
    gd_buf *out;
} pull_out;

static int put_pull_row(void *ctx, const gd_value *row, int n, const gd_sql_pos *pos)
{
    pull_out *po = ctx;
    (void)n, (void)pos; /* the plan's columns; a SQL reply has no cursor */
    switch (po->format) {
    case GD_PUSH_KSQL_DELIMITED:
        gd_sql_put_row(po->out, po->plan, row, po->sees_pii);
        gd_buf_putc(po->out, '\n');
        break;
    case GD_PUSH_KSQL_JSON:
        gd_buf_putc(po->out, ',');
        gd_sql_put_row(po->out, po->plan, row, po->sees_pii);
        break;
    default:
        gd_buf_puts(po->out, ",\n{\"row\":{\"columns\":");
        gd_sql_put_row(po->out, po->plan, row, po->sees_pii);
        gd_buf_puts(po->out, "}}");
        break;
    }
    return 0;
}

static const char *content_type_of(gd_push_format f)
{
    return f == GD_PUSH_KSQL_DELIMITED ? "application/vnd.ksqlapi.delimited.v1"
           : f == GD_PUSH_KSQL_JSON    ? "application/json"
                                       : "application/vnd.ksql.v1+json";
}

/* The prologue of a query's response in format f. (A push query's v1
 * elements each end with ",\n", so that a client reading lines sees each
 * at once; a pull query's rows begin with it, so the last has none.) */
static void put_prologue(gd_buf *b, gd_push_format f, const char *query_id, const gd_query_plan *plan)
{
    if (f == GD_PUSH_KSQL_V1) {
        put_v1_header(b, query_id, plan);
        if (plan->kind != GD_PLAN_PULL_TABLE) gd_buf_puts(b, ",\n");
        return;
    }
    if (f == GD_PUSH_KSQL_JSON) gd_buf_putc(b, '[');
    put_stream_header(b, query_id, plan);
    if (f == GD_PUSH_KSQL_DELIMITED) gd_buf_putc(b, '\n');
}

static void run_pull(const gd_api_ctx *ctx, const gd_request *req, const gd_query_plan *plan, gd_push_format f,
                     gd_str stmt, gd_reply *r)
{
    char id[48];
    snprintf(id, sizeof id, "query_%lld", (long long)gd_now_ms());
    gd_buf body = {0};
    put_prologue(&body, f, id, plan);
    pull_out po = {f, plan, gd_request_sees_pii(req), &body};
    gd_sql_error err = {0};
    if (gd_sql_pull(ctx->store, plan, gd_now_ms(), req->deadline_ms, put_pull_row, &po, &err)) {
        gd_buf_free(&body);
        sql_error(r, &err, stmt);
        return;
    }
    if (f != GD_PUSH_KSQL_DELIMITED) gd_buf_putc(&body, ']');
    r->status = 200;
    r->content_type = content_type_of(f);
    gd_buf_free(&r->body);
    r->body = body;
}

/* ---- push queries ---- */

typedef struct {
    gd_sql_runner *runner;
    gd_push_query *q;
} leaving;

static void leave_query(void *ctx)
{
    leaving *l = ctx;
    gd_sql_runner_leave(l->runner, l->q);
    free(l);
}

static struct MHD_Response *run_push(const gd_api_ctx *ctx, struct MHD_Connection *conn, const gd_request *req,
                                     const gd_query_plan *plan, gd_push_format f, gd_str stmt, gd_reply *r)
{
    char *sql = strndup(stmt.p, stmt.len);
    leaving *l = calloc(1, sizeof *l);
    unsigned hub_stream;
    gd_sql_error err = {0};
    if (!sql || !l) {
        free(sql);
        free(l);
        generic_error(r, 500, GD_SQL_SERVER_ERROR, "out of memory");
        return NULL;
    }
    l->runner = ctx->runner;
    int rc = gd_sql_runner_join(ctx->runner, sql, gd_request_sees_pii(req), &l->q, &hub_stream, &err);
    free(sql);
    if (rc) {
        free(l);
        sql_error(r, &err, stmt);
        return NULL;
    }
    gd_buf prologue = {0};
    put_prologue(&prologue, f, gd_push_query_id(l->q), plan);
    gd_push_query_stream qs = {
        .format = f,
        .content_type = content_type_of(f),
        .hub_stream = hub_stream,
        .name = plan->source->name,
        .prologue = {prologue.p, (uint32_t)prologue.len},
        .limit = plan->limit > 0 ? (uint64_t)plan->limit : 0,
        .query_id = gd_push_query_id(l->q),
        .on_close = leave_query,
        .on_close_ctx = l,
    };
    struct MHD_Response *resp = gd_push_subscribe_query(ctx->push, conn, req, &qs, r);
    gd_buf_free(&prologue);
    if (!resp) leave_query(l);
    return resp;
}

/* The format an Accept header asks for, as ksqlDB reads it: on
 * /query-stream delimited unless JSON is asked for; on /query (v1) the v1
 * rows unless the delimited format (or anything, curl's default) is. */
static gd_push_format format_asked(struct MHD_Connection *conn, bool v1)
{
    const char *accept = conn ? MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT) : NULL;
    if (!accept || !*accept) return v1 ? GD_PUSH_KSQL_V1 : GD_PUSH_KSQL_DELIMITED;
    if (strstr(accept, "application/vnd.ksqlapi.delimited.v1") || (v1 && strstr(accept, "*/*")))
        return GD_PUSH_KSQL_DELIMITED;
    if (strstr(accept, "application/vnd.ksql.v1+json")) return GD_PUSH_KSQL_V1;
    if (strstr(accept, "application/json")) return v1 ? GD_PUSH_KSQL_V1 : GD_PUSH_KSQL_JSON;
    return v1 ? GD_PUSH_KSQL_V1 : GD_PUSH_KSQL_DELIMITED;
}

/* This HTTP thread's plan cache, made at its first query; NULL without
 * memory (plans are then made for each request). */
static gd_sql_cache *thread_plan_cache(const gd_api_ctx *ctx)
{
    gd_sql_cache *c = pthread_getspecific(ctx->plan_cache);
    if (!c && (c = gd_sql_cache_new()) && pthread_setspecific(ctx->plan_cache, c)) {
        gd_sql_cache_free(c);
        c = NULL;
    }
    return c;
}

/* The plan of the one SELECT that whole is, and its statement's text: kept
 * from an earlier request with the same text, or made -- in arena, or in
 * the thread's cache to be kept there when it is a pull. False with the
 * error in r. */
static bool plan_request(const gd_api_ctx *ctx, gd_str whole, gd_arena *arena, gd_query_plan *plan, gd_str *stmt,
                         gd_reply *r)
{
    gd_sql_cache *cache = thread_plan_cache(ctx);
    unsigned version = atomic_load(&ctx->cat->version); /* before planning: see cache.c */
    const gd_query_plan *kept = cache ? gd_sql_cache_find(cache, whole, version, stmt) : NULL;
    if (kept) {
        *plan = *kept;
        return true;
    }
    gd_arena *in = cache ? gd_sql_cache_claim(cache, whole) : NULL;
    gd_str text = in ? gd_arena_strdup(in, whole) : whole;
    if (!in) in = arena;
    gd_sql_error err = {0};
    gd_sql_stmt *stmts;
    int n;
    if (gd_sql_parse(text, in, &stmts, &n, &err)) {
        sql_error(r, &err, text);
    } else if (n != 1) {
        char msg[80];
        snprintf(msg, sizeof msg, "Expected exactly one KSQL statement; found %d instead", n);
        statement_error(r, 400, GD_SQL_BAD_STATEMENT, msg, text);
    } else if (stmts[0].kind != GD_SQL_SELECT) {
        generic_error(r, 400, GD_SQL_BAD_REQUEST, "this endpoint runs SELECT statements; the others run on /ksql");
    } else if (gd_sql_plan_query(ctx->cat, &stmts[0], in, plan, &err)) {
        sql_error(r, &err, stmts[0].text);
    } else {
        *stmt = stmts[0].text;
        if (in != arena && plan->kind == GD_PLAN_PULL_TABLE) gd_sql_cache_keep(cache, text, *stmt, version, plan);
        return true;
    }
    return false;
}

/* Runs the one SELECT of a query request. */
static struct MHD_Response *run_query(const gd_api_ctx *ctx, struct MHD_Connection *conn, const gd_request *req,
                                      const char *field, bool v1, gd_reply *r)
{
    gd_arena arena;
    gd_arena_init(&arena);
    gd_sql_vars vars = {0};
    gd_query_plan plan;
    struct MHD_Response *resp = NULL;
    gd_str whole, stmt;
    if (!request_text(req, field, &arena, &vars, &whole, r) || !plan_request(ctx, whole, &arena, &plan, &stmt, r)) {
    } else if (plan.pii_use.column && !gd_request_sees_pii(req)) {
        char msg[256];
        gd_pii_refusal(plan.pii_use, msg, sizeof msg);
        statement_error(r, 403, GD_SQL_FORBIDDEN, msg, stmt);
    } else {
        gd_push_format f = format_asked(conn, v1);
        if (plan.kind == GD_PLAN_PULL_TABLE) run_pull(ctx, req, &plan, f, stmt, r);
        else resp = run_push(ctx, conn, req, &plan, f, stmt, r);
    }
    gd_arena_free(&arena);
    return resp;
}

struct MHD_Response *gd_ksql_query_stream(const gd_api_ctx *ctx, struct MHD_Connection *conn, const gd_request *req,
                                          gd_reply *r)
{
    return run_query(ctx, conn, req, "sql", false, r);
}

struct MHD_Response *gd_ksql_query(const gd_api_ctx *ctx, struct MHD_Connection *conn, const gd_request *req,
                                   gd_reply *r)
{
    return run_query(ctx, conn, req, "ksql", true, r);
}

void gd_ksql_close_query(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    char *id;
    if (!body_text(req, "queryId", &id, NULL, NULL, r)) return;
    if (gd_push_close_query(ctx->push, id, req)) { /* another key's query: as unknown */
        r->status = 200;
        r->content_type = "application/json";
    } else {
        char msg[160];
        snprintf(msg, sizeof msg, "No query with id %.100s", id);
        generic_error(r, 400, GD_SQL_BAD_REQUEST, msg);
    }
    free(id);
}

/* ---- statements: /ksql ---- */

/* A persistent query's id: CTAS_NAME_UID for a table, CSAS_ for a stream. */
static void persistent_id(const gd_catalog_entry *e, gd_buf *b)
{
    gd_buf_puts(b, e->is_table ? "CTAS_" : "CSAS_");
    gd_sql_upper(e->name, b);
    gd_buf_printf(b, "_%llu", (unsigned long long)e->uid);
}

/* Whether e was made by a query (and has one, in SHOW QUERIES). */
static bool has_query(const gd_catalog_entry *e)
{
    if (e->error) return true; /* quarantined: a CREATE ... AS SELECT, in ERROR */
    return e->is_table ? gd_table_aggregates(e->table) : e->kind == GD_SRC_DERIVED;
}

/* A table or stream by name, quarantined or not. */
static const gd_catalog_entry *find_any(const gd_api_ctx *ctx, gd_str name)
{
    const gd_catalog_entry *e = gd_catalog_find(ctx->cat, name);
    return e ? e : gd_catalog_find_quarantined(ctx->cat, name);
}

/* ,"state":"ERROR","errorMessage":"..." of a quarantined entry. */
static void put_error_state(gd_buf *b, const gd_catalog_entry *e)
{
    gd_buf_puts(b, ",\"state\":\"ERROR\",\"errorMessage\":");
    gd_json_put_cstr(b, e->error);
}

static void put_upper(gd_buf *b, const char *name)
{
    gd_buf up = {0};
    gd_sql_upper(name, &up);
    gd_json_put_str(b, (gd_str){up.p ? up.p : "", (uint32_t)up.len});
    gd_buf_free(&up);
}

static const char *value_format(const gd_catalog_entry *e)
{
    return !e->is_table && e->kind == GD_SRC_ENRICHED ? "AVRO" : "JSON";
}

/* The topic an entry stands for: its source's, or its own name. */
static void put_topic(gd_buf *b, const gd_catalog_entry *e)
{
    if (e->topic) gd_json_put_cstr(b, e->topic);
    else put_upper(b, e->name);
}

static void put_source_info(gd_buf *b, const gd_catalog_entry *e)
{
    gd_buf_printf(b, "{\"type\":\"%s\",\"name\":", e->is_table ? "TABLE" : "STREAM");
    put_upper(b, e->name);
    gd_buf_puts(b, ",\"topic\":");
    put_topic(b, e);
    gd_buf_printf(b, ",\"keyFormat\":\"KAFKA\",\"valueFormat\":\"%s\",\"isWindowed\":%s", value_format(e),
                  e->is_table && !e->error && gd_table_windowed(e->table) ? "true" : "false");
    if (e->error) put_error_state(b, e);
    gd_buf_putc(b, '}');
}

static void show_sources(const gd_api_ctx *ctx, const gd_sql_stmt *st, gd_buf *b)
{
    bool tables = st->show == GD_SHOW_TABLES;
    gd_buf_printf(b, "{\"@type\":\"%s\",\"statementText\":", tables ? "tables" : "streams");
    put_statement(b, st->text);
    gd_buf_printf(b, ",\"%s\":[", tables ? "tables" : "streams");
    bool first = true;
    unsigned n = tables ? GD_MAX_TABLES : GD_MAX_STREAMS;
    for (unsigned i = 0; i < n; i++) {
        const gd_catalog_entry *e = tables ? gd_catalog_table(ctx->cat, i) : gd_catalog_stream(ctx->cat, i);
        if (!e) continue;
        if (!first) gd_buf_putc(b, ',');
        first = false;
        put_source_info(b, e);
    }
    for (unsigned i = 0; i < GD_MAX_QUARANTINED; i++) {
        const gd_catalog_entry *e = gd_catalog_quarantined(ctx->cat, i);
        if (!e || e->is_table != tables) continue;
        if (!first) gd_buf_putc(b, ',');
        first = false;
        put_source_info(b, e);
    }
    gd_buf_puts(b, "],\"warnings\":[]}");
}

/* The statement that defined e; one that decides on personal data can
 * hold some in its literals (WHERE player_email = '...'), masked for a
 * reader without the pii scope. */
static void put_definition(gd_buf *b, const gd_catalog_entry *e, const gd_request *req)
{
    if (!e->sql_personal || gd_request_sees_pii(req)) {
        gd_json_put_cstr(b, e->sql);
        return;
    }
    gd_buf masked = {0};
    gd_sql_mask_literals(gd_str_c(e->sql), &masked);
    gd_json_put_str(b, (gd_str){masked.p, (uint32_t)masked.len});
    gd_buf_free(&masked);
}

/* A persistent query as SHOW QUERIES and DESCRIBE list it. */
static void put_running_query(gd_buf *b, const gd_catalog_entry *e, const gd_request *req)
{
    bool running = !atomic_load(&e->terminated);
    const char *state = e->error ? "ERROR" : running ? "RUNNING" : "TERMINATED";
    gd_buf_puts(b, "{\"queryString\":");
    put_definition(b, e, req);
    gd_buf_puts(b, ",\"sinks\":[");
    put_upper(b, e->name);
    gd_buf_puts(b, "],\"sinkKafkaTopics\":[");
    put_topic(b, e);
    gd_buf_puts(b, "],\"id\":\"");
    persistent_id(e, b);
    gd_buf_printf(b, "\",\"statusCount\":{\"%s\":1},\"queryType\":\"PERSISTENT\",\"state\":\"%s\"", state, state);
    if (e->error) {
        gd_buf_puts(b, ",\"errorMessage\":");
        gd_json_put_cstr(b, e->error);
    }
    gd_buf_putc(b, '}');
}

typedef struct {
    const gd_api_ctx *ctx;
    const gd_request *req;
    gd_buf *b;
    bool *first;
} transient_list;

/* A push query, listed only to a caller that may end it. */
static void put_transient(void *ctx, const char *id, const char *sql, int clients)
{
    transient_list *tl = ctx;
    (void)clients;
    if (!gd_push_query_visible(tl->ctx->push, id, tl->req)) return;
    if (!*tl->first) gd_buf_putc(tl->b, ',');
    *tl->first = false;
    gd_buf_puts(tl->b, "{\"queryString\":");
    gd_json_put_cstr(tl->b, sql);
    gd_buf_puts(tl->b, ",\"sinks\":[],\"sinkKafkaTopics\":[],\"id\":");
    gd_json_put_cstr(tl->b, id);
    gd_buf_puts(tl->b, ",\"statusCount\":{\"RUNNING\":1},\"queryType\":\"PUSH\",\"state\":\"RUNNING\"}");
}

static void show_queries(const gd_api_ctx *ctx, const gd_request *req, const gd_sql_stmt *st, gd_buf *b)
{
    gd_buf_puts(b, "{\"@type\":\"queries\",\"statementText\":");
    put_statement(b, st->text);
    gd_buf_puts(b, ",\"queries\":[");
    bool first = true;
    for (int table = 1; table >= 0; table--) {
        unsigned n = table ? GD_MAX_TABLES : GD_MAX_STREAMS;
        for (unsigned i = 0; i < n; i++) {
            const gd_catalog_entry *e = table ? gd_catalog_table(ctx->cat, i) : gd_catalog_stream(ctx->cat, i);
            if (!e || !has_query(e)) continue;
            if (!first) gd_buf_putc(b, ',');
            first = false;
            put_running_query(b, e, req);
        }
    }
    for (unsigned i = 0; i < GD_MAX_QUARANTINED; i++) {
        const gd_catalog_entry *e = gd_catalog_quarantined(ctx->cat, i);
        if (!e) continue;
        if (!first) gd_buf_putc(b, ',');
        first = false;
        put_running_query(b, e, req);
    }
    transient_list tl = {ctx, req, b, &first};
    gd_sql_runner_list(ctx->runner, put_transient, &tl);
    gd_buf_puts(b, "],\"warnings\":[]}");
}

static void show_properties(const gd_api_ctx *ctx, const gd_sql_stmt *st, gd_buf *b)
{
    gd_buf_puts(b, "{\"@type\":\"properties\",\"statementText\":");
    put_statement(b, st->text);
    gd_buf_printf(b, ",\"properties\":[{\"name\":\"ksql.service.id\",\"scope\":\"KSQL\",\"value\":\"%s\","
                     "\"editable\":false,\"level\":\"SERVER\"},{\"name\":\"auto.offset.reset\",\"scope\":\"KSQL\","
                     "\"value\":\"latest\",\"editable\":false,\"level\":\"SERVER\"},{\"name\":\"ksql.grace.ms\","
                     "\"scope\":\"KSQL\",\"value\":\"%lld\",\"editable\":false,\"level\":\"SERVER\"}],"
                     "\"overwrittenProperties\":[],\"defaultProperties\":[],\"warnings\":[]}",
                  KSQL_SERVICE_ID, (long long)ctx->cfg->grace_ms);
}

/* What DESCRIBE reports as an entry's partitions (Cube's ksqlDB driver
 * plans its reads by it): the partitions of the Kafka topic it stands for,
 * as the source found them; else 1 -- a table or derived stream is one
 * store here, not a topic of partitions. */
static int partitions_of(const gd_api_ctx *ctx, const gd_catalog_entry *e)
{
    for (int t = 0; e->topic && t < GD_TOPIC_COUNT; t++) {
        int32_t n = atomic_load(&ctx->counters->cluster.partitions[t]);
        if (!strcmp(e->topic, ctx->cfg->topics[t]) && n > 0) return n;
    }
    return 1;
}

/* SHOW FUNCTIONS: the scalar functions of store/func.c's table and the
 * aggregates the planner knows, by name, as ksqlDB lists them. */
static void show_functions(const gd_sql_stmt *st, gd_buf *b)
{
    gd_buf_puts(b, "{\"@type\":\"function_names\",\"statementText\":");
    put_statement(b, st->text);
    gd_buf_puts(b, ",\"functions\":[");
    for (int i = 0; i < gd_fn_count(); i++) {
        const gd_fn *f = gd_fn_at(i);
        for (int named = 0; named < (f->alias ? 2 : 1); named++)
            gd_buf_printf(b, "{\"name\":\"%s\",\"type\":\"SCALAR\",\"category\":\"%s\"},", named ? f->alias : f->name,
                          f->category);
    }
    for (int i = 0; gd_sql_aggregate_at(i); i++)
        gd_buf_printf(b, "{\"name\":\"%s\",\"type\":\"AGGREGATE\",\"category\":\"AGGREGATE\"},", gd_sql_aggregate_at(i));
    b->len--; /* the last comma: there is always an aggregate */
    gd_buf_puts(b, "],\"warnings\":[]}");
}

/* A column's type as ksqlDB's SchemaInfo: an ARRAY's or MAP's base type,
 * its element's (a MAP's value's) as memberSchema. */
static void put_schema(gd_buf *b, gd_coltype t)
{
    bool list = gd_coltype_collection(t);
    gd_buf_printf(b, "{\"type\":\"%s\",\"fields\":null,\"memberSchema\":",
                  !list ? gd_coltype_name(t) : t == GD_T_MAP_STRING_BIGINT ? "MAP" : "ARRAY");
    if (list) put_schema(b, gd_coltype_member(t));
    else gd_buf_puts(b, "null");
    gd_buf_putc(b, '}');
}

/* DESCRIBE FUNCTION name: a scalar function's one signature, as ksqlDB's
 * describe_function entity has them. */
static bool describe_function(const gd_sql_stmt *st, gd_buf *b, gd_reply *r)
{
    int index;
    const gd_fn *f = gd_fn_lookup(st->name, &index);
    if (!f) {
        char msg[200];
        snprintf(msg, sizeof msg, "Can't find any functions with the name '%.*s'", (int)st->name.len, st->name.p);
        statement_error(r, 400, GD_SQL_BAD_STATEMENT, msg, st->text);
        return false;
    }
    gd_buf_puts(b, "{\"@type\":\"describe_function\",\"statementText\":");
    put_statement(b, st->text);
    gd_buf_printf(b, ",\"name\":\"%s\",\"description\":", f->name);
    gd_json_put_cstr(b, f->description);
    gd_buf_puts(b, ",\"author\":\"gamingd\",\"version\":\"\",\"path\":\"internal\",\"functions\":[{\"arguments\":[");
    int np = gd_fn_nparams(f);
    for (int i = 0; i < np; i++) {
        gd_buf_printf(b, "%s{\"name\":\"%s\",\"type\":\"%s\",\"description\":\"%s\",\"isVariadic\":%s}", i ? "," : "",
                      f->params[i].name, gd_fn_param_type_name(f->params[i].type), i >= f->min ? "optional" : "",
                      f->max > GD_FN_MAX_PARAMS && i == np - 1 ? "true" : "false");
    }
    gd_buf_puts(b, "],\"returnType\":");
    gd_json_put_cstr(b, gd_fn_result_name(f));
    gd_buf_puts(b, ",\"description\":");
    gd_json_put_cstr(b, f->description);
    gd_buf_puts(b, "}],\"type\":\"SCALAR\"}");
    return true;
}

static void show_variables(const gd_sql_stmt *st, const gd_sql_vars *vars, gd_buf *b)
{
    gd_buf_puts(b, "{\"@type\":\"variables\",\"statementText\":");
    put_statement(b, st->text);
    gd_buf_puts(b, ",\"variables\":[");
    for (int i = 0; i < vars->n; i++) {
        gd_buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        gd_json_put_str(b, vars->name[i]);
        gd_buf_puts(b, ",\"value\":");
        gd_json_put_str(b, vars->value[i]);
        gd_buf_putc(b, '}');
    }
    gd_buf_puts(b, "],\"warnings\":[]}");
}

static void describe(const gd_api_ctx *ctx, const gd_request *req, const gd_sql_stmt *st, const gd_catalog_entry *e,
                     gd_buf *b)
{
    gd_sql_column cols[GD_MAX_KEYS + 2 + GD_MAX_COLS + 64];
    int n = e->error ? 0 : gd_sql_columns(e, cols, (int)(sizeof cols / sizeof cols[0])); /* quarantined: none known */
    gd_buf_puts(b, "{\"@type\":\"sourceDescription\",\"statementText\":");
    put_statement(b, st->text);
    gd_buf_puts(b, ",\"sourceDescription\":{\"name\":");
    put_upper(b, e->name);
    if (e->error) put_error_state(b, e);
    bool windowed = e->is_table && !e->error && gd_table_windowed(e->table);
    gd_buf_printf(b, ",\"windowType\":%s,\"readQueries\":[],\"writeQueries\":[",
                  !windowed                ? "null"
                  : e->table->session      ? "\"SESSION\""
                  : e->table->advance_ms   ? "\"HOPPING\""
                                           : "\"TUMBLING\"");
    if (has_query(e)) put_running_query(b, e, req);
    gd_buf_puts(b, "],\"fields\":[");
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (cols[i].window) continue; /* ksqlDB does not list the window bounds */
        if (!first) gd_buf_putc(b, ',');
        first = false;
        gd_buf_puts(b, "{\"name\":");
        put_upper(b, cols[i].name);
        gd_buf_puts(b, ",\"schema\":");
        put_schema(b, cols[i].type);
        gd_buf_printf(b, "%s}", cols[i].key ? ",\"type\":\"KEY\"" : "");
    }
    gd_buf_printf(b, "],\"type\":\"%s\",\"timestamp\":\"\",\"statistics\":\"\",\"errorStats\":\"\",\"extended\":%s,"
                     "\"keyFormat\":\"KAFKA\",\"valueFormat\":\"%s\",\"topic\":",
                  e->is_table ? "TABLE" : "STREAM", st->extended ? "true" : "false", value_format(e));
    put_topic(b, e);
    gd_buf_printf(b, ",\"partitions\":%d,\"replication\":0,\"statement\":", partitions_of(ctx, e));
    put_definition(b, e, req);
    gd_buf_puts(b, ",\"queryOffsetSummaries\":[],\"sourceConstraints\":[],\"clusterStatistics\":[],"
                   "\"clusterErrorStats\":[]},\"warnings\":[]}");
    (void)ctx;
}

static uint64_t command_sequence(const gd_api_ctx *ctx) { return atomic_load(&ctx->cat->version); }

static void current_status(const gd_api_ctx *ctx, const gd_sql_stmt *st, const char *command_id, const char *message,
                           const char *query_id, gd_buf *b)
{
    gd_buf_puts(b, "{\"@type\":\"currentStatus\",\"statementText\":");
    put_statement(b, st->text);
    gd_buf_puts(b, ",\"commandId\":");
    gd_json_put_cstr(b, command_id);
    gd_buf_puts(b, ",\"commandStatus\":{\"status\":\"SUCCESS\",\"message\":");
    gd_json_put_cstr(b, message);
    gd_buf_puts(b, ",\"queryId\":");
    if (query_id) gd_json_put_cstr(b, query_id);
    else gd_buf_puts(b, "null");
    gd_buf_printf(b, "},\"commandSequenceNumber\":%llu,\"warnings\":[]}", (unsigned long long)command_sequence(ctx));
}

/* <type>/<name>/<action>: CREATE quotes the name, DROP does not. */
static void command_id(const gd_sql_stmt *st, const char *name, const char *what, gd_buf *b)
{
    bool quoted = !strcmp(what, "create");
    gd_buf_printf(b, "%s/%s", st->is_table ? "table" : "stream", quoted ? "`" : "");
    gd_sql_upper(name, b);
    gd_buf_printf(b, "%s/%s", quoted ? "`" : "", what);
}

/* DDL needs the admin scope. */
static bool admin(const gd_request *req, const gd_sql_stmt *st, gd_reply *r)
{
    if (req->scopes & GD_SCOPE_ADMIN) return true;
    statement_error(r, 403, GD_SQL_FORBIDDEN, "CREATE, DROP and TERMINATE need an API key with the admin scope", st->text);
    return false;
}

static bool create(const gd_api_ctx *ctx, const gd_request *req, const gd_sql_stmt *st, gd_buf *b, gd_reply *r)
{
    if (!admin(req, st, r)) return false;
    gd_buf cmd = {0}, msg = {0};
    const gd_catalog_entry *exists = find_any(ctx, st->name);
    if (exists && st->if_not_exists) {
        command_id(st, exists->name, "create", &cmd);
        gd_buf_printf(&msg, "Cannot add %s %s: one with the same name already exists.", st->is_table ? "table" : "stream",
                      exists->name);
        gd_buf_putc(&cmd, 0);
        gd_buf_putc(&msg, 0);
        current_status(ctx, st, cmd.p, msg.p, NULL, b);
        gd_buf_free(&cmd);
        gd_buf_free(&msg);
        return true;
    }
    gd_sql_error err = {0};
    gd_catalog_entry *e;
    if (gd_sql_plan_create(ctx->cat, st, false, &e, &err)) {
        sql_error(r, &err, st->text);
        return false;
    }
    char why[256];
    int rc = gd_catalog_submit(ctx->cat, GD_CMD_CREATE, e, DDL_TIMEOUT_MS, why, sizeof why);
    if (rc) {
        if (rc != GD_AGAIN) gd_catalog_entry_free(e); /* not applied, and never will be */
        statement_error(r, rc == GD_AGAIN ? 503 : 400, rc == GD_AGAIN ? GD_SQL_UNAVAILABLE : GD_SQL_BAD_STATEMENT, why,
                        st->text);
        return false;
    }
    gd_buf qid = {0};
    persistent_id(e, &qid);
    gd_buf_putc(&qid, 0);
    command_id(st, e->name, "create", &cmd);
    gd_buf_putc(&cmd, 0);
    gd_buf_printf(&msg, "Created query with ID %s", qid.p);
    gd_buf_putc(&msg, 0);
    current_status(ctx, st, cmd.p, msg.p, qid.p, b);
    gd_buf_free(&qid);
    gd_buf_free(&cmd);
    gd_buf_free(&msg);
    return true;
}

/* Applies a DROP or TERMINATE of e; false with r set when refused. */
static bool change(const gd_api_ctx *ctx, const gd_sql_stmt *st, gd_cmd_op op, const gd_catalog_entry *e, gd_reply *r)
{
    char why[256];
    int rc = gd_catalog_submit(ctx->cat, op, (gd_catalog_entry *)e, DDL_TIMEOUT_MS, why, sizeof why);
    if (rc) {
        statement_error(r, rc == GD_AGAIN ? 503 : 400, rc == GD_AGAIN ? GD_SQL_UNAVAILABLE : GD_SQL_BAD_STATEMENT, why,
                        st->text);
        return false;
    }
    if (op == GD_CMD_DROP && !e->error) /* its push stream has no more events: its subscribers are let go */
        gd_push_end_stream(ctx->push, e->is_table ? gd_table_hub(e->slot) : gd_stream_hub(e->slot));
    return true;
}

static bool drop(const gd_api_ctx *ctx, const gd_request *req, const gd_sql_stmt *st, gd_buf *b, gd_reply *r)
{
    if (!admin(req, st, r)) return false;
    const gd_catalog_entry *e = find_any(ctx, st->name);
    char msg[300];
    gd_buf cmd = {0};
    if (!e || e->is_table != st->is_table) {
        gd_buf up = {0};
        gd_sql_upper(e ? e->name : "", &up);
        gd_buf_putc(&up, 0);
        if (e)
            snprintf(msg, sizeof msg, "Incompatible data source type is %s, but statement was DROP %s",
                     e->is_table ? "TABLE" : "STREAM", st->is_table ? "TABLE" : "STREAM");
        else snprintf(msg, sizeof msg, "Source `%.*s` does not exist.", (int)st->name.len, st->name.p);
        gd_buf_free(&up);
        if (e || !st->if_exists) {
            statement_error(r, 400, GD_SQL_BAD_STATEMENT, msg, st->text);
            return false;
        }
        char given[160];
        snprintf(given, sizeof given, "%.*s", (int)(st->name.len < 150 ? st->name.len : 150), st->name.p);
        command_id(st, given, "drop", &cmd);
    } else if (e->builtin) {
        snprintf(msg, sizeof msg, "%s is built in (sql/builtin.sql) and cannot be dropped", e->name);
        statement_error(r, 400, GD_SQL_BAD_STATEMENT, msg, st->text);
        return false;
    } else if (gd_catalog_reader_of(ctx->cat, e)) {
        gd_buf id = {0};
        persistent_id(gd_catalog_reader_of(ctx->cat, e), &id);
        gd_buf_putc(&id, 0);
        snprintf(msg, sizeof msg, "Cannot drop %s: the query %s reads from it; drop what it created first", e->name,
                 id.p);
        gd_buf_free(&id);
        statement_error(r, 400, GD_SQL_BAD_STATEMENT, msg, st->text);
        return false;
    } else {
        if (!change(ctx, st, GD_CMD_DROP, e, r)) return false;
        gd_buf up = {0};
        gd_sql_upper(e->name, &up);
        gd_buf_putc(&up, 0);
        snprintf(msg, sizeof msg, "Source `%s` (topic: %s) was dropped.", up.p, e->topic ? e->topic : up.p);
        gd_buf_free(&up);
        command_id(st, e->name, "drop", &cmd);
    }
    gd_buf_putc(&cmd, 0);
    current_status(ctx, st, cmd.p, msg, NULL, b);
    gd_buf_free(&cmd);
    return true;
}

/* The entry whose persistent query has this id, or NULL. */
static const gd_catalog_entry *entry_of_query(const gd_api_ctx *ctx, gd_str id)
{
    gd_buf b = {0};
    const gd_catalog_entry *found = NULL;
    for (int table = 1; table >= 0 && !found; table--) {
        unsigned n = table ? GD_MAX_TABLES : GD_MAX_STREAMS;
        for (unsigned i = 0; i < n && !found; i++) {
            const gd_catalog_entry *e = table ? gd_catalog_table(ctx->cat, i) : gd_catalog_stream(ctx->cat, i);
            if (!e || !has_query(e)) continue;
            gd_buf_clear(&b);
            persistent_id(e, &b);
            if (gd_str_eq_nocase((gd_str){b.p, (uint32_t)b.len}, id)) found = e;
        }
    }
    gd_buf_free(&b);
    return found;
}

static bool terminate(const gd_api_ctx *ctx, const gd_request *req, const gd_sql_stmt *st, gd_buf *b, gd_reply *r)
{
    if (!admin(req, st, r)) return false;
    if (st->all) {
        for (int table = 1; table >= 0; table--) {
            unsigned n = table ? GD_MAX_TABLES : GD_MAX_STREAMS;
            for (unsigned i = 0; i < n; i++) {
                const gd_catalog_entry *e = table ? gd_catalog_table(ctx->cat, i) : gd_catalog_stream(ctx->cat, i);
                if (e && !e->builtin && has_query(e) && !atomic_load(&e->terminated) &&
                    !change(ctx, st, GD_CMD_TERMINATE, e, r))
                    return false;
            }
        }
        current_status(ctx, st, "cluster/`ALL`/terminate", "Queries terminated.", NULL, b);
        return true;
    }
    char id[160];
    snprintf(id, sizeof id, "%.*s", (int)(st->name.len < 150 ? st->name.len : 150), st->name.p);
    const gd_catalog_entry *e = entry_of_query(ctx, st->name);
    if (!e) { /* a push query's */
        if (!gd_push_close_query(ctx->push, id, req)) {
            char msg[220];
            snprintf(msg, sizeof msg, "Failed to terminate query with query ID: '%s'", id);
            generic_error(r, 400, GD_SQL_BAD_REQUEST, msg);
            return false;
        }
        gd_buf_puts(b, "{\"@type\":\"terminate_query\",\"statementText\":");
        put_statement(b, st->text);
        gd_buf_puts(b, ",\"queryId\":");
        gd_json_put_cstr(b, id);
        gd_buf_puts(b, ",\"wasTerminated\":true,\"warnings\":[]}");
        return true;
    } else if (e->builtin) {
        statement_error(r, 400, GD_SQL_BAD_STATEMENT, "the built-in tables' queries cannot be terminated", st->text);
        return false;
    } else if (!atomic_load(&e->terminated) && !change(ctx, st, GD_CMD_TERMINATE, e, r)) {
        return false;
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "terminate/%s/execute", id);
    current_status(ctx, st, cmd, "Query terminated.", NULL, b);
    return true;
}

/* One statement of /ksql into b (an element of the answer's array); false
 * with the error in r. */
static bool run_statement(const gd_api_ctx *ctx, const gd_request *req, const gd_sql_stmt *st, gd_sql_vars *vars,
                          gd_buf *b, gd_reply *r)
{
    switch (st->kind) {
    case GD_SQL_SELECT:
        statement_error(r, 400, GD_SQL_QUERY_ENDPOINT,
                        "The following statement types should be issued to the websocket endpoint '/query':\n\t* "
                        "PRINT\n\t* SELECT",
                        st->text);
        return false;
    case GD_SQL_SHOW:
        if (st->show == GD_SHOW_QUERIES) show_queries(ctx, req, st, b);
        else if (st->show == GD_SHOW_PROPERTIES) show_properties(ctx, st, b);
        else if (st->show == GD_SHOW_VARIABLES) show_variables(st, vars, b);
        else if (st->show == GD_SHOW_FUNCTIONS) show_functions(st, b);
        else show_sources(ctx, st, b);
        return true;
    case GD_SQL_DESCRIBE: {
        if (st->function) return describe_function(st, b, r);
        const gd_catalog_entry *e = find_any(ctx, st->name);
        if (!e) {
            char msg[200];
            snprintf(msg, sizeof msg, "Could not find STREAM/TABLE '%.*s' in the Metastore", (int)st->name.len, st->name.p);
            statement_error(r, 400, GD_SQL_BAD_STATEMENT, msg, st->text);
            return false;
        }
        describe(ctx, req, st, e, b);
        return true;
    }
    case GD_SQL_CREATE_AS:
    case GD_SQL_CREATE_SOURCE: return create(ctx, req, st, b, r);
    case GD_SQL_DROP: return drop(ctx, req, st, b, r);
    case GD_SQL_TERMINATE: return terminate(ctx, req, st, b, r);
    case GD_SQL_DEFINE: /* put in the text already (parse_request); kept for SHOW VARIABLES; no answer */
        if (!gd_sql_vars_set(vars, st->name, st->value)) {
            statement_error(r, 400, GD_SQL_BAD_STATEMENT, "too many variables", st->text);
            return false;
        }
        return true;
    case GD_SQL_UNDEFINE:
        if (gd_sql_vars_unset(vars, st->name)) return true;
        gd_buf_puts(b, "{\"@type\":\"warning_entity\",\"statementText\":");
        put_statement(b, st->text);
        gd_buf_printf(b, ",\"message\":\"Cannot undefine variable '%.*s' which was never defined\",\"warnings\":[]}",
                      (int)st->name.len, st->name.p);
        return true;
    }
    return false;
}

void gd_ksql_statements(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    gd_arena arena;
    gd_arena_init(&arena);
    gd_sql_vars vars = {0};
    gd_sql_stmt *stmts;
    int n;
    gd_str whole;
    if (parse_request(req, "ksql", &arena, &vars, &whole, &stmts, &n, r)) {
        gd_buf b = {0};
        gd_buf_putc(&b, '[');
        bool ok = true;
        for (int i = 0; i < n && ok; i++) {
            size_t mark = b.len;
            if (b.len > 1) gd_buf_putc(&b, ',');
            ok = run_statement(ctx, req, &stmts[i], &vars, &b, r);
            if (b.len == mark + 1) b.len = mark; /* a statement with no answer (DEFINE) */
            if (!ok && i > 0 && r->body.len && strstr(r->body.p, "\"@type\":\"statement_error\"")) {
                /* the error carries what the statements before it did */
                b.len = mark;
                gd_buf_putc(&b, ']');
                gd_buf_putc(&r->body, 0);
                json_t *err = json_loads(r->body.p, 0, NULL);
                json_t *done = json_loadb(b.p, b.len, 0, NULL);
                if (err && done) {
                    json_object_set(err, "entities", done);
                    char *text = json_dumps(err, JSON_COMPACT | JSON_PRESERVE_ORDER);
                    gd_buf_clear(&r->body);
                    if (text) gd_buf_puts(&r->body, text);
                    free(text);
                } else r->body.len--;
                json_decref(err);
                json_decref(done);
            }
        }
        if (ok) {
            gd_buf_putc(&b, ']');
            r->status = 200;
            r->content_type = "application/json";
            gd_buf_free(&r->body);
            r->body = b;
        } else gd_buf_free(&b);
    }
    gd_arena_free(&arena);
}

/* ---- /info, /healthcheck ---- */

void gd_ksql_info(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    (void)req;
    r->status = 200;
    r->content_type = "application/json";
    gd_buf_printf(&r->body,
                  "{\"KsqlServerInfo\":{\"version\":\"%s\",\"kafkaClusterId\":\"%s\",\"ksqlServiceId\":\"%s\","
                  "\"serverStatus\":\"%s\"}}",
                  KSQL_SERVER_VERSION, ctx->cfg->brokers[0] ? "kafka" : "none", KSQL_SERVICE_ID,
                  atomic_load(&ctx->counters->ready) ? "RUNNING" : "STARTING");
}

void gd_ksql_healthcheck(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    (void)req;
    bool kafka = !atomic_load(&ctx->counters->kafka_unreachable);
    r->status = 200;
    r->content_type = "application/json";
    gd_buf_printf(&r->body,
                  "{\"isHealthy\":%s,\"details\":{\"metastore\":{\"isHealthy\":true},\"kafka\":{\"isHealthy\":%s},"
                  "\"commandRunner\":{\"isHealthy\":true}},\"serverState\":\"READY\"}",
                  kafka ? "true" : "false", kafka ? "true" : "false");
}
