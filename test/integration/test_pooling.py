"""Pooling through pgtenant: pgbench load, COPY, cancel, transaction-mode
hand-out, session state following the client, pipelines, NOTICE and
LISTEN/NOTIFY."""

import hashlib
import os
import socket
import threading
import time

import psycopg
import pytest

import pgt


def assert_pgbench_clean(res, expected_processed=None):
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"pgbench exited {res.returncode}:\n{out[-4000:]}"
    stats = pgt.parse_pgbench(res.stdout)
    assert stats.get("failed") == 0, f"pgbench reported failures:\n{out[-4000:]}"
    if expected_processed is not None:
        assert stats.get("processed") == expected_processed, out[-4000:]
    assert "error" not in res.stderr.lower(), res.stderr[-4000:]
    return stats


def test_pgbench_tpcb_50_clients_over_pool_of_10_has_no_failures(pg, pgtenant, pgbench_acme):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 10})
    with pgt.ServerConnSampler(pg, "acme") as sampler:
        res = pgt.pgbench(p.env(), ["-c", "50", "-j", "2", "-t", "40", "acme"])
    assert_pgbench_clean(res, expected_processed=50 * 40)
    assert sampler.error is None, sampler.error
    assert sampler.samples > 0
    assert 1 <= sampler.max <= 10, f"{sampler.max} server connections for a pool of 10"


def test_pgbench_tpcb_50_clients_in_session_mode_with_pool_of_50_has_no_failures(
        pg, pgtenant, pgbench_acme):
    p = pgtenant({"pool_mode": "session", "default_pool_size": 50})
    with pgt.ServerConnSampler(pg, "acme") as sampler:
        res = pgt.pgbench(p.env(), ["-c", "50", "-j", "2", "-t", "20", "acme"])
    assert_pgbench_clean(res, expected_processed=50 * 20)
    assert sampler.error is None, sampler.error
    assert 1 <= sampler.max <= 50, f"{sampler.max} server connections for a pool of 50"


def test_pgbench_select_only_extended_protocol_has_no_failures(pgtenant, pgbench_acme):
    p = pgtenant({"default_pool_size": 4})
    res = pgt.pgbench(p.env(), ["-S", "-M", "extended", "-c", "8", "-j", "2", "-t", "300",
                                "acme"])
    assert_pgbench_clean(res, expected_processed=8 * 300)


def test_pgbench_init_through_pgtenant_loads_scale_1(pg, pgtenant):
    p = pgtenant()
    res = pgt.pgbench(p.env(dbname="globex"), ["-i", "-s", "1", "globex"])
    assert res.returncode == 0, res.stdout + res.stderr
    with pg.connect(dbname="globex") as c:
        assert c.execute("select count(*) from pgbench_accounts").fetchone()[0] == 100000
        assert c.execute("select count(*) from pgbench_branches").fetchone()[0] == 1


