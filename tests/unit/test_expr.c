/* Unit tests: SQL expressions, parsed and bound by sql/ and evaluated by
 * store/expr.c over one row of the games table -- NULL semantics, the
 * operators and the scalar functions; and the bounds on a statement's
 * size (store/expr.h), each just inside and just past. Expectations are
 * worked by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ksqlDB's generated code: a comparison with NULL is false (not NULL), an
 * IN never matches NULL, IS [NOT] DISTINCT FROM sees NULL as a value;
 * AND, OR and NOT keep three values. */
static void nulls_propagate_and_comparisons_with_null_are_false(void **state)
{
    (void)state;
    EXPECT("price + 1", "NULL DOUBLE");
    EXPECT("genre = 'x'", "false BOOLEAN");
    EXPECT("genre <> 'x'", "false BOOLEAN");
    EXPECT("NOT (genre = 'x')", "true BOOLEAN");
    EXPECT("price BETWEEN 1 AND 2", "false BOOLEAN");
    EXPECT("price NOT BETWEEN 1 AND 2", "true BOOLEAN");
    EXPECT("genre IS NULL", "true BOOLEAN");
    EXPECT("price IS NOT NULL", "false BOOLEAN");
    EXPECT("genre IS DISTINCT FROM 'x'", "true BOOLEAN");
    EXPECT("genre IS DISTINCT FROM NULL", "false BOOLEAN");
    EXPECT("genre IS NOT DISTINCT FROM NULL", "true BOOLEAN");
    EXPECT("platform IS NOT DISTINCT FROM 'PC'", "true BOOLEAN");
    EXPECT("platform IS DISTINCT FROM 'XBOX'", "true BOOLEAN");
    EXPECT("CAST(NULL AS BOOLEAN) AND false", "false BOOLEAN"); /* NULL AND FALSE */
    EXPECT("CAST(NULL AS BOOLEAN) OR true", "true BOOLEAN");
    EXPECT("CAST(NULL AS BOOLEAN) OR false", "NULL BOOLEAN");
    EXPECT("NOT CAST(NULL AS BOOLEAN)", "NULL BOOLEAN");
    EXPECT("'PC' IN ('XBOX', genre)", "false BOOLEAN"); /* the NULL among the values matches nothing */
    EXPECT("genre IN ('XBOX', genre)", "false BOOLEAN");
    EXPECT("genre NOT IN ('XBOX')", "true BOOLEAN");
    EXPECT("platform IN ('XBOX', 'PC')", "true BOOLEAN");
    EXPECT("platform NOT IN ('XBOX')", "true BOOLEAN");
    EXPECT("rating IN (1, '9')", "false BOOLEAN"); /* '9' stands for 9.0 */
    EXPECT("rating IN (1, '4.5')", "true BOOLEAN");
    EXPECT("platform LIKE 'P!%' ESCAPE '!'", "false BOOLEAN");
    EXPECT("'P%' LIKE 'P!%' ESCAPE '!'", "true BOOLEAN");
    EXPECT("'P_x' LIKE 'P$_%' ESCAPE '$'", "true BOOLEAN");
    EXPECT("'Pax' LIKE 'P$_%' ESCAPE '$'", "false BOOLEAN");
    EXPECT("'P!' LIKE 'P!' ESCAPE '!'", "true BOOLEAN"); /* an escape ending the pattern stands for itself */
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
    EXPECT("TIMESTAMPTOSTRING(0, 'yyyy', 'Mars/Olympus')",
           "error: line 1:37: unknown time zone 'Mars/Olympus': use a name such as 'America/Los_Angeles', UTC, or an "
           "offset such as +02:00");
    EXPECT("TIMESTAMPTOSTRING(0, 'yyyy', '../../etc/passwd')", "error: line 1:37: unknown time zone '../../etc/passwd': "
           "use a name such as 'America/Los_Angeles', UTC, or an offset such as +02:00");
    /* zones from the TZif files; expectations from Python's zoneinfo */
    EXPECT("TIMESTAMPTOSTRING(1700000000123, 'yyyy-MM-dd HH:mm:ss.SSSXXX', 'America/Los_Angeles')",
           "'2023-11-14 14:13:20.123-08:00' STRING");
    EXPECT("FORMAT_TIMESTAMP(1690000000000, 'yyyy-MM-dd HH:mm:ssXXX', 'America/Los_Angeles')",
           "'2023-07-21 21:26:40-07:00' STRING"); /* daylight saving */
    EXPECT("TIMESTAMPTOSTRING(1690000000000, 'HH:mm', 'Europe/Paris')", "'06:26' STRING");
    /* ksqlDB's functional tests (timestamp-to-string.json) */
    EXPECT("FORMAT_TIMESTAMP(1526075913000, 'yyyy-MM-dd HH:mm:ss zzz', 'America/Los_Angeles')",
           "'2018-05-11 14:58:33 PDT' STRING");
    EXPECT("TIMESTAMPTOSTRING(1526075913000, 'yyyy-MM-dd HH:mm:ss zzz', 'Europe/London')", "'2018-05-11 22:58:33 BST' STRING");
    EXPECT("TIMESTAMPTOSTRING(0, 'HH:mm z', '+02:00')", "'02:00 +02:00' STRING");
    /* convert-tz.json */
    EXPECT("CONVERT_TZ(1589234313000, 'America/Los_Angeles', 'America/New_York')", "1589245113000 BIGINT");
    EXPECT("CONVERT_TZ(100, '+0200', '+0500')", "10800100 BIGINT");
    EXPECT("TIMESTAMPTOSTRING(1700000000000, 'HH:mm', CONCAT('Asia/', 'Kolkata'))", "'03:43' STRING"); /* not a literal */
    EXPECT("TIMESTAMPTOSTRING(1700000000000, 'HH:mm', CONCAT('Nowhere/', 'Land'))", "NULL STRING");
    EXPECT("TIMESTAMPTOSTRING(1700000000000, 'HH:mm', CONCAT('Amer', 'ica'))", "NULL STRING"); /* a directory */
    /* parsing: a gap (02:30 on the spring-forward day) moves forward, an overlap takes the earlier */
    EXPECT("PARSE_TIMESTAMP('2023-03-12 02:30', 'yyyy-MM-dd HH:mm', 'America/Los_Angeles')", "1678617000000 BIGINT");
    EXPECT("STRINGTOTIMESTAMP('2023-11-05 01:30', 'yyyy-MM-dd HH:mm', 'America/Los_Angeles')", "1699173000000 BIGINT");
    EXPECT("PARSE_TIMESTAMP('2023-11-14T22:13:20.123Z', 'yyyy-MM-dd''T''HH:mm:ss.SSSX')", "1700000000123 BIGINT");
    EXPECT("PARSE_TIMESTAMP('2023-11-15 03:43:20 +05:30', 'yyyy-MM-dd HH:mm:ss XXX')", "1700000000000 BIGINT");
    EXPECT("PARSE_TIMESTAMP('29 Feb 2024 12:00 PM', 'dd MMM yyyy hh:mm a')", "1709208000000 BIGINT");
    EXPECT("PARSE_TIMESTAMP('30 Feb 2024', 'dd MMM yyyy')", "NULL BIGINT");
    EXPECT("PARSE_TIMESTAMP('2024-01-01x', 'yyyy-MM-dd')", "NULL BIGINT");
    EXPECT("TIMESTAMPTOSTRING(PARSE_TIMESTAMP('2024-06-30 23:59:59.5', 'yyyy-MM-dd HH:mm:ss.S'), 'yyyy-MM-dd HH:mm:ss.SSS')",
           "'2024-06-30 23:59:59.500' STRING");
    EXPECT("CONVERT_TZ(1700000000000, 'UTC', 'America/Los_Angeles')", "1699971200000 BIGINT");
    EXPECT("FROM_UNIXTIME(1700000000000)", "1700000000000 BIGINT");
    EXPECT("UNIX_DATE()", "19675 INTEGER"); /* 1700000000000 ms is in day 19675 */
    EXPECT("TIMESTAMPADD(MINUTES, 5, 1700000000000)", "1700000300000 BIGINT");
    EXPECT("TIMESTAMPSUB('DAYS', 1, 1700000000000)", "1699913600000 BIGINT");
    EXPECT("TIMESTAMPADD(DAYS, 9223372036854775807, 0)", "NULL BIGINT");
    EXPECT("TIMESTAMPADD(WEEKS, 1, 0)",
           "error: line 1:21: unknown time unit 'WEEKS': MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS");
}

