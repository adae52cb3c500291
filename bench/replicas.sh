#!/bin/bash
# shellcheck disable=SC2317  # functions run from traps look unreachable
# pgtenant read-replica benchmark: a primary and REPLICAS streaming replicas (default 2),
# pgbench select-only and a 90/10 read/write mix, each run
#  - straight to the primary (direct), and (select-only) straight to replica 1 (direct-r1),
#  - through pgtenant with read_routing = off (tenant t_off: everything on the primary),
#  - through pgtenant with read_routing = auto (tenant t_auto: reads to the replicas).
# For every run: tps, failed transactions, and the share of transactions each server
# committed (pg_stat_database.xact_commit before/after, so the split is measured on the
# servers, not assumed).
#
# Everything runs on 127.0.0.1 in a temporary directory, started and stopped by this
# script. As root, PostgreSQL runs as `postgres`.
#
# Environment (defaults in brackets):
#   REPLICAS [2]  DURATION [10]  CLIENTS [20]  JOBS [2]  SCALE [10]  POOL_SIZE [20]
#   PG_PORT [25542] (replicas PG_PORT+1..)  PGT_PORT [26542]
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]
#   READ_YOUR_WRITES [0]  pgtenant's read_your_writes. 0 here: a pgbench client of the
#                   mix writes every ~10th transaction, so with it on (the product default,
#                   = max_replica_lag) its reads would all stay on the primary
#   STATS_WAIT [11] seconds to wait after a run before reading pg_stat_database
#   BENCH_KEEP [0]  1: keep the temporary directory (logs, configs)
# Results are printed and written to bench/results/replicas-<timestamp>.txt.
# Exit status: 0 when every run succeeded without failed transactions, 1 otherwise,
# 2 on setup failure.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)

REPLICAS=${REPLICAS:-2}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-20}
JOBS=${JOBS:-2}
SCALE=${SCALE:-10}
POOL_SIZE=${POOL_SIZE:-20}
PG_PORT=${PG_PORT:-25542}
PGT_PORT=${PGT_PORT:-26542}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGTENANT=${PGTENANT:-$ROOT/pgtenant}
BENCH_KEEP=${BENCH_KEEP:-0}
STATS_WAIT=${STATS_WAIT:-11}
READ_YOUR_WRITES=${READ_YOUR_WRITES:-0}

DB=bench
DB_USER=bench
DB_PASS=benchpass
export PGPASSWORD=$DB_PASS PGCONNECT_TIMEOUT=10

STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS_DIR=$ROOT/bench/results
RESULT=$RESULTS_DIR/replicas-$STAMP.txt
mkdir -p "$RESULTS_DIR"
: >"$RESULT"

out() { printf '%s\n' "$*" | tee -a "$RESULT"; }
note() { printf 'bench: %s\n' "$*" | tee -a "$RESULT" >&2; }
die() { note "error: $*"; exit 2; }

if [ "$(id -u)" = 0 ]; then
	RUN_USER=postgres
	id "$RUN_USER" >/dev/null 2>&1 || die "running as root but there is no postgres user"
	as_pg() { (cd / && runuser -u "$RUN_USER" -- "$@"); }
else
	RUN_USER=$(id -un)
	as_pg() { (cd / && "$@"); }
fi

DIR=""
PGT_PID=""
STARTED=() # data directories of running clusters

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
	local d
	for d in "${STARTED[@]}"; do
		as_pg "$PG_BIN/pg_ctl" stop -D "$d" -m immediate -w >/dev/null 2>&1
	done
	if [ -n "$DIR" ]; then
		if [ "$BENCH_KEEP" = 1 ]; then note "kept $DIR"; else rm -rf "$DIR"; fi
	fi
}
trap cleanup EXIT
trap 'note "interrupted"; exit 130' INT TERM

port_busy() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; } # listening

wait_ready() { # port pid user db
	local _
	for _ in $(seq 100); do
		[ -n "$2" ] && ! kill -0 "$2" 2>/dev/null && return 1
		"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U "$3" -d "$4" -t 1 && return 0
		sleep 0.1
	done
	return 1
}

sql_on() { # port sql: one value, as the bench role over TCP
	"$PG_BIN/psql" -X -A -t -q -h 127.0.0.1 -p "$1" -U "$DB_USER" -d "$DB" -c "$2"
}

