/* engine.c -- the ingest thread: the one writer of gamingd.
 *
 * It pulls records from the source, decodes each once, updates the
 * reference tables or enriches and aggregates the activity, and writes the
 * enriched record to the output. Work is grouped in batches: one LMDB write
 * transaction per batch receives the dirty rows, the source position, the
 * stream time and the counters, and commits them together, so a crash at any
 * point restarts from a cut where state and position agree (SPEC §9). The
 * outputs (the file, the Kafka producer) are flushed before the commit:
 * after a crash they may repeat records, never miss one (at-least-once).
 * When the brokers do not acknowledge in time the commit is postponed, not
 * skipped: state and position stay uncommitted together.
 *
 * The commit itself (LMDB writing the pages and syncing the file, most of a
 * live commit's time) runs on the committer's thread (store/committer.c)
 * while this thread applies the next batch; the next commit waits for it.
 * What is published once committed waits for it too: the counters (a
 * reader that sees them finds their rows), the source's group offsets, and
 * a change of the catalog, whose commit is waited for at once, as every
 * commit in partitioned mode is (its marks and revokes count on it).
 * Whoever applies the tables of the figures sends the enriched record out
 * (emit.c): this thread, or with three ingest threads or more worker 0
 * (layout_tables); with two and Avro output, the worker produces the
 * enriched records (worker.c) and this thread the rest.
 *
 * A batch ends when the source has nothing more for now and the live
 * interval has passed (state at most that old): --commit-interval, or
 * COMMIT_SPACING times as long as the last commit took (from its first row
 * written to LMDB's sync) when that is longer, up to BUSY_COMMIT_FACTOR
 * intervals. A live commit at 10,000 events/s rewrites nearly every leaf
 * page of the open windows' big tables, however few events it carries, so
 * every commit more costs as much again: 8 a second wrote about 470 MB/s
 * and took 0.15-0.2 cores more than one a second (docs/figures.md). At
 * low rates commits are quick and the interval stays as set. Or, while records
 * keep coming (catching up, replaying), after BUSY_COMMIT_FACTOR intervals or
 * cfg->batch_records records: each commit rewrites every dirty group and
 * distinct set once, so bigger batches while busy cost less per record --
 * until a batch holds BUSY_COMMIT_ROWS dirty groups, when it ends too. Past
 * that, records mostly make groups of their own (a replay of sparse data: a
 * day of event time a second) and a bigger batch saves nothing, while the
 * pages it dirties sit in the heap until the commit (LMDB then keeps them
 * cached for the next write transaction) and are freed only for the commit
 * after next to reuse: the data file and RSS would grow with the batch
 * (store.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "window.h"

/* The counters that are state: committed with it, so restarts keep them.
 * Fields are only ever appended: a data dir written before a field existed
 * holds a prefix, and the rest starts at zero. */
typedef struct {
    uint64_t records_in[GD_TOPIC_COUNT + 1];
    uint64_t bad_records[GD_TOPIC_COUNT + 1];
    uint64_t late_records, records_out, with_game, with_player;
    uint64_t bad_by_reason[GD_BAD_REASON_COUNT];
} persisted_counters;

const char *const gd_bad_reason_names[GD_BAD_REASON_COUNT] = {"invalid", "future", "too_large"};

enum { MAX_REMOVALS = 16 }; /* another instance's DROPs and TERMINATEs waiting here */

/* A change of the catalog (a DDL record) is named by its producer and the
 * 8 hex digits after its kind letter; the latest DDL_SEEN are remembered. */
enum { DDL_ID_LEN = GD_PRODUCER_LEN + 8, DDL_SEEN = 256 };

struct gd_engine {
    const gd_config *cfg;
    gd_store *store;
    gd_catalog *cat;
    gd_source *src;
    gd_counters *pub;
    gd_hub *hub; /* push streams, or NULL */
    gd_catalog_cmd *ddl; /* the catalog change prepared in the open batch, published at its commit */
    gd_push_sink push; /* where push events go: the hub, or through the relay */
    const atomic_bool *stop;
    gd_registry *registry; /* --schema-registry, or NULL */
    gd_avro_reader *avro;
    gd_output *kafka_out;  /* output topic and dead letters, or NULL */
    int failed;            /* an output error that ends the run */
    gd_refs refs;
    gd_windows win;        /* the tables this thread keeps (layout_tables) */
    /* --ingest-threads: the workers, each keeping the tables of its windows */
    gd_windows win_worker[GD_MAX_INGEST_THREADS - 1];
    gd_workers *workers; /* NULL without */
    int nworkers;
    bool worker_produces; /* worker 0 sends the enriched records it applies (Avro) */
    bool worker_emits;    /* worker 0 keeps the figures' tables and sends the records out */
    gd_emitter emit;      /* this thread's, or worker 0's when it emits */
    int64_t stream_time; /* INT64_MIN before the first activity */
    persisted_counters n;
    /* Batches and commits. A batch's rows are written into a write
     * transaction at its end (in partitioned mode it is open all the batch:
     * the changelog's rows and other instances' definitions go in as they
     * come), which the committer commits while the next batch is applied;
     * until then the records read groups that left memory through read_txn,
     * which sees the commit before. Those groups were written by it at the
     * latest: a window leaves memory only at the flush after its last write
     * (ingest/window.c). */
    bool batch_open;
    MDB_txn *txn;        /* the batch's write transaction while it is written, or NULL */
    MDB_txn *read_txn;   /* renewed before each write transaction begins */
    gd_committer *committer;
    bool commit_pending; /* handed to the committer, its outcome not collected */
    int64_t commit_began_ns; /* when the commit handed over began to be written */
    int64_t live_interval_ns; /* live data is committed this often (note_commit_time) */
    struct { /* what a commit holds, published when it is done */
        persisted_counters n;
        int64_t stream_time, last_lag_ms;
        size_t hot_window_bytes;
    } at_commit;
    uint32_t batch_records;
    uint32_t rows_check_at; /* batch_rows_full's next look, in records of the batch */
    int64_t batch_start_ns;
    int64_t last_lag_ms;
    int64_t rate_since_ns; /* the ingest rate is measured from here */
    uint64_t rate_since_records;
    gd_arena scratch; /* per record */
    FILE *out;
    gd_buf tmp;
    gd_ratelimit bad_log, postpone_log;
    gd_derived_list derived; /* the derived streams, published when wanted */
    /* partitioned mode (route.c): route 0's tables are win's, the others' here */
    bool partitioned;
    gd_routes routes;
    gd_windows route_win[GD_MAX_ROUTES - 1];
    gd_map applied;          /* "route partition source-partition" -> next source offset (int64_t *) */
    gd_arena applied_arena;
    gd_map pending;          /* producer -> its changelog rows since its last mark (pending_rows *) */
    gd_arena pending_arena;
    char producer[GD_PRODUCER_LEN + 1]; /* this instance's id, then this run's */
    gd_catalog_entry *adopted; /* a table or stream another instance made, published at the next commit */
    /* DROPs and TERMINATEs another instance made, applied here a commit each
     * (take_ddl), in the changelog's order */
    struct {
        char name[128];
        gd_cmd_op op;
    } removals[MAX_REMOVALS];
    int nremovals;
    gd_catalog_entry *removing; /* the removal prepared in the open batch, published at its commit */
    gd_cmd_op removing_op;
    gd_buf route_key, route_text, route_val;
    int32_t route_partitions[GD_MAX_ROUTES];
    int32_t changelog_base[GD_MAX_ROUTES]; /* where each route's tasks start in the changelog */
    int32_t changelog_partitions;          /* as the brokers have them */
    gd_buf mark_lines;       /* scratch: a commit's mark lines by partition (changelog_mark) */
    uint32_t ddl_seq;        /* this run's changes sent, numbering the next */
    gd_buf ddl_seen;         /* the latest changes applied here, DDL_ID_LEN bytes each */
    bool ddl_seen_changed;   /* since the last commit */
    struct {                 /* each table made while running: the change that made it (its rows name it) */
        char name[128];
        char id[DDL_ID_LEN];
    } origins[GD_MAX_TABLES];
    int norigins;
    gd_map route_batches;    /* route partition (applied_key without src) -> its records not sent yet (gd_buf *) */
    size_t route_batched;    /* their bytes */
    int64_t route_batch_since_ns; /* when the oldest of them was gathered */
    uint8_t *moved; /* per changelog partition: its tasks moved since its last mark */
    int64_t *resume_at; /* per changelog partition: scratch of put_changelog_resume */
};

enum { BUSY_COMMIT_FACTOR = 10, BUSY_COMMIT_ROWS = 131072, COMMIT_SPACING = 10, ROWS_FIRST_CHECK = 4096 };

/* Route records gathered are sent when they reach ROUTE_SEND_BYTES, are
 * ROUTE_SEND_NS old, the source has nothing more for now, or a commit
 * begins (which needs them acknowledged). */
enum { ROUTE_SEND_BYTES = 256 * 1024, ROUTE_SEND_NS = 20 * 1000000 };


/* Every gd_windows of this engine: the engine's, the workers', and in
 * partitioned mode (no workers) each further route's. */
static int windows_count(const gd_engine *e) { return 1 + e->nworkers + (e->partitioned ? e->routes.n - 1 : 0); }
static gd_windows *windows_at(gd_engine *e, int i)
{
    if (i == 0) return &e->win;
    if (i <= e->nworkers) return &e->win_worker[i - 1];
    return &e->route_win[i - 1 - e->nworkers];
}
/* Every worker idle: their tables and worker 0's emitter are this
 * thread's until the next push. Nonzero when one failed to produce. */
static int drain_workers(gd_engine *e)
{
    if (!e->nworkers) return GD_OK;
    gd_workers_drain(e->workers);
    e->n.late_records += gd_workers_take_late(e->workers);
    return gd_workers_failed(e->workers) ? GD_ERR : GD_OK;
}

/* Which thread keeps table def (--ingest-threads): 0 this one, 1 + i
 * worker i. One thread: this one, all. Two: this one the figures' tables,
 * whose figures it sends out with the record at once, and a worker the
 * rest. More: this one none, so that it only reads, decodes and enriches;
 * worker 0 the figures' tables and every table reading a figure (it has
 * them first), and sends the records out once it has their figures; the
 * other workers the rest, dealt out by slot (docs/figures.md measures the
 * three). */
static int thread_of(const gd_engine *e, const gd_tabledef *def)
{
    if (!e->nworkers) return 0;
    bool figures = gd_windows_figure_tables(e->cat) >> def->slot & 1;
    if (!e->worker_emits) return figures ? 0 : 1;
    if (figures || gd_table_reads_figures(def)) return 1;
    return 2 + (int)(def->slot % (unsigned)(e->nworkers - 1));
}

/* masks[t]: the tables thread t keeps (thread_of). */
static void layout_tables(gd_engine *e, uint64_t masks[GD_MAX_INGEST_THREADS])
{
    e->nworkers = e->cfg->ingest_threads - 1;
    e->worker_emits = e->nworkers > 1;
    memset(masks, 0, sizeof(uint64_t) * GD_MAX_INGEST_THREADS);
    for (unsigned slot = 0; slot < GD_MAX_TABLES; slot++) {
        const gd_catalog_entry *entry = gd_catalog_table(e->cat, slot);
        if (entry) masks[thread_of(e, entry->table)] |= 1ULL << slot;
    }
}

/* The tables of route r. */
static gd_windows *route_windows(gd_engine *e, int r) { return r == 0 ? &e->win : &e->route_win[r - 1]; }

/* The committed position is the source's identity, a NUL, then the source's
 * own position bytes; a position of other data is not sought to. */
