/* Fuzz target: pull queries as a client sends them -- the request target
 * (api/request.c), the table's parameters, and cursors (api/pull.c) -- over
 * a real LMDB store with rows in every table. Byte 0 picks the table, the
 * rest is the query string. When a page comes back with a next_cursor, the
 * next page is asked for with it, and again with one of its bytes changed
 * (the last input byte says which and to what), so cursors that pass the
 * query check are fuzzed too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/routes.h"
#include "../../ingest/window.h"
#include "../../sql/sql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gd_config cfg;
static gd_catalog cat;
static gd_store store;

/* Activity over two hours and three games, some with purchases. */
static void fill_store(void)
{
    char dir[] = "/tmp/gamingd-fuzz-pull-XXXXXX";
    char *argv[] = {"gamingd", NULL};
    gd_sql_error err;
    if (!mkdtemp(dir) || gd_config_parse(&cfg, 1, argv)) abort();
    gd_catalog_init(&cat, cfg.grace_ms);
    if (gd_sql_load_builtin(&cat, &err) || gd_store_open(&store, dir, 64 << 20) || gd_store_open_tables(&store, &cat))
        abort();
    gd_refs refs;
    gd_windows win;
    gd_refs_init(&refs, &cat);
    gd_windows_init(&win, &cfg, &cat, GD_ALL_TABLES);
    gd_game g = {.game_id = gd_str_c("g1"), .game_name = gd_str_c("Neon \"Arena\""), .genre = gd_str_c("Action")};
    gd_refs_put_game(&refs, gd_str_c("g1"), &g);
    gd_player p = {.player_id = gd_str_c("p1"), .username = gd_str_c("ann"), .email = gd_str_c("ann@example.com")};
    gd_refs_put_player(&refs, gd_str_c("p1"), &p);
    MDB_txn *txn;
    if (gd_store_begin_write(&store, &txn)) abort();
    int64_t t0 = 1709251200000, stream_time = INT64_MIN;
    char ids[3][16];
    for (int i = 0; i < 600; i++) {
        gd_activity a = {0};
        snprintf(ids[0], 16, "p%d", i % 7);
        snprintf(ids[1], 16, "g%d", i % 3);
        snprintf(ids[2], 16, "s%d", i % 11);
        a.player_id = gd_str_c(ids[0]);
        a.game_id = gd_str_c(ids[1]);
        a.session_id = gd_str_c(ids[2]);
        a.activity_type = gd_str_c("play");
        a.activity_timestamp = t0 + (int64_t)i * 12000;
        a.score = (gd_int){true, i * 97 % 20000};
        a.duration_seconds = (gd_int){i % 5 != 0, i * 13 % 4000};
        a.in_game_purchases = (gd_dbl){true, i % 4 ? 0.0 : 4.99};
        if (a.activity_timestamp > stream_time) stream_time = a.activity_timestamp;
        gd_enriched e;
        gd_enrich(&e, &a, &refs, a.activity_timestamp + 50);
        e.seq = (uint64_t)i + 1;
        gd_windows_apply(&win, &e, stream_time, &store, txn);
    }
    gd_buf tmp = {0};
    if (gd_refs_flush(&refs, &store, txn, &tmp) || gd_windows_flush(&win, &store, txn, stream_time, stream_time) ||
        gd_store_commit(txn))
        abort();
    gd_buf_free(&tmp);
    gd_windows_free(&win);
    gd_refs_free(&refs);
}

/* Runs the query of target; returns the next_cursor it answered with (malloc'd) or NULL. */
static char *run(const char *target, const char *table)
{
    gd_request req;
    char *next = NULL;
    if (gd_request_parse(&req, target) == GD_OK) {
        req.scopes = GD_SCOPE_READ;
        gd_api_ctx ctx = {.cfg = &cfg, .store = &store, .cat = &cat};
        gd_reply r = {0};
        gd_route_table_rows(&ctx, &req, table, &r);
        if (r.status != 200 && r.status != 400 && r.status != 403 && r.status != 404) __builtin_trap();
        gd_buf_putc(&r.body, 0);
        const char *c = r.status == 200 ? strstr(r.body.p, "\"next_cursor\":\"") : NULL;
        if (c) next = strndup(c + 15, strcspn(c + 15, "\""));
        gd_buf_free(&r.body);
    }
    gd_request_free(&req);
    return next;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!store.env) fill_store();
    if (size < 1 || size > 9000 || memchr(data, 0, size)) return 0;
    const gd_catalog_entry *e = NULL;
    for (unsigned i = data[0]; !e; i++) e = gd_catalog_table(&cat, i % GD_MAX_TABLES);
    const char *table = e->name;
    char target[9300];
    snprintf(target, sizeof target, "/v1/tables/%s?%.*s", table, (int)(size - 1), (const char *)data + 1);
    char *next = run(target, table);
    if (next && strlen(target) + strlen(next) + 10 < sizeof target) {
        size_t base = strlen(target);
        snprintf(target + base, sizeof target - base, "&cursor=%s", next);
        free(run(target, table));
        size_t at = base + 8 + (size_t)data[size - 1] % strlen(next);
        target[at] = "0123456789abcdef"[data[size - 1] >> 4];
        free(run(target, table));
    }
    free(next);
    return 0;
}
