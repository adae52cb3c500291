"""
TLS on both sides of pgtenant (SPEC §2 tls_* and server_tls_* keys, §3 sni).

The certificates are made here, at test time, with the openssl CLI: a test
CA, a second CA nobody trusts, a server certificate (for pgtenant and for a
PostgreSQL with ssl=on) and client certificates. No key is committed.

The TLS PostgreSQL is a second cluster started for this module (pgt.PgServer,
then ssl switched on with ALTER SYSTEM and a reload); the session's own
cluster keeps ssl off, which the prefer/require cases use.
"""

import os
import pwd
import shutil
import signal
import socket
import ssl
import struct
import time

import psycopg
import pytest

import pgt

SSL_REQUEST = struct.pack("!II", 8, 80877103)


# ---------------------------------------------------------------- certificates

def _openssl(*args):
    pgt.run(["openssl"] + [str(a) for a in args], timeout=60, check=True)


class Certs:
    """Every file the tests need, in one directory."""

    def __init__(self, d):
        self.dir = d

    def path(self, name):
        return os.path.join(self.dir, name)

    def make_ca(self, name):
        _openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", self.path(name + ".key"), "-out", self.path(name + ".crt"),
                 "-days", "2", "-subj", f"/CN={name}")
        os.chmod(self.path(name + ".key"), 0o600)

    def make_cert(self, name, cn, ca, san=None, client=False):
        key, csr, crt = (self.path(name + ext) for ext in (".key", ".csr", ".crt"))
        ext = self.path(name + ".ext")
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
        with open(ext, "w") as f:
            f.write("basicConstraints = CA:FALSE\n")
            f.write("extendedKeyUsage = %s\n" % ("clientAuth" if client else "serverAuth"))
            if san:
                f.write(f"subjectAltName = {san}\n")
        _openssl("x509", "-req", "-in", csr, "-CA", self.path(ca + ".crt"), "-CAkey", self.path(ca + ".key"),
                 "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-out", crt, "-days", "2",
                 "-extfile", ext)
        os.chmod(key, 0o600)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    c = Certs(str(tmp_path_factory.mktemp("tls-certs")))
    c.make_ca("ca")
    c.make_ca("otherca")
    san = "DNS:localhost, DNS:*.db.example.com, IP:127.0.0.1"
    c.make_cert("server", "localhost", "ca", san=san)
    c.make_cert("server2", "localhost", "ca", san=san)  # the reload test rotates to this one
    c.make_cert("server_dnsonly", "pg.example.com", "ca", san="DNS:pg.example.com")
    c.make_cert("client_app", "app", "ca", client=True)
    c.make_cert("client_app_acme", "app.acme", "ca", client=True)
    c.make_cert("client_other", "other", "ca", client=True)
    c.make_cert("client_app_otherca", "app", "otherca", client=True)
    return c


# ---------------------------------------------------------------- a PostgreSQL with ssl = on

def start_tls_postgres(certs, cert="server"):
    """A fresh cluster (pgt.PgServer) with ssl switched on, serving certs' `cert`."""
    server = pgt.PgServer()
    server.start()
    for ext in ("crt", "key"):
        dst = os.path.join(server.datadir, "server." + ext)
        shutil.copyfile(certs.path(f"{cert}.{ext}"), dst)
        os.chmod(dst, 0o600)
        if server.run_as:
            pw = pwd.getpwnam(server.run_as)
            os.chown(dst, pw.pw_uid, pw.pw_gid)
    with server.connect() as c:
        c.execute("ALTER SYSTEM SET ssl = on")
        c.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while True:
        try:
            with psycopg.connect(host="127.0.0.1", port=server.port, dbname="acme", user="app",
                                 password=pgt.APP_PASSWORD, sslmode="require", connect_timeout=5) as c:
                assert c.pgconn.ssl_in_use
            return server
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def tls_pg(certs):
    server = start_tls_postgres(certs)
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- clients

