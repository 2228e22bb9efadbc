/* gamingd.h -- the shared types of gamingd.
 *
 * Every layer (ingest, store, api, server) speaks in these types, so they live
 * in one header: the source record as it leaves a source, the decoded activity
 * and reference rows, the enriched record, and the field identifiers that the
 * table definitions (store/tables.h) use to name what they aggregate.
 *
 * Strings are borrowed spans (gd_str): a pointer and a length into a buffer
 * that outlives the use; p == NULL means SQL NULL. Decoding never copies a
 * field it can point at. */
#ifndef GAMINGD_H
#define GAMINGD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GD_VERSION "0.1.0"

/* Return codes shared by every layer: 0 is success, negatives are errors. */
enum {
    GD_OK = 0,
    GD_ERR = -1,      /* generic failure, message logged by the callee */
    GD_EOF = -2,      /* source has no more records, now or ever */
    GD_AGAIN = -3,    /* source has no record right now; try later */
    GD_EBADREC = -4,  /* the record cannot be decoded or lacks a field */
    GD_ENOMEM = -5,
    GD_ETIMEDOUT = -6, /* a request's work passed its deadline and was stopped */
    GD_EUNAVAIL = -7,  /* the answer needs another instance, which cannot give it now */
};

typedef struct {
    const char *p; /* NULL: SQL NULL */
    uint32_t len;
} gd_str;

#define GD_STR_NULL ((gd_str){NULL, 0})
static inline bool gd_str_null(gd_str s) { return s.p == NULL; }
bool gd_str_eq(gd_str a, gd_str b);
bool gd_str_eq_nocase(gd_str a, gd_str b); /* ASCII case-insensitive */
gd_str gd_str_c(const char *cstr);

typedef enum {
    GD_TOPIC_GAMES = 0,
    GD_TOPIC_PLAYERS,
    GD_TOPIC_ACTIVITY,
    GD_TOPIC_COUNT,
    GD_TOPIC_UNKNOWN = GD_TOPIC_COUNT,
} gd_topic;

/* One record as a source hands it over: which topic, the record key, and the
 * value bytes (value.p == NULL is a tombstone). */
typedef enum { GD_REC_SOURCE = 0, GD_REC_ROUTE, GD_REC_CHANGELOG, GD_REC_PUSH } gd_record_kind;
typedef struct {
    gd_topic topic;
    gd_str key;
    gd_str value;
    /* Kafka: where it was read, and in partitioned mode (ingest/route.c)
     * whether it comes from an internal topic (topic is then unknown) */
    int32_t partition;
    int64_t offset;
    gd_record_kind kind;
    uint8_t route; /* GD_REC_ROUTE: which */
} gd_record;

/* Event times beyond year 9999 are refused, so window arithmetic never
 * overflows. */
#define GD_MAX_TIMESTAMP 253402300799999LL

/* A nullable number. */
typedef struct {
    bool set;
    int64_t v;
} gd_int;
typedef struct {
    bool set;
    double v;
} gd_dbl;

typedef struct {
    gd_str activity_id, player_id, game_id, session_id, activity_type;
    int64_t activity_timestamp; /* required */
    gd_int score, duration_seconds, achievements_unlocked;
    gd_dbl in_game_purchases;
} gd_activity;

typedef struct {
    gd_str game_id, game_name, genre, publisher, release_date, platform;
    gd_dbl rating, price;
} gd_game;

typedef struct {
    gd_str player_id, username, email, created_date, country, account_status;
    gd_int level;
    gd_dbl total_playtime_hours;
} gd_player;

typedef enum { GD_SEG_HIGH, GD_SEG_MEDIUM, GD_SEG_CASUAL } gd_segment;
typedef enum { GD_SESS_EXTENDED, GD_SESS_MEDIUM, GD_SESS_SHORT } gd_session_type;

/* An activity joined with the reference rows as they stood when it was
 * processed, plus the derived fields of SPEC §4. */
