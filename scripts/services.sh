#!/usr/bin/env bash
# Installs the system services the test suite starts, when they are missing (CI on a fresh machine).
#
#   bash scripts/services.sh redis     # redis-server (Debian/Ubuntu package), for scripts/redis-test.sh
#   bash scripts/services.sh ocr       # tesseract-ocr + Chinese data + poppler-utils, the OCR plugin
#   bash scripts/services.sh redis ocr # both
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

ocr() {
    command -v tesseract >/dev/null && command -v pdftoppm >/dev/null \
        && tesseract --list-langs 2>/dev/null | grep -qx chi_sim && return
    echo "services.sh: installing tesseract-ocr, tesseract-ocr-chi-sim, poppler-utils" >&2
    apt_install tesseract-ocr tesseract-ocr-chi-sim poppler-utils
}

[[ $# -gt 0 ]] || { echo "usage: $0 redis|ocr ..." >&2; exit 2; }
for service in "$@"; do
    case "$service" in
        redis) redis ;;
        ocr) ocr ;;
        *) echo "usage: $0 redis|ocr ..." >&2; exit 2 ;;
    esac
done
