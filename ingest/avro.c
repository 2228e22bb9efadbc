/* avro.c -- Avro values in the Confluent wire format: byte 0, the schema id
 * as 4 bytes big-endian, then the Avro binary encoding of one record.
 *
 * Reading (source values): the writer schema comes from the Schema Registry
 * by id, once, and is parsed by avro-c; avro-c decodes each record into a
 * generic value kept per schema, and a plan made once per (schema, topic)
 * says which writer field holds each field gamingd needs. Fields are matched
 * by name, so producers may add fields, reorder them, make them nullable or
 * widen int to long and float to double; a needed field the writer lacks is
 * null, as with a reader default. The strings are copied into the record's
 * scratch arena, so a record is decoded once and owns what it points at.
 *
 * Before avro-c sees a value, value_fits walks it against the writer schema
 * and checks that every length and count fits in the bytes there are.
 * avro-c allocates a string as long as its length prefix says before
 * reading it and leaks the buffer when the bytes then run short, and it
 * loops as often as an array's count says: a few crafted bytes cost it
 * gigabytes of address space, a leak per record, or a long loop.
 *
 * Writing (the output record, `gamingd generate --format avro`): the schema
 * is parsed by avro-c once into a list of (type, nullable, which value);
 * each record is then encoded straight into a buffer -- varints, doubles,
 * strings -- with no per-record allocation. The unit tests read what it
 * writes back with avro-c, and the integration tests with Apache Avro. */
#include <avro.h>
#include <stdlib.h>
#include <string.h>

#include "window.h"

/* ---- writing ---- */

typedef struct {
    avro_type_t type;   /* AVRO_STRING, AVRO_INT32, AVRO_INT64, AVRO_FLOAT, AVRO_DOUBLE, AVRO_BOOLEAN */
    int null_branch;    /* union branch of null, -1 when the field is not nullable */
    int value_branch;   /* union branch of the value, -1 when not a union */
    int value_index;    /* into the caller's values, -1: always null */
} writer_field;

struct gd_avro_writer {
    size_t nfields;
    writer_field fields[];
};

static bool writable_type(avro_type_t t)
{
    return t == AVRO_STRING || t == AVRO_INT32 || t == AVRO_INT64 || t == AVRO_FLOAT || t == AVRO_DOUBLE ||
           t == AVRO_BOOLEAN;
}

/* A field's schema as (type, nullable): a plain type or a union of null and one type. */
static int plan_writer_field(avro_schema_t fs, writer_field *wf)
{
    wf->null_branch = wf->value_branch = -1;
    if (!is_avro_union(fs)) {
        wf->type = avro_typeof(fs);
        return writable_type(wf->type) ? GD_OK : GD_ERR;
    }
    size_t n = avro_schema_union_size(fs);
    for (size_t b = 0; b < n; b++) {
        avro_type_t t = avro_typeof(avro_schema_union_branch(fs, (int)b));
        if (t == AVRO_NULL && wf->null_branch < 0) wf->null_branch = (int)b;
        else if (writable_type(t) && wf->value_branch < 0) {
            wf->value_branch = (int)b;
            wf->type = t;
        } else return GD_ERR;
    }
    return wf->value_branch >= 0 ? GD_OK : GD_ERR;
}

int gd_avro_writer_new(gd_avro_writer **out, const char *schema_json, const char *const *names, size_t n)
{
    avro_schema_t schema;
    if (avro_schema_from_json_length(schema_json, strlen(schema_json), &schema)) {
        gd_error("Avro schema does not parse: %s", avro_strerror());
        return GD_ERR;
    }
    int rc = GD_OK;
    size_t nf = is_avro_record(schema) ? avro_schema_record_size(schema) : 0;
    gd_avro_writer *w = calloc(1, sizeof *w + nf * sizeof(writer_field));
    if (!w) rc = GD_ENOMEM;
    else if (!nf) {
        gd_error("Avro schema is not a record with fields");
        rc = GD_ERR;
    }
    for (size_t i = 0; !rc && i < nf; i++) {
        const char *name = avro_schema_record_field_name(schema, (int)i);
        writer_field *wf = &w->fields[i];
        wf->value_index = -1;
        for (size_t k = 0; k < n; k++)
            if (!strcmp(names[k], name)) wf->value_index = (int)k;
        if (plan_writer_field(avro_schema_record_field_get_by_index(schema, (int)i), wf)) {
            gd_error("Avro schema field %s: gamingd cannot write its type", name);
            rc = GD_ERR;
        } else if (wf->value_index < 0 && wf->null_branch < 0) {
            gd_error("Avro schema field %s is required and gamingd has no value for it", name);
            rc = GD_ERR;
        }
    }
    avro_schema_decref(schema);
    if (rc) {
        free(w);
        return rc;
    }
    w->nfields = nf;
    *out = w;
    return GD_OK;
}

