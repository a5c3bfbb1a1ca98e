#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suite.
#
#   export STRATUM_TEST_PG_URL="$(bash scripts/pg-test.sh start)"   # prints the URL
#   bash scripts/pg-test.sh url                                      # the running cluster's URL
#   bash scripts/pg-test.sh stop                                     # stops it, deletes its files
#
# The cluster lives in /tmp/stratum-pg-$PORT (port 25432+), listens on 127.0.0.1 only and trusts local TCP
# connections (acceptable for a disposable test cluster; never reuse this setup). `start` and `stop`
# are idempotent. Run as root (CI), the server runs as the `postgres` user, because PostgreSQL
# refuses to run as root. The state file is $STRATUM_PG_STATE (default /tmp/stratum-pg.url).
# PG_BIN overrides where initdb/pg_ctl are found (default: PostgreSQL 15, else the newest installed).
set -euo pipefail

STATE="${STRATUM_PG_STATE:-/tmp/stratum-pg.url}"
DB_NAME="stratum_test"

die() { echo "pg-test.sh: $*" >&2; exit 1; }

pg_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then echo "$PG_BIN"; return; fi
    if [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then echo /usr/lib/postgresql/15/bin; return; fi
    local newest
    newest="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$newest" ]]; then echo "$newest"; return; fi
    if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
        pg_config --bindir
        return
    fi
    die "PostgreSQL server binaries not found; install them (Debian/Ubuntu: apt-get install postgresql-15) or set PG_BIN"
}

# Run a command as the cluster owner: `postgres` when we are root, ourselves otherwise.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to own the cluster"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local port
    # Below the kernel's ephemeral range (32768+), so no outgoing connection can hold the port.
    for port in $(seq 25432 25531); do
        if ! port_in_use "$port" && [[ ! -e "/tmp/stratum-pg-$port" ]]; then
            echo "$port"
            return
        fi
    done
    die "no free port in 25432-25531"
}

state_port() {
    # The port is the only state we need: the directory and URL derive from it.
    [[ -f "$STATE" ]] && sed -n 's|.*@127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$STATE"
}

running() {
    local port="$1"
    [[ -n "$port" && -d "/tmp/stratum-pg-$port/data" ]] \
        && as_owner "$(pg_bin)/pg_ctl" status -D "/tmp/stratum-pg-$port/data" >/dev/null 2>&1
}

url_for() { echo "postgresql+psycopg://postgres@127.0.0.1:$1/$DB_NAME"; }

start() {
    local port bin dir
    port="$(state_port || true)"
    if running "$port"; then
        url_for "$port"
        return
    fi
    [[ -n "$port" ]] && stop
    bin="$(pg_bin)"
    port="$(free_port)"
    dir="/tmp/stratum-pg-$port"
    mkdir -p "$dir"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$dir"
    # Clean up a half-made cluster if anything below fails (die and set -e both exit).
    trap 'as_owner "$bin/pg_ctl" stop -D "$dir/data" -m immediate >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
    as_owner "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=trust >"$dir/initdb.log" 2>&1 \
        || die "initdb failed: $(tail -n 5 "$dir/initdb.log")"
    # Durability off (fsync, full pages, sync commit): a test cluster trades it for speed.
    # The socket goes in our directory: /var/run/postgresql may not exist or not be writable.
    as_owner "$bin/pg_ctl" start -D "$dir/data" -l "$dir/server.log" -w -t 60 -o \
        "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200" \
        >/dev/null || die "server failed to start: $(tail -n 5 "$dir/server.log")"
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$DB_NAME"
    trap - EXIT
    url_for "$port" >"$STATE"
    cat "$STATE"
}

stop() {
    local port
    port="$(state_port || true)"
    if [[ -n "$port" ]]; then
        if [[ -d "/tmp/stratum-pg-$port/data" ]]; then
            as_owner "$(pg_bin)/pg_ctl" stop -D "/tmp/stratum-pg-$port/data" -m fast >/dev/null 2>&1 || true
        fi
        rm -rf "/tmp/stratum-pg-$port"
    fi
    rm -f "$STATE"
}

url() {
    local port
    port="$(state_port || true)"
    running "$port" || die "no test cluster is running; run: bash scripts/pg-test.sh start"
    url_for "$port"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
