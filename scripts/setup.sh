#!/usr/bin/env bash
# Create .venv inside the repo and install mitodet with its pinned torch/torchvision.
# Idempotent: does nothing when pyproject.toml has not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${MITODET_EXTRAS:-dev,wsi}
stamp=.venv/.mitodet-installed
want="$(sha256sum pyproject.toml | cut -c1-16) $EXTRAS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import mitodet, torch, torchvision" 2>/dev/null; then
  exit 0
fi
echo "setting up .venv (torch==2.14.1, torchvision==0.29.1, mitodet[$EXTRAS]); this takes a few minutes the first time" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[$EXTRAS]"
echo "$want" > "$stamp"
