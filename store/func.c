/* func.c -- SQL's scalar functions (func.h): the table, the type rules
 * that read it, and the evaluators.
 *
 * Each function is one row of `functions` below, and nothing else names
 * it: the planner checks a call with gd_fn_check (arity, each argument
 * against its parameter's type, the result type from the row's rule, and
 * literal arguments a parameter type checks: a pattern compiles, a time
 * zone exists, an encoding is known), gd_expr_eval runs gd_fn_eval, and a
 * listing reads the rows. A NULL argument gives NULL before the evaluator
 * runs, unless the row says it sees NULLs (COALESCE, CONCAT, MASK's mask
 * characters, ...); functions with many arguments evaluate them
 * themselves (COALESCE lazily). A value of an INTEGER or BIGINT type that
 * a function returns for a DOUBLE result (GREATEST(1, 2.5)) is converted.
 *
 * Strings are made in the eval context's scratch arena and are at most
 * GD_FN_MAX_RESULT bytes: LPAD to a billion characters, or a REPLACE that
 * multiplies its input, gives NULL rather than the memory. Characters are
 * UTF-8 code points (ksqlDB counts UTF-16 units); case (UCASE, INITCAP,
 * MASK's classes) is ASCII's. Regular expressions are server/regex.h's,
 * linear in the text; a pattern that is not a literal is compiled for
 * each value, and REGEXP_ functions give NULL for a text over
 * MAX_REGEX_TEXT bytes (replace-all is quadratic in the worst case). */
#include "func.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <gnutls/crypto.h>

#include "../server/regex.h"
#include "tz.h"

enum { MAX_REGEX_TEXT = 65536 };

struct gd_fn_call {
    const gd_expr *e;
    const gd_eval *ctx;
    const gd_fn *fn;
    gd_value a[GD_FN_MAX_PARAMS]; /* evaluated, for a function of at most GD_FN_MAX_PARAMS arguments */
    int n;
};

static const gd_value NULLV = {.t = GD_V_NULL};
static bool is_null(gd_value v) { return v.t == GD_V_NULL; }
static double as_dbl(gd_value v) { return v.t == GD_V_DBL ? v.d : (double)v.i; }
static gd_value str_v(const char *p, size_t len) { return (gd_value){.t = GD_V_STR, .s = {p, (uint32_t)len}}; }

/* b as a string in the scratch arena, or NULL past GD_FN_MAX_RESULT; b is freed. */
static gd_value made(gd_buf *b, const gd_fn_call *c)
{
    if (b->len > GD_FN_MAX_RESULT) {
        gd_buf_free(b);
        return NULLV;
    }
    return gd_value_from_buf(b, c->ctx->scratch);
}

/* The argument i: evaluated already, or (a function of many) now. */
static gd_value arg(const gd_fn_call *c, int i)
{
    return i < GD_FN_MAX_PARAMS && c->fn->max <= GD_FN_MAX_PARAMS ? c->a[i] : gd_expr_eval(c->e->args[i], c->ctx);
}

/* ---- strings ---- */

static int64_t utf8_chars(gd_str s)
{
    int64_t n = 0;
    for (const char *p = s.p, *end = s.p + s.len; p < end; p += gd_char_len(p, end)) n++;
    return n;
}

/* The byte offset of character `chars` in s (s.len when past its end). */
static uint32_t utf8_offset(gd_str s, int64_t chars)
{
    const char *p = s.p, *end = s.p + s.len;
    while (chars-- > 0 && p < end) p += gd_char_len(p, end);
    return (uint32_t)(p - s.p);
}

static char ascii_upper(char c) { return c >= 'a' && c <= 'z' ? (char)(c - 32) : c; }
static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

static gd_value map_bytes(const gd_fn_call *c, char (*f)(char))
{
    gd_str s = c->a[0].s;
    char *p = gd_arena_alloc(c->ctx->scratch, s.len + 1);
    for (uint32_t i = 0; i < s.len; i++) p[i] = f(s.p[i]);
    return str_v(p, s.len);
}

static gd_value fn_ucase(const gd_fn_call *c) { return map_bytes(c, ascii_upper); }
static gd_value fn_lcase(const gd_fn_call *c) { return map_bytes(c, ascii_lower); }
static gd_value fn_len(const gd_fn_call *c) { return gd_int_value(utf8_chars(c->a[0].s)); }

/* Java's \s: space, \t \n \v \f \r */
static bool java_space(char ch) { return ch == ' ' || (ch >= '\t' && ch <= '\r'); }

static gd_value fn_initcap(const gd_fn_call *c)
{
    gd_str s = c->a[0].s;
    char *p = gd_arena_alloc(c->ctx->scratch, s.len + 1);
    bool word_start = true;
    for (uint32_t i = 0; i < s.len; i++) {
        p[i] = word_start ? ascii_upper(s.p[i]) : ascii_lower(s.p[i]);
        word_start = java_space(s.p[i]);
    }
    return str_v(p, s.len);
}

static gd_value fn_concat(const gd_fn_call *c)
{
    gd_buf b = {0};
    for (int i = 0; i < c->n && b.len <= GD_FN_MAX_RESULT; i++) gd_value_text(arg(c, i), &b);
    return made(&b, c);
}

static gd_value fn_concat_ws(const gd_fn_call *c)
{
    gd_value sep = arg(c, 0);
    if (is_null(sep)) return NULLV;
    gd_buf b = {0};
    bool first = true;
    for (int i = 1; i < c->n && b.len <= GD_FN_MAX_RESULT; i++) {
        gd_value v = arg(c, i);
        if (is_null(v)) continue;
        if (!first) gd_buf_put(&b, sep.s.p, sep.s.len);
        gd_value_text(v, &b);
        first = false;
    }
    return made(&b, c);
}

/* SUBSTRING(s, pos [, len]): 1-based; a negative pos counts from the end. */
static gd_value fn_substring(const gd_fn_call *c)
{
    gd_str s = c->a[0].s;
    int64_t n = utf8_chars(s), pos = c->a[1].i, from = pos > 0 ? pos - 1 : pos < 0 ? n + pos : 0;
    if (from < 0) from = 0;
    int64_t count = c->n > 2 ? c->a[2].i : n;
    if (count < 0) count = 0;
    if (from > n) from = n;
    if (count > n - from) count = n - from;
    uint32_t start = utf8_offset(s, from), stop = utf8_offset(s, from + count);
    return str_v(s.p + start, stop - start);
}

/* TRIM as Java's String.trim: bytes up to ' ' (controls and space) go. */
static gd_value trim_ends(const gd_fn_call *c, bool left, bool right)
{
    const char *p = c->a[0].s.p, *end = p + c->a[0].s.len;
    while (left && p < end && (unsigned char)*p <= ' ') p++;
    while (right && end > p && (unsigned char)end[-1] <= ' ') end--;
    return str_v(p, (size_t)(end - p));
}
static gd_value fn_trim(const gd_fn_call *c) { return trim_ends(c, true, true); }
static gd_value fn_ltrim(const gd_fn_call *c) { return trim_ends(c, true, false); }
static gd_value fn_rtrim(const gd_fn_call *c) { return trim_ends(c, false, true); }

/* REPLACE as Java's String.replace: every occurrence, left to right; an
 * empty one is before every character and at the end. */
static gd_value fn_replace(const gd_fn_call *c)
{
    gd_str s = c->a[0].s, from = c->a[1].s, to = c->a[2].s;
    gd_buf b = {0};
    const char *p = s.p, *end = s.p + s.len;
    if (!from.len) {
        for (; p < end && b.len <= GD_FN_MAX_RESULT; p += gd_char_len(p, end)) {
            gd_buf_put(&b, to.p, to.len);
            gd_buf_put(&b, p, gd_char_len(p, end));
        }
        gd_buf_put(&b, to.p, to.len);
        return made(&b, c);
    }
    while (b.len <= GD_FN_MAX_RESULT) {
        const char *hit = memmem(p, (size_t)(end - p), from.p, from.len);
        if (!hit) break;
        gd_buf_put(&b, p, (size_t)(hit - p));
        gd_buf_put(&b, to.p, to.len);
        p = hit + from.len;
    }
    gd_buf_put(&b, p, (size_t)(end - p));
    return made(&b, c);
}

