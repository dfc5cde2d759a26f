"""The benchmark scripts stay runnable: each one's ``--quick`` mode, as a user would run it.

Each quick mode takes well under a minute on an idle 2-core machine (about 20-45 s each
under load) and writes no docs. One torch thread keeps them from fighting other work for
the cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

#: heavy (subprocesses, clusters, whole benchmarks): run by scripts/test.sh and CI, not by a bare `pytest`
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def run_quick(script: str, *extra: str, timeout: float = 300, threads: int | None = 1) -> str:
    cmd = [sys.executable, str(BENCH / script), "--quick", *(["--threads", str(threads)] if threads else []), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )
    assert "wrote " not in proc.stdout, "a quick mode must not write the docs"
    return proc.stdout


@pytest.mark.data
def test_ablation_quick(shared_data, tmp_path):
    out = run_quick("ablation.py", "--work", str(tmp_path / "runs"))
    assert "| preset | settings | paper row | paper P | paper R | paper F1 | val P | val R | val F1 |" in out
    assert "| fpn-cpu |" in out and "| rdlm-cpu |" in out
    assert len(table(out, "| preset | settings |", min_rows=2)) >= 2
    assert "Paper ordering by F1: rdlm (0.692) > fpn (0.589)." in out
    assert "**Budget (equal for every preset and seed):** 5 iterations x batch 2" in out
    # resumable: a second call reuses the finished runs instead of training again
    again = run_quick("ablation.py", "--work", str(tmp_path / "runs"))
    assert again.count("| fpn-cpu |") == 1


def test_speed_quick():
    out = run_quick("speed.py")
    assert "| model | network input | parameters | inputs | s / HPF | GFLOP / input |" in out
    assert "torchvision `fasterrcnn_resnet50_fpn`" in out and "`rdlm` paper preset" in out
    assert "| step | s / HPF | x vs previous | x vs baseline |" in out
    assert all(float(r[1]) > 0 for r in table(out, "| step | s / HPF |", min_rows=5))
    assert all(float(r[4]) > 0 for r in table(out, "| model | network input |", min_rows=3))  # s / HPF
    for step in ("baseline", "inference_mode", "fewer proposals", "channels-last", "4 tiles per forward"):
        assert step in out
    assert "GFLOP/s**" in out  # the matmul peak
    assert "| allocator | s / HPF | x vs C library defaults | minor page faults / HPF |" in out
    assert "| glibc keeps freed memory (mitodet's default) |" in out
    assert "## The shipped pipeline: first and second stage" in out


def test_scaling_quick():
    out = run_quick("scaling.py")
    assert (
        "| HPF-equivalents | side (px) | levels | write s | tiles run | detect s (median) | range of runs (s) |" in out
    )
    assert "| 1 | 512 |" in out and "| 4 | 1024 |" in out
    assert all(float(r[5]) > 0 for r in table(out, "| HPF-equivalents |", min_rows=2))  # detect s
    assert "Allocator: " in out
    assert "Memory is **" in out


def table(out: str, header: str, min_rows: int = 1, allow_nan: bool = False) -> list[list[str]]:
    """The body rows of the markdown table whose header line starts with ``header``, checked:
    at least ``min_rows`` rows, each with the header's number of cells, every cell filled, no
    number that is not finite, and at least one number in each row (a measurement, not a stub)."""
    lines = out.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    assert start is not None, f"no table {header!r} in:\n{out[-2000:]}"
    ncols = lines[start].count("|") - 1
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == ncols, line
        assert all(cells), f"empty cell in {line}"
        bad = {"inf", "-inf"} | (set() if allow_nan else {"nan"})
        assert not any(c.split()[0].lower() in bad for c in cells), f"non-finite number in {line}"
        numbers = [c for c in cells if _number(c.split()[0].rstrip("x%*"))]
        assert numbers, f"no measured number in {line}"
        rows.append(cells)
    assert len(rows) >= min_rows, f"{len(rows)} rows under {header!r}"
    return rows


def _number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- the other scripts
# (script, extra arguments, torch threads or None when it takes no --threads, text its output must hold)
OTHERS = [
    ("forward_time.py", (), 1, "| preset | parameters | forward s/image |"),
    ("detect_speed.py", (), 1, "s per 2084 x 2084 HPF"),
    ("negative_control.py", (), 1, "| variant | threshold | detections | tissue mm2 |"),
    ("ddp_step_time.py", (), 2, "| run | processes x threads | images / process / step | median s / step |"),
    ("ray_throughput.py", (), 1, "| run | workers | pool start s | batch wall s | slides / min | outputs vs local |"),
    ("detect_overhead.py", (), 1, "| outputs | detect s / HPF | x networks | bytes written / HPF |"),
]
DATA_OTHERS = [
    ("sampler_throughput.py", (), None, "crops/s on one process"),
    ("full_frames.py", (), 1, "pooled: P "),
    (
        "validation_tta.py",
        (),
        1,
        "| pass | best F1 (P / R) at threshold | AP | F1 (P / R) at the operating threshold |",
    ),
    ("shift_stability.py", (), 1, "| frame | mitosis (x, y) | score min | score max | sd | shifts kept at threshold |"),
]


@pytest.mark.data
def test_generalisation_quick(shared_data, tmp_path):
    out = run_quick(
        "generalisation.py",
        "--detector",
        "default",
        "--seeds",
        "0",
        "--heldout",
        "midog21-aperio-cs2",
        "atnorm",
        "--work",
        str(tmp_path / "gen"),
        "--no-progress",
    )
    for row in (
        "| first stage | all-val |",
        "| two-stage, all labs (second) | all-val |",
        "| two-stage, without midog21-aperio-cs2 (geometric) | midog21-aperio-cs2 |",
        "| two-stage, without atnorm (second) | atnorm |",
    ):
        assert row in out, out[-3000:]
    assert "First-stage recall among the candidates the second stage sees" in out
    rows = table(out, "| variant | tested on |", min_rows=4, allow_nan=True)  # atnorm has no area
    assert all(0 <= float(r[6].split()[0]) <= 1 for r in rows)  # recall
    # the whole-tissue A/B reads those runs: the frames and the negative control per seed
    ab = run_quick("whole_tissue_ab.py", "--runs", f"quick={tmp_path / 'gen' / 'two-stage_without_midog21-aperio-cs2'}")
    (row,) = table(ab, "| variant | runs |")
    assert row[0] == "quick" and row[2] == "1"


@pytest.mark.data
def test_generalisation_calibrate_on_a_held_out_lab_quick(shared_data, tmp_path):
    """--calibrate-on: both labs out of training; the same model under both threshold rules."""
    args = ["--detector", "default", "--seeds", "0", "--heldout", "atnorm", "--no-all-labs"]
    out = run_quick(
        "generalisation.py",
        *args,
        "--calibrate-on",
        "midog21-aperio-cs2",
        "--combine",
        "geometric",
        "--work",
        str(tmp_path / "gen"),
        "--no-progress",
    )
    for row in (
        "| two-stage, without atnorm and midog21-aperio-cs2 (geometric) | atnorm |",
        "| two-stage, without atnorm and midog21-aperio-cs2 (geometric, threshold on midog21-aperio-cs2) | atnorm |",
    ):
        assert row in out, out[-3000:]
    bad = subprocess.run(
        [sys.executable, str(BENCH / "generalisation.py"), *args, "--calibrate-on", "atnorm"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--calibrate-on atnorm" in bad.stderr


@pytest.mark.data
def test_mining_ab_quick(shared_data):
    model = BENCH.parent / "src" / "mitodet" / "weights" / "rdlm-cpu"
    out = run_quick("mining_ab.py", "--arm", f"bundled={model}")
    (row,) = table(out, "| arm | runs |")
    assert row[0] == "bundled" and row[1] == "1" and 0 <= float(row[3]) <= 1
    bad = subprocess.run(
        [sys.executable, str(BENCH / "mining_ab.py"), "--arm", "x=/nonexistent"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "no model in" in bad.stderr


@pytest.mark.parametrize("script, extra, threads, marker", OTHERS, ids=[o[0] for o in OTHERS])
def test_other_quick_modes(script, extra, threads, marker):
    if script == "ray_throughput.py":
        pytest.importorskip("ray")
    out = run_quick(script, *extra, threads=threads)
    assert marker in out, out[-2000:]
    if marker.startswith("|"):
        table(out, marker.split(" |")[0] + " |")


@pytest.mark.data
@pytest.mark.parametrize("script, extra, threads, marker", DATA_OTHERS, ids=[o[0] for o in DATA_OTHERS])
def test_other_quick_modes_on_the_real_data(shared_data, script, extra, threads, marker):
    out = run_quick(script, *extra, threads=threads)
    assert marker in out, out[-2000:]


def test_viewer_quick():
    out = run_quick("viewer.py")
    assert "tile latency" in out and "server answers" in out


def test_atypical_quick(shared_data):
    out = run_quick("atypical.py", "--data", str(shared_data))
    assert "QUICK smoke test" in out and "AtNorM-MD" in out


def test_atypical_inference_ab_quick(shared_data):
    """--tta-ab on the bundled ensemble: the chosen TTA row, then the transductive AdaBN row."""
    model = BENCH.parent / "src" / "mitodet" / "weights" / "rdlm-cpu"
    out = run_quick("atypical.py", "--data", str(shared_data), "--tta-ab", str(model), "--tta-modes", "none")
    assert "QUICK smoke test" in out and "| none, AdaBN (transductive) |" in out
    assert "| none |" in out and "| flip |" not in out


def test_atypical_speed():
    proc = subprocess.run(
        [sys.executable, str(BENCH / "atypical.py"), "--speed", "default", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ms per detection" in proc.stdout and "5 network(s)" in proc.stdout
