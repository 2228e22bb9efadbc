/* plan.c -- statements into what runs: names bound to the catalog, types
 * checked, aggregations compiled into table definitions.
 *
 * A SELECT reads one source. Its names are bound in a scope: the source's
 * columns, each an expression over the rows the query will really read --
 * a column of a stream (E_COL by the column's id), a column of a table row
 * (E_COL by its place: keys, WINDOWSTART, WINDOWEND, values), or, for a
 * derived stream, the expression that defines the column over the stream
 * it derives from. A derived stream is thus inlined: a query, a table or
 * another derived stream over it reads its base, with its WHERE added.
 * PARTITION BY changes no row, only the schema: its expressions become the
 * stream's key columns, put first (select_list says how, after ksqlDB); a
 * derived stream's events are not Kafka messages, so there is no message
 * key to set and nothing to repartition.
 * A REST pull (gd_sql_plan_rows) is planned over the same scope from its
 * parameters rather than from a statement, so it runs in exec.c like SQL's;
 * so is a Grafana target (gd_sql_plan_dashboard): its payload's key values
 * and ad hoc filters are bound as the WHERE (an ad hoc filter is one
 * GD_E_FILTER node, since dashboards compare text and numbers in their own
 * way and match regexes, neither of which SQL's operators do), and using a
 * personal column there is the plan's pii_use, as for SQL.
 * A filtered SSE subscription (gd_sql_plan_filters) becomes a WHERE over
 * the members of its stream's events (not inlined into a derived stream's
 * base: it passes those events on as they are), run by run.c like SQL's
 * push queries.
 *
 * An aggregation (GROUP BY, or an aggregate in the select list) compiles
 * into a gd_tabledef, whatever runs it -- the engine for CREATE TABLE AS
 * SELECT and the built-in tables, the push-query runner for a transient
 * one: GROUP BY expressions become keys; a select item that is a single
 * aggregate becomes a column with a slot; any other item an expression
 * over keys and slots, reusing the slot of an identical aggregate or a
 * hidden one. The output of a push aggregation is then a projection of
 * that table's rows.
 *
 * Personal data is carried as the binder goes: a scope column holds the
 * attribute its entry declares (PII on a source column, or what its own
 * definition computed), a node computed from a personal argument is
 * personal (GD_PII_DERIVED), LATEST_BY_OFFSET of a copy is a copy, any
 * other aggregate of personal data derived. The output columns, a table's
 * keys and values and a derived stream's columns take the attribute of
 * their expressions, so it is kept with every definition and recomputed
 * from builtin.sql at each start. A statement that computes on personal
 * data or uses it to decide something -- a function or operator over it
 * (every comparison, LIKE, IN, IS NULL, so every WHERE, HAVING and WHEN),
 * an aggregate other than LATEST_BY_OFFSET, a GROUP BY key, an ORDER BY
 * column -- records the first such use in the plan; the API refuses it to
 * a reader without the pii scope, who may only select personal columns as
 * they are (masked). What a stored definition computed is such a column. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../ingest/ingest.h"
#include "../server/regex.h"
#include "../store/func.h"
#include "sql.h"

/* ---- scope ---- */

typedef struct {
    const gd_catalog_entry *entry; /* as named in FROM */
    const gd_catalog_entry *reads; /* what rows are really read (the base of a derived stream) */
    gd_str alias;
    int ncols;
    const char **names;
    gd_coltype *types;
    gd_expr **exprs; /* each column over the rows read */
    gd_pii *pii;     /* each column's personal-data attribute */
    bool table;
    int windowed_at; /* a table's WINDOWSTART position, -1 */
} scope;

typedef struct {
    const gd_catalog *cat;
    gd_arena *arena;
    gd_sql_error *err;
    bool failed;
    scope sc;
    /* binding the output of an aggregation */
    gd_tabledef *def;
    gd_expr *key_exprs[GD_MAX_KEYS]; /* bound over the input */
    gd_expr *agg_exprs[GD_MAX_COLS]; /* each slot's aggregate call, bound, for reuse */
    const char *slot_pii_from[GD_MAX_COLS]; /* the personal column each slot reads */
    bool in_aggregate;               /* binding an aggregate's argument */
    const gd_expr *at;               /* the statement's node being bound: where errors point */
    bool definition;                 /* a CREATE ... AS SELECT: RANDOM() is refused */
    gd_pii_use pii_use;              /* the first use of personal data to decide something */
} binder;

static void *alloc(binder *b, size_t n)
{
    void *p = gd_arena_alloc(b->arena, n);
    memset(p, 0, n);
    return p;
}

char *gd_sql_lower_dup(gd_arena *a, gd_str s)
{
    char *p = gd_arena_alloc(a, s.len + 1);
    for (uint32_t i = 0; i < s.len; i++) p[i] = (char)(s.p[i] >= 'A' && s.p[i] <= 'Z' ? s.p[i] + 32 : s.p[i]);
    p[s.len] = 0;
    return p;
}

static bool fail(binder *b, const gd_expr *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(binder *b, const gd_expr *at, const char *fmt, ...)
{
    if (b->failed) return false;
    b->failed = true;
    if (!at || !at->line) at = b->at; /* a bound column has no place of its own */
    va_list ap;
    va_start(ap, fmt);
    gd_sql_fail_at(b->err, at ? at->line : 0, at ? at->col : 0, fmt, ap);
    va_end(ap);
    return false;
}

static char ascii_upper(char c) { return c >= 'a' && c <= 'z' ? (char)(c - 32) : c; }

void gd_sql_upper(const char *name, gd_buf *out)
{
    for (const char *p = name; *p; p++) gd_buf_putc(out, ascii_upper(*p));
}

/* name in capitals, in the arena: once per column of every plan, so written
 * in place rather than through a growing buffer and two copies. */
static const char *upper_dup(gd_arena *a, const char *name)
{
    size_t n = strlen(name);
    char *z = gd_arena_alloc(a, n + 1);
    for (size_t i = 0; i <= n; i++) z[i] = ascii_upper(name[i]);
    return z;
}

/* Records the first use of personal data x to decide something (how:
 * "filtering or comparing on", ...). */
static void note_pii_use(binder *b, const gd_expr *x, const char *how)
{
    if (x->pii && !b->pii_use.column) b->pii_use = (gd_pii_use){x->pii_from, how};
}

int gd_sql_columns(const gd_catalog_entry *e, gd_sql_column *out, int max)
{
    int n = 0;
#define PUT(nm, ty, k, w, pii)                                                                                         \
    do {                                                                                                               \
        if (n < max) out[n] = (gd_sql_column){nm, ty, k, w, pii};                                                      \
        n++;                                                                                                           \
    } while (0)
    if (!e->is_table) {
        for (int i = 0; i < e->ncols; i++) PUT(e->cols[i].name, e->cols[i].type, i < e->nkeys, false, e->cols[i].pii);
        return n;
    }
    const gd_tabledef *t = e->table;
    for (int k = 0; k < t->nkeys; k++) PUT(t->keys[k].name, t->keys[k].type, true, false, t->keys[k].pii);
    if (gd_table_windowed(t)) {
        PUT("windowstart", GD_T_BIGINT, false, true, GD_PII_NONE);
        PUT("windowend", GD_T_BIGINT, false, true, GD_PII_NONE);
    }
    for (int c = 0; c < t->ncols; c++) PUT(t->cols[c].name, t->cols[c].type, false, false, t->cols[c].pii);
#undef PUT
    return n;
}

static gd_expr *new_col(binder *b, int index, gd_coltype type)
{
    gd_expr *e = alloc(b, sizeof *e);
    e->op = GD_E_COL;
    e->index = index;
    e->type = type;
    return e;
}

static bool open_scope(binder *b, const gd_sql_select *q)
{
    const gd_catalog_entry *e = gd_catalog_find(b->cat, q->from);
    const gd_catalog_entry *quarantined = e ? NULL : gd_catalog_find_quarantined(b->cat, q->from);
    if (quarantined) {
        b->failed = true;
        gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT,
                    "line %u:%u: %s is in ERROR: its stored definition did not compile at start (%s); DROP it",
                    q->from_line, q->from_col, quarantined->name, quarantined->error);
        return false;
    }
    if (!e) {
        b->failed = true;
        gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT, "line %u:%u: %.*s does not exist (SHOW STREAMS and SHOW TABLES list what does)",
                    q->from_line, q->from_col, (int)q->from.len, q->from.p);
        return false;
    }
    scope *s = &b->sc;
    s->entry = s->reads = e;
    s->alias = q->from_alias;
    s->windowed_at = -1;
    gd_sql_column cols[GD_MAX_KEYS + 2 + GD_MAX_COLS + 64];
    int n = gd_sql_columns(e, cols, (int)(sizeof cols / sizeof cols[0]));
    s->ncols = n;
    s->names = alloc(b, sizeof *s->names * (size_t)n);
    s->types = alloc(b, sizeof *s->types * (size_t)n);
    s->exprs = alloc(b, sizeof *s->exprs * (size_t)n);
    s->pii = alloc(b, sizeof *s->pii * (size_t)n);
    s->table = e->is_table;
    for (int i = 0; i < n; i++) {
        s->names[i] = cols[i].name;
        s->types[i] = cols[i].type;
        if (cols[i].window && s->windowed_at < 0) s->windowed_at = i;
        s->pii[i] = cols[i].pii;
        if (e->is_table) s->exprs[i] = new_col(b, i, cols[i].type);
        else if (e->kind == GD_SRC_DERIVED) s->exprs[i] = e->proj[i];
        else s->exprs[i] = new_col(b, e->cols[i].id, cols[i].type);
    }
    if (!e->is_table && e->kind == GD_SRC_DERIVED) s->reads = e->base;
    return true;
}

/* ---- binding ---- */

static bool names_eq(gd_str a, const char *b) { return strlen(b) == a.len && !strncasecmp(a.p, b, a.len); }

static bool expr_equal(const gd_expr *a, const gd_expr *b)
{
    if (a == b) return true;
    if (!a || !b || a->op != b->op || a->nargs != b->nargs || a->index != b->index || a->negated != b->negated ||
        a->has_else != b->has_else || a->star != b->star || a->distinct != b->distinct)
        return false;
    if (a->op == GD_E_CAST && a->type != b->type) return false;
    if (a->op == GD_E_LIT) {
        if (a->lit.t != b->lit.t) return false;
        if (a->lit.t == GD_V_STR) return gd_str_eq(a->lit.s, b->lit.s);
        if (a->lit.t == GD_V_DBL) return a->lit.d == b->lit.d;
        return a->lit.t == GD_V_NULL || a->lit.i == b->lit.i;
    }
    if ((a->op == GD_E_NAME || a->op == GD_E_CALL) && !gd_str_eq_nocase(a->name, b->name)) return false;
    for (int i = 0; i < a->nargs; i++)
        if (!expr_equal(a->args[i], b->args[i])) return false;
    return true;
}

/* A node of a bound tree, in the binder's arena (the definition's, which
 * outlives the statement's text): names are not kept, literals' strings
 * are copied. */
static gd_expr *copy_node(binder *b, const gd_expr *e)
{
    gd_expr *c = alloc(b, sizeof *c);
    *c = *e;
    c->name = c->qualifier = (gd_str){"", 0};
    c->args = e->nargs ? alloc(b, sizeof *c->args * e->nargs) : NULL;
    if (e->op == GD_E_LIT && e->lit.t == GD_V_STR) c->lit.s = gd_arena_strdup(b->arena, e->lit.s);
    return c;
}

static const char *type_name(gd_coltype t) { return gd_coltype_name(t); }

/* An argument e of node parent must fit (ok); errors point at e, or at
 * parent when e is a bound column with no place of its own. */
static bool want_type(binder *b, const gd_expr *parent, const gd_expr *e, bool ok, const char *what)
{
    if (ok || e->type == GD_T_NULL) return true;
    return fail(b, e->line ? e : parent, "%s, not %s", what, type_name(e->type));
}

/* A call: its arguments against the function's parameters (store/func.c). */
static bool check_function(binder *b, gd_expr *e)
{
    char why[300];
    int at;
    if (gd_fn_check(e, b->arena, &at, why, sizeof why)) return true;
    const gd_expr *arg = at >= 0 ? e->args[at] : e;
    return fail(b, arg->line ? arg : e, "%s", why);
}

/* x IN (1, '2'): as ksqlDB does, a literal of another type in the list
 * stands for the value of x's type it converts to ('2' for 2); one that
 * does not convert is left to fail the type check. */
static void coerce_in_literals(binder *b, gd_expr *e)
{
    gd_coltype want = e->args[0]->type;
    if (want == GD_T_NULL) return;
    for (int i = 1; i < e->nargs; i++) {
        gd_expr *v = e->args[i];
        if (v->op != GD_E_LIT || v->type == GD_T_NULL || v->type == want ||
            (gd_coltype_numeric(v->type) && gd_coltype_numeric(want)))
            continue;
        gd_value c = gd_value_cast(v->lit, want, b->arena);
        if (c.t == GD_V_NULL) continue;
        v->lit = c;
        v->type = want;
    }
}

