#!/bin/bash
# `make bench`: every figure of the performance targets in one table, pgtenant beside
# PgBouncer (Debian's, same pool size and mode) and a direct connection.
#
# It runs, one after the other (each script starts and stops its own PostgreSQL and
# poolers; see their headers for how they measure):
#   run.sh      pgbench -S: simple 10 and 100 clients, extended 10, prepared 10, -C 20,
#               and one client with per-transaction latencies; targets interleaved in
#               each round; the pooler's own CPU per transaction from /proc/PID/stat
#   run.sh      again with BACKEND_SOCKET=unix: both poolers reach PostgreSQL over its
#               unix socket (-S simple, 10 clients)
#   tenants.sh  pgtenant's CPU per transaction with TENANTS schema tenants and read
#               routing on, against one plain tenant with the same clients
#   idle.sh     RSS per idle client at 5,000 and 10,000 clients; 1,000 active clients
#               while 10,000 are held
#   syscost.c   what the kernel charges here per socket operation: the floor under
#               any pooler's CPU per transaction
# Each script appends "key value" lines to a summary file (lib.sh's `summary`); this
# script reads them back into the table. Keys: run.<case>.<clients>.{tps,cpu_us,p50_us}.
# <target>, tenants.cpu_us.{one,many}.<target>, idle.kb.<clients>.<target>,
# idle.active.{tps,errors}.<target>.
#
# Environment: DURATION [10] and ROUNDS [3] for run.sh; SKIP (a list of run, unix,
# tenants, idle, syscost) to leave parts out; every script's own settings pass through.
# The table is printed and written to bench/results/all-<timestamp>.txt, the scripts'
# own results beside it. Exit status: 0 when every part ran, 1 otherwise.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
trap - EXIT # nothing of its own to clean up: each part cleans up after itself

defaults DURATION=10 ROUNDS=3 SKIP=""
bench_results all
SUM=$RESULTS_DIR/all-$STAMP.summary
: >"$SUM"
[ -n "${BENCH_REUSE:-}" ] && cp "$BENCH_REUSE" "$SUM" # (development) a summary file to tabulate again
status=0

part() { # name command...: runs one script with the summary file, notes a failure
	local name=$1
	shift
	case " $SKIP " in *" $name "*)
		note "$name: skipped (SKIP)"
		return 0
		;;
	esac
	note "$(date +%H:%M:%S) $name: $*"
	if ! BENCH_SUMMARY=$SUM "$@"; then
		note "$name: FAILED (its output above says why)"
		status=1
	fi
}

part run env DURATION="$DURATION" ROUNDS="$ROUNDS" \
	CASES="simple:10 simple:100 extended:10 prepared:10 connect:20 latency:1" bash "$BENCH_LIB_DIR/run.sh"
part unix env DURATION="$DURATION" ROUNDS="$ROUNDS" BENCH_SUMMARY_PREFIX=unix. BACKEND_SOCKET=unix \
	TARGETS="pgtenant pgbouncer" CASES="simple:10" bash "$BENCH_LIB_DIR/run.sh"
part tenants bash "$BENCH_LIB_DIR/tenants.sh"
part idle bash "$BENCH_LIB_DIR/idle.sh"

# What the kernel charges here per socket operation (bench/syscost.c): the floor
# under any pooler's CPU per transaction.
SYSCOST=""
case " $SKIP " in *" syscost "*) ;; *)
	if cc -O2 -o "$RESULTS_DIR/.syscost" "$BENCH_LIB_DIR/syscost.c" 2>/dev/null; then
		SYSCOST=$("$RESULTS_DIR/.syscost") || SYSCOST=""
		rm -f "$RESULTS_DIR/.syscost"
	fi
	[ -n "$SYSCOST" ] || { note "syscost: FAILED"; status=1; }
	;;
esac

# ---------------------------------------------------------------- the table

