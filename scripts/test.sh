#!/usr/bin/env bash
# Set up (if needed), lint, and run the whole test suite, the heavy `slow` tests included
# (a bare `.venv/bin/python -m pytest` runs the fast default suite without them).
# Tests that need ../shared/data skip without it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
exec .venv/bin/python -m pytest -q -m "slow or not slow" "$@"
