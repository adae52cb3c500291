"""Named prepared statements in transaction mode (SPEC §4 "Prepared statements
in transaction mode"): pgbench -M prepared, psycopg with every statement
prepared, libpq-level Parse/Bind/Describe/Close and DEALLOCATE, statements
keyed by tenant state, the per-server LRU limit, the per-client limit,
portals, and re-preparing after a server connection died."""

import struct
import threading
import time

import psycopg
import pytest
from psycopg import pq

import pgt

OK = pq.ExecStatus.COMMAND_OK
TUPLES = pq.ExecStatus.TUPLES_OK
FATAL = pq.ExecStatus.FATAL_ERROR
INT4_OID = 23
TEXT_OID = 25


def _assert_pgbench_clean(res):
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"pgbench exited {res.returncode}:\n{out[-4000:]}"
    stats = pgt.parse_pgbench(res.stdout)
    assert "failed" in stats, f"no 'failed transactions' line in pgbench output:\n{out[-4000:]}"
    assert stats["failed"] == 0, f"pgbench reported failures:\n{out[-4000:]}"
    assert stats.get("processed", 0) > 0, out[-4000:]
    assert "error" not in res.stderr.lower(), res.stderr[-4000:]
    assert "aborted" not in out.lower(), out[-4000:]
    return stats


# ---------------------------------------------------------------- libpq helpers

def _state(res):
    v = res.error_field(pq.DiagnosticField.SQLSTATE)
    return v.decode() if v else None


def _ok(res, status=TUPLES):
    assert res.status == status, (res.status, _state(res), res.error_message)
    return res


def _value(res):
    _ok(res)
    assert res.ntuples == 1, res.ntuples
    v = res.get_value(0, 0)
    return v.decode() if v is not None else None


def _prepare(conn, name, sql, types=None):
    return conn.pgconn.prepare(name.encode(), sql.encode(), types)


def _exec(conn, name, params=()):
    return conn.pgconn.exec_prepared(name.encode(), [str(p).encode() for p in params])


def _exec_value(conn, name, params=()):
    return _value(_exec(conn, name, params))


def _raw_close_statement(raw, name):
    """Close('S', name) + Sync over the raw client; returns the message types."""
    raw.send(pgt.msg(b"C", b"S" + name.encode() + b"\0") + pgt.ext_sync())
    kinds = []
    while True:
        kind, body = raw.recv_msg()
        if kind == b"E":
            raise pgt.PgError(pgt.parse_fields(body))
        if kind in (b"S", b"N"):
            continue
        kinds.append(kind)
        if kind == b"Z":
            return kinds


def _raw_prepare(raw, name, sql):
    raw.send(pgt.ext_parse(sql, name) + pgt.ext_sync())
    return _raw_collect(raw)


def _raw_exec(raw, name, params=()):
    raw.send(pgt.ext_bind(params, stmt=name) + pgt.ext_execute() + pgt.ext_sync())
    return _raw_collect(raw)


def _raw_collect(raw):
    """Reads until ReadyForQuery; returns (kinds, rows, error)."""
    kinds, rows, err = [], [], None
    while True:
        kind, body = raw.recv_msg()
        if kind in (b"S", b"N"):
            continue
        kinds.append(kind)
        if kind == b"D":
            (n,) = struct.unpack("!H", body[:2])
            i, row = 2, []
            for _ in range(n):
                (ln,) = struct.unpack("!i", body[i:i + 4])
                i += 4
                row.append(None if ln < 0 else body[i:i + ln].decode())
                i += max(ln, 0)
            rows.append(row)
        elif kind == b"E":
            err = pgt.PgError(pgt.parse_fields(body))
        elif kind == b"Z":
            return kinds, rows, err


def _pgt_statements(conn):
    """pgtenant's statements on the server connection that runs this query
    (through pgtenant: pg_prepared_statements is per server connection)."""
    return conn.execute("select name, statement from pg_prepared_statements "
                        "where name like 'pgt\\_%' order by name").fetchall()


# ---------------------------------------------------------------- pgbench

