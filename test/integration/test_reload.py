"""Hot reload (SPEC §6 RELOAD): onboarding a tenant and changing limits under
load drops nothing; removing a tenant closes its clients only after their
current transaction; a large include_dir reloads."""

import os
import signal
import threading
import time

import psycopg
import pytest

import pgt
from test_admin import psql, psql_rows, start


def rewrite_ini(p):
    with open(p.ini, "w") as f:
        f.write(pgt.render_ini(p.globals, p.backends, p.tenants))


@pytest.fixture(scope="module")
def acme_pgbench_tables(pg):
    res = pgt.pgbench({"PGPASSWORD": pgt.APP_PASSWORD},
                      ["-i", "-s", "1", "-q", "-h", pg.sockdir, "-p", str(pg.port), "-U", "app",
                       "acme"])
    assert res.returncode == 0, res.stdout + res.stderr


def test_reload_under_pgbench_adds_a_tenant_and_changes_a_pool_size_without_failures(
        pgtenant, acme_pgbench_tables):
    p = start(pgtenant, tenants={"globex": None,
                                 "acme": {"mode": "database", "backend": "main",
                                          "dbname": "acme", "pool_size": 10}})
    env = p.env(user="app.acme", dbname="acme")
    result = {}

    def load():
        result["res"] = pgt.pgbench(env, ["-c", "50", "-j", "2", "-T", "6", "-n"])

    runner = threading.Thread(target=load)
    runner.start()
    time.sleep(2)
    # onboard globex and shrink acme's pool while 50 clients run
    p.tenants["globex"] = {"mode": "database", "backend": "main", "dbname": "globex"}
    p.tenants["acme"]["pool_size"] = 4
    rewrite_ini(p)
    res = psql(p, "RELOAD")
    assert "RELOAD" in res.stdout + res.stderr or res.returncode == 0
    with p.connect(user="app.globex", dbname="globex") as conn:
        assert conn.execute("select current_database()").fetchone()[0] == "globex"
    runner.join(60)
    assert not runner.is_alive()
    out = result["res"].stdout + result["res"].stderr
    stats = pgt.parse_pgbench(result["res"].stdout)
    assert result["res"].returncode == 0, out[-3000:]
    assert stats.get("failed") == 0 and stats.get("processed", 0) > 0, out[-3000:]
    _, rows = psql_rows(p, "SHOW TENANTS")
    acme = [r for r in rows if r["tenant"] == "acme"][0]
    assert acme["pool_size"] == "4"


def test_removing_a_tenant_closes_its_clients_after_their_transaction(pgtenant):
    p = start(pgtenant)
    with p.connect(user="app.globex", dbname="globex") as doomed, \
            p.connect(user="app.acme", dbname="acme") as bystander:
        doomed.execute("create table if not exists reload_doomed (v int)")
        doomed.execute("delete from reload_doomed")
        doomed.autocommit = False
        doomed.execute("insert into reload_doomed values (1)")  # a transaction is open
        p.tenants.pop("globex")
        rewrite_ini(p)
        psql(p, "RELOAD")
        # the running transaction finishes normally...
        doomed.execute("insert into reload_doomed values (2)")
        doomed.commit()
        # ...and then the client is let go
        with pytest.raises(psycopg.Error) as e:
            doomed.execute("select 1")
        assert "removed" in str(e.value) or e.value.sqlstate in ("57P01", None)
        assert bystander.execute("select 1").fetchone()[0] == 1
    with pg_direct(p) as d:
        assert d.execute("select count(*) from reload_doomed").fetchone()[0] == 2
    err = pgt.startup_error(p.port, "app.globex", "globex", pgt.APP_PASSWORD)
    assert err.sqlstate == "3D000", err


def pg_direct(p):
    return p.pg.connect_tcp(dbname="globex")


def test_reload_reads_ten_thousand_tenants_from_include_dir(pgtenant, tmp_path):
    inc = tmp_path / "tenants.d"
    inc.mkdir()
    p = start(pgtenant, {"include_dir": str(inc)})
    with open(inc / "many.ini", "w") as f:
        for i in range(10000):
            f.write(f"[tenant t{i}]\nmode = schema\nbackend = main\n")
    psql(p, "RELOAD")
    _, rows = psql_rows(p, "SHOW TENANTS")
    names = {r["tenant"] for r in rows}
    assert len(names) == 10002 and "t0" in names and "t9999" in names
    with p.connect(user="app.acme", dbname="acme") as conn:
        assert conn.execute("select 1").fetchone()[0] == 1


def _read(path):
    with open(path) as f:
        return f.read()


def test_sighup_reopens_log_and_audit_files_renamed_by_logrotate(pgtenant, tmp_path):
    log = str(tmp_path / "pgtenant.log")
    audit = str(tmp_path / "audit.log")
    p = start(pgtenant, {"log_file": log, "audit_log": audit})
    with p.connect(dbname="acme") as conn:
        assert conn.execute("select current_database()").fetchone()[0] == "acme"
    pgt.wait_for(lambda: "acme" in _read(log), what="a login line in the log file")
    # the disconnect is logged after the client has gone: wait for it, or it races the rename
    pgt.wait_for(lambda: "closing" in _read(log), what="the disconnect line in the log file")
    os.rename(log, log + ".1")
    os.rename(audit, audit + ".1")
    rotated_log, rotated_audit = _read(log + ".1"), _read(audit + ".1")

    p.signal(signal.SIGHUP)
    pgt.wait_for(lambda: os.path.exists(log) and "configuration reloaded" in _read(log),
                 what="the reopened log file")
    with p.connect(dbname="globex") as conn:
        assert conn.execute("select current_database()").fetchone()[0] == "globex"
    pgt.wait_for(lambda: "globex" in _read(log), what="a login line in the new log file")
    pgt.wait_for(lambda: '"globex"' in _read(audit), what="a login in the new audit log")
    # the renamed files got nothing after the signal
    assert _read(log + ".1") == rotated_log
    assert _read(audit + ".1") == rotated_audit

    # a file that fails to load keeps the old configuration, but not the old inode
    with open(p.ini, "a") as f:
        f.write("\nno_such_key = 1\n")
    os.rename(log, log + ".2")
    p.signal(signal.SIGHUP)
    pgt.wait_for(lambda: os.path.exists(log) and "no_such_key" in _read(log),
                 what="the failed reload's problems in the reopened log file")
    assert "no_such_key" not in _read(log + ".2")
    with p.connect(dbname="acme") as conn:  # still serving, under the old configuration
        assert conn.execute("select 1").fetchone()[0] == 1
