/* Fuzz target: partitioned mode's internal records (ingest/route.c,
 * ingest/relay.c), as anyone allowed to write the route topics, the
 * changelog or the push topic could send them. Byte 0 picks the reader (0
 * route, 1 changelog, 2 push); the rest is the value. A route message's
 * records lie within it; a route record that decodes is one the engine can
 * apply: its required fields are there and its
 * times in range, and encoding it again gives the same bytes. A push record
 * reaches a subscriber only as one line of UTF-8 JSON object. */
#include <string.h>

#include "../../ingest/window.h"
#include "../../sql/sql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A relay into a hub where every stream has a subscriber. */
static gd_relay *relay_for_fuzzing(gd_hub **hub_out)
{
    static gd_catalog cat;
    static gd_hub *hub;
    static gd_relay *relay;
    static gd_config cfg;
    if (!relay) {
        gd_sql_error err;
        char *argv[] = {"gamingd", NULL};
        if (gd_config_parse(&cfg, 1, argv)) __builtin_trap();
        gd_catalog_init(&cat, -1);
        if (gd_sql_load_builtin(&cat, &err) || gd_hub_open(&hub, GD_HUB_STREAMS, 1, 64, 64, 0)) __builtin_trap();
        for (unsigned n = 0; n < GD_HUB_STREAMS; n++) gd_hub_subscribed(hub, n, 1);
        if (gd_relay_open(&relay, &cfg, &cat, hub, NULL, NULL, "fuzz")) __builtin_trap();
    }
    *hub_out = hub;
    return relay;
}

static void fuzz_push_record(gd_str value, int64_t offset)
{
    gd_hub *hub;
    gd_relay *relay = relay_for_fuzzing(&hub);
    uint64_t before[GD_MAX_STREAMS + GD_MAX_TABLES];
    for (unsigned n = 0; n < GD_MAX_STREAMS + GD_MAX_TABLES; n++) before[n] = gd_hub_head(hub, n);
    gd_record rec = {.kind = GD_REC_PUSH, .offset = offset, .value = value};
    gd_relay_receive(relay, &rec);
    for (unsigned n = 0; n < GD_MAX_STREAMS + GD_MAX_TABLES; n++) {
        uint64_t pos = before[n], lost = 0;
        gd_hub_event ev;
        gd_buf wrap = {0};
        if (gd_hub_head(hub, n) == before[n]) continue;
        if (!gd_relay_carries(relay, n) || gd_hub_peek(hub, n, &pos, &ev, &wrap, &lost) != GD_OK) __builtin_trap();
        gd_str t = ev.text;
        if (ev.id != (uint64_t)offset + 1 || t.len < 2 || t.p[0] != '{' || memchr(t.p, '\n', t.len) ||
            !gd_utf8_valid(t.p, t.len))
            __builtin_trap();
        gd_hub_release(hub, n, &pos, &ev, &lost);
        gd_buf_free(&wrap);
    }
}

/* One record of a route message. */
static void fuzz_route_record(gd_str value)
{
    gd_route_record rr;
    if (gd_route_decode(value, &rr) != GD_OK) return;
    const gd_activity *a = &rr.a;
    if (!a->player_id.p || !a->game_id.p || a->activity_timestamp < 0 || a->activity_timestamp > GD_MAX_TIMESTAMP)
        __builtin_trap();
    gd_enriched en;
    gd_enrich_with(&en, a, rr.has_game ? &rr.game : NULL, rr.has_player ? &rr.player : NULL, rr.processing_timestamp);
    gd_buf again = {0};
    gd_route_encode(&again, &en, rr.fields, rr.src_partition, rr.src_offset);
    if (value.p[0] == 'F' && (again.len != value.len || memcmp(again.p, value.p, value.len)))
        __builtin_trap(); /* one encoding (an old whole 'R' record is written again trimmed) */
    gd_buf_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int64_t offset;
    if (size < 1) return 0;
    gd_str value = {(const char *)data + 1, (uint32_t)(size - 1)};
    if (data[0] % 3 == 2) {
        fuzz_push_record(value, offset++);
        return 0;
    }
    if (data[0] % 3 == 1) {
        gd_changelog_record c;
        if (gd_changelog_decode(value, &c) == GD_OK &&
            (c.producer.len != GD_PRODUCER_LEN || c.value.p + c.value.len > value.p + value.len))
            __builtin_trap();
        return 0;
    }
    gd_route_reader reader;
    gd_route_reader_init(&reader, value);
    gd_str one;
    while (gd_route_reader_next(&reader, &one) == GD_OK) {
        if (one.p < value.p || one.p + one.len > value.p + value.len) __builtin_trap();
        fuzz_route_record(one);
    }
    return 0;
}
