"""What clients see when something goes wrong (SPEC §8): an unreachable
backend, a server connection killed under a query, malformed startup
packets; `--check`; graceful shutdown on SIGTERM."""

import signal
import socket
import struct
import threading
import time

import psycopg
import pytest

import pgt


def test_unreachable_backend_gives_57P03_naming_it_and_session_goes_on(pgtenant):
    dead_port = pgt.free_port()  # bind-tested and released: nobody listens there
    p = pgtenant({"query_wait_timeout": "2s", "server_login_retry": "500ms",
                  "server_connect_timeout": "1s"},
                 backends={"deadbe": {"host": "127.0.0.1", "port": dead_port, "dbname": "x",
                                      "user": "app", "password": pgt.APP_PASSWORD}},
                 tenants={"deadt": {"mode": "database", "backend": "deadbe"}})
    with p.connect(dbname="deadt") as conn:
        for _ in range(2):
            t0 = time.monotonic()
            with pytest.raises(psycopg.Error) as ei:
                conn.execute("select 1")
            assert time.monotonic() - t0 < 20
            assert ei.value.sqlstate == "57P03", (ei.value.sqlstate, str(ei.value))
            assert "deadbe" in str(ei.value)
    # the healthy tenant is unaffected
    with p.connect(dbname="acme") as conn:
        assert conn.execute("select 1").fetchone()[0] == 1


def _terminate_server_running(pg, marker, dbname="acme"):
    """pg_terminate_backend of the server connection whose query contains marker."""
    def pid():
        rows = [r for r in pg.server_conns(dbname) if marker in (r[4] or "") and r[3] == "active"]
        return rows[0][0] if rows else None
    victim_pid = pgt.wait_for(pid, timeout=10, what=f"{marker} on a server connection")
    with pg.connect() as d:
        assert d.execute("select pg_terminate_backend(%s)", [victim_pid]).fetchone()[0]


def test_server_connection_killed_under_a_query_errors_only_that_client(pg, pgtenant):
    p = pgtenant({"default_pool_size": 5})
    victim = p.connect()
    raw_victim = p.raw()
    bystander = p.connect(dbname="globex")
    try:
        assert bystander.execute("select 1").fetchone()[0] == 1
        outcome = {}

        def sleeper():
            try:
                victim.execute("select pg_sleep(30) -- psycopg victim")
                outcome["ok"] = True
            except Exception as e:
                outcome["e"] = e

        t = threading.Thread(target=sleeper, daemon=True)
        t0 = time.monotonic()
        t.start()
        _terminate_server_running(pg, "psycopg victim")
        t.join(20)
        assert not t.is_alive(), "client still waiting after its server connection died"
        assert time.monotonic() - t0 < 25
        assert "e" in outcome, f"query on a killed server connection did not fail: {outcome}"
        assert isinstance(outcome["e"], psycopg.Error), repr(outcome["e"])

        # the raw client shows the exact SQLSTATE
        raw_victim.send(pgt.msg(b"Q", b"select pg_sleep(30) -- raw victim\0"))
        _terminate_server_running(pg, "raw victim")
        err = None
        try:
            while True:
                kind, body = raw_victim.recv_msg()
                if kind == b"E":
                    err = pgt.parse_fields(body)
                    break
        except (EOFError, ConnectionResetError):
            pass
        assert err is not None, "no ErrorResponse for the query whose server died"
        # SPEC §8: the server's own FATAL is passed on (pg_terminate_backend: 57P01), then close
        assert err.get("C") == "57P01" and err.get("S") == "FATAL", err
        with pytest.raises((EOFError, ConnectionResetError)):
            raw_victim.recv_msg()

        assert bystander.execute("select 2").fetchone()[0] == 2
        assert p.alive()
        with p.connect() as fresh:
            assert fresh.execute("select 3").fetchone()[0] == 3
    finally:
        victim.close()
        raw_victim.sock.close()
        bystander.close()