static int resume_source(gd_engine *e, gd_str committed)
{
    const char *nul = memchr(committed.p, 0, committed.len);
    size_t idlen = nul ? (size_t)(nul - committed.p) : committed.len;
    if (!nul || idlen != strlen(e->src->identity) || memcmp(committed.p, e->src->identity, idlen)) {
        gd_warn("the data dir was fed by %.*s; reading %s from its beginning (state kept)",
                (int)idlen, committed.p, e->src->identity);
        return GD_OK;
    }
    gd_info("resuming %s from its committed position", e->src->identity);
    return e->src->seek(e->src, (gd_str){nul + 1, (uint32_t)(committed.len - idlen - 1)});
}

/* A stream time beyond --max-future of the wall clock can only come from a
 * record that is now refused (a data dir written before the bound existed):
 * windows starting past the bound are deleted, since only such records fed
 * them, and the stream time is set back to the newest window left. What
 * that record's stream time already purged stays lost. */
static int repair_future_stream_time(gd_engine *e)
{
    MDB_txn *txn;
    int rc = gd_store_begin_write(e->store, &txn);
    if (rc) return rc;
    gd_str v;
    int64_t bound = gd_now_ms() + e->cfg->max_future_ms, committed = INT64_MIN;
    if (gd_store_meta_get(e->store, txn, "stream_time", &v) == GD_OK && v.len == 8)
        committed = (int64_t)gd_get_u64be(v.p);
    if (committed <= bound) {
        mdb_txn_abort(txn);
        return GD_OK;
    }
    int64_t repaired = INT64_MIN;
    size_t deleted_total = 0;
    for (unsigned i = 0; !rc && i < GD_MAX_TABLES; i++) {
        const gd_catalog_entry *entry = gd_catalog_table(e->cat, i);
        if (!entry || !gd_table_windowed(entry->table)) continue;
        const gd_tabledef *t = entry->table;
        size_t deleted;
        int64_t newest;
        rc = gd_store_delete_after(e->store, txn, t, bound, &deleted);
        deleted_total += deleted;
        if (!rc && gd_store_newest_window(e->store, txn, t, &newest) == GD_OK && newest > repaired) repaired = newest;
    }
    gd_buf b = {0};
    gd_buf_put_u64be(&b, (uint64_t)repaired);
    if (!rc) rc = gd_store_meta_put(e->store, txn, "stream_time", b.p, b.len);
    gd_buf_free(&b);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    if ((rc = gd_store_commit(txn))) return rc;
    gd_warn("the committed stream time %lld lies %lld s ahead of the wall clock, beyond --max-future: a record "
            "from the future moved it there before gamingd refused such records. Repaired: %zu rows of windows "
            "after %lld deleted, stream time set back to %lld (the newest window left)",
            (long long)committed, (long long)((committed - gd_now_ms()) / 1000), deleted_total, (long long)bound,
            (long long)repaired);
    return GD_OK;
}

/* ---- partitioned mode: what crosses the internal topics (route.c) ---- */

static int commit_batch(gd_engine *e);
static int collect_commit(gd_engine *e, bool wait);
static void note_commit_time(gd_engine *e, int64_t took_ns);
static int begin_batch(gd_engine *e);

/* Where route partition (r, q) stands with the records of source partition
 * src: the next source offset it expects; an earlier one was sent twice. */
typedef struct {
    int32_t route, partition, src;
} applied_key; /* the map's key, as bytes: no formatting per record */

static int64_t *applied_offset(gd_engine *e, int r, int32_t q, int32_t src)
{
    applied_key k = {r, q, src};
    bool created;
    gd_map_slot *slot = gd_map_upsert(&e->applied, (gd_str){(const char *)&k, sizeof k}, &created);
    if (created) {
        int64_t *next = gd_arena_alloc(&e->applied_arena, sizeof *next);
        *next = 0;
        slot->val = next;
    }
    return slot->val;
}

/* The route an "#applied" line names: by its topic (a route's number
 * depends on when an instance learnt of it: route.c), or by its number, as
 * a gamingd from before wrote it (the routes planned at start, numbered
 * alike everywhere); -1 when not known here. */
static int applied_route(const gd_engine *e, const char *name)
{
    if (name[strspn(name, "0123456789")]) return gd_routes_find(&e->routes, gd_str_c(name));
    int r = atoi(name);
    return r < e->routes.n ? r : -1;
}

/* "#applied ROUTE Q S NEXT" lines (a mark's, or the committed ones): the
 * later offset wins. Other lines are positions, not ours to read here. */
static void note_applied_lines(gd_engine *e, gd_str lines)
{
    const char *p = lines.p, *end = lines.p + lines.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        char line[400], name[300];
        int r, q, src;
        long long next;
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), p);
        if (sscanf(line, "#applied %299s %d %d %lld", name, &q, &src, &next) == 4 && (r = applied_route(e, name)) >= 0) {
            int64_t *at = applied_offset(e, r, q, src);
            if (next > *at) *at = next;
        }
        p += n + 1;
    }
}

/* ---- changes of the catalog in the changelog ---- */

/* The id of a change from its record's producer and key (a kind letter and
 * 8 hex digits); false for a record of a gamingd from before numbers. */
static bool ddl_id(gd_str producer, gd_str key, char id[DDL_ID_LEN])
{
    if (key.len != 9 || producer.len != GD_PRODUCER_LEN) return false;
    memcpy(id, producer.p, GD_PRODUCER_LEN);
    memcpy(id + GD_PRODUCER_LEN, key.p + 1, 8);
    return true;
}

/* Whether the change c (a DDL record) was applied here already: it comes
 * on every changelog partition, and only the first copy counts -- a later
 * copy of a CREATE, read after its DROP on another partition, would make the
 * table again. Records without a number (of a gamingd from before) count
 * each time, as they did. */
static bool ddl_seen_before(gd_engine *e, gd_str producer, gd_str key)
{
    char id[DDL_ID_LEN];
    if (!ddl_id(producer, key, id)) return false;
    for (size_t at = 0; at + DDL_ID_LEN <= e->ddl_seen.len; at += DDL_ID_LEN)
        if (!memcmp(e->ddl_seen.p + at, id, DDL_ID_LEN)) return true;
    if (e->ddl_seen.len >= (size_t)DDL_SEEN * DDL_ID_LEN) { /* the oldest goes */
        memmove(e->ddl_seen.p, e->ddl_seen.p + DDL_ID_LEN, e->ddl_seen.len - DDL_ID_LEN);
        e->ddl_seen.len -= DDL_ID_LEN;
    }
    gd_buf_put(&e->ddl_seen, id, DDL_ID_LEN);
    e->ddl_seen_changed = true;
    return false;
}

/* ---- origins ----
 * A table made while running may be dropped and made again under its name
 * while rows of the first are still unread on some changelog partition
 * (their order holds on one partition only). So its rows name the change
 * that made it ("name@id" in the record's table) and apply only to the
 * table that change made; the list is kept with the state ("origins"). */

static const char *origin_of(const gd_engine *e, gd_str name)
{
    for (int i = 0; i < e->norigins; i++)
        if (gd_str_eq(name, gd_str_c(e->origins[i].name))) return e->origins[i].id;
    return NULL;
}

/* name's origin set (id) or forgotten (NULL), and the list written into the open batch. */
static int set_origin(gd_engine *e, const char *name, const char *id)
{
    int i = 0;
    while (i < e->norigins && strcmp(e->origins[i].name, name)) i++;
    if (i < e->norigins) memmove(&e->origins[i], &e->origins[i + 1], sizeof e->origins[0] * (size_t)(--e->norigins - i));
    if (id && e->norigins < GD_MAX_TABLES && strlen(name) < sizeof e->origins[0].name) {
        snprintf(e->origins[e->norigins].name, sizeof e->origins[0].name, "%s", name);
        memcpy(e->origins[e->norigins++].id, id, DDL_ID_LEN);
    }
    gd_buf lines = {0};
    for (i = 0; i < e->norigins; i++) gd_buf_printf(&lines, "%s %.*s\n", e->origins[i].name, DDL_ID_LEN, e->origins[i].id);
    int rc = gd_store_meta_put(e->store, e->txn, "origins", lines.p ? lines.p : "", lines.len);
    gd_buf_free(&lines);
    return rc;
}

static void load_origins(gd_engine *e, gd_str lines)
{
    for (const char *p = lines.p, *end = lines.p + lines.len; p < end && e->norigins < GD_MAX_TABLES;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        const char *sp = memchr(p, ' ', n);
        size_t name_len = sp ? (size_t)(sp - p) : 0;
        if (sp && name_len < sizeof e->origins[0].name && n - name_len - 1 == DDL_ID_LEN) {
            snprintf(e->origins[e->norigins].name, sizeof e->origins[0].name, "%.*s", (int)name_len, p);
            memcpy(e->origins[e->norigins++].id, sp + 1, DDL_ID_LEN);
        }
        p += n + 1;
    }
}

/* ---- the changelog ----
 * A task is a route partition (r, p): the groups its holder keeps. Each has
 * a changelog partition of its own, route 0's first, then route 1's, and so
 * on (modulo the changelog's partitions, should an operator have made it
 * with fewer); a task's rows, and the positions and applied offsets of its
 * marks, go there -- and activity partition p's position, whose records its
 * holder routes, with task (0, p). So no partition carries every row of the
 * cluster, the order on one partition is the order in which its task's
 * state was reached, whichever instance held it, and an instance could
 * read its own tasks' partitions alone. */

static int32_t changelog_partition(const gd_engine *e, int r, int32_t p)
{
    return gd_changelog_partition(e->changelog_base[r], p, e->changelog_partitions);
}

static void note_moved(gd_engine *e, int r, int32_t p) { e->moved[changelog_partition(e, r, p)] = 1; }

/* route_key and route_val, as made, to changelog partition c. */
static int produce_changelog(gd_engine *e, int32_t c)
{
    atomic_fetch_add(&e->pub->cluster.changelog_bytes, e->route_val.len);
    return gd_output_internal(e->kafka_out, e->routes.changelog, c, (gd_str){e->route_key.p, (uint32_t)e->route_key.len},
                              (gd_str){e->route_val.p, (uint32_t)e->route_val.len});
}

/* The changelog partition of a row of table t: its task's, the route
 * partition its group's records come on (the first for a row no route
 * fills: none in partitioned mode). */
static int32_t row_partition(gd_engine *e, const gd_tabledef *t, gd_str key)
{
    int r = gd_routes_of_table(&e->routes, t);
    if (r < 0 || !gd_route_row_key(&e->routes.r[r], t, key, &e->route_text)) return 0;
    gd_str route_key = {e->route_text.p, (uint32_t)e->route_text.len};
    return changelog_partition(e, r, gd_kafka_key_partition(route_key, e->route_partitions[r]));
}

/* The store's tap while this instance writes its tables: each row also to
 * its task's changelog partition, for the other instances. */
static int changelog_row(void *ctx, char kind, const gd_tabledef *t, gd_str key, gd_str val)
{
    gd_engine *e = ctx;
    int32_t c = row_partition(e, t, key);
    e->moved[c] = 1;
    const char *origin = e->norigins ? origin_of(e, gd_str_c(t->name)) : NULL;
    char named[sizeof e->origins[0].name + 1 + DDL_ID_LEN + 1];
    if (origin) snprintf(named, sizeof named, "%s@%.*s", t->name, DDL_ID_LEN, origin);
    gd_changelog_encode(&e->route_val, e->producer, (gd_changelog_kind)kind, origin ? named : t->name, key, val);
    gd_buf_clear(&e->route_key); /* compaction keeps the latest value of each row */
    gd_buf_putc(&e->route_key, kind == GD_CL_SETS ? 'S' : 'R');
    gd_buf_puts(&e->route_key, t->name);
    gd_buf_putc(&e->route_key, 0);
    gd_buf_put(&e->route_key, key.p, key.len);
    return produce_changelog(e, c);
}

