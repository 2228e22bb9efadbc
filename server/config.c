/* config.c -- flags and environment variables as one table. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util.h"

typedef int (*opt_fn)(gd_config *cfg, const char *v);

typedef struct {
    const char *flag;  /* "--listen" */
    const char *env;   /* "GAMINGD_LISTEN", NULL when flag-only */
    const char *arg;   /* "HOST:PORT", NULL when the flag takes no value */
    const char *help;
    opt_fn set;
    const char *valid; /* what a good value looks like, for the error; NULL: arg says it */
    bool secret;       /* the value is a secret: never echoed, scrubbed from argv */
} gd_option;

static int copy_to(char *dst, size_t cap, const char *v)
{
    if (strlen(v) >= cap) return GD_ERR;
    memcpy(dst, v, strlen(v) + 1);
    return GD_OK;
}
#define COPY(field) copy_to(cfg->field, sizeof cfg->field, v)

static int set_listen(gd_config *cfg, const char *v)
{
    const char *colon = strrchr(v, ':');
    int64_t port;
    if (!colon || colon == v || gd_parse_int(colon + 1, strlen(colon + 1), 0, 65535, &port))
        return GD_ERR;
    size_t n = (size_t)(colon - v);
    if (n >= sizeof cfg->listen_host) return GD_ERR;
    memcpy(cfg->listen_host, v, n);
    cfg->listen_host[n] = 0;
    cfg->listen_port = (int)port;
    return GD_OK;
}
static int set_data_dir(gd_config *cfg, const char *v) { return COPY(data_dir); }
static int set_source(gd_config *cfg, const char *v)
{
    if (!strcmp(v, "generator")) cfg->source = GD_SRC_GENERATOR;
    else if (!strcmp(v, "kafka")) cfg->source = GD_SRC_KAFKA;
    else if (!strncmp(v, "file:", 5) && v[5]) {
        cfg->source = GD_SRC_FILE;
        return copy_to(cfg->source_path, sizeof cfg->source_path, v + 5);
    } else return GD_ERR;
    return GD_OK;
}
static int set_brokers(gd_config *cfg, const char *v) { return COPY(brokers); }
/* A consumer group and topic prefix: Kafka's legal name characters. */
static int set_application_id(gd_config *cfg, const char *v)
{
    if (!*v || strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(v))
        return GD_ERR;
    return COPY(application_id);
}
static int set_advertised_url(gd_config *cfg, const char *v)
{
    bool web = !strncmp(v, "http://", 7) || !strncmp(v, "https://", 8);
    return web && !strpbrk(v, " \t\"<>\\") ? COPY(advertised_url) : GD_ERR;
}
bool gd_kafka_secret_property(const char *prop)
{
    static const char *const secret_words[] = {"password", "secret", "key.pem", "oauthbearer.config", "jaas", NULL};
    size_t n = strcspn(prop, "=");
    for (int i = 0; secret_words[i]; i++) {
        size_t w = strlen(secret_words[i]);
        for (size_t at = 0; at + w <= n; at++)
            if (!strncasecmp(prop + at, secret_words[i], w)) return true;
    }
    return false;
}

/* s without the blanks around it (s is changed). */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

static int add_kafka_prop(gd_config *cfg, const char *v, size_t n)
{
    const char *eq = memchr(v, '=', n);
    if (!eq || eq == v || cfg->nkafka_props >= GD_MAX_KAFKA_PROPS) return GD_ERR;
    cfg->kafka_props[cfg->nkafka_props++] = strndup(v, n);
    return GD_OK;
}
static int set_kafka_prop(gd_config *cfg, const char *v) { return add_kafka_prop(cfg, v, strlen(v)); }

/* -F FILE: librdkafka properties, one key=value a line, as kcat reads them;
 * blank lines and # comments are skipped. The file keeps secrets (SASL
 * passwords) off the command line, where every local user can read them. */
