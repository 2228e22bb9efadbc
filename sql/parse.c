/* parse.c -- the grammar of gamingd's SQL, by recursive descent.
 *
 * The grammar, all of it (keywords in capitals are case-insensitive; [x]
 * optional, {x} repeated, a | b alternatives):
 *
 *   script     = statement {';' statement} [';']
 *   statement  = query
 *              | CREATE (TABLE|STREAM) [IF NOT EXISTS] name [with] AS query
 *              | CREATE (TABLE|STREAM) [IF NOT EXISTS] name '(' coldecl {',' coldecl} ')' [with]
 *              | DROP (TABLE|STREAM) [IF EXISTS] name [DELETE TOPIC]
 *              | (SHOW|LIST) (STREAMS|TABLES|QUERIES|PROPERTIES|VARIABLES|FUNCTIONS) [EXTENDED]
 *              | DESCRIBE [EXTENDED] name | DESCRIBE FUNCTION name
 *              | TERMINATE (name | ALL)
 *              | DEFINE name '=' 'string' | UNDEFINE name
 *                (${name} anywhere is replaced before parsing: gd_sql_substitute)
 *   with       = WITH '(' name '=' literal {',' name '=' literal} ')'
 *   coldecl    = name type [PRIMARY KEY | KEY] [PII]
 *   type       = STRING | VARCHAR | INT | INTEGER | BIGINT | DOUBLE | BOOLEAN
 *   query      = SELECT item {',' item} FROM name [[AS] name] {clause}
 *   clause     = WINDOW TUMBLING '(' SIZE duration [',' GRACE PERIOD duration] ')'
 *              | WINDOW HOPPING '(' SIZE duration ',' ADVANCE BY duration [',' GRACE PERIOD duration] ')'
 *              | WINDOW SESSION '(' duration [',' GRACE PERIOD duration] ')'
 *              | WHERE expr | GROUP BY (expr {',' expr} | '(' expr ',' expr {',' expr} ')') | HAVING expr
 *              | PARTITION BY sum {',' sum}
 *              | EMIT (CHANGES|FINAL) | ORDER BY expr [ASC|DESC] {',' ...} | LIMIT integer
 *                (each at most once, in any order: ksqlDB puts WINDOW before
 *                WHERE, the data product's README the other way round)
 *   duration   = integer (MILLISECOND|SECOND|MINUTE|HOUR|DAY)[S]
 *   item       = '*' | name '.' '*' | expr [[AS] name]
 *   expr       = and {OR and}
 *   and        = not {AND not}
 *   not        = NOT not | predicate
 *   predicate  = sum [ cmp sum | [NOT] BETWEEN sum AND sum | [NOT] IN '(' expr {',' expr} ')'
 *                    | [NOT] LIKE sum [ESCAPE 'c'] | IS [NOT] NULL | IS [NOT] DISTINCT FROM sum ]
 *   cmp        = '=' | '!=' | '<>' | '<' | '<=' | '>' | '>='
 *   sum        = product {('+'|'-'|'||') product}
 *   product    = unary {('*'|'/'|'%') unary}
 *   unary      = ('-'|'+') unary | primary
 *   primary    = literal | '(' expr ')' | CASE [expr] WHEN expr THEN expr {WHEN ...} [ELSE expr] END
 *              | CAST '(' expr AS type ')' | name '(' [DISTINCT] ['*' | expr {',' expr}] ')'
 *              | name ['.' name]
 *   literal    = integer | decimal | 'string' | TRUE | FALSE | NULL
 *
 * What ksqlDB has and gamingd does not (joins, INSERT,
 * PRINT, ...) is recognised where it starts and refused by name.
 * The parser builds gd_expr trees with names unbound; plan.c binds them.
 *
 * Every request is bounded here, before anything recurses on what it
 * wrote (store/expr.h says why): an expression may nest at most
 * GD_EXPR_MAX_DEPTH levels, counted both in the text (parentheses,
 * arguments, prefix operators: the parser's own recursion) and in the tree
 * it builds (each node's height, so that a chain 1+1+...+1, which the
 * grammar reads in a loop, counts a level an operator); a statement holds
 * at most GD_EXPR_MAX_NODES expression nodes in all (a CASE's operand
 * counted again for each WHEN it is compared in); a script holds at most
 * MAX_STATEMENTS statements. Past any of them the statement is refused
 * with its line and column, as a syntax error is. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sql.h"

/* Statements in one script: each /ksql statement is answered in one
 * reply, so this bounds a request's work and its answer. */
enum { MAX_STATEMENTS = 64 };
/* Hopping windows a record falls in at most (SIZE / ADVANCE BY): each is
 * an update of the table per record. */
enum { MAX_HOPS = 64 };

typedef struct {
    gd_lexer lx;
    int depth;     /* of the expression being parsed, in the text */
    int nodes;     /* expression nodes in the statement being parsed */
    gd_token tok;  /* the current token */
    gd_token prev; /* the one before */
    gd_arena *arena;
    gd_sql_error *err;
    bool failed;
} parser;

int gd_sql_fail(gd_sql_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    err->code = code;
    if (!err->http_status) err->http_status = code / 100;
    return GD_ERR;
}

int gd_sql_fail_at(gd_sql_error *err, uint32_t line, uint32_t col, const char *fmt, va_list ap)
{
    char msg[420];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (line) return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "line %u:%u: %s", line, col, msg);
    return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "%s", msg);
}

static void next(parser *p)
{
    p->prev = p->tok;
    p->tok = gd_lexer_next(&p->lx);
}

