"""The Grafana JSON datasource (SPEC §8): the plugin's requests, kept as
data in tests/grafana/ (one file a case), answered for a replayed file and
compared with grafana_reference.py over the test reference; the shipped
dashboard's panels sent as Grafana sends them."""

import glob
import json
import os
import threading
import time

import pytest

import grafana_reference
import reference

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "..", "grafana")
DASHBOARD = os.path.join(HERE, "..", "..", "docker", "grafana", "dashboards", "gaming-intelligence.json")


def post(d, path, body, headers=None):
    data = body if isinstance(body, str) else json.dumps(body)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    conn_headers = h
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    try:
        conn.request("POST", path, body=data.encode(), headers=conn_headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


@pytest.fixture(scope="module")
def run(runs):
    return runs("seed44_slow")  # ~2.8 h across midnight: several hourly and daily windows


def case_files(prefix):
    return sorted(glob.glob(os.path.join(CASES, prefix + "*.json")))


@pytest.mark.parametrize("path", case_files("query_"), ids=lambda p: os.path.basename(p)[:-5])
def test_query_cases_equal_the_reference(run, path):
    case = json.load(open(path))
    status, got = post(run.daemon, case["path"], case["body"])
    assert status == 200, got
    want = grafana_reference.expected(run.ref, case["body"])
    assert want, "the case selects nothing: it tests nothing"
    errs = grafana_reference.compare(got, want)
    assert not errs, "%s: %s" % (case["what"], "\n".join(errs[:20]))


@pytest.mark.parametrize("path", case_files("bad_"), ids=lambda p: os.path.basename(p)[:-5])
def test_bad_requests_are_400_with_a_message(run, path):
    case = json.load(open(path))
    status, got = post(run.daemon, case["path"], case["body"])
    assert status == case["status"], got
    assert case["message"] in got["message"], got


def regex_query(regex, copies):
    """A Grafana query of every window of a table, filtered by `copies` copies of a player_id regex."""
    return {"range": {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"},
            "targets": [{"refId": "A", "target": "gaming_hourly_player_game_stats.total_sessions_1h"}],
            "filters": [{"key": "player_id", "operator": "=~", "value": regex}] * copies}


def test_work_past_the_request_timeout_stops_and_frees_the_worker(gamingd, generated):
    """Legal but heavy filters -- 8 regexes of 10,000 instructions, ~4 ms a
    row over 17,000 rows, a minute of work -- in three requests on the one
    HTTP worker: each is a 408 at the request timeout and its scan stops
    there, so the next request is answered at once. The worker used to go
    on scanning after the client had its 408, and requests behind it waited.
    The light request waits about three request timeouts in the queue: that
    wait is the server's, so it is not cut off as a slow client would be."""
    d = gamingd(generated(20000, 44, rate=2), args=["--request-timeout", "1s", "--http-threads", "1"])
    d.wait_ready()
    heavy = regex_query("(.?){4999}", 8)
    light = regex_query("player_0000[1-3]", 1)
    started = time.time()
    statuses = []
    threads = [threading.Thread(target=lambda: statuses.append(post(d, "/grafana/query", heavy)[0]))
               for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    status, got = post(d, "/grafana/query", light)
    answered = time.time() - started
    for t in threads:
        t.join()
    assert statuses == [408, 408, 408]
    assert status == 200 and got, got
    assert answered < 6, "the request behind two timed-out ones waited %.1f s" % answered


def test_a_queued_request_is_timed_from_when_it_is_read_not_from_when_it_waited(gamingd, generated):
    """Two heavy requests and then one of moderate work (about a third of
    the request timeout, measured first) on the one HTTP worker: the moderate
    one waits behind both, is read, and its work runs across one of the
    guard's once-a-second sweeps. The guard restarted its clock while the
    bytes sat unread, but then took the work itself for a slow client, with
    a 408, in about a third of the tries; a whole request is now timed by
    its own deadline from when it was read."""
    d = gamingd(generated(20000, 44, rate=2), args=["--request-timeout", "1s", "--http-threads", "1"])
    d.wait_ready()

    def timed(body):
        started = time.time()
        status, _ = post(d, "/grafana/query", body)
        assert status == 200
        return time.time() - started

    # the regex's cost grows with its repeat count: aim at a third of a second
    repeats = max(10, min(600, int(50 * 0.33 / max(timed(regex_query("(.?){50}", 1)), 0.001))))
    moderate = regex_query("(.?){%d}" % repeats, 1)
    assert timed(moderate) < 0.6, "the moderate request should leave room under the 1 s timeout"
    heavy = regex_query("(.?){4999}", 8)
    statuses = []
    for i in range(8):
        heavies = [threading.Thread(target=lambda: post(d, "/grafana/query", heavy)) for _ in range(2)]
        for t in heavies:
            t.start()
        time.sleep(0.2 + i * 0.1)
        statuses.append(post(d, "/grafana/query", moderate)[0])
        for t in heavies:
            t.join()
    assert statuses == [200] * 8


def test_save_and_test(run):
    r = run.daemon.get("/grafana/")
    assert r.status == 200 and r.json["status"] == "ok"


def test_metrics_offer_every_numeric_column_of_every_windowed_table(run):
    status, got = post(run.daemon, "/grafana/metrics", {})
    assert status == 200
    values = {m["value"]: m for m in got}
    for table, spec in reference.WINDOWED.items():
        for col in spec["cols"]:
            name = "%s.%s" % (table, col["name"])
            if col["type"] == "str":
                assert name not in values
                continue
            m = values[name]
            assert m["label"] and m["label"] != name
            payloads = {p["name"]: p for p in m["payloads"]}
            for k in spec["keys"]:
                assert payloads[k]["type"] == "multi-select"
            assert [o["value"] for o in payloads["format"]["options"]] == ["time_series", "table"]
    for table in reference.REFERENCE_TABLES:
        assert [o["value"] for o in {p["name"]: p for p in values[table]["payloads"]}["format"]["options"]] == ["table"]
    # the plugin's reload request carries the current metric and payload
    status, again = post(run.daemon, "/grafana/metrics", {"metric": "x", "payload": {"game_id": "g"}})
    assert status == 200 and again == got


def game_choices(ref, table=None):
    """game_id's values: the games table's, labelled with their names, and the game ids of the newest
    window of each windowed table with a game_id column (of `table` only, when given): a game can
    have activity before or without its games row."""
    want = {k: v.get("game_name") or k for k, v in ref.games.items()}
    for name in reference.WINDOWED if table is None else [table]:
        rows = [r for r in ref.table_rows(name) if r.get("game_id") is not None]
        newest = max((r["window_start"] for r in rows), default=None)
        for r in rows:
            if r["window_start"] == newest:
                want.setdefault(r["game_id"], r["game_id"])
    return want


def test_payload_options_label_games_with_their_names(run):
    body = {"metric": "gaming_active_players_5min.active_players_count", "payload": {}, "name": "game_id"}
    status, got = post(run.daemon, "/grafana/metric-payload-options", body)
    assert status == 200
    want = game_choices(run.ref, "gaming_active_players_5min")
    assert len(want) > len(run.ref.games)  # the data has activity of games without a games row
    assert {o["value"]: o["label"] for o in got} == want
    assert [o["value"] for o in got] == sorted(want)
    status, fmt = post(run.daemon, "/grafana/metric-payload-options", dict(body, name="format"))
    assert [o["value"] for o in fmt] == ["time_series", "table"]


@pytest.mark.parametrize("target, column", [("game_genre", "genre"), ("gaming_genre_engagement.game_genre", "genre"),
                                            ("game_id", None), ("player_segment", None), ("player_id", None)])
def test_variables(run, target, column):
    status, got = post(run.daemon, "/grafana/variable", {"payload": {"target": target}, "range": {}})
    assert status == 200
    values = [v["__value"] for v in got]
    assert len(values) == len(set(values))
    if column:
        assert set(values) == {g[column] for g in run.ref.games.values() if g.get(column)}
    elif target == "game_id":
        assert {v["__value"]: v["__text"] for v in got} == game_choices(run.ref)
        assert values == sorted(values)
    elif target == "player_id":
        assert set(values) == set(run.ref.players)
    else:
        assert set(values) == {"HIGH_PERFORMER", "MEDIUM_PERFORMER", "CASUAL_PLAYER"}


def test_tag_keys_and_values(run):
    status, keys = post(run.daemon, "/grafana/tag-keys", {})
    assert status == 200
    texts = {k["text"]: k["type"] for k in keys}
    assert texts["game_id"] == "string" and texts["total_revenue"] == "number" and texts["window_start"] == "number"
    status, values = post(run.daemon, "/grafana/tag-values", {"key": "player_segment"})
    assert sorted(v["text"] for v in values) == ["CASUAL_PLAYER", "HIGH_PERFORMER", "MEDIUM_PERFORMER"]


def substitute(payload, variables):
    """Grafana's template substitution into a payload string, JSON format:
    a multi-value variable becomes a JSON list."""
    for name, values in variables.items():
        payload = payload.replace("$" + name, json.dumps(values))
    return json.loads(payload) if payload else {}


@pytest.mark.parametrize("selection", ["all", "some"])
def test_the_shipped_dashboard_panels_equal_the_reference(run, selection):
    dash = json.load(open(DASHBOARD))
    assert dash["title"] == "Gaming Intelligence"
    variables = {}
    for v in dash["templating"]["list"]:
        status, options = post(run.daemon, "/grafana/variable",
                               {"payload": json.loads(v["query"]["payload"]), "range": {}})
        assert status == 200 and options, v["name"]
        values = sorted(o["__value"] for o in options)
        variables[v["name"]] = "$__all" if selection == "all" else values[:2]
    covered = set()
    for panel in dash["panels"]:
        targets = [{"refId": t["refId"], "target": t["target"], "payload": substitute(t["payload"], variables),
                    "datasource": t["datasource"]} for t in panel["targets"]]
        body = {"panelId": panel["id"], "targets": targets, "intervalMs": 60000, "maxDataPoints": 1000,
                "range": {"from": "2024-02-29T18:00:00.000Z", "to": "2024-03-01T06:00:00.000Z"}, "adhocFilters": []}
        status, got = post(run.daemon, "/grafana/query", body)
        assert status == 200, (panel["title"], got)
        want = grafana_reference.expected(run.ref, body)
        wallclock = any(t["target"].split(".", 1)[-1] in ("avg_lag_ms", "max_lag_ms") for t in targets)
        errs = grafana_reference.compare(got, want, check_values=not wallclock)
        assert not errs, "panel %r: %s" % (panel["title"], "\n".join(errs[:10]))
        assert got, "panel %r shows nothing" % panel["title"]
        covered.update(t["target"].split(".")[0] for t in targets)
    assert {"gaming_active_players_5min", "gaming_revenue_analytics", "gaming_genre_engagement",
            "gaming_player_segments_hourly", "gaming_top_performers_hourly", "gaming_high_value_players_daily",
            "gaming_processing_lag_1min", "gaming_data_quality_5min"} <= covered


def test_a_table_without_windows_and_games_known_only_by_activity(gamingd, tmp_path):
    """A user table without WINDOW comes out in the table format, and the game_id variable and tag
    values list a game that has activity but no games row. Worked by hand."""
    import time
    from conftest import BASE_MS, write_lines
    src = str(tmp_path / "in.jsonl")
    write_lines(src, [{"topic": "gaming_games", "key": "g1", "value": {"game_id": "g1", "game_name": "Game g1",
                                                                       "genre": "Action"}},
                      {"topic": "gaming_players", "key": "p1", "value": {"player_id": "p1", "username": "u1",
                                                                         "email": "p1@example.com"}}])
    d = gamingd(src)
    d.wait_ready()
    status, got = post(d, "/ksql", {"ksql": "CREATE TABLE per_game_total AS SELECT game_id, COUNT(*) AS plays, "
                                            "SUM(score) AS total FROM gaming_real_time_intelligence_platform "
                                            "GROUP BY game_id EMIT CHANGES;"})
    assert status == 200, got
    records = [("g1", 1), ("g1", 2), ("g9", 8), ("g1", 4)]  # g9 has no games row
    with open(src, "a") as f:
        for i, (g, score) in enumerate(records):
            f.write(json.dumps({"topic": "gaming_player_activity", "key": "a%d" % i, "value": {
                "activity_id": "a%d" % i, "player_id": "p1", "game_id": g, "activity_type": "play",
                "activity_timestamp": BASE_MS + i * 1000, "score": score, "in_game_purchases": 0.0}}) + "\n")
    deadline = time.time() + 30
    while d.readyz().json["records_applied"] < 2 + len(records):
        assert time.time() < deadline
        time.sleep(0.05)
    body = {"range": {"from": "2024-03-01T00:00:00Z", "to": "2024-03-01T01:00:00Z"},
            "targets": [{"refId": "A", "target": "per_game_total", "payload": {"format": "table"}}]}
    status, got = post(d, "/grafana/query", body)
    assert status == 200, got
    assert [c["text"] for c in got[0]["columns"]] == ["game_id", "plays", "total"]
    assert sorted(got[0]["rows"]) == [["g1", 3, 7], ["g9", 1, 8]]
    status, got = post(d, "/grafana/variable", {"payload": {"target": "game_id"}})
    assert status == 200 and got == [{"__text": "Game g1", "__value": "g1"}, {"__text": "g9", "__value": "g9"}]
    status, got = post(d, "/grafana/tag-values", {"key": "game_id"})
    assert status == 200 and got == [{"text": "Game g1"}, {"text": "g9"}]
