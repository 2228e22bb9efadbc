/* kafka_source.c -- the three source topics through librdkafka (SPEC §3).
 *
 * Two consumers. The reference consumer reads games and players whole --
 * every partition, assigned, not in a group -- because every instance needs
 * the whole tables for the join. The activity consumer reads activity in a
 * consumer group: by default one of this instance's own,
 * <application id>-<instance id>, so every instance holds every record (a
 * replica, SPEC §11). A group named with -X group.id may be shared: each
 * member then holds its own partitions' records only, and says so
 * (counters->cluster: "partial"), so queries get a 503, not part of the
 * answer. A member that took a partition over from another starts at the
 * group's offset and misses what that one applied: it stays partial, and
 * remembers it in its committed position ("#missing P" lines).
 *
 * Partitioned mode (--mode partitioned, route.c): the group is the
 * application id's, shared; it also holds the route topics. Of the
 * changelog a third consumer reads the partitions of the tasks this instance
 * holds or is being given, of the activity partitions it holds (their
 * positions go with route 0's tasks), of the tasks it keeps warm for other
 * owners (--standby-replicas: the roster says which), and partition 0,
 * where every catalog change comes too. An assignment is taken only once
 * those partitions are read to where they stood at the assignment, so the
 * state other instances left for those partitions is in the store first;
 * their positions then come from the changelog's marks. A partition no
 * longer needed is left where it was read to: taken up again, it is read
 * from there, so a standby restores only the tail.
 *
 * Phases: first the reference topics' partitions are looked up (retried
 * while no broker answers), then the reference topics are read until every
 * partition has reported its end (the high-water mark as the consumer sees
 * it, past transaction markers too) -- so early activity is not left
 * unenriched -- and only then is activity subscribed. From there on the reference consumer is
 * polled before each activity record, so table updates keep flowing.
 *
 * Offsets: the position this source reports is the next offset of every
 * partition it has read, and the engine commits it in the same LMDB
 * transaction as the state it produced. On start the engine seeks the source
 * to that position: reference partitions and assigned activity partitions
 * start there, not at the group's committed offsets, so a kill -9 neither
 * loses nor double-counts a record. The group's offsets are still committed
 * (after each LMDB commit) so the usual lag tools see gamingd's progress,
 * and when partitions are revoked, so their next owner starts after what
 * this instance applied. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"

enum { METADATA_TIMEOUT_MS = 2000, RETRY_MS = 1000 };

typedef enum { PHASE_DISCOVER, PHASE_LOAD_REFERENCES, PHASE_RUN } phase;

/* Offsets are kept per topic slot: the three sources by gd_topic, then in
 * partitioned mode the changelog, the routes and the push topic (read from
 * its end at every start, so never part of the position). */
enum {
    SLOT_CHANGELOG = GD_TOPIC_COUNT,
    SLOT_ROUTES,
    SLOT_PUSH = SLOT_ROUTES + GD_MAX_ROUTES,
    SLOT_COUNT,
    SLOT_UNKNOWN = -1
};

/* Next offset per partition of one topic, -1 where nothing is known. */
typedef struct {
    int64_t *next;
    int32_t n;
} offsets;

typedef struct {
    gd_source base;
    const gd_config *cfg;
    gd_counters *counters;
    gd_kafka_client ref_client, act_client;
    rd_kafka_t *ref, *act;
    phase phase;
    int64_t retry_at_ms;
    offsets pos[SLOT_COUNT];
    offsets at_end[SLOT_COUNT]; /* partitions read whole: 1 once their end was reached */
    rd_kafka_topic_partition_list_t *assigned; /* activity (and route) partitions held now */
    /* partitioned mode: the internal topics, and an assignment waiting
     * until the changelog is applied up to `restore_to` */
    char internal[2 + GD_MAX_ROUTES][300]; /* the changelog, the routes, the push topic */
    int nroutes;
    bool partitioned;
    int32_t route_partitions[GD_MAX_ROUTES], changelog_partitions;
    int32_t changelog_base[GD_MAX_ROUTES]; /* where each route's tasks start in the changelog */
    int32_t push_partitions;
    int64_t push_from[GD_MAX_PUSH_PARTITIONS]; /* where each push partition is read from (-1: its end) */
    gd_kafka_client cl_client;
    rd_kafka_t *cl;   /* the changelog partitions in `reading` */
    uint8_t *reading; /* per changelog partition: 1 while read */
    /* per changelog partition, the next offset to read as of the commit
     * being made, and as of the last one done: what the store holds, and
     * what standby reads count their lag from */
    int64_t *commit_next, *visible_next;
    uint64_t standby[GD_MAX_ROUTES][GD_MAX_PARTITIONS / 64]; /* tasks kept warm: for their owners, or given up */
    int64_t standby_check_ms;
    rd_kafka_topic_partition_list_t *pending;
    offsets restore_to; /* per changelog partition; unknown (-1) until asked at the next read */
    bool group_turn; /* which consumer kafka_next polls first */
    offsets unchecked; /* activity partitions of a shared group where it is not known yet whether they miss records: 1 */
    offsets missing;   /* activity partitions whose earlier records another instance applied: 1 */
    int64_t rebalance_started_ms; /* 0: not rebalancing */
    rd_kafka_message_t *held; /* the record last returned; its bytes stay valid until the next */
    bool closing; /* revoked offsets are committed without waiting: the coordinator may be gone */
    gd_ratelimit err_log;
    char identity[800];
    char error[160];
} kafka_source;

static int set_offset(offsets *o, int32_t partition, int64_t next)
{
    if (partition < 0) return GD_ERR;
    if (partition >= o->n) {
        int32_t n = partition + 1;
        int64_t *grown = realloc(o->next, (size_t)n * sizeof *grown);
        if (!grown) return GD_ENOMEM;
        for (int32_t i = o->n; i < n; i++) grown[i] = -1;
        o->next = grown;
        o->n = n;
    }
    o->next[partition] = next;
    return GD_OK;
}

