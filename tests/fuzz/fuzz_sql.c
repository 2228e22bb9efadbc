/* Fuzz target: the SQL layer -- tokenizer, parser and planner over any
 * text, against the built-in catalog -- and what a plan runs: a pull query
 * over a real LMDB store with rows in every table, the expressions of a
 * push query over a stream's record, the definition a CREATE compiles. The
 * input is the statement text, its ${variables} put in first (a session
 * variable `v` is defined, DEFINEs add more); the seed corpus is the
 * statements of tests/sql/ and the data product's README. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../sql/sql.h"
#include "store_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gd_config cfg;
static gd_catalog cat;
static gd_store store;

/* A record of each stream, as the engine publishes it. */
static const char *const events[] = {
    "{\"game_id\":\"g1\",\"game_name\":\"Neon \\\"Arena\\\"\",\"game_genre\":\"Action\",\"player_id\":\"p1\","
    "\"player_username\":\"ann\",\"player_email\":\"ann@example.com\",\"player_level\":7,\"activity_type\":\"play\","
    "\"session_id\":\"s1\",\"score\":-9223372036854775807,\"duration_seconds\":0,\"total_sessions_1h\":1,"
    "\"avg_score_1h\":1.5e300,\"active_players_count\":1,\"event_timestamp\":253402300799999,"
    "\"processing_timestamp\":0,\"activity_id\":\"a1\",\"achievements_unlocked\":null,\"in_game_purchases\":4.99,"
    "\"player_country\":\"\",\"player_status\":\"active\",\"game_publisher\":null,\"game_platform\":\"PC\","
    "\"game_rating\":-0.0,\"player_segment\":\"CASUAL_PLAYER\",\"session_type\":\"SHORT_SESSION\",\"has_purchase\":true}",
    "{\"game_id\":\"g2\",\"window_start\":0,\"window_end\":60000,\"player_id\":\"%\"}",
};

static int count_row(void *ctx, const gd_value *row, int n, const gd_sql_pos *pos)
{
    (void)row, (void)n, (void)pos;
    return ++*(int *)ctx >= 1000;
}

/* A push plan's expressions over a record of its source. */
static void run_push(const gd_query_plan *plan)
{
    gd_arena scratch;
    gd_arena_init(&scratch);
    int width = plan->row_width > plan->source->width ? plan->row_width : plan->source->width;
    gd_value *row = calloc((size_t)width + 1, sizeof *row);
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
        if (!gd_sql_event_row(plan->source, gd_str_c(events[i]), row, width, &scratch)) continue;
        gd_eval ev = {.column = gd_value_array_column, .row = row, .now_ms = 1, .scratch = &scratch};
        const gd_tabledef *t = plan->aggregate;
        if (t) { /* the transient table's keys, filter and arguments */
            if (t->where) gd_expr_true(t->where, &ev);
            for (int k = 0; k < t->nkeys; k++)
                if (t->keys[k].expr) gd_expr_eval(t->keys[k].expr, &ev);
            for (int c = 0; c < t->nslots; c++)
                if (t->cols[c].arg) gd_expr_eval(t->cols[c].arg, &ev);
            continue;
        }
        if (plan->where) gd_expr_true(plan->where, &ev);
        for (int c = 0; c < plan->ncols; c++) gd_expr_eval(plan->proj[c], &ev);
    }
    free(row);
    gd_arena_free(&scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!store.env) gd_fuzz_fill_store(&cfg, &cat, &store);
    if (size > 20000) return 0;
    gd_arena arena;
    gd_arena_init(&arena);
    gd_sql_error err = {0};
    gd_sql_stmt *stmts;
    int n;
    gd_sql_vars vars = {0};
    gd_sql_vars_set(&vars, gd_str_c("v"), gd_str_c("game_id"));
    gd_buf text = {0};
    if (gd_sql_substitute((gd_str){(const char *)data, (uint32_t)size}, &vars, &arena, &text, &err)) {
        if (!err.message[0]) __builtin_trap();
    } else if (gd_sql_parse((gd_str){text.p ? text.p : "", (uint32_t)text.len}, &arena, &stmts, &n, &err) == GD_OK) {
        for (int i = 0; i < n && i < 8; i++) {
            memset(&err, 0, sizeof err);
            if (stmts[i].kind == GD_SQL_SELECT) {
                gd_query_plan plan;
                if (gd_sql_plan_query(&cat, &stmts[i], &arena, &plan, &err)) continue;
                if (plan.kind == GD_PLAN_PULL_TABLE) {
                    int rows = 0;
                    gd_sql_pull(&store, &plan, 1, 0, count_row, &rows, &err);
                } else run_push(&plan);
            } else if (stmts[i].kind == GD_SQL_CREATE_AS || stmts[i].kind == GD_SQL_CREATE_SOURCE) {
                gd_catalog_entry *e;
                if (gd_sql_plan_create(&cat, &stmts[i], false, &e, &err) == GD_OK) gd_catalog_entry_free(e);
            }
            if (err.code && !err.message[0]) __builtin_trap(); /* every refusal says why */
        }
    } else if (!err.message[0]) __builtin_trap();
    gd_buf_free(&text);
    gd_arena_free(&arena);
    return 0;
}
