"""Push streams (SPEC §8): every stream's events against the reference,
ids, Last-Event-ID resumption, filters, ndjson, lost-event notices for a
slow reader, heartbeats, CORS, bad requests, and many subscribers at once.

The daemon reads a file source that starts empty; the tests subscribe, then
append a generated file, so every event of every stream is expected: the
enriched records in order, and for each table the row after each change,
computed by the reference (tests/integration/reference.py)."""

import selectors
import socket
import threading
import time

import pytest

import checks
import reference
from conftest import BASE_MS, generate, metric_by_label, read_lines
from sse import Stream

ENRICHED = "gaming_real_time_intelligence_platform"
STREAMS = [ENRICHED] + reference.ALL_TABLES
# the source topics' records as decoded, and the enriched records by the
# name the data product's troubleshooting uses (sql/builtin.sql)
SOURCE_STREAMS = {"gaming_player_activity_stream": reference.ACTIVITY_FIELDS,
                  "gaming_games_stream": reference.GAME_FIELDS, "gaming_players_stream": reference.PLAYER_FIELDS}
ALIAS = "gaming_activity_enriched"
MULTI = ["gaming_active_players_5min", "gaming_players_table", "gaming_revenue_analytics"]


def stream_columns(name):
    if name in (ENRICHED, ALIAS):
        return set(reference.OUTPUT_COLUMNS)
    if name in SOURCE_STREAMS:
        return set(SOURCE_STREAMS[name])
    cols = set(reference.table_key_columns(name)) | set(reference.table_value_columns(name))
    if reference.is_windowed(name):
        cols |= {"window_start", "window_end"}
    return cols


def append(path, lines):
    with open(path, "ab") as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))


def reference_changes(ref, table):
    return [(seq, row) for t, seq, row in ref.changes if t == table]


def compare_rows(table, exp_rows, got_rows):
    errs = []
    if len(exp_rows) != len(got_rows):
        errs.append("%s: %d events, reference %d" % (table, len(got_rows), len(exp_rows)))
    types = dict(reference.table_key_types(table))
    types.update(reference.table_value_columns(table))
    for i, (e, g) in enumerate(zip(exp_rows, got_rows)):
        diffs = []
        for c, ev in e.items():
            if (table, c) in reference.WALLCLOCK_COLUMNS:
                continue
            t = types.get(c, "int" if c.startswith("window_") else None)
            if c not in g or not reference.values_equal(ev, g[c], t):
                diffs.append("%s: expected %r got %r" % (c, ev, g.get(c)))
        if set(g) != set(e):
            diffs.append("columns %s, expected %s" % (sorted(g), sorted(e)))
        if diffs:
            errs.append("%s event %d: %s" % (table, i, "; ".join(diffs)))
        if len(errs) > 10:
            break
    return errs


@pytest.fixture(scope="module")
def fed(module_gamingd, tmp_path_factory):
    """A daemon that had a subscriber on every stream before any record came."""
    d = tmp_path_factory.mktemp("push")
    gen = str(d / "gen.jsonl")
    generate(gen, 3000, 71, rate=50, start=BASE_MS)
    lines = read_lines(gen)
    ref = reference.reference_for(lines)
    source = str(d / "source.jsonl")
    open(source, "w").close()
    daemon = module_gamingd(source, args=["--push-buffer", "65536"])
    daemon.wait_ready()
    subs = {name: Stream(daemon.port, name) for name in STREAMS}
    ndjson = Stream(daemon.port, ENRICHED, ndjson=True)
    game = max(set(o["game_id"] for o in ref.outputs), key=lambda g: sum(o["game_id"] == g for o in ref.outputs))
    flt = {"game_id": game, "activity_type": "purchase"}
    filtered = Stream(daemon.port, ENRICHED, params=flt)
    multi = Stream(daemon.port, ",".join(MULTI))
    t0 = checks.now_ms()
    append(source, lines)
    got = {}
    for name, s in subs.items():
        n = len(ref.outputs) if name == ENRICHED else len(reference_changes(ref, name))
        got[name] = s.take(n, deadline_s=60)
    expected_filtered = [(i + 1, o) for i, o in enumerate(ref.outputs)
                         if o["game_id"] == game and o["activity_type"] == "purchase"]
    got_nd = ndjson.take(len(ref.outputs), deadline_s=60)
    got_filtered = filtered.take(len(expected_filtered), deadline_s=60)
    got_multi = multi.take(sum(len(reference_changes(ref, t)) for t in MULTI), deadline_s=60, kinds=MULTI)
    t1 = checks.now_ms()

    class Fed:
        pass
    f = Fed()
    f.daemon, f.ref, f.subs, f.got, f.got_nd, f.t = daemon, ref, subs, got, got_nd, (t0, t1)
    f.source, f.lines, f.filtered, f.expected_filtered = source, lines, got_filtered, expected_filtered
    f.filter = flt
    f.multi = got_multi
    yield f
    for s in list(subs.values()) + [ndjson, filtered, multi]:
        s.close()