/* Sets e's type from its bound arguments; false (and an error) when they
 * do not fit. */
static bool check_node(binder *b, gd_expr *e)
{
    gd_expr **a = e->args;
    switch (e->op) {
    case GD_E_NEG:
        e->type = a[0]->type;
        return want_type(b, e, a[0], gd_coltype_numeric(a[0]->type), "'-' takes a number");
    case GD_E_NOT:
        e->type = GD_T_BOOLEAN;
        return want_type(b, e, a[0], a[0]->type == GD_T_BOOLEAN, "NOT takes a BOOLEAN");
    case GD_E_AND:
    case GD_E_OR:
        e->type = GD_T_BOOLEAN;
        return want_type(b, e, a[0], a[0]->type == GD_T_BOOLEAN, "AND and OR take BOOLEANs") &&
               want_type(b, e, a[1], a[1]->type == GD_T_BOOLEAN, "AND and OR take BOOLEANs");
    case GD_E_ADD:
        if (a[0]->type == GD_T_STRING && a[1]->type == GD_T_STRING) {
            e->type = GD_T_STRING;
            return true;
        }
        /* fall through */
    case GD_E_SUB:
    case GD_E_MUL:
    case GD_E_DIV:
    case GD_E_MOD: {
        if (!want_type(b, e, a[0], gd_coltype_numeric(a[0]->type), "arithmetic takes numbers") ||
            !want_type(b, e, a[1], gd_coltype_numeric(a[1]->type), "arithmetic takes numbers"))
            return false;
        gd_coltype x = a[0]->type == GD_T_NULL ? a[1]->type : a[0]->type, y = a[1]->type == GD_T_NULL ? x : a[1]->type;
        e->type = x == GD_T_DOUBLE || y == GD_T_DOUBLE ? GD_T_DOUBLE
                  : x == GD_T_BIGINT || y == GD_T_BIGINT ? GD_T_BIGINT
                  : x == GD_T_NULL                       ? GD_T_NULL
                                                         : GD_T_INTEGER;
        return true;
    }
    case GD_E_EQ:
    case GD_E_NE:
    case GD_E_LT:
    case GD_E_LE:
    case GD_E_GT:
    case GD_E_GE:
    case GD_E_LIKE:
    case GD_E_BETWEEN:
    case GD_E_DISTINCT:
    case GD_E_IN: {
        e->type = GD_T_BOOLEAN;
        if (e->op == GD_E_IN) coerce_in_literals(b, e);
        gd_coltype t = a[0]->type;
        for (int i = 1; i < e->nargs; i++)
            if (!gd_coltype_unify(t, a[i]->type, &t))
                return fail(b, a[i], "cannot compare %s with %s", type_name(a[0]->type), type_name(a[i]->type));
        if (e->op == GD_E_LIKE) return want_type(b, e, a[0], a[0]->type == GD_T_STRING, "LIKE takes STRINGs");
        return true;
    }
    case GD_E_IS_NULL: e->type = GD_T_BOOLEAN; return true;
    case GD_E_CASE: {
        int pairs = (e->nargs - e->has_else) / 2;
        gd_coltype t = GD_T_NULL;
        for (int i = 0; i < pairs; i++) {
            if (!want_type(b, e, a[2 * i], a[2 * i]->type == GD_T_BOOLEAN, "WHEN takes a BOOLEAN condition")) return false;
            if (!gd_coltype_unify(t, a[2 * i + 1]->type, &t))
                return fail(b, a[2 * i + 1], "CASE results must share a type (%s and %s do not)", type_name(t),
                            type_name(a[2 * i + 1]->type));
        }
        if (e->has_else && !gd_coltype_unify(t, a[e->nargs - 1]->type, &t))
            return fail(b, a[e->nargs - 1], "CASE results must share a type (%s and %s do not)", type_name(t),
                        type_name(a[e->nargs - 1]->type));
        e->type = t;
        return true;
    }
    case GD_E_CAST: {
        gd_coltype from = a[0]->type, to = e->type;
        bool ok = from == GD_T_NULL || to == GD_T_STRING || from == to ||
                  (gd_coltype_numeric(to) && (gd_coltype_numeric(from) || from == GD_T_STRING)) ||
                  (to == GD_T_BOOLEAN && from == GD_T_STRING);
        return ok || fail(b, e, "cannot CAST %s AS %s", type_name(from), type_name(to));
    }
    case GD_E_CALL: return check_function(b, e);
    default: return true;
    }
}

static gd_expr *bind_input(binder *b, const gd_expr *e);

/* An operator (or function `index`) with its arguments bound by bind,
 * checked. */
static gd_expr *bind_operator(binder *b, const gd_expr *e, gd_expr *(*bind)(binder *, const gd_expr *), int index)
{
    gd_expr *c = copy_node(b, e);
    c->index = index;
    for (int i = 0; i < e->nargs; i++) {
        if (!(c->args[i] = bind(b, e->args[i]))) return NULL;
        if (c->args[i]->pii && !c->pii) c->pii = GD_PII_DERIVED, c->pii_from = c->args[i]->pii_from;
        if (gd_coltype_collection(c->args[i]->type) && e->op != GD_E_IS_NULL) {
            fail(b, e->args[i], "ARRAY and MAP values (here %s) can be selected and tested with IS [NOT] NULL; gamingd "
                                "has no operator or function over them", type_name(c->args[i]->type));
            return NULL;
        }
    }
    if (!check_node(b, c)) return NULL;
    note_pii_use(b, c, c->type == GD_T_BOOLEAN ? "filtering or comparing on" : "computing on");
    return c;
}

/* A name in the scope: the column's expression. */
static gd_expr *resolve(binder *b, const gd_expr *e)
{
    scope *s = &b->sc;
    if (e->qualifier.p && !(s->alias.p && gd_str_eq_nocase(e->qualifier, s->alias)) &&
        !names_eq(e->qualifier, s->entry->name)) {
        fail(b, e, "'%.*s' is not the source of this query (%s%s%.*s is)", (int)e->qualifier.len, e->qualifier.p,
             s->entry->name, s->alias.p ? " AS " : "", (int)s->alias.len, s->alias.p ? s->alias.p : "");
        return NULL;
    }
    for (int i = 0; i < s->ncols; i++)
        if (names_eq(e->name, s->names[i])) {
            if (!s->pii[i]) return s->exprs[i];
            gd_expr *x = alloc(b, sizeof *x); /* the column's expression, marked */
            *x = *s->exprs[i];
            x->pii = s->pii[i];
            x->pii_from = s->names[i];
            return x;
        }
    if (!s->table && (names_eq(e->name, "ROWTIME"))) { /* the record's time: its event time */
        for (int i = 0; i < s->ncols; i++)
            if (!strcmp(s->names[i], "event_timestamp") || !strcmp(s->names[i], "activity_timestamp"))
                return s->exprs[i];
    }
    if (names_eq(e->name, "WINDOWSTART") || names_eq(e->name, "WINDOWEND")) {
        fail(b, e, "%.*s exists only in windowed aggregations and windowed tables", (int)e->name.len, e->name.p);
        return NULL;
    }
    gd_buf list = {0};
    for (int i = 0; i < s->ncols && list.len < 300; i++) gd_buf_printf(&list, "%s%s", i ? ", " : "", s->names[i]);
    fail(b, e, "column '%.*s' cannot be resolved: %s has %.*s", (int)e->name.len, e->name.p, s->entry->name,
         (int)list.len, list.p ? list.p : "no columns");
    gd_buf_free(&list);
    return NULL;
}

typedef enum {
    AGG_NONE,
    AGG_COUNT,
    AGG_COUNT_DISTINCT,
    AGG_SUM,
    AGG_AVG,
    AGG_MIN,
    AGG_MAX,
    AGG_LATEST,
    AGG_EARLIEST,
    AGG_TOPK,
    AGG_TOPK_DISTINCT,
    AGG_COLLECT_LIST,
    AGG_COLLECT_SET,
    AGG_HISTOGRAM
} agg_kind;

static const struct {
    const char *name;
    agg_kind kind;
} aggregates[] = {{"COUNT", AGG_COUNT}, {"COUNT_DISTINCT", AGG_COUNT_DISTINCT}, {"SUM", AGG_SUM}, {"AVG", AGG_AVG},
                  {"MIN", AGG_MIN},     {"MAX", AGG_MAX},   {"LATEST_BY_OFFSET", AGG_LATEST},
                  {"EARLIEST_BY_OFFSET", AGG_EARLIEST}, {"TOPK", AGG_TOPK}, {"TOPKDISTINCT", AGG_TOPK_DISTINCT},
                  {"COLLECT_LIST", AGG_COLLECT_LIST}, {"COLLECT_SET", AGG_COLLECT_SET}, {"HISTOGRAM", AGG_HISTOGRAM}};

static agg_kind aggregate_named(gd_str name)
{
    for (size_t i = 0; i < sizeof aggregates / sizeof aggregates[0]; i++)
        if (names_eq(name, aggregates[i].name)) return aggregates[i].kind;
    return AGG_NONE;
}


/* ksqlDB's aggregates that are expressions over the ones above (derived_aggregate). */
static const char *const composite_aggregates[] = {"STDDEV_SAMPLE", "STDDEV_SAMP", "CORRELATION"};
enum { NCOMPOSITE = sizeof composite_aggregates / sizeof composite_aggregates[0] };

static bool composite_aggregate(gd_str name)
{
    for (int i = 0; i < NCOMPOSITE; i++)
        if (names_eq(name, composite_aggregates[i])) return true;
    return false;
}

const char *gd_sql_aggregate_at(int i)
{
    int n = (int)(sizeof aggregates / sizeof aggregates[0]);
    return i < 0 ? NULL : i < n ? aggregates[i].name : i < n + NCOMPOSITE ? composite_aggregates[i - n] : NULL;
}

/* ksqlDB aggregates gamingd does not have, to name them in the error. */
static bool other_aggregate(gd_str name)
{
    static const char *const names[] = {"ATTR"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names_eq(name, names[i])) return true;
    return false;
}

static bool has_aggregate_fn(const gd_expr *e, void *ctx)
{
    (void)ctx;
    return e->op == GD_E_CALL &&
           (aggregate_named(e->name) != AGG_NONE || composite_aggregate(e->name) || other_aggregate(e->name));
}
static bool has_aggregate(const gd_expr *e) { return gd_expr_any(e, has_aggregate_fn, NULL); }

static bool is_column_ref(const gd_expr *e, void *ctx)
{
    (void)ctx;
    return e->op == GD_E_NAME;
}

/* WINDOWSTART or WINDOWEND, unbound. */
static bool is_window_bound(const gd_expr *e, void *ctx)
{
    (void)ctx;
    return e->op == GD_E_NAME && !e->qualifier.p && (names_eq(e->name, "WINDOWSTART") || names_eq(e->name, "WINDOWEND"));
}

/* Binds a scalar function call's arguments and checks it. */
static gd_expr *bind_call(binder *b, const gd_expr *e, gd_expr *(*bind)(binder *, const gd_expr *))
{
    if (aggregate_named(e->name) != AGG_NONE || other_aggregate(e->name)) {
        fail(b, e, "aggregate %.*s is not allowed here", (int)e->name.len, e->name.p);
        return NULL;
    }
    if (names_eq(e->name, "UNIX_TIMESTAMP")) {
        if (e->nargs) {
            fail(b, e, "UNIX_TIMESTAMP takes no argument here (epoch milliseconds are BIGINTs already)");
            return NULL;
        }
        gd_expr *c = copy_node(b, e);
        c->op = GD_E_NOW;
        c->type = GD_T_BIGINT;
        return c;
    }
    int index;
    const gd_fn *f = gd_fn_lookup(e->name, &index);
    if (!f) {
        fail(b, e, "function %.*s is not supported by gamingd", (int)e->name.len, e->name.p);
        return NULL;
    }
    if (e->star || e->distinct) {
        fail(b, e, "%s takes no %s", f->name, e->star ? "*" : "DISTINCT");
        return NULL;
    }
    if (f->flags & GD_FN_RANDOM && b->definition) {
        fail(b, e, "%s is not allowed in a CREATE ... AS SELECT: a stored table or stream must give the same values "
                   "to every reader and at every start", f->name);
        return NULL;
    }
    if (f->min && f->params[0].type == GD_FP_UNIT && e->nargs && e->args[0]->op == GD_E_NAME && !e->args[0]->qualifier.p) {
        gd_expr *c = alloc(b, sizeof *c), *unit = alloc(b, sizeof *unit); /* TIMESTAMPADD(MINUTES, ...): a word */
        *c = *e;
        c->args = alloc(b, sizeof *c->args * e->nargs);
        memcpy(c->args, e->args, sizeof *c->args * e->nargs);
        *unit = *e->args[0];
        unit->op = GD_E_LIT;
        unit->type = GD_T_STRING;
        unit->lit = (gd_value){.t = GD_V_STR, .s = e->args[0]->name};
        c->args[0] = unit;
        e = c;
    }
    return bind_operator(b, e, bind, index);
}

