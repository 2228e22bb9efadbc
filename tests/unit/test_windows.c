/* Unit tests: the hot-window engine over a real LMDB environment -- records
 * applied, flushed, and read back as the API reads them. Hand-worked cases
 * for latest-non-null, exact distinct counts, the has_purchase filter, null
 * group keys, lateness and the figures of the enriched record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../ingest/window.h"
#include "../../sql/sql.h"

enum { MIN = 60000, HOUR = 60 * MIN };
static const int64_t T0 = 1700000000000 - 1700000000000 % HOUR; /* an hour boundary */

typedef struct {
    char dir[64];
    gd_config cfg;
    gd_catalog cat;
    gd_store store;
    gd_refs refs;
    gd_windows win;
    MDB_txn *txn;
    int64_t stream_time;
    gd_arena scratch;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/gamingd-unit-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    char *argv[] = {"gamingd", NULL};
    if (gd_config_parse(&f->cfg, 1, argv)) return -1;
    gd_catalog_init(&f->cat, f->cfg.grace_ms);
    gd_sql_error err = {0};
    if (gd_sql_load_builtin(&f->cat, &err)) return -1;
    if (gd_store_open(&f->store, f->dir, 64 << 20) || gd_store_open_tables(&f->store, &f->cat)) return -1;
    gd_refs_init(&f->refs, &f->cat);
    gd_windows_init(&f->win, &f->cfg, &f->cat, GD_ALL_TABLES);
    f->stream_time = INT64_MIN;
    if (gd_store_begin_write(&f->store, &f->txn)) return -1;
    gd_game g = {.game_id = gd_str_c("g1"), .game_name = gd_str_c("Neon Arena"), .genre = gd_str_c("Action")};
    gd_refs_put_game(&f->refs, gd_str_c("g1"), &g);
    gd_game nogenre = {.game_id = gd_str_c("g2"), .game_name = gd_str_c("Quiet")};
    gd_refs_put_game(&f->refs, gd_str_c("g2"), &nogenre);
    gd_player p = {.player_id = gd_str_c("p1"), .username = gd_str_c("ann")};
    gd_refs_put_player(&f->refs, gd_str_c("p1"), &p);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->txn) mdb_txn_abort(f->txn);
    gd_windows_free(&f->win);
    gd_refs_free(&f->refs);
    gd_store_close(&f->store);
    gd_catalog_free(&f->cat);
    gd_arena_free(&f->scratch);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd)) return -1;
    gd_config_free(&f->cfg);
    free(f);
    return 0;
}

typedef struct {
    const char *player, *game, *session;
    int64_t ts;
    gd_int score, duration;
    gd_dbl purchase;
} act;

#define I(v) ((gd_int){true, v})
#define D(v) ((gd_dbl){true, v})

/* Applies one activity as the engine does; returns the enriched figures. */
static gd_enriched apply(fixture *f, act in, bool *late)
{
    static gd_activity a; /* the enriched record points at it */
    memset(&a, 0, sizeof a);
    a.player_id = gd_str_c(in.player);
    a.game_id = gd_str_c(in.game);
    a.session_id = gd_str_c(in.session);
    a.activity_type = gd_str_c("match_end");
    a.activity_timestamp = in.ts;
    a.score = in.score;
    a.duration_seconds = in.duration;
    a.in_game_purchases = in.purchase;
    if (in.ts > f->stream_time) f->stream_time = in.ts;
    gd_enriched e;
    gd_enrich(&e, &a, &f->refs, in.ts + 5);
    bool l = gd_windows_apply(&f->win, &e, f->stream_time, &f->store, f->txn);
    if (late) *late = l;
    return e;
}

