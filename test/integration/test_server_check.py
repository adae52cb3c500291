"""server_check_query / server_check_delay (SPEC §2): a server connection idle longer
than the delay runs the check before it is handed out again; a failing check closes
it and the client is served by another connection."""

import time

import pgt


def start(pgtenant, pg, query, delay):
    return pgtenant({"server_check_query": query, "server_check_delay": delay},
                    backends={"main": pgt.backend_keys(pg, pool_size=2)})


def pid_of(p):
    with p.connect(dbname="acme") as c:
        return c.execute("select pg_backend_pid()").fetchone()[0]


def test_check_runs_on_a_connection_idle_longer_than_the_delay(pg, pgtenant):
    with pg.connect(dbname="acme") as d:
        d.execute("drop sequence if exists pgt_check_seq")
        d.execute("create sequence pgt_check_seq")
        d.execute("grant usage on sequence pgt_check_seq to app")
    p = start(pgtenant, pg, "select nextval('pgt_check_seq')", "300ms")
    pid = pid_of(p)
    with pg.connect(dbname="acme") as d:
        before = d.execute("select last_value, is_called from pgt_check_seq").fetchone()
    assert pid_of(p) == pid  # reused at once: no check
    time.sleep(0.6)
    assert pid_of(p) == pid  # checked, and it passed: the same connection
    with pg.connect(dbname="acme") as d:
        after = d.execute("select last_value, is_called from pgt_check_seq").fetchone()
    assert before == (1, False) and after == (1, True), (before, after)


def test_failing_check_closes_the_connection_and_the_client_gets_another(pg, pgtenant):
    p = start(pgtenant, pg, "select 1/0", "200ms")
    pid = pid_of(p)
    time.sleep(0.5)
    assert pid_of(p) != pid
    assert "check failed" in p.log()
    assert pid not in [r[0] for r in pg.server_conns("acme")]
