/* util.h -- the small data structures every layer uses.
 *
 *  - gd_arena: bump allocator; everything allocated from it dies together.
 *    Hot windows keep their group keys and strings in one, so evicting a
 *    window is one free, and decoding a record allocates nothing per field.
 *  - gd_buf: a growable byte buffer for encoding keys, rows and JSON.
 *  - gd_map: open-addressing hash map from byte strings to a pointer. Keys are
 *    copied (short ones into the slot); gd_map_del leaves a deleted slot
 *    that probing passes over until the next growth.
 *  - gd_list: the encoded elements of an ARRAY or MAP value.
 *  - duration parsing ("500ms", "30s", "5m", "2h", "7d").
 */
#ifndef GD_UTIL_H
#define GD_UTIL_H

#include "gamingd.h"

typedef struct gd_arena_chunk gd_arena_chunk;
typedef struct {
    gd_arena_chunk *head;
    size_t used_bytes; /* for memory accounting */
} gd_arena;

void gd_arena_init(gd_arena *a);
void *gd_arena_alloc(gd_arena *a, size_t n); /* aborts on out of memory */
gd_str gd_arena_strdup(gd_arena *a, gd_str s);
void gd_arena_reset(gd_arena *a); /* keeps the first chunk, unless it grew large */
void gd_arena_free(gd_arena *a);

typedef struct {
    char *p;
    size_t len, cap;
} gd_buf;

void gd_buf_reserve(gd_buf *b, size_t extra);
void gd_buf_put(gd_buf *b, const void *p, size_t n);
void gd_buf_putc(gd_buf *b, char c);
void gd_buf_puts(gd_buf *b, const char *s);
void gd_buf_printf(gd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gd_buf_put_u64be(gd_buf *b, uint64_t v);
/* v in decimal, without printf's parsing of a format (a push event's id):
 * into dst (room for GD_DEC_MAX bytes), returning the length, or onto b. */
enum { GD_DEC_MAX = 20 };
size_t gd_format_dec(char *dst, uint64_t v);
void gd_buf_put_dec(gd_buf *b, uint64_t v);
void gd_buf_put_u32be(gd_buf *b, uint32_t v);
void gd_buf_put_u16be(gd_buf *b, uint16_t v);
/* n bytes as lowercase hex digits, two a byte. */
void gd_buf_put_hex(gd_buf *b, const void *p, size_t n);
/* A hex digit's value (either case), or -1. */
int gd_hex_value(int c);
void gd_buf_free(gd_buf *b);
static inline void gd_buf_clear(gd_buf *b) { b->len = 0; }

uint64_t gd_get_u64be(const void *p);
uint32_t gd_get_u32be(const void *p);
uint16_t gd_get_u16be(const void *p);

uint64_t gd_hash(const void *p, size_t n);

/* gd_list: the elements of an ARRAY or MAP value, scalars encoded one after
 * the other: a gd_vtype byte, then 8 bytes (INT, DBL, BOOL: host order) or
 * a u32 length (host order) and the bytes (STR); NULL is the byte alone. A
 * MAP's elements alternate keys and values. The same bytes are a table
 * row's state and the value readers render (store/tables.h). */
size_t gd_list_elem_size(gd_value v); /* of a scalar */
void gd_list_elem_write(char *dst, gd_value v); /* gd_list_elem_size(v) bytes */
void gd_list_put(gd_buf *b, gd_value v);
/* The element at *at into out (STR pointing into list), *at moved past
 * it; false at the end or when the bytes are no list. */
bool gd_list_next(gd_str list, uint32_t *at, gd_value *out);

enum { GD_MAP_INLINE_KEY = 40 };

/* One cache line: keys up to 40 bytes live in the slot itself, so a lookup
 * touches one line; longer keys are copied to the map's key arena. */
typedef struct {
    uint64_t hash;
    void *val;       /* NULL in a used slot: deleted */
    uint32_t len;
    uint32_t used;
    union {
        char bytes[GD_MAP_INLINE_KEY];
        const char *ptr;
    } k;
} gd_map_slot;

typedef struct {
    gd_map_slot *slots;
    size_t cap, count, used; /* used counts deleted slots too */
    gd_arena own_keys;
    gd_arena *keys; /* &own_keys, or an arena shared by many small maps */
} gd_map;

/* keys: the arena that holds long keys, or NULL for the map's own. A map
 * must not be moved after init (it may point at its own arena). */
void gd_map_init(gd_map *m, gd_arena *keys);
void gd_map_free(gd_map *m);
void *gd_map_get(const gd_map *m, gd_str key);
/* Returns the slot for key, creating it (val NULL) when missing; *created
 * tells which. The key is copied. The slot pointer is valid until the next
 * insertion. */
gd_map_slot *gd_map_upsert(gd_map *m, gd_str key, bool *created);
/* Removes key; returns its value (or NULL). */
void *gd_map_del(gd_map *m, gd_str key);
/* Iteration: for (size_t i = 0; i < m->cap; i++) if (gd_map_live(&m->slots[i])) */
static inline bool gd_map_live(const gd_map_slot *s) { return s->used && s->val; }
static inline gd_str gd_map_key(const gd_map_slot *s)
{
    return (gd_str){s->len <= GD_MAP_INLINE_KEY ? s->k.bytes : s->k.ptr, s->len};
}

/* The length of the UTF-8 sequence starting at p (n bytes available), or 0
 * when it is not valid UTF-8: overlong, a surrogate, past U+10FFFF, cut. */
size_t gd_utf8_seq(const unsigned char *p, size_t n);
bool gd_utf8_valid(const char *p, size_t n);

/* "250ms", "30s", "5m", "2h", "7d" (or a bare number of ms), at most
 * GD_MAX_DURATION_MS: durations become nanosecond deadlines, which a larger
 * one would overflow. GD_OK or GD_ERR. */
#define GD_MAX_DURATION_MS (100LL * 366 * 24 * 3600 * 1000) /* a century */
int gd_parse_duration(const char *s, int64_t *ms);
/* Decimal integer, whole string, within [min,max]. */
int gd_parse_int(const char *s, size_t len, int64_t min, int64_t max, int64_t *out);

#endif