void gd_avro_writer_free(gd_avro_writer *w) { free(w); }

static void put_varint(gd_buf *b, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); /* zigzag */
    gd_buf_reserve(b, 10);
    while (z >= 0x80) {
        b->p[b->len++] = (char)(z | 0x80);
        z >>= 7;
    }
    b->p[b->len++] = (char)z;
}

static void put_le(gd_buf *b, uint64_t bits, int bytes)
{
    gd_buf_reserve(b, 8);
    for (int i = 0; i < bytes; i++) b->p[b->len++] = (char)(bits >> (8 * i));
}

static int put_value(gd_buf *b, avro_type_t t, const gd_value *v)
{
    bool number = v->t == GD_V_INT || v->t == GD_V_BOOL || v->t == GD_V_DBL;
    double d = v->t == GD_V_DBL ? v->d : (double)v->i;
    switch (t) {
    case AVRO_STRING:
        if (v->t != GD_V_STR) return GD_ERR;
        put_varint(b, v->s.len);
        gd_buf_put(b, v->s.p, v->s.len);
        return GD_OK;
    case AVRO_INT32:
    case AVRO_INT64:
        if (v->t != GD_V_INT && v->t != GD_V_BOOL) return GD_ERR;
        if (t == AVRO_INT32 && (v->i < INT32_MIN || v->i > INT32_MAX)) return GD_ERR;
        put_varint(b, v->i);
        return GD_OK;
    case AVRO_DOUBLE: {
        if (!number) return GD_ERR;
        uint64_t bits;
        memcpy(&bits, &d, 8);
        put_le(b, bits, 8);
        return GD_OK;
    }
    case AVRO_FLOAT: {
        if (!number) return GD_ERR;
        float f = (float)d;
        uint32_t bits;
        memcpy(&bits, &f, 4);
        put_le(b, bits, 4);
        return GD_OK;
    }
    case AVRO_BOOLEAN:
        if (v->t != GD_V_BOOL && v->t != GD_V_INT) return GD_ERR;
        gd_buf_putc(b, v->i ? 1 : 0);
        return GD_OK;
    default: return GD_ERR;
    }
}

int gd_avro_write(const gd_avro_writer *w, int32_t schema_id, const gd_value *values, gd_buf *out)
{
    size_t start = out->len;
    gd_buf_putc(out, 0);
    gd_buf_put_u32be(out, (uint32_t)schema_id);
    for (size_t i = 0; i < w->nfields; i++) {
        const writer_field *wf = &w->fields[i];
        const gd_value *v = wf->value_index >= 0 ? &values[wf->value_index] : NULL;
        if (!v || v->t == GD_V_NULL) {
            if (wf->null_branch < 0) goto bad;
            put_varint(out, wf->null_branch);
            continue;
        }
        if (wf->value_branch >= 0) put_varint(out, wf->value_branch);
        if (put_value(out, wf->type, v)) goto bad;
    }
    return GD_OK;
bad:
    out->len = start;
    return GD_EBADREC;
}

gd_value gd_fieldspec_value(const gd_fieldspec *f, const void *row)
{
    const char *at = (const char *)row + f->offset;
    gd_value v = {.t = GD_V_NULL};
    switch (f->type) {
    case GD_FT_STR: {
        const gd_str *s = (const gd_str *)at;
        if (s->p) v = (gd_value){.t = GD_V_STR, .s = *s};
        break;
    }
    case GD_FT_INT: {
        const gd_int *i = (const gd_int *)at;
        if (i->set) v = (gd_value){.t = GD_V_INT, .i = i->v};
        break;
    }
    case GD_FT_TS: v = (gd_value){.t = GD_V_INT, .i = *(const int64_t *)at}; break;
    case GD_FT_DBL: {
        const gd_dbl *d = (const gd_dbl *)at;
        if (d->set) v = (gd_value){.t = GD_V_DBL, .d = d->v};
        break;
    }
    }
    return v;
}