get() { awk -v k="$1" '$1 == k { v = $2 } END { if (v != "") print v }' "$SUM"; }
num() { [[ ${1:-} =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
verdict() { # value op limit -> yes/no, or "?" without a value
	if num "$1"; then awk -v v="$1" -v l="$3" "BEGIN { print (v $2 l) ? \"yes\" : \"no\" }"; else echo "?"; fi
}
show() { if [ -n "${1:-}" ]; then echo "$1"; else echo "-"; fi; }

ROWS=()
row() { # figure target pgtenant pgbouncer direct ratio met
	ROWS+=("$(printf '%-44s|%-24s|%15s|%15s|%10s|%10s|%4s' "$1" "$2" "$(show "$3")" "$(show "$4")" "$(show "$5")" "$(show "$6")" "$7")")
}

# CPU per transaction, -S 10 clients
t=$(get run.simple.10.cpu_us.pgtenant) b=$(get run.simple.10.cpu_us.pgbouncer)
r=""; num "$t" && num "$b" && r="$(calc "$t / $b") pgb"
row "pooler CPU/tx, -S 10 clients (us)" "<= 16 us" "$t" "$b" "" "$r" "$(verdict "$t" '<=' 16)"
tu=$(get run.simple.10.usr_us.pgtenant) ts=$(get run.simple.10.sys_us.pgtenant)
bu=$(get run.simple.10.usr_us.pgbouncer) bs=$(get run.simple.10.sys_us.pgbouncer)
row "  of it user / kernel (us)" "(where it goes)" "${tu:+$tu / $ts}" "${bu:+$bu / $bs}" "" "" ""
t=$(get unix.run.simple.10.cpu_us.pgtenant) b=$(get unix.run.simple.10.cpu_us.pgbouncer)
r=""; num "$t" && num "$b" && r="$(calc "$t / $b") pgb"
row "  the same, unix socket to PostgreSQL (us)" "<= 16 us" "$t" "$b" "" "$r" "$(verdict "$t" '<=' 16)"

# the same with many tenants and read routing
one=$(get tenants.cpu_us.one.pgtenant) many=$(get tenants.cpu_us.many.pgtenant) n=$(get tenants.count)
d=""; num "$one" && num "$many" && d=$(calc "$many - $one" 1)
row "CPU/tx, ${n:-1000} schema tenants + routing (us)" "<= +1 us over 1 tenant" \
	"${many:+$many (1: $one)}" "$(get tenants.cpu_us.many.pgbouncer)" "" "${d:++$d us}" "$(verdict "$d" '<=' 1)"

for c in simple.10 simple.100 extended.10; do
	t=$(get "run.$c.tps.pgtenant") b=$(get "run.$c.tps.pgbouncer") dir=$(get "run.$c.tps.direct")
	r=""; num "$t" && num "$b" && r=$(calc "$t / $b")
	row "-S ${c%.*} ${c#*.} clients (tps)" ">= 1.10x PgBouncer" "$t" "$b" "$dir" "${r:+$r pgb}" "$(verdict "$r" '>=' 1.1)"
done

t=$(get run.prepared.10.tps.pgtenant) b=$(get run.prepared.10.tps.pgbouncer) dir=$(get run.prepared.10.tps.direct)
r=""; num "$t" && num "$dir" && r=$(calc "$t / $dir")
row "-S -M prepared 10 clients (tps)" ">= 0.47x direct" "$t" "$b" "$dir" "${r:+$r dir}" "$(verdict "$r" '>=' 0.473)"

t=$(get run.connect.20.tps.pgtenant) b=$(get run.connect.20.tps.pgbouncer) dir=$(get run.connect.20.tps.direct)
r=""; num "$t" && num "$b" && r=$(calc "$t / $b")
row "-S -C 20 clients (tps)" ">= 1.00x PgBouncer" "$t" "$b" "$dir" "${r:+$r pgb}" "$(verdict "$r" '>=' 1.0)"

t=$(get run.latency.1.p50_us.pgtenant) b=$(get run.latency.1.p50_us.pgbouncer) dir=$(get run.latency.1.p50_us.direct)
ta=""; num "$t" && num "$dir" && ta=$(calc "$t - $dir" 1)
ba=""; num "$b" && num "$dir" && ba=$(calc "$b - $dir" 1)
row "added latency p50, 1 client (us)" "<= 25 us over direct" "${ta:++$ta}" "${ba:++$ba}" "$dir" "" "$(verdict "$ta" '<=' 25)"

for c in 5000 10000; do
	t=$(get "idle.kb.$c.pgtenant") b=$(get "idle.kb.$c.pgbouncer")
	r=""; num "$t" && num "$b" && r="$(calc "$t / $b") pgb"
	row "RSS per idle client, $c clients (kB)" "<= 1.0 kB" "$t" "$b" "" "$r" "$(verdict "$t" '<=' 1.0)"
done
t=$(get idle.active.errors.pgtenant) b=$(get idle.active.errors.pgbouncer)
row "$(show "$(get idle.active.held)") held + $(show "$(get idle.active.clients)") active: errors" "0 errors" \
	"${t:+$t ($(get idle.active.tps.pgtenant) tps)}" "${b:+$b ($(get idle.active.tps.pgbouncer) tps)}" "" "" "$(verdict "$t" '==' 0)"

out ""
out_header "pgtenant performance targets (make bench)"
hdr=$(printf '%-44s|%-24s|%15s|%15s|%10s|%10s|%4s' figure target pgtenant pgbouncer direct ratio met)
out "$hdr"
out "$(printf '%s' "$hdr" | tr -c '|\n' -)"
for l in "${ROWS[@]}"; do out "$l"; done
if [ -n "$SYSCOST" ]; then
	out ""
	out "Kernel CPU per operation on this machine (bench/syscost.c, ns): $(tr '\n' ' ' <<<"$SYSCOST")"
	out "(a null syscall; 64 bytes sent and received over loopback TCP and over a unix socket pair;"
	out "a round trip between two processes over TCP, both sides, wake-ups included, on two CPUs and"
	out "on one). A pooler makes two sends and two receives per transaction whatever its logic, and"
	out "each send wakes a process: where that lands on an idle CPU, the waker pays the difference"
	out "between the last two figures (an interrupt between virtual CPUs) - the load-dependent part"
	out "of every pooler's CPU per transaction here."
fi
out ""
out "ratio: pgtenant over PgBouncer (pgb) or over direct (dir). PgBouncer is $PGB_VERSION; a '-' is a"
out "figure that was not measured (a part skipped or failed, or PgBouncer cannot run the case)."
note "table written to $RESULT; figures in $SUM"
exit "$status"
