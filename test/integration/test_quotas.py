"""Per-tenant quotas and timeouts (SPEC §2 [tenant], §4 pools and hand-out,
§8): pool_size, max_client_conn, fair and weighted hand-out, reserved_conns,
rate_limit, query_timeout, query_wait_timeout, idle_transaction_timeout and
client_idle_timeout."""

import statistics
import threading
import time

import psycopg
import psycopg.errors
import pytest

import pgt

ADMIN, ADMIN_PASS = "admin", "adminpass"


# ---------------------------------------------------------------- helpers

backend = pgt.backend_keys  # [backend main]: the session's PostgreSQL, with overrides


def schema_tenant(name, **kw):
    t = {"mode": "schema", "backend": "main", "schema": f"q_{name}"}
    t.update(kw)
    return t


@pytest.fixture
def schemas(pg):
    """make(names): fresh schemas q_<name> in appdb, each with a table `orders`."""
    made = []

    def make(names):
        with pg.connect(dbname="appdb") as c:
            with c.transaction():
                for n in names:
                    s = f"q_{n}"
                    c.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
                    c.execute(f"CREATE SCHEMA {s}")
                    c.execute(f"CREATE TABLE {s}.orders (id bigserial PRIMARY KEY, item text)")
                    c.execute(f"GRANT USAGE ON SCHEMA {s} TO app")
                    c.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA {s} TO app")
                    c.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA {s} TO app")
                    made.append(s)

    yield make
    with pg.connect(dbname="appdb") as c:
        for s in made:
            c.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")


def start(pgtenant, pg, tenants, pool_size=10, globals_=None):
    users = dict(pgt.DEFAULT_USERS)
    users[ADMIN] = ADMIN_PASS
    g = {"admin_users": ADMIN, "tenant_pool_size": pool_size}
    g.update(globals_ or {})
    t = {"acme": None, "globex": None}
    t.update(tenants)
    return pgtenant(g, backends={"main": backend(pg, pool_size=pool_size)}, tenants=t,
                    users=users)


def show_tenants(p):
    """SHOW TENANTS on the console, as {tenant: {column: value}}."""
    with p.raw(user=ADMIN, dbname="pgtenant", password=ADMIN_PASS) as c:
        return {r["tenant"]: r for r in c.query_dicts("SHOW TENANTS")}


def active_sampler(pg, marker):
    """Samples in a thread how many server backends are running a query that
    carries marker; .max is the highest count seen."""
    return pgt.PgStatSampler(pg, "select count(*) from pg_stat_activity where state = 'active' "
                             "and pid <> pg_backend_pid() and position(%s in query) > 0",
                             [marker], period=0.03)


def run_threads(targets, timeout=90):
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "some client threads did not finish"


def sqlstate_of(exc):
    return getattr(getattr(exc, "diag", None), "sqlstate", None)


# ---------------------------------------------------------------- pool_size


def test_tenant_pool_size_caps_its_server_connections_while_others_still_run(
        pg, pgtenant, schemas):
    schemas(["small", "other"])
    p = start(pgtenant, pg, {"small": schema_tenant("small", pool_size=3),
                             "other": schema_tenant("other")}, pool_size=10)
    problems = []
    other_lat = []
    lock = threading.Lock()
    small_done = threading.Event()

    def small(cid):
        try:
            with p.connect(dbname="small") as conn:
                for _ in range(3):
                    conn.execute("select pg_sleep(0.2) /* q-small */")
        except Exception as e:
            problems.append(f"small {cid}: {e}")

    def other():
        try:
            with p.connect(dbname="other") as conn:
                time.sleep(0.3)
                while not small_done.is_set():
                    t0 = time.monotonic()
                    conn.execute("select 1 /* q-other */")
                    with lock:
                        other_lat.append(time.monotonic() - t0)
                    time.sleep(0.02)
        except Exception as e:
            problems.append(f"other: {e}")

    t_other = threading.Thread(target=other, daemon=True)
    t_other.start()
    t0 = time.monotonic()
    with active_sampler(pg, "q-small") as sampler:
        run_threads([lambda i=i: small(i) for i in range(20)])
    elapsed = time.monotonic() - t0
    small_done.set()
    t_other.join(10)
    assert not problems, problems[:10]
    assert sampler.error is None, sampler.error
    print(f"\npool_size 3: 60 x pg_sleep(0.2) took {elapsed:.2f}s, max concurrent "
          f"{sampler.max}; other tenant: {len(other_lat)} queries, "
          f"max latency {max(other_lat) * 1000:.1f} ms")
    assert 1 <= sampler.max <= 3, f"tenant with pool_size 3 ran {sampler.max} queries at once"
    assert elapsed >= 3.5, f"60 x 0.2 s over at most 3 connections cannot take {elapsed:.2f}s"
    assert len(other_lat) >= 20, "the other tenant's queries did not run meanwhile"
    assert max(other_lat) < 1.0, f"other tenant waited {max(other_lat):.2f}s for a query"


