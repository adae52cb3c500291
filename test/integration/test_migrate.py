"""
`pgtenant migrate`: Flyway-named SQL files applied to schema, database and
shared tenants straight on the backends, each tenant on its own, with a
history per tenant; the connection bound of --jobs; --dry-run; files that run
outside a transaction; --pause-traffic under pgbench load through pgtenant.
"""

import itertools
import json
import os

import pytest

import pgt

_seq = itertools.count()


def migrate(p, *args, timeout=120):
    return pgt.run([pgt.PGTENANT_BIN, "migrate", p.ini] + list(args), timeout=timeout)


def write(dirpath, files):
    os.makedirs(dirpath, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(dirpath, name), "w") as f:
            f.write(text)


class Fixture:
    """A fresh backend database with schema tenants (sa, sb, sc), shared
    tenants (s1, s2) in it, and database tenants (da, db) in databases of
    their own; dropped at the end."""

    def __init__(self, pg, pgtenant, tmp_path, schemas=("sa", "sb", "sc"), shared=("s1", "s2"),
                 databases=("da", "db"), globals_=None, backend=None, start=False):
        n = next(_seq)
        self.pg = pg
        self.main = f"mig{n}_main"
        self.dbs = {t: f"mig{n}_{t}" for t in databases}
        with pg.connect() as c:
            for d in [self.main] + list(self.dbs.values()):
                c.execute(f'create database "{d}" owner app')
        with pg.connect(self.main) as c:
            for s in schemas:
                c.execute(f'create schema "{s}" authorization app')
        tenants = {"acme": None, "globex": None}
        for s in schemas:
            tenants[s] = {"mode": "schema", "backend": "main"}
        for s in shared:
            tenants[s] = {"mode": "shared", "backend": "main"}
        for t, d in self.dbs.items():
            tenants[t] = {"mode": "database", "backend": "main", "dbname": d}
        self.dir = os.path.join(str(tmp_path), "migrations")
        os.makedirs(self.dir, exist_ok=True)
        g = {"migrations_dir": self.dir}
        g.update(globals_ or {})
        self.p = pgtenant(globals_=g, backends={"main": pgt.backend_keys(pg, dbname=self.main,
                                                                         **(backend or {}))},
                          tenants=tenants, start=start)

    def q(self, sql, db=None):
        with self.pg.connect(db or self.main) as c:
            cur = c.execute(sql)
            return cur.fetchall() if cur.description else None

    def drop(self):
        with self.pg.connect() as c:
            for d in [self.main] + list(self.dbs.values()):
                c.execute(f'drop database if exists "{d}" with (force)')


def history(fx, where, db=None):
    return fx.q(f"select version, success from {where}.pgtenant_schema_history order by version",
                db)


