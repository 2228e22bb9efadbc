/* Unit tests: the push hub's rings -- reading in order, eviction by slots
 * and by bytes, the loss a slow reader is told of, resumption after an id
 * and the horizon of events that were never published. Hand-worked cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../server/hub.h"

/* Reads the event at *pos into out: peek, copy, release. */
static int read_event(gd_hub *h, unsigned stream, uint64_t *pos, uint64_t *id, gd_buf *out, uint64_t *lost)
{
    gd_hub_event ev;
    gd_buf wrap = {0};
    int rc = gd_hub_peek(h, stream, pos, &ev, &wrap, lost);
    if (rc == GD_OK) {
        gd_buf_clear(out);
        gd_buf_put(out, ev.text.p, ev.text.len);
        *id = ev.id;
        if (!gd_hub_release(h, stream, pos, &ev, lost)) rc = GD_ERR;
    }
    gd_buf_free(&wrap);
    return rc;
}

static gd_hub *open_hub(uint32_t events)
{
    gd_hub *h = NULL;
    assert_int_equal(gd_hub_open(&h, 2, 2, events, events, 60000), GD_OK);
    return h;
}

static void publish_text(gd_hub *h, unsigned stream, uint64_t id)
{
    char text[32];
    int n = snprintf(text, sizeof text, "{\"n\":%llu}", (unsigned long long)id);
    gd_hub_publish(h, stream, id, text, (size_t)n);
}

static void reads_in_order_until_the_head(void **state)
{
    (void)state;
    gd_hub *h = open_hub(8);
    for (uint64_t id = 1; id <= 5; id++) publish_text(h, 0, id * 10);
    gd_buf b = {0};
    uint64_t pos = 0, id = 0, lost = 0;
    for (uint64_t i = 1; i <= 5; i++) {
        assert_int_equal(read_event(h, 0, &pos, &id, &b, &lost), GD_OK);
        assert_int_equal(id, i * 10);
        char want[32];
        snprintf(want, sizeof want, "{\"n\":%llu}", (unsigned long long)(i * 10));
        assert_int_equal(b.len, strlen(want));
        assert_memory_equal(b.p, want, b.len);
    }
    assert_int_equal(read_event(h, 0, &pos, &id, &b, &lost), GD_AGAIN);
    assert_int_equal(lost, 0);
    assert_int_equal(gd_hub_head(h, 1), 0); /* streams are separate */
    gd_buf_free(&b);
    gd_hub_close(h);
}

static void a_reader_a_whole_buffer_behind_loses_the_oldest(void **state)
{
    (void)state;
    gd_hub *h = open_hub(4); /* 4 slots */
    for (uint64_t id = 1; id <= 10; id++) publish_text(h, 0, id);
    gd_buf b = {0};
    uint64_t pos = 0, id = 0, lost = 0;
    assert_int_equal(read_event(h, 0, &pos, &id, &b, &lost), GD_ERR);
    assert_int_equal(lost, 6); /* ids 1..6 overwritten, 7..10 held */
    assert_int_equal(pos, 6);
    for (uint64_t want = 7; want <= 10; want++) {
        assert_int_equal(read_event(h, 0, &pos, &id, &b, &lost), GD_OK);
        assert_int_equal(id, want);
    }
    gd_hub_stats st;
    gd_hub_stream_stats(h, 0, &st);
    assert_int_equal(st.published, 10);
    gd_buf_free(&b);
    gd_hub_close(h);
}

static void large_events_evict_by_bytes(void **state)
{
    (void)state;
    gd_hub *h = open_hub(8); /* 8 slots, 8 KiB of bytes */
    char big[2000];
    memset(big, 'x', sizeof big);
    for (uint64_t id = 1; id <= 5; id++) {
        big[0] = (char)('0' + id);
        gd_hub_publish(h, 0, id, big, sizeof big);
    }
    /* 10,000 bytes do not fit in 8,192: the first event's bytes were reused
     * although its slot was not needed */
    gd_buf b = {0};
    uint64_t pos = 0, id = 0, lost = 0;
    assert_int_equal(read_event(h, 0, &pos, &id, &b, &lost), GD_ERR);
    assert_int_equal(lost, 1);
    assert_int_equal(read_event(h, 0, &pos, &id, &b, &lost), GD_OK);
    assert_int_equal(id, 2);
    assert_int_equal(b.len, sizeof big);
    assert_int_equal(b.p[0], '2');
    /* an event over a quarter of the buffer is not kept at all */
    char huge[2100] = {0};
    gd_hub_publish(h, 0, 6, huge, sizeof huge);
    assert_int_equal(gd_hub_head(h, 0), 5);
    gd_buf_free(&b);
    gd_hub_close(h);
}

static void resume_after_an_id_or_report_a_gap(void **state)
{
    (void)state;
    gd_hub *h = open_hub(4);
    gd_hub_subscribed(h, 0, +1);
    for (uint64_t id = 2; id <= 20; id += 2) publish_text(h, 0, id); /* sparse ids 2..20 */
    uint64_t pos = 0, oldest = 0;
    /* held: 14, 16, 18, 20; evicted up to 12 */
    assert_true(gd_hub_resume(h, 0, 15, &pos, &oldest));
    gd_buf b = {0};
    uint64_t id = 0, lost = 0;
    assert_int_equal(read_event(h, 0, &pos, &id, &b, &lost), GD_OK);
    assert_int_equal(id, 16);
    assert_true(gd_hub_resume(h, 0, 12, &pos, &oldest)); /* everything after 12 is held */
    assert_int_equal(read_event(h, 0, &pos, &id, &b, &lost), GD_OK);
    assert_int_equal(id, 14);
    assert_false(gd_hub_resume(h, 0, 11, &pos, &oldest)); /* 12 is gone */
    assert_int_equal(oldest, 14);
    assert_int_equal(pos, gd_hub_head(h, 0)); /* live from here */
    assert_true(gd_hub_resume(h, 0, 25, &pos, &oldest)); /* nothing newer yet */
    assert_int_equal(pos, gd_hub_head(h, 0));
    gd_buf_free(&b);
    gd_hub_close(h);
}

static void events_nobody_wanted_raise_the_horizon(void **state)
{
    (void)state;
    gd_hub *h = open_hub(8);
    gd_hub_set_horizon(h, 1, 100); /* ids up to 100 came before a restart */
    uint64_t pos, oldest;
    assert_false(gd_hub_resume(h, 1, 99, &pos, &oldest));
    assert_true(gd_hub_resume(h, 1, 100, &pos, &oldest));
    assert_false(gd_hub_wanted(h, 1, 101)); /* no subscriber: not produced */
    assert_false(gd_hub_resume(h, 1, 100, &pos, &oldest));
    gd_hub_subscribed(h, 1, +1);
    assert_true(gd_hub_wanted(h, 1, 102));
    publish_text(h, 1, 102);
    assert_true(gd_hub_resume(h, 1, 101, &pos, &oldest));
    gd_hub_subscribed(h, 1, -1);
    assert_true(gd_hub_wanted(h, 1, 103)); /* lingers after the last one left */
    gd_hub_close(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_in_order_until_the_head),
        cmocka_unit_test(a_reader_a_whole_buffer_behind_loses_the_oldest),
        cmocka_unit_test(large_events_evict_by_bytes),
        cmocka_unit_test(resume_after_an_id_or_report_a_gap),
        cmocka_unit_test(events_nobody_wanted_raise_the_horizon),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
