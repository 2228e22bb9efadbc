"""Independent Python reference of gamingd's record semantics (SPEC §3-§6).

Written from the specification only, never from the daemon's code or output:
given the source lines of a file (in file order) it computes

  * every enriched output record (SPEC §4), in processing order,
  * every materialized table (SPEC §6) as it stands after the whole file,
  * the bad / late record counts the metrics must show.

Usage:
    ref = Reference(grace_ms=None, retention_ms=None)   # None = defaults
    ref.feed_lines(lines)                               # str lines or dicts
    ref.finish()                                        # applies retention
    ref.outputs         -> list of enriched dicts
    ref.table_rows(name) -> list of row dicts (as the API renders them)

Interpretations the contract leaves open (kept in one place, see the report):
  * has_purchase is false when in_game_purchases is null (ksqlDB: a
    comparison with NULL is not true).
  * A null activity value (tombstone on the activity topic) is a bad record.
  * A games/players record whose key is empty and whose value carries no id
    (including a key-less tombstone) is a bad record.
  * A bad record does not advance stream time.
  * JSON integers are accepted for double fields; for integer fields a
    number with a fraction (1.5) is a wrong type, an integral one (12.0) is
    accepted; booleans are accepted for neither.
  * Not exercised by the tests (the daemon differs, both defensible): a blank
    line is a bad record here (the daemon skips it silently); a negative
    activity_timestamp is accepted here (the daemon counts it as bad, as
    Kafka Streams drops records with negative timestamps).
"""

import json
import math
import re
import time

HOUR = 3600 * 1000
MIN = 60 * 1000
DAY = 24 * HOUR
DEFAULT_RETENTION = 7 * DAY
DEFAULT_MAX_FUTURE = HOUR
DEFAULT_MAX_RECORD_BYTES = 1 << 20

TOPIC_GAMES = "gaming_games"
TOPIC_PLAYERS = "gaming_players"
TOPIC_ACTIVITY = "gaming_player_activity"
TOPICS = (TOPIC_GAMES, TOPIC_PLAYERS, TOPIC_ACTIVITY)

# Field types of the source values (SPEC §3). "str", "int", "dbl".
GAME_FIELDS = {
    "game_id": "str", "game_name": "str", "genre": "str", "publisher": "str",
    "release_date": "str", "platform": "str", "rating": "dbl", "price": "dbl",
}
PLAYER_FIELDS = {
    "player_id": "str", "username": "str", "email": "str", "created_date": "str",
    "country": "str", "level": "int", "total_playtime_hours": "dbl",
    "account_status": "str",
}
ACTIVITY_FIELDS = {
    "activity_id": "str", "player_id": "str", "game_id": "str", "session_id": "str",
    "activity_type": "str", "activity_timestamp": "int", "score": "int",
    "duration_seconds": "int", "achievements_unlocked": "int",
    "in_game_purchases": "dbl",
}
ACTIVITY_REQUIRED = ("player_id", "game_id", "activity_type", "activity_timestamp")

# Enriched record: column -> type ("str", "int", "dbl", "bool").
OUTPUT_COLUMNS = {
    "game_id": "str", "game_name": "str", "game_genre": "str",
    "player_id": "str", "player_username": "str", "player_email": "str",
    "player_level": "int", "activity_type": "str", "session_id": "str",
    "score": "int", "duration_seconds": "int", "total_sessions_1h": "int",
    "avg_score_1h": "dbl", "active_players_count": "int",
    "event_timestamp": "int", "processing_timestamp": "int",
    "activity_id": "str", "achievements_unlocked": "int",
    "in_game_purchases": "dbl", "player_country": "str", "player_status": "str",
    "game_publisher": "str", "game_platform": "str", "game_rating": "dbl",
    "player_segment": "str", "session_type": "str", "has_purchase": "bool",
}


def _col(name, agg, field=None, typ=None):
    return {"name": name, "agg": agg, "field": field, "type": typ}


