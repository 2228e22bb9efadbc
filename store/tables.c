/* tables.c -- definitions of the tables of SPEC §6 and the codecs of their
 * keys and rows. Adding a windowed table is adding an entry here. */
#include "tables.h"

#include "../server/json.h"

#include <string.h>

#define KEY(n, f) {n, f, GD_T_STRING}
#define COL(n, a, f, t) {n, a, f, t, 0, 0}
#define REF(n, t) {n, GD_AGG_LATEST, GD_F_NONE, t, 0, 0}
#define NO_HAVING .having_col = -1

enum { MIN = 60 * 1000, HOUR = 60 * MIN, DAY = 24 * HOUR };

const gd_tabledef gd_tables[] = {
    {.name = "gaming_games_table", .kind = GD_TABLE_GAMES, .nkeys = 1,
     .keys = {KEY("game_id", GD_F_NONE)}, .ncols = 7,
     .cols = {REF("game_name", GD_T_STRING), REF("genre", GD_T_STRING),
              REF("publisher", GD_T_STRING), REF("release_date", GD_T_STRING),
              REF("platform", GD_T_STRING), REF("rating", GD_T_DOUBLE),
              REF("price", GD_T_DOUBLE)},
     NO_HAVING},
    {.name = "gaming_players_table", .kind = GD_TABLE_PLAYERS, .nkeys = 1,
     .keys = {KEY("player_id", GD_F_NONE)}, .ncols = 7,
     .cols = {REF("username", GD_T_STRING), REF("email", GD_T_STRING),
              REF("created_date", GD_T_STRING), REF("country", GD_T_STRING),
              REF("level", GD_T_INTEGER), REF("total_playtime_hours", GD_T_DOUBLE),
              REF("account_status", GD_T_STRING)},
     NO_HAVING},
    {.name = "gaming_hourly_player_game_stats", .window_ms = HOUR, .nkeys = 2,
     .keys = {KEY("player_id", GD_F_PLAYER_ID), KEY("game_id", GD_F_GAME_ID)}, .ncols = 7,
     .cols = {COL("total_sessions_1h", GD_AGG_COUNT_STAR, GD_F_NONE, GD_T_BIGINT),
              COL("total_duration_1h", GD_AGG_SUM_INT, GD_F_DURATION, GD_T_BIGINT),
              COL("avg_score_1h", GD_AGG_AVG, GD_F_SCORE, GD_T_DOUBLE),
              COL("max_score_1h", GD_AGG_MAX_INT, GD_F_SCORE, GD_T_BIGINT),
              COL("total_achievements_1h", GD_AGG_SUM_INT, GD_F_ACHIEVEMENTS, GD_T_BIGINT),
              COL("total_purchases_1h", GD_AGG_SUM_DBL, GD_F_PURCHASES, GD_T_DOUBLE),
              COL("unique_sessions_1h", GD_AGG_COUNT_DISTINCT, GD_F_SESSION_ID, GD_T_BIGINT)},
     NO_HAVING},
    {.name = "gaming_active_players_5min", .window_ms = 5 * MIN, .nkeys = 1,
     .keys = {KEY("game_id", GD_F_GAME_ID)}, .ncols = 4,
     .cols = {COL("game_name", GD_AGG_LATEST, GD_F_GAME_NAME, GD_T_STRING),
              COL("active_players_count", GD_AGG_COUNT_DISTINCT, GD_F_PLAYER_ID, GD_T_BIGINT),
              COL("total_activities", GD_AGG_COUNT_STAR, GD_F_NONE, GD_T_BIGINT),
              COL("avg_session_duration", GD_AGG_AVG, GD_F_DURATION, GD_T_DOUBLE)},
     NO_HAVING},
    {.name = "gaming_top_performers_hourly", .window_ms = HOUR, .nkeys = 2,
     .keys = {KEY("game_id", GD_F_GAME_ID), KEY("player_id", GD_F_PLAYER_ID)}, .ncols = 4,
     .cols = {COL("player_username", GD_AGG_LATEST, GD_F_PLAYER_USERNAME, GD_T_STRING),
              COL("total_score", GD_AGG_SUM_INT, GD_F_SCORE, GD_T_BIGINT),
              COL("activity_count", GD_AGG_COUNT_STAR, GD_F_NONE, GD_T_BIGINT),
              COL("best_score", GD_AGG_MAX_INT, GD_F_SCORE, GD_T_BIGINT)},
     .having_col = 1, .having_gt = 1000},
    {.name = "gaming_revenue_analytics", .window_ms = HOUR, .nkeys = 1,
     .keys = {KEY("game_id", GD_F_GAME_ID)}, .purchases_only = true, .ncols = 5,
     .cols = {COL("game_name", GD_AGG_LATEST, GD_F_GAME_NAME, GD_T_STRING),
              COL("unique_paying_users", GD_AGG_COUNT_DISTINCT, GD_F_PLAYER_ID, GD_T_BIGINT),
              COL("total_revenue", GD_AGG_SUM_DBL, GD_F_PURCHASES, GD_T_DOUBLE),
              COL("avg_purchase_value", GD_AGG_AVG, GD_F_PURCHASES, GD_T_DOUBLE),
              COL("total_purchase_events", GD_AGG_COUNT_STAR, GD_F_NONE, GD_T_BIGINT)},
     NO_HAVING},
    {.name = "gaming_genre_engagement", .window_ms = HOUR, .nkeys = 1,
     .keys = {KEY("game_genre", GD_F_GAME_GENRE)}, .ncols = 4,
     .cols = {COL("unique_players", GD_AGG_COUNT_DISTINCT, GD_F_PLAYER_ID, GD_T_BIGINT),
              COL("total_activities", GD_AGG_COUNT_STAR, GD_F_NONE, GD_T_BIGINT),
              COL("avg_session_duration", GD_AGG_AVG, GD_F_DURATION, GD_T_DOUBLE),
              COL("total_achievements", GD_AGG_SUM_INT, GD_F_ACHIEVEMENTS, GD_T_BIGINT)},
     NO_HAVING},
    {.name = "gaming_player_segments_hourly", .window_ms = HOUR, .nkeys = 1,
     .keys = {KEY("player_segment", GD_F_PLAYER_SEGMENT)}, .ncols = 3,
     .cols = {COL("player_count", GD_AGG_COUNT_DISTINCT, GD_F_PLAYER_ID, GD_T_BIGINT),
              COL("avg_score", GD_AGG_AVG, GD_F_SCORE, GD_T_DOUBLE),
              COL("avg_session_duration", GD_AGG_AVG, GD_F_DURATION, GD_T_DOUBLE)},
     NO_HAVING},
    {.name = "gaming_high_value_players_daily", .window_ms = DAY, .nkeys = 2,
     .keys = {KEY("player_id", GD_F_PLAYER_ID), KEY("game_id", GD_F_GAME_ID)},
     .purchases_only = true, .ncols = 4,
     .cols = {COL("player_username", GD_AGG_LATEST, GD_F_PLAYER_USERNAME, GD_T_STRING),
              COL("game_name", GD_AGG_LATEST, GD_F_GAME_NAME, GD_T_STRING),
              COL("total_spent", GD_AGG_SUM_DBL, GD_F_PURCHASES, GD_T_DOUBLE),
              COL("purchase_count", GD_AGG_COUNT_STAR, GD_F_NONE, GD_T_BIGINT)},
     NO_HAVING},
    {.name = "gaming_processing_lag_1min", .window_ms = MIN, .nkeys = 1,
     .keys = {KEY("game_id", GD_F_GAME_ID)}, .ncols = 4,
     .cols = {COL("game_name", GD_AGG_LATEST, GD_F_GAME_NAME, GD_T_STRING),
              COL("event_count", GD_AGG_COUNT_STAR, GD_F_NONE, GD_T_BIGINT),
              COL("max_lag_ms", GD_AGG_MAX_INT, GD_F_LAG_MS, GD_T_BIGINT),
              COL("avg_lag_ms", GD_AGG_AVG, GD_F_LAG_MS, GD_T_DOUBLE)},
     NO_HAVING},
    {.name = "gaming_data_quality_5min", .window_ms = 5 * MIN, .nkeys = 0, .ncols = 5,
     .cols = {COL("total_records", GD_AGG_COUNT_STAR, GD_F_NONE, GD_T_BIGINT),
              COL("records_with_game_name", GD_AGG_COUNT, GD_F_GAME_NAME, GD_T_BIGINT),
              COL("records_with_username", GD_AGG_COUNT, GD_F_PLAYER_USERNAME, GD_T_BIGINT),
              {"game_enrichment_rate", GD_AGG_PERCENT, GD_F_NONE, GD_T_DOUBLE, 1, 0},
              {"player_enrichment_rate", GD_AGG_PERCENT, GD_F_NONE, GD_T_DOUBLE, 2, 0}},
     NO_HAVING},
};
const size_t gd_table_count = sizeof gd_tables / sizeof gd_tables[0];

