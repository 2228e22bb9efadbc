/* generate.c -- `gamingd generate`: the generator's records, as fast as they
 * can be written, to a file (JSON lines, a tenth of them as kcat -J
 * envelopes, the two forms the file source reads) or to the three Kafka
 * topics (--brokers), with values in JSON or, with --format avro, in Avro
 * under the schemas of schemas/gaming_*.avsc registered as `<topic>-value`.
 * The deliberately malformed records stay as they are in every format: they
 * are what the dead-letter topics are for. */
#include <stdio.h>
#include <string.h>

#include "window.h"

enum { SOURCE_PARTITIONS = 6 };

typedef struct {
    const gd_config *cfg;
    FILE *file;
    gd_kafka_sink *sink;
    gd_avro_writer *writer[GD_TOPIC_COUNT]; /* --format avro */
    int32_t schema_id[GD_TOPIC_COUNT];
    gd_buf line, avro;
    gd_arena scratch;
    uint64_t offsets[GD_TOPIC_COUNT];
    int64_t start_ms;
    const atomic_bool *stop;
} generate_target;

static const gd_fieldspec *const topic_fields[GD_TOPIC_COUNT] = {gd_game_fields, gd_player_fields,
                                                                  gd_activity_fields};
static const char *const topic_schemas[GD_TOPIC_COUNT] = {gd_schema_gaming_games, gd_schema_gaming_players,
                                                          gd_schema_gaming_player_activity};

static void write_file_line(generate_target *t, gd_topic topic, gd_str key, gd_str v, uint64_t n)
{
    gd_buf *line = &t->line;
    bool kcat = (n % 10) == 3; /* a tenth as kcat -J envelopes */
    gd_buf_clear(line);
    gd_buf_puts(line, "{\"topic\":");
    gd_json_put_cstr(line, t->cfg->topics[topic]);
    if (kcat)
        gd_buf_printf(line, ",\"partition\":0,\"offset\":%llu,\"tstype\":\"create\",\"ts\":%lld,\"broker\":1",
                      (unsigned long long)t->offsets[topic], (long long)t->start_ms);
    gd_buf_puts(line, ",\"key\":");
    gd_json_put_str(line, key);
    gd_buf_puts(line, kcat ? ",\"payload\":" : ",\"value\":");
    if (!v.p) gd_buf_puts(line, "null");
    else if (kcat) gd_json_put_str(line, v);
    else gd_buf_put(line, v.p, v.len);
    gd_buf_puts(line, "}\n");
    t->offsets[topic]++;
    fwrite(line->p, 1, line->len, t->file);
}

/* The JSON value re-encoded as Avro; a value that does not decode (a
 * deliberately bad one) stays as it is. */
static gd_str as_avro(generate_target *t, gd_topic topic, gd_str json)
{
    union {
        gd_game g;
        gd_player p;
        gd_activity a;
    } row;
    const char *why;
    gd_arena_reset(&t->scratch);
    int rc = topic == GD_TOPIC_GAMES     ? gd_decode_game(NULL, json, &t->scratch, &row.g, &why)
             : topic == GD_TOPIC_PLAYERS ? gd_decode_player(NULL, json, &t->scratch, &row.p, &why)
                                         : gd_decode_activity(NULL, json, &t->scratch, &row.a, &why);
    if (rc) return json;
    gd_value values[16];
    const gd_fieldspec *fs = topic_fields[topic];
    for (int i = 0; fs[i].name; i++) values[i] = gd_fieldspec_value(&fs[i], &row);
    gd_buf_clear(&t->avro);
    if (gd_avro_write(t->writer[topic], t->schema_id[topic], values, &t->avro)) return json;
    return (gd_str){t->avro.p, (uint32_t)t->avro.len};
}

