"""What operators and clients are told (issue 18): login errors that say
what is wrong, console SET and --check messages, SHOW CONFIG and RELOAD
for restart-only keys, and authentication failures counted apart from
refusals (SHOW TENANTS, metrics, audit log)."""

import json

import pgt
from test_admin import (http_get, psql, psql_error, psql_rows, row_for, start,
                        tenants_row)


def test_no_tenant_hint_lists_only_the_configured_sources(pgtenant):
    for tenant_from, want, never in [
            ("user, database", ["user", "database name"], ["options", "TLS"]),
            ("database", ["database name"], ["options", "user (", "TLS"]),
            ("options, user", ["options=-c pgtenant.tenant=", "user (user.TENANT)"],
             ["database name", "TLS"])]:
        p = pgtenant({"tenant_from": tenant_from})
        e = pgt.startup_error(p.port, "app", "appdb", pgt.APP_PASSWORD)
        assert e.sqlstate == "3D000", e.fields
        hint = e.fields.get("H", "")
        for w in want:
            assert w in hint, (tenant_from, hint)
        for n in never:
            assert n not in hint, (tenant_from, hint)
        p.expect_exit = True
        p.stop()


def test_a_database_name_that_is_no_tenant_is_named_in_the_error(pgtenant):
    p = pgtenant()
    e = pgt.startup_error(p.port, "app", "nosuch", pgt.APP_PASSWORD)
    assert e.sqlstate == "3D000", e.fields
    assert 'database "nosuch" is not a tenant' in e.message, e.fields


def test_a_tenant_mismatch_names_both_tenants(pgtenant):
    p = pgtenant()
    e = pgt.startup_error(p.port, "app.acme", "globex", pgt.APP_PASSWORD)
    assert e.sqlstate == "28000", e.fields
    assert '"acme"' in e.message and '"globex"' in e.message, e.fields


def test_console_set_names_the_key_once_in_its_error(pgtenant):
    p = start(pgtenant)
    state, err = psql_error(p, "SET default_pool_size = 0")
    assert state == "22023", err
    line = [x for x in err.splitlines() if "ERROR" in x][0]
    assert line.count("default_pool_size") == 1, line


def test_check_of_a_missing_file_reports_no_line_zero(tmp_path):
    missing = str(tmp_path / "nope.ini")
    res = pgt.run([pgt.PGTENANT_BIN, "--check", missing])
    assert res.returncode == 1
    assert res.stdout.startswith(f"{missing}: "), res.stdout
    assert ":0:" not in res.stdout, res.stdout


def test_a_restart_only_key_changed_by_reload_shows_running_and_pending_values(pgtenant):
    p = start(pgtenant)
    old = p.globals["metrics_listen"]
    new = f"127.0.0.1:{pgt.free_port()}"
    g = dict(p.globals, metrics_listen=new)
    with open(p.ini, "w") as f:
        f.write(pgt.render_ini(g, p.backends, p.tenants))
    res = psql(p, "RELOAD")
    assert "RELOAD" in res.stdout
    assert "NOTICE" in res.stderr and "metrics_listen" in res.stderr, res.stderr
    header, rows = psql_rows(p, "SHOW CONFIG")
    assert "pending" in header
    row = row_for(rows, "key", "metrics_listen")
    assert row["value"] == old and row["pending"] == new, row
    assert row_for(rows, "key", "listen_port")["pending"] == ""
    # what runs is what SHOW CONFIG says
    assert http_get(p.metrics_port, "/healthz")[0] == 200
    # the file agreeing again clears it
    with open(p.ini, "w") as f:
        f.write(pgt.render_ini(p.globals, p.backends, p.tenants))
    res = psql(p, "RELOAD")
    assert "NOTICE" not in res.stderr, res.stderr
    _, rows = psql_rows(p, "SHOW CONFIG")
    assert row_for(rows, "key", "metrics_listen")["pending"] == ""


def test_failed_passwords_are_auth_failures_not_refusals(pgtenant, tmp_path):
    audit = str(tmp_path / "audit.jsonl")
    p = start(pgtenant, {"audit_log": audit})
    for _ in range(2):
        e = pgt.startup_error(p.port, "app.acme", "appdb", "wrong password")
        assert e.sqlstate == "28P01"
    e = pgt.startup_error(p.port, "nobody", "acme", "x")
    assert e.sqlstate == "28P01"
    row = tenants_row(p, "acme")
    assert row["auth_failures"] == "3" and row["refused"] == "0", row
    _, stats = psql_rows(p, "SHOW STATS")
    assert row_for(stats, "tenant", "acme")["total_auth_failures"] == "3"
    status, _, body = http_get(p.metrics_port, "/metrics")
    assert status == 200
    assert 'pgtenant_auth_failures_total{tenant="acme"} 3' in body, body[-3000:]
    assert 'pgtenant_refused_logins_total{tenant="acme"} 0' in body
    records = [json.loads(x) for x in open(audit).read().splitlines()]
    failed = [r for r in records if r["event"] == "login" and r["ok"] is False]
    assert len(failed) == 3 and all(r["tenant"] == "acme" for r in failed), failed
