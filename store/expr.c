/* expr.c -- evaluation of SQL expression trees (expr.h).
 *
 * A tree walk over gd_value: expressions here are a handful of nodes, and
 * the walk costs tens of nanoseconds, so compiling them further would buy
 * little. Types were checked when the tree was bound (sql/plan.c), so the
 * walk follows the values' own tags and only guards against what binding
 * cannot exclude: NULLs, division by zero, overflow. The operators are
 * here; a function call is store/func.c's (gd_fn_eval), where each scalar
 * function is declared once. */
#include "expr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../server/json.h"
#include "../server/regex.h"
#include "func.h"

static const gd_value NULLV = {.t = GD_V_NULL};

static gd_value int_v(int64_t i) { return gd_int_value(i); }
static gd_value bool_v(bool b) { return (gd_value){.t = GD_V_BOOL, .i = b}; }
static gd_value dbl_v(double d) { return gd_dbl_value(d); }
static bool is_null(gd_value v) { return v.t == GD_V_NULL; }
static double as_dbl(gd_value v) { return v.t == GD_V_DBL ? v.d : (double)v.i; }

const char *gd_coltype_name(gd_coltype t)
{
    switch (t) {
    case GD_T_STRING: return "STRING";
    case GD_T_BIGINT: return "BIGINT";
    case GD_T_INTEGER: return "INTEGER";
    case GD_T_DOUBLE: return "DOUBLE";
    case GD_T_BOOLEAN: return "BOOLEAN";
    case GD_T_NULL: return "NULL";
    case GD_T_ARRAY_STRING: return "ARRAY<STRING>";
    case GD_T_ARRAY_BIGINT: return "ARRAY<BIGINT>";
    case GD_T_ARRAY_INTEGER: return "ARRAY<INTEGER>";
    case GD_T_ARRAY_DOUBLE: return "ARRAY<DOUBLE>";
    case GD_T_ARRAY_BOOLEAN: return "ARRAY<BOOLEAN>";
    case GD_T_MAP_STRING_BIGINT: return "MAP<STRING, BIGINT>";
    }
    return "STRING";
}

bool gd_coltype_unify(gd_coltype a, gd_coltype b, gd_coltype *out)
{
    if (a == GD_T_NULL) return *out = b, true;
    if (b == GD_T_NULL || a == b) return *out = a, true;
    if (gd_coltype_numeric(a) && gd_coltype_numeric(b)) {
        *out = a == GD_T_DOUBLE || b == GD_T_DOUBLE ? GD_T_DOUBLE : GD_T_BIGINT;
        return true;
    }
    return false;
}

gd_value gd_value_array_column(const void *row, int index) { return ((const gd_value *)row)[index]; }

int gd_value_cmp(gd_value a, gd_value b)
{
    if (a.t == GD_V_STR && b.t == GD_V_STR) {
        uint32_t n = a.s.len < b.s.len ? a.s.len : b.s.len;
        int c = n ? memcmp(a.s.p, b.s.p, n) : 0;
        return c ? c : (a.s.len > b.s.len) - (a.s.len < b.s.len);
    }
    if (a.t == GD_V_INT && b.t == GD_V_INT) return (a.i > b.i) - (a.i < b.i);
    if (a.t == GD_V_BOOL && b.t == GD_V_BOOL) return (int)(a.i - b.i);
    bool la = a.t == GD_V_ARRAY || a.t == GD_V_MAP, lb = b.t == GD_V_ARRAY || b.t == GD_V_MAP;
    if (la && lb) /* an order by the encoding, not a meaning */
        return gd_value_cmp((gd_value){.t = GD_V_STR, .s = a.s}, (gd_value){.t = GD_V_STR, .s = b.s});
    if (la || lb) return (int)la - (int)lb;
    double x = as_dbl(a), y = as_dbl(b);
    return (x > y) - (x < y);
}

