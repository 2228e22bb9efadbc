/* Unit tests: window arithmetic, key encoding, the row codec, and the
 * aggregate semantics of SPEC §5 as table columns read them. Expectations are
 * worked by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "../../server/json.h"
#include "../../sql/sql.h"

/* The built-in tables, compiled from sql/builtin.sql as the daemon does. */
static gd_catalog catalog;
static gd_arena scratch;

static int load_catalog(void **state)
{
    (void)state;
    gd_catalog_init(&catalog, -1);
    gd_arena_init(&scratch);
    gd_sql_error err = {0};
    return gd_sql_load_builtin(&catalog, &err);
}

static int free_catalog(void **state)
{
    (void)state;
    gd_catalog_free(&catalog);
    gd_arena_free(&scratch);
    return 0;
}

static const gd_tabledef *table(const char *name)
{
    const gd_tabledef *t = gd_catalog_tabledef(&catalog, gd_str_c(name));
    assert_non_null(t);
    return t;
}

static const gd_str some_keys[GD_MAX_KEYS] = {{"k1", 2}, {"k2", 2}};

static gd_value column(const gd_tabledef *t, const gd_slot *s, int c)
{
    return gd_row_column(t, some_keys, 0, s, c, &scratch);
}

static bool visible(const gd_tabledef *t, const gd_slot *s)
{
    gd_row r;
    return gd_row_compute(t, some_keys, 0, s, &r, &scratch);
}

static void window_start_is_floor_aligned_to_epoch(void **state)
{
    (void)state;
    const int64_t H = 3600000;
    assert_int_equal(gd_window_start(0, H), 0);
    assert_int_equal(gd_window_start(H - 1, H), 0);
    assert_int_equal(gd_window_start(H, H), H);
    assert_int_equal(gd_window_start(1700000123456, 300000), 1700000100000);
    assert_int_equal(gd_window_start(-1, H), -H); /* floor, not truncation */
}

static void row_keys_sort_by_window_then_group(void **state)
{
    (void)state;
    gd_buf a = {0}, b = {0}, g = {0};
    gd_groupkey_append(&g, gd_str_c("zzz"));
    gd_rowkey_encode(&a, 1000, (gd_str){g.p, (uint32_t)g.len});
    gd_buf_clear(&g);
    gd_groupkey_append(&g, gd_str_c("aaa"));
    gd_rowkey_encode(&b, 2000, (gd_str){g.p, (uint32_t)g.len});
    assert_true(memcmp(a.p, b.p, 8) < 0); /* earlier window first, whatever the group */
    assert_int_equal(gd_rowkey_window(a.p), 1000);
    assert_int_equal(gd_rowkey_window(b.p), 2000);
    gd_rowkey_encode(&a, -5, (gd_str){"", 0});
    gd_rowkey_encode(&b, 5, (gd_str){"", 0});
    assert_true(memcmp(a.p, b.p, 8) < 0); /* negative times sort first */
    gd_buf_free(&a);
    gd_buf_free(&b);
    gd_buf_free(&g);
}

static void group_keys_split_back_into_columns(void **state)
{
    (void)state;
    gd_buf g = {0};
    gd_groupkey_append(&g, gd_str_c("player_1"));
    gd_groupkey_append(&g, gd_str_c(""));
    gd_str cols[2];
    assert_int_equal(gd_groupkey_split(g.p, g.len, 2, cols), GD_OK);
    assert_true(gd_str_eq(cols[0], gd_str_c("player_1")));
    assert_int_equal(cols[1].len, 0);
    assert_int_equal(gd_groupkey_split(g.p, g.len, 1, cols), GD_ERR); /* trailing bytes */
    assert_int_equal(gd_groupkey_split(g.p, g.len - 1, 2, cols), GD_ERR);
    gd_buf_free(&g);
}

