"""Replays generated source files and compares every table and every enriched
output record with the independent reference (tests/integration/reference.py)."""

import json
import time

import pytest

import checks
import reference
from conftest import SCENARIOS, metric_sum, read_lines, read_output, write_lines


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_tables_match_reference(runs, scenario):
    run = runs(scenario)
    errs = checks.compare_all_tables(run.daemon, run.ref)
    checks.fail_if(errs, "tables of %s differ from the reference" % scenario)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_output_matches_reference(runs, scenario):
    run = runs(scenario)
    recs, bad = run.output()
    assert not bad, "unparseable output lines: %r" % bad[:3]
    errs = checks.compare_outputs(recs, run.ref, ts_bounds=(run.t0, run.t1))
    checks.fail_if(errs, "output of %s differs from the reference" % scenario)


def test_generated_files_exercise_the_semantics(runs):
    """The generated data must contain what the contract says it contains,
    otherwise the replay tests prove little."""
    run = runs("seed11")
    ref = run.ref
    forms = {"value": 0, "payload": 0}
    tombstones = 0
    for l in run.lines:
        try:
            o = json.loads(l)
        except ValueError:
            continue
        if isinstance(o, dict):
            if "value" in o:
                forms["value"] += 1
                tombstones += o["value"] is None
            elif "payload" in o:
                forms["payload"] += 1
                tombstones += o["payload"] is None
    outs = ref.outputs
    problems = []
    if not (forms["value"] and forms["payload"]):
        problems.append("both envelope forms")
    if ref.bad == 0:
        problems.append("no bad lines")
    if tombstones == 0:
        problems.append("no tombstones")
    if not any(o["game_name"] is None for o in outs):
        problems.append("no activity with an unknown game")
    if not any(o["player_username"] is None for o in outs):
        problems.append("no activity with an unknown player")
    if not any(o["score"] is None for o in outs):
        problems.append("no null scores")
    if ref.late_any == 0:
        problems.append("no late events")
    ts = [o["event_timestamp"] for o in outs]
    if all(a <= b for a, b in zip(ts, ts[1:])):
        problems.append("no out-of-order events")
    if not any(o["has_purchase"] for o in outs):
        problems.append("no purchases")
    if len(outs) != 30000 and abs(len(outs) - 30000) > 30000 * 0.05:
        problems.append("%d activities for --events 30000" % len(outs))
    assert not problems, "generated file lacks: %s (forms %r)" % (", ".join(problems), forms)


def test_generate_is_deterministic(generated, tmp_path):
    from conftest import generate, BASE_MS
    a = generated(30000, 11, start=BASE_MS)
    b = generate(str(tmp_path / "again.jsonl"), 30000, 11, start=BASE_MS)
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read(), "gamingd generate with the same seed gave different files"


def test_generate_rate_and_start(runs):
    """--start is the first event's timestamp, --rate the event-time pace."""
    run = runs("seed44_slow")
    sc = SCENARIOS["seed44_slow"]
    ts = [o["event_timestamp"] for o in run.ref.outputs]
    assert ts[0] == sc["start"] or min(ts[:50]) <= sc["start"] <= max(ts[:50]), \
        "first event at %d, --start %d" % (ts[0], sc["start"])
    span = max(ts) - sc["start"]
    expect = sc["events"] * 1000 / sc["rate"]
    assert 0.8 * expect <= span <= 1.2 * expect, "event time spans %d ms, expected ~%d" % (span, expect)


def assert_retention_purged(run, nopurge, table, retention_ms):
    """The scenario purges something (the reference without retention keeps
    more rows), and the daemon serves no window of table past retention."""
    purged = sum(len(nopurge.table_rows(t)) - len(run.ref.table_rows(t)) for t in reference.WINDOWED)
    assert purged > 0, "the scenario purges nothing"
    rows, _ = run.daemon.fetch_all(table)
    old = [r for r in rows if r["window_end"] + retention_ms <= run.ref.stream_time]
    assert not old, "%s windows past retention still served: %r" % (table, old[:3])


