"""Small helpers shared by the benchmark scripts (not part of the mitodet package)."""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks"

# One HPF-equivalent: a 2084 x 2084 px field at 0.25 um/px (an ICPR-2012-sized x40 frame),
# 521 um x 521 um = 0.2715 mm^2. (The digital "standard" HPF of the clinical read-out is
# 0.237 mm^2; this unit is only a yardstick for timing.)
HPF_PX = 2084
HPF_MPP = 0.25
HPF_MM2 = (HPF_PX * HPF_MPP / 1000.0) ** 2


def hpf_equivalents(shape_hw: tuple[int, int], mpp: float) -> float:
    """Area of an (H, W) image at ``mpp`` in HPF-equivalents."""
    return shape_hw[0] * shape_hw[1] * (mpp / 1000.0) ** 2 / HPF_MM2


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_note() -> str:
    """The 1-minute load average, and a warning when other work competes for the cores."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return "load average unknown"
    n = os.cpu_count() or 1
    note = f"1-min load average {load:.2f} on {n} cores"
    if load > 0.5:
        note += " - **measured under load** (other processes were running): times are pessimistic"
    return note


def environment_line(threads: int) -> str:
    import torch

    return (f"{cpu_name()}, {os.cpu_count()} logical CPUs, {threads} torch thread(s), torch {torch.__version__}, "
            f"Python {platform.python_version()}; {load_note()}; "
            f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")


def command_line() -> str:
    args = [Path(sys.argv[0]).as_posix()] + sys.argv[1:]
    try:
        args[0] = str(Path(sys.argv[0]).resolve().relative_to(ROOT))
    except ValueError:
        pass
    return "python " + " ".join(shlex.quote(a) for a in args)


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``repeats`` calls of ``fn`` (call a warm-up yourself)."""
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def write_doc(path: Path | None, title: str, body: str) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title}\n\n{body.rstrip()}\n")
    print(f"\nwrote {path}", flush=True)
