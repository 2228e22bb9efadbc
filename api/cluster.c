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
        gd_reply_error(r, 503, "this instance of consumer group %s is %s: it has not read the reference topics "
                               "and the catalog yet, so it cannot tell which instance answers for what",
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
    gd_prom_family(b, "gamingd_cluster_state", "gauge", "1 for this instance's state: what it holds of the sources (SPEC §11).");
    for (int s = 0; s < GD_CLUSTER_STATE_COUNT; s++)
        gd_prom_sample(b, "gamingd_cluster_state", GD_PROM_LABELS("state", gd_cluster_state_names[s]), "%d", s == (int)st);
    if (ctx->cfg->source != GD_SRC_KAFKA) return;
    gd_prom_family(b, "gamingd_cluster_instances", "gauge", "Live instances of this application id, this one included.");
    gd_prom_sample(b, "gamingd_cluster_instances", NULL, "%d", gd_roster_count(ctx->counters->cluster.roster));
    gd_prom_family(b, "gamingd_owned_partitions", "gauge", "Partitions this instance reads, by topic.");
    for (int t = 0; t < GD_TOPIC_COUNT; t++)
        gd_prom_sample(b, "gamingd_owned_partitions", GD_PROM_LABELS("topic", ctx->cfg->topics[t]), "%d",
                       (int)(t == GD_TOPIC_ACTIVITY ? gd_cluster_owned(v) : atomic_load(&v->partitions[t])));
    gd_prom_family(b, "gamingd_topic_partitions", "gauge", "Partitions of each source topic, as last seen.");
    for (int t = 0; t < GD_TOPIC_COUNT; t++)
        gd_prom_sample(b, "gamingd_topic_partitions", GD_PROM_LABELS("topic", ctx->cfg->topics[t]), "%d",
                       (int)atomic_load(&v->partitions[t]));
    gd_prom_family(b, "gamingd_rebalance_seconds_total", "counter",
                   "Time without activity partitions: from joining or a revoke to the next assignment.");
    gd_prom_sample(b, "gamingd_rebalance_seconds_total", NULL, "%.3f", (double)atomic_load(&v->rebalance_ms_total) / 1000);
    gd_prom_family(b, "gamingd_last_rebalance_seconds", "gauge",
                   "How long the last rebalance left this instance without activity partitions.");
    gd_prom_sample(b, "gamingd_last_rebalance_seconds", NULL, "%.3f", (double)atomic_load(&v->last_rebalance_ms) / 1000);
    gd_prom_family(b, "gamingd_missed_partitions", "gauge",
                   "Activity partitions whose earlier records another member of a shared group applied: this "
                   "instance's tables miss them.");
    gd_prom_sample(b, "gamingd_missed_partitions", NULL, "%d", (int)atomic_load(&v->missed));
    if (!ctx->cfg->partitioned) return;
    gd_prom_family(b, "gamingd_changelog_lag", "gauge",
                   "Changelog records not read yet: how far this instance's copy of the other instances' rows is behind.");
    gd_prom_sample(b, "gamingd_changelog_lag", NULL, "%lld", (long long)atomic_load(&v->changelog_lag));
    gd_prom_family(b, "gamingd_task_lag", "gauge",
                   "Per task this instance holds (role owner) or keeps warm for its owner (role standby): changelog "
                   "records of its partition not read yet, at this instance's last commit or second (no sample until its end is "
                   "known).");
    for (int r = 0, routes = atomic_load(&v->nroutes); r < routes; r++)
        for (int32_t p = 0, parts = atomic_load(&v->route_partitions[r]); p < parts && p < GD_MAX_PARTITIONS; p++) {
            bool standby = atomic_load(&v->standby_tasks[r][p / 64]) >> (p % 64) & 1;
            int32_t c = gd_cluster_task_changelog(v, r, p);
            if ((!gd_cluster_holds_task(v, r, p) && !standby) || c < 0 || atomic_load(&v->partition_lag[c]) < 0) continue;
            char partition[16];
            snprintf(partition, sizeof partition, "%d", (int)p);
            gd_prom_sample(b, "gamingd_task_lag",
                           GD_PROM_LABELS("route", v->route_topic[r], "partition", partition, "role",
                                          gd_cluster_holds_task(v, r, p) ? "owner" : "standby"),
                           "%lld", (long long)atomic_load(&v->partition_lag[c]));
        }
    gd_prom_family(b, "gamingd_restore_remaining", "gauge",
                   "Changelog records still to apply before the partitions just assigned are taken (0: none waiting).");
    gd_prom_sample(b, "gamingd_restore_remaining", NULL, "%lld", (long long)atomic_load(&v->restore_remaining));
    gd_prom_family(b, "gamingd_internal_bytes_total", "counter", "Value bytes this instance produced to the internal topics.");
    gd_prom_sample(b, "gamingd_internal_bytes_total", GD_PROM_LABELS("topic", "routes"), "%llu",
                   (unsigned long long)atomic_load(&v->route_bytes));
    gd_prom_sample(b, "gamingd_internal_bytes_total", GD_PROM_LABELS("topic", "changelog"), "%llu",
                   (unsigned long long)atomic_load(&v->changelog_bytes));
    gd_prom_sample(b, "gamingd_internal_bytes_total", GD_PROM_LABELS("topic", "push"), "%llu",
                   (unsigned long long)atomic_load(&v->push_bytes));
    gd_prom_family(b, "gamingd_push_missed_total", "counter",
                   "Push topic records gone (past its retention) before this instance read them: their events are "
                   "missing from its push streams.");
    gd_prom_sample(b, "gamingd_push_missed_total", NULL, "%llu", (unsigned long long)atomic_load(&v->push_missed));
}
