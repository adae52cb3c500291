"""Client authentication, tenant resolution (SPEC §3) and the errors a
client sees when its login cannot be accepted (SPEC §8)."""

import base64
import hashlib
import hmac
import os

import psycopg
import pytest

import pgt


def scram_secret(password, iterations=4096):
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


def md5_secret(user, password):
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def who(conn):
    return conn.execute("select current_user, current_database()").fetchone()


@pytest.mark.parametrize("auth_type", ["scram-sha-256", "md5", "trust"])
@pytest.mark.parametrize("user,dbname", [("app", "acme"), ("app.acme", "appdb")],
                         ids=["tenant_by_dbname", "tenant_by_user_suffix"])
def test_client_logs_in_with_each_auth_type(pgtenant, auth_type, user, dbname):
    p = pgtenant({"auth_type": auth_type})
    with p.connect(user=user, dbname=dbname) as conn:
        assert who(conn) == ("app", "acme")
    c = p.raw(user=user, dbname=dbname)
    try:
        assert c.scalar("select current_database()") == "acme"
    finally:
        c.close()


@pytest.mark.parametrize("auth_type", ["scram-sha-256", "md5"])
def test_wrong_password_is_refused_with_28P01(pgtenant, auth_type):
    p = pgtenant({"auth_type": auth_type})
    e = pgt.startup_error(p.port, "app", "acme", "wrongpass")
    assert e.sqlstate == "28P01", e.fields
    assert e.severity == "FATAL"
    with pytest.raises(psycopg.OperationalError):
        p.connect(password="wrongpass")
    # an unknown user is refused the same way, telling nothing more
    e = pgt.startup_error(p.port, "nobody", "acme", "whatever")
    assert e.sqlstate == "28P01", e.fields
    assert p.connect().execute("select 1").fetchone()[0] == 1


def test_trust_auth_accepts_any_password(pgtenant):
    p = pgtenant({"auth_type": "trust"})
    with p.connect(password="not-the-password") as conn:
        assert who(conn) == ("app", "acme")


@pytest.mark.parametrize("auth_type,secret_kind", [
    ("scram-sha-256", "scram"), ("scram-sha-256", "plain"), ("md5", "md5"), ("md5", "plain")])
def test_auth_file_secrets_in_each_format_work(pgtenant, auth_type, secret_kind):
    pw = pgt.APP_PASSWORD
    secret = {"plain": pw, "md5": md5_secret("app", pw), "scram": scram_secret(pw)}[secret_kind]
    users = dict(pgt.DEFAULT_USERS, app=secret)
    p = pgtenant({"auth_type": auth_type}, users=users)
    with p.connect(password=pw) as conn:
        assert who(conn) == ("app", "acme")
    e = pgt.startup_error(p.port, "app", "acme", "wrongpass")
    assert e.sqlstate == "28P01", e.fields


def test_unknown_tenant_in_user_suffix_is_3D000(pgtenant):
    p = pgtenant()
    e = pgt.startup_error(p.port, "app.nosuch", "appdb", pgt.APP_PASSWORD)
    assert e.sqlstate == "3D000", e.fields
    assert e.severity == "FATAL"
    assert "nosuch" in e.message


def test_no_tenant_named_is_3D000_with_a_hint(pgtenant):
    p = pgtenant()
    e = pgt.startup_error(p.port, "app", "appdb", pgt.APP_PASSWORD)
    assert e.sqlstate == "3D000", e.fields
    assert e.fields.get("H"), f"no hint on how to name a tenant: {e.fields}"


def test_wrong_password_with_unknown_tenant_reveals_nothing_about_tenants(pgtenant):
    p = pgtenant()
    e = pgt.startup_error(p.port, "app.nosuch", "appdb", "wrongpass")
    assert e.sqlstate == "28P01", e.fields


def test_user_not_in_tenant_users_is_28000(pgtenant):
    p = pgtenant(tenants={"acme": {"mode": "database", "backend": "main", "dbname": "acme",
                                   "users": "app"}})
    e = pgt.startup_error(p.port, "other.acme", "appdb", "otherpass")
    assert e.sqlstate == "28000", e.fields
    e = pgt.startup_error(p.port, "other", "acme", "otherpass")
    assert e.sqlstate == "28000", e.fields
    # other may still use globex (tenant_users = *), app may use acme
    with p.connect(user="other", dbname="globex") as conn:
        assert conn.execute("select current_database()").fetchone()[0] == "globex"
    with p.connect(user="app.acme", dbname="appdb") as conn:
        assert conn.execute("select current_database()").fetchone()[0] == "acme"


