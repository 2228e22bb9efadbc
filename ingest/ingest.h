/* ingest.h -- the ingest layer: sources, decoding, enrichment, windows, and
 * the engine that drives them on the one thread that writes.
 *
 * Data flow for one record:
 *   source->next  -> gd_decode_*      -> reference table update, or
 *                                        enrich -> windows -> output
 * and per batch: flush dirty rows + source position in one LMDB commit. */
#ifndef GD_INGEST_H
#define GD_INGEST_H

#include <stdatomic.h>
#include <stdio.h>

#include "../server/config.h"
#include "../server/hub.h"
#include "../server/json.h"
#include "../store/store.h"

/* ---- sources ----
 * A source yields records in order and can say where it stands, as bytes the
 * engine commits with the state and hands back through seek on restart. */
/* Why a record was set aside (gamingd_bad_records_reason_total). */
typedef enum {
    GD_BAD_INVALID,   /* undecodable, a required field missing or of the wrong type */
    GD_BAD_FUTURE,    /* event time further ahead of the wall clock than --max-future */
    GD_BAD_TOO_LARGE, /* larger than --max-record-bytes */
    GD_BAD_REASON_COUNT
} gd_bad_reason;
extern const char *const gd_bad_reason_names[GD_BAD_REASON_COUNT];

enum { GD_MAX_ROUTES = 16 }; /* partitioned mode's internal topics (route.c) */
typedef struct gd_source gd_source;
struct gd_source {
    const char *kind;
    const char *identity; /* which data: "generator", "file:/abs/path" */
    bool endless;   /* live data with no end of its own (generator, Kafka) */
    bool caught_up; /* an endless source sets it once it serves live data */
    /* GD_OK with *rec filled (spans valid until the next call), GD_AGAIN when
     * nothing is ready now, GD_EOF when the source is finished, GD_EBADREC
     * for a record it cannot even frame (rec->topic set where known). */
    int (*next)(gd_source *src, gd_record *rec);
    /* The position after the last record returned. */
    void (*position)(gd_source *src, gd_buf *out);
    int (*seek)(gd_source *src, gd_str position);
    /* After each LMDB commit of the position, or NULL. */
    void (*committed)(gd_source *src);
    /* Partitioned mode (Kafka only, else NULL; ingest/route.c): also read
     * of the changelog the partitions of the tasks held, restored or kept
     * warm (gd_changelog_partition), and the push topic's partitions
     * (relay.c) from push_from (-1: the end). */
    int (*use_internal)(gd_source *src, const char *changelog, int32_t changelog_partitions, const char *push,
                        int32_t push_partitions, const int64_t *push_from);
    /* Then each route topic, in the order of the engine's routes, read in
     * the group: before the first record, or while running (a table made
     * with a route of its own). */
    int (*add_route)(gd_source *src, const char *topic, int32_t partitions, int32_t changelog_base);
    /* The position of the partitions assigned now, as `position` writes it. */
    void (*held_position)(gd_source *src, gd_buf *out);
    /* Set by the engine: called before partitions are taken away (the state
     * so far is committed), and once newly assigned ones are restored (the
     * changelog applied to its end as it stood at the assignment). */
    void (*on_revoke)(void *ctx);
    void (*on_assigned)(void *ctx);
    void *hook_ctx;
    void (*close)(gd_source *src);
    const char *error; /* why the last GD_EBADREC */
    gd_bad_reason error_reason;
};

/* Partitioned mode: the changelog partition of partition p of a route whose
 * tasks start at base (gd_changelog_base), modulo the changelog's partition
 * count (engine.c says why). */
int32_t gd_changelog_partition(int32_t base, int32_t p, int32_t changelog_partitions);

gd_source *gd_file_source_open(const gd_config *cfg, const char *path);
gd_source *gd_generator_source_open(const gd_config *cfg);
typedef struct gd_counters gd_counters;
/* kafka_source.c: counters receive consumer lag, rebalances, reachability
 * and what this instance holds (counters->cluster), whose instance_id (the
 * data dir's own, gd_store_instance_id) names its consumer group. */
gd_source *gd_kafka_source_open(const gd_config *cfg, gd_counters *counters);

/* Topic name -> gd_topic, with the configured names. */
gd_topic gd_topic_lookup(const gd_config *cfg, gd_str name);

