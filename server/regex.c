/* regex.c -- see regex.h.
 *
 * Thompson's construction, run as Pike's VM (Russ Cox, "Regular Expression
 * Matching Can Be Simple And Fast" and "Regular Expression Matching: the
 * Virtual Machine Approach"). A pattern is parsed into a tree, the tree
 * compiled into a program (byte, class, any, split, jump, the two anchors,
 * save, match), and the program run over the text by
 * keeping the set of instructions that some way of matching has reached:
 * one step per byte of text, and in a step each instruction is visited at
 * most once. Matching is therefore O(text x program) whatever the pattern:
 * there is no backtracking, so `(a*)*b` against 30,000 a's, or
 * `(.{1,255}){1,255}`, cannot take the exponential or high-polynomial time
 * that a backtracking matcher, or glibc's regexec, takes on them. Memory is
 * the program and four arrays of its length, allocated when it is compiled;
 * a match allocates nothing.
 *
 * What is left to bound is the program, which counted repetition multiplies
 * (`(.{1,255}){1,255}` would be 130,000 instructions). Its size is computed
 * from the tree, with saturating arithmetic, before anything is emitted, and
 * a pattern past GD_REGEX_MAX_PROGRAM is refused. GD_REGEX_MAX_PATTERN
 * bounds the tree and so the alternatives (a 15,000-way alternation is
 * refused before it is parsed), GD_REGEX_MAX_DEPTH the recursion of the
 * parser. For a yes/no answer (gd_regex_match) greedy or lazy repetition,
 * and which alternative matched, make no difference, and no capture slots
 * are carried: gd_regex_compile emits no saves, so its programs, and the
 * limit on them, are what they were before groups were kept. A search
 * (SQL's REGEXP_ functions, gd_regex_compile_captures) keeps the threads
 * in priority order -- a split's preferred branch first -- and each thread
 * carries the slots of the groups asked for, so the winner is the match a
 * backtracking matcher would have found first, found without backtracking. */
#include "regex.h"

#include "util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint8_t byteset[32];

static void set_add(byteset s, unsigned c) { s[c >> 3] |= (uint8_t)(1u << (c & 7)); }
static bool set_has(const byteset s, unsigned c) { return s[c >> 3] & (1u << (c & 7)); }

/* ---- the tree ---- */

typedef enum { N_BYTE, N_ANY, N_CLASS, N_BOL, N_EOL, N_CAT, N_ALT, N_REPEAT, N_GROUP } node_kind;

typedef struct {
    node_kind kind;
    int arg;         /* N_BYTE: the byte; N_CLASS: the class; N_GROUP: its number (1-based) */
    int child, next; /* first child (N_CAT, N_ALT, N_REPEAT, N_GROUP) and next sibling; -1: none */
    int min, max;    /* N_REPEAT; max -1: no bound */
    bool lazy;       /* N_REPEAT: fewest first (`*?`) */
} node;

typedef struct {
    const char *p;
    size_t len, pos;
    bool icase;
    bool captures; /* groups are kept (gd_regex_compile_captures) */
    int groups;    /* capturing groups so far */
    node *nodes;
    int nnodes, node_cap;
    byteset *classes;
    int nclasses, class_cap;
    char *err;
    size_t errlen;
    bool failed;
} parser;

static int fail(parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parser *ps, const char *fmt, ...)
{
    if (!ps->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->err, ps->errlen, fmt, ap);
        va_end(ap);
    }
    ps->failed = true;
    return -1;
}

static bool grow(parser *ps, void **list, int *cap, int n, size_t size)
{
    if (n < *cap) return true;
    int ncap = *cap ? *cap * 2 : 64;
    void *grown = realloc(*list, (size_t)ncap * size);
    if (!grown) {
        fail(ps, "out of memory");
        return false;
    }
    *list = grown;
    *cap = ncap;
    return true;
}

static int new_node(parser *ps, node_kind kind, int arg)
{
    if (!grow(ps, (void **)&ps->nodes, &ps->node_cap, ps->nnodes, sizeof(node))) return -1;
    ps->nodes[ps->nnodes] = (node){.kind = kind, .arg = arg, .child = -1, .next = -1};
    return ps->nnodes++;
}

