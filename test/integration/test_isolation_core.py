"""The isolation core (SPEC §4, §8): the tenant state is committed in a transaction
of its own before a client's unit, so nothing the client's transaction does can undo
it; the reply queue matches every reply to what was sent. Each test is one fault the
landed main had (issue 14), driven over a pool of one server connection so the
connection always passes between tenants."""

import threading
import time

import psycopg
import pytest

import pgt
from test_tenancy import backend, make_schemas, schema_tenant, shared_tenant

TENANTS = ["acme", "globex"]


def ext(sql, params=()):
    return pgt.ext_parse(sql) + pgt.ext_bind(params) + pgt.ext_execute()


@pytest.fixture
def two_schemas(pg):
    make_schemas(pg, [f"s_{t}" for t in TENANTS])
    with pg.connect(dbname="appdb") as c:
        for t in TENANTS:
            c.execute(f"insert into s_{t}.orders (tenant) values ('{t}')")
            c.execute(f"create table s_{t}.uniq (k int unique deferrable initially deferred)")
            c.execute(f"grant all on s_{t}.uniq to app")


def start_one_conn(pgtenant, pg, pool_mode="transaction", tenants=None, **g):
    glob = {"pool_mode": pool_mode}
    if "log_file" in g: glob["log_file"] = g.pop("log_file")
    glob.update(g)
    t = {n: schema_tenant(n) for n in TENANTS}
    t.update(tenants or {})
    return pgtenant(glob, backends={"main": backend(pg, pool_size=1)}, tenants=t)


def rows_of(conn):
    return [r[0] for r in conn.execute("select tenant from orders order by id").fetchall()]


def path_of(conn):
    return conn.execute("select current_setting('search_path')").fetchone()[0]


