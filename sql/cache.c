/* cache.c -- pull queries' plans kept for the statements asked again.
 *
 * A dashboard or a script polls the same SELECT over and over, and reading
 * and planning it again each time is about a tenth of a keyed SQL pull
 * (tokenizer, parser and binder: 8% of the samples of a two-key pull, the
 * rest being the socket, the scan and the answer). A plan is a function of
 * the statement's text and the catalog alone -- it takes nothing from the
 * request, and the personal-data check and masking read the plan after
 * planning -- so the plan made for a text under a catalog version serves
 * every later request with that text under that version. A change of the
 * catalog moves its version, after the change is visible, and a plan kept
 * under another version is never used: the version is read before
 * planning, so a plan made while the catalog changed is kept under the
 * older version and misses at once. Entries of the catalog are never freed
 * while the daemon runs, so a kept plan's pointers into it stay valid.
 *
 * One cache per HTTP thread (api/ksql.c keeps it as thread-specific data):
 * nothing is shared, so nothing is locked or counted, and a plan is read by
 * one request at a time. Each entry owns an arena holding the text, the
 * statement and the plan; a miss claims the least recently used entry and
 * plans straight into its arena, so a statement asked once costs no more
 * than before (no copy, no second planning). The memory is bounded: at
 * most CACHE_ENTRIES plans of at most CACHE_MAX_PLAN_BYTES each (a keyed
 * pull's is about 10 KiB; a 4 KiB statement's can reach 340 KiB, a
 * thousand values IN a list), so 2 MiB a thread; texts over CACHE_MAX_TEXT
 * are planned in the request's arena and not kept. */
#include <stdlib.h>
#include <string.h>

#include "sql.h"

enum { CACHE_ENTRIES = 32, CACHE_MAX_TEXT = 4096, CACHE_MAX_PLAN_BYTES = 64 * 1024 };

typedef struct {
    gd_arena arena; /* text, statement and plan */
    gd_str text;    /* as asked; NULL: not a kept plan */
    gd_str stmt;    /* the statement's own text, as errors quote it */
    uint64_t hash;
    unsigned version;
    uint64_t used; /* the cache's clock at its last use */
    gd_query_plan plan;
} cache_entry;

struct gd_sql_cache {
    cache_entry entries[CACHE_ENTRIES];
    uint64_t clock;
    cache_entry *claimed; /* the entry the open miss plans into */
};

gd_sql_cache *gd_sql_cache_new(void)
{
    gd_sql_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    for (int i = 0; i < CACHE_ENTRIES; i++) gd_arena_init(&c->entries[i].arena);
    return c;
}

void gd_sql_cache_free(void *cache)
{
    gd_sql_cache *c = cache;
    if (!c) return;
    for (int i = 0; i < CACHE_ENTRIES; i++) gd_arena_free(&c->entries[i].arena);
    free(c);
}

const gd_query_plan *gd_sql_cache_find(gd_sql_cache *c, gd_str text, unsigned version, gd_str *stmt)
{
    uint64_t hash = gd_hash(text.p, text.len);
    for (int i = 0; i < CACHE_ENTRIES; i++) {
        cache_entry *e = &c->entries[i];
        if (e->text.p && e->hash == hash && e->version == version && gd_str_eq(e->text, text)) {
            e->used = ++c->clock;
            *stmt = e->stmt;
            return &e->plan;
        }
    }
    return NULL;
}

gd_arena *gd_sql_cache_claim(gd_sql_cache *c, gd_str text)
{
    c->claimed = NULL;
    if (text.len > CACHE_MAX_TEXT) return NULL;
    cache_entry *oldest = &c->entries[0];
    for (int i = 1; i < CACHE_ENTRIES && oldest->text.p; i++)
        if (!c->entries[i].text.p || c->entries[i].used < oldest->used) oldest = &c->entries[i];
    oldest->text = GD_STR_NULL;
    gd_arena_free(&oldest->arena); /* not reset: a large plan's chunks would stay */
    c->claimed = oldest;
    return &oldest->arena;
}

void gd_sql_cache_keep(gd_sql_cache *c, gd_str text, gd_str stmt, unsigned version, const gd_query_plan *plan)
{
    cache_entry *e = c->claimed;
    c->claimed = NULL;
    if (!e) return;
    /* too large to keep; the request still reads it, and the next claim frees it */
    if (e->arena.used_bytes > CACHE_MAX_PLAN_BYTES) return;
    e->text = text;
    e->stmt = stmt;
    e->hash = gd_hash(text.p, text.len);
    e->version = version;
    e->used = ++c->clock;
    e->plan = *plan;
}