static void aggregates_follow_ksqldb_null_semantics(void **state)
{
    (void)state;
    /* hourly stats with no non-null score, duration or purchase yet */
    const gd_tabledef *t = table("gaming_hourly_player_game_stats");
    gd_slot s[GD_MAX_COLS];
    memset(s, 0, sizeof s);
    s[0].n = 2; /* two records */
    gd_value v;
    v = column(t, s, 0);
    assert_int_equal(v.t, GD_V_INT);
    assert_int_equal(v.i, 2);
    v = column(t, s, 1); /* SUM of nothing is 0 */
    assert_int_equal(v.t, GD_V_INT);
    assert_int_equal(v.i, 0);
    assert_int_equal(column(t, s, 2).t, GD_V_NULL); /* AVG of nothing is null */
    assert_int_equal(column(t, s, 3).t, GD_V_NULL); /* MAX of nothing is null */
    v = column(t, s, 5); /* SUM of doubles: 0.0 */
    assert_int_equal(v.t, GD_V_DBL);
    assert_true(v.d == 0.0);
    /* AVG = sum / count of non-null values */
    s[2].n = 4;
    s[2].v.d = 10.0;
    v = column(t, s, 2);
    assert_int_equal(v.t, GD_V_DBL);
    assert_true(v.d == 2.5);
}

static void data_quality_rates_are_percentages(void **state)
{
    (void)state;
    const gd_tabledef *t = table("gaming_data_quality_5min");
    gd_slot s[GD_MAX_COLS];
    memset(s, 0, sizeof s);
    s[0].n = 8; /* total */
    s[1].n = 6; /* with game_name */
    s[2].n = 1; /* with username */
    assert_true(column(t, s, 3).d == 75.0);
    assert_true(column(t, s, 4).d == 12.5);
    s[0].n = 0;
    assert_int_equal(column(t, s, 3).t, GD_V_NULL);
}

static void top_performers_row_exists_only_above_1000(void **state)
{
    (void)state;
    const gd_tabledef *t = table("gaming_top_performers_hourly");
    gd_slot s[GD_MAX_COLS];
    memset(s, 0, sizeof s);
    s[1].v.i = 1000;
    assert_false(visible(t, s)); /* > 1000, not >= */
    s[1].v.i = 1001;
    assert_true(visible(t, s));
    assert_true(visible(table("gaming_revenue_analytics"), s)); /* no HAVING */
}

static void release(gd_dict *d, gd_idset *set)
{
    for (uint32_t i = 0; set && i < set->cap; i++)
        if (set->slots[i]) gd_dict_unref(d, set->slots[i] - 1);
    if (set) gd_idset_free(set);
}

static void rows_round_trip_through_the_codec(void **state)
{
    (void)state;
    const gd_tabledef *t = table("gaming_active_players_5min");
    gd_arena arena;
    gd_arena_init(&arena);
    gd_dict dict;
    gd_dict_init(&dict);
    gd_slot in[GD_MAX_COLS], out[GD_MAX_COLS];
    memset(in, 0, sizeof in);
    in[0].x.s = gd_str_c("Neon Arena");
    in[1].n = 2;
    gd_idset set = {0};
    uint32_t p1 = gd_dict_intern(&dict, gd_str_c("p1")), p2 = gd_dict_intern(&dict, gd_str_c("p2"));
    assert_true(gd_idset_add(&set, p1));
    assert_true(gd_idset_add(&set, p2));
    assert_false(gd_idset_add(&set, p1));
    gd_dict_ref(&dict, p1);
    gd_dict_ref(&dict, p2);
    in[1].x.set = &set;
    in[2].n = 3;
    in[3].n = 2;
    in[3].v.d = 90;
    gd_buf row = {0};
    gd_row_encode(t, in, &dict, &row, NULL); /* the sets inline, as rows before the split had them */
    assert_int_equal(gd_row_decode(t, row.p, row.len, out), GD_OK);
    assert_true(gd_str_eq(out[0].x.s, gd_str_c("Neon Arena")));
    assert_int_equal(column(t, out, 1).i, 2);
    assert_true(column(t, out, 3).d == 45.0);
    /* the full decode brings the distinct set back, as interned ids */
    gd_str whole = {row.p, (uint32_t)row.len};
    assert_int_equal(gd_row_decode_full(t, whole, GD_STR_NULL, out, &arena, &dict), GD_OK);
    assert_int_equal(out[1].x.set->count, 2);
    assert_true(gd_idset_has(out[1].x.set, p2));
    assert_int_equal(dict.refs[p2], 2); /* both sets hold it */
    assert_false(gd_idset_has(out[1].x.set, gd_dict_intern(&dict, gd_str_c("p3"))));
    release(&dict, out[1].x.set);
    /* a truncated row is refused, not misread */
    assert_int_equal(gd_row_decode(t, row.p, 10, out), GD_ERR);
    assert_int_equal(gd_row_decode_full(t, (gd_str){row.p, (uint32_t)row.len - 1}, GD_STR_NULL, out, &arena, &dict),
                     GD_ERR);
    release(&dict, out[1].x.set);
    /* the sets apart from the head, as rows are stored now: the same slots */
    gd_buf head = {0}, sets = {0};
    gd_row_encode(t, in, &dict, &head, &sets);
    assert_true(head.len + sets.len == row.len && !memcmp(head.p, row.p, head.len));
    assert_int_equal(gd_row_decode_full(t, (gd_str){head.p, (uint32_t)head.len}, (gd_str){sets.p, (uint32_t)sets.len},
                                        out, &arena, &dict), GD_OK);
    assert_int_equal(out[1].x.set->count, 2);
    assert_true(column(t, out, 3).d == 45.0);
    release(&dict, out[1].x.set);
    gd_buf_free(&head);
    gd_buf_free(&sets);
    release(&dict, &set);
    assert_int_equal(gd_dict_size(&dict), 1); /* only p3, never referenced, is left */
    gd_buf_free(&row);
    gd_dict_free(&dict);
    gd_arena_free(&arena);
}

