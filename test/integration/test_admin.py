"""The admin console (SPEC §6), the Prometheus endpoint (SPEC §7) and the
audit log: every SHOW through psql and psycopg, counters that move by
exactly what the test did, the console's errors and permissions, RELOAD,
PAUSE/RESUME/DISABLE/ENABLE/KILL/RECONNECT/WAIT_CLOSE, SET, SHUTDOWN."""

import csv
import io
import json
import os
import re
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest

import pgt

ADMIN = "admin"
ADMIN_PASS = "adminpass"
WATCHER = "watcher"
WATCHER_PASS = "watchpass"

SPEC_COLUMNS = {
    "TENANTS": ["tenant", "mode", "backend", "state", "cl_active", "cl_waiting", "sv_active",
                "pool_size", "max_client_conn", "queries", "xacts", "avg_query_us",
                "avg_wait_us", "query_timeouts", "rate_limited"],
    "POOLS": ["backend", "role", "host", "port", "server_user", "sv_active", "sv_idle",
              "sv_login", "cl_waiting", "pool_size"],
    "BACKENDS": ["backend", "role", "host", "port", "state", "lag_ms", "last_check"],
    "CLIENTS": ["tenant", "user", "addr", "port", "state", "tls", "connect_time", "wait_us"],
    "SERVERS": ["backend", "role", "host", "port", "server_user", "tenant", "state",
                "connect_time"],
    "STATS": ["tenant", "total_xact_count", "total_query_count", "total_received", "total_sent",
              "total_xact_time", "total_query_time", "total_wait_time", "avg_query_us",
              "avg_wait_us"],
    "CONFIG": ["key", "value", "default", "reloadable"],
    "HELP": ["command"],
    "VERSION": ["version"],
    "LISTS": ["list", "items"],
    "MEM": ["name", "size", "used", "memtotal"],
    "DATABASES": ["name", "host", "port", "database", "force_user", "pool_size"],
    "USERS": ["name", "pool_mode"],
}

REQUIRED_FAMILIES = {
    "pgtenant_clients": "gauge",
    "pgtenant_servers": "gauge",
    "pgtenant_queries_total": "counter",
    "pgtenant_transactions_total": "counter",
    "pgtenant_query_duration_seconds": "histogram",
    "pgtenant_wait_duration_seconds": "histogram",
    "pgtenant_query_timeouts_total": "counter",
    "pgtenant_rate_limited_total": "counter",
    "pgtenant_backend_up": "gauge",
    "pgtenant_replica_lag_seconds": "gauge",
    "pgtenant_reloads_total": "counter",
}


# ---------------------------------------------------------------- helpers

def start(pgtenant, globals_=None, **kw):
    """A pgtenant with an admin user, a stats user and the metrics endpoint."""
    users = dict(pgt.DEFAULT_USERS)
    users[ADMIN] = ADMIN_PASS
    users[WATCHER] = WATCHER_PASS
    g = {"admin_users": ADMIN, "stats_users": WATCHER,
         "metrics_listen": f"127.0.0.1:{pgt.free_port()}"}
    g.update(globals_ or {})
    p = pgtenant(g, users=users, **kw)
    p.metrics_port = int(g["metrics_listen"].rsplit(":", 1)[1]) if g["metrics_listen"] else None
    return p


def psql(p, sql, user=ADMIN, check=True):
    """Runs sql through psql on the console; returns (header, rows) of --csv output."""
    env = p.env(user=user, dbname="pgtenant")
    res = pgt.run([os.path.join(pgt.PG_BIN, "psql"), "-X", "--csv", "-v", "VERBOSITY=verbose",
                   "-c", sql], env=env, timeout=60)
    if check:
        assert res.returncode == 0, f"psql -c {sql!r} failed:\n{res.stdout}\n{res.stderr}"
    return res


def psql_rows(p, sql, user=ADMIN):
    res = psql(p, sql, user)
    table = list(csv.reader(io.StringIO(res.stdout)))
    assert table, f"no output for {sql!r}"
    header, rows = table[0], table[1:]
    return header, [dict(zip(header, r)) for r in rows]


def psql_error(p, sql, user=ADMIN):
    """Runs sql that must fail; returns (sqlstate, stderr)."""
    res = psql(p, sql, user, check=False)
    assert res.returncode != 0, f"{sql!r} succeeded:\n{res.stdout}"
    m = re.search(r"ERROR:\s+([0-9A-Z]{5}):", res.stderr)
    assert m, res.stderr
    return m.group(1), res.stderr


def console(p, user=ADMIN, password=None):
    """Raw protocol connection to the console."""
    if password is None:
        password = ADMIN_PASS if user == ADMIN else WATCHER_PASS
    return p.raw(user=user, dbname="pgtenant", password=password)


def console_psycopg(p, user=ADMIN, **kw):
    password = ADMIN_PASS if user == ADMIN else WATCHER_PASS
    return psycopg.connect(p.conninfo(user, "pgtenant", password), autocommit=True, **kw)


def row_for(rows, key, value):
    found = [r for r in rows if r[key] == value]
    assert len(found) == 1, f"{key}={value!r} in {rows}"
    return found[0]


def stats_of(p, tenant):
    _, rows = psql_rows(p, "SHOW STATS")
    return row_for(rows, "tenant", tenant)


