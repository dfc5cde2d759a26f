"""A batch of files: checked, planned, run by an executor, recorded in the index.

:func:`~mitodet.inference.pipeline.detect_files` (what ``mitodet detect`` runs) is :func:`plan_batch` (every check that can
come before the model loads, then the model, the inputs, the ground truth and the run key) and
:func:`run_batch`, the one batch loop of every backend: it takes each file's result from a
:class:`FileExecutor` as it finishes, writes the batch index ``summary.csv``, logs one line per
file and shows the progress. :class:`LocalExecutor` runs the files one after the other in this
process; :class:`mitodet.inference.ray_backend.RayFileExecutor` spreads them over a Ray cluster.
Both run each file through :func:`run_file` (:func:`~mitodet.inference.process.process_file`
behind the one-bad-file guard).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mitodet.config import DetectConfig
from mitodet.inference.inputs import INDEX_NAME
from mitodet.inference.process import FileResult, TileRunner, failed_result, process_file

INDEX_COLUMNS = (
    "file",
    "name",
    "status",
    "kind",
    "mpp",
    "count",
    "tissue_area_mm2",
    "count_per_mm2",
    "hotspot_count",
    "hotspot_per_10hpf",
    "mitotic_score",
    "score_extrapolated",
    "precision",
    "recall",
    "f1",
    "seconds",
    "error",
)


@dataclass
class BatchResult:
    """All inputs of a :func:`detect_files` run, in input order."""

    results: list[FileResult]
    out_dir: Path
    index_path: Path

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        """True when no input failed."""
        return self.count("failed") == 0


# ----------------------------------------------------------------------------- index


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return str(v)


def index_row(r: FileResult) -> dict[str, str]:
    """The row of ``r`` in the batch index (empty cells for a failed file)."""
    row = dict.fromkeys(INDEX_COLUMNS, "")
    row.update(file=str(Path(r.path).resolve()), name=r.name, status=r.status, seconds=_fmt(r.seconds))
    row["error"] = r.error or ""  # absolute file: the key runs from any folder merge by
    s = r.summary
    if s is None:
        return row
    ro, ev = s.readout, s.evaluation or {}
    hot = ro.hotspot
    row.update(
        kind=_fmt(s.kind),
        mpp=_fmt(ro.mpp),
        count=_fmt(ro.count),
        tissue_area_mm2=_fmt(ro.tissue_area_mm2),
        count_per_mm2=_fmt(ro.count_per_mm2),
        hotspot_count=_fmt(hot.count) if hot else "",
        hotspot_per_10hpf=_fmt(hot.count_per_10hpf) if hot else "",
        mitotic_score=_fmt(ro.mitotic_score),
        score_extrapolated=_fmt(hot.extrapolated) if hot else "",
        precision=_fmt(ev.get("precision")),
        recall=_fmt(ev.get("recall")),
        f1=_fmt(ev.get("f1")),
    )
    return row


def write_index(path: Path, results: Sequence[FileResult]) -> Path:
    """Write the batch index ``summary.csv`` atomically, merged by input with the index an
    earlier run left there: its rows of other inputs are kept (in their order), the rows of
    this batch's inputs are replaced by this batch's."""
    from mitodet.report.outputs import write_merged_csv

    return write_merged_csv(
        path, INDEX_COLUMNS, [index_row(r) for r in results], key=lambda row: str(Path(row.get("file") or "").resolve())
    )


def describe_result(k: int, n: int, r: FileResult) -> str:
    """The console line of result ``k`` of ``n`` (every backend prints it)."""
    head = f"[{k}/{n}] {r.path.name}"
    if r.status == "failed" or r.summary is None:
        return f"{head}: FAILED: {r.error}"
    ro, ev = r.summary.readout, r.summary.evaluation
    hot, nt = ro.hotspot, ro.mitotic_score
    parts = [f"{ro.count} mitoses", f"{ro.tissue_area_mm2:.3g} mm2 tissue"]
    if hot:
        parts.append(f"hotspot {hot.count} ({hot.count_per_10hpf:.1f} per 10 HPF)")
    parts.append(f"score {nt if nt is not None else 'n/a'}")
    if hot and hot.extrapolated:
        hpf = ro.tissue_area_mm2 / ro.field_area_mm2
        parts[-1] += f" (EXTRAPOLATED from {hpf:.2g} HPF of tissue; see the case read-out)"
    if ev:
        parts.append(
            f"P {ev['precision']:.3f} R {ev['recall']:.3f} F1 {ev['f1']:.3f} "
            f"(TP {ev['tp']} FP {ev['fp']} FN {ev['fn']})"
        )
    tail = " (already done, skipped)" if r.status == "skipped" else f" in {r.seconds:.1f} s"
    return f"{head}: " + ", ".join(parts) + tail


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class BatchPlan:
    """A checked batch, ready to run (from :func:`plan_batch`); shared by every executor.

    Attributes:
        detector: the loaded detector.
        inputs: the image files, in order; ``names``: their output names.
        out_dir: the output folder (created); ``index_path``: its ``summary.csv``.
        config: how every file is treated.
        settings: what the run key is made of (a rerun with equal settings skips finished files).
        gt_points / gt_file: the loaded ground truth and where it came from, or None.
    """

    detector: Any
    inputs: list[Path]
    names: list[str]
    out_dir: Path
    index_path: Path
    config: DetectConfig
    settings: dict[str, Any]
    gt_points: Any
    gt_file: str | None

    @property
    def single_pair(self) -> bool:
        """One input: it pairs with a one-image ground truth whatever the names."""
        return len(self.inputs) == 1


def plan_batch(
    paths: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    config: DetectConfig,
    *,
    detector=None,
    model: str | os.PathLike[str] = "default",
) -> BatchPlan:
    """Find the inputs, load the model (when ``detector`` is None) and the ground truth:
    everything but running the files (``config`` was checked when it was made).

    Raises:
        ValueError / FileNotFoundError / DataFormatError: as :func:`detect_files` says.
    """
    from mitodet.inference.inputs import collect_inputs, output_names
    from mitodet.inference.predictor import Detector

    paths = list(paths)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, no permission, read-only filesystem...
        raise ValueError(
            f"cannot create the output folder {out} ({exc.strerror or exc}); pass --out a folder path you can write to"
        ) from None
    inputs = collect_inputs(paths, recursive=config.recursive, exclude=[out])
    if not inputs:
        raise ValueError(
            f"no images found in {', '.join(str(p) for p in paths)}; mitodet reads PNG, JPEG, TIFF "
            "and whole-slide formats (SVS, NDPI, MRXS, ...)"
        )
    names = output_names(inputs)
    if detector is None:
        detector = Detector.load(model)
    gt_points = None
    if config.gt is not None:
        from mitodet.evaluation.io import load_points

        gt_points = load_points(config.gt)
        _check_pairing(inputs, gt_points, config.gt)
    settings = config.run_settings(detector)
    return BatchPlan(detector, inputs, names, out, out / INDEX_NAME, config, settings, gt_points, config.gt)


def _check_pairing(inputs: Sequence[Path], gt_points: dict, gt_file: str) -> None:
    """``--gt`` must pair: some input by name (or one input with a one-image file), and no two
    inputs with the same GT image. Raises ValueError naming the images otherwise."""
    from mitodet.evaluation.io import image_key

    keys = [image_key(p.name) for p in inputs]
    if len(inputs) == 1 and len(gt_points) == 1:
        return  # a single image against a single-image file pairs whatever the names
    paired = [k for k in keys if k in gt_points]
    if not paired:
        raise ValueError(
            f"--gt {gt_file} pairs with none of the inputs: it names e.g. {sorted(gt_points)[:3]}, the inputs are "
            f"e.g. {keys[:3]}; images pair by file name without extension"
        )
    twice = sorted({k for k in paired if paired.count(k) > 1})
    if twice:
        which = [str(p) for p, k in zip(inputs, keys) if k in twice]
        raise ValueError(
            f"--gt {gt_file}: the inputs {which[:4]} would all pair with its image(s) {twice[:3]}; "
            "evaluate them in separate runs or rename them"
        )


# ----------------------------------------------------------------------------- running


def run_file(plan: BatchPlan, i: int, tiles: TileRunner | None = None, detector=None) -> FileResult:
    """Input ``i`` of ``plan`` through :func:`~mitodet.inference.process.process_file`; a failure
    is recorded (the error names the file), never raised: one bad file must not stop the batch.
    ``detector`` replaces the plan's (a Ray worker's own copy)."""
    t0 = time.perf_counter()
    path, name = plan.inputs[i], plan.names[i]
    try:
        return process_file(
            detector if detector is not None else plan.detector,
            path,
            name,
            plan.out_dir,
            plan.config,
            plan.settings,
            plan.gt_points,
            plan.gt_file,
            single_pair=plan.single_pair,
            tiles=tiles,
        )
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        return failed_result(path, name, exc, t0)


class FileExecutor(Protocol):
    """Runs the files of a plan: yields ``(input index, result)`` as each file finishes, in any
    order, once per input. Closing the iterator early (an interrupt) must leave no work queued."""

    def run(self, plan: BatchPlan) -> Iterator[tuple[int, FileResult]]: ...


class LocalExecutor:
    """The files one after the other, in this process."""

    def run(self, plan: BatchPlan) -> Iterator[tuple[int, FileResult]]:
        for i in range(len(plan.inputs)):
            yield i, run_file(plan, i)


def run_batch(
    plan: BatchPlan,
    executor: FileExecutor | None = None,
    log: Callable[[str], None] | None = None,
    log_error: Callable[[str], None] | None = None,
) -> BatchResult:
    """The one batch loop: every file of ``plan`` through ``executor`` (default: this process),
    the index rewritten after each, one line per file to ``log`` (failures to ``log_error``),
    a progress bar over the files when ``plan.config.progress``."""
    n = len(plan.inputs)
    results: list[FileResult | None] = [None] * n
    say = log or _quiet
    say_err = log_error or log or _quiet
    bar = None
    if plan.config.progress and n > 1:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="files", unit="file", disable=None)
    finished = 0
    try:
        with contextlib.closing((executor or LocalExecutor()).run(plan)) as stream:
            for i, r in stream:
                r.path = plan.inputs[i]  # as given (a remote worker may have been sent an absolute path)
                results[i] = r
                finished += 1
                write_index(plan.index_path, [x for x in results if x is not None])
                (say_err if r.status == "failed" else say)(describe_result(finished, n, r))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    final = [r for r in results if r is not None]
    return BatchResult(final, plan.out_dir, plan.index_path)


def _quiet(_msg: str) -> None:
    pass
