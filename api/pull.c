/* pull.c -- pull queries: GET /v1/tables and GET /v1/tables/{table}.
 *
 * A request is validated whole before any read (every parameter known, each
 * once, each well-formed), then run as a store query in one read
 * transaction. Rows are paged with keyset cursors: a cursor holds the sort
 * value and row key of the last row returned (and, for "the latest window",
 * which window that was), so pages neither repeat nor skip rows while ingest
 * goes on; it is sealed with a key of the data dir, so a client can neither
 * read it nor forge one (see "cursors" below). A page never holds more than limit + 1 rows in memory, however
 * many match: in key order the scan stops there; sorted, a bounded heap
 * keeps the smallest. Rows are spans into the LMDB map, never copied. */
#include <gnutls/crypto.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../store/query.h"
#include "routes.h"

enum { DEFAULT_LIMIT = 100, MAX_LIMIT = 10000, CURSOR_VERSION = 3 };

void gd_route_tables_list(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    if (req->nparams) {
        gd_reply_error(r, 400, "unknown parameter '%s': /v1/tables takes none", req->params[0].name);
        return;
    }
    json_t *tables = json_array();
    for (unsigned i = 0; i < GD_MAX_TABLES; i++) {
        const gd_catalog_entry *e = gd_catalog_table(ctx->cat, i);
        if (!e) continue;
        const gd_tabledef *t = e->table;
        json_t *keys = json_array(), *cols = json_array();
        for (int k = 0; k < t->nkeys; k++)
            json_array_append_new(keys, json_pack("{s:s,s:s,s:b}", "name", t->keys[k].name, "type",
                                                  gd_coltype_name(t->keys[k].type), "pii", t->keys[k].pii != GD_PII_NONE));
        for (int c = 0; c < t->ncols; c++)
            json_array_append_new(cols, json_pack("{s:s,s:s,s:b}", "name", t->cols[c].name, "type",
                                                  gd_coltype_name(t->cols[c].type), "pii", t->cols[c].pii != GD_PII_NONE));
        json_t *window = t->window_ms ? json_integer(t->window_ms) : json_null();
        json_array_append_new(tables, json_pack("{s:s,s:o,s:o,s:o}", "name", t->name,
                                                "key_columns", keys, "value_columns", cols,
                                                "window_ms", window));
    }
    for (unsigned i = 0; i < GD_MAX_QUARANTINED; i++) { /* listed with their error until dropped */
        const gd_catalog_entry *e = gd_catalog_quarantined(ctx->cat, i);
        if (e && e->is_table)
            json_array_append_new(tables, json_pack("{s:s,s:[],s:[],s:n,s:s,s:s}", "name", e->name, "key_columns",
                                                    "value_columns", "window_ms", "state", "ERROR", "error", e->error));
    }
    json_t *doc = json_pack("{s:o}", "tables", tables);
    char *text = json_dumps(doc, JSON_COMPACT);
    r->status = 200;
    r->content_type = "application/json";
    gd_buf_puts(&r->body, text);
    free(text);
    json_decref(doc);
}

/* ---- one row as the query sees it ---- */

typedef struct {
    gd_str key, val;
    gd_value sort; /* the order_by value, or null */
} row_ref;

typedef struct {
    const gd_tabledef *t;
    int order_col;  /* -1: key order; -2 window_start; -3 window_end; else value column; */
    int order_key;  /* >= 0: order by this key column */
    bool desc;
    bool key_order; /* rows arrive in the order asked for (no order_by, no desc) */
    bool has_after; /* a cursor: only rows after (after_sort, after_key) */
    gd_value after_sort;
    gd_str after_key;
    size_t keep;    /* the page size plus one, to know whether more rows follow */
    row_ref *rows;  /* key_order: the first rows; else a max-heap of the smallest */
    size_t n;
    gd_arena strings; /* unescaped sort values of reference rows */
} result;

enum { ORDER_NONE = -1, ORDER_WINDOW_START = -2, ORDER_WINDOW_END = -3 };

/* The value of a named member of a reference row (JSON object); unescaped
 * strings are decoded into arena. */