def test_psql_copy_out_and_in_100k_rows_round_trips_identical_data(pg, pgtenant, tmp_path):
    p = pgtenant()
    src = tmp_path / "rows.tsv"
    lines = [f"{i}\t{hashlib.md5(str(i).encode()).hexdigest()}\t{i * 0.5}\ttext with\\ttab {i}"
             for i in range(1, 100001)]
    src.write_text("\n".join(lines) + "\n")
    psql = os.path.join(pgt.PG_BIN, "psql")
    base = [psql, "-X", "-v", "ON_ERROR_STOP=1", "-At"]
    env = p.env()
    pgt.run(base + ["-c", "drop table if exists copy_t",
                    "-c", "create table copy_t (id int primary key, h text, n numeric, t text)"],
            env=env, check=True)
    res = pgt.run(base + ["-c", f"\\copy copy_t from '{src}'"], env=env, check=True)
    assert "COPY 100000" in res.stdout

    expect_sum = hashlib.md5("|".join(
        f"{i},{hashlib.md5(str(i).encode()).hexdigest()},{i * 0.5},text with\ttab {i}"
        for i in range(1, 100001)).encode()).hexdigest()
    with pg.connect(dbname="acme") as c:
        count, digest = c.execute(
            "select count(*), md5(string_agg(id || ',' || h || ',' || n || ',' || t, '|' "
            "order by id)) from copy_t").fetchone()
    assert count == 100000
    assert digest == expect_sum

    out = tmp_path / "out.tsv"
    res = pgt.run(base + ["-c", f"\\copy (select * from copy_t order by id) to '{out}'"],
                  env=env, check=True)
    assert "COPY 100000" in res.stdout
    assert out.read_bytes() == src.read_bytes()
    # the session used for COPY is fine afterwards, and the server too
    res = pgt.run(base + ["-c", "select count(*) from copy_t"], env=env, check=True)
    assert res.stdout.strip() == "100000"


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_cancel_of_pg_sleep_returns_query_canceled_and_session_goes_on(pgtenant, pool_mode):
    p = pgtenant({"pool_mode": pool_mode})
    with p.connect() as conn, p.connect(dbname="globex") as bystander:
        timer = threading.Timer(1.0, conn.cancel)
        timer.start()
        t0 = time.monotonic()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("select pg_sleep(30)")
        finally:
            timer.cancel()
        assert time.monotonic() - t0 < 15
        assert conn.execute("select 41 + 1").fetchone()[0] == 42
        assert bystander.execute("select 1").fetchone()[0] == 1


def test_transaction_mode_pool_of_1_makes_second_client_wait_for_commit(pg, pgtenant):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1})
    a = p.connect()
    b = p.connect()
    try:
        a.execute("begin")
        assert a.execute("select 1").fetchone()[0] == 1
        result = {}

        def run_b():
            try:
                result["v"] = b.execute("select 42").fetchone()[0]
            except Exception as e:
                result["e"] = e

        t = threading.Thread(target=run_b, daemon=True)
        t.start()
        t.join(1.5)
        assert t.is_alive(), f"client B was answered while A held the only server: {result}"
        assert len(pg.server_conns("acme")) == 1
        a.execute("commit")
        t.join(15)
        assert not t.is_alive(), "client B still waiting after A committed"
        assert result == {"v": 42}
        # and the other way round, now without a transaction held
        assert a.execute("select 2").fetchone()[0] == 2
    finally:
        a.close()
        b.close()


def test_busy_database_does_not_starve_another_database_sharing_the_backend_pool(pg, pgtenant):
    """acme (its own database) keeps the backend's only server connection busy
    from three clients; globex (another database, so another pool on the same
    backend) must still get its turn instead of waiting out query_wait_timeout."""
    p = pgtenant({"pool_mode": "transaction", "query_wait_timeout": "4s"},
                 backends={"main": pgt.backend_keys(pg, pool_size=1)})
    stop = threading.Event()
    busy_errors, busy_done = [], [0]

    def busy():
        try:
            with p.connect() as c:
                while not stop.is_set():
                    c.execute("select pg_sleep(0.02)")
                    busy_done[0] += 1
        except Exception as e:
            busy_errors.append(e)

    threads = [threading.Thread(target=busy, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        with p.connect(dbname="globex") as other:
            for i in range(5):
                assert other.execute("select current_database(), %s::int", [i]).fetchone() == \
                    ("globex", i)
        before = busy_done[0]
        time.sleep(0.5)
        assert busy_done[0] > before, "acme got no server back after globex's turn"
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert not busy_errors, busy_errors
    assert len(pg.server_conns()) <= 1
    assert "handed over to another pool" in p.log()


SETTINGS_SQL = ("select current_setting('TimeZone'), current_setting('DateStyle'), "
                "current_setting('client_encoding'), current_setting('extra_float_digits'), "
                "current_setting('application_name'), current_setting('IntervalStyle')")


def test_startup_parameters_follow_each_client_across_a_shared_server_connection(pg, pgtenant):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1})
    pa = {"TimeZone": "America/New_York", "DateStyle": "SQL, DMY", "client_encoding": "LATIN1",
          "extra_float_digits": "1", "application_name": "client_a",
          "IntervalStyle": "sql_standard"}
    pb = {"TimeZone": "Asia/Tokyo", "DateStyle": "German, DMY", "client_encoding": "UTF8",
          "extra_float_digits": "3", "application_name": "client_b",
          "IntervalStyle": "postgres"}
    a = p.raw(params=pa)
    b = p.raw(params=pb)
    try:
        keys = ["TimeZone", "DateStyle", "client_encoding", "extra_float_digits",
                "application_name", "IntervalStyle"]
        want_a = [pa[k] for k in keys]
        want_b = [pb[k] for k in keys]
        for _ in range(3):
            assert a.query(SETTINGS_SQL) == [want_a]
            assert b.query(SETTINGS_SQL) == [want_b]
        assert a.scalar("show timezone") == "America/New_York"
        assert b.scalar("show timezone") == "Asia/Tokyo"
        # session SETs made by A stay with A, not with the server connection
        a.query("set application_name = 'a2'")
        a.query("set TimeZone = 'UTC'")
        assert b.query(SETTINGS_SQL) == [want_b]
        want_a2 = list(want_a)
        want_a2[0], want_a2[4] = "UTC", "a2"
        assert a.query(SETTINGS_SQL) == [want_a2]
        assert b.query(SETTINGS_SQL) == [want_b]
        assert a.params.get("application_name") in (None, "a2")
        assert len(pg.server_conns("acme")) == 1
    finally:
        a.close()
        b.close()


