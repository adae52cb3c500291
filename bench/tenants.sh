#!/bin/bash
# shellcheck disable=SC2153  # the settings are assigned by `defaults` (lib.sh)
# pgtenant many-tenants benchmark: TENANTS schema tenants (default 1,000), CLIENTS_PER
# clients each (default 2), every client looping `SELECT current_schema(), count(*) FROM
# orders` on its own tenant's table for DURATION seconds; and pgtenant's own CPU time per
# transaction with them, next to the same load on one tenant.
#
#  - pgtenant, many: one [tenant tN] section per tenant (mode = schema, schema s_N), all
#    served by ONE pool of POOL_SIZE (20) server connections, so server connections
#    switch search_path between tenants;
#  - pgtenant, one (the baseline): the SAME number of clients (TENANTS x CLIENTS_PER), the
#    same driver, pool, statement and table, but all clients on ONE tenant. With
#    BASELINE=schema (the default) that is a pgtenant configured with tenant t0 alone
#    (mode = schema, schema s_0, pool_size = POOL_SIZE, so it may use the whole pool as
#    the many share it): the very section of the many-tenants run, so the only difference
#    is the number of tenants, and its server connections never switch search_path.
#    BASELINE=database: one database-mode tenant `plain` on the bench database (no
#    search_path at all; its clients read public.orders, also 10 rows) - this adds the
#    cost of schema mode itself to the difference;
#  - PgBouncer (Debian's /usr/sbin/pgbouncer), many, for reference: the only way to give
#    each tenant its own search_path is one [databases] entry per tenant (tN = ...
#    connect_query='SET search_path = s_N'; PgBouncer 1.18 has no `options=` there), and
#    so one pool per tenant, of PGB_POOL_SIZE (1, the least that works) each. PgBouncer
#    has no read routing: everything it serves runs on the primary.
#
# Read routing is on for both pgtenant runs: the bench primary gets one streaming replica
# (pg_basebackup, after the schemas are created, so it holds every table), pgtenant's
# backend lists it (replicas =, replica_pool_size = POOL_SIZE) with read_routing =
# READ_ROUTING (auto) and health_check_period = 1s, and each run waits for the console's
# SHOW BACKENDS to report the replica up. Every statement is read-only, so with auto
# each one is analysed and sent to the replica; the replica% column is the replica's
# share of the transactions the two servers committed (pg_stat_database.xact_commit
# over the measured window; statistics are flushed about once a second, so it is
# approximate), measured on the servers, not assumed.
#
# Runs are interleaved: in each of ROUNDS rounds pgtenant many and one (their order
# alternating between rounds), then PgBouncer; each run starts its pooler afresh. The
# table shows medians over the rounds (errors and wrong: totals; server_conns: the peak).
#
# CPU per transaction is the pooler process's utime+stime (/proc/PID/stat fields 14 and
# 15, as cpu_ticks in lib.sh) over the measured window - after every client has logged in
# and started, so logins (SCRAM) are not counted - divided by the statements completed in
# that window (each its own transaction: autocommit). Clock ticks are 1/CLK_TCK s, so for
# a resolution of ~0.1 us keep DURATION x tps above ~100,000 (at RATE 3000 and 10 s: ~0.3 us).
#
# The load is driven by one asyncio psycopg process (python3-psycopg), so thousands of
# clients cost no thousands of threads or processes on a 2-CPU machine; the driver takes a
# share of the CPU alike for every run, and bounds the throughput (mean_ms is about
# clients / tps).
#
# Everything runs on 127.0.0.1 in a temporary directory, started and stopped by this script:
# a throwaway PostgreSQL primary (fsync off, max_connections sized for PgBouncer's pools)
# and its replica, pgtenant and PgBouncer. As root, PostgreSQL and PgBouncer run as
# `postgres`.
#
# Environment (defaults in brackets):
#   TENANTS [1000]  CLIENTS_PER [2]  DURATION [10] seconds measured per run
#   RATE [3000]     statements a second, all clients together, each client paced to its
#                   share: every run carries the same load, so CPU per transaction compares
#                   the work per statement, not how much a busier pooler batches per
#                   wake-up; 0: each client as fast as it is answered (tps then bounds it)
#   ROUNDS [3]      interleaved rounds; the table shows medians
#   POOL_SIZE [20]  pgtenant's pool (and its replica pool)  PGB_POOL_SIZE [1] per tenant
#   BASELINE [schema]  the one tenant: schema (t0 alone) or database (see above)
#   READ_ROUTING [auto]  pgtenant's read_routing; off: the replica runs, nothing is routed
#   TARGETS ["pgtenant pgbouncer"]
#   PG_PORT [25442] REP_PORT [25443] (the replica) PGT_PORT [26442] PGB_PORT [26443]
#   PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]  PGBOUNCER [/usr/sbin/pgbouncer]
#   BENCH_KEEP [0]  1: keep the temporary directory (logs, configs)
#   BENCH_SUMMARY   a file for summary lines (lib.sh): tenants.count,
#                   tenants.cpu_us.{one,many}.pgtenant, tenants.cpu_us.many.pgbouncer,
#                   tenants.tps.{one,many}.pgtenant, tenants.tps.many.pgbouncer,
#                   tenants.wrong_schema.pgtenant, tenants.routed (yes/no)
# Output: a line per run (key=value; idle_cpu_pct: the pooler's CPU share over 2 s with
# every client logged in and idle, just before the load), then the table of medians and pgtenant's CPU per
# transaction, many minus one (the performance target: at most +1 us). Results are printed
# and written to bench/results/tenants-<timestamp>.txt.
# Exit status: 0 when every run served every statement correctly (and, with read routing
# on, the replica served pgtenant's statements), 1 otherwise, 2 on setup failure.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

