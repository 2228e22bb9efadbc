/* Fuzz target: the file source (ingest/file_source.c): line splitting,
 * the envelope parser and the skipping of lines over --max-record-bytes
 * (set to 1 KiB here, so the fuzzer reaches it). The input is the file. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../ingest/ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gd_config cfg;
    static bool configured;
    if (!configured) {
        char *argv[] = {"gamingd", "--max-record-bytes", "1024", NULL};
        if (gd_config_parse(&cfg, 3, argv)) abort();
        configured = true;
    }
    int fd = memfd_create("fuzz", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    gd_source *src = gd_file_source_open(&cfg, path);
    if (!src) abort();
    for (int i = 0; i < 100000; i++) {
        gd_record rec = {.topic = GD_TOPIC_UNKNOWN};
        int rc = src->next(src, &rec);
        if (rc == GD_EOF || rc == GD_AGAIN) break; /* the end, or a last line held back */
        if (rc == GD_OK && (rec.topic >= GD_TOPIC_COUNT)) __builtin_trap(); /* a good record has a topic */
        if (rc == GD_EBADREC && !src->error) __builtin_trap();
        if (rc != GD_OK && rc != GD_EBADREC) __builtin_trap();
    }
    src->close(src);
    close(fd);
    return 0;
}
