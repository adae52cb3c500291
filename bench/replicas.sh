#!/bin/bash
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
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

defaults \
	REPLICAS=2 DURATION=10 CLIENTS=20 JOBS=2 SCALE=10 POOL_SIZE=20 PG_PORT=25542 \
	PGT_PORT=26542 STATS_WAIT=11 READ_YOUR_WRITES=0
bench_results replicas

sql_on() { # port sql: one value, as the bench role over TCP
	"$PG_BIN/psql" -X -A -t -q -h 127.0.0.1 -p "$1" -U "$DB_USER" -d "$DB" -c "$2"
}

# ---------------------------------------------------------------- setup

bench_deps psql pg_isready initdb pg_ctl pg_basebackup pgbench
[ -x "$PGTENANT" ] || die "$PGTENANT not found (make pgtenant)"
REP_PORTS=()
for i in $(seq 1 "$REPLICAS"); do REP_PORTS+=($((PG_PORT + i))); done
check_ports "$PG_PORT" "${REP_PORTS[@]}" "$PGT_PORT"

bench_workdir replicas primary run
note "primary on 127.0.0.1:$PG_PORT, replicas on ${REP_PORTS[*]}, in $DIR"
pg_init "$DIR/primary" "$PG_PORT" 200 128MB
cat >>"$DIR/primary/postgresql.conf" <<EOF
wal_level = replica
max_wal_senders = $((REPLICAS + 4))
hot_standby = on
hot_standby_feedback = on
EOF
pg_start PostgreSQL "$DIR/primary" "$DIR/run/primary.log"
pg_create_bench_db "$PG_PORT"
pgbench_init "$PG_PORT" "$SCALE" "$DIR/run/init.log"

for i in $(seq 1 "$REPLICAS"); do
	port=${REP_PORTS[$((i - 1))]}
	note "replica $i: pg_basebackup, port $port"
	mkdir -m 700 "$DIR/replica$i"
	[ "$(id -u)" = 0 ] && chown "$RUN_USER": "$DIR/replica$i"
	as_pg "$PG_BIN/pg_basebackup" -h "$DIR/run" -p "$PG_PORT" -U postgres -D "$DIR/replica$i" \
		-R -X stream -c fast --no-sync -C -S "bench_replica_$i" >/dev/null ||
		die "pg_basebackup for replica $i failed"
	pg_start "replica $i" "$DIR/replica$i" "$DIR/run/replica$i.log" -o "-p $port"
	[ "$(sql_on "$port" "select pg_is_in_recovery()")" = t ] || die "replica $i is not in recovery"
done

write_userlist
REPLICA_LIST=$(printf '127.0.0.1:%s, ' "${REP_PORTS[@]}")
REPLICA_LIST=${REPLICA_LIST%, }
{
	pgt_ini_head "$PGT_PORT"
	cat <<-EOF
		tenant_from = database
		read_routing = off
		health_check_period = 1s
		max_replica_lag = 5s
		read_your_writes = $READ_YOUR_WRITES
	EOF
	pgt_ini_backend "$POOL_SIZE"
	printf 'replicas = %s\nreplica_pool_size = %s\n' "$REPLICA_LIST" "$POOL_SIZE"
	pgt_ini_tenant t_off database "dbname = $DB" "pool_size = $POOL_SIZE" "read_routing = off"
	pgt_ini_tenant t_auto database "dbname = $DB" "pool_size = $POOL_SIZE" "read_routing = auto"
} >"$DIR/pgtenant.ini"
launch_pgtenant pgtenant "$DIR/pgtenant.ini" "$DIR/run/pgtenant.log" || die "pgtenant did not start"
await_target pgtenant "$DIR/run/pgtenant.log" "$PGT_PORT" "$DB_USER" t_off || die "pgtenant did not start"
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
if ! kill -0 "${PID[pgtenant]}" 2>/dev/null; then
	note "pgtenant died during the runs"
	tail -n 20 "$DIR/run/pgtenant.log" >&2
	FAILED=1
fi
exit "$FAILED"