static void null_latest_survives_the_codec(void **state)
{
    (void)state;
    const gd_tabledef *t = table("gaming_processing_lag_1min");
    gd_slot in[GD_MAX_COLS], out[GD_MAX_COLS];
    memset(in, 0, sizeof in);
    gd_buf row = {0};
    gd_row_encode(t, in, NULL, &row, NULL);
    assert_int_equal(gd_row_decode(t, row.p, row.len, out), GD_OK);
    assert_int_equal(column(t, out, 0).t, GD_V_NULL);
    gd_buf_free(&row);
}

/* ---- session windows (store/session.c), worked by hand: gap 10 ms ---- */

typedef struct {
    const gd_tabledef *t;
    int calls, merged;
    int64_t starts[4];
} gone_log;

static void log_gone(void *ctx, int64_t start, gd_str key, gd_session *merged)
{
    gone_log *g = ctx;
    assert_true(gd_str_eq(key, gd_str_c("g")));
    assert_true(g->calls < 4);
    g->starts[g->calls++] = start;
    if (merged) {
        g->merged++;
        gd_session_free(g->t, merged, NULL);
    }
}

static gd_tabledef session_table(void)
{
    gd_tabledef t = {.name = "s", .kind = GD_TABLE_WINDOWED, .window_ms = 10, .session = true, .nslots = 4, .ncols = 3};
    t.cols[0] = (gd_coldef){.name = "n", .agg = GD_AGG_COUNT_STAR, .type = GD_T_BIGINT, .field = -1};
    t.cols[1] = (gd_coldef){.name = "last", .agg = GD_AGG_LATEST, .type = GD_T_STRING, .field = -1};
    t.cols[2] = (gd_coldef){.name = "first", .agg = GD_AGG_EARLIEST, .type = GD_T_STRING, .field = -1};
    t.cols[3] = (gd_coldef){.agg = GD_AGG_MAX_INT, .type = GD_T_BIGINT, .field = -1};
    t.session_end = 3;
    return t;
}

/* A record at ts with string value v into group g's sessions. */
static gd_session *session_record(const gd_tabledef *t, gd_map *sessions, int64_t ts, const char *v,
                                  int64_t stream_time, gone_log *gone)
{
    gd_session *s = gd_sessions_join(t, sessions, gd_str_c("g"), ts, 5, stream_time, NULL, log_gone, gone);
    if (!s) return NULL;
    for (int c = 0; c < 3; c++)
        gd_slot_update(&t->cols[c], &s->slots[c], (gd_value){.t = GD_V_STR, .s = gd_str_c(v)}, &s->arena, NULL);
    return s;
}

/* Group g's sessions, latest first. */
static gd_session *sessions_of_g(gd_map *sessions) { return gd_map_get(sessions, gd_str_c("g")); }

static int sessions_in(gd_map *sessions)
{
    int n = 0;
    for (gd_session *s = sessions_of_g(sessions); s; s = s->next) n++;
    return n;
}