def tenants_row(p, tenant):
    _, rows = psql_rows(p, "SHOW TENANTS")
    return row_for(rows, "tenant", tenant)


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_prometheus(text):
    """A strict parser of the text format 0.0.4: returns {family: {"type", "help",
    "samples": [(name, labels, value)]}}. Every sample must belong to a family
    declared with HELP and TYPE before it."""
    families = {}
    current = None
    assert text.endswith("\n"), "the exposition must end with a newline"
    for line in text.splitlines():
        assert line, "no empty lines"
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert name not in families, f"family {name} declared twice"
            families[name] = {"help": help_, "type": None, "samples": []}
            current = name
            continue
        if line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert name == current, f"TYPE {name} without its HELP right before"
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            families[name]["type"] = typ
            continue
        assert not line.startswith("#"), line
        m = SAMPLE_RE.match(line)
        assert m, f"bad sample line: {line!r}"
        name, _, labels_text, value = m.groups()
        labels = {}
        if labels_text:
            pos = 0
            while pos < len(labels_text):
                lm = LABEL_RE.match(labels_text, pos)
                assert lm, f"bad labels in {line!r}"
                labels[lm.group(1)] = (lm.group(2).replace('\\"', '"').replace("\\n", "\n")
                                       .replace("\\\\", "\\"))
                pos = lm.end()
        v = float(value)  # raises on garbage; +Inf/NaN parse too
        fam = current
        assert fam is not None, f"sample before any family: {line!r}"
        typ = families[fam]["type"]
        assert typ is not None, f"family {fam} has no TYPE"
        if typ == "histogram":
            assert name in (fam + "_bucket", fam + "_sum", fam + "_count"), (fam, name)
        else:
            assert name == fam, f"sample {name} under family {fam}"
        families[fam]["samples"].append((name, labels, v))
    for name, fam in families.items():
        assert fam["help"], f"{name} has an empty HELP"
        assert fam["type"], f"{name} has no TYPE"
    return families


def metric(families, family, name=None, **labels):
    vals = [v for n, l, v in families[family]["samples"]
            if n == (name or family) and all(l.get(k) == w for k, w in labels.items())]
    assert len(vals) == 1, f"{name or family}{labels}: {vals}"
    return vals[0]


def scrape(p):
    status, ctype, body = http_get(p.metrics_port, "/metrics")
    assert status == 200, body
    assert ctype.startswith("text/plain"), ctype
    assert "version=0.0.4" in ctype, ctype
    return parse_prometheus(body)


def run_queries(p, n, dbname="acme"):
    with p.connect(dbname=dbname) as conn:
        for i in range(n):
            assert conn.execute("select %s::int", [i]).fetchone()[0] == i


def add_to_ini(p, text, after_line=None):
    with open(p.ini) as f:
        lines = f.read().split("\n")
    if after_line is None:
        lines.append(text)
    else:
        lines.insert(after_line, text)
    with open(p.ini, "w") as f:
        f.write("\n".join(lines))


# ---------------------------------------------------------------- SHOW

@pytest.mark.parametrize("what", sorted(SPEC_COLUMNS))
def test_each_show_through_psql_has_the_spec_columns(pgtenant, what):
    p = start(pgtenant)
    run_queries(p, 1)
    header, rows = psql_rows(p, f"SHOW {what}")
    missing = [c for c in SPEC_COLUMNS[what] if c not in header]
    assert not missing, f"SHOW {what} lacks {missing}; has {header}"
    assert header[:len(SPEC_COLUMNS[what])] == SPEC_COLUMNS[what] or what in ("HELP",), header
    if what in ("TENANTS", "STATS"):
        assert sorted(r["tenant"] for r in rows) == ["acme", "globex"]
    if what == "BACKENDS":
        r = row_for(rows, "backend", "main")
        assert r["role"] == "primary" and r["state"] == "up" and r["port"] == str(p.pg.port)
    if what == "VERSION":
        assert rows[0]["version"].startswith("pgtenant ")


def test_show_is_case_insensitive_with_optional_semicolon(pgtenant):
    p = start(pgtenant)
    for sql in ("show version", "Show Version;", "SHOW VERSION ;  "):
        _, rows = psql_rows(p, sql)
        assert rows[0]["version"].startswith("pgtenant ")


def test_shows_through_psycopg_extended_protocol_return_typed_rows(pgtenant):
    p = start(pgtenant)
    run_queries(p, 3)
    with console_psycopg(p) as conn, p.connect(dbname="globex") as client:
        client.execute("select 1")  # so CLIENTS and SERVERS have rows
        for what, cols in SPEC_COLUMNS.items():
            cur = conn.execute(f"SHOW {what}")
            names = [d.name for d in cur.description]
            assert names[:len(cols)] == cols, (what, names)
            rows = cur.fetchall()
            assert rows, what
        cur = conn.execute("SHOW STATS")
        names = [d.name for d in cur.description]
        acme = [dict(zip(names, r)) for r in cur.fetchall() if r[0] == "acme"][0]
        assert acme["total_query_count"] == 3  # int8 columns come back as int
        # the same statement again, and a command without rows
        assert conn.execute("SHOW VERSION").fetchone()[0].startswith("pgtenant ")
        conn.execute("RESUME")


