/* tokenize.c -- SQL text into tokens, as ksqlDB's lexer splits it.
 *
 * Identifiers: letters, digits, '_', '@' (not first digit); quoted with
 * backticks or double quotes to keep any character. Strings: 'single
 * quoted', '' for a quote. Numbers: 12 is an integer, 1.5 / .5 / 1e3 a
 * decimal. Comments: -- to the end of the line, and slash-star ... star-slash. Keywords
 * are identifiers to the tokenizer; the parser tells them apart. Every
 * token knows its line and column for error messages. ${name} is a
 * variable, which gd_sql_substitute replaces by its value before the text
 * is parsed (as ksqlDB's VariableSubstitutor does). */
#include <string.h>
#include <strings.h>

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

/* ${name}: the token's text is the name. */
static gd_token variable(gd_lexer *lx, uint32_t line, uint32_t col)
{
    const char *from = lx->p + 2, *to = from;
    while (to < lx->end && is_ident_char(*to)) to++;
    if (to == from || to >= lx->end || *to != '}') return error_at(lx, "a variable is ${name}", line, col);
    lx->p = to + 1;
    return make(lx, GD_TK_VARIABLE, from, to, line, col);
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
    if (c == '$' && lx->p + 1 < lx->end && lx->p[1] == '{') return variable(lx, line, col);
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

static int var_index(const gd_sql_vars *v, gd_str name)
{
    for (int i = 0; i < v->n; i++)
        if (v->name[i].len == name.len && !strncasecmp(v->name[i].p, name.p, name.len)) return i;
    return -1;
}

bool gd_sql_vars_set(gd_sql_vars *v, gd_str name, gd_str value)
{
    int i = var_index(v, name);
    if (i < 0) {
        if (v->n == GD_SQL_MAX_VARS) return false;
        i = v->n++;
        v->name[i] = name;
    }
    v->value[i] = value;
    return true;
}

bool gd_sql_vars_unset(gd_sql_vars *v, gd_str name)
{
    int i = var_index(v, name);
    if (i < 0) return false;
    v->n--;
    v->name[i] = v->name[v->n];
    v->value[i] = v->value[v->n];
    return true;
}

/* Appends s with each ${name} in it replaced (inside a string literal). */
static void substitute_in(gd_str s, const gd_sql_vars *vars, gd_buf *out)
{
    const char *p = s.p, *end = s.p + s.len;
    for (;;) {
        const char *at = memmem(p, (size_t)(end - p), "${", 2), *close = at ? memchr(at, '}', (size_t)(end - at)) : NULL;
        if (!close) break;
        int i = var_index(vars, (gd_str){at + 2, (uint32_t)(close - at - 2)});
        if (i < 0) break; /* not a variable of ours: the literal's own text */
        gd_buf_put(out, p, (size_t)(at - p));
        gd_buf_put(out, vars->value[i].p, vars->value[i].len);
        p = close + 1;
    }
    gd_buf_put(out, p, (size_t)(end - p));
}

/* The first letters are compared before anything is measured: the parser
 * asks for a dozen words at every token, and nearly all differ there. */
bool gd_token_is_word(const gd_token *t, const char *w)
{
    return t->type == GD_TK_IDENT && t->text.len && (t->text.p[0] | 0x20) == (w[0] | 0x20) &&
           strlen(w) == t->text.len && !strncasecmp(t->text.p, w, t->text.len);
}

int gd_sql_substitute(gd_str text, gd_sql_vars *vars, gd_arena *arena, gd_buf *out, gd_sql_error *err)
{
    gd_lexer lx;
    gd_lexer_init(&lx, text, arena);
    const char *copied = text.p;
    gd_token head[4]; /* the statement's first tokens: DEFINE name = 'value', UNDEFINE name */
    int k = 0;
    for (;;) {
        const char *from = lx.p;
        gd_token t = gd_lexer_next(&lx);
        bool end_of_statement = t.type == GD_TK_EOF || t.type == GD_TK_ERROR ||
                                (t.type == GD_TK_SYMBOL && t.text.len == 1 && t.text.p[0] == ';');
        if (end_of_statement) {
            if (k == 4 && gd_token_is_word(&head[0], "DEFINE") && head[1].type == GD_TK_IDENT && head[3].type == GD_TK_STRING &&
                !gd_sql_vars_set(vars, head[1].text, head[3].text))
                return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "at most %d variables", GD_SQL_MAX_VARS);
            if (k == 2 && gd_token_is_word(&head[0], "UNDEFINE")) gd_sql_vars_unset(vars, head[1].text);
            k = 0;
            if (t.type != GD_TK_SYMBOL) break; /* the parser reports an error where it is */
            continue;
        }
        if (k < 4) head[k] = t;
        k++;
        if (t.type == GD_TK_VARIABLE) {
            int i = var_index(vars, t.text);
            if (i < 0)
                return gd_sql_fail(err, GD_SQL_BAD_STATEMENT, "line %u:%u: variable '%.*s' is not defined", t.line,
                                   t.col, (int)t.text.len, t.text.p);
            gd_buf_put(out, copied, (size_t)(text.p + t.offset - 2 - copied)); /* up to its "${" */
            gd_buf_put(out, vars->value[i].p, vars->value[i].len);
            copied = lx.p;
        } else if (t.type == GD_TK_STRING && memmem(from, (size_t)(lx.p - from), "${", 2)) {
            gd_buf_put(out, copied, (size_t)(text.p + t.offset - copied));
            substitute_in((gd_str){text.p + t.offset, (uint32_t)(lx.p - text.p - t.offset)}, vars, out);
            copied = lx.p;
        }
    }
    gd_buf_put(out, copied, (size_t)(text.p + text.len - copied));
    return GD_OK;
}
