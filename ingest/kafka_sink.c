/* kafka_sink.c -- the producer: the enriched stream to its output topic
 * (SPEC §7), bad records to `<topic>.dlq` (SPEC §9), and the records of
 * `gamingd generate --brokers`.
 *
 * Idempotent, snappy, murmur2 partitioning on the record key (the partition
 * a Java producer, and so ksqlDB, picks for the same key), and messages
 * that never time out: while the brokers are away the records wait in
 * librdkafka's queue, and when that queue is full produce waits for room,
 * which holds ingest back instead of dropping output. The engine calls
 * gd_kafka_sink_flush before each LMDB commit: the committed position never
 * runs ahead of what the brokers acknowledged, so after a crash output may
 * repeat but never miss a record (at-least-once).
 *
 * Two threads produce: the table worker the enriched records, the engine the
 * dead letters; both poll, so delivery reports may be served on either. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"

enum { QUEUE_FULL_WAIT_MS = 100, METADATA_TIMEOUT_MS = 5000 };

/* The largest message produced, unless -X message.max.bytes says: a route
 * or enriched record carries an activity, a game and a player row, each up
 * to --max-record-bytes, so four times that (their framing besides), never
 * below librdkafka's own default nor above its ceiling. The topics gamingd
 * creates take what its producer sends (max.message.bytes). */
enum { LIBRDKAFKA_MESSAGE_MAX = 1000000, LIBRDKAFKA_MESSAGE_CEILING = 1000000000, ROWS_PER_MESSAGE = 4 };

struct gd_kafka_sink {
    gd_kafka_client client;
    rd_kafka_t *rk;
    const atomic_bool *stop; /* a full queue is waited on until this is set */
    atomic_bool queue_full_logged;
    pthread_mutex_t failure_log_lock;
    gd_ratelimit failure_log;
    char message_max[24]; /* message.max.bytes as set */
};

static bool failure_log_allowed(gd_kafka_sink *s)
{
    pthread_mutex_lock(&s->failure_log_lock);
    bool allowed = gd_ratelimit_allow(&s->failure_log);
    pthread_mutex_unlock(&s->failure_log_lock);
    return allowed;
}

/* A record the brokers refused, or would: counted and logged, and the
 * run goes on (a restart would meet the same record again). */
static void count_undelivered(gd_kafka_sink *s, const char *topic, rd_kafka_resp_err_t err)
{
    gd_counters *c = s->client.counters;
    if (c) atomic_fetch_add(&c->kafka_delivery_failed, 1);
    if (failure_log_allowed(s)) gd_error("kafka: a record to %s was not delivered: %s", topic, rd_kafka_err2str(err));
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    gd_kafka_sink *s = (gd_kafka_sink *)((char *)opaque - offsetof(gd_kafka_sink, client));
    gd_counters *c = s->client.counters;
    if (!m->err) {
        gd_kafka_reachable(&s->client);
        if (c) atomic_fetch_add(&c->kafka_delivered, 1);
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
        return; /* given up at close: the stop said so, and a restart produces it again */
    count_undelivered(s, rd_kafka_topic_name(m->rkt), m->err);
}

int gd_kafka_sink_open(gd_kafka_sink **out, const gd_config *cfg, gd_counters *counters, const atomic_bool *stop)
{
    if (!cfg->brokers[0]) {
        gd_error("Kafka output needs --brokers LIST");
        return GD_ERR;
    }
    gd_kafka_sink *s = calloc(1, sizeof *s);
    if (!s) return GD_ENOMEM;
    gd_kafka_client_init(&s->client, GD_KAFKA_PRODUCER, counters);
    s->stop = stop;
    uint64_t message_max = (uint64_t)cfg->max_record_bytes * ROWS_PER_MESSAGE;
    if (message_max < LIBRDKAFKA_MESSAGE_MAX) message_max = LIBRDKAFKA_MESSAGE_MAX;
    if (message_max > LIBRDKAFKA_MESSAGE_CEILING) message_max = LIBRDKAFKA_MESSAGE_CEILING;
    snprintf(s->message_max, sizeof s->message_max, "%llu", (unsigned long long)message_max);
    const char *const producer_defaults[] = {
        "enable.idempotence", "true", "compression.type", "snappy", "partitioner", "murmur2_random",
        "linger.ms", "5", "message.timeout.ms", "0", "queue.buffering.max.messages", "1000000",
        "message.max.bytes", s->message_max, NULL};
    rd_kafka_conf_t *conf = gd_kafka_conf(cfg, &s->client, producer_defaults);
    if (!conf) {
        gd_kafka_client_destroy(&s->client);
        free(s);
        return GD_ERR;
    }
    size_t len = sizeof s->message_max; /* an -X message.max.bytes is what the topics must take */
    rd_kafka_conf_get(conf, "message.max.bytes", s->message_max, &len);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery); /* its opaque is &s->client, as for every callback */
    char err[512];
    pthread_mutex_init(&s->failure_log_lock, NULL); /* before the first callback can run */
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!s->rk) {
        gd_error("kafka: cannot create the producer: %s", err);
        rd_kafka_conf_destroy(conf);
        pthread_mutex_destroy(&s->failure_log_lock);
        gd_kafka_client_destroy(&s->client);
        free(s);
        return GD_ERR;
    }
    *out = s;
    return GD_OK;
}

