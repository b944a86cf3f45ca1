#!/usr/bin/env bash
# The GPU benchmark (bench/gpu.py) as one prepared script for a lent H200; CPU-only machines skip it.
#
#   bash bench/gpu.sh wheels            # here, with a network: fetch what the device image lacks
#   bash bench/gpu.sh run [OUT_DIR]     # on the GPU machine: results as files in OUT_DIR
#   bash bench/gpu.sh toy [OUT_DIR]     # the same logic at a toy size on any machine (CPU too)
#
# What the device image provides (its python3 is 3.12 with JAX 0.11 + CUDA 13 plugins, numpy,
# ml-dtypes, grpcio, protobuf, pyyaml, prometheus-client, sentencepiece) and lacks: pydantic (the
# worker's config contract imports it). `wheels` downloads pydantic and its compiled core for
# CPython 3.12 on x86_64 into build/gpu-wheels/ (git-ignored); carry that folder to the machine
# (device tool: carry ["build/gpu-wheels"]). The project is used from the source tree through
# PYTHONPATH, not installed, so none of the project's other pins apply there.
# The run is capped at 450 s (goal: under 8 minutes on one H200, weights drawn on the device).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WHEELS=build/gpu-wheels
PY="${PYTHON:-python3}"
mode="${1:-run}"
out="${2:-${OUT:-bench/results/gpu}}"

case "$mode" in
wheels)
    mkdir -p "$WHEELS"
    "$PY" -m pip download --quiet --only-binary=:all: --python-version 3.12 \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --dest "$WHEELS" "pydantic>=2.14,<3"
    ls -1 "$WHEELS"
    exit 0
    ;;
run | toy) ;;
*)
    echo "usage: bash bench/gpu.sh wheels | run [OUT_DIR] | toy [OUT_DIR]" >&2
    exit 2
    ;;
esac

export PYTHONPATH="$PWD:$PWD/worker:$PWD/protos${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import pydantic" 2>/dev/null; then
    if ! ls "$WHEELS"/pydantic-*.whl >/dev/null 2>&1; then
        echo "pydantic is missing and $WHEELS holds no wheels: run 'bash bench/gpu.sh wheels' where a network is, then carry $WHEELS" >&2
        exit 1
    fi
    "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" pydantic
fi
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv 2>/dev/null || echo "no nvidia-smi"; } >"$out/nvidia-smi.txt"
flags=()
[ "$mode" = toy ] && flags+=(--toy)
# Let XLA take most of the GPU's memory up front rather than growing it allocation by allocation.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}"
timeout 450 "$PY" -m bench.gpu --out "$out" "${flags[@]}" 2>&1 | tee "$out/log.txt"
