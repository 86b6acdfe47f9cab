#!/usr/bin/env bash
# Installs everything the test suite needs into .venv and runs the whole suite.
# Used verbatim by .ci/run; safe to run on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

# kubectl is the second, independent client the emulator tests use.
if ! command -v kubectl >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client
fi

# The MariaDB server runs on every machine here; start it if it was stopped.
if ! mariadb-admin -uroot -h127.0.0.1 ping >/dev/null 2>&1; then
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
    for _ in $(seq 1 30); do
        mariadb-admin -uroot -h127.0.0.1 ping >/dev/null 2>&1 && break
        sleep 1
    done
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
