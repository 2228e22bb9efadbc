/* json.c -- see json.h. The scanner follows RFC 8259 strictly enough that
 * anything it accepts jansson accepts too; it rejects rather than guesses. */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_DEPTH = 64 };

void gd_json_init(gd_json *j, gd_str text, gd_arena *scratch)
{
    j->p = text.p;
    j->end = text.p + text.len;
    j->scratch = scratch;
    j->err = NULL;
    j->members = 0;
}

static int fail(gd_json *j, const char *why)
{
    if (!j->err) j->err = why;
    return GD_EBADREC;
}

static void skip_ws(gd_json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) *o++ = (char)cp;
    else if (cp < 0x800) {
        *o++ = (char)(0xC0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | cp >> 12);
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | cp >> 18);
        *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* Whether none of 8 bytes ends a string, escapes, is a control character
 * or starts a multi-byte character (which is then checked for valid UTF-8),
 * tested a word at a time (the classic "has zero byte" trick). */
static inline bool plain8(const char *p)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
    uint64_t special = ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) |
                       ((x - ones * 0x20) & ~x) | x;
    return !(special & highs);
}

/* At the opening quote. Decodes into scratch only when escapes appear. */
static int scan_string(gd_json *j, gd_str *out)
{
    const char *start = ++j->p;
    bool escaped = false;
    while (j->end - j->p >= 8 && plain8(j->p)) j->p += 8;
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p;
        if (c < 0x20) return fail(j, "control character in string");
        if (c >= 0x80) { /* RFC 8259: JSON text is UTF-8 */
            size_t len = gd_utf8_seq((const unsigned char *)j->p, (size_t)(j->end - j->p));
            if (!len) return fail(j, "invalid UTF-8 in string");
            j->p += len;
            continue;
        }
        if (c == '\\') {
            escaped = true;
            j->p++;
            if (j->p >= j->end) break;
        }
        j->p++;
    }
    if (j->p >= j->end) return fail(j, "unterminated string");
    const char *stop = j->p++;
    if (!escaped) {
        *out = (gd_str){start, (uint32_t)(stop - start)};
        return GD_OK;
    }
    char *o = gd_arena_alloc(j->scratch, (size_t)(stop - start) + 1);
    char *o0 = o;
    for (const char *s = start; s < stop; s++) {
        if (*s != '\\') {
            *o++ = *s;
            continue;
        }
        s++;
        switch (*s) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (stop - s < 5 || hex4(s + 1, &cp)) return fail(j, "bad \\u escape");
            s += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (stop - s < 7 || s[1] != '\\' || s[2] != 'u' || hex4(s + 3, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return fail(j, "unpaired surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                s += 6;
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                return fail(j, "unpaired surrogate");
            }
            o = put_utf8(o, cp);
            break;
        }
        default: return fail(j, "bad escape");
        }
    }
    *o = 0;
    *out = (gd_str){o0, (uint32_t)(o - o0)};
    return GD_OK;
}