def test_show_clients_servers_and_pools_list_a_connected_client(pgtenant):
    p = start(pgtenant)
    with p.connect(dbname="acme") as conn:
        pid = conn.execute("select pg_backend_pid()").fetchone()[0]
        _, clients = psql_rows(p, "SHOW CLIENTS")
        c = row_for(clients, "tenant", "acme")
        assert c["user"] == "app" and c["addr"] == "127.0.0.1" and c["state"] == "idle"
        assert c["tls"] == "no" and int(c["wait_us"]) == 0
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", c["connect_time"])
        _, servers = psql_rows(p, "SHOW SERVERS")
        s = row_for(servers, "pid", str(pid))
        assert s["backend"] == "main" and s["state"] == "idle" and s["server_user"] == "app"
        _, pools = psql_rows(p, "SHOW POOLS")
        pool = [r for r in pools if r["database"] == "acme"]
        assert len(pool) == 1 and pool[0]["sv_idle"] == "1" and pool[0]["sv_active"] == "0"
        _, tenants = psql_rows(p, "SHOW TENANTS")
        t = row_for(tenants, "tenant", "acme")
        assert t["state"] == "active" and t["cl_active"] == "0" and t["cl_waiting"] == "0"
        assert t["mode"] == "database" and t["backend"] == "main"
        _, lists = psql_rows(p, "SHOW LISTS")
        assert row_for(lists, "list", "idle_clients")["items"] == "1"
        assert row_for(lists, "list", "tenants")["items"] == "2"


def test_show_databases_maps_each_tenant_onto_pgbouncers_columns(pgtenant):
    p = start(pgtenant, tenants={"globex": {"mode": "database", "backend": "main",
                                            "dbname": "globex", "pool_size": 3,
                                            "pool_mode": "session", "max_client_conn": 4}})
    header, _ = psql_rows(p, "SHOW DATABASES")
    assert header[:13] == ["name", "host", "port", "database", "force_user", "pool_size",
                           "min_pool_size", "reserve_pool", "pool_mode", "max_connections",
                           "current_connections", "paused", "disabled"], header
    conn = p.connect(dbname="acme", autocommit=False)
    try:
        pid = conn.execute("select pg_backend_pid()").fetchone()[0]  # holds a server
        # the server connection the row counts is the one PostgreSQL shows in database acme
        assert [r[0] for r in p.pg.server_conns("acme")] == [pid]
        _, rows = psql_rows(p, "SHOW DATABASES")
        assert sorted(r["name"] for r in rows) == ["acme", "globex"]
        a = row_for(rows, "name", "acme")
        assert (a["host"], a["port"], a["database"], a["force_user"]) == \
            ("127.0.0.1", str(p.pg.port), "acme", "app")
        assert a["pool_size"] == a["max_connections"] == "10"  # the backend's, database mode
        assert a["pool_mode"] == "transaction" and a["min_pool_size"] == "0"
        assert a["current_connections"] == "1" and a["current_client_connections"] == "1"
        assert a["paused"] == "0" and a["disabled"] == "0" and a["max_client_connections"] == "0"
        g = row_for(rows, "name", "globex")
        assert (g["database"], g["pool_size"], g["pool_mode"], g["max_client_connections"]) == \
            ("globex", "3", "session", "4")
        assert g["current_connections"] == "0" and g["mode"] == "database"
        conn.commit()
        psql(p, "PAUSE acme")
        psql(p, "DISABLE globex")
        _, rows = psql_rows(p, "SHOW DATABASES")
        assert row_for(rows, "name", "acme")["paused"] == "1"
        assert row_for(rows, "name", "acme")["current_connections"] == "0"
        assert row_for(rows, "name", "globex")["disabled"] == "1"
        psql(p, "RESUME")
    finally:
        conn.close()


def test_show_users_lists_auth_file_users_with_their_pool_mode(pgtenant):
    p = start(pgtenant, {"pool_mode": "session"})
    header, rows = psql_rows(p, "SHOW USERS")
    assert header[:2] == ["name", "pool_mode"], header
    with open(p.auth_file) as f:
        in_file = sorted(line.split('"')[1] for line in f if line.strip())
    assert [r["name"] for r in rows] == in_file
    assert {r["pool_mode"] for r in rows} == {"session"}
    assert row_for(rows, "name", ADMIN)["console"] == "admin"
    assert row_for(rows, "name", WATCHER)["console"] == "stats"
    assert row_for(rows, "name", "app")["console"] == ""
    # a user SHOW USERS lists logs in through pgtenant to the backend's role
    with p.connect(dbname="acme") as conn:
        assert conn.execute("select current_user, current_database()").fetchone() == \
            ("app", "acme")
    _, help_rows = psql_rows(p, "SHOW HELP")
    commands = [r["command"] for r in help_rows]
    assert "SHOW DATABASES" in commands and "SHOW USERS" in commands


def test_show_config_lists_global_keys_with_values_in_force(pgtenant):
    p = start(pgtenant, {"default_pool_size": 7})
    _, rows = psql_rows(p, "SHOW CONFIG")
    r = row_for(rows, "key", "default_pool_size")
    assert r["value"] == "7" and r["default"] == "20" and r["reloadable"] in ("yes", "no")
    assert row_for(rows, "key", "listen_port")["value"] == str(p.port)
    assert row_for(rows, "key", "listen_port")["reloadable"] == "no"


