"""Tenancy (SPEC §3, §4, §8): schema and RLS isolation under concurrent load,
many tenants multiplexed over few server connections, the tenant state
applied only when a connection changes hands, the guard against changing
the tenant's state, how a client's tenant is resolved, and tenants read
from include_dir."""

import os
import re
import threading
import time

import psycopg
import psycopg.errors
import pytest

import pgt

# ---------------------------------------------------------------- helpers


backend = pgt.backend_keys  # [backend main]: the session's PostgreSQL, with overrides


def schema_tenant(name, **kw):
    t = {"mode": "schema", "backend": "main", "schema": f"s_{name}"}
    t.update(kw)
    return t


def shared_tenant(name, **kw):
    t = {"mode": "shared", "backend": "main", "tenant_id": name}
    t.update(kw)
    return t


ORDERS_DDL = ("CREATE TABLE {s}.orders (id bigserial PRIMARY KEY, tenant text NOT NULL, "
              "client int NOT NULL DEFAULT 0, item text)")


def make_schemas(pg, schemas, grantee="app", with_orders=True):
    """Fresh schemas in appdb (dropped first), each with an `orders` table
    when asked, usable by grantee (tables and sequences)."""
    with pg.connect(dbname="appdb") as c:
        with c.transaction():
            for s in schemas:
                c.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
                c.execute(f"CREATE SCHEMA {s}")
                if with_orders:
                    c.execute(ORDERS_DDL.format(s=s))
                c.execute(f"GRANT USAGE ON SCHEMA {s} TO {grantee}")
                c.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA {s} TO {grantee}")
                c.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA {s} TO {grantee}")


def drop_schemas(pg, schemas):
    with pg.connect(dbname="appdb") as c:
        with c.transaction():
            for s in schemas:
                c.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")


def sqlstate_of(exc):
    return getattr(getattr(exc, "diag", None), "sqlstate", None)


def tenant_search_path(conn):
    """The schemas the server resolves for this session, and its search_path."""
    row = conn.execute("select current_schemas(false)::text, current_setting('search_path')"
                       ).fetchone()
    return row[0], row[1]


def run_threads(targets):
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "some client threads did not finish"


def make_role(pg, name, password, extra=""):
    with pg.connect() as c:
        c.execute(f"DROP ROLE IF EXISTS {name}")
        c.execute("SET password_encryption = 'scram-sha-256'")
        c.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' {extra}")


# ---------------------------------------------------------------- schema isolation


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_schema_tenants_never_see_or_write_each_others_rows_under_concurrent_load(
        pg, pgtenant, mode):
    tenants = ["acme", "globex"]
    make_schemas(pg, [f"s_{t}" for t in tenants])
    if mode == "transaction":
        g = {"pool_mode": "transaction", "tenant_pool_size": 2}
        b = backend(pg, pool_size=4)
    else:
        g = {"pool_mode": "session", "tenant_pool_size": 20}
        b = backend(pg, pool_size=40)
    p = pgtenant(g, backends={"main": b}, tenants={t: schema_tenant(t) for t in tenants})

    clients_per_tenant = 20
    duration = 8.0
    written = {t: 0 for t in tenants}
    lock = threading.Lock()
    problems = []
    reads = [0]

    def client(tenant, cid):
        explicit = cid % 3 == 0  # some clients work in explicit transactions
        try:
            with p.connect(dbname=tenant, autocommit=not explicit) as conn:
                n = 0
                end = time.monotonic() + duration
                while time.monotonic() < end:
                    def unit():
                        conn.execute("insert into orders (tenant, client, item) values (%s, %s, %s)",
                                     [tenant, cid, f"{tenant}-{cid}-{n}"])
                        rows = conn.execute("select tenant, client, item from orders "
                                            "order by id desc limit 25").fetchall()
                        foreign = conn.execute("select count(*) from orders where tenant <> %s",
                                               [tenant]).fetchone()[0]
                        return rows, foreign
                    if explicit:
                        with conn.transaction():
                            rows, foreign = unit()
                    else:
                        rows, foreign = unit()
                    n += 1
                    bad = [r for r in rows if r[0] != tenant]
                    if bad or foreign:
                        with lock:
                            problems.append(f"{tenant} client {cid} read foreign rows: {bad[:3]} "
                                            f"(count of foreign rows {foreign})")
                        return
                    with lock:
                        reads[0] += len(rows)
                with lock:
                    written[tenant] += n
        except Exception as e:  # reported below
            with lock:
                problems.append(f"{tenant} client {cid}: {type(e).__name__}: {e}")

    with pgt.ServerConnSampler(pg, "appdb") as sampler:
        run_threads([lambda t=t, i=i: client(t, i)
                     for i in range(clients_per_tenant) for t in tenants])
    assert not problems, "\n".join(problems[:20])

    with pg.connect(dbname="appdb") as c:
        for t in tenants:
            counts = dict(c.execute(f"select tenant, count(*) from s_{t}.orders group by tenant"
                                    ).fetchall())
            assert set(counts) == {t}, f"s_{t}.orders holds rows of {sorted(counts)}"
            assert counts[t] == written[t], (
                f"s_{t}.orders has {counts[t]} rows, {t}'s clients wrote {written[t]}")
            per_client = c.execute(f"select count(distinct client) from s_{t}.orders").fetchone()[0]
            assert per_client == clients_per_tenant
    assert min(written.values()) > clients_per_tenant, f"too little work done: {written}"
    print(f"\n{mode} mode: rows written {written}, rows read {reads[0]}, "
          f"max server connections {sampler.max}")
    assert sampler.error is None, sampler.error
    limit = 4 if mode == "transaction" else 40
    assert sampler.max <= limit, f"{sampler.max} server connections, backend pool_size {limit}"


