"""A real Prometheus (Debian's package) scrapes gamingd's /metrics with a
bearer token, and its HTTP API returns gamingd's series: the text format
and the authentication as the real scraper sees them. A second job with a
wrong key is refused (up = 0)."""

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from conftest import free_port

PROMETHEUS = shutil.which("prometheus")


def prom_query(port, q):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": q}))
    with urllib.request.urlopen(url, timeout=5) as r:
        doc = json.loads(r.read())
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is installed by `make deps`")
def test_prometheus_scrapes_gamingd_with_a_bearer_token(gamingd, tmp_path, generated):
    keys = tmp_path / "keys.txt"
    keys.write_text("scraper-key-2f9c read\n")
    d = gamingd(generated(2000, 61), args=["--api-keys", str(keys)])
    d.wait_ready()
    (tmp_path / "good.key").write_text("scraper-key-2f9c")
    (tmp_path / "bad.key").write_text("not-the-key")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: gamingd
    authorization: {type: Bearer, credentials_file: %s}
    static_configs: [{targets: ["127.0.0.1:%d"]}]
  - job_name: gamingd_wrong_key
    authorization: {type: Bearer, credentials_file: %s}
    static_configs: [{targets: ["127.0.0.1:%d"]}]
""" % (tmp_path / "good.key", d.port, tmp_path / "bad.key", d.port))
    log = open(str(tmp_path / "prometheus.log"), "w")
    prom = subprocess.Popen([PROMETHEUS, "--config.file=" + str(config), "--storage.tsdb.path=" + str(tmp_path / "tsdb"),
                             "--web.listen-address=127.0.0.1:%d" % port], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        up = bad = records = refused = None
        while time.time() < deadline:
            try:
                up = prom_query(port, 'up{job="gamingd"}')
                bad = prom_query(port, 'up{job="gamingd_wrong_key"}')
                records = prom_query(port, 'gamingd_records_in_total{job="gamingd"}')
                # the wrong key's refusals, as the right key's scrape reports them
                refused = prom_query(port, 'gamingd_http_requests_total{job="gamingd",status="401",route="/metrics"}')
            except OSError:
                pass
            if up and bad and records and refused:
                break
            time.sleep(0.5)
        assert up and up[0]["value"][1] == "1", (up, open(str(tmp_path / "prometheus.log")).read()[-2000:])
        assert bad and bad[0]["value"][1] == "0", bad
        by_topic = {r["metric"]["topic"]: float(r["value"][1]) for r in records}
        applied = json.loads(d.get("/readyz").raw)["records_applied"]
        assert sum(by_topic.values()) == applied and by_topic["gaming_player_activity"] > 0
        assert refused and float(refused[0]["value"][1]) >= 1, refused
        assert prom_query(port, 'gamingd_stream_subscribers{job="gamingd"}')
    finally:
        prom.terminate()
        prom.wait(timeout=20)
        log.close()


# Names whose quote, backslash or newline would end a label value early and
# write a series of their own if gamingd did not escape them.
EVIL_TOPIC = 'out"} 1\nevil_injected_total{x="y'
EVIL_GAMES = 'ga\\mes\\'


def test_label_values_are_escaped_so_the_scrape_parses_whole(gamingd, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families
    src = tmp_path / "in.jsonl"
    src.write_text("")
    d = gamingd(str(src), args=["--output-topic", EVIL_TOPIC, "--topic-games", EVIL_GAMES])
    d.wait_ready()
    r = d.get("/metrics")
    assert r.status == 200
    fams = list(text_string_to_metric_families(r.raw.decode()))  # raises on a malformed line
    names = {s.name for f in fams for s in f.samples}
    assert not any("evil" in n for n in names), sorted(n for n in names if "evil" in n)
    out = [s.labels["topic"] for f in fams for s in f.samples if s.name == "gamingd_records_out_total"]
    assert out == [EVIL_TOPIC]
    games = [s.labels["topic"] for f in fams for s in f.samples if s.name == "gamingd_records_in_total"]
    assert EVIL_GAMES in games
