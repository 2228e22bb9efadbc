"""Hostile input and careless producers: records from the future, oversized
records, hostile requests (SPEC §8, §9). Expectations come from the
reference (reference.py) or are worked out here by hand."""

import base64
import collections
import json
import os
import signal
import socket
import subprocess
import time

import pytest

import checks
import reference
from conftest import free_port, generate, metric_by_label, metric_sum, read_lines, require_binary, write_lines

ACT = "gaming_player_activity"
DAY = reference.DAY


def _activities(lines):
    """The valid activity values of a file, in file order."""
    out = []
    for l in lines:
        try:
            topic, _, value = reference.decode_line(l)
        except reference.BadRecord:
            continue
        if topic == ACT:
            out.append(value)
    return out


def _activity_lines(values, prefix, timestamps):
    """Activity lines modelled on values, one per timestamp."""
    out = []
    for i, ts in enumerate(timestamps):
        v = dict(values[i % len(values)])
        v["activity_id"] = "%s-%d" % (prefix, i)
        v["activity_timestamp"] = ts
        out.append(json.dumps({"topic": ACT, "key": v["activity_id"], "value": v}))
    return out


def _future_scenario(tmp_path, future_offsets):
    """The issue's reproduction: a generated file near the wall clock, then
    activity far in the future, then 100 on-time records."""
    path = str(tmp_path / "gen.jsonl")
    generate(path, 20000, 7)  # event time: the seconds before now
    lines = read_lines(path)
    values = _activities(lines)
    latest = max(v["activity_timestamp"] for v in values)
    future = _activity_lines(values, "future", [f(latest) for f in future_offsets])
    after = _activity_lines(values, "after", [latest - i for i in range(100)])
    return lines, latest, future, after


def test_a_record_from_the_future_moves_neither_stream_time_nor_windows(gamingd, tmp_path):
    lines, latest, future, after = _future_scenario(
        tmp_path, [lambda t: t + 8 * DAY, lambda t: 253402300799999])
    src = write_lines(str(tmp_path / "in.jsonl"), lines + future + after)
    all_lines = read_lines(src)
    d = gamingd(src)
    d.wait_ready()
    ref = reference.reference_for(all_lines)
    checks.fail_if(checks.compare_all_tables(d, ref), "tables after a record from the future")
    m = d.metrics()
    assert metric_by_label(m, "gamingd_bad_records_reason_total", "reason")["future"] == 2
    # the generator's deliberately late records only; none of the 100 after
    assert metric_sum(m, "gamingd_late_records_total") == ref.late_any
    assert metric_sum(m, "gamingd_stream_time_ms") == latest
    # the stream time committed is the bounded one: a restart keeps the tables
    assert d.stop() == 0
    d.start()
    d.wait_ready()
    checks.fail_if(checks.compare_all_tables(d, ref), "tables after a restart")


def test_a_data_dir_with_a_future_stream_time_is_repaired_at_start(gamingd, tmp_path):
    lines, latest, future, after = _future_scenario(tmp_path, [lambda t: t + 8 * DAY])
    first = write_lines(str(tmp_path / "first.jsonl"), lines + future)
    data = str(tmp_path / "data")
    # an old build took the record: --max-future as wide as the jump
    d = gamingd(first, args=["--max-future", "30d"], data_dir=data)
    d.wait_ready()
    assert metric_sum(d.metrics(), "gamingd_stream_time_ms") == latest + 8 * DAY
    assert d.stop() == 0
    # the same data dir, now with the default bound, and the on-time records after it
    with open(first, "a") as f:
        f.write("\n".join(after) + "\n")
    d2 = gamingd(first, data_dir=data)
    d2.wait_ready()
    log = d2.log_tail(20000)
    assert "ahead of the wall clock" in log and "Repaired" in log, log
    m = d2.metrics()
    assert metric_sum(m, "gamingd_stream_time_ms") <= latest, "stream time not set back"
    # every table as if the record had never come
    ref = reference.reference_for(read_lines(first), max_future_ms=DAY)
    assert metric_sum(m, "gamingd_late_records_total") == ref.late_any, "on-time records after the repair were late"
    checks.fail_if(checks.compare_all_tables(d2, ref), "tables after the repair")


# ---------------------------------------------------------------------------
# hostile requests: every one gets a status line and a JSON error in time


