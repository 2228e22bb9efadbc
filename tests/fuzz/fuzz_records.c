/* Fuzz target: the JSON record scanner, through the decoders of the three
 * source topics (ingest/decode.c over server/json.c). Byte 0 picks the
 * topic; the rest is the value. Whatever the bytes, a decoder returns
 * GD_OK or GD_EBADREC, and what it returns is a valid record. */
#include <string.h>

#include "../../ingest/window.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    gd_str value = {(const char *)data + 1, (uint32_t)(size - 1)};
    gd_arena scratch;
    gd_arena_init(&scratch);
    const char *why = NULL;
    int rc;
    switch (data[0] % 3) {
    case 0: {
        gd_activity a;
        rc = gd_decode_activity(NULL, value, &scratch, &a, &why);
        if (rc == GD_OK && (!a.player_id.p || !a.game_id.p || !a.activity_type.p || a.activity_timestamp < 0 ||
                            a.activity_timestamp > GD_MAX_TIMESTAMP))
            __builtin_trap(); /* a required field let through */
        break;
    }
    case 1: {
        gd_game g;
        rc = gd_decode_game(NULL, value, &scratch, &g, &why);
        break;
    }
    default: {
        gd_player p;
        rc = gd_decode_player(NULL, value, &scratch, &p, &why);
        break;
    }
    }
    if (rc != GD_OK && (rc != GD_EBADREC || !why)) __builtin_trap(); /* a bad record says why */
    gd_arena_free(&scratch);
    return 0;
}
