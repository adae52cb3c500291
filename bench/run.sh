#!/bin/bash
# shellcheck disable=SC2153  # the settings are assigned by `defaults` (lib.sh)
# pgtenant benchmark (`make bench`): pgbench select-only throughput straight to
# PostgreSQL, through pgtenant and through PgBouncer, and each pooler's own CPU
# time per transaction.
#
# Everything it starts is its own and listens on 127.0.0.1 only: a throwaway
# PostgreSQL (fsync off, max_connections 300), a pgtenant and a PgBouncer, both
# in transaction mode with a pool of POOL_SIZE. Runs are interleaved - in each
# round every case runs direct, then pgtenant, then PgBouncer - so drift on the
# machine hits all three alike; the table shows medians over ROUNDS. As root,
# PostgreSQL and PgBouncer run as the `postgres` user (both refuse root).
#
# CPU per transaction is the pooler process's utime+stime (/proc/PID/stat
# fields 14 and 15) over the run, divided by the transactions pgbench counted.
#
# Environment (defaults in brackets):
#   DURATION [10]          seconds per pgbench run (-T)
#   ROUNDS [3]             interleaved rounds; the table shows medians
#   JOBS [2]               pgbench threads (-j)
#   CLIENTS ["10 100"]     client counts to run
#   MODES ["simple extended"]  pgbench -M protocols; BENCH_PREPARED=1 adds "prepared"
#   BENCH_CONNECT [0]      1: also -C (a new connection per transaction), CONNECT_CLIENTS [20]
#   BENCH_LATENCY [0]      1: also one client with per-transaction latencies (pgbench -l):
#                          the table's p50 column, and pgtenant's and PgBouncer's p50
#                          added over direct
#   CASES                  instead of the four above, an explicit list of MODE:CLIENTS
#                          with MODE simple, extended, prepared, connect (-C, simple) or
#                          latency (simple, with -l), e.g. "simple:10 connect:20 latency:1"
#   ORDER ["direct pgtenant pgbouncer"]  the order of targets within a round
#   TARGETS ["direct pgtenant pgbouncer"]
#   SCALE [10]             pgbench -i -s
#   POOL_SIZE [20]         server connections of each pooler
#   TENANT_FROM [database] how the client names its tenant: database (-d acme)
#                          or user (-U bench.acme)
#   PG_PORT [25432] PGT_PORT [26432] PGB_PORT [26433]  (below the ephemeral range 32768-60999:
#                          a client socket in TIME-WAIT there blocks a listener for 60 s)
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]  PGBOUNCER [/usr/sbin/pgbouncer]
#   BENCH_KEEP [0]         1: keep the temporary directory (logs, configs)
#
# Results are printed and also written to bench/results/<timestamp>.txt.
# Exit status: 0 when every run succeeded, 1 when some failed (the table says
# which), 2 when the setup failed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

defaults \
	DURATION=10 ROUNDS=3 JOBS=2 CLIENTS="10 100" MODES="simple extended" BENCH_CONNECT=0 \
	CONNECT_CLIENTS=20 TARGETS="direct pgtenant pgbouncer" SCALE=10 POOL_SIZE=20 \
	TENANT_FROM=database PG_PORT=25432 PGT_PORT=26432 PGB_PORT=26433
[ "${BENCH_PREPARED:-0}" = 1 ] && MODES="$MODES prepared"

TENANT=acme
bench_results ""

# ---------------------------------------------------------------- setup

# Installs missing packages (PostgreSQL, PgBouncer) as root; nothing when all are there.
bench_deps pgbench psql pg_isready initdb pg_ctl
check_ports "$PG_PORT" "$PGT_PORT" "$PGB_PORT"
case $TENANT_FROM in
	database) PGT_USER=$DB_USER PGT_DB=$TENANT ;;
	user) PGT_USER=$DB_USER.$TENANT PGT_DB=$DB ;;
	*) die "TENANT_FROM must be database or user" ;;
esac

bench_workdir "" pgdata run
note "PostgreSQL on 127.0.0.1:$PG_PORT in $DIR"
pg_init "$DIR/pgdata" "$PG_PORT" 300
pg_start PostgreSQL "$DIR/pgdata" "$DIR/run/postgresql.log"
pg_create_bench_db "$PG_PORT"
pgbench_init "$PG_PORT" "$SCALE" "$DIR/pgbench-init.log"
write_userlist

