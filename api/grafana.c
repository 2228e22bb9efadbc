/* grafana.c -- the Grafana JSON datasource (the simpod-json-datasource
 * plugin, 0.6 and later), rooted at /grafana, over the same tables and
 * read transactions as /v1/tables.
 *
 *   GET  /grafana/                        200: the plugin's "Save & test"
 *   POST /grafana/metrics                 one metric per numeric value column
 *                                         of each windowed table, `table.column`;
 *                                         the reference tables as table metrics
 *   POST /grafana/metric-payload-options  the values of a key column
 *   POST /grafana/query                   series or tables for the targets
 *   POST /grafana/variable                template variable values
 *   POST /grafana/tag-keys, /tag-values   ad hoc filter keys and values
 *
 * A time-series target gives one series per group of the table (its key
 * values) that the payload and the ad hoc filters let through, with the
 * column's value per window, [[value, window_start_ms], ...] ascending, for
 * the windows starting in [range.from, range.to]. A series is named by its
 * key values, a game by its name and a player by their username where the
 * table has those. `format: table` gives the rows themselves, newest windows
 * first, at most MAX_TABLE_ROWS. Filters (`filters`, and `adhocFilters` of
 * older plugins) apply to the tables that have their column and are ignored
 * by the others, since Grafana sends dashboard-wide filters to every panel;
 * an unknown operator is refused whatever the table. A table without
 * windows (created without WINDOW) has one window for all time: its table
 * format shows it whatever the range.
 *
 * Personal data: without the pii scope every personal column (the catalog
 * says which) is masked in rows, series names, variables and payload
 * options, and a payload or ad hoc filter on one is a 403 (gd_pii_may_use).
 *
 * Request bodies are read with jansson, answers written straight into the
 * reply buffer: a week of 5-minute windows for every game is tens of
 * thousands of points. Unknown request fields are ignored. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../server/regex.h"
#include "../store/query.h"
#include "routes.h"

enum { MAX_TABLE_ROWS = 10000, MAX_FILTERS = 32, MAX_CHOICES = 10000, MAX_TAG_VALUES = 1000 };

/* ---- request bodies ---- */

/* The body as a JSON object; NULL with a 400 in r otherwise. An empty body
 * is an empty object (the plugin sends {} or nothing). */
static json_t *body_object(const gd_request *req, gd_reply *r)
{
    if (!req->body_len) return json_object();
    json_error_t err;
    json_t *doc = json_loadb(req->body, req->body_len, 0, &err);
    if (!doc) {
        gd_reply_error(r, 400, "the body is not JSON: %s (line %d, column %d)", err.text, err.line, err.column);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        gd_reply_error(r, 400, "the body must be a JSON object");
        return NULL;
    }
    return doc;
}

static void reply_doc(gd_reply *r, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    r->status = 200;
    r->content_type = "application/json";
    gd_buf_puts(&r->body, text ? text : "[]");
    free(text);
    json_decref(doc);
}

/* "2016-10-31T06:33:44.866Z" (or with an offset, or epoch ms as a number
 * or a digit string) -> epoch ms. */
static bool parse_time(json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    const char *s = json_string_value(v);
    if (!s) return false;
    if (gd_parse_int(s, strlen(s), 0, GD_MAX_TIMESTAMP, out) == GD_OK) return true;
    struct tm tm = {0};
    int ms = 0, consumed = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec, &consumed) != 6)
        return false;
    const char *p = s + consumed;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3) ms = ms * 10 + (*p - '0');
        for (; digits < 3; digits++) ms *= 10;
    }
    int64_t offset_s = 0;
    if (*p == '+' || *p == '-') {
        int hh, mm;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2) return false;
        offset_s = (*p == '-' ? -1 : 1) * (hh * 3600 + mm * 60);
        p += 6;
    } else if (*p == 'Z') {
        p++;
    }
    if (*p || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    *out = ((int64_t)t - offset_s) * 1000 + ms;
    return *out >= 0 && *out <= GD_MAX_TIMESTAMP;
}

/* ---- which tables and columns ---- */

/* A column of a table as filters and names see it. */
typedef enum { C_KEY, C_WINDOW_START, C_WINDOW_END, C_VALUE } col_kind;
typedef struct {
    col_kind kind;
    int index;
} column;

static bool find_column(const gd_tabledef *t, const char *name, column *out)
{
    for (int k = 0; k < t->nkeys; k++)
        if (!strcmp(name, t->keys[k].name)) return *out = (column){C_KEY, k}, true;
    for (int c = 0; c < t->ncols; c++)
        if (!strcmp(name, t->cols[c].name)) return *out = (column){C_VALUE, c}, true;
    if (gd_table_windowed(t) && !strcmp(name, "window_start")) return *out = (column){C_WINDOW_START, 0}, true;
    if (gd_table_windowed(t) && !strcmp(name, "window_end")) return *out = (column){C_WINDOW_END, 0}, true;
    return false;
}

static bool numeric(gd_coltype t) { return t == GD_T_BIGINT || t == GD_T_INTEGER || t == GD_T_DOUBLE; }

static const char *column_type(const gd_tabledef *t, column c)
{
    if (c.kind == C_WINDOW_START || c.kind == C_WINDOW_END) return "time";
    gd_coltype ct = c.kind == C_KEY ? t->keys[c.index].type : t->cols[c.index].type;
    return numeric(ct) ? "number" : "string";
}

/* A metric: "table.column" for a series of a windowed table's numeric
 * column, or a table's name for its rows. */
static bool resolve_metric(const gd_catalog *cat, const char *metric, const gd_tabledef **t, int *col)
{
    const char *dot = strrchr(metric, '.');
    *t = gd_catalog_tabledef(cat, (gd_str){metric, (uint32_t)(dot ? (size_t)(dot - metric) : strlen(metric))});
    *col = -1;
    if (!*t) return false;
    if (!dot) return true;
    for (int c = 0; c < (*t)->ncols; c++)
        if (!strcmp(dot + 1, (*t)->cols[c].name) && numeric((*t)->cols[c].type) && gd_table_windowed(*t))
            *col = c;
    return *col >= 0;
}