/* Records the first error, at the current token. */
static void fail_at(parser *p, const gd_token *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail_at(parser *p, const gd_token *t, const char *fmt, ...)
{
    if (p->failed) return;
    p->failed = true;
    va_list ap;
    va_start(ap, fmt);
    gd_sql_fail_at(p->err, t->line, t->col, fmt, ap);
    va_end(ap);
}

/* "'text'" of a token for messages. */
static const char *shown(const gd_token *t, char *buf, size_t n)
{
    if (t->type == GD_TK_EOF) return "end of input";
    if (t->type == GD_TK_ERROR) return "an invalid token";
    snprintf(buf, n, "'%.*s'", (int)(t->text.len > 40 ? 40 : t->text.len), t->text.p);
    return buf;
}

static void syntax_error(parser *p, const char *expected)
{
    char buf[64];
    if (p->tok.type == GD_TK_ERROR) fail_at(p, &p->tok, "%.*s", (int)p->tok.text.len, p->tok.text.p);
    else fail_at(p, &p->tok, "syntax error at %s: expected %s", shown(&p->tok, buf, sizeof buf), expected);
}

static bool accept_kw(parser *p, const char *kw)
{
    if (!gd_token_is_word(&p->tok, kw)) return false;
    next(p);
    return true;
}

static bool expect_kw(parser *p, const char *kw)
{
    if (accept_kw(p, kw)) return true;
    syntax_error(p, kw);
    return false;
}

static bool is_sym(const gd_token *t, const char *sym)
{
    return t->type == GD_TK_SYMBOL && t->text.len && t->text.p[0] == sym[0] && strlen(sym) == t->text.len &&
           !memcmp(t->text.p, sym, t->text.len);
}

static bool accept_sym(parser *p, const char *sym)
{
    if (!is_sym(&p->tok, sym)) return false;
    next(p);
    return true;
}

static bool expect_sym(parser *p, const char *sym)
{
    if (accept_sym(p, sym)) return true;
    char want[8];
    snprintf(want, sizeof want, "'%s'", sym);
    syntax_error(p, want);
    return false;
}

/* Words that cannot be names without quotes. */
static bool reserved(const gd_token *t)
{
    static const char *const words[] = {
        "SELECT", "FROM", "WHERE", "GROUP", "BY",   "HAVING", "WINDOW", "EMIT",  "LIMIT", "ORDER",   "AND",
        "OR",     "NOT",  "IS",    "NULL",  "IN",   "BETWEEN", "LIKE",  "CASE",  "WHEN",  "THEN",    "ELSE",
        "END",    "CAST", "AS",    "TRUE",  "FALSE", "JOIN",  "ON",     "LEFT",  "RIGHT", "INNER",   "FULL",
        "OUTER",  "PARTITION", "WITHIN", "ASC", "DESC"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (gd_token_is_word(t, words[i])) return true;
    return false;
}

static bool is_name(const gd_token *t) { return t->type == GD_TK_QIDENT || (t->type == GD_TK_IDENT && !reserved(t)); }

static bool name(parser *p, gd_str *out, const char *what)
{
    if (!is_name(&p->tok)) {
        syntax_error(p, what);
        return false;
    }
    *out = p->tok.text;
    next(p);
    return true;
}

/* Counts n more nodes in the statement; false (and an error at `at`)
 * past GD_EXPR_MAX_NODES. */
static bool count_nodes(parser *p, int n, const gd_token *at)
{
    if (p->failed) return false;
    if ((p->nodes += n) <= GD_EXPR_MAX_NODES) return true;
    fail_at(p, at, "the statement is too large: its expressions have more than %d parts (operators, names and values) in all",
            GD_EXPR_MAX_NODES);
    return false;
}

/* A new node (args to be filled, then sealed), or NULL past the limit. */
static gd_expr *node(parser *p, gd_expr_op op, int nargs, const gd_token *at)
{
    if (!count_nodes(p, 1, at)) return NULL;
    gd_expr *e = gd_arena_alloc(p->arena, sizeof *e);
    memset(e, 0, sizeof *e);
    e->op = op;
    e->nargs = (uint16_t)nargs;
    e->args = nargs ? gd_arena_alloc(p->arena, sizeof(gd_expr *) * (size_t)nargs) : NULL;
    e->line = at->line;
    e->col = at->col;
    e->index = -1;
    e->height = 1;
    return e;
}

/* A node whose arguments are all there: its height counted, NULL (and an
 * error at it) past GD_EXPR_MAX_DEPTH. */
static gd_expr *sealed(parser *p, gd_expr *e)
{
    if (!e) return NULL;
    int h = 0;
    for (int i = 0; i < e->nargs; i++)
        if (e->args[i]->height > h) h = e->args[i]->height;
    if (h >= GD_EXPR_MAX_DEPTH) {
        gd_token at = {.line = e->line, .col = e->col};
        fail_at(p, &at, "expression nested more than %d levels deep (each operator of a chain such as a + b + c "
                        "is a level)", GD_EXPR_MAX_DEPTH);
        return NULL;
    }
    e->height = (uint16_t)(h + 1);
    return e;
}

/* Room for element n of an arena array of `size`-byte elements: *arr is
 * moved to a twice larger one when full (the old one stays in the arena). */
static void *grow(gd_arena *arena, void *arr, int n, int *cap, size_t size)
{
    if (n < *cap) return arr;
    int bigger = *cap ? *cap * 2 : 4;
    void *more = gd_arena_alloc(arena, size * (size_t)bigger);
    if (n) memcpy(more, arr, size * (size_t)n);
    *cap = bigger;
    return more;
}

/* A growable array of expressions in the arena. */
typedef struct {
    gd_expr **v;
    int n, cap;
} expr_list;

static void list_push(parser *p, expr_list *l, gd_expr *e)
{
    l->v = grow(p->arena, l->v, l->n, &l->cap, sizeof *l->v);
    l->v[l->n++] = e;
}

static gd_expr *from_list(parser *p, gd_expr_op op, const expr_list *l, const gd_token *at)
{
    gd_expr *e = node(p, op, l->n, at);
    if (e && l->n) memcpy(e->args, l->v, sizeof *l->v * (size_t)l->n);
    return sealed(p, e);
}

static gd_expr *expr(parser *p);

/* ---- types and literals ---- */

static bool type_name(parser *p, gd_coltype *out)
{
    static const struct {
        const char *name;
        gd_coltype type;
    } types[] = {{"STRING", GD_T_STRING},   {"VARCHAR", GD_T_STRING}, {"INT", GD_T_INTEGER},
                 {"INTEGER", GD_T_INTEGER}, {"BIGINT", GD_T_BIGINT},  {"DOUBLE", GD_T_DOUBLE},
                 {"BOOLEAN", GD_T_BOOLEAN}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (accept_kw(p, types[i].name)) {
            *out = types[i].type;
            return true;
        }
    if (p->tok.type == GD_TK_IDENT)
        fail_at(p, &p->tok, "type %.*s is not supported (STRING, INTEGER, BIGINT, DOUBLE, BOOLEAN are)",
                (int)p->tok.text.len, p->tok.text.p);
    else syntax_error(p, "a type");
    return false;
}

static gd_expr *literal(parser *p)
{
    gd_token t = p->tok;
    if (t.type != GD_TK_INTEGER && t.type != GD_TK_DECIMAL && t.type != GD_TK_STRING && !gd_token_is_word(&t, "TRUE") &&
        !gd_token_is_word(&t, "FALSE") && !gd_token_is_word(&t, "NULL"))
        return NULL;
    gd_expr *e = node(p, GD_E_LIT, 0, &t);
    if (!e) return NULL;
    char buf[64];
    if (t.type == GD_TK_INTEGER) {
        int64_t v;
        gd_str digits = t.text; /* leading zeros say nothing (000042 is 42) */
        while (digits.len > 1 && digits.p[0] == '0') digits.p++, digits.len--;
        snprintf(buf, sizeof buf, "%.*s", (int)(digits.len < 63 ? digits.len : 63), digits.p);
        if (digits.len > 19 || gd_parse_int(buf, strlen(buf), 0, INT64_MAX, &v)) {
            fail_at(p, &t, "number %s is out of range", shown(&t, buf, sizeof buf));
            return NULL;
        }
        e->lit = (gd_value){.t = GD_V_INT, .i = v};
        e->type = v <= INT32_MAX ? GD_T_INTEGER : GD_T_BIGINT;
    } else if (t.type == GD_TK_DECIMAL) {
        snprintf(buf, sizeof buf, "%.*s", (int)(t.text.len < 63 ? t.text.len : 63), t.text.p);
        e->lit = (gd_value){.t = GD_V_DBL, .d = strtod(buf, NULL)};
        e->type = GD_T_DOUBLE;
    } else if (t.type == GD_TK_STRING) {
        e->lit = (gd_value){.t = GD_V_STR, .s = t.text};
        e->type = GD_T_STRING;
    } else if (gd_token_is_word(&t, "TRUE") || gd_token_is_word(&t, "FALSE")) {
        e->lit = (gd_value){.t = GD_V_BOOL, .i = gd_token_is_word(&t, "TRUE")};
        e->type = GD_T_BOOLEAN;
    } else {
        e->lit = (gd_value){.t = GD_V_NULL};
        e->type = GD_T_NULL;
    }
    next(p);
    return e;
}

/* ---- expressions ---- */

static gd_expr *case_expr(parser *p, const gd_token *at)
{
    expr_list l = {0};
    gd_expr *operand = NULL;
    int before = p->nodes;
    if (!gd_token_is_word(&p->tok, "WHEN")) { /* CASE x WHEN v THEN ...: x = v, x walked once a WHEN */
        if (!(operand = expr(p))) return NULL;
    }
    int operand_nodes = p->nodes - before;
    while (!p->failed && accept_kw(p, "WHEN")) {
        gd_token when_at = p->prev;
        gd_expr *cond = expr(p);
        if (!cond || !expect_kw(p, "THEN")) return NULL;
        if (operand) {
            gd_expr *eq = l.n && !count_nodes(p, operand_nodes, &when_at) ? NULL : node(p, GD_E_EQ, 2, &when_at);
            if (!eq) return NULL;
            eq->args[0] = operand;
            eq->args[1] = cond;
            if (!(cond = sealed(p, eq))) return NULL;
        }
        list_push(p, &l, cond);
        gd_expr *then = expr(p);
        if (!then) return NULL;
        list_push(p, &l, then);
    }
    if (!l.n) {
        syntax_error(p, "WHEN");
        return NULL;
    }
    bool has_else = accept_kw(p, "ELSE");
    if (has_else) {
        gd_expr *e = expr(p);
        if (!e) return NULL;
        list_push(p, &l, e);
    }
    if (!expect_kw(p, "END")) return NULL;
    gd_expr *e = from_list(p, GD_E_CASE, &l, at);
    e->has_else = has_else;
    return e;
}

static gd_expr *call_expr(parser *p, gd_token fn)
{
    gd_expr *e = node(p, GD_E_CALL, 0, &fn);
    if (!e) return NULL;
    e->name = fn.text;
    if (accept_kw(p, "DISTINCT")) e->distinct = true;
    expr_list l = {0};
    if (accept_sym(p, "*")) e->star = true;
    else if (!is_sym(&p->tok, ")")) {
        do {
            gd_expr *a = expr(p);
            if (!a) return NULL;
            list_push(p, &l, a);
        } while (accept_sym(p, ","));
    }
    if (!expect_sym(p, ")")) return NULL;
    e->nargs = (uint16_t)l.n;
    e->args = l.v;
    return sealed(p, e);
}

static gd_expr *primary(parser *p)
{
    gd_token t = p->tok;
    gd_expr *lit = literal(p);
    if (lit || p->failed) return lit;
    if (accept_sym(p, "(")) {
        gd_expr *e = expr(p);
        return e && expect_sym(p, ")") ? e : NULL;
    }
    if (accept_kw(p, "CASE")) return case_expr(p, &t);
    if (accept_kw(p, "CAST")) {
        gd_expr *e = node(p, GD_E_CAST, 1, &t);
        if (!e || !expect_sym(p, "(") || !(e->args[0] = expr(p)) || !expect_kw(p, "AS") || !type_name(p, &e->type) ||
            !expect_sym(p, ")"))
            return NULL;
        return sealed(p, e);
    }
    if (is_name(&t)) {
        next(p);
        if (t.type == GD_TK_IDENT && accept_sym(p, "(")) return call_expr(p, t);
        gd_expr *e = node(p, GD_E_NAME, 0, &t);
        if (!e) return NULL;
        e->name = t.text;
        if (accept_sym(p, ".")) { /* alias.column */
            e->qualifier = t.text;
            gd_token c = p->tok;
            if (!name(p, &e->name, "a column name")) return NULL;
            e->line = c.line;
            e->col = c.col;
        }
        return e;
    }
    syntax_error(p, "an expression");
    return NULL;
}

/* Counts a level of nesting in the text; false (and an error) past
 * GD_EXPR_MAX_DEPTH. */
static bool deeper(parser *p)
{
    if (++p->depth <= GD_EXPR_MAX_DEPTH) return true;
    fail_at(p, &p->tok, "expression nested more than %d levels deep", GD_EXPR_MAX_DEPTH);
    return false;
}

static gd_expr *unary(parser *p);

/* The operand of a prefix operator, a level deeper. */
static gd_expr *prefixed(parser *p)
{
    gd_expr *e = !p->failed && deeper(p) ? unary(p) : NULL;
    p->depth--;
    return e;
}

static gd_expr *unary(parser *p)
{
    gd_token t = p->tok;
    if (accept_sym(p, "-")) {
        gd_expr *a = prefixed(p);
        if (!a) return NULL;
        if (a->op == GD_E_LIT && a->lit.t == GD_V_INT) { /* -2147483648 stays an INTEGER */
            a->lit.i = -a->lit.i;
            a->type = a->lit.i >= INT32_MIN ? GD_T_INTEGER : GD_T_BIGINT;
            return a;
        }
        if (a->op == GD_E_LIT && a->lit.t == GD_V_DBL) {
            a->lit.d = -a->lit.d;
            return a;
        }
        gd_expr *e = node(p, GD_E_NEG, 1, &t);
        if (!e) return NULL;
        e->args[0] = a;
        return sealed(p, e);
    }
    if (accept_sym(p, "+")) return prefixed(p);
    return primary(p);
}

static gd_expr *binary(parser *p, gd_expr_op op, gd_expr *l, gd_expr *r, const gd_token *at)
{
    if (!l || !r) return NULL;
    gd_expr *e = node(p, op, 2, at);
    if (!e) return NULL;
    e->args[0] = l;
    e->args[1] = r;
    return sealed(p, e);
}

static gd_expr *product(parser *p)
{
    gd_expr *e = unary(p);
    while (e) {
        gd_token t = p->tok;
        gd_expr_op op = accept_sym(p, "*") ? GD_E_MUL : accept_sym(p, "/") ? GD_E_DIV : accept_sym(p, "%") ? GD_E_MOD : GD_E_LIT;
        if (op == GD_E_LIT) break;
        e = binary(p, op, e, unary(p), &t);
    }
    return e;
}

static gd_expr *sum(parser *p)
{
    gd_expr *e = product(p);
    while (e) {
        gd_token t = p->tok;
        gd_expr_op op = accept_sym(p, "+") || accept_sym(p, "||") ? GD_E_ADD : accept_sym(p, "-") ? GD_E_SUB : GD_E_LIT;
        if (op == GD_E_LIT) break;
        e = binary(p, op, e, product(p), &t);
    }
    return e;
}

static gd_expr *predicate(parser *p)
{
    gd_expr *e = sum(p);
    if (!e) return NULL;
    gd_token t = p->tok;
    static const struct {
        const char *sym;
        gd_expr_op op;
    } cmps[] = {{"=", GD_E_EQ}, {"!=", GD_E_NE}, {"<>", GD_E_NE}, {"<", GD_E_LT},
                {"<=", GD_E_LE}, {">", GD_E_GT}, {">=", GD_E_GE}};
    for (size_t i = 0; i < sizeof cmps / sizeof cmps[0]; i++)
        if (accept_sym(p, cmps[i].sym)) return binary(p, cmps[i].op, e, sum(p), &t);
    if (accept_kw(p, "IS")) {
        bool not = accept_kw(p, "NOT");
        if (accept_kw(p, "DISTINCT")) {
            if (!expect_kw(p, "FROM")) return NULL;
            gd_expr *n = binary(p, GD_E_DISTINCT, e, sum(p), &t);
            if (n) n->negated = not;
            return n;
        }
        gd_expr *n = node(p, GD_E_IS_NULL, 1, &t);
        if (!n) return NULL;
        n->negated = not;
        n->args[0] = e;
        return expect_kw(p, "NULL") ? sealed(p, n) : NULL;
    }
    bool negated = accept_kw(p, "NOT");
    if (accept_kw(p, "BETWEEN")) {
        gd_expr *n = node(p, GD_E_BETWEEN, 3, &t);
        if (!n) return NULL;
        n->negated = negated;
        n->args[0] = e;
        if (!(n->args[1] = sum(p)) || !expect_kw(p, "AND") || !(n->args[2] = sum(p))) return NULL;
        return sealed(p, n);
    }
    if (accept_kw(p, "IN")) {
        expr_list l = {0};
        list_push(p, &l, e);
        if (!expect_sym(p, "(")) return NULL;
        do {
            gd_expr *v = expr(p);
            if (!v) return NULL;
            list_push(p, &l, v);
        } while (accept_sym(p, ","));
        if (!expect_sym(p, ")")) return NULL;
        gd_expr *n = from_list(p, GD_E_IN, &l, &t);
        if (n) n->negated = negated;
        return n;
    }
    if (accept_kw(p, "LIKE")) {
        gd_expr *pattern = sum(p);
        gd_token esc = p->tok;
        if (!pattern || !accept_kw(p, "ESCAPE")) {
            gd_expr *n = binary(p, GD_E_LIKE, e, pattern, &t);
            if (n) n->negated = negated;
            return n;
        }
        gd_expr *n = node(p, GD_E_LIKE, 3, &t), *c = n ? literal(p) : NULL;
        if (!c) {
            if (n && !p->failed) syntax_error(p, "an escape character ('!')");
            return NULL;
        }
        if (c->lit.t != GD_V_STR || c->lit.s.len != 1 || c->lit.s.p[0] & 0x80 || c->lit.s.p[0] == '%' ||
            c->lit.s.p[0] == '_') {
            fail_at(p, &esc, "ESCAPE takes one ASCII character other than %% and _, as a string ('!')");
            return NULL;
        }
        n->negated = negated;
        n->args[0] = e;
        n->args[1] = pattern;
        n->args[2] = c;
        return sealed(p, n);
    }
    if (negated) {
        syntax_error(p, "BETWEEN, IN or LIKE");
        return NULL;
    }
    return e;
}

static gd_expr *not_expr(parser *p)
{
    gd_token t = p->tok;
    if (accept_kw(p, "NOT")) {
        gd_expr *a = !p->failed && deeper(p) ? not_expr(p) : NULL;
        p->depth--;
        if (!a) return NULL;
        gd_expr *e = node(p, GD_E_NOT, 1, &t);
        if (!e) return NULL;
        e->args[0] = a;
        return sealed(p, e);
    }
    return predicate(p);
}

static gd_expr *and_expr(parser *p)
{
    gd_expr *e = not_expr(p);
    while (e) {
        gd_token t = p->tok;
        if (!accept_kw(p, "AND")) break;
        e = binary(p, GD_E_AND, e, not_expr(p), &t);
    }
    return e;
}

static gd_expr *expr_inner(parser *p);

static gd_expr *expr(parser *p)
{
    gd_expr *e = !p->failed && deeper(p) ? expr_inner(p) : NULL;
    p->depth--;
    return e;
}

static gd_expr *expr_inner(parser *p)
{
    gd_expr *e = and_expr(p);
    while (e) {
        gd_token t = p->tok;
        if (!accept_kw(p, "OR")) break;
        e = binary(p, GD_E_OR, e, and_expr(p), &t);
    }
    return e;
}

/* ---- queries ---- */

/* n UNIT: positive, or (may_be_zero: a grace) also 0. */
static bool duration(parser *p, int64_t *ms, bool may_be_zero)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"MILLISECOND", 1}, {"SECOND", 1000}, {"MINUTE", 60000}, {"HOUR", 3600000}, {"DAY", 86400000}};
    gd_token t = p->tok;
    if (t.type != GD_TK_INTEGER) {
        syntax_error(p, "a whole number");
        return false;
    }
    gd_expr *n = literal(p);
    if (!n) return false;
    gd_token u = p->tok;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        size_t len = strlen(units[i].unit);
        if (u.type == GD_TK_IDENT && (u.text.len == len || (u.text.len == len + 1 && (u.text.p[len] | 32) == 's')) &&
            !strncasecmp(u.text.p, units[i].unit, len)) {
            next(p);
            if (n->lit.i > GD_MAX_TIMESTAMP / units[i].ms || (n->lit.i == 0 && !may_be_zero)) {
                fail_at(p, &t, "a window %s must be %s and at most 9999 years", may_be_zero ? "grace" : "duration",
                        may_be_zero ? "0 or more" : "positive");
                return false;
            }
            *ms = n->lit.i * units[i].ms;
            return true;
        }
    }
    syntax_error(p, "a time unit (MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS)");
    return false;
}