/* ---- generator ----
 * The synthetic world: a few dozen games, a few thousand players, activity
 * with reference updates, tombstones, unknown ids, nulls, out-of-order and
 * late events. Deterministic for a seed. */
typedef struct gd_generator gd_generator;
typedef struct {
    uint64_t seed;
    int64_t start_ms;      /* event time of the first activity */
    double rate;           /* events per second of event time */
    bool live;             /* event time from the wall clock instead */
    double bad_ratio;      /* share of deliberately malformed records */
} gd_generator_opts;
gd_generator *gd_generator_new(const gd_generator_opts *o);
/* The next record: its topic, key and JSON value; false for a tombstone.
 * Values of deliberately bad records may not parse at all. */
bool gd_generator_next(gd_generator *g, gd_topic *topic, gd_buf *key, gd_buf *value);
uint64_t gd_generator_count(const gd_generator *g);      /* records produced */
uint64_t gd_generator_activities(const gd_generator *g); /* of them activity */
void gd_generator_free(gd_generator *g);
/* gamingd generate (generate.c): --out FILE as JSON lines, or --brokers LIST
 * into the three topics as JSON or Avro. Returns a process exit code. */
int gd_generate(const gd_config *cfg, const atomic_bool *stop);

/* ---- the fields of each source value (decode.c) ----
 * One table per topic names each field, its type and its place in the struct;
 * decoding, copying and rendering rows all walk these tables. */
typedef enum { GD_FT_STR, GD_FT_INT, GD_FT_DBL, GD_FT_TS } gd_ftype; /* TS: required int */
typedef struct {
    const char *name;
    uint8_t name_len;
    gd_ftype type;
    size_t offset;
} gd_fieldspec;
extern const gd_fieldspec gd_activity_fields[], gd_game_fields[], gd_player_fields[];
/* A field of a decoded row as a value. */
gd_value gd_fieldspec_value(const gd_fieldspec *f, const void *row);

/* ---- the enriched record ----
 * Its fields in output order (schemas/gaming_intelligence.avsc): the data
 * product's 16, then the further enriched ones. */
typedef struct {
    const char *name;
    const char *json_key; /* "\"name\":" */
    size_t json_key_len;
    gd_field field;
    gd_coltype type; /* as SQL sees it */
    /* the source field it is copied from (topic GD_TOPIC_UNKNOWN: computed
     * by the enrichment), which says whether it is personal data */
    gd_topic from_topic;
    const char *from_field;
} gd_output_field;
extern const gd_output_field gd_output_fields[];
extern const size_t gd_output_field_count;

/* ---- push streams (server/hub.h) ----
 * Each catalog entry has its stream (store/catalog.h numbers them): the
 * enriched records, a source topic's records as decoded, a derived
 * stream's records, a table's row after each change. Ids: an enriched
 * record's seq for it, for its derived streams and for the table rows it
 * changed; a source record, the number of records read from its topic. */
#define GD_ENRICHED_STREAM_NAME "gaming_real_time_intelligence_platform"

/* ---- the Schema Registry (registry.c) ---- */
typedef struct gd_registry gd_registry;
/* auth: "user:secret" or ""; stop: set to end a wait for an unreachable
 * registry, after which fetch and register return GD_AGAIN. */
int gd_registry_open(gd_registry **out, const char *url, const char *auth, const atomic_bool *stop);
void gd_registry_close(gd_registry *r);
/* The schema with this id, as JSON text. */
int gd_registry_fetch(gd_registry *r, int32_t id, gd_buf *schema_json);
/* Calls fn for each field of the subject's latest schema that is tagged
 * PII ("confluent:tags": ["PII"], Confluent's data-contract convention).
 * One try of at most 2 s, no retries (it is asked at start): GD_OK, also when the subject
 * has no schema; GD_ERR when the registry did not answer. */
int gd_registry_pii_fields(gd_registry *r, const char *subject, void (*fn)(void *ctx, const char *field), void *ctx);
/* Registers the schema under the subject (or finds it there); *id its id. */
int gd_registry_register(gd_registry *r, const char *subject, const char *schema_json, int32_t *id);

/* ---- Avro in the Confluent wire format (avro.c) ---- */
/* The .avsc files of schemas/, built into the binary. */
extern const char gd_schema_gaming_intelligence[], gd_schema_gaming_games[], gd_schema_gaming_players[],
    gd_schema_gaming_player_activity[];