def test_failing_commit_does_not_undo_the_tenant_state(pg, pgtenant, two_schemas):
    """Fault 1: a COMMIT that fails (deferred unique constraint) rolled the state SET back."""
    p = start_one_conn(pgtenant, pg)
    with p.connect(dbname="acme", autocommit=False) as a, p.connect(dbname="globex") as g:
        a.execute("insert into uniq values (1), (1)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            a.commit()
        assert rows_of(g) == ["globex"]
        assert rows_of(a) == ["acme"]
        a.rollback()
        assert rows_of(a) == ["acme"]


def test_prepare_transaction_refused_does_not_undo_the_tenant_state(pg, pgtenant, two_schemas):
    """Fault 1: PREPARE TRANSACTION refused (max_prepared_transactions = 0) rolls back."""
    p = start_one_conn(pgtenant, pg)
    with p.connect(dbname="acme") as a, p.connect(dbname="globex") as g:
        a.execute("begin")
        a.execute("insert into orders (tenant) values ('acme-2pc')")
        with pytest.raises(psycopg.Error):
            a.execute("prepare transaction 'x'")
        a.execute("rollback")
        assert rows_of(g) == ["globex"]
        assert rows_of(a) == ["acme"]


def test_rollback_and_chain_keeps_the_tenant_state(pg, pgtenant, two_schemas):
    """Fault 2: the chained transaction ran under the previous tenant's search_path."""
    p = start_one_conn(pgtenant, pg)
    with p.connect(dbname="globex") as g:
        assert rows_of(g) == ["globex"]
    with p.connect(dbname="acme") as a:
        a.execute("begin")
        a.execute("select 1")
        a.execute("rollback and chain")
        assert rows_of(a) == ["acme"]
        a.execute("insert into orders (tenant) values ('acme-chained')")
        a.execute("commit")
    with p.connect(dbname="globex") as g:
        assert rows_of(g) == ["globex"]


def test_rollback_then_select_in_one_query_or_batch_keeps_the_state(pg, pgtenant, two_schemas):
    """Fault 3: ROLLBACK; SELECT in one Query, and [ROLLBACK, SELECT]+Sync."""
    p = start_one_conn(pgtenant, pg)
    with p.connect(dbname="globex") as g:
        g.execute("select 1")
    c = p.raw(dbname="acme")
    got = pgt.run_batch(c, pgt.msg(b"Q", b"rollback; select tenant from orders\0"), 1)
    assert ("DataRow", b"\x00\x00\x00\x04acme") in got, got
    with p.connect(dbname="globex") as g:
        g.execute("select 1")
    got = pgt.run_batch(c, ext("rollback") + ext("select tenant from orders") + pgt.ext_sync(), 1)
    assert ("DataRow", b"\x00\x00\x00\x04acme") in got, got
    c.close()


def test_procedure_that_commits_inside_keeps_the_state(pg, pgtenant, two_schemas):
    """Fault 3: a DO block that commits or rolls back inside."""
    p = start_one_conn(pgtenant, pg)
    with p.connect(dbname="globex") as g:
        g.execute("select 1")
    with p.connect(dbname="acme") as a:
        a.execute("do $$ begin rollback; end $$")
        assert rows_of(a) == ["acme"]
        a.execute("do $$ begin commit; end $$; ")
        assert rows_of(a) == ["acme"]


@pytest.mark.parametrize("what", ["plans", "sequences", "temp", "all"])
def test_unit_starting_with_discard_gets_the_tenant_state(pg, pgtenant, two_schemas, what):
    """Fault 4: a unit starting with DISCARD PLANS/SEQUENCES/TEMP got no state."""
    p = start_one_conn(pgtenant, pg)
    with p.connect(dbname="globex") as g:
        g.execute("select 1")
    c = p.raw(dbname="acme")
    got = pgt.run_batch(c, pgt.msg(b"Q", f"discard {what}\0".encode()), 1)
    assert ("Error", None) not in got
    assert c.query("select tenant from orders") == [["acme"]]
    c.close()


def test_database_tenant_on_the_schema_tenants_database_runs_in_the_neutral_state(
        pg, pgtenant, two_schemas):
    """Fault 5: a database tenant sharing the schema tenants' pool ran under a schema
    tenant's search_path, and its own SET search_path reached the schema tenant."""
    p = start_one_conn(pgtenant, pg, tenants={"dbt": {"mode": "database", "backend": "main",
                                                        "dbname": "appdb"}})
    with p.connect(dbname="acme") as a:
        assert rows_of(a) == ["acme"]
    with p.connect(dbname="dbt") as d:
        assert path_of(d) == '"$user", public'
        with pytest.raises(psycopg.errors.UndefinedTable):
            d.execute("select * from orders")
        d.execute("set search_path = s_globex")
        assert d.execute("select tenant from orders").fetchone()[0] == "globex"
    with p.connect(dbname="acme") as a:
        assert rows_of(a) == ["acme"]
        assert path_of(a).startswith('"s_acme"')


def test_missing_schema_is_an_error_never_public(pg, pgtenant, two_schemas):
    """Fault 6: a schema tenant whose schema does not exist ran in public."""
    with pg.connect(dbname="appdb") as c:
        c.execute("drop table if exists public.orders")
        c.execute("create table public.orders (id int, tenant text)")
        c.execute("insert into public.orders values (1, 'PUBLIC')")
        c.execute("grant all on public.orders to app")
    try:
        p = start_one_conn(pgtenant, pg, tenants={"ghost": schema_tenant("ghost")})
        with p.connect(dbname="ghost") as gh:
            for _ in range(3):
                with pytest.raises(psycopg.errors.InvalidSchemaName) as ei:
                    gh.execute("select tenant from orders")
                assert "s_ghost" in str(ei.value)
            with pytest.raises(psycopg.errors.InvalidSchemaName):
                gh.execute("insert into orders values (2, 'ghost')")
        # the failed block left nothing behind: the connection serves others
        with p.connect(dbname="acme") as a:
            assert rows_of(a) == ["acme"]
        c = p.raw(dbname="ghost")
        got = pgt.run_batch(c, ext("select 1") + pgt.ext_sync(), 1)
        assert got[-1] == ("ReadyForQuery", "I") and ("Error", "3F000") in got, got
        got = pgt.run_batch(c, pgt.msg(b"Q", b"select 1\0"), 1)
        assert got == [("Error", "3F000"), ("ReadyForQuery", "I")], got
        c.close()
        with pg.connect(dbname="appdb") as d:
            assert d.execute("select count(*) from public.orders").fetchone()[0] == 1
    finally:
        with pg.connect(dbname="appdb") as c:
            c.execute("drop table if exists public.orders")


def test_named_statement_prepared_again_elsewhere_marks_that_connection(pg, pgtenant, two_schemas):
    """Fault 8: a named statement pgtenant re-prepares on another server connection left
    its session SET there for the next tenant."""
    p = start_one_conn(pgtenant, pg, tenant_pool_size=1)
    with p.connect(dbname="acme") as a:
        c = p.raw(dbname="acme")
        pgt.run_batch(c, pgt.ext_parse("set statement_timeout = 4321", name="st") + pgt.ext_sync(), 1)
        got = pgt.run_batch(c, pgt.ext_bind(stmt="st") + pgt.ext_execute() + pgt.ext_sync(), 1)
        assert ("CommandComplete", "SET") in got, got
        c.close()
        del a
    with p.connect(dbname="globex") as g:
        assert g.execute("show statement_timeout").fetchone()[0] == "0"


def test_failing_reset_closes_the_connection(pg, pgtenant, two_schemas):
    """Fault 9: a DISCARD ALL that failed was ignored: the next tenant inherited the
    timeout and the temp tables."""
    p = start_one_conn(pgtenant, pg)
    with p.connect(dbname="acme") as a:
        a.execute("create temp table secret (v text)")
        a.execute("insert into secret values ('acme secret')")
        a.execute("listen acme_channel")
        a.execute("set statement_timeout = 1")
    with p.connect(dbname="globex") as g:
        assert g.execute("show statement_timeout").fetchone()[0] == "0"
        with pytest.raises(psycopg.errors.UndefinedTable):
            g.execute("select * from pg_temp.secret")
        assert g.execute("select count(*) from pg_listening_channels()").fetchone()[0] == 0


def test_reset_that_fails_closes_the_connection(pg, pgtenant, two_schemas):
    """A reset that fails leaves a state nobody knows: the connection is closed, never
    handed to anyone (session mode, a server_reset_query that fails)."""
    p = start_one_conn(pgtenant, pg, pool_mode="session", server_reset_query="select 1/0")
    with p.connect(dbname="acme") as a:
        a.execute("set work_mem = '7MB'")
        pid = a.execute("select pg_backend_pid()").fetchone()[0]
    time.sleep(0.3)
    with p.connect(dbname="globex") as g:
        assert g.execute("select pg_backend_pid()").fetchone()[0] != pid
        assert g.execute("show work_mem").fetchone()[0] != "7MB"
    assert "failed: state unknown" in p.log()


def test_client_hanging_up_while_held_back_frees_its_server(pg, pgtenant, two_schemas):
    """Fault 11: a client that disconnects while pgtenant holds back its input is noticed."""
    p = start_one_conn(pgtenant, pg, query_wait_timeout="5s")
    with p.connect(dbname="globex") as g:
        g.execute("select 1")
    for _ in range(3):
        c = pgt.RawConn(p.port)
        c.startup("app", "acme", pgt.APP_PASSWORD)
        # a state switch with a pipelined second unit: the second waits for the block
        c.send(pgt.msg(b"Q", b"select pg_sleep(0.3)\0") + pgt.msg(b"Q", b"select 2\0"))
        time.sleep(0.05)
        c.sock.close()
    time.sleep(1)
    with p.connect(dbname="globex") as g:
        assert rows_of(g) == ["globex"]


@pytest.mark.parametrize("bad", ["query_len4", "parse_truncated"])
def test_malformed_message_after_the_block_never_leaks_the_connection(pg, pgtenant, two_schemas, bad):
    """Fault 12: a malformed message answered FATAL after the state was queued returned
    the server to the pool with an orphaned SET; later clients got stray replies."""
    p = start_one_conn(pgtenant, pg)
    with p.connect(dbname="globex") as g:
        g.execute("select 1")
    c = p.raw(dbname="acme")
    if bad == "query_len4":
        c.send(b"Q" + b"\x00\x00\x00\x04")
    else:
        c.send(b"P\x00\x00\x00\x09st\x00sel")
    msgs = []
    with pytest.raises((EOFError, ConnectionResetError)):
        while True:
            msgs.append(c.recv_msg())
    assert any(k == b"E" and pgt.parse_fields(b).get("C") == "08P01" for k, b in msgs), msgs
    for t in ["globex", "acme", "globex"]:
        r = p.raw(dbname=t)
        got = pgt.run_batch(r, ext("select current_setting('search_path')") + pgt.ext_sync(), 1)
        assert [g[0] for g in got] == ["1", "2", "DataRow", "CommandComplete", "ReadyForQuery"], got
        assert f's_{t}'.encode() in got[2][1]
        r.close()


def test_error_in_the_first_unit_leaves_rollback_possible(pg, pgtenant, two_schemas):
    """Fault 13: BEGIN; SELECT 1/0 as a connection's first unit made every ROLLBACK fail."""
    p = start_one_conn(pgtenant, pg)
    with p.connect(dbname="globex") as g:
        g.execute("select 1")
    c = p.raw(dbname="acme")
    got = pgt.run_batch(c, pgt.msg(b"Q", b"begin; select 1/0\0"), 1)
    assert got[-2:] == [("Error", "22012"), ("ReadyForQuery", "E")], got
    got = pgt.run_batch(c, pgt.msg(b"Q", b"rollback\0"), 1)
    assert got == [("CommandComplete", "ROLLBACK"), ("ReadyForQuery", "I")], got
    assert c.query("select tenant from orders") == [["acme"]]
    c.close()


def test_copy_from_stdin_over_the_extended_protocol(pg, pgtenant, two_schemas):
    """Fault 14: PostgreSQL ignores the Sync sent during copy-in; pgtenant counted it."""
    p = start_one_conn(pgtenant, pg)
    c = p.raw(dbname="acme")
    c.send(pgt.ext_parse("copy orders (tenant) from stdin") + pgt.ext_bind() + pgt.ext_execute() +
           pgt.ext_sync())
    kind, _ = c.recv_msg()
    while kind != b"G":
        kind, _ = c.recv_msg()
    got = pgt.run_batch(c, pgt.msg(b"d", b"acme-copied\n") + pgt.msg(b"c") + pgt.ext_sync(), 1)
    assert got == [("CommandComplete", "COPY 1"), ("ReadyForQuery", "I")], got
    assert c.query("select count(*) from orders") == [["2"]]
    c.close()
    with p.connect(dbname="globex") as g:
        assert rows_of(g) == ["globex"]


@pytest.mark.parametrize("how", ["extended", "multi"])
def test_deallocate_all_never_breaks_other_clients_statements(pg, pgtenant, two_schemas, how):
    """Faults 15, 19: DEALLOCATE ALL over the extended protocol or inside a
    multi-statement Query dropped pgtenant's own statements."""
    p = start_one_conn(pgtenant, pg, tenant_pool_size=1)
    other = p.raw(dbname="acme")
    got = pgt.run_batch(other, pgt.ext_parse("select tenant from orders", name="mine") + pgt.ext_sync(), 1)
    got = pgt.run_batch(other, pgt.ext_bind(stmt="mine") + pgt.ext_execute() + pgt.ext_sync(), 1)
    assert ("DataRow", b"\x00\x00\x00\x04acme") in got, got
    c = p.raw(dbname="acme")
    if how == "extended":
        got = pgt.run_batch(c, ext("deallocate all") + pgt.ext_sync(), 1)
    else:
        got = pgt.run_batch(c, pgt.msg(b"Q", b"select 1; deallocate all\0"), 1)
    assert ("Error", None) not in got and got[-1] == ("ReadyForQuery", "I"), got
    for _ in range(2):
        got = pgt.run_batch(other, pgt.ext_bind(stmt="mine") + pgt.ext_execute() + pgt.ext_sync(), 1)
        assert ("DataRow", b"\x00\x00\x00\x04acme") in got, got
    other.close()
    c.close()


def test_deallocate_of_a_named_statement_by_parse_answers_as_postgres_does(pg, pgtenant, two_schemas):
    """Fault 19: psycopg sends DEALLOCATE name as Parse/Bind/Execute; the name is pgtenant's."""
    p = start_one_conn(pgtenant, pg)
    c = p.raw(dbname="acme")
    pgt.run_batch(c, pgt.ext_parse("select 1", name="_pg3_0") + pgt.ext_sync(), 1)
    got = pgt.run_batch(c, ext("DEALLOCATE _pg3_0") + pgt.ext_sync(), 1)
    assert got == [("1", None), ("2", None), ("CommandComplete", "DEALLOCATE"),
                   ("ReadyForQuery", "I")], got
    got = pgt.run_batch(c, pgt.ext_bind(stmt="_pg3_0") + pgt.ext_execute() + pgt.ext_sync(), 1)
    assert ("Error", "26000") in got, got
    got = pgt.run_batch(c, pgt.ext_parse("select 2", name="_pg3_0") + pgt.ext_bind(stmt="_pg3_0") +
                        pgt.ext_execute() + pgt.ext_sync(), 1)
    assert ("DataRow", b"\x00\x00\x00\x012") in got, got
    c.close()


def test_invalid_startup_parameter_is_fatal_and_leaves_nothing_behind(pg, pgtenant, two_schemas):
    """Fault 16: work_mem=banana got no error and the next client got this one's TimeZone."""
    p = start_one_conn(pgtenant, pg)
    c = pgt.RawConn(p.port)
    c.startup("app", "acme", pgt.APP_PASSWORD, params={"work_mem": "banana", "TimeZone": "Asia/Tokyo"})
    c.send(pgt.msg(b"Q", b"select 1\0"))
    msgs = []
    with pytest.raises((EOFError, ConnectionResetError)):
        while True:
            msgs.append(c.recv_msg())
    errs = [pgt.parse_fields(b) for k, b in msgs if k == b"E"]
    assert errs and errs[0]["C"] == "22023" and errs[0]["S"] == "FATAL", msgs
    with p.connect(dbname="acme") as a:
        assert a.execute("show timezone").fetchone()[0] != "Asia/Tokyo"
        assert rows_of(a) == ["acme"]


def test_default_transaction_read_only_startup_parameter_is_applied(pg, pgtenant, two_schemas):
    """Fault 16: default_transaction_read_only=on was never applied (writes succeeded)."""
    p = start_one_conn(pgtenant, pg)
    c = pgt.RawConn(p.port)
    c.startup("app", "acme", pgt.APP_PASSWORD, params={"default_transaction_read_only": "on"})
    got = pgt.run_batch(c, pgt.msg(b"Q", b"insert into orders (tenant) values ('ro')\0"), 1)
    assert ("Error", "25006") in got, got
    c.close()


def test_stale_plan_is_prepared_again(pg, pgtenant, two_schemas):
    """Fault 20: after a table is re-created with other column types, the driver's new
    name mapped back to the stale server statement and failed for good."""
    p = start_one_conn(pgtenant, pg)
    with pg.connect(dbname="appdb") as d:
        d.execute("create table s_acme.t20 (v int)")
        d.execute("insert into s_acme.t20 values (1)")
        d.execute("grant all on s_acme.t20 to app")
    c = p.raw(dbname="acme")
    q = "select * from t20"
    got = pgt.run_batch(c, pgt.ext_parse(q, name="a1") + pgt.ext_bind(stmt="a1") + pgt.ext_execute() +
                        pgt.ext_sync(), 1)
    assert got[-1] == ("ReadyForQuery", "I") and ("Error", None) not in got, got
    with pg.connect(dbname="appdb") as d:
        d.execute("drop table s_acme.t20")
        d.execute("create table s_acme.t20 (v text)")
        d.execute("insert into s_acme.t20 values ('x')")
        d.execute("grant all on s_acme.t20 to app")
    got = pgt.run_batch(c, pgt.ext_bind(stmt="a1") + pgt.ext_execute() + pgt.ext_sync(), 1)
    assert ("Error", "0A000") in got, got
    got = pgt.run_batch(c, pgt.ext_parse(q, name="a2") + pgt.ext_bind(stmt="a2") + pgt.ext_execute() +
                        pgt.ext_sync(), 1)
    assert ("DataRow", b"\x00\x00\x00\x01x") in got, got
    c.close()


def test_password_message_after_login_is_a_protocol_violation(pg, pgtenant, two_schemas):
    """Fault 17: a PasswordMessage after login was passed to the server, which died."""
    p = start_one_conn(pgtenant, pg)
    c = p.raw(dbname="acme")
    c.send(pgt.msg(b"p", b"secret\0"))
    msgs = []
    with pytest.raises((EOFError, ConnectionResetError)):
        while True:
            msgs.append(c.recv_msg())
    assert [pgt.parse_fields(b).get("C") for k, b in msgs if k == b"E"] == ["08P01"], msgs
    with p.connect(dbname="acme") as a:
        assert rows_of(a) == ["acme"]


def test_shared_tenant_after_schema_tenant_gets_the_default_search_path(pg, pgtenant, two_schemas):
    """A state is both halves: a shared tenant never inherits a schema tenant's search_path."""
    p = start_one_conn(pgtenant, pg, tenants={"initech": shared_tenant("initech")})
    with p.connect(dbname="acme") as a:
        assert rows_of(a) == ["acme"]
    with p.connect(dbname="initech") as i:
        assert path_of(i) == '"$user", public'
        assert i.execute("select current_setting('app.tenant_id', true)").fetchone()[0] == "initech"
    with p.connect(dbname="acme") as a:
        assert a.execute("select current_setting('app.tenant_id', true)").fetchone()[0] in ("", None)


def test_pipelined_units_across_a_switch_keep_their_replies(pg, pgtenant, two_schemas):
    """Several Syncs ahead (pipelining drivers) across a tenant switch: each reply is the
    client's own, in order, and runs under its tenant."""
    p = start_one_conn(pgtenant, pg)
    with p.connect(dbname="globex") as g:
        g.execute("select 1")
    c = p.raw(dbname="acme")
    batch = b"".join(ext("select tenant from orders") + pgt.ext_sync() for _ in range(5))
    got = pgt.run_batch(c, batch + pgt.msg(b"Q", b"select tenant from orders\0"), 6)
    assert [g for g in got if g[0] == "DataRow"] == [("DataRow", b"\x00\x00\x00\x04acme")] * 6, got
    assert [g for g in got if g[0] == "ReadyForQuery"] == [("ReadyForQuery", "I")] * 6, got
    c.close()


def test_many_clients_of_two_tenants_over_one_connection(pg, pgtenant, two_schemas):
    """Concurrent switching: every statement reads its own tenant's rows."""
    p = start_one_conn(pgtenant, pg)
    errors = []

    def worker(t):
        try:
            with p.connect(dbname=t) as conn:
                for i in range(40):
                    if i % 3 == 0:
                        with conn.transaction():
                            assert rows_of(conn) == [t]
                    else:
                        assert rows_of(conn) == [t]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in TENANTS * 3]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors


def test_statement_after_reset_all_in_the_same_unit_is_refused(pg, pgtenant, two_schemas):
    """RESET ALL resets search_path: a statement after it in the same Query or extended
    batch would run without the tenant state (reading public); refused with 42501, and
    the unit's implicit transaction rolls the reset back. RESET ALL alone is allowed."""
    with pg.connect(dbname="appdb") as d:
        d.execute("create table if not exists public.orders (id int, tenant text)")
        d.execute("insert into public.orders values (1, 'PUBLIC')")
        d.execute("grant all on public.orders to app")
    try:
        p = start_one_conn(pgtenant, pg)
        c = p.raw(dbname="acme")
        got = pgt.run_batch(c, pgt.msg(b"Q", b"reset all; select tenant from orders\0"), 1)
        assert ("Error", "42501") in got and got[-1] == ("ReadyForQuery", "I"), got
        assert b"PUBLIC" not in repr(got).encode()
        got = pgt.run_batch(c, ext("reset all") + ext("select tenant from orders") + pgt.ext_sync(), 1)
        assert ("Error", "42501") in got and got[-1] == ("ReadyForQuery", "I"), got
        assert c.query("select tenant from orders") == [["acme"]]
        got = pgt.run_batch(c, pgt.msg(b"Q", b"reset all\0"), 1)
        assert got == [("CommandComplete", "RESET"), ("ReadyForQuery", "I")], got
        assert c.query("select tenant from orders") == [["acme"]]
        c.close()
    finally:
        with pg.connect(dbname="appdb") as d:
            d.execute("drop table if exists public.orders")


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_client_that_vanishes_while_not_read_frees_its_server(pg, pgtenant, two_schemas, mode):
    """Fault 11, the back-pressure path: a client pipelines large results it never reads
    until pgtenant stops reading it, then goes away; its server is freed at once."""
    p = start_one_conn(pgtenant, pg, pool_mode=mode)
    c = p.raw(dbname="acme")
    q = pgt.msg(b"Q", ("select repeat('x', 1000) from generate_series(1, 1000) /* " + "p" * 4000 +
                       " */").encode() + b"\0")
    c.sock.settimeout(0.5)
    try:
        for _ in range(4000):
            c.sock.sendall(q)
    except OSError:
        pass
    c.sock.close()
    pgt.wait_for(lambda: not [r for r in pg.server_conns("appdb") if r[3] == "active"],
                 timeout=10, what="the server connection of the vanished client to be freed")
    with p.connect(dbname="globex") as g:
        assert rows_of(g) == ["globex"]