defaults \
	TENANTS=1000 CLIENTS_PER=2 DURATION=10 ROUNDS=3 POOL_SIZE=20 PGB_POOL_SIZE=1 RATE=3000 \
	BASELINE=schema READ_ROUTING=auto TARGETS="pgtenant pgbouncer" \
	PG_PORT=25442 REP_PORT=25443 PGT_PORT=26442 PGB_PORT=26443
N_CLIENTS=$((TENANTS * CLIENTS_PER))
case $BASELINE in
	schema) ONE_DB=t0 ONE_SCHEMA=s_0 ;;
	database) ONE_DB=plain ONE_SCHEMA=public ;;
	*) echo "BASELINE must be schema or database" >&2; exit 2 ;;
esac
case $READ_ROUTING in
	auto | off) ;;
	*) echo "READ_ROUTING must be auto or off" >&2; exit 2 ;;
esac
bench_results tenants

sql_on() { # port sql: one value, as the bench role over TCP
	"$PG_BIN/psql" -X -A -t -q -h 127.0.0.1 -p "$1" -U "$DB_USER" -d "$DB" -c "$2"
}

# ---------------------------------------------------------------- setup

bench_deps psql pg_isready initdb pg_ctl pg_basebackup
need_psycopg
check_ports "$PG_PORT" "$REP_PORT" "$PGT_PORT" "$PGB_PORT"
# clients + PgBouncer's server connections, each a file descriptor
raise_nofile 20000 $((N_CLIENTS * 2 + 200)) "$N_CLIENTS clients"
PG_MAX_CONN=$((TENANTS * PGB_POOL_SIZE + POOL_SIZE + 50))

bench_workdir tenants pgdata replica run
chmod 700 "$DIR/replica"
note "PostgreSQL on 127.0.0.1:$PG_PORT (max_connections $PG_MAX_CONN), its replica on :$REP_PORT, in $DIR"
pg_init "$DIR/pgdata" "$PG_PORT" "$PG_MAX_CONN"
cat >>"$DIR/pgdata/postgresql.conf" <<EOF
wal_level = replica
max_wal_senders = 4
hot_standby = on
hot_standby_feedback = on
EOF
pg_start PostgreSQL "$DIR/pgdata" "$DIR/run/postgresql.log"
pg_create_bench_db "$PG_PORT"