/* The changelog partition of the task a mark's line speaks of
 * ("#applied ROUTE Q S NEXT": (ROUTE, Q); a position "topic P NEXT": the
 * topic's route, or route 0 for activity, and P), or -1. */
static int32_t line_partition(const gd_engine *e, const char *line, size_t n)
{
    char text[400], topic[320];
    int r = -1, q = -1;
    snprintf(text, sizeof text, "%.*s", (int)(n < sizeof text ? n : sizeof text - 1), line);
    if (!strncmp(text, "#applied ", 9)) {
        if (sscanf(text, "#applied %319s %d", topic, &q) != 2) return -1;
        r = applied_route(e, topic);
    } else if (sscanf(text, "%319s %d", topic, &q) == 2) {
        r = strcmp(topic, e->cfg->topics[GD_TOPIC_ACTIVITY]) ? gd_routes_find(&e->routes, gd_str_c(topic)) : 0;
    }
    return r >= 0 && r < e->routes.n && q >= 0 ? changelog_partition(e, r, q) : -1;
}

/* A line of a mark's text, with its task's changelog partition. */
typedef struct {
    int32_t partition;
    uint32_t at, len;
} mark_line;

static int by_partition(const void *a, const void *b)
{
    const mark_line *x = a, *y = b;
    return x->partition != y->partition ? (x->partition > y->partition ? 1 : -1) : (x->at > y->at) - (x->at < y->at);
}

static void add_mark_line(gd_engine *e, int32_t partition, size_t at, size_t len)
{
    mark_line l = {partition, (uint32_t)at, (uint32_t)len};
    if (partition >= 0) gd_buf_put(&e->mark_lines, &l, sizeof l);
}

/* "#applied ROUTE Q S NEXT" lines into out; with_partitions: each also noted
 * in e->mark_lines with its task's partition (gather_mark_lines). */
static void put_applied_lines(gd_engine *e, gd_buf *out, bool with_partitions)
{
    for (size_t i = 0; i < e->applied.cap; i++) {
        const gd_map_slot *slot = &e->applied.slots[i];
        if (!gd_map_live(slot)) continue;
        applied_key k;
        memcpy(&k, gd_map_key(slot).p, sizeof k);
        size_t at = out->len;
        gd_buf_printf(out, "#applied %s %d %d %lld\n", e->routes.r[k.route].topic, (int)k.partition, (int)k.src,
                      (long long)*(const int64_t *)slot->val);
        if (with_partitions) add_mark_line(e, changelog_partition(e, k.route, k.partition), at, out->len - at - 1);
    }
}

/* Into e->tmp, the lines of this commit's marks -- the positions held, then
 * the "#applied" lines -- and into e->mark_lines where each is, sorted by
 * its task's partition: their count. Once per commit; a mark per partition
 * then takes its run of them. */
static size_t gather_mark_lines(gd_engine *e)
{
    gd_buf_clear(&e->tmp);
    gd_buf_clear(&e->mark_lines);
    e->src->held_position(e->src, &e->tmp);
    for (size_t at = 0; at < e->tmp.len;) {
        const char *p = e->tmp.p + at, *nl = memchr(p, '\n', e->tmp.len - at);
        size_t len = (size_t)((nl ? nl : e->tmp.p + e->tmp.len) - p);
        add_mark_line(e, line_partition(e, p, len), at, len);
        at += len + 1;
    }
    put_applied_lines(e, &e->tmp, true);
    size_t n = e->mark_lines.len / sizeof(mark_line);
    if (n > 1) qsort(e->mark_lines.p, n, sizeof(mark_line), by_partition); /* none: p may be NULL */
    return n;
}

/* After this commit's rows: on each changelog partition they went to, or
 * whose task moved, a mark saying where that task stands, so whoever takes
 * it over starts where these rows end. */
static int changelog_mark(gd_engine *e)
{
    size_t nlines = gather_mark_lines(e), next = 0;
    const mark_line *lines = (const mark_line *)e->mark_lines.p;
    gd_buf value = {0};
    int rc = GD_OK;
    for (int32_t c = 0; !rc && c < e->changelog_partitions; c++) {
        gd_buf_clear(&value);
        for (; next < nlines && lines[next].partition == c; next++) {
            gd_buf_put(&value, e->tmp.p + lines[next].at, lines[next].len);
            gd_buf_putc(&value, '\n');
        }
        if (!e->moved[c]) continue;
        gd_changelog_encode(&e->route_val, e->producer, GD_CL_MARK, NULL, GD_STR_NULL,
                            (gd_str){value.p, (uint32_t)value.len});
        gd_buf_clear(&e->route_key);
        gd_buf_putc(&e->route_key, 'M');
        gd_buf_put(&e->route_key, e->producer, GD_INSTANCE_ID_LEN);
        rc = produce_changelog(e, c);
    }
    gd_buf_free(&value);
    return rc;
}

static int adopt_definition(gd_engine *e, const gd_changelog_record *c);

/* A DROP or TERMINATE another instance made: applied here at a commit of
 * its own (take_ddl), as soon as no other change is pending. */
static int queue_removal(gd_engine *e, const gd_changelog_record *c)
{
    if (e->nremovals == MAX_REMOVALS || c->table.len >= sizeof e->removals[0].name) {
        gd_warn("partitioned mode: %s of %.*s by another instance is not applied here: too many at once",
                c->kind == GD_CL_DROP ? "DROP" : "TERMINATE", (int)c->table.len, c->table.p);
        return GD_OK;
    }
    snprintf(e->removals[e->nremovals].name, sizeof e->removals[0].name, "%.*s", (int)c->table.len, c->table.p);
    e->removals[e->nremovals++].op = c->kind == GD_CL_DROP ? GD_CMD_DROP : GD_CMD_TERMINATE;
    return GD_OK;
}

/* One of another instance's rows into the store. */
static int apply_changelog_row(gd_engine *e, const gd_changelog_record *c)
{
    bool ddl = c->kind == GD_CL_CREATE || c->kind == GD_CL_DROP || c->kind == GD_CL_TERMINATE;
    if (ddl && ddl_seen_before(e, c->producer, c->key)) return GD_OK;
    if (c->kind == GD_CL_CREATE) return adopt_definition(e, c);
    if (c->kind == GD_CL_DROP || c->kind == GD_CL_TERMINATE) return queue_removal(e, c);
    gd_str name = c->table;
    const char *at = memchr(name.p, '@', name.len);
    if (at) name.len = (uint32_t)(at - name.p);
    const char *origin = at ? origin_of(e, name) : NULL;
    if (at && (!origin || c->table.len - name.len - 1 != DDL_ID_LEN || memcmp(origin, at + 1, DDL_ID_LEN)))
        return GD_OK; /* a row of a table of that name which is gone (or not made here) */
    const gd_tabledef *t = gd_catalog_tabledef(e->cat, name);
    if (!t || !gd_table_aggregates(t)) return GD_OK; /* a table this instance does not have */
    if (c->kind == GD_CL_ROW) return gd_store_row_put(e->store, e->txn, t, c->key, c->value);
    if (c->kind == GD_CL_SETS) return gd_store_sets_put(e->store, e->txn, t, c->key, c->value);
    return gd_store_row_del(e->store, e->txn, t, c->key);
}

/* Another producer's rows on one changelog partition since its last mark
 * there, and the offset of the first: the committed changelog position
 * never passes it, so a restart reads them again rather than lose them
 * before their mark. Keyed by the producer, then the partition (4 bytes). */
typedef struct {
    gd_buf rows; /* each a 4-byte length, then the record's value */
    int64_t first;
} pending_rows;

enum { PENDING_KEY_LEN = GD_PRODUCER_LEN + 4 };

static int32_t pending_partition(const gd_map_slot *slot)
{
    int32_t c;
    memcpy(&c, gd_map_key(slot).p + GD_PRODUCER_LEN, 4);
    return c;
}

/* "changelog C OFFSET" lines, a later line winning over the position's: each
 * partition resumes before every producer's unmarked rows there. */
static void put_changelog_resume(const gd_engine *e, gd_buf *out)
{
    int64_t *first = e->resume_at;
    for (int32_t c = 0; c < e->changelog_partitions; c++) first[c] = -1;
    for (size_t i = 0; i < e->pending.cap; i++) {
        const pending_rows *p = e->pending.slots[i].val;
        if (!gd_map_live(&e->pending.slots[i]) || !p->rows.len) continue;
        int32_t c = pending_partition(&e->pending.slots[i]);
        if (c >= 0 && c < e->changelog_partitions && (first[c] < 0 || p->first < first[c])) first[c] = p->first;
    }
    for (int32_t c = 0; c < e->changelog_partitions; c++)
        if (first[c] >= 0) gd_buf_printf(out, "%s %d %lld\n", e->routes.changelog, (int)c, (long long)first[c]);
}

/* A run's first record on changelog partition c: an earlier run of the
 * same instance is gone, so its rows there with no mark yet never will
 * have one. (Once per run and partition, not at every mark: a mark's work
 * must not grow with the producers and partitions seen.) */
static void forget_earlier_runs(gd_engine *e, gd_str producer, int32_t c)
{
    for (size_t i = 0; i < e->pending.cap; i++) {
        gd_map_slot *other = &e->pending.slots[i];
        gd_str k = gd_map_key(other);
        if (gd_map_live(other) && !memcmp(k.p, producer.p, GD_INSTANCE_ID_LEN) &&
            memcmp(k.p, producer.p, GD_PRODUCER_LEN) && pending_partition(other) == c)
            gd_buf_free(&((pending_rows *)other->val)->rows);
    }
}

/* Another producer's rows wait for its mark: rows with no mark after them
 * belong to a commit that never happened. At the mark they are applied,
 * and the positions it names are where those partitions' next owner
 * starts. An earlier run of this instance is another producer: its marked
 * rows are state its LMDB may not have committed. */
static int process_changelog(gd_engine *e, const gd_record *rec)
{
    gd_changelog_record c;
    if (!rec->value.p || gd_changelog_decode(rec->value, &c)) return GD_OK; /* not ours: compaction tombstones */
    if (!memcmp(c.producer.p, e->producer, GD_PRODUCER_LEN)) return GD_OK; /* this run's: in the store already */
    char key[PENDING_KEY_LEN];
    memcpy(key, c.producer.p, GD_PRODUCER_LEN);
    memcpy(key + GD_PRODUCER_LEN, &rec->partition, 4);
    bool created;
    gd_map_slot *slot = gd_map_upsert(&e->pending, (gd_str){key, PENDING_KEY_LEN}, &created);
    if (created) {
        slot->val = gd_arena_alloc(&e->pending_arena, sizeof(pending_rows));
        memset(slot->val, 0, sizeof(pending_rows));
        forget_earlier_runs(e, c.producer, rec->partition);
    }
    pending_rows *held = slot->val;
    if (c.kind != GD_CL_MARK) {
        if (!held->rows.len) held->first = rec->offset;
        gd_buf_put_u32be(&held->rows, rec->value.len);
        gd_buf_put(&held->rows, rec->value.p, rec->value.len);
        return GD_OK;
    }
    int rc = GD_OK;
    for (size_t at = 0; !rc && at + 4 <= held->rows.len;) {
        uint32_t len = gd_get_u32be(held->rows.p + at);
        gd_changelog_record row;
        if (!gd_changelog_decode((gd_str){held->rows.p + at + 4, len}, &row)) rc = apply_changelog_row(e, &row);
        at += 4 + len;
    }
    gd_buf_clear(&held->rows);
    if (rc) return rc;
    note_applied_lines(e, c.value);
    return e->src->seek(e->src, c.value);
}

