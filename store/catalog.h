/* catalog.h -- every table and stream gamingd knows, built in or user-made:
 * the single source of truth for what the engine maintains, what the API
 * lists and what SQL can name.
 *
 * An entry is a table (a gd_tabledef the engine maintains, or a reference
 * table) or a stream (the enriched records, a source topic's records, or a
 * stream derived by CREATE STREAM AS SELECT). Entries sit in fixed slots:
 * a slot gives a table its hot windows in the engine and each entry its
 * push stream in the hub (the numbering below).
 *
 * Threads: the ingest thread alone adds and removes entries at run time --
 * DDL reaches it as a command (gd_catalog_submit) and is applied between
 * two batches, in the batch's write transaction, so a table and its LMDB
 * databases appear together after the commit. Any thread reads: slots are
 * atomic pointers, and an entry, once published, never changes and is
 * never freed while the daemon runs (a dropped one is retired: a reader
 * that still holds it reads its emptied databases).
 *
 * A user's stored definition that no longer compiles at start (or finds
 * no slot) is quarantined rather than left out or fatal: an entry with its
 * error and no definition, in a list of its own -- no slot, so nothing
 * maintains, streams or queries it -- kept in the store, listed with its
 * error, its name taken, until DROP removes it and its databases. The
 * daemon starts whatever its store holds. */
#ifndef GD_CATALOG_H
#define GD_CATALOG_H

#include <pthread.h>
#include <stdatomic.h>

#include "tables.h"

enum {
    GD_MAX_TABLES = 64,
    GD_MAX_STREAMS = 32,
    GD_MAX_QUERY_STREAMS = 8192, /* push queries running at once (distinct ones, filtered subscriptions too) */
    GD_HUB_STREAMS = GD_MAX_STREAMS + GD_MAX_TABLES + GD_MAX_QUERY_STREAMS,
    GD_MAX_PII_TAGS = 64,
    GD_MAX_QUARANTINED = GD_MAX_TABLES + GD_MAX_STREAMS,
};

/* Hub stream numbers: streams by slot, then tables, then push queries. */
static inline unsigned gd_stream_hub(unsigned slot) { return slot; }
static inline unsigned gd_table_hub(unsigned slot) { return GD_MAX_STREAMS + slot; }
static inline unsigned gd_query_hub(unsigned q) { return GD_MAX_STREAMS + GD_MAX_TABLES + q; }

/* The built-in streams' slots. */
enum { GD_STREAM_ENRICHED = 0, GD_STREAM_ACTIVITY, GD_STREAM_GAMES, GD_STREAM_PLAYERS, GD_STREAM_BUILTIN_COUNT };

typedef enum {
    GD_SRC_ENRICHED, /* enriched records (ingest's join, SPEC §4) */
    GD_SRC_ACTIVITY, /* a source topic's records as decoded */
    GD_SRC_GAMES,
    GD_SRC_PLAYERS,
    GD_SRC_DERIVED,  /* CREATE STREAM AS SELECT over another stream */
} gd_stream_kind;

/* A column of a stream: its name, type, and id in the stream's rows (for
 * the enriched records and activity, a gd_field; for the reference
 * topics, the field's place in the decoder's list; derived, its place). */
typedef struct {
    const char *name;
    gd_coltype type;
    int id;
    gd_pii pii; /* personal data (PII in builtin.sql, or computed from such a column) */
} gd_column;

typedef struct gd_catalog_entry gd_catalog_entry;
struct gd_catalog_entry {
    const char *name; /* lower case */
    bool is_table;
    bool builtin;
    unsigned slot;
    uint64_t uid;    /* 0 when built in; else its creation number (names its databases) */
    const char *sql; /* the statement that defined it */
    bool sql_personal; /* it decides on personal data: its literals may be some (shown masked) */
    const char *topic; /* the Kafka topic it stands for, or NULL */
    const char *reads; /* the table or stream its statement reads (by name), or NULL */
    _Atomic bool terminated; /* its persistent query was terminated: no longer maintained */
    const char *error; /* quarantined: why its stored definition did not compile (nothing below is set) */
    gd_arena arena;  /* what the definition points to */
    /* tables */
    gd_tabledef *table;
    /* streams */
    gd_stream_kind kind;
    int ncols;
    gd_column *cols;
    int nkeys; /* derived: cols[0..nkeys) are its key columns (PARTITION BY) */
    int width; /* values in a row: 1 + the largest column id */
    const gd_catalog_entry *base; /* derived: what it reads (never itself derived) */
    gd_expr *where;               /* derived: over base's rows, or NULL */
    gd_expr **proj;               /* derived: column i over base's rows */
    gd_catalog_entry *next_retired;
};

