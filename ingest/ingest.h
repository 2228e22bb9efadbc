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
typedef struct gd_source gd_source;
struct gd_source {
    const char *kind;
    const char *identity; /* which data: "generator", "file:/abs/path" */
    bool endless; /* live data with no end to catch up to (the generator) */
    /* GD_OK with *rec filled (spans valid until the next call), GD_AGAIN when
     * nothing is ready now, GD_EOF when the source is finished, GD_EBADREC
     * for a record it cannot even frame (rec->topic set where known). */
    int (*next)(gd_source *src, gd_record *rec);
    /* The position after the last record returned. */
    void (*position)(gd_source *src, gd_buf *out);
    int (*seek)(gd_source *src, gd_str position);
    void (*close)(gd_source *src);
    const char *error; /* why the last GD_EBADREC */
};

gd_source *gd_file_source_open(const gd_config *cfg, const char *path);
gd_source *gd_generator_source_open(const gd_config *cfg);

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
uint64_t gd_generator_count(const gd_generator *g);
void gd_generator_free(gd_generator *g);
/* gamingd generate --out FILE: returns a process exit code. */
int gd_generate_file(const gd_config *cfg);

/* ---- the enriched record ----
 * Its fields in output order (schemas/gaming_intelligence.avsc): the data
 * product's 16, then the further enriched ones. */
typedef struct {
    const char *name;
    const char *json_key; /* "\"name\":" */
    size_t json_key_len;
    gd_field field;
} gd_output_field;
extern const gd_output_field gd_output_fields[];
extern const size_t gd_output_field_count;

/* ---- push streams (server/hub.h) ----
 * Stream 0 carries the enriched records, stream 1 + i the rows of
 * gd_tables[i] after each change. Ids: an enriched record's seq for it and
 * for the table rows it changed; a reference row's change, the number of
 * records read from its topic. */
enum { GD_STREAM_ENRICHED = 0 };
#define GD_ENRICHED_STREAM_NAME "gaming_real_time_intelligence_platform"
static inline unsigned gd_table_stream(size_t table_index) { return 1u + (unsigned)table_index; }
static inline unsigned gd_stream_count(void) { return 1u + (unsigned)gd_table_count; }
/* NULL past the last stream. */
const char *gd_stream_name(unsigned stream);

/* ---- decoding (JSON values; Avro comes with the Kafka source) ---- */
int gd_decode_activity(gd_str value, gd_arena *scratch, gd_activity *out, const char **why);
int gd_decode_game(gd_str value, gd_arena *scratch, gd_game *out, const char **why);
int gd_decode_player(gd_str value, gd_arena *scratch, gd_player *out, const char **why);

/* ---- counters, read by the HTTP threads ---- */
typedef struct {
    _Atomic uint64_t records_in[GD_TOPIC_COUNT + 1];
    _Atomic uint64_t bad_records[GD_TOPIC_COUNT + 1];
    _Atomic uint64_t late_records;
    _Atomic uint64_t records_out;
    _Atomic uint64_t with_game;   /* enriched records that found their game */
    _Atomic uint64_t with_player; /* ... and their player */
    _Atomic uint64_t batches;
    _Atomic int64_t last_lag_ms;  /* processing - event time of the last record */
    _Atomic int64_t stream_time;
    _Atomic uint64_t hot_window_bytes; /* open windows held in memory */
    _Atomic uint64_t ingest_rate;      /* records/s over the last second or more */
    _Atomic bool ready;           /* store open and source caught up */
} gd_counters;

/* ---- the engine ---- */
typedef struct gd_engine gd_engine;
/* hub: where changes are pushed, or NULL. */
int gd_engine_open(gd_engine **out, const gd_config *cfg, gd_store *store, gd_source *src,
                   gd_counters *counters, gd_hub *hub);
/* Runs until *stop is set or the source fails; commits before returning. */
int gd_engine_run(gd_engine *e, const atomic_bool *stop);
void gd_engine_close(gd_engine *e);

#endif