static bool window_clause(parser *p, gd_sql_select *q)
{
    q->session = accept_kw(p, "SESSION");
    bool hopping = !q->session && accept_kw(p, "HOPPING");
    if (q->session) { /* SESSION '(' gap */
        if (!expect_sym(p, "(") || !duration(p, &q->window_ms, false)) return false;
    } else if ((!hopping && !expect_kw(p, "TUMBLING")) || !expect_sym(p, "(") || !expect_kw(p, "SIZE") ||
               !duration(p, &q->window_ms, false)) {
        return false;
    }
    q->windowed = true;
    if (hopping) {
        gd_token at = p->tok;
        if (!expect_sym(p, ",") || !expect_kw(p, "ADVANCE") || !expect_kw(p, "BY") ||
            !duration(p, &q->advance_ms, false))
            return false;
        if (q->advance_ms > q->window_ms || q->window_ms / q->advance_ms > MAX_HOPS) {
            fail_at(p, &at, "ADVANCE BY must be at most SIZE and at least SIZE / %d: a record counts in each "
                            "window it falls in", MAX_HOPS);
            return false;
        }
        if (q->advance_ms == q->window_ms) q->advance_ms = 0; /* a tumbling window */
    }
    while (accept_sym(p, ",")) {
        if (accept_kw(p, "GRACE")) {
            if (!expect_kw(p, "PERIOD") || !duration(p, &q->grace_ms, true)) return false;
        } else if (gd_token_is_word(&p->tok, "RETENTION")) {
            fail_at(p, &p->tok, "RETENTION is not supported: every table keeps its windows for --retention");
            return false;
        } else {
            syntax_error(p, "GRACE PERIOD");
            return false;
        }
    }
    return expect_sym(p, ")");
}