static int64_t get_offset(const offsets *o, int32_t partition)
{
    return partition >= 0 && partition < o->n ? o->next[partition] : -1;
}

static const char *slot_name(const kafka_source *ks, int slot)
{
    return slot < GD_TOPIC_COUNT ? ks->cfg->topics[slot] : ks->internal[slot - SLOT_CHANGELOG];
}

static int slot_of(const kafka_source *ks, const char *name)
{
    gd_topic t = gd_topic_lookup(ks->cfg, gd_str_c(name));
    if (t != GD_TOPIC_UNKNOWN) return (int)t;
    if (!ks->partitioned) return SLOT_UNKNOWN;
    for (int i = 0; i <= ks->nroutes; i++)
        if (!strcmp(name, ks->internal[i])) return SLOT_CHANGELOG + i;
    if (!strcmp(name, slot_name(ks, SLOT_PUSH))) return SLOT_PUSH;
    return SLOT_UNKNOWN;
}

static void release_held(kafka_source *ks)
{
    if (ks->held) rd_kafka_message_destroy(ks->held);
    ks->held = NULL;
}

static int32_t partition_count(kafka_source *ks, const char *topic);

/* ---- what this instance holds ---- */

static void set_state(kafka_source *ks, gd_cluster_state st)
{
    if (ks->counters) atomic_store(&ks->counters->cluster.state, (int)st);
}

static int32_t count_set(const offsets *o)
{
    int32_t n = 0;
    for (int32_t p = 0; p < o->n; p++) n += o->next[p] == 1;
    return n;
}

/* Partitioned mode: the route partitions held, restored -- the tasks whose
 * rows this instance answers for (api/peers.c). */
static void publish_tasks(kafka_source *ks)
{
    gd_cluster_view *v = &ks->counters->cluster;
    for (int r = 0; r < ks->nroutes; r++) {
        uint64_t held[GD_MAX_PARTITIONS / 64] = {0};
        for (int i = 0; ks->assigned && i < ks->assigned->cnt; i++) {
            int32_t p = ks->assigned->elems[i].partition;
            if (p >= 0 && p < GD_MAX_PARTITIONS && !strcmp(ks->assigned->elems[i].topic, ks->internal[1 + r]))
                held[p / 64] |= 1ULL << (p % 64);
        }
        for (int w = 0; w < GD_MAX_PARTITIONS / 64; w++) atomic_store(&v->owned_tasks[r][w], held[w]);
    }
}

/* After the assignment changed: which partitions are held, and whether that
 * is all of the activity (a group of its own always is: no one else reads). */
static void publish_ownership(kafka_source *ks, int32_t activity_partitions)
{
    if (!ks->counters) return;
    gd_cluster_view *v = &ks->counters->cluster;
    uint64_t owned[GD_MAX_PARTITIONS / 64] = {0};
    int held = ks->assigned ? ks->assigned->cnt : 0;
    for (int i = 0; i < held; i++) {
        int32_t p = ks->assigned->elems[i].partition;
        if (strcmp(ks->assigned->elems[i].topic, ks->cfg->topics[GD_TOPIC_ACTIVITY])) continue;
        if (p >= 0 && p < GD_MAX_PARTITIONS) owned[p / 64] |= 1ULL << (p % 64);
    }
    for (int w = 0; w < GD_MAX_PARTITIONS / 64; w++) atomic_store(&v->owned[w], owned[w]);
    publish_tasks(ks);
    atomic_fetch_add(&v->ownership_changes, 1);
    int32_t missed = count_set(&ks->missing);
    atomic_store(&v->missed, missed);
    if (activity_partitions >= 0) atomic_store(&v->partitions[GD_TOPIC_ACTIVITY], activity_partitions);
    if (ks->partitioned) { /* every group's state is in the store, through the changelog */
        set_state(ks, ks->pending || ks->phase != PHASE_RUN ? GD_CLUSTER_REBALANCING : GD_CLUSTER_RUNNING);
        return;
    }
    if (!held) {
        set_state(ks, GD_CLUSTER_REBALANCING);
        return;
    }
    bool whole = held >= atomic_load(&v->partitions[GD_TOPIC_ACTIVITY]) && !missed && !count_set(&ks->unchecked);
    /* a replica reads every partition; one that was in a shared group once
     * may still miss what another member applied */
    set_state(ks, whole || (!v->shared_group && !missed) ? GD_CLUSTER_RUNNING : GD_CLUSTER_PARTIAL);
}

static void rebalance_begins(kafka_source *ks)
{
    if (!ks->rebalance_started_ms) ks->rebalance_started_ms = gd_now_ms();
}

static void rebalance_ends(kafka_source *ks)
{
    if (!ks->rebalance_started_ms || !ks->counters) return;
    uint64_t took = (uint64_t)(gd_now_ms() - ks->rebalance_started_ms);
    ks->rebalance_started_ms = 0;
    atomic_store(&ks->counters->cluster.last_rebalance_ms, took);
    atomic_fetch_add(&ks->counters->cluster.rebalance_ms_total, took);
}

/* Partition p of activity starts at `start`: when records before it are
 * still in the log (lo), another member of the group applied them. */
static void note_start(kafka_source *ks, int32_t p, int64_t start, int64_t lo)
{
    set_offset(&ks->unchecked, p, 0);
    if (start <= lo) return;
    gd_warn("kafka: activity partition %d starts at the group's offset %lld, past the log's start %lld: another "
            "instance of group %s applied the records before it, so this instance's tables miss them (partial)",
            (int)p, (long long)start, (long long)lo, ks->act_client.group);
    set_offset(&ks->missing, p, 1);
}

/* Partitions assigned with no position of ours start at the group's
 * committed offset: looked up now, so that the state says "partial" before
 * a query can see it. Where the brokers do not tell, the partition stays
 * unchecked (partial) until its first record says where it starts. */
