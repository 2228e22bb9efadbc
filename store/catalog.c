/* catalog.c -- the slots of tables and streams, the quarantine of stored
 * definitions that no longer compile, the DDL command queue between HTTP
 * threads and the ingest thread, and the stored form of the user's
 * definitions, quarantined ones included (catalog.h). */
#include "catalog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct gd_catalog_cmd {
    gd_cmd_op op;
    gd_catalog_entry *entry;
    bool done, abandoned;
    int rc;
    char why[256];
    gd_catalog_cmd *next;
};

void gd_catalog_init(gd_catalog *c, int64_t grace_ms)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&c->applied, &attr);
    pthread_condattr_destroy(&attr);
    c->next_uid = 1;
    c->grace_ms = grace_ms;
}

gd_catalog_entry *gd_catalog_entry_new(void)
{
    gd_catalog_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    gd_arena_init(&e->arena);
    return e;
}

void gd_catalog_entry_free(gd_catalog_entry *e)
{
    if (!e) return;
    gd_arena_free(&e->arena);
    free(e);
}

void gd_catalog_free(gd_catalog *c)
{
    for (unsigned i = 0; i < GD_MAX_TABLES; i++) gd_catalog_entry_free(atomic_load(&c->tables[i]));
    for (unsigned i = 0; i < GD_MAX_STREAMS; i++) gd_catalog_entry_free(atomic_load(&c->streams[i]));
    for (unsigned i = 0; i < GD_MAX_QUARANTINED; i++) gd_catalog_entry_free(atomic_load(&c->quarantined[i]));
    while (c->retired) {
        gd_catalog_entry *next = c->retired->next_retired;
        gd_catalog_entry_free(c->retired);
        c->retired = next;
    }
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->applied);
}

static gd_catalog_entry *slot_load(_Atomic(gd_catalog_entry *) *slot)
{
    return atomic_load_explicit(slot, memory_order_acquire);
}

const gd_catalog_entry *gd_catalog_table(const gd_catalog *c, unsigned slot)
{
    return slot < GD_MAX_TABLES ? slot_load((_Atomic(gd_catalog_entry *) *)&c->tables[slot]) : NULL;
}

const gd_catalog_entry *gd_catalog_stream(const gd_catalog *c, unsigned slot)
{
    return slot < GD_MAX_STREAMS ? slot_load((_Atomic(gd_catalog_entry *) *)&c->streams[slot]) : NULL;
}

static bool name_is(const gd_catalog_entry *e, gd_str name)
{
    return e && strlen(e->name) == name.len && !strncasecmp(e->name, name.p, name.len);
}

const gd_catalog_entry *gd_catalog_find(const gd_catalog *c, gd_str name)
{
    for (unsigned i = 0; i < GD_MAX_TABLES; i++) {
        const gd_catalog_entry *e = gd_catalog_table(c, i);
        if (name_is(e, name)) return e;
    }
    for (unsigned i = 0; i < GD_MAX_STREAMS; i++) {
        const gd_catalog_entry *e = gd_catalog_stream(c, i);
        if (name_is(e, name)) return e;
    }
    return NULL;
}

const gd_catalog_entry *gd_catalog_quarantined(const gd_catalog *c, unsigned i)
{
    return i < GD_MAX_QUARANTINED ? slot_load((_Atomic(gd_catalog_entry *) *)&c->quarantined[i]) : NULL;
}

const gd_catalog_entry *gd_catalog_find_quarantined(const gd_catalog *c, gd_str name)
{
    for (unsigned i = 0; i < GD_MAX_QUARANTINED; i++) {
        const gd_catalog_entry *e = gd_catalog_quarantined(c, i);
        if (name_is(e, name)) return e;
    }
    return NULL;
}

bool gd_catalog_name_taken(const gd_catalog *c, gd_str name)
{
    return gd_catalog_find(c, name) || gd_catalog_find_quarantined(c, name);
}

const gd_tabledef *gd_catalog_tabledef(const gd_catalog *c, gd_str name)
{
    const gd_catalog_entry *e = gd_catalog_find(c, name);
    return e && e->is_table ? e->table : NULL;
}