# ---------------------------------------------------------------- RLS isolation

RLS_SETUP = """\
DROP TABLE IF EXISTS public.rls_orders;
DROP ROLE IF EXISTS rls_owner;
CREATE ROLE rls_owner NOLOGIN;
CREATE TABLE public.rls_orders (id bigserial PRIMARY KEY, tenant_id text NOT NULL, client int,
    item text);
ALTER TABLE public.rls_orders OWNER TO rls_owner;
ALTER SEQUENCE public.rls_orders_id_seq OWNER TO rls_owner;
ALTER TABLE public.rls_orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON public.rls_orders
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT ON public.rls_orders TO app;
GRANT USAGE ON SEQUENCE public.rls_orders_id_seq TO app"""


def test_rls_shared_tenants_never_see_each_others_rows_under_concurrent_load(pg, pgtenant):
    with pg.connect(dbname="appdb") as c:
        for stmt in RLS_SETUP.split(";\n"):
            c.execute(stmt)
        r = c.execute("select rolsuper, rolbypassrls from pg_roles where rolname = 'app'"
                      ).fetchone()
        assert r == (False, False), "the server role must be able to be bound by RLS"
    tenants = {"acme": "tid-acme", "globex": "tid-globex", "initech": "initech"}
    p = pgtenant({"tenant_pool_size": 2}, backends={"main": backend(pg, pool_size=4)},
                 tenants={"acme": shared_tenant("acme", tenant_id="tid-acme"),
                          "globex": shared_tenant("globex", tenant_id="tid-globex"),
                          # tenant_id defaults to the tenant's name
                          "initech": {"mode": "shared", "backend": "main"}})
    problems = []
    written = {t: 0 for t in tenants}
    lock = threading.Lock()

    def client(tenant, cid):
        tid = tenants[tenant]
        explicit = cid % 3 == 0
        try:
            with p.connect(dbname=tenant, autocommit=not explicit) as conn:
                n = 0
                end = time.monotonic() + 6
                while time.monotonic() < end:
                    def unit():
                        conn.execute("insert into rls_orders (tenant_id, client, item) "
                                     "values (%s, %s, %s)", [tid, cid, f"{cid}-{n}"])
                        return conn.execute("select tenant_id, current_setting('app.tenant_id') "
                                            "from rls_orders").fetchall()
                    if explicit:
                        with conn.transaction():
                            rows = unit()
                    else:
                        rows = unit()
                    n += 1
                    bad = {r for r in rows if r != (tid, tid)}
                    if bad or not rows:
                        with lock:
                            problems.append(f"{tenant} client {cid} saw {sorted(bad)[:3]} "
                                            f"({len(rows)} rows)")
                        return
                with lock:
                    written[tenant] += n
        except Exception as e:
            with lock:
                problems.append(f"{tenant} client {cid}: {type(e).__name__}: {e}")

    run_threads([lambda t=t, i=i: client(t, i) for i in range(8) for t in tenants])
    assert not problems, "\n".join(problems[:20])

    # The policy's WITH CHECK refuses a row for another tenant.
    with p.connect(dbname="acme") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("insert into rls_orders (tenant_id) values ('tid-globex')")
        assert conn.execute("select 1").fetchone() == (1,)
    with pg.connect(dbname="appdb") as c:
        counts = dict(c.execute("select tenant_id, count(*) from rls_orders group by 1").fetchall())
    assert counts == {tenants[t]: written[t] for t in tenants}, (counts, written)


@pytest.mark.parametrize("flaw", ["owns_unforced_rls_table", "superuser", "bypassrls"])
def test_shared_tenant_refuses_server_role_that_can_bypass_rls(pg, pgtenant, flaw):
    role = f"rlsbad_{flaw[:5]}"
    password = "badpass"
    attrs = {"superuser": "SUPERUSER", "bypassrls": "BYPASSRLS"}.get(flaw, "")
    with pg.connect(dbname="appdb") as c:
        c.execute(f"DROP TABLE IF EXISTS public.{role}_t")
    make_role(pg, role, password, attrs)
    with pg.connect(dbname="appdb") as c:
        c.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
        if flaw == "owns_unforced_rls_table":
            c.execute(f"CREATE TABLE public.{role}_t (tenant_id text)")
            c.execute(f"ALTER TABLE public.{role}_t OWNER TO {role}")
            c.execute(f"ALTER TABLE public.{role}_t ENABLE ROW LEVEL SECURITY")
    try:
        p = pgtenant(tenants={"acme": shared_tenant("acme", server_user=role,
                                                    server_password=password)})
        err = None
        try:
            with p.connect(dbname="acme") as conn:
                conn.execute("select 1")
        except psycopg.Error as e:
            err = e
        assert err is not None, f"a shared tenant was served through role {role} ({flaw})"
        assert sqlstate_of(err) == "42501", f"{sqlstate_of(err)}: {err}"
        text = str(err)
        assert role in text, f"the refusal does not name the role: {text}"
        if flaw == "owns_unforced_rls_table":
            assert f"{role}_t" in text and "FORCE" in text.upper(), text
        else:
            assert re.search(r"superuser|bypassrls", text, re.I), text

        if flaw == "owns_unforced_rls_table":
            # FORCE ROW LEVEL SECURITY makes the role usable (on a new pgtenant:
            # the verdict may be remembered per pool).
            with pg.connect(dbname="appdb") as c:
                c.execute(f"ALTER TABLE public.{role}_t FORCE ROW LEVEL SECURITY")
            p2 = pgtenant(tenants={"acme": shared_tenant("acme", server_user=role,
                                                         server_password=password)})
            with p2.connect(dbname="acme") as conn:
                assert conn.execute("select current_setting('app.tenant_id')").fetchone() == \
                    ("acme",)
    finally:
        with pg.connect(dbname="appdb") as c:
            c.execute(f"DROP TABLE IF EXISTS public.{role}_t")
            c.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
        with pg.connect() as c:
            c.execute(f"DROP ROLE IF EXISTS {role}")