/* Edge cases of ksqlDB's string functions; expectations from ksqlDB's
 * function reference (its examples) or worked by hand. */
static void more_string_functions(void **state)
{
    (void)state;
    EXPECT("TRIM(' \ta b\n ')", "'a b' STRING"); /* controls go too, as Java's trim */
    EXPECT("TRIM('  a b  ')", "'a b' STRING");
    EXPECT("LTRIM('  a ')", "'a ' STRING");
    EXPECT("RTRIM('  a ')", "'  a' STRING");
    EXPECT("TRIM(genre)", "NULL STRING");
    EXPECT("REPLACE(game_name, 'e', 'EE')", "'NEEon ArEEna' STRING");
    EXPECT("REPLACE('abc', '', '-')", "'-a-b-c-' STRING");
    EXPECT("REPLACE(publisher, '\xc3\x9f', 'ss')", "'sstudio' STRING");
    EXPECT("INITCAP('hELLO  wORLD-x y')", "'Hello  World-x Y' STRING");
    EXPECT("CONCAT_WS(', ', 'apple', 'banana', genre, 'date')", "'apple, banana, date' STRING");
    EXPECT("CONCAT_WS(genre, 'a', 'b')", "NULL STRING");
    EXPECT("LPAD('Foo', 7, 'Bar')", "'BarBFoo' STRING");
    EXPECT("LPAD('Foo', 2, 'Bar')", "'Fo' STRING");
    EXPECT("LPAD('', 2, 'Bar')", "'Ba' STRING");
    EXPECT("LPAD('123', 5, '0')", "'00123' STRING");
    EXPECT("RPAD('Foo', 7, 'Bar')", "'FooBarB' STRING");
    EXPECT("RPAD(publisher, 8, '\xc3\x9f')", "'\xc3\x9ftudio\xc3\x9f\xc3\x9f' STRING"); /* characters, not bytes */
    EXPECT("LPAD('a', -1, 'x')", "NULL STRING");
    EXPECT("LPAD('a', 3, '')", "NULL STRING");
    EXPECT("LPAD('a', 2000000000, 'x')", "NULL STRING"); /* past the bound on a result */
    EXPECT("INSTR('CORPORATE FLOOR', 'OR')", "2 INTEGER");
    EXPECT("INSTR('CORPORATE FLOOR', 'OR', 3)", "5 INTEGER");
    EXPECT("INSTR('CORPORATE FLOOR', 'OR', 3, 2)", "14 INTEGER");
    EXPECT("INSTR('CORPORATE FLOOR', 'OR', -3)", "5 INTEGER");
    EXPECT("INSTR('CORPORATE FLOOR', 'OR', -3, 2)", "2 INTEGER");
    EXPECT("INSTR('CORPORATE FLOOR', 'MISSING')", "0 INTEGER");
    EXPECT("INSTR(publisher, 'tu')", "2 INTEGER");
    EXPECT("MASK('My Test $123')", "'Xx-Xxxx--nnn' STRING");
    EXPECT("MASK('My Test $123', '*', NULL, '1', NULL)", "'*y *est $111' STRING");
    EXPECT("MASK_KEEP_LEFT('My Test $123', 4)", "'My Txxx--nnn' STRING");
    EXPECT("MASK_KEEP_RIGHT('My Test $123', 4)", "'Xx-Xxxx-$123' STRING");
    EXPECT("MASK_LEFT('My Test $123', 4)", "'Xx-Xest $123' STRING");
    EXPECT("MASK_RIGHT('My Test $123', 4)", "'My Test -nnn' STRING");
    EXPECT("MASK_LEFT('abc', -1)", "NULL STRING");
    EXPECT("MASK('a', 'XY')", "error: line 1:18: a mask is one character, not 'XY'");
    EXPECT("ENCODE('48656c6c6f', 'hex', 'utf8')", "'Hello' STRING");
    EXPECT("ENCODE('Hello', 'utf8', 'base64')", "'SGVsbG8=' STRING");
    EXPECT("ENCODE('SGVsbG8=', 'base64', 'hex')", "'48656c6c6f' STRING");
    EXPECT("ENCODE('zz', 'hex', 'utf8')", "NULL STRING");
    /* ksqlDB's functional tests (encode.json): what ASCII lacks is '?' one way, U+FFFD the other */
    EXPECT("ENCODE('c39c6265726d656e736368', 'hex', 'utf8')", "'\xc3\x9c" "bermensch' STRING");
    EXPECT("ENCODE('c39c6265726d656e736368', 'hex', 'base64')", "'w5xiZXJtZW5zY2g=' STRING");
    EXPECT("ENCODE('c39c62', 'hex', 'ascii')", "'\xef\xbf\xbd\xef\xbf\xbd" "b' STRING");
    EXPECT("ENCODE('\xce\x95\xce\xbb', 'ascii', 'hex')", "'3f3f' STRING");
    EXPECT("ENCODE('4578616d706C6521', 'hex', 'ascii')", "'Example!' STRING");
    EXPECT("ENCODE('c3', 'hex', 'utf8')", "'\xef\xbf\xbd' STRING"); /* not UTF-8 */
    EXPECT("ENCODE('a', 'utf8', 'ebcdic')",
           "error: line 1:28: unknown encoding 'ebcdic': hex, utf8, ascii or base64");
    EXPECT("ELT(2, 'a', 'b', 'c')", "'b' STRING");
    EXPECT("ELT(4, 'a', 'b', 'c')", "NULL STRING");
    EXPECT("ELT(genre, 'a')", "error: line 1:8: ELT: n must be a whole number (INTEGER or BIGINT), not STRING");
    EXPECT("FIELD('b', 'a', 'b', 'b')", "2 INTEGER");
    EXPECT("FIELD(genre, 'a', genre)", "0 INTEGER");
    EXPECT("MD5('hash me')", "'17b31dce96b9d6c6d0a6ba95f47796fb' STRING"); /* Python's hashlib */
    EXPECT("MD5('')", "'d41d8cd98f00b204e9800998ecf8427e' STRING");
    EXPECT("LEN(UUID())", "36 INTEGER");
    EXPECT("SUBSTRING(UUID(), 15, 1)", "'4' STRING"); /* version 4 */
    EXPECT("CHR(75)", "'K' STRING");
    EXPECT("CHR('\\u597d')", "'\xe5\xa5\xbd' STRING");
    EXPECT("CHR(55296)", "NULL STRING"); /* a surrogate */
    EXPECT("REGEXP_EXTRACT('.*', 'abc')", "'abc' STRING");
    EXPECT("REGEXP_EXTRACT('(([AEIOU]).)', 'hello World, Ana', 2)", "'A' STRING");
    EXPECT("REGEXP_EXTRACT('([0-9]+)', game_name)", "NULL STRING");
    EXPECT("REGEXP_EXTRACT('(a)', 'a', 2)", "NULL STRING"); /* no group 2 */
    EXPECT("REGEXP_REPLACE('xa-bbbyacb', 'a.b+', 'bar')", "'xbarybar' STRING");
    EXPECT("REGEXP_REPLACE(game_name, '([a-z]+)', '<$1>')", "'N<eon> A<rena>' STRING");
    EXPECT("REGEXP_REPLACE(game_name, '(', 'x')", "error: line 1:34: bad regular expression: the '(' at byte 0 has no ')'");
}

