"""Personal data on every read path: one attribute, one policy.

The catalog says which columns are personal -- PII on builtin.sql's source
columns, and whatever a definition computes from one. The matrix below is
generated from the catalog itself (every table GET /v1/tables lists, every
stream GET /v1/streams lists, every column they mark personal) and crossed
with every read path and both scopes: a read key never sees a secret and is
refused any use of one, a key with pii sees the values, and a read key can
still do everything with the other columns. The personal columns of the
definitions made here are worked out by hand (PERSONAL), so the catalog is
checked, not trusted. A new read path is one entry in OUTPUTS or USES; a new
function or definition is one line of DEFINITIONS."""

import http.client
import json
import os
import threading
import time

import pytest

from conftest import BASE_MS
from sse import Stream

READ, PII, ADMIN = "matrix-read-1c7e", "matrix-pii-90ab", "matrix-admin-44d2"
# the local parts are the secrets; the domains may show (***@domain)
PLAYERS = {"p1": "zx9kamber@corp-a.example", "p2": "qv7mbirch@corp-b.example", "p3": "wq8tcedarnoat", "p4": None}
SECRETS = ["zx9kamber", "qv7mbirch", "wq8tcedarnoat"]

DEFINITIONS = [
    "CREATE TABLE pii_by_player AS SELECT player_id, LATEST_BY_OFFSET(player_email) AS e1, "
    "LATEST_BY_OFFSET(player_email) AS e2, LATEST_BY_OFFSET(UCASE(player_email)) AS ue, "
    "COUNT_DISTINCT(player_email) AS ne, COUNT(*) AS c FROM gaming_real_time_intelligence_platform "
    "GROUP BY player_id EMIT CHANGES;",
    "CREATE TABLE pii_by_mail AS SELECT player_email, SUBSTRING(player_email, 1, 4) AS pre, COUNT(*) AS c "
    "FROM gaming_real_time_intelligence_platform GROUP BY player_email, SUBSTRING(player_email, 1, 4) EMIT CHANGES;",
    "CREATE TABLE pii_windowed AS SELECT player_email, COUNT(*) AS c FROM gaming_real_time_intelligence_platform "
    "WINDOW TUMBLING (SIZE 1 HOUR) GROUP BY player_email EMIT CHANGES;",
    "CREATE TABLE one_player AS SELECT player_id, COUNT(*) AS c FROM gaming_real_time_intelligence_platform "
    "WHERE player_email = 'zx9kamber@corp-a.example' GROUP BY player_id EMIT CHANGES;",
    "CREATE STREAM pii_players AS SELECT player_id, email AS mail, LCASE(email) AS lmail, level "
    "FROM gaming_players_stream;",
    "CREATE STREAM pii_stream AS SELECT player_id, player_email AS m, CONCAT(player_email, '!') AS cm, "
    "CASE WHEN score > 0 THEN player_email ELSE 'none' END AS cs, MASK_KEEP_RIGHT(player_email, 4) AS mk, "
    "REGEXP_EXTRACT('@(.*)', player_email, 1) AS dom, score FROM gaming_real_time_intelligence_platform;",
]
# worked out by hand from the statements above and builtin.sql
PERSONAL = {
    "pii_by_player": {"e1", "e2", "ue", "ne"},
    "pii_by_mail": {"player_email", "pre"},
    "pii_windowed": {"player_email"},
    "pii_stream": {"m", "cm", "cs", "mk", "dom"},
    "pii_players": {"mail", "lmail"},
    "gaming_players_table": {"email"},
    "gaming_players_stream": {"email"},
    "gaming_real_time_intelligence_platform": {"player_email"},
    "gaming_activity_enriched": {"player_email"},
}
RANGE = {"from": "2024-03-01T00:00:00Z", "to": "2024-03-02T00:00:00Z"}


def player_lines():
    return [{"topic": "gaming_players", "key": pid, "value": {"player_id": pid, "username": "u-" + pid, "email": email}}
            for pid, email in PLAYERS.items()]


