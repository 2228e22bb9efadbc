/* refs.c -- the games and players tables: in memory for the join, in LMDB
 * (as the JSON rows the API serves) for pull queries and restarts.
 *
 * A row is one allocation holding the struct and its strings, so replacing
 * or deleting a row is one free. Keys changed in a batch are remembered in a
 * dirty set and written (or deleted) at commit: a player updated a thousand
 * times in a batch costs one put. */
#include <stdlib.h>
#include <string.h>

#include "window.h"

static const size_t game_strs[] = {offsetof(gd_game, game_id), offsetof(gd_game, game_name),
                                   offsetof(gd_game, genre), offsetof(gd_game, publisher),
                                   offsetof(gd_game, release_date), offsetof(gd_game, platform)};
static const size_t player_strs[] = {offsetof(gd_player, player_id), offsetof(gd_player, username),
                                     offsetof(gd_player, email), offsetof(gd_player, created_date),
                                     offsetof(gd_player, country), offsetof(gd_player, account_status)};

/* One block: the struct, then its strings. */
static void *copy_row(const void *src, size_t size, const size_t *strs, size_t nstrs)
{
    size_t total = size;
    for (size_t i = 0; i < nstrs; i++) total += ((const gd_str *)((const char *)src + strs[i]))->len;
    char *block = malloc(total);
    if (!block) {
        gd_error("out of memory copying a reference row");
        abort();
    }
    memcpy(block, src, size);
    char *data = block + size;
    for (size_t i = 0; i < nstrs; i++) {
        gd_str *s = (gd_str *)(block + strs[i]);
        if (!s->p) continue;
        memcpy(data, s->p, s->len);
        s->p = data;
        data += s->len;
    }
    return block;
}

void gd_refs_init(gd_refs *r)
{
    gd_map_init(&r->games, NULL);
    gd_map_init(&r->players, NULL);
    gd_map_init(&r->dirty_games, NULL);
    gd_map_init(&r->dirty_players, NULL);
}

static void free_rows(gd_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (gd_map_live(&m->slots[i])) free(m->slots[i].val);
    gd_map_free(m);
}

void gd_refs_free(gd_refs *r)
{
    free_rows(&r->games);
    free_rows(&r->players);
    gd_map_free(&r->dirty_games);
    gd_map_free(&r->dirty_players);
}

const gd_game *gd_refs_game(const gd_refs *r, gd_str id) { return gd_map_get(&r->games, id); }
const gd_player *gd_refs_player(const gd_refs *r, gd_str id) { return gd_map_get(&r->players, id); }

static void replace(gd_map *rows, gd_map *dirty, gd_str key, void *row)
{
    bool created;
    gd_map_slot *s = gd_map_upsert(rows, key, &created);
    free(s->val);
    s->val = row;
    if (dirty) gd_map_upsert(dirty, key, &created)->val = (void *)1;
}

void gd_refs_put_game(gd_refs *r, gd_str key, const gd_game *g)
{
    replace(&r->games, &r->dirty_games, key, copy_row(g, sizeof *g, game_strs, 6));
}

void gd_refs_put_player(gd_refs *r, gd_str key, const gd_player *p)
{
    replace(&r->players, &r->dirty_players, key, copy_row(p, sizeof *p, player_strs, 6));
}

void gd_refs_delete(gd_refs *r, gd_topic topic, gd_str key)
{
    bool created;
    gd_map *rows = topic == GD_TOPIC_GAMES ? &r->games : &r->players;
    gd_map *dirty = topic == GD_TOPIC_GAMES ? &r->dirty_games : &r->dirty_players;
    free(gd_map_del(rows, key));
    gd_map_upsert(dirty, key, &created)->val = (void *)1;
}

static void put_member(gd_buf *out, const char *name, gd_str v)
{
    gd_buf_putc(out, ',');
    gd_json_put_cstr(out, name);
    gd_buf_putc(out, ':');
    gd_json_put_str(out, v);
}
static void put_int_member(gd_buf *out, const char *name, gd_int v)
{
    put_member(out, name, GD_STR_NULL);
    if (v.set) {
        out->len -= 4; /* replace the null */
        gd_json_put_int(out, v.v);
    }
}
static void put_dbl_member(gd_buf *out, const char *name, gd_dbl v)
{
    put_member(out, name, GD_STR_NULL);
    if (v.set) {
        out->len -= 4;
        gd_json_put_dbl(out, v.v);
    }
}