@pytest.mark.parametrize("how", ["extended", "multi", "after_rollback"])
def test_deallocate_all_of_a_database_tenant_client_is_noticed(pg, pgtenant, how):
    """A database tenant with a pool of its own is not analysed, but a DEALLOCATE ALL it
    sends (psycopg does after ROLLBACK) still drops pgtenant's statements on that server:
    they are prepared again, never 26000 for another client."""
    p = pgtenant({"pool_mode": "transaction"}, backends={"main": backend(pg, pool_size=1)})
    other = p.raw(dbname="acme")
    pgt.run_batch(other, pgt.ext_parse("select 41 + 1", name="mine") + pgt.ext_sync(), 1)
    got = pgt.run_batch(other, pgt.ext_bind(stmt="mine") + pgt.ext_execute() + pgt.ext_sync(), 1)
    assert ("DataRow", b"\x00\x00\x00\x0242") in got, got
    c = p.raw(dbname="acme")
    if how == "extended":
        got = pgt.run_batch(c, ext("deallocate all") + pgt.ext_sync(), 1)
    elif how == "multi":
        got = pgt.run_batch(c, pgt.msg(b"Q", b"select 1; deallocate all\0"), 1)
    else:
        got = pgt.run_batch(c, pgt.msg(b"Q", b"begin\0") + pgt.msg(b"Q", b"rollback\0") +
                            pgt.msg(b"Q", b"DEALLOCATE ALL\0"), 3)
    assert ("Error", None) not in got and got[-1] == ("ReadyForQuery", "I"), got
    for _ in range(2):
        got = pgt.run_batch(other, pgt.ext_bind(stmt="mine") + pgt.ext_execute() + pgt.ext_sync(), 1)
        assert ("DataRow", b"\x00\x00\x00\x0242") in got, got
    other.close()
    c.close()
