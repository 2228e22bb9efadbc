/* builtin.c -- the catalog at start: builtin.sql (built into the binary by
 * the Makefile as gd_builtin_sql), then the user's definitions the store
 * holds, each compiled by the planner like a statement just received. */
#include <stdio.h>

#include "sql.h"

extern const char gd_builtin_sql[];

static gd_catalog_entry *compile_definition(gd_catalog *cat, bool is_table, gd_str sql, char *why, size_t why_len);

int gd_sql_load_builtin(gd_catalog *cat, gd_sql_error *err)
{
    cat->compile = compile_definition;
    gd_arena arena;
    gd_arena_init(&arena);
    gd_sql_stmt *stmts;
    int n, rc = gd_sql_parse(gd_str_c(gd_builtin_sql), &arena, &stmts, &n, err);
    for (int i = 0; !rc && i < n; i++) {
        gd_catalog_entry *e;
        const char *why;
        if (stmts[i].kind != GD_SQL_CREATE_AS && stmts[i].kind != GD_SQL_CREATE_SOURCE) {
            rc = gd_sql_fail(err, GD_SQL_SERVER_ERROR, "builtin.sql holds only CREATE statements");
        } else if (!(rc = gd_sql_plan_create(cat, &stmts[i], true, &e, err)) && gd_catalog_add(cat, e, &why)) {
            rc = gd_sql_fail(err, GD_SQL_SERVER_ERROR, "builtin.sql: %s: %s", e->name, why);
            gd_catalog_entry_free(e);
        }
    }
    gd_arena_free(&arena);
    return rc;
}

/* A user's statement, as stored or as another instance made it, into an
 * entry of cat (not added). */
static gd_catalog_entry *compile_definition(gd_catalog *cat, bool is_table, gd_str sql, char *why, size_t why_len)
{
    gd_arena arena;
    gd_arena_init(&arena);
    gd_sql_error err = {0};
    gd_sql_stmt *stmts;
    int n;
    gd_catalog_entry *e = NULL;
    if (gd_sql_parse(sql, &arena, &stmts, &n, &err) == GD_OK) {
        if (n != 1 || stmts[0].kind != GD_SQL_CREATE_AS || stmts[0].is_table != is_table)
            gd_sql_fail(&err, GD_SQL_SERVER_ERROR, "not one CREATE %s AS SELECT", is_table ? "TABLE" : "STREAM");
        else
            gd_sql_plan_create(cat, &stmts[0], false, &e, &err);
    }
    if (!e) snprintf(why, why_len, "%s", err.message);
    gd_arena_free(&arena);
    return e;
}

typedef struct {
    gd_catalog *cat;
    int loaded, failed;
} load_ctx;

static int load_definition(void *ctx, uint64_t uid, bool is_table, bool terminated, gd_str sql)
{
    load_ctx *c = ctx;
    char why_buf[256];
    const char *why = why_buf;
    gd_catalog_entry *e = compile_definition(c->cat, is_table, sql, why_buf, sizeof why_buf);
    if (e) {
        e->uid = uid;
        atomic_store(&e->terminated, terminated);
        if (gd_catalog_add(c->cat, e, &why)) {
            gd_catalog_entry_free(e);
            e = NULL;
        }
    }
    if (e) c->loaded++;
    else {
        c->failed++;
        gd_error("a stored definition no longer compiles and is left out (its data stays in the store): %.*s: %s",
                 (int)sql.len, sql.p, why);
    }
    return GD_OK;
}

int gd_sql_load_user(gd_catalog *cat, gd_store *store)
{
    MDB_txn *txn;
    int rc = gd_store_begin_read(store, &txn);
    if (rc) return rc;
    gd_str stored;
    load_ctx c = {.cat = cat};
    if (gd_store_meta_get(store, txn, "catalog", &stored) == GD_OK) {
        if (gd_catalog_decode(cat, stored, load_definition, &c))
            gd_error("the stored table and stream definitions are damaged; those after the damage are left out");
    }
    mdb_txn_abort(txn);
    if (c.loaded) gd_info("%d user table%s and stream%s loaded", c.loaded, c.loaded == 1 ? "" : "s", c.loaded == 1 ? "" : "s");
    return rc;
}