static bool select_items(parser *p, gd_sql_select *q)
{
    int cap = 0;
    do {
        q->items = grow(p->arena, q->items, q->nitems, &cap, sizeof *q->items);
        gd_sql_item *it = &q->items[q->nitems++];
        memset(it, 0, sizeof *it);
        gd_token t = p->tok;
        if (accept_sym(p, "*")) {
            if (!(it->expr = node(p, GD_E_STAR, 0, &t))) return false;
            continue;
        }
        if (is_name(&t)) { /* alias.* */
            gd_lexer save = p->lx;
            gd_token save_tok = p->tok, save_prev = p->prev;
            next(p);
            if (accept_sym(p, ".") && accept_sym(p, "*")) {
                if (!(it->expr = node(p, GD_E_STAR, 0, &t))) return false;
                it->expr->qualifier = t.text;
                continue;
            }
            p->lx = save;
            p->tok = save_tok;
            p->prev = save_prev;
        }
        if (!(it->expr = expr(p))) return false;
        if (accept_kw(p, "AS")) {
            if (!name(p, &it->alias, "a column alias")) return false;
        } else if (is_name(&p->tok) && !gd_token_is_word(&p->tok, "FROM")) {
            it->alias = p->tok.text;
            next(p);
        }
    } while (accept_sym(p, ","));
    return true;
}

