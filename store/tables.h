/* tables.h -- a materialized table as data, and its rows' codecs.
 *
 * Every table the engine maintains is one gd_tabledef, compiled from SQL
 * (sql/plan.c: the built-in tables from sql/builtin.sql, the user's from
 * CREATE TABLE AS SELECT): its window, the expressions it groups by, a
 * record filter (WHERE), its value columns and a HAVING. One piece of code
 * (ingest/window.c) maintains them all; the API lists and renders them from
 * the same definitions.
 *
 * A value column is an aggregate kept in a slot (COUNT, SUM, ...) over an
 * input column or expression, or an expression over the group's keys and
 * slots (COUNT(game_name) * 100.0 / COUNT(*)), whose slot is unused.
 * Aggregates that only such expressions or HAVING read get hidden slots
 * after the visible columns (nslots >= ncols).
 *
 * Aggregate state of one group is an array of gd_slot, one per slot. The
 * store keeps it in LMDB as a row value (the head):
 *   [nslots x 16 bytes: slot n, slot v]  fixed part, host byte order
 *   [each LATEST column: u32 len (UINT32_MAX = null), bytes]
 *   (the ARRAY and MAP aggregates -- TOPK, COLLECT_LIST, HISTOGRAM, ... --
 *   the same way, their bytes a gd_list; their slot v is 0, n the count)
 * and, for tables with COUNT_DISTINCT columns, the sets apart, under the
 * same key in a second database:
 *   [each COUNT_DISTINCT column: u32 members, then u32 len + bytes each]
 * (in memory a distinct set holds ids interned in a gd_dict; stored, it holds
 * the strings, so a row needs nothing else to be read back). Queries read
 * only heads: a week of rows scans a few MB instead of tens, since the exact
 * sets are most of a row's bytes. Rows written before the split hold their
 * sets inline after the head, and are read either way.
 *
 * Row keys: u64 big-endian window_start (sign bit flipped, so negative times
 * sort first; 0 for a table without windows), then each key column's value
 * as text (gd_key_text) with a u16 big-endian length. Rows of one window are
 * contiguous and windows sort by time. */
#ifndef GD_TABLES_H
#define GD_TABLES_H

#include "../server/intern.h"
#include "expr.h"

typedef enum {
    GD_AGG_COUNT_STAR,     /* COUNT(*): n */
    GD_AGG_COUNT,          /* COUNT(x): n = non-null values */
    GD_AGG_SUM_INT,        /* v.i, 0 when no value */
    GD_AGG_SUM_DBL,        /* v.d, 0 when no value */
    GD_AGG_AVG,            /* n non-null values, v.d their sum; null when n == 0 */
    GD_AGG_MAX_INT,        /* n > 0 when set, v.i */
    GD_AGG_MIN_INT,
    GD_AGG_MAX_DBL,        /* n > 0 when set, v.d */
    GD_AGG_MIN_DBL,
    GD_AGG_COUNT_DISTINCT, /* n members, the set beside the slot */
    GD_AGG_LATEST,         /* latest non-null string (keep_nulls: latest string or NULL) */
    GD_AGG_LATEST_NUM,     /* latest non-null number or boolean: n > 0 when set, v (keep_nulls: n 0 after a NULL) */
    GD_AGG_EARLIEST,       /* first non-null string (keep_nulls: the first value); n 1 once chosen */
    GD_AGG_EARLIEST_NUM,   /* first non-null number or boolean: n 1 when chosen with a value, 2 a NULL */
    GD_AGG_MIN_STR,        /* least string (byte order, which is code point order) */
    GD_AGG_MAX_STR,
    /* ARRAY and MAP aggregates: n elements (HISTOGRAM: n entries) in x.s, a
     * gd_list (server/util.h), at most `limit` and GD_LIST_MAX_BYTES */
    GD_AGG_TOPK,           /* the `limit` greatest non-null values, greatest first */
    GD_AGG_TOPK_DISTINCT,  /* the same, each value once */
    GD_AGG_COLLECT_LIST,   /* the values (NULLs too) in arrival order */
    GD_AGG_COLLECT_SET,    /* each value (NULL too) once, in order of first arrival */
    GD_AGG_HISTOGRAM,      /* each non-null string and its count, in order of first arrival */
    GD_AGG_EARLIEST_N,     /* EARLIEST_BY_OFFSET(x, N): the first `limit` values (NULLs: keep_nulls) */
    GD_AGG_LATEST_N,       /* LATEST_BY_OFFSET(x, N): the last `limit` values, earliest first */
    GD_AGG_EXPR,           /* expr over the keys and the other slots; no state */
} gd_agg;

