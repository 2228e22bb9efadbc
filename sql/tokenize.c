/* tokenize.c -- SQL text into tokens, as ksqlDB's lexer splits it.
 *
 * Identifiers: letters, digits, '_', '@' (not first digit); quoted with
 * backticks or double quotes to keep any character. Strings: 'single
 * quoted', '' for a quote. Numbers: 12 is an integer, 1.5 / .5 / 1e3 a
 * decimal. Comments: -- to the end of the line, and slash-star ... star-slash. Keywords
 * are identifiers to the tokenizer; the parser tells them apart. Every
 * token knows its line and column for error messages. */
#include <string.h>

#include "sql.h"

void gd_lexer_init(gd_lexer *lx, gd_str text, gd_arena *arena)
{
    lx->start = lx->p = text.p;
    lx->end = text.p + text.len;
    lx->line = 1;
    lx->line_start = text.p;
    lx->arena = arena;
}

static bool is_ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (unsigned char)c >= 0x80; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_ident_char(char c) { return is_ident_start(c) || is_digit(c) || c == '@'; }

static void advance(gd_lexer *lx)
{
    if (*lx->p == '\n') {
        lx->line++;
        lx->line_start = lx->p + 1;
    }
    lx->p++;
}

static gd_token make(gd_lexer *lx, gd_token_type type, const char *from, const char *to, uint32_t line, uint32_t col)
{
    return (gd_token){type, {from, (uint32_t)(to - from)}, line, col, (uint32_t)(from - lx->start)};
}

static gd_token error_at(gd_lexer *lx, const char *why, uint32_t line, uint32_t col)
{
    gd_token t = {GD_TK_ERROR, gd_str_c(why), line, col, (uint32_t)(lx->p - lx->start)};
    lx->p = lx->end;
    return t;
}

/* Skips blanks and comments; false on an unterminated comment. */
static bool skip_blank(gd_lexer *lx)
{
    while (lx->p < lx->end) {
        char c = *lx->p;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') advance(lx);
        else if (c == '-' && lx->p + 1 < lx->end && lx->p[1] == '-') {
            while (lx->p < lx->end && *lx->p != '\n') advance(lx);
        } else if (c == '/' && lx->p + 1 < lx->end && lx->p[1] == '*') {
            lx->p += 2;
            while (lx->p + 1 < lx->end && !(lx->p[0] == '*' && lx->p[1] == '/')) advance(lx);
            if (lx->p + 1 >= lx->end) return false;
            lx->p += 2;
        } else break;
    }
    return true;
}

/* A quoted run up to the closing quote q, a doubled q standing for one. */
static gd_token quoted(gd_lexer *lx, char q, gd_token_type type, uint32_t line, uint32_t col)
{
    advance(lx);
    const char *from = lx->p;
    bool doubled = false;
    for (;;) {
        if (lx->p >= lx->end)
            return error_at(lx, type == GD_TK_STRING ? "unterminated string" : "unterminated quoted identifier", line,
                            col);
        if (*lx->p == q) {
            if (lx->p + 1 < lx->end && lx->p[1] == q) {
                doubled = true;
                lx->p += 2;
                continue;
            }
            break;
        }
        advance(lx);
    }
    const char *to = lx->p;
    lx->p++; /* the closing quote */
    if (!doubled) return make(lx, type, from, to, line, col);
    char *out = gd_arena_alloc(lx->arena, (size_t)(to - from) + 1);
    size_t n = 0;
    for (const char *s = from; s < to; s++) {
        out[n++] = *s;
        if (*s == q) s++;
    }
    gd_token t = make(lx, type, from, to, line, col);
    t.text = (gd_str){out, (uint32_t)n};
    return t;
}

static gd_token number(gd_lexer *lx, uint32_t line, uint32_t col)
{
    const char *from = lx->p;
    bool decimal = false;
    while (lx->p < lx->end && is_digit(*lx->p)) lx->p++;
    if (lx->p < lx->end && *lx->p == '.' && (lx->p + 1 >= lx->end || is_digit(lx->p[1]) || lx->p > from)) {
        decimal = true;
        lx->p++;
        while (lx->p < lx->end && is_digit(*lx->p)) lx->p++;
    }
    if (lx->p < lx->end && (*lx->p == 'e' || *lx->p == 'E')) {
        const char *e = lx->p + 1;
        if (e < lx->end && (*e == '+' || *e == '-')) e++;
        if (e < lx->end && is_digit(*e)) {
            decimal = true;
            lx->p = e;
            while (lx->p < lx->end && is_digit(*lx->p)) lx->p++;
        }
    }
    if (lx->p < lx->end && is_ident_start(*lx->p)) {
        if (decimal) return error_at(lx, "a number runs into a name", line, col);
        while (lx->p < lx->end && is_ident_char(*lx->p)) lx->p++; /* 1R: a name, as ksqlDB's DIGIT_IDENTIFIER */
        return make(lx, GD_TK_IDENT, from, lx->p, line, col);
    }
    return make(lx, decimal ? GD_TK_DECIMAL : GD_TK_INTEGER, from, lx->p, line, col);
}

gd_token gd_lexer_next(gd_lexer *lx)
{
    if (!skip_blank(lx)) return error_at(lx, "unterminated comment", lx->line, (uint32_t)(lx->p - lx->line_start) + 1);
    uint32_t line = lx->line, col = (uint32_t)(lx->p - lx->line_start) + 1;
    if (lx->p >= lx->end) return make(lx, GD_TK_EOF, lx->p, lx->p, line, col);
    char c = *lx->p;
    if (is_ident_start(c)) {
        const char *from = lx->p;
        while (lx->p < lx->end && is_ident_char(*lx->p)) lx->p++;
        return make(lx, GD_TK_IDENT, from, lx->p, line, col);
    }
    if (is_digit(c) || (c == '.' && lx->p + 1 < lx->end && is_digit(lx->p[1]))) return number(lx, line, col);
    if (c == '\'') return quoted(lx, '\'', GD_TK_STRING, line, col);
    if (c == '`' || c == '"') return quoted(lx, c, GD_TK_QIDENT, line, col);
    static const char *const two[] = {"!=", "<>", "<=", ">=", "||"};
    for (size_t i = 0; i < sizeof two / sizeof two[0]; i++)
        if (lx->p + 1 < lx->end && lx->p[0] == two[i][0] && lx->p[1] == two[i][1]) {
            lx->p += 2;
            return make(lx, GD_TK_SYMBOL, lx->p - 2, lx->p, line, col);
        }
    if (strchr("(),;.*+-/%=<>[]", c)) {
        lx->p++;
        return make(lx, GD_TK_SYMBOL, lx->p - 1, lx->p, line, col);
    }
    return error_at(lx, "unexpected character", line, col);
}

void gd_sql_mask_literals(gd_str text, gd_buf *out)
{
    gd_arena scratch;
    gd_arena_init(&scratch);
    gd_lexer lx;
    gd_lexer_init(&lx, text, &scratch);
    const char *copied = text.p;
    for (gd_token t = gd_lexer_next(&lx); t.type != GD_TK_EOF && t.type != GD_TK_ERROR; t = gd_lexer_next(&lx)) {
        if (t.type != GD_TK_STRING) continue;
        gd_buf_put(out, copied, (size_t)(text.p + t.offset - 1 - copied)); /* up to its opening quote */
        gd_buf_puts(out, "'***'");
        copied = lx.p;
    }
    gd_buf_put(out, copied, (size_t)(text.p + text.len - copied));
    gd_arena_free(&scratch);
}