/* A change for the ingest thread to apply. */
typedef enum { GD_CMD_CREATE, GD_CMD_DROP, GD_CMD_TERMINATE } gd_cmd_op;
typedef struct gd_catalog_cmd gd_catalog_cmd;

typedef struct gd_catalog gd_catalog;
/* A statement (CREATE TABLE|STREAM ... AS SELECT) into an entry, not added;
 * NULL, and why in why[why_len], when it does not compile. */
typedef gd_catalog_entry *(*gd_catalog_compile_fn)(gd_catalog *c, bool is_table, gd_str sql, char *why,
                                                   size_t why_len);
struct gd_catalog {
    _Atomic(gd_catalog_entry *) tables[GD_MAX_TABLES];
    _Atomic(gd_catalog_entry *) streams[GD_MAX_STREAMS];
    _Atomic(gd_catalog_entry *) quarantined[GD_MAX_QUARANTINED];
    _Atomic unsigned version; /* moves with every change */
    pthread_mutex_t lock;     /* the command queue, retired entries, slot choice */
    pthread_cond_t applied;
    gd_catalog_cmd *queue;
    _Atomic bool has_commands;
    gd_catalog_entry *retired;
    uint64_t next_uid;
    int64_t grace_ms; /* --grace; -1: ksqlDB's default (window + grace = 24 h) */
    /* set by the SQL layer (gd_sql_load_builtin), which the layers below
     * may not call directly: for definitions other instances made
     * (partitioned mode) */
    gd_catalog_compile_fn compile;
    /* source fields the topics' schemas in the registry tag PII
     * ("confluent:tags"), read at start before builtin.sql compiles */
    struct {
        gd_topic topic;
        char field[64];
    } pii_tags[GD_MAX_PII_TAGS];
    int npii_tags;
};

void gd_catalog_init(gd_catalog *c, int64_t grace_ms);
void gd_catalog_free(gd_catalog *c);

/* An entry to be filled by the planner (arena ready, slot unset). */
gd_catalog_entry *gd_catalog_entry_new(void);
void gd_catalog_entry_free(gd_catalog_entry *e);

/* Puts e in a free slot: GD_OK, or GD_ERR when the name is taken or no
 * slot is free (why in *why). Ingest thread (or before it starts). */
int gd_catalog_add(gd_catalog *c, gd_catalog_entry *e, const char **why);
/* Takes e out of its slot (or the quarantine) and keeps it until
 * gd_catalog_free. */
void gd_catalog_remove(gd_catalog *c, gd_catalog_entry *e);
/* A stored definition that did not compile at start, as an entry (name,
 * uid, is_table, terminated, sql; error set) put in quarantine; GD_ERR when
 * there is no room. Before the ingest thread starts. */
int gd_catalog_quarantine(gd_catalog *c, gd_catalog_entry *e);
/* The quarantined entry at i (< GD_MAX_QUARANTINED), or NULL; any thread. */
const gd_catalog_entry *gd_catalog_quarantined(const gd_catalog *c, unsigned i);
/* The quarantined entry of that name, or NULL. */
const gd_catalog_entry *gd_catalog_find_quarantined(const gd_catalog *c, gd_str name);
/* Whether a table or stream, quarantined or not, has that name. */
bool gd_catalog_name_taken(const gd_catalog *c, gd_str name);