/* ksqlDB's limits: collect_list.limit and collect_set.limit at most (and by
 * default, here always) 1,000, HISTOGRAM's 1,000 strings; gamingd adds a
 * bound on bytes, so that a group's memory and row stay bounded whatever
 * the strings: a value past either is ignored, as ksqlDB ignores one past
 * its limit. TOPK's k is at most GD_LIST_MAX_ELEMS too. */
enum { GD_LIST_MAX_ELEMS = 1000, GD_LIST_MAX_BYTES = 1 << 20 };

typedef struct {
    const char *name; /* NULL: a hidden slot */
    gd_agg agg;
    gd_coltype type;
    int field;           /* the argument: an input column id; -1: arg, or none */
    const gd_expr *arg;  /* the argument when it is an expression */
    const gd_expr *expr; /* GD_AGG_EXPR */
    gd_pii pii;          /* personal data (masked for keys without the pii scope) */
    bool keep_nulls;     /* LATEST, EARLIEST: a NULL is a value (ksqlDB's ignoreNulls false) */
    uint16_t limit;      /* ARRAY and MAP aggregates: TOPK's k, else GD_LIST_MAX_ELEMS */
} gd_coldef;

/* Whether the slot keeps a list (x.s, a gd_list). */
static inline bool gd_agg_holds_list(gd_agg a) { return a >= GD_AGG_TOPK && a <= GD_AGG_LATEST_N; }
/* Whether the slot keeps a string or a list (x.s), stored after the fixed slots. */
static inline bool gd_agg_holds_string(gd_agg a)
{
    return a == GD_AGG_LATEST || a == GD_AGG_EARLIEST || a == GD_AGG_MIN_STR || a == GD_AGG_MAX_STR ||
           gd_agg_holds_list(a);
}

typedef struct {
    const char *name;
    gd_coltype type;
    int field;           /* an input column id; -1: expr */
    const gd_expr *expr;
    gd_pii pii;
} gd_keydef;

typedef enum { GD_TABLE_WINDOWED, GD_TABLE_GAMES, GD_TABLE_PLAYERS } gd_table_kind;

enum { GD_MAX_KEYS = 8, GD_MAX_COLS = 48 };

typedef struct {
    const char *name;
    gd_table_kind kind; /* GD_TABLE_WINDOWED: an aggregation (windowed or not) */
    unsigned slot;      /* in the catalog */
    unsigned dbi_rows, dbi_sets; /* the store's LMDB handles (store.c) */
    int64_t window_ms;  /* 0: not windowed (one window, start 0, for all time); SESSION: the gap */
    int64_t advance_ms; /* HOPPING: a window starts every advance_ms; 0: TUMBLING (every window_ms) */
    int64_t grace_ms;   /* -1: the daemon's --grace */
    bool emit_final;    /* EMIT FINAL: a window is shown and published once closed (its grace passed) */
    bool session;       /* SESSION windows (session.c): a row per session, window_ms the gap */
    uint8_t session_end; /* SESSION: the hidden slot keeping a session's end (its last record's time) */
    uint8_t nkeys;
    gd_keydef keys[GD_MAX_KEYS];
    const gd_expr *where; /* over the input record, or NULL */
    uint8_t ncols, nslots;
    gd_coldef cols[GD_MAX_COLS];
    const gd_expr *having; /* over keys and slots, or NULL */
} gd_tabledef;

static inline bool gd_table_aggregates(const gd_tabledef *t) { return t->kind == GD_TABLE_WINDOWED; }
static inline bool gd_table_windowed(const gd_tabledef *t) { return t->kind == GD_TABLE_WINDOWED && t->window_ms > 0; }
static inline bool gd_table_session(const gd_tabledef *t) { return t->kind == GD_TABLE_WINDOWED && t->session; }
/* A column by name (case-insensitive): its index, or -1. */
int gd_table_col(const gd_tabledef *t, const char *name);

typedef struct {
    int64_t n;
    union {
        int64_t i;
        double d;
    } v;
    union {
        gd_str s;     /* LATEST; a list (ARRAY and MAP aggregates) */
        gd_idset *set; /* COUNT_DISTINCT (in memory only), ids of dict */
    } x;
} gd_slot;
/* A list's x.s is in the arena given to gd_slot_update, v.i bytes
 * reserved there (0: borrowed -- read from the store --, copied at its
 * first change). It grows by doubling, so that the arena holds at most
 * about twice its largest size: a group's memory stays bounded however
 * many records it counts (rewritten in place, or copied once per doubling). */

/* Window arithmetic of SPEC §5; a table without windows has one, at 0. */
static inline int64_t gd_window_start(int64_t ts, int64_t size)
{
    if (size <= 0) return 0;
    int64_t q = ts / size;
    if (ts % size != 0 && ts < 0) q--; /* floor for negative times */
    return q * size;
}

