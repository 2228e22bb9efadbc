"""The documents that ship with gamingd say what the server does: the
OpenAPI document lists every route the server answers, the compose file
runs Grafana and Prometheus against gamingd with keys, and the compose files
set only settings gamingd has."""

import json
import os
import re
import subprocess

import yaml

from conftest import REPO_ROOT

OPENAPI = os.path.join(REPO_ROOT, "schemas", "openapi.yaml")
COMPOSE = os.path.join(REPO_ROOT, "docker", "compose.yaml")


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
    helptext = subprocess.run([os.environ["GAMINGD_BIN"], "--help"], capture_output=True, text=True).stdout
    known = set(re.findall(r"GAMINGD_[A-Z_]+", helptext))
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
