#!/usr/bin/python3
"""Screenshot of pgtenant's live page (GET / on metrics_listen) under load, by hand:

    bench/page_screenshot.py [--seconds 60] [--out bench/results/live-page.png]

Starts a throwaway PostgreSQL 15 and a pgtenant with six tenants (the
integration tests' harness, test/integration/pgt.py), runs pgbench as each
at its own rate (some with bursts), opens the page in headless chromium and,
after --seconds of real time (the page reads /tenants.json every --every
seconds and keeps what it read), saves a PNG through the DevTools protocol
(Page.captureScreenshot; a minimal WebSocket client here, so nothing beyond
Debian's chromium and python3 is needed). Needs a built ./pgtenant.
"""

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
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


class DevTools:
    """Just enough of a WebSocket client (RFC 6455: masked text frames out,
    unmasked frames in) to send DevTools commands to one page target."""

    def __init__(self, ws_url, timeout=30):
        rest = ws_url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError("DevTools closed the connection during the handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"DevTools refused the WebSocket: {head[:200]!r}")
        self.next_id = 0

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send(self, text):
        data = text.encode()
        n = len(data)
        head = bytes([0x81])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _message(self):
        payload = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            data = self._read(n)
            if b0 & 0x0F in (0x9, 0xA):  # ping, pong: not part of a message
                continue
            payload += data
            if b0 & 0x80:
                return json.loads(payload.decode())

    def call(self, method, **params):
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = self._message()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})


def page_target(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("chromium's DevTools endpoint did not come up")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--every", type=float, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "live-page.png"))
    ap.add_argument("--size", default="1400,1000")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("chromium is not installed (scripts/deps.sh installs it)")

    # a run stopped by SIGTERM (a timeout) still stops what it started, in the finally below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
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
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        devtools_port = pgt.free_port()
        w, h = args.size.split(",")
        browser = pgt.spawn([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
                             f"--user-data-dir={os.path.join(work, 'chromium')}",
                             f"--window-size={args.size}",
                             f"--remote-debugging-port={devtools_port}",
                             f"http://127.0.0.1:{metrics_port}/?every={args.every}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        loads.append(browser)
        tab = DevTools(page_target(devtools_port))
        time.sleep(args.seconds)  # the page reads and draws in real time meanwhile
        shot = tab.call("Page.captureScreenshot", format="png",
                        clip={"x": 0, "y": 0, "width": int(w), "height": int(h), "scale": 1})
        with open(args.out, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
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
