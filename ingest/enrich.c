/* enrich.c -- the left join of SPEC §4, the derived fields, and the enriched
 * record as JSON (the field order of schemas/gaming_intelligence.avsc). */
#include "window.h"

void gd_enrich(gd_enriched *e, const gd_activity *a, const gd_refs *refs, int64_t now_ms)
{
    gd_enrich_with(e, a, gd_refs_game(refs, a->game_id), gd_refs_player(refs, a->player_id), now_ms);
}

void gd_enrich_with(gd_enriched *e, const gd_activity *a, const gd_game *game, const gd_player *player, int64_t now_ms)
{
    e->a = a;
    e->player = player;
    e->game = game;
    e->segment = a->score.set && a->score.v > 10000  ? GD_SEG_HIGH
                 : a->score.set && a->score.v > 5000 ? GD_SEG_MEDIUM
                                                     : GD_SEG_CASUAL;
    e->session_type = a->duration_seconds.set && a->duration_seconds.v > 3600   ? GD_SESS_EXTENDED
                      : a->duration_seconds.set && a->duration_seconds.v > 1800 ? GD_SESS_MEDIUM
                                                                                : GD_SESS_SHORT;
    e->has_purchase = a->in_game_purchases.set && a->in_game_purchases.v > 0;
    e->processing_timestamp = now_ms;
    e->total_sessions_1h = (gd_int){0};
    e->avg_score_1h = (gd_dbl){0};
    e->active_players_count = (gd_int){0};
}

static gd_value str_value(gd_str s)
{
    return s.p ? (gd_value){.t = GD_V_STR, .s = s} : (gd_value){.t = GD_V_NULL};
}
static gd_value int_value(gd_int i)
{
    return i.set ? (gd_value){.t = GD_V_INT, .i = i.v} : (gd_value){.t = GD_V_NULL};
}
static gd_value dbl_value(gd_dbl d)
{
    return d.set ? (gd_value){.t = GD_V_DBL, .d = d.v} : (gd_value){.t = GD_V_NULL};
}

gd_value gd_enriched_field(const gd_enriched *e, gd_field f)
{
    static const gd_str segments[] = {{"HIGH_PERFORMER", 14}, {"MEDIUM_PERFORMER", 16}, {"CASUAL_PLAYER", 13}};
    static const gd_str session_types[] = {{"EXTENDED_SESSION", 16}, {"MEDIUM_SESSION", 14}, {"SHORT_SESSION", 13}};
    const gd_activity *a = e->a;
    const gd_game *g = e->game;
    const gd_player *p = e->player;
    switch (f) {
    case GD_F_NONE:
    case GD_F_COUNT: return (gd_value){.t = GD_V_NULL};
    case GD_F_GAME_ID: return str_value(a->game_id);
    case GD_F_PLAYER_ID: return str_value(a->player_id);
    case GD_F_SESSION_ID: return str_value(a->session_id);
    case GD_F_ACTIVITY_TYPE: return str_value(a->activity_type);
    case GD_F_ACTIVITY_ID: return str_value(a->activity_id);
    case GD_F_SCORE: return int_value(a->score);
    case GD_F_DURATION: return int_value(a->duration_seconds);
    case GD_F_ACHIEVEMENTS: return int_value(a->achievements_unlocked);
    case GD_F_PURCHASES: return dbl_value(a->in_game_purchases);
    case GD_F_EVENT_TIMESTAMP: return (gd_value){.t = GD_V_INT, .i = a->activity_timestamp};
    case GD_F_PROCESSING_TIMESTAMP: return (gd_value){.t = GD_V_INT, .i = e->processing_timestamp};
    case GD_F_LAG_MS:
        return (gd_value){.t = GD_V_INT, .i = e->processing_timestamp - a->activity_timestamp};
    case GD_F_GAME_NAME: return str_value(g ? g->game_name : GD_STR_NULL);
    case GD_F_GAME_GENRE: return str_value(g ? g->genre : GD_STR_NULL);
    case GD_F_GAME_PUBLISHER: return str_value(g ? g->publisher : GD_STR_NULL);
    case GD_F_GAME_PLATFORM: return str_value(g ? g->platform : GD_STR_NULL);
    case GD_F_GAME_RATING: return dbl_value(g ? g->rating : (gd_dbl){0});
    case GD_F_PLAYER_USERNAME: return str_value(p ? p->username : GD_STR_NULL);
    case GD_F_PLAYER_EMAIL: return str_value(p ? p->email : GD_STR_NULL);
    case GD_F_PLAYER_LEVEL: return int_value(p ? p->level : (gd_int){0});
    case GD_F_PLAYER_COUNTRY: return str_value(p ? p->country : GD_STR_NULL);
    case GD_F_PLAYER_STATUS: return str_value(p ? p->account_status : GD_STR_NULL);
    case GD_F_PLAYER_SEGMENT: return str_value(segments[e->segment]);
    case GD_F_SESSION_TYPE: return str_value(session_types[e->session_type]);
    case GD_F_HAS_PURCHASE: return (gd_value){.t = GD_V_BOOL, .i = e->has_purchase};
    case GD_F_TOTAL_SESSIONS_1H: return int_value(e->total_sessions_1h);
    case GD_F_AVG_SCORE_1H: return dbl_value(e->avg_score_1h);
    case GD_F_ACTIVE_PLAYERS_COUNT: return int_value(e->active_players_count);
    }
    return (gd_value){.t = GD_V_NULL};
}

