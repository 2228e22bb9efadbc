/* builtin.c -- the catalog at start: builtin.sql (built into the binary by
 * the Makefile as gd_builtin_sql), then the user's definitions the store
 * holds, each compiled by the planner like a statement just received.
 *
 * A stored definition that no longer compiles (a bound it predates, a
 * column gone from what it reads, an edited store) or finds no slot is
 * quarantined (store/catalog.h), never fatal: a daemon that refused to
 * start, or crashed, on what its store holds would do so at every start. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

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

static bool is_word(const gd_token *t, const char *w)
{
    return t->type == GD_TK_IDENT && t->text.len == strlen(w) && !strncasecmp(t->text.p, w, t->text.len);
}

/* The name CREATE TABLE|STREAM [IF NOT EXISTS] name ... gives, lower case
 * as the planner keeps it, from the statement's first tokens alone (it
 * may no longer parse); "definition_UID" when it gives none. */
static char *created_name(gd_arena *arena, gd_str sql, uint64_t uid)
{
    gd_lexer lx;
    gd_lexer_init(&lx, sql, arena);
    gd_token t = gd_lexer_next(&lx);
    gd_str name = {NULL, 0};
    if (is_word(&t, "CREATE") && (t = gd_lexer_next(&lx), is_word(&t, "TABLE") || is_word(&t, "STREAM"))) {
        t = gd_lexer_next(&lx);
        if (is_word(&t, "IF")) {
            for (int i = 0; i < 3; i++) t = gd_lexer_next(&lx); /* NOT EXISTS name */
        }
        if ((t.type == GD_TK_IDENT || t.type == GD_TK_QIDENT) && t.text.len && t.text.len < 128) name = t.text;
    }
    if (name.p) return gd_sql_lower_dup(arena, name);
    char *out = gd_arena_alloc(arena, 32);
    snprintf(out, 32, "definition_%llu", (unsigned long long)uid);
    return out;
}

/* A stored definition that did not compile (why) into the quarantine;
 * false when there is no room there either. */
static bool quarantine(gd_catalog *cat, uint64_t uid, bool is_table, bool terminated, gd_str sql, const char *why)
{
    gd_catalog_entry *e = gd_catalog_entry_new();
    if (!e) return false;
    e->uid = uid;
    e->is_table = is_table;
    e->kind = GD_SRC_DERIVED; /* what a stored stream is */
    atomic_store(&e->terminated, terminated);
    e->name = created_name(&e->arena, sql, uid);
    char *text = gd_arena_alloc(&e->arena, sql.len + 1);
    memcpy(text, sql.p, sql.len);
    text[sql.len] = 0;
    e->sql = text;
    e->sql_personal = true; /* not known without compiling it */
    char *error = gd_arena_alloc(&e->arena, strlen(why) + 1);
    memcpy(error, why, strlen(why) + 1);
    e->error = error;
    if (gd_catalog_name_taken(cat, gd_str_c(e->name)) || gd_catalog_quarantine(cat, e)) {
        gd_catalog_entry_free(e);
        return false;
    }
    return true;
}

static int load_definition(void *ctx, uint64_t uid, bool is_table, bool terminated, gd_str sql)
{
    load_ctx *c = ctx;
    char why_buf[sizeof ((gd_sql_error *)0)->message];
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
    else if (quarantine(c->cat, uid, is_table, terminated, sql, why)) {
        c->failed++;
        gd_error("a stored definition no longer compiles and is quarantined (listed with this error until DROP; its "
                 "data stays in the store): %.*s: %s",
                 (int)(sql.len < 2000 ? sql.len : 2000), sql.p, why);
    } else {
        c->failed++;
        gd_error("a stored definition no longer compiles and is left out (no room to quarantine it, or its name is "
                 "taken): %.*s: %s",
                 (int)(sql.len < 2000 ? sql.len : 2000), sql.p, why);
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
