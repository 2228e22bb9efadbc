"""`gamingd sql`, the SQL shell, used as a person uses it: scripts with
--execute against a daemon fed a small file (tables drawn as ksqlDB's CLI
draws them, errors as the server words them, exit status 1), the API key
from GAMINGD_API_KEY or --api-key-file against a daemon with keys, Ctrl-C on a
push query against a stand-in server that records what the shell sends
(/close-query with the query's id, the key, SET properties and DEFINE
variables), and an interactive session in tmux against a daemon running the
generator (pull query, push query stopped with C-c, the prompt back, C-d).
The shell's own commands as a script and in tmux: HELP, SPOOL (the file's
lines written out by hand), RUN SCRIPT, EXIT, SET 'auto.offset.reset', and
Tab completing a keyword and the name of a stream made in the session.

Expected drawings are worked by hand from ksqlDB's CLI rules: a query's
cells are width / columns - 2 wide (at least 5) and long values wrap; an
entity table's columns are as wide as their widest cell."""
import http.client
import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import BASE_MS, write_lines

TIMEOUT = 20


def shell(port_or_url, *args, env=None, columns=80, timeout=TIMEOUT):
    url = port_or_url if isinstance(port_or_url, str) else "http://127.0.0.1:%d" % port_or_url
    e = {k: v for k, v in os.environ.items() if k != "GAMINGD_API_KEY"}
    e.update({"COLUMNS": str(columns)}, **(env or {}))
    return subprocess.run([os.environ["GAMINGD_BIN"], "sql", url] + list(args), capture_output=True, text=True,
                          env=e, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def fed(module_gamingd, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("shell") / "src.jsonl")
    lines = [{"topic": "gaming_games", "key": "g1", "value": {"game_id": "g1", "game_name": "Game g1", "genre": "Action"}},
             {"topic": "gaming_games", "key": "g2",
              "value": {"game_id": "g2", "game_name": "The Longest Été Name", "genre": "RPG"}}]
    write_lines(path, lines)
    d = module_gamingd(path, args=["--grace", "3650d"])
    deadline = time.time() + TIMEOUT
    while d.readyz().json["records_applied"] < len(lines):
        assert time.time() < deadline
        time.sleep(0.05)
    return d


def test_pull_query_drawn_as_the_cli_draws_it(fed):
    r = shell(fed.port, "-e", "SELECT game_id, game_name FROM gaming_games_table WHERE game_id = 'g1';")
    assert r.returncode == 0, r
    cell = 80 // 2 - 2
    sep = "+" + "-" * cell + "+" + "-" * cell + "+"
    assert r.stdout.splitlines() == [sep, "|GAME_ID" + " " * (cell - 7) + "|GAME_NAME" + " " * (cell - 9) + "|", sep,
                                     "|g1" + " " * (cell - 2) + "|Game g1" + " " * (cell - 7) + "|", "Query terminated"]


def test_long_values_wrap_in_their_cells(fed):
    # 22 columns: 22 // 2 - 2 = 9 code points a cell; "The Longest Été Name" is 20 of them
    r = shell(fed.port, "-e", "SELECT game_id, game_name FROM gaming_games_table WHERE game_id = 'g2';", columns=22)
    assert r.returncode == 0, r
    assert r.stdout.splitlines() == [
        "+---------+---------+",
        "|GAME_ID  |GAME_NAME|",
        "+---------+---------+",
        "|g2       |The Longe|",
        "|         |st Été Na|",
        "|         |me       |",
        "Query terminated"]


def test_show_tables_and_describe(fed):
    r = shell(fed.port, "--execute", "SHOW TABLES;\nDESCRIBE gaming_games_table;")
    assert r.returncode == 0, r
    out = r.stdout.splitlines()
    assert out[0] == ""
    assert [c.strip() for c in out[1].split("|")] == ["Table Name", "Kafka Topic", "Key Format", "Value Format", "Windowed"]
    assert set(out[2]) == {"-"}
    end = out.index(out[2], 3)
    rows = [[c.strip() for c in line.split("|")] for line in out[3:end]]
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)  # listed by name
    assert ["GAMING_GAMES_TABLE", "gaming_games", "KAFKA", "JSON", "false"] in rows
    # each column as wide as its widest cell: the bars line up
    assert len({tuple(i for i, ch in enumerate(line) if ch == "|") for line in [out[1]] + out[3:end]}) == 1
    described = out[end + 1:]
    assert described[:4] == [
        "",
        "Name                 : GAMING_GAMES_TABLE",
        " Field        | Type                           ",
        "-" * (12 + 3 + 30 + 3 - 1)]  # RELEASE_DATE, "STRING" padded to 16 + " (primary key)"
    assert " GAME_ID      | STRING           (primary key) " in described
    assert " RATING       | DOUBLE                         " in described
    assert described[-1] == "For runtime statistics and query details run: DESCRIBE <Stream,Table> EXTENDED;"


