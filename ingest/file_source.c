/* file_source.c -- --source file:PATH, recorded topic data as JSON lines.
 *
 * Each line is a record envelope, either as `kcat -C -J` prints it
 *   {"topic":"…","partition":0,"offset":1,"ts":…,"key":"…","payload":"<JSON text>"}
 * or in the plain form {"topic":"…","key":"…","value":{…}}. A null payload or
 * value is a tombstone. The file is read in large blocks and split in place;
 * records point into the block until the next call. The position is the byte
 * offset of the next unread line, so a restart seeks straight to it.
 *
 * The file is followed like `tail -f`: at its end the source reports EOF
 * (everything applied) and keeps looking for appended lines. A last line
 * without a newline may be half written: it is taken once the file has
 * stopped growing for HOLD_MS.
 *
 * A line longer than --max-record-bytes is never held whole: once the
 * unread part passes the limit without a newline the source skips to the
 * next newline a block at a time, and reports the line as a bad record of
 * that size (its topic read from the start of the line when it is there).
 * The buffer grows past BLOCK only for a line within a limit set higher
 * than BLOCK, and shrinks back once the line is read. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"

enum { BLOCK = 4 << 20, HOLD_MS = 100, HEAD_BYTES = 256 };

typedef struct {
    gd_source base;
    const gd_config *cfg;
    FILE *f;
    char identity[PATH_MAX + 8];
    char *buf;
    size_t cap, len, off; /* buf[off, len) unread */
    uint64_t file_pos;    /* file offset of buf[off] */
    bool eof;
    size_t held_len; /* a trailing line without newline, seen since held_ns */
    int64_t held_ns;
    bool skipping;              /* passing over an oversized line */
    uint64_t skipped;           /* its bytes passed so far, newline included */
    char head[HEAD_BYTES];      /* the start of the oversized line */
    size_t head_len;
    char error[160];
    gd_arena scratch;
} file_source;

static int resize(file_source *fs, size_t cap)
{
    char *nb = realloc(fs->buf, cap);
    if (!nb) return GD_ENOMEM;
    fs->buf = nb;
    fs->cap = cap;
    return GD_OK;
}

static int refill(file_source *fs)
{
    if (fs->off > 0) {
        memmove(fs->buf, fs->buf + fs->off, fs->len - fs->off);
        fs->len -= fs->off;
        fs->off = 0;
    }
    if (fs->cap > BLOCK && fs->len < BLOCK / 2 && resize(fs, BLOCK)) return GD_ENOMEM; /* a long line was read */
    if (fs->len == fs->cap && resize(fs, fs->cap * 2)) return GD_ENOMEM; /* a line longer than the buffer */
    size_t n = fread(fs->buf + fs->len, 1, fs->cap - fs->len, fs->f);
    fs->len += n;
    if (n == 0) {
        if (ferror(fs->f)) {
            gd_error("file source: read error: %s", strerror(errno));
            return GD_ERR;
        }
        fs->eof = true;
    }
    return GD_OK;
}

/* The topic named at the start of an oversized line, where it is there
 * (kcat and gamingd generate write it first). */
static gd_topic topic_at_start(file_source *fs)
{
    static const char key[] = "\"topic\":\"";
    const char *at = memmem(fs->head, fs->head_len, key, sizeof key - 1);
    if (!at) return GD_TOPIC_UNKNOWN;
    at += sizeof key - 1;
    const char *end = memchr(at, '"', (size_t)(fs->head + fs->head_len - at));
    return end ? gd_topic_lookup(fs->cfg, (gd_str){at, (uint32_t)(end - at)}) : GD_TOPIC_UNKNOWN;
}

/* Passes over an oversized line up to its newline, a buffer at a time;
 * the position stays at the line's start until it is passed, so a restart
 * meanwhile skips it again. GD_EBADREC once it is passed, GD_AGAIN at the
 * end of what is written so far. */