# ---------------------------------------------------------------- setup

for p in psql pg_isready initdb pg_ctl pg_basebackup pgbench; do
	[ -x "$PG_BIN/$p" ] || die "$PG_BIN/$p not found (install postgresql-15, or set PG_BIN)"
done
[ -x "$PGTENANT" ] || die "$PGTENANT not found (make pgtenant)"
REP_PORTS=()
for i in $(seq 1 "$REPLICAS"); do REP_PORTS+=($((PG_PORT + i))); done
for p in $PG_PORT "${REP_PORTS[@]}" $PGT_PORT; do
	port_busy "$p" && die "port $p is already in use (set PG_PORT or PGT_PORT)"
done

DIR=$(mktemp -d /tmp/pgtenant-bench-replicas.XXXXXX)
chmod 755 "$DIR"
mkdir "$DIR/primary" "$DIR/run"
[ "$(id -u)" = 0 ] && chown "$RUN_USER": "$DIR/primary" "$DIR/run"

note "primary on 127.0.0.1:$PG_PORT, replicas on ${REP_PORTS[*]}, in $DIR"
as_pg "$PG_BIN/initdb" -D "$DIR/primary" -U postgres --encoding=UTF8 --locale=C \
	--auth-local=peer --auth-host=scram-sha-256 >/dev/null
cat >>"$DIR/primary/postgresql.conf" <<EOF

# pgtenant bench: throwaway, speed over durability
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR/run'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 128MB
password_encryption = 'scram-sha-256'
wal_level = replica
max_wal_senders = $((REPLICAS + 4))
hot_standby = on
hot_standby_feedback = on
EOF
STARTED+=("$DIR/primary")
as_pg "$PG_BIN/pg_ctl" start -D "$DIR/primary" -l "$DIR/run/primary.log" -o "-p $PG_PORT" \
	-w -t 60 >/dev/null || { tail -n 20 "$DIR/run/primary.log" >&2; die "PostgreSQL did not start"; }
as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR/run" -p "$PG_PORT" -U postgres -d postgres \
	-c "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASS'" -c "CREATE DATABASE $DB OWNER $DB_USER" >/dev/null
note "pgbench -i -s $SCALE"
"$PG_BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" "$DB" >"$DIR/run/init.log" 2>&1 ||
	{ tail -n 20 "$DIR/run/init.log" >&2; die "pgbench -i failed"; }

for i in $(seq 1 "$REPLICAS"); do
	port=${REP_PORTS[$((i - 1))]}
	note "replica $i: pg_basebackup, port $port"
	mkdir -m 700 "$DIR/replica$i"
	[ "$(id -u)" = 0 ] && chown "$RUN_USER": "$DIR/replica$i"
	as_pg "$PG_BIN/pg_basebackup" -h "$DIR/run" -p "$PG_PORT" -U postgres -D "$DIR/replica$i" \
		-R -X stream -c fast --no-sync -C -S "bench_replica_$i" >/dev/null ||
		die "pg_basebackup for replica $i failed"
	STARTED+=("$DIR/replica$i")
	as_pg "$PG_BIN/pg_ctl" start -D "$DIR/replica$i" -l "$DIR/run/replica$i.log" -o "-p $port" \
		-w -t 60 >/dev/null || { tail -n 20 "$DIR/run/replica$i.log" >&2; die "replica $i did not start"; }
	[ "$(sql_on "$port" "select pg_is_in_recovery()")" = t ] || die "replica $i is not in recovery"
done

printf '"%s" "%s"\n' "$DB_USER" "$DB_PASS" >"$DIR/userlist.txt"
REPLICA_LIST=$(printf '127.0.0.1:%s, ' "${REP_PORTS[@]}")
REPLICA_LIST=${REPLICA_LIST%, }
cat >"$DIR/pgtenant.ini" <<EOF
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
read_routing = off
health_check_period = 1s
max_replica_lag = 5s
read_your_writes = $READ_YOUR_WRITES

[backend pg]
host = 127.0.0.1
port = $PG_PORT
dbname = $DB
user = $DB_USER
password = $DB_PASS
pool_size = $POOL_SIZE
replicas = $REPLICA_LIST
replica_pool_size = $POOL_SIZE