def test_pgbench_prepared_tpcb_50_clients_over_pool_of_5_has_no_failures(pg, pgtenant,
                                                                         pgbench_acme):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 5})
    with pgt.ServerConnSampler(pg, "acme") as sampler:
        res = pgt.pgbench(p.env(), ["-M", "prepared", "-c", "50", "-j", "4", "-T", "5", "acme"],
                          timeout=90)
    stats = _assert_pgbench_clean(res)
    assert stats["processed"] >= 50, res.stdout
    assert sampler.error is None, sampler.error
    assert 1 <= sampler.max <= 5, f"{sampler.max} server connections for a pool of 5"


def test_pgbench_prepared_select_only_50_clients_over_pool_of_5_has_no_failures(
        pg, pgtenant, pgbench_acme):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 5})
    with pgt.ServerConnSampler(pg, "acme") as sampler:
        res = pgt.pgbench(p.env(), ["-S", "-M", "prepared", "-c", "50", "-j", "4", "-T", "5",
                                    "acme"], timeout=90)
    stats = _assert_pgbench_clean(res)
    assert stats["processed"] >= 50, res.stdout
    assert sampler.error is None, sampler.error
    assert 1 <= sampler.max <= 5, f"{sampler.max} server connections for a pool of 5"


# ---------------------------------------------------------------- psycopg, prepare_threshold=0

# Each thread runs these in a rotated order, so psycopg's _pg3_0, _pg3_1, ...
# name a different query on every client.
_THREAD_QUERIES = [
    ("select %s::int + 1000", lambda x: x + 1000),
    ("select %s::int * 2", lambda x: x * 2),
    ("select 'n' || %s::text", lambda x: f"n{x}"),
    ("select %s::int - 7, 'two'", lambda x: x - 7),
    ("select length(repeat('x', %s::int))", lambda x: x),
    ("select %s::bigint * 3 + 1", lambda x: x * 3 + 1),
]


def test_psycopg_every_statement_prepared_many_clients_over_small_pool_get_right_results(
        pg, pgtenant):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 3})
    n_threads, rounds = 12, 25
    errors = []
    names_seen = {}

    def client(i):
        try:
            order = _THREAD_QUERIES[i % len(_THREAD_QUERIES):] + \
                _THREAD_QUERIES[:i % len(_THREAD_QUERIES)]
            with p.connect(prepare_threshold=0) as conn:
                for r in range(rounds):
                    for k, (sql, want) in enumerate(order):
                        x = i * 1000 + r * 10 + k
                        if i % 2 and r % 3 == 0:
                            with conn.transaction():
                                got = conn.execute(sql, [x]).fetchone()[0]
                                again = conn.execute(sql, [x + 1]).fetchone()[0]
                            assert again == want(x + 1), (i, sql, x + 1, again)
                        else:
                            got = conn.execute(sql, [x]).fetchone()[0]
                        assert got == want(x), (i, sql, x, got)
                # psycopg really prepared each query under a name of its own
                names_seen[i] = len(conn._prepared._names)
        except Exception as e:  # reported below
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_threads)]
    with pgt.ServerConnSampler(pg, "acme") as sampler:
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
    assert not any(t.is_alive() for t in threads), "client threads hung"
    assert not errors, errors
    # every client prepared (named) each of its queries
    assert len(names_seen) == n_threads
    assert all(n >= len(_THREAD_QUERIES) for n in names_seen.values()), names_seen
    assert sampler.error is None, sampler.error
    assert 1 <= sampler.max <= 3, f"{sampler.max} server connections for a pool of 3"


def _pipeline_scenario(pg, conn, table, statements, sync_each):
    """Runs statements in one psycopg pipeline, then each again outside a
    pipeline, then a final query; returns what a client can observe."""
    with pg.connect_tcp() as d:
        d.execute(f"truncate {table}")
    raised = set()
    curs = []
    try:
        with conn.pipeline() as pl:
            for sql, params in statements:
                cur = conn.cursor()
                curs.append(cur)
                cur.execute(sql, params)
                if sync_each:
                    pl.sync()
    except psycopg.Error as e:
        raised.add((type(e).__name__, e.sqlstate))
    for cur in curs:
        try:
            cur.fetchall()
        except psycopg.Error as e:
            raised.add((type(e).__name__, e.sqlstate))
    with pg.connect_tcp() as d:
        ids = [r[0] for r in d.execute(f"select id from {table} order by id")]
    # the same statements again, one at a time (now in psycopg's cache as prepared)
    after = []
    for sql, params in statements:
        try:
            cur = conn.execute(sql, params)
            after.append(("ok", cur.fetchall() if cur.description else cur.statusmessage))
        except psycopg.Error as e:
            after.append(("error", type(e).__name__, e.sqlstate))
    final = conn.execute("select %s::text || 'usable'", ["still "]).fetchone()[0]
    return raised, ids, after, final


