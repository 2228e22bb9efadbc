/* expr.h -- SQL expressions as trees, and their evaluation.
 *
 * The SQL layer (sql/) parses an expression into a gd_expr tree and binds
 * its names; what runs it -- the engine maintaining a table, a pull query,
 * the push-query runner -- only calls gd_expr_eval. Evaluation reads three
 * things through a gd_eval context:
 *   - the input row: a column by its id, through the context's accessor
 *     (an enriched record read in place, or an array of values);
 *   - a group's aggregates and key values (HAVING, columns computed from
 *     aggregates such as COUNT(game_name) * 100.0 / COUNT(*));
 *   - the window bounds, and the clock for UNIX_TIMESTAMP().
 *
 * Values follow ksqlDB: any operation on NULL is NULL, except that a
 * comparison (=, <>, <, <=, >, >=, BETWEEN, IN) with NULL is FALSE, as
 * ksqlDB's generated code has it, IS [NOT] NULL and IS [NOT] DISTINCT FROM
 * see NULL as a value, AND and OR follow three-valued logic, and COALESCE,
 * IFNULL and CONCAT skip NULLs; a
 * division by zero, an overflow or a non-finite result is NULL, as ksqlDB
 * gives NULL for an expression that fails on one row. Integers are 64-bit
 * whatever their declared type (INTEGER is a type for the header only).
 * Strings a function makes are allocated in the context's scratch arena. */
#ifndef GD_EXPR_H
#define GD_EXPR_H

#include "../server/util.h"

/* The ARRAY and MAP types are those of the aggregates that return one
 * (TOPK, COLLECT_LIST, HISTOGRAM, ...): a column may hold one, and be
 * selected; no operator or function takes one (sql/plan.c refuses it). */
typedef enum {
    GD_T_STRING,
    GD_T_BIGINT,
    GD_T_INTEGER,
    GD_T_DOUBLE,
    GD_T_BOOLEAN,
    GD_T_NULL,
    GD_T_ARRAY_STRING, /* ARRAY<element>, in the order of the scalar types above */
    GD_T_ARRAY_BIGINT,
    GD_T_ARRAY_INTEGER,
    GD_T_ARRAY_DOUBLE,
    GD_T_ARRAY_BOOLEAN,
    GD_T_MAP_STRING_BIGINT, /* HISTOGRAM's */
} gd_coltype;
const char *gd_coltype_name(gd_coltype t);
static inline bool gd_coltype_collection(gd_coltype t) { return t >= GD_T_ARRAY_STRING; }
/* ARRAY<t> of a scalar type t (not NULL). */
static inline gd_coltype gd_coltype_array_of(gd_coltype t) { return (gd_coltype)(GD_T_ARRAY_STRING + t); }
/* An ARRAY's element type, a MAP's value type. */
static inline gd_coltype gd_coltype_member(gd_coltype t)
{
    return t == GD_T_MAP_STRING_BIGINT ? GD_T_BIGINT : (gd_coltype)(t - GD_T_ARRAY_STRING);
}
/* The common type of two (comparison, CASE, COALESCE): a NULL takes the
 * other's, numbers widen to BIGINT or DOUBLE; false when there is none. */
bool gd_coltype_unify(gd_coltype a, gd_coltype b, gd_coltype *out);
static inline bool gd_coltype_numeric(gd_coltype t)
{
    return t == GD_T_BIGINT || t == GD_T_INTEGER || t == GD_T_DOUBLE;
}

typedef enum {
    /* leaves */
    GD_E_LIT,    /* lit */
    GD_E_COL,    /* input column `index` */
    GD_E_AGG,    /* the group's aggregate `index` */
    GD_E_KEY,    /* the group's key column `index` */
    GD_E_WSTART, /* the group's window bounds */
    GD_E_WEND,
    GD_E_NOW, /* UNIX_TIMESTAMP() */
    /* operators: args[0..nargs) */
    GD_E_NEG,
    GD_E_NOT,
    GD_E_ADD,
    GD_E_SUB,
    GD_E_MUL,
    GD_E_DIV,
    GD_E_MOD,
    GD_E_EQ,
    GD_E_NE,
    GD_E_LT,
    GD_E_LE,
    GD_E_GT,
    GD_E_GE,
    GD_E_AND,
    GD_E_OR,
    GD_E_IS_NULL,  /* `negated`: IS NOT NULL */
    GD_E_IN,       /* args[0] IN (args[1..]); `negated` */
    GD_E_BETWEEN,  /* args[0] BETWEEN args[1] AND args[2]; `negated` */
    GD_E_LIKE,     /* args[0] LIKE args[1] [ESCAPE args[2], a one-character literal]; `negated` */
    GD_E_DISTINCT, /* args[0] IS DISTINCT FROM args[1]; `negated`: IS NOT DISTINCT FROM */
    GD_E_CASE,     /* WHEN args[2i] THEN args[2i+1] ..., ELSE args[n-1] when `has_else` */
    GD_E_CAST,     /* args[0] to `type` */
    GD_E_CALL,     /* scalar function `index` (store/func.h) */
    GD_E_FILTER,   /* an ad hoc filter of a dashboard: args[0] `index` (gd_filter_op) args[1], see below */
    /* before binding (parser output only) */
    GD_E_NAME,     /* a column by name: `name`, qualified by `qualifier` */
    GD_E_AGGCALL,  /* an aggregate by name (`name`), args or `star` */
    GD_E_STAR,     /* * or alias.* in a select list */
} gd_expr_op;

