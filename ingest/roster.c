/* roster.c -- the instances of one application id, known through Kafka
 * (SPEC §11), and what each holds as GET /v1/cluster shows it.
 *
 * Every instance announces itself every ANNOUNCE_MS on the topic
 * `<application id>-instances` (created compacted, one partition; keyed by
 * instance id): its URL, instance id, state and the partitions it reads --
 * the object /v1/cluster lists. Each reads the others' announcements from
 * the topic's end, so within one interval of starting it knows every live
 * instance. Nothing of its own for membership: an announcement older than
 * STALE_MS is an instance gone (kill -9 leaves nothing else), and a clean
 * stop writes a tombstone so that the others drop it at once.
 *
 * A thread of its own with its own two clients, so that neither ingest nor
 * an HTTP request ever waits on the brokers for this; the HTTP threads copy
 * the others' announcements under a mutex. What others announce is parsed
 * and checked before it is kept: the topic is writable by whoever the
 * brokers allow, not only by gamingd. */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"

enum {
    ANNOUNCE_MS = 2000,
    STALE_MS = 10000,
    POLL_MS = 200,
    MAX_OTHERS = 256,
    MAX_ANNOUNCEMENT_BYTES = 64 * 1024,
    METADATA_TIMEOUT_MS = 5000,
};

typedef uint64_t task_set[GD_MAX_ROUTES][GD_MAX_PARTITIONS / 64]; /* a bit per route partition */
typedef uint64_t changelog_set[GD_MAX_ROUTES * GD_MAX_PARTITIONS / 64]; /* a bit per changelog partition */

typedef struct {
    char id[32];
    int64_t seen_ms; /* when its last announcement arrived */
    char *json;      /* that announcement, as /v1/cluster lists it */
    char url[1100];
    task_set tasks;  /* partitioned mode: the tasks it holds */
    changelog_set reads; /* ... and the changelog partitions it reads: its tasks', its standbys' */
} other_instance;

struct gd_roster {
    const gd_config *cfg;
    gd_counters *counters;
    gd_kafka_client producer_client, consumer_client;
    rd_kafka_t *producer, *consumer;
    char topic[sizeof ((gd_config *)0)->application_id + 16];
    pthread_t thread;
    atomic_bool stop;
    gd_ratelimit warn_limit;
    pthread_mutex_t lock; /* others, nothers */
    other_instance others[MAX_OTHERS];
    int nothers;
    other_instance heard; /* the roster thread's: the announcement being read */
};

/* ---- what an instance holds ---- */

const char *const gd_cluster_state_names[GD_CLUSTER_STATE_COUNT] = {"starting", "loading", "rebalancing", "running",
                                                                     "partial"};

bool gd_cluster_whole(const gd_cluster_view *v)
{
    if (atomic_load(&v->missed)) return false;
    if (v->partitioned) return atomic_load(&v->routing);
    return !v->shared_group || atomic_load(&v->state) == GD_CLUSTER_RUNNING;
}

bool gd_cluster_holds_task(const gd_cluster_view *v, int route, int32_t partition)
{
    if (route < 0 || route >= GD_MAX_ROUTES || partition < 0 || partition >= GD_MAX_PARTITIONS) return false;
    return atomic_load(&v->owned_tasks[route][partition / 64]) >> (partition % 64) & 1;
}

int32_t gd_cluster_task_changelog(const gd_cluster_view *v, int route, int32_t partition)
{
    if (route < 0 || route >= GD_MAX_ROUTES || partition < 0) return -1;
    int32_t c = gd_changelog_partition(atomic_load(&v->changelog_base[route]), partition, v->changelog_partitions);
    return c >= 0 && c < GD_MAX_ROUTES * GD_MAX_PARTITIONS ? c : -1;
}

bool gd_cluster_answers_task(const gd_cluster_view *v, int route, int32_t partition, int64_t max_lag)
{
    if (gd_cluster_holds_task(v, route, partition)) return true;
    int32_t c = max_lag >= 0 ? gd_cluster_task_changelog(v, route, partition) : -1;
    if (c < 0 || !(atomic_load(&v->changelog_reading[c / 64]) >> (c % 64) & 1)) return false;
    int64_t lag = atomic_load(&v->partition_lag[c]);
    return lag >= 0 && lag <= max_lag;
}

