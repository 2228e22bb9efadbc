/* draw.c -- the SQL shell's output, drawn as ksqlDB's CLI draws it, so that
 * what a ksqlDB user reads in its docs is what gamingd's shell shows.
 *
 * Two layouts, as ksqlDB has them:
 *  - query results (TabularRow): rows arrive one by one and a push query
 *    never ends, so column widths cannot come from the data: every cell is
 *    the terminal's width shared among the columns (width / columns - 2, at
 *    least 5), a value longer than its cell wraps onto further lines, and
 *    the header sits between two "+-----+" lines;
 *  - entities of /ksql (Table): all rows are known, so each column is as
 *    wide as its widest cell, " a | b " lines between two "-----" lines
 *    (SHOW STREAMS / TABLES / QUERIES / PROPERTIES / VARIABLES, DESCRIBE's
 *    schema, a statement's message). An entity of another kind is printed
 *    as indented JSON: readable, and nothing the server said is lost.
 *
 * Widths count code points, not bytes, so UTF-8 text lines up. Values are
 * shown as the server gave them: strings bare, numbers in their shortest
 * exact form, null as "null", arrays and structs as compact JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

enum { MIN_CELL_WIDTH = 5 };

/* ---- text measures ---- */

static size_t code_points(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) count++;
    return count;
}

/* Bytes of s (n bytes) that hold at most `points` code points. */
static size_t prefix_bytes(const char *s, size_t n, size_t points)
{
    size_t i = 0;
    while (i < n && points) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
        points--;
    }
    return i;
}

static void put_padded(FILE *f, const char *s, size_t n, size_t width)
{
    fwrite(s, 1, n, f);
    for (size_t w = code_points(s, n); w < width; w++) fputc(' ', f);
}

static void put_repeated(FILE *f, char c, size_t n)
{
    for (size_t i = 0; i < n; i++) fputc(c, f);
}

/* ---- values ---- */

/* The shortest decimal form that reads back as the same double. */
static void put_real(gd_buf *b, double d)
{
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d) break;
    }
    gd_buf_puts(b, tmp);
    if (!strpbrk(tmp, ".eEn")) gd_buf_puts(b, ".0"); /* a DOUBLE reads as one, as Java prints it */
}

void gd_cli_value_text(gd_buf *b, const json_t *v)
{
    if (json_is_string(v)) gd_buf_put(b, json_string_value(v), json_string_length(v));
    else if (json_is_integer(v)) gd_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v)) put_real(b, json_real_value(v));
    else if (json_is_true(v)) gd_buf_puts(b, "true");
    else if (json_is_false(v)) gd_buf_puts(b, "false");
    else if (!v || json_is_null(v)) gd_buf_puts(b, "null");
    else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        gd_buf_puts(b, s ? s : "?");
        free(s);
    }
}

/* ---- query results: TabularRow ---- */

static size_t cell_width(int width, size_t columns)
{
    long w = columns ? (long)width / (long)columns - 2 : MIN_CELL_WIDTH;
    return w < MIN_CELL_WIDTH ? MIN_CELL_WIDTH : (size_t)w;
}

static void separating_line(FILE *f, size_t cell, size_t columns)
{
    fputc('+', f);
    for (size_t i = 0; i < columns; i++) {
        put_repeated(f, '-', cell);
        fputc('+', f);
    }
    fputc('\n', f);
}

/* One row of cells, each cut into lines of `cell` code points. */
static void cells_line(FILE *f, const json_t *values, size_t columns, size_t cell)
{
    gd_buf *texts = calloc(columns ? columns : 1, sizeof *texts);
    size_t lines = 1;
    for (size_t i = 0; i < columns; i++) {
        gd_cli_value_text(&texts[i], json_array_get(values, i));
        size_t n = (code_points(texts[i].p ? texts[i].p : "", texts[i].len) + cell - 1) / cell;
        if (n > lines) lines = n;
    }
    for (size_t line = 0; line < lines; line++) {
        fputc('|', f);
        for (size_t i = 0; i < columns; i++) {
            const char *p = texts[i].p ? texts[i].p : "";
            size_t skip = prefix_bytes(p, texts[i].len, line * cell);
            size_t take = prefix_bytes(p + skip, texts[i].len - skip, cell);
            put_padded(f, p + skip, take, cell);
            fputc('|', f);
        }
        fputc('\n', f);
    }
    for (size_t i = 0; i < columns; i++) gd_buf_free(&texts[i]);
    free(texts);
}

