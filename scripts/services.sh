#!/usr/bin/env bash
# Installs the system services the test suite starts, when they are missing (CI on a fresh machine).
#
#   bash scripts/services.sh redis     # redis-server (Debian/Ubuntu package), for scripts/redis-test.sh
#
# Uses apt-get as root, or through sudo when available; runs `apt-get update` only if the install
# fails without it (a fresh image has no package lists).
set -euo pipefail

die() { echo "services.sh: $*" >&2; exit 1; }

apt_install() {
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || die "installing $* needs root (or sudo)"
        sudo=(sudo -n)
    fi
    command -v apt-get >/dev/null || die "apt-get not found; install $* with your package manager"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get install -y -q "$@" >/dev/null \
        || { "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" apt-get install -y -q "$@" >/dev/null; } \
        || die "apt-get install $* failed"
}

redis() {
    command -v redis-server >/dev/null && return
    echo "services.sh: installing redis-server" >&2
    apt_install redis-server
}

case "${1:-}" in
    redis) redis ;;
    *) echo "usage: $0 redis" >&2; exit 2 ;;
esac