/* Binds e over the input rows (no aggregates). */
static gd_expr *bind_input(binder *b, const gd_expr *e)
{
    if (b->failed) return NULL;
    b->at = e;
    switch (e->op) {
    case GD_E_LIT: return copy_node(b, e);
    case GD_E_NAME: return resolve(b, e);
    case GD_E_STAR: fail(b, e, "* is not allowed here"); return NULL;
    case GD_E_CALL: return bind_call(b, e, bind_input);
    default: return bind_operator(b, e, bind_input, e->index);
    }
}

/* ---- aggregations ---- */

static gd_agg slot_kind(agg_kind k, gd_coltype arg, gd_coltype *out)
{
    switch (k) {
    case AGG_COUNT: *out = GD_T_BIGINT; return GD_AGG_COUNT;
    case AGG_COUNT_DISTINCT: *out = GD_T_BIGINT; return GD_AGG_COUNT_DISTINCT;
    case AGG_SUM: /* gamingd sums whole numbers as BIGINT: no overflow at 2^31 */
        *out = arg == GD_T_DOUBLE ? GD_T_DOUBLE : GD_T_BIGINT;
        return arg == GD_T_DOUBLE ? GD_AGG_SUM_DBL : GD_AGG_SUM_INT;
    case AGG_AVG: *out = GD_T_DOUBLE; return GD_AGG_AVG;
    case AGG_MIN:
        *out = arg;
        return arg == GD_T_STRING ? GD_AGG_MIN_STR : arg == GD_T_DOUBLE ? GD_AGG_MIN_DBL : GD_AGG_MIN_INT;
    case AGG_MAX:
        *out = arg;
        return arg == GD_T_STRING ? GD_AGG_MAX_STR : arg == GD_T_DOUBLE ? GD_AGG_MAX_DBL : GD_AGG_MAX_INT;
    case AGG_LATEST: *out = arg; return arg == GD_T_STRING ? GD_AGG_LATEST : GD_AGG_LATEST_NUM;
    case AGG_EARLIEST: *out = arg; return arg == GD_T_STRING ? GD_AGG_EARLIEST : GD_AGG_EARLIEST_NUM;
    case AGG_TOPK: *out = gd_coltype_array_of(arg); return GD_AGG_TOPK;
    case AGG_TOPK_DISTINCT: *out = gd_coltype_array_of(arg); return GD_AGG_TOPK_DISTINCT;
    case AGG_COLLECT_LIST: *out = gd_coltype_array_of(arg); return GD_AGG_COLLECT_LIST;
    case AGG_COLLECT_SET: *out = gd_coltype_array_of(arg); return GD_AGG_COLLECT_SET;
    case AGG_HISTOGRAM: *out = GD_T_MAP_STRING_BIGINT; return GD_AGG_HISTOGRAM;
    default: return GD_AGG_COUNT_STAR;
    }
}

/* LATEST_BY_OFFSET / EARLIEST_BY_OFFSET's options: (x, ignoreNulls), or
 * the N-valued forms (x, N [, ignoreNulls]), an ARRAY of the last or first
 * N values (col->limit N); ignoreNulls a BOOLEAN literal, N an INTEGER one. */
static bool offset_options(binder *b, const gd_expr *call, gd_coldef *col)
{
    const gd_expr *o = call->args[1];
    if (o->op == GD_E_LIT && o->lit.t == GD_V_INT && call->nargs <= 3) {
        if (o->lit.i < 1 || o->lit.i > GD_LIST_MAX_ELEMS)
            return fail(b, o, "the N of %.*s is an INTEGER literal from 1 to %d", (int)call->name.len, call->name.p,
                        GD_LIST_MAX_ELEMS);
        col->limit = (uint16_t)o->lit.i;
        if (call->nargs == 2) return true;
        o = call->args[2];
    } else if (call->nargs != 2) {
        return fail(b, call, "%.*s takes (x), (x, ignoreNulls) or (x, N [, ignoreNulls])", (int)call->name.len,
                    call->name.p);
    }
    if (o->op == GD_E_LIT && o->lit.t == GD_V_BOOL) {
        col->keep_nulls = !o->lit.i;
        return true;
    }
    return fail(b, o, "ignoreNulls of %.*s is a BOOLEAN literal (TRUE or FALSE)", (int)call->name.len, call->name.p);
}

/* TOPK(x, k) and TOPKDISTINCT(x, k): k an INTEGER literal, 1 to
 * GD_LIST_MAX_ELEMS; ksqlDB's TOPK(x, other..., k), whose elements are
 * STRUCTs, is refused. */
static bool topk_size(binder *b, const gd_expr *call, gd_coldef *col)
{
    if (call->nargs > 2)
        return fail(b, call, "%.*s(x, other columns..., k) returns STRUCTs, a type gamingd does not have: use %.*s(x, k)",
                    (int)call->name.len, call->name.p, (int)call->name.len, call->name.p);
    if (call->nargs != 2) return fail(b, call, "%.*s takes two arguments: a column and k", (int)call->name.len, call->name.p);
    const gd_expr *k = call->args[1];
    if (k->op != GD_E_LIT || k->lit.t != GD_V_INT || k->lit.i < 1 || k->lit.i > GD_LIST_MAX_ELEMS)
        return fail(b, k, "the k of %.*s is an INTEGER literal from 1 to %d", (int)call->name.len, call->name.p,
                    GD_LIST_MAX_ELEMS);
    col->limit = (uint16_t)k->lit.i;
    return true;
}

/* The argument types ksqlDB's aggregates returning an ARRAY or a MAP take
 * (over gamingd's types): false with the error otherwise. */
static bool list_argument(binder *b, const gd_expr *call, agg_kind k, gd_coltype t)
{
    if (k == AGG_HISTOGRAM && t != GD_T_STRING)
        return fail(b, call, "HISTOGRAM takes a STRING, not %s", type_name(t));
    if ((k == AGG_TOPK || k == AGG_TOPK_DISTINCT) && !gd_coltype_numeric(t) && t != GD_T_STRING)
        return fail(b, call, "%.*s takes a number or a STRING, not %s", (int)call->name.len, call->name.p, type_name(t));
    return true;
}

/* Fills slot c of def from an aggregate call; false on a bad call. */
static bool make_slot(binder *b, const gd_expr *call, gd_coldef *col)
{
    agg_kind k = aggregate_named(call->name);
    if (k == AGG_NONE) return fail(b, call, "aggregate %.*s is not supported by gamingd", (int)call->name.len, call->name.p);
    if (k == AGG_COUNT && call->distinct) k = AGG_COUNT_DISTINCT;
    else if (call->distinct) return fail(b, call, "DISTINCT is only supported in COUNT(DISTINCT x)");
    if (call->star || (k == AGG_COUNT && !call->nargs)) { /* COUNT() counts rows, as COUNT(*) */
        if (k != AGG_COUNT) return fail(b, call, "only COUNT takes *");
        col->agg = GD_AGG_COUNT_STAR;
        col->type = GD_T_BIGINT;
        col->field = -1;
        return true;
    }
    bool by_offset = k == AGG_LATEST || k == AGG_EARLIEST, topk = k == AGG_TOPK || k == AGG_TOPK_DISTINCT;
    if (by_offset && call->nargs >= 2 && !offset_options(b, call, col)) return false;
    if (topk && !topk_size(b, call, col)) return false;
    if (!topk && k >= AGG_TOPK) col->limit = GD_LIST_MAX_ELEMS;
    if (call->nargs != 1 && !by_offset && !topk)
        return fail(b, call, "%.*s takes one argument", (int)call->name.len, call->name.p);
    if (has_aggregate(call->args[0])) return fail(b, call->args[0], "aggregates cannot be nested");
    gd_expr *arg = bind_input(b, call->args[0]);
    if (!arg) return false;
    col->pii = !arg->pii ? GD_PII_NONE : by_offset ? arg->pii : GD_PII_DERIVED; /* the latest email is an email */
    if (!by_offset) note_pii_use(b, arg, "aggregating");
    b->slot_pii_from[col - b->def->cols] = arg->pii_from;
    gd_coltype t = arg->type;
    if ((k == AGG_SUM || k == AGG_AVG) && !gd_coltype_numeric(t))
        return fail(b, call, "%.*s takes a number, not %s", (int)call->name.len, call->name.p, type_name(t));
    if ((k == AGG_MIN || k == AGG_MAX) && !gd_coltype_numeric(t) && t != GD_T_STRING)
        return fail(b, call, "%.*s takes a number or a STRING, not %s", (int)call->name.len, call->name.p,
                    type_name(t));
    if (t == GD_T_NULL) return fail(b, call, "%.*s of NULL has no type", (int)call->name.len, call->name.p);
    if (k >= AGG_TOPK && !list_argument(b, call, k, t)) return false;
    col->agg = slot_kind(k, t, &col->type);
    if (by_offset && col->limit) { /* the N-valued forms */
        col->agg = k == AGG_LATEST ? GD_AGG_LATEST_N : GD_AGG_EARLIEST_N;
        col->type = gd_coltype_array_of(t);
    }
    col->field = arg->op == GD_E_COL ? arg->index : -1;
    col->arg = arg->op == GD_E_COL ? NULL : arg;
    return true;
}

/* The slot holding an identical aggregate, or a new hidden one. */
static int slot_for(binder *b, const gd_expr *call)
{
    gd_tabledef *t = b->def;
    for (int c = 0; c < t->nslots; c++)
        if (b->agg_exprs[c] && expr_equal(b->agg_exprs[c], call)) return c;
    if (t->nslots == GD_MAX_COLS) {
        fail(b, call, "too many columns and aggregates (%d at most)", GD_MAX_COLS);
        return -1;
    }
    int c = t->nslots;
    if (!make_slot(b, call, &t->cols[c])) return -1;
    b->agg_exprs[c] = (gd_expr *)call;
    t->nslots++;
    return c;
}

/* ---- aggregates written as expressions over others ---- */

/* A node of a statement the planner writes, placed where `at` is. */
static gd_expr *made(binder *b, gd_expr_op op, int nargs, const gd_expr *at)
{
    gd_expr *e = alloc(b, sizeof *e);
    e->op = op;
    e->nargs = (uint16_t)nargs;
    e->args = nargs ? alloc(b, sizeof *e->args * (size_t)nargs) : NULL;
    e->index = -1;
    e->line = at->line;
    e->col = at->col;
    e->height = 1;
    return e;
}

static gd_expr *made2(binder *b, gd_expr_op op, gd_expr *l, gd_expr *r, const gd_expr *at)
{
    gd_expr *e = made(b, op, 2, at);
    e->args[0] = l, e->args[1] = r;
    return e;
}

static gd_expr *made_call(binder *b, const char *name, gd_expr *arg, const gd_expr *at)
{
    gd_expr *e = made(b, GD_E_CALL, 1, at);
    e->name = gd_str_c(name);
    e->args[0] = arg;
    return e;
}

/* x as a DOUBLE, NULL where `also` (if given) is NULL: one side of a pair. */
static gd_expr *made_double(binder *b, gd_expr *x, gd_expr *also, const gd_expr *at)
{
    gd_expr *c = made(b, GD_E_CAST, 1, at);
    c->type = GD_T_DOUBLE;
    c->args[0] = x;
    if (!also) return c;
    gd_expr *is_null = made(b, GD_E_IS_NULL, 1, at), *k = made(b, GD_E_CASE, 3, at), *null = made(b, GD_E_LIT, 0, at);
    is_null->args[0] = also;
    null->lit.t = GD_V_NULL;
    null->type = GD_T_NULL;
    k->has_else = true;
    k->args[0] = is_null, k->args[1] = null, k->args[2] = c;
    return k;
}

static gd_expr *made_number(binder *b, double d, const gd_expr *at)
{
    gd_expr *e = made(b, GD_E_LIT, 0, at);
    e->lit = (gd_value){.t = GD_V_DBL, .d = d};
    e->type = GD_T_DOUBLE;
    return e;
}

/* STDDEV_SAMPLE(x) and CORRELATION(x, y), as ksqlDB computes them, written
 * over COUNT and SUMs (slots the engine already keeps, shared with any
 * other use of the same sums):
 *   STDDEV_SAMPLE: M2 / (n - 1), M2 = sum(x^2) - sum(x)^2 / n, 0 below two
 *     values -- ksqlDB's StandardDeviationSampUdaf returns that, the
 *     sample variance (it takes no square root);
 *   CORRELATION: Pearson's (n sum(xy) - sum(x) sum(y)) / sqrt((n sum(x^2) -
 *     sum(x)^2) (n sum(y^2) - sum(y)^2)) over the rows where both are set;
 *     where ksqlDB's division gives NaN, gamingd's non-finite result is NULL. */
