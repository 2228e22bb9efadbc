"""The LMDB store over time: retention bounds the data file, and a data dir
written by an earlier build is read on exactly.

The file: LMDB never shrinks it, and reuses a page a commit frees only from
the commit after next (store/store.h). Replaying four and then eight days of
generated activity with an hour of retention must leave files of about one
size: past retention every hour purges what an hour adds. Two days are not
enough to reach that size: by the time of day a run began, the file after
104 h was 1.15x to 1.26x the one after 52 h, and after 208 h 0.98x to 1.11x
the one after 104 h (measured at five times of day). Before the purge
kept pace with the rows written and busy batches were bounded by their rows,
the longer file was twice the shorter (--commit-interval 2s makes a busy
batch 20 s long, so that its rows, not the machine's speed, bound it).

Both replays end at the same time of day and span two days or more: the
daily table holds the rows of its day so far (and the day before's until an
hour past its end), so files of 6 and 12 hours from one start differed by
what the day had gathered, up to 1.28x by the time of day a run began.
A busy batch ends at the same record whatever the ingest threads: when the
workers' dirty-row counts, trailing the ring, decided it, the file of one
replay varied by 1.35x from run to run."""

import json
import os
import tarfile
import time

from conftest import generate

HERE = os.path.dirname(os.path.abspath(__file__))
HOUR_MS = 3600 * 1000
RATE = 1  # activity events a second of event time


def replayed_file_size(gamingd, tmp_path, hours):
    # event time ends an hour before now: retention counts from the stream
    # time, never from past the wall clock
    start = int(time.time() * 1000) - (hours + 1) * HOUR_MS
    src = generate(str(tmp_path / ("h%d.jsonl" % hours)), hours * 3600 * RATE, 7, rate=RATE, start=start)
    d = gamingd(src, args=["--retention", "1h", "--grace", "10m", "--commit-interval", "2s", "--output", "none"])
    d.wait_ready()
    assert d.stop() == 0
    return os.path.getsize(os.path.join(d.data_dir, "data.mdb"))

def test_data_file_stops_growing_past_retention(gamingd, tmp_path):
    four_days = replayed_file_size(gamingd, tmp_path, 104)
    eight_days = replayed_file_size(gamingd, tmp_path, 208)
    assert eight_days <= four_days * 1.25, "data.mdb after 208 h of data: %.1f MiB, after 104 h: %.1f MiB" % (
        eight_days / 2**20, four_days / 2**20)

def test_reads_a_data_dir_written_by_main_667ca2b(gamingd, tmp_path):
    """data/main-667ca2b.tar.xz holds a data dir gamingd 667ca2b wrote and the
    rows it served from it (data/make_main_fixture.py made both)."""
    with tarfile.open(os.path.join(HERE, "data", "main-667ca2b.tar.xz")) as tar:
        tar.extractall(str(tmp_path))
    with open(str(tmp_path / "rows.json")) as f:
        expected = json.load(f)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    d = gamingd(str(empty), data_dir=str(tmp_path / "data"), args=["--retention", "3650d", "--output", "none"])
    d.wait_ready()
    for table, rows in expected.items():
        got, _ = d.fetch_all(table)
        assert got == rows, "%s: %d rows read, %d written by 667ca2b" % (table, len(got), len(rows))
    assert set(t["name"] for t in d.get("/v1/tables").json["tables"]) == set(expected)