static int scan_number(gd_json *j, gd_jval *v)
{
    const char *s = j->p;
    const char *p = s;
    if (p < j->end && *p == '-') p++;
    if (p >= j->end || *p < '0' || *p > '9') return fail(j, "bad number");
    if (*p == '0') p++;
    else while (p < j->end && *p >= '0' && *p <= '9') p++;
    bool integral = true;
    if (p < j->end && *p == '.') {
        integral = false;
        p++;
        if (p >= j->end || *p < '0' || *p > '9') return fail(j, "bad number");
        while (p < j->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        integral = false;
        p++;
        if (p < j->end && (*p == '+' || *p == '-')) p++;
        if (p >= j->end || *p < '0' || *p > '9') return fail(j, "bad number");
        while (p < j->end && *p >= '0' && *p <= '9') p++;
    }
    size_t n = (size_t)(p - s);
    j->p = p;
    if (integral && n <= 18) {
        int64_t acc = 0;
        for (const char *q = (*s == '-') ? s + 1 : s; q < p; q++) acc = acc * 10 + (*q - '0');
        v->t = GD_J_INT;
        v->i = *s == '-' ? -acc : acc;
        v->d = (double)v->i;
        return GD_OK;
    }
    char tmp[64];
    if (n >= sizeof tmp) return fail(j, "number too long");
    memcpy(tmp, s, n);
    tmp[n] = 0;
    if (integral) {
        /* 19+ digits: an integer only if it fits in 64 bits */
        char *end;
        long long ll = strtoll(tmp, &end, 10);
        if ((ll == INT64_MAX || ll == INT64_MIN) && strcmp(tmp, "9223372036854775807") &&
            strcmp(tmp, "-9223372036854775808")) {
            v->t = GD_J_DBL;
            v->d = strtod(tmp, NULL);
            return GD_OK;
        }
        v->t = GD_J_INT;
        v->i = ll;
        v->d = (double)ll;
        return GD_OK;
    }
    v->t = GD_J_DBL;
    v->d = strtod(tmp, NULL);
    return GD_OK;
}

static int match_word(gd_json *j, const char *w, size_t n)
{
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0) return fail(j, "bad literal");
    j->p += n;
    return GD_OK;
}

static int skip_value(gd_json *j, int depth);

static int skip_container(gd_json *j, int depth, char close)
{
    if (depth > MAX_DEPTH) return fail(j, "nesting too deep");
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return GD_OK;
    }
    for (;;) {
        skip_ws(j);
        if (close == '}') {
            gd_str k;
            if (j->p >= j->end || *j->p != '"') return fail(j, "expected key");
            if (scan_string(j, &k)) return GD_EBADREC;
            skip_ws(j);
            if (j->p >= j->end || *j->p != ':') return fail(j, "expected ':'");
            j->p++;
        }
        if (skip_value(j, depth + 1)) return GD_EBADREC;
        skip_ws(j);
        if (j->p >= j->end) return fail(j, "unterminated container");
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p == close) {
            j->p++;
            return GD_OK;
        }
        return fail(j, "expected ',' or end of container");
    }
}

static int skip_value(gd_json *j, int depth)
{
    gd_jval v;
    skip_ws(j);
    if (j->p >= j->end) return fail(j, "expected value");
    switch (*j->p) {
    case '{': return skip_container(j, depth, '}');
    case '[': return skip_container(j, depth, ']');
    case '"': return scan_string(j, &v.s);
    case 't': return match_word(j, "true", 4);
    case 'f': return match_word(j, "false", 5);
    case 'n': return match_word(j, "null", 4);
    default: return scan_number(j, &v);
    }
}

/* At '{' or '[': finds the matching close, minding only strings. */
static int delimit_container(gd_json *j)
{
    int depth = 0;
    while (j->p < j->end) {
        char c = *j->p;
        if (c == '"') {
            gd_str ignored;
            if (scan_string(j, &ignored)) return GD_EBADREC;
            continue;
        }
        j->p++;
        if (c == '{' || c == '[') {
            if (++depth > MAX_DEPTH) return fail(j, "nesting too deep");
        } else if ((c == '}' || c == ']') && --depth == 0) {
            return GD_OK;
        }
    }
    return fail(j, "unterminated container");
}

int gd_json_value_delimited(gd_json *j, gd_jval *v)
{
    skip_ws(j);
    if (j->p >= j->end || (*j->p != '{' && *j->p != '[')) return gd_json_value(j, v);
    const char *start = j->p;
    v->t = *j->p == '{' ? GD_J_OBJ : GD_J_ARR;
    int rc = delimit_container(j);
    v->raw = (gd_str){start, (uint32_t)(j->p - start)};
    return rc;
}