def test_define_and_set_stay_in_the_session(fed):
    r = shell(fed.port, "-e", "DEFINE g = 'g2'; SHOW VARIABLES; SET 'auto.offset.reset' = 'earliest';"
              "SELECT game_id FROM gaming_games_table WHERE game_id = '${g}'; UNDEFINE g; SHOW VARIABLES;"
              "UNSET 'auto.offset.reset';", columns=12)
    assert r.returncode == 0, r
    sep = "-" * 12  # the table is 23 wide; its lines are cut at the terminal's width
    assert r.stdout.splitlines() == [
        "",
        " Variable Name | Value ",
        sep,
        " g             | g2    ",
        sep,
        "Successfully changed local property 'auto.offset.reset' to 'earliest'. Use the UNSET command to revert your change.",
        "+----------+",
        "|GAME_ID   |",
        "+----------+",
        "|g2        |",
        "Query terminated",
        "",
        " Variable Name | Value ",
        sep,
        sep,
        "Successfully unset local property 'auto.offset.reset' (value was 'earliest')."]


def test_error_is_the_servers_message_and_ends_the_script(fed, tmp_path):
    c = http.client.HTTPConnection("127.0.0.1", fed.port, timeout=TIMEOUT)
    c.request("POST", "/query-stream", body=json.dumps({"sql": "SELECT * FROM nope;"}))
    message = json.loads(c.getresponse().read())["message"]
    c.close()
    assert "nope" in message
    script = tmp_path / "script.sql"
    script.write_text("-- a comment; not a statement\nSELECT * FROM nope;\nSHOW TABLES;\n")
    for args in (["-e", "SELECT * FROM nope; SHOW TABLES;"], ["-f", str(script)]):
        r = shell(fed.port, *args)
        assert r.returncode == 1, r
        assert r.stderr == message + "\n"
        assert "Table Name" not in r.stdout  # nothing after the failed statement ran
    r = shell(fed.port, "-e", "UNSET 'never';")
    assert r.returncode == 1 and "never set" in r.stderr, r


def test_the_key_is_never_an_argument(tmp_path):
    r = shell("http://127.0.0.1:9", "--api-key", "secret", "-e", "SHOW TABLES;")
    assert r.returncode == 2 and "GAMINGD_API_KEY" in r.stderr, r
    r = shell("http://127.0.0.1:9", "--api-key-file", str(tmp_path / "missing"), "-e", "SHOW TABLES;")
    assert r.returncode == 2 and "missing" in r.stderr, r


def wait_for_game(d, game, key=None):
    """Until the generator's games row is in the table, so that the shell's
    pull query finds it (a daemon just started may not have it yet)."""
    stmt = "SELECT game_id FROM gaming_games_table WHERE game_id = '%s';" % game
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=TIMEOUT)
        c.request("POST", "/query-stream", body=json.dumps({"sql": stmt}),
                  headers={"Authorization": "Bearer " + key} if key else {})
        lines = c.getresponse().read().decode().splitlines()
        c.close()
        if len(lines) > 1:
            return
        time.sleep(0.1)
    raise AssertionError("the generator's %s never came" % game)