/* The records gathered for the partition of route r that its key
 * route_key picks, to go as one message: a batch holds records of every key
 * of its partition, so that each source partition's records reach a route
 * partition in their order (a record before one applied counts as sent
 * twice, process_route). */
static gd_buf *route_batch(gd_engine *e, int r)
{
    gd_str key = {e->route_key.p, (uint32_t)e->route_key.len};
    applied_key k = {r, gd_kafka_key_partition(key, e->route_partitions[r]), 0};
    bool created;
    gd_map_slot *slot = gd_map_upsert(&e->route_batches, (gd_str){(const char *)&k, sizeof k}, &created);
    if (created && !(slot->val = calloc(1, sizeof(gd_buf)))) {
        gd_error("out of memory gathering route records");
        abort();
    }
    return slot->val;
}

static void free_route_batches(gd_engine *e)
{
    for (size_t i = 0; i < e->route_batches.cap; i++) {
        gd_map_slot *slot = &e->route_batches.slots[i];
        if (!gd_map_live(slot)) continue;
        gd_buf_free(slot->val);
        free(slot->val);
    }
    gd_map_free(&e->route_batches);
}

/* Every route partition's gathered records to it, a message each (no
 * key: the partition is chosen, and nothing compacts a route). */
static int send_route_batches(gd_engine *e)
{
    for (size_t i = 0; i < e->route_batches.cap; i++) {
        gd_map_slot *slot = &e->route_batches.slots[i];
        gd_buf *batch = slot->val;
        if (!gd_map_live(slot) || !batch->len) continue;
        applied_key k;
        memcpy(&k, gd_map_key(slot).p, sizeof k);
        int rc = gd_output_internal(e->kafka_out, e->routes.r[k.route].topic, k.partition, gd_str_c(""),
                                    (gd_str){batch->p, (uint32_t)batch->len});
        if (rc) return rc;
        atomic_fetch_add(&e->pub->cluster.route_bytes, batch->len);
        gd_buf_clear(batch);
        if (batch->cap > ROUTE_SEND_BYTES / 4) gd_buf_free(batch); /* a burst's: not kept for every partition */
    }
    e->route_batched = 0;
    return GD_OK;
}

/* A record of this instance's activity partitions: checked and enriched
 * here, then gathered for each route it travels on, with the fields that
 * route's readers read. */
static int route_activity(gd_engine *e, const gd_record *rec, const gd_enriched *en)
{
    note_moved(e, 0, rec->partition); /* its position is task (0, p)'s */
    if (!e->route_batched) e->route_batch_since_ns = gd_mono_ns();
    for (int r = 0; r < e->routes.n; r++) {
        if (r > 0 && !e->routes.r[r].tables) continue; /* idle: its table was dropped */
        if (!gd_route_key(&e->routes.r[r], en, &e->scratch, &e->route_key, &e->route_text)) continue;
        gd_route_encode(&e->route_val, en, e->routes.r[r].fields, rec->partition, rec->offset);
        size_t add = 4 + e->route_val.len;
        gd_buf *batch = route_batch(e, r);
        int rc = batch->len && batch->len + add > ROUTE_SEND_BYTES ? send_route_batches(e) : GD_OK;
        if (rc) return rc; /* a message past ROUTE_SEND_BYTES holds one record alone, as before batches */
        gd_route_batch_add(batch, (gd_str){e->route_val.p, (uint32_t)e->route_val.len});
        e->route_batched += add;
    }
    if (e->route_batched >= ROUTE_SEND_BYTES || gd_mono_ns() - e->route_batch_since_ns >= ROUTE_SEND_NS)
        return send_route_batches(e);
    return GD_OK;
}

/* Before partitions are taken away: what was applied is committed (rows and
 * mark in the changelog), so their next owner starts from it. */
/* Commits the batch open now, waiting up to half the shutdown timeout. */
static int commit_now(gd_engine *e)
{
    if (!e->batch_open) return GD_OK;
    int64_t give_up = gd_mono_ns() + e->cfg->shutdown_timeout_ms * 1000000 / 2;
    int rc;
    while ((rc = commit_batch(e)) == GD_AGAIN && gd_mono_ns() < give_up) continue;
    if (!rc) rc = collect_commit(e, true);
    if (!e->batch_open && begin_batch(e)) e->failed = GD_ERR;
    return rc;
}

static void commit_before_revoke(void *ctx)
{
    if (commit_now(ctx)) gd_warn("partitions revoked before the state was committed; their next owner starts at the last mark");
}

/* Partitions newly held: their groups were written by another instance and
 * are in the store now (the changelog), so the hot windows are read again,
 * and committed, so that the queries sent here once these tasks are
 * announced find their state. */
static void reload_windows(void *ctx)
{
    gd_engine *e = ctx;
    if (commit_now(e)) gd_warn("the state restored for newly held partitions is not committed yet");
    for (int r = 0; r < e->routes.n; r++) {
        gd_windows *w = route_windows(e, r);
        gd_windows_free(w);
        gd_windows_init(w, e->cfg, e->cat, e->routes.r[r].tables);
        w->push = &e->push;
        if (gd_windows_load(w, e->store, e->txn, e->stream_time) || gd_windows_note_stored(w, e->store, e->txn))
            e->failed = GD_ERR;
    }
}

/* Partitioned mode's set-up: the routes from the catalog, their topics, and
 * the source told to read them. */
static int open_partitioned(gd_engine *e)
{
    int rc = gd_routes_plan(&e->routes, e->cfg, e->cat);
    if (rc) return rc;
    if (!e->kafka_out || !e->src->use_internal) {
        gd_error("partitioned mode needs Kafka");
        return GD_ERR;
    }
    char id[GD_INSTANCE_ID_LEN + 1];
    if ((rc = gd_store_instance_id(e->store, id))) return rc;
    snprintf(e->producer, sizeof e->producer, "%s%08x", id, (unsigned)(gd_mono_ns() ^ gd_now_ms() ^ getpid()));
    const char *topics[GD_MAX_ROUTES];
    for (int r = 0; r < e->routes.n; r++) topics[r] = e->routes.r[r].topic;
    if ((rc = gd_relay_open(&e->push.relay, e->cfg, e->cat, e->hub, e->kafka_out, e->pub, id))) return rc;
    const char *push = gd_relay_topic(e->push.relay);
    int32_t push_partitions;
    if ((rc = gd_output_internal_topics(e->kafka_out, topics, e->routes.n, e->route_partitions, e->routes.changelog,
                                        &e->changelog_partitions, push, &push_partitions)))
        return rc;
    if (push_partitions > GD_MAX_PUSH_PARTITIONS) push_partitions = GD_MAX_PUSH_PARTITIONS;
    int64_t push_from[GD_MAX_PUSH_PARTITIONS]; /* what came before is not in this instance's hub */
    gd_output_ends(e->kafka_out, push, push_partitions, push_from);
    gd_relay_use_partitions(e->push.relay, push_partitions, push_from);
    e->moved = calloc((size_t)e->changelog_partitions, 1);
    e->resume_at = calloc((size_t)e->changelog_partitions, sizeof *e->resume_at);
    if (!e->moved || !e->resume_at) return GD_ENOMEM;
    if ((rc = e->src->use_internal(e->src, e->routes.changelog, e->changelog_partitions, push, push_partitions,
                                   push_from)))
        return rc;
    for (int r = 0; r < e->routes.n; r++) {
        e->changelog_base[r] = gd_changelog_base(&e->routes, e->route_partitions, r, e->changelog_partitions);
        if ((rc = e->src->add_route(e->src, topics[r], e->route_partitions[r], e->changelog_base[r]))) return rc;
    }
    gd_windows_free(&e->win);
    gd_windows_init(&e->win, e->cfg, e->cat, e->routes.r[0].tables);
    for (int r = 1; r < e->routes.n; r++) gd_windows_init(&e->route_win[r - 1], e->cfg, e->cat, e->routes.r[r].tables);
    for (int r = 0; r < e->routes.n; r++) route_windows(e, r)->push = &e->push;
    gd_map_init(&e->applied, NULL);
    gd_arena_init(&e->applied_arena);
    gd_map_init(&e->route_batches, NULL);
    gd_map_init(&e->pending, NULL);
    gd_arena_init(&e->pending_arena);
    e->src->on_revoke = commit_before_revoke;
    e->src->on_assigned = reload_windows;
    e->src->hook_ctx = e;
    gd_info("partitioned mode: %d route(s), changelog %s (%d partitions)", e->routes.n, e->routes.changelog,
            (int)e->changelog_partitions);
    return GD_OK;
}

static int load_state(gd_engine *e)
{
    MDB_txn *txn;
    int rc = gd_store_begin_write(e->store, &txn);
    if (rc) return rc;
    gd_str v;
    if (gd_store_meta_get(e->store, txn, "stream_time", &v) == GD_OK && v.len == 8)
        e->stream_time = (int64_t)gd_get_u64be(v.p);
    if (gd_store_meta_get(e->store, txn, "counters", &v) == GD_OK && v.len <= sizeof e->n && v.len % 8 == 0)
        memcpy(&e->n, v.p, v.len);
    rc = gd_refs_load(&e->refs, e->store, txn);
    for (int i = 0; !rc && i < windows_count(e); i++) rc = gd_windows_load(windows_at(e, i), e->store, txn, e->stream_time);
    if (!rc && gd_store_meta_get(e->store, txn, "position", &v) == GD_OK) rc = resume_source(e, v);
    if (!rc && e->partitioned && gd_store_meta_get(e->store, txn, "applied", &v) == GD_OK) note_applied_lines(e, v);
    if (!rc && e->partitioned && gd_store_meta_get(e->store, txn, "ddl_seen", &v) == GD_OK)
        gd_buf_put(&e->ddl_seen, v.p, v.len - v.len % DDL_ID_LEN);
    if (!rc && e->partitioned && gd_store_meta_get(e->store, txn, "origins", &v) == GD_OK) load_origins(e, v);
    mdb_txn_abort(txn);
    return rc;
}

static uint64_t records_in_total(const gd_engine *e)
{
    uint64_t n = 0;
    for (int t = 0; t <= GD_TOPIC_COUNT; t++) n += e->n.records_in[t];
    return n;
}

/* Records per second over the last second or more. */
static void measure_rate(gd_engine *e)
{
    int64_t now = gd_mono_ns(), span = now - e->rate_since_ns;
    if (span < 1000000000) return;
    uint64_t n = records_in_total(e);
    atomic_store(&e->pub->ingest_rate, (uint64_t)((double)(n - e->rate_since_records) * 1e9 / (double)span));
    e->rate_since_ns = now;
    e->rate_since_records = n;
}

/* What the commit about to be made holds; the worker is drained (at every
 * commit), so its windows may be read. */
static void note_commit_state(gd_engine *e)
{
    e->at_commit.n = e->n;
    e->at_commit.stream_time = e->stream_time;
    e->at_commit.last_lag_ms = e->last_lag_ms;
    size_t hot = 0;
    for (int i = 0; i < windows_count(e); i++) hot += gd_windows_memory(windows_at(e, i));
    e->at_commit.hot_window_bytes = hot;
}

