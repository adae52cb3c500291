#!/bin/bash
# shellcheck disable=SC2153  # the settings are assigned by `defaults` (lib.sh)
# pgtenant instructions-per-transaction benchmark: user-space instructions each
# pooler spends on one pgbench -S transaction, counted by valgrind's callgrind
# (Ir), which does not depend on what else the machine is doing.
#
# For pgtenant, then PgBouncer (as `postgres` when run as root), both in
# transaction mode with a pool of POOL_SIZE: run the pooler under
# `valgrind --tool=callgrind`, wait until its port listens (found with ss, so
# no probe connection adds instructions), run
# `pgbench -n -S -M MODE -c CLIENTS -j 1 -t N` once with N = N1 and once with
# N = N2 (a fresh pooler each time), stop it, and read the total Ir. Startup,
# logins, server connections and shutdown cost the same in both runs, so
#   (Ir(N2) - Ir(N1)) / (CLIENTS * (N2 - N1))
# is the instructions per transaction. Kernel work (send/recv) is not counted:
# bench/run.sh's CPU per transaction covers it.
#
# PostgreSQL and both poolers use trust authentication here, so a server
# connection opened in one run and not the other costs a few thousand
# instructions, not a SCRAM key derivation.
#
# Environment (defaults in brackets):
#   N1 [2000] N2 [8000] transactions per client  CLIENTS [4]  MODE [simple]
#   POOL_SIZE [20]  SCALE [1]  TARGETS ["pgtenant pgbouncer"]
#   START_WAIT [120] seconds for a pooler to listen under valgrind
#   PG_PORT [25472] PGT_PORT [26472] PGB_PORT [26473]
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]  PGBOUNCER [/usr/sbin/pgbouncer]
#   VALGRIND [valgrind]  BENCH_KEEP [0]  1: keep the temporary directory (callgrind files)
# Results are printed and written to bench/results/cpu-<timestamp>.txt.
# Exit status: 0 when every run succeeded, 1 otherwise, 2 on setup failure.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

defaults \
	N1=2000 N2=8000 CLIENTS=4 MODE=simple POOL_SIZE=20 SCALE=1 TARGETS="pgtenant pgbouncer" \
	START_WAIT=120 PG_PORT=25472 PGT_PORT=26472 PGB_PORT=26473 VALGRIND=valgrind
TENANT=acme
bench_results cpu

# ---------------------------------------------------------------- setup

bench_deps pgbench psql pg_isready initdb pg_ctl
command -v "$VALGRIND" >/dev/null || die "valgrind not found (apt-get install valgrind)"
[ "$N2" -gt "$N1" ] || die "N2 must be larger than N1"
check_ports "$PG_PORT" "$PGT_PORT" "$PGB_PORT"

bench_workdir cpu pgdata run cg
note "PostgreSQL on 127.0.0.1:$PG_PORT in $DIR"
pg_init "$DIR/pgdata" "$PG_PORT" 100 128MB trust
pg_start PostgreSQL "$DIR/pgdata" "$DIR/run/postgresql.log"
pg_create_bench_db "$PG_PORT"
pgbench_init "$PG_PORT" "$SCALE" "$DIR/pgbench-init.log"
write_userlist

{
	pgt_ini_head "$PGT_PORT" trust
	printf 'default_pool_size = %s\nmax_client_conn = 100\n' "$POOL_SIZE"
	pgt_ini_backend "$POOL_SIZE"
	pgt_ini_tenant "$TENANT" database "dbname = $DB"
} >"$DIR/pgtenant.ini"
{
	printf '[databases]\n%s = host=%s port=%s dbname=%s\n' "$DB" "$(backend_host)" "$PG_PORT" "$DB"
	pgb_ini_head "$PGB_PORT" "$POOL_SIZE" 100 trust
} >"$DIR/pgbouncer.ini"

listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