# Named prepared statements in transaction mode need PgBouncer 1.21.
pgb_prepared_ok() {
	[ -n "$PGB_VERSION" ] && [ "$(printf '%s\n1.21\n' "$PGB_VERSION" | sort -V | head -n1)" = 1.21 ]
}

start_pgbouncer() {
	{
		printf '[databases]\n%s = host=%s port=%s dbname=%s\n' "$DB" "$(backend_host)" "$PG_PORT" "$DB"
		pgb_ini_head "$PGB_PORT" "$POOL_SIZE" 1000
		if pgb_prepared_ok; then echo "max_prepared_statements = 200"; fi
	} >"$DIR/pgbouncer.ini"
	launch_pgbouncer pgbouncer "$DIR/pgbouncer.ini" "$DIR/pgbouncer.log" &&
		await_target pgbouncer "$DIR/pgbouncer.log" "$PGB_PORT" "$DB_USER" "$DB" &&
		await_query pgbouncer "$DIR/pgbouncer.log" "$PGB_PORT" "$DB_USER" "$DB"
}

start_pgtenant() {
	{
		pgt_ini_head "$PGT_PORT"
		printf 'default_pool_size = %s\nmax_client_conn = 1000\n' "$POOL_SIZE"
		pgt_ini_backend "$POOL_SIZE"
		pgt_ini_tenant "$TENANT" database "dbname = $DB"
	} >"$DIR/pgtenant.ini"
	launch_pgtenant pgtenant "$DIR/pgtenant.ini" "$DIR/pgtenant.log" &&
		await_target pgtenant "$DIR/pgtenant.log" "$PGT_PORT" "$PGT_USER" "$PGT_DB" &&
		await_query pgtenant "$DIR/pgtenant.log" "$PGT_PORT" "$PGT_USER" "$PGT_DB" 'SELECT count(*) FROM pgbench_branches'
}

declare -A FAILED=() # target -> reason, once it cannot run any more
active=""
for t in $TARGETS; do
	case $t in
		direct) active="$active direct" ;;
		pgtenant) if start_pgtenant; then active="$active pgtenant"; else FAILED[pgtenant]="did not start"; fi ;;
		pgbouncer) if start_pgbouncer; then active="$active pgbouncer"; else FAILED[pgbouncer]="did not start"; fi ;;
		*) die "unknown target $t (TARGETS: direct pgtenant pgbouncer)" ;;
	esac
done

# ---------------------------------------------------------------- runs

# Cases: "mode clients kind", kind 0 (plain), 1 (-C: a connection per transaction) or
# L (per-transaction latencies logged)
CASE_LIST=${CASES:-}
CASES=()
if [ -z "$CASE_LIST" ]; then
	for m in $MODES; do
		for c in $CLIENTS; do CASE_LIST="$CASE_LIST $m:$c"; done
	done
	[ "$BENCH_CONNECT" = 1 ] && CASE_LIST="$CASE_LIST connect:$CONNECT_CLIENTS"
	[ "${BENCH_LATENCY:-0}" = 1 ] && CASE_LIST="$CASE_LIST latency:1"
fi
for cs in $CASE_LIST; do
	m=${cs%%:*} c=${cs#*:}
	[[ $c =~ ^[0-9]+$ ]] || die "bad case $cs (MODE:CLIENTS)"
	case $m in
		simple | extended | prepared) CASES+=("$m $c 0") ;;
		connect) CASES+=("simple $c 1") ;;
		latency) CASES+=("simple $c L") ;;
		*) die "unknown mode $m in case $cs" ;;
	esac
done

declare -A TPS=() CPU=() P50=() USR=() SYS=() # "mode clients kind target" -> space-separated values per round

target_conn() { # target -> "port user db pid"
	case $1 in
		direct) echo "$PG_PORT $DB_USER $DB -" ;;
		pgtenant) echo "$PGT_PORT $PGT_USER $PGT_DB ${PID[pgtenant]:-}" ;;
		pgbouncer) echo "$PGB_PORT $DB_USER $DB ${PID[pgbouncer]:-}" ;;
	esac
}

