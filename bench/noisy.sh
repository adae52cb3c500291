#!/bin/bash
# shellcheck disable=SC2317  # functions run from traps look unreachable
# pgtenant noisy-neighbour benchmark: the latency of a quiet tenant B (B_CLIENTS clients
# looping B_SQL, default `SELECT 1`) alone, and next to a noisy tenant A (A_CLIENTS = 50
# clients looping A_SQL, default `SELECT pg_sleep(0.01)`, as fast as they can):
#
#  - through pgtenant: A and B are schema tenants of one backend pool of POOL_SIZE (10);
#    A may hold at most A_POOL_SIZE (6) of it, and waiting clients are served in weighted
#    round-robin over tenants, so B keeps finding a free connection;
#  - through PgBouncer (Debian's /usr/sbin/pgbouncer): A and B in one pool of POOL_SIZE
#    (one [databases] entry), served first come, first served.
#
# A and B are separate driver processes (asyncio python3-psycopg), so A's load does not
# slow B's measuring loop. Each phase runs PHASE seconds. The table shows B's latency
# (mean, p50, p95, p99 in ms) alone and with A, the ratio, and A's throughput.
#
# Everything runs on 127.0.0.1 in a temporary directory, started and stopped here: a
# throwaway PostgreSQL, pgtenant and PgBouncer. As root, PostgreSQL and PgBouncer run as
# `postgres`.
#
# Environment (defaults in brackets):
#   PHASE [8]  A_CLIENTS [50]  B_CLIENTS [2]  POOL_SIZE [10]  A_POOL_SIZE [6]
#   A_SQL ["SELECT pg_sleep(0.01)"]  B_SQL ["SELECT 1"]  TARGETS ["pgtenant pgbouncer"]
#   PG_PORT [25452] PGT_PORT [26452] PGB_PORT [26453]
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]  PGBOUNCER [/usr/sbin/pgbouncer]
#   BENCH_KEEP [0]  1: keep the temporary directory (logs, configs)
# Results are printed and written to bench/results/noisy-<timestamp>.txt.
# Exit status: 0 when every phase ran without errors, 1 otherwise, 2 on setup failure.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)

PHASE=${PHASE:-8}
A_CLIENTS=${A_CLIENTS:-50}
B_CLIENTS=${B_CLIENTS:-2}
POOL_SIZE=${POOL_SIZE:-10}
A_POOL_SIZE=${A_POOL_SIZE:-6}
A_SQL=${A_SQL:-"SELECT pg_sleep(0.01)"}
B_SQL=${B_SQL:-"SELECT 1"}
TARGETS=${TARGETS:-"pgtenant pgbouncer"}
PG_PORT=${PG_PORT:-25452}
PGT_PORT=${PGT_PORT:-26452}
PGB_PORT=${PGB_PORT:-26453}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGTENANT=${PGTENANT:-$ROOT/pgtenant}
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}
PYTHON=${PYTHON:-/usr/bin/python3}
BENCH_KEEP=${BENCH_KEEP:-0}

DB=bench
DB_USER=bench
DB_PASS=benchpass
export PGPASSWORD=$DB_PASS PGCONNECT_TIMEOUT=10

STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS_DIR=$ROOT/bench/results
RESULT=$RESULTS_DIR/noisy-$STAMP.txt
mkdir -p "$RESULTS_DIR"
: >"$RESULT"

out() { printf '%s\n' "$*" | tee -a "$RESULT"; }
note() { printf 'bench: %s\n' "$*" | tee -a "$RESULT" >&2; }
die() { note "error: $*"; exit 2; }

# ---------------------------------------------------------------- processes (as bench/run.sh)

DIR=""
PGT_PID=""
PGB_PID=""
PG_STARTED=0

if [ "$(id -u)" = 0 ]; then
	RUN_USER=postgres
	id "$RUN_USER" >/dev/null 2>&1 ||
		useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh "$RUN_USER"
	as_pg() { (cd / && runuser -u "$RUN_USER" -- "$@"); }
	AS_PG_EXEC=(setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups --)
else
	RUN_USER=$(id -un)
	as_pg() { (cd / && "$@"); }
	AS_PG_EXEC=()
fi