int32_t gd_cluster_owned(const gd_cluster_view *v)
{
    int32_t n = 0;
    for (int w = 0; w < GD_MAX_PARTITIONS / 64; w++) n += __builtin_popcountll(atomic_load(&v->owned[w]));
    return n;
}

gd_cluster_state gd_cluster_state_of(const gd_config *cfg, gd_counters *c)
{
    if (cfg->source == GD_SRC_KAFKA) return (gd_cluster_state)atomic_load(&c->cluster.state);
    return atomic_load(&c->ready) ? GD_CLUSTER_RUNNING : GD_CLUSTER_LOADING;
}

/* The partitions a bitmap holds, as a JSON array. */
static void put_bits(gd_buf *b, const _Atomic uint64_t *words, int32_t nbits)
{
    gd_buf_puts(b, "[");
    for (int32_t i = 0, n = 0; i < nbits; i++)
        if (atomic_load(&words[i / 64]) >> (i % 64) & 1) gd_buf_printf(b, "%s%d", n++ ? "," : "", (int)i);
    gd_buf_puts(b, "]");
}

/* The partitions of topic t this instance reads: the assigned activity
 * ones, every reference one. */
static void put_partitions(gd_buf *b, const gd_cluster_view *v, gd_topic t)
{
    if (t == GD_TOPIC_ACTIVITY) {
        put_bits(b, v->owned, GD_MAX_PARTITIONS);
        return;
    }
    gd_buf_puts(b, "[");
    for (int32_t p = 0, n = atomic_load(&v->partitions[t]); p < n; p++) gd_buf_printf(b, "%s%d", p ? "," : "", (int)p);
    gd_buf_puts(b, "]");
}

void gd_cluster_put_instance(gd_buf *b, const gd_config *cfg, gd_counters *c, bool self)
{
    const gd_cluster_view *v = &c->cluster;
    char url[1100];
    gd_config_advertised_url(cfg, url, sizeof url);
    gd_buf_puts(b, "{\"url\":");
    gd_json_put_cstr(b, url);
    gd_buf_puts(b, self ? ",\"self\":true" : ",\"self\":false");
    gd_buf_puts(b, ",\"instance_id\":");
    gd_json_put_cstr(b, v->instance_id);
    gd_buf_puts(b, ",\"partitions\":{");
    for (int t = 0; cfg->source == GD_SRC_KAFKA && t < GD_TOPIC_COUNT; t++) {
        gd_buf_puts(b, t ? "," : "");
        gd_json_put_cstr(b, cfg->topics[t]);
        gd_buf_puts(b, ":");
        put_partitions(b, v, (gd_topic)t);
    }
    for (int r = 0; r < v->nroutes; r++) { /* partitioned mode: the tasks held */
        gd_buf_puts(b, ",");
        gd_json_put_cstr(b, v->route_topic[r]);
        gd_buf_puts(b, ":");
        put_bits(b, v->owned_tasks[r], GD_MAX_PARTITIONS);
    }
    if (v->changelog_topic[0]) { /* partitioned mode: the tasks whose state it keeps, its own and standbys' */
        gd_buf_puts(b, ",");
        gd_json_put_cstr(b, v->changelog_topic);
        gd_buf_puts(b, ":");
        put_bits(b, v->changelog_reading, GD_MAX_ROUTES * GD_MAX_PARTITIONS);
    }
    gd_buf_puts(b, "},\"state\":");
    gd_json_put_cstr(b, gd_cluster_state_names[gd_cluster_state_of(cfg, c)]);
    gd_buf_puts(b, "}");
}

/* ---- the others ---- */

static void drop_other(gd_roster *r, int i)
{
    free(r->others[i].json);
    r->others[i] = r->others[--r->nothers];
}

static void forget_stale(gd_roster *r, int64_t now)
{
    for (int i = r->nothers - 1; i >= 0; i--)
        if (now - r->others[i].seen_ms > STALE_MS) drop_other(r, i);
}

static int find_other(const gd_roster *r, const char *id)
{
    for (int i = 0; i < r->nothers; i++)
        if (!strcmp(r->others[i].id, id)) return i;
    return -1;
}