void gd_value_text(gd_value v, gd_buf *b)
{
    switch (v.t) {
    case GD_V_NULL: break;
    case GD_V_INT: gd_json_put_int(b, v.i); break;
    case GD_V_DBL: gd_json_put_dbl(b, v.d); break;
    case GD_V_STR: gd_buf_put(b, v.s.p, v.s.len); break;
    case GD_V_BOOL: gd_buf_puts(b, v.i ? "true" : "false"); break;
    case GD_V_ARRAY:
    case GD_V_MAP: gd_json_put_value(b, v); break;
    }
}

gd_value gd_value_from_buf(gd_buf *b, gd_arena *scratch)
{
    gd_str s = gd_arena_strdup(scratch, (gd_str){b->p ? b->p : "", (uint32_t)b->len});
    gd_buf_free(b);
    return (gd_value){.t = GD_V_STR, .s = s};
}

gd_value gd_value_cast(gd_value v, gd_coltype to, gd_arena *scratch)
{
    if (is_null(v)) return v;
    switch (to) {
    case GD_T_STRING: {
        if (v.t == GD_V_STR) return v;
        gd_buf b = {0};
        gd_value_text(v, &b);
        return gd_value_from_buf(&b, scratch);
    }
    case GD_T_BIGINT:
    case GD_T_INTEGER: {
        int64_t i;
        if (v.t == GD_V_INT) i = v.i;
        else if (v.t == GD_V_DBL) {
            if (!(v.d > -9.2e18 && v.d < 9.2e18)) return NULLV;
            i = (int64_t)v.d; /* toward zero, as Java casts */
        } else if (v.t == GD_V_STR) {
            char tmp[32];
            if (!v.s.len || v.s.len >= sizeof tmp) return NULLV;
            memcpy(tmp, v.s.p, v.s.len);
            if (gd_parse_int(tmp, v.s.len, INT64_MIN, INT64_MAX, &i)) return NULLV;
        } else return NULLV;
        if (to == GD_T_INTEGER && (i < INT32_MIN || i > INT32_MAX)) return NULLV;
        return int_v(i);
    }
    case GD_T_DOUBLE:
        if (v.t == GD_V_INT || v.t == GD_V_DBL) return dbl_v(as_dbl(v));
        if (v.t == GD_V_STR) {
            char tmp[64], *end;
            if (!v.s.len || v.s.len >= sizeof tmp) return NULLV;
            memcpy(tmp, v.s.p, v.s.len);
            tmp[v.s.len] = 0;
            double d = strtod(tmp, &end);
            return *end ? NULLV : dbl_v(d);
        }
        return NULLV;
    case GD_T_BOOLEAN:
        if (v.t == GD_V_BOOL) return v;
        if (v.t == GD_V_STR) {
            if (v.s.len == 4 && !strncasecmp(v.s.p, "true", 4)) return bool_v(true);
            if (v.s.len == 5 && !strncasecmp(v.s.p, "false", 5)) return bool_v(false);
        }
        return NULLV;
    case GD_T_NULL:
    default: return NULLV; /* no CAST makes an ARRAY or a MAP */
    }
}

/* ---- arithmetic ---- */