/* The windows of t a record at ts falls in: those starting from
 * gd_window_first to gd_window_last, every gd_window_step -- one for a
 * tumbling window, window_ms / advance_ms for a hopping one (each [start,
 * start + window_ms), starts a multiple of advance_ms), the one at 0 for a
 * table without windows. */
static inline int64_t gd_window_step(const gd_tabledef *t)
{
    if (t->session) return 1; /* a session starts at any time (and none of this applies) */
    return t->advance_ms ? t->advance_ms : t->window_ms ? t->window_ms : 1;
}
static inline int64_t gd_window_last(const gd_tabledef *t, int64_t ts)
{
    return t->window_ms ? gd_window_start(ts, gd_window_step(t)) : 0;
}
static inline int64_t gd_window_first(const gd_tabledef *t, int64_t ts)
{
    return t->window_ms ? gd_window_start(ts - t->window_ms, gd_window_step(t)) + gd_window_step(t) : 0;
}

/* The start of the newest window of t closed at stream_time (start +
 * window_ms + grace_ms <= stream_time): no record can change it, an EMIT
 * FINAL table shows it. */
static inline int64_t gd_window_last_closed(const gd_tabledef *t, int64_t grace_ms, int64_t stream_time)
{
    return gd_window_start(stream_time - t->window_ms - grace_ms, gd_window_step(t));
}

/* Encodes the row key of (window, group key) into b (cleared first). The
 * group key is the concatenation of u16-length-prefixed key values. */
void gd_rowkey_encode(gd_buf *b, int64_t window_start, gd_str group_key);
int64_t gd_rowkey_window(const void *key); /* needs >= 8 bytes */
/* Splits the group key part into its columns; GD_OK or GD_ERR. */
int gd_groupkey_split(const void *p, size_t len, int nkeys, gd_str *out);
/* Appends one key column to a group key being built. */
void gd_groupkey_append(gd_buf *b, gd_str v);

/* Row value codec. encode: slots (with sets of dict ids) -> the head in
 * out and the sets in sets (NULL: appended to out). decode: a head ->
 * slots, LATEST strings pointing into the bytes, sets not read. */
bool gd_table_has_sets(const gd_tabledef *t);
void gd_row_encode(const gd_tabledef *t, const gd_slot *slots, const gd_dict *dict, gd_buf *out, gd_buf *sets);
/* The row alone, its sets left out: for a row whose sets are stored apart
 * and have not changed (gd_row_sets_changed). */
void gd_row_encode_head(const gd_tabledef *t, const gd_slot *slots, gd_buf *out);
int gd_row_decode(const gd_tabledef *t, const void *p, size_t len, gd_slot *slots);
/* Like decode, and also rebuilds the distinct sets from sets (sets.p NULL:
 * they follow the head), for loading hot windows: LATEST strings and set
 * headers go to arena, members are interned in dict with a reference each.
 * On failure the sets read so far stay in slots for the caller to release. */
int gd_row_decode_full(const gd_tabledef *t, gd_str head, gd_str sets, gd_slot *slots, gd_arena *arena,
                       gd_dict *dict);
/* Whether a distinct set of slots gained a member since it was last
 * written or read (gd_row_sets_stored, gd_row_decode_full): if not, a row
 * whose sets are in the store need not write them again. */
bool gd_row_sets_changed(const gd_tabledef *t, const gd_slot *slots);
/* The distinct sets of slots are as the store now holds them. */
void gd_row_sets_stored(const gd_tabledef *t, gd_slot *slots);

/* ---- aggregating ----
 * One record's values into a group's slots: the same code for the engine's
 * tables and a push query's transient ones. Distinct values are interned
 * in dict once per record and input column (gd_interner caches the ids of
 * the columns below GD_INTERN_CACHE). */
enum { GD_INTERN_CACHE = 64 };
typedef struct {
    gd_dict *dict;
    gd_buf text; /* a number's text, interned as its distinct value */
    uint32_t id[GD_INTERN_CACHE];
    bool have[GD_INTERN_CACHE];
} gd_interner;
void gd_interner_init(gd_interner *in, gd_dict *dict);
void gd_interner_next_record(gd_interner *in);
void gd_interner_free(gd_interner *in);
/* Adds value v (the column's argument for this record) to slot s. */
void gd_slot_update(const gd_coldef *c, gd_slot *s, gd_value v, gd_arena *arena, gd_interner *in);
/* Lets go of a group's distinct sets (the ids they hold in dict). */
void gd_slots_release(const gd_tabledef *t, gd_slot *slots, gd_dict *dict);
/* Merges the slots of a later run of records into those of an earlier one
 * (two sessions becoming one): counts and sums add, extremes compare,
 * distinct sets unite (later's set is emptied, its ids handed over), a
 * LATEST takes later's value, an EARLIEST keeps into's. Strings are copied
 * to arena. */
