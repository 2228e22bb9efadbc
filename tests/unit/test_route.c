/* Unit tests: partitioned mode's route records (ingest/route.c) carry only
 * the fields their route's readers read. Over the built-in tables: what
 * each route carries (hand-worked from sql/builtin.sql), a record through
 * encode and decode reading the same on its route -- every enriched field
 * on route 0, each table's group key and aggregate arguments on the others
 * -- and records cut short, with unknown fields, without a required field or
 * with stray bytes refused; a message's batch of records read back in order,
 * and one cut short read to its last whole record; and every table's row
 * naming the route key its records came with, so that the row goes to the
 * changelog partition of that task. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../ingest/window.h"
#include "../../sql/sql.h"

typedef struct {
    gd_config cfg;
    gd_catalog cat;
    gd_routes routes;
    gd_arena scratch;
    gd_activity a;
    gd_game game;
    gd_player player;
    gd_enriched en;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char *argv[] = {"gamingd", NULL};
    if (gd_config_parse(&f->cfg, 1, argv)) return -1;
    gd_catalog_init(&f->cat, f->cfg.grace_ms);
    gd_sql_error err = {0};
    if (gd_sql_load_builtin(&f->cat, &err) || gd_routes_plan(&f->routes, &f->cfg, &f->cat)) return -1;
    f->a = (gd_activity){.activity_id = gd_str_c("act-1"), .player_id = gd_str_c("p1"), .game_id = gd_str_c("g1"),
                         .session_id = gd_str_c("s1"), .activity_type = gd_str_c("match_end"),
                         .activity_timestamp = 1700000000123, .score = {true, 7000},
                         .duration_seconds = {true, 2000}, .achievements_unlocked = {true, 3},
                         .in_game_purchases = {true, 4.5}};
    f->game = (gd_game){.game_id = gd_str_c("g1"), .game_name = gd_str_c("Neon Arena"), .genre = gd_str_c("Action"),
                        .publisher = gd_str_c("Pixel"), .release_date = gd_str_c("2020-01-01"),
                        .platform = gd_str_c("PC"), .rating = {true, 4.2}, .price = {true, 19.99}};
    f->player = (gd_player){.player_id = gd_str_c("p1"), .username = gd_str_c("ann"), .email = gd_str_c("a@x.org"),
                            .created_date = gd_str_c("2021-05-05"), .country = gd_str_c("NO"),
                            .account_status = gd_str_c("active"), .level = {true, 12},
                            .total_playtime_hours = {true, 99.5}};
    gd_enrich_with(&f->en, &f->a, &f->game, &f->player, 1700000000500);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    gd_catalog_free(&f->cat);
    gd_arena_free(&f->scratch);
    gd_config_free(&f->cfg);
    free(f);
    return 0;
}

static const gd_route *route_of(const fixture *f, const char *table)
{
    for (int r = 0; r < f->routes.n; r++)
        if (table ? f->routes.r[r].keyed_by && !strcmp(f->routes.r[r].keyed_by->name, table)
                  : !f->routes.r[r].keyed_by)
            return &f->routes.r[r];
    fail_msg("no route for %s", table ? table : "game_id");
    return NULL;
}

/* e through a route record with fields and back into out (its rows in rr). */
static gd_buf round_trip(const gd_enriched *e, uint32_t fields, gd_route_record *rr, gd_enriched *out)
{
    gd_buf b = {0};
    gd_route_encode(&b, e, fields, 3, 12345);
    assert_int_equal(gd_route_decode((gd_str){b.p, (uint32_t)b.len}, rr), GD_OK);
    assert_int_equal(rr->src_partition, 3);
    assert_int_equal(rr->src_offset, 12345);
    assert_int_equal(rr->fields, fields);
    gd_enrich_with(out, &rr->a, rr->has_game ? &rr->game : NULL, rr->has_player ? &rr->player : NULL,
                   rr->processing_timestamp);
    return b;
}

