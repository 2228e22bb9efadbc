"""PARTITION BY on derived streams and push queries, against the real
gamingd: the key column a re-keyed stream gets (DESCRIBE's `KEY`, first in
SELECT *, first in its SSE events and in the /v1/streams listing), what is
refused with a 400 (ksqlDB's partition-by.json functional tests word most
of the messages), and the definitions compiling again after a restart.

Expectations are hand-worked from the few records fed here; the row
contents of the same shapes over generated data are tests/sql cases
(push-partition-by-*.case)."""
import http.client
import json
import time

from conftest import BASE_MS, write_lines
from sse import Stream
from test_ksql import activity, ksql, reference_lines, wait_applied

ACTIVITY = "gaming_player_activity_stream"


def fields(port, name):
    status, body = ksql(port, "DESCRIBE %s;" % name)
    assert status == 200, body
    return [(f["name"], f["schema"]["type"], f.get("type")) for f in body[0]["sourceDescription"]["fields"]]


def push_header(port, sql):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/query-stream", body=json.dumps({"sql": sql}))
    r = c.getresponse()
    assert r.status == 200
    header = json.loads(r.readline())
    c.close()
    return header


def refused(port, statement, message):
    status, body = ksql(port, statement)
    assert status == 400 and body["@type"] == "statement_error" and body["error_code"] == 40001, body
    assert message in body["message"], body


def test_partition_by_rekeys_a_derived_stream(gamingd, tmp_path):
    src = str(tmp_path / "src.jsonl")
    data = str(tmp_path / "data")
    write_lines(src, reference_lines())
    d = gamingd(src, data_dir=data)
    wait_applied(d, 5)

    assert ksql(d.port, "CREATE STREAM by_game AS SELECT player_id, score, game_id FROM %s "
                        "PARTITION BY game_id;" % ACTIVITY)[0] == 200
    assert fields(d.port, "by_game") == [("GAME_ID", "STRING", "KEY"), ("PLAYER_ID", "STRING", None),
                                         ("SCORE", "BIGINT", None)]
    # an expression's key is named by its alias, or KSQL_COL_n when it has none
    assert ksql(d.port, "CREATE STREAM by_both AS SELECT score, UCASE(player_id), game_id AS g FROM %s "
                        "PARTITION BY game_id, UCASE(player_id);" % ACTIVITY)[0] == 200
    assert fields(d.port, "by_both") == [("G", "STRING", "KEY"), ("KSQL_COL_0", "STRING", "KEY"),
                                         ("SCORE", "BIGINT", None)]
    # PARTITION BY NULL: no key, the columns as selected
    assert ksql(d.port, "CREATE STREAM unkeyed AS SELECT score, player_id FROM %s PARTITION BY NULL;" % ACTIVITY)[0] == 200
    assert fields(d.port, "unkeyed") == [("SCORE", "BIGINT", None), ("PLAYER_ID", "STRING", None)]
    # a stream over a re-keyed stream keeps its key, first
    assert ksql(d.port, "CREATE STREAM by_game_high AS SELECT score, game_id FROM by_game WHERE score > 1000;")[0] == 200
    assert fields(d.port, "by_game_high") == [("GAME_ID", "STRING", "KEY"), ("SCORE", "BIGINT", None)]
    # re-keyed again, SELECT *: the new key, the values, the old key last
    assert ksql(d.port, "CREATE STREAM by_player AS SELECT * FROM by_game PARTITION BY player_id;")[0] == 200
    assert fields(d.port, "by_player") == [("PLAYER_ID", "STRING", "KEY"), ("SCORE", "BIGINT", None),
                                           ("GAME_ID", "STRING", None)]

    listing = d.get("/v1/streams").json["streams"]
    assert [s["columns"] for s in listing if s["name"] == "by_both"] == [["g", "ksql_col_0", "score"]]

    sse = Stream(d.port, "by_both")
    assert sse.status == 200
    recs = [activity(i, "g%d" % (1 + i % 2), "p%d" % (1 + i % 3), BASE_MS + i * 1000, score=999 + i) for i in range(4)]
    time.sleep(0.3)
    with open(src, "a") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    events = sse.take(4, deadline_s=30)
    assert [e.data for e in events] == [
        '{"g":"g1","ksql_col_0":"P1","score":999}',
        '{"g":"g2","ksql_col_0":"P2","score":1000}',
        '{"g":"g1","ksql_col_0":"P3","score":1001}',
        '{"g":"g2","ksql_col_0":"P1","score":1002}',
    ]
    sse.close()

    # the stored definitions compile again at start, keys and all
    d.stop()
    d = gamingd(src, data_dir=data)
    wait_applied(d, 9)
    assert fields(d.port, "by_both") == [("G", "STRING", "KEY"), ("KSQL_COL_0", "STRING", "KEY"),
                                         ("SCORE", "BIGINT", None)]
    assert fields(d.port, "by_player")[0] == ("PLAYER_ID", "STRING", "KEY")
    assert push_header(d.port, "SELECT * FROM by_game_high EMIT CHANGES;")["columnNames"] == ["GAME_ID", "SCORE"]


def test_partition_by_refusals(gamingd, tmp_path):
    src = str(tmp_path / "src.jsonl")
    write_lines(src, reference_lines())
    d = gamingd(src)
    wait_applied(d, 5)
    # ksqlDB's partition-by.json: "expression - missing key from projection"
    refused(d.port, "CREATE STREAM o AS SELECT player_id, score FROM %s PARTITION BY ABS(score);" % ACTIVITY,
            "The query used to build `o` must include the partitioning expression ABS(score) in its projection "
            "(eg, SELECT ABS(score)...).")
    # "key in projection more than once"
    refused(d.port, "CREATE STREAM o AS SELECT player_id, player_id AS p2, score FROM %s PARTITION BY player_id;"
            % ACTIVITY, "The projection contains a key column (`player_id`) more than once, aliased as: PLAYER_ID and P2.")
    # "partition by output col should give good error message"
    refused(d.port, "CREATE STREAM o AS SELECT score, player_id AS something FROM %s PARTITION BY something;"
            % ACTIVITY, "PARTITION BY column 'something' cannot be resolved. 'something' must be a column in the "
            "source schema since PARTITION BY is applied on the input.")
    # "complex expressions": a condition is not a value expression
    refused(d.port, "CREATE STREAM o AS SELECT * FROM %s PARTITION BY score AND game_id;" % ACTIVITY,
            "syntax error at 'AND'")
    refused(d.port, "CREATE STREAM o AS SELECT player_id FROM %s PARTITION BY player_id, player_id;" % ACTIVITY,
            "Duplicate PARTITION BY expression: player_id")
    refused(d.port, "CREATE STREAM o AS SELECT player_id FROM %s PARTITION BY player_id PARTITION BY game_id;"
            % ACTIVITY, "PARTITION is given twice")
    refused(d.port, "CREATE TABLE o AS SELECT game_id, COUNT(*) AS n FROM %s GROUP BY game_id PARTITION BY game_id;"
            % ACTIVITY, "Queries only support one of PARTITION BY and GROUP BY")
    # a stream over a re-keyed stream must keep its key
    assert ksql(d.port, "CREATE STREAM keyed AS SELECT game_id, score FROM %s PARTITION BY game_id;" % ACTIVITY)[0] == 200
    refused(d.port, "CREATE STREAM o AS SELECT score FROM keyed;",
            "The query used to build `o` must include the key column game_id in its projection")
    # nothing of the refused ones was made
    status, body = ksql(d.port, "SHOW STREAMS;")
    assert "O" not in [s["name"] for s in body[0]["streams"]]