/* ---- reading ---- */

enum { MAX_PLAN_FIELDS = 16, NEGATIVE_CACHE_MS = 60000 };

/* One writer schema, by id. */
typedef struct {
    int32_t id;
    bool usable;            /* false: the registry did not give a record schema */
    int64_t retry_after_ms; /* when an unusable id may be asked for again */
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value; /* decoded into, record after record */
    /* per field table (activity, game, player): the writer's field index of
     * each needed field, -1 when the writer lacks it; planned on first use */
    const gd_fieldspec *planned_for[3];
    int8_t plan[3][MAX_PLAN_FIELDS];
} writer_schema;

struct gd_avro_reader {
    gd_registry *registry; /* NULL: Avro values are bad records */
    avro_reader_t in;
    writer_schema *schemas;
    size_t nschemas, cap;
    gd_buf json;
    bool interrupted; /* the last fetch was cut short by a stop */
};

int gd_avro_reader_new(gd_avro_reader **out, gd_registry *registry)
{
    gd_avro_reader *r = calloc(1, sizeof *r);
    if (!r) return GD_ENOMEM;
    r->registry = registry;
    r->in = avro_reader_memory("", 0);
    if (!r->in) {
        free(r);
        return GD_ENOMEM;
    }
    *out = r;
    return GD_OK;
}

static void drop_schema(writer_schema *ws)
{
    if (!ws->usable) return;
    avro_value_decref(&ws->value);
    avro_value_iface_decref(ws->iface);
    avro_schema_decref(ws->schema);
    ws->usable = false;
}

void gd_avro_reader_free(gd_avro_reader *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nschemas; i++) drop_schema(&r->schemas[i]);
    free(r->schemas);
    avro_reader_free(r->in);
    gd_buf_free(&r->json);
    free(r);
}

/* Makes ws read values of the schema in r->json. */
static void use_schema(gd_avro_reader *r, writer_schema *ws)
{
    if (avro_schema_from_json_length(r->json.p, r->json.len, &ws->schema)) {
        gd_warn("schema %d from the registry does not parse: %s", (int)ws->id, avro_strerror());
        return;
    }
    if (!is_avro_record(ws->schema) || !(ws->iface = avro_generic_class_from_schema(ws->schema)) ||
        avro_generic_value_new(ws->iface, &ws->value)) {
        gd_warn("schema %d from the registry is not a record schema gamingd can read", (int)ws->id);
        if (ws->iface) avro_value_iface_decref(ws->iface);
        avro_schema_decref(ws->schema);
        return;
    }
    ws->usable = true;
}

static void load_schema(gd_avro_reader *r, writer_schema *ws)
{
    drop_schema(ws);
    ws->retry_after_ms = gd_now_ms() + NEGATIVE_CACHE_MS;
    memset(ws->planned_for, 0, sizeof ws->planned_for);
    int rc = gd_registry_fetch(r->registry, ws->id, &r->json);
    r->interrupted = rc == GD_AGAIN;
    if (r->interrupted) ws->retry_after_ms = 0; /* no verdict on the id */
    if (rc) return;
    use_schema(r, ws);
    if (ws->usable) gd_info("schema %d fetched from the registry", (int)ws->id);
}

/* The cache entry of id, made when missing; NULL when out of memory. */
static writer_schema *schema_slot(gd_avro_reader *r, int32_t id)
{
    writer_schema *ws = NULL;
    for (size_t i = 0; i < r->nschemas && !ws; i++)
        if (r->schemas[i].id == id) ws = &r->schemas[i];
    if (!ws) {
        if (r->nschemas == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 8;
            writer_schema *grown = realloc(r->schemas, cap * sizeof *grown);
            if (!grown) return NULL;
            r->schemas = grown;
            r->cap = cap;
        }
        ws = &r->schemas[r->nschemas++];
        memset(ws, 0, sizeof *ws);
        ws->id = id;
    }
    return ws;
}