def test_two_clients_with_different_timezones_alternating_over_pool_of_1(pgtenant):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1})
    with p.connect(options="-c TimeZone=Europe/Berlin") as a, \
            p.connect(options="-c TimeZone=Australia/Sydney") as b:
        for _ in range(5):
            assert a.execute("show timezone").fetchone()[0] == "Europe/Berlin"
            assert b.execute("show timezone").fetchone()[0] == "Australia/Sydney"


def _psycopg_pipeline(conn, statements, sync_each):
    """Runs statements in one psycopg pipeline; returns the SQLSTATEs raised
    (when psycopg raises them depends on timing, so only the set counts)."""
    raised = set()
    curs = []
    try:
        with conn.pipeline() as pl:
            for sql in statements:
                curs.append(conn.cursor())
                curs[-1].execute(sql)
                if sync_each:
                    pl.sync()
    except psycopg.Error as e:
        raised.add(e.sqlstate)
    for c in curs:
        try:
            c.fetchall()
        except psycopg.Error as e:
            raised.add(e.sqlstate)
    return raised


@pytest.mark.parametrize("sync_each", [False, True], ids=["one_sync", "sync_each"])
def test_psycopg_pipeline_with_failing_statement_behaves_like_direct_connection(
        pg, pgtenant, sync_each):
    p = pgtenant()
    with pg.connect_tcp() as d:
        d.execute("drop table if exists pipe_t")
        d.execute("create table pipe_t (id int)")
    stmts = ["insert into pipe_t values (1)", "select 1 as a", "select 1/0",
             "insert into pipe_t values (2)", "select 3 as c"]

    def scenario(conn):
        with pg.connect_tcp() as d:
            d.execute("truncate pipe_t")
        raised = _psycopg_pipeline(conn, stmts, sync_each)
        with pg.connect_tcp() as d:
            ids = [r[0] for r in d.execute("select id from pipe_t order by id")]
        after = conn.execute("select 'still usable'").fetchone()[0]
        return "22012" in raised, ids, after

    with pg.connect_tcp() as direct:
        want = scenario(direct)
    with p.connect() as via:
        got = scenario(via)
        got2 = scenario(via)  # the same client again
    assert want[0] and want[2] == "still usable"
    assert got == want
    assert got2 == want


