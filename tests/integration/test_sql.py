"""SQL as data: every tests/sql/*.case file is a test, run against the real
gamingd through ksqlDB's /query-stream and /ksql.

A case file is sections, each opened by a line `--- name`:
  about      what the case shows
  kind       pull   a pull query on a daemon that has applied all the data
             push   a push query started before the data arrives
             table  CREATE TABLE AS SELECT before the data; its rows after
             error  a statement gamingd refuses
  setup      statements for /ksql before the case's (push)
  statement  the SQL, exactly as sent
  reference  SQLite over the reference's records (the expected rows):
             enriched (the enriched records, rowid = processing order),
             activity, games_stream, players_stream (source records as
             decoded), games, players (the reference tables' last rows);
             $T stands for UNIX_TIMESTAMP()'s bounds (see `between`)
  changes    instead of a reference: the push query reads this table, and
             its rows are the reference's changes of it, projected
  rows       instead of a reference (pull): the expected rows, a JSON array
             a line, worked by hand or taken from ksqlDB's own tests (the
             case's `about` says which)
  expect     error: "STATUS CODE text the message holds"
  columns    the column names the header must give, as ksqlDB names them
  options    ordered          rows compare in order (else as a multiset)
             between C1 C2..  these columns lie between the reference run
                              with $T = the feed's start and $T = its end
             json C1 C2..     the reference gives these columns as JSON text
                              (SQLite's json_group_array, json_group_object):
                              an ARRAY or a MAP, compared parsed

The expected rows come from SQLite over tests/integration/reference.py's
records -- an evaluation independent of gamingd -- never from gamingd. All
cases share one data set: generated activity with no late record (--grace
is ten years), so SQLite's plain GROUP BY is what the windows hold."""
import glob
import http.client
import json
import math
import os
import socket
import sqlite3
import threading
import time

import pytest

import reference
from conftest import read_lines

CASE_DIR = os.path.join(os.path.dirname(__file__), "..", "sql")
EVENTS, SEED = 3000, 31
ARGS = ["--grace", "3650d", "--push-buffer", "262144", "--push-query-buffer", "65536"]


def parse_case(path):
    sections, name = {}, None
    with open(path) as f:
        for line in f.read().split("\n"):
            if line.startswith("--- "):
                name = line[4:].strip()
                sections[name] = []
            elif name is not None:
                sections[name].append(line)
    case = {k: "\n".join(v).strip("\n") for k, v in sections.items()}
    case["name"] = os.path.basename(path)[:-5]
    opts = case.get("options", "").split("\n")
    case["ordered"] = "ordered" in opts
    case["between"] = [c.lower() for o in opts if o.startswith("between ") for c in o.split()[1:]]
    case["json"] = [c.lower() for o in opts if o.startswith("json ") for c in o.split()[1:]]
    return case


CASES = [parse_case(p) for p in sorted(glob.glob(os.path.join(CASE_DIR, "*.case")))]


def cases_of(*kinds):
    return [c for c in CASES if c["kind"] in kinds]


# ---- the reference, in SQLite ----

def to_sql(v):
    return int(v) if isinstance(v, bool) else v


