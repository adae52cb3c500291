#!/bin/bash
# shellcheck disable=SC2153  # the settings are assigned by `defaults` (lib.sh)
# pgtenant idle-client benchmark: the memory each idle client costs a pooler, and
# whether it keeps serving active clients while holding the idle ones.
#
# 1. Idle clients. For each count in CLIENTS (5,000 and 10,000) and each of pgtenant
#    (transaction mode) and PgBouncer: start the pooler afresh, serve one query (so its
#    first server connection and state exist), read its VmRSS (/proc/PID/status), open
#    that many client connections that log in and then sit idle, wait SETTLE seconds,
#    read VmRSS again, then close them and read it once more. Prints (after - before) /
#    clients logged in, in kB per idle client, and pgtenant's figure over PgBouncer's.
#    Each count gets a pooler of its own, started fresh: a pooler's heap keeps (and
#    reuses) what earlier clients freed, so a second count measured in the same process
#    would show less growth than its clients cost; fresh, every count of both poolers
#    starts from the same state. The configuration (max_client_conn and all) is the same
#    for every count.
# 2. Held with active. With the largest count's idle clients still held open, ACTIVE
#    (1,000) more clients run `pgbench -n -S` (select-only, scale SCALE, -j ACTIVE_JOBS)
#    through the same pooler for ACTIVE_DURATION seconds. Reports pgbench's TPS, the
#    pooler's VmRSS (peak, sampled every 0.5 s while pgbench runs, and after it) and the
#    errors: failed and aborted pgbench transactions and clients, failed logins of the
#    active clients (pgbench 15 gives up at its first: then 1 or more) and of the held
#    idle clients, and held idle clients the pooler ended before they were closed. 0 is
#    the target.
#    ACTIVE=0 skips this part.
#
# The idle clients come from one small asyncio Python process with raw sockets (a
# driver like psycopg would cost far more than the poolers for 10,000 sessions): a
# StartupMessage, then messages up to ReadyForQuery. Both poolers use
# auth_type = trust here, so the login is that one round trip.
#
# Everything runs on 127.0.0.1 in a temporary directory, started and stopped
# here: a throwaway PostgreSQL, pgtenant and PgBouncer (as root, PostgreSQL and
# PgBouncer run as `postgres`). max_client_conn of both poolers is the largest count
# + ACTIVE + 100, and the open-file limit is raised for that many clients.
#
# Environment (defaults in brackets):
#   CLIENTS ["5000 10000"]  idle-client counts  SETTLE [2] seconds idle before measuring
#   ACTIVE [1000] active clients beside the largest count (0: none)
#   ACTIVE_DURATION [10] seconds (pgbench -T)  ACTIVE_JOBS [2] (pgbench -j)  SCALE [1] (pgbench -i -s)
#   POOL_SIZE [20]  CONNECT_TIMEOUT [180] seconds for all idle clients to log in
#   IDLE_QUERY [0]  1: each idle client runs one `SELECT 1` after its login, before idling
#   TARGETS ["pgtenant pgbouncer"]
#   PG_PORT [25462] PGT_PORT [26462] PGB_PORT [26463]
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]  PGBOUNCER [/usr/sbin/pgbouncer]
#   BENCH_KEEP [0]  1: keep the temporary directory (logs, configs)
# Results are printed and written to bench/results/idle-<timestamp>.txt: one line per
# pooler and count ("<pooler> <count>: ok= errors= connect_s= rss_before_kb= rss_idle_kb=
# rss_after_close_kb= closed lost="; for the largest count, after the active run too),
# one per pooler for the active run ("<pooler> active: clients= held= tps= ... errors=
# rss_peak_kb= rss_after_kb="), then a table of kB per idle client by count and one of
# the active run. Summary lines (BENCH_SUMMARY, see lib.sh): idle.kb.<count>.<pooler>,
# idle.active.clients, idle.active.held, idle.active.tps.<pooler>,
# idle.active.errors.<pooler>.
# Exit status: 0 when every client of both poolers logged in and stayed, and the
# active run had no errors; 1 otherwise; 2 on setup failure.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

defaults \
	CLIENTS="5000 10000" SETTLE=2 ACTIVE=1000 ACTIVE_DURATION=10 ACTIVE_JOBS=2 SCALE=1 \
	POOL_SIZE=20 CONNECT_TIMEOUT=180 IDLE_QUERY=0 TARGETS="pgtenant pgbouncer" \
	PG_PORT=25462 PGT_PORT=26462 PGB_PORT=26463