/* LPAD, RPAD: to `length` characters, the input cut or padded with
 * repetitions of the padding; NULL for an empty padding or a negative
 * length, as ksqlDB; NULL past GD_FN_MAX_RESULT. */
static gd_value pad(const gd_fn_call *c, bool left)
{
    gd_str s = c->a[0].s, padding = c->a[2].s;
    int64_t length = c->a[1].i, have = utf8_chars(s);
    if (length < 0 || !padding.len || length > GD_FN_MAX_RESULT) return NULLV;
    if (have >= length) return str_v(s.p, utf8_offset(s, length));
    int64_t want = length - have, pchars = utf8_chars(padding);
    gd_buf b = {0};
    if (!left) gd_buf_put(&b, s.p, s.len);
    for (int64_t done = 0; done < want && b.len <= GD_FN_MAX_RESULT; done += pchars)
        gd_buf_put(&b, padding.p, want - done >= pchars ? padding.len : utf8_offset(padding, want - done));
    if (left) gd_buf_put(&b, s.p, s.len);
    return made(&b, c);
}
static gd_value fn_lpad(const gd_fn_call *c) { return pad(c, true); }
static gd_value fn_rpad(const gd_fn_call *c) { return pad(c, false); }

/* s's characters in reverse order (each character's bytes kept). */
static gd_str reversed(gd_str s, gd_arena *a)
{
    char *p = gd_arena_alloc(a, s.len + 1), *w = p + s.len;
    for (const char *q = s.p, *end = s.p + s.len; q < end;) {
        size_t n = gd_char_len(q, end);
        w -= n;
        memcpy(w, q, n);
        q += n;
    }
    return (gd_str){p, s.len};
}

/* The character index of the occurrence-th sub in s from character
 * `from` on (occurrences may overlap, as commons-lang's ordinalIndexOf),
 * counted from `from`; -1 when there is none. */
static int64_t ordinal_index(gd_str s, int64_t from, gd_str sub, int64_t occurrence)
{
    if (occurrence <= 0) return -1;
    const char *p = s.p + utf8_offset(s, from), *end = s.p + s.len;
    int64_t index = 0;
    for (;;) {
        if ((size_t)(end - p) >= sub.len && !memcmp(p, sub.p, sub.len) && --occurrence == 0) return index;
        if (p >= end) return -1;
        p += gd_char_len(p, end);
        index++;
    }
}

/* INSTR(s, sub [, position [, occurrence]]) as ksqlDB: 1-based, 0 when
 * not found; a negative position searches backwards from there. */
static gd_value fn_instr(const gd_fn_call *c)
{
    gd_str s = c->a[0].s, sub = c->a[1].s;
    int64_t len = utf8_chars(s), position = c->n > 2 ? c->a[2].i : 1, occurrence = c->n > 3 ? c->a[3].i : 1;
    if (position > len || -position > len) return gd_int_value(0);
    bool back = position < 0;
    if (back) {
        s = reversed(s, c->ctx->scratch);
        sub = reversed(sub, c->ctx->scratch);
        position = -position;
    }
    int64_t from = position - 1 < 0 ? position - 1 + len : position - 1; /* 0: from the last character, as Java */
    int64_t i = ordinal_index(s, from, sub, occurrence);
    if (i < 0) return gd_int_value(0);
    return gd_int_value(back ? len - position - i - utf8_chars(sub) + 2 : i + position);
}

/* ---- MASK and its variants ---- */

/* A mask character argument: the character, or none (no masking). */
static gd_str mask_char(gd_value v, const char *dflt)
{
    if (v.t == GD_V_STR) return v.s;
    return is_null(v) ? (gd_str){NULL, 0} : gd_str_c(dflt);
}

/* Masks s's characters from `from` to `to` (character indexes), the
 * classes' masks from argument `first` on (absent: X x n -). */
static gd_value mask_range(const gd_fn_call *c, int64_t from, int64_t to, int first)
{
    static const char *const dflt[4] = {"X", "x", "n", "-"};
    gd_str masks[4];
    for (int k = 0; k < 4; k++) masks[k] = first + k < c->n ? mask_char(c->a[first + k], dflt[k]) : gd_str_c(dflt[k]);
    gd_str s = c->a[0].s;
    gd_buf b = {0};
    int64_t i = 0;
    for (const char *p = s.p, *end = s.p + s.len; p < end; i++) {
        size_t n = gd_char_len(p, end);
        char ch = *p;
        int k = ch >= 'A' && ch <= 'Z' ? 0 : ch >= 'a' && ch <= 'z' ? 1 : ch >= '0' && ch <= '9' ? 2 : 3;
        if (i >= from && i < to && masks[k].p) gd_buf_put(&b, masks[k].p, masks[k].len);
        else gd_buf_put(&b, p, n);
        p += n;
    }
    return made(&b, c);
}

static gd_value fn_mask(const gd_fn_call *c)
{
    if (is_null(c->a[0])) return NULLV;
    return mask_range(c, 0, INT64_MAX, 1);
}

/* MASK_LEFT and the others: the input and numChars must not be NULL, and
 * numChars not negative (ksqlDB fails the row). */
static bool mask_args_ok(const gd_fn_call *c) { return !is_null(c->a[0]) && !is_null(c->a[1]) && c->a[1].i >= 0; }

static gd_value fn_mask_left(const gd_fn_call *c)
{
    return mask_args_ok(c) ? mask_range(c, 0, c->a[1].i, 2) : NULLV;
}
static gd_value fn_mask_right(const gd_fn_call *c)
{
    return mask_args_ok(c) ? mask_range(c, utf8_chars(c->a[0].s) - c->a[1].i, INT64_MAX, 2) : NULLV;
}
static gd_value fn_mask_keep_left(const gd_fn_call *c)
{
    return mask_args_ok(c) ? mask_range(c, c->a[1].i, INT64_MAX, 2) : NULLV;
}
static gd_value fn_mask_keep_right(const gd_fn_call *c)
{
    return mask_args_ok(c) ? mask_range(c, 0, utf8_chars(c->a[0].s) - c->a[1].i, 2) : NULLV;
}

/* ---- ENCODE, CHR ---- */

static const char *const encodings[] = {"hex", "utf8", "ascii", "base64"};
enum { ENC_HEX, ENC_UTF8, ENC_ASCII, ENC_BASE64, ENC_COUNT };
static const char REPLACEMENT[] = "\xef\xbf\xbd"; /* U+FFFD */
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int encoding_named(gd_str s)
{
    for (int i = 0; i < ENC_COUNT; i++)
        if (strlen(encodings[i]) == s.len && !strncasecmp(encodings[i], s.p, s.len)) return i;
    return -1;
}

/* The bytes s stands for in encoding enc, appended to out; false when s is not such text. */
static bool decode_as(gd_str s, int enc, gd_buf *out)
{
    switch (enc) {
    case ENC_HEX:
        if (s.len % 2) return false;
        for (uint32_t i = 0; i < s.len; i += 2) {
            int hi = gd_hex_value(s.p[i]), lo = gd_hex_value(s.p[i + 1]);
            if (hi < 0 || lo < 0) return false;
            gd_buf_putc(out, (char)(hi * 16 + lo));
        }
        return true;
    case ENC_BASE64: {
        uint32_t acc = 0, bits = 0, i = 0;
        for (; i < s.len && s.p[i] != '='; i++) {
            const char *at = memchr(B64, s.p[i], 64);
            if (!at || !s.p[i]) return false;
            acc = acc << 6 | (uint32_t)(at - B64);
            if ((bits += 6) >= 8) gd_buf_putc(out, (char)(acc >> (bits -= 8)));
        }
        for (; i < s.len; i++)
            if (s.p[i] != '=') return false;
        return true;
    }
    case ENC_ASCII: /* a character ASCII lacks is '?', as Java encodes it */
        for (const char *p = s.p, *end = s.p + s.len; p < end; p += gd_char_len(p, end))
            gd_buf_putc(out, (unsigned char)*p > 127 ? '?' : *p);
        return true;
    default: gd_buf_put(out, s.p, s.len); return true;
    }
}

