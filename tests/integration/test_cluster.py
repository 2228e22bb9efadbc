"""Several instances on one Kafka cluster (SPEC §11), on the mock cluster.

Replicas: each instance reads activity in a consumer group of its own, so
each holds every record; its tables must equal the independent reference,
and losing one (kill -9) leaves the others answering in full. A group
named with -X group.id is shared: its members hold part of the records and
must say so -- /v1/cluster "partial", data queries 503 -- never answer with
part of the data (the reference tables, which every instance reads whole,
are served).
"""

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

import checks
import reference
from conftest import BASE_MS, DaemonFactory, read_lines
from kafka_env import (ACTIVITY, GAMES, PLAYERS, as_reference_lines, consume_all, create_source_topics,
                       in_read_order, murmur2_partition, produce, records_of_lines, wait_applied)
from kafka_env import kafka  # noqa: F401  (fixture)
from sse import Stream
from test_kafka import kcat_json_output
from test_tls import cert  # noqa: F401  (fixture)

PARTITIONS = 4
DEFAULT_GROUP_PREFIX = "gaming-intelligence-gamingd-"


def generated_records(tmp_path, events, seed, start=BASE_MS):
    path = str(tmp_path / ("gen-%d-%d.jsonl" % (seed, start)))
    subprocess.run([os.environ["GAMINGD_BIN"], "generate", "--out", path, "--events", str(events), "--seed",
                    str(seed), "--start", str(start)], check=True, capture_output=True)
    return records_of_lines(read_lines(path))


def activity_a_day_later(tmp_path, events, seed):
    """The activity records of the same generated data, a day later."""
    return [r for r in generated_records(tmp_path, events, seed, start=BASE_MS + 86_400_000) if r[0] == ACTIVITY]


def split(records, share):
    refs = [r for r in records if r[0] != ACTIVITY]
    act = [r for r in records if r[0] == ACTIVITY]
    cut = int(len(act) * share)
    return refs + act[:cut], act[cut:]


def reference_of(records):
    return reference.reference_for(as_reference_lines(in_read_order(records)))


def cluster(d):
    res = d.get("/v1/cluster")
    assert res.status == 200, res
    return res.json


def wait_state(d, states, timeout=60):
    deadline = time.time() + timeout
    c = cluster(d)
    while c["instances"][0]["state"] not in states and time.time() < deadline:
        time.sleep(0.2)
        c = cluster(d)
    assert c["instances"][0]["state"] in states, c
    return c


def wait_instances(d, n, timeout=30):
    """Until d lists n instances (itself and those announcing themselves)."""
    deadline = time.time() + timeout
    c = cluster(d)
    while len(c["instances"]) != n and time.time() < deadline:
        time.sleep(0.2)
        c = cluster(d)
    assert len(c["instances"]) == n, c
    return c


def test_replicas_each_hold_everything_and_one_killed_loses_nothing(tmp_path, kafka):
    create_source_topics(kafka, activity_partitions=PARTITIONS)
    records = generated_records(tmp_path, 6000, 81)
    first, rest = split(records, 0.5)
    produce(kafka.bootstrap, first)
    f = DaemonFactory(str(tmp_path))
    try:
        args = ["--brokers", kafka.bootstrap, "-X", "session.timeout.ms=6000"]
        # one replica writes the output topic, the other leaves it alone
        d1 = f("kafka", args=args + ["--output", "kafka", "--output-format", "json"])
        d2 = f("kafka", args=args + ["--output", "none"])
        ref_first = reference_of(first)
        views = []
        for d in (d1, d2):
            wait_applied(d, len(first))
            checks.fail_if(checks.compare_all_tables(d, ref_first), "a replica's tables after the first half")
            c = wait_state(d, ("running",))
            assert c["mode"] == "replica" and c["application_id"] == "gaming-intelligence-gamingd", c
            me = c["instances"][0]
            assert me["self"] is True and me["url"] == "http://127.0.0.1:%d" % d.port, me
            assert me["partitions"] == {GAMES: [0], PLAYERS: [0], ACTIVITY: list(range(PARTITIONS))}, me
            assert c["group"] == DEFAULT_GROUP_PREFIX + me["instance_id"], c
            m = d.metrics()
            assert m[("gamingd_owned_partitions", frozenset({("topic", ACTIVITY)}))] == PARTITIONS
            assert m[("gamingd_cluster_state", frozenset({("state", "running")}))] == 1
            views.append(c)
        assert views[0]["group"] != views[1]["group"], "two replicas in one group"
        for d, view in ((d1, views[1]), (d2, views[0])):  # each lists the other, through Kafka
            expected = dict(view["instances"][0], self=False)
            c = wait_instances(d, 2)
            deadline = time.time() + 10  # an announcement may be an interval older than the view
            while c["instances"][1:] != [expected] and time.time() < deadline:
                time.sleep(0.5)
                c = cluster(d)
            assert [i["self"] for i in c["instances"]] == [True, False], c
            assert c["instances"][1] == expected, c
        out = kcat_json_output(kafka.bootstrap, len(ref_first.outputs) + 1, timeout=5)
        assert sorted(r["activity_id"] for r in out) == sorted(o["activity_id"] for o in ref_first.outputs), \
            "the output topic holds each enriched record once"

        # one replica killed mid-stream: the other goes on and holds everything;
        # the killed one's announcements stop, and it is dropped from the list
        d1.kill9()
        produce(kafka.bootstrap, rest)
        ref_all = reference_of(records)
        wait_applied(d2, len(records))
        checks.fail_if(checks.compare_all_tables(d2, ref_all), "the surviving replica's tables")
        assert wait_instances(d2, 1)["instances"][0]["self"] is True
        assert d2.metrics()[("gamingd_cluster_instances", frozenset())] == 1

        # the killed one restarts on its data dir: same group, catches up exactly
        d1.start()
        wait_applied(d1, len(records))
        checks.fail_if(checks.compare_all_tables(d1, ref_all), "the restarted replica's tables")
        assert cluster(d1)["group"] == views[0]["group"], "the instance id did not survive the restart"

        # a new replica started from a copy of another's data dir gets an id
        # (and a group) of its own, and goes on from the copied state
        d2.stop()
        copy = os.path.join(str(tmp_path), "copy-of-data2")
        shutil.copytree(d2.data_dir, copy, ignore=shutil.ignore_patterns("gamingd.lock"))
        d3 = f("kafka", args=args + ["--output", "none"], data_dir=copy)
        d2.start()
        wait_applied(d3, len(records))
        checks.fail_if(checks.compare_all_tables(d3, ref_all), "the tables of the replica started from a copy")
        groups = [cluster(d)["group"] for d in (d1, d2, d3)]
        assert groups[1] == views[1]["group"] and len(set(groups)) == 3, groups
        assert "is a copy of instance" in open(d3.log_path, errors="replace").read()
    finally:
        f.cleanup()