TENANT=acme
bench_results idle

MAX_CLIENTS=0
for n in $CLIENTS; do
	[[ $n =~ ^[1-9][0-9]*$ ]] || die "CLIENTS: '$n' is not a client count"
	[ "$n" -gt "$MAX_CLIENTS" ] && MAX_CLIENTS=$n
done
[ "$MAX_CLIENTS" -gt 0 ] || die "CLIENTS is empty"
[[ $ACTIVE =~ ^[0-9]+$ ]] || die "ACTIVE: '$ACTIVE' is not a client count"
MAX_CONN=$((MAX_CLIENTS + ACTIVE + 100))

# ---------------------------------------------------------------- setup

if [ "$ACTIVE" -gt 0 ]; then bench_deps psql pg_isready initdb pg_ctl pgbench; else bench_deps psql pg_isready initdb pg_ctl; fi
check_ports "$PG_PORT" "$PGT_PORT" "$PGB_PORT"
# per process: the pooler holds a socket for each idle and active client (and its
# server connections); the idle driver one for each idle client
raise_nofile $((MAX_CONN + 1000)) $((MAX_CLIENTS + ACTIVE + 200)) "$MAX_CLIENTS idle + $ACTIVE active clients"

bench_workdir idle pgdata run
note "PostgreSQL on 127.0.0.1:$PG_PORT in $DIR"
pg_init "$DIR/pgdata" "$PG_PORT" 100 128MB
pg_start PostgreSQL "$DIR/pgdata" "$DIR/run/postgresql.log"
pg_create_bench_db "$PG_PORT"
if [ "$ACTIVE" -gt 0 ]; then pgbench_init "$PG_PORT" "$SCALE" "$DIR/pgbench-init.log"; fi
write_userlist

start_pgtenant() {
	{
		pgt_ini_head "$PGT_PORT" trust
		printf 'default_pool_size = %s\nmax_client_conn = %s\n' "$POOL_SIZE" "$MAX_CONN"
		pgt_ini_backend "$POOL_SIZE"
		pgt_ini_tenant "$TENANT" database "dbname = $DB" "max_client_conn = $MAX_CONN"
	} >"$DIR/pgtenant.ini"
	launch_pgtenant pgtenant "$DIR/pgtenant.ini" "$DIR/pgtenant.log" &&
		await_target pgtenant "$DIR/pgtenant.log" "$PGT_PORT" "$DB_USER" "$TENANT" &&
		await_query pgtenant "$DIR/pgtenant.log" "$PGT_PORT" "$DB_USER" "$TENANT"
}

