#!/bin/bash
# shellcheck disable=SC2153  # the settings are assigned by `defaults` (lib.sh)
# What statement statistics cost: pgtenant's own CPU time per statement with
# query_stats on and off, for 1 tenant and for 1,000 tenants.
#
# A throwaway PostgreSQL (trust auth, pgbench tables of SCALE), and pgtenant
# with TENANTS database-mode tenants t0..tN-1 on one backend and pool
# (POOL_SIZE). bench/stats_client.py opens CONNS connections spread over the
# tenants, then runs ROUNDS_TX rounds of one pgbench select-only Query per
# connection (a new literal each time, so every statement is normalised
# afresh). pgtenant's utime+stime (/proc/PID/stat fields 14 and 15) is read
# right before and after those rounds - logins are not in it - and divided by
# the statements run. on and off alternate within each of REPEAT rounds (a
# fresh pgtenant each run); the table shows medians and the difference.
#
# Environment (defaults in brackets):
#   TENANT_COUNTS ["1 1000"]  CONNS [1000]  ROUNDS_TX [100] (statements = CONNS * ROUNDS_TX)
#   REPEAT [5]  POOL_SIZE [20]  SCALE [1]  PG_PORT [25482]  PGT_PORT [26482]
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]  BENCH_KEEP [0]
# Results are printed and written to bench/results/stats-<timestamp>.txt.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

defaults TENANT_COUNTS="1 1000" CONNS=1000 ROUNDS_TX=100 REPEAT=5 POOL_SIZE=20 SCALE=1 \
	PG_PORT=25482 PGT_PORT=26482
bench_results stats

bench_deps pgbench psql pg_isready initdb pg_ctl
check_ports "$PG_PORT" "$PGT_PORT"
raise_nofile $((CONNS * 2 + 200)) $((CONNS + 50)) "$CONNS client connections"
bench_workdir stats pgdata run
pg_init "$DIR/pgdata" "$PG_PORT" 100 128MB trust
pg_start PostgreSQL "$DIR/pgdata" "$DIR/run/postgresql.log"
pg_create_bench_db "$PG_PORT"
pgbench_init "$PG_PORT" "$SCALE" "$DIR/pgbench-init.log"
write_userlist

median3() { # values -> median with three decimals
	printf '%s\n' "$@" | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
		if (NR) printf "%.3f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

write_ini() { # tenants query_stats -> DIR/pgtenant-<tenants>-<qs>.ini
	local f=$DIR/pgtenant-$1-$2.ini i
	{
		pgt_ini_head "$PGT_PORT" trust
		printf 'max_client_conn = %s\nquery_stats = %s\n' $((CONNS + 100)) "$2"
		pgt_ini_backend "$POOL_SIZE"
		for i in $(seq 0 $(($1 - 1))); do pgt_ini_tenant "t$i" database "dbname = $DB"; done
	} >"$f"
	echo "$f"
}

# One run: CPU microseconds per statement in US, or returns 1.
run_once() { # tenants query_stats
	local ini log=$DIR/pgtenant-$1-$2.log before after line n
	ini=$(write_ini "$1" "$2")
	launch_pgtenant pgtenant "$ini" "$log" || return 1
	wait_ready "$PGT_PORT" "${PID[pgtenant]}" "$DB_USER" t0 30 || { tail -n 20 "$log" >&2; return 1; }
	coproc CLIENT { "$PYTHON" "$BENCH_LIB_DIR/stats_client.py" "$PGT_PORT" "$1" "$CONNS" "$ROUNDS_TX" "$DB_USER"; }
	read -r line <&"${CLIENT[0]}" || { stop_target pgtenant; return 1; }
	[ "$line" = ready ] || { note "client: $line"; stop_target pgtenant; return 1; }
	before=$(cpu_ticks "${PID[pgtenant]}")
	echo go >&"${CLIENT[1]}"
	read -r line <&"${CLIENT[0]}" || { stop_target pgtenant; return 1; }
	after=$(cpu_ticks "${PID[pgtenant]}")
	n=${line#done }
	echo bye >&"${CLIENT[1]}"
	wait "$CLIENT_PID" 2>/dev/null || true
	stop_target pgtenant
	[ "$n" = $((CONNS * ROUNDS_TX)) ] || { note "client ran $n statements"; return 1; }
	US=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.3f", d * 1e6 / hz / n }')
}

out_header "pgtenant: CPU per statement with statement statistics on and off" ""
out "$CONNS connections, $ROUNDS_TX rounds of one pgbench -S Query each ($((CONNS * ROUNDS_TX)) statements a run), pool size $POOL_SIZE, $REPEAT runs each, medians"
out ""
out "$(printf '%-8s %-12s %-12s %-12s  %s' tenants "off us/stmt" "on us/stmt" "on-off us" "runs (off | on)")"
status=0
for t in $TENANT_COUNTS; do
	offs=() ons=()
	for _ in $(seq "$REPEAT"); do
		for qs in off on; do
			if run_once "$t" "$qs"; then
				if [ "$qs" = on ]; then ons+=("$US"); else offs+=("$US"); fi
			else
				status=1
			fi
		done
	done
	off=$(median3 "${offs[@]}") on=$(median3 "${ons[@]}")
	delta=$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.3f", a - b }')
	out "$(printf '%-8s %-12s %-12s %-12s  %s | %s' "$t" "$off" "$on" "$delta" "${offs[*]}" "${ons[*]}")"
	summary "stats_cost_us_${t}_tenants" "$delta"
done
note "results written to $RESULT"
exit "$status"
