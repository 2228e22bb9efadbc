/* cluster.c -- what this instance holds (SPEC §11): GET /v1/cluster, the
 * metrics of it, and the check that keeps data queries from answering with
 * part of the data.
 *
 * By default every instance reads activity in a consumer group of its own,
 * so each is a replica holding every record, and a load balancer may send
 * any request to any of them. /v1/cluster lists this instance and the
 * others of its application id, which announce themselves through Kafka
 * (ingest/roster.c). An instance in a group named with -X group.id
 * holds its partitions' records only while others share the group: it
 * says "partial" and data queries get a 503 with Retry-After. */
#include <string.h>

#include "routes.h"

static const char *mode_of(const gd_api_ctx *ctx)
{
    if (ctx->cfg->source != GD_SRC_KAFKA) return "standalone";
    if (ctx->cfg->partitioned) return "partitioned";
    return ctx->counters->cluster.shared_group ? "shared-group" : "replica";
}

void gd_route_cluster(const gd_api_ctx *ctx, const gd_request *req, gd_reply *r)
{
    (void)req;
    gd_buf *b = &r->body;
    r->status = 200;
    r->content_type = "application/json";
    gd_buf_puts(b, "{\"instances\":[");
    gd_cluster_put_instance(b, ctx->cfg, ctx->counters, true);
    gd_roster_put_others(ctx->counters->cluster.roster, b);
    gd_buf_puts(b, "],\"mode\":");
    gd_json_put_cstr(b, mode_of(ctx));
    gd_buf_puts(b, ",\"application_id\":");
    gd_json_put_cstr(b, ctx->cfg->application_id);
    gd_buf_puts(b, ",\"group\":");
    if (ctx->cfg->source == GD_SRC_KAFKA) gd_json_put_cstr(b, ctx->counters->cluster.group);
    else gd_buf_puts(b, "null");
    gd_buf_puts(b, "}");
}

bool gd_cluster_refuse_partial(const gd_api_ctx *ctx, gd_reply *r)
{
    const gd_cluster_view *v = &ctx->counters->cluster;
    if (gd_cluster_whole(v)) return false;
    int32_t held = gd_cluster_owned(v), total = atomic_load(&v->partitions[GD_TOPIC_ACTIVITY]), missed = atomic_load(&v->missed);
    const char *topic = ctx->cfg->topics[GD_TOPIC_ACTIVITY];
    if (ctx->cfg->partitioned) {
        gd_reply_error(r, 503, "this instance of consumer group %s is %s: the state of the partitions it is "
                               "taking over is being restored from the changelog",
                       v->group, gd_cluster_state_names[gd_cluster_state_of(ctx->cfg, ctx->counters)]);
        return true;
    }
    const char *advice = "run each instance in a group of its own (leave group.id unset, and give an instance that "
                         "was in a shared group a new data dir) to have every one answer for all of the records";
    if (missed)
        gd_reply_error(r, 503,
                       "this instance misses the earlier records of %d partitions of %s, which another member of "
                       "consumer group %s applied before it took them over (state %s); %s",
                       (int)missed, topic, v->group, gd_cluster_state_names[gd_cluster_state_of(ctx->cfg, ctx->counters)], advice);
    else
        gd_reply_error(r, 503,
                       "this instance holds %d of the %d partitions of %s that consumer group %s shares (state %s), "
                       "so its tables hold part of the records; %s",
                       (int)held, (int)total, topic, v->group, gd_cluster_state_names[gd_cluster_state_of(ctx->cfg, ctx->counters)], advice);
    return true;
}

void gd_cluster_metrics(const gd_api_ctx *ctx, gd_buf *b)
{
    const gd_cluster_view *v = &ctx->counters->cluster;
    gd_cluster_state st = gd_cluster_state_of(ctx->cfg, ctx->counters);
    gd_buf_puts(b, "# HELP gamingd_cluster_state 1 for this instance's state: what it holds of the sources (SPEC §11).\n"
                   "# TYPE gamingd_cluster_state gauge\n");
    for (int s = 0; s < GD_CLUSTER_STATE_COUNT; s++)
        gd_buf_printf(b, "gamingd_cluster_state{state=\"%s\"} %d\n", gd_cluster_state_names[s], s == (int)st);
    if (ctx->cfg->source != GD_SRC_KAFKA) return;
    gd_buf_printf(b, "# HELP gamingd_cluster_instances Live instances of this application id, this one included.\n"
                     "# TYPE gamingd_cluster_instances gauge\ngamingd_cluster_instances %d\n",
                  gd_roster_count(ctx->counters->cluster.roster));
    gd_buf_puts(b, "# HELP gamingd_owned_partitions Partitions this instance reads, by topic.\n"
                   "# TYPE gamingd_owned_partitions gauge\n");
    for (int t = 0; t < GD_TOPIC_COUNT; t++)
        gd_buf_printf(b, "gamingd_owned_partitions{topic=\"%s\"} %d\n", ctx->cfg->topics[t],
                      (int)(t == GD_TOPIC_ACTIVITY ? gd_cluster_owned(v) : atomic_load(&v->partitions[t])));
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
    if (!ctx->cfg->partitioned) return;
    gd_buf_printf(b,
                  "# HELP gamingd_changelog_lag Changelog records not read yet: how far this instance's copy of the "
                  "other instances' rows is behind.\n# TYPE gamingd_changelog_lag gauge\ngamingd_changelog_lag %lld\n"
                  "# HELP gamingd_restore_remaining Changelog records still to apply before the partitions just "
                  "assigned are taken (0: none waiting).\n# TYPE gamingd_restore_remaining gauge\n"
                  "gamingd_restore_remaining %lld\n"
                  "# HELP gamingd_internal_bytes_total Value bytes this instance produced to the internal topics.\n"
                  "# TYPE gamingd_internal_bytes_total counter\n"
                  "gamingd_internal_bytes_total{topic=\"routes\"} %llu\n"
                  "gamingd_internal_bytes_total{topic=\"changelog\"} %llu\n"
                  "gamingd_internal_bytes_total{topic=\"push\"} %llu\n"
                  "# HELP gamingd_push_missed_total Push topic records gone (past its retention) before this "
                  "instance read them: their events are missing from its push streams.\n"
                  "# TYPE gamingd_push_missed_total counter\ngamingd_push_missed_total %llu\n",
                  (long long)atomic_load(&v->changelog_lag), (long long)atomic_load(&v->restore_remaining),
                  (unsigned long long)atomic_load(&v->route_bytes), (unsigned long long)atomic_load(&v->changelog_bytes),
                  (unsigned long long)atomic_load(&v->push_bytes), (unsigned long long)atomic_load(&v->push_missed));
}
