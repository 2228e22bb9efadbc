/* main.c -- gamingd's entry point and lifecycle.
 *
 * serve: open the store, the source and the engine, start the HTTP API, then
 * run ingest on this thread until SIGTERM/SIGINT; then stop taking work,
 * commit, close the API and the store, and exit 0 (SPEC §9).
 * generate: write synthetic source records to a file or to Kafka.
 * sql: the SQL shell (cli/), a client of a running gamingd. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../api/api.h"
#include "../cli/cli.h"
#include "../sql/sql.h"

/* Signal handlers cannot be handed state, so what they set -- the stop
 * flag and the count of reload requests -- are the file-scope variables;
 * everything else is passed explicitly. */
static atomic_bool stop_requested;
static _Atomic unsigned reloads_requested;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_requested, true);
}

static void on_sighup(int sig)
{
    (void)sig;
    atomic_fetch_add(&reloads_requested, 1); /* the API reads its keys again */
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* by default these end a process without a commit; an operator's or a
     * log rotator's stray signal must not */
    signal(SIGPIPE, SIG_IGN);
    sa.sa_handler = on_sighup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
}

static gd_source *open_source(const gd_config *cfg, gd_counters *counters)
{
    switch (cfg->source) {
    case GD_SRC_FILE: return gd_file_source_open(cfg, cfg->source_path);
    case GD_SRC_GENERATOR: return gd_generator_source_open(cfg);
    case GD_SRC_KAFKA: return gd_kafka_source_open(cfg, counters);
    }
    return NULL;
}

/* However a stop goes -- brokers gone, a registry that does not answer,
 * a library that waits -- the process ends within --shutdown-timeout of the
 * stop request. Exiting then is safe: state and source position are only
 * ever committed together, so a restart goes on from the last commit. */
typedef struct {
    int64_t timeout_ms;
    const atomic_bool *stop;
} shutdown_watch;

static void *watch_shutdown(void *arg)
{
    shutdown_watch *w = arg;
    while (!atomic_load(w->stop)) gd_sleep_ms(50);
    gd_sleep_ms(w->timeout_ms);
    gd_warn("stopping took longer than --shutdown-timeout (%lld ms): exiting now; what was not committed is read "
            "again at restart", (long long)w->timeout_ms);
    _exit(0);
    return NULL;
}

static void start_shutdown_watch(shutdown_watch *w)
{
    pthread_t t;
    if (pthread_create(&t, NULL, watch_shutdown, w) == 0) pthread_detach(t);
}

/* Each push subscriber is a socket: allow as many as the hard limit. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

typedef struct {
    gd_catalog *cat;
    const gd_config *cfg;
    gd_topic topic;
} pii_tagging;

static void tag_pii(void *ctx, const char *field)
{
    pii_tagging *pt = ctx;
    if (gd_catalog_tag_pii(pt->cat, pt->topic, field)) gd_warn("too many fields tagged PII: %s left out", field);
    else gd_info("schema registry: %s-value tags field %s PII: personal data", pt->cfg->topics[pt->topic], field);
}

/* The source topics' fields the registry's schemas tag PII, one try each:
 * a registry that is down leaves builtin.sql's PII columns alone. */
static void read_pii_tags(const gd_config *cfg, gd_catalog *cat)
{
    gd_registry *reg;
    if (!cfg->schema_registry[0] || gd_registry_open(&reg, cfg->schema_registry, cfg->schema_registry_auth, &stop_requested))
        return;
    for (gd_topic t = 0; t < GD_TOPIC_COUNT; t++) {
        char subject[300];
        snprintf(subject, sizeof subject, "%s-value", cfg->topics[t]);
        pii_tagging pt = {cat, cfg, t};
        if (gd_registry_pii_fields(reg, subject, tag_pii, &pt)) { /* one wait at start is enough */
            gd_warn("schema registry: the %s schema's PII tags could not be read; builtin.sql's PII columns stand", subject);
            break;
        }
    }
    gd_registry_close(reg);
}

/* A stream keeps being produced this long after its last subscriber left,
 * so a client that reconnects meanwhile resumes without a gap. */
#define PUSH_LINGER_MS (5 * 60 * 1000)

static int serve(const gd_config *cfg)
{
    static shutdown_watch watch; /* lives as long as its detached thread */
    watch = (shutdown_watch){cfg->shutdown_timeout_ms, &stop_requested};
    start_shutdown_watch(&watch);
    gd_store store;
    gd_counters counters;
    memset(&counters, 0, sizeof counters);
    atomic_store(&counters.stream_time, INT64_MIN);
    static gd_catalog cat; /* outlives the threads that read it */
    gd_catalog_init(&cat, cfg->grace_ms);
    gd_sql_error err = {0};
    read_pii_tags(cfg, &cat);
    if (gd_sql_load_builtin(&cat, &err)) {
        gd_error("the built-in definitions do not compile: %s", err.message);
        return 1;
    }
    if (gd_store_open(&store, cfg->data_dir, cfg->map_size)) return 1;
    if (gd_sql_load_user(&cat, &store) || gd_store_open_tables(&store, &cat)) {
        gd_store_close(&store);
        return 1;
    }
    gd_source *src = NULL;
    if (!gd_store_instance_id(&store, counters.cluster.instance_id)) src = open_source(cfg, &counters);
    if (!src) {
        gd_store_close(&store);
        return 1;
    }
    raise_fd_limit();
    gd_engine *engine = NULL;
    gd_api *api = NULL;
    gd_hub *hub = NULL;
    int rc = gd_hub_open(&hub, GD_HUB_STREAMS, gd_query_hub(0), cfg->push_buffer, cfg->push_query_buffer, PUSH_LINGER_MS);
    if (!rc) rc = gd_engine_open(&engine, cfg, &store, &cat, src, &counters, hub, &stop_requested);
    gd_roster *roster = NULL;
    if (!rc) rc = gd_roster_start(&roster, cfg, &counters);
    counters.cluster.roster = roster;
    if (!rc) rc = gd_api_start(&api, cfg, &store, &cat, &counters, hub, &reloads_requested);
    if (!rc) {
        gd_info("gamingd %s serving on %s://%s:%d, source %s, data in %s", GD_VERSION, cfg->tls_cert[0] ? "https" : "http",
                cfg->listen_host, cfg->listen_port, src->kind, cfg->data_dir);
        rc = gd_engine_run(engine);
        if (rc) gd_error("ingest stopped on an error");
    }
    gd_api_stop(api);
    gd_roster_stop(roster);
    gd_engine_close(engine);
    gd_hub_close(hub);
    src->close(src);
    gd_store_close(&store);
    gd_catalog_free(&cat);
    if (rc == GD_AGAIN && atomic_load(&stop_requested)) rc = GD_OK; /* a wait the stop cut short */
    if (!rc) gd_info("stopped");
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "sql")) { /* its own arguments: none of the daemon's flags */
        curl_global_init(CURL_GLOBAL_DEFAULT);
        int status = gd_shell_main(argc - 1, argv + 1);
        curl_global_cleanup();
        return status;
    }
    gd_config cfg;
    int rc = gd_config_parse(&cfg, argc, argv);
    if (rc == GD_EOF) return 0;
    if (rc) return 2;
    install_signals();
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread: the registry client */
    int status = cfg.command == GD_CMD_GENERATE ? gd_generate(&cfg, &stop_requested) : serve(&cfg);
    curl_global_cleanup();
    gd_config_free(&cfg);
    return status;
}