static writer_schema *find_schema(gd_avro_reader *r, int32_t id)
{
    writer_schema *ws = schema_slot(r, id);
    if (ws && !ws->usable && gd_now_ms() >= ws->retry_after_ms && r->registry) load_schema(r, ws);
    return ws && ws->usable ? ws : NULL;
}

int gd_avro_reader_preload(gd_avro_reader *r, int32_t id, const char *schema_json)
{
    writer_schema *ws = schema_slot(r, id);
    if (!ws) return GD_ENOMEM;
    drop_schema(ws);
    memset(ws->planned_for, 0, sizeof ws->planned_for);
    gd_buf_clear(&r->json);
    gd_buf_puts(&r->json, schema_json);
    use_schema(r, ws);
    return ws->usable ? GD_OK : GD_ERR;
}

enum { MAX_AVRO_DEPTH = 32 };

/* An Avro long: zigzag varint of at most 10 bytes. */
static bool read_long(const uint8_t **p, const uint8_t *end, int64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*p >= end) return false;
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return true;
        }
    }
    return false;
}

static bool skip_bytes(const uint8_t **p, const uint8_t *end, int64_t n)
{
    if (n < 0 || n > end - *p) return false;
    *p += n;
    return true;
}

/* Whether one value of schema s lies whole in [*p, end); *p moves past it. */
static bool value_fits(avro_schema_t s, const uint8_t **p, const uint8_t *end, int depth)
{
    int64_t n;
    if (depth > MAX_AVRO_DEPTH) return false;
    switch (avro_typeof(s)) {
    case AVRO_NULL: return true;
    case AVRO_BOOLEAN: return skip_bytes(p, end, 1);
    case AVRO_INT32:
    case AVRO_INT64:
    case AVRO_ENUM: return read_long(p, end, &n);
    case AVRO_FLOAT: return skip_bytes(p, end, 4);
    case AVRO_DOUBLE: return skip_bytes(p, end, 8);
    case AVRO_STRING:
    case AVRO_BYTES: return read_long(p, end, &n) && skip_bytes(p, end, n);
    case AVRO_FIXED: return skip_bytes(p, end, avro_schema_fixed_size(s));
    case AVRO_LINK: return value_fits(avro_schema_link_target(s), p, end, depth + 1);
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(s); i++)
            if (!value_fits(avro_schema_record_field_get_by_index(s, (int)i), p, end, depth + 1)) return false;
        return true;
    case AVRO_UNION:
        return read_long(p, end, &n) && n >= 0 && (size_t)n < avro_schema_union_size(s) &&
               value_fits(avro_schema_union_branch(s, (int)n), p, end, depth + 1);
    case AVRO_ARRAY:
    case AVRO_MAP:
        /* blocks of items: a count (negative: followed by the block's size
         * in bytes), then 0. Each item takes a byte or more in any sane
         * record, so a count beyond the bytes left is refused. */
        for (;;) {
            if (!read_long(p, end, &n)) return false;
            if (n == 0) return true;
            if (n < 0) {
                int64_t size;
                if (n == INT64_MIN || !read_long(p, end, &size) || size < 0) return false;
                n = -n;
            }
            if (n > end - *p) return false;
            avro_schema_t item = avro_typeof(s) == AVRO_ARRAY ? avro_schema_array_items(s) : avro_schema_map_values(s);
            for (int64_t i = 0; i < n; i++) {
                int64_t klen;
                if (avro_typeof(s) == AVRO_MAP && !(read_long(p, end, &klen) && skip_bytes(p, end, klen))) return false;
                if (!value_fits(item, p, end, depth + 1)) return false;
            }
        }
    default: return false;
    }
}

static int table_slot(const gd_fieldspec *fields)
{
    return fields == gd_activity_fields ? 0 : fields == gd_game_fields ? 1 : 2;
}

static const int8_t *plan_for(writer_schema *ws, const gd_fieldspec *fields)
{
    int slot = table_slot(fields);
    if (ws->planned_for[slot] != fields) {
        for (int i = 0; fields[i].name; i++)
            ws->plan[slot][i] = (int8_t)avro_schema_record_field_get_index(ws->schema, fields[i].name);
        ws->planned_for[slot] = fields;
    }
    return ws->plan[slot];
}

