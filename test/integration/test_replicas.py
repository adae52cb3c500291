"""Read replicas (SPEC §5; §2 keys read_routing, max_replica_lag,
read_your_writes, read_only_functions, health_check_period, replicas,
replica_pool_size): two real streaming replicas of the session's primary
(pg_basebackup -R -X stream with a replication slot each), health checks and
SHOW BACKENDS, auto/hint/off routing end to end, read-only transactions,
read_your_writes, a replica going down / lagging / dying under a query, and
load balancing.

Where a statement ran is seen from inside it: pg_is_in_recovery() is true
only on a replica, inet_server_port() names the server.
"""

import atexit
import os
import pwd
import shutil
import tempfile
import threading
import time

import psycopg
import pytest

import pgt

ADMIN = "admin"
ADMIN_PASS = "adminpass"
HEALTH = 1.0  # health_check_period used by these tests, seconds


# ---------------------------------------------------------------- replicas

class Replica(pgt.PgServer):
    """A hot-standby streaming replica of the session's primary: laid out and run
    (datadir, sockdir, logfile, OS user) as the harness runs the primary."""

    def __init__(self, primary, name):
        super().__init__()
        self.primary = primary
        self.name = name
        self.slot = None
        self.running = False
        self.run_as = primary.run_as

    def create(self):
        self.dir = tempfile.mkdtemp(prefix=f"pgtenant-it-{self.name}-")
        atexit.register(self.destroy)
        os.chmod(self.dir, 0o755)
        os.makedirs(self.sockdir)
        if self.primary.run_as:
            pw = pwd.getpwnam(self.primary.run_as)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chown(self.sockdir, pw.pw_uid, pw.pw_gid)
        self.port = pgt.free_port()
        self.slot = f"pgtenant_it_{self.name}_{self.port}"
        res = pgt.run(self._cmd([os.path.join(pgt.PG_BIN, "pg_basebackup"),
                                 "-h", "127.0.0.1", "-p", str(self.primary.port),
                                 "-U", "postgres", "-D", self.datadir, "-R", "-X", "stream",
                                 "-c", "fast", "-C", "-S", self.slot, "--no-sync"]),
                      timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed:\n{res.stdout}\n{res.stderr}")
        # Later settings win: its own socket directory; no query cancels on conflicts.
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n".join([
                "",
                "unix_socket_directories = '%s'" % self.sockdir,
                "hot_standby = on",
                "hot_standby_feedback = on",
                "wal_receiver_status_interval = 1s",
                # a planner setting only replicas have: EXPLAIN (SETTINGS) names it
                "random_page_cost = 3.9",
                "",
            ]))
        self.start()

    def start(self):
        res = pgt.run(self._cmd([os.path.join(pgt.PG_BIN, "pg_ctl"), "-D", self.datadir, "-l",
                                 self.logfile, "-w", "-t", "60", "-o", f"-p {self.port}",
                                 "start"]), timeout=90)
        if res.returncode != 0:
            raise RuntimeError(f"replica {self.name} did not start:\n{res.stdout}{res.stderr}\n"
                               f"{pgt.read_tail(self.logfile, 3000)}")
        self.running = True
        pgt.wait_for(self._streaming, timeout=30, period=0.1,
                     what=f"replica {self.name} streaming from the primary")

    def stop(self, mode="immediate"):
        if self.running:
            self.running = False
            pgt.run(self._cmd([os.path.join(pgt.PG_BIN, "pg_ctl"), "-D", self.datadir, "-m",
                               mode, "-w", "stop"]), timeout=60)

    def destroy(self):
        self.stop()
        if self.slot:
            try:
                with self.primary.connect() as c:
                    c.execute("select pg_drop_replication_slot(slot_name) from "
                              "pg_replication_slots where slot_name = %s", [self.slot])
            except Exception:
                pass
            self.slot = None
        if self.dir and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def connect(self, dbname="acme", user="postgres", **kw):
        kw.setdefault("autocommit", True)
        return psycopg.connect(host=self.sockdir, port=self.port, dbname=dbname, user=user,
                               connect_timeout=10, **kw)

    def _streaming(self):
        try:
            with self.connect(dbname="postgres") as c:
                row = c.execute("select status from pg_stat_wal_receiver").fetchone()
                return row is not None and row[0] == "streaming"
        except psycopg.Error:
            return False

    def replay_lsn_reached(self, lsn):
        with self.connect(dbname="postgres") as c:
            return c.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]).fetchone()[0]

    def paused(self):
        with self.connect(dbname="postgres") as c:
            return c.execute("select pg_get_wal_replay_pause_state()").fetchone()[0] != "not paused"


