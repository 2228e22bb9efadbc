/* route.c -- partitioned mode (--partitioned, SPEC §11): what crosses Kafka
 * between the instances that share an application id.
 *
 * Kafka Streams' shape, on gamingd's tables. The activity topic is read in
 * one consumer group shared by the instances; whoever holds a partition
 * decodes, checks and enriches its records (every instance holds the whole
 * reference tables) and sends each one to the repartition topics, to the
 * partition its key picks (in batches, below), so that every group of
 * every table is kept by exactly one instance:
 *
 *  - one route keyed by game_id carries every record, for every table that
 *    groups by game_id among other keys (a group then never spans two
 *    partitions), the enriched record's figures (they come from two such
 *    tables) and the enriched output;
 *  - each other table has a route of its own, keyed by its group key, and
 *    carrying only the records that go into it.
 *
 * A route record carries the activity as decoded, the game and player rows
 * it was joined with and its processing time, so the instance that keeps the
 * table sees exactly what the routing instance saw (joining again there could
 * put a record under a genre whose partition another instance keeps); and
 * the source partition and offset, so a record sent twice (the router died
 * after sending and before committing) is recognised and skipped.
 *
 * Of those rows, a route carries only the fields its consumers read (its
 * `fields`, a bit per source field, worked out once when the routes are
 * planned): a table's route what its keys, WHERE and aggregate arguments
 * read (GD_E_COL nodes and field ids are enriched fields; route_sources
 * says which source fields each is made of), route 0 everything an enriched
 * field can show -- the output, the push streams and derived streams made
 * while running read them all; a table made while running joins route 0,
 * whose fields then cover it already -- which leaves out only what no
 * enriched field reads (release date, price, sign-up date, play time, the
 * rows' own ids). Every route also carries the event time, the ids and the
 * activity type the decoder requires. A field left out decodes as NULL,
 * which nothing reading that route looks at, so every answer stays the
 * same; the record names its fields (a bitmap), so a decoder needs nothing
 * but the bytes to read it, and refuses fields it does not know. (Records
 * of the earlier encoding, whole rows after an 'R', are refused.)
 *
 * The changelog carries every row an instance writes to its windowed
 * tables, each on the partition of its task (a route partition; a row's is
 * the one its group's records come on, gd_route_row_key; engine.c numbers
 * them), and after the rows of each commit, on each partition they went
 * to, a mark with the positions that partition's task reached. Every instance
 * applies the others' rows to its own LMDB, a commit at a time (rows after
 * a producer's last mark on their partition are not applied: that commit
 * never happened), so any instance answers every query from its own store;
 * and an instance that takes a partition over finds the state and position
 * of its previous owner there, restored from Kafka, not from the other's
 * disk. A table or stream made while running travels in the changelog too
 * (GD_CL_CREATE), a copy on every partition so that every task's rows
 * come after it, the first copy read applied and the others skipped by
 * their number; so do DROP and TERMINATE (GD_CL_DROP, GD_CL_TERMINATE). A
 * table made while running that groups by game_id joins route 0; one that
 * does not gets a route of its own (gd_routes_add) on every instance as it
 * learns of the table, its topic subscribed to while running. A route is
 * known between instances by its topic's name, never by its number here,
 * which depends on when an instance learnt of it: the announcements, the
 * marks' "#applied" lines and the changelog partitions of its tasks
 * (gd_changelog_base) all go by the name. */
#include <string.h>

#include "window.h"

static bool groups_by_game(const gd_tabledef *def)
{
    for (int k = 0; k < def->nkeys; k++)
        if (def->keys[k].field == GD_F_GAME_ID) return true;
    return false;
}

/* ---- the fields a route carries ----
 * Bit i of a route's fields is the i-th source field of the activity, then
 * of the game, then of the player (their gd_fieldspec order). */

static const gd_fieldspec *const route_rows[] = {gd_activity_fields, gd_game_fields, gd_player_fields};
static const gd_topic route_row_topics[] = {GD_TOPIC_ACTIVITY, GD_TOPIC_GAMES, GD_TOPIC_PLAYERS};

