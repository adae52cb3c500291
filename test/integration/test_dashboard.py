"""The live page on metrics_listen (issue 17; man pgtenant-admin(7), LIVE PAGE):
GET /tenants.json (the numbers, built by pgtenant) and GET / (one
self-contained HTML page that draws them), loaded in a real browser —
Debian's chromium, headless — whose rendered DOM must show the tenants the
test created with their numbers.
"""

import html.parser
import json
import os
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

import pgt

ADMIN = "admin"
ADMIN_PASS = "adminpass"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def start(pgtenant, globals_=None, **kw):
    users = dict(pgt.DEFAULT_USERS)
    users[ADMIN] = ADMIN_PASS
    g = {"admin_users": ADMIN, "metrics_listen": f"127.0.0.1:{pgt.free_port()}",
         "health_check_period": "1s"}
    g.update(globals_ or {})
    p = pgtenant(g, users=users, **kw)
    p.metrics_port = int(g["metrics_listen"].rsplit(":", 1)[1])
    return p


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def tenants_json(p):
    status, headers, body = http_get(p.metrics_port, "/tenants.json")
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json"), headers
    return json.loads(body.decode("utf-8"))  # strict: invalid UTF-8 or JSON raises


def run_queries(p, n, dbname):
    with p.connect(dbname=dbname) as conn:
        for i in range(n):
            assert conn.execute("select %s::int", [i]).fetchone()[0] == i


def by_name(doc):
    return {t["tenant"]: t for t in doc["tenants"]}


# ---------------------------------------------------------------- /tenants.json

TENANT_FIELDS = {"tenant", "mode", "backend", "state", "pool_size", "clients", "cl_active",
                 "cl_waiting", "cl_idle", "sv_active", "queries", "xacts", "query_time_us",
                 "wait_time_us", "waits", "avg_query_us", "avg_wait_us", "errors",
                 "query_timeouts", "state_failures", "refused", "auth_failures", "rate_limited",
                 "p95_ms"}


def test_tenants_json_lists_each_tenant_with_its_counters_and_backend_health(pgtenant):
    p = start(pgtenant)
    run_queries(p, 17, "acme")
    run_queries(p, 4, "globex")
    with p.connect(dbname="acme") as idle_client:
        idle_client.execute("select 1")
        pgt.wait_for(lambda: tenants_json(p)["backends"][0]["last_check_ms"], timeout=5,
                     what="the primary's first health check")
        doc = tenants_json(p)
        t = by_name(doc)
        assert set(t) == {"acme", "globex"}, doc
        for row in t.values():
            assert TENANT_FIELDS <= set(row), set(TENANT_FIELDS) - set(row)
        assert t["acme"]["queries"] == 18 and t["globex"]["queries"] == 4, doc
        assert t["acme"]["xacts"] == 18
        assert isinstance(t["acme"]["p95_ms"], float) and t["acme"]["p95_ms"] > 0, t["acme"]
        assert t["acme"]["clients"] == 1 and t["acme"]["cl_idle"] == 1, t["acme"]
        assert t["globex"]["clients"] == 0
        assert t["acme"]["mode"] == "database" and t["acme"]["backend"] == "main"
        assert t["acme"]["state"] == "active" and t["acme"]["errors"] == 0
        assert [r["tenant"] for r in doc["tenants"]] == ["acme", "globex"]  # most active first
        assert doc["tenants_total"] == 2 and doc["other"] is None
        assert abs(doc["time_ms"] / 1000 - time.time()) < 60
        (be,) = doc["backends"]
        assert be["backend"] == "main" and be["role"] == "primary", be
        assert be["state"] == "up" and be["port"] == p.pg.port and be["last_error"] is None, be


def test_tenants_json_keeps_the_most_active_within_metrics_tenant_limit(pgtenant):
    p = start(pgtenant, {"metrics_tenant_limit": 1},
              tenants={"initech": {"mode": "database", "backend": "main", "dbname": "appdb"}})
    run_queries(p, 5, "acme")
    run_queries(p, 2, "globex")
    run_queries(p, 3, "initech")
    doc = tenants_json(p)
    assert [t["tenant"] for t in doc["tenants"]] == ["acme"], doc
    assert doc["tenants_total"] == 3 and doc["tenant_limit"] == 1
    assert doc["other"]["tenants"] == 2 and doc["other"]["queries"] == 5, doc["other"]


def test_tenants_json_escapes_text_and_stays_valid_utf8(pgtenant):
    # a host no one can reach, with a quote, a backslash, a control character and
    # a byte that is no UTF-8: pgtenant must still answer strict JSON
    users = dict(pgt.DEFAULT_USERS)
    port = pgt.free_port()
    p = pgtenant({"metrics_listen": f"127.0.0.1:{port}"},
                 backends={"odd": {"host": 'we\\ird"h\x01stBADBYTE', "port": 1, "dbname": "x",
                                   "user": "app", "password": "x"}},
                 tenants={"oddt": {"mode": "database", "backend": "odd"}}, users=users,
                 start=False)
    with open(p.ini, "rb") as f:
        ini = f.read()
    with open(p.ini, "wb") as f:
        f.write(ini.replace(b"BADBYTE", b"\xff"))
    p.start()
    p.metrics_port = port
    doc = tenants_json(p)
    odd = [b for b in doc["backends"] if b["backend"] == "odd"]
    assert len(odd) == 1, doc["backends"]
    assert odd[0]["host"] == 'we\\ird"h\x01st\ufffd', odd[0]
    assert odd[0]["state"] in ("up", "down")
    assert "oddt" in by_name(doc)
    _, _, raw = http_get(port, "/tenants.json")
    assert b"\\u0001" in raw and b"\\ufffd" in raw and b'\\"' in raw, raw