/* Flushes and reads one row back; false when absent or hidden by HAVING. */
static bool row(fixture *f, const char *name, int64_t window, const char *k1, const char *k2,
                gd_slot *slots)
{
    assert_int_equal(gd_windows_flush(&f->win, &f->store, f->txn, f->stream_time, gd_now_ms()), GD_OK);
    const gd_tabledef *t = gd_catalog_tabledef(&f->cat, gd_str_c(name));
    gd_buf g = {0}, key = {0};
    if (k1) gd_groupkey_append(&g, gd_str_c(k1));
    if (k2) gd_groupkey_append(&g, gd_str_c(k2));
    gd_rowkey_encode(&key, window, (gd_str){g.p, (uint32_t)g.len});
    gd_str val, keys[GD_MAX_KEYS] = {gd_str_c(k1 ? k1 : ""), gd_str_c(k2 ? k2 : "")};
    gd_row r;
    bool found = gd_store_row_get(&f->store, f->txn, t, (gd_str){key.p, (uint32_t)key.len}, &val) == GD_OK &&
                 gd_row_decode(t, val.p, val.len, slots) == GD_OK &&
                 gd_row_compute(t, keys, window, slots, &r, &f->scratch);
    gd_buf_free(&g);
    gd_buf_free(&key);
    return found;
}

static gd_value col(fixture *f, const char *table, const gd_slot *slots, const char *name)
{
    const gd_tabledef *t = gd_catalog_tabledef(&f->cat, gd_str_c(table));
    static const gd_str keys[GD_MAX_KEYS] = {{"k", 1}, {"k", 1}};
    for (int c = 0; c < t->ncols; c++)
        if (!strcmp(t->cols[c].name, name)) return gd_row_column(t, keys, 0, slots, c, &f->scratch);
    fail_msg("no column %s", name);
    return (gd_value){0};
}

static void hourly_stats_aggregate_and_feed_the_enriched_record(void **state)
{
    fixture *f = *state;
    apply(f, (act){"p1", "g1", "s1", T0 + 1000, I(100), I(60), D(0)}, NULL);
    apply(f, (act){"p1", "g1", "s1", T0 + 2000, {0}, I(30), {0}}, NULL); /* null score */
    gd_enriched e = apply(f, (act){"p1", "g1", "s2", T0 + 3000, I(300), {0}, D(4.5)}, NULL);
    /* figures: this record included */
    assert_true(e.total_sessions_1h.set);
    assert_int_equal(e.total_sessions_1h.v, 3);
    assert_true(e.avg_score_1h.v == 200.0); /* (100 + 300) / 2 non-null */
    assert_int_equal(e.active_players_count.v, 1);
    gd_slot s[GD_MAX_COLS];
    const char *t = "gaming_hourly_player_game_stats";
    assert_true(row(f, t, T0, "p1", "g1", s));
    assert_int_equal(col(f, t, s, "total_sessions_1h").i, 3);
    assert_int_equal(col(f, t, s, "total_duration_1h").i, 90);
    assert_int_equal(col(f, t, s, "max_score_1h").i, 300);
    assert_true(col(f, t, s, "total_purchases_1h").d == 4.5);
    assert_int_equal(col(f, t, s, "unique_sessions_1h").i, 2);
}

static void distinct_counts_are_exact_and_latest_keeps_last_non_null(void **state)
{
    fixture *f = *state;
    apply(f, (act){"p1", "g1", "s1", T0 + 1000, I(1), I(1), {0}}, NULL);
    apply(f, (act){"p2", "g1", "s1", T0 + 2000, I(1), I(1), {0}}, NULL);
    apply(f, (act){"p1", "g1", "s1", T0 + 3000, I(1), I(1), {0}}, NULL);
    /* the game loses its name: latest stays the last non-null one */
    gd_game renamed = {.game_id = gd_str_c("g1")};
    gd_refs_put_game(&f->refs, gd_str_c("g1"), &renamed);
    apply(f, (act){"p3", "g1", NULL, T0 + 4000, I(1), I(1), {0}}, NULL);
    gd_slot s[GD_MAX_COLS];
    const char *t = "gaming_active_players_5min";
    assert_true(row(f, t, T0, "g1", NULL, s));
    assert_int_equal(col(f, t, s, "active_players_count").i, 3);
    assert_int_equal(col(f, t, s, "total_activities").i, 4);
    gd_value name = col(f, t, s, "game_name");
    assert_int_equal(name.t, GD_V_STR);
    assert_true(gd_str_eq(name.s, gd_str_c("Neon Arena")));
    /* the null session is not a distinct value */
    assert_true(row(f, "gaming_hourly_player_game_stats", T0, "p3", "g1", s));
    assert_int_equal(col(f, "gaming_hourly_player_game_stats", s, "unique_sessions_1h").i, 0);
}