static gd_expr *derived_aggregate(binder *b, const gd_expr *call)
{
    bool stddev = !names_eq(call->name, "CORRELATION");
    if (call->nargs != (stddev ? 1 : 2) || call->star || call->distinct) {
        fail(b, call, "%.*s takes %s", (int)call->name.len, call->name.p, stddev ? "one number" : "two numbers");
        return NULL;
    }
    gd_expr *x = made_double(b, call->args[0], stddev ? NULL : call->args[1], call);
    gd_expr *n = made_call(b, "COUNT", x, call), *sx = made_call(b, "SUM", x, call);
    gd_expr *sxx = made_call(b, "SUM", made2(b, GD_E_MUL, x, x, call), call);
    if (stddev) {
        gd_expr *m2 = made2(b, GD_E_SUB, sxx, made2(b, GD_E_DIV, made2(b, GD_E_MUL, sx, sx, call), n, call), call);
        gd_expr *k = made(b, GD_E_CASE, 3, call);
        k->has_else = true;
        k->args[0] = made2(b, GD_E_LT, n, made_number(b, 2, call), call);
        k->args[1] = made_number(b, 0, call);
        k->args[2] = made2(b, GD_E_DIV, m2, made2(b, GD_E_SUB, n, made_number(b, 1, call), call), call);
        return k;
    }
    gd_expr *y = made_double(b, call->args[1], call->args[0], call);
    gd_expr *sy = made_call(b, "SUM", y, call), *syy = made_call(b, "SUM", made2(b, GD_E_MUL, y, y, call), call);
    gd_expr *sxy = made_call(b, "SUM", made2(b, GD_E_MUL, x, y, call), call);
    gd_expr *num = made2(b, GD_E_SUB, made2(b, GD_E_MUL, n, sxy, call), made2(b, GD_E_MUL, sx, sy, call), call);
    gd_expr *dx = made2(b, GD_E_SUB, made2(b, GD_E_MUL, n, sxx, call), made2(b, GD_E_MUL, sx, sx, call), call);
    gd_expr *dy = made2(b, GD_E_SUB, made2(b, GD_E_MUL, n, syy, call), made2(b, GD_E_MUL, sy, sy, call), call);
    return made2(b, GD_E_DIV, num, made_call(b, "SQRT", made2(b, GD_E_MUL, dx, dy, call), call), call);
}

/* Binds e over a group: aggregates become slots (E_AGG), sub-expressions
 * equal to a GROUP BY expression the key (E_KEY), window bounds E_W*. */
static gd_expr *bind_group(binder *b, const gd_expr *e)
{
    if (b->failed) return NULL;
    b->at = e;
    if (e->op == GD_E_CALL && aggregate_named(e->name) != AGG_NONE) {
        int c = slot_for(b, e);
        if (c < 0) return NULL;
        gd_expr *a = copy_node(b, e);
        a->op = GD_E_AGG;
        a->nargs = 0;
        a->index = c;
        a->type = b->def->cols[c].type;
        a->pii = b->def->cols[c].pii;
        a->pii_from = b->slot_pii_from[c];
        return a;
    }
    if (e->op == GD_E_CALL && composite_aggregate(e->name)) {
        gd_expr *written = derived_aggregate(b, e);
        return written ? bind_group(b, written) : NULL;
    }
    if (e->op == GD_E_CALL && other_aggregate(e->name)) {
        fail(b, e, "aggregate %.*s is not supported by gamingd", (int)e->name.len, e->name.p);
        return NULL;
    }
    if (is_window_bound(e, NULL)) {
        if (!b->def->window_ms) {
            fail(b, e, "%.*s exists only in windowed aggregations", (int)e->name.len, e->name.p);
            return NULL;
        }
        gd_expr *w = copy_node(b, e);
        w->op = names_eq(e->name, "WINDOWSTART") ? GD_E_WSTART : GD_E_WEND;
        w->type = GD_T_BIGINT;
        return w;
    }
    if (!has_aggregate(e) && gd_expr_any(e, is_column_ref, NULL) && !gd_expr_any(e, is_window_bound, NULL)) {
        gd_expr *in = bind_input(b, e);
        if (!in) return NULL;
        for (int k = 0; k < b->def->nkeys; k++)
            if (expr_equal(in, b->key_exprs[k])) {
                gd_expr *key = copy_node(b, e);
                key->op = GD_E_KEY;
                key->nargs = 0;
                key->index = k;
                key->type = b->def->keys[k].type;
                key->pii = b->def->keys[k].pii;
                key->pii_from = b->key_exprs[k]->pii_from;
                return key;
            }
        if (e->op == GD_E_NAME) {
            fail(b, e, "column '%.*s' is neither in GROUP BY nor inside an aggregate", (int)e->name.len, e->name.p);
            return NULL;
        }
    }
    switch (e->op) {
    case GD_E_LIT: return copy_node(b, e);
    case GD_E_STAR: fail(b, e, "* cannot be selected in an aggregation"); return NULL;
    case GD_E_CALL: return bind_call(b, e, bind_group);
    default: return bind_operator(b, e, bind_group, e->index);
    }
}

static bool is_constant(const gd_expr *e) { return !gd_expr_any(e, is_column_ref, NULL) && !has_aggregate(e); }


/* Whether a name a user gives (a table's, a stream's, a column alias) can be
 * written as it is wherever gamingd writes names: JSON keys, SSE event
 * names, Prometheus labels, URL paths, ksqlDB's `quoted` schema strings.
 * Printable ASCII without a quote, backslash or backtick, at most
 * MAX_NAME bytes: refused once at CREATE or SELECT rather than escaped in
 * every writer. */
enum { MAX_NAME = 100 };
static bool plain_name(gd_str s)
{
    if (!s.len || s.len > MAX_NAME) return false;
    for (uint32_t i = 0; i < s.len; i++)
        if (s.p[i] < 0x20 || s.p[i] > 0x7e || s.p[i] == '"' || s.p[i] == '\\' || s.p[i] == '`') return false;
    return true;
}

static bool name_allowed(binder *b, const gd_expr *at, gd_str s, const char *what)
{
    if (plain_name(s)) return true;
    return fail(b, at,
                "%s name '%.*s' is not allowed: names are 1 to %d printable ASCII characters without \", \\ or `",
                what, (int)(s.len > MAX_NAME ? MAX_NAME : s.len), s.p, MAX_NAME);
}

/* The window bounds' names (the keys of a windowed row's JSON, ksqlDB's
 * pseudo-columns), which a column alias may not take. */
static bool reserved_name(gd_str s)
{
    return names_eq(s, "window_start") || names_eq(s, "window_end") || names_eq(s, "windowstart") ||
           names_eq(s, "windowend");
}

/* A SELECT's aliases: plain names, and never a reserved one but for the
 * column itself (WINDOWSTART AS WINDOWSTART), as ksqlDB has it. */
static bool aliases_allowed(binder *b, const gd_sql_select *q)
{
    for (int i = 0; i < q->nitems; i++) {
        const gd_sql_item *it = &q->items[i];
        if (!it->alias.p) continue;
        if (!name_allowed(b, it->expr, it->alias, "column")) return false;
        if (reserved_name(it->alias) && !(it->expr->op == GD_E_NAME && gd_str_eq_nocase(it->expr->name, it->alias))) {
            gd_buf up = {0};
            gd_sql_upper(gd_sql_lower_dup(b->arena, it->alias), &up);
            fail(b, it->expr, "`%.*s` is a reserved column name. You cannot use it as an alias for a column.",
                 (int)up.len, up.p);
            gd_buf_free(&up);
            return false;
        }
    }
    return true;
}

/* The name ksqlDB gives an unnamed select item: the column's, else KSQL_COL_n. */
static const char *item_name(binder *b, const gd_sql_item *it, int *generated)
{
    if (it->alias.p) return gd_sql_lower_dup(b->arena, it->alias);
    if (it->expr->op == GD_E_NAME) return gd_sql_lower_dup(b->arena, it->expr->name);
    char tmp[32];
    snprintf(tmp, sizeof tmp, "ksql_col_%d", (*generated)++);
    return gd_sql_lower_dup(b->arena, gd_str_c(tmp));
}

static bool unique_names(binder *b, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (!strcasecmp(names[i], names[j]))
                return fail(b, NULL, "column name '%s' is used twice: give one an alias (AS)", names[i]);
    return true;
}

/* ---- the select list of a query that does not aggregate ----
 * Its items bound over the input (* as the source's columns), then
 * PARTITION BY's re-keying as ksqlDB has it (its partition-by.json
 * functional tests): each partitioning expression is a key column -- the
 * select item that computes it, under that item's name, or, when none
 * does and the list has a *, a column of its own named after the source
 * column, else KSQL_COL_n. Key columns come first, in PARTITION BY's
 * order, then the other items in theirs. PARTITION BY NULL: no key.
 * sink names the stream a CREATE STREAM AS SELECT makes: its select list
 * must compute every partitioning expression, and without PARTITION BY a
 * keyed source's key columns, which it keeps (ksqlDB refuses it otherwise);
 * NULL, a push query, shows only what it selects. */
typedef struct {
    int n, nkeys;
    gd_expr **x;
    const char **name; /* lower case */
    gd_coltype *type;
    gd_pii *pii;
} selection;

static bool in_scope(const scope *s, gd_str name)
{
    for (int i = 0; i < s->ncols; i++)
        if (names_eq(name, s->names[i])) return true;
    return false;
}

/* The select list's items, unordered: sel->n of them (room is left for
 * key columns of their own); from_star[i]: item i came from a *. */
static bool bind_items(binder *b, const gd_sql_select *q, selection *sel, bool *from_star, int *generated)
{
    for (int i = 0; i < q->nitems; i++) {
        const gd_sql_item *it = &q->items[i];
        if (it->expr->op == GD_E_STAR) {
            if (it->expr->qualifier.p && !(b->sc.alias.p && gd_str_eq_nocase(it->expr->qualifier, b->sc.alias)) &&
                !names_eq(it->expr->qualifier, b->sc.entry->name))
                return fail(b, it->expr, "'%.*s' is not the source of this query", (int)it->expr->qualifier.len,
                            it->expr->qualifier.p);
            /* re-keyed, a keyed source's key columns come after its values (as ksqlDB has them) */
            int keys = q->npartition && !b->sc.table ? b->sc.entry->nkeys : 0;
            for (int j = 0; j < b->sc.ncols; j++, sel->n++) {
                int c = (j + keys) % b->sc.ncols;
                sel->x[sel->n] = b->sc.exprs[c];
                sel->type[sel->n] = b->sc.types[c];
                sel->pii[sel->n] = b->sc.pii[c];
                sel->name[sel->n] = b->sc.names[c];
                from_star[sel->n] = true;
            }
            continue;
        }
        gd_expr *x = bind_input(b, it->expr);
        if (!x) return false;
        sel->x[sel->n] = x;
        sel->type[sel->n] = x->type == GD_T_NULL ? GD_T_STRING : x->type;
        sel->pii[sel->n] = x->pii;
        sel->name[sel->n++] = item_name(b, it, generated);
    }
    return true;
}

/* The key columns' expressions over the input: PARTITION BY's, or a keyed
 * source's that a definition keeps; texts for messages, named[i] the
 * name an added column takes (NULL: generated). */
static bool bind_keys(binder *b, const gd_sql_select *q, const char *sink, gd_expr **keys, gd_str *texts,
                      const char **named, int *nkeys)
{
    const scope *s = &b->sc;
    *nkeys = 0;
    if (!q->npartition) {
        if (!sink || s->entry->is_table) return true;
        for (int k = 0; k < s->entry->nkeys; k++, (*nkeys)++)
            keys[k] = s->exprs[k], texts[k] = gd_str_c(s->names[k]), named[k] = s->names[k];
        return true;
    }
    const gd_expr *at = q->partition_by[0];
    if (s->entry->is_table) return fail(b, at, "PARTITION BY re-keys a stream; %s is a table", s->entry->name);
    if (q->npartition > GD_MAX_KEYS) return fail(b, at, "at most %d PARTITION BY expressions", GD_MAX_KEYS);
    for (int j = 0; j < q->npartition; j++) {
        const gd_expr *pe = q->partition_by[j];
        gd_str text = q->partition_text[j];
        if (pe->op == GD_E_LIT && pe->lit.t == GD_V_NULL) {
            if (q->npartition > 1) return fail(b, pe, "Cannot PARTITION BY multiple columns including NULL");
            return true; /* no key */
        }
        if (pe->op == GD_E_NAME && !pe->qualifier.p && !in_scope(s, pe->name))
            for (int i = 0; i < q->nitems; i++)
                if (q->items[i].alias.p && gd_str_eq_nocase(q->items[i].alias, pe->name))
                    return fail(b, pe,
                                "PARTITION BY column '%.*s' cannot be resolved. '%.*s' must be a column in the source "
                                "schema since PARTITION BY is applied on the input.",
                                (int)text.len, text.p, (int)text.len, text.p);
        gd_expr *k = bind_input(b, pe);
        if (!k) return false;
        for (int i = 0; i < *nkeys; i++)
            if (expr_equal(keys[i], k)) return fail(b, pe, "Duplicate PARTITION BY expression: %.*s", (int)text.len, text.p);
        keys[*nkeys] = k, texts[*nkeys] = text;
        named[(*nkeys)++] = pe->op == GD_E_NAME ? gd_sql_lower_dup(b->arena, pe->name) : NULL;
    }
    return true;
}