const gd_tabledef *gd_table_find(const char *name, size_t len)
{
    for (size_t i = 0; i < gd_table_count; i++)
        if (strlen(gd_tables[i].name) == len && !memcmp(gd_tables[i].name, name, len))
            return &gd_tables[i];
    return NULL;
}

size_t gd_table_index(const gd_tabledef *t) { return (size_t)(t - gd_tables); }

const char *gd_coltype_name(gd_coltype t)
{
    switch (t) {
    case GD_T_STRING: return "STRING";
    case GD_T_BIGINT: return "BIGINT";
    case GD_T_INTEGER: return "INTEGER";
    case GD_T_DOUBLE: return "DOUBLE";
    case GD_T_BOOLEAN: return "BOOLEAN";
    }
    return "STRING";
}

/* ---- keys ---- */

void gd_rowkey_encode(gd_buf *b, int64_t window_start, gd_str group_key)
{
    gd_buf_clear(b);
    gd_buf_put_u64be(b, (uint64_t)window_start ^ (1ULL << 63));
    gd_buf_put(b, group_key.p, group_key.len);
}

int64_t gd_rowkey_window(const void *key) { return (int64_t)(gd_get_u64be(key) ^ (1ULL << 63)); }

void gd_groupkey_append(gd_buf *b, gd_str v)
{
    uint32_t n = v.len > UINT16_MAX ? UINT16_MAX : v.len;
    gd_buf_put_u16be(b, (uint16_t)n);
    gd_buf_put(b, v.p, n);
}