note "creating $TENANTS schemas with an orders table each"
{
	echo "BEGIN;"
	for i in $(seq 0 $((TENANTS - 1))); do
		echo "CREATE SCHEMA s_$i; CREATE TABLE s_$i.orders (id int PRIMARY KEY, tenant int, item text);"
		echo "INSERT INTO s_$i.orders SELECT g, $i, 'item ' || g FROM generate_series(1, 10) g;"
	done
	if [ "$BASELINE" = database ]; then
		echo "CREATE TABLE public.orders (id int PRIMARY KEY, tenant int, item text);"
		echo "INSERT INTO public.orders SELECT g, -1, 'item ' || g FROM generate_series(1, 10) g;"
	fi
	echo "COMMIT;"
} >"$DIR/schemas.sql"
timeout 300 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d "$DB" \
	-f "$DIR/schemas.sql" >/dev/null || die "creating the schemas failed"
pg_admin "$PG_PORT" "$DB" -c "VACUUM ANALYZE" # the replica gets the visibility map and statistics

# The replica: a physical copy taken after the schemas exist, so it holds every table
note "replica: pg_basebackup, port $REP_PORT"
as_pg "$PG_BIN/pg_basebackup" -h "$DIR/run" -p "$PG_PORT" -U postgres -D "$DIR/replica" \
	-R -X stream -c fast --no-sync -C -S bench_replica >/dev/null || die "pg_basebackup failed"
