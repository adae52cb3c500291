#!/bin/bash
# shellcheck disable=SC2153  # the settings are assigned by `defaults` (lib.sh)
# pgtenant migrate benchmark: TENANTS schema tenants x MIGRATIONS migration files, applied
# 1. by the loop users write today: for each schema, for each file in version order, one
#    `psql -v ON_ERROR_STOP=1 -f FILE` with PGOPTIONS=-csearch_path=SCHEMA (a process and
#    a login per schema and file, no history);
# 2. by `pgtenant migrate pgtenant.ini run --jobs JOBS` (a connection per job, a
#    transaction and a history row per schema and file, the schema checked).
# Each gets its own set of TENANTS empty schemas in one database, so both do the same
# DDL from the same starting point. Both log in as the bench role over TCP with SCRAM.
# After each, the result is checked: every schema has the tables, columns and rows the
# files make (and, for migrate, TENANTS x MIGRATIONS successful history rows).
#
# Everything runs on 127.0.0.1 in a temporary directory, started and stopped here: a
# throwaway PostgreSQL (fsync off; as root it runs as `postgres`). No pgtenant process is
# started: migrate talks to the backend itself.
#
# Environment (defaults in brackets):
#   TENANTS [1000]  MIGRATIONS [10]  JOBS [4]  POOL_SIZE [20] (the backend's pool_size)
#   PG_PORT [25462]  PG_BIN [/usr/lib/postgresql/15/bin]  PGTENANT [./pgtenant]
#   BENCH_KEEP [0]  1: keep the temporary directory
#   BENCH_SUMMARY   a file for summary lines (lib.sh): migrate.loop_s, migrate.pgtenant_s,
#                   migrate.speedup
# Output: both times, the speed-up (target: at least 5x, and migrate under 60 s); printed
# and written to bench/results/migrate-<timestamp>.txt.
# Exit status: 0 when both applied everything and the targets are met, 1 otherwise, 2 on
# setup failure.
set -euo pipefail

. "$(dirname "$0")/lib.sh"

defaults TENANTS=1000 MIGRATIONS=10 JOBS=4 POOL_SIZE=20 PG_PORT=25462
bench_results migrate

sql() { # sql: one value, as the bench role
	"$PG_BIN/psql" -X -A -t -q -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d "$DB" -c "$1"
}

bench_deps psql pg_isready initdb pg_ctl
check_ports "$PG_PORT"
[ -x "$PGTENANT" ] || die "$PGTENANT not found (run make pgtenant)"
out_header "pgtenant migrate benchmark" "$TENANTS schemas x $MIGRATIONS migrations, --jobs $JOBS"

bench_workdir migrate pgdata run
pg_init "$DIR/pgdata" "$PG_PORT" 100
pg_start PostgreSQL "$DIR/pgdata" "$DIR/run/postgresql.log"
pg_create_bench_db "$PG_PORT"
write_userlist

# The migrations: the DDL and small data changes a product makes over time.
mkdir "$DIR/migrations"
for i in $(seq "$MIGRATIONS"); do
	f="$DIR/migrations/V${i}__step_$i.sql"
	case $((i % 5)) in
		1) printf 'CREATE TABLE t%d (id bigint PRIMARY KEY, note text);\n' "$i" >"$f" ;;
		2) printf 'ALTER TABLE t%d ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();\n' \
			$((i - 1)) >"$f" ;;
		3) printf 'CREATE INDEX ON t%d (created_at);\n' $((i - 2)) >"$f" ;;
		4) printf 'INSERT INTO t%d (id, note) SELECT g, %s FROM generate_series(1, 10) g;\n' \
			$((i - 3)) "'n' || g" >"$f" ;;
		0) printf 'CREATE VIEW v%d AS SELECT id, note FROM t%d WHERE id > 5;\n' "$i" $((i - 4)) >"$f" ;;
	esac
done
FILES=()
while IFS= read -r f; do FILES+=("$f"); done < <(ls "$DIR/migrations" | sort -t_ -k1.2n)

