"""Access control (SPEC §8): API keys and scopes on every route, the masking
of player emails without the pii scope in every response and stream,
SIGHUP reloads. Expectations are worked out here by hand."""

import hashlib
import http.client
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import BASE_MS, free_port, metric_by_label, require_binary, write_lines
from sse import Stream

READ, PII, BOTH, ADMIN, HASHED = "reader-key-7f3a9", "pii-only-key-81c2", "analyst-key-55e0", "admin-key-c09d", "hashed-key-4b1e"
READ2 = "second-reader-key-3d21"
KEYS_FILE = """# API keys of the tests
{read} read
{read2} read
{pii} pii
{both}   read,pii
{admin} admin

sha256:{hashed} read
""".format(read=READ, read2=READ2, pii=PII, both=BOTH, admin=ADMIN, hashed=hashlib.sha256(HASHED.encode()).hexdigest())

PLAYERS = [("p1", "ann.smith@example.com"), ("p2", "plainname"), ("p3", None)]


def source_lines():
    lines = [{"topic": "gaming_games", "key": "g1", "value": {"game_id": "g1", "game_name": "Neon Arena", "genre": "Action"}}]
    for pid, email in PLAYERS:
        lines.append({"topic": "gaming_players", "key": pid, "value": {"player_id": pid, "username": "u-" + pid, "email": email}})
    for i, (pid, _) in enumerate(PLAYERS * 4):
        lines.append({"topic": "gaming_player_activity", "key": "a%d" % i, "value": {
            "activity_id": "a%d" % i, "player_id": pid, "game_id": "g1", "activity_type": "play",
            "activity_timestamp": BASE_MS + i * 1000, "score": 2000, "in_game_purchases": 1.5}})
    return lines


@pytest.fixture(scope="module")
def keyed(module_gamingd, tmp_path_factory):
    d = tmp_path_factory.mktemp("auth")
    keys = d / "keys.txt"
    keys.write_text(KEYS_FILE)
    src = str(d / "in.jsonl")
    open(src, "w").close()
    daemon = module_gamingd(src, args=["--api-keys", str(keys)])
    # streams are produced while someone listens: listen first, so that the
    # records below stay in the replay buffer for the tests to resume from
    keepers = [Stream(daemon.port, s, headers={"Authorization": "Bearer " + READ})
               for s in ("gaming_real_time_intelligence_platform", "gaming_players_table")]
    with open(src, "a") as f:
        f.write("".join(json.dumps(line) + "\n" for line in source_lines()))
    deadline = time.time() + 30
    while time.time() < deadline:
        status, _, body = request(daemon, "GET", "/readyz")
        if status == 200 and json.loads(body)["records_applied"] == len(source_lines()):
            break
        time.sleep(0.05)
    yield daemon
    for k in keepers:
        k.close()


def request(d, method, path, key=None, body=None, token=None):
    headers = {"Authorization": "Bearer " + key} if key else {}
    if token is not None:
        path += ("&" if "?" in path else "?") + "access_token=" + token
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    try:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers)
        resp = conn.getresponse()
        raw = resp.read() if not path.startswith("/v1/streams/") or resp.status != 200 else b""
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw
    finally:
        conn.close()


OPEN = [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/"), ("GET", "/assets/app.js"), ("GET", "/info"),
        ("GET", "/healthcheck")]
NEEDS_READ = [("GET", "/metrics"), ("GET", "/v1/tables"), ("GET", "/v1/tables/gaming_games_table"),
              ("GET", "/v1/tables/gaming_active_players_5min?game_id=g1"), ("GET", "/v1/streams"),
              ("GET", "/v1/streams/gaming_revenue_analytics?limit=1&last_event_id=0"),
              ("GET", "/grafana/"), ("POST", "/grafana/metrics"), ("POST", "/grafana/tag-keys"),
              ("POST", "/grafana/query"), ("POST", "/grafana/variable"), ("POST", "/grafana/metric-payload-options"),
              ("POST", "/grafana/tag-values")]
BODIES = {"/grafana/query": {"range": {"from": "2024-03-01T00:00:00Z", "to": "2024-03-01T01:00:00Z"},
                             "targets": [{"refId": "A", "target": "gaming_active_players_5min.active_players_count"}]},
          "/grafana/variable": {"payload": {"target": "game_id"}},
          "/grafana/metric-payload-options": {"metric": "gaming_active_players_5min.active_players_count", "name": "game_id"},
          "/grafana/tag-values": {"key": "game_id"}}


