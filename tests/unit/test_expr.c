/* Unit tests: SQL expressions, parsed and bound by sql/ and evaluated by
 * store/expr.c over one row of the games table -- NULL semantics, the
 * operators and the scalar functions. Expectations are worked by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "../../sql/sql.h"

static gd_catalog catalog;

static int load(void **state)
{
    (void)state;
    gd_sql_error err = {0};
    gd_catalog_init(&catalog, -1);
    return gd_sql_load_builtin(&catalog, &err);
}

static int unload(void **state)
{
    (void)state;
    gd_catalog_free(&catalog);
    return 0;
}

/* The row: game_id 'g1', game_name 'Neon Arena', genre NULL, publisher
 * 'ßtudio' (two-byte UTF-8), release_date '2024-01-02', platform 'PC',
 * rating 4.5, price NULL. */
static gd_value row[8];

/* expr evaluated over the row, as text ("NULL" for null; strings quoted). */
static const char *eval(const char *expr)
{
    static char out[600];
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT %s FROM gaming_games_table;", expr);
    row[0] = (gd_value){.t = GD_V_STR, .s = gd_str_c("g1")};
    row[1] = (gd_value){.t = GD_V_STR, .s = gd_str_c("Neon Arena")};
    row[2] = (gd_value){.t = GD_V_NULL};
    row[3] = (gd_value){.t = GD_V_STR, .s = gd_str_c("\xc3\x9ftudio")};
    row[4] = (gd_value){.t = GD_V_STR, .s = gd_str_c("2024-01-02")};
    row[5] = (gd_value){.t = GD_V_STR, .s = gd_str_c("PC")};
    row[6] = (gd_value){.t = GD_V_DBL, .d = 4.5};
    row[7] = (gd_value){.t = GD_V_NULL};
    gd_arena arena;
    gd_arena_init(&arena);
    gd_sql_error err = {0};
    gd_sql_stmt *st;
    int n;
    gd_query_plan plan;
    if (gd_sql_parse(gd_str_c(sql), &arena, &st, &n, &err) || gd_sql_plan_query(&catalog, &st[0], &arena, &plan, &err)) {
        snprintf(out, sizeof out, "error: %s", err.message);
    } else {
        gd_eval ev = {.column = gd_value_array_column, .row = row, .now_ms = 1700000000000, .scratch = &arena};
        gd_value v = gd_expr_eval(plan.proj[0], &ev);
        gd_buf b = {0};
        if (v.t == GD_V_NULL) gd_buf_puts(&b, "NULL");
        else if (v.t == GD_V_STR) gd_buf_printf(&b, "'%.*s'", (int)v.s.len, v.s.p);
        else gd_value_text(v, &b);
        snprintf(out, sizeof out, "%.*s %s", (int)b.len, b.p, gd_coltype_name(plan.types[0]));
        gd_buf_free(&b);
    }
    gd_arena_free(&arena);
    return out;
}

#define EXPECT(expr, want) assert_string_equal(eval(expr), want)

static void nulls_propagate_and_logic_has_three_values(void **state)
{
    (void)state;
    EXPECT("price + 1", "NULL DOUBLE");
    EXPECT("genre = 'x'", "NULL BOOLEAN");
    EXPECT("genre IS NULL", "true BOOLEAN");
    EXPECT("price IS NOT NULL", "false BOOLEAN");
    EXPECT("genre = 'x' AND false", "false BOOLEAN"); /* NULL AND FALSE */
    EXPECT("genre = 'x' OR true", "true BOOLEAN");
    EXPECT("genre = 'x' OR false", "NULL BOOLEAN");
    EXPECT("NOT (genre = 'x')", "NULL BOOLEAN");
    EXPECT("'PC' IN ('XBOX', genre)", "NULL BOOLEAN"); /* no match, a NULL among the values */
    EXPECT("platform IN ('XBOX', 'PC')", "true BOOLEAN");
    EXPECT("platform NOT IN ('XBOX')", "true BOOLEAN");
    EXPECT("COALESCE(genre, price, 'none')", "error: line 1:8: COALESCE arguments must share a type (STRING and DOUBLE do not)");
    EXPECT("COALESCE(genre, platform, 'none')", "'PC' STRING");
    EXPECT("IFNULL(price, 0.5)", "0.5 DOUBLE");
    EXPECT("CONCAT(game_id, genre, '-', platform)", "'g1-PC' STRING"); /* NULLs are skipped */
}

static void arithmetic_follows_java_and_fails_to_null(void **state)
{
    (void)state;
    EXPECT("7 / 2", "3 INTEGER");
    EXPECT("-7 / 2", "-3 INTEGER"); /* toward zero */
    EXPECT("-7 % 3", "-1 INTEGER");
    EXPECT("7 / 0", "NULL INTEGER");
    EXPECT("rating / 0", "NULL DOUBLE");
    EXPECT("9223372036854775807 + 1", "NULL BIGINT"); /* overflow */
    EXPECT("rating * 2 + 1", "10.0 DOUBLE");
    EXPECT("2147483647 + 1", "2147483648 INTEGER");
    EXPECT("game_id + '-' + platform", "'g1-PC' STRING");
    EXPECT("- rating", "-4.5 DOUBLE");
}