/* The bit of the source field of topic named name (0: none). */
static uint32_t source_bit(gd_topic topic, const char *name)
{
    unsigned bit = 0;
    for (int row = 0; row < 3; row++)
        for (const gd_fieldspec *f = route_rows[row]; f->name; f++, bit++)
            if (route_row_topics[row] == topic && !strcmp(f->name, name)) return 1u << bit;
    return 0;
}

/* The source fields enriched field f is made of: the one it copies
 * (gd_output_fields), or the activity's field SPEC §4 derives it from
 * (gd_enrich_with). The times always travel; the figures are route 0's own. */
static uint32_t route_sources(gd_field f)
{
    if (f == GD_F_PLAYER_SEGMENT) return source_bit(GD_TOPIC_ACTIVITY, "score");
    if (f == GD_F_SESSION_TYPE) return source_bit(GD_TOPIC_ACTIVITY, "duration_seconds");
    if (f == GD_F_HAS_PURCHASE) return source_bit(GD_TOPIC_ACTIVITY, "in_game_purchases");
    for (size_t i = 0; i < gd_output_field_count; i++)
        if (gd_output_fields[i].field == f && gd_output_fields[i].from_field)
            return source_bit(gd_output_fields[i].from_topic, gd_output_fields[i].from_field);
    return 0;
}

/* What every route carries: what the decoder requires. */
static uint32_t required_sources(void)
{
    return source_bit(GD_TOPIC_ACTIVITY, "activity_timestamp") | route_sources(GD_F_GAME_ID) |
           route_sources(GD_F_PLAYER_ID) | route_sources(GD_F_ACTIVITY_TYPE);
}

static bool note_sources(gd_field f, void *bits)
{
    *(uint32_t *)bits |= route_sources(f);
    return false; /* on through every field */
}

/* The source fields table def reads from a record (HAVING and expression
 * columns read keys and slots). */
static uint32_t table_sources(const gd_tabledef *def)
{
    uint32_t bits = 0;
    gd_table_reads_any(def, note_sources, &bits);
    return bits;
}

/* Route 0's: every source field an enriched field shows. */
static uint32_t enriched_sources(void)
{
    uint32_t bits = 0;
    for (int f = GD_F_NONE; f < GD_F_COUNT; f++) bits |= route_sources((gd_field)f);
    return bits;
}

void gd_route_topic(const gd_config *cfg, const char *table, char *out, size_t n)
{
    snprintf(out, n, "%s-repartition-%s", cfg->application_id, table);
}

/* Route r (free) set up for table entry: keyed by its group key, carrying
 * what it reads. */
static void route_table(gd_routes *rt, int r, const gd_config *cfg, const gd_catalog_entry *e)
{
    gd_route *route = &rt->r[r];
    route->keyed_by = e->table;
    route->tables = 1ULL << e->slot;
    route->fields = required_sources() | table_sources(e->table);
    route->made_by_user = !e->builtin;
    gd_route_topic(cfg, e->table->name, route->topic, sizeof route->topic);
}

int gd_routes_plan(gd_routes *rt, const gd_config *cfg, const gd_catalog *cat)
{
    memset(rt, 0, sizeof *rt);
    rt->n = 1;
    rt->r[0].fields = required_sources() | enriched_sources();
    gd_route_topic(cfg, "game_id", rt->r[0].topic, sizeof rt->r[0].topic);
    for (unsigned i = 0; i < GD_MAX_TABLES; i++) {
        const gd_catalog_entry *e = gd_catalog_table(cat, i);
        if (!e || !gd_table_aggregates(e->table)) continue;
        if (gd_table_session(e->table)) {
            gd_error("partitioned mode: table %s has SESSION windows, which it does not support yet", e->name);
            return GD_ERR;
        }
        if (groups_by_game(e->table)) {
            rt->r[0].tables |= 1ULL << i;
            continue;
        }
        if (rt->n == GD_MAX_ROUTES) {
            gd_error("partitioned mode: more than %d tables that do not group by game_id", GD_MAX_ROUTES - 1);
            return GD_ERR;
        }
        route_table(rt, rt->n++, cfg, e);
    }
    snprintf(rt->changelog, sizeof rt->changelog, "%s-changelog", cfg->application_id);
    return GD_OK;
}