def tls_globals(certs, mode="require", **extra):
    g = {"tls_mode": mode, "tls_cert_file": certs.path("server.crt"),
         "tls_key_file": certs.path("server.key")}
    g.update(extra)
    return g


class TlsRawConn(pgt.RawConn):
    """pgt.RawConn over TLS: SSLRequest (or direct TLS with ALPN), then the usual protocol."""

    def __init__(self, port, server_name=None, direct=False, alpn=True, cert=None, key=None,
                 timeout=15):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if cert:
            ctx.load_cert_chain(cert, key)
        if alpn:
            ctx.set_alpn_protocols(["postgresql"])
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if not direct:
            sock.sendall(SSL_REQUEST)
            answer = sock.recv(1)
            assert answer == b"S", f"SSLRequest answered {answer!r}"
        self.sock = ctx.wrap_socket(sock, server_hostname=server_name)
        self.buf = b""
        self.params = {}
        self.notices = []
        self.key = None

    def peer_cert(self):
        return self.sock.getpeercert(binary_form=True)


def tls_startup_error(port, user, dbname, password="", **kw):
    c = TlsRawConn(port, **kw)
    try:
        c.startup(user, dbname, password)
    except pgt.PgError as e:
        return e
    finally:
        c.sock.close()
    raise AssertionError(f"TLS startup as {user}/{dbname} succeeded, expected an error")


def der_of(certs, name):
    with open(certs.path(name + ".crt")) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def psql(p, conninfo, sql):
    return pgt.run(["psql", "-X", "-At", "-d", conninfo, "-c", sql], timeout=30,
                   env={"PGPASSWORD": pgt.APP_PASSWORD, "PGCONNECT_TIMEOUT": "10"})


def conninfo(p, **kw):
    parts = {"host": "127.0.0.1", "port": p.port, "user": "app", "dbname": "acme",
             "password": pgt.APP_PASSWORD, "gssencmode": "disable", "connect_timeout": 10}
    parts.update(kw)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in parts.items()})


def local_port(conn):
    s = socket.socket(fileno=os.dup(conn.pgconn.socket))
    try:
        return s.getsockname()[1]
    finally:
        s.close()


def show_clients_tls(p):
    """tls column of SHOW CLIENTS, by client port."""
    with psycopg.connect(conninfo(p, dbname="pgtenant", sslmode="prefer"), autocommit=True) as admin:
        cur = admin.execute("SHOW CLIENTS")
        cols = [d.name for d in cur.description]
        return {r[cols.index("port")]: r[cols.index("tls")] for r in cur.fetchall()}


# ---------------------------------------------------------------- client side

def test_sslmode_require_works_with_psql_and_psycopg(pgtenant, certs):
    p = pgtenant(globals_=tls_globals(certs, "require", admin_users="app"))
    res = psql(p, conninfo(p, sslmode="require"), "select current_database()")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "acme"
    with psycopg.connect(conninfo(p, sslmode="require"), autocommit=True) as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("select current_database()").fetchone()[0] == "acme"
        # something bigger than one TLS record both ways
        big = "x" * 100000
        assert c.execute("select length(%s::text), repeat('y', 200000)", [big]).fetchone()[0] == 100000
        assert show_clients_tls(p).get(local_port(c)) == "yes"


def test_require_refuses_plaintext_client_with_28000(pgtenant, certs):
    p = pgtenant(globals_=tls_globals(certs, "require"))
    e = pgt.startup_error(p.port, "app", "acme", pgt.APP_PASSWORD)
    assert e.sqlstate == "28000"
    assert "TLS is required" in e.message
    with pytest.raises(psycopg.OperationalError, match="TLS is required"):
        psycopg.connect(conninfo(p, sslmode="disable"))


def test_allow_accepts_tls_and_plaintext_clients(pgtenant, certs):
    p = pgtenant(globals_=tls_globals(certs, "allow", admin_users="app"))
    with psycopg.connect(conninfo(p, sslmode="disable"), autocommit=True) as plain, \
            psycopg.connect(conninfo(p, sslmode="require"), autocommit=True) as enc:
        assert not plain.pgconn.ssl_in_use
        assert enc.pgconn.ssl_in_use
        assert plain.execute("select 1").fetchone()[0] == 1
        assert enc.execute("select 2").fetchone()[0] == 2
        tls = show_clients_tls(p)
        assert tls[local_port(plain)] == "no"
        assert tls[local_port(enc)] == "yes"