static int skip_oversized(file_source *fs, gd_record *rec)
{
    for (;;) {
        char *start = fs->buf + fs->off;
        char *nl = memchr(start, '\n', fs->len - fs->off);
        size_t n = nl ? (size_t)(nl - start) + 1 : fs->len - fs->off;
        fs->skipped += n;
        fs->off += n;
        if (nl) break;
        if (fs->eof) {
            fs->eof = false;
            clearerr(fs->f);
            return GD_AGAIN;
        }
        int rc = refill(fs);
        if (rc) return rc;
    }
    fs->file_pos += fs->skipped;
    fs->skipping = false;
    rec->topic = topic_at_start(fs);
    rec->key = rec->value = GD_STR_NULL;
    snprintf(fs->error, sizeof fs->error, "a record of %llu bytes, larger than --max-record-bytes %u",
             (unsigned long long)(fs->skipped - 1), fs->cfg->max_record_bytes);
    fs->base.error = fs->error;
    fs->base.error_reason = GD_BAD_TOO_LARGE;
    return GD_EBADREC;
}

/* The unread line passed the limit: keep its start (for its topic), skip it. */
static int start_skipping(file_source *fs, gd_record *rec)
{
    fs->head_len = fs->len - fs->off < HEAD_BYTES ? fs->len - fs->off : HEAD_BYTES;
    memcpy(fs->head, fs->buf + fs->off, fs->head_len);
    fs->skipping = true;
    fs->skipped = 0;
    fs->held_len = 0;
    return skip_oversized(fs, rec);
}

/* The next line, without its newline; the last line may lack one.
 * GD_EBADREC: the line was longer than --max-record-bytes (skipped). */
static int next_line(file_source *fs, gd_str *line, gd_record *rec)
{
    if (fs->skipping) return skip_oversized(fs, rec);
    for (;;) {
        char *start = fs->buf + fs->off;
        char *nl = memchr(start, '\n', fs->len - fs->off);
        size_t line_len = nl ? (size_t)(nl - start) : fs->len - fs->off;
        if (line_len > fs->cfg->max_record_bytes) return start_skipping(fs, rec);
        if (nl) {
            *line = (gd_str){start, (uint32_t)(nl - start)};
            size_t consumed = (size_t)(nl - start) + 1;
            fs->off += consumed;
            fs->file_pos += consumed;
            fs->held_len = 0;
            return GD_OK;
        }
        if (fs->eof) {
            size_t partial = fs->len - fs->off;
            fs->eof = false; /* the file may grow: look again next time */
            clearerr(fs->f);
            if (!partial) return GD_EOF;
            int64_t now = gd_mono_ns();
            if (partial != fs->held_len) {
                fs->held_len = partial;
                fs->held_ns = now;
            }
            if (now - fs->held_ns < HOLD_MS * 1000000LL) return GD_AGAIN;
            *line = (gd_str){start, (uint32_t)partial};
            fs->file_pos += partial;
            fs->off = fs->len;
            fs->held_len = 0;
            return GD_OK;
        }
        int rc = refill(fs);
        if (rc) return rc;
    }
}

static bool blank(gd_str s)
{
    for (uint32_t i = 0; i < s.len; i++)
        if (s.p[i] != ' ' && s.p[i] != '\t' && s.p[i] != '\r') return false;
    return true;
}

