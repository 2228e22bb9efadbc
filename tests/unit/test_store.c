/* Unit tests: the store's read transactions over a real LMDB environment.
 * An ended read transaction is kept reset for the next reader: renewed, it
 * sees the latest commit, and while kept it pins no page -- a value
 * rewritten many times meanwhile takes the pages its earlier versions freed
 * (a reader holding a snapshot would make every rewrite take new ones).
 * The committer begins a write transaction on its thread, the test writes
 * into it, the committer commits or aborts it: LMDB's writer lock is
 * released (this thread can write next) and a reader sees what was
 * committed, once wait says so. */
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

static void expect_meta(gd_store *s, const char *name, const char *want)
{
    MDB_txn *txn;
    gd_str v;
    assert_int_equal(gd_store_begin_read(s, &txn), GD_OK);
    int rc = gd_store_meta_get(s, txn, name, &v);
    if (!want) {
        assert_int_equal(rc, GD_EOF);
    } else {
        assert_int_equal(rc, GD_OK);
        assert_int_equal(v.len, strlen(want));
        assert_memory_equal(v.p, want, v.len);
    }
    gd_store_end_read(s, txn);
}

static void a_commit_handed_to_the_committer_is_seen_once_waited_for(void **state)
{
    fixture *f = *state;
    gd_committer *c;
    assert_int_equal(gd_committer_start(&c, &f->store), GD_OK);
    assert_int_equal(gd_committer_wait(c), GD_OK); /* nothing handed over yet */
    for (int i = 0; i < 3; i++) {
        char value[16];
        snprintf(value, sizeof value, "v%d", i);
        MDB_txn *txn;
        assert_int_equal(gd_committer_begin(c, &txn), GD_OK); /* waits for the last commit */
        assert_int_equal(gd_store_meta_put(&f->store, txn, "k", value, strlen(value)), GD_OK);
        gd_committer_commit(c, txn);
        assert_int_equal(gd_committer_wait(c), GD_OK);
        assert_false(gd_committer_busy(c));
        expect_meta(&f->store, "k", value);
    }
    gd_committer_stop(c);
    put_meta(&f->store, "k", "here", 4); /* the writer lock went back */
    expect_meta(&f->store, "k", "here");
}

static void a_transaction_the_committer_aborts_leaves_nothing(void **state)
{
    fixture *f = *state;
    gd_committer *c;
    MDB_txn *txn;
    assert_int_equal(gd_committer_start(&c, &f->store), GD_OK);
    assert_int_equal(gd_committer_begin(c, &txn), GD_OK);
    assert_int_equal(gd_store_meta_put(&f->store, txn, "gone", "x", 1), GD_OK);
    gd_committer_abort(c, txn);
    expect_meta(&f->store, "gone", NULL);
    assert_int_equal(gd_committer_begin(c, &txn), GD_OK);
    assert_int_equal(gd_store_meta_put(&f->store, txn, "kept", "y", 1), GD_OK);
    gd_committer_commit(c, txn);
    gd_committer_stop(c); /* after the last commit */
    expect_meta(&f->store, "kept", "y");
    expect_meta(&f->store, "gone", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_renewed_read_transaction_sees_the_latest_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(a_kept_read_transaction_pins_no_page, setup, teardown),
        cmocka_unit_test_setup_teardown(a_commit_handed_to_the_committer_is_seen_once_waited_for, setup, teardown),
        cmocka_unit_test_setup_teardown(a_transaction_the_committer_aborts_leaves_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