def test_several_commands_in_one_query_answer_in_turn(pgtenant):
    p = start(pgtenant)
    with console(p) as c:
        c.send(pgt.msg(b"Q", b"SHOW VERSION; SHOW LISTS;\0"))
        kinds = []
        while True:
            kind, body = c.recv_msg()
            kinds.append(kind)
            if kind == b"Z":
                break
        assert kinds.count(b"T") == 2 and kinds.count(b"C") == 2 and b"E" not in kinds
        # an error stops the string: the third command does not run
        with pytest.raises(pgt.PgError) as ei:
            c.query_dicts("SHOW VERSION; FROB; SHOW LISTS")
        assert ei.value.sqlstate == "42601"
        # empty query
        c.send(pgt.msg(b"Q", b";\0"))
        kinds = []
        while True:
            kind, _ = c.recv_msg()
            kinds.append(kind)
            if kind == b"Z":
                break
        assert kinds == [b"I", b"Z"]


# ---------------------------------------------------------------- counters

def test_100_queries_move_show_stats_and_tenants_by_exactly_100(pgtenant):
    p = start(pgtenant)
    run_queries(p, 1)  # warm up: the pool's first server exists
    before_stats = stats_of(p, "acme")
    before_tenants = tenants_row(p, "acme")
    before_globex = stats_of(p, "globex")
    run_queries(p, 100)
    after_stats = stats_of(p, "acme")
    after_tenants = tenants_row(p, "acme")
    assert int(after_stats["total_query_count"]) - int(before_stats["total_query_count"]) == 100
    assert int(after_tenants["queries"]) - int(before_tenants["queries"]) == 100
    assert int(after_stats["total_xact_count"]) - int(before_stats["total_xact_count"]) == 100
    assert int(after_stats["total_received"]) > int(before_stats["total_received"])
    assert int(after_stats["total_sent"]) > int(before_stats["total_sent"])
    # the other tenant did nothing
    assert stats_of(p, "globex") == before_globex


def test_simple_query_messages_count_one_query_each(pgtenant):
    p = start(pgtenant)
    run_queries(p, 1)
    before = int(stats_of(p, "acme")["total_query_count"])
    c = p.raw(dbname="acme")
    try:
        for _ in range(10):
            assert c.scalar("select 1") == "1"
    finally:
        c.close()
    assert int(stats_of(p, "acme")["total_query_count"]) - before == 10


# ---------------------------------------------------------------- errors, permissions

def test_unknown_command_is_42601_with_a_hint(pgtenant):
    p = start(pgtenant)
    with console(p) as c:
        for sql in ("FROB", "SHOW NOTHING", "SHOW", "PAUSE acme extra", "DROP TABLE x"):
            with pytest.raises(pgt.PgError) as ei:
                c.query_dicts(sql)
            assert ei.value.sqlstate == "42601", (sql, ei.value.fields)
            assert ei.value.fields.get("H") == "Try SHOW HELP.", (sql, ei.value.fields)
        # the session goes on
        assert c.query_dicts("SHOW VERSION")[0]["version"].startswith("pgtenant ")
    state, err = psql_error(p, "FROB")
    assert state == "42601" and "Try SHOW HELP." in err


@pytest.mark.parametrize("cmd", ["PAUSE nosuch", "RESUME nosuch", "DISABLE nosuch",
                                 "ENABLE nosuch", "KILL nosuch", "RECONNECT nosuch",
                                 "WAIT_CLOSE nosuch"])
def test_a_tenant_that_matches_none_is_42704(pgtenant, cmd):
    p = start(pgtenant)
    state, err = psql_error(p, cmd)
    assert state == "42704", err
    assert "nosuch" in err


def test_stats_user_may_show_but_nothing_else(pgtenant):
    p = start(pgtenant)
    for what in SPEC_COLUMNS:
        psql_rows(p, f"SHOW {what}", user=WATCHER)
    for cmd in ("RELOAD", "PAUSE", "RESUME", "DISABLE acme", "KILL acme", "SHUTDOWN",
                "SET query_wait_timeout = 5s", "RECONNECT"):
        state, err = psql_error(p, cmd, user=WATCHER)
        assert state == "42501", (cmd, err)
    assert tenants_row(p, "acme")["state"] == "active"
    assert p.alive()


def test_user_in_neither_list_is_refused_at_login_with_28000(pgtenant):
    p = start(pgtenant)
    err = pgt.startup_error(p.port, "app", "pgtenant", pgt.APP_PASSWORD)
    assert err.sqlstate == "28000", err.fields
    # a wrong password of an admin is a password failure, not a console refusal
    err = pgt.startup_error(p.port, ADMIN, "pgtenant", "wrong")
    assert err.sqlstate == "28P01", err.fields


def test_malformed_console_message_is_fatal_08P01_and_others_go_on(pgtenant):
    p = start(pgtenant)
    c = console(p)
    c.send(b"Q" + struct.pack("!I", 2))  # a length below 4
    msgs = c.read_until_close()
    errs = [pgt.parse_fields(b) for k, b in msgs if k == b"E"]
    assert errs and errs[0]["C"] == "08P01" and errs[0]["S"] == "FATAL", msgs
    c.sock.close()
    c = console(p)
    c.send(pgt.msg(b"Q", b"SHOW VERSION"))  # no terminating NUL
    msgs = c.read_until_close()
    errs = [pgt.parse_fields(b) for k, b in msgs if k == b"E"]
    assert errs and errs[0]["C"] == "08P01", msgs
    c.sock.close()
    _, rows = psql_rows(p, "SHOW VERSION")
    assert rows