[tenant t_off]
mode = database
backend = pg
dbname = $DB
pool_size = $POOL_SIZE
read_routing = off

[tenant t_auto]
mode = database
backend = pg
dbname = $DB
pool_size = $POOL_SIZE
read_routing = auto
EOF
"$PGTENANT" --check "$DIR/pgtenant.ini" >/dev/null || die "pgtenant --check failed: $("$PGTENANT" --check "$DIR/pgtenant.ini" 2>&1)"
"$PGTENANT" "$DIR/pgtenant.ini" >"$DIR/run/pgtenant.log" 2>&1 &
PGT_PID=$!
wait_ready "$PGT_PORT" "$PGT_PID" "$DB_USER" t_off || { tail -n 20 "$DIR/run/pgtenant.log" >&2; die "pgtenant did not start"; }
sleep 2 # a health round or two: replicas up

# ---------------------------------------------------------------- runs

ALL_PORTS=("$PG_PORT" "${REP_PORTS[@]}")
commits() { # port: transactions committed in the bench database
	sql_on "$1" "select xact_commit from pg_stat_database where datname = '$DB'"
}

FAILED=0
out ""
out "pgtenant read replicas: $REPLICAS replicas, $CLIENTS clients, ${DURATION}s per run, scale $SCALE"
header=$(printf '%-14s %-9s %10s %8s' workload target tps failed)
header+=$(printf ' %9s' primary)
for i in $(seq 1 "$REPLICAS"); do header+=$(printf ' %9s' "replica$i"); done
out "$header"

run_one() { # workload target port dbname pgbench-args...
	local workload=$1 target=$2 port=$3 db=$4
	shift 4
	local before=() after=() p i
	for p in "${ALL_PORTS[@]}"; do before+=("$(commits "$p")"); done
	local log="$DIR/run/pgbench-$workload-$target.log" rc=0
	"$PG_BIN/pgbench" -n -T "$DURATION" -c "$CLIENTS" -j "$JOBS" -h 127.0.0.1 -p "$port" \
		-U "$DB_USER" "$@" "$db" >"$log" 2>&1 || rc=$?
	# An idle backend (pgtenant's pooled server connections) flushes its statistics to
	# pg_stat_database only after 10 s of idling (PGSTAT_IDLE_INTERVAL)
	sleep "$STATS_WAIT"
	for p in "${ALL_PORTS[@]}"; do after+=("$(commits "$p")"); done
	local tps failed total=0 deltas=()
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$log" | head -n1)
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$log" | head -n1)
	[ -n "$tps" ] || tps=-
	[ -n "$failed" ] || failed=-
	if [ "$rc" != 0 ] || [ "$failed" != 0 ]; then
		FAILED=1
		note "$workload/$target: pgbench exit $rc, failed $failed (log: $log)"
		tail -n 5 "$log" >&2
	fi
	for i in "${!ALL_PORTS[@]}"; do
		deltas+=($((after[i] - before[i])))
		total=$((total + after[i] - before[i]))
	done
	local line
	line=$(printf '%-14s %-9s %10s %8s' "$workload" "$target" "$tps" "$failed")
	for i in "${!deltas[@]}"; do
		if [ "$total" -gt 0 ]; then
			line+=$(printf ' %8s%%' "$((deltas[i] * 100 / total))")
		else
			line+=$(printf ' %9s' -)
		fi
	done
	out "$line"
}

for workload in select-only mixed-90-10; do
	case $workload in
	select-only) args=(-S) ;;
	mixed-90-10) args=(-b select-only@9 -b simple-update@1) ;;
	esac
	run_one "$workload" direct "$PG_PORT" "$DB" "${args[@]}"
	[ "$workload" = select-only ] && run_one "$workload" direct-r1 "${REP_PORTS[0]}" "$DB" "${args[@]}"
	run_one "$workload" pgt-off "$PGT_PORT" t_off "${args[@]}"
	run_one "$workload" pgt-auto "$PGT_PORT" t_auto "${args[@]}"
done

out ""
out "share columns: transactions each server committed during the run (its xact_commit delta)"
if ! kill -0 "$PGT_PID" 2>/dev/null; then
	note "pgtenant died during the runs"
	tail -n 20 "$DIR/run/pgtenant.log" >&2
	FAILED=1
fi
exit "$FAILED"