/* Writes records of a record schema whose fields are found by name among
 * names[0..n); values are then given in that order. */
typedef struct gd_avro_writer gd_avro_writer;
int gd_avro_writer_new(gd_avro_writer **out, const char *schema_json, const char *const *names, size_t n);
/* Appends byte 0, the id, the record; GD_EBADREC when a value does not fit
 * its field (null in a required field, say), leaving out as it was. */
int gd_avro_write(const gd_avro_writer *w, int32_t schema_id, const gd_value *values, gd_buf *out);
void gd_avro_writer_free(gd_avro_writer *w);
/* Reads source values, fetching writer schemas from the registry (NULL: an
 * Avro value is a bad record) and caching them by id. */
typedef struct gd_avro_reader gd_avro_reader;
int gd_avro_reader_new(gd_avro_reader **out, gd_registry *registry);
/* A writer schema known without asking the registry (tests, fuzzing). */
int gd_avro_reader_preload(gd_avro_reader *r, int32_t id, const char *schema_json);
void gd_avro_reader_free(gd_avro_reader *r);

/* ---- decoding: JSON or Avro, told apart per record ----
 * GD_OK, GD_EBADREC with *why, or GD_AGAIN when the daemon began to stop
 * while waiting for the registry (the record is neither good nor bad). */
int gd_decode_activity(gd_avro_reader *avro, gd_str value, gd_arena *scratch, gd_activity *out,
                       const char **why);
int gd_decode_game(gd_avro_reader *avro, gd_str value, gd_arena *scratch, gd_game *out, const char **why);
int gd_decode_player(gd_avro_reader *avro, gd_str value, gd_arena *scratch, gd_player *out, const char **why);

/* ---- the Kafka producer (kafka_sink.c) ---- */
typedef struct gd_kafka_sink gd_kafka_sink;
/* counters may be NULL; stop ends a wait for room in a full queue. */
int gd_kafka_sink_open(gd_kafka_sink **out, const gd_config *cfg, gd_counters *counters, const atomic_bool *stop);
/* Creates the topic when missing; a refusal is a warning, not an error.
 * cleanup_policy: "compact", or NULL for deletion after retention_ms. */
void gd_kafka_sink_ensure_topic(gd_kafka_sink *s, const char *topic, int partitions, int64_t retention_ms,
                                const char *cleanup_policy);
/* The topic's partition count, or -1 (no such topic, no broker). */
int32_t gd_kafka_sink_partitions(gd_kafka_sink *s, const char *topic);
/* The next offset of each of the topic's first n partitions (-1 where the
 * brokers do not say). */
void gd_kafka_sink_ends(gd_kafka_sink *s, const char *topic, int32_t n, int64_t *ends);
/* Queues one record (error_header: an `error` header, or NULL). */
int gd_kafka_sink_produce(gd_kafka_sink *s, const char *topic, gd_str key, gd_str value, const char *error_header);
/* The partition the producer's partitioner gives key among partitions
 * (murmur2, as Java clients: another client sends the key to it too). */
int32_t gd_kafka_key_partition(gd_str key, int32_t partitions);
/* The same to one partition (-1: by the key). */
int gd_kafka_sink_produce_to(gd_kafka_sink *s, const char *topic, int32_t partition, gd_str key, gd_str value,
                             const char *error_header);
/* Serves delivery reports and error events without waiting. */
void gd_kafka_sink_poll(gd_kafka_sink *s);
/* GD_OK once every queued record is acknowledged, GD_AGAIN after timeout_ms. */
int gd_kafka_sink_flush(gd_kafka_sink *s, int timeout_ms);
size_t gd_kafka_sink_pending(const gd_kafka_sink *s);
/* Records still unacknowledged are given up (the committed state does not
 * count them as sent), so closing never waits for brokers that are gone. */
void gd_kafka_sink_close(gd_kafka_sink *s);

/* ---- the enriched stream and dead letters to Kafka (output.c) ---- */
typedef struct gd_output gd_output;
/* *out stays NULL without --brokers. registry: for Avro output. */
int gd_output_open(gd_output **out, const gd_config *cfg, gd_counters *counters, gd_registry *registry,
                   const atomic_bool *stop);
