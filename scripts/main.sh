#!/usr/bin/env bash
# Set up (if needed) and run the main job: mitodet detect with the bundled model on a real
# H&E image. Default input: the MITOS-ATYPIA-14 frame A03_03Ab from ../shared/data, scored
# against its labels; without ../shared (a fresh clone anywhere), the CC0 sample shipped in
# samples/ (a real 20x Aperio SVS region of normal skin, see samples/README.md); pass your
# own image(s) instead: scripts/main.sh IMAGE... [--mpp X]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${MITODET_OUT:-mitodet-out}
if [ $# -eq 0 ]; then
  DATA=${MITODET_DATA:-../shared/data}
  FRAME="$DATA/mitos_atypia14/A03/frames/x40/A03_03Ab.tiff"
  if [ -f "$FRAME" ]; then
    set -- "$FRAME" --mpp 0.2455 --gt "$DATA/mitos_atypia14/A03/mitosis/A03_03Ab_mitosis.csv"
  else
    echo "($FRAME is absent: running on the shipped sample samples/CMU-1-Small-Region.svs, normal skin at 20x," \
         "pixel size from its metadata; normal tissue, so its detections are essentially all false positives: see samples/README.md)" >&2
    set -- samples/CMU-1-Small-Region.svs
  fi
fi
.venv/bin/mitodet detect --out "$OUT" "$@"  # a --out among the arguments wins
echo "outputs are in $OUT/ (CSV, QuPath GeoJSON, MIDOG JSON, overlay JPEG, summary.md, and the case read-out)"