static int set_kafka_config(gd_config *cfg, const char *v)
{
    FILE *f = fopen(v, "r");
    if (!f) return GD_ERR;
    char line[4096], prop[4096];
    int rc = GD_OK;
    while (!rc && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *eq = strchr(line, '=');
        const char *key = trim(line);
        if (!*key || *key == '#') continue;
        if (!eq) {
            rc = GD_ERR;
            break;
        }
        *eq = 0;
        snprintf(prop, sizeof prop, "%s=%s", trim(line), trim(eq + 1)); /* "key = value" as well */
        rc = add_kafka_prop(cfg, prop, strlen(prop));
    }
    fclose(f);
    if (!rc) rc = COPY(kafka_config_file);
    return rc;
}
static int set_registry(gd_config *cfg, const char *v) { return COPY(schema_registry); }
static int set_registry_auth(gd_config *cfg, const char *v)
{
    return strchr(v, ':') ? COPY(schema_registry_auth) : GD_ERR;
}
static int set_output(gd_config *cfg, const char *v)
{
    if (!strcmp(v, "kafka")) {
        cfg->output_kafka = true;
        return GD_OK;
    }
    if (!strcmp(v, "none")) { /* a replica that leaves the output topic to another */
        cfg->output_none = true;
        return GD_OK;
    }
    if (!strncmp(v, "file:", 5) && v[5]) return copy_to(cfg->output_path, sizeof cfg->output_path, v + 5);
    return GD_ERR;
}
static int set_mode(gd_config *cfg, const char *v)
{
    if (strcmp(v, "replica") && strcmp(v, "partitioned")) return GD_ERR;
    cfg->partitioned = !strcmp(v, "partitioned");
    return GD_OK;
}
static int set_output_format(gd_config *cfg, const char *v)
{
    return strcmp(v, "avro") && strcmp(v, "json") ? GD_ERR : COPY(output_format);
}
static int set_grace(gd_config *cfg, const char *v) { return gd_parse_duration(v, &cfg->grace_ms); }
static int set_retention(gd_config *cfg, const char *v)
{
    return gd_parse_duration(v, &cfg->retention_ms) || cfg->retention_ms == 0 ? GD_ERR : GD_OK;
}
static int set_rate(gd_config *cfg, const char *v)
{
    char *end;
    double r = strtod(v, &end);
    if (*end || end == v || !(r > 0) || r > 1e9) return GD_ERR;
    cfg->rate = r;
    return GD_OK;
}
static int set_seed(gd_config *cfg, const char *v)
{
    int64_t s;
    if (gd_parse_int(v, strlen(v), 0, INT64_MAX, &s)) return GD_ERR;
    cfg->seed = (uint64_t)s;
    return GD_OK;
}
static int set_api_keys(gd_config *cfg, const char *v) { return COPY(api_keys); }
static int set_instance_key(gd_config *cfg, const char *v) { return COPY(instance_key); }
static int set_standby_replicas(gd_config *cfg, const char *v)
{
    int64_t n;
    if (gd_parse_int(v, strlen(v), 0, 8, &n)) return GD_ERR;
    cfg->standby_replicas = (int)n;
    return GD_OK;
}
static int set_max_staleness(gd_config *cfg, const char *v)
{
    return gd_parse_int(v, strlen(v), 0, INT64_MAX / 2, &cfg->max_staleness);
}
static int set_topic_games(gd_config *cfg, const char *v) { return COPY(topics[GD_TOPIC_GAMES]); }
static int set_topic_players(gd_config *cfg, const char *v) { return COPY(topics[GD_TOPIC_PLAYERS]); }
static int set_topic_activity(gd_config *cfg, const char *v) { return COPY(topics[GD_TOPIC_ACTIVITY]); }
static int set_output_topic(gd_config *cfg, const char *v) { return COPY(output_topic); }
enum { MIN_MAP_MIB = 16, MAX_MAP_MIB = 1 << 24 };
static int set_map_size(gd_config *cfg, const char *v)
{
    int64_t mib;
    if (gd_parse_int(v, strlen(v), MIN_MAP_MIB, MAX_MAP_MIB, &mib)) return GD_ERR;
    cfg->map_size = (size_t)mib << 20;
    return GD_OK;
}
static int set_max_future(gd_config *cfg, const char *v) { return gd_parse_duration(v, &cfg->max_future_ms); }
enum { MIN_RECORD_BYTES = 1024, MAX_RECORD_BYTES = 1 << 30 };
static int set_max_record_bytes(gd_config *cfg, const char *v)
{
    int64_t n;
    if (gd_parse_int(v, strlen(v), MIN_RECORD_BYTES, MAX_RECORD_BYTES, &n)) return GD_ERR;
    cfg->max_record_bytes = (uint32_t)n;
    return GD_OK;
}
static int set_shutdown_timeout(gd_config *cfg, const char *v)
{
    return gd_parse_duration(v, &cfg->shutdown_timeout_ms) || cfg->shutdown_timeout_ms < 100 ? GD_ERR : GD_OK;
}
static int set_request_timeout(gd_config *cfg, const char *v)
{
    return gd_parse_duration(v, &cfg->request_timeout_ms) || cfg->request_timeout_ms < 100 ? GD_ERR : GD_OK;
}
static int set_tls_cert(gd_config *cfg, const char *v) { return COPY(tls_cert); }
static int set_tls_key(gd_config *cfg, const char *v) { return COPY(tls_key); }
static int set_cors_origins(gd_config *cfg, const char *v) { return COPY(cors_origins); }
static int set_allowed_hosts(gd_config *cfg, const char *v) { return COPY(allowed_hosts); }
static int set_commit_interval(gd_config *cfg, const char *v)
{
    if (gd_parse_duration(v, &cfg->commit_interval_ms)) return GD_ERR;
    /* at most a day: a batch may last ten times it, counted in nanoseconds */
    return cfg->commit_interval_ms < 1 || cfg->commit_interval_ms > 24 * 3600 * 1000 ? GD_ERR : GD_OK;
}
static int set_http_threads(gd_config *cfg, const char *v)
{
    int64_t n;
    if (gd_parse_int(v, strlen(v), 1, 64, &n)) return GD_ERR;
    cfg->http_threads = (int)n;
    return GD_OK;
}
static int set_ingest_threads(gd_config *cfg, const char *v)
{
    int64_t n;
    if (gd_parse_int(v, strlen(v), 1, GD_MAX_INGEST_THREADS, &n)) return GD_ERR;
    cfg->ingest_threads = (int)n;
    return GD_OK;
}
/* A ring's size in events: 16 to 2^20. */
static int parse_ring(const char *v, uint32_t *out)
{
    int64_t n;
    if (gd_parse_int(v, strlen(v), 16, 1 << 20, &n)) return GD_ERR;
    *out = (uint32_t)n;
    return GD_OK;
}
static int set_push_buffer(gd_config *cfg, const char *v) { return parse_ring(v, &cfg->push_buffer); }
static int set_push_query_buffer(gd_config *cfg, const char *v) { return parse_ring(v, &cfg->push_query_buffer); }
static int set_out(gd_config *cfg, const char *v) { return COPY(out_path); }
static int set_generate_format(gd_config *cfg, const char *v)
{
    return strcmp(v, "avro") && strcmp(v, "json") ? GD_ERR : COPY(generate_format);
}
static int set_events(gd_config *cfg, const char *v)
{
    int64_t n;
    if (gd_parse_int(v, strlen(v), 0, INT64_MAX, &n)) return GD_ERR;
    cfg->events = (uint64_t)n;
    return GD_OK;
}
static int set_start(gd_config *cfg, const char *v)
{
    return gd_parse_int(v, strlen(v), 0, INT64_MAX / 2, &cfg->start_ms);
}