/* ksqlDB's numeric functions; ROUND with a scale agrees with ROUND. */
static void more_number_functions(void **state)
{
    (void)state;
    EXPECT("ROUND(-1.5, 0)", "-1.0 DOUBLE"); /* half up, as ROUND(-1.5) */
    EXPECT("ROUND(-1.5)", "-1 BIGINT");
    EXPECT("ROUND(-2.55, 1)", "-2.5 DOUBLE");
    EXPECT("ROUND(1.005, 2)", "1.01 DOUBLE"); /* on the decimal text, as BigDecimal.valueOf */
    EXPECT("ROUND(1234.5, -2)", "1200.0 DOUBLE");
    EXPECT("ROUND(1250, -2)", "1300 INTEGER");
    EXPECT("ROUND(0.49999999999999994)", "0 BIGINT");
    EXPECT("ROUND(-0.4, 0)", "0.0 DOUBLE");
    EXPECT("ROUND(price, 2)", "NULL DOUBLE");
    EXPECT("ROUND(rating, 400)", "4.5 DOUBLE");
    EXPECT("TRUNC(-1.7)", "-1 BIGINT");
    EXPECT("TRUNC(12345.67, -3)", "12000.0 DOUBLE");
    EXPECT("TRUNC(1.999, 2)", "1.99 DOUBLE");
    EXPECT("TRUNC(0.29, 2)", "0.29 DOUBLE"); /* 0.29 * 100 is 28.999999999999996 in binary */
    EXPECT("ROUND(-2.5)", "-2 BIGINT");
    EXPECT("ROUND(-2.6)", "-3 BIGINT");
    EXPECT("ROUND(123456.789, -3)", "123000.0 DOUBLE");
    EXPECT("TRUNC(-1234.5678, 2)", "-1234.56 DOUBLE");
    EXPECT("SIGN(-rating)", "-1 INTEGER");
    EXPECT("SIGN(0)", "0 INTEGER");
    EXPECT("SQRT(16)", "4.0 DOUBLE");
    EXPECT("SQRT(-1)", "NULL DOUBLE"); /* NaN */
    EXPECT("LN(0)", "NULL DOUBLE");    /* -Infinity */
    EXPECT("EXP(0)", "1.0 DOUBLE");
    EXPECT("LOG(13)", "2.5649493574615367 DOUBLE"); /* natural, as ksqlDB's LogTest (its docs say base 10) */
    EXPECT("LOG(2, 8)", "3.0 DOUBLE");
    EXPECT("POWER(2, 10)", "1024.0 DOUBLE");
    EXPECT("CBRT(27)", "3.0 DOUBLE");
    EXPECT("GREATEST(1, 5, 3)", "5 INTEGER");
    EXPECT("GREATEST(1, price, 2.5)", "2.5 DOUBLE"); /* NULLs skipped */
    EXPECT("LEAST(3, 2.5)", "2.5 DOUBLE");
    EXPECT("LEAST(2, 3.5)", "2.0 DOUBLE");
    EXPECT("GREATEST('a', 'b')", "'b' STRING");
    EXPECT("GREATEST(1, 'b')", "error: line 1:20: GREATEST arguments must share a type (INTEGER and STRING do not)");
    EXPECT("NULLIF(platform, 'PC')", "NULL STRING");
    EXPECT("NULLIF(platform, 'XBOX')", "'PC' STRING");
    EXPECT("NULLIF(1, genre)", "error: line 1:8: NULLIF arguments must share a type (INTEGER and STRING do not)");
    EXPECT("DEGREES(PI())", "180.0 DOUBLE");
    EXPECT("RANDOM() < 1", "true BOOLEAN");
    EXPECT("ABS(2, 3)", "error: line 1:8: ABS takes 1 argument, not 2");
    EXPECT("SUBSTRING('a')", "error: line 1:8: SUBSTRING takes 2 to 3 arguments, not 1");
}


