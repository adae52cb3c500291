#!/bin/bash
# pgtenant noisy-neighbour benchmark: the latency of a quiet tenant B (B_CLIENTS clients
# looping B_SQL, default `SELECT 1`) alone, and next to a noisy tenant A (A_CLIENTS = 50
# clients looping A_SQL, default `SELECT pg_sleep(0.01)`, as fast as they can):
#
#  - through pgtenant: A and B are schema tenants of one backend pool of POOL_SIZE (10);
#    A may hold at most A_POOL_SIZE (6) of it, and waiting clients are served in weighted
#    round-robin over tenants, so B keeps finding a free connection;
#  - through PgBouncer (Debian's /usr/sbin/pgbouncer): A and B in one pool of POOL_SIZE
#    (one [databases] entry), served first come, first served.
#
# A and B are separate driver processes (asyncio python3-psycopg), so A's load does not
# slow B's measuring loop. Each phase runs PHASE seconds. The table shows B's latency
# (mean, p50, p95, p99 in ms) alone and with A, the ratio, and A's throughput.
#
# Everything runs on 127.0.0.1 in a temporary directory, started and stopped here: a
# throwaway PostgreSQL, pgtenant and PgBouncer. As root, PostgreSQL and PgBouncer run as
# `postgres`.
#
# Environment (defaults in brackets):
#   PHASE [8]  A_CLIENTS [50]  B_CLIENTS [2]  POOL_SIZE [10]  A_POOL_SIZE [6]
#   A_SQL ["SELECT pg_sleep(0.01)"]  B_SQL ["SELECT 1"]  TARGETS ["pgtenant pgbouncer"]
#   PG_PORT [25452] PGT_PORT [26452] PGB_PORT [26453]
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]  PGBOUNCER [/usr/sbin/pgbouncer]
#   BENCH_KEEP [0]  1: keep the temporary directory (logs, configs)
# Results are printed and written to bench/results/noisy-<timestamp>.txt.
# Exit status: 0 when every phase ran without errors, 1 otherwise, 2 on setup failure.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

defaults \
	PHASE=8 A_CLIENTS=50 B_CLIENTS=2 POOL_SIZE=10 A_POOL_SIZE=6 A_SQL="SELECT pg_sleep(0.01)" \
	B_SQL="SELECT 1" TARGETS="pgtenant pgbouncer" PG_PORT=25452 PGT_PORT=26452 PGB_PORT=26453
bench_results noisy

# ---------------------------------------------------------------- setup

bench_deps psql pg_isready initdb pg_ctl
need_psycopg
check_ports "$PG_PORT" "$PGT_PORT" "$PGB_PORT"
PG_MAX_CONN=100

bench_workdir noisy pgdata run
note "PostgreSQL on 127.0.0.1:$PG_PORT (max_connections $PG_MAX_CONN) in $DIR"
pg_init "$DIR/pgdata" "$PG_PORT" "$PG_MAX_CONN"
pg_start PostgreSQL "$DIR/pgdata" "$DIR/run/postgresql.log"
pg_create_bench_db "$PG_PORT"
pg_admin "$PG_PORT" "$DB" -c "CREATE SCHEMA s_a AUTHORIZATION $DB_USER" -c "CREATE SCHEMA s_b AUTHORIZATION $DB_USER"
write_userlist

# ---------------------------------------------------------------- the poolers

start_pgtenant() {
	{
		pgt_ini_head "$PGT_PORT"
		echo "tenant_from = database"
		pgt_ini_backend "$POOL_SIZE"
		pgt_ini_tenant a schema "schema = s_a" "pool_size = $A_POOL_SIZE"
		pgt_ini_tenant b schema "schema = s_b" "pool_size = $POOL_SIZE"
	} >"$DIR/pgtenant.ini"
	launch_pgtenant pgtenant "$DIR/pgtenant.ini" "$DIR/pgtenant.log" &&
		await_target pgtenant "$DIR/pgtenant.log" "$PGT_PORT" "$DB_USER" a
}

start_pgbouncer() {
	{
		printf '[databases]\nshared = host=127.0.0.1 port=%s dbname=%s\n' "$PG_PORT" "$DB"
		pgb_ini_head "$PGB_PORT" "$POOL_SIZE" 1000
	} >"$DIR/pgbouncer.ini"
	launch_pgbouncer pgbouncer "$DIR/pgbouncer.ini" "$DIR/pgbouncer.log" &&
		await_target pgbouncer "$DIR/pgbouncer.log" "$PGB_PORT" "$DB_USER" shared
}

# ---------------------------------------------------------------- the load

cat >"$DIR/driver.py" <<'EOF'
"""CLIENTS clients on database DB loop SQL for DURATION s (after all have
connected); prints key=value: statements per second and latency in ms."""
import asyncio, os, sys, time
import psycopg

port, db, clients, duration, sql = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
user, password = os.environ["BENCH_USER"], os.environ["PGPASSWORD"]
lat, errors, first = [], [0], []
state = {"stop": False}
go = asyncio.Event()

async def client(ready):
    conn = await psycopg.AsyncConnection.connect(
        f"host=127.0.0.1 port={port} dbname={db} user={user} password={password} "
        "sslmode=disable gssencmode=disable connect_timeout=30", autocommit=True)
    conn.prepare_threshold = None
    ready.release()
    try:
        await go.wait()  # every client is connected
        while not state["stop"]:
            t0 = time.monotonic()
            try:
                await (await conn.execute(sql)).fetchall()
                lat.append(time.monotonic() - t0)
            except Exception as e:
                errors[0] += 1
                if len(first) < 3:
                    first.append(str(e))
    finally:
        await conn.close()

