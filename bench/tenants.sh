#!/bin/bash
# pgtenant many-tenants benchmark: TENANTS schema tenants (default 1,000), CLIENTS_PER
# clients each (default 2), every client looping `SELECT current_schema(), count(*) FROM
# orders` on its own tenant's table for DURATION seconds.
#
#  - through pgtenant: one [tenant tN] section per tenant (mode = schema, schema s_N), all
#    served by ONE pool of POOL_SIZE (20) server connections;
#  - through PgBouncer (Debian's /usr/sbin/pgbouncer): the only way to give each tenant its
#    own search_path is one [databases] entry per tenant (tN = ... connect_query='SET
#    search_path = s_N'; PgBouncer 1.18 has no `options=` there), and so one pool per
#    tenant, of PGB_POOL_SIZE (1, the least that works) each.
#
# Reports for each pooler: transactions per second, failed statements, statements that saw
# the wrong schema (must be 0), and the most server connections PostgreSQL saw (sampled
# from pg_stat_activity every 0.2 s).
#
# The load is driven by one asyncio psycopg process (python3-psycopg), so thousands of
# clients cost no thousands of threads or processes on a 2-CPU machine; the driver takes a
# share of the CPU alike for both poolers.
#
# Everything runs on 127.0.0.1 in a temporary directory, started and stopped by this script:
# a throwaway PostgreSQL (fsync off, max_connections sized for PgBouncer's pools), pgtenant
# and PgBouncer. As root, PostgreSQL and PgBouncer run as `postgres`.
#
# Environment (defaults in brackets):
#   TENANTS [1000]  CLIENTS_PER [2]  DURATION [10]  POOL_SIZE [20]  PGB_POOL_SIZE [1]
#   TARGETS ["pgtenant pgbouncer"]
#   PG_PORT [25442] PGT_PORT [26442] PGB_PORT [26443]
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]  PGBOUNCER [/usr/sbin/pgbouncer]
#   BENCH_KEEP [0]  1: keep the temporary directory (logs, configs)
# Results are printed and written to bench/results/tenants-<timestamp>.txt.
# Exit status: 0 when both runs served every statement correctly, 1 otherwise, 2 on setup failure.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

defaults \
	TENANTS=1000 CLIENTS_PER=2 DURATION=10 POOL_SIZE=20 PGB_POOL_SIZE=1 \
	TARGETS="pgtenant pgbouncer" PG_PORT=25442 PGT_PORT=26442 PGB_PORT=26443
N_CLIENTS=$((TENANTS * CLIENTS_PER))
bench_results tenants

# ---------------------------------------------------------------- setup

bench_deps psql pg_isready initdb pg_ctl
need_psycopg
check_ports "$PG_PORT" "$PGT_PORT" "$PGB_PORT"
# clients + PgBouncer's server connections, each a file descriptor
raise_nofile 20000 $((N_CLIENTS * 2 + 200)) "$N_CLIENTS clients"
PG_MAX_CONN=$((TENANTS * PGB_POOL_SIZE + POOL_SIZE + 50))

bench_workdir tenants pgdata run
note "PostgreSQL on 127.0.0.1:$PG_PORT (max_connections $PG_MAX_CONN) in $DIR"
pg_init "$DIR/pgdata" "$PG_PORT" "$PG_MAX_CONN"
pg_start PostgreSQL "$DIR/pgdata" "$DIR/run/postgresql.log"
pg_create_bench_db "$PG_PORT"

note "creating $TENANTS schemas with an orders table each"
{
	echo "BEGIN;"
	for i in $(seq 0 $((TENANTS - 1))); do
		echo "CREATE SCHEMA s_$i; CREATE TABLE s_$i.orders (id int PRIMARY KEY, tenant int, item text);"
		echo "INSERT INTO s_$i.orders SELECT g, $i, 'item ' || g FROM generate_series(1, 10) g;"
	done
	echo "COMMIT;"
} >"$DIR/schemas.sql"
timeout 300 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d "$DB" \
	-f "$DIR/schemas.sql" >/dev/null || die "creating the schemas failed"

write_userlist

# ---------------------------------------------------------------- the poolers