bool gd_routes_fit(const gd_tabledef *def) { return groups_by_game(def); }

/* The route a table named `table` made while running takes: the idle one
 * of a table of its name dropped before, else a new one (rt->n); -1 when
 * its name's route is taken (route 0's, or a table's) or none is left. */
static int route_for(const gd_routes *rt, const gd_config *cfg, const char *table)
{
    char topic[sizeof rt->r[0].topic];
    gd_route_topic(cfg, table, topic, sizeof topic);
    int r = gd_routes_find(rt, gd_str_c(topic));
    if (r >= 0) return r > 0 && !rt->r[r].tables ? r : -1;
    return rt->n < GD_MAX_ROUTES ? rt->n : -1;
}

bool gd_routes_room(const gd_routes *rt, const gd_config *cfg, const char *table)
{
    return route_for(rt, cfg, table) >= 0;
}

int gd_routes_add(gd_routes *rt, const gd_config *cfg, const gd_catalog_entry *e)
{
    int r = route_for(rt, cfg, e->table->name);
    if (r < 0) return -1;
    if (r == rt->n) rt->n++;
    route_table(rt, r, cfg, e);
    return r;
}

void gd_routes_drop_table(gd_routes *rt, unsigned slot)
{
    for (int r = 0; r < rt->n; r++) {
        rt->r[r].tables &= ~(1ULL << slot);
        if (r > 0 && !rt->r[r].tables) rt->r[r].keyed_by = NULL; /* idle until its table is made again */
    }
}

int32_t gd_changelog_base(const gd_routes *rt, const int32_t *route_partitions, int r, int32_t changelog_partitions)
{
    if (rt->r[r].made_by_user) return gd_kafka_key_partition(gd_str_c(rt->r[r].topic), changelog_partitions);
    int32_t base = 0;
    for (int i = 0; i < r; i++)
        if (!rt->r[i].made_by_user) base += route_partitions[i];
    return base % changelog_partitions;
}

int32_t gd_changelog_partition(int32_t base, int32_t p, int32_t changelog_partitions)
{
    return (int32_t)(((int64_t)base + p) % changelog_partitions);
}

int gd_routes_find(const gd_routes *rt, gd_str topic)
{
    for (int i = 0; i < rt->n; i++)
        if (gd_str_eq(topic, gd_str_c(rt->r[i].topic))) return i;
    return -1;
}

bool gd_route_key(const gd_route *r, const gd_enriched *e, gd_arena *scratch, gd_buf *key, gd_buf *text)
{
    if (!r->keyed_by) {
        gd_buf_clear(key);
        if (!e->a->game_id.p) gd_buf_puts(key, "\x01"); /* no game: one partition keeps them all */
        else gd_buf_put(key, e->a->game_id.p, e->a->game_id.len);
        return true;
    }
    if (!gd_table_group_key(r->keyed_by, e, scratch, text, key)) return false;
    /* the table's name first: a key is never empty, and tables sharing a
     * key value still spread over partitions independently */
    gd_buf_clear(key);
    gd_buf_puts(key, r->keyed_by->name);
    gd_buf_putc(key, 0);
    gd_buf_put(key, text->p, text->len);
    return true;
}

int gd_routes_of_table(const gd_routes *rt, const gd_tabledef *def)
{
    for (int r = 0; r < rt->n; r++)
        if (rt->r[r].tables >> def->slot & 1) return r;
    return -1;
}