static const gd_option options[] = {
    {"--listen", "GAMINGD_LISTEN", "HOST:PORT", "HTTP address (default 127.0.0.1:8080)", set_listen, "an IP address and a port 0-65535", false},
    {"--data-dir", "GAMINGD_DATA_DIR", "DIR", "LMDB environment (default ./data)", set_data_dir, NULL, false},
    {"--source", "GAMINGD_SOURCE", "generator|file:PATH|kafka", "where records come from (default generator)", set_source, NULL, false},
    {"--brokers", "GAMINGD_BROKERS", "LIST", "Kafka bootstrap servers", set_brokers, NULL, false},
    {"--application-id", "GAMINGD_APPLICATION_ID", "ID", "names this instance's consumer group, <ID>-<instance id> (default gaming-intelligence-gamingd)", set_application_id, "letters, digits, '.', '_' and '-'", false},
    {"--standby-replicas", "GAMINGD_STANDBY_REPLICAS", "N", "partitioned mode: how many other instances keep each task's state warm, reading its changelog partition (0 to 8, default 1)", set_standby_replicas, NULL, false},
    {"--max-staleness", "GAMINGD_MAX_STALENESS", "RECORDS", "partitioned mode: a task whose owner cannot answer (gone, or its tasks moving) is answered by an instance keeping it warm that is at most RECORDS changelog records behind (default: owners only)", set_max_staleness, "a whole number of records, 0 or more", false},
    {"--mode", "GAMINGD_MODE", "replica|partitioned", "replica: this instance holds everything; partitioned: the instances of one --application-id share the work (default replica)", set_mode, NULL, false},
    {"--advertised-url", "GAMINGD_ADVERTISED_URL", "URL", "how clients and other instances reach this one (default from --listen)", set_advertised_url, "an http:// or https:// URL", false},
    {"-X", NULL, "KEY=VALUE", "any librdkafka property, e.g. -X security.protocol=SASL_SSL (repeatable; secrets belong in -F)", set_kafka_prop, NULL, false},
    {"-F", "GAMINGD_KAFKA_CONFIG", "FILE", "librdkafka properties from a file, one KEY=VALUE a line (# comments); for secrets", set_kafka_config, "a readable file of KEY=VALUE lines", false},
    {"--schema-registry", "GAMINGD_SCHEMA_REGISTRY", "URL", "Confluent Schema Registry", set_registry, NULL, false},
    {"--schema-registry-auth", "GAMINGD_SCHEMA_REGISTRY_AUTH", "USER:SECRET", "Schema Registry basic auth (give it in the environment, not on the command line)", set_registry_auth, NULL, true},
    {"--output", "GAMINGD_OUTPUT", "kafka|file:PATH|none", "where the enriched stream goes (kafka when --brokers is set)", set_output, NULL, false},
    {"--output-format", "GAMINGD_OUTPUT_FORMAT", "avro|json", "output record format (default avro)", set_output_format, NULL, false},
    {"--grace", "GAMINGD_GRACE", "DUR", "window grace (default: window size + grace = 24h)", set_grace, NULL, false},
    {"--retention", "GAMINGD_RETENTION", "DUR", "how long windows are kept past their end (default 7d)", set_retention, "a duration above 0", false},
    {"--max-future", "GAMINGD_MAX_FUTURE", "DUR", "activity further ahead of the wall clock is a bad record (default 1h)", set_max_future, NULL, false},
    {"--max-record-bytes", "GAMINGD_MAX_RECORD_BYTES", "N", "larger source records are skipped as bad (default 1048576)", set_max_record_bytes, "bytes, 1024 to 1073741824", false},
    {"--rate", "GAMINGD_RATE", "N", "generator events per second (default 1000)", set_rate, "a number above 0, at most 1e9", false},
    {"--seed", "GAMINGD_SEED", "N", "generator seed (default random)", set_seed, NULL, false},
    {"--api-keys", "GAMINGD_API_KEYS", "FILE", "turns authentication on", set_api_keys, NULL, false},
    {"--instance-key", "GAMINGD_INSTANCE_KEY", "FILE", "partitioned mode with --api-keys: the key (scope instance) this instance presents when it asks another for rows", set_instance_key, NULL, false},
    {"--tls-cert", "GAMINGD_TLS_CERT", "FILE", "serve HTTPS with this PEM certificate (chain)", set_tls_cert, NULL, false},
    {"--tls-key", "GAMINGD_TLS_KEY", "FILE", "the PEM private key of --tls-cert", set_tls_key, NULL, false},
    {"--cors-origins", "GAMINGD_CORS_ORIGINS", "LIST", "web origins allowed to call the API from a browser, comma separated, or * (default none)", set_cors_origins, NULL, false},
    {"--allowed-hosts", "GAMINGD_ALLOWED_HOSTS", "LIST", "Host names served besides the loopback ones, comma separated", set_allowed_hosts, NULL, false},
    {"--topic-games", "GAMINGD_TOPIC_GAMES", "NAME", "games topic (default gaming_games)", set_topic_games, NULL, false},
    {"--topic-players", "GAMINGD_TOPIC_PLAYERS", "NAME", "players topic (default gaming_players)", set_topic_players, NULL, false},
    {"--topic-activity", "GAMINGD_TOPIC_ACTIVITY", "NAME", "activity topic (default gaming_player_activity)", set_topic_activity, NULL, false},
    {"--output-topic", "GAMINGD_OUTPUT_TOPIC", "NAME", "output topic (default gaming.real-time-gaming-intelligence-platform)", set_output_topic, NULL, false},
    {"--map-size", "GAMINGD_MAP_SIZE", "MIB", "largest size of the LMDB data file (default 65536)", set_map_size, "MiB, at least 16 and at most 16777216", false},
    {"--commit-interval", "GAMINGD_COMMIT_INTERVAL", "DUR", "how often live data is committed (pull-query freshness): this, or ten times the last commit's time when longer, up to ten intervals; ten intervals while catching up (default 100ms)", set_commit_interval, "a duration from 1ms to 1d", false},
    {"--shutdown-timeout", "GAMINGD_SHUTDOWN_TIMEOUT", "DUR", "the longest a stop may take, brokers gone or not (default 10s)", set_shutdown_timeout, "a duration of 100ms or more", false},
    {"--request-timeout", "GAMINGD_REQUEST_TIMEOUT", "DUR", "a client must send a whole request within this, once it starts one, and its answer is worked out within it (default 15s)", set_request_timeout, "a duration of 100ms or more", false},
    {"--http-threads", "GAMINGD_HTTP_THREADS", "N", "HTTP worker threads (default 2)", set_http_threads, "1 to 64", false},
    {"--ingest-threads", "GAMINGD_INGEST_THREADS", "1-8", "threads reading and maintaining the tables (default 3 on 2+ cores)", set_ingest_threads, NULL, false},
    {"--push-buffer", "GAMINGD_PUSH_BUFFER", "N", "events each push stream keeps for Last-Event-ID resumption and slow subscribers (default 8192)", set_push_buffer, "16 to 1048576", false},
    {"--push-query-buffer", "GAMINGD_PUSH_QUERY_BUFFER", "N", "rows a SQL push query keeps for its slowest client (default 4096)", set_push_query_buffer, "16 to 1048576", false},
    {"--out", NULL, "FILE", "generate: file to write", set_out, NULL, false},
    {"--format", NULL, "json|avro", "generate --brokers: value format (default json; avro needs --schema-registry)", set_generate_format, NULL, false},
    {"--events", NULL, "N", "generate: number of activity events (default 100000)", set_events, NULL, false},
    {"--start", NULL, "MS", "generate: event time of the first activity (default: now minus the span)", set_start, NULL, false},
};
enum { NOPTIONS = sizeof options / sizeof options[0] };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gamingd [serve] [flags]       run the daemon\n"
            "       gamingd generate --out FILE [--events N] [--seed S] [--rate R] [--start MS]\n"
            "                                    write synthetic source records as JSON lines\n"
            "       gamingd generate --brokers LIST [--format json|avro] [--events N] ...\n"
            "                                    produce them into the three source topics\n"
            "       gamingd sql [URL] [-e STATEMENTS | -f FILE] [--api-key-file FILE]\n"
            "                                    the SQL shell (see gamingd sql --help)\n"
            "\nflags (each also read from its environment variable):\n");
    for (int i = 0; i < NOPTIONS; i++) {
        char lhs[64];
        snprintf(lhs, sizeof lhs, "%s %s", options[i].flag, options[i].arg ? options[i].arg : "");
        fprintf(f, "  %-36s %s%s%s%s\n", lhs, options[i].help, options[i].env ? " [" : "",
                options[i].env ? options[i].env : "", options[i].env ? "]" : "");
    }
    fprintf(f, "  %-36s %s\n  %-36s %s\n", "--help", "this text", "--version", "print the version");
    fprintf(f, "\ndurations take ms, s, m, h, d (e.g. 500ms, 30s, 2h, 7d)\n");
}