/* Whether gd_output_enriched wants the record's JSON. */
bool gd_output_wants_json(const gd_output *o);
int gd_output_enriched(gd_output *o, const gd_enriched *en, gd_str json);
int gd_output_dead_letter(gd_output *o, const gd_record *rec, const char *why);
/* Partitioned mode: creates the route topics (as many partitions as the
 * activity topic), the compacted changelog (a partition per route
 * partition: each task's rows go to its own) and the push topic (as many
 * partitions as the activity topic, at most GD_MAX_PUSH_PARTITIONS);
 * route_partitions[r], *changelog_partitions and *push_partitions: their
 * partition counts as the brokers have them (or as asked for, while they do
 * not say yet). */
int gd_output_internal_topics(gd_output *o, const char *const *routes, int nroutes, int32_t *route_partitions,
                              const char *changelog, int32_t *changelog_partitions, const char *push,
                              int32_t *push_partitions);
/* A route topic made while running, as the others: its partition count as
 * the brokers have it (or as asked for), -1 when the activity topic's is
 * not known. */
int32_t gd_output_route_topic(gd_output *o, const char *topic);
/* The next offset of each of the topic's first n partitions (-1 where the
 * brokers do not say). */
void gd_output_ends(gd_output *o, const char *topic, int32_t n, int64_t *ends);
/* partition: -1 for the one the key picks. */
int gd_output_internal(gd_output *o, const char *topic, int32_t partition, gd_str key, gd_str value);
/* Before each LMDB commit: GD_OK once the brokers hold everything produced. */
int gd_output_flush(gd_output *o);
/* While idle: the producer's reports and errors are served. */
void gd_output_poll(gd_output *o);
/* Records produced and not acknowledged yet. */
size_t gd_output_pending(const gd_output *o);
void gd_output_close(gd_output *o);

/* ---- where push events go (relay.c) ----
 * To the hub; in partitioned mode, the streams made from activity go to the
 * internal topic `<application id>-push` instead, which every instance reads
 * back into its hub (gd_relay_receive), so each pushes every event. */
typedef struct gd_relay gd_relay;
/* A partition per stream it could carry, at most: more would carry nothing. */
enum { GD_MAX_PUSH_PARTITIONS = GD_MAX_STREAMS + GD_MAX_TABLES };
int gd_relay_open(gd_relay **out, const gd_config *cfg, const gd_catalog *cat, gd_hub *hub, gd_output *output,
                  gd_counters *counters, const char *instance_id);
void gd_relay_close(gd_relay *r);
/* After a table or stream was added: which streams the relay carries. */
void gd_relay_catalog_changed(gd_relay *r);
const char *gd_relay_topic(const gd_relay *r);
/* The push topic's partition count (only the first GD_MAX_PUSH_PARTITIONS
 * are used), and where this instance reads each from (-1: from wherever its
 * end is when it is read, so what came before is told may be missing only
 * once a record shows where that was). Until then nothing is carried. */
void gd_relay_use_partitions(gd_relay *r, int32_t partitions, const int64_t *from);
/* Whether the relay carries hub stream `stream` (else it is the hub's). */
bool gd_relay_carries(const gd_relay *r, unsigned stream);
/* Often, on the ingest thread: says which streams this instance listens to. */
int gd_relay_tick(gd_relay *r);
/* A record of the push topic (GD_REC_PUSH) into the hub. */
void gd_relay_receive(gd_relay *r, const gd_record *rec);

typedef struct {
    gd_hub *hub;     /* NULL: no push streams */
    gd_relay *relay; /* partitioned mode, else NULL */
    bool failed;     /* producing to the relay failed: the run ends */
} gd_push_sink;
bool gd_push_sink_wanted(gd_push_sink *p, unsigned stream, uint64_t id);
void gd_push_sink_publish(gd_push_sink *p, unsigned stream, uint64_t id, const char *text, size_t len);

/* ---- what this instance holds (SPEC §11), read by the HTTP threads ----
 * By default an instance reads activity in a consumer group of its own
 * (<application id>-<instance id>), so it holds everything: a replica.
 * When -X group.id names a group, instances may share it, each then holding
 * the records of its own partitions only: "partial", and data queries are
 * answered 503 rather than with part of the answer. */