static void purchases_only_tables_skip_records_without_purchase(void **state)
{
    fixture *f = *state;
    apply(f, (act){"p1", "g1", "s1", T0 + 1000, I(1), I(1), D(0)}, NULL);
    apply(f, (act){"p1", "g1", "s1", T0 + 2000, I(1), I(1), {0}}, NULL);
    gd_slot s[GD_MAX_COLS];
    assert_false(row(f, "gaming_revenue_analytics", T0, "g1", NULL, s));
    apply(f, (act){"p1", "g1", "s1", T0 + 3000, I(1), I(1), D(2.5)}, NULL);
    apply(f, (act){"p1", "g1", "s1", T0 + 4000, I(1), I(1), D(1.5)}, NULL);
    const char *t = "gaming_revenue_analytics";
    assert_true(row(f, t, T0, "g1", NULL, s));
    assert_int_equal(col(f, t, s, "total_purchase_events").i, 2);
    assert_true(col(f, t, s, "total_revenue").d == 4.0);
    assert_true(col(f, t, s, "avg_purchase_value").d == 2.0);
    assert_int_equal(col(f, t, s, "unique_paying_users").i, 1);
}

static void null_group_keys_are_skipped(void **state)
{
    fixture *f = *state;
    apply(f, (act){"p1", "g2", "s1", T0 + 1000, I(1), I(1), {0}}, NULL); /* g2 has no genre */
    apply(f, (act){"p1", "gx", "s1", T0 + 1000, I(1), I(1), {0}}, NULL); /* unknown game */
    gd_slot s[GD_MAX_COLS];
    assert_false(row(f, "gaming_genre_engagement", T0, "", NULL, s));
    /* the data quality row counts both, and neither enrichment of gx */
    const char *t = "gaming_data_quality_5min";
    assert_true(row(f, t, T0, NULL, NULL, s));
    assert_int_equal(col(f, t, s, "total_records").i, 2);
    assert_int_equal(col(f, t, s, "records_with_game_name").i, 1);
    assert_true(col(f, t, s, "game_enrichment_rate").d == 50.0);
}

static void late_records_update_nothing_and_carry_figures_as_they_stand(void **state)
{
    fixture *f = *state;
    apply(f, (act){"p1", "g1", "s1", T0 + 1000, I(10), I(1), {0}}, NULL);
    bool late;
    /* stream time moves 24 h + 1 h on: the hour at T0 closes (1h + 23h grace) */
    apply(f, (act){"p1", "g1", "s1", T0 + 25 * HOUR, I(1), I(1), {0}}, &late);
    assert_false(late);
    assert_int_equal(gd_windows_flush(&f->win, &f->store, f->txn, f->stream_time, gd_now_ms()), GD_OK);
    gd_enriched e = apply(f, (act){"p1", "g1", "s1", T0 + 2000, I(50), I(1), {0}}, &late);
    assert_true(late);
    assert_int_equal(e.total_sessions_1h.v, 1); /* without the late record */
    assert_true(e.avg_score_1h.v == 10.0);
    gd_slot s[GD_MAX_COLS];
    assert_true(row(f, "gaming_hourly_player_game_stats", T0, "p1", "g1", s));
    assert_int_equal(col(f, "gaming_hourly_player_game_stats", s, "total_sessions_1h").i, 1);
    /* a late record for a group that never existed carries nulls */
    e = apply(f, (act){"p9", "g1", "s1", T0 + 2000, I(50), I(1), {0}}, &late);
    assert_true(late);
    assert_false(e.total_sessions_1h.set);
    assert_false(e.avg_score_1h.set);
}

