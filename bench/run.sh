#!/bin/bash
# shellcheck disable=SC2317  # functions run from traps look unreachable
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
#   TARGETS ["direct pgtenant pgbouncer"]
#   SCALE [10]             pgbench -i -s
#   POOL_SIZE [20]         server connections of each pooler
#   TENANT_FROM [database] how the client names its tenant: database (-d acme)
#                          or user (-U bench.acme)
#   PG_PORT [35432] PGT_PORT [36432] PGB_PORT [36433]
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]  PGBOUNCER [/usr/sbin/pgbouncer]
#   BENCH_KEEP [0]         1: keep the temporary directory (logs, configs)
#
# Results are printed and also written to bench/results/<timestamp>.txt.
# Exit status: 0 when every run succeeded, 1 when some failed (the table says
# which), 2 when the setup failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
JOBS=${JOBS:-2}
CLIENTS=${CLIENTS:-"10 100"}
MODES=${MODES:-"simple extended"}
[ "${BENCH_PREPARED:-0}" = 1 ] && MODES="$MODES prepared"
BENCH_CONNECT=${BENCH_CONNECT:-0}
CONNECT_CLIENTS=${CONNECT_CLIENTS:-20}
TARGETS=${TARGETS:-"direct pgtenant pgbouncer"}
SCALE=${SCALE:-10}
POOL_SIZE=${POOL_SIZE:-20}
TENANT_FROM=${TENANT_FROM:-database}
PG_PORT=${PG_PORT:-35432}
PGT_PORT=${PGT_PORT:-36432}
PGB_PORT=${PGB_PORT:-36433}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGTENANT=${PGTENANT:-$ROOT/pgtenant}
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}
BENCH_KEEP=${BENCH_KEEP:-0}

TENANT=acme
DB=bench
DB_USER=bench
DB_PASS=benchpass
export PGPASSWORD=$DB_PASS PGCONNECT_TIMEOUT=10

CLK_TCK=$(getconf CLK_TCK)
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS_DIR=$ROOT/bench/results
RESULT=$RESULTS_DIR/$STAMP.txt
mkdir -p "$RESULTS_DIR"
: >"$RESULT"

out() { printf '%s\n' "$*" | tee -a "$RESULT"; }
note() { printf 'bench: %s\n' "$*" | tee -a "$RESULT" >&2; }
die() { note "error: $*"; exit 2; }

# ---------------------------------------------------------------- processes

DIR=""
PGT_PID=""
PGB_PID=""
PG_STARTED=0

if [ "$(id -u)" = 0 ]; then
	RUN_USER=postgres
	id "$RUN_USER" >/dev/null 2>&1 ||
		useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh "$RUN_USER"
	as_pg() { (cd / && runuser -u "$RUN_USER" -- "$@"); }
	# A command prefix, not a function: a background function would be a
	# subshell, and $! must be the program's own PID (setpriv execs it).
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
		if [ "$BENCH_KEEP" = 1 ]; then
			note "kept $DIR"
		else
			rm -rf "$DIR"
		fi
	fi
}
trap cleanup EXIT
trap 'note "interrupted"; exit 130' INT TERM

port_busy() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

wait_ready() { # port pid user db: up to 10 s for the port to answer a startup packet
	local _
	for _ in $(seq 100); do
		[ -n "$2" ] && ! kill -0 "$2" 2>/dev/null && return 1
		"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U "$3" -d "$4" -t 1 && return 0
		sleep 0.1
	done
	return 1
}

cpu_ticks() { # pid -> utime+stime in clock ticks; the comm field may hold spaces
	local stat rest f
	stat=$(<"/proc/$1/stat") || return 1
	rest=${stat##*) }
	read -ra f <<<"$rest"
	echo $((f[11] + f[12])) # fields 14 and 15; f[0] is field 3
}

# ---------------------------------------------------------------- setup

# Installs missing packages (PostgreSQL, PgBouncer) as root; nothing when all are there.
"$ROOT/scripts/deps.sh" || die "missing packages (see above)"
for p in pgbench psql pg_isready initdb pg_ctl; do
	[ -x "$PG_BIN/$p" ] || die "$PG_BIN/$p not found (install postgresql-15, or set PG_BIN)"
done
for p in $PG_PORT $PGT_PORT $PGB_PORT; do
	port_busy "$p" && die "port $p is already in use (set PG_PORT, PGT_PORT or PGB_PORT)"
done
case $TENANT_FROM in
	database) PGT_USER=$DB_USER PGT_DB=$TENANT ;;
	user) PGT_USER=$DB_USER.$TENANT PGT_DB=$DB ;;
	*) die "TENANT_FROM must be database or user" ;;
