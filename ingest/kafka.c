/* kafka.c -- configuration and fault reporting shared by every Kafka handle.
 *
 * librdkafka retries and reconnects by itself; what gamingd adds is a clear
 * line when a client loses every broker and another when it reaches one
 * again, and the same fact as a metric (gamingd_kafka_up). Losing them is
 * librdkafka's ALL_BROKERS_DOWN error; reaching one again is a record
 * flowing, or a broker in state UP in the client's statistics, which come
 * every second even when the topics are idle. The callbacks may run on
 * librdkafka's threads, so the only state they touch is atomic. Also the
 * creation of the topics gamingd writes. */
#include <stdio.h>
#include <string.h>

#include "kafka.h"

enum { CREATE_TIMEOUT_MS = 5000 };

static const char *role_name(gd_kafka_role r)
{
    return r == GD_KAFKA_REFERENCE ? "reference-table consumer"
           : r == GD_KAFKA_ACTIVITY ? "activity consumer"
           : r == GD_KAFKA_PRODUCER ? "producer"
                                    : "roster";
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    gd_kafka_client *c = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        unsigned bit = 1u << c->role;
        unsigned was = c->counters ? atomic_fetch_or(&c->counters->kafka_unreachable, bit) : 0;
        if (!(was & bit))
            gd_warn("kafka %s: every broker is unreachable (%s); retrying, ingest resumes by itself",
                    role_name(c->role), reason);
        return;
    }
    if (c->counters) atomic_fetch_add(&c->counters->kafka_errors, 1);
    if (err == RD_KAFKA_RESP_ERR__TRANSPORT) return; /* librdkafka logs each disconnect itself */
    gd_warn("kafka %s: %s: %s", role_name(c->role), rd_kafka_err2name(err), reason);
}

void gd_kafka_reachable(gd_kafka_client *c)
{
    if (!c->counters) return;
    unsigned bit = 1u << c->role;
    if (!(atomic_load_explicit(&c->counters->kafka_unreachable, memory_order_relaxed) & bit)) return;
    if (atomic_fetch_and(&c->counters->kafka_unreachable, ~bit) & bit)
        gd_info("kafka %s: brokers reachable again", role_name(c->role));
}

/* The statistics JSON names each broker's connection state; only brokers
 * have upper-case states, so a plain search is enough. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    static const char up[] = "\"state\":\"UP\"";
    if (memmem(json, len, up, sizeof up - 1)) gd_kafka_reachable(opaque);
    return 0; /* librdkafka frees json */
}

void gd_kafka_client_init(gd_kafka_client *c, gd_kafka_role role, gd_counters *counters)
{
    memset(c, 0, sizeof *c);
    c->role = role;
    c->counters = counters;
    pthread_mutex_init(&c->log_lock, NULL);
}

void gd_kafka_client_destroy(gd_kafka_client *c) { pthread_mutex_destroy(&c->log_lock); }

/* librdkafka's log lines (syslog levels) in gamingd's format, a few per
 * second per client: a broker that is gone is reported once a retry. */
static void on_log(const rd_kafka_t *rk, int level, const char *facility, const char *line)
{
    gd_kafka_client *c = rd_kafka_opaque(rk);
    if (!c) return;
    pthread_mutex_lock(&c->log_lock);
    bool allowed = gd_ratelimit_allow(&c->log_limit);
    pthread_mutex_unlock(&c->log_lock);
    if (allowed) gd_log(level <= 3 ? "error" : level == 4 ? "warn" : "info", "kafka %s: %s: %s", role_name(c->role), facility, line);
}

static int set_prop(rd_kafka_conf_t *conf, const char *key, const char *value)
{
    char err[512];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof err) == RD_KAFKA_CONF_OK) return GD_OK;
    gd_error("kafka property %s=%s: %s", key, gd_kafka_secret_property(key) ? "(secret not shown)" : value, err);
    return GD_ERR;
}

rd_kafka_conf_t *gd_kafka_conf(const gd_config *cfg, gd_kafka_client *client, const char *const *defaults)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = set_prop(conf, "bootstrap.servers", cfg->brokers);
    if (!rc) rc = set_prop(conf, "client.id", "gamingd");
    if (!rc) rc = set_prop(conf, "statistics.interval.ms", "1000");
    for (int i = 0; !rc && defaults && defaults[i]; i += 2) rc = set_prop(conf, defaults[i], defaults[i + 1]);
    for (int i = 0; !rc && i < cfg->nkafka_props; i++) {
        char key[256];
        const char *eq = strchr(cfg->kafka_props[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - cfg->kafka_props[i]), cfg->kafka_props[i]);
        rc = set_prop(conf, key, eq + 1);
    }
    if (rc) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, client);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    return conf;
}

/* Does the topic exist? -1: the brokers did not say. All topics are asked
 * for, since asking for one by name makes some brokers auto-create it. */
static int topic_exists(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 1, NULL, &md, CREATE_TIMEOUT_MS)) return -1;
    int exists = 0;
    for (int i = 0; i < md->topic_cnt && !exists; i++)
        exists = !strcmp(md->topics[i].topic, topic) && !md->topics[i].err && md->topics[i].partition_cnt > 0;
    rd_kafka_metadata_destroy(md);
    return exists;
}

void gd_kafka_ensure_topic(rd_kafka_t *rk, const char *topic, int partitions, const char *const *settings)
{
    int exists = topic_exists(rk, topic);
    if (exists == 1) return;
    char err[512], said[256]; /* the partitions and settings, for the log */
    int said_len = snprintf(said, sizeof said, "%d partition%s", partitions, partitions == 1 ? "" : "s");
    for (int i = 0; settings && settings[i] && said_len > 0 && (size_t)said_len < sizeof said; i += 2)
        said_len += snprintf(said + said_len, sizeof said - (size_t)said_len, ", %s %s", settings[i], settings[i + 1]);
    if (exists < 0) {
        gd_warn("kafka: no broker answered; not checking whether topic %s exists (if the brokers do not create "
                "it, create it yourself: %s)", topic, said);
        return;
    }
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, -1, err, sizeof err);
    for (int i = 0; settings && settings[i]; i += 2) rd_kafka_NewTopic_set_config(nt, settings[i], settings[i + 1]);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opt, CREATE_TIMEOUT_MS, err, sizeof err);
    rd_kafka_AdminOptions_set_request_timeout(opt, CREATE_TIMEOUT_MS, err, sizeof err);
    rd_kafka_CreateTopics(rk, &nt, 1, opt, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, CREATE_TIMEOUT_MS + 2000);
    const char *why = "no answer from the brokers";
    rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR__TIMED_OUT;
    if (ev) {
        size_t n = 0;
        const rd_kafka_topic_result_t **res =
            rd_kafka_event_CreateTopics_result(ev) ? rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n) : NULL;
        code = rd_kafka_event_error(ev) ? rd_kafka_event_error(ev) : n ? rd_kafka_topic_result_error(res[0]) : 0;
        why = rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev)
              : n && rd_kafka_topic_result_error_string(res[0]) ? rd_kafka_topic_result_error_string(res[0])
                                                             : rd_kafka_err2str(code);
    }
    if (!code) gd_info("kafka: created topic %s (%s)", topic, said);
    else if (code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        gd_warn("kafka: the brokers did not create topic %s (%s): %s; producing to it anyway -- create it yourself "
                "if the brokers do not auto-create topics", topic, said, why);
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
}
