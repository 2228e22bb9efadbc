"""Pull-query API (SPEC §8): table listing, filters, windows, ordering,
limits, paging and parameter validation, checked against the reference."""

import pytest

import checks
import reference
from reference import values_equal

RUN = "seed22_rate20"      # several 5-minute windows
RUN_HOURS = "seed44_slow"  # several hourly and two daily windows


def _ident(table, rows):
    return [reference.row_identity(table, r) for r in rows]


def _assert_rows(table, got, exp, what):
    checks.fail_if(checks.compare_table(table, got, exp), what)


def _windows(rows):
    return sorted({r["window_start"] for r in rows})


def test_list_tables(runs):
    d = runs(RUN).daemon
    r = d.get("/v1/tables")
    assert r.status == 200, r
    tables = r.json["tables"]
    by_name = {t["name"]: t for t in tables}
    assert sorted(by_name) == sorted(reference.ALL_TABLES), sorted(by_name)
    errs = []
    for name in reference.ALL_TABLES:
        t = by_name[name]
        keys = [k["name"] for k in t["key_columns"]]
        if name == "gaming_data_quality_5min":
            # one row per window: whatever key it declares, it has no key filter to test
            pass
        elif keys != reference.table_key_columns(name):
            errs.append("%s: key columns %r, expected %r" % (name, keys, reference.table_key_columns(name)))
        vals = [c["name"] for c in t["value_columns"]]
        exp = set(reference.table_value_columns(name))
        got = set(vals) - set(keys) - {"window_start", "window_end"}
        if got != exp:
            errs.append("%s: value columns %r, expected %r" % (name, sorted(got), sorted(exp)))
        for c in t["key_columns"] + t["value_columns"]:
            if not (isinstance(c.get("type"), str) and c["type"]):
                errs.append("%s: column %r has no type" % (name, c))
        win = reference.WINDOWED[name]["window"] if reference.is_windowed(name) else None
        if t.get("window_ms") != win:
            errs.append("%s: window_ms %r, expected %r" % (name, t.get("window_ms"), win))
    checks.fail_if(errs)


def test_default_is_latest_window(runs):
    run = runs(RUN)
    table = "gaming_active_players_5min"
    exp_all = run.ref.table_rows(table)
    latest = max(r["window_start"] for r in exp_all)
    assert len(_windows(exp_all)) >= 3, "scenario should span several windows"
    rows, pages = run.daemon.fetch_pages(table, [])
    _assert_rows(table, rows, [r for r in exp_all if r["window_start"] == latest],
                 "no window parameter: the latest window")


def test_key_filter_latest_window_with_matching_rows(runs):
    run = runs(RUN)
    table = "gaming_active_players_5min"
    exp_all = run.ref.table_rows(table)
    latest = max(r["window_start"] for r in exp_all)
    last_ws = {}
    for r in exp_all:
        last_ws[r["game_id"]] = max(last_ws.get(r["game_id"], r["window_start"]), r["window_start"])
    # prefer a game absent from the latest window
    older = sorted(g for g, ws in last_ws.items() if ws < latest)
    games = (older[:2] + sorted(last_ws)[:2])
    assert games
    for g in games:
        r = run.daemon.get("/v1/tables/" + table, {"game_id": g})
        assert r.status == 200, r
        exp = [x for x in exp_all if x["game_id"] == g and x["window_start"] == last_ws[g]]
        _assert_rows(table, r.json["rows"], exp, "game_id=%s without window: its latest window" % g)
        assert r.json["count"] == len(r.json["rows"]), r.json
    r = run.daemon.get("/v1/tables/" + table, {"game_id": "no-such-game-xyz"})
    assert r.status == 200, r
    assert r.json["rows"] == [] and r.json["count"] == 0, r.json