@pytest.mark.parametrize("method, path", OPEN + NEEDS_READ)
@pytest.mark.parametrize("who, key, token", [
    ("no key", None, None), ("unknown key", "not-a-key", None), ("pii only", PII, None), ("read", READ, None),
    ("read and pii", BOTH, None), ("admin", ADMIN, None), ("sha256 entry", HASHED, None),
    ("access_token", None, READ), ("unknown access_token", None, "nope")])
def test_every_route_with_every_kind_of_key(keyed, method, path, who, key, token):
    status, headers, body = request(keyed, method, path, key=key, body=BODIES.get(path.split("?")[0]), token=token)
    if (method, path) in OPEN:
        assert status == 200, (who, body[:200])
        return
    want = {"no key": 401, "unknown key": 401, "unknown access_token": 401, "pii only": 403}.get(who, 200)
    assert status == want, (who, status, body[:300])
    if status == 401:
        assert headers.get("www-authenticate", "").startswith("Bearer")
        assert json.loads(body)["error_code"] == 401
    if status == 403:
        assert "read" in json.loads(body)["message"]


def test_the_routes_open_without_a_key_are_the_documented_ones(keyed):
    """The HTTP API document's list of routes that need no key, the OpenAPI document's (security: [])
    and the server's behaviour agree; every other documented route is a 401 without a key."""
    import re
    import yaml
    from conftest import REPO_ROOT
    text = open(os.path.join(REPO_ROOT, "docs", "http-api.md")).read()
    sentence = re.search(r"Every route but (.*?) needs a key", text, re.S).group(1)
    documented = set(re.findall(r"`(/[^`]*)`", sentence))
    doc = yaml.safe_load(open(os.path.join(REPO_ROOT, "schemas", "openapi.yaml")))
    open_in_openapi = {p for p, ops in doc["paths"].items() if any(op.get("security") == [] for op in ops.values())}
    assert documented == open_in_openapi
    for path, ops in doc["paths"].items():
        concrete = path.replace("{table}", "gaming_games_table").replace("{file}", "app.js") \
            .replace("{stream}", "gaming_real_time_intelligence_platform?limit=1&last_event_id=0")
        for method in ops:
            status, _, body = request(keyed, method.upper(), concrete, body={} if method == "post" else None)
            if path in documented:
                assert status == 200, (method, path, status, body[:200])
            else:
                assert status == 401, (method, path, status, body[:200])


def rows(d, key, table, params=""):
    status, _, body = request(d, "GET", "/v1/tables/%s?limit=100%s" % (table, params), key=key)
    assert status == 200, body
    return json.loads(body)["rows"]


def test_emails_are_masked_without_the_pii_scope(keyed):
    masked = {r["player_id"]: r["email"] for r in rows(keyed, READ, "gaming_players_table")}
    assert masked == {"p1": "***@example.com", "p2": "***", "p3": None}
    plain = {r["player_id"]: r["email"] for r in rows(keyed, BOTH, "gaming_players_table")}
    assert plain == dict(PLAYERS)
    assert {r["player_id"]: r["email"] for r in rows(keyed, ADMIN, "gaming_players_table")} == dict(PLAYERS)


def test_ordering_on_the_email_needs_pii(keyed):
    status, _, body = request(keyed, "GET", "/v1/tables/gaming_players_table?order_by=email", key=READ)
    assert status == 403 and "pii" in json.loads(body)["message"]
    assert [r["email"] for r in rows(keyed, BOTH, "gaming_players_table", "&order_by=email")] == \
        [None, "ann.smith@example.com", "plainname"]


def sse_events(d, stream, key, n, params=None):
    s = Stream(d.port, stream, params=dict(params or {}, last_event_id=0, limit=n),
               headers={"Authorization": "Bearer " + key})
    try:
        assert s.status == 200, s.body
        return [e.json for e in s.events() if e.event == "message"]
    finally:
        s.close()