def test_a_shared_group_is_partial_and_refuses_data_queries(tmp_path, kafka):
    """Members of one named group each hold some partitions: they say so and
    answer data queries 503 with Retry-After. One left alone holds every
    partition but not every record: it still says so."""
    create_source_topics(kafka, activity_partitions=PARTITIONS, output_partitions=0)
    records = generated_records(tmp_path, 4000, 83)
    produce(kafka.bootstrap, records)
    f = DaemonFactory(str(tmp_path))
    try:
        args = ["--brokers", kafka.bootstrap, "-X", "session.timeout.ms=6000",
                "-X", "group.id=gaming-intelligence-shared"]
        d1, d2 = f("kafka", args=args), f("kafka", args=args)
        deadline = time.time() + 60
        while time.time() < deadline:
            states = [cluster(d)["instances"][0] for d in (d1, d2)]
            if all(s["state"] == "partial" and s["partitions"][ACTIVITY] for s in states):
                break
            time.sleep(0.2)
        parts = [set(s["partitions"][ACTIVITY]) for s in states]
        # what each holds, seen from one (the other's announcement may be up
        # to one interval older than its assignment)
        held = {s["instance_id"]: p for s, p in zip(states, parts)}
        deadline = time.time() + 20
        listed = wait_instances(d1, 2)["instances"]
        while {i["instance_id"]: set(i["partitions"][ACTIVITY]) for i in listed} != held and time.time() < deadline:
            time.sleep(0.5)
            listed = cluster(d1)["instances"]
        assert {i["instance_id"]: set(i["partitions"][ACTIVITY]) for i in listed} == held, listed
        assert all(s["state"] == "partial" for s in states), states
        assert parts[0].isdisjoint(parts[1]) and parts[0] | parts[1] == set(range(PARTITIONS)), parts
        for d in (d1, d2):
            c = cluster(d)
            assert c["mode"] == "shared-group" and c["group"] == "gaming-intelligence-shared", c
            for path in ("/v1/tables/gaming_active_players_5min", "/v1/streams/gaming_real_time_intelligence_platform"):
                res = d.get(path)
                assert res.status == 503 and res.headers.get("Retry-After"), (path, res)
                assert "gaming-intelligence-shared" in res.json["message"], res
            res = d.request("/query-stream", method="POST",
                            body=json.dumps({"sql": "SELECT * FROM gaming_active_players_5min;"}))
            assert res.status == 503, res
            assert d.get("/v1/tables").status == 200  # what is served stays listed
            assert d.get("/v1/tables/gaming_games_table").status == 200  # every instance reads it whole
            assert d.metrics()[("gamingd_cluster_state", frozenset({("state", "partial")}))] == 1

        # one member leaves: the other takes every partition, but starts those
        # it never read at the offsets the leaver committed, so it misses the
        # records before them -- it stays partial, also across a restart
        assert d2.stop() == 0
        wait_instances(d1, 1, timeout=4)  # it said it was leaving: sooner than an announcement goes stale
        deadline = time.time() + 60
        while time.time() < deadline and len(cluster(d1)["instances"][0]["partitions"][ACTIVITY]) < PARTITIONS:
            time.sleep(0.2)
        c = wait_state(d1, ("partial",))
        assert sorted(c["instances"][0]["partitions"][ACTIVITY]) == list(range(PARTITIONS)), c
        time.sleep(1)  # past the checks of the partitions taken over
        res = d1.get("/v1/tables/gaming_active_players_5min")
        assert res.status == 503 and "misses" in res.json["message"], res.json
        d1.stop()
        d1.start()
        c = wait_state(d1, ("partial",))
        deadline = time.time() + 60
        while time.time() < deadline and len(cluster(d1)["instances"][0]["partitions"][ACTIVITY]) < PARTITIONS:
            time.sleep(0.2)
        time.sleep(1)
        assert cluster(d1)["instances"][0]["state"] == "partial"
        assert d1.get("/v1/tables/gaming_active_players_5min").status == 503
        assert d1.metrics()[("gamingd_missed_partitions", frozenset())] > 0

        # back in a group of its own, its data dir still misses those records
        d1.stop()
        d1.args = args[:-2]  # without -X group.id=
        d1.start()
        c = wait_state(d1, ("partial",))
        assert c["mode"] == "replica", c
        assert d1.get("/v1/tables/gaming_active_players_5min").status == 503
    finally:
        f.cleanup()


def test_cluster_of_a_standalone_instance(gamingd, generated):
    d = gamingd(generated(500, 85), args=["--advertised-url", "https://gamingd.example:8443", "--application-id", "team-a"])
    d.wait_ready()
    c = cluster(d)
    assert c == {"instances": [{"url": "https://gamingd.example:8443", "self": True,
                                "instance_id": c["instances"][0]["instance_id"], "partitions": {},
                                "state": "running"}],
                 "mode": "standalone", "application_id": "team-a", "group": None}, c
    assert len(c["instances"][0]["instance_id"]) == 16
    assert d.get("/v1/tables/gaming_active_players_5min").status == 200


def test_announcements_on_the_instances_topic_are_checked(tmp_path, kafka):
    """The instances topic is writable by whoever the brokers allow: what is
    not an announcement is ignored, and of one only its known members are
    listed, until it goes stale."""
    create_source_topics(kafka, output_partitions=0)
    f = DaemonFactory(str(tmp_path))
    try:
        d = f("kafka", args=["--brokers", kafka.bootstrap])
        wait_state(d, ("running",))
        topic = "gaming-intelligence-gamingd-instances"
        good = {"url": "http://other:8080", "state": "running", "partitions": {ACTIVITY: [0]}, "instance_id": "0d0d"}
        batch = [
            (topic, b"0a0a", b"{not json"),
            (topic, b"0b0b", json.dumps(dict(good, instance_id="0c0c")).encode()),  # not its key
            (topic, b"ZZZZ", json.dumps(dict(good, instance_id="ZZZZ")).encode()),  # not an instance id
            (topic, b"0e0e", json.dumps(dict(good, instance_id="0e0e", url="x" * 70000)).encode()),  # too big
            (topic, b"0d0d", json.dumps(dict(good, script="<b>", state="running")).encode()),
        ]
        # announced again and again, as instances do: it reads the topic from
        # its end once it follows it, which may be a few seconds after start
        deadline = time.time() + 30
        while len(cluster(d)["instances"]) < 2 and time.time() < deadline:
            produce(kafka.bootstrap, batch)
            time.sleep(1)
        c = wait_instances(d, 2, timeout=1)
        assert c["instances"][1] == dict(good, self=False), c
        wait_instances(d, 1, timeout=20)  # no more announcements: stale after 10 s
    finally:
        f.cleanup()


def tables_or_503(d, ref, seen):
    """The differences from the reference, or None when d answers 503 (a
    rebalance: it restores state rather than answer in part); seen counts
    the 503s."""
    try:
        return checks.compare_all_tables(d, ref)
    except AssertionError as e:
        if "-> HttpResult(503" not in str(e):
            raise
        seen[0] += 1
        return None


def wait_tables(d, ref, what, timeout=90):
    """Until d's tables equal the reference (rows from other instances come
    through the changelog, a commit interval or two behind). Returns how
    many times it answered 503 meanwhile."""
    deadline = time.time() + timeout
    seen = [0]
    errs = tables_or_503(d, ref, seen)
    while errs != [] and time.time() < deadline:
        if not d.running():
            raise AssertionError("gamingd exited; log:\n" + d.log_tail())
        time.sleep(0.5)
        errs = tables_or_503(d, ref, seen)
    errs = ["it answered 503 to the end"] if errs is None else errs
    checks.fail_if(errs[:3] + (["log:\n" + d.log_tail()] if errs else []), what)
    return seen[0]