/* bytes as text in encoding enc, appended to out. */
static void encode_as(gd_str bytes, int enc, gd_buf *out)
{
    switch (enc) {
    case ENC_HEX:
        for (uint32_t i = 0; i < bytes.len; i++) gd_buf_printf(out, "%02x", (unsigned char)bytes.p[i]);
        return;
    case ENC_BASE64:
        for (uint32_t i = 0; i < bytes.len; i += 3) {
            uint32_t n = bytes.len - i < 3 ? bytes.len - i : 3, v = 0;
            for (uint32_t k = 0; k < 3; k++) v = v << 8 | (k < n ? (unsigned char)bytes.p[i + k] : 0);
            for (uint32_t k = 0; k < 4; k++) gd_buf_putc(out, k <= n ? B64[(v >> (18 - 6 * k)) & 63] : '=');
        }
        return;
    case ENC_ASCII: /* a byte past ASCII is U+FFFD, as Java decodes it */
        for (uint32_t i = 0; i < bytes.len; i++) {
            if ((unsigned char)bytes.p[i] > 127) gd_buf_puts(out, REPLACEMENT);
            else gd_buf_putc(out, bytes.p[i]);
        }
        return;
    default: /* a byte that starts no UTF-8 character is U+FFFD */
        for (const char *p = bytes.p, *end = bytes.p + bytes.len; p < end;) {
            size_t n = gd_utf8_seq((const unsigned char *)p, (size_t)(end - p));
            if (n) gd_buf_put(out, p, n);
            else gd_buf_puts(out, REPLACEMENT);
            p += n ? n : 1;
        }
        return;
    }
}

static gd_value fn_encode(const gd_fn_call *c)
{
    int in = encoding_named(c->a[1].s), out = encoding_named(c->a[2].s);
    if (in < 0 || out < 0) return NULLV;
    gd_buf bytes = {0}, text = {0};
    bool ok = decode_as(c->a[0].s, in, &bytes);
    if (ok) encode_as((gd_str){bytes.p ? bytes.p : "", (uint32_t)bytes.len}, out, &text);
    gd_buf_free(&bytes);
    return ok ? made(&text, c) : NULLV;
}