# Windowed tables (SPEC §6). agg: count | count_field | sum_int | sum_dbl |
# avg | max | cd (exact COUNT_DISTINCT) | latest | pct (of two other columns)
WINDOWED = {
    "gaming_hourly_player_game_stats": {
        "window": HOUR, "keys": ["player_id", "game_id"], "purchases_only": False,
        "cols": [
            _col("total_sessions_1h", "count", None, "int"),
            _col("total_duration_1h", "sum_int", "duration_seconds", "int"),
            _col("avg_score_1h", "avg", "score", "dbl"),
            _col("max_score_1h", "max", "score", "int"),
            _col("total_achievements_1h", "sum_int", "achievements_unlocked", "int"),
            _col("total_purchases_1h", "sum_dbl", "in_game_purchases", "dbl"),
            _col("unique_sessions_1h", "cd", "session_id", "int"),
        ],
    },
    "gaming_active_players_5min": {
        "window": 5 * MIN, "keys": ["game_id"], "purchases_only": False,
        "cols": [
            _col("game_name", "latest", "game_name", "str"),
            _col("active_players_count", "cd", "player_id", "int"),
            _col("total_activities", "count", None, "int"),
            _col("avg_session_duration", "avg", "duration_seconds", "dbl"),
        ],
    },
    "gaming_top_performers_hourly": {
        "window": HOUR, "keys": ["game_id", "player_id"], "purchases_only": False,
        "having": ("total_score", 1000),
        "cols": [
            _col("player_username", "latest", "player_username", "str"),
            _col("total_score", "sum_int", "score", "int"),
            _col("activity_count", "count", None, "int"),
            _col("best_score", "max", "score", "int"),
        ],
    },
    "gaming_revenue_analytics": {
        "window": HOUR, "keys": ["game_id"], "purchases_only": True,
        "cols": [
            _col("game_name", "latest", "game_name", "str"),
            _col("unique_paying_users", "cd", "player_id", "int"),
            _col("total_revenue", "sum_dbl", "in_game_purchases", "dbl"),
            _col("avg_purchase_value", "avg", "in_game_purchases", "dbl"),
            _col("total_purchase_events", "count", None, "int"),
        ],
    },
    "gaming_genre_engagement": {
        "window": HOUR, "keys": ["game_genre"], "purchases_only": False,
        "cols": [
            _col("unique_players", "cd", "player_id", "int"),
            _col("total_activities", "count", None, "int"),
            _col("avg_session_duration", "avg", "duration_seconds", "dbl"),
            _col("total_achievements", "sum_int", "achievements_unlocked", "int"),
        ],
    },
    "gaming_player_segments_hourly": {
        "window": HOUR, "keys": ["player_segment"], "purchases_only": False,
        "cols": [
            _col("player_count", "cd", "player_id", "int"),
            _col("avg_score", "avg", "score", "dbl"),
            _col("avg_session_duration", "avg", "duration_seconds", "dbl"),
        ],
    },
    "gaming_high_value_players_daily": {
        "window": DAY, "keys": ["player_id", "game_id"], "purchases_only": True,
        "cols": [
            _col("player_username", "latest", "player_username", "str"),
            _col("game_name", "latest", "game_name", "str"),
            _col("total_spent", "sum_dbl", "in_game_purchases", "dbl"),
            _col("purchase_count", "count", None, "int"),
        ],
    },
    "gaming_processing_lag_1min": {
        "window": MIN, "keys": ["game_id"], "purchases_only": False,
        "cols": [
            _col("game_name", "latest", "game_name", "str"),
            _col("event_count", "count", None, "int"),
            # depend on the wall clock: not computed, checked for plausibility
            _col("max_lag_ms", "wallclock", None, "int"),
            _col("avg_lag_ms", "wallclock", None, "dbl"),
        ],
    },
    "gaming_data_quality_5min": {
        "window": 5 * MIN, "keys": [], "purchases_only": False,
        "cols": [
            _col("total_records", "count", None, "int"),
            _col("records_with_game_name", "count_field", "game_name", "int"),
            _col("records_with_username", "count_field", "player_username", "int"),
            _col("game_enrichment_rate", "pct", ("records_with_game_name", "total_records"), "dbl"),
            _col("player_enrichment_rate", "pct", ("records_with_username", "total_records"), "dbl"),
        ],
    },
}

REFERENCE_TABLES = {
    "gaming_games_table": {"key": "game_id", "fields": GAME_FIELDS, "topic": TOPIC_GAMES},
    "gaming_players_table": {"key": "player_id", "fields": PLAYER_FIELDS, "topic": TOPIC_PLAYERS},
}

ALL_TABLES = list(REFERENCE_TABLES) + list(WINDOWED)

# Columns whose values depend on the wall clock.
WALLCLOCK_COLUMNS = {("gaming_processing_lag_1min", "max_lag_ms"),
                     ("gaming_processing_lag_1min", "avg_lag_ms")}