esac

DIR=$(mktemp -d /tmp/pgtenant-bench.XXXXXX)
chmod 755 "$DIR"
mkdir "$DIR/pgdata" "$DIR/run"
[ "$(id -u)" = 0 ] && chown "$RUN_USER": "$DIR/pgdata" "$DIR/run"

note "PostgreSQL on 127.0.0.1:$PG_PORT in $DIR"
as_pg "$PG_BIN/initdb" -D "$DIR/pgdata" -U postgres --encoding=UTF8 --locale=C \
	--auth-local=peer --auth-host=scram-sha-256 >/dev/null
cat >>"$DIR/pgdata/postgresql.conf" <<EOF

# pgtenant bench: throwaway, speed over durability
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$DIR/run'
max_connections = 300
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

note "pgbench -i -s $SCALE"
timeout 900 "$PG_BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" "$DB" \
	>"$DIR/pgbench-init.log" 2>&1 || { tail -n 20 "$DIR/pgbench-init.log" >&2; die "pgbench -i failed"; }

printf '"%s" "%s"\n' "$DB_USER" "$DB_PASS" >"$DIR/userlist.txt"
chmod 644 "$DIR/userlist.txt" # read by PgBouncer as $RUN_USER; a throwaway password

PGB_VERSION=$("$PGBOUNCER" --version 2>/dev/null | awk 'NR == 1 { print $2 }') || PGB_VERSION=""
# Named prepared statements in transaction mode need PgBouncer 1.21.
pgb_prepared_ok() {
	[ -n "$PGB_VERSION" ] && [ "$(printf '%s\n1.21\n' "$PGB_VERSION" | sort -V | head -n1)" = 1.21 ]
}

start_pgbouncer() {
	[ -x "$PGBOUNCER" ] || { note "PgBouncer: $PGBOUNCER not found"; return 1; }
	cat >"$DIR/pgbouncer.ini" <<-EOF
		[databases]
		$DB = host=127.0.0.1 port=$PG_PORT dbname=$DB

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
	pgb_prepared_ok && echo "max_prepared_statements = 200" >>"$DIR/pgbouncer.ini"
	"${AS_PG_EXEC[@]}" "$PGBOUNCER" "$DIR/pgbouncer.ini" >"$DIR/pgbouncer.log" 2>&1 &
	PGB_PID=$!
	if ! wait_ready "$PGB_PORT" "$PGB_PID" "$DB_USER" "$DB" ||
		! timeout 15 "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PGB_PORT" -U "$DB_USER" -d "$DB" \
			-c 'SELECT 1' >/dev/null 2>>"$DIR/pgbouncer.log"; then
		note "PgBouncer FAILED to start or to serve a query; its log:"
		tail -n 20 "$DIR/pgbouncer.log" >&2
		return 1
	fi
}

