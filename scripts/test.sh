#!/usr/bin/env bash
# Set up (idempotent) and run the default test suite (slow tests: scripts/test.sh -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
