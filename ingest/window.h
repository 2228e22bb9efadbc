/* window.h -- inside the ingest layer: the reference tables held in memory
 * for the join, the hot windows of every windowed table, and enrichment.
 * Only the engine uses these. */
#ifndef GD_WINDOW_H
#define GD_WINDOW_H

#include "ingest.h"

/* A Confluent-framed Avro value into the fields of a row (avro.c); strings
 * are copied to scratch. *ts_seen: the GD_FT_TS field was present. */
int gd_avro_read(gd_avro_reader *r, gd_str value, const gd_fieldspec *fields, void *out, bool *ts_seen,
                 gd_arena *scratch, const char **why);

/* ---- reference tables (refs.c) ----
 * The latest games and players, by table key, each row one allocation. Rows
 * changed since the last commit are remembered and written at commit. */
typedef struct {
    gd_map games, players;           /* key -> row */
    gd_map dirty_games, dirty_players; /* keys changed this batch */
    const gd_tabledef *games_table, *players_table; /* where they are stored */
} gd_refs;

void gd_refs_init(gd_refs *r, const gd_catalog *cat);
void gd_refs_free(gd_refs *r);
const gd_game *gd_refs_game(const gd_refs *r, gd_str game_id);
const gd_player *gd_refs_player(const gd_refs *r, gd_str player_id);
void gd_refs_put_game(gd_refs *r, gd_str key, const gd_game *g);
void gd_refs_put_player(gd_refs *r, gd_str key, const gd_player *p);
void gd_refs_delete(gd_refs *r, gd_topic topic, gd_str key);
int gd_refs_load(gd_refs *r, gd_store *s, MDB_txn *txn);
int gd_refs_flush(gd_refs *r, gd_store *s, MDB_txn *txn, gd_buf *scratch);
/* The row as the API shows it, a JSON object. */
void gd_render_game(gd_str key, const gd_game *g, gd_buf *out);
/* A decoded source value as a JSON object, its fields in order. */
void gd_render_fields(const gd_fieldspec *fields, const void *row, gd_buf *out);
void gd_render_player(gd_str key, const gd_player *p, gd_buf *out);

/* ---- hot windows (window.c) ----
 * Every windowed table keeps its recent windows in memory: per window a map
 * of groups, each group the slots of tables.h, all in the window's arena. A
 * record updates the groups it belongs to and marks them dirty; the commit
 * writes dirty groups to LMDB. A window leaves memory, once written, when it
 * is past its grace or GD_HOT_MS past its end; a record that still belongs to
 * it later (within its grace) reads its group back from LMDB. */
#define GD_HOT_MS (15 * 60 * 1000)
typedef struct gd_hot_group gd_hot_group;
typedef struct gd_hot_window gd_hot_window;

typedef struct {
    const gd_tabledef *def; /* NULL: a slot this instance does not maintain */
    int64_t grace_ms;
    bool reads_figures;     /* gd_table_reads_figures */
    gd_hot_window *windows; /* newest first */
    int64_t newest_start;   /* no window after it has rows in the store */
    gd_hot_group *dirty;    /* list of groups to write */
    size_t dirty_count;
    int64_t final_through;  /* EMIT FINAL: windows starting up to here were published */
    int64_t expired_before; /* windows starting before it are past retention: not written (gd_windows_expire) */
    uint64_t final_id;      /* EMIT FINAL: the id of the last row published */
    /* SESSION tables keep sessions instead of windows (store/tables.h): */
    gd_map sessions;            /* group key -> its sessions, those that may still change */
    gd_session *dirty_sessions; /* to write (merged ones: to free) */
    gd_buf gone_rows;           /* row keys of sessions merged or moved: deleted first at the flush */
    int64_t oldest_open;        /* the earliest start of a session in memory: not purged */
} gd_hot_table;

/* Where the enriched record's figures come from (SPEC §4): a table and a
 * column, bound by name. */
typedef struct {
    const char *table, *column;
    int slot, col; /* -1: not maintained here */
} gd_figure;
enum { GD_FIG_SESSIONS, GD_FIG_AVG_SCORE, GD_FIG_ACTIVE_PLAYERS, GD_FIG_COUNT };