/* "gaming_active_players_5min" -> "active players 5min" */
static void readable(const char *name, char *out, size_t cap)
{
    if (!strncmp(name, "gaming_", 7)) name += 7;
    snprintf(out, cap, "%s", name);
    for (char *p = out; *p; p++)
        if (*p == '_') *p = ' ';
}

/* ---- GET /grafana/ and POST /grafana/metrics ---- */

void gd_grafana_root(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    (void)ctx, (void)req;
    r->status = 200;
    r->content_type = "application/json";
    gd_buf_puts(&r->body, "{\"status\":\"ok\",\"datasource\":\"gamingd\"}");
}

static json_t *payload_defs(const gd_tabledef *t, bool series)
{
    json_t *payloads = json_array();
    for (int k = 0; k < t->nkeys; k++)
        json_array_append_new(payloads, json_pack("{s:s,s:s,s:s,s:s,s:b}", "label", t->keys[k].name, "name",
                                                  t->keys[k].name, "type", "multi-select", "placeholder", "all",
                                                  "reloadMetric", 0));
    json_t *formats = json_array();
    if (series) json_array_append_new(formats, json_pack("{s:s,s:s}", "label", "time series", "value", "time_series"));
    json_array_append_new(formats, json_pack("{s:s,s:s}", "label", "table", "value", "table"));
    json_array_append_new(payloads, json_pack("{s:s,s:s,s:s,s:o}", "label", "format", "name", "format", "type",
                                              "select", "options", formats));
    return payloads;
}

void gd_grafana_metrics(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    json_t *body = body_object(req, r);
    if (!body) return;
    json_decref(body);
    json_t *list = json_array();
    char label[256], table_label[96];
    for (unsigned i = 0; i < GD_MAX_TABLES; i++) {
        const gd_catalog_entry *e = gd_catalog_table(ctx->cat, i);
        if (!e) continue;
        const gd_tabledef *t = e->table;
        readable(t->name, table_label, sizeof table_label);
        if (!gd_table_windowed(t)) {
            snprintf(label, sizeof label, "%s (table)", table_label);
            json_array_append_new(list, json_pack("{s:s,s:s,s:o}", "label", label, "value", t->name, "payloads",
                                                  payload_defs(t, false)));
            continue;
        }
        for (int c = 0; c < t->ncols; c++) {
            if (!numeric(t->cols[c].type)) continue;
            char value[160], col_label[96];
            snprintf(value, sizeof value, "%s.%s", t->name, t->cols[c].name);
            readable(t->cols[c].name, col_label, sizeof col_label);
            snprintf(label, sizeof label, "%s: %s", table_label, col_label);
            json_array_append_new(list, json_pack("{s:s,s:s,s:o}", "label", label, "value", value, "payloads",
                                                  payload_defs(t, true)));
        }
    }
    reply_doc(r, list);
}

/* ---- the values a key column takes ---- */

typedef struct {
    json_t *list;  /* [{label, value}] or [{__text, __value}] */
    bool variable; /* the second form */
    bool sees_pii;
    gd_map seen;
    size_t max;
    int64_t deadline_ms; /* the request's: scans stop there */
    bool timed_out;
} choices;

/* A value of a column whose personal-data attribute is pii (masked for a
 * reader without the scope), labelled (label NULL: the value). */
static void add_choice(choices *ch, gd_pii pii, gd_str value, gd_str label)
{
    if (!value.p || json_array_size(ch->list) >= ch->max) return;
    gd_buf masked = {0};
    if (pii && !ch->sees_pii) {
        gd_masked_text(&masked, pii, (gd_value){.t = GD_V_STR, .s = value});
        value = (gd_str){masked.p, (uint32_t)masked.len};
    }
    bool created;
    gd_map_slot *slot = gd_map_upsert(&ch->seen, value, &created);
    if (!created) {
        gd_buf_free(&masked);
        return;
    }
    slot->val = ch;
    json_t *v = json_stringn(value.p, value.len), *l = label.p ? json_stringn(label.p, label.len) : json_incref(v);
    json_array_append_new(ch->list, ch->variable ? json_pack("{s:o,s:o}", "__text", l, "__value", v)
                                                 : json_pack("{s:o,s:o}", "label", l, "value", v));
    gd_buf_free(&masked);
}

typedef struct {
    choices *ch;
    const char *value_member, *label_member; /* of a reference row; NULL label: the value */
    gd_pii value_pii, label_pii;
} ref_scan;

static gd_str member_string(json_t *row, const char *name)
{
    json_t *v = json_object_get(row, name);
    return json_is_string(v) ? (gd_str){json_string_value(v), (uint32_t)json_string_length(v)} : GD_STR_NULL;
}

static int collect_reference(void *ctx, gd_str key, gd_str val)
{
    ref_scan *rs = ctx;
    json_t *row = json_loadb(val.p, val.len, 0, NULL);
    gd_str v = rs->value_member ? member_string(row, rs->value_member) : key;
    gd_str label = rs->label_member ? member_string(row, rs->label_member) : GD_STR_NULL;
    gd_buf masked = {0};
    if (rs->label_pii && !rs->ch->sees_pii && label.p) {
        gd_masked_text(&masked, rs->label_pii, (gd_value){.t = GD_V_STR, .s = label});
        label = (gd_str){masked.p, (uint32_t)masked.len};
    }
    add_choice(rs->ch, rs->value_pii, v, label);
    gd_buf_free(&masked);
    json_decref(row);
    return json_array_size(rs->ch->list) >= rs->ch->max;
}

typedef struct {
    choices *ch;
    const gd_tabledef *t;
    column col;
    gd_pii pii;
    gd_arena scratch;
} window_scan;