pg_start replica "$DIR/replica" "$DIR/run/replica.log" -o "-p $REP_PORT"
[ "$(sql_on "$REP_PORT" "SELECT pg_is_in_recovery()")" = t ] || die "the replica is not in recovery"
# replayed up to the primary's current position (a no-op here: it copied every table)
lsn=$(sql_on "$PG_PORT" "SELECT pg_current_wal_lsn()")
for _ in $(seq 300); do
	[ "$(sql_on "$REP_PORT" "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break
	sleep 0.1
done
[ "$(sql_on "$REP_PORT" "SELECT count(*) FROM s_$((TENANTS - 1)).orders")" = 10 ] ||
	die "the replica does not have the tenants' tables"

write_userlist

# ---------------------------------------------------------------- the poolers

start_pgtenant() { # many|one: pgtenant with every tenant, or with the baseline's one
	local ini=$DIR/pgtenant-$1.ini
	{
		pgt_ini_head "$PGT_PORT"
		printf 'tenant_from = database\ntenant_pool_size = 5\nmax_client_conn = %s\n' $((N_CLIENTS + 100))
		printf 'read_routing = %s\nhealth_check_period = 1s\nstats_users = %s\n' "$READ_ROUTING" "$DB_USER"
		pgt_ini_backend "$POOL_SIZE"
		printf 'replicas = %s:%s\nreplica_pool_size = %s\n' "$(backend_host)" "$REP_PORT" "$POOL_SIZE"
		if [ "$1" = many ]; then
			for i in $(seq 0 $((TENANTS - 1))); do
				printf '\n[tenant t%d]\nmode = schema\nbackend = pg\nschema = s_%d\n' "$i" "$i"
			done
		elif [ "$BASELINE" = schema ]; then
			pgt_ini_tenant t0 schema "schema = s_0" "pool_size = $POOL_SIZE"
		else
			pgt_ini_tenant plain database "pool_size = $POOL_SIZE"
		fi
	} >"$ini"
	launch_pgtenant pgtenant "$ini" "$DIR/pgtenant-$1.log" &&
		await_target pgtenant "$DIR/pgtenant-$1.log" "$PGT_PORT" "$DB_USER" "$(one_db "$1")" &&
		await_replica "$DIR/pgtenant-$1.log"
}

one_db() { # many|one -> a database (tenant) name to log in to
	if [ "$1" = many ]; then echo t0; else echo "$ONE_DB"; fi
}

console() { # sql: rows from pgtenant's admin console, fields separated by |
	timeout 15 "$PG_BIN/psql" -X -A -t -q -h 127.0.0.1 -p "$PGT_PORT" -U "$DB_USER" -d pgtenant -c "$1"
}

await_replica() { # log: up to 15 s for SHOW BACKENDS to report the replica up
	local _ st=""
	for _ in $(seq 75); do
		st=$(console "SHOW BACKENDS" 2>/dev/null | awk -F'|' '$2 == "replica" { print $5 }') || st=""
		[ "$st" = up ] && return 0
		sleep 0.2
	done
	note "pgtenant: the replica is ${st:-not listed} in SHOW BACKENDS; its log:"
	tail -n 20 "$1" >&2
	return 1
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
"""Connects N_TENANTS x PER clients - client i of tenant N on database tN, expecting
schema s_N; or, given ONE_DB and ONE_SCHEMA (not "-"), every client on ONE_DB, expecting
ONE_SCHEMA - then each loops a statement on its table for DURATION s.

Over the measured window it also reads the pooler's CPU ticks (utime+stime of
/proc/POOLER_PID/stat; 0: none) and the bench database's xact_commit on the primary
and on the replica (REP_PORT; 0: none); before it, the pooler's CPU share over IDLE_S
seconds with every client logged in and idle. Prints one line of key=value."""
import asyncio, os, random, sys, time
import psycopg

port, n_tenants, per, duration, pg_port, rep_port, pooler_pid = (int(a) for a in sys.argv[1:8])
one_db, one_schema = sys.argv[8:10]
user, password = os.environ["BENCH_USER"], os.environ["PGPASSWORD"]
count = {"ok": 0, "err": 0, "wrong": 0, "conn_err": 0}
first_err = []
lat_sum = [0.0]
state = {"run": False, "stop": False}
SERVERS_SQL = ("SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
               "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
IDLE_S = 2
RATE = float(os.environ.get("RATE", "0"))
COMMITS_SQL = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"

def conninfo(db, p):
    return (f"host=127.0.0.1 port={p} dbname={db} user={user} password={password} "
            "sslmode=disable gssencmode=disable connect_timeout=60")

def cpu_ticks():
    if not pooler_pid:
        return 0
    with open(f"/proc/{pooler_pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15; fields[0] is field 3

async def one_value(conn, sql, args=None):
    cur = await conn.execute(sql, args)
    return (await cur.fetchone())[0]

async def client(i, sem, ready):
    db, want = (one_db, one_schema) if one_db != "-" else (f"t{i}", f"s_{i}")
    try:
        async with sem:
            conn = await psycopg.AsyncConnection.connect(conninfo(db, port), autocommit=True)
    except Exception as e:
        count["conn_err"] += 1
        if len(first_err) < 3:
            first_err.append(f"connect {db}: {e}")
        ready.release()
        return
    conn.prepare_threshold = None
    ready.release()
    try:
        while not state["run"]:
            await asyncio.sleep(0.05)
        # RATE > 0: every client paced to its share of RATE statements a second, from
        # a random phase, so runs compare at the same load; 0: as fast as answered
        interval = n_tenants * per / RATE if RATE > 0 else 0
        due = time.monotonic() + random.random() * interval
        while not state["stop"]:
            if interval:
                now = time.monotonic()
                if due > now:
                    await asyncio.sleep(due - now)
                due = max(due + interval, time.monotonic() - interval)
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
                    first_err.append(f"{db}: {e}")
                if conn.closed:
                    return
    finally:
        await conn.close()

async def sample_servers(mons, peak):
    # mons: a connection to the primary, then one to the replica (psycopg serialises
    # their use with the window's xact_commit reads)
    while not state["stop"]:
        for k, c in enumerate(mons):
            peak[k] = max(peak[k], await one_value(c, SERVERS_SQL, [user]))
        await asyncio.sleep(0.2)

async def main():
    mons = [await psycopg.AsyncConnection.connect(conninfo("bench", p), autocommit=True)
            for p in (pg_port, rep_port) if p]
    sem, ready = asyncio.Semaphore(64), asyncio.Semaphore(0)
    peak = [0] * len(mons)
    t0 = time.monotonic()
    tasks = [asyncio.create_task(client(i, sem, ready)) for i in range(n_tenants) for _ in range(per)]
    sampler = asyncio.create_task(sample_servers(mons, peak))
    for _ in tasks:
        await ready.acquire()
    connect_s = time.monotonic() - t0
    # the pooler's background CPU, every client logged in and idle
    idle0, ti0 = cpu_ticks(), time.monotonic()
    await asyncio.sleep(IDLE_S)
    idle_pct = (cpu_ticks() - idle0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - ti0) * 100
    state["run"] = True
    await asyncio.sleep(0.5)  # every client has started its loop
    ok0, tick0, lat0, t1 = count["ok"], cpu_ticks(), lat_sum[0], time.monotonic()
    c0 = [await one_value(c, COMMITS_SQL) for c in mons]
    await asyncio.sleep(duration)
    ok1, tick1, lat1, t2 = count["ok"], cpu_ticks(), lat_sum[0], time.monotonic()
    c1 = [await one_value(c, COMMITS_SQL) for c in mons]
    state["stop"] = True
    await asyncio.gather(*tasks, return_exceptions=True)
    await sampler
    for c in mons:
        await c.close()
    n = ok1 - ok0
    rep = "-"
    if rep_port:
        d = [b - a for a, b in zip(c0, c1)]
        rep = f"{100 * d[1] / max(d[0] + d[1], 1):.1f}"
    print(f"tps={n / (t2 - t1):.1f} statements={n} errors={count['err']} wrong_schema={count['wrong']} "
          f"connect_errors={count['conn_err']} connect_s={connect_s:.1f} "
          f"mean_ms={(lat1 - lat0) / max(n, 1) * 1000:.2f} server_conns={peak[0]} "
          f"replica_conns={peak[1] if rep_port else '-'} replica_pct={rep} "
          f"cpu_ticks={tick1 - tick0 if pooler_pid else '-'} "
          f"idle_cpu_pct={f'{idle_pct:.1f}' if pooler_pid else '-'}")
    for e in first_err:
        print("  first errors:", e, file=sys.stderr)

asyncio.run(main())
EOF

declare -A RES=() # "run round" -> the driver's line, with cpu_us added; FAILED
any_failed=0
RUNS=()
for t in $TARGETS; do
	case $t in
		pgtenant) RUNS+=(pgtenant/many pgtenant/one) ;;
		pgbouncer) RUNS+=(pgbouncer/many) ;;
		*) die "unknown target $t" ;;
	esac
done

run_driver() { # run round port pid one_db one_schema
	local run=$1 round=$2 line ticks n err=$DIR/driver-${1//\//-}-$2.err
	note "round $round, $run: $N_CLIENTS clients of $([ "$5" = - ] && echo "$TENANTS tenants" || echo "tenant $5") for ${DURATION}s"
	if ! line=$(BENCH_USER=$DB_USER RATE=$RATE timeout $((DURATION + 240)) "$PYTHON" "$DIR/driver.py" "$3" "$TENANTS" \
		"$CLIENTS_PER" "$DURATION" "$PG_PORT" "$REP_PORT" "$4" "$5" "$6" 2>"$err"); then
		note "$run: the driver failed:"
		tail -n 5 "$err" >&2
		RES["$run $round"]=FAILED
		any_failed=1
		return
	fi
	[ -s "$err" ] && sed 's/^/    /' "$err" >&2
	ticks=$(field "$line" cpu_ticks)
	n=$(field "$line" statements)
	if [ "$ticks" != - ] && [ "$n" -gt 0 ]; then line+=" cpu_us=$(cpu_us_per_tx 0 "$ticks" "$n")"; fi
	RES["$run $round"]=$line
	out "$(printf 'round %s %-14s %s' "$round" "$run:" "$line")"
	case $line in *" errors=0 wrong_schema=0 connect_errors=0 "*) ;; *) any_failed=1 ;; esac
	if [ "${run%/*}" = pgtenant ] && [ "$READ_ROUTING" != off ] &&
		awk -v p="$(field "$line" replica_pct)" 'BEGIN { exit !(p + 0 < 50) }'; then
		note "$run: the replica committed only $(field "$line" replica_pct)% of the transactions: not routed"
		any_failed=1
	fi
}