@pytest.mark.parametrize("sync_each", [False, True], ids=["one_sync", "sync_each"])
def test_psycopg_prepared_pipeline_with_failing_statement_behaves_like_direct_connection(
        pg, pgtenant, sync_each):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 2})
    table = "prep_pipe_t"
    with pg.connect_tcp() as d:
        d.execute(f"drop table if exists {table}")
        d.execute(f"create table {table} (id int)")
    statements = [
        (f"insert into {table} values (%s)", [1]),
        ("select %s::int as a", [1]),
        ("select 1 / %s::int", [0]),
        (f"insert into {table} values (%s)", [2]),
        ("select %s::text as c", ["three"]),
    ]

    with pg.connect_tcp() as direct:
        direct.prepare_threshold = 0
        want1 = _pipeline_scenario(pg, direct, table, statements, sync_each)
        want2 = _pipeline_scenario(pg, direct, table, statements, sync_each)
    assert ("DivisionByZero", "22012") in want1[0], want1
    assert want1[3] == "still usable"

    with p.connect(prepare_threshold=0) as via:
        got1 = _pipeline_scenario(pg, via, table, statements, sync_each)
        got2 = _pipeline_scenario(pg, via, table, statements, sync_each)
        # another client sharing the pool does not disturb it
        with p.connect(prepare_threshold=0) as other:
            assert other.execute("select %s::int as a", [41]).fetchone()[0] == 41
        got3 = _pipeline_scenario(pg, via, table, statements, sync_each)
    assert _same_as_direct(got1, want1), (got1, want1)
    assert _same_as_direct(got2, want2), (got2, want2)
    assert _same_as_direct(got3, want2), (got3, want2)


# A statement whose Parse the aborted pipeline skipped: psycopg re-prepares it (ok) or
# uses the name PostgreSQL never saw (26000), depending on whether it had read the
# pipeline's error when it queued that statement - a race inside psycopg, seen on
# direct connections too. The wire-level rule is pinned by the test below.
_STALE_NAME = ("error", "InvalidSqlStatementName", "26000")


def _same_as_direct(got, want):
    """got == want, except that a stale-name error may stand for a success."""
    if got[:2] != want[:2] or got[3] != want[3] or len(got[2]) != len(want[2]):
        return False
    return all(g == w or (_STALE_NAME in (g, w) and "ok" in (g[0], w[0]))
               for g, w in zip(got[2], want[2]))


@pytest.mark.parametrize("pipelined", [False, True], ids=["batch_by_batch", "pipelined"])
def test_named_parse_skipped_after_an_error_in_its_batch_matches_direct_connection(
        pg, pgtenant, pipelined):
    """PostgreSQL skips every message after an error up to Sync, a named Parse
    included: that name then does not exist (26000), and an existing name
    keeps its old statement."""
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1})
    setup = pgt.ext_parse("select 'old'", "keep") + pgt.ext_sync()
    batches = [
        pgt.ext_statement("select 1/0") + pgt.ext_parse("select 2", "later") +
        pgt.ext_parse("select 'new'", "keep") + pgt.ext_sync(),
        pgt.ext_bind(stmt="later") + pgt.ext_execute() + pgt.ext_sync(),
        pgt.ext_bind(stmt="keep") + pgt.ext_execute() + pgt.ext_sync(),
    ]

    def scenario(conn):
        pgt.run_batch(conn, setup, n_syncs=1)
        if pipelined:
            msgs = pgt.run_batch(conn, b"".join(batches), n_syncs=len(batches))
        else:
            msgs = [m for b in batches for m in pgt.run_batch(conn, b, n_syncs=1)]
        return msgs, conn.query("select 'usable'")

    with pg.raw() as direct:
        want = scenario(direct)
    assert ("Error", "22012") in want[0] and ("Error", "26000") in want[0], want
    assert ("DataRow", b"\0\0\0\x03old") in want[0], want
    via = p.raw()
    try:
        assert scenario(via) == want
    finally:
        via.close()