def raw_request(port, data, timeout=10):
    """Sends bytes as they are; returns (status, headers dict, body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
    return parse_response(b"".join(chunks))


def parse_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines and lines[0].startswith("HTTP/1."), "no status line in %r" % raw[:200]
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def get(port, target, headers=(), method=b"GET", body=b""):
    req = method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    for h in headers:
        req += h + b"\r\n"
    if body:
        req += b"Content-Length: %d\r\n" % len(body)
    return raw_request(port, req + b"\r\n" + body)


def json_error(status, headers, body, want):
    assert status == want, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), headers
    doc = json.loads(body.decode("utf-8"))  # strict UTF-8, valid JSON
    assert doc["error_code"] == want and doc["message"], doc
    return doc["message"]


@pytest.fixture(scope="module")
def quiet(module_gamingd):
    return module_gamingd("generator", args=["--rate", "50", "--seed", "5"])


T = b"/v1/tables/gaming_active_players_5min"


@pytest.mark.parametrize("target, want, fragment", [
    (T + b"?" + b"&".join(b"game_id%d=x" % i for i in range(500)), 400, "too many query parameters"),
    (T + b"?" + b"&" * 3000 + b"game_id=x", 200, None),  # empty parts are nothing
    (T + b"?game_id=game_003%00x", 400, "NUL"),
    (T + b"?game_id=game_003%zz", 400, "percent-encoding"),
    (T + b"?game_id=game_003%4", 400, "percent-encoding"),
    (T + b"?game_id=%ff%fe", 400, "UTF-8"),
    (T + b"?game_id=\xc3\x28", 400, "UTF-8"),
    (b"/v1/tables/\xff\xfe", 400, "UTF-8"),
    (T + b"?game_id=a%0Ab", 400, "control character"),
    (T + b"?=x", 400, "no name"),
    (b"/v1/tables/" + b"a" * 20000, 414, "at most 8192"),
])
def test_bad_request_targets_get_a_json_error(quiet, target, want, fragment):
    status, headers, body = get(quiet.port, target)
    if fragment is None:
        assert status == want, body[:300]
        return
    assert fragment in json_error(status, headers, body, want)


def test_a_header_block_over_the_limit_is_a_431_in_json(quiet):
    headers = [b"X-Filler-%d: %s" % (i, b"v" * 100) for i in range(150)]
    assert "headers take" in json_error(*get(quiet.port, b"/healthz", headers), 431)
    # more fields than accepted, in few bytes
    headers = [b"X-%d: v" % i for i in range(120)]
    json_error(*get(quiet.port, b"/healthz", headers), 431)


def test_a_body_over_the_limit_is_a_413_in_json(quiet):
    assert "body is larger" in json_error(*get(quiet.port, b"/v1/tables", method=b"POST", body=b"x" * (1 << 20 + 1)), 413)


def test_percent_decoding_gives_the_value(quiet):
    # game%5F003 is game_003: the same rows as the plain spelling, read just
    # before and just after (the generator's games may still be arriving, or
    # change), once the game is there
    deadline = time.time() + 60
    while True:
        before = quiet.get("/v1/tables/gaming_games_table", {"game_id": "game_003"}).json
        status, _, body = get(quiet.port, b"/v1/tables/gaming_games_table?game%5Fid=game%5F003")
        after = quiet.get("/v1/tables/gaming_games_table", {"game_id": "game_003"}).json
        if before["count"] == 1 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert before["count"] == 1, before
    assert status == 200 and json.loads(body) in (before, after)


def test_error_messages_are_valid_json_whatever_the_request_holds(quiet):
    # a valid but unusual name comes back escaped, as valid UTF-8 JSON
    status, headers, body = get(quiet.port, b"/v1/tables/caf%C3%A9%22%5C%01")
    json_error(status, headers, body, 400)  # %01 is a control character
    status, headers, body = get(quiet.port, b"/v1/tables/caf%C3%A9%22%5C")
    assert 'café"\\' in json_error(status, headers, body, 404)


def test_slow_clients_are_ended_and_health_checks_keep_room(gamingd):
    """1,000 connections that trickle a request (slowloris) under a
    descriptor limit of 1,024: health checks keep being answered, and each
    slow request is ended within the request timeout."""
    d = gamingd("generator", args=["--rate", "50", "--request-timeout", "2s"], nofile=1024)
    slow = []
    for i in range(1000):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", d.port))
        except BlockingIOError:
            pass
        slow.append(s)
    started = time.time()
    # half send their request line whole and then a header now and then,
    # half the request line a letter at a time
    worst = 0.0
    rounds = 0
    while time.time() - started < 8:
        for i, s in enumerate(slow):
            try:
                s.send((b"GET /healthz HTTP/1.1\r\n" if rounds == 0 else b"X-a: b\r\n") if i % 2 else b"G")
            except OSError:
                pass
        rounds += 1
        t = time.time()
        r = d.request("/healthz", timeout=10)
        assert r.status == 200
        worst = max(worst, time.time() - t)
        time.sleep(0.5)
    got408 = ended = 0
    for i, s in enumerate(slow):
        s.setblocking(True)
        s.settimeout(5)
        try:
            data = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
        except OSError:
            data = b""
        ended += 1
        if data.startswith(b"HTTP/1.1 408"):
            got408 += 1
            assert b'"error_code":408' in data
        s.close()
    assert worst < 3.0, "a health check waited %.1f s" % worst
    assert ended == 1000
    assert got408 >= 100, "slow requests with a whole request line should get a 408 (%d did)" % got408
    m = d.metrics()
    ends = metric_by_label(m, "gamingd_http_connections_ended_total", "reason")
    assert ends["timeout"] + ends["evicted"] >= 900, ends


def _read_answer(s):
    """One HTTP/1.1 answer with a Content-Length from socket s."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, "closed before an answer: %r" % data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")][0])
    while len(body) < length:
        body += s.recv(4096)
    return head