static void records_just_inside_the_grace_still_count(void **state)
{
    fixture *f = *state;
    apply(f, (act){"p1", "g1", "s1", T0 + 24 * HOUR - 1, I(1), I(1), {0}}, NULL);
    bool late;
    apply(f, (act){"p1", "g1", "s1", T0 + 1, I(1), I(1), {0}}, &late); /* end + grace = T0 + 24h */
    assert_false(late);
    apply(f, (act){"p1", "g1", "s1", T0 + 24 * HOUR, I(1), I(1), {0}}, NULL);
    apply(f, (act){"p1", "g1", "s1", T0 + 2, I(1), I(1), {0}}, &late); /* now stream time = end + grace */
    assert_true(late);
}

static void windows_that_left_memory_are_read_back(void **state)
{
    fixture *f = *state;
    apply(f, (act){"p1", "g1", "s1", T0 + 1000, I(10), I(60), {0}}, NULL);
    apply(f, (act){"p2", "g1", "s2", T0 + 2000, I(20), I(60), {0}}, NULL);
    /* two hours on: the windows at T0 leave memory (past GD_HOT_MS), still
     * inside their grace, at the flush after the one that wrote them */
    apply(f, (act){"p3", "g1", "s3", T0 + 2 * HOUR, I(1), I(1), {0}}, NULL);
    for (int i = 0; i < 2; i++)
        assert_int_equal(gd_windows_flush(&f->win, &f->store, f->txn, f->stream_time, gd_now_ms()), GD_OK);
    bool late;
    gd_enriched e = apply(f, (act){"p1", "g1", "s9", T0 + 3000, I(30), I(60), {0}}, &late);
    assert_false(late);
    assert_int_equal(e.total_sessions_1h.v, 2); /* the stored record and this one */
    assert_true(e.avg_score_1h.v == 20.0);
    assert_int_equal(e.active_players_count.v, 2); /* p1 and p2, p1 counted once */
    gd_slot s[GD_MAX_COLS];
    const char *t = "gaming_hourly_player_game_stats";
    assert_true(row(f, t, T0, "p1", "g1", s));
    assert_int_equal(col(f, t, s, "total_sessions_1h").i, 2);
    assert_int_equal(col(f, t, s, "unique_sessions_1h").i, 2); /* s1 from the store, s9 */
    assert_true(row(f, "gaming_active_players_5min", T0, "g1", NULL, s));
    assert_int_equal(col(f, "gaming_active_players_5min", s, "total_activities").i, 3);
    assert_int_equal(col(f, "gaming_active_players_5min", s, "active_players_count").i, 2);
}

/* The engine applies records while the last commit is still being made,
 * reading groups that left memory through a snapshot of the commit before
 * it: a window written at a flush must stay in memory until the next. */
static void a_window_stays_in_memory_until_the_flush_after_its_last_write(void **state)
{
    fixture *f = *state;
    MDB_txn *before;
    assert_int_equal(gd_store_begin_read(&f->store, &before), GD_OK); /* sees no row */
    apply(f, (act){"p1", "g1", "s1", T0 + 1000, I(10), I(60), {0}}, NULL);
    apply(f, (act){"p3", "g1", "s3", T0 + 2 * HOUR, I(1), I(1), {0}}, NULL); /* T0's windows are cold */
    assert_int_equal(gd_windows_flush(&f->win, &f->store, f->txn, f->stream_time, gd_now_ms()), GD_OK);
    assert_int_equal(gd_store_commit(f->txn), GD_OK); /* as if still under way: `before` does not see it */
    f->txn = before;
    gd_enriched e = apply(f, (act){"p1", "g1", "s9", T0 + 3000, I(30), I(60), {0}}, NULL);
    assert_int_equal(e.total_sessions_1h.v, 2); /* s1 from memory, s9 */
    assert_true(e.avg_score_1h.v == 20.0);
}

