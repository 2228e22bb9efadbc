/* session.c -- session windows: see tables.h.
 *
 * A group's sessions are a short list, latest first: they never overlap
 * and lie more than the gap apart, so a record reaches at most two of them
 * (one ending before it, one starting after it), and a walk from the latest
 * stops at the first that ends a gap before it: most records touch only the
 * first. Each session is one allocation (slots, then its group
 * key) with an arena for its strings, so that one leaves memory on its own
 * when it closes, however long its neighbours stay open.
 *
 * Lateness as Kafka Streams has it for session windows: a record is dropped
 * when the session it would make or join ends before the stream time less
 * the grace; a late record that bridges into an open session is not late. */
#include <stdlib.h>
#include <string.h>

#include "tables.h"

gd_session *gd_session_new(const gd_tabledef *t, gd_str key, int64_t start)
{
    size_t slots = sizeof(gd_slot) * t->nslots;
    gd_session *s = calloc(1, sizeof *s + slots + key.len + 1);
    if (!s) {
        gd_error("out of memory opening a session");
        abort();
    }
    char *k = (char *)s->slots + slots;
    memcpy(k, key.p, key.len);
    s->key = (gd_str){k, key.len};
    s->start = s->end = start;
    gd_arena_init(&s->arena);
    return s;
}

void gd_session_free(const gd_tabledef *t, gd_session *s, gd_dict *dict)
{
    gd_slots_release(t, s->slots, dict);
    gd_arena_free(&s->arena);
    free(s);
}

static void insert(gd_session **list, gd_session *s)
{
    while (*list && (*list)->start > s->start) list = &(*list)->next;
    s->next = *list;
    *list = s;
}

void gd_sessions_add(gd_map *sessions, gd_session *s)
{
    bool created;
    gd_map_slot *m = gd_map_upsert(sessions, s->key, &created);
    gd_session *list = m->val;
    insert(&list, s);
    m->val = list;
}

/* Whether a record at ts is within the gap of s. */
static bool reaches(const gd_tabledef *t, const gd_session *s, int64_t ts)
{
    return s->end >= ts - t->window_ms && s->start <= ts + t->window_ms;
}

/* The session of a group's list a record at ts joins (gd_sessions_join). */
static gd_session *join(const gd_tabledef *t, gd_session **list, gd_str key, int64_t ts, int64_t grace_ms,
                        int64_t stream_time, gd_dict *dict, gd_session_gone_fn *gone, void *ctx)
{
    int64_t start = ts, end = ts;
    gd_session *earliest = NULL; /* of those the record reaches: the one that stays */
    for (gd_session *s = *list; s && s->end >= ts - t->window_ms; s = s->next) /* the rest end before */
        if (reaches(t, s, ts)) {
            earliest = s;
            if (s->start < start) start = s->start;
            if (s->end > end) end = s->end;
        }
    if (end + grace_ms < stream_time) return NULL;
    if (!earliest) {
        earliest = gd_session_new(t, key, ts);
        insert(list, earliest);
    }
    for (gd_session **link = list; *link && (*link)->end >= ts - t->window_ms;) {
        gd_session *s = *link;
        if (s == earliest || !reaches(t, s, ts)) {
            link = &s->next;
            continue;
        }
        *link = s->next; /* later than earliest: merged into it */
        gd_slots_merge(t, earliest->slots, s->slots, &earliest->arena, dict);
        gone(ctx, s->start, key, s);
    }
    if (start < earliest->start) {
        gone(ctx, earliest->start, key, NULL);
        earliest->start = start; /* still after every session before it: they end a gap before ts */
    }
    earliest->end = end;
    earliest->slots[t->session_end] = (gd_slot){.n = 1, .v.i = end};
    return earliest;
}

gd_session *gd_sessions_join(const gd_tabledef *t, gd_map *sessions, gd_str key, int64_t ts, int64_t grace_ms,
                             int64_t stream_time, gd_dict *dict, gd_session_gone_fn *gone, void *ctx)
{
    gd_session *list = gd_map_get(sessions, key), *head = list;
    gd_session *s = join(t, &list, key, ts, grace_ms, stream_time, dict, gone, ctx);
    if (s && list != head) { /* a new group, or a new latest session */
        bool created;
        gd_map_upsert(sessions, key, &created)->val = list;
    }
    return s;
}

/* Whether no record can change s any more: none within its gap can come
 * in its grace, nor one that bridges it to the group's next session (its
 * start later_start, INT64_MAX: none) while that one is open. */
static bool closed(const gd_tabledef *t, const gd_session *s, int64_t later_start, bool later_closed,
                   int64_t grace_ms, int64_t stream_time)
{
    if (!later_closed && later_start - t->window_ms <= s->end + t->window_ms) return false;
    return gd_session_ended(t, s->end, grace_ms, stream_time);
}

int64_t gd_sessions_close(const gd_tabledef *t, gd_map *sessions, int64_t grace_ms, int64_t stream_time,
                          gd_dict *dict, gd_session_fn *closed_fn, void *ctx)
{
    int64_t oldest_open = INT64_MAX;
    for (size_t i = 0; i < sessions->cap; i++) {
        gd_map_slot *m = &sessions->slots[i];
        if (!gd_map_live(m)) continue;
        gd_session *head = m->val;
        int64_t later_start = INT64_MAX;
        bool later_closed = true;
        for (gd_session **link = &head; *link;) { /* latest first: a session's later one is known */
            gd_session *x = *link;
            later_closed = closed(t, x, later_start, later_closed, grace_ms, stream_time);
            later_start = x->start;
            if (!later_closed) {
                if (x->start < oldest_open) oldest_open = x->start;
                link = &x->next;
                continue;
            }
            *link = x->next;
            if (closed_fn) closed_fn(ctx, x);
            gd_session_free(t, x, dict);
        }
        if (head) m->val = head;
        else gd_map_del(sessions, gd_map_key(m));
    }
    return oldest_open;
}
