# shellcheck shell=bash
# shellcheck disable=SC2034  # settings and results are read by the scripts that source this
# shellcheck disable=SC2317  # functions run from traps look unreachable
# Shared by the bench scripts: sourced (after `set -euo pipefail`), not run.
#
#   settings   PG_BIN PGTENANT PGBOUNCER PYTHON BENCH_KEEP from the environment, with
#              defaults; DB, DB_USER, DB_PASS (PGPASSWORD exported); ROOT; PGB_VERSION
#   results    bench_results NAME: STAMP and RESULT (bench/results/NAME-STAMP.txt);
#              out (printed and saved), note (stderr and saved, "$NOTE_TAG: " first), die;
#              summary KEY VALUE (a figure for bench/all.sh, into $BENCH_SUMMARY if set)
#   processes  RUN_USER, as_pg, AS_PG_EXEC: PostgreSQL and PgBouncer refuse root, so as
#              root they run as `postgres`. PID[name] holds every pooler (or other helper)
#              started in the background and CLUSTERS every PostgreSQL data directory
#              started; the EXIT trap stops them all and removes DIR (unless BENCH_KEEP=1).
#   PostgreSQL bench_workdir, pg_init, pg_start, pg_create_bench_db, pg_admin, pgbench_init,
#              write_userlist
#   poolers    pgt_ini_head, pgt_ini_backend, pgt_ini_tenant, pgb_ini_head; launch_pgtenant,
#              launch_pgbouncer (PGT_WRAP / PGB_WRAP: a command prefix, e.g. valgrind),
#              await_target, wait_ready, wait_query, port_busy, check_ports
#   figures    cpu_ticks, cpu_us_per_tx, pgbench_cpu, pgbench_result, median, field, ratio,
#              out_per_pooler, rss_kb

BENCH_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_LIB_DIR/.." && pwd)

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGTENANT=${PGTENANT:-$ROOT/pgtenant}
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}
PYTHON=${PYTHON:-/usr/bin/python3}
BENCH_KEEP=${BENCH_KEEP:-0}

DB=bench
DB_USER=bench
DB_PASS=benchpass
export PGPASSWORD=$DB_PASS PGCONNECT_TIMEOUT=10

CLK_TCK=$(getconf CLK_TCK)
PGB_VERSION=$("$PGBOUNCER" --version 2>/dev/null | awk 'NR == 1 { print $2 }') || PGB_VERSION=""
NOTE_TAG=bench

defaults() { # NAME=value...: each NAME keeps its value from the environment, if not empty
	local kv name
	for kv; do
		name=${kv%%=*}
		printf -v "$name" '%s' "${!name:-${kv#*=}}"
	done
}

# ---------------------------------------------------------------- results

bench_results() { # name ("" for none): STAMP, RESULT and an empty results file
	STAMP=$(date +%Y%m%d-%H%M%S)
	RESULTS_DIR=$ROOT/bench/results
	RESULT=$RESULTS_DIR/${1:+$1-}$STAMP.txt
	mkdir -p "$RESULTS_DIR"
	: >"$RESULT"
}

out() { printf '%s\n' "$*" | tee -a "$RESULT"; }
# summary key value: one figure for `make bench`'s table (bench/all.sh), appended to
# $BENCH_SUMMARY when that is set (BENCH_SUMMARY_PREFIX before the key); nothing otherwise.
# Keys are documented in all.sh.
summary() { if [ -n "${BENCH_SUMMARY:-}" ]; then printf '%s%s %s\n' "${BENCH_SUMMARY_PREFIX:-}" "$1" "$2" >>"$BENCH_SUMMARY"; fi; }
note() { printf '%s: %s\n' "$NOTE_TAG" "$*" | tee -a "$RESULT" >&2; }
die() { note "error: $*"; exit 2; }

out_header() { # title [more for the host line]: the first three lines of a result
	out "$1 $STAMP"
	out "host: $(uname -srm), $(nproc) CPUs; $("$PG_BIN/postgres" --version); PgBouncer ${PGB_VERSION:-?}${2:+; $2}"
	out "pgtenant: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
}

# ---------------------------------------------------------------- processes

DIR=""
declare -A PID=() # name -> pid of what was started in the background
CLUSTERS=()       # data directories of started PostgreSQL servers
PGT_WRAP=()       # command prefixes for the poolers (cpu.sh: valgrind)
PGB_WRAP=()

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