def build_db(lines, ref):
    db = sqlite3.connect(":memory:", check_same_thread=False)
    cols = list(reference.OUTPUT_COLUMNS)
    db.execute("CREATE TABLE enriched (%s)" % ", ".join(cols))
    db.executemany("INSERT INTO enriched VALUES (%s)" % ",".join("?" * len(cols)),
                   [[to_sql(e[c]) for c in cols] for e in ref.outputs])
    acols = list(reference.ACTIVITY_FIELDS)
    db.execute("CREATE TABLE activity (%s)" % ", ".join(acols))
    rename = {"activity_timestamp": "event_timestamp"}
    db.executemany("INSERT INTO activity VALUES (%s)" % ",".join("?" * len(acols)),
                   [[to_sql(e[rename.get(c, c)]) for c in acols] for e in ref.outputs])
    for topic, fields, stream, table, rows in (
            (reference.TOPIC_GAMES, reference.GAME_FIELDS, "games_stream", "games", ref.games),
            (reference.TOPIC_PLAYERS, reference.PLAYER_FIELDS, "players_stream", "players", ref.players)):
        fcols = list(fields)
        for t in (stream, table):
            db.execute("CREATE TABLE %s (%s)" % (t, ", ".join(fcols)))
        recs = []
        for line in lines:
            try:
                tp, key, value = reference.decode_line(line)
            except reference.BadRecord:
                continue
            if tp == topic and value is not None:
                recs.append([to_sql(value.get(c)) for c in fcols])
        db.executemany("INSERT INTO %s VALUES (%s)" % (stream, ",".join("?" * len(fcols))), recs)
        db.executemany("INSERT INTO %s VALUES (%s)" % (table, ",".join("?" * len(fcols))),
                       [[key if c == fcols[0] else to_sql(v.get(c)) for c in fcols] for key, v in rows.items()])
    return db


def reference_rows(db, case, t=None):
    sql = case["reference"].replace("$T", str(t if t is not None else 0))
    return [list(r) for r in db.execute(sql).fetchall()]


# ---- comparing ----

def norm(v):
    return int(v) if isinstance(v, bool) else v


def same(a, b):
    a, b = norm(a), norm(b)
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def key(row):
    return json.dumps([round(v, 6) if isinstance(v, float) else norm(v) for v in row], sort_keys=True)


def compare(case, got, want, names=None, low=None, high=None):
    if "columns" in case:
        assert names == case["columns"].split(), "%s: columns %s" % (case["name"], names)
    between = [i for i, n in enumerate(names or []) if n.lower() in case["between"]]
    parsed = [i for i, n in enumerate(names or []) if n.lower() in case["json"]]
    want = [[json.loads(v) if j in parsed and isinstance(v, str) else v for j, v in enumerate(w)] for w in want]
    assert want, "%s: the reference has no rows, so the case could not fail" % case["name"]
    assert len(got) == len(want), "%s: %d rows, want %d\n got %s\nwant %s" % (
        case["name"], len(got), len(want), got[:5], want[:5])
    if not case["ordered"] and not between:
        got, want = sorted(got, key=key), sorted(want, key=key)
    for i, (g, w) in enumerate(zip(got, want)):
        assert len(g) == len(w), "%s row %d: %s vs %s" % (case["name"], i, g, w)
        for j, (a, b) in enumerate(zip(g, w)):
            if j in between:
                assert low[i][j] <= a <= high[i][j], "%s row %d %s: %s not in [%s, %s]" % (
                    case["name"], i, names[j], a, low[i][j], high[i][j])
            else:
                assert same(a, b), "%s row %d col %d: got %r want %r\n got %s\nwant %s" % (
                    case["name"], i, j, a, b, g, w)


# ---- talking to gamingd ----

