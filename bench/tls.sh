#!/bin/bash
# shellcheck disable=SC2317  # functions run from traps look unreachable
# TLS benchmark: pgbench -S throughput with client TLS (sslmode=require) and
# without, through pgtenant and through PgBouncer (client_tls_sslmode=require),
# in one run - plus each pooler's CPU time per transaction, which is where the
# cost of encryption shows.
#
# Everything it starts is its own, on 127.0.0.1: a throwaway PostgreSQL
# (plaintext; the pooler-to-server side is not what is measured), a CA and a
# server certificate made with the openssl CLI, and two instances of each
# pooler: plain (TLS off) and TLS (required), identical otherwise. Runs are
# interleaved - in each round every case runs against all four - so drift on
# the machine hits them alike; the table shows medians over ROUNDS. As root,
# PostgreSQL and PgBouncer run as the `postgres` user (both refuse root).
#
# Environment (defaults in brackets):
#   DURATION [10]  ROUNDS [3]  JOBS [2]  CLIENTS ["10 50"]  SCALE [10]  POOL_SIZE [20]
#   MODE [simple]  pgbench -M
#   BENCH_CONNECT [0]   1: also -C runs (a new connection, so a handshake, per transaction)
#   PG_PORT [15442] PGT_PORT [15443] PGT_TLS_PORT [15444] PGB_PORT [15445] PGB_TLS_PORT [15446]
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]  PGBOUNCER [/usr/sbin/pgbouncer]
#   BENCH_KEEP [0]      1: keep the temporary directory
#
# Results are printed and written to bench/results/tls-<timestamp>.txt.
# Exit status: 0 when every run succeeded, 1 when some failed, 2 when the setup failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
JOBS=${JOBS:-2}
CLIENTS=${CLIENTS:-"10 50"}
SCALE=${SCALE:-10}
POOL_SIZE=${POOL_SIZE:-20}
MODE=${MODE:-simple}
BENCH_CONNECT=${BENCH_CONNECT:-0}
PG_PORT=${PG_PORT:-15442}
PGT_PORT=${PGT_PORT:-15443}
PGT_TLS_PORT=${PGT_TLS_PORT:-15444}
PGB_PORT=${PGB_PORT:-15445}
PGB_TLS_PORT=${PGB_TLS_PORT:-15446}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGTENANT=${PGTENANT:-$ROOT/pgtenant}
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}
BENCH_KEEP=${BENCH_KEEP:-0}

TENANT=acme
DB=bench
DB_USER=bench
DB_PASS=benchpass
export PGPASSWORD=$DB_PASS PGCONNECT_TIMEOUT=10 PGGSSENCMODE=disable

CLK_TCK=$(getconf CLK_TCK)
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS_DIR=$ROOT/bench/results
RESULT=$RESULTS_DIR/tls-$STAMP.txt
mkdir -p "$RESULTS_DIR"
: >"$RESULT"

out() { printf '%s\n' "$*" | tee -a "$RESULT"; }
note() { printf 'bench-tls: %s\n' "$*" | tee -a "$RESULT" >&2; }
die() { note "error: $*"; exit 2; }

# ---------------------------------------------------------------- processes

DIR=""
PG_STARTED=0
declare -A PID=() # target -> pid

if [ "$(id -u)" = 0 ]; then
	RUN_USER=postgres
	id "$RUN_USER" >/dev/null 2>&1 ||
		useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh "$RUN_USER"
	as_pg() { (cd / && runuser -u "$RUN_USER" -- "$@"); }
	AS_PG_EXEC=(setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups --)
else
	RUN_USER=$(id -un)
	as_pg() { (cd / && "$@"); }
	AS_PG_EXEC=()
fi