static void check_starts(kafka_source *ks, const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *fresh = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++)
        if (get_offset(&ks->pos[GD_TOPIC_ACTIVITY], parts->elems[i].partition) < 0) {
            rd_kafka_topic_partition_list_add(fresh, parts->elems[i].topic, parts->elems[i].partition);
            set_offset(&ks->unchecked, parts->elems[i].partition, 1);
        }
    if (fresh->cnt && !rd_kafka_committed(ks->act, fresh, METADATA_TIMEOUT_MS)) {
        for (int i = 0; i < fresh->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &fresh->elems[i];
            int64_t lo = -1, hi = -1;
            if (tp->err) continue;
            if (tp->offset < 0) { /* nothing committed: it starts at the beginning */
                set_offset(&ks->unchecked, tp->partition, 0);
                continue;
            }
            if (!rd_kafka_query_watermark_offsets(ks->act, tp->topic, tp->partition, &lo, &hi, METADATA_TIMEOUT_MS))
                note_start(ks, tp->partition, tp->offset, lo);
        }
    }
    rd_kafka_topic_partition_list_destroy(fresh);
}

/* The first record of a partition the brokers did not tell about. */
static void check_first_record(kafka_source *ks, const rd_kafka_message_t *m)
{
    if (get_offset(&ks->unchecked, m->partition) != 1) return;
    int64_t lo = -1, hi = -1;
    if (rd_kafka_get_watermark_offsets(ks->act, rd_kafka_topic_name(m->rkt), m->partition, &lo, &hi) || lo < 0)
        rd_kafka_query_watermark_offsets(ks->act, rd_kafka_topic_name(m->rkt), m->partition, &lo, &hi,
                                         METADATA_TIMEOUT_MS);
    note_start(ks, m->partition, m->offset, lo < 0 ? m->offset : lo);
    publish_ownership(ks, -1);
}

/* ---- rebalances of the activity group ---- */

/* Commits to the group the next offset of those of `parts` read so far. */
static void commit_group_offsets(kafka_source *ks, const rd_kafka_topic_partition_list_t *parts, bool async)
{
    rd_kafka_topic_partition_list_t *commit = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++) {
        int slot = slot_of(ks, parts->elems[i].topic);
        int64_t next = slot == SLOT_UNKNOWN ? -1 : get_offset(&ks->pos[slot], parts->elems[i].partition);
        if (next >= 0) rd_kafka_topic_partition_list_add(commit, parts->elems[i].topic, parts->elems[i].partition)->offset = next;
    }
    if (commit->cnt) rd_kafka_commit(ks->act, commit, async);
    rd_kafka_topic_partition_list_destroy(commit);
}

/* Takes parts (offsets set) as the consumer's assignment. */
static void take_assignment(kafka_source *ks, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, bool cooperative)
{
    if (cooperative) rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
    else rd_kafka_assign(rk, parts);
    if (!cooperative || !ks->assigned) {
        if (ks->assigned) rd_kafka_topic_partition_list_destroy(ks->assigned);
        ks->assigned = rd_kafka_topic_partition_list_copy(parts);
    } else {
        for (int i = 0; i < parts->cnt; i++)
            rd_kafka_topic_partition_list_add(ks->assigned, parts->elems[i].topic, parts->elems[i].partition);
    }
    gd_info("kafka: %d partition(s) assigned to this instance", parts->cnt);
    ks->base.caught_up = true;
    rebalance_ends(ks);
    publish_ownership(ks, partition_count(ks, ks->cfg->topics[GD_TOPIC_ACTIVITY]));
}

/* Each partition starts where the committed state stands, else at the
 * group's offset. */
static void set_start_offsets(kafka_source *ks, rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++) {
        int slot = slot_of(ks, parts->elems[i].topic);
        int64_t next = slot == SLOT_UNKNOWN ? -1 : get_offset(&ks->pos[slot], parts->elems[i].partition);
        parts->elems[i].offset = next >= 0 ? next : RD_KAFKA_OFFSET_STORED;
    }
}

/* ---- partitioned mode: the changelog partitions read ---- */

static void want_task(const kafka_source *ks, uint8_t *want, int r, int32_t p)
{
    if (r >= 0 && r < ks->nroutes && p >= 0)
        want[gd_changelog_partition(ks->changelog_base[r], p, ks->changelog_partitions)] = 1;
}

/* The tasks of a list of activity and route partitions. */
static void want_tasks_of(const kafka_source *ks, uint8_t *want, const rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; parts && i < parts->cnt; i++) {
        int slot = slot_of(ks, parts->elems[i].topic);
        if (slot == GD_TOPIC_ACTIVITY) want_task(ks, want, 0, parts->elems[i].partition);
        else if (slot >= SLOT_ROUTES && slot < SLOT_PUSH) want_task(ks, want, slot - SLOT_ROUTES, parts->elems[i].partition);
    }
}

static void publish_reading(kafka_source *ks)
{
    if (!ks->counters) return;
    gd_cluster_view *v = &ks->counters->cluster;
    for (int32_t w = 0; w < GD_MAX_ROUTES * GD_MAX_PARTITIONS / 64; w++) {
        uint64_t bits = 0;
        for (int32_t b = 0; b < 64 && w * 64 + b < ks->changelog_partitions; b++)
            if (ks->reading[w * 64 + b]) bits |= 1ULL << b;
        atomic_store(&v->changelog_reading[w], bits);
    }
    atomic_fetch_add(&v->ownership_changes, 1);
}

/* Reads the changelog partitions this instance needs now, each from where
 * it was read to (else its beginning). */