/* The counters as committed: a reader that sees them finds their rows. */
static void publish_counters(gd_engine *e)
{
    gd_counters *p = e->pub;
    const persisted_counters *n = &e->at_commit.n;
    measure_rate(e);
    for (int t = 0; t <= GD_TOPIC_COUNT; t++) {
        atomic_store(&p->records_in[t], n->records_in[t]);
        atomic_store(&p->bad_records[t], n->bad_records[t]);
    }
    for (int r = 0; r < GD_BAD_REASON_COUNT; r++) atomic_store(&p->bad_by_reason[r], n->bad_by_reason[r]);
    atomic_store(&p->late_records, n->late_records);
    atomic_store(&p->records_out, n->records_out);
    atomic_store(&p->with_game, n->with_game);
    atomic_store(&p->with_player, n->with_player);
    atomic_store(&p->last_lag_ms, e->at_commit.last_lag_ms);
    atomic_store(&p->stream_time, e->at_commit.stream_time);
    atomic_store(&p->hot_window_bytes, e->at_commit.hot_window_bytes);
    atomic_fetch_add(&p->batches, 1);
}

/* The id of the last event of an entry's push stream before this start. */
static uint64_t last_event_id(const gd_engine *e, const gd_catalog_entry *entry)
{
    gd_table_kind table = entry->is_table ? entry->table->kind : GD_TABLE_WINDOWED;
    if (table == GD_TABLE_GAMES || (!entry->is_table && entry->kind == GD_SRC_GAMES)) return e->n.records_in[GD_TOPIC_GAMES];
    if (table == GD_TABLE_PLAYERS || (!entry->is_table && entry->kind == GD_SRC_PLAYERS))
        return e->n.records_in[GD_TOPIC_PLAYERS];
    if (!entry->is_table && entry->kind == GD_SRC_ACTIVITY) return e->n.records_in[GD_TOPIC_ACTIVITY];
    return e->n.records_out;
}

/* Push events before this start are not in the hub's replay buffer (the
 * relay's streams number their events by the push topic: relay.c). */
static void set_push_horizons(gd_engine *e)
{
    if (!e->hub) return;
    for (unsigned n = 0; n < GD_MAX_STREAMS + GD_MAX_TABLES; n++) {
        const gd_catalog_entry *entry = gd_catalog_hub_entry(e->cat, n);
        if (entry && !(e->push.relay && gd_relay_carries(e->push.relay, n)))
            gd_hub_set_horizon(e->hub, n, last_event_id(e, entry));
    }
}

/* The derived streams, for publishing; after every change of the catalog. */
static void list_derived(gd_engine *e)
{
    e->derived.n = 0;
    for (unsigned i = 0; i < GD_MAX_STREAMS; i++) {
        const gd_catalog_entry *entry = gd_catalog_stream(e->cat, i);
        if (entry && entry->kind == GD_SRC_DERIVED && !atomic_load(&entry->terminated))
            e->derived.entries[e->derived.n++] = entry;
    }
}

static int open_kafka_parts(gd_engine *e)
{
    const gd_config *cfg = e->cfg;
    int rc = cfg->schema_registry[0] ? gd_registry_open(&e->registry, cfg->schema_registry, cfg->schema_registry_auth, e->stop)
                                     : GD_OK;
    if (!rc) rc = gd_avro_reader_new(&e->avro, e->registry);
    if (!rc) rc = gd_output_open(&e->kafka_out, cfg, e->pub, e->registry, e->stop);
    return rc;
}

/* Worker 0 produces the Avro output when it keeps the tables apart from
 * the figures'; it sends the records out entirely when it keeps those. */
static int start_workers(gd_engine *e)
{
    if (!e->nworkers) return GD_OK;
    e->worker_produces = !e->worker_emits && e->kafka_out && !gd_output_wants_json(e->kafka_out);
    gd_windows *windows[GD_MAX_INGEST_THREADS - 1];
    for (int i = 0; i < e->nworkers; i++) windows[i] = &e->win_worker[i];
    return gd_workers_start(&e->workers, windows, e->nworkers, e->store, e->worker_produces ? e->kafka_out : NULL,
                            e->worker_emits ? &e->emit : NULL); /* stopped by gd_engine_close, started or not */
}

int gd_engine_open(gd_engine **out, const gd_config *cfg, gd_store *store, gd_catalog *cat, gd_source *src,
                   gd_counters *counters, gd_hub *hub, const atomic_bool *stop)
{
    gd_engine *e = calloc(1, sizeof *e);
    if (!e) return GD_ENOMEM;
    e->cfg = cfg;
    e->store = store;
    e->cat = cat;
    e->src = src;
    e->pub = counters;
    e->hub = hub;
    e->stop = stop;
    e->stream_time = INT64_MIN;
    note_commit_time(e, 0); /* the interval as set */
    gd_refs_init(&e->refs, cat);
    uint64_t masks[GD_MAX_INGEST_THREADS];
    layout_tables(e, masks);
    gd_windows_init(&e->win, cfg, cat, masks[0]);
    e->win.push = &e->push;
    for (int i = 0; i < e->nworkers; i++) {
        gd_windows_init(&e->win_worker[i], cfg, cat, masks[1 + i]);
        e->win_worker[i].push = &e->push;
    }
    list_derived(e);
    e->push.hub = hub;
    gd_arena_init(&e->scratch);
    if (cfg->output_path[0]) {
        e->out = fopen(cfg->output_path, "a");
        if (!e->out) {
            gd_error("cannot open output %s: %s", cfg->output_path, strerror(errno));
            gd_engine_close(e);
            return GD_ERR;
        }
    }
    int rc = open_kafka_parts(e);
    if (!rc && cfg->partitioned) {
        e->partitioned = true;
        rc = open_partitioned(e);
    }
    if (!rc) rc = repair_future_stream_time(e);
    if (!rc) rc = load_state(e);
    if (!rc) rc = gd_store_begin_read(e->store, &e->read_txn);
    if (!rc) rc = gd_committer_start(&e->committer, e->store);
    gd_emitter_init(&e->emit, &e->push, &e->derived, e->kafka_out, e->out, cfg->output_path);
    if (!rc) rc = start_workers(e);
    if (rc) {
        gd_engine_close(e);
        return rc;
    }
    set_push_horizons(e);
    e->rate_since_ns = gd_mono_ns();
    e->rate_since_records = records_in_total(e);
    note_commit_state(e);
    publish_counters(e);
    *out = e;
    return GD_OK;
}

void gd_engine_close(gd_engine *e)
{
    if (!e) return;
    if (e->ddl) gd_catalog_finish(e->cat, e->ddl, GD_ERR, "stopping before the change was committed");
    gd_catalog_entry_free(e->adopted);
    gd_workers_stop(e->workers);
    if (e->txn) gd_committer_abort(e->committer, e->txn);
    if (e->committer && gd_committer_wait(e->committer)) gd_warn("stopping: the last commit failed");
    gd_committer_stop(e->committer);
    if (e->read_txn) gd_store_end_read(e->store, e->read_txn);
    if (e->partitioned) {
        e->src->on_revoke = e->src->on_assigned = NULL; /* the source may outlive the engine */
        for (int r = 1; r < e->routes.n; r++) gd_windows_free(&e->route_win[r - 1]);
        gd_relay_close(e->push.relay);
        for (size_t i = 0; i < e->pending.cap; i++)
            if (gd_map_live(&e->pending.slots[i])) gd_buf_free(&((pending_rows *)e->pending.slots[i].val)->rows);
        gd_map_free(&e->applied);
        gd_arena_free(&e->applied_arena);
        gd_map_free(&e->pending);
        gd_arena_free(&e->pending_arena);
        gd_buf_free(&e->route_key);
        gd_buf_free(&e->route_text);
        gd_buf_free(&e->route_val);
        gd_buf_free(&e->mark_lines);
        gd_buf_free(&e->ddl_seen);
        free(e->moved);
        free(e->resume_at);
        free_route_batches(e);
    }
    if (e->out) fclose(e->out);
    gd_output_close(e->kafka_out);
    gd_avro_reader_free(e->avro);
    gd_registry_close(e->registry);
    gd_refs_free(&e->refs);
    gd_windows_free(&e->win);
    for (int i = 0; i < e->nworkers; i++) gd_windows_free(&e->win_worker[i]);
    gd_emitter_free(&e->emit);
    gd_arena_free(&e->scratch);
    gd_buf_free(&e->tmp);
    free(e);
}

/* The interval of live commits after one that took took_ns (polled, a
 * loop turn late at most: a record, or a millisecond's sleep). */
static void note_commit_time(gd_engine *e, int64_t took_ns)
{
    int64_t least = e->cfg->commit_interval_ms * 1000000, most = BUSY_COMMIT_FACTOR * least;
    int64_t spaced = COMMIT_SPACING * took_ns;
    e->live_interval_ns = spaced < least ? least : spaced > most ? most : spaced;
    atomic_store(&e->pub->commit_interval_ns, e->live_interval_ns);
}

/* The commit handed over, once done (wait: waiting for it): its error,
 * or what follows a commit -- the source told, the counters published. */
static int collect_commit(gd_engine *e, bool wait)
{
    if (!e->commit_pending || (!wait && gd_committer_busy(e->committer))) return GD_OK;
    e->commit_pending = false;
    int rc = gd_committer_wait(e->committer);
    if (rc) return rc;
    note_commit_time(e, gd_mono_ns() - e->commit_began_ns);
    if (e->src->committed) e->src->committed(e->src);
    publish_counters(e);
    return GD_OK;
}

/* The write transaction, once the commit before it is done and every
 * reader of ours sees that commit (so a window evicted at it is found). */
static int begin_write(gd_engine *e)
{
    int rc = collect_commit(e, true);
    if (rc) return rc;
    if (e->nworkers) {
        gd_workers_drain(e->workers); /* their read transactions are ours while they idle */
        if ((rc = gd_workers_renew(e->workers))) return rc;
    }
    if ((rc = gd_store_renew_read(e->read_txn, "engine's"))) return rc;
    return gd_committer_begin(e->committer, &e->txn);
}

static int begin_batch(gd_engine *e)
{
    if (e->batch_open) return GD_OK;
    e->batch_open = true;
    e->batch_records = 0;
    e->rows_check_at = ROWS_FIRST_CHECK;
    e->batch_start_ns = gd_mono_ns();
    return e->partitioned ? begin_write(e) : GD_OK;
}

/* Where a record's groups that left memory are read back. */
static MDB_txn *reading_txn(const gd_engine *e) { return e->txn ? e->txn : e->read_txn; }

/* ---- DDL ----
 * A change of the catalog waits for a commit: the ingest thread takes one
 * command per batch, writes what it changes in the store (a new table's
 * databases, a dropped table's rows gone, the user's definitions in meta)
 * into the batch's transaction, and publishes the change once that is
 * committed -- so a reader finds a new table's databases, and a restart
 * finds what was answered as done. In partitioned mode a CREATE also goes
 * into the changelog ahead of the commit's mark; every other instance makes
 * the same table or stream when it applies that commit (adopt_definition),
 * and commits at once, so the rows its owners write next find it. */

/* A dropped table's rows, in the open batch. */
static int remove_rows(gd_engine *e, const gd_catalog_entry *entry)
{
    if (!entry->is_table) return GD_OK;
    return entry->error ? gd_store_delete_table(e->store, e->txn, entry->name, entry->uid)
                        : gd_store_empty_table(e->store, e->txn, entry->table);
}

/* The user's definitions as they will be after the change, in the open batch. */
static int record_catalog(gd_engine *e, const gd_catalog_entry *const *adds, int nadds, const gd_catalog_entry *drop,
                          const gd_catalog_entry *terminate)
{
    gd_catalog_encode(e->cat, adds, nadds, drop, terminate, &e->tmp);
    return gd_store_meta_put(e->store, e->txn, "catalog", e->tmp.p, e->tmp.len);
}

