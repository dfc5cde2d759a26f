#!/usr/bin/env bash
# Set up (if needed) and run the test suite. Tests that need ../shared/data skip without it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
