/* decode.c -- JSON values of the three source topics into gd_activity,
 * gd_game and gd_player, in one pass over the text.
 *
 * Each topic's fields are a table of (name, type, offset into the struct);
 * one loop walks the object and stores what the table names. Unknown fields
 * are skipped (producers may add fields). A field of the wrong JSON type makes
 * the record undecodable, as a schema-checking deserializer would: better
 * counted and set aside than silently half-read. Integral doubles (5.0) are
 * accepted for integer fields. */
#include <string.h>

#include "ingest.h"

typedef enum { FT_STR, FT_INT, FT_DBL, FT_TS } ftype; /* FT_TS: required int */

typedef struct {
    const char *name;
    ftype type;
    size_t offset;
} fspec;

#define F(st, n, t) {#n, t, offsetof(st, n)}
static const fspec activity_fields[] = {
    F(gd_activity, activity_id, FT_STR),       F(gd_activity, player_id, FT_STR),
    F(gd_activity, game_id, FT_STR),           F(gd_activity, session_id, FT_STR),
    F(gd_activity, activity_type, FT_STR),     F(gd_activity, activity_timestamp, FT_TS),
    F(gd_activity, score, FT_INT),             F(gd_activity, duration_seconds, FT_INT),
    F(gd_activity, achievements_unlocked, FT_INT), F(gd_activity, in_game_purchases, FT_DBL),
    {NULL, 0, 0}};
static const fspec game_fields[] = {
    F(gd_game, game_id, FT_STR),  F(gd_game, game_name, FT_STR),    F(gd_game, genre, FT_STR),
    F(gd_game, publisher, FT_STR), F(gd_game, release_date, FT_STR), F(gd_game, platform, FT_STR),
    F(gd_game, rating, FT_DBL),   F(gd_game, price, FT_DBL),        {NULL, 0, 0}};
static const fspec player_fields[] = {
    F(gd_player, player_id, FT_STR),    F(gd_player, username, FT_STR),
    F(gd_player, email, FT_STR),        F(gd_player, created_date, FT_STR),
    F(gd_player, country, FT_STR),      F(gd_player, level, FT_INT),
    F(gd_player, total_playtime_hours, FT_DBL), F(gd_player, account_status, FT_STR),
    {NULL, 0, 0}};
#undef F

static const fspec *find_field(const fspec *fs, gd_str key)
{
    for (; fs->name; fs++)
        if (strlen(fs->name) == key.len && !memcmp(fs->name, key.p, key.len)) return fs;
    return NULL;
}

static bool integral(const gd_jval *v, int64_t *out)
{
    if (v->t == GD_J_INT) {
        *out = v->i;
        return true;
    }
    if (v->t == GD_J_DBL && v->d == (double)(int64_t)v->d && v->d > -9.2e18 && v->d < 9.2e18) {
        *out = (int64_t)v->d;
        return true;
    }
    return false;
}

static int store_field(const fspec *f, const gd_jval *v, char *base, bool *ts_seen,
                       const char **why)
{
    void *dst = base + f->offset;
    if (v->t == GD_J_NULL) return GD_OK; /* stays null */
    switch (f->type) {
    case FT_STR:
        if (v->t != GD_J_STR) break;
        *(gd_str *)dst = v->s;
        return GD_OK;
    case FT_INT: {
        int64_t i;
        if (!integral(v, &i)) break;
        *(gd_int *)dst = (gd_int){true, i};
        return GD_OK;
    }
    case FT_TS:
        if (!integral(v, (int64_t *)dst)) break;
        *ts_seen = true;
        return GD_OK;
    case FT_DBL:
        if (v->t != GD_J_INT && v->t != GD_J_DBL) break;
        *(gd_dbl *)dst = (gd_dbl){true, v->d};
        return GD_OK;
    }
    *why = f->type == FT_STR ? "a string field holds another type" : "a number field holds another type";
    return GD_EBADREC;
}

static int decode_object(gd_str value, gd_arena *scratch, const fspec *fields, void *out,
                         bool *ts_seen, const char **why)
{
    gd_json j;
    gd_json_init(&j, value, scratch);
    if (gd_json_object_begin(&j)) {
        *why = "value is not a JSON object";
        return GD_EBADREC;
    }
    gd_str key;
    int more;
    while ((more = gd_json_next_key(&j, &key)) == 1) {
        gd_jval v;
        if (gd_json_value(&j, &v)) break;
        const fspec *f = find_field(fields, key);
        if (f && store_field(f, &v, out, ts_seen, why)) return GD_EBADREC;
    }
    if (more != 0 || gd_json_end(&j)) {
        *why = "malformed JSON value";
        return GD_EBADREC;
    }
    return GD_OK;
}

int gd_decode_activity(gd_str value, gd_arena *scratch, gd_activity *out, const char **why)
{
    memset(out, 0, sizeof *out);
    bool ts = false;
    if (decode_object(value, scratch, activity_fields, out, &ts, why)) return GD_EBADREC;
    if (!out->player_id.p) *why = "player_id is missing";
    else if (!out->game_id.p) *why = "game_id is missing";
    else if (!out->activity_type.p) *why = "activity_type is missing";
    else if (!ts) *why = "activity_timestamp is missing";
    else if (out->activity_timestamp < 0 || out->activity_timestamp > GD_MAX_TIMESTAMP)
        *why = "activity_timestamp is out of range (0 to year 9999)";
    else return GD_OK;
    return GD_EBADREC;
}

int gd_decode_game(gd_str value, gd_arena *scratch, gd_game *out, const char **why)
{
    memset(out, 0, sizeof *out);
    bool unused = false;
    return decode_object(value, scratch, game_fields, out, &unused, why);
}

int gd_decode_player(gd_str value, gd_arena *scratch, gd_player *out, const char **why)
{
    memset(out, 0, sizeof *out);
    bool unused = false;
    return decode_object(value, scratch, player_fields, out, &unused, why);
}
