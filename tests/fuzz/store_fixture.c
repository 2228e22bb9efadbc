/* store_fixture.c -- see store_fixture.h. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../sql/sql.h"
#include "store_fixture.h"

/* The data dir goes at once: LMDB works on through its open descriptors
 * and map, and a fuzzer stopped by its time limit leaves nothing in /tmp. */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    if (d) closedir(d);
    rmdir(dir);
}

void gd_fuzz_fill_store(gd_config *cfg, gd_catalog *cat, gd_store *store)
{
    char dir[] = "/tmp/gamingd-fuzz-XXXXXX";
    char *argv[] = {"gamingd", NULL};
    gd_sql_error err;
    if (!mkdtemp(dir) || gd_config_parse(cfg, 1, argv)) abort();
    gd_catalog_init(cat, cfg->grace_ms);
    if (gd_sql_load_builtin(cat, &err) || gd_store_open(store, dir, 64 << 20) || gd_store_open_tables(store, cat))
        abort();
    remove_dir(dir);
    gd_refs refs;
    gd_windows win;
    gd_refs_init(&refs, cat);
    gd_windows_init(&win, cfg, cat, GD_ALL_TABLES);
    gd_game g = {.game_id = gd_str_c("g1"), .game_name = gd_str_c("Neon \"Arena\""), .genre = gd_str_c("Action")};
    gd_refs_put_game(&refs, gd_str_c("g1"), &g);
    gd_player p = {.player_id = gd_str_c("p1"), .username = gd_str_c("ann"), .email = gd_str_c("ann@example.com")};
    gd_refs_put_player(&refs, gd_str_c("p1"), &p);
    MDB_txn *txn;
    if (gd_store_begin_write(store, &txn)) abort();
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
        gd_windows_apply(&win, &e, stream_time, store, txn);
    }
    gd_buf tmp = {0};
    if (gd_refs_flush(&refs, store, txn, &tmp) || gd_windows_flush(&win, store, txn, stream_time, stream_time) ||
        gd_store_commit(txn))
        abort();
    gd_buf_free(&tmp);
    gd_windows_free(&win);
    gd_refs_free(&refs);
}