typedef struct {
    gd_hot_table tables[GD_MAX_TABLES]; /* by catalog slot */
    const gd_catalog *cat;
    int64_t retention_ms;
    gd_figure figures[GD_FIG_COUNT];
    gd_dict dict; /* the values of every distinct set */
    gd_interner interner;
    gd_push_sink *push; /* rows are pushed here after each change, or NULL */
    bool purge_pending; /* the last flush left expired rows to purge */
    _Atomic size_t dirty_rows; /* groups to write at the next flush, all tables */
    gd_buf key, row, sets, text; /* scratch */
    gd_buf order;                /* a table's dirty groups (pointers) in key order: scratch of the flush */
    gd_arena scratch;            /* per record: strings expressions make */
    gd_slot figure_slots[GD_MAX_COLS]; /* see gd_windows_apply */
} gd_windows;

/* The aggregating tables in mask (bit per catalog slot) are maintained by
 * this instance; tables can be split between instances on two threads. A
 * table whose persistent query was terminated is not maintained. */
#define GD_ALL_TABLES UINT64_MAX
void gd_windows_init(gd_windows *w, const gd_config *cfg, const gd_catalog *cat, uint64_t mask);
/* The tables whose rows feed the enriched record's figures. */
uint64_t gd_windows_figure_tables(const gd_catalog *cat);
/* Whether any enriched field table def reads from a record (its keys',
 * WHERE's and aggregates') passes reads, which may also just note each one
 * and say false. */
bool gd_table_reads_any(const gd_tabledef *def, bool (*reads)(gd_field f, void *ctx), void *ctx);
/* Whether def reads a figure: it must be applied after the figures' tables. */
bool gd_table_reads_figures(const gd_tabledef *def);
/* A table created (or loaded) while running: maintained from the next
 * record on, its open windows read from the store (txn). */
int gd_windows_add(gd_windows *w, const gd_tabledef *def, gd_store *s, MDB_txn *txn, int64_t stream_time);
/* A table dropped or terminated: its windows leave memory unwritten. */
void gd_windows_remove(gd_windows *w, unsigned slot);
bool gd_windows_maintains(const gd_windows *w, unsigned slot);
void gd_windows_free(gd_windows *w);
/* Loads every window still open at stream_time from the store. */
int gd_windows_load(gd_windows *w, gd_store *s, MDB_txn *txn, int64_t stream_time);
/* After rows were written to the store by others (partitioned mode): every
 * window up to the newest stored one may have groups memory lacks, so
 * they are read from the store when first touched. */
int gd_windows_note_stored(gd_windows *w, gd_store *s, MDB_txn *txn);
/* Applies an enriched record to every table it belongs to (stream_time
 * already includes it). Fills e's window figures from the hourly player/game
 * stats and 5-minute active players rows; for a late record, from the rows as
 * they stand. Groups of windows that have left memory are read from txn (the
 * write transaction, or a read transaction that sees the commit before the
 * last flush at least: a window leaves memory at the flush after the one
 * that last wrote it).
 * Returns true when the record was late for some table. */
bool gd_windows_apply(gd_windows *w, gd_enriched *e, int64_t stream_time, gd_store *s,
                      MDB_txn *txn);
/* Whether e is late for a table of w it belongs to. Reads only what
 * changes between drains (the definitions), so the engine may ask about
 * the worker's instance while the worker runs; scratch: the caller's.
 * figures_known false: e's figures are worked out later (on the worker),
 * and tables whose WHERE reads them are left to gd_windows_apply. */
bool gd_windows_late(const gd_windows *w, const gd_enriched *e, int64_t stream_time, gd_arena *scratch,
                     bool figures_known);
/* Writes dirty groups, publishes the rows of an EMIT FINAL table's windows
 * that closed, evicts closed windows and purges expired ones (per table, a
 * bounded number of rows more than it wrote; purge_pending tells when more
 * remain).
 * Retention counts from the earlier of stream_time and now_ms. */
