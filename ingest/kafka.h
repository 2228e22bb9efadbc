/* kafka.h -- inside the ingest layer: what the Kafka source, the Kafka sink
 * and `gamingd generate --brokers` share. */
#ifndef GD_KAFKA_H
#define GD_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "ingest.h"

/* Which client a handle is, for logs and the reachability bits of
 * gd_counters.kafka_unreachable. */
typedef enum { GD_KAFKA_REFERENCE = 0, GD_KAFKA_ACTIVITY, GD_KAFKA_PRODUCER } gd_kafka_role;

/* What every handle's callbacks are given. */
typedef struct {
    gd_kafka_role role;
    gd_counters *counters; /* may be NULL (generate) */
    char group[256];       /* a consumer's group.id, for logs */
} gd_kafka_client;

/* A configuration with bootstrap.servers, gamingd's defaults for the role
 * (set first) and every -X property (set last, so they win), and callbacks
 * that log broker outages once and track reachability. NULL after logging
 * why (an unknown -X property, say). */
rd_kafka_conf_t *gd_kafka_conf(const gd_config *cfg, gd_kafka_client *client, const char *const *defaults);
/* Traffic flowed on this client: clears its unreachable bit, logging the
 * recovery if it was set. */
void gd_kafka_reachable(gd_kafka_client *client);

#endif