SHOWN_POOLS=0
run_pgtenant() { # many|one round
	local run=pgtenant/$1
	if start_pgtenant "$1"; then
		if [ "$1" = many ]; then
			run_driver "$run" "$2" "$PGT_PORT" "${PID[pgtenant]}" - -
		else
			run_driver "$run" "$2" "$PGT_PORT" "${PID[pgtenant]}" "$ONE_DB" "$ONE_SCHEMA"
		fi
		if [ "$SHOWN_POOLS" = 0 ]; then # once: the pools as pgtenant sees them
			SHOWN_POOLS=1
			console "SHOW POOLS" 2>/dev/null | awk -F'|' -v run="$run" '{
				printf "pgtenant SHOW POOLS after %s: %s %s:%s sv_active %s sv_idle %s\n", run, $2, $3, $4, $6, $7 }' |
				while read -r l; do out "$l"; done
		fi
	else
		RES["$run $2"]=FAILED
		any_failed=1
	fi
	stop_target pgtenant
}

run_pgbouncer() { # round
	if start_pgbouncer; then
		run_driver pgbouncer/many "$1" "$PGB_PORT" "${PID[pgbouncer]}" - -
	else
		RES["pgbouncer/many $1"]=FAILED
		any_failed=1
	fi
	stop_target pgbouncer
}