int gd_windows_flush(gd_windows *w, gd_store *s, MDB_txn *txn, int64_t stream_time, int64_t now_ms);
/* The first step of a flush (which calls it itself): which windows are
 * closed and past retention, so that their dirty groups are dropped, not
 * written: the flush would purge them again at once. A catch-up commit that
 * carries more event time than the retention would otherwise write rows
 * only to delete them, and the file would keep the pages they took (LMDB
 * reuses a page freed in a transaction only for that transaction's later
 * writes). An EMIT FINAL table's are written: they are published from the
 * store as they close. */
void gd_windows_expire(gd_windows *w, int64_t stream_time, int64_t now_ms);
/* A row as stored: its key, its row, its distinct sets (p NULL: none to
 * write -- the table has none, or the store holds them as they stand). A
 * non-zero return stops the emitting and is returned. */
typedef int gd_row_emit(void *ctx, const gd_tabledef *def, gd_str key, gd_str row, gd_str sets);
/* Encodes the rows of the dirty groups (not sessions', not those of
 * windows gd_windows_expire found expired) in key order, each table's after
 * the other, to emit, which writes them
 * (gd_windows_store_row): the flush that follows writes only what changed
 * since. Lets a thread encode rows while the writer puts them (worker.c). */
int gd_windows_emit_dirty(gd_windows *w, gd_row_emit *emit, void *ctx);
/* An emitted row into the store through wr (a key too long for LMDB is
 * warned of and kept in memory only). */
int gd_windows_store_row(gd_store *s, gd_store_writer *wr, const gd_tabledef *def, gd_str key, gd_str row,
                         gd_str sets);
size_t gd_windows_memory(const gd_windows *w);
/* The group key of e in table def into key (text, scratch: the caller's
 * scratch); false when e does not go into def (WHERE, a null key). */
bool gd_table_group_key(const gd_tabledef *def, const gd_enriched *e, gd_arena *scratch, gd_buf *key, gd_buf *text);

/* ---- an enriched record out (emit.c) ----
 * Once its figures are in, an enriched record goes to the streams derived
 * from it, the enriched push stream, the output file and (produce) the
 * output topic. The thread applying the figures' tables does this. */
typedef struct {
    const gd_catalog_entry *entries[GD_MAX_STREAMS];
    int n;
} gd_derived_list;
typedef struct {
    gd_push_sink *push;
    const gd_derived_list *derived; /* the engine's, changed only while every worker is drained */
    gd_output *out;                 /* the output topic, or NULL */
    FILE *file;                     /* the output file, or NULL */
    const char *file_path;
    gd_buf lines;                   /* the file's lines not written yet */
    gd_buf tmp;
    gd_arena scratch;               /* per record */
    bool failed;                    /* producing or writing failed: the run ends uncommitted */
} gd_emitter;
void gd_emitter_init(gd_emitter *em, gd_push_sink *push, const gd_derived_list *derived, gd_output *out, FILE *file,
                     const char *file_path);
void gd_emitter_free(gd_emitter *em);
void gd_emit_enriched(gd_emitter *em, const gd_enriched *en, bool produce);
/* Writes the lines gathered to the file (a commit's first). */
int gd_emitter_write_lines(gd_emitter *em);
/* A record of a stream of kind base (ctx reads it) to the derived streams
 * over it that someone listens to; tmp: the caller's. */
void gd_publish_derived(gd_push_sink *push, const gd_derived_list *derived, gd_buf *tmp, gd_stream_kind base,
                        const gd_eval *ctx, uint64_t id);

/* ---- more cores (worker.c) ----
 * Worker threads apply records to gd_windows instances of their own (the
 * tables the engine hands each), so the table work of one record runs on
 * several cores. Worker 0 also produces each record to the output topic
 * when given an output, or sends it out entirely when given an emitter.
 * Records are copied once into a ring every worker reads and handed over in
 * batches; the engine never waits for the workers except when the ring is
 * full and before it touches their tables or emitter itself or flushes the
 * producer (commit), when it drains the ring. */
