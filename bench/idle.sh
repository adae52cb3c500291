#!/bin/bash
# shellcheck disable=SC2153  # the settings are assigned by `defaults` (lib.sh)
# pgtenant idle-client benchmark: the memory each idle client costs a pooler. For
# pgtenant (transaction mode) and PgBouncer in turn: start it, serve one query (so
# its first server connection and state exist), read its VmRSS (/proc/PID/status),
# open CLIENTS (10,000) client connections that log in and then sit idle, wait
# SETTLE seconds, read VmRSS again, then close them and read it once more. Prints
# (after - before) / CLIENTS in kB per idle client, and pgtenant's figure over
# PgBouncer's.
#
# The clients come from one small asyncio Python process with raw sockets (a
# driver like psycopg would cost far more than the poolers for 10,000 sessions): a
# StartupMessage, then messages up to ReadyForQuery. Both poolers use
# auth_type = trust here, so the login is that one round trip.
#
# Everything runs on 127.0.0.1 in a temporary directory, started and stopped
# here: a throwaway PostgreSQL, pgtenant and PgBouncer (as root, PostgreSQL and
# PgBouncer run as `postgres`). The open-file limit is raised for the clients.
#
# Environment (defaults in brackets):
#   CLIENTS [10000]  SETTLE [2] seconds idle before measuring  POOL_SIZE [20]
#   CONNECT_TIMEOUT [180] seconds for all clients to log in
#   IDLE_QUERY [0]  1: each client runs one `SELECT 1` after its login, before idling
#   TARGETS ["pgtenant pgbouncer"]
#   PG_PORT [25462] PGT_PORT [26462] PGB_PORT [26463]
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]  PGBOUNCER [/usr/sbin/pgbouncer]
#   BENCH_KEEP [0]  1: keep the temporary directory (logs, configs)
# Results are printed and written to bench/results/idle-<timestamp>.txt.
# Exit status: 0 when every client of both poolers logged in and stayed, 1 otherwise,
# 2 on setup failure.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

defaults \
	CLIENTS=10000 SETTLE=2 POOL_SIZE=20 CONNECT_TIMEOUT=180 IDLE_QUERY=0 TARGETS="pgtenant pgbouncer" \
	PG_PORT=25462 PGT_PORT=26462 PGB_PORT=26463
TENANT=acme
bench_results idle

# ---------------------------------------------------------------- setup

bench_deps psql pg_isready initdb pg_ctl
check_ports "$PG_PORT" "$PGT_PORT" "$PGB_PORT"
# each client is a socket in the driver and one in the pooler (separate processes)
raise_nofile $((CLIENTS * 2 + 1000)) $((CLIENTS + 200)) "$CLIENTS clients"

bench_workdir idle pgdata run
note "PostgreSQL on 127.0.0.1:$PG_PORT in $DIR"
pg_init "$DIR/pgdata" "$PG_PORT" 100 128MB
pg_start PostgreSQL "$DIR/pgdata" "$DIR/run/postgresql.log"
pg_create_bench_db "$PG_PORT"
write_userlist

start_pgtenant() {
	{
		pgt_ini_head "$PGT_PORT" trust
		printf 'default_pool_size = %s\nmax_client_conn = %s\n' "$POOL_SIZE" $((CLIENTS + 100))
		pgt_ini_backend "$POOL_SIZE"
		pgt_ini_tenant "$TENANT" database "dbname = $DB" "max_client_conn = $((CLIENTS + 100))"
	} >"$DIR/pgtenant.ini"
	launch_pgtenant pgtenant "$DIR/pgtenant.ini" "$DIR/pgtenant.log" &&
		await_target pgtenant "$DIR/pgtenant.log" "$PGT_PORT" "$DB_USER" "$TENANT" &&
		await_query pgtenant "$DIR/pgtenant.log" "$PGT_PORT" "$DB_USER" "$TENANT"
}

start_pgbouncer() {
	{
		printf '[databases]\n%s = host=%s port=%s dbname=%s\n' "$DB" "$(backend_host)" "$PG_PORT" "$DB"
		pgb_ini_head "$PGB_PORT" "$POOL_SIZE" $((CLIENTS + 100)) trust
	} >"$DIR/pgbouncer.ini"
	launch_pgbouncer pgbouncer "$DIR/pgbouncer.ini" "$DIR/pgbouncer.log" &&
		await_target pgbouncer "$DIR/pgbouncer.log" "$PGB_PORT" "$DB_USER" "$DB" &&
		await_query pgbouncer "$DIR/pgbouncer.log" "$PGB_PORT" "$DB_USER" "$DB"
}

# ---------------------------------------------------------------- the clients

cat >"$DIR/idle.py" <<'EOF'
"""Opens N connections to 127.0.0.1:PORT, logs each in (StartupMessage; trust
auth: AuthenticationOk ... ReadyForQuery), then keeps them open and idle until
stdin closes. Prints "ready ok=N errors=E connect_s=S" once all have logged in
or failed, and "closed lost=L" (sessions the pooler ended meanwhile) at the end."""
import asyncio, socket, struct, sys, time

port, n, user, db, timeout = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
queries = int(sys.argv[6])  # SELECT 1 statements each client runs after logging in
params = b"".join(k + b"\0" + v.encode() + b"\0" for k, v in
                  ((b"user", user), (b"database", db), (b"application_name", "idle")))
startup = struct.pack("!ii", 8 + len(params) + 1, 196608) + params + b"\0"
errors, lost, logged_in = [], [0], [0]

