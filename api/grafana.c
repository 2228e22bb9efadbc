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
 * first, each window in key order, at most MAX_TABLE_ROWS. Filters
 * (`filters`, and `adhocFilters` of older plugins) apply to the tables that
 * have their column and are ignored by the others, since Grafana sends
 * dashboard-wide filters to every panel; an unknown operator is refused
 * whatever the table. A table without windows (created without WINDOW) has
 * one window for all time: its table format shows it whatever the range.
 *
 * This file is a protocol adapter: it reads a request and writes a reply,
 * and reads no table itself. What a target, a variable, a tag's or a
 * payload's values read is a query plan made by gd_sql_plan_dashboard (the
 * planner that binds SQL and REST pulls: payload key values and ad hoc
 * filters become the plan's WHERE, a regex its GD_E_FILTER node) and run by
 * gd_sql_pull, the one executor, to the request's deadline (a 408 past it).
 * The table format's order and cut are the plan's (ORDER BY the window
 * start, descending, then the row key; LIMIT), so rows come out in order;
 * series and distinct values are gathered here from the plan's rows.
 *
 * Personal data is the planner's to decide, as for SQL: a payload value or
 * ad hoc filter on a personal column is the plan's pii_use, refused without
 * the pii scope with SQL's 403; every personal column of the plan (its pii[])
 * is masked in rows, series names, variables and payload options.
 *
 * Request bodies are read with jansson, answers written straight into the
 * reply buffer: a week of 5-minute windows for every game is tens of
 * thousands of points. Unknown request fields are ignored. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../sql/sql.h"
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

static bool numeric(gd_coltype t) { return t == GD_T_BIGINT || t == GD_T_INTEGER || t == GD_T_DOUBLE; }

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

/* ---- reading through the plan ---- */

/* The plan of a dashboard's rows; false with the reply set (400, or the
 * planner's 403 for personal data used without the pii scope). Free it
 * with gd_sql_plan_free either way. */
static bool plan_rows(const gd_api_ctx *ctx, const gd_request *req, const gd_sql_dashboard *d, gd_arena *arena,
                      gd_query_plan *plan, gd_reply *r)
{
    gd_sql_error err = {0};
    if (gd_sql_plan_dashboard(ctx->cat, d, arena, plan, &err)) {
        gd_reply_error(r, 400, "%s", err.message);
        return false;
    }
    if (plan->pii_use.column && !gd_request_sees_pii(req)) {
        char msg[256];
        gd_pii_refusal(plan->pii_use, msg, sizeof msg);
        gd_reply_error(r, 403, "%s", msg);
        return false;
    }
    return true;
}

/* Runs a plan to the request's deadline, fn per row; false with the reply
 * set (408 past the deadline, else 500). */
static bool read_rows(const gd_api_ctx *ctx, const gd_request *req, const gd_query_plan *plan, gd_sql_row_fn fn,
                      void *fn_ctx, gd_reply *r)
{
    gd_sql_error err = {0};
    if (!gd_sql_pull(ctx->store, plan, gd_now_ms(), req->deadline_ms, fn, fn_ctx, &err)) return true;
    if (err.code == GD_SQL_TIMED_OUT) gd_reply_timed_out(ctx, r);
    else if (err.code == GD_SQL_UNAVAILABLE) gd_reply_error(r, 503, "%s", err.message);
    else gd_reply_error(r, 500, "reading %s failed", plan->source->name);
    return false;
}

/* A value as the text a dashboard shows and filters: a string as it is,
 * another as CAST gives it (in text), NULL as no text. */
static gd_str value_text(gd_value v, gd_buf *text)
{
    if (v.t == GD_V_STR) return v.s.p ? v.s : (gd_str){"", 0};
    if (v.t == GD_V_NULL) return GD_STR_NULL;
    gd_value_text(v, text);
    return (gd_str){text->p ? text->p : "", (uint32_t)text->len};
}