static void refusals(void **state)
{
    (void)state;
    EXPECT("FOO(1)", "error: line 1:8: function FOO is not supported by gamingd");
    EXPECT("UCASE(rating)", "error: line 1:8: UCASE: input must be a STRING, not DOUBLE");
    EXPECT("game_name + 1", "error: line 1:18: arithmetic takes numbers, not STRING");
    EXPECT("UNIX_TIMESTAMP(1)", "error: line 1:8: UNIX_TIMESTAMP takes no argument here (epoch milliseconds are BIGINTs already)");
    EXPECT("COUNT(*)", "error: aggregating a table is not supported: aggregate a stream");
}

/* `head`, then `n` times `rep`, then `mid`, then `n` times `close`, then
 * `tail`: a statement of any size (the caller frees it). */
static char *repeated(const char *head, const char *rep, int n, const char *mid, const char *close, const char *tail)
{
    gd_buf b = {0};
    gd_buf_puts(&b, head);
    for (int i = 0; i < n; i++) gd_buf_puts(&b, rep);
    gd_buf_puts(&b, mid);
    for (int i = 0; i < n; i++) gd_buf_puts(&b, close);
    gd_buf_puts(&b, tail);
    gd_buf_putc(&b, 0);
    return b.p;
}

/* The error parsing sql (and planning its first statement, a SELECT) gives, or "ok". */
static const char *refusal(char *sql)
{
    static char out[600];
    gd_arena arena;
    gd_arena_init(&arena);
    gd_sql_error err = {0};
    gd_sql_stmt *st;
    int n;
    gd_query_plan plan;
    if (gd_sql_parse(gd_str_c(sql), &arena, &st, &n, &err) ||
        (st[0].kind == GD_SQL_SELECT && gd_sql_plan_query(&catalog, &st[0], &arena, &plan, &err)))
        snprintf(out, sizeof out, "%s", err.message);
    else snprintf(out, sizeof out, "ok");
    gd_arena_free(&arena);
    free(sql);
    return out;
}

