"""What /grafana/query must answer, computed from the reference tables
(reference.py) by the datasource's documented rules, independently of the
daemon:

  * a target "TABLE.COLUMN" is one series per group (key values) of the
    windowed table, [[value, window_start], ...] ascending, for windows whose
    start lies in [range.from, range.to]; a target naming a table, or with
    payload format "table", is a table of its rows, newest windows first,
    at most 10,000;
  * payload values per key column (a string or a list; "", "all", "$__all"
    or [] mean every value) restrict the groups;
  * ad hoc filters (`filters`, else `adhocFilters`) apply to tables that have
    their column: =, != (numbers by value), <, > (numbers by value, strings
    by bytes), =~, !~ (a regex matching the whole value: re.fullmatch);
  * a series is named by its key values joined with " / ", a game id by the
    game_name and a player id by the player_username of the group's newest
    row where the table has those columns.
"""

import datetime
import re

import reference

MAX_TABLE_ROWS = 10000


def parse_time(v):
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.isdigit():
        return int(v)
    dt = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
    return int(dt.timestamp() * 1000)


def table_columns(table):
    """(name, type) of the columns a row shows, as the table format lists them."""
    cols = [(k, "string") for k in reference.table_key_columns(table)]
    if reference.is_windowed(table):
        cols += [("window_start", "time"), ("window_end", "time")]
    for name, t in reference.table_value_columns(table).items():
        cols.append((name, "string" if t == "str" else "number"))
    return cols


def payload_values(v):
    if v is None or v == "" or v == "all" or v == "$__all" or v == []:
        return None
    if isinstance(v, str):
        return {v}
    if "$__all" in v:
        return None
    return set(v)


def _number(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def _text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return "%d.0" % v
    return str(v)


def filter_passes(f, v):
    op, want = f["operator"], f["value"]
    if not isinstance(want, str):
        want = "%.17g" % want
    if v is None:
        return op in ("!=", "!~")
    if op in ("=", "!="):
        eq = v == want if isinstance(v, str) else (_number(want) is not None and float(v) == _number(want))
        return eq == (op == "=")
    if op in ("<", ">"):
        if isinstance(v, str) or _number(want) is None:
            a, b = (v if isinstance(v, str) else _text(v)).encode(), want.encode()
            c = (a > b) - (a < b)
        else:
            c = (float(v) > _number(want)) - (float(v) < _number(want))
        return c < 0 if op == "<" else c > 0
    matched = re.fullmatch(want, v if isinstance(v, str) else _text(v)) is not None
    return matched == (op == "=~")


def _rows(ref, table, payload, filters, frm, to):
    cols = dict(table_columns(table))
    rows = ref.table_rows(table)
    if reference.is_windowed(table):
        rows = [r for r in rows if frm <= r["window_start"] <= to]
    for k in reference.table_key_columns(table):
        allowed = payload_values(payload.get(k))
        if allowed is not None:
            rows = [r for r in rows if r[k] in allowed]
    for f in filters:
        if f["key"] in cols:
            rows = [r for r in rows if filter_passes(f, r.get(f["key"]))]
    return rows


def _series(table, column, rows):
    keys = reference.table_key_columns(table)
    value_cols = reference.table_value_columns(table)
    namers = {"game_id": "game_name", "player_id": "player_username"}
    groups = {}
    for r in sorted(rows, key=lambda r: r["window_start"]):
        g = groups.setdefault(tuple(r[k] for k in keys), {"points": [], "newest": r})
        g["points"].append([r[column], r["window_start"]])
        g["newest"] = r
    out = []
    for keyvals, g in groups.items():
        parts = []
        for k, v in zip(keys, keyvals):
            name_col = namers.get(k)
            name = g["newest"].get(name_col) if name_col in value_cols else None
            parts.append(name if name is not None else v)
        out.append({"target": " / ".join(parts) if keys else column, "datapoints": g["points"]})
    return out


def _key_order(table, r):
    """gamingd's order of rows within a window: each key column as its
    length, then its bytes."""
    return tuple((len(r[k].encode()), r[k].encode()) for k in reference.table_key_columns(table))


def _table(table, rows):
    cols = table_columns(table)
    if reference.is_windowed(table):  # newest windows first, keys in order; the first 10,000
        rows = sorted(rows, key=lambda r: (-r["window_start"], _key_order(table, r)))[:MAX_TABLE_ROWS]
    return {"type": "table", "columns": [{"text": c, "type": t} for c, t in cols],
            "rows": [[r.get(c) for c, _ in cols] for r in rows]}


def expected(ref, body):
    frm, to = parse_time(body["range"]["from"]), parse_time(body["range"]["to"])
    filters = body.get("filters")
    if not isinstance(filters, list):
        filters = body.get("adhocFilters") or []
    out = []
    for t in body["targets"]:
        if t.get("hide") or not t.get("target"):
            continue
        metric = t["target"]
        table, _, column = metric.partition(".")
        payload = t.get("payload") or {}
        rows = _rows(ref, table, payload, filters, frm, to)
        if not column or payload.get("format") == "table":
            out.append(_table(table, rows))
        else:
            out.extend(_series(table, column, rows))
    return out


def compare(got, want, check_values=True):
    """Mismatches between a /grafana/query answer and the expectation
    (check_values False: only which series, points and rows there are, for
    columns that depend on the wall clock)."""
    errs = []
    got_series = {s["target"]: s for s in got if "datapoints" in s}
    want_series = {s["target"]: s for s in want if "datapoints" in s}
    if sorted(got_series) != sorted(want_series):
        errs.append("series %s, expected %s" % (sorted(got_series)[:20], sorted(want_series)[:20]))
    for name, w in want_series.items():
        g = got_series.get(name)
        if not g:
            continue
        gp, wp = g["datapoints"], w["datapoints"]
        if [p[1] for p in gp] != [p[1] for p in wp]:
            errs.append("%s: timestamps %s, expected %s" % (name, [p[1] for p in gp][:10], [p[1] for p in wp][:10]))
            continue
        for (gv, ts), (wv, _) in zip(gp, wp):
            if check_values and not reference.values_equal(wv, gv):
                errs.append("%s at %d: %r, expected %r" % (name, ts, gv, wv))
                break
    got_tables = [t for t in got if t.get("type") == "table"]
    want_tables = [t for t in want if t.get("type") == "table"]
    if len(got_tables) != len(want_tables):
        errs.append("%d tables, expected %d" % (len(got_tables), len(want_tables)))
    for g, w in zip(got_tables, want_tables):
        if g["columns"] != w["columns"]:
            errs.append("table columns %s, expected %s" % (g["columns"], w["columns"]))
            continue
        names = [c["text"] for c in w["columns"]]
        ident = [i for i, c in enumerate(w["columns"]) if c["type"] != "number" and c["text"] != "window_end"
                 and (i < names.index("window_start") if "window_start" in names else i == 0)]
        if "window_start" in names:
            ident.append(names.index("window_start"))
            ws = [r[names.index("window_start")] for r in g["rows"]]
            if ws != sorted(ws, reverse=True):
                errs.append("table rows are not newest window first")
        key = lambda row: tuple(row[i] for i in ident)
        grows, wrows = sorted(g["rows"], key=key), sorted(w["rows"], key=key)
        if len(grows) != len(wrows):
            errs.append("table has %d rows, expected %d" % (len(grows), len(wrows)))
            continue
        for gr, wr in zip(grows, wrows):
            if check_values and not all(reference.values_equal(b, a) for a, b in zip(gr, wr)):
                errs.append("table row %s, expected %s" % (gr, wr))
                break
    return errs