# Two sets of empty schemas, one for each way; and the ini of the migrate set.
sql "DO \$\$ BEGIN FOR i IN 1..$TENANTS LOOP
	EXECUTE format('CREATE SCHEMA loop_%s', i); EXECUTE format('CREATE SCHEMA mig_%s', i);
END LOOP; END \$\$"
{
	pgt_ini_head 6499
	echo "migrations_dir = $DIR/migrations"
	pgt_ini_backend "$POOL_SIZE"
	for i in $(seq "$TENANTS"); do pgt_ini_tenant "mig_$i" schema; done
} >"$DIR/pgtenant.ini"

check_schemas() { # prefix: every schema has what the files make
	local want=$((MIGRATIONS >= 4 ? TENANTS * 10 : 0))
	local rows
	rows=$(sql "SELECT coalesce(sum((xpath('/row/c/text()',
		query_to_xml(format('SELECT count(*) AS c FROM %I.t1', n.nspname), false, true, '')))[1]::text::int), 0)
		FROM pg_namespace n WHERE n.nspname LIKE '${1}\\_%'")
	[ "$rows" = "$want" ] || { note "$1: $rows rows in t1, want $want"; return 1; }
}

note "psql loop: $TENANTS schemas x ${#FILES[@]} files, one psql each"
t0=$(date +%s.%N)
for i in $(seq "$TENANTS"); do
	for f in "${FILES[@]}"; do
		PGOPTIONS="-csearch_path=loop_$i" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
			-h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d "$DB" -f "$DIR/migrations/$f" >/dev/null ||
			die "psql loop: $f failed on loop_$i"
	done
done
t1=$(date +%s.%N)
LOOP_S=$(echo "$t1 - $t0" | bc)
ok=0
check_schemas loop || ok=1

note "pgtenant migrate run --jobs $JOBS"
t0=$(date +%s.%N)
"$PGTENANT" migrate "$DIR/pgtenant.ini" run --jobs "$JOBS" --json >"$DIR/migrate.json" ||
	{ note "migrate failed: $(head -c 2000 "$DIR/migrate.json")"; ok=1; }
t1=$(date +%s.%N)
MIG_S=$(echo "$t1 - $t0" | bc)
check_schemas mig || ok=1
hist=$(sql "SELECT sum((xpath('/row/c/text()', query_to_xml(format(
	'SELECT count(*) AS c FROM %I.pgtenant_schema_history WHERE success', n.nspname),
	false, true, '')))[1]::text::int) FROM pg_namespace n WHERE n.nspname LIKE 'mig\\_%'")
[ "$hist" = $((TENANTS * MIGRATIONS)) ] || { note "history rows: $hist"; ok=1; }
maxconn=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["max_connections_per_backend"])' \
	"$DIR/migrate.json" 2>/dev/null || echo "?")

SPEEDUP=$(echo "scale=1; $LOOP_S / $MIG_S" | bc)
out ""
out "$(printf '%-34s %10s\n' "way" "seconds")"
out "$(printf '%-34s %10.2f\n' "psql loop (one psql per file)" "$LOOP_S")"
out "$(printf '%-34s %10.2f\n' "pgtenant migrate --jobs $JOBS" "$MIG_S")"
out "speed-up: ${SPEEDUP}x (target >= 5x); pgtenant migrate under 60 s: $(
	[ "$(echo "$MIG_S < 60" | bc)" = 1 ] && echo yes || echo NO)"
out "migrate: $hist history rows, at most $maxconn connections to the backend (pool_size $POOL_SIZE)"
summary migrate.loop_s "$LOOP_S"
summary migrate.pgtenant_s "$MIG_S"
summary migrate.speedup "$SPEEDUP"
[ "$(echo "$SPEEDUP >= 5 && $MIG_S < 60" | bc)" = 1 ] || ok=1
[ "$ok" = 0 ] && out "result: PASS" || out "result: FAIL"
exit "$ok"