static void sessions_merge_when_a_record_bridges_them(void **state)
{
    (void)state;
    gd_tabledef t = session_table();
    gone_log gone = {.t = &t};
    gd_map sessions;
    gd_map_init(&sessions, NULL);
    session_record(&t, &sessions, 0, "a", 0, &gone);
    gd_session *s = session_record(&t, &sessions, 5, "b", 5, &gone); /* 5 <= 0 + gap: joins */
    assert_int_equal(sessions_in(&sessions), 1);
    assert_int_equal(s->start, 0);
    assert_int_equal(s->end, 5);
    session_record(&t, &sessions, 20, "c", 20, &gone); /* 20 - 5 > gap: a session of its own */
    assert_int_equal(sessions_in(&sessions), 2);
    assert_int_equal(sessions_of_g(&sessions)->start, 20); /* latest first */
    assert_int_equal(gone.calls, 0);
    /* 12 is within the gap of both (12 - 5 and 20 - 12 <= 10): one session
     * [0, 20] of four records; the later one's row is gone */
    s = session_record(&t, &sessions, 12, "d", 20, &gone);
    assert_int_equal(sessions_in(&sessions), 1);
    assert_int_equal(s->start, 0);
    assert_int_equal(s->end, 20);
    assert_int_equal(gone.calls, 1);
    assert_int_equal(gone.merged, 1);
    assert_int_equal(gone.starts[0], 20);
    assert_int_equal(column(&t, s->slots, 0).i, 4);
    assert_true(gd_str_eq(column(&t, s->slots, 1).s, gd_str_c("d")));  /* latest: the record applied last */
    assert_true(gd_str_eq(column(&t, s->slots, 2).s, gd_str_c("a")));  /* earliest: the earlier session's */
    assert_int_equal(s->slots[t.session_end].v.i, 20);
    /* an earlier record moves the start: the row at the old start is gone */
    s = session_record(&t, &sessions, -3, "e", 20, &gone);
    assert_int_equal(s->start, -3);
    assert_int_equal(gone.calls, 2);
    assert_int_equal(gone.merged, 1);
    assert_int_equal(gone.starts[1], 0);
    assert_int_equal(gd_sessions_close(&t, &sessions, 5, INT64_MAX, NULL, NULL, NULL), INT64_MAX); /* all closed: freed */
    assert_int_equal(sessions_in(&sessions), 0);
    gd_map_free(&sessions);
}

static void sessions_are_late_once_their_grace_passed(void **state)
{
    (void)state;
    gd_tabledef t = session_table();
    gone_log gone = {.t = &t};
    gd_map sessions;
    gd_map_init(&sessions, NULL);
    session_record(&t, &sessions, 100, "a", 100, &gone);
    /* alone, 90 would end 14 before the stream time (grace 5): late; but
     * within the gap of the session at 100 it joins it (end 100, 4 before) */
    assert_non_null(session_record(&t, &sessions, 90, "b", 104, &gone));
    assert_null(session_record(&t, &sessions, 70, "c", 104, &gone)); /* 70 + 10 < 90: alone, late */
    assert_null(session_record(&t, &sessions, 95, "d", 106, &gone)); /* joins one that ended 6 before */
    assert_int_equal(sessions_in(&sessions), 1);
    assert_int_equal(column(&t, sessions_of_g(&sessions)->slots, 0).i, 2);
    /* closed once no record within its gap can come in its grace: at 116 */
    assert_int_equal(gd_sessions_close(&t, &sessions, 5, 115, NULL, NULL, NULL), 90);
    assert_int_equal(gd_sessions_close(&t, &sessions, 5, 116, NULL, NULL, NULL), INT64_MAX);
    assert_int_equal(sessions_in(&sessions), 0);
    /* ... unless a record may bridge it to an open later session: [90, 100]
     * and [120, 130] (120 - 10 <= 100 + 10) stay while the later is open */
    session_record(&t, &sessions, 90, "a", 90, &gone);
    session_record(&t, &sessions, 100, "b", 100, &gone);
    session_record(&t, &sessions, 120, "c", 120, &gone);
    session_record(&t, &sessions, 130, "d", 130, &gone);
    assert_int_equal(sessions_in(&sessions), 2);
    assert_int_equal(gd_sessions_close(&t, &sessions, 5, 130, NULL, NULL, NULL), 90);
    assert_int_equal(sessions_in(&sessions), 2);
    assert_int_equal(gd_sessions_close(&t, &sessions, 5, 146, NULL, NULL, NULL), INT64_MAX); /* 130 + 10 + 5 < 146 */
    /* [90, 100] and [121, 121]: no record reaches both, so the earlier closes alone */
    session_record(&t, &sessions, 90, "a", 90, &gone);
    session_record(&t, &sessions, 100, "b", 100, &gone);
    session_record(&t, &sessions, 121, "c", 121, &gone);
    assert_int_equal(gd_sessions_close(&t, &sessions, 5, 121, NULL, NULL, NULL), 121);
    assert_int_equal(sessions_in(&sessions), 1);
    gd_sessions_close(&t, &sessions, 5, INT64_MAX, NULL, NULL, NULL);
    gd_map_free(&sessions);
}