static gd_value arith(gd_expr_op op, gd_value a, gd_value b, gd_arena *scratch)
{
    if (is_null(a) || is_null(b)) return NULLV;
    if (op == GD_E_ADD && a.t == GD_V_STR && b.t == GD_V_STR) { /* string + string concatenates */
        char *p = gd_arena_alloc(scratch, (size_t)a.s.len + b.s.len + 1);
        memcpy(p, a.s.p, a.s.len);
        memcpy(p + a.s.len, b.s.p, b.s.len);
        return (gd_value){.t = GD_V_STR, .s = {p, a.s.len + b.s.len}};
    }
    if (a.t == GD_V_INT && b.t == GD_V_INT) {
        int64_t r;
        switch (op) {
        case GD_E_ADD: return __builtin_add_overflow(a.i, b.i, &r) ? NULLV : int_v(r);
        case GD_E_SUB: return __builtin_sub_overflow(a.i, b.i, &r) ? NULLV : int_v(r);
        case GD_E_MUL: return __builtin_mul_overflow(a.i, b.i, &r) ? NULLV : int_v(r);
        case GD_E_DIV: return b.i == 0 || (a.i == INT64_MIN && b.i == -1) ? NULLV : int_v(a.i / b.i);
        case GD_E_MOD: return b.i == 0 || b.i == -1 ? (b.i ? int_v(0) : NULLV) : int_v(a.i % b.i);
        default: return NULLV;
        }
    }
    double x = as_dbl(a), y = as_dbl(b);
    switch (op) {
    case GD_E_ADD: return dbl_v(x + y);
    case GD_E_SUB: return dbl_v(x - y);
    case GD_E_MUL: return dbl_v(x * y);
    case GD_E_DIV: return y == 0 ? NULLV : dbl_v(x / y);
    case GD_E_MOD: return y == 0 ? NULLV : dbl_v(fmod(x, y));
    default: return NULLV;
    }
}

/* ---- LIKE: % any run, _ one character ---- */

size_t gd_char_len(const char *p, const char *end)
{
    size_t n = gd_utf8_seq((const unsigned char *)p, (size_t)(end - p));
    return n ? n : 1;
}

/* Without recursion, so that a pattern from the data (s LIKE column) of
 * many %s cannot exhaust the stack: on a mismatch the last % takes one
 * more character and the pattern resumes after it -- O(len(s) * len(p)),
 * where trying each % in turn is exponential. esc (an ASCII character, or
 * -1) makes the character after it stand for itself. */
static bool like(const char *s, const char *se, const char *p, const char *pe, int esc)
{
    const char *star = NULL, *taken = NULL; /* after the last %, and where its run ends in s */
    while (s < se) {
        int escaped = esc >= 0 && p + 1 < pe && *p == esc;
        if (!escaped && p < pe && *p == '%') {
            while (p < pe && *p == '%') p++;
            star = p;
            taken = s;
        } else if (!escaped && p < pe && *p == '_') {
            s += gd_char_len(s, se);
            p++;
        } else if (p < pe && p[escaped] == *s) {
            p += 1 + escaped;
            s++;
        } else if (star) {
            taken += gd_char_len(taken, se);
            s = taken;
            p = star;
        } else return false;
    }
    while (p < pe && *p == '%') p++;
    return p == pe;
}

/* ---- the walk ---- */

/* As ksqlDB compares: false when either side is NULL, so NOT (a = b) holds
 * then (three-valued logic would make both NULL). */
static gd_value compare(gd_expr_op op, gd_value a, gd_value b)
{
    if (is_null(a) || is_null(b)) return bool_v(false);
    int c = gd_value_cmp(a, b);
    switch (op) {
    case GD_E_EQ: return bool_v(c == 0);
    case GD_E_NE: return bool_v(c != 0);
    case GD_E_LT: return bool_v(c < 0);
    case GD_E_LE: return bool_v(c <= 0);
    case GD_E_GT: return bool_v(c > 0);
    default: return bool_v(c >= 0);
    }
}

/* NULL, or the boolean's 0/1 */
static int truth(gd_value v) { return is_null(v) ? -1 : v.i != 0; }

static gd_value negate_if(bool negated, gd_value v)
{
    return negated && !is_null(v) ? bool_v(!v.i) : v;
}

/* NULL matches nothing, as in ksqlDB: x IN (...) is false and x NOT IN
 * (...) true when x is NULL; NULLs in the list are passed over. */
static gd_value eval_in(const gd_expr *e, const gd_eval *ctx)
{
    gd_value x = gd_expr_eval(e->args[0], ctx);
    if (is_null(x)) return bool_v(e->negated);
    for (int i = 1; i < e->nargs; i++) {
        gd_value y = gd_expr_eval(e->args[i], ctx);
        if (!is_null(y) && gd_value_cmp(x, y) == 0) return bool_v(!e->negated);
    }
    return bool_v(e->negated);
}