static int class_node(parser *ps, const byteset set)
{
    if (!grow(ps, (void **)&ps->classes, &ps->class_cap, ps->nclasses, sizeof(byteset))) return -1;
    memcpy(ps->classes[ps->nclasses], set, sizeof(byteset));
    return new_node(ps, N_CLASS, ps->nclasses++);
}

/* Under (?i), a letter in set brings its other case. */
static void fold_case(const parser *ps, byteset set)
{
    if (ps->icase)
        for (unsigned b = 'a'; b <= 'z'; b++)
            if (set_has(set, b) || set_has(set, b - 32)) set_add(set, b), set_add(set, b - 32);
}

static int byte_node(parser *ps, unsigned c)
{
    if (ps->icase && c < 128 && isalpha((int)c)) {
        byteset s = {0};
        set_add(s, c);
        fold_case(ps, s);
        return class_node(ps, s);
    }
    return new_node(ps, N_BYTE, (int)c);
}

static void add_child(parser *ps, int parent, int *last, int child)
{
    if (*last < 0) ps->nodes[parent].child = child;
    else ps->nodes[*last].next = child;
    *last = child;
}

/* ---- escapes and classes ---- */

static void add_ctype(byteset s, int (*is)(int), bool negate)
{
    for (unsigned c = 0; c < 256; c++)
        if ((c < 128 && is((int)c)) != negate) set_add(s, c);
}