static void a_stored_row_that_does_not_decode_starts_its_group_over_at_start(void **state)
{
    fixture *f = *state;
    apply(f, (act){"p1", "g1", "s1", T0 + 1000, I(10), I(60), {0}}, NULL);
    apply(f, (act){"p2", "g1", "s2", T0 + 1000, I(10), I(60), {0}}, NULL);
    assert_int_equal(gd_windows_flush(&f->win, &f->store, f->txn, f->stream_time, gd_now_ms()), GD_OK);
    /* p1's row damaged in the store; the windows read back as at a start */
    const gd_tabledef *t = gd_catalog_tabledef(&f->cat, gd_str_c("gaming_hourly_player_game_stats"));
    gd_buf g = {0}, key = {0};
    gd_groupkey_append(&g, gd_str_c("p1"));
    gd_groupkey_append(&g, gd_str_c("g1"));
    gd_rowkey_encode(&key, T0, (gd_str){g.p, (uint32_t)g.len});
    assert_int_equal(gd_store_row_put(&f->store, f->txn, t, (gd_str){key.p, (uint32_t)key.len}, gd_str_c("x")), GD_OK);
    gd_buf_free(&g);
    gd_buf_free(&key);
    gd_windows_free(&f->win);
    gd_windows_init(&f->win, &f->cfg, &f->cat, GD_ALL_TABLES);
    assert_int_equal(gd_windows_load(&f->win, &f->store, f->txn, f->stream_time), GD_OK);
    /* p1's group starts over: this record is its first; p2's is intact */
    gd_enriched e = apply(f, (act){"p1", "g1", "s3", T0 + 2000, I(30), I(60), {0}}, NULL);
    assert_int_equal(e.total_sessions_1h.v, 1);
    gd_slot s[GD_MAX_COLS];
    const char *name = "gaming_hourly_player_game_stats";
    assert_true(row(f, name, T0, "p1", "g1", s));
    assert_int_equal(col(f, name, s, "total_sessions_1h").i, 1);
    assert_true(row(f, name, T0, "p2", "g1", s));
    assert_int_equal(col(f, name, s, "total_sessions_1h").i, 1);
}

/* The store's tap (as the changelog sees writes): the windows rows were
 * written for, per table. */
typedef struct {
    int64_t starts[64];
    int n;
} written_rows;

static int note_write(void *ctx, char kind, const gd_tabledef *t, gd_str key, gd_str val)
{
    (void)t, (void)val;
    written_rows *w = ctx;
    if (kind == 'R' && key.len >= 8 && w->n < 64) w->starts[w->n++] = gd_rowkey_window(key.p);
    return GD_OK;
}

static void windows_past_retention_at_the_commit_are_not_written(void **state)
{
    fixture *f = *state;
    f->win.retention_ms = HOUR;
    /* one commit carries 26 h of event time (a catch-up): the hour at T0 is
     * closed (1 h + 23 h grace) and past retention at the commit */
    apply(f, (act){"p1", "g1", "s1", T0 + 1000, I(10), I(60), {0}}, NULL);
    apply(f, (act){"p1", "g1", "s2", T0 + 26 * HOUR, I(10), I(60), {0}}, NULL);
    written_rows w = {0};
    f->store.tap = note_write;
    f->store.tap_ctx = &w;
    assert_int_equal(gd_windows_flush(&f->win, &f->store, f->txn, f->stream_time, gd_now_ms()), GD_OK);
    f->store.tap = NULL;
    assert_true(w.n > 0);
    for (int i = 0; i < w.n; i++) assert_true(w.starts[i] >= T0 + 25 * HOUR); /* the hour, the day, 5 min... */
    gd_slot s[GD_MAX_COLS];
    assert_false(row(f, "gaming_hourly_player_game_stats", T0, "p1", "g1", s));
    assert_true(row(f, "gaming_hourly_player_game_stats", T0 + 26 * HOUR, "p1", "g1", s));
    assert_int_equal(col(f, "gaming_hourly_player_game_stats", s, "total_sessions_1h").i, 1);
}

/* The store's tap, counting one table's row and sets writes. */
typedef struct {
    const char *table;
    int rows, sets;
} table_writes;

static int count_writes(void *ctx, char kind, const gd_tabledef *t, gd_str key, gd_str val)
{
    (void)key, (void)val;
    table_writes *w = ctx;
    if (strcmp(t->name, w->table)) return GD_OK;
    w->rows += kind == 'R';
    w->sets += kind == 'S';
    return GD_OK;
}

