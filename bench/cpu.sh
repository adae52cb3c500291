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
# The tenant (TENANT_MODE, TENANTS):
#  - database (the default): pgtenant's tenant `acme` is `mode = database` on the
#    bench database; PgBouncer serves the bench database.
#  - schema: `acme` is `mode = schema`, schema s_bench (created empty, owned by the
#    bench role; the pgbench tables stay in public, which follows it in the tenant's
#    search_path as a shared schema), pool_size POOL_SIZE. One tenant: its server
#    connections keep its state, nothing switches. PgBouncer, for reference, serves
#    `acme` with connect_query='SET search_path = s_bench, public'.
#  - TENANTS=N (N > 1, implies schema): the switching case. N schema tenants t0..tN-1
#    (schemas s_0..s_N-1, empty, the pgbench tables in public), all on ONE pool of
#    POOL_SIZE; N pgbench processes run at once, one per tenant, each with CLIENTS / N
#    clients (CLIENTS must be a multiple of N) and -t N1/N2 each. With POOL_SIZE below
#    CLIENTS, server connections pass between tenants and switch search_path; how often
#    depends on the pooler's choice of connection, so the switches are counted: schema
#    mode turns on log_statement = all for the bench database and the result shows the
#    state statements (log lines naming search_path) PostgreSQL ran per transaction.
#    PgBouncer gets one [databases] entry (and pool of POOL_SIZE) per tenant, with
#    connect_query: it never switches.
#
# Environment (defaults in brackets):
#   N1 [2000] N2 [8000] transactions per client  CLIENTS [4]  MODE [simple]
#   POOL_SIZE [20]  SCALE [1]  TARGETS ["pgtenant pgbouncer"]
#   TENANT_MODE [database] database or schema  TENANTS [1] schema tenants (see above)
#   START_WAIT [120] seconds for a pooler to listen under valgrind
#   PG_PORT [25472] PGT_PORT [26472] PGB_PORT [26473]
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]  PGBOUNCER [/usr/sbin/pgbouncer]
#   VALGRIND [valgrind]  BENCH_KEEP [0]  1: keep the temporary directory (callgrind files)
#   PGT_EXTRA [] more lines for pgtenant's [pgtenant] section (\n between), e.g. "query_stats = no"
# Results are printed and written to bench/results/cpu-<timestamp>.txt.
# Exit status: 0 when every run succeeded, 1 otherwise, 2 on setup failure.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

defaults \
	N1=2000 N2=8000 CLIENTS=4 MODE=simple POOL_SIZE=20 SCALE=1 TARGETS="pgtenant pgbouncer" \
	START_WAIT=120 PG_PORT=25472 PGT_PORT=26472 PGB_PORT=26473 VALGRIND=valgrind \
	TENANT_MODE=database TENANTS=1 PGT_EXTRA=
[ "$TENANTS" -gt 1 ] && TENANT_MODE=schema
case $TENANT_MODE in
	database | schema) ;;
	*) echo "TENANT_MODE must be database or schema" >&2; exit 2 ;;
esac
[ $((CLIENTS % TENANTS)) = 0 ] || { echo "CLIENTS must be a multiple of TENANTS" >&2; exit 2; }
TENANT=acme SCHEMA=s_bench
# the tenants (database names the clients log in to) and their schemas
if [ "$TENANTS" -gt 1 ]; then
	mapfile -t TNAMES < <(for i in $(seq 0 $((TENANTS - 1))); do echo "t$i"; done)
	mapfile -t SCHEMAS < <(for i in $(seq 0 $((TENANTS - 1))); do echo "s_$i"; done)
else
	TNAMES=("$TENANT") SCHEMAS=("$SCHEMA")
fi
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
if [ "$TENANT_MODE" = schema ]; then
	for s in "${SCHEMAS[@]}"; do pg_admin "$PG_PORT" "$DB" -c "CREATE SCHEMA $s AUTHORIZATION $DB_USER"; done
	# every statement in the log: the state statements are counted (state_per_tx)
	pg_admin "$PG_PORT" postgres -c "ALTER DATABASE $DB SET log_statement = 'all'"
fi
write_userlist

{
	pgt_ini_head "$PGT_PORT" trust
	printf 'default_pool_size = %s\nmax_client_conn = %s\n' "$POOL_SIZE" $((2 * CLIENTS + 100))
	[ -n "$PGT_EXTRA" ] && printf '%b\n' "$PGT_EXTRA"
	pgt_ini_backend "$POOL_SIZE"
	if [ "$TENANT_MODE" = database ]; then
		pgt_ini_tenant "$TENANT" database "dbname = $DB"
	else
		for i in "${!TNAMES[@]}"; do
			pgt_ini_tenant "${TNAMES[$i]}" schema "schema = ${SCHEMAS[$i]}" "pool_size = $POOL_SIZE"
		done
	fi
} >"$DIR/pgtenant.ini"
{
	printf '[databases]\n'
	if [ "$TENANT_MODE" = database ]; then
		printf '%s = host=%s port=%s dbname=%s\n' "$DB" "$(backend_host)" "$PG_PORT" "$DB"
	else
		for i in "${!TNAMES[@]}"; do
			printf "%s = host=%s port=%s dbname=%s connect_query='SET search_path = %s, public'\n" \
				"${TNAMES[$i]}" "$(backend_host)" "$PG_PORT" "$DB" "${SCHEMAS[$i]}"
		done
	fi
	pgb_ini_head "$PGB_PORT" "$POOL_SIZE" $((2 * CLIENTS + 100)) trust
} >"$DIR/pgbouncer.ini"

listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

# One pooler under callgrind for one pgbench run: its total Ir in IR_TOTAL, or returns 1.
# (Not in a $(...) subshell: the EXIT trap must know the pooler's PID.)
count_ir() { # target n
	local target=$1 n=$2 port dbs out=$DIR/cg/$1-$2.out log=$DIR/$1-$2.log _
	case $target in
		pgtenant) port=$PGT_PORT dbs=("${TNAMES[@]}") ;;
		pgbouncer) port=$PGB_PORT dbs=("${TNAMES[@]}") ;;
	esac
	[ "$TENANT_MODE" = database ] && [ "$target" = pgbouncer ] && dbs=("$DB")
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
	# one pgbench per tenant, at once, CLIENTS spread over them
	local i pids=() failed=0 tx=0 r lines0
	lines0=$(wc -l <"$DIR/run/postgresql.log")
	for i in "${!dbs[@]}"; do
		timeout 1200 "$PG_BIN/pgbench" -n -S -M "$MODE" -c $((CLIENTS / ${#dbs[@]})) -j 1 -t "$n" \
			-h 127.0.0.1 -p "$port" -U "$DB_USER" "${dbs[$i]}" >"$DIR/pgbench-$target-$n-$i.log" 2>&1 &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		if ! wait "${pids[$i]}"; then
			note "$target: pgbench -t $n on ${dbs[$i]} failed:"
			tail -n 5 "$DIR/pgbench-$target-$n-$i.log" >&2
			failed=1
		fi
	done
	if [ "$failed" = 1 ]; then
		stop_target "$target"
		return 1
	fi
	IR_TOTAL=""
	for i in "${!dbs[@]}"; do
		r=$(pgbench_result "$DIR/pgbench-$target-$n-$i.log") || return 1
		tx=$((tx + ${r#* }))
	done
	if [ "$tx" != $((CLIENTS * n)) ]; then
		note "$target: pgbench -t $n processed $tx transactions, not $((CLIENTS * n))"
		stop_target "$target"
		return 1
	fi
	stop_target "$target" 60 # callgrind writes its counts at exit
	# state statements PostgreSQL logged (log_statement = all, schema mode), server
	# connections closed with the pooler
	STATES=$(tail -n +$((lines0 + 1)) "$DIR/run/postgresql.log" | grep -c 'LOG: .*search_path') || STATES=0
	[ -s "$out" ] || { note "$target: no callgrind output ($out)"; return 1; }
	IR_TOTAL=$(awk '/^totals:/ { print $2; exit }' "$out")
	[ -n "$IR_TOTAL" ] || { note "$target: no totals line in $out"; return 1; }
}

out_header "pgtenant instructions per transaction (callgrind)" "$("$VALGRIND" --version)"
out "pgbench -n -S -M $MODE -c $CLIENTS -j 1 -t {$N1, $N2}; scale $SCALE, pool size $POOL_SIZE, transaction mode, trust auth"
if [ "$TENANT_MODE" = database ]; then
	out "tenant: $TENANT, mode = database"
elif [ "$TENANTS" = 1 ]; then
	out "tenant: $TENANT, mode = schema, schema = $SCHEMA (pgbench tables in public, a shared schema)"
else
	out "tenants: $TENANTS schema tenants t0..t$((TENANTS - 1)) on one pool of $POOL_SIZE, a pgbench of $((CLIENTS / TENANTS)) client(s) each"
fi
out ""

declare -A IR=() ST=()
any_failed=0
for t in $TARGETS; do
	case $t in pgtenant | pgbouncer) ;; *) die "unknown target $t" ;; esac
	ok=1
	for n in "$N1" "$N2"; do
		note "$t under callgrind: pgbench -t $n"
		if count_ir "$t" "$n"; then
			if [ "$TENANT_MODE" = schema ]; then
				out "$(printf '%-10s -t %-6s Ir %15s  state statements %s' "$t" "$n" "$IR_TOTAL" "$STATES")"
			else
				out "$(printf '%-10s -t %-6s Ir %15s' "$t" "$n" "$IR_TOTAL")"
			fi
			IR["$t $n"]=$IR_TOTAL ST["$t $n"]=$STATES
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
if [ "$TENANT_MODE" = schema ]; then
	out ""
	out "state statements (search_path) PostgreSQL ran per transaction, the same difference"
	for t in $TARGETS; do
		[ -n "${IR[$t]:-}" ] || continue
		out "$(printf '%-10s %10s' "$t" "$(awk -v a="${ST["$t $N2"]}" -v b="${ST["$t $N1"]}" \
			-v tx=$((CLIENTS * (N2 - N1))) 'BEGIN { printf "%.3f", (a - b) / tx }')")"
	done
fi
note "results written to $RESULT"
exit "$any_failed"