def test_migrations_reach_every_kind_of_tenant_and_a_failing_one_resumes(pg, pgtenant, tmp_path):
    fx = Fixture(pg, pgtenant, tmp_path)
    try:
        # sb already has a customers table: V2 fails there alone
        fx.q("create table sb.customers (id int)")
        write(fx.dir, {
            "V1__create_orders.sql": "create table orders (id int primary key, note text);\n",
            "V2__items_and_customers.sql": "create table items (id int);\n"
                                           "create table customers (id int);\n",
            "V2.1__note_default.sql": "alter table orders alter column note set default 'n';\n",
            "README.md": "not a migration\n",
        })
        res = migrate(fx.p, "run", "--jobs", "3")
        assert res.returncode == 1, res.stdout + res.stderr
        assert "sb: V2__items_and_customers.sql failed" in res.stderr
        assert "42P07" in res.stderr
        # schema tenants: each history and table in its own schema
        assert history(fx, "sa") == [("1", True), ("2", True), ("2.1", True)]
        assert history(fx, "sb") == [("1", True), ("2", False)]
        assert fx.q("select to_regclass('sb.items') is null")[0][0], "V2 was not rolled back"
        assert fx.q("select to_regclass('sa.items') is not null")[0][0]
        assert fx.q("select count(*) from pg_tables where tablename = 'orders' "
                    "and schemaname in ('sa', 'sb', 'sc')")[0][0] == 3
        # shared tenants: one history for the backend database, in public
        assert history(fx, "public") == [("1", True), ("2", True), ("2.1", True)]
        # database tenants: in their own databases
        for t, d in fx.dbs.items():
            assert history(fx, "public", d) == [("1", True), ("2", True), ("2.1", True)]

        st = migrate(fx.p, "status")
        assert st.returncode == 0, st.stderr
        lines = [line.split() for line in st.stdout.splitlines()]
        assert ["sb", "2", "items", "and", "customers", "failed"] in lines
        assert ["sb", "2.1", "note", "default", "pending"] in lines
        assert ["sa", "2.1", "note", "default", "applied"] in lines

        # the cause goes away: a rerun resumes sb at V2 and leaves the others alone
        fx.q("drop table sb.customers")
        res = migrate(fx.p, "run", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        summary = json.loads(res.stdout)
        by = {r["tenant"]: r for r in summary["results"]}
        assert by["sb"]["applied"] == ["2", "2.1"]
        assert by["sa"]["applied"] == []
        assert by["shared:main/" + fx.main]["members"] == ["s1", "s2"]
        assert summary["failed"] == 0
        assert history(fx, "sb") == [("1", True), ("2", True), ("2.1", True)]

        # the child-process interface of CREATE TENANT: one tenant, exit status, one line
        fx.q("create table sc.extra_v3 (id int)")
        write(fx.dir, {"V3__extra.sql": "create table extra_v3 (id int);\n"})
        res = migrate(fx.p, "run", "--tenant", "sa")
        assert res.returncode == 0, res.stderr
        assert history(fx, "sa")[-1] == ("3", True)
        assert history(fx, "sb")[-1] == ("2.1", True)
        res = migrate(fx.p, "run", "--tenant", "sc")
        assert res.returncode != 0
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert res.stderr.startswith("pgtenant migrate: sc: V3__extra.sql failed")
        res = migrate(fx.p, "run", "--tenant", "nosuch")
        assert res.returncode == 2 and "nosuch" in res.stderr
    finally:
        fx.drop()


def test_validate_reports_an_applied_file_whose_checksum_changed(pg, pgtenant, tmp_path):
    fx = Fixture(pg, pgtenant, tmp_path, schemas=("va", "vb"), shared=(), databases=())
    try:
        write(fx.dir, {"V1__t.sql": "create table t (id int);\n",
                       "V2__u.sql": "create table u (id int);\n"})
        assert migrate(fx.p, "run").returncode == 0
        ok = migrate(fx.p, "validate")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        write(fx.dir, {"V2__u.sql": "create table u (id bigint);\n"})
        bad = migrate(fx.p, "validate")
        assert bad.returncode == 1
        assert "va: checksum changed: 2" in bad.stderr
        assert "vb: checksum changed: 2" in bad.stderr
        st = migrate(fx.p, "status")
        assert "applied, file changed since" in st.stdout
    finally:
        fx.drop()


def test_jobs_never_open_more_connections_to_a_backend_than_its_pool_size(pg, pgtenant,
                                                                          tmp_path):
    schemas = tuple(f"j{i}" for i in range(8))
    fx = Fixture(pg, pgtenant, tmp_path, schemas=schemas, shared=(), databases=(),
                 backend={"pool_size": 2})
    sql = ("select count(*) from pg_stat_activity where application_name = 'pgtenant migrate' "
           "and datname = %s")
    try:
        write(fx.dir, {"V1__slow.sql": "select pg_sleep(0.3);\n"})
        with pgt.PgStatSampler(pg, sql, [fx.main], period=0.02) as s:
            res = migrate(fx.p, "run", "--jobs", "6", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        assert s.error is None
        assert s.max == 2, f"saw {s.max} connections, pool_size is 2"
        assert json.loads(res.stdout)["max_connections_per_backend"] == 2
        # with room in the pool, --jobs is the bound
        # long enough that the three jobs overlap even on a loaded machine (sanitizers)
        write(fx.dir, {"V2__slow.sql": "select pg_sleep(1.0);\n"})
        fx.p.backends["main"]["pool_size"] = 20
        with open(fx.p.ini, "w") as f:
            f.write(pgt.render_ini(fx.p.globals, fx.p.backends, fx.p.tenants))
        with pgt.PgStatSampler(pg, sql, [fx.main], period=0.02) as s:
            res = migrate(fx.p, "run", "--jobs", "3")
        assert res.returncode == 0, res.stdout + res.stderr
        assert s.max == 3, f"saw {s.max} connections with --jobs 3"
    finally:
        fx.drop()


def test_dry_run_changes_nothing(pg, pgtenant, tmp_path):
    fx = Fixture(pg, pgtenant, tmp_path, schemas=("dr",), shared=("s1",), databases=("dd",))
    try:
        write(fx.dir, {"V1__t.sql": "create table t (id int);\n"})
        res = migrate(fx.p, "run", "--dry-run")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "dr: at (none), would apply 1" in res.stdout
        assert fx.q("select count(*) from pg_tables where schemaname in ('dr', 'public')")[0][0] == 0
        assert fx.q("select count(*) from pg_tables where schemaname = 'public'",
                    fx.dbs["dd"])[0][0] == 0
    finally:
        fx.drop()


def test_a_no_transaction_file_runs_outside_a_transaction(pg, pgtenant, tmp_path):
    fx = Fixture(pg, pgtenant, tmp_path, schemas=("na", "nb"), shared=(), databases=())
    try:
        write(fx.dir, {
            "V1__orders.sql": "create table orders (id int, note text);\n",
            "V2__index.sql": "-- pgtenant: no-transaction\n"
                             "create index concurrently orders_note on orders (note);\n"
                             "create index concurrently orders_id on orders (id);\n",
            "V3__index_in_tx.sql": "create index concurrently orders_bad on orders (id);\n",
        })
        res = migrate(fx.p, "run")
        assert res.returncode == 1
        assert "CREATE INDEX CONCURRENTLY cannot run inside a transaction block" in res.stderr
        assert history(fx, "na") == [("1", True), ("2", True), ("3", False)]
        assert fx.q("select count(*) from pg_indexes where schemaname = 'na' "
                    "and indexname in ('orders_note', 'orders_id')")[0][0] == 2
    finally:
        fx.drop()


def test_a_migration_that_waits_for_a_lock_is_retried(pg, pgtenant, tmp_path):
    fx = Fixture(pg, pgtenant, tmp_path, schemas=("la",), shared=(), databases=())
    try:
        fx.q("set role app; create table la.orders (id int)")
        write(fx.dir, {"V1__add.sql": "alter table orders add column note text;\n"})
        with pg.connect(fx.main, autocommit=False) as holder:
            holder.execute("lock table la.orders in access exclusive mode")
            run = pgt.spawn([pgt.PGTENANT_BIN, "migrate", fx.p.ini, "run", "--lock-timeout",
                             "200ms"], stdout=pgt.subprocess.PIPE, stderr=pgt.subprocess.PIPE,
                            text=True)
            pgt.time.sleep(1.0)  # the first attempt and a retry time out meanwhile
            holder.rollback()
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, out + err
        assert history(fx, "la") == [("1", True)]
        # held longer than every retry: the tenant fails with 55P03
        write(fx.dir, {"V2__add.sql": "alter table orders add column more text;\n"})
        with pg.connect(fx.main, autocommit=False) as holder:
            holder.execute("lock table la.orders in access exclusive mode")
            res = migrate(fx.p, "run", "--lock-timeout", "100ms")
            holder.rollback()
        assert res.returncode == 1
        assert "55P03" in res.stderr, res.stderr
        assert history(fx, "la") == [("1", True), ("2", False)]
    finally:
        fx.drop()


@pytest.mark.parametrize("pause", [True, False], ids=["paused", "control"])
def test_pause_traffic_holds_clients_instead_of_failing_them(pg, pgtenant, tmp_path, pause):
    fx = Fixture(pg, pgtenant, tmp_path, schemas=("pa",), shared=(), databases=(),
                 globals_={"admin_users": "admin"}, start=False)
    fx.p.users["admin"] = "adminpass"
    pgt.write_auth_file(fx.p.auth_file, fx.p.users)
    try:
        fx.q("set role app; create table pa.orders (id int, note text); "
             "insert into pa.orders values (1, 'x')")
        # half-way through, orders does not exist: a client that ran then would fail
        write(fx.dir, {"V1__swap.sql": "-- pgtenant: no-transaction\n"
                                       "alter table orders rename to orders_v1;\n"
                                       "select pg_sleep(1.5);\n"
                                       "create view orders as select * from orders_v1;\n"})
        fx.p.start()
        script = os.path.join(str(tmp_path), "read.sql")
        with open(script, "w") as f:
            f.write("select count(*) from orders;\n")
        env = fx.p.env(user="app", dbname="pa")
        bench = pgt.spawn([os.path.join(pgt.PG_BIN, "pgbench"), "-n", "-c", "4", "-T", "5",
                           "-f", script], env=dict(os.environ, **env), stdout=pgt.subprocess.PIPE,
                          stderr=pgt.subprocess.PIPE, text=True)
        try:
            pgt.time.sleep(1.0)
            res = migrate(fx.p, "run", *(["--pause-traffic"] if pause else []))
            out, err = bench.communicate(timeout=60)
        finally:
            if bench.poll() is None:
                bench.kill()
        assert res.returncode == 0, res.stdout + res.stderr
        assert history(fx, "pa") == [("1", True)]
        if not pause:
            # without the pause, clients meet the half-migrated schema
            assert bench.returncode != 0 and "does not exist" in err, out + err
            return
        assert bench.returncode == 0, out + err
        r = pgt.parse_pgbench(out)
        assert r.get("processed", 0) > 0, out
        assert r.get("failed", 0) == 0, out
        assert "aborted" not in err, err
        with fx.p.connect(user="app", dbname="pa") as c:
            assert c.execute("show search_path").fetchone()[0].startswith('"pa"')
            assert c.execute("select count(*) from orders").fetchone()[0] == 1
    finally:
        fx.drop()


def test_tenants_a_template_serves_are_migrated_as_they_exist(pg, pgtenant, tmp_path):
    """A [template] has no list of tenants: migrate lists the schemas of the backend's
    database that its pattern (s_{tenant}) makes, keeps the names its match (tt_*)
    accepts and no [tenant] section takes, and migrates each as the pooler serves it
    (search_path of its own schema)."""
    fx = Fixture(pg, pgtenant, tmp_path, schemas=("s_tt_b",), shared=(), databases=())
    try:
        with pg.connect(fx.main) as c:
            for s in ("s_tt_a", "s_tt_c", "s_other"):
                c.execute(f'create schema "{s}" authorization app')
        with open(fx.p.ini, "a") as f:
            # s_tt_b also has a [tenant] section of its own (Fixture: tenant "s_tt_b"
            # in schema s_tt_b), which migrate finds as that section, not twice
            f.write("\n[template per_schema]\nmatch = tt_*\nmode = schema\nbackend = main\n"
                    "schema = s_{tenant}\n")
        write(fx.dir, {"V1__orders.sql": "create table orders (id int);\n"})
        res = migrate(fx.p, "run", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        done = sorted(r["tenant"] for r in json.loads(res.stdout)["results"])
        assert done == ["s_tt_b", "tt_a", "tt_c"], done
        for s in ("s_tt_a", "s_tt_c", "s_tt_b"):
            assert history(fx, s) == [("1", True)], s
            assert fx.q(f"select to_regclass('{s}.orders') is not null")[0][0], s
        # s_other is no schema of the template's tenants (other does not match tt_*)
        assert fx.q("select to_regclass('s_other.orders') is null")[0][0]
        st = migrate(fx.p, "status", "--tenant", "tt_c")
        assert st.returncode == 0, st.stderr
        assert ["tt_c", "1", "orders", "applied"] in [line.split() for line in st.stdout.splitlines()]
    finally:
        fx.drop()
