#!/usr/bin/python3
"""
pgtenant's randomized tenant-isolation checker (issue 15).

Starts one PostgreSQL 15 (and, for the `replica` configuration, a streaming
replica), lays out tenants of all three modes on one backend (world.py), runs
pgtenant with a pool of 2-3 server connections so that every connection keeps
passing between tenants, and lets seeded random clients (client.py) run the
operation mix of ops.py while a chaos thread kills server connections and
RELOADs a tenant onto another schema. Every statement's markers are judged by
oracle.py. At the end of each configuration the pool must quiesce: no server
connection active without a client, no client left, pgtenant alive, no
sanitizer report in its log.

    test/isolation/isocheck.py --seconds 60              # the CI budget, fixed seeds
    test/isolation/isocheck.py --config txn --seed 7 --seconds 20   # replay
    test/isolation/isocheck.py --soak --seconds 3600     # random seeds

Exit status 0: no failure; 1: failures (printed with a replay command);
2: the harness itself could not run.
"""

import argparse
import collections
import os
import random
import re
import shlex
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import world  # noqa: E402  (puts test/integration on sys.path)
import pgt  # noqa: E402
import client as clientmod  # noqa: E402
import ops as opsmod  # noqa: E402

FIXED_SEEDS = {"txn": 1, "session": 2, "replica": 3}
CLIENT_TENANTS = {
    # one client per tenant, two for s1 and h1 (same-tenant neighbours), sx alone
    "txn": ["s1", "s2", "s3", "h1", "h2", "d0", "d1", "d2", "sx", "s1", "h1", "d0"],
    "session": ["s1", "s2", "s3", "h1", "h2", "d0", "d1", "d2", "sx"],
    "replica": ["s1", "s2", "h1", "h2", "d0", "d1", "s3", "d2"],
}
SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
                          r"SUMMARY: (Address|Undefined|Leak)Sanitizer")
MAX_DETAILED = 3  # failures printed in full per class
VANISH_BOUND = float(os.environ.get("ISO_VANISH_BOUND", "6"))  # a hang-up is noticed within


class Failure:
    def __init__(self, run, cls, text, client, seg, t):
        self.run, self.cls, self.text, self.client, self.seg, self.t = run, cls, text, client, seg, t
        self.history = list(client.history) if client else []
        self.neighbours = run.neighbour_ops(client, text) if client else []


