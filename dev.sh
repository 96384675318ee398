#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine:
#   ./dev.sh certify   install everything, then run the main job
#   ./dev.sh test      install everything, then run the test suite
#   ./dev.sh setup     install only (system packages, virtualenv, this package)
# Extra arguments after 'test' go to pytest; after 'certify' to 'aurora-harness certify'.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(postgresql-15 mariadb-server pgbouncer pgpool2 haproxy sysbench python3-venv procps chromium)
VENV=.venv

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

setup_system() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing system packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

setup_python() {
    local py=${PYTHON:-python3}
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        echo "error: $py is $("$py" --version 2>&1); Python 3.11 or newer is needed (set PYTHON=...)" >&2
        exit 1
    }
    [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
    local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "==> installing the Python package and its dependencies into $VENV"
        "$VENV/bin/pip" install -q --upgrade pip
        "$VENV/bin/pip" install -q -e ".[dev]"
        rm -f "$VENV"/.installed-*
        touch "$stamp"
    fi
}

setup() {
    setup_system
    setup_python
}

cmd=${1:-help}
shift || true
case "$cmd" in
    setup)
        setup
        ;;
    test)
        setup
        exec "$VENV/bin/pytest" "$@"
        ;;
    certify)
        setup
        exec "$VENV/bin/aurora-harness" certify --target reference --engine postgres --profile quick "$@"
        ;;
    *)
        sed -n '2,6p' "$0"
        exit 2
        ;;
esac