/* Partitioned mode: a change made here goes into every changelog
 * partition ahead of this commit's marks, so every task's rows after it
 * find it; an instance applies the first copy it reads (ddl_seen_before),
 * numbered by its kind letter and 8 hex digits. Its key keeps one record
 * per name under compaction: a DROP takes its CREATE's key, so an instance
 * that joins later makes neither; a TERMINATE has a key of its own, after
 * its CREATE. */
static int send_change(gd_engine *e, gd_cmd_op op, const gd_catalog_entry *entry)
{
    gd_changelog_kind kind = op == GD_CMD_CREATE ? GD_CL_CREATE : op == GD_CMD_DROP ? GD_CL_DROP : GD_CL_TERMINATE;
    bool create = op == GD_CMD_CREATE;
    char numbered[10];
    snprintf(numbered, sizeof numbered, "%c%08x", entry->is_table ? 'T' : 'S', (unsigned)e->ddl_seq++);
    gd_str id = {numbered, 9};
    gd_str producer = {e->producer, GD_PRODUCER_LEN};
    ddl_seen_before(e, producer, id); /* this run's own: applied already */
    char origin[DDL_ID_LEN];
    int rc = GD_OK;
    if (entry->is_table && op != GD_CMD_TERMINATE)
        rc = set_origin(e, entry->name, create && ddl_id(producer, id, origin) ? origin : NULL);
    if (rc) return rc;
    gd_changelog_encode(&e->route_val, e->producer, kind, entry->name, id,
                        create ? gd_str_c(entry->sql) : gd_str_c(""));
    gd_buf_clear(&e->route_key);
    gd_buf_putc(&e->route_key, op == GD_CMD_TERMINATE ? 'T' : 'C');
    gd_buf_puts(&e->route_key, entry->name);
    memset(e->moved, 1, (size_t)e->changelog_partitions);
    for (int32_t c = 0; !rc && c < e->changelog_partitions; c++) rc = produce_changelog(e, c);
    return rc;
}

/* Refuses what cannot be applied; else writes the change into the txn. */
static int prepare_ddl(gd_engine *e, gd_catalog_cmd *cmd, char *why, size_t why_len)
{
    gd_cmd_op op = gd_catalog_cmd_op(cmd);
    gd_catalog_entry *entry = gd_catalog_cmd_entry(cmd);
    const gd_catalog_entry *add = NULL, *drop = NULL;
    if (e->partitioned && entry->is_table && gd_table_session(entry->table)) {
        snprintf(why, why_len, "SESSION windows are not supported in partitioned mode yet: an instance taking a "
                               "partition over would have to read the open sessions of its groups back first");
        return GD_ERR;
    }
    if (e->partitioned && entry->is_table && op == GD_CMD_CREATE && !gd_routes_fit(entry->table) &&
        !gd_routes_room(&e->routes, e->cfg, entry->name)) {
        snprintf(why, why_len, "in partitioned mode a table that does not GROUP BY game_id needs a route of its "
                               "own, and all %d are taken (a dropped table's stays until a restart), or its "
                               "name's topic is the game_id route's", GD_MAX_ROUTES);
        return GD_ERR;
    }
    if (op == GD_CMD_CREATE) {
        if (gd_catalog_name_taken(e->cat, gd_str_c(entry->name))) {
            snprintf(why, why_len, "a table or stream named %s exists", entry->name);
            return GD_ERR;
        }
        if (!gd_catalog_has_room(e->cat, entry)) {
            snprintf(why, why_len, "no room for another %s: drop one first", entry->is_table ? "table" : "stream");
            return GD_ERR;
        }
        entry->uid = gd_catalog_next_uid(e->cat);
        if (entry->is_table && gd_store_open_table(e->store, e->txn, entry->table, entry->uid)) {
            snprintf(why, why_len, "the store could not create the table's databases");
            return GD_ERR;
        }
        add = entry;
    } else if (op == GD_CMD_DROP) {
        const gd_catalog_entry *reader = gd_catalog_reader_of(e->cat, entry);
        if (reader) { /* created since the request was checked */
            snprintf(why, why_len, "Cannot drop %s: %s reads from it", entry->name, reader->name);
            return GD_ERR;
        }
        if (remove_rows(e, entry)) {
            snprintf(why, why_len, "the store could not delete the table's rows");
            return GD_ERR;
        }
        drop = entry;
    }
    if (record_catalog(e, &add, add != NULL, drop, op == GD_CMD_TERMINATE ? entry : NULL)) {
        snprintf(why, why_len, "the store could not record the change");
        return GD_ERR;
    }
    if (e->partitioned && send_change(e, op, entry)) {
        snprintf(why, why_len, "the change could not be sent to the changelog");
        return GD_ERR;
    }
    return GD_OK;
}

/* Prepares the first removal another instance made that still applies
 * here: its rows deleted and the catalog recorded in the open batch,
 * published at its commit. */
static void take_removal(gd_engine *e)
{
    while (e->nremovals && !e->removing) {
        gd_cmd_op op = e->removals[0].op;
        char name[sizeof e->removals[0].name];
        memcpy(name, e->removals[0].name, sizeof name);
        memmove(&e->removals[0], &e->removals[1], sizeof e->removals[0] * (size_t)--e->nremovals);
        gd_catalog_entry *entry = (gd_catalog_entry *)gd_catalog_find(e->cat, gd_str_c(name));
        if (!entry || entry->builtin || (op == GD_CMD_TERMINATE && atomic_load(&entry->terminated))) continue;
        const gd_catalog_entry *reader = op == GD_CMD_DROP ? gd_catalog_reader_of(e->cat, entry) : NULL;
        if (reader) {
            gd_warn("partitioned mode: %s, dropped by another instance, stays here: %s reads from it", name,
                    reader->name);
            continue;
        }
        if ((op == GD_CMD_DROP && (remove_rows(e, entry) || set_origin(e, name, NULL))) ||
            record_catalog(e, NULL, 0, op == GD_CMD_DROP ? entry : NULL, op == GD_CMD_TERMINATE ? entry : NULL)) {
            gd_error("partitioned mode: %s of %s by another instance could not be recorded", op == GD_CMD_DROP ? "DROP" : "TERMINATE", name);
            continue;
        }
        e->removing = entry;
        e->removing_op = op;
    }
}

/* A table or stream another instance made (partitioned mode): compiled
 * here, its databases opened in the batch, published at its commit (which
 * follows at once: the rows its owners write next must find it). */
static int adopt_definition(gd_engine *e, const gd_changelog_record *c)
{
    char name[128], why[256] = "no SQL compiler";
    snprintf(name, sizeof name, "%.*s", (int)c->table.len, c->table.p);
    if (gd_catalog_name_taken(e->cat, c->table) || (e->adopted && !strcmp(e->adopted->name, name))) return GD_OK;
    gd_catalog_entry *entry = e->cat->compile ? e->cat->compile(e->cat, c->key.len && c->key.p[0] == 'T',
                                                                c->value, why, sizeof why)
                                              : NULL;
    const gd_catalog_entry *mine = e->ddl ? gd_catalog_cmd_entry(e->ddl) : NULL;
    if (entry && (strcmp(entry->name, name) || !gd_catalog_has_room(e->cat, entry) || e->adopted ||
                  (mine && !strcmp(mine->name, name)))) {
        snprintf(why, sizeof why, "its name does not match, there is no room, or another change is pending");
        gd_catalog_entry_free(entry);
        entry = NULL;
    }
    if (!entry) {
        gd_warn("partitioned mode: %s, made by another instance, is left out here: %s", name, why);
        return GD_OK;
    }
    entry->uid = gd_catalog_next_uid(e->cat);
    if (mine && mine->uid >= entry->uid) entry->uid = mine->uid + 1; /* made here in this batch too */
    const gd_catalog_entry *adds[2] = {entry, mine};
    gd_catalog_encode(e->cat, adds, mine ? 2 : 1, NULL, NULL, &e->tmp);
    int rc = entry->is_table ? gd_store_open_table(e->store, e->txn, entry->table, entry->uid) : GD_OK;
    if (!rc) rc = gd_store_meta_put(e->store, e->txn, "catalog", e->tmp.p, e->tmp.len);
    char origin[DDL_ID_LEN];
    if (!rc && entry->is_table) rc = set_origin(e, name, ddl_id(c->producer, c->key, origin) ? origin : NULL);
    if (rc) {
        gd_catalog_entry_free(entry);
        return rc;
    }
    e->adopted = entry;
    return GD_OK;
}

/* The route whose records table entry, made while running, is kept from:
 * route 0 when it groups by game_id (route 0 carries every field a table
 * can read already: route.c), else one of its own, its topic made and read
 * from now on. Its windows, or NULL when it cannot be kept here. */
static gd_windows *keep_on_route(gd_engine *e, const gd_catalog_entry *entry)
{
    if (gd_routes_fit(entry->table)) {
        e->routes.r[0].tables |= 1ULL << entry->slot;
        return &e->win;
    }
    int had = e->routes.n, r = gd_routes_add(&e->routes, e->cfg, entry);
    if (r < 0) {
        gd_error("partitioned mode: table %s is not kept here: all %d routes are taken", entry->name, GD_MAX_ROUTES);
        return NULL;
    }
    if (r < had) return route_windows(e, r); /* its name's route, idle since a DROP */
    const char *topic = e->routes.r[r].topic;
    int32_t partitions = gd_output_route_topic(e->kafka_out, topic);
    if (partitions <= 0) partitions = e->route_partitions[0];
    e->route_partitions[r] = partitions;
    e->changelog_base[r] = gd_changelog_base(&e->routes, e->route_partitions, r, e->changelog_partitions);
    gd_windows *w = route_windows(e, r);
    gd_windows_init(w, e->cfg, e->cat, 0);
    w->push = &e->push;
    if (e->src->add_route(e->src, topic, partitions, e->changelog_base[r])) e->failed = GD_ERR;
    gd_info("partitioned mode: table %s has a route of its own, %s (%d partitions)", entry->name, topic,
            (int)partitions);
    return w;
}

/* A committed new table or stream made visible: in the catalog, and kept
 * (in partitioned mode on the route that carries every record, and pushed
 * through the relay). */
static bool publish_created(gd_engine *e, gd_catalog_entry *entry)
{
    const char *why;
    if (gd_catalog_add(e->cat, entry, &why)) {
        gd_error("catalog: %s: %s", entry->name, why); /* checked before */
        return false;
    }
    if (e->partitioned && entry->is_table) {
        gd_windows *w = keep_on_route(e, entry);
        if (w) gd_windows_add(w, entry->table, e->store, NULL, INT64_MIN); /* new: empty */
    } else if (entry->is_table) {
        gd_windows_add(windows_at(e, thread_of(e, entry->table)), entry->table, e->store, NULL, INT64_MIN);
    }
    if (e->push.relay) gd_relay_catalog_changed(e->push.relay);
    list_derived(e);
    gd_info("created %s %s", entry->is_table ? "table" : "stream", entry->name);
    return true;
}

/* A committed DROP or TERMINATE made visible: its windows no longer kept,
 * the entry gone from the catalog or marked terminated. */
