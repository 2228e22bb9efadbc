"""Bad input, metrics, crash recovery and shutdown (SPEC §8, §9)."""

import json
import os
import subprocess
import time

import pytest

import checks
import reference
from conftest import (BASE_MS, metric_by_label, metric_sum, read_lines, read_output,
                      write_lines)

ACT = "gaming_player_activity"


def _act(aid, ts, player="p1", game="g1", **kw):
    v = {"activity_id": aid, "player_id": player, "game_id": game, "session_id": "s-" + aid,
         "activity_type": "play", "activity_timestamp": ts, "score": 100,
         "duration_seconds": 60, "achievements_unlocked": 1, "in_game_purchases": 0.0}
    v.update(kw)
    return {"topic": ACT, "key": aid, "value": v}


def _bad_lines():
    T = BASE_MS
    missing_ts = _act("b4", T)
    del missing_ts["value"]["activity_timestamp"]
    null_player = _act("b11", T)
    null_player["value"]["player_id"] = None
    return [
        # (line, topic it is counted under; None = no known topic)
        ("this is not json", None),
        ("[1, 2, 3]", None),
        (json.dumps({"topic": "no_such_topic", "key": "x", "value": {"a": 1}}), None),
        (json.dumps(missing_ts), ACT),
        (json.dumps(_act("b5", str(T))), ACT),
        (json.dumps({"topic": ACT, "key": "b6", "value": "hello"}), ACT),
        (json.dumps({"topic": ACT, "partition": 0, "offset": 9, "tstype": "create", "ts": T,
                     "broker": 1, "key": "b7", "payload": "{broken"}), ACT),
        (json.dumps(_act("b8", T, score="12")), ACT),
        (json.dumps({"topic": "gaming_players", "key": "p1",
                     "value": {"player_id": "p1", "username": "NEW", "level": "7"}}), "gaming_players"),
        (json.dumps({"topic": "gaming_games", "key": "g1",
                     "value": {"game_id": "g1", "game_name": "NEW", "rating": "x"}}), "gaming_games"),
        (json.dumps(null_player), ACT),
        (json.dumps(_act("b12", T, in_game_purchases=True)), ACT),
        (json.dumps({"topic": ACT, "key": "b13", "value": {"player_id": "p1", "game_id": "g1",
                                                           "activity_type": "play",
                                                           "activity_timestamp": T, "duration_seconds": [1]}}), ACT),
    ]


def test_bad_records_counted_and_skipped(gamingd, tmp_path):
    T = BASE_MS
    good_before = [
        {"topic": "gaming_games", "key": "g1", "value": {"game_id": "g1", "game_name": "Old Game",
                                                         "genre": "RPG", "rating": 4.5}},
        {"topic": "gaming_players", "key": "p1", "value": {"player_id": "p1", "username": "old",
                                                           "level": 3}},
        _act("a1", T + 1000),
    ]
    good_after = [_act("a2", T + 2000), _act("a3", T + 3000, score=None)]
    bad = _bad_lines()
    lines = [json.dumps(x) for x in good_before] + [b for b, _ in bad] + [json.dumps(x) for x in good_after]
    path = write_lines(str(tmp_path / "bad.jsonl"), lines)
    ref = reference.reference_for(lines)
    assert ref.bad == len(bad), "reference disagrees with the hand count of bad lines"
    d = gamingd(path)
    d.wait_ready()
    assert d.get("/healthz").status == 200
    # tables: the bad lines changed nothing
    games, _ = d.fetch_all("gaming_games_table")
    assert [g["game_name"] for g in games] == ["Old Game"], games
    players, _ = d.fetch_all("gaming_players_table")
    assert [(p["username"], p["level"]) for p in players] == [("old", 3)], players
    checks.fail_if(checks.compare_all_tables(d, ref))
    # output: only the three good activities, enriched with the old rows
    recs, unparsable = _wait_output(d, 3)
    assert not unparsable
    assert [r["activity_id"] for r in recs] == ["a1", "a2", "a3"], [r.get("activity_id") for r in recs]
    assert [r["game_name"] for r in recs] == ["Old Game"] * 3
    assert [r["player_username"] for r in recs] == ["old"] * 3
    assert [r["total_sessions_1h"] for r in recs] == [1, 2, 3]
    # metrics
    m = d.metrics()
    bad_total = metric_sum(m, "gamingd_bad_records_total")
    assert bad_total == len(bad), "gamingd_bad_records_total sums to %r, %d bad lines" % (bad_total, len(bad))
    by_topic = metric_by_label(m, "gamingd_bad_records_total", "topic")
    for topic in reference.TOPICS:
        exp = sum(1 for _, t in bad if t == topic)
        assert by_topic.get(topic, 0) == exp, "bad records of %s: %r, expected %d (%r)" % (
            topic, by_topic.get(topic), exp, by_topic)
    rin = metric_by_label(m, "gamingd_records_in_total", "topic")
    for topic in reference.TOPICS:
        valid = ref.valid_by_topic[topic]
        allt = valid + sum(1 for _, t in bad if t == topic)
        assert valid <= rin.get(topic, -1) <= allt, "records_in of %s: %r, expected %d..%d" % (
            topic, rin.get(topic), valid, allt)


