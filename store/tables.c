/* tables.c -- the codecs of table keys and rows, and a group's row as
 * readers see it. The definitions themselves are SQL (sql/builtin.sql). */
#include "tables.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../server/json.h"

int gd_table_col(const gd_tabledef *t, const char *name)
{
    for (int c = 0; c < t->ncols; c++)
        if (!strcasecmp(t->cols[c].name, name)) return c;
    return -1;
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
    for (int c = 0; c < t->nslots; c++)
        if (t->cols[c].agg == GD_AGG_COUNT_DISTINCT) return true;
    return false;
}

/* The fixed part and the LATEST strings. */
static void encode_head(const gd_tabledef *t, const gd_slot *slots, gd_buf *out)
{
    static const int64_t zero = 0;
    for (int c = 0; c < t->nslots; c++) {
        gd_buf_put(out, &slots[c].n, 8);
        gd_buf_put(out, gd_agg_holds_list(t->cols[c].agg) ? (const void *)&zero : &slots[c].v, 8); /* not the arena's */
    }
    for (int c = 0; c < t->nslots; c++) {
        if (!gd_agg_holds_string(t->cols[c].agg)) continue;
        gd_str s = slots[c].x.s;
        put_u32(out, s.p ? s.len : NULL_LEN);
        if (s.p) gd_buf_put(out, s.p, s.len);
    }
}

void gd_row_encode_head(const gd_tabledef *t, const gd_slot *slots, gd_buf *out)
{
    gd_buf_clear(out);
    encode_head(t, slots, out);
}