static int open_avro(generate_target *t, gd_registry *registry)
{
    for (int topic = 0; topic < GD_TOPIC_COUNT; topic++) {
        const char *names[16];
        int n = 0;
        for (const gd_fieldspec *f = topic_fields[topic]; f->name; f++) names[n++] = f->name;
        char subject[300];
        snprintf(subject, sizeof subject, "%s-value", t->cfg->topics[topic]);
        if (gd_avro_writer_new(&t->writer[topic], topic_schemas[topic], names, (size_t)n) ||
            gd_registry_register(registry, subject, topic_schemas[topic], &t->schema_id[topic])) {
            gd_error("generate: cannot register the schema of %s", subject);
            return GD_ERR;
        }
    }
    return GD_OK;
}

static int open_target(generate_target *t, gd_registry **registry, const atomic_bool *stop)
{
    const gd_config *cfg = t->cfg;
    if (!cfg->brokers[0]) {
        t->file = fopen(cfg->out_path, "w");
        if (!t->file) gd_error("generate: %s: cannot open for writing", cfg->out_path);
        return t->file ? GD_OK : GD_ERR;
    }
    bool avro = !strcmp(cfg->generate_format, "avro");
    if (avro && !cfg->schema_registry[0]) {
        gd_error("generate --format avro needs --schema-registry URL");
        return GD_ERR;
    }
    int rc = gd_kafka_sink_open(&t->sink, cfg, NULL, stop);
    for (int topic = 0; !rc && topic < GD_TOPIC_COUNT; topic++)
        gd_kafka_sink_ensure_topic(t->sink, cfg->topics[topic], SOURCE_PARTITIONS, 0, NULL);
    if (!rc && avro) rc = gd_registry_open(registry, cfg->schema_registry, cfg->schema_registry_auth, stop);
    if (!rc && avro) rc = open_avro(t, *registry);
    return rc;
}

static int close_target(generate_target *t, int rc)
{
    if (t->file && fclose(t->file) && !rc) {
        gd_error("generate: %s: write failed", t->cfg->out_path);
        rc = GD_ERR;
    }
    if (t->sink && !rc) {
        while ((rc = gd_kafka_sink_flush(t->sink, 1000)) == GD_AGAIN && !atomic_load(t->stop))
            gd_info("generate: waiting for the brokers");
    }
    gd_kafka_sink_close(t->sink);
    for (int topic = 0; topic < GD_TOPIC_COUNT; topic++) gd_avro_writer_free(t->writer[topic]);
    gd_buf_free(&t->line);
    gd_buf_free(&t->avro);
    gd_arena_free(&t->scratch);
    return rc;
}

int gd_generate(const gd_config *cfg, const atomic_bool *stop)
{
    generate_target t = {.cfg = cfg, .stop = stop};
    gd_arena_init(&t.scratch);
    int64_t span = (int64_t)((double)cfg->events * 1000.0 / cfg->rate);
    gd_generator_opts o = {.seed = cfg->seed, .rate = cfg->rate, .bad_ratio = 0.0005,
                           .start_ms = cfg->start_ms >= 0 ? cfg->start_ms : gd_now_ms() - span};
    t.start_ms = o.start_ms;
    gd_registry *registry = NULL;
    int rc = open_target(&t, &registry, stop);
    gd_generator *g = rc ? NULL : gd_generator_new(&o);
    gd_buf key = {0}, val = {0};
    while (g && !rc && gd_generator_activities(g) < cfg->events && !atomic_load(stop)) {
        gd_topic topic;
        uint64_t n = gd_generator_count(g);
        bool present = gd_generator_next(g, &topic, &key, &val);
        gd_str k = {key.p, (uint32_t)key.len}, v = present ? (gd_str){val.p, (uint32_t)val.len} : GD_STR_NULL;
        if (t.file) write_file_line(&t, topic, k, v, n);
        else rc = gd_kafka_sink_produce(t.sink, cfg->topics[topic], k,
                                        t.writer[topic] && v.p ? as_avro(&t, topic, v) : v, NULL);
    }
    if (g && !rc) gd_info("generate: %llu records, %llu of them activity", (unsigned long long)gd_generator_count(g),
                         (unsigned long long)gd_generator_activities(g));
    gd_buf_free(&key);
    gd_buf_free(&val);
    gd_generator_free(g);
    rc = close_target(&t, rc);
    gd_registry_close(registry);
    return rc ? 1 : 0;
}