def test_streams_mask_emails_and_refuse_email_filters_without_pii(keyed):
    # resumed from id 0: the replay buffer holds the file's records
    masked = sse_events(keyed, "gaming_real_time_intelligence_platform", READ, 6)
    assert {e["player_id"]: e["player_email"] for e in masked} == {"p1": "***@example.com", "p2": "***", "p3": None}
    plain = sse_events(keyed, "gaming_real_time_intelligence_platform", BOTH, 6)
    assert {e["player_id"]: e["player_email"] for e in plain} == dict(PLAYERS)
    players = sse_events(keyed, "gaming_players_table", READ, 3)
    assert sorted(e["email"] or "" for e in players) == ["", "***", "***@example.com"]
    s = Stream(keyed.port, "gaming_real_time_intelligence_platform", params={"player_email": "plainname"},
               headers={"Authorization": "Bearer " + READ})
    assert s.status == 403
    s.close()
    got = sse_events(keyed, "gaming_real_time_intelligence_platform", BOTH, 2, params={"player_email": "plainname"})
    assert [e["player_id"] for e in got] == ["p2", "p2"]


def grafana(d, key, path, body):
    status, _, raw = request(d, "POST", path, key=key, body=body)
    return status, json.loads(raw)


def test_grafana_masks_emails_too(keyed):
    body = {"range": {"from": "2024-03-01T00:00:00Z", "to": "2024-03-01T01:00:00Z"},
            "targets": [{"refId": "A", "target": "gaming_players_table", "payload": {"format": "table"}}]}
    for key, want in ((READ, {"***@example.com", "***", None}), (BOTH, {e for _, e in PLAYERS})):
        status, got = grafana(keyed, key, "/grafana/query", body)
        assert status == 200
        col = [c["text"] for c in got[0]["columns"]].index("email")
        assert {r[col] for r in got[0]["rows"]} == want
        status, values = grafana(keyed, key, "/grafana/tag-values", {"key": "email"})
        assert {v["text"] for v in values} == {e for e in want if e}
    status, got = grafana(keyed, READ, "/grafana/query", dict(body, filters=[{"key": "email", "operator": "=~", "value": "a.*"}]))
    assert status == 403


def test_refusals_are_counted_and_keys_never_logged(keyed):
    request(keyed, "GET", "/v1/tables")
    status, _, body = request(keyed, "GET", "/metrics", key=READ)
    from conftest import parse_prometheus
    m = parse_prometheus(body.decode())
    refused = {dict(l)["route"]: v for (n, l), v in m.items()
               if n == "gamingd_http_requests_total" and dict(l)["status"] == "401"}
    assert refused.get("/v1/tables", 0) >= 1 and refused.get("/grafana/query", 0) >= 1
    log = keyed.log_tail(1000000)
    for k in (READ, PII, BOTH, ADMIN, HASHED):
        assert k not in log


