#!/usr/bin/env bash
# Set up (if needed) and run the main job: mitodet detect with the bundled model on a real
# H&E frame. Default input: the MITOS-ATYPIA-14 frame A03_03Ab from ../shared/data, scored
# against its labels; pass your own image(s) instead: scripts/main.sh IMAGE... [--mpp X]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${MITODET_OUT:-mitodet-out}
if [ $# -eq 0 ]; then
  DATA=${MITODET_DATA:-../shared/data}
  FRAME="$DATA/mitos_atypia14/A03/frames/x40/A03_03Ab.tiff"
  if [ ! -f "$FRAME" ]; then
    echo "no input given and $FRAME is absent; run: scripts/main.sh YOUR_IMAGE --mpp 0.25" >&2
    exit 2
  fi
  set -- "$FRAME" --mpp 0.2455 --gt "$DATA/mitos_atypia14/A03/mitosis/A03_03Ab_mitosis.csv"
fi
.venv/bin/mitodet detect --out "$OUT" "$@"  # a --out among the arguments wins
echo "outputs are in $OUT/ (CSV, QuPath GeoJSON, MIDOG JSON, overlay/heat-map PNGs, summary.md)"
