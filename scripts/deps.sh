#!/bin/sh
# Installs the Debian packages pgtenant needs to build, test and benchmark,
# only those that are missing. Safe to run again; does nothing when all are there.
set -e
PKGS="gcc make autoconf automake pkg-config libevent-dev libssl-dev libpq-dev libinih-dev
      postgresql postgresql-client postgresql-contrib pgbouncer openssl
      python3-pytest python3-psycopg procps cppcheck clang-tidy clang-format
      chromium"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "pgtenant: missing packages:$missing (run as root, or install them)" >&2
	exit 1
fi
echo "pgtenant: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q $missing >/dev/null
