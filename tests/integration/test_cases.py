"""Runs every hand-worked case of tests/cases/*.json against the daemon, and
also against the Python reference (which checks the reference itself).

A case: {"description", "args": [extra CLI args], "input": [source lines as
objects; a string is written verbatim], "expect": {"tables": {table: [rows]},
"output": [partial enriched records], "metrics": {name: value}}}.

For each listed table the daemon must hold exactly the listed rows (matched by
key columns and window_start), compared on the columns each row gives. The
output must have exactly as many records as listed, each compared on the keys
given. Metrics are summed over their labels."""

import glob
import json
import os
import time

import pytest

import checks
import reference
from conftest import metric_sum, read_output, write_lines

CASES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cases")
CASES = sorted(glob.glob(os.path.join(CASES_DIR, "*.json")))


def load(path):
    with open(path) as f:
        case = json.load(f)
    assert isinstance(case.get("description"), str) and case["description"]
    assert isinstance(case.get("input"), list) and case["input"]
    return case


def lines_of(case):
    return [l if isinstance(l, str) else json.dumps(l) for l in case["input"]]


def _types(table):
    t = dict(reference.table_key_types(table))
    t.update(reference.table_value_columns(table))
    t["window_start"] = "int"
    t["window_end"] = "int"
    return t


def compare_case_table(table, got_rows, exp_rows):
    errs = []
    types = _types(table)
    got = {}
    for r in got_rows:
        errs.extend(checks.check_row_shape(table, r))
        got.setdefault(reference.row_identity(table, r), []).append(r)
    exp = {}
    for r in exp_rows:
        exp[reference.row_identity(table, r)] = r
    for k, rs in got.items():
        if len(rs) > 1:
            errs.append("%s: row %r returned %d times" % (table, k, len(rs)))
        if k not in exp:
            errs.append("%s: unexpected row %s" % (table, json.dumps(rs[0], sort_keys=True)))
    for k, e in exp.items():
        if k not in got:
            errs.append("%s: missing row %s" % (table, json.dumps(e, sort_keys=True)))
            continue
        g = got[k][0]
        for c, v in e.items():
            if not reference.values_equal(v, g.get(c), types.get(c)):
                errs.append("%s row %r: %s expected %s got %s" % (
                    table, k, c, json.dumps(v), json.dumps(g.get(c))))
    return errs


def compare_case_output(got, exp_list):
    errs = []
    if len(got) != len(exp_list):
        errs.append("output has %d records, expected %d (activity_ids %r)" % (
            len(got), len(exp_list), [g.get("activity_id") for g in got]))
    for i, (e, g) in enumerate(zip(exp_list, got)):
        errs.extend(checks.compare_output_record(i, e, g, keys=list(e)))
    return errs


def _reference_tables(ref, table):
    return ref.table_rows(table)


@pytest.mark.parametrize("path", CASES, ids=[os.path.basename(p)[:-5] for p in CASES])
def test_reference_agrees_with_case(path):
    """The Python reference must agree with every hand-worked case."""
    case = load(path)
    ref = reference.reference_for(lines_of(case), **reference.reference_args(case.get("args", [])))
    errs = []
    for table, rows in case["expect"].get("tables", {}).items():
        errs.extend(compare_case_table(table, ref.table_rows(table), rows))
    if "output" in case["expect"]:
        outs = [dict(o, processing_timestamp=0) for o in ref.outputs]
        errs.extend(compare_case_output(outs, case["expect"]["output"]))
    for name, v in case["expect"].get("metrics", {}).items():
        have = {"gamingd_bad_records_total": ref.bad, "gamingd_late_records_total": ref.late_any}[name]
        if have != v:
            errs.append("metric %s: reference %r, case %r" % (name, have, v))
    checks.fail_if(errs, "reference vs %s" % os.path.basename(path))


@pytest.mark.parametrize("path", CASES, ids=[os.path.basename(p)[:-5] for p in CASES])
def test_daemon_case(path, gamingd, tmp_path):
    case = load(path)
    src = write_lines(str(tmp_path / "input.jsonl"), lines_of(case))
    d = gamingd(src, args=case.get("args", []))
    d.wait_ready()
    errs = []
    for table, rows in case["expect"].get("tables", {}).items():
        got, _ = d.fetch_all(table)
        errs.extend(compare_case_table(table, got, rows))
    if "output" in case["expect"]:
        n = len(case["expect"]["output"])
        deadline = time.time() + 10
        while True:
            recs, bad = read_output(d.output)
            if len(recs) >= n or time.time() > deadline:
                break
            time.sleep(0.05)
        if bad:
            errs.append("unparseable output lines: %r" % bad[:3])
        errs.extend(compare_case_output(recs, case["expect"]["output"]))
    if case["expect"].get("metrics"):
        m = d.metrics()
        for name, v in case["expect"]["metrics"].items():
            got = metric_sum(m, name)
            if got != v:
                errs.append("metric %s = %r, expected %r" % (name, got, v))
    checks.fail_if(errs, "%s: %s" % (os.path.basename(path), case["description"][:200]))
