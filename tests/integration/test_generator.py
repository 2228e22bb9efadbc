"""The built-in generator as a live source (SPEC §3): what `make run` shows."""

import time

from conftest import metric_by_label, metric_sum, read_output

ACT = "gaming_player_activity"


def _activity_count(d):
    return metric_by_label(d.metrics(), "gamingd_records_in_total", "topic").get(ACT, 0)


def _wait_for(d, n, timeout=20):
    deadline = time.time() + timeout
    while _activity_count(d) < n:
        assert time.time() < deadline, "only %d activities after %d s" % (_activity_count(d), timeout)
        time.sleep(0.1)


def test_live_data_is_there_at_once_and_paced(gamingd):
    d = gamingd("generator", args=["--seed", "7", "--rate", "2000"])
    assert d.get("/readyz").status == 200  # nothing to catch up to
    t0 = time.time()
    _wait_for(d, 1000)
    time.sleep(2)
    n, elapsed = _activity_count(d), time.time() - t0
    assert 0.5 * 2000 * elapsed < n < 1.5 * 2000 * (elapsed + 0.5), (n, elapsed)
    games = d.get("/v1/tables/gaming_games_table").json
    assert 18 <= games["count"] <= 24  # 24 games, a few may be withdrawn
    players = d.get("/v1/tables/gaming_players_table", [("limit", "10000")]).json
    assert 1900 <= players["count"] <= 2000
    active = d.get("/v1/tables/gaming_active_players_5min").json
    assert active["count"] > 0 and all(r["total_activities"] > 0 for r in active["rows"])
    # event time is the wall clock, but for the out-of-order and late ones
    recs, bad = read_output(d.output)
    assert not bad and recs
    now = time.time() * 1000
    recent = [r for r in recs if now - r["event_timestamp"] < 10 * 60 * 1000]
    late = [r for r in recs if now - r["event_timestamp"] > 24 * 3600 * 1000]
    assert len(recent) > 0.95 * len(recs) and late, (len(recent), len(late), len(recs))
    assert d.stop() == 0


def test_same_seed_same_records(gamingd):
    seqs = []
    for _ in range(2):
        d = gamingd("generator", args=["--seed", "99", "--rate", "5000"])
        _wait_for(d, 3000)
        assert d.stop() == 0
        recs, _ = read_output(d.output)
        seqs.append([(r["activity_id"], r["player_id"], r["game_id"], r["activity_type"], r["score"])
                     for r in recs[:2500]])
    assert len(seqs[0]) == 2500 and seqs[0] == seqs[1]


def test_restart_continues_where_it_stopped(gamingd, tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "out.jsonl")
    d = gamingd("generator", args=["--seed", "5", "--rate", "3000"], data_dir=data, output=out)
    _wait_for(d, 2000)
    assert d.stop() == 0
    before, _ = read_output(out)
    d = gamingd("generator", args=["--seed", "5", "--rate", "3000"], data_dir=data, output=out)
    assert _activity_count(d) >= len(before)  # counters are state, committed with it
    _wait_for(d, len(before) + 1000)
    assert d.stop() == 0
    after, _ = read_output(out)
    ids = [r["activity_id"] for r in after[len(before):]]
    # resumed after the committed position: no activity id seen twice, and the
    # sequence goes on from where the first run stopped
    assert len(set(r["activity_id"] for r in after)) == len(after)
    assert ids[0] > before[-1]["activity_id"], (before[-1]["activity_id"], ids[0])


def test_live_commits_are_spaced_by_what_they_cost(gamingd):
    """Live data is committed every --commit-interval, or ten times as long
    as the last commit took when that is longer, up to ten intervals: the
    gauge says which (it is how old a pull's answer may be)."""
    d = gamingd("generator", args=["--seed", "7", "--rate", "3000", "--commit-interval", "1ms"])
    _wait_for(d, 1000)
    seen = []
    deadline = time.time() + 10
    while time.time() < deadline and not any(v > 0.001 for v in seen):
        seen.append(metric_sum(d.metrics(), "gamingd_commit_interval_seconds"))
        time.sleep(0.05)
    # a commit takes more than a tenth of a millisecond: writing its rows, LMDB's sync
    assert any(v > 0.001 for v in seen), seen
    assert all(0.001 <= v <= 0.010 for v in seen), seen
    assert d.stop() == 0
