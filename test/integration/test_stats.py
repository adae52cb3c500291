"""Statistics of issue 17: latency histograms (Prometheus buckets, p50/p95/p99
columns), transaction time of autocommit statements, statement statistics per
tenant (SHOW QUERIES, RESET QUERIES, the memory bound, SHOW MEM), the slow
statement log and SHOW TOP TENANTS."""

import os
import re
import threading
import time

import psycopg

import pgt
from test_admin import metric, psql_error, psql_rows, row_for, scrape
from test_admin import start as admin_start


def start(pgtenant, globals_=None, **kw):
    """test_admin's pgtenant with statement statistics on (they are off by default)."""
    g = {"query_stats": "yes"}
    g.update(globals_ or {})
    return admin_start(pgtenant, g, **kw)

TABLE_SQL = [
    "drop table if exists t",
    "create table t (id int primary key, v text)",
    "insert into t select g, 'v' || g from generate_series(1, 10) g",
]


def setup_tables(pg, dbnames=("acme", "globex")):
    for db in dbnames:
        with pg.connect(dbname=db, user="app", password=pgt.APP_PASSWORD) as c:
            for s in TABLE_SQL:
                c.execute(s)


def simple(p, sqls, dbname="acme", user="app"):
    """Runs each statement through the simple protocol; returns the last rows."""
    c = p.raw(user=user, dbname=dbname)
    try:
        rows = None
        for s in sqls:
            rows = c.query(s)
        return rows
    finally:
        c.close()


def queries(p, tenant=None):
    _, rows = psql_rows(p, "SHOW QUERIES" + (f" {tenant}" if tenant else ""))
    return rows


def buckets(fams, family, **labels):
    """(le, cumulative count) of one histogram series, in order."""
    out = [(float(lab["le"]), v) for n, lab, v in fams[family]["samples"]
           if n == family + "_bucket" and all(lab.get(k) == w for k, w in labels.items())]
    assert out, f"no buckets of {family}{labels}"
    return out


def count_le(bs, bound):
    return [v for le, v in bs if abs(le - bound) < 1e-9][0]


# ---------------------------------------------------------------- histograms

def test_histogram_buckets_add_up_and_quantiles_land_in_the_sleep_bucket(pgtenant):
    p = start(pgtenant)
    simple(p, ["select 1"] * 20 + ["select pg_sleep(0.25)"] * 5)
    fams = scrape(p)
    for family in ("pgtenant_query_duration_seconds", "pgtenant_xact_duration_seconds",
                   "pgtenant_wait_duration_seconds"):
        assert fams[family]["type"] == "histogram"
        bs = buckets(fams, family, tenant="acme")
        assert len(bs) == 19, bs  # 100 µs … 30 s in 1-2-5 steps, then +Inf
        assert [le for le, _ in bs[:3]] == [0.0001, 0.0002, 0.0005]
        assert bs[-2][0] == 30 and bs[-1][0] == float("inf")
        counts = [v for _, v in bs]
        assert counts == sorted(counts), f"{family} buckets must be cumulative: {bs}"
        total = metric(fams, family, family + "_count", tenant="acme")
        assert counts[-1] == total
    q = buckets(fams, "pgtenant_query_duration_seconds", tenant="acme")
    assert metric(fams, "pgtenant_query_duration_seconds",
                  "pgtenant_query_duration_seconds_count", tenant="acme") == 25
    # select 1 is well under 200 ms; pg_sleep(0.25) lands in (0.2, 0.5]
    assert count_le(q, 0.2) == 20, q
    assert count_le(q, 0.5) == 25, q
    qsum = metric(fams, "pgtenant_query_duration_seconds",
                  "pgtenant_query_duration_seconds_sum", tenant="acme")
    assert 1.25 <= qsum < 10, qsum
    x = buckets(fams, "pgtenant_xact_duration_seconds", tenant="acme")
    assert count_le(x, 0.5) - count_le(x, 0.2) == 5, x
    # per backend too
    bq = buckets(fams, "pgtenant_backend_query_duration_seconds", backend="main")
    assert bq[-1][1] == 25 and count_le(bq, 0.5) - count_le(bq, 0.2) == 5, bq

    _, trows = psql_rows(p, "SHOW TENANTS")
    acme = row_for(trows, "tenant", "acme")
    assert float(acme["p50_ms"]) <= 200, acme
    assert 200 <= float(acme["p95_ms"]) <= 500, acme
    assert 200 <= float(acme["p99_ms"]) <= 500, acme
    assert float(acme["p95_ms"]) <= float(acme["p99_ms"])
    _, srows = psql_rows(p, "SHOW STATS")
    st = row_for(srows, "tenant", "acme")
    for col in ("p50_ms", "p95_ms", "p99_ms", "xact_p50_ms", "xact_p95_ms", "xact_p99_ms",
                "wait_p50_ms", "wait_p95_ms", "wait_p99_ms"):
        assert col in st, col
    assert 200 <= float(st["p99_ms"]) <= 500, st
    assert 200 <= float(st["xact_p99_ms"]) <= 500, st
    globex = row_for(srows, "tenant", "globex")
    assert float(globex["p99_ms"]) == 0  # no traffic, no quantile