static int follow_changelog(kafka_source *ks)
{
    int32_t n = ks->changelog_partitions;
    uint8_t *want = calloc((size_t)n, 1);
    if (!want) return GD_ENOMEM;
    want[0] = 1; /* every catalog change comes there too */
    want_tasks_of(ks, want, ks->assigned);
    want_tasks_of(ks, want, ks->pending);
    for (int r = 0; r < ks->nroutes; r++)
        for (int32_t p = 0; p < ks->route_partitions[r] && p < GD_MAX_PARTITIONS; p++)
            if (ks->standby[r][p / 64] >> (p % 64) & 1) want_task(ks, want, r, p);
    if (!memcmp(want, ks->reading, (size_t)n)) {
        free(want);
        return GD_OK;
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
    int32_t count = 0;
    for (int32_t c = 0; c < n; c++) {
        if (!want[c]) continue;
        int64_t next = get_offset(&ks->pos[SLOT_CHANGELOG], c);
        rd_kafka_topic_partition_list_add(parts, ks->internal[0], c)->offset = next >= 0 ? next : RD_KAFKA_OFFSET_BEGINNING;
        count++;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(ks->cl, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (err) {
        free(want);
        gd_error("kafka: cannot read the changelog's partitions: %s", rd_kafka_err2str(err));
        return GD_ERR;
    }
    for (int32_t c = 0; ks->counters && c < n && c < GD_MAX_ROUTES * GD_MAX_PARTITIONS; c++)
        if (want[c] && !ks->reading[c]) atomic_store(&ks->counters->cluster.partition_lag[c], -1); /* until publish_changelog_lag */
    memcpy(ks->reading, want, (size_t)n);
    free(want);
    publish_reading(ks);
    gd_info("kafka: reading %d of the %d changelog partitions", (int)count, (int)n);
    return GD_OK;
}

/* How far behind its end what the store holds of each changelog partition
 * read is, for the metrics and standby reads: after each commit, and every
 * second (check_standbys). From the last commit done, not from what was
 * read since: a standby's rows count once a reader of the store sees them. */
static void publish_changelog_lag(kafka_source *ks)
{
    int64_t lag = 0;
    for (int32_t c = 0; ks->partitioned && c < ks->changelog_partitions; c++) {
        int64_t lo = -1, hi = -1, next = ks->visible_next[c];
        int64_t behind = 0; /* -1: read, but its end is not known yet */
        if (ks->reading[c]) {
            bool known = !rd_kafka_get_watermark_offsets(ks->cl, ks->internal[0], c, &lo, &hi) && hi >= 0;
            int64_t from = next >= 0 ? next : lo > 0 ? lo : 0; /* nothing read: from its start */
            behind = !known ? -1 : hi > from ? hi - from : 0;
        }
        if (behind > 0) lag += behind;
        if (ks->counters && c < GD_MAX_ROUTES * GD_MAX_PARTITIONS)
            atomic_store(&ks->counters->cluster.partition_lag[c], behind);
    }
    if (ks->partitioned && ks->counters) atomic_store(&ks->counters->cluster.changelog_lag, lag);
}

static void publish_standbys(kafka_source *ks)
{
    for (int r = 0; ks->counters && r < GD_MAX_ROUTES; r++)
        for (int w = 0; w < GD_MAX_PARTITIONS / 64; w++)
            atomic_store(&ks->counters->cluster.standby_tasks[r][w], ks->standby[r][w]);
}

/* Every second: which tasks the roster says this instance stands by for. */
static void check_standbys(kafka_source *ks)
{
    if (gd_now_ms() < ks->standby_check_ms || !ks->counters) return;
    ks->standby_check_ms = gd_now_ms() + 1000;
    publish_changelog_lag(ks);
    uint64_t standby[GD_MAX_ROUTES][GD_MAX_PARTITIONS / 64];
    gd_roster_standby_tasks(ks->counters->cluster.roster, ks->cfg->standby_replicas, ks->standby, standby);
    if (!memcmp(standby, ks->standby, sizeof standby)) return;
    memcpy(ks->standby, standby, sizeof standby);
    publish_standbys(ks);
    follow_changelog(ks);
}

/* Tasks given up stay warm until their next owner announces them
 * (check_standbys): their state here is the last one committed, which
 * nothing changes while that owner restores -- so standby reads
 * (--max-staleness) go on being answered through the move. */
static void keep_given_up(kafka_source *ks, const rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++) {
        int slot = slot_of(ks, parts->elems[i].topic);
        int r = slot >= SLOT_ROUTES && slot < SLOT_PUSH ? slot - SLOT_ROUTES : -1;
        int32_t p = parts->elems[i].partition;
        if (r >= 0 && p >= 0 && p < GD_MAX_PARTITIONS) ks->standby[r][p / 64] |= 1ULL << (p % 64);
    }
    publish_standbys(ks);
}

/* Partitioned mode: an assignment waits until the changelog is applied as
 * far as it reached now, so that the state and position another instance
 * left for these partitions are in the store before their records are read. */
static void defer_assignment(kafka_source *ks, const rd_kafka_topic_partition_list_t *parts)
{
    if (!ks->pending) ks->pending = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++)
        rd_kafka_topic_partition_list_add(ks->pending, parts->elems[i].topic, parts->elems[i].partition);
    follow_changelog(ks);
    for (int32_t c = 0; c < ks->restore_to.n; c++) ks->restore_to.next[c] = -1; /* asked for at the next read */
    gd_info("kafka: %d partition(s) assigned; restoring their state from %s first", parts->cnt, ks->internal[0]);
    publish_ownership(ks, -1);
}

/* The deferred assignment, once every changelog partition is applied far
 * enough. */
static void finish_restore(kafka_source *ks)
{
    int64_t remaining = 0;
    for (int32_t c = 0; c < ks->restore_to.n; c++) {
        int64_t lo = -1, hi = -1, read = get_offset(&ks->pos[SLOT_CHANGELOG], c);
        if (!ks->reading[c]) continue;
        if (ks->restore_to.next[c] < 0) {
            if (rd_kafka_query_watermark_offsets(ks->cl, ks->internal[0], c, &lo, &hi, METADATA_TIMEOUT_MS)) return;
            ks->restore_to.next[c] = hi;
        }
        if (ks->restore_to.next[c] > read) remaining += ks->restore_to.next[c] - (read < 0 ? 0 : read);
    }
    if (ks->counters) atomic_store(&ks->counters->cluster.restore_remaining, remaining);
    if (remaining) return;
    rd_kafka_topic_partition_list_t *parts = ks->pending;
    ks->pending = NULL;
    set_start_offsets(ks, parts);
    if (ks->base.on_assigned) ks->base.on_assigned(ks->base.hook_ctx);
    take_assignment(ks, ks->act, parts, !strcmp(rd_kafka_rebalance_protocol(ks->act), "COOPERATIVE"));
    rd_kafka_topic_partition_list_destroy(parts);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                         void *opaque)
{
    gd_kafka_client *client = opaque;
    kafka_source *ks = (kafka_source *)((char *)client - offsetof(kafka_source, act_client));
    bool cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    if (ks->counters) atomic_fetch_add(&ks->counters->kafka_rebalances, 1);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (ks->partitioned) return defer_assignment(ks, parts);
        set_start_offsets(ks, parts);
        if (ks->counters && ks->counters->cluster.shared_group) check_starts(ks, parts);
        take_assignment(ks, rk, parts, cooperative);
    } else {
        /* the next owner starts after what this instance has applied */
        if (ks->base.on_revoke) ks->base.on_revoke(ks->base.hook_ctx);
        commit_group_offsets(ks, parts, ks->closing);
        if (cooperative) rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
        else rd_kafka_assign(rk, NULL);
        for (int i = 0; i < parts->cnt; i++) {
            if (ks->assigned) rd_kafka_topic_partition_list_del(ks->assigned, parts->elems[i].topic, parts->elems[i].partition);
            if (ks->pending) rd_kafka_topic_partition_list_del(ks->pending, parts->elems[i].topic, parts->elems[i].partition);
        }
        if (ks->pending && (!cooperative || !ks->pending->cnt)) {
            rd_kafka_topic_partition_list_destroy(ks->pending);
            ks->pending = NULL;
        }
        gd_info("kafka: %d partition(s) revoked (%s)", parts->cnt, rd_kafka_err2str(err));
        if (ks->partitioned && !ks->closing) keep_given_up(ks, parts);
        if (ks->partitioned) follow_changelog(ks);
        if (!ks->assigned || !ks->assigned->cnt) rebalance_begins(ks);
        publish_ownership(ks, -1);
    }
}

