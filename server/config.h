/* config.h -- the command line and environment of SPEC §2.
 *
 * Every flag is one row of a table in config.c (name, environment variable,
 * help text, parser), so --help, the environment and the parser never
 * disagree. The environment is read first, flags override it. */
#ifndef GD_CONFIG_H
#define GD_CONFIG_H

#include "gamingd.h"

typedef enum { GD_SRC_GENERATOR, GD_SRC_FILE, GD_SRC_KAFKA } gd_source_kind;
typedef enum { GD_CMD_SERVE, GD_CMD_GENERATE } gd_command;

enum { GD_MAX_KAFKA_PROPS = 64, GD_MAX_INGEST_THREADS = 8 };

typedef struct {
    gd_command command;
    char listen_host[256];
    int listen_port;
    char data_dir[1024];
    gd_source_kind source;
    char source_path[1024];
    char brokers[1024];
    char application_id[200]; /* names this instance's consumer group (SPEC §11) */
    char advertised_url[1024]; /* how other instances and clients reach this one; "" from --listen */
    char *kafka_props[GD_MAX_KAFKA_PROPS]; /* "key=value", owned */
    int nkafka_props;
    char kafka_config_file[1024]; /* -F: the properties read from it come first */
    char schema_registry[1024];
    char schema_registry_auth[256];
    char output_path[1024]; /* --output file:PATH */
    bool output_kafka;
    bool partitioned; /* --mode partitioned: instances of one application id share the work (ingest/route.c) */
    bool output_none; /* --output none: the enriched stream goes to push streams only */
    char output_format[16]; /* avro | json */
    int64_t grace_ms;       /* -1: per table, size + grace = 24 h */
    int64_t retention_ms;
    double rate;
    uint64_t seed;
    char api_keys[1024];
    char instance_key[1024]; /* a file holding the key this instance presents to the others (partitioned mode) */
    int standby_replicas; /* partitioned mode: instances keeping each task warm besides its owner */
    int64_t max_staleness; /* partitioned mode: standbys may answer this many changelog records behind; -1 never */
    int64_t max_future_ms;     /* activity further ahead of the clock is bad */
    uint32_t max_record_bytes; /* larger source records are skipped, bad */
    int64_t shutdown_timeout_ms;
    int64_t request_timeout_ms; /* a request not received whole by then is ended */
    char cors_origins[1024];   /* comma list, "*", or "" for none */
    char allowed_hosts[1024];  /* comma list of extra Host names */
    char tls_cert[1024], tls_key[1024]; /* PEM files: HTTPS */
    char topics[3][256]; /* by gd_topic */
    char output_topic[256];
    size_t map_size;
    int64_t commit_interval_ms;
    uint32_t batch_records;
    int http_threads;
    int ingest_threads; /* 1 + the workers maintaining the tables (ingest/engine.c: layout_tables) */
    uint32_t push_buffer; /* events each push stream keeps for resumption */
    uint32_t push_query_buffer; /* rows each SQL push query keeps for its clients */
    /* generate */
    char out_path[1024];
    char generate_format[16]; /* json | avro, into Kafka */
    uint64_t events;
    int64_t start_ms;
} gd_config;

/* The URL this instance is reached at: --advertised-url, else built from
 * --listen (a wildcard address replaced by the host name). */
void gd_config_advertised_url(const gd_config *cfg, char *out, size_t n);

/* The value of a librdkafka property given with -X or -F, or NULL. */
const char *gd_config_kafka_prop(const gd_config *cfg, const char *key);

/* Whether a librdkafka property ("key" or "key=value") holds a secret
 * (passwords, client secrets, private keys): its value is never logged. */
bool gd_kafka_secret_property(const char *prop);

/* Fills cfg from the environment and argv. Returns GD_OK, GD_EOF when --help
 * or --version was printed (exit 0), GD_ERR after printing the error. */
int gd_config_parse(gd_config *cfg, int argc, char **argv);
void gd_config_free(gd_config *cfg);

#endif