# ---------------------------------------------------------------- libpq level

def test_libpq_prepare_exec_describe_close_and_reprepare_same_name(pgtenant):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 2})
    with p.connect() as conn:
        _ok(_prepare(conn, "s1", "select $1::int"), OK)
        assert _exec_value(conn, "s1", [5]) == "5"
        assert _exec_value(conn, "s1", [-12]) == "-12"

        d = _ok(conn.pgconn.describe_prepared(b"s1"), OK)
        assert d.nparams == 1 and d.param_type(0) == INT4_OID
        assert d.nfields == 1 and d.ftype(0) == INT4_OID and d.fname(0) == b"int4"

        _ok(_prepare(conn, "s2", "select $1::text || $2::text as joined, 42 as n"), OK)
        d = _ok(conn.pgconn.describe_prepared(b"s2"), OK)
        assert [d.param_type(i) for i in range(d.nparams)] == [TEXT_OID, TEXT_OID]
        assert [d.fname(i) for i in range(d.nfields)] == [b"joined", b"n"]
        assert [d.ftype(i) for i in range(d.nfields)] == [TEXT_OID, INT4_OID]

        if hasattr(conn.pgconn, "close_prepared"):
            _ok(conn.pgconn.close_prepared(b"s1"), OK)
        else:
            # psycopg of this version has no close_prepared: DEALLOCATE
            # through libpq is the closest (Close is tested over the raw client)
            _ok(conn.pgconn.exec_(b"deallocate s1"), OK)
        res = _exec(conn, "s1", [5])
        assert res.status == FATAL and _state(res) == "26000", (res.status, res.error_message)

        # the same name, another query: the new one answers
        _ok(_prepare(conn, "s1", "select 'new:' || $1::text"), OK)
        assert _exec_value(conn, "s1", [5]) == "new:5"
        d = _ok(conn.pgconn.describe_prepared(b"s1"), OK)
        assert d.param_type(0) == TEXT_OID and d.ftype(0) == TEXT_OID
        assert _value(_exec(conn, "s2", ["a", "b"])) == "ab"
        assert conn.execute("select 'usable'").fetchone()[0] == "usable"


def test_close_message_then_reprepare_same_name_with_other_query(pgtenant):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1})
    raw = p.raw()
    try:
        kinds, _, err = _raw_prepare(raw, "cs", "select $1::int + 1")
        assert err is None and kinds == [b"1", b"Z"], (kinds, err)
        _, rows, err = _raw_exec(raw, "cs", [1])
        assert err is None and rows == [["2"]]
        assert _raw_close_statement(raw, "cs") == [b"3", b"Z"]
        _, rows, err = _raw_exec(raw, "cs", [1])
        assert err is not None and err.sqlstate == "26000", (rows, err)
        kinds, _, err = _raw_prepare(raw, "cs", "select $1::text || '!'")
        assert err is None and kinds == [b"1", b"Z"], (kinds, err)
        _, rows, err = _raw_exec(raw, "cs", [1])
        assert err is None and rows == [["1!"]], (rows, err)
        # Close of a name never prepared is no error (as in PostgreSQL)
        assert _raw_close_statement(raw, "never_prepared") == [b"3", b"Z"]
        assert raw.scalar("select 'usable'") == "usable"
    finally:
        raw.close()


def test_preparing_an_existing_name_fails_as_on_a_direct_connection(pg, pgtenant):
    """PostgreSQL refuses a Parse of a name that exists (42P05) and keeps the
    old statement; through pgtenant the client must see the same."""
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1})

    def scenario(conn):
        _ok(_prepare(conn, "dup", "select $1::int * 10"), OK)
        res = _prepare(conn, "dup", "select 'other'::text")
        first = (res.status, _state(res))
        return first, _exec_value(conn, "dup", [3])

    with pg.connect_tcp() as direct:
        want = scenario(direct)
    assert want == ((FATAL, "42P05"), "30"), want
    with p.connect() as via:
        assert scenario(via) == want