static int is_word(int c) { return isalnum(c) || c == '_'; }
static int is_space(int c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* The escape at ps->pos (a backslash): the byte it stands for, or 256 with
 * the bytes of `\d`-like classes added to set; -1 when refused. */
static int parse_escape(parser *ps, byteset set)
{
    size_t at = ps->pos++;
    if (ps->pos == ps->len) return fail(ps, "a '\\' ends the pattern");
    unsigned char c = (unsigned char)ps->p[ps->pos++];
    switch (c) {
    case 'd': case 'D': add_ctype(set, isdigit, c == 'D'); return 256;
    case 'w': case 'W': add_ctype(set, is_word, c == 'W'); return 256;
    case 's': case 'S': add_ctype(set, is_space, c == 'S'); return 256;
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'v': return '\v';
    case 'x': {
        int hi = ps->pos + 1 < ps->len ? gd_hex_value(ps->p[ps->pos]) : -1;
        int lo = hi >= 0 ? gd_hex_value(ps->p[ps->pos + 1]) : -1;
        if (lo < 0) return fail(ps, "\\x at byte %zu takes two hex digits", at);
        ps->pos += 2;
        return hi * 16 + lo;
    }
    default:
        if (c < 128 && isalnum(c))
            return fail(ps, "\\%c at byte %zu is not supported (escapes: \\d \\D \\w \\W \\s \\S \\n \\t \\r \\f \\v "
                            "\\xHH, or \\ before punctuation)", c, at);
        return c;
    }
}

static const struct {
    const char *name;
    int (*is)(int);
} named_classes[] = {
    {"alpha", isalpha}, {"digit", isdigit}, {"alnum", isalnum}, {"upper", isupper},   {"lower", islower},
    {"space", isspace}, {"blank", isblank}, {"punct", ispunct}, {"xdigit", isxdigit}, {"cntrl", iscntrl},
    {"print", isprint}, {"graph", isgraph},
};

/* `[:name:]` at ps->pos inside brackets, added to set: 256, or -1. */
static int parse_named_class(parser *ps, byteset set)
{
    const char *start = ps->p + ps->pos + 2;
    const char *end = memmem(start, ps->len - ps->pos - 2, ":]", 2);
    if (!end) return fail(ps, "'[:' at byte %zu has no ':]'", ps->pos);
    for (size_t i = 0; i < sizeof named_classes / sizeof named_classes[0]; i++)
        if (strlen(named_classes[i].name) == (size_t)(end - start) && !memcmp(named_classes[i].name, start, end - start)) {
            add_ctype(set, named_classes[i].is, false);
            ps->pos = (size_t)(end + 2 - ps->p);
            return 256;
        }
    return fail(ps, "[:%.*s:] is not a character class", (int)(end - start), start);
}

/* One member of a bracket class: a byte (returned), or a class added to
 * set (256); -1 when refused. */
static int class_member(parser *ps, byteset set)
{
    if (ps->p[ps->pos] == '\\') return parse_escape(ps, set);
    if (ps->p[ps->pos] == '[' && ps->pos + 1 < ps->len && ps->p[ps->pos + 1] == ':')
        return parse_named_class(ps, set);
    return (unsigned char)ps->p[ps->pos++];
}

/* `[...]` at ps->pos. A ']' first is a member, a '-' first or last too. */
static int parse_class(parser *ps)
{
    size_t at = ps->pos++;
    byteset set = {0};
    bool negate = ps->pos < ps->len && ps->p[ps->pos] == '^';
    ps->pos += negate;
    for (bool first = true;; first = false) {
        if (ps->pos >= ps->len) return fail(ps, "the '[' at byte %zu has no ']'", at);
        if (ps->p[ps->pos] == ']' && !first) break;
        int lo = class_member(ps, set);
        if (lo < 0) return -1;
        if (lo == 256) continue;
        if (ps->pos + 1 < ps->len && ps->p[ps->pos] == '-' && ps->p[ps->pos + 1] != ']') {
            ps->pos++;
            int hi = class_member(ps, set);
            if (hi < 0) return -1;
            if (hi == 256 || hi < lo) return fail(ps, "the range in the class at byte %zu is backwards or ends in a class", at);
            for (int c = lo; c <= hi; c++) set_add(set, (unsigned)c);
        } else {
            set_add(set, (unsigned)lo);
        }
    }
    ps->pos++;
    fold_case(ps, set);
    if (negate)
        for (int i = 0; i < 32; i++) set[i] = (uint8_t)~set[i];
    return class_node(ps, set);
}

/* ---- repetition, atoms, concatenation, alternation ---- */

/* A count of {n,m}, saturated past the program limit. */
static int parse_count(parser *ps)
{
    int n = 0;
    while (ps->pos < ps->len && ps->p[ps->pos] >= '0' && ps->p[ps->pos] <= '9') {
        n = n * 10 + (ps->p[ps->pos++] - '0');
        if (n > GD_REGEX_MAX_PROGRAM) n = GD_REGEX_MAX_PROGRAM + 1;
    }
    return n;
}

/* A quantifier at ps->pos, consumed: * + ? {n} {n,} {n,m} {,m}. A '{' that
 * starts none of these is not one (it is a literal '{'). */
static bool parse_quantifier(parser *ps, int *min, int *max)
{
    if (ps->pos >= ps->len) return false;
    char c = ps->p[ps->pos];
    if (c == '*' || c == '+' || c == '?') {
        ps->pos++;
        *min = c == '+';
        *max = c == '?' ? 1 : -1;
        return true;
    }
    if (c != '{') return false;
    size_t at = ps->pos++, digits = ps->pos;
    *min = parse_count(ps);
    bool has_min = ps->pos > digits;
    *max = *min;
    if (ps->pos < ps->len && ps->p[ps->pos] == ',') {
        digits = ++ps->pos;
        *max = parse_count(ps);
        if (ps->pos == digits) *max = -1;
        else if (!has_min) has_min = true; /* {,m} */
    }
    if (!has_min || ps->pos >= ps->len || ps->p[ps->pos] != '}') {
        ps->pos = at;
        return false;
    }
    ps->pos++;
    if (*max >= 0 && *max < *min) return fail(ps, "{%d,%d} at byte %zu: the minimum is over the maximum", *min, *max, at), true;
    return true;
}

static int parse_alt(parser *ps, int depth);

static int parse_atom(parser *ps, int depth)
{
    size_t at = ps->pos;
    unsigned char c = (unsigned char)ps->p[ps->pos];
    switch (c) {
    case '(': {
        ps->pos++;
        if (ps->pos < ps->len && ps->p[ps->pos] == '?') {
            if (ps->pos + 1 >= ps->len || ps->p[ps->pos + 1] != ':')
                return fail(ps, "the group at byte %zu: only ( ), (?: ) and a leading (?i) are supported", at);
            ps->pos += 2;
        }
        if (depth == GD_REGEX_MAX_DEPTH)
            return fail(ps, "groups are nested deeper than %d at byte %zu", GD_REGEX_MAX_DEPTH, at);
        bool capturing = ps->captures && !(at + 1 < ps->len && ps->p[at + 1] == '?');
        int number = capturing ? ++ps->groups : 0;
        int inner = parse_alt(ps, depth + 1);
        if (inner < 0) return -1;
        if (ps->pos >= ps->len) return fail(ps, "the '(' at byte %zu has no ')'", at);
        ps->pos++;
        if (!capturing || number > GD_REGEX_MAX_GROUPS) return inner; /* past the limit: matched, not kept */
        int g = new_node(ps, N_GROUP, number);
        if (g >= 0) ps->nodes[g].child = inner;
        return g;
    }
    case '[': return parse_class(ps);
    case '.': ps->pos++; return new_node(ps, N_ANY, 0);
    case '^': ps->pos++; return new_node(ps, N_BOL, 0);
    case '$': ps->pos++; return new_node(ps, N_EOL, 0);
    case '\\': {
        byteset set = {0};
        int b = parse_escape(ps, set);
        return b < 0 ? -1 : b == 256 ? class_node(ps, set) : byte_node(ps, (unsigned)b);
    }
    default: {
        int min, max;
        if (parse_quantifier(ps, &min, &max)) return fail(ps, "'%c' at byte %zu repeats nothing", c, at);
        ps->pos++;
        return byte_node(ps, c);
    }
    }
}

static int parse_repeat(parser *ps, int depth)
{
    int atom = parse_atom(ps, depth), min, max;
    while (atom >= 0 && parse_quantifier(ps, &min, &max)) {
        if (ps->failed) return -1;
        bool lazy = ps->pos < ps->len && ps->p[ps->pos] == '?';
        ps->pos += lazy;
        int r = new_node(ps, N_REPEAT, 0);
        if (r < 0) return -1;
        ps->nodes[r].child = atom;
        ps->nodes[r].min = min;
        ps->nodes[r].max = max;
        ps->nodes[r].lazy = lazy;
        atom = r;
    }
    return atom;
}

static int parse_cat(parser *ps, int depth)
{
    int cat = new_node(ps, N_CAT, 0), last = -1;
    while (cat >= 0 && ps->pos < ps->len && ps->p[ps->pos] != '|' && ps->p[ps->pos] != ')') {
        int r = parse_repeat(ps, depth);
        if (r < 0) return -1;
        add_child(ps, cat, &last, r);
    }
    return cat;
}

/* Alternatives up to a ')' or the end. */
static int parse_alt(parser *ps, int depth)
{
    int alt = new_node(ps, N_ALT, 0), last = -1;
    while (alt >= 0) {
        int c = parse_cat(ps, depth);
        if (c < 0) return -1;
        add_child(ps, alt, &last, c);
        if (ps->pos >= ps->len || ps->p[ps->pos] != '|') break;
        ps->pos++;
    }
    return alt;
}

/* ---- the program ---- */

typedef enum { I_BYTE, I_ANY, I_CLASS, I_SPLIT, I_JMP, I_BOL, I_EOL, I_SAVE, I_MATCH } opcode;

typedef struct {
    uint8_t op, byte;
    uint32_t x, y; /* I_SPLIT (x preferred), I_JMP: targets; I_CLASS: the class; I_SAVE: the slot (x) */
} inst;

struct gd_regex {
    inst *prog;
    uint32_t n;
    bool captures; /* compiled with the saves of group 0 and the groups kept */
    int groups;    /* capturing groups, at most GD_REGEX_MAX_GROUPS */
    byteset *classes;
    uint32_t *cur, *next; /* the instructions reached, before and after a byte, in priority order */
    uint32_t *stack;      /* of add_thread: at most 3 pushes per instruction marked, plus 1 */
    uint32_t *mark, gen;  /* mark[pc] == gen: pc is in the set being built */
    /* captures, for searches that ask for them: each thread's slots (ncap a
     * thread, cur's and next's), allocated at the first such search */
    uint32_t *cur_caps, *next_caps, caps_for;
};

enum { UNSET = UINT32_MAX, RESTORE = 1u << 31 /* on add_thread's stack: a slot to set back, its value below */ };

enum { OVER = GD_REGEX_MAX_PROGRAM + 1 };

static uint64_t add_sat(uint64_t a, uint64_t b) { return a + b > OVER ? OVER : a + b; }
static uint64_t mul_sat(uint64_t a, uint64_t b) { return a && b > OVER / a ? OVER : a * b > OVER ? OVER : a * b; }

/* Instructions node compiles to, at most OVER. */
static uint64_t program_size(const parser *ps, int i)
{
    const node *nd = &ps->nodes[i];
    uint64_t sum = 0;
    int k = 0;
    switch (nd->kind) {
    case N_CAT:
    case N_ALT:
        for (int c = nd->child; c >= 0; c = ps->nodes[c].next, k++) sum = add_sat(sum, program_size(ps, c));
        return nd->kind == N_ALT && k > 1 ? add_sat(sum, 2 * (uint64_t)(k - 1)) : sum; /* split, jmp */
    case N_REPEAT: {
        uint64_t s = program_size(ps, nd->child), min = (uint64_t)nd->min;
        if (nd->max < 0) return min ? add_sat(mul_sat(min, s), 1) : add_sat(s, 2);
        return add_sat(mul_sat(min, s), mul_sat((uint64_t)(nd->max - nd->min), add_sat(s, 1)));
    }
    case N_GROUP: return add_sat(program_size(ps, nd->child), 2); /* save, save */
    default: return 1;
    }
}

static uint32_t emit(gd_regex *re, opcode op, uint32_t x, uint32_t y)
{
    re->prog[re->n] = (inst){.op = (uint8_t)op, .byte = (uint8_t)x, .x = x, .y = y};
    return re->n++;
}

/* A split preferring `first` (greedy repetition, an earlier alternative)
 * or, for a lazy repetition, `other`. */
static uint32_t emit_split(gd_regex *re, bool lazy, uint32_t first, uint32_t other)
{
    return lazy ? emit(re, I_SPLIT, other, first) : emit(re, I_SPLIT, first, other);
}

/* Patches the target a split left open (0) when emitted. */
static void patch_split(gd_regex *re, uint32_t split)
{
    if (re->prog[split].x == 0) re->prog[split].x = re->n;
    else re->prog[split].y = re->n;
}

static void compile_node(gd_regex *re, const parser *ps, int i)
{
    const node *nd = &ps->nodes[i];
    switch (nd->kind) {
    case N_GROUP:
        emit(re, I_SAVE, 2 * (uint32_t)nd->arg, 0);
        compile_node(re, ps, nd->child);
        emit(re, I_SAVE, 2 * (uint32_t)nd->arg + 1, 0);
        break;
    case N_BYTE: emit(re, I_BYTE, (uint32_t)nd->arg, 0); break;
    case N_ANY: emit(re, I_ANY, 0, 0); break;
    case N_CLASS: emit(re, I_CLASS, (uint32_t)nd->arg, 0); break;
    case N_BOL: emit(re, I_BOL, 0, 0); break;
    case N_EOL: emit(re, I_EOL, 0, 0); break;
    case N_CAT:
        for (int c = nd->child; c >= 0; c = ps->nodes[c].next) compile_node(re, ps, c);
        break;
    case N_ALT: {
        /* split L1 L2; L1: a; jmp end; L2: split ...; last: z; end: -- the
         * jumps chained through their x until patched */
        uint32_t jumps = UINT32_MAX;
        for (int c = nd->child; c >= 0; c = ps->nodes[c].next) {
            if (ps->nodes[c].next < 0) {
                compile_node(re, ps, c);
                break;
            }
            uint32_t split = emit(re, I_SPLIT, re->n + 1, 0);
            compile_node(re, ps, c);
            jumps = emit(re, I_JMP, jumps, 0);
            re->prog[split].y = re->n;
        }
        while (jumps != UINT32_MAX) {
            uint32_t prev = re->prog[jumps].x;
            re->prog[jumps].x = re->n;
            jumps = prev;
        }
        break;
    }
    case N_REPEAT: {
        uint32_t last = re->n;
        for (int k = 0; k < nd->min; k++) {
            last = re->n;
            compile_node(re, ps, nd->child);
        }
        if (nd->max < 0 && nd->min) { /* e{n,}: the last copy again and again */
            emit_split(re, nd->lazy, last, re->n + 1);
        } else if (nd->max < 0) { /* e*: L: split L+1 end; e; jmp L; end: */
            uint32_t split = emit_split(re, nd->lazy, re->n + 1, 0);
            compile_node(re, ps, nd->child);
            emit(re, I_JMP, split, 0);
            patch_split(re, split);
        } else {
            for (int k = nd->min; k < nd->max; k++) { /* e? each */
                uint32_t split = emit_split(re, nd->lazy, re->n + 1, 0);
                compile_node(re, ps, nd->child);
                patch_split(re, split);
            }
        }
        break;
    }
    }
}

void gd_regex_free(gd_regex *re)
{
    if (!re) return;
    free(re->prog);
    free(re->classes);
    free(re->cur);
    free(re->next);
    free(re->stack);
    free(re->mark);
    free(re->cur_caps);
    free(re->next_caps);
    free(re);
}

/* The program of a parsed tree, its classes taken from ps. */
static gd_regex *assemble(parser *ps, int root, uint32_t size)
{
    gd_regex *re = calloc(1, sizeof *re);
    if (!re) return NULL;
    re->prog = malloc(size * sizeof *re->prog);
    re->cur = malloc(size * sizeof *re->cur);
    re->next = malloc(size * sizeof *re->next);
    re->stack = malloc((3 * size + 1) * sizeof *re->stack);
    re->mark = calloc(size, sizeof *re->mark);
    if (!re->prog || !re->cur || !re->next || !re->stack || !re->mark) {
        gd_regex_free(re);
        return NULL;
    }
    re->classes = ps->classes;
    ps->classes = NULL;
    re->captures = ps->captures;
    re->groups = ps->groups < GD_REGEX_MAX_GROUPS ? ps->groups : GD_REGEX_MAX_GROUPS;
    if (re->captures) emit(re, I_SAVE, 0, 0); /* the match is group 0 */
    compile_node(re, ps, root);
    if (re->captures) emit(re, I_SAVE, 1, 0);
    emit(re, I_MATCH, 0, 0);
    return re;
}

static int compile(gd_regex **out, const char *pattern, size_t len, bool captures, char *err, size_t errlen)
{
    *out = NULL;
    if (len > GD_REGEX_MAX_PATTERN) {
        snprintf(err, errlen, "the pattern is %zu bytes; at most %d are accepted", len, GD_REGEX_MAX_PATTERN);
        return GD_ERR;
    }
    parser ps = {.p = pattern, .len = len, .err = err, .errlen = errlen, .captures = captures};
    if (len >= 4 && !memcmp(pattern, "(?i)", 4)) {
        ps.icase = true;
        ps.pos = 4;
    }
    int root = parse_alt(&ps, 0);
    if (root >= 0 && ps.pos < len) root = fail(&ps, "the ')' at byte %zu closes no group", ps.pos);
    uint64_t size = root >= 0 ? program_size(&ps, root) + 1 + 2 * captures : 0; /* the match, group 0's saves */
    if (root >= 0 && size > GD_REGEX_MAX_PROGRAM)
        root = fail(&ps, "counted repetition expands the pattern past %d instructions, the most accepted",
                    GD_REGEX_MAX_PROGRAM);
    if (root >= 0 && !(*out = assemble(&ps, root, (uint32_t)size))) root = fail(&ps, "out of memory");
    free(ps.nodes);
    free(ps.classes);
    return root >= 0 ? GD_OK : GD_ERR;
}

int gd_regex_compile(gd_regex **out, const char *pattern, size_t len, char *err, size_t errlen)
{
    return compile(out, pattern, len, false, err, errlen);
}

int gd_regex_compile_captures(gd_regex **out, const char *pattern, size_t len, char *err, size_t errlen)
{
    return compile(out, pattern, len, true, err, errlen);
}

/* A search's threads: the instructions reached (list), with each one's
 * capture slots when ncap > 0. */
typedef struct {
    uint32_t *list, n;
    uint32_t *caps;
} threads;

/* Adds pc to t, and through jumps, splits, saves and anchors that hold at
 * pos what they lead to, each instruction once a step, in priority order
 * (a split's preferred target and all it leads to first). work holds the
 * slots of the thread being followed; an I_SAVE sets one for what follows
 * it and sets it back after. */
static inline __attribute__((always_inline)) void add_thread(gd_regex *re, threads *t, uint32_t pc, size_t pos, size_t len, uint32_t *work, uint32_t ncap)
{
    uint32_t top = 0;
    re->stack[top++] = pc;
    while (top) {
        pc = re->stack[--top];
        if (pc & RESTORE) { /* what followed an I_SAVE is visited: its slot as it was */
            work[pc & ~RESTORE] = re->stack[--top];
            continue;
        }
        if (re->mark[pc] == re->gen) continue;
        re->mark[pc] = re->gen;
        const inst *in = &re->prog[pc];
        switch (in->op) {
        case I_JMP: re->stack[top++] = in->x; break;
        case I_SPLIT:
            re->stack[top++] = in->y;
            re->stack[top++] = in->x;
            break;
        case I_BOL:
            if (pos == 0) re->stack[top++] = pc + 1;
            break;
        case I_EOL:
            if (pos == len) re->stack[top++] = pc + 1;
            break;
        case I_SAVE:
            if (in->x < ncap) {
                re->stack[top++] = work[in->x];
                re->stack[top++] = RESTORE | in->x;
                work[in->x] = (uint32_t)pos;
            }
            re->stack[top++] = pc + 1;
            break;
        default:
            if (ncap) memcpy(t->caps + (size_t)t->n * ncap, work, ncap * sizeof *work);
            t->list[t->n++] = pc;
        }
    }
}

static void next_step(gd_regex *re)
{
    if (++re->gen == 0) { /* wrapped: marks of old steps could pass for new */
        memset(re->mark, 0, re->n * sizeof *re->mark);
        re->gen = 1;
    }
}

static bool consumes(const gd_regex *re, const inst *in, unsigned char c)
{
    switch (in->op) {
    case I_BYTE: return in->byte == c;
    case I_ANY: return c != '\n';
    case I_CLASS: return set_has(re->classes[in->x], c);
    default: return false;
    }
}

/* The capture slots of ncap a thread, allocated once for the largest ncap
 * asked. */
static bool caps_ready(gd_regex *re, uint32_t ncap)
{
    if (!ncap || ncap <= re->caps_for) return true;
    uint32_t *c = realloc(re->cur_caps, (size_t)re->n * ncap * sizeof *c), *nx;
    if (!c) return false;
    re->cur_caps = c;
    if (!(nx = realloc(re->next_caps, (size_t)re->n * ncap * sizeof *nx))) return false;
    re->next_caps = nx;
    re->caps_for = ncap;
    return true;
}

/* Runs the program over text from byte `from`, one step a byte: every
 * thread alive moves on together, so the cost is O(bytes x program x
 * (1 + ncap)). search: a match may start at any byte from `from` on (a
 * new lowest-priority thread joins at each byte until a match is found)
 * and end anywhere, and the first match in priority order wins, as Java's
 * and PCRE's find (leftmost, then the preferred alternative and greedy or
 * lazy repetition); else it must start at `from` and end at len. The
 * winner's ncap slots (group g: 2g, 2g+1) are left in out. Inlined, as
 * add_thread, into each caller: gd_regex_match's copy, with no slots and
 * no search, is specialised by the compiler and runs as fast as a matcher
 * without captures (2 million Grafana-like matches: 250-300 ns each, as
 * before captures; 700-900 ns when not inlined). */
static inline __attribute__((always_inline)) bool run(gd_regex *re, const char *text, size_t len, size_t from, bool search, uint32_t *out, uint32_t ncap)
{
    threads cur = {re->cur, 0, re->cur_caps}, next = {re->next, 0, re->next_caps};
    uint32_t work[2 * (GD_REGEX_MAX_GROUPS + 1)];
    bool matched = false;
    next_step(re);
    for (size_t pos = from;; pos++) {
        if (!matched && (search || pos == from)) { /* a match starting here, after all started before */
            for (uint32_t k = 0; k < ncap; k++) work[k] = UNSET;
            add_thread(re, &cur, 0, pos, len, work, ncap);
        }
        if (!cur.n) break;
        next.n = 0;
        next_step(re);
        for (uint32_t k = 0; k < cur.n; k++) {
            const inst *in = &re->prog[cur.list[k]];
            uint32_t *caps = ncap ? cur.caps + (size_t)k * ncap : NULL;
            if (in->op == I_MATCH) {
                if (!search && pos != len) continue;
                matched = true;
                if (ncap) memcpy(out, caps, ncap * sizeof *caps);
                if (!search && !ncap) return true;
                break; /* the threads after it have lower priority */
            }
            if (pos < len && consumes(re, in, (unsigned char)text[pos])) {
                if (ncap) memcpy(work, caps, ncap * sizeof *caps);
                add_thread(re, &next, cur.list[k] + 1, pos + 1, len, work, ncap);
            }
        }
        if (pos >= len) break;
        threads t = cur;
        cur = next;
        next = t;
    }
    return matched;
}

bool gd_regex_match(gd_regex *re, const char *text, size_t len) { return run(re, text, len, 0, false, NULL, 0); }

int gd_regex_groups(const gd_regex *re) { return re->groups; }

int gd_regex_search(gd_regex *re, const char *text, size_t len, size_t from, gd_regex_span *spans, int nspans)
{
    uint32_t slots[2 * (GD_REGEX_MAX_GROUPS + 1)];
    if (nspans < 1) nspans = 1;
    if (nspans > re->groups + 1) nspans = re->groups + 1;
    uint32_t ncap = 2 * (uint32_t)nspans;
    if (!re->captures) return GD_ERR;
    if (len >= UNSET || from > len) return 0;
    if (!caps_ready(re, ncap)) return GD_ERR;
    if (!run(re, text, len, from, true, slots, ncap)) return 0;
    for (int g = 0; g < nspans; g++) {
        bool set = slots[2 * g] != UNSET && slots[2 * g + 1] != UNSET;
        spans[g] = set ? (gd_regex_span){slots[2 * g], slots[2 * g + 1]} : (gd_regex_span){SIZE_MAX, SIZE_MAX};
    }
    return 1;
}

/* Appends repl to out with `$n` (the longest number naming a group) as
 * what group n matched and `\c` as c, as Java's Matcher.appendReplacement;
 * false on a `$` naming no group, or one ending the text. */
static bool put_replacement(gd_buf *out, const char *text, const char *repl, size_t rlen, const gd_regex_span *spans,
                            int ngroups)
{
    for (size_t i = 0; i < rlen; i++) {
        char c = repl[i];
        if (c == '\\') {
            if (++i == rlen) return false;
            gd_buf_putc(out, repl[i]);
        } else if (c == '$') {
            if (++i == rlen || repl[i] < '0' || repl[i] > '9') return false;
            int g = repl[i] - '0';
            if (g > ngroups) return false;
            while (i + 1 < rlen && repl[i + 1] >= '0' && repl[i + 1] <= '9' && g * 10 + (repl[i + 1] - '0') <= ngroups)
                g = g * 10 + (repl[++i] - '0');
            if (spans[g].start != SIZE_MAX) gd_buf_put(out, text + spans[g].start, spans[g].end - spans[g].start);
        } else {
            gd_buf_putc(out, c);
        }
    }
    return true;
}

int gd_regex_replace(gd_regex *re, const char *text, size_t len, const char *repl, size_t rlen, size_t max, gd_buf *out)
{
    gd_regex_span spans[GD_REGEX_MAX_GROUPS + 1];
    size_t pos = 0;
    for (;;) {
        int found = gd_regex_search(re, text, len, pos, spans, GD_REGEX_MAX_GROUPS + 1);
        if (found < 0) return GD_ERR;
        if (!found) break;
        gd_buf_put(out, text + pos, spans[0].start - pos);
        if (!put_replacement(out, text, repl, rlen, spans, re->groups)) return GD_ERR;
        pos = spans[0].end;
        if (spans[0].start == spans[0].end) { /* empty: the next character is kept, the search goes on after it */
            if (pos == len) {
                if (out->len > max) return GD_ERR;
                return GD_OK;
            }
            size_t n = gd_utf8_seq((const unsigned char *)text + pos, len - pos);
            n = n ? n : 1;
            gd_buf_put(out, text + pos, n);
            pos += n;
        }
        if (out->len > max) return GD_ERR;
    }
    gd_buf_put(out, text + pos, len - pos);
    return out->len > max ? GD_ERR : GD_OK;
}