/* CHR(code) or CHR('\uXXXX'): the character, NULL for no valid code point. */
static gd_value fn_chr(const gd_fn_call *c)
{
    int64_t cp = -1;
    gd_value v = c->a[0];
    if (v.t == GD_V_INT) cp = v.i;
    else if (v.t == GD_V_STR && v.s.len >= 6 && v.s.len <= 10 && v.s.p[0] == '\\' && v.s.p[1] == 'u') {
        cp = 0;
        for (uint32_t i = 2; i < v.s.len && cp >= 0; i++) cp = gd_hex_value(v.s.p[i]) < 0 ? -1 : cp * 16 + gd_hex_value(v.s.p[i]);
    }
    if (cp < 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return NULLV;
    char *p = gd_arena_alloc(c->ctx->scratch, 4);
    size_t n;
    if (cp < 0x80) p[0] = (char)cp, n = 1;
    else if (cp < 0x800) p[0] = (char)(0xC0 | cp >> 6), p[1] = (char)(0x80 | (cp & 63)), n = 2;
    else if (cp < 0x10000)
        p[0] = (char)(0xE0 | cp >> 12), p[1] = (char)(0x80 | (cp >> 6 & 63)), p[2] = (char)(0x80 | (cp & 63)), n = 3;
    else
        p[0] = (char)(0xF0 | cp >> 18), p[1] = (char)(0x80 | (cp >> 12 & 63)), p[2] = (char)(0x80 | (cp >> 6 & 63)),
        p[3] = (char)(0x80 | (cp & 63)), n = 4;
    return str_v(p, n);
}

/* ELT(n, s1, s2, ...): the n'th string (1-based), NULL past them. */
static gd_value fn_elt(const gd_fn_call *c)
{
    gd_value n = arg(c, 0);
    return is_null(n) || n.i < 1 || n.i >= c->n ? NULLV : arg(c, (int)n.i);
}

/* FIELD(s, s1, s2, ...): the position (1-based) of the first equal to s, 0 if none or s is NULL. */
static gd_value fn_field(const gd_fn_call *c)
{
    gd_value s = arg(c, 0);
    for (int i = 1; i < c->n && !is_null(s); i++) {
        gd_value v = arg(c, i);
        if (!is_null(v) && gd_str_eq(v.s, s.s)) return gd_int_value(i);
    }
    return gd_int_value(0);
}

/* MD5(s): the digest of s's bytes, in lower-case hex. */
static gd_value fn_md5(const gd_fn_call *c)
{
    unsigned char d[16];
    if (gnutls_hash_fast(GNUTLS_DIG_MD5, c->a[0].s.p ? c->a[0].s.p : "", c->a[0].s.len, d)) return NULLV;
    char *p = gd_arena_alloc(c->ctx->scratch, 33);
    for (int i = 0; i < 16; i++) snprintf(p + 2 * i, 3, "%02x", d[i]);
    return str_v(p, 32);
}

/* UUID(): a random (version 4) UUID, as Java's UUID.randomUUID. */
static gd_value fn_uuid(const gd_fn_call *c)
{
    uint8_t b[16];
    arc4random_buf(b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    char *p = gd_arena_alloc(c->ctx->scratch, 37);
    snprintf(p, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4],
             b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return str_v(p, 36);
}

/* ---- regular expressions ---- */

static gd_regex *compile_pattern(gd_str pattern, char *err, size_t errlen)
{
    gd_regex *re;
    return gd_regex_compile_captures(&re, pattern.p ? pattern.p : "", pattern.len, err, errlen) ? NULL : re;
}

/* REGEXP_EXTRACT(pattern, s [, group]): the first match's group, NULL
 * when there is no match, no such group, or the group took no part. */
static gd_value fn_regexp_extract(const gd_fn_call *c)
{
    gd_str s = c->a[1].s;
    int64_t group = c->n > 2 ? c->a[2].i : 0;
    char err[160];
    gd_regex *re;
    if (s.len > MAX_REGEX_TEXT || group < 0 || !(re = compile_pattern(c->a[0].s, err, sizeof err))) return NULLV;
    gd_value out = NULLV;
    gd_regex_span spans[GD_REGEX_MAX_GROUPS + 1];
    if (group <= gd_regex_groups(re) && gd_regex_search(re, s.p, s.len, 0, spans, (int)group + 1) == 1 &&
        spans[group].start != SIZE_MAX)
        out = str_v(s.p + spans[group].start, spans[group].end - spans[group].start);
    gd_regex_free(re);
    return out;
}

/* REGEXP_REPLACE(s, pattern, replacement): as Java's replaceAll. */
static gd_value fn_regexp_replace(const gd_fn_call *c)
{
    gd_str s = c->a[0].s, repl = c->a[2].s;
    char err[160];
    gd_regex *re;
    if (s.len > MAX_REGEX_TEXT || !(re = compile_pattern(c->a[1].s, err, sizeof err))) return NULLV;
    gd_buf b = {0};
    int rc = gd_regex_replace(re, s.p ? s.p : "", s.len, repl.p, repl.len, GD_FN_MAX_RESULT, &b);
    gd_regex_free(re);
    if (rc) {
        gd_buf_free(&b);
        return NULLV;
    }
    return made(&b, c);
}

/* ---- numbers ---- */

static gd_value fn_abs(const gd_fn_call *c)
{
    gd_value v = c->a[0];
    if (v.t == GD_V_INT) return v.i == INT64_MIN ? NULLV : gd_int_value(v.i < 0 ? -v.i : v.i);
    return gd_dbl_value(fabs(v.d));
}
static gd_value fn_floor(const gd_fn_call *c) { return c->a[0].t == GD_V_INT ? c->a[0] : gd_dbl_value(floor(c->a[0].d)); }
static gd_value fn_ceil(const gd_fn_call *c) { return c->a[0].t == GD_V_INT ? c->a[0] : gd_dbl_value(ceil(c->a[0].d)); }

/* v to `scale` decimals on its shortest decimal text, as ksqlDB does on
 * BigDecimal.valueOf(v): rounding half toward positive infinity (ROUND;
 * ROUND(-1.5) is -1), or toward zero (TRUNC). So ROUND(1.005, 2) is 1.01,
 * where 1.005 * 100 in binary is 100.49999... */
static double decimal_round(double v, int64_t scale, bool truncate)
{
    if (v == 0 || !isfinite(v) || scale > 300 || scale < -300) return v;
    /* fast: v scaled is far enough from where the direction changes (a
     * half, or for TRUNC a whole number) that binary's error cannot move it */
    double p10 = pow(10.0, (double)(scale >= 0 ? scale : -scale)), x = scale >= 0 ? v * p10 : v / p10;
    if (fabs(x) < 1e8) {
        double fl = floor(x), frac = x - fl, edge = truncate ? (frac < 0.5 ? frac : 1 - frac) : fabs(frac - 0.5);
        if (edge > 1e-7) {
            double m = truncate ? trunc(x) : fl + (frac > 0.5), r = scale >= 0 ? m / p10 : m * p10;
            return r ? r : 0.0; /* no -0.0 */
        }
    }
    char text[40];
    /* v's shortest decimal text, padded with zeros: a text of 15 digits
     * that reads back as v is it (a shorter one lies on the 15-digit grid
     * within half an ulp of v, so v rounds to it); else 16 or 17 digits */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(text, sizeof text, "%.*e", prec - 1, v);
        if (strtod(text, NULL) == v) break;
    }
    bool neg = text[0] == '-';
    char digits[20];
    int nd = 0;
    const char *p = text + neg;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    /* v = 0.d1d2... x 10^(exp10 + 1); keep the digits before the scale'th decimal */
    int64_t keep = exp10 + 1 + scale;
    if (keep >= nd) return v;
    int64_t m = 0;
    for (int64_t i = 0; i < keep; i++) m = m * 10 + (digits[i] - '0');
    if (!truncate && keep >= 0) {
        char first = digits[keep];
        bool rest = false;
        for (int i = (int)keep + 1; i < nd; i++) rest |= digits[i] != '0';
        if (neg ? first > '5' || (first == '5' && rest) : first >= '5') m++;
    }
    double r = scale >= 0 ? (double)m / p10 : (double)m * p10;
    return neg && r ? -r : r; /* no -0.0: BigDecimal has none */
}

static gd_value round_or_trunc(const gd_fn_call *c, bool truncate)
{
    gd_value v = c->a[0];
    if (c->n > 1) {
        if (v.t == GD_V_INT) { /* to tens, hundreds... for a negative scale */
            if (c->a[1].i >= 0) return v;
            return gd_value_cast(gd_dbl_value(decimal_round((double)v.i, c->a[1].i, truncate)), GD_T_BIGINT, NULL);
        }
        return gd_dbl_value(decimal_round(v.d, c->a[1].i, truncate));
    }
    if (v.t == GD_V_INT) return v;
    double r = decimal_round(v.d, 0, truncate);
    return r > -9.2e18 && r < 9.2e18 ? gd_int_value((int64_t)r) : NULLV;
}
static gd_value fn_round(const gd_fn_call *c) { return round_or_trunc(c, false); }
static gd_value fn_trunc(const gd_fn_call *c) { return round_or_trunc(c, true); }

static gd_value fn_sign(const gd_fn_call *c)
{
    double x = as_dbl(c->a[0]);
    return gd_int_value((x > 0) - (x < 0));
}

/* One DOUBLE to another through the row's `math` (EXP, LN, SQRT, ...). */
static gd_value fn_math(const gd_fn_call *c) { return gd_dbl_value(c->fn->math(as_dbl(c->a[0]))); }

static gd_value fn_log(const gd_fn_call *c)
{
    if (c->n == 1) return gd_dbl_value(log(as_dbl(c->a[0]))); /* natural, as ksqlDB's code (its docs say base 10) */
    return gd_dbl_value(log(as_dbl(c->a[1])) / log(as_dbl(c->a[0])));
}
static gd_value fn_power(const gd_fn_call *c) { return gd_dbl_value(pow(as_dbl(c->a[0]), as_dbl(c->a[1]))); }
static gd_value fn_atan2(const gd_fn_call *c) { return gd_dbl_value(atan2(as_dbl(c->a[0]), as_dbl(c->a[1]))); }
static gd_value fn_pi(const gd_fn_call *c) { return (void)c, gd_dbl_value(M_PI); }
static double degrees(double x) { return x * 180.0 / M_PI; }
static double radians(double x) { return x * M_PI / 180.0; }
static double cot(double x) { return 1.0 / tan(x); }
/* glibc's cbrt is off by an ulp (cbrt(27) is 3.0000000000000004); a Newton
 * step gives Java's 3.0 */
static double cube_root(double x)
{
    double y = cbrt(x);
    return y == 0 || !isfinite(y) ? y : y - (y * y * y - x) / (3 * y * y);
}

/* uniform in [0, 1): 53 random bits */
static gd_value fn_random(const gd_fn_call *c)
{
    (void)c;
    uint64_t bits;
    arc4random_buf(&bits, sizeof bits);
    return gd_dbl_value((double)(bits >> 11) * 0x1.0p-53);
}

/* GREATEST, LEAST: the largest or smallest non-null argument. */
static gd_value extreme(const gd_fn_call *c, int sign)
{
    gd_value best = NULLV;
    for (int i = 0; i < c->n; i++) {
        gd_value v = arg(c, i);
        if (!is_null(v) && (is_null(best) || gd_value_cmp(v, best) * sign > 0)) best = v;
    }
    return best;
}
static gd_value fn_greatest(const gd_fn_call *c) { return extreme(c, 1); }
static gd_value fn_least(const gd_fn_call *c) { return extreme(c, -1); }

/* ---- NULLs ---- */

static gd_value fn_coalesce(const gd_fn_call *c) /* the first non-null, evaluated lazily */
{
    for (int i = 0; i < c->n; i++) {
        gd_value v = arg(c, i);
        if (!is_null(v)) return v;
    }
    return NULLV;
}

static gd_value fn_nullif(const gd_fn_call *c)
{
    gd_value a = c->a[0], b = c->a[1];
    return !is_null(a) && !is_null(b) && gd_value_cmp(a, b) == 0 ? NULLV : a;
}

/* ---- time ---- */

/* The zone of argument i: prepared when bound, or loaded now. */
static const gd_zone *zone_arg(const gd_fn_call *c, int i)
{
    if (i >= c->n) return NULL; /* no zone: UTC */
    if (c->e->args[i]->prep) return c->e->args[i]->prep;
    const gd_zone *z;
    return gd_zone_load(c->a[i].s, c->ctx->scratch, &z) ? NULL : z;
}

static int64_t seconds_of(int64_t ms) { return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000); }
static int zone_offset_ms(const gd_zone *z, int64_t ms) { return z ? gd_zone_offset(z, seconds_of(ms)) : 0; }

/* v in decimal, zero-padded to width (at most 20 digits: a longer run of
 * a pattern letter pads no further). */
static void put_num(gd_buf *b, int64_t v, int width)
{
    char tmp[48];
    int n = snprintf(tmp, sizeof tmp, "%0*lld", width < 20 ? width : 20, (long long)v);
    gd_buf_put(b, tmp, (size_t)(n < (int)sizeof tmp ? n : (int)sizeof tmp - 1));
}

static const char *const months[] = {"January", "February", "March",     "April",   "May",      "June",
                                     "July",    "August",   "September", "October", "November", "December"};
static const char *const days[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};

/* A quoted run of a pattern at p ('...', or '' for a quote): its text, and
 * where the pattern goes on. */
static const char *quoted(const char *p, const char *end, gd_str *text)
{
    const char *q = p + 1;
    if (q < end && *q == '\'') {
        *text = (gd_str){p, 1};
        return p + 2;
    }
    while (q < end && *q != '\'') q++;
    *text = (gd_str){p + 1, (uint32_t)(q - p - 1)};
    return q < end ? q + 1 : q;
}

