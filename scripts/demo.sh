#!/bin/bash
# shellcheck disable=SC2317  # functions run from traps look unreachable
# pgtenant demo: a local PostgreSQL 15 with two tenant databases (acme and
# globex, plus initech for README's onboarding example) and a pgtenant in
# front of them, in the foreground, with an admin user for the console.
# Ctrl-C stops pgtenant and then the demo PostgreSQL — on every way out:
# Ctrl-C also when the output is piped (`make demo | tee log`), SIGTERM,
# SIGHUP, and any error after PostgreSQL started.
#
# Meant for a fresh Debian machine as root (`make demo`): PostgreSQL runs as
# the unprivileged `postgres` account, which is created when missing. Run as
# another user, everything runs as that user. Everything lives in DEMO_DIR and
# listens on 127.0.0.1 only. A demo PostgreSQL left running by an earlier run
# is reused.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO_DIR=${DEMO_DIR:-/tmp/pgtenant-demo}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PORT=${PG_PORT:-15432}
LISTEN_PORT=${LISTEN_PORT:-6432}
PGTENANT=${PGTENANT:-$ROOT/pgtenant}

PGDATA=$DEMO_DIR/pgdata
SOCK_DIR=$DEMO_DIR/run
PG_LOG=$DEMO_DIR/postgresql.log
INI=$DEMO_DIR/pgtenant.ini
AUTH_FILE=$DEMO_DIR/userlist.txt
CONF_D=$DEMO_DIR/conf.d
ADMIN_PASSWORD=${ADMIN_PASSWORD:-adminpass}

# The files written below hold passwords: only their owner reads them.
umask 077

# A closed stdout (the reader of a pipe went away, e.g. tee on Ctrl-C) must
# not kill the script before it has stopped what it started: writes fail
# instead, and nothing below needs stdout to clean up.
trap '' PIPE
say() { printf 'demo: %s\n' "$*" >&2 2>/dev/null || true; }
die() { say "error: $*"; exit 1; }

# Missing packages (postgresql, pgbouncer, build tools) are installed first;
# deps.sh does nothing when everything is there.
"$ROOT/scripts/deps.sh"
[ -x "$PG_BIN/postgres" ] || die "PostgreSQL 15 not found in $PG_BIN (apt-get install postgresql-15, or set PG_BIN)"
if [ ! -x "$PGTENANT" ]; then
	say "building pgtenant"
	make -C "$ROOT" pgtenant >&2
fi

# PostgreSQL refuses to run as root, so as root it runs as `postgres`.
if [ "$(id -u)" = 0 ]; then
	PG_USER=postgres
	if ! id "$PG_USER" >/dev/null 2>&1; then
		say "creating the system user $PG_USER"
		useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh "$PG_USER"
	fi
	as_pg() { (cd / && runuser -u "$PG_USER" -- "$@"); }
else
	PG_USER=$(id -un)
	as_pg() { (cd / && "$@"); }
fi

mkdir -p "$DEMO_DIR" "$SOCK_DIR" "$CONF_D"
# PostgreSQL (another account when run as root) must reach its data and socket directories.
chmod 711 "$DEMO_DIR"
chmod 755 "$SOCK_DIR"
[ "$(id -u)" = 0 ] && chown "$PG_USER": "$SOCK_DIR"

pg_running() { as_pg "$PG_BIN/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1; }

PGTENANT_PID=
STARTED_PG=

# Every way out ends here: pgtenant first (its clients' transactions may still
# need the server), then the demo PostgreSQL. Nothing is written before the
# stop, so a dead stdout or stderr cannot cut it short.
cleanup() {
	trap - EXIT INT TERM HUP
	if [ -n "$PGTENANT_PID" ] && kill -0 "$PGTENANT_PID" 2>/dev/null; then
		kill -TERM "$PGTENANT_PID" 2>/dev/null || true
		wait "$PGTENANT_PID" 2>/dev/null || true
	fi
	if [ -n "$STARTED_PG" ] && pg_running; then
		as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA" -m fast -w >/dev/null 2>&1 || true
		say "stopped the demo PostgreSQL"
	fi
}
on_signal() { # exit status 128 + signal number, as a shell killed by it would have
	cleanup
	exit "$1"
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

STARTED_PG=1 # a reused one is stopped too: the demo leaves nothing running
if pg_running; then
	say "reusing the demo PostgreSQL already running in $PGDATA"
else
	if [ ! -f "$PGDATA/PG_VERSION" ]; then
		say "creating a PostgreSQL cluster in $PGDATA"
		rm -rf "$PGDATA"
		mkdir -p "$PGDATA"
		[ "$(id -u)" = 0 ] && chown "$PG_USER": "$PGDATA"
		chmod 700 "$PGDATA"
		# Local socket: peer (only the setup below uses it). TCP: SCRAM.
		as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --encoding=UTF8 --locale=C \
			--auth-local=peer --auth-host=scram-sha-256 >/dev/null
		cat >>"$PGDATA/postgresql.conf" <<-EOF

			# pgtenant demo
			listen_addresses = '127.0.0.1'
			port = $PG_PORT
			unix_socket_directories = '$SOCK_DIR'
			password_encryption = 'scram-sha-256'
		EOF
	fi
	say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
	: >"$PG_LOG"
	[ "$(id -u)" = 0 ] && chown "$PG_USER": "$PG_LOG"
	as_pg "$PG_BIN/pg_ctl" start -D "$PGDATA" -l "$PG_LOG" -w -t 60 >/dev/null ||
		{ tail -n 20 "$PG_LOG" >&2; die "PostgreSQL did not start (log: $PG_LOG)"; }
fi

psql_admin() {
	as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK_DIR" -p "$PG_PORT" -U postgres "$@"
}

# Idempotent, so a reused cluster ends up the same as a new one.
psql_admin -d postgres >/dev/null <<-'EOF'
	SELECT 'CREATE ROLE app LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') \gexec
	ALTER ROLE app PASSWORD 'apppass';
	SELECT 'CREATE DATABASE acme OWNER app' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'acme') \gexec
	SELECT 'CREATE DATABASE globex OWNER app' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'globex') \gexec
	SELECT 'CREATE DATABASE tenant_template OWNER app' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'tenant_template') \gexec
	-- README's "Onboarding a customer" creates initech (and cust_hooli) with CREATE TENANT
	ALTER ROLE app CREATEDB;
	DROP DATABASE IF EXISTS initech WITH (FORCE);
