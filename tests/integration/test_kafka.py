"""gamingd against a Kafka-protocol cluster (SPEC §3, §7, §9).

The source topics are fed by Python's confluent_kafka producer from a
generated file; the tables must equal the independent reference computed
over the records in the order gamingd reads them (reference topics first,
then activity). The output topic is read back by independent clients: the
data product README's consumer (confluent_kafka + the registry client) with
Apache Avro decoding the Confluent wire format, and kcat for JSON output.
"""

import datetime
import json
import os
import subprocess
import threading
import time

import avro.schema
import pytest

import checks
import reference
from conftest import BASE_MS, DaemonFactory, read_lines
from kafka_env import (ACTIVITY, GAMES, OUTPUT_TOPIC, PLAYERS, MockKafka, Registry, as_reference_lines,
                       avro_decode, avro_encode, consume_all, create_source_topics, in_read_order,
                       in_reference_order, kafka, produce, records_in, records_of_lines, registry,
                       wait_applied)

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
SUBJECT = OUTPUT_TOPIC + "-value"


def epoch_ms(v):
    if isinstance(v, datetime.datetime):
        return (v - EPOCH) // datetime.timedelta(milliseconds=1)
    return v


def readme_consumer(bootstrap, registry_url, expect, timeout=60):
    """The data product README's Python consumer pointed at loopback: the
    schema from the registry's latest version of the subject, messages from a
    consumer group. (The README's AvroDeserializer needs fastavro, which Debian
    does not package; Apache Avro decodes the same wire format here.)"""
    from confluent_kafka import Consumer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    sr_client = SchemaRegistryClient({"url": registry_url})
    latest = sr_client.get_latest_version(SUBJECT)
    schema = avro.schema.parse(latest.schema.schema_str)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "gaming-intelligence-consumer",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([OUTPUT_TOPIC])
    got = []
    deadline = time.time() + timeout
    try:
        while len(got) < expect and time.time() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            sid, value = avro_decode(schema, msg.value())
            assert sid == latest.schema_id, "record written with schema %d, registered %d" % (sid, latest.schema_id)
            assert msg.key() == value["player_id"].encode(), "record key is not player_id"
            got.append({k: epoch_ms(v) for k, v in value.items()})
        # anything beyond `expect` (duplicates) arrives within a moment
        end = time.time() + 1
        while time.time() < end:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                got.append({k: epoch_ms(v) for k, v in avro_decode(schema, msg.value())[1].items()})
    finally:
        consumer.close()
    return got


class KafkaRun:
    def __init__(self, tmp, events, seed, args=(), activity_partitions=1):
        self.kafka = MockKafka()
        self.registry = Registry()
        create_source_topics(self.kafka, activity_partitions=activity_partitions)
        path = os.path.join(tmp, "gen.jsonl")
        b = os.environ.get("GAMINGD_BIN")
        subprocess.run([b, "generate", "--out", path, "--events", str(events), "--seed", str(seed),
                        "--start", str(BASE_MS)], check=True, capture_output=True)
        self.records = records_of_lines(read_lines(path))
        self.ref = reference.reference_for(as_reference_lines(in_read_order(self.records)))
        self.factory = DaemonFactory(tmp)
        self.args = ["--brokers", self.kafka.bootstrap, "--schema-registry", self.registry.url,
                     "--output", "kafka"] + list(args)

    def start(self, data_dir=None):
        return self.factory("kafka", args=self.args, data_dir=data_dir)

    def close(self):
        self.factory.cleanup()
        self.kafka.close()
        self.registry.close()


@pytest.fixture(scope="module")
def json_run(tmp_path_factory):
    """JSON source values, Avro output: 6000 activity events fed before start."""
    run = KafkaRun(str(tmp_path_factory.mktemp("kafka")), events=6000, seed=71)
    try:
        produce(run.kafka.bootstrap, run.records)
        run.t0 = checks.now_ms()
        run.daemon = run.start()
        wait_applied(run.daemon, len(run.records))
        run.t1 = checks.now_ms()
        yield run
    finally:
        run.close()


