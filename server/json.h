/* json.h -- a fast, allocation-free JSON scanner and writer for the hot path.
 *
 * jansson builds a tree of heap nodes per document, which caps the decode of
 * activity records near 250,000/s on one core. The ingest path only needs the
 * known fields of a flat object, so it walks the text once with this scanner:
 * strings without escapes are returned as spans into the input; strings with
 * escapes are unescaped into a caller-supplied arena. Nested values are
 * validated and skipped (or returned as a raw span). jansson stays in use
 * where trees are convenient and speed is not the point (the HTTP API).
 *
 * The writer appends JSON text to a gd_buf with correct string escaping. */
#ifndef GD_JSON_H
#define GD_JSON_H

#include "util.h"

typedef enum { GD_J_NULL, GD_J_BOOL, GD_J_INT, GD_J_DBL, GD_J_STR, GD_J_OBJ, GD_J_ARR } gd_jtype;

typedef struct {
    gd_jtype t;
    bool b;
    int64_t i;
    double d;      /* set for GD_J_INT too */
    gd_str s;      /* GD_J_STR: the unescaped string */
    gd_str raw;    /* the value's text as it stands in the input */
} gd_jval;

typedef struct {
    const char *p, *end;
    gd_arena *scratch; /* where escaped strings are decoded */
    const char *err;   /* first error, static text */
    int members;       /* members read so far in the current object */
} gd_json;

void gd_json_init(gd_json *j, gd_str text, gd_arena *scratch);
/* Object walk: gd_json_object_begin, then gd_json_next_key until it returns 0
 * (end of object); after each key, read its value with gd_json_value. Both
 * return GD_EBADREC on malformed input, with j->err set. */
int gd_json_object_begin(gd_json *j);
int gd_json_next_key(gd_json *j, gd_str *key); /* 1: key read, 0: end */
int gd_json_value(gd_json *j, gd_jval *v);
/* Array walk, alike: gd_json_array_begin, then gd_json_next_element
 * until it returns 0, reading each element with gd_json_value. */
int gd_json_array_begin(gd_json *j);
int gd_json_next_element(gd_json *j); /* 1: an element follows, 0: end */
/* Like gd_json_value, but an object or array is only delimited (strings
 * respected), not validated: for a value that is parsed again whole later
 * (the envelope's value, which the record decoder reads). */
int gd_json_value_delimited(gd_json *j, gd_jval *v);
/* After the top-level value: only whitespace may follow. */
int gd_json_end(gd_json *j);

void gd_json_put_str(gd_buf *b, gd_str s); /* null -> null */
void gd_json_put_cstr(gd_buf *b, const char *s);
void gd_json_put_int(gd_buf *b, int64_t v);
void gd_json_put_dbl(gd_buf *b, double v); /* non-finite -> null */
void gd_json_put_value(gd_buf *b, gd_value v);
/* A personal value as a reader without the right to see personal data
 * sees it: a copy (an email address) as "***@domain" ("***" without an @),
 * a derived value as "***", null as null. */
void gd_json_put_masked(gd_buf *b, gd_pii kind, gd_value v);
/* The same masked value as plain text (a non-null value): "***@domain", "***". */
void gd_masked_text(gd_buf *b, gd_pii kind, gd_value v);

#endif
