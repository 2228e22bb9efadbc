/* Unit tests: server/util.c's buffers. Expectations from snprintf itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/util.h"

/* gd_buf_printf formats into the room the buffer has and grows it when
 * that is short: every length around the room it had gives the text
 * snprintf gives, after what the buffer held. */
static void printf_appends_whatever_room_the_buffer_has(void **state)
{
    (void)state;
    char expect[2048], piece[1024];
    for (size_t held = 0; held < 300; held += 37) {
        for (int width = 0; width < 1000; width += 13) {
            gd_buf b = {0};
            for (size_t i = 0; i < held; i++) gd_buf_put(&b, "h", 1);
            snprintf(piece, sizeof piece, "[%*d|%.3f]", width, width, width / 7.0);
            gd_buf_printf(&b, "[%*d|%.3f]", width, width, width / 7.0);
            memset(expect, 'h', held);
            strcpy(expect + held, piece);
            assert_int_equal(b.len, held + strlen(piece));
            assert_memory_equal(b.p, expect, b.len);
            assert_true(b.cap > b.len); /* room for the terminator vsnprintf wrote */
            gd_buf_free(&b);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(printf_appends_whatever_room_the_buffer_has),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