# ---------------------------------------------------------------- multiplexing


def test_200_schema_tenants_share_10_server_connections_each_with_its_own_search_path(
        pg, pgtenant):
    names = [f"m{i:03d}" for i in range(200)]
    schemas = [f"s_{n}" for n in names]
    make_schemas(pg, schemas, with_orders=False)
    try:
        tenants = {n: schema_tenant(n) for n in names}
        tenants.update({"acme": None, "globex": None})
        p = pgtenant({"tenant_pool_size": 5}, backends={"main": backend(pg, pool_size=10)},
                     tenants=tenants)
        clients = [(n, k) for n in names for k in range(2)]
        problems = []
        done = [0]
        lock = threading.Lock()
        n_threads = 40

        def worker(mine):
            try:
                conns = [(n, p.connect(dbname=n)) for n, _ in mine]
                try:
                    for _ in range(4):
                        for n, conn in conns:
                            schemas_, path = tenant_search_path(conn)
                            shown = conn.execute("show search_path").fetchone()[0]
                            if schemas_ != f"{{s_{n},public}}" or f"s_{n}" not in shown \
                                    or f"s_{n}" not in path:
                                with lock:
                                    problems.append(f"tenant {n} ran with {schemas_} / {shown}")
                                return
                            with lock:
                                done[0] += 1
                finally:
                    for _, conn in conns:
                        conn.close()
            except Exception as e:
                with lock:
                    problems.append(f"{type(e).__name__}: {e}")

        with pgt.ServerConnSampler(pg, "appdb", period=0.02) as sampler:
            run_threads([lambda i=i: worker(clients[i::n_threads]) for i in range(n_threads)])
        assert not problems, "\n".join(problems[:20])
        assert done[0] == len(clients) * 4
        assert sampler.error is None, sampler.error
        print(f"\n400 clients of 200 tenants: {done[0]} checks, max server connections "
              f"{sampler.max} ({sampler.samples} samples)")
        assert 1 <= sampler.max <= 10, f"{sampler.max} server connections for a pool of 10"
    finally:
        drop_schemas(pg, schemas)


# ---------------------------------------------------------------- no redundant SET

class ServerLog:
    """Lines the test server logged since construction."""

    def __init__(self, pg):
        self.path = pg.logfile
        self.start = os.path.getsize(self.path)

    def text(self):
        with open(self.path, "rb") as f:
            f.seek(self.start)
            return f.read().decode("utf-8", "replace")

    def count(self, pattern):
        return len(re.findall(pattern, self.text(), re.I | re.M))


def test_a_state_set_that_fails_errors_each_statement_and_leaves_the_connection_usable(
        pg, pgtenant):
    """The state SET goes out in front of a simple Query with no Sync after it
    (one reply, one wake-up); when the SET fails, PostgreSQL skips the Query and
    waits for a Sync, which pgtenant must then send. The client gets the SET's
    error for each statement (pipelined ones too), nothing hangs, and the one
    server connection serves the next tenant under that tenant's state."""
    q = lambda sql: b"Q" + (4 + len(sql) + 1).to_bytes(4, "big") + sql + b"\0"
    # shared tenants SET tenant_guc = tenant_id: a bad value for statement_timeout fails
    p = pgtenant({"tenant_guc": "statement_timeout"},
                 backends={"main": backend(pg, pool_size=1)},
                 tenants={"bad": shared_tenant("bad", tenant_id="not-a-duration"),
                          "good": shared_tenant("good", tenant_id="4321")})
    with p.raw(dbname="bad") as c:
        for _ in range(2):
            with pytest.raises(pgt.PgError) as ei:
                c.query("select 1")
            assert ei.value.sqlstate == "22023", ei.value
        # three pipelined statements: each one gets the error and its own ReadyForQuery
        c.send(q(b"select 1") + q(b"select 2") + q(b"select 3"))
        errors = readies = 0
        while readies < 3:
            t, body = c.recv_msg()
            assert t in (b"E", b"Z", b"N"), (t, body)
            errors += t == b"E"
            readies += t == b"Z"
        assert errors == 3
        with pytest.raises(pgt.PgError) as ei:
            c.query("select 4")
        assert ei.value.sqlstate == "22023", ei.value
    with p.raw(dbname="good") as c:
        assert c.query("show statement_timeout") == [["4321ms"]]
        assert c.query("select 5") == [["5"]]
    with p.connect(dbname="good") as conn:  # extended protocol, same server connection
        assert conn.execute("select %s::int", [6]).fetchone() == (6,)


