/* output.c -- where the enriched stream and the bad records go in Kafka.
 *
 * The enriched record goes to the output topic keyed by player_id, as Avro
 * in the Confluent wire format (schemas/gaming_intelligence.avsc, registered
 * under `<topic>-value` at start) or, with --output-format json, as the same
 * JSON the file output and the push streams carry. A bad source record goes
 * as it came -- same key, same bytes -- to `<source topic>.dlq` with the
 * reason in an `error` header. Both share one producer (kafka_sink.c), so
 * one flush before each LMDB commit covers both. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "window.h"

enum { OUTPUT_PARTITIONS = 6, FLUSH_TIMEOUT_MS = 1000 };
#define OUTPUT_RETENTION_MS (7LL * 24 * 3600 * 1000)
/* route records are read within moments; a day covers an instance down that long */
#define ROUTE_RETENTION_MS (24LL * 3600 * 1000)
/* push events are read live, from the topic's end */
#define PUSH_RETENTION_MS (3600LL * 1000)

struct gd_output {
    const gd_config *cfg;
    gd_counters *counters;
    gd_kafka_sink *sink;
    bool enriched_to_kafka;
    bool json;
    gd_avro_writer *writer;
    int32_t schema_id;
    gd_buf value;
    gd_value values[64]; /* by gd_output_fields index */
    char dlq[GD_TOPIC_COUNT][300];
};

static int open_avro_writer(gd_output *o, gd_registry *registry)
{
    const char *names[64] = {0};
    for (size_t i = 0; i < gd_output_field_count; i++) names[i] = gd_output_fields[i].name;
    char subject[300];
    snprintf(subject, sizeof subject, "%s-value", o->cfg->output_topic);
    if (!registry) {
        gd_error("Avro output needs --schema-registry URL to register its schema (or use --output-format json)");
        return GD_ERR;
    }
    int rc = gd_avro_writer_new(&o->writer, gd_schema_gaming_intelligence, names, gd_output_field_count);
    if (!rc && (rc = gd_registry_register(registry, subject, gd_schema_gaming_intelligence, &o->schema_id)))
        gd_error("cannot register the output schema under %s", subject);
    if (!rc) gd_info("output schema registered under %s: id %d", subject, (int)o->schema_id);
    return rc;
}

int gd_output_open(gd_output **out, const gd_config *cfg, gd_counters *counters, gd_registry *registry,
                   const atomic_bool *stop)
{
    *out = NULL;
    if (!cfg->brokers[0]) return GD_OK; /* no Kafka: no output topic, no dead letters */
    gd_output *o = calloc(1, sizeof *o);
    if (!o) return GD_ENOMEM;
    o->cfg = cfg;
    o->counters = counters;
    o->enriched_to_kafka = cfg->output_kafka;
    o->json = !strcmp(cfg->output_format, "json");
    for (int t = 0; t < GD_TOPIC_COUNT; t++) snprintf(o->dlq[t], sizeof o->dlq[t], "%s.dlq", cfg->topics[t]);
    int rc = gd_kafka_sink_open(&o->sink, cfg, counters, stop);
    if (!rc && o->enriched_to_kafka && !o->json) rc = open_avro_writer(o, registry);
    if (!rc && o->enriched_to_kafka)
        gd_kafka_sink_ensure_topic(o->sink, cfg->output_topic, OUTPUT_PARTITIONS, OUTPUT_RETENTION_MS, NULL);
    if (rc) {
        gd_output_close(o);
        return rc;
    }
    *out = o;
    return GD_OK;
}

void gd_output_close(gd_output *o)
{
    if (!o) return;
    gd_kafka_sink_close(o->sink);
    gd_avro_writer_free(o->writer);
    gd_buf_free(&o->value);
    free(o);
}

bool gd_output_wants_json(const gd_output *o) { return o && o->enriched_to_kafka && o->json; }