static int collect_window_values(void *ctx, gd_str key, gd_str val)
{
    window_scan *ws = ctx;
    gd_str keys[GD_MAX_KEYS];
    if (gd_groupkey_split(key.p + 8, key.len - 8, ws->t->nkeys, keys)) return 0;
    if (ws->col.kind == C_KEY) {
        add_choice(ws->ch, ws->pii, keys[ws->col.index], GD_STR_NULL);
    } else if (ws->col.kind == C_VALUE) {
        gd_slot slots[GD_MAX_COLS];
        if (gd_row_decode(ws->t, val.p, val.len, slots)) return 0;
        gd_arena_reset(&ws->scratch);
        gd_value v = gd_row_column(ws->t, keys, gd_rowkey_window(key.p), slots, ws->col.index, &ws->scratch);
        gd_buf text = {0};
        if (v.t == GD_V_STR) add_choice(ws->ch, ws->pii, v.s, GD_STR_NULL);
        else if (v.t != GD_V_NULL) {
            gd_json_put_value(&text, v);
            add_choice(ws->ch, ws->pii, (gd_str){text.p, (uint32_t)text.len}, GD_STR_NULL);
        }
        gd_buf_free(&text);
    }
    return json_array_size(ws->ch->list) >= ws->ch->max;
}

static int by_value(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    const char *vx = json_string_value(json_object_get(x, "value")), *vy = json_string_value(json_object_get(y, "value"));
    if (!vx) vx = json_string_value(json_object_get(x, "__value")), vy = json_string_value(json_object_get(y, "__value"));
    return strcmp(vx ? vx : "", vy ? vy : "");
}

/* Values gathered from several tables, in one order: by value. */
static void sort_choices(choices *ch)
{
    size_t n = json_array_size(ch->list);
    json_t **items = malloc(sizeof *items * (n ? n : 1));
    if (!items) return;
    for (size_t i = 0; i < n; i++) items[i] = json_incref(json_array_get(ch->list, i));
    qsort(items, n, sizeof *items, by_value);
    json_array_clear(ch->list);
    for (size_t i = 0; i < n; i++) json_array_append_new(ch->list, items[i]);
    free(items);
}

/* The values of column `name`: games and players (with their names) and
 * genres from the reference tables, segments from their definition, any
 * other column from the newest windows of the tables that have it (of t
 * only, when t is given) -- game ids from both, since activity may name a
 * game before (or without) its games row. Values from windows come sorted. */
static void column_choices(const gd_api_ctx *ctx, MDB_txn *txn, const gd_tabledef *t, const char *name,
                           choices *ch)
{
    ref_scan rs = {.ch = ch};
    const gd_tabledef *games = gd_catalog_reference(ctx->cat, GD_TABLE_GAMES),
                      *players = gd_catalog_reference(ctx->cat, GD_TABLE_PLAYERS);
    gd_query q = {.mode = GD_WINDOWS_LATEST, .deadline_ms = ch->deadline_ms};
    if (!strcmp(name, "game_id") || !strcmp(name, "game_genre") || !strcmp(name, "genre")) {
        rs.value_member = strcmp(name, "game_id") ? "genre" : NULL;
        rs.label_member = strcmp(name, "game_id") ? NULL : "game_name";
        q.t = games;
    } else if (!strcmp(name, "player_id") || !strcmp(name, "email") || !strcmp(name, "player_email")) {
        rs.value_member = strcmp(name, "player_id") ? "email" : NULL;
        rs.label_member = strcmp(name, "player_id") ? NULL : "username";
        q.t = players;
    } else if (!strcmp(name, "player_segment")) {
        static const char *const segments[] = {"HIGH_PERFORMER", "MEDIUM_PERFORMER", "CASUAL_PLAYER"};
        for (int i = 0; i < 3; i++) add_choice(ch, GD_PII_NONE, gd_str_c(segments[i]), GD_STR_NULL);
        return;
    }
    if (q.t) { /* values and labels masked as the reference table's columns are */
        const gd_catalog_entry *re = gd_catalog_find(ctx->cat, gd_str_c(q.t->name));
        rs.value_pii = re ? gd_catalog_column_pii(re, rs.value_member ? rs.value_member : q.t->keys[0].name) : GD_PII_NONE;
        rs.label_pii = re && rs.label_member ? gd_catalog_column_pii(re, rs.label_member) : GD_PII_NONE;
        if (gd_query_run(ctx->store, txn, &q, collect_reference, &rs) == GD_ETIMEDOUT) ch->timed_out = true;
        if (strcmp(name, "game_id") || ch->timed_out) return;
        /* and the games with activity but no games row (yet): from the windows */
    }
    for (unsigned i = 0; i < GD_MAX_TABLES; i++) {
        const gd_catalog_entry *e = gd_catalog_table(ctx->cat, i);
        if (!e) continue;
        const gd_tabledef *tt = e->table;
        window_scan ws = {ch, tt, {C_KEY, 0}, gd_catalog_column_pii(e, name), {0}};
        if ((t && tt != t) || !gd_table_aggregates(tt) || !find_column(tt, name, &ws.col)) continue;
        gd_arena_init(&ws.scratch);
        gd_query wq = {.t = tt, .mode = GD_WINDOWS_LATEST, .deadline_ms = ch->deadline_ms};
        if (gd_query_run(ctx->store, txn, &wq, collect_window_values, &ws) == GD_ETIMEDOUT) ch->timed_out = true;
        gd_arena_free(&ws.scratch);
    }
    sort_choices(ch);
}

static void reply_choices(const gd_api_ctx *ctx, const gd_tabledef *t, const char *name, bool variable,
                          const gd_request *req, gd_reply *r)
{
    choices ch = {.list = json_array(), .variable = variable, .sees_pii = gd_request_sees_pii(req), .max = MAX_CHOICES,
                  .deadline_ms = req->deadline_ms};
    gd_map_init(&ch.seen, NULL);
    MDB_txn *txn;
    if (gd_store_begin_read(ctx->store, &txn)) {
        gd_map_free(&ch.seen);
        json_decref(ch.list);
        gd_reply_error(r, 500, "the store cannot be read");
        return;
    }
    column_choices(ctx, txn, t, name, &ch);
    mdb_txn_abort(txn);
    gd_map_free(&ch.seen);
    if (ch.timed_out) {
        json_decref(ch.list);
        gd_reply_timed_out(ctx, r);
    } else {
        reply_doc(r, ch.list);
    }
}

