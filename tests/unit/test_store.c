/* Unit tests: the store's read transactions over a real LMDB environment.
 * An ended read transaction is kept reset for the next reader: renewed, it
 * sees the latest commit, and while kept it pins no page -- a value
 * rewritten many times meanwhile takes the pages its earlier versions freed
 * (a reader holding a snapshot would make every rewrite take new ones). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../store/store.h"

enum { VALUE_BYTES = 64 << 10, REWRITES = 64 };

typedef struct {
    char dir[64];
    gd_store store;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/gamingd-unit-XXXXXX");
    if (!mkdtemp(f->dir) || gd_store_open(&f->store, f->dir, 64 << 20)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    gd_store_close(&f->store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd)) return -1;
    free(f);
    return 0;
}

static void put_meta(gd_store *s, const char *name, const void *p, size_t n)
{
    MDB_txn *txn;
    assert_int_equal(gd_store_begin_write(s, &txn), GD_OK);
    assert_int_equal(gd_store_meta_put(s, txn, name, p, n), GD_OK);
    assert_int_equal(gd_store_commit(txn), GD_OK);
}

static void a_renewed_read_transaction_sees_the_latest_commit(void **state)
{
    fixture *f = *state;
    put_meta(&f->store, "k", "one", 3);
    MDB_txn *first, *second;
    gd_str v;
    assert_int_equal(gd_store_begin_read(&f->store, &first), GD_OK);
    assert_int_equal(gd_store_meta_get(&f->store, first, "k", &v), GD_OK);
    assert_memory_equal(v.p, "one", 3);
    gd_store_end_read(&f->store, first);
    put_meta(&f->store, "k", "two", 3);
    assert_int_equal(gd_store_begin_read(&f->store, &second), GD_OK);
    assert_ptr_equal(second, first); /* the one kept, renewed */
    assert_int_equal(gd_store_meta_get(&f->store, second, "k", &v), GD_OK);
    assert_memory_equal(v.p, "two", 3);
    gd_store_end_read(&f->store, second);
}

static void a_kept_read_transaction_pins_no_page(void **state)
{
    fixture *f = *state;
    char *value = calloc(1, VALUE_BYTES);
    MDB_txn *txn;
    assert_int_equal(gd_store_begin_read(&f->store, &txn), GD_OK);
    gd_store_end_read(&f->store, txn);
    for (int i = 0; i < REWRITES; i++) {
        value[0] = (char)i;
        put_meta(&f->store, "big", value, VALUE_BYTES);
    }
    /* the live value is 17 pages; a pinned snapshot would have kept every
     * version: REWRITES x 17 pages */
    assert_true(gd_store_size(&f->store) < 8 * (size_t)VALUE_BYTES);
    free(value);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_renewed_read_transaction_sees_the_latest_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(a_kept_read_transaction_pins_no_page, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