def test_disable_answers_sslrequest_with_n(pgtenant, certs):
    p = pgtenant()
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
        s.sendall(SSL_REQUEST)
        assert s.recv(1) == b"N"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(conninfo(p, sslmode="require"))


def test_unencrypted_bytes_after_sslrequest_are_refused(pgtenant, certs):
    p = pgtenant(globals_=tls_globals(certs, "allow"))
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
        s.sendall(SSL_REQUEST + pgt.startup_packet({"user": "app", "database": "acme"}))
        data = s.recv(1000)
        assert data[:1] == b"E" and b"08P01" in data


def test_direct_tls_with_alpn_postgresql(pgtenant, certs):
    """PostgreSQL 17 clients (sslnegotiation=direct) start TLS at once, with ALPN."""
    p = pgtenant(globals_=tls_globals(certs, "require"))
    c = TlsRawConn(p.port, direct=True)
    c.startup("app", "acme", pgt.APP_PASSWORD)
    assert c.sock.selected_alpn_protocol() == "postgresql"
    assert c.scalar("select current_database()") == "acme"
    c.close()
    e = tls_startup_error(p.port, "app", "acme", pgt.APP_PASSWORD, direct=True, alpn=False)
    assert e.sqlstate == "08P01" and "ALPN" in e.message


def test_sni_host_names_pick_tenants(pgtenant, certs):
    p = pgtenant(globals_=tls_globals(certs, "require", tenant_from="sni, user, database",
                                      sni_suffix=".db.example.com"))
    for tenant in ("acme", "globex"):
        res = psql(p, conninfo(p, host=f"{tenant}.db.example.com", hostaddr="127.0.0.1",
                               sslmode="require", dbname="appdb"),
                   "select current_database()")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == tenant
    # the raw client too: SNI alone names the tenant
    c = TlsRawConn(p.port, server_name="globex.db.example.com")
    c.startup("app", "appdb", pgt.APP_PASSWORD)
    assert c.scalar("select current_database()") == "globex"
    c.close()


def test_sni_mismatch_with_user_suffix_is_28000(pgtenant, certs):
    p = pgtenant(globals_=tls_globals(certs, "require", tenant_from="sni, user, database",
                                      sni_suffix=".db.example.com"))
    e = tls_startup_error(p.port, "app.globex", "appdb", pgt.APP_PASSWORD,
                          server_name="acme.db.example.com")
    assert e.sqlstate == "28000"
    assert "tenant mismatch" in e.message
    res = psql(p, conninfo(p, host="acme.db.example.com", hostaddr="127.0.0.1", sslmode="require",
                           user="app.globex", dbname="appdb"), "select 1")
    assert res.returncode != 0 and "tenant mismatch" in res.stderr


def test_sni_outside_the_suffix_names_no_tenant(pgtenant, certs):
    p = pgtenant(globals_=tls_globals(certs, "require", tenant_from="sni, database",
                                      sni_suffix=".db.example.com"))
    e = tls_startup_error(p.port, "app", "appdb", pgt.APP_PASSWORD, server_name="acme.example.org")
    assert e.sqlstate == "3D000"


# ---------------------------------------------------------------- certificate authentication

def cert_globals(certs):
    return tls_globals(certs, "require", auth_type="cert", tls_ca_file=certs.path("ca.crt"))


def test_cert_auth_good_certificate_logs_in(pgtenant, certs):
    p = pgtenant(globals_=cert_globals(certs))
    res = psql(p, conninfo(p, sslmode="require", sslcert=certs.path("client_app.crt"),
                           sslkey=certs.path("client_app.key"), password=""),
               "select current_database()")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "acme"
    with psycopg.connect(conninfo(p, sslmode="require", sslcert=certs.path("client_app.crt"),
                                  sslkey=certs.path("client_app.key"), password="", dbname="globex"),
                         autocommit=True) as c:
        assert c.execute("select current_database()").fetchone()[0] == "globex"