# One pgbench run. Prints "tps transactions cpu_us_per_tx p50_us" ("-" for no
# CPU or latency figure), or returns 1.
run_one() { # target mode clients kind duration
	local target=$1 mode=$2 clients=$3 kind=$4 dur=$5 port user db pid args=() res p50=-
	read -r port user db pid <<<"$(target_conn "$target")"
	args=(-n -S -M "$mode" -c "$clients" -j "$((clients < JOBS ? clients : JOBS))" -T "$dur" -h 127.0.0.1 -p "$port" -U "$user")
	[ "$kind" = 1 ] && args+=(-C)
	if [ "$kind" = L ]; then
		rm -f "$DIR"/lat.*
		args+=(-l "--log-prefix=$DIR/lat")
	fi
	res=$(pgbench_cpu "$pid" "$dur" "$DIR/pgbench-last.log" "${args[@]}" "$db") || return 1
	# the log's third field is each transaction's latency in microseconds
	[ "$kind" = L ] && p50=$(cat "$DIR"/lat.* | awk '{ print $3 }' | sort -n |
		awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }')
	echo "$res ${p50:--}"
}

skip_reason() { # target mode -> prints a reason when this target cannot run this mode
	if [ -n "${FAILED[$1]:-}" ]; then
		echo "${FAILED[$1]}"
	elif [ "$1" = pgbouncer ] && [ "$2" = prepared ] && ! pgb_prepared_ok; then
		echo "PgBouncer $PGB_VERSION has no prepared statements in transaction mode (1.21+)"
	fi
}

case_name() { # mode kind -> what the tables call the case
	case $2 in 1) echo connect ;; L) echo latency ;; *) echo "$1" ;; esac
}