/* An ad hoc filter's operator (Grafana's filters). The node compares
 * args[0] with the text args[1] (a STRING literal; args[2] the same as a
 * DOUBLE, or NULL when it is not a number) as dashboards do: a NULL value
 * passes only != and !~; a string compares with the text by bytes (= and
 * != by equality); any other value is a number for = and != (equal to the
 * text's number), and for < and > when the text is a number, else its
 * text (as CAST gives it) compares by bytes; =~ and !~ match the value's
 * text whole with the regex `re` (server/regex.h), which the node's owner
 * compiled and frees. */
typedef enum { GD_FILTER_EQ, GD_FILTER_NE, GD_FILTER_LT, GD_FILTER_GT, GD_FILTER_MATCH, GD_FILTER_NOT_MATCH } gd_filter_op;

/* The size of the trees the SQL layer builds: sql/parse.c refuses a
 * statement whose expressions nest deeper (in the text or in the tree,
 * where a chain a + b + c is a level an operator) or hold more nodes in
 * all; sql/plan.c refuses a bound tree past them (a derived stream's
 * columns put in where they are named, each use counted). Every walk of a
 * tree -- gd_expr_eval, gd_expr_any, the planner's -- recurses on it, and
 * these bounds are what keeps that within any thread's stack. */
enum { GD_EXPR_MAX_DEPTH = 64, GD_EXPR_MAX_NODES = 2048 };

typedef struct gd_expr gd_expr;
struct gd_expr {
    gd_expr_op op;
    gd_coltype type; /* of the result, set when bound */
    bool negated, has_else, star, distinct;
    int index;
    uint16_t nargs;
    uint16_t height; /* levels from here down, as parsed (a leaf is 1) */
    gd_expr **args;
    gd_value lit;
    gd_str name, qualifier;
    uint32_t line, col; /* where it starts in the statement (1-based) */
    /* set when bound: whether the value is personal data, and the column
     * of the statement it comes from (named in refusals) */
    gd_pii pii;
    const char *pii_from;
    struct gd_regex *re; /* GD_E_FILTER =~ and !~: the pattern, compiled */
    /* a literal argument of a function: what the function made of it when
     * bound (a time zone, store/func.c) */
    const void *prep;
};

/* What an expression reads. */
typedef struct {
    gd_value (*column)(const void *row, int index);
    const void *row;
    const gd_value *aggs, *keys;
    int64_t window_start, window_end;
    int64_t now_ms;
    gd_arena *scratch;
} gd_eval;

/* An accessor for rows held as an array of values. */
gd_value gd_value_array_column(const void *row, int index);

gd_value gd_expr_eval(const gd_expr *e, const gd_eval *ctx);
/* A predicate: true only when it evaluates to TRUE (NULL is not). */
bool gd_expr_true(const gd_expr *e, const gd_eval *ctx);


/* Comparison of two non-null values of comparable types: <0, 0, >0. */
int gd_value_cmp(gd_value a, gd_value b);
/* Value to type as CAST does (NULL when it does not convert). */
gd_value gd_value_cast(gd_value v, gd_coltype to, gd_arena *scratch);
/* A value as text, as CAST(v AS STRING) gives it (appended to b). */
void gd_value_text(gd_value v, gd_buf *b);

/* Values made by functions (store/func.c) and operators: a non-finite
 * DOUBLE is NULL. */
static inline gd_value gd_int_value(int64_t i) { return (gd_value){.t = GD_V_INT, .i = i}; }
static inline gd_value gd_dbl_value(double d)
{
    return __builtin_isfinite(d) ? (gd_value){.t = GD_V_DBL, .d = d} : (gd_value){.t = GD_V_NULL};
}
/* b's text as a string in the scratch arena; b is freed. */
gd_value gd_value_from_buf(gd_buf *b, gd_arena *scratch);
/* The bytes of the UTF-8 character at p (1 for a byte that starts none). */
size_t gd_char_len(const char *p, const char *end);

/* Walks e depth first, calling fn on every node until it returns true. */
bool gd_expr_any(const gd_expr *e, bool (*fn)(const gd_expr *e, void *ctx), void *ctx);

/* Whether e is at most `depth` levels deep and its walk visits at most
 * *budget nodes (a subtree shared by several parents counts once a use);
 * *budget is decreased by what was visited. Stops at the first excess, so
 * it costs at most the budget and the depth. */
bool gd_expr_fits(const gd_expr *e, int depth, int *budget);

#endif
