/* intern.c -- see intern.h. */
#include "intern.h"

#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        gd_error("out of memory (%zu bytes)", n);
        abort();
    }
    return q;
}

void gd_dict_init(gd_dict *d)
{
    memset(d, 0, sizeof *d);
    gd_map_init(&d->ids, NULL);
}

void gd_dict_free(gd_dict *d)
{
    for (uint32_t i = 0; i < d->next_id; i++) free((void *)d->strings[i].p);
    free(d->strings);
    free(d->refs);
    free(d->free_ids);
    gd_map_free(&d->ids);
    memset(d, 0, sizeof *d);
}

uint32_t gd_dict_intern(gd_dict *d, gd_str s)
{
    bool created;
    gd_map_slot *slot = gd_map_upsert(&d->ids, s, &created);
    if (!created) return (uint32_t)((uintptr_t)slot->val - 1);
    uint32_t id;
    if (d->nfree) {
        id = d->free_ids[--d->nfree];
    } else {
        if (d->next_id == d->cap) {
            d->cap = d->cap ? d->cap * 2 : 1024;
            d->strings = xrealloc(d->strings, d->cap * sizeof *d->strings);
            d->refs = xrealloc(d->refs, d->cap * sizeof *d->refs);
        }
        id = d->next_id++;
    }
    char *copy = xrealloc(NULL, s.len + 1);
    memcpy(copy, s.p, s.len);
    copy[s.len] = 0;
    d->strings[id] = (gd_str){copy, s.len};
    d->refs[id] = 0;
    slot->val = (void *)(uintptr_t)(id + 1);
    return id;
}

void gd_dict_ref(gd_dict *d, uint32_t id) { d->refs[id]++; }

void gd_dict_unref(gd_dict *d, uint32_t id)
{
    if (--d->refs[id]) return;
    gd_map_del(&d->ids, d->strings[id]);
    free((void *)d->strings[id].p);
    d->strings[id] = GD_STR_NULL;
    if (d->nfree == d->free_cap) {
        d->free_cap = d->free_cap ? d->free_cap * 2 : 1024;
        d->free_ids = xrealloc(d->free_ids, d->free_cap * sizeof *d->free_ids);
    }
    d->free_ids[d->nfree++] = id;
}

static inline uint32_t slot_of(uint32_t id, uint32_t cap) { return (id * 2654435769u) & (cap - 1); }

static void idset_grow(gd_idset *s)
{
    uint32_t ncap = s->cap ? s->cap * 2 : 8;
    uint32_t *ns = malloc(ncap * sizeof *ns); /* zeroed by writing: see alloc_slots in util.c */
    if (!ns) {
        gd_error("out of memory growing a distinct set");
        abort();
    }
    memset(ns, 0, ncap * sizeof *ns);
    for (uint32_t i = 0; i < s->cap; i++) {
        if (!s->slots[i]) continue;
        uint32_t j = slot_of(s->slots[i] - 1, ncap);
        while (ns[j]) j = (j + 1) & (ncap - 1);
        ns[j] = s->slots[i];
    }
    free(s->slots);
    s->slots = ns;
    s->cap = ncap;
}

bool gd_idset_add(gd_idset *s, uint32_t id)
{
    if ((s->count + 1) * 2 > s->cap) idset_grow(s);
    uint32_t mask = s->cap - 1;
    for (uint32_t i = slot_of(id, s->cap);; i = (i + 1) & mask) {
        if (s->slots[i] == id + 1) return false;
        if (!s->slots[i]) {
            s->slots[i] = id + 1;
            s->count++;
            return true;
        }
    }
}

bool gd_idset_has(const gd_idset *s, uint32_t id)
{
    if (!s->cap) return false;
    uint32_t mask = s->cap - 1;
    for (uint32_t i = slot_of(id, s->cap); s->slots[i]; i = (i + 1) & mask)
        if (s->slots[i] == id + 1) return true;
    return false;
}

void gd_idset_free(gd_idset *s)
{
    free(s->slots);
    s->slots = NULL;
    s->cap = s->count = 0;
}