start_pgtenant() {
	{
		pgt_ini_head "$PGT_PORT"
		printf 'tenant_from = database\ntenant_pool_size = 5\nmax_client_conn = %s\n' $((N_CLIENTS + 100))
		pgt_ini_backend "$POOL_SIZE"
		for i in $(seq 0 $((TENANTS - 1))); do
			printf '\n[tenant t%d]\nmode = schema\nbackend = pg\nschema = s_%d\n' "$i" "$i"
		done
	} >"$DIR/pgtenant.ini"
	launch_pgtenant pgtenant "$DIR/pgtenant.ini" "$DIR/pgtenant.log" &&
		await_target pgtenant "$DIR/pgtenant.log" "$PGT_PORT" "$DB_USER" t0
}

start_pgbouncer() {
	{
		echo "[databases]"
		for i in $(seq 0 $((TENANTS - 1))); do
			echo "t$i = host=127.0.0.1 port=$PG_PORT dbname=$DB connect_query='SET search_path = s_$i'"
		done
		pgb_ini_head "$PGB_PORT" "$PGB_POOL_SIZE" $((N_CLIENTS + 100))
		echo "log_pooler_errors = 1"
	} >"$DIR/pgbouncer.ini"
	launch_pgbouncer pgbouncer "$DIR/pgbouncer.ini" "$DIR/pgbouncer.log" &&
		await_target pgbouncer "$DIR/pgbouncer.log" "$PGB_PORT" "$DB_USER" t0
}

# ---------------------------------------------------------------- the load

cat >"$DIR/driver.py" <<'EOF'
"""Connects N_TENANTS x PER clients (tenant tN, database tN), then each loops a
statement on its tenant's table for DURATION s. Prints one line of key=value."""
import asyncio, os, sys, time
import psycopg

port, n_tenants, per, duration, pg_port = (int(a) for a in sys.argv[1:6])
user, password = os.environ["BENCH_USER"], os.environ["PGPASSWORD"]
count = {"ok": 0, "err": 0, "wrong": 0, "conn_err": 0}
first_err = []
lat_sum = [0.0]
state = {"run": False, "stop": False}

def conninfo(db, p):
    return (f"host=127.0.0.1 port={p} dbname={db} user={user} password={password} "
            "sslmode=disable gssencmode=disable connect_timeout=60")

async def client(i, sem, ready):
    want = f"s_{i}"
    try:
        async with sem:
            conn = await psycopg.AsyncConnection.connect(conninfo(f"t{i}", port), autocommit=True)
    except Exception as e:
        count["conn_err"] += 1
        if len(first_err) < 3:
            first_err.append(f"connect t{i}: {e}")
        ready.release()
        return
    conn.prepare_threshold = None
    ready.release()
    try:
        while not state["run"]:
            await asyncio.sleep(0.05)
        while not state["stop"]:
            t0 = time.monotonic()
            try:
                cur = await conn.execute("SELECT current_schema(), count(*) FROM orders")
                schema, n = await cur.fetchone()
                if schema != want or n != 10:
                    count["wrong"] += 1
                count["ok"] += 1
                lat_sum[0] += time.monotonic() - t0
            except Exception as e:
                count["err"] += 1
                if len(first_err) < 3:
                    first_err.append(f"t{i}: {e}")
                if conn.closed:
                    return
    finally:
        await conn.close()

async def sample_servers(peak):
    async with await psycopg.AsyncConnection.connect(conninfo("bench", pg_port), autocommit=True) as c:
        while not state["stop"]:
            cur = await c.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
                                  "AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                                  [user])
            peak[0] = max(peak[0], (await cur.fetchone())[0])
            await asyncio.sleep(0.2)

