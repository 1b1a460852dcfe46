#!/usr/bin/env bash
# Idempotent set-up: a virtual environment at .venv with edgecnn and everything the demo,
# the tests and the benchmarks need (host side: torch, onnx, LiteRT tooling, torch-pruning).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
STAMP=.venv/.edgecnn-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ requirements-lock.txt -nt "$STAMP" ]; then
  echo "[setup] installing dependencies (torch is large: this takes a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned: a plain 'torch' would pull the newest CUDA build.
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/python -m pip install -q -c requirements-lock.txt -e ".[dev]"
  touch "$STAMP"
fi
