/* sql.h -- ksqlDB's SQL for gamingd: the interface of the sql/ layer.
 *
 * As in SQLite, one file a stage, each with one job:
 *   tokenize.c  text -> tokens
 *   parse.c     tokens -> statements (the grammar, all of it, at its top)
 *   plan.c      statements -> definitions the engine runs (a table, a
 *               derived stream) or a query plan, names bound against the
 *               catalog (store/catalog.h), types checked
 *   exec.c      pull queries: a plan over LMDB read transactions -- the one
 *               read path of SQL's, REST's and Grafana's pull queries (REST's
 *               plan is made by gd_sql_plan_rows, Grafana's by
 *               gd_sql_plan_dashboard)
 *   run.c       push queries: the thread that evaluates them on the hub's
 *               streams and publishes their rows
 *   builtin.sql the built-in tables and streams, compiled at start by
 *               builtin.c through the same planner as a user's statements
 *
 * Errors carry ksqlDB's error code and a message; a syntax error names the
 * line and column ("line 1:8: ..."). Nothing here writes to the store: DDL
 * becomes a catalog command that the ingest thread applies. */
#ifndef GD_SQL_H
#define GD_SQL_H

#include <stdarg.h>

#include "../server/hub.h"
#include "../store/catalog.h"
#include "../store/query.h"

/* ksqlDB's error codes (its Errors class). */
enum {
    GD_SQL_BAD_REQUEST = 40000,
    GD_SQL_BAD_STATEMENT = 40001,
    GD_SQL_QUERY_ENDPOINT = 40002,
    GD_SQL_UNAUTHORIZED = 40100,
    GD_SQL_FORBIDDEN = 40300,
    GD_SQL_NOT_FOUND = 40400,
    GD_SQL_SERVER_ERROR = 50000,
    GD_SQL_UNAVAILABLE = 50300,
    GD_SQL_TIMED_OUT = 40800, /* gamingd's: the query's work passed --request-timeout */
};

typedef struct {
    int code; /* GD_SQL_*; 0: no error */
    int http_status;
    char message[512];
} gd_sql_error;

