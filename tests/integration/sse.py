"""A small server-sent-events client for the tests, written from the
WHATWG EventSource parsing rules (fields id, event, data, retry; lines
starting with ':' are comments; a blank line ends an event). It speaks
HTTP/1.1 through http.client, so chunked transfer encoding is exercised too.
"""

import http.client
import json
import socket
import time
import urllib.parse


class Event:
    def __init__(self, id=None, event="message", data="", retry=None):
        self.id = id
        self.event = event
        self.data = data
        self.retry = retry

    @property
    def json(self):
        return json.loads(self.data)

    def __repr__(self):
        return "Event(id=%r, event=%r, data=%r)" % (self.id, self.event, self.data[:200])


class Stream:
    """One subscription. events() yields Event objects (and comment lines
    as Event(event=':comment'))."""

    def __init__(self, port, stream, params=None, headers=None, ndjson=False, rcvbuf=None, timeout=30):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        if rcvbuf:
            # a small receive window makes a slow reader slow for the server at once
            self.conn.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            self.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        path = "/v1/streams/" + stream
        if params:
            path += "?" + urllib.parse.urlencode(params)
        hdrs = dict(headers or {})
        if ndjson:
            hdrs["Accept"] = "application/x-ndjson"
        self.conn.request("GET", path, headers=hdrs)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.ndjson = ndjson
        self.retry = None
        self.body = None
        if self.status != 200:
            self.body = self.resp.read()

    def set_timeout(self, seconds):
        self.conn.sock.settimeout(seconds)

    def lines(self):
        while True:
            line = self.resp.readline()
            if not line:
                return
            yield line.decode("utf-8").rstrip("\r\n")

    def events(self, comments=False):
        if self.ndjson:
            for line in self.lines():
                if line == "":
                    if comments:
                        yield Event(event=":comment", data="")
                    continue
                obj = json.loads(line)
                if isinstance(obj, dict) and "notice" in obj:
                    yield Event(event=obj["notice"], data=line)
                else:
                    yield Event(data=line)
            return
        ev = Event()
        has_data = False
        for line in self.lines():
            if line == "":
                if has_data:  # an event without data is not dispatched
                    yield ev
                ev, has_data = Event(), False
                continue
            if line.startswith(":"):
                if comments:
                    yield Event(event=":comment", data=line[1:].strip())
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "id":
                ev.id = value
            elif name == "event":
                ev.event = value
            elif name == "data":
                ev.data = value if not has_data else ev.data + "\n" + value
                has_data = True
            elif name == "retry":
                self.retry = int(value)

    def take(self, n, deadline_s=60, kinds=("message",), silence_s=5):
        """The next n events of the given kinds (others are collected in
        self.notices), giving up at the deadline or after silence_s without
        a byte (a socket that timed out cannot be read again)."""
        self.notices = getattr(self, "notices", [])
        out = []
        end = time.time() + deadline_s
        # heartbeats keep the socket busy: the deadline is checked per line
        self.set_timeout(max(0.1, min(deadline_s, silence_s)))
        try:
            for ev in self.events(comments=True):
                if ev.event in kinds:
                    out.append(ev)
                elif ev.event != ":comment":
                    self.notices.append(ev)
                if len(out) >= n or time.time() > end:
                    break
        except socket.timeout:
            pass
        return out

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        self.conn.close()
