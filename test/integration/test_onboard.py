"""CREATE TENANT and DROP TENANT on the console (issue 16): every mode, the
section written to include_dir atomically, a failing step undoing what the
steps before it made (the error names the step), DROP keeping the data unless
DROP DATA, and only admin users."""

import json
import os
import time

import psycopg
import pytest

import pgt

ADMIN, ADMIN_PASS = "tadmin", "tadminpass"
WATCHER, WATCHER_PASS = "twatch", "twatchpass"

SCHEMA_TEMPLATE = """
[template per_schema]
match = t_*
mode = schema
backend = main
schema = s_{tenant}
"""


def start(pgtenant, globals_=None, extra=""):
    users = dict(pgt.DEFAULT_USERS)
    users[ADMIN] = ADMIN_PASS
    users[WATCHER] = WATCHER_PASS
    p = pgtenant(start=False, users=users)
    p.incdir = os.path.join(p.workdir, "tenants.d")
    os.makedirs(p.incdir)
    p.audit = os.path.join(p.workdir, "audit.log")
    p.globals.update({"admin_users": ADMIN, "stats_users": WATCHER, "include_dir": p.incdir,
                      "audit_log": p.audit, "shutdown_timeout": "5s"})
    p.globals.update(globals_ or {})
    with open(p.ini, "w") as f:
        f.write(pgt.render_ini(p.globals, p.backends, p.tenants) + extra)
    return p.start()


def console(p, user=ADMIN, password=ADMIN_PASS):
    return psycopg.connect(p.conninfo(user, "pgtenant", password), autocommit=True)


def run(p, cmd, user=ADMIN, password=ADMIN_PASS):
    with console(p, user, password) as c:
        return c.execute(cmd).statusmessage


def fails(p, cmd, user=ADMIN, password=ADMIN_PASS):
    with console(p, user, password) as c:
        with pytest.raises(psycopg.Error) as ei:
            c.execute(cmd)
        return ei.value


def listed(p):
    with console(p) as c:
        cur = c.execute("SHOW TENANTS")
        i = [d.name for d in cur.description].index("tenant")
        return {r[i] for r in cur.fetchall()}


def schema_exists(pg, name, dbname="appdb"):
    with pg.connect(dbname=dbname) as c:
        return c.execute("select count(*) from pg_namespace where nspname = %s",
                         [name]).fetchone()[0] == 1


def database_exists(pg, name):
    with pg.connect() as c:
        return c.execute("select count(*) from pg_database where datname = %s",
                         [name]).fetchone()[0] == 1


def login_error(p, dbname):
    return pgt.startup_error(p.port, "app", dbname, pgt.APP_PASSWORD)


def drop_schema(pg, name):
    with pg.connect(dbname="appdb") as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_create_tenant_in_schema_mode_writes_its_section_and_serves_it(pg, pgtenant):
    drop_schema(pg, "newco")
    try:
        p = start(pgtenant)
        assert run(p, "CREATE TENANT newco MODE schema BACKEND main WITH (pool_size = 3, "
                      "shared_schemas = 'public')") == "CREATE TENANT"
        assert schema_exists(pg, "newco")
        with open(os.path.join(p.incdir, "newco.ini")) as f:
            text = f.read()
        assert "[tenant newco]" in text and "pool_size = 3" in text
        assert [n for n in os.listdir(p.incdir)] == ["newco.ini"]  # no temporary left
        assert "newco" in listed(p)
        with p.connect(dbname="newco") as conn:
            assert conn.execute("select current_schemas(false)::text").fetchone() == \
                ("{newco,public}",)
            conn.execute("create table t (x int)")
        # the file is a valid configuration for the next start too
        res = pgt.run([pgt.PGTENANT_BIN, "--check", p.ini], timeout=30)
        assert res.returncode == 0, res.stdout + res.stderr
        # audit-logged
        with open(p.audit) as f:
            records = [json.loads(line) for line in f if line.strip()]
        assert any("CREATE TENANT newco" in json.dumps(r) for r in records), records[-3:]
        e = fails(p, "CREATE TENANT newco MODE schema BACKEND main")
        assert e.sqlstate == "42710"
    finally:
        drop_schema(pg, "newco")