def test_histograms_past_metrics_tenant_limit_add_up_under_other(pgtenant):
    p = start(pgtenant, {"metrics_tenant_limit": 1})
    simple(p, ["select 1"] * 3)  # acme: the most active, keeps its series
    simple(p, ["select 1"], dbname="globex")
    fams = scrape(p)
    tenants = {lab.get("tenant") for _, lab, _ in
               fams["pgtenant_query_duration_seconds"]["samples"]}
    assert tenants == {"acme", "_other"}, tenants
    assert buckets(fams, "pgtenant_query_duration_seconds", tenant="acme")[-1][1] == 3
    other = buckets(fams, "pgtenant_query_duration_seconds", tenant="_other")
    assert other[-1][1] == 1 and count_le(other, 0.2) == 1, other
    assert metric(fams, "pgtenant_xact_duration_seconds", "pgtenant_xact_duration_seconds_count",
                  tenant="_other") == 1


def test_autocommit_transactions_count_in_xact_time(pgtenant):
    p = start(pgtenant)
    with p.connect(dbname="acme") as conn:  # autocommit: each statement its own transaction
        for _ in range(3):
            conn.execute("select pg_sleep(0.1)")
    _, srows = psql_rows(p, "SHOW STATS")
    st = row_for(srows, "tenant", "acme")
    assert int(st["total_xact_count"]) == 3, st
    assert int(st["total_xact_time"]) >= 300000, st
    assert int(st["total_xact_time"]) >= int(st["total_query_time"]) - 1000, st
    with p.connect(dbname="acme", autocommit=False) as conn:  # and an explicit one
        conn.execute("select pg_sleep(0.1)")
        conn.execute("select pg_sleep(0.1)")
        conn.commit()
    st = row_for(psql_rows(p, "SHOW STATS")[1], "tenant", "acme")
    assert int(st["total_xact_count"]) == 4, st
    assert int(st["total_xact_time"]) >= 500000, st
    fams = scrape(p)
    assert metric(fams, "pgtenant_xact_duration_seconds", "pgtenant_xact_duration_seconds_count",
                  tenant="acme") == 4


# ---------------------------------------------------------------- SHOW QUERIES

def test_show_queries_groups_literals_and_separates_tenants(pgtenant, pg):
    setup_tables(pg)
    p = start(pgtenant)
    simple(p, ["select * from t where id = 1", "SELECT *  FROM t\n WHERE id = 2 -- two"])
    with p.connect(dbname="acme") as conn:  # extended protocol: $1 is folded the same way
        assert conn.execute("select * from t where id = %s", [3]).fetchone()[0] == 3
    simple(p, ["select * from t where id = 4", "select * from t where id = 5",
               "select * from t where id = 6"], dbname="globex")
    with p.connect(dbname="globex") as conn:
        try:
            conn.execute("select * from no_such_table where x = 1")
        except psycopg.errors.UndefinedTable:
            pass

    acme = queries(p, "acme")
    assert {r["tenant"] for r in acme} == {"acme"}
    r = row_for(acme, "query", "select * from t where id = ?")
    assert int(r["calls"]) == 3, acme
    assert int(r["rows"]) == 3, acme
    assert int(r["errors"]) == 0
    assert float(r["total_ms"]) >= float(r["max_ms"]) >= float(r["mean_ms"]) > 0
    globex = queries(p, "globex")
    g = row_for(globex, "query", "select * from t where id = ?")
    assert int(g["calls"]) == 3 and int(g["rows"]) == 3, globex
    bad = row_for(globex, "query", "select * from no_such_table where x = ?")
    assert int(bad["errors"]) == 1 and int(bad["calls"]) == 1, globex
    every = queries(p)
    assert {r["tenant"] for r in every} == {"acme", "globex"}
    assert len(every) == len(acme) + len(globex)
    # sorted by total time, heaviest first
    simple(p, ["select pg_sleep(0.2)"])
    acme = queries(p, "acme")
    assert acme[0]["query"] == "select pg_sleep(?)", acme
    totals = [float(r["total_ms"]) for r in acme]
    assert totals == sorted(totals, reverse=True)
    assert psql_error(p, "SHOW QUERIES nosuch")[0] == "42704"


