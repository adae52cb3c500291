#!/bin/bash
# shellcheck disable=SC2153  # the settings are assigned by `defaults` (lib.sh)
# pgtenant template benchmark (issue 16): memory of one [template] serving SCHEMAS
# schema tenants, ACTIVE of them with a client.
#
# A throwaway PostgreSQL gets SCHEMAS schemas t_1 ... t_SCHEMAS (one table each) in the
# bench database, created in batches of 5,000. pgtenant runs with one template
# (match = t_*, mode = schema, schema = the tenant's name) and no [tenant] section but
# one for its first query. ACTIVE clients (one small asyncio Python process, raw
# protocol, trust auth) each log in to tenant t_<i> (database name t_<i>, i = 1 ...
# ACTIVE) and run `SELECT count(*) FROM items` under their tenant's search_path, then
# stay connected. Then pgtenant's VmRSS (/proc/PID/status) is read, with the number of
# tenants SHOW TENANTS lists, and the clients are closed.
#
# Environment (defaults in brackets):
#   SCHEMAS [50000]  ACTIVE [2000]  POOL_SIZE [20]  CONNECT_TIMEOUT [180] seconds
#   PG_PORT [25472] PGT_PORT [26472]  PG_BIN, PGTENANT, BENCH_KEEP as in lib.sh
# Results are printed and written to bench/results/templates-<timestamp>.txt: a line
# "templates: schemas= active= ok= errors= connect_s= rss_start_kb= rss_kb= listed="
# (rss_kb with the ACTIVE clients connected; listed = rows of SHOW TENANTS). Target:
# rss_kb <= 51200 (50 MB). Summary lines: templates.rss_kb, templates.listed.
# Exit status: 0 when every client got in and RSS is within the target; 1 otherwise;
# 2 on setup failure.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

defaults SCHEMAS=50000 ACTIVE=2000 POOL_SIZE=20 CONNECT_TIMEOUT=180 PG_PORT=25472 PGT_PORT=26472
NOTE_TAG=templates
bench_results templates
[[ $SCHEMAS =~ ^[1-9][0-9]*$ ]] || die "SCHEMAS: '$SCHEMAS' is not a count"
[[ $ACTIVE =~ ^[1-9][0-9]*$ ]] && [ "$ACTIVE" -le "$SCHEMAS" ] || die "ACTIVE: 1 ... SCHEMAS"
MAX_CONN=$((ACTIVE + 100))

bench_deps psql pg_isready initdb pg_ctl
check_ports "$PG_PORT" "$PGT_PORT"
raise_nofile $((MAX_CONN + 1000)) $((ACTIVE + 200)) "$ACTIVE clients"
bench_workdir templates pgdata run
note "PostgreSQL on 127.0.0.1:$PG_PORT in $DIR"
pg_init "$DIR/pgdata" "$PG_PORT" 100 128MB
pg_start PostgreSQL "$DIR/pgdata" "$DIR/run/postgresql.log"
pg_create_bench_db "$PG_PORT"

note "creating $SCHEMAS schemas"
t0=$(date +%s)
for ((from = 1; from <= SCHEMAS; from += 5000)); do
	to=$((from + 4999 > SCHEMAS ? SCHEMAS : from + 4999))
	pg_admin "$PG_PORT" "$DB" -c "DO \$\$BEGIN FOR i IN $from..$to LOOP
		EXECUTE format('CREATE SCHEMA t_%s AUTHORIZATION $DB_USER', i);
		EXECUTE format('CREATE TABLE t_%s.items (id int)', i);
		EXECUTE format('ALTER TABLE t_%s.items OWNER TO $DB_USER', i);
	END LOOP; END\$\$"
done
note "schemas created in $(($(date +%s) - t0)) s"
write_userlist

{
	pgt_ini_head "$PGT_PORT" trust
	printf 'admin_users = %s\ndefault_pool_size = %s\nmax_client_conn = %s\n' "$DB_USER" "$POOL_SIZE" "$MAX_CONN"
	pgt_ini_backend "$POOL_SIZE"
	printf '\n[template schemas]\nmatch = t_*\nmode = schema\nbackend = pg\nshared_schemas =\n'
} >"$DIR/pgtenant.ini"
launch_pgtenant pgtenant "$DIR/pgtenant.ini" "$DIR/pgtenant.log" || exit 2
await_target pgtenant "$DIR/pgtenant.log" "$PGT_PORT" "$DB_USER" t_1 || exit 2
await_query pgtenant "$DIR/pgtenant.log" "$PGT_PORT" "$DB_USER" t_1 "SELECT count(*) FROM items" || exit 2
RSS_START=$(rss_kb "${PID[pgtenant]}")