/* Lookups, any thread. find: a table or stream by name, case-insensitive. */
const gd_catalog_entry *gd_catalog_find(const gd_catalog *c, gd_str name);
const gd_catalog_entry *gd_catalog_table(const gd_catalog *c, unsigned slot);
const gd_catalog_entry *gd_catalog_stream(const gd_catalog *c, unsigned slot);
const gd_tabledef *gd_catalog_tabledef(const gd_catalog *c, gd_str name);
/* The reference table of kind GD_TABLE_GAMES or GD_TABLE_PLAYERS. */
const gd_tabledef *gd_catalog_reference(const gd_catalog *c, gd_table_kind kind);
/* Source field `field` of topic is personal data, as the topic's schema in
 * the registry tags it; before gd_sql_load_builtin (which reads the tags
 * with gd_catalog_tagged_pii). GD_ERR when the table of tags is full. */
int gd_catalog_tag_pii(gd_catalog *c, gd_topic topic, const char *field);
bool gd_catalog_tagged_pii(const gd_catalog *c, gd_topic topic, const char *field);

/* A use of personal data to decide something (filter, compare, group,
 * order): the column used, as the request named it, and how. */
typedef struct {
    const char *column; /* NULL: none */
    const char *how;    /* "filtering or comparing on", "grouping by", ... */
} gd_pii_use;
/* The 403 message every read path gives a reader without the pii scope. */
void gd_pii_refusal(gd_pii_use use, char *out, size_t cap);
/* Whether column name (case-insensitive) of a table (key or value column)
 * or stream is personal data: the one answer every read path asks. */
gd_pii gd_catalog_column_pii(const gd_catalog_entry *e, const char *name);
/* Whether any column of e is personal data. */
bool gd_catalog_has_pii(const gd_catalog_entry *e);
/* The entry whose push stream is hub stream n (NULL for push queries). */
const gd_catalog_entry *gd_catalog_hub_entry(const gd_catalog *c, unsigned n);
/* The grace a table's windows get. */
int64_t gd_catalog_grace(const gd_catalog *c, const gd_tabledef *t);

/* ---- DDL, from an HTTP thread to the ingest thread ----
 * submit: queues the change and waits up to timeout_ms for it to be
 * applied; GD_OK, GD_ERR (refused, message in why), GD_AGAIN (not applied
 * in time; it may still be). On GD_OK for a CREATE the entry belongs to the
 * catalog; otherwise the caller keeps it. */
int gd_catalog_submit(gd_catalog *c, gd_cmd_op op, gd_catalog_entry *e, int timeout_ms, char *why, size_t why_len);
/* The ingest thread's side: whether commands wait; each taken command is
 * applied, then finished with its result (why: a refusal's reason). */
static inline bool gd_catalog_pending(gd_catalog *c) { return atomic_load_explicit(&c->has_commands, memory_order_acquire); }
gd_catalog_cmd *gd_catalog_take(gd_catalog *c);
gd_cmd_op gd_catalog_cmd_op(const gd_catalog_cmd *cmd);
gd_catalog_entry *gd_catalog_cmd_entry(const gd_catalog_cmd *cmd);
void gd_catalog_finish(gd_catalog *c, gd_catalog_cmd *cmd, int rc, const char *why);

/* An entry whose statement reads source (which cannot be dropped while it
 * stands: the entry would not compile again), or NULL. */
const gd_catalog_entry *gd_catalog_reader_of(const gd_catalog *c, const gd_catalog_entry *source);
/* Whether a slot is free for e; the uid the next created entry takes. */
bool gd_catalog_has_room(const gd_catalog *c, const gd_catalog_entry *e);
uint64_t gd_catalog_next_uid(const gd_catalog *c);

/* ---- the user's definitions in the store's meta database ----
 * encode: every user entry (uid, table or stream, terminated, statement)
 * and the next uid, as they will be once adds (at most two: one made here,
 * one another instance made, in partitioned mode) are added, drop dropped
 * and terminate terminated (each may be NULL). decode: calls fn for each
 * stored definition. */
void gd_catalog_encode(const gd_catalog *c, const gd_catalog_entry *const *adds, int nadds,
                       const gd_catalog_entry *drop, const gd_catalog_entry *terminate, gd_buf *out);
typedef int (*gd_catalog_def_fn)(void *ctx, uint64_t uid, bool is_table, bool terminated, gd_str sql);
int gd_catalog_decode(gd_catalog *c, gd_str stored, gd_catalog_def_fn fn, void *ctx);

#endif