def test_extended_protocol_batch_with_error_in_the_middle_matches_direct_connection(
        pg, pgtenant):
    p = pgtenant({"default_pool_size": 2})
    with pg.connect_tcp() as d:
        d.execute("drop table if exists batch_t")
        d.execute("create table batch_t (id int)")
    S = pgt.ext_statement
    batch = (S("insert into batch_t values ($1)", [1]) + S("select 1/0") +
             S("insert into batch_t values ($1)", [2]) + pgt.ext_sync() +
             S("select $1::int + 1", [2]) + S("insert into batch_t values ($1)", [3]) +
             pgt.ext_sync() +
             S("select * from no_such_table") + pgt.ext_sync() +
             pgt.ext_parse("begin") + pgt.ext_bind() + pgt.ext_execute() +
             S("insert into batch_t values ($1)", [4]) + S("select 1/0") + pgt.ext_sync() +
             pgt.ext_parse("rollback") + pgt.ext_bind() + pgt.ext_execute() + pgt.ext_sync() +
             S("select count(*) from batch_t") + pgt.ext_sync())

    def scenario(conn):
        with pg.connect_tcp() as d:
            d.execute("truncate batch_t")
        msgs = pgt.run_batch(conn, batch, n_syncs=6)
        after = conn.query("select 'usable'")
        return msgs, after

    with pg.raw() as direct:
        want = scenario(direct)
    assert ("Error", "22012") in want[0] and want[1] == [["usable"]]
    via = p.raw()
    try:
        assert scenario(via) == want
        assert scenario(via) == want
    finally:
        via.close()


def test_many_pipelined_syncs_from_two_clients_over_pool_of_1_get_their_own_answers(pgtenant):
    p = pgtenant({"default_pool_size": 1})
    results, errors = {}, []

    def client(tag):
        try:
            with p.connect() as conn:
                curs = []
                with conn.pipeline() as pl:
                    for i in range(300):
                        cur = conn.cursor()
                        cur.execute("select %s::int, %s::text", [i, tag])
                        curs.append(cur)
                        pl.sync()
                results[tag] = [c.fetchone() for c in curs]
                assert conn.execute("select 7").fetchone()[0] == 7
        except Exception as e:
            errors.append((tag, e))

    threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for tag in ("x", "y"):
        assert results[tag] == [(i, tag) for i in range(300)]


def test_notice_from_do_block_reaches_the_client(pgtenant):
    p = pgtenant()
    with p.connect() as conn:
        notices = []
        conn.add_notice_handler(lambda d: notices.append((d.severity, d.message_primary)))
        conn.execute("do $$ begin raise notice 'hello from %', current_database(); end $$")
        assert ("NOTICE", "hello from acme") in notices
        assert conn.execute("select 1").fetchone()[0] == 1


def test_listen_notify_in_session_mode_delivers_the_payload(pgtenant):
    p = pgtenant({"pool_mode": "session"})
    with p.connect() as listener, p.connect() as notifier:
        got = []
        listener.add_notify_handler(lambda n: got.append((n.channel, n.payload)))
        listener.execute("listen chan")
        notifier.execute("notify chan, 'payload-1'")

        def received():
            listener.execute("select 1")
            return got
        pgt.wait_for(received, timeout=10, period=0.1, what="the notification")
        assert got == [("chan", "payload-1")]


def test_query_wait_timeout_gives_53300_naming_the_tenant_and_session_goes_on(pgtenant):
    p = pgtenant({"default_pool_size": 1, "query_wait_timeout": "1s"})
    with p.connect() as holder, p.connect() as waiter:
        holder.execute("begin")
        holder.execute("select 1")
        t0 = time.monotonic()
        with pytest.raises(psycopg.Error) as ei:
            waiter.execute("select 2")
        assert time.monotonic() - t0 < 15
        assert ei.value.sqlstate == "53300", (ei.value.sqlstate, str(ei.value))
        assert "acme" in str(ei.value)
        holder.execute("commit")
        assert waiter.execute("select 3").fetchone()[0] == 3


def test_tenant_pool_size_caps_its_server_connections(pg, pgtenant, pgbench_acme):
    p = pgtenant({"default_pool_size": 10},
                 tenants={"acme": {"mode": "database", "backend": "main", "dbname": "acme",
                                   "pool_size": 3}})
    with pgt.ServerConnSampler(pg, "acme") as sampler:
        res = pgt.pgbench(p.env(), ["-S", "-c", "12", "-j", "2", "-t", "100", "acme"])
    assert_pgbench_clean(res, expected_processed=12 * 100)
    assert 1 <= sampler.max <= 3, f"{sampler.max} server connections for a tenant pool_size of 3"