def test_two_clients_same_statement_name_different_queries_each_get_their_own(pgtenant):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1})
    with p.connect() as a, p.connect() as b:
        _ok(_prepare(a, "same", "select 'a:' || $1::text"), OK)
        _ok(_prepare(b, "same", "select $1::int * 100"), OK)
        for i in range(10):
            assert _exec_value(a, "same", [i]) == f"a:{i}"
            assert _exec_value(b, "same", [i]) == str(i * 100)
        da = _ok(a.pgconn.describe_prepared(b"same"), OK)
        db = _ok(b.pgconn.describe_prepared(b"same"), OK)
        assert da.ftype(0) == TEXT_OID and db.ftype(0) == INT4_OID
        # one closing its statement leaves the other's alone
        _ok(a.pgconn.exec_(b"DEALLOCATE same"), OK)
        assert _exec_value(b, "same", [7]) == "700"
        res = _exec(a, "same", [1])
        assert _state(res) == "26000", res.error_message


def test_deallocate_name_and_all_via_simple_query(pgtenant):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 2})
    with p.connect() as conn:
        _ok(_prepare(conn, "d1", "select $1::int + 1"), OK)
        _ok(_prepare(conn, "d2", "select $1::int + 2"), OK)
        _ok(_prepare(conn, "d3", "select $1::int + 3"), OK)
        assert _exec_value(conn, "d1", [1]) == "2"
        assert _exec_value(conn, "d2", [1]) == "3"

        res = _ok(conn.pgconn.exec_(b"DEALLOCATE d1"), OK)
        assert res.command_status == b"DEALLOCATE"
        res = _exec(conn, "d1", [1])
        assert res.status == FATAL and _state(res) == "26000", res.error_message
        assert _exec_value(conn, "d2", [1]) == "3"
        _ok(_prepare(conn, "d1", "select $1::int + 10"), OK)
        assert _exec_value(conn, "d1", [1]) == "11"

        res = _ok(conn.pgconn.exec_(b"deallocate prepare d2;"), OK)
        assert _state(_exec(conn, "d2", [1])) == "26000"

        res = _ok(conn.pgconn.exec_(b"DEALLOCATE ALL"), OK)
        assert res.command_status == b"DEALLOCATE ALL"
        for name in ("d1", "d2", "d3"):
            res = _exec(conn, name, [1])
            assert res.status == FATAL and _state(res) == "26000", (name, res.error_message)
        # all names can be prepared again
        _ok(_prepare(conn, "d3", "select $1::int + 30"), OK)
        assert _exec_value(conn, "d3", [1]) == "31"
        # DEALLOCATE of an unknown name: PostgreSQL's 26000, session goes on
        res = conn.pgconn.exec_(b"DEALLOCATE nosuch")
        assert res.status == FATAL and _state(res) == "26000", res.error_message
        assert _exec_value(conn, "d3", [2]) == "32"


def test_deallocate_all_from_a_client_without_statements_does_not_break_others(pgtenant):
    """A client that holds no statements (or has deallocated them all) sending
    DEALLOCATE ALL — what drivers send when returning a connection to their
    pool — must not drop pgtenant's statements from a shared server
    connection under another client."""
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1})
    with p.connect() as a, p.connect() as b:
        _ok(_prepare(a, "keep", "select $1::int * 3"), OK)
        assert _exec_value(a, "keep", [2]) == "6"
        # b never prepared anything
        _ok(b.pgconn.exec_(b"DEALLOCATE ALL"), OK)
        assert _exec_value(a, "keep", [3]) == "9"
        # b prepares, deallocates all (handled by pgtenant), then again
        _ok(_prepare(b, "x", "select 1"), OK)
        _ok(b.pgconn.exec_(b"DEALLOCATE ALL"), OK)
        _ok(b.pgconn.exec_(b"DEALLOCATE ALL"), OK)
        assert _exec_value(a, "keep", [4]) == "12"


