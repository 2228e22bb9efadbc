/* Fuzz target: the Avro reader (ingest/avro.c) with the project's own
 * schemas as writer schemas (ids 1-3, known without a registry). Byte 0
 * picks the topic, the rest is the Avro body after the 5-byte Confluent
 * header, which the target writes. */
#include <stdlib.h>
#include <string.h>

#include "../../ingest/window.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__asan_default_options(void);

/* avro-c allocates what a string's length prefix says before reading it,
 * and fails the read cleanly (ENOMEM) when the allocation fails, as it
 * does for a negative or absurd length; under ASan such an allocation must
 * fail the same way rather than abort the run. */
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static gd_avro_reader *r;

static void free_reader(void) { gd_avro_reader_free(r); }

static gd_avro_reader *reader(void)
{
    if (!r) {
        atexit(free_reader); /* what the last record holds is freed too: only true leaks show */
        if (gd_avro_reader_new(&r, NULL) || gd_avro_reader_preload(r, 1, gd_schema_gaming_player_activity) ||
            gd_avro_reader_preload(r, 2, gd_schema_gaming_games) || gd_avro_reader_preload(r, 3, gd_schema_gaming_players))
            abort();
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int topic = data[0] % 3;
    char *framed = malloc(size + 4);
    framed[0] = 0;
    framed[1] = framed[2] = framed[3] = 0;
    framed[4] = (char)(topic + 1);
    memcpy(framed + 5, data + 1, size - 1);
    gd_str value = {framed, (uint32_t)(size + 4)};
    gd_arena scratch;
    gd_arena_init(&scratch);
    const char *why = NULL;
    int rc;
    if (topic == 0) {
        gd_activity a;
        rc = gd_decode_activity(reader(), value, &scratch, &a, &why);
    } else if (topic == 1) {
        gd_game g;
        rc = gd_decode_game(reader(), value, &scratch, &g, &why);
    } else {
        gd_player p;
        rc = gd_decode_player(reader(), value, &scratch, &p, &why);
    }
    if (rc != GD_OK && (rc != GD_EBADREC || !why)) __builtin_trap();
    gd_arena_free(&scratch);
    free(framed);
    return 0;
}