void gd_render_game(gd_str key, const gd_game *g, gd_buf *out)
{
    gd_buf_puts(out, "{\"game_id\":");
    gd_json_put_str(out, key);
    put_member(out, "game_name", g->game_name);
    put_member(out, "genre", g->genre);
    put_member(out, "publisher", g->publisher);
    put_member(out, "release_date", g->release_date);
    put_member(out, "platform", g->platform);
    put_dbl_member(out, "rating", g->rating);
    put_dbl_member(out, "price", g->price);
    gd_buf_putc(out, '}');
}

void gd_render_player(gd_str key, const gd_player *p, gd_buf *out)
{
    gd_buf_puts(out, "{\"player_id\":");
    gd_json_put_str(out, key);
    put_member(out, "username", p->username);
    put_member(out, "email", p->email);
    put_member(out, "created_date", p->created_date);
    put_member(out, "country", p->country);
    put_int_member(out, "level", p->level);
    put_dbl_member(out, "total_playtime_hours", p->total_playtime_hours);
    put_member(out, "account_status", p->account_status);
    gd_buf_putc(out, '}');
}

static int flush_table(gd_map *rows, gd_map *dirty, bool games, gd_store *s, MDB_txn *txn,
                       gd_buf *buf)
{
    const gd_tabledef *t = &gd_tables[games ? 0 : 1];
    for (size_t i = 0; i < dirty->cap; i++) {
        if (!gd_map_live(&dirty->slots[i])) continue;
        gd_str key = gd_map_key(&dirty->slots[i]);
        const void *row = gd_map_get(rows, key);
        int rc;
        if (!row) {
            rc = gd_store_row_del(s, txn, t, key);
        } else {
            gd_buf_clear(buf);
            if (games) gd_render_game(key, row, buf);
            else gd_render_player(key, row, buf);
            rc = gd_store_row_put(s, txn, t, key, (gd_str){buf->p, (uint32_t)buf->len});
            if (rc == GD_EBADREC) { /* a key LMDB cannot hold: kept in memory only */
                gd_warn("%s key of %u bytes is too long to store", t->name, key.len);
                rc = GD_OK;
            }
        }
        if (rc) return rc;
    }
    gd_map_free(dirty);
    gd_map_init(dirty, NULL);
    return GD_OK;
}

int gd_refs_flush(gd_refs *r, gd_store *s, MDB_txn *txn, gd_buf *scratch)
{
    int rc = flush_table(&r->games, &r->dirty_games, true, s, txn, scratch);
    return rc ? rc : flush_table(&r->players, &r->dirty_players, false, s, txn, scratch);
}

typedef struct {
    gd_refs *r;
    bool games;
    gd_arena scratch;
    int rc;
} load_ctx;

static int load_row(void *ctx, gd_str key, gd_str val)
{
    load_ctx *c = ctx;
    const char *why;
    gd_arena_reset(&c->scratch);
    if (c->games) {
        gd_game g;
        if (gd_decode_game(val, &c->scratch, &g, &why) == GD_OK)
            replace(&c->r->games, NULL, key, copy_row(&g, sizeof g, game_strs, 6));
    } else {
        gd_player p;
        if (gd_decode_player(val, &c->scratch, &p, &why) == GD_OK)
            replace(&c->r->players, NULL, key, copy_row(&p, sizeof p, player_strs, 6));
    }
    return 0;
}

int gd_refs_load(gd_refs *r, gd_store *s, MDB_txn *txn)
{
    int rc = GD_OK;
    for (int games = 1; games >= 0 && rc == GD_OK; games--) {
        load_ctx c = {.r = r, .games = games};
        gd_arena_init(&c.scratch);
        rc = gd_store_scan(s, txn, &gd_tables[games ? 0 : 1], (gd_str){"", 0}, load_row, &c);
        gd_arena_free(&c.scratch);
    }
    return rc;
}