def test_pgbench_with_a_new_connection_per_transaction_has_no_failures(pg, pgtenant,
                                                                       pgbench_acme):
    p = pgtenant({"default_pool_size": 4})
    res = pgt.pgbench(p.env(), ["-C", "-S", "-c", "8", "-j", "2", "-t", "30", "acme"])
    assert_pgbench_clean(res, expected_processed=8 * 30)
    # every client connection is gone again, and no server connection leaked past the pool
    assert len(pg.server_conns("acme")) <= 4


def test_client_vanishing_inside_a_transaction_rolls_it_back_and_frees_the_server(pg, pgtenant):
    with pg.connect_tcp() as d:
        d.execute("drop table if exists vanish_t")
        d.execute("create table vanish_t (id int)")
    p = pgtenant({"default_pool_size": 1})
    c = p.raw()
    c.query("begin")
    c.query("insert into vanish_t values (1)")
    c.sock.close()  # no Terminate: the client just goes away
    with p.connect() as other:
        assert other.execute("select count(*) from vanish_t").fetchone()[0] == 0
        other.execute("insert into vanish_t values (2)")
    with pg.connect_tcp() as d:
        assert [r[0] for r in d.execute("select id from vanish_t")] == [2]
    assert len(pg.server_conns("acme")) <= 1


def test_client_vanishing_mid_query_does_not_leak_the_server_connection(pg, pgtenant):
    p = pgtenant({"default_pool_size": 1})
    c = p.raw()
    c.send(pgt.msg(b"Q", b"select pg_sleep(1.5), 'vanished'\0"))
    time.sleep(0.3)
    c.sock.close()
    with p.connect() as other:  # gets the only server once the query is over
        assert other.execute("select 'next'").fetchone()[0] == "next"
        assert other.execute("select 'again'").fetchone()[0] == "again"
    # pgtenant may close the server instead of reusing it; PostgreSQL notices
    # that once pg_sleep is over
    pgt.wait_for(lambda: len(pg.server_conns("acme")) <= 1, timeout=10,
                 what="at most 1 server connection")


def test_session_mode_resets_server_state_before_the_next_client(pgtenant):
    p = pgtenant({"pool_mode": "session", "default_pool_size": 1})
    with p.connect() as a:
        a.execute("set work_mem = '7MB'")
        a.execute("create temp table session_tmp (x int)")
        a.execute("prepare sess_stmt as select 1")
        assert a.execute("show work_mem").fetchone()[0] == "7MB"
    with p.connect() as b:
        assert b.execute("show work_mem").fetchone()[0] == "4MB"
        assert b.execute("select count(*) from pg_prepared_statements").fetchone()[0] == 0
        assert b.execute(
            "select count(*) from pg_class where relname = 'session_tmp'").fetchone()[0] == 0


def test_a_client_arriving_during_a_reset_waits_for_that_server_instead_of_a_new_one(
        pg, pgtenant):
    """Session mode, tenant pool_size 1: the server a client leaves runs
    server_reset_query (here slow on purpose) before anyone may have it. A
    client that needs a server meanwhile waits for that one; pgtenant must not
    open a second connection past the tenant's pool_size (test_faults'
    queued_for_a_server-session saw sv_idle 2 when DISCARD ALL was slow)."""
    p = pgtenant({"pool_mode": "session", "server_reset_query": "select pg_sleep(0.7)"},
                 tenants={"acme": {"mode": "database", "backend": "main", "dbname": "acme",
                                   "pool_size": 1}})
    with p.connect() as a:
        pid = a.execute("select pg_backend_pid()").fetchone()[0]
    with pgt.ServerConnSampler(pg, "acme") as sampler:
        with p.connect() as b:  # logs in and asks while the reset still runs
            assert b.execute("select pg_backend_pid()").fetchone()[0] == pid
        time.sleep(0.3)
    assert sampler.error is None, sampler.error
    assert sampler.max == 1, f"{sampler.max} server connections for a tenant pool_size of 1"
    assert [r[0] for r in pg.server_conns("acme")] == [pid]


