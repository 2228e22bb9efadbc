/* expr.c -- evaluation of SQL expression trees (expr.h).
 *
 * A tree walk over gd_value: expressions here are a handful of nodes, and
 * the walk costs tens of nanoseconds, so compiling them further would buy
 * little. Types were checked when the tree was bound (sql/plan.c), so the
 * walk follows the values' own tags and only guards against what binding
 * cannot exclude: NULLs, division by zero, overflow. */
#include "expr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../server/json.h"
#include "../server/regex.h"

static const gd_value NULLV = {.t = GD_V_NULL};

static gd_value int_v(int64_t i) { return (gd_value){.t = GD_V_INT, .i = i}; }
static gd_value bool_v(bool b) { return (gd_value){.t = GD_V_BOOL, .i = b}; }
static gd_value dbl_v(double d) { return isfinite(d) ? (gd_value){.t = GD_V_DBL, .d = d} : NULLV; }
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
    }
    return "STRING";
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
    }
}

static gd_value text_in_arena(gd_buf *b, gd_arena *scratch)
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
        return text_in_arena(&b, scratch);
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
    case GD_T_NULL: return NULLV;
    }
    return NULLV;
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

static size_t char_len(const char *p, const char *end)
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
            s += char_len(s, se);
            p++;
        } else if (p < pe && p[escaped] == *s) {
            p += 1 + escaped;
            s++;
        } else if (star) {
            taken += char_len(taken, se);
            s = taken;
            p = star;
        } else return false;
    }
    while (p < pe && *p == '%') p++;
    return p == pe;
}

/* ---- functions ---- */

static const char *const func_names[GD_FN_COUNT] = {
    "UCASE", "LCASE", "LEN", "CONCAT", "SUBSTRING", "ABS", "ROUND", "FLOOR", "CEIL", "COALESCE", "IFNULL",
    "TIMESTAMPTOSTRING",
};

gd_func gd_func_lookup(gd_str name)
{
    for (int f = 0; f < GD_FN_COUNT; f++)
        if (strlen(func_names[f]) == name.len && !strncasecmp(func_names[f], name.p, name.len)) return (gd_func)f;
    if (name.len == 7 && !strncasecmp(name.p, "CEILING", 7)) return GD_FN_CEIL;
    return GD_FN_COUNT;
}

const char *gd_func_name(gd_func f) { return f < GD_FN_COUNT ? func_names[f] : "?"; }