static void publish_removal(gd_engine *e, gd_cmd_op op, gd_catalog_entry *entry)
{
    if (entry->is_table && !entry->error) { /* a quarantined table has no windows */
        for (int i = 0; i < windows_count(e); i++) gd_windows_remove(windows_at(e, i), entry->slot);
        if (e->partitioned) gd_routes_drop_table(&e->routes, entry->slot);
    }
    bool dropped = op == GD_CMD_DROP;
    char name[128];
    snprintf(name, sizeof name, "%s", entry->name);
    if (dropped) gd_catalog_remove(e->cat, entry);
    else atomic_store(&entry->terminated, true);
    if (e->push.relay) gd_relay_catalog_changed(e->push.relay); /* a dropped stream is carried no more */
    list_derived(e);
    gd_info("%s %s", dropped ? "dropped" : "terminated the query of", name);
}

/* Makes a committed change visible: the catalog, and the windows kept. */
static void publish_ddl(gd_engine *e, gd_catalog_cmd *cmd)
{
    gd_cmd_op op = gd_catalog_cmd_op(cmd);
    gd_catalog_entry *entry = gd_catalog_cmd_entry(cmd);
    if (op == GD_CMD_CREATE) publish_created(e, entry);
    else publish_removal(e, op, entry);
}

/* The next catalog change asked for, prepared in the open batch (e->ddl)
 * or refused; one change per commit, another instance's included. */
static void take_ddl(gd_engine *e)
{
    if (e->ddl || e->adopted || e->removing) return;
    take_removal(e); /* another instance's first: it was made earlier */
    if (e->removing || !gd_catalog_pending(e->cat)) return;
    gd_catalog_cmd *ddl = gd_catalog_take(e->cat);
    char why[256] = "";
    if (prepare_ddl(e, ddl, why, sizeof why)) gd_catalog_finish(e->cat, ddl, GD_ERR, why); /* nothing written */
    else e->ddl = ddl;
}

/* GD_AGAIN: the brokers have not acknowledged the output yet; the batch
 * stays open and the commit is tried again an interval later. */
static int commit_batch(gd_engine *e)
{
    if (!e->batch_open) return GD_OK;
    if (drain_workers(e)) return GD_ERR; /* a record not produced: commit nothing */
    if (e->route_batched && send_route_batches(e)) return GD_ERR; /* the routes hold what is committed */
    if (gd_output_flush(e->kafka_out)) {
        if (gd_ratelimit_allow(&e->postpone_log))
            gd_warn("kafka: output not acknowledged yet; state commit postponed");
        e->batch_start_ns = gd_mono_ns();
        return GD_AGAIN;
    }
    int64_t writing_since = gd_mono_ns();
    int rc = e->txn ? GD_OK : begin_write(e);
    if (rc) return rc;
    rc = gd_refs_flush(&e->refs, e->store, e->txn, &e->tmp);
    int64_t now = gd_now_ms();
    if (e->partitioned) { /* the rows written go to the changelog too, then the mark */
        e->store->tap = changelog_row;
        e->store->tap_ctx = e;
    }
    if (!rc && e->nworkers) { /* drained above: the workers encode their rows while we write ours */
        for (int i = 0; i < windows_count(e); i++) /* what not to write */
            gd_windows_expire(windows_at(e, i), e->stream_time, now);
        gd_windows *own = &e->win; /* no routes with workers */
        rc = gd_workers_write_dirty(e->workers, &own, 1, e->txn); /* their store is ours */
    }
    for (int i = 0; !rc && i < windows_count(e); i++)
        rc = gd_windows_flush(windows_at(e, i), e->store, e->txn, e->stream_time, now);
    e->store->tap = NULL;
    if (!rc) take_ddl(e); /* after the rows (a drop's are gone for good), before the mark (a create's record) */
    /* no mark without news: instances would echo each other's */
    if (!rc && e->partitioned && memchr(e->moved, 1, (size_t)e->changelog_partitions)) {
        rc = changelog_mark(e);
        if (!rc && gd_output_flush(e->kafka_out)) { /* the txn stays open with them; tried again later */
            e->batch_start_ns = gd_mono_ns();
            return GD_AGAIN;
        }
        gd_buf_clear(&e->tmp);
        put_applied_lines(e, &e->tmp, false);
        if (!rc) rc = gd_store_meta_put(e->store, e->txn, "applied", e->tmp.p, e->tmp.len);
        memset(e->moved, 0, (size_t)e->changelog_partitions);
    }
    if (!rc && e->ddl_seen_changed) {
        rc = gd_store_meta_put(e->store, e->txn, "ddl_seen", e->ddl_seen.p, e->ddl_seen.len);
        e->ddl_seen_changed = false;
    }
    if (!rc) {
        gd_buf_clear(&e->tmp);
        gd_buf_put(&e->tmp, e->src->identity, strlen(e->src->identity) + 1);
        e->src->position(e->src, &e->tmp);
        if (e->partitioned) put_changelog_resume(e, &e->tmp); /* unmarked rows are read again after a restart */
        rc = gd_store_meta_put(e->store, e->txn, "position", e->tmp.p, e->tmp.len);
    }
    if (!rc) {
        gd_buf_clear(&e->tmp);
        gd_buf_put_u64be(&e->tmp, (uint64_t)e->stream_time);
        rc = gd_store_meta_put(e->store, e->txn, "stream_time", e->tmp.p, e->tmp.len);
    }
    if (!rc) rc = gd_store_meta_put(e->store, e->txn, "counters", &e->n, sizeof e->n);
    if (!rc) rc = gd_emitter_write_lines(&e->emit);
    if (!rc && e->out && fflush(e->out)) rc = GD_ERR;
    if (!rc) {
        note_commit_state(e);
        gd_committer_commit(e->committer, e->txn);
        e->commit_pending = true;
        e->commit_began_ns = writing_since;
    } else {
        gd_committer_abort(e->committer, e->txn);
    }
    e->txn = NULL;
    e->batch_open = false;
    /* a change of the catalog is published once committed; partitioned mode's
     * marks and revokes count on the commit too */
    if (!rc && (e->ddl || e->adopted || e->removing || e->partitioned)) rc = collect_commit(e, true);
    atomic_fetch_add(&e->pub->commit_ns, (uint64_t)(gd_mono_ns() - writing_since));
    gd_catalog_cmd *ddl = e->ddl;
    gd_catalog_entry *adopted = e->adopted;
    e->ddl = NULL;
    e->adopted = NULL;
    if (ddl) {
        if (!rc) publish_ddl(e, ddl);
        gd_catalog_finish(e->cat, ddl, rc ? GD_ERR : GD_OK, rc ? "the store could not commit the change" : NULL);
    }
    if (adopted && (rc || !publish_created(e, adopted))) gd_catalog_entry_free(adopted);
    gd_catalog_entry *removing = e->removing;
    e->removing = NULL;
    if (removing && !rc) publish_removal(e, e->removing_op, removing);
    return rc;
}

/* Counted, logged (rate limited), sent to the dead-letter topic, skipped. */
static void count_bad_for(gd_engine *e, const gd_record *rec, const char *why, gd_bad_reason reason)
{
    gd_topic topic = rec->topic;
    why = why ? why : "undecodable";
    e->n.bad_records[topic]++;
    e->n.bad_by_reason[reason]++;
    if (gd_ratelimit_allow(&e->bad_log))
        gd_warn("bad record on %s skipped: %s", topic < GD_TOPIC_COUNT ? e->cfg->topics[topic] : "an unknown topic", why);
    if (gd_output_dead_letter(e->kafka_out, rec, why)) e->failed = GD_ERR;
}

static void count_bad(gd_engine *e, const gd_record *rec, const char *why)
{
    count_bad_for(e, rec, why, GD_BAD_INVALID);
}

/* A reference row after its change (row NULL: deleted) to its table's
 * push stream. */
static void publish_reference(gd_engine *e, gd_topic topic, gd_str key, const void *row)
{
    bool games = topic == GD_TOPIC_GAMES;
    const gd_tabledef *t = games ? e->refs.games_table : e->refs.players_table;
    unsigned stream = gd_table_hub(t->slot);
    uint64_t id = e->n.records_in[topic];
    if (!gd_push_sink_wanted(&e->push, stream, id)) return;
    gd_buf_clear(&e->tmp);
    if (!row) {
        gd_buf_putc(&e->tmp, '{');
        gd_json_put_cstr(&e->tmp, t->keys[0].name);
        gd_buf_putc(&e->tmp, ':');
        gd_json_put_str(&e->tmp, key);
        gd_buf_puts(&e->tmp, ",\"deleted\":true}");
    } else if (games) {
        gd_render_game(key, row, &e->tmp);
    } else {
        gd_render_player(key, row, &e->tmp);
    }
    gd_push_sink_publish(&e->push, stream, id, e->tmp.p, e->tmp.len);
}

/* A source record as decoded, to its topic's push stream. */
static void publish_source(gd_engine *e, unsigned slot, gd_topic topic, const gd_fieldspec *fields, const void *row)
{
    uint64_t id = e->n.records_in[topic];
    if (!gd_push_sink_wanted(&e->push, gd_stream_hub(slot), id)) return;
    gd_buf_clear(&e->tmp);
    gd_render_fields(fields, row, &e->tmp);
    gd_push_sink_publish(&e->push, gd_stream_hub(slot), id, e->tmp.p, e->tmp.len);
}

/* A record of a reference topic as decoded, read by its fields' places. */
typedef struct {
    const gd_fieldspec *fields;
    const void *row;
} source_row;

static gd_value source_column(const void *row, int index)
{
    const source_row *r = row;
    return gd_fieldspec_value(&r->fields[index], r->row);
}

/* A games or players record to the streams derived from its stream. */
static void publish_derived_reference(gd_engine *e, gd_topic topic, const gd_fieldspec *fields, const void *row)
{
    if (!e->derived.n) return; /* no clock read for a stream no one derived */
    source_row r = {fields, row};
    gd_eval ctx = {.column = source_column, .row = &r, .now_ms = gd_now_ms(), .scratch = &e->scratch};
    gd_publish_derived(&e->push, &e->derived, &e->tmp, topic == GD_TOPIC_GAMES ? GD_SRC_GAMES : GD_SRC_PLAYERS, &ctx,
                       e->n.records_in[topic]);
}

static void process_reference(gd_engine *e, const gd_record *rec)
{
    const char *why = NULL;
    gd_str key = rec->key;
    if (!rec->value.p) { /* tombstone */
        if (!key.p || !key.len) return count_bad(e, rec, "tombstone without a key");
        gd_refs_delete(&e->refs, rec->topic, key);
        return publish_reference(e, rec->topic, key, NULL);
    }
    if (rec->topic == GD_TOPIC_GAMES) {
        gd_game g;
        int rc = gd_decode_game(e->avro, rec->value, &e->scratch, &g, &why);
        if (rc == GD_AGAIN) {
            e->failed = GD_AGAIN;
            return;
        }
        if (rc) return count_bad(e, rec, why);
        if (!key.p || !key.len) key = g.game_id;
        if (!key.p || !key.len) return count_bad(e, rec, "no record key and no game_id");
        gd_refs_put_game(&e->refs, key, &g);
        publish_reference(e, rec->topic, key, &g);
        publish_source(e, GD_STREAM_GAMES, GD_TOPIC_GAMES, gd_game_fields, &g);
        publish_derived_reference(e, GD_TOPIC_GAMES, gd_game_fields, &g);
    } else {
        gd_player p;
        int rc = gd_decode_player(e->avro, rec->value, &e->scratch, &p, &why);
        if (rc == GD_AGAIN) {
            e->failed = GD_AGAIN;
            return;
        }
        if (rc) return count_bad(e, rec, why);
        if (!key.p || !key.len) key = p.player_id;
        if (!key.p || !key.len) return count_bad(e, rec, "no record key and no player_id");
        gd_refs_put_player(&e->refs, key, &p);
        publish_reference(e, rec->topic, key, &p);
        publish_source(e, GD_STREAM_PLAYERS, GD_TOPIC_PLAYERS, gd_player_fields, &p);
        publish_derived_reference(e, GD_TOPIC_PLAYERS, gd_player_fields, &p);
    }
}