int gd_groupkey_split(const void *p, size_t len, int nkeys, gd_str *out)
{
    const char *s = p, *end = s + len;
    for (int k = 0; k < nkeys; k++) {
        if (end - s < 2) return GD_ERR;
        uint16_t n = gd_get_u16be(s);
        s += 2;
        if (end - s < n) return GD_ERR;
        out[k] = (gd_str){s, n};
        s += n;
    }
    return s == end ? GD_OK : GD_ERR;
}

/* ---- rows ---- */

enum { SLOT_BYTES = 16, NULL_LEN = UINT32_MAX };

static void put_u32(gd_buf *b, uint32_t v) { gd_buf_put(b, &v, 4); }

bool gd_table_has_sets(const gd_tabledef *t)
{
    for (int c = 0; c < t->ncols; c++)
        if (t->cols[c].agg == GD_AGG_COUNT_DISTINCT) return true;
    return false;
}

void gd_row_encode(const gd_tabledef *t, const gd_slot *slots, const gd_dict *dict, gd_buf *out, gd_buf *sets)
{
    gd_buf_clear(out);
    for (int c = 0; c < t->ncols; c++) {
        gd_buf_put(out, &slots[c].n, 8);
        gd_buf_put(out, &slots[c].v, 8);
    }
    for (int c = 0; c < t->ncols; c++) {
        if (t->cols[c].agg != GD_AGG_LATEST) continue;
        gd_str s = slots[c].x.s;
        put_u32(out, s.p ? s.len : NULL_LEN);
        if (s.p) gd_buf_put(out, s.p, s.len);
    }
    if (sets) {
        gd_buf_clear(sets);
        out = sets;
    }
    for (int c = 0; c < t->ncols; c++) {
        if (t->cols[c].agg != GD_AGG_COUNT_DISTINCT) continue;
        const gd_idset *set = slots[c].x.set;
        put_u32(out, set ? set->count : 0);
        if (!set) continue;
        for (uint32_t i = 0; i < set->cap; i++) {
            if (!set->slots[i]) continue;
            gd_str member = gd_dict_string(dict, set->slots[i] - 1);
            put_u32(out, member.len);
            gd_buf_put(out, member.p, member.len);
        }
    }
}

static int get_u32(const char **s, const char *end, uint32_t *v)
{
    if (end - *s < 4) return GD_ERR;
    memcpy(v, *s, 4);
    *s += 4;
    return GD_OK;
}

/* Decodes the fixed part and LATEST strings; leaves *rest at the sets. */
static int decode_head(const gd_tabledef *t, const char *s, const char *end, gd_slot *slots,
                       const char **rest)
{
    if ((size_t)(end - s) < (size_t)t->ncols * SLOT_BYTES) return GD_ERR;
    for (int c = 0; c < t->ncols; c++) {
        memcpy(&slots[c].n, s, 8);
        memcpy(&slots[c].v, s + 8, 8);
        slots[c].x.s = GD_STR_NULL;
        s += SLOT_BYTES;
    }
    for (int c = 0; c < t->ncols; c++) {
        if (t->cols[c].agg != GD_AGG_LATEST) continue;
        uint32_t n;
        if (get_u32(&s, end, &n)) return GD_ERR;
        if (n == NULL_LEN) continue;
        if ((size_t)(end - s) < n) return GD_ERR;
        slots[c].x.s = (gd_str){s, n};
        s += n;
    }
    *rest = s;
    return GD_OK;
}