static bool is_window_column(const gd_query_plan *plan, int col)
{
    int nkeys = plan->source->table->nkeys;
    return gd_table_windowed(plan->source->table) && (col == nkeys || col == nkeys + 1);
}

/* ---- the values a column takes ---- */

typedef struct {
    json_t *list;  /* [{label, value}] or [{__text, __value}] */
    bool variable; /* the second form */
    bool sees_pii;
    gd_map seen;
    size_t max;
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

/* A column's values (and labels) from a plan's rows. */
typedef struct {
    choices *ch;
    const gd_query_plan *plan;
    int value_col, label_col; /* label -1: the value */
} choice_scan;

static int collect_choice(void *ctx, const gd_value *row, int ncols, const gd_sql_pos *pos)
{
    choice_scan *cs = ctx;
    (void)ncols, (void)pos;
    gd_buf text = {0}, masked = {0};
    gd_str value = value_text(row[cs->value_col], &text);
    gd_value label = cs->label_col >= 0 ? row[cs->label_col] : (gd_value){.t = GD_V_NULL};
    gd_pii label_pii = cs->label_col >= 0 ? cs->plan->pii[cs->label_col] : GD_PII_NONE;
    if (label.t == GD_V_STR && label_pii && !cs->ch->sees_pii) {
        gd_masked_text(&masked, label_pii, label);
        label.s = (gd_str){masked.p, (uint32_t)masked.len};
    }
    add_choice(cs->ch, cs->plan->pii[cs->value_col], value, label.t == GD_V_STR ? label.s : GD_STR_NULL);
    gd_buf_free(&text);
    gd_buf_free(&masked);
    return json_array_size(cs->ch->list) >= cs->ch->max;
}

/* The values of column `column` (labelled by column `label`, NULL: none)
 * in the newest window of t; a table without the column adds none. False
 * with the reply set when the read fails. */
static bool table_choices(const gd_api_ctx *ctx, const gd_request *req, const gd_tabledef *t, const char *column,
                          const char *label, choices *ch, gd_reply *r)
{
    gd_arena arena;
    gd_arena_init(&arena);
    gd_query_plan plan = {0};
    gd_sql_dashboard d = {.q = {.t = t, .mode = GD_WINDOWS_LATEST}, .limit = -1};
    bool ok = plan_rows(ctx, req, &d, &arena, &plan, r);
    choice_scan cs = {ch, &plan, ok ? gd_sql_plan_column(&plan, column) : -1, label && ok ? gd_sql_plan_column(&plan, label) : -1};
    if (ok && cs.value_col >= 0 && !is_window_column(&plan, cs.value_col))
        ok = read_rows(ctx, req, &plan, collect_choice, &cs, r);
    gd_sql_plan_free(&plan);
    gd_arena_free(&arena);
    return ok;
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
 * game before (or without) its games row. Values from windows come sorted.
 * False with the reply set when a read fails. */
static bool column_choices(const gd_api_ctx *ctx, const gd_request *req, const gd_tabledef *t, const char *name,
                           choices *ch, gd_reply *r)
{
    const gd_tabledef *games = gd_catalog_reference(ctx->cat, GD_TABLE_GAMES),
                      *players = gd_catalog_reference(ctx->cat, GD_TABLE_PLAYERS);
    bool game = !strcmp(name, "game_id"), player = !strcmp(name, "player_id");
    if (game || !strcmp(name, "game_genre") || !strcmp(name, "genre")) {
        if (!table_choices(ctx, req, games, game ? games->keys[0].name : "genre", game ? "game_name" : NULL, ch, r))
            return false;
        if (!game) return true;
        /* and the games with activity but no games row (yet): from the windows */
    } else if (player || !strcmp(name, "email") || !strcmp(name, "player_email")) {
        return table_choices(ctx, req, players, player ? players->keys[0].name : "email", player ? "username" : NULL, ch,
                             r);
    } else if (!strcmp(name, "player_segment")) {
        static const char *const segments[] = {"HIGH_PERFORMER", "MEDIUM_PERFORMER", "CASUAL_PLAYER"};
        for (int i = 0; i < 3; i++) add_choice(ch, GD_PII_NONE, gd_str_c(segments[i]), GD_STR_NULL);
        return true;
    }
    for (unsigned i = 0; i < GD_MAX_TABLES; i++) {
        const gd_catalog_entry *e = gd_catalog_table(ctx->cat, i);
        if (!e || (t && e->table != t) || !gd_table_aggregates(e->table)) continue;
        if (!table_choices(ctx, req, e->table, name, NULL, ch, r)) return false;
    }
    sort_choices(ch);
    return true;
}

static void reply_choices(const gd_api_ctx *ctx, const gd_tabledef *t, const char *name, bool variable,
                          const gd_request *req, gd_reply *r)
{
    choices ch = {.list = json_array(), .variable = variable, .sees_pii = gd_request_sees_pii(req), .max = MAX_CHOICES};
    gd_map_init(&ch.seen, NULL);
    if (column_choices(ctx, req, t, name, &ch, r)) reply_doc(r, json_incref(ch.list));
    json_decref(ch.list);
    gd_map_free(&ch.seen);
}

/* Whether t has a column of that name (a key only: keys_only). */
static bool has_column(const gd_tabledef *t, const char *name, bool keys_only)
{
    for (int k = 0; k < t->nkeys; k++)
        if (!strcmp(name, t->keys[k].name)) return true;
    for (int c = 0; !keys_only && c < t->ncols; c++)
        if (!strcmp(name, t->cols[c].name)) return true;
    return !keys_only && gd_table_windowed(t) && (!strcmp(name, "window_start") || !strcmp(name, "window_end"));
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
    } else if (!has_column(t, name, true)) {
        gd_reply_error(r, 400, "%s has no key column '%s'", t->name, name);
    } else {
        reply_choices(ctx, t, name, false, req, r);
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
    bool known = name && (t ? has_column(t, name, false) : true);
    if (!known) {
        gd_reply_error(r, 400, "variable takes {\"payload\": {\"target\": COLUMN or TABLE.COLUMN}}");
    } else {
        reply_choices(ctx, t, name, true, req, r);
    }
    json_decref(body);
}

static const char *column_type(gd_coltype type, bool window)
{
    return window ? "time" : numeric(type) ? "number" : "string";
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
        for (int j = 0; j < n; j++) { /* keys, value columns, window bounds */
            bool key = j < t->nkeys, value = !key && j < t->nkeys + t->ncols;
            const char *name = key ? t->keys[j].name : value ? t->cols[j - t->nkeys].name
                                                     : j == n - 2 ? "window_start" : "window_end";
            if (json_object_get(seen, name)) continue;
            json_object_set_new(seen, name, json_true());
            gd_coltype type = key ? t->keys[j].type : value ? t->cols[j - t->nkeys].type : GD_T_BIGINT;
            json_array_append_new(list, json_pack("{s:s,s:s}", "type", numeric(type) ? "number" : "string", "text", name));
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
        choices ch = {.list = json_array(), .sees_pii = gd_request_sees_pii(req), .max = MAX_TAG_VALUES};
        gd_map_init(&ch.seen, NULL);
        if (column_choices(ctx, req, NULL, key, &ch, r)) { /* tag-values answers [{text}] */
            json_t *list = json_array();
            size_t i;
            json_t *item;
            json_array_foreach(ch.list, i, item) json_array_append_new(list, json_pack("{s:O}", "text", json_object_get(item, "label")));
            reply_doc(r, list);
        }
        json_decref(ch.list);
        gd_map_free(&ch.seen);
    }
    json_decref(body);
}

/* ---- POST /grafana/query ---- */

/* The ad hoc filters of a request, whatever table they apply to; false
 * with a 400 in r when one is malformed. Texts live in arena. */
static bool parse_filters(json_t *list, gd_arena *arena, gd_sql_filter **out, int *n, gd_reply *r)
{
    *out = gd_arena_alloc(arena, sizeof **out * (json_array_size(list) + 1));
    *n = 0;
    size_t i;
    json_t *f;
    json_array_foreach(list, i, f) {
        const char *key = json_string_value(json_object_get(f, "key"));
        const char *op = json_string_value(json_object_get(f, "operator"));
        json_t *jv = json_object_get(f, "value");
        const char *value = json_string_value(jv);
        if (!value && json_is_number(jv)) {
            char *numtext = gd_arena_alloc(arena, 64);
            snprintf(numtext, 64, "%.17g", json_number_value(jv));
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
        (*out)[(*n)++] = (gd_sql_filter){key, (gd_filter_op)o, value};
    }
    return true;
}

/* The payload's value for a key column: a string or an array of strings
 * (multi-select); "", "all", "$__all" and [] mean every value. The values
 * go to *out (in arena), *n of them (0: every value). */
static bool payload_values(json_t *v, gd_arena *arena, const gd_str **out, int *n)
{
    *out = NULL;
    *n = 0;
    if (!v || json_is_null(v)) return true;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!*s || !strcmp(s, "all") || !strcmp(s, "$__all")) return true;
    } else if (!json_is_array(v)) {
        return false;
    }
    size_t count = json_is_array(v) ? json_array_size(v) : 1;
    gd_str *values = gd_arena_alloc(arena, sizeof *values * (count ? count : 1));
    for (size_t i = 0; i < count; i++) {
        json_t *a = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_string(a)) return false;
        if (json_is_array(v) && !strcmp(json_string_value(a), "$__all")) return true;
        values[i] = (gd_str){json_string_value(a), (uint32_t)json_string_length(a)};
    }
    *out = values;
    *n = (int)count;
    return true;
}