typedef struct gd_workers gd_workers;
/* count workers, worker i keeping windows[i]. Each reads groups that left
 * memory through its own read transaction of store, renewed at every
 * drain. output: where worker 0 sends each record it applied
 * (gd_output_enriched without JSON), or NULL; emit: where it sends each
 * record out once applied (its tables then include the figures'), or NULL.
 * On failure *out may still need gd_workers_stop. */
int gd_workers_start(gd_workers **out, gd_windows *const *windows, int count, gd_store *store, gd_output *output,
                     gd_emitter *emit);
/* Queues e; false when e's strings do not fit a ring slot (the caller then
 * drains and applies e itself). late: the caller counted e late already. */
bool gd_workers_push(gd_workers *g, const gd_enriched *e, int64_t stream_time, bool late);
/* Records late only for tables reading the figures, which the worker that
 * works the figures out found (the caller could not tell, gd_windows_late),
 * since the last call: with the workers drained. */
uint64_t gd_workers_take_late(gd_workers *g);
/* Hands over the records queued so far (they otherwise wait for a batch
 * to fill): for an engine with nothing to read. */
void gd_workers_flush(gd_workers *g);
/* Returns once every queued record is applied; until the next push the
 * caller may use the workers' gd_windows and emitter. */
void gd_workers_drain(gd_workers *g);
/* The rows of every dirty group (not sessions') into the store, the
 * workers drained: each worker encodes its own into chunks of bounded
 * memory while the caller encodes and writes those of own (its nown
 * gd_windows), writing the workers' chunks as they come; so a commit's
 * encoding runs on every core. */
int gd_workers_write_dirty(gd_workers *g, gd_windows *const *own, int nown, MDB_txn *txn);
/* Whether producing a record failed (the run should end uncommitted). */
bool gd_workers_failed(const gd_workers *g);
/* After a commit (the workers drained): let the workers see it. */
int gd_workers_renew(gd_workers *g);
/* Drains and ends them; g may be NULL. */
void gd_workers_stop(gd_workers *g);

/* ---- enrichment (enrich.c) ---- */
void gd_enrich(gd_enriched *e, const gd_activity *a, const gd_refs *refs, int64_t now_ms);
/* The same with the rows the join found (NULL: none), as a route record
 * carries them. */
void gd_enrich_with(gd_enriched *e, const gd_activity *a, const gd_game *game, const gd_player *player, int64_t now_ms);
/* The enriched record as one JSON object (SPEC §7 field order). */
void gd_render_enriched(const gd_enriched *e, gd_buf *out);

/* ---- partitioned mode (route.c) ----
 * Route 0 is keyed by game_id and carries every record: the tables grouping
 * by game_id, the figures, the enriched output. Each other table has a route
 * keyed by its group key, carrying the records that go into it. A route's
 * records carry only the source fields its readers read (its fields). */
/* A changelog record names its producer: the instance id, then 8 hex digits
 * new at every start -- rows a run wrote and never marked stay unapplied
 * when the instance starts again. */
enum { GD_INSTANCE_ID_LEN = 16, GD_PRODUCER_LEN = GD_INSTANCE_ID_LEN + 8 };
typedef struct {
    char topic[300];
    uint64_t tables;               /* the catalog slots kept from its records */
    const gd_tabledef *keyed_by;   /* NULL: game_id */
    uint32_t fields;               /* the source fields its records carry (route.c) */
    bool made_by_user;             /* a user's table's (made while running or since): gd_changelog_base */
} gd_route;
typedef struct {
    gd_route r[GD_MAX_ROUTES];
    int n;
    char changelog[300];
} gd_routes;
int gd_routes_plan(gd_routes *rt, const gd_config *cfg, const gd_catalog *cat);
/* The route whose topic is this, or -1. */
int gd_routes_find(const gd_routes *rt, gd_str topic);
/* Whether a table made while running fits route 0: it groups by game_id,
 * so the route that carries every record serves it. */
bool gd_routes_fit(const gd_tabledef *def);
/* The topic of the route of table `table` (of route 0: table "game_id"). */
void gd_route_topic(const gd_config *cfg, const char *table, char *out, size_t n);
/* A route for table e, made while running, which does not fit route 0: a
 * new one, or the idle route of a table of the same name dropped before.
 * Its number, or -1 when there is none for it (gd_routes_room). */