def test_extended_protocol_error_skips_to_sync_then_recovers(pgtenant):
    p = start(pgtenant)
    with console(p) as c:
        bad = pgt.ext_statement("FROB") + pgt.ext_sync()
        good = pgt.ext_statement("SHOW VERSION") + pgt.ext_sync()
        out = pgt.run_batch(c, bad + good, 2)
        first = out[:out.index(("ReadyForQuery", "I")) + 1]
        second = out[len(first):]
        assert ("Error", "42601") in first and "DataRow" not in [k for k, _ in first]
        assert [k for k, _ in second] == ["1", "2", "T", "DataRow", "CommandComplete",
                                         "ReadyForQuery"], second
        # parameters are refused
        out = pgt.run_batch(c, pgt.ext_parse("SHOW VERSION") + pgt.ext_bind(["x"]) +
                            pgt.ext_execute() + pgt.ext_sync(), 1)
        assert ("Error", "0A000") in out


# ---------------------------------------------------------------- RELOAD

def test_reload_with_a_misspelt_key_answers_file_and_line_and_changes_nothing(pgtenant):
    p = start(pgtenant, {"default_pool_size": 7})
    add_to_ini(p, "defualt_pool_size = 3", after_line=1)  # line 2 of the file
    state, err = psql_error(p, "RELOAD")
    assert state in ("F0000", "22023"), err
    assert f"{p.ini}:2:" in err, err
    assert "defualt_pool_size" in err
    _, rows = psql_rows(p, "SHOW CONFIG")
    assert row_for(rows, "key", "default_pool_size")["value"] == "7"
    run_queries(p, 1)  # still serving


def test_reload_that_adds_a_tenant_accepts_its_logins_at_once(pgtenant):
    p = start(pgtenant)
    err = pgt.startup_error(p.port, "app", "initech", pgt.APP_PASSWORD)
    assert err.sqlstate == "3D000"
    add_to_ini(p, "\n[tenant initech]\nmode = database\nbackend = main\ndbname = appdb\n")
    res = psql(p, "RELOAD")
    assert "RELOAD" in res.stdout or res.returncode == 0
    with p.connect(dbname="initech") as conn:
        assert conn.execute("select current_database()").fetchone()[0] == "appdb"
    assert tenants_row(p, "initech")["mode"] == "database"


def test_reloads_are_counted_in_metrics(pgtenant):
    p = start(pgtenant)
    psql(p, "RELOAD")
    add_to_ini(p, "nonsense_key = 1", after_line=1)
    psql_error(p, "RELOAD")
    fams = scrape(p)
    assert metric(fams, "pgtenant_reloads_total", result="ok") == 1
    assert metric(fams, "pgtenant_reloads_total", result="failed") == 1


# ---------------------------------------------------------------- SET, SHUTDOWN

def test_set_of_tenant_pool_size_and_pool_mode_applies_to_running_tenants(pg, pgtenant):
    """Tenants keep their settings resolved from the globals; a console SET of a
    global must reach them at once, not at the next RELOAD."""
    with pg.connect(dbname="appdb") as d:
        d.execute("create schema if not exists s_initech authorization app")
    p = start(pgtenant, {"query_wait_timeout": "1s"},
              tenants={"initech": {"mode": "schema", "backend": "main", "schema": "s_initech"}})
    psql(p, "SET tenant_pool_size = 1")  # initech sets no pool_size of its own
    with p.connect(dbname="initech", autocommit=False) as a, \
            p.connect(dbname="initech") as b:
        a.execute("select 1")  # holds initech's only server connection now
        with pytest.raises(psycopg.Error) as ei:
            b.execute("select 2")
        assert ei.value.sqlstate == "53300", ei.value
        a.commit()
        assert b.execute("select 3").fetchone() == (3,)
    psql(p, "SET tenant_pool_size = 4")
    psql(p, "SET pool_mode = session")
    with p.connect(dbname="initech") as a:
        pid = a.execute("select pg_backend_pid()").fetchone()[0]
        for _ in range(3):  # session mode: the same server connection throughout
            assert a.execute("select pg_backend_pid()").fetchone()[0] == pid


def test_set_of_default_pool_size_resizes_backends_that_inherit_it(pgtenant):
    """A backend with no pool_size of its own follows default_pool_size, also when
    the console changes it (database-mode tenants take their backend's size)."""
    p = start(pgtenant, {"query_wait_timeout": "1s"})
    psql(p, "SET default_pool_size = 1")
    _, rows = psql_rows(p, "SHOW TENANTS")
    assert row_for(rows, "tenant", "acme")["pool_size"] == "1"
    with p.connect(dbname="acme", autocommit=False) as a, p.connect(dbname="globex") as b:
        a.execute("select 1")  # holds the backend's only server connection
        with pytest.raises(psycopg.Error) as ei:
            b.execute("select 2")  # another tenant, same backend: the pool is full
        assert ei.value.sqlstate == "53300", ei.value
        a.commit()
        assert b.execute("select 3").fetchone() == (3,)
    psql(p, "SET default_pool_size = 3")
    _, rows = psql_rows(p, "SHOW TENANTS")
    assert row_for(rows, "tenant", "acme")["pool_size"] == "3"
    with p.connect(dbname="acme", autocommit=False) as a, p.connect(dbname="globex") as b:
        a.execute("select 1")
        assert b.execute("select 4").fetchone() == (4,)