# ---------------------------------------------------------------- errors at Parse

@pytest.mark.parametrize("bad_sql,sqlstate", [
    ("selec $1::int", "42601"),                        # syntax error
    ("select $1::int from no_such_table_xyz", "42P01"),  # parses, fails analysis
])
def test_bad_statement_reports_error_and_later_statements_work(pgtenant, bad_sql, sqlstate):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1})
    with p.connect() as conn:
        _ok(_prepare(conn, "good", "select $1::int * 2"), OK)
        res = _prepare(conn, "bad", bad_sql)
        if res.status == FATAL:
            where = "prepare"
            assert _state(res) == sqlstate, res.error_message
            # as in PostgreSQL, the name does not exist afterwards
            res = _exec(conn, "bad", [1])
            assert _state(res) == "26000", res.error_message
        else:
            where = "first execution"
            assert res.status == OK, res.error_message
            res = _exec(conn, "bad", [1])
            assert res.status == FATAL and _state(res) == sqlstate, res.error_message
            # and every later execution too — never a hang or another statement's result
            res = _exec(conn, "bad", [1])
            assert res.status == FATAL and _state(res) == sqlstate, res.error_message
        print(f"{bad_sql!r}: error reported at {where}")
        assert _exec_value(conn, "good", [21]) == "42"
        assert conn.execute("select 'usable'").fetchone()[0] == "usable"
        _ok(_prepare(conn, "after", "select $1::text"), OK)
        assert _exec_value(conn, "after", ["x"]) == "x"
        # psycopg level: an error at prepare or run, then the connection goes on
        conn.prepare_threshold = 0
        with pytest.raises(psycopg.Error) as ei:
            conn.execute(bad_sql.replace("$1", "%s"), [1])
        assert ei.value.sqlstate == sqlstate
        assert conn.execute("select %s::int + 1", [1]).fetchone()[0] == 2


# ---------------------------------------------------------------- tenant state

def _schema_tenants(pg):
    with pg.connect(dbname="appdb") as c:
        for s, typ, val in (("s_a", "int", "1"), ("s_b", "text", "'bee'")):
            c.execute(f"drop schema if exists {s} cascade")
            c.execute(f"create schema {s} authorization app")
            c.execute(f"create table {s}.t (v {typ})")
            c.execute(f"insert into {s}.t values ({val})")
            c.execute(f"alter table {s}.t owner to app")
    return {"ta": {"mode": "schema", "backend": "main", "schema": "s_a"},
            "tb": {"mode": "schema", "backend": "main", "schema": "s_b"}}


def test_same_statement_text_and_name_under_two_schema_tenants_over_pool_of_1(pg, pgtenant):
    """s_a.t.v is int 1, s_b.t.v is text 'bee': one server-side statement for
    both would return the other tenant's value or fail with 'cached plan must
    not change result type'."""
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1},
                 tenants=_schema_tenants(pg))
    with p.connect(user="app.ta", dbname="appdb") as a, \
            p.connect(user="app.tb", dbname="appdb") as b:
        _ok(_prepare(a, "q", "select v from t"), OK)
        _ok(_prepare(b, "q", "select v from t"), OK)
        for _ in range(6):
            assert _exec_value(a, "q") == "1"
            assert _exec_value(b, "q") == "bee"
        da = _ok(a.pgconn.describe_prepared(b"q"), OK)
        db = _ok(b.pgconn.describe_prepared(b"q"), OK)
        assert da.ftype(0) == INT4_OID and db.ftype(0) == TEXT_OID
        # two server-side statements for the one text, on the one server connection
        stmts = _pgt_statements(a)
        assert [s for _, s in stmts].count("select v from t") == 2, stmts
        assert len(pg.server_conns("appdb")) == 1

    # psycopg names both _pg3_0 with the same text
    with p.connect(user="app.ta", dbname="appdb", prepare_threshold=0) as a, \
            p.connect(user="app.tb", dbname="appdb", prepare_threshold=0) as b:
        for _ in range(6):
            assert a.execute("select v from t").fetchone()[0] == 1
            assert b.execute("select v from t").fetchone()[0] == "bee"
            with a.transaction():
                assert a.execute("select v from t").fetchone()[0] == 1
            with b.transaction():
                assert b.execute("select v from t").fetchone()[0] == "bee"