def test_key_from_the_environment_or_a_file(gamingd, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("shell-key-9d2e read\n")
    d = gamingd("generator", args=["--rate", "10", "--api-keys", str(keys)])
    stmt = "SELECT game_id FROM gaming_games_table WHERE game_id = 'game_002';"
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=TIMEOUT)
    c.request("POST", "/query-stream", body=json.dumps({"sql": stmt}))
    refused = json.loads(c.getresponse().read())["message"]
    c.close()
    wait_for_game(d, "game_002", "shell-key-9d2e")
    r = shell(d.port, "-e", stmt)
    assert r.returncode == 1 and r.stderr == refused + "\n", r
    (tmp_path / "key").write_text("shell-key-9d2e\n")
    for args, env in ((["-e", stmt], {"GAMINGD_API_KEY": "shell-key-9d2e"}),
                      (["--api-key-file", str(tmp_path / "key"), "-e", stmt], None)):
        r = shell(d.port, *args, env=env, columns=12)
        assert r.returncode == 0, r
        assert r.stdout.splitlines()[3:] == ["|game_002  |", "Query terminated"]


# ---- Ctrl-C on a push query, against a server that records what it is sent ----

class StandIn(http.server.BaseHTTPRequestHandler):
    """/query-stream: a header, then a row every 50 ms until the client goes;
    /close-query and /ksql: recorded, answered 200."""
    protocol_version = "HTTP/1.0"
    seen = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StandIn.seen.append((self.path, self.headers.get("Authorization"), body))
        self.send_response(200)
        self.end_headers()
        if self.path != "/query-stream":
            self.wfile.write(b"[]" if self.path == "/ksql" else b"")
            return
        self.wfile.write(b'{"queryId":"q-42","columnNames":["N"],"columnTypes":["INTEGER"]}\n')
        try:
            for i in range(400):
                self.wfile.write(b"[%d]\n" % i)
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass


@pytest.fixture
def stand_in():
    StandIn.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def read_until(stream, text, timeout=TIMEOUT):
    got = ""
    deadline = time.time() + timeout
    while text not in got:
        assert time.time() < deadline, got
        line = stream.readline()
        assert line, got
        got += line
    return got


@pytest.mark.parametrize("key_from", ["env", "file"])
def test_ctrl_c_closes_the_push_query(stand_in, tmp_path, key_from):
    env = {k: v for k, v in os.environ.items() if k != "GAMINGD_API_KEY"}
    args = []
    if key_from == "env":
        env["GAMINGD_API_KEY"] = "k-secret"
    else:
        (tmp_path / "key").write_text("k-secret\n")
        args = ["--api-key-file", str(tmp_path / "key")]
    p = subprocess.Popen([os.environ["GAMINGD_BIN"], "sql", "http://127.0.0.1:%d/" % stand_in.server_port] + args +
                         ["-e", "SET 'auto.offset.reset'='earliest'; DEFINE v = 'x';"
                          "SELECT n FROM s EMIT CHANGES; SHOW TABLES;"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env)
    try:
        read_until(p.stdout, "|2 ")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert "Query terminated" in out
    paths = [s[0] for s in StandIn.seen]
    assert paths == ["/query-stream", "/close-query", "/ksql"], StandIn.seen  # the script goes on after the query
    assert all(s[1] == "Bearer k-secret" for s in StandIn.seen)
    assert StandIn.seen[0][2] == {"sql": "SELECT n FROM s EMIT CHANGES;", "properties": {"auto.offset.reset": "earliest"},
                                  "sessionVariables": {"v": "x"}}
    assert StandIn.seen[1][2] == {"queryId": "q-42"}
    assert StandIn.seen[2][2]["sessionVariables"] == {"v": "x"}


# ---- a person at a terminal: tmux ----

def push_queries(d):
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=TIMEOUT)
    c.request("POST", "/ksql", body=json.dumps({"ksql": "SHOW QUERIES;"}))
    queries = json.loads(c.getresponse().read())[0]["queries"]
    c.close()
    return [q["id"] for q in queries if q["queryType"] == "PUSH"]