/* ---- phases ---- */

static int32_t partition_count(kafka_source *ks, const char *topic)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(ks->ref, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(ks->ref, 0, rkt, &md, METADATA_TIMEOUT_MS);
    int32_t n = -1;
    if (!err && md->topic_cnt == 1) {
        if (md->topics[0].err) {
            gd_warn("kafka: topic %s: %s; its table stays empty until it exists and gamingd restarts", topic,
                    rd_kafka_err2str(md->topics[0].err));
            n = 0;
        } else n = md->topics[0].partition_cnt;
    }
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return n;
}

static bool references_loaded(const kafka_source *ks)
{
    for (int t = GD_TOPIC_GAMES; t <= SLOT_CHANGELOG; t++)
        for (int32_t p = 0; p < ks->at_end[t].n; p++)
            if (ks->at_end[t].next[p] == 0) return false;
    return true;
}

/* The reference topics' partitions, then read them from the committed
 * position (or their beginning). GD_AGAIN: no broker answers yet. */
static int discover(kafka_source *ks)
{
    if (gd_now_ms() < ks->retry_at_ms) return GD_AGAIN;
    ks->retry_at_ms = gd_now_ms() + RETRY_MS;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(16);
    int rc = GD_OK;
    for (int t = GD_TOPIC_GAMES; !rc && t <= GD_TOPIC_PLAYERS; t++) {
        const char *name = ks->cfg->topics[t];
        int32_t n = partition_count(ks, name);
        if (n < 0) {
            rc = GD_AGAIN;
            break;
        }
        if (ks->counters) atomic_store(&ks->counters->cluster.partitions[t], n);
        for (int32_t p = 0; !rc && p < n; p++) {
            rc = set_offset(&ks->at_end[t], p, 0);
            int64_t next = get_offset(&ks->pos[t], p);
            rd_kafka_topic_partition_list_add(parts, name, p)->offset = next >= 0 ? next : RD_KAFKA_OFFSET_BEGINNING;
        }
    }
    if (rc == GD_AGAIN)
        gd_warn("kafka: waiting for the brokers at %s to describe the reference topics", ks->cfg->brokers);
    if (!rc && ks->partitioned) {
        rc = set_offset(&ks->at_end[SLOT_CHANGELOG], 0, 0); /* the catalog's partition is read to its end first */
        for (int32_t c = 0; !rc && c < ks->changelog_partitions; c++) rc = set_offset(&ks->restore_to, c, -1);
        if (!rc) rc = follow_changelog(ks);
        for (int32_t p = 0; p < ks->push_partitions; p++) /* events from the start on (relay.c) */
            rd_kafka_topic_partition_list_add(parts, slot_name(ks, SLOT_PUSH), p)->offset =
                ks->push_from[p] >= 0 ? ks->push_from[p] : RD_KAFKA_OFFSET_END;
    }
    rd_kafka_resp_err_t err = rc ? RD_KAFKA_RESP_ERR_NO_ERROR : rd_kafka_assign(ks->ref, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (err) {
        gd_error("kafka: cannot assign the reference topics: %s", rd_kafka_err2str(err));
        return GD_ERR;
    }
    if (rc) return rc;
    gd_info("kafka: loading the reference topics %s and %s to their ends",
            ks->cfg->topics[GD_TOPIC_GAMES], ks->cfg->topics[GD_TOPIC_PLAYERS]);
    ks->phase = PHASE_LOAD_REFERENCES;
    set_state(ks, GD_CLUSTER_LOADING);
    return GD_OK;
}

/* The group's topics: activity, and in partitioned mode every route. */
static int subscribe(kafka_source *ks)
{
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1 + ks->nroutes);
    rd_kafka_topic_partition_list_add(topics, ks->cfg->topics[GD_TOPIC_ACTIVITY], RD_KAFKA_PARTITION_UA);
    for (int r = 0; ks->partitioned && r < ks->nroutes; r++)
        rd_kafka_topic_partition_list_add(topics, ks->internal[1 + r], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(ks->act, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        gd_error("kafka: cannot subscribe to %s: %s", ks->cfg->topics[GD_TOPIC_ACTIVITY], rd_kafka_err2str(err));
        return GD_ERR;
    }
    return GD_OK;
}

static int start_activity(kafka_source *ks)
{
    if (subscribe(ks)) return GD_ERR;
    gd_info("kafka: reference tables loaded; reading %s in group %s", ks->cfg->topics[GD_TOPIC_ACTIVITY],
            ks->act_client.group);
    ks->phase = PHASE_RUN;
    if (ks->partitioned && ks->counters) atomic_store(&ks->counters->cluster.routing, true);
    set_state(ks, GD_CLUSTER_REBALANCING);
    rebalance_begins(ks);
    return GD_OK;
}

/* ---- records ---- */

static int slot_of_message(const kafka_source *ks, const rd_kafka_message_t *m)
{
    return slot_of(ks, rd_kafka_topic_name(m->rkt));
}

/* A reference partition reached its end. */
static void note_end(kafka_source *ks, const rd_kafka_message_t *m)
{
    int t = slot_of_message(ks, m);
    if (t != SLOT_UNKNOWN && get_offset(&ks->at_end[t], m->partition) == 0)
        set_offset(&ks->at_end[t], m->partition, 1);
}

/* One message from a consumer, or NULL; errors are logged and skipped. */
static rd_kafka_message_t *poll_one(kafka_source *ks, rd_kafka_t *rk, gd_kafka_client *client)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 0);
    if (!m) return NULL;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        note_end(ks, m);
        rd_kafka_message_destroy(m);
        return NULL;
    }
    if (m->err) {
        if (gd_ratelimit_allow(&ks->err_log)) gd_warn("kafka: %s", rd_kafka_message_errstr(m));
        if (ks->counters) atomic_fetch_add(&ks->counters->kafka_errors, 1);
        rd_kafka_message_destroy(m);
        return NULL;
    }
    gd_kafka_reachable(client);
    return m;
}

