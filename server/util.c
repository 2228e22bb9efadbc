/* util.c -- arena, byte buffer, hash map, parsing, clocks and logging.
 * See util.h for why each exists. */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>

/* ---- strings, clocks, logging ---- */

bool gd_str_eq(gd_str a, gd_str b)
{
    if (!a.p || !b.p) return a.p == b.p;
    return a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}

bool gd_str_eq_nocase(gd_str a, gd_str b)
{
    return a.len == b.len && (a.len == 0 || !strncasecmp(a.p, b.p, a.len));
}

gd_str gd_str_c(const char *cstr)
{
    return cstr ? (gd_str){cstr, (uint32_t)strlen(cstr)} : GD_STR_NULL;
}

int64_t gd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t gd_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void gd_sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void gd_log(const char *level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02dZ %s %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
            tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, level, msg);
}

size_t gd_utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (!len || c > 0xF4 || c == 0xC0 || c == 0xC1 || n < len) return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && p[1] < 0xA0) return 0; /* overlong */
    if (c == 0xED && p[1] >= 0xA0) return 0; /* surrogate */
    if (c == 0xF0 && p[1] < 0x90) return 0; /* overlong */
    if (c == 0xF4 && p[1] >= 0x90) return 0; /* past U+10FFFF */
    return len;
}

bool gd_utf8_valid(const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    for (size_t i = 0; i < n;) {
        size_t len = gd_utf8_seq(u + i, n - i);
        if (!len) return false;
        i += len;
    }
    return true;
}

bool gd_ratelimit_allow(gd_ratelimit *rl)
{
    enum { PER_SECOND = 5 };
    int64_t now = gd_now_ms();
    if (now - rl->window_start_ms >= 1000) {
        if (rl->suppressed)
            gd_warn("%llu similar messages suppressed", (unsigned long long)rl->suppressed);
        rl->window_start_ms = now;
        rl->in_window = 0;
        rl->suppressed = 0;
    }
    if (rl->in_window < PER_SECOND) {
        rl->in_window++;
        return true;
    }
    rl->suppressed++;
    return false;
}

/* ---- arena ---- */

struct gd_arena_chunk {
    gd_arena_chunk *next;
    size_t cap, used;
    _Alignas(16) char data[];
};

enum { ARENA_CHUNK = 64 * 1024 };

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        gd_error("out of memory allocating %zu bytes", n);
        abort();
    }
    return p;
}

void gd_arena_init(gd_arena *a)
{
    a->head = NULL;
    a->used_bytes = 0;
}