/* ---- ARRAY and MAP aggregates (expectations from ksqlDB's functional
 * tests: topk-group-by.json, topk-distinct.json, collect-list.json,
 * collect-set.json, histogram.json) ---- */

static gd_coldef list_col(gd_agg agg, gd_coltype type, int limit)
{
    return (gd_coldef){.name = "l", .agg = agg, .type = type, .field = -1, .limit = (uint16_t)limit};
}

/* The slot's value as JSON, compared with want. */
static void assert_renders(const gd_coldef *c, const gd_slot *s, const char *want)
{
    gd_buf b = {0};
    gd_json_put_value(&b, gd_slot_value(c, s));
    gd_buf_putc(&b, 0);
    assert_string_equal(b.p, want);
    gd_buf_free(&b);
}

static gd_value I(int64_t i) { return (gd_value){.t = GD_V_INT, .i = i}; }
static gd_value D(double d) { return (gd_value){.t = GD_V_DBL, .d = d}; }
static gd_value S(const char *s) { return (gd_value){.t = GD_V_STR, .s = gd_str_c(s)}; }
static const gd_value NUL = {.t = GD_V_NULL};

static void topk_keeps_the_k_greatest_greatest_first(void **state)
{
    (void)state;
    gd_arena arena;
    gd_arena_init(&arena);
    gd_coldef top = list_col(GD_AGG_TOPK, GD_T_ARRAY_INTEGER, 3), dist = list_col(GD_AGG_TOPK_DISTINCT, GD_T_ARRAY_INTEGER, 3);
    gd_slot a = {0}, b = {0};
    const int64_t in[] = {0, 100, 99, 7, 100};
    const char *want_top[] = {"[0]", "[100,0]", "[100,99,0]", "[100,99,7]", "[100,100,99]"};
    const char *want_dist[] = {"[0]", "[100,0]", "[100,99,0]", "[100,99,7]", "[100,99,7]"};
    for (int i = 0; i < 5; i++) {
        gd_slot_update(&top, &a, I(in[i]), &arena, NULL);
        gd_slot_update(&dist, &b, I(in[i]), &arena, NULL);
        assert_renders(&top, &a, want_top[i]);
        assert_renders(&dist, &b, want_dist[i]);
    }
    gd_slot_update(&top, &a, NUL, &arena, NULL); /* NULLs are skipped */
    assert_renders(&top, &a, "[100,100,99]");
    /* strings: a b c b d */
    gd_slot c = {0}, d = {0};
    gd_coldef stop = list_col(GD_AGG_TOPK, GD_T_ARRAY_STRING, 3), sdist = list_col(GD_AGG_TOPK_DISTINCT, GD_T_ARRAY_STRING, 3);
    const char *sin[] = {"a", "b", "c", "b", "d"};
    const char *want_s[] = {"[\"a\"]", "[\"b\",\"a\"]", "[\"c\",\"b\",\"a\"]", "[\"c\",\"b\",\"b\"]", "[\"d\",\"c\",\"b\"]"};
    const char *want_sd[] = {"[\"a\"]", "[\"b\",\"a\"]", "[\"c\",\"b\",\"a\"]", "[\"c\",\"b\",\"a\"]", "[\"d\",\"c\",\"b\"]"};
    for (int i = 0; i < 5; i++) {
        gd_slot_update(&stop, &c, S(sin[i]), &arena, NULL);
        gd_slot_update(&sdist, &d, S(sin[i]), &arena, NULL);
        assert_renders(&stop, &c, want_s[i]);
        assert_renders(&sdist, &d, want_sd[i]);
    }
    /* doubles, and a whole number into an ARRAY<DOUBLE> */
    gd_coldef dbl = list_col(GD_AGG_TOPK, GD_T_ARRAY_DOUBLE, 2);
    gd_slot e = {0};
    gd_slot_update(&dbl, &e, D(100.5), &arena, NULL);
    gd_slot_update(&dbl, &e, I(200), &arena, NULL);
    gd_slot_update(&dbl, &e, D(99.9), &arena, NULL);
    assert_renders(&dbl, &e, "[200.0,100.5]");
    /* no value yet: an empty ARRAY, as ksqlDB's initial aggregate */
    gd_slot none = {0};
    assert_renders(&top, &none, "[]");
    gd_arena_free(&arena);
}