def test_create_and_drop_tenant_in_database_mode_from_tenant_template_db(pg, pgtenant):
    with pg.connect() as c:
        c.execute("ALTER ROLE app CREATEDB")
        c.execute("DROP DATABASE IF EXISTS dbnew WITH (FORCE)")
        c.execute("DROP DATABASE IF EXISTS tmpl_db")
        c.execute("CREATE DATABASE tmpl_db OWNER app")
    with pg.connect(dbname="tmpl_db") as c:
        c.execute("CREATE TABLE public.seeded (x int)")
        c.execute("ALTER TABLE public.seeded OWNER TO app")
    try:
        p = start(pgtenant, {"tenant_template_db": "tmpl_db"})
        assert run(p, "CREATE TENANT dbnew MODE database BACKEND main") == "CREATE TENANT"
        assert database_exists(pg, "dbnew")
        with p.connect(dbname="dbnew") as conn:
            assert conn.execute("select current_database(), count(*) from seeded"
                                ).fetchone() == ("dbnew", 0)
        held = p.connect(dbname="dbnew")
        assert run(p, "DROP TENANT dbnew DROP DATA") == "DROP TENANT"
        assert not database_exists(pg, "dbnew")
        assert not os.path.exists(os.path.join(p.incdir, "dbnew.ini"))
        assert "dbnew" not in listed(p)
        with pytest.raises(psycopg.OperationalError):
            held.execute("select 1")
        held.close()
        assert login_error(p, "dbnew").sqlstate == "3D000"
    finally:
        with pg.connect() as c:
            c.execute("DROP DATABASE IF EXISTS dbnew WITH (FORCE)")
            c.execute("DROP DATABASE IF EXISTS tmpl_db")
            c.execute("ALTER ROLE app NOCREATEDB")


def test_create_tenant_in_shared_mode_creates_nothing_and_sets_its_tenant_id(pg, pgtenant):
    p = start(pgtenant)
    assert run(p, "CREATE TENANT rowsco MODE shared BACKEND main WITH (tenant_id = 'tid-9')"
               ) == "CREATE TENANT"
    with p.connect(dbname="rowsco") as conn:
        assert conn.execute("select current_setting('app.tenant_id')").fetchone() == ("tid-9",)
    # DROP keeps the data (there is none here) and removes the section
    assert run(p, "DROP TENANT rowsco") == "DROP TENANT"
    assert login_error(p, "rowsco").sqlstate == "3D000"


def test_create_tenant_of_a_template_creates_its_schema_and_is_served_at_once(pg, pgtenant):
    drop_schema(pg, "s_t_fresh")
    try:
        p = start(pgtenant, {"template_negative_ttl": "60s"}, SCHEMA_TEMPLATE)
        assert login_error(p, "t_fresh").sqlstate == "3D000"  # now cached as missing
        assert run(p, "CREATE TENANT t_fresh TEMPLATE per_schema") == "CREATE TENANT"
        assert schema_exists(pg, "s_t_fresh")
        assert os.listdir(p.incdir) == []  # a template's tenant has no section
        with p.connect(dbname="t_fresh") as conn:
            assert conn.execute("select current_schemas(false)::text").fetchone() == \
                ("{s_t_fresh,public}",)
        e = fails(p, "CREATE TENANT x_other TEMPLATE per_schema")
        assert e.sqlstate == "22023"
        assert fails(p, "CREATE TENANT t_y TEMPLATE nosuch").sqlstate == "42704"
        # DROP DATA of a template's tenant drops its schema; it is unknown afterwards
        assert run(p, "DROP TENANT t_fresh DROP DATA") == "DROP TENANT"
        assert not schema_exists(pg, "s_t_fresh")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            e = login_error(p, "t_fresh")
            if e.sqlstate == "3D000":
                break
            assert e.sqlstate == "55000"  # disabled until it has left memory
            time.sleep(0.3)
        assert e.sqlstate == "3D000"
    finally:
        drop_schema(pg, "s_t_fresh")