def _wait_output(d, n, wait=10):
    deadline = time.time() + wait
    while True:
        recs, bad = read_output(d.output)
        if len(recs) >= n or time.time() > deadline:
            return recs, bad
        time.sleep(0.1)


def test_metrics_on_generated_file(runs):
    run = runs("seed11")
    ref = run.ref
    m = run.daemon.metrics()
    assert metric_sum(m, "gamingd_bad_records_total") == ref.bad
    by_topic = metric_by_label(m, "gamingd_bad_records_total", "topic")
    # a line that is not JSON may still be attributed to the topic it names
    unattributed = ref.bad_by_topic.get(None, 0)
    for topic in reference.TOPICS:
        lo = ref.bad_by_topic.get(topic, 0)
        assert lo <= by_topic.get(topic, 0) <= lo + unattributed, (topic, by_topic, ref.bad_by_topic)
    rin = metric_by_label(m, "gamingd_records_in_total", "topic")
    for topic in reference.TOPICS:
        lo = ref.valid_by_topic[topic]
        hi = lo + ref.bad_by_topic.get(topic, 0) + unattributed
        assert lo <= rin.get(topic, -1) <= hi, (topic, rin, lo, hi)
    late = metric_sum(m, "gamingd_late_records_total")
    assert ref.late_all <= late <= ref.late_any, \
        "gamingd_late_records_total %r; activities late for every table %d, for some table %d" % (
            late, ref.late_all, ref.late_any)


def test_readyz_503_while_replaying(gamingd, generated):
    path = generated(200000, 77, rate=100, start=BASE_MS)
    d = gamingd(path)
    r = d.readyz()
    if r.status == 200:
        pytest.skip("file applied before the first /readyz: cannot observe 503")
    assert r.status == 503, r
    assert r.json["ready"] is False and isinstance(r.json["records_applied"], int), r.json
    d.wait_ready()
    r = d.readyz()
    assert r.json["ready"] is True


def _kill_when(d, min_applied=None, delay=None, timeout=120):
    """kill -9 while /readyz is still 503: once records_applied >= min_applied
    (and > 0), or once `delay` seconds have passed. Returns records_applied
    last seen, or None if the daemon got ready first (it is then stopped)."""
    t0 = time.time()
    while time.time() < t0 + timeout:
        r = d.readyz()
        if r.status == 200:
            assert d.stop() == 0
            return None
        n = (r.json or {}).get("records_applied", 0)
        if (min_applied is not None and n > 0 and n >= min_applied) or \
                (delay is not None and time.time() - t0 >= delay):
            d.kill9()
            return n
        time.sleep(0.003)
    pytest.fail("daemon made no progress")


@pytest.fixture(scope="module")
def big(tmp_path_factory, generated):
    path = generated(200000, 77, rate=100, start=BASE_MS)
    lines = read_lines(path)
    return path, lines, reference.reference_for(lines)


