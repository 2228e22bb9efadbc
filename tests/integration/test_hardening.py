"""Hostile input and careless producers: records from the future, oversized
records, hostile requests (SPEC §8, §9). Expectations come from the
reference (reference.py) or are worked out here by hand."""

import json
import os
import time

import checks
import reference
from conftest import generate, metric_by_label, metric_sum, read_lines, write_lines

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
