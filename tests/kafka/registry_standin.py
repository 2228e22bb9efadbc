#!/usr/bin/python3
"""A stand-in for the Confluent Schema Registry, for the tests only.

The real registry cannot be installed on the test machines. This implements
just the documented REST calls gamingd and the Python clients make:

  POST /subjects/{subject}/versions        register -> {"id": N}
  GET  /schemas/ids/{id}                   -> {"schema": "..."}
  GET  /subjects                           -> ["subject", ...]
  GET  /subjects/{subject}/versions        -> [1, 2, ...]
  GET  /subjects/{subject}/versions/{v}    v a number or "latest"
                                           -> {"subject", "version", "id", "schema"}

Errors are answered as the registry answers them, {"error_code", "message"}
(40401 subject not found, 40402 version not found, 40403 schema not found,
42201 invalid schema), and with --auth USER:SECRET every call needs HTTP
basic auth (401 otherwise). A schema already registered gets its old id back,
as in the registry, where ids are global and schemas deduplicated.

Usage: registry_standin.py [--port N] [--auth USER:SECRET]
Prints its base URL on the first line of stdout, then serves until killed.
"""
import argparse
import base64
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class Registry:
    def __init__(self):
        self.lock = threading.Lock()
        self.schemas = []  # id - 1 -> schema text
        self.canonical = {}  # canonical JSON -> id
        self.subjects = {}  # subject -> [id of version 1, 2, ...]

    def register(self, subject, text):
        canon = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
        with self.lock:
            sid = self.canonical.get(canon)
            if sid is None:
                self.schemas.append(text)
                sid = self.canonical[canon] = len(self.schemas)
            versions = self.subjects.setdefault(subject, [])
            if sid not in versions:
                versions.append(sid)
            return sid


class Handler(BaseHTTPRequestHandler):
    registry = None
    auth = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, code, message):
        self.answer(status, {"error_code": code, "message": message})

    def authorized(self):
        if not self.auth:
            return True
        want = "Basic " + base64.b64encode(self.auth.encode()).decode()
        if self.headers.get("Authorization") == want:
            return True
        self.error(401, 401, "Unauthorized")
        return False

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if not self.authorized():
            return
        m = re.fullmatch(r"/subjects/([^/]+)/versions", self.path)
        if not m:
            return self.error(404, 404, "HTTP 404 Not Found")
        try:
            text = json.loads(body)["schema"]
            json.loads(text)
        except (ValueError, KeyError, TypeError):
            return self.error(422, 42201, "Invalid schema")
        subject = unquote(m.group(1))
        self.answer(200, {"id": self.registry.register(subject, text)})

    def do_GET(self):
        if not self.authorized():
            return
        reg = self.registry
        path = self.path.split("?")[0]
        if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
            sid = int(m.group(1))
            if 1 <= sid <= len(reg.schemas):
                return self.answer(200, {"schema": reg.schemas[sid - 1]})
            return self.error(404, 40403, f"Schema {sid} not found")
        if path == "/subjects":
            return self.answer(200, sorted(reg.subjects))
        if m := re.fullmatch(r"/subjects/([^/]+)/versions(?:/([^/]+))?", path):
            subject = unquote(m.group(1))
            versions = reg.subjects.get(subject)
            if versions is None:
                return self.error(404, 40401, f"Subject '{subject}' not found.")
            if m.group(2) is None:
                return self.answer(200, list(range(1, len(versions) + 1)))
            v = len(versions) if m.group(2) == "latest" else int(m.group(2)) if m.group(2).isdigit() else 0
            if not 1 <= v <= len(versions):
                return self.error(404, 40402, f"Version {m.group(2)} not found.")
            sid = versions[v - 1]
            return self.answer(200, {"subject": subject, "version": v, "id": sid,
                                     "schema": reg.schemas[sid - 1]})
        self.error(404, 404, "HTTP 404 Not Found")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--auth")
    args = ap.parse_args()
    Handler.registry = Registry()
    Handler.auth = args.auth
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