static bool pattern_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* Formats ms with a java.time.format.DateTimeFormatter pattern (the letters
 * ksqlDB's users write: y M d D H h m s S a E, X/x/Z offsets, z the zone's
 * abbreviation, 'quoted' text) in zone z's local time (NULL: UTC). */
static bool format_time(int64_t ms, gd_str pattern, const gd_zone *z, gd_buf *b)
{
    int offset_s = zone_offset_ms(z, ms);
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
            gd_str text;
            p = quoted(p, end, &text);
            gd_buf_put(b, text.p, text.len);
            continue;
        }
        if (!pattern_letter(c)) {
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
        case 'z': gd_buf_puts(b, z ? gd_zone_abbr(z, seconds_of(ms)) : "UTC"); break;
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

static gd_value fn_timestamptostring(const gd_fn_call *c)
{
    const gd_zone *z = zone_arg(c, 2);
    if (c->n > 2 && !z) return NULLV;
    gd_buf b = {0};
    if (!format_time(c->a[0].i, c->a[1].s, z, &b)) {
        gd_buf_free(&b);
        return NULLV;
    }
    return made(&b, c);
}

/* Reads up to max digits (at least one) at *p: the number, or -1. */
static int64_t read_digits(const char **p, const char *end, int max)
{
    int64_t v = 0;
    int n = 0;
    while (*p < end && n < max && **p >= '0' && **p <= '9') v = v * 10 + (*(*p)++ - '0'), n++;
    return n ? v : -1;
}

/* A name of list (of n) at *p, its first 3 letters or all of it: its index, or -1. */
static int read_name(const char **p, const char *end, const char *const *list, int n)
{
    for (int i = 0; i < n; i++) {
        size_t full = strlen(list[i]);
        if ((size_t)(end - *p) >= full && !strncasecmp(*p, list[i], full)) return *p += full, i;
    }
    for (int i = 0; i < n; i++)
        if (end - *p >= 3 && !strncasecmp(*p, list[i], 3)) return *p += 3, i;
    return -1;
}

/* An offset at *p: Z, or +hh[[:]mm]. */
static bool read_offset(const char **p, const char *end, int *offset_s)
{
    if (*p < end && (**p == 'Z' || **p == 'z')) {
        (*p)++;
        *offset_s = 0;
        return true;
    }
    if (*p >= end || (**p != '+' && **p != '-')) return false;
    int sign = *(*p)++ == '-' ? -1 : 1;
    int64_t h = read_digits(p, end, 2), m = 0;
    if (h < 0) return false;
    if (*p < end && **p == ':') (*p)++;
    if (*p < end && **p >= '0' && **p <= '9' && (m = read_digits(p, end, 2)) < 0) return false;
    *offset_s = sign * (int)(h * 3600 + m * 60);
    return true;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400, yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1, doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t days_in_month(int64_t y, int64_t m)
{
    static const int8_t d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : d[m - 1];
}

/* Parses text with a DateTimeFormatter pattern (format_time's letters)
 * into epoch ms: fields absent are 1970-01-01 00:00:00.000; the text's
 * offset when it has one, else the zone's. false when the text does not
 * follow the pattern or a field is out of range. */
static bool parse_time(gd_str text, gd_str pattern, const gd_zone *z, int64_t *ms)
{
    int64_t year = 1970, month = 1, day = 1, hour = 0, minute = 0, second = 0, milli = 0;
    int pm = -1, offset = 0;
    bool has_offset = false, hour12 = false;
    const char *t = text.p, *tend = text.p + text.len, *p = pattern.p, *end = pattern.p + pattern.len;
    while (p < end) {
        char c = *p;
        if (c == '\'') {
            gd_str lit;
            p = quoted(p, end, &lit);
            if ((size_t)(tend - t) < lit.len || memcmp(t, lit.p, lit.len)) return false;
            t += lit.len;
            continue;
        }
        if (!pattern_letter(c)) {
            if (t >= tend || *t != c) return false;
            t++, p++;
            continue;
        }
        int n = 0;
        while (p + n < end && p[n] == c) n++;
        p += n;
        int64_t v = 0;
        switch (c) {
        case 'y':
        case 'u':
            if ((v = read_digits(&t, tend, n == 2 ? 2 : 9)) < 0) return false;
            year = n == 2 ? 2000 + v : v;
            break;
        case 'M':
        case 'L':
            if (n >= 3) {
                if ((v = read_name(&t, tend, months, 12)) < 0) return false;
                month = v + 1;
            } else if ((month = read_digits(&t, tend, 2)) < 0) return false;
            break;
        case 'd': day = read_digits(&t, tend, 2); break;
        case 'H': hour = read_digits(&t, tend, 2); break;
        case 'h':
            hour = read_digits(&t, tend, 2);
            hour12 = true;
            break;
        case 'm': minute = read_digits(&t, tend, 2); break;
        case 's': second = read_digits(&t, tend, 2); break;
        case 'S': { /* up to 9 digits, a fraction of a second */
            const char *from = t;
            if ((v = read_digits(&t, tend, n > 9 ? 9 : n)) < 0) return false;
            for (int64_t k = t - from; k < 3; k++) v *= 10;
            for (int64_t k = t - from; k > 3; k--) v /= 10;
            milli = v;
            break;
        }
        case 'a':
            if (tend - t < 2) return false;
            pm = !strncasecmp(t, "PM", 2) ? 1 : !strncasecmp(t, "AM", 2) ? 0 : -1;
            if (pm < 0) return false;
            t += 2;
            break;
        case 'E':
            if (read_name(&t, tend, days, 7) < 0) return false;
            break;
        case 'X':
        case 'x':
        case 'Z':
            if (!read_offset(&t, tend, &offset)) return false;
            has_offset = true;
            break;
        default: return false;
        }
        if (day < 0 || hour < 0 || minute < 0 || second < 0) return false;
    }
    if (t != tend) return false;
    if (hour12) {
        if (hour < 1 || hour > 12) return false;
        hour = hour % 12 + (pm == 1 ? 12 : 0);
    }
    if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59 || year > 999999) return false;
    if (month < 1 || month > 12 || day > days_in_month(year, month)) return false;
    int64_t local = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    int64_t utc = has_offset ? local - offset : z ? gd_zone_to_utc(z, local) : local;
    *ms = utc * 1000 + milli;
    return true;
}

static gd_value fn_stringtotimestamp(const gd_fn_call *c)
{
    const gd_zone *z = zone_arg(c, 2);
    if (c->n > 2 && !z) return NULLV;
    int64_t ms;
    return parse_time(c->a[0].s, c->a[1].s, z, &ms) ? gd_int_value(ms) : NULLV;
}

static gd_value fn_from_unixtime(const gd_fn_call *c) { return c->a[0]; }

static gd_value fn_unix_date(const gd_fn_call *c)
{
    int64_t ms = c->ctx->now_ms;
    return gd_int_value(ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000));
}

/* CONVERT_TZ(ms, from, to): the instant whose clock reading in `to` is
 * ms's in `from`, as ksqlDB (ms + to's offset - from's, both at ms). */
static gd_value fn_convert_tz(const gd_fn_call *c)
{
    const gd_zone *from = zone_arg(c, 1), *to = zone_arg(c, 2);
    if (!from || !to) return NULLV;
    int64_t ms = c->a[0].i, r;
    int64_t shift = ((int64_t)zone_offset_ms(to, ms) - zone_offset_ms(from, ms)) * 1000;
    return __builtin_add_overflow(ms, shift, &r) ? NULLV : gd_int_value(r);
}

static const struct {
    const char *name;
    int64_t ms;
} units[] = {{"MILLISECOND", 1},       {"SECOND", 1000},          {"MINUTE", 60000},
             {"HOUR", 3600000},        {"DAY", 86400000},          {"MILLISECONDS", 1},
             {"SECONDS", 1000},        {"MINUTES", 60000},        {"HOURS", 3600000},
             {"DAYS", 86400000}};

static int64_t unit_ms(gd_str s)
{
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strlen(units[i].name) == s.len && !strncasecmp(units[i].name, s.p, s.len)) return units[i].ms;
    return 0;
}