static bool is_instance_id(const char *s, size_t n)
{
    if (n == 0 || n >= sizeof ((other_instance *)0)->id) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

/* The partitions an announcement lists under a topic's name, as bits. */
static void read_bits(json_t *list, uint64_t *bits, int32_t nbits)
{
    json_t *p;
    size_t i;
    json_array_foreach(list, i, p) {
        json_int_t n = json_is_integer(p) ? json_integer_value(p) : -1;
        if (n >= 0 && n < nbits) bits[n / 64] |= 1ULL << (n % 64);
    }
}

/* The tasks an announcement lists under the route topics' names, and the
 * changelog partitions under the changelog's. */
static void read_tasks(const gd_cluster_view *v, json_t *parts, other_instance *o)
{
    memset(o->tasks, 0, sizeof o->tasks);
    memset(o->reads, 0, sizeof o->reads);
    for (int r = 0; r < v->nroutes; r++) read_bits(json_object_get(parts, v->route_topic[r]), o->tasks[r], GD_MAX_PARTITIONS);
    if (v->changelog_topic[0])
        read_bits(json_object_get(parts, v->changelog_topic), o->reads, GD_MAX_ROUTES * GD_MAX_PARTITIONS);
}

/* An announcement as /v1/cluster lists it -- its known members only -- or
 * NULL when it is not one; its URL and tasks into *o. */
static char *checked_announcement(const gd_cluster_view *v, const char *id, const void *value, size_t len,
                                  other_instance *other)
{
    json_t *o = json_loadb(value, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *url = json_object_get(o, "url"), *aid = json_object_get(o, "instance_id");
    json_t *parts = json_object_get(o, "partitions"), *state = json_object_get(o, "state");
    char *out = NULL;
    if (json_is_string(url) && json_is_string(state) && json_is_object(parts) && json_is_string(aid) &&
        !strcmp(json_string_value(aid), id) && strlen(json_string_value(url)) < sizeof other->url) {
        snprintf(other->url, sizeof other->url, "%s", json_string_value(url));
        read_tasks(v, parts, other);
        json_t *kept = json_pack("{sOsbsOsOsO}", "url", url, "self", 0, "instance_id", aid, "partitions", parts,
                                 "state", state);
        out = kept ? json_dumps(kept, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(kept);
    }
    json_decref(o);
    return out;
}

static void take_announcement(gd_roster *r, const rd_kafka_message_t *m)
{
    char id[32];
    if (!m->key || !is_instance_id(m->key, m->key_len)) return;
    memcpy(id, m->key, m->key_len);
    id[m->key_len] = 0;
    if (!strcmp(id, r->counters->cluster.instance_id)) return;
    int64_t now = gd_now_ms();
    int64_t at = rd_kafka_message_timestamp(m, NULL);
    char *json = NULL;
    other_instance *heard = &r->heard;
    if (m->payload) {
        if (m->len > MAX_ANNOUNCEMENT_BYTES || (at >= 0 && now - at > STALE_MS)) return;
        if (!(json = checked_announcement(&r->counters->cluster, id, m->payload, m->len, heard))) return;
    }
    pthread_mutex_lock(&r->lock);
    int i = find_other(r, id);
    if (!json) { /* a tombstone: it stopped */
        if (i >= 0) drop_other(r, i);
    } else if (i >= 0 || r->nothers < MAX_OTHERS) {
        if (i < 0) {
            i = r->nothers++;
            snprintf(r->others[i].id, sizeof r->others[i].id, "%s", id);
        } else {
            free(r->others[i].json);
        }
        r->others[i].json = json;
        r->others[i].seen_ms = now;
        memcpy(r->others[i].url, heard->url, sizeof heard->url);
        memcpy(r->others[i].tasks, heard->tasks, sizeof heard->tasks);
        memcpy(r->others[i].reads, heard->reads, sizeof heard->reads);
        json = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    free(json);
}

void gd_roster_put_others(gd_roster *r, gd_buf *b)
{
    if (!r) return;
    pthread_mutex_lock(&r->lock);
    forget_stale(r, gd_now_ms());
    for (int i = 0; i < r->nothers; i++) {
        gd_buf_puts(b, ",");
        gd_buf_puts(b, r->others[i].json);
    }
    pthread_mutex_unlock(&r->lock);
}

int gd_roster_task_owner(gd_roster *r, int route, int32_t partition, char *url, size_t n)
{
    if (!r || route < 0 || route >= GD_MAX_ROUTES || partition < 0 || partition >= GD_MAX_PARTITIONS) return 0;
    int owners = 0;
    pthread_mutex_lock(&r->lock);
    forget_stale(r, gd_now_ms());
    for (int i = 0; i < r->nothers; i++)
        if (r->others[i].tasks[route][partition / 64] >> (partition % 64) & 1) {
            if (!owners++) snprintf(url, n, "%s", r->others[i].url);
        }
    pthread_mutex_unlock(&r->lock);
    return owners > 1 ? -1 : owners;
}

int gd_roster_task_reader(gd_roster *r, int32_t changelog_partition, const char *const *skip, int nskip, char *url,
                          size_t n)
{
    int32_t c = changelog_partition;
    if (!r || c < 0 || c >= GD_MAX_ROUTES * GD_MAX_PARTITIONS) return 0;
    int found = 0;
    pthread_mutex_lock(&r->lock);
    forget_stale(r, gd_now_ms());
    for (int i = 0; i < r->nothers && !found; i++) {
        if (!(r->others[i].reads[c / 64] >> (c % 64) & 1)) continue;
        int k = 0;
        while (k < nskip && strcmp(skip[k], r->others[i].url)) k++;
        if (k == nskip) {
            snprintf(url, n, "%s", r->others[i].url);
            found = 1;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return found;
}

static int by_id(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Of `kept`, into out: the tasks no other instance announces now. */
static void keep_unannounced(const gd_roster *r, uint64_t (*kept)[GD_MAX_PARTITIONS / 64],
                             uint64_t (*out)[GD_MAX_PARTITIONS / 64])
{
    for (int t = 0; kept && t < GD_MAX_ROUTES; t++)
        for (int w = 0; w < GD_MAX_PARTITIONS / 64; w++) {
            uint64_t announced = 0;
            for (int i = 0; i < r->nothers; i++) announced |= r->others[i].tasks[t][w];
            out[t][w] |= kept[t][w] & ~announced;
        }
}

/* Into out: the tasks of the others whose standby this instance is by
 * the rule -- the `replicas` instances after the owner in the order of
 * instance ids. Under the lock. */
static void standbys_by_rule(const gd_roster *r, int replicas, uint64_t (*out)[GD_MAX_PARTITIONS / 64])
{
    const char *self = r->counters->cluster.instance_id;
    const char *ids[MAX_OTHERS + 1];
    int n = 0;
    ids[n++] = self;
    for (int i = 0; i < r->nothers; i++) ids[n++] = r->others[i].id;
    qsort(ids, (size_t)n, sizeof *ids, by_id);
    int me = 0;
    while (strcmp(ids[me], self)) me++;
    for (int i = 0; i < r->nothers; i++) {
        int owner = 0;
        while (strcmp(ids[owner], r->others[i].id)) owner++;
        int after = (me - owner + n) % n; /* how far this instance comes after the owner */
        if (after < 1 || after > replicas) continue;
        for (int t = 0; t < GD_MAX_ROUTES; t++)
            for (int w = 0; w < GD_MAX_PARTITIONS / 64; w++) out[t][w] |= r->others[i].tasks[t][w];
    }
}

void gd_roster_standby_tasks(gd_roster *r, int replicas, uint64_t (*kept)[GD_MAX_PARTITIONS / 64],
                             uint64_t (*out)[GD_MAX_PARTITIONS / 64])
{
    memset(out, 0, sizeof(task_set));
    if (!r) return;
    pthread_mutex_lock(&r->lock);
    forget_stale(r, gd_now_ms());
    keep_unannounced(r, kept, out);
    if (replicas > 0) standbys_by_rule(r, replicas, out);
    pthread_mutex_unlock(&r->lock);
}

int gd_roster_count(gd_roster *r)
{
    if (!r) return 1;
    pthread_mutex_lock(&r->lock);
    forget_stale(r, gd_now_ms());
    int n = 1 + r->nothers;
    pthread_mutex_unlock(&r->lock);
    return n;
}

/* ---- the thread ---- */

static void announce(gd_roster *r, bool leaving)
{
    gd_buf b = {0};
    if (!leaving) gd_cluster_put_instance(&b, r->cfg, r->counters, false);
    const char *id = r->counters->cluster.instance_id;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        r->producer, RD_KAFKA_V_TOPIC(r->topic), RD_KAFKA_V_KEY(id, strlen(id)),
        RD_KAFKA_V_VALUE(leaving ? NULL : b.p, leaving ? 0 : b.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_END);
    if (err && gd_ratelimit_allow(&r->warn_limit))
        gd_warn("kafka: cannot announce this instance on %s: %s", r->topic, rd_kafka_err2str(err));
    gd_buf_free(&b);
}

/* Reads every partition of the topic from its end: announcements repeat,
 * so the others are known within one interval. */
static int follow_topic(gd_roster *r)
{
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(r->consumer, 1, NULL, &md, METADATA_TIMEOUT_MS)) return GD_AGAIN;
    int partitions = 0;
    for (int i = 0; i < md->topic_cnt; i++)
        if (!strcmp(md->topics[i].topic, r->topic) && !md->topics[i].err) partitions = md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
    if (!partitions) return GD_AGAIN;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(parts, r->topic, p)->offset = RD_KAFKA_OFFSET_END;
    rd_kafka_resp_err_t err = rd_kafka_assign(r->consumer, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    return err ? GD_ERR : GD_OK;
}

static void *roster_main(void *arg)
{
    gd_roster *r = arg;
    static const char *const compacted[] = {"cleanup.policy", "compact", NULL};
    gd_kafka_ensure_topic(r->producer, r->topic, 1, compacted);
    bool following = false;
    int64_t next_announce = 0, next_follow = 0;
    uint32_t announced_changes = 0;
    while (!atomic_load(&r->stop)) {
        int64_t now = gd_now_ms();
        uint32_t changes = atomic_load(&r->counters->cluster.ownership_changes);
        if (now >= next_announce || changes != announced_changes) { /* what it holds, at once: queries go there */
            announced_changes = changes;
            announce(r, false);
            next_announce = now + ANNOUNCE_MS;
        }
        if (!following && now >= next_follow) {
            following = follow_topic(r) == GD_OK;
            next_follow = now + ANNOUNCE_MS;
        }
        rd_kafka_poll(r->producer, 0);
        rd_kafka_message_t *m = following ? rd_kafka_consumer_poll(r->consumer, POLL_MS) : NULL;
        if (!following) gd_sleep_ms(POLL_MS);
        if (!m) continue;
        if (!m->err) take_announcement(r, m);
        rd_kafka_message_destroy(m);
    }
    announce(r, true);
    rd_kafka_flush(r->producer, 1000);
    return NULL;
}

static rd_kafka_t *new_client(const gd_config *cfg, gd_kafka_client *client, rd_kafka_type_t type,
                              const char *const *defaults)
{
    char err[512];
    rd_kafka_conf_t *conf = gd_kafka_conf(cfg, client, defaults);
    if (!conf) return NULL;
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk) {
        gd_error("kafka: cannot create the roster's %s: %s", type == RD_KAFKA_PRODUCER ? "producer" : "consumer", err);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

static void free_roster(gd_roster *r)
{
    if (r->consumer) {
        rd_kafka_consumer_close(r->consumer);
        rd_kafka_destroy(r->consumer);
    }
    if (r->producer) rd_kafka_destroy(r->producer);
    gd_kafka_client_destroy(&r->producer_client);
    gd_kafka_client_destroy(&r->consumer_client);
    for (int i = 0; i < r->nothers; i++) free(r->others[i].json);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

int gd_roster_start(gd_roster **out, const gd_config *cfg, gd_counters *counters)
{
    *out = NULL;
    if (cfg->source != GD_SRC_KAFKA) return GD_OK;
    gd_roster *r = calloc(1, sizeof *r);
    if (!r) return GD_ENOMEM;
    r->cfg = cfg;
    r->counters = counters;
    pthread_mutex_init(&r->lock, NULL);
    snprintf(r->topic, sizeof r->topic, "%s-instances", cfg->application_id);
    gd_kafka_client_init(&r->producer_client, GD_KAFKA_ROSTER, counters);
    gd_kafka_client_init(&r->consumer_client, GD_KAFKA_ROSTER, counters);
    static const char *const producer_defaults[] = {"linger.ms", "0", NULL};
    const char *const consumer_defaults[] = { /* assigned, never in a group, but librdkafka wants an id */
        "group.id", counters->cluster.group, "enable.auto.commit", "false", "enable.auto.offset.store", "false", NULL};
    r->producer = new_client(cfg, &r->producer_client, RD_KAFKA_PRODUCER, producer_defaults);
    r->consumer = r->producer ? new_client(cfg, &r->consumer_client, RD_KAFKA_CONSUMER, consumer_defaults) : NULL;
    if (!r->consumer || pthread_create(&r->thread, NULL, roster_main, r)) {
        free_roster(r);
        return GD_ERR;
    }
    *out = r;
    return GD_OK;
}

void gd_roster_stop(gd_roster *r)
{
    if (!r) return;
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    free_roster(r);
}
