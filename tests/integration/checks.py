"""Comparisons of daemon results with the reference; each returns a list of
human-readable mismatches (empty = equal)."""

import json
import time

import reference
from reference import OUTPUT_COLUMNS, WALLCLOCK_COLUMNS, values_equal

MAX_REPORT = 15


def _fmt(v):
    return json.dumps(v, sort_keys=True, default=str)


def check_row_shape(table, row):
    """Presence and JSON types of a row's columns."""
    errs = []
    if not isinstance(row, dict):
        return ["%s: row is not an object: %r" % (table, row)]
    cols = dict(reference.table_key_types(table))
    cols.update(reference.table_value_columns(table))
    if reference.is_windowed(table):
        cols["window_start"] = "int"
        cols["window_end"] = "int"
    for c, t in cols.items():
        if c not in row:
            errs.append("%s: row lacks column %s: %s" % (table, c, _fmt(row)))
            continue
        v = row[c]
        if v is None:
            continue
        ok = {
            "str": isinstance(v, str),
            "int": isinstance(v, int) and not isinstance(v, bool),
            "dbl": isinstance(v, (int, float)) and not isinstance(v, bool),
        }[t]
        if not ok:
            errs.append("%s: column %s should be %s, got %s in %s" % (table, c, t, _fmt(v), _fmt(row)))
    if reference.is_windowed(table) and isinstance(row.get("window_start"), int) \
            and isinstance(row.get("window_end"), int):
        size = reference.WINDOWED[table]["window"]
        if row["window_end"] - row["window_start"] != size or row["window_start"] % size:
            errs.append("%s: bad window bounds %s" % (table, _fmt(row)))
    return errs


def compare_table(table, got_rows, exp_rows, check_wallclock=True):
    errs = []
    for r in got_rows:
        errs.extend(check_row_shape(table, r))
    got = {}
    for r in got_rows:
        ident = reference.row_identity(table, r)
        if ident in got:
            errs.append("%s: row %s returned twice" % (table, _fmt(ident)))
        got[ident] = r
    exp = {reference.row_identity(table, r): r for r in exp_rows}
    missing = [k for k in exp if k not in got]
    extra = [k for k in got if k not in exp]
    if missing:
        errs.append("%s: %d expected rows missing, e.g. %s" % (
            table, len(missing), "; ".join(_fmt(exp[k]) for k in missing[:5])))
    if extra:
        errs.append("%s: %d unexpected rows, e.g. %s" % (
            table, len(extra), "; ".join(_fmt(got[k]) for k in extra[:5])))
    types = dict(reference.table_key_types(table))
    types.update(reference.table_value_columns(table))
    nbad = 0
    for k, e in exp.items():
        g = got.get(k)
        if g is None:
            continue
        diffs = []
        for c, ev in e.items():
            if (table, c) in WALLCLOCK_COLUMNS:
                continue
            gv = g.get(c)
            if not values_equal(ev, gv, types.get(c) if c in types else ("int" if c.startswith("window_") else None)):
                diffs.append("%s: expected %s got %s" % (c, _fmt(ev), _fmt(gv)))
        if check_wallclock and table == "gaming_processing_lag_1min":
            mx, av = g.get("max_lag_ms"), g.get("avg_lag_ms")
            if not (isinstance(mx, (int, float)) and isinstance(av, (int, float))
                    and 0 <= av <= mx + 1e-6):
                diffs.append("lag values implausible: max_lag_ms=%s avg_lag_ms=%s" % (_fmt(mx), _fmt(av)))
        if diffs:
            nbad += 1
            if nbad <= MAX_REPORT:
                errs.append("%s row %s: %s" % (table, _fmt(k), "; ".join(diffs)))
    if nbad > MAX_REPORT:
        errs.append("%s: %d rows differ in all" % (table, nbad))
    return errs


def compare_all_tables(daemon, ref, tables=None, check_wallclock=True):
    errs = []
    for t in tables or reference.ALL_TABLES:
        rows, _ = daemon.fetch_all(t)
        errs.extend(compare_table(t, rows, ref.table_rows(t), check_wallclock=check_wallclock))
    return errs


def compare_output_record(i, exp, got, alts=None, ts_bounds=None, keys=None):
    errs = []
    if not isinstance(got, dict):
        return ["output %d is not an object: %r" % (i, got)]
    for c in keys or OUTPUT_COLUMNS:
        t = OUTPUT_COLUMNS.get(c)
        if c not in got:
            errs.append("lacks %s" % c)
            continue
        if c == "processing_timestamp":
            v = got[c]
            if not (isinstance(v, int) and not isinstance(v, bool)):
                errs.append("processing_timestamp not an integer: %s" % _fmt(v))
            elif ts_bounds and not (ts_bounds[0] - 5000 <= v <= ts_bounds[1] + 5000):
                errs.append("processing_timestamp %d outside the run [%d, %d]" % (v, ts_bounds[0], ts_bounds[1]))
            continue
        ev, gv = exp.get(c), got[c]
        if values_equal(ev, gv, t):
            continue
        if alts and c in alts and any(values_equal(a, gv, t) for a in alts[c]):
            continue
        errs.append("%s: expected %s got %s" % (c, _fmt(ev), _fmt(gv)))
    if errs:
        return ["output #%d (activity_id %s, event_timestamp %s): %s" % (
            i, _fmt(got.get("activity_id")), _fmt(got.get("event_timestamp")), "; ".join(errs))]
    return []


def compare_outputs(got, ref, ts_bounds=None):
    errs = []
    if len(got) != len(ref.outputs):
        errs.append("output has %d records, reference %d" % (len(got), len(ref.outputs)))
    n = 0
    for i, (e, g) in enumerate(zip(ref.outputs, got)):
        d = compare_output_record(i, e, g, ref.output_alts[i], ts_bounds)
        if d:
            n += 1
            if n <= MAX_REPORT:
                errs.extend(d)
    if n > MAX_REPORT:
        errs.append("%d output records differ in all" % n)
    return errs


def output_identity(rec):
    """An enriched record without its processing timestamp, hashable."""
    return tuple((k, _fmt(rec.get(k))) for k in sorted(OUTPUT_COLUMNS) if k != "processing_timestamp")


def fail_if(errs, what=""):
    if errs:
        msg = (what + ":\n" if what else "") + "\n".join(errs[:60])
        if len(errs) > 60:
            msg += "\n... %d more" % (len(errs) - 60)
        raise AssertionError(msg)


def now_ms():
    return int(time.time() * 1000)