static bool select_list(binder *b, const gd_sql_select *q, const char *sink, selection *out)
{
    int cap = GD_MAX_KEYS;
    for (int i = 0; i < q->nitems; i++) cap += q->items[i].expr->op == GD_E_STAR ? b->sc.ncols : 1;
    selection sel = {.x = alloc(b, sizeof *sel.x * (size_t)cap),
                     .name = alloc(b, sizeof *sel.name * (size_t)cap),
                     .type = alloc(b, sizeof *sel.type * (size_t)cap),
                     .pii = alloc(b, sizeof *sel.pii * (size_t)cap)};
    bool *from_star = alloc(b, sizeof *from_star * (size_t)cap);
    int generated = 0, nkeys;
    gd_expr *keys[GD_MAX_KEYS];
    gd_str texts[GD_MAX_KEYS];
    const char *named[GD_MAX_KEYS];
    if (!bind_items(b, q, &sel, from_star, &generated) || !bind_keys(b, q, sink, keys, texts, named, &nkeys))
        return false;
    bool star = false;
    for (int i = 0; i < sel.n; i++) star |= from_star[i];
    int *key_item = alloc(b, sizeof *key_item * (size_t)cap); /* item i is key column key_item[i] - 1 */
    int placed = 0, at[GD_MAX_KEYS];
    for (int k = 0; k < nkeys; k++) {
        at[k] = -1;
        for (int i = 0; i < sel.n; i++) {
            if (!expr_equal(sel.x[i], keys[k])) continue;
            if (at[k] >= 0) {
                gd_buf up = {0};
                gd_sql_upper(sel.name[at[k]], &up);
                gd_buf_puts(&up, " and ");
                gd_sql_upper(sel.name[i], &up);
                fail(b, q->npartition ? q->partition_by[k] : NULL,
                     "The projection contains a key column (`%.*s`) more than once, aliased as: %.*s.", (int)texts[k].len,
                     texts[k].p, (int)up.len, up.p);
                gd_buf_free(&up);
                return false;
            }
            at[k] = i;
        }
        if (at[k] < 0 && sink && !star)
            return fail(b, q->npartition ? q->partition_by[k] : NULL,
                        "The query used to build `%s` must include the %s %.*s in its projection (eg, SELECT %.*s...).",
                        sink, q->npartition ? "partitioning expression" : "key column", (int)texts[k].len, texts[k].p,
                        (int)texts[k].len, texts[k].p);
        if (at[k] < 0 && star) { /* a column of its own */
            char tmp[32];
            snprintf(tmp, sizeof tmp, "ksql_col_%d", generated++);
            at[k] = sel.n;
            sel.x[sel.n] = keys[k];
            sel.type[sel.n] = keys[k]->type == GD_T_NULL ? GD_T_STRING : keys[k]->type;
            sel.pii[sel.n] = keys[k]->pii;
            sel.name[sel.n++] = named[k] ? named[k] : gd_sql_lower_dup(b->arena, gd_str_c(tmp));
        }
        if (at[k] >= 0) key_item[at[k]] = ++placed;
    }
    /* keys first, in PARTITION BY's order, then the rest in theirs */
    *out = (selection){.n = sel.n, .nkeys = placed,
                       .x = alloc(b, sizeof *sel.x * (size_t)cap),
                       .name = alloc(b, sizeof *sel.name * (size_t)cap),
                       .type = alloc(b, sizeof *sel.type * (size_t)cap),
                       .pii = alloc(b, sizeof *sel.pii * (size_t)cap)};
    int next = placed;
    for (int i = 0; i < sel.n; i++) {
        int to = key_item[i] ? key_item[i] - 1 : next++;
        out->x[to] = sel.x[i], out->name[to] = sel.name[i], out->type[to] = sel.type[i], out->pii[to] = sel.pii[i];
    }
    return unique_names(b, out->name, out->n);
}

/* Where a select item lands in the row of an aggregation's table. */
typedef struct {
    int key;    /* >= 0: the key column */
    int window; /* 0 start, 1 end, -1 */
    int col;    /* >= 0: the value column */
} landing;

/* Compiles an aggregating SELECT into b->def; lands[i] says where item i is. */
static bool compile_aggregation(binder *b, const gd_sql_select *q, landing *lands)
{
    gd_tabledef *t = b->def;
    t->kind = GD_TABLE_WINDOWED;
    t->window_ms = q->windowed ? q->window_ms : 0;
    t->advance_ms = q->windowed ? q->advance_ms : 0;
    t->grace_ms = q->grace_ms;
    t->emit_final = q->emit == GD_EMIT_FINAL;
    t->session = q->windowed && q->session;
    if (q->where) {
        if (has_aggregate(q->where)) return fail(b, q->where, "aggregates are not allowed in WHERE (use HAVING)");
        if (!(t->where = bind_input(b, q->where))) return false;
        if (!want_type(b, t->where, t->where, t->where->type == GD_T_BOOLEAN, "WHERE takes a BOOLEAN condition")) return false;
    }
    int generated = 0;
    gd_expr *key_src[GD_MAX_KEYS];
    /* keys: GROUP BY expressions; constants (GROUP BY 1) group nothing */
    for (int g = 0; g < q->ngroup; g++) {
        gd_expr *ge = q->group_by[g];
        if (is_constant(ge)) continue;
        if (has_aggregate(ge)) return fail(b, ge, "aggregates are not allowed in GROUP BY");
        if (t->nkeys == GD_MAX_KEYS) return fail(b, ge, "at most %d GROUP BY expressions", GD_MAX_KEYS);
        gd_expr *k = bind_input(b, ge);
        if (!k) return false;
        note_pii_use(b, k, "grouping by");
        for (int j = 0; j < t->nkeys; j++)
            if (expr_equal(k, b->key_exprs[j])) return fail(b, ge, "GROUP BY names this expression twice");
        gd_keydef *kd = &t->keys[t->nkeys];
        key_src[t->nkeys] = ge;
        b->key_exprs[t->nkeys++] = k;
        kd->type = k->type == GD_T_NULL ? GD_T_STRING : k->type;
        kd->field = k->op == GD_E_COL ? k->index : -1;
        kd->expr = k->op == GD_E_COL ? NULL : k;
        kd->name = NULL;
        kd->pii = k->pii;
    }
    /* items: a key, a window bound, an aggregate with a slot, or an expression */
    int ncols = 0;
    for (int i = 0; i < q->nitems; i++) {
        const gd_sql_item *it = &q->items[i];
        lands[i] = (landing){-1, -1, -1};
        if (it->expr->op == GD_E_STAR) return fail(b, it->expr, "* cannot be selected in an aggregation");
        if (is_window_bound(it->expr, NULL) && (!it->alias.p || names_eq(it->alias, names_eq(it->expr->name, "WINDOWEND") ? "WINDOWEND" : "WINDOWSTART"))) {
            if (!t->window_ms) return fail(b, it->expr, "WINDOWSTART and WINDOWEND exist only in windowed aggregations");
            lands[i].window = names_eq(it->expr->name, "WINDOWEND");
            continue;
        }
        /* a window bound under an alias, or in an expression, is a value
         * column (as ksqlDB has it); bind_group places the bounds */
        if (!has_aggregate(it->expr) && !is_constant(it->expr) && !gd_expr_any(it->expr, is_window_bound, NULL)) {
            gd_expr *in = bind_input(b, it->expr);
            if (!in) return false;
            for (int k = 0; k < t->nkeys; k++)
                if (expr_equal(in, b->key_exprs[k])) {
                    lands[i].key = k;
                    if (!t->keys[k].name) t->keys[k].name = item_name(b, it, &generated);
                    break;
                }
            if (lands[i].key >= 0) continue;
        }
        if (ncols == GD_MAX_COLS) return fail(b, it->expr, "too many columns (%d at most)", GD_MAX_COLS);
        lands[i].col = ncols++;
    }
    t->ncols = t->nslots = (uint8_t)ncols;
    /* the visible aggregate columns take their slots first, so that
     * expressions and HAVING reuse them */
    for (int i = 0; i < q->nitems; i++) {
        const gd_expr *e = q->items[i].expr;
        int c = lands[i].col;
        if (c < 0) continue;
        if (e->op == GD_E_CALL && aggregate_named(e->name) != AGG_NONE) {
            if (!make_slot(b, e, &t->cols[c])) return false;
            b->agg_exprs[c] = (gd_expr *)e;
        } else {
            t->cols[c].agg = GD_AGG_EXPR;
            t->cols[c].field = -1;
        }
    }
    for (int i = 0; i < q->nitems; i++) {
        int c = lands[i].col;
        if (c < 0) continue;
        t->cols[c].name = item_name(b, &q->items[i], &generated);
        if (t->cols[c].agg != GD_AGG_EXPR) continue;
        gd_expr *x = bind_group(b, q->items[i].expr);
        if (!x) return false;
        t->cols[c].expr = x;
        t->cols[c].type = x->type == GD_T_NULL ? GD_T_STRING : x->type;
        t->cols[c].pii = x->pii;
    }
    for (int k = 0; k < t->nkeys; k++) /* keys not selected: named as ksqlDB would */
        if (!t->keys[k].name) {
            gd_sql_item named = {.expr = key_src[k]};
            t->keys[k].name = item_name(b, &named, &generated);
        }
    if (q->having) {
        gd_expr *h = bind_group(b, q->having);
        if (!h || !want_type(b, h, h, h->type == GD_T_BOOLEAN, "HAVING takes a BOOLEAN condition")) return false;
        t->having = h;
    }
    if (t->session) { /* the session's end: set by session.c, merged as a MAX */
        if (t->nslots == GD_MAX_COLS) return fail(b, NULL, "too many columns and aggregates (%d at most)", GD_MAX_COLS - 1);
        t->session_end = t->nslots++;
        t->cols[t->session_end] = (gd_coldef){.agg = GD_AGG_MAX_INT, .type = GD_T_BIGINT, .field = -1};
    }
    const char *names[GD_MAX_KEYS + GD_MAX_COLS + 2];
    int n = 0;
    for (int k = 0; k < t->nkeys; k++) names[n++] = t->keys[k].name;
    if (t->window_ms) names[n++] = "windowstart", names[n++] = "windowend";
    for (int c = 0; c < t->ncols; c++) names[n++] = t->cols[c].name;
    return !b->failed && unique_names(b, names, n);
}

static bool selects_aggregation(const gd_sql_select *q)
{
    if (q->ngroup) return true;
    for (int i = 0; i < q->nitems; i++)
        if (q->items[i].expr->op != GD_E_STAR && has_aggregate(q->items[i].expr)) return true;
    return false;
}

/* ---- CREATE ---- */

/* A built-in source's columns must be fields its decoder knows. */
typedef struct {
    const char *name;
    gd_stream_kind kind;     /* streams */
    gd_table_kind table;     /* tables */
    bool is_table;
    const gd_fieldspec *fields;
    gd_topic topic; /* whose fields they are (the enriched record: each its own, gd_output_fields) */
} builtin_source;

static const builtin_source builtin_sources[] = {
    {"gaming_real_time_intelligence_platform", GD_SRC_ENRICHED, 0, false, NULL, GD_TOPIC_UNKNOWN},
    {"gaming_player_activity_stream", GD_SRC_ACTIVITY, 0, false, gd_activity_fields, GD_TOPIC_ACTIVITY},
    {"gaming_games_stream", GD_SRC_GAMES, 0, false, gd_game_fields, GD_TOPIC_GAMES},
    {"gaming_players_stream", GD_SRC_PLAYERS, 0, false, gd_player_fields, GD_TOPIC_PLAYERS},
    {"gaming_games_table", 0, GD_TABLE_GAMES, true, gd_game_fields, GD_TOPIC_GAMES},
    {"gaming_players_table", 0, GD_TABLE_PLAYERS, true, gd_player_fields, GD_TOPIC_PLAYERS},
};

/* Whether a declared column of a built-in source is personal data: PII in
 * its declaration, or its source field tagged PII in the registry. */
static gd_pii declared_pii(binder *b, const builtin_source *bs, const gd_sql_coldecl *c, const char *name)
{
    if (c->pii) return GD_PII_COPY;
    gd_topic topic = bs->topic;
    const char *field = name;
    if (bs->kind == GD_SRC_ENRICHED && !bs->is_table) {
        topic = GD_TOPIC_UNKNOWN;
        for (size_t i = 0; i < gd_output_field_count; i++)
            if (!strcmp(gd_output_fields[i].name, name)) topic = gd_output_fields[i].from_topic, field = gd_output_fields[i].from_field;
    }
    return gd_catalog_tagged_pii(b->cat, topic, field) ? GD_PII_COPY : GD_PII_NONE;
}

