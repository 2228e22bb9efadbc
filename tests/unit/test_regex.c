/* Unit tests: server/regex.c, the linear-time matcher of Grafana's ad hoc
 * regex filters. Each pattern must match the whole text; the expectations
 * are worked by hand (they agree with Python's re.fullmatch, but for the
 * POSIX classes and stacked counts Python lacks and for bytes, which
 * regex.h says differ from characters).
 * Pathological patterns must simply finish: the test is not timed, a
 * backtracking matcher would not return within the test run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../server/regex.h"

typedef struct {
    const char *pattern, *text;
    bool match;
} example;

static void check(const example *ex, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char err[256] = "";
        gd_regex *re;
        if (gd_regex_compile(&re, ex[i].pattern, strlen(ex[i].pattern), err, sizeof err)) {
            print_error("/%s/ does not compile: %s\n", ex[i].pattern, err);
            fail();
        }
        if (gd_regex_match(re, ex[i].text, strlen(ex[i].text)) != ex[i].match) {
            print_error("/%s/ against '%s': expected %s\n", ex[i].pattern, ex[i].text, ex[i].match ? "a match" : "none");
            fail();
        }
        gd_regex_free(re);
    }
}

#define CHECK(list) check(list, sizeof list / sizeof list[0])

static void the_whole_text_must_match(void **state)
{
    (void)state;
    static const example ex[] = {
        {"abc", "abc", true},       {"abc", "abcd", false},   {"abc", "xabc", false},     {"abc", "ab", false},
        {"", "", true},             {"", "a", false},         {"a|b", "a", true},         {"a|b", "b", true},
        {"a|b", "ab", false},       {"a|", "", true},         {"|", "", true},            {"()", "", true},
        {"game_001|game_002", "game_002", true},              {"game_001|game_002", "game_0021", false},
        {"^abc$", "abc", true},     {"a^b", "ab", false},     {"a$b", "ab", false},       {"(^a|b$)", "b", true},
        {"^", "", true},            {"$^", "", true},         {"^$", "x", false},
    };
    CHECK(ex);
}

static void classes_and_escapes(void **state)
{
    (void)state;
    static const example ex[] = {
        {"a.c", "abc", true},        {"a.c", "a\nc", false},      {"a\\.c", "a.c", true},      {"a\\.c", "abc", false},
        {"\\d+", "2024", true},      {"\\d+", "12a", false},      {"\\D", "a", true},          {"\\D", "1", false},
        {"\\w+", "a_Z9", true},      {"\\w", "-", false},         {"\\W", "-", true},          {"\\s", "\t", true},
        {"\\S", " ", false},         {"\\x41\\t", "A\t", true},   {"\\(\\)\\[\\]\\{\\}\\*\\+\\?\\|\\^\\$\\\\", "()[]{}*+?|^$\\", true},
        {"game_00[1-4]", "game_003", true},                       {"game_00[1-4]", "game_005", false},
        {"[^abc]", "d", true},       {"[^abc]", "a", false},      {"[^a]", "\n", true},        {"[]a]", "]", true},
        {"[a-]", "-", true},         {"[-a]", "-", true},         {"[\\d.]+", "1.25", true},   {"[\\].]", "]", true},
        {"[\\w-]+", "a-b_c", true},  {"[\\D]", "5", false},       {"[[:alpha:]]+", "abC", true},
        {"[[:digit:][:upper:]]+", "A1B2", true},                  {"[[:digit:]]", "x", false}, {"[a-cx-z]+", "abxz", true},
        {"(?i)game_ABC", "GAME_abc", true},                       {"(?i)[^a]", "A", false},    {"(?i)[^a]", "b", true},
        {"(?i)[a-c]+", "AbC", true},  {"game", "GAME", false},
        {"{", "{", true},            {"a{", "a{", true},          {"a{x}", "a{x}", true},
        {"]", "]", true},            {"}", "}", true},
        /* bytes: a two-byte UTF-8 character is two bytes to '.' */
        {"caf\xc3\xa9", "caf\xc3\xa9", true},                     {"caf.", "caf\xc3\xa9", false},
        {"caf..", "caf\xc3\xa9", true},
    };
    CHECK(ex);
}