def test_set_changes_a_reloadable_key_and_refuses_others(pgtenant):
    p = start(pgtenant)
    res = psql(p, "SET query_wait_timeout = 7s")
    assert "SET" in res.stdout
    _, rows = psql_rows(p, "SHOW CONFIG")
    assert row_for(rows, "key", "query_wait_timeout")["value"] == "7s"
    psql(p, "set query_wait_timeout to '8s'")
    _, rows = psql_rows(p, "SHOW CONFIG")
    assert row_for(rows, "key", "query_wait_timeout")["value"] == "8s"
    assert psql_error(p, "SET listen_port = 1")[0] == "55P02"
    assert psql_error(p, "SET no_such_key = 1")[0] == "42704"
    assert psql_error(p, "SET query_wait_timeout = banana")[0] == "22023"
    _, rows = psql_rows(p, "SHOW CONFIG")
    assert row_for(rows, "key", "query_wait_timeout")["value"] == "8s"


def test_shutdown_answers_then_stops_and_healthz_turns_503(pgtenant):
    p = start(pgtenant)
    assert http_get(p.metrics_port, "/healthz")[0] == 200
    p.expect_exit = True
    busy = p.connect(dbname="acme", autocommit=False)
    busy.execute("select 1")  # a transaction is open: shutdown waits for it
    c = console(p)
    c.send(pgt.msg(b"Q", b"SHUTDOWN\0"))
    kind, body = c.recv_msg()
    assert kind == b"C" and body.rstrip(b"\0") == b"SHUTDOWN"
    c.close()
    status, _, _ = http_get(p.metrics_port, "/healthz")
    assert status == 503
    busy.commit()
    busy.close()
    pgt.wait_for(lambda: not p.alive(), timeout=20, what="pgtenant to exit after SHUTDOWN")


# ---------------------------------------------------------------- metrics

def test_metrics_parse_and_queries_total_equals_show_stats(pgtenant):
    p = start(pgtenant)
    run_queries(p, 17, "acme")
    run_queries(p, 4, "globex")
    fams = scrape(p)
    for name, typ in REQUIRED_FAMILIES.items():
        assert name in fams, f"family {name} missing"
        assert fams[name]["type"] == typ, (name, fams[name]["type"])
    for tenant in ("acme", "globex"):
        shown = int(stats_of(p, tenant)["total_query_count"])
        assert metric(fams, "pgtenant_queries_total", tenant=tenant) == shown
        assert metric(fams, "pgtenant_query_duration_seconds",
                      "pgtenant_query_duration_seconds_count", tenant=tenant) == shown
        assert metric(fams, "pgtenant_query_duration_seconds",
                      "pgtenant_query_duration_seconds_bucket", tenant=tenant, le="+Inf") == shown
    assert metric(fams, "pgtenant_queries_total", tenant="acme") == 17
    assert metric(fams, "pgtenant_backend_up", backend="main", role="primary",
                  host="127.0.0.1", port=str(p.pg.port)) == 1
    for state in ("active", "waiting", "idle"):
        assert metric(fams, "pgtenant_clients", tenant="acme", state=state) == 0
    labels = [lab for _, lab, _ in fams["pgtenant_queries_total"]["samples"]]
    assert "_other" not in {lab.get("tenant") for lab in labels}


def test_metrics_count_connected_clients_by_state(pgtenant):
    p = start(pgtenant)
    with p.connect(dbname="acme") as a, p.connect(dbname="acme") as b:
        a.execute("select 1")
        b.execute("select 1")
        fams = scrape(p)
        assert metric(fams, "pgtenant_clients", tenant="acme", state="idle") == 2
        idle_servers = metric(fams, "pgtenant_servers", backend="main", role="primary",
                              state="idle")
        assert idle_servers >= 1


def test_tenants_beyond_metrics_tenant_limit_add_up_under_other(pgtenant):
    p = start(pgtenant, {"metrics_tenant_limit": 1},
              tenants={"initech": {"mode": "database", "backend": "main", "dbname": "appdb"}})
    run_queries(p, 5, "acme")
    run_queries(p, 2, "globex")
    run_queries(p, 3, "initech")
    fams = scrape(p)
    tenants = {l.get("tenant") for _, l, _ in fams["pgtenant_queries_total"]["samples"]}
    assert tenants == {"acme", "_other"}, tenants
    assert metric(fams, "pgtenant_queries_total", tenant="acme") == 5
    assert metric(fams, "pgtenant_queries_total", tenant="_other") == 5
    for fam in ("pgtenant_clients", "pgtenant_transactions_total",
                "pgtenant_query_duration_seconds"):
        assert {l.get("tenant") for _, l, _ in fams[fam]["samples"]} == {"acme", "_other"}


def test_healthz_is_200_and_unknown_paths_404(pgtenant):
    p = start(pgtenant)
    status, _, body = http_get(p.metrics_port, "/healthz")
    assert status == 200 and body.strip() == "ok"
    assert http_get(p.metrics_port, "/nope")[0] == 404


def test_label_values_are_escaped(pgtenant):
    # a backend host with a backslash cannot be connected to, but must still render
    p = start(pgtenant, backends={"odd": {"host": 'we\\ird"host', "port": 1, "dbname": "x",
                                          "user": "app", "password": "x"}},
              tenants={"oddt": {"mode": "database", "backend": "odd"}})
    status, _, body = http_get(p.metrics_port, "/metrics")
    assert status == 200
    assert 'host="we\\\\ird\\"host"' in body
    fams = parse_prometheus(body)
    assert metric(fams, "pgtenant_backend_up", backend="odd", host='we\\ird"host') in (0, 1)


# ---------------------------------------------------------------- audit

