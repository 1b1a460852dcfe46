#!/usr/bin/env bash
# Set up (idempotent) and run the whole pipeline on the embedded digits:
# train -> prune -> export (ONNX + TFLite, fp32 + int8, verified) -> profile -> classify a video.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/edgecnn demo "$@"