/* ---- series ---- */

typedef struct {
    gd_str name_parts[GD_MAX_KEYS]; /* as shown: a game's name for its id */
    gd_buf points;                  /* "[v,ts],[v,ts]" */
} series;

typedef struct {
    const gd_query_plan *plan;
    int metric, window;        /* the plan's columns of the value and the window start */
    int name_col[GD_MAX_KEYS]; /* LATEST column naming each key column, -1: the key itself */
    gd_map index;              /* group key -> series number + 1 */
    series *list;
    size_t n, cap;
    gd_arena names;
    bool failed;
} collector;

static int row_to_series(void *ctx, const gd_value *row, int ncols, const gd_sql_pos *pos)
{
    collector *co = ctx;
    (void)ncols;
    const gd_query_plan *plan = co->plan;
    bool created;
    gd_map_slot *slot = gd_map_upsert(&co->index, (gd_str){pos->key.p + 8, pos->key.len - 8}, &created);
    if (created) {
        if (co->n == co->cap) {
            co->cap = co->cap ? co->cap * 2 : 64;
            series *grown = realloc(co->list, co->cap * sizeof *grown);
            if (!grown) return co->failed = true;
            co->list = grown;
        }
        memset(&co->list[co->n], 0, sizeof co->list[co->n]);
        slot->val = (void *)(uintptr_t)(++co->n);
    }
    series *s = &co->list[(uintptr_t)slot->val - 1];
    for (int k = 0; k < plan->source->table->nkeys; k++) { /* the newest name wins */
        gd_buf text = {0};
        gd_value name = co->name_col[k] >= 0 ? row[co->name_col[k]] : (gd_value){.t = GD_V_NULL};
        gd_str part = name.t == GD_V_STR ? name.s : value_text(row[k], &text);
        if (!gd_str_eq(part, s->name_parts[k])) s->name_parts[k] = gd_arena_strdup(&co->names, part);
        gd_buf_free(&text);
    }
    if (s->points.len) gd_buf_putc(&s->points, ',');
    gd_buf_putc(&s->points, '[');
    gd_json_put_value(&s->points, row[co->metric]);
    gd_buf_putc(&s->points, ',');
    gd_json_put_value(&s->points, row[co->window]);
    gd_buf_putc(&s->points, ']');
    return 0;
}

