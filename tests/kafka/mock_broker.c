/* mock_broker.c -- a Kafka-protocol cluster for the tests and the bench.
 *
 * No Apache Kafka broker can be installed on the test machines, so the
 * suite runs librdkafka's own mock cluster (rdkafka_mock.h) in this small
 * process: it speaks the Kafka protocol on loopback (produce, fetch, list
 * offsets, metadata, consumer groups, idempotent producers) and keeps the
 * topics in memory for as long as it runs.
 *
 * It prints its bootstrap servers as the first line of stdout, then takes
 * one command per line on stdin:
 *   topic NAME PARTITIONS   create a topic
 *   down | up               all brokers refuse / accept connections (an outage
 *                           that keeps the data, as a restarted broker would)
 * and exits at end of input or on SIGTERM. Each command is answered "ok" or
 * "error: why" on stdout. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rd_kafka_t *cluster_handle(void)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* the handle only anchors the mock cluster; keep it quiet */
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) fprintf(stderr, "mock_broker: %s\n", err);
    return rk;
}

static const char *run_command(rd_kafka_mock_cluster_t *mc, char *line)
{
    char name[256];
    int partitions;
    rd_kafka_resp_err_t err;
    if (sscanf(line, "topic %255s %d", name, &partitions) == 2)
        err = rd_kafka_mock_topic_create(mc, name, partitions, 1);
    else if (!strcmp(line, "down"))
        err = rd_kafka_mock_broker_set_down(mc, -1);
    else if (!strcmp(line, "up"))
        err = rd_kafka_mock_broker_set_up(mc, -1);
    else
        return "unknown command";
    return err ? rd_kafka_err2str(err) : NULL;
}

int main(int argc, char **argv)
{
    int brokers = argc > 1 ? atoi(argv[1]) : 1;
    rd_kafka_t *rk = cluster_handle();
    if (!rk) return 1;
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers > 0 ? brokers : 1);
    if (!mc) {
        fprintf(stderr, "mock_broker: cannot create the mock cluster\n");
        return 1;
    }
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        const char *why = run_command(mc, line);
        if (why) printf("error: %s\n", why);
        else printf("ok\n");
        fflush(stdout);
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