static void assert_same(gd_value x, gd_value y)
{
    assert_int_equal(x.t, y.t);
    if (x.t != GD_V_NULL) assert_int_equal(gd_value_cmp(x, y), 0);
}

static gd_value str_value(gd_str s) { return s.p ? (gd_value){.t = GD_V_STR, .s = s} : (gd_value){.t = GD_V_NULL}; }

static void assert_no_value(gd_value x) { assert_int_equal(x.t, GD_V_NULL); }

static gd_value enriched_column(const void *row, int index) { return gd_enriched_field(row, (gd_field)index); }

static void route_zero_shows_every_enriched_field_and_leaves_the_rest(void **state)
{
    fixture *f = *state;
    gd_route_record rr;
    gd_enriched back;
    gd_buf b = round_trip(&f->en, route_of(f, NULL)->fields, &rr, &back);
    for (int x = GD_F_NONE; x < GD_F_COUNT; x++)
        assert_same(gd_enriched_field(&back, (gd_field)x), gd_enriched_field(&f->en, (gd_field)x));
    /* read by no enriched field, so not carried */
    assert_no_value(str_value(rr.game.release_date));
    assert_false(rr.game.price.set);
    assert_no_value(str_value(rr.player.created_date));
    assert_false(rr.player.total_playtime_hours.set);
    /* without the join's rows: none, as sent */
    gd_enriched alone;
    gd_enrich_with(&alone, &f->a, NULL, NULL, 1700000000500);
    gd_buf_free(&b);
    b = round_trip(&alone, route_of(f, NULL)->fields, &rr, &back);
    assert_false(rr.has_game);
    assert_false(rr.has_player);
    assert_no_value(gd_enriched_field(&back, GD_F_GAME_NAME));
    gd_buf_free(&b);
}

static void a_tables_route_carries_what_it_reads(void **state)
{
    fixture *f = *state;
    gd_route_record rr;
    gd_enriched back;
    gd_buf whole = {0};
    gd_route_encode(&whole, &f->en, route_of(f, NULL)->fields, 0, 0);
    /* GROUP BY game_genre; COUNT_DISTINCT(player_id), AVG(duration_seconds), SUM(achievements_unlocked) */
    gd_buf b = round_trip(&f->en, route_of(f, "gaming_genre_engagement")->fields, &rr, &back);
    assert_true(b.len < whole.len / 2);
    assert_same(gd_enriched_field(&back, GD_F_GAME_GENRE), str_value(gd_str_c("Action")));
    assert_same(gd_enriched_field(&back, GD_F_DURATION), gd_int_value(2000));
    assert_same(gd_enriched_field(&back, GD_F_ACHIEVEMENTS), gd_int_value(3));
    assert_same(gd_enriched_field(&back, GD_F_PLAYER_ID), str_value(gd_str_c("p1")));
    assert_same(gd_enriched_field(&back, GD_F_EVENT_TIMESTAMP), gd_int_value(1700000000123));
    assert_same(gd_enriched_field(&back, GD_F_PROCESSING_TIMESTAMP), gd_int_value(1700000000500));
    assert_no_value(gd_enriched_field(&back, GD_F_GAME_NAME));
    assert_no_value(gd_enriched_field(&back, GD_F_SCORE));
    assert_no_value(gd_enriched_field(&back, GD_F_PLAYER_EMAIL));
    assert_no_value(gd_enriched_field(&back, GD_F_SESSION_ID));
    gd_buf_free(&b);
    /* GROUP BY player_segment (from score); AVG(score), AVG(duration_seconds) */
    b = round_trip(&f->en, route_of(f, "gaming_player_segments_hourly")->fields, &rr, &back);
    assert_same(gd_enriched_field(&back, GD_F_PLAYER_SEGMENT), str_value(gd_str_c("MEDIUM_PERFORMER")));
    assert_same(gd_enriched_field(&back, GD_F_SCORE), gd_int_value(7000));
    assert_no_value(gd_enriched_field(&back, GD_F_GAME_GENRE));
    assert_no_value(gd_enriched_field(&back, GD_F_PLAYER_USERNAME));
    gd_buf_free(&b);
    /* COUNT(game_name), COUNT(player_username) */
    b = round_trip(&f->en, route_of(f, "gaming_data_quality_5min")->fields, &rr, &back);
    assert_same(gd_enriched_field(&back, GD_F_GAME_NAME), str_value(gd_str_c("Neon Arena")));
    assert_same(gd_enriched_field(&back, GD_F_PLAYER_USERNAME), str_value(gd_str_c("ann")));
    assert_no_value(gd_enriched_field(&back, GD_F_GAME_GENRE));
    assert_no_value(gd_enriched_field(&back, GD_F_DURATION));
    gd_buf_free(&b);
    gd_buf_free(&whole);
}