int gd_routes_add(gd_routes *rt, const gd_config *cfg, const gd_catalog_entry *e);
/* Whether gd_routes_add would find a route for a table of that name: not
 * when all GD_MAX_ROUTES are taken, nor when its name's is another's. */
bool gd_routes_room(const gd_routes *rt, const gd_config *cfg, const char *table);
/* Table `slot` dropped: no route keeps it any more; a route of its own
 * stays, idle, its topic still read, until the instance restarts. */
void gd_routes_drop_table(gd_routes *rt, unsigned slot);
/* Where the tasks of route r start in the changelog (route_partitions: the
 * routes' partition counts): the built-in tables' routes one after another,
 * route 0's first; a user's table's route where its topic's name hashes, so
 * that every instance places it alike whenever it learnt of it. */
int32_t gd_changelog_base(const gd_routes *rt, const int32_t *route_partitions, int r, int32_t changelog_partitions);
/* The Kafka key of e on route r; false: e does not travel on r. */
bool gd_route_key(const gd_route *r, const gd_enriched *e, gd_arena *scratch, gd_buf *key, gd_buf *text);
/* The route that carries table def's records, or -1 (not kept through a route). */
int gd_routes_of_table(const gd_routes *rt, const gd_tabledef *def);
/* The same key from a row of def (its LMDB key) that route r fills: the
 * records of the row's group come on the partition it picks, so the row
 * belongs to that partition's task. false: not such a row. */
bool gd_route_row_key(const gd_route *r, const gd_tabledef *def, gd_str row_key, gd_buf *key);

typedef struct {
    gd_activity a;
    gd_game game;
    gd_player player;
    bool has_game, has_player;
    int64_t processing_timestamp;
    int32_t src_partition;
    int64_t src_offset;
    uint32_t fields; /* those carried; the others are NULL */
} gd_route_record;
/* e as a route record carrying fields (a gd_route's) into b (cleared first). */
void gd_route_encode(gd_buf *b, const gd_enriched *e, uint32_t fields, int32_t src_partition, int64_t src_offset);
/* The record's strings point into in. */
int gd_route_decode(gd_str in, gd_route_record *out);

/* A route's Kafka message: a batch of the records of one route partition,
 * whatever their keys (route.c). record appended to batch (its magic first
 * when empty). */
void gd_route_batch_add(gd_buf *batch, gd_str record);
typedef struct {
    gd_str rest;
    bool batch;
} gd_route_reader;
/* Reads message: a batch, or one record alone as gamingd wrote before. */
void gd_route_reader_init(gd_route_reader *r, gd_str message);
/* The message's next record (pointing into it): GD_OK; GD_EOF past its
 * last; GD_ERR where its framing is broken, and GD_EOF from then on. */
int gd_route_reader_next(gd_route_reader *r, gd_str *record);

/* CREATE: a table or stream made on one instance, for the others (table:
 * its name, key: "T" or "S" then 8 hex digits numbering the change among
 * its producer's, value: the statement); DROP and TERMINATE likewise, with
 * no statement. A change goes to every changelog partition; the number
 * tells its copies apart from another change (a key of "T" or "S" alone:
 * a gamingd from before numbers, each copy applied). */
typedef enum {
    GD_CL_ROW = 'R',
    GD_CL_SETS = 'S',
    GD_CL_DELETE = 'D',
    GD_CL_MARK = 'M',
    GD_CL_CREATE = 'C',
    GD_CL_DROP = 'X',
    GD_CL_TERMINATE = 'T'
} gd_changelog_kind;
typedef struct {
    gd_str producer; /* GD_PRODUCER_LEN: instance id and run */
    gd_changelog_kind kind;
    gd_str table, key, value; /* a mark: value holds its position lines */
} gd_changelog_record;
void gd_changelog_encode(gd_buf *b, const char *producer, gd_changelog_kind kind, const char *table, gd_str key,
                         gd_str value);
int gd_changelog_decode(gd_str in, gd_changelog_record *out);

#endif