/* a IS DISTINCT FROM b: NULL is distinct from a value, not from NULL. */
static gd_value eval_distinct(const gd_expr *e, const gd_eval *ctx)
{
    gd_value a = gd_expr_eval(e->args[0], ctx), b = gd_expr_eval(e->args[1], ctx);
    bool distinct = is_null(a) || is_null(b) ? is_null(a) != is_null(b) : gd_value_cmp(a, b) != 0;
    return bool_v(distinct != e->negated);
}

static gd_value eval_case(const gd_expr *e, const gd_eval *ctx)
{
    int pairs = (e->nargs - e->has_else) / 2;
    for (int i = 0; i < pairs; i++)
        if (truth(gd_expr_eval(e->args[2 * i], ctx)) == 1) return gd_expr_eval(e->args[2 * i + 1], ctx);
    return e->has_else ? gd_expr_eval(e->args[e->nargs - 1], ctx) : NULLV;
}

/* Bytewise order of a and b (a prefix first). */
static int bytes_cmp(gd_str a, gd_str b)
{
    uint32_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.p, b.p, n) : 0;
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

/* An ad hoc filter (GD_E_FILTER, expr.h says how it compares). */
static bool filter_passes(const gd_expr *e, gd_value v)
{
    gd_filter_op op = (gd_filter_op)e->index;
    if (is_null(v)) return op == GD_FILTER_NE || op == GD_FILTER_NOT_MATCH;
    gd_str want = e->args[1]->lit.s;
    gd_value num = e->args[2]->lit; /* the text as a number, or NULL */
    if ((op == GD_FILTER_EQ || op == GD_FILTER_NE) && v.t != GD_V_STR)
        return (!is_null(num) && as_dbl(v) == num.d) == (op == GD_FILTER_EQ);
    if ((op == GD_FILTER_LT || op == GD_FILTER_GT) && v.t != GD_V_STR && !is_null(num)) {
        double x = as_dbl(v);
        return op == GD_FILTER_LT ? x < num.d : x > num.d;
    }
    gd_buf text = {0};
    gd_str s = v.s;
    if (v.t != GD_V_STR) {
        gd_value_text(v, &text);
        s = (gd_str){text.p, (uint32_t)text.len};
    }
    bool pass;
    switch (op) {
    case GD_FILTER_EQ:
    case GD_FILTER_NE: pass = gd_str_eq(s, want) == (op == GD_FILTER_EQ); break;
    case GD_FILTER_LT: pass = bytes_cmp(s, want) < 0; break;
    case GD_FILTER_GT: pass = bytes_cmp(s, want) > 0; break;
    default: pass = gd_regex_match(e->re, s.p ? s.p : "", s.len) == (op == GD_FILTER_MATCH); break;
    }
    gd_buf_free(&text);
    return pass;
}