/* Every table of every route groups and aggregates a record that crossed
 * its route as it does the record itself. */
static void every_table_reads_the_same_from_its_route(void **state)
{
    fixture *f = *state;
    gd_buf k1 = {0}, k2 = {0}, text = {0};
    for (int r = 0; r < f->routes.n; r++) {
        gd_route_record rr;
        gd_enriched back;
        gd_buf b = round_trip(&f->en, f->routes.r[r].fields, &rr, &back);
        for (unsigned i = 0; i < GD_MAX_TABLES; i++) {
            const gd_catalog_entry *e = gd_catalog_table(&f->cat, i);
            if (!e || !(f->routes.r[r].tables >> i & 1)) continue;
            const gd_tabledef *def = e->table;
            bool in = gd_table_group_key(def, &f->en, &f->scratch, &k1, &text);
            assert_int_equal(gd_table_group_key(def, &back, &f->scratch, &k2, &text), in);
            if (in) assert_memory_equal(k1.p, k2.p, k1.len);
            gd_eval orig = {.column = enriched_column, .row = &f->en, .now_ms = 0, .scratch = &f->scratch};
            gd_eval sent = orig;
            sent.row = &back;
            for (int c = 0; c < def->nslots; c++) {
                const gd_coldef *col = &def->cols[c];
                if (col->field >= 0)
                    assert_same(gd_enriched_field(&back, (gd_field)col->field),
                                gd_enriched_field(&f->en, (gd_field)col->field));
                else if (col->arg)
                    assert_same(gd_expr_eval(col->arg, &sent), gd_expr_eval(col->arg, &orig));
            }
        }
        gd_buf_free(&b);
    }
    gd_buf_free(&k1);
    gd_buf_free(&k2);
    gd_buf_free(&text);
}

static uint32_t activity_bit(const char *name)
{
    for (int i = 0; gd_activity_fields[i].name; i++)
        if (!strcmp(gd_activity_fields[i].name, name)) return 1u << i;
    fail_msg("no field %s", name);
    return 0;
}

static int decode(const gd_buf *b, size_t len)
{
    gd_route_record rr;
    return gd_route_decode((gd_str){b->p, (uint32_t)len}, &rr);
}