/* The id of a declared column of a built-in source, or -1. */
static int builtin_column_id(const builtin_source *bs, const char *name, gd_coltype type)
{
    if (bs->kind == GD_SRC_ENRICHED && !bs->is_table) {
        for (size_t i = 0; i < gd_output_field_count; i++)
            if (!strcmp(gd_output_fields[i].name, name)) return gd_output_fields[i].type == type ? (int)gd_output_fields[i].field : -1;
        return -1;
    }
    for (int i = 0; bs->fields[i].name; i++) {
        const gd_fieldspec *f = &bs->fields[i];
        if (strcmp(f->name, name)) continue;
        bool fits = f->type == GD_FT_STR ? type == GD_T_STRING
                    : f->type == GD_FT_DBL ? type == GD_T_DOUBLE
                                           : type == GD_T_INTEGER || type == GD_T_BIGINT;
        if (!fits) return -1;
        if (bs->kind != GD_SRC_ACTIVITY || bs->is_table) return i;
        /* activity columns are enriched fields (the engine reads them there) */
        const char *as = !strcmp(name, "activity_timestamp") ? "event_timestamp" : name;
        for (size_t o = 0; o < gd_output_field_count; o++)
            if (!strcmp(gd_output_fields[o].name, as)) return (int)gd_output_fields[o].field;
        return -1;
    }
    return -1;
}

static const char *prop(const gd_sql_stmt *st, const char *name, gd_arena *a)
{
    for (int i = 0; i < st->nprops; i++)
        if (names_eq(st->props[i].name, name)) return gd_sql_lower_dup(a, st->props[i].value);
    return NULL;
}

static int declare_source(binder *b, const gd_sql_stmt *st, gd_catalog_entry *e)
{
    const builtin_source *bs = NULL;
    for (size_t i = 0; i < sizeof builtin_sources / sizeof builtin_sources[0]; i++)
        if (names_eq(st->name, builtin_sources[i].name) && builtin_sources[i].is_table == st->is_table) bs = &builtin_sources[i];
    if (!bs) return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT, "%.*s is not a source gamingd reads", (int)st->name.len, st->name.p);
    e->topic = prop(st, "KAFKA_TOPIC", &e->arena);
    if (!bs->is_table) {
        e->kind = bs->kind;
        e->ncols = st->ncols;
        e->cols = alloc(b, sizeof *e->cols * (size_t)st->ncols);
        for (int i = 0; i < st->ncols; i++) {
            const char *name = gd_sql_lower_dup(b->arena, st->cols[i].name);
            int id = builtin_column_id(bs, name, st->cols[i].type);
            if (id < 0)
                return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT, "%s: column %s %s is not a field of its records",
                                   bs->name, name, type_name(st->cols[i].type));
            e->cols[i] = (gd_column){name, st->cols[i].type, id, declared_pii(b, bs, &st->cols[i], name)};
            if (id + 1 > e->width) e->width = id + 1;
        }
        return GD_OK;
    }
    gd_tabledef *t = e->table = alloc(b, sizeof *t);
    t->name = e->name;
    t->kind = bs->table;
    t->grace_ms = -1;
    for (int i = 0; i < st->ncols; i++) {
        const char *name = gd_sql_lower_dup(b->arena, st->cols[i].name);
        if (builtin_column_id(bs, name, st->cols[i].type) < 0)
            return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT, "%s: column %s %s is not a field of its records",
                               bs->name, name, type_name(st->cols[i].type));
        if (st->cols[i].key) {
            if (t->nkeys || i != 0)
                return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT, "%s: the PRIMARY KEY is its first column, its id", bs->name);
            t->keys[t->nkeys++] = (gd_keydef){name, st->cols[i].type, -1, NULL, declared_pii(b, bs, &st->cols[i], name)};
        } else {
            if (t->ncols == GD_MAX_COLS) return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT, "too many columns");
            t->cols[t->ncols++] = (gd_coldef){.name = name, .agg = GD_AGG_LATEST, .type = st->cols[i].type, .field = -1,
                                              .pii = declared_pii(b, bs, &st->cols[i], name)};
        }
    }
    t->nslots = t->ncols;
    if (t->nkeys != 1) return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT, "%s needs its PRIMARY KEY", bs->name);
    return GD_OK;
}

/* CREATE STREAM name AS SELECT cols FROM stream [WHERE ...] */
static int derive_stream(binder *b, const gd_sql_select *q, gd_catalog_entry *e)
{
    const gd_catalog_entry *src = b->sc.entry;
    if (src->is_table)
        return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT, "CREATE STREAM AS SELECT reads a stream; %s is a table", src->name);
    if (selects_aggregation(q))
        return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT, "an aggregation makes a table: CREATE TABLE ... AS SELECT");
    if (q->windowed || q->having || q->norder || q->limit >= 0 || q->emit == GD_EMIT_FINAL)
        return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT,
                           "CREATE STREAM AS SELECT takes a select list, WHERE and PARTITION BY (no WINDOW, HAVING, ORDER BY, LIMIT, "
                           "EMIT FINAL)");
    e->kind = GD_SRC_DERIVED;
    e->base = b->sc.reads;
    gd_expr *where = src->kind == GD_SRC_DERIVED ? src->where : NULL;
    if (q->where) {
        gd_expr *w = bind_input(b, q->where);
        if (!w || !want_type(b, w, w, w->type == GD_T_BOOLEAN, "WHERE takes a BOOLEAN condition")) return GD_ERR;
        if (where) {
            gd_expr *both = alloc(b, sizeof *both);
            both->op = GD_E_AND;
            both->type = GD_T_BOOLEAN;
            both->nargs = 2;
            both->args = alloc(b, sizeof(gd_expr *) * 2);
            both->args[0] = where;
            both->args[1] = w;
            where = both;
        } else where = w;
    }
    e->where = where;
    selection sel;
    if (!select_list(b, q, e->name, &sel)) return GD_ERR;
    e->cols = alloc(b, sizeof *e->cols * (size_t)(sel.n ? sel.n : 1));
    for (int i = 0; i < sel.n; i++) e->cols[i] = (gd_column){sel.name[i], sel.type[i], i, sel.pii[i]};
    e->proj = sel.x;
    e->ncols = e->width = sel.n;
    e->nkeys = sel.nkeys;
    return GD_OK;
}

static int create_table(binder *b, const gd_sql_select *q, gd_catalog_entry *e)
{
    const gd_catalog_entry *src = b->sc.entry;
    if (src->is_table)
        return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT, "CREATE TABLE AS SELECT aggregates a stream; %s is a table", src->name);
    if (b->sc.reads->kind != GD_SRC_ENRICHED && b->sc.reads->kind != GD_SRC_ACTIVITY)
        return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT,
                           "tables are kept over the activity records (the enriched stream or the activity stream), not %s",
                           src->name);
    if (q->npartition)
        return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT,
                           "PARTITION BY re-keys a stream; a table's key is its GROUP BY (Queries only support one of "
                           "PARTITION BY and GROUP BY)");
    if (!selects_aggregation(q))
        return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT,
                           "CREATE TABLE AS SELECT needs an aggregation (GROUP BY, or an aggregate such as COUNT(*))");
    if (q->norder || q->limit >= 0)
        return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT, "CREATE TABLE AS SELECT takes no ORDER BY or LIMIT");
    if (q->emit == GD_EMIT_FINAL && !q->windowed)
        return gd_sql_fail(b->err, GD_SQL_BAD_STATEMENT, "EMIT FINAL needs a WINDOW: a window is final once its grace has passed");
    gd_tabledef *t = b->def = e->table = alloc(b, sizeof *t);
    landing *lands = alloc(b, sizeof *lands * (size_t)q->nitems);
    if (!compile_aggregation(b, q, lands)) return GD_ERR;
    if (src->kind == GD_SRC_DERIVED && src->where) { /* the derived stream's filter, and the query's */
        if (t->where) {
            gd_expr *both = alloc(b, sizeof *both);
            *both = (gd_expr){.op = GD_E_AND, .type = GD_T_BOOLEAN, .nargs = 2};
            both->args = alloc(b, sizeof(gd_expr *) * 2);
            both->args[0] = src->where;
            both->args[1] = (gd_expr *)t->where;
            t->where = both;
        } else t->where = src->where;
    }
    t->name = e->name;
    return GD_OK;
}

/* ---- size ----
 * Binding copies the parser's trees node for node, save that a derived
 * stream's columns are put in where they are named (and its WHERE joined
 * to the query's): a stream over a stream over a stream could so grow
 * trees past what the parser allows. Each statement's bound trees are
 * held to the same bounds (store/expr.h), each use of a shared subtree
 * counted, as evaluation will walk it. */

typedef struct {
    int budget; /* nodes left for the statement */
    bool fits;
} size_check;

static void size_of(size_check *c, const gd_expr *e)
{
    if (c->fits && !gd_expr_fits(e, GD_EXPR_MAX_DEPTH, &c->budget)) c->fits = false;
}

static void size_of_table(size_check *c, const gd_tabledef *t)
{
    size_of(c, t->where);
    size_of(c, t->having);
    for (int k = 0; k < t->nkeys; k++) size_of(c, t->keys[k].expr);
    for (int i = 0; i < t->nslots; i++) {
        size_of(c, t->cols[i].arg);
        size_of(c, t->cols[i].expr);
    }
}

static int too_large(const gd_sql_select *q, const size_check *c, gd_sql_error *err)
{
    if (c->fits) return GD_OK;
    return gd_sql_fail(err, GD_SQL_BAD_STATEMENT,
                       "line %u:%u: the statement is too large once the columns of %.*s are put in: its expressions "
                       "would nest more than %d levels deep or have more than %d parts in all",
                       q->from_line, q->from_col, (int)q->from.len, q->from.p, GD_EXPR_MAX_DEPTH, GD_EXPR_MAX_NODES);
}

int gd_sql_plan_create(const gd_catalog *cat, const gd_sql_stmt *st, bool builtin, gd_catalog_entry **out,
                       gd_sql_error *err)
{
    gd_catalog_entry *e = gd_catalog_entry_new();
    if (!e) return gd_sql_fail(err, GD_SQL_SERVER_ERROR, "out of memory");
    binder b = {.cat = cat, .arena = &e->arena, .err = err, .definition = true};
    e->name = gd_sql_lower_dup(&e->arena, st->name);
    e->is_table = st->is_table;
    e->builtin = builtin;
    gd_str text = gd_arena_strdup(&e->arena, st->text);
    char *sql = gd_arena_alloc(&e->arena, text.len + 1);
    memcpy(sql, text.p, text.len);
    sql[text.len] = 0;
    e->sql = sql;
    int rc;
    if (st->kind == GD_SQL_CREATE_SOURCE) {
        rc = builtin ? declare_source(&b, st, e)
                     : gd_sql_fail(err, GD_SQL_BAD_STATEMENT,
                                   "gamingd reads its source topics itself: declaring a stream or table over a topic "
                                   "is not supported (CREATE ... AS SELECT is)");
    } else if (!name_allowed(&b, NULL, st->name, st->is_table ? "table" : "stream") ||
               !aliases_allowed(&b, &st->select) || !open_scope(&b, &st->select)) {
        rc = GD_ERR;
    } else {
        e->reads = b.sc.entry->name; /* the catalog keeps entries for as long as e */
        rc = st->is_table ? create_table(&b, &st->select, e) : derive_stream(&b, &st->select, e);
        if (!rc && b.failed) rc = GD_ERR;
        size_check size = {GD_EXPR_MAX_NODES, true};
        if (!rc && st->is_table) size_of_table(&size, e->table);
        for (int i = 0; !rc && !st->is_table && i < e->ncols; i++) size_of(&size, e->proj[i]);
        if (!rc && !st->is_table) size_of(&size, e->where);
        if (!rc) rc = too_large(&st->select, &size, err);
        e->sql_personal = b.pii_use.column != NULL;
    }
    if (rc) {
        gd_catalog_entry_free(e);
        return GD_ERR;
    }
    *out = e;
    return GD_OK;
}

/* ---- queries ---- */

/* A pull of an EMIT FINAL table reads its closed windows only (exec.c). */
static void note_final(binder *b, gd_query_plan *plan)
{
    const gd_tabledef *t = plan->source->is_table ? plan->source->table : NULL;
    plan->final_only = plan->kind == GD_PLAN_PULL_TABLE && t && t->emit_final;
    if (plan->final_only) plan->final_grace_ms = gd_catalog_grace(b->cat, t);
}

/* Conjuncts of a WHERE: the parts joined by AND. */
static void conjuncts(gd_expr *e, gd_expr **out, int *n, int max)
{
    if (e->op == GD_E_AND) {
        conjuncts(e->args[0], out, n, max);
        conjuncts(e->args[1], out, n, max);
    } else if (*n < max) out[(*n)++] = e;
}

static bool literal_value(const gd_expr *e, gd_value *v)
{
    if (e->op != GD_E_LIT || e->lit.t == GD_V_NULL) return false;
    *v = e->lit;
    return true;
}

/* Narrows a pull query's scan from the conjuncts of its WHERE: a key
 * column = v or IN (v, ...), WINDOWSTART / WINDOWEND bounds. The WHERE
 * stays whole as the rows' filter, so narrowing only saves reading. */