#define DEEP "expression nested more than 64 levels deep"
#define LARGE "the statement is too large: its expressions have more than 2048 parts"

static void oversized_expressions_are_refused(void **state)
{
    (void)state;
    /* a chain of n ones is a left-deep tree n levels high: 64 fit; the 64th
     * '+' of 12,000 (column 7 + 2 * 64) would make the 65th level */
    char *sql = repeated("SELECT 1", "+1", 63, "", "", " AS x FROM gaming_games_table;");
    assert_string_equal(refusal(sql), "ok");
    sql = repeated("SELECT 1", "+1", 11999, "", "", " AS x FROM gaming_games_table;");
    assert_string_equal(refusal(sql), "line 1:135: " DEEP " (each operator of a chain such as a + b + c is a level)");
    sql = repeated("SELECT rating", " * 2 - 1", 6000, "", "", " FROM gaming_games_table;");
    assert_non_null(strstr(refusal(sql), DEEP));
    sql = repeated("SELECT true", " OR false AND true", 6000, "", "", " FROM gaming_games_table;");
    assert_non_null(strstr(refusal(sql), DEEP));
    sql = repeated("SELECT ", "(", 63, "1", ")", " AS x FROM gaming_games_table;");
    assert_string_equal(refusal(sql), "ok");
    sql = repeated("SELECT ", "(", 100000, "1", ")", " FROM gaming_games_table;");
    assert_string_equal(refusal(sql), "line 1:72: " DEEP);
    sql = repeated("SELECT ", "NOT ", 100000, "true", "", " FROM gaming_games_table;");
    assert_non_null(strstr(refusal(sql), DEEP));
    sql = repeated("SELECT ", "- ", 100000, "rating", "", " FROM gaming_games_table;");
    assert_non_null(strstr(refusal(sql), DEEP));
    sql = repeated("SELECT ", "+ ", 100000, "rating", "", " FROM gaming_games_table;");
    assert_non_null(strstr(refusal(sql), DEEP));
    sql = repeated("SELECT ", "CASE WHEN true THEN ", 5000, "1", " END", " FROM gaming_games_table;");
    assert_non_null(strstr(refusal(sql), DEEP));
    sql = repeated("SELECT ", "ABS(", 5000, "1", ")", " FROM gaming_games_table;");
    assert_non_null(strstr(refusal(sql), DEEP));
    sql = repeated("SELECT ", "COALESCE(1, ", 5000, "1", ")", " FROM gaming_games_table;");
    assert_non_null(strstr(refusal(sql), DEEP));
}