void gd_grafana_payload_options(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    json_t *body = body_object(req, r);
    if (!body) return;
    const char *metric = json_string_value(json_object_get(body, "metric"));
    const char *name = json_string_value(json_object_get(body, "name"));
    const gd_tabledef *t = NULL;
    int col;
    if (!metric || !name || !resolve_metric(ctx->cat, metric, &t, &col)) {
        gd_reply_error(r, 400, "metric-payload-options takes {\"metric\": a metric of /grafana/metrics, \"name\": a payload name}");
    } else if (!strcmp(name, "format")) {
        json_t *list = json_array();
        if (gd_table_windowed(t))
            json_array_append_new(list, json_pack("{s:s,s:s}", "label", "time series", "value", "time_series"));
        json_array_append_new(list, json_pack("{s:s,s:s}", "label", "table", "value", "table"));
        reply_doc(r, list);
    } else {
        column c;
        if (!find_column(t, name, &c) || c.kind != C_KEY) gd_reply_error(r, 400, "%s has no key column '%s'", t->name, name);
        else reply_choices(ctx, t, name, false, req, r);
    }
    json_decref(body);
}

void gd_grafana_variable(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    json_t *body = body_object(req, r);
    if (!body) return;
    json_t *payload = json_object_get(body, "payload");
    const char *target = json_string_value(json_is_object(payload) ? json_object_get(payload, "target") : payload);
    if (!target) target = json_string_value(json_object_get(body, "target"));
    const gd_tabledef *t = NULL;
    const char *name = target;
    const char *dot = target ? strrchr(target, '.') : NULL;
    if (dot) { /* "table.column" */
        t = gd_catalog_tabledef(ctx->cat, (gd_str){target, (uint32_t)(dot - target)});
        name = dot + 1;
    }
    column c;
    bool known = name && (t ? find_column(t, name, &c) : true);
    if (!known) {
        gd_reply_error(r, 400, "variable takes {\"payload\": {\"target\": COLUMN or TABLE.COLUMN}}");
    } else {
        reply_choices(ctx, t, name, true, req, r);
    }
    json_decref(body);
}

void gd_grafana_tag_keys(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    json_t *body = body_object(req, r);
    if (!body) return;
    json_decref(body);
    json_t *list = json_array(), *seen = json_object();
    for (unsigned i = 0; i < GD_MAX_TABLES; i++) {
        const gd_catalog_entry *e = gd_catalog_table(ctx->cat, i);
        if (!e) continue;
        const gd_tabledef *t = e->table;
        int n = t->nkeys + t->ncols + (gd_table_windowed(t) ? 2 : 0);
        for (int j = 0; j < n; j++) {
            column c = j < t->nkeys ? (column){C_KEY, j}
                       : j < t->nkeys + t->ncols ? (column){C_VALUE, j - t->nkeys}
                                                 : (column){j == n - 2 ? C_WINDOW_START : C_WINDOW_END, 0};
            const char *name = c.kind == C_KEY     ? t->keys[c.index].name
                               : c.kind == C_VALUE ? t->cols[c.index].name
                               : c.kind == C_WINDOW_START ? "window_start" : "window_end";
            if (json_object_get(seen, name)) continue;
            json_object_set_new(seen, name, json_true());
            const char *type = column_type(t, c);
            json_array_append_new(list, json_pack("{s:s,s:s}", "type", strcmp(type, "string") ? "number" : "string",
                                                  "text", name));
        }
    }
    json_decref(seen);
    reply_doc(r, list);
}

void gd_grafana_tag_values(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    json_t *body = body_object(req, r);
    if (!body) return;
    const char *key = json_string_value(json_object_get(body, "key"));
    if (!key) {
        gd_reply_error(r, 400, "tag-values takes {\"key\": a column of /grafana/tag-keys}");
    } else {
        choices ch = {.list = json_array(), .sees_pii = gd_request_sees_pii(req), .max = MAX_TAG_VALUES,
                      .deadline_ms = req->deadline_ms};
        gd_map_init(&ch.seen, NULL);
        MDB_txn *txn;
        if (!gd_store_begin_read(ctx->store, &txn)) {
            column_choices(ctx, txn, NULL, key, &ch);
            mdb_txn_abort(txn);
        }
        if (ch.timed_out) {
            json_decref(ch.list);
            gd_map_free(&ch.seen);
            gd_reply_timed_out(ctx, r);
            json_decref(body);
            return;
        }
        /* tag-values answers [{text}] */
        json_t *list = json_array();
        size_t i;
        json_t *item;
        json_array_foreach(ch.list, i, item) json_array_append(list, json_pack("{s:O}", "text", json_object_get(item, "label")));
        json_decref(ch.list);
        gd_map_free(&ch.seen);
        reply_doc(r, list);
    }
    json_decref(body);
}

/* ---- POST /grafana/query ---- */

typedef enum { OP_EQ, OP_NE, OP_LT, OP_GT, OP_RE, OP_NRE } filter_op;

typedef struct {
    column col;
    filter_op op;
    const char *value;
    double num;
    bool is_num;
    gd_regex *re; /* =~, !~ */
} filter;

typedef struct {
    const gd_catalog_entry *e;
    const gd_tabledef *t; /* e's */
    int metric_col; /* value column of a series; -1: rows (table format) */
    bool table_format;
    bool sees_pii;
    json_t *allowed[GD_MAX_KEYS]; /* payload values per key column: array, or NULL for all */
    filter filters[MAX_FILTERS];
    int nfilters;
    int64_t from, to;
    int64_t deadline_ms; /* the request's */
} target_query;

static void free_filters(target_query *tq)
{
    for (int i = 0; i < tq->nfilters; i++) gd_regex_free(tq->filters[i].re);
    tq->nfilters = 0;
}