int gd_row_decode(const gd_tabledef *t, const void *p, size_t len, gd_slot *slots)
{
    const char *rest;
    return decode_head(t, p, (const char *)p + len, slots, &rest);
}

int gd_row_decode_full(const gd_tabledef *t, gd_str head, gd_str sets, gd_slot *slots, gd_arena *arena,
                       gd_dict *dict)
{
    const char *s, *end = head.p + head.len;
    if (decode_head(t, head.p, end, slots, &s)) return GD_ERR;
    if (sets.p) { /* stored apart; else they follow the head */
        if (s != end) return GD_ERR;
        s = sets.p;
        end = sets.p + sets.len;
    }
    for (int c = 0; c < t->ncols; c++) {
        if (t->cols[c].agg == GD_AGG_LATEST) slots[c].x.s = gd_arena_strdup(arena, slots[c].x.s);
    }
    for (int c = 0; c < t->ncols; c++) {
        if (t->cols[c].agg != GD_AGG_COUNT_DISTINCT) continue;
        gd_idset *set = gd_arena_alloc(arena, sizeof *set);
        memset(set, 0, sizeof *set);
        slots[c].x.set = set;
        uint32_t members;
        if (get_u32(&s, end, &members)) return GD_ERR;
        for (uint32_t m = 0; m < members; m++) {
            uint32_t n;
            if (get_u32(&s, end, &n) || (size_t)(end - s) < n) return GD_ERR;
            uint32_t id = gd_dict_intern(dict, (gd_str){s, n});
            if (gd_idset_add(set, id)) gd_dict_ref(dict, id);
            s += n;
        }
    }
    return s == end ? GD_OK : GD_ERR;
}

gd_value gd_row_column(const gd_tabledef *t, const gd_slot *slots, int c)
{
    const gd_coldef *col = &t->cols[c];
    const gd_slot *s = &slots[c];
    switch (col->agg) {
    case GD_AGG_COUNT_STAR:
    case GD_AGG_COUNT:
    case GD_AGG_COUNT_DISTINCT: return (gd_value){.t = GD_V_INT, .i = s->n};
    case GD_AGG_SUM_INT: return (gd_value){.t = GD_V_INT, .i = s->v.i};
    case GD_AGG_SUM_DBL: return (gd_value){.t = GD_V_DBL, .d = s->v.d};
    case GD_AGG_AVG:
        return s->n ? (gd_value){.t = GD_V_DBL, .d = s->v.d / (double)s->n}
                    : (gd_value){.t = GD_V_NULL};
    case GD_AGG_MAX_INT:
        return s->n ? (gd_value){.t = GD_V_INT, .i = s->v.i} : (gd_value){.t = GD_V_NULL};
    case GD_AGG_LATEST:
        return s->x.s.p ? (gd_value){.t = GD_V_STR, .s = s->x.s} : (gd_value){.t = GD_V_NULL};
    case GD_AGG_PERCENT: {
        int64_t den = slots[col->den].n;
        return den ? (gd_value){.t = GD_V_DBL, .d = (double)slots[col->num].n * 100.0 / (double)den}
                   : (gd_value){.t = GD_V_NULL};
    }
    }
    return (gd_value){.t = GD_V_NULL};
}

bool gd_row_visible(const gd_tabledef *t, const gd_slot *slots)
{
    if (t->having_col < 0) return true;
    gd_value v = gd_row_column(t, slots, t->having_col);
    return v.t == GD_V_INT && v.i > t->having_gt;
}

void gd_row_render(const gd_tabledef *t, const gd_str *keys, int64_t window_start,
                   const gd_slot *slots, gd_buf *out)
{
    gd_buf_putc(out, '{');
    for (int k = 0; k < t->nkeys; k++) {
        gd_json_put_cstr(out, t->keys[k].name);
        gd_buf_putc(out, ':');
        gd_json_put_str(out, keys[k]);
        gd_buf_putc(out, ',');
    }
    gd_buf_puts(out, "\"window_start\":");
    gd_json_put_int(out, window_start);
    gd_buf_puts(out, ",\"window_end\":");
    gd_json_put_int(out, window_start + t->window_ms);
    for (int c = 0; c < t->ncols; c++) {
        gd_buf_putc(out, ',');
        gd_json_put_cstr(out, t->cols[c].name);
        gd_buf_putc(out, ':');
        gd_json_put_value(out, gd_row_column(t, slots, c));
    }
    gd_buf_putc(out, '}');
}