int gd_json_value(gd_json *j, gd_jval *v)
{
    skip_ws(j);
    if (j->p >= j->end) return fail(j, "expected value");
    const char *start = j->p;
    int rc;
    switch (*j->p) {
    case '{':
        v->t = GD_J_OBJ;
        rc = skip_container(j, 1, '}');
        break;
    case '[':
        v->t = GD_J_ARR;
        rc = skip_container(j, 1, ']');
        break;
    case '"':
        v->t = GD_J_STR;
        rc = scan_string(j, &v->s);
        break;
    case 't':
        v->t = GD_J_BOOL;
        v->b = true;
        rc = match_word(j, "true", 4);
        break;
    case 'f':
        v->t = GD_J_BOOL;
        v->b = false;
        rc = match_word(j, "false", 5);
        break;
    case 'n':
        v->t = GD_J_NULL;
        rc = match_word(j, "null", 4);
        break;
    default: rc = scan_number(j, v); break;
    }
    v->raw = (gd_str){start, (uint32_t)(j->p - start)};
    return rc;
}

int gd_json_object_begin(gd_json *j)
{
    skip_ws(j);
    if (j->p >= j->end || *j->p != '{') return fail(j, "expected an object");
    j->p++;
    j->members = 0;
    return GD_OK;
}

/* Past the end of an object or array (0), or to its next member (1):
 * after the first, a comma. */
static int next_member(gd_json *j, char close, const char *unterminated, const char *no_comma)
{
    skip_ws(j);
    if (j->p >= j->end) return fail(j, unterminated);
    if (*j->p == close) {
        j->p++;
        return 0;
    }
    if (j->members++ > 0) {
        if (*j->p != ',') return fail(j, no_comma);
        j->p++;
        skip_ws(j);
    }
    return 1;
}

int gd_json_next_key(gd_json *j, gd_str *key)
{
    int rc = next_member(j, '}', "unterminated object", "expected ',' between members");
    if (rc != 1) return rc;
    if (j->p >= j->end || *j->p != '"') return fail(j, "expected key");
    if (scan_string(j, key)) return GD_EBADREC;
    skip_ws(j);
    if (j->p >= j->end || *j->p != ':') return fail(j, "expected ':'");
    j->p++;
    return 1;
}

int gd_json_array_begin(gd_json *j)
{
    skip_ws(j);
    if (j->p >= j->end || *j->p != '[') return fail(j, "expected an array");
    j->p++;
    j->members = 0;
    return GD_OK;
}

int gd_json_next_element(gd_json *j) { return next_member(j, ']', "unterminated array", "expected ',' between elements"); }

int gd_json_end(gd_json *j)
{
    skip_ws(j);
    return j->p == j->end ? GD_OK : fail(j, "trailing characters");
}

/* ---- writer ---- */