def test_kill9_then_restart_recovers(gamingd, big, tmp_path):
    path, lines, ref = big
    data = str(tmp_path / "data")
    out = str(tmp_path / "out.jsonl")
    # 1st crash after a short delay (maybe before the first commit), 2nd once
    # some state is committed, 3rd once more has been committed since
    kills = []
    d = gamingd(path, data_dir=data, output=out)
    kills.append(_kill_when(d, delay=0.15))
    d = gamingd(path, data_dir=data, output=out)
    kills.append(_kill_when(d, min_applied=1))
    d = gamingd(path, data_dir=data, output=out)
    kills.append(_kill_when(d, min_applied=(kills[-1] or 0) + 1))
    if all(k is None for k in kills):
        pytest.skip("daemon applied the whole file every time before it could be killed")
    print("kill -9 at records_applied", kills)
    d3 = gamingd(path, data_dir=data, output=out)
    d3.wait_ready()
    errs = checks.compare_all_tables(d3, ref, check_wallclock=False)
    checks.fail_if(errs, "tables after kill -9 at records_applied %s and restart" % (kills,))
    # output: at-least-once, every record as the reference has it
    deadline = time.time() + 10
    while True:
        recs, unparsable = read_output(out)
        if len(recs) >= len(ref.outputs) or time.time() > deadline:
            break
        time.sleep(0.1)
    errs = check_at_least_once(recs, ref)
    assert len(unparsable) <= len(kills), "unparseable output lines (torn writes?): %r" % unparsable[:3]
    checks.fail_if(errs, "output after kill -9 and restart")
    assert d3.stop() == 0


def check_at_least_once(recs, ref):
    index = {}
    for i, e in enumerate(ref.outputs):
        index.setdefault((e["activity_id"], e["event_timestamp"]), []).append(i)
    seen = set()
    errs = []
    for j, g in enumerate(recs):
        cands = index.get((g.get("activity_id"), g.get("event_timestamp")), [])
        match = None
        diffs = None
        for i in cands:
            dd = checks.compare_output_record(i, ref.outputs[i], g, ref.output_alts[i])
            if not dd:
                match = i
                break
            diffs = diffs or dd
        if match is None:
            if len(errs) < 15:
                errs.append("output line %d matches no reference record: %s" % (
                    j, diffs[0] if diffs else json.dumps(g)[:300]))
            continue
        seen.add(match)
    missing = [i for i in range(len(ref.outputs)) if i not in seen]
    if missing:
        errs.append("%d of %d activities missing from the output, e.g. #%s" % (
            len(missing), len(ref.outputs), missing[:10]))
    return errs


def test_sigterm_midstream_exit0_and_resume(gamingd, big, tmp_path):
    path, lines, ref = big
    data = str(tmp_path / "data")
    out = str(tmp_path / "out.jsonl")
    d = gamingd(path, data_dir=data, output=out)
    t0 = time.time()
    while True:
        r = d.readyz()
        if r.status == 200:
            pytest.skip("daemon applied the whole file before SIGTERM")
        if (r.json or {}).get("records_applied", 0) > 0 or time.time() - t0 > 0.3:
            break
        time.sleep(0.003)
    rc = d.stop(timeout=30)
    assert rc == 0, "SIGTERM mid-stream: exit code %r; log:\n%s" % (rc, d.log_tail())
    t0 = checks.now_ms()
    d2 = gamingd(path, data_dir=data, output=out)
    d2.wait_ready()
    errs = checks.compare_all_tables(d2, ref)
    checks.fail_if(errs, "tables after SIGTERM mid-stream and restart")
    recs, unparsable = read_output(out)
    assert not unparsable
    # a clean stop loses nothing and repeats nothing
    errs = checks.compare_outputs(recs, ref)
    checks.fail_if(errs, "output after SIGTERM mid-stream and restart")
    assert d2.stop() == 0


