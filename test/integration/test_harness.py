"""The harness itself: the session's PostgreSQL has the roles, databases
and pg_hba rules the other tests rely on."""

import psycopg
import pytest


def test_postgres_has_the_test_roles_and_databases(pg):
    with pg.connect() as c:
        roles = {r[0] for r in c.execute("select rolname from pg_roles")}
        dbs = {r[0] for r in c.execute("select datname from pg_database")}
        assert {"app", "md5user", "trustuser", "other"} <= roles
        assert {"appdb", "acme", "globex"} <= dbs
        assert c.execute("show max_connections").fetchone()[0] == "200"
        assert c.execute("show fsync").fetchone()[0] == "off"


@pytest.mark.parametrize("user,password,method", [
    ("app", "apppass", "scram"),
    ("md5user", "md5pass", "md5"),
    ("trustuser", "", "trust"),
])
def test_postgres_tcp_login_uses_the_configured_method(pg, user, password, method):
    with pg.connect_tcp(user=user, password=password, dbname="acme") as c:
        assert c.execute("select current_user").fetchone()[0] == user
    if method != "trust":
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            pg.connect_tcp(user=user, password="wrong", dbname="acme")
