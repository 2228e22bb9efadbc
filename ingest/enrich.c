/* enrich.c -- the left join of SPEC §4, the derived fields, and the enriched
 * record as JSON (the field order of schemas/gaming_intelligence.avsc). */
#include "window.h"

const char *gd_segment_name(gd_segment s)
{
    static const char *names[] = {"HIGH_PERFORMER", "MEDIUM_PERFORMER", "CASUAL_PLAYER"};
    return names[s];
}

const char *gd_session_type_name(gd_session_type s)
{
    static const char *names[] = {"EXTENDED_SESSION", "MEDIUM_SESSION", "SHORT_SESSION"};
    return names[s];
}

void gd_enrich(gd_enriched *e, const gd_activity *a, const gd_refs *refs, int64_t now_ms)
{
    e->a = a;
    e->player = gd_refs_player(refs, a->player_id);
    e->game = gd_refs_game(refs, a->game_id);
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
    const gd_activity *a = e->a;
    switch (f) {
    case GD_F_NONE:
    case GD_F_COUNT: return (gd_value){.t = GD_V_NULL};
    case GD_F_GAME_ID: return str_value(a->game_id);
    case GD_F_PLAYER_ID: return str_value(a->player_id);
    case GD_F_SESSION_ID: return str_value(a->session_id);
    case GD_F_ACTIVITY_TYPE: return str_value(a->activity_type);
    case GD_F_SCORE: return int_value(a->score);
    case GD_F_DURATION: return int_value(a->duration_seconds);
    case GD_F_ACHIEVEMENTS: return int_value(a->achievements_unlocked);
    case GD_F_PURCHASES: return dbl_value(a->in_game_purchases);
    case GD_F_GAME_NAME: return str_value(e->game ? e->game->game_name : GD_STR_NULL);
    case GD_F_GAME_GENRE: return str_value(e->game ? e->game->genre : GD_STR_NULL);
    case GD_F_PLAYER_USERNAME: return str_value(e->player ? e->player->username : GD_STR_NULL);
    case GD_F_PLAYER_SEGMENT: {
        static const gd_str names[] = {{"HIGH_PERFORMER", 14}, {"MEDIUM_PERFORMER", 16}, {"CASUAL_PLAYER", 13}};
        return str_value(names[e->segment]);
    }
    case GD_F_LAG_MS:
        return (gd_value){.t = GD_V_INT, .i = e->processing_timestamp - a->activity_timestamp};
    }
    return (gd_value){.t = GD_V_NULL};
}

void gd_render_enriched(const gd_enriched *e, gd_buf *b)
{
    const gd_activity *a = e->a;
    const gd_game *g = e->game;
    const gd_player *p = e->player;
    gd_buf_puts(b, "{\"game_id\":");
    gd_json_put_str(b, a->game_id);
    gd_buf_puts(b, ",\"game_name\":");
    gd_json_put_str(b, g ? g->game_name : GD_STR_NULL);
    gd_buf_puts(b, ",\"game_genre\":");
    gd_json_put_str(b, g ? g->genre : GD_STR_NULL);
    gd_buf_puts(b, ",\"player_id\":");
    gd_json_put_str(b, a->player_id);
    gd_buf_puts(b, ",\"player_username\":");
    gd_json_put_str(b, p ? p->username : GD_STR_NULL);
    gd_buf_puts(b, ",\"player_email\":");
    gd_json_put_str(b, p ? p->email : GD_STR_NULL);
    gd_buf_puts(b, ",\"player_level\":");
    gd_json_put_value(b, int_value(p ? p->level : (gd_int){0}));
    gd_buf_puts(b, ",\"activity_type\":");
    gd_json_put_str(b, a->activity_type);
    gd_buf_puts(b, ",\"session_id\":");
    gd_json_put_str(b, a->session_id);
    gd_buf_puts(b, ",\"score\":");
    gd_json_put_value(b, int_value(a->score));
    gd_buf_puts(b, ",\"duration_seconds\":");
    gd_json_put_value(b, int_value(a->duration_seconds));
    gd_buf_puts(b, ",\"total_sessions_1h\":");
    gd_json_put_value(b, int_value(e->total_sessions_1h));
    gd_buf_puts(b, ",\"avg_score_1h\":");
    gd_json_put_value(b, dbl_value(e->avg_score_1h));
    gd_buf_puts(b, ",\"active_players_count\":");
    gd_json_put_value(b, int_value(e->active_players_count));
    gd_buf_puts(b, ",\"event_timestamp\":");
    gd_json_put_int(b, a->activity_timestamp);
    gd_buf_puts(b, ",\"processing_timestamp\":");
    gd_json_put_int(b, e->processing_timestamp);
    gd_buf_puts(b, ",\"activity_id\":");
    gd_json_put_str(b, a->activity_id);
    gd_buf_puts(b, ",\"achievements_unlocked\":");
    gd_json_put_value(b, int_value(a->achievements_unlocked));
    gd_buf_puts(b, ",\"in_game_purchases\":");
    gd_json_put_value(b, dbl_value(a->in_game_purchases));
    gd_buf_puts(b, ",\"player_country\":");
    gd_json_put_str(b, p ? p->country : GD_STR_NULL);
    gd_buf_puts(b, ",\"player_status\":");
    gd_json_put_str(b, p ? p->account_status : GD_STR_NULL);
    gd_buf_puts(b, ",\"game_publisher\":");
    gd_json_put_str(b, g ? g->publisher : GD_STR_NULL);
    gd_buf_puts(b, ",\"game_platform\":");
    gd_json_put_str(b, g ? g->platform : GD_STR_NULL);
    gd_buf_puts(b, ",\"game_rating\":");
    gd_json_put_value(b, dbl_value(g ? g->rating : (gd_dbl){0}));
    gd_buf_puts(b, ",\"player_segment\":");
    gd_json_put_cstr(b, gd_segment_name(e->segment));
    gd_buf_puts(b, ",\"session_type\":");
    gd_json_put_cstr(b, gd_session_type_name(e->session_type));
    gd_buf_puts(b, ",\"has_purchase\":");
    gd_buf_puts(b, e->has_purchase ? "true}" : "false}");
}