def test_sigterm_exit0_and_restart_is_idempotent(gamingd, generated, tmp_path):
    path = generated(30000, 11, start=BASE_MS)
    lines = read_lines(path)
    ref = reference.reference_for(lines)
    data = str(tmp_path / "data")
    out = str(tmp_path / "out.jsonl")
    d = gamingd(path, data_dir=data, output=out)
    d.wait_ready()
    rc = d.stop(timeout=30)
    assert rc == 0, "exit code after SIGTERM: %r" % rc
    n_out = len(read_output(out)[0])
    assert n_out == len(ref.outputs)
    # restart on the same data dir and file: nothing applied twice
    d2 = gamingd(path, data_dir=data, output=out)
    d2.wait_ready()
    errs = checks.compare_all_tables(d2, ref)
    checks.fail_if(errs, "tables after a restart on a fully applied file")
    assert d2.stop(timeout=30) == 0
    assert len(read_output(out)[0]) == n_out, "restart re-emitted records of an applied file"


def test_queries_during_replay_are_consistent(gamingd, big):
    """Readers run while ingest writes: every answer is a 200 with well-formed
    rows, counts only grow (the file has few late records, none of which
    shrink anything), and the first ready answer already shows the final state."""
    path, lines, ref = big
    d = gamingd(path)
    last_total = -1
    last_applied = -1
    n = 0
    while True:
        r = d.readyz()
        applied = r.json["records_applied"]
        assert applied >= last_applied, "records_applied went back: %d -> %d" % (last_applied, applied)
        last_applied = applied
        q = d.get("/v1/tables/gaming_data_quality_5min", [("from", "0"), ("to", "9999999999999"),
                                                           ("limit", "10000")])
        assert q.status == 200, q
        for row in q.json["rows"]:
            errs = checks.check_row_shape("gaming_data_quality_5min", row)
            assert not errs, errs
        total = sum(x["total_records"] for x in q.json["rows"])
        assert total >= last_total, "data quality total went back: %d -> %d" % (last_total, total)
        last_total = total
        h = d.get("/v1/tables/gaming_hourly_player_game_stats", [("limit", "50"), ("order_by", "total_sessions_1h"),
                                                                  ("desc", "true")])
        assert h.status == 200, h
        n += 1
        if r.status == 200:
            break
    errs = checks.compare_all_tables(d, ref, tables=["gaming_data_quality_5min", "gaming_active_players_5min",
                                                      "gaming_genre_engagement"])
    checks.fail_if(errs, "state at the first ready answer (after %d polls during replay)" % n)


WEIRD_REQUESTS = [
    "/v1/tables/gaming_games_table?game_id=%zz",
    "/v1/tables/gaming_games_table?game_id=%",
    "/v1/tables/gaming_games_table?&&&",
    "/v1/tables/gaming_games_table?limit=1&limit=2",
    "/v1/tables/gaming_games_table?=x",
    "/v1/tables/gaming_active_players_5min?window_start=",
    "/v1/tables/gaming_active_players_5min?from=10",
    "/v1/tables/gaming_active_players_5min?to=10",
    "/v1/tables/gaming_active_players_5min?from=20&to=10",
    "/v1/tables/gaming_active_players_5min?window_start=0&from=0&to=10",
    "/v1/tables/gaming_active_players_5min?window_start=99999999999999999999999999",
    "/v1/tables/gaming_active_players_5min?cursor=",
    "/v1/tables/gaming_active_players_5min?cursor=" + "A" * 5000,
    "/v1/tables/gaming_active_players_5min?game_id=" + "x" * 20000,
    "/v1/tables/",
    "/v1/tables/%00",
    "/v1/tables/gaming_games_table/extra",
    "/v1/tables/../metrics",
    "/v1/nothing",
]


def test_weird_requests_never_crash(runs):
    run = runs("seed11")
    d = run.daemon
    for path in WEIRD_REQUESTS:
        r = d.request(path)
        assert r.status in (200, 400, 404, 405, 414, 431), "%s -> %r" % (path[:100], r)
        if r.status != 200 and r.status < 414:
            assert isinstance(r.json, dict) and isinstance(r.json.get("message"), str), \
                "%s: error body %r" % (path[:100], r.raw[:200])
        assert d.get("/healthz").status == 200, "daemon down after %s" % path[:100]
    # a POST where only GET is served
    r = d.request("/v1/tables/gaming_games_table", method="POST")
    assert r.status in (400, 404, 405), r
    assert d.running()