def test_prepared_statements_are_normalised_once_and_counted_per_execute(pgtenant, pg):
    setup_tables(pg)
    p = start(pgtenant)
    with p.connect(dbname="acme", prepare_threshold=0) as conn:  # named statements
        for i in range(1, 6):
            assert conn.execute("select v from t where id = %s", [i]).fetchone()[0] == f"v{i}"
    r = row_for(queries(p, "acme"), "query", "select v from t where id = ?")
    assert int(r["calls"]) == 5 and int(r["rows"]) == 5, r


def test_show_queries_memory_bound_with_10000_distinct_statements(pgtenant):
    bound = 50
    p = start(pgtenant, {"query_stats_max": bound, "query_stats_memory": "20kB"})
    simple(p, ["select pg_sleep(0.05)"] * 3)
    c = p.raw(dbname="acme")
    try:
        batch = 500
        for start_i in range(0, 10000, batch):
            c.send(b"".join(pgt.msg(b"Q", f"select {i} as c{i}".encode() + b"\0")
                            for i in range(start_i, start_i + batch)))
            seen = 0
            while seen < batch:
                kind, _ = c.recv_msg()
                assert kind != b"E"
                if kind == b"Z":
                    seen += 1
    finally:
        c.close()
    simple(p, ["select 1"], dbname="globex")
    rows = queries(p, "acme")
    assert 0 < len(rows) <= bound, len(rows)
    # the heavy statement survives 10,000 light ones (space-saving keeps the heaviest)
    heavy = row_for(rows, "query", "select pg_sleep(?)")
    assert int(heavy["calls"]) == 3
    assert len(queries(p, "globex")) == 1
    _, mem = psql_rows(p, "SHOW MEM")
    qs = row_for(mem, "name", "query_stats")
    assert 0 < int(qs["used"]) <= bound + 8, qs  # acme's 50 and globex's first table
    assert int(qs["memtotal"]) <= 20 * 1024, qs
    assert int(row_for(mem, "name", "query_stats_tables")["used"]) == 2
    assert int(row_for(mem, "name", "query_stats_limit")["memtotal"]) == 20 * 1024


def test_reset_queries_one_tenant_then_all(pgtenant):
    p = start(pgtenant)
    simple(p, ["select 1", "select 1 + 1"])
    simple(p, ["select 2"], dbname="globex")
    assert len(queries(p, "acme")) == 2 and len(queries(p, "globex")) == 1
    _, rows = psql_rows(p, "RESET QUERIES acme; SHOW QUERIES")
    assert queries(p, "acme") == []
    assert len(queries(p, "globex")) == 1
    psql_rows(p, "RESET QUERIES; SHOW VERSION")
    assert queries(p) == []
    simple(p, ["select 3"])  # counting goes on after a reset
    assert int(row_for(queries(p, "acme"), "query", "select ?")["calls"]) == 1
    assert psql_error(p, "RESET QUERIES nosuch")[0] == "42704"
    assert psql_error(p, "RESET QUERIES", user="watcher")[0] == "42501"


def test_query_stats_off_keeps_histograms_but_no_statements(pgtenant):
    p = start(pgtenant, {"query_stats": "off"})
    simple(p, ["select 1", "select 2"])
    assert queries(p) == []
    fams = scrape(p)
    assert metric(fams, "pgtenant_query_duration_seconds",
                  "pgtenant_query_duration_seconds_count", tenant="acme") == 2


# ---------------------------------------------------------------- slow log