def test_streams_are_listed_with_their_columns(fed):
    r = fed.daemon.get("/v1/streams")
    assert r.status == 200, r
    listed = {s["name"]: s for s in r.json["streams"]}
    everything = STREAMS + list(SOURCE_STREAMS) + [ALIAS]
    assert sorted(listed) == sorted(everything)
    for name in everything:
        assert set(listed[name]["columns"]) == stream_columns(name), name
        assert listed[name]["path"] == "/v1/streams/" + name


def test_stream_headers_and_retry_advice(fed):
    s = fed.subs[ENRICHED]
    assert s.status == 200
    assert s.headers["content-type"].startswith("text/event-stream")
    assert s.headers.get("access-control-allow-origin") is None  # no --cors-origins
    assert s.headers.get("cache-control") == "no-store"
    assert s.retry == 3000


def test_enriched_events_equal_the_reference_with_consecutive_ids(fed):
    evs = fed.got[ENRICHED]
    errs = checks.compare_outputs([e.json for e in evs], fed.ref, ts_bounds=fed.t)
    checks.fail_if(errs, "enriched stream differs from the reference")
    assert [e.id for e in evs] == [str(i) for i in range(1, len(fed.ref.outputs) + 1)]


@pytest.mark.parametrize("table", reference.ALL_TABLES)
def test_table_events_are_the_rows_after_each_change(fed, table):
    exp = reference_changes(fed.ref, table)
    evs = fed.got[table]
    assert exp, "the data changes every table"
    checks.fail_if(compare_rows(table, [r for _, r in exp], [e.json for e in evs]),
                   "%s stream differs from the reference" % table)
    assert [e.id for e in evs] == [str(seq) for seq, _ in exp]


def test_ndjson_gives_the_same_records(fed):
    assert fed.got_nd and all(e.id is None for e in fed.got_nd)
    errs = checks.compare_outputs([e.json for e in fed.got_nd], fed.ref, ts_bounds=fed.t)
    checks.fail_if(errs, "ndjson stream differs from the reference")


def test_filters_select_matching_events(fed):
    exp = fed.expected_filtered
    assert exp, "the filter matches something"
    assert [int(e.id) for e in fed.filtered] == [i for i, _ in exp]
    for e in fed.filtered:
        assert e.json["game_id"] == fed.filter["game_id"] and e.json["activity_type"] == "purchase"


def test_numeric_and_boolean_filters(fed):
    """Filters on numbers and booleans compare values, not text; replayed
    from the buffer with last_event_id=0."""
    exp = [o for o in fed.ref.outputs if o["has_purchase"] and o["player_level"] == 7]
    assert exp
    s = Stream(fed.daemon.port, ENRICHED, params={"last_event_id": "0", "has_purchase": "true",
                                                   "player_level": "7"})
    try:
        got = [e.json for e in s.take(len(exp), deadline_s=20)]
    finally:
        s.close()
    assert [g["activity_id"] for g in got] == [o["activity_id"] for o in exp]


def test_resume_with_last_event_id(fed):
    for k in (1, 1234, len(fed.ref.outputs) - 3):
        s = Stream(fed.daemon.port, ENRICHED, headers={"Last-Event-ID": str(k)}, params={"limit": "3"})
        try:
            evs = s.take(3, deadline_s=20)
            assert not s.take(1, deadline_s=2), "limit=3 ends the stream"
        finally:
            s.close()
        assert [e.id for e in evs] == [str(k + 1), str(k + 2), str(k + 3)]
        assert [e.json["activity_id"] for e in evs] == [o["activity_id"] for o in fed.ref.outputs[k:k + 3]]