def test_kept_alive_connections_idle_stay_and_a_slow_next_request_is_ended(gamingd):
    """On kept-alive connections: one that waits between its requests
    longer than the request timeout is idle, not slow, and is answered
    after; one that starts its next request and trickles it (a header every
    0.4 s) is ended within a few request timeouts, with a 408 since its
    request line arrived."""
    d = gamingd("generator", args=["--rate", "50", "--request-timeout", "1s"])
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % d.port
    idle, slow = (socket.create_connection(("127.0.0.1", d.port), timeout=10) for _ in range(2))
    for s in (idle, slow):
        s.sendall(request)
        assert _read_answer(s).startswith(b"HTTP/1.1 200")
    answered = time.time()
    slow.sendall(b"GET /healthz HTTP/1.1\r\n")
    slow.settimeout(0.4)
    got = b""
    while time.time() - answered < 8:
        try:
            slow.sendall(b"X-a: b\r\n")
            chunk = slow.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    ended_after = time.time() - answered
    assert got.startswith(b"HTTP/1.1 408") and b'"error_code":408' in got, got
    assert ended_after < 5, "the slow request was ended after %.1f s" % ended_after
    time.sleep(max(0.0, 4 - (time.time() - answered)))  # idle for four request timeouts
    idle.sendall(request)
    assert _read_answer(idle).startswith(b"HTTP/1.1 200")
    for s in (idle, slow):
        s.close()


# ---------------------------------------------------------------------------
# browsers and the network


def header(r, name):
    return {k.lower(): v for k, v in r.headers.items()}.get(name.lower())


def test_no_cross_origin_access_by_default(quiet):
    r = quiet.request("/v1/tables/gaming_players_table", headers={"Origin": "http://evil.example"})
    assert r.status == 403 and header(r, "Access-Control-Allow-Origin") is None
    r = quiet.request("/v1/tables", headers={})
    assert r.status == 200 and header(r, "Access-Control-Allow-Origin") is None
    # a page of gamingd's own origin (same Host) is not cross-origin
    r = quiet.request("/v1/tables", headers={"Origin": "http://127.0.0.1:%d" % quiet.port})
    assert r.status == 200


def test_cors_origins_allows_the_listed_origins(gamingd):
    d = gamingd("generator", args=["--rate", "20", "--cors-origins", "http://dash.example, https://grafana.example:3000"])
    for origin in ("http://dash.example", "https://grafana.example:3000"):
        r = d.request("/v1/tables", headers={"Origin": origin})
        assert r.status == 200 and header(r, "Access-Control-Allow-Origin") == origin
        assert header(r, "Vary") == "Origin"
        r = d.request("/v1/streams/gaming_revenue_analytics", method="OPTIONS",
                      headers={"Origin": origin, "Access-Control-Request-Headers": "authorization"})
        assert r.status == 204 and header(r, "Access-Control-Allow-Origin") == origin
        assert "authorization" in header(r, "Access-Control-Allow-Headers").lower()
    r = d.request("/v1/tables", headers={"Origin": "http://dash.example.evil.example"})
    assert r.status == 403


def test_cors_origins_star_allows_any(gamingd):
    d = gamingd("generator", args=["--rate", "20", "--cors-origins", "*"])
    r = d.request("/v1/tables", headers={"Origin": "http://anywhere.example"})
    assert r.status == 200 and header(r, "Access-Control-Allow-Origin") == "*"


@pytest.mark.parametrize("host, want", [
    ("localhost", 200), ("localhost:9999", 200), ("LOCALHOST:8080", 200), ("127.0.0.1", 200),
    ("127.1.2.3:80", 200), ("[::1]:8080", 200), ("[::1]", 200),
    ("evil.example", 403), ("evil.example:8080", 403), ("127.0.0.1.evil.example", 403),
    ("localhost.evil.example:80", 403), ("[::2]:8080", 403),
])
def test_on_loopback_only_loopback_host_names_are_served(quiet, host, want):
    r = quiet.request("/healthz", headers={"Host": host})
    assert r.status == want, (host, r)
    if want == 403:
        assert "allowed-hosts" in r.json["message"]