def test_slow_log_names_the_tenant_the_statement_and_the_times(pgtenant):
    p = start(pgtenant, tenants={
        "globex": {"mode": "database", "backend": "main", "dbname": "globex",
                   "log_min_duration": "100ms"}})
    simple(p, ["select pg_sleep(0.2)", "select 1"], dbname="globex")
    simple(p, ["select pg_sleep(0.2)"], dbname="acme")  # global: off
    pgt.wait_for(lambda: "slow statement" in p.log(), timeout=10, what="the slow log line")
    lines = [ln for ln in p.log().splitlines() if "slow statement" in ln]
    assert len(lines) == 1, lines
    line = lines[0]
    assert "tenant globex" in line and "select pg_sleep(?)" in line, line
    m = re.search(r"([0-9.]+) ms \(wait ([0-9.]+) ms, server ([0-9.]+) ms\)", line)
    assert m, line
    total, wait, server = map(float, m.groups())
    assert 200 <= server < 5000 and 0 <= wait < 1000 and total >= server, line
    # the global setting, changed on the console, applies to acme now
    psql_rows(p, "SET log_min_duration = 150ms; SHOW VERSION")
    simple(p, ["select pg_sleep(0.2)", "select 1"], dbname="acme")
    pgt.wait_for(lambda: "slow statement: tenant acme" in p.log(), timeout=10,
                 what="acme's slow log line")
    assert len([ln for ln in p.log().splitlines() if "slow statement" in ln]) == 2


def test_log_min_duration_is_checked_in_the_config(pgtenant):
    for bad in ("banana", "-5"):
        q = pgtenant({"log_min_duration": bad}, start=False)
        res = pgt.run([pgt.PGTENANT_BIN, "--check", q.ini])
        assert res.returncode == 1 and "log_min_duration" in res.stdout + res.stderr, res
    ok = pgtenant({"log_min_duration": "-1", "query_stats_max": 10}, start=False)
    res = pgt.run([pgt.PGTENANT_BIN, "--check", ok.ini])
    assert res.returncode == 0, res.stdout + res.stderr


# ---------------------------------------------------------------- SHOW TOP TENANTS

def test_top_tenants_orders_by_query_time_and_by_wait_time(pgtenant):
    p = start(pgtenant, tenants={
        "globex": {"mode": "database", "backend": "main", "dbname": "globex", "pool_size": 1}})
    simple(p, ["select pg_sleep(0.4)"], dbname="acme")
    simple(p, ["select pg_sleep(0.1)"], dbname="globex")
    # globex clients wait: one holds its only connection for 0.5 s
    holder = p.connect(dbname="globex", autocommit=False)
    holder.execute("select 1")
    waiter = threading.Thread(target=simple, args=(p, ["select 1"]), kwargs={"dbname": "globex"})
    waiter.start()
    time.sleep(0.5)
    holder.commit()
    holder.close()
    waiter.join(20)
    assert not waiter.is_alive()

    _, rows = psql_rows(p, "SHOW TOP TENANTS")
    assert set(rows[0]) >= {"ranking", "rank", "tenant", "time_ms", "count", "avg_ms"}

    def ranking(name):
        return [r["tenant"] for r in sorted((r for r in rows if r["ranking"] == name),
                                            key=lambda r: int(r["rank"]))]

    assert ranking("query_time_total")[:2] == ["acme", "globex"], rows
    assert ranking("query_time_1min")[:2] == ["acme", "globex"], rows
    assert ranking("wait_time_total")[0] == "globex", rows
    assert ranking("wait_time_1min")[0] == "globex", rows
    w = [r for r in rows if r["ranking"] == "wait_time_total" and r["tenant"] == "globex"][0]
    assert float(w["time_ms"]) >= 300, w


def test_busy_clients_keep_their_buffers_idle_ones_hand_them_back(pgtenant):
    """A client keeps its buffer blocks for a second after its last transaction (no fetch
    and return of two blocks per transaction), then hands them back: idle clients hold
    none (conn.h, SHOW MEM's client_buffers)."""
    p = admin_start(pgtenant)
    conns = [p.raw(user="app", dbname="acme") for _ in range(10)]
    try:
        for c in conns:
            assert c.query("select 1") == [["1"]]
        _, mem = psql_rows(p, "SHOW MEM")
        warm = int(row_for(mem, "name", "client_buffers")["memtotal"])
        assert warm >= 10 * 2 * 16384, mem
        deadline = time.time() + 10
        while True:
            time.sleep(0.5)
            _, mem = psql_rows(p, "SHOW MEM")
            cold = int(row_for(mem, "name", "client_buffers")["memtotal"])
            # only the console connection asking holds blocks now
            if cold <= 2 * 16384 or time.time() > deadline:
                break
        assert cold <= 2 * 16384, (warm, cold)
        for c in conns:  # and they come back for the next transaction
            assert c.query("select 2") == [["2"]]
    finally:
        for c in conns:
            c.close()