void gd_row_encode(const gd_tabledef *t, const gd_slot *slots, const gd_dict *dict, gd_buf *out, gd_buf *sets)
{
    gd_row_encode_head(t, slots, out);
    if (sets) {
        gd_buf_clear(sets);
        out = sets;
    }
    for (int c = 0; c < t->nslots; c++) {
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
    if ((size_t)(end - s) < (size_t)t->nslots * SLOT_BYTES) return GD_ERR;
    for (int c = 0; c < t->nslots; c++) {
        memcpy(&slots[c].n, s, 8);
        memcpy(&slots[c].v, s + 8, 8);
        slots[c].x.s = GD_STR_NULL;
        if (gd_agg_holds_list(t->cols[c].agg)) slots[c].v.i = 0; /* borrowed */
        s += SLOT_BYTES;
    }
    for (int c = 0; c < t->nslots; c++) {
        if (!gd_agg_holds_string(t->cols[c].agg)) continue;
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
    for (int c = 0; c < t->nslots; c++) {
        if (!gd_agg_holds_string(t->cols[c].agg)) continue;
        slots[c].x.s = gd_arena_strdup(arena, slots[c].x.s);
        if (gd_agg_holds_list(t->cols[c].agg)) slots[c].v.i = slots[c].x.s.len; /* the arena's now */
    }
    for (int c = 0; c < t->nslots; c++) {
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
        set->stored = set->count;
    }
    return s == end ? GD_OK : GD_ERR;
}

bool gd_row_sets_changed(const gd_tabledef *t, const gd_slot *slots)
{
    for (int c = 0; c < t->nslots; c++)
        if (t->cols[c].agg == GD_AGG_COUNT_DISTINCT && slots[c].x.set && slots[c].x.set->count != slots[c].x.set->stored)
            return true;
    return false;
}

void gd_row_sets_stored(const gd_tabledef *t, gd_slot *slots)
{
    for (int c = 0; c < t->nslots; c++)
        if (t->cols[c].agg == GD_AGG_COUNT_DISTINCT && slots[c].x.set) slots[c].x.set->stored = slots[c].x.set->count;
}

/* ---- aggregating ---- */

void gd_interner_init(gd_interner *in, gd_dict *dict)
{
    memset(in, 0, sizeof *in);
    in->dict = dict;
}

void gd_interner_next_record(gd_interner *in) { memset(in->have, 0, sizeof in->have); }

void gd_interner_free(gd_interner *in) { gd_buf_free(&in->text); }

static uint32_t intern_value(gd_interner *in, int field, gd_value v)
{
    bool cacheable = field >= 0 && field < GD_INTERN_CACHE;
    if (cacheable && in->have[field]) return in->id[field];
    gd_str s = v.s;
    if (v.t != GD_V_STR) { /* a number's distinct values as text */
        gd_buf_clear(&in->text);
        gd_value_text(v, &in->text);
        s = (gd_str){in->text.p, (uint32_t)in->text.len};
    }
    uint32_t id = gd_dict_intern(in->dict, s);
    if (cacheable) {
        in->id[field] = id;
        in->have[field] = true;
    }
    return id;
}

static bool is_number(gd_value v) { return v.t == GD_V_INT || v.t == GD_V_DBL; }
static double number(gd_value v) { return v.t == GD_V_INT ? (double)v.i : v.d; }

/* A number or boolean slot's value v, as its column's type keeps it; n 1. */
static void set_number(const gd_coldef *c, gd_slot *s, gd_value v)
{
    s->n = 1;
    if (c->type == GD_T_DOUBLE) s->v.d = number(v);
    else s->v.i = v.i;
}

/* ---- lists (ARRAY and MAP aggregates) ---- */

/* Makes s's list hold need bytes in arena (see gd_slot); false past
 * GD_LIST_MAX_BYTES. */
static bool list_reserve(gd_slot *s, size_t need, gd_arena *arena)
{
    if (need > GD_LIST_MAX_BYTES) return false;
    if ((size_t)s->v.i >= need) return true;
    size_t cap = s->v.i ? (size_t)s->v.i * 2 : 64;
    while (cap < need) cap *= 2;
    if (cap > GD_LIST_MAX_BYTES) cap = GD_LIST_MAX_BYTES;
    char *p = gd_arena_alloc(arena, cap);
    if (s->x.s.len) memcpy(p, s->x.s.p, s->x.s.len);
    s->x.s.p = p;
    s->v.i = (int64_t)cap;
    return true;
}

/* Writes element v at offset at of s's list (room reserved), after
 * moving what follows. */
static void list_insert(gd_slot *s, uint32_t at, gd_value v)
{
    char *p = (char *)s->x.s.p;
    size_t add = gd_list_elem_size(v);
    memmove(p + at + add, p + at, s->x.s.len - at);
    gd_list_elem_write(p + at, v);
    s->x.s.len += (uint32_t)add;
}

static bool list_append(gd_slot *s, gd_value v, gd_arena *arena)
{
    if (!list_reserve(s, s->x.s.len + gd_list_elem_size(v), arena)) return false;
    list_insert(s, s->x.s.len, v);
    return true;
}

/* Drops the first element of s's list (owned first). */
static void list_drop_first(gd_slot *s, gd_arena *arena)
{
    uint32_t at = 0;
    gd_value first;
    if (!gd_list_next(s->x.s, &at, &first) || !list_reserve(s, s->x.s.len, arena)) return;
    char *p = (char *)s->x.s.p;
    memmove(p, p + at, s->x.s.len - at);
    s->x.s.len -= at;
    s->n--;
}

/* Equal as Java's equals: a DOUBLE by its bits. */
static bool same_element(gd_value a, gd_value b)
{
    if (a.t != b.t) return false;
    if (a.t == GD_V_STR) return a.s.len == b.s.len && (!a.s.len || !memcmp(a.s.p, b.s.p, a.s.len));
    return a.t == GD_V_NULL || a.i == b.i;
}

/* The offset just past the element equal to v (a MAP: every other
 * element, the keys), or 0 when there is none. */
static uint32_t list_find(gd_str list, gd_value v, bool keys)
{
    uint32_t at = 0;
    gd_value e;
    for (int i = 0; gd_list_next(list, &at, &e); i++)
        if ((!keys || i % 2 == 0) && same_element(e, v)) return at;
    return 0;
}

/* TOPK, TOPKDISTINCT: v among the c->limit greatest, greatest first,
 * after those equal to it (ksqlDB's TopkKudaf, TopkDistinctKudaf). */
static void topk_add(const gd_coldef *c, gd_slot *s, gd_value v, gd_arena *arena)
{
    if (v.t == GD_V_NULL) return;
    uint32_t pos = UINT32_MAX, last = 0, at = 0;
    for (uint32_t here = 0; here < s->x.s.len; here = at) {
        gd_value e;
        if (!gd_list_next(s->x.s, &at, &e)) return;
        int cmp = gd_value_cmp(v, e);
        if (cmp == 0 && c->agg == GD_AGG_TOPK_DISTINCT) return;
        if (cmp > 0 && pos == UINT32_MAX) pos = here;
        last = here;
    }
    bool full = s->n >= c->limit;
    if (full && pos == UINT32_MAX) return; /* not above the least */
    uint32_t keep = full ? last : s->x.s.len;
    if (!list_reserve(s, keep + gd_list_elem_size(v), arena)) return;
    if (full) s->x.s.len = keep, s->n--;
    list_insert(s, pos == UINT32_MAX ? s->x.s.len : pos, v);
    s->n++;
}

/* HISTOGRAM: a string's count, at most c->limit strings (ksqlDB's HistogramUdaf). */
/* count more of string v (a record's: 1; a merged histogram's: its count). */
static void histogram_add(const gd_coldef *c, gd_slot *s, gd_value v, int64_t count, gd_arena *arena)
{
    if (v.t != GD_V_STR) return;
    uint32_t count_at = list_find(s->x.s, v, true);
    if (count_at) {
        if (!list_reserve(s, s->x.s.len, arena)) return; /* owned before written */
        int64_t n;
        memcpy(&n, s->x.s.p + count_at + 1, 8);
        n += count;
        memcpy((char *)s->x.s.p + count_at + 1, &n, 8);
        return;
    }
    gd_value first = {.t = GD_V_INT, .i = count};
    if (s->n >= c->limit || !list_reserve(s, s->x.s.len + gd_list_elem_size(v) + gd_list_elem_size(first), arena))
        return;
    list_insert(s, s->x.s.len, v);
    list_insert(s, s->x.s.len, first);
    s->n++;
}

/* An ARRAY's element as its type holds it (a whole number in an ARRAY<DOUBLE>). */
static gd_value element_of(const gd_coldef *c, gd_value v)
{
    if (c->type == GD_T_ARRAY_DOUBLE && v.t == GD_V_INT) return (gd_value){.t = GD_V_DBL, .d = (double)v.i};
    return v;
}

static void list_update(const gd_coldef *c, gd_slot *s, gd_value v, gd_arena *arena)
{
    v = element_of(c, v);
    switch (c->agg) {
    case GD_AGG_TOPK:
    case GD_AGG_TOPK_DISTINCT: topk_add(c, s, v, arena); break;
    case GD_AGG_COLLECT_SET:
        if (s->n < c->limit && list_find(s->x.s, v, false)) break;
        /* fall through */
    case GD_AGG_COLLECT_LIST:
        if (s->n < c->limit && list_append(s, v, arena)) s->n++;
        break;
    case GD_AGG_HISTOGRAM: histogram_add(c, s, v, 1, arena); break;
    case GD_AGG_EARLIEST_N:
    case GD_AGG_LATEST_N: /* ksqlDB's earliestTN, latestTN: NULLs skipped unless kept */
        if (v.t == GD_V_NULL && !c->keep_nulls) break;
        if (c->agg == GD_AGG_EARLIEST_N && s->n >= c->limit) break;
        if (s->n >= c->limit) list_drop_first(s, arena);
        if (list_append(s, v, arena)) s->n++;
        break;
    default: break;
    }
}

void gd_slot_update(const gd_coldef *c, gd_slot *s, gd_value v, gd_arena *arena, gd_interner *in)
{
    if (gd_agg_holds_list(c->agg)) {
        list_update(c, s, v, arena);
        return;
    }
    switch (c->agg) {
    case GD_AGG_COUNT_STAR: s->n++; break;
    case GD_AGG_COUNT:
        if (v.t != GD_V_NULL) s->n++;
        break;
    case GD_AGG_SUM_INT:
        if (v.t == GD_V_INT) s->v.i += v.i;
        break;
    case GD_AGG_SUM_DBL:
        if (is_number(v)) s->v.d += number(v);
        break;
    case GD_AGG_AVG:
        if (!is_number(v)) break;
        s->n++;
        s->v.d += number(v);
        break;
    case GD_AGG_MAX_INT:
    case GD_AGG_MIN_INT:
        if (v.t != GD_V_INT) break;
        if (!s->n || (c->agg == GD_AGG_MAX_INT ? v.i > s->v.i : v.i < s->v.i)) s->v.i = v.i;
        s->n = 1;
        break;
    case GD_AGG_MAX_DBL:
    case GD_AGG_MIN_DBL:
        if (!is_number(v)) break;
        if (!s->n || (c->agg == GD_AGG_MAX_DBL ? number(v) > s->v.d : number(v) < s->v.d)) s->v.d = number(v);
        s->n = 1;
        break;
    case GD_AGG_COUNT_DISTINCT: {
        if (v.t == GD_V_NULL) break;
        if (!s->x.set) {
            s->x.set = gd_arena_alloc(arena, sizeof(gd_idset));
            memset(s->x.set, 0, sizeof(gd_idset));
        }
        uint32_t id = intern_value(in, c->field, v);
        if (gd_idset_add(s->x.set, id)) {
            gd_dict_ref(in->dict, id);
            s->n++;
        }
        break;
    }
    case GD_AGG_LATEST:
        if (v.t == GD_V_STR && !gd_str_eq(s->x.s, v.s)) s->x.s = gd_arena_strdup(arena, v.s);
        else if (v.t == GD_V_NULL && c->keep_nulls) s->x.s = GD_STR_NULL;
        break;
    case GD_AGG_LATEST_NUM:
        if (v.t == GD_V_NULL && c->keep_nulls) s->n = 0;
        if (v.t == GD_V_NULL || v.t == GD_V_STR) break;
        set_number(c, s, v);
        break;
    case GD_AGG_EARLIEST:
        if (s->n || (v.t != GD_V_STR && !(v.t == GD_V_NULL && c->keep_nulls))) break;
        s->n = 1;
        if (v.t == GD_V_STR) s->x.s = gd_arena_strdup(arena, v.s);
        break;
    case GD_AGG_EARLIEST_NUM:
        if (s->n || v.t == GD_V_STR) break;
        if (v.t == GD_V_NULL) {
            if (c->keep_nulls) s->n = 2;
            break;
        }
        set_number(c, s, v);
        break;
    case GD_AGG_MIN_STR:
    case GD_AGG_MAX_STR: {
        if (v.t != GD_V_STR) break;
        int cmp = s->x.s.p ? gd_value_cmp(v, (gd_value){.t = GD_V_STR, .s = s->x.s}) : 0;
        if (!s->x.s.p || (c->agg == GD_AGG_MIN_STR ? cmp < 0 : cmp > 0)) s->x.s = gd_arena_strdup(arena, v.s);
        break;
    }
    case GD_AGG_EXPR: /* computed when read */
    default: break;   /* lists: list_update */
    }
}

void gd_slots_release(const gd_tabledef *t, gd_slot *slots, gd_dict *dict)
{
    for (int c = 0; c < t->nslots; c++) {
        gd_idset *set = t->cols[c].agg == GD_AGG_COUNT_DISTINCT ? slots[c].x.set : NULL;
        if (!set) continue;
        for (uint32_t i = 0; i < set->cap; i++)
            if (set->slots[i]) gd_dict_unref(dict, set->slots[i] - 1);
        gd_idset_free(set);
        slots[c].x.set = NULL;
    }
}

/* A distinct set's members into another's: later's references move with
 * them, or are let go when into has the member already. */
static void unite_sets(gd_slot *into, gd_slot *later, gd_arena *arena, gd_dict *dict)
{
    gd_idset *from = later->x.set;
    if (!from) return;
    if (!into->x.set) {
        into->x.set = gd_arena_alloc(arena, sizeof(gd_idset));
        memset(into->x.set, 0, sizeof(gd_idset));
    }
    for (uint32_t i = 0; i < from->cap; i++) {
        if (!from->slots[i]) continue;
        uint32_t id = from->slots[i] - 1;
        if (gd_idset_add(into->x.set, id)) into->n++;
        else gd_dict_unref(dict, id);
    }
    gd_idset_free(from);
    later->x.set = NULL;
    later->n = 0;
}

static gd_str copy_str(gd_str s, gd_arena *arena) { return s.p ? gd_arena_strdup(arena, s) : s; }

/* A later run's list into an earlier one's: its elements added in their
 * order as records' are (a list appends, a set and TOPK take what they
 * take), a histogram's counts added. */
static void merge_lists(const gd_coldef *c, gd_slot *into, const gd_slot *later, gd_arena *arena)
{
    gd_value v, count;
    for (uint32_t at = 0; gd_list_next(later->x.s, &at, &v);) {
        if (c->agg != GD_AGG_HISTOGRAM) list_update(c, into, v, arena);
        else if (gd_list_next(later->x.s, &at, &count) && count.t == GD_V_INT) histogram_add(c, into, v, count.i, arena);
    }
}

void gd_slots_merge(const gd_tabledef *t, gd_slot *into, gd_slot *later, gd_arena *arena, gd_dict *dict)
{
    for (int c = 0; c < t->nslots; c++) {
        const gd_coldef *col = &t->cols[c];
        gd_slot *a = &into[c], *b = &later[c];
        switch (col->agg) {
        case GD_AGG_COUNT_STAR:
        case GD_AGG_COUNT: a->n += b->n; break;
        case GD_AGG_SUM_INT: a->v.i += b->v.i; break;
        case GD_AGG_SUM_DBL: a->v.d += b->v.d; break;
        case GD_AGG_AVG:
            a->n += b->n;
            a->v.d += b->v.d;
            break;
        case GD_AGG_MAX_INT:
        case GD_AGG_MIN_INT:
            if (b->n && (!a->n || (col->agg == GD_AGG_MAX_INT ? b->v.i > a->v.i : b->v.i < a->v.i))) *a = *b;
            break;
        case GD_AGG_MAX_DBL:
        case GD_AGG_MIN_DBL:
            if (b->n && (!a->n || (col->agg == GD_AGG_MAX_DBL ? b->v.d > a->v.d : b->v.d < a->v.d))) *a = *b;
            break;
        case GD_AGG_COUNT_DISTINCT: unite_sets(a, b, arena, dict); break;
        case GD_AGG_LATEST: /* every record updates the slot: with nulls kept, later's is the last */
            if (b->x.s.p || col->keep_nulls) a->x.s = copy_str(b->x.s, arena);
            break;
        case GD_AGG_LATEST_NUM:
            if (b->n || col->keep_nulls) *a = *b;
            break;
        case GD_AGG_EARLIEST:
            if (!a->n) a->n = b->n, a->x.s = copy_str(b->x.s, arena);
            break;
        case GD_AGG_EARLIEST_NUM:
            if (!a->n) *a = *b;
            break;
        case GD_AGG_MIN_STR:
        case GD_AGG_MAX_STR: {
            if (!b->x.s.p) break;
            int cmp = a->x.s.p ? gd_value_cmp((gd_value){.t = GD_V_STR, .s = b->x.s}, (gd_value){.t = GD_V_STR, .s = a->x.s}) : 0;
            if (!a->x.s.p || (col->agg == GD_AGG_MIN_STR ? cmp < 0 : cmp > 0)) a->x.s = copy_str(b->x.s, arena);
            break;
        }
        case GD_AGG_TOPK:
        case GD_AGG_TOPK_DISTINCT:
        case GD_AGG_COLLECT_LIST:
        case GD_AGG_COLLECT_SET:
        case GD_AGG_HISTOGRAM:
        case GD_AGG_EARLIEST_N:
        case GD_AGG_LATEST_N: merge_lists(col, a, b, arena); break;
        case GD_AGG_EXPR: break;
        }
    }
}

void gd_key_text(gd_value v, gd_buf *b) { gd_value_text(v, b); }

gd_value gd_key_value(gd_coltype type, gd_str text)
{
    if (type == GD_T_STRING) return (gd_value){.t = GD_V_STR, .s = text};
    return gd_value_cast((gd_value){.t = GD_V_STR, .s = text}, type, NULL);
}

gd_value gd_slot_value(const gd_coldef *col, const gd_slot *s)
{
    static const gd_value null = {.t = GD_V_NULL};
    switch (col->agg) {
    case GD_AGG_COUNT_STAR:
    case GD_AGG_COUNT:
    case GD_AGG_COUNT_DISTINCT: return (gd_value){.t = GD_V_INT, .i = s->n};
    case GD_AGG_SUM_INT: return (gd_value){.t = GD_V_INT, .i = s->v.i};
    case GD_AGG_SUM_DBL: return (gd_value){.t = GD_V_DBL, .d = s->v.d};
    case GD_AGG_AVG: return s->n ? (gd_value){.t = GD_V_DBL, .d = s->v.d / (double)s->n} : null;
    case GD_AGG_MAX_INT:
    case GD_AGG_MIN_INT: return s->n ? (gd_value){.t = GD_V_INT, .i = s->v.i} : null;
    case GD_AGG_MAX_DBL:
    case GD_AGG_MIN_DBL: return s->n ? (gd_value){.t = GD_V_DBL, .d = s->v.d} : null;
    case GD_AGG_LATEST:
    case GD_AGG_EARLIEST:
    case GD_AGG_MIN_STR:
    case GD_AGG_MAX_STR: return s->x.s.p ? (gd_value){.t = GD_V_STR, .s = s->x.s} : null;
    case GD_AGG_LATEST_NUM:
    case GD_AGG_EARLIEST_NUM:
        if (s->n != 1) return null;
        if (col->type == GD_T_DOUBLE) return (gd_value){.t = GD_V_DBL, .d = s->v.d};
        return (gd_value){.t = col->type == GD_T_BOOLEAN ? GD_V_BOOL : GD_V_INT, .i = s->v.i};
    case GD_AGG_TOPK:
    case GD_AGG_TOPK_DISTINCT:
    case GD_AGG_COLLECT_LIST:
    case GD_AGG_COLLECT_SET:
    case GD_AGG_EARLIEST_N:
    case GD_AGG_LATEST_N: return (gd_value){.t = GD_V_ARRAY, .s = s->x.s};
    case GD_AGG_HISTOGRAM: return (gd_value){.t = GD_V_MAP, .s = s->x.s};
    case GD_AGG_EXPR: return null;
    }
    return null;
}

bool gd_row_compute(const gd_tabledef *t, const gd_str *keys, int64_t window_start, const gd_slot *slots,
                    gd_row *r, gd_arena *scratch)
{
    for (int k = 0; k < t->nkeys; k++) r->keys[k] = gd_key_value(t->keys[k].type, keys[k]);
    r->window_start = window_start;
    r->window_end = t->session ? slots[t->session_end].v.i : window_start + t->window_ms;
    for (int c = 0; c < t->nslots; c++) r->aggs[c] = gd_slot_value(&t->cols[c], &slots[c]);
    gd_eval ctx = {.aggs = r->aggs, .keys = r->keys, .window_start = r->window_start,
                   .window_end = r->window_end, .now_ms = gd_now_ms(), .scratch = scratch};
    if (t->having && !gd_expr_true(t->having, &ctx)) return false;
    for (int c = 0; c < t->ncols; c++)
        r->cols[c] = t->cols[c].agg == GD_AGG_EXPR ? gd_expr_eval(t->cols[c].expr, &ctx) : r->aggs[c];
    return true;
}

gd_value gd_row_column(const gd_tabledef *t, const gd_str *keys, int64_t window_start, const gd_slot *slots, int c,
                       gd_arena *scratch)
{
    if (t->cols[c].agg != GD_AGG_EXPR) return gd_slot_value(&t->cols[c], &slots[c]);
    gd_row r;
    gd_row_compute(t, keys, window_start, slots, &r, scratch);
    return r.cols[c];
}

static void put_member(gd_buf *out, bool *first, const char *name, gd_value v)
{
    if (!*first) gd_buf_putc(out, ',');
    *first = false;
    gd_json_put_cstr(out, name);
    gd_buf_putc(out, ':');
    gd_json_put_value(out, v);
}

void gd_row_render(const gd_tabledef *t, const gd_row *r, gd_buf *out)
{
    bool first = true;
    gd_buf_putc(out, '{');
    for (int k = 0; k < t->nkeys; k++) put_member(out, &first, t->keys[k].name, r->keys[k]);
    if (gd_table_windowed(t)) {
        put_member(out, &first, "window_start", (gd_value){.t = GD_V_INT, .i = r->window_start});
        put_member(out, &first, "window_end", (gd_value){.t = GD_V_INT, .i = r->window_end});
    }
    for (int c = 0; c < t->ncols; c++) put_member(out, &first, t->cols[c].name, r->cols[c]);
    gd_buf_putc(out, '}');
}