static void defaults(gd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 8080;
    strcpy(cfg->data_dir, "./data");
    strcpy(cfg->application_id, "gaming-intelligence-gamingd");
    strcpy(cfg->output_format, "avro");
    strcpy(cfg->generate_format, "json");
    cfg->grace_ms = -1;
    cfg->retention_ms = 7LL * 24 * 3600 * 1000;
    cfg->rate = 1000;
    cfg->push_buffer = 8192;
    cfg->push_query_buffer = 4096;
    cfg->seed = (uint64_t)gd_now_ms() ^ (uint64_t)gd_mono_ns();
    cfg->max_future_ms = 3600 * 1000;
    cfg->max_record_bytes = 1 << 20;
    cfg->shutdown_timeout_ms = 10 * 1000;
    cfg->request_timeout_ms = 15 * 1000;
    strcpy(cfg->topics[GD_TOPIC_GAMES], "gaming_games");
    strcpy(cfg->topics[GD_TOPIC_PLAYERS], "gaming_players");
    strcpy(cfg->topics[GD_TOPIC_ACTIVITY], "gaming_player_activity");
    strcpy(cfg->output_topic, "gaming.real-time-gaming-intelligence-platform");
    cfg->map_size = (size_t)65536 << 20;
    cfg->commit_interval_ms = 100;
    cfg->batch_records = 1 << 20;
    cfg->http_threads = 2;
    cfg->ingest_threads = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 3 : 1; /* ingest/engine.c: layout_tables */
    cfg->standby_replicas = 1;
    cfg->max_staleness = -1;
    cfg->events = 100000;
    cfg->start_ms = -1;
}

