#!/usr/bin/python3
"""Screenshot of pgtenant's live page (GET / on metrics_listen) under load, by hand:

    bench/page_screenshot.py [--seconds 40] [--out bench/results/live-page.png]

Starts a throwaway PostgreSQL 15 and a pgtenant with six tenants (the
integration tests' harness, test/integration/pgt.py), runs pgbench as each
at its own rate (some with bursts), and has headless chromium load the page and
save a PNG once it has read /tenants.json for about --seconds.

Chromium's virtual time (--virtual-time-budget) runs the page's timers at
once; the page reads /tenants.json through a small proxy here that answers
each read only after --every seconds of real time, so its history and QPS
cover real minutes of load. Needs chromium (scripts/deps.sh) and a built
./pgtenant.
"""

import argparse
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))

import pgt  # noqa: E402

# tenant: (statements per second, [(from second, to second, extra statements per second)])
TENANTS = {
    "acme": (150, [(20, 45, 120)]),
    "globex": (90, [(35, 80, 80)]),
    "initech": (60, []),
    "umbrella": (30, [(10, 25, 60), (50, 65, 60)]),
    "hooli": (15, []),
    "wayne": (4, []),
}


def pgbench(p, tenant, rate, seconds, script, delay=0):
    """pgbench at a fixed rate as the tenant, after delay seconds: a process of its own, so
    the load costs this script nothing and the page's reads are answered on time."""
    env = dict(os.environ)
    env.update(p.env(dbname=tenant))  # the database name names the tenant
    cmd = [os.path.join(pgt.PG_BIN, "pgbench"), "-n", "-c", "1", "-j", "1", "-R", str(rate),
           "-T", str(int(seconds)), "-f", script]
    if delay > 0:
        cmd = ["sh", "-c", f'sleep {int(delay)} && exec "$0" "$@"'] + cmd
    return pgt.spawn(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def proxy(target_port, every):
    """An HTTP server forwarding to pgtenant's metrics_listen; /tenants.json waits `every`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/tenants.json"):
                time.sleep(every)
            try:
                r = urllib.request.urlopen(f"http://127.0.0.1:{target_port}{self.path}",
                                           timeout=10)
            except urllib.error.HTTPError as e:  # /favicon.ico: pgtenant's 404, passed on
                r = e
            # the page's Content-Security-Policy is left out: under it headless chromium's
            # --screenshot never finishes after a long virtual-time budget (a browser
            # showing the page is fine with it)
            with r:
                body = r.read()
                self.send_response(r.status)
                for k in ("Content-Type", "Cache-Control"):
                    if r.headers.get(k):
                        self.send_header(k, r.headers[k])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, fmt, *a):
            if os.environ.get("PAGE_DEBUG"):
                sys.stderr.write("proxy: " + fmt % a + "\n")

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", pgt.free_port()), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # headless chromium's --screenshot has been seen to stall when its run takes over
    # about a minute of real time: keep the history short
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--every", type=float, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "live-page.png"))
    ap.add_argument("--size", default="1400,1000")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("chromium is not installed (scripts/deps.sh installs it)")

    pg = pgt.PgServer()
    work = tempfile.mkdtemp(prefix="pgtenant-page-")
    loads = []
    p = None
    try:
        pg.start()
        metrics_port = pgt.free_port()
        dbs = {"acme": "acme", "globex": "globex"}  # the others share appdb
        tenants = {name: {"mode": "database", "backend": "main",
                          "dbname": dbs.get(name, "appdb"), "pool_size": 3}
                   for name in TENANTS}
        p = pgt.Pgtenant(pg, os.path.join(work, "pgtenant"),
                         {"metrics_listen": f"127.0.0.1:{metrics_port}",
                          "health_check_period": "2s", "log_connections": "no",
                          "log_disconnections": "no"}, None, tenants)
        p.start()
        t0 = time.monotonic()
        total = int(args.seconds * 2) + 60  # outlasts chromium; stopped at the end
        scripts = {}
        for name, sql in (("fast", "select 1;\n"), ("slow", "select pg_sleep(0.004);\n")):
            scripts[name] = os.path.join(work, name + ".sql")
            with open(scripts[name], "w") as f:
                f.write(sql)
        for name, (rate, bursts) in TENANTS.items():
            # umbrella's statements take a few milliseconds: its avg ms stands out
            script = scripts["slow" if name == "umbrella" else "fast"]
            loads.append(pgbench(p, name, rate, total, script))
            for start, end, more in bursts:
                if start < total:
                    loads.append(pgbench(p, name, more, min(end, total) - start, script, start))
        time.sleep(3)
        srv = proxy(metrics_port, args.every)
        reads = int(args.seconds / args.every)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        profile = os.path.join(work, "chromium")
        res = pgt.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                       "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
                       f"--user-data-dir={profile}", f"--window-size={args.size}",
                       f"--virtual-time-budget={int((reads + 0.5) * args.every * 1000)}",
                       f"--screenshot={os.path.abspath(args.out)}",
                       f"http://127.0.0.1:{srv.server_address[1]}/?every={args.every}"],
                      timeout=args.seconds * 3 + 120)
        srv.shutdown()
        if res.returncode != 0 or not os.path.exists(args.out):
            sys.exit(f"chromium failed ({res.returncode}):\n{res.stderr[-3000:]}")
        print(f"{args.out}: {os.path.getsize(args.out)} bytes after "
              f"{time.monotonic() - t0:.0f} s of load")
    finally:
        for proc in loads:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(10)
        if p is not None:
            p.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