def test_user_suffix_and_database_naming_different_tenants_is_28000(pgtenant):
    p = pgtenant()
    e = pgt.startup_error(p.port, "app.acme", "globex", pgt.APP_PASSWORD)
    assert e.sqlstate == "28000", e.fields
    assert "mismatch" in e.message.lower(), e.fields


def test_user_suffix_and_database_naming_the_same_tenant_is_accepted(pgtenant):
    p = pgtenant()
    with p.connect(user="app.globex", dbname="globex") as conn:
        assert conn.execute("select current_database()").fetchone()[0] == "globex"


def test_replication_startup_parameter_is_08P01(pgtenant):
    p = pgtenant()
    e = pgt.startup_error(p.port, "app", "acme", pgt.APP_PASSWORD,
                          params={"replication": "database"})
    assert e.sqlstate == "08P01", e.fields
    assert p.connect().execute("select 1").fetchone()[0] == 1


def test_options_search_path_is_allowed_for_database_mode_tenants(pgtenant):
    p = pgtenant()
    with p.connect(options="-c search_path=x") as conn:
        assert conn.execute("show search_path").fetchone()[0] == "x"
    c = p.raw(params={"search_path": "y, public"})
    try:
        assert c.scalar("show search_path") == "y, public"
    finally:
        c.close()


def test_max_client_conn_refuses_the_next_client_with_53300(pgtenant):
    p = pgtenant({"max_client_conn": 3})
    conns = [p.connect() for _ in range(3)]
    try:
        e = pgt.startup_error(p.port, "app", "acme", pgt.APP_PASSWORD)
        assert e.sqlstate == "53300", e.fields
        for c in conns:
            assert c.execute("select 1").fetchone()[0] == 1
        conns.pop().close()

        def can_connect():
            try:
                with p.connect() as c:
                    return c.execute("select 1").fetchone()[0] == 1
            except psycopg.OperationalError:
                return False
        pgt.wait_for(can_connect, timeout=10, period=0.2, what="a free client slot")
    finally:
        for c in conns:
            c.close()


@pytest.mark.parametrize("server_user,server_password", [
    ("md5user", "md5pass"), ("trustuser", None)], ids=["md5_server", "trust_server"])
def test_pgtenant_logs_in_to_servers_with_md5_and_trust(pg, pgtenant, server_user,
                                                          server_password):
    p = pgtenant(
        backends={"b2": {"host": "127.0.0.1", "port": pg.port, "dbname": "globex",
                         "user": server_user, "password": server_password}},
        tenants={"t2": {"mode": "database", "backend": "b2"}})
    with p.connect(dbname="t2") as conn:
        assert conn.execute("select current_user, current_database()").fetchone() == (
            server_user, "globex")


def test_tenant_named_in_startup_options(pgtenant):
    p = pgtenant({"tenant_from": "options, user, database"})
    with p.connect(dbname="appdb", options="-c pgtenant.tenant=globex") as conn:
        assert conn.execute("select current_database()").fetchone()[0] == "globex"
    with p.connect(dbname="appdb", options="--pgtenant.tenant=acme") as conn:
        assert conn.execute("select current_database()").fetchone()[0] == "acme"
    e = pgt.startup_error(p.port, "app", "globex", pgt.APP_PASSWORD,
                          params={"options": "-c pgtenant.tenant=acme"})
    assert e.sqlstate == "28000", e.fields


def test_auth_file_entry_with_tenant_suffix_is_a_credential_for_that_tenant_only(pgtenant):
    users = dict(pgt.DEFAULT_USERS)
    users["app.acme"] = "acmesecret"
    p = pgtenant(users=users)
    with p.connect(user="app.acme", dbname="appdb", password="acmesecret") as conn:
        assert conn.execute("select current_user, current_database()").fetchone() == (
            "app", "acme")
    e = pgt.startup_error(p.port, "app.globex", "appdb", "acmesecret")
    assert e.sqlstate == "28P01", e.fields
    e = pgt.startup_error(p.port, "app", "globex", "acmesecret")
    assert e.sqlstate == "28P01", e.fields


def _serves(p):
    with p.connect() as conn:
        return conn.execute("select 1").fetchone()[0] == 1


def test_auth_file_readable_by_everyone_gets_a_warning(pgtenant):
    p = pgtenant(start=False)
    os.chmod(p.auth_file, 0o644)
    p.start()
    assert f"auth_file {p.auth_file} is readable by every user" in p.log()
    assert _serves(p)


def test_auth_file_only_its_owner_reads_starts_without_that_warning(pgtenant):
    p = pgtenant(start=False)
    os.chmod(p.auth_file, 0o600)
    p.start()
    assert f"auth_file {p.auth_file} is readable" not in p.log()
    assert _serves(p)
