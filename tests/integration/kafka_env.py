"""Kafka for the integration tests: a mock cluster, a Schema Registry
stand-in, and independent clients (Python's confluent_kafka, Apache Avro).

The cluster is librdkafka's mock cluster (rdkafka_mock.h) run as a broker
process (tests/kafka/mock_broker.c, $MOCK_BROKER_BIN): real Kafka protocol on
loopback, topics in memory. The registry is tests/kafka/registry_standin.py.
"""

import io
import json
import os
import subprocess
import time

import avro.io
import avro.schema
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import reference

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MOCK_BROKER = os.environ.get("MOCK_BROKER_BIN", os.path.join(REPO_ROOT, "build", "mock_broker"))
REGISTRY = os.path.join(REPO_ROOT, "tests", "kafka", "registry_standin.py")

GAMES, PLAYERS, ACTIVITY = reference.TOPIC_GAMES, reference.TOPIC_PLAYERS, reference.TOPIC_ACTIVITY
OUTPUT_TOPIC = "gaming.real-time-gaming-intelligence-platform"
# The mock cluster keeps the last 5 MB of record batches per partition:
# compressed batches keep whole test feeds.
PRODUCER_CONF = {"linger.ms": 5, "enable.idempotence": True, "compression.type": "lz4"}


class MockKafka:
    """One mock cluster process. Topics must be created before use."""

    def __init__(self, brokers=1):
        if not os.access(MOCK_BROKER, os.X_OK):
            pytest.fail("mock broker not built at %s (make build/mock_broker)" % MOCK_BROKER)
        self.proc = subprocess.Popen([MOCK_BROKER, str(brokers)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.bootstrap = self.proc.stdout.readline().strip()
        assert self.bootstrap, "the mock broker printed no bootstrap servers"

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer == "ok", "mock broker: %s -> %s" % (line, answer)

    def create_topic(self, name, partitions):
        self.command("topic %s %d" % (name, partitions))

    def down(self):
        self.command("down")

    def up(self):
        self.command("up")

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Registry:
    """The Schema Registry stand-in, optionally behind basic auth."""

    def __init__(self, auth=None):
        cmd = ["/usr/bin/python3", REGISTRY] + (["--auth", auth] if auth else [])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://"), "registry stand-in did not start"
        self.auth = auth

    def client(self):
        from confluent_kafka.schema_registry import SchemaRegistryClient
        conf = {"url": self.url}
        if self.auth:
            conf["basic.auth.user.info"] = self.auth
        return SchemaRegistryClient(conf)

    def close(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def kafka():
    k = MockKafka()
    try:
        yield k
    finally:
        k.close()


@pytest.fixture
def registry():
    r = Registry()
    try:
        yield r
    finally:
        r.close()


def create_source_topics(kafka, activity_partitions=1, output_partitions=6):
    """One partition per reference topic and, by default, for activity: the
    order the reference is computed in is then the order gamingd reads."""
    kafka.create_topic(GAMES, 1)
    kafka.create_topic(PLAYERS, 1)
    kafka.create_topic(ACTIVITY, activity_partitions)
    if output_partitions:
        kafka.create_topic(OUTPUT_TOPIC, output_partitions)


# ---------------------------------------------------------------------------
# source records


def records_of_lines(lines):
    """Generated file lines -> Kafka records (topic, key bytes or None, value
    bytes or None), in file order. Lines that are not a record envelope at
    all have no Kafka form and are left out; values, good and bad, are kept
    byte for byte as the file carries them."""
    out = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict) or obj.get("topic") not in reference.TOPICS:
            continue
        key = obj.get("key")
        if key is not None and not isinstance(key, str):
            continue
        if "value" in obj:
            v = obj["value"]
            value = None if v is None else json.dumps(v).encode()
        elif "payload" in obj and (obj["payload"] is None or isinstance(obj["payload"], str)):
            value = None if obj["payload"] is None else obj["payload"].encode("utf-8", "surrogateescape")
        else:
            continue
        out.append((obj["topic"], None if key is None else key.encode(), value))
    return out


def in_read_order(records):
    """gamingd reads the reference topics up to their ends before activity:
    the order a reference computation must follow when everything was
    produced before gamingd started."""
    refs = [r for r in records if r[0] != ACTIVITY]
    return refs + [r for r in records if r[0] == ACTIVITY]


def as_reference_lines(records, avro_values=None):
    """Kafka records -> envelopes the reference reads (payload as text)."""
    lines = []
    for topic, key, value in records:
        lines.append({"topic": topic, "key": None if key is None else key.decode(),
                      "payload": None if value is None else value.decode("utf-8", "surrogateescape")})
    return lines


def produce(bootstrap, records, chunks=1, pause=0.0, at_chunk=None, action=None):
    """Produces the records, in `chunks` pieces `pause` seconds apart when
    asked, calling action() once after chunk number at_chunk."""
    p = Producer(PRODUCER_CONF | {"bootstrap.servers": bootstrap})
    size = max(1, len(records) // chunks)
    for i in range(0, len(records), size):
        for topic, key, value in records[i:i + size]:
            while True:
                try:
                    p.produce(topic, value=value, key=key)
                    break
                except BufferError:
                    p.poll(0.1)
        p.poll(0)
        if at_chunk is not None and i // size == at_chunk:
            action()
        time.sleep(pause)
    left = p.flush(120)
    assert left == 0, "%d records not delivered to the mock cluster" % left


def murmur2_partition(key, partitions):
    """The partition Kafka's Java producer picks for key (bytes): its
    murmur2, made positive, modulo the partition count -- written from the
    Java client's Utils.murmur2, independent of gamingd and librdkafka."""
    m, h = 0x5BD1E995, (0x9747B28C ^ len(key)) & 0xFFFFFFFF
    whole = len(key) // 4 * 4
    for i in range(0, whole, 4):
        k = int.from_bytes(key[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest = key[whole:]
    if len(rest) >= 3:
        h ^= rest[2] << 16
    if len(rest) >= 2:
        h ^= rest[1] << 8
    if rest:
        h ^= rest[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def consume_all(bootstrap, topic, expect=None, timeout=60):
    """Every message of a topic, all partitions from the beginning, read up to
    the high-water marks (waiting up to timeout for `expect` messages)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "tests-reader", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    try:
        md = c.list_topics(topic, timeout=10)
        parts = list(md.topics[topic].partitions) if topic in md.topics else []
        deadline = time.time() + timeout
        msgs = []
        while True:
            c.assign([TopicPartition(topic, p, 0) for p in parts])
            msgs = []
            eof = set()
            while len(eof) < len(parts) and time.time() < deadline:
                m = c.poll(0.5)
                if m is None:
                    continue
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        eof.add(m.partition())
                    continue
                msgs.append(m)
            if expect is None or len(msgs) >= expect or time.time() >= deadline:
                return msgs
            time.sleep(0.3)
    finally:
        c.close()


# ---------------------------------------------------------------------------
# Avro: Apache Avro, independent of gamingd's encoder


def avro_decode(schema, data):
    """A Confluent-framed value -> (schema id, record)."""
    assert data[0] == 0, "not the Confluent wire format (magic byte %r)" % data[:1]
    sid = int.from_bytes(data[1:5], "big")
    rec = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[5:])))
    return sid, rec


def avro_encode(schema, schema_id, record):
    buf = io.BytesIO()
    buf.write(b"\0" + schema_id.to_bytes(4, "big"))
    avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def records_in(daemon):
    return sum(v for (name, _), v in daemon.metrics().items() if name == "gamingd_records_in_total")


def wait_applied(daemon, n, timeout=120):
    """Until the daemon has read and committed n records (the counters it
    publishes are the committed ones)."""
    deadline = time.time() + timeout
    got = 0
    while time.time() < deadline:
        if not daemon.running():
            pytest.fail("gamingd exited; log:\n" + daemon.log_tail())
        got = records_in(daemon)
        if got >= n:
            return got
        time.sleep(0.1)
    pytest.fail("gamingd read %d of %d records in %d s; log:\n%s" % (got, n, timeout, daemon.log_tail()))


def in_reference_order(got, expected):
    """Output records consumed from several partitions, put in the order of
    the reference's records (by activity_id; records of one activity_id share
    a key, so a partition, and keep their relative order)."""
    by_id = {}
    for rec in got:
        by_id.setdefault(rec.get("activity_id"), []).append(rec)
    ordered = []
    for exp in expected:
        lst = by_id.get(exp.get("activity_id"))
        if lst:
            ordered.append(lst.pop(0))
    ordered.extend(r for lst in by_id.values() for r in lst)  # extras, reported as a length difference
    return ordered