def test_resume_a_table_stream_with_sparse_ids(fed):
    table = "gaming_revenue_analytics"
    exp = reference_changes(fed.ref, table)
    after = exp[9][0]
    s = Stream(fed.daemon.port, table, params={"last_event_id": str(after), "limit": "5"})
    try:
        evs = s.take(5, deadline_s=20)
    finally:
        s.close()
    assert [e.id for e in evs] == [str(seq) for seq, _ in exp[10:15]]


def test_new_subscribers_get_live_events_only(fed):
    s = Stream(fed.daemon.port, ENRICHED)
    try:
        again = [l for l in fed.lines if "activity_timestamp" in l][-3:]  # as new records
        append(fed.source, again)
        evs = s.take(1, deadline_s=20)
    finally:
        s.close()
    assert evs and int(evs[0].id) == len(fed.ref.outputs) + 1


@pytest.mark.parametrize("path, params, headers, status", [
    ("/v1/streams/no_such_stream", {}, {}, 404),
    ("/v1/streams/" + ENRICHED, {"no_such_column": "1"}, {}, 400),
    ("/v1/streams/gaming_games_table", {"window_start": "0"}, {}, 400),
    ("/v1/streams/" + ENRICHED, {"limit": "0"}, {}, 400),
    ("/v1/streams/" + ENRICHED, {"limit": "x"}, {}, 400),
    ("/v1/streams/" + ENRICHED, {"last_event_id": "-1"}, {}, 400),
    ("/v1/streams/" + ENRICHED, {}, {"Last-Event-ID": "abc"}, 400),
    ("/v1/streams", {"x": "1"}, {}, 400),
])
def test_bad_stream_requests(fed, path, params, headers, status):
    r = fed.daemon.request(path, params=params, headers=headers, timeout=10)
    assert r.status == status, r
    assert r.json["error_code"] == status and r.json["message"]


@pytest.mark.parametrize("method", ["HEAD", "POST", "DELETE"])
def test_streams_answer_only_get(fed, method):
    r = fed.daemon.request("/v1/streams/" + ENRICHED, method=method, timeout=10)
    assert r.status == 405, r


def test_duplicate_filter_is_refused(fed):
    r = fed.daemon.get("/v1/streams/%s?game_id=a&game_id=b" % ENRICHED)
    assert r.status == 400 and "more than once" in r.json["message"]


def test_cors_preflight_from_an_origin_not_allowed_is_refused(fed):
    # no --cors-origins: other web pages may not read the streams
    r = fed.daemon.request("/v1/streams/" + ENRICHED, method="OPTIONS",
                           headers={"Origin": "http://elsewhere.example",
                                    "Access-Control-Request-Headers": "last-event-id"})
    assert r.status == 403 and "cors-origins" in r.json["message"]
    assert not any(k.lower() == "access-control-allow-origin" for k in r.headers)


def records_out(d):
    return sum(metric_by_label(d.metrics(), "gamingd_records_out_total", "topic").values())


def test_replay_buffer_too_old_is_told_then_live(gamingd, tmp_path, generated):
    gen = generated(400, 72, rate=50)
    source = str(tmp_path / "source.jsonl")
    open(source, "w").close()
    d = gamingd(source, args=["--push-buffer", "16"])
    d.wait_ready()
    keep = Stream(d.port, ENRICHED)  # someone listens: the stream is produced
    lines = read_lines(gen)
    append(source, lines)
    n = len(reference.reference_for(lines).outputs)
    deadline = time.time() + 60
    while records_out(d) < n and time.time() < deadline:
        time.sleep(0.05)
    s = Stream(d.port, ENRICHED, headers={"Last-Event-ID": "5"})
    try:
        notice = next(s.events())
        assert notice.event == "replay_unavailable", notice
        body = notice.json
        assert body["last_event_id"] == 5 and body["oldest_id"] > 5 and body["message"]
        # then the live stream: the next record appended, not the buffer
        append(source, [l for l in lines if "activity_timestamp" in l][:1])
        ev = s.take(1, deadline_s=20)
        assert ev and int(ev[0].id) == n + 1
    finally:
        s.close()
        keep.close()