/* TIMESTAMPADD(unit, n, ms), TIMESTAMPSUB: NULL on overflow. */
static gd_value add_interval(const gd_fn_call *c, int sign)
{
    int64_t unit = unit_ms(c->a[0].s), d, r;
    if (!unit || __builtin_mul_overflow(c->a[1].i, unit * sign, &d) || __builtin_add_overflow(c->a[2].i, d, &r)) return NULLV;
    return gd_int_value(r);
}
static gd_value fn_timestampadd(const gd_fn_call *c) { return add_interval(c, 1); }
static gd_value fn_timestampsub(const gd_fn_call *c) { return add_interval(c, -1); }

/* ---- the table ---- */

#define P(...) {__VA_ARGS__}
#define S GD_FP_STRING
#define W GD_FP_WHOLE
#define N GD_FP_NUMBER
#define MASKS {"upper", GD_FP_MASK}, {"lower", GD_FP_MASK}, {"digit", GD_FP_MASK}, {"other", GD_FP_MASK}

static const gd_fn functions[] = {
    /* strings */
    {"UCASE", NULL, "STRING", "The string with ASCII letters in upper case.", 1, 1, P({"input", S}), GD_FR_STRING, 0, fn_ucase, NULL},
    {"LCASE", NULL, "STRING", "The string with ASCII letters in lower case.", 1, 1, P({"input", S}), GD_FR_STRING, 0, fn_lcase, NULL},
    {"LEN", NULL, "STRING", "The number of characters (code points).", 1, 1, P({"input", S}), GD_FR_INTEGER, 0, fn_len, NULL},
    {"CONCAT", NULL, "STRING", "The arguments as text, one after the other; NULLs are skipped.", 1, GD_FN_ANY_NUMBER,
     P({"expr", GD_FP_ANY}), GD_FR_STRING, GD_FN_NULLS, fn_concat, NULL},
    {"CONCAT_WS", NULL, "STRING", "The non-NULL arguments after the separator, joined by it; NULL when the separator is.",
     2, GD_FN_ANY_NUMBER, P({"separator", S}, {"expr", S}), GD_FR_STRING, GD_FN_NULLS, fn_concat_ws, NULL},
    {"SUBSTRING", NULL, "STRING", "The characters from position (1-based; negative: from the end), length of them or all.",
     2, 3, P({"input", S}, {"position", W}, {"length", W}), GD_FR_STRING, 0, fn_substring, NULL},
    {"TRIM", NULL, "STRING", "The string without spaces and control characters at either end.", 1, 1, P({"input", S}),
     GD_FR_STRING, 0, fn_trim, NULL},
    {"LTRIM", NULL, "STRING", "The string without spaces and control characters at its start.", 1, 1, P({"input", S}),
     GD_FR_STRING, 0, fn_ltrim, NULL},
    {"RTRIM", NULL, "STRING", "The string without spaces and control characters at its end.", 1, 1, P({"input", S}),
     GD_FR_STRING, 0, fn_rtrim, NULL},
    {"REPLACE", NULL, "STRING", "Every occurrence of a substring replaced by another.", 3, 3,
     P({"input", S}, {"from", S}, {"to", S}), GD_FR_STRING, 0, fn_replace, NULL},
    {"INITCAP", NULL, "STRING", "Each whitespace-delimited word with its first letter in upper case, the rest in lower.",
     1, 1, P({"input", S}), GD_FR_STRING, 0, fn_initcap, NULL},
    {"LPAD", NULL, "STRING", "The input padded on the left with repetitions of padding to length characters, or cut to it.",
     3, 3, P({"input", S}, {"length", W}, {"padding", S}), GD_FR_STRING, 0, fn_lpad, NULL},
    {"RPAD", NULL, "STRING", "The input padded on the right with repetitions of padding to length characters, or cut to it.",
     3, 3, P({"input", S}, {"length", W}, {"padding", S}), GD_FR_STRING, 0, fn_rpad, NULL},
    {"INSTR", NULL, "STRING",
     "The position (1-based) of the occurrence'th substring from position (negative: searching backwards), 0 if none.",
     2, 4, P({"input", S}, {"substring", S}, {"position", W}, {"occurrence", W}), GD_FR_INTEGER, 0, fn_instr, NULL},
    {"MASK", NULL, "STRING", "Upper-case letters, lower-case letters, digits and other characters replaced by their masks "
     "(default X, x, n, -; a NULL mask keeps them).", 1, 5,
     P({"input", S}, MASKS),
     GD_FR_STRING, GD_FN_NULLS, fn_mask, NULL},
    {"MASK_LEFT", NULL, "STRING", "MASK applied to the first count characters.", 2, 6,
     P({"input", S}, {"count", W}, MASKS),
     GD_FR_STRING, GD_FN_NULLS, fn_mask_left, NULL},
    {"MASK_RIGHT", NULL, "STRING", "MASK applied to the last count characters.", 2, 6,
     P({"input", S}, {"count", W}, MASKS),
     GD_FR_STRING, GD_FN_NULLS, fn_mask_right, NULL},
    {"MASK_KEEP_LEFT", NULL, "STRING", "MASK applied to all but the first count characters.", 2, 6,
     P({"input", S}, {"count", W}, MASKS),
     GD_FR_STRING, GD_FN_NULLS, fn_mask_keep_left, NULL},
    {"MASK_KEEP_RIGHT", NULL, "STRING", "MASK applied to all but the last count characters.", 2, 6,
     P({"input", S}, {"count", W}, MASKS),
     GD_FR_STRING, GD_FN_NULLS, fn_mask_keep_right, NULL},
    {"ENCODE", NULL, "STRING", "The input, text in one encoding (hex, utf8, ascii, base64), as text in another; NULL when "
     "it is not text of the first (bad hex or base64).", 3, 3,
     P({"input", S}, {"input_encoding", GD_FP_ENCODING}, {"output_encoding", GD_FP_ENCODING}), GD_FR_STRING, 0, fn_encode, NULL},
    {"CHR", NULL, "STRING", "The character of a code point, given as a number or as '\\uXXXX'.", 1, 1,
     P({"code", GD_FP_ANY}), GD_FR_STRING, 0, fn_chr, NULL},
    {"ELT", NULL, "STRING", "The n'th of the strings (1-based); NULL past them.", 2, GD_FN_ANY_NUMBER,
     P({"n", W}, {"value", S}), GD_FR_STRING, GD_FN_NULLS, fn_elt, NULL},
    {"FIELD", NULL, "STRING", "The position (1-based) of the first string equal to the input; 0 if none, or the input is NULL.",
     2, GD_FN_ANY_NUMBER, P({"input", S}, {"value", S}), GD_FR_INTEGER, GD_FN_NULLS, fn_field, NULL},
    {"MD5", NULL, "STRING", "The MD5 digest of the string's UTF-8 bytes, in hex.", 1, 1, P({"input", S}), GD_FR_STRING, 0,
     fn_md5, NULL},
    {"UUID", NULL, "STRING", "A random (version 4) UUID; not allowed in CREATE ... AS SELECT.", 0, 0, P({NULL, 0}),
     GD_FR_STRING, GD_FN_RANDOM, fn_uuid, NULL},
    /* regular expressions */
    {"REGEXP_EXTRACT", NULL, "REGULAR EXPRESSION", "The first match of the pattern in the input, or its group; NULL "
     "when there is none.", 2, 3, P({"pattern", GD_FP_PATTERN}, {"input", S}, {"group", W}), GD_FR_STRING, 0,
     fn_regexp_extract, NULL},
    {"REGEXP_REPLACE", NULL, "REGULAR EXPRESSION", "Every match of the pattern replaced ($1 in the replacement: group 1).",
     3, 3, P({"input", S}, {"pattern", GD_FP_PATTERN}, {"replacement", S}), GD_FR_STRING, 0, fn_regexp_replace, NULL},
    /* numbers */
    {"ABS", NULL, "NUMERIC", "The absolute value.", 1, 1, P({"value", N}), GD_FR_FIRST, 0, fn_abs, NULL},
    {"CEIL", "CEILING", "NUMERIC", "The smallest whole value not below.", 1, 1, P({"value", N}), GD_FR_FIRST, 0, fn_ceil, NULL},
    {"FLOOR", NULL, "NUMERIC", "The largest whole value not above.", 1, 1, P({"value", N}), GD_FR_FIRST, 0, fn_floor, NULL},
    {"ROUND", NULL, "NUMERIC", "Rounded to scale decimals (default 0; a DOUBLE then gives a BIGINT), halves up: "
     "ROUND(-1.5) is -1.", 1, 2, P({"value", N}, {"scale", W}), GD_FR_ROUND, 0, fn_round, NULL},
    {"TRUNC", NULL, "NUMERIC", "Cut toward zero to scale decimals (default 0; a DOUBLE then gives a BIGINT).", 1, 2,
     P({"value", N}, {"scale", W}), GD_FR_ROUND, 0, fn_trunc, NULL},
    {"SIGN", NULL, "NUMERIC", "-1, 0 or 1 as the value is negative, zero or positive.", 1, 1, P({"value", N}),
     GD_FR_INTEGER, 0, fn_sign, NULL},
    {"EXP", NULL, "NUMERIC", "e to the power of the value.", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, exp},
    {"LN", NULL, "NUMERIC", "The natural logarithm (NULL for 0 or less).", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, log},
    {"LOG", NULL, "NUMERIC", "The natural logarithm of value (as ksqlDB computes it; its docs say base 10), or LOG(base, value).", 1, 2,
     P({"value", N}, {"value", N}), GD_FR_DOUBLE, 0, fn_log, NULL},
    {"SQRT", NULL, "NUMERIC", "The square root (NULL for a negative value).", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, sqrt},
    {"CBRT", NULL, "NUMERIC", "The cube root.", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, cube_root},
    {"POWER", NULL, "NUMERIC", "base to the power of exponent.", 2, 2, P({"base", N}, {"exponent", N}), GD_FR_DOUBLE, 0,
     fn_power, NULL},
    {"PI", NULL, "NUMERIC", "An approximation of pi.", 0, 0, P({NULL, 0}), GD_FR_DOUBLE, 0, fn_pi, NULL},
    {"DEGREES", NULL, "NUMERIC", "Radians to degrees.", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, degrees},
    {"RADIANS", NULL, "NUMERIC", "Degrees to radians.", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, radians},
    {"SIN", NULL, "NUMERIC", "The sine (radians).", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, sin},
    {"COS", NULL, "NUMERIC", "The cosine (radians).", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, cos},
    {"TAN", NULL, "NUMERIC", "The tangent (radians).", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, tan},
    {"COT", NULL, "NUMERIC", "The cotangent (radians).", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, cot},
    {"ASIN", NULL, "NUMERIC", "The arc sine, in radians.", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, asin},
    {"ACOS", NULL, "NUMERIC", "The arc cosine, in radians.", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, acos},
    {"ATAN", NULL, "NUMERIC", "The arc tangent, in radians.", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, atan},
    {"ATAN2", NULL, "NUMERIC", "The angle of the point (x, y), in radians.", 2, 2, P({"y", N}, {"x", N}), GD_FR_DOUBLE, 0,
     fn_atan2, NULL},
    {"SINH", NULL, "NUMERIC", "The hyperbolic sine.", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, sinh},
    {"COSH", NULL, "NUMERIC", "The hyperbolic cosine.", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, cosh},
    {"TANH", NULL, "NUMERIC", "The hyperbolic tangent.", 1, 1, P({"value", N}), GD_FR_DOUBLE, 0, fn_math, tanh},
    {"GREATEST", NULL, "NUMERIC", "The largest non-NULL argument.", 1, GD_FN_ANY_NUMBER, P({"value", GD_FP_SAME}),
     GD_FR_SAME, GD_FN_NULLS, fn_greatest, NULL},
    {"LEAST", NULL, "NUMERIC", "The smallest non-NULL argument.", 1, GD_FN_ANY_NUMBER, P({"value", GD_FP_SAME}),
     GD_FR_SAME, GD_FN_NULLS, fn_least, NULL},
    {"RANDOM", NULL, "NUMERIC", "A random DOUBLE in [0, 1); not allowed in CREATE ... AS SELECT.", 0, 0, P({NULL, 0}),
     GD_FR_DOUBLE, GD_FN_RANDOM, fn_random, NULL},
    /* NULLs */
    {"COALESCE", NULL, "NULLS", "The first non-NULL argument.", 1, GD_FN_ANY_NUMBER, P({"value", GD_FP_SAME}),
     GD_FR_SAME, GD_FN_NULLS, fn_coalesce, NULL},
    {"IFNULL", NULL, "NULLS", "expression, or alternative when it is NULL.", 2, 2,
     P({"expression", GD_FP_SAME}, {"alternative", GD_FP_SAME}), GD_FR_SAME, GD_FN_NULLS, fn_coalesce, NULL},
    {"NULLIF", NULL, "NULLS", "NULL when the two are equal, else the first.", 2, 2,
     P({"expression1", GD_FP_SAME}, {"expression2", GD_FP_SAME}), GD_FR_SAME, GD_FN_NULLS, fn_nullif, NULL},
    /* time: epoch milliseconds where ksqlDB has TIMESTAMPs */
    {"TIMESTAMPTOSTRING", "FORMAT_TIMESTAMP", "DATE AND TIME",
     "Epoch milliseconds as text, by a java.time pattern, in a zone (an IANA name, UTC, or an offset; default UTC).", 2, 3,
     P({"millis", GD_FP_MILLIS}, {"format", S}, {"zone", GD_FP_ZONE}), GD_FR_STRING, 0, fn_timestamptostring, NULL},
    {"STRINGTOTIMESTAMP", "PARSE_TIMESTAMP", "DATE AND TIME",
     "Text read by a java.time pattern, in a zone (default UTC), as epoch milliseconds; NULL when it does not fit.", 2, 3,
     P({"input", S}, {"format", S}, {"zone", GD_FP_ZONE}), GD_FR_BIGINT, 0, fn_stringtotimestamp, NULL},
    {"FROM_UNIXTIME", NULL, "DATE AND TIME", "The epoch milliseconds themselves (gamingd's TIMESTAMP is a BIGINT).", 1, 1,
     P({"millis", GD_FP_MILLIS}), GD_FR_BIGINT, 0, fn_from_unixtime, NULL},
    {"UNIX_DATE", NULL, "DATE AND TIME", "Today (UTC) as days since 1970-01-01.", 0, 0, P({NULL, 0}), GD_FR_INTEGER, 0,
     fn_unix_date, NULL},
    {"CONVERT_TZ", NULL, "DATE AND TIME", "Epoch milliseconds moved from one zone's clock reading to another's.", 3, 3,
     P({"millis", GD_FP_MILLIS}, {"from_zone", GD_FP_ZONE}, {"to_zone", GD_FP_ZONE}), GD_FR_BIGINT, 0, fn_convert_tz, NULL},
    {"TIMESTAMPADD", NULL, "DATE AND TIME", "Epoch milliseconds plus n units (MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS).",
     3, 3, P({"unit", GD_FP_UNIT}, {"n", W}, {"millis", GD_FP_MILLIS}), GD_FR_BIGINT, 0, fn_timestampadd, NULL},
    {"TIMESTAMPSUB", NULL, "DATE AND TIME", "Epoch milliseconds minus n units (MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS).",
     3, 3, P({"unit", GD_FP_UNIT}, {"n", W}, {"millis", GD_FP_MILLIS}), GD_FR_BIGINT, 0, fn_timestampsub, NULL},
};