bool gd_route_row_key(const gd_route *r, const gd_tabledef *def, gd_str row_key, gd_buf *key)
{
    if (row_key.len < 8) return false; /* a window start, then the group key (store/tables.h) */
    gd_str group = {row_key.p + 8, row_key.len - 8}, cols[GD_MAX_KEYS];
    gd_buf_clear(key);
    if (r->keyed_by) { /* gd_route_key's: the table's name, then the group key as the row has it */
        gd_buf_puts(key, r->keyed_by->name);
        gd_buf_putc(key, 0);
        gd_buf_put(key, group.p, group.len);
        return true;
    }
    if (gd_groupkey_split(group.p, group.len, def->nkeys, cols)) return false;
    for (int k = 0; k < def->nkeys; k++)
        if (def->keys[k].field == GD_F_GAME_ID) { /* a string: kept as it came */
            gd_buf_put(key, cols[k].p, cols[k].len);
            return true;
        }
    return false;
}

/* ---- route records ----
 * 'F', the source partition (4 bytes) and offset (8), the processing time
 * (8), the fields carried (4: a bit each, as above), then of the activity's
 * fields those carried, a byte 1 before the game's row (0 when the join
 * found none) and its fields carried, the same for the player's. A string
 * is its length (4 bytes, all ones: null) and bytes; a number a byte (set)
 * and 8. A field not carried takes no byte and decodes as NULL; the event
 * time (the activity's one GD_FT_TS field) is always carried. */

/* 'R': a record of a gamingd from before routes were trimmed, read on so
 * that a cluster upgraded in place loses none left in the route topics:
 * the same, with no field bits and every field carried. */
enum { ROUTE_MAGIC = 'F', WHOLE_ROUTE_MAGIC = 'R', NULL_LEN = 0xffffffffu };

/* Every source field's bit: what a whole ('R') record carries. */
static uint32_t all_sources(void)
{
    unsigned n = 0;
    for (size_t row = 0; row < sizeof route_rows / sizeof *route_rows; row++)
        for (const gd_fieldspec *f = route_rows[row]; f->name; f++) n++;
    return n >= 32 ? UINT32_MAX : (1u << n) - 1;
}

/* row's carried fields into b; *carried: the bits still to go, row's
 * shifted out (row NULL: the join found none, nothing written). */
static void put_row(gd_buf *b, const gd_fieldspec *fields, const void *row, uint32_t *carried)
{
    for (const gd_fieldspec *f = fields; f->name; f++) {
        bool carry = *carried & 1;
        *carried >>= 1;
        if (!carry || !row) continue;
        const char *at = (const char *)row + f->offset;
        if (f->type == GD_FT_STR) {
            const gd_str *s = (const gd_str *)at;
            gd_buf_put_u32be(b, s->p ? s->len : NULL_LEN);
            if (s->p) gd_buf_put(b, s->p, s->len);
        } else if (f->type == GD_FT_TS) {
            gd_buf_put_u64be(b, (uint64_t)*(const int64_t *)at);
        } else if (f->type == GD_FT_INT) {
            const gd_int *i = (const gd_int *)at;
            gd_buf_putc(b, i->set);
            gd_buf_put_u64be(b, (uint64_t)i->v);
        } else {
            const gd_dbl *d = (const gd_dbl *)at;
            uint64_t bits;
            memcpy(&bits, &d->v, 8);
            gd_buf_putc(b, d->set);
            gd_buf_put_u64be(b, bits);
        }
    }
}

void gd_route_encode(gd_buf *b, const gd_enriched *e, uint32_t fields, int32_t src_partition, int64_t src_offset)
{
    gd_buf_clear(b);
    gd_buf_putc(b, ROUTE_MAGIC);
    gd_buf_put_u32be(b, (uint32_t)src_partition);
    gd_buf_put_u64be(b, (uint64_t)src_offset);
    gd_buf_put_u64be(b, (uint64_t)e->processing_timestamp);
    gd_buf_put_u32be(b, fields);
    put_row(b, gd_activity_fields, e->a, &fields);
    gd_buf_putc(b, e->game != NULL);
    put_row(b, gd_game_fields, e->game, &fields);
    gd_buf_putc(b, e->player != NULL);
    put_row(b, gd_player_fields, e->player, &fields);
}

typedef struct {
    const unsigned char *p, *end;
} reader;

static bool take(reader *r, size_t n) { return (size_t)(r->end - r->p) >= n; }