static void oversized_statements_are_refused(void **state)
{
    (void)state;
    /* the selected game_id, game_id IN, 2,045 values: 2,048 parts; one more is too many */
    char *sql = repeated("SELECT game_id FROM gaming_games_table WHERE game_id IN ('a'", ",'a'", 2044, "", "", ");");
    assert_string_equal(refusal(sql), "ok");
    sql = repeated("SELECT game_id FROM gaming_games_table WHERE game_id IN ('a'", ",'a'", 2045, "", "", ");");
    assert_non_null(strstr(refusal(sql), LARGE));
    sql = repeated("SELECT game_id FROM gaming_games_table WHERE game_id IN ('a'", ",'a'", 70000, "", "", ");");
    assert_non_null(strstr(refusal(sql), LARGE));
    sql = repeated("SELECT 1", ", 1", 5000, "", "", " FROM gaming_games_table;");
    assert_non_null(strstr(refusal(sql), LARGE));
    sql = repeated("SELECT CONCAT(''", ", ''", 70000, "", ")", " FROM gaming_games_table;");
    assert_non_null(strstr(refusal(sql), LARGE));
    /* a CASE's operand (19 parts) is compared at each WHEN: counted again
     * each time, 80 WHENs are 1 + 19 + 80 * 3 + 79 * 19 = 1,761 parts, 300 are too many */
    sql = repeated("SELECT CASE (1+1+1+1+1+1+1+1+1+1)", " WHEN 1 THEN 1", 300, "", "", " END FROM gaming_games_table;");
    assert_non_null(strstr(refusal(sql), LARGE));
    sql = repeated("SELECT CASE (1+1+1+1+1+1+1+1+1+1)", " WHEN 1 THEN 1", 80, "", "", " END AS x FROM gaming_games_table;");
    assert_string_equal(refusal(sql), "ok");
    /* 64 statements in a script, not 65 */
    sql = repeated("", "SHOW TABLES;", 64, "", "", "");
    assert_string_equal(refusal(sql), "ok");
    sql = repeated("", "SHOW TABLES;", 65, "", "", "");
    assert_string_equal(refusal(sql), "line 1:769: more than 64 statements in one request");
}

/* CREATE STREAM name AS SELECT x || x || ... (n terms) AS x FROM source, added to the catalog. */
static const char *derive(const char *name, const char *source, const char *column, int n)
{
    static char out[600];
    gd_buf b = {0};
    gd_buf_printf(&b, "CREATE STREAM %s AS SELECT %s", name, column);
    for (int i = 1; i < n; i++) gd_buf_printf(&b, " || %s", column);
    gd_buf_printf(&b, " AS x FROM %s;", source);
    gd_buf_putc(&b, 0);
    gd_arena arena;
    gd_arena_init(&arena);
    gd_sql_error err = {0};
    gd_sql_stmt *st;
    int nst;
    gd_catalog_entry *e = NULL;
    const char *why = NULL;
    if (gd_sql_parse(gd_str_c(b.p), &arena, &st, &nst, &err) || gd_sql_plan_create(&catalog, &st[0], false, &e, &err))
        snprintf(out, sizeof out, "%s", err.message);
    else if (gd_catalog_add(&catalog, e, &why)) {
        snprintf(out, sizeof out, "%s", why);
        gd_catalog_entry_free(e);
    } else snprintf(out, sizeof out, "ok");
    gd_arena_free(&arena);
    gd_buf_free(&b);
    return out;
}

/* RANDOM() is refused in a stored definition (a derived stream's columns
 * are computed again by each reader: two would see different values); a
 * zone prepared when bound lives with the definition. */
static void definitions_refuse_random(void **state)
{
    (void)state;
    assert_string_equal(derive("lucky", "gaming_activity_enriched", "CAST(RANDOM() AS STRING)", 1),
                        "line 1:36: RANDOM is not allowed in a CREATE ... AS SELECT: a stored table or stream must give "
                        "the same values to every reader and at every start");
    assert_string_equal(derive("zoned", "gaming_activity_enriched",
                               "TIMESTAMPTOSTRING(event_timestamp, 'HH:mm', 'America/Los_Angeles')", 1), "ok");
}

static void derived_streams_cannot_grow_past_the_bounds(void **state)
{
    (void)state;
    /* each stream's column names the one below 40 times: put in, a tree of
     * 40 * 40 leaves and 80 levels, though each statement is small; the
     * error points at FROM's source (27 + 1 + 39 * 5 + 11 + 1) */
    assert_string_equal(derive("d1", "gaming_activity_enriched", "game_id", 40), "ok");
    assert_string_equal(derive("d2", "d1", "x", 40),
                        "line 1:235: the statement is too large once the columns of d1 are put in: its expressions "
                        "would nest more than 64 levels deep or have more than 2048 parts in all");
    /* 20 * 20 = 400 uses of game_id under 39 levels fit; a third stream
     * over them does not (58 levels, 8,000 leaves; FROM at 27 + 1 + 19 * 5 + 11 + 1) */
    assert_string_equal(derive("d3", "gaming_activity_enriched", "game_id", 20), "ok");
    assert_string_equal(derive("d4", "d3", "x", 20), "ok");
    assert_string_equal(derive("d5", "d4", "x", 20), "line 1:135: the statement is too large once the columns of d4 "
                                                     "are put in: its expressions would nest more than 64 levels deep "
                                                     "or have more than 2048 parts in all");
    assert_non_null(strstr(refusal(repeated("SELECT x", " || x", 5, "", "", " FROM d4 EMIT CHANGES;")), "too large once"));
    assert_string_equal(refusal(repeated("SELECT x", "", 0, "", "", " FROM d4 EMIT CHANGES;")), "ok");
}

