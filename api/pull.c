/* pull.c -- pull queries: GET /v1/tables and GET /v1/tables/{table}.
 *
 * A protocol adapter over the SQL executor: a request is validated whole
 * before any read (every parameter known, each once, each well-formed),
 * turned into a query plan by gd_sql_plan_rows (the planner that binds SQL,
 * so the columns, the personal-data checks -- plan->pii_use refused with
 * SQL's 403, plan->pii masked -- and the order are SQL's), and run by
 * gd_sql_pull in one read transaction, the one read path of both; rows come
 * back in order and are written here as JSON objects. Rows are paged with
 * keyset cursors: a cursor holds the place in the order of the last row
 * returned (sort value and row key, which the executor hands over with each
 * row and takes back as plan->after) and, for "the latest window", which
 * window that was, so pages neither repeat nor skip rows while ingest goes
 * on; it is sealed with a key of the data dir, so a client can neither
 * read it nor forge one (see "cursors" below). The plan asks for limit + 1
 * rows, so a page never holds more in memory however many match (the
 * executor stops a scan in key order there, and keeps a bounded heap when
 * sorting), and the last tells whether a next page exists. */
#include <gnutls/crypto.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../sql/sql.h"
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
        json_t *advance = t->advance_ms ? json_integer(t->advance_ms) : json_null();
        json_array_append_new(tables, json_pack("{s:s,s:o,s:o,s:o,s:o,s:b}", "name", t->name,
                                                "key_columns", keys, "value_columns", cols,
                                                "window_ms", window, "advance_ms", advance, "session", t->session));
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
    if (!rc) gd_buf_put_hex(out, (const unsigned char *)sealed.p, 1 + CURSOR_NONCE + n);
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
            if (window_start % gd_window_step(t)) {
                gd_reply_error(r, 400, "window_start must be a multiple of %lld ms (the window's %s)",
                               (long long)gd_window_step(t), t->advance_ms ? "advance" : "size");
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

/* What the query asks for, whatever page it is on, as a cursor's associated
 * data: the version of the cursor format, the table (name, uid -- one
 * dropped and made again is another -- and statement), filters, windows and
 * order (the plan's order column, -1 for the row key, and direction). */
static void query_identity(const gd_catalog_entry *e, const table_params *p, const gd_query_plan *plan, gd_buf *out)
{
    gd_buf_putc(out, CURSOR_VERSION);
    /* "name|uid|length:sql", put piece by piece: a printf of the statement
     * (hundreds of bytes) overflowed gd_buf_printf's first try and was
     * formatted twice by glibc's truncating path (3% of a keyed pull) */
    gd_buf_puts(out, e->name);
    gd_buf_putc(out, '|');
    gd_buf_put_dec(out, e->uid);
    gd_buf_putc(out, '|');
    gd_buf_put_dec(out, strlen(e->sql));
    gd_buf_putc(out, ':');
    gd_buf_puts(out, e->sql);
    for (int k = 0; k < GD_MAX_KEYS; k++) {
        if (!p->q.key_eq[k].p) {
            gd_buf_puts(out, "|-");
            continue;
        }
        gd_buf_printf(out, "|%u:", (unsigned)p->q.key_eq[k].len);
        gd_buf_put(out, p->q.key_eq[k].p, p->q.key_eq[k].len);
    }
    gd_buf_printf(out, "|%d:%lld:%lld|%d:%d", (int)p->q.mode, (long long)p->q.from, (long long)p->q.to,
                  plan->norder ? plan->order_cols[0] : -1, (int)p->desc);
}

static bool window_fits(const gd_tabledef *t, int64_t w)
{
    if (!t->window_ms) return w == 0; /* a table without windows has one, at 0 */
    return w >= 0 && w <= GD_MAX_TIMESTAMP && w % gd_window_step(t) == 0;
}

/* The value type a column's values have. */
static gd_vtype vtype_of(gd_coltype ct)
{
    return ct == GD_T_STRING ? GD_V_STR : ct == GD_T_DOUBLE ? GD_V_DBL : ct == GD_T_BOOLEAN ? GD_V_BOOL : GD_V_INT;
}

/* Whether every field of a decoded cursor can belong to this query. */
static bool cursor_fits(const cursor *c, const gd_tabledef *t, const gd_query_plan *plan)
{
    bool windowed = gd_table_aggregates(t);
    if (c->pinned && (!windowed || !window_fits(t, c->window))) return false;
    if (windowed) {
        gd_str keys[GD_MAX_KEYS];
        if (c->key.len < 8 || !window_fits(t, gd_rowkey_window(c->key.p)) ||
            gd_groupkey_split(c->key.p + 8, c->key.len - 8, t->nkeys, keys))
            return false;
    } else if (c->key.len > GD_STORE_MAX_KEY) {
        return false;
    }
    int col = plan->norder ? plan->order_cols[0] : -1; /* keys, window bounds, value columns */
    bool value_col = col >= t->nkeys + (gd_table_windowed(t) ? 2 : 0);
    gd_vtype want = col < 0 ? GD_V_NULL : vtype_of(plan->types[col]);
    if (!windowed && value_col) return c->v.t != GD_V_BOOL && (c->v.t != GD_V_DBL || isfinite(c->v.d)); /* a JSON member */
    if (value_col && c->v.t == GD_V_NULL) return true;
    return c->v.t == want && (want != GD_V_DBL || isfinite(c->v.d));
}

/* ---- the rows ---- */

/* A page being written: rows rendered as they come from the executor, in
 * order; the place of the last one shown, copied, for the next cursor. */
typedef struct {
    const gd_query_plan *plan;
    bool mask;      /* personal columns masked */
    size_t limit, n;
    gd_buf *out;
    gd_value last_sort;
    gd_buf last_sort_text, last_key; /* own the bytes of the last row shown */
} page;

/* A row as a JSON object, personal columns masked when the page masks: a
 * reference row as stored, an aggregate's row from its values. */
static void put_object(const page *pg, const gd_value *row, const gd_sql_pos *pos)
{
    const gd_query_plan *plan = pg->plan;
    if (!gd_table_aggregates(plan->source->table)) {
        if (pg->mask) gd_mask_json_object(plan->source, pos->val, pg->out);
        else gd_buf_put(pg->out, pos->val.p, pos->val.len);
        return;
    }
    gd_buf_putc(pg->out, '{');
    for (int i = 0; i < plan->ncols; i++) {
        if (i) gd_buf_putc(pg->out, ',');
        gd_json_put_cstr(pg->out, plan->names[i]);
        gd_buf_putc(pg->out, ':');
        if (pg->mask && plan->pii[i]) gd_json_put_masked(pg->out, plan->pii[i], row[i]);
        else gd_json_put_value(pg->out, row[i]);
    }
    gd_buf_putc(pg->out, '}');
}

/* The plan asks for limit + 1 rows: the last tells that more follow. */
static int put_row(void *ctx, const gd_value *row, int ncols, const gd_sql_pos *pos)
{
    page *pg = ctx;
    (void)ncols;
    if (pg->n++ >= pg->limit) return 1;
    if (pg->n > 1) gd_buf_putc(pg->out, ',');
    put_object(pg, row, pos);
    if (pg->n == pg->limit) {
        pg->last_sort = pos->sort;
        if (pos->sort.t == GD_V_STR) {
            gd_buf_put(&pg->last_sort_text, pos->sort.s.p, pos->sort.s.len);
            pg->last_sort.s = (gd_str){pg->last_sort_text.p, pos->sort.s.len};
        }
        gd_buf_put(&pg->last_key, pos->key.p, pos->key.len);
    }
    return 0;
}

/* Reads a page of a plan into r; the cursor of the next page, if any, is
 * sealed for the query p asks (query: its identity, made here when the
 * caller had no cursor to open with it) and pinned to the window of the
 * rows shown, or the cursor's. */
static void read_page(const gd_api_ctx *ctx, const gd_request *req, const gd_catalog_entry *e, const table_params *p,
                      const gd_query_plan *plan, gd_buf *query, const cursor *cur, gd_reply *r)
{
    size_t limit = (size_t)p->limit;
    page pg = {.plan = plan, .mask = !gd_request_sees_pii(req) && gd_catalog_has_pii(e), .limit = limit,
               .out = &r->body};
    gd_sql_error err = {0};
    r->status = 200;
    r->content_type = "application/json";
    gd_buf_puts(&r->body, "{\"table\":");
    gd_json_put_cstr(&r->body, e->name);
    gd_buf_puts(&r->body, ",\"rows\":[");
    if (gd_sql_pull(ctx->store, plan, gd_now_ms(), req->deadline_ms, put_row, &pg, &err)) {
        if (err.code == GD_SQL_TIMED_OUT) gd_reply_timed_out(ctx, r);
        else if (err.code == GD_SQL_UNAVAILABLE) gd_reply_error(r, 503, "%s", err.message);
        else gd_reply_error(r, 500, "reading %s failed", e->name);
    } else {
        size_t shown = pg.n < limit ? pg.n : limit;
        gd_buf_printf(&r->body, "],\"count\":%zu", shown);
        if (pg.n > shown) {
            gd_str key = {pg.last_key.p, (uint32_t)pg.last_key.len};
            bool pinned = cur->pinned || (plan->window_latest && gd_table_aggregates(e->table));
            int64_t window = cur->pinned ? cur->window : pinned ? gd_rowkey_window(key.p) : INT64_MIN;
            gd_buf_puts(&r->body, ",\"next_cursor\":\"");
            if (!query->len) query_identity(e, p, plan, query);
            if (encode_cursor(ctx->cursor_key, query, pinned, window, pg.last_sort, key, &r->body))
                gd_reply_error(r, 500, "the next page's cursor cannot be sealed");
            else gd_buf_putc(&r->body, '"');
        }
        if (r->status == 200) gd_buf_putc(&r->body, '}');
    }
    gd_buf_free(&pg.last_sort_text);
    gd_buf_free(&pg.last_key);
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
    if (!parse_params(t, req, &p, r)) return;
    gd_arena arena;
    gd_arena_init(&arena);
    gd_query_plan plan;
    gd_sql_error err = {0};
    gd_buf query = {0};
    cursor cur = {0};
    char msg[256];
    if (gd_sql_plan_rows(ctx->cat, &p.q, p.order_by, p.desc, p.limit + 1, &arena, &plan, &err)) {
        gd_reply_error(r, 400, "%s", err.message);
    } else if (plan.pii_use.column && !gd_request_sees_pii(req)) {
        gd_pii_refusal(plan.pii_use, msg, sizeof msg);
        gd_reply_error(r, 403, "%s", msg);
    } else {
        if (p.cursor) query_identity(e, &p, &plan, &query); /* else only when a next page has a cursor */
        if (p.cursor && (open_cursor(ctx->cursor_key, &query, p.cursor, &cur) || decode_cursor(&cur) ||
                         !cursor_fits(&cur, t, &plan))) {
            gd_reply_error(r, 400, "cursor is not one this server issued for this query (give the same parameters "
                                   "as the page it came from)");
        } else {
            gd_sql_pos after = {cur.v, cur.key, {0}};
            if (p.cursor) plan.after = &after;
            if (cur.pinned) { /* the latest window as the first page saw it */
                plan.window_latest = false;
                plan.window_from = cur.window;
                plan.window_to = cur.window + 1;
            }
            read_page(ctx, req, e, &p, &plan, &query, &cur, r);
        }
    }
    gd_arena_free(&arena);
    gd_buf_free(&query);
    gd_buf_free(&cur.raw);
}
