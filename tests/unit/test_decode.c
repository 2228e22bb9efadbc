/* Unit tests: the JSON scanner and writer, the record decoders, durations.
 * The decoder cases are a table: input text, whether it decodes, and for
 * those that do not, the reason given. */
#include <setjmp.h>
#include <stdarg.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../ingest/ingest.h"

static void scanner_unescapes_strings_and_reads_numbers(void **state)
{
    (void)state;
    gd_arena a;
    gd_arena_init(&a);
    gd_json j;
    gd_json_init(&j, gd_str_c("{\"s\":\"a\\\"b\\u00e9\\ud83d\\ude00\",\"i\":-42,\"d\":2.5e1,\"n\":null,\"o\":{\"x\":[1,{}]}}"), &a);
    assert_int_equal(gd_json_object_begin(&j), GD_OK);
    gd_str k;
    gd_jval v;
    assert_int_equal(gd_json_next_key(&j, &k), 1);
    assert_int_equal(gd_json_value(&j, &v), GD_OK);
    assert_int_equal(v.t, GD_J_STR);
    assert_true(gd_str_eq(v.s, gd_str_c("a\"b\xc3\xa9\xf0\x9f\x98\x80")));
    assert_int_equal(gd_json_next_key(&j, &k), 1);
    assert_int_equal(gd_json_value(&j, &v), GD_OK);
    assert_int_equal(v.t, GD_J_INT);
    assert_int_equal(v.i, -42);
    assert_int_equal(gd_json_next_key(&j, &k), 1);
    assert_int_equal(gd_json_value(&j, &v), GD_OK);
    assert_int_equal(v.t, GD_J_DBL);
    assert_true(v.d == 25.0);
    assert_int_equal(gd_json_next_key(&j, &k), 1);
    assert_int_equal(gd_json_value(&j, &v), GD_OK);
    assert_int_equal(v.t, GD_J_NULL);
    assert_int_equal(gd_json_next_key(&j, &k), 1);
    assert_int_equal(gd_json_value(&j, &v), GD_OK);
    assert_int_equal(v.t, GD_J_OBJ);
    assert_true(gd_str_eq(v.raw, gd_str_c("{\"x\":[1,{}]}")));
    assert_int_equal(gd_json_next_key(&j, &k), 0);
    assert_int_equal(gd_json_end(&j), GD_OK);
    gd_arena_free(&a);
}

/* The scanner reads plain runs a word at a time: escapes, quotes and control
 * characters must be found at every offset within and across words. */
static void scanner_finds_specials_at_every_offset(void **state)
{
    (void)state;
    gd_arena a;
    gd_arena_init(&a);
    for (int off = 0; off < 24; off++) {
        char text[96], want[64];
        memset(want, 'x', (size_t)off);
        want[off] = '"';
        memcpy(want + off + 1, "\xc3\xa9yz", 5);
        want[off + 6] = 0;
        snprintf(text, sizeof text, "{\"k\":\"%.*s\\\"\xc3\xa9yz\"}", off, want);
        gd_json j;
        gd_json_init(&j, gd_str_c(text), &a);
        gd_str k;
        gd_jval v;
        assert_int_equal(gd_json_object_begin(&j), GD_OK);
        assert_int_equal(gd_json_next_key(&j, &k), 1);
        assert_int_equal(gd_json_value(&j, &v), GD_OK);
        if (!gd_str_eq(v.s, gd_str_c(want))) fail_msg("offset %d: got '%.*s'", off, (int)v.s.len, v.s.p);
        /* a raw control character at the same offset is refused */
        snprintf(text, sizeof text, "{\"k\":\"%.*s\x01tail-of-the-string\"}", off, want);
        gd_json_init(&j, gd_str_c(text), &a);
        assert_int_equal(gd_json_object_begin(&j), GD_OK);
        assert_int_equal(gd_json_next_key(&j, &k), 1);
        assert_int_equal(gd_json_value(&j, &v), GD_EBADREC);
    }
    gd_arena_free(&a);
}