static gd_value json_member(gd_str row, const char *name, gd_arena *arena)
{
    gd_json j;
    gd_json_init(&j, row, arena);
    gd_value out = {.t = GD_V_NULL};
    gd_str k;
    if (gd_json_object_begin(&j) == GD_OK) {
        while (gd_json_next_key(&j, &k) == 1) {
            gd_jval v;
            if (gd_json_value(&j, &v)) break;
            if (k.len != strlen(name) || memcmp(k.p, name, k.len)) continue;
            if (v.t == GD_J_INT) out = (gd_value){.t = GD_V_INT, .i = v.i};
            else if (v.t == GD_J_DBL) out = (gd_value){.t = GD_V_DBL, .d = v.d};
            else if (v.t == GD_J_STR) out = (gd_value){.t = GD_V_STR, .s = v.s};
            break;
        }
    }
    return out;
}

static gd_value sort_value(result *res, gd_str key, gd_str val)
{
    const gd_tabledef *t = res->t;
    if (t->kind != GD_TABLE_WINDOWED) {
        if (res->order_key >= 0) return (gd_value){.t = GD_V_STR, .s = key};
        if (res->order_col >= 0) return json_member(val, t->cols[res->order_col].name, &res->strings);
        return (gd_value){.t = GD_V_NULL};
    }
    int64_t w = gd_rowkey_window(key.p);
    if (res->order_col == ORDER_WINDOW_START) return (gd_value){.t = GD_V_INT, .i = w};
    if (res->order_col == ORDER_WINDOW_END) return (gd_value){.t = GD_V_INT, .i = w + t->window_ms};
    gd_str keys[GD_MAX_KEYS];
    if (gd_groupkey_split(key.p + 8, key.len - 8, t->nkeys, keys)) return (gd_value){.t = GD_V_NULL};
    if (res->order_key >= 0) return gd_key_value(t->keys[res->order_key].type, keys[res->order_key]);
    if (res->order_col >= 0) {
        gd_slot slots[GD_MAX_COLS];
        gd_row row;
        if (gd_row_decode(t, val.p, val.len, slots) || !gd_row_compute(t, keys, w, slots, &row, &res->strings))
            return (gd_value){.t = GD_V_NULL};
        return row.cols[res->order_col];
    }
    return (gd_value){.t = GD_V_NULL};
}

/* Total order: nulls first, numbers (booleans as 0 and 1) by value, strings
 * bytewise. */
static int value_cmp(gd_value a, gd_value b)
{
    if (a.t == GD_V_BOOL) a.t = GD_V_INT;
    if (b.t == GD_V_BOOL) b.t = GD_V_INT;
    if (a.t == GD_V_NULL || b.t == GD_V_NULL) return (a.t != GD_V_NULL) - (b.t != GD_V_NULL);
    if (a.t == GD_V_STR || b.t == GD_V_STR) {
        if (a.t != b.t) return a.t == GD_V_STR ? 1 : -1;
        uint32_t n = a.s.len < b.s.len ? a.s.len : b.s.len;
        int c = memcmp(a.s.p, b.s.p, n);
        return c ? c : (a.s.len > b.s.len) - (a.s.len < b.s.len);
    }
    if (a.t == GD_V_INT && b.t == GD_V_INT) return (a.i > b.i) - (a.i < b.i);
    double x = a.t == GD_V_INT ? (double)a.i : a.d, y = b.t == GD_V_INT ? (double)b.i : b.d;
    return (x > y) - (x < y);
}

