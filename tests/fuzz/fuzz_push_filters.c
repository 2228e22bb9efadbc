/* Fuzz target: the SSE subscription parser (api/push.c) -- a request
 * target decoded by api/request.c, then its filters, limit and
 * last_event_id for a stream -- and those filters planned as a WHERE by
 * the planner (gd_sql_plan_filters) and evaluated over a few events of that
 * stream, as the push-query runner evaluates them. Byte 0 picks the stream or table, and by its high bit
 * whether the key may see personal data. */
#include <string.h>

#include "../../api/routes.h"
#include "../../sql/sql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gd_catalog cat;
static bool loaded;

/* The entry byte b picks: a table or a stream of the built-in catalog. */
static const gd_catalog_entry *entry_for(uint8_t b)
{
    if (!loaded) {
        gd_sql_error err;
        gd_catalog_init(&cat, -1);
        if (gd_sql_load_builtin(&cat, &err)) __builtin_trap();
        loaded = true;
    }
    const gd_catalog_entry *e = NULL;
    for (unsigned i = b & 0x7f; !e; i++)
        e = i % 2 ? gd_catalog_table(&cat, i / 2 % GD_MAX_TABLES) : gd_catalog_stream(&cat, i / 2 % GD_MAX_STREAMS);
    return e;
}

static const char *const events[] = {
    "{\"game_id\":\"game_001\",\"game_name\":\"Neon \\\"Arena\\\"\",\"score\":120,\"has_purchase\":false,\"avg_score_1h\":1.5e3}",
    "{\"game_id\":\"game_002\",\"player_id\":\"p1\",\"score\":null,\"has_purchase\":true,\"game_rating\":4.25}",
    "{\"game_id\":\"g\",\"deleted\":true}",
    "{}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 20000) return 0;
    char target[20016];
    int n = snprintf(target, sizeof target, "/v1/streams/x?%.*s", (int)(size - 1), (const char *)data + 1);
    if (memchr(data + 1, 0, size - 1)) return 0; /* a target is a C string: it cannot hold NUL */
    (void)n;
    gd_request req;
    if (gd_request_parse(&req, target) == GD_OK) {
        req.scopes = data[0] & 0x80 ? GD_SCOPE_ALL : GD_SCOPE_READ; /* with and without the pii scope */
        gd_str evs[4];
        bool matched[4];
        for (int i = 0; i < 4; i++) evs[i] = gd_str_c(events[i]);
        int status = gd_push_check_filters(entry_for(data[0]), &req, evs, 4, matched);
        if (status != 200 && status != 400 && status != 403) __builtin_trap();
    }
    gd_request_free(&req);
    return 0;
}