static bool get_u64(reader *r, uint64_t *out)
{
    if (!take(r, 8)) return false;
    *out = gd_get_u64be((const char *)r->p);
    r->p += 8;
    return true;
}

/* put_row's reverse: row's carried fields (row zeroed before: those not
 * carried stay NULL); present false: none written, row left alone. A
 * required field (GD_FT_TS) not carried is an error. */
static bool get_row(reader *r, const gd_fieldspec *fields, void *row, bool present, uint32_t *carried)
{
    for (const gd_fieldspec *f = fields; f->name; f++) {
        bool carry = *carried & 1;
        *carried >>= 1;
        if (!carry && f->type == GD_FT_TS) return false;
        if (!carry || !present) continue;
        char *at = (char *)row + f->offset;
        uint64_t v;
        if (f->type == GD_FT_STR) {
            if (!take(r, 4)) return false;
            uint32_t len = gd_get_u32be(r->p);
            r->p += 4;
            gd_str *s = (gd_str *)at;
            if (len == NULL_LEN) {
                *s = GD_STR_NULL;
                continue;
            }
            if (!take(r, len)) return false;
            *s = (gd_str){(const char *)r->p, len};
            r->p += len;
        } else if (f->type == GD_FT_TS) {
            if (!get_u64(r, &v)) return false;
            *(int64_t *)at = (int64_t)v;
        } else {
            if (!take(r, 1) || *r->p > 1) return false;
            bool set = *r->p++ != 0;
            if (!get_u64(r, &v)) return false;
            if (f->type == GD_FT_INT) *(gd_int *)at = (gd_int){set, (int64_t)v};
            else {
                double d;
                memcpy(&d, &v, 8);
                *(gd_dbl *)at = (gd_dbl){set, d};
            }
        }
    }
    return true;
}

/* A presence byte (0 or 1). */
static bool get_flag(reader *r, bool *out)
{
    if (!take(r, 1) || *r->p > 1) return false;
    *out = *r->p++ != 0;
    return true;
}

int gd_route_decode(gd_str in, gd_route_record *out)
{
    memset(out, 0, sizeof *out);
    reader r = {(const unsigned char *)in.p, (const unsigned char *)in.p + in.len};
    uint64_t v;
    if (!take(&r, 5) || (*r.p != ROUTE_MAGIC && *r.p != WHOLE_ROUTE_MAGIC)) return GD_ERR;
    bool whole = *r.p++ == WHOLE_ROUTE_MAGIC;
    out->src_partition = (int32_t)gd_get_u32be(r.p);
    r.p += 4;
    if (!get_u64(&r, &v)) return GD_ERR;
    out->src_offset = (int64_t)v;
    if (!get_u64(&r, &v)) return GD_ERR;
    out->processing_timestamp = (int64_t)v;
    if (!whole && !take(&r, 4)) return GD_ERR;
    uint32_t carried = out->fields = whole ? all_sources() : gd_get_u32be(r.p);
    if (!whole) r.p += 4;
    if (!get_row(&r, gd_activity_fields, &out->a, true, &carried) || !get_flag(&r, &out->has_game) ||
        !get_row(&r, gd_game_fields, &out->game, out->has_game, &carried) || !get_flag(&r, &out->has_player) ||
        !get_row(&r, gd_player_fields, &out->player, out->has_player, &carried))
        return GD_ERR;
    if (carried || r.p != r.end) return GD_ERR; /* fields this decoder does not know, or bytes after */
    /* what the source decoders require, so that window arithmetic and lags stay in range
     * whoever wrote the topic */
    const gd_activity *a = &out->a;
    if (!a->player_id.p || !a->game_id.p || !a->activity_type.p || a->activity_timestamp < 0 ||
        a->activity_timestamp > GD_MAX_TIMESTAMP || out->processing_timestamp < 0 ||
        out->processing_timestamp > GD_MAX_TIMESTAMP)
        return GD_ERR;
    return GD_OK;
}

