"""The tenant guard against escaped spellings (SPEC §4): every U&"…" / U&'…'
/ E'…' spelling of search_path, the tenant GUC, role and set_config is first
shown to work on PostgreSQL itself (so each case is a real escape), then
shown to be refused through pgtenant with 42501, the tenant state intact."""

import psycopg
import pytest

import pgt
from test_tenancy import guarded  # noqa: F401 (fixture)

ESCAPED_SEARCH_PATH = [
    'SET U&"search\\005fpath" = s_globex',
    "SET u&\"\\0073earch_path\" TO s_globex",
    'SET U&"search\\+00005fpath" TO s_globex',
    'SET U&"search!005fpath" UESCAPE \'!\' TO s_globex',
    'SET LOCAL U&"SEARCH\\005FPATH" TO s_globex',
    "SELECT U&\"set\\005fconfig\"('search_path', 's_globex', false)",
    "SELECT U&\"set!005fconfig\" UESCAPE '!' ('search_path', 's_globex', false)",
    "SELECT pg_catalog.U&\"set\\005fconfig\"('search_path', 's_globex', false)",
    "SELECT set_config(U&'search\\005fpath', 's_globex', false)",
    "SELECT set_config(U&'search#005fpath' UESCAPE '#', 's_globex', false)",
    "SELECT set_config(E'search\\137path', 's_globex', false)",
    "SELECT set_config(E'\\u0073earch_path', 's_globex', false)",
]


def direct_search_path(pg, sql):
    with pg.connect(dbname="appdb", user="app") as c:
        c.execute("begin")
        c.execute(sql)
        return c.execute("select current_setting('search_path')").fetchone()[0]


@pytest.mark.parametrize("sql", ESCAPED_SEARCH_PATH)
def test_escaped_search_path_is_refused_and_the_state_holds(pg, guarded, sql):  # noqa: F811
    assert direct_search_path(pg, sql) == "s_globex", "not an escape on PostgreSQL itself"
    with guarded.connect(dbname="acme") as conn:
        with pytest.raises(psycopg.Error) as ei:
            conn.execute(sql)
        assert ei.value.sqlstate == "42501", ei.value
        assert conn.execute("select current_schemas(false)::text, tenant from orders"
                            ).fetchall() == [("{s_acme,public}", "acme")]
    with guarded.raw(dbname="acme") as c:
        with pytest.raises(pgt.PgError) as ei:
            c.query(sql)
        assert ei.value.sqlstate == "42501"
        assert c.query("select tenant from orders") == [["acme"]]


@pytest.mark.parametrize("sql", [
    "SET app.U&\"tenant\\005fid\" = 'tid-globex'",
    "SET U&\"app\\002etenant\\005fid\" = 'tid-globex'",
    "SELECT set_config(U&'app.tenant\\005fid', 'tid-globex', false)",
    "SET U&\"r\\006fle\" = postgres",
])
def test_escaped_tenant_guc_and_role_are_refused_for_a_shared_tenant(guarded, sql):  # noqa: F811
    with guarded.connect(dbname="initech") as conn:
        with pytest.raises(psycopg.Error) as ei:
            conn.execute(sql)
        assert ei.value.sqlstate == "42501", ei.value
        assert conn.execute("select current_setting('app.tenant_id'), current_user"
                            ).fetchone() == ("tid-initech", "app")



def parse_sync_then_execute(c, sql):
    """A named Parse and its Sync (no server yet: pgtenant may answer it alone),
    then Bind/Execute/Sync of it; returns [(message kind, SQLSTATE or None)]."""
    kinds = []
    for batch in (pgt.msg(b"P", b"sneaky\0" + sql.encode() + b"\0\0\0") + pgt.msg(b"S"),
                  pgt.msg(b"B", b"\0sneaky\0\0\0\0\0\0\0") + pgt.msg(b"E", b"\0\0\0\0\0") +
                  pgt.msg(b"S")):
        c.send(batch)
        while True:
            kind, body = c.recv_msg()
            kinds.append((kind, pgt.parse_fields(body).get("C") if kind == b"E" else None))
            if kind == b"Z":
                break
    return kinds


def test_guard_refuses_a_named_parse_sent_before_any_server_and_executed_later(guarded):  # noqa: F811,E501
    for sql in ["SET search_path = s_globex", ESCAPED_SEARCH_PATH[0],
                "SELECT set_config('search_path', 's_globex', false)"]:
        with guarded.raw(dbname="acme") as c:
            kinds = parse_sync_then_execute(c, sql)
            assert (b"E", "42501") in kinds, (sql, kinds)
            assert c.query("select current_schemas(false)::text") == [["{s_acme,public}"]], \
                (sql, kinds)
            assert c.query("select tenant from orders") == [["acme"]]


def test_guard_refuses_escapes_when_the_router_has_analysed_the_statement_first(pg, pgtenant):
    """With read routing configured, the router reads every statement before the
    guard does and pgtenant analyses each statement once, sharing the verdict:
    the shared verdict still refuses every escape, in a Query (alone and after
    another statement) and in a named Parse executed later."""
    from test_tenancy import backend, drop_schemas, make_schemas, schema_tenant
    make_schemas(pg, ["s_acme", "s_globex"])
    try:
        with pg.connect(dbname="appdb") as c:
            c.execute("insert into s_acme.orders (tenant, item) values ('acme', 'marker')")
        # the "replica" is the primary itself: not in recovery, so never used, but
        # read routing still reads every batch
        p = pgtenant({"read_routing": "auto", "health_check_period": "60s"},
                     backends={"main": backend(pg, pool_size=1,
                                               replicas=f"127.0.0.1:{pg.port}")},
                     tenants={"acme": schema_tenant("acme")})
        for sql in ESCAPED_SEARCH_PATH[:4] + ["SET search_path = s_globex",
                                              "select 1; set search_path = s_globex"]:
            with p.raw(dbname="acme") as c:
                with pytest.raises(pgt.PgError) as ei:
                    c.query(sql)
                assert ei.value.sqlstate == "42501", (sql, ei.value)
                if ";" not in sql:
                    kinds = parse_sync_then_execute(c, sql)
                    assert (b"E", "42501") in kinds, (sql, kinds)
                assert c.query("select tenant from orders") == [["acme"]]
                assert c.query("select current_schemas(false)::text") == [["{s_acme,public}"]]
    finally:
        drop_schemas(pg, ["s_acme", "s_globex"])