def source_lines(start, n):
    lines = []
    for i in range(start, start + n):
        pid = "p%d" % (i % 4 + 1)
        lines.append({"topic": "gaming_player_activity", "key": "a%d" % i, "value": {
            "activity_id": "a%d" % i, "player_id": pid, "game_id": "g1", "activity_type": "play",
            "activity_timestamp": BASE_MS + i * 1000, "score": 100 + i, "in_game_purchases": 1.0}})
    return lines


def call(d, method, path, key, body=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


@pytest.fixture(scope="module")
def daemon(module_gamingd, tmp_path_factory):
    d = tmp_path_factory.mktemp("personal")
    keys = d / "keys.txt"
    keys.write_text("%s read\n%s read,pii\n%s admin\n" % (READ, PII, ADMIN))
    src = str(d / "in.jsonl")
    lines = [{"topic": "gaming_games", "key": "g1", "value": {"game_id": "g1", "game_name": "Neon", "genre": "Action"}}]
    lines += player_lines()
    with open(src, "w") as f:
        f.write("".join(json.dumps(l) + "\n" for l in lines))
    g = module_gamingd(src, args=["--api-keys", str(keys)])
    for stmt in DEFINITIONS:
        status, body = call(g, "POST", "/ksql", ADMIN, {"ksql": stmt})
        assert status == 200, body
    # listen to every stream, so that the events stay in the replay buffers
    keepers = [Stream(g.port, name, headers={"Authorization": "Bearer " + READ})
               for name in ("gaming_real_time_intelligence_platform", "gaming_activity_enriched", "gaming_players_table",
                            "gaming_players_stream", "pii_by_player", "pii_by_mail", "pii_windowed", "pii_stream",
                            "pii_players")]
    activity = player_lines() + source_lines(0, 40)  # the players again, for the streams derived from theirs
    with open(src, "a") as f:
        f.write("".join(json.dumps(l) + "\n" for l in activity))
    want = len(lines) + len(activity)
    deadline = time.time() + 30
    while time.time() < deadline and json.loads(call(g, "GET", "/readyz", READ)[1])["records_applied"] < want:
        time.sleep(0.05)
    g.src = src
    yield g
    for k in keepers:
        k.close()


def catalog(d):
    """{entry: (is_table, key columns, {column: personal})} as the catalog lists it."""
    out = {}
    tables = json.loads(call(d, "GET", "/v1/tables", READ)[1])["tables"]
    for t in tables:
        cols = {c["name"]: c["pii"] for c in t["key_columns"] + t["value_columns"]}
        out[t["name"]] = (True, [c["name"] for c in t["key_columns"]], cols, t["window_ms"] is not None)
    for s in json.loads(call(d, "GET", "/v1/streams", READ)[1])["streams"]:
        if s["name"] not in out:
            out[s["name"]] = (False, [], {c: c in s["personal_columns"] for c in s["columns"]}, False)
    return out


def test_the_catalog_marks_what_is_computed_from_personal_data(daemon):
    cat = catalog(daemon)
    for name, want in PERSONAL.items():
        assert {c for c, p in cat[name][2].items() if p} == want, name
    # nothing else of the built-in tables is personal
    for name, (_, _, cols, _) in cat.items():
        if name not in PERSONAL:
            assert not any(cols.values()), name


def leaks(text):
    low = text.lower()
    found = [s for s in SECRETS if s in low or s[:4] in low or s.encode().hex() in low]
    return found


# ---- output paths: what a reader is shown ----

def rest_rows(d, key, name, info, col):
    status, body = call(d, "GET", "/v1/tables/%s?limit=1" % name, key)
    pages = [body]
    cursor = json.loads(body).get("next_cursor") if status == 200 else None
    while cursor:  # every page, and every cursor
        status, body = call(d, "GET", "/v1/tables/%s?limit=1&cursor=%s" % (name, cursor), key)
        pages.append(body)
        cursor = json.loads(body).get("next_cursor")
    return status, "\n".join(pages)


def sse(d, key, name, info, col):
    s = Stream(d.port, name, params={"last_event_id": 0, "limit": 8}, headers={"Authorization": "Bearer " + key})
    try:
        if s.status != 200:
            return s.status, s.body
        return 200, "\n".join(e.data for e in s.take(8, deadline_s=10, silence_s=3))
    finally:
        s.close()


def grafana_table(d, key, name, info, col):
    return call(d, "POST", "/grafana/query", key, {"range": RANGE, "targets": [
        {"refId": "A", "target": name, "payload": {"format": "table"}}]})


def grafana_series(d, key, name, info, col):
    if not info[3]:
        return None
    return call(d, "POST", "/grafana/query", key, {"range": RANGE, "targets": [{"refId": "A", "target": name + ".c"}]})


def grafana_variable(d, key, name, info, col):
    return call(d, "POST", "/grafana/variable", key, {"payload": {"target": "%s.%s" % (name, col)}})


def grafana_tag_values(d, key, name, info, col):
    return call(d, "POST", "/grafana/tag-values", key, {"key": col})


def grafana_payload_options(d, key, name, info, col):
    if col not in info[1]:
        return None
    metric = name + ".c" if info[3] else name
    return call(d, "POST", "/grafana/metric-payload-options", key, {"metric": metric, "name": col})


def sql_pull(d, key, name, info, col):
    return call(d, "POST", "/query-stream", key, {"sql": "SELECT * FROM %s;" % name})


def sql_pull_column(d, key, name, info, col):
    return call(d, "POST", "/query-stream", key, {"sql": "SELECT %s AS x, %s FROM %s;" % (col, col, name)})


def sql_push(d, key, name, info, col):
    """A push query over the stream (or the table's changes) while records arrive."""
    out = {}

    def run():
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        try:
            c.request("POST", "/query-stream", body=json.dumps({"sql": "SELECT * FROM %s EMIT CHANGES LIMIT 4;" % name}),
                      headers={"Authorization": "Bearer " + key})
            r = c.getresponse()
            out["status"] = r.status
            out["body"] = r.read().decode()
        except OSError as e:
            out["body"] = "no rows: %r" % e
        finally:
            c.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    time.sleep(0.5)
    with open(d.src, "a") as f:
        start = int(time.time() * 1000) % 1000000 + 1000
        f.write("".join(json.dumps(l) + "\n" for l in player_lines() + source_lines(start, 8)))
    t.join(15)
    return out.get("status", 0), out.get("body", "")


TABLE_OUTPUTS = [rest_rows, grafana_table, grafana_series, grafana_variable, grafana_tag_values,
                 grafana_payload_options, sql_pull, sql_pull_column, sse, sql_push]
STREAM_OUTPUTS = [sse, sql_push]


def outputs_of(info):
    return TABLE_OUTPUTS if info[0] else STREAM_OUTPUTS


def personal_cells(d):
    cat = catalog(d)
    return [(name, info, col) for name, info in sorted(cat.items()) for col, p in sorted(info[2].items()) if p]


@pytest.mark.parametrize("path", sorted({f.__name__ for f in TABLE_OUTPUTS + STREAM_OUTPUTS}))
def test_a_read_key_sees_no_personal_value(daemon, path):
    checked, failures = 0, []
    for name, info, col in personal_cells(daemon):
        fn = next((f for f in outputs_of(info) if f.__name__ == path), None)
        if not fn:
            continue
        got = fn(daemon, READ, name, info, col)
        if got is None:
            continue
        status, body = got
        checked += 1
        if status != 200 or leaks(body):
            failures.append((name, col, status, leaks(body), body[:300]))
        clear = fn(daemon, PII, name, info, col)
        if clear[0] != 200:
            failures.append(("pii key refused", name, col, clear[0], clear[1][:300]))
    assert checked and not failures, failures


def test_a_pii_key_sees_the_values_in_clear(daemon):
    status, body = rest_rows(daemon, PII, "pii_by_player", None, None)
    rows = [json.loads(l)["rows"] for l in body.split("\n")]
    got = {r["player_id"]: (r["e1"], r["e2"], r["ue"], r["ne"]) for page in rows for r in page}
    assert got == {p: (e, e, e.upper() if e else None, 1 if e else 0) for p, e in PLAYERS.items()}
    status, body = rest_rows(daemon, READ, "pii_by_player", None, None)
    rows = [r for l in body.split("\n") for r in json.loads(l)["rows"]]
    want = {"p1": "***@corp-a.example", "p2": "***@corp-b.example", "p3": "***", "p4": None}
    assert {r["player_id"]: (r["e1"], r["e2"]) for r in rows} == {p: (m, m) for p, m in want.items()}
    assert {r["player_id"]: r["ue"] for r in rows} == {p: (None if m is None else "***") for p, m in want.items()}
    counts = {r["player_id"]: r["c"] for r in rows}  # the push path adds as many records for each
    assert set(counts) == {"p1", "p2", "p3", "p4"} and len(set(counts.values())) == 1 and counts["p1"] >= 10


# ---- uses: computing, filtering, comparing, grouping, ordering ----

def rest_filter(d, key, name, info, col):
    if not info[0] or col not in info[1]:
        return None
    return call(d, "GET", "/v1/tables/%s?%s=x" % (name, col), key)[0]


def rest_order(d, key, name, info, col):
    return call(d, "GET", "/v1/tables/%s?order_by=%s" % (name, col), key)[0] if info[0] else None


def sse_filter(d, key, name, info, col):
    s = Stream(d.port, name, params={"last_event_id": 0, "limit": 1, col: "x"}, headers={"Authorization": "Bearer " + key},
               timeout=3)
    try:
        return s.status
    finally:
        s.close()


def grafana_adhoc(d, key, name, info, col):
    if not info[0]:
        return None
    return call(d, "POST", "/grafana/query", key, {"range": RANGE, "filters": [{"key": col, "operator": "=~", "value": "z.*"}],
                                                   "targets": [{"refId": "A", "target": name, "payload": {"format": "table"}}]})[0]


def grafana_payload(d, key, name, info, col):
    if not info[0] or col not in info[1]:
        return None
    return call(d, "POST", "/grafana/query", key, {"range": RANGE, "targets": [
        {"refId": "A", "target": name, "payload": {"format": "table", col: "x"}}]})[0]


# Statements that use column {c} of source {t}, as data: (name, for tables, for streams;
# None where the statement does not apply). {emit} ends a statement over a stream.
SQL_USES = [
    ("sql_where", "SELECT * FROM {t} WHERE CAST({c} AS STRING) LIKE 'z%'", "same"),
    ("sql_where_computed", "SELECT * FROM {t} WHERE LEN(CAST({c} AS STRING)) > 3", "same"),
    ("sql_case", "SELECT CASE WHEN {c} IS NULL THEN 1 ELSE 0 END AS n FROM {t}", "same"),
    ("sql_compute", "SELECT UCASE(CAST({c} AS STRING)) AS u FROM {t}", "same"),
    ("sql_aggregate", None, "SELECT COUNT_DISTINCT({c}) AS n FROM {t} GROUP BY player_id"),
    ("sql_order", "SELECT * FROM {t} ORDER BY {c}", None),
    ("sql_group", None, "SELECT {c}, COUNT(*) AS c FROM {t} GROUP BY {c}"),
    # the WHERE of a push aggregation stays checked once a GROUP BY follows it
    ("sql_where_then_group", None,
     "SELECT player_id, COUNT(*) AS c FROM {t} WHERE CAST({c} AS STRING) LIKE 'zx%' GROUP BY player_id"),
]


def sql_use(name, for_tables, for_streams):
    def use(d, key, table, info, col):
        text = for_tables if info[0] else (for_tables if for_streams == "same" else for_streams)
        if text is None:
            return None
        return sql_status(d, key, text.format(t=table, c=col) + ("" if info[0] else " EMIT CHANGES LIMIT 1") + ";")
    use.__name__ = name
    return use


def sql_status(d, key, sql):
    """The status a statement is answered with (a push query is closed once its header came)."""
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    try:
        c.request("POST", "/query-stream", body=json.dumps({"sql": sql}), headers={"Authorization": "Bearer " + key})
        r = c.getresponse()
        if r.status != 200:
            body = r.read().decode()
            return r.status, body
        return 200, ""
    finally:
        c.close()


USES = [rest_filter, rest_order, sse_filter, grafana_adhoc, grafana_payload] + [sql_use(*u) for u in SQL_USES]


@pytest.mark.parametrize("use", USES, ids=lambda f: f.__name__)
def test_using_a_personal_column_needs_the_pii_scope(daemon, use):
    checked, failures = 0, []
    for name, info, col in personal_cells(daemon):
        if name == "gaming_players_stream" and use.__name__.startswith("sql_"):
            continue  # a reference topic's stream: gamingd answers SQL over the enriched records
        got = use(daemon, READ, name, info, col)
        if got is None:
            continue
        status, body = got if isinstance(got, tuple) else (got, "")
        checked += 1
        if status != 403:
            failures.append(("read key not refused", name, col, status))
        elif body and col not in body.lower():
            failures.append(("the refusal does not name the column", name, col, body[:200]))
        allowed = use(daemon, PII, name, info, col)
        allowed = allowed[0] if isinstance(allowed, tuple) else allowed
        if allowed not in (200, 204):
            failures.append(("pii key refused", name, col, allowed))
    assert checked and not failures, failures


def test_a_kept_plan_is_checked_and_masked_for_each_key(daemon):
    """SQL pull plans are kept for the statements asked again, but what a key
    may use and see is decided at every request: a pii key asking a statement
    first changes nothing for a read key asking it next."""
    use = "SELECT * FROM pii_by_player WHERE CAST(e1 AS STRING) LIKE 'z%';"
    show = {"sql": "SELECT * FROM pii_by_player;"}
    for _ in range(4):  # new connections: both HTTP threads answer, from their kept plans after the first
        assert sql_status(daemon, PII, use)[0] == 200
        status, body = sql_status(daemon, READ, use)
        assert status == 403 and "e1" in body.lower(), body
        status, clear = call(daemon, "POST", "/query-stream", PII, show)
        assert status == 200 and leaks(clear), clear[:300]
        status, masked = call(daemon, "POST", "/query-stream", READ, show)
        assert status == 200 and not leaks(masked), masked[:300]


@pytest.mark.parametrize("use", USES, ids=lambda f: f.__name__)
def test_a_read_key_still_uses_the_other_columns(daemon, use):
    cat = catalog(daemon)
    checked, failures = 0, []
    for name in ("pii_by_player", "pii_by_mail", "pii_stream", "gaming_real_time_intelligence_platform"):
        info = cat[name]
        col = "player_id" if "player_id" in info[2] else "c"
        got = use(daemon, READ, name, info, col)
        if got is None:
            continue
        status = got[0] if isinstance(got, tuple) else got
        checked += 1
        if status != 200:
            failures.append((name, col, got))
    if use.__name__ in ("grafana_payload", "rest_filter") and not checked:
        pytest.skip("no table here is keyed by a column that is not personal")
    assert not failures, failures


@pytest.mark.parametrize("statement", ["DESCRIBE EXTENDED one_player;", "SHOW QUERIES;"])
def test_a_definition_shows_its_literals_on_personal_data_masked(daemon, statement):
    """one_player's WHERE names an address: a read key sees the statement
    with its literals masked, a pii key as it was written."""
    status, body = call(daemon, "POST", "/ksql", READ, {"ksql": statement})
    assert status == 200, body
    assert "WHERE player_email = '***'" in body and not leaks(body), body
    status, body = call(daemon, "POST", "/ksql", PII, {"ksql": statement})
    assert status == 200 and "WHERE player_email = 'zx9kamber@corp-a.example'" in body, body


def test_a_stream_derived_from_the_players_stream_masks_what_it_takes_from_email(daemon):
    """pii_players reads the players stream (its records as they arrive):
    the address is masked for a read key, in clear for a pii key; LCASE of
    it is derived personal data (***)."""
    def events(key):
        s = Stream(daemon.port, "pii_players", params={"last_event_id": 0, "limit": 4},
                   headers={"Authorization": "Bearer " + key})
        try:
            return {e["player_id"]: e for e in (json.loads(x.data) for x in s.take(4, deadline_s=10, silence_s=3))}
        finally:
            s.close()
    clear, masked = events(PII), events(READ)
    assert {p: e["mail"] for p, e in clear.items()} == PLAYERS
    assert {p: (e["mail"], e["lmail"]) for p, e in masked.items()} == {
        "p1": ("***@corp-a.example", "***"), "p2": ("***@corp-b.example", "***"), "p3": ("***", "***"),
        "p4": (None, None)}


def grafana_rows(d, key, table, filters, payload=None):
    status, body = call(d, "POST", "/grafana/query", key, {"range": RANGE, "filters": filters, "targets": [
        {"refId": "A", "target": table, "payload": dict(payload or {}, format="table")}]})
    return status, json.loads(body)


def test_grafana_filters_on_computed_personal_columns_as_the_planner_decides(daemon):
    """Ad hoc filters on columns computed from player_email (ue, its UCASE;
    ne, a COUNT_DISTINCT of it): refused to a read key with the planner's
    message, and, for a pii key, applied to the computed values (a NULL
    passes !~ only). The rows expected come from PLAYERS, by hand."""
    refusal = "filtering on %s needs an API key with the pii scope: %s is personal data (selected, it is shown masked)"
    cases = [
        ({"key": "ue", "operator": "=~", "value": ".*@CORP-A\\.EXAMPLE"}, {"p1"}),
        ({"key": "ue", "operator": "!~", "value": ".*@CORP-A\\.EXAMPLE"}, {"p2", "p3", "p4"}),
        ({"key": "ue", "operator": "=", "value": "WQ8TCEDARNOAT"}, {"p3"}),
        ({"key": "ne", "operator": ">", "value": 0}, {p for p, e in PLAYERS.items() if e}),
    ]
    for f, want in cases:
        status, got = grafana_rows(daemon, READ, "pii_by_player", [f])
        assert status == 403 and got["message"] == refusal % (f["key"], f["key"]), (f, got)
        status, got = grafana_rows(daemon, PII, "pii_by_player", [f])
        assert status == 200, (f, got)
        assert {r[0] for r in got[0]["rows"]} == want, (f, got)
    # a filter on a column the table lacks is another table's: it does not apply
    status, got = grafana_rows(daemon, READ, "pii_by_player", [{"key": "pre", "operator": "=", "value": "x"}])
    assert status == 200 and {r[0] for r in got[0]["rows"]} == set(PLAYERS)


def test_grafana_refuses_a_personal_key_value_with_the_message_of_a_rest_filter(daemon):
    """The payload's value of a personal key column and the REST filter on it
    are one use, decided by one planner: the same 403, word for word."""
    rest_status, rest_body = call(daemon, "GET", "/v1/tables/pii_by_mail?player_email=x", READ)
    status, got = grafana_rows(daemon, READ, "pii_by_mail", [], {"player_email": ["x", "y"]})
    assert rest_status == status == 403
    assert got["message"] == json.loads(rest_body)["message"]
    status, got = grafana_rows(daemon, PII, "pii_by_mail", [], {"player_email": [PLAYERS["p1"], PLAYERS["p3"]]})
    assert status == 200 and sorted(r[0] for r in got[0]["rows"]) == sorted([PLAYERS["p1"], PLAYERS["p3"]])


def test_a_cursor_holds_no_key_bytes(daemon):
    status, body = call(daemon, "GET", "/v1/tables/pii_by_mail?limit=1", PII)
    cursor = json.loads(body)["next_cursor"]
    assert not leaks(cursor) and "corp-" not in cursor and "corp-".encode().hex() not in cursor


# ---- where the attribute comes from ----

def test_a_field_the_registry_tags_pii_is_personal_down_to_the_enriched_stream(gamingd, tmp_path):
    """The players topic's schema in the registry tags username PII: the
    players table and stream, the enriched record's player_username and a
    table over it are then personal, as email is by builtin.sql."""
    import urllib.request
    from kafka_env import Registry
    reg = Registry()
    try:
        schema = json.load(open(os.path.join(os.path.dirname(__file__), "..", "..", "schemas", "gaming_players.avsc")))
        for f in schema["fields"]:
            if f["name"] == "username":
                f["confluent:tags"] = ["PII"]
        req = urllib.request.Request(reg.url + "/subjects/gaming_players-value/versions", method="POST",
                                     data=json.dumps({"schema": json.dumps(schema)}).encode(),
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        urllib.request.urlopen(req).read()
        keys = tmp_path / "keys.txt"
        keys.write_text("%s read\n%s admin\n" % (READ, ADMIN))
        src = tmp_path / "in.jsonl"
        src.write_text("".join(json.dumps(l) + "\n" for l in player_lines() + source_lines(0, 8)))
        d = gamingd(str(src), args=["--api-keys", str(keys), "--schema-registry", reg.url])
        assert "tags field username PII" in d.log_tail()
        deadline = time.time() + 30
        while time.time() < deadline and json.loads(call(d, "GET", "/readyz", READ)[1])["records_applied"] < 12:
            time.sleep(0.05)
        cat = catalog(d)
        assert cat["gaming_players_table"][2]["username"] and cat["gaming_players_table"][2]["email"]
        assert cat["gaming_players_stream"][2]["username"]
        assert cat["gaming_real_time_intelligence_platform"][2]["player_username"]
        assert not cat["gaming_real_time_intelligence_platform"][2]["player_country"]
        status, body = call(d, "GET", "/v1/tables/gaming_players_table", READ)
        assert status == 200 and {r["username"] for r in json.loads(body)["rows"]} == {"***"}
        status, body = call(d, "GET", "/v1/tables/gaming_players_table?order_by=username", READ)
        assert status == 403 and "username" in body
        # Grafana labels players by username: masked as well
        status, body = call(d, "POST", "/grafana/variable", READ, {"payload": {"target": "player_id"}})
        assert status == 200 and {v["__text"] for v in json.loads(body)} == {"***"}
        status, body = call(d, "POST", "/grafana/variable", ADMIN, {"payload": {"target": "player_id"}})
        assert {v["__text"] for v in json.loads(body)} == {"u-p1", "u-p2", "u-p3", "u-p4"}
    finally:
        reg.close()


def test_the_avro_schemas_tag_what_builtin_sql_marks_pii():
    """One definition: builtin.sql's PII columns and the shipped schemas' tags agree."""
    import re
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    sql = open(os.path.join(root, "sql", "builtin.sql")).read()
    marked = set(re.findall(r"(\w+) STRING(?: PRIMARY KEY| KEY)? PII", sql))
    tagged = set()
    for name in sorted(n for n in os.listdir(os.path.join(root, "schemas")) if n.endswith(".avsc")):
        for f in json.load(open(os.path.join(root, "schemas", name)))["fields"]:
            if "PII" in f.get("confluent:tags", []):
                tagged.add(f["name"])
    assert marked == tagged == {"email", "player_email"}