static void like_patterns_of_many_percents_take_no_stack(void **state)
{
    (void)state;
    EXPECT("'abcabd' LIKE '%ab_'", "true BOOLEAN");
    EXPECT("'abcabd' LIKE '%a%c%d'", "true BOOLEAN");
    EXPECT("'abcabd' LIKE 'a%c'", "false BOOLEAN");
    EXPECT("'' LIKE '%%'", "true BOOLEAN");
    EXPECT("'' LIKE '_'", "false BOOLEAN");
    EXPECT("'\xc3\x9f' LIKE '_'", "true BOOLEAN");
    /* 200,000 '%a' against 200,000 'a' and a 'b': true, and false with a
     * trailing 'c' -- no recursion on the %s, and not exponential */
    int n = 200000;
    char *s = malloc((size_t)n + 2), *pat = malloc((size_t)n * 2 + 3);
    memset(s, 'a', (size_t)n);
    s[n] = 'b';
    for (int i = 0; i < n; i++) pat[2 * i] = '%', pat[2 * i + 1] = 'a';
    pat[2 * n] = '%';
    pat[2 * n + 1] = 'b';
    gd_expr lit_s = {.op = GD_E_LIT, .lit = {.t = GD_V_STR, .s = {s, (uint32_t)n + 1}}};
    gd_expr lit_p = {.op = GD_E_LIT, .lit = {.t = GD_V_STR, .s = {pat, (uint32_t)n * 2 + 2}}};
    gd_expr *args[2] = {&lit_s, &lit_p};
    gd_expr like = {.op = GD_E_LIKE, .nargs = 2, .args = args};
    gd_eval ev = {0};
    assert_true(gd_expr_true(&like, &ev));
    pat[2 * n + 1] = 'c';
    assert_false(gd_expr_true(&like, &ev));
    free(s);
    free(pat);
}

/* What a dashboard's plan says beyond its rows. */
typedef struct {
    bool key_filter; /* where_keys */
    bool row_filter; /* where: what where_keys does not check */
    int seeks;       /* key values sought of the first key column */
    char pii_use[128]; /* "how column", "" for none */
} plan_facts;

/* A dashboard's filters (gd_sql_plan_dashboard) over the row, as text:
 * "pass", "refused" or the planner's error; keys: game_id's payload
 * values (NULL: none). */
static const char *dashboard(const char *table, const char *column, gd_filter_op op, const char *value,
                             const char *const *keys, int nkeys, plan_facts *out)
{
    static char text[600];
    gd_arena arena;
    gd_arena_init(&arena);
    gd_sql_error err = {0};
    gd_str key_values[4];
    for (int i = 0; i < nkeys; i++) key_values[i] = gd_str_c(keys[i]);
    gd_sql_filter f = {column, op, value};
    gd_sql_dashboard d = {.q = {.t = gd_catalog_tabledef(&catalog, gd_str_c(table)), .mode = GD_WINDOWS_LATEST},
                          .filters = &f, .nfilters = column ? 1 : 0, .limit = -1};
    d.key_in[0] = key_values;
    d.nkey_in[0] = nkeys;
    gd_query_plan plan = {0};
    if (gd_sql_plan_dashboard(&catalog, &d, &arena, &plan, &err)) {
        snprintf(text, sizeof text, "%s", err.message);
    } else {
        eval("1"); /* fills the row */
        gd_eval ev = {.column = gd_value_array_column, .row = row, .now_ms = 1700000000000, .scratch = &arena};
        bool pass = (!plan.where_keys || gd_expr_true(plan.where_keys, &ev)) && (!plan.where || gd_expr_true(plan.where, &ev));
        snprintf(text, sizeof text, "%s", pass ? "pass" : "refused");
    }
    if (out) {
        out->key_filter = plan.where_keys != NULL;
        out->row_filter = plan.where != NULL;
        out->seeks = plan.nkey_values[0];
        snprintf(out->pii_use, sizeof out->pii_use, "%s%s%s", plan.pii_use.column ? plan.pii_use.how : "",
                 plan.pii_use.column ? " " : "", plan.pii_use.column ? plan.pii_use.column : "");
    }
    gd_sql_plan_free(&plan);
    gd_arena_free(&arena);
    return text;
}

#define FILTER(col, op, value, want) assert_string_equal(dashboard("gaming_games_table", col, op, value, NULL, 0, NULL), want)