typedef enum {
    GD_CLUSTER_STARTING,    /* no broker has answered yet */
    GD_CLUSTER_LOADING,     /* reading the reference topics, or the file */
    GD_CLUSTER_REBALANCING, /* activity not assigned (yet) */
    GD_CLUSTER_RUNNING,     /* every record of the sources is in this instance's state */
    GD_CLUSTER_PARTIAL,     /* a shared group: other instances hold some of the records */
    GD_CLUSTER_STATE_COUNT
} gd_cluster_state;
extern const char *const gd_cluster_state_names[GD_CLUSTER_STATE_COUNT];

enum { GD_MAX_PARTITIONS = 1024 }; /* activity partitions shown; more are read, not listed */

typedef struct {
    _Atomic int state;                    /* gd_cluster_state */
    _Atomic int32_t partitions[GD_TOPIC_COUNT]; /* each topic's partition count, 0 unknown */
    _Atomic uint64_t owned[GD_MAX_PARTITIONS / 64]; /* activity partitions held, a bit each */
    _Atomic uint64_t rebalance_ms_total, last_rebalance_ms;
    _Atomic int32_t missed; /* partitions whose earlier records another member applied */
    bool shared_group;          /* set before the HTTP threads start */
    bool partitioned;           /* --mode partitioned: whole once restored (route.c) */
    _Atomic bool routing;       /* partitioned mode, loaded: each task is answered by its owner (api/peers.c),
                                   whatever this instance is restoring meanwhile */
    _Atomic int64_t changelog_lag, restore_remaining; /* partitioned mode, in changelog records */
    _Atomic uint64_t route_bytes, changelog_bytes, push_bytes; /* partitioned mode: value bytes produced */
    _Atomic uint64_t push_missed; /* push topic records gone before this instance read them */
    /* partitioned mode: the route topics (set before the HTTP threads
     * start, and while running), their partition counts, and the tasks -- route partitions --
     * this instance holds, restored: whose rows it answers for */
    _Atomic int nroutes; /* more while running: a route whole before it is counted */
    char route_topic[GD_MAX_ROUTES][300];
    _Atomic int32_t route_partitions[GD_MAX_ROUTES];
    _Atomic int32_t changelog_base[GD_MAX_ROUTES]; /* gd_changelog_base */
    _Atomic uint64_t owned_tasks[GD_MAX_ROUTES][GD_MAX_PARTITIONS / 64];
    _Atomic uint32_t ownership_changes; /* moves when the activity or the tasks held change */
    char changelog_topic[300];
    int32_t changelog_partitions;
    _Atomic uint64_t changelog_reading[GD_MAX_ROUTES * GD_MAX_PARTITIONS / 64]; /* the partitions read */
    _Atomic uint64_t standby_tasks[GD_MAX_ROUTES][GD_MAX_PARTITIONS / 64];  /* kept warm for their owners */
    _Atomic int64_t partition_lag[GD_MAX_ROUTES * GD_MAX_PARTITIONS]; /* per changelog partition read: records behind its end, at the last commit or second; -1 not known */
    struct gd_roster *roster;   /* the other instances; NULL without Kafka */
    char group[256], instance_id[32];
} gd_cluster_view;

/* roster.c: what an instance holds, and the other instances of its
 * application id as they announce themselves on `<application id>-instances`. */
typedef struct gd_roster gd_roster;
int32_t gd_cluster_owned(const gd_cluster_view *v); /* activity partitions held */
/* Whether this instance holds task (route, partition), restored. */
bool gd_cluster_holds_task(const gd_cluster_view *v, int route, int32_t partition);
/* The changelog partition of task (route, partition), or -1. */
int32_t gd_cluster_task_changelog(const gd_cluster_view *v, int route, int32_t partition);
/* Whether this instance may answer for the task's rows: it holds it, or
 * (max_lag >= 0) it reads the task's changelog partition -- a standby, or
 * the owner it was -- and its store holds that partition to at most max_lag
 * records behind its end (as of its last commit, looked at after each
 * commit and every second). */
bool gd_cluster_answers_task(const gd_cluster_view *v, int route, int32_t partition, int64_t max_lag);
gd_cluster_state gd_cluster_state_of(const gd_config *cfg, gd_counters *c);
/* This instance as GET /v1/cluster lists it (self: as it sees itself). */
void gd_cluster_put_instance(gd_buf *b, const gd_config *cfg, gd_counters *c, bool self);
/* Starts announcing this instance and following the others (a Kafka
 * source only; *out stays NULL otherwise). After gd_kafka_source_open, which
 * fills counters->cluster, and before the HTTP threads start. */
