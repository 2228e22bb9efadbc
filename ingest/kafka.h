/* kafka.h -- inside the ingest layer: what the Kafka source, the Kafka sink
 * and `gamingd generate --brokers` share. */
#ifndef GD_KAFKA_H
#define GD_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <pthread.h>

#include "ingest.h"

/* Which client a handle is, for logs and the reachability bits of
 * gd_counters.kafka_unreachable. */
typedef enum { GD_KAFKA_REFERENCE = 0, GD_KAFKA_ACTIVITY, GD_KAFKA_PRODUCER, GD_KAFKA_ROSTER } gd_kafka_role;

/* What every handle's callbacks are given. */
typedef struct {
    gd_kafka_role role;
    gd_counters *counters; /* may be NULL (generate) */
    char group[256];       /* a consumer's group.id, for logs */
    pthread_mutex_t log_lock; /* librdkafka logs from its own threads */
    gd_ratelimit log_limit;
} gd_kafka_client;

/* A configuration with bootstrap.servers, gamingd's defaults for the role
 * (set first) and every -X/-F property (set last, so they win), and
 * callbacks that log broker outages once, track reachability and put
 * librdkafka's own log lines in gamingd's log, rate limited. NULL after
 * logging why (an unknown -X property, say). The client must have been
 * through gd_kafka_client_init. */
rd_kafka_conf_t *gd_kafka_conf(const gd_config *cfg, gd_kafka_client *client, const char *const *defaults);
void gd_kafka_client_init(gd_kafka_client *client, gd_kafka_role role, gd_counters *counters);
void gd_kafka_client_destroy(gd_kafka_client *client);
/* Traffic flowed on this client: clears its unreachable bit, logging the
 * recovery if it was set. */
void gd_kafka_reachable(gd_kafka_client *client);
/* Creates the topic unless it exists (settings: topic setting names and
 * values, alternating, NULL-terminated), warning when the brokers do not
 * and going on: they may auto-create it. */
void gd_kafka_ensure_topic(rd_kafka_t *rk, const char *topic, int partitions, const char *const *settings);

#endif