/* The ad hoc filters that apply to tq->t. */
static bool parse_filters(target_query *tq, json_t *list, const gd_request *req, gd_reply *r)
{
    size_t i;
    json_t *f;
    json_array_foreach(list, i, f) {
        const char *key = json_string_value(json_object_get(f, "key"));
        const char *op = json_string_value(json_object_get(f, "operator"));
        json_t *jv = json_object_get(f, "value");
        char numtext[64];
        const char *value = json_string_value(jv);
        if (!value && json_is_number(jv)) {
            snprintf(numtext, sizeof numtext, "%.17g", json_number_value(jv));
            value = numtext;
        }
        if (!key || !op || !value) {
            gd_reply_error(r, 400, "an ad hoc filter is {\"key\", \"operator\", \"value\"}");
            return false;
        }
        static const char *const ops[] = {"=", "!=", "<", ">", "=~", "!~"};
        int o = -1;
        for (int k = 0; k < 6; k++)
            if (!strcmp(op, ops[k])) o = k;
        if (o < 0) { /* whatever the table: a filter of another table's column is still a mistake */
            gd_reply_error(r, 400, "unknown filter operator '%s' (=, !=, <, >, =~, !~)", op);
            return false;
        }
        column c;
        if (!find_column(tq->t, key, &c)) continue; /* a dashboard-wide filter for other tables */
        if (!gd_pii_may_use(tq->e, key, "filtering on", req, r)) return false;
        if (tq->nfilters == MAX_FILTERS) {
            gd_reply_error(r, 400, "at most %d ad hoc filters", MAX_FILTERS);
            return false;
        }
        filter *fl = &tq->filters[tq->nfilters];
        *fl = (filter){.col = c, .op = (filter_op)o, .value = value};
        char *end;
        fl->num = strtod(value, &end);
        fl->is_num = *value && !*end;
        if (fl->op == OP_RE || fl->op == OP_NRE) { /* matching the whole value, bounded (server/regex.h) */
            char why[256];
            if (gd_regex_compile(&fl->re, value, strlen(value), why, sizeof why)) {
                gd_reply_error(r, 400, "filter %s %s: the regular expression is refused: %s", key, op, why);
                return false;
            }
        }
        tq->nfilters++;
    }
    return true;
}

/* A row's value of a column, text for strings and regexes. */
static gd_value row_value(const gd_tabledef *t, column c, const gd_str *keys, int64_t window, const gd_slot *slots,
                          gd_arena *scratch)
{
    switch (c.kind) {
    case C_KEY: return (gd_value){.t = GD_V_STR, .s = keys[c.index]};
    case C_WINDOW_START: return (gd_value){.t = GD_V_INT, .i = window};
    case C_WINDOW_END: return (gd_value){.t = GD_V_INT, .i = window + t->window_ms};
    case C_VALUE: return gd_row_column(t, keys, window, slots, c.index, scratch);
    }
    return (gd_value){.t = GD_V_NULL};
}

/* A member of a reference row (JSON) as a value; strings point into m. */
static gd_value json_value_of(json_t *m)
{
    if (json_is_string(m)) return (gd_value){.t = GD_V_STR, .s = {json_string_value(m), (uint32_t)json_string_length(m)}};
    if (json_is_integer(m)) return (gd_value){.t = GD_V_INT, .i = json_integer_value(m)};
    if (json_is_real(m)) return (gd_value){.t = GD_V_DBL, .d = json_real_value(m)};
    if (json_is_boolean(m)) return (gd_value){.t = GD_V_BOOL, .i = json_is_true(m)};
    return (gd_value){.t = GD_V_NULL};
}

static bool filter_passes(const filter *f, gd_value v)
{
    if (v.t == GD_V_NULL) return f->op == OP_NE || f->op == OP_NRE;
    char text[64];
    gd_str s = v.t == GD_V_STR ? v.s : GD_STR_NULL;
    double num = v.t == GD_V_INT || v.t == GD_V_BOOL ? (double)v.i : v.d;
    if (v.t != GD_V_STR) {
        gd_buf b = {0};
        gd_json_put_value(&b, v);
        snprintf(text, sizeof text, "%.*s", (int)b.len, b.p);
        gd_buf_free(&b);
        s = gd_str_c(text);
    }
    switch (f->op) {
    case OP_EQ:
    case OP_NE: {
        bool eq = v.t == GD_V_STR ? s.len == strlen(f->value) && !memcmp(s.p, f->value, s.len)
                                  : f->is_num && num == f->num;
        return eq == (f->op == OP_EQ);
    }
    case OP_LT:
    case OP_GT: {
        int c;
        if (v.t == GD_V_STR || !f->is_num) {
            size_t n = strlen(f->value);
            c = memcmp(s.p, f->value, s.len < n ? s.len : n);
            if (!c) c = (s.len > n) - (s.len < n);
        } else {
            c = (num > f->num) - (num < f->num);
        }
        return f->op == OP_LT ? c < 0 : c > 0;
    }
    case OP_RE:
    case OP_NRE: return gd_regex_match(f->re, s.p, s.len) == (f->op == OP_RE);
    }
    return false;
}

static bool key_allowed(json_t *allowed, gd_str v)
{
    if (!allowed) return true;
    size_t i;
    json_t *a;
    json_array_foreach(allowed, i, a)
        if (json_string_length(a) == v.len && !memcmp(json_string_value(a), v.p, v.len)) return true;
    return false;
}

/* ---- series ---- */

typedef struct {
    gd_str name_parts[GD_MAX_KEYS]; /* as shown: a game's name for its id */
    gd_buf points;                  /* "[v,ts],[v,ts]" */
} series;

typedef struct {
    target_query *tq;
    gd_map index;  /* group key -> series number + 1 */
    series *list;
    size_t n, cap;
    int name_col[GD_MAX_KEYS]; /* LATEST column naming each key column, -1: the key itself */
    gd_arena names;
    /* table format */
    gd_str (*rows)[2]; /* ring of the newest MAX_TABLE_ROWS (key, value) */
    size_t nrows, total_rows;
    size_t keep_first; /* nonzero: rows are the first this many of the scan, not a ring */
} collector;