async def main():
    sem, ready = asyncio.Semaphore(64), asyncio.Semaphore(0)
    peak = [0]
    t0 = time.monotonic()
    tasks = [asyncio.create_task(client(i, sem, ready)) for i in range(n_tenants) for _ in range(per)]
    sampler = asyncio.create_task(sample_servers(peak))
    for _ in tasks:
        await ready.acquire()
    connect_s = time.monotonic() - t0
    state["run"] = True
    await asyncio.sleep(0.5)  # every client has started its loop
    ok0, t1 = count["ok"], time.monotonic()
    lat0 = lat_sum[0]
    await asyncio.sleep(duration)
    ok1, t2 = count["ok"], time.monotonic()
    lat1 = lat_sum[0]
    state["stop"] = True
    await asyncio.gather(*tasks, return_exceptions=True)
    await sampler
    n = ok1 - ok0
    print(f"tps={n / (t2 - t1):.1f} statements={n} errors={count['err']} wrong_schema={count['wrong']} "
          f"connect_errors={count['conn_err']} connect_s={connect_s:.1f} "
          f"mean_ms={(lat1 - lat0) / max(n, 1) * 1000:.2f} server_conns={peak[0]}")
    for e in first_err:
        print("  first errors:", e, file=sys.stderr)

asyncio.run(main())
EOF

declare -A RES=()
any_failed=0
run_target() { # name port
	local line
	note "$1: $N_CLIENTS clients of $TENANTS tenants for ${DURATION}s"
	if ! line=$(BENCH_USER=$DB_USER timeout $((DURATION + 240)) "$PYTHON" "$DIR/driver.py" "$2" "$TENANTS" \
		"$CLIENTS_PER" "$DURATION" "$PG_PORT" 2>"$DIR/driver-$1.err"); then
		note "$1: the driver failed:"
		tail -n 5 "$DIR/driver-$1.err" >&2
		RES[$1]="FAILED"
		any_failed=1
		return
	fi
	[ -s "$DIR/driver-$1.err" ] && sed 's/^/    /' "$DIR/driver-$1.err" >&2
	RES[$1]=$line
	out "$1: $line"
	case $line in *" errors=0 wrong_schema=0 connect_errors=0 "*) ;; *) any_failed=1 ;; esac
}

out_header "pgtenant many-tenants benchmark"
out "$TENANTS schema tenants x $CLIENTS_PER clients, ${DURATION}s of SELECT current_schema(), count(*) FROM orders"
out ""
for t in $TARGETS; do
	case $t in
		pgtenant)
			if start_pgtenant; then run_target pgtenant "$PGT_PORT"; else RES[pgtenant]=FAILED; any_failed=1; fi
			stop_target pgtenant
			;;
		pgbouncer)
			if start_pgbouncer; then run_target pgbouncer "$PGB_PORT"; else RES[pgbouncer]=FAILED; any_failed=1; fi
			stop_target pgbouncer
			;;
		*) die "unknown target $t" ;;
	esac
done

out ""
hdr=$(printf '%-10s %-12s %10s %12s %9s %10s %8s %8s' pooler "pools" tps server_conns mean_ms connect_s errors wrong)
out "$hdr"
out "$(printf '%s' "$hdr" | tr -c '\n' -)"
for t in $TARGETS; do
	l=${RES[$t]:-FAILED}
	case $t in
		pgtenant) pools="1 x $POOL_SIZE" ;;
		pgbouncer) pools="$TENANTS x $PGB_POOL_SIZE" ;;
	esac
	if [ "$l" = FAILED ]; then
		out "$(printf '%-10s %-12s %10s' "$t" "$pools" FAILED)"
	else
		out "$(printf '%-10s %-12s %10s %12s %9s %10s %8s %8s' "$t" "$pools" "$(field "$l" tps)" \
			"$(field "$l" server_conns)" "$(field "$l" mean_ms)" "$(field "$l" connect_s)" \
			"$(($(field "$l" errors) + $(field "$l" connect_errors)))" "$(field "$l" wrong_schema)")"
	fi
done
out ""
out "NOTE: server_conns is the peak PostgreSQL saw (pg_stat_activity, sampled every 0.2 s)."
out "NOTE: mean_ms is bound by the single driver process (about clients / tps); connect_s is the"
out "      time to log all $N_CLIENTS clients in (PgBouncer also opens a server connection per tenant)."
[ "$(nproc)" -le 4 ] && out "NOTE: $(nproc) CPUs shared by the driver, the pooler and PostgreSQL."
note "results written to $RESULT"
exit "$any_failed"
