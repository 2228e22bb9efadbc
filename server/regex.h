/* regex.h -- regular expressions matched in time linear in the text, with
 * bounded patterns (regex.c says how and why).
 *
 * A pattern matches the whole text, as `^(pattern)$` did with POSIX regexec
 * and as Python's re.fullmatch does. The dialect is the part of POSIX ERE and
 * of RE2/PCRE that Grafana users write: literals, `.` (any byte but a
 * newline), bracket classes `[a-z]`, `[^...]`, `[[:digit:]]`, escapes `\d \D
 * \w \W \s \S \n \t \r \f \v \xHH` and an escaped punctuation byte (`\.`,
 * inside brackets too), groups `( )` and `(?: )`, `(?i)` at the start (ASCII
 * case-insensitive), alternation `|`, `* + ?`, `{n}`, `{n,}`, `{n,m}`,
 * `{,m}` (a `?` after one, the lazy form, changes nothing for a yes/no
 * match), and the anchors `^ $`. Back-references, look-around and `\b` are
 * refused. Texts and patterns are bytes: a UTF-8 character is as many
 * bytes, so `.` matches one byte of it. */
#ifndef GD_REGEX_H
#define GD_REGEX_H

#include "gamingd.h"
#include "util.h"

enum {
    GD_REGEX_MAX_PATTERN = 1024,  /* bytes of a pattern */
    GD_REGEX_MAX_PROGRAM = 10000, /* instructions once counted repetition is expanded */
    GD_REGEX_MAX_DEPTH = 32,      /* groups inside groups */
    GD_REGEX_MAX_GROUPS = 16,     /* capturing groups kept; later ones match but are not kept */
};

typedef struct gd_regex gd_regex;

/* Compiles a pattern of len bytes: GD_OK with *out, or GD_ERR with err (a
 * sentence, naming the limit a pattern passes) and *out NULL. */
int gd_regex_compile(gd_regex **out, const char *pattern, size_t len, char *err, size_t errlen);
/* Whether re matches the whole of text. It runs in the state kept in re, so
 * one regex is used by one thread at a time; it allocates nothing. */
bool gd_regex_match(gd_regex *re, const char *text, size_t len);
void gd_regex_free(gd_regex *re);

/* Searching, for SQL's REGEXP_ functions, with a regex compiled by
 * gd_regex_compile_captures (its groups kept: each costs two instructions
 * of the program, so a pattern near the program limit may be refused here
 * and accepted by gd_regex_compile): the leftmost match, and among
 * those starting there the first in priority order (an earlier
 * alternative, a greedy repetition taking more, a lazy one less), as
 * Java's Matcher.find and PCRE do; `^` and `$` are the text's ends. The
 * same VM with capture slots carried by each thread: O(text x program x
 * groups asked), no backtracking. */
typedef struct {
    size_t start, end; /* bytes; SIZE_MAX when the group took no part */
} gd_regex_span;
int gd_regex_compile_captures(gd_regex **out, const char *pattern, size_t len, char *err, size_t errlen);
/* The capturing groups of the pattern that are kept (at most GD_REGEX_MAX_GROUPS; 0 from gd_regex_compile). */
int gd_regex_groups(const gd_regex *re);
/* The first match in text at or after byte from: 1 with spans[0] the match
 * and spans[g] group g for g < nspans (at most groups + 1 are filled), 0
 * when there is none, GD_ERR when out of memory or re was compiled
 * without captures. */
int gd_regex_search(gd_regex *re, const char *text, size_t len, size_t from, gd_regex_span *spans, int nspans);
/* Every match replaced by repl, appended to out, as Java's String.replaceAll:
 * in repl `$n` is group n and `\c` the character c; after an empty match
 * the next character is kept and the search goes on after it. GD_ERR when
 * repl names a group the pattern lacks, when out would pass max bytes, or
 * out of memory. Worst case O(text^2 x program): callers bound the text. */
int gd_regex_replace(gd_regex *re, const char *text, size_t len, const char *repl, size_t rlen, size_t max, gd_buf *out);

#endif