def _allow_replication(pg):
    hba = os.path.join(pg.datadir, "pg_hba.conf")
    with open(hba) as f:
        text = f.read()
    if not any(l.split()[1:2] == ["replication"] for l in text.splitlines()
               if l.strip() and not l.lstrip().startswith("#")):
        with open(hba, "a") as f:  # appending keeps the file's owner (postgres)
            f.write("local   replication  postgres                 trust\n"
                    "host    replication  postgres  127.0.0.1/32  trust\n")
    with pg.connect() as c:
        c.execute("select pg_reload_conf()")
        assert c.execute("show wal_level").fetchone()[0] in ("replica", "logical")
        assert int(c.execute("show max_wal_senders").fetchone()[0]) >= 2


SCHEMA_SQL = [
    "drop table if exists rr_t cascade",
    "drop sequence if exists rr_seq",
    "drop view if exists rr_where",
    "drop function if exists rr_f()",
    "drop function if exists rr_ro_f()",
    "create table rr_t (id bigint primary key, v int, note text)",
    "insert into rr_t values (0, 0, 'seed')",
    "create sequence rr_seq",
    "create view rr_where as select pg_is_in_recovery() as in_recovery",
    # a user function (volatile, not listed): primary
    "create function rr_f() returns boolean language sql as 'select pg_is_in_recovery()'",
    # listed in read_only_functions by the tests that use it
    "create function rr_ro_f() returns boolean language sql stable "
    "as 'select pg_is_in_recovery()'",
]


def sync_replicas(pg, replicas, timeout=20):
    """Waits until every running replica has replayed the primary's current WAL."""
    with pg.connect() as c:
        lsn = c.execute("select pg_current_wal_lsn()::text").fetchone()[0]
    for r in replicas:
        if r.running:
            pgt.wait_for(lambda: r.replay_lsn_reached(lsn), timeout=timeout, period=0.05,
                         what=f"replica {r.name} replaying up to {lsn}")


@pytest.fixture(scope="module")
def replicas(pg):
    _allow_replication(pg)
    with pg.connect(dbname="acme", user="app") as c:
        for stmt in SCHEMA_SQL:
            c.execute(stmt)
    reps = [Replica(pg, "r1"), Replica(pg, "r2")]
    try:
        for r in reps:
            r.create()
        sync_replicas(pg, reps)
        yield reps
    finally:
        for r in reps:
            r.destroy()


@pytest.fixture
def reps(replicas, pg):
    """The module's replicas, running, replaying and caught up at the start of a
    test (a test that stopped or paused one puts it back itself; this repairs
    what a failed test left behind)."""
    for r in replicas:
        if not r.running:
            r.start()
        if r.paused():
            with r.connect(dbname="postgres") as c:
                c.execute("select pg_wal_replay_resume()")
    sync_replicas(pg, replicas)
    return replicas


# ---------------------------------------------------------------- pgtenant

def start(pgtenant, pg, reps, globals_=None, tenants=None, backend=None, wait_up=True):
    users = dict(pgt.DEFAULT_USERS)
    users[ADMIN] = ADMIN_PASS
    g = {"admin_users": ADMIN, "read_routing": "auto", "health_check_period": f"{HEALTH}s"}
    g.update(globals_ or {})
    b = {"host": "127.0.0.1", "port": pg.port, "dbname": "appdb", "user": "app",
         "password": pgt.APP_PASSWORD,
         "replicas": ", ".join(f"127.0.0.1:{r.port}" for r in reps)}
    b.update(backend or {})
    p = pgtenant(g, backends={"main": b}, tenants=tenants, users=users)
    if wait_up:
        wait_states(p, {r.port: "up" for r in reps}, timeout=4 * HEALTH + 5)
    return p


def console_rows(p, sql):
    """Simple query on the console; rows as dicts keyed by column name."""
    conn = p.raw(user=ADMIN, dbname="pgtenant", password=ADMIN_PASS)
    try:
        return conn.query_dicts(sql)
    finally:
        conn.close()


def backends(p):
    """SHOW BACKENDS rows of replicas, keyed by port."""
    rows = console_rows(p, "SHOW BACKENDS")
    for col in ("backend", "role", "host", "port", "state", "lag_ms", "last_check"):
        assert all(col in r for r in rows), f"SHOW BACKENDS lacks {col}: {rows}"
    return {int(r["port"]): r for r in rows if r["role"] == "replica"}


def wait_states(p, want, timeout):
    """Waits until SHOW BACKENDS shows each replica port in its wanted state;
    returns the rows. On timeout, fails with the last rows seen."""
    deadline = time.monotonic() + timeout
    rows = None
    while True:
        rows = backends(p)
        if all(rows.get(port, {}).get("state") == st for port, st in want.items()):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.1f}s SHOW BACKENDS is {rows}, wanted states "
                                 f"{want}")
        time.sleep(0.05)


