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
# The difference is small against what a shared machine's CPU time drifts by,
# so a second table counts instructions instead (CALLGRIND=1, the default):
# the same runs with pgtenant under valgrind --tool=callgrind, its counters
# zeroed (callgrind_control -z) at the start of the rounds and dumped at their
# end, give pgtenant's user-space instructions per statement, which do not
# depend on the machine's load. "bound us" turns that difference into time at
# the rate pgtenant's user time runs its instructions in the CPU runs (user µs
# per statement / Ir per statement, query_stats off): an upper bound, since
# that rate is dragged down by the cache misses around every system call
# while the lexer and the table probe run tight loops (the normaliser alone:
# see the "normalise bench" line of build/unit/stats_test).
#
# Environment (defaults in brackets):
#   TENANT_COUNTS ["1 1000"]  CONNS [1000]  ROUNDS_TX [100] (statements = CONNS * ROUNDS_TX)
#   REPEAT [5]  CALLGRIND [1]  CG_CONNS [1000]  CG_ROUNDS [20]  POOL_SIZE [20]  SCALE [1]  PG_PORT [25482]  PGT_PORT [26482]
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]  BENCH_KEEP [0]
# Results are printed and written to bench/results/stats-<timestamp>.txt.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

defaults TENANT_COUNTS="1 1000" CONNS=1000 ROUNDS_TX=100 REPEAT=5 POOL_SIZE=20 SCALE=1 \
	PG_PORT=25482 PGT_PORT=26482 CALLGRIND=1 CG_CONNS=1000 CG_ROUNDS=20 VALGRIND=valgrind
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

# One run: CPU microseconds per statement in US (user time alone in USER_US), or with
# callgrind (cg as $3) user-space instructions per statement in IR; returns 1 on failure.
run_once() { # tenants query_stats [cg]
	local ini log=$DIR/pgtenant-$1-$2.log before after line n conns=$CONNS rounds=$ROUNDS_TX
	local cg=${3:-} out=$DIR/cg-$1-$2.out
	ini=$(write_ini "$1" "$2")
	PGT_WRAP=()
	if [ -n "$cg" ]; then
		conns=$CG_CONNS rounds=$CG_ROUNDS
		rm -f "$out"*
		PGT_WRAP=("$VALGRIND" --tool=callgrind "--callgrind-out-file=$out" --dump-line=no
			--compress-strings=no)
	fi
	launch_pgtenant pgtenant "$ini" "$log" || return 1
	wait_ready "$PGT_PORT" "${PID[pgtenant]}" "$DB_USER" t0 120 || { tail -n 20 "$log" >&2; return 1; }
	coproc CLIENT { "$PYTHON" "$BENCH_LIB_DIR/stats_client.py" "$PGT_PORT" "$1" "$conns" "$rounds" "$DB_USER"; }
	read -r line <&"${CLIENT[0]}" || { stop_target pgtenant; return 1; }
	[ "$line" = ready ] || { note "client: $line"; stop_target pgtenant; return 1; }
	if [ -n "$cg" ]; then callgrind_control -z "${PID[pgtenant]}" >/dev/null 2>&1; fi
	before=$(cpu_ticks "${PID[pgtenant]}" split)
	echo go >&"${CLIENT[1]}"
	read -r line <&"${CLIENT[0]}" || { stop_target pgtenant; return 1; }
	after=$(cpu_ticks "${PID[pgtenant]}" split)
	if [ -n "$cg" ]; then callgrind_control -d "${PID[pgtenant]}" >/dev/null 2>&1; fi
	n=${line#done }
	echo bye >&"${CLIENT[1]}"
	wait "$CLIENT_PID" 2>/dev/null || true
	stop_target pgtenant 60
	[ "$n" = $((conns * rounds)) ] || { note "client ran $n statements"; return 1; }
	if [ -n "$cg" ]; then
		# the dump taken at the end of the rounds is the first numbered one
		IR=$(awk '/^(summary|totals):/ { print $2; exit }' "$out.1" 2>/dev/null) ||
			{ note "no callgrind dump $out.1"; return 1; }
		IR=$(awk -v ir="$IR" -v n="$n" 'BEGIN { printf "%.0f", ir / n }')
		return 0
	fi
	read -r bu bs <<<"$before"
	read -r au as <<<"$after"
	US=$(awk -v d=$((au + as - bu - bs)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.3f", d * 1e6 / hz / n }')
	USER_US=$(awk -v d=$((au - bu)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.3f", d * 1e6 / hz / n }')
}

out_header "pgtenant: CPU per statement with statement statistics on and off" ""
out "$CONNS connections, $ROUNDS_TX rounds of one pgbench -S Query each ($((CONNS * ROUNDS_TX)) statements a run), pool size $POOL_SIZE, $REPEAT runs each, medians"
out ""
out "$(printf '%-8s %-12s %-12s %-12s  %s' tenants "off us/stmt" "on us/stmt" "on-off us" "runs (off | on)")"
status=0
declare -A USER_OFF=()
for t in $TENANT_COUNTS; do
	offs=() ons=() uoffs=()
	for _ in $(seq "$REPEAT"); do
		for qs in off on; do
			if run_once "$t" "$qs"; then
				if [ "$qs" = on ]; then ons+=("$US"); else offs+=("$US") uoffs+=("$USER_US"); fi
			else
				status=1
			fi
		done
	done
	off=$(median3 "${offs[@]}") on=$(median3 "${ons[@]}")
	USER_OFF[$t]=$(median3 "${uoffs[@]}")
	delta=$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.3f", a - b }')
	out "$(printf '%-8s %-12s %-12s %-12s  %s | %s' "$t" "$off" "$on" "$delta" "${offs[*]}" "${ons[*]}")"
	summary "stats_cpu_delta_us_${t}_tenants" "$delta"
done
if [ "$CALLGRIND" = 1 ]; then
	command -v "$VALGRIND" >/dev/null && command -v callgrind_control >/dev/null ||
		die "valgrind (callgrind_control) not found (apt-get install valgrind)"
	out ""
	out "under callgrind: $CG_CONNS connections, $CG_ROUNDS rounds ($((CG_CONNS * CG_ROUNDS)) statements a run), user-space instructions per statement"
	out "$(printf '%-8s %-10s %-10s %-10s %-14s %s' tenants "off Ir" "on Ir" "on-off Ir" "user us (off)" "bound us/stmt")"
	for t in $TENANT_COUNTS; do
		if run_once "$t" off cg; then ir_off=$IR; else status=1; continue; fi
		if run_once "$t" on cg; then ir_on=$IR; else status=1; continue; fi
		cost=$(awk -v on="$ir_on" -v off="$ir_off" -v us="${USER_OFF[$t]}" \
			'BEGIN { printf "%.3f", (on - off) * us / off }')
		out "$(printf '%-8s %-10s %-10s %-10s %-14s %s' "$t" "$ir_off" "$ir_on" $((ir_on - ir_off)) "${USER_OFF[$t]}" "$cost")"
		summary "stats_cost_us_${t}_tenants" "$cost"
	done
fi
note "results written to $RESULT"
exit "$status"
