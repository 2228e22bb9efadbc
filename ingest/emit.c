/* emit.c -- an enriched record out, once its figures are in.
 *
 * Its figures come from two tables (window.c), so whoever applies those
 * tables sends the record on: to the streams derived from it, the enriched
 * push stream, the output file and the output topic, rendered to JSON once
 * for all of them. That is the engine, or with three ingest threads or more
 * the worker that keeps the figures' tables (worker.c). One thread uses an
 * emitter at a time: the engine touches a worker's only while the worker is
 * drained. The output file's lines gather in the emitter and are written
 * whenever OUTBUF_FLUSH bytes have gathered, and at every commit, before it:
 * after a crash the file may repeat records, never miss one. */
#include <errno.h>
#include <string.h>

#include "window.h"

enum { OUTBUF_FLUSH = 1 << 20 };

void gd_emitter_init(gd_emitter *em, gd_push_sink *push, const gd_derived_list *derived, gd_output *out, FILE *file,
                     const char *file_path)
{
    memset(em, 0, sizeof *em);
    em->file_path = file_path;
    em->push = push;
    em->derived = derived;
    em->out = out;
    em->file = file;
    gd_arena_init(&em->scratch);
}

void gd_emitter_free(gd_emitter *em)
{
    gd_buf_free(&em->lines);
    gd_buf_free(&em->tmp);
    gd_arena_free(&em->scratch);
}

void gd_publish_derived(gd_push_sink *push, const gd_derived_list *derived, gd_buf *tmp, gd_stream_kind base,
                        const gd_eval *ctx, uint64_t id)
{
    for (int d = 0; d < derived->n; d++) {
        const gd_catalog_entry *ds = derived->entries[d];
        gd_stream_kind of = ds->base->kind == GD_SRC_ACTIVITY ? GD_SRC_ENRICHED : ds->base->kind;
        if (of != base) continue;
        unsigned stream = gd_stream_hub(ds->slot);
        if (!gd_push_sink_wanted(push, stream, id) || (ds->where && !gd_expr_true(ds->where, ctx))) continue;
        gd_buf_clear(tmp);
        for (int c = 0; c < ds->ncols; c++) {
            gd_buf_putc(tmp, c ? ',' : '{');
            gd_json_put_cstr(tmp, ds->cols[c].name);
            gd_buf_putc(tmp, ':');
            gd_json_put_value(tmp, gd_expr_eval(ds->proj[c], ctx));
        }
        gd_buf_putc(tmp, '}');
        gd_push_sink_publish(push, stream, id, tmp->p, tmp->len);
    }
}

static gd_value enriched_column(const void *row, int index) { return gd_enriched_field(row, (gd_field)index); }

int gd_emitter_write_lines(gd_emitter *em)
{
    if (!em->file || !em->lines.len) return GD_OK;
    if (fwrite(em->lines.p, 1, em->lines.len, em->file) != em->lines.len) {
        gd_error("writing output %s: %s", em->file_path, strerror(errno));
        return GD_ERR;
    }
    gd_buf_clear(&em->lines);
    return GD_OK;
}

void gd_emit_enriched(gd_emitter *em, const gd_enriched *en, bool produce)
{
    gd_arena_reset(&em->scratch);
    gd_eval ctx = {.column = enriched_column, .row = en, .now_ms = en->processing_timestamp, .scratch = &em->scratch};
    gd_publish_derived(em->push, em->derived, &em->tmp, GD_SRC_ENRICHED, &ctx, en->seq);
    bool push = gd_push_sink_wanted(em->push, GD_STREAM_ENRICHED, en->seq);
    bool render = push || em->file || (produce && gd_output_wants_json(em->out));
    size_t at = em->lines.len;
    gd_str json = GD_STR_NULL;
    if (render) { /* rendered once, for all */
        gd_render_enriched(en, &em->lines);
        json = (gd_str){em->lines.p + at, (uint32_t)(em->lines.len - at)};
        if (push) gd_push_sink_publish(em->push, GD_STREAM_ENRICHED, en->seq, json.p, json.len);
    }
    if (produce && gd_output_enriched(em->out, en, json)) em->failed = true;
    if (!em->file) {
        em->lines.len = at;
        return;
    }
    gd_buf_putc(&em->lines, '\n'); /* a line for the file, written in batches */
    if (em->lines.len >= OUTBUF_FLUSH && gd_emitter_write_lines(em)) em->failed = true;
}