def test_pipelined_units_after_a_switch_get_only_their_own_replies_when_one_fails(
        pg, pgtenant):
    """A client that pipelines several extended-protocol units on a server
    connection that changes tenant gets the state SET in front of each unit
    until the first is confirmed. When a unit's own statement fails, the SETs
    of the units behind it still run and their replies must still be pgtenant's
    to drop: the client sees exactly what PostgreSQL would send it."""
    make_schemas(pg, ["s_acme", "s_globex"])
    p = pgtenant(backends={"main": backend(pg, pool_size=1)},
                 tenants={"acme": schema_tenant("acme"), "globex": schema_tenant("globex")})
    with p.raw(dbname="globex") as c:
        assert c.query("select current_schema()") == [["s_globex"]]
    unit = lambda sql: (pgt.ext_parse(sql) + pgt.ext_bind() + pgt.ext_describe_portal() +
                        pgt.ext_execute() + pgt.ext_sync())
    pipeline = (unit("select 1/0") + unit("select current_schema()") +
                unit("select 'x'::int") + unit("select current_schema()"))

    def replies(c):
        got = []
        while got.count(b"Z") < 4:
            t, body = c.recv_msg()
            if t == b"D":
                assert body[6:].decode() in ("s_acme", "public"), body
            if t != b"N":
                got.append(t)
        return got

    with pg.raw("appdb") as direct:
        direct.send(pipeline)
        want = replies(direct)
    assert want.count(b"E") == 2 and want.count(b"D") == 2, want
    with p.raw(dbname="acme") as c:  # the one server connection now switches to acme
        c.send(pipeline)
        assert replies(c) == want
        assert c.query("select current_schema()") == [["s_acme"]]


def test_tenant_state_is_set_once_per_switch_not_per_statement(pg, pgtenant):
    role, password = "logapp", "logpass"
    make_role(pg, role, password)
    make_schemas(pg, ["s_acme", "s_globex"], grantee=role)
    with pg.connect() as c:
        c.execute(f"ALTER ROLE {role} SET log_statement = 'all'")
    try:
        p = pgtenant(backends={"main": backend(pg, user=role, password=password, pool_size=1)},
                     tenants={"acme": schema_tenant("acme"), "globex": schema_tenant("globex")})
        set_line = r"^.*set_config\('search_path'.*$"

        log = ServerLog(pg)
        with p.connect(dbname="acme") as conn:
            for i in range(50):
                assert conn.execute(f"select {i}, current_schemas(false)::text /* same */"
                                    ).fetchone() == (i, "{s_acme,public}")
        time.sleep(0.5)
        assert log.count(r"/\* same \*/") >= 50, "log_statement=all is not in force:\n" + \
            log.text()[-3000:]
        sets = log.count(set_line)
        print(f"\none tenant, 50 statements: {sets} SET search_path")
        assert sets <= 1, (f"{sets} SET search_path for 50 statements of one tenant on one "
                           f"server connection:\n" + log.text()[-3000:])

        log = ServerLog(pg)
        a = p.connect(dbname="acme")
        b = p.connect(dbname="globex")
        try:
            switches = 0
            last = "acme"  # the connection holds acme's state from above
            for i in range(20):
                for name, conn in (("globex", b), ("acme", a)):
                    got = conn.execute("select current_schemas(false)::text /* alt */"
                                       ).fetchone()[0]
                    assert got == f"{{s_{name},public}}", (name, got)
                    if name != last:
                        switches += 1
                    last = name
        finally:
            a.close()
            b.close()
        time.sleep(0.5)
        sets = log.count(set_line)
        print(f"two tenants alternating over pool_size 1: {switches} switches, "
              f"{sets} SET search_path")
        assert switches <= sets <= switches + 2, (
            f"{sets} SET search_path for {switches} tenant switches:\n" + log.text()[-3000:])
    finally:
        with pg.connect() as c:
            c.execute(f"ALTER ROLE {role} RESET log_statement")
        drop_schemas(pg, ["s_acme", "s_globex"])


# ---------------------------------------------------------------- the guard

SCHEMA_ESCAPES = [
    "SET search_path = public",
    "set search_path to public, s_globex",
    "SET LOCAL search_path = public",
    "SET SESSION search_path TO public",
    "RESET search_path",
    "reset SEARCH_PATH",
    "SeT sEaRcH_pAtH = s_globex",
    'SET "search_path" = public',
    'set  session\n"search_path"\tto "s_globex"',
    "/* comment */ SET search_path = public",
    "SET search_path = DEFAULT",
    "select set_config('search_path', 's_globex', false)",
    "SELECT SET_CONFIG('SEARCH_PATH', 'public', true)",
    "select pg_catalog.set_config('search_path', 's_globex', false)",
    "with x as (select set_config('search_path', 's_globex', false) as v) select v from x",
    "select 1 from (select set_config('search_path', 'public', false)) q",
    "SET SCHEMA 's_globex'",
    "set schema 'public'",
    "SET ROLE postgres",
    "set role none",
    "RESET ROLE",
    "SET SESSION AUTHORIZATION postgres",
    "SET SESSION AUTHORIZATION DEFAULT",
    "RESET SESSION AUTHORIZATION",
    "SET LOCAL ROLE app",
]