def test_resume_after_appended_records(gamingd, generated, tmp_path):
    """The committed file position survives a restart: a multi-day file fed
    in three parts (SIGTERM and restart between parts, the file growing at
    its end) gives the tables and output of one uninterrupted run, so stream
    time, cold windows and their distinct sets were all persisted."""
    src = generated(20000, 66, rate=0.02, start=BASE_MS)
    lines = read_lines(src)
    ref = reference.reference_for(lines)
    path = str(tmp_path / "growing.jsonl")
    data = str(tmp_path / "data")
    out = str(tmp_path / "out.jsonl")
    cuts = [0, len(lines) // 3, 2 * len(lines) // 3, len(lines)]
    open(path, "w").close()
    for a, b in zip(cuts, cuts[1:]):
        with open(path, "a") as f:
            f.write("".join(l + "\n" for l in lines[a:b]))
        d = gamingd(path, data_dir=data, output=out)
        d.wait_ready()
        if b < len(lines):
            assert d.stop() == 0
    errs = checks.compare_all_tables(d, ref)
    checks.fail_if(errs, "tables after a file fed in three parts")
    recs, unparsable = read_output(out)
    assert not unparsable
    checks.fail_if(checks.compare_outputs(recs, ref), "output after a file fed in three parts")


def test_another_file_on_the_same_data_dir_is_read_from_its_start(gamingd, tmp_path):
    # the committed position belongs to the file it was read from: a second
    # file on the same data dir is applied whole, on top of the kept state
    T = BASE_MS
    first = write_lines(str(tmp_path / "first.jsonl"), [_act("f%d" % i, T + i) for i in range(50)])
    second = write_lines(str(tmp_path / "second.jsonl"), [_act("s%d" % i, T + 100 + i) for i in range(3)])
    data = str(tmp_path / "data")
    d = gamingd(first, data_dir=data)
    d.wait_ready()
    assert d.stop() == 0
    d = gamingd(second, data_dir=data)
    d.wait_ready()
    assert metric_by_label(d.metrics(), "gamingd_records_in_total", "topic")[ACT] == 53
    window = T - T % (5 * 60 * 1000)
    rows = d.get("/v1/tables/gaming_active_players_5min", [("window_start", str(window))]).json["rows"]
    assert [r["total_activities"] for r in rows] == [53]
    assert d.stop() == 0


def test_retention_purges_everything_expired_even_past_one_commits_share(gamingd, generated, tmp_path):
    # ~52,000 hourly player/game rows, then one record 30 days on: every older
    # window is past the default 7-day retention. A commit purges a bounded
    # number of rows; the rest must go in further commits, not wait for data.
    T = BASE_MS
    lines = read_lines(generated(250000, 3, rate=1000, start=T))
    future = T + 30 * 24 * 3600 * 1000
    path = write_lines(str(tmp_path / "expire.jsonl"), lines + [json.dumps(_act("future", future))])
    d = gamingd(path)
    d.wait_ready(timeout=120)
    table = "/v1/tables/gaming_hourly_player_game_stats"
    old = d.get(table, [("from", "0"), ("to", str(future - 24 * 3600 * 1000))]).json
    assert old["count"] == 0, "expired windows still served: %r" % old["rows"][:2]
    new = d.get(table, [("from", "0"), ("to", str(future + 3600 * 1000))]).json
    assert [(r["player_id"], r["total_sessions_1h"]) for r in new["rows"]] == [("p1", 1)]
    assert d.stop() == 0


def test_a_second_daemon_on_the_same_data_dir_is_refused(gamingd, tmp_path):
    path = write_lines(str(tmp_path / "in.jsonl"), [_act("a1", BASE_MS)])
    data = str(tmp_path / "data")
    first = gamingd(path, data_dir=data)
    first.wait_ready()
    proc = subprocess.run([first.binary, "--source", "file:" + path, "--data-dir", data,
                           "--listen", "127.0.0.1:0"], capture_output=True, timeout=30)
    assert proc.returncode != 0
    assert b"in use by another gamingd" in proc.stderr
    assert first.get("/healthz").status == 200
    assert first.stop() == 0