static void apply_enriched(gd_engine *e, gd_enriched *en);

static void process_activity(gd_engine *e, const gd_record *rec)
{
    const char *why = NULL;
    gd_activity a;
    if (!rec->value.p) return count_bad(e, rec, "activity tombstone");
    int rc = gd_decode_activity(e->avro, rec->value, &e->scratch, &a, &why);
    if (rc == GD_AGAIN) { /* stopping: the record is read again at restart */
        e->failed = GD_AGAIN;
        return;
    }
    if (rc) return count_bad(e, rec, why);
    int64_t now = gd_now_ms();
    if (a.activity_timestamp > now + e->cfg->max_future_ms) {
        char msg[160];
        snprintf(msg, sizeof msg, "activity_timestamp %lld is %lld s ahead of the wall clock (more than --max-future)",
                 (long long)a.activity_timestamp, (long long)((a.activity_timestamp - now) / 1000));
        return count_bad_for(e, rec, msg, GD_BAD_FUTURE);
    }
    publish_source(e, GD_STREAM_ACTIVITY, GD_TOPIC_ACTIVITY, gd_activity_fields, &a);
    gd_enriched en;
    gd_enrich(&en, &a, &e->refs, now);
    if (e->partitioned) { /* its tables are kept where its routes lead */
        if (route_activity(e, rec, &en)) e->failed = GD_ERR;
        return;
    }
    apply_enriched(e, &en);
}

/* A record of route r: its tables here, and on route 0 the figures and the
 * enriched record out, unless it was applied before (sent twice). */
static void apply_route_record(gd_engine *e, const gd_record *rec, gd_str one)
{
    gd_route_record rr;
    if (gd_route_decode(one, &rr)) {
        if (gd_ratelimit_allow(&e->bad_log)) gd_warn("an undecodable record on a route topic skipped");
        return;
    }
    int64_t *applied = applied_offset(e, rec->route, rec->partition, rr.src_partition);
    note_moved(e, rec->route, rec->partition);
    if (rr.src_offset < *applied) return; /* sent twice */
    *applied = rr.src_offset + 1;
    gd_enriched en;
    gd_enrich_with(&en, &rr.a, rr.has_game ? &rr.game : NULL, rr.has_player ? &rr.player : NULL,
                   rr.processing_timestamp);
    if (rec->route == 0) return apply_enriched(e, &en);
    if (rr.a.activity_timestamp > e->stream_time) e->stream_time = rr.a.activity_timestamp;
    gd_windows_apply(route_windows(e, rec->route), &en, e->stream_time, e->store, reading_txn(e));
}

/* A message of route r: each of its records (a batch, or one alone). */
static void process_route(gd_engine *e, const gd_record *rec)
{
    gd_route_reader reader;
    gd_route_reader_init(&reader, rec->route < e->routes.n ? rec->value : GD_STR_NULL);
    gd_str one;
    int got;
    while ((got = gd_route_reader_next(&reader, &one)) == GD_OK) {
        gd_arena_reset(&e->scratch);
        apply_route_record(e, rec, one);
    }
    if ((got == GD_ERR || !rec->value.p || rec->route >= e->routes.n) && gd_ratelimit_allow(&e->bad_log))
        gd_warn("an undecodable message on a route topic skipped");
}

/* An enriched record into the tables (in partitioned mode, route 0's), its
 * figures from them, then out: the output, the push streams. */
static void apply_enriched(gd_engine *e, gd_enriched *enp)
{
    gd_enriched en = *enp;
    const gd_activity *ap = en.a;
    if (ap->activity_timestamp > e->stream_time) e->stream_time = ap->activity_timestamp;
    en.seq = e->n.records_out + 1;
    bool late = gd_windows_apply(&e->win, &en, e->stream_time, e->store, reading_txn(e));
    bool queued = false;
    if (e->nworkers) {
        for (int i = 0; i < e->nworkers && !late; i++) /* figures worked out by worker 0: it tells the rest */
            late = gd_windows_late(&e->win_worker[i], &en, e->stream_time, &e->scratch, !e->worker_emits);
        queued = gd_workers_push(e->workers, &en, e->stream_time, late);
        if (!queued) { /* too big for a ring slot: applied here, the workers drained first */
            drain_workers(e);
            for (int i = 0; i < e->nworkers; i++) {
                bool late_here = gd_windows_apply(&e->win_worker[i], &en, e->stream_time, e->store, reading_txn(e));
                if (i == 0 && e->worker_emits) late = late || late_here;
            }
        }
        if (gd_workers_failed(e->workers)) e->failed = GD_ERR;
    }
    if (late) e->n.late_records++;
    e->n.with_game += en.game != NULL;
    e->n.with_player += en.player != NULL;
    e->n.records_out++;
    e->last_lag_ms = en.processing_timestamp - ap->activity_timestamp;
    if (queued && e->worker_emits) return; /* worker 0 sends it out */
    gd_emit_enriched(&e->emit, &en, !(queued && e->worker_produces));
    if (e->emit.failed) e->failed = GD_ERR;
}

static void process(gd_engine *e, const gd_record *rec)
{
    gd_arena_reset(&e->scratch);
    if (rec->kind == GD_REC_CHANGELOG) {
        if (process_changelog(e, rec)) e->failed = GD_ERR;
        return;
    }
    if (rec->kind == GD_REC_ROUTE) return process_route(e, rec);
    if (rec->kind == GD_REC_PUSH) return gd_relay_receive(e->push.relay, rec);
    e->n.records_in[rec->topic]++;
    if (rec->topic == GD_TOPIC_ACTIVITY) process_activity(e, rec);
    else process_reference(e, rec);
}

/* On stop: the last batch is committed once the brokers hold its output,
 * waited for at most half of --shutdown-timeout (the rest is for closing).
 * Past that, the state stays at the last commit, which is safe: the output
 * since then is produced again after the restart reads those records again. */
static int final_commit(gd_engine *e)
{
    int64_t give_up = gd_mono_ns() + e->cfg->shutdown_timeout_ms * 1000000 / 2;
    for (;;) {
        int rc = commit_batch(e);
        if (rc == GD_OK) rc = collect_commit(e, true);
        if (rc == GD_OK) gd_info("stopping: state committed");
        if (rc != GD_AGAIN) return rc;
        if (gd_mono_ns() >= give_up) {
            gd_warn("stopping: %zu output records were not acknowledged by the brokers within --shutdown-timeout; "
                    "the state stays at the last commit, and the records since then are read and produced again "
                    "at restart", gd_output_pending(e->kafka_out));
            return GD_OK;
        }
    }
}

/* Rows the open batch will write, every table's (the workers' as they go). */
static size_t dirty_rows(gd_engine *e)
{
    size_t n = 0;
    for (int i = 0; i < windows_count(e); i++)
        n += atomic_load_explicit(&windows_at(e, i)->dirty_rows, memory_order_relaxed);
    return n;
}

/* Whether the open batch holds BUSY_COMMIT_ROWS dirty groups. The workers'
 * counts trail the records handed to them by up to a ring, so they catch
 * up before each look: at ROWS_FIRST_CHECK records into the batch, then
 * halfway to where the bound falls at the batch's rate so far, a look every
 * 256 records at the closest. Where the batch ends then depends on its
 * records alone -- the same record on every run and thread layout, and so
 * the same pages, which bound the data file (store.h) -- for a dozen waits
 * a batch. (A wait every 256 records past half the bound cost a replay
 * 15-25% of its rate; a decision on the trailing counts made the file of
 * one replay vary by 1.35x.) */
static bool batch_rows_full(gd_engine *e)
{
    if (!e->nworkers) return dirty_rows(e) >= BUSY_COMMIT_ROWS;
    if (e->batch_records < e->rows_check_at) return false;
    gd_workers_drain(e->workers);
    size_t n = dirty_rows(e);
    if (n >= BUSY_COMMIT_ROWS) return true;
    size_t per_record = n / e->batch_records + 1; /* rounded up */
    size_t step = (BUSY_COMMIT_ROWS - n) / per_record / 2;
    e->rows_check_at = e->batch_records + (step < 256 ? 256 : (uint32_t)(step + 255) / 256 * 256);
    return false;
}

/* A commit the brokers postponed is not an error: the run goes on. */
static int commit_or_postpone(gd_engine *e)
{
    int rc = commit_batch(e);
    return rc == GD_AGAIN ? GD_OK : rc;
}

int gd_engine_run(gd_engine *e)
{
    int rc = GD_OK;
    bool at_end = false, ready = false;
    while (!atomic_load_explicit(e->stop, memory_order_relaxed)) {
        if (!ready && e->src->endless && e->src->caught_up) /* serving live data */
            atomic_store(&e->pub->ready, ready = true);
        if ((rc = collect_commit(e, false)) || (rc = begin_batch(e))) break;
        if (e->push.relay && (rc = gd_relay_tick(e->push.relay))) break;
        gd_record rec = {.topic = GD_TOPIC_UNKNOWN};
        int got = e->src->next(e->src, &rec);
        if (got == GD_OK) {
            at_end = false;
            process(e, &rec);
            e->batch_records++;
        } else if (got == GD_EBADREC) {
            e->n.records_in[rec.topic]++;
            count_bad_for(e, &rec, e->src->error, e->src->error_reason);
            e->batch_records++;
        } else if (got == GD_AGAIN || got == GD_EOF) {
            if (e->nworkers) gd_workers_flush(e->workers); /* nothing to read: no worker need wait for a batch */
            if (e->route_batched && (rc = send_route_batches(e))) break; /* nor a route for a message */
            bool due = gd_mono_ns() - e->batch_start_ns >= e->live_interval_ns;
            bool purge = gd_catalog_pending(e->cat);
            for (int i = 0; i < windows_count(e); i++) purge = purge || windows_at(e, i)->purge_pending;
            if ((e->batch_records || purge) && (got == GD_EOF || due)) {
                if ((rc = commit_or_postpone(e))) break;
                continue;
            }
            if (got == GD_EOF && !at_end) {
                /* everything applied and committed: caught up */
                if ((rc = commit_or_postpone(e)) || (rc = collect_commit(e, true))) break;
                at_end = true;
                atomic_store(&e->pub->ready, true);
                gd_info("source %s applied to its end", e->src->kind);
            }
            measure_rate(e);
            gd_output_poll(e->kafka_out);
            gd_sleep_ms(got == GD_EOF ? 50 : 1);
            continue;
        } else {
            rc = got;
            break;
        }
        if (e->failed || e->push.failed) {
            rc = e->failed ? e->failed : GD_ERR;
            break;
        }
        if (e->adopted || e->nremovals || /* another instance's change: at once */
            e->batch_records >= e->cfg->batch_records ||
            (e->batch_records % 256 == 0 &&
             (gd_mono_ns() - e->batch_start_ns >= BUSY_COMMIT_FACTOR * e->cfg->commit_interval_ms * 1000000 ||
              batch_rows_full(e)))) {
            if ((rc = commit_or_postpone(e))) break;
        }
    }
    if (rc == GD_AGAIN && atomic_load(e->stop)) {
        gd_warn("stopping while the schema registry was unreachable: the records since the last commit are read "
                "again at restart");
        return GD_OK;
    }
    if (rc) return rc; /* uncommitted: read again after a restart */
    return final_commit(e);
}
