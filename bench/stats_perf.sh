#!/bin/bash
# shellcheck disable=SC2153  # the settings are assigned by `defaults` (lib.sh)
# What statement statistics cost in place: the share of pgtenant's CPU time spent
# in the statistics code, sampled while it serves statements, times its CPU time
# per statement.
#
# bench/stats.sh compares whole runs with query_stats on and off; on a shared
# machine their CPU times drift by more than the difference. This bench asks
# instead where the time of one run goes: a throwaway PostgreSQL, pgtenant with
# TENANTS database-mode tenants and query_stats = yes, bench/stats_client.py's
# CONNS connections sending ROUNDS_TX rounds of one pgbench select-only Query
# each (a new literal each time, so every statement is fingerprinted afresh),
# and `perf record -e cpu-clock` (a software clock: no hardware counters are
# needed) on pgtenant during the rounds. Samples fall in user and kernel code
# alike, so
#   statistics time per statement
#     = (samples in the statistics symbols / all of pgtenant's samples)
#       * pgtenant's utime+stime per statement (/proc/PID/stat, same rounds).
# The statistics symbols, for a database-mode tenant (its statements are not
# analysed otherwise, so the lexer runs for the fingerprint alone):
# STATS_SYMBOLS below. Code of theirs inlined into other functions (a few
# tests in client.c and server.c) is not counted: the figure is a little low
# by that, and a little high by the sampling's own cost.
#
# Environment (defaults in brackets):
#   TENANTS [1]  CONNS [200]  ROUNDS_TX [500]  FREQ [10000] samples a second
#   POOL_SIZE [20]  SCALE [1]  PG_PORT [25492]  PGT_PORT [26492]
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]  BENCH_KEEP [0]
# Results are printed and written to bench/results/stats_perf-<timestamp>.txt.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

defaults TENANTS=1 CONNS=200 ROUNDS_TX=500 FREQ=10000 POOL_SIZE=20 SCALE=1 \
	PG_PORT=25492 PGT_PORT=26492
bench_results stats_perf

STATS_SYMBOLS="sqllex_next lex_general lex_number_end sql_normalize sql_norm_token \
norm_mix_bytes norm_write norm_spaced sql_norm_finish sql_norm_init stats_norm_begin \
note_statement statement_fp table_entry index_find index_put stats_query_sent \
stats_parse stats_bind stats_execute_sent stats_sync_sent stats_reply pend_push \
pend_done pend_unit_end pend_pop client_sx"

bench_deps pgbench psql pg_isready initdb pg_ctl
command -v perf >/dev/null || die "perf not found (apt-get install linux-perf)"
check_ports "$PG_PORT" "$PGT_PORT"
raise_nofile $((CONNS * 2 + 200)) $((CONNS + 50)) "$CONNS client connections"
bench_workdir stats_perf pgdata run
pg_init "$DIR/pgdata" "$PG_PORT" 100 128MB trust
pg_start PostgreSQL "$DIR/pgdata" "$DIR/run/postgresql.log"
pg_create_bench_db "$PG_PORT"
pgbench_init "$PG_PORT" "$SCALE" "$DIR/pgbench-init.log"
write_userlist

ini=$DIR/pgtenant.ini
{
	pgt_ini_head "$PGT_PORT" trust
	printf 'max_client_conn = %s\nquery_stats = yes\n' $((CONNS + 100))
	pgt_ini_backend "$POOL_SIZE"
	for i in $(seq 0 $((TENANTS - 1))); do pgt_ini_tenant "t$i" database "dbname = $DB"; done
} >"$ini"
log=$DIR/pgtenant.log
PGT_WRAP=()
launch_pgtenant pgtenant "$ini" "$log" || die "pgtenant did not start"
wait_ready "$PGT_PORT" "${PID[pgtenant]}" "$DB_USER" t0 60 || { tail -n 20 "$log" >&2; die "pgtenant not ready"; }

coproc CLIENT { "$PYTHON" "$BENCH_LIB_DIR/stats_client.py" "$PGT_PORT" "$TENANTS" "$CONNS" "$ROUNDS_TX" "$DB_USER"; }
read -r line <&"${CLIENT[0]}" || die "the client ended early"
[ "$line" = ready ] || die "client: $line"
perf record -q -e cpu-clock -F "$FREQ" -p "${PID[pgtenant]}" -o "$DIR/perf.data" >"$DIR/perf.log" 2>&1 &
PERF_PID=$!
sleep 1 # perf attached
before=$(cpu_ticks "${PID[pgtenant]}")
echo go >&"${CLIENT[1]}"
read -r line <&"${CLIENT[0]}" || die "the client ended early"
after=$(cpu_ticks "${PID[pgtenant]}")
kill -INT "$PERF_PID"
wait "$PERF_PID" 2>/dev/null || true
n=${line#done }
echo bye >&"${CLIENT[1]}"
wait "$CLIENT_PID" 2>/dev/null || true
stop_target pgtenant 30
[ "$n" = $((CONNS * ROUNDS_TX)) ] || die "the client ran $n statements"

# "percent symbol" lines (perf recorded pgtenant's samples alone: -p)
perf report -q -i "$DIR/perf.data" --sort symbol --stdio 2>/dev/null |
	awk '$1 ~ /%$/ { sub(/%$/, "", $1)
		for (i = 2; i < NF; i++) if ($i == "[.]" || $i == "[k]") { print $1, $(i + 1); break } }' \
		>"$DIR/symbols.txt"
[ -s "$DIR/symbols.txt" ] || die "perf recorded no samples of pgtenant (see $DIR/perf.log)"
share=$(awk -v list="$STATS_SYMBOLS" 'BEGIN { split(list, s, " "); for (i in s) want[s[i]] = 1 }
	want[$2] { sum += $1 } END { printf "%.2f", sum }' "$DIR/symbols.txt")
cpu_us=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.3f", d * 1e6 / hz / n }')
cost=$(awk -v s="$share" -v c="$cpu_us" 'BEGIN { printf "%.3f", s / 100 * c }')

out_header "pgtenant: statement statistics' share of its CPU, sampled in place" ""
out "$TENANTS database tenant(s), $CONNS connections, $ROUNDS_TX rounds of one pgbench -S Query ($n statements), query_stats = yes, perf cpu-clock at $FREQ Hz"
out ""
out "pgtenant CPU per statement (utime+stime)   $cpu_us us"
out "statistics symbols' share of its samples   $share %"
out "statistics time per statement              $cost us"
out ""
out "the statistics symbols' samples:"
awk -v list="$STATS_SYMBOLS" 'BEGIN { split(list, s, " "); for (i in s) want[s[i]] = 1 }
	want[$2] { printf "  %6.2f%%  %s\n", $1, $2 }' "$DIR/symbols.txt" | tee -a "$RESULT"
out ""
out "pgtenant's ten busiest symbols:"
head -n 10 "$DIR/symbols.txt" | awk '{ printf "  %6.2f%%  %s\n", $1, $2 }' | tee -a "$RESULT"
summary stats_cost_us_sampled "$cost"
note "results written to $RESULT"