static void put_series(const collector *co, bool sees_pii, gd_buf *out, bool *first)
{
    const gd_query_plan *plan = co->plan;
    int nkeys = plan->source->table->nkeys;
    for (size_t i = 0; i < co->n; i++) {
        const series *s = &co->list[i];
        if (!*first) gd_buf_putc(out, ',');
        *first = false;
        gd_buf_puts(out, "{\"target\":");
        gd_buf name = {0};
        for (int k = 0; k < nkeys; k++) {
            if (k) gd_buf_puts(&name, " / ");
            gd_pii pii = sees_pii ? GD_PII_NONE : plan->pii[co->name_col[k] >= 0 ? co->name_col[k] : k];
            if (pii) gd_masked_text(&name, pii, (gd_value){.t = GD_V_STR, .s = s->name_parts[k]});
            else gd_buf_put(&name, s->name_parts[k].p, s->name_parts[k].len);
        }
        if (!nkeys) gd_buf_puts(&name, plan->names[co->metric]);
        gd_json_put_str(out, (gd_str){name.p ? name.p : "", (uint32_t)name.len});
        gd_buf_free(&name);
        gd_buf_puts(out, ",\"datapoints\":[");
        gd_buf_put(out, s->points.p, s->points.len);
        gd_buf_puts(out, "]}");
    }
}