static int key_cmp(gd_str a, gd_str b)
{
    uint32_t n = a.len < b.len ? a.len : b.len;
    int c = memcmp(a.p, b.p, n);
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

static int row_order(gd_value av, gd_str ak, gd_value bv, gd_str bk, bool desc)
{
    int c = value_cmp(av, bv);
    if (!c) c = key_cmp(ak, bk);
    return desc ? -c : c;
}

static int row_cmp(const void *x, const void *y, void *desc)
{
    const row_ref *a = x, *b = y;
    return row_order(a->sort, a->key, b->sort, b->key, *(bool *)desc);
}

static int ref_order(const result *res, const row_ref *a, const row_ref *b)
{
    return row_order(a->sort, a->key, b->sort, b->key, res->desc);
}

static void sift_down(result *res, size_t i)
{
    for (;;) {
        size_t big = i, l = 2 * i + 1, r = l + 1;
        if (l < res->n && ref_order(res, &res->rows[l], &res->rows[big]) > 0) big = l;
        if (r < res->n && ref_order(res, &res->rows[r], &res->rows[big]) > 0) big = r;
        if (big == i) return;
        row_ref tmp = res->rows[i];
        res->rows[i] = res->rows[big];
        res->rows[big] = tmp;
        i = big;
    }
}

static void sift_up(result *res, size_t i)
{
    while (i > 0 && ref_order(res, &res->rows[(i - 1) / 2], &res->rows[i]) < 0) {
        row_ref tmp = res->rows[i];
        res->rows[i] = res->rows[(i - 1) / 2];
        res->rows[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
}

/* Keeps at most res->keep rows, whatever the table's size: in key order the
 * first ones (and stops the scan), sorted the smallest (a bounded max-heap). */
static int collect(void *ctx, gd_str key, gd_str val)
{
    result *res = ctx;
    row_ref row = {key, val, sort_value(res, key, val)};
    if (res->has_after && row_order(row.sort, row.key, res->after_sort, res->after_key, res->desc) <= 0)
        return 0;
    if (res->n < res->keep) {
        res->rows[res->n++] = row;
        if (res->key_order) return res->n == res->keep;
        sift_up(res, res->n - 1);
    } else if (ref_order(res, &row, &res->rows[0]) < 0) {
        res->rows[0] = row;
        sift_down(res, 0);
    }
    return 0;
}

/* ---- cursors ----
 * A cursor is the hex of [version][nonce][sealed [pinned flag][pinned
 * window][sort value][key]], sealed by AES-256-SIV with the data dir's
 * cursor key (gd_store_secret) over associated data naming the query it
 * continues (query_identity). So it tells a client nothing (a key or sort
 * value may be an email address), and one changed in any bit, made for
 * another query or another table (one dropped and made again under the
 * same name included) or by a daemon on another data dir does not open: a
 * 400. What opens is still checked against the table before use, so that
 * reading it safely never rests on the key alone (whoever reads the data
 * dir has it; a copy of the data dir keeps it). SIV rather
 * than GCM: the key lives as long as the data dir, and under SIV a random
 * 96-bit nonce that repeats after billions of cursors reveals no more than
 * that two cursors are equal. */

enum { CURSOR_NONCE = 12, CURSOR_TAG = 16, CURSOR_HEAD = 1 + CURSOR_NONCE + CURSOR_TAG, MAX_CURSOR_HEX = 4096 };

static void put_hex(gd_buf *b, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        gd_buf_putc(b, hex[p[i] >> 4]);
        gd_buf_putc(b, hex[p[i] & 15]);
    }
}

static int cursor_cipher(const unsigned char key[GD_CURSOR_KEY_BYTES], gnutls_aead_cipher_hd_t *h)
{
    gnutls_datum_t k = {(unsigned char *)key, GD_CURSOR_KEY_BYTES};
    return gnutls_aead_cipher_init(h, GNUTLS_CIPHER_AES_256_SIV, &k) ? GD_ERR : GD_OK;
}

/* Appends the cursor to out; GD_ERR when it cannot be sealed. */
static int encode_cursor(const unsigned char key[GD_CURSOR_KEY_BYTES], const gd_buf *query, bool pinned,
                         int64_t window, gd_value v, gd_str rowkey, gd_buf *out)
{
    gd_buf raw = {0}, sealed = {0};
    gd_buf_putc(&raw, pinned);
    gd_buf_put_u64be(&raw, (uint64_t)window);
    gd_buf_putc(&raw, (char)v.t);
    if (v.t == GD_V_INT) gd_buf_put_u64be(&raw, (uint64_t)v.i);
    else if (v.t == GD_V_DBL) gd_buf_put(&raw, &v.d, 8);
    else if (v.t == GD_V_STR) {
        gd_buf_put_u16be(&raw, (uint16_t)v.s.len);
        gd_buf_put(&raw, v.s.p, v.s.len);
    }
    gd_buf_put(&raw, rowkey.p, rowkey.len);
    gd_buf_putc(&sealed, CURSOR_VERSION);
    gd_buf_reserve(&sealed, CURSOR_NONCE + raw.len + CURSOR_TAG);
    unsigned char *nonce = (unsigned char *)sealed.p + 1;
    size_t n = sealed.cap - 1 - CURSOR_NONCE;
    gnutls_aead_cipher_hd_t h;
    int rc = gnutls_rnd(GNUTLS_RND_NONCE, nonce, CURSOR_NONCE) || cursor_cipher(key, &h) ? GD_ERR : GD_OK;
    if (!rc) {
        rc = gnutls_aead_cipher_encrypt(h, nonce, CURSOR_NONCE, query->p, query->len, CURSOR_TAG, raw.p, raw.len,
                                        nonce + CURSOR_NONCE, &n) ? GD_ERR : GD_OK;
        gnutls_aead_cipher_deinit(h);
    }
    if (!rc) put_hex(out, (const unsigned char *)sealed.p, 1 + CURSOR_NONCE + n);
    gd_buf_free(&raw);
    gd_buf_free(&sealed);
    return rc;
}

typedef struct {
    bool pinned;
    int64_t window;
    gd_value v;
    gd_str key;
    gd_buf raw; /* owns the bytes v.s and key point into */
} cursor;

static int unhex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Opens text into c: GD_ERR unless it is a cursor sealed with key for query. */
static int open_cursor(const unsigned char key[GD_CURSOR_KEY_BYTES], const gd_buf *query, const char *text, cursor *c)
{
    size_t n = strlen(text);
    if (n % 2 || n < 2 * CURSOR_HEAD || n > MAX_CURSOR_HEX) return GD_ERR;
    unsigned char sealed[MAX_CURSOR_HEX / 2];
    for (size_t i = 0; i < n; i += 2) {
        int hi = unhex(text[i]), lo = unhex(text[i + 1]);
        if (hi < 0 || lo < 0) return GD_ERR;
        sealed[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    if (sealed[0] != CURSOR_VERSION) return GD_ERR;
    gd_buf_reserve(&c->raw, n / 2);
    size_t len = c->raw.cap;
    gnutls_aead_cipher_hd_t h;
    if (cursor_cipher(key, &h)) return GD_ERR;
    int rc = gnutls_aead_cipher_decrypt(h, sealed + 1, CURSOR_NONCE, query->p, query->len, CURSOR_TAG,
                                        sealed + 1 + CURSOR_NONCE, n / 2 - 1 - CURSOR_NONCE, c->raw.p, &len);
    gnutls_aead_cipher_deinit(h);
    if (rc) return GD_ERR;
    c->raw.len = len;
    return GD_OK;
}

/* Reads the fields of an opened cursor. */
static int decode_cursor(cursor *c)
{
    const char *p = c->raw.p, *end = c->raw.p + c->raw.len;
    if (end - p < 10 || (p[0] != 0 && p[0] != 1)) return GD_ERR;
    c->pinned = p[0];
    c->window = (int64_t)gd_get_u64be(p + 1);
    c->v.t = (gd_vtype)p[9];
    p += 10;
    switch (c->v.t) {
    case GD_V_NULL: break;
    case GD_V_INT:
        if (end - p < 8) return GD_ERR;
        c->v.i = (int64_t)gd_get_u64be(p);
        p += 8;
        break;
    case GD_V_DBL:
        if (end - p < 8) return GD_ERR;
        memcpy(&c->v.d, p, 8);
        p += 8;
        break;
    case GD_V_STR: {
        if (end - p < 2) return GD_ERR;
        uint16_t len = gd_get_u16be(p);
        p += 2;
        if (end - p < len) return GD_ERR;
        c->v.s = (gd_str){p, len};
        p += len;
        break;
    }
    default: return GD_ERR;
    }
    c->key = (gd_str){p, (uint32_t)(end - p)};
    return c->key.len ? GD_OK : GD_ERR;
}

/* ---- parameters ---- */

typedef struct {
    gd_query q;
    bool have_window_start, have_from, have_to;
    int64_t limit;
    const char *order_by;
    bool desc;
    const char *cursor;
} table_params;

static bool param_once(const gd_request *req, int i, gd_reply *r)
{
    for (int j = 0; j < i; j++)
        if (!strcmp(req->params[j].name, req->params[i].name)) {
            gd_reply_error(r, 400, "parameter '%s' is given more than once", req->params[i].name);
            return false;
        }
    return true;
}

static bool parse_ms(const char *name, const char *v, int64_t *out, gd_reply *r)
{
    if (!v || gd_parse_int(v, strlen(v), 0, GD_MAX_TIMESTAMP, out)) {
        gd_reply_error(r, 400, "%s must be epoch milliseconds (0 to %lld), got '%s'", name,
                       (long long)GD_MAX_TIMESTAMP, v ? v : "");
        return false;
    }
    return true;
}

static bool parse_params(const gd_tabledef *t, const gd_request *req, table_params *p, gd_reply *r)
{
    memset(p, 0, sizeof *p);
    p->q.t = t;
    p->limit = DEFAULT_LIMIT;
    int64_t window_start = 0;
    for (int i = 0; i < req->nparams; i++) {
        const char *name = req->params[i].name, *v = req->params[i].value;
        if (!param_once(req, i, r)) return false;
        int key = -1;
        for (int k = 0; k < t->nkeys; k++)
            if (!strcmp(name, t->keys[k].name)) key = k;
        bool windowed = gd_table_windowed(t);
        if (key >= 0) {
            if (!v || !*v) {
                gd_reply_error(r, 400, "filter %s needs a value", name);
                return false;
            }
            p->q.key_eq[key] = gd_str_c(v);
        } else if (!strcmp(name, "limit")) {
            if (!v || gd_parse_int(v, strlen(v), 1, MAX_LIMIT, &p->limit)) {
                gd_reply_error(r, 400, "limit must be a whole number from 1 to %d", MAX_LIMIT);
                return false;
            }
        } else if (!strcmp(name, "order_by")) {
            p->order_by = v ? v : "";
        } else if (!strcmp(name, "desc")) {
            if (!v || (strcmp(v, "true") && strcmp(v, "false"))) {
                gd_reply_error(r, 400, "desc must be true or false");
                return false;
            }
            p->desc = !strcmp(v, "true");
        } else if (!strcmp(name, "cursor")) {
            p->cursor = v ? v : "";
        } else if (windowed && !strcmp(name, "window_start")) {
            if (!parse_ms(name, v, &window_start, r)) return false;
            if (window_start % t->window_ms) {
                gd_reply_error(r, 400, "window_start must be a multiple of the window size %lld ms",
                               (long long)t->window_ms);
                return false;
            }
            p->have_window_start = true;
        } else if (windowed && !strcmp(name, "from")) {
            if (!parse_ms(name, v, &p->q.from, r)) return false;
            p->have_from = true;
        } else if (windowed && !strcmp(name, "to")) {
            if (!parse_ms(name, v, &p->q.to, r)) return false;
            p->have_to = true;
        } else if (!strcmp(name, "window_start") || !strcmp(name, "from") || !strcmp(name, "to")) {
            gd_reply_error(r, 400, "%s is not windowed; '%s' does not apply", t->name, name);
            return false;
        } else {
            gd_reply_error(r, 400, "unknown parameter '%s' for %s", name, t->name);
            return false;
        }
    }
    if (p->have_window_start && (p->have_from || p->have_to)) {
        gd_reply_error(r, 400, "give window_start or from/to, not both");
        return false;
    }
    if (p->have_window_start) {
        p->q.mode = GD_WINDOWS_RANGE;
        p->q.from = window_start;
        p->q.to = window_start + 1;
    } else if (p->have_from || p->have_to) {
        p->q.mode = GD_WINDOWS_RANGE;
        if (!p->have_to) p->q.to = GD_MAX_TIMESTAMP + 1;
        if (p->q.from >= p->q.to) {
            gd_reply_error(r, 400, "from must be less than to");
            return false;
        }
    } else {
        p->q.mode = GD_WINDOWS_LATEST;
    }
    return true;
}

/* Resolves order_by to a key column, a window bound or a value column. */
static bool resolve_order(const gd_tabledef *t, const char *name, result *res, gd_reply *r)
{
    res->order_col = ORDER_NONE;
    res->order_key = -1;
    if (!name) return true;
    for (int k = 0; k < t->nkeys; k++)
        if (!strcmp(name, t->keys[k].name)) {
            res->order_key = k;
            return true;
        }
    for (int c = 0; c < t->ncols; c++)
        if (!strcmp(name, t->cols[c].name)) {
            res->order_col = c;
            return true;
        }
    if (gd_table_windowed(t) && !strcmp(name, "window_start")) {
        res->order_col = ORDER_WINDOW_START;
        return true;
    }
    if (gd_table_windowed(t) && !strcmp(name, "window_end")) {
        res->order_col = ORDER_WINDOW_END;
        return true;
    }
    gd_reply_error(r, 400, "order_by: %s has no column '%s'", t->name, name);
    return false;
}

/* What the query asks for, whatever page it is on, as a cursor's associated
 * data: the version of the cursor format, the table (name, uid -- one
 * dropped and made again is another -- and statement), filters, windows and
 * order. */
static void query_identity(const gd_catalog_entry *e, const table_params *p, const result *res, gd_buf *out)
{
    gd_buf_putc(out, CURSOR_VERSION);
    gd_buf_printf(out, "%s|%llu|%zu:%s", e->name, (unsigned long long)e->uid, strlen(e->sql), e->sql);
    for (int k = 0; k < GD_MAX_KEYS; k++) {
        if (!p->q.key_eq[k].p) {
            gd_buf_puts(out, "|-");
            continue;
        }
        gd_buf_printf(out, "|%u:", (unsigned)p->q.key_eq[k].len);
        gd_buf_put(out, p->q.key_eq[k].p, p->q.key_eq[k].len);
    }
    gd_buf_printf(out, "|%d:%lld:%lld|%d:%d:%d", (int)p->q.mode, (long long)p->q.from, (long long)p->q.to,
                  res->order_col, res->order_key, (int)res->desc);
}

static bool window_fits(const gd_tabledef *t, int64_t w)
{
    if (!t->window_ms) return w == 0; /* a table without windows has one, at 0 */
    return w >= 0 && w <= GD_MAX_TIMESTAMP && w % t->window_ms == 0;
}

/* The value type a column's values have. */
static gd_vtype vtype_of(gd_coltype ct)
{
    return ct == GD_T_STRING ? GD_V_STR : ct == GD_T_DOUBLE ? GD_V_DBL : ct == GD_T_BOOLEAN ? GD_V_BOOL : GD_V_INT;
}

/* Whether every field of a decoded cursor can belong to this query. */
static bool cursor_fits(const cursor *c, const gd_tabledef *t, const result *res)
{
    bool windowed = gd_table_aggregates(t);
    if (c->pinned && (!windowed || !window_fits(t, c->window))) return false;
    if (windowed) {
        gd_str keys[GD_MAX_KEYS];
        if (c->key.len < 8 || !window_fits(t, gd_rowkey_window(c->key.p)) ||
            gd_groupkey_split(c->key.p + 8, c->key.len - 8, t->nkeys, keys))
            return false;
    } else if (c->key.len > 511) {
        return false;
    }
    gd_vtype want;
    if (res->order_col == ORDER_NONE && res->order_key < 0) want = GD_V_NULL;
    else if (res->order_key >= 0) want = vtype_of(t->keys[res->order_key].type);
    else if (res->order_col < 0) want = GD_V_INT; /* a window bound */
    else if (!windowed) return c->v.t != GD_V_BOOL && (c->v.t != GD_V_DBL || isfinite(c->v.d)); /* a JSON member */
    else {
        want = vtype_of(t->cols[res->order_col].type);
        if (c->v.t == GD_V_NULL) return true;
    }
    return c->v.t == want && (want != GD_V_DBL || isfinite(c->v.d));
}

/* A row as a JSON object, personal columns masked when mask is set. */
static void render_row(const gd_catalog_entry *e, const row_ref *row, bool mask, gd_buf *out, gd_arena *scratch)
{
    const gd_tabledef *t = e->table;
    if (t->kind != GD_TABLE_WINDOWED) {
        if (mask) gd_mask_json_object(e, row->val, out);
        else gd_buf_put(out, row->val.p, row->val.len);
        return;
    }
    gd_str keys[GD_MAX_KEYS];
    gd_slot slots[GD_MAX_COLS];
    gd_row r;
    if (gd_groupkey_split(row->key.p + 8, row->key.len - 8, t->nkeys, keys) ||
        gd_row_decode(t, row->val.p, row->val.len, slots) ||
        !gd_row_compute(t, keys, gd_rowkey_window(row->key.p), slots, &r, scratch)) {
        gd_buf_puts(out, "null");
        return;
    }
    if (!mask) return gd_row_render(t, &r, out);
    gd_buf obj = {0};
    gd_row_render(t, &r, &obj);
    gd_mask_json_object(e, (gd_str){obj.p, (uint32_t)obj.len}, out);
    gd_buf_free(&obj);
}

void gd_route_table_rows(const gd_api_ctx *ctx, const gd_request *req, const char *name,
                         gd_reply *r)
{
    const gd_catalog_entry *e = gd_catalog_find(ctx->cat, gd_str_c(name));
    const gd_catalog_entry *quarantined = e ? NULL : gd_catalog_find_quarantined(ctx->cat, gd_str_c(name));
    if (quarantined && quarantined->is_table) {
        gd_reply_error(r, 404, "table '%s' is in ERROR: its stored definition did not compile at start (%s); "
                               "DROP TABLE removes it",
                       quarantined->name, quarantined->error);
        return;
    }
    if (!e || !e->is_table) {
        gd_reply_error(r, 404, "no table named '%s' (GET /v1/tables lists them)", name);
        return;
    }
    const gd_tabledef *t = e->table;
    table_params p;
    result res = {.t = t};
    cursor cur = {0};
    if (!parse_params(t, req, &p, r) || !resolve_order(t, p.order_by, &res, r)) return;
    if (p.order_by && !gd_pii_may_use(e, p.order_by, "ordering by", req, r)) return;
    for (int k = 0; k < t->nkeys; k++) /* an equality filter is a comparison, as in SQL */
        if (p.q.key_eq[k].p && !gd_pii_may_use(e, t->keys[k].name, "filtering on", req, r)) return;
    res.desc = p.desc;
    gd_buf query = {0};
    query_identity(e, &p, &res, &query);
    if (p.cursor && (open_cursor(ctx->cursor_key, &query, p.cursor, &cur) || decode_cursor(&cur) ||
                     !cursor_fits(&cur, t, &res))) {
        gd_reply_error(r, 400, "cursor is not one this server issued for this query (give the same parameters as "
                               "the page it came from)");
        gd_buf_free(&query);
        gd_buf_free(&cur.raw);
        return;
    }
    if (cur.pinned) { /* the latest window as the first page saw it */
        p.q.mode = GD_WINDOWS_RANGE;
        p.q.from = cur.window;
        p.q.to = cur.window + 1;
    }
    MDB_txn *txn;
    if (gd_store_begin_read(ctx->store, &txn)) {
        gd_reply_error(r, 500, "the store cannot be read");
        gd_buf_free(&query);
        gd_buf_free(&cur.raw);
        return;
    }
    int64_t latest = INT64_MIN;
    res.keep = (size_t)p.limit + 1;
    res.key_order = res.order_col == ORDER_NONE && res.order_key < 0 && !res.desc;
    res.has_after = p.cursor != NULL;
    res.after_sort = cur.v;
    res.after_key = cur.key;
    res.rows = malloc(res.keep * sizeof *res.rows);
    p.q.deadline_ms = req->deadline_ms;
    int rc = res.rows ? gd_query_run(ctx->store, txn, &p.q, collect, &res, &latest) : GD_ENOMEM;
    bool pinned = cur.pinned || (p.q.mode == GD_WINDOWS_LATEST && latest != INT64_MIN);
    int64_t window = cur.pinned ? cur.window : latest;
    if (rc == GD_ETIMEDOUT) {
        gd_reply_timed_out(ctx, r);
    } else if (rc) {
        gd_reply_error(r, 500, "reading %s failed", t->name);
    } else {
        if (!res.key_order && res.n > 1) qsort_r(res.rows, res.n, sizeof *res.rows, row_cmp, &res.desc);
        size_t shown = res.n < (size_t)p.limit ? res.n : (size_t)p.limit;
        bool mask = !gd_request_sees_pii(req) && gd_catalog_has_pii(e);
        r->status = 200;
        r->content_type = "application/json";
        gd_buf_puts(&r->body, "{\"table\":");
        gd_json_put_cstr(&r->body, t->name);
        gd_buf_puts(&r->body, ",\"rows\":[");
        for (size_t i = 0; i < shown; i++) {
            if (i) gd_buf_putc(&r->body, ',');
            render_row(e, &res.rows[i], mask, &r->body, &res.strings);
        }
        gd_buf_printf(&r->body, "],\"count\":%zu", shown);
        if (res.n > shown) {
            gd_buf_puts(&r->body, ",\"next_cursor\":\"");
            if (encode_cursor(ctx->cursor_key, &query, pinned, window, res.rows[shown - 1].sort,
                              res.rows[shown - 1].key, &r->body))
                gd_reply_error(r, 500, "the next page's cursor cannot be sealed");
            else gd_buf_putc(&r->body, '"');
        }
        if (r->status == 200) gd_buf_putc(&r->body, '}');
    }
    mdb_txn_abort(txn);
    free(res.rows);
    gd_arena_free(&res.strings);
    gd_buf_free(&query);
    gd_buf_free(&cur.raw);
}