stop_pid() { # pid: TERM, then KILL after 5 s
	local pid=$1 _
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
	set +e
	[ -n "$PGT_PID" ] && stop_pid "$PGT_PID"
	[ -n "$PGB_PID" ] && stop_pid "$PGB_PID"
	[ "$PG_STARTED" = 1 ] && as_pg "$PG_BIN/pg_ctl" stop -D "$DIR/pgdata" -m immediate -w >/dev/null 2>&1
	if [ -n "$DIR" ]; then
		if [ "$BENCH_KEEP" = 1 ]; then note "kept $DIR"; else rm -rf "$DIR"; fi
	fi
}
trap cleanup EXIT
trap 'note "interrupted"; exit 130' INT TERM

port_busy() { [ -n "$(ss -Htan "sport = :$1" 2>/dev/null)" ]; } # listening, or bound by a client

wait_ready() { # port pid user db: up to 10 s for the port to answer a startup packet
	local _
	for _ in $(seq 100); do
		[ -n "$2" ] && ! kill -0 "$2" 2>/dev/null && return 1
		"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U "$3" -d "$4" -t 1 && return 0
		sleep 0.1
	done
	return 1
}

# ---------------------------------------------------------------- setup

"$ROOT/scripts/deps.sh" || die "missing packages (see above)"
for p in psql pg_isready initdb pg_ctl; do
	[ -x "$PG_BIN/$p" ] || die "$PG_BIN/$p not found (install postgresql-15, or set PG_BIN)"
done
"$PYTHON" -c 'import psycopg' 2>/dev/null || die "$PYTHON has no psycopg (apt-get install python3-psycopg)"
for p in $PG_PORT $PGT_PORT $PGB_PORT; do
	port_busy "$p" && die "port $p is already in use (set PG_PORT, PGT_PORT or PGB_PORT)"
done
PG_MAX_CONN=100

DIR=$(mktemp -d /tmp/pgtenant-bench-noisy.XXXXXX)
chmod 755 "$DIR"
mkdir "$DIR/pgdata" "$DIR/run"
[ "$(id -u)" = 0 ] && chown "$RUN_USER": "$DIR/pgdata" "$DIR/run"

note "PostgreSQL on 127.0.0.1:$PG_PORT (max_connections $PG_MAX_CONN) in $DIR"
as_pg "$PG_BIN/initdb" -D "$DIR/pgdata" -U postgres --encoding=UTF8 --locale=C \
	--auth-local=peer --auth-host=scram-sha-256 >/dev/null
cat >>"$DIR/pgdata/postgresql.conf" <<EOF

# pgtenant bench: throwaway, speed over durability
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$DIR/run'
max_connections = $PG_MAX_CONN
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
password_encryption = 'scram-sha-256'
EOF
PG_STARTED=1
as_pg "$PG_BIN/pg_ctl" start -D "$DIR/pgdata" -l "$DIR/run/postgresql.log" -w -t 60 >/dev/null ||
	{ tail -n 20 "$DIR/run/postgresql.log" >&2; die "PostgreSQL did not start"; }
as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR/run" -p "$PG_PORT" -U postgres -d postgres \
	-c "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASS'" -c "CREATE DATABASE $DB OWNER $DB_USER" >/dev/null

as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR/run" -p "$PG_PORT" -U postgres -d "$DB" \
	-c "CREATE SCHEMA s_a AUTHORIZATION $DB_USER" -c "CREATE SCHEMA s_b AUTHORIZATION $DB_USER" >/dev/null

printf '"%s" "%s"\n' "$DB_USER" "$DB_PASS" >"$DIR/userlist.txt"
chmod 644 "$DIR/userlist.txt"

# ---------------------------------------------------------------- the poolers

start_pgtenant() {
	[ -x "$PGTENANT" ] || { note "pgtenant: $PGTENANT not found (make pgtenant)"; return 1; }
	cat >"$DIR/pgtenant.ini" <<-EOF
		[pgtenant]
		listen_addr = 127.0.0.1
		listen_port = $PGT_PORT
		pool_mode = transaction
		auth_type = scram-sha-256
		auth_file = $DIR/userlist.txt
		tenant_users = *
		tenant_from = database
		log_connections = no
		log_disconnections = no
		shutdown_timeout = 2s

		[backend pg]
		host = 127.0.0.1
		port = $PG_PORT
		user = $DB_USER
		password = $DB_PASS
		dbname = $DB
		pool_size = $POOL_SIZE

		[tenant a]
		mode = schema
		backend = pg
		schema = s_a
		pool_size = $A_POOL_SIZE

		[tenant b]
		mode = schema
		backend = pg
		schema = s_b
		pool_size = $POOL_SIZE
	EOF
	timeout 30 "$PGTENANT" --check "$DIR/pgtenant.ini" >"$DIR/pgtenant.log" 2>&1 ||
		{ note "pgtenant --check rejected the configuration:"; tail -n 20 "$DIR/pgtenant.log" >&2; return 1; }
	"$PGTENANT" "$DIR/pgtenant.ini" >>"$DIR/pgtenant.log" 2>&1 &
	PGT_PID=$!
	wait_ready "$PGT_PORT" "$PGT_PID" "$DB_USER" a ||
		{ note "pgtenant did not start; its log:"; tail -n 20 "$DIR/pgtenant.log" >&2; return 1; }
}