/* ---- route messages ----
 * A Kafka message on a route carries a batch: 'B', then records of one
 * key, each a 4-byte length and the record. Per message, librdkafka's
 * producer and consumer cost about as much as a whole record's work in
 * the tables (its broker thread took half of a partitioned instance's CPU
 * with a message per record), so the router gathers a key's records while
 * it reads and sends them together (engine.c). A message holding one
 * record alone, as gamingd wrote before batches, is read on. */
enum { BATCH_MAGIC = 'B' };

void gd_route_batch_add(gd_buf *batch, gd_str record)
{
    if (!batch->len) gd_buf_putc(batch, BATCH_MAGIC);
    gd_buf_put_u32be(batch, record.len);
    gd_buf_put(batch, record.p, record.len);
}

void gd_route_reader_init(gd_route_reader *r, gd_str message)
{
    r->rest = message;
    r->batch = message.len && message.p[0] == BATCH_MAGIC;
    if (r->batch) {
        r->rest.p++;
        r->rest.len--;
    }
}

int gd_route_reader_next(gd_route_reader *r, gd_str *record)
{
    if (!r->rest.p || !r->rest.len) return GD_EOF;
    if (!r->batch) { /* one record alone */
        *record = r->rest;
        r->rest = GD_STR_NULL;
        return GD_OK;
    }
    uint32_t len = r->rest.len >= 4 ? gd_get_u32be(r->rest.p) : 0;
    if (r->rest.len < 4 || len > r->rest.len - 4) {
        r->rest = GD_STR_NULL; /* the framing is broken: nothing after it can be trusted */
        return GD_ERR;
    }
    *record = (gd_str){r->rest.p + 4, len};
    r->rest.p += 4 + len;
    r->rest.len -= 4 + len;
    return GD_OK;
}

/* ---- changelog records ----
 * Value: the producer (the instance's id and its run's, 24 hex digits), a kind byte, then for
 * rows the table's name, a NUL, the LMDB key's length (4 bytes), the key and
 * the stored value (none for a deletion); for a mark, its position lines. */

void gd_changelog_encode(gd_buf *b, const char *producer, gd_changelog_kind kind, const char *table, gd_str key,
                         gd_str value)
{
    gd_buf_clear(b);
    gd_buf_put(b, producer, GD_PRODUCER_LEN);
    gd_buf_putc(b, (char)kind);
    if (kind == GD_CL_MARK) {
        gd_buf_put(b, value.p, value.len);
        return;
    }
    gd_buf_puts(b, table);
    gd_buf_putc(b, 0);
    gd_buf_put_u32be(b, key.len);
    gd_buf_put(b, key.p, key.len);
    if (value.p) gd_buf_put(b, value.p, value.len);
}

int gd_changelog_decode(gd_str in, gd_changelog_record *out)
{
    memset(out, 0, sizeof *out);
    if (in.len < GD_PRODUCER_LEN + 1) return GD_ERR;
    out->producer = (gd_str){in.p, GD_PRODUCER_LEN};
    out->kind = (gd_changelog_kind)in.p[GD_PRODUCER_LEN];
    const char *p = in.p + GD_PRODUCER_LEN + 1, *end = in.p + in.len;
    if (out->kind == GD_CL_MARK) {
        out->value = (gd_str){p, (uint32_t)(end - p)};
        return GD_OK;
    }
    if (out->kind != GD_CL_ROW && out->kind != GD_CL_SETS && out->kind != GD_CL_DELETE && out->kind != GD_CL_CREATE &&
        out->kind != GD_CL_DROP && out->kind != GD_CL_TERMINATE)
        return GD_ERR;
    const char *nul = memchr(p, 0, (size_t)(end - p));
    if (!nul || end - nul < 5) return GD_ERR;
    out->table = (gd_str){p, (uint32_t)(nul - p)};
    uint32_t klen = (uint32_t)gd_get_u32be(nul + 1);
    p = nul + 5;
    if ((size_t)(end - p) < klen) return GD_ERR;
    out->key = (gd_str){p, klen};
    out->value = (gd_str){p + klen, (uint32_t)(end - p - klen)};
    return GD_OK;
}