start_pgtenant() {
	if [ ! -x "$PGTENANT" ]; then
		note "pgtenant FAILED: $PGTENANT not found (run make pgtenant)"
		return 1
	fi
	cat >"$DIR/pgtenant.ini" <<-EOF
		[pgtenant]
		listen_addr = 127.0.0.1
		listen_port = $PGT_PORT
		pool_mode = transaction
		auth_type = scram-sha-256
		auth_file = $DIR/userlist.txt
		tenant_users = *
		default_pool_size = $POOL_SIZE
		max_client_conn = 1000
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

		[tenant $TENANT]
		mode = database
		backend = pg
		dbname = $DB
	EOF
	if ! timeout 30 "$PGTENANT" --check "$DIR/pgtenant.ini" >"$DIR/pgtenant.log" 2>&1; then
		note "pgtenant FAILED: --check rejected the bench configuration:"
		tail -n 20 "$DIR/pgtenant.log" >&2
		return 1
	fi
	"$PGTENANT" "$DIR/pgtenant.ini" >>"$DIR/pgtenant.log" 2>&1 &
	PGT_PID=$!
	if ! wait_ready "$PGT_PORT" "$PGT_PID" "$PGT_USER" "$PGT_DB"; then
		note "pgtenant FAILED to start listening on 127.0.0.1:$PGT_PORT; its log:"
		tail -n 20 "$DIR/pgtenant.log" >&2
		return 1
	fi
	if ! timeout 15 "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PGT_PORT" -U "$PGT_USER" -d "$PGT_DB" \
		-c 'SELECT count(*) FROM pgbench_branches' >/dev/null 2>>"$DIR/pgtenant.log"; then
		note "pgtenant FAILED to serve a query as $PGT_USER / $PGT_DB; its log:"
		tail -n 20 "$DIR/pgtenant.log" >&2
		return 1
	fi
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

# Cases: "mode clients connect"
CASES=()
for m in $MODES; do
	case $m in simple | extended | prepared) ;; *) die "unknown mode $m" ;; esac
	for c in $CLIENTS; do CASES+=("$m $c 0"); done
done
[ "$BENCH_CONNECT" = 1 ] && CASES+=("simple $CONNECT_CLIENTS 1")

declare -A TPS=() CPU=() # "mode clients connect target" -> space-separated values per round

target_conn() { # target -> "port user db pid"
	case $1 in
		direct) echo "$PG_PORT $DB_USER $DB -" ;;
		pgtenant) echo "$PGT_PORT $PGT_USER $PGT_DB $PGT_PID" ;;
		pgbouncer) echo "$PGB_PORT $DB_USER $DB $PGB_PID" ;;
	esac
}