static void narrow_scan(binder *b, gd_query_plan *plan, gd_expr *where)
{
    const gd_tabledef *t = plan->source->table;
    plan->window_from = INT64_MIN;
    plan->window_to = INT64_MAX;
    if (!where) return;
    gd_expr *parts[64];
    int n = 0;
    conjuncts(where, parts, &n, 64);
    int64_t size = t->window_ms;
    for (int i = 0; i < n; i++) {
        gd_expr *p = parts[i];
        if (p->nargs < 2 || p->args[0]->op != GD_E_COL) continue;
        int col = p->args[0]->index;
        if (col < t->nkeys && (p->op == GD_E_EQ || (p->op == GD_E_IN && !p->negated))) {
            int m = p->nargs - 1;
            if (m > GD_PLAN_MAX_IN || plan->nkey_values[col]) continue;
            gd_value *vals = alloc(b, sizeof *vals * (size_t)m);
            bool all = true;
            for (int j = 0; j < m && all; j++) all = literal_value(p->args[1 + j], &vals[j]);
            if (!all) continue;
            plan->key_values[col] = vals;
            plan->nkey_values[col] = m;
            continue;
        }
        int ws = b->sc.windowed_at;
        if (ws < 0 || (col != ws && col != ws + 1)) continue;
        if (col != ws && gd_table_session(t)) continue; /* a session's end is in its row, not its key */
        int64_t shift = col == ws ? 0 : size; /* WINDOWEND = WINDOWSTART + size */
        gd_value lo, hi;
        if (p->op == GD_E_BETWEEN && !p->negated && literal_value(p->args[1], &lo) && literal_value(p->args[2], &hi) &&
            lo.t == GD_V_INT && hi.t == GD_V_INT) {
            if (lo.i - shift > plan->window_from) plan->window_from = lo.i - shift;
            if (hi.i - shift + 1 < plan->window_to) plan->window_to = hi.i - shift + 1;
            continue;
        }
        gd_value v;
        if (!literal_value(p->args[1], &v) || v.t != GD_V_INT || v.i < -GD_MAX_TIMESTAMP || v.i > GD_MAX_TIMESTAMP) continue;
        int64_t x = v.i - shift;
        switch (p->op) {
        case GD_E_EQ:
            if (x > plan->window_from) plan->window_from = x;
            if (x + 1 < plan->window_to) plan->window_to = x + 1;
            break;
        case GD_E_GE: if (x > plan->window_from) plan->window_from = x; break;
        case GD_E_GT: if (x + 1 > plan->window_from) plan->window_from = x + 1; break;
        case GD_E_LE: if (x + 1 < plan->window_to) plan->window_to = x + 1; break;
        case GD_E_LT: if (x < plan->window_to) plan->window_to = x; break;
        default: break;
        }
    }
}

static bool reads_beyond(const gd_expr *e, void *ctx)
{
    return e->op == GD_E_COL && e->index >= *(const int *)ctx;
}

/* x AND y; x NULL: y. */
static gd_expr *and_of(binder *b, gd_expr *x, gd_expr *y)
{
    if (!x) return y;
    gd_expr *both = alloc(b, sizeof *both);
    *both = (gd_expr){.op = GD_E_AND, .type = GD_T_BOOLEAN, .nargs = 2};
    both->args = alloc(b, sizeof(gd_expr *) * 2);
    both->args[0] = x;
    both->args[1] = y;
    return both;
}

/* Parts the conjuncts of e: those that read only what a row key holds
 * (the first `width` columns of a table's row: keys, window bounds) go to
 * *keys, the others to *rest. */
static void part_conjuncts(binder *b, gd_expr *e, int width, gd_expr **keys, gd_expr **rest)
{
    if (e->op == GD_E_AND) {
        part_conjuncts(b, e->args[0], width, keys, rest);
        part_conjuncts(b, e->args[1], width, keys, rest);
    } else if (gd_expr_any(e, reads_beyond, &width)) {
        *rest = and_of(b, *rest, e);
    } else {
        *keys = and_of(b, *keys, e);
    }
}

/* A pull's WHERE in two: plan->where_keys, the conjuncts over the row key
 * alone, which the executor checks before it decodes a row, and
 * plan->where, the others (a row passes when both are true, as when the
 * conjuncts were one). */
static void split_key_filter(binder *b, gd_query_plan *plan)
{
    const gd_tabledef *t = plan->source->table;
    gd_expr *where = plan->where;
    plan->where = plan->where_keys = NULL;
    if (where) part_conjuncts(b, where, t->nkeys + (gd_table_session(t) ? 1 : gd_table_windowed(t) ? 2 : 0), &plan->where_keys, &plan->where);
}

/* The select list over the scope: each item an expression and a name. */
static bool project(binder *b, const gd_sql_select *q, gd_query_plan *plan)
{
    selection sel;
    if (!select_list(b, q, NULL, &sel)) return false;
    plan->ncols = sel.n;
    plan->proj = sel.x;
    plan->types = sel.type;
    plan->pii = sel.pii;
    plan->names = alloc(b, sizeof *plan->names * (size_t)(sel.n ? sel.n : 1));
    for (int i = 0; i < sel.n; i++) plan->names[i] = upper_dup(b->arena, sel.name[i]);
    return true;
}

/* ORDER BY names selected columns: by name, alias or position. */
static bool bind_order(binder *b, const gd_sql_select *q, gd_query_plan *plan)
{
    plan->norder = q->norder;
    plan->order = q->order;
    plan->order_cols = alloc(b, sizeof *plan->order_cols * (size_t)(q->norder ? q->norder : 1));
    for (int i = 0; i < q->norder; i++) {
        const gd_expr *e = q->order[i].expr;
        int col = -1;
        if (e->op == GD_E_LIT && e->lit.t == GD_V_INT && e->lit.i >= 1 && e->lit.i <= plan->ncols) col = (int)e->lit.i - 1;
        else if (e->op == GD_E_NAME)
            for (int c = 0; c < plan->ncols && col < 0; c++)
                if (names_eq(e->name, plan->names[c])) col = c;
        if (col < 0) return fail(b, e, "ORDER BY names a selected column (by name, alias or position)");
        if (gd_coltype_collection(plan->types[col]))
            return fail(b, e, "ORDER BY cannot order by %s (%s): ARRAYs and MAPs have no order", plan->names[col],
                        type_name(plan->types[col]));
        if (plan->pii[col] && !b->pii_use.column) b->pii_use = (gd_pii_use){plan->names[col], "ordering by"};
        plan->order_cols[i] = col;
    }
    return true;
}

int gd_sql_plan_query(const gd_catalog *cat, const gd_sql_stmt *st, gd_arena *arena, gd_query_plan *plan,
                      gd_sql_error *err)
{
    memset(plan, 0, sizeof *plan);
    binder b = {.cat = cat, .arena = arena, .err = err};
    const gd_sql_select *q = &st->select;
    plan->limit = q->limit;
    if (!aliases_allowed(&b, q) || !open_scope(&b, q)) return GD_ERR;
    const gd_catalog_entry *src = b.sc.entry;
    bool push = q->emit != GD_EMIT_NONE;
    if (q->npartition && !push) return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "Pull queries don't support PARTITION BY clauses.");
    if (q->npartition && selects_aggregation(q))
        return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "Queries only support one of PARTITION BY and GROUP BY");
    if (selects_aggregation(q)) {
        if (src->is_table)
            return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "aggregating a table is not supported: aggregate a stream");
        if (!push)
            return gd_sql_fail(err, GD_SQL_BAD_STATEMENT,
                               "an aggregation over the stream %s is a push query: add EMIT CHANGES (or EMIT FINAL), or "
                               "keep it as a table with CREATE TABLE ... AS SELECT",
                               src->name);
        if (q->emit == GD_EMIT_FINAL && !q->windowed)
            return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "EMIT FINAL needs a WINDOW: a window is final once its grace has passed");
        if (q->norder) return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "ORDER BY is for pull queries");
        gd_tabledef *t = b.def = alloc(&b, sizeof *t);
        t->name = "transient";
        landing *lands = alloc(&b, sizeof *lands * (size_t)q->nitems);
        if (!compile_aggregation(&b, q, lands)) return GD_ERR;
        if (src->kind == GD_SRC_DERIVED && src->where) {
            if (t->where) {
                gd_expr *both = alloc(&b, sizeof *both);
                *both = (gd_expr){.op = GD_E_AND, .type = GD_T_BOOLEAN, .nargs = 2};
                both->args = alloc(&b, sizeof(gd_expr *) * 2);
                both->args[0] = src->where;
                both->args[1] = (gd_expr *)t->where;
                t->where = both;
            } else t->where = src->where;
        }
        plan->kind = GD_PLAN_PUSH_AGGREGATE;
        plan->source = b.sc.reads;
        plan->aggregate = t;
        plan->emit_final = q->emit == GD_EMIT_FINAL;
        /* output: items over the transient table's row (keys, window bounds, columns) */
        int width = t->nkeys + (t->window_ms ? 2 : 0);
        plan->ncols = q->nitems;
        plan->names = alloc(&b, sizeof *plan->names * (size_t)q->nitems);
        plan->types = alloc(&b, sizeof *plan->types * (size_t)q->nitems);
        plan->proj = alloc(&b, sizeof *plan->proj * (size_t)q->nitems);
        plan->pii = alloc(&b, sizeof *plan->pii * (size_t)q->nitems);
        for (int i = 0; i < q->nitems; i++) {
            int at;
            gd_coltype type;
            const char *name;
            gd_pii pii = GD_PII_NONE;
            if (lands[i].key >= 0) at = lands[i].key, type = t->keys[at].type, name = t->keys[at].name, pii = t->keys[at].pii;
            else if (lands[i].window >= 0) at = t->nkeys + lands[i].window, type = GD_T_BIGINT,
                                          name = lands[i].window ? "windowend" : "windowstart";
            else at = width + lands[i].col, type = t->cols[lands[i].col].type, name = t->cols[lands[i].col].name,
                 pii = t->cols[lands[i].col].pii;
            plan->pii[i] = pii;
            plan->proj[i] = new_col(&b, at, type);
            plan->types[i] = type;
            plan->names[i] = upper_dup(arena, name);
        }
        plan->row_width = width + t->ncols;
        plan->pii_use = b.pii_use;
        size_check size = {GD_EXPR_MAX_NODES, true};
        size_of_table(&size, t);
        return b.failed || too_large(q, &size, err) ? GD_ERR : GD_OK;
    }
    if (q->windowed) return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "WINDOW needs an aggregation (GROUP BY)");
    if (q->having) return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "HAVING needs an aggregation (GROUP BY)");
    if (q->emit == GD_EMIT_FINAL) return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "EMIT FINAL is for windowed aggregations");
    if (!src->is_table && !push)
        return gd_sql_fail(err, GD_SQL_BAD_STATEMENT,
                           "pull queries read tables; %s is a stream: add EMIT CHANGES to read its records as they arrive",
                           src->name);
    if (push && q->norder) return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "ORDER BY is for pull queries");
    if (!project(&b, q, plan)) return GD_ERR;
    if (q->where) {
        plan->where = bind_input(&b, q->where);
        if (!plan->where || !want_type(&b, plan->where, plan->where, plan->where->type == GD_T_BOOLEAN, "WHERE takes a BOOLEAN condition"))
            return GD_ERR;
    }
    if (src->kind == GD_SRC_DERIVED && !src->is_table && src->where) {
        if (plan->where) {
            gd_expr *both = alloc(&b, sizeof *both);
            *both = (gd_expr){.op = GD_E_AND, .type = GD_T_BOOLEAN, .nargs = 2};
            both->args = alloc(&b, sizeof(gd_expr *) * 2);
            both->args[0] = src->where;
            both->args[1] = plan->where;
            plan->where = both;
        } else plan->where = src->where;
    }
    plan->source = b.sc.reads;
    plan->row_width = src->is_table ? b.sc.ncols : b.sc.reads->width;
    note_final(&b, plan);
    size_check size = {GD_EXPR_MAX_NODES, true};
    for (int i = 0; i < plan->ncols; i++) size_of(&size, plan->proj[i]);
    size_of(&size, plan->where);
    if (too_large(q, &size, err)) return GD_ERR;
    if (src->is_table && !push) {
        plan->kind = GD_PLAN_PULL_TABLE;
        if (!bind_order(&b, q, plan)) return GD_ERR;
        narrow_scan(&b, plan, plan->where);
        split_key_filter(&b, plan);
    } else plan->kind = src->is_table ? GD_PLAN_PUSH_TABLE : GD_PLAN_PUSH_STREAM;
    plan->pii_use = b.pii_use;
    return b.failed ? GD_ERR : GD_OK;
}

/* A key filter's text as a value of the key column's type; text no value
 * of that type renders as (not a key gamingd writes) stays text, which
 * matches no row of a column that is not a STRING. */
static gd_value key_filter_value(binder *b, gd_coltype type, gd_str text)
{
    text = gd_arena_strdup(b->arena, text);
    gd_value v = gd_key_value(type, text);
    if (type == GD_T_STRING) return v;
    gd_buf shown = {0};
    gd_key_text(v, &shown);
    bool same = shown.len == text.len && (!text.len || !memcmp(shown.p, text.p, text.len));
    gd_buf_free(&shown);
    return same ? v : (gd_value){.t = GD_V_STR, .s = text};
}