void gd_cli_draw_header(FILE *f, int width, const json_t *names)
{
    size_t columns = json_array_size(names), cell = cell_width(width, columns);
    separating_line(f, cell, columns);
    cells_line(f, names, columns, cell);
    separating_line(f, cell, columns);
}

void gd_cli_draw_row(FILE *f, int width, size_t columns, const json_t *row)
{
    cells_line(f, row, columns, cell_width(width, columns));
}

/* ---- entities: Table ---- */

typedef struct {
    size_t columns, rows, cap;
    const char **headers;
    char **cells; /* rows * columns, owned */
} table;

static void table_init(table *t, const char **headers, size_t columns)
{
    memset(t, 0, sizeof *t);
    t->headers = headers;
    t->columns = columns;
}

/* Appends a row; values are copied. */
static void table_row(table *t, const char *const *values)
{
    if (t->rows == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->cells = realloc(t->cells, t->cap * t->columns * sizeof *t->cells);
        if (!t->cells) abort();
    }
    for (size_t i = 0; i < t->columns; i++) t->cells[t->rows * t->columns + i] = strdup(values[i] ? values[i] : "");
    t->rows++;
}

static size_t widest_line(const char *s)
{
    size_t best = 0;
    for (const char *line = s;; line++) {
        const char *nl = strchr(line, '\n');
        size_t w = code_points(line, nl ? (size_t)(nl - line) : strlen(line));
        if (w > best) best = w;
        if (!nl) return best;
        line = nl;
    }
}

static void table_line(FILE *f, const table *t, const char *const *values, const size_t *widths)
{
    fputc(' ', f);
    for (size_t i = 0; i < t->columns; i++) {
        if (i) fputs(" | ", f);
        put_padded(f, values[i], strlen(values[i]), widths[i]);
    }
    fputs(" \n", f);
}

static void table_print(FILE *f, int width, table *t, const char *footer)
{
    size_t *widths = calloc(t->columns, sizeof *widths), line = 0;
    for (size_t i = 0; i < t->columns; i++) {
        widths[i] = code_points(t->headers[i], strlen(t->headers[i]));
        for (size_t r = 0; r < t->rows; r++) {
            size_t w = widest_line(t->cells[r * t->columns + i]);
            if (w > widths[i]) widths[i] = w;
        }
        line += widths[i] + 3;
    }
    line = line - 1 < (size_t)width ? line - 1 : (size_t)width;
    table_line(f, t, t->headers, widths);
    put_repeated(f, '-', line);
    fputc('\n', f);
    for (size_t r = 0; r < t->rows; r++) table_line(f, t, (const char *const *)&t->cells[r * t->columns], widths);
    put_repeated(f, '-', line);
    fputc('\n', f);
    if (footer) fprintf(f, "%s\n", footer);
    for (size_t i = 0; i < t->rows * t->columns; i++) free(t->cells[i]);
    free(t->cells);
    free(widths);
}

/* ---- entity kinds ---- */

static const char *str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

static int by_name(const void *a, const void *b)
{
    return strcmp(str(*(json_t *const *)a, "name"), str(*(json_t *const *)b, "name"));
}

/* The array's objects, sorted by "name" as the CLI lists sources and variables. */
static json_t **sorted_by_name(const json_t *arr, size_t *n)
{
    *n = json_array_size(arr);
    json_t **items = calloc(*n ? *n : 1, sizeof *items);
    for (size_t i = 0; i < *n; i++) items[i] = json_array_get(arr, i);
    qsort(items, *n, sizeof *items, by_name);
    return items;
}

static void draw_sources(FILE *f, int width, const json_t *list, const char *first_header)
{
    const char *headers[] = {first_header, "Kafka Topic", "Key Format", "Value Format", "Windowed"};
    table t;
    table_init(&t, headers, 5);
    size_t n;
    json_t **items = sorted_by_name(list, &n);
    for (size_t i = 0; i < n; i++) {
        const char *row[] = {str(items[i], "name"), str(items[i], "topic"), str(items[i], "keyFormat"),
                             str(items[i], "valueFormat"),
                             json_is_true(json_object_get(items[i], "isWindowed")) ? "true" : "false"};
        table_row(&t, row);
    }
    free(items);
    table_print(f, width, &t, NULL);
}