static void malformed_records_are_refused(void **state)
{
    fixture *f = *state;
    uint32_t fields = route_of(f, "gaming_genre_engagement")->fields;
    gd_buf b = {0};
    gd_route_encode(&b, &f->en, fields, 0, 7);
    assert_int_equal(decode(&b, b.len), GD_OK);
    for (size_t n = 0; n < b.len; n++) assert_int_equal(decode(&b, n), GD_ERR); /* cut short anywhere */
    gd_buf_putc(&b, 0);
    assert_int_equal(decode(&b, b.len), GD_ERR); /* a stray byte after */
    b.len--;
    for (int bit = 26; bit < 32; bit++) { /* a field this decoder does not know */
        gd_buf c = {0};
        gd_buf_put(&c, b.p, b.len);
        gd_buf_put_u32be(&c, fields | 1u << bit);
        memcpy(c.p + 21, c.p + c.len - 4, 4);
        c.len -= 4;
        assert_int_equal(decode(&c, c.len), GD_ERR);
        gd_buf_free(&c);
    }
    const char *required[] = {"activity_timestamp", "game_id", "player_id", "activity_type"};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
        gd_route_encode(&b, &f->en, fields & ~activity_bit(required[i]), 0, 7);
        assert_int_equal(decode(&b, b.len), GD_ERR);
    }
    gd_route_encode(&b, &f->en, fields, 0, 7);
    b.p[0] = 'X'; /* another encoding's magic */
    assert_int_equal(decode(&b, b.len), GD_ERR);
    /* a whole record of an older gamingd: 'R', no field bits, every field */
    gd_route_encode(&b, &f->en, UINT32_MAX >> 6, 0, 7); /* the 26 source fields */
    b.p[0] = 'R';
    memmove(b.p + 21, b.p + 25, b.len - 25);
    b.len -= 4;
    gd_route_record whole;
    assert_int_equal(gd_route_decode((gd_str){b.p, (uint32_t)b.len}, &whole), GD_OK);
    assert_int_equal(whole.fields, UINT32_MAX >> 6);
    assert_true(gd_str_eq(whole.a.player_id, f->a.player_id));
    assert_true(whole.has_game && gd_str_eq(whole.game.genre, f->en.game->genre));
    assert_int_equal(whole.a.activity_timestamp, f->a.activity_timestamp);
    gd_enriched alone;
    gd_enrich_with(&alone, &f->a, NULL, NULL, 1700000000500);
    gd_route_encode(&b, &alone, fields, 0, 7);
    assert_int_equal(decode(&b, b.len), GD_OK);
    assert_int_equal(b.p[b.len - 2], 0); /* no game */
    b.p[b.len - 2] = 2;                  /* a presence byte is 0 or 1 */
    assert_int_equal(decode(&b, b.len), GD_ERR);
    b.p[b.len - 2] = 1; /* a game said present but absent */
    assert_int_equal(decode(&b, b.len), GD_ERR);
    gd_buf_free(&b);
}

/* The records of a route message, read back as a list ("?" for a broken
 * framing), each record its first byte and length. */
static void read_message(gd_str message, char *out, size_t cap)
{
    gd_route_reader rd;
    gd_route_reader_init(&rd, message);
    gd_str one;
    int got;
    size_t n = 0;
    out[0] = 0;
    while ((got = gd_route_reader_next(&rd, &one)) == GD_OK)
        n += (size_t)snprintf(out + n, cap - n, "%c%u ", one.p[0], (unsigned)one.len);
    if (got == GD_ERR) snprintf(out + n, cap - n, "?");
    assert_int_equal(gd_route_reader_next(&rd, &one), GD_EOF); /* and nothing after */
}