stop_pid() {
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
	for t in "${!PID[@]}"; do stop_pid "${PID[$t]}"; done
	[ "$PG_STARTED" = 1 ] && as_pg "$PG_BIN/pg_ctl" stop -D "$DIR/pgdata" -m immediate -w >/dev/null 2>&1
	if [ -n "$DIR" ]; then
		if [ "$BENCH_KEEP" = 1 ]; then note "kept $DIR"; else rm -rf "$DIR"; fi
	fi
}
trap cleanup EXIT
trap 'note "interrupted"; exit 130' INT TERM

port_busy() { # ss may see nothing in some sandboxes: a connect attempt tells too
	[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ] || (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cpu_ticks() {
	local stat rest f
	stat=$(<"/proc/$1/stat") || return 1
	rest=${stat##*) }
	read -ra f <<<"$rest"
	echo $((f[11] + f[12]))
}

# ---------------------------------------------------------------- setup

"$ROOT/scripts/deps.sh" || die "missing packages (see above)"
command -v openssl >/dev/null || die "the openssl command is needed to make the test certificates"
for p in pgbench psql pg_isready initdb pg_ctl; do
	[ -x "$PG_BIN/$p" ] || die "$PG_BIN/$p not found (install postgresql-15, or set PG_BIN)"
done
[ -x "$PGTENANT" ] || die "$PGTENANT not found (run make pgtenant)"
[ -x "$PGBOUNCER" ] || die "$PGBOUNCER not found"
for p in $PG_PORT $PGT_PORT $PGT_TLS_PORT $PGB_PORT $PGB_TLS_PORT; do
	port_busy "$p" && die "port $p is already in use"
done

DIR=$(mktemp -d /tmp/pgtenant-bench-tls.XXXXXX)
chmod 755 "$DIR"
mkdir "$DIR/pgdata" "$DIR/run" "$DIR/tls"
[ "$(id -u)" = 0 ] && chown "$RUN_USER": "$DIR/pgdata" "$DIR/run"

note "certificates (openssl, P-256) in $DIR/tls"
(
	cd "$DIR/tls"
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
		-out ca.crt -days 2 -subj /CN=pgtenant-bench-ca
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key \
		-out server.csr -subj /CN=localhost
	printf 'subjectAltName = DNS:localhost, IP:127.0.0.1\n' >server.ext
	openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial 1 -days 2 \
		-extfile server.ext -out server.crt
) >"$DIR/tls/openssl.log" 2>&1 || { cat "$DIR/tls/openssl.log" >&2; die "openssl failed"; }
chmod 600 "$DIR/tls/server.key"
[ "$(id -u)" = 0 ] && chown -R "$RUN_USER": "$DIR/tls" # PgBouncer reads the key as $RUN_USER

note "PostgreSQL on 127.0.0.1:$PG_PORT"
as_pg "$PG_BIN/initdb" -D "$DIR/pgdata" -U postgres --encoding=UTF8 --locale=C \
	--auth-local=peer --auth-host=scram-sha-256 >/dev/null
cat >>"$DIR/pgdata/postgresql.conf" <<EOF
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
	die "PostgreSQL did not start"
as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR/run" -p "$PG_PORT" -U postgres -d postgres \
	-c "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASS'" -c "CREATE DATABASE $DB OWNER $DB_USER" >/dev/null
note "pgbench -i -s $SCALE"
"$PG_BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" "$DB" \
	>"$DIR/pgbench-init.log" 2>&1 || die "pgbench -i failed"

printf '"%s" "%s"\n' "$DB_USER" "$DB_PASS" >"$DIR/userlist.txt"
chmod 644 "$DIR/userlist.txt"

wait_query() { # port user db sslmode pid
	local _
	for _ in $(seq 100); do
		kill -0 "$5" 2>/dev/null || return 1
		PGSSLMODE=$4 "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$1" -U "$2" -d "$3" -c 'SELECT 1' \
			>/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

start_pgtenant() { # name port tls(0/1)
	local name=$1 port=$2 tls=$3 ini=$DIR/$1.ini
	cat >"$ini" <<-EOF
		[pgtenant]
		listen_addr = 127.0.0.1
		listen_port = $port
		pool_mode = transaction
		auth_type = scram-sha-256
		auth_file = $DIR/userlist.txt
		tenant_users = *
		default_pool_size = $POOL_SIZE
		max_client_conn = 1000
		log_connections = no
		log_disconnections = no
		shutdown_timeout = 2s
	EOF
	if [ "$tls" = 1 ]; then
		printf 'tls_mode = require\ntls_cert_file = %s\ntls_key_file = %s\n' \
			"$DIR/tls/server.crt" "$DIR/tls/server.key" >>"$ini"
	fi
	cat >>"$ini" <<-EOF

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
	"$PGTENANT" "$ini" >"$DIR/$name.log" 2>&1 &
	PID[$name]=$!
	wait_query "$port" "$DB_USER" "$TENANT" "$([ "$tls" = 1 ] && echo require || echo disable)" "${PID[$name]}" ||
		{ tail -n 20 "$DIR/$name.log" >&2; die "$name did not start"; }
}

start_pgbouncer() { # name port tls(0/1)
	local name=$1 port=$2 tls=$3 ini=$DIR/$1.ini
	cat >"$ini" <<-EOF
		[databases]
		$TENANT = host=127.0.0.1 port=$PG_PORT dbname=$DB

		[pgbouncer]
		listen_addr = 127.0.0.1
		listen_port = $port
		unix_socket_dir =
		auth_type = scram-sha-256
		auth_file = $DIR/userlist.txt
		pool_mode = transaction
		default_pool_size = $POOL_SIZE
		max_client_conn = 1000
		log_connections = 0
		log_disconnections = 0
	EOF
	if [ "$tls" = 1 ]; then
		printf 'client_tls_sslmode = require\nclient_tls_cert_file = %s\nclient_tls_key_file = %s\n' \
			"$DIR/tls/server.crt" "$DIR/tls/server.key" >>"$ini"
	fi
	"${AS_PG_EXEC[@]}" "$PGBOUNCER" "$ini" >"$DIR/$name.log" 2>&1 &
	PID[$name]=$!
	wait_query "$port" "$DB_USER" "$TENANT" "$([ "$tls" = 1 ] && echo require || echo disable)" "${PID[$name]}" ||
		{ tail -n 20 "$DIR/$name.log" >&2; die "$name did not start"; }
}

start_pgtenant pgtenant "$PGT_PORT" 0
start_pgtenant pgtenant-tls "$PGT_TLS_PORT" 1
start_pgbouncer pgbouncer "$PGB_PORT" 0
start_pgbouncer pgbouncer-tls "$PGB_TLS_PORT" 1

# A plaintext client must be refused by the TLS instances, or the numbers mean nothing.
for t in pgtenant-tls:$PGT_TLS_PORT pgbouncer-tls:$PGB_TLS_PORT; do
	if PGSSLMODE=disable "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "${t#*:}" -U "$DB_USER" -d "$TENANT" \
		-c 'SELECT 1' >/dev/null 2>&1; then
		die "${t%%:*} accepted a plaintext client"
	fi
done

TARGETS=(pgtenant pgtenant-tls pgbouncer pgbouncer-tls)
target_port() {
	case $1 in
		pgtenant) echo "$PGT_PORT" ;; pgtenant-tls) echo "$PGT_TLS_PORT" ;;
		pgbouncer) echo "$PGB_PORT" ;; pgbouncer-tls) echo "$PGB_TLS_PORT" ;;
	esac
}

run_one() { # target clients connect duration -> "tps tx cpu_us_per_tx"
	local target=$1 clients=$2 conn=$3 dur=$4 log=$DIR/pgbench-last.log t0 t1 tps tx sslmode=disable
	local args=(-n -S -M "$MODE" -c "$clients" -j "$JOBS" -T "$dur" -h 127.0.0.1 -p "$(target_port "$target")"
		-U "$DB_USER")
	[ "$conn" = 1 ] && args+=(-C)
	case $target in *-tls) sslmode=require ;; esac
	t0=$(cpu_ticks "${PID[$target]}") || return 1
	PGSSLMODE=$sslmode timeout -k 5 $((dur + 60)) "$PG_BIN/pgbench" "${args[@]}" "$TENANT" >"$log" 2>&1 ||
		{ cat "$log" >>"$DIR/pgbench-failures.log"; return 1; }
	t1=$(cpu_ticks "${PID[$target]}") || return 1
	tps=$(awk '/^tps = / { print $3; exit }' "$log")
	tx=$(awk -F': ' '/^number of transactions actually processed/ { print $2; exit }' "$log")
	tx=${tx%%/*}
	[ -n "$tps" ] && [ -n "$tx" ] && [ "$tx" -gt 0 ] || return 1
	echo "$tps $tx $(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$tx" 'BEGIN { printf "%.1f", d * 1e6 / hz / n }')"
}

CASES=()
for c in $CLIENTS; do CASES+=("$c 0"); done
[ "$BENCH_CONNECT" = 1 ] && CASES+=("10 1")

PGB_VERSION=$("$PGBOUNCER" --version 2>/dev/null | awk 'NR == 1 { print $2 }') || PGB_VERSION="?"
out "pgtenant TLS benchmark $STAMP"
out "host: $(uname -srm), $(nproc) CPUs; $("$PG_BIN/postgres" --version); PgBouncer $PGB_VERSION; $(openssl version)"
out "pgtenant: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
out "pgbench -S -M $MODE -j $JOBS -T $DURATION, scale $SCALE, pool size $POOL_SIZE, transaction mode, $ROUNDS rounds (medians)"
out "client side: sslmode=require (TLS) vs sslmode=disable (plain); pooler to PostgreSQL: plain"
out ""

for t in "${TARGETS[@]}"; do run_one "$t" 10 0 2 >/dev/null || true; done # warm-up

declare -A TPS=() CPU=()
any_failed=0
for r in $(seq "$ROUNDS"); do
	for cs in "${CASES[@]}"; do
		read -r c conn <<<"$cs"
		for t in "${TARGETS[@]}"; do
			cflag=""
			[ "$conn" = 1 ] && cflag=" -C"
			label="round $r: $c clients$cflag $t"
			if res=$(run_one "$t" "$c" "$conn" "$DURATION"); then
				read -r tps tx cpu <<<"$res"
				TPS["$cs $t"]+="$tps "
				CPU["$cs $t"]+="$cpu "
				out "$(printf '%-40s tps %10.1f  tx %9d  cpu/tx %sus' "$label" "$tps" "$tx" "$cpu")"
			else
				any_failed=1
				out "$(printf '%-40s FAILED' "$label")"
				tail -n 3 "$DIR/pgbench-last.log" | sed 's/^/    /' | tee -a "$RESULT" >&2
			fi
		done
	done
done

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%.1f\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

out ""
out "medians                        plain tps    TLS tps   TLS/plain   cpu/tx plain   cpu/tx TLS"
for cs in "${CASES[@]}"; do
	read -r c conn <<<"$cs"
	for pooler in pgtenant pgbouncer; do
		# shellcheck disable=SC2086  # the values are space-separated on purpose
		{
			p=$(median ${TPS["$cs $pooler"]:-})
			s=$(median ${TPS["$cs $pooler-tls"]:-})
			pc=$(median ${CPU["$cs $pooler"]:-})
			sc=$(median ${CPU["$cs $pooler-tls"]:-})
		}
		ratio=$(awk -v a="${s:-0}" -v b="${p:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
		cflag=""
		[ "$conn" = 1 ] && cflag=" -C"
		out "$(printf '%-28s %11s %10s %11s %14s %12s' "$pooler, $c clients$cflag" \
			"${p:--}" "${s:--}" "$ratio" "${pc:--}us" "${sc:--}us")"
	done
done
out ""
out "written to $RESULT"
exit $any_failed