def test_allowed_hosts_adds_names(gamingd):
    d = gamingd("generator", args=["--rate", "20", "--allowed-hosts", "gamingd,dash.internal:8080"])
    assert d.request("/healthz", headers={"Host": "gamingd:8080"}).status == 200
    assert d.request("/healthz", headers={"Host": "gamingd"}).status == 200
    assert d.request("/healthz", headers={"Host": "dash.internal:8080"}).status == 200
    assert d.request("/healthz", headers={"Host": "dash.internal:9090"}).status == 403
    assert d.request("/healthz", headers={"Host": "evil.example"}).status == 403
    assert d.request("/healthz", headers={"Host": "localhost:1"}).status == 200


def test_dropped_events_are_counted_while_the_subscriber_stalls(gamingd):
    d = gamingd("generator", args=["--rate", "5000", "--push-buffer", "1024"])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", d.port))
    s.sendall(b"GET /v1/streams/gaming_real_time_intelligence_platform HTTP/1.1\r\nHost: localhost\r\n\r\n")
    try:
        time.sleep(4)  # reads nothing: the ring moves past it
        stalled = metric_by_label(d.metrics(), "gamingd_stream_events_dropped_total", "stream")
        assert stalled["gaming_real_time_intelligence_platform"] > 5000, stalled
        # once it reads, it is told of at least as many as the metric counted while it stalled
        s.settimeout(5)
        data = b""
        while b"event: dropped" not in data:
            data += s.recv(65536)
        told = int(data.split(b'"total_dropped":')[1].split(b",")[0])
        after = metric_by_label(d.metrics(), "gamingd_stream_events_dropped_total", "stream")
        assert told >= stalled["gaming_real_time_intelligence_platform"]
        assert after["gaming_real_time_intelligence_platform"] >= told
    finally:
        s.close()


# ---------------------------------------------------------------------------
# signals, a full disk, a bad flag