out_header "pgtenant many-tenants benchmark"
out "$TENANTS schema tenants x $CLIENTS_PER clients (baseline: the same $N_CLIENTS clients on one $BASELINE tenant),"
out "${DURATION}s of SELECT current_schema(), count(*) FROM orders per run, $ROUNDS rounds;"
out "read routing (pgtenant only): read_routing = $READ_ROUTING, one streaming replica (127.0.0.1:$REP_PORT)"
out ""
for round in $(seq 1 "$ROUNDS"); do
	order="many one"
	[ $((round % 2)) = 0 ] && order="one many"
	for t in $TARGETS; do
		case $t in
			pgtenant) for k in $order; do run_pgtenant "$k" "$round"; done ;;
			pgbouncer) run_pgbouncer "$round" ;;
		esac
	done
done

# ---------------------------------------------------------------- the table

vals() { # run key [ok]: that key's values over the rounds
	local r l
	for r in $(seq 1 "$ROUNDS"); do
		l=${RES["$1 $r"]:-FAILED}
		[ "$l" = FAILED ] && continue
		field "$l" "$2"
	done
}
total() { awk '{ s += $1 } END { print s + 0 }'; }

out ""
row() { printf '%-15s %7s %-9s %9s %9s %8s %12s %13s %8s %9s %6s %6s' "$@"; }
hdr=$(row run tenants pools tps cpu_us/tx replica% server_conns replica_conns mean_ms connect_s errors wrong)
out "$hdr"
out "$(printf '%s' "$hdr" | tr -c '\n' -)"
declare -A MED_TPS=() MED_CPU=()
for run in "${RUNS[@]}"; do
	case $run in
		pgtenant/many) tn=$TENANTS pools="1 x $POOL_SIZE" ;;
		pgtenant/one) tn=1 pools="1 x $POOL_SIZE" ;;
		pgbouncer/many) tn=$TENANTS pools="$TENANTS x $PGB_POOL_SIZE" ;;
	esac
	if [ -z "$(vals "$run" tps)" ]; then
		out "$(printf '%-15s %7s %-9s %9s' "$run" "$tn" "$pools" FAILED)"
		continue
	fi
	MED_TPS[$run]=$(median "$(vals "$run" tps)")
	MED_CPU[$run]=$(median "$(vals "$run" cpu_us)")
	rep=$(median "$(vals "$run" replica_pct)")
	[ "${run%/*}" = pgbouncer ] && rep="(none)"
	out "$(row "$run" "$tn" "$pools" "${MED_TPS[$run]}" "${MED_CPU[$run]:--}" "${rep:--}" \
		"$(vals "$run" server_conns | sort -n | tail -n1)" "$(vals "$run" replica_conns | sort -n | tail -n1)" \
		"$(median "$(vals "$run" mean_ms)")" "$(median "$(vals "$run" connect_s)")" \
		"$(printf '%s\n' "$(vals "$run" errors)" "$(vals "$run" connect_errors)" | total)" \
		"$(vals "$run" wrong_schema | total)")"