@pytest.mark.parametrize("content, fragment", [
    ("good-key read\nbad-key reed\n", "line 2"),
    ("just-a-key\n", "line 1"),
    ("k1 read\nk1 pii\n", "line 2"),
    ("sha256:abc read\n", "line 1"),
    ("# only comments\n", "no key"),
])
def test_a_malformed_key_file_is_refused_naming_the_line(tmp_path, content, fragment):
    keys = tmp_path / "keys.txt"
    keys.write_text(content)
    r = subprocess.run([require_binary(), "--api-keys", str(keys), "--data-dir", str(tmp_path / "d"),
                        "--listen", "127.0.0.1:%d" % free_port()], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and fragment in r.stderr, r.stderr
    assert "good-key" not in r.stderr and "k1" not in r.stderr


def open_push_query(d, key, sql):
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    c.request("POST", "/query-stream", body=json.dumps({"sql": sql}), headers={"Authorization": "Bearer " + key})
    r = c.getresponse()
    assert r.status == 200
    return c, r, json.loads(r.readline())["queryId"]


def still_open(c):
    """True when the push response sends nothing within a second: no rows arrive (nothing is fed), and an
    ended response would send its last chunk."""
    import select
    return select.select([c.sock], [], [], 1)[0] == []


def transient_ids(d, key):
    status, _, body = request(d, "POST", "/ksql", key=key, body={"ksql": "SHOW QUERIES;"})
    assert status == 200
    return {q["id"] for q in json.loads(body)[0]["queries"] if q["queryType"] == "PUSH"}


def test_close_query_ends_only_the_callers_own_push_queries(keyed):
    import re
    shared = "SELECT game_id FROM gaming_games_stream EMIT CHANGES;"
    own = "SELECT player_id FROM gaming_players_stream EMIT CHANGES;"
    c1, r1, id1 = open_push_query(keyed, READ, own)
    c2, r2, id2 = open_push_query(keyed, READ2, shared)
    c3, r3, id3 = open_push_query(keyed, READ, shared)
    # ids are 128 random bits, not a counter
    assert re.fullmatch(r"transient_GAMING_PLAYERS_STREAM_[0-9a-f]{32}", id1), id1
    assert re.fullmatch(r"transient_GAMING_GAMES_STREAM_[0-9a-f]{32}", id2), id2
    # a read key lists only its own push queries; admin lists them all
    assert transient_ids(keyed, READ2) == {id2} and transient_ids(keyed, READ) == {id1, id3}
    assert {id1, id2} <= transient_ids(keyed, ADMIN)
    # another key's query id gets the unknown id's answer, and the query goes on
    unknown = "transient_GAMING_PLAYERS_STREAM_" + "0" * 32
    status_u, _, body_u = request(keyed, "POST", "/close-query", key=READ2, body={"queryId": unknown})
    status, _, body = request(keyed, "POST", "/close-query", key=READ2, body={"queryId": id1})
    assert status == status_u == 400 and json.loads(body)["@type"] == json.loads(body_u)["@type"] == "generic_error"
    assert json.loads(body)["message"].replace(id1, "ID") == json.loads(body_u)["message"].replace(unknown, "ID")
    assert still_open(c1)
    # a query two keys run: each ends only its own response
    status, _, body = request(keyed, "POST", "/close-query", key=READ, body={"queryId": id3})
    assert status == 200 and r3.read() == b""
    assert still_open(c2)
    # a read key cannot TERMINATE it either; the owner and admin can close theirs
    status, _, _ = request(keyed, "POST", "/ksql", key=READ, body={"ksql": "TERMINATE %s;" % id2})
    assert status == 403 and still_open(c2)
    status, _, _ = request(keyed, "POST", "/close-query", key=ADMIN, body={"queryId": id2})
    assert status == 200 and r2.read() == b""
    status, _, _ = request(keyed, "POST", "/close-query", key=READ, body={"queryId": id1})
    assert status == 200 and r1.read() == b""
    for c in (c1, c2, c3):
        c.close()


def test_sighup_reloads_keys_and_ends_the_streams_of_removed_ones(gamingd, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("stays-key read\ngoes-key read\n")
    d = gamingd("generator", args=["--rate", "50", "--api-keys", str(keys)])
    going = Stream(d.port, "gaming_real_time_intelligence_platform", headers={"Authorization": "Bearer goes-key"})
    staying = Stream(d.port, "gaming_real_time_intelligence_platform", params={"access_token": "stays-key"})
    assert going.status == 200 and staying.status == 200
    keys.write_text("stays-key read\nnew-key read,pii\n")
    d.proc.send_signal(signal.SIGHUP)
    going.set_timeout(10)
    t = time.time()
    ended = False
    try:
        for _ in going.events(comments=True):
            pass
        ended = True
    except (OSError, http.client.HTTPException):
        ended = True
    assert ended and time.time() - t < 5, "the removed key's stream did not end"
    staying.set_timeout(5)
    assert next(staying.events()).event == "message", "the remaining key's stream went on"
    assert request(d, "GET", "/v1/tables", key="goes-key")[0] == 401
    assert request(d, "GET", "/v1/tables", key="new-key")[0] == 200
    # a bad file keeps the keys in force and says why
    keys.write_text("stays-key read\nbroken\n")
    d.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert request(d, "GET", "/v1/tables", key="new-key")[0] == 200
    assert "not reloaded" in d.log_tail() and "line 2" in d.log_tail()
    staying.close()
    going.close()


def test_listening_beyond_loopback_without_keys_warns(tmp_path):
    port = free_port()
    proc = subprocess.Popen([require_binary(), "--listen", "0.0.0.0:%d" % port, "--data-dir", str(tmp_path / "d")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    assert "without --api-keys" in err