/* Sets err (http_status 400 unless told) and returns GD_ERR. */
int gd_sql_fail(gd_sql_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A statement error at a place in it ("line L:C: ..."; line 0: none). */
int gd_sql_fail_at(gd_sql_error *err, uint32_t line, uint32_t col, const char *fmt, va_list ap);

/* ---- tokens (tokenize.c) ---- */
typedef enum {
    GD_TK_EOF,
    GD_TK_IDENT,   /* name, keyword */
    GD_TK_QIDENT,  /* `name` or "name": text is the name unquoted */
    GD_TK_STRING,  /* 'text': text unquoted ('' -> ') */
    GD_TK_INTEGER,
    GD_TK_DECIMAL, /* 1.5, 1e3 */
    GD_TK_SYMBOL,  /* ( ) , ; . * + - / % = != <> < <= > >= || */
    GD_TK_VARIABLE, /* ${name}: text is the name (gd_sql_substitute replaces it before parsing) */
    GD_TK_ERROR,   /* text: why */
} gd_token_type;

typedef struct {
    gd_token_type type;
    gd_str text;
    uint32_t line, col, offset;
} gd_token;

typedef struct {
    const char *start, *p, *end;
    uint32_t line;
    const char *line_start;
    gd_arena *arena; /* unquoted strings with escapes */
} gd_lexer;

void gd_lexer_init(gd_lexer *lx, gd_str text, gd_arena *arena);
gd_token gd_lexer_next(gd_lexer *lx);
/* t is the word w (a keyword: letters, any case). */
bool gd_token_is_word(const gd_token *t, const char *w);
/* text with each string literal written '***' (the rest as it stands). */
void gd_sql_mask_literals(gd_str text, gd_buf *out);

/* ksqlDB's variables: DEFINE name = 'value'; makes ${name} stand for value
 * in the statements after it, anywhere in their text (string literals
 * too); UNDEFINE name; ends that. A request's sessionVariables are defined
 * before its first statement. Names compare case-insensitively. */
enum { GD_SQL_MAX_VARS = 64 };
typedef struct {
    int n;
    gd_str name[GD_SQL_MAX_VARS], value[GD_SQL_MAX_VARS];
} gd_sql_vars;
/* false when there is no room for another */
bool gd_sql_vars_set(gd_sql_vars *v, gd_str name, gd_str value);
/* false when name was not defined */
bool gd_sql_vars_unset(gd_sql_vars *v, gd_str name);
/* text with every ${name} replaced, the DEFINEs and UNDEFINEs met applied
 * to vars as the statements go (values point into text or arena), into
 * out; GD_ERR when a name is not defined where it is used. */
int gd_sql_substitute(gd_str text, gd_sql_vars *vars, gd_arena *arena, gd_buf *out, gd_sql_error *err);

/* ---- statements (parse.c) ---- */
typedef enum {
    GD_SQL_SELECT,
    GD_SQL_CREATE_AS,     /* CREATE TABLE|STREAM name AS SELECT */
    GD_SQL_CREATE_SOURCE, /* CREATE TABLE|STREAM name (columns) WITH (...) */
    GD_SQL_DROP,
    GD_SQL_SHOW,
    GD_SQL_DESCRIBE,
    GD_SQL_TERMINATE,
    GD_SQL_DEFINE,   /* DEFINE name = 'value' */
    GD_SQL_UNDEFINE, /* UNDEFINE name */
} gd_sql_kind;

typedef enum {
    GD_SHOW_STREAMS,
    GD_SHOW_TABLES,
    GD_SHOW_QUERIES,
    GD_SHOW_PROPERTIES,
    GD_SHOW_VARIABLES,
    GD_SHOW_FUNCTIONS
} gd_sql_show;
typedef enum { GD_EMIT_NONE, GD_EMIT_CHANGES, GD_EMIT_FINAL } gd_sql_emit;

typedef struct {
    gd_expr *expr;
    gd_str alias; /* p NULL: none */
} gd_sql_item;

typedef struct {
    gd_expr *expr;
    bool desc;
} gd_sql_order;

typedef struct {
    gd_sql_item *items;
    int nitems;
    gd_str from, from_alias;
    uint32_t from_line, from_col;
    gd_expr *where;
    bool windowed;
    int64_t window_ms, grace_ms; /* grace_ms -1: not given */
    int64_t advance_ms;          /* HOPPING's ADVANCE BY; 0: TUMBLING */
    bool session;                /* SESSION: window_ms is the gap */
    gd_expr **group_by;
    int ngroup;
    gd_expr *having;
    gd_expr **partition_by; /* PARTITION BY's expressions, */
    gd_str *partition_text; /* each as written */
    int npartition;
    gd_sql_emit emit;
    gd_sql_order *order;
    int norder;
    int64_t limit; /* -1: none */
} gd_sql_select;

typedef struct {
    gd_str name;
    gd_coltype type;
    bool key;
    bool pii; /* PII: the column holds personal data */
} gd_sql_coldecl;

typedef struct {
    gd_str name, value;
} gd_sql_prop;

typedef struct {
    gd_sql_kind kind;
    gd_str text;   /* the statement as written, without its ';' */
    bool is_table; /* TABLE (else STREAM) in CREATE, DROP, SHOW */
    gd_str name;   /* created, dropped, described, terminated; a variable */
    gd_str value;  /* DEFINE's */
    bool if_not_exists, if_exists, extended, all;
    bool function; /* DESCRIBE FUNCTION name */
    gd_sql_show show;
    gd_sql_select select;
    gd_sql_coldecl *cols;
    int ncols;
    gd_sql_prop *props;
    int nprops;
} gd_sql_stmt;

/* Parses a script of statements separated by ';' into arena. */
int gd_sql_parse(gd_str text, gd_arena *arena, gd_sql_stmt **stmts, int *nstmts, gd_sql_error *err);

/* ---- planning (plan.c) ---- */

/* A table or stream definition from CREATE ... AS SELECT (or, for the
 * built-in file only, a source declaration). The definition and everything
 * it points to live in its own arena; the catalog takes it. builtin: the
 * statement comes from builtin.sql (source declarations allowed). */
int gd_sql_plan_create(const gd_catalog *cat, const gd_sql_stmt *st, bool builtin, gd_catalog_entry **out,
                       gd_sql_error *err);

typedef enum {
    GD_PLAN_PULL_TABLE, /* rows of a table, now */
    GD_PLAN_PUSH_STREAM, /* a stream's records from now on */
    GD_PLAN_PUSH_TABLE,  /* a table's rows after each change */
    GD_PLAN_PUSH_AGGREGATE, /* a transient aggregation of a stream */
    GD_PLAN_PUSH_EVENTS, /* the events of an entry's push stream that pass where, as they are */
} gd_plan_kind;

enum { GD_PLAN_MAX_IN = 256 }; /* key values a pull query looks up */

/* A row's place in a pull's order: the value of its (first) order column,
 * null without ORDER BY, and its LMDB row; with the key, the order is total,
 * so a place is where the next page starts (keyset paging). */
typedef struct gd_sql_pos {
    gd_value sort;
    gd_str key, val;
} gd_sql_pos;

/* A SELECT, bound. Rows flow as arrays of values: the input row of the
 * source (a stream's columns by id, or a table's row: keys, window bounds,
 * value columns), filtered by where, projected by proj into the output. */
typedef struct {
    gd_plan_kind kind;
    const gd_catalog_entry *source; /* the table or the stream read (its base when derived) */
    int ncols;
    const char **names;  /* output column names as ksqlDB gives them */
    gd_coltype *types;
    gd_expr **proj;      /* over the input row (for an aggregate: the transient table's row) */
    gd_expr *where;      /* over the input row, or NULL (a pull's: the conjuncts where_keys does not hold) */
    gd_expr *where_keys; /* pull: the WHERE's conjuncts over the row key alone (keys, window bounds), checked
                          * before the rest of a row is decoded; NULL: none */
    int64_t limit;       /* -1: none */
    /* pull: the keys and windows to read, and the order */
    int nkey_values[GD_MAX_KEYS]; /* 0: any value of that key column */
    gd_value *key_values[GD_MAX_KEYS];
    int64_t window_from, window_to; /* window starts in [from, to) */
    bool window_latest;  /* of those, only the newest holding a row sought (per combination of key values) */
    bool final_only;     /* an EMIT FINAL table: only its windows closed at the stored stream time */
    int64_t final_grace_ms; /* its grace, resolved */
    gd_sql_order *order; /* over the output row, by output column */
    int norder;
    int *order_cols;
    bool nulls_low;      /* nulls sort below every value (first ascending); else last either way */
    bool key_desc;       /* the row key, the order's last tie-break, descending (alone: rows by key, descending) */
    const struct gd_sql_pos *after; /* keyset paging: only rows after this place in the order (norder <= 1); NULL: all */
    /* push aggregate: the transient table it keeps */
    gd_tabledef *aggregate;
    bool emit_final;
    gd_pii *pii;         /* output column i is personal data: masked without the pii scope */
    gd_pii_use pii_use;  /* personal data used to decide something: refused without the pii scope */
    int row_width;       /* values in an input row */
} gd_query_plan;

/* Binds a SELECT. The plan lives in arena. */
int gd_sql_plan_query(const gd_catalog *cat, const gd_sql_stmt *st, gd_arena *arena, gd_query_plan *out,
                      gd_sql_error *err);

/* The plan of a REST pull (GET /v1/tables/{table}, api/pull.c): every
 * column of q's table under the table's own names (window_start,
 * window_end), q's key filters (texts) and windows (GD_WINDOWS_LATEST: the
 * newest window holding a row sought), ordered by order_by (a column; NULL:
 * the row key) either way with nulls first ascending, ties by row key, at
 * most limit rows. Personal data used is plan->pii_use, as for SQL. */
int gd_sql_plan_rows(const gd_catalog *cat, const gd_query *q, const char *order_by, bool desc, int64_t limit,
                     gd_arena *arena, gd_query_plan *out, gd_sql_error *err);

/* The rows a dashboard asks for (api/grafana.c): every column of a table
 * as gd_sql_plan_rows gives them, the windows of q (its key_eq unused),
 * the values each key column may take (a payload's multi-select; one
 * value is a seek, several a condition), and ad hoc filters -- column op
 * text, compared as store/expr.h's GD_E_FILTER says; one on a column the
 * table lacks is left out (a dashboard sends its filters to every panel).
 * newest_first: windows newest first, each window's rows in key order;
 * else rows come in the order of the scan. At most limit rows (-1: all). */
typedef struct {
    const char *column;
    gd_filter_op op;
    const char *value;
} gd_sql_filter;

enum { GD_PLAN_MAX_FILTERS = 32 }; /* ad hoc filters that apply to a table */

typedef struct {
    gd_query q;
    const gd_str *key_in[GD_MAX_KEYS];
    int nkey_in[GD_MAX_KEYS]; /* 0: any value */
    const gd_sql_filter *filters;
    int nfilters;
    bool newest_first;
    int64_t limit;
} gd_sql_dashboard;

/* The plan of a dashboard's rows: key values and filters are its bound
 * WHERE, and a key value or filter on a personal column is
 * plan->pii_use ("filtering on"), as for SQL. A regex that does not
 * compile, or more than GD_PLAN_MAX_FILTERS filters, is an error (400).
 * The regexes live outside the arena: gd_sql_plan_free frees them, failed
 * or not. */
int gd_sql_plan_dashboard(const gd_catalog *cat, const gd_sql_dashboard *d, gd_arena *arena, gd_query_plan *out,
                          gd_sql_error *err);
/* Frees what a plan holds outside its arena (the regexes of its filters). */
void gd_sql_plan_free(gd_query_plan *plan);

/* The index of the plan's output column of that name; -1: none. */
int gd_sql_plan_column(const gd_query_plan *plan, const char *name);
/* The plan of a filtered push subscription (GET /v1/streams/{stream}?
 * name=value, api/push.c): the events of e's push stream whose member
 * names[i] equals values[i] for every i, the text read as a value of the
 * column's type (a number compares as a number, true and false as
 * booleans, a string as the same bytes; null matches a null). where is
 * over the row gd_sql_event_row reads from an event. An unknown name is an
 * error (400); personal data filtered on is plan->pii_use. Values are
 * copied into arena; names must outlive the plan only until it returns. */
int gd_sql_plan_filters(const gd_catalog_entry *e, const char *const *names, const char *const *values, int n,
                        gd_arena *arena, gd_query_plan *plan, gd_sql_error *err);

/* The schema of an entry's rows as SQL shows it. */
typedef struct {
    const char *name;
    gd_coltype type;
    bool key;       /* a key column (PRIMARY KEY / KEY) */
    bool window;    /* WINDOWSTART, WINDOWEND */
    gd_pii pii;     /* as gd_catalog_column_pii answers for it */
} gd_sql_column;
int gd_sql_columns(const gd_catalog_entry *e, gd_sql_column *out, int max);
/* The aggregate functions' names, i from 0 until NULL (SHOW FUNCTIONS). */
const char *gd_sql_aggregate_at(int i);
/* A name as the catalog keeps it: lower case, NUL-terminated, in a. */
char *gd_sql_lower_dup(gd_arena *a, gd_str name);
/* A name as ksqlDB shows it: upper case. */
void gd_sql_upper(const char *name, gd_buf *out);

/* ---- pull queries (exec.c) ---- */
/* Calls fn for each output row and its place in the order (both valid
 * during the call) until it returns non-zero; rows after plan->after only;
 * ORDER BY sorts and LIMIT cuts first -- with a LIMIT, only that many rows
 * are kept to sort, however many match. A scan still running at
 * deadline_ms (gd_mono_ns() / 1000000; 0: none) is stopped, a
 * GD_SQL_TIMED_OUT error (408). */
typedef int (*gd_sql_row_fn)(void *ctx, const gd_value *row, int ncols, const gd_sql_pos *pos);
int gd_sql_pull(gd_store *store, const gd_query_plan *plan, int64_t now_ms, int64_t deadline_ms, gd_sql_row_fn fn,
                void *ctx, gd_sql_error *err);

/* An output row as a JSON array, personal columns masked for a reader
 * without the pii scope: what every SQL reply and push query writes. */
void gd_sql_put_row(gd_buf *out, const gd_query_plan *plan, const gd_value *row, bool sees_pii);

/* The input row of a stored row of table t: keys, window bounds, value
 * columns (reference tables: key, then value fields). Strings point into
 * key/val or scratch. */
int gd_sql_table_row(const gd_tabledef *t, gd_str key, gd_str val, gd_value *row, gd_arena *scratch);
/* The input row of a JSON event of an entry's hub stream (a table's row
 * after a change, a source or derived stream's record), by column name;
 * false when it is not such an event (a deleted reference row). */
bool gd_sql_event_row(const gd_catalog_entry *e, gd_str json, gd_value *row, int width, gd_arena *scratch);

/* ---- pull plans kept for reuse (cache.c) ---- */
/* One thread's plans of the SELECTs it was asked, by text and catalog
 * version; not to be shared between threads. */
typedef struct gd_sql_cache gd_sql_cache;
gd_sql_cache *gd_sql_cache_new(void); /* NULL: out of memory */
void gd_sql_cache_free(void *cache);   /* a pthread key's destructor too */
/* The plan kept for text under catalog version (read before planning),
 * and its statement's text; NULL when there is none. Valid until the next
 * gd_sql_cache_claim. */
const gd_query_plan *gd_sql_cache_find(gd_sql_cache *c, gd_str text, unsigned version, gd_str *stmt);
/* After a miss: the arena to copy text into and plan it in, the least
 * recently used plan let go for it; NULL when text is too long to keep
 * (plan it in the request's arena). */
gd_arena *gd_sql_cache_claim(gd_sql_cache *c, gd_str text);
/* Keeps plan, made in the claimed arena from text (a copy in it too), and
 * stmt (its statement, parsed there) -- unless the arena grew past 64 KiB.
 * A claimed arena not kept is reused by the next claim. */
void gd_sql_cache_keep(gd_sql_cache *c, gd_str text, gd_str stmt, unsigned version, const gd_query_plan *plan);

/* ---- push queries (run.c) ---- */
typedef struct gd_sql_runner gd_sql_runner;
typedef struct gd_push_query gd_push_query;
/* Starts the thread that runs push queries on hub's streams. */
int gd_sql_runner_start(gd_sql_runner **out, gd_hub *hub, const gd_catalog *cat);
void gd_sql_runner_stop(gd_sql_runner *r);
/* Joins the running query of statement sql (a push SELECT), starting it
 * when none runs: *hub_stream is where its rows are published (JSON
 * arrays; a JSON object there is a notice). Leave once per join. */
int gd_sql_runner_join(gd_sql_runner *r, const char *sql, bool sees_pii, gd_push_query **out, unsigned *hub_stream,
                       gd_sql_error *err);
/* Joins the running filtered subscription of e (the plan of
 * gd_sql_plan_filters, refused with a 403 when it filters on personal data
 * and !sees_pii), starting it when none runs: *hub_stream is where e's
 * events that pass are published, with their own ids; an event there whose
 * text is a decimal number is a notice: the runner lost that many of e's
 * events. after_id (NULL: none) asks to resume after that event of e,
 * which e's stream must still hold (gd_hub_resume); *pos is where the
 * caller starts reading *hub_stream. Leave once per join. */
int gd_sql_runner_join_filters(gd_sql_runner *r, const gd_catalog_entry *e, const char *const *names,
                               const char *const *values, int n, bool sees_pii, const uint64_t *after_id,
                               gd_push_query **out, unsigned *hub_stream, uint64_t *pos, gd_sql_error *err);
/* Whether a row of a filtered subscription's event passes its filters. */
bool gd_sql_filters_pass(const gd_query_plan *plan, const gd_value *row, gd_arena *scratch);
void gd_sql_runner_leave(gd_sql_runner *r, gd_push_query *q);
const char *gd_push_query_id(const gd_push_query *q);
const gd_query_plan *gd_push_query_plan(const gd_push_query *q);
/* Each running query: its id, statement, and how many clients read it. */
typedef void (*gd_sql_query_fn)(void *ctx, const char *id, const char *sql, int clients);
void gd_sql_runner_list(gd_sql_runner *r, gd_sql_query_fn fn, void *ctx);
void gd_sql_runner_metrics(gd_sql_runner *r, uint64_t *queries, uint64_t *events_in, uint64_t *events_lost,
                           uint64_t *rows_out);

/* ---- built-in definitions (builtin.c) ---- */
/* Compiles builtin.sql into cat, and gives cat the compiler of user
 * definitions (gd_catalog.compile). */
int gd_sql_load_builtin(gd_catalog *cat, gd_sql_error *err);
/* Compiles the user definitions the store holds into cat; one that no
 * longer compiles is quarantined (listed with its error until dropped). */
int gd_sql_load_user(gd_catalog *cat, gd_store *store);

#endif