static int apply(gd_config *cfg, const gd_option *o, const char *v, const char *from)
{
    if (o->set(cfg, v) == GD_OK) return GD_OK;
    fprintf(stderr, "gamingd: bad value '%s' for %s%s (expected %s)\n", o->secret ? "(secret not shown)" : v,
            o->flag, from, o->valid ? o->valid : o->arg ? o->arg : "no value");
    return GD_ERR;
}

/* A secret given on the command line is readable by every local user (ps,
 * /proc/PID/cmdline) for as long as the process runs: it is blanked out of
 * argv once read, and the user is told where it belongs instead. */
static void scrub_secret(char *value, const char *what, const char *instead)
{
    fprintf(stderr, "gamingd: warning: %s on the command line is visible to every local user; %s\n", what, instead);
    memset(value, '*', strlen(value));
}

int gd_config_parse(gd_config *cfg, int argc, char **argv)
{
    defaults(cfg);
    for (int i = 0; i < NOPTIONS; i++) {
        const char *v = options[i].env ? getenv(options[i].env) : NULL;
        if (v && *v && apply(cfg, &options[i], v, " (from the environment)")) return GD_ERR;
    }
    int a = 1;
    if (a < argc && !strcmp(argv[a], "serve")) a++;
    else if (a < argc && !strcmp(argv[a], "generate")) {
        cfg->command = GD_CMD_GENERATE;
        a++;
    }
    for (; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(stdout);
            return GD_EOF;
        }
        if (!strcmp(arg, "--version")) {
            printf("gamingd %s\n", GD_VERSION);
            return GD_EOF;
        }
        const gd_option *o = NULL;
        const char *val = NULL;
        for (int i = 0; i < NOPTIONS && !o; i++) {
            size_t n = strlen(options[i].flag);
            if (!strncmp(arg, options[i].flag, n) && (arg[n] == 0 || arg[n] == '=')) {
                o = &options[i];
                if (arg[n] == '=') val = arg + n + 1;
            }
        }
        if (!o) {
            fprintf(stderr, "gamingd: unknown flag '%s' (see gamingd --help)\n", arg);
            return GD_ERR;
        }
        if (!val) {
            if (a + 1 >= argc) {
                fprintf(stderr, "gamingd: %s needs a value (%s)\n", o->flag, o->arg);
                return GD_ERR;
            }
            val = argv[++a];
        }
        if (apply(cfg, o, val, "")) return GD_ERR;
        char *given = (char *)val; /* inside argv[a]: argv strings are writable */
        if (o->secret) scrub_secret(given, o->flag, "give it in the environment instead");
        else if (!strcmp(o->flag, "-X") && gd_kafka_secret_property(val))
            scrub_secret(strchr(given, '=') + 1, "a secret librdkafka property", "put it in a file given with -F");
    }
    if (cfg->output_none && (cfg->output_kafka || cfg->output_path[0])) {
        fprintf(stderr, "gamingd: --output none goes with no other --output\n");
        return GD_ERR;
    }
    if (cfg->brokers[0] && !cfg->output_path[0] && !cfg->output_none) cfg->output_kafka = true;
    if (cfg->output_kafka && !cfg->brokers[0]) {
        fprintf(stderr, "gamingd: --output kafka needs --brokers LIST\n");
        return GD_ERR;
    }
    if (cfg->partitioned && cfg->source != GD_SRC_KAFKA) {
        fprintf(stderr, "gamingd: --mode partitioned needs --source kafka (the instances share its topics)\n");
        return GD_ERR;
    }
    if (cfg->partitioned) cfg->ingest_threads = 1; /* the routes divide the tables among instances instead */
    if (!cfg->tls_cert[0] != !cfg->tls_key[0]) {
        fprintf(stderr, "gamingd: --tls-cert and --tls-key go together\n");
        return GD_ERR;
    }
    if (cfg->command == GD_CMD_GENERATE && !cfg->out_path[0] && !cfg->brokers[0]) {
        fprintf(stderr, "gamingd generate: --out FILE or --brokers LIST is required\n");
        return GD_ERR;
    }
    return GD_OK;
}