/* Parses one envelope. */
static int parse_envelope(file_source *fs, gd_str line, gd_record *rec)
{
    gd_json j;
    gd_json_init(&j, line, &fs->scratch);
    rec->topic = GD_TOPIC_UNKNOWN;
    rec->key = GD_STR_NULL;
    rec->value = GD_STR_NULL;
    if (gd_json_object_begin(&j)) {
        fs->base.error = "line is not a JSON object";
        return GD_EBADREC;
    }
    bool have_value = false, have_topic = false;
    gd_str k;
    int more;
    while ((more = gd_json_next_key(&j, &k)) == 1) {
        gd_jval v;
        /* the value is validated whole by the record decoder */
        if (gd_json_value_delimited(&j, &v)) break;
        if (k.len == 5 && !memcmp(k.p, "topic", 5) && v.t == GD_J_STR) {
            rec->topic = gd_topic_lookup(fs->cfg, v.s);
            have_topic = true;
        } else if (k.len == 3 && !memcmp(k.p, "key", 3)) {
            rec->key = v.t == GD_J_STR ? v.s : GD_STR_NULL;
        } else if (k.len == 7 && !memcmp(k.p, "payload", 7)) {
            have_value = true;
            rec->value = v.t == GD_J_STR ? v.s : GD_STR_NULL;
            if (v.t != GD_J_STR && v.t != GD_J_NULL) {
                fs->base.error = "payload is neither a string nor null";
                return GD_EBADREC;
            }
        } else if (k.len == 5 && !memcmp(k.p, "value", 5)) {
            have_value = true;
            rec->value = v.t == GD_J_NULL ? GD_STR_NULL : v.raw;
        }
    }
    if (more != 0 || gd_json_end(&j)) {
        fs->base.error = "line is not valid JSON";
        return GD_EBADREC;
    }
    if (!have_topic) fs->base.error = "envelope has no topic";
    else if (rec->topic == GD_TOPIC_UNKNOWN) fs->base.error = "unknown topic";
    else if (!have_value) fs->base.error = "envelope has neither payload nor value";
    else return GD_OK;
    return GD_EBADREC;
}

static int fs_next(gd_source *src, gd_record *rec)
{
    file_source *fs = (file_source *)src;
    gd_arena_reset(&fs->scratch);
    gd_str line;
    fs->base.error_reason = GD_BAD_INVALID;
    do {
        int rc = next_line(fs, &line, rec);
        if (rc) return rc;
    } while (blank(line));
    return parse_envelope(fs, line, rec);
}

static void fs_position(gd_source *src, gd_buf *out)
{
    gd_buf_put_u64be(out, ((file_source *)src)->file_pos);
}

static int fs_seek(gd_source *src, gd_str pos)
{
    file_source *fs = (file_source *)src;
    if (pos.len != 8) return GD_ERR;
    uint64_t off = gd_get_u64be(pos.p);
    if (fseeko(fs->f, (off_t)off, SEEK_SET)) {
        gd_error("file source: cannot seek to %llu: %s", (unsigned long long)off, strerror(errno));
        return GD_ERR;
    }
    fs->file_pos = off;
    fs->off = fs->len = 0;
    fs->eof = false;
    fs->skipping = false;
    return GD_OK;
}

static void fs_close(gd_source *src)
{
    file_source *fs = (file_source *)src;
    if (fs->f) fclose(fs->f);
    free(fs->buf);
    gd_arena_free(&fs->scratch);
    free(fs);
}

gd_source *gd_file_source_open(const gd_config *cfg, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        gd_error("file source: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    file_source *fs = calloc(1, sizeof *fs);
    char *buf = malloc(BLOCK);
    if (!fs || !buf) {
        free(fs);
        free(buf);
        fclose(f);
        return NULL;
    }
    fs->base = (gd_source){.kind = "file", .next = fs_next, .position = fs_position,
                           .seek = fs_seek, .close = fs_close};
    fs->cfg = cfg;
    fs->f = f;
    char abs[PATH_MAX];
    snprintf(fs->identity, sizeof fs->identity, "file:%s", realpath(path, abs) ? abs : path);
    fs->base.identity = fs->identity;
    fs->buf = buf;
    fs->cap = BLOCK;
    gd_arena_init(&fs->scratch);
    return &fs->base;
}

gd_topic gd_topic_lookup(const gd_config *cfg, gd_str name)
{
    for (int t = 0; t < GD_TOPIC_COUNT; t++)
        if (strlen(cfg->topics[t]) == name.len && !memcmp(cfg->topics[t], name.p, name.len))
            return (gd_topic)t;
    return GD_TOPIC_UNKNOWN;
}
