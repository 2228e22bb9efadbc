"""The documents that ship with gamingd say what the server does: the
OpenAPI document lists every route the server answers, docs/flags.md every
flag and environment variable `gamingd --help` prints, the README and docs/
link only to files and headings that exist (and the README to every
document), the compose file runs Grafana and Prometheus against gamingd with
keys, the compose files set only settings gamingd has, and docs/sql.md lists
every scalar function of store/func.c's table (and no other)."""

import json
import os
import re
import subprocess

import yaml

from conftest import REPO_ROOT

OPENAPI = os.path.join(REPO_ROOT, "schemas", "openapi.yaml")
COMPOSE = os.path.join(REPO_ROOT, "docker", "compose.yaml")
README = os.path.join(REPO_ROOT, "README.md")
DOCS = os.path.join(REPO_ROOT, "docs")
FLAGS_DOC = os.path.join(DOCS, "flags.md")


def help_text():
    return subprocess.run([os.environ["GAMINGD_BIN"], "--help"], capture_output=True, text=True).stdout


def test_openapi_lists_every_route(gamingd):
    doc = yaml.safe_load(open(OPENAPI))
    paths = set(doc["paths"])
    d = gamingd("generator", args=["--rate", "10"])
    # what the server answers: each documented path exists, and each route family is documented
    for route in ("/v1/tables", "/v1/tables/{table}", "/v1/streams", "/v1/streams/{stream}", "/grafana/",
                  "/grafana/metrics", "/grafana/metric-payload-options", "/grafana/query", "/grafana/variable",
                  "/grafana/tag-keys", "/grafana/tag-values", "/", "/assets/{file}", "/healthz", "/readyz", "/metrics", "/v1/cluster",
                  "/query-stream", "/query", "/ksql", "/close-query", "/info", "/healthcheck"):
        assert route in paths, route
    for path, ops in doc["paths"].items():
        concrete = path.replace("{table}", "gaming_games_table").replace("{stream}", "gaming_real_time_intelligence_platform?limit=1") \
            .replace("{file}", "app.js")
        method = "GET" if "get" in ops else "POST"
        r = d.request(concrete, method=method, timeout=10)
        assert r.status != 404, (path, r)
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "accessToken"}


def test_compose_runs_grafana_and_prometheus_with_keys():
    doc = yaml.safe_load(open(COMPOSE))
    services = doc["services"]
    assert {"gamingd", "grafana", "prometheus"} <= set(services)
    assert services["gamingd"]["environment"]["GAMINGD_API_KEYS"]
    assert services["grafana"]["environment"]["GF_INSTALL_PLUGINS"] == "simpod-json-datasource"
    ds = yaml.safe_load(open(os.path.join(REPO_ROOT, "docker", "grafana", "provisioning", "datasources", "gamingd.yaml")))
    src = ds["datasources"][0]
    assert src["type"] == "simpod-json-datasource" and src["url"].endswith("/grafana")
    assert src["secureJsonData"]["httpHeaderValue1"].startswith("Bearer ")
    dash = json.load(open(os.path.join(REPO_ROOT, "docker", "grafana", "dashboards", "gaming-intelligence.json")))
    assert all(p["datasource"]["uid"] == src["uid"] for p in dash["panels"])


def test_docker_files_set_only_settings_gamingd_has():
    """Every GAMINGD_* variable the compose files set for gamingd is one it reads (a
    misspelt one would be ignored silently), and the partitioned recipe runs
    its instances partitioned, each announcing the URL it is reached at."""
    known = set(re.findall(r"GAMINGD_[A-Z_]+", help_text()))
    docker = os.path.join(REPO_ROOT, "docker")
    for name in sorted(n for n in os.listdir(docker) if n.endswith(".yaml")):
        for service, spec in yaml.safe_load(open(os.path.join(docker, name)))["services"].items():
            if not service.startswith("gamingd"):
                continue  # others pass keys through GAMINGD_* names of their own
            unknown = {k for k in (spec.get("environment") or {}) if k.startswith("GAMINGD_")} - known
            assert not unknown, (name, service, unknown)
    services = yaml.safe_load(open(os.path.join(docker, "partitioned.yaml")))["services"]
    instances = [s for s in services if s.startswith("gamingd")]
    assert len(instances) == 3
    for s in instances:
        env = services[s]["environment"]
        assert env["GAMINGD_MODE"] == "partitioned" and env["GAMINGD_ADVERTISED_URL"] == "http://%s:8080" % s


def test_every_flag_and_variable_is_documented():
    """Each flag `gamingd --help` lists is in docs/flags.md, and so is its
    environment variable unless the flag's name gives it (--data-dir is
    GAMINGD_DATA_DIR, as the document says)."""
    doc = open(FLAGS_DOC).read()
    documented = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[A-Z])\b", doc))
    flags = 0
    for line in help_text().splitlines():
        m = re.match(r"\s+(--[a-z][a-z-]*|-[A-Z])\b", line)
        if not m:
            continue
        flags += 1
        flag = m.group(1)
        assert flag in documented, flag
        var = re.search(r"\[(GAMINGD_[A-Z_]+)\]", line)
        if var and var.group(1) != "GAMINGD_" + flag.lstrip("-").replace("-", "_").upper():
            assert var.group(1) in doc, (flag, var.group(1))
    assert flags > 30  # the help text was read, not an error message


def headings(path):
    """The anchors GitHub makes of a Markdown file's headings (outside code blocks)."""
    anchors, fenced = set(), False
    for line in open(path):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_documents_link_to_what_exists():
    docs = sorted(os.path.join(DOCS, n) for n in os.listdir(DOCS) if n.endswith(".md"))
    assert {"flags.md", "http-api.md", "sql.md", "grafana.md", "scaling.md", "figures.md", "testing.md"} <= \
        {os.path.basename(d) for d in docs}
    linked_from_readme = set()
    for path in [README] + docs:
        text = re.sub(r"```.*?```", "", open(path).read(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            file, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            assert os.path.exists(dest), (path, target)
            if anchor:
                assert anchor in headings(dest), (path, target)
            if path == README:
                linked_from_readme.add(dest)
    assert set(docs) <= linked_from_readme


def test_every_function_is_documented():
    """Each row of store/func.c's table -- {"NAME", "ALIAS" or NULL, "CATEGORY", ... --
    is a row `NAME(...) -> ...` of docs/sql.md's function list, its alias named with it."""
    table = open(os.path.join(REPO_ROOT, "store", "func.c")).read()
    rows = re.findall(r'^\s*\{"([A-Z0-9_]+)", (?:"([A-Z0-9_]+)"|NULL), "[A-Z ]+",', table, flags=re.M)
    assert len(rows) > 50
    doc = open(os.path.join(DOCS, "sql.md")).read()
    listed = dict(re.findall(r"^\| `([A-Z0-9_]+)\([^`]*\) -> [^`]+`(?: \(also `([A-Z0-9_]+)`\))? \|", doc, flags=re.M))
    assert {name: alias for name, alias in rows} == listed

