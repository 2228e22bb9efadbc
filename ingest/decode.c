/* decode.c -- values of the three source topics into gd_activity, gd_game
 * and gd_player: JSON in one pass over the text, or Avro in the Confluent
 * wire format (avro.c), told apart by the first byte -- a JSON value never
 * starts with byte 0 -- so each record may be either (SPEC §3).
 *
 * Each topic's fields are a table of (name, type, offset into the struct);
 * one loop walks the object and stores what the table names. Unknown fields
 * are skipped (producers may add fields). A field of the wrong JSON type makes
 * the record undecodable, as a schema-checking deserializer would: better
 * counted and set aside than silently half-read. Integral doubles (5.0) are
 * accepted for integer fields. */
#include <string.h>

#include "window.h"

#define F(st, n, t) {#n, sizeof #n - 1, GD_FT_##t, offsetof(st, n)}
const gd_fieldspec gd_activity_fields[] = {
    F(gd_activity, activity_id, STR),       F(gd_activity, player_id, STR),
    F(gd_activity, game_id, STR),           F(gd_activity, session_id, STR),
    F(gd_activity, activity_type, STR),     F(gd_activity, activity_timestamp, TS),
    F(gd_activity, score, INT),             F(gd_activity, duration_seconds, INT),
    F(gd_activity, achievements_unlocked, INT), F(gd_activity, in_game_purchases, DBL),
    {NULL, 0, 0, 0}};
/* Key field first: rows are rendered in this order with the table key there. */
const gd_fieldspec gd_game_fields[] = {
    F(gd_game, game_id, STR),   F(gd_game, game_name, STR),    F(gd_game, genre, STR),
    F(gd_game, publisher, STR), F(gd_game, release_date, STR), F(gd_game, platform, STR),
    F(gd_game, rating, DBL),    F(gd_game, price, DBL),        {NULL, 0, 0, 0}};
const gd_fieldspec gd_player_fields[] = {
    F(gd_player, player_id, STR),    F(gd_player, username, STR),
    F(gd_player, email, STR),        F(gd_player, created_date, STR),
    F(gd_player, country, STR),      F(gd_player, level, INT),
    F(gd_player, total_playtime_hours, DBL), F(gd_player, account_status, STR),
    {NULL, 0, 0, 0}};
#undef F

typedef gd_fieldspec fspec;

static const fspec *find_field(const fspec *fs, gd_str key)
{
    for (; fs->name; fs++)
        if (fs->name_len == key.len && !memcmp(fs->name, key.p, key.len)) return fs;
    return NULL;
}

static bool integral(const gd_jval *v, int64_t *out)
{
    if (v->t == GD_J_INT) {
        *out = v->i;
        return true;
    }
    /* range first: converting a double outside int64 is undefined */
    if (v->t == GD_J_DBL && v->d > -9.2e18 && v->d < 9.2e18 && v->d == (double)(int64_t)v->d) {
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
    case GD_FT_STR:
        if (v->t != GD_J_STR) break;
        *(gd_str *)dst = v->s;
        return GD_OK;
    case GD_FT_INT: {
        int64_t i;
        if (!integral(v, &i)) break;
        *(gd_int *)dst = (gd_int){true, i};
        return GD_OK;
    }
    case GD_FT_TS:
        if (!integral(v, (int64_t *)dst)) break;
        *ts_seen = true;
        return GD_OK;
    case GD_FT_DBL:
        if (v->t != GD_J_INT && v->t != GD_J_DBL) break;
        *(gd_dbl *)dst = (gd_dbl){true, v->d};
        return GD_OK;
    }
    *why = f->type == GD_FT_STR ? "a string field holds another type" : "a number field holds another type";
    return GD_EBADREC;
}

static int decode_json(gd_str value, gd_arena *scratch, const fspec *fields, void *out,
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

static int decode_value(gd_avro_reader *avro, gd_str value, gd_arena *scratch, const fspec *fields,
                        void *out, bool *ts_seen, const char **why)
{
    if (value.len && value.p[0] == 0) return gd_avro_read(avro, value, fields, out, ts_seen, scratch, why);
    return decode_json(value, scratch, fields, out, ts_seen, why);
}

int gd_decode_activity(gd_avro_reader *avro, gd_str value, gd_arena *scratch, gd_activity *out,
                       const char **why)
{
    memset(out, 0, sizeof *out);
    bool ts = false;
    int rc = decode_value(avro, value, scratch, gd_activity_fields, out, &ts, why);
    if (rc) return rc;
    if (!out->player_id.p) *why = "player_id is missing";
    else if (!out->game_id.p) *why = "game_id is missing";
    else if (!out->activity_type.p) *why = "activity_type is missing";
    else if (!ts) *why = "activity_timestamp is missing";
    else if (out->activity_timestamp < 0 || out->activity_timestamp > GD_MAX_TIMESTAMP)
        *why = "activity_timestamp is out of range (0 to year 9999)";
    else return GD_OK;
    return GD_EBADREC;
}

int gd_decode_game(gd_avro_reader *avro, gd_str value, gd_arena *scratch, gd_game *out, const char **why)
{
    memset(out, 0, sizeof *out);
    bool unused = false;
    return decode_value(avro, value, scratch, gd_game_fields, out, &unused, why);
}

int gd_decode_player(gd_avro_reader *avro, gd_str value, gd_arena *scratch, gd_player *out, const char **why)
{
    memset(out, 0, sizeof *out);
    bool unused = false;
    return decode_value(avro, value, scratch, gd_player_fields, out, &unused, why);
}
