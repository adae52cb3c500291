"""etc/grafana-dashboard.json (README, "Watching tenants"): valid JSON that
Grafana can import, and every pgtenant metric its queries use is one a
/metrics scrape really has — so a renamed family cannot leave the dashboard
silently empty. The histograms' _bucket series are allowed by name alone:
their buckets are the histograms' own business."""

import json
import os
import re
import urllib.request

import pgt

DASHBOARD = os.path.join(pgt.REPO, "etc", "grafana-dashboard.json")
METRIC_RE = re.compile(r"\bpgtenant_[a-z0-9_]+")
HISTOGRAMS = ("pgtenant_query_duration_seconds", "pgtenant_wait_duration_seconds")


def load():
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def exprs(dash):
    """Every PromQL expression: panel targets and template variable queries."""
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append(t["expr"])
    for v in dash["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            out.append(q["query"])
    return out


def test_dashboard_is_valid_json_grafana_can_import():
    dash = load()
    assert dash["title"] == "pgtenant" and dash["uid"] and dash["schemaVersion"] >= 30
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instance", "tenant"} <= names
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
            assert t["expr"].count("{") == t["expr"].count("}"), t["expr"]
    # what the issue asks the dashboard to show
    text = "\n".join(exprs(dash))
    assert "rate(pgtenant_queries_total" in text  # per-tenant QPS
    assert "histogram_quantile(0.95, sum by (tenant, le) (rate(" \
           "pgtenant_query_duration_seconds_bucket" in text  # p95
    assert "pgtenant_wait_duration_seconds_bucket" in text  # waits
    assert 'pgtenant_clients{instance=~"$instance", tenant=~"$tenant", state="waiting"}' in text
    assert 'pgtenant_servers{instance=~"$instance", state="active"}' in text  # saturation
    assert "pgtenant_backend_up" in text and "pgtenant_replica_lag_seconds" in text


def test_every_metric_the_dashboard_uses_is_in_a_metrics_scrape(pgtenant):
    port = pgt.free_port()
    p = pgtenant({"metrics_listen": f"127.0.0.1:{port}"})
    with p.connect(dbname="acme") as conn:
        conn.execute("select 1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        body = r.read().decode()
    scraped = set()
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            scraped.add(line.split()[2])
        elif line and not line.startswith("#"):
            scraped.add(re.split(r"[{ ]", line, 1)[0])
    used = set()
    for e in exprs(load()):
        used |= set(METRIC_RE.findall(e))
    assert len(used) >= 15, used
    allowed = {h + "_bucket" for h in HISTOGRAMS}
    missing = sorted(m for m in used if m not in scraped and m not in allowed)
    assert not missing, f"the dashboard uses metrics /metrics does not have: {missing}"