static bool expr_list_clause(parser *p, gd_expr ***out, int *n)
{
    expr_list l = {0};
    do {
        gd_expr *e = expr(p);
        if (!e) return false;
        list_push(p, &l, e);
    } while (accept_sym(p, ","));
    *out = l.v;
    *n = l.n;
    return true;
}

/* GROUP BY a, b or, as ksqlDB also takes it, GROUP BY (a, b); a single
 * parenthesized expression is the one key. */
static bool group_by_clause(parser *p, gd_sql_select *q)
{
    if (!is_sym(&p->tok, "(")) return expr_list_clause(p, &q->group_by, &q->ngroup);
    gd_lexer saved = p->lx;
    gd_token tok = p->tok, prev = p->prev;
    int nodes = p->nodes;
    accept_sym(p, "(");
    gd_expr *first = expr(p);
    if (!first || !is_sym(&p->tok, ",")) { /* not a list: read again as an expression */
        if (p->failed) return false;
        p->lx = saved, p->tok = tok, p->prev = prev, p->nodes = nodes;
        return expr_list_clause(p, &q->group_by, &q->ngroup);
    }
    expr_list l = {0};
    list_push(p, &l, first);
    while (accept_sym(p, ",")) {
        gd_expr *e = expr(p);
        if (!e) return false;
        list_push(p, &l, e);
    }
    if (!expect_sym(p, ")")) return false;
    q->group_by = l.v;
    q->ngroup = l.n;
    return true;
}

