#!/usr/bin/python3
"""Load for bench/stats.sh: CONNS raw protocol connections (trust auth) spread
over TENANTS tenants (connection i logs in to database t<i % TENANTS>), then
ROUNDS rounds in which every connection sends one pgbench select-only Query
(simple protocol, a fresh literal each time) and every answer is read.
Prints "ready" once logged in and after two warm-up rounds (the pool's server
connections are open then, each tenant has seen its statement), waits for a line on stdin (the caller reads
pgtenant's CPU time then), runs, prints "done <statements>" and waits for
another line before closing, so logins and logouts stay out of the figure."""

import random
import socket
import struct
import sys


def startup(port, user, db):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = struct.pack("!I", 196608) + b"user\0" + user.encode() + b"\0database\0" + \
        db.encode() + b"\0\0"
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    return s


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def until_ready(self):
        """Reads messages up to ReadyForQuery; fails on ErrorResponse."""
        while True:
            while len(self.buf) >= 5:
                kind = self.buf[0:1]
                n = struct.unpack("!I", self.buf[1:5])[0]
                if len(self.buf) < 1 + n:
                    break
                body = self.buf[5:1 + n]
                self.buf = self.buf[1 + n:]
                if kind == b"E":
                    raise SystemExit(f"error from pgtenant: {body!r}")
                if kind == b"Z":
                    return
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("connection closed")
            self.buf += chunk


def main():
    port, tenants, conns, rounds = (int(a) for a in sys.argv[1:5])
    user = sys.argv[5] if len(sys.argv) > 5 else "bench"
    socks = [startup(port, user, f"t{i % tenants}") for i in range(conns)]
    readers = [Reader(s) for s in socks]
    for r in readers:
        r.until_ready()
    rnd = random.Random(1)

    def run(rounds):
        n = 0
        for _ in range(rounds):
            for s in socks:
                aid = rnd.randint(1, 100000)
                q = f"SELECT abalance FROM pgbench_accounts WHERE aid = {aid};".encode() + b"\0"
                s.sendall(b"Q" + struct.pack("!I", len(q) + 4) + q)
            for r in readers:
                r.until_ready()
                n += 1
        return n

    run(2)
    print("ready", flush=True)
    sys.stdin.readline()
    n = run(rounds)
    print(f"done {n}", flush=True)
    sys.stdin.readline()
    for s in socks:
        s.sendall(b"X\0\0\0\4")
        s.close()


if __name__ == "__main__":
    main()