static void scanner_rejects_malformed_text(void **state)
{
    (void)state;
    static const char *bad[] = {
        "{\"a\":1,}", "{\"a\" 1}", "{\"a\":1 \"b\":2}", "{\"a\":01}", "{\"a\":\"x}", "{\"a\":tru}",
        "{\"a\":\"\\ud800\"}", "{\"a\":[1,2}", "{\"a\":1}x", "{\"a\":-}", "{\"a\":1.}", "[1]",
        "{\"a\":\"\x01\"}",
    };
    gd_arena a;
    gd_arena_init(&a);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gd_activity act;
        const char *why = NULL;
        if (gd_decode_activity(NULL, gd_str_c(bad[i]), &a, &act, &why) != GD_EBADREC)
            fail_msg("accepted malformed JSON: %s", bad[i]);
        assert_non_null(why);
    }
    gd_arena_free(&a);
}

typedef struct {
    const char *json;
    bool ok;
    const char *why; /* a fragment of the reason, when !ok */
} decode_case;

static const decode_case activity_cases[] = {
    {"{\"player_id\":\"p\",\"game_id\":\"g\",\"activity_type\":\"login\",\"activity_timestamp\":1}", true, NULL},
    {"{\"player_id\":\"p\",\"game_id\":\"g\",\"activity_type\":\"login\",\"activity_timestamp\":1,\"extra\":[1]}", true, NULL},
    {"{\"player_id\":\"p\",\"game_id\":\"g\",\"activity_type\":\"login\",\"activity_timestamp\":1.0}", true, NULL},
    {"{\"game_id\":\"g\",\"activity_type\":\"login\",\"activity_timestamp\":1}", false, "player_id"},
    {"{\"player_id\":null,\"game_id\":\"g\",\"activity_type\":\"login\",\"activity_timestamp\":1}", false, "player_id"},
    {"{\"player_id\":\"p\",\"activity_type\":\"login\",\"activity_timestamp\":1}", false, "game_id"},
    {"{\"player_id\":\"p\",\"game_id\":\"g\",\"activity_timestamp\":1}", false, "activity_type"},
    {"{\"player_id\":\"p\",\"game_id\":\"g\",\"activity_type\":\"login\"}", false, "activity_timestamp"},
    {"{\"player_id\":\"p\",\"game_id\":\"g\",\"activity_type\":\"login\",\"activity_timestamp\":\"1\"}", false, "number"},
    {"{\"player_id\":\"p\",\"game_id\":\"g\",\"activity_type\":\"login\",\"activity_timestamp\":-5}", false, "range"},
    {"{\"player_id\":7,\"game_id\":\"g\",\"activity_type\":\"login\",\"activity_timestamp\":1}", false, "string"},
    {"{\"player_id\":\"p\",\"game_id\":\"g\",\"activity_type\":\"login\",\"activity_timestamp\":1,\"score\":1.5}", false, "number"},
    {"\"just a string\"", false, "object"},
};

static void activity_decoding_cases(void **state)
{
    (void)state;
    gd_arena a;
    gd_arena_init(&a);
    for (size_t i = 0; i < sizeof activity_cases / sizeof activity_cases[0]; i++) {
        const decode_case *c = &activity_cases[i];
        gd_activity act;
        const char *why = NULL;
        int rc = gd_decode_activity(NULL, gd_str_c(c->json), &a, &act, &why);
        if (c->ok && rc != GD_OK) fail_msg("case %zu refused (%s): %s", i, why, c->json);
        if (!c->ok && rc == GD_OK) fail_msg("case %zu accepted: %s", i, c->json);
        if (!c->ok && !strstr(why, c->why)) fail_msg("case %zu: reason '%s' lacks '%s'", i, why, c->why);
    }
    gd_arena_free(&a);
}

static void nullable_fields_decode_to_null(void **state)
{
    (void)state;
    gd_arena a;
    gd_arena_init(&a);
    gd_player p;
    const char *why;
    assert_int_equal(gd_decode_player(NULL, gd_str_c("{\"player_id\":\"p1\",\"email\":null,\"level\":7}"), &a, &p, &why), GD_OK);
    assert_null(p.email.p);
    assert_null(p.username.p);
    assert_true(p.level.set);
    assert_int_equal(p.level.v, 7);
    assert_false(p.total_playtime_hours.set);
    gd_game g;
    assert_int_equal(gd_decode_game(NULL, gd_str_c("{\"rating\":4}"), &a, &g, &why), GD_OK);
    assert_true(g.rating.set && g.rating.v == 4.0); /* an integer is a fine double */
    gd_arena_free(&a);
}