static void groups_and_repetition(void **state)
{
    (void)state;
    static const example ex[] = {
        {"game_0(0[5-9]|1.*)", "game_007", true}, {"game_0(0[5-9]|1.*)", "game_012345", true},
        {"game_0(0[5-9]|1.*)", "game_020", false}, {"(?:ab)+", "ababab", true},   {"(?:ab)+", "aba", false},
        {"(?:ab)+", "", false},    {"(ab)*", "", true},       {"ab?c", "ac", true},      {"ab?c", "abbc", false},
        {"a{3}", "aaa", true},     {"a{3}", "aa", false},     {"a{3}", "aaaa", false},   {"a{2,}", "aa", true},
        {"a{2,}", "a", false},     {"a{2,}", "aaaaaa", true}, {"a{1,3}", "", false},     {"a{1,3}", "a", true},
        {"a{1,3}", "aaa", true},   {"a{1,3}", "aaaa", false}, {"a{,2}", "", true},       {"a{,2}", "aa", true},
        {"a{,2}", "aaa", false},   {"a{0}", "", true},        {"a{0}", "a", false},      {"(ab|cd){2}", "abcd", true},
        {"(ab|cd){2}", "cdab", true}, {"(ab|cd){2}", "ab", false}, {"x*?", "xx", true},  {"a+?b", "aab", true},
        {"a{2}{3}", "aaaaaa", true}, {"a{2}{3}", "aaaa", false}, {"(a|ab)(c|bcd)(d*)", "abcd", true},
        {"((((a))))", "a", true},  {"(a*)*", "", true},       {"(a*)+b", "aab", true},   {"()*x", "x", true},
        {"(a|b)*c", "ababbac", true}, {"(a|b)*c", "ababbacc", false},
    };
    CHECK(ex);
}

/* Patterns that take exponential time to backtrack: they finish, with the
 * right answer. */
static void pathological_patterns_finish(void **state)
{
    (void)state;
    enum { N = 30000 };
    char *text = malloc(N + 2);
    memset(text, 'a', N);
    text[N] = 0;
    const char *patterns[] = {"(a*)*b", "(a|a)*b", "(a|aa)*b", "(a+)+b", "(.*a){20}b", "(a?){30}a{30}a*b"};
    for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++) {
        char err[256];
        gd_regex *re;
        assert_int_equal(gd_regex_compile(&re, patterns[i], strlen(patterns[i]), err, sizeof err), GD_OK);
        assert_false(gd_regex_match(re, text, N)); /* no b */
        text[N] = 'b';
        assert_true(gd_regex_match(re, text, N + 1));
        text[N] = 0;
        gd_regex_free(re);
    }
    /* the issue's pattern, legal in size once its counts are small */
    char err[256];
    gd_regex *re;
    assert_int_equal(gd_regex_compile(&re, "(.{1,25}){1,25}", 15, err, sizeof err), GD_OK);
    assert_false(gd_regex_match(re, text, 626));
    assert_true(gd_regex_match(re, text, 625));
    gd_regex_free(re);
    free(text);
}

/* err for a pattern that must be refused ("" when it compiles). */
static const char *refusal(const char *pattern, size_t len)
{
    static char err[256];
    gd_regex *re;
    err[0] = 0;
    if (!gd_regex_compile(&re, pattern, len, err, sizeof err)) {
        gd_regex_free(re);
        return "";
    }
    assert_non_null(strchr(err, ' ')); /* a sentence */
    return err;
}

#define REFUSED(pattern, says) assert_non_null(strstr(refusal(pattern, strlen(pattern)), says))

static void bad_patterns_are_refused_with_a_reason(void **state)
{
    (void)state;
    REFUSED("(a", "no ')'");
    REFUSED("a)", "closes no group");
    REFUSED("[a", "no ']'");
    REFUSED("[z-a]", "backwards");
    REFUSED("[[:foo:]]", "not a character class");
    REFUSED("*a", "repeats nothing");
    REFUSED("a|+", "repeats nothing");
    REFUSED("{2}", "repeats nothing");
    REFUSED("a{3,2}", "minimum is over the maximum");
    REFUSED("(a)\\1", "\\1");
    REFUSED("\\bword", "not supported");
    REFUSED("(?=a)", "(?: )");
    REFUSED("a(?i)b", "(?: )");
    REFUSED("a\\", "ends the pattern");
    REFUSED("\\xZ1", "hex");
}