def test_session_mode_holds_one_server_per_client(pg, pgtenant):
    p = pgtenant({"pool_mode": "session", "default_pool_size": 5})
    conns = [p.connect() for _ in range(3)]
    try:
        pids = {c.execute("select pg_backend_pid()").fetchone()[0] for c in conns}
        assert len(pids) == 3
        for c in conns:  # the same server every time, for the whole session
            first = c.execute("select pg_backend_pid()").fetchone()[0]
            assert c.execute("select pg_backend_pid()").fetchone()[0] == first
    finally:
        for c in conns:
            c.close()


def _no_hang(what, fn):
    try:
        return fn()
    except socket.timeout:
        pytest.fail(f"no answer within 15s to {what}: pgtenant stopped forwarding")


def test_large_queries_from_the_client_are_forwarded_and_the_next_query_is_read(pgtenant):
    p = pgtenant()
    c = p.raw()
    c.sock.settimeout(15)
    try:
        literal = "x" * 3_000_000
        for i in range(8):
            assert _no_hang(f"3 MB simple query #{i}",
                            lambda: c.scalar(f"select length('{literal}')")) == "3000000"
            assert _no_hang(f"small query after 3 MB query #{i}",
                            lambda: c.scalar(f"select {i}")) == str(i)
            out = _no_hang(f"3 MB Bind parameter #{i}", lambda: pgt.run_batch(
                c, pgt.ext_statement("select length($1::text)", [literal]) + pgt.ext_sync(), 1))
            assert ("DataRow", b"\x00\x00\x00\x073000000") in out, out
            assert _no_hang(f"small query after 3 MB Bind #{i}",
                            lambda: c.scalar("select 'next'")) == "next"
    finally:
        c.sock.close()


def test_large_results_reach_the_client_intact(pgtenant):
    p = pgtenant()
    c = p.raw()
    c.sock.settimeout(15)
    try:
        for i in range(5):
            big = _no_hang(f"10 MB value #{i}", lambda: c.scalar("select repeat('ab', 5000000)"))
            assert len(big) == 10_000_000 and big[:4] == "abab"
            rows = _no_hang(f"200k rows #{i}", lambda: c.query(
                "select g, md5(g::text) from generate_series(1, 200000) g"))
            assert len(rows) == 200000 and rows[-1][0] == "200000"
            assert _no_hang("small query", lambda: c.scalar("select 'after'")) == "after"
    finally:
        c.sock.close()
    with p.connect() as conn:
        rows = conn.execute("select g, repeat('z', 100) from generate_series(1, 100000) g").fetchall()
        assert len(rows) == 100000 and rows[-1] == (100000, "z" * 100)


def test_copy_from_stdin_aborted_by_client_leaves_session_usable(pg, pgtenant):
    with pg.connect_tcp() as d:
        d.execute("drop table if exists copyfail_t")
        d.execute("create table copyfail_t (id int)")
    p = pgtenant({"default_pool_size": 1})
    with p.connect() as conn:
        class Boom(Exception):
            pass
        with pytest.raises((Boom, psycopg.errors.QueryCanceled)):
            with conn.cursor().copy("copy copyfail_t from stdin") as cp:
                cp.write_row([1])
                raise Boom()
        assert conn.execute("select count(*) from copyfail_t").fetchone()[0] == 0
        with conn.cursor().copy("copy copyfail_t from stdin") as cp:
            for i in range(1000):
                cp.write_row([i])
        assert conn.execute("select count(*) from copyfail_t").fetchone()[0] == 1000
        # an error inside COPY data (bad integer) is the server's error, session goes on
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            with conn.cursor().copy("copy copyfail_t from stdin") as cp:
                cp.write(b"notanumber\n")
        assert conn.execute("select count(*) from copyfail_t").fetchone()[0] == 1000


