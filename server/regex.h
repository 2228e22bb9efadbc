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

enum {
    GD_REGEX_MAX_PATTERN = 1024,  /* bytes of a pattern */
    GD_REGEX_MAX_PROGRAM = 10000, /* instructions once counted repetition is expanded */
    GD_REGEX_MAX_DEPTH = 32,      /* groups inside groups */
};

typedef struct gd_regex gd_regex;

/* Compiles a pattern of len bytes: GD_OK with *out, or GD_ERR with err (a
 * sentence, naming the limit a pattern passes) and *out NULL. */
int gd_regex_compile(gd_regex **out, const char *pattern, size_t len, char *err, size_t errlen);
/* Whether re matches the whole of text. It runs in the state kept in re, so
 * one regex is used by one thread at a time; it allocates nothing. */
bool gd_regex_match(gd_regex *re, const char *text, size_t len);
void gd_regex_free(gd_regex *re);

#endif
