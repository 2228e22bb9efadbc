"""Filtered push subscriptions (SPEC §8) run as push queries (api/push.c,
sql/run.c): many subscribers filtered to different values each get exactly
their events, identical filters share one query, and a reconnect with
Last-Event-ID resumes without loss from the source's replay buffer, whether
its query still runs or has to start again.

Expectations come from the reference (tests/integration/reference.py) over
the generated input file, filtered here: the enriched stream's ids are the
positions of its records, from 1."""

import time
from types import SimpleNamespace

import pytest

import reference
from conftest import metric_by_label, read_lines
from sse import Stream

ENRICHED = "gaming_real_time_intelligence_platform"
PLAYERS = 150  # distinct filters
EACH = 2       # subscribers per filter


def append(path, lines):
    with open(path, "ab") as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))


def expected_for(ref, player):
    return [(i + 1, o["activity_id"]) for i, o in enumerate(ref.outputs) if o["player_id"] == player]


def got(events):
    return [(int(e.id), e.json["activity_id"]) for e in events]


@pytest.fixture(scope="module")
def fed(module_gamingd, tmp_path_factory, generated):
    lines = read_lines(generated(20000, 91, rate=500))
    ref = reference.reference_for(lines)
    counts = {}
    for o in ref.outputs:
        counts[o["player_id"]] = counts.get(o["player_id"], 0) + 1
    players = sorted(counts, key=lambda p: (-counts[p], p))[:PLAYERS]
    source = str(tmp_path_factory.mktemp("push_filters") / "source.jsonl")
    open(source, "w").close()
    daemon = module_gamingd(source, args=["--push-buffer", "65536"])
    daemon.wait_ready()
    subs = [(p, Stream(daemon.port, ENRICHED, params={"player_id": p})) for p in players for _ in range(EACH)]
    for _, s in subs:
        assert s.status == 200, s.body
    queries = metric_by_label(daemon.metrics(), "gamingd_push_queries", None)[None]
    append(source, lines)
    yield SimpleNamespace(daemon=daemon, ref=ref, players=players, subs=subs, queries=queries)
    for _, s in subs:
        s.close()


def test_many_filtered_subscribers_each_get_exactly_their_events(fed):
    for player, s in fed.subs:
        exp = expected_for(fed.ref, player)
        assert exp
        evs = s.take(len(exp), deadline_s=60)
        assert got(evs) == exp, "subscriber of %s" % player
        assert all(e.json["player_id"] == player for e in evs)


def test_identical_filters_share_one_query(fed):
    assert fed.queries == PLAYERS


def test_a_reconnect_resumes_without_loss_when_its_query_ended(fed):
    """The query of a filter that no one else uses ends with its client;
    the reconnect starts another that reads the source's replay buffer
    from after the last id seen."""
    player = fed.players[-1]
    exp = expected_for(fed.ref, player)
    first = Stream(fed.daemon.port, ENRICHED, params={"player_id": player, "last_event_id": "0", "limit": "3"})
    head = first.take(3, deadline_s=30)
    first.close()
    assert got(head) == exp[:3]
    time.sleep(0.3)
    again = Stream(fed.daemon.port, ENRICHED, params={"player_id": player, "activity_type": "purchase"},
                   headers={"Last-Event-ID": head[-1].id})
    try:
        exp_rest = [(i, a) for i, a in exp[3:] if fed.ref.outputs[i - 1]["activity_type"] == "purchase"]
        assert got(again.take(len(exp_rest), deadline_s=30)) == exp_rest
    finally:
        again.close()


def test_a_reconnect_joins_the_running_query_of_its_filter(fed):
    """Another subscriber keeps the filter's query running: the reconnect
    resumes in that query's stream, after the id it gives."""
    player, _ = fed.subs[0]
    exp = expected_for(fed.ref, player)
    k = len(exp) // 2
    s = Stream(fed.daemon.port, ENRICHED, params={"player_id": player}, headers={"Last-Event-ID": str(exp[k - 1][0])})
    try:
        assert got(s.take(len(exp) - k, deadline_s=30)) == exp[k:]
    finally:
        s.close()


def test_numbers_compare_as_numbers_and_unknown_columns_are_refused(fed):
    exp = [(i + 1, o["activity_id"]) for i, o in enumerate(fed.ref.outputs)
           if o["player_id"] == fed.players[0] and o["player_level"] == fed.ref.outputs[0]["player_level"]]
    level = fed.ref.outputs[0]["player_level"]
    s = Stream(fed.daemon.port, ENRICHED, params={"player_id": fed.players[0], "player_level": "%d.0" % level,
                                                 "last_event_id": "0"})
    try:
        assert got(s.take(len(exp), deadline_s=30, silence_s=3)) == exp
    finally:
        s.close()
    bad = Stream(fed.daemon.port, ENRICHED, params={"no_such_column": "1"})
    try:
        assert bad.status == 400 and b"no_such_column" in bad.body
    finally:
        bad.close()