def test_page_is_one_self_contained_html_document(pgtenant):
    p = start(pgtenant)
    status, headers, body = http_get(p.metrics_port, "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html"), headers
    text = body.decode("utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "tenants.json" in text
    # no external assets: no src/href to anything, only the inline script and style
    assert " src=" not in text and "href=" not in text and "@import" not in text, text
    csp = headers.get("Content-Security-Policy", "")
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp, csp
    # /metrics and /healthz are still there, and other paths still 404
    assert http_get(p.metrics_port, "/metrics")[0] == 200
    assert http_get(p.metrics_port, "/healthz")[0] == 200
    assert http_get(p.metrics_port, "/index.html")[0] == 404


# ---------------------------------------------------------------- in a real browser

class DomTable(html.parser.HTMLParser):
    """Collects, from a dumped DOM, the cells of every <tr data-tenant> (by data-col),
    the rows of the backends table, and the tenants named in the chart's legend."""

    def __init__(self):
        super().__init__()
        self.rows = {}
        self.backends = []
        self.legend = []
        self._row = None
        self._col = None
        self._text = ""
        self._backend = None
        self._in_legend = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-tenant" in a:
            self._row = self.rows.setdefault(a["data-tenant"], {})
        elif tag == "tr" and "data-backend" in a:
            self._backend = {"backend": a["data-backend"], "role": a.get("data-role")}
            self.backends.append(self._backend)
        elif tag == "td" and "data-col" in a and (self._row is not None or self._backend):
            self._col = a["data-col"]
            self._text = ""
            if self._row is not None and "data-value" in a:
                self._row[self._col + ":value"] = a["data-value"]
        elif tag == "div" and a.get("id") == "legend":
            self._in_legend = 1
        elif tag == "span" and self._in_legend and "data-tenant" in a:
            self.legend.append(a["data-tenant"])

    def handle_data(self, data):
        if self._col:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "td" and self._col:
            if self._row is not None:
                self._row[self._col] = self._text.strip()
            elif self._backend is not None:
                self._backend[self._col] = self._text.strip()
            self._col = None
        elif tag == "tr":
            self._row = None
            self._backend = None
        elif tag == "div" and self._in_legend:
            self._in_legend = 0


def chromium_dom(url, budget_ms=6000):
    assert CHROMIUM, "chromium is not installed (scripts/deps.sh installs it)"
    profile = tempfile.mkdtemp(prefix="pgtenant-chromium-")
    try:
        res = pgt.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                       "--disable-dev-shm-usage", "--no-first-run", f"--user-data-dir={profile}",
                       f"--virtual-time-budget={budget_ms}", "--dump-dom", url], timeout=90)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "<html" in res.stdout, res.stdout[:2000] + res.stderr[-2000:]
    return res.stdout


def test_page_in_headless_chromium_shows_the_tenants_with_their_numbers(pgtenant):
    p = start(pgtenant)
    run_queries(p, 25, "acme")
    run_queries(p, 3, "globex")
    # acme keeps working while the browser reads, so its QPS is above zero
    stop = threading.Event()
    done = [0]

    def load():
        with p.connect(dbname="acme") as conn:
            while not stop.is_set():
                conn.execute("select 1")
                done[0] += 1
                time.sleep(0.002)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        pgt.wait_for(lambda: done[0] > 20, timeout=10, what="the load to start")
        dom = chromium_dom(f"http://127.0.0.1:{p.metrics_port}/?every=0.5")
    finally:
        stop.set()
        worker.join(10)
    parsed = DomTable()
    parsed.feed(dom)
    rows = parsed.rows
    assert set(rows) == {"acme", "globex"}, dom[:3000]
    acme, globex = rows["acme"], rows["globex"]
    # the numbers: globex ran exactly 3 statements; acme its 25 and some of the load
    assert globex["queries:value"] == "3" and globex["queries"] == "3", globex
    assert int(acme["queries:value"]) >= 25 + 20, acme
    assert acme["queries"].replace(",", "") == acme["queries:value"]
    assert acme["mode"] == "database" and acme["state"] == "active", acme
    assert acme["clients:value"] == "1" and globex["clients:value"] == "0"
    assert acme["errors:value"] == "0"
    # QPS from successive reads: a number for both, above zero for the busy one
    assert float(acme["qps"].replace(",", "")) > 0, acme
    assert float(globex["qps"]) == 0.0, globex
    # p95 from the tenant's query histogram: a number for both, the busy one's above 0
    assert float(globex["p95_ms"]) >= 0, globex
    assert float(acme["p95_ms"].replace(",", "")) > 0, acme
    # the chart names the busy tenant; the backends table shows the primary up
    assert "acme" in parsed.legend, parsed.legend
    prim = [b for b in parsed.backends if b["role"] == "primary"]
    assert prim and prim[0]["backend"] == "main" and prim[0]["state"] == "up", parsed.backends
