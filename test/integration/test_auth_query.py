"""auth_user / auth_query (issue 18): users missing from auth_file are looked
up on the tenant's backend and database, without stalling other clients,
with a fixed search_path (CVE-2025-12819), expired passwords refused
(CVE-2025-2291), answers cached until a reload."""

import threading
import time

import psycopg
import pytest

import pgt

ROLES_SQL = """
DROP SCHEMA IF EXISTS aq_evil CASCADE;
DROP ROLE IF EXISTS aq_scram;
DROP ROLE IF EXISTS aq_md5;
DROP ROLE IF EXISTS aq_expired;
DROP ROLE IF EXISTS aq_nopass;
DROP ROLE IF EXISTS aq_lookup;
SET password_encryption = 'scram-sha-256';
CREATE ROLE aq_scram LOGIN PASSWORD 'scrampass';
CREATE ROLE aq_expired LOGIN PASSWORD 'expiredpass' VALID UNTIL '2000-01-01';
CREATE ROLE aq_nopass LOGIN;
CREATE ROLE aq_lookup LOGIN SUPERUSER;
SET password_encryption = 'md5';
CREATE ROLE aq_md5 LOGIN PASSWORD 'md5pass';
RESET password_encryption;
CREATE SCHEMA aq_evil;
CREATE TABLE aq_evil.pg_shadow (usename name, passwd text);
INSERT INTO aq_evil.pg_shadow VALUES ('aq_mallory', 'evilpass'), ('aq_scram', 'evilpass');
ALTER ROLE aq_lookup SET search_path = aq_evil, pg_catalog;
"""


@pytest.fixture(scope="module")
def roles(pg):
    with pg.connect(dbname="acme") as c:
        for stmt in ROLES_SQL.strip().split(";\n"):
            c.execute(stmt.rstrip(";"))
    yield
    with pg.connect(dbname="acme") as c:
        c.execute("DROP SCHEMA IF EXISTS aq_evil CASCADE")


def authq_pgtenant(pgtenant, pg, auth_type="scram-sha-256", users=None, **g):
    """Tenants acme and globex on a backend reached over the unix socket (trust), auth_user
    postgres unless told otherwise."""
    globals_ = {"auth_type": auth_type, "auth_user": "postgres"}
    globals_.update(g)
    return pgtenant(globals_, users=users,
                    backends={"main": {"host": pg.sockdir, "port": pg.port, "dbname": "appdb",
                                       "user": "app"}})


def login(p, user, password, dbname="appdb", **kw):
    return psycopg.connect(p.conninfo(user=user, dbname=dbname, password=password, **kw),
                           autocommit=True)


@pytest.mark.parametrize("auth_type", ["scram-sha-256", "md5"])
def test_a_user_missing_from_auth_file_logs_in_with_its_database_password(pg, pgtenant, roles,
                                                                          auth_type):
    p = authq_pgtenant(pgtenant, pg, auth_type)
    # an md5 hash is salted with the role name: the tenant comes from the database name then
    for user, dbname, password in [("aq_scram.acme", "appdb", "scrampass"),
                                   ("aq_scram", "acme", "scrampass"),
                                   ("aq_md5", "acme", "md5pass")]:
        with login(p, user, password, dbname=dbname) as conn:
            assert conn.execute("select current_database()").fetchone()[0] == "acme"
    for user, password in [("aq_scram", "wrong"), ("aq_nobody", "x"), ("aq_nopass", ""),
                           ("aq_expired", "expiredpass")]:
        e = pgt.startup_error(p.port, f"{user}.acme", "appdb", password)
        assert e.sqlstate == "28P01", (user, e.fields)
    # auth_file users are not looked up
    with p.connect() as conn:
        assert conn.execute("select 1").fetchone()[0] == 1


def test_the_lookup_runs_with_search_path_pg_catalog_whatever_the_role_or_client_says(
        pg, pgtenant, roles):
    unqualified = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1"
    # the attack is real: as aq_lookup with its own defaults the query reads aq_evil's table
    with psycopg.connect(host=pg.sockdir, port=pg.port, dbname="acme", user="aq_lookup") as c:
        assert c.execute(unqualified.replace("$1", "'aq_mallory'")).fetchone() == (
            "aq_mallory", "evilpass")
    p = authq_pgtenant(pgtenant, pg, auth_user="aq_lookup", auth_query=unqualified)
    for params in [None, {"options": "-c search_path=aq_evil,pg_catalog"}]:
        e = pgt.startup_error(p.port, "aq_mallory.acme", "appdb", "evilpass", params=params)
        assert e.sqlstate == "28P01", e.fields
        e = pgt.startup_error(p.port, "aq_scram.acme", "appdb", "evilpass", params=params)
        assert e.sqlstate == "28P01", e.fields
    with login(p, "aq_scram.acme", "scrampass") as conn:
        assert conn.execute("select 1").fetchone()[0] == 1


def test_a_slow_lookup_does_not_stall_other_clients(pg, pgtenant, roles):
    slow = ("SELECT usename, passwd FROM pg_catalog.pg_shadow, pg_catalog.pg_sleep(2) "
            "WHERE usename = $1")
    p = authq_pgtenant(pgtenant, pg, auth_query=slow)
    box = {}

    def slow_login():
        try:
            with login(p, "aq_scram.acme", "scrampass") as conn:
                box["ok"] = conn.execute("select 1").fetchone()[0]
        except Exception as e:  # noqa: BLE001
            box["error"] = e

    with p.connect() as other:
        t = threading.Thread(target=slow_login, daemon=True)
        start = time.monotonic()
        t.start()
        time.sleep(0.3)
        for _ in range(5):
            assert other.execute("select 1").fetchone()[0] == 1
        with p.connect(dbname="globex") as fresh:
            assert fresh.execute("select current_database()").fetchone()[0] == "globex"
        assert time.monotonic() - start < 1.5, "other clients waited for the lookup"
        assert t.is_alive(), "the lookup did not take the 2 s the query sleeps"
        t.join(20)
    assert box.get("ok") == 1, box


def test_answers_are_cached_until_a_reload(pg, pgtenant, roles):
    p = authq_pgtenant(pgtenant, pg, admin_users="admin",
                       users=dict(pgt.DEFAULT_USERS, admin="adminpass"))
    with login(p, "aq_scram.acme", "scrampass"):
        pass
    with pg.connect() as c:
        c.execute("ALTER ROLE aq_scram PASSWORD 'newpass'")
    try:
        with login(p, "aq_scram.acme", "scrampass"):
            pass  # the cached secret
        res = pgt.run(["psql", "-X", "-c", "RELOAD"], env=p.env(user="admin", dbname="pgtenant"))
        assert res.returncode == 0, res.stderr
        with login(p, "aq_scram.acme", "newpass"):
            pass
        e = pgt.startup_error(p.port, "aq_scram.acme", "appdb", "scrampass")
        assert e.sqlstate == "28P01", e.fields
    finally:
        with pg.connect() as c:
            c.execute("ALTER ROLE aq_scram PASSWORD 'scrampass'")


def test_a_failing_lookup_refuses_the_login_and_harms_no_one(pg, pgtenant, roles):
    p = authq_pgtenant(pgtenant, pg, auth_user="aq_no_such_role")
    e = pgt.startup_error(p.port, "aq_scram.acme", "appdb", "scrampass")
    assert e.sqlstate == "08006", e.fields
    assert "auth_query" in p.log()
    with p.connect() as conn:
        assert conn.execute("select 1").fetchone()[0] == 1