done

out ""
many=${MED_CPU[pgtenant/many]:-}
one=${MED_CPU[pgtenant/one]:-}
if [ -n "$many" ] && [ -n "$one" ]; then
	diffs=""
	for r in $(seq 1 "$ROUNDS"); do
		a=$(field "${RES["pgtenant/many $r"]:-}" cpu_us)
		b=$(field "${RES["pgtenant/one $r"]:-}" cpu_us)
		[ -n "$a" ] && [ -n "$b" ] && diffs+=" $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%+.1f", a - b }')"
	done
	out "$(awk -v a="$many" -v b="$one" -v t="$TENANTS" 'BEGIN {
		printf "pgtenant CPU per transaction, %d tenants vs one: %.1f - %.1f = %+.1f us (target: at most +1.0 us)", t, a, b, a - b }')"
	out "  per round (many - one):$diffs"
fi

routed=no
if [ -n "$(vals pgtenant/many replica_pct)$(vals pgtenant/one replica_pct)" ] &&
	[ "$READ_ROUTING" != off ] &&
	printf '%s\n' "$(vals pgtenant/many replica_pct)" "$(vals pgtenant/one replica_pct)" |
	awk 'NF { n++; if ($1 + 0 < 50) bad = 1 } END { exit !(n && !bad) }'; then
	routed=yes
fi

out ""
out "NOTE: cpu_us/tx is the pooler's utime+stime over the measured window / statements (1 tick = $((1000000 / CLK_TCK)) us)."
out "      idle_cpu_pct (run lines): the pooler's CPU share over 2 s with every client logged in and"
out "      idle, just before the load: background work, included in cpu_us/tx as (idle_cpu_pct x 10^4) / tps."
out "NOTE: replica% is the replica's share of the transactions both servers committed in the window;"
out "      pgtenant routes with read_routing = $READ_ROUTING (routed: $routed); PgBouncer has no read routing."
out "NOTE: server_conns / replica_conns: the peak PostgreSQL saw on the primary / the replica"
out "      (pg_stat_activity, sampled every 0.2 s)."
out "NOTE: mean_ms is bound by the single driver process (about clients / tps); connect_s is the"
out "      time to log all $N_CLIENTS clients in (PgBouncer also opens a server connection per tenant)."
[ "$(nproc)" -le 4 ] && out "NOTE: $(nproc) CPUs shared by the driver, the pooler and PostgreSQL (primary and replica)."

summary tenants.count "$TENANTS"
for run in pgtenant/one pgtenant/many pgbouncer/many; do
	key=${run#*/}.${run%/*}
	summary "tenants.cpu_us.$key" "${MED_CPU[$run]:-n/a}"
	summary "tenants.tps.$key" "${MED_TPS[$run]:-n/a}"
done
if [ -n "${MED_TPS[pgtenant/many]:-}${MED_TPS[pgtenant/one]:-}" ]; then
	summary tenants.wrong_schema.pgtenant \
		"$(printf '%s\n' "$(vals pgtenant/many wrong_schema)" "$(vals pgtenant/one wrong_schema)" | total)"
else
	summary tenants.wrong_schema.pgtenant n/a
fi
summary tenants.routed "$routed"

note "results written to $RESULT"
exit "$any_failed"