static void collections_keep_nulls_and_stop_at_their_limit(void **state)
{
    (void)state;
    gd_arena arena;
    gd_arena_init(&arena);
    gd_coldef list = list_col(GD_AGG_COLLECT_LIST, GD_T_ARRAY_DOUBLE, 1000),
              set = list_col(GD_AGG_COLLECT_SET, GD_T_ARRAY_DOUBLE, 1000);
    gd_slot l = {0}, s = {0};
    const gd_value in[] = {D(500.9), D(300.8), NUL, D(300.8), NUL}; /* collect_list / collect_set decimal */
    for (int i = 0; i < 5; i++) {
        gd_slot_update(&list, &l, in[i], &arena, NULL);
        gd_slot_update(&set, &s, in[i], &arena, NULL);
    }
    assert_renders(&list, &l, "[500.9,300.8,null,300.8,null]");
    assert_renders(&set, &s, "[500.9,300.8,null]");
    /* collect_list with limit of 1 */
    gd_coldef one = list_col(GD_AGG_COLLECT_LIST, GD_T_ARRAY_INTEGER, 1);
    gd_slot o = {0};
    gd_slot_update(&one, &o, I(0), &arena, NULL);
    gd_slot_update(&one, &o, I(100), &arena, NULL);
    assert_renders(&one, &o, "[0]");
    /* booleans and strings are elements too */
    gd_coldef bools = list_col(GD_AGG_COLLECT_SET, GD_T_ARRAY_BOOLEAN, 1000);
    gd_slot bs = {0};
    gd_slot_update(&bools, &bs, (gd_value){.t = GD_V_BOOL, .i = 1}, &arena, NULL);
    gd_slot_update(&bools, &bs, (gd_value){.t = GD_V_BOOL, .i = 1}, &arena, NULL);
    gd_slot_update(&bools, &bs, (gd_value){.t = GD_V_BOOL, .i = 0}, &arena, NULL);
    assert_renders(&bools, &bs, "[true,false]");
    /* the default limit: 1,000 values, the rest ignored */
    gd_coldef strs = list_col(GD_AGG_COLLECT_SET, GD_T_ARRAY_STRING, GD_LIST_MAX_ELEMS);
    gd_slot st = {0};
    char name[16];
    for (int i = 0; i < 1500; i++) {
        snprintf(name, sizeof name, "v%d", i);
        gd_slot_update(&strs, &st, S(name), &arena, NULL);
    }
    assert_int_equal(st.n, 1000);
    gd_arena_free(&arena);
}

static void histogram_counts_strings_up_to_1000(void **state)
{
    (void)state;
    gd_arena arena;
    gd_arena_init(&arena);
    gd_coldef h = list_col(GD_AGG_HISTOGRAM, GD_T_MAP_STRING_BIGINT, GD_LIST_MAX_ELEMS);
    gd_slot a = {0}, b = {0};
    gd_slot_update(&h, &a, S("foo"), &arena, NULL);
    gd_slot_update(&h, &a, S("bar"), &arena, NULL);
    assert_renders(&h, &a, "{\"foo\":1,\"bar\":1}");
    gd_slot_update(&h, &b, S("baz"), &arena, NULL);
    gd_slot_update(&h, &b, S("baz"), &arena, NULL);
    gd_slot_update(&h, &b, NUL, &arena, NULL); /* a JSON object has no null key: skipped */
    gd_slot_update(&h, &b, S("foo"), &arena, NULL);
    assert_renders(&h, &b, "{\"baz\":2,\"foo\":1}");
    char name[16];
    for (int i = 0; i < 1200; i++) {
        snprintf(name, sizeof name, "s%d", i);
        gd_slot_update(&h, &b, S(name), &arena, NULL);
    }
    assert_int_equal(b.n, 1000); /* new strings past 1,000 are ignored ... */
    gd_slot_update(&h, &b, S("baz"), &arena, NULL); /* ... counted ones still count */
    gd_buf out = {0};
    gd_json_put_value(&out, gd_slot_value(&h, &b));
    gd_buf_putc(&out, 0);
    assert_non_null(strstr(out.p, "{\"baz\":3,\"foo\":1,\"s0\":1,"));
    assert_null(strstr(out.p, "\"s998\""));
    gd_buf_free(&out);
    gd_arena_free(&arena);
}