EOF
psql_admin -d acme >/dev/null <<-'EOF'
	SET client_min_messages = warning;
	DROP SCHEMA IF EXISTS cust_hooli CASCADE;
EOF
rm -f "$CONF_D/initech.ini"

# The same table in both tenants' databases, with different rows: what a
# client sees tells which tenant it reached.
seed() { # dbname, then rows as SQL VALUES
	psql_admin -d "$1" >/dev/null <<-EOF
		SET client_min_messages = warning;
		SET ROLE app;
		CREATE TABLE IF NOT EXISTS customers (id int PRIMARY KEY, name text NOT NULL, city text NOT NULL);
		INSERT INTO customers VALUES $2 ON CONFLICT (id) DO NOTHING;
	EOF
}
seed acme "(1, 'Wile E. Coyote', 'Mesa'), (2, 'Road Runner', 'Desert Rd'), (3, 'Acme Labs', 'Tucson')"
seed globex "(1, 'Hank Scorpio', 'Cypress Creek'), (2, 'Homer Simpson', 'Springfield')"
# every database CREATE TENANT makes is a copy of this one: the table, no rows
seed tenant_template "(0, 'nobody', 'nowhere')"
psql_admin -d tenant_template -c "DELETE FROM customers" >/dev/null

cat >"$AUTH_FILE" <<-EOF
	"app" "apppass"
	"admin" "$ADMIN_PASSWORD"
EOF
chmod 600 "$AUTH_FILE"

cat >"$INI" <<-EOF
	; pgtenant demo configuration, written by scripts/demo.sh.
	; Every key is described in etc/pgtenant.ini and pgtenant.ini(5).
	[pgtenant]
	listen_addr = 127.0.0.1
	listen_port = $LISTEN_PORT
	auth_type = scram-sha-256
	auth_file = $AUTH_FILE
	; the console: psql "host=127.0.0.1 port=$LISTEN_PORT dbname=pgtenant user=admin"
	admin_users = admin
	; every user of auth_file may connect as any tenant below
	tenant_users = *
	shutdown_timeout = 5s
	; more tenants: every *.ini here, read at start and on RELOAD (CREATE TENANT writes here)
	include_dir = $CONF_D
	; CREATE TENANT ... MODE database copies this database
	tenant_template_db = tenant_template

	[backend main]
	host = 127.0.0.1
	port = $PG_PORT
	user = app
	password = apppass
	dbname = acme

	; database mode: each tenant has a database of its own on the backend's server
	[tenant acme]
	mode = database
	backend = main
	dbname = acme

	[tenant globex]
	mode = database
	backend = main
	dbname = globex
EOF

chmod 600 "$INI"

"$PGTENANT" --check "$INI" || die "pgtenant --check rejected $INI"

cat <<EOF

  pgtenant demo
  -------------
  PostgreSQL 15 : 127.0.0.1:$PG_PORT  (data $PGDATA, log $PG_LOG)
  pgtenant      : 127.0.0.1:$LISTEN_PORT  (config $INI)

  Connect, in another terminal, as a client of tenant acme or of tenant globex:

    psql "host=127.0.0.1 port=$LISTEN_PORT user=app.acme dbname=acme password=apppass"
    psql "host=127.0.0.1 port=$LISTEN_PORT user=app.globex dbname=globex password=apppass"

  and run  SELECT * FROM customers;  in each: the rows differ, because each
  tenant reaches only its own database. The tenant can also come from the
  database name alone:

    psql "host=127.0.0.1 port=$LISTEN_PORT user=app dbname=globex password=apppass"

  The admin console (SHOW TENANTS, SHOW CLIENTS, RELOAD, PAUSE, ...):

    psql "host=127.0.0.1 port=$LISTEN_PORT dbname=pgtenant user=admin password=$ADMIN_PASSWORD"

  New tenants: CREATE TENANT on the console (README: "Onboarding a customer
  without a redeploy" adds initech and cust_hooli).

  Ctrl-C stops pgtenant and the demo PostgreSQL.

EOF

# pgtenant runs as a child the script waits for, so a signal to the script
# (Ctrl-C, TERM, HUP) runs on_signal at once instead of after pgtenant ends.
# Ctrl-C reaches pgtenant too (same process group); cleanup's TERM then
# makes it close at once.
"$PGTENANT" "$INI" &
PGTENANT_PID=$!
rc=0
wait "$PGTENANT_PID" || rc=$?
PGTENANT_PID=
# 130 = ended by SIGINT, the normal way out.
case $rc in 0 | 130) exit 0 ;; *) say "pgtenant exited with status $rc"; exit "$rc" ;; esac
