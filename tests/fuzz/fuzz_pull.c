/* Fuzz target: pull queries as a client sends them -- the request target
 * (api/request.c), the table's parameters, and cursors (api/pull.c) -- over
 * a real LMDB store with rows in every table. Byte 0 picks the table, the
 * rest is the query string. When a page comes back with a next_cursor, the
 * next page is asked for with it, and again with one of its hex digits
 * changed (the last input byte says which and to what): cursors are sealed,
 * so a changed one must be a 400. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/routes.h"
#include "store_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gd_config cfg;
static gd_catalog cat;
static gd_store store;
static gd_api_ctx ctx;

/* Runs the query of target; returns the next_cursor it answered with (malloc'd) or NULL, and the status. */
static char *run(const char *target, const char *table, int *status)
{
    gd_request req;
    char *next = NULL;
    if (gd_request_parse(&req, target) == GD_OK) {
        req.scopes = GD_SCOPE_READ;
        gd_reply r = {0};
        gd_route_table_rows(&ctx, &req, table, &r);
        if (r.status != 200 && r.status != 400 && r.status != 403 && r.status != 404) __builtin_trap();
        *status = r.status;
        gd_buf_putc(&r.body, 0);
        const char *c = r.status == 200 ? strstr(r.body.p, "\"next_cursor\":\"") : NULL;
        if (c) next = strndup(c + 15, strcspn(c + 15, "\""));
        gd_buf_free(&r.body);
    }
    gd_request_free(&req);
    return next;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!store.env) {
        gd_fuzz_fill_store(&cfg, &cat, &store);
        ctx = (gd_api_ctx){.cfg = &cfg, .store = &store, .cat = &cat};
        if (gd_store_secret(&store, "cursor_key", ctx.cursor_key, sizeof ctx.cursor_key)) __builtin_trap();
    }
    if (size < 1 || size > 9000 || memchr(data, 0, size)) return 0;
    const gd_catalog_entry *e = NULL;
    for (unsigned i = data[0]; !e; i++) e = gd_catalog_table(&cat, i % GD_MAX_TABLES);
    const char *table = e->name;
    char target[9300];
    snprintf(target, sizeof target, "/v1/tables/%s?%.*s", table, (int)(size - 1), (const char *)data + 1);
    int status = 0;
    char *next = run(target, table, &status);
    if (next && strlen(target) + strlen(next) + 10 < sizeof target) {
        size_t base = strlen(target);
        snprintf(target + base, sizeof target - base, "&cursor=%s", next);
        free(run(target, table, &status));
        size_t at = base + 8 + (size_t)data[size - 1] % strlen(next);
        char was = target[at];
        target[at] = "0123456789abcdef"[data[size - 1] >> 4];
        free(run(target, table, &status));
        if (target[at] != was && status != 400) __builtin_trap(); /* a changed cursor was taken */
    }
    free(next);
    return 0;
}
