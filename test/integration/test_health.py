"""Health of every backend, primaries included (issue 17; SPEC §5, §7, §8):
every health_check_period pgtenant connects to each backend's primary, logs
in and runs a trivial query; SHOW BACKENDS' primary row (state, last_check,
last_error) and pgtenant_backend_up{role="primary"} show the result. A
primary that fails it while the pool's own logins fail too gets its waiting
clients ERROR 57P03 at once and new statements 57P03 at once, not after
query_wait_timeout; it comes back up by itself.

These tests stop and start a PostgreSQL cluster of their own (the session's
one serves every other test), with a backend that has no replicas.
"""

import os
import signal
import time
import urllib.request

import psycopg
import pytest

import pgt

ADMIN = "admin"
ADMIN_PASS = "adminpass"
HEALTH = 1.0  # health_check_period of these tests, seconds


class StoppablePg(pgt.PgServer):
    """A cluster that can be stopped (immediate: as a crash or a pulled plug)
    and started again on the same port and data directory."""

    def halt(self):
        res = pgt.run(self._cmd([os.path.join(pgt.PG_BIN, "pg_ctl"), "-D", self.datadir,
                                 "-m", "immediate", "-w", "stop"]), timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr

    def resume(self):
        res = pgt.run(self._cmd([os.path.join(pgt.PG_BIN, "pg_ctl"), "-D", self.datadir, "-l",
                                 self.logfile, "-w", "-t", "60", "-o", f"-p {self.port}",
                                 "start"]), timeout=90)
        assert res.returncode == 0, res.stdout + res.stderr

    def accepts(self):
        try:
            self.connect().close()
            return True
        except psycopg.Error:
            return False


@pytest.fixture(scope="module")
def own_pg():
    server = StoppablePg()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def solo(own_pg):
    """own_pg running at the start of each test (a failed test may have left it stopped)."""
    if not own_pg.accepts():
        own_pg.resume()
    return own_pg


def start(pgtenant, solo, globals_=None, backend=None, tenants=None):
    users = dict(pgt.DEFAULT_USERS)
    users[ADMIN] = ADMIN_PASS
    g = {"admin_users": ADMIN, "health_check_period": f"{HEALTH}s",
         "metrics_listen": f"127.0.0.1:{pgt.free_port()}", "query_wait_timeout": "30s",
         "server_login_retry": "1s"}
    g.update(globals_ or {})
    b = pgt.backend_keys(solo)
    b.update(backend or {})
    t = {"acme": {"mode": "database", "backend": "solo", "dbname": "acme"},
         "globex": None}
    t.update(tenants or {})
    p = pgtenant(g, backends={"main": None, "solo": b}, tenants=t, users=users)
    p.metrics_port = int(g["metrics_listen"].rsplit(":", 1)[1])
    return p


def primary_row(p):
    conn = p.raw(user=ADMIN, dbname="pgtenant", password=ADMIN_PASS)
    try:
        rows = [r for r in conn.query_dicts("SHOW BACKENDS") if r["role"] == "primary"]
    finally:
        conn.close()
    assert len(rows) == 1, rows
    return rows[0]


def backend_up_metric(p):
    with urllib.request.urlopen(f"http://127.0.0.1:{p.metrics_port}/metrics", timeout=10) as r:
        body = r.read().decode()
    vals = [line.rsplit(" ", 1)[1] for line in body.splitlines()
            if line.startswith("pgtenant_backend_up{") and 'role="primary"' in line
            and 'backend="solo"' in line]
    assert len(vals) == 1, body
    return float(vals[0])


def wait_primary(p, state, timeout):
    """Waits until SHOW BACKENDS shows the primary in state; returns (row, seconds taken)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        row = primary_row(p)
        if row["state"] == state:
            return row, time.monotonic() - t0
        if time.monotonic() > deadline:
            raise AssertionError(f"primary not {state} after {timeout:.1f}s: {row}")
        time.sleep(0.05)


def test_primary_without_replicas_is_checked_and_shows_last_check(pgtenant, solo):
    p = start(pgtenant, solo)
    row = pgt.wait_for(lambda: (r := primary_row(p))["last_check"] and r, timeout=3 * HEALTH,
                       what="the primary's first health check")
    assert row["state"] == "up" and row["last_error"] is None, row
    assert int(row["port"]) == solo.port and row["backend"] == "solo", row
    first = row["last_check"]
    # checked again every period, not only at start
    pgt.wait_for(lambda: primary_row(p)["last_check"] != first, timeout=3 * HEALTH,
                 what="a second health check")
    assert backend_up_metric(p) == 1


def test_stopped_primary_is_down_within_two_periods_and_comes_back_up(pgtenant, solo):
    p = start(pgtenant, solo)
    wait_primary(p, "up", 3 * HEALTH)
    with p.connect() as conn:
        assert conn.execute("select 1").fetchone()[0] == 1
    solo.halt()
    try:
        row, took = wait_primary(p, "down", 2 * HEALTH + 0.5)
        assert took <= 2 * HEALTH + 0.5, took
        assert row["last_error"], row
        assert row["last_check"], row
        assert backend_up_metric(p) == 0
        # while down, a statement fails at once with 57P03 naming the backend
        with p.connect() as conn:
            for _ in range(3):
                t0 = time.monotonic()
                with pytest.raises(psycopg.Error) as ei:
                    conn.execute("select 1")
                assert time.monotonic() - t0 < 1.0, time.monotonic() - t0
                assert ei.value.sqlstate == "57P03", (ei.value.sqlstate, str(ei.value))
                assert '"solo"' in str(ei.value), str(ei.value)
            solo.resume()
            row, took = wait_primary(p, "up", 2 * HEALTH + 1.0)
            assert row["last_error"] is None, row
            assert backend_up_metric(p) == 1
            # the same session goes on, on a fresh server connection
            assert conn.execute("select 2").fetchone()[0] == 2
    finally:
        if not solo.accepts():
            solo.resume()


def test_clients_waiting_for_a_stopped_primary_get_57P03_quickly(pgtenant, solo):
    """query_wait_timeout is 30 s: the waiting client is answered within about
    a health period of the stop, and its session goes on."""
    p = start(pgtenant, solo,
              tenants={"acme": {"mode": "database", "backend": "solo", "dbname": "acme",
                                "pool_size": 1}})
    wait_primary(p, "up", 3 * HEALTH)
    holder = p.raw()
    waiter = p.raw()
    try:
        holder.query("begin")
        holder.query("select 1")
        waiter.send(pgt.msg(b"Q", b"select 'waited'\0"))  # queued behind the only server
        time.sleep(0.3)
        solo.halt()
        expect_57P03_within(waiter, time.monotonic(), 2 * HEALTH + 1.0)
        solo.resume()
        wait_primary(p, "up", 2 * HEALTH + 1.0)
        # the waiter's session goes on
        assert pgt.wait_for(lambda: _try(waiter, "select 'again'"), timeout=5,
                            what="the waiting client's next statement") == [["again"]]
    finally:
        holder.sock.close()
        waiter.sock.close()
        if not solo.accepts():
            solo.resume()


def test_clients_waiting_for_a_hung_primary_get_57P03_within_a_check(pgtenant, solo):
    """A primary that hangs (its postmaster stopped: connections are accepted by the
    kernel and never answered) fails no login by itself: the pool's new login would
    wait for server_connect_timeout (30 s here) and its client with it. The health
    check times out after health_check_period + 1 s; then the login still in progress
    ends, the waiting client gets 57P03, and a server already in use goes on."""
    p = start(pgtenant, solo, globals_={"server_connect_timeout": "30s"},
              tenants={"acme": {"mode": "database", "backend": "solo", "dbname": "acme",
                                "pool_size": 2}})
    wait_primary(p, "up", 3 * HEALTH)
    with open(os.path.join(solo.datadir, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    holder = p.raw()
    waiter = p.raw()
    stopped = False
    try:
        holder.query("begin")
        assert holder.query("select 'held'") == [["held"]]
        os.kill(postmaster, signal.SIGSTOP)
        stopped = True
        t0 = time.monotonic()
        waiter.send(pgt.msg(b"Q", b"select 'waited'\0"))  # needs a second server: a login
        expect_57P03_within(waiter, t0, 2 * HEALTH + 2.0)
        # the server in use was never the hung part: its transaction goes on
        assert holder.query("select 'still held'") == [["still held"]]
        holder.query("commit")
        os.kill(postmaster, signal.SIGCONT)
        stopped = False
        wait_primary(p, "up", 3 * HEALTH + 1.0)
        assert pgt.wait_for(lambda: _try(waiter, "select 'again'"), timeout=5,
                            what="the waiting client's next statement") == [["again"]]
    finally:
        if stopped:
            os.kill(postmaster, signal.SIGCONT)
        holder.sock.close()
        waiter.sock.close()


def expect_57P03_within(waiter, t0, limit):
    """The statement waiter sent is answered 57P03 naming the backend, within limit
    seconds of t0."""
    waiter.sock.settimeout(20)
    with pytest.raises(pgt.PgError) as ei:
        read_answer(waiter)
    took = time.monotonic() - t0
    assert ei.value.sqlstate == "57P03", ei.value.fields
    assert "solo" in ei.value.message, ei.value.fields
    assert took < limit, f"the waiting client was answered after {took:.1f}s"


def read_answer(conn):
    """Rows of an answer already asked for, up to ReadyForQuery; raises its PgError."""
    rows, err = [], None
    while True:
        kind, body = conn.recv_msg()
        if kind == b"E":
            err = pgt.PgError(pgt.parse_fields(body))
        elif kind == b"D":
            rows.append(pgt.parse_data_row(body))
        elif kind == b"Z":
            if err:
                raise err
            return rows


def _try(conn, sql):
    try:
        return conn.query(sql)
    except pgt.PgError as e:
        assert e.sqlstate == "57P03", e.fields
        return None


def test_a_check_failing_on_its_own_credentials_turns_no_client_away(pgtenant, solo):
    """The check logs in with the backend's credentials; a tenant with a
    server_user of its own reaches the primary all the same: the failed
    check shows in SHOW BACKENDS, and the tenant's statements keep running."""
    p = start(pgtenant, solo, backend={"password": "wrong"},
              tenants={"acme": {"mode": "database", "backend": "solo", "dbname": "acme",
                                "server_user": "app", "server_password": pgt.APP_PASSWORD}})
    pgt.wait_for(lambda: primary_row(p)["last_error"], timeout=3 * HEALTH,
                 what="the failed check in SHOW BACKENDS")
    deadline = time.monotonic() + 3 * HEALTH
    n = 0
    with p.connect() as conn:
        while time.monotonic() < deadline:
            assert conn.execute("select %s::int", [n]).fetchone()[0] == n
            n += 1
            time.sleep(0.05)
    assert n > 10