static void a_message_carries_a_batch_of_records_in_their_order(void **state)
{
    fixture *f = *state;
    gd_buf batch = {0}, rec = {0};
    char got[256];
    uint32_t fields = route_of(f, NULL)->fields;
    size_t lens[3];
    for (int i = 0; i < 3; i++) {
        gd_route_encode(&rec, &f->en, fields, 0, 100 + i);
        lens[i] = rec.len;
        gd_route_batch_add(&batch, (gd_str){rec.p, (uint32_t)rec.len});
    }
    char want[256];
    snprintf(want, sizeof want, "F%zu F%zu F%zu ", lens[0], lens[1], lens[2]);
    read_message((gd_str){batch.p, (uint32_t)batch.len}, got, sizeof got);
    assert_string_equal(got, want);
    /* each decodes, in the order added */
    gd_route_reader rd;
    gd_route_reader_init(&rd, (gd_str){batch.p, (uint32_t)batch.len});
    gd_str one;
    for (int i = 0; i < 3; i++) {
        gd_route_record rr;
        assert_int_equal(gd_route_reader_next(&rd, &one), GD_OK);
        assert_int_equal(gd_route_decode(one, &rr), GD_OK);
        assert_int_equal(rr.src_offset, 100 + i);
    }
    /* a record alone, as gamingd wrote before batches: the whole message */
    read_message((gd_str){rec.p, (uint32_t)rec.len}, got, sizeof got);
    snprintf(want, sizeof want, "F%zu ", rec.len);
    assert_string_equal(got, want);
    /* a batch cut short: what is whole before the cut, then a broken framing */
    size_t first_end = 1 + 4 + lens[0];
    read_message((gd_str){batch.p, (uint32_t)first_end + 3}, got, sizeof got);
    snprintf(want, sizeof want, "F%zu ?", lens[0]);
    assert_string_equal(got, want);
    read_message((gd_str){batch.p, (uint32_t)batch.len - 1}, got, sizeof got);
    snprintf(want, sizeof want, "F%zu F%zu ?", lens[0], lens[1]);
    assert_string_equal(got, want);
    read_message((gd_str){batch.p, 1}, got, sizeof got); /* the magic alone: an empty batch */
    assert_string_equal(got, "");
    read_message(GD_STR_NULL, got, sizeof got); /* a tombstone */
    assert_string_equal(got, "");
    gd_buf_free(&batch);
    gd_buf_free(&rec);
}

/* For every table kept through a route, with a record of a game whose id
 * holds a NUL and a number key: the key its row (window start, then group
 * key) names is the key the record travelled with. */
static void a_row_names_the_route_key_of_its_records(void **state)
{
    fixture *f = *state;
    f->a.game_id = (gd_str){"g\0x", 3};
    gd_enrich_with(&f->en, &f->a, &f->game, &f->player, 1700000000500);
    gd_buf group = {0}, text = {0}, row = {0}, want = {0}, got = {0};
    int tables = 0;
    for (unsigned i = 0; i < GD_MAX_TABLES; i++) {
        const gd_catalog_entry *e = gd_catalog_table(&f->cat, i);
        if (!e || !gd_table_aggregates(e->table)) continue;
        int r = gd_routes_of_table(&f->routes, e->table);
        assert_true(r >= 0 && r < f->routes.n);
        const gd_route *route = &f->routes.r[r];
        if (!gd_table_group_key(e->table, &f->en, &f->scratch, &group, &text)) continue; /* not in it */
        gd_rowkey_encode(&row, 1700000000000, (gd_str){group.p, (uint32_t)group.len});
        assert_true(gd_route_key(route, &f->en, &f->scratch, &want, &text));
        assert_true(gd_route_row_key(route, e->table, (gd_str){row.p, (uint32_t)row.len}, &got));
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.p, want.p, want.len);
        tables++;
    }
    assert_true(tables >= 6);
    /* not a row of a route-0 table: shorter than a window start, or a group key cut short */
    const gd_catalog_entry *stats = gd_catalog_find(&f->cat, gd_str_c("gaming_hourly_player_game_stats"));
    assert_non_null(stats);
    assert_int_equal(gd_routes_of_table(&f->routes, stats->table), 0);
    assert_false(gd_route_row_key(&f->routes.r[0], stats->table, (gd_str){row.p, 7}, &got));
    assert_false(gd_route_row_key(&f->routes.r[0], stats->table, (gd_str){row.p, 10}, &got));
    gd_buf_free(&group);
    gd_buf_free(&text);
    gd_buf_free(&row);
    gd_buf_free(&want);
    gd_buf_free(&got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(route_zero_shows_every_enriched_field_and_leaves_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(a_tables_route_carries_what_it_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(every_table_reads_the_same_from_its_route, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_records_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(a_message_carries_a_batch_of_records_in_their_order, setup, teardown),
        cmocka_unit_test_setup_teardown(a_row_names_the_route_key_of_its_records, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