def test_cert_auth_refuses_other_ca_and_missing_certificate(pgtenant, certs):
    p = pgtenant(globals_=cert_globals(certs))
    e = tls_startup_error(p.port, "app", "acme", cert=certs.path("client_app_otherca.crt"),
                          key=certs.path("client_app_otherca.key"))
    assert e.sqlstate == "28000"
    assert "verification failed" in e.message
    e = tls_startup_error(p.port, "app", "acme")
    assert e.sqlstate == "28000"
    assert "certificate" in e.message
    res = psql(p, conninfo(p, sslmode="require", password=""), "select 1")
    assert res.returncode != 0 and "certificate" in res.stderr
    # a plaintext client never gets as far
    e = pgt.startup_error(p.port, "app", "acme")
    assert e.sqlstate == "28000"


def test_cert_auth_common_name_must_be_the_user(pgtenant, certs):
    p = pgtenant(globals_=cert_globals(certs))
    e = tls_startup_error(p.port, "app", "acme", cert=certs.path("client_other.crt"),
                          key=certs.path("client_other.key"))
    assert e.sqlstate == "28000"
    assert 'for "other"' in e.message


def test_cert_auth_user_dot_tenant_binds_the_tenant(pgtenant, certs):
    p = pgtenant(globals_=cert_globals(certs))
    kw = dict(cert=certs.path("client_app_acme.crt"), key=certs.path("client_app_acme.key"))
    # the CN names the tenant when nothing else does
    c = TlsRawConn(p.port, **kw)
    c.startup("app", "appdb")
    assert c.scalar("select current_database()") == "acme"
    c.close()
    c = TlsRawConn(p.port, **kw)
    c.startup("app.acme", "appdb")
    assert c.scalar("select current_database()") == "acme"
    c.close()
    # ... and is a credential for that tenant only
    e = tls_startup_error(p.port, "app", "globex", **kw)
    assert e.sqlstate == "28000" and "tenant mismatch" in e.message


# ---------------------------------------------------------------- reload

def test_reload_rotates_certificate_without_dropping_connections(pgtenant, certs):
    d = os.path.join(certs.dir, "rotate")
    os.makedirs(d, exist_ok=True)
    crt, key = os.path.join(d, "cur.crt"), os.path.join(d, "cur.key")
    shutil.copyfile(certs.path("server.crt"), crt)
    shutil.copyfile(certs.path("server.key"), key)
    p = pgtenant(globals_=tls_globals(certs, "require", tls_cert_file=crt, tls_key_file=key))
    old = TlsRawConn(p.port)
    old.startup("app", "acme", pgt.APP_PASSWORD)
    assert old.peer_cert() == der_of(certs, "server")
    with psycopg.connect(conninfo(p, sslmode="require"), autocommit=True) as held:
        shutil.copyfile(certs.path("server2.crt"), crt)
        shutil.copyfile(certs.path("server2.key"), key)
        p.signal(signal.SIGHUP)
        pgt.wait_for(lambda: "configuration reloaded" in p.log(), what="reload")
        new = TlsRawConn(p.port)
        new.startup("app", "acme", pgt.APP_PASSWORD)
        assert new.peer_cert() == der_of(certs, "server2")
        # the connections made before the reload go on with their sessions
        assert old.scalar("select 41 + 1") == "42"
        assert held.execute("select 'still here'").fetchone()[0] == "still here"
        new.close()
        # a key that does not fit the certificate: the reload fails, the old pair stays
        shutil.copyfile(certs.path("server.key"), key)
        p.signal(signal.SIGHUP)
        pgt.wait_for(lambda: "reload failed" in p.log(), what="failed reload")
        again = TlsRawConn(p.port)
        again.startup("app", "acme", pgt.APP_PASSWORD)
        assert again.peer_cert() == der_of(certs, "server2")
        again.close()
    old.close()


