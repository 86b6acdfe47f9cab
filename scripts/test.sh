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

# So does PostgreSQL (trust auth; tests/history reads Argo's archive and KFP's store on it).
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    for cluster in $(pg_lsclusters -h 2>/dev/null | awk '{print $1 "/" $2}'); do
        pg_ctlcluster "${cluster%/*}" "${cluster#*/}" start || true
    done
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && break
        sleep 1
    done
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# The runtime and, beside it, the sandbox (API emulator, simulator, the `sandbox` command).
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' -e ./sandbox

# --- MLMD versions (docs/mlmd-versions.md) ------------------------------------------------
# The old MLMD servers the version tests run: one venv per ml-metadata release under
# .venv/mlmd (1.0.0 and 1.5.0 on Python 3.8, 1.14.0 on 3.10, interpreters from pyenv).
# Made once (about a minute each), skipped when present.
.venv/bin/python -m sandbox.mlmd_venvs install
# --- end MLMD versions ---------------------------------------------------------------------

# tests/deploy tools beyond the test extra, under .venv/tools (ignored by git):
# - checkov in a venv of its own: it pins packaging<24 and python-dateutil<3, which
#   conflict with pytest and kubernetes in .venv;
# - Debian's kubectl 1.20 (kustomize v2.0.3), unpacked, not installed: the overlays must
#   still render with it.
TOOLS=.venv/tools
CHECKOV_VERSION=3.3.30
if [ "$("$TOOLS/checkov/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
    "$PY" -m venv "$TOOLS/checkov"
    "$TOOLS/checkov/bin/python" -m pip install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi
if [ ! -x "$TOOLS/kubectl-1.20/usr/bin/kubectl" ]; then
    debs=$(mktemp -d)
    (cd "$debs" && { apt-get download kubernetes-client 2>/dev/null \
        || { apt-get update -qq && apt-get download kubernetes-client; }; })
    dpkg -x "$debs"/kubernetes-client_*.deb "$TOOLS/kubectl-1.20"
    rm -rf "$debs"
fi
# - promtool (checks the alert rules and the dashboard's queries), from Debian's
#   prometheus package unless one is on PATH: unpacked, not installed (installing would
#   add a Prometheus server and its service).
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$TOOLS/prometheus/usr/bin/promtool" ]; then
    debs=$(mktemp -d)
    (cd "$debs" && { apt-get download prometheus 2>/dev/null \
        || { apt-get update -qq && apt-get download prometheus; }; })
    dpkg -x "$debs"/prometheus_*.deb "$TOOLS/prometheus"
    rm -rf "$debs"
fi
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