# One pooler under callgrind for one pgbench run: its total Ir in IR_TOTAL, or returns 1.
# (Not in a $(...) subshell: the EXIT trap must know the pooler's PID.)
count_ir() { # target n
	local target=$1 n=$2 port db out=$DIR/cg/$1-$2.out log=$DIR/$1-$2.log _
	case $target in
		pgtenant) port=$PGT_PORT db=$TENANT ;;
		pgbouncer) port=$PGB_PORT db=$DB ;;
	esac
	local wrap=("$VALGRIND" --tool=callgrind "--callgrind-out-file=$out" --dump-line=no)
	if [ "$target" = pgtenant ]; then
		PGT_WRAP=("${wrap[@]}")
		launch_pgtenant "$target" "$DIR/pgtenant.ini" "$log" || return 1
	else
		PGB_WRAP=("${wrap[@]}")
		launch_pgbouncer "$target" "$DIR/pgbouncer.ini" "$log" || return 1
	fi
	for _ in $(seq $((START_WAIT * 10))); do
		listening "$port" && break
		kill -0 "${PID[$target]}" 2>/dev/null || break
		sleep 0.1
	done
	if ! listening "$port"; then
		note "$target did not listen on $port under valgrind; its log:"
		tail -n 20 "$log" >&2
		stop_target "$target"
		return 1
	fi
	if ! timeout 1200 "$PG_BIN/pgbench" -n -S -M "$MODE" -c "$CLIENTS" -j 1 -t "$n" -h 127.0.0.1 -p "$port" \
		-U "$DB_USER" "$db" >"$DIR/pgbench-$target-$n.log" 2>&1; then
		note "$target: pgbench -t $n failed:"
		tail -n 5 "$DIR/pgbench-$target-$n.log" >&2
		stop_target "$target"
		return 1
	fi
	local tx
	IR_TOTAL=""
	tx=$(pgbench_result "$DIR/pgbench-$target-$n.log") || return 1
	tx=${tx#* }
	if [ "$tx" != $((CLIENTS * n)) ]; then
		note "$target: pgbench -t $n processed $tx transactions, not $((CLIENTS * n))"
		stop_target "$target"
		return 1
	fi
	stop_target "$target" 60 # callgrind writes its counts at exit
	[ -s "$out" ] || { note "$target: no callgrind output ($out)"; return 1; }
	IR_TOTAL=$(awk '/^totals:/ { print $2; exit }' "$out")
	[ -n "$IR_TOTAL" ] || { note "$target: no totals line in $out"; return 1; }
}

out_header "pgtenant instructions per transaction (callgrind)" "$("$VALGRIND" --version)"
out "pgbench -n -S -M $MODE -c $CLIENTS -j 1 -t {$N1, $N2}; scale $SCALE, pool size $POOL_SIZE, transaction mode, trust auth"
out ""

declare -A IR=()
any_failed=0
for t in $TARGETS; do
	case $t in pgtenant | pgbouncer) ;; *) die "unknown target $t" ;; esac
	ok=1
	for n in "$N1" "$N2"; do
		note "$t under callgrind: pgbench -t $n"
		if count_ir "$t" "$n"; then
			out "$(printf '%-10s -t %-6s Ir %15s' "$t" "$n" "$IR_TOTAL")"
			IR["$t $n"]=$IR_TOTAL
		else
			out "$(printf '%-10s -t %-6s FAILED' "$t" "$n")"
			ok=0 any_failed=1
		fi
	done
	if [ "$ok" = 1 ]; then
		IR[$t]=$(awk -v a="${IR["$t $N2"]}" -v b="${IR["$t $N1"]}" -v tx=$((CLIENTS * (N2 - N1))) \
			'BEGIN { printf "%.0f", (a - b) / tx }')
	fi
done

out ""
out "instructions per transaction ((Ir($N2) - Ir($N1)) / ($CLIENTS * $((N2 - N1))))"
out_per_pooler IR instructions
note "results written to $RESULT"
exit "$any_failed"