void gd_json_put_str(gd_buf *b, gd_str s)
{
    static const char hex[] = "0123456789abcdef";
    if (!s.p) {
        gd_buf_put(b, "null", 4);
        return;
    }
    gd_buf_reserve(b, (size_t)s.len * 6 + 2);
    char *o = b->p + b->len;
    *o++ = '"';
    for (uint32_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c >= 0x80) { /* valid UTF-8 as it is, anything else as U+FFFD */
            size_t len = gd_utf8_seq((const unsigned char *)s.p + i, s.len - i);
            if (!len) {
                memcpy(o, "\\ufffd", 6);
                o += 6;
                continue;
            }
            memcpy(o, s.p + i, len);
            o += len;
            i += (uint32_t)len - 1;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
}

void gd_json_put_cstr(gd_buf *b, const char *s) { gd_json_put_str(b, gd_str_c(s)); }

void gd_json_put_int(gd_buf *b, int64_t v)
{
    if (v < 0) gd_buf_putc(b, '-');
    gd_buf_put_dec(b, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
}

/* Most doubles gamingd writes are prices, scores and averages with a few
 * decimals: v is r / 10^k for a whole r and k <= 6 exactly when the
 * division of round(v * 10^k) by 10^k gives v back, and then the digits of
 * r with the point k from the right are the shortest text that reads back
 * to v -- what the %.15g..%.17g search below finds, at a fraction of its
 * cost. Only where %g writes no exponent (1e-4 <= |v| < 1e15). */
static bool put_few_decimals(gd_buf *b, double v)
{
    static const double p10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
    double a = fabs(v);
    if (a < 1e-4 || a >= 1e9) return false;
    for (int k = 1; k <= 6; k++) {
        double r = round(a * p10[k]);
        if (r / p10[k] != a) continue;
        char digits[24];
        int n = 0;
        for (int64_t i = (int64_t)r; i || !n; i /= 10) digits[sizeof digits - 1 - n++] = (char)('0' + i % 10);
        memmove(digits, digits + sizeof digits - n, (size_t)n);
        if (v < 0) gd_buf_putc(b, '-');
        if (n <= k) { /* 0.0ddd */
            gd_buf_put(b, "0.", 2);
            for (int z = n; z < k; z++) gd_buf_putc(b, '0');
            gd_buf_put(b, digits, (size_t)n);
        } else {
            gd_buf_put(b, digits, (size_t)(n - k));
            gd_buf_putc(b, '.');
            gd_buf_put(b, digits + n - k, (size_t)k);
        }
        return true;
    }
    return false;
}

void gd_json_put_dbl(gd_buf *b, double v)
{
    if (!isfinite(v)) {
        gd_buf_put(b, "null", 4);
        return;
    }
    /* Whole numbers in the exact range print fast and keep a ".0" so readers
     * see a double; the rest take the fewest of 15, 16 or 17 digits that
     * read back to the same value. */
    if (v == (double)(int64_t)v && fabs(v) < 1e15) {
        gd_json_put_int(b, (int64_t)v);
        gd_buf_put(b, ".0", 2);
        return;
    }
    if (put_few_decimals(b, v)) return;
    char tmp[40];
    int n = 0;
    for (int digits = 15; digits <= 17; digits++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", digits, v);
        if (strtod(tmp, NULL) == v) break;
    }
    gd_buf_put(b, tmp, (size_t)n);
}

/* An ARRAY as a JSON array, a MAP as an object (its keys are strings). */
static void put_list(gd_buf *b, gd_value v)
{
    bool map = v.t == GD_V_MAP;
    gd_buf_putc(b, map ? '{' : '[');
    uint32_t at = 0;
    gd_value e;
    for (int i = 0; gd_list_next(v.s, &at, &e); i++) {
        if (i) gd_buf_putc(b, map && i % 2 ? ':' : ',');
        gd_json_put_value(b, e);
    }
    gd_buf_putc(b, map ? '}' : ']');
}

void gd_json_put_value(gd_buf *b, gd_value v)
{
    switch (v.t) {
    case GD_V_ARRAY:
    case GD_V_MAP: put_list(b, v); break;
    case GD_V_NULL: gd_buf_put(b, "null", 4); break;
    case GD_V_INT: gd_json_put_int(b, v.i); break;
    case GD_V_DBL: gd_json_put_dbl(b, v.d); break;
    case GD_V_STR: gd_json_put_str(b, v.s); break;
    case GD_V_BOOL: gd_buf_puts(b, v.i ? "true" : "false"); break;
    }
}

void gd_masked_text(gd_buf *b, gd_pii kind, gd_value v)
{
    gd_buf_puts(b, "***");
    if (kind != GD_PII_COPY || v.t != GD_V_STR) return;
    for (uint32_t i = v.s.len; i > 0; i--) /* the domain after the last @ is not personal */
        if (v.s.p[i - 1] == '@') {
            gd_buf_put(b, v.s.p + i - 1, v.s.len - (i - 1));
            return;
        }
}

void gd_json_put_masked(gd_buf *b, gd_pii kind, gd_value v)
{
    if (v.t == GD_V_NULL) {
        gd_buf_puts(b, "null");
        return;
    }
    gd_buf masked = {0};
    gd_masked_text(&masked, kind, v);
    gd_json_put_str(b, (gd_str){masked.p, (uint32_t)masked.len});
    gd_buf_free(&masked);
}
