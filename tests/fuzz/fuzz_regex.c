/* Fuzz target: the regex compiler and matcher (server/regex.c) of Grafana's
 * ad hoc filters. The input is the pattern; it either compiles or is
 * refused with a reason, and a compiled one is matched against a few texts
 * (the pattern itself among them) twice, the second answers equal to the
 * first: the state kept between matches must not leak from one to the next.
 * Compiled again keeping its groups, it gives the same answers, and each
 * text is searched (a match lies within the text, a group within the
 * match, and a match found is one from where it starts) and has every
 * match replaced by "<$0>" (the result bounded). */
#include <string.h>

#include "../../server/regex.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * GD_REGEX_MAX_PATTERN) return 0;
    char err[256] = "";
    gd_regex *re;
    if (gd_regex_compile(&re, (const char *)data, size, err, sizeof err)) {
        if (!err[0]) __builtin_trap(); /* a refusal says why */
        return 0;
    }
    const gd_str texts[] = {{(const char *)data, (uint32_t)size}, gd_str_c(""), gd_str_c("game_001"),
                            gd_str_c("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"), gd_str_c("caf\xc3\xa9\n")};
    enum { N = sizeof texts / sizeof texts[0] };
    bool first[N];
    for (int i = 0; i < N; i++) first[i] = gd_regex_match(re, texts[i].p, texts[i].len);
    for (int i = N - 1; i >= 0; i--)
        if (gd_regex_match(re, texts[i].p, texts[i].len) != first[i]) __builtin_trap();
    gd_regex_free(re);
    /* compiled again keeping its groups (refused only near the program limit) */
    if (gd_regex_compile_captures(&re, (const char *)data, size, err, sizeof err)) return 0;
    for (int i = 0; i < N; i++) {
        if (gd_regex_match(re, texts[i].p, texts[i].len) != first[i]) __builtin_trap(); /* the same answers */
        gd_regex_span sp[GD_REGEX_MAX_GROUPS + 1];
        int found = gd_regex_search(re, texts[i].p, texts[i].len, 0, sp, GD_REGEX_MAX_GROUPS + 1);
        if (found == 1) {
            if (sp[0].start > sp[0].end || sp[0].end > texts[i].len) __builtin_trap();
            for (int g = 1; g <= gd_regex_groups(re); g++)
                if (sp[g].start != SIZE_MAX && (sp[g].start < sp[0].start || sp[g].end > sp[0].end || sp[g].start > sp[g].end))
                    __builtin_trap();
            gd_regex_span again[1];
            if (gd_regex_search(re, texts[i].p, texts[i].len, sp[0].start, again, 1) != 1 || again[0].start != sp[0].start)
                __builtin_trap();
        }
        gd_buf out = {0};
        if (gd_regex_replace(re, texts[i].p, texts[i].len, "<$0>", 4, 4096, &out) == GD_OK && out.len > 4096)
            __builtin_trap();
        gd_buf_free(&out);
    }
    gd_regex_free(re);
    return 0;
}
