"""
The isolation checker's world: one PostgreSQL 15 (max_prepared_transactions on),
optionally a streaming replica, the tenants' data laid out so that every row,
setting and object names the tenant it belongs to, and pgtenant configurations
that put tenants of all three modes on ONE backend with a tiny pool.

Layout (all tables owned by postgres, so role `app` is subject to RLS):
- database iso_app (the backend's dbname):
  - schemas sch_s1, sch_s2, sch_s3, sch_s3b: `items` rows tenant = s1/s2/s3 (CHECK),
    schema tenants s1, s2, s3 (a console RELOAD moves s3 between sch_s3,
    sch_s3b and the missing sch_s3_gone);
  - public.items under RLS: rows of shared tenants h1, h2 (app.tenant_id) and
    of the database tenant d0 (no tenant GUC set), whose database is iso_app too;
  - schema d0priv: items rows 'd0' (d0 may point its own search_path there);
  - tenant sx is a schema tenant whose schema (sch_nosuch) does not exist.
- databases iso_d1, iso_d2: public.items rows d1 / d2 (database tenants).
Every items table has a deferrable unique (tenant, k) for failing COMMITs, and
every database has procedures iso_commit() / iso_rollback() that end the
transaction inside.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import pgt  # noqa: E402

ADMIN, ADMIN_PASS = "admin", "adminpass"

SCHEMA_TENANTS = {"s1": "sch_s1", "s2": "sch_s2", "s3": "sch_s3", "sx": "sch_nosuch"}
S3_SCHEMAS = ["sch_s3", "sch_s3b", "sch_s3_gone"]  # what RELOAD cycles s3 through
SHARED_TENANTS = ["h1", "h2"]
DB_TENANTS = {"d0": "iso_app", "d1": "iso_d1", "d2": "iso_d2"}
TENANTS = ["s1", "s2", "s3", "sx", "h1", "h2", "d0", "d1", "d2"]
TENANT_INDEX = {t: i + 1 for i, t in enumerate(TENANTS)}


def mode_of(t):
    if t in SCHEMA_TENANTS:
        return "schema"
    if t in SHARED_TENANTS:
        return "shared"
    return "database"


def db_of(t):
    return DB_TENANTS.get(t, "iso_app")


# Values a tenant may give to other GUCs: each names its tenant, so a value seen
# by another tenant's client is attributable. Tenant i owns:
#   TimeZone Etc/GMT+i, Etc/GMT-i; work_mem (4096+8i+j)kB; statement_timeout
#   (90000+10i+j)ms and the tiny i ms (the timeout fault).
def tz_values(t):
    i = TENANT_INDEX[t]
    return [f"Etc/GMT+{i}", f"Etc/GMT-{i}"]


def work_mem_values(t):
    i = TENANT_INDEX[t]
    return [f"{4096 + 8 * i + j}kB" for j in range(4)]


def stmt_timeout_values(t):
    i = TENANT_INDEX[t]
    return [f"{90000 + 10 * i + j}ms" for j in range(4)]


def tiny_timeout(t):
    return f"{TENANT_INDEX[t]}ms"


ITEMS_DDL = ("CREATE TABLE {q}.items (id bigserial PRIMARY KEY, tenant text NOT NULL {check}, "
             "k int, note text, UNIQUE (tenant, k) DEFERRABLE INITIALLY DEFERRED)")

PROCS = [
    "CREATE PROCEDURE public.iso_commit() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$",
    "CREATE PROCEDURE public.iso_rollback() LANGUAGE plpgsql AS $$ BEGIN ROLLBACK; END $$",
]


def _items(c, q, tenants, check, rows=3):
    c.execute(ITEMS_DDL.format(q=q, check=check))
    for t in tenants:
        for n in range(rows):
            c.execute(f"INSERT INTO {q}.items (tenant, note) VALUES (%s, %s)", [t, f"seed{n}"])
    c.execute(f"GRANT ALL ON {q}.items TO app")
    c.execute(f"GRANT ALL ON SEQUENCE {q}.items_id_seq TO app")


def setup_postgres(pg):
    """Creates the layout above (as superuser postgres) and turns on prepared
    transactions (a restart)."""
    with pg.connect() as c:
        c.execute("ALTER SYSTEM SET max_prepared_transactions = 6")
        c.execute("ALTER SYSTEM SET max_connections = 120")
        for db in ("iso_app", "iso_d1", "iso_d2"):
            c.execute(f"CREATE DATABASE {db}")
    pgt.run(pg._cmd([os.path.join(pgt.PG_BIN, "pg_ctl"), "-D", pg.datadir, "-l", pg.logfile,
                     "-w", "-t", "60", "-o", f"-p {pg.port}", "restart"]), timeout=90, check=True)
    with pg.connect(dbname="iso_app") as c:
        for s in ("sch_s1", "sch_s2", "sch_s3", "sch_s3b", "d0priv"):
            c.execute(f"CREATE SCHEMA {s}")
            c.execute(f"GRANT USAGE ON SCHEMA {s} TO app")
        for t, s in (("s1", "sch_s1"), ("s2", "sch_s2"), ("s3", "sch_s3"), ("s3", "sch_s3b"),
                     ("d0", "d0priv")):
            _items(c, s, [t], f"CHECK (tenant = '{t}')")
        _items(c, "public", ["h1", "h2", "d0"], "CHECK (tenant IN ('h1', 'h2', 'd0'))")
        c.execute("ALTER TABLE public.items ENABLE ROW LEVEL SECURITY")
        pol = "tenant = coalesce(nullif(current_setting('app.tenant_id', true), ''), 'd0')"
        c.execute(f"CREATE POLICY iso_tenant ON public.items USING ({pol}) WITH CHECK ({pol})")
        for p in PROCS:
            c.execute(p)
    for t in ("d1", "d2"):
        with pg.connect(dbname=DB_TENANTS[t]) as c:
            _items(c, "public", [t], f"CHECK (tenant = '{t}')")
            for p in PROCS:
                c.execute(p)
    with pg.connect() as c:
        return c.execute("SHOW TimeZone").fetchone()[0]


def start_replica(pg):
    """A streaming hot standby of pg (test/integration/test_replicas.py's helper)."""
    import test_replicas as tr
    tr._allow_replication(pg)
    r = tr.Replica(pg, "iso")
    r.create()
    tr.sync_replicas(pg, [r])
    return r


# ---------------------------------------------------------------- pgtenant

CONFIGS = {
    # name: (pool_mode, backend pool_size, replica?, share of the budget)
    "txn": ("transaction", 2, False, 0.5),
    "session": ("session", 3, False, 0.2),
    "replica": ("transaction", 2, True, 0.3),
}


def tenant_sections(s3_schema="sch_s3"):
    t = {}
    for name, schema in SCHEMA_TENANTS.items():
        t[name] = {"mode": "schema", "backend": "main",
                   "schema": s3_schema if name == "s3" else schema}
    for name in SHARED_TENANTS:
        t[name] = {"mode": "shared", "backend": "main", "tenant_id": name}
    t["d0"] = {"mode": "database", "backend": "main"}  # the backend's own dbname: iso_app
    t["d1"] = {"mode": "database", "backend": "main", "dbname": "iso_d1"}
    t["d2"] = {"mode": "database", "backend": "main", "dbname": "iso_d2"}
    return t


def make_pgtenant(pg, workdir, config, replica=None):
    pool_mode, pool_size, _, _ = CONFIGS[config]
    users = dict(pgt.DEFAULT_USERS)
    users[ADMIN] = ADMIN_PASS
    g = {"admin_users": ADMIN, "pool_mode": pool_mode, "tenant_pool_size": pool_size,
         "query_wait_timeout": "5s" if pool_mode == "session" else "15s", "server_login_retry": "200ms",
         "max_prepared_statements": 8, "log_connections": "no", "log_disconnections": "no",
         "stats_period": "600s"}
    b = {"host": "127.0.0.1", "port": pg.port, "dbname": "iso_app", "user": "app",
         "password": pgt.APP_PASSWORD, "pool_size": pool_size}
    if replica is not None:
        g.update({"read_routing": "auto", "health_check_period": "1s", "read_your_writes": "0"})
        b.update({"replicas": f"127.0.0.1:{replica.port}", "replica_pool_size": 2})
    p = pgt.Pgtenant(pg, workdir, g, {"main": b}, tenant_sections(), users)
    return p


def rewrite_ini(p, s3_schema):
    """Rewrites p's ini with tenant s3 on another schema (then RELOAD)."""
    tmp = p.ini + ".tmp"
    with open(tmp, "w") as f:
        f.write(pgt.render_ini(p.globals, p.backends, tenant_sections(s3_schema)))
    os.replace(tmp, p.ini)


def console(p, sql, timeout=15):
    """One console command; rows (dicts) or raises pgt.PgError."""
    c = pgt.RawConn(p.port, timeout=timeout)
    try:
        c.startup(ADMIN, "pgtenant", ADMIN_PASS)
        return c.query_dicts(sql)
    finally:
        c.close()