#undef P
#undef S
#undef W
#undef N
#undef MASKS

enum { NFUNCTIONS = sizeof functions / sizeof functions[0] };

int gd_fn_count(void) { return NFUNCTIONS; }
const gd_fn *gd_fn_at(int index) { return index >= 0 && index < NFUNCTIONS ? &functions[index] : NULL; }

static bool named(const char *name, gd_str s) { return name && strlen(name) == s.len && !strncasecmp(name, s.p, s.len); }

const gd_fn *gd_fn_lookup(gd_str name, int *index)
{
    for (int i = 0; i < NFUNCTIONS; i++)
        if (named(functions[i].name, name) || named(functions[i].alias, name)) {
            *index = i;
            return &functions[i];
        }
    return NULL;
}

/* ---- types ---- */

int gd_fn_nparams(const gd_fn *f)
{
    int n = 0;
    while (n < GD_FN_MAX_PARAMS && f->params[n].name) n++;
    return n;
}

/* The parameter argument i is passed to (the last one repeats). */
static int param_of(const gd_fn *f, int i)
{
    int n = gd_fn_nparams(f);
    return i < n ? i : n - 1;
}

const char *gd_fn_param_type_name(gd_fn_param_type t)
{
    switch (t) {
    case GD_FP_WHOLE: return "INTEGER";
    case GD_FP_NUMBER: return "NUMBER";
    case GD_FP_BOOLEAN: return "BOOLEAN";
    case GD_FP_MILLIS: return "BIGINT";
    case GD_FP_SAME:
    case GD_FP_ANY: return "ANY";
    default: return "STRING";
    }
}