class Tmux:
    def __init__(self, tmp_path):
        self.socket = "gamingd-test-%d" % os.getpid()
        self.home = str(tmp_path)

    def run(self, *args):
        return subprocess.run(["tmux", "-L", self.socket] + list(args), capture_output=True, text=True,
                              timeout=TIMEOUT, check=True).stdout

    def type(self, text):
        # tmux reads an argument ending in ';' as a command separator
        self.run("send-keys", "-t", "sh", text[:-1] + "\\;" if text.endswith(";") else text, "Enter")

    def screen(self):
        return self.run("capture-pane", "-p", "-t", "sh")

    def wait_for(self, check, what):
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            s = self.screen()
            if check(s):
                return s
            time.sleep(0.1)
        pytest.fail("%s did not show; screen:\n%s" % (what, self.screen()))

    def alive(self):
        return subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", "sh"], capture_output=True,
                              timeout=TIMEOUT).returncode == 0


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux not installed (make deps)")
def test_interactive_session_in_tmux(gamingd, tmp_path):
    d = gamingd("generator", args=["--rate", "20"])
    wait_for_game(d, "game_001")
    t = Tmux(tmp_path)
    t.run("new-session", "-d", "-s", "sh", "-x", "200", "-y", "50",
          "env HOME=%s %s sql http://127.0.0.1:%d" % (t.home, os.environ["GAMINGD_BIN"], d.port))
    try:
        t.wait_for(lambda s: s.rstrip().endswith("ksql>"), "the prompt")
        # a pull query typed on two lines: the continuation prompt, then the table
        t.type("SELECT game_id, genre")
        t.wait_for(lambda s: s.rstrip().endswith(">") and not s.rstrip().endswith("ksql>"), "the continuation prompt")
        t.type("FROM gaming_games_table WHERE game_id = 'game_001';")
        sep = "+" + "-" * 98 + "+" + "-" * 98 + "+"
        s = t.wait_for(lambda s: "Query terminated" in s, "the pull query's end")
        lines = s.splitlines()
        i = lines.index(sep)
        assert lines[i + 1] == "|GAME_ID" + " " * 91 + "|GENRE" + " " * 93 + "|"
        assert lines[i + 2] == sep and lines[i + 3].startswith("|game_001" + " " * 90 + "|")
        # a push query: rows keep coming until C-c, which ends it on the server
        t.run("send-keys", "-t", "sh", "C-l")  # readline clears the screen
        t.wait_for(lambda s: "Query terminated" not in s, "a clear screen")
        t.type("SELECT game_id, score FROM gaming_player_activity_stream EMIT CHANGES;")
        t.wait_for(lambda s: s.count("|game_") >= 3, "rows of the push query")
        assert len(push_queries(d)) == 1
        t.run("send-keys", "-t", "sh", "C-c")
        s = t.wait_for(lambda s: "Query terminated" in s and s.rstrip().endswith("ksql>"), "the prompt after C-c")
        deadline = time.time() + TIMEOUT
        while push_queries(d):
            assert time.time() < deadline, push_queries(d)
            time.sleep(0.1)
        # the shell still works, and C-c at the prompt drops a half-typed statement
        t.type("SHOW VARI")
        t.run("send-keys", "-t", "sh", "C-c")
        t.type("SHOW VARIABLES;")
        t.wait_for(lambda s: "Variable Name" in s, "SHOW VARIABLES' table")
        t.run("send-keys", "-t", "sh", "C-d")
        deadline = time.time() + TIMEOUT
        while t.alive():
            assert time.time() < deadline, "C-d did not end the shell"
            time.sleep(0.1)
        history = open(os.path.join(t.home, ".gamingd_history")).read().splitlines()
        assert "SELECT game_id, genre FROM gaming_games_table WHERE game_id = 'game_001';" in history
        assert history[-1] == "SHOW VARIABLES;"
    finally:
        subprocess.run(["tmux", "-L", t.socket, "kill-server"], capture_output=True, timeout=TIMEOUT)