void gd_kafka_sink_ensure_topic(gd_kafka_sink *s, const char *topic, int partitions, int64_t retention_ms,
                                const char *cleanup_policy)
{
    char retention[32];
    snprintf(retention, sizeof retention, "%lld", (long long)retention_ms);
    const char *settings[] = {"max.message.bytes", s->message_max, NULL, NULL, NULL};
    if (cleanup_policy) {
        settings[2] = "cleanup.policy";
        settings[3] = cleanup_policy;
    } else if (retention_ms > 0) {
        settings[2] = "retention.ms";
        settings[3] = retention;
    }
    gd_kafka_ensure_topic(s->rk, topic, partitions, settings);
}

int32_t gd_kafka_sink_partitions(gd_kafka_sink *s, const char *topic)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(s->rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int32_t n = -1;
    if (!rd_kafka_metadata(s->rk, 0, rkt, &md, METADATA_TIMEOUT_MS) && md->topic_cnt == 1 && !md->topics[0].err)
        n = md->topics[0].partition_cnt;
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return n;
}

void gd_kafka_sink_ends(gd_kafka_sink *s, const char *topic, int32_t n, int64_t *ends)
{
    for (int32_t p = 0; p < n; p++) {
        int64_t lo, hi;
        ends[p] = rd_kafka_query_watermark_offsets(s->rk, topic, p, &lo, &hi, METADATA_TIMEOUT_MS) ? -1 : hi;
    }
}

int32_t gd_kafka_key_partition(gd_str key, int32_t partitions)
{
    return rd_kafka_msg_partitioner_murmur2(NULL, key.p, key.len, partitions, NULL, NULL);
}

int gd_kafka_sink_produce(gd_kafka_sink *s, const char *topic, gd_str key, gd_str value, const char *error_header)
{
    return gd_kafka_sink_produce_to(s, topic, RD_KAFKA_PARTITION_UA, key, value, error_header);
}

int gd_kafka_sink_produce_to(gd_kafka_sink *s, const char *topic, int32_t partition, gd_str key, gd_str value,
                             const char *error_header)
{
    rd_kafka_headers_t *headers = NULL; /* the message owns them once produced */
    if (error_header) {
        headers = rd_kafka_headers_new(1);
        rd_kafka_header_add(headers, "error", -1, error_header, -1);
    }
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            s->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key.p, key.len),
            RD_KAFKA_V_VALUE((void *)value.p, value.len), RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(s->rk, 0); /* delivery reports */
            if (!err) {
                atomic_store_explicit(&s->queue_full_logged, false, memory_order_relaxed);
                return GD_OK;
            }
            if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) { /* past message.max.bytes: as the brokers' refusal */
                if (headers) rd_kafka_headers_destroy(headers);
                count_undelivered(s, topic, err);
                return GD_OK;
            }
            gd_error("kafka: cannot produce to %s: %s", topic, rd_kafka_err2str(err));
            break;
        }
        if (s->stop && atomic_load(s->stop)) {
            gd_warn("kafka: stopping with the producer queue full; the records since the last commit will be read again");
            break;
        }
        if (!atomic_exchange(&s->queue_full_logged, true)) gd_warn("kafka: producer queue full; waiting for the brokers");
        rd_kafka_poll(s->rk, QUEUE_FULL_WAIT_MS);
    }
    if (headers) rd_kafka_headers_destroy(headers);
    return GD_ERR;
}

void gd_kafka_sink_poll(gd_kafka_sink *s) { rd_kafka_poll(s->rk, 0); }

int gd_kafka_sink_flush(gd_kafka_sink *s, int timeout_ms)
{
    return rd_kafka_flush(s->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR ? GD_OK : GD_AGAIN;
}

size_t gd_kafka_sink_pending(const gd_kafka_sink *s) { return (size_t)rd_kafka_outq_len(s->rk); }

void gd_kafka_sink_close(gd_kafka_sink *s)
{
    if (!s) return;
    if (rd_kafka_outq_len(s->rk) > 0) {
        rd_kafka_purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(s->rk, 0); /* their delivery reports: purged */
    }
    rd_kafka_destroy(s->rk);
    pthread_mutex_destroy(&s->failure_log_lock);
    gd_kafka_client_destroy(&s->client);
    free(s);
}
