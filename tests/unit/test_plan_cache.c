/* Unit tests: sql/cache.c, the pull plans an HTTP thread keeps -- found
 * only by the same text under the same catalog version, the least recently
 * used let go first, a claimed entry not kept reused, a long text or a
 * large plan never kept. A plan is told apart by its ncols, set by each test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../sql/sql.h"

enum { ENTRIES = 32 }; /* cache.c's CACHE_ENTRIES */

/* Keeps a plan with ncols n for text under version, as ksql.c does: the
 * text copied into the claimed arena. */
static void keep(gd_sql_cache *c, const char *text, unsigned version, int n)
{
    gd_arena *a = gd_sql_cache_claim(c, gd_str_c(text));
    assert_non_null(a);
    gd_str kept = gd_arena_strdup(a, gd_str_c(text));
    gd_query_plan plan = {.ncols = n};
    gd_sql_cache_keep(c, kept, kept, version, &plan);
}

/* The ncols of the plan kept for text under version; -1: none. */
static int found(gd_sql_cache *c, const char *text, unsigned version)
{
    gd_str stmt;
    const gd_query_plan *p = gd_sql_cache_find(c, gd_str_c(text), version, &stmt);
    if (!p) return -1;
    assert_true(gd_str_eq(stmt, gd_str_c(text)));
    return p->ncols;
}

static void found_by_text_and_version(void **state)
{
    (void)state;
    gd_sql_cache *c = gd_sql_cache_new();
    keep(c, "SELECT * FROM t;", 7, 3);
    assert_int_equal(found(c, "SELECT * FROM t;", 7), 3);
    assert_int_equal(found(c, "SELECT * FROM t;", 8), -1); /* the catalog changed since */
    assert_int_equal(found(c, "SELECT * FROM t ;", 7), -1);
    assert_int_equal(found(c, "select * from t;", 7), -1); /* texts, not meanings */
    gd_sql_cache_free(c);
}

static void the_least_recently_used_goes_first(void **state)
{
    (void)state;
    gd_sql_cache *c = gd_sql_cache_new();
    char text[ENTRIES + 1][32];
    for (int i = 0; i <= ENTRIES; i++) snprintf(text[i], sizeof text[i], "SELECT %d FROM t;", i);
    for (int i = 0; i < ENTRIES; i++) keep(c, text[i], 1, i);
    assert_int_equal(found(c, text[0], 1), 0); /* used again: now the newest */
    keep(c, text[ENTRIES], 1, ENTRIES);
    assert_int_equal(found(c, text[1], 1), -1); /* the oldest unused, let go */
    assert_int_equal(found(c, text[0], 1), 0);
    for (int i = 2; i <= ENTRIES; i++) assert_int_equal(found(c, text[i], 1), i);
    gd_sql_cache_free(c);
}

static void a_claim_not_kept_is_reused(void **state)
{
    (void)state;
    gd_sql_cache *c = gd_sql_cache_new();
    char text[ENTRIES - 1][32];
    for (int i = 0; i < ENTRIES - 1; i++) {
        snprintf(text[i], sizeof text[i], "SELECT %d FROM t;", i);
        keep(c, text[i], 1, i);
    }
    for (int i = 0; i < 3 * ENTRIES; i++) { /* a push query, an error: planned in a claimed arena, not kept */
        gd_arena *a = gd_sql_cache_claim(c, gd_str_c("SELECT * FROM s EMIT CHANGES;"));
        assert_non_null(a);
        gd_arena_alloc(a, 100);
    }
    assert_int_equal(found(c, "SELECT * FROM s EMIT CHANGES;", 1), -1);
    for (int i = 0; i < ENTRIES - 1; i++) assert_int_equal(found(c, text[i], 1), i); /* the one free entry served them all */
    gd_sql_cache_free(c);
}

static void a_long_text_is_not_kept(void **state)
{
    (void)state;
    gd_sql_cache *c = gd_sql_cache_new();
    size_t len = 4097; /* one past cache.c's CACHE_MAX_TEXT */
    char *text = malloc(len + 1);
    memset(text, ' ', len);
    memcpy(text, "SELECT", 6);
    text[len] = 0;
    assert_null(gd_sql_cache_claim(c, gd_str_c(text)));
    gd_query_plan plan = {.ncols = 1};
    gd_sql_cache_keep(c, gd_str_c(text), gd_str_c(text), 1, &plan); /* no claim: nothing kept */
    assert_int_equal(found(c, text, 1), -1);
    text[len - 1] = 0; /* 4,096 bytes: kept */
    keep(c, text, 1, 2);
    assert_int_equal(found(c, text, 1), 2);
    free(text);
    gd_sql_cache_free(c);
}

static void a_large_plan_is_not_kept(void **state)
{
    (void)state;
    gd_sql_cache *c = gd_sql_cache_new();
    for (size_t bytes = 60 * 1024; bytes <= 70 * 1024; bytes += 10 * 1024) { /* cache.c's limit: 64 KiB */
        const char *text = bytes < 64 * 1024 ? "SELECT 'small' FROM t;" : "SELECT 'large' FROM t;";
        gd_arena *a = gd_sql_cache_claim(c, gd_str_c(text));
        gd_str kept = gd_arena_strdup(a, gd_str_c(text));
        gd_arena_alloc(a, bytes - a->used_bytes); /* the arena's chunks now hold at least bytes */
        gd_query_plan plan = {.ncols = 1};
        gd_sql_cache_keep(c, kept, kept, 1, &plan);
        assert_true(gd_str_eq(kept, gd_str_c(text))); /* kept or not, the request still reads its plan */
    }
    assert_int_equal(found(c, "SELECT 'small' FROM t;", 1), 1);
    assert_int_equal(found(c, "SELECT 'large' FROM t;", 1), -1);
    gd_sql_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(found_by_text_and_version),
        cmocka_unit_test(the_least_recently_used_goes_first),
        cmocka_unit_test(a_claim_not_kept_is_reused),
        cmocka_unit_test(a_long_text_is_not_kept),
        cmocka_unit_test(a_large_plan_is_not_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
