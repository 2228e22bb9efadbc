"""Fixtures for the gamingd integration tests.

The daemon binary is $GAMINGD_BIN, or build/gamingd at the repository root
(found from this file's location). Every daemon a test starts is stopped at
teardown (SIGTERM, then SIGKILL).
"""

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import reference  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DEFAULT_BIN = os.path.join(REPO_ROOT, "build", "gamingd")

READY_TIMEOUT = float(os.environ.get("GAMINGD_READY_TIMEOUT", "180"))

# Event time of generated files: a fixed day boundary, so runs are repeatable
# (2024-03-01T00:00:00Z).
BASE_MS = 1709251200000


def binary_path():
    return os.environ.get("GAMINGD_BIN", DEFAULT_BIN)


def require_binary():
    b = binary_path()
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.fail("gamingd binary not found at %s (build it with `make` or set GAMINGD_BIN)" % b)
    return b


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpResult:
    def __init__(self, status, body, headers):
        self.status = status
        self.raw = body
        self.headers = headers
        try:
            self.json = json.loads(body.decode("utf-8")) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "HttpResult(%d, %r)" % (self.status, self.raw[:500])


class Daemon:
    """One gamingd serve process."""

    def __init__(self, source, data_dir, output, args=(), log_path=None, nofile=None):
        self.binary = require_binary()
        self.nofile = nofile  # a descriptor limit (soft and hard) for the process
        self.source = source
        self.data_dir = data_dir
        self.output = output
        self.args = list(args)
        self.port = None
        self.proc = None
        self.log_path = log_path or (data_dir.rstrip("/") + ".log")
        self.returncode = None
        self.key = None  # an API key every request presents, unless it brings its own

    @property
    def cmd(self):
        source = self.source if self.source in ("generator", "kafka") else "file:" + self.source
        output = [] if "none" in self.args else ["--output", "file:" + self.output]  # --output none
        return [self.binary, "--source", source, "--data-dir", self.data_dir,
                "--listen", "127.0.0.1:%d" % self.port] + output + self.args

    def start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        for attempt in range(3):
            self.port = free_port()
            self.log = open(self.log_path, "ab")
            self.log.write(("\n=== %s\n" % " ".join(self.cmd)).encode())
            self.log.flush()
            self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=self._limits)
            self.returncode = None
            # wait until the HTTP port answers
            deadline = time.time() + 30
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    self.request("/healthz", timeout=2)
                    return self
                except (OSError, http.client.HTTPException):
                    time.sleep(0.02)
            if self.proc.poll() is None:
                self.kill9()
                pytest.fail("gamingd did not answer /healthz within 30 s; log:\n" + self.log_tail())
            self.log.close()
            # maybe the port was taken between free_port() and bind: retry
        pytest.fail("gamingd exited at start (rc %s); log:\n%s" % (self.proc.returncode, self.log_tail()))

    def _limits(self):
        if self.nofile:
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
            return data[-n:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    # -- HTTP ---------------------------------------------------------------
    def request(self, path, params=None, timeout=30, method="GET", headers=None, body=None):
        if params:
            if isinstance(params, dict):
                params = list(params.items())
            path = path + "?" + urllib.parse.urlencode(params)
        if "--tls-cert" in self.args:  # HTTPS, verified against the instance's own certificate
            ctx = ssl.create_default_context(cafile=self.args[self.args.index("--tls-cert") + 1])
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = dict(headers or {})
        if self.key and "Authorization" not in headers:
            headers["Authorization"] = "Bearer " + self.key
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return HttpResult(resp.status, resp.read(), dict(resp.getheaders()))
        finally:
            conn.close()

    def get(self, path, params=None, timeout=30):
        return self.request(path, params, timeout=timeout)

    def readyz(self):
        return self.get("/readyz", timeout=5)

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("gamingd exited (rc %s) before ready; log:\n%s"
                            % (self.proc.returncode, self.log_tail()))
            try:
                last = self.readyz()
                if last.status == 200:
                    return last
            except (OSError, http.client.HTTPException) as e:
                last = e
            time.sleep(0.05)
        pytest.fail("gamingd not ready after %.0f s (last /readyz: %r); log:\n%s"
                    % (timeout, last, self.log_tail()))

    # -- tables ---------------------------------------------------------------
    def fetch_all(self, table, page=10000, extra=None):
        """Every row of a table, following next_cursor. Returns (rows, pages)."""
        params = [("limit", str(page))]
        if reference.is_windowed(table):
            params += [("from", "0"), ("to", "9999999999999")]
        if extra:
            params += list(extra)
        return self.fetch_pages(table, params)

    def fetch_pages(self, table, params, max_pages=100000):
        rows = []
        pages = []
        cursor = None
        for _ in range(max_pages):
            p = list(params) + ([("cursor", cursor)] if cursor is not None else [])
            r = self.get("/v1/tables/" + table, p)
            assert r.status == 200, "GET /v1/tables/%s %r -> %r" % (table, p, r)
            body = r.json
            assert isinstance(body, dict) and isinstance(body.get("rows"), list), r
            assert body.get("table") == table, r
            rows.extend(body["rows"])
            pages.append(body)
            cursor = body.get("next_cursor")
            if cursor is None:
                return rows, pages
            assert isinstance(cursor, str) and cursor, "bad next_cursor %r" % (cursor,)
        pytest.fail("more than %d pages" % max_pages)

    def metrics(self):
        r = self.get("/metrics")
        assert r.status == 200, r
        return parse_prometheus(r.raw.decode("utf-8"))

    # -- lifecycle ----------------------------------------------------------
    def stop(self, timeout=30):
        """SIGTERM, wait; SIGKILL after timeout. Returns the exit code."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.returncode = "timeout"
                self._close()
                return self.returncode
        self.returncode = self.proc.returncode
        self._close()
        return self.returncode

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.returncode = self.proc.returncode if self.proc else None
        self._close()
        return self.returncode

    def _close(self):
        try:
            self.log.close()
        except Exception:
            pass

    def running(self):
        return self.proc is not None and self.proc.poll() is None


def parse_prometheus(text):
    """{(name, frozenset(labels.items())): value}"""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            labels_s, value_s = rest.rsplit("}", 1)
            labels = {}
            i = 0
            while i < len(labels_s):
                eq = labels_s.index("=", i)
                k = labels_s[i:eq].strip().lstrip(",").strip()
                assert labels_s[eq + 1] == '"'
                j = eq + 2
                v = []
                while labels_s[j] != '"':
                    if labels_s[j] == "\\":
                        j += 1
                    v.append(labels_s[j])
                    j += 1
                labels[k] = "".join(v)
                i = j + 1
                while i < len(labels_s) and labels_s[i] in ", ":
                    i += 1
        else:
            name, value_s = line.split(None, 1)
            labels = {}
        value = float(value_s.split()[0])
        out[(name.strip(), frozenset(labels.items()))] = value
    return out


def metric_values(metrics, name):
    """{labels dict as frozenset: value} of one metric name."""
    return {labels: v for (n, labels), v in metrics.items() if n == name}


def metric_sum(metrics, name):
    return sum(metric_values(metrics, name).values())


def metric_by_label(metrics, name, label):
    return {dict(labels).get(label): v for labels, v in metric_values(metrics, name).items()}


# ---------------------------------------------------------------------------
# generated files


def generate(path, events, seed, rate=None, start=None):
    b = require_binary()
    cmd = [b, "generate", "--out", path, "--events", str(events), "--seed", str(seed)]
    if rate is not None:
        cmd += ["--rate", str(rate)]
    if start is not None:
        cmd += ["--start", str(start)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert r.returncode == 0, "gamingd generate failed (%d): %s" % (r.returncode, r.stderr.decode()[-2000:])
    assert os.path.getsize(path) > 0
    return path


def read_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [l.decode("utf-8", "surrogateescape") for l in lines]


def write_lines(path, lines):
    with open(path, "wb") as f:
        for l in lines:
            if not isinstance(l, str):
                l = json.dumps(l)
            f.write(l.encode("utf-8", "surrogateescape") + b"\n")
    return path


def read_output(path):
    """Enriched records of an output file. Returns (records, unparseable lines)."""
    if not os.path.exists(path):
        return [], []
    recs, bad = [], []
    for l in read_lines(path):
        if not l.strip():
            continue
        try:
            recs.append(json.loads(l))
        except ValueError:
            bad.append(l)
    return recs, bad


class Generated:
    """A generated source file with its reference, computed once per session."""

    def __init__(self, path, lines, grace_ms=None, retention_ms=None):
        self.path = path
        self.lines = lines
        self.ref = reference.reference_for(lines, grace_ms=grace_ms, retention_ms=retention_ms)


@pytest.fixture(scope="session")
def gamingd_bin():
    return require_binary()


@pytest.fixture(scope="session")
def gen_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("generated"))


@pytest.fixture(scope="session")
def generated(gen_dir):
    """generated(events, seed, rate=None, start=None) -> path, cached per session."""
    cache = {}

    def make(events, seed, rate=None, start=BASE_MS):
        k = (events, seed, rate, start)
        if k not in cache:
            p = os.path.join(gen_dir, "gen-%d-%d-%s-%s.jsonl" % (events, seed, rate, start))
            cache[k] = generate(p, events, seed, rate=rate, start=start)
        return cache[k]

    return make


class DaemonFactory:
    def __init__(self, tmpdir):
        self.tmpdir = tmpdir
        self.daemons = []
        self.n = 0

    def __call__(self, source, args=(), data_dir=None, output=None, start=True, nofile=None):
        self.n += 1
        data_dir = data_dir or os.path.join(self.tmpdir, "data%d" % self.n)
        output = output or os.path.join(self.tmpdir, "out%d.jsonl" % self.n)
        d = Daemon(source, data_dir, output, args=args,
                   log_path=os.path.join(self.tmpdir, "gamingd%d.log" % self.n), nofile=nofile)
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def cleanup(self):
        for d in self.daemons:
            if d.running():
                d.stop(timeout=10)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report carries the end of the log of every gamingd it
    started, since the daemon's side of a failure is often the whole story."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        daemons = value.daemons if isinstance(value, DaemonFactory) else [value] if isinstance(value, Daemon) else []
        for d in daemons:
            report.sections.append(("gamingd log %s" % d.log_path, d.log_tail()))


@pytest.fixture
def gamingd(tmp_path):
    """gamingd(source_path or "generator", args=[...], data_dir=None, output=None) -> started Daemon."""
    f = DaemonFactory(str(tmp_path))
    try:
        yield f
    finally:
        f.cleanup()


@pytest.fixture(scope="module")
def module_gamingd(tmp_path_factory):
    f = DaemonFactory(str(tmp_path_factory.mktemp("daemon")))
    try:
        yield f
    finally:
        f.cleanup()


# ---------------------------------------------------------------------------
# replay scenarios: a generated file, its reference, and a daemon that has
# applied it (started once per session, shared by the tests that read it)

HOUR = reference.HOUR

SCENARIOS = {
    # default rate (1000 events/s of event time)
    "seed11": dict(events=30000, seed=11, rate=None, start=BASE_MS, args=[]),
    # 30000 events at 20/s: 25 minutes of event time, several 5-min windows
    "seed22_rate20": dict(events=30000, seed=22, rate=20, start=BASE_MS + 7 * 60 * 1000, args=[]),
    "seed33_50k": dict(events=50000, seed=33, rate=200, start=BASE_MS + 123457, args=[]),
    # the same with every table on the ingest thread (no table worker thread)
    "seed33_one_thread": dict(events=50000, seed=33, rate=200, start=BASE_MS + 123457,
                              args=["--ingest-threads", "1"]),
    # the figures' tables on the ingest thread, a worker for the rest
    "seed33_two_threads": dict(events=50000, seed=33, rate=200, start=BASE_MS + 123457,
                               args=["--ingest-threads", "2"]),
    # four workers: the figures and the output on one, the other tables dealt over three
    "seed33_five_threads": dict(events=50000, seed=33, rate=200, start=BASE_MS + 123457,
                                args=["--ingest-threads", "5"]),
    # 20000 events at 2/s: ~2.8 h of event time across midnight (daily windows)
    "seed44_slow": dict(events=20000, seed=44, rate=2, start=BASE_MS - 2 * HOUR, args=[]),
    # 20000 events at 0.02/s: ~12.6 days, so the default 7-day retention purges windows
    "seed66_days": dict(events=20000, seed=66, rate=0.02, start=BASE_MS, args=[]),
    # ~5.5 h of event time, windows purged by a short retention, explicit grace
    "seed55_retention": dict(events=20000, seed=55, rate=1, start=BASE_MS - 3 * HOUR,
                             args=["--grace", "30m", "--retention", "2h"]),
}


class Run:
    def __init__(self, name, daemon, path, lines, ref, t0, t1):
        self.name = name
        self.daemon = daemon
        self.path = path
        self.lines = lines
        self.ref = ref
        self.t0 = t0
        self.t1 = t1

    def output(self, wait=10.0):
        """The daemon's output records, waiting a little for them to be flushed."""
        deadline = time.time() + wait
        while True:
            recs, bad = read_output(self.daemon.output)
            if len(recs) >= len(self.ref.outputs) or time.time() > deadline:
                return recs, bad
            time.sleep(0.1)


@pytest.fixture(scope="session")
def session_gamingd(tmp_path_factory):
    f = DaemonFactory(str(tmp_path_factory.mktemp("daemons")))
    try:
        yield f
    finally:
        f.cleanup()


@pytest.fixture(scope="session")
def runs(session_gamingd, generated):
    """runs(name) -> Run for a SCENARIOS entry, computed once per session."""
    cache = {}

    def get(name):
        if name not in cache:
            sc = SCENARIOS[name]
            path = generated(sc["events"], sc["seed"], rate=sc["rate"], start=sc["start"])
            lines = read_lines(path)
            ref = reference.reference_for(lines, **reference.reference_args(sc["args"]))
            t0 = int(time.time() * 1000)
            d = session_gamingd(path, args=sc["args"])
            d.wait_ready()
            t1 = int(time.time() * 1000)
            cache[name] = Run(name, d, path, lines, ref, t0, t1)
        return cache[name]

    return get