static gd_value change_case(gd_value s, bool upper, gd_arena *scratch)
{
    char *p = gd_arena_alloc(scratch, s.s.len + 1);
    for (uint32_t i = 0; i < s.s.len; i++) {
        char c = s.s.p[i];
        p[i] = upper ? (c >= 'a' && c <= 'z' ? c - 32 : c) : (c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    return (gd_value){.t = GD_V_STR, .s = {p, s.s.len}};
}

static int64_t utf8_chars(gd_str s)
{
    int64_t n = 0;
    for (const char *p = s.p, *end = s.p + s.len; p < end; p += char_len(p, end)) n++;
    return n;
}

/* The byte offset of character `chars` in s (s.len when past its end). */
static uint32_t utf8_offset(gd_str s, int64_t chars)
{
    const char *p = s.p, *end = s.p + s.len;
    while (chars-- > 0 && p < end) p += char_len(p, end);
    return (uint32_t)(p - s.p);
}

/* SUBSTRING(s, pos [, len]): 1-based; a negative pos counts from the end. */
static gd_value substring(gd_value s, gd_value pos, const gd_value *len)
{
    int64_t n = utf8_chars(s.s), from = pos.i > 0 ? pos.i - 1 : pos.i < 0 ? n + pos.i : 0;
    if (from < 0) from = 0;
    int64_t count = len ? len->i : n;
    if (count < 0) count = 0;
    if (from > n) from = n;
    if (count > n - from) count = n - from;
    uint32_t start = utf8_offset(s.s, from), stop = utf8_offset(s.s, from + count);
    return (gd_value){.t = GD_V_STR, .s = {s.s.p + start, stop - start}};
}

static gd_value round_to(gd_value v, const gd_value *scale)
{
    if (v.t == GD_V_INT) return v;
    if (!scale) {
        double r = floor(v.d + 0.5); /* HALF_UP as Java's Math.round */
        return r > -9.2e18 && r < 9.2e18 ? int_v((int64_t)r) : NULLV;
    }
    double f = pow(10.0, (double)scale->i);
    double x = v.d * f;
    double r = x < 0 ? -floor(-x + 0.5) : floor(x + 0.5);
    return dbl_v(r / f);
}

bool gd_timezone_offset(gd_str tz, int *offset_s)
{
    if (!tz.len) { /* as UTC; and an empty string may have no bytes at all */
        *offset_s = 0;
        return true;
    }
    const char *p = tz.p, *end = tz.p + tz.len;
    if ((tz.len >= 3 && (!strncasecmp(p, "UTC", 3) || !strncasecmp(p, "GMT", 3)))) p += 3;
    else if (tz.len == 1 && (*p == 'Z' || *p == 'z')) p++;
    if (p == end) {
        *offset_s = 0;
        return true;
    }
    int sign = *p == '-' ? -1 : *p == '+' ? 1 : 0;
    if (!sign) return false;
    p++;
    int digits[4], nd = 0;
    for (; p < end && nd < 4; p++) {
        if (*p == ':') continue;
        if (*p < '0' || *p > '9') return false;
        digits[nd++] = *p - '0';
    }
    if (p != end || (nd != 2 && nd != 4)) return false;
    int h = digits[0] * 10 + digits[1], m = nd == 4 ? digits[2] * 10 + digits[3] : 0;
    if (h > 18 || m > 59) return false;
    *offset_s = sign * (h * 3600 + m * 60);
    return true;
}

/* v in decimal, zero-padded to width (at most 20 digits: a longer run of
 * a pattern letter pads no further). */
static void put_num(gd_buf *b, int64_t v, int width)
{
    char tmp[48];
    int n = snprintf(tmp, sizeof tmp, "%0*lld", width < 20 ? width : 20, (long long)v);
    gd_buf_put(b, tmp, (size_t)(n < (int)sizeof tmp ? n : (int)sizeof tmp - 1));
}

/* Formats ms with a java.time.format.DateTimeFormatter pattern (the letters
 * ksqlDB's users write: y M d H h m s S a E, X/Z offsets, 'quoted' text). */
static bool format_time(int64_t ms, gd_str pattern, int offset_s, gd_buf *b)
{
    static const char *const months[] = {"January", "February", "March",     "April",   "May",      "June",
                                         "July",    "August",   "September", "October", "November", "December"};
    static const char *const days[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
    int64_t local = ms + (int64_t)offset_s * 1000;
    int64_t secs = local >= 0 ? local / 1000 : -((-local + 999) / 1000);
    int64_t frac = local - secs * 1000;
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) return false;
    const char *p = pattern.p, *end = pattern.p + pattern.len;
    while (p < end) {
        char c = *p;
        if (c == '\'') {
            const char *q = p + 1;
            if (q < end && *q == '\'') { /* '' is a quote */
                gd_buf_putc(b, '\'');
                p += 2;
                continue;
            }
            while (q < end && *q != '\'') q++;
            gd_buf_put(b, p + 1, (size_t)(q - p - 1));
            p = q < end ? q + 1 : q;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            gd_buf_putc(b, c);
            p++;
            continue;
        }
        int n = 0;
        while (p + n < end && p[n] == c) n++;
        p += n;
        switch (c) {
        case 'y':
        case 'u': n == 2 ? put_num(b, (tm.tm_year + 1900) % 100, 2) : put_num(b, tm.tm_year + 1900, n); break;
        case 'M':
        case 'L':
            if (n >= 4) gd_buf_puts(b, months[tm.tm_mon]);
            else if (n == 3) gd_buf_put(b, months[tm.tm_mon], 3);
            else put_num(b, tm.tm_mon + 1, n);
            break;
        case 'd': put_num(b, tm.tm_mday, n); break;
        case 'D': put_num(b, tm.tm_yday + 1, n); break;
        case 'H': put_num(b, tm.tm_hour, n); break;
        case 'h': put_num(b, tm.tm_hour % 12 ? tm.tm_hour % 12 : 12, n); break;
        case 'm': put_num(b, tm.tm_min, n); break;
        case 's': put_num(b, tm.tm_sec, n); break;
        case 'S': {
            char digits[4];
            snprintf(digits, sizeof digits, "%03lld", (long long)frac);
            for (int i = 0; i < n; i++) gd_buf_putc(b, i < 3 ? digits[i] : '0');
            break;
        }
        case 'a': gd_buf_puts(b, tm.tm_hour < 12 ? "AM" : "PM"); break;
        case 'E':
            if (n >= 4) gd_buf_puts(b, days[tm.tm_wday]);
            else gd_buf_put(b, days[tm.tm_wday], 3);
            break;
        case 'X':
        case 'x':
        case 'Z': {
            if (offset_s == 0 && c == 'X') {
                gd_buf_putc(b, 'Z');
                break;
            }
            int o = offset_s < 0 ? -offset_s : offset_s;
            gd_buf_putc(b, offset_s < 0 ? '-' : '+');
            put_num(b, o / 3600, 2);
            if (n == 1 && c != 'Z') {
                if (o % 3600) put_num(b, o % 3600 / 60, 2);
            } else {
                if ((c != 'Z' && n >= 3) || (c == 'Z' && n >= 4)) gd_buf_putc(b, ':');
                put_num(b, o % 3600 / 60, 2);
            }
            break;
        }
        default: return false; /* a letter gamingd does not know */
        }
    }
    return true;
}

static gd_value call(const gd_expr *e, const gd_eval *ctx)
{
    gd_value a[8];
    int n = e->nargs < 8 ? e->nargs : 8;
    gd_func f = (gd_func)e->index;
    if (f == GD_FN_COALESCE || f == GD_FN_IFNULL) { /* the first non-null, evaluated lazily */
        for (int i = 0; i < e->nargs; i++) {
            gd_value v = gd_expr_eval(e->args[i], ctx);
            if (!is_null(v)) return v;
        }
        return NULLV;
    }
    if (f == GD_FN_CONCAT) {
        gd_buf b = {0};
        for (int i = 0; i < e->nargs; i++) gd_value_text(gd_expr_eval(e->args[i], ctx), &b);
        return text_in_arena(&b, ctx->scratch);
    }
    for (int i = 0; i < n; i++) {
        a[i] = gd_expr_eval(e->args[i], ctx);
        if (is_null(a[i])) return NULLV;
    }
    switch (f) {
    case GD_FN_UCASE: return change_case(a[0], true, ctx->scratch);
    case GD_FN_LCASE: return change_case(a[0], false, ctx->scratch);
    case GD_FN_LEN: return int_v(utf8_chars(a[0].s));
    case GD_FN_SUBSTRING: return substring(a[0], a[1], n > 2 ? &a[2] : NULL);
    case GD_FN_ABS:
        if (a[0].t == GD_V_INT) return a[0].i == INT64_MIN ? NULLV : int_v(a[0].i < 0 ? -a[0].i : a[0].i);
        return dbl_v(fabs(a[0].d));
    case GD_FN_ROUND: return round_to(a[0], n > 1 ? &a[1] : NULL);
    case GD_FN_FLOOR: return a[0].t == GD_V_INT ? a[0] : dbl_v(floor(a[0].d));
    case GD_FN_CEIL: return a[0].t == GD_V_INT ? a[0] : dbl_v(ceil(a[0].d));
    case GD_FN_TIMESTAMPTOSTRING: {
        int offset = 0;
        if (n > 2 && !gd_timezone_offset(a[2].s, &offset)) return NULLV;
        gd_buf b = {0};
        if (!format_time(a[0].i, a[1].s, offset, &b)) {
            gd_buf_free(&b);
            return NULLV;
        }
        return text_in_arena(&b, ctx->scratch);
    }
    default: return NULLV;
    }
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
    case GD_E_CALL: return call(e, ctx);
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
