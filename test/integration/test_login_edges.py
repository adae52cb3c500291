"""Logins at the edges: monitoring probes that name no known user
(pg_isready), credentials bound to one tenant, and startup packets that are
not startup packets (SPEC §3, §8)."""

import socket
import struct
import time

import pytest

import pgt
from test_tls import certs, tls_globals  # noqa: F401 (certs is a fixture)


def pg_isready(p, user=None, dbname=None):
    cmd = ["pg_isready", "-h", "127.0.0.1", "-p", str(p.port), "-t", "10"]
    if user:
        cmd += ["-U", user]
    if dbname:
        cmd += ["-d", dbname]
    return pgt.run(cmd, timeout=30)


@pytest.mark.parametrize("auth_type", ["trust", "md5", "scram-sha-256", "cert"])
def test_pg_isready_with_a_user_missing_from_auth_file_reports_accepting(pgtenant, certs,
                                                                          auth_type):
    g = {"auth_type": auth_type}
    if auth_type == "cert":
        g.update(tls_globals(certs, "allow", tls_ca_file=certs.path("ca.crt")))
    p = pgtenant(g)
    for user, dbname in [(None, None), ("nobody", "nowhere"), ("nobody", "acme"),
                         ("nobody.acme", "appdb")]:
        res = pg_isready(p, user, dbname)
        assert res.returncode == 0, (user, dbname, res.stdout, res.stderr)
        assert "accepting connections" in res.stdout, res.stdout
        assert p.alive(), f"pgtenant died on pg_isready -U {user} -d {dbname}:\n{p.log()}"
    if auth_type != "cert":
        with p.connect() as conn:
            assert conn.execute("select current_database()").fetchone()[0] == "acme"


def test_trust_refuses_an_unknown_user_after_the_tenant_checks(pgtenant):
    p = pgtenant({"auth_type": "trust", "tenant_users": None},
                 tenants={"acme": {"mode": "database", "backend": "main", "dbname": "acme",
                                   "users": "app"},
                          "globex": {"mode": "database", "backend": "main", "dbname": "globex",
                                     "users": "app"}})
    e = pgt.startup_error(p.port, "nobody", "acme")
    assert e.sqlstate == "28000", e.fields
    e = pgt.startup_error(p.port, "nobody", "nowhere")
    assert e.sqlstate == "3D000", e.fields
    assert p.alive()


def bound_users():
    users = dict(pgt.DEFAULT_USERS)
    users["app.acme"] = "acmesecret"
    return users


@pytest.mark.parametrize("user,dbname", [("app.acme.globex", "appdb"), ("app.acme.globex", "globex"),
                                         ("app.acme", "globex")])
def test_a_credential_bound_to_one_tenant_is_refused_for_another(pgtenant, user, dbname):
    p = pgtenant(users=bound_users())
    e = pgt.startup_error(p.port, user, dbname, "acmesecret")
    assert e.sqlstate == "28000", e.fields
    assert "acme" in e.message and "globex" in e.message, e.fields
    with p.connect(user="app.acme", dbname="appdb", password="acmesecret") as conn:
        assert conn.execute("select current_database()").fetchone()[0] == "acme"


def test_a_bound_credential_stays_bound_when_tenants_come_from_the_database(pgtenant):
    p = pgtenant({"tenant_from": "database"}, users=bound_users())
    e = pgt.startup_error(p.port, "app.acme", "globex", "acmesecret")
    assert e.sqlstate == "28000", e.fields
    res = pgt.run(["psql", "-XAtc", "select current_database()"],
                  env=p.env(user="app.acme", dbname="acme", password="acmesecret"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "acme"


def _startup(params, version=196608):
    return pgt.startup_packet(params, version)


INVALID_STARTUP = {
    # node-postgres ends a connection it never started with a Terminate message
    "terminate_before_startup": pgt.msg(b"X"),
    "garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "random_bytes": bytes(range(7, 250, 3)),
    "length_zero": struct.pack("!I", 0) + b"\0" * 8,
    "over_10000_bytes": _startup({"user": "app", "database": "acme", "application_name": "x" * 10000}),
    "unknown_protocol_number": struct.pack("!II", 8, 0x12345678),
    "not_terminated": struct.pack("!II", 16, 196608) + b"user\0app",
    "parameter_without_value": struct.pack("!II", 14, 196608) + b"user\0\0",
    "encryption_request_with_a_bad_length": struct.pack("!III", 12, 80877103, 0),
}


@pytest.mark.parametrize("case", sorted(INVALID_STARTUP))
def test_an_invalid_startup_packet_is_closed_without_a_message_and_logged(pgtenant, case):
    p = pgtenant()
    with p.connect() as other:
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        try:
            try:
                s.sendall(INVALID_STARTUP[case])
                data = s.recv(65536)
            except ConnectionResetError:
                data = b""
        finally:
            s.close()
        assert data == b"", f"expected a silent close, got {data!r}"
        assert other.execute("select 1").fetchone()[0] == 1
    pgt.wait_for(lambda: "invalid startup packet" in p.log(), timeout=5, period=0.1,
                 what="the log line about the invalid startup packet")
    assert p.alive()


def test_an_old_protocol_version_is_told_it_is_unsupported(pgtenant):
    p = pgtenant()
    with pgt.RawConn(p.port, timeout=10) as c:
        c.send(_startup({"user": "app", "database": "acme"}, version=2 << 16))
        msgs = c.read_until_close()
    errors = [pgt.parse_fields(b) for k, b in msgs if k == b"E"]
    assert errors and errors[0]["C"] == "0A000", msgs


def test_a_startup_packet_without_a_user_is_refused_with_28000(pgtenant):
    p = pgtenant()
    with pgt.RawConn(p.port, timeout=10) as c:
        c.send(_startup({"database": "acme"}))
        msgs = c.read_until_close()
    errors = [pgt.parse_fields(b) for k, b in msgs if k == b"E"]
    assert errors and errors[0]["C"] == "28000", msgs


def test_client_encoding_is_reported_in_postgres_spelling(pgtenant):
    """psycopg reads the encoding from ParameterStatus: utf8 comes back as UTF8, eucjp as
    EUC_JP, as PostgreSQL reports them."""
    p = pgtenant()
    for sent, want in [("utf8", "UTF8"), ("eucjp", "EUC_JP"), ("LATIN1", "LATIN1")]:
        c = p.raw(params={"client_encoding": sent})
        assert c.params.get("client_encoding") == want, (sent, c.params)
        assert c.query("show client_encoding") == [[want]]
        c.close()
