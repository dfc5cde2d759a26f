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


def self_stat() -> list[str]:
    """The fields of /proc/self/stat after the command name (0: state, 7: minor faults,
    11: user ticks, 12: kernel ticks)."""
    return Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()


def shipped_detector(model: str | os.PathLike | None = None, **kwargs):
    """``(Detector, description)``: the model folder ``model`` (default: the bundled model),
    or a random ``rdlm-cpu`` when it has no weights (timing only: same architecture)."""
    from mitodet.inference.predictor import DEFAULT_MODEL_DIR, Detector
    from mitodet.models import build_detector

    model_dir = Path(model) if model else DEFAULT_MODEL_DIR
    if (model_dir / "model.safetensors").is_file():
        return Detector.load(model_dir, **kwargs), str(model_dir)
    return Detector(build_detector("rdlm-cpu"), **kwargs), "random rdlm-cpu (shipped model missing)"


def other_cpu_busy(seconds: float = 1.0) -> float | None:
    """Cores kept busy by OTHER processes over ``seconds`` (this process is idle meanwhile).

    From /proc/stat (all CPUs' busy jiffies) minus this process's own (/proc/self/stat);
    None where /proc is missing.
    """

    def busy() -> int:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(f) - f[3] - (f[4] if len(f) > 4 else 0)  # all minus idle and iowait

    def own() -> int:
        f = self_stat()
        return int(f[11]) + int(f[12])  # utime + stime

    try:
        b0, o0, t0 = busy(), own(), time.perf_counter()
        time.sleep(seconds)
        b1, o1, t1 = busy(), own(), time.perf_counter()
    except (OSError, ValueError, IndexError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    return max(0.0, ((b1 - b0) - (o1 - o0)) / hz / (t1 - t0))


def load_note() -> str:
    """The 1-minute load average, what other processes use now, and a warning when other
    work competes for the cores.

    The load average counts this benchmark too (and decays over minutes), so the warning
    rests on a direct 1-second sample of the other processes' CPU use.
    """
    n = os.cpu_count() or 1
    try:
        note = f"1-min load average {os.getloadavg()[0]:.2f} on {n} cores (this run included)"
    except OSError:
        note = "load average unknown"
    other = other_cpu_busy()
    if other is None:
        return note
    note += f"; other processes busy {other:.2f} cores in a 1-s sample"
    if other > 0.25:
        note += " - **measured under load** (other processes were running): times are pessimistic"
    return note


def environment_line(threads: int) -> str:
    import torch

    return (
        f"{cpu_name()}, {os.cpu_count()} logical CPUs, {threads} torch thread(s), torch {torch.__version__}, "
        f"Python {platform.python_version()}; {load_note()}; "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
    )


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


def mean_sd(values, fmt: str = "{:.3f}") -> str:
    """``mean +- sd`` of the values that are not None (one value as it is; none: ``-``)."""
    import statistics

    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} +- {fmt.format(statistics.stdev(values))}"