void gd_config_advertised_url(const gd_config *cfg, char *out, size_t n)
{
    if (cfg->advertised_url[0]) {
        snprintf(out, n, "%s", cfg->advertised_url);
        return;
    }
    char host[256];
    const char *h = cfg->listen_host;
    if (!*h || !strcmp(h, "0.0.0.0") || !strcmp(h, "::") || !strcmp(h, "[::]")) {
        if (gethostname(host, sizeof host)) strcpy(host, "localhost");
        host[sizeof host - 1] = 0;
        h = host;
    }
    bool v6 = strchr(h, ':') && h[0] != '[';
    snprintf(out, n, "%s://%s%s%s:%d", cfg->tls_cert[0] ? "https" : "http", v6 ? "[" : "", h, v6 ? "]" : "",
             cfg->listen_port);
}

const char *gd_config_kafka_prop(const gd_config *cfg, const char *key)
{
    const char *found = NULL; /* the last one given wins, as librdkafka sets them in order */
    size_t n = strlen(key);
    for (int i = 0; i < cfg->nkafka_props; i++)
        if (!strncmp(cfg->kafka_props[i], key, n) && cfg->kafka_props[i][n] == '=') found = cfg->kafka_props[i] + n + 1;
    return found;
}

void gd_config_free(gd_config *cfg)
{
    for (int i = 0; i < cfg->nkafka_props; i++) free(cfg->kafka_props[i]);
    cfg->nkafka_props = 0;
}