# ---- the CLI's own commands: HELP, SPOOL, RUN SCRIPT, EXIT, Tab ----

def test_spool_run_script_and_exit_in_a_script(fed, tmp_path):
    spool = os.path.realpath(str(tmp_path / "session.txt"))
    script = str(tmp_path / "queries.sql")
    with open(script, "w") as f:
        f.write("SET 'auto.offset.reset' = 'earliest';\nSELECT game_id FROM gaming_games_table WHERE game_id = 'g1';\n")
    r = shell(fed.port, "-e", "SPOOL '%s'; RUN SCRIPT '%s'; SPOOL OFF; exit; SHOW TABLES;" % (spool, script),
              columns=24)
    assert r.returncode == 0, r  # EXIT ends the run, as a success; SHOW TABLES never ran
    sep = "+" + "-" * 22 + "+"  # one column of 24 // 1 - 2
    result = ["Successfully changed local property 'auto.offset.reset' to 'earliest'. "
              "Use the UNSET command to revert your change.",
              sep, "|GAME_ID" + " " * 15 + "|", sep, "|g1" + " " * 20 + "|", "Query terminated"]
    assert r.stdout.splitlines() == ["Session will be spooled to " + spool, "Enter SPOOL OFF to disable"] + result + [
        "Spool written to " + spool]
    # the file: what was shown while spooling, each statement after its prompt
    assert open(spool).read().splitlines() == [
        "Session will be spooled to " + spool, "Enter SPOOL OFF to disable",
        "ksql> RUN SCRIPT '%s';" % script,
        "ksql> SET 'auto.offset.reset' = 'earliest';", result[0],
        "ksql> SELECT game_id FROM gaming_games_table WHERE game_id = 'g1';"] + result[1:] + [
        "ksql> SPOOL OFF;"]