/* A table row (key, value) kept: the newest MAX_TABLE_ROWS in scan order,
 * or the first keep_first. 1 to stop the scan. */
static int keep_row(collector *co, gd_str key, gd_str val)
{
    if (co->keep_first) {
        co->rows[co->nrows][0] = key;
        co->rows[co->nrows][1] = val;
        return ++co->nrows == co->keep_first;
    }
    size_t at = co->total_rows++ % MAX_TABLE_ROWS;
    co->rows[at][0] = key;
    co->rows[at][1] = val;
    if (co->nrows < MAX_TABLE_ROWS) co->nrows++;
    return 0;
}

static int row_to_series(collector *co, const gd_tabledef *t, const gd_str *keys, gd_str group, int64_t w,
                         const gd_slot *slots)
{
    bool created;
    gd_map_slot *slot = gd_map_upsert(&co->index, group, &created);
    if (created) {
        if (co->n == co->cap) {
            co->cap = co->cap ? co->cap * 2 : 64;
            series *grown = realloc(co->list, co->cap * sizeof *grown);
            if (!grown) return 1;
            co->list = grown;
        }
        memset(&co->list[co->n], 0, sizeof co->list[co->n]);
        slot->val = (void *)(uintptr_t)(++co->n);
    }
    series *s = &co->list[(uintptr_t)slot->val - 1];
    for (int k = 0; k < t->nkeys; k++) { /* the newest name wins */
        gd_value name = co->name_col[k] >= 0 ? gd_row_column(t, keys, w, slots, co->name_col[k], &co->names)
                                              : (gd_value){.t = GD_V_NULL};
        gd_str part = name.t == GD_V_STR ? name.s : keys[k];
        if (!gd_str_eq(part, s->name_parts[k])) s->name_parts[k] = gd_arena_strdup(&co->names, part);
    }
    if (s->points.len) gd_buf_putc(&s->points, ',');
    gd_buf_putc(&s->points, '[');
    gd_json_put_value(&s->points, gd_row_column(t, keys, w, slots, co->tq->metric_col, &co->names));
    gd_buf_putc(&s->points, ',');
    gd_json_put_int(&s->points, w);
    gd_buf_putc(&s->points, ']');
    return 0;
}

static int collect_row(void *ctx, gd_str key, gd_str val)
{
    collector *co = ctx;
    target_query *tq = co->tq;
    const gd_tabledef *t = tq->t;
    gd_str keys[GD_MAX_KEYS];
    gd_slot slots[GD_MAX_COLS];
    if (key.len < 8 || gd_groupkey_split(key.p + 8, key.len - 8, t->nkeys, keys) ||
        gd_row_decode(t, val.p, val.len, slots))
        return 0;
    int64_t w = gd_rowkey_window(key.p);
    if (w > tq->to) return 1;
    for (int k = 0; k < t->nkeys; k++)
        if (!key_allowed(tq->allowed[k], keys[k])) return 0;
    for (int i = 0; i < tq->nfilters; i++)
        if (!filter_passes(&tq->filters[i], row_value(t, tq->filters[i].col, keys, w, slots, &co->names))) return 0;
    if (tq->table_format) return keep_row(co, key, val);
    return row_to_series(co, t, keys, (gd_str){key.p + 8, key.len - 8}, w, slots);
}

/* A reference row (JSON) through the payload and filters. */
static int collect_reference_row(void *ctx, gd_str key, gd_str val)
{
    collector *co = ctx;
    target_query *tq = co->tq;
    if (!key_allowed(tq->allowed[0], key)) return 0;
    if (tq->nfilters) {
        json_t *row = json_loadb(val.p, val.len, 0, NULL);
        bool pass = row != NULL;
        for (int i = 0; pass && i < tq->nfilters; i++) {
            const filter *f = &tq->filters[i];
            const char *name = f->col.kind == C_KEY ? tq->t->keys[0].name : tq->t->cols[f->col.index].name;
            pass = filter_passes(f, json_value_of(json_object_get(row, name)));
        }
        json_decref(row);
        if (!pass) return 0;
    }
    keep_row(co, key, val);
    return co->nrows == MAX_TABLE_ROWS;
}

static void put_series(collector *co, gd_buf *out, bool *first)
{
    for (size_t i = 0; i < co->n; i++) {
        series *s = &co->list[i];
        if (!*first) gd_buf_putc(out, ',');
        *first = false;
        gd_buf_puts(out, "{\"target\":");
        gd_buf name = {0};
        const target_query *tq = co->tq;
        for (int k = 0; k < tq->t->nkeys; k++) {
            if (k) gd_buf_puts(&name, " / ");
            gd_pii pii = tq->sees_pii            ? GD_PII_NONE
                         : co->name_col[k] >= 0 ? tq->t->cols[co->name_col[k]].pii
                                                : tq->t->keys[k].pii;
            if (pii) gd_masked_text(&name, pii, (gd_value){.t = GD_V_STR, .s = s->name_parts[k]});
            else gd_buf_put(&name, s->name_parts[k].p, s->name_parts[k].len);
        }
        if (!co->tq->t->nkeys) gd_buf_puts(&name, co->tq->t->cols[co->tq->metric_col].name);
        gd_json_put_str(out, (gd_str){name.p ? name.p : "", (uint32_t)name.len});
        gd_buf_free(&name);
        gd_buf_puts(out, ",\"datapoints\":[");
        gd_buf_put(out, s->points.p, s->points.len);
        gd_buf_puts(out, "]}");
    }
}

/* A value of a column of the target's table whose attribute is pii,
 * masked when the reader lacks the pii scope. */
static void put_cell(gd_buf *out, const target_query *tq, gd_pii pii, gd_value v)
{
    if (pii && !tq->sees_pii) gd_json_put_masked(out, pii, v);
    else gd_json_put_value(out, v);
}