int gd_roster_start(gd_roster **out, const gd_config *cfg, gd_counters *counters);
/* The live others' announcements, each preceded by a comma; r may be NULL. */
void gd_roster_put_others(gd_roster *r, gd_buf *b);
/* The URL of the other instance that announces task (route, partition) as
 * its own, into url: 1; 0 when none does, -1 when more than one does (a
 * rebalance under way). */
int gd_roster_task_owner(gd_roster *r, int route, int32_t partition, char *url, size_t n);
/* The URL of another instance that reads changelog partition c (its
 * owner's or a standby's), not one of skip's URLs, into url: 1; else 0. */
int gd_roster_task_reader(gd_roster *r, int32_t c, const char *const *skip, int nskip, char *url, size_t n);
/* The tasks this instance keeps warm, a bit per route partition: of each
 * task another instance announces, the `replicas` instances after its owner
 * in the order of instance ids stand by; and a task of `kept` (those kept
 * so far, or just given up; NULL: none) stays while no other instance
 * announces it -- its owner gone, or its next one restoring -- so its last
 * state stays warm, and answerable, until someone has taken it over. */
void gd_roster_standby_tasks(gd_roster *r, int replicas, uint64_t (*kept)[GD_MAX_PARTITIONS / 64],
                             uint64_t (*out)[GD_MAX_PARTITIONS / 64]);
int gd_roster_count(gd_roster *r); /* live instances, this one included */
/* Says this instance is leaving, then stops. */
void gd_roster_stop(gd_roster *r);

/* Whether data queries may be answered: false while this instance holds
 * part of the activity (GD_CLUSTER_PARTIAL, or a shared group rebalancing),
 * or misses records another member of a shared group applied; in
 * partitioned mode, once loaded (each task's owner answers for it). */
bool gd_cluster_whole(const gd_cluster_view *v);

/* ---- counters, read by the HTTP threads ---- */
struct gd_counters {
    _Atomic uint64_t records_in[GD_TOPIC_COUNT + 1];
    _Atomic uint64_t bad_records[GD_TOPIC_COUNT + 1];
    _Atomic uint64_t bad_by_reason[GD_BAD_REASON_COUNT];
    _Atomic uint64_t late_records;
    _Atomic uint64_t records_out;
    _Atomic uint64_t with_game;   /* enriched records that found their game */
    _Atomic uint64_t with_player; /* ... and their player */
    _Atomic uint64_t batches;
    _Atomic uint64_t commit_ns;   /* wall time spent writing batches to LMDB and committing them */
    _Atomic int64_t commit_interval_ns; /* how often live data is committed now (ingest/engine.c) */
    _Atomic int64_t last_lag_ms;  /* processing - event time of the last record */
    _Atomic int64_t stream_time;
    _Atomic uint64_t hot_window_bytes; /* open windows held in memory */
    _Atomic uint64_t ingest_rate;      /* records/s over the last second or more */
    _Atomic bool ready;           /* store open and source caught up */
    /* Kafka (not persisted: counted since start) */
    _Atomic int64_t consumer_lag[GD_TOPIC_COUNT]; /* records behind the high-water marks */
    _Atomic unsigned kafka_unreachable;           /* bit per client: every broker down */
    _Atomic uint64_t kafka_errors, kafka_rebalances;
    _Atomic uint64_t kafka_produced, kafka_delivered, kafka_delivery_failed;
    _Atomic uint64_t dead_letters[GD_TOPIC_COUNT];
    gd_cluster_view cluster;
};

/* ---- the engine ---- */
typedef struct gd_engine gd_engine;
/* cat: the tables to maintain, and DDL to apply between batches; hub:
 * where changes are pushed, or NULL; stop: set to end the run. */
int gd_engine_open(gd_engine **out, const gd_config *cfg, gd_store *store, gd_catalog *cat, gd_source *src,
                   gd_counters *counters, gd_hub *hub, const atomic_bool *stop);
/* Runs until *stop is set or the source fails; commits before returning. */
int gd_engine_run(gd_engine *e);
void gd_engine_close(gd_engine *e);

#endif