static int kafka_next(gd_source *src, gd_record *rec)
{
    kafka_source *ks = (kafka_source *)src;
    release_held(ks);
    if (ks->phase == PHASE_DISCOVER) {
        int rc = discover(ks);
        if (rc) {
            poll_one(ks, ks->ref, &ks->ref_client); /* serves its error events meanwhile */
            return rc;
        }
    }
    /* the group's consumer is polled at least every other call: its
     * rebalances are served there, and a busy changelog must not starve it */
    rd_kafka_message_t *m = NULL;
    bool group_first = ks->phase == PHASE_RUN && (ks->group_turn = !ks->group_turn);
    if (group_first) m = poll_one(ks, ks->act, &ks->act_client);
    if (!m) m = poll_one(ks, ks->ref, &ks->ref_client);
    else group_first = false; /* m is the group's */
    if (!m && ks->cl) m = poll_one(ks, ks->cl, &ks->cl_client);
    if (!m && ks->phase == PHASE_LOAD_REFERENCES) {
        if (!references_loaded(ks)) return GD_AGAIN;
        int rc = start_activity(ks);
        if (rc) return rc;
    }
    if (ks->pending && ks->phase == PHASE_RUN) finish_restore(ks);
    if (ks->partitioned && ks->phase == PHASE_RUN) check_standbys(ks);
    int t = SLOT_UNKNOWN;
    if (!m && ks->phase == PHASE_RUN && !group_first) m = poll_one(ks, ks->act, &ks->act_client);
    if (m) t = slot_of_message(ks, m);
    if (m && t == GD_TOPIC_ACTIVITY && !ks->partitioned) check_first_record(ks, m);
    if (!m) return GD_AGAIN;
    if (t == SLOT_UNKNOWN || set_offset(&ks->pos[t], m->partition, m->offset + 1)) {
        rd_kafka_message_destroy(m);
        return GD_AGAIN;
    }
    ks->held = m;
    rec->topic = t < GD_TOPIC_COUNT ? (gd_topic)t : GD_TOPIC_UNKNOWN;
    rec->kind = t < GD_TOPIC_COUNT    ? GD_REC_SOURCE
                : t == SLOT_CHANGELOG ? GD_REC_CHANGELOG
                : t == SLOT_PUSH      ? GD_REC_PUSH
                                      : GD_REC_ROUTE;
    rec->route = rec->kind == GD_REC_ROUTE ? (uint8_t)(t - SLOT_ROUTES) : 0;
    rec->partition = m->partition;
    rec->offset = m->offset;
    rec->key = (gd_str){m->key ? (const char *)m->key : "", (uint32_t)m->key_len};
    rec->value = m->payload ? (gd_str){(const char *)m->payload, (uint32_t)m->len} : GD_STR_NULL;
    if (rec->kind != GD_REC_SOURCE) return GD_OK; /* written by gamingd, within its bounds */
    if (m->len + m->key_len > ks->cfg->max_record_bytes) { /* dead-lettered by key and size, not its bytes */
        snprintf(ks->error, sizeof ks->error, "a record of %zu bytes, larger than --max-record-bytes %u",
                 m->len + m->key_len, ks->cfg->max_record_bytes);
        rec->value = GD_STR_NULL;
        if (rec->key.len > 256) rec->key.len = 256;
        ks->base.error = ks->error;
        ks->base.error_reason = GD_BAD_TOO_LARGE;
        return GD_EBADREC;
    }
    return GD_OK;
}

/* ---- position ---- */

static int64_t topic_lag(kafka_source *ks, gd_topic t)
{
    rd_kafka_t *rk = t == GD_TOPIC_ACTIVITY ? ks->act : ks->ref;
    int64_t lag = 0;
    for (int32_t p = 0; p < ks->pos[t].n; p++) {
        int64_t lo, hi, next = ks->pos[t].next[p];
        if (t == GD_TOPIC_ACTIVITY && (!ks->assigned || !rd_kafka_topic_partition_list_find(
                                                            ks->assigned, ks->cfg->topics[t], p)))
            continue;
        if (next >= 0 && !rd_kafka_get_watermark_offsets(rk, ks->cfg->topics[t], p, &lo, &hi) && hi > next)
            lag += hi - next;
    }
    return lag;
}