/* The series of a plan's rows into out. */
static bool read_series(const gd_api_ctx *ctx, const gd_request *req, const gd_query_plan *plan, const char *metric,
                        gd_buf *out, bool *first, gd_reply *r)
{
    collector co = {.plan = plan, .metric = gd_sql_plan_column(plan, metric),
                    .window = gd_sql_plan_column(plan, "window_start")};
    gd_map_init(&co.index, NULL);
    gd_arena_init(&co.names);
    const gd_tabledef *t = plan->source->table;
    for (int k = 0; k < t->nkeys; k++) {
        const char *want = !strcmp(t->keys[k].name, "game_id")     ? "game_name"
                           : !strcmp(t->keys[k].name, "player_id") ? "player_username"
                                                                    : NULL;
        co.name_col[k] = want ? gd_sql_plan_column(plan, want) : -1;
    }
    bool ok = read_rows(ctx, req, plan, row_to_series, &co, r);
    if (ok && co.failed) {
        gd_reply_error(r, 500, "out of memory");
        ok = false;
    }
    if (ok) put_series(&co, gd_request_sees_pii(req), out, first);
    for (size_t i = 0; i < co.n; i++) gd_buf_free(&co.list[i].points);
    free(co.list);
    gd_map_free(&co.index);
    gd_arena_free(&co.names);
    return ok;
}

/* ---- tables ---- */

typedef struct {
    const gd_query_plan *plan;
    bool sees_pii;
    gd_buf *out;
    size_t n;
} table_rows;

static int put_table_row(void *ctx, const gd_value *row, int ncols, const gd_sql_pos *pos)
{
    table_rows *tr = ctx;
    (void)ncols, (void)pos;
    if (tr->n++) gd_buf_putc(tr->out, ',');
    gd_sql_put_row(tr->out, tr->plan, row, tr->sees_pii);
    return 0;
}