SHARED_ESCAPES = [
    "SET app.tenant_id = 'tid-globex'",
    "set APP.TENANT_ID to 'tid-globex'",
    'SET "app"."tenant_id" = \'tid-globex\'',
    "SET LOCAL app.tenant_id = 'tid-globex'",
    "SET SESSION app.tenant_id = 'tid-globex'",
    "RESET app.tenant_id",
    "select set_config('app.tenant_id', 'tid-globex', false)",
    "SELECT Set_Config('App.Tenant_Id', 'tid-globex', true)",
    "with x as (select set_config('app.tenant_id', 'x', false)) select * from x",
    "SET search_path = public",
    "SET ROLE postgres",
    "SET SESSION AUTHORIZATION postgres",
]


@pytest.fixture
def guarded(pg, pgtenant):
    """acme and globex in schema mode, initech in shared mode, one pool of 2."""
    make_schemas(pg, ["s_acme", "s_globex"])
    with pg.connect(dbname="appdb") as c:
        c.execute("insert into s_acme.orders (tenant, item) values ('acme', 'marker')")
        c.execute("insert into s_globex.orders (tenant, item) values ('globex', 'marker')")
    p = pgtenant(backends={"main": backend(pg, pool_size=2)},
                 tenants={"acme": schema_tenant("acme"), "globex": schema_tenant("globex"),
                          "initech": shared_tenant("initech", tenant_id="tid-initech")})
    yield p
    drop_schemas(pg, ["s_acme", "s_globex"])


def assert_acme_state(conn):
    schemas_, path = tenant_search_path(conn)
    assert schemas_ == "{s_acme,public}", (schemas_, path)
    assert conn.execute("select tenant from orders").fetchall() == [("acme",)]


def test_guard_refuses_every_escape_through_extended_protocol(guarded):
    p = guarded
    failures = []
    with p.connect(dbname="acme") as conn:
        for sql in SCHEMA_ESCAPES:
            try:
                conn.execute(sql)
                failures.append(f"{sql!r}: accepted")
            except psycopg.Error as e:
                if sqlstate_of(e) != "42501":
                    failures.append(f"{sql!r}: {sqlstate_of(e)} {e}")
            try:
                assert_acme_state(conn)
            except AssertionError as e:
                failures.append(f"after {sql!r}: tenant state changed: {e}")
                break
            except psycopg.Error as e:
                failures.append(f"after {sql!r}: session unusable: {sqlstate_of(e)} {e}")
                break
    with p.connect(dbname="initech") as conn:
        for sql in SHARED_ESCAPES:
            try:
                conn.execute(sql)
                failures.append(f"shared {sql!r}: accepted")
            except psycopg.Error as e:
                if sqlstate_of(e) != "42501":
                    failures.append(f"shared {sql!r}: {sqlstate_of(e)} {e}")
            got = conn.execute("select current_setting('app.tenant_id'), current_user").fetchone()
            if got != ("tid-initech", "app"):
                failures.append(f"after shared {sql!r}: state is {got}")
                break
    assert not failures, "\n".join(failures)


def test_guard_refuses_every_escape_through_simple_protocol(guarded):
    p = guarded
    failures = []
    multi = ["select 1; SET search_path = public",
             "select 1; select set_config('search_path', 'public', false); select 2",
             "SELECT 1;RESET search_path"]
    with p.raw(dbname="acme") as conn:
        for sql in SCHEMA_ESCAPES + multi:
            try:
                conn.query(sql)
                failures.append(f"{sql!r}: accepted")
            except pgt.PgError as e:
                if e.sqlstate != "42501":
                    failures.append(f"{sql!r}: {e.sqlstate} {e}")
            try:
                got = conn.query("select current_schemas(false)::text, tenant from orders")
            except pgt.PgError as e:
                failures.append(f"after {sql!r}: session unusable: {e}")
                break
            if got != [["{s_acme,public}", "acme"]]:
                failures.append(f"after {sql!r}: state is {got}")
                break
    assert not failures, "\n".join(failures)


def test_guard_refuses_escapes_sent_by_psql(guarded):
    p = guarded
    psql = os.path.join(pgt.PG_BIN, "psql")
    for sql in ["SET search_path = public", "select 1; set SEARCH_PATH = public",
                "select set_config('search_path', 'public', false)", "SET ROLE postgres"]:
        res = pgt.run([psql, "-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-c", sql,
                       "-c", "select 'reached'"], env=p.env(dbname="acme"), timeout=30)
        assert res.returncode != 0 and "reached" not in res.stdout, \
            f"psql ran {sql!r}: {res.stdout}"
        assert re.search(r"ERROR:\s+42501", res.stderr), f"{sql!r}: {res.stderr}"
    res = pgt.run([psql, "-X", "-At", "-c", "select current_schemas(false)"],
                  env=p.env(dbname="acme"), timeout=30)
    assert res.returncode == 0 and res.stdout.strip() == "{s_acme,public}", res.stdout + res.stderr