static void put_table(collector *co, gd_buf *out, bool *first)
{
    const gd_tabledef *t = co->tq->t;
    bool windowed = gd_table_windowed(t), aggregate = gd_table_aggregates(t);
    if (!*first) gd_buf_putc(out, ',');
    *first = false;
    gd_buf_puts(out, "{\"type\":\"table\",\"columns\":[");
    int n = t->nkeys + t->ncols + (windowed ? 2 : 0);
    for (int j = 0; j < n; j++) {
        column c = j < t->nkeys ? (column){C_KEY, j}
                   : windowed && j < t->nkeys + 2 ? (column){j == t->nkeys ? C_WINDOW_START : C_WINDOW_END, 0}
                                                  : (column){C_VALUE, j - t->nkeys - (windowed ? 2 : 0)};
        const char *name = c.kind == C_KEY ? t->keys[c.index].name
                           : c.kind == C_VALUE ? t->cols[c.index].name
                           : c.kind == C_WINDOW_START ? "window_start" : "window_end";
        gd_buf_printf(out, "%s{\"text\":", j ? "," : "");
        gd_json_put_cstr(out, name);
        gd_buf_printf(out, ",\"type\":\"%s\"}", column_type(t, c));
    }
    gd_buf_puts(out, "],\"rows\":[");
    /* the ring holds the newest rows in scan order (windows ascending): out
     * they go newest window first, each window's rows in key order */
    size_t start = co->total_rows - co->nrows, i = co->nrows;
    bool first_row = true;
    gd_arena scratch; /* strings of expression columns */
    gd_arena_init(&scratch);
    while (i > 0) {
        size_t end = i; /* [begin, end) is one window */
        int64_t w = windowed ? gd_rowkey_window(co->rows[(start + i - 1) % MAX_TABLE_ROWS][0].p) : 0;
        while (i > 0 && (!windowed || gd_rowkey_window(co->rows[(start + i - 1) % MAX_TABLE_ROWS][0].p) == w)) i--;
        if (!windowed) i = 0;
        for (size_t k = i; k < end; k++) {
            gd_str key = co->rows[(start + k) % MAX_TABLE_ROWS][0], val = co->rows[(start + k) % MAX_TABLE_ROWS][1];
            gd_buf_puts(out, first_row ? "[" : ",[");
            first_row = false;
            if (aggregate) {
                gd_str keys[GD_MAX_KEYS];
                gd_slot slots[GD_MAX_COLS];
                gd_row row;
                if (gd_groupkey_split(key.p + 8, key.len - 8, t->nkeys, keys) || gd_row_decode(t, val.p, val.len, slots))
                    memset(slots, 0, sizeof slots);
                gd_arena_reset(&scratch);
                gd_row_compute(t, keys, w, slots, &row, &scratch);
                bool sep = false;
                for (int c = 0; c < t->nkeys; c++, sep = true) {
                    if (sep) gd_buf_putc(out, ',');
                    put_cell(out, co->tq, t->keys[c].pii, gd_key_value(t->keys[c].type, keys[c]));
                }
                if (windowed) {
                    if (sep) gd_buf_putc(out, ',');
                    gd_json_put_int(out, w);
                    gd_buf_putc(out, ',');
                    gd_json_put_int(out, w + t->window_ms);
                    sep = true;
                }
                for (int c = 0; c < t->ncols; c++, sep = true) {
                    if (sep) gd_buf_putc(out, ',');
                    put_cell(out, co->tq, t->cols[c].pii, row.cols[c]);
                }
            } else {
                json_t *row = json_loadb(val.p, val.len, 0, NULL);
                put_cell(out, co->tq, t->keys[0].pii, (gd_value){.t = GD_V_STR, .s = key});
                for (int c = 0; c < t->ncols; c++) {
                    gd_buf_putc(out, ',');
                    put_cell(out, co->tq, t->cols[c].pii, json_value_of(json_object_get(row, t->cols[c].name)));
                }
                json_decref(row);
            }
            gd_buf_putc(out, ']');
        }
    }
    gd_arena_free(&scratch);
    gd_buf_puts(out, "]}");
}

/* The ring holds the newest MAX_TABLE_ROWS rows in scan order, so of the
 * oldest window in it, the one the cut went through, it holds the rows
 * with the highest keys. A table shows windows newest first and each in key
 * order, so the cut must keep that window's lowest keys: they are read
 * again, the first as many in key order. */
static int refill_cut_window(const gd_api_ctx *ctx, MDB_txn *txn, collector *co, const gd_query *q)
{
    if (co->total_rows <= MAX_TABLE_ROWS || !gd_table_windowed(co->tq->t)) return GD_OK;
    size_t start = co->total_rows % MAX_TABLE_ROWS, n = 0;
    int64_t w = gd_rowkey_window(co->rows[start][0].p);
    while (n < MAX_TABLE_ROWS && gd_rowkey_window(co->rows[(start + n) % MAX_TABLE_ROWS][0].p) == w) n++;
    collector first = {.tq = co->tq, .keep_first = n};
    if (!(first.rows = malloc(sizeof *first.rows * n))) return GD_ENOMEM;
    gd_query one = *q;
    one.from = w;
    one.to = w + 1;
    int rc = gd_query_run(ctx->store, txn, &one, collect_row, &first);
    for (size_t i = 0; !rc && i < first.nrows; i++) {
        co->rows[(start + i) % MAX_TABLE_ROWS][0] = first.rows[i][0];
        co->rows[(start + i) % MAX_TABLE_ROWS][1] = first.rows[i][1];
    }
    free(first.rows);
    return rc;
}