const gd_tabledef *gd_catalog_reference(const gd_catalog *c, gd_table_kind kind)
{
    for (unsigned i = 0; i < GD_MAX_TABLES; i++) {
        const gd_catalog_entry *e = gd_catalog_table(c, i);
        if (e && e->table->kind == kind) return e->table;
    }
    return NULL;
}

gd_pii gd_catalog_column_pii(const gd_catalog_entry *e, const char *name)
{
    if (!e->is_table) {
        for (int i = 0; i < e->ncols; i++)
            if (!strcasecmp(e->cols[i].name, name)) return e->cols[i].pii;
        return GD_PII_NONE;
    }
    const gd_tabledef *t = e->table;
    for (int k = 0; k < t->nkeys; k++)
        if (!strcasecmp(t->keys[k].name, name)) return t->keys[k].pii;
    for (int c = 0; c < t->ncols; c++)
        if (!strcasecmp(t->cols[c].name, name)) return t->cols[c].pii;
    return GD_PII_NONE;
}

int gd_catalog_tag_pii(gd_catalog *c, gd_topic topic, const char *field)
{
    if (gd_catalog_tagged_pii(c, topic, field)) return GD_OK;
    if (c->npii_tags == GD_MAX_PII_TAGS || strlen(field) >= sizeof c->pii_tags[0].field) return GD_ERR;
    c->pii_tags[c->npii_tags].topic = topic;
    strcpy(c->pii_tags[c->npii_tags++].field, field);
    return GD_OK;
}

bool gd_catalog_tagged_pii(const gd_catalog *c, gd_topic topic, const char *field)
{
    for (int i = 0; field && i < c->npii_tags; i++)
        if (c->pii_tags[i].topic == topic && !strcmp(c->pii_tags[i].field, field)) return true;
    return false;
}

void gd_pii_refusal(gd_pii_use use, char *out, size_t cap)
{
    snprintf(out, cap, "%s %s needs an API key with the pii scope: %s is personal data (selected, it is shown masked)",
             use.how, use.column, use.column);
}

bool gd_catalog_has_pii(const gd_catalog_entry *e)
{
    if (!e->is_table) {
        for (int i = 0; i < e->ncols; i++)
            if (e->cols[i].pii) return true;
        return false;
    }
    const gd_tabledef *t = e->table;
    for (int k = 0; k < t->nkeys; k++)
        if (t->keys[k].pii) return true;
    for (int c = 0; c < t->ncols; c++)
        if (t->cols[c].pii) return true;
    return false;
}

const gd_catalog_entry *gd_catalog_hub_entry(const gd_catalog *c, unsigned n)
{
    if (n < GD_MAX_STREAMS) return gd_catalog_stream(c, n);
    if (n < GD_MAX_STREAMS + GD_MAX_TABLES) return gd_catalog_table(c, n - GD_MAX_STREAMS);
    return NULL;
}

int64_t gd_catalog_grace(const gd_catalog *c, const gd_tabledef *t)
{
    enum { DAY_MS = 24 * 3600 * 1000 };
    if (t->grace_ms >= 0) return t->grace_ms;
    if (c->grace_ms >= 0) return c->grace_ms;
    /* ksqlDB's default: window size plus grace is 24 hours */
    return t->window_ms < DAY_MS ? DAY_MS - t->window_ms : 0;
}

int gd_catalog_add(gd_catalog *c, gd_catalog_entry *e, const char **why)
{
    if (gd_catalog_name_taken(c, gd_str_c(e->name))) {
        *why = "a table or stream of that name exists";
        return GD_ERR;
    }
    _Atomic(gd_catalog_entry *) *slots = e->is_table ? c->tables : c->streams;
    unsigned i, n; /* the slots it may take: built-in streams have theirs (GD_STREAM_*) */
    if (e->is_table) i = 0, n = GD_MAX_TABLES;
    else if (e->kind != GD_SRC_DERIVED) i = (unsigned)e->kind, n = i + 1;
    else i = GD_STREAM_BUILTIN_COUNT, n = GD_MAX_STREAMS;
    while (i < n && slot_load(&slots[i])) i++;
    if (i == n) {
        *why = e->is_table ? "no room for another table (64 at most)" : "no room for another stream (32 at most)";
        return GD_ERR;
    }
    e->slot = i;
    if (e->table) e->table->slot = i;
    if (e->uid >= c->next_uid) c->next_uid = e->uid + 1;
    atomic_store_explicit(&slots[i], e, memory_order_release);
    atomic_fetch_add(&c->version, 1);
    return GD_OK;
}