def test_slow_subscriber_loses_oldest_events_and_is_told(gamingd, tmp_path, generated):
    gen = generated(20000, 73, rate=500)
    lines = read_lines(gen)
    ref = reference.reference_for(lines)
    n = len(ref.outputs)
    source = str(tmp_path / "source.jsonl")
    open(source, "w").close()
    # a buffer of 4,096 events: a reader that keeps reading stays well within
    # it on a loaded machine, the one that reads nothing falls far past it
    d = gamingd(source, args=["--push-buffer", "4096"])
    d.wait_ready()
    # A receive window far below the buffer, yet not below the loopback
    # segment size: with a window smaller than a segment the kernel sends
    # only on its persist timer, whose backoff under load left the reader
    # waiting longer than its timeout for bytes the server had queued.
    slow = Stream(d.port, ENRICHED, rcvbuf=65536)
    fast = Stream(d.port, ENRICHED)

    def feed():  # ~5,000 records/s in small steps
        for i in range(0, len(lines), 250):
            append(source, lines[i:i + 250])
            time.sleep(0.05)
    writer = threading.Thread(target=feed)
    writer.start()
    fast_events = fast.take(n, deadline_s=120)  # meanwhile the slow one reads nothing
    writer.join()
    received, dropped = [], 0
    slow.set_timeout(15)
    try:
        for ev in slow.events():
            if ev.event == "dropped":
                body = ev.json
                dropped += body["dropped"]
                assert body["total_dropped"] == dropped
            else:
                received.append(int(ev.id))
            if received and received[-1] == n:
                break
    finally:
        slow.close()
        fast.close()
    assert [int(e.id) for e in fast_events] == list(range(1, n + 1)), "a slow subscriber slows no one"
    assert dropped > 0, "the slow reader lost events"
    assert received == sorted(received) and len(set(received)) == len(received)
    assert len(received) + dropped == n, "every event is delivered or counted as lost"
    m = d.metrics()
    assert metric_by_label(m, "gamingd_stream_events_dropped_total", "stream")[ENRICHED] == dropped
    errs = checks.compare_all_tables(d, ref)
    checks.fail_if(errs, "tables with a slow subscriber attached")


def test_idle_stream_gets_heartbeat_comments(gamingd, tmp_path):
    source = str(tmp_path / "empty.jsonl")
    open(source, "w").close()
    d = gamingd(source)
    d.wait_ready()
    s = Stream(d.port, ENRICHED)
    s.set_timeout(25)
    start = time.time()
    try:
        ev = next(s.events(comments=True))
    finally:
        s.close()
    assert ev.event == ":comment"
    assert 14 <= time.time() - start <= 20


def test_thousands_of_subscribers(gamingd):
    """5,000 subscribers at once, no thread each: all get their events and
    the gauge counts them."""
    n = 5000
    d = gamingd("generator", args=["--rate", "20", "--seed", "5"])
    sel = selectors.DefaultSelector()
    req = ("GET /v1/streams/gaming_revenue_analytics HTTP/1.1\r\nHost: localhost\r\n\r\n").encode()
    socks = []
    try:
        for _ in range(n):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", d.port))
            socks.append(c)
            sel.register(c, selectors.EVENT_WRITE)
        tails = {}  # socket -> the last bytes received
        served = set()
        deadline = time.time() + 120
        while len(served) < n and time.time() < deadline:
            for key, mask in sel.select(timeout=1):
                c = key.fileobj
                if mask & selectors.EVENT_WRITE:
                    c.send(req)
                    sel.modify(c, selectors.EVENT_READ)
                    tails[c] = b""
                    continue
                data = c.recv(65536)
                tails[c] = (tails[c] + data)[-64:]
                if b"\nid: " in tails[c] or b"\nid: " in data:
                    served.add(c)
        assert len(served) == n, "%d of %d subscribers got events" % (len(served), n)
        subs = metric_by_label(d.metrics(), "gamingd_stream_subscribers", "stream")
        assert subs["gaming_revenue_analytics"] == n
    finally:
        for c in socks:
            c.close()
        sel.close()