static void bounds_are_refused_naming_the_limit(void **state)
{
    (void)state;
    /* length: exactly the limit compiles, a byte more does not */
    char *big = malloc(200000);
    memset(big, 'a', GD_REGEX_MAX_PATTERN + 1);
    assert_string_equal(refusal(big, GD_REGEX_MAX_PATTERN), "");
    assert_non_null(strstr(refusal(big, GD_REGEX_MAX_PATTERN + 1), "at most 1024"));
    /* a 15,000-way alternation, as a multi-value variable with every value */
    size_t n = 0;
    for (int i = 0; i < 15000; i++) n += (size_t)sprintf(big + n, "%sgame_%05d", i ? "|" : "", i);
    assert_non_null(strstr(refusal(big, n), "bytes; at most 1024"));
    free(big);
    /* the program: a{9999} and the match are 10,000 instructions, a{10000} one more */
    assert_string_equal(refusal("a{9999}", 7), "");
    REFUSED("a{10000}", "past 10000 instructions");
    REFUSED("a{99999999999999999999}", "past 10000 instructions"); /* no overflow */
    REFUSED("(.{1,255}){1,255}", "past 10000 instructions");
    REFUSED("((a{100}){100}){100}", "past 10000 instructions");
    /* (a|b) is four instructions: 2,499 copies fit, 2,500 do not */
    assert_string_equal(refusal("(a|b){2499}", 11), "");
    REFUSED("(a|b){2500}", "past 10000 instructions");
    /* kept for a search, a group is two instructions more (its saves), and
     * the match two (group 0's): (a|b){1666} fits, (a|b){1667} does not */
    char err[256];
    gd_regex *re;
    assert_int_equal(gd_regex_compile_captures(&re, "(a|b){1666}", 11, err, sizeof err), GD_OK);
    gd_regex_free(re);
    assert_int_equal(gd_regex_compile_captures(&re, "(a|b){1667}", 11, err, sizeof err), GD_ERR);
    assert_non_null(strstr(err, "past 10000 instructions"));
    /* nesting */
    char deep[2 * GD_REGEX_MAX_DEPTH + 4];
    for (int d = GD_REGEX_MAX_DEPTH; d <= GD_REGEX_MAX_DEPTH + 1; d++) {
        memset(deep, '(', (size_t)d);
        memset(deep + d, ')', (size_t)d);
        const char *why = refusal(deep, 2 * (size_t)d);
        assert_true(d == GD_REGEX_MAX_DEPTH ? !*why : strstr(why, "nested deeper than 32") != NULL);
    }
}

/* The state is kept in the compiled regex: many matches in a row, long and
 * short, give the same answers as fresh ones. */
static void a_regex_is_reused(void **state)
{
    (void)state;
    char err[256];
    gd_regex *re;
    assert_int_equal(gd_regex_compile(&re, "(x+x+)+y|z", 10, err, sizeof err), GD_OK);
    char text[5001];
    memset(text, 'x', 5000);
    text[5000] = 'y';
    for (int i = 0; i < 100; i++) {
        assert_false(gd_regex_match(re, text, 5000));
        assert_true(gd_regex_match(re, text, 5001));
        assert_true(gd_regex_match(re, "z", 1));
        assert_false(gd_regex_match(re, "", 0));
        assert_true(gd_regex_match(re, "xxy", 3));
        assert_false(gd_regex_match(re, "xy", 2));
    }
    gd_regex_free(re);
}

/* Searching: the leftmost match, then the first in priority order, and
 * its groups -- what Python's re.search gives (and Java's find). Each
 * example: pattern, text, then the match and group 1 ("-" no match, "~"
 * a group that took no part). */
typedef struct {
    const char *pattern, *text, *match, *group1;
} found;

static void span_text(const char *text, gd_regex_span sp, char *out)
{
    if (sp.start == SIZE_MAX) strcpy(out, "~");
    else snprintf(out, 128, "%.*s", (int)(sp.end - sp.start), text + sp.start);
}

static void searches_find_the_leftmost_first_match_and_its_groups(void **state)
{
    (void)state;
    static const found ex[] = {
        {"b+", "abbbc", "bbb", "~"},           {"b+?", "abbbc", "b", "~"},
        {"(a|ab)(c|bcd)", "abcd", "abcd", "a"}, {"x*", "abc", "", "~"},
        {"([0-9]+)-([0-9]+)", "id 12-345 and 6-7", "12-345", "12"},
        {"(([AEIOU]).)", "hello World, Ana", "An", "An"},
        {"^b", "ab", "-", "-"},                {"c$", "abc", "c", "~"},
        {"(x)?y", "zy", "y", "~"},              {"(a*)+b", "aaab", "aaab", "aaa"}, /* RE2's answer: no empty last turn (Python's is '') */
        {"(.*)@(.*)", "me@example.com", "me@example.com", "me"},
        {"(.*?)@", "me@x@y", "me@", "me"},      {"(?i)NEON", "a neon sign", "neon", "~"},
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        char err[256] = "", m[128], g[128];
        gd_regex *re;
        assert_int_equal(gd_regex_compile_captures(&re, ex[i].pattern, strlen(ex[i].pattern), err, sizeof err), GD_OK);
        gd_regex_span sp[3];
        int r = gd_regex_search(re, ex[i].text, strlen(ex[i].text), 0, sp, 3);
        if (r == 1) {
            span_text(ex[i].text, sp[0], m);
            if (gd_regex_groups(re) >= 1) span_text(ex[i].text, sp[1], g);
            else strcpy(g, "~");
        } else strcpy(m, "-"), strcpy(g, "-");
        if (strcmp(m, ex[i].match) || strcmp(g, ex[i].group1)) {
            print_error("/%s/ in '%s': got '%s' '%s', want '%s' '%s'\n", ex[i].pattern, ex[i].text, m, g, ex[i].match,
                        ex[i].group1);
            fail();
        }
        gd_regex_free(re);
    }
}