# ---------------------------------------------------------------- max_client_conn


def test_tenant_max_client_conn_refuses_the_sixth_client_with_53300(pg, pgtenant, schemas):
    schemas(["capped", "other"])
    p = start(pgtenant, pg, {"capped": schema_tenant("capped", max_client_conn=5),
                             "other": schema_tenant("other")})
    conns = [p.connect(dbname="capped") for _ in range(5)]
    try:
        for c in conns:
            assert c.execute("select 1").fetchone() == (1,)
        err = pgt.startup_error(p.port, "app", "capped", pgt.APP_PASSWORD)
        assert (err.severity, err.sqlstate) == ("FATAL", "53300"), err
        assert "capped" in err.message, err.message
        with pytest.raises(psycopg.OperationalError):
            p.connect(dbname="capped")
        others = [p.connect(dbname="other") for _ in range(6)]
        for c in others:
            assert c.execute("select current_schemas(false)::text").fetchone() == \
                ("{q_other,public}",)
            c.close()
        conns.pop().close()

        def sixth():
            try:
                return p.connect(dbname="capped")
            except psycopg.OperationalError:
                return None
        c = pgt.wait_for(sixth, timeout=5, what="a free client slot after a close")
        conns.append(c)
        assert c.execute("select 1").fetchone() == (1,)
    finally:
        for c in conns:
            c.close()


# ---------------------------------------------------------------- fairness