def test_guard_refusal_aborts_the_transaction_like_a_server_error(pg, guarded):
    p = guarded
    # extended protocol (psycopg)
    with p.connect(dbname="acme", autocommit=False) as conn:
        conn.execute("insert into orders (tenant, item) values ('acme', 'ext-doomed')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET LOCAL search_path = s_globex")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("select 1")
        conn.commit()  # the server answers ROLLBACK
        assert conn.execute("select count(*) from orders where item = 'ext-doomed'"
                            ).fetchone() == (0,)
        conn.rollback()
        assert_acme_state(conn)
        conn.commit()
    # simple protocol
    with p.raw(dbname="acme") as conn:
        conn.query("begin")
        conn.query("insert into orders (tenant, item) values ('acme', 'simple-doomed')")
        with pytest.raises(pgt.PgError) as ei:
            conn.query("select set_config('search_path', 's_globex', true)")
        assert ei.value.sqlstate == "42501"
        with pytest.raises(pgt.PgError) as ei:
            conn.query("select 1")
        assert ei.value.sqlstate == "25P02"
        conn.query("commit")
        assert conn.query("select count(*) from orders where item = 'simple-doomed'") == [["0"]]
        # rollback after the refusal, then work goes on
        conn.query("begin")
        with pytest.raises(pgt.PgError) as ei:
            conn.query("SET ROLE postgres")
        assert ei.value.sqlstate == "42501"
        conn.query("rollback")
        conn.query("insert into orders (tenant, item) values ('acme', 'kept')")
        assert conn.query("select current_schemas(false)::text, current_user") == \
            [["{s_acme,public}", "app"]]
    # an extended-protocol batch: the refusal aborts the batch's implicit transaction
    with p.raw(dbname="acme") as conn:
        out = pgt.run_batch(conn, pgt.ext_statement(
            "insert into orders (tenant, item) values ('acme', 'batch-doomed')") +
            pgt.ext_statement("SET search_path = public") +
            pgt.ext_statement("select 1") + pgt.ext_sync(), 1)
        assert ("Error", "42501") in out, out
        assert out[-1] == ("ReadyForQuery", "I"), out
        assert not any(k == "DataRow" for k, _ in out), out
    with pg.connect(dbname="appdb") as c:
        items = [r[0] for r in c.execute("select item from s_acme.orders").fetchall()]
    assert "kept" in items and not {"ext-doomed", "simple-doomed", "batch-doomed"} & set(items), \
        items


@pytest.mark.parametrize("position", ["first_after_switch", "after_a_select"])
@pytest.mark.parametrize("proto", ["extended", "simple"])
@pytest.mark.parametrize("stmt", ["DISCARD ALL", "RESET ALL", "reset all"])
def test_discard_all_and_reset_all_are_allowed_and_keep_the_tenant_state(
        pg, pgtenant, stmt, proto, position):
    """Drivers send these when a connection returns to their own pool; the
    first statement of a unit may be one, on a server connection that still
    holds another tenant's state (pool_size 1 makes sure it does)."""
    make_schemas(pg, ["s_acme", "s_globex"])
    with pg.connect(dbname="appdb") as c:
        c.execute("insert into s_acme.orders (tenant, item) values ('acme', 'marker')")
    try:
        p = pgtenant(backends={"main": backend(pg, pool_size=1)},
                     tenants={"acme": schema_tenant("acme"), "globex": schema_tenant("globex"),
                              "initech": shared_tenant("initech", tenant_id="tid-initech")})
        for tenant in ["acme", "initech"]:
            check = ("select current_schemas(false)::text" if tenant == "acme"
                     else "select current_setting('app.tenant_id', true)")
            want = "{s_acme,public}" if tenant == "acme" else "tid-initech"
            with p.connect(dbname="globex") as other:
                other.execute("select 1")  # the one server connection now holds globex's state
            if proto == "extended":
                with p.connect(dbname=tenant) as conn:
                    if position == "after_a_select":
                        assert conn.execute(check).fetchone() == (want,)
                    conn.execute(stmt)
                    assert conn.execute(check).fetchone() == (want,), f"{tenant} after {stmt}"
                    assert conn.execute(check).fetchone() == (want,)
            else:
                with p.raw(dbname=tenant) as conn:
                    if position == "after_a_select":
                        assert conn.query(check) == [[want]]
                    conn.query(stmt)
                    assert conn.query(check) == [[want]], f"{tenant} after {stmt}"
                    if stmt.upper() == "RESET ALL":  # DISCARD ALL may not run in a multi-statement query
                        # a statement after it in the same Query would run without the tenant
                        # state (SPEC §4 invariant): refused, and the reset rolls back with it
                        with pytest.raises(pgt.PgError) as ei:
                            conn.query(f"{stmt}; select 1")
                        assert ei.value.sqlstate == "42501", ei.value
                        assert conn.query(check) == [[want]], f"{tenant} after '{stmt}; select 1'"
    finally:
        drop_schemas(pg, ["s_acme", "s_globex"])


@pytest.mark.parametrize("proto", ["extended", "simple"])
def test_statements_that_cannot_run_in_a_transaction_block_run_under_the_tenant_state(
        pg, pgtenant, proto):
    """VACUUM and CREATE INDEX CONCURRENTLY as the first statement on a server
    connection that holds another tenant's state: they must run, and on the
    tenant's own table (SPEC §4: the state is in force before the statement)."""
    make_schemas(pg, ["s_acme", "s_globex"])
    with pg.connect(dbname="appdb") as c:
        # building an index takes ownership of the table
        for s in ("s_acme", "s_globex"):
            c.execute(f"ALTER TABLE {s}.orders OWNER TO app")
            c.execute(f"GRANT CREATE ON SCHEMA {s} TO app")
    try:
        p = pgtenant(backends={"main": backend(pg, pool_size=1)},
                     tenants={"acme": schema_tenant("acme"), "globex": schema_tenant("globex")})
        for sql in ["VACUUM orders", "CREATE INDEX CONCURRENTLY orders_item_idx ON orders (item)"]:
            with p.connect(dbname="globex") as other:
                other.execute("select 1")  # the one server connection now holds globex's state
            if proto == "extended":
                with p.connect(dbname="acme") as conn:
                    conn.execute(sql)
            else:
                with p.raw(dbname="acme") as conn:
                    conn.query(sql)
        with pg.connect(dbname="appdb") as c:
            assert c.execute("select schemaname from pg_indexes where indexname = "
                             "'orders_item_idx'").fetchall() == [("s_acme",)]
    finally:
        drop_schemas(pg, ["s_acme", "s_globex"])