static void writer_escapes_and_round_trips_doubles(void **state)
{
    (void)state;
    gd_buf b = {0};
    gd_json_put_str(&b, gd_str_c("a\"\\\n\x01"));
    gd_buf_putc(&b, 0);
    assert_string_equal(b.p, "\"a\\\"\\\\\\n\\u0001\"");
    gd_buf_clear(&b);
    gd_json_put_dbl(&b, 0.1);
    gd_buf_putc(&b, ' ');
    gd_json_put_dbl(&b, 3.0);
    gd_buf_putc(&b, ' ');
    gd_json_put_dbl(&b, 92.56932113099303);
    gd_buf_putc(&b, ' ');
    gd_json_put_int(&b, INT64_MIN);
    gd_buf_putc(&b, ' ');
    gd_buf_put_dec(&b, UINT64_MAX); /* every digit a push event's id may have */
    gd_buf_putc(&b, ' ');
    gd_buf_put_dec(&b, 0);
    gd_buf_putc(&b, 0);
    assert_string_equal(b.p, "0.1 3.0 92.56932113099303 -9223372036854775808 18446744073709551615 0");
    gd_buf_free(&b);
}

/* The shortest of %.15g, %.16g, %.17g that reads back: what every double
 * was written as before the fast path, kept here as the reference. */
static void shortest_g(double v, char *out, size_t cap)
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(out, cap, "%.*g", digits, v);
        if (strtod(out, NULL) == v) return;
    }
}

/* Prices, scores, averages, tiny and huge values, negative ones, and
 * random bit patterns: the writer gives the reference's text for each. */
static void doubles_are_written_as_the_shortest_g_text(void **state)
{
    (void)state;
    static const double cases[] = {67.99, -67.99, 0.5, -0.5, 554.5, 0.0001, 0.00012, 0.000999, 1234567.25,
                                   999999999.999999, 0.1 + 0.2, 1e-5, 123.456789, 9.99, 19.99, 1e15 + 0.5};
    char want[40];
    gd_buf b = {0};
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 200000 + (int)(sizeof cases / sizeof cases[0]); i++) {
        double v;
        if (i < (int)(sizeof cases / sizeof cases[0])) v = cases[i];
        else {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift */
            int k = (int)(x % 8);
            double scale = 1;
            for (int j = 0; j < k; j++) scale *= 10;
            if (i % 3 == 0) memcpy(&v, &x, sizeof v); /* any bits */
            else v = (double)(int64_t)(x >> 34) / scale * (i % 2 ? -1 : 1); /* a few decimals */
            if (!isfinite(v) || (v == (double)(int64_t)v && fabs(v) < 1e15)) continue; /* the other paths */
        }
        shortest_g(v, want, sizeof want);
        gd_buf_clear(&b);
        gd_json_put_dbl(&b, v);
        gd_buf_putc(&b, 0);
        if (strcmp(b.p, want)) fail_msg("%.17g: wrote %s, want %s", v, b.p, want);
    }
    gd_buf_free(&b);
}

static void durations_take_units(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(gd_parse_duration("500ms", &ms), GD_OK);
    assert_int_equal(ms, 500);
    assert_int_equal(gd_parse_duration("30s", &ms), GD_OK);
    assert_int_equal(ms, 30000);
    assert_int_equal(gd_parse_duration("2h", &ms), GD_OK);
    assert_int_equal(ms, 7200000);
    assert_int_equal(gd_parse_duration("7d", &ms), GD_OK);
    assert_int_equal(ms, 604800000);
    assert_int_equal(gd_parse_duration("250", &ms), GD_OK);
    assert_int_equal(ms, 250);
    assert_int_equal(gd_parse_duration("5x", &ms), GD_ERR);
    assert_int_equal(gd_parse_duration("-1s", &ms), GD_ERR);
    assert_int_equal(gd_parse_duration("", &ms), GD_ERR);
    /* up to a century, which still fits a deadline in nanoseconds */
    assert_int_equal(gd_parse_duration("36600d", &ms), GD_OK);
    assert_int_equal(gd_parse_duration("36601d", &ms), GD_ERR);
    assert_int_equal(gd_parse_duration("9223372036854775807", &ms), GD_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scanner_unescapes_strings_and_reads_numbers),
        cmocka_unit_test(scanner_finds_specials_at_every_offset),
        cmocka_unit_test(scanner_rejects_malformed_text),
        cmocka_unit_test(activity_decoding_cases),
        cmocka_unit_test(nullable_fields_decode_to_null),
        cmocka_unit_test(writer_escapes_and_round_trips_doubles),
        cmocka_unit_test(doubles_are_written_as_the_shortest_g_text),
        cmocka_unit_test(durations_take_units),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