# ---------------------------------------------------------------- server side

def tls_backend(tls_pg, host="127.0.0.1", **kw):
    b = {"host": host, "port": tls_pg.port, "dbname": "appdb", "user": "app",
         "password": pgt.APP_PASSWORD}
    b.update(kw)
    return b


def backend_ssl(conn):
    return conn.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone()[0]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_server_tls_verify_full_against_postgres(pgtenant, certs, tls_pg, host):
    p = pgtenant(globals_={"server_tls_mode": "verify-full", "server_tls_ca_file": certs.path("ca.crt")},
                 backends={"main": tls_backend(tls_pg, host=host)})
    with p.connect() as c:
        assert backend_ssl(c) is True
        assert c.execute("select current_database()").fetchone()[0] == "acme"
        assert c.execute("select length(repeat('z', 300000))").fetchone()[0] == 300000


def test_server_tls_wrong_ca_fails_promptly_with_08006_naming_the_backend(pgtenant, certs, tls_pg):
    p = pgtenant(globals_={"server_tls_mode": "verify-full",
                           "server_tls_ca_file": certs.path("otherca.crt"),
                           "query_wait_timeout": "60s"},
                 backends={"main": tls_backend(tls_pg)})
    with p.connect() as c:
        for _ in range(3):
            t0 = time.monotonic()
            with pytest.raises(psycopg.Error) as ei:
                c.execute("select 1")
            assert time.monotonic() - t0 < 5
            assert ei.value.sqlstate == "08006"
            assert 'backend "main"' in str(ei.value)
            assert "certificate verify failed" in str(ei.value)


def test_server_tls_verify_full_checks_the_host_name(pgtenant, certs, tls_pg):
    """The certificate is good for localhost and 127.0.0.1; a name it does not list fails."""
    pg_dns = start_tls_postgres(certs, cert="server_dnsonly")
    try:
        p = pgtenant(globals_={"server_tls_mode": "verify-full",
                               "server_tls_ca_file": certs.path("ca.crt")},
                     backends={"main": tls_backend(pg_dns)})
        with p.connect() as c:
            with pytest.raises(psycopg.Error) as ei:
                c.execute("select 1")
            assert ei.value.sqlstate == "08006"
            assert "certificate verify failed" in str(ei.value)
        # verify-ca checks the chain only: the same certificate is fine
        p2 = pgtenant(globals_={"server_tls_mode": "verify-ca",
                                "server_tls_ca_file": certs.path("ca.crt")},
                      backends={"main": tls_backend(pg_dns)})
        with p2.connect() as c:
            assert backend_ssl(c) is True
    finally:
        pg_dns.stop()


def test_per_backend_server_tls_mode_overrides_the_global(pgtenant, pg, certs, tls_pg):
    """Global verify-full towards the TLS PostgreSQL; the session's plain one says disable."""
    p = pgtenant(globals_={"server_tls_mode": "verify-full", "server_tls_ca_file": certs.path("ca.crt")},
                 backends={"main": tls_backend(tls_pg),
                           "plain": {"host": "127.0.0.1", "port": pg.port, "dbname": "appdb",
                                     "user": "app", "password": pgt.APP_PASSWORD,
                                     "server_tls_mode": "disable"}},
                 tenants={"globex": {"mode": "database", "backend": "plain", "dbname": "globex"}})
    with p.connect(dbname="acme") as a, p.connect(dbname="globex") as g:
        assert backend_ssl(a) is True
        assert backend_ssl(g) is False