n_runs=$((ROUNDS * ${#CASES[@]} * 3))
note "$(date -Is): $ROUNDS rounds x ${#CASES[@]} cases x {direct, pgtenant, pgbouncer}, ${DURATION}s each: about $(((n_runs * (DURATION + 1) + 59) / 60)) min"
out_header "pgtenant benchmark"
out "pgbench -S -j $JOBS -T $DURATION, scale $SCALE, pool size $POOL_SIZE, transaction mode, $ROUNDS rounds (medians)"
out ""

# A short warm-up per target: fills the poolers' pools and PostgreSQL's cache.
for t in $active; do
	run_one "$t" simple 10 0 2 >/dev/null || true
done

any_failed=0
for r in $(seq "$ROUNDS"); do
	for cs in "${CASES[@]}"; do
		read -r m c kind <<<"$cs"
		for t in ${ORDER:-direct pgtenant pgbouncer}; do
			case " $TARGETS " in *" $t "*) ;; *) continue ;; esac
			label="round $r: $(case_name "$m" "$kind") $c clients $t"
			reason=$(skip_reason "$t" "$m")
			if [ -n "$reason" ]; then
				continue
			fi
			if [ "$t" = pgtenant ] && ! kill -0 "${PID[pgtenant]}" 2>/dev/null; then
				wait "${PID[pgtenant]}" 2>/dev/null && st=0 || st=$?
				FAILED[pgtenant]="exited (status $st)"
				note "pgtenant has exited (status $st); its log ends:"
				tail -n 20 "$DIR/pgtenant.log" >&2
				any_failed=1
				continue
			fi
			if res=$(run_one "$t" "$m" "$c" "$kind" "$DURATION"); then
				read -r tps tx cpu p50 <<<"$res"
				TPS["$cs $t"]+="$tps "
				[ "$cpu" != - ] && CPU["$cs $t"]+="$cpu "
				[ "$p50" != - ] && P50["$cs $t"]+="$p50 "
				if [ -s "$DIR/pgbench-last.log.split" ]; then
					read -r usr sys <"$DIR/pgbench-last.log.split"
					USR["$cs $t"]+="$usr "
					SYS["$cs $t"]+="$sys "
				fi
				out "$(printf '%-44s tps %10.1f  tx %9d  cpu/tx %s%s' "$label" "$tps" "$tx" \
					"$([ "$cpu" = - ] && echo - || echo "${cpu}us")" "$([ "$p50" = - ] || echo "  p50 ${p50}us")")"
			else
				any_failed=1
				out "$(printf '%-44s FAILED:' "$label")"
				# The first errors say why; pgbench's summary after them does not.
				{ grep -m 3 -iE 'error|fatal|abort' "$DIR/pgbench-last.log" || tail -n 3 "$DIR/pgbench-last.log"; } |
					sed 's/^/    /' | tee -a "$RESULT" >&2
			fi
		done
	done
done

# ---------------------------------------------------------------- table

cell() { # value or a reason it is missing
	if [ -n "$1" ]; then echo "$1"; elif [ -n "$2" ]; then echo "$2"; else echo FAIL; fi
}

out ""
out "Medians over $ROUNDS rounds (tps; CPU = the pooler's own user+system time per transaction)"
out ""
hdr=$(printf '%-9s %7s %11s %11s %11s %9s %9s %12s %12s' mode clients direct pgtenant pgbouncer "pgt/dir" "pgt/pgb" "pgt_cpu_us" "pgb_cpu_us")
p50_rows=()
out "$hdr"
out "$(printf '%s' "$hdr" | tr -c '\n' -)"
for cs in "${CASES[@]}"; do
	read -r m c kind <<<"$cs"
	mname=$(case_name "$m" "$kind")
	dtps=$(median "${TPS["$cs direct"]:-}")
	ttps=$(median "${TPS["$cs pgtenant"]:-}")
	btps=$(median "${TPS["$cs pgbouncer"]:-}")
	tcpu=$(median "${CPU["$cs pgtenant"]:-}")
	bcpu=$(median "${CPU["$cs pgbouncer"]:-}")
	missing() { # target -> "n/a" when not run by choice or by limitation, else empty
		case " $TARGETS " in *" $1 "*) ;; *) echo n/a; return ;; esac
		[ -n "$(skip_reason "$1" "$m")" ] && [ -z "${FAILED[$1]:-}" ] && echo n/a
		return 0
	}
	out "$(printf '%-9s %7s %11s %11s %11s %9s %9s %12s %12s' "$mname" "$c" \
		"$(cell "$dtps" "$(missing direct)")" "$(cell "$ttps" "$(missing pgtenant)")" "$(cell "$btps" "$(missing pgbouncer)")" \
		"$(ratio "$ttps" "$dtps")" "$(ratio "$ttps" "$btps")" \
		"$(cell "$tcpu" "$(missing pgtenant)")" "$(cell "$bcpu" "$(missing pgbouncer)")")"
	key="run.$mname.$c"
	for t in direct pgtenant pgbouncer; do
		v=$(median "${TPS["$cs $t"]:-}") && [ -n "$v" ] && summary "$key.tps.$t" "$v"
		v=$(median "${CPU["$cs $t"]:-}") && [ -n "$v" ] && summary "$key.cpu_us.$t" "$v"
		v=$(median "${P50["$cs $t"]:-}") && [ -n "$v" ] && summary "$key.p50_us.$t" "$v"
		v=$(median "${USR["$cs $t"]:-}") && [ -n "$v" ] && summary "$key.usr_us.$t" "$v"
		v=$(median "${SYS["$cs $t"]:-}") && [ -n "$v" ] && summary "$key.sys_us.$t" "$v"
		[ -n "$(missing "$t")" ] && summary "$key.tps.$t" "n/a"
	done
	if [ "$kind" = L ]; then
		dp=$(median "${P50["$cs direct"]:-}")
		for t in pgtenant pgbouncer; do
			tp=$(median "${P50["$cs $t"]:-}")
			[ -n "$dp" ] && [ -n "$tp" ] && p50_rows+=("$(printf '%-10s p50 %8.1f us   direct %8.1f us   added %6.1f us' "$t" "$tp" "$dp" \
				"$(awk -v a="$tp" -v b="$dp" 'BEGIN { print a - b }')")")
		done
	fi
done
out ""
if [ "${#p50_rows[@]}" -gt 0 ]; then
	out "Latency of one client (pgbench -l), medians of each round's p50:"
	for l in "${p50_rows[@]}"; do out "$l"; done
	out ""
fi
for t in pgtenant pgbouncer; do
	[ -n "${FAILED[$t]:-}" ] && out "NOTE: $t ${FAILED[$t]}; its runs are marked FAIL."
done
[ "$any_failed" = 1 ] && out "NOTE: some runs FAILED; the FAILED lines above give pgbench's first errors."
case " ${CASES[*]} " in *" prepared "*) pgb_prepared_ok || out "NOTE: PgBouncer $PGB_VERSION cannot run -M prepared in transaction mode (needs 1.21); marked n/a." ;; esac
[ "$(nproc)" -le 4 ] && out "NOTE: $(nproc) CPUs: pgbench, PostgreSQL and the pooler share them, so pooler overhead shows up in the direct/pooled ratio more than on a larger machine."
note "results written to $RESULT"
[ -n "${FAILED[pgtenant]:-}${FAILED[pgbouncer]:-}" ] && any_failed=1
exit "$any_failed"