def settled(ds, timeout=90):
    """Until every instance runs and holds some activity partitions."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        views = [cluster(d)["instances"][0] for d in ds]
        if all(v["state"] == "running" and v["partitions"][ACTIVITY] for v in views):
            break
        time.sleep(0.5)
    held = [set(v["partitions"][ACTIVITY]) for v in views]
    assert sum(len(h) for h in held) == PARTITIONS and set.union(*held) == set(range(PARTITIONS)), views
    return views


# the built-in tables with a route of their own (routes 1, 2, 3), keyed by
# their group key; every other table groups by game_id and is kept through
# the game_id route (route 0). A task is a route partition; the changelog
# has a partition per task, route 0's first.
OWN_ROUTE = ("gaming_genre_engagement", "gaming_player_segments_hourly", "gaming_data_quality_5min")
CHANGELOG_PARTITIONS = (1 + len(OWN_ROUTE)) * PARTITIONS
PRODUCER_LEN = 24  # a changelog record's producer: instance id and run, hex


def create_internal_topics(kafka, app="gaming-intelligence-gamingd"):
    """The internal topics of partitioned mode, as an operator whose brokers
    do not let applications create topics would (the mock cluster answers no
    CreateTopics, so gamingd would wait out its timeout for each)."""
    for route in ("game_id",) + OWN_ROUTE:
        kafka.create_topic("%s-repartition-%s" % (app, route), PARTITIONS)
    kafka.create_topic(app + "-changelog", CHANGELOG_PARTITIONS)
    kafka.create_topic(app + "-push", PARTITIONS)


def task_partition(route, partition):
    return route * PARTITIONS + partition


def route_of_topic(topic):
    """The route whose task a position of topic belongs to: activity's
    (whose holder routes it) is route 0's."""
    for i, table in enumerate(OWN_ROUTE):
        if topic.endswith("-repartition-" + table):
            return 1 + i
    return 0


def changelog_records(bootstrap, app="gaming-intelligence-gamingd"):
    """The changelog as (partition, kind, table, key, value): the layout
    ingest/route.c writes, read here byte by byte."""
    out = []
    for m in consume_all(bootstrap, app + "-changelog"):
        v = m.value()
        if v is None:
            continue
        kind, rest = chr(v[PRODUCER_LEN]), v[PRODUCER_LEN + 1:]
        if kind == "M":
            out.append((m.partition(), kind, None, None, rest))
            continue
        nul = rest.index(0)
        klen = int.from_bytes(rest[nul + 1:nul + 5], "big")
        key = rest[nul + 5:nul + 5 + klen]
        out.append((m.partition(), kind, rest[:nul].decode(), key, rest[nul + 5 + klen:]))
    return out


def group_key_columns(row_key):
    """A stored row's group key columns (after its 8-byte window start),
    each a 2-byte length and its bytes."""
    cols, g = [], row_key[8:]
    while g:
        n = int.from_bytes(g[:2], "big")
        cols.append(g[2:2 + n])
        g = g[2 + n:]
    return cols


def game_ids_of(records):
    """Every game id the records name, as bytes: the games' keys and the
    activities' game_id (games unknown to the join among them)."""
    ids = {k for t, k, _ in records if t == GAMES}
    for t, _, v in records:
        try:
            doc = json.loads(v) if t == ACTIVITY else None
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("game_id"), str):
            ids.add(doc["game_id"].encode())
    return ids


def check_changelog_layout(bootstrap, game_ids):
    """Each task's state on its own changelog partition: a row on the
    partition of the route partition its group's records take (murmur2 of
    the game id, or of the table's name, a NUL and the group key), a mark's
    lines naming only that partition's task, and a change of the catalog on
    every partition."""
    recs = changelog_records(bootstrap)
    rows, bad = [0] * CHANGELOG_PARTITIONS, []
    for part, kind, table, key, value in recs:
        if kind in "RSD":
            if table in OWN_ROUTE:
                route = 1 + OWN_ROUTE.index(table)
                want = task_partition(route, murmur2_partition(table.encode() + b"\0" + key[8:], PARTITIONS))
            else:
                ids = [c for c in group_key_columns(key) if c in game_ids]
                assert len(ids) == 1, (table, key)
                want = task_partition(0, murmur2_partition(ids[0], PARTITIONS))
            rows[part] += 1
            if part != want:
                bad.append((table, key, part, want))
        elif kind == "M":
            for line in value.decode().splitlines():
                words = line.split()
                if words[0] == "#applied":  # the route by its topic's name
                    task = task_partition(route_of_topic(words[1]), int(words[2]))
                else:
                    task = task_partition(route_of_topic(words[0]), int(words[1]))
                if task != part:
                    bad.append(("mark", line, part))
    assert not bad, bad[:5]
    creates = {}
    for part, kind, table, key, _ in recs:
        if kind == "C":
            creates.setdefault((table, key), set()).add(part)
    assert creates and all(parts == set(range(CHANGELOG_PARTITIONS)) for parts in creates.values()), creates
    # the game_id route's groups spread over all its partitions (data quality's one group: one)
    assert all(rows[task_partition(0, p)] for p in range(PARTITIONS)), rows


def metric(d, name):
    return d.metrics().get((name, frozenset()), 0)


def check_routed_reads(ds, ref):
    """Every instance answers for the rows of the tasks it holds and asks
    the holders of the others (docs/scaling.md): a table read in small
    pages, each page's rows merged from the owners, gives every row once; a
    pull for one game gives that game's rows whichever instance it is sent
    to; a pull with no range gives the newest window of the reference's
    rows; ORDER BY with LIMIT gives the reference's top rows. Only the
    instance asked answers the client: the rows of tasks it does not hold
    come from their owners, which the metrics show."""
    route0, own = "gaming_hourly_player_game_stats", "gaming_genre_engagement"  # game_id second; a route of its own
    exp0 = ref.table_rows(route0)
    games = sorted({r["game_id"] for r in exp0})[:4]
    exp_own = ref.table_rows(own)
    genres = sorted({r["game_genre"] for r in exp_own})
    revenue = sorted((r["total_revenue"] for r in ref.table_rows("gaming_revenue_analytics")), reverse=True)[:5]
    for i, d in enumerate(ds):
        before = metric(d, "gamingd_peer_rows_total")
        for t in (route0, own):
            rows, pages = d.fetch_all(t, page=7)
            assert len(pages) > 2, (t, len(pages))
            checks.fail_if(checks.compare_table(t, rows, ref.table_rows(t)), "instance %d's %s in pages of 7" % (i, t))
        for g in games:
            rows, _ = d.fetch_all(route0, extra=[("game_id", g)])
            checks.fail_if(checks.compare_table(route0, rows, [r for r in exp0 if r["game_id"] == g]),
                           "instance %d's %s for game %s" % (i, route0, g))
        for genre in genres:
            rows, _ = d.fetch_all(own, extra=[("game_genre", genre)])
            checks.fail_if(checks.compare_table(own, rows, [r for r in exp_own if r["game_genre"] == genre]),
                           "instance %d's %s for genre %s" % (i, own, genre))
        # no range: the newest window any owner has rows in, then that window from every owner
        for t, extra, exp in ((route0, [], exp0), (own, [("game_genre", genres[-1])],
                                                   [r for r in exp_own if r["game_genre"] == genres[-1]])):
            newest = max(r["window_start"] for r in exp)
            r = d.get("/v1/tables/" + t, extra + [("limit", "10000")])
            assert r.status == 200 and "next_cursor" not in r.json, r
            checks.fail_if(checks.compare_table(t, r.json["rows"], [x for x in exp if x["window_start"] == newest]),
                           "instance %d's latest window of %s %s" % (i, t, extra))
        r = d.get("/v1/tables/gaming_revenue_analytics", [("from", "0"), ("to", "9999999999999"),
                                                          ("order_by", "total_revenue"), ("desc", "true"),
                                                          ("limit", "5")])
        assert r.status == 200, r
        got = [row["total_revenue"] for row in r.json["rows"]]
        assert len(got) == len(revenue) and all(abs(a - b) < 1e-6 for a, b in zip(got, revenue)), (got, revenue)
        assert metric(d, "gamingd_peer_rows_total") > before, "instance %d answered without asking the others" % i
        assert metric(d, "gamingd_peer_refusals_total") == 0