int gd_output_enriched(gd_output *o, const gd_enriched *en, gd_str json)
{
    if (!o || !o->enriched_to_kafka) return GD_OK;
    gd_str value = json;
    if (!o->json) {
        for (size_t i = 0; i < gd_output_field_count; i++) o->values[i] = gd_enriched_field(en, gd_output_fields[i].field);
        gd_buf_clear(&o->value);
        if (gd_avro_write(o->writer, o->schema_id, o->values, &o->value)) {
            gd_error("an enriched record does not fit the output schema; not produced");
            return GD_OK; /* cannot happen with the shipped schema: required fields are required inputs */
        }
        value = (gd_str){o->value.p, (uint32_t)o->value.len};
    }
    int rc = gd_kafka_sink_produce(o->sink, o->cfg->output_topic, en->a->player_id, value, NULL);
    if (!rc) atomic_fetch_add(&o->counters->kafka_produced, 1);
    return rc;
}

int gd_output_dead_letter(gd_output *o, const gd_record *rec, const char *why)
{
    if (!o || rec->topic >= GD_TOPIC_COUNT) return GD_OK;
    int rc = gd_kafka_sink_produce(o->sink, o->dlq[rec->topic], rec->key, rec->value, why);
    if (!rc) atomic_fetch_add(&o->counters->dead_letters[rec->topic], 1);
    return rc;
}

int32_t gd_output_route_topic(gd_output *o, const char *topic)
{
    int32_t n = gd_kafka_sink_partitions(o->sink, o->cfg->topics[GD_TOPIC_ACTIVITY]);
    if (n <= 0) {
        gd_error("partitioned mode: the activity topic %s must exist first (its partition count is the routes')",
                 o->cfg->topics[GD_TOPIC_ACTIVITY]);
        return -1;
    }
    gd_kafka_sink_ensure_topic(o->sink, topic, n, ROUTE_RETENTION_MS, NULL);
    int32_t has = gd_kafka_sink_partitions(o->sink, topic);
    return has > 0 ? has : n;
}

int gd_output_internal_topics(gd_output *o, const char *const *routes, int nroutes, int32_t *route_partitions,
                              const char *changelog, int32_t *changelog_partitions, const char *push,
                              int32_t *push_partitions)
{
    for (int r = 0; r < nroutes; r++)
        if ((route_partitions[r] = gd_output_route_topic(o, routes[r])) < 0) return GD_ERR;
    int32_t tasks = 0;
    for (int r = 0; r < nroutes; r++) tasks += route_partitions[r];
    gd_kafka_sink_ensure_topic(o->sink, changelog, tasks, 0, "compact");
    int32_t has = gd_kafka_sink_partitions(o->sink, changelog);
    *changelog_partitions = has > 0 ? has : tasks;
    int32_t streams = route_partitions[0] < GD_MAX_PUSH_PARTITIONS ? route_partitions[0] : GD_MAX_PUSH_PARTITIONS;
    gd_kafka_sink_ensure_topic(o->sink, push, streams, PUSH_RETENTION_MS, NULL); /* read live only */
    has = gd_kafka_sink_partitions(o->sink, push);
    *push_partitions = has > 0 ? has : streams;
    return GD_OK;
}

void gd_output_ends(gd_output *o, const char *topic, int32_t n, int64_t *ends)
{
    gd_kafka_sink_ends(o->sink, topic, n, ends);
}

int gd_output_internal(gd_output *o, const char *topic, int32_t partition, gd_str key, gd_str value)
{
    return gd_kafka_sink_produce_to(o->sink, topic, partition, key, value, NULL);
}

void gd_output_poll(gd_output *o)
{
    if (o) gd_kafka_sink_poll(o->sink);
}

size_t gd_output_pending(const gd_output *o) { return o ? gd_kafka_sink_pending(o->sink) : 0; }

int gd_output_flush(gd_output *o)
{
    return o ? gd_kafka_sink_flush(o->sink, FLUSH_TIMEOUT_MS) : GD_OK;
}