def test_window_start_selects_one_window(runs):
    run = runs(RUN)
    for table in ("gaming_active_players_5min", "gaming_data_quality_5min", "gaming_processing_lag_1min"):
        exp_all = run.ref.table_rows(table)
        wins = _windows(exp_all)
        ws = wins[len(wins) // 2]
        rows, _ = run.daemon.fetch_pages(table, [("window_start", str(ws)), ("limit", "10000")])
        _assert_rows(table, rows, [r for r in exp_all if r["window_start"] == ws],
                     "%s window_start=%d" % (table, ws))
        # a window_start that is not a window boundary: no rows, or a 400
        r = run.daemon.get("/v1/tables/" + table, [("window_start", str(ws + 1))])
        assert (r.status == 200 and r.json["rows"] == []) or r.status == 400, r


def test_from_to_half_open(runs):
    run = runs(RUN)
    table = "gaming_active_players_5min"
    exp_all = run.ref.table_rows(table)
    wins = _windows(exp_all)
    assert len(wins) >= 3
    lo, hi = wins[0], wins[2]
    rows, _ = run.daemon.fetch_pages(table, [("from", str(lo)), ("to", str(hi)), ("limit", "10000")])
    _assert_rows(table, rows, [r for r in exp_all if lo <= r["window_start"] < hi],
                 "from=%d&to=%d (windows starting in [from, to))" % (lo, hi))
    # from in the middle of a window: that window does not start in the range
    rows, _ = run.daemon.fetch_pages(table, [("from", str(lo + 1)), ("to", str(hi + 1)), ("limit", "10000")])
    _assert_rows(table, rows, [r for r in exp_all if lo + 1 <= r["window_start"] < hi + 1],
                 "from=%d&to=%d" % (lo + 1, hi + 1))


def test_two_key_filter_with_range(runs):
    run = runs(RUN_HOURS)
    table = "gaming_hourly_player_game_stats"
    exp_all = run.ref.table_rows(table)
    counts = {}
    for r in exp_all:
        counts[(r["player_id"], r["game_id"])] = counts.get((r["player_id"], r["game_id"]), 0) + 1
    (p, g), _ = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    rows, _ = run.daemon.fetch_pages(table, [("player_id", p), ("game_id", g), ("from", "0"),
                                             ("to", "9999999999999")])
    _assert_rows(table, rows, [r for r in exp_all if r["player_id"] == p and r["game_id"] == g],
                 "player_id=%s&game_id=%s over all windows" % (p, g))
    # one key column only
    rows, _ = run.daemon.fetch_pages(table, [("player_id", p), ("from", "0"), ("to", "9999999999999")])
    _assert_rows(table, rows, [r for r in exp_all if r["player_id"] == p], "player_id=%s only" % p)


def _sorted_values(rows, col, desc):
    vals = [r[col] for r in rows]
    return sorted(vals, reverse=desc)


@pytest.mark.parametrize("col,desc", [("total_activities", True), ("total_activities", False),
                                      ("active_players_count", True)])
def test_order_by_limit(runs, col, desc):
    run = runs(RUN)
    table = "gaming_active_players_5min"
    exp_all = run.ref.table_rows(table)
    params = [("from", "0"), ("to", "9999999999999"), ("order_by", col), ("limit", "5")]
    if desc:
        params.append(("desc", "true"))
    r = run.daemon.get("/v1/tables/" + table, params)
    assert r.status == 200, r
    rows = r.json["rows"]
    assert len(rows) == 5, r.json
    got_vals = [x[col] for x in rows]
    assert got_vals == _sorted_values(exp_all, col, desc)[:5], got_vals
    exp_by_id = {reference.row_identity(table, x): x for x in exp_all}
    for x in rows:
        e = exp_by_id.get(reference.row_identity(table, x))
        assert e is not None, "row not in the reference: %r" % x
        assert not checks.compare_table(table, [x], [e]), (x, e)
    assert "next_cursor" in r.json, "more rows match: next_cursor expected"


def test_order_by_pages_keep_order(runs):
    run = runs(RUN)
    table = "gaming_active_players_5min"
    exp_all = run.ref.table_rows(table)
    params = [("from", "0"), ("to", "9999999999999"), ("order_by", "total_activities"),
              ("desc", "true"), ("limit", "7")]
    rows, pages = run.daemon.fetch_pages(table, params)
    assert all(len(p["rows"]) <= 7 for p in pages)
    assert len(pages) == (len(exp_all) + 6) // 7, "%d pages for %d rows" % (len(pages), len(exp_all))
    _assert_rows(table, rows, exp_all, "ordered paging returns every row once")
    assert [x["total_activities"] for x in rows] == _sorted_values(exp_all, "total_activities", True)


def test_paging_every_row_exactly_once(runs):
    run = runs(RUN_HOURS)
    for table, limit in (("gaming_hourly_player_game_stats", 37), ("gaming_players_table", 10),
                         ("gaming_top_performers_hourly", 3), ("gaming_genre_engagement", 1)):
        exp = run.ref.table_rows(table)
        params = [("limit", str(limit))]
        if reference.is_windowed(table):
            params += [("from", "0"), ("to", "9999999999999")]
        rows, pages = run.daemon.fetch_pages(table, params)
        assert all(len(p["rows"]) <= limit for p in pages), [len(p["rows"]) for p in pages]
        assert all(len(p["rows"]) == limit for p in pages[:-1]), [len(p["rows"]) for p in pages]
        ids = _ident(table, rows)
        assert len(ids) == len(set(ids)), "%s: a row was returned twice across pages" % table
        _assert_rows(table, rows, exp, "%s paged by %d" % (table, limit))
        for p in pages:
            assert isinstance(p.get("count"), int)
            assert p["count"] in (len(p["rows"]), len(exp)), \
                "count %r: neither the page's rows nor all matching rows" % p["count"]


def test_limit_bounds(runs):
    run = runs(RUN_HOURS)
    table = "gaming_hourly_player_game_stats"
    exp = run.ref.table_rows(table)
    r = run.daemon.get("/v1/tables/" + table, [("from", "0"), ("to", "9999999999999"), ("limit", "10000")])
    assert r.status == 200, r
    assert len(r.json["rows"]) == min(len(exp), 10000)
    r = run.daemon.get("/v1/tables/" + table, [("from", "0"), ("to", "9999999999999")])
    assert r.status == 200, r
    assert len(r.json["rows"]) == min(len(exp), 100), "default limit is 100"
    if len(exp) > 100:
        assert r.json.get("next_cursor"), "more rows match: next_cursor expected"
    r = run.daemon.get("/v1/tables/" + table, [("from", "0"), ("to", "9999999999999"), ("limit", "1")])
    assert r.status == 200 and len(r.json["rows"]) == 1, r


def test_reference_table_queries(runs):
    run = runs(RUN)
    games = run.ref.table_rows("gaming_games_table")
    g = sorted(games, key=lambda x: x["game_id"])[0]
    r = run.daemon.get("/v1/tables/gaming_games_table", {"game_id": g["game_id"]})
    assert r.status == 200, r
    _assert_rows("gaming_games_table", r.json["rows"], [g], "game_id filter")
    r = run.daemon.get("/v1/tables/gaming_games_table", {"order_by": "game_id", "desc": "true",
                                                         "limit": "3"})
    assert r.status == 200, r
    assert [x["game_id"] for x in r.json["rows"]] == sorted((x["game_id"] for x in games), reverse=True)[:3]
    r = run.daemon.get("/v1/tables/gaming_players_table", {"player_id": "no-such-player"})
    assert r.status == 200 and r.json["rows"] == [] and r.json["count"] == 0, r


BAD_REQUESTS = [
    ("/v1/tables/no_such_table", [], 404),
    ("/v1/tables/gaming_active_players_5min", [("limit", "0")], 400),
    ("/v1/tables/gaming_active_players_5min", [("limit", "10001")], 400),
    ("/v1/tables/gaming_active_players_5min", [("limit", "-1")], 400),
    ("/v1/tables/gaming_active_players_5min", [("limit", "abc")], 400),
    ("/v1/tables/gaming_active_players_5min", [("limit", "")], 400),
    ("/v1/tables/gaming_active_players_5min", [("no_such_param", "1")], 400),
    ("/v1/tables/gaming_active_players_5min", [("order_by", "no_such_column")], 400),
    ("/v1/tables/gaming_active_players_5min", [("window_start", "abc")], 400),
    ("/v1/tables/gaming_active_players_5min", [("from", "x"), ("to", "10")], 400),
    ("/v1/tables/gaming_active_players_5min", [("from", "0"), ("to", "1e3")], 400),
    ("/v1/tables/gaming_active_players_5min", [("cursor", "not-a-cursor!!")], 400),
    ("/v1/tables/gaming_active_players_5min", [("desc", "maybe")], 400),
    ("/v1/tables/gaming_games_table", [("window_start", "0")], 400),
    ("/v1/tables/gaming_games_table", [("from", "0"), ("to", "10")], 400),
    ("/v1/tables/gaming_players_table", [("order_by", "nope")], 400),
    ("/v1/tables/gaming_players_table", [("limit", "99999999999999999999999")], 400),
]


@pytest.mark.parametrize("path,params,status", BAD_REQUESTS,
                         ids=["%s?%s" % (p.rsplit("/", 1)[1], "&".join("%s=%s" % kv for kv in q))
                              for p, q, _ in BAD_REQUESTS])
def test_bad_requests(runs, path, params, status):
    run = runs(RUN)
    r = run.daemon.get(path, params)
    assert r.status == status, "%s %r -> %r" % (path, params, r)
    assert isinstance(r.json, dict), "error body is not JSON: %r" % r.raw[:200]
    assert isinstance(r.json.get("error_code"), int), r.json
    assert isinstance(r.json.get("message"), str) and r.json["message"], r.json
    # and the daemon is still fine
    assert run.daemon.get("/healthz").status == 200


def test_cursor_with_other_parameters_is_stable(runs):
    """A cursor from one page continues that query: no row lost or repeated
    even when the first page was a single row."""
    run = runs(RUN)
    table = "gaming_data_quality_5min"
    exp = run.ref.table_rows(table)
    rows, pages = run.daemon.fetch_pages(table, [("from", "0"), ("to", "9999999999999"), ("limit", "1")])
    assert len(pages) == len(exp)
    _assert_rows(table, rows, exp, "data quality paged one by one")


def test_health_and_ready_bodies(runs):
    run = runs(RUN)
    assert run.daemon.get("/healthz").status == 200
    r = run.daemon.readyz()
    assert r.status == 200 and r.json["ready"] is True, r
    n = r.json["records_applied"]
    assert n in (len(run.lines), len(run.lines) - run.ref.bad), \
        "records_applied %r for %d lines (%d bad)" % (n, len(run.lines), run.ref.bad)


def test_key_filters_with_special_characters(gamingd, tmp_path):
    """Key filters are URL-decoded: ids with spaces, '/', '&', '=', '?', '#',
    '+', '%' and non-ASCII characters are matched exactly."""
    import json
    import os
    from conftest import write_lines
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cases", "unicode_and_escapes.json")
    with open(path) as f:
        case = json.load(f)
    src = write_lines(str(tmp_path / "in.jsonl"), [json.dumps(x) for x in case["input"]])
    d = gamingd(src)
    d.wait_ready()
    gid, pid = "g 1/&=?#+%", "p\u00fc 1"
    r = d.get("/v1/tables/gaming_games_table", {"game_id": gid})
    assert r.status == 200 and [x["game_id"] for x in r.json["rows"]] == [gid], r
    r = d.get("/v1/tables/gaming_games_table", {"game_id": "g 1/&=?# %"})  # '+' is not ' '
    assert r.status == 200 and r.json["rows"] == [], r
    r = d.get("/v1/tables/gaming_players_table", {"player_id": pid})
    assert r.status == 200 and [x["player_id"] for x in r.json["rows"]] == [pid], r
    r = d.get("/v1/tables/gaming_hourly_player_game_stats", {"player_id": pid, "game_id": gid})
    assert r.status == 200 and len(r.json["rows"]) == 1, r
    assert r.json["rows"][0]["total_sessions_1h"] == 1
    r = d.get("/v1/tables/gaming_genre_engagement", {"game_genre": "Ac\u00e7\u00e3o"})
    assert r.status == 200 and len(r.json["rows"]) == 1, r


def test_desc_false_is_ascending(runs):
    run = runs(RUN)
    table = "gaming_data_quality_5min"
    exp = run.ref.table_rows(table)
    for desc, params in ((False, [("desc", "false")]), (False, []), (True, [("desc", "true")])):
        rows, _ = run.daemon.fetch_pages(table, [("from", "0"), ("to", "9999999999999"),
                                                 ("order_by", "total_records")] + params)
        assert [x["total_records"] for x in rows] == sorted((x["total_records"] for x in exp), reverse=desc)


def test_no_cursor_when_nothing_more_matches(runs):
    run = runs(RUN)
    table = "gaming_data_quality_5min"
    exp = run.ref.table_rows(table)
    r = run.daemon.get("/v1/tables/" + table, [("from", "0"), ("to", "9999999999999"), ("limit", str(len(exp)))])
    assert r.status == 200 and len(r.json["rows"]) == len(exp), r
    assert "next_cursor" not in r.json or r.json["next_cursor"] is None, \
        "exactly limit rows match, yet next_cursor %r" % r.json.get("next_cursor")
    r = run.daemon.get("/v1/tables/" + table, [("from", "0"), ("to", "9999999999999"), ("limit", str(len(exp) - 1))])
    assert r.status == 200 and len(r.json["rows"]) == len(exp) - 1 and r.json.get("next_cursor"), r