/* One target into out (a series list or a table). */
static int run_target(const gd_api_ctx *ctx, MDB_txn *txn, target_query *tq, gd_buf *out, bool *first)
{
    collector co = {.tq = tq};
    gd_map_init(&co.index, NULL);
    gd_arena_init(&co.names);
    for (int k = 0; k < tq->t->nkeys; k++) {
        co.name_col[k] = -1;
        const char *want = !strcmp(tq->t->keys[k].name, "game_id")     ? "game_name"
                           : !strcmp(tq->t->keys[k].name, "player_id") ? "player_username"
                                                                        : NULL;
        for (int c = 0; want && c < tq->t->ncols; c++)
            if (!strcmp(tq->t->cols[c].name, want)) co.name_col[k] = c;
    }
    if (tq->table_format && !(co.rows = malloc(sizeof *co.rows * MAX_TABLE_ROWS))) return GD_ENOMEM;
    gd_query q = {.t = tq->t, .mode = GD_WINDOWS_RANGE, .from = tq->from, .to = tq->to + 1, .deadline_ms = tq->deadline_ms};
    if (gd_table_aggregates(tq->t) && !gd_table_windowed(tq->t))
        q.mode = GD_WINDOWS_LATEST; /* one window for all time, whatever the range */
    for (int k = 0; k < tq->t->nkeys; k++) /* a single value is a seek, not a filter */
        if (tq->allowed[k] && json_array_size(tq->allowed[k]) == 1) {
            json_t *a = json_array_get(tq->allowed[k], 0);
            q.key_eq[k] = (gd_str){json_string_value(a), (uint32_t)json_string_length(a)};
        }
    int rc = gd_query_run(ctx->store, txn, &q, gd_table_aggregates(tq->t) ? collect_row : collect_reference_row,
                          &co);
    if (!rc && tq->table_format) rc = refill_cut_window(ctx, txn, &co, &q);
    if (!rc && tq->table_format) put_table(&co, out, first);
    else if (!rc) put_series(&co, out, first);
    for (size_t i = 0; i < co.n; i++) gd_buf_free(&co.list[i].points);
    free(co.list);
    free(co.rows);
    gd_map_free(&co.index);
    gd_arena_free(&co.names);
    return rc;
}

/* The payload's value for a key column: a string or an array of strings
 * (multi-select); "", "all", "$__all" and [] mean every value. */
static bool payload_values(json_t *v, json_t **out)
{
    *out = NULL;
    if (!v || json_is_null(v)) return true;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!*s || !strcmp(s, "all") || !strcmp(s, "$__all")) return true;
        *out = json_pack("[O]", v);
        return true;
    }
    if (!json_is_array(v)) return false;
    size_t i;
    json_t *a;
    json_array_foreach(v, i, a) {
        if (!json_is_string(a)) return false;
        if (!strcmp(json_string_value(a), "$__all")) return true;
    }
    if (json_array_size(v)) *out = json_incref(v);
    return true;
}

void gd_grafana_query(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    json_t *body = body_object(req, r);
    if (!body) return;
    json_t *range = json_object_get(body, "range"), *targets = json_object_get(body, "targets");
    int64_t from, to;
    if (!json_is_object(range) || !parse_time(json_object_get(range, "from"), &from) ||
        !parse_time(json_object_get(range, "to"), &to) || from > to) {
        gd_reply_error(r, 400, "range must be {\"from\": ISO 8601 time, \"to\": ISO 8601 time}, from not after to");
        json_decref(body);
        return;
    }
    if (!json_is_array(targets)) {
        gd_reply_error(r, 400, "targets must be an array of {refId, target, payload}");
        json_decref(body);
        return;
    }
    json_t *filters = json_object_get(body, "filters");
    if (!json_is_array(filters)) filters = json_object_get(body, "adhocFilters");
    MDB_txn *txn;
    if (gd_store_begin_read(ctx->store, &txn)) {
        gd_reply_error(r, 500, "the store cannot be read");
        json_decref(body);
        return;
    }
    gd_buf out = {0};
    gd_buf_putc(&out, '[');
    bool first = true, ok = true;
    size_t i;
    json_t *tj;
    json_array_foreach(targets, i, tj) {
        if (!ok) break;
        if (json_is_true(json_object_get(tj, "hide"))) continue;
        const char *metric = json_string_value(json_object_get(tj, "target"));
        target_query tq = {.from = from, .to = to, .sees_pii = gd_request_sees_pii(req), .deadline_ms = req->deadline_ms};
        if (!metric || !*metric) continue; /* a panel not set up yet */
        if (!resolve_metric(ctx->cat, metric, &tq.t, &tq.metric_col)) {
            gd_reply_error(r, 400, "unknown metric '%s' (POST /grafana/metrics lists them)", metric);
            ok = false;
            break;
        }
        tq.e = gd_catalog_find(ctx->cat, gd_str_c(tq.t->name));
        json_t *payload = json_object_get(tj, "payload");
        const char *format = json_string_value(json_object_get(payload, "format"));
        tq.table_format = tq.metric_col < 0 || (format && !strcmp(format, "table"));
        for (int k = 0; ok && k < tq.t->nkeys; k++)
            if (!payload_values(json_object_get(payload, tq.t->keys[k].name), &tq.allowed[k])) {
                gd_reply_error(r, 400, "payload %s must be a string or an array of strings", tq.t->keys[k].name);
                ok = false;
            } else if (tq.allowed[k] && !gd_pii_may_use(tq.e, tq.t->keys[k].name, "filtering on", req, r)) {
                ok = false;
            }
        if (ok && json_is_array(filters)) ok = parse_filters(&tq, filters, req, r);
        int rc = ok ? run_target(ctx, txn, &tq, &out, &first) : GD_OK;
        if (rc == GD_ETIMEDOUT) gd_reply_timed_out(ctx, r);
        else if (rc) gd_reply_error(r, 500, "reading %s failed", tq.t->name);
        ok = ok && !rc;
        free_filters(&tq);
        for (int k = 0; k < GD_MAX_KEYS; k++) json_decref(tq.allowed[k]);
    }
    mdb_txn_abort(txn);
    json_decref(body);
    if (!ok) {
        gd_buf_free(&out);
        return;
    }
    gd_buf_putc(&out, ']');
    r->status = 200;
    r->content_type = "application/json";
    gd_buf_free(&r->body);
    r->body = out;
}