/* "topic partition next-offset" lines. */
static void kafka_position(gd_source *src, gd_buf *out)
{
    kafka_source *ks = (kafka_source *)src;
    for (int32_t p = 0; p < ks->missing.n; p++) /* '#' is in no topic name */
        if (ks->missing.next[p] == 1) gd_buf_printf(out, "#missing %d\n", (int)p);
    for (int t = 0; t < SLOT_PUSH; t++) {
        for (int32_t p = 0; p < ks->pos[t].n; p++)
            if (ks->pos[t].next[p] >= 0)
                gd_buf_printf(out, "%s %d %lld\n", slot_name(ks, t), (int)p, (long long)ks->pos[t].next[p]);
        if (ks->counters && t < GD_TOPIC_COUNT) atomic_store(&ks->counters->consumer_lag[t], topic_lag(ks, (gd_topic)t));
    }
    for (int32_t c = 0; ks->partitioned && c < ks->changelog_partitions; c++)
        ks->commit_next[c] = get_offset(&ks->pos[SLOT_CHANGELOG], c);
}

static void kafka_held_position(gd_source *src, gd_buf *out)
{
    kafka_source *ks = (kafka_source *)src;
    for (int i = 0; ks->assigned && i < ks->assigned->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &ks->assigned->elems[i];
        int slot = slot_of(ks, tp->topic);
        int64_t next = slot == SLOT_UNKNOWN ? -1 : get_offset(&ks->pos[slot], tp->partition);
        if (next >= 0) gd_buf_printf(out, "%s %d %lld\n", tp->topic, (int)tp->partition, (long long)next);
    }
}

static int kafka_seek(gd_source *src, gd_str position)
{
    kafka_source *ks = (kafka_source *)src;
    char line[600];
    const char *p = position.p, *end = position.p + position.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), p);
        char name[512];
        int partition;
        long long next;
        if (sscanf(line, "#missing %d", &partition) == 1) {
            if (set_offset(&ks->missing, partition, 1)) return GD_ENOMEM;
        } else if (sscanf(line, "%511s %d %lld", name, &partition, &next) == 3) {
            int t = slot_of(ks, name);
            /* what another instance says of a partition held here is old news */
            bool held = ks->phase == PHASE_RUN && ks->assigned &&
                        rd_kafka_topic_partition_list_find(ks->assigned, name, partition);
            if (t != SLOT_UNKNOWN && !held && set_offset(&ks->pos[t], partition, next)) return GD_ENOMEM;
        }
        p += n + 1;
    }
    return GD_OK;
}

/* After an LMDB commit: the group learns where the committed state stands. */
static void kafka_committed(gd_source *src)
{
    kafka_source *ks = (kafka_source *)src;
    if (ks->partitioned) {
        memcpy(ks->visible_next, ks->commit_next, (size_t)ks->changelog_partitions * sizeof *ks->visible_next);
        publish_changelog_lag(ks);
    }
    if (ks->phase != PHASE_RUN || !ks->assigned || !ks->assigned->cnt) return;
    commit_group_offsets(ks, ks->assigned, true);
}

/* Leaves the group (so its partitions move at once) when the coordinator
 * answers within `wait_ms`; otherwise the consumer is destroyed without
 * leaving, and the group notices by its session timeout. Without this, a
 * stop with the brokers gone waited for the coordinator for ever. */