static void dashboard_filters_compare_as_dashboards_do(void **state)
{
    (void)state;
    /* NULL (genre) passes != and !~ only */
    FILTER("genre", GD_FILTER_EQ, "x", "refused");
    FILTER("genre", GD_FILTER_NE, "x", "pass");
    FILTER("genre", GD_FILTER_LT, "x", "refused");
    FILTER("genre", GD_FILTER_MATCH, ".*", "refused");
    FILTER("genre", GD_FILTER_NOT_MATCH, ".*", "pass");
    /* a number (rating 4.5): by value against a number, else as its text by bytes */
    FILTER("rating", GD_FILTER_EQ, "4.50", "pass");
    FILTER("rating", GD_FILTER_NE, "4.5", "refused");
    FILTER("rating", GD_FILTER_EQ, "abc", "refused");
    FILTER("rating", GD_FILTER_LT, "10", "pass");  /* 4.5 < 10, though "4.5" > "10" by bytes */
    FILTER("rating", GD_FILTER_GT, "abc", "refused"); /* "4.5" < "abc" */
    FILTER("rating", GD_FILTER_LT, "abc", "pass");
    FILTER("rating", GD_FILTER_MATCH, "4\\.5", "pass");
    /* a string by bytes; a regex matches it whole */
    FILTER("game_name", GD_FILTER_EQ, "Neon Arena", "pass");
    FILTER("game_name", GD_FILTER_LT, "Z", "pass");
    FILTER("game_name", GD_FILTER_GT, "Neon", "pass");
    FILTER("game_name", GD_FILTER_MATCH, "Neon", "refused");
    FILTER("game_name", GD_FILTER_MATCH, "neon.*", "refused");
    FILTER("game_name", GD_FILTER_MATCH, "(?i)neon.*", "pass");
    FILTER("game_name", GD_FILTER_NOT_MATCH, "N.*a", "refused");
    /* another table's column does not apply; a regex that does not compile is an error */
    FILTER("player_email", GD_FILTER_EQ, "x", "pass");
    assert_non_null(strstr(dashboard("gaming_games_table", "game_id", GD_FILTER_MATCH, "game_(0", NULL, 0, NULL),
                           "filter game_id =~: the regular expression is refused"));
}

static void dashboard_key_values_and_personal_data_are_the_plans(void **state)
{
    (void)state;
    static const char *const two[] = {"g2", "g1"}, *const others[] = {"g2", "g3"}, *const one[] = {"g9"};
    plan_facts plan;
    /* several values: a condition on the key, checked on the row key alone */
    assert_string_equal(dashboard("gaming_games_table", NULL, GD_FILTER_EQ, NULL, two, 2, &plan), "pass");
    assert_true(plan.key_filter);
    assert_false(plan.row_filter); /* checked once */
    assert_string_equal(dashboard("gaming_games_table", NULL, GD_FILTER_EQ, NULL, others, 2, NULL), "refused");
    /* one value: a seek */
    assert_string_equal(dashboard("gaming_games_table", NULL, GD_FILTER_EQ, NULL, one, 1, &plan), "pass");
    assert_int_equal(plan.seeks, 1);
    assert_false(plan.key_filter);
    /* a filter on a value column is not a key's */
    dashboard("gaming_games_table", "rating", GD_FILTER_GT, "1", NULL, 0, &plan);
    assert_false(plan.key_filter);
    assert_true(plan.row_filter);
    assert_string_equal(plan.pii_use, "");
    /* a filter on a personal column is the plan's use of it */
    dashboard("gaming_players_table", "email", GD_FILTER_MATCH, ".*", NULL, 0, &plan);
    assert_string_equal(plan.pii_use, "filtering on email");
    dashboard("gaming_players_table", "username", GD_FILTER_MATCH, ".*", NULL, 0, &plan);
    assert_string_equal(plan.pii_use, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nulls_propagate_and_comparisons_with_null_are_false),
        cmocka_unit_test(arithmetic_follows_java_and_fails_to_null),
        cmocka_unit_test(comparisons_like_between_case),
        cmocka_unit_test(casts),
        cmocka_unit_test(string_functions),
        cmocka_unit_test(number_functions),
        cmocka_unit_test(time_functions),
        cmocka_unit_test(more_string_functions),
        cmocka_unit_test(more_number_functions),
        cmocka_unit_test(definitions_refuse_random),
        cmocka_unit_test(refusals),
        cmocka_unit_test(oversized_expressions_are_refused),
        cmocka_unit_test(oversized_statements_are_refused),
        cmocka_unit_test(derived_streams_cannot_grow_past_the_bounds),
        cmocka_unit_test(like_patterns_of_many_percents_take_no_stack),
        cmocka_unit_test(dashboard_filters_compare_as_dashboards_do),
        cmocka_unit_test(dashboard_key_values_and_personal_data_are_the_plans),
    };
    return cmocka_run_group_tests(tests, load, unload);
}