def test_client_gets_the_servers_fatal_and_is_closed_when_its_server_connection_dies(pg, pgtenant):
    """SPEC §8: as PostgreSQL and PgBouncer do, the server's own FATAL (57P01 for
    pg_terminate_backend) reaches the client, which is then closed; drivers rely on it.
    Nobody else notices."""
    p = pgtenant()
    c = p.raw()
    try:
        with p.connect(dbname="globex") as other:
            c.send(pgt.msg(b"Q", b"select pg_sleep(30) -- victim\0"))
            _terminate_server_running(pg, "victim")
            msgs = []
            with pytest.raises((EOFError, ConnectionResetError)):
                while True:
                    kind, body = c.recv_msg()
                    msgs.append((kind, pgt.parse_fields(body) if kind == b"E" else body))
            errors = [m[1] for m in msgs if m[0] == b"E"]
            assert errors and errors[0].get("C") == "57P01", msgs
            assert errors[0].get("S") == "FATAL", errors[0]
            assert not [m for m in msgs if m[0] == b"Z"], msgs
            assert other.execute("select 'still here'").fetchone()[0] == "still here"
        with p.connect() as again:
            assert again.execute("select 1").fetchone()[0] == 1
    finally:
        c.sock.close()


MALFORMED = {
    "length_3": struct.pack("!I", 3),
    "oversized": struct.pack("!II", 20000, 196608) + b"user\0app\0" + b"x" * 200,
    "garbage_protocol": struct.pack("!II", 8, 0x12345678),
    "length_below_minimum": struct.pack("!II", 7, 196608),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_startup_packet_is_closed_without_a_message(pgtenant, case):
    """SPEC §8: an invalid startup packet is closed silently, as PostgreSQL does."""
    p = pgtenant()
    with p.connect() as other:
        raw = pgt.RawConn(p.port, timeout=10)
        try:
            raw.send(MALFORMED[case])
            try:
                msgs = raw.read_until_close()
            except socket.timeout:
                pytest.fail("pgtenant neither answered nor closed the connection within 10s")
        finally:
            raw.sock.close()
        assert msgs == [], f"expected a silent close, got {msgs!r}"
        assert other.execute("select 1").fetchone()[0] == 1
    with p.connect() as again:
        assert again.execute("select 1").fetchone()[0] == 1


def test_ssl_and_gss_encryption_requests_are_declined_and_startup_continues(pgtenant):
    p = pgtenant()
    for code in (80877103, 80877104):  # SSLRequest, GSSENCRequest
        c = pgt.RawConn(p.port)
        try:
            c.send(struct.pack("!II", 8, code))
            assert c.sock.recv(1) == b"N"
            c.startup("app", "acme", pgt.APP_PASSWORD)
            assert c.scalar("select 1") == "1"
        finally:
            c.close()
    # libpq's default sslmode=prefer falls back to plain text
    with p.connect(sslmode="prefer") as conn:
        assert conn.execute("select 1").fetchone()[0] == 1


def test_protocol_3_2_startup_is_answered_with_negotiate_protocol_version(pgtenant):
    p = pgtenant()
    c = pgt.RawConn(p.port)
    try:
        c.send(pgt.startup_packet({"user": "app", "database": "acme"}, version=(3 << 16) | 2))
        kind, body = c.recv_msg()
        assert kind == b"v", (kind, body)
        (newest,) = struct.unpack("!I", body[:4])
        assert newest == 196608
    finally:
        c.sock.close()


def test_check_accepts_a_valid_file(pgtenant):
    p = pgtenant(start=False)
    res = pgt.run([pgt.PGTENANT_BIN, "--check", p.ini], timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("section,bad_line", [
    ("[pgtenant]", "pool_mdoe = session"),
    ("[tenant acme]", "dbnmae = acme"),
])
def test_check_reports_a_misspelt_key_with_file_and_line(pgtenant, section, bad_line):
    p = pgtenant(start=False)
    with open(p.ini) as f:
        lines = f.read().splitlines()
    at = lines.index(section) + 2  # 1-based line number of the inserted line
    lines.insert(at - 1, bad_line)
    with open(p.ini, "w") as f:
        f.write("\n".join(lines) + "\n")
    res = pgt.run([pgt.PGTENANT_BIN, "--check", p.ini], timeout=30)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert f"{p.ini}:{at}:" in out, out
    assert bad_line.split()[0] in out, out


def test_sigterm_lets_open_transaction_commit_and_refuses_new_clients(pg, pgtenant):
    with pg.connect_tcp() as d:
        d.execute("drop table if exists shutdown_t")
        d.execute("create table shutdown_t (id int)")
    p = pgtenant({"shutdown_timeout": "15s"})
    conn = p.connect()
    try:
        conn.execute("begin")
        conn.execute("insert into shutdown_t values (1)")
        p.expect_exit = True
        p.signal(signal.SIGTERM)

        def refused():
            try:
                c = p.connect(connect_timeout=3)
            except psycopg.OperationalError:
                return True
            c.close()
            return False
        pgt.wait_for(refused, timeout=5, period=0.1, what="new connections to be refused")
        conn.execute("insert into shutdown_t values (2)")
        conn.execute("commit")
    finally:
        conn.close()
    with pg.connect_tcp() as d:
        assert d.execute("select count(*) from shutdown_t").fetchone()[0] == 2
    try:
        rc = p.proc.wait(20)
    except Exception:
        pytest.fail("pgtenant did not exit after SIGTERM once its transaction had finished")
    assert rc == 0, f"pgtenant exited with {rc} after SIGTERM"


def test_oversized_packet_gets_08P01_and_close_without_hurting_others(pgtenant):
    p = pgtenant({"max_packet_size": "1MB"})
    with p.connect() as other:
        c = p.raw()
        try:
            big = b"select '" + b"y" * (2 * 1024 * 1024) + b"'\0"
            try:
                c.send(pgt.msg(b"Q", big))
            except (BrokenPipeError, ConnectionResetError):
                pass  # pgtenant may close before reading it all
            msgs = c.read_until_close()
        finally:
            c.sock.close()
        errors = [pgt.parse_fields(b) for k, b in msgs if k == b"E"]
        assert errors and errors[0].get("C") == "08P01", msgs[:3]
        assert other.execute("select 1").fetchone()[0] == 1


def test_half_sent_messages_and_abrupt_disconnects_do_not_affect_others(pgtenant):
    p = pgtenant({"default_pool_size": 2})
    with p.connect() as other:
        # half a startup packet
        s = socket.create_connection(("127.0.0.1", p.port))
        s.sendall(pgt.startup_packet({"user": "app", "database": "acme"})[:10])
        s.close()
        # half a query after login
        c = p.raw()
        c.send(pgt.msg(b"Q", b"select 1\0")[:6])
        c.sock.close()
        # unknown message type after login
        c = p.raw()
        c.send(b"\xfe" + struct.pack("!I", 4))
        msgs = c.read_until_close()
        c.sock.close()
        assert other.execute("select 1").fetchone()[0] == 1
        errors = [pgt.parse_fields(b) for k, b in msgs if k == b"E"]
        assert errors and errors[0].get("C") == "08P01", msgs
    with p.connect() as again:
        assert again.execute("select 2").fetchone()[0] == 2


def test_cancel_request_with_a_wrong_key_cancels_nothing(pgtenant):
    p = pgtenant()
    with p.connect() as conn:
        key = conn.info.backend_pid
        s = socket.create_connection(("127.0.0.1", p.port))
        s.sendall(struct.pack("!IIII", 16, 80877102, key ^ 0x5a5a, 12345))
        s.settimeout(5)
        try:
            assert s.recv(1) == b""  # closed without an answer
        finally:
            s.close()
        assert conn.execute("select pg_sleep(0.2), 'not cancelled'").fetchone()[1] == \
            "not cancelled"