def test_temp_table_of_one_tenant_never_shadows_another_tenants_table(pg, pgtenant):
    make_schemas(pg, ["s_acme", "s_globex"])
    with pg.connect(dbname="appdb") as c:
        c.execute("insert into s_acme.orders (tenant, item) values ('acme', 'real')")
        c.execute("insert into s_globex.orders (tenant, item) values ('globex', 'real')")
    try:
        p = pgtenant(backends={"main": backend(pg, pool_size=1)},
                     tenants={"acme": schema_tenant("acme"), "globex": schema_tenant("globex")})
        with p.connect(dbname="acme") as a, p.connect(dbname="globex") as b:
            a.execute("create temp table orders (id int, tenant text, client int, item text)")
            a.execute("insert into pg_temp.orders values (1, 'TEMP', 0, 'temp')")
            # pg_temp comes last, so acme itself still sees its schema's table...
            assert a.execute("select tenant, item from orders").fetchall() == [("acme", "real")]
            assert a.execute("select tenant from pg_temp.orders").fetchall() == [("TEMP",)]
            pid_a = a.execute("select pg_backend_pid()").fetchone()[0]
            # ...and globex, on the same (only) server connection, sees its own.
            pid_b = b.execute("select pg_backend_pid()").fetchone()[0]
            assert pid_a == pid_b, "pool_size 1 should have one server connection"
            assert b.execute("select tenant, item from orders").fetchall() == \
                [("globex", "real")]
            # acme's session state (the temp table) was discarded before globex got it
            assert b.execute("select count(*) from pg_class where relname = 'orders' and "
                             "relnamespace = pg_my_temp_schema()").fetchone() == (0,)
            path = b.execute("select current_schemas(true)::text").fetchone()[0]
            assert re.fullmatch(r"\{pg_catalog,s_globex,public(,pg_temp_\d+)?\}", path), \
                f"pg_temp must come after the tenant's schemas: {path}"
    finally:
        drop_schemas(pg, ["s_acme", "s_globex"])


def test_per_tenant_server_user_without_grants_gets_permission_denied_on_other_schema(
        pg, pgtenant):
    make_role(pg, "acme_role", "acmepass")
    make_role(pg, "globex_role", "globexpass")
    make_schemas(pg, ["s_acme"], grantee="acme_role")
    make_schemas(pg, ["s_globex"], grantee="globex_role")
    try:
        p = pgtenant(tenants={
            "acme": schema_tenant("acme", server_user="acme_role", server_password="acmepass"),
            "globex": schema_tenant("globex", server_user="globex_role",
                                    server_password="globexpass")})
        with p.connect(dbname="acme") as a, p.connect(dbname="globex") as b:
            a.execute("insert into orders (tenant) values ('acme')")
            b.execute("insert into orders (tenant) values ('globex')")
            assert a.execute("select current_user").fetchone() == ("acme_role",)
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as ei:
                a.execute("select * from s_globex.orders")
            assert "permission denied" in str(ei.value)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                b.execute("insert into s_acme.orders (tenant) values ('globex')")
            assert a.execute("select tenant from orders").fetchall() == [("acme",)]
    finally:
        drop_schemas(pg, ["s_acme", "s_globex"])
        with pg.connect() as c:
            c.execute("DROP ROLE IF EXISTS acme_role")
            c.execute("DROP ROLE IF EXISTS globex_role")


# ---------------------------------------------------------------- resolution


@pytest.fixture
def resolving(pg, pgtenant):
    make_schemas(pg, ["s_acme", "s_globex", "s_initech"], with_orders=False)
    p = pgtenant({"tenant_from": "user, database, options"},
                 tenants={"acme": schema_tenant("acme"), "globex": schema_tenant("globex"),
                          "initech": schema_tenant("initech", users="other"),
                          "umbrella": shared_tenant("umbrella")})
    yield p
    drop_schemas(pg, ["s_acme", "s_globex", "s_initech"])


@pytest.mark.parametrize("how", ["user_suffix", "database", "options_c", "options_long"])
def test_each_source_selects_the_tenant(resolving, how):
    p = resolving
    kw = {"user_suffix": {"user": "app.acme", "dbname": "appdb"},
          "database": {"user": "app", "dbname": "acme"},
          "options_c": {"user": "app", "dbname": "appdb", "options": "-c pgtenant.tenant=acme"},
          "options_long": {"user": "app", "dbname": "appdb",
                           "options": "--pgtenant.tenant=acme"}}[how]
    with p.connect(**kw) as conn:
        assert tenant_search_path(conn)[0] == "{s_acme,public}"
        assert conn.execute("select current_user, current_database()").fetchone() == \
            ("app", "appdb")
    # the raw client too, so the exact startup parameters are what we sent
    params = {"options": kw["options"]} if "options" in kw else None
    with p.raw(user=kw["user"], dbname=kw["dbname"], params=params) as conn:
        assert conn.scalar("select current_schemas(false)::text") == "{s_acme,public}"