typedef struct {
    const gd_activity *a;
    const gd_player *player; /* NULL: no row */
    const gd_game *game;     /* NULL: no row */
    gd_segment segment;
    gd_session_type session_type;
    bool has_purchase;
    int64_t processing_timestamp;
    uint64_t seq; /* its number in the enriched stream: the push events' id */
    gd_int total_sessions_1h;
    gd_dbl avg_score_1h;
    gd_int active_players_count;
} gd_enriched;

/* Fields of the enriched record: what tables group by and aggregate, what
 * the output record carries (ingest.h lists it in order), what stream
 * filters will match. */
typedef enum {
    GD_F_NONE = 0,
    GD_F_GAME_ID,
    GD_F_PLAYER_ID,
    GD_F_SESSION_ID,
    GD_F_ACTIVITY_TYPE,
    GD_F_SCORE,
    GD_F_DURATION,
    GD_F_ACHIEVEMENTS,
    GD_F_PURCHASES,
    GD_F_GAME_NAME,
    GD_F_GAME_GENRE,
    GD_F_PLAYER_USERNAME,
    GD_F_PLAYER_SEGMENT,
    GD_F_LAG_MS, /* processing_timestamp - event_timestamp */
    GD_F_ACTIVITY_ID,
    GD_F_EVENT_TIMESTAMP,
    GD_F_PROCESSING_TIMESTAMP,
    GD_F_PLAYER_EMAIL,
    GD_F_PLAYER_LEVEL,
    GD_F_PLAYER_COUNTRY,
    GD_F_PLAYER_STATUS,
    GD_F_GAME_PUBLISHER,
    GD_F_GAME_PLATFORM,
    GD_F_GAME_RATING,
    GD_F_SESSION_TYPE,
    GD_F_HAS_PURCHASE,
    GD_F_TOTAL_SESSIONS_1H,
    GD_F_AVG_SCORE_1H,
    GD_F_ACTIVE_PLAYERS_COUNT,
    GD_F_COUNT
} gd_field;

/* GD_V_ARRAY and GD_V_MAP (what TOPK, COLLECT_LIST, HISTOGRAM, ... give)
 * hold their elements encoded in s (server/util.h: gd_list). */
typedef enum { GD_V_NULL, GD_V_INT, GD_V_DBL, GD_V_STR, GD_V_BOOL, GD_V_ARRAY, GD_V_MAP } gd_vtype;
typedef struct {
    gd_vtype t;
    union {
        int64_t i; /* GD_V_INT, and GD_V_BOOL as 0 or 1 */
        double d;
        gd_str s;  /* GD_V_STR; GD_V_ARRAY and GD_V_MAP: the encoded elements */
    };
} gd_value;

/* Personal data is an attribute of a column, declared on the source
 * columns (PII in sql/builtin.sql) and carried through every expression
 * the planner binds: a column copied from a personal one holds the same
 * values, one computed from it (a function, CASE, an aggregate, a group
 * key made of an expression) holds values derived from them. Readers
 * without the pii scope see a copy masked as ***@domain, a derived value
 * as ***, and may not filter, order, group or compare on either. */
typedef enum {
    GD_PII_NONE = 0,
    GD_PII_COPY,    /* the personal values themselves (an email address) */
    GD_PII_DERIVED, /* computed from personal values */
} gd_pii;

/* The value of one field of an enriched record. */
gd_value gd_enriched_field(const gd_enriched *e, gd_field f);


/* Wall clock in epoch milliseconds, and a monotonic clock in nanoseconds. */
int64_t gd_now_ms(void);
int64_t gd_mono_ns(void);
/* Sleeps about ms milliseconds (a signal may cut it short). */
void gd_sleep_ms(int64_t ms);

/* Logging to stderr with a level tag; gd_log_limited drops repeats of the same
 * call site beyond a few per second (bad records can arrive by the million). */
void gd_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define gd_info(...) gd_log("info", __VA_ARGS__)
#define gd_warn(...) gd_log("warn", __VA_ARGS__)
#define gd_error(...) gd_log("error", __VA_ARGS__)
typedef struct {
    int64_t window_start_ms;
    uint32_t in_window;
    uint64_t suppressed;
} gd_ratelimit;
bool gd_ratelimit_allow(gd_ratelimit *rl);

#endif