def in_recovery(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()[0]


def port_counts(p, n_clients, n_reads, sql="select inet_server_port()", dbname="acme"):
    """n_clients concurrent clients run n_reads reads in total; returns
    ({port: count}, [errors])."""
    counts, errors, lock = {}, [], threading.Lock()
    per = n_reads // n_clients
    barrier = threading.Barrier(n_clients)

    def worker():
        try:
            with p.connect(dbname=dbname) as conn:
                barrier.wait(20)
                for _ in range(per):
                    port = conn.execute(sql).fetchone()[0]
                    with lock:
                        counts[port] = counts.get(port, 0) + 1
        except Exception as e:  # reported below
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "readers hung"
    return counts, errors


# ---------------------------------------------------------------- health / SHOW BACKENDS

def test_show_backends_lists_primary_and_both_replicas_up(pg, pgtenant, reps):
    p = start(pgtenant, pg, reps)
    rows = console_rows(p, "SHOW BACKENDS")
    prim = [r for r in rows if r["role"] == "primary"]
    assert len(prim) == 1 and int(prim[0]["port"]) == pg.port, rows
    rep = backends(p)
    assert set(rep) == {r.port for r in reps}, rows
    for port, r in rep.items():
        assert r["backend"] == "main" and r["host"] == "127.0.0.1", r
        assert r["state"] == "up", r
        assert r["lag_ms"] not in (None, "") and int(float(r["lag_ms"])) < 10000, r
        assert r["last_check"] not in (None, ""), r
    # and reads do reach a replica
    with p.connect() as conn:
        assert in_recovery(conn, "select pg_is_in_recovery()") is True


# ---------------------------------------------------------------- auto classification

def test_auto_select_goes_to_a_replica_and_insert_to_the_primary(pg, pgtenant, reps):
    p = start(pgtenant, pg, reps)
    with p.connect() as conn:
        assert in_recovery(conn, "select pg_is_in_recovery()") is True
        assert conn.execute("select inet_server_port()").fetchone()[0] in {r.port for r in reps}
        conn.execute("insert into rr_t (id, v, note) values (1001, 1, 'auto insert')")
        assert in_recovery(conn, "select pg_is_in_recovery()") is False  # read_your_writes
    with pg.connect(dbname="acme") as d:
        assert d.execute("select note from rr_t where id = 1001").fetchone()[0] == "auto insert"
        d.execute("delete from rr_t where id = 1001")


TO_REPLICA = [
    "select pg_is_in_recovery()",
    "SELECT pg_is_in_recovery() FROM (SELECT 1) s",
    "select pg_is_in_recovery(), now(), lower('X'), count(*) from pg_class group by 2, 3",
    "with x as (select 1 as a) select pg_is_in_recovery() from x",
    "values (pg_is_in_recovery())",
    "table rr_where",
    "-- a comment first\nselect pg_is_in_recovery()",
    "select in_recovery from rr_where where in_recovery is not null",
    "select rr_ro_f()",  # listed in read_only_functions
    "/* pgtenant:replica */ select pg_is_in_recovery()",
]

TO_PRIMARY = [
    "select pg_is_in_recovery() from rr_t where id = 0 for update",
    "select pg_is_in_recovery() from rr_t where id = 0 for no key update",
    "select pg_is_in_recovery() from rr_t where id = 0 for share",
    "select pg_is_in_recovery() from rr_t where id = 0 for key share",
    "select pg_is_in_recovery() from rr_t where id = 0 for update skip locked",
    "with u as (update rr_t set v = v where id = 0 returning id) "
    "select pg_is_in_recovery() from u",
    "with d as (delete from rr_t where id = -1 returning id) "
    "select pg_is_in_recovery() from (select 1) s left join d on true",
    "select pg_is_in_recovery(), nextval('rr_seq')",
    "select pg_is_in_recovery(), setval('rr_seq', 100)",
    "select pg_is_in_recovery(), pg_try_advisory_xact_lock(4242)",
    "select pg_is_in_recovery(), pg_advisory_lock(4243), pg_advisory_unlock(4243)",
    "select pg_is_in_recovery(), txid_current()",
    "select pg_is_in_recovery(), pg_notify('rr_chan', 'x')",
    "select rr_f()",  # a user function not in read_only_functions
    "select pg_is_in_recovery(), rr_f()",
    "/* pgtenant:primary */ select pg_is_in_recovery()",
]


def test_auto_classification_end_to_end(pg, pgtenant, reps):
    p = start(pgtenant, pg, reps, {"read_your_writes": 0, "read_only_functions": "rr_ro_f"})
    wrong = []
    for sql in TO_REPLICA + TO_PRIMARY:
        want = sql in TO_REPLICA
        # a fresh client each time: no statement's stickiness affects another
        with p.connect() as conn:
            try:
                got = in_recovery(conn, sql)
            except psycopg.Error as e:
                got = f"{type(e).__name__} {e.sqlstate}: {e}"
            if got is not want:
                wrong.append(f"{sql!r}: on {'a replica' if want else 'the primary'} expected, "
                             f"pg_is_in_recovery() gave {got!r}")
    assert not wrong, "misrouted:\n" + "\n".join(wrong)


def _explain_on_replica(conn, sql):
    plan = "\n".join(r[0] for r in conn.execute(sql).fetchall())
    return "random_page_cost" in plan and "3.9" in plan


def test_auto_explain_without_analyze_goes_to_a_replica(pg, pgtenant, reps):
    """SPEC §5: EXPLAIN without ANALYZE is read-only for certain; with ANALYZE
    it is not. Replicas run with random_page_cost = 3.9, which EXPLAIN
    (SETTINGS) shows."""
    p = start(pgtenant, pg, reps, {"read_your_writes": 0})
    with p.connect() as conn:
        assert _explain_on_replica(conn, "explain (settings) select * from rr_t") is True
        assert _explain_on_replica(conn, "EXPLAIN (COSTS OFF, SETTINGS ON) "
                                         "select * from rr_t where id = 1") is True
    with p.connect() as conn:
        assert _explain_on_replica(conn, "explain (analyze, settings) select * from rr_t") \
            is False
    with p.connect() as conn:
        # on a replica: 25006
        conn.execute("explain analyze delete from rr_t where id = -12345")


def test_auto_extended_protocol_select_goes_to_a_replica(pg, pgtenant, reps):
    p = start(pgtenant, pg, reps, {"read_your_writes": 0})
    with p.connect() as conn:
        assert in_recovery(conn, "select pg_is_in_recovery(), %s::int", [7]) is True
        # a write by the extended protocol goes to the primary
        conn.execute("insert into rr_t (id, v) values (%s, %s)", [2001, 1])
        assert in_recovery(conn, "select pg_is_in_recovery() from rr_t where id = %s "
                                 "for update", [0]) is False
    with p.connect(prepare_threshold=0) as conn:  # named prepared statements
        for _ in range(3):
            assert in_recovery(conn, "select pg_is_in_recovery(), %s::text", ["x"]) is True
    with pg.connect(dbname="acme") as d:
        assert d.execute("select count(*) from rr_t where id = 2001").fetchone()[0] == 1
        d.execute("delete from rr_t where id = 2001")


def test_auto_show_copy_select_into_multistatement_go_to_the_primary(pg, pgtenant, reps):
    p = start(pgtenant, pg, reps, {"read_your_writes": 0})
    with p.connect() as conn:
        # a replica says in_hot_standby = on
        assert conn.execute("show in_hot_standby").fetchone()[0] == "off"
        assert conn.execute("show transaction_read_only").fetchone()[0] == "off"
    with p.connect() as conn:
        with conn.cursor() as cur:
            with cur.copy("copy (select pg_is_in_recovery()) to stdout") as copy:
                data = b"".join(bytes(b) for b in copy)
        assert data == b"f\n", data
    with p.connect() as conn:
        # on a replica this would fail with 25006
        conn.execute("drop table if exists rr_into")
        conn.execute("select pg_is_in_recovery() as r into rr_into")
        assert conn.execute("/* pgtenant:primary */ select r from rr_into").fetchone()[0] is False
        conn.execute("drop table rr_into")
    c = p.raw()
    try:
        rows = c.query("insert into rr_t (id, v) values (3001, 1); select pg_is_in_recovery()")
        assert rows == [["f"]], rows
        rows = c.query("select pg_is_in_recovery(); delete from rr_t where id = 3001")
        assert rows == [["f"]], rows  # the select's rows; the delete ran (else 25006)
    finally:
        c.close()
    with pg.connect(dbname="acme") as d:
        assert d.execute("select count(*) from rr_t where id = 3001").fetchone()[0] == 0


def test_session_state_keeps_the_client_on_the_primary(pg, pgtenant, reps):
    p = start(pgtenant, pg, reps, {"read_your_writes": 0})
    with p.connect() as conn:
        assert in_recovery(conn, "select pg_is_in_recovery()") is True
        conn.execute("create temp table rr_tmp (x int)")
        for _ in range(3):
            assert in_recovery(conn, "select pg_is_in_recovery()") is False
        assert conn.execute("select count(*) from rr_tmp").fetchone()[0] == 0
    with p.connect() as conn:
        conn.execute("set work_mem = '8MB'")
        for _ in range(3):
            assert in_recovery(conn, "select pg_is_in_recovery()") is False
            assert conn.execute("show work_mem").fetchone()[0] == "8MB"
    with p.connect() as other:  # another client is not affected
        assert in_recovery(other, "select pg_is_in_recovery()") is True


# ---------------------------------------------------------------- read_your_writes

def test_read_your_writes_default_reads_own_write_from_the_primary(pg, pgtenant, reps):
    # read_your_writes defaults to max_replica_lag (10s)
    p = start(pgtenant, pg, reps)
    with p.connect() as conn, p.connect() as bystander:
        assert in_recovery(conn, "select pg_is_in_recovery()") is True
        for i in range(20):
            rid = 4000 + i
            conn.execute("insert into rr_t (id, v, note) values (%s, %s, 'ryw')", [rid, i])
            row = conn.execute("select pg_is_in_recovery(), "
                               f"exists (select 1 from rr_t where id = {rid})").fetchone()
            assert row == (False, True), (i, row)
        # only the writing client is held on the primary
        assert in_recovery(bystander, "select pg_is_in_recovery()") is True
    with pg.connect(dbname="acme") as d:
        d.execute("delete from rr_t where id between 4000 and 4019")


def test_read_your_writes_expires(pg, pgtenant, reps):
    p = start(pgtenant, pg, reps, {"read_your_writes": "1s"})
    with p.connect() as conn:
        conn.execute("insert into rr_t (id, v) values (4100, 1)")
        assert in_recovery(conn, "select pg_is_in_recovery()") is False
        time.sleep(1.5)
        assert in_recovery(conn, "select pg_is_in_recovery()") is True
        conn.execute("delete from rr_t where id = 4100")


def test_read_your_writes_zero_reads_go_to_a_replica_right_after_a_write(pg, pgtenant, reps):
    p = start(pgtenant, pg, reps, {"read_your_writes": 0})
    with p.connect() as conn:
        for i in range(5):
            conn.execute("insert into rr_t (id, v) values (%s, 1)", [4200 + i])
            assert in_recovery(conn, "select pg_is_in_recovery()") is True, i
        conn.execute("delete from rr_t where id between 4200 and 4204")


# ---------------------------------------------------------------- hint / off / per tenant

def test_hint_mode_only_hinted_statements_go_to_a_replica(pg, pgtenant, reps):
    p = start(pgtenant, pg, reps, {"read_routing": "hint"})
    with p.connect() as conn:
        assert in_recovery(conn, "select pg_is_in_recovery()") is False
        assert in_recovery(conn, "values (pg_is_in_recovery())") is False
        assert in_recovery(conn, "/* pgtenant:replica */ select pg_is_in_recovery()") is True
        assert in_recovery(conn, "/* pgtenant:primary */ select pg_is_in_recovery()") is False
        assert in_recovery(conn, "/* pgtenant:replica */ select pg_is_in_recovery(), %s::int",
                           [1]) is True


def test_off_mode_everything_on_the_primary(pg, pgtenant, reps):
    p = start(pgtenant, pg, reps, {"read_routing": "off"})
    with p.connect() as conn:
        assert in_recovery(conn, "select pg_is_in_recovery()") is False
        assert in_recovery(conn, "/* pgtenant:replica */ select pg_is_in_recovery()") is False
    c = p.raw()
    try:
        c.query("BEGIN READ ONLY")
        assert c.scalar("select pg_is_in_recovery()") == "f"
        c.query("COMMIT")
    finally:
        c.close()


def test_read_routing_per_tenant_overrides_the_global(pg, pgtenant, reps):
    tenants = {"acme": {"mode": "database", "backend": "main", "dbname": "acme",
                        "read_routing": "auto"},
               "globex": {"mode": "database", "backend": "main", "dbname": "globex",
                          "read_routing": "off"}}
    p = start(pgtenant, pg, reps, {"read_routing": "hint"}, tenants=tenants)
    with p.connect(dbname="acme") as conn:
        assert in_recovery(conn, "select pg_is_in_recovery()") is True
    with p.connect(dbname="globex") as conn:
        assert in_recovery(conn, "select pg_is_in_recovery()") is False
        assert in_recovery(conn, "/* pgtenant:replica */ select pg_is_in_recovery()") is False


# ---------------------------------------------------------------- transactions

def _tx_servers(c, begin, stmts=3):
    """Runs begin, then stmts reads and COMMIT on RawConn c; returns the set of
    (in_recovery, port) seen."""
    for s in begin:
        c.query(s)
    seen = set()
    for _ in range(stmts):
        seen.add(tuple(c.query("select pg_is_in_recovery(), inet_server_port()")[0]))
    c.query("COMMIT")
    return seen


@pytest.mark.parametrize("mode", ["auto", "hint"])
def test_read_only_transactions_run_on_one_replica(pg, pgtenant, reps, mode):
    p = start(pgtenant, pg, reps, {"read_routing": mode, "read_your_writes": 0})
    ports = {str(r.port) for r in reps}
    c = p.raw()
    try:
        for begin in (["BEGIN READ ONLY"], ["START TRANSACTION READ ONLY"],
                      ["begin transaction isolation level repeatable read, read only"],
                      ["BEGIN", "SET TRANSACTION READ ONLY"],
                      ["START TRANSACTION", "set transaction read only"]):
            seen = _tx_servers(c, begin)
            assert len(seen) == 1, (begin, seen)
            rec, port = next(iter(seen))
            assert rec == "t" and port in ports, (begin, seen)
        # plain BEGIN ... COMMIT: the primary
        seen = _tx_servers(c, ["BEGIN"])
        assert seen == {("f", str(pg.port))}, seen
        # an empty deferred transaction, and a rolled back one
        c.query("BEGIN")
        c.query("COMMIT")
        c.query("BEGIN")
        c.query("ROLLBACK")
        # a write in a read-write transaction, then a read in it: the primary
        c.query("BEGIN")
        c.query("insert into rr_t (id, v) values (5001, 1)")
        assert c.query("select pg_is_in_recovery(), count(*) from rr_t where id = 5001") == \
            [["f", "1"]]
        c.query("ROLLBACK")
        # a read-only transaction is usable normally after errors: the error aborts it
        c.query("BEGIN READ ONLY")
        with pytest.raises(pgt.PgError) as ei:
            c.query("insert into rr_t (id, v) values (5002, 1)")
        assert ei.value.sqlstate == "25006", ei.value
        c.query("ROLLBACK")
        if mode == "auto":
            assert c.scalar("select pg_is_in_recovery()") == "t"
    finally:
        c.close()


@pytest.mark.parametrize("begin", [
    ["BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"],
    ["START TRANSACTION READ ONLY, ISOLATION LEVEL SERIALIZABLE"],
    ["BEGIN", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY"],
])
def test_serializable_read_only_transaction_goes_to_the_primary(pg, pgtenant, reps, begin):
    """SPEC §5: SERIALIZABLE is not read-only for certain (a hot standby
    refuses it with 0A000)."""
    p = start(pgtenant, pg, reps, {"read_your_writes": 0})
    c = p.raw()
    try:
        try:
            seen = _tx_servers(c, begin)
        except pgt.PgError as e:
            pytest.fail(f"{begin}: {e.sqlstate} {e.message} (sent to a replica?)")
        assert seen == {("f", str(pg.port))}, seen
    finally:
        c.close()


def test_client_with_serializable_default_isolation_reads_on_the_primary(pg, pgtenant, reps):
    """A startup parameter default_transaction_isolation = serializable makes
    every statement of the client SERIALIZABLE (SPEC §3 applies it on the
    client's behalf): not read-only for certain, and a hot standby refuses it."""
    p = start(pgtenant, pg, reps, {"read_your_writes": 0})
    with p.connect(options="-c default_transaction_isolation=serializable") as conn:
        try:
            row = conn.execute("select pg_is_in_recovery(), "
                               "current_setting('transaction_isolation')").fetchone()
        except psycopg.Error as e:
            pytest.fail(f"a plain read failed: {e.sqlstate} {e} (sent to a replica?)")
        assert row == (False, "serializable"), row


def test_psycopg_read_only_transactions(pg, pgtenant, reps):
    p = start(pgtenant, pg, reps, {"read_your_writes": 0})
    with p.connect(autocommit=False) as conn:
        conn.read_only = True  # psycopg sends BEGIN READ ONLY
        assert in_recovery(conn, "select pg_is_in_recovery()") is True
        port = conn.execute("select inet_server_port()").fetchone()[0]
        assert conn.execute("select inet_server_port()").fetchone()[0] == port
        conn.commit()
    with p.connect(autocommit=False) as conn:  # BEGIN (read-write)
        assert in_recovery(conn, "select pg_is_in_recovery()") is False
        conn.commit()


# ---------------------------------------------------------------- a replica goes down and comes back

def test_stopped_replica_gets_no_reads_and_comes_back(pg, pgtenant, reps):
    p = start(pgtenant, pg, reps, {"read_your_writes": 0})
    victim, other = reps
    stop_reading = threading.Event()
    results, lock = [], threading.Lock()  # (reader, t_start, t_end, port or exception)

    def reader(k):
        try:
            conn = p.connect()
        except Exception as e:
            with lock:
                results.append((k, time.monotonic(), time.monotonic(), e))
            return
        with conn:
            while not stop_reading.is_set():
                t0 = time.monotonic()
                try:
                    r = conn.execute("select inet_server_port()").fetchone()[0]
                except Exception as e:
                    r = e
                with lock:
                    results.append((k, t0, time.monotonic(), r))
                if isinstance(r, Exception) and conn.closed:
                    conn = p.connect()  # the session could not go on: reconnect
                time.sleep(0.01)

    threads = [threading.Thread(target=reader, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        with lock:
            before = [r for r in results]
        assert any(r[3] == victim.port for r in before), \
            f"the victim got no reads before the stop: {set(r[3] for r in before)}"
        t_stop0 = time.monotonic()
        victim.stop("immediate")
        t_stop1 = time.monotonic()
        rows = wait_states(p, {victim.port: "down", other.port: "up"},
                           timeout=2 * HEALTH + 0.5 - (time.monotonic() - t_stop1))
        t_down = time.monotonic()
        time.sleep(max(0.0, t_stop1 + 2 * HEALTH - time.monotonic()) + 1.5)
        stop_reading.set()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), "a reader hung"
    finally:
        stop_reading.set()

    errors = [r for r in results if isinstance(r[3], Exception)]
    late_errors = [r for r in errors if r[1] > t_stop1]
    assert not late_errors, ("reads started after the replica had stopped failed: "
                             + "; ".join(f"reader {r[0]} at +{r[1] - t_stop1:.2f}s: "
                                         f"{getattr(r[3], 'sqlstate', None)} {r[3]}"
                                         for r in late_errors[:10]))
    per_reader = {}
    for r in errors:
        per_reader[r[0]] = per_reader.get(r[0], 0) + 1
    assert all(n <= 1 for n in per_reader.values()), \
        f"more than the query in flight failed: {errors}"
    after = [r for r in results if r[1] > t_stop1 + 2 * HEALTH]
    assert len(after) > 20, f"too few reads after the stop: {len(after)}"
    assert all(r[3] in (other.port, pg.port) for r in after), \
        {r[3] for r in after}
    assert sum(1 for r in after if r[3] == other.port) > len(after) // 2, \
        "reads did not move to the surviving replica"

    # back again
    victim.start()
    wait_states(p, {victim.port: "up", other.port: "up"}, timeout=2 * HEALTH + 3)
    counts, errs = port_counts(p, 6, 300)
    assert not errs, errs
    assert counts.get(victim.port, 0) >= 15, \
        f"the restarted replica gets (almost) no reads: {counts}"


def test_replica_refusing_connections_is_marked_down_at_once_and_reads_rerouted(
        pg, pgtenant, reps):
    """No health check helps here (period 60s): the first client that needs a
    connection to the stopped replica finds it refusing; it is marked down and
    that client (and the rest) are served elsewhere without an error."""
    p = start(pgtenant, pg, reps, {"read_your_writes": 0, "health_check_period": "60s"})
    victim, other = reps
    victim.stop("immediate")
    try:
        t0 = time.monotonic()
        counts, errs = port_counts(p, 4, 200)
        assert not errs, [f"{getattr(e, 'sqlstate', None)} {e}" for e in errs]
        assert victim.port not in counts, counts
        assert counts.get(other.port, 0) >= 100, counts
        assert time.monotonic() - t0 < 15, "re-routing took long"
        rows = backends(p)
        assert rows[victim.port]["state"] == "down", rows
        assert rows[other.port]["state"] == "up", rows
    finally:
        victim.start()


# ---------------------------------------------------------------- lag

def test_lagging_replica_gets_no_reads(pg, pgtenant, reps):
    p = start(pgtenant, pg, reps, {"max_replica_lag": "2s", "read_your_writes": 0})
    laggard, other = reps
    stop = threading.Event()
    writer_errors = []

    def writer():
        i = 0
        try:
            with pg.connect(dbname="acme") as d:
                while not stop.is_set():
                    d.execute("insert into rr_t (id, v, note) values (%s, 1, 'lag') "
                              "on conflict (id) do update set v = rr_t.v + 1", [6000 + i % 50])
                    i += 1
                    stop.wait(0.1)
        except Exception as e:
            writer_errors.append(e)

    w = threading.Thread(target=writer, daemon=True)
    w.start()
    try:
        time.sleep(0.5)
        with laggard.connect(dbname="postgres") as d:
            d.execute("select pg_wal_replay_pause()")
        t_pause = time.monotonic()
        # lag passes 2s ~2s after the pause; then at most 2 health periods, plus slack
        rows = wait_states(p, {laggard.port: "lagging", other.port: "up"},
                           timeout=2.0 + 2 * HEALTH + 1.5)
        assert int(float(rows[laggard.port]["lag_ms"])) > 2000, rows[laggard.port]
        assert int(float(rows[other.port]["lag_ms"])) <= 2000, rows[other.port]
        counts, errs = port_counts(p, 4, 200)
        assert not errs, errs
        assert laggard.port not in counts, f"a lagging replica got reads: {counts}"
        assert counts.get(other.port, 0) == 200, counts
        assert time.monotonic() - t_pause < 30
    finally:
        with laggard.connect(dbname="postgres") as d:
            d.execute("select pg_wal_replay_resume()")
        stop.set()
        w.join(10)
    assert not writer_errors, writer_errors
    wait_states(p, {laggard.port: "up", other.port: "up"}, timeout=2 * HEALTH + 3)
    counts, errs = port_counts(p, 6, 300)
    assert not errs, errs
    assert counts.get(laggard.port, 0) >= 15, f"the caught-up replica gets no reads: {counts}"
    with pg.connect(dbname="acme") as d:
        d.execute("delete from rr_t where id between 6000 and 6049")


# ---------------------------------------------------------------- load balance

def test_reads_are_balanced_across_replicas(pg, pgtenant, reps):
    p = start(pgtenant, pg, reps, {"read_your_writes": 0}, backend={"replica_pool_size": 5})
    counts, errs = port_counts(p, 8, 1000)
    assert not errs, errs
    assert sum(counts.values()) == 1000, counts
    for r in reps:
        assert counts.get(r.port, 0) >= 200, f"replica {r.port} got under 20%: {counts}"
    assert counts.get(pg.port, 0) == 0, f"reads went to the primary with replicas up: {counts}"


def test_show_pools_and_servers_show_replica_pools_as_replicas(pg, pgtenant, reps):
    """SPEC §6: POOLS and SERVERS have role (primary/replica), host, port."""
    p = start(pgtenant, pg, reps, {"read_your_writes": 0})
    with p.connect() as a, p.connect() as b:
        a.execute("select 1")
        a.execute("insert into rr_t (id, v) values (7001, 1)")
        conns = [a, b]
        seen = set()
        for i in range(40):  # both replicas get used (concurrent reads)
            threads = [threading.Thread(target=lambda c=c: seen.add(
                c.execute("select inet_server_port() from pg_sleep(0.02)").fetchone()[0]))
                for c in conns]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            if {r.port for r in reps} <= seen:
                break
        assert {r.port for r in reps} <= seen, seen
        a.execute("delete from rr_t where id = 7001")
    pools = console_rows(p, "SHOW POOLS")
    got = {(r["role"], r["host"], int(r["port"])) for r in pools}
    want = {("primary", "127.0.0.1", pg.port)} | {("replica", "127.0.0.1", r.port) for r in reps}
    assert got == want, f"SHOW POOLS (role, host, port): {sorted(got)}, expected {sorted(want)}"
    servers = console_rows(p, "SHOW SERVERS")
    got = {(r["role"], int(r["port"])) for r in servers}
    assert {("replica", r.port) for r in reps} <= got and ("primary", pg.port) in got, \
        f"SHOW SERVERS (role, port): {sorted(got)}, primary {pg.port}, replicas " \
        f"{[r.port for r in reps]}"


# ---------------------------------------------------------------- a replica dies under a query

def _running_on(reps, marker, timeout=10):
    """The replica whose backend runs a query containing marker, and its pid."""
    def find():
        for r in reps:
            if not r.running:
                continue
            with r.connect(dbname="postgres") as d:
                row = d.execute("select pid from pg_stat_activity where state = 'active' "
                                "and query like %s and pid <> pg_backend_pid()",
                                [f"%{marker}%"]).fetchone()
                if row:
                    return r, row[0]
        return None
    return pgt.wait_for(find, timeout=timeout, what=f"{marker} running on a replica")


def _read_until_ready(c):
    msgs = []
    try:
        while True:
            kind, body = c.recv_msg()
            msgs.append((kind, pgt.parse_fields(body) if kind in (b"E", b"N") else body))
            if kind == b"Z":
                return msgs, False
    except (EOFError, ConnectionResetError):
        return msgs, True


@pytest.mark.parametrize("how", ["terminate", "stop"])
def test_replica_dying_under_a_query_is_fatal_for_that_client_and_next_read_works(pg, pgtenant, reps, how):
    """SPEC §8: the server's own FATAL (57P01) or 08006, then the client is closed, as
    PostgreSQL and PgBouncer do; a new session reads again (elsewhere when stopped)."""
    p = start(pgtenant, pg, reps, {"read_your_writes": 0})
    c = p.raw()
    c.sock.settimeout(30)
    victim = None
    try:
        marker = f"rr victim {how}"
        t0 = time.monotonic()
        c.send(pgt.msg(b"Q", f"select pg_sleep(30), pg_is_in_recovery() -- {marker}\0".encode()))
        victim, pid = _running_on(reps, marker)
        if how == "terminate":
            with victim.connect(dbname="postgres") as d:
                assert d.execute("select pg_terminate_backend(%s)", [pid]).fetchone()[0]
        else:
            victim.stop("immediate")
        msgs, closed = _read_until_ready(c)
        assert time.monotonic() - t0 < 20, "the error came late"
        errors = [m[1] for m in msgs if m[0] == b"E"]
        assert errors, f"no ErrorResponse for the query whose replica died: {msgs}"
        assert errors[0].get("C") in ("57P01", "08006"), errors[0]
        assert errors[0].get("S") == "FATAL", errors[0]
        assert closed, f"the client was not closed: {msgs}"
        c.sock.close()
        c = p.raw()
        # the next read works (on another server connection; elsewhere when stopped)
        row = c.query("select pg_is_in_recovery(), inet_server_port()")[0]
        if how == "stop":
            assert int(row[1]) != victim.port, row
        assert c.scalar("select 'still here'") == "still here"
        with p.connect() as other:
            assert in_recovery(other, "select 1") == 1
        assert p.alive()
    finally:
        c.sock.close()
        if victim is not None and not victim.running:
            victim.start()
