/* intern.h -- string interning for the exact distinct counts.
 *
 * COUNT_DISTINCT keeps every distinct value of every open group. Kept as
 * strings, the same player id sits in a dozen sets (one per table and group)
 * at 128 bytes a member, and each insertion chases a key into a large map.
 * Interned, a value is looked up once per record, and each set is a compact
 * hash set of 32-bit ids (8 bytes a member) that mostly stays in cache.
 *
 * gd_dict: string <-> id, with a reference count per id: each set holding
 * the id holds one reference; when the last set lets go (its window left
 * memory), the id and its string are freed and the id is reused.
 * gd_idset: an open-addressing set of ids. */
#ifndef GD_INTERN_H
#define GD_INTERN_H

#include "util.h"

typedef struct {
    gd_map ids;       /* string -> (id + 1) */
    gd_str *strings;  /* by id; each a malloc'd copy, NULL when free */
    uint32_t *refs;   /* by id */
    uint32_t next_id, cap;
    uint32_t *free_ids;
    uint32_t nfree, free_cap;
} gd_dict;

void gd_dict_init(gd_dict *d);
void gd_dict_free(gd_dict *d);
/* The id of s, created (with no reference yet) when new. */
uint32_t gd_dict_intern(gd_dict *d, gd_str s);
void gd_dict_ref(gd_dict *d, uint32_t id);
void gd_dict_unref(gd_dict *d, uint32_t id);
static inline gd_str gd_dict_string(const gd_dict *d, uint32_t id) { return d->strings[id]; }
static inline size_t gd_dict_size(const gd_dict *d) { return d->ids.count; }

typedef struct {
    uint32_t *slots; /* id + 1; 0 empty */
    uint32_t cap, count;
    /* count when last written to or read from the store: a set only grows,
     * so it changed since then exactly when count is larger */
    uint32_t stored;
} gd_idset;

/* Adds id; true when it was not there yet. */
bool gd_idset_add(gd_idset *s, uint32_t id);
bool gd_idset_has(const gd_idset *s, uint32_t id);
void gd_idset_free(gd_idset *s);
/* Iteration: for (uint32_t i = 0; i < s->cap; i++) if (s->slots[i]) id = s->slots[i] - 1 */

#endif
