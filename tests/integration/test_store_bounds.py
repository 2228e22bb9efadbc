"""The LMDB store over time: retention bounds the data file, and a data dir
written by an earlier build is read on exactly.

The file: LMDB never shrinks it, and reuses a page a commit frees only from
the commit after next (store/store.h). Replaying 6 and then 12 hours of
generated activity with an hour of retention must leave files of about one
size: past retention every hour purges what an hour adds. Before the purge
kept pace with the rows written and busy batches were bounded by their rows,
the 12-hour file was twice the 6-hour one (--commit-interval 2s makes a
busy batch 20 s long, so that its rows, not the machine's speed, bound it)."""

import json
import os
import tarfile
import time

from conftest import generate

HERE = os.path.dirname(os.path.abspath(__file__))
HOUR_MS = 3600 * 1000
RATE = 10  # activity events a second of event time


def replayed_file_size(gamingd, tmp_path, hours, start_ms):
    src = generate(str(tmp_path / ("h%d.jsonl" % hours)), hours * 3600 * RATE, 7, rate=RATE, start=start_ms)
    d = gamingd(src, args=["--retention", "1h", "--grace", "10m", "--commit-interval", "2s", "--output", "none"])
    d.wait_ready()
    assert d.stop() == 0
    return os.path.getsize(os.path.join(d.data_dir, "data.mdb"))

def test_data_file_stops_growing_past_retention(gamingd, tmp_path):
    # event time ends an hour before now: retention counts from the stream
    # time, never from past the wall clock
    start = int(time.time() * 1000) - 13 * HOUR_MS
    six = replayed_file_size(gamingd, tmp_path, 6, start)
    twelve = replayed_file_size(gamingd, tmp_path, 12, start)
    assert twelve <= six * 1.25, "data.mdb after 12 h of data: %.1f MiB, after 6 h: %.1f MiB" % (
        twelve / 2**20, six / 2**20)

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