def test_startup_reports_the_parameters_libpq_needs(pgtenant):
    p = pgtenant()
    with p.connect(application_name="ps_check") as conn:
        ps = conn.info.parameter_status
        assert ps("server_version") and ps("server_version").split(".")[0] == "15"
        assert ps("integer_datetimes") == "on"
        assert ps("standard_conforming_strings") == "on"
        assert ps("client_encoding") == "UTF8"
        assert ps("application_name") == "ps_check"
        assert conn.info.backend_pid != 0


def test_multi_statement_simple_query_with_error_behaves_like_direct(pg, pgtenant):
    with pg.connect_tcp() as d:
        d.execute("drop table if exists multi_t")
        d.execute("create table multi_t (id int)")
    p = pgtenant()
    sql = ("insert into multi_t values (1); select 1/0; insert into multi_t values (2)")

    def scenario(conn):
        with pg.connect_tcp() as d:
            d.execute("truncate multi_t")
        msgs = pgt.run_batch(conn, pgt.msg(b"Q", sql.encode() + b"\0"), n_syncs=1)
        with pg.connect_tcp() as d:
            ids = [r[0] for r in d.execute("select id from multi_t")]
        return msgs, ids, conn.query("select 'ok'")

    with pg.raw() as direct:
        want = scenario(direct)
    via = p.raw()
    try:
        assert scenario(via) == want
    finally:
        via.close()


def test_unix_socket_listener_serves_clients(pgtenant, tmp_path):
    sockdir = tmp_path / "sock"
    sockdir.mkdir()
    p = pgtenant({"unix_socket_dir": str(sockdir)})
    assert (sockdir / f".s.PGSQL.{p.port}").exists()
    with psycopg.connect(host=str(sockdir), port=p.port, user="app", dbname="acme",
                         password=pgt.APP_PASSWORD, autocommit=True) as conn:
        assert conn.execute("select current_database()").fetchone()[0] == "acme"


def test_many_clients_over_a_small_pool_all_get_answers(pg, pgtenant):
    p = pgtenant({"default_pool_size": 3})
    errors, done = [], []

    def client(n):
        try:
            with p.connect(dbname="acme" if n % 2 else "globex") as c:
                for i in range(5):
                    assert c.execute("select %s::int * 2", [n * 10 + i]).fetchone()[0] == \
                        (n * 10 + i) * 2
            done.append(n)
        except Exception as e:
            errors.append((n, repr(e)))

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(60)]
    with pgt.ServerConnSampler(pg, "acme") as sampler:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, errors[:5]
    assert len(done) == 60
    assert sampler.max <= 3


def test_cancel_never_hits_the_next_client_of_the_same_server(pgtenant):
    """pool_size 1: A's query is cancelled and B runs right after on the same
    server; B must never be cancelled by A's request."""
    p = pgtenant({"default_pool_size": 1})
    with p.connect() as a, p.connect() as b:
        for i in range(5):
            timer = threading.Timer(0.3, a.cancel)
            timer.start()
            try:
                with pytest.raises(psycopg.errors.QueryCanceled):
                    a.execute("select pg_sleep(20)")
            finally:
                timer.cancel()
            assert b.execute("select pg_sleep(0.3), %s::int", [i]).fetchone()[1] == i


def test_stale_cancel_of_an_idle_client_does_not_cancel_another_clients_query(pgtenant):
    p = pgtenant({"default_pool_size": 1})
    with p.connect() as a, p.connect() as b:
        assert a.execute("select 1").fetchone()[0] == 1  # a used the only server, then let it go
        result = {}

        def run_b():
            try:
                result["v"] = b.execute("select pg_sleep(1.5), 'b done'").fetchone()[1]
            except Exception as e:
                result["e"] = e

        t = threading.Thread(target=run_b, daemon=True)
        t.start()
        time.sleep(0.5)
        a.cancel()  # a has nothing running
        t.join(15)
        assert result == {"v": "b done"}
        assert a.execute("select 2").fetchone()[0] == 2