static int store_avro_field(const gd_fieldspec *f, avro_value_t *v, char *base, bool *ts_seen,
                            gd_arena *scratch)
{
    avro_value_t branch;
    if (avro_value_get_type(v) == AVRO_UNION) {
        if (avro_value_get_current_branch(v, &branch)) return GD_EBADREC;
        v = &branch;
    }
    void *dst = base + f->offset;
    avro_type_t t = avro_value_get_type(v);
    if (t == AVRO_NULL) return GD_OK;
    int32_t i32;
    int64_t i64;
    float fl;
    double d;
    switch (f->type) {
    case GD_FT_STR: {
        const char *p;
        size_t size;
        if (t != AVRO_STRING || avro_value_get_string(v, &p, &size)) return GD_EBADREC;
        if (!gd_utf8_valid(p, size ? size - 1 : 0)) return GD_EBADREC; /* Avro strings are UTF-8 */
        *(gd_str *)dst = gd_arena_strdup(scratch, (gd_str){p, (uint32_t)(size ? size - 1 : 0)});
        return GD_OK;
    }
    case GD_FT_INT:
    case GD_FT_TS:
        if (t == AVRO_INT32 && !avro_value_get_int(v, &i32)) i64 = i32;
        else if (t != AVRO_INT64 || avro_value_get_long(v, &i64)) return GD_EBADREC;
        if (f->type == GD_FT_TS) {
            *(int64_t *)dst = i64;
            *ts_seen = true;
        } else *(gd_int *)dst = (gd_int){true, i64};
        return GD_OK;
    case GD_FT_DBL:
        if (t == AVRO_DOUBLE && !avro_value_get_double(v, &d)) {
        } else if (t == AVRO_FLOAT && !avro_value_get_float(v, &fl)) d = fl;
        else if (t == AVRO_INT32 && !avro_value_get_int(v, &i32)) d = i32;
        else if (t == AVRO_INT64 && !avro_value_get_long(v, &i64)) d = (double)i64;
        else return GD_EBADREC;
        *(gd_dbl *)dst = (gd_dbl){true, d};
        return GD_OK;
    }
    return GD_EBADREC;
}

int gd_avro_read(gd_avro_reader *r, gd_str value, const gd_fieldspec *fields, void *out, bool *ts_seen,
                 gd_arena *scratch, const char **why)
{
    if (value.len < 5) {
        *why = "Avro value shorter than its 5-byte header";
        return GD_EBADREC;
    }
    if (!r || (!r->registry && !r->nschemas)) {
        *why = "Avro value but no --schema-registry to read its schema from";
        return GD_EBADREC;
    }
    writer_schema *ws = find_schema(r, (int32_t)gd_get_u32be(value.p + 1));
    if (!ws && r->interrupted) return GD_AGAIN;
    if (!ws) {
        *why = "Avro value whose schema id the registry does not give";
        return GD_EBADREC;
    }
    const uint8_t *body = (const uint8_t *)value.p + 5, *end = (const uint8_t *)value.p + value.len;
    if (!value_fits(ws->schema, &body, end, 0) || body != end) {
        *why = "Avro value does not decode with its writer schema";
        return GD_EBADREC;
    }
    avro_reader_memory_set_source(r->in, value.p + 5, (int64_t)(value.len - 5));
    if (avro_value_read(r->in, &ws->value)) {
        *why = "Avro value does not decode with its writer schema";
        return GD_EBADREC;
    }
    const int8_t *plan = plan_for(ws, fields);
    for (int i = 0; fields[i].name; i++) {
        avro_value_t fv;
        if (plan[i] < 0) continue;
        if (avro_value_get_by_index(&ws->value, (size_t)plan[i], &fv, NULL) ||
            store_avro_field(&fields[i], &fv, out, ts_seen, scratch)) {
            *why = fields[i].type == GD_FT_STR ? "an Avro string field holds another type or invalid UTF-8"
                                               : "an Avro number field holds another type";
            return GD_EBADREC;
        }
    }
    return GD_OK;
}
