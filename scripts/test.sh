#!/usr/bin/env bash
# Set up (if needed), lint, and run the whole test suite, the heavy `slow` tests included
# (a bare `.venv/bin/python -m pytest` runs the fast default suite without them).
# Tests that need ../shared/data skip without it; the viewer's browser tests skip without Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_browser.sh  # Debian's chromium for the viewer's browser tests (skipped, with the reason, without it)
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
exec .venv/bin/python -m pytest -q -m "slow or not slow" "$@"