static bool order_clause(parser *p, gd_sql_select *q)
{
    int cap = 0;
    do {
        q->order = grow(p->arena, q->order, q->norder, &cap, sizeof *q->order);
        gd_sql_order *o = &q->order[q->norder++];
        if (!(o->expr = expr(p))) return false;
        o->desc = accept_kw(p, "DESC");
        if (!o->desc) accept_kw(p, "ASC");
    } while (accept_sym(p, ","));
    return true;
}

/* Where a token's text starts in the statement (a quoted one: at its quote). */
static uint32_t token_start(const gd_token *t)
{
    return t->offset - (t->type == GD_TK_STRING || t->type == GD_TK_QIDENT);
}

/* PARTITION BY a, b: value expressions, as ksqlDB's grammar has them (a
 * condition such as a AND b is a syntax error there too), each kept with
 * its text for the planner's messages. */
static bool partition_clause(parser *p, gd_sql_select *q)
{
    if (is_sym(&p->tok, "(")) {
        gd_lexer ahead = p->lx;
        gd_token after = gd_lexer_next(&ahead);
        if (is_sym(&after, ")")) {
            fail_at(p, &p->tok, "PARTITION BY requires at least one expression");
            return false;
        }
    }
    expr_list l = {0};
    int cap = 0;
    do {
        uint32_t from = token_start(&p->tok);
        gd_expr *e = !p->failed && deeper(p) ? sum(p) : NULL;
        p->depth--;
        if (!e) return false;
        list_push(p, &l, e);
        uint32_t to = token_start(&p->tok);
        while (to > from && (p->lx.start[to - 1] == ' ' || p->lx.start[to - 1] == '\t' || p->lx.start[to - 1] == '\n' ||
                             p->lx.start[to - 1] == '\r'))
            to--;
        q->partition_text = grow(p->arena, q->partition_text, l.n - 1, &cap, sizeof *q->partition_text);
        q->partition_text[l.n - 1] = (gd_str){p->lx.start + from, to - from};
    } while (accept_sym(p, ","));
    q->partition_by = l.v;
    q->npartition = l.n;
    return true;
}

/* A clause keyword seen twice. */
static bool once(parser *p, bool *seen, const gd_token *at)
{
    if (*seen) {
        fail_at(p, at, "%.*s is given twice", (int)at->text.len, at->text.p);
        return false;
    }
    return *seen = true;
}

