#!/usr/bin/python3
"""make bench: gamingd's figures on this machine, printed as a table.

1. Replay: `gamingd generate` writes a file of N activity events (default
   1,000,000, plus games, players, updates and faults); gamingd replays it
   with every table maintained. Events/s = activity records / seconds from
   start until /readyz says the file is applied; peak RSS from /proc.
2. Pull queries: wrk on loopback against three typical queries (a keyed
   lookup in the latest window, a two-key lookup, a whole small table), twice:
   64 connections for throughput, 4 connections for latency (p50/p99 as wrk
   measures them). wrk runs on the same two cores as gamingd.

3. Push streams: gamingd with the live generator at 10,000 events/s and
   tests/bench/sse_load (one epoll thread) holding 1,000 and then 5,000
   subscriptions to the enriched stream, unfiltered and filtered to one game.
   Events/s delivered in all, the delay from enrichment to arrival (p50/p99),
   the events slow subscribers lost, the ingest rate and gamingd's CPU
   (cores, every thread) meanwhile. The load
   tool shares the two cores with gamingd. With --only push and a
   --baseline binary, only 1,000 filtered subscribers (all on one game, then
   each on a player of its own), both binaries in interleaved rounds.

4. Soak (--only soak, and last in the full run): 30 days of event time at
   one activity event a second, replayed with the default 7 days of
   retention: data.mdb's size and RSS when the stream time passes days 7,
   14 and 30 (the end), and peak RSS. Past retention the file should stay
   put: LMDB reuses the pages purged windows free. With --baseline, the same
   file replayed by both binaries, one after the other.

5. Replay scaling (--only replay): the replay on every core and pinned to
   one (taskset -c 0), round by round against --baseline when given:
   events/s, CPU per event of all threads, peak RSS, and what the second
   core buys.

6. Compare (--only compare, with --baseline): every figure of the engine's
   table -- replay, REST and SQL pulls, SSE at 1,000 and 5,000 subscribers,
   Kafka end to end, partitioned x1's CPU per event -- for both binaries
   in interleaved rounds (--rounds), printed as one Markdown table of
   medians.

Targets (2 cores): >= 1,000,000 events/s replay, >= 50,000 pull queries/s,
p99 < 2 ms; push p99 < 50 ms at 1,000 subscribers. They guide the design;
nothing here fails on them.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None, b""


def status_mib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib(pid):
    return status_mib(pid, "VmHWM")


def rss_mib(pid):
    return status_mib(pid, "VmRSS")


def wrk(url, seconds, threads, connections, args=()):
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", *args, url],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, pct(50), pct(99), int(errors.group(1)) if errors else 0


REGISTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kafka", "registry_standin.py")
STREAM = "/v1/streams/gaming_real_time_intelligence_platform"
PUSH_RUNS = [("1,000 subscribers, whole stream", STREAM, 1000),
             ("5,000 subscribers, whole stream", STREAM, 5000),
             ("1,000 subscribers, one game each", STREAM + "?game_id=game_003", 1000),
             ("5,000 subscribers, one game each", STREAM + "?game_id=game_003", 5000)]
# filtered subscribers against a baseline: all on one game, and each on a
# player of its own (sse_load puts the connection's number for {i})
FILTERED_RUNS = [("1,000 subscribers, one game each (the same)", STREAM + "?game_id=game_003", 1000),
                 ("1,000 subscribers, one player each (1,000 filters)", STREAM + "?player_id=player_{i}", 1000)]


def push_figures(binary, sse_load, work, seconds, runs=PUSH_RUNS, tolerate=False):
    """sse_load runs against a live gamingd; returns [(label, figures dict, ingest/s)]; tolerate: a
    run sse_load fails is {"error": what it said} rather than the end of the bench."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(work, "gamingd-push.log"), "w")
    proc = subprocess.Popen([binary, "--source", "generator", "--rate", "10000", "--seed", "7",
                             "--data-dir", os.path.join(work, "push-data"), "--listen", f"127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    out = []
    try:
        while get(base + "/readyz", timeout=1)[0] != 200:
            time.sleep(0.05)
        time.sleep(2)
        for label, path, n in runs:
            cpu_before, started = cpu_seconds(proc.pid), time.time()
            ingest_before, written_before = ingest_cpu_seconds(proc.pid), written_bytes(proc.pid)
            records_before, commits_before = records_and_commits(get(base + "/metrics", timeout=10)[1])
            run = subprocess.run([sse_load, str(port), path, str(n), str(seconds)],
                                 capture_output=True, text=True, check=not tolerate)
            figures = dict(kv.split("=") for kv in run.stdout.split()) if run.returncode == 0 else \
                {"error": run.stderr.strip()[-300:]}
            elapsed = time.time() - started
            figures["cores"] = (cpu_seconds(proc.pid) - cpu_before) / elapsed
            ingest_cpu = ingest_cpu_seconds(proc.pid) - ingest_before
            _, metrics = get(base + "/metrics", timeout=10)  # -1: no answer, the server overloaded
            records, commits = records_and_commits(metrics)
            figures["ingest_us"] = ingest_cpu * 1e6 / max(records - records_before, 1)
            figures["commits_per_s"] = (commits - commits_before) / elapsed
            figures["disk_mb_per_s"] = (written_bytes(proc.pid) - written_before) / elapsed / 1e6
            rate = re.search(rb"gamingd_ingest_records_per_second (\d+)", metrics)
            out.append((label, figures, int(rate.group(1)) if rate else -1))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return out


def stalled_figures(binary, sse_load, work, seconds):
    """1,000 subscribers that never read while ingest runs at 5,000 events/s:
    gamingd's memory after `seconds` (current and peak RSS, MiB) and what the
    subscribers were counted as losing."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(work, "gamingd-stalled.log"), "w")
    proc = subprocess.Popen([binary, "--source", "generator", "--rate", "5000", "--seed", "7",
                             "--data-dir", os.path.join(work, "stalled-data"), "--listen", f"127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        while get(base + "/readyz", timeout=1)[0] != 200:
            time.sleep(0.05)
        before = rss_mib(proc.pid)
        load = subprocess.Popen([sse_load, str(port), "/v1/streams/gaming_real_time_intelligence_platform", "1000",
                                 str(seconds), "stall"], stdout=subprocess.PIPE, text=True)
        load.stdout.readline()  # all subscribed; from now on they read nothing
        time.sleep(seconds - 1)
        after = rss_mib(proc.pid)
        _, metrics = get(base + "/metrics")
        dropped = metric(metrics, "gamingd_stream_events_dropped_total",
                         '{stream="gaming_real_time_intelligence_platform"}')
        load.wait(timeout=seconds + 30)
        return {"before": before, "after": after, "peak": peak_rss_mib(proc.pid), "dropped": dropped}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def start_daemon(binary, work, name, args):
    port = free_port()
    log = open(os.path.join(work, name + ".log"), "w")
    proc = subprocess.Popen([binary, "--listen", f"127.0.0.1:{port}", *args], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    while get(base + "/readyz", timeout=1)[0] != 200:
        if proc.poll() is not None:
            sys.exit(f"gamingd exited; see {log.name}")
        time.sleep(0.05)
    return proc, base


def keyed_figures(binary, work, src, data_dir, path, seconds):
    """The same pull query on the same data with --api-keys and a Bearer key:
    what checking keys costs."""
    keys = os.path.join(work, "bench-keys.txt")
    with open(keys, "w") as f:
        f.write("bench-reader-key-3c81 read\n")
    proc, base = start_daemon(binary, work, "gamingd-keys", ["--source", f"file:{src}", "--data-dir", data_dir,
                                                             "--api-keys", keys])
    try:
        auth = ("-H", "Authorization: Bearer bench-reader-key-3c81")
        rps, _, _, errors = wrk(base + path, seconds, 2, 64, auth)
        _, p50, p99, errors_low = wrk(base + path, seconds, 1, 4, auth)
        return rps, p50, p99, errors + errors_low
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def grafana_figures(binary, work, seconds, events):
    """/grafana/query for one metric over 7 days for every game: a week of
    generated activity (5-minute windows: 2,016 a game) replayed, then the
    query as Grafana sends it, timed by wrk."""
    src = os.path.join(work, "week.jsonl")
    week = 7 * 24 * 3600 * 1000
    start = int(time.time() * 1000) - week + 3600 * 1000
    subprocess.run([binary, "generate", "--out", src, "--events", str(events), "--seed", "7",
                    "--rate", "%.4f" % (events / (week / 1000)), "--start", str(start)], check=True,
                   capture_output=True)
    proc, base = start_daemon(binary, work, "gamingd-week", ["--source", f"file:{src}", "--data-dir",
                                                            os.path.join(work, "week-data")])
    try:
        body = json.dumps({"range": {"from": start, "to": start + week},
                           "targets": [{"refId": "A", "target": "gaming_active_players_5min.active_players_count",
                                        "payload": {}}], "intervalMs": 300000, "maxDataPoints": 2000})
        req = urllib.request.Request(base + "/grafana/query", data=body.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            answer = json.loads(r.read())
        series, points = len(answer), sum(len(s["datapoints"]) for s in answer)
        script = post_script(work, "grafana", body)
        rps, _, _, errors = wrk(base + "/grafana/query", seconds, 2, 4, ("-s", script))
        _, p50, p99, errors_one = wrk(base + "/grafana/query", seconds, 1, 1, ("-s", script))
        return {"series": series, "points": points, "rps": rps, "p50": p50, "p99": p99, "errors": errors + errors_one}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def post_script(work, name, body):
    """A wrk script that POSTs body (JSON text)."""
    script = os.path.join(work, name + ".lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n'
                % json.dumps(body))
    return script


def cpu_seconds(pid, stat=None):
    """The process's CPU seconds, or one thread's with stat=/proc/<pid>/task/<tid>/stat."""
    with open(stat or f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def written_bytes(pid):
    """What the process has had written to storage (/proc/<pid>/io): LMDB's
    pages and syncs, the output file."""
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("write_bytes:"))


def ingest_cpu_seconds(pid):
    """The ingest thread's: gamingd's main thread."""
    return cpu_seconds(pid, f"/proc/{pid}/task/{pid}/stat")


def records_and_commits(metrics):
    """(records read from every topic, commits) from /metrics' text."""
    records = sum(int(v) for v in re.findall(rb"^gamingd_records_in_total\{[^}]*\} (\d+)", metrics, re.M))
    return records, metric(metrics, "gamingd_commits_total")


def push_query_figures(binary, sse_load, work, seconds, connections=1000):
    """1,000 SQL push queries with aggregation, 58 distinct statements (a
    game's per-minute figures, for each of 29 games, in two forms), while the
    generator ingests 10,000 events/s: what the clients get, and whether
    ingest kept its pace (its rate and gamingd's CPU against the same
    seconds with no query)."""
    queries = os.path.join(work, "push-queries.sql")
    with open(queries, "w") as f:
        for g in range(1, 30):
            f.write("SELECT game_id, COUNT(*) AS n, AVG(score) AS avg_score, COUNT_DISTINCT(player_id) AS players, "
                    "MAX(processing_timestamp) AS last FROM gaming_real_time_intelligence_platform "
                    f"WINDOW TUMBLING (SIZE 1 MINUTE) WHERE game_id = 'game_{g:03d}' GROUP BY game_id EMIT CHANGES;\n")
            f.write("SELECT player_segment, SUM(in_game_purchases) AS spent, MAX(processing_timestamp) AS last "
                    f"FROM gaming_real_time_intelligence_platform WHERE game_id = 'game_{g:03d}' "
                    "GROUP BY player_segment EMIT CHANGES;\n")
    proc, base = start_daemon(binary, work, "gamingd-pushq", ["--source", "generator", "--rate", "10000", "--seed", "7",
                                                             "--data-dir", os.path.join(work, "pushq-data")])
    try:
        time.sleep(2)

        def sample(span):
            c0, t0 = cpu_seconds(proc.pid), time.time()
            time.sleep(span)
            cpu = (cpu_seconds(proc.pid) - c0) / (time.time() - t0)
            _, m = get(base + "/metrics")
            return cpu, metric(m, "gamingd_ingest_records_per_second")

        idle = sample(seconds)
        load = subprocess.Popen([sse_load, base.rsplit(":", 1)[1], "/query-stream", str(connections), str(seconds),
                                 "query", queries], stdout=subprocess.PIPE, text=True)
        time.sleep(2)  # connected, counting
        busy = sample(seconds - 2)
        out = load.communicate(timeout=seconds + 120)[0]
        figures = dict(kv.split("=") for kv in out.split())
        _, m = get(base + "/metrics")
        return {"figures": figures, "idle": idle, "busy": busy,
                "queries": metric(m, "gamingd_push_queries"),
                "lost": metric(m, "gamingd_push_query_events_lost_total"),
                "rss": rss_mib(proc.pid)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def source_file(binary, work, events):
    """The bench's source: events activity events (seed 42, 1,000 a second), in work."""
    src = os.path.join(work, "source.jsonl")
    subprocess.run([binary, "generate", "--out", src, "--events", str(events), "--seed", "42", "--rate", "1000"],
                   check=True)
    return src


def replay(binary, src, work, name, cores=None):
    """Replaying src into a fresh data dir: activity events/s, CPU per event
    (µs, every thread), peak RSS (MiB), seconds in commits (0 for a build
    without gamingd_commit_seconds_total); cores: the CPUs it may run on
    (taskset), or all."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(work, name + ".log"), "w")
    pin = ["taskset", "-c", cores] if cores else []
    start = time.time()
    proc = subprocess.Popen(pin + [binary, "--source", f"file:{src}", "--data-dir", os.path.join(work, name),
                                   "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        while get(base + "/readyz", timeout=1)[0] != 200:
            if proc.poll() is not None:
                sys.exit(f"gamingd exited during the replay; see {log.name}")
            time.sleep(0.01)
        seconds = time.time() - start
        _, m = get(base + "/metrics")
        events = metric(m, "gamingd_records_in_total", '{topic="gaming_player_activity"}')
        return dict(rate=events / seconds, cpu_us=cpu_seconds(proc.pid) / events * 1e6, rss=peak_rss_mib(proc.pid),
                    commit_s=metric(m, "gamingd_commit_seconds_total"))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(os.path.join(work, name), ignore_errors=True)


def replay_rate(binary, src, work, name):
    """Activity events/s replaying src into a fresh data dir."""
    return replay(binary, src, work, name)["rate"]


def replay_scaling(binaries, src, events, work, rounds):
    """Each binary's replay on every core and on one (taskset -c 0),
    interleaved round by round so that drift in the machine hits all alike;
    prints medians: events/s, CPU per event, peak RSS, time in commits (a
    figure of the run itself, steadier than its length) and how much the
    second core buys."""
    got = {(b, c): [] for b in binaries for c in ("all", "0")}
    for r in range(rounds):
        for i, b in enumerate(binaries):
            for c in ("all", "0"):
                got[(b, c)].append(replay(b, src, work, f"scaling-{i}-{c}-{r}", None if c == "all" else c))
    mid = statistics.median
    print(f"\n## Replay, {events:,} events, medians of {rounds} interleaved rounds\n")
    print("| binary | cores | events/s | CPU per event | peak RSS | in commits | all cores / one |\n"
          "|---|---|---|---|---|---|---|")
    for i, b in enumerate(binaries):
        one = mid(f["rate"] for f in got[(b, "0")])
        for c in ("all", "0"):
            figs = got[(b, c)]
            rate = mid(f["rate"] for f in figs)
            gain = f"{rate / one:.2f}x" if c == "all" else "--"
            print(f"| {'baseline' if i else 'this binary'} | {os.cpu_count() if c == 'all' else 1} | {rate:,.0f} | "
                  f"{mid(f['cpu_us'] for f in figs):.2f} µs | {mid(f['rss'] for f in figs):.0f} MiB | "
                  f"{mid(f['commit_s'] for f in figs):.2f} s | {gain} |")


# A table over the activity stream: its cost per event is a replay's CPU
# with it less that without it (tables/session_cost)
TABLE_SHAPES = [
    ("no table of the user's", None),
    ("tumbling 5 min per player and game", "WINDOW TUMBLING (SIZE 5 MINUTES, GRACE PERIOD 10 MINUTES)"),
    ("session (gap 5 min) per player and game", "WINDOW SESSION (5 MINUTES, GRACE PERIOD 10 MINUTES)"),
]


def replay_with_table(binary, src, work, name, window):
    """CPU seconds and peak RSS of replaying src into a data dir holding a
    user's table with window (made first, by /ksql, on an empty source)."""
    data = os.path.join(work, name)
    if window:
        empty = os.path.join(work, "empty.jsonl")
        open(empty, "w").close()
        proc, base = start_daemon(binary, work, name + "-ddl", ["--source", f"file:{empty}", "--data-dir", data])
        body = json.dumps({"ksql": "CREATE TABLE user_t AS SELECT player_id, game_id, COUNT(*) AS events, "
                                   "SUM(duration_seconds) AS seconds, MAX(score) AS best "
                                   "FROM gaming_real_time_intelligence_platform " + window +
                                   " GROUP BY player_id, game_id EMIT CHANGES;"}).encode()
        req = urllib.request.Request(base + "/ksql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    port = free_port()
    log = open(os.path.join(work, name + ".log"), "w")
    proc = subprocess.Popen([binary, "--source", f"file:{src}", "--data-dir", data, "--listen", f"127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        while get(f"http://127.0.0.1:{port}/readyz", timeout=1)[0] != 200:
            if proc.poll() is not None:
                sys.exit(f"gamingd exited during the replay; see {log.name}")
            time.sleep(0.01)
        return cpu_seconds(proc.pid), peak_rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


def table_cost(binary, src, events, work, rounds):
    """Each table shape's replay, interleaved, rounds times: medians."""
    got = {name: [] for name, _ in TABLE_SHAPES}
    for r in range(rounds):
        for i, (name, window) in enumerate(TABLE_SHAPES):
            got[name].append(replay_with_table(binary, src, work, f"shape{i}-{r}", window))
    base_cpu = statistics.median(c for c, _ in got[TABLE_SHAPES[0][0]])
    print(f"\n## A user's table over the activity stream ({events:,} events, median of {rounds} interleaved replays)\n")
    print("| table | CPU per event | the table's own | peak RSS |\n|---|---|---|---|")
    for name, _ in TABLE_SHAPES:
        cpu = statistics.median(c for c, _ in got[name])
        rss = statistics.median(m for _, m in got[name])
        own = f"{(cpu - base_cpu) / events * 1e6:.2f} µs" if name != TABLE_SHAPES[0][0] else "--"
        print(f"| {name} | {cpu / events * 1e6:.2f} µs | {own} | {rss:.0f} MiB |")


PULL_QUERIES = [
    ("REST keyed, latest window", "/v1/tables/gaming_active_players_5min?game_id=game_003", None),
    ("REST two keys", "/v1/tables/gaming_hourly_player_game_stats?player_id=player_00007&game_id=game_002", None),
    # SQL without window bounds reads every window (as ksqlDB does); the REST
    # line before each SQL one asks for the same rows, so the two compare
    ("REST two keys, every window", "/v1/tables/gaming_hourly_player_game_stats?player_id=player_00007&game_id=game_002"
                                    "&from=0&to=9999999999999", None),
    ("SQL two keys", "/query-stream", "SELECT * FROM gaming_hourly_player_game_stats WHERE player_id = 'player_00007' "
                                      "AND game_id = 'game_002';"),
    ("REST one key, every window", "/v1/tables/gaming_active_players_5min?game_id=game_003&from=0&to=9999999999999",
     None),
    ("SQL one key, every window", "/query-stream", "SELECT * FROM gaming_active_players_5min WHERE game_id = 'game_003';"),
    ("REST whole small table", "/v1/tables/gaming_player_segments_hourly", None),
]


def interleaved(r, binary, baseline):
    """Round r's order: this binary first in even rounds, the baseline in odd
    ones, so that drift in the machine and going first hit both alike."""
    return ((0, binary), (1, baseline)) if r % 2 == 0 else ((1, baseline), (0, binary))


def pull_compare(binary, baseline, src, work, seconds, rounds, names=None, p99=False):
    """REST and SQL pull queries (PULL_QUERIES, or those named) of this binary
    and a baseline on the same data, interleaved round by round: {query name:
    ([this binary's], [the baseline's])}, each {"rps": req/s at 64
    connections, 0 on errors; "p99": ms at 4 connections when asked, inf on
    errors}."""
    queries = [q for q in PULL_QUERIES if names is None or q[0] in names]
    procs, bases = [], []
    try:
        for i, b in enumerate([binary, baseline]):
            proc, base = start_daemon(b, work, "pull-%d" % i, ["--source", f"file:{src}",
                                                              "--data-dir", os.path.join(work, "pull-data-%d" % i)])
            procs.append(proc)
            bases.append(base)
        out = {name: ([], []) for name, _, _ in queries}
        for r in range(rounds):
            for k, (name, path, sql) in enumerate(queries):
                extra = ("-s", post_script(work, "cmp-%d" % k, json.dumps({"sql": sql}))) if sql else ()
                for i, _ in interleaved(r, binary, baseline):
                    rps, _, _, errors = wrk(bases[i] + path, seconds, 2, 64, extra)
                    fig = {"rps": rps if not errors else 0}
                    if p99:
                        _, _, ms, errors_low = wrk(bases[i] + path, seconds, 1, 4, extra)
                        fig["p99"] = ms if not errors_low else float("inf")
                    out[name][i].append(fig)
        return out
    finally:
        stop_instances(procs)


def push_compare(binary, baseline, sse_load, work, seconds, rounds, runs=FILTERED_RUNS):
    """runs (FILTERED_RUNS by default) against both binaries, interleaved round
    by round: {label: ([this binary's figures], [the baseline's])}."""
    out = {}
    for r in range(rounds):
        for which, b in interleaved(r, binary, baseline):
            run_dir = os.path.join(work, "r%d-%d" % (r, which))
            os.makedirs(run_dir)
            for label, f, rate in push_figures(b, sse_load, run_dir, seconds, runs, tolerate=True):
                if "error" in f:
                    print(f"  round {r + 1}, {('this binary', 'baseline')[which]}, {label}: sse_load failed: {f['error']}")
                else:
                    out.setdefault(label, ([], []))[which].append(dict(f, ingest=rate))
    return out


def print_push_compare(cmp):
    mid = lambda v: sorted(v)[len(v) // 2]
    for label, runs in cmp.items():
        for name, figs in zip(("this binary", "baseline"), runs):
            print(f"  push vs baseline   {mid([float(f['events_per_s']) for f in figs]):>9,.0f} events/s delivered  "
                  f"p50 {mid([float(f['p50_ms']) for f in figs])} ms  p99 {mid([float(f['p99_ms']) for f in figs])} ms  "
                  f"lost {mid([int(f['dropped']) for f in figs]):,}  ingest {mid([f['ingest'] for f in figs]):,}/s  "
                  f"gamingd {mid([f['cores'] for f in figs]):.2f} cores  "
                  f"ingest thread {mid([f['ingest_us'] for f in figs]):.1f} µs/event  "
                  f"{mid([f['commits_per_s'] for f in figs]):.1f} commits/s  "
                  f"disk writes {mid([f['disk_mb_per_s'] for f in figs]):.0f} MB/s  "
                  f"{name}: {label} (medians of {len(figs)} interleaved rounds)")


def print_pull_compare(cmp):
    for name, runs in cmp.items():
        new, old = ([f["rps"] for f in figs] for figs in runs)
        mid = lambda v: sorted(v)[len(v) // 2]
        print(f"  pull vs baseline   {mid(new):>9,.0f} req/s this binary, {mid(old):,.0f} the baseline "
              f"({mid(new) / mid(old) * 100:.0f}%; medians of {len(new)} interleaved rounds, 64 conns)  {name}")


def metric(metrics_text, name, labels=""):
    m = re.search(rb"^" + re.escape(name.encode()) + re.escape(labels.encode()) + rb" (\S+)$", metrics_text, re.M)
    return float(m.group(1)) if m else 0.0


SOAK_DAYS = (7, 14, 30)
DAY_MS = 86_400_000


def soak_source(binary, work):
    """30 days of activity at 1/s, ending a day ago: retention counts from
    the stream time, never from past the wall clock."""
    src = os.path.join(work, "soak.jsonl")
    start = int(time.time() * 1000) - 31 * DAY_MS
    subprocess.run([binary, "generate", "--out", src, "--events", str(30 * 86_400), "--seed", "42",
                    "--rate", "1", "--start", str(start)], check=True, stderr=subprocess.DEVNULL)
    return src, start


def soak(binary, src, start, work, name):
    """data.mdb size and RSS (MiB) as the replay's stream time passes each
    of SOAK_DAYS; the last at /readyz."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = os.path.join(work, name)
    log = open(os.path.join(work, name + ".log"), "w")
    t0 = time.time()
    proc = subprocess.Popen([binary, "--source", f"file:{src}", "--data-dir", data, "--output", "none",
                             "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    points = {}
    try:
        while len(points) < len(SOAK_DAYS):
            if proc.poll() is not None:
                sys.exit(f"gamingd exited during the soak; see {log.name}")
            ready = get(base + "/readyz", timeout=1)[0] == 200
            _, m = get(base + "/metrics")
            day = (metric(m, "gamingd_stream_time_ms") - start) / DAY_MS
            for d in SOAK_DAYS:
                if d not in points and (day >= d or (ready and d == SOAK_DAYS[-1])):
                    points[d] = (os.path.getsize(os.path.join(data, "data.mdb")) / 2**20, rss_mib(proc.pid))
            time.sleep(0.1)
        return {"points": points, "peak": peak_rss_mib(proc.pid), "seconds": time.time() - t0}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


def soak_figures(binary, baseline, work):
    src, start = soak_source(binary, work)
    try:
        runs = [("this binary", soak(binary, src, start, work, "soak-new"))]
        if baseline:
            runs.append(("baseline", soak(baseline, src, start, work, "soak-baseline")))
        return runs
    finally:
        os.unlink(src)


def print_soak(runs):
    for label, r in runs:
        at = "  ".join(f"day {d}: {r['points'][d][0]:,.0f} MiB file, {r['points'][d][1]:,.0f} MiB RSS" for d in SOAK_DAYS)
        print(f"  soak, 30 d at 1/s  {at}; peak RSS {r['peak']:,.0f} MiB; replayed in {r['seconds']:.0f} s "
              f"(7 d retention) -- {label}")


# The mock holds a fetch that finds no data for the whole fetch.wait.max.ms
# (500 ms by default) and, unlike a broker, does not answer it early when
# records arrive (rdkafka_mock.c says so): a route or partition that runs dry
# for a moment stalls its consumer half a second. gamingd's consumers on the
# mock are told to wait 10 ms, so that figures measure gamingd, not that.
# Measured on partitioned x1, 200,000 events, 3 alternated runs: every record
# applied after 11.2-11.6 s with the default, 8.3-9.1 s with 10 ms.
MOCK_FETCH_WAIT = ["-X", "fetch.wait.max.ms=10"]


class MockCluster:
    """The mock broker and the Schema Registry stand-in, with the source and
    output topics made: `with MockCluster(...) as c:` gives c.broker (its
    command pipe), c.bootstrap and c.reg_url."""

    def __init__(self, mock_broker, registry):
        self.broker = subprocess.Popen([mock_broker], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                       bufsize=1)
        self.reg = subprocess.Popen(["/usr/bin/python3", registry], stdout=subprocess.PIPE, text=True)
        self.bootstrap = self.broker.stdout.readline().strip()
        self.reg_url = self.reg.stdout.readline().strip()
        # the mock keeps 5 MB of batches per partition: enough partitions to hold the feed
        for topic, n in (("gaming_games", 1), ("gaming_players", 1), ("gaming_player_activity", 64),
                         ("gaming.real-time-gaming-intelligence-platform", 6)):
            self.topic(topic, n)

    def topic(self, name, partitions):
        self.broker.stdin.write(f"topic {name} {partitions}\n")
        assert self.broker.stdout.readline().strip() == "ok"

    def fill(self, binary, events, seed, topic_activity=None):
        """`gamingd generate --brokers` into the source topics; the seconds it took."""
        t = time.time()
        subprocess.run([binary, "generate", "--brokers", self.bootstrap, "--events", str(events), "--seed", str(seed)]
                       + (["--topic-activity", topic_activity] if topic_activity else []),
                       check=True, stderr=subprocess.DEVNULL)
        return time.time() - t

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.broker.stdin.close()
        self.broker.wait(timeout=30)
        self.reg.kill()


def kafka_end_to_end(binary, cluster, work, events, name):
    """gamingd (a fresh data dir, so a consumer group of its own) reads the
    source topics from the start and writes Avro to the output topic.
    Events/s from the first activity record read to the last output record
    acknowledged (as the metrics show it, polled every 0.1 s); the activity
    consumer lag sampled every 0.5 s; CPU per event of every thread."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(work, f"gamingd-{name}.log"), "w")
    data = os.path.join(work, "data-" + name)
    proc = subprocess.Popen([binary, "--source", "kafka", "--brokers", cluster.bootstrap, "--schema-registry",
                             cluster.reg_url, "--data-dir", data, "--listen", f"127.0.0.1:{port}", *MOCK_FETCH_WAIT],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        lag, first, polls = [], None, 0
        while True:
            time.sleep(0.1)  # the end is seen within 0.1 s; the lag is kept every 0.5 s
            polls += 1
            if proc.poll() is not None:
                sys.exit("gamingd exited during the Kafka run; see " + log.name)
            try:
                _, m = get(base + "/metrics")
            except OSError:
                continue
            now = time.time()
            activity = metric(m, "gamingd_records_in_total", '{topic="gaming_player_activity"}')
            if activity and first is None:
                first = (now, activity)
            if first and polls % 5 == 0:
                lag.append((now - first[0], metric(m, "gamingd_kafka_consumer_lag", '{topic="gaming_player_activity"}')))
            produced = metric(m, "gamingd_kafka_produced_total")
            if activity >= events and produced and metric(m, "gamingd_kafka_delivered_total") >= produced:
                break
        return dict(rate=(activity - first[1]) / (now - first[0]), seconds=now - first[0], lag=lag,
                    delivered=metric(m, "gamingd_kafka_delivered_total"), rss=peak_rss_mib(proc.pid),
                    cpu_us=cpu_seconds(proc.pid) / events * 1e6)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


def kafka_figures(binary, mock_broker, registry, work, events):
    """End to end through the mock cluster (kafka_end_to_end), then replicas,
    partitioned mode, take-over and partitioned push on the same cluster."""
    with MockCluster(mock_broker, registry) as c:
        produce_s = c.fill(binary, events, 42)
        result = kafka_end_to_end(binary, c, work, events, "kafka")
        result["produce_rate"] = events / produce_s
        result["value_bytes"] = value_bytes(c.bootstrap)
        result["replicas"] = [replica_figures(binary, c.bootstrap, c.reg_url, work, events, n) for n in (1, 2, 3)]
        # the first 200,000 events only: a route of few keys (one, for the data quality table) puts its
        # records in few partitions, of which the mock keeps ~5 MB each
        part_events = min(events, 200_000)
        c.topic(PARTITIONED_ACTIVITY, 64)
        c.fill(binary, part_events, 43, PARTITIONED_ACTIVITY)
        result["partitioned"] = [partitioned_figures(binary, c.broker, c.bootstrap, c.reg_url, work, part_events, n)
                                 for n in (1, 2, 3, 4)]
        result["takeover"] = [takeover_figures(binary, c.broker, c.bootstrap, c.reg_url, work, part_events, ms, sb)
                              for ms in (3000, 6000) for sb in (1, 0)]
        result["takeover"].append(takeover_figures(binary, c.broker, c.bootstrap, c.reg_url, work, part_events, 6000,
                                                   1, staleness=0))
        result["partitioned_push"] = partitioned_push_figures(binary, c.broker, c.bootstrap, c.reg_url, work,
                                                              min(events, 10_000))
        return result


def value_bytes(bootstrap, topic="gaming_player_activity"):
    """A topic's value bytes, as a consumer receives them."""
    r = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-e", "-q", "-f", "%S\\n"],
                       capture_output=True, check=True, timeout=300)
    return sum(int(x) for x in r.stdout.split())


def start_instances(binary, bootstrap, reg_url, work, name, n, args, procs, bases):
    """n instances on the Kafka source, none writing the output topic, each
    with a data dir, a port and a log of its own (work/gamingd-NAME-I.log);
    appended to procs and bases as they start, so the caller stops them."""
    for i in range(n):
        port = free_port()
        log = open(os.path.join(work, f"gamingd-{name}-{i}.log"), "w")
        procs.append(subprocess.Popen([binary, "--source", "kafka", "--brokers", bootstrap, "--schema-registry", reg_url,
                                       "--output", "none", "--data-dir", os.path.join(work, f"data-{name}-{i}"),
                                       "--listen", f"127.0.0.1:{port}", *MOCK_FETCH_WAIT] + args,
                                      stdout=log, stderr=subprocess.STDOUT))
        bases.append(f"http://127.0.0.1:{port}")


def stop_instances(procs):
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=30)


def replica_figures(binary, bootstrap, reg_url, work, events, n):
    """n replicas (each in a consumer group of its own, none writing the
    output topic) read the same activity topic at once: how long until each
    holds every record, and the CPU they spent together, per source event."""
    procs, bases = [], []
    try:
        start_instances(binary, bootstrap, reg_url, work, f"replica{n}", n, [], procs, bases)
        start, done, cpu = time.time(), [None] * n, [0.0] * n
        while not all(done):
            time.sleep(0.1)
            for i, base in enumerate(bases):
                if done[i]:
                    continue
                if procs[i].poll() is not None:
                    sys.exit(f"a replica exited; see {work}/gamingd-replica{n}-{i}.log")
                try:
                    _, m = get(base + "/metrics")
                except OSError:
                    continue
                if metric(m, "gamingd_records_in_total", '{topic="gaming_player_activity"}') >= events:
                    done[i], cpu[i] = time.time() - start, cpu_seconds(procs[i].pid)
        return dict(n=n, slowest=max(done), rate_each=events / max(done), cpu_per_event_us=sum(cpu) / events * 1e6,
                    rss=sum(peak_rss_mib(p.pid) for p in procs))
    finally:
        stop_instances(procs)


PARTITIONED_ACTIVITY = "gaming_player_activity_partitioned"
PARTITIONED_ROUTES = ("game_id", "gaming_genre_engagement", "gaming_player_segments_hourly", "gaming_data_quality_5min")


def create_internal_topics(broker, app):
    """Partitioned mode's topics, made in the mock beforehand: it answers no
    CreateTopics, so gamingd would wait out its timeout for each."""
    topics = [(f"{app}-repartition-{r}", 64) for r in PARTITIONED_ROUTES]
    changelog = (f"{app}-changelog", 64 * len(PARTITIONED_ROUTES))  # a partition per route partition
    for topic, parts in topics + [changelog, (f"{app}-push", 64), (f"{app}-instances", 1)]:
        broker.stdin.write(f"topic {topic} {parts}\n")
        assert broker.stdout.readline().strip() == "ok"


class StreamCounter:
    """An SSE subscriber on a thread of its own, counting its events."""

    def __init__(self, base, streams):
        host, port = base.split("//")[1].split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.sendall(f"GET /v1/streams/{streams} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        self.events = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        rest = b""
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            rest += chunk
            self.events += rest.count(b"\nid: ") + rest.startswith(b"id: ")
            rest = rest[-8:]

    def close(self):
        self.sock.close()


def settled_instance(base, topic):
    """Whether the instance runs and holds partitions of topic."""
    status, body = get(base + "/v1/cluster")
    me = json.loads(body)["instances"][0] if status == 200 else {}
    return me.get("state") == "running" and bool(me.get("partitions", {}).get(topic))


def partitioned_push_figures(binary, broker, bootstrap, reg_url, work, events):
    """Two partitioned instances, a subscriber on instance 0 to the enriched
    stream and every windowed table before any record comes: the value bytes
    the push topic carries per source event (every instance reads them), and
    the CPU per event with them."""
    app, topic = "bench-push", PARTITIONED_ACTIVITY + "_push"
    create_internal_topics(broker, app)
    broker.stdin.write(f"topic {topic} 64\n")
    assert broker.stdout.readline().strip() == "ok"
    procs, bases = [], []
    try:
        start_instances(binary, bootstrap, reg_url, work, "push", 2,
                        ["--mode", "partitioned", "--application-id", app, "--topic-activity", topic], procs, bases)
        while not all(settled_instance(base, topic) for base in bases):
            time.sleep(0.2)
        windowed = [t["name"] for t in json.loads(get(bases[0] + "/v1/tables")[1])["tables"] if t.get("window_ms")]
        sub = StreamCounter(bases[0], ",".join(["gaming_real_time_intelligence_platform"] + windowed))
        time.sleep(3)  # its announcement reaches the other instance
        cpu0 = sum(cpu_seconds(p.pid) for p in procs)
        subprocess.run([binary, "generate", "--brokers", bootstrap, "--events", str(events), "--seed", "44",
                        "--topic-activity", topic], check=True, stderr=subprocess.DEVNULL)
        start, applied = time.time(), 0.0
        while applied < events and time.time() - start < 300:
            time.sleep(0.2)
            applied = sum(metric(get(base + "/metrics")[1], "gamingd_records_out_total",
                                 '{topic="gaming.real-time-gaming-intelligence-platform"}') for base in bases)
        time.sleep(2)
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
        push = sum(metric(get(base + "/metrics")[1], "gamingd_internal_bytes_total", '{topic="push"}')
                   for base in bases)
        _, m = get(bases[0] + "/metrics")
        published, dropped = (sum(float(v) for v in re.findall(rb"^" + name + rb"\{[^}]*\} (\S+)$", m, re.M))
                              for name in (rb"gamingd_stream_events_published_total",
                                           rb"gamingd_stream_events_dropped_total"))
        sub.close()
        missed = metric(m, "gamingd_push_missed_total")
        return dict(events=events, push_bytes=push / events, published=published / events, received=sub.events,
                    dropped=dropped, missed=missed, cpu_per_event_us=cpu / events * 1e6)
    finally:
        stop_instances(procs)


def takeover_figures(binary, broker, bootstrap, reg_url, work, events, session_ms, standby=1, tag="", staleness=None):
    """Two partitioned instances apply the topic, then one is killed with -9:
    how long until the survivor holds every partition again and answers a
    table query (200, not 503), how much of that was the group noticing
    (the session timeout) and how much the restore, and for how long in all
    the survivor did not answer the query (asked every 50 ms). standby:
    their --standby-replicas (1: the survivor kept the other's tasks warm;
    0: it restores them from the changelog's beginning); staleness: their
    --max-staleness (standby reads), None for owners only."""
    app = f"bench-takeover{session_ms}-{standby}-{staleness}{tag}"
    create_internal_topics(broker, app)
    procs, bases = [], []
    reads = [] if staleness is None else ["--max-staleness", str(staleness)]
    try:
        start_instances(binary, bootstrap, reg_url, work, f"takeover{session_ms}-{standby}-{staleness}{tag}", 2,
                        ["--mode", "partitioned", "--application-id", app, "--topic-activity", PARTITIONED_ACTIVITY,
                         "-X", f"session.timeout.ms={session_ms}", "--standby-replicas", str(standby), *reads],
                        procs, bases)
        start = time.time()
        while time.time() - start < 300:  # applied, and each knows the other (whose tasks it keeps warm)
            time.sleep(0.2)
            applied = sum(metric(get(base + "/metrics")[1], "gamingd_records_out_total",
                                 '{topic="gaming.real-time-gaming-intelligence-platform"}') for base in bases)
            if (applied >= events and all(settled_instance(base, PARTITIONED_ACTIVITY) for base in bases)
                    and all(len(json.loads(get(base + "/v1/cluster")[1])["instances"]) == 2 for base in bases)):
                break
        procs[1].kill()
        killed = asked = time.time()
        noticed = None
        unanswered = 0.0
        while time.time() - killed < 300:
            time.sleep(0.05)
            status, body = get(bases[0] + "/v1/cluster")
            me = json.loads(body)["instances"][0] if status == 200 else {}
            if noticed is None and me.get("state") == "rebalancing":
                noticed = time.time() - killed
            held = len(me.get("partitions", {}).get(PARTITIONED_ACTIVITY, []))
            answered = get(bases[0] + "/v1/tables/gaming_active_players_5min")[0] == 200
            now = time.time()
            if not answered:
                unanswered += now - asked
            asked = now
            if held == 64 and answered:
                break
        took = time.time() - killed
        return dict(session_ms=session_ms, standby=standby, staleness=staleness, seconds=took,
                    noticed=noticed if noticed is not None else took, unanswered=unanswered)
    finally:
        stop_instances(procs)


def partitioned_figures(binary, broker, bootstrap, reg_url, work, events, n, tag="", extra=()):
    """n instances in --mode partitioned (an application id of their own per
    run, bench-part<n><tag>) share the activity topic: how long until every
    record has been applied on its game_id route (the figures' and output's
    route), the CPU they spent together per source event, and the value
    bytes the internal topics (routes and changelog) carried per event."""
    app = f"bench-part{n}{tag}"
    create_internal_topics(broker, app)
    procs, bases = [], []
    began = time.time()
    try:
        start_instances(binary, bootstrap, reg_url, work, f"part{n}{tag}", n,
                        ["--mode", "partitioned", "--application-id", app, "--topic-activity", PARTITIONED_ACTIVITY,
                         *extra],
                        procs, bases)
        start = time.time()
        while True:
            time.sleep(0.2)
            routed = applied = bad = 0.0
            for i, base in enumerate(bases):
                if procs[i].poll() is not None:
                    sys.exit(f"a partitioned instance exited; see {work}/gamingd-part{n}{tag}-{i}.log")
                try:
                    _, m = get(base + "/metrics")
                except OSError:
                    continue
                routed += metric(m, "gamingd_records_in_total", f'{{topic="{PARTITIONED_ACTIVITY}"}}')
                bad += metric(m, "gamingd_bad_records_total", f'{{topic="{PARTITIONED_ACTIVITY}"}}')
                applied += metric(m, "gamingd_records_out_total",
                                  '{topic="gaming.real-time-gaming-intelligence-platform"}')
            if routed >= events and applied + bad >= events:
                break
        took = time.time() - start
        cpu, ran = sum(cpu_seconds(p.pid) for p in procs), time.time() - began
        idle = idle_cpu_rate(procs)
        pulls = pull_latencies(bases[0])
        # as produced (the mock keeps ~5 MB a partition, and a route of few keys fills few partitions)
        routes = changelog = 0.0
        for base in bases:
            _, m = get(base + "/metrics")
            routes += metric(m, "gamingd_internal_bytes_total", '{topic="routes"}')
            changelog += metric(m, "gamingd_internal_bytes_total", '{topic="changelog"}')
        return dict(n=n, events=events, seconds=took, rate=events / took, cpu_per_event_us=cpu / events * 1e6,
                    cpu_less_idle_per_event_us=(cpu - idle * ran) / events * 1e6,
                    route_bytes=routes / events, changelog_bytes=changelog / events,
                    rss=sum(peak_rss_mib(p.pid) for p in procs), **pulls)
    finally:
        stop_instances(procs)


PULL_SAMPLES = 30


def idle_cpu_rate(procs, settle_s=3, window_s=3):
    """CPU seconds per second the processes spend with nothing to do, once
    the last records' commits are done: on the mock, mostly librdkafka's
    fetches every 10 ms (MOCK_FETCH_WAIT) of every partition each consumer
    reads -- a cost per instance and second, not per event, that a broker
    answering fetches early would not ask for."""
    time.sleep(settle_s)
    before = sum(cpu_seconds(p.pid) for p in procs)
    time.sleep(window_s)
    return (sum(cpu_seconds(p.pid) for p in procs) - before) / window_s


def pull_latencies(base):
    """Median milliseconds of a pull of the first 100 rows of a table and of
    one game's rows, asked of one instance once every record is applied
    (answered from its own store where it holds every task, else merged from
    the owners'), and the bytes other instances sent it per query."""
    table = base + "/v1/tables/gaming_hourly_player_game_stats?from=0&to=9999999999999"
    deadline = time.time() + 30
    status, body = get(table + "&limit=1", timeout=10)
    while status != 200 and time.time() < deadline:  # an owner still announcing its tasks: 503
        time.sleep(0.2)
        status, body = get(table + "&limit=1", timeout=10)
    game = urllib.parse.quote(json.loads(body)["rows"][0]["game_id"])
    out = {}
    for name, url in (("pull_first_100_ms", table + "&limit=100"), ("pull_one_game_ms", table + f"&game_id={game}")):
        _, before = get(base + "/metrics")
        times = []
        for _ in range(PULL_SAMPLES):
            t0 = time.perf_counter()
            status, _ = get(url, timeout=10)
            times.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                sys.exit(f"pull {url} answered {status}")
        _, after = get(base + "/metrics")
        out[name] = statistics.median(times)
        out[name.replace("_ms", "_peer_bytes")] = (metric(after, "gamingd_peer_bytes_total") -
                                                  metric(before, "gamingd_peer_bytes_total")) / PULL_SAMPLES
    return out


# the SSE figures of the engine's before/after table (issue figures): filtered to one game and whole
COMPARE_PUSH_RUNS = [run for run in PUSH_RUNS if run[0] != "1,000 subscribers, whole stream"]
COMPARE_PULLS = ("REST keyed, latest window", "REST two keys", "REST whole small table", "SQL two keys",
                 "SQL one key, every window")


def compare_all(binary, baseline, sse_load, mock_broker, registry, work, events, seconds, rounds):
    """Every figure of the engine's table, this binary against the baseline,
    interleaved round by round (the baseline first in odd rounds) so that
    drift in the machine hits both alike: {figure: ([this binary's], [the
    baseline's])}, in the order the table prints them."""
    out = {}

    def keep(figure, which, value):
        out.setdefault(figure, ([], []))[which].append(value)

    src = source_file(binary, work, events)
    for r in range(rounds):
        for which, b in interleaved(r, binary, baseline):
            f = replay(b, src, work, f"replay-{which}")
            keep("replay, events/s", which, f["rate"])
            keep("replay, CPU per event (µs)", which, f["cpu_us"])
            keep("replay, peak RSS (MiB)", which, f["rss"])
            keep("replay, time in commits (s)", which, f["commit_s"])

    os.makedirs(os.path.join(work, "pull-src"))
    pull_src = source_file(binary, os.path.join(work, "pull-src"), min(events, 200_000))
    for name, runs in pull_compare(binary, baseline, pull_src, work, seconds, rounds, COMPARE_PULLS, True).items():
        for which, figs in enumerate(runs):
            for f in figs:
                keep(f"pull {name}, req/s (64 conns)", which, f["rps"])
                keep(f"pull {name}, p99 ms (4 conns)", which, f["p99"])

    for label, runs in push_compare(binary, baseline, sse_load, work, seconds, rounds, COMPARE_PUSH_RUNS).items():
        for which, figs in enumerate(runs):
            for f in figs:
                keep(f"SSE {label}, events lost", which, int(f["dropped"]))
                keep(f"SSE {label}, p99 ms", which, float(f["p99_ms"]))
                keep(f"SSE {label}, events/s delivered", which, float(f["events_per_s"]))
                keep(f"SSE {label}, gamingd cores", which, f["cores"])
                keep(f"SSE {label}, ingest thread CPU per event (µs)", which, f["ingest_us"])
                keep(f"SSE {label}, commits/s", which, f["commits_per_s"])
                keep(f"SSE {label}, disk writes MB/s", which, f["disk_mb_per_s"])

    part_events = min(events, 200_000)
    with MockCluster(mock_broker, registry) as c:
        c.fill(binary, events, 42)
        c.topic(PARTITIONED_ACTIVITY, 64)
        c.fill(binary, part_events, 43, PARTITIONED_ACTIVITY)
        for r in range(rounds):
            for which, b in interleaved(r, binary, baseline):
                f = kafka_end_to_end(b, c, work, events, f"e2e-{r}-{which}")
                keep("Kafka end to end, events/s", which, f["rate"])
                keep("Kafka end to end, CPU per event (µs)", which, f["cpu_us"])
        for r in range(rounds):
            for which, b in interleaved(r, binary, baseline):
                f = partitioned_figures(b, c.broker, c.bootstrap, c.reg_url, work, part_events, 1, f"-{r}-{which}")
                keep("partitioned x1, CPU per source event (µs)", which, f["cpu_per_event_us"])
    return out


TAKEOVER_SETTINGS = {"--standby-replicas 1": (1, None), "--standby-replicas 0": (0, None),
                     "--standby-replicas 1 --max-staleness 0": (1, 0)}


def takeover_compare(binary, mock_broker, registry, work, events, rounds):
    """A take-over after kill -9 with a standby, without, and with standby
    reads, interleaved round by round (session.timeout.ms 6000): seconds per
    setting."""
    out = {name: [] for name in TAKEOVER_SETTINGS}
    with MockCluster(mock_broker, registry) as c:
        c.topic(PARTITIONED_ACTIVITY, 64)
        c.fill(binary, events, 43, PARTITIONED_ACTIVITY)
        for r in range(rounds):
            names = list(TAKEOVER_SETTINGS)
            for name in names[r % len(names):] + names[:r % len(names)]:
                standby, staleness = TAKEOVER_SETTINGS[name]
                out[name].append(takeover_figures(binary, c.broker, c.bootstrap, c.reg_url, work, events, 6000,
                                                  standby, f"-{r}", staleness))
    return out


def print_takeover(out):
    for name, runs in out.items():
        took = ", ".join(f"{t['seconds']:.1f}" for t in runs)
        noticed = ", ".join(f"{t['noticed']:.1f}" for t in runs)
        restore = ", ".join(f"{t['seconds'] - t['noticed']:.1f}" for t in runs)
        unanswered = ", ".join(f"{t['unanswered']:.1f}" for t in runs)
        print(f"{name}: holding every partition and answering after kill -9 in {took} s; rebalancing from "
              f"{noticed} s, so restoring and rebalancing took {restore} s; queries unanswered for {unanswered} s")


def partitioned_compare(binary, baseline, mock_broker, registry, work, events, rounds, standby=None):
    """Partitioned mode for 1 to 4 instances, this binary against the
    baseline, interleaved round by round: CPU per source event of all
    instances together, and the value bytes per event the routes and the
    changelog carried, in print_compare_all's shape. standby: this binary's
    --standby-replicas (the baseline's default is kept)."""
    mine = ["--standby-replicas", str(standby)] if standby is not None else []
    out = {}
    with MockCluster(mock_broker, registry) as c:
        c.topic(PARTITIONED_ACTIVITY, 64)
        c.fill(binary, events, 43, PARTITIONED_ACTIVITY)
        for r in range(rounds):
            for n in (1, 2, 3, 4):
                for which, b in interleaved(r, binary, baseline):
                    f = partitioned_figures(b, c.broker, c.bootstrap, c.reg_url, work, events, n, f"-{r}-{which}",
                                            mine if which == 0 else [])
                    for figure, key in (("CPU per source event (µs)", "cpu_per_event_us"),
                                        ("CPU per source event less idle (µs)", "cpu_less_idle_per_event_us"),
                                        ("route bytes per event", "route_bytes"),
                                        ("changelog bytes per event", "changelog_bytes"),
                                        ("pull, first 100 rows (ms)", "pull_first_100_ms"),
                                        ("pull, first 100 rows: bytes from others", "pull_first_100_peer_bytes"),
                                        ("pull, one game (ms)", "pull_one_game_ms"),
                                        ("pull, one game: bytes from others", "pull_one_game_peer_bytes")):
                        out.setdefault(f"partitioned x{n}, {figure}", ([], []))[which].append(f[key])
    return out


def print_compare_all(cmp, rounds):
    print(f"| figure (medians of {rounds} interleaved rounds) | this binary | baseline | this / baseline |")
    print("|---|---|---|---|")
    for figure, (new, old) in cmp.items():
        a, b = statistics.median(new), statistics.median(old)
        ratio = f"{a / b:.2f}x" if b else "--"
        whole = max(abs(a), abs(b)) >= 100 or all(float(v).is_integer() for v in new + old)
        fmt = (lambda v: f"{v:,.0f}") if whole else (lambda v: f"{v:.2f}")
        print(f"| {figure} | {fmt(a)} | {fmt(b)} | {ratio} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=int, default=8, help="each wrk and sse_load run")
    ap.add_argument("--sse-load", required=True, help="the tests/bench/sse_load binary")
    ap.add_argument("--mock-broker", required=True, help="the tests/kafka/mock_broker binary")
    ap.add_argument("--kafka-events", type=int, default=1_000_000)
    ap.add_argument("--stall-seconds", type=int, default=60, help="how long 1,000 subscribers read nothing")
    ap.add_argument("--week-events", type=int, default=1_000_000, help="activity events in the week of /grafana/query")
    ap.add_argument("--baseline", help="another gamingd binary: its replay is timed against this one's, interleaved")
    ap.add_argument("--rounds", type=int, default=3, help="replays of each binary with --baseline")
    ap.add_argument("--standby-replicas", type=int, help="--only partitioned: this binary's --standby-replicas")
    ap.add_argument("--only", choices=["pull", "push", "soak", "tables", "replay", "compare", "partitioned",
                                       "takeover"],
                    help="pull: only REST and SQL pull queries against --baseline; push: only filtered SSE subscribers; "
                         "soak: only the data file and RSS over 30 days of event time; "
                         "tables: only what a user's tumbling and session table cost per event; "
                         "replay: only replays, on every core and on one, against --baseline if given; "
                         "compare: every figure of the engine's table (replay, pulls, SSE, Kafka end to end, "
                         "partitioned x1) against --baseline, interleaved; partitioned: partitioned mode's CPU "
                         "and internal bytes per event for 1 to 4 instances against --baseline, interleaved; "
                         "takeover: a take-over after kill -9 with a standby and without, interleaved")
    args = ap.parse_args()
    if args.only == "takeover":
        work = tempfile.mkdtemp(prefix="gamingd-bench-")
        try:
            print_takeover(takeover_compare(args.bin, args.mock_broker, REGISTRY, work, min(args.events, 200_000),
                                            args.rounds))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.only == "partitioned":
        if not args.baseline:
            sys.exit("--only partitioned compares with a --baseline binary")
        work = tempfile.mkdtemp(prefix="gamingd-bench-")
        try:
            print_compare_all(partitioned_compare(args.bin, args.baseline, args.mock_broker, REGISTRY, work,
                                                  min(args.events, 200_000), args.rounds, args.standby_replicas),
                              args.rounds)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.only == "compare":
        if not args.baseline:
            sys.exit("--only compare compares with a --baseline binary")
        work = tempfile.mkdtemp(prefix="gamingd-bench-")
        try:
            print_compare_all(compare_all(args.bin, args.baseline, args.sse_load, args.mock_broker, REGISTRY, work,
                                          args.events, args.seconds, args.rounds), args.rounds)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.only == "soak":
        work = tempfile.mkdtemp(prefix="gamingd-bench-")
        try:
            print_soak(soak_figures(args.bin, args.baseline, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.only == "replay":
        work = tempfile.mkdtemp(prefix="gamingd-bench-")
        try:
            src = source_file(args.bin, work, args.events)
            replay_scaling([args.bin] + ([args.baseline] if args.baseline else []), src, args.events, work, args.rounds)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.only == "tables":
        work = tempfile.mkdtemp(prefix="gamingd-bench-")
        try:
            src = source_file(args.bin, work, args.events)
            table_cost(args.bin, src, args.events, work, args.rounds)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.only == "push":
        if not args.baseline:
            sys.exit("--only push compares with a --baseline binary")
        work = tempfile.mkdtemp(prefix="gamingd-bench-")
        try:
            print_push_compare(push_compare(args.bin, args.baseline, args.sse_load, work, args.seconds, args.rounds))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.only == "pull":
        if not args.baseline:
            sys.exit("--only pull compares with a --baseline binary")
        work = tempfile.mkdtemp(prefix="gamingd-bench-")
        try:
            src = source_file(args.bin, work, min(args.events, 200_000))
            print_pull_compare(pull_compare(args.bin, args.baseline, src, work, args.seconds, max(args.rounds, 3)))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return

    work = tempfile.mkdtemp(prefix="gamingd-bench-")
    try:
        t = time.time()
        src = source_file(args.bin, work, args.events)
        gen_s = time.time() - t
        lines = sum(1 for _ in open(src, "rb"))
        size_mib = os.path.getsize(src) / 2**20

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(os.path.join(work, "gamingd.log"), "w")
        start = time.time()
        proc = subprocess.Popen([args.bin, "--source", f"file:{src}", "--data-dir",
                                 os.path.join(work, "data"), "--listen", f"127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                status, _ = get(base + "/readyz", timeout=1)
                if status == 200:
                    break
                if proc.poll() is not None:
                    sys.exit("gamingd exited during the replay; see " + log.name)
                time.sleep(0.01)
            replay_s = time.time() - start
            rss = peak_rss_mib(proc.pid)
            _, metrics = get(base + "/metrics")
            activity = int(re.search(rb'gamingd_records_in_total\{topic="gaming_player_activity"\} (\d+)',
                                     metrics).group(1))
            lmdb = int(re.search(rb"gamingd_lmdb_size_bytes (\d+)", metrics).group(1))

            queries = [
                ("keyed, latest window", "/v1/tables/gaming_active_players_5min?game_id=game_003"),
                ("two keys, latest window", "/v1/tables/gaming_hourly_player_game_stats?player_id=player_00007&game_id=game_002"),
                ("whole small table", "/v1/tables/gaming_player_segments_hourly"),
                ("two keys, every window (the rows of SQL's two keys)",
                 "/v1/tables/gaming_hourly_player_game_stats?player_id=player_00007&game_id=game_002"
                 "&from=0&to=9999999999999"),
            ]
            results = []
            for name, path in queries:
                status, body = get(base + path)
                assert status == 200 and b'"count":' in body, (path, status, body[:200])
                rps, _, _, errors = wrk(base + path, args.seconds, 2, 64)
                _, p50, p99, errors_low = wrk(base + path, args.seconds, 1, 4)
                results.append((name, path, rps, p50, p99, errors + errors_low))
            sql_results = []
            for name, sql in [
                    ("two keys", "SELECT * FROM gaming_hourly_player_game_stats WHERE player_id = 'player_00007' "
                                 "AND game_id = 'game_002';"),
                    ("one key, every window", "SELECT * FROM gaming_active_players_5min WHERE game_id = 'game_003';")]:
                script = post_script(work, "sql-" + str(len(sql_results)), json.dumps({"sql": sql}))
                rps, _, _, errors = wrk(base + "/query-stream", args.seconds, 2, 64, ("-s", script))
                _, p50, p99, errors_low = wrk(base + "/query-stream", args.seconds, 1, 4, ("-s", script))
                sql_results.append((name, sql, rps, p50, p99, errors + errors_low))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        keyed = keyed_figures(args.bin, work, src, os.path.join(work, "data"), queries[0][1], args.seconds)
        grafana = grafana_figures(args.bin, work, args.seconds, args.week_events)
        push = push_figures(args.bin, args.sse_load, work, args.seconds)
        pushq = push_query_figures(args.bin, args.sse_load, work, max(args.seconds, 10))
        rounds = []
        if args.baseline:
            for r in range(args.rounds):  # interleaved, so drift in the machine hits both alike
                rounds.append((replay_rate(args.bin, src, work, "replay-new"),
                               replay_rate(args.baseline, src, work, "replay-baseline")))
        stalled = stalled_figures(args.bin, args.sse_load, work, args.stall_seconds)
        kafka = kafka_figures(args.bin, args.mock_broker, REGISTRY, work, args.kafka_events)
        soaked = soak_figures(args.bin, args.baseline, work)

        print()
        print("gamingd bench (2 cores; targets: >= 1,000,000 events/s, >= 50,000 queries/s, p99 < 2 ms)")
        print(f"  source file        {args.events:,} activity events, {lines:,} records, {size_mib:.0f} MiB "
              f"(generated in {gen_s:.1f} s)")
        print(f"  replay             {activity / replay_s:,.0f} activity events/s "
              f"({lines / replay_s:,.0f} records/s; {replay_s:.2f} s, all tables maintained)")
        print(f"  peak RSS           {rss:,.0f} MiB; LMDB data {lmdb / 2**20:,.0f} MiB")
        for name, path, rps, p50, p99, errors in results:
            print(f"  pull query         {rps:>9,.0f} req/s (64 conns)  p50 {p50:.3f} ms  p99 {p99:.3f} ms (4 conns)"
                  f"{'  NON-2XX ' + str(errors) if errors else ''}  {name}: {path}")
        for name, sql, rps, p50, p99, errors in sql_results:
            print(f"  SQL pull query     {rps:>9,.0f} req/s (64 conns)  p50 {p50:.3f} ms  p99 {p99:.3f} ms (4 conns)"
                  f"{'  NON-2XX ' + str(errors) if errors else ''}  POST /query-stream, {name}: {sql} "
                  f"(target >= 30,000 req/s, p99 < 2 ms)")
        rps, p50, p99, errors = keyed
        print(f"  pull query, keys on{rps:>9,.0f} req/s (64 conns)  p50 {p50:.3f} ms  p99 {p99:.3f} ms (4 conns)"
              f"{'  NON-2XX ' + str(errors) if errors else ''}  {queries[0][0]} with --api-keys and a Bearer key "
              f"({rps / results[0][2] * 100:.0f}% of keys off)")
        g = grafana
        print(f"  grafana query      {g['rps']:>9,.0f} req/s (4 conns)  p50 {g['p50']:.2f} ms  p99 {g['p99']:.2f} ms (1 conn)  "
              f"one metric over 7 days for every game: {g['series']} series, {g['points']:,} points "
              f"(target p99 < 20 ms){'  NON-2XX ' + str(g['errors']) if g['errors'] else ''}")
        for label, f, rate in push:
            print(f"  push (SSE)         {float(f['events_per_s']):>9,.0f} events/s delivered "
                  f"({float(f['per_subscriber_per_s']):,.0f}/subscriber)  p50 {f['p50_ms']} ms  p99 {f['p99_ms']} ms  "
                  f"lost {int(f['dropped']):,}  ingest {rate:,}/s  gamingd {f['cores']:.2f} cores  {label} "
                  f"(all subscribed in {f['subscribed_s']} s)")
        f, (icpu, irate), (bcpu, brate) = pushq["figures"], pushq["idle"], pushq["busy"]
        print(f"  SQL push queries   {int(f['connections']):,} clients, {pushq['queries']:.0f} distinct aggregations, "
              f"generator at 10,000 events/s: {float(f['events_per_s']):,.0f} rows/s delivered, p50 {f['p50_ms']} ms "
              f"p99 {f['p99_ms']} ms from processing to client, {pushq['lost']:.0f} records missed, "
              f"{int(f['dropped']):,} rows dropped; ingest {brate:,.0f}/s (none running: {irate:,.0f}/s; the "
              f"generator is paced by the ingest thread, so a slower ingest shows here); gamingd CPU {bcpu * 100:.0f}% "
              f"(none running: {icpu * 100:.0f}%), "
              f"RSS {pushq['rss']:,.0f} MiB")
        if args.baseline:
            print_pull_compare(pull_compare(args.bin, args.baseline, src, work, args.seconds, args.rounds))
        if rounds:
            new = sorted(r[0] for r in rounds)
            old = sorted(r[1] for r in rounds)
            print(f"  replay vs baseline {new[len(new) // 2]:>9,.0f} activity events/s this binary, "
                  f"{old[len(old) // 2]:,.0f} the baseline (medians of {len(rounds)} interleaved rounds: "
                  f"{', '.join(f'{a:,.0f}/{b:,.0f}' for a, b in rounds)})")
        print(f"  stalled subscribers RSS {stalled['after']:,.0f} MiB after {args.stall_seconds} s of 1,000 subscribers "
              f"reading nothing at 5,000 events/s (before them {stalled['before']:,.0f} MiB, peak "
              f"{stalled['peak']:,.0f} MiB; {stalled['dropped']:,.0f} events counted lost)")
        print(f"  kafka end to end   {kafka['rate']:>9,.0f} activity events/s source topics -> gamingd -> Avro output topic "
              f"(target >= 300,000; {args.kafka_events:,} events in {kafka['seconds']:.1f} s, mock cluster, "
              f"{kafka['delivered']:,.0f} records acknowledged; generate --brokers produced {kafka['produce_rate']:,.0f}/s; "
              f"peak RSS {kafka['rss']:,.0f} MiB)")
        print("  kafka consumer lag " + "  ".join(f"{t:.1f}s:{v:,.0f}" for t, v in kafka["lag"]))
        per_event = kafka["value_bytes"] / args.kafka_events
        for r in kafka["replicas"]:
            print(f"  replicas x{r['n']}        {r['rate_each']:>9,.0f} activity events/s each, all {r['n']} holding every "
                  f"record after {r['slowest']:.1f} s from start; CPU {r['cpu_per_event_us']:.2f} us per source event "
                  f"(all replicas together); Kafka reads {r['n'] * per_event:,.0f} value bytes per event; "
                  f"RSS {r['rss']:,.0f} MiB together")
        print(f"  partitioned: {kafka['partitioned'][0]['events']:,} events of a topic of their own")
        for r in kafka["partitioned"]:
            print(f"  partitioned x{r['n']}     {r['rate']:>9,.0f} activity events/s all together, every record applied "
                  f"{r['seconds']:.1f} s from start; CPU {r['cpu_per_event_us']:.2f} us per source event (all "
                  f"instances; {r['cpu_less_idle_per_event_us']:.2f} less what they spend idle); per event the routes carry {r['route_bytes']:,.0f} value bytes (read by their owner), "
                  f"the changelog {r['changelog_bytes']:,.0f} (read by each task's owner and standbys); RSS {r['rss']:,.0f} MiB together")
        for t in kafka["takeover"]:
            reads = "" if t["staleness"] is None else f" --max-staleness {t['staleness']}"
            print(f"  take-over x2 -> x1  session.timeout.ms={t['session_ms']} --standby-replicas {t['standby']}{reads}: "
                  f"after kill -9 the survivor held every partition and answered again in {t['seconds']:.1f} s "
                  f"(rebalancing from {t['noticed']:.1f} s: the group noticing the loss, the rest restoring); "
                  f"queries unanswered for {t['unanswered']:.1f} s in all")
        p = kafka["partitioned_push"]
        print(f"  partitioned x2 + push  a subscriber to the enriched stream and every windowed table: the push "
              f"topic carries {p['push_bytes']:,.0f} value bytes per source event (read by every instance), "
              f"{p['published']:.1f} events per source event pushed, {p['received']:,} received and "
              f"{p['dropped']:,.0f} dropped by the subscriber, {p['missed']:,.0f} push records gone before instance 0 "
              f"read them (the mock keeps ~5 MB a partition); CPU {p['cpu_per_event_us']:.2f} us per source event, "
              f"both instances ({p['events']:,} events)")
        print_soak(soaked)
        print()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