def table_key_columns(name):
    if name in REFERENCE_TABLES:
        return [REFERENCE_TABLES[name]["key"]]
    return list(WINDOWED[name]["keys"])


def table_value_columns(name):
    """{column: type} of the value columns."""
    if name in REFERENCE_TABLES:
        spec = REFERENCE_TABLES[name]
        return {f: t for f, t in spec["fields"].items() if f != spec["key"]}
    return {c["name"]: c["type"] for c in WINDOWED[name]["cols"]}


def table_key_types(name):
    return {k: "str" for k in table_key_columns(name)}


def is_windowed(name):
    return name in WINDOWED


class BadRecord(Exception):
    pass


def _type_ok(v, t):
    if v is None:
        return True
    if t == "str":
        return isinstance(v, str)
    if t == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "dbl":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    raise AssertionError(t)


def _check_fields(value, fields):
    for f, t in fields.items():
        if f not in value:
            continue
        v = value[f]
        if t == "int" and isinstance(v, float) and v.is_integer():
            value[f] = int(v)  # JSON has one number type: 12.0 is the integer 12
            continue
        if not _type_ok(v, t):
            raise BadRecord("field %s has the wrong type" % f)


def _has_surrogates(v):
    """Whether a decoded JSON value holds text that was not valid UTF-8 (read
    with surrogateescape, or a lone surrogate escape): not JSON (RFC 8259)."""
    if isinstance(v, str):
        return any(0xD800 <= ord(ch) <= 0xDFFF for ch in v)
    if isinstance(v, dict):
        return any(_has_surrogates(k) or _has_surrogates(x) for k, x in v.items())
    if isinstance(v, list):
        return any(_has_surrogates(x) for x in v)
    return False


def decode_line(line):
    """One source line -> (topic, key, value). value None = tombstone.

    Raises BadRecord with .topic set (None when unknown) for a bad record."""
    topic = None
    try:
        if isinstance(line, (dict, list)) or line is None:
            obj = line
        else:
            try:
                obj = json.loads(line)
            except ValueError:
                raise BadRecord("not JSON")
        if not isinstance(obj, dict):
            raise BadRecord("envelope is not an object")
        topic = obj.get("topic")
        if topic not in TOPICS:
            t = topic
            topic = None
            raise BadRecord("unknown topic %r" % (t,))
        key = obj.get("key")
        if key is not None and not isinstance(key, str):
            raise BadRecord("key is not a string")
        if "value" in obj:
            value = obj["value"]
        elif "payload" in obj:
            payload = obj["payload"]
            if payload is None:
                value = None
            elif isinstance(payload, str):
                try:
                    value = json.loads(payload)
                except ValueError:
                    raise BadRecord("payload is not JSON")
            else:
                raise BadRecord("payload is not a string")
        else:
            raise BadRecord("no value/payload")
        if value is not None and not isinstance(value, dict):
            raise BadRecord("value is not an object")
        if _has_surrogates(value) or _has_surrogates(key):
            raise BadRecord("invalid UTF-8")
        if value is not None:
            value = dict(value)  # never modify the caller's objects
        if topic == TOPIC_ACTIVITY:
            if value is None:
                raise BadRecord("activity value is null")
            for f in ACTIVITY_REQUIRED:
                if value.get(f) is None:
                    raise BadRecord("missing %s" % f)
            _check_fields(value, ACTIVITY_FIELDS)
        else:
            spec = GAME_FIELDS if topic == TOPIC_GAMES else PLAYER_FIELDS
            idf = "game_id" if topic == TOPIC_GAMES else "player_id"
            if value is not None:
                _check_fields(value, spec)
            if key is None or key == "":
                key = value.get(idf) if value is not None else None
                if key is None or key == "":
                    raise BadRecord("no key")
        return topic, key, value
    except BadRecord as e:
        e.topic = topic
        raise
    except RecursionError:
        e = BadRecord("too deep")
        e.topic = topic
        raise e