/* Replacing every match, as Java's replaceAll (and, but for `$1` written
 * `\1`, Python's re.sub): empty matches between characters too. */
static void replace_all_as_java(void **state)
{
    (void)state;
    static const struct {
        const char *pattern, *text, *repl, *want;
    } ex[] = {
        {"a.b+", "xa-bbbyacb", "bar", "xbarybar"},
        {"a*", "baaac", "X", "XbXXcX"},
        {"([a-z]+)@([a-z]+)", "me@host, you@there", "$2 at $1", "host at me, there at you"},
        {"\\s+", "  a  b ", "_", "_a_b_"},
        {"x", "\xc3\x9fx\xc3\x9f", "\\$", "\xc3\x9f$\xc3\x9f"},
        {"", "\xc3\x9f" "a", "-", "-\xc3\x9f-a-"}, /* a two-byte character stays whole */
        {"(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)", "abcdefghij", "$10-$11", "j-a1"}, /* the longest number naming a group */
        {"(a)", "a", "$2", NULL},                  /* no group 2: refused */
        {"(a)", "a", "$", NULL},
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        char err[256] = "";
        gd_regex *re;
        assert_int_equal(gd_regex_compile_captures(&re, ex[i].pattern, strlen(ex[i].pattern), err, sizeof err), GD_OK);
        gd_buf out = {0};
        int r = gd_regex_replace(re, ex[i].text, strlen(ex[i].text), ex[i].repl, strlen(ex[i].repl), 1000, &out);
        if (!ex[i].want) assert_int_equal(r, GD_ERR);
        else {
            assert_int_equal(r, GD_OK);
            gd_buf_putc(&out, 0);
            assert_string_equal(out.p, ex[i].want);
        }
        gd_buf_free(&out);
        gd_regex_free(re);
    }
    /* the result's bound */
    gd_regex *re;
    char err[256];
    assert_int_equal(gd_regex_compile_captures(&re, "a", 1, err, sizeof err), GD_OK);
    gd_buf out = {0};
    assert_int_equal(gd_regex_replace(re, "aaaa", 4, "0123456789", 10, 25, &out), GD_ERR);
    gd_buf_free(&out);
    gd_regex_free(re);
}

/* A search on a pathological pattern finishes too, groups carried. */
static void searches_stay_linear(void **state)
{
    (void)state;
    static char text[30001];
    memset(text, 'a', 30000);
    char err[256];
    gd_regex *re;
    assert_int_equal(gd_regex_compile_captures(&re, "((a*)*)b", 8, err, sizeof err), GD_OK);
    gd_regex_span sp[3];
    assert_int_equal(gd_regex_search(re, text, 30000, 0, sp, 3), 0);
    gd_regex_free(re);
    /* a regex compiled for yes/no answers keeps no groups: it does not search */
    assert_int_equal(gd_regex_compile(&re, "(a)", 3, err, sizeof err), GD_OK);
    assert_int_equal(gd_regex_groups(re), 0);
    assert_int_equal(gd_regex_search(re, "a", 1, 0, sp, 2), GD_ERR);
    gd_regex_free(re);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_whole_text_must_match),
        cmocka_unit_test(classes_and_escapes),
        cmocka_unit_test(groups_and_repetition),
        cmocka_unit_test(pathological_patterns_finish),
        cmocka_unit_test(bad_patterns_are_refused_with_a_reason),
        cmocka_unit_test(bounds_are_refused_naming_the_limit),
        cmocka_unit_test(a_regex_is_reused),
        cmocka_unit_test(searches_find_the_leftmost_first_match_and_its_groups),
        cmocka_unit_test(replace_all_as_java),
        cmocka_unit_test(searches_stay_linear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