class Run:
    """One configuration with one seed."""

    def __init__(self, args, config, seed, seconds, pg, replica, ops_filter):
        self.args, self.config, self.seed, self.seconds = args, config, seed, seconds
        self.pg, self.replica = pg, (replica if world.CONFIGS[config][2] else None)
        self.pool_mode = world.CONFIGS[config][0]
        self.lock = threading.Lock()
        self.failures = []
        self.first_seen = {}
        self.stats = collections.Counter()
        self.tiny_timeout_used = {}
        self.recent = collections.deque(maxlen=600)
        self.t0 = time.monotonic()
        names = [n for n in opsmod.OPS if not ops_filter or n in ops_filter]
        if self.pool_mode == "session":
            names = [n for n in names if n != "many_temps"] + (["many_temps"] if "many_temps" in names else [])
        self.op_names = names
        self.op_weights = [opsmod.OPS[n][0] for n in names]
        self.pgt = None
        self.stop_now = False
        self.direct = args.direct

    # -- called by clients (any thread)

    def record(self, client, text):
        self.recent.append((time.monotonic() - self.t0, client.cid, client.tenant, text))

    def fail(self, client, cls, text, seg=None):
        with self.lock:
            t = time.monotonic() - self.t0
            f = Failure(self, cls, text, client, seg, t)
            self.failures.append(f)
            if cls not in self.first_seen:
                self.first_seen[cls] = t
            if self.args.stop_on_failure:
                self.stop_now = True
            if client:
                client.log(f"  !! {cls}: {text}")
        if self.args.verbose:
            print(f"[{self.config} t={t:.1f}s] {cls}: {text}", flush=True)

    def client_gone(self, client, port, what, bound=None):
        """A client that hung up must leave SHOW CLIENTS (and free its server) within
        a bounded time, also when pgtenant had stopped reading it (SPEC §8)."""
        if self.direct:
            return
        bound = VANISH_BOUND if bound is None else bound
        deadline = time.monotonic() + bound
        rows = []
        while time.monotonic() < deadline and not self.stop_now:
            try:
                rows = [r for r in world.console(self.pgt, "SHOW CLIENTS")
                        if str(r.get("port")) == str(port) and r.get("tenant") == client.tenant]
            except Exception:
                if not self.pgt.alive():
                    return
                rows = []
            if not rows:
                return
            time.sleep(0.1)
        if rows:
            self.fail(client, "client-leak", f"a client that hung up {what} is still listed "
                      f"{bound:.0f}s later (SHOW CLIENTS: {rows[0]}): pgtenant never noticed, "
                      "its server stays taken")

    def schemas_of(self, tenant):
        if tenant == "s3":
            return world.S3_SCHEMAS
        return [world.SCHEMA_TENANTS.get(tenant, "")]

    def neighbour_ops(self, client, text):
        """The recent ops of the tenant whose marker was seen (the likely culprit)."""
        m = re.search(r"tenant (\w+)", text)
        other = m.group(1) if m else None
        now = time.monotonic() - self.t0
        out = [f"{t:7.2f}s c{cid}({tn}) {cut(txt, 220)}" for t, cid, tn, txt in list(self.recent)
               if tn == other and other != client.tenant and now - t < 3]
        return out[-12:]

    # -- the run

    def run(self):
        workdir = os.path.join(self.args.workdir, f"{self.config}-{self.seed}")
        self.pgt = world.make_pgtenant(self.pg, workdir, self.config, self.replica)
        env_note = ""
        if self.direct:
            self.port = self.pg.port
        else:
            self.pgt.start(timeout=15)
            self.port = self.pgt.port
        if self.replica is not None and not self.direct:
            self._wait_replica_up()
        self.t0 = time.monotonic()
        tenants = CLIENT_TENANTS[self.config]
        if self.args.tenants:  # one client per name (repeat a name for more)
            tenants = self.args.tenants.split(",")
        if self.direct:
            tenants = ["d1"] * 6 + ["d2"] * 4
        clients = [clientmod.Client(self, i, t, self.seed) for i, t in enumerate(tenants)]
        stop_at = self.t0 + self.seconds
        threads = [threading.Thread(target=self._client_loop, args=(c, stop_at), daemon=True)
                   for c in clients]
        chaos = threading.Thread(target=self._chaos, args=(stop_at,), daemon=True)
        for th in threads:
            th.start()
        if not self.args.no_faults:
            chaos.start()
        for th, c in zip(threads, clients):
            th.join(max(1.0, stop_at - time.monotonic()) + clientmod.OP_TIMEOUT + 15)
            if th.is_alive():
                c.stop = True
                self.fail(c, "hang", "client thread did not finish its last operation "
                          f"{clientmod.OP_TIMEOUT + 15:.0f}s after the end of the budget")
        if chaos.is_alive():
            chaos.join(20)
        elapsed = time.monotonic() - self.t0
        self._quiesce_checks()
        self.elapsed = elapsed
        return env_note

    def _wait_replica_up(self):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                rows = world.console(self.pgt, "SHOW BACKENDS")
                if any(r.get("role") == "replica" and r.get("state") == "up" for r in rows):
                    return
            except Exception:
                pass
            time.sleep(0.2)

    def _client_loop(self, c, stop_at):
        try:
            while time.monotonic() < stop_at and not c.stop and not self.stop_now:
                if not c.ensure_connected():
                    break
                name = c.rng.choices(self.op_names, self.op_weights)[0]
                c.nop += 1
                self.stats["ops"] += 1
                self.stats["op:" + name] += 1
                try:
                    opsmod.OPS[name][1](c)
                    if c.conn is not None and c.status != "I":
                        c.finish_tx()
                    if c.conn is not None and self.pool_mode == "session":
                        c.session_ops_left -= 1
                        if c.session_ops_left <= 0:
                            c.conn.close()
                            c.conn = None
                except clientmod.Reconnect as e:
                    self.stats["reconnects"] += 1
                    c.log(f"  reconnect: {e}")
                    c.drop()
        except Exception as e:  # a bug in the checker itself, or an unforeseen reply
            self.fail(c, "checker-error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        finally:
            c.drop()

    def _chaos(self, stop_at):
        rng = random.Random(f"{self.seed}:{self.config}:chaos")
        s3 = "sch_s3"
        chaos_client = type("Chaos", (), {"cid": "chaos", "tenant": "-", "history": [],
                                          "log": lambda self, t: None})()
        while True:
            time.sleep(rng.uniform(0.3, 2.0))
            if time.monotonic() >= stop_at - 1 or self.stop_now:
                break
            action = rng.choices(["terminate", "reload"], [3, 0 if self.direct else 1])[0]
            try:
                if action == "terminate":
                    target = self.pg
                    if self.replica is not None and rng.random() < 0.3:
                        target = self.replica
                    with target.connect(dbname="postgres") as conn:
                        pids = [r[0] for r in conn.execute(
                            "SELECT pid FROM pg_stat_activity WHERE usename = 'app' "
                            "AND backend_type = 'client backend' ORDER BY pid").fetchall()]
                        if pids:
                            pid = rng.choice(pids)
                            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
                            self.recent.append((time.monotonic() - self.t0, "chaos", "-",
                                                f"pg_terminate_backend({pid})"))
                            self.stats["terminated"] += 1
                else:
                    s3 = rng.choice([s for s in world.S3_SCHEMAS if s != s3])
                    world.rewrite_ini(self.pgt, s3)
                    world.console(self.pgt, "RELOAD")
                    self.recent.append((time.monotonic() - self.t0, "chaos", "-",
                                        f"RELOAD: tenant s3 now on schema {s3}"))
                    self.stats["reloads"] += 1
            except Exception as e:
                self.recent.append((time.monotonic() - self.t0, "chaos", "-", f"{action}: {e}"))
                if not self.pgt.alive():
                    break
        _ = chaos_client

    def _quiesce_checks(self):
        """After every client has gone: nothing may stay linked or active."""
        if self.direct:
            self._cleanup_prepared()
            return
        if not self.pgt.alive():
            self.fail(None, "crash", f"pgtenant died (exit code {self.pgt.proc.returncode})")
        else:
            busy, rows = None, []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    rows = world.console(self.pgt, "SHOW SERVERS")
                    clients = world.console(self.pgt, "SHOW CLIENTS")
                except Exception as e:
                    rows, clients = [{"state": f"console failed: {e}"}], []
                busy = [r for r in rows if r.get("state") not in ("idle", "free", "connecting",
                                                                    "login")]
                clients = [r for r in clients if r.get("user") != world.ADMIN]
                with self.pg.connect() as conn:
                    act = conn.execute(
                        "SELECT pid, datname, state, left(query, 120) FROM pg_stat_activity "
                        "WHERE usename = 'app' AND backend_type = 'client backend' "
                        "AND state <> 'idle'").fetchall()
                if not busy and not act and not clients:
                    break
                time.sleep(0.2)
            if busy:
                self.fail(None, "server-leak", f"after every client left, SHOW SERVERS still has "
                          f"non-idle server connections: {busy}")
            if act:
                self.fail(None, "server-leak", "after every client left, server connections are "
                          f"still busy in pg_stat_activity: {act}")
            if clients:
                self.fail(None, "client-leak", f"after every client left, SHOW CLIENTS lists {clients}")
        self.pgt.stop()  # first: LeakSanitizer reports at exit
        log = pgt.read_tail(self.pgt.logfile, 2_000_000)
        m = SANITIZER_RE.search(log)
        if m:
            self.fail(None, "sanitizer", "sanitizer report in pgtenant's log:\n"
                      + log[max(0, m.start() - 200):m.start() + 3000])
        self._cleanup_prepared()

    def _cleanup_prepared(self):
        """Leftovers of PREPARE TRANSACTION would hold locks into the next configuration."""
        with self.pg.connect() as conn:
            for (gid, db) in conn.execute("SELECT gid, database FROM pg_prepared_xacts").fetchall():
                with self.pg.connect(dbname=db) as c2:
                    c2.execute(f"ROLLBACK PREPARED '{gid}'")

    # -- reporting

    def replay_cmd(self):
        parts = ["PGTENANT_BIN=" + shlex.quote(os.path.relpath(pgt.PGTENANT_BIN)),
                 "/usr/bin/python3 test/isolation/isocheck.py", "--config", self.config,
                 "--seed", str(self.seed), "--seconds", f"{self.seconds:g}"]
        if self.args.ops:
            parts += ["--ops", self.args.ops]
        if self.args.tenants:
            parts += ["--tenants", self.args.tenants]
        if self.args.no_faults:
            parts.append("--no-faults")
        if self.args.direct:
            parts.append("--direct")
        return " ".join(parts)

    def report(self, out):
        s = self.stats
        el = max(self.elapsed, 0.001)
        out.write(f"== {self.config} (pool_mode={self.pool_mode}, seed={self.seed}, "
                  f"{el:.1f}s): {s['ops']} ops ({s['ops'] / el:.0f}/s), {s['statements']} "
                  f"statements ({s['statements'] / el:.0f}/s), {s['rows']} rows, "
                  f"{s['markers']} markers checked; {s['reconnects']} reconnects, "
                  f"{s['fatals']} FATALs, {s['notifications']} notifications, "
                  f"{s['terminated']} server kills, {s['reloads']} reloads\n")
        if not self.failures:
            out.write("   no failure\n")
            return
        by_cls = collections.OrderedDict()
        for f in self.failures:
            by_cls.setdefault(f.cls, []).append(f)
        out.write(f"   {len(self.failures)} FAILURES: " + ", ".join(
            f"{c} x{len(v)} (first at {self.first_seen[c]:.1f}s)" for c, v in by_cls.items())
            + "\n")
        out.write(f"   replay: {self.replay_cmd()}\n")
        sigs = collections.OrderedDict()
        for f in self.failures:
            sigs.setdefault(signature(f), []).append(f)
        out.write("   distinct failures (count, first seen, signature):\n")
        for sig, fs in sorted(sigs.items(), key=lambda kv: kv[1][0].t):
            out.write(f"     {len(fs):5d}  {fs[0].t:6.1f}s  {sig}\n")
        for cls, fs in by_cls.items():
            seen_texts = set()
            shown = 0
            for f in fs:
                key = re.sub(r"\d+", "N", f.text)[:90]
                if key in seen_texts or shown >= MAX_DETAILED:
                    continue
                seen_texts.add(key)
                shown += 1
                who = (f"client c{f.client.cid} (tenant {f.client.tenant}, "
                       f"{world.mode_of(f.client.tenant)} mode)") if f.client else "pgtenant"
                out.write(f"\n--- ISOLATION FAILURE [{cls}] config={self.config} seed={self.seed} "
                          f"t={f.t:.2f}s {who}\n    {f.text}\n")
                if f.seg is not None:
                    out.write(f"    statement: {cut(f.seg.sql, 400)}\n")
                if f.history:
                    out.write("    client's operations (latest last):\n")
                    for h in f.history[-18:]:
                        out.write(f"      {cut(h, 300)}\n")
                if f.neighbours:
                    out.write("    recent operations of the tenant whose marker was seen:\n")
                    for h in f.neighbours:
                        out.write(f"      {h}\n")
                out.write(f"    replay: {self.replay_cmd()}\n")
        if self.direct:
            return
        out.write("\n--- pgtenant log (tail)\n")
        out.write(pgt.read_tail(self.pgt.logfile, self.args.log_tail) + "\n")


cut = clientmod.cut


def signature(f):
    """A failure without its particulars: class, who saw what of whom."""
    text = f.text.split("  [", 1)[0].split("\n", 1)[0]
    text = re.sub(r"'[^',]{25,}'", "'…'", text)
    text = re.sub(r"\d{3,}", "N", text)
    me = world.mode_of(f.client.tenant) if f.client else "-"
    m = re.search(r"tenant (\w+)", f.text)
    them = ""
    if m and m.group(1) in world.TENANT_INDEX and f.client and m.group(1) != f.client.tenant:
        them = f" <- {world.mode_of(m.group(1))} tenant"
        text = text.replace(m.group(1), "T")
    if f.client:
        text = text.replace(f.client.tenant, "SELF")
    if f.cls == "unexpected-error" and f.seg is not None:
        text += f"  (in: {cut(f.seg.sql, 40)})"
    return f"[{f.cls}] {me} client{them}: {text[:200]}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60, help="total budget of client time")
    ap.add_argument("--config", default="all", help="txn, session, replica or all (comma list)")
    ap.add_argument("--seed", type=int, help="seed of every configuration run")
    ap.add_argument("--soak", action="store_true", help="random seeds, repeat until --seconds")
    ap.add_argument("--ops", default="", help="only these ops (comma list; see ops.OPS)")
    ap.add_argument("--tenants", default="", help="clients: one per tenant name (comma list, "
                    "names may repeat)")
    ap.add_argument("--direct", action="store_true",
                    help="self-test: clients of database tenants d1/d2 straight to PostgreSQL "
                         "(every failure is then a bug of the checker)")
    ap.add_argument("--no-faults", action="store_true", help="no server kills / RELOADs")
    ap.add_argument("--stop-on-failure", action="store_true",
                    help="end a run at its first failure (time-to-find)")
    ap.add_argument("--keep-going", action="store_true", help="soak: go on after a failure")
    ap.add_argument("--verbose", "-v", action="store_true", help="print failures as they happen")
    ap.add_argument("--log-tail", type=int, default=6000)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    configs = list(world.CONFIGS) if args.config == "all" else args.config.split(",")
    for c in configs:
        if c not in world.CONFIGS:
            ap.error(f"unknown config {c}")
    ops_filter = set(filter(None, args.ops.split(",")))
    for n in ops_filter:
        if n not in opsmod.OPS:
            ap.error(f"unknown op {n}; ops: {', '.join(opsmod.OPS)}")
    pgt.PGTENANT_BIN = os.path.abspath(pgt.PGTENANT_BIN)  # pgtenant runs in its workdir
    if not os.access(pgt.PGTENANT_BIN, os.X_OK):
        print(f"isocheck: {pgt.PGTENANT_BIN} is not built (make pgtenant)", file=sys.stderr)
        return 2
    import tempfile
    user_workdir = args.workdir is not None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="pgtenant-iso-")

    t_start = time.monotonic()
    pg = pgt.PgServer()
    replica = None
    try:
        pg.start()
        default_tz = world.setup_postgres(pg)
        if "replica" in configs:
            replica = world.start_replica(pg)
    except Exception as e:
        print(f"isocheck: could not set up PostgreSQL: {e}", file=sys.stderr)
        pg.stop()
        return 2
    print(f"isocheck: PostgreSQL on port {pg.port} (TimeZone {default_tz}), "
          f"{'replica on ' + str(replica.port) if replica else 'no replica'}; "
          f"pgtenant {pgt.PGTENANT_BIN}; workdir {args.workdir}", flush=True)

    failed = False
    runs = []
    total = collections.Counter()
    try:
        if args.soak:
            rng = random.SystemRandom()
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                cfg = rng.choice(configs)
                secs = min(max(10.0, end - time.monotonic()), 60.0)
                r = Run(args, cfg, rng.randrange(1, 10 ** 9), secs, pg, replica, ops_filter)
                r.run()
                r.report(sys.stdout)
                sys.stdout.flush()
                runs.append(r)
                if r.failures:
                    failed = True
                    if not args.keep_going:
                        break
        else:
            share = sum(world.CONFIGS[c][3] for c in configs)
            for cfg in configs:
                secs = args.seconds * world.CONFIGS[cfg][3] / share
                seed = args.seed if args.seed is not None else FIXED_SEEDS[cfg]
                r = Run(args, cfg, seed, secs, pg, replica, ops_filter)
                r.run()
                r.report(sys.stdout)
                sys.stdout.flush()
                runs.append(r)
                failed = failed or bool(r.failures)
    finally:
        if replica is not None:
            replica.destroy()
        pg.stop()
    for r in runs:
        total.update(r.stats)
    if not failed and not user_workdir:
        import shutil
        shutil.rmtree(args.workdir, ignore_errors=True)
    el = sum(r.elapsed for r in runs) or 1
    print(f"isocheck: {len(runs)} run(s), {total['ops']} ops, {total['statements']} statements, "
          f"{total['markers']} markers in {el:.0f}s of client time "
          f"({total['ops'] / el:.0f} ops/s, {total['statements'] / el:.0f} statements/s); "
          f"wall {time.monotonic() - t_start:.0f}s; "
          f"{'FAILED' if failed else 'ok'}")
    if args.verbose:
        ops = sorted((k[3:], v) for k, v in total.items() if k.startswith("op:"))
        print("ops run: " + ", ".join(f"{k}={v}" for k, v in ops))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