void gd_slots_merge(const gd_tabledef *t, gd_slot *into, gd_slot *later, gd_arena *arena, gd_dict *dict);

/* ---- session windows (session.c) ----
 * A SESSION table's rows are sessions: per group, runs of records no more
 * than the gap (window_ms) apart. A row's window is its session's start
 * (the first record's time); its end (the last record's time, inclusive, as
 * ksqlDB has it) is kept in the hidden slot session_end. A record within the
 * gap of its group's sessions joins them: they merge into the earliest, as
 * in Kafka Streams' session windows. The engine's tables and push queries
 * keep their sessions with this code; where they keep them is theirs. */
typedef struct gd_session gd_session;
struct gd_session {
    gd_session *next;       /* the group's sessions, latest first (they never overlap) */
    gd_session *next_dirty; /* the owner's list of sessions to write */
    int64_t start, end;
    bool dirty, merged;     /* the owner's: on its dirty list; merged away while on it */
    gd_str key;             /* the group key (kept after the slots) */
    gd_arena arena;         /* the slots' strings and sets */
    gd_slot slots[];
};
/* A table's sessions are a map from group key to the group's list. A
 * session of the group key starting at start, in no list (restored from the
 * store: the caller fills its slots and end, then adds it to the map). */
gd_session *gd_session_new(const gd_tabledef *t, gd_str key, int64_t start);
void gd_sessions_add(gd_map *sessions, gd_session *s);
/* Frees a session and lets go of its sets' ids in dict. */
void gd_session_free(const gd_tabledef *t, gd_session *s, gd_dict *dict);
/* Called as a record joins sessions: the row of (start, key) is gone --
 * merged: a session merged into another (the callee owns it now), or NULL
 * when the surviving session's start moved earlier. */
typedef void gd_session_gone_fn(void *ctx, int64_t start, gd_str key, gd_session *merged);
/* The session of the group key a record at ts joins, made or merged (its
 * bounds and session_end slot include ts; the record's values are the
 * caller's to add); NULL when that session would end before its grace
 * (end + grace_ms < stream_time): the record is late and nothing changed. */
gd_session *gd_sessions_join(const gd_tabledef *t, gd_map *sessions, gd_str key, int64_t ts, int64_t grace_ms,
                             int64_t stream_time, gd_dict *dict, gd_session_gone_fn *gone, void *ctx);
/* Frees the sessions no record can change any more -- none within a gap
 * can come in the grace, nor one bridging to a later session still open --
 * which the caller has written, each first shown to closed (if not NULL:
 * EMIT FINAL publishes it then). Returns the earliest start of those kept
 * (INT64_MAX: none). */
typedef void gd_session_fn(void *ctx, const gd_session *s);
int64_t gd_sessions_close(const gd_tabledef *t, gd_map *sessions, int64_t grace_ms, int64_t stream_time,
                          gd_dict *dict, gd_session_fn *closed, void *ctx);
/* Whether a stored session ending at end is closed at stream_time (no
 * record within its gap can come in its grace): what an EMIT FINAL pull
 * shows. Its later neighbour is not looked at, so a session a record may
 * still bridge to an open one shows a little early. */
static inline bool gd_session_ended(const gd_tabledef *t, int64_t end, int64_t grace_ms, int64_t stream_time)
{
    return end + t->window_ms + grace_ms < stream_time;
}

/* A key column's value as the row key holds it (text), and back. */
void gd_key_text(gd_value v, gd_buf *b);
gd_value gd_key_value(gd_coltype type, gd_str text);

/* The value of slot c as expressions read it (E_AGG): AVG computed, nulls
 * applied; NULL for an expression column's unused slot. */
gd_value gd_slot_value(const gd_coldef *c, const gd_slot *s);

/* A group's row as readers see it. */
typedef struct {
    gd_value keys[GD_MAX_KEYS];
    int64_t window_start, window_end;
    gd_value aggs[GD_MAX_COLS]; /* each slot's value */
    gd_value cols[GD_MAX_COLS]; /* the visible columns */
} gd_row;
/* Computes the row of a group (keys as stored); false when HAVING hides
 * it. Strings that expressions make go to scratch. */
bool gd_row_compute(const gd_tabledef *t, const gd_str *keys, int64_t window_start, const gd_slot *slots,
                    gd_row *out, gd_arena *scratch);
/* One value column of a group's row (an expression column computed). */
gd_value gd_row_column(const gd_tabledef *t, const gd_str *keys, int64_t window_start, const gd_slot *slots, int c,
                       gd_arena *scratch);
/* Appends the row as a JSON object: key columns, window bounds (windowed
 * tables), values. */
void gd_row_render(const gd_tabledef *t, const gd_row *r, gd_buf *out);

#endif
