#!/usr/bin/env bash
# Installs (Debian) and starts PgBouncer in transaction pooling mode on
# 127.0.0.1:6432 in front of the local PostgreSQL, for the tests that prove
# transaction-scoped locks work through a transaction pooler.
set -euo pipefail

dir=${KANNUKI_PGBOUNCER_DIR:-/tmp/kannuki-pgbouncer}
port=${KANNUKI_PGBOUNCER_PORT:-6432}

if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
	echo "== installing pgbouncer"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq pgbouncer >/dev/null
	# The package may start its own instance on 6432: stop it, we run ours.
	service pgbouncer stop >/dev/null 2>&1 || true
	pkill -x pgbouncer >/dev/null 2>&1 || true
fi
bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

if pg_isready -h 127.0.0.1 -p "$port" -q 2>/dev/null; then
	echo "== pgbouncer already listening on $port"
	exit 0
fi

mkdir -p "$dir"
cat >"$dir/pgbouncer.ini" <<INI
[databases]
test = host=127.0.0.1 port=5432 dbname=test user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 40
ignore_startup_parameters = extra_float_digits,search_path,application_name
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
echo '"postgres" ""' >"$dir/userlist.txt"
chown -R postgres "$dir" 2>/dev/null || true

# PgBouncer refuses to run as root; -u drops to the postgres user.
if [ "$(id -u)" = 0 ]; then
	"$bin" -d -u postgres "$dir/pgbouncer.ini"
else
	"$bin" -d "$dir/pgbouncer.ini"
fi
for _ in $(seq 1 30); do
	pg_isready -h 127.0.0.1 -p "$port" -q 2>/dev/null && { echo "== pgbouncer is up on $port"; exit 0; }
	sleep 0.5
done
echo "== pgbouncer did not come up"; cat "$dir/pgbouncer.log" || true
exit 1
