#!/usr/bin/env bash
# Lint of the TensorRT code, which cannot run here (no TensorRT on these machines):
#   1. mypy over the TensorRT modules against tensorrt-stubs (TensorRT 10.13 types),
#   2. every cudart name tensorrt_backend.py uses exists in cuda-python's runtime module.
# Both run in a lint-only virtualenv (.lint-venv, gitignored), created on first use and again
# when tools/lint-tensorrt-requirements.txt changes. Never install tensorrt-stubs into .venv.
#
# Exit status: 0 clean, 1 lint errors, 3 the lint virtualenv could not be created (no registry?).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="${LINT_VENV:-$ROOT/.lint-venv}"
REQS="tools/lint-tensorrt-requirements.txt"
STUBS="tensorrt-stubs==10.13.0.35.1"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.ready-$( (cat "$REQS"; echo "$STUBS"; cat tools/lint_tensorrt.py) | sha256sum | cut -c1-16)"

setup() {
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" &&
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS" &&
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "$STUBS" &&
    "$VENV/bin/python" tools/lint_tensorrt.py patch-stubs &&
    touch "$STAMP"
}

LOCK="${TMPDIR:-/tmp}/drn-lint-venv-$(echo "$VENV" | sha256sum | cut -c1-12)"
exec 9>"$LOCK.lock"
flock 9  # one setup at a time, also when several test runs start together
if [ ! -f "$STAMP" ]; then
    echo "lint: creating $VENV (mypy, tensorrt-stubs, cuda-bindings)" >&2
    if ! setup >"$LOCK.log" 2>&1; then
        echo "lint: could not create the lint virtualenv $VENV; the end of $LOCK.log:" >&2
        tail -n 5 "$LOCK.log" >&2
        exit 3
    fi
fi
flock -u 9

# Canary: code calling an API TensorRT 10 removed must fail, or mypy is not reading the stubs
# (everything would be Any and the real check below would pass whatever the code does).
CANARY="$(mktemp -d)"
trap 'rm -rf "$CANARY"' EXIT
printf '%s\n' 'import tensorrt as trt' \
    'builder = trt.Builder(trt.Logger(trt.Logger.WARNING))' \
    'builder.build_engine(builder.create_network(0), builder.create_builder_config())' >"$CANARY/canary.py"
canary_out="$("$VENV/bin/python" -m mypy --config-file tools/mypy-tensorrt.ini --cache-dir=/dev/null "$CANARY/canary.py" 2>&1 || true)"
if [[ "$canary_out" != *'"Builder" has no attribute "build_engine"'* ]]; then
    echo "lint: mypy did not flag a call removed in TensorRT 10: tensorrt-stubs are not in effect in $VENV" >&2
    exit 1
fi

status=0
"$VENV/bin/python" -m mypy --config-file tools/mypy-tensorrt.ini || status=1
"$VENV/bin/python" tools/lint_tensorrt.py check-cuda drn_perception/inference/tensorrt_backend.py || status=1
exit $status
