#!/usr/bin/env bash
# A throwaway Redis server for the test suite (the quota counters' Redis backend).
#
#   export STRATUM_TEST_REDIS_URL="$(bash scripts/redis-test.sh start)"   # prints the URL
#   bash scripts/redis-test.sh url                                         # the running server's URL
#   bash scripts/redis-test.sh stop                                        # stops it, deletes its files
#
# The server lives in /tmp/stratum-redis-$PORT (port 26379+, below the ephemeral range), listens on
# 127.0.0.1 only, keeps nothing on disk (no RDB, no AOF) and has no password: a disposable test
# server, never reuse this setup. `start` and `stop` are idempotent. The state file is
# $STRATUM_REDIS_STATE (default /tmp/stratum-redis.url). Install redis-server with
# `bash scripts/services.sh redis` (scripts/test.sh does).
set -euo pipefail

STATE="${STRATUM_REDIS_STATE:-/tmp/stratum-redis.url}"

die() { echo "redis-test.sh: $*" >&2; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local port
    for port in $(seq 26379 26478); do
        if ! port_in_use "$port" && [[ ! -e "/tmp/stratum-redis-$port" ]]; then
            echo "$port"
            return
        fi
    done
    die "no free port in 26379-26478"
}

state_port() { [[ -f "$STATE" ]] && sed -n 's|^redis://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$STATE"; }

url_for() { echo "redis://127.0.0.1:$1/0"; }

# PING over bash's /dev/tcp: no redis-cli needed.
answers() {
    local port="$1" reply
    [[ -n "$port" ]] || return 1
    exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    read -r -t 2 reply <&3 || reply=""
    exec 3>&-
    [[ "$reply" == "+PONG"* ]]
}

start() {
    local port dir
    port="$(state_port || true)"
    if answers "$port"; then
        url_for "$port"
        return
    fi
    [[ -n "$port" ]] && stop
    command -v redis-server >/dev/null || die "redis-server not found; run: bash scripts/services.sh redis"
    port="$(free_port)"
    dir="/tmp/stratum-redis-$port"
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
        --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        || { rm -rf "$dir"; die "redis-server failed to start"; }
    for _ in $(seq 1 100); do
        if answers "$port"; then
            url_for "$port" >"$STATE"
            cat "$STATE"
            return
        fi
        sleep 0.1
    done
    tail -n 5 "$dir/redis.log" >&2 || true
    [[ -f "$dir/redis.pid" ]] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
    rm -rf "$dir"
    die "redis-server did not answer on port $port"
}

stop() {
    local port dir pid
    port="$(state_port || true)"
    if [[ -n "$port" ]]; then
        dir="/tmp/stratum-redis-$port"
        if [[ -f "$dir/redis.pid" ]]; then
            pid="$(cat "$dir/redis.pid")"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -rf "$dir"
    fi
    rm -f "$STATE"
}

url() {
    local port
    port="$(state_port || true)"
    answers "$port" || die "no test Redis is running; run: bash scripts/redis-test.sh start"
    url_for "$port"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