/* The plan's rows (in its order: windows newest first) as a table into out. */
static bool read_table(const gd_api_ctx *ctx, const gd_request *req, const gd_query_plan *plan, gd_buf *out,
                       bool *first, gd_reply *r)
{
    if (!*first) gd_buf_putc(out, ',');
    *first = false;
    gd_buf_puts(out, "{\"type\":\"table\",\"columns\":[");
    for (int i = 0; i < plan->ncols; i++) {
        gd_buf_printf(out, "%s{\"text\":", i ? "," : "");
        gd_json_put_cstr(out, plan->names[i]);
        gd_buf_printf(out, ",\"type\":\"%s\"}", column_type(plan->types[i], is_window_column(plan, i)));
    }
    gd_buf_puts(out, "],\"rows\":[");
    table_rows tr = {plan, gd_request_sees_pii(req), out, 0};
    if (!read_rows(ctx, req, plan, put_table_row, &tr, r)) return false;
    gd_buf_puts(out, "]}");
    return true;
}

/* A request's ad hoc filters, read when a target first needs them. */
typedef struct {
    json_t *list; /* `filters`, else `adhocFilters`; NULL: none */
    bool parsed;
    gd_sql_filter *filters;
    int n;
    gd_arena arena;
} request_filters;

/* One target into out (a series list or a table); false with the reply set. */
static bool run_target(const gd_api_ctx *ctx, const gd_request *req, json_t *tj, const char *metric, int64_t from,
                       int64_t to, request_filters *rf, gd_buf *out, bool *first, gd_reply *r)
{
    const gd_tabledef *t;
    int metric_col;
    if (!resolve_metric(ctx->cat, metric, &t, &metric_col)) {
        gd_reply_error(r, 400, "unknown metric '%s' (POST /grafana/metrics lists them)", metric);
        return false;
    }
    json_t *payload = json_object_get(tj, "payload");
    const char *format = json_string_value(json_object_get(payload, "format"));
    bool table_format = metric_col < 0 || (format && !strcmp(format, "table"));
    gd_arena arena;
    gd_arena_init(&arena);
    gd_sql_dashboard d = {.q = {.t = t, .mode = GD_WINDOWS_RANGE, .from = from, .to = to + 1},
                          .newest_first = table_format, .limit = table_format ? MAX_TABLE_ROWS : -1};
    if (!gd_table_windowed(t)) d.q.mode = GD_WINDOWS_LATEST; /* one window for all time, whatever the range */
    bool ok = true;
    for (int k = 0; ok && k < t->nkeys; k++)
        if (!payload_values(json_object_get(payload, t->keys[k].name), &arena, &d.key_in[k], &d.nkey_in[k])) {
            gd_reply_error(r, 400, "payload %s must be a string or an array of strings", t->keys[k].name);
            ok = false;
        }
    if (ok && rf->list && !rf->parsed) {
        rf->parsed = true;
        ok = parse_filters(rf->list, &rf->arena, &rf->filters, &rf->n, r);
    }
    d.filters = rf->filters;
    d.nfilters = rf->n;
    gd_query_plan plan = {0};
    ok = ok && plan_rows(ctx, req, &d, &arena, &plan, r);
    if (ok && table_format) ok = read_table(ctx, req, &plan, out, first, r);
    else if (ok) ok = read_series(ctx, req, &plan, t->cols[metric_col].name, out, first, r);
    gd_sql_plan_free(&plan);
    gd_arena_free(&arena);
    return ok;
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
    request_filters rf = {.list = json_object_get(body, "filters")};
    if (!json_is_array(rf.list)) rf.list = json_object_get(body, "adhocFilters");
    if (!json_is_array(rf.list)) rf.list = NULL;
    gd_arena_init(&rf.arena);
    bool ok = true;
    gd_buf out = {0};
    gd_buf_putc(&out, '[');
    bool first = true;
    size_t i;
    json_t *tj;
    json_array_foreach(targets, i, tj) {
        if (!ok) break;
        if (json_is_true(json_object_get(tj, "hide"))) continue;
        const char *metric = json_string_value(json_object_get(tj, "target"));
        if (!metric || !*metric) continue; /* a panel not set up yet */
        ok = run_target(ctx, req, tj, metric, from, to, &rf, &out, &first, r);
    }
    gd_arena_free(&rf.arena);
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