def test_audit_log_has_one_json_object_per_console_command(pgtenant, tmp_path):
    audit = str(tmp_path / "audit.jsonl")
    p = start(pgtenant, {"audit_log": audit})
    psql(p, "SHOW VERSION")
    psql_error(p, "FROB")
    psql_error(p, "RELOAD", user=WATCHER)
    records = [json.loads(line) for line in open(audit).read().splitlines()]
    console_recs = [r for r in records if r["event"] == "console"]
    assert [(r["user"], r["command"], r["ok"]) for r in console_recs] == [
        (ADMIN, "SHOW VERSION", True), (ADMIN, "FROB", False), (WATCHER, "RELOAD", False)]
    for r in records:
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", r["ts"]), r
    assert "42601" in console_recs[1]["result"]


def test_audit_log_records_logins_accepted_and_refused(pgtenant, tmp_path):
    audit = str(tmp_path / "audit.jsonl")
    p = start(pgtenant, {"audit_log": audit})
    run_queries(p, 1, "acme")
    pgt.startup_error(p.port, "app", "acme", "wrong password")
    odd = 'we"ird\\user\x01'
    pgt.startup_error(p.port, odd, "acme", "x")
    records = [json.loads(line) for line in open(audit).read().splitlines()]
    logins = [r for r in records if r["event"] == "login"]
    assert any(r["ok"] is True and r["tenant"] == "acme" and r["user"] == "app" and
               r["addr"].startswith("127.0.0.1") for r in logins), logins
    assert any(r["ok"] is False and r["user"] == "app" and r.get("reason") for r in logins), logins
    # the odd name survives JSON escaping intact
    assert any(r["ok"] is False and odd in (r["user"] or "") for r in logins), logins


# ---------------------------------------------------------------- PAUSE, DISABLE, KILL...

def _query_in_thread(p, dbname, sql, conn=None):
    box = {}

    def run():
        try:
            own = conn is None
            c = conn or p.connect(dbname=dbname)
            try:
                box["result"] = c.execute(sql).fetchone()[0]
            finally:
                if own:
                    c.close()
        except Exception as e:
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def test_pause_holds_new_transactions_until_resume(pgtenant):
    p = start(pgtenant)
    conn = p.connect(dbname="acme")
    try:
        conn.execute("select 1")
        res = psql(p, "PAUSE acme")
        assert "PAUSE" in res.stdout
        assert tenants_row(p, "acme")["state"] == "paused"
        t, box = _query_in_thread(p, "acme", "select 42", conn)
        time.sleep(1.0)
        assert t.is_alive() and not box, "a paused tenant ran a new transaction"
        run_queries(p, 1, "globex")  # other tenants go on
        psql(p, "RESUME acme")
        t.join(15)
        assert box.get("result") == 42, box
        assert tenants_row(p, "acme")["state"] == "active"
    finally:
        conn.close()


def test_pause_answers_only_after_the_running_transaction_ends(pgtenant):
    p = start(pgtenant)
    conn = p.connect(dbname="acme", autocommit=False)
    admin = console(p)
    try:
        conn.execute("select 1")  # a transaction is open and holds a server
        admin.send(pgt.msg(b"Q", b"PAUSE acme\0"))
        admin.sock.settimeout(1.0)
        with pytest.raises(socket.timeout):
            admin.recv_msg()
        admin.sock.settimeout(15)
        conn.commit()
        kind, body = admin.recv_msg()
        assert kind == b"C" and body.rstrip(b"\0") == b"PAUSE"
        assert admin.recv_msg()[0] == b"Z"
        admin.query_dicts("RESUME")
    finally:
        conn.close()
        admin.close()


def test_query_string_goes_on_after_each_command_that_answers_later(pgtenant):
    p = start(pgtenant)
    a = p.connect(dbname="acme", autocommit=False)
    g = p.connect(dbname="globex", autocommit=False)
    admin = console(p)
    try:
        a.execute("select 1")
        g.execute("select 1")
        admin.send(pgt.msg(b"Q", b"PAUSE acme; PAUSE globex; RESUME acme; RESUME globex; SHOW VERSION\0"))
        admin.sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            admin.recv_msg()
        a.commit()
        admin.sock.settimeout(15)
        assert admin.recv_msg() == (b"C", b"PAUSE\0")
        admin.sock.settimeout(0.5)
        with pytest.raises(socket.timeout):
            admin.recv_msg()
        admin.sock.settimeout(15)
        g.commit()
        kinds = []
        while True:
            kind, body = admin.recv_msg()
            kinds.append((kind, body.rstrip(b"\0") if kind == b"C" else None))
            if kind == b"Z":
                break
        assert kinds == [(b"C", b"PAUSE"), (b"C", b"RESUME"), (b"C", b"RESUME"), (b"T", None),
                         (b"D", None), (b"C", b"SHOW"), (b"Z", None)], kinds
        assert {r["state"] for r in admin.query_dicts("SHOW TENANTS")} == {"active"}
    finally:
        a.close()
        g.close()
        admin.close()


def test_pause_without_tenant_pauses_all_and_resume_releases(pgtenant):
    p = start(pgtenant)
    psql(p, "PAUSE")
    _, rows = psql_rows(p, "SHOW TENANTS")
    assert {r["state"] for r in rows} == {"paused"}
    t, box = _query_in_thread(p, "globex", "select 7")
    time.sleep(1.0)
    assert t.is_alive()
    psql(p, "RESUME")
    t.join(15)
    assert box.get("result") == 7, box


def test_resume_without_tenant_also_resumes_tenants_paused_by_name(pgtenant):
    p = start(pgtenant)
    psql(p, "PAUSE acme")
    psql(p, "RESUME")
    assert tenants_row(p, "acme")["state"] == "active"
    run_queries(p, 1, "acme")