/* "a,b" of an array of strings; "RUNNING:1" of a status count. */
static void join_strings(gd_buf *b, const json_t *arr)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (i) gd_buf_putc(b, ',');
        gd_buf_puts(b, json_string_value(v) ? json_string_value(v) : "");
    }
    gd_buf_putc(b, 0);
}

static void join_counts(gd_buf *b, const json_t *obj)
{
    const char *k;
    json_t *v;
    bool first = true;
    json_object_foreach((json_t *)obj, k, v) {
        gd_buf_printf(b, "%s%s:%lld", first ? "" : ",", k, (long long)json_integer_value(v));
        first = false;
    }
    gd_buf_putc(b, 0);
}

static void draw_queries(FILE *f, int width, const json_t *list)
{
    const char *headers[] = {"Query ID", "Query Type", "Status", "Sink Name", "Sink Kafka Topic", "Query String"};
    table t;
    table_init(&t, headers, 6);
    size_t i;
    json_t *q;
    json_array_foreach(list, i, q) {
        gd_buf status = {0}, sinks = {0}, topics = {0};
        join_counts(&status, json_object_get(q, "statusCount"));
        join_strings(&sinks, json_object_get(q, "sinks"));
        join_strings(&topics, json_object_get(q, "sinkKafkaTopics"));
        char *line = strdup(str(q, "queryString"));
        for (char *p = line; *p; p++)
            if (*p == '\n') *p = ' ';
        const char *row[] = {str(q, "id"), str(q, "queryType"), status.p, sinks.p, topics.p, line};
        table_row(&t, row);
        free(line);
        gd_buf_free(&status);
        gd_buf_free(&sinks);
        gd_buf_free(&topics);
    }
    table_print(f, width, &t, "For detailed information on a Query run: EXPLAIN <Query ID>;");
}

static void draw_variables(FILE *f, int width, const json_t *list)
{
    const char *headers[] = {"Variable Name", "Value"};
    table t;
    table_init(&t, headers, 2);
    size_t n;
    json_t **items = sorted_by_name(list, &n);
    for (size_t i = 0; i < n; i++) {
        const char *row[] = {str(items[i], "name"), str(items[i], "value")};
        table_row(&t, row);
    }
    free(items);
    table_print(f, width, &t, NULL);
}

static bool listed(const json_t *names, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v) if (!strcmp(json_string_value(v) ? json_string_value(v) : "", name)) return true;
    return false;
}

/* Where a property's value comes from, as the CLI says it: SESSION (the
 * request overrode it), "" (a default), SERVER. */
static void draw_properties(FILE *f, int width, const json_t *entity)
{
    const char *headers[] = {"Property", "Scope", "Default override", "Effective Value"};
    table t;
    table_init(&t, headers, 4);
    size_t n;
    json_t **items = sorted_by_name(json_object_get(entity, "properties"), &n);
    for (size_t i = 0; i < n; i++) {
        const char *name = str(items[i], "name");
        const char *override = listed(json_object_get(entity, "overwrittenProperties"), name) ? "SESSION"
                               : listed(json_object_get(entity, "defaultProperties"), name) ? ""
                                                                                              : "SERVER";
        const json_t *value = json_object_get(items[i], "value");
        const char *row[] = {name, str(items[i], "scope"), override, json_is_string(value) ? json_string_value(value) : "NULL"};
        table_row(&t, row);
    }
    free(items);
    table_print(f, width, &t, NULL);
}

/* A field's type as ksqlDB writes it: STRING, ARRAY<INT>, MAP<STRING, X>,
 * STRUCT<A INT, B STRING>. */
static void type_text(gd_buf *b, const json_t *schema)
{
    const char *type = str(schema, "type");
    const json_t *member = json_object_get(schema, "memberSchema");
    if (!strcmp(type, "ARRAY") || !strcmp(type, "MAP")) {
        gd_buf_printf(b, "%s<%s", type, strcmp(type, "MAP") ? "" : "STRING, ");
        type_text(b, member);
        gd_buf_putc(b, '>');
    } else if (!strcmp(type, "STRUCT")) {
        gd_buf_puts(b, "STRUCT<");
        size_t i;
        json_t *field;
        json_array_foreach(json_object_get(schema, "fields"), i, field) {
            gd_buf_printf(b, "%s%s ", i ? ", " : "", str(field, "name"));
            type_text(b, json_object_get(field, "schema"));
        }
        gd_buf_putc(b, '>');
    } else gd_buf_puts(b, type);
}