int gd_catalog_quarantine(gd_catalog *c, gd_catalog_entry *e)
{
    unsigned i = 0;
    while (i < GD_MAX_QUARANTINED && slot_load(&c->quarantined[i])) i++;
    if (i == GD_MAX_QUARANTINED) return GD_ERR;
    e->slot = i;
    if (e->uid >= c->next_uid) c->next_uid = e->uid + 1;
    atomic_store_explicit(&c->quarantined[i], e, memory_order_release);
    atomic_fetch_add(&c->version, 1);
    return GD_OK;
}

void gd_catalog_remove(gd_catalog *c, gd_catalog_entry *e)
{
    _Atomic(gd_catalog_entry *) *slots = e->error ? c->quarantined : e->is_table ? c->tables : c->streams;
    atomic_store_explicit(&slots[e->slot], NULL, memory_order_release);
    atomic_fetch_add(&c->version, 1);
    pthread_mutex_lock(&c->lock);
    e->next_retired = c->retired;
    c->retired = e;
    pthread_mutex_unlock(&c->lock);
}

/* ---- commands ---- */

static void cmd_free(gd_catalog_cmd *cmd) { free(cmd); }

int gd_catalog_submit(gd_catalog *c, gd_cmd_op op, gd_catalog_entry *e, int timeout_ms, char *why, size_t why_len)
{
    gd_catalog_cmd *cmd = calloc(1, sizeof *cmd);
    if (!cmd) {
        snprintf(why, why_len, "out of memory");
        return GD_ERR;
    }
    cmd->op = op;
    cmd->entry = e;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->lock);
    gd_catalog_cmd **tail = &c->queue;
    while (*tail) tail = &(*tail)->next;
    *tail = cmd;
    atomic_store_explicit(&c->has_commands, true, memory_order_release);
    int wait = 0;
    while (!cmd->done && wait != ETIMEDOUT) wait = pthread_cond_timedwait(&c->applied, &c->lock, &until);
    int rc;
    if (cmd->done) {
        rc = cmd->rc;
        snprintf(why, why_len, "%s", cmd->why);
        cmd_free(cmd);
    } else { /* the ingest thread frees it when it gets to it */
        cmd->abandoned = true;
        rc = GD_AGAIN;
        snprintf(why, why_len, "the ingest thread did not apply the change within %d ms", timeout_ms);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

gd_catalog_cmd *gd_catalog_take(gd_catalog *c)
{
    pthread_mutex_lock(&c->lock);
    gd_catalog_cmd *cmd = c->queue;
    if (cmd) c->queue = cmd->next;
    atomic_store_explicit(&c->has_commands, c->queue != NULL, memory_order_release);
    pthread_mutex_unlock(&c->lock);
    return cmd;
}

gd_cmd_op gd_catalog_cmd_op(const gd_catalog_cmd *cmd) { return cmd->op; }
gd_catalog_entry *gd_catalog_cmd_entry(const gd_catalog_cmd *cmd) { return cmd->entry; }

void gd_catalog_finish(gd_catalog *c, gd_catalog_cmd *cmd, int rc, const char *why)
{
    pthread_mutex_lock(&c->lock);
    if (cmd->abandoned) {
        /* no one waits: a refused CREATE's entry is ours to free */
        if (rc != GD_OK && cmd->op == GD_CMD_CREATE) gd_catalog_entry_free(cmd->entry);
        cmd_free(cmd);
    } else {
        cmd->done = true;
        cmd->rc = rc;
        snprintf(cmd->why, sizeof cmd->why, "%s", why ? why : "");
        pthread_cond_broadcast(&c->applied);
    }
    pthread_mutex_unlock(&c->lock);
}

/* ---- stored definitions: [u64 next uid] then per definition
 * [u64 uid][u8 is_table][u8 terminated][u32 length][statement] ---- */

static void encode_entry(const gd_catalog_entry *e, bool terminated, gd_buf *out)
{
    gd_buf_put_u64be(out, e->uid);
    gd_buf_putc(out, (char)e->is_table);
    gd_buf_putc(out, (char)terminated);
    gd_buf_put_u32be(out, (uint32_t)strlen(e->sql));
    gd_buf_puts(out, e->sql);
}

static int by_uid(const void *a, const void *b)
{
    uint64_t x = (*(const gd_catalog_entry *const *)a)->uid, y = (*(const gd_catalog_entry *const *)b)->uid;
    return (x > y) - (x < y);
}

void gd_catalog_encode(const gd_catalog *c, const gd_catalog_entry *const *adds, int nadds,
                       const gd_catalog_entry *drop, const gd_catalog_entry *terminate, gd_buf *out)
{
    /* in the order they were created: a definition names only what existed
     * before it, so they compile again in this order */
    const gd_catalog_entry *list[GD_MAX_TABLES + GD_MAX_STREAMS + GD_MAX_QUARANTINED + 2];
    size_t n = 0;
    for (unsigned i = 0; i < GD_MAX_QUARANTINED; i++) { /* kept as stored until dropped */
        const gd_catalog_entry *e = gd_catalog_quarantined(c, i);
        if (e && e != drop) list[n++] = e;
    }
    for (unsigned i = 0; i < GD_MAX_TABLES; i++) {
        const gd_catalog_entry *e = gd_catalog_table(c, i);
        if (e && !e->builtin && e != drop) list[n++] = e;
    }
    for (unsigned i = 0; i < GD_MAX_STREAMS; i++) {
        const gd_catalog_entry *e = gd_catalog_stream(c, i);
        if (e && !e->builtin && e != drop) list[n++] = e;
    }
    uint64_t next = c->next_uid;
    for (int i = 0; i < nadds && i < 2; i++) {
        list[n++] = adds[i];
        if (adds[i]->uid >= next) next = adds[i]->uid + 1;
    }
    qsort(list, n, sizeof *list, by_uid);
    gd_buf_clear(out);
    gd_buf_put_u64be(out, next);
    for (size_t i = 0; i < n; i++) encode_entry(list[i], atomic_load(&list[i]->terminated) || list[i] == terminate, out);
}

const gd_catalog_entry *gd_catalog_reader_of(const gd_catalog *c, const gd_catalog_entry *source)
{
    for (int table = 1; table >= 0; table--) {
        unsigned n = table ? GD_MAX_TABLES : GD_MAX_STREAMS;
        for (unsigned i = 0; i < n; i++) {
            const gd_catalog_entry *e = table ? gd_catalog_table(c, i) : gd_catalog_stream(c, i);
            if (e && e != source && e->reads && !strcmp(e->reads, source->name)) return e;
        }
    }
    return NULL;
}

bool gd_catalog_has_room(const gd_catalog *c, const gd_catalog_entry *e)
{
    if (e->is_table) {
        for (unsigned i = 0; i < GD_MAX_TABLES; i++)
            if (!gd_catalog_table(c, i)) return true;
        return false;
    }
    for (unsigned i = GD_STREAM_BUILTIN_COUNT; i < GD_MAX_STREAMS; i++)
        if (!gd_catalog_stream(c, i)) return true;
    return false;
}

uint64_t gd_catalog_next_uid(const gd_catalog *c) { return c->next_uid; }

int gd_catalog_decode(gd_catalog *c, gd_str stored, gd_catalog_def_fn fn, void *ctx)
{
    const char *p = stored.p, *end = stored.p + stored.len;
    if (end - p < 8) return GD_ERR;
    uint64_t next_uid = gd_get_u64be(p);
    p += 8;
    if (next_uid > c->next_uid) c->next_uid = next_uid;
    while (p < end) {
        if (end - p < 14) return GD_ERR;
        uint64_t uid = gd_get_u64be(p);
        bool is_table = p[8], terminated = p[9];
        uint32_t len = gd_get_u32be(p + 10);
        p += 14;
        if ((size_t)(end - p) < len) return GD_ERR;
        int rc = fn(ctx, uid, is_table, terminated, (gd_str){p, len});
        if (rc) return rc;
        p += len;
    }
    return GD_OK;
}
