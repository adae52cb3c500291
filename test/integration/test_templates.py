"""Tenant templates (issue 16): a [template] serves every tenant whose name
it matches and that exists on the backend (its schema, its database, or a
row found by exists_query), with the same isolation as a [tenant] section;
unknown tenants get 3D000; answers are cached; idle implicit tenants leave
memory."""

import os
import time

import psycopg
import pytest

import pgt

ADMIN, ADMIN_PASS = "tadmin", "tadminpass"


def make_schemas(pg, schemas):
    with pg.connect(dbname="appdb") as c:
        with c.transaction():
            for s in schemas:
                c.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
                c.execute(f'CREATE SCHEMA "{s}"')
                c.execute(f'CREATE TABLE "{s}".orders (id serial PRIMARY KEY, tenant text)')
                c.execute(f'GRANT ALL ON SCHEMA "{s}" TO app')
                c.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA "{s}" TO app')
                c.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA "{s}" TO app')


def drop_schemas(pg, schemas):
    with pg.connect(dbname="appdb") as c:
        for s in schemas:
            c.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')


def start_with(pgtenant, sections, globals_=None, tenants=None):
    """A pgtenant with an admin user whose ini ends with the given raw sections."""
    users = dict(pgt.DEFAULT_USERS)
    users[ADMIN] = ADMIN_PASS
    g = {"admin_users": ADMIN}
    g.update(globals_ or {})
    p = pgtenant(g, users=users, tenants=tenants, start=False)
    with open(p.ini, "a") as f:
        f.write("\n" + sections)
    res = pgt.run([pgt.PGTENANT_BIN, "--check", p.ini], timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    return p.start()


SCHEMA_TEMPLATE = """[template per_schema]
match = t_*
mode = schema
backend = main
schema = s_{tenant}
"""


def admin_rows(p, sql):
    with psycopg.connect(p.conninfo(ADMIN, "pgtenant", ADMIN_PASS), autocommit=True) as c:
        cur = c.execute(sql)
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def listed(p):
    return {r["tenant"] for r in admin_rows(p, "SHOW TENANTS")}


def login_error(p, dbname, user="app"):
    """The error of a login that must fail (PgError: .sqlstate, .message)."""
    return pgt.startup_error(p.port, user, dbname, pgt.APP_PASSWORD)


def test_schema_template_serves_existing_tenants_isolated_and_refuses_missing_with_3D000(
        pg, pgtenant):
    make_schemas(pg, ["s_t_a", "s_t_b"])
    try:
        p = start_with(pgtenant, SCHEMA_TEMPLATE)
        for name in ["t_a", "t_b"]:
            with p.connect(dbname=name) as conn:
                path = conn.execute("select current_schemas(false)::text").fetchone()[0]
                assert path == f"{{s_{name},public}}"
                conn.execute("insert into orders (tenant) values (%s)", [name])
        # also by user suffix; each sees its own rows only
        for name in ["t_a", "t_b"]:
            with p.connect(user=f"app.{name}", dbname="appdb") as conn:
                assert conn.execute("select tenant from orders").fetchall() == [(name,)]
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("set search_path = public")
        assert {"t_a", "t_b"} <= listed(p)
        e = login_error(p, "t_nosuch")
        assert e.sqlstate == "3D000" and e.message == 'tenant "t_nosuch" does not exist'
        # a name the template does not match is no tenant either
        e = login_error(p, "x", user="app.x_a")
        assert e.sqlstate == "3D000"
        assert "t_nosuch" not in listed(p)
    finally:
        drop_schemas(pg, ["s_t_a", "s_t_b"])


def test_explicit_tenant_section_overrides_the_template(pg, pgtenant):
    make_schemas(pg, ["s_t_a", "s_explicit"])
    try:
        p = start_with(pgtenant, SCHEMA_TEMPLATE,
                       tenants={"t_x": {"mode": "schema", "backend": "main",
                                        "schema": "s_explicit"}})
        # t_x has no schema s_t_x: only its section lets it in, with its own schema
        with p.connect(dbname="t_x") as conn:
            assert conn.execute("select current_schemas(false)::text").fetchone()[0] == \
                "{s_explicit,public}"
        with p.connect(dbname="t_a") as conn:
            assert conn.execute("select current_schemas(false)::text").fetchone()[0] == \
                "{s_t_a,public}"
    finally:
        drop_schemas(pg, ["s_t_a", "s_explicit"])


def test_shared_template_finds_tenants_with_exists_query_and_sets_their_tenant_id(
        pg, pgtenant):
    with pg.connect(dbname="appdb") as c:
        c.execute("DROP TABLE IF EXISTS public.customers")
        c.execute("CREATE TABLE public.customers (id text PRIMARY KEY)")
        c.execute("INSERT INTO public.customers VALUES ('cid-c1')")
        c.execute("GRANT SELECT ON public.customers TO app")
    try:
        p = start_with(pgtenant, """[template shared_rows]
match = c*
mode = shared
backend = main
tenant_id = cid-{tenant}
exists_query = SELECT 1 FROM public.customers WHERE id = $1
""")
        with p.connect(dbname="c1") as conn:
            assert conn.execute("select current_setting('app.tenant_id')").fetchone() == \
                ("cid-c1",)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("set app.tenant_id = 'cid-c2'")
        assert login_error(p, "c2").sqlstate == "3D000"
    finally:
        with pg.connect(dbname="appdb") as c:
            c.execute("DROP TABLE IF EXISTS public.customers")


def test_a_missing_tenant_is_refused_from_cache_then_served_once_created_after_the_ttl(
        pg, pgtenant):
    drop_schemas(pg, ["s_t_late"])
    try:
        p = start_with(pgtenant, SCHEMA_TEMPLATE, {"template_negative_ttl": "2s"})
        assert login_error(p, "t_late").sqlstate == "3D000"
        make_schemas(pg, ["s_t_late"])
        # still the cached answer
        assert login_error(p, "t_late").sqlstate == "3D000"
        time.sleep(2.5)
        with p.connect(dbname="t_late") as conn:
            assert conn.execute("select current_schemas(false)::text").fetchone()[0] == \
                "{s_t_late,public}"
    finally:
        drop_schemas(pg, ["s_t_late"])


def test_idle_implicit_tenants_leave_memory_and_come_back_on_login(pg, pgtenant):
    make_schemas(pg, ["s_t_a", "s_t_b"])
    try:
        p = start_with(pgtenant, SCHEMA_TEMPLATE, {"template_idle_timeout": "1s"})
        held = p.connect(dbname="t_b")
        with p.connect(dbname="t_a") as conn:
            conn.execute("insert into orders (tenant) values ('t_a')")
        assert {"t_a", "t_b"} <= listed(p)
        deadline = time.monotonic() + 10
        while "t_a" in listed(p) and time.monotonic() < deadline:
            time.sleep(0.3)
        names = listed(p)
        assert "t_a" not in names, names
        assert "t_b" in names  # it still has a client
        assert held.execute("select count(*) from orders").fetchone() == (0,)
        held.close()
        # back on the next login, with its state applied again on the pooled connection
        with p.connect(dbname="t_a") as conn:
            assert conn.execute("select tenant from orders").fetchall() == [("t_a",)]
        assert p.alive()
    finally:
        drop_schemas(pg, ["s_t_a", "s_t_b"])


def test_template_config_errors_are_reported_with_file_and_line(pg, pgtenant, tmp_path):
    p = pgtenant(start=False)
    with open(p.ini, "a") as f:
        f.write("\n[template nomatch]\nmode = schema\nbackend = main\n"
                "\n[template sh]\nmatch = *\nmode = shared\nbackend = main\n"
                "users = {tenant}\n")
    res = pgt.run([pgt.PGTENANT_BIN, "--check", p.ini], timeout=30)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert 'template "nomatch": match is required' in out
    assert 'template "sh": shared mode needs exists_query' in out
    assert "not in users" in out


def test_auth_query_finds_users_of_a_template_tenant_before_it_is_in_memory(pg, pgtenant):
    make_schemas(pg, ["s_t_aq"])
    with pg.connect() as c:
        c.execute("DROP ROLE IF EXISTS tq_user")
        c.execute("SET password_encryption = 'scram-sha-256'")
        c.execute("CREATE ROLE tq_user LOGIN PASSWORD 'tqpass'")
    try:
        p = pgtenant({"auth_user": "postgres"}, start=False,
                     backends={"main": {"host": pg.sockdir, "port": pg.port, "dbname": "appdb",
                                        "user": "app"}})
        with open(p.ini, "a") as f:
            f.write("\n" + SCHEMA_TEMPLATE)
        p.start()
        with psycopg.connect(p.conninfo(user="tq_user", dbname="t_aq", password="tqpass"),
                             autocommit=True) as conn:
            assert conn.execute("select current_schemas(false)::text").fetchone() == \
                ("{s_t_aq,public}",)
        e = pgt.startup_error(p.port, "tq_user", "t_aq", "wrong")
        assert e.sqlstate == "28P01"
    finally:
        drop_schemas(pg, ["s_t_aq"])
        with pg.connect() as c:
            c.execute("DROP ROLE IF EXISTS tq_user")


def test_database_template_serves_tenants_whose_database_exists(pg, pgtenant):
    with pg.connect() as c:
        c.execute("DROP DATABASE IF EXISTS db_one")
        c.execute("CREATE DATABASE db_one OWNER app")
    try:
        p = start_with(pgtenant, """[template per_db]
match = db_*
mode = database
backend = main
dbname = {tenant}
""")
        with p.connect(user="app.db_one", dbname="db_one") as conn:
            assert conn.execute("select current_database()").fetchone() == ("db_one",)
        e = login_error(p, "db_two")
        assert e.sqlstate == "3D000" and e.message == 'tenant "db_two" does not exist'
    finally:
        with pg.connect() as c:
            c.execute("DROP DATABASE IF EXISTS db_one WITH (FORCE)")


def test_metrics_list_active_template_tenants_within_metrics_tenant_limit(pg, pgtenant):
    import urllib.request
    make_schemas(pg, ["s_t_m1", "s_t_m2", "s_t_m3"])
    try:
        port = pgt.free_port()
        p = start_with(pgtenant, SCHEMA_TEMPLATE, {"metrics_listen": f"127.0.0.1:{port}",
                                                   "metrics_tenant_limit": 2})
        conns = [p.connect(dbname=n) for n in ("t_m1", "t_m2", "t_m3")]
        for i, conn in enumerate(conns):
            for _ in range(3 - i):  # t_m1 the busiest, t_m3 the least
                conn.execute("select 1")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            body = r.read().decode()
        tenants = {line.split('tenant="')[1].split('"')[0]
                   for line in body.splitlines() if line.startswith("pgtenant_queries_total{")}
        assert tenants == {"t_m1", "t_m2", "_other"}, tenants
        for conn in conns:
            conn.close()
    finally:
        drop_schemas(pg, ["s_t_m1", "s_t_m2", "s_t_m3"])


def test_a_template_tenant_named_beside_a_configured_one_is_a_mismatch_only_if_it_exists(
        pg, pgtenant):
    make_schemas(pg, ["s_t_a"])
    try:
        p = start_with(pgtenant, SCHEMA_TEMPLATE)
        # user names t_a (exists, through the template), database names acme: mismatch,
        # whether or not t_a is in memory yet
        for _ in range(2):
            e = pgt.startup_error(p.port, "app.t_a", "acme", pgt.APP_PASSWORD)
            assert e.sqlstate == "28000" and "mismatch" in e.message
            with p.connect(dbname="t_a"):
                pass
        # a name the template matches that does not exist names no tenant: acme decides
        with p.connect(user="app.t_nosuch", dbname="acme") as conn:
            assert conn.execute("select current_database()").fetchone() == ("acme",)
    finally:
        drop_schemas(pg, ["s_t_a"])