static bool clauses(parser *p, gd_sql_select *q)
{
    bool window = false, where = false, group = false, having = false, emit = false, order = false, limit = false,
         partition = false;
    for (;;) {
        gd_token t = p->tok;
        if (accept_kw(p, "WINDOW")) {
            if (!once(p, &window, &t) || !window_clause(p, q)) return false;
        } else if (accept_kw(p, "WHERE")) {
            if (!once(p, &where, &t) || !(q->where = expr(p))) return false;
        } else if (accept_kw(p, "GROUP")) {
            if (!once(p, &group, &t) || !expect_kw(p, "BY") || !group_by_clause(p, q)) return false;
        } else if (accept_kw(p, "HAVING")) {
            if (!once(p, &having, &t) || !(q->having = expr(p))) return false;
        } else if (accept_kw(p, "EMIT")) {
            if (!once(p, &emit, &t)) return false;
            if (accept_kw(p, "CHANGES")) q->emit = GD_EMIT_CHANGES;
            else if (accept_kw(p, "FINAL")) q->emit = GD_EMIT_FINAL;
            else {
                syntax_error(p, "CHANGES or FINAL");
                return false;
            }
        } else if (accept_kw(p, "ORDER")) {
            if (!once(p, &order, &t) || !expect_kw(p, "BY") || !order_clause(p, q)) return false;
        } else if (accept_kw(p, "LIMIT")) {
            if (!once(p, &limit, &t)) return false;
            gd_token n = p->tok;
            if (n.type != GD_TK_INTEGER) {
                syntax_error(p, "a whole number");
                return false;
            }
            gd_expr *v = literal(p);
            if (!v) return false;
            q->limit = v->lit.i;
        } else if (accept_kw(p, "PARTITION")) {
            if (!once(p, &partition, &t) || !expect_kw(p, "BY") || !partition_clause(p, q)) return false;
        } else return true;
    }
}

static bool query(parser *p, gd_sql_select *q)
{
    q->limit = -1;
    q->grace_ms = -1;
    if (!expect_kw(p, "SELECT") || !select_items(p, q) || !expect_kw(p, "FROM")) return false;
    q->from_line = p->tok.line;
    q->from_col = p->tok.col;
    if (!name(p, &q->from, "a stream or table name")) return false;
    if (accept_kw(p, "AS")) {
        if (!name(p, &q->from_alias, "an alias")) return false;
    } else if (is_name(&p->tok) && !gd_token_is_word(&p->tok, "EMIT") && !gd_token_is_word(&p->tok, "LIMIT")) {
        q->from_alias = p->tok.text;
        next(p);
    }
    static const char *const joins[] = {"JOIN", "LEFT", "RIGHT", "INNER", "FULL", "OUTER"};
    for (size_t i = 0; i < sizeof joins / sizeof joins[0]; i++)
        if (gd_token_is_word(&p->tok, joins[i])) {
            fail_at(p, &p->tok, "JOIN is not supported: a gamingd query reads one stream or table (the enriched "
                                "stream already holds the joined game and player fields)");
            return false;
        }
    if (is_sym(&p->tok, ",")) {
        fail_at(p, &p->tok, "a second source in FROM is not supported: a query reads one stream or table");
        return false;
    }
    return clauses(p, q);
}

/* ---- statements ---- */

static bool with_clause(parser *p, gd_sql_stmt *st)
{
    if (!accept_kw(p, "WITH")) return true;
    if (!expect_sym(p, "(")) return false;
    int cap = 8;
    st->props = gd_arena_alloc(p->arena, sizeof *st->props * (size_t)cap);
    do {
        if (st->nprops == cap) {
            fail_at(p, &p->tok, "too many properties");
            return false;
        }
        gd_sql_prop *pr = &st->props[st->nprops++];
        if (!name(p, &pr->name, "a property name") || !expect_sym(p, "=")) return false;
        if (p->tok.type != GD_TK_STRING && p->tok.type != GD_TK_INTEGER && p->tok.type != GD_TK_IDENT) {
            syntax_error(p, "a property value");
            return false;
        }
        pr->value = p->tok.text;
        next(p);
    } while (accept_sym(p, ","));
    return expect_sym(p, ")");
}

static bool column_decls(parser *p, gd_sql_stmt *st)
{
    int cap = 0;
    do {
        st->cols = grow(p->arena, st->cols, st->ncols, &cap, sizeof *st->cols);
        gd_sql_coldecl *c = &st->cols[st->ncols++];
        memset(c, 0, sizeof *c);
        if (!name(p, &c->name, "a column name") || !type_name(p, &c->type)) return false;
        if (accept_kw(p, "PRIMARY")) {
            if (!expect_kw(p, "KEY")) return false;
            c->key = true;
        } else if (accept_kw(p, "KEY")) c->key = true;
        c->pii = accept_kw(p, "PII");
    } while (accept_sym(p, ","));
    return expect_sym(p, ")");
}

static bool create(parser *p, gd_sql_stmt *st)
{
    if (accept_kw(p, "OR")) {
        fail_at(p, &p->prev, "CREATE OR REPLACE is not supported: DROP the table or stream, then CREATE it");
        return false;
    }
    if (accept_kw(p, "TABLE")) st->is_table = true;
    else if (!accept_kw(p, "STREAM")) {
        if (p->tok.type == GD_TK_IDENT)
            fail_at(p, &p->tok, "CREATE %.*s is not supported (CREATE TABLE and CREATE STREAM are)",
                    (int)p->tok.text.len, p->tok.text.p);
        else syntax_error(p, "TABLE or STREAM");
        return false;
    }
    if (accept_kw(p, "IF")) {
        if (!expect_kw(p, "NOT") || !expect_kw(p, "EXISTS")) return false;
        st->if_not_exists = true;
    }
    if (!name(p, &st->name, "a name")) return false;
    if (accept_sym(p, "(")) {
        st->kind = GD_SQL_CREATE_SOURCE;
        return column_decls(p, st) && with_clause(p, st);
    }
    st->kind = GD_SQL_CREATE_AS;
    return with_clause(p, st) && expect_kw(p, "AS") && query(p, &st->select);
}