@pytest.mark.parametrize("user,dbname,params,password,code", [
    ("app.acme", "globex", None, None, "28000"),                      # user vs database
    ("app", "globex", {"options": "-c pgtenant.tenant=acme"}, None, "28000"),
    ("app.nosuch", "appdb", None, None, "3D000"),                     # unknown tenant
    ("app", "appdb", {"options": "-c pgtenant.tenant=nosuch"}, None, "3D000"),
    ("app", "appdb", None, None, "3D000"),                            # no tenant at all
    ("app", "initech", None, None, "28000"),                          # not in initech's users
    ("app.initech", "appdb", None, None, "28000"),
    ("app.nosuch", "appdb", None, "wrongpass", "28P01"),              # authentication first
    ("app", "acme", None, "wrongpass", "28P01"),
    ("nobody.acme", "appdb", None, "x", "28P01"),
])
def test_tenant_resolution_failures_give_the_specified_sqlstate(resolving, user, dbname, params,
                                                                password, code):
    p = resolving
    if password is None:
        password = pgt.APP_PASSWORD
    err = pgt.startup_error(p.port, user, dbname, password, params)
    assert err.severity == "FATAL", err
    assert err.sqlstate == code, f"{user}/{dbname}/{params}: {err}"
    if code == "3D000" and user == "app.nosuch":
        assert "nosuch" in err.message, err.message
    if code == "3D000" and user == "app" and not params:
        assert err.fields.get("H"), f"no hint on how to name a tenant: {err.fields}"


def test_other_user_in_tenants_users_list_gets_in(resolving):
    with resolving.connect(user="other", dbname="initech") as conn:
        assert tenant_search_path(conn)[0] == "{s_initech,public}"


@pytest.mark.parametrize("dbname,params,code", [
    ("acme", {"options": "-c search_path=s_globex"}, "42501"),
    ("acme", {"options": "-csearch_path=s_globex"}, "42501"),
    ("acme", {"options": "--search_path=s_globex"}, "42501"),
    ("acme", {"search_path": "s_globex"}, "42501"),
    ("acme", {"SEARCH_PATH": "s_globex"}, "42501"),
    ("acme", {"options": "-c role=postgres"}, "42501"),
    ("acme", {"options": "-c session_authorization=postgres"}, "42501"),
    ("umbrella", {"options": "-c app.tenant_id=acme"}, "42501"),
    ("umbrella", {"app.tenant_id": "acme"}, "42501"),
    ("acme", {"replication": "database"}, "08P01"),
    ("acme", {"replication": "true"}, "08P01"),
])
def test_forbidden_startup_parameters_are_refused(resolving, dbname, params, code):
    err = pgt.startup_error(resolving.port, "app", dbname, pgt.APP_PASSWORD, params)
    assert err.severity == "FATAL", err
    assert err.sqlstate == code, f"{params}: {err}"


def test_plain_startup_parameters_still_apply_to_schema_tenants(resolving):
    with resolving.connect(dbname="acme", options="-c statement_timeout=4321",
                           application_name="tenancy-app") as conn:
        assert conn.execute("show statement_timeout").fetchone() == ("4321ms",)
        assert conn.execute("show application_name").fetchone() == ("tenancy-app",)
        assert tenant_search_path(conn)[0] == "{s_acme,public}"


# ---------------------------------------------------------------- include_dir


def test_tenants_from_include_dir_are_served(pg, pgtenant):
    make_schemas(pg, ["s_inc_a", "s_inc_b"])
    try:
        p = pgtenant(start=False, tenants={"globex": None})
        incdir = os.path.join(p.workdir, "tenants.d")
        os.makedirs(incdir)
        with open(os.path.join(incdir, "10-a.ini"), "w") as f:
            f.write("[tenant inc_a]\nmode = schema\nbackend = main\nschema = s_inc_a\n")
        with open(os.path.join(incdir, "20-b.ini"), "w") as f:
            f.write("; second file\n[tenant inc_b]\nmode = schema\nbackend = main\n"
                    "schema = s_inc_b\npool_size = 2\n")
        with open(os.path.join(incdir, "ignored.conf"), "w") as f:
            f.write("this is not an ini file and must not be read\n")
        # include_dir belongs to [pgtenant]: rewrite the ini with it.
        p.globals["include_dir"] = incdir
        with open(p.ini, "w") as f:
            f.write(pgt.render_ini(p.globals, p.backends, p.tenants))
        res = pgt.run([pgt.PGTENANT_BIN, "--check", p.ini], timeout=30)
        assert res.returncode == 0, res.stdout + res.stderr
        p.start()
        for name in ["inc_a", "inc_b"]:
            with p.connect(dbname=name) as conn:
                assert tenant_search_path(conn)[0] == f"{{s_{name},public}}"
                conn.execute("insert into orders (tenant) values (%s)", [name])
        with p.connect(user="app.inc_b", dbname="appdb") as conn:
            assert conn.execute("select tenant from orders").fetchall() == [("inc_b",)]
        # the main file's database tenant is still there
        with p.connect(dbname="acme") as conn:
            assert conn.execute("select current_database()").fetchone() == ("acme",)
    finally:
        drop_schemas(pg, ["s_inc_a", "s_inc_b"])