def test_a_failed_section_write_drops_the_schema_it_created_and_names_the_step(pg, pgtenant):
    drop_schema(pg, "blocked")
    p = start(pgtenant)
    os.makedirs(os.path.join(p.incdir, "blocked.ini"))  # the name is taken by a directory
    e = fails(p, "CREATE TENANT blocked MODE schema BACKEND main")
    assert e.sqlstate == "58030", e
    assert 'step "write section"' in str(e) and "dropped" in str(e)
    assert not schema_exists(pg, "blocked")
    assert "blocked" not in listed(p)
    assert sorted(os.listdir(p.incdir)) == ["blocked.ini"]


def test_a_failed_migration_removes_the_section_and_the_schema(pg, pgtenant, tmp_path):
    drop_schema(pg, "migco")
    p = start(pgtenant, {"migrations_dir": str(tmp_path / "no-such-migrations")})
    e = fails(p, "CREATE TENANT migco MODE schema BACKEND main")
    assert 'step "migrate"' in str(e), e
    assert not schema_exists(pg, "migco")
    assert os.listdir(p.incdir) == []
    assert "migco" not in listed(p)
    assert login_error(p, "migco").sqlstate == "3D000"


def test_a_schema_that_already_exists_is_an_error_and_is_left_alone(pg, pgtenant):
    with pg.connect(dbname="appdb") as c:
        c.execute("DROP SCHEMA IF EXISTS taken CASCADE")
        c.execute("CREATE SCHEMA taken AUTHORIZATION app")
    try:
        p = start(pgtenant)
        e = fails(p, "CREATE TENANT taken MODE schema BACKEND main")
        assert e.sqlstate == "42P06" and 'step "create schema"' in str(e)
        assert schema_exists(pg, "taken")
        assert os.listdir(p.incdir) == []
    finally:
        drop_schema(pg, "taken")


def test_drop_tenant_keeps_its_schema_unless_drop_data(pg, pgtenant):
    for s in ("keepme", "dropme"):
        drop_schema(pg, s)
    try:
        p = start(pgtenant)
        for s in ("keepme", "dropme"):
            assert run(p, f"CREATE TENANT {s} MODE schema BACKEND main") == "CREATE TENANT"
        held = p.connect(dbname="keepme")
        assert run(p, "DROP TENANT keepme") == "DROP TENANT"
        with pytest.raises(psycopg.OperationalError):
            held.execute("select 1")  # closed after its (idle) transaction
        held.close()
        assert schema_exists(pg, "keepme")
        assert not os.path.exists(os.path.join(p.incdir, "keepme.ini"))
        assert login_error(p, "keepme").sqlstate == "3D000"
        assert run(p, "DROP TENANT dropme DROP DATA") == "DROP TENANT"
        assert not schema_exists(pg, "dropme")
        assert os.listdir(p.incdir) == []
    finally:
        for s in ("keepme", "dropme"):
            drop_schema(pg, s)


def test_console_refusals_of_create_and_drop_tenant(pg, pgtenant):
    p = start(pgtenant)
    assert fails(p, "CREATE TENANT x1 MODE schema BACKEND main", WATCHER,
                 WATCHER_PASS).sqlstate == "42501"
    assert fails(p, "DROP TENANT acme", WATCHER, WATCHER_PASS).sqlstate == "42501"
    assert fails(p, 'CREATE TENANT "bad name" MODE schema BACKEND main').sqlstate == "42602"
    assert fails(p, "CREATE TENANT x2 MODE schema BACKEND nosuch").sqlstate == "42704"
    assert fails(p, "CREATE TENANT x3").sqlstate == "42601"
    assert fails(p, "CREATE TENANT x4 MODE schema BACKEND main WITH (nokey = 1)"
                 ).sqlstate == "22023"
    assert fails(p, "DROP TENANT nosuch").sqlstate == "42704"
    e = fails(p, "DROP TENANT acme")  # its section is in the main file
    assert e.sqlstate == "55000" and "by hand" in str(e)
    with console(p) as c:
        rows = c.execute("SHOW HELP").fetchall()
    assert any(r[0].startswith("CREATE TENANT") for r in rows)
    assert any(r[0].startswith("DROP TENANT") for r in rows)
    assert p.alive()