# One pgbench run. Prints "tps transactions cpu_us_per_tx" ("-" for no CPU
# figure), or returns 1.
run_one() { # target mode clients connect duration
	local target=$1 mode=$2 clients=$3 conn=$4 dur=$5 port user db pid
	local t0="" t1 log=$DIR/pgbench-last.log args=() tps tx
	read -r port user db pid <<<"$(target_conn "$target")"
	args=(-n -S -M "$mode" -c "$clients" -j "$JOBS" -T "$dur" -h 127.0.0.1 -p "$port" -U "$user")
	[ "$conn" = 1 ] && args+=(-C)
	if [ "$pid" != - ]; then
		t0=$(cpu_ticks "$pid") || return 1
	fi
	if ! timeout -k 5 $((dur + 60)) "$PG_BIN/pgbench" "${args[@]}" "$db" >"$log" 2>&1; then
		cat "$log" >>"$DIR/pgbench-failures.log"
		return 1
	fi
	[ "$pid" != - ] && { t1=$(cpu_ticks "$pid") || return 1; }
	tps=$(awk '/^tps = / { print $3; exit }' "$log")
	tx=$(awk -F': ' '/^number of transactions actually processed/ { print $2; exit }' "$log")
	tx=${tx%%/*}
	[ -n "$tps" ] && [ -n "$tx" ] && [ "$tx" -gt 0 ] || return 1
	if [ "$pid" = - ]; then
		echo "$tps $tx -"
	else
		echo "$tps $tx $(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$tx" 'BEGIN { printf "%.1f", d * 1e6 / hz / n }')"
	fi
}

skip_reason() { # target mode -> prints a reason when this target cannot run this mode
	if [ -n "${FAILED[$1]:-}" ]; then
		echo "${FAILED[$1]}"
	elif [ "$1" = pgbouncer ] && [ "$2" = prepared ] && ! pgb_prepared_ok; then
		echo "PgBouncer $PGB_VERSION has no prepared statements in transaction mode (1.21+)"
	fi
}

n_runs=$((ROUNDS * ${#CASES[@]} * 3))
note "$(date -Is): $ROUNDS rounds x ${#CASES[@]} cases x {direct, pgtenant, pgbouncer}, ${DURATION}s each: about $(((n_runs * (DURATION + 1) + 59) / 60)) min"
out "pgtenant benchmark $STAMP"
out "host: $(uname -srm), $(nproc) CPUs; $("$PG_BIN/postgres" --version); PgBouncer ${PGB_VERSION:-?}"
out "pgtenant: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
out "pgbench -S -j $JOBS -T $DURATION, scale $SCALE, pool size $POOL_SIZE, transaction mode, $ROUNDS rounds (medians)"
out ""

# A short warm-up per target: fills the poolers' pools and PostgreSQL's cache.
for t in $active; do
	run_one "$t" simple 10 0 2 >/dev/null || true
done

any_failed=0
for r in $(seq "$ROUNDS"); do
	for cs in "${CASES[@]}"; do
		read -r m c conn <<<"$cs"
		for t in direct pgtenant pgbouncer; do
			case " $TARGETS " in *" $t "*) ;; *) continue ;; esac
			label="round $r: $m $c clients"
			[ "$conn" = 1 ] && label="$label -C"
			label="$label $t"
			reason=$(skip_reason "$t" "$m")
			if [ -n "$reason" ]; then
				continue
			fi
			if [ "$t" = pgtenant ] && ! kill -0 "$PGT_PID" 2>/dev/null; then
				wait "$PGT_PID" 2>/dev/null && st=0 || st=$?
				FAILED[pgtenant]="exited (status $st)"
				note "pgtenant has exited (status $st); its log ends:"
				tail -n 20 "$DIR/pgtenant.log" >&2
				any_failed=1
				continue
			fi
			if res=$(run_one "$t" "$m" "$c" "$conn" "$DURATION"); then
				read -r tps tx cpu <<<"$res"
				TPS["$cs $t"]+="$tps "
				[ "$cpu" != - ] && CPU["$cs $t"]+="$cpu "
				out "$(printf '%-44s tps %10.1f  tx %9d  cpu/tx %s' "$label" "$tps" "$tx" "$([ "$cpu" = - ] && echo - || echo "${cpu}us")")"
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

median() { # values -> median, or empty
	[ -z "${1// /}" ] && return 0
	tr ' ' '\n' <<<"$1" | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { # a b -> a/b or "-"
	if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; else echo -; fi
}
cell() { # value or a reason it is missing
	if [ -n "$1" ]; then echo "$1"; elif [ -n "$2" ]; then echo "$2"; else echo FAIL; fi
}

out ""
out "Medians over $ROUNDS rounds (tps; CPU = the pooler's own user+system time per transaction)"
out ""
hdr=$(printf '%-9s %7s %11s %11s %11s %9s %9s %12s %12s' mode clients direct pgtenant pgbouncer "pgt/dir" "pgt/pgb" "pgt_cpu_us" "pgb_cpu_us")
out "$hdr"
out "$(printf '%s' "$hdr" | tr -c '\n' -)"
for cs in "${CASES[@]}"; do
	read -r m c conn <<<"$cs"
	mname=$m
	[ "$conn" = 1 ] && mname="$m -C"
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
done
out ""
for t in pgtenant pgbouncer; do
	[ -n "${FAILED[$t]:-}" ] && out "NOTE: $t ${FAILED[$t]}; its runs are marked FAIL."
done
[ "$any_failed" = 1 ] && out "NOTE: some runs FAILED; the FAILED lines above give pgbench's first errors."
case " $MODES " in *" prepared "*) pgb_prepared_ok || out "NOTE: PgBouncer $PGB_VERSION cannot run -M prepared in transaction mode (needs 1.21); marked n/a." ;; esac
[ "$(nproc)" -le 4 ] && out "NOTE: $(nproc) CPUs: pgbench, PostgreSQL and the pooler share them, so pooler overhead shows up in the direct/pooled ratio more than on a larger machine."
note "results written to $RESULT"
[ -n "${FAILED[pgtenant]:-}${FAILED[pgbouncer]:-}" ] && any_failed=1
exit "$any_failed"
