"""The built-in live page (GET /) in headless Chromium: every chart gets
points and both tables rows, from pull queries and the SSE table streams;
with API keys on, the page asks for a key, refuses a wrong one, and passes
the right one on. Screenshots go to build/test-artifacts/."""

import os

import pytest

from browser import CHROMIUM, Chromium
from conftest import REPO_ROOT, parse_prometheus

ARTIFACTS = os.path.join(REPO_ROOT, "build", "test-artifacts")
ALL_FED = ("(() => { const s = window.gamingdPage && window.gamingdPage.status();"
           " return s && Object.values(s.charts).every(n => n > 0) && Object.values(s.tables).every(n => n > 0)"
           " ? s : null })()")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is installed by `make deps`")


def test_every_chart_and_table_fills_from_the_streams(gamingd, tmp_path):
    d = gamingd("generator", args=["--rate", "400", "--seed", "3"])
    c = Chromium(str(tmp_path / "profile"))
    try:
        c.navigate("http://127.0.0.1:%d/" % d.port)
        status = c.wait_for(ALL_FED, timeout=90)
        assert set(status["charts"]) == {"active_players", "revenue", "genres", "segments", "lag", "quality"}
        assert status["errors"] == []
        # the charts keep moving: points arrive through the streams, not only the first load
        before = sum(status["charts"].values())
        c.wait_for("(() => { const s = window.gamingdPage.status(); "
                   "return Object.values(s.charts).reduce((a, b) => a + b, 0) > %d })()" % before, timeout=90)
        assert c.evaluate("document.getElementById('status').textContent") == "live"
        os.makedirs(ARTIFACTS, exist_ok=True)
        c.screenshot(os.path.join(ARTIFACTS, "page.png"))
        subscribers = parse_prometheus(d.get("/metrics").raw.decode())
        streams = {dict(l)["stream"]: v for (n, l), v in subscribers.items() if n == "gamingd_stream_subscribers"}
        assert streams["gaming_active_players_5min"] >= 1 and streams["gaming_top_performers_hourly"] >= 1
    finally:
        c.close()


def test_with_keys_the_page_asks_for_one_once(gamingd, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("page-viewer-key-91d3 read\n")
    d = gamingd("generator", args=["--rate", "400", "--seed", "4", "--api-keys", str(keys)])
    c = Chromium(str(tmp_path / "profile"))
    try:
        c.navigate("http://127.0.0.1:%d/" % d.port)
        c.wait_for("!document.getElementById('key-form').hidden", timeout=30)
        c.evaluate("document.getElementById('key-input').value = 'wrong-key';"
                   "document.getElementById('key-form').requestSubmit()")
        c.wait_for("document.getElementById('key-error').textContent.includes('not accepted')", timeout=30)
        c.evaluate("document.getElementById('key-input').value = 'page-viewer-key-91d3';"
                   "document.getElementById('key-form').requestSubmit()")
        c.wait_for(ALL_FED, timeout=90)
        assert c.evaluate("sessionStorage.getItem('gamingd_key')") == "page-viewer-key-91d3"
        os.makedirs(ARTIFACTS, exist_ok=True)
        c.screenshot(os.path.join(ARTIFACTS, "page-with-key.png"))
        # a reload keeps the key for the session: no form again
        c.navigate("http://127.0.0.1:%d/" % d.port)
        c.wait_for(ALL_FED, timeout=90)
        assert c.evaluate("document.getElementById('key-form').hidden") is True
    finally:
        c.close()