def post(port, path, body, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Content-Type"), data


def delimited(data):
    lines = [l for l in data.decode().split("\n") if l]
    header = json.loads(lines[0])
    return header, [json.loads(l) for l in lines[1:]]


class PushReader(threading.Thread):
    """A push query's client: reads its header and rows until it has `want`
    rows, the response ends, or `idle` seconds pass without one."""

    def __init__(self, port, sql, want, idle=8):
        super().__init__(daemon=True)
        self.port, self.sql, self.want, self.idle = port, sql, want, idle
        self.header, self.rows, self.error, self.status = None, [], None, None
        self.started = threading.Event()

    def run(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.idle)
            c.request("POST", "/query-stream", body=json.dumps({"sql": self.sql}))
            r = c.getresponse()
            self.status = r.status
            if r.status != 200:
                self.error = r.read().decode()
                self.started.set()
                return
            self.header = json.loads(r.readline())
            self.started.set()
            while len(self.rows) < self.want:
                line = r.readline()
                if not line:
                    break
                if line.strip():
                    v = json.loads(line)
                    if isinstance(v, list):
                        self.rows.append(v)
            c.close()
        except (socket.timeout, TimeoutError):
            pass
        except Exception as e:  # noqa: BLE001 -- reported by the test
            self.error = repr(e)
        finally:
            self.started.set()


# ---- fixtures ----

@pytest.fixture(scope="module")
def data(generated):
    path = generated(EVENTS, SEED)
    lines = read_lines(path)
    ref = reference.reference_for(lines, grace_ms=3650 * 86400000)
    return path, lines, ref, build_db(lines, ref)


@pytest.fixture(scope="module")
def pulled(module_gamingd, data):
    path, lines, ref, db = data
    d = module_gamingd(path, args=ARGS)
    wait_applied(d, len(lines))
    return d


@pytest.fixture(scope="module")
def pushed(module_gamingd, data, tmp_path_factory):
    """A daemon that starts with no data: tables are created and push
    queries started, then the data arrives."""
    path, lines, ref, db = data
    feed = str(tmp_path_factory.mktemp("sqlfeed") / "feed.jsonl")
    open(feed, "w").close()
    d = module_gamingd(feed, args=ARGS)
    for c in cases_of("table", "push"):
        for stmt in [s for s in (c.get("setup"), c["statement"] if c["kind"] == "table" else None) if s]:
            status, _, body = post(d.port, "/ksql", {"ksql": stmt})
            assert status == 200, (c["name"], body)
    readers = {}
    for c in cases_of("push"):
        want = len(changes_of(ref, c)) if c.get("changes") else len(reference_rows(db, c))
        readers[c["name"]] = PushReader(d.port, c["statement"], want)
        readers[c["name"]].start()
    for r in readers.values():
        r.started.wait(30)
    t0 = int(time.time() * 1000)
    with open(feed, "a") as f:
        for l in lines:
            f.write(l + "\n")
    wait_applied(d, len(lines))
    for r in readers.values():
        r.join(120)
    t1 = int(time.time() * 1000)
    return d, readers, (t0, t1)


def wait_applied(d, n, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = d.readyz()
        if r.status == 200 and r.json["records_applied"] >= n:
            return
        time.sleep(0.05)
    pytest.fail("gamingd did not apply %d records in %d s; log:\n%s" % (n, timeout, d.log_tail()))


def changes_of(ref, case):
    return [row for table, _, row in ref.changes if table == case["changes"] and not row.get("deleted")]


# ---- the cases ----

@pytest.mark.parametrize("case", cases_of("pull"), ids=lambda c: c["name"])
def test_pull(pulled, data, case):
    status, ctype, body = post(pulled.port, "/query-stream", {"sql": case["statement"]})
    assert status == 200, body
    assert ctype.startswith("application/vnd.ksqlapi.delimited.v1")
    header, rows = delimited(body)
    assert len(header["columnNames"]) == len(header["columnTypes"])
    want = [json.loads(l) for l in case["rows"].split("\n")] if "rows" in case else reference_rows(data[3], case)
    compare(case, rows, want, header["columnNames"])


@pytest.mark.parametrize("case", cases_of("table"), ids=lambda c: c["name"])
def test_table(pushed, data, case):
    d = pushed[0]
    name = case["statement"].split()[2]
    status, _, body = post(d.port, "/query-stream", {"sql": "SELECT * FROM %s;" % name})
    assert status == 200, body
    header, rows = delimited(body)
    compare(case, rows, reference_rows(data[3], case), header["columnNames"])


@pytest.mark.parametrize("case", cases_of("push"), ids=lambda c: c["name"])
def test_push(pushed, data, case):
    d, readers, (t0, t1) = pushed
    r = readers[case["name"]]
    assert r.error is None, r.error
    names = r.header["columnNames"]
    if case.get("changes"):
        want = [[row.get(n.lower()) for n in names] for row in changes_of(data[2], case)]
        compare(case, r.rows, want, names)
        return
    db = data[3]
    low, high = reference_rows(db, case, t0), reference_rows(db, case, t1)
    compare(case, r.rows, low, names, low, high)


@pytest.mark.parametrize("case", cases_of("error"), ids=lambda c: c["name"])
def test_error(pulled, case):
    status, ctype, body = post(pulled.port, "/query-stream", {"sql": case["statement"]})
    want_status, want_code, text = case["expect"].split(" ", 2)
    err = json.loads(body)
    assert status == int(want_status), body
    assert err["@type"] == "statement_error" and err["error_code"] == int(want_code), err
    assert text in err["message"], err
    assert err["statementText"].rstrip(";") == case["statement"].rstrip(";")


def readme_statements(text):
    """The SQL statements of markdown text: its sql blocks, and the SELECTs
    of its bash blocks, blanks squashed."""
    statements = []
    for block in text.split("```sql")[1:]:
        block = block.split("```")[0]
        stmt = []
        for line in block.split("\n"):
            if line.strip().startswith("--"):
                continue
            stmt.append(line)
            if line.rstrip().endswith(";"):
                statements.append(" ".join(" ".join(stmt).split()))
                stmt = []
    for block in text.split("```bash")[1:]:  # the SQL among the shell commands
        stmt = None
        for line in block.split("```")[0].split("\n"):
            if line.startswith("SELECT"):
                stmt = []
            if stmt is not None:
                stmt.append(line)
                if line.rstrip().endswith(";"):
                    statements.append(" ".join(" ".join(stmt).split()))
                    stmt = None
    return statements


def test_every_statement_of_the_data_products_readme_is_a_case():
    """The README's SQL, verbatim, each in a case (whitespace aside). The
    repository keeps its statements (tests/sql/readme-statements.md); where
    the README itself is at hand, the kept copy must hold all of it."""
    kept = readme_statements(open(os.path.join(CASE_DIR, "readme-statements.md")).read())
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "seed-data-product-readme.md")
    if os.path.exists(readme):
        assert readme_statements(open(readme).read()) == kept
    squash = {" ".join(c["statement"].split()) for c in CASES}
    assert len(kept) == 15
    missing = [s for s in kept if s not in squash]
    assert not missing, missing


@pytest.mark.parametrize("statement, message", [
    ('CREATE TABLE "ev""il\nname" AS SELECT game_id, COUNT(*) AS n FROM gaming_real_time_intelligence_platform '
     'GROUP BY game_id EMIT CHANGES;', "table name 'ev\"il\nname' is not allowed"),
    ('CREATE STREAM "back\\slash" AS SELECT game_id FROM gaming_real_time_intelligence_platform EMIT CHANGES;',
     "stream name 'back\\slash' is not allowed"),
    ('CREATE STREAM tick AS SELECT game_id AS "tick`" FROM gaming_real_time_intelligence_platform EMIT CHANGES;',
     "column name 'tick`' is not allowed"),
    ('CREATE TABLE w AS SELECT game_id, MAX(activity_timestamp) AS window_end FROM '
     'gaming_real_time_intelligence_platform WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY game_id EMIT CHANGES;',
     "`WINDOW_END` is a reserved column name"),
    ('CREATE STREAM ws AS SELECT game_id AS WindowStart FROM gaming_real_time_intelligence_platform EMIT CHANGES;',
     "`WINDOWSTART` is a reserved column name"),
])
def test_create_refuses_names_that_would_break_json_sse_or_prometheus(pulled, statement, message):
    status, _, body = post(pulled.port, "/ksql", {"ksql": statement})
    err = json.loads(body)
    assert status == 400 and err["@type"] == "statement_error" and err["error_code"] == 40001, err
    assert message in err["message"], err
    status, _, body = post(pulled.port, "/ksql", {"ksql": "LIST TABLES; LIST STREAMS;"})
    names = [s["name"] for doc in json.loads(body) for s in doc.get("tables", []) + doc.get("streams", [])]
    assert not any(n in names for n in ('EV"IL\nNAME', "BACK\\SLASH", "TICK", "W", "WS"))
