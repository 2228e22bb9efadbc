/* Unit tests: the Avro writer. What gd_avro_write encodes is read back by
 * avro-c's own generic reader with the same schema, so the encoding is
 * checked by an independent decoder: the Confluent header, union branches
 * (null first or second), int, long, double, float, boolean and strings, and
 * the refusal of a null in a required field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <avro.h>
#include <cmocka.h>

#include "../../ingest/ingest.h"

static const char *schema_json =
    "{\"type\":\"record\",\"name\":\"T\",\"fields\":["
    "{\"name\":\"s\",\"type\":\"string\"},"
    "{\"name\":\"ns\",\"type\":[\"null\",\"string\"]},"
    "{\"name\":\"i\",\"type\":[\"int\",\"null\"]},"
    "{\"name\":\"l\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"
    "{\"name\":\"d\",\"type\":[\"null\",\"double\"]},"
    "{\"name\":\"f\",\"type\":\"float\"},"
    "{\"name\":\"b\",\"type\":[\"null\",\"boolean\"]},"
    "{\"name\":\"unknown\",\"type\":[\"null\",\"string\"],\"default\":null}]}";
static const char *const names[] = {"s", "ns", "i", "l", "d", "f", "b"};

/* Reads one record of `schema` from Confluent-framed bytes. */
static void read_back(const gd_buf *b, avro_schema_t schema, avro_value_t *out)
{
    assert_true(b->len > 5);
    assert_int_equal(b->p[0], 0);
    assert_int_equal((uint8_t)b->p[4], 42); /* schema id 42, big-endian */
    avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
    assert_int_equal(avro_generic_value_new(iface, out), 0);
    avro_reader_t r = avro_reader_memory(b->p + 5, (int64_t)(b->len - 5));
    assert_int_equal(avro_value_read(r, out), 0);
    avro_reader_free(r);
    avro_value_iface_decref(iface);
}

/* The field's union branch (or the field itself when not a union). */
static avro_value_t field(avro_value_t *rec, const char *name)
{
    avro_value_t f, branch;
    assert_int_equal(avro_value_get_by_name(rec, name, &f, NULL), 0);
    if (avro_value_get_type(&f) != AVRO_UNION) return f;
    assert_int_equal(avro_value_get_current_branch(&f, &branch), 0);
    return branch;
}

static void written_values_read_back_with_avro_c(void **state)
{
    (void)state;
    gd_avro_writer *w;
    assert_int_equal(gd_avro_writer_new(&w, schema_json, names, 7), GD_OK);
    gd_value v[7] = {
        {.t = GD_V_STR, .s = gd_str_c("h\xc3\xa9llo")}, {.t = GD_V_NULL}, {.t = GD_V_INT, .i = -123456},
        {.t = GD_V_INT, .i = 1709251200123LL}, {.t = GD_V_DBL, .d = 0.1}, {.t = GD_V_INT, .i = 3},
        {.t = GD_V_BOOL, .i = 1}};
    gd_buf b = {0};
    assert_int_equal(gd_avro_write(w, 42, v, &b), GD_OK);
    avro_schema_t schema;
    assert_int_equal(avro_schema_from_json_length(schema_json, strlen(schema_json), &schema), 0);
    avro_value_t rec;
    read_back(&b, schema, &rec);
    const char *s;
    size_t size;
    int32_t i32;
    int64_t i64;
    double d;
    float f;
    int boolean;
    avro_value_t x = field(&rec, "s");
    assert_int_equal(avro_value_get_string(&x, &s, &size), 0);
    assert_string_equal(s, "h\xc3\xa9llo");
    x = field(&rec, "ns");
    assert_int_equal(avro_value_get_type(&x), AVRO_NULL);
    x = field(&rec, "i");
    assert_int_equal(avro_value_get_int(&x, &i32), 0);
    assert_int_equal(i32, -123456);
    x = field(&rec, "l");
    assert_int_equal(avro_value_get_long(&x, &i64), 0);
    assert_true(i64 == 1709251200123LL);
    x = field(&rec, "d");
    assert_int_equal(avro_value_get_double(&x, &d), 0);
    assert_true(d == 0.1);
    x = field(&rec, "f");
    assert_int_equal(avro_value_get_float(&x, &f), 0);
    assert_true(f == 3.0f);
    x = field(&rec, "b");
    assert_int_equal(avro_value_get_boolean(&x, &boolean), 0);
    assert_true(boolean);
    x = field(&rec, "unknown"); /* a field no value maps to is written null */
    assert_int_equal(avro_value_get_type(&x), AVRO_NULL);
    avro_value_decref(&rec);
    avro_schema_decref(schema);
    gd_buf_free(&b);
    gd_avro_writer_free(w);
}

static void null_in_a_required_field_is_refused_and_leaves_the_buffer(void **state)
{
    (void)state;
    gd_avro_writer *w;
    assert_int_equal(gd_avro_writer_new(&w, schema_json, names, 7), GD_OK);
    gd_value v[7] = {{.t = GD_V_NULL}};
    gd_buf b = {0};
    gd_buf_puts(&b, "kept");
    assert_int_equal(gd_avro_write(w, 42, v, &b), GD_EBADREC);
    assert_int_equal(b.len, 4);
    v[0] = (gd_value){.t = GD_V_INT, .i = 1}; /* a number for a string field */
    assert_int_equal(gd_avro_write(w, 42, v, &b), GD_EBADREC);
    assert_int_equal(b.len, 4);
    gd_buf_free(&b);
    gd_avro_writer_free(w);
}

static void schemas_gamingd_cannot_write_are_refused_at_start(void **state)
{
    (void)state;
    gd_avro_writer *w;
    /* a required field no value maps to, a nested record, not a record at all */
    assert_int_equal(gd_avro_writer_new(&w, "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"z\",\"type\":\"long\"}]}", names, 7), GD_ERR);
    assert_int_equal(gd_avro_writer_new(&w, "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"s\",\"type\":{\"type\":\"record\",\"name\":\"N\",\"fields\":[]}}]}", names, 7), GD_ERR);
    assert_int_equal(gd_avro_writer_new(&w, "\"string\"", names, 7), GD_ERR);
}

static void the_shipped_output_schema_covers_every_output_field(void **state)
{
    (void)state;
    const char *out_names[64] = {0};
    for (size_t i = 0; i < gd_output_field_count; i++) out_names[i] = gd_output_fields[i].name;
    gd_avro_writer *w;
    assert_int_equal(gd_avro_writer_new(&w, gd_schema_gaming_intelligence, out_names, gd_output_field_count), GD_OK);
    gd_avro_writer_free(w);
    avro_schema_t schema;
    assert_int_equal(avro_schema_from_json_length(gd_schema_gaming_intelligence, strlen(gd_schema_gaming_intelligence), &schema), 0);
    assert_int_equal(avro_schema_record_size(schema), gd_output_field_count);
    for (size_t i = 0; i < gd_output_field_count; i++)
        assert_string_equal(avro_schema_record_field_name(schema, (int)i), gd_output_fields[i].name);
    avro_schema_decref(schema);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(written_values_read_back_with_avro_c),
        cmocka_unit_test(null_in_a_required_field_is_refused_and_leaves_the_buffer),
        cmocka_unit_test(schemas_gamingd_cannot_write_are_refused_at_start),
        cmocka_unit_test(the_shipped_output_schema_covers_every_output_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