def test_tables_equal_the_reference(json_run):
    errs = checks.compare_all_tables(json_run.daemon, json_run.ref)
    checks.fail_if(errs, "tables fed from Kafka differ from the reference")


def test_avro_output_read_by_the_readme_consumer(json_run):
    ref = json_run.ref
    got = readme_consumer(json_run.kafka.bootstrap, json_run.registry.url, len(ref.outputs))
    assert len(got) == len(ref.outputs), "output topic has %d records, reference %d" % (len(got), len(ref.outputs))
    errs = checks.compare_outputs(in_reference_order(got, ref.outputs), ref, ts_bounds=(json_run.t0, checks.now_ms()))
    checks.fail_if(errs, "Avro output differs from the reference")


def test_output_schema_is_the_shipped_one(json_run):
    from confluent_kafka.schema_registry import SchemaRegistryClient
    latest = SchemaRegistryClient({"url": json_run.registry.url}).get_latest_version(SUBJECT)
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "schemas", "gaming_intelligence.avsc")) as f:
        shipped = json.load(f)
    assert json.loads(latest.schema.schema_str) == shipped
    names = [f["name"] for f in shipped["fields"]]
    assert names[:16] == ["game_id", "game_name", "game_genre", "player_id", "player_username", "player_email",
                          "player_level", "activity_type", "session_id", "score", "duration_seconds",
                          "total_sessions_1h", "avg_score_1h", "active_players_count", "event_timestamp",
                          "processing_timestamp"]
    assert shipped["namespace"] == "com.datamesh.gaming" and shipped["name"] == "GamingIntelligence"


def test_bad_records_go_to_the_dead_letter_topics(json_run):
    ref = json_run.ref
    bad_values = {}
    for topic, key, value in json_run.records:
        try:
            reference.decode_line({"topic": topic, "key": None if key is None else key.decode(),
                                   "payload": None if value is None else value.decode("utf-8", "surrogateescape")})
        except reference.BadRecord as e:
            bad_values.setdefault(topic, []).append(value)
    assert sum(len(v) for v in bad_values.values()) == ref.bad > 0
    m = json_run.daemon.metrics()
    for topic in (GAMES, PLAYERS, ACTIVITY):
        want = bad_values.get(topic, [])
        msgs = consume_all(json_run.kafka.bootstrap, topic + ".dlq", expect=len(want), timeout=20) if want else []
        assert len(msgs) == len(want), "%s.dlq has %d records, %d bad records" % (topic, len(msgs), len(want))
        assert [m_.value() for m_ in msgs] == want, "dead letters are not the bad records as they came"
        for msg in msgs:
            headers = dict(msg.headers() or [])
            assert headers.get("error"), "dead letter without an error header"
        assert m[("gamingd_dead_letters_total", frozenset({("topic", topic)}))] == len(want)
        assert m[("gamingd_bad_records_total", frozenset({("topic", topic)}))] == len(want)


def test_metrics_show_the_consumer_caught_up(json_run):
    m = json_run.daemon.metrics()
    for topic in (GAMES, PLAYERS, ACTIVITY):
        assert m[("gamingd_kafka_consumer_lag", frozenset({("topic", topic)}))] == 0
    assert m[("gamingd_kafka_up", frozenset())] == 1
    assert m[("gamingd_ready", frozenset())] == 1
    assert m[("gamingd_kafka_produced_total", frozenset())] == len(json_run.ref.outputs)


def test_restart_resumes_from_the_committed_offsets(json_run, tmp_path):
    """SIGTERM then start on the same data dir: nothing is read twice, and
    records produced meanwhile are applied once."""
    d = json_run.daemon
    assert d.stop() == 0
    d.start()
    d.wait_ready(timeout=60)
    assert records_in(d) == len(json_run.records)
    errs = checks.compare_all_tables(d, json_run.ref)
    checks.fail_if(errs, "tables after a restart differ from the reference")