/* A table of list columns beside a string and a count. */
static gd_tabledef lists_table(void)
{
    gd_tabledef t;
    memset(&t, 0, sizeof t);
    t.name = "lists";
    t.kind = GD_TABLE_WINDOWED;
    t.cols[0] = (gd_coldef){.name = "n", .agg = GD_AGG_COUNT_STAR, .type = GD_T_BIGINT, .field = -1};
    t.cols[1] = list_col(GD_AGG_COLLECT_LIST, GD_T_ARRAY_STRING, GD_LIST_MAX_ELEMS);
    t.cols[2] = (gd_coldef){.name = "last", .agg = GD_AGG_LATEST, .type = GD_T_STRING, .field = -1};
    t.cols[3] = list_col(GD_AGG_HISTOGRAM, GD_T_MAP_STRING_BIGINT, GD_LIST_MAX_ELEMS);
    t.cols[4] = list_col(GD_AGG_TOPK, GD_T_ARRAY_BIGINT, 2);
    t.ncols = t.nslots = 5;
    return t;
}

static void lists_round_trip_through_the_codec(void **state)
{
    (void)state;
    gd_tabledef t = lists_table();
    gd_arena arena;
    gd_arena_init(&arena);
    gd_slot in[GD_MAX_COLS], out[GD_MAX_COLS];
    memset(in, 0, sizeof in);
    const char *words[] = {"a", "b\"q", "a"};
    for (int i = 0; i < 3; i++) {
        for (int c = 0; c < t.nslots; c++)
            gd_slot_update(&t.cols[c], &in[c], c == 4 ? I(i * 10) : S(words[i]), &arena, NULL);
    }
    gd_buf row = {0};
    gd_row_encode(&t, in, NULL, &row, NULL);
    /* the fixed part holds n and 0 for a list, never the arena's reservation */
    int64_t v;
    memcpy(&v, row.p + 16 + 8, 8);
    assert_int_equal(v, 0);
    assert_int_equal(gd_row_decode(&t, row.p, row.len, out), GD_OK);
    assert_int_equal(column(&t, out, 0).i, 3);
    assert_renders(&t.cols[1], &out[1], "[\"a\",\"b\\\"q\",\"a\"]");
    assert_true(gd_str_eq(out[2].x.s, gd_str_c("a")));
    assert_renders(&t.cols[3], &out[3], "{\"a\":2,\"b\\\"q\":1}");
    assert_renders(&t.cols[4], &out[4], "[20,10]");
    /* a decoded list is borrowed: changing it copies, the stored bytes stay */
    gd_buf copy = {0};
    gd_buf_put(&copy, row.p, row.len);
    gd_slot_update(&t.cols[3], &out[3], S("a"), &arena, NULL);
    gd_slot_update(&t.cols[1], &out[1], S("c"), &arena, NULL);
    gd_slot_update(&t.cols[4], &out[4], I(15), &arena, NULL);
    assert_memory_equal(copy.p, row.p, row.len);
    assert_renders(&t.cols[3], &out[3], "{\"a\":3,\"b\\\"q\":1}");
    assert_renders(&t.cols[1], &out[1], "[\"a\",\"b\\\"q\",\"a\",\"c\"]");
    assert_renders(&t.cols[4], &out[4], "[20,15]");
    /* the full decode (hot windows) copies the lists into the arena */
    gd_str whole = {row.p, (uint32_t)row.len};
    assert_int_equal(gd_row_decode_full(&t, whole, GD_STR_NULL, out, &arena, NULL), GD_OK);
    gd_slot_update(&t.cols[1], &out[1], S("d"), &arena, NULL);
    assert_renders(&t.cols[1], &out[1], "[\"a\",\"b\\\"q\",\"a\",\"d\"]");
    assert_memory_equal(copy.p, row.p, row.len);
    /* a truncated list is refused */
    assert_int_equal(gd_row_decode(&t, row.p, row.len - 1, out), GD_ERR);
    gd_buf_free(&copy);
    gd_buf_free(&row);
    gd_arena_free(&arena);
}

/* 200,000 records into one group: the arena holds about twice a list's
 * largest size, not a copy per record. */