int gd_sql_plan_rows(const gd_catalog *cat, const gd_query *q, const char *order_by, bool desc, int64_t limit,
                     gd_arena *arena, gd_query_plan *plan, gd_sql_error *err)
{
    memset(plan, 0, sizeof *plan);
    binder b = {.cat = cat, .arena = arena, .err = err};
    const gd_tabledef *t = q->t;
    gd_sql_select from = {.from = gd_str_c(t->name)};
    if (!open_scope(&b, &from)) return GD_ERR;
    if (!b.sc.entry->is_table || b.sc.entry->table != t)
        return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "%s is not the table asked for", t->name);
    scope *s = &b.sc;
    plan->kind = GD_PLAN_PULL_TABLE;
    plan->source = s->entry;
    note_final(&b, plan);
    plan->ncols = plan->row_width = s->ncols;
    plan->names = alloc(&b, sizeof *plan->names * (size_t)s->ncols);
    for (int i = 0; i < s->ncols; i++)
        plan->names[i] = i == s->windowed_at ? "window_start" : s->windowed_at >= 0 && i == s->windowed_at + 1 ? "window_end"
                                                                                                                : s->names[i];
    plan->types = s->types;
    plan->proj = s->exprs;
    plan->pii = s->pii;
    plan->limit = limit;
    plan->nulls_low = true;
    plan->key_desc = desc;
    plan->order_cols = alloc(&b, sizeof *plan->order_cols);
    if (order_by) {
        int col = -1;
        for (int i = 0; i < plan->ncols && col < 0; i++)
            if (!strcmp(order_by, plan->names[i])) col = i;
        if (col < 0) return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "order_by: %s has no column '%s'", t->name, order_by);
        if (gd_coltype_collection(plan->types[col]))
            return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "order_by: %s is %s: ARRAYs and MAPs have no order",
                               order_by, gd_coltype_name(plan->types[col]));
        plan->order = alloc(&b, sizeof *plan->order);
        plan->order->desc = desc;
        plan->order_cols[0] = col;
        plan->norder = 1;
        if (plan->pii[col]) plan->pii_use = (gd_pii_use){plan->names[col], "ordering by"};
    }
    for (int k = 0; k < t->nkeys; k++) { /* keys come first in the row */
        if (!q->key_eq[k].p) continue;
        plan->key_values[k] = alloc(&b, sizeof *plan->key_values[k]);
        plan->key_values[k][0] = key_filter_value(&b, t->keys[k].type, q->key_eq[k]);
        plan->nkey_values[k] = 1;
        if (plan->pii[k] && !plan->pii_use.column) plan->pii_use = (gd_pii_use){plan->names[k], "filtering on"};
    }
    plan->window_latest = q->mode == GD_WINDOWS_LATEST;
    plan->window_from = plan->window_latest ? INT64_MIN : q->from;
    plan->window_to = plan->window_latest ? INT64_MAX : q->to;
    return GD_OK;
}

int gd_sql_plan_column(const gd_query_plan *plan, const char *name)
{
    for (int i = 0; i < plan->ncols; i++)
        if (!strcmp(name, plan->names[i])) return i;
    return -1;
}

static gd_expr *new_node(binder *b, gd_expr_op op, gd_coltype type, int nargs)
{
    gd_expr *e = alloc(b, sizeof *e);
    *e = (gd_expr){.op = op, .type = type, .nargs = (uint16_t)nargs};
    e->args = alloc(b, sizeof *e->args * (size_t)(nargs ? nargs : 1));
    return e;
}

static gd_expr *new_lit(binder *b, gd_value v, gd_coltype type)
{
    gd_expr *e = new_node(b, GD_E_LIT, type, 0);
    e->lit = v;
    return e;
}

/* A column of a dashboard's row as its filters see it: a key as its text
 * (what the payload names and the filters compare), any other as it is. */
static gd_expr *filtered_column(binder *b, const gd_query_plan *plan, int col)
{
    gd_expr *c = new_col(b, col, plan->types[col]);
    if (col >= plan->source->table->nkeys || plan->types[col] == GD_T_STRING) return c;
    gd_expr *text = new_node(b, GD_E_CAST, GD_T_STRING, 1);
    text->args[0] = c;
    return text;
}

static void note_filter(gd_query_plan *plan, int col)
{
    if (plan->pii[col] && !plan->pii_use.column) plan->pii_use = (gd_pii_use){plan->names[col], "filtering on"};
}

/* An ad hoc filter on column col: the text and, when it is one, its number. */
static int bind_filter(binder *b, gd_query_plan *plan, int col, const gd_sql_filter *f)
{
    static const char *const op_names[] = {"=", "!=", "<", ">", "=~", "!~"};
    gd_expr *x = new_node(b, GD_E_FILTER, GD_T_BOOLEAN, 3);
    x->index = (int)f->op;
    x->args[0] = filtered_column(b, plan, col);
    gd_str text = gd_arena_strdup(b->arena, gd_str_c(f->value));
    x->args[1] = new_lit(b, (gd_value){.t = GD_V_STR, .s = text}, GD_T_STRING);
    char *end;
    double num = strtod(f->value, &end);
    x->args[2] = *f->value && !*end ? new_lit(b, (gd_value){.t = GD_V_DBL, .d = num}, GD_T_DOUBLE)
                                    : new_lit(b, (gd_value){.t = GD_V_NULL}, GD_T_NULL);
    plan->where = and_of(b, plan->where, x); /* first, so that gd_sql_plan_free finds its regex */
    note_filter(plan, col);
    if (f->op != GD_FILTER_MATCH && f->op != GD_FILTER_NOT_MATCH) return GD_OK;
    char why[256]; /* matching the whole value, bounded (server/regex.h) */
    if (gd_regex_compile(&x->re, f->value, strlen(f->value), why, sizeof why))
        return gd_sql_fail(b->err, GD_SQL_BAD_REQUEST, "filter %s %s: the regular expression is refused: %s", f->column,
                           op_names[f->op], why);
    return GD_OK;
}

int gd_sql_plan_dashboard(const gd_catalog *cat, const gd_sql_dashboard *d, gd_arena *arena, gd_query_plan *plan,
                          gd_sql_error *err)
{
    const gd_tabledef *t = d->q.t;
    gd_query q = d->q;
    for (int k = 0; k < t->nkeys; k++) /* a single value is a seek */
        q.key_eq[k] = d->nkey_in[k] == 1 ? d->key_in[k][0] : GD_STR_NULL;
    bool newest_first = d->newest_first && gd_table_windowed(t);
    if (gd_sql_plan_rows(cat, &q, newest_first ? "window_start" : NULL, newest_first, d->limit, arena, plan, err))
        return GD_ERR;
    plan->key_desc = false; /* each window's rows in key order */
    plan->pii_use = (gd_pii_use){0};
    binder b = {.cat = cat, .arena = arena, .err = err};
    for (int k = 0; k < t->nkeys; k++) { /* keys come first in the row */
        if (!d->nkey_in[k]) continue;
        note_filter(plan, k);
        if (d->nkey_in[k] == 1) continue;
        gd_expr *in = new_node(&b, GD_E_IN, GD_T_BOOLEAN, 1 + d->nkey_in[k]);
        in->args[0] = filtered_column(&b, plan, k);
        for (int i = 0; i < d->nkey_in[k]; i++)
            in->args[1 + i] = new_lit(&b, (gd_value){.t = GD_V_STR, .s = gd_arena_strdup(arena, d->key_in[k][i])},
                                      GD_T_STRING);
        plan->where = and_of(&b, plan->where, in);
    }
    int applied = 0;
    for (int i = 0; i < d->nfilters; i++) {
        int col = gd_sql_plan_column(plan, d->filters[i].column);
        if (col < 0) continue;
        if (++applied > GD_PLAN_MAX_FILTERS)
            return gd_sql_fail(err, GD_SQL_BAD_REQUEST, "at most %d ad hoc filters", GD_PLAN_MAX_FILTERS);
        if (bind_filter(&b, plan, col, &d->filters[i])) return GD_ERR;
    }
    split_key_filter(&b, plan);
    return GD_OK;
}

static bool free_regex(const gd_expr *e, void *ctx)
{
    (void)ctx;
    if (e->op == GD_E_FILTER) gd_regex_free(e->re);
    return false;
}

void gd_sql_plan_free(gd_query_plan *plan)
{
    if (plan->where) gd_expr_any(plan->where, free_regex, NULL);
    if (plan->where_keys) gd_expr_any(plan->where_keys, free_regex, NULL);
    plan->where = plan->where_keys = NULL;
}
/* ---- filtered push subscriptions ---- */

/* A filter's text as the condition on column col (of type type): the
 * column equal to the text read as a value of that type -- a number
 * compares as a number, true and false as booleans, a string as the same
 * bytes -- and the text null matching a null (and, in a STRING column, the
 * string "null"). Text no value of the column's type reads as matches
 * nothing. */
static gd_expr *filter_node(binder *b, gd_expr *col, gd_coltype type, const char *text)
{
    size_t len = strlen(text);
    gd_value v = {.t = GD_V_NULL};
    int64_t i;
    char *end;
    double d = strtod(text, &end);
    if (type == GD_T_STRING) v = (gd_value){.t = GD_V_STR, .s = gd_arena_strdup(b->arena, (gd_str){text, (uint32_t)len})};
    else if (gd_coltype_numeric(type) && gd_parse_int(text, len, INT64_MIN, INT64_MAX, &i) == GD_OK) v = (gd_value){.t = GD_V_INT, .i = i};
    else if (gd_coltype_numeric(type) && len && !*end) v = (gd_value){.t = GD_V_DBL, .d = d};
    else if (type == GD_T_BOOLEAN && (!strcmp(text, "true") || !strcmp(text, "false"))) v = (gd_value){.t = GD_V_BOOL, .i = text[0] == 't'};
    gd_expr *lit = alloc(b, sizeof *lit);
    *lit = (gd_expr){.op = GD_E_LIT, .type = v.t == GD_V_NULL ? GD_T_BOOLEAN : type, .lit = v};
    gd_expr *eq = alloc(b, sizeof *eq);
    *eq = (gd_expr){.op = GD_E_EQ, .type = GD_T_BOOLEAN, .nargs = 2, .args = alloc(b, sizeof(gd_expr *) * 2)};
    eq->args[0] = col;
    eq->args[1] = lit;
    if (v.t == GD_V_NULL) lit->lit = (gd_value){.t = GD_V_BOOL, .i = 0}; /* no value of the type: false */
    if (strcmp(text, "null")) return v.t == GD_V_NULL ? lit : eq;
    gd_expr *is_null = alloc(b, sizeof *is_null);
    *is_null = (gd_expr){.op = GD_E_IS_NULL, .type = GD_T_BOOLEAN, .nargs = 1, .args = alloc(b, sizeof(gd_expr *))};
    is_null->args[0] = col;
    if (v.t == GD_V_NULL) return is_null;
    gd_expr *either = alloc(b, sizeof *either);
    *either = (gd_expr){.op = GD_E_OR, .type = GD_T_BOOLEAN, .nargs = 2, .args = alloc(b, sizeof(gd_expr *) * 2)};
    either->args[0] = is_null;
    either->args[1] = eq;
    return either;
}

/* Ands c onto *where. */
static void and_onto(binder *b, gd_expr **where, gd_expr *c)
{
    if (!*where) {
        *where = c;
        return;
    }
    gd_expr *both = alloc(b, sizeof *both);
    *both = (gd_expr){.op = GD_E_AND, .type = GD_T_BOOLEAN, .nargs = 2, .args = alloc(b, sizeof(gd_expr *) * 2)};
    both->args[0] = *where;
    both->args[1] = c;
    *where = both;
}

/* Column c as events name it: a table's window bounds are window_start
 * and window_end there. */
static const char *event_member(const gd_sql_column *cols, int c)
{
    if (!cols[c].window) return cols[c].name;
    return c && cols[c - 1].window ? "window_end" : "window_start";
}

int gd_sql_plan_filters(const gd_catalog_entry *e, const char *const *names, const char *const *values, int n,
                        gd_arena *arena, gd_query_plan *plan, gd_sql_error *err)
{
    memset(plan, 0, sizeof *plan);
    binder b = {.arena = arena, .err = err};
    gd_sql_column cols[GD_MAX_KEYS + 2 + GD_MAX_COLS + 64];
    int ncols = gd_sql_columns(e, cols, (int)(sizeof cols / sizeof cols[0]));
    plan->kind = GD_PLAN_PUSH_EVENTS;
    plan->source = e;
    plan->limit = -1;
    plan->row_width = e->is_table ? ncols : e->width;
    for (int f = 0; f < n; f++) {
        int c = 0;
        while (c < ncols && strcmp(event_member(cols, c), names[f])) c++;
        if (c == ncols)
            return gd_sql_fail(err, GD_SQL_BAD_REQUEST,
                               "unknown parameter '%s': %s has no such column (GET /v1/streams lists them)", names[f], e->name);
        if (cols[c].pii && !plan->pii_use.column) plan->pii_use = (gd_pii_use){event_member(cols, c), "filtering on"};
        gd_expr *col = new_col(&b, e->is_table ? c : e->cols[c].id, cols[c].type);
        and_onto(&b, &plan->where, filter_node(&b, col, cols[c].type, values[f]));
    }
    return GD_OK;
}