static table_writes flush_counting(fixture *f, const char *table)
{
    table_writes w = {table, 0, 0};
    f->store.tap = count_writes;
    f->store.tap_ctx = &w;
    assert_int_equal(gd_windows_flush(&f->win, &f->store, f->txn, f->stream_time, gd_now_ms()), GD_OK);
    f->store.tap = NULL;
    return w;
}

/* Applies a record, flushes, and checks what one table wrote. */
static void apply_and_flush(fixture *f, const char *table, act in, int rows, int sets)
{
    apply(f, in, NULL);
    table_writes w = flush_counting(f, table);
    assert_int_equal(w.rows, rows);
    assert_int_equal(w.sets, sets);
}

/* A group's distinct sets are written when they gained a member, not at
 * every change of its row; what is read back is still whole. */
static void distinct_sets_are_written_only_when_they_gain_a_member(void **state)
{
    fixture *f = *state;
    const char *t = "gaming_hourly_player_game_stats"; /* unique_sessions_1h */
    apply_and_flush(f, t, (act){"p1", "g1", "s1", T0 + 1000, I(10), I(60), {0}}, 1, 1);
    apply_and_flush(f, t, (act){"p1", "g1", "s1", T0 + 2000, I(20), I(60), {0}}, 1, 0); /* the same session */
    apply_and_flush(f, t, (act){"p1", "g1", "s2", T0 + 3000, I(30), I(60), {0}}, 1, 1);
    /* two hours on, T0's windows leave memory; read back, the set has both
     * sessions: one more record of s2 writes no sets, one of s3 does */
    apply(f, (act){"p3", "g1", "s8", T0 + 2 * HOUR, I(1), I(1), {0}}, NULL);
    for (int i = 0; i < 2; i++) flush_counting(f, t);
    apply_and_flush(f, t, (act){"p1", "g1", "s2", T0 + 4000, I(40), I(60), {0}}, 1, 0);
    apply_and_flush(f, t, (act){"p1", "g1", "s3", T0 + 5000, I(50), I(60), {0}}, 1, 1);
    gd_slot s[GD_MAX_COLS];
    assert_true(row(f, t, T0, "p1", "g1", s));
    assert_int_equal(col(f, t, s, "total_sessions_1h").i, 5);
    assert_int_equal(col(f, t, s, "unique_sessions_1h").i, 3);
    /* and a restart reads the three back */
    gd_windows_free(&f->win);
    gd_windows_init(&f->win, &f->cfg, &f->cat, GD_ALL_TABLES);
    assert_int_equal(gd_windows_load(&f->win, &f->store, f->txn, f->stream_time), GD_OK);
    apply_and_flush(f, t, (act){"p1", "g1", "s1", T0 + 6000, I(60), I(60), {0}}, 1, 0);
    assert_true(row(f, t, T0, "p1", "g1", s));
    assert_int_equal(col(f, t, s, "unique_sessions_1h").i, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(hourly_stats_aggregate_and_feed_the_enriched_record, setup, teardown),
        cmocka_unit_test_setup_teardown(distinct_counts_are_exact_and_latest_keeps_last_non_null, setup, teardown),
        cmocka_unit_test_setup_teardown(purchases_only_tables_skip_records_without_purchase, setup, teardown),
        cmocka_unit_test_setup_teardown(null_group_keys_are_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(late_records_update_nothing_and_carry_figures_as_they_stand, setup, teardown),
        cmocka_unit_test_setup_teardown(records_just_inside_the_grace_still_count, setup, teardown),
        cmocka_unit_test_setup_teardown(windows_that_left_memory_are_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(a_window_stays_in_memory_until_the_flush_after_its_last_write, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(windows_past_retention_at_the_commit_are_not_written, setup, teardown),
        cmocka_unit_test_setup_teardown(distinct_sets_are_written_only_when_they_gain_a_member, setup, teardown),
        cmocka_unit_test_setup_teardown(a_stored_row_that_does_not_decode_starts_its_group_over_at_start, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
