#!/usr/bin/python3
"""Makes main-667ca2b.tar.xz: a small data dir written by gamingd at commit
667ca2b (before the purge and batch bounds of the store), data/data.mdb, and
every table's rows as that build served them, rows.json. test_store_bounds.py opens
the data dir with today's binary and expects the very same rows.

Run once, from the repository root, with a build of 667ca2b:
    git clone . /tmp/main && git -C /tmp/main checkout 667ca2b && make -C /tmp/main all
    /usr/bin/python3 tests/integration/data/make_main_fixture.py /tmp/main/build/gamingd
It replays 3,000 generated activity events (seed 5, 5 a second from
2024-03-01T00:00:00Z) with --retention 3650d, so that nothing is purged."""

import json
import os
import shutil
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import conftest  # noqa: E402

NAME = "main-667ca2b"
EVENTS, SEED, RATE = 3000, 5, 5
ARGS = ["--retention", "3650d", "--output", "none"]


def tables(daemon):
    r = daemon.get("/v1/tables")
    assert r.status == 200, r
    names = sorted(t["name"] for t in r.json["tables"])
    return {name: daemon.fetch_all(name)[0] for name in names}


def main():
    binary = sys.argv[1]
    os.environ["GAMINGD_BIN"] = binary
    work = tempfile.mkdtemp(prefix="gamingd-fixture-")
    try:
        src = conftest.generate(os.path.join(work, "src.jsonl"), EVENTS, SEED, rate=RATE, start=conftest.BASE_MS)
        data = os.path.join(work, "data")
        d = conftest.Daemon(src, data, os.path.join(work, "out.jsonl"), args=ARGS)
        d.start()
        d.wait_ready()
        rows = tables(d)
        assert d.stop() == 0
        with open(os.path.join(work, "rows.json"), "w") as f:
            json.dump(rows, f, sort_keys=True, separators=(",", ":"))
        with tarfile.open(os.path.join(HERE, NAME + ".tar.xz"), "w:xz") as tar:
            tar.add(os.path.join(data, "data.mdb"), arcname="data/data.mdb")
            tar.add(os.path.join(work, "rows.json"), arcname="rows.json")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
