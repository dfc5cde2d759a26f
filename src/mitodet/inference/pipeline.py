"""Batch detection over files and folders with resumable, atomic per-file outputs.

:func:`detect_files` is what ``mitodet detect`` runs. For each input image (``NAME`` is the
file name without its extension, made unique within the batch) it writes into ``out_dir``:

==========================  ===========================================================
``NAME.csv``                detections ``x,y,score,x_um,y_um`` (level-0 pixels, um)
``NAME.candidates.csv``     every candidate, scored, down to the model's floor (for the
                            viewer's threshold slider; not a read-out)
``NAME.geojson``            the same as QuPath point detections (File > Import objects)
``NAME.midog.json``         grand-challenge "Multiple points" JSON in millimetres
``NAME.overlay.jpg``        detections (or TP/FP/FN with ``gt``) on the image, or on a
                            thumbnail of at most 4096 px for slides
``NAME.heatmap.jpg``        the GLB vault heat-map of eq. 9 (HPF images, GLB models)
``NAME.tissue.png``         the tissue mask the read-out was taken on (when one was used)
``NAME.summary.md``         the clinical read-out for people
``NAME.summary.json``       the same for programs, and the file's completion marker
==========================  ===========================================================

plus ``summary.csv``, the batch index: one row per input with its status (``done``,
``skipped`` = already done by an earlier run with the same settings, ``failed`` with the
error), the count, tissue area, density, hotspot, score and, with ``gt``, P/R/F1.

Resumability. Every file is written atomically (temporary file + ``os.replace``), so a
killed run never leaves a half-written output. ``NAME.summary.json`` is written last and
records a key of the run (the input's path, size and modification time; a fingerprint of
the model weights and config; threshold, mpp, tissue mode, field area, ground truth...)
and the list of outputs. A rerun skips an input whose ``NAME.summary.json`` has the same
key and whose listed outputs all exist; anything else is processed again (its old marker
is deleted first, so a crash mid-way is never mistaken for a finished file).
``overwrite=True`` processes everything again.

Failures (unreadable file, missing pixel size, ...) are recorded with their message and
the batch goes on with the next file.

The code behind it, by responsibility (this module gathers their public names):
:mod:`~mitodet.inference.inputs` (inputs and output names), :mod:`~mitodet.inference.resume`
(run keys, skipping finished files), :mod:`~mitodet.inference.process` (one file, in named
steps), :mod:`~mitodet.inference.batch` (planning, the executor seam, the one batch loop, the
index); the options are :class:`mitodet.config.DetectConfig`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from mitodet.config import DetectConfig
from mitodet.evaluation.metrics import DEFAULT_RADIUS_UM  # the one definition (re-exported here)
from mitodet.inference.batch import (
    INDEX_COLUMNS,
    BatchPlan,
    BatchResult,
    FileExecutor,
    LocalExecutor,
    describe_result,
    index_row,
    plan_batch,
    run_batch,
    run_file,
    write_index,
)
from mitodet.inference.inputs import INDEX_NAME, OUTPUT_SUFFIXES, collect_inputs, output_names, output_paths
from mitodet.inference.process import (
    MIN_IMAGE_SIDE_UM,
    OVERLAY_MPP,
    FileResult,
    FileSummary,
    TileRunner,
    atypical_summary,
    evaluate_points,
    failed_result,
    load_tissue_png,
    process_file,
    readout_summary,
    save_tissue_png,
    summary_grid,
)
from mitodet.inference.resume import file_identity, model_fingerprint, run_key


def detect_files(
    paths: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] = "mitodet-out",
    *,
    detector=None,
    model: str | os.PathLike[str] = "default",
    config: DetectConfig | None = None,
    log: Callable[[str], None] | None = None,
    log_error: Callable[[str], None] | None = None,
    **options: Any,
) -> BatchResult:
    """Detect mitoses in every image of ``paths`` and write the outputs into ``out_dir``.

    Args:
        paths: image files and/or folders (see :func:`~mitodet.inference.inputs.collect_inputs`).
        out_dir: output folder (created).
        detector: a loaded :class:`~mitodet.inference.predictor.Detector`; None loads ``model``.
        model: ``"default"`` or a model folder, when ``detector`` is None.
        config: a :class:`~mitodet.config.DetectConfig`; ``**options`` are its fields
            (``mpp``, ``threshold``, ``gt``, ``field_area_mm2``, ``tissue``, ``heatmap``,
            ``overlay``, ``radius_um``, ``reader``, ``allow_coarse``, ``recursive``,
            ``overwrite``, ``progress``), given one by one or over ``config``.
        log / log_error: called with one line per file (e.g. ``print``); None is silent.

    Returns:
        A :class:`BatchResult`; ``result.ok`` is False when any input failed.

    Raises:
        ValueError / FileNotFoundError / DataFormatError: bad arguments, a missing model or
            an unreadable ground-truth file (before any image is processed; the options are
            checked before the model is loaded).
    """
    cfg = DetectConfig.of(config, **options)
    plan = plan_batch(paths, out_dir, cfg, detector=detector, model=model)
    return run_batch(plan, LocalExecutor(), log, log_error)


__all__ = [
    "INDEX_NAME",
    "INDEX_COLUMNS",
    "OUTPUT_SUFFIXES",
    "DEFAULT_RADIUS_UM",
    "MIN_IMAGE_SIDE_UM",
    "OVERLAY_MPP",
    "DetectConfig",
    "FileResult",
    "FileSummary",
    "BatchResult",
    "BatchPlan",
    "FileExecutor",
    "LocalExecutor",
    "TileRunner",
    "describe_result",
    "collect_inputs",
    "output_names",
    "output_paths",
    "model_fingerprint",
    "file_identity",
    "run_key",
    "process_file",
    "run_file",
    "run_batch",
    "index_row",
    "write_index",
    "plan_batch",
    "failed_result",
    "detect_files",
    "atypical_summary",
    "evaluate_points",
    "load_tissue_png",
    "readout_summary",
    "save_tissue_png",
    "summary_grid",
]