def test_quiet_tenant_keeps_its_latency_next_to_a_noisy_tenant(pg, pgtenant, schemas):
    schemas(["noisy", "quiet"])
    p = start(pgtenant, pg, {"noisy": schema_tenant("noisy"), "quiet": schema_tenant("quiet")},
              pool_size=8)

    def quiet_latencies(duration, stop=None):
        lat, lock = [], threading.Lock()

        def one():
            with p.connect(dbname="quiet") as conn:
                end = time.monotonic() + duration
                while time.monotonic() < end:
                    t0 = time.monotonic()
                    conn.execute("select pg_sleep(0.01)")
                    with lock:
                        lat.append(time.monotonic() - t0)
        run_threads([one, one])
        return lat

    alone = quiet_latencies(2.5)
    stop = threading.Event()
    noisy_count = [0]
    problems = []

    def noisy():
        try:
            with p.connect(dbname="noisy") as conn:
                while not stop.is_set():
                    conn.execute("select pg_sleep(0.01)")
                    noisy_count[0] += 1
        except Exception as e:
            problems.append(str(e))

    threads = [threading.Thread(target=noisy, daemon=True) for _ in range(40)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    n0, t0 = noisy_count[0], time.monotonic()
    try:
        together = quiet_latencies(4.0)
    finally:
        noisy_tps = (noisy_count[0] - n0) / (time.monotonic() - t0)
        stop.set()
        for t in threads:
            t.join(10)
    assert not problems, problems[:5]
    a_mean, t_mean = statistics.mean(alone), statistics.mean(together)
    t_p95 = sorted(together)[int(len(together) * 0.95)]
    print(f"\nquiet tenant (2 clients, pg_sleep(0.01)), pool of 8: alone mean "
          f"{a_mean * 1000:.1f} ms; with 40 noisy clients mean {t_mean * 1000:.1f} ms, p95 "
          f"{t_p95 * 1000:.1f} ms ({t_mean / a_mean:.2f}x); noisy tenant {noisy_tps:.0f} q/s")
    assert noisy_tps > 100, "the noisy tenant was not busy"
    bound = max(5 * a_mean, a_mean + 0.05)
    assert t_mean <= bound, (f"quiet tenant mean latency {t_mean * 1000:.1f} ms next to the noisy "
                             f"one, {a_mean * 1000:.1f} ms alone (bound {bound * 1000:.1f} ms)")


def test_heavier_weight_gets_more_of_a_contended_pool(pg, pgtenant, schemas):
    schemas(["heavy", "light"])
    p = start(pgtenant, pg, {"heavy": schema_tenant("heavy", weight=3),
                             "light": schema_tenant("light", weight=1)}, pool_size=2)
    counts = {"heavy": 0, "light": 0}
    lock = threading.Lock()
    problems = []
    go = threading.Event()
    end = [0.0]

    def client(tenant):
        try:
            with p.connect(dbname=tenant) as conn:
                go.wait()
                while time.monotonic() < end[0]:
                    conn.execute("select pg_sleep(0.02)")
                    with lock:
                        counts[tenant] += 1
        except Exception as e:
            problems.append(f"{tenant}: {e}")

    threads = [threading.Thread(target=client, args=(t,), daemon=True)
               for t in ["heavy", "light"] for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    end[0] = time.monotonic() + 5
    go.set()
    for t in threads:
        t.join(30)
    assert not problems, problems[:5]
    ratio = counts["heavy"] / max(counts["light"], 1)
    print(f"\nweight 3 vs 1 over a pool of 2, 8 clients each: {counts} (ratio {ratio:.2f})")
    assert counts["light"] > 0, "the light tenant starved"
    assert ratio >= 1.5, f"weight 3 vs 1 gave {counts}"


# ---------------------------------------------------------------- reserved_conns


def test_reserved_conns_stay_available_while_another_tenant_saturates_the_pool(
        pg, pgtenant, schemas):
    schemas(["hog", "vip"])
    p = start(pgtenant, pg, {"hog": schema_tenant("hog"),
                             "vip": schema_tenant("vip", reserved_conns=2)}, pool_size=4)
    problems = []

    def hog():
        try:
            with p.connect(dbname="hog") as conn:
                for _ in range(2):
                    conn.execute("select pg_sleep(1.5) /* q-hog */")
        except Exception as e:
            problems.append(f"hog: {e}")

    with active_sampler(pg, "q-hog") as sampler, pgt.ServerConnSampler(pg, "appdb") as total:
        threads = [threading.Thread(target=hog, daemon=True) for _ in range(10)]
        for t in threads:
            t.start()
        time.sleep(0.8)
        vip = [p.connect(dbname="vip", autocommit=False) for _ in range(2)]
        try:
            waits, pids = [], []
            for c in vip:
                t0 = time.monotonic()
                pids.append(c.execute("select pg_backend_pid()").fetchone()[0])
                waits.append(time.monotonic() - t0)
            for c in vip:
                c.commit()
        finally:
            for c in vip:
                c.close()
        for t in threads:
            t.join(60)
    assert not problems, problems[:5]
    print(f"\nreserved_conns 2: vip waited {[round(w * 1000) for w in waits]} ms for its two "
          f"connections; hog ran at most {sampler.max} queries at once; {total.max} server "
          "connections in all")
    assert len(set(pids)) == 2, "the two vip transactions should hold two server connections"
    assert max(waits) < 1.0, f"vip waited {max(waits):.2f}s for a reserved connection"
    assert sampler.max <= 2, (f"hog ran {sampler.max} queries at once in a pool of 4 with 2 "
                              "reserved for vip")


# ---------------------------------------------------------------- rate_limit


def test_rate_limit_slows_only_its_own_tenant(pg, pgtenant, schemas):
    schemas(["limited", "free"])
    p = start(pgtenant, pg, {"limited": schema_tenant("limited", rate_limit=50),
                             "free": schema_tenant("free")})
    took = {}
    problems = []

    def run(tenant, n=200):
        try:
            with p.connect(dbname=tenant) as conn:
                t0 = time.monotonic()
                for i in range(n):
                    assert conn.execute("select %s::int", [i]).fetchone() == (i,)
                took[tenant] = time.monotonic() - t0
        except Exception as e:
            problems.append(f"{tenant}: {e}")

    run_threads([lambda: run("limited"), lambda: run("free")])
    assert not problems, problems
    print(f"\nrate_limit 50/s: 200 statements took {took['limited']:.2f}s; "
          f"unlimited tenant {took['free']:.2f}s")
    assert took["limited"] >= 3.5, f"200 statements at 50/s took {took['limited']:.2f}s"
    assert took["limited"] < 15, f"200 statements at 50/s took {took['limited']:.2f}s"
    assert took["free"] < 2.0, f"the unlimited tenant took {took['free']:.2f}s for 200"
    stats = show_tenants(p)
    assert int(stats["limited"]["rate_limited"]) > 0, stats["limited"]
    assert int(stats["free"]["rate_limited"]) == 0, stats["free"]


# ---------------------------------------------------------------- timeouts


def test_query_timeout_cancels_with_57014_and_the_session_goes_on(pg, pgtenant, schemas):
    schemas(["slow"])
    p = start(pgtenant, pg, {"slow": schema_tenant("slow", query_timeout="500ms")})
    with p.connect(dbname="slow") as conn:
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as ei:
            conn.execute("select pg_sleep(10) /* q-timeout */")
        elapsed = time.monotonic() - t0
        assert ei.value.diag.sqlstate == "57014"
        assert "query_timeout" in ei.value.diag.message_primary, ei.value.diag.message_primary
        assert 0.4 <= elapsed < 3, f"query_timeout 500ms fired after {elapsed:.2f}s"
        assert conn.execute("select current_schemas(false)::text").fetchone() == \
            ("{q_slow,public}",)
        # a short query is left alone
        assert conn.execute("select pg_sleep(0.1), 7").fetchone()[1] == 7
    with pg.connect() as c:
        running = c.execute("select count(*) from pg_stat_activity where state = 'active' "
                            "and query like '%q-timeout%' and pid <> pg_backend_pid()"
                            ).fetchone()[0]
    assert running == 0, "the cancelled statement is still running on the server"
    assert int(show_tenants(p)["slow"]["query_timeouts"]) >= 1


def test_query_wait_timeout_gives_53300_naming_the_tenant_and_the_session_goes_on(
        pg, pgtenant, schemas):
    schemas(["waity"])
    p = start(pgtenant, pg, {"waity": schema_tenant("waity", pool_size=1,
                                                    query_wait_timeout="1s")})
    with p.connect(dbname="waity", autocommit=False) as holder, \
            p.connect(dbname="waity") as waiter:
        holder.execute("select 1")  # holds the tenant's only server connection
        t0 = time.monotonic()
        with pytest.raises(psycopg.Error) as ei:
            waiter.execute("select 2")
        elapsed = time.monotonic() - t0
        assert sqlstate_of(ei.value) == "53300", ei.value
        assert "waity" in str(ei.value), str(ei.value)
        assert 0.8 <= elapsed < 5, f"query_wait_timeout 1s fired after {elapsed:.2f}s"
        holder.commit()
        assert waiter.execute("select 3").fetchone() == (3,)


def test_queued_client_that_leaves_is_dropped_at_once_and_pipelined_queries_wait_in_order(
        pg, pgtenant, schemas):
    """A client queued for a server goes on being read: when it hangs up, it
    leaves the queue at once (not when a server frees up), and statements it
    pipelines while queued run in order once it gets a server."""
    schemas(["queue"])
    p = start(pgtenant, pg, {"queue": schema_tenant("queue", pool_size=1)})
    q = lambda n: b"Q" + (4 + len(n) + 1).to_bytes(4, "big") + n + b"\0"
    with p.connect(dbname="queue", autocommit=False) as holder:
        holder.execute("select 1")  # holds the tenant's only server connection
        leaver = p.raw(dbname="queue")
        leaver.send(q(b"select 'never'"))
        pgt.wait_for(lambda: show_tenants(p)["queue"]["cl_waiting"] == "1", 10,
                     what="the leaver to be queued")
        leaver.close()
        pgt.wait_for(lambda: show_tenants(p)["queue"]["cl_waiting"] == "0", 5,
                     what="the queue to drop a client that hung up")
        assert show_tenants(p)["queue"]["cl_active"] == "1"  # only the holder

        with p.raw(dbname="queue") as piper:
            piper.send(q(b"select 'first'"))
            pgt.wait_for(lambda: show_tenants(p)["queue"]["cl_waiting"] == "1", 10,
                         what="the piper to be queued")
            piper.send(q(b"select 'second'") + q(b"select 'third'"))
            time.sleep(0.2)  # read while queued, nothing answered yet
            holder.commit()
            got = []
            while len(got) < 3:
                t, body = piper.recv_msg()
                if t == b"D":
                    got.append(body[6:].decode())
                assert t != b"E", body
            assert got == ["first", "second", "third"]
    assert show_tenants(p)["queue"]["cl_waiting"] == "0"


def test_idle_transaction_timeout_closes_with_25P03_and_rolls_back(pg, pgtenant, schemas):
    schemas(["idler"])
    p = start(pgtenant, pg, {"idler": schema_tenant("idler", idle_transaction_timeout="1s")})
    conn = p.raw(dbname="idler")
    busy = p.connect(dbname="idler")
    try:
        conn.query("begin")
        conn.query("insert into orders (item) values ('never committed')")
        # another client of the tenant keeps working meanwhile (idle outside a
        # transaction is not idle_transaction_timeout's business)
        for _ in range(5):
            assert busy.execute("select 1").fetchone() == (1,)
            time.sleep(0.5)
        msgs = conn.read_until_close()
        errors = [pgt.parse_fields(b) for k, b in msgs if k == b"E"]
        assert errors, f"no error before the close: {msgs}"
        assert errors[0]["C"] == "25P03" and errors[0].get("V", errors[0]["S"]) == "FATAL", errors
    finally:
        conn.sock.close()

    def no_idle_in_xact():
        with pg.connect() as c:
            return c.execute("select count(*) from pg_stat_activity where usename = 'app' and "
                             "datname = 'appdb' and state like 'idle in transaction%'"
                             ).fetchone()[0] == 0
    pgt.wait_for(no_idle_in_xact, timeout=5, what="the server transaction to be rolled back")
    with pg.connect(dbname="appdb") as c:
        assert c.execute("select count(*) from q_idler.orders").fetchone() == (0,)
    assert busy.execute("select 2").fetchone() == (2,)
    busy.close()
    with p.connect(dbname="idler") as c:
        assert c.execute("select 3").fetchone() == (3,)


def test_client_idle_timeout_closes_idle_clients_with_57P05(pg, pgtenant, schemas):
    schemas(["sleepy"])
    p = start(pgtenant, pg, {"sleepy": schema_tenant("sleepy", client_idle_timeout="1s")})
    idle = p.raw(dbname="sleepy")
    active = p.connect(dbname="sleepy")
    try:
        assert idle.query("select 1") == [["1"]]
        for _ in range(6):  # 0.4 s gaps: never idle for 1 s
            assert active.execute("select 1").fetchone() == (1,)
            time.sleep(0.4)
        msgs = idle.read_until_close()
        errors = [pgt.parse_fields(b) for k, b in msgs if k == b"E"]
        assert errors and errors[0]["C"] == "57P05", msgs
        assert active.execute("select 2").fetchone() == (2,)
    finally:
        idle.sock.close()
        active.close()