static void comparisons_like_between_case(void **state)
{
    (void)state;
    EXPECT("rating BETWEEN 4 AND 5", "true BOOLEAN");
    EXPECT("rating NOT BETWEEN 4 AND 5", "false BOOLEAN");
    EXPECT("game_name LIKE 'Neon%'", "true BOOLEAN");
    EXPECT("game_name LIKE '%Arena'", "true BOOLEAN");
    EXPECT("game_name LIKE 'N_on A%a'", "true BOOLEAN");
    EXPECT("publisher LIKE '_tudio'", "true BOOLEAN"); /* _ is one character, two bytes here */
    EXPECT("game_name LIKE 'neon%'", "false BOOLEAN");
    EXPECT("game_name NOT LIKE '%x%'", "true BOOLEAN");
    EXPECT("game_name LIKE '%n%a'", "true BOOLEAN"); /* the first n is not the one */
    EXPECT("'ab\xc3\x9f' LIKE '%_\xc3\x9f%'", "true BOOLEAN");
    /* each % tried at every place for every other took C(400, 7) steps, ~10^14 */
    char like[480];
    snprintf(like, sizeof like, "'%0400d' LIKE '%%0%%0%%0%%0%%0%%0%%0%%1'", 0);
    EXPECT(like, "false BOOLEAN");
    EXPECT("CASE WHEN rating > 4 THEN 'good' WHEN rating > 2 THEN 'ok' ELSE 'bad' END", "'good' STRING");
    EXPECT("CASE platform WHEN 'XBOX' THEN 1 WHEN 'PC' THEN 2 END", "2 INTEGER");
    EXPECT("CASE WHEN genre = 'x' THEN 1 END", "NULL INTEGER");
    EXPECT("'b' > 'a'", "true BOOLEAN");
    EXPECT("rating >= 4", "true BOOLEAN");
}

static void casts(void **state)
{
    (void)state;
    EXPECT("CAST(rating AS BIGINT)", "4 BIGINT");
    EXPECT("CAST(-4.9 AS INTEGER)", "-4 INTEGER");
    EXPECT("CAST('42' AS INTEGER)", "42 INTEGER");
    EXPECT("CAST('4x' AS INTEGER)", "NULL INTEGER");
    EXPECT("CAST('3000000000' AS INTEGER)", "NULL INTEGER");
    EXPECT("CAST('2.5' AS DOUBLE)", "2.5 DOUBLE");
    EXPECT("CAST(rating AS STRING)", "'4.5' STRING");
    EXPECT("CAST(3 AS DOUBLE)", "3.0 DOUBLE");
    EXPECT("CAST('TRUE' AS BOOLEAN)", "true BOOLEAN");
    EXPECT("CAST(1 AS BOOLEAN)", "error: line 1:8: cannot CAST INTEGER AS BOOLEAN");
}

static void string_functions(void **state)
{
    (void)state;
    EXPECT("UCASE(game_name)", "'NEON ARENA' STRING");
    EXPECT("LCASE(game_name)", "'neon arena' STRING");
    EXPECT("LEN(publisher)", "6 INTEGER"); /* characters, not bytes */
    EXPECT("SUBSTRING(game_name, 6)", "'Arena' STRING");
    EXPECT("SUBSTRING(game_name, 1, 4)", "'Neon' STRING");
    EXPECT("SUBSTRING(game_name, -5, 3)", "'Are' STRING");
    EXPECT("SUBSTRING(publisher, 2, 2)", "'tu' STRING");
    EXPECT("SUBSTRING(game_name, 50)", "'' STRING");
    EXPECT("LEN(genre)", "NULL INTEGER");
}

static void number_functions(void **state)
{
    (void)state;
    EXPECT("ROUND(2.5)", "3 BIGINT");
    EXPECT("ROUND(-2.5)", "-2 BIGINT"); /* half up, as Java's Math.round */
    EXPECT("ROUND(rating * 1.234, 2)", "5.55 DOUBLE");
    EXPECT("ROUND(7)", "7 INTEGER");
    EXPECT("FLOOR(-1.5)", "-2.0 DOUBLE");
    EXPECT("CEIL(1.2)", "2.0 DOUBLE");
    EXPECT("ABS(-3)", "3 INTEGER");
    EXPECT("ABS(-rating)", "4.5 DOUBLE");
}

static void time_functions(void **state)
{
    (void)state;
    EXPECT("UNIX_TIMESTAMP()", "1700000000000 BIGINT");
    EXPECT("TIMESTAMPTOSTRING(1700000000123, 'yyyy-MM-dd HH:mm:ss.SSS')", "'2023-11-14 22:13:20.123' STRING");
    EXPECT("TIMESTAMPTOSTRING(1700000000123, 'yyyy-MM-dd''T''HH:mmXXX', '+05:30')", "'2023-11-15T03:43+05:30' STRING");
    EXPECT("TIMESTAMPTOSTRING(1700000000000, 'EEE d MMM yy, h a', 'UTC')", "'Tue 14 Nov 23, 10 PM' STRING");
    EXPECT("TIMESTAMPTOSTRING(0, 'yyyy', 'Europe/Paris')",
           "error: line 1:37: time zone 'Europe/Paris' is not supported: use UTC or an offset such as +02:00");
}

static void refusals(void **state)
{
    (void)state;
    EXPECT("FOO(1)", "error: line 1:8: function FOO is not supported by gamingd");
    EXPECT("UCASE(rating)", "error: line 1:8: UCASE and LCASE take a STRING, not DOUBLE");
    EXPECT("game_name + 1", "error: line 1:18: arithmetic takes numbers, not STRING");
    EXPECT("UNIX_TIMESTAMP(1)", "error: line 1:8: UNIX_TIMESTAMP takes no argument here (epoch milliseconds are BIGINTs already)");
    EXPECT("COUNT(*)", "error: aggregating a table is not supported: aggregate a stream");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nulls_propagate_and_logic_has_three_values),
        cmocka_unit_test(arithmetic_follows_java_and_fails_to_null),
        cmocka_unit_test(comparisons_like_between_case),
        cmocka_unit_test(casts),
        cmocka_unit_test(string_functions),
        cmocka_unit_test(number_functions),
        cmocka_unit_test(time_functions),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, load, unload);
}