start_pgbouncer() {
	{
		printf '[databases]\n%s = host=%s port=%s dbname=%s\n' "$DB" "$(backend_host)" "$PG_PORT" "$DB"
		pgb_ini_head "$PGB_PORT" "$POOL_SIZE" "$MAX_CONN" trust
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

# ACTIVE pgbench clients through a pooler that holds `held` idle ones. Sets A_TPS,
# A_TX, A_FAILED (failed transactions), A_ABORTED (clients pgbench aborted), A_LOGINS
# (failed logins), A_RC (pgbench's exit status), A_PEAK and A_AFTER (the pooler's VmRSS,
# kB, peak while pgbench ran and after it; "" when gone).
run_active() { # target port db held
	local name=$1 port=$2 db=$3 held=$4 log=$DIR/$1.pgbench.log r
	note "$name: $ACTIVE active clients (pgbench -S) for ${ACTIVE_DURATION}s beside $held idle ones"
	A_RC=0 A_PEAK=0
	timeout -k 5 $((ACTIVE_DURATION + 300)) "$PG_BIN/pgbench" -n -S -c "$ACTIVE" -j "$ACTIVE_JOBS" \
		-T "$ACTIVE_DURATION" -h 127.0.0.1 -p "$port" -U "$DB_USER" "$db" >"$log" 2>&1 &
	PID[pgbench]=$!
	while kill -0 "${PID[pgbench]}" 2>/dev/null; do
		if r=$(rss_kb "${PID[$name]}" 2>/dev/null) && [ -n "$r" ] && [ "$r" -gt "$A_PEAK" ]; then A_PEAK=$r; fi
		sleep 0.5
	done
	wait "${PID[pgbench]}" || A_RC=$?
	unset 'PID[pgbench]'
	A_AFTER=$(rss_kb "${PID[$name]}" 2>/dev/null) || A_AFTER=""
	[ "$A_PEAK" -gt 0 ] || A_PEAK=""
	A_TPS=$(awk '/^tps = / { printf "%.1f", $3; exit }' "$log")
	A_TX=$(awk -F': ' '/^number of transactions actually processed/ { print $2; exit }' "$log")
	A_TX=${A_TX%%/*}
	A_FAILED=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$log" | head -n 1)
	A_ABORTED=$(grep -c 'client [0-9]* aborted' "$log" || true)
	A_LOGINS=$(grep -c 'could not create connection' "$log" || true)
	if [ "$A_RC" != 0 ] || [ -z "$A_TPS" ]; then
		note "$name: pgbench exit $A_RC (log: $log)"
		{ grep -m 3 -iE 'error|fatal|abort' "$log" || tail -n 3 "$log"; } | sed 's/^/    /' >&2
	fi
}

declare -A RES=() A_TPS_OF=() A_ERR_OF=() A_PEAK_OF=() ACTIVE_DONE=()
any_failed=0
measure() { # target port db clients: that many idle clients; with the largest count, the active ones too
	local name=$1 port=$2 db=$3 n=$4 before after closed fifo=$DIR/$1.stdin clog=$DIR/$1-$4.clients
	local line ok lost active=0 errors _
	before=$(rss_kb "${PID[$name]}")
	note "$name: RSS $before kB; opening $n idle clients"
	rm -f "$fifo"
	mkfifo "$fifo"
	timeout $((CONNECT_TIMEOUT + SETTLE + ACTIVE_DURATION + 400)) "$PYTHON" "$DIR/idle.py" "$port" "$n" "$DB_USER" "$db" \
		"$CONNECT_TIMEOUT" "$IDLE_QUERY" <"$fifo" >"$clog" 2>"$clog.err" &
	PID[clients]=$!
	exec 7>"$fifo" # the driver holds its clients until this closes
	for _ in $(seq $((CONNECT_TIMEOUT * 10 + 100))); do
		grep -q '^ready' "$clog" 2>/dev/null && break
		kill -0 "${PID[clients]}" 2>/dev/null || break
		sleep 0.1
	done
	line=$(grep '^ready' "$clog" || echo "ready FAILED")
	ok=$(field "$line" ok)
	sed 's/^/    /' "$clog.err" >&2
	sleep "$SETTLE"
	after=$(rss_kb "${PID[$name]}" 2>/dev/null) || after=""
	if [ "$n" = "$MAX_CLIENTS" ] && [ "$ACTIVE" -gt 0 ] && [ -z "${ACTIVE_DONE[$name]:-}" ]; then
		ACTIVE_DONE[$name]=1
		active=1
		if [ -n "$after" ]; then
			run_active "$name" "$port" "$db" "${ok:-0}"
		else
			A_RC=- A_TPS="" A_TX="" A_FAILED="" A_ABORTED=0 A_LOGINS=0 A_PEAK="" A_AFTER=""
		fi
	fi
	exec 7>&-
	wait "${PID[clients]}" || true
	unset "PID[clients]"
	sleep 1
	closed=$(rss_kb "${PID[$name]}" 2>/dev/null) || closed=""
	lost=$(sed -n 's/^closed lost=\([0-9]*\)$/\1/p' "$clog")
	out "$name $n: ${line#ready } rss_before_kb=$before rss_idle_kb=${after:-?} rss_after_close_kb=${closed:-?} $(grep '^closed' "$clog" || true)"
	if [ -z "$after" ] || [ "$ok" != "$n" ] || [ "$lost" != 0 ]; then
		any_failed=1
		note "$name: not every client logged in and stayed idle (log: $DIR/$name.log)"
		tail -n 5 "$DIR/$name.log" >&2
	fi
	if [ -n "$after" ]; then
		RES["$n $name"]=$(awk -v a="$after" -v b="$before" -v n="${ok:-0}" \
			'BEGIN { if (n > 0) printf "%.2f", (a - b) / n }')
	fi
	if [ "$active" = 1 ]; then
		# the held clients that failed to log in or were ended count as errors, as
		# (when the driver says nothing of them) all of them do
		errors=$((${A_FAILED:-0} + A_ABORTED + A_LOGINS + n - ${ok:-0} + ${lost:-${ok:-0}}))
		[ -n "$A_TPS" ] && [ "$A_RC" = 0 ] || [ "$errors" -gt 0 ] || errors=1 # pgbench failed without saying why
		out "$name active: clients=$ACTIVE held=${ok:-0} tps=${A_TPS:-FAILED} transactions=${A_TX:-?} failed_tx=${A_FAILED:-?} aborted_clients=$A_ABORTED failed_logins=$((A_LOGINS + n - ${ok:-0})) idle_lost=${lost:-?} errors=$errors rss_peak_kb=${A_PEAK:-?} rss_after_kb=${A_AFTER:-?}"
		[ "$errors" = 0 ] || any_failed=1
		A_ERR_OF[$name]=$errors
		if [ -n "$A_TPS" ]; then A_TPS_OF[$name]=$A_TPS; fi
		if [ -n "$A_PEAK" ]; then A_PEAK_OF[$name]=$A_PEAK; fi
	fi
}

out_header "pgtenant idle-client benchmark"
out "idle clients: ${CLIENTS// /, } (logged in, auth_type = trust, transaction mode$([ "$IDLE_QUERY" = 0 ] || echo ", $IDLE_QUERY x SELECT 1 each")), ${SETTLE}s idle, a fresh pooler for each count; open-file limit $(ulimit -n)"
if [ "$ACTIVE" -gt 0 ]; then
	out "then $ACTIVE active clients beside $MAX_CLIENTS held idle: pgbench -n -S -c $ACTIVE -j $ACTIVE_JOBS -T $ACTIVE_DURATION, scale $SCALE, pool size $POOL_SIZE; max_client_conn $MAX_CONN"
fi
out ""
for n in $CLIENTS; do
	for t in $TARGETS; do
		case $t in
			pgtenant)
				if start_pgtenant; then measure pgtenant "$PGT_PORT" "$TENANT" "$n"; else any_failed=1; fi
				stop_target pgtenant
				;;
			pgbouncer)
				if start_pgbouncer; then measure pgbouncer "$PGB_PORT" "$DB" "$n"; else any_failed=1; fi
				stop_target pgbouncer
				;;
			*) die "unknown target $t" ;;
		esac
	done
done

cell() { echo "${1:-FAILED}"; }
out ""
out "kB of RSS per idle client ((idle - before) / clients logged in)"
hdr=$(printf '%-8s' clients)
for t in $TARGETS; do hdr+=$(printf ' %10s' "$t"); done
hdr+=$(printf ' %8s' pgt/pgb)
out "$hdr"
for n in $CLIENTS; do
	row=$(printf '%-8s' "$n")
	for t in $TARGETS; do
		row+=$(printf ' %10s' "$(cell "${RES["$n $t"]:-}")")
		if [ -n "${RES["$n $t"]:-}" ]; then summary "idle.kb.$n.$t" "${RES["$n $t"]}"; fi
	done
	row+=$(printf ' %8s' "$(ratio "${RES["$n pgtenant"]:-}" "${RES["$n pgbouncer"]:-}")")
	out "$row"
done
if [ "$ACTIVE" -gt 0 ]; then
	out ""
	out "$MAX_CLIENTS idle clients held, $ACTIVE active (pgbench -S, ${ACTIVE_DURATION}s)"
	out "$(printf '%-10s %10s %8s %13s' pooler tps errors rss_peak_kb)"
	summary idle.active.clients "$ACTIVE"
	summary idle.active.held "$MAX_CLIENTS"
	for t in $TARGETS; do
		if [ -z "${ACTIVE_DONE[$t]:-}" ]; then
			out "$(printf '%-10s %10s' "$t" FAILED)"
			continue
		fi
		out "$(printf '%-10s %10s %8s %13s' "$t" "$(cell "${A_TPS_OF[$t]:-}")" "${A_ERR_OF[$t]}" "${A_PEAK_OF[$t]:-?}")"
		if [ -n "${A_TPS_OF[$t]:-}" ]; then summary "idle.active.tps.$t" "${A_TPS_OF[$t]}"; fi
		summary "idle.active.errors.$t" "${A_ERR_OF[$t]}"
	done
	out "errors: failed or aborted pgbench transactions and clients, failed logins (active and held),"
	out "        held idle clients the pooler ended; 0 is the target"
fi
note "results written to $RESULT"
exit "$any_failed"
