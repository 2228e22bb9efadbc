/* generator.c -- the synthetic gaming world, as a live source and as a file.
 *
 * One generator produces records for all three topics: first every game and
 * player, then activity events interleaved with what real topics carry and
 * what the pipeline must survive: reference updates and tombstones mid-stream
 * (and re-creation later), activity for unknown players and games, nulls in
 * optional fields, out-of-order events (up to two minutes back, or one to six
 * hours back: windows that left memory but are open), late ones (25 hours
 * back, past every window's grace), and in files a few malformed records. Everything is drawn from one splitmix64 stream, so a seed gives
 * the same records every time; the position of a live generator is the number
 * of records it has produced, and a restart replays the stream to it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ingest.h"

enum { NGAMES = 24, NPLAYERS = 2000 };

static const char *genres[] = {"Action", "RPG", "Strategy", "Puzzle", "Sports", "Racing", "Shooter", "Adventure"};
static const char *platforms[] = {"PC", "PlayStation", "Xbox", "Switch", "Mobile"};
static const char *publishers[] = {"Nova Interactive", "Redline Studios", "Blue Owl Games", "Pixel Forge", "Northwind"};
static const char *countries[] = {"US", "GB", "DE", "FR", "JP", "BR", "IN", "KR", "CA", "SE"};
static const char *statuses[] = {"active", "active", "active", "suspended", "inactive"};
static const char *activity_types[] = {"login", "match_start", "match_end", "level_complete", "achievement", "purchase", "logout"};
static const char *adjectives[] = {"Crimson", "Silent", "Eternal", "Neon", "Savage", "Hidden", "Iron", "Lost"};
static const char *nouns[] = {"Legends", "Frontier", "Odyssey", "Arena", "Kingdom", "Drift", "Protocol", "Echoes"};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

struct gd_generator {
    gd_generator_opts o;
    uint64_t rng;
    uint64_t records;    /* records produced */
    uint64_t activities; /* activity records produced */
    uint32_t session_no[NPLAYERS];
    bool player_deleted[NPLAYERS];
    bool game_deleted[NGAMES];
    int player_level[NPLAYERS];
};