/* OUT(name, field, type, topic, source field): the name, the name as a JSON
 * key with its colon, and the source field it copies (NULL: computed). */
#define OUT(n, f, t, topic, from) {#n, "\"" #n "\":", sizeof "\"" #n "\":" - 1, f, GD_T_##t, GD_TOPIC_##topic, from}
const gd_output_field gd_output_fields[] = {
    OUT(game_id, GD_F_GAME_ID, STRING, ACTIVITY, "game_id"),
    OUT(game_name, GD_F_GAME_NAME, STRING, GAMES, "game_name"),
    OUT(game_genre, GD_F_GAME_GENRE, STRING, GAMES, "genre"),
    OUT(player_id, GD_F_PLAYER_ID, STRING, ACTIVITY, "player_id"),
    OUT(player_username, GD_F_PLAYER_USERNAME, STRING, PLAYERS, "username"),
    OUT(player_email, GD_F_PLAYER_EMAIL, STRING, PLAYERS, "email"),
    OUT(player_level, GD_F_PLAYER_LEVEL, INTEGER, PLAYERS, "level"),
    OUT(activity_type, GD_F_ACTIVITY_TYPE, STRING, ACTIVITY, "activity_type"),
    OUT(session_id, GD_F_SESSION_ID, STRING, ACTIVITY, "session_id"),
    OUT(score, GD_F_SCORE, BIGINT, ACTIVITY, "score"),
    OUT(duration_seconds, GD_F_DURATION, INTEGER, ACTIVITY, "duration_seconds"),
    OUT(total_sessions_1h, GD_F_TOTAL_SESSIONS_1H, BIGINT, UNKNOWN, NULL),
    OUT(avg_score_1h, GD_F_AVG_SCORE_1H, DOUBLE, UNKNOWN, NULL),
    OUT(active_players_count, GD_F_ACTIVE_PLAYERS_COUNT, BIGINT, UNKNOWN, NULL),
    OUT(event_timestamp, GD_F_EVENT_TIMESTAMP, BIGINT, ACTIVITY, "activity_timestamp"),
    OUT(processing_timestamp, GD_F_PROCESSING_TIMESTAMP, BIGINT, UNKNOWN, NULL),
    OUT(activity_id, GD_F_ACTIVITY_ID, STRING, ACTIVITY, "activity_id"),
    OUT(achievements_unlocked, GD_F_ACHIEVEMENTS, INTEGER, ACTIVITY, "achievements_unlocked"),
    OUT(in_game_purchases, GD_F_PURCHASES, DOUBLE, ACTIVITY, "in_game_purchases"),
    OUT(player_country, GD_F_PLAYER_COUNTRY, STRING, PLAYERS, "country"),
    OUT(player_status, GD_F_PLAYER_STATUS, STRING, PLAYERS, "account_status"),
    OUT(game_publisher, GD_F_GAME_PUBLISHER, STRING, GAMES, "publisher"),
    OUT(game_platform, GD_F_GAME_PLATFORM, STRING, GAMES, "platform"),
    OUT(game_rating, GD_F_GAME_RATING, DOUBLE, GAMES, "rating"),
    OUT(player_segment, GD_F_PLAYER_SEGMENT, STRING, UNKNOWN, NULL),
    OUT(session_type, GD_F_SESSION_TYPE, STRING, UNKNOWN, NULL),
    OUT(has_purchase, GD_F_HAS_PURCHASE, BOOLEAN, UNKNOWN, NULL),
};
#undef OUT
const size_t gd_output_field_count = sizeof gd_output_fields / sizeof gd_output_fields[0];

void gd_render_enriched(const gd_enriched *e, gd_buf *b)
{
    for (size_t i = 0; i < gd_output_field_count; i++) {
        const gd_output_field *f = &gd_output_fields[i];
        gd_buf_putc(b, i ? ',' : '{');
        gd_buf_put(b, f->json_key, f->json_key_len);
        gd_json_put_value(b, gd_enriched_field(e, f->field));
    }
    gd_buf_putc(b, '}');
}
