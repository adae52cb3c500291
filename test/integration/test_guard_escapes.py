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