cat >"$DIR/clients.py" <<'EOF'
"""N clients to 127.0.0.1:PORT, client i logged in (trust) to database t_<i>, each runs
one query, then all stay connected until stdin closes. Prints "ready ok= errors=
connect_s=" once all are in (or failed)."""
import asyncio, struct, sys, time

port, n, user, timeout = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
query = b"SELECT count(*) FROM items\0"
errors, ok = [], [0]

class Client(asyncio.Protocol):
    def __init__(self, i, done):
        self.i, self.done, self.buf, self.asked = i, done, b"", False

    def connection_made(self, transport):
        self.transport = transport
        params = b"".join(k + b"\0" + v + b"\0" for k, v in
                          ((b"user", user.encode()), (b"database", b"t_%d" % self.i)))
        transport.write(struct.pack("!ii", 8 + len(params) + 1, 196608) + params + b"\0")

    def data_received(self, data):
        self.buf += data
        while len(self.buf) >= 5 and not self.done.done():
            kind, length = self.buf[0:1], struct.unpack("!i", self.buf[1:5])[0]
            if len(self.buf) < 1 + length:
                return
            body, self.buf = self.buf[5:1 + length], self.buf[1 + length:]
            if kind == b"E":
                self.done.set_result(body.replace(b"\0", b" ").decode(errors="replace"))
            elif kind == b"Z" and not self.asked:
                self.asked = True
                self.transport.write(b"Q" + struct.pack("!i", 4 + len(query)) + query)
            elif kind == b"Z":
                ok[0] += 1
                self.done.set_result(None)

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result("connection closed")

async def one(loop, sem, i):
    async with sem:
        done = loop.create_future()
        try:
            t, _ = await loop.create_connection(lambda: Client(i, done), "127.0.0.1", port)
        except OSError as e:
            errors.append(str(e))
            return None
        why = await done
        if why:
            errors.append(why)
        return t

async def main():
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(100)
    t0 = time.monotonic()
    conns = await asyncio.wait_for(asyncio.gather(*(one(loop, sem, i + 1) for i in range(n))), timeout)
    print(f"ready ok={ok[0]} errors={len(errors)} connect_s={time.monotonic() - t0:.1f}", flush=True)
    for e in sorted(set(errors))[:3]:
        print("  error:", e, file=sys.stderr, flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    for t in conns:
        if t:
            t.close()

asyncio.run(main())
EOF

note "$ACTIVE clients, one tenant each"
exec 3> >(exec "$PYTHON" "$DIR/clients.py" "$PGT_PORT" "$ACTIVE" "$DB_USER" "$CONNECT_TIMEOUT" >"$DIR/clients.out" 2>&1)
for _ in $(seq $((CONNECT_TIMEOUT * 2))); do
	grep -q '^ready' "$DIR/clients.out" 2>/dev/null && break
	sleep 0.5
done
sleep 1
READY=$(grep '^ready' "$DIR/clients.out" || echo "ready ok=0 errors=$ACTIVE connect_s=timeout")
RSS=$(rss_kb "${PID[pgtenant]}")
LISTED=$(timeout 30 "$PG_BIN/psql" -X -A -t -h 127.0.0.1 -p "$PGT_PORT" -U "$DB_USER" -d pgtenant \
	-c "SHOW TENANTS" | wc -l)
exec 3>&-
sleep 1
grep 'error:' "$DIR/clients.out" >&2 || true

out_header "templates"
out "templates: schemas=$SCHEMAS active=$ACTIVE ${READY#ready } rss_start_kb=$RSS_START rss_kb=$RSS listed=$LISTED"
summary templates.rss_kb "$RSS"
summary templates.listed "$LISTED"
OK=$(field "${READY#ready }" ok)
if [ "$OK" = "$ACTIVE" ] && [ "$RSS" -le 51200 ]; then
	out "templates: OK ($((RSS / 1024)) MB with $ACTIVE active tenants of $SCHEMAS; target <= 50 MB)"
	exit 0
fi
out "templates: FAILED (ok=$OK of $ACTIVE, rss $RSS kB; target <= 51200 kB)"
exit 1