def test_help_and_what_the_commands_refuse(fed, tmp_path):
    r = shell(fed.port, "-e", "help;")
    assert r.returncode == 0, r
    out = r.stdout.splitlines()
    for command in ("help:", "exit, quit:", "spool <path_to_file>, spool off:", "run script <path_to_sql_file>:"):
        assert command in out, r.stdout
    assert "\tTab: complete a keyword, or a table or stream name." in out
    # a script that is not there, one that runs itself, a second spool: status 1, the reason on stderr
    r = shell(fed.port, "-e", "RUN SCRIPT '%s';" % (tmp_path / "none.sql"))
    assert r.returncode == 1 and r.stderr == "Failed to read file: %s: No such file or directory\n" % (
        tmp_path / "none.sql"), r
    me = tmp_path / "me.sql"
    me.write_text("RUN SCRIPT '%s';\n" % me)
    r = shell(fed.port, "-f", str(me))
    assert r.returncode == 1 and r.stderr == "RUN SCRIPT %s: scripts run inside one another more than 8 deep\n" % me, r
    r = shell(fed.port, "-e", "SPOOL %s; SPOOL %s;" % (tmp_path / "a.txt", tmp_path / "b.txt"))
    assert r.returncode == 1 and r.stderr == "Cannot set two spools! Please issue SPOOL OFF.\n", r
    # the error went to the spool too, which closes with the shell
    assert open(str(tmp_path / "a.txt")).read().splitlines()[-1] == "Cannot set two spools! Please issue SPOOL OFF."
    r = shell(fed.port, "-e", "SPOOL %s;" % (tmp_path / "no" / "such" / "dir.txt"))
    assert r.returncode == 1 and r.stderr.startswith("Cannot SPOOL to file: "), r


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux not installed (make deps)")
def test_commands_and_tab_completion_in_tmux(fed, tmp_path):
    spool = os.path.realpath(str(tmp_path / "spooled.txt"))
    script = str(tmp_path / "vars.sql")
    with open(script, "w") as f:
        f.write("DEFINE who = 'me';\nSHOW VARIABLES;\n")
    t = Tmux(tmp_path)
    t.socket += "-cmds"
    t.run("new-session", "-d", "-s", "sh", "-x", "120", "-y", "50",
          "env HOME=%s %s sql http://127.0.0.1:%d" % (t.home, os.environ["GAMINGD_BIN"], fed.port))
    prompt = lambda s: s.rstrip().endswith("ksql>")  # noqa: E731
    try:
        t.wait_for(prompt, "the prompt")
        t.type("help")  # no ';' needed for the shell's own commands
        t.wait_for(lambda s: "Keyboard shortcuts:" in s and prompt(s), "HELP's text")
        t.run("send-keys", "-t", "sh", "C-l")
        t.wait_for(lambda s: "Keyboard" not in s, "a clear screen")
        t.type("spool %s" % spool)
        t.wait_for(lambda s: "Enter SPOOL OFF to disable" in s and prompt(s), "SPOOL's answer")
        t.type("CREATE STREAM tab_me AS SELECT game_id FROM gaming_games_stream;")
        t.wait_for(lambda s: "CSAS_TAB_ME" in s and prompt(s), "the stream made")
        # Tab: a keyword in the case typed, then the name of the stream just made (asked of the server)
        t.run("send-keys", "-t", "sh", "descr", "Tab")  # "desc" alone is DESC too
        t.wait_for(lambda s: s.rstrip().endswith("ksql> describe"), "describe completed")
        t.run("send-keys", "-t", "sh", "TAB_", "Tab")
        t.wait_for(lambda s: s.rstrip().endswith("ksql> describe TAB_ME"), "the stream's name completed")
        t.type(";")
        t.wait_for(lambda s: "Name                 : TAB_ME" in s and prompt(s), "DESCRIBE TAB_ME")
        t.run("send-keys", "-t", "sh", "C-l")
        t.wait_for(lambda s: "TAB_ME" not in s, "a clear screen")
        t.type("SET 'auto.offset.reset' = 'earliest';")
        t.wait_for(lambda s: "Successfully changed local property 'auto.offset.reset' to 'earliest'." in s and prompt(s),
                   "SET's answer")
        t.type("run script %s" % script)
        s = t.wait_for(lambda s: "Variable Name" in s and prompt(s), "the script's SHOW VARIABLES")
        assert " who           | me" in s.splitlines()  # tmux drops trailing blanks
        t.type("SPOOL OFF")
        t.wait_for(lambda s: "Spool written to " + spool in s and prompt(s), "SPOOL OFF's answer")
        t.type("exit")
        deadline = time.time() + TIMEOUT
        while t.alive():
            assert time.time() < deadline, "exit did not end the shell"
            time.sleep(0.1)
        lines = open(spool).read().splitlines()
        assert lines[:2] == ["Session will be spooled to " + spool, "Enter SPOOL OFF to disable"]
        typed = [l for l in lines if l.startswith("ksql> ")]
        assert typed == ["ksql> CREATE STREAM tab_me AS SELECT game_id FROM gaming_games_stream;",
                         "ksql> describe TAB_ME ;",
                         "ksql> SET 'auto.offset.reset' = 'earliest';",
                         "ksql> run script %s" % script,
                         "ksql> DEFINE who = 'me';",
                         "ksql> SHOW VARIABLES;",
                         "ksql> SPOOL OFF"]
        assert "Name                 : TAB_ME" in lines and " who           | me    " in lines
        assert "Spool written to " + spool not in lines
    finally:
        subprocess.run(["tmux", "-L", t.socket, "kill-server"], capture_output=True, timeout=TIMEOUT)
