/* Fuzz target: partitioned mode's internal records (ingest/route.c), as
 * anyone allowed to write the route topics or the changelog could send them.
 * Byte 0 picks the decoder; the rest is the value. A route record that
 * decodes is one the engine can apply: its required fields are there and its
 * times in range, and encoding it again gives the same bytes. */
#include <string.h>

#include "../../ingest/window.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    gd_str value = {(const char *)data + 1, (uint32_t)(size - 1)};
    if (data[0] % 2) {
        gd_changelog_record c;
        if (gd_changelog_decode(value, &c) == GD_OK &&
            (c.producer.len != GD_PRODUCER_LEN || c.value.p + c.value.len > value.p + value.len))
            __builtin_trap();
        return 0;
    }
    gd_route_record rr;
    if (gd_route_decode(value, &rr) != GD_OK) return 0;
    const gd_activity *a = &rr.a;
    if (!a->player_id.p || !a->game_id.p || a->activity_timestamp < 0 || a->activity_timestamp > GD_MAX_TIMESTAMP)
        __builtin_trap();
    gd_enriched en;
    gd_enrich_with(&en, a, rr.has_game ? &rr.game : NULL, rr.has_player ? &rr.player : NULL, rr.processing_timestamp);
    gd_buf again = {0};
    gd_route_encode(&again, &en, rr.src_partition, rr.src_offset);
    if (again.len != value.len || memcmp(again.p, value.p, value.len)) __builtin_trap(); /* one encoding */
    gd_buf_free(&again);
    return 0;
}