void *gd_arena_alloc(gd_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    gd_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        /* chunks grow from 1 KiB to 64 KiB: many small arenas (one per
         * window) stay small, big ones soon allocate in large steps */
        size_t step = a->used_bytes < ARENA_CHUNK ? (a->used_bytes < 1024 ? 1024 : a->used_bytes)
                                                  : ARENA_CHUNK;
        size_t cap = n > step / 4 ? n : step;
        c = xmalloc(sizeof *c + cap);
        c->cap = cap;
        c->used = 0;
        if (cap == n && a->head) { /* big one-off: keep the current chunk on top */
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
        a->used_bytes += sizeof *c + cap;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

gd_str gd_arena_strdup(gd_arena *a, gd_str s)
{
    if (!s.p) return s;
    char *p = gd_arena_alloc(a, s.len + 1);
    memcpy(p, s.p, s.len);
    p[s.len] = 0;
    return (gd_str){p, s.len};
}

void gd_arena_reset(gd_arena *a)
{
    gd_arena_chunk *c = a->head;
    if (!c) return;
    if (c->cap > 4 * ARENA_CHUNK) { /* grown for one big record: let it go */
        gd_arena_free(a);
        return;
    }
    gd_arena_chunk *rest = c->next;
    while (rest) {
        gd_arena_chunk *n = rest->next;
        free(rest);
        rest = n;
    }
    c->next = NULL;
    c->used = 0;
    a->used_bytes = sizeof *c + c->cap;
}

void gd_arena_free(gd_arena *a)
{
    gd_arena_chunk *c = a->head;
    while (c) {
        gd_arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
    a->used_bytes = 0;
}

/* ---- buffer ---- */

void gd_buf_reserve(gd_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        gd_error("out of memory growing a buffer to %zu bytes", cap);
        abort();
    }
    b->p = p;
    b->cap = cap;
}

void gd_buf_put(gd_buf *b, const void *p, size_t n)
{
    gd_buf_reserve(b, n);
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}

size_t gd_list_elem_size(gd_value v)
{
    return v.t == GD_V_NULL ? 1 : v.t == GD_V_STR ? 5 + (size_t)v.s.len : 9;
}

void gd_list_elem_write(char *dst, gd_value v)
{
    dst[0] = (char)v.t;
    if (v.t == GD_V_NULL) return;
    if (v.t != GD_V_STR) {
        memcpy(dst + 1, &v.i, 8); /* i and d share the bytes */
        return;
    }
    memcpy(dst + 1, &v.s.len, 4);
    if (v.s.len) memcpy(dst + 5, v.s.p, v.s.len);
}

void gd_list_put(gd_buf *b, gd_value v)
{
    size_t n = gd_list_elem_size(v);
    gd_buf_reserve(b, n);
    gd_list_elem_write(b->p + b->len, v);
    b->len += n;
}

bool gd_list_next(gd_str list, uint32_t *at, gd_value *out)
{
    if (*at >= list.len) return false;
    const char *p = list.p + *at;
    uint32_t left = list.len - *at;
    out->t = (gd_vtype)(unsigned char)p[0];
    switch (out->t) {
    case GD_V_NULL: *at += 1; return true;
    case GD_V_INT:
    case GD_V_DBL:
    case GD_V_BOOL:
        if (left < 9) return false;
        memcpy(&out->i, p + 1, 8);
        *at += 9;
        return true;
    case GD_V_STR: {
        uint32_t n;
        if (left < 5) return false;
        memcpy(&n, p + 1, 4);
        if (left - 5 < n) return false;
        out->s = (gd_str){p + 5, n};
        *at += 5 + n;
        return true;
    }
    default: return false;
    }
}

void gd_buf_putc(gd_buf *b, char c)
{
    gd_buf_reserve(b, 1);
    b->p[b->len++] = c;
}

void gd_buf_puts(gd_buf *b, const char *s) { gd_buf_put(b, s, strlen(s)); }

/* Formats into the room the buffer has, and only when that is too small
 * grows it and formats again: sizing first with vsnprintf(NULL, 0) formatted
 * everything twice (a pull answer's numbers are a few % of its CPU). */
void gd_buf_printf(gd_buf *b, const char *fmt, ...)
{
    gd_buf_reserve(b, 64);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= b->cap - b->len) {
        gd_buf_reserve(b, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void gd_buf_put_u64be(gd_buf *b, uint64_t v)
{
    unsigned char x[8];
    for (int i = 7; i >= 0; i--, v >>= 8) x[i] = (unsigned char)v;
    gd_buf_put(b, x, 8);
}

size_t gd_format_dec(char *dst, uint64_t v)
{
    char tmp[GD_DEC_MAX];
    char *e = tmp + sizeof tmp, *p = e;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(dst, p, (size_t)(e - p));
    return (size_t)(e - p);
}

void gd_buf_put_dec(gd_buf *b, uint64_t v)
{
    gd_buf_reserve(b, GD_DEC_MAX);
    b->len += gd_format_dec(b->p + b->len, v);
}

void gd_buf_put_u32be(gd_buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
    gd_buf_put(b, x, 4);
}

void gd_buf_put_u16be(gd_buf *b, uint16_t v)
{
    unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    gd_buf_put(b, x, 2);
}

void gd_buf_put_hex(gd_buf *b, const void *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = p;
    gd_buf_reserve(b, 2 * n);
    for (size_t i = 0; i < n; i++) {
        b->p[b->len++] = hex[u[i] >> 4];
        b->p[b->len++] = hex[u[i] & 15];
    }
}

int gd_hex_value(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

void gd_buf_free(gd_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

uint64_t gd_get_u64be(const void *p)
{
    const unsigned char *x = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | x[i];
    return v;
}

uint32_t gd_get_u32be(const void *p)
{
    const unsigned char *x = p;
    return (uint32_t)x[0] << 24 | (uint32_t)x[1] << 16 | (uint32_t)x[2] << 8 | x[3];
}

uint16_t gd_get_u16be(const void *p)
{
    const unsigned char *x = p;
    return (uint16_t)(x[0] << 8 | x[1]);
}

/* ---- hash map ---- */

uint64_t gd_hash(const void *p, size_t n)
{
    /* FNV-1a folded with a final mix: short keys, good enough spread. */
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

void gd_map_init(gd_map *m, gd_arena *keys)
{
    memset(m, 0, sizeof *m);
    gd_arena_init(&m->own_keys);
    m->keys = keys ? keys : &m->own_keys;
}

void gd_map_free(gd_map *m)
{
    free(m->slots);
    gd_arena_free(&m->own_keys);
    memset(m, 0, sizeof *m);
}

static gd_map_slot *map_find(const gd_map *m, gd_str key, uint64_t h)
{
    if (!m->cap) return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        gd_map_slot *s = &m->slots[i];
        if (!s->used) return NULL;
        if (s->hash == h && s->len == key.len && (!key.len || memcmp(gd_map_key(s).p, key.p, key.len) == 0))
            return s;
    }
}

enum { HUGE_PAGE = 2 << 20 };

/* The slots of a large map (the distinct-value dictionary, the groups of a
 * busy window) are probed at random: on 4 KiB pages nearly every probe is a
 * TLB miss on top of the cache miss. Blocks of whole 2 MiB pages ask the
 * kernel for transparent huge pages (with THP off this is plain memory).
 * Measured on file replay: the ingest thread ~10% less CPU; the same for
 * arena chunks gained nothing. Freed with free(). */
static void *huge_alloc(size_t bytes)
{
    bytes = (bytes + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
    void *p = aligned_alloc(HUGE_PAGE, bytes);
    if (p) madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

/* A zeroed slot table: small ones from malloc, large ones on huge pages;
 * zeroed by writing, not by calloc: calloc's fresh pages would be read
 * first (probing) and map the shared zero page, and the first write to
 * each would then copy it and flush the TLB of every core running a thread
 * of ours. */
static gd_map_slot *alloc_slots(size_t n)
{
    size_t bytes = n * sizeof(gd_map_slot);
    gd_map_slot *p = bytes < 2 * HUGE_PAGE ? malloc(bytes) : huge_alloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

static void map_grow(gd_map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    if (m->count * 4 < m->cap) ncap = m->cap; /* mostly deleted slots: same size, rehashed */
    gd_map_slot *ns = alloc_slots(ncap);
    if (!ns) {
        gd_error("out of memory growing a map to %zu slots", ncap);
        abort();
    }
    for (size_t i = 0; i < m->cap; i++) {
        gd_map_slot *s = &m->slots[i];
        if (!gd_map_live(s)) continue;
        size_t j = s->hash & (ncap - 1);
        while (ns[j].used) j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    m->used = m->count;
}

void *gd_map_get(const gd_map *m, gd_str key)
{
    gd_map_slot *s = map_find(m, key, gd_hash(key.p, key.len));
    return s ? s->val : NULL;
}

gd_map_slot *gd_map_upsert(gd_map *m, gd_str key, bool *created)
{
    uint64_t h = gd_hash(key.p, key.len);
    gd_map_slot *s = map_find(m, key, h);
    if (s) {
        *created = s->val == NULL;
        if (*created) m->count++;
        return s;
    }
    if ((m->used + 1) * 2 > m->cap) map_grow(m); /* load <= 1/2: short probes on misses */
    size_t mask = m->cap - 1;
    size_t i = h & mask;
    while (m->slots[i].used) i = (i + 1) & mask;
    s = &m->slots[i];
    s->hash = h;
    s->val = NULL;
    s->len = key.len;
    s->used = 1;
    if (key.len <= GD_MAP_INLINE_KEY) {
        if (key.len) memcpy(s->k.bytes, key.p, key.len);
    } else {
        s->k.ptr = gd_arena_strdup(m->keys, key).p;
    }
    m->count++;
    m->used++;
    *created = true;
    return s;
}

void *gd_map_del(gd_map *m, gd_str key)
{
    gd_map_slot *s = map_find(m, key, gd_hash(key.p, key.len));
    if (!s || !s->val) return NULL;
    void *v = s->val;
    s->val = NULL; /* deleted: the slot stays used so probing continues past it */
    m->count--;
    return v;
}

/* ---- parsing ---- */

int gd_parse_int(const char *s, size_t len, int64_t min, int64_t max, int64_t *out)
{
    if (!s || len == 0 || len > 20) return GD_ERR;
    char tmp[24];
    memcpy(tmp, s, len);
    tmp[len] = 0;
    char *end;
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (errno || *end || end == tmp || tmp[0] == ' ' || tmp[0] == '+') return GD_ERR;
    if (v < min || v > max) return GD_ERR;
    *out = v;
    return GD_OK;
}

int gd_parse_duration(const char *s, int64_t *ms)
{
    if (!s || !*s) return GD_ERR;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0) return GD_ERR;
    int64_t unit;
    if (!*end || !strcmp(end, "ms")) unit = 1;
    else if (!strcmp(end, "s")) unit = 1000;
    else if (!strcmp(end, "m")) unit = 60 * 1000;
    else if (!strcmp(end, "h")) unit = 3600 * 1000;
    else if (!strcmp(end, "d")) unit = 24 * 3600 * 1000;
    else return GD_ERR;
    if (v > GD_MAX_DURATION_MS / unit) return GD_ERR;
    *ms = v * unit;
    return GD_OK;
}