async def main():
    ready = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(client(ready)) for _ in range(clients)]
    for _ in tasks:
        await ready.acquire()
    print("ready", file=sys.stderr, flush=True)
    go.set()
    t0 = time.monotonic()
    await asyncio.sleep(duration)
    state["stop"] = True
    n, el = len(lat), time.monotonic() - t0
    await asyncio.gather(*tasks, return_exceptions=True)
    s = sorted(lat) or [0.0]
    pct = lambda q: s[min(len(s) - 1, int(len(s) * q))] * 1000
    print(f"qps={n / el:.1f} n={n} errors={errors[0]} mean_ms={sum(s) / len(s) * 1000:.2f} "
          f"p50_ms={pct(0.5):.2f} p95_ms={pct(0.95):.2f} p99_ms={pct(0.99):.2f}")
    for e in first:
        print("  error:", e, file=sys.stderr)

asyncio.run(main())
EOF

drive() { # port db clients duration sql -> key=value line
	BENCH_USER=$DB_USER timeout 120 "$PYTHON" "$DIR/driver.py" "$@"
}

declare -A ALONE=() WITH=() NOISY=()
any_failed=0
run_target() { # name port db_of_A db_of_B
	local name=$1 port=$2 da=$3 db=$4 a_pid l _
	note "$name: B alone (${PHASE}s)"
	if ! ALONE[$name]=$(drive "$port" "$db" "$B_CLIENTS" "$PHASE" "$B_SQL" 2>"$DIR/$name-b1.err"); then
		note "$name: B's driver failed"; sed 's/^/    /' "$DIR/$name-b1.err" >&2; any_failed=1; return
	fi
	note "$name: B next to A's $A_CLIENTS clients (${PHASE}s)"
	# A starts first and runs a little longer than B's phase, so B measures only under load.
	drive "$port" "$da" "$A_CLIENTS" $((PHASE + 3)) "$A_SQL" >"$DIR/$name-a.out" 2>"$DIR/$name-a.err" &
	a_pid=$!
	for _ in $(seq 100); do grep -q ready "$DIR/$name-a.err" 2>/dev/null && break; sleep 0.1; done
	sleep 1
	if ! WITH[$name]=$(drive "$port" "$db" "$B_CLIENTS" "$PHASE" "$B_SQL" 2>"$DIR/$name-b2.err"); then
		note "$name: B's driver failed"; sed 's/^/    /' "$DIR/$name-b2.err" >&2; any_failed=1
	fi
	wait "$a_pid" || { note "$name: A's driver failed"; sed 's/^/    /' "$DIR/$name-a.err" >&2; any_failed=1; }
	NOISY[$name]=$(cat "$DIR/$name-a.out")
	out "$name B alone:  ${ALONE[$name]}"
	out "$name B with A: ${WITH[$name]:-FAILED}"
	out "$name A:        ${NOISY[$name]:-FAILED}"
	for l in "${ALONE[$name]}" "${WITH[$name]:-}" "${NOISY[$name]:-}"; do
		[ "$(field "$l" errors)" = 0 ] || any_failed=1
	done
}

out_header "pgtenant noisy-neighbour benchmark"
out "A: $A_CLIENTS clients of '$A_SQL'; B: $B_CLIENTS clients of '$B_SQL'; pool of $POOL_SIZE (pgtenant: A at most $A_POOL_SIZE)"
out ""
for t in $TARGETS; do
	case $t in
		pgtenant)
			if start_pgtenant; then run_target pgtenant "$PGT_PORT" a b; else any_failed=1; fi
			stop_target pgtenant
			;;
		pgbouncer)
			if start_pgbouncer; then run_target pgbouncer "$PGB_PORT" shared shared; else any_failed=1; fi
			stop_target pgbouncer
			;;
		*) die "unknown target $t" ;;
	esac
done

out ""
out "B's latency in ms (alone, then next to A), and A's throughput"
hdr=$(printf '%-10s %10s %10s %10s %10s %10s %8s %10s' pooler alone_mean with_mean with_p50 with_p95 with_p99 ratio A_qps)
out "$hdr"
out "$(printf '%s' "$hdr" | tr -c '\n' -)"
for t in $TARGETS; do
	a=${ALONE[$t]:-} w=${WITH[$t]:-} n=${NOISY[$t]:-}
	if [ -z "$a" ] || [ -z "$w" ]; then
		out "$(printf '%-10s %10s' "$t" FAILED)"
		continue
	fi
	out "$(printf '%-10s %10s %10s %10s %10s %10s %8s %10s' "$t" "$(field "$a" mean_ms)" "$(field "$w" mean_ms)" \
		"$(field "$w" p50_ms)" "$(field "$w" p95_ms)" "$(field "$w" p99_ms)" \
		"$(awk -v a="$(field "$a" mean_ms)" -v w="$(field "$w" mean_ms)" 'BEGIN { printf "%.1fx", (a > 0 ? w / a : 0) }')" \
		"$(field "$n" qps)")"
done
out ""
[ "$(nproc)" -le 4 ] && out "NOTE: $(nproc) CPUs shared by the drivers, the pooler and PostgreSQL."
note "results written to $RESULT"
exit "$any_failed"
