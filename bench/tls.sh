#!/bin/bash
# shellcheck disable=SC2153  # the settings are assigned by `defaults` (lib.sh)
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
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

defaults \
	DURATION=10 ROUNDS=3 JOBS=2 CLIENTS="10 50" SCALE=10 POOL_SIZE=20 MODE=simple \
	BENCH_CONNECT=0 PG_PORT=15442 PGT_PORT=15443 PGT_TLS_PORT=15444 PGB_PORT=15445 \
	PGB_TLS_PORT=15446

TENANT=acme
export PGGSSENCMODE=disable
NOTE_TAG=bench-tls
bench_results tls

# ---------------------------------------------------------------- setup

bench_deps pgbench psql pg_isready initdb pg_ctl
command -v openssl >/dev/null || die "the openssl command is needed to make the test certificates"
[ -x "$PGTENANT" ] || die "$PGTENANT not found (run make pgtenant)"
[ -x "$PGBOUNCER" ] || die "$PGBOUNCER not found"
check_ports "$PG_PORT" "$PGT_PORT" "$PGT_TLS_PORT" "$PGB_PORT" "$PGB_TLS_PORT"

bench_workdir tls pgdata run
mkdir "$DIR/tls"

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
pg_init "$DIR/pgdata" "$PG_PORT" 300
pg_start PostgreSQL "$DIR/pgdata" "$DIR/run/postgresql.log"
pg_create_bench_db "$PG_PORT"
pgbench_init "$PG_PORT" "$SCALE" "$DIR/pgbench-init.log"
write_userlist

sslmode() { # tls(0/1) -> libpq sslmode
	if [ "$1" = 1 ]; then echo require; else echo disable; fi
}

start_pgtenant() { # name port tls(0/1)
	local name=$1 port=$2 tls=$3 ini=$DIR/$1.ini
	{
		pgt_ini_head "$port"
		printf 'default_pool_size = %s\nmax_client_conn = 1000\n' "$POOL_SIZE"
		if [ "$tls" = 1 ]; then
			printf 'tls_mode = require\ntls_cert_file = %s\ntls_key_file = %s\n' \
				"$DIR/tls/server.crt" "$DIR/tls/server.key"
		fi
		pgt_ini_backend "$POOL_SIZE"
		pgt_ini_tenant "$TENANT" database "dbname = $DB"
	} >"$ini"
	launch_pgtenant "$name" "$ini" "$DIR/$name.log" || die "$name did not start"
	wait_query "$port" "$DB_USER" "$TENANT" "${PID[$name]}" "$(sslmode "$tls")" ||
		{ tail -n 20 "$DIR/$name.log" >&2; die "$name did not start"; }
}

start_pgbouncer() { # name port tls(0/1)
	local name=$1 port=$2 tls=$3 ini=$DIR/$1.ini
	{
		printf '[databases]\n%s = host=127.0.0.1 port=%s dbname=%s\n' "$TENANT" "$PG_PORT" "$DB"
		pgb_ini_head "$port" "$POOL_SIZE" 1000
		if [ "$tls" = 1 ]; then
			printf 'client_tls_sslmode = require\nclient_tls_cert_file = %s\nclient_tls_key_file = %s\n' \
				"$DIR/tls/server.crt" "$DIR/tls/server.key"
		fi
	} >"$ini"
	launch_pgbouncer "$name" "$ini" "$DIR/$name.log" || die "$name did not start"
	wait_query "$port" "$DB_USER" "$TENANT" "${PID[$name]}" "$(sslmode "$tls")" ||
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
	local target=$1 clients=$2 conn=$3 dur=$4 sslmode=disable
	local args=(-n -S -M "$MODE" -c "$clients" -j "$JOBS" -T "$dur" -h 127.0.0.1 -p "$(target_port "$target")"
		-U "$DB_USER")
	[ "$conn" = 1 ] && args+=(-C)
	case $target in *-tls) sslmode=require ;; esac
	PGSSLMODE=$sslmode pgbench_cpu "${PID[$target]}" "$dur" "$DIR/pgbench-last.log" "${args[@]}" "$TENANT"
}

CASES=()
for c in $CLIENTS; do CASES+=("$c 0"); done
[ "$BENCH_CONNECT" = 1 ] && CASES+=("10 1")

out_header "pgtenant TLS benchmark" "$(openssl version)"
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

out ""
out "medians                        plain tps    TLS tps   TLS/plain   cpu/tx plain   cpu/tx TLS"
for cs in "${CASES[@]}"; do
	read -r c conn <<<"$cs"
	for pooler in pgtenant pgbouncer; do
		p=$(median "${TPS["$cs $pooler"]:-}")
		s=$(median "${TPS["$cs $pooler-tls"]:-}")
		pc=$(median "${CPU["$cs $pooler"]:-}")
		sc=$(median "${CPU["$cs $pooler-tls"]:-}")
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
