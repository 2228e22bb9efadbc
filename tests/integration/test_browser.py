"""A real browser as a push subscriber: headless Chromium loads a page from
another origin that opens an EventSource on gamingd, counts events, and
reconnects with Last-Event-ID each time the server ends the response
(limit=5 ends it after five events). The ids the page saw must run on
without a gap or a repeat across the reconnections. The page's origin is
allowed with --cors-origins; without it the browser gets no event."""

import http.server
import json
import os
import shutil
import subprocess
import threading
import urllib.parse

import pytest

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pages", "eventsource.html")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class PageServer(http.server.ThreadingHTTPServer):
    """Serves the page and receives its result: the page's own origin."""

    def __init__(self):
        self.result = None
        self.got = threading.Event()
        super().__init__(("127.0.0.1", 0), PageHandler)


class PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(PAGE, "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.server.result = json.loads(self.rfile.read(n))
        self.server.got.set()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def run_page(tmp_path, server, stream, want, within):
    """Loads the page in headless Chromium; returns what it reported."""
    page = "http://127.0.0.1:%d/page?%s" % (server.server_address[1],
                                            urllib.parse.urlencode({"stream": stream, "want": want,
                                                                    "within": within}))
    browser = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--user-data-dir=" + str(tmp_path / "profile"), page],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, TMPDIR=str(tmp_path)))  # its scratch dirs go with the test's, not to /tmp
    try:
        assert server.got.wait(within + 30), "the page reported nothing within %d s" % (within + 30)
    finally:
        browser.kill()
        browser.wait()
        server.shutdown()
    return server.result


def page_server():
    server = PageServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "http://127.0.0.1:%d" % server.server_address[1]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is installed by `make deps`")
def test_eventsource_in_chromium_resumes_with_last_event_id(gamingd, tmp_path):
    server, origin = page_server()
    d = gamingd("generator", args=["--rate", "50", "--seed", "9", "--cors-origins", origin])
    want = 12
    stream = "http://127.0.0.1:%d/v1/streams/gaming_real_time_intelligence_platform?limit=5" % d.port
    seen = run_page(tmp_path, server, stream, want, 60)
    ids = [int(i) for i in seen["ids"]]
    assert len(ids) == want and seen["bad_json"] == 0, seen
    assert ids == list(range(ids[0], ids[0] + want)), "ids across reconnections: %s" % ids
    assert seen["opens"] == 3 and seen["errors"] >= 2, seen  # 5 + 5 + 2 events over three connections
    assert "Chrome" in seen["user_agent"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is installed by `make deps`")
def test_a_page_of_another_origin_reads_nothing_by_default(gamingd, tmp_path):
    server, origin = page_server()
    d = gamingd("generator", args=["--rate", "50", "--seed", "9"])
    stream = "http://127.0.0.1:%d/v1/streams/gaming_real_time_intelligence_platform" % d.port
    seen = run_page(tmp_path, server, stream, 5, 4)
    assert seen["ids"] == [] and seen["errors"] >= 1 and seen["opens"] == 0, seen