def test_server_tls_prefer_falls_back_and_require_insists(pgtenant, pg, certs, tls_pg):
    p = pgtenant(globals_={"server_tls_mode": "prefer"})  # the session PostgreSQL: ssl off
    with p.connect() as c:
        assert backend_ssl(c) is False
    p = pgtenant(globals_={"server_tls_mode": "prefer"}, backends={"main": tls_backend(tls_pg)})
    with p.connect() as c:
        assert backend_ssl(c) is True
    p = pgtenant(globals_={"server_tls_mode": "require", "query_wait_timeout": "2s"})
    with p.connect() as c:
        with pytest.raises(psycopg.Error) as ei:
            c.execute("select 1")
        assert "does not support TLS" in str(ei.value)
    # require encrypts but does not verify: an unknown CA is fine
    p = pgtenant(globals_={"server_tls_mode": "require",
                           "server_tls_ca_file": certs.path("otherca.crt")},
                 backends={"main": tls_backend(tls_pg)})
    with p.connect() as c:
        assert backend_ssl(c) is True


def test_tls_on_both_sides_under_load(pgtenant, certs, tls_pg):
    p = pgtenant(globals_=tls_globals(certs, "require", server_tls_mode="verify-full",
                                      server_tls_ca_file=certs.path("ca.crt"), default_pool_size=4),
                 backends={"main": tls_backend(tls_pg)})
    env = p.env()
    env["PGSSLMODE"] = "require"
    res = pgt.pgbench(env, ["-n", "-c", "8", "-j", "2", "-t", "200", "-f", _bench_script(certs)])
    assert res.returncode == 0, res.stdout + res.stderr
    r = pgt.parse_pgbench(res.stdout)
    assert r["processed"] == 1600 and r.get("failed", 0) == 0


def _bench_script(certs):
    path = certs.path("bench.sql")
    with open(path, "w") as f:
        f.write("select length(repeat('q', 20000)), current_database();\n")
    return path


# ---------------------------------------------------------------- SCRAM-SHA-256-PLUS

def test_scram_channel_binding_over_tls(pgtenant, certs):
    """Over TLS pgtenant offers SCRAM-SHA-256-PLUS bound to its certificate."""
    p = pgtenant(globals_=tls_globals(certs, "allow"))
    with psycopg.connect(conninfo(p, sslmode="require", channel_binding="require"),
                         autocommit=True) as c:
        assert c.execute("select current_database()").fetchone()[0] == "acme"
    res = psql(p, conninfo(p, sslmode="require", channel_binding="require"), "select 1")
    assert res.returncode == 0, res.stderr
    # a wrong password is still wrong with channel binding
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(conninfo(p, sslmode="require", channel_binding="require", password="nope"))
    # plaintext: nothing to bind to, so channel_binding=require cannot be met
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(conninfo(p, sslmode="disable", channel_binding="require"))


def test_scram_without_binding_over_tls_when_plus_was_offered_is_refused(pgtenant, certs):
    """A client that says 'y' (can bind, thinks the server cannot) sees a downgrade."""
    p = pgtenant(globals_=tls_globals(certs, "require"))
    c = TlsRawConn(p.port)
    c.send(pgt.startup_packet({"user": "app", "database": "acme"}))
    kind, body = c.recv_msg()
    assert kind == b"R" and struct.unpack("!I", body[:4])[0] == 10
    mechs = [m for m in body[4:].split(b"\0") if m]
    assert mechs == [b"SCRAM-SHA-256-PLUS", b"SCRAM-SHA-256"]
    first = b"y,,n=,r=abcdefghijklmnop"
    c.send(pgt.msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
    kind, body = c.recv_msg()
    assert kind == b"E"
    fields = pgt.parse_fields(body)
    assert "negotiation" in fields["M"]
    c.sock.close()


def test_check_reports_a_certificate_that_cannot_be_loaded(pgtenant, certs):
    p = pgtenant(globals_=tls_globals(certs, "require", tls_key_file=certs.path("client_app.key")),
                 start=False)
    res = pgt.run([pgt.PGTENANT_BIN, "--check", p.ini], timeout=30)
    assert res.returncode == 1
    assert "tls_key_file" in res.stdout
    p = pgtenant(globals_=tls_globals(certs, "require", tls_cert_file=certs.path("missing.crt")),
                 start=False)
    res = pgt.run([pgt.PGTENANT_BIN, "--check", p.ini], timeout=30)
    assert res.returncode == 1 and "missing.crt" in res.stdout
