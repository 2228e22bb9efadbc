"""ksqlDB's REST API as its clients use it: the wire formats of /query-stream,
/query, /ksql, /close-query, /info and /healthcheck; tables and streams
created, terminated and dropped by SQL, kept across a restart and kill -9;
API key scopes; EMIT FINAL; shared and slow push queries.

Expected rows are worked by hand or computed here from the records the test
writes; formats follow ksqlDB 0.29's entity classes."""
import concurrent.futures
import http.client
import json
import os
import re
import time

import pytest

from conftest import BASE_MS, read_output, write_lines
from sse import Stream

ENRICHED = "gaming_real_time_intelligence_platform"


def post(port, path, body, headers=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request("POST", path, body=json.dumps(body) if not isinstance(body, (bytes, str)) else body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Content-Type"), data


def ksql(port, text, headers=None):
    status, _, body = post(port, "/ksql", {"ksql": text, "streamsProperties": {}}, headers)
    return status, json.loads(body)


def query(port, sql, headers=None):
    status, ctype, body = post(port, "/query-stream", {"sql": sql, "properties": {}}, headers)
    if status != 200:
        return status, json.loads(body), None
    lines = [json.loads(l) for l in body.decode().split("\n") if l]
    return status, lines[0], lines[1:]


def activity(i, game, player, ts, score=100, purchase=0.0):
    return {"topic": "gaming_player_activity", "key": "a%d" % i, "value": {
        "activity_id": "a%d" % i, "player_id": player, "game_id": game, "activity_type": "play",
        "activity_timestamp": ts, "score": score, "in_game_purchases": purchase}}


def reference_lines():
    return [{"topic": "gaming_games", "key": g, "value": {"game_id": g, "game_name": "Game " + g, "genre": "Action"}}
            for g in ("g1", "g2")] + [
        {"topic": "gaming_players", "key": p, "value": {"player_id": p, "username": "u-" + p, "email": p + "@example.com"}}
        for p in ("p1", "p2", "p3")]


def records_applied(d):
    return d.readyz().json["records_applied"]


def wait_applied(d, n, timeout=60):
    deadline = time.time() + timeout
    while records_applied(d) < n:
        assert time.time() < deadline, "not applied: %d of %d" % (records_applied(d), n)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def fed(module_gamingd, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ksql") / "src.jsonl")
    lines = reference_lines() + [activity(i, "g%d" % (1 + i % 2), "p%d" % (1 + i % 3), BASE_MS + i * 1000, score=1000 + i)
                                 for i in range(30)]
    write_lines(path, lines)
    d = module_gamingd(path, args=["--grace", "3650d"])
    wait_applied(d, len(lines))
    return d


# ---- formats ----

def test_info_and_healthcheck(fed):
    info = fed.get("/info").json["KsqlServerInfo"]
    assert set(info) == {"version", "kafkaClusterId", "ksqlServiceId", "serverStatus"}
    assert info["serverStatus"] == "RUNNING"
    h = fed.get("/healthcheck")
    assert h.status == 200 and h.json["isHealthy"] is True
    assert list(h.json["details"]) == ["metastore", "kafka", "commandRunner"]


def test_pull_query_stream_delimited_and_json(fed):
    status, header, rows = query(fed.port, "SELECT game_id, total_activities FROM gaming_active_players_5min "
                                           "WHERE game_id = 'g1' AND WINDOWSTART = %d;" % BASE_MS)
    assert status == 200
    assert header["queryId"].startswith("query_")
    assert header["columnNames"] == ["GAME_ID", "TOTAL_ACTIVITIES"]
    assert header["columnTypes"] == ["STRING", "BIGINT"]
    assert rows == [["g1", 15]]  # 30 records over 30 s, every other one g1: one 5-minute window
    status, ctype, body = post(fed.port, "/query-stream", {"sql": "SELECT game_id FROM gaming_games_table;"},
                               {"Accept": "application/json"})
    assert status == 200 and ctype == "application/json"
    doc = json.loads(body)
    assert doc[0]["columnNames"] == ["GAME_ID"] and sorted(doc[1:]) == [["g1"], ["g2"]]


def test_query_v1_format(fed):
    status, ctype, body = post(fed.port, "/query", {"ksql": "SELECT * FROM gaming_games_table WHERE game_id = 'g2';"})
    assert status == 200 and ctype == "application/vnd.ksql.v1+json"
    text = body.decode()
    assert text.startswith('[{"header":{"queryId":"query_') and text.endswith("]")
    doc = json.loads(text)
    assert doc[0]["header"]["schema"].startswith("`GAME_ID` STRING KEY, `GAME_NAME` STRING")
    assert doc[1] == {"row": {"columns": ["g2", "Game g2", "Action", None, None, None, None, None]}}
    assert len(doc) == 2


def test_push_query_v1_ends_with_limit_reached(fed):
    c = http.client.HTTPConnection("127.0.0.1", fed.port, timeout=30)
    c.request("POST", "/query", body=json.dumps({"ksql": "SELECT player_id FROM %s EMIT CHANGES LIMIT 2;" % ENRICHED}))
    r = c.getresponse()
    assert r.status == 200
    header = r.readline()
    assert header.startswith(b'[{"header":{"queryId":"transient_GAMING_REAL_TIME_INTELLIGENCE_PLATFORM_')
    with open(fed.source, "a") as f:  # two more records arrive
        for i in (100, 101):
            f.write(json.dumps(activity(i, "g1", "p2", BASE_MS + 7200000 + i)) + "\n")  # windows no other test reads
    rest = r.read().decode()
    assert header.endswith(b"}},\n")
    assert rest == '{"row":{"columns":["p2"]}},\n{"row":{"columns":["p2"]}},\n{"finalMessage":"Limit Reached"}]'
    json.loads(header.decode() + rest)  # one JSON document


def test_close_query_ends_a_push_query(fed):
    c = http.client.HTTPConnection("127.0.0.1", fed.port, timeout=30)
    c.request("POST", "/query-stream", body=json.dumps({"sql": "SELECT game_id FROM gaming_games_stream EMIT CHANGES;"}))
    r = c.getresponse()
    header = json.loads(r.readline())
    status, _, body = post(fed.port, "/close-query", {"queryId": header["queryId"]})
    assert status == 200 and body == b""
    assert r.read() == b""  # the response ended
    status, _, body = post(fed.port, "/close-query", {"queryId": header["queryId"]})
    assert status == 400 and json.loads(body)["@type"] == "generic_error"


def test_show_streams_tables_queries(fed):
    status, doc = ksql(fed.port, "SHOW STREAMS; LIST TABLES; SHOW QUERIES;")
    assert status == 200 and [e["@type"] for e in doc] == ["streams", "tables", "queries"]
    streams = {s["name"]: s for s in doc[0]["streams"]}
    assert set(streams) == {"GAMING_REAL_TIME_INTELLIGENCE_PLATFORM", "GAMING_ACTIVITY_ENRICHED",
                            "GAMING_PLAYER_ACTIVITY_STREAM", "GAMING_GAMES_STREAM", "GAMING_PLAYERS_STREAM"}
    assert streams["GAMING_REAL_TIME_INTELLIGENCE_PLATFORM"] == {
        "type": "STREAM", "name": "GAMING_REAL_TIME_INTELLIGENCE_PLATFORM",
        "topic": "gaming.real-time-gaming-intelligence-platform", "keyFormat": "KAFKA", "valueFormat": "AVRO",
        "isWindowed": False}
    tables = {t["name"]: t for t in doc[1]["tables"]}
    assert len(tables) == 11 and tables["GAMING_DATA_QUALITY_5MIN"]["isWindowed"] is True
    assert tables["GAMING_GAMES_TABLE"]["isWindowed"] is False
    ids = {q["id"] for q in doc[2]["queries"]}
    assert "CTAS_GAMING_HOURLY_PLAYER_GAME_STATS_0" in ids and "CSAS_GAMING_ACTIVITY_ENRICHED_0" in ids
    assert doc[0]["statementText"] == "SHOW STREAMS;"


def test_describe_a_windowed_table(fed):
    status, doc = ksql(fed.port, "DESCRIBE gaming_top_performers_hourly;")
    assert status == 200
    sd = doc[0]["sourceDescription"]
    assert sd["type"] == "TABLE" and sd["windowType"] == "TUMBLING"
    assert sd["fields"][0] == {"name": "GAME_ID", "schema": {"type": "STRING", "fields": None, "memberSchema": None},
                               "type": "KEY"}
    assert sd["fields"][2] == {"name": "PLAYER_USERNAME",
                               "schema": {"type": "STRING", "fields": None, "memberSchema": None}}
    assert "HAVING SUM(score) > 1000" in sd["statement"]
    assert sd["writeQueries"][0]["id"] == "CTAS_GAMING_TOP_PERFORMERS_HOURLY_0"


def test_statement_errors(fed):
    status, doc = ksql(fed.port, "SELECT * FROM gaming_games_table;")
    assert status == 400 and doc["error_code"] == 40002
    status, doc = ksql(fed.port, "SHOW TABLES; DESCRIBE nothing_here;")
    assert status == 400 and doc["@type"] == "statement_error" and doc["error_code"] == 40001
    assert doc["statementText"] == "DESCRIBE nothing_here;"
    assert [e["@type"] for e in doc["entities"]] == ["tables"]  # what ran before it
    status, _, body = post(fed.port, "/query-stream", b"{not json")
    assert status == 400 and json.loads(body)["error_code"] == 40000
    status, doc = ksql(fed.port, "DROP TABLE gaming_games_table;")
    assert status == 400 and "built in" in doc["message"]


# ---- DDL ----

def test_variables_define_undefine_and_session_variables(fed):
    """ksqlDB's variables: sessionVariables and DEFINE put their values
    wherever ${name} stands in the statements after; SHOW VARIABLES lists
    them (Cube's ksqlDB driver tests its connection with it); UNDEFINE of an
    unknown one is a warning. The expected rows are worked out by hand from
    the fixture (30 records, every other one g1, 15 of them in the window)."""
    status, doc = ksql(fed.port, "SHOW VARIABLES;")
    assert status == 200 and doc == [{"@type": "variables", "statementText": "SHOW VARIABLES;", "variables": [],
                                      "warnings": []}]
    status, _, body = post(fed.port, "/ksql", {
        "ksql": "DEFINE t = 'gaming_games_table'; SHOW VARIABLES; UNDEFINE t; UNDEFINE never; SHOW VARIABLES;",
        "sessionVariables": {"game": "g1", "n": 2}})
    doc = json.loads(body)
    assert status == 200 and [e["@type"] for e in doc] == ["variables", "warning_entity", "variables"], doc
    assert doc[0]["variables"] == [{"name": "game", "value": "g1"}, {"name": "n", "value": "2"},
                                   {"name": "t", "value": "gaming_games_table"}]
    assert "never" in doc[1]["message"]
    assert doc[2]["variables"] == [{"name": "game", "value": "g1"}, {"name": "n", "value": "2"}]
    status, _, body = post(fed.port, "/query-stream", {
        "sql": "SELECT game_id, total_activities FROM ${table} WHERE game_id = '${game}' AND WINDOWSTART = ${start};",
        "sessionVariables": {"table": "gaming_active_players_5min", "game": "g1", "start": BASE_MS}})
    assert status == 200, body
    assert [json.loads(l) for l in body.decode().split("\n") if l][1:] == [["g1", 15]]
    status, _, body = post(fed.port, "/query-stream", {"sql": "SELECT * FROM ${missing};"})
    err = json.loads(body)
    assert status == 400 and "variable 'missing' is not defined" in err["message"], err


def test_show_functions_and_describe_function(fed):
    """SHOW FUNCTIONS lists what docs/sql.md's function list documents (names
    and aliases, SCALAR) and the aggregates of its SQL section; DESCRIBE
    FUNCTION gives a signature as ksqlDB's reference writes it (LPAD(input
    STRING, length INT, padding STRING) -> STRING); an unknown one is ksqlDB's
    error."""
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "sql.md")).read()
    documented = set()
    for name, alias in re.findall(r"^\| `([A-Z0-9_]+)\([^`]*\) -> [^`]+`(?: \(also `([A-Z0-9_]+)`\))? \|", doc, flags=re.M):
        documented |= {name, alias} - {""}
    status, got = ksql(fed.port, "SHOW FUNCTIONS;")
    assert status == 200 and got[0]["@type"] == "function_names"
    listed = {f["name"]: f["type"] for f in got[0]["functions"]}
    aggregates = {"COUNT", "COUNT_DISTINCT", "SUM", "AVG", "MIN", "MAX", "LATEST_BY_OFFSET", "EARLIEST_BY_OFFSET",
                  "TOPK", "TOPKDISTINCT", "COLLECT_LIST", "COLLECT_SET", "HISTOGRAM",
                  "STDDEV_SAMPLE", "STDDEV_SAMP", "CORRELATION"}
    assert listed == dict({n: "SCALAR" for n in documented}, **{n: "AGGREGATE" for n in aggregates})
    status, got = ksql(fed.port, "DESCRIBE FUNCTION lpad;")
    assert status == 200 and got[0]["@type"] == "describe_function" and got[0]["name"] == "LPAD", got
    sig = got[0]["functions"][0]
    assert [(a["name"], a["type"]) for a in sig["arguments"]] == [("input", "STRING"), ("length", "INTEGER"),
                                                                   ("padding", "STRING")]
    assert sig["returnType"] == "STRING"
    status, got = ksql(fed.port, "DESCRIBE FUNCTION no_such_fn;")
    assert status == 400 and "Can't find any functions with the name 'no_such_fn'" in got["message"]


def table_rows(port, name):
    status, header, rows = query(port, "SELECT * FROM %s;" % name)
    assert status == 200, header
    return header["columnNames"], rows


def test_create_terminate_drop(gamingd, tmp_path):
    src = str(tmp_path / "src.jsonl")
    write_lines(src, reference_lines())
    d = gamingd(src, args=["--grace", "3650d"])
    wait_applied(d, 5)
    status, doc = ksql(d.port, "CREATE TABLE per_game AS SELECT game_id, COUNT(*) AS n, MAX(score) AS best "
                                "FROM %s GROUP BY game_id EMIT CHANGES;" % ENRICHED)
    assert status == 200, doc
    cs = doc[0]
    assert cs["@type"] == "currentStatus" and cs["commandId"] == "table/`PER_GAME`/create"
    assert cs["commandStatus"]["status"] == "SUCCESS" and cs["commandStatus"]["queryId"].startswith("CTAS_PER_GAME_")
    status, doc = ksql(d.port, "CREATE STREAM big_scores AS SELECT player_id, score FROM %s WHERE score > 1005;" % ENRICHED)
    assert status == 200 and doc[0]["commandStatus"]["queryId"].startswith("CSAS_BIG_SCORES_")
    assert ksql(d.port, "CREATE TABLE per_game AS SELECT game_id, COUNT(*) FROM %s GROUP BY game_id;" % ENRICHED)[0] == 400
    assert ksql(d.port, "CREATE TABLE IF NOT EXISTS per_game AS SELECT game_id, COUNT(*) FROM %s GROUP BY game_id;"
                % ENRICHED)[0] == 200
    assert "per_game" in [t["name"] for t in d.get("/v1/tables").json["tables"]]
    assert "big_scores" in [s["name"] for s in d.get("/v1/streams").json["streams"]]
    with open(src, "a") as f:
        for i in range(10):
            f.write(json.dumps(activity(i, "g1", "p1", BASE_MS + i * 1000, score=1000 + i)) + "\n")
    wait_applied(d, 15)
    assert table_rows(d.port, "per_game") == (["GAME_ID", "N", "BEST"], [["g1", 10, 1009]])
    assert d.get("/v1/tables/per_game").json["rows"] == [{"game_id": "g1", "n": 10, "best": 1009}]
    qid = cs["commandStatus"]["queryId"]
    status, doc = ksql(d.port, "TERMINATE %s;" % qid)
    assert status == 200 and doc[0]["commandStatus"]["message"] == "Query terminated."
    with open(src, "a") as f:
        f.write(json.dumps(activity(50, "g1", "p1", BASE_MS + 60000, score=5000)) + "\n")
    wait_applied(d, 16)
    time.sleep(0.3)
    assert table_rows(d.port, "per_game")[1] == [["g1", 10, 1009]]  # no longer maintained, still readable
    queries = {q["id"]: q for q in ksql(d.port, "SHOW QUERIES;")[1][0]["queries"]}
    assert queries[qid]["state"] == "TERMINATED"
    status, doc = ksql(d.port, "CREATE TABLE big_by_player AS SELECT player_id, COUNT(*) AS n FROM big_scores "
                                "GROUP BY player_id;")
    assert status == 200, doc
    status, doc = ksql(d.port, "DROP STREAM big_scores;")  # a table's statement reads it
    assert status == 400 and "CTAS_BIG_BY_PLAYER_" in doc["message"], doc
    status, doc = ksql(d.port, "DROP TABLE per_game; DROP TABLE big_by_player; DROP STREAM big_scores; "
                                "DROP TABLE IF EXISTS per_game;")
    assert status == 200, doc
    assert doc[0]["commandStatus"]["message"] == "Source `PER_GAME` (topic: PER_GAME) was dropped."
    assert doc[0]["commandId"] == "table/PER_GAME/drop"
    assert "per_game" not in [t["name"] for t in d.get("/v1/tables").json["tables"]]
    status, doc, _ = query(d.port, "SELECT * FROM per_game;")
    assert status == 400 and "does not exist" in doc["message"]
    # the name can be taken again: a new table, empty, with its own columns (not a plan kept for the old one)
    assert ksql(d.port, "CREATE TABLE per_game AS SELECT game_id, MIN(score) AS worst FROM %s GROUP BY game_id;"
                % ENRICHED)[0] == 200
    for _ in range(4):  # new connections: both HTTP threads answer
        assert table_rows(d.port, "per_game") == (["GAME_ID", "WORST"], [])


@pytest.mark.parametrize("threads", ["1", "2", "4"])
def test_tables_made_while_running_read_the_figures_on_every_thread_layout(gamingd, tmp_path, threads):
    """A table reading the enriched record's figures sees each record's own
    figures however the tables are spread over the ingest threads (with four,
    the figures are worked out on a worker, not the ingest thread); so does
    a derived stream's filter. Hand-worked: in one 5-minute window of game
    gz, players q1, q2, q3, then q1 again make active_players_count 1, 2, 3,
    3, and q1's second record makes its total_sessions_1h 2."""
    src = str(tmp_path / "src.jsonl")
    write_lines(src, reference_lines())
    d = gamingd(src, args=["--grace", "3650d", "--ingest-threads", threads])
    wait_applied(d, 5)
    assert ksql(d.port, "CREATE TABLE fig_per_game AS SELECT game_id, MAX(active_players_count) AS most, "
                        "SUM(total_sessions_1h) AS sessions, COUNT(*) AS n FROM %s GROUP BY game_id;" % ENRICHED)[0] == 200
    assert ksql(d.port, "CREATE TABLE plain_per_game AS SELECT game_id, SUM(score) AS points FROM %s "
                        "GROUP BY game_id;" % ENRICHED)[0] == 200
    pool = concurrent.futures.ThreadPoolExecutor(1)
    pushed = pool.submit(query, d.port, "SELECT player_id FROM %s WHERE active_players_count >= 3 "
                                        "EMIT CHANGES LIMIT 2;" % ENRICHED)
    time.sleep(1.0)  # subscribed before the records come
    with open(src, "a") as f:
        for i, p in enumerate(["q1", "q2", "q3", "q1"]):
            f.write(json.dumps(activity(100 + i, "gz", p, BASE_MS + i * 1000, score=10 * (i + 1))) + "\n")
    wait_applied(d, 9)
    assert table_rows(d.port, "fig_per_game") == (["GAME_ID", "MOST", "SESSIONS", "N"], [["gz", 3, 5, 4]])
    assert table_rows(d.port, "plain_per_game") == (["GAME_ID", "POINTS"], [["gz", 100]])
    status, _, rows = pushed.result(timeout=30)
    assert status == 200 and rows == [["q3"], ["q1"]], rows
    pool.shutdown()


@pytest.mark.parametrize("threads", ["1", "2", "4"])
def test_a_record_late_only_for_a_table_reading_the_figures_is_counted_late(gamingd, tmp_path, threads):
    """Whether a record is late for a table whose WHERE reads a figure is
    known once the figures are (with four threads, on a worker). Hand-worked,
    --grace 10m, H an hour boundary: a table of one-hour windows with no
    grace period and a WHERE that every record passes (a record's
    total_sessions_1h counts itself) gets r1 at H - 20 s, then r2 at H + 30 s
    closes its window [H - 1 h, H), so r3 at H - 10 s is late for it alone:
    every built-in window of r3 is open for 10 minutes past its end. One
    late record; the table counts r1 and r2, one per window."""
    src = str(tmp_path / "src.jsonl")
    write_lines(src, reference_lines())
    d = gamingd(src, args=["--grace", "10m", "--ingest-threads", threads])
    wait_applied(d, 5)
    assert ksql(d.port, "CREATE TABLE strict_hours AS SELECT game_id, COUNT(*) AS n FROM %s "
                        "WINDOW TUMBLING (SIZE 1 HOUR, GRACE PERIOD 0 SECONDS) WHERE total_sessions_1h >= 1 "
                        "GROUP BY game_id;" % ENRICHED)[0] == 200
    h = BASE_MS + 3600 * 1000
    with open(src, "a") as f:
        for i, (p, ts) in enumerate([("q1", h - 20000), ("q2", h + 30000), ("q3", h - 10000)]):
            f.write(json.dumps(activity(300 + i, "gz", p, ts)) + "\n")
    wait_applied(d, 8)
    late = ("gamingd_late_records_total", frozenset())
    deadline = time.time() + 10
    while d.metrics().get(late, 0) < 1 and time.time() < deadline:
        time.sleep(0.1)
    assert d.metrics()[late] == 1
    _, rows = table_rows(d.port, "strict_hours")
    assert sorted(rows) == [["gz", h - 3600 * 1000, h, 1], ["gz", h, h + 3600 * 1000, 1]], rows


def test_a_record_too_big_for_the_ring_is_applied_in_order_with_its_figures(gamingd, tmp_path):
    """A record whose strings do not fit a ring slot (a 700-byte game name)
    is applied by the ingest thread itself, the workers drained first: its
    figures, tables and output line are those of any other record, in
    order. Hand-worked: players q1..q6 alternate between games big and g2 in
    one 5-minute window, so each game's active players go 1, 2, 3."""
    src = str(tmp_path / "src.jsonl")
    long_name = "N" * 700
    write_lines(src, [{"topic": "gaming_games", "key": "big", "value": {"game_id": "big", "game_name": long_name,
                                                                          "genre": "Action"}}] + reference_lines())
    d = gamingd(src, args=["--grace", "3650d", "--ingest-threads", "3"])
    wait_applied(d, 6)
    assert ksql(d.port, "CREATE TABLE names AS SELECT game_id, COUNT(*) AS n, MAX(active_players_count) AS most, "
                        "LATEST_BY_OFFSET(game_name) AS name FROM %s GROUP BY game_id;" % ENRICHED)[0] == 200
    players = ["q1", "q2", "q3", "q4", "q5", "q6"]
    with open(src, "a") as f:
        for i, p in enumerate(players):
            f.write(json.dumps(activity(200 + i, "big" if i % 2 == 0 else "g2", p, BASE_MS + i * 1000)) + "\n")
    wait_applied(d, 12)
    got = sorted(table_rows(d.port, "names")[1])
    assert got == [["big", 3, 3, long_name], ["g2", 3, 3, "Game g2"]], got
    out = [r for r in read_output(d.output)[0] if r["activity_id"].startswith("a2")]
    assert [r["activity_id"] for r in out] == ["a%d" % (200 + i) for i in range(6)]
    assert [r["active_players_count"] for r in out] == [1, 1, 2, 2, 3, 3]
    assert [r["game_name"] == long_name for r in out] == [True, False] * 3


def test_user_tables_survive_restart_and_kill9(gamingd, tmp_path):
    """A table keeps its definition and rows across a clean restart and a
    kill -9; its rows are those one uninterrupted run gives."""
    src = str(tmp_path / "src.jsonl")
    data = str(tmp_path / "data")
    write_lines(src, reference_lines())
    d = gamingd(src, args=["--grace", "3650d"], data_dir=data)
    wait_applied(d, 5)
    assert ksql(d.port, "CREATE TABLE per_player AS SELECT player_id, COUNT(*) AS n, SUM(score) AS total, "
                         "COUNT_DISTINCT(game_id) AS games FROM %s WINDOW TUMBLING (SIZE 1 MINUTE) "
                         "GROUP BY player_id;" % ENRICHED)[0] == 200
    # a table over a derived stream: at start, definitions compile again in the order they were made
    assert ksql(d.port, "CREATE STREAM high AS SELECT game_id, score FROM %s WHERE score > 2990;" % ENRICHED)[0] == 200
    assert ksql(d.port, "CREATE TABLE high_count AS SELECT game_id, COUNT(*) AS n FROM high GROUP BY game_id;")[0] == 200
    recs = [activity(i, "g%d" % (1 + i % 2), "p%d" % (1 + i % 3), BASE_MS + i * 500, score=i) for i in range(3000)]
    with open(src, "a") as f:
        for r in recs[:1000]:
            f.write(json.dumps(r) + "\n")
    wait_applied(d, 1005)
    d.stop()
    d = gamingd(src, args=["--grace", "3650d"], data_dir=data)
    with open(src, "a") as f:
        for r in recs[1000:]:
            f.write(json.dumps(r) + "\n")
    time.sleep(0.2)
    d.kill9()  # somewhere in the middle, or after
    d = gamingd(src, args=["--grace", "3650d"], data_dir=data)
    wait_applied(d, 3005)
    want = {}
    for r in recs:
        v = r["value"]
        k = (v["player_id"], v["activity_timestamp"] // 60000 * 60000)
        n, total, games = want.get(k, (0, 0, set()))
        want[k] = (n + 1, total + v["score"], games | {v["game_id"]})
    names, rows = table_rows(d.port, "per_player")
    assert names == ["PLAYER_ID", "WINDOWSTART", "WINDOWEND", "N", "TOTAL", "GAMES"]
    assert sorted(rows) == sorted([[p, ws, ws + 60000, n, t, len(g)] for (p, ws), (n, t, g) in want.items()])
    high = {}
    for r in recs:
        if r["value"]["score"] > 2990:
            high[r["value"]["game_id"]] = high.get(r["value"]["game_id"], 0) + 1
    assert sorted(table_rows(d.port, "high_count")[1]) == sorted([[g, n] for g, n in high.items()])


def test_array_and_map_aggregates_in_a_table_read_by_sql_and_rest(gamingd, tmp_path):
    """A table with TOPK, TOPKDISTINCT, COLLECT_LIST, COLLECT_SET and
    HISTOGRAM: its rows through /query-stream (the header's ARRAY and MAP
    types), /query, DESCRIBE, /v1/tables and SSE, as JSON arrays and objects;
    the same after a restart, and still counting (lists read back from LMDB).
    Expected values are computed here from the records written."""
    src = str(tmp_path / "src.jsonl")
    data = str(tmp_path / "data")
    write_lines(src, reference_lines())
    d = gamingd(src, args=["--grace", "3650d"], data_dir=data)
    wait_applied(d, 5)
    status, doc = ksql(d.port, "CREATE TABLE lists AS SELECT game_id, TOPK(score, 2) AS top2, "
                                "TOPKDISTINCT(score, 2) AS top2d, COLLECT_LIST(player_id) AS players, "
                                "COLLECT_SET(player_id) AS distinct_players, HISTOGRAM(player_id) AS per_player "
                                "FROM %s WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY game_id;" % ENRICHED)
    assert status == 200, doc
    scores = [7, 9, 9, 3, 12, 9, 1, 12, 5, 4]
    recs = [activity(i, "g%d" % (1 + i % 2), "p%d" % (1 + i % 3), BASE_MS + i * 1000, score=s)
            for i, s in enumerate(scores)]

    def expected(records):
        rows = {}
        for r in records:
            v = r["value"]
            ws = v["activity_timestamp"] // 60000 * 60000
            row = rows.setdefault((v["game_id"], ws), {"scores": [], "players": []})
            row["scores"].append(v["score"])
            row["players"].append(v["player_id"])
        out = []
        for (g, ws), row in sorted(rows.items()):
            firsts = list(dict.fromkeys(row["players"]))
            out.append([g, ws, ws + 60000, sorted(row["scores"], reverse=True)[:2],
                        sorted(set(row["scores"]), reverse=True)[:2], row["players"], firsts,
                        {p: row["players"].count(p) for p in firsts}])
        return out

    def check(d, records):
        status, header, rows = query(d.port, "SELECT * FROM lists;")
        assert status == 200, header
        assert header["columnNames"] == ["GAME_ID", "WINDOWSTART", "WINDOWEND", "TOP2", "TOP2D", "PLAYERS",
                                         "DISTINCT_PLAYERS", "PER_PLAYER"]
        assert header["columnTypes"] == ["STRING", "BIGINT", "BIGINT", "ARRAY<BIGINT>", "ARRAY<BIGINT>",
                                         "ARRAY<STRING>", "ARRAY<STRING>", "MAP<STRING, BIGINT>"]
        want = expected(records)
        assert sorted(rows) == want
        got = d.get("/v1/tables/lists?from=0&to=9999999999999").json["rows"]
        assert sorted([[r["game_id"], r["window_start"], r["window_end"], r["top2"], r["top2d"], r["players"],
                        r["distinct_players"], r["per_player"]] for r in got]) == want
        columns = {c["name"]: c["type"] for t in d.get("/v1/tables").json["tables"] if t["name"] == "lists"
                   for c in t["value_columns"]}
        assert columns["per_player"] == "MAP<STRING, BIGINT>" and columns["top2"] == "ARRAY<BIGINT>"

    sse = Stream(d.port, "lists")
    with open(src, "a") as f:
        for r in recs[:6]:
            f.write(json.dumps(r) + "\n")
    wait_applied(d, 11)
    check(d, recs[:6])
    status, _, body = post(d.port, "/query", {"ksql": "SELECT top2, per_player FROM lists WHERE game_id = 'g1';"})
    assert status == 200
    v1 = json.loads(body)
    assert v1[0]["header"]["schema"] == "`TOP2` ARRAY<BIGINT>, `PER_PLAYER` MAP<STRING, BIGINT>"
    assert v1[1]["row"]["columns"] == [[12, 9], {"p1": 1, "p3": 1, "p2": 1}]
    # SSE: the table's changes (a row per group and commit) since the
    # subscription, its lists as JSON arrays and objects; the last of each
    # group is its row
    try:
        assert sse.status == 200, sse.body
        last = {e.json["game_id"]: e.json for e in sse.take(100, deadline_s=10, silence_s=2)}
    finally:
        sse.close()
    assert sorted([r["game_id"], r["window_start"], r["window_end"], r["top2"], r["top2d"], r["players"],
                   r["distinct_players"], r["per_player"]] for r in last.values()) == expected(recs[:6])
    status, _, body = post(d.port, "/query-stream", {"sql": "SELECT game_id, top2 FROM lists ORDER BY top2;"})
    assert status == 400 and "ARRAYs and MAPs have no order" in json.loads(body)["message"]
    r = d.get("/v1/tables/lists?order_by=per_player")
    assert r.status == 400 and "ARRAYs and MAPs have no order" in r.json["message"]
    status, doc = ksql(d.port, "DESCRIBE lists;")
    fields = {f["name"]: f["schema"] for f in doc[0]["sourceDescription"]["fields"]}
    assert fields["TOP2"] == {"type": "ARRAY", "fields": None,
                              "memberSchema": {"type": "BIGINT", "fields": None, "memberSchema": None}}
    assert fields["PER_PLAYER"]["type"] == "MAP" and fields["PER_PLAYER"]["memberSchema"]["type"] == "BIGINT"
    d.stop()
    d = gamingd(src, args=["--grace", "3650d"], data_dir=data)
    wait_applied(d, 11)
    check(d, recs[:6])
    # a push query on the table reads its changes back, lists included
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    c.request("POST", "/query-stream", body=json.dumps({"sql": "SELECT * FROM lists EMIT CHANGES LIMIT 1;"}))
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.readline())["columnTypes"][-1] == "MAP<STRING, BIGINT>"
    with open(src, "a") as f:
        for rec in recs[6:]:
            f.write(json.dumps(rec) + "\n")
    wait_applied(d, 15)
    pushed = [json.loads(l) for l in r.read().decode().split("\n") if l]
    assert len(pushed) == 1 and pushed[0] in [row for k in range(7, 11) for row in expected(recs[:k])], pushed
    check(d, recs)


# ---- keys and personal data ----

def test_scopes_and_masking(gamingd, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("reader-1 read\nanalyst-1 read,pii\nadmin-1 admin\n")
    src = str(tmp_path / "src.jsonl")
    write_lines(src, reference_lines())
    d = gamingd(src, args=["--api-keys", str(keys)])
    wait_applied(d, 5)
    reader, analyst, admin = ({"Authorization": "Bearer " + k} for k in ("reader-1", "analyst-1", "admin-1"))
    assert post(d.port, "/query-stream", {"sql": "SELECT * FROM gaming_games_table;"})[0] == 401
    status, header, rows = query(d.port, "SELECT player_id, email FROM gaming_players_table WHERE player_id = 'p1';", reader)
    assert status == 200 and rows == [["p1", "***@example.com"]]
    status, header, rows = query(d.port, "SELECT player_id, email FROM gaming_players_table WHERE player_id = 'p1';", analyst)
    assert rows == [["p1", "p1@example.com"]]
    status, doc, _ = query(d.port, "SELECT player_id FROM gaming_players_table WHERE email LIKE 'p1%';", reader)
    assert status == 403 and doc["error_code"] == 40300
    status, doc = ksql(d.port, "CREATE TABLE t AS SELECT game_id, COUNT(*) FROM %s GROUP BY game_id;" % ENRICHED, analyst)
    assert status == 403 and doc["@type"] == "statement_error"
    assert ksql(d.port, "CREATE TABLE t AS SELECT game_id, COUNT(*) AS n FROM %s GROUP BY game_id;" % ENRICHED, admin)[0] == 200
    assert ksql(d.port, "SHOW TABLES;", reader)[0] == 200
    assert d.get("/info").status == 200  # open, as /healthz


# ---- push queries ----

def push_query_on_reference_rows(gamingd, tmp_path, sql):
    """A daemon on a file of the reference rows and a push query (sql % the
    enriched stream's name) started on it: the daemon, its file, the
    connection and the response past its header."""
    src = str(tmp_path / "src.jsonl")
    write_lines(src, reference_lines())
    d = gamingd(src)
    wait_applied(d, 5)
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    c.request("POST", "/query-stream", body=json.dumps({"sql": sql % ENRICHED}))
    r = c.getresponse()
    json.loads(r.readline())
    return d, src, c, r


def test_emit_final_emits_each_window_once_past_its_grace(gamingd, tmp_path):
    """10-second windows with a 5-second grace, worked by hand: a window is
    final when the stream time reaches its end + 5 s."""
    d, src, c, r = push_query_on_reference_rows(
        gamingd, tmp_path, "SELECT game_id, WINDOWSTART AS ws, COUNT(*) AS n, SUM(score) AS total FROM %s "
                           "WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 5 SECONDS) GROUP BY game_id EMIT FINAL;")
    t = BASE_MS
    events = [(0, "g1", 1), (3000, "g1", 2), (4000, "g2", 4), (9999, "g1", 8),  # window [0, 10 s)
              (12000, "g1", 16),          # window [10, 20 s); stream time 12 s: [0, 10) not final yet
              (14000, "g2", 32),          # 14 s: still not (10 + 5 > 14)
              (8000, "g1", 64),           # late? no: 10 + 5 > 14, counts in [0, 10)
              (15000, "g1", 128),         # 15 s: [0, 10) is final now
              (9000, "g2", 256),          # late for [0, 10): skipped
              (31000, "g2", 512)]         # 31 s: [10, 20) final too ([30, 40) is not)
    with open(src, "a") as f:
        for i, (dt, g, s) in enumerate(events):
            f.write(json.dumps(activity(i, g, "p1", t + dt, score=s)) + "\n")
    rows = [json.loads(r.readline()) for _ in range(4)]
    c.close()
    assert sorted(rows) == sorted([["g1", t, 4, 1 + 2 + 8 + 64], ["g2", t, 1, 4],
                                   ["g1", t + 10000, 2, 16 + 128], ["g2", t + 10000, 1, 32]])


def test_emit_final_table_shows_and_publishes_each_window_once_closed(gamingd, tmp_path):
    """CREATE TABLE ... EMIT FINAL, 1-minute windows with no grace, worked by
    hand: a window is shown (pull) and published (its SSE stream) once the
    stream time reaches its end, each row once; a record late for it is
    dropped; a restart publishes nothing closed before it."""
    src = str(tmp_path / "src.jsonl")
    write_lines(src, reference_lines())
    d = gamingd(src, args=["--grace", "3650d"])
    wait_applied(d, 5)
    status, got = ksql(d.port, "CREATE TABLE fin AS SELECT game_id, COUNT(*) AS n, SUM(score) AS total FROM %s "
                               "WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS) GROUP BY game_id EMIT FINAL;"
                       % ENRICHED)
    assert status == 200, got
    t = BASE_MS
    events = [(0, "g1", 1), (10000, "g1", 2), (20000, "g2", 4),  # window [0, 60 s)
              (70000, "g1", 8),    # stream time 70 s: [0, 60 s) closed
              (5000, "g1", 16),    # late for it: dropped
              (130000, "g2", 32)]  # 130 s: [60, 120 s) closed, [120, 180 s) open
    stream = Stream(d.port, "fin", ndjson=True, timeout=10)
    with open(src, "a") as f:
        for i, (dt, g, sc) in enumerate(events):
            f.write(json.dumps(activity(i, g, "p1", t + dt, score=sc)) + "\n")
    want = [{"game_id": "g1", "window_start": t, "window_end": t + 60000, "n": 2, "total": 3},
            {"game_id": "g2", "window_start": t, "window_end": t + 60000, "n": 1, "total": 4},
            {"game_id": "g1", "window_start": t + 60000, "window_end": t + 120000, "n": 1, "total": 8}]
    got = []
    for ev in stream.events():
        got.append(json.loads(ev.data))
        if len(got) == len(want):
            break
    assert sorted(got, key=json.dumps) == sorted(want, key=json.dumps)
    wait_applied(d, 5 + len(events))
    assert sorted(table_rows(d.port, "fin")[1], key=json.dumps) == sorted(
        [[r["game_id"], r["window_start"], r["window_end"], r["n"], r["total"]] for r in want], key=json.dumps)
    stream.conn.close()
    d.stop()
    d.start()
    stream = Stream(d.port, "fin", ndjson=True, timeout=10)
    with open(src, "a") as f:
        f.write(json.dumps(activity(len(events), "g1", "p2", t + 200000, score=64)) + "\n")
    first = json.loads(next(stream.events()).data)  # [120, 180 s) closes: g2's row, nothing before it
    assert first == {"game_id": "g2", "window_start": t + 120000, "window_end": t + 180000, "n": 1, "total": 32}
    stream.conn.close()


def daemon_with_table(gamingd, tmp_path, create):
    """A daemon on a file of the reference rows, with a table made by the
    statement create (% the enriched stream's name); returns it and its file."""
    src = str(tmp_path / "src.jsonl")
    write_lines(src, reference_lines())
    d = gamingd(src)
    wait_applied(d, 5)
    status, got = ksql(d.port, create % ENRICHED)
    assert status == 200, got
    return d, src


def test_session_table_merges_stored_sessions_and_reads_on_after_a_restart(gamingd, tmp_path):
    """WINDOW SESSION (10 SECONDS, GRACE PERIOD 60 SECONDS) per player, worked
    by hand: a record bridging two stored sessions leaves one row (the later
    one's is deleted), an earlier record moves a session's start (its old row
    is deleted), a restart reads the open sessions back so that a record
    still joins them, and a record whose session would have closed is
    dropped."""
    d, src = daemon_with_table(gamingd, tmp_path,
                               "CREATE TABLE sess AS SELECT player_id, COUNT(*) AS n, SUM(score) AS total FROM %s "
                               "WINDOW SESSION (10 SECONDS, GRACE PERIOD 60 SECONDS) GROUP BY player_id EMIT CHANGES;")
    t = BASE_MS
    n = [0]

    def feed(events):
        with open(src, "a") as f:
            for dt, p, sc in events:
                f.write(json.dumps(activity(1000 + n[0], "g1", p, t + dt, score=sc)) + "\n")
                n[0] += 1
        wait_applied(d, 5 + n[0])

    def rows_now(want):
        deadline = time.time() + 30
        while True:
            names, rows = table_rows(d.port, "sess")
            if sorted(rows) == sorted(want) or time.time() > deadline:
                return names, sorted(rows)
            time.sleep(0.1)

    feed([(0, "p1", 1), (5000, "p1", 2), (22000, "p1", 4), (0, "p2", 8)])
    want = [["p1", t, t + 5000, 2, 3], ["p1", t + 22000, t + 22000, 1, 4], ["p2", t, t, 1, 8]]
    names, rows = rows_now(want)
    assert names == ["PLAYER_ID", "WINDOWSTART", "WINDOWEND", "N", "TOTAL"]
    assert rows == sorted(want)
    # 13 s is within 10 s of both p1 sessions (5 s and 22 s); -2 s moves p2's start
    feed([(13000, "p1", 16), (-2000, "p2", 32)])
    want = [["p1", t, t + 22000, 4, 23], ["p2", t - 2000, t, 2, 40]]
    assert rows_now(want)[1] == sorted(want)
    d.stop()
    d.start()
    # p1's session [0, 22 s] was read back: 30 s joins it; p2 at -50 s would
    # make a session ending 50 s before a stream time of 40 s, past its grace
    feed([(30000, "p1", 64), (40000, "p3", 128), (-50000, "p2", 256)])
    want = [["p1", t, t + 30000, 5, 87], ["p2", t - 2000, t, 2, 40], ["p3", t + 40000, t + 40000, 1, 128]]
    assert rows_now(want)[1] == sorted(want)
    r = d.get("/v1/tables/sess", {"player_id": "p1"})
    assert r.status == 200, r.body
    assert [(x["window_start"], x["window_end"], x["n"]) for x in r.json["rows"]] == [(t, t + 30000, 5)]
    status, got = ksql(d.port, "DESCRIBE sess;")
    assert status == 200 and got[0]["sourceDescription"]["windowType"] == "SESSION"
    status, header, rows = query(d.port, "SELECT player_id, n FROM sess WHERE player_id = 'p1' AND WINDOWEND >= %d;"
                                 % (t + 30000))
    assert status == 200 and rows == [["p1", 5]]


def test_session_merges_answer_as_ksqldbs_functional_tests(gamingd, tmp_path):
    """ksqlDB's latest-offset-udaf.json "merging session windows" cases
    (WINDOW SESSION (1 SECONDS); records at 0, 1500, then 700 ms, which
    bridges the two sessions): the merged session's LATEST_BY_OFFSET is the
    bridging record's, with nulls ignored or kept, and the N-valued forms
    keep the last N of both sessions and the record ([1, 2]; [null, 2]).
    p2 is its "when merging" pair (0, then a NULL at 700 ms); p3 the first
    case (no NULL). EARLIEST_BY_OFFSET(x, 2) worked by hand from ksqlDB's
    earliestTN: the first two of both sessions, the record too late."""
    d, src = daemon_with_table(gamingd, tmp_path,
                               "CREATE TABLE merged AS SELECT player_id, LATEST_BY_OFFSET(score) AS l, "
                               "LATEST_BY_OFFSET(score, false) AS lk, LATEST_BY_OFFSET(score, 2, true) AS ln, "
                               "LATEST_BY_OFFSET(score, 2, false) AS lnk, EARLIEST_BY_OFFSET(score, 2) AS en FROM %s "
                               "WINDOW SESSION (1 SECONDS) GROUP BY player_id EMIT CHANGES;")
    t = BASE_MS
    scores = {"p1": [1, None, 2], "p2": [1, None], "p3": [1, 3, 2]}
    times = [0, 1500, 700]
    n = 0
    with open(src, "a") as f:
        for i, dt in enumerate(times):
            for p, sc in scores.items():
                if i < len(sc):
                    f.write(json.dumps(activity(n, "g1", p, t + (700 if p == "p2" and i == 1 else dt), score=sc[i])) + "\n")
                    n += 1
    wait_applied(d, 5 + n)
    want = {("p1", t, t + 1500): [2, 2, [1, 2], [None, 2], [1, 2]],
            ("p2", t, t + 700): [1, None, [1], [1, None], [1]],
            ("p3", t, t + 1500): [2, 2, [3, 2], [3, 2], [1, 3]]}
    deadline = time.time() + 30
    while True:
        names, rows = table_rows(d.port, "merged")
        got = {tuple(r[:3]): r[3:] for r in rows}
        if got == want or time.time() > deadline:
            break
        time.sleep(0.1)
    assert names == ["PLAYER_ID", "WINDOWSTART", "WINDOWEND", "L", "LK", "LN", "LNK", "EN"]
    assert got == want


# WINDOW SESSION (10 SECONDS, GRACE PERIOD 0 SECONDS) EMIT FINAL, worked by hand
FINAL_SESSION_EVENTS = [
    (0, "p1", 1), (5000, "p1", 2),
    (3000, "p2", 4),    # ends 2 s before the stream time, no grace: late, dropped
    (5000, "p2", 64),   # p1 [0, 5 s], p2 [5 s]
    (30000, "p3", 8),   # stream time 30 s: p1's and p2's sessions closed (5 + 10 < 30)
    (12000, "p1", 16),  # its session closed: dropped
    (50000, "p4", 32)]  # 50 s: p3's [30 s] closed, p4's open (a p3 record at 50 s would have
#                         kept p3's open: one at 40 s could still bridge the two)
FINAL_SESSIONS = [["p1", BASE_MS, BASE_MS + 5000, 2, 3], ["p2", BASE_MS + 5000, BASE_MS + 5000, 1, 64],
                  ["p3", BASE_MS + 30000, BASE_MS + 30000, 1, 8]]


def write_final_session_events(src):
    with open(src, "a") as f:
        for i, (dt, p, sc) in enumerate(FINAL_SESSION_EVENTS):
            f.write(json.dumps(activity(i, "g1", p, BASE_MS + dt, score=sc)) + "\n")


def test_emit_final_session_push_query_emits_each_session_once_closed(gamingd, tmp_path):
    d, src, c, r = push_query_on_reference_rows(
        gamingd, tmp_path, "SELECT player_id, WINDOWSTART, WINDOWEND, COUNT(*) AS n, SUM(score) AS total FROM %s "
                           "WINDOW SESSION (10 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY player_id EMIT FINAL;")
    write_final_session_events(src)
    rows = [json.loads(r.readline()) for _ in FINAL_SESSIONS]
    c.close()
    assert sorted(rows) == sorted(FINAL_SESSIONS)


def test_emit_final_session_table_shows_and_publishes_each_session_once_closed(gamingd, tmp_path):
    """CREATE TABLE ... WINDOW SESSION (10 SECONDS, GRACE PERIOD 0 SECONDS)
    EMIT FINAL, worked by hand: a session is shown (pull) and published (its
    SSE stream) once no record within its gap can come any more (its end +
    10 s passed by the stream time), each once; a record for a session that
    closed is dropped; the open one is neither shown nor published."""
    d, src = daemon_with_table(gamingd, tmp_path,
                               "CREATE TABLE fin_s AS SELECT player_id, COUNT(*) AS n, SUM(score) AS total FROM %s "
                               "WINDOW SESSION (10 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY player_id EMIT FINAL;")
    stream = Stream(d.port, "fin_s", ndjson=True, timeout=10)
    write_final_session_events(src)
    want = [dict(zip(("player_id", "window_start", "window_end", "n", "total"), r)) for r in FINAL_SESSIONS]
    got = []
    for ev in stream.events():
        got.append(json.loads(ev.data))
        if len(got) == len(want):
            break
    stream.conn.close()
    assert sorted(got, key=json.dumps) == sorted(want, key=json.dumps)
    wait_applied(d, 5 + len(FINAL_SESSION_EVENTS))
    assert sorted(table_rows(d.port, "fin_s")[1]) == sorted(FINAL_SESSIONS)


def test_identical_push_queries_share_one_evaluation(fed):
    sql = "SELECT game_id, COUNT(*) AS n FROM %s GROUP BY game_id EMIT CHANGES;" % ENRICHED
    before = fed.metrics()[("gamingd_push_queries", frozenset())]
    conns = []
    for _ in range(3):
        c = http.client.HTTPConnection("127.0.0.1", fed.port, timeout=30)
        c.request("POST", "/query-stream", body=json.dumps({"sql": sql}))
        r = c.getresponse()
        conns.append((c, r, json.loads(r.readline())))
    assert len({h["queryId"] for _, _, h in conns}) == 1
    pushes = [q for q in ksql(fed.port, "SHOW QUERIES;")[1][0]["queries"]
              if q["queryType"] == "PUSH" and q["queryString"] == sql.rstrip(";")]
    assert len(pushes) == 1
    assert fed.metrics()[("gamingd_push_queries", frozenset())] == before + 1
    for c, _, _ in conns:
        c.close()


def test_a_slow_push_client_loses_its_oldest_rows_and_is_told(gamingd, tmp_path):
    src = str(tmp_path / "src.jsonl")
    write_lines(src, reference_lines())
    d = gamingd(src, args=["--push-query-buffer", "16", "--push-buffer", "65536"])
    wait_applied(d, 5)
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    c.request("POST", "/query-stream", body=json.dumps({"sql": "SELECT activity_id, player_id FROM %s EMIT CHANGES;"
                                                                  % ENRICHED}))
    r = c.getresponse()
    json.loads(r.readline())
    c.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
    with open(src, "a") as f:  # far more rows than the client's ring and socket hold, while it reads nothing
        for i in range(20000):
            f.write(json.dumps(activity(i, "g1", "p" + "x" * 200, BASE_MS + i)) + "\n")
    wait_applied(d, 20005)
    time.sleep(0.5)
    seen, notices = 0, []
    c.sock.settimeout(3)
    try:
        while True:
            line = r.readline()
            if not line:
                break
            v = json.loads(line)
            if isinstance(v, dict):
                notices.append(v)
            else:
                seen += 1
    except OSError:
        pass
    c.close()
    # rows this client lost to its ring (and records the query itself missed, if any)
    assert any(n["@type"] == "dropped" and n["dropped"] > 0 for n in notices), notices[:3]
    assert seen + sum(n["dropped"] for n in notices) == 20000
