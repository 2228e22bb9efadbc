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

/* One block: the struct, then its strings. */
static void *copy_row(const void *src, size_t size, const gd_fieldspec *fields)
{
    size_t total = size;
    for (const gd_fieldspec *f = fields; f->name; f++)
        if (f->type == GD_FT_STR) total += ((const gd_str *)((const char *)src + f->offset))->len;
    char *block = malloc(total);
    if (!block) {
        gd_error("out of memory copying a reference row");
        abort();
    }
    memcpy(block, src, size);
    char *data = block + size;
    for (const gd_fieldspec *f = fields; f->name; f++) {
        gd_str *s = (gd_str *)(block + f->offset);
        if (f->type != GD_FT_STR || !s->p) continue;
        memcpy(data, s->p, s->len);
        s->p = data;
        data += s->len;
    }
    return block;
}

void gd_refs_init(gd_refs *r, const gd_catalog *cat)
{
    r->games_table = gd_catalog_reference(cat, GD_TABLE_GAMES);
    r->players_table = gd_catalog_reference(cat, GD_TABLE_PLAYERS);
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
    replace(&r->games, &r->dirty_games, key, copy_row(g, sizeof *g, gd_game_fields));
}

void gd_refs_put_player(gd_refs *r, gd_str key, const gd_player *p)
{
    replace(&r->players, &r->dirty_players, key, copy_row(p, sizeof *p, gd_player_fields));
}

void gd_refs_delete(gd_refs *r, gd_topic topic, gd_str key)
{
    bool created;
    gd_map *rows = topic == GD_TOPIC_GAMES ? &r->games : &r->players;
    gd_map *dirty = topic == GD_TOPIC_GAMES ? &r->dirty_games : &r->dirty_players;
    free(gd_map_del(rows, key));
    gd_map_upsert(dirty, key, &created)->val = (void *)1;
}

/* The row as a JSON object in field order, the table key as the key field. */
static void render_row(gd_str key, const void *row, const gd_fieldspec *fields, gd_buf *out)
{
    for (const gd_fieldspec *f = fields; f->name; f++) {
        gd_buf_putc(out, f == fields ? '{' : ',');
        gd_json_put_cstr(out, f->name);
        gd_buf_putc(out, ':');
        const void *v = (const char *)row + f->offset;
        if (f == fields) gd_json_put_str(out, key);
        else if (f->type == GD_FT_STR) gd_json_put_str(out, *(const gd_str *)v);
        else if (f->type == GD_FT_DBL && ((const gd_dbl *)v)->set) gd_json_put_dbl(out, ((const gd_dbl *)v)->v);
        else if (f->type == GD_FT_INT && ((const gd_int *)v)->set) gd_json_put_int(out, ((const gd_int *)v)->v);
        else gd_buf_puts(out, "null");
    }
    gd_buf_putc(out, '}');
}

void gd_render_fields(const gd_fieldspec *fields, const void *row, gd_buf *out)
{
    for (const gd_fieldspec *f = fields; f->name; f++) {
        gd_buf_putc(out, f == fields ? '{' : ',');
        gd_json_put_cstr(out, f->name);
        gd_buf_putc(out, ':');
        gd_json_put_value(out, gd_fieldspec_value(f, row));
    }
    gd_buf_putc(out, '}');
}

void gd_render_game(gd_str key, const gd_game *g, gd_buf *out) { render_row(key, g, gd_game_fields, out); }
void gd_render_player(gd_str key, const gd_player *p, gd_buf *out) { render_row(key, p, gd_player_fields, out); }

static int flush_table(const gd_refs *r, gd_map *rows, gd_map *dirty, bool games, gd_store *s, MDB_txn *txn,
                       gd_buf *buf)
{
    const gd_tabledef *t = games ? r->games_table : r->players_table;
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
    int rc = flush_table(r, &r->games, &r->dirty_games, true, s, txn, scratch);
    return rc ? rc : flush_table(r, &r->players, &r->dirty_players, false, s, txn, scratch);
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
        if (gd_decode_game(NULL, val, &c->scratch, &g, &why) == GD_OK)
            replace(&c->r->games, NULL, key, copy_row(&g, sizeof g, gd_game_fields));
    } else {
        gd_player p;
        if (gd_decode_player(NULL, val, &c->scratch, &p, &why) == GD_OK)
            replace(&c->r->players, NULL, key, copy_row(&p, sizeof p, gd_player_fields));
    }
    return 0;
}

int gd_refs_load(gd_refs *r, gd_store *s, MDB_txn *txn)
{
    int rc = GD_OK;
    for (int games = 1; games >= 0 && rc == GD_OK; games--) {
        load_ctx c = {.r = r, .games = games};
        gd_arena_init(&c.scratch);
        rc = gd_store_scan(s, txn, games ? r->games_table : r->players_table, (gd_str){"", 0}, load_row, &c);
        gd_arena_free(&c.scratch);
    }
    return rc;
}