static uint64_t next_u64(gd_generator *g)
{
    uint64_t z = (g->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static uint32_t below(gd_generator *g, uint32_t n) { return (uint32_t)(next_u64(g) % n); }
static double unit(gd_generator *g) { return (double)(next_u64(g) >> 11) / 9007199254740992.0; }
static bool chance(gd_generator *g, double p) { return unit(g) < p; }

gd_generator *gd_generator_new(const gd_generator_opts *o)
{
    gd_generator *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->o = *o;
    g->rng = o->seed;
    for (int i = 0; i < NPLAYERS; i++) g->player_level[i] = 1 + (int)(i * 7 % 60);
    return g;
}

void gd_generator_free(gd_generator *g) { free(g); }
uint64_t gd_generator_count(const gd_generator *g) { return g->records; }
uint64_t gd_generator_activities(const gd_generator *g) { return g->activities; }

static void field_sep(gd_buf *b)
{
    if (b->len > 1) gd_buf_putc(b, ',');
}
static void put_key(gd_buf *b, const char *k)
{
    field_sep(b);
    gd_buf_putc(b, '"');
    gd_buf_puts(b, k);
    gd_buf_puts(b, "\":");
}
static void put_s(gd_buf *b, const char *k, const char *v)
{
    put_key(b, k);
    gd_json_put_cstr(b, v);
}
static void put_i(gd_buf *b, const char *k, int64_t v)
{
    put_key(b, k);
    gd_json_put_int(b, v);
}
static void put_d(gd_buf *b, const char *k, double v)
{
    put_key(b, k);
    gd_json_put_dbl(b, v);
}
static void put_null(gd_buf *b, const char *k)
{
    put_key(b, k);
    gd_buf_puts(b, "null");
}

static void game_id(char *out, size_t n, int i) { snprintf(out, n, "game_%03d", i + 1); }
static void player_id(char *out, size_t n, int i) { snprintf(out, n, "player_%05d", i + 1); }

static void emit_game(gd_generator *g, int i, gd_buf *key, gd_buf *v)
{
    char id[32], name[64], date[16];
    game_id(id, sizeof id, i);
    gd_buf_puts(key, id);
    snprintf(name, sizeof name, "%s %s", adjectives[i % COUNT_OF(adjectives)],
             nouns[(i / COUNT_OF(adjectives) + i) % COUNT_OF(nouns)]);
    snprintf(date, sizeof date, "20%02d-%02d-%02d", 15 + i % 10, 1 + i % 12, 1 + i % 28);
    gd_buf_putc(v, '{');
    put_s(v, "game_id", id);
    put_s(v, "game_name", name);
    if (i % 11 == 10) put_null(v, "genre"); /* a game without genre: a null group key */
    else put_s(v, "genre", genres[i % COUNT_OF(genres)]);
    put_s(v, "publisher", publishers[i % COUNT_OF(publishers)]);
    put_s(v, "release_date", date);
    put_s(v, "platform", platforms[i % COUNT_OF(platforms)]);
    put_d(v, "rating", round((2.5 + unit(g) * 2.5) * 10) / 10);
    put_d(v, "price", (double)(below(g, 7) * 1000 + 999) / 100);
    gd_buf_putc(v, '}');
}

static void emit_player(gd_generator *g, int i, gd_buf *key, gd_buf *v)
{
    char id[32], user[48], email[80], date[16];
    player_id(id, sizeof id, i);
    gd_buf_puts(key, id);
    snprintf(user, sizeof user, "%s_%s%d", adjectives[i % COUNT_OF(adjectives)], "gamer", i + 1);
    snprintf(email, sizeof email, "player%d@example.com", i + 1);
    snprintf(date, sizeof date, "2024-%02d-%02d", 1 + i % 12, 1 + i % 28);
    gd_buf_putc(v, '{');
    put_s(v, "player_id", id);
    put_s(v, "username", user);
    if (i % 20 == 19) put_null(v, "email");
    else put_s(v, "email", email);
    put_s(v, "created_date", date);
    put_s(v, "country", countries[i % COUNT_OF(countries)]);
    put_i(v, "level", g->player_level[i]);
    put_d(v, "total_playtime_hours", round(unit(g) * 5000) / 10);
    put_s(v, "account_status", statuses[below(g, COUNT_OF(statuses))]);
    gd_buf_putc(v, '}');
}

static int64_t event_time(gd_generator *g)
{
    int64_t base = g->o.live ? gd_now_ms()
                             : g->o.start_ms + (int64_t)((double)g->activities * 1000.0 / g->o.rate);
    double r = unit(g);
    if (r < 0.002) return base - 25 * 3600 * 1000LL - below(g, 3600 * 1000); /* late */
    if (r < 0.005) return base - 3600 * 1000LL - below(g, 5 * 3600 * 1000);  /* hours behind */
    if (r < 0.05) return base - below(g, 120 * 1000);                      /* out of order */
    return base;
}

static void emit_activity(gd_generator *g, gd_buf *key, gd_buf *v)
{
    char aid[32], pid[32], gid[32], sid[48];
    snprintf(aid, sizeof aid, "act_%010llu", (unsigned long long)g->activities + 1);
    gd_buf_puts(key, aid);
    /* a skewed choice of players so a few are very active */
    int p = (int)(pow(unit(g), 2.0) * NPLAYERS);
    int gm = (int)(pow(unit(g), 1.5) * NGAMES);
    if (chance(g, 0.01)) snprintf(pid, sizeof pid, "player_unknown_%u", below(g, 50));
    else player_id(pid, sizeof pid, p);
    if (chance(g, 0.01)) snprintf(gid, sizeof gid, "game_unknown_%u", below(g, 5));
    else game_id(gid, sizeof gid, gm);
    if (chance(g, 0.2)) g->session_no[p]++;
    snprintf(sid, sizeof sid, "sess_%d_%u", p + 1, g->session_no[p]);
    const char *type = activity_types[below(g, COUNT_OF(activity_types))];
    bool purchase = !strcmp(type, "purchase");
    int64_t ts = event_time(g);

    gd_buf_putc(v, '{');
    put_s(v, "activity_id", aid);
    put_s(v, "player_id", pid);
    put_s(v, "game_id", gid);
    if (chance(g, 0.02)) put_null(v, "session_id");
    else put_s(v, "session_id", sid);
    put_s(v, "activity_type", type);
    put_i(v, "activity_timestamp", ts);
    if (chance(g, 0.03)) put_null(v, "score");
    else put_i(v, "score", (int64_t)(pow(unit(g), 2.5) * 15000));
    if (chance(g, 0.03)) put_null(v, "duration_seconds");
    else if (!chance(g, 0.01)) put_i(v, "duration_seconds", (int64_t)(pow(unit(g), 1.7) * 7200));
    if (chance(g, 0.03)) put_null(v, "achievements_unlocked");
    else put_i(v, "achievements_unlocked", below(g, 4) == 0 ? below(g, 5) : 0);
    if (chance(g, 0.03)) put_null(v, "in_game_purchases");
    else put_d(v, "in_game_purchases", purchase ? (double)(below(g, 100) * 100 + 99) / 100 : 0.0);
    gd_buf_putc(v, '}');
    g->activities++;
}

/* One of the deliberate faults of a recorded file. */
static void emit_bad(gd_generator *g, gd_topic *topic, gd_buf *key, gd_buf *v)
{
    *topic = GD_TOPIC_ACTIVITY;
    gd_buf_puts(key, "bad");
    switch (below(g, 3)) {
    case 0: gd_buf_puts(v, "{\"activity_id\":\"broken\",\"player_id\":"); break; /* not JSON */
    case 1: gd_buf_puts(v, "{\"activity_id\":\"no_player\",\"game_id\":\"game_001\",\"activity_type\":\"login\",\"activity_timestamp\":1}"); break;
    default: gd_buf_puts(v, "{\"player_id\":\"player_00001\",\"game_id\":\"game_001\",\"activity_type\":\"login\",\"activity_timestamp\":\"yesterday\"}"); break;
    }
}

/* With probability p, deletes entity i unless it is deleted already: its key
 * goes to key and the caller emits a tombstone. Otherwise it exists again. */
static bool withdraw(gd_generator *g, bool *deleted, double p, void (*id)(char *, size_t, int),
                     int i, gd_buf *key)
{
    if (*deleted || !chance(g, p)) {
        *deleted = false;
        return false;
    }
    char buf[32];
    id(buf, sizeof buf, i);
    gd_buf_puts(key, buf);
    *deleted = true;
    return true;
}

bool gd_generator_next(gd_generator *g, gd_topic *topic, gd_buf *key, gd_buf *value)
{
    gd_buf_clear(key);
    gd_buf_clear(value);
    uint64_t n = g->records++;
    if (n < NGAMES) {
        *topic = GD_TOPIC_GAMES;
        emit_game(g, (int)n, key, value);
        return true;
    }
    if (n < NGAMES + NPLAYERS) {
        *topic = GD_TOPIC_PLAYERS;
        emit_player(g, (int)(n - NGAMES), key, value);
        return true;
    }
    double r = unit(g);
    if (r < 0.002) { /* a player changes: level up, status, or deleted */
        int p = (int)below(g, NPLAYERS);
        *topic = GD_TOPIC_PLAYERS;
        if (withdraw(g, &g->player_deleted[p], 0.1, player_id, p, key)) return false;
        g->player_level[p]++;
        emit_player(g, p, key, value);
    } else if (r < 0.0025) { /* a game changes or is withdrawn */
        int gm = (int)below(g, NGAMES);
        *topic = GD_TOPIC_GAMES;
        if (withdraw(g, &g->game_deleted[gm], 0.2, game_id, gm, key)) return false;
        emit_game(g, gm, key, value);
    } else if (r < 0.0025 + g->o.bad_ratio) {
        emit_bad(g, topic, key, value);
    } else {
        *topic = GD_TOPIC_ACTIVITY;
        emit_activity(g, key, value);
    }
    return true;
}

/* ---- gamingd generate --out FILE ---- */

/* ---- the live source ---- */

typedef struct {
    gd_source base;
    gd_generator *g;
    double rate;
    int64_t t0_ns;
    uint64_t paced_from; /* activities produced when pacing (re)started */
    gd_buf key, value;
} gen_source;

static int gen_next(gd_source *src, gd_record *rec)
{
    gen_source *s = (gen_source *)src;
    gd_generator *g = s->g;
    if (g->records >= NGAMES + NPLAYERS) {
        double due = (double)(gd_mono_ns() - s->t0_ns) / 1e9 * s->rate;
        if ((double)(g->activities - s->paced_from) >= due) return GD_AGAIN;
    }
    gd_topic topic;
    bool present = gd_generator_next(g, &topic, &s->key, &s->value);
    rec->topic = topic;
    rec->key = (gd_str){s->key.p, (uint32_t)s->key.len};
    rec->value = present ? (gd_str){s->value.p, (uint32_t)s->value.len} : GD_STR_NULL;
    return GD_OK;
}

static void gen_position(gd_source *src, gd_buf *out)
{
    gd_buf_put_u64be(out, ((gen_source *)src)->g->records);
}

static int gen_seek(gd_source *src, gd_str pos)
{
    gen_source *s = (gen_source *)src;
    if (pos.len != 8) return GD_ERR;
    uint64_t target = gd_get_u64be(pos.p);
    gd_topic topic;
    while (s->g->records < target) gd_generator_next(s->g, &topic, &s->key, &s->value);
    s->paced_from = s->g->activities;
    s->t0_ns = gd_mono_ns();
    return GD_OK;
}

static void gen_close(gd_source *src)
{
    gen_source *s = (gen_source *)src;
    gd_generator_free(s->g);
    gd_buf_free(&s->key);
    gd_buf_free(&s->value);
    free(s);
}

gd_source *gd_generator_source_open(const gd_config *cfg)
{
    gen_source *s = calloc(1, sizeof *s);
    gd_generator_opts o = {.seed = cfg->seed, .rate = cfg->rate, .live = true};
    if (!s || !(s->g = gd_generator_new(&o))) {
        free(s);
        return NULL;
    }
    s->base = (gd_source){.kind = "generator", .identity = "generator", .endless = true, .caught_up = true, .next = gen_next, .position = gen_position,
                          .seek = gen_seek, .close = gen_close};
    s->rate = cfg->rate;
    s->t0_ns = gd_mono_ns();
    return &s->base;
}