def test_retention_scenario_purges(runs):
    """Guards the retention scenario itself: windows must have been purged."""
    run = runs("seed55_retention")
    nopurge = reference.reference_for(run.lines, grace_ms=30 * 60 * 1000, retention_ms=None)
    assert_retention_purged(run, nopurge, "gaming_hourly_player_game_stats", 2 * 3600 * 1000)


def test_default_retention_purges(runs):
    """Guards the multi-day scenario: the default 7-day retention must purge."""
    run = runs("seed66_days")
    nopurge = reference.reference_for(run.lines, retention_ms=10 ** 15)
    assert_retention_purged(run, nopurge, "gaming_high_value_players_daily", 7 * 86400 * 1000)


def _to_value_form(line):
    try:
        o = json.loads(line)
    except ValueError:
        return line
    if not isinstance(o, dict) or "payload" not in o or "value" in o:
        return line
    p = o["payload"]
    if p is None:
        v = None
    elif isinstance(p, str):
        try:
            v = json.loads(p)
        except ValueError:
            return line  # cannot be expressed in the other form: keep
    else:
        return line
    return json.dumps({"topic": o.get("topic"), "key": o.get("key"), "value": v})


def _to_kcat_form(line, i):
    try:
        o = json.loads(line)
    except ValueError:
        return line
    if not isinstance(o, dict) or "value" not in o or "payload" in o:
        return line
    v = o["value"]
    return json.dumps({"topic": o.get("topic"), "partition": 0, "offset": i, "tstype": "create",
                       "ts": 1709251200000 + i, "broker": 1, "key": o.get("key"),
                       "payload": None if v is None else json.dumps(v)})


@pytest.mark.parametrize("form", ["value", "kcat"])
def test_other_envelope_form_same_result(runs, gamingd, tmp_path, form):
    run = runs("seed11")
    if form == "value":
        lines = [_to_value_form(l) for l in run.lines]
    else:
        lines = [_to_kcat_form(l, i) for i, l in enumerate(run.lines)]
    changed = sum(a != b for a, b in zip(lines, run.lines))
    assert changed > 0, "conversion changed nothing"
    path = write_lines(str(tmp_path / ("converted-%s.jsonl" % form)), lines)
    ref2 = reference.reference_for(lines)
    # the conversion preserves meaning (a check of the test itself)
    assert ref2.bad == run.ref.bad
    for t in reference.ALL_TABLES:
        assert not checks.compare_table(t, ref2.table_rows(t), run.ref.table_rows(t), check_wallclock=False), t
    t0 = checks.now_ms()
    d = gamingd(path)
    d.wait_ready()
    t1 = checks.now_ms()
    errs = checks.compare_all_tables(d, run.ref)
    checks.fail_if(errs, "tables after %s-form replay differ" % form)
    deadline = time.time() + 10
    while True:
        recs, bad = read_output(d.output)
        if len(recs) >= len(run.ref.outputs) or time.time() > deadline:
            break
        time.sleep(0.1)
    errs = checks.compare_outputs(recs, run.ref, ts_bounds=(t0, t1))
    checks.fail_if(errs, "output after %s-form replay differs" % form)


def test_lateness_across_a_day_boundary_counts_only_where_a_record_counts(gamingd, generated):
    """Data straddling midnight UTC (yesterday's, inside retention): the
    out-of-order records from before it are late for the daily table alone,
    and only those that table takes (purchases) are late at all."""
    day = 86400 * 1000
    midnight = int(time.time() * 1000) // day * day - day
    path = generated(20000, 7, start=midnight - 10000)
    d = gamingd(path)
    d.wait_ready()
    ref = reference.reference_for(read_lines(path))
    daily = ref.late_by_table["gaming_high_value_players_daily"]
    assert daily > ref.late_by_table["gaming_hourly_player_game_stats"], "no record late for the daily table alone"
    assert metric_sum(d.metrics(), "gamingd_late_records_total") == ref.late_any
    checks.fail_if(checks.compare_all_tables(d, ref), "tables across a day boundary")