const char *gd_fn_result_name(const gd_fn *f)
{
    switch (f->result) {
    case GD_FR_STRING: return "STRING";
    case GD_FR_BIGINT: return "BIGINT";
    case GD_FR_INTEGER: return "INTEGER";
    case GD_FR_DOUBLE: return "DOUBLE";
    case GD_FR_BOOLEAN: return "BOOLEAN";
    case GD_FR_ROUND: return "BIGINT for one DOUBLE, else the value's type";
    case GD_FR_FIRST: return "the value's type";
    default: return "the arguments' common type";
    }
}

void gd_fn_signature(const gd_fn *f, gd_buf *out)
{
    gd_buf_printf(out, "%s(", f->name);
    int np = gd_fn_nparams(f);
    for (int i = 0; i < np; i++) {
        bool optional = i >= f->min;
        gd_buf_printf(out, "%s%s%s %s", optional ? "[" : "", i ? ", " : "", f->params[i].name,
                      gd_fn_param_type_name(f->params[i].type));
        if (f->max > GD_FN_MAX_PARAMS && i == np - 1) gd_buf_puts(out, ", ...");
    }
    for (int i = f->min; i < np; i++) gd_buf_putc(out, ']');
    gd_buf_printf(out, ") -> %s", gd_fn_result_name(f));
}

static bool accepts(gd_fn_param_type p, gd_coltype t)
{
    if (t == GD_T_NULL) return true;
    switch (p) {
    case GD_FP_WHOLE:
    case GD_FP_MILLIS: return t == GD_T_INTEGER || t == GD_T_BIGINT;
    case GD_FP_NUMBER: return gd_coltype_numeric(t);
    case GD_FP_BOOLEAN: return t == GD_T_BOOLEAN;
    case GD_FP_SAME:
    case GD_FP_ANY: return true;
    default: return t == GD_T_STRING;
    }
}

/* A literal argument of a checked kind: false with err when it is not one. */
static bool check_literal(gd_expr *a, gd_fn_param_type p, gd_arena *arena, char *err, size_t errlen)
{
    if (a->op != GD_E_LIT || a->lit.t != GD_V_STR) return true;
    gd_str s = a->lit.s;
    switch (p) {
    case GD_FP_ZONE: {
        const gd_zone *z;
        if (gd_zone_load(s, arena, &z)) {
            snprintf(err, errlen, "unknown time zone '%.*s': use a name such as 'America/Los_Angeles', UTC, or an "
                     "offset such as +02:00", (int)(s.len > 64 ? 64 : s.len), s.p);
            return false;
        }
        a->prep = z;
        return true;
    }
    case GD_FP_PATTERN: {
        char why[200];
        gd_regex *re = compile_pattern(s, why, sizeof why);
        if (!re) {
            snprintf(err, errlen, "bad regular expression: %s", why);
            return false;
        }
        gd_regex_free(re);
        return true;
    }
    case GD_FP_ENCODING:
        if (encoding_named(s) >= 0) return true;
        snprintf(err, errlen, "unknown encoding '%.*s': hex, utf8, ascii or base64", (int)(s.len > 32 ? 32 : s.len), s.p);
        return false;
    case GD_FP_UNIT:
        if (unit_ms(s)) return true;
        snprintf(err, errlen, "unknown time unit '%.*s': MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS",
                 (int)(s.len > 32 ? 32 : s.len), s.p);
        return false;
    case GD_FP_MASK:
        if (s.len && gd_char_len(s.p, s.p + s.len) == s.len) return true;
        snprintf(err, errlen, "a mask is one character, not '%.*s'", (int)(s.len > 32 ? 32 : s.len), s.p);
        return false;
    default: return true;
    }
}

bool gd_fn_check(gd_expr *e, gd_arena *arena, int *at, char *err, size_t errlen)
{
    const gd_fn *f = &functions[e->index];
    int n = e->nargs;
    *at = -1;
    if (n < f->min || n > f->max) {
        if (f->min == f->max) snprintf(err, errlen, "%s takes %d argument%s, not %d", f->name, f->min, f->min == 1 ? "" : "s", n);
        else if (f->max == GD_FN_ANY_NUMBER) snprintf(err, errlen, "%s takes %d or more arguments, not %d", f->name, f->min, n);
        else snprintf(err, errlen, "%s takes %d to %d arguments, not %d", f->name, f->min, f->max, n);
        return false;
    }
    gd_coltype same = GD_T_NULL;
    for (int i = 0; i < n; i++) {
        gd_fn_param_type p = f->params[param_of(f, i)].type;
        gd_coltype t = e->args[i]->type;
        *at = i;
        if (p == GD_FP_SAME && !gd_coltype_unify(same, t, &same)) {
            snprintf(err, errlen, "%s arguments must share a type (%s and %s do not)", f->name, gd_coltype_name(same),
                     gd_coltype_name(t));
            return false;
        }
        if (f->result == GD_FR_SAME && p == GD_FP_SAME) continue;
        if (!accepts(p, t)) {
            snprintf(err, errlen, "%s: %s must be %s%s, not %s", f->name, f->params[param_of(f, i)].name,
                     p == GD_FP_WHOLE ? "a whole number (" : p == GD_FP_NUMBER ? "a number (" : "a ",
                     p == GD_FP_WHOLE ? "INTEGER or BIGINT)" : p == GD_FP_NUMBER ? "INTEGER, BIGINT or DOUBLE)"
                     : p == GD_FP_MILLIS ? "BIGINT of epoch milliseconds" : gd_fn_param_type_name(p),
                     gd_coltype_name(t));
            return false;
        }
        if (!check_literal(e->args[i], p, arena, err, errlen)) return false;
    }
    *at = -1;
    gd_coltype first = n ? e->args[0]->type : GD_T_NULL;
    switch (f->result) {
    case GD_FR_STRING: e->type = GD_T_STRING; break;
    case GD_FR_BIGINT: e->type = GD_T_BIGINT; break;
    case GD_FR_INTEGER: e->type = GD_T_INTEGER; break;
    case GD_FR_DOUBLE: e->type = GD_T_DOUBLE; break;
    case GD_FR_BOOLEAN: e->type = GD_T_BOOLEAN; break;
    case GD_FR_FIRST: e->type = first == GD_T_NULL ? GD_T_DOUBLE : first; break;
    case GD_FR_SAME: e->type = same; break;
    case GD_FR_ROUND: e->type = n == 1 && first == GD_T_DOUBLE ? GD_T_BIGINT : first; break;
    }
    return true;
}

/* ---- evaluation ---- */

gd_value gd_fn_eval(const gd_expr *e, const gd_eval *ctx)
{
    gd_fn_call c = {.e = e, .ctx = ctx, .fn = &functions[e->index], .n = e->nargs};
    if (c.fn->max <= GD_FN_MAX_PARAMS)
        for (int i = 0; i < c.n; i++) {
            c.a[i] = gd_expr_eval(e->args[i], ctx);
            if (is_null(c.a[i]) && !(c.fn->flags & GD_FN_NULLS)) return NULLV;
        }
    gd_value v = c.fn->eval(&c);
    if (e->type == GD_T_DOUBLE && v.t == GD_V_INT) v = gd_dbl_value((double)v.i);
    return v;
}