# ---------------------------------------------------------------- limits

def test_max_prepared_statements_3_evicts_lru_and_reprepares(pgtenant):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1,
                  "max_prepared_statements": 3})
    with p.connect() as conn:
        for k in range(10):
            _ok(_prepare(conn, f"m{k}", f"select $1::int + {k * 100}"), OK)
        peak = 0
        for rnd in range(3):
            order = range(10) if rnd != 1 else reversed(range(10))
            for k in order:
                assert _exec_value(conn, f"m{k}", [rnd]) == str(rnd + k * 100)
                n = len(_pgt_statements(conn))
                peak = max(peak, n)
                assert n <= 3 + 1, f"{n} pgt_ statements on the server (limit 3)"
            # repeated use of a recent statement in between
            assert _exec_value(conn, "m9", [1]) == "901"
        assert peak >= 3, peak  # they were really prepared there
        d = _ok(conn.pgconn.describe_prepared(b"m0"), OK)
        assert d.ftype(0) == INT4_OID
        assert len(_pgt_statements(conn)) <= 3 + 1

    # psycopg with every statement prepared, same limit
    with p.connect(prepare_threshold=0) as conn:
        for rnd in range(3):
            for k in range(10):
                assert conn.execute(f"select %s::int + {k}", [rnd]).fetchone()[0] == rnd + k
                n = conn.execute("select count(*) from pg_prepared_statements "
                                 "where name like 'pgt\\_%'").fetchone()[0]
                # this count query is itself prepared by psycopg: it is one of the 3
                assert n <= 3 + 1, n


def test_max_client_prepared_statements_5_refuses_the_6th_with_53400(pgtenant):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1,
                  "max_client_prepared_statements": 5})
    # raw protocol first, with a short socket timeout so that a swallowed
    # message fails the test quickly instead of hanging it
    raw = p.raw()
    try:
        raw.sock.settimeout(5)
        for k in range(5):
            kinds, _, err = _raw_prepare(raw, f"r{k}", f"select {k}")
            assert err is None and kinds == [b"1", b"Z"], (k, kinds, err)
        kinds, _, err = _raw_prepare(raw, "r5", "select 5")
        assert err is not None and err.sqlstate == "53400" and kinds == [b"E", b"Z"], (kinds, err)
        assert raw.query("select 'usable after refusal'") == [["usable after refusal"]]
        _, rows, err = _raw_exec(raw, "r4")
        assert err is None and rows == [["4"]], (rows, err)
    finally:
        raw.close()

    with p.connect() as conn:
        for k in range(5):
            _ok(_prepare(conn, f"c{k}", f"select {k} + $1::int"), OK)
        res = _prepare(conn, "c5", "select 5 + $1::int")
        assert res.status == FATAL and _state(res) == "53400", (res.status, res.error_message)
        # the session goes on: simple queries, the 5 statements, Bind of the refused one
        assert conn.execute("select 'usable'").fetchone()[0] == "usable"
        for k in range(5):
            assert _exec_value(conn, f"c{k}", [10]) == str(10 + k)
        res = _exec(conn, "c5", [1])
        assert res.status == FATAL and _state(res) == "26000", res.error_message
        # re-preparing an existing name is no new statement
        _ok(conn.pgconn.exec_(b"DEALLOCATE c0"), OK)
        _ok(_prepare(conn, "c5", "select 5 + $1::int"), OK)
        assert _exec_value(conn, "c5", [1]) == "6"
        res = _prepare(conn, "c6", "select 6")
        assert res.status == FATAL and _state(res) == "53400", res.error_message
        assert conn.execute("select 'still usable'").fetchone()[0] == "still usable"

    # the same in a pipeline with Bind/Execute after the refused Parse (as psycopg sends it)
    with p.connect(prepare_threshold=0) as conn:
        for k in range(5):
            assert conn.execute(f"select {k} + %s::int", [1]).fetchone()[0] == k + 1
        with pytest.raises(psycopg.Error) as ei:
            conn.execute("select 5 + %s::int", [1])
        assert ei.value.sqlstate == "53400"
        assert conn.execute("select 0 + %s::int", [1]).fetchone()[0] == 1
        conn.prepare_threshold = None
        assert conn.execute("select 'usable'").fetchone()[0] == "usable"