def check_changelog_reading(ds, timeout=30):
    """Each instance reads of the changelog the partitions of the tasks it
    holds, of the tasks it keeps warm for another owner (--standby-replicas,
    1 by default) and partition 0 (every catalog change) -- not the whole
    topic -- and every task's partition is read by its owner and by at least
    one other instance, ready to take it over (the announcements settle
    within a few seconds of a rebalance)."""
    app = "gaming-intelligence-gamingd"
    route_topics = ["%s-repartition-%s" % (app, r) for r in ("game_id",) + OWN_ROUTE]
    deadline = time.time() + timeout
    while True:
        views = [cluster(d)["instances"][0] for d in ds]
        reading = [set(v["partitions"].get(app + "-changelog", [])) for v in views]
        held = [{task_partition(r, p) for r, topic in enumerate(route_topics) for p in v["partitions"].get(topic, [])}
                for v in views]
        problems = ["instance %d holds tasks %s it does not read" % (i, sorted(held[i] - reading[i]))
                    for i in range(len(ds)) if not held[i] <= reading[i]]
        problems += ["instance %d reads every partition" % i for i in range(len(ds))
                     if len(reading[i]) == CHANGELOG_PARTITIONS]
        problems += ["instance %d does not read partition 0" % i for i in range(len(ds)) if 0 not in reading[i]]
        problems += ["task %d is read by %d instance(s)" % (c, sum(c in r for r in reading))
                     for c in range(CHANGELOG_PARTITIONS) if sum(c in r for r in reading) < 2]
        problems += ["tasks held: %s" % [sorted(h) for h in held]] if set.union(*held) != set(
            range(CHANGELOG_PARTITIONS)) or sum(map(len, held)) != CHANGELOG_PARTITIONS else []
        if not problems:
            return reading
        assert time.time() < deadline, (problems, reading)
        time.sleep(0.5)


def partitioned_feed(kafka, tmp_path, events, seed):
    """The topics of partitioned mode, and generated records of which the
    reference topics' are produced now, the activity left to the test."""
    create_source_topics(kafka, activity_partitions=PARTITIONS, output_partitions=4)
    create_internal_topics(kafka)
    records = generated_records(tmp_path, events, seed)
    refs = [r for r in records if r[0] != ACTIVITY]
    produce(kafka.bootstrap, refs)
    return records, refs, [r for r in records if r[0] == ACTIVITY]


def test_partitioned_instances_share_the_work_and_each_answers_for_all(tmp_path, kafka):
    """--mode partitioned: three instances of one application id split the
    activity partitions and every table by its key (routes); each keeps the
    state of its own tasks and of those it stands by for, and answers the
    rest by asking their owners: every table, asked of any of them, equals
    the single-instance reference. One is killed with -9 mid-way:
    the survivors take its partitions over, their state restored from the
    changelog, and still equal the reference after the rest of the records;
    a fourth joins, and the killed one comes back, each answering in full."""
    records, refs, act = partitioned_feed(kafka, tmp_path, 6000, 87)
    f = DaemonFactory(str(tmp_path))
    try:
        args = ["--brokers", kafka.bootstrap, "--mode", "partitioned", "-X", "session.timeout.ms=6000",
                "--output", "kafka", "--output-format", "json"]
        ds = [f("kafka", args=args) for _ in range(3)]
        settled(ds)
        produce(kafka.bootstrap, act[:3000])
        ref_first = reference_of(refs + act[:3000])
        for i, d in enumerate(ds):
            wait_tables(d, ref_first, "instance %d's tables" % i)
        check_routed_reads(ds, ref_first)
        check_changelog_reading(ds)
        d = ds[1]
        assert cluster(d)["mode"] == "partitioned" and cluster(d)["group"] == "gaming-intelligence-gamingd"
        # a table made mid-stream: it counts from about here, the same on every instance, through
        # the kill -9 and for the instances that join later
        status, doc = ksql(d, "CREATE TABLE t AS SELECT game_id, COUNT(*) AS n FROM gaming_activity_enriched "
                              "GROUP BY game_id;")
        assert status == 200, doc

        ds[0].kill9()
        produce(kafka.bootstrap, act[3000:4500])
        ref_more = reference_of(refs + act[:4500])
        for i in (1, 2):
            wait_tables(ds[i], ref_more, "surviving instance %d's tables" % i, timeout=120)
        ds.append(f("kafka", args=args))  # a fourth joins
        ds[0].start()  # and the killed one comes back on its data dir
        settled(ds)
        produce(kafka.bootstrap, act[4500:])
        ref_all = reference_of(records)
        for i, d in enumerate(ds):
            wait_tables(d, ref_all, "instance %d's tables at the end" % i)
        check_changelog_reading(ds)
        m = ds[1].metrics()
        assert m[("gamingd_restore_remaining", frozenset())] == 0 and ("gamingd_changelog_lag", frozenset()) in m
        roles = {dict(labels).get("role") for name, labels in m if name == "gamingd_task_lag"}
        assert roles == {"owner", "standby"}, roles
        t_rows = [sorted((r["game_id"], r["n"]) for r in d.fetch_all("t")[0]) for d in ds]
        assert t_rows[0] and all(rows == t_rows[0] for rows in t_rows), t_rows
        # every enriched record went out exactly once, with figures equal to
        # a single instance's where no rebalance moved its group mid-way
        out = kcat_json_output(kafka.bootstrap, len(ref_all.outputs), timeout=20)
        got = sorted(o["activity_id"] for o in out)
        assert len(set(got)) == len(ref_all.outputs) and set(got) == {o["activity_id"] for o in ref_all.outputs}
        check_changelog_layout(kafka.bootstrap, game_ids_of(records))
    finally:
        f.cleanup()