def test_stray_signals_neither_kill_nor_lose_state(gamingd, generated):
    path = generated(3000, 12)
    d = gamingd(path)
    d.wait_ready()
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE):
        d.proc.send_signal(sig)
    time.sleep(0.3)
    assert d.running() and d.get("/healthz").status == 200
    assert d.stop() == 0
    assert "stopping: state committed" in d.log_tail()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_named_as_such(tmp_path):
    mnt = str(tmp_path / "small")
    os.makedirs(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt], check=True)
    try:
        r = subprocess.run([require_binary(), "--data-dir", os.path.join(mnt, "data"), "--rate", "20000",
                            "--listen", "127.0.0.1:%d" % free_port()], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1
        assert "is full" in r.stderr and "--data-dir" in r.stderr and "resumes from its last commit" in r.stderr, r.stderr
    finally:
        subprocess.run(["umount", "-l", mnt])


def test_map_size_below_its_minimum_says_the_minimum():
    r = subprocess.run([require_binary(), "--map-size", "8"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "at least 16" in r.stderr


# ---------------------------------------------------------------------------
# records larger than --max-record-bytes


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_huge_line_is_streamed_past_and_memory_stays_bounded(gamingd, tmp_path, generated):
    """A 256 MiB line among good ones: counted bad under its topic, the
    tables as if it were not there, and the daemon never near its size."""
    lines = read_lines(generated(2000, 31))
    path = str(tmp_path / "huge.jsonl")
    with open(path, "w") as f:
        f.write("\n".join(lines[:1000]) + "\n")
        f.write('{"topic":"gaming_player_activity","key":"huge","value":{"activity_id":"huge","pad":"')
        chunk = "x" * (1 << 20)
        for _ in range(256):
            f.write(chunk)
        f.write('"}}\n')
        f.write("\n".join(lines[1000:]) + "\n")
    d = gamingd(path)
    d.wait_ready()
    peak_mib = vm_hwm_kib(d.proc.pid) / 1024
    print("peak RSS with a 256 MiB line: %.0f MiB" % peak_mib)
    # to the reference, the same line only just too large
    stand_in = '{"topic":"gaming_player_activity","key":"huge","value":{"pad":"%s"}}' % ("x" * (1 << 20))
    ref = reference.reference_for(lines[:1000] + [stand_in] + lines[1000:])
    checks.fail_if(checks.compare_all_tables(d, ref), "tables around a huge line")
    m = d.metrics()
    assert metric_by_label(m, "gamingd_bad_records_reason_total", "reason")["too_large"] == 1
    assert metric_sum(m, "gamingd_bad_records_total") == ref.bad
    assert peak_mib < 120, "peak RSS %.0f MiB for a 256 MiB line" % peak_mib
    assert "larger than --max-record-bytes" in d.log_tail(20000)


def test_max_record_bytes_is_the_limit(gamingd, tmp_path):
    def act(aid, pad):
        return json.dumps({"topic": ACT, "key": aid, "value": {
            "activity_id": aid, "player_id": "p1", "game_id": "g1", "activity_type": "play",
            "activity_timestamp": 1709251200000, "session_id": pad}})
    lines = [act("small", "s" * 1500), act("big", "b" * 3000), act("edge", "")]
    edge_len = len(lines[2])
    lines[2] = act("edge", "e" * (2048 - edge_len))  # exactly the limit: taken
    assert len(lines[2]) == 2048
    src = write_lines(str(tmp_path / "in.jsonl"), lines)
    d = gamingd(src, args=["--max-record-bytes", "2048"])
    d.wait_ready()
    ref = reference.reference_for(read_lines(src), max_record_bytes=2048)
    assert ref.bad == 1
    checks.fail_if(checks.compare_all_tables(d, ref), "tables with a 2 KiB record limit")
    assert metric_by_label(d.metrics(), "gamingd_bad_records_reason_total", "reason")["too_large"] == 1


# ---------------------------------------------------------------------------
# cursors


def _first_cursor(d, table, params):
    r = d.get("/v1/tables/" + table, params)
    assert r.status == 200 and r.json.get("next_cursor"), r
    return r.json["next_cursor"]


def test_crafted_cursors_are_refused(gamingd, generated):
    d = gamingd(generated(20000, 21))
    d.wait_ready()
    table = "gaming_active_players_5min"
    latest = [("limit", "2")]
    cur = _first_cursor(d, table, latest)
    assert d.get("/v1/tables/" + table, latest + [("cursor", cur)]).status == 200
    raw = bytes.fromhex(cur)
    # [version][nonce x12][tag x16][sealed fields]: any change fails the seal
    flip = lambda i: raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1:]  # noqa: E731
    crafted = {
        "an old version's cursor": bytes.fromhex("01017fffffffffffffff0041"),
        "another version": flip(0),
        "another nonce": flip(5),
        "another tag": flip(20),
        "other sealed bytes": flip(len(raw) - 1),
        "cut short": raw[:-3],
        "only the header": raw[:29],
        "longer": raw + b"\0",
        "odd hex": None,
        "upper-case hex": "upper",
    }
    for what, c in crafted.items():
        text = cur[:-1] if c is None else cur.upper() if c == "upper" else c.hex()
        r = d.get("/v1/tables/" + table, latest + [("cursor", text)])
        assert r.status == 400 and "cursor" in r.json["message"], (what, r)
    # a cursor of one query does not page another
    r = d.get("/v1/tables/" + table, [("limit", "2"), ("order_by", "total_activities")] + [("cursor", cur)])
    assert r.status == 400
    other = _first_cursor(d, table, [("limit", "2"), ("from", "0"), ("order_by", "avg_session_duration"), ("desc", "true")])
    assert d.get("/v1/tables/" + table, [("limit", "2"), ("from", "0"), ("order_by", "avg_session_duration"),
                                         ("desc", "true"), ("cursor", other)]).status == 200
    assert d.get("/v1/tables/" + table, [("limit", "2"), ("from", "0"), ("order_by", "avg_session_duration"),
                                         ("cursor", other)]).status == 400
    assert d.get("/v1/tables/" + table, [("limit", "2"), ("from", "1"), ("order_by", "avg_session_duration"),
                                         ("desc", "true"), ("cursor", other)]).status == 400
    games = sorted({r["game_id"] for r in d.get("/v1/tables/" + table, [("from", "0")]).json["rows"]})
    filtered = [("limit", "1"), ("from", "0"), ("game_id", games[0])]
    cur = _first_cursor(d, table, filtered)
    assert d.get("/v1/tables/" + table, filtered + [("cursor", cur)]).status == 200
    assert d.get("/v1/tables/" + table, filtered[:2] + [("game_id", games[1]), ("cursor", cur)]).status == 400


BY_MAIL_SQL = ("CREATE TABLE %s AS SELECT player_email, COUNT(*) AS c FROM gaming_real_time_intelligence_platform "
               "GROUP BY player_email EMIT CHANGES;")


def _ksql(d, text):
    r = d.request("/ksql", method="POST", body=json.dumps({"ksql": text}))
    assert r.status == 200, (text, r)


def _fed_by_mail(gamingd, tmp_path, lines, data_dir=None):
    """A daemon whose tables by_mail and by_mail_too (one definition) count
    the records of each player email, made before the records arrive."""
    feed = str(tmp_path / ("feed-%d.jsonl" % len(os.listdir(str(tmp_path)))))
    open(feed, "w").close()
    d = gamingd(feed, data_dir=data_dir)
    for name in ("by_mail", "by_mail_too"):
        _ksql(d, BY_MAIL_SQL % name)
    write_lines(feed, lines)
    deadline = time.time() + 120
    while d.readyz().json.get("records_applied", 0) < len(lines):
        assert time.time() < deadline, d.log_tail()
        time.sleep(0.05)
    return d


def _encodings(text):
    """How bytes of text could show in a cursor: as they are, in hex, and in
    base64 (standard and URL-safe) at each of the three alignments."""
    b = text.encode()
    out = {text, b.hex(), b.hex().upper()}
    for k in range(3):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            e = enc(bytes(k) + b).decode().rstrip("=")
            out.add(e[(4 if k else 0):-4])  # the characters only the text's bytes decide
    return out


def test_cursors_do_not_carry_key_bytes(gamingd, generated, tmp_path):
    """Issue 17: a table keyed (or ordered) by an email gave cursors that were
    the email in hex. Cursors are sealed: no encoding of any email shows in
    them, paging still gives every row once in order, and a cursor is refused
    when changed, on another table (one of the same definition, or one
    dropped and made again under its name) and by a daemon on another data
    dir, but not by the same data dir after a restart."""
    lines = read_lines(generated(3000, 17))
    ref = reference.reference_for(lines)
    expected = collections.Counter(e["player_email"] for e in ref.outputs if e.get("player_email") is not None)
    assert len(expected) > 20, "the scenario should have many players"
    forms = {email: _encodings(email) for email in expected}
    d = _fed_by_mail(gamingd, tmp_path, lines)
    for extra in ([], [("order_by", "player_email")], [("order_by", "c"), ("desc", "true")]):
        whole = d.get("/v1/tables/by_mail", [("limit", "10000")] + extra)
        assert whole.status == 200 and "next_cursor" not in whole.json, whole
        assert {r["player_email"]: r["c"] for r in whole.json["rows"]} == dict(expected)
        rows, pages = d.fetch_pages("by_mail", [("limit", "1")] + extra)
        assert rows == whole.json["rows"], "paged one by one (%r): not every row once in order" % (extra,)
        if extra and extra[0][1] == "player_email":
            assert [r["player_email"] for r in rows] == sorted(expected, key=str.encode)
        cursors = [p["next_cursor"] for p in pages[:-1]]
        assert len(cursors) == len(expected) - 1 and len(set(cursors)) == len(cursors)
        for cur in cursors:
            assert len(cur) <= 300, "cursor of %d characters" % len(cur)
            for email, encs in forms.items():
                shown = [e for e in encs if e and e in cur]
                assert not shown, "cursor %s shows %s as %r" % (cur, email, shown)
    first = d.get("/v1/tables/by_mail", [("limit", "1")]).json
    cur = first["next_cursor"]
    second = d.get("/v1/tables/by_mail", [("limit", "1"), ("cursor", cur)])
    assert second.status == 200 and second.json["rows"] != first["rows"], second

    def refused(table, text, why):
        r = d.get("/v1/tables/" + table, [("limit", "1"), ("cursor", text)])
        assert r.status == 400 and "cursor" in r.json["message"], (why, r)

    for i in range(0, len(cur), 7):  # a digit changed anywhere
        refused("by_mail", cur[:i] + ("1" if cur[i] != "1" else "2") + cur[i + 1:], "digit %d changed" % i)
    refused("by_mail_too", cur, "a cursor of by_mail on by_mail_too")
    too = d.get("/v1/tables/by_mail_too", [("limit", "1")]).json["next_cursor"]
    assert d.get("/v1/tables/by_mail_too", [("limit", "1"), ("cursor", too)]).status == 200
    _ksql(d, "DROP TABLE by_mail_too;")
    _ksql(d, BY_MAIL_SQL % "by_mail_too")
    refused("by_mail_too", too, "a cursor of the dropped by_mail_too on the new one")

    # the same data dir after a restart takes it
    d.stop()
    d.start()
    d.wait_ready()
    again = d.get("/v1/tables/by_mail", [("limit", "1"), ("cursor", cur)])
    assert again.status == 200 and again.json["rows"] == second.json["rows"], again

    # a daemon on another data dir, with the same tables (same names, same
    # uids) and rows, does not
    other = _fed_by_mail(gamingd, tmp_path, lines)
    assert other.get("/v1/tables/by_mail", [("limit", "1")]).json["rows"] == first["rows"]
    r = other.get("/v1/tables/by_mail", [("limit", "1"), ("cursor", cur)])
    assert r.status == 400 and "cursor" in r.json["message"], r




# ---------------------------------------------------------------------------
# statements of any size: refused at parse time, never a crash (issue 17)

READ_KEY, ADMIN_KEY = "reader-key-31b7", "admin-key-9e02"
CHAIN = "+".join(["1"] * 12000)  # a left-deep tree 12,000 levels high, 24 KB


def post_json(port, path, doc, key=None, timeout=30):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    c.request("POST", path, body=json.dumps(doc), headers=headers)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def ksql(d, text, key=None):
    status, body = post_json(d.port, "/ksql", {"ksql": text, "streamsProperties": {}}, key)
    return status, json.loads(body)


def test_a_read_key_cannot_crash_the_daemon_with_a_long_operator_chain(gamingd, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("%s read\n%s admin\n" % (READ_KEY, ADMIN_KEY))
    d = gamingd("generator", args=["--rate", "50", "--seed", "5", "--api-keys", str(keys)])
    d.wait_ready()
    select = "SELECT %s AS x FROM gaming_games_table;" % CHAIN
    for path, field in (("/query-stream", "sql"), ("/query", "ksql"), ("/ksql", "ksql")):
        status, body = post_json(d.port, path, {field: select, "properties": {}}, READ_KEY)
        assert status == 400, (path, status, body[:300])
        doc = json.loads(body)
        # the 64th '+' would make the 65th level: column 7 + 2 * 64
        assert doc["error_code"] == 40001 and "line 1:135: expression nested more than 64 levels deep" in doc["message"], doc
    status, doc = ksql(d, "CREATE TABLE chain AS SELECT game_id, COUNT(*) + %s AS n FROM gaming_activity_enriched "
                          "GROUP BY game_id;" % CHAIN, ADMIN_KEY)
    assert status == 400 and "expression nested more than 64 levels deep" in doc["message"], doc
    status, doc = ksql(d, "SHOW TABLES;", READ_KEY)
    assert status == 200 and "CHAIN" not in [t["name"] for t in doc[0]["tables"]]
    status, doc = ksql(d, "SHOW TABLES;" * 65, READ_KEY)
    assert status == 400 and "more than 64 statements in one request" in doc["message"], doc
    assert d.running() and d.get("/healthz").status == 200
    assert d.stop() == 0


def _edit_catalog(data_dir, edit):
    """Rewrites the stored definitions (meta "catalog": [u64 next uid] then
    [u64 uid][u8 table][u8 terminated][u32 length][statement] each) through
    lmdb-utils' mdb_dump and mdb_load, as an operator could; edit(list of
    [uid, table, terminated, sql]) changes them in place."""
    import struct
    dump = subprocess.run(["mdb_dump", "-s", "meta", data_dir], check=True, capture_output=True, text=True).stdout
    lines = dump.split("\n")
    start = lines.index("HEADER=END") + 1
    end = lines.index("DATA=END")
    pairs = [(lines[i], lines[i + 1]) for i in range(start, end, 2)]
    out = []
    for k, v in pairs:
        if bytes.fromhex(k.strip()) == b"catalog":
            raw = bytes.fromhex(v.strip())
            defs, p = [], 8
            while p < len(raw):
                uid, table, term, n = struct.unpack(">QBBI", raw[p:p + 14])
                defs.append([uid, table, term, raw[p + 14:p + 14 + n].decode()])
                p += 14 + n
            edit(defs)
            raw = raw[:8] + b"".join(struct.pack(">QBBI", u, t, x, len(s.encode())) + s.encode() for u, t, x, s in defs)
            v = " " + raw.hex()
        out += [k, v]
    text = "\n".join(lines[:start] + out + lines[end:])
    subprocess.run(["mdb_load", "-s", "meta", data_dir], input=text, check=True, text=True)


def _databases(data_dir):
    """The names of the LMDB named databases of a data dir."""
    dump = subprocess.run(["mdb_dump", "-l", data_dir], check=True, capture_output=True, text=True).stdout
    return set(dump.split())


def test_a_stored_definition_that_no_longer_compiles_is_quarantined_until_dropped(gamingd, tmp_path):
    """A data dir from before the bounds: a table stored with the 12,000-term
    chain (which crashed ingest at its first record, at every start) and a
    stream naming a column its source no longer has."""
    src = str(tmp_path / "in.jsonl")
    write_lines(src, [json.dumps({"topic": ACT, "key": "a%d" % i, "value": {
        "activity_id": "a%d" % i, "player_id": "p1", "game_id": "g1", "activity_type": "play",
        "activity_timestamp": 1700000000000 + i, "score": 1, "in_game_purchases": 0.0}}) for i in range(5)])
    d = gamingd(src)
    d.wait_ready()
    assert ksql(d, "CREATE TABLE qt AS SELECT game_id, COUNT(*) AS n FROM gaming_activity_enriched GROUP BY game_id;")[0] == 200
    assert ksql(d, "CREATE STREAM qs AS SELECT game_id, player_id FROM gaming_activity_enriched;")[0] == 200
    assert ksql(d, "CREATE STREAM ok_stream AS SELECT game_id FROM gaming_activity_enriched;")[0] == 200
    deadline = time.time() + 30
    while time.time() < deadline and not d.get("/v1/tables/qt").json["rows"]:
        time.sleep(0.05)
    assert d.stop() == 0
    assert {db for db in _databases(d.data_dir) if db.startswith("qt@")}, _databases(d.data_dir)

    def edit(defs):
        for dfn in defs:
            if dfn[3].startswith("CREATE TABLE qt"):
                dfn[3] = ("CREATE TABLE qt AS SELECT game_id, COUNT(*) + %s AS n FROM gaming_activity_enriched "
                          "GROUP BY game_id" % CHAIN)
            elif dfn[3].startswith("CREATE STREAM qs"):
                dfn[3] = "CREATE STREAM qs AS SELECT game_id, player_shoe_size FROM gaming_activity_enriched"
    _edit_catalog(d.data_dir, edit)

    d.start()
    d.wait_ready()
    status, doc = ksql(d, "SHOW TABLES;")
    qt = [t for t in doc[0]["tables"] if t["name"] == "QT"]
    assert status == 200 and len(qt) == 1 and qt[0]["state"] == "ERROR", doc
    assert "expression nested more than 64 levels deep" in qt[0]["errorMessage"], qt
    status, doc = ksql(d, "SHOW STREAMS;")
    qs = [s for s in doc[0]["streams"] if s["name"] == "QS"]
    assert len(qs) == 1 and qs[0]["state"] == "ERROR" and "player_shoe_size" in qs[0]["errorMessage"], doc
    assert [s for s in doc[0]["streams"] if s["name"] == "OK_STREAM" and "state" not in s], doc
    status, doc = ksql(d, "SHOW QUERIES;")
    states = {q["id"].rsplit("_", 1)[0]: q["state"] for q in doc[0]["queries"]}
    assert states["CTAS_QT"] == "ERROR" and states["CSAS_QS"] == "ERROR" and states["CSAS_OK_STREAM"] == "RUNNING"
    status, doc = ksql(d, "DESCRIBE qt;")
    assert status == 200 and doc[0]["sourceDescription"]["state"] == "ERROR", doc
    listed = [t for t in d.get("/v1/tables").json["tables"] if t["name"] == "qt"]
    assert listed and listed[0]["state"] == "ERROR" and "nested" in listed[0]["error"], listed
    r = d.get("/v1/tables/qt")
    assert r.status == 404 and "ERROR" in r.json["message"], r
    status, body = post_json(d.port, "/query-stream", {"sql": "SELECT * FROM qt;"})
    assert status == 400 and b"ERROR" in body, body
    # its name stays taken
    status, doc = ksql(d, "CREATE TABLE qt AS SELECT game_id, COUNT(*) AS n FROM gaming_activity_enriched GROUP BY game_id;")
    assert status == 400 and "exists" in doc["message"], doc
    # the other tables go on
    assert d.get("/v1/tables/gaming_hourly_player_game_stats").status == 200
    # DROP removes it and its databases; the other stays quarantined, stored
    assert ksql(d, "DROP TABLE qt;")[0] == 200
    status, doc = ksql(d, "SHOW TABLES;")
    assert "QT" not in [t["name"] for t in doc[0]["tables"]]
    assert d.stop() == 0
    assert not {db for db in _databases(d.data_dir) if db.startswith("qt@")}, _databases(d.data_dir)
    d.start()
    d.wait_ready()
    status, doc = ksql(d, "SHOW STREAMS;")
    assert [s["state"] for s in doc[0]["streams"] if s["name"] == "QS"] == ["ERROR"], doc
    assert ksql(d, "DROP STREAM qs;")[0] == 200
    assert d.stop() == 0
    # a clean start: nothing quarantined, the name free again
    d.start()
    d.wait_ready()
    status, doc = ksql(d, "SHOW STREAMS;")
    assert [s["name"] for s in doc[0]["streams"] if "state" in s or s["name"] == "QS"] == []
    assert "OK_STREAM" in [s["name"] for s in doc[0]["streams"]]
    assert ksql(d, "CREATE TABLE qt AS SELECT game_id, COUNT(*) AS n FROM gaming_activity_enriched GROUP BY game_id;")[0] == 200
    assert d.stop() == 0
    with open(d.log_path) as f:
        log = f.read()
    assert log.count("is quarantined") == 3, log[-3000:]  # qt and qs, then qs