# ---------------------------------------------------------------- portals

def test_named_cursor_fetching_in_chunks_inside_a_transaction(pgtenant):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1})
    with p.connect(prepare_threshold=0) as conn, p.connect(prepare_threshold=0) as other:
        got = []
        with conn.transaction():
            with conn.cursor(name="chunky") as cur:
                cur.itersize = 7
                cur.execute("select g, 'row ' || g from generate_series(1, %s) g", [50])
                while True:
                    rows = cur.fetchmany(7)
                    if not rows:
                        break
                    got.extend(rows)
        assert got == [(g, f"row {g}") for g in range(1, 51)]
        # the pool of 1 is free again for the other client
        assert other.execute("select %s::int", [5]).fetchone()[0] == 5


def test_protocol_portal_of_a_named_statement_executed_in_chunks(pgtenant):
    """Bind of a named statement to a named portal, Execute with a row limit
    (PortalSuspended) several times inside a transaction."""
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1})
    raw = p.raw()
    try:
        kinds, _, err = _raw_prepare(raw, "gen", "select generate_series(1, $1::int)")
        assert err is None, err
        assert raw.query("begin") == []
        raw.send(pgt.ext_bind([10], stmt="gen", portal="p1") + pgt.ext_execute("p1", 4) +
                 pgt.ext_sync())
        kinds, rows, err = _raw_collect(raw)
        assert err is None and b"s" in kinds, (kinds, err)
        got = [r[0] for r in rows]
        for _ in range(3):
            raw.send(pgt.ext_execute("p1", 4) + pgt.ext_sync())
            kinds, rows, err = _raw_collect(raw)
            assert err is None, err
            got += [r[0] for r in rows]
        assert got == [str(i) for i in range(1, 11)]
        raw.send(pgt.msg(b"C", b"Pp1\0") + pgt.ext_sync())
        kinds, _, err = _raw_collect(raw)
        assert err is None and kinds == [b"3", b"Z"], (kinds, err)
        assert raw.query("commit") == []
        _, rows, err = _raw_exec(raw, "gen", [2])
        assert err is None and rows == [["1"], ["2"]]
    finally:
        raw.close()


# ---------------------------------------------------------------- server connection lost

def test_statements_reprepared_after_server_connection_was_terminated(pg, pgtenant):
    p = pgtenant({"pool_mode": "transaction", "default_pool_size": 1})
    with p.connect() as conn, p.connect(prepare_threshold=0) as pconn:
        _ok(_prepare(conn, "t1", "select $1::int + 1"), OK)
        _ok(_prepare(conn, "t2", "select 'two:' || $1::text"), OK)
        assert _exec_value(conn, "t1", [1]) == "2"
        assert _exec_value(conn, "t2", [1]) == "two:1"
        assert pconn.execute("select %s::int * 5", [2]).fetchone()[0] == 10
        assert len(_pgt_statements(conn)) >= 3
        old_pid = conn.execute("select pg_backend_pid()").fetchone()[0]
        with pg.connect() as d:
            assert d.execute("select pg_terminate_backend(%s)", [old_pid]).fetchone()[0]
            pgt.wait_for(lambda: not d.execute(
                "select 1 from pg_stat_activity where pid = %s", [old_pid]).fetchall(),
                what="the server connection to go")
        time.sleep(0.5)  # let pgtenant notice its idle server connection closed
        assert _exec_value(conn, "t1", [10]) == "11"
        assert _exec_value(conn, "t2", [10]) == "two:10"
        assert pconn.execute("select %s::int * 5", [3]).fetchone()[0] == 15
        new_pid = conn.execute("select pg_backend_pid()").fetchone()[0]
        assert new_pid != old_pid
        d = _ok(conn.pgconn.describe_prepared(b"t2"), OK)
        assert d.ftype(0) == TEXT_OID
