/* cluster.c -- what this instance holds (SPEC §11): GET /v1/cluster, the
 * metrics of it, and the check that keeps data queries from answering with
 * part of the data.
 *
 * By default every instance reads activity in a consumer group of its own,
 * so each is a replica holding every record, and a load balancer may send
 * any request to any of them; replicas do not know of each other, so an
 * instance lists itself. An instance in a group named with -X group.id
 * holds its partitions' records only while others share the group: it
 * says "partial" and data queries get a 503 with Retry-After. */
#include <string.h>

#include "routes.h"

static const char *mode_of(const gd_api_ctx *ctx)
{
    if (ctx->cfg->source != GD_SRC_KAFKA) return "standalone";
    return ctx->counters->cluster.shared_group ? "shared-group" : "replica";
}

static gd_cluster_state state_of(const gd_api_ctx *ctx)
{
    if (ctx->cfg->source == GD_SRC_KAFKA) return (gd_cluster_state)atomic_load(&ctx->counters->cluster.state);
    return atomic_load(&ctx->counters->ready) ? GD_CLUSTER_RUNNING : GD_CLUSTER_LOADING;
}

static int32_t owned_count(const gd_cluster_view *v)
{
    int32_t n = 0;
    for (int w = 0; w < GD_MAX_PARTITIONS / 64; w++) n += __builtin_popcountll(atomic_load(&v->owned[w]));
    return n;
}

/* The partitions of topic t this instance reads: the assigned activity
 * ones, every reference one. */
static void put_partitions(gd_buf *b, const gd_cluster_view *v, gd_topic t)
{
    gd_buf_puts(b, "[");
    int32_t n = atomic_load(&v->partitions[t]);
    bool first = true;
    for (int32_t p = 0; p < (t == GD_TOPIC_ACTIVITY ? GD_MAX_PARTITIONS : n); p++) {
        if (t == GD_TOPIC_ACTIVITY && !(atomic_load(&v->owned[p / 64]) >> (p % 64) & 1)) continue;
        gd_buf_printf(b, "%s%d", first ? "" : ",", (int)p);
        first = false;
    }
    gd_buf_puts(b, "]");
}

void gd_route_cluster(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    (void)req;
    const gd_cluster_view *v = &ctx->counters->cluster;
    char url[1100];
    gd_config_advertised_url(ctx->cfg, url, sizeof url);
    gd_buf *b = &r->body;
    r->status = 200;
    r->content_type = "application/json";
    gd_buf_puts(b, "{\"instances\":[{\"url\":");
    gd_json_put_cstr(b, url);
    gd_buf_puts(b, ",\"self\":true,\"instance_id\":");
    gd_json_put_cstr(b, v->instance_id);
    gd_buf_puts(b, ",\"partitions\":{");
    for (int t = 0; ctx->cfg->source == GD_SRC_KAFKA && t < GD_TOPIC_COUNT; t++) {
        gd_buf_puts(b, t ? "," : "");
        gd_json_put_cstr(b, ctx->cfg->topics[t]);
        gd_buf_puts(b, ":");
        put_partitions(b, v, (gd_topic)t);
    }
    gd_buf_puts(b, "},\"state\":");
    gd_json_put_cstr(b, gd_cluster_state_names[state_of(ctx)]);
    gd_buf_puts(b, "}],\"mode\":");
    gd_json_put_cstr(b, mode_of(ctx));
    gd_buf_puts(b, ",\"application_id\":");
    gd_json_put_cstr(b, ctx->cfg->application_id);
    gd_buf_puts(b, ",\"group\":");
    if (ctx->cfg->source == GD_SRC_KAFKA) gd_json_put_cstr(b, v->group);
    else gd_buf_puts(b, "null");
    gd_buf_puts(b, "}");
}

bool gd_cluster_refuse_partial(const gd_api_ctx *ctx, gd_reply *r)
{
    const gd_cluster_view *v = &ctx->counters->cluster;
    if (gd_cluster_whole(v)) return false;
    int32_t held = owned_count(v), total = atomic_load(&v->partitions[GD_TOPIC_ACTIVITY]), missed = atomic_load(&v->missed);
    const char *topic = ctx->cfg->topics[GD_TOPIC_ACTIVITY];
    const char *advice = "run each instance in a group of its own (leave group.id unset, and give an instance that "
                         "was in a shared group a new data dir) to have every one answer for all of the records";
    if (missed)
        gd_reply_error(r, 503,
                       "this instance misses the earlier records of %d partitions of %s, which another member of "
                       "consumer group %s applied before it took them over (state %s); %s",
                       (int)missed, topic, v->group, gd_cluster_state_names[state_of(ctx)], advice);
    else
        gd_reply_error(r, 503,
                       "this instance holds %d of the %d partitions of %s that consumer group %s shares (state %s), "
                       "so its tables hold part of the records; %s",
                       (int)held, (int)total, topic, v->group, gd_cluster_state_names[state_of(ctx)], advice);
    return true;
}

void gd_cluster_metrics(const gd_api_ctx *ctx, gd_buf *b)
{
    const gd_cluster_view *v = &ctx->counters->cluster;
    gd_cluster_state st = state_of(ctx);
    gd_buf_puts(b, "# HELP gamingd_cluster_state 1 for this instance's state: what it holds of the sources (SPEC §11).\n"
                   "# TYPE gamingd_cluster_state gauge\n");
    for (int s = 0; s < GD_CLUSTER_STATE_COUNT; s++)
        gd_buf_printf(b, "gamingd_cluster_state{state=\"%s\"} %d\n", gd_cluster_state_names[s], s == (int)st);
    if (ctx->cfg->source != GD_SRC_KAFKA) return;
    gd_buf_puts(b, "# HELP gamingd_owned_partitions Partitions this instance reads, by topic.\n"
                   "# TYPE gamingd_owned_partitions gauge\n");
    for (int t = 0; t < GD_TOPIC_COUNT; t++)
        gd_buf_printf(b, "gamingd_owned_partitions{topic=\"%s\"} %d\n", ctx->cfg->topics[t],
                      (int)(t == GD_TOPIC_ACTIVITY ? owned_count(v) : atomic_load(&v->partitions[t])));
    gd_buf_puts(b, "# HELP gamingd_topic_partitions Partitions of each source topic, as last seen.\n"
                   "# TYPE gamingd_topic_partitions gauge\n");
    for (int t = 0; t < GD_TOPIC_COUNT; t++)
        gd_buf_printf(b, "gamingd_topic_partitions{topic=\"%s\"} %d\n", ctx->cfg->topics[t],
                      (int)atomic_load(&v->partitions[t]));
    gd_buf_printf(b,
                  "# HELP gamingd_rebalance_seconds_total Time without activity partitions: from joining or a "
                  "revoke to the next assignment.\n# TYPE gamingd_rebalance_seconds_total counter\n"
                  "gamingd_rebalance_seconds_total %.3f\n"
                  "# HELP gamingd_last_rebalance_seconds How long the last rebalance left this instance without "
                  "activity partitions.\n# TYPE gamingd_last_rebalance_seconds gauge\n"
                  "gamingd_last_rebalance_seconds %.3f\n"
                  "# HELP gamingd_missed_partitions Activity partitions whose earlier records another member of a "
                  "shared group applied: this instance's tables miss them.\n# TYPE gamingd_missed_partitions gauge\n"
                  "gamingd_missed_partitions %d\n",
                  (double)atomic_load(&v->rebalance_ms_total) / 1000, (double)atomic_load(&v->last_rebalance_ms) / 1000,
                  (int)atomic_load(&v->missed));
}