start_pgbouncer() {
	[ -x "$PGBOUNCER" ] || { note "PgBouncer: $PGBOUNCER not found"; return 1; }
	cat >"$DIR/pgbouncer.ini" <<-EOF
		[databases]
		shared = host=127.0.0.1 port=$PG_PORT dbname=$DB

		[pgbouncer]
		listen_addr = 127.0.0.1
		listen_port = $PGB_PORT
		unix_socket_dir =
		auth_type = scram-sha-256
		auth_file = $DIR/userlist.txt
		pool_mode = transaction
		default_pool_size = $POOL_SIZE
		max_client_conn = 1000
		log_connections = 0
		log_disconnections = 0
	EOF
	"${AS_PG_EXEC[@]}" "$PGBOUNCER" "$DIR/pgbouncer.ini" >"$DIR/pgbouncer.log" 2>&1 &
	PGB_PID=$!
	wait_ready "$PGB_PORT" "$PGB_PID" "$DB_USER" shared ||
		{ note "PgBouncer did not start; its log:"; tail -n 20 "$DIR/pgbouncer.log" >&2; return 1; }
}

# ---------------------------------------------------------------- the load

cat >"$DIR/driver.py" <<'EOF'
"""CLIENTS clients on database DB loop SQL for DURATION s (after all have
connected); prints key=value: statements per second and latency in ms."""
import asyncio, os, sys, time
import psycopg

port, db, clients, duration, sql = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
user, password = os.environ["BENCH_USER"], os.environ["PGPASSWORD"]
lat, errors, first = [], [0], []
state = {"run": False, "stop": False}

async def client(ready):
    conn = await psycopg.AsyncConnection.connect(
        f"host=127.0.0.1 port={port} dbname={db} user={user} password={password} "
        "sslmode=disable gssencmode=disable connect_timeout=30", autocommit=True)
    conn.prepare_threshold = None
    ready.release()
    try:
        while not state["run"]:
            await asyncio.sleep(0.01)
        while not state["stop"]:
            t0 = time.monotonic()
            try:
                await (await conn.execute(sql)).fetchall()
                lat.append(time.monotonic() - t0)
            except Exception as e:
                errors[0] += 1
                if len(first) < 3:
                    first.append(str(e))
    finally:
        await conn.close()

async def main():
    ready = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(client(ready)) for _ in range(clients)]
    for _ in tasks:
        await ready.acquire()
    print("ready", file=sys.stderr, flush=True)
    state["run"] = True
    t0 = time.monotonic()
    await asyncio.sleep(duration)
    state["stop"] = True
    n, el = len(lat), time.monotonic() - t0
    await asyncio.gather(*tasks, return_exceptions=True)
    s = sorted(lat) or [0.0]
    pct = lambda q: s[min(len(s) - 1, int(len(s) * q))] * 1000
    print(f"qps={n / el:.1f} n={n} errors={errors[0]} mean_ms={sum(s) / len(s) * 1000:.2f} "
          f"p50_ms={pct(0.5):.2f} p95_ms={pct(0.95):.2f} p99_ms={pct(0.99):.2f}")
    for e in first:
        print("  error:", e, file=sys.stderr)

asyncio.run(main())
EOF

drive() { # port db clients duration sql -> key=value line
	BENCH_USER=$DB_USER timeout 120 "$PYTHON" "$DIR/driver.py" "$@"
}

field() { # line key -> value
	sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"
}