static void a_groups_lists_stay_bounded(void **state)
{
    (void)state;
    gd_arena arena;
    gd_arena_init(&arena);
    gd_coldef list = list_col(GD_AGG_COLLECT_LIST, GD_T_ARRAY_STRING, GD_LIST_MAX_ELEMS),
              top = list_col(GD_AGG_TOPK, GD_T_ARRAY_STRING, 50),
              hist = list_col(GD_AGG_HISTOGRAM, GD_T_MAP_STRING_BIGINT, GD_LIST_MAX_ELEMS);
    gd_slot l = {0}, t = {0}, h = {0};
    char name[32];
    for (int i = 0; i < 200000; i++) {
        snprintf(name, sizeof name, "player_%07d", (int)((int64_t)i * 7919 % 1000003));
        gd_slot_update(&list, &l, S(name), &arena, NULL);
        gd_slot_update(&top, &t, S(name), &arena, NULL);
        gd_slot_update(&hist, &h, S(name + (i % 3)), &arena, NULL);
    }
    assert_int_equal(l.n, 1000);
    assert_int_equal(t.n, 50);
    assert_int_equal(h.n, 1000);
    size_t final = l.x.s.len + t.x.s.len + h.x.s.len;
    assert_true(arena.used_bytes < 4 * final + 65536);
    gd_arena_free(&arena);
}

/* Two sessions' lists merged (gd_slots_merge), worked by hand: the later
 * one's elements follow, a set keeps each once, TOPK keeps the greatest of
 * both, histogram counts add. */
static void lists_merge_as_sessions_do(void **state)
{
    (void)state;
    gd_arena arena;
    gd_arena_init(&arena);
    gd_tabledef t = {.name = "m", .kind = GD_TABLE_WINDOWED, .nslots = 4, .ncols = 4};
    t.cols[0] = list_col(GD_AGG_COLLECT_LIST, GD_T_ARRAY_STRING, 1000);
    t.cols[1] = list_col(GD_AGG_COLLECT_SET, GD_T_ARRAY_STRING, 1000);
    t.cols[2] = list_col(GD_AGG_TOPK, GD_T_ARRAY_INTEGER, 2);
    t.cols[3] = list_col(GD_AGG_HISTOGRAM, GD_T_MAP_STRING_BIGINT, 1000);
    gd_slot early[4] = {0}, late[4] = {0};
    const char *e_s[] = {"a", "b"}, *l_s[] = {"b", "c", "b"};
    const int64_t e_i[] = {5, 1}, l_i[] = {3, 9, 2};
    for (int i = 0; i < 2; i++)
        for (int c = 0; c < 4; c++) gd_slot_update(&t.cols[c], &early[c], c == 2 ? I(e_i[i]) : S(e_s[i]), &arena, NULL);
    for (int i = 0; i < 3; i++)
        for (int c = 0; c < 4; c++) gd_slot_update(&t.cols[c], &late[c], c == 2 ? I(l_i[i]) : S(l_s[i]), &arena, NULL);
    gd_slots_merge(&t, early, late, &arena, NULL);
    assert_renders(&t.cols[0], &early[0], "[\"a\",\"b\",\"b\",\"c\",\"b\"]");
    assert_renders(&t.cols[1], &early[1], "[\"a\",\"b\",\"c\"]");
    assert_renders(&t.cols[2], &early[2], "[9,5]");
    assert_renders(&t.cols[3], &early[3], "{\"a\":1,\"b\":3,\"c\":1}");
    gd_arena_free(&arena);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(window_start_is_floor_aligned_to_epoch),
        cmocka_unit_test(row_keys_sort_by_window_then_group),
        cmocka_unit_test(group_keys_split_back_into_columns),
        cmocka_unit_test(aggregates_follow_ksqldb_null_semantics),
        cmocka_unit_test(data_quality_rates_are_percentages),
        cmocka_unit_test(top_performers_row_exists_only_above_1000),
        cmocka_unit_test(rows_round_trip_through_the_codec),
        cmocka_unit_test(null_latest_survives_the_codec),
        cmocka_unit_test(sessions_merge_when_a_record_bridges_them),
        cmocka_unit_test(sessions_are_late_once_their_grace_passed),
        cmocka_unit_test(topk_keeps_the_k_greatest_greatest_first),
        cmocka_unit_test(collections_keep_nulls_and_stop_at_their_limit),
        cmocka_unit_test(histogram_counts_strings_up_to_1000),
        cmocka_unit_test(lists_round_trip_through_the_codec),
        cmocka_unit_test(a_groups_lists_stay_bounded),
        cmocka_unit_test(lists_merge_as_sessions_do),
    };
    return cmocka_run_group_tests(tests, load_catalog, free_catalog);
}
