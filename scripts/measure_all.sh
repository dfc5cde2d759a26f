#!/usr/bin/env bash
# Re-measure every figure the docs report, on an otherwise idle machine (about 30-40 min).
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