static bool statement(parser *p, gd_sql_stmt *st)
{
    gd_token t = p->tok;
    if (gd_token_is_word(&t, "SELECT")) {
        st->kind = GD_SQL_SELECT;
        return query(p, &st->select);
    }
    if (accept_kw(p, "CREATE")) return create(p, st);
    if (accept_kw(p, "DROP")) {
        st->kind = GD_SQL_DROP;
        if (accept_kw(p, "TABLE")) st->is_table = true;
        else if (!accept_kw(p, "STREAM")) {
            syntax_error(p, "TABLE or STREAM");
            return false;
        }
        if (accept_kw(p, "IF")) {
            if (!expect_kw(p, "EXISTS")) return false;
            st->if_exists = true;
        }
        if (!name(p, &st->name, "a name")) return false;
        if (accept_kw(p, "DELETE") && !expect_kw(p, "TOPIC")) return false;
        return true;
    }
    if (accept_kw(p, "SHOW") || accept_kw(p, "LIST")) {
        st->kind = GD_SQL_SHOW;
        if (accept_kw(p, "STREAMS")) st->show = GD_SHOW_STREAMS;
        else if (accept_kw(p, "TABLES")) st->show = GD_SHOW_TABLES, st->is_table = true;
        else if (accept_kw(p, "QUERIES")) st->show = GD_SHOW_QUERIES;
        else if (accept_kw(p, "PROPERTIES")) st->show = GD_SHOW_PROPERTIES;
        else if (accept_kw(p, "VARIABLES")) st->show = GD_SHOW_VARIABLES;
        else if (accept_kw(p, "FUNCTIONS")) st->show = GD_SHOW_FUNCTIONS;
        else {
            if (p->tok.type == GD_TK_IDENT)
                fail_at(p, &p->tok,
                        "SHOW %.*s is not supported (STREAMS, TABLES, QUERIES, PROPERTIES, VARIABLES, FUNCTIONS are)",
                        (int)p->tok.text.len, p->tok.text.p);
            else syntax_error(p, "STREAMS, TABLES, QUERIES, PROPERTIES, VARIABLES or FUNCTIONS");
            return false;
        }
        st->extended = accept_kw(p, "EXTENDED");
        return true;
    }
    if (accept_kw(p, "DESCRIBE")) {
        st->kind = GD_SQL_DESCRIBE;
        st->extended = accept_kw(p, "EXTENDED");
        if (!st->extended && accept_kw(p, "FUNCTION")) {
            st->function = true;
            return name(p, &st->name, "a function name");
        }
        if (gd_token_is_word(&p->tok, "FUNCTION") || gd_token_is_word(&p->tok, "CONNECTOR")) {
            fail_at(p, &p->tok, "DESCRIBE %.*s is not supported", (int)p->tok.text.len, p->tok.text.p);
            return false;
        }
        return name(p, &st->name, "a stream or table name");
    }
    if (accept_kw(p, "DEFINE")) {
        st->kind = GD_SQL_DEFINE;
        if (!name(p, &st->name, "a variable name") || !expect_sym(p, "=")) return false;
        if (p->tok.type != GD_TK_STRING) {
            syntax_error(p, "a string ('value')");
            return false;
        }
        st->value = p->tok.text;
        next(p);
        return true;
    }
    if (accept_kw(p, "UNDEFINE")) {
        st->kind = GD_SQL_UNDEFINE;
        return name(p, &st->name, "a variable name");
    }
    if (p->tok.type == GD_TK_VARIABLE) {
        fail_at(p, &p->tok, "variable '%.*s' is not defined", (int)p->tok.text.len, p->tok.text.p);
        return false;
    }
    if (accept_kw(p, "TERMINATE")) {
        st->kind = GD_SQL_TERMINATE;
        if (accept_kw(p, "ALL")) {
            st->all = true;
            return true;
        }
        return name(p, &st->name, "a query id");
    }
    if (t.type == GD_TK_IDENT) {
        fail_at(p, &t, "'%.*s' statements are not supported by gamingd (SELECT, CREATE ... AS SELECT, DROP, SHOW, "
                       "LIST, DESCRIBE, TERMINATE, DEFINE and UNDEFINE are)",
                (int)t.text.len, t.text.p);
        return false;
    }
    syntax_error(p, "a statement");
    return false;
}

int gd_sql_parse(gd_str text, gd_arena *arena, gd_sql_stmt **stmts, int *nstmts, gd_sql_error *err)
{
    parser p = {.arena = arena, .err = err};
    gd_lexer_init(&p.lx, text, arena);
    next(&p);
    int cap = 0, n = 0;
    gd_sql_stmt *out = NULL;
    while (p.tok.type != GD_TK_EOF && !p.failed) {
        if (accept_sym(&p, ";")) continue; /* empty statement */
        if (n == MAX_STATEMENTS) {
            fail_at(&p, &p.tok, "more than %d statements in one request", MAX_STATEMENTS);
            break;
        }
        p.nodes = 0;
        out = grow(arena, out, n, &cap, sizeof *out);
        gd_sql_stmt *st = &out[n++];
        memset(st, 0, sizeof *st);
        uint32_t from = p.tok.offset;
        if (!statement(&p, st)) break;
        st->text = (gd_str){text.p + from, p.tok.offset - from};
        while (st->text.len && strchr(" \t\r\n", st->text.p[st->text.len - 1])) st->text.len--;
        if (p.tok.type != GD_TK_EOF && !accept_sym(&p, ";")) syntax_error(&p, "';' or the end of the statement");
    }
    if (p.failed) return GD_ERR;
    if (!n) return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "no statement given");
    *stmts = out;
    *nstmts = n;
    return GD_OK;
}