static void close_consumer(rd_kafka_t *rk, int64_t wait_ms, void *opaque)
{
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_error_t *err = rd_kafka_consumer_close_queue(rk, q);
    int64_t give_up = gd_mono_ns() + wait_ms * 1000000;
    bool closed = !err;
    if (err) rd_kafka_error_destroy(err);
    while (closed && !rd_kafka_consumer_closed(rk)) {
        if (gd_mono_ns() >= give_up) {
            closed = false;
            gd_warn("kafka: the group coordinator did not answer within %lld ms; leaving the group to its session "
                    "timeout", (long long)wait_ms);
            break;
        }
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
        if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE) /* the revoke of leaving */
            on_rebalance(rk, rd_kafka_event_error(ev), rd_kafka_event_topic_partition_list(ev), opaque);
        if (ev) rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy_flags(rk, closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

static void kafka_close(gd_source *src)
{
    kafka_source *ks = (kafka_source *)src;
    release_held(ks);
    int64_t wait_ms = ks->cfg->shutdown_timeout_ms / 4;
    ks->closing = true;
    if (ks->act) close_consumer(ks->act, wait_ms, &ks->act_client);
    if (ks->ref) close_consumer(ks->ref, wait_ms, &ks->ref_client);
    if (ks->cl) close_consumer(ks->cl, wait_ms, &ks->cl_client);
    gd_kafka_client_destroy(&ks->ref_client);
    gd_kafka_client_destroy(&ks->cl_client);
    gd_kafka_client_destroy(&ks->act_client);
    if (ks->assigned) rd_kafka_topic_partition_list_destroy(ks->assigned);
    if (ks->pending) rd_kafka_topic_partition_list_destroy(ks->pending);
    for (int t = 0; t < SLOT_COUNT; t++) {
        free(ks->pos[t].next);
        free(ks->at_end[t].next);
    }
    free(ks->unchecked.next);
    free(ks->missing.next);
    free(ks->restore_to.next);
    free(ks->reading);
    free(ks->commit_next);
    free(ks->visible_next);
    free(ks);
}

static rd_kafka_t *new_consumer(const gd_config *cfg, gd_kafka_client *client, const char *const *defaults);

static int kafka_use_internal(gd_source *src, const char *changelog, int32_t changelog_partitions, const char *push,
                              int32_t push_partitions, const int64_t *push_from)
{
    kafka_source *ks = (kafka_source *)src;
    if (changelog_partitions <= 0 || changelog_partitions > GD_MAX_ROUTES * GD_MAX_PARTITIONS ||
        push_partitions > GD_MAX_PUSH_PARTITIONS)
        return GD_ERR;
    ks->partitioned = true;
    ks->changelog_partitions = changelog_partitions;
    ks->push_partitions = push_partitions;
    memcpy(ks->push_from, push_from, (size_t)push_partitions * sizeof *push_from);
    if (!(ks->reading = calloc((size_t)changelog_partitions, 1)) ||
        !(ks->commit_next = malloc((size_t)changelog_partitions * sizeof *ks->commit_next)) ||
        !(ks->visible_next = malloc((size_t)changelog_partitions * sizeof *ks->visible_next)))
        return GD_ENOMEM;
    for (int32_t c = 0; c < changelog_partitions; c++) ks->commit_next[c] = ks->visible_next[c] = -1;
    const char *const changelog_defaults[] = { /* assigned, never in a group, but librdkafka wants an id */
        "group.id", ks->act_client.group, "enable.auto.commit", "false", "enable.auto.offset.store", "false",
        "enable.partition.eof", "true", NULL};
    if (!(ks->cl = new_consumer(ks->cfg, &ks->cl_client, changelog_defaults))) return GD_ERR;
    snprintf(ks->internal[0], sizeof ks->internal[0], "%s", changelog);
    snprintf(ks->internal[SLOT_PUSH - SLOT_CHANGELOG], sizeof ks->internal[0], "%s", push);
    if (ks->counters) {
        gd_cluster_view *v = &ks->counters->cluster;
        snprintf(v->changelog_topic, sizeof v->changelog_topic, "%s", changelog);
        v->changelog_partitions = changelog_partitions;
    }
    return GD_OK;
}

static int kafka_add_route(gd_source *src, const char *topic, int32_t partitions, int32_t changelog_base)
{
    kafka_source *ks = (kafka_source *)src;
    if (!ks->partitioned || ks->nroutes == GD_MAX_ROUTES) return GD_ERR;
    int r = ks->nroutes;
    snprintf(ks->internal[1 + r], sizeof ks->internal[1 + r], "%s", topic);
    ks->route_partitions[r] = partitions;
    ks->changelog_base[r] = changelog_base;
    ks->nroutes++;
    if (ks->counters) { /* read by the HTTP threads: the route whole before it is counted */
        gd_cluster_view *v = &ks->counters->cluster;
        snprintf(v->route_topic[r], sizeof v->route_topic[r], "%s", topic);
        atomic_store(&v->route_partitions[r], partitions);
        atomic_store(&v->changelog_base[r], changelog_base);
        atomic_store(&v->nroutes, r + 1);
    }
    return ks->phase == PHASE_RUN ? subscribe(ks) : GD_OK; /* else subscribed with the rest */
}

static rd_kafka_t *new_consumer(const gd_config *cfg, gd_kafka_client *client, const char *const *defaults)
{
    char err[512];
    rd_kafka_conf_t *conf = gd_kafka_conf(cfg, client, defaults);
    if (!conf) return NULL;
    if (client->role == GD_KAFKA_ACTIVITY) rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    size_t n = sizeof client->group;
    if (rd_kafka_conf_get(conf, "group.id", client->group, &n) != RD_KAFKA_CONF_OK) client->group[0] = 0;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        gd_error("kafka: cannot create a consumer: %s", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk); /* errors and rebalances come through consumer_poll */
    return rk;
}

gd_source *gd_kafka_source_open(const gd_config *cfg, gd_counters *counters)
{
    if (!cfg->brokers[0]) {
        gd_error("--source kafka needs --brokers LIST");
        return NULL;
    }
    kafka_source *ks = calloc(1, sizeof *ks);
    if (!ks) return NULL;
    ks->cfg = cfg;
    ks->counters = counters;
    gd_kafka_client_init(&ks->ref_client, GD_KAFKA_REFERENCE, counters);
    gd_kafka_client_init(&ks->act_client, GD_KAFKA_ACTIVITY, counters);
    gd_kafka_client_init(&ks->cl_client, GD_KAFKA_REFERENCE, counters);
    /* offsets live in LMDB: nothing automatic; a new group starts at the beginning;
     * a deep prefetch keeps ingest fed while catching up (memory stays bounded
     * by queued.max.messages.kbytes) */
    char own_group[sizeof cfg->application_id + 32];
    if (cfg->partitioned) snprintf(own_group, sizeof own_group, "%s", cfg->application_id); /* shared */
    else snprintf(own_group, sizeof own_group, "%s-%s", cfg->application_id, counters->cluster.instance_id);
    const char *const consumer_defaults[] = {
        "group.id", own_group, "enable.auto.commit", "false", "enable.auto.offset.store", "false",
        "auto.offset.reset", "earliest", "enable.partition.eof", "false", "queued.min.messages", "1000000", NULL};
    const char *const reference_defaults[] = { /* assigned, never in a group, but librdkafka wants an id */
        "group.id", own_group, "enable.auto.commit", "false", "enable.auto.offset.store", "false", "enable.partition.eof", "true", NULL};
    ks->ref = new_consumer(cfg, &ks->ref_client, reference_defaults);
    ks->act = ks->ref ? new_consumer(cfg, &ks->act_client, consumer_defaults) : NULL;
    if (counters) {
        gd_cluster_view *v = &counters->cluster;
        v->shared_group = !cfg->partitioned && strcmp(ks->act_client.group, own_group) != 0;
        v->partitioned = cfg->partitioned;
        snprintf(v->group, sizeof v->group, "%s", ks->act_client.group);
    }
    snprintf(ks->identity, sizeof ks->identity, "kafka:%s,%s,%s", cfg->topics[GD_TOPIC_GAMES],
             cfg->topics[GD_TOPIC_PLAYERS], cfg->topics[GD_TOPIC_ACTIVITY]);
    ks->base = (gd_source){.kind = "kafka", .identity = ks->identity, .endless = true, .next = kafka_next,
                           .position = kafka_position, .seek = kafka_seek, .committed = kafka_committed,
                           .use_internal = kafka_use_internal, .add_route = kafka_add_route, .held_position = kafka_held_position,
                           .close = kafka_close};
    if (!ks->act) {
        kafka_close(&ks->base);
        return NULL;
    }
    return &ks->base;
}