static void draw_source_description(FILE *f, int width, const json_t *src)
{
    bool is_table = !strcasecmp(str(src, "type"), "TABLE");
    const char *window = json_string_value(json_object_get(src, "windowType"));
    fprintf(f, "%-20s : %s\n", "Name", str(src, "name"));
    const char *headers[] = {"Field", "Type"};
    table t;
    table_init(&t, headers, 2);
    size_t i;
    json_t *field;
    json_array_foreach(json_object_get(src, "fields"), i, field) {
        gd_buf type = {0}, cell = {0};
        type_text(&type, json_object_get(field, "schema"));
        gd_buf_putc(&type, 0);
        if (!strcmp(str(field, "type"), "KEY")) {
            gd_buf_printf(&cell, "%-16s %s", type.p, is_table ? "(primary key)" : "(key)");
            if (window) gd_buf_printf(&cell, " (Window type: %s)", window);
        } else gd_buf_puts(&cell, type.p);
        gd_buf_putc(&cell, 0);
        const char *row[] = {str(field, "name"), cell.p};
        table_row(&t, row);
        gd_buf_free(&type);
        gd_buf_free(&cell);
    }
    if (t.rows) table_print(f, width, &t, NULL);
    else free(t.cells);
    fprintf(f, "For runtime statistics and query details run: DESCRIBE <Stream,Table> EXTENDED;\n");
}

static void draw_message(FILE *f, int width, const char *message)
{
    const char *headers[] = {"Message"};
    table t;
    table_init(&t, headers, 1);
    const char *nl = strchr(message, '\n');
    char *first = strndup(message, nl ? (size_t)(nl - message) : strlen(message));
    const char *row[] = {first};
    table_row(&t, row);
    free(first);
    table_print(f, width, &t, NULL);
}

static void draw_entity(FILE *f, int width, const json_t *e)
{
    const char *type = str(e, "@type");
    if (!strcmp(type, "tables")) draw_sources(f, width, json_object_get(e, "tables"), "Table Name");
    else if (!strcmp(type, "streams")) draw_sources(f, width, json_object_get(e, "streams"), "Stream Name");
    else if (!strcmp(type, "queries")) draw_queries(f, width, json_object_get(e, "queries"));
    else if (!strcmp(type, "variables")) draw_variables(f, width, json_object_get(e, "variables"));
    else if (!strcmp(type, "properties")) draw_properties(f, width, e);
    else if (!strcmp(type, "sourceDescription")) draw_source_description(f, width, json_object_get(e, "sourceDescription"));
    else if (!strcmp(type, "currentStatus"))
        draw_message(f, width, str(json_object_get(e, "commandStatus"), "message"));
    else if (!strcmp(type, "warning_entity")) draw_message(f, width, str(e, "message"));
    else if (!strcmp(type, "terminate_query")) {
        gd_buf m = {0};
        gd_buf_printf(&m, "Terminated query \"%s\"", str(e, "queryId"));
        gd_buf_putc(&m, 0);
        draw_message(f, width, m.p);
        gd_buf_free(&m);
    } else {
        char *s = json_dumps(e, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        fprintf(f, "%s\n", s ? s : "");
        free(s);
    }
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(e, "warnings"), i, w) fprintf(f, "WARNING: %s\n", str(w, "message"));
}

void gd_cli_draw_entities(FILE *f, int width, const json_t *entities)
{
    bool show_statements = json_array_size(entities) > 1;
    size_t i;
    json_t *e;
    json_array_foreach(entities, i, e) {
        fputc('\n', f);
        if (show_statements) fprintf(f, "%s\n", str(e, "statementText"));
        draw_entity(f, width, e);
    }
}

void gd_cli_draw_error(FILE *out, FILE *err, int width, const json_t *error)
{
    gd_cli_draw_entities(out, width, json_object_get(error, "entities"));
    fflush(out);
    fprintf(err, "%s\n", str(error, "message"));
}