declare -A ALONE=() WITH=() NOISY=()
any_failed=0
run_target() { # name port db_of_A db_of_B
	local name=$1 port=$2 da=$3 db=$4 a_pid l _
	note "$name: B alone (${PHASE}s)"
	if ! ALONE[$name]=$(drive "$port" "$db" "$B_CLIENTS" "$PHASE" "$B_SQL" 2>"$DIR/$name-b1.err"); then
		note "$name: B's driver failed"; sed 's/^/    /' "$DIR/$name-b1.err" >&2; any_failed=1; return
	fi
	note "$name: B next to A's $A_CLIENTS clients (${PHASE}s)"
	# A starts first and runs a little longer than B's phase, so B measures only under load.
	drive "$port" "$da" "$A_CLIENTS" $((PHASE + 3)) "$A_SQL" >"$DIR/$name-a.out" 2>"$DIR/$name-a.err" &
	a_pid=$!
	for _ in $(seq 100); do grep -q ready "$DIR/$name-a.err" 2>/dev/null && break; sleep 0.1; done
	sleep 1
	if ! WITH[$name]=$(drive "$port" "$db" "$B_CLIENTS" "$PHASE" "$B_SQL" 2>"$DIR/$name-b2.err"); then
		note "$name: B's driver failed"; sed 's/^/    /' "$DIR/$name-b2.err" >&2; any_failed=1
	fi
	wait "$a_pid" || { note "$name: A's driver failed"; sed 's/^/    /' "$DIR/$name-a.err" >&2; any_failed=1; }
	NOISY[$name]=$(cat "$DIR/$name-a.out")
	out "$name B alone:  ${ALONE[$name]}"
	out "$name B with A: ${WITH[$name]:-FAILED}"
	out "$name A:        ${NOISY[$name]:-FAILED}"
	for l in "${ALONE[$name]}" "${WITH[$name]:-}" "${NOISY[$name]:-}"; do
		[ "$(field "$l" errors)" = 0 ] || any_failed=1
	done
}

out "pgtenant noisy-neighbour benchmark $STAMP"
out "host: $(uname -srm), $(nproc) CPUs; $("$PG_BIN/postgres" --version); $("$PGBOUNCER" --version 2>/dev/null | head -n1)"
out "pgtenant: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
out "A: $A_CLIENTS clients of '$A_SQL'; B: $B_CLIENTS clients of '$B_SQL'; pool of $POOL_SIZE (pgtenant: A at most $A_POOL_SIZE)"
out ""
for t in $TARGETS; do
	case $t in
		pgtenant)
			if start_pgtenant; then run_target pgtenant "$PGT_PORT" a b; else any_failed=1; fi
			[ -n "$PGT_PID" ] && { stop_pid "$PGT_PID"; PGT_PID=""; }
			;;
		pgbouncer)
			if start_pgbouncer; then run_target pgbouncer "$PGB_PORT" shared shared; else any_failed=1; fi
			[ -n "$PGB_PID" ] && { stop_pid "$PGB_PID"; PGB_PID=""; }
			;;
		*) die "unknown target $t" ;;
	esac
done

out ""
out "B's latency in ms (alone, then next to A), and A's throughput"
hdr=$(printf '%-10s %10s %10s %10s %10s %10s %8s %10s' pooler alone_mean with_mean with_p50 with_p95 with_p99 ratio A_qps)
out "$hdr"
out "$(printf '%s' "$hdr" | tr -c '\n' -)"
for t in $TARGETS; do
	a=${ALONE[$t]:-} w=${WITH[$t]:-} n=${NOISY[$t]:-}
	if [ -z "$a" ] || [ -z "$w" ]; then
		out "$(printf '%-10s %10s' "$t" FAILED)"
		continue
	fi
	out "$(printf '%-10s %10s %10s %10s %10s %10s %8s %10s' "$t" "$(field "$a" mean_ms)" "$(field "$w" mean_ms)" \
		"$(field "$w" p50_ms)" "$(field "$w" p95_ms)" "$(field "$w" p99_ms)" \
		"$(awk -v a="$(field "$a" mean_ms)" -v w="$(field "$w" mean_ms)" 'BEGIN { printf "%.1fx", (a > 0 ? w / a : 0) }')" \
		"$(field "$n" qps)")"
done
out ""
[ "$(nproc)" -le 4 ] && out "NOTE: $(nproc) CPUs shared by the drivers, the pooler and PostgreSQL."
note "results written to $RESULT"
exit "$any_failed"
