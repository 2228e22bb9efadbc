/* tables.h -- the materialized tables of SPEC §6 as data.
 *
 * Every windowed table is one gd_tabledef: its window size, the enriched
 * fields it groups by, an optional record filter (has_purchase), and its value
 * columns, each an aggregate over one field. One piece of code (ingest/window.c)
 * maintains them all from these definitions; the API lists and renders them
 * from the same definitions, and so will the SQL endpoint.
 *
 * Aggregate state of one group is an array of gd_slot, one per column. The
 * store keeps it in LMDB as a row value (the head):
 *   [ncols x 16 bytes: slot n, slot v]  fixed part, host byte order
 *   [each LATEST column: u32 len (UINT32_MAX = null), bytes]
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
 * sort first), then each key column as u16 big-endian length + bytes. Rows of
 * one window are contiguous and windows sort by time. */
#ifndef GD_TABLES_H
#define GD_TABLES_H

#include "../server/intern.h"

typedef enum { GD_T_STRING, GD_T_BIGINT, GD_T_INTEGER, GD_T_DOUBLE, GD_T_BOOLEAN } gd_coltype;

typedef enum {
    GD_AGG_COUNT_STAR,     /* COUNT(*): n */
    GD_AGG_COUNT,          /* COUNT(field): n = non-null values */
    GD_AGG_SUM_INT,        /* v.i, 0 when no value */
    GD_AGG_SUM_DBL,        /* v.d, 0 when no value */
    GD_AGG_AVG,            /* n non-null values, v.d their sum; null when n == 0 */
    GD_AGG_MAX_INT,        /* n > 0 when set, v.i */
    GD_AGG_COUNT_DISTINCT, /* n members, the set beside the slot */
    GD_AGG_LATEST,         /* latest non-null string */
    GD_AGG_PERCENT,        /* derived: 100.0 * col[num].n / col[den].n */
} gd_agg;

typedef struct {
    const char *name;
    gd_agg agg;
    gd_field field;
    gd_coltype type;
    uint8_t num, den; /* GD_AGG_PERCENT operands (column indexes) */
} gd_coldef;

typedef struct {
    const char *name;
    gd_field field;
    gd_coltype type;
} gd_keydef;

typedef enum { GD_TABLE_WINDOWED, GD_TABLE_GAMES, GD_TABLE_PLAYERS } gd_table_kind;

enum { GD_MAX_KEYS = 2, GD_MAX_COLS = 8 };

typedef struct {
    const char *name;
    gd_table_kind kind;
    int64_t window_ms; /* 0 for the reference tables */
    uint8_t nkeys;
    gd_keydef keys[GD_MAX_KEYS];
    bool purchases_only; /* WHERE has_purchase */
    uint8_t ncols;
    gd_coldef cols[GD_MAX_COLS];
    int8_t having_col; /* -1: none; else the row exists only while col > having_gt */
    int64_t having_gt;
} gd_tabledef;

/* All tables, reference tables first. */
extern const gd_tabledef gd_tables[];
extern const size_t gd_table_count;
const gd_tabledef *gd_table_find(const char *name, size_t len);
size_t gd_table_index(const gd_tabledef *t);
const char *gd_coltype_name(gd_coltype t);

typedef struct {
    int64_t n;
    union {
        int64_t i;
        double d;
    } v;
    union {
        gd_str s;     /* LATEST */
        gd_idset *set; /* COUNT_DISTINCT (in memory only), ids of dict */
    } x;
} gd_slot;

/* Window arithmetic of SPEC §5. */
static inline int64_t gd_window_start(int64_t ts, int64_t size)
{
    int64_t q = ts / size;
    if (ts % size != 0 && ts < 0) q--; /* floor for negative times */
    return q * size;
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
int gd_row_decode(const gd_tabledef *t, const void *p, size_t len, gd_slot *slots);
/* Like decode, and also rebuilds the distinct sets from sets (sets.p NULL:
 * they follow the head), for loading hot windows: LATEST strings and set
 * headers go to arena, members are interned in dict with a reference each.
 * On failure the sets read so far stay in slots for the caller to release. */
int gd_row_decode_full(const gd_tabledef *t, gd_str head, gd_str sets, gd_slot *slots, gd_arena *arena,
                       gd_dict *dict);

/* The value of column c as a reader sees it (AVG computed, nulls applied). */
gd_value gd_row_column(const gd_tabledef *t, const gd_slot *slots, int c);
/* HAVING holds for this state. */
bool gd_row_visible(const gd_tabledef *t, const gd_slot *slots);
/* Appends the row as a JSON object: key columns, window bounds, values. */
void gd_row_render(const gd_tabledef *t, const gd_str *keys, int64_t window_start,
                   const gd_slot *slots, gd_buf *out);

#endif