class Client(asyncio.Protocol):
    def __init__(self, done):
        self.done, self.buf, self.transport, self.queries = done, b"", None, queries

    def connection_made(self, transport):
        self.transport = transport
        # closed with a reset: no 10,000 sockets left in TIME-WAIT on ephemeral ports
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.write(startup)

    def fail(self, why):
        if not self.done.done():
            self.done.set_result(why)

    def data_received(self, data):
        if self.done.done():
            return  # idle: nothing should come; ParameterStatus would be harmless
        self.buf += data
        while len(self.buf) >= 5:
            kind, length = self.buf[0:1], struct.unpack("!i", self.buf[1:5])[0]
            if len(self.buf) < 1 + length:
                return
            body, self.buf = self.buf[5:1 + length], self.buf[1 + length:]
            if kind == b"E":
                return self.fail("error: " + body.replace(b"\0", b" ").decode(errors="replace").strip())
            if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                return self.fail("asked for a password (auth code %d)" % struct.unpack("!i", body[:4])[0])
            if kind == b"Z" and self.queries:
                self.queries -= 1
                self.transport.write(b"Q" + struct.pack("!i", 4 + 9) + b"SELECT 1\0")
            elif kind == b"Z":
                logged_in[0] += 1
                return self.done.set_result(None)

    def connection_lost(self, exc):
        if self.done.done():
            lost[0] += 1
        self.fail("connection closed during login")

async def one(loop, sem):
    async with sem:
        done = loop.create_future()
        try:
            transport, _ = await loop.create_connection(lambda: Client(done), "127.0.0.1", port)
        except OSError as e:
            errors.append(f"connect: {e}")
            return None
        why = await done
        if why:
            errors.append(why)
            transport.close()
            return None
        return transport

async def main():
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(200)  # logins in flight
    t0 = time.monotonic()
    try:
        conns = await asyncio.wait_for(asyncio.gather(*(one(loop, sem) for _ in range(n))), timeout)
    except asyncio.TimeoutError:
        print(f"ready ok={logged_in[0]} errors={n - logged_in[0]} connect_s=timeout", flush=True)
        return
    print(f"ready ok={logged_in[0]} errors={len(errors)} connect_s={time.monotonic() - t0:.1f}", flush=True)
    for e in sorted(set(errors))[:3]:
        print("  error:", e, file=sys.stderr, flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # the bench measures meanwhile
    print(f"closed lost={lost[0]}", flush=True)
    for t in conns:
        if t:
            t.close()
    await asyncio.sleep(0.5)

asyncio.run(main())
EOF

declare -A RES=()
any_failed=0
measure() { # target port db
	local name=$1 port=$2 db=$3 before after closed fifo=$DIR/$1.stdin line _
	before=$(rss_kb "${PID[$name]}")
	note "$name: RSS $before kB; opening $CLIENTS idle clients"
	rm -f "$fifo"
	mkfifo "$fifo"
	timeout $((CONNECT_TIMEOUT + SETTLE + 60)) "$PYTHON" "$DIR/idle.py" "$port" "$CLIENTS" "$DB_USER" "$db" \
		"$CONNECT_TIMEOUT" "$IDLE_QUERY" <"$fifo" >"$DIR/$name.clients" 2>"$DIR/$name.clients.err" &
	PID[clients]=$!
	exec 7>"$fifo" # the driver holds its clients until this closes
	for _ in $(seq $((CONNECT_TIMEOUT * 10 + 100))); do
		grep -q '^ready' "$DIR/$name.clients" 2>/dev/null && break
		kill -0 "${PID[clients]}" 2>/dev/null || break
		sleep 0.1
	done
	line=$(grep '^ready' "$DIR/$name.clients" || echo "ready FAILED")
	sed 's/^/    /' "$DIR/$name.clients.err" >&2
	sleep "$SETTLE"
	after=$(rss_kb "${PID[$name]}") || after=""
	exec 7>&-
	wait "${PID[clients]}" || true
	unset "PID[clients]"
	sleep 1
	closed=$(rss_kb "${PID[$name]}") || closed=""
	out "$name: ${line#ready } rss_before_kb=$before rss_idle_kb=${after:-?} rss_after_close_kb=${closed:-?} $(grep '^closed' "$DIR/$name.clients" || true)"
	if [ -z "$after" ] || [ "$(field "$line" ok)" != "$CLIENTS" ] || ! grep -q '^closed lost=0$' "$DIR/$name.clients"; then
		any_failed=1
		note "$name: not every client logged in and stayed idle (log: $DIR/$name.log)"
		tail -n 5 "$DIR/$name.log" >&2
	fi
	if [ -n "$after" ]; then
		# shellcheck disable=SC2034  # read by out_per_pooler (lib.sh)
		RES[$name]=$(awk -v a="$after" -v b="$before" -v n="$(field "$line" ok)" \
			'BEGIN { if (n > 0) printf "%.2f", (a - b) / n }')
	fi
}

out_header "pgtenant idle-client benchmark"
out "$CLIENTS idle clients (logged in, auth_type = trust, transaction mode$([ "$IDLE_QUERY" = 0 ] || echo ", $IDLE_QUERY x SELECT 1 each")), ${SETTLE}s idle; open-file limit $(ulimit -n)"
out ""
for t in $TARGETS; do
	case $t in
		pgtenant)
			if start_pgtenant; then measure pgtenant "$PGT_PORT" "$TENANT"; else any_failed=1; fi
			stop_target pgtenant
			;;
		pgbouncer)
			if start_pgbouncer; then measure pgbouncer "$PGB_PORT" "$DB"; else any_failed=1; fi
			stop_target pgbouncer
			;;
		*) die "unknown target $t" ;;
	esac
done

out ""
out "kB of RSS per idle client ((idle - before) / clients logged in)"
out_per_pooler RES kB
note "results written to $RESULT"
exit "$any_failed"