def test_metrics_parse_with_prometheus_client(fed):
    from prometheus_client.parser import text_string_to_metric_families
    r = fed.daemon.get("/metrics")
    assert r.status == 200
    assert r.headers.get("Content-Type", "").startswith("text/plain; version=0.0.4")
    fams = {f.name: f for f in text_string_to_metric_families(r.raw.decode())}
    for name in ("gamingd_records_in", "gamingd_bad_records", "gamingd_late_records", "gamingd_records_out",
                 "gamingd_enrichment_rate", "gamingd_processing_lag_ms", "gamingd_ingest_records_per_second",
                 "gamingd_lmdb_size_bytes", "gamingd_stream_subscribers", "gamingd_stream_events_published",
                 "gamingd_stream_events_dropped", "gamingd_http_requests"):
        assert name in fams, "metric family %s missing (have %s)" % (name, sorted(fams))
    subs = {s.labels["stream"]: s.value for s in fams["gamingd_stream_subscribers"].samples}
    assert subs[ENRICHED] >= 3  # the fixture's SSE, ndjson and filtered subscribers
    assert all(subs[t] >= 1 for t in reference.ALL_TABLES)
    published = {s.labels["stream"]: s.value for s in fams["gamingd_stream_events_published"].samples
                 if s.name.endswith("_total")}
    assert published[ENRICHED] >= len(fed.ref.outputs)
    assert fams["gamingd_stream_events_published"].type == "counter"
    records_in = sum(s.value for s in fams["gamingd_records_in"].samples if s.name.endswith("_total"))
    assert records_in >= fed.ref.records
    routes = {(s.labels["route"], s.labels["status"]) for s in fams["gamingd_http_requests"].samples}
    assert ("/v1/streams/{stream}", "200") in routes
    # the fixture's records were committed: commits, and the time they took
    assert fams["gamingd_commits"].type == "counter" and fams["gamingd_commit_seconds"].type == "counter"
    assert fams["gamingd_commits"].samples[0].value >= 1
    assert 0 < fams["gamingd_commit_seconds"].samples[0].value < 600


def test_several_streams_in_one_subscription(fed):
    """/v1/streams/A,B,C: each table's events typed by its name, in order,
    equal to its own stream's; ids are every stream's last id, dotted."""
    by_stream = {t: [] for t in MULTI}
    last_ids = [0] * len(MULTI)
    for ev in fed.multi:
        ids = [int(x) for x in ev.id.split(".")]
        assert len(ids) == len(MULTI) and all(a >= b for a, b in zip(ids, last_ids)), ev.id
        last_ids = ids
        by_stream[ev.event].append(ev.json)
    for t in MULTI:
        errs = compare_rows(t, [row for _, row in reference_changes(fed.ref, t)], by_stream[t])
        assert not errs, errs


def test_several_streams_resume_from_their_dotted_id(fed):
    """Each stream resumes after its own id. How the streams interleave
    depends on what each had ready when the subscriber read, so each
    stream's events are compared, not the mix."""
    middle = len(fed.multi) // 2
    resume_from = fed.multi[middle - 1]
    want = {t: [e.data for e in fed.multi[middle:] if e.event == t] for t in MULTI}
    got = {t: [] for t in MULTI}
    s = Stream(fed.daemon.port, ",".join(MULTI), headers={"Last-Event-ID": resume_from.id})
    deadline = time.time() + 30
    try:
        while any(len(got[t]) < len(want[t]) for t in MULTI) and time.time() < deadline:
            for e in s.take(1, deadline_s=max(0.1, deadline - time.time()), kinds=MULTI):
                got[e.event].append(e.data)
    finally:
        s.close()
    for t in MULTI:
        assert got[t][:len(want[t])] == want[t], (t, len(got[t]), len(want[t]), resume_from.id)


@pytest.mark.parametrize("path, status", [
    ("/v1/streams/gaming_games_table,gaming_games_table", 400),
    ("/v1/streams/gaming_games_table,nope", 404),
    ("/v1/streams/gaming_games_table,gaming_players_table?game_id=g1", 400),
    ("/v1/streams/gaming_games_table,gaming_players_table?last_event_id=5", 400),
])
def test_bad_multi_stream_subscriptions(fed, path, status):
    r = fed.daemon.get(path)
    assert r.status == status, r
