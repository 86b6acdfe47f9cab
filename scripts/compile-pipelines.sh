#!/usr/bin/env bash
# Recompiles the project's KFP v1 pipelines (sandbox/pipelines/*.py) with the real KFP v1
# compiler into sandbox/pipelines/compiled/*.yaml; `--check` compares a fresh compile with the
# committed YAML instead (exit 1 on a difference). Pipeline names as arguments narrow it.
#
# kfp==1.8.22 pins old dependencies and is declared for Python 3.6-3.9 (it runs on 3.10, which
# made the committed files), so it gets a venv of its own (.venv/kfp-1.8.22, ignored by git)
# made with a 3.10 or 3.9 interpreter: from pyenv if it has one, else from PATH. Set KFP_PYTHON
# to choose the interpreter yourself.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv/kfp-1.8.22
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import kfp; assert kfp.__version__ == "1.8.22"' 2>/dev/null; then
    PY=${KFP_PYTHON:-}
    if [ -z "$PY" ]; then
        for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10.*/bin/python \
                         "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.9.*/bin/python \
                         "$(command -v python3.10 || true)" "$(command -v python3.9 || true)"; do
            if [ -n "$candidate" ] && [ -x "$candidate" ]; then PY=$candidate; break; fi
        done
    fi
    if [ -z "$PY" ]; then
        echo "compile-pipelines: no Python 3.10 or 3.9 found (kfp 1.8.22 needs one); set KFP_PYTHON" >&2
        exit 2
    fi
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check 'kfp==1.8.22' 'PyYAML>=6,<7'
fi
# The SDK warns about every raw ContainerOp; those are on purpose here.
exec "$VENV/bin/python" -W ignore::FutureWarning scripts/compile_pipelines.py "$@"
