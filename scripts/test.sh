#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: venv + dev install, real Redis and
# Kafka (scripts/services.sh), ruff, ruff format, mypy, then pytest with the
# integration tests required. Extra arguments go to pytest:
#
#   bash scripts/test.sh                      everything
#   bash scripts/test.sh tests/unit -x -q     a subset
#
# The services are stopped on exit unless PUSHTRIO_KEEP_SERVICES=1.
# Exit status: pytest's if it failed, else 1 if ruff or mypy failed, else 0.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

T0=$SECONDS
SERVICES_STARTED=0

finish() {
    local rc=$?
    if [ "$SERVICES_STARTED" -eq 1 ] && [ -z "${PUSHTRIO_KEEP_SERVICES:-}" ]; then
        echo "== stopping services"
        bash scripts/services.sh stop || true
    fi
    echo "test.sh: finished in $((SECONDS - T0))s, exit status $rc"
    exit "$rc"
}
trap finish EXIT

apt_install() {
    command -v apt-get >/dev/null || { echo "test.sh: need $*; install it by hand" >&2; exit 1; }
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "== installing $* with apt-get"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
}

# --- Python environment --------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    command -v python3 >/dev/null || apt_install python3 python3-venv
    if ! python3 -m venv .venv; then
        rm -rf .venv
        apt_install python3-venv
        python3 -m venv .venv
    fi
fi
PY=$ROOT/.venv/bin/python
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "test.sh: .venv has Python < 3.11; remove it and use a newer python3" >&2; exit 1; }
echo "== pip install -e '.[dev]'"
"$PY" -m pip install -q --disable-pip-version-check -e '.[dev]'

# The dashboard test drives Debian's chromium through playwright (no browser
# download is possible here, so never `playwright install`).
command -v chromium >/dev/null || apt_install chromium
# promtool lints the Prometheus scrape (tests/web/test_promtool.py); Debian ships it
# in the prometheus package.
command -v promtool >/dev/null || apt_install prometheus

# --- services ------------------------------------------------------------------
echo "== starting Redis and Kafka"
SERVICES_STARTED=1
PYTHON=$PY bash scripts/services.sh start
export PUSHTRIO_TEST_REDIS=127.0.0.1:${PUSHTRIO_REDIS_PORT:-16379}
export PUSHTRIO_TEST_KAFKA=127.0.0.1:${PUSHTRIO_KAFKA_PORT:-19092}
export PUSHTRIO_REQUIRE_SERVICES=1
echo "== services ready at $((SECONDS - T0))s"

# --- static checks (all run; failures reported at the end) ----------------------
FAILED=()
check() {
    local name=$1
    shift
    echo "== $name"
    if ! "$@"; then
        FAILED+=("$name")
    fi
}
check "ruff check" "$ROOT/.venv/bin/ruff" check .
check "ruff format --check" "$ROOT/.venv/bin/ruff" format --check .
check "mypy" "$ROOT/.venv/bin/mypy"

# --- tests -----------------------------------------------------------------------
echo "== pytest $*"
set +e
"$ROOT/.venv/bin/pytest" "$@"
PYTEST_RC=$?
set -e

echo
if [ "${#FAILED[@]}" -gt 0 ]; then
    printf 'test.sh: FAILED checks:'
    printf ' [%s]' "${FAILED[@]}"
    echo
fi
echo "test.sh: pytest exit status $PYTEST_RC"
if [ "$PYTEST_RC" -ne 0 ]; then
    exit "$PYTEST_RC"
fi
[ "${#FAILED[@]}" -eq 0 ] || exit 1
exit 0