stop_pid() { # pid: TERM, then KILL after 5 s (or after $2 s)
	local pid=$1 _
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq $((${2:-5} * 10))); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

stop_target() { # name [seconds]: stop PID[name] and forget it
	if [ -n "${PID[$1]:-}" ]; then
		stop_pid "${PID[$1]}" "${2:-5}"
		unset "PID[$1]"
	fi
}

cleanup() {
	set +e
	local t d
	for t in "${!PID[@]}"; do stop_pid "${PID[$t]}"; done
	for d in "${CLUSTERS[@]}"; do
		as_pg "$PG_BIN/pg_ctl" stop -D "$d" -m immediate -w >/dev/null 2>&1
	done
	if [ -n "$DIR" ]; then
		if [ "$BENCH_KEEP" = 1 ]; then note "kept $DIR"; else rm -rf "$DIR"; fi
	fi
}
trap cleanup EXIT
trap 'note "interrupted"; exit 130' INT TERM

port_busy() { # port: a listener could not bind it (with SO_REUSEADDR, as PostgreSQL and the
	# poolers do): something listens there, or a client socket holds it, even from TIME-WAIT
	! "$PYTHON" -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

check_ports() { # port...: die on the first one in use
	local p
	for p; do
		if port_busy "$p"; then die "port $p is already in use (set the *_PORT variables)"; fi
	done
}

wait_ready() { # port pid user db [seconds, 10]: for the port to answer a startup packet
	local _
	for _ in $(seq $((${5:-10} * 10))); do
		[ -n "$2" ] && ! kill -0 "$2" 2>/dev/null && return 1
		"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U "$3" -d "$4" -t 1 && return 0
		sleep 0.1
	done
	return 1
}

wait_query() { # port user db pid [sslmode]: up to 10 s for `SELECT 1` to succeed
	local _
	for _ in $(seq 100); do
		kill -0 "$4" 2>/dev/null || return 1
		PGSSLMODE=${5:-disable} "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$1" -U "$2" -d "$3" -c 'SELECT 1' \
			>/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# ---------------------------------------------------------------- setup

bench_deps() { # PG_BIN programs: missing packages installed (as root), programs checked
	local p
	"$ROOT/scripts/deps.sh" || die "missing packages (see above)"
	for p; do
		[ -x "$PG_BIN/$p" ] || die "$PG_BIN/$p not found (install postgresql-15, or set PG_BIN)"
	done
}

need_psycopg() {
	"$PYTHON" -c 'import psycopg' 2>/dev/null || die "$PYTHON has no psycopg (apt-get install python3-psycopg)"
}

raise_nofile() { # limit needed what: raise the open-file limit to limit (or to the hard
	# limit), never lower it; warn when it stays at or below needed
	if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$1" ]; then
		ulimit -n "$1" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	fi
	[ "$(ulimit -n)" -gt "$2" ] || note "warning: open-file limit $(ulimit -n) is low for $3"
}

bench_workdir() { # name subdir...: DIR, a new temporary directory; the subdirs belong to RUN_USER
	local d
	DIR=$(mktemp -d "/tmp/pgtenant-bench${1:+-$1}.XXXXXX")
	chmod 755 "$DIR"
	shift
	for d; do
		mkdir "$DIR/$d"
		if [ "$(id -u)" = 0 ]; then chown "$RUN_USER": "$DIR/$d"; fi
	done
}

pg_init() { # datadir port max_connections [shared_buffers [host auth]]: initdb, a throwaway server
	as_pg "$PG_BIN/initdb" -D "$1" -U postgres --encoding=UTF8 --locale=C \
		--auth-local=peer --auth-host="${5:-scram-sha-256}" >/dev/null
	cat >>"$1/postgresql.conf" <<-EOF

		# pgtenant bench: throwaway, speed over durability
		listen_addresses = '127.0.0.1'
		port = $2
		unix_socket_directories = '$DIR/run'
		max_connections = $3
		fsync = off
		synchronous_commit = off
		full_page_writes = off
		shared_buffers = ${4:-256MB}
		password_encryption = 'scram-sha-256'
	EOF
	# The poolers may log in as the bench role over the unix socket (BACKEND_SOCKET=unix).
	sed -i "1i local all $DB_USER scram-sha-256" "$1/pg_hba.conf"
}

backend_host() { # where the poolers reach PostgreSQL: 127.0.0.1, or DIR/run with BACKEND_SOCKET=unix
	if [ "${BACKEND_SOCKET:-tcp}" = unix ]; then echo "$DIR/run"; else echo 127.0.0.1; fi
}

pg_start() { # what datadir log [pg_ctl options]: start it, or die with its log
	local what=$1 d=$2 log=$3
	shift 3
	CLUSTERS+=("$d")
	as_pg "$PG_BIN/pg_ctl" start -D "$d" -l "$log" "$@" -w -t 60 >/dev/null ||
		{ tail -n 20 "$log" >&2; die "$what did not start"; }
}

pg_admin() { # port db psql-args...: as the superuser, over the unix socket in DIR/run
	local port=$1 db=$2
	shift 2
	as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR/run" -p "$port" -U postgres -d "$db" "$@" >/dev/null
}

pg_create_bench_db() { # port: the bench role (password DB_PASS) and its database
	pg_admin "$1" postgres -c "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASS'" \
		-c "CREATE DATABASE $DB OWNER $DB_USER"
}

pgbench_init() { # port scale log
	note "pgbench -i -s $2"
	timeout 900 "$PG_BIN/pgbench" -i -q -s "$2" -h 127.0.0.1 -p "$1" -U "$DB_USER" "$DB" >"$3" 2>&1 ||
		{ tail -n 20 "$3" >&2; die "pgbench -i failed"; }
}

write_userlist() { # DIR/userlist.txt with the bench role; readable by PgBouncer as RUN_USER
	printf '"%s" "%s"\n' "$DB_USER" "$DB_PASS" >"$DIR/userlist.txt"
	chmod 644 "$DIR/userlist.txt" # a throwaway password
}

# ---------------------------------------------------------------- poolers

pgt_ini_head() { # port [auth_type]: the [pgtenant] lines every bench shares
	cat <<-EOF
		[pgtenant]
		listen_addr = 127.0.0.1
		listen_port = $1
		pool_mode = transaction
		auth_type = ${2:-scram-sha-256}
		auth_file = $DIR/userlist.txt
		tenant_users = *
		log_connections = no
		log_disconnections = no
		shutdown_timeout = 2s
	EOF
}

pgt_ini_backend() { # pool_size: [backend pg], the bench database at PG_PORT
	cat <<-EOF

		[backend pg]
		host = $(backend_host)
		port = $PG_PORT
		user = $DB_USER
		password = $DB_PASS
		dbname = $DB
		pool_size = $1
	EOF
}

pgt_ini_tenant() { # name mode [line...]: a [tenant] section on backend pg
	printf '\n[tenant %s]\nmode = %s\nbackend = pg\n' "$1" "$2"
	shift 2
	if [ $# -gt 0 ]; then printf '%s\n' "$@"; fi
}

pgb_ini_head() { # port pool_size max_client_conn [auth_type]: the [pgbouncer] section
	cat <<-EOF

		[pgbouncer]
		listen_addr = 127.0.0.1
		listen_port = $1
		unix_socket_dir =
		auth_type = ${4:-scram-sha-256}
		auth_file = $DIR/userlist.txt
		pool_mode = transaction
		default_pool_size = $2
		max_client_conn = $3
		log_connections = 0
		log_disconnections = 0
	EOF
}

launch_pgtenant() { # name ini log: --check, then start it in the background as PID[name]
	if [ ! -x "$PGTENANT" ]; then
		note "$1 FAILED: $PGTENANT not found (run make pgtenant)"
		return 1
	fi
	if ! timeout 60 "$PGTENANT" --check "$2" >"$3" 2>&1; then
		note "$1 FAILED: --check rejected the bench configuration:"
		tail -n 20 "$3" >&2
		return 1
	fi
	"${PGT_WRAP[@]}" "$PGTENANT" "$2" >>"$3" 2>&1 &
	PID[$1]=$!
}

launch_pgbouncer() { # name ini log: start it in the background (as RUN_USER) as PID[name]
	if [ ! -x "$PGBOUNCER" ]; then
		note "$1 FAILED: $PGBOUNCER not found"
		return 1
	fi
	"${AS_PG_EXEC[@]}" "${PGB_WRAP[@]}" "$PGBOUNCER" "$2" >"$3" 2>&1 &
	PID[$1]=$!
}

await_target() { # name log port user db [seconds]: until it answers, else its log
	wait_ready "$3" "${PID[$1]}" "$4" "$5" "${6:-10}" && return 0
	note "$1 FAILED to start listening on 127.0.0.1:$3; its log:"
	tail -n 20 "$2" >&2
	return 1
}

await_query() { # name log port user db [sql]: one query through it, else its log
	timeout 15 "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$3" -U "$4" -d "$5" -c "${6:-SELECT 1}" \
		>/dev/null 2>>"$2" && return 0
	note "$1 FAILED to serve a query as $4 / $5; its log:"
	tail -n 20 "$2" >&2
	return 1
}

# ---------------------------------------------------------------- figures

cpu_ticks() { # pid [split] -> utime+stime in clock ticks ("utime stime" with split);
	# the comm field may hold spaces
	local stat rest f
	stat=$(<"/proc/$1/stat") || return 1
	rest=${stat##*) }
	read -ra f <<<"$rest"
	if [ -n "${2:-}" ]; then echo "${f[11]} ${f[12]}"; else echo $((f[11] + f[12])); fi # fields 14 and 15; f[0] is field 3
}

cpu_us_per_tx() { # ticks_before ticks_after transactions -> microseconds per transaction
	awk -v d=$(($2 - $1)) -v hz="$CLK_TCK" -v n="$3" 'BEGIN { printf "%.1f", d * 1e6 / hz / n }'
}

pgbench_result() { # pgbench log -> "tps transactions", or returns 1
	local tps tx
	tps=$(awk '/^tps = / { print $3; exit }' "$1")
	tx=$(awk -F': ' '/^number of transactions actually processed/ { print $2; exit }' "$1")
	tx=${tx%%/*}
	[ -n "$tps" ] && [ -n "$tx" ] && [ "$tx" -gt 0 ] || return 1
	echo "$tps $tx"
}

# One pgbench run, and the CPU time PID (a pooler; "-" for none) spent on it. Prints
# "tps transactions cpu_us_per_tx" ("-" for no CPU figure), or returns 1; a failed
# run's output is added to DIR/pgbench-failures.log. LOG.split gets "user_us system_us"
# per transaction.
pgbench_cpu() { # pid duration log pgbench-args...
	local pid=$1 dur=$2 log=$3 t0="" t1="" res s0="" s1="" u0 u1 k0 k1
	shift 3
	rm -f "$log.split"
	if [ "$pid" != - ]; then
		t0=$(cpu_ticks "$pid") || return 1
		s0=$(cpu_ticks "$pid" split)
	fi
	if ! timeout -k 5 $((dur + 60)) "$PG_BIN/pgbench" "$@" >"$log" 2>&1; then
		cat "$log" >>"$DIR/pgbench-failures.log"
		return 1
	fi
	if [ "$pid" != - ]; then
		t1=$(cpu_ticks "$pid") || return 1
		s1=$(cpu_ticks "$pid" split)
	fi
	res=$(pgbench_result "$log") || return 1
	if [ "$pid" = - ]; then
		echo "$res -"
	else
		# user and system time per transaction apart, in LOG.split
		read -r u0 k0 <<<"$s0"
		read -r u1 k1 <<<"$s1"
		echo "$(cpu_us_per_tx "$u0" "$u1" "${res#* }") $(cpu_us_per_tx "$k0" "$k1" "${res#* }")" >"$log.split"
		echo "$res $(cpu_us_per_tx "$t0" "$t1" "${res#* }")"
	fi
}

median() { # values (any mix of arguments and space-separated lists) -> median (%.1f), or nothing
	printf '%s\n' "$@" | tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
		if (NR) printf "%.1f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

field() { # "k=v k=v" line, key -> value
	sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"
}

ratio() { # a b -> a/b (%.2f), or "-"
	if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; else echo -; fi
}

out_per_pooler() { # array unit: "pooler value unit" for each of TARGETS (FAILED when
	# missing) from the associative array named, then pgtenant's over PgBouncer's
	local -n vals=$1
	local t
	for t in $TARGETS; do
		out "$(printf '%-10s %10s %s' "$t" "${vals[$t]:-FAILED}" "$2")"
	done
	if [ -n "${vals[pgtenant]:-}" ] && [ -n "${vals[pgbouncer]:-}" ]; then
		out "$(printf '%-10s %10s' pgt/pgb "$(ratio "${vals[pgtenant]}" "${vals[pgbouncer]}")")"
	fi
}

rss_kb() { # pid -> VmRSS in kB
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}