def window_start(ts, size):
    return (ts // size) * size  # Python // floors, also for negative ts


def player_segment(score):
    if score is not None and score > 10000:
        return "HIGH_PERFORMER"
    if score is not None and score > 5000:
        return "MEDIUM_PERFORMER"
    return "CASUAL_PLAYER"


def session_type(duration):
    if duration is not None and duration > 3600:
        return "EXTENDED_SESSION"
    if duration is not None and duration > 1800:
        return "MEDIUM_SESSION"
    return "SHORT_SESSION"


class _Group:
    """Aggregate state of one (window, key) group of one table."""

    __slots__ = ("n", "st")

    def __init__(self, cols):
        self.n = 0
        self.st = {}
        for c in cols:
            a = c["agg"]
            if a in ("count", "count_field", "sum_int"):
                self.st[c["name"]] = 0
            elif a == "sum_dbl":
                self.st[c["name"]] = 0.0
            elif a == "avg":
                self.st[c["name"]] = [0, 0]  # sum, n
            elif a == "cd":
                self.st[c["name"]] = set()
            else:
                self.st[c["name"]] = None

    def update(self, cols, rec):
        self.n += 1
        for c in cols:
            a, name, f = c["agg"], c["name"], c["field"]
            v = rec.get(f) if isinstance(f, str) else None
            if a == "count":
                self.st[name] += 1
            elif a == "count_field":
                if v is not None:
                    self.st[name] += 1
            elif a in ("sum_int", "sum_dbl"):
                if v is not None:
                    self.st[name] += v
            elif a == "avg":
                if v is not None:
                    s = self.st[name]
                    s[0] += v
                    s[1] += 1
            elif a == "max":
                if v is not None and (self.st[name] is None or v > self.st[name]):
                    self.st[name] = v
            elif a == "cd":
                if v is not None:
                    self.st[name].add(v)
            elif a == "latest":
                if v is not None:
                    self.st[name] = v

    def value(self, cols, name):
        for c in cols:
            if c["name"] == name:
                break
        else:
            raise KeyError(name)
        a, s = c["agg"], self.st[name]
        if a == "avg":
            return None if s[1] == 0 else s[0] / s[1]
        if a == "cd":
            return len(s)
        if a == "pct":
            num, den = c["field"]
            d = self.st[den]
            return None if d == 0 else self.st[num] * 100.0 / d
        if a == "sum_dbl":
            return float(s)
        return s

    def values(self, cols):
        return {c["name"]: self.value(cols, c["name"]) for c in cols}


class Reference:
    def __init__(self, grace_ms=None, retention_ms=None, max_future_ms=None, now_ms=None, max_record_bytes=None):
        self.grace_ms = grace_ms
        self.retention_ms = DEFAULT_RETENTION if retention_ms is None else retention_ms
        # event time is bounded by the wall clock when the record is processed
        self.max_future_ms = DEFAULT_MAX_FUTURE if max_future_ms is None else max_future_ms
        self.now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        # a line longer than this is a bad record, counted under the topic its start names
        self.max_record_bytes = DEFAULT_MAX_RECORD_BYTES if max_record_bytes is None else max_record_bytes
        self.games = {}
        self.players = {}
        self.windows = {name: {} for name in WINDOWED}  # name -> {(ws, keytuple): _Group}
        self.stream_time = None
        self.outputs = []        # enriched records, processing order
        self.output_alts = []    # per output: {field: [other acceptable values]}
        self.bad = 0
        self.bad_by_topic = {}   # topic (None = unknown) -> count
        self.valid_by_topic = {t: 0 for t in TOPICS}
        self.late_any = 0        # activities late for at least one windowed table they count in
        self.late_all = 0        # activities late for every windowed table they count in
        self.late_by_table = {name: 0 for name in WINDOWED}
        self.changes = []        # (table, push event id, row after the change), processing order
        self.records = 0         # lines seen
        self.finished = False

    # -- lateness / retention -------------------------------------------------
    def grace_for(self, name):
        if self.grace_ms is not None:
            return self.grace_ms
        return DAY - WINDOWED[name]["window"]

    def _is_late(self, name, ws):
        size = WINDOWED[name]["window"]
        return ws + size + self.grace_for(name) <= self.stream_time

    def _purgeable(self, name, ws, st):
        # retention counts from the stream time, never from past the wall clock
        size = WINDOWED[name]["window"]
        return ws + size + self.retention_ms <= min(st, self.now_ms)

    # -- feeding ---------------------------------------------------------------
    def feed_lines(self, lines):
        for line in lines:
            self.feed(line)
        return self

    def feed(self, line):
        self.records += 1
        try:
            if isinstance(line, str) and len(line.encode("utf-8", "surrogateescape")) > self.max_record_bytes:
                e = BadRecord("larger than --max-record-bytes")
                m = re.search(r'"topic":"([^"]*)"', line[:256])
                e.topic = m.group(1) if m and m.group(1) in TOPICS else None
                raise e
            topic, key, value = decode_line(line)
            if topic == TOPIC_ACTIVITY and value["activity_timestamp"] > self.now_ms + self.max_future_ms:
                e = BadRecord("activity_timestamp beyond the wall clock and --max-future")
                e.topic = topic
                raise e
        except BadRecord as e:
            self.bad += 1
            self.bad_by_topic[e.topic] = self.bad_by_topic.get(e.topic, 0) + 1
            return
        self.valid_by_topic[topic] += 1
        if topic in (TOPIC_GAMES, TOPIC_PLAYERS):
            name = "gaming_games_table" if topic == TOPIC_GAMES else "gaming_players_table"
            rows = self.games if topic == TOPIC_GAMES else self.players
            seq = self.valid_by_topic[topic] + self.bad_by_topic.get(topic, 0)  # records of the topic
            if value is None:
                rows.pop(key, None)
                self.changes.append((name, seq, {REFERENCE_TABLES[name]["key"]: key, "deleted": True}))
            else:
                rows[key] = value
                self.changes.append((name, seq, self._reference_row(name, key, value)))
        else:
            self._activity(key, value)

    def _activity(self, key, a):
        ts = a["activity_timestamp"]
        self.stream_time = ts if self.stream_time is None else max(self.stream_time, ts)
        p = self.players.get(a["player_id"])
        g = self.games.get(a["game_id"])
        pg = (lambda f: None if p is None else p.get(f))
        gg = (lambda f: None if g is None else g.get(f))
        purchases = a.get("in_game_purchases")
        e = {
            "game_id": a["game_id"],
            "game_name": gg("game_name"),
            "game_genre": gg("genre"),
            "player_id": a["player_id"],
            "player_username": pg("username"),
            "player_email": pg("email"),
            "player_level": pg("level"),
            "activity_type": a["activity_type"],
            "session_id": a.get("session_id"),
            "score": a.get("score"),
            "duration_seconds": a.get("duration_seconds"),
            "total_sessions_1h": None,
            "avg_score_1h": None,
            "active_players_count": None,
            "event_timestamp": ts,
            "processing_timestamp": None,
            "activity_id": a.get("activity_id"),
            "achievements_unlocked": a.get("achievements_unlocked"),
            "in_game_purchases": purchases,
            "player_country": pg("country"),
            "player_status": pg("account_status"),
            "game_publisher": gg("publisher"),
            "game_platform": gg("platform"),
            "game_rating": gg("rating"),
            "player_segment": player_segment(a.get("score")),
            "session_type": session_type(a.get("duration_seconds")),
            "has_purchase": purchases is not None and purchases > 0,
        }
        alts = {}
        late_count = counted_in = 0
        for name, t in WINDOWED.items():
            ws = window_start(ts, t["window"])
            late = self._is_late(name, ws)
            if t["purchases_only"] and not e["has_purchase"]:
                continue
            keyvals = tuple(e[k] for k in t["keys"])
            if any(v is None for v in keyvals):
                continue  # a group whose key is null is skipped
            counted_in += 1
            if late:  # late for a table only where it would count (SPEC §5)
                late_count += 1
                self.late_by_table[name] += 1
            gk = (ws, keyvals)
            grp = self.windows[name].get(gk)
            if not late:
                if grp is None:
                    grp = self.windows[name][gk] = _Group(t["cols"])
                grp.update(t["cols"], e)
                row = self._window_row(name, ws, keyvals, grp)
                if row is not None:  # the event id: the record's place in the output
                    self.changes.append((name, len(self.outputs) + 1, row))
            # window figures of the enriched record
            if name == "gaming_hourly_player_game_stats":
                fig = {"total_sessions_1h": None, "avg_score_1h": None}
                if grp is not None:
                    fig["total_sessions_1h"] = grp.value(t["cols"], "total_sessions_1h")
                    fig["avg_score_1h"] = grp.value(t["cols"], "avg_score_1h")
                e.update(fig)
                if late and grp is not None and self._purgeable(name, ws, self.stream_time):
                    alts["total_sessions_1h"] = [None]
                    alts["avg_score_1h"] = [None]
            elif name == "gaming_active_players_5min":
                if grp is not None:
                    e["active_players_count"] = grp.value(t["cols"], "active_players_count")
                if late and grp is not None and self._purgeable(name, ws, self.stream_time):
                    alts["active_players_count"] = [None]
        if late_count:
            self.late_any += 1
        if late_count and late_count == counted_in:
            self.late_all += 1
        self.outputs.append(e)
        self.output_alts.append(alts)

    def finish(self):
        """Applies retention against the final stream time."""
        if self.finished:
            return self
        self.finished = True
        if self.stream_time is None:
            return self
        for name in WINDOWED:
            w = self.windows[name]
            for gk in [gk for gk in w if self._purgeable(name, gk[0], self.stream_time)]:
                del w[gk]
        return self

    # -- results ---------------------------------------------------------------
    @staticmethod
    def _reference_row(name, key, value):
        spec = REFERENCE_TABLES[name]
        row = {spec["key"]: key}
        for f in spec["fields"]:
            if f != spec["key"]:
                row[f] = value.get(f)
        return row

    @staticmethod
    def _window_row(name, ws, keyvals, grp):
        """The row of a group as the table shows it; None while HAVING hides it."""
        t = WINDOWED[name]
        vals = grp.values(t["cols"])
        having = t.get("having")
        if having and not (vals[having[0]] is not None and vals[having[0]] > having[1]):
            return None
        row = dict(zip(t["keys"], keyvals))
        row["window_start"] = ws
        row["window_end"] = ws + t["window"]
        row.update(vals)
        return row

    def table_rows(self, name):
        if name in REFERENCE_TABLES:
            src = self.games if name == "gaming_games_table" else self.players
            return [self._reference_row(name, k, v) for k, v in src.items()]
        rows = []
        for (ws, keyvals), grp in self.windows[name].items():
            row = self._window_row(name, ws, keyvals, grp)
            if row is not None:
                rows.append(row)
        return rows

    def all_tables(self):
        return {name: self.table_rows(name) for name in ALL_TABLES}


def row_identity(name, row):
    """The identity of a row: its key columns, plus window_start when windowed."""
    ident = tuple(row.get(k) for k in table_key_columns(name))
    if is_windowed(name):
        ident = ident + (row.get("window_start"),)
    return ident


def values_equal(exp, got, typ=None):
    """Compares one expected value with one value from the daemon."""
    if exp is None or got is None:
        return exp is None and got is None
    if typ == "bool" or isinstance(exp, bool):
        return isinstance(got, bool) and got == exp
    if isinstance(got, bool):
        return False
    if typ == "int" or (typ is None and isinstance(exp, int)):
        if typ == "int":
            return isinstance(got, int) and got == exp
        if isinstance(got, (int, float)):
            return got == exp
        return False
    if typ == "dbl" or isinstance(exp, float):
        if not isinstance(got, (int, float)):
            return False
        return math.isclose(float(exp), float(got), rel_tol=1e-9, abs_tol=1e-9)
    return exp == got


def reference_for(lines, grace_ms=None, retention_ms=None, max_future_ms=None, now_ms=None, max_record_bytes=None):
    ref = Reference(grace_ms=grace_ms, retention_ms=retention_ms, max_future_ms=max_future_ms, now_ms=now_ms,
                    max_record_bytes=max_record_bytes)
    ref.feed_lines(lines)
    ref.finish()
    return ref


DURATION_UNITS = {"ms": 1, "s": 1000, "m": MIN, "h": HOUR, "d": DAY}


def parse_duration(s):
    for unit in ("ms", "s", "m", "h", "d"):
        if s.endswith(unit) and s[: -len(unit)].isdigit():
            return int(s[: -len(unit)]) * DURATION_UNITS[unit]
    raise ValueError("bad duration %r" % s)


def reference_args(args):
    """grace_ms / retention_ms / max_future_ms from a gamingd argument list."""
    out = {"grace_ms": None, "retention_ms": None, "max_future_ms": None}
    flags = {"--grace": "grace_ms", "--retention": "retention_ms", "--max-future": "max_future_ms"}
    for i, a in enumerate(args):
        if a in flags:
            out[flags[a]] = parse_duration(args[i + 1])
        elif a.split("=", 1)[0] in flags and "=" in a:
            out[flags[a.split("=", 1)[0]]] = parse_duration(a.split("=", 1)[1])
    return out