def test_partitioned_instances_ask_each_other_with_the_instance_key(tmp_path, kafka):
    """With --api-keys, an instance asks another for rows with the key of
    --instance-key (scope instance), never its caller's: a user's key, even
    an admin's, is refused on that route, and an instance given no instance
    key cannot ask, so it answers 503 with Retry-After -- never the part of
    the answer it holds -- while the one that has the key answers whole."""
    instance_key = "k-instance-4d1e0c7b"
    keys, key_file = tmp_path / "keys", tmp_path / "instance-key"
    keys.write_text("k-reader read,pii\nk-admin admin\nsha256:%s instance\n"
                    % hashlib.sha256(instance_key.encode()).hexdigest())
    key_file.write_text(instance_key + "\n")
    records, refs, act = partitioned_feed(kafka, tmp_path, 2000, 91)
    f = DaemonFactory(str(tmp_path))
    try:
        args = ["--brokers", kafka.bootstrap, "--mode", "partitioned", "-X", "session.timeout.ms=6000",
                "--api-keys", str(keys)]
        ds = [f("kafka", args=args + ["--instance-key", str(key_file)]), f("kafka", args=args)]
        for d in ds:
            d.key = "k-reader"
        settled(ds)
        produce(kafka.bootstrap, act)
        ref = reference_of(records)
        wait_tables(ds[0], ref, "the tables of the instance with the key")
        r = ds[1].get("/v1/tables/gaming_active_players_5min", [("from", "0"), ("to", "9999999999999")])
        assert r.status == 503 and r.headers.get("Retry-After"), r
        assert "another instance" in r.json["message"], r
        ask = json.dumps({"table": "gaming_active_players_5min", "tasks": [], "latest": False, "from": 0, "to": 1,
                          "keys": [None]})
        for key, status in (("k-reader", 403), ("k-admin", 403), ("nonsense", 401), (instance_key, 200)):
            r = ds[0].request("/v1/internal/rows", method="POST", body=ask,
                              headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
            assert r.status == status, (key, r)
        # a task the other instance holds, which this one keeps warm: it answers for it only when
        # the asker allows a staleness (--max-staleness), and once it has read all of its partition
        route0 = "gaming-intelligence-gamingd-repartition-game_id"
        task = min(set(range(PARTITIONS)) - set(cluster(ds[0])["instances"][0]["partitions"][route0]))
        warm = {"table": "gaming_active_players_5min", "tasks": [task], "latest": False, "from": 0, "to": 1,
                "keys": [None]}

        def asked(body):
            return ds[0].request("/v1/internal/rows", method="POST", body=json.dumps(body),
                                 headers={"Authorization": "Bearer " + instance_key,
                                          "Content-Type": "application/json"}).status
        assert asked(warm) == 409
        wait_for(lambda: asked(dict(warm, staleness=0)) == 200, "the standby answering within staleness 0")
        assert asked(dict(warm, staleness=-1)) == 400
        r = ds[0].request("/v1/internal/rows", method="POST", body=b"{\"table\": 7}",
                          headers={"Authorization": "Bearer " + instance_key, "Content-Type": "application/json"})
        assert r.status == 400, r
        assert metric(ds[1], "gamingd_peer_refusals_total") > 0
    finally:
        f.cleanup()


def test_partitioned_instances_ask_each_other_over_https(tmp_path, kafka, cert):  # noqa: F811
    """With --tls-cert, instances advertise https:// URLs and ask each other
    over TLS, trusting the chain of their own certificate (a self-signed one
    here): every table asked of either is whole, rows coming from the other."""
    records, refs, act = partitioned_feed(kafka, tmp_path, 3000, 89)
    ref = reference_of(records)
    f = DaemonFactory(str(tmp_path))
    try:
        args = ["--brokers", kafka.bootstrap, "--mode", "partitioned", "--output", "none",
                "--tls-cert", cert[0], "--tls-key", cert[1]]
        a, b = f("kafka", args=args), f("kafka", args=args)
        settled([a, b])
        assert all(i["url"].startswith("https://127.0.0.1:") for i in cluster(a)["instances"]), cluster(a)
        produce(kafka.bootstrap, act)
        for d in (a, b):
            wait_tables(d, ref, "instance %d's tables" % d.port)
            assert metric(d, "gamingd_peer_rows_total") > 0 and metric(d, "gamingd_peer_refusals_total") == 0
    finally:
        f.cleanup()


def caught_up(d):
    """Whether d has read every changelog partition it holds or keeps warm
    to its end (each task's gamingd_task_lag is 0)."""
    lags = [v for (name, _), v in d.metrics().items() if name == "gamingd_task_lag"]
    return bool(lags) and not any(lags)


def queries_while_tasks_move(tmp_path, kafka, extra_args):
    """Two instances take every record; then, while queries keep going to
    every live instance, a third joins (tasks move to it) and an owner is
    killed with -9. The records were all applied before, so every answer
    must be the whole table, equal to the reference, or a 503 with
    Retry-After: never the part of it the instance asked could gather.
    Returns how many of each came, and the survivors' metrics."""
    records, refs, act = partitioned_feed(kafka, tmp_path, 1500, 93)
    f = DaemonFactory(str(tmp_path))
    try:
        args = ["--brokers", kafka.bootstrap, "--mode", "partitioned", "-X", "session.timeout.ms=6000"] + extra_args
        ds = [f("kafka", args=args) for _ in range(2)]
        settled(ds)
        produce(kafka.bootstrap, act)
        ref = reference_of(records)
        for i, d in enumerate(ds):
            wait_tables(d, ref, "instance %d's tables" % i)
        table = "gaming_hourly_player_game_stats"
        expected = ref.table_rows(table)
        seen = {"whole": 0, "503": 0}
        wrong = []
        live = list(ds)
        stop = threading.Event()
        phase = ["join"]

        def ask_all():
            while not stop.is_set():
                for d in list(live):
                    try:
                        r = d.get("/v1/tables/" + table, [("from", "0"), ("to", "9999999999999"), ("limit", "10000")],
                                  timeout=20)
                    except OSError:
                        continue  # the one being killed
                    if r.status == 503 and r.headers.get("Retry-After"):
                        seen["503"] += 1
                        key = "%s %d %s" % (phase[0], d.port, r.json.get("message", "")[:80])
                        seen[key] = seen.get(key, 0) + 1
                    elif r.status != 200:
                        wrong.append(repr(r))
                    else:
                        errs = checks.compare_table(table, r.json["rows"], expected)
                        if errs:
                            wrong.append(errs[:3])
                        else:
                            seen["whole"] += 1

        asker = threading.Thread(target=ask_all)
        asker.start()
        try:
            ds.append(f("kafka", args=args))  # a third joins: tasks move to it
            settled(ds)
            wait_for(lambda: all(caught_up(d) for d in ds), "every task's standbys reading to its end")
            live.append(ds[2])
            live.remove(ds[0])
            phase[0] = "kill"
            ds[0].kill9()  # an owner is lost: its tasks have no owner until the session times out
            wait_for(lambda: sum(len(cluster(d)["instances"][0]["partitions"][ACTIVITY]) for d in ds[1:]) == PARTITIONS,
                     "the survivors taking the lost one's partitions over")
            settled(ds[1:])
            time.sleep(3)
        finally:
            stop.set()
            asker.join()
        assert not wrong, wrong[:3]
        for i, d in enumerate(ds[1:]):
            wait_tables(d, ref, "survivor %d's tables" % i)
        return seen, [d.metrics() for d in ds[1:]]
    finally:
        f.cleanup()


def test_partitioned_queries_while_tasks_move_are_whole_or_503(tmp_path, kafka):
    """Owners only (no --max-staleness): whole or 503 while tasks move."""
    seen, _ = queries_while_tasks_move(tmp_path, kafka, [])
    assert seen["whole"] > 0, seen


def test_partitioned_standbys_answer_while_tasks_move(tmp_path, kafka):
    """With --max-staleness 0, a task whose owner cannot answer -- killed
    with -9 and not yet replaced, or giving the task up to an instance
    that is still restoring it -- is answered by an instance keeping it
    warm (a standby, or the owner that gave it up) that has read all of its
    changelog partition: every answer is whole, equal to the reference, and
    none is a 503."""
    seen, metrics = queries_while_tasks_move(tmp_path, kafka, ["--max-staleness", "0"])
    assert seen["whole"] > 0 and seen["503"] == 0, seen
    assert sum(m.get(("gamingd_standby_reads_total", frozenset()), 0) for m in metrics) > 0


PLAYER_COUNTS_SQL = ("CREATE TABLE player_counts AS SELECT player_id, COUNT(*) AS n "
                     "FROM gaming_real_time_intelligence_platform WINDOW TUMBLING (SIZE 1 HOUR) "
                     "GROUP BY player_id EMIT CHANGES;")
PLAYER_ROUTE = "gaming-intelligence-gamingd-repartition-player_counts"


def player_counts_1h(ref, before=None):
    """PLAYER_COUNTS_SQL's answer from the reference: the records per player
    and hour, gaming_hourly_player_game_stats' counts summed over the games;
    less what `before` (another such answer) counted already."""
    out = {}
    for r in ref.table_rows("gaming_hourly_player_game_stats"):
        k = (r["player_id"], r["window_start"])
        out[k] = out.get(k, 0) + r["total_sessions_1h"]
    before = before or {}
    return {k: n - before.get(k, 0) for k, n in out.items() if n > before.get(k, 0)}


def wait_counts(ds, table, key, column, expected, timeout=90):
    for d in ds:
        deadline = time.time() + timeout
        got = counts_of(d, table, key, column)
        while got != expected and time.time() < deadline:
            time.sleep(0.5)
            got = counts_of(d, table, key, column)
        assert got == expected, (d.port, got and len(got), len(expected), sorted(set(got or {}) ^ set(expected))[:5],
                                 [(k, got[k], expected[k]) for k in expected if got and k in got and got[k] != expected[k]][:5])


def test_partitioned_table_of_another_grouping_is_made_and_dropped_while_running(tmp_path, kafka):
    """--mode partitioned: a table grouped by player_id, made while running,
    gets a route of its own on every instance -- its topic read in the
    group from then on, its tasks shared out -- and counts every record after
    it, asked of any instance, equal to the reference. An owner is killed
    with -9 and another instance joins, setting the route up from the
    changelog alone: the tasks restored, every instance answers the same. DROP
    stops it everywhere; made again under its name, it takes its route up
    again and counts only the records after it."""
    records, refs, act = partitioned_feed(kafka, tmp_path, 3000, 95)
    kafka.create_topic(PLAYER_ROUTE, PARTITIONS)  # as an operator would: the mock makes no topics
    ref = reference_of(records)
    expected = player_counts_1h(ref)
    f = DaemonFactory(str(tmp_path))
    try:
        args = ["--brokers", kafka.bootstrap, "--mode", "partitioned", "--output", "none", "-X",
                "session.timeout.ms=6000"]
        a, b, c = (f("kafka", args=args) for _ in range(3))
        settled([a, b, c])
        status, doc = ksql(b, PLAYER_COUNTS_SQL)
        assert status == 200, doc
        wait_for(lambda: all("player_counts" in names_of(d) for d in (a, b, c)), "made everywhere")
        produce(kafka.bootstrap, act)
        wait_counts((a, b, c), "player_counts", "player_id", "n", expected)
        # the route's tasks are held once each across the instances
        held = [set(cluster(d)["instances"][0]["partitions"].get(PLAYER_ROUTE, [])) for d in (a, b, c)]
        assert sum(map(len, held)) == PARTITIONS and set.union(*held) == set(range(PARTITIONS)), held
        # an owner lost: its tasks of the new route restored from the changelog by the others
        c.kill9()
        d = f("kafka", args=args)  # learns of the table, and its route, from the changelog alone
        settled([a, b, d])
        wait_counts((a, b, d), "player_counts", "player_id", "n", expected)
        assert "route of its own, " + PLAYER_ROUTE in open(d.log_path, errors="replace").read()
        held = [set(cluster(x)["instances"][0]["partitions"].get(PLAYER_ROUTE, [])) for x in (a, b, d)]
        assert sum(map(len, held)) == PARTITIONS and set.union(*held) == set(range(PARTITIONS)), held

        status, doc = ksql(d, "DROP TABLE player_counts;")
        assert status == 200, doc
        wait_for(lambda: not any("player_counts" in names_of(x) for x in (a, b, d)), "dropped everywhere")
        for x in (a, b, d):
            assert x.get("/v1/tables/player_counts").status == 404
        # made again: the idle route taken up again, counting only what comes after
        status, doc = ksql(a, PLAYER_COUNTS_SQL)
        assert status == 200, doc
        wait_for(lambda: all("player_counts" in names_of(x) for x in (a, b, d)), "made again everywhere")
        later = activity_a_day_later(tmp_path, 3000, 95)
        produce(kafka.bootstrap, later)
        again = player_counts_1h(reference_of(records + later), before=expected)
        assert sum(again.values()) > 1000, again
        wait_counts((a, b, d), "player_counts", "player_id", "n", again)
    finally:
        f.cleanup()


@pytest.mark.parametrize("game_name_bytes,username_bytes", [(900_000, 0), (999_000, 600_000)])
def test_partitioned_huge_route_records_are_applied_among_the_others(tmp_path, kafka, game_name_bytes,
                                                                     username_bytes):
    """Route records travel in batches, a message per route partition. A
    game named with 900 KB (its record under --max-record-bytes) makes each
    of its activity's records on the routes that carry the name (the one
    keyed by game_id, data quality's) about that large, past the size at
    which a batch goes (256 KiB): each goes alone, and every record, the
    huge game's among the others', is applied exactly. With a player named
    with 600 KB besides, those records are past what a Kafka producer sends
    by default (librdkafka's message.max.bytes, 1,000,000); gamingd's
    producer sends four times --max-record-bytes, and they are applied too.
    Three such records: the mock cluster keeps ~5 MB a partition."""
    create_source_topics(kafka, activity_partitions=PARTITIONS, output_partitions=4)
    create_internal_topics(kafka)
    records = generated_records(tmp_path, 1500, 91)
    games = [json.loads(v) for t, _, v in records if t == GAMES and v]
    huge = dict(games[0], game_id="game_huge", game_name="N" * game_name_bytes)
    records.insert(0, (GAMES, b"game_huge", json.dumps(huge).encode()))
    if username_bytes:
        players = [json.loads(v) for t, _, v in records if t == PLAYERS and v]
        huge_player = dict(players[0], player_id="player_huge", username="U" * username_bytes)
        records.insert(0, (PLAYERS, b"player_huge", json.dumps(huge_player).encode()))
    moved = 0
    for i, (topic, key, value) in enumerate(records):
        if topic == ACTIVITY and moved < 3 and i % 200 == 0:
            act = json.loads(value)
            if isinstance(act, dict) and isinstance(act.get("game_id"), str):
                act["game_id"] = "game_huge"
                if username_bytes:
                    act["player_id"] = "player_huge"
                records[i] = (topic, key, json.dumps(act).encode())
                moved += 1
    assert moved == 3
    produce(kafka.bootstrap, [r for r in records if r[0] != ACTIVITY])
    f = DaemonFactory(str(tmp_path))
    try:
        d = f("kafka", args=["--brokers", kafka.bootstrap, "--mode", "partitioned", "--output", "none"])
        settled([d])
        produce(kafka.bootstrap, [r for r in records if r[0] == ACTIVITY])
        ref = reference_of(records)
        assert sum(1 for o in ref.outputs if o.get("game_id") == "game_huge") == 3
        wait_tables(d, ref, "the instance's tables")
        assert d.metrics()[("gamingd_kafka_delivery_failures_total", frozenset())] == 0
        assert d.proc.poll() is None
    finally:
        f.cleanup()


ENRICHED = "gaming_real_time_intelligence_platform"


def query_stream_rows(port, sql, n, timeout=60):
    """The first n rows of a SQL push query (/query-stream, delimited)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", "/query-stream", body=json.dumps({"sql": sql}))
    r = c.getresponse()
    assert r.status == 200, (r.status, r.read())
    header = json.loads(r.readline())
    rows = [json.loads(r.readline()) for _ in range(n)]
    c.close()
    return header, rows


def take_all(stream, n, deadline_s, kinds=("message",)):
    """n events, waiting up to deadline_s, through silences as long as a
    rebalance (which pauses the events of the partitions it moves)."""
    return stream.take(n, deadline_s=deadline_s, kinds=kinds, silence_s=deadline_s)


def last_change_per_group(table, events):
    """Each group's row after its last change, and how many changes it had."""
    last, counts = {}, {}
    for ev in events:
        row = ev.json
        ident = reference.row_identity(table, row)
        last[ident] = row
        counts[ident] = counts.get(ident, 0) + 1
    return list(last.values()), counts


def test_partitioned_push_streams_are_whole_and_the_same_on_every_instance(tmp_path, kafka):
    """--mode partitioned: each instance makes the push events of its own
    partitions, and every instance pushes all of them, with the same ids:
    the enriched records, the activity records, each windowed table's row
    after each change, and SQL push queries over them -- whichever instance
    a subscriber asks; and a Last-Event-ID from one resumes on another that
    had no subscriber of that stream (a client failing over). The push
    topic's partitions share the streams: each stream on the partition its
    name picks, its ids its offsets there + 1. An instance started later
    tells a Last-Event-ID from before it started that events may be
    missing."""
    records, refs, act = partitioned_feed(kafka, tmp_path, 3000, 89)
    ref = reference_of(records)
    n = len(ref.outputs)
    windowed = [t for t in reference.ALL_TABLES if reference.is_windowed(t)]
    # where HAVING hides a row until its total passes a bound, how many
    # changes show depends on the order the records came in; the others'
    # changes per group are exact
    exact = [t for t in windowed if not reference.WINDOWED[t].get("having")]
    [having] = [t for t in windowed if t not in exact]
    f = DaemonFactory(str(tmp_path))
    try:
        # the default session timeout: no instance is killed here, and a short one lets a busy
        # moment on two cores look like a lost member (a rebalance, which only delays events)
        args = ["--brokers", kafka.bootstrap, "--mode", "partitioned", "--output", "none", "--push-buffer", "65536"]
        a, b = f("kafka", args=args), f("kafka", args=args)
        settled([a, b])
        a_enriched = Stream(a.port, ENRICHED)
        a_tables = Stream(a.port, ",".join(exact))
        b_having = Stream(b.port, having)
        b_activity = Stream(b.port, "gaming_player_activity_stream")
        assert all(s.status == 200 for s in (a_enriched, a_tables, b_having, b_activity))
        # each says what it listens to on the push topic; the other produces from then on
        time.sleep(3)
        done = {}
        sql = threading.Thread(target=lambda: done.update(q=query_stream_rows(
            b.port, "SELECT activity_id, game_id FROM gaming_activity_enriched EMIT CHANGES;", n)))
        sql.start()
        time.sleep(3)
        produce(kafka.bootstrap, act)
        got_a = take_all(a_enriched, n, 90)
        ids = [o["activity_id"] for o in ref.outputs]
        mine = [e.json["activity_id"] for e in got_a]
        assert len(mine) == n and sorted(mine) == sorted(ids), (len(mine), n)
        a_ids = [int(e.id) for e in got_a]
        assert a_ids == sorted(a_ids) and len(set(a_ids)) == n
        activity = take_all(b_activity, n, 30)
        assert sorted(e.json["activity_id"] for e in activity) == sorted(ids)

        expected_changes = sum(1 for t, _, _ in ref.changes if t in exact)
        changes = take_all(a_tables, expected_changes, 60, kinds=exact)
        by_table = {t: [e for e in changes if e.event == t] for t in exact}
        # all records are applied by now: the rest of these come at once
        by_table[having] = b_having.take(10 ** 6, deadline_s=30, silence_s=5)
        errs = []
        for t in windowed:
            evs = by_table[t]
            rows, counts = last_change_per_group(t, evs)
            errs += checks.compare_table(t, rows, ref.table_rows(t), check_wallclock=False)
            exp_counts = {}
            for name, _, row in ref.changes:
                if name == t:
                    ident = reference.row_identity(t, row)
                    exp_counts[ident] = exp_counts.get(ident, 0) + 1
            if counts != exp_counts and t in exact:
                errs.append("%s: changes per group differ from the reference's" % t)
        checks.fail_if(errs, "the windowed tables' push streams")

        sql.join(60)
        header, rows = done["q"]
        assert header["columnNames"] == ["ACTIVITY_ID", "GAME_ID"]
        assert sorted(r[0] for r in rows) == sorted(ids)

        # a Last-Event-ID from instance a resumes on instance b, which no one
        # subscribed to the enriched stream on: the same events, the same ids
        k = n // 2
        resumed = Stream(b.port, ENRICHED, headers={"Last-Event-ID": str(a_ids[k])})
        more = take_all(resumed, n - k - 1, 30)
        assert [int(e.id) for e in more] == a_ids[k + 1:]
        assert [e.data for e in more] == [e.data for e in got_a[k + 1:]]
        for s in (a_enriched, a_tables, b_having, b_activity, resumed):
            s.close()
        assert b.metrics()[("gamingd_internal_bytes_total", frozenset({("topic", "push")}))] > 0

        # each stream on the partition Kafka's partitioner gives its name,
        # the streams over more than one, an event's id its offset there + 1
        events = [m for m in consume_all(kafka.bootstrap, "gaming-intelligence-gamingd-push")
                  if m.value()[:1] == b"E"]
        used = set()
        for m in events:
            name = m.value()[1:].split(b"\n", 1)[0]
            assert m.key() == name and m.partition() == murmur2_partition(name, PARTITIONS), (name, m.partition())
            used.add(m.partition())
        assert len(used) > 1, used
        assert [m.offset() + 1 for m in events if m.key() == ENRICHED.encode()] == a_ids

        # an instance started now has none of those events: it says so
        c = f("kafka", args=args)
        settled([a, b, c])
        late = Stream(c.port, ENRICHED, headers={"Last-Event-ID": str(a_ids[k])})
        [notice] = late.take(1, deadline_s=30, kinds=("replay_unavailable",))
        assert notice.json["last_event_id"] == a_ids[k], notice
        late.close()
    finally:
        f.cleanup()


COUNTS_SQL = ("CREATE TABLE game_counts AS SELECT game_id, COUNT(*) AS total_activities "
              "FROM gaming_real_time_intelligence_platform WINDOW TUMBLING (SIZE 5 MINUTES) GROUP BY game_id "
              "EMIT CHANGES;")
PURCHASES_SQL = ("CREATE STREAM purchases AS SELECT activity_id, game_id FROM gaming_real_time_intelligence_platform "
                 "WHERE activity_type = 'purchase' EMIT CHANGES;")


def ksql(d, text):
    res = d.request("/ksql", method="POST", body=json.dumps({"ksql": text}))
    return res.status, res.json


def listed(d, table, stream):
    tables = {t["name"] for t in d.get("/v1/tables").json["tables"]}
    streams = {s["name"] for s in d.get("/v1/streams").json["streams"]}
    return table in tables and stream in streams


def names_of(d):
    """The tables and streams d lists."""
    return ({t["name"] for t in d.get("/v1/tables").json["tables"]} |
            {s["name"] for s in d.get("/v1/streams").json["streams"]})


def ctas_query(d, table):
    """The id of the running persistent query keeping table on d, or None."""
    status, doc = ksql(d, "SHOW QUERIES;")
    assert status == 200, doc
    ids = [q["id"] for q in doc[0]["queries"]
           if q["id"].upper().startswith("CTAS_%s_" % table.upper()) and q["state"] == "RUNNING"]
    return ids[0] if ids else None


def wait_for(ok, what, timeout=60):
    deadline = time.time() + timeout
    while not ok():
        assert time.time() < deadline, "not " + what
        time.sleep(0.2)


def counts_of(d, table, key, column):
    """A table's rows as {(key, window_start): column}, or None while d
    answers 503 (restoring, or a route it has not set up yet)."""
    res = d.get("/v1/tables/" + table, [("from", "0"), ("to", "9999999999999"), ("limit", "10000")])
    if res.status == 503:
        return None
    assert res.status == 200 and "next_cursor" not in res.json, res
    return {(r[key], r["window_start"]): r[column] for r in res.json["rows"]}


def game_counts(d):
    """game_counts as {(game_id, window_start): total}, or None."""
    return counts_of(d, "game_counts", "game_id", "total_activities")


def counts_5min(ref):
    """COUNTS_SQL's answer, from the reference: the records per game and
    5-minute window (gaming_active_players_5min's total_activities)."""
    return {(r["game_id"], r["window_start"]): r["total_activities"]
            for r in ref.table_rows("gaming_active_players_5min")}


def test_partitioned_create_reaches_every_instance_and_is_restored_from_kafka(tmp_path, kafka):
    """--mode partitioned: a table (grouped by game_id) created on one
    instance and a stream created on another are made by every instance,
    through the changelog, and kept where the records are applied: each
    instance answers the table in full, equal to the same figures of a
    built-in table the reference computes, and pushes the stream whole. A
    third instance joining later makes both from the changelog alone. What
    partitioned mode cannot keep -- SESSION windows -- is refused. Then TERMINATE
    on one instance and DROP on others take effect on all three; the table
    made again under its name counts the records after it on all three, and
    on a fourth that joins after and reads every change from the changelog,
    a copy on every partition."""
    records, refs, act = partitioned_feed(kafka, tmp_path, 3000, 93)
    ref = reference_of(records)
    expected = counts_5min(ref)
    purchases = sorted(o["activity_id"] for o in ref.outputs if o["activity_type"] == "purchase")
    f = DaemonFactory(str(tmp_path))
    try:
        # a short session timeout: the mock cluster's rebalance when the third joins waits for it
        args = ["--brokers", kafka.bootstrap, "--mode", "partitioned", "--output", "none", "-X",
                "session.timeout.ms=6000"]
        a, b = f("kafka", args=args), f("kafka", args=args)
        settled([a, b])
        status, doc = ksql(a, COUNTS_SQL)
        assert status == 200, doc
        status, doc = ksql(b, PURCHASES_SQL)
        assert status == 200, doc
        status, doc = ksql(a, "CREATE TABLE by_session AS SELECT game_id, COUNT(*) AS n "
                              "FROM gaming_real_time_intelligence_platform WINDOW SESSION (5 MINUTES) "
                              "GROUP BY game_id EMIT CHANGES;")
        assert status == 400 and "SESSION windows" in json.dumps(doc), doc
        deadline = time.time() + 30
        while not all(listed(d, "game_counts", "purchases") for d in (a, b)) and time.time() < deadline:
            time.sleep(0.2)
        assert all(listed(d, "game_counts", "purchases") for d in (a, b))
        pushed = Stream(a.port, "purchases")
        time.sleep(3)  # the subscription is announced on the push topic
        produce(kafka.bootstrap, act)
        got = pushed.take(len(purchases), deadline_s=90)
        assert sorted(e.json["activity_id"] for e in got) == purchases
        pushed.close()
        c = f("kafka", args=args)  # joins later: the definitions come from the changelog
        settled([a, b, c])  # c answers through the owners at once; the checks below want the tasks moved
        for d in (a, b, c):
            deadline = time.time() + 90
            counts = game_counts(d) if listed(d, "game_counts", "purchases") else None
            while counts != expected and time.time() < deadline:
                time.sleep(0.5)
                counts = game_counts(d) if listed(d, "game_counts", "purchases") else None
            assert counts == expected, (d.port, counts and len(counts), len(expected), d.log_tail())
        assert "created table game_counts" in open(c.log_path, errors="replace").read()
        # TERMINATE on b: every instance stops the query, the table stays
        status, doc = ksql(b, "TERMINATE %s;" % ctas_query(b, "game_counts"))
        assert status == 200, doc
        wait_for(lambda: all(ctas_query(d, "game_counts") is None for d in (a, b, c)), "terminated everywhere")
        assert all(game_counts(d) == expected for d in (a, b, c))
        # DROP of the stream on c (which made it from the changelog), of the table on a
        status, doc = ksql(c, "DROP STREAM purchases;")
        assert status == 200, doc
        status, doc = ksql(a, "DROP TABLE game_counts;")
        assert status == 200, doc
        wait_for(lambda: not any(names_of(d) & {"game_counts", "purchases"} for d in (a, b, c)), "dropped everywhere")
        for d in (a, b, c):
            assert d.get("/v1/tables/game_counts").status == 404
        # made again under the same name, then a day later the same activity again: every
        # changelog partition holds the first CREATE, the TERMINATE, the DROP and the second
        # CREATE, then the new table's rows. An instance joining after reads each change once,
        # whichever partition it reads first -- applying a copy again would terminate or drop
        # the table and lose the rows read before -- and ends with the new table whole.
        status, doc = ksql(b, COUNTS_SQL)
        assert status == 200, doc
        wait_for(lambda: all("game_counts" in names_of(d) for d in (a, b, c)), "made again everywhere")
        later = activity_a_day_later(tmp_path, 3000, 93)
        produce(kafka.bootstrap, later)
        # what the records after it add (some come late, into windows of the day before)
        again = {k: n - expected.get(k, 0) for k, n in counts_5min(reference_of(records + later)).items()
                 if n > expected.get(k, 0)}
        assert sum(again.values()) > 1000, again
        e = f("kafka", args=args)
        for d in (a, b, c, e):
            deadline = time.time() + 90
            while game_counts(d) != again and time.time() < deadline:
                time.sleep(0.5)
            got = game_counts(d)
            assert got == again, (d.port, got and len(got), len(again),
                                  sorted(set(got or {}) ^ set(again))[:5],
                                  [(k, got[k], again[k]) for k in again if got and k in got and got[k] != again[k]][:5])
            assert "purchases" not in names_of(d) and ctas_query(d, "game_counts") is not None, d.port
    finally:
        f.cleanup()