def test_disable_refuses_logins_with_55000_and_enable_restores(pgtenant):
    p = start(pgtenant)
    idle = p.connect(dbname="acme")
    idle.execute("select 1")
    psql(p, "DISABLE acme")
    assert tenants_row(p, "acme")["state"] == "disabled"
    err = pgt.startup_error(p.port, "app", "acme", pgt.APP_PASSWORD)
    assert err.sqlstate == "55000", err.fields
    with pytest.raises(psycopg.Error):  # the idle client was closed
        idle.execute("select 1")
    idle.close()
    run_queries(p, 1, "globex")
    psql(p, "ENABLE acme")
    run_queries(p, 1, "acme")
    assert tenants_row(p, "acme")["state"] == "active"


def test_kill_closes_the_tenants_clients_and_new_logins_work(pgtenant):
    p = start(pgtenant)
    a = p.connect(dbname="acme")
    g = p.connect(dbname="globex")
    try:
        a.execute("select 1")
        g.execute("select 1")
        psql(p, "KILL acme")
        with pytest.raises(psycopg.Error):
            a.execute("select 1")
        assert g.execute("select 2").fetchone()[0] == 2
        run_queries(p, 1, "acme")
    finally:
        a.close()
        g.close()


def test_reconnect_and_wait_close_replace_server_connections(pgtenant):
    p = start(pgtenant)
    with p.connect(dbname="acme") as conn:
        pid1 = conn.execute("select pg_backend_pid()").fetchone()[0]
        psql(p, "RECONNECT acme")
        res = psql(p, "WAIT_CLOSE acme")
        assert "WAIT_CLOSE" in res.stdout
        pid2 = conn.execute("select pg_backend_pid()").fetchone()[0]
        assert pid1 != pid2
    # with nothing to wait for it answers at once
    with console(p) as c:
        c.query_dicts("WAIT_CLOSE")


# ---------------------------------------------------------------- robustness

def test_psycopg_prepared_statements_work_on_the_console(pgtenant):
    p = start(pgtenant)
    run_queries(p, 2)
    with console_psycopg(p) as conn:
        conn.prepare_threshold = 0  # every statement is prepared (named Parse, Describe S)
        for _ in range(3):
            rows = conn.execute("SHOW STATS").fetchall()
            assert sorted(r[0] for r in rows) == ["acme", "globex"]
            assert conn.execute("SHOW VERSION").fetchone()[0].startswith("pgtenant ")
        conn.execute("RESUME")
        with pytest.raises(psycopg.Error) as ei:
            conn.execute("KILL nosuch")
        assert ei.value.sqlstate == "42704"
        assert conn.execute("SHOW LISTS").fetchall()


CONSOLE_COMMANDS = [
    "SHOW TENANTS", "SHOW STATS", "SHOW CLIENTS", "SHOW SERVERS", "SHOW POOLS", "SHOW MEM",
    "SHOW LISTS", "SHOW CONFIG", "PAUSE acme", "RESUME acme", "PAUSE", "RESUME", "WAIT_CLOSE",
    "RECONNECT acme", "FROB", "SET query_wait_timeout = '5s'", "SET x", "'unterminated", "",
    ";;", "SHOW VERSION; PAUSE globex; RESUME globex; SHOW TENANTS", "-- c\nSHOW HELP",
    "/* x */ SHOW VERSION", "BEGIN", "KILL nosuch", "DISABLE globex", "ENABLE globex"]


def _random_console_bytes(r):
    out = b""
    for _ in range(r.randint(1, 10)):
        k = r.random()
        if k < 0.3:
            out += pgt.msg(b"Q", r.choice(CONSOLE_COMMANDS).encode() + b"\0")
        elif k < 0.8:
            sql, name = r.choice(CONSOLE_COMMANDS), r.choice(["", "s1"])
            portal = r.choice(["", "p"])
            parts = [pgt.ext_parse(sql, name), pgt.ext_bind(stmt=name, portal=portal),
                     pgt.ext_describe_portal(portal), pgt.ext_execute(portal),
                     pgt.msg(b"D", b"S" + name.encode() + b"\0"),
                     pgt.msg(b"C", b"S" + name.encode() + b"\0"), pgt.msg(b"H"), pgt.ext_sync()]
            out += b"".join(r.choice(parts) for _ in range(r.randint(1, 6)))
        elif k < 0.95:
            body = bytes(r.getrandbits(8) for _ in range(r.randint(0, 40)))
            out += bytes([r.choice(b"PBDECSHQdcf")]) + struct.pack("!I", len(body) + 4) + body
        else:
            out += pgt.ext_sync()
    return out


def test_console_survives_random_and_malformed_messages(pgtenant):
    import random
    p = start(pgtenant)
    r = random.Random(20260501)
    for _ in range(60):
        c = console(p)
        c.sock.settimeout(0.05)
        data = _random_console_bytes(r)
        step = r.choice([len(data), 1, 7, 64])
        try:
            for i in range(0, len(data), step):
                c.sock.sendall(data[i:i + step])
            while True:
                c.recv_msg()
        except (socket.timeout, EOFError, OSError):
            pass
        c.sock.close()
        assert p.alive()
    psql(p, "RESUME")
    psql(p, "ENABLE globex")
    run_queries(p, 1, "acme")
    run_queries(p, 1, "globex")