gd_value gd_expr_eval(const gd_expr *e, const gd_eval *ctx)
{
    switch (e->op) {
    case GD_E_LIT: return e->lit;
    case GD_E_COL: return ctx->column(ctx->row, e->index);
    case GD_E_AGG: return ctx->aggs[e->index];
    case GD_E_KEY: return ctx->keys[e->index];
    case GD_E_WSTART: return int_v(ctx->window_start);
    case GD_E_WEND: return int_v(ctx->window_end);
    case GD_E_NOW: return int_v(ctx->now_ms);
    case GD_E_NEG: {
        gd_value v = gd_expr_eval(e->args[0], ctx);
        if (v.t == GD_V_INT) return v.i == INT64_MIN ? NULLV : int_v(-v.i);
        return v.t == GD_V_DBL ? dbl_v(-v.d) : NULLV;
    }
    case GD_E_NOT: {
        int t = truth(gd_expr_eval(e->args[0], ctx));
        return t < 0 ? NULLV : bool_v(!t);
    }
    case GD_E_ADD:
    case GD_E_SUB:
    case GD_E_MUL:
    case GD_E_DIV:
    case GD_E_MOD:
        return arith(e->op, gd_expr_eval(e->args[0], ctx), gd_expr_eval(e->args[1], ctx), ctx->scratch);
    case GD_E_EQ:
    case GD_E_NE:
    case GD_E_LT:
    case GD_E_LE:
    case GD_E_GT:
    case GD_E_GE: return compare(e->op, gd_expr_eval(e->args[0], ctx), gd_expr_eval(e->args[1], ctx));
    case GD_E_AND: {
        int a = truth(gd_expr_eval(e->args[0], ctx));
        if (a == 0) return bool_v(false);
        int b = truth(gd_expr_eval(e->args[1], ctx));
        if (b == 0) return bool_v(false);
        return a < 0 || b < 0 ? NULLV : bool_v(true);
    }
    case GD_E_OR: {
        int a = truth(gd_expr_eval(e->args[0], ctx));
        if (a == 1) return bool_v(true);
        int b = truth(gd_expr_eval(e->args[1], ctx));
        if (b == 1) return bool_v(true);
        return a < 0 || b < 0 ? NULLV : bool_v(false);
    }
    case GD_E_IS_NULL: return bool_v(is_null(gd_expr_eval(e->args[0], ctx)) != e->negated);
    case GD_E_IN: return eval_in(e, ctx);
    case GD_E_BETWEEN: {
        gd_value x = gd_expr_eval(e->args[0], ctx), lo = gd_expr_eval(e->args[1], ctx),
                 hi = gd_expr_eval(e->args[2], ctx);
        bool in = !is_null(x) && !is_null(lo) && !is_null(hi) && gd_value_cmp(x, lo) >= 0 && gd_value_cmp(x, hi) <= 0;
        return bool_v(in != e->negated); /* a comparison with NULL is false, as ksqlDB has it */
    }
    case GD_E_DISTINCT: return eval_distinct(e, ctx);
    case GD_E_LIKE: {
        gd_value s = gd_expr_eval(e->args[0], ctx), p = gd_expr_eval(e->args[1], ctx);
        if (s.t != GD_V_STR || p.t != GD_V_STR) return NULLV;
        int esc = e->nargs > 2 ? e->args[2]->lit.s.p[0] : -1; /* one ASCII character (the planner checks) */
        return negate_if(e->negated, bool_v(like(s.s.p, s.s.p + s.s.len, p.s.p, p.s.p + p.s.len, esc)));
    }
    case GD_E_CASE: return eval_case(e, ctx);
    case GD_E_CAST: return gd_value_cast(gd_expr_eval(e->args[0], ctx), e->type, ctx->scratch);
    case GD_E_CALL: return gd_fn_eval(e, ctx);
    case GD_E_FILTER: return bool_v(filter_passes(e, gd_expr_eval(e->args[0], ctx)));
    case GD_E_NAME:
    case GD_E_AGGCALL:
    case GD_E_STAR: return NULLV; /* never bound: the planner refuses such trees */
    }
    return NULLV;
}

bool gd_expr_true(const gd_expr *e, const gd_eval *ctx) { return truth(gd_expr_eval(e, ctx)) == 1; }

bool gd_expr_any(const gd_expr *e, bool (*fn)(const gd_expr *e, void *ctx), void *ctx)
{
    if (!e) return false;
    if (fn(e, ctx)) return true;
    for (int i = 0; i < e->nargs; i++)
        if (gd_expr_any(e->args[i], fn, ctx)) return true;
    return false;
}

bool gd_expr_fits(const gd_expr *e, int depth, int *budget)
{
    if (!e) return true;
    if (depth < 1 || --*budget < 0) return false;
    for (int i = 0; i < e->nargs; i++)
        if (!gd_expr_fits(e->args[i], depth - 1, budget)) return false;
    return true;
}
