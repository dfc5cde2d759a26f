"""Batch detection on a Ray cluster: files spread over workers, and the tiles of a large slide too.

:func:`detect_files_ray` is :func:`~mitodet.inference.pipeline.detect_files` (what
``mitodet detect --backend ray`` runs) with the work spread over Ray actors. The outputs,
completion markers and batch index are the local path's, written by the same functions:

* **Files.** Each actor holds one :class:`~mitodet.inference.predictor.Detector` (the model
  is put in Ray's object store once and fetched once per node) and runs
  :func:`~mitodet.inference.pipeline.process_file` on one file at a time, so a file's
  outputs and its ``NAME.summary.json`` marker are exactly what the local path writes, and
  a rerun, with either backend, skips finished files (the run key is the same). A file
  that fails is recorded as failed and the others go on; the driver writes ``summary.csv``
  after every file.
* **Tiles of one large slide.** Near the end of a batch (fewer files left to start than
  there are workers, e.g. a batch of one slide), a file with at least
  ``tile_parallel_min_tiles`` tiles is split: the driver plans the tiles (tissue mask from
  the thumbnail, the same tile grid and the same batches of ``detector.batch_size`` tiles
  as :meth:`Detector.detect_source`), each actor reads its own tiles' regions from the
  file and runs the network, and only the detections (small point arrays) come back. The
  driver merges them with the ownership rule and writes the outputs through
  ``process_file``. Tiles are batched exactly as on one process, so the network sees the
  same inputs and the detections are the same.

What travels over the network: file paths, settings and the ground-truth points to the
actors; the model once per node; detections back. **Images do not travel**: every node
reads the input files itself, and the actors write the outputs themselves, so the inputs
and the output folder must be on a filesystem that every node mounts at the same path.

Ray is an optional dependency (``pip install 'mitodet[ray]'``), imported on first use.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mitodet.inference.pipeline import (DEFAULT_RADIUS_UM, INDEX_NAME, BatchResult, FileResult, _describe,
                                        _file_identity, _Options, collect_inputs, model_fingerprint, output_names,
                                        process_file, write_index)
from mitodet.report.readout import DIGITAL_HPF_AREA_MM2

RAY_INSTALL_HINT = "the Ray backend needs Ray: pip install 'mitodet[ray]' (or pip install 'ray>=2.9')"
DEFAULT_TILE_PARALLEL_MIN_TILES = 64
"""Tiles (at the working resolution, before skipping background) from which a file may be
split over the workers; 64 tiles of 512 px at 0.5 um/px are about 3 mm^2."""


def import_ray():
    """``import ray``, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(RAY_INSTALL_HINT) from exc
    return ray


# ----------------------------------------------------------------------------- tile plan


@dataclass(frozen=True)
class SlidePlan:
    """How :meth:`Detector.detect_source` would tile one image (see that method).

    Attributes:
        tiles: every tile of the working grid (working-resolution pixels).
        run: the tiles to run (those with tissue), in row-major order.
        batches: ``run`` cut into batches of ``detector.batch_size``, as the local path does.
        mask: the tissue mask (:class:`~mitodet.inference.tissue.TissueMask`) or None.
        level: the pyramid level the tiles are read from.
        scale: ``(fx, fy)`` level pixels per working pixel.
        working_to_level0: ``(sx, sy)`` working pixels per level-0 pixel.
        working_shape: ``(h, w)`` of the working grid.
        level_mpp: micrometres per pixel of ``level``.
    """

    tiles: list
    run: list
    batches: list
    mask: Any
    level: int
    scale: tuple[float, float]
    working_to_level0: tuple[float, float]
    working_shape: tuple[int, int]
    level_mpp: float


def plan_tiles(detector, source, mpp: float, tissue: str = "auto",
               thumbnail: tuple[np.ndarray, tuple[float, float]] | None = None, tissue_mask=None) -> SlidePlan:
    """The tiles, batches, level and tissue mask :meth:`Detector.detect_source` uses.

    Mirrors the first half of ``Detector.detect_source`` (kept in step by
    ``tests/inference/test_ray_backend.py``, which compares the results).
    """
    from mitodet.inference.predictor import THUMBNAIL_MAX_SIDE, TISSUE_MODES, _check_mpp, tissue_from_thumbnail
    from mitodet.inference.slide import best_level, read_thumbnail
    from mitodet.inference.tissue import MIN_TILE_TISSUE_FRACTION
    from mitodet.inference.tiling import make_tiles

    mpp = _check_mpp(mpp)
    if tissue not in TISSUE_MODES:
        raise ValueError(f"tissue must be one of {TISSUE_MODES}, got {tissue!r}")
    h0, w0 = source.shape
    mask = tissue_mask
    if mask is None and (tissue == "on" or (tissue == "auto" and source.kind == "wsi")):
        thumb, (dx, dy) = thumbnail if thumbnail is not None else read_thumbnail(source, THUMBNAIL_MAX_SIDE)
        mask = tissue_from_thumbnail(thumb, dx * mpp, (h0, w0))
    s = mpp / detector.mpp
    ww, hw = max(1, round(w0 * s)), max(1, round(h0 * s))
    sx, sy = ww / w0, hw / h0
    level = best_level(source, detector.mpp / mpp)
    ldx, ldy = source.level_downsample(level)
    fx, fy = 1.0 / (sx * ldx), 1.0 / (sy * ldy)
    tiles = make_tiles(hw, ww, detector.tile_px, detector.overlap_px,
                       min_overlap=int(np.ceil(detector.config.box_size_px)))
    run = []
    for t in tiles:
        if mask is not None:
            x0, y0, x1, y1 = t.read
            if mask.fraction((x0 / sx, y0 / sy, x1 / sx, y1 / sy)) < MIN_TILE_TISSUE_FRACTION:
                continue
        run.append(t)
    n = detector.batch_size
    batches = [run[i:i + n] for i in range(0, len(run), n)]
    return SlidePlan(tiles, run, batches, mask, level, (fx, fy), (sx, sy), (hw, ww), mpp * ldx)


def run_batch(detector, source, level: int, scale: tuple[float, float], batch: Sequence) -> list[tuple]:
    """Read one batch of tiles from ``source`` and run the network: ``[(points, scores)]`` per
    tile, points (N, 2) x, y in working-grid pixels (the tile's offset added)."""
    from mitodet.inference.slide import resize_region

    fx, fy = scale
    crops = []
    for t in batch:
        x0, y0, x1, y1 = t.read
        crops.append(resize_region(source, level, (x0 * fx, y0 * fy, x1 * fx, y1 * fy), (x1 - x0, y1 - y0)))
    return [(t.to_image(pts), sc) for t, (pts, sc) in zip(batch, detector.predict_working(crops))]


def finish_detections(detector, source, mpp: float, plan: SlidePlan, per_tile: Sequence[tuple],
                      threshold: float | None, t_start: float, extra_info: dict | None = None):
    """Merge per-tile detections (in ``plan.run`` order) into :class:`Detections` as
    :meth:`Detector.detect_source` does: ownership rule, back to level-0 pixels, off-tissue
    detections dropped, sorted by score, thresholded."""
    from mitodet.inference.predictor import Detections
    from mitodet.inference.tiling import merge_tile_detections
    from mitodet.inference.tissue import KEEP_MARGIN_UM

    thr = detector.threshold if threshold is None else float(threshold)
    if not 0.0 <= thr <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold!r}")
    assert len(per_tile) == len(plan.run), "one result per tile run"
    pts, sc = merge_tile_detections((t, p, s) for t, (p, s) in zip(plan.run, per_tile))
    sx, sy = plan.working_to_level0
    if len(pts):
        pts = np.stack([(pts[:, 0] + 0.5) / sx - 0.5, (pts[:, 1] + 0.5) / sy - 0.5], axis=1)
    n_off = 0
    if plan.mask is not None and len(pts):
        keep = plan.mask.contains(pts, margin_px=KEEP_MARGIN_UM / mpp)
        n_off = int((~keep).sum())
        pts, sc = pts[keep], sc[keep]
    order = np.argsort(-sc, kind="stable")
    info = {
        "tiles": len(plan.tiles), "tiles_run": len(plan.run), "tiles_skipped": len(plan.tiles) - len(plan.run),
        "tile_px": detector.tile_px, "overlap_px": detector.overlap_px, "working_mpp": detector.mpp,
        "working_shape": list(plan.working_shape), "level": plan.level, "level_mpp": plan.level_mpp,
        "n_off_tissue": n_off, "n_candidates": int(len(sc)), "seconds": time.perf_counter() - t_start,
        **(extra_info or {}),
    }
    h0, w0 = source.shape
    det = Detections(pts[order].reshape(-1, 2), sc[order], float(mpp), (int(h0), int(w0)), 0.0, plan.mask, info)
    return det.above(thr)


def _count_tiles(detector, path: Path, mpp: float | None, reader: str) -> int | None:
    """Tiles of the working grid of ``path`` (None when it cannot be opened: process_file
    then reports why)."""
    from mitodet.inference.slide import open_image, resolve_mpp
    from mitodet.inference.tiling import make_tiles

    try:
        with open_image(path, reader=reader) as src:
            m, _ = resolve_mpp(path, src.pixel_size, mpp)
            h0, w0 = src.shape
            s = m / detector.mpp
            return len(make_tiles(max(1, round(h0 * s)), max(1, round(w0 * s)), detector.tile_px,
                                  detector.overlap_px))
    except Exception:
        return None


def _failed(path: Path, name: str, exc: BaseException, t0: float) -> FileResult:
    # the same message as the local path's
    msg = str(exc) if str(path) in str(exc) else f"{path}: {type(exc).__name__}: {exc}"
    return FileResult(path, name, "failed", error=msg, seconds=time.perf_counter() - t0)


# ----------------------------------------------------------------------------- the actor


@dataclass(frozen=True)
class _DetectorSpec:
    """A Detector to rebuild on the worker: the ONNX backend's Runtime session does not pickle
    (and its threads are set when it is built, so each worker builds its own)."""

    model: Any
    kwargs: dict


def _portable(detector):
    """What the workers get: the Detector itself, or for the ONNX backend its torch model and settings."""
    if getattr(detector, "backend", "torch") == "torch":
        return detector
    return _DetectorSpec(detector.torch_model, dict(
        threshold=detector.threshold, tile_px=detector.tile_px, overlap_px=detector.overlap_px,
        batch_size=detector.batch_size, flip_tta=detector.flip_tta, model_dir=detector.model_dir,
        backend=detector.backend))


@dataclass(frozen=True)
class _Deferred:
    """A worker's answer for a file large enough to be split over all workers."""

    n_tiles: int


class _Worker:
    """One Ray actor: a loaded detector, one file or one group of tile batches at a time."""

    def __init__(self, detector, threads: int) -> None:
        import torch

        torch.set_num_threads(int(threads))
        if isinstance(detector, _DetectorSpec):
            from mitodet.inference.predictor import Detector

            detector = Detector(detector.model, **detector.kwargs)
        self.detector = detector
        self._src = None
        self._src_key: tuple | None = None

    def ready(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()

    def process(self, path: str, name: str, out_dir: str, opts: _Options, settings: dict, gt_points,
                gt_file: str | None, single_pair: bool, overwrite: bool, min_tiles: int | None):
        """``process_file`` on one file (a failure comes back as a failed FileResult), or
        :class:`_Deferred` when ``min_tiles`` is given and the file has at least that many tiles."""
        t0 = time.perf_counter()
        p = Path(path)
        if min_tiles is not None:
            n = _count_tiles(self.detector, p, opts.mpp, opts.reader)
            if n is not None and n >= min_tiles:
                return _Deferred(n)
        try:
            return process_file(self.detector, p, name, Path(out_dir), opts, settings, gt_points, gt_file,
                                single_pair=single_pair, overwrite=overwrite)
        except Exception as exc:  # one bad file must not stop the batch
            return _failed(p, name, exc, t0)

    def run_tiles(self, path: str, reader: str, level: int, scale: tuple[float, float],
                  batches: list[list]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Read and run ``batches`` of tiles of ``path``: ``[(points, scores)]`` per tile in order."""
        from mitodet.inference.slide import open_image

        st = os.stat(path)
        key = (path, reader, st.st_size, st.st_mtime_ns)  # a file replaced since is opened again
        if self._src_key != key:
            self.close()
            self._src = open_image(path, reader=reader)  # kept open for the next group of the slide
            self._src_key = key
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for batch in batches:
            out.extend(run_batch(self.detector, self._src, level, scale, batch))
        return out

    def close(self) -> None:
        if self._src is not None:
            self._src.close()
        self._src, self._src_key = None, None


# ----------------------------------------------------------------------------- the pool


def _check_positive_int(name: str, value, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class _SplitDetector:
    """Looks like the pool's Detector to ``process_file``, but runs the tiles on the workers."""

    def __init__(self, pool: "RayDetectorPool", reader: str) -> None:
        self._pool = pool
        self._reader = reader

    def __getattr__(self, name: str):
        return getattr(self._pool.detector, name)

    def detect_source(self, source, mpp: float, threshold: float | None = None, tissue: str = "auto",
                      progress: bool = False, thumbnail=None, tissue_mask=None):
        return self._pool.detect_source(source, mpp, threshold=threshold, tissue=tissue, progress=progress,
                                        thumbnail=thumbnail, tissue_mask=tissue_mask, reader=self._reader)


class RayDetectorPool:
    """Ray actors that each hold the same detector; reusable for several batches.

    Args:
        detector: a loaded :class:`~mitodet.inference.predictor.Detector`; None loads ``model``.
        model: ``"default"`` or a model folder, when ``detector`` is None.
        num_workers: actors to start (None: one per ``cpus_per_worker`` CPUs of the cluster).
        cpus_per_worker: CPUs Ray reserves for each actor, and its torch threads.
        address: an existing cluster (``"auto"``, ``"HEAD_IP:6379"``, ``"ray://HOST:10001"``);
            None uses ``RAY_ADDRESS`` when set, else starts a local cluster of
            ``num_workers x cpus_per_worker`` CPUs on this machine. When Ray is already
            initialised in this process, that session is used as it is.
        max_restarts: how many dead workers (a lost node, a killed process) are replaced by
            new ones, in all.
        max_task_retries: how often a file whose worker died is started again on another
            worker (tile groups of a split slide are always run again: they write nothing).
        start_timeout_s: how long to wait for the actors to start.

    Raises:
        ImportError: Ray is not installed (with the install hint).
        ValueError: bad counts, or more CPUs asked for than the cluster has.
        TimeoutError: the actors did not start in time.
    """

    def __init__(self, detector=None, *, model: str | os.PathLike[str] = "default", num_workers: int | None = None,
                 cpus_per_worker: int = 1, address: str | None = None, max_restarts: int = 2,
                 max_task_retries: int = 2, start_timeout_s: float = 600.0) -> None:
        ray = import_ray()
        num_workers = _check_positive_int("num_workers", num_workers)
        cpus_per_worker = _check_positive_int("cpus_per_worker", cpus_per_worker, allow_none=False)
        for name, v in (("max_restarts", max_restarts), ("max_task_retries", max_task_retries)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        if detector is None:
            from mitodet.inference.predictor import Detector

            detector = Detector.load(model)
        self.detector = detector
        self._ray = ray
        self._started = False
        self._actors: list = []
        if not ray.is_initialized():
            if address is None and not os.environ.get("RAY_ADDRESS"):
                # logical CPUs: all of this machine's by default, never fewer than one worker needs
                n_cpus = (num_workers * cpus_per_worker if num_workers is not None
                          else max(os.cpu_count() or 1, cpus_per_worker))
                ray.init(num_cpus=n_cpus, include_dashboard=False)
            else:
                ray.init(address=address)
            self._started = True
        try:
            total = int(ray.cluster_resources().get("CPU", 0))
            n = num_workers or max(1, total // cpus_per_worker)
            if n * cpus_per_worker > total:
                raise ValueError(f"{n} workers x {cpus_per_worker} CPUs need {n * cpus_per_worker} CPUs but the Ray "
                                 f"cluster has {total}; pass fewer workers (--ray-workers) or add nodes")
            # the model goes into the object store once; each node fetches it once. Dead workers
            # are replaced here rather than by Ray's max_restarts, whose restart can fail when a
            # constructor argument lives in the object store (ray-project/ray#53727)
            self._detector_ref = ray.put(_portable(detector))
            self._cpus_per_worker = cpus_per_worker
            self._restarts_left = max_restarts
            self.max_task_retries = max_task_retries
            self._actor_cls = ray.remote(_Worker).options(num_cpus=cpus_per_worker)
            self._actors = [self._new_actor() for _ in range(n)]
            try:
                self.hosts = ray.get([a.ready.remote() for a in self._actors], timeout=start_timeout_s)
            except ray.exceptions.GetTimeoutError:
                raise TimeoutError(f"{n} Ray workers did not start within {start_timeout_s:g} s; check "
                                   "`ray status` for free CPUs and that mitodet is installed on every node") from None
        except BaseException:
            self.close()
            raise

    @property
    def num_workers(self) -> int:
        """Actors alive."""
        return len(self._actors)

    def close(self) -> None:
        """Stop the actors, and the local Ray cluster when this pool started it."""
        for a in self._actors:
            try:
                self._ray.kill(a)
            except Exception:
                pass
        self._actors = []
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False

    def __enter__(self) -> "RayDetectorPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _new_actor(self):
        return self._actor_cls.remote(self._detector_ref, self._cpus_per_worker)

    def _replace(self, actor):
        """Forget a dead worker and start a new one in its place while ``max_restarts`` allows;
        returns the new worker or None."""
        if actor not in self._actors:
            return None
        self._actors.remove(actor)
        try:
            self._ray.kill(actor)
        except Exception:
            pass
        if self._restarts_left <= 0:
            return None
        self._restarts_left -= 1
        new = self._new_actor()
        self._actors.append(new)
        return new

    # ------------------------------------------------------------------ one image, tiles split

    def detect_source(self, source, mpp: float, threshold: float | None = None, tissue: str = "auto",
                      progress: bool = False, thumbnail=None, tissue_mask=None, reader: str = "auto"):
        """:meth:`Detector.detect_source` with the tile batches spread over the workers.

        The workers open ``source.path`` themselves (with ``reader``) and read their tiles'
        regions; only detections come back. The result equals the single-process one.
        """
        if source.path is None:
            raise ValueError("the Ray backend reads images from files; an in-memory image has no path to send "
                             "(use Detector.detect_array)")
        t0 = time.perf_counter()
        plan = plan_tiles(self.detector, source, mpp, tissue=tissue, thumbnail=thumbnail, tissue_mask=tissue_mask)
        per_batch = self._scatter(str(Path(source.path).absolute()), reader, plan, progress)
        per_tile = [r for b in per_batch for r in b]
        return finish_detections(self.detector, source, mpp, plan, per_tile, threshold, t0,
                                 {"backend": "ray", "ray_workers": self.num_workers})

    def detect_path(self, path: str | os.PathLike[str], mpp: float | None = None, threshold: float | None = None,
                    tissue: str = "auto", progress: bool = False, reader: str = "auto"):
        """:meth:`Detector.detect_path` with the tiles spread over the workers (same result)."""
        from mitodet.inference.slide import open_image, resolve_mpp

        with open_image(path, reader=reader) as src:
            m, how = resolve_mpp(path, src.pixel_size, mpp)
            det = self.detect_source(src, m, threshold=threshold, tissue=tissue, progress=progress, reader=reader)
            det.info.update(mpp_source=how, source=src.describe())
            return det

    def _scatter(self, path: str, reader: str, plan: SlidePlan, progress: bool) -> list[list[tuple]]:
        """Run ``plan.batches`` on the actors, two groups in flight per actor; per-batch results in order."""
        ray = self._ray
        nb = len(plan.batches)
        if nb == 0:
            return []
        if not self._actors:
            raise RuntimeError("no Ray workers left (all died); see the Ray logs")
        # ~8 groups per worker balance the load; a group is at least one batch
        size = max(1, nb // (8 * len(self._actors)))
        groups = deque((i, min(nb, i + size)) for i in range(0, nb, size))
        out: list[list[tuple] | None] = [None] * nb
        inflight: dict = {}
        load = {a: 0 for a in self._actors}
        bar = None
        if progress and len(groups) > 1:
            from tqdm import tqdm

            bar = tqdm(total=nb, desc="tile batches", unit="batch", leave=False, disable=None)
        try:
            while groups or inflight:
                for a in list(self._actors):
                    while groups and load.get(a, 0) < 2:
                        g = groups.popleft()
                        ref = a.run_tiles.remote(path, reader, plan.level, plan.scale, plan.batches[g[0]:g[1]])
                        inflight[ref] = (a, g)
                        load[a] = load.get(a, 0) + 1
                if not inflight:
                    raise RuntimeError("no Ray workers left (all died); see the Ray logs")
                done, _ = ray.wait(list(inflight), num_returns=1)
                for ref in done:
                    a, (i0, i1) = inflight.pop(ref)
                    load[a] -= 1
                    try:
                        res = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # reading or running the tiles failed
                        raise _cause(exc) from None
                    except ray.exceptions.RayError:  # the worker died (node lost, process killed)
                        new = self._replace(a)
                        if new is not None:
                            load[new] = 0
                        groups.appendleft((i0, i1))  # pure work: run it again
                        continue
                    k = 0
                    for b in range(i0, i1):
                        n = len(plan.batches[b])
                        out[b] = res[k:k + n]
                        k += n
                    if bar is not None:
                        bar.update(i1 - i0)
        finally:
            if bar is not None:
                bar.close()
            _cancel(ray, inflight)  # after an error: leave no work queued on the actors
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ a batch of files

    def detect_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        out_dir: str | os.PathLike[str] = "mitodet-out",
        *,
        tile_parallel_min_tiles: int | None = DEFAULT_TILE_PARALLEL_MIN_TILES,
        mpp: float | None = None,
        threshold: float | None = None,
        gt: str | os.PathLike[str] | None = None,
        field_area_mm2: float = DIGITAL_HPF_AREA_MM2,
        tissue: str = "auto",
        heatmap: bool = True,
        radius_um: float = DEFAULT_RADIUS_UM,
        overwrite: bool = False,
        recursive: bool = False,
        reader: str = "auto",
        progress: bool = False,
        log: Callable[[str], None] | None = None,
        log_error: Callable[[str], None] | None = None,
    ) -> BatchResult:
        """:func:`~mitodet.inference.pipeline.detect_files` on the pool's workers (see the module
        docstring); the arguments are those of ``detect_files`` plus ``tile_parallel_min_tiles``
        (None: never split a file)."""
        ray = self._ray
        detector = self.detector
        min_tiles = _check_positive_int("tile_parallel_min_tiles", tile_parallel_min_tiles)
        # --- the same checks, options and run key as detect_files (a rerun with either backend skips)
        from mitodet.inference.predictor import TISSUE_MODES

        if tissue not in TISSUE_MODES:
            raise ValueError(f"tissue must be one of {TISSUE_MODES}, got {tissue!r}")
        if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= float(threshold) <= 1.0):
            raise ValueError(f"threshold must lie in [0, 1], got {threshold!r}")
        if mpp is not None:
            from mitodet.inference.slide import NO_PIXEL_SIZE, resolve_mpp

            resolve_mpp("--mpp", NO_PIXEL_SIZE, mpp)
        if not (math.isfinite(radius_um) and radius_um > 0):
            raise ValueError(f"radius_um must be a positive number of micrometres, got {radius_um!r}")
        if not (math.isfinite(field_area_mm2) and field_area_mm2 > 0):
            raise ValueError(f"field_area_mm2 must be a positive area in mm^2, got {field_area_mm2!r}")
        paths = list(paths)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        inputs = collect_inputs(paths, recursive=recursive, exclude=[out])
        if not inputs:
            raise ValueError(f"no images found in {', '.join(str(p) for p in paths)}; mitodet reads PNG, JPEG, "
                             "TIFF and whole-slide formats (SVS, NDPI, MRXS, ...)")
        names = output_names(inputs)
        gt_points = gt_file = None
        if gt is not None:
            from mitodet.evaluation.io import load_points

            gt_points = load_points(gt)
            gt_file = str(gt)
        opts = _Options(mpp=mpp, threshold=threshold, field_area_mm2=float(field_area_mm2), tissue=tissue,
                        heatmap=bool(heatmap), reader=reader, radius_um=float(radius_um), progress=progress)
        worker_opts = replace(opts, progress=False)  # no progress bars inside the workers
        settings = {
            "model": model_fingerprint(detector),
            "threshold": detector.threshold if threshold is None else float(threshold),
            "mpp": mpp, "tissue": tissue, "heatmap": bool(heatmap), "reader": reader,
            "field_area_mm2": float(field_area_mm2), "radius_um": float(radius_um),
            "tile_px": detector.tile_px, "overlap_px": detector.overlap_px, "flip_tta": detector.flip_tta,
            "backend": getattr(detector, "backend", "torch"),
            "gt": None if gt is None else _file_identity(Path(gt)),
        }
        # --- spread the files
        single_pair = len(inputs) == 1
        gt_ref = ray.put(gt_points)
        out_abs = str(out.absolute())
        index_path = out / INDEX_NAME
        results: list[FileResult | None] = [None] * len(inputs)
        say = log or _quiet
        say_err = log_error or log or _quiet
        bar = None
        if progress and len(inputs) > 1:
            from tqdm import tqdm

            bar = tqdm(total=len(inputs), desc="files", unit="file", disable=None)
        n_finished = 0

        def finish(i: int, r: FileResult) -> None:
            nonlocal n_finished
            r.path = inputs[i]  # as given (the workers got absolute paths)
            results[i] = r
            n_finished += 1
            write_index(index_path, [x for x in results if x is not None])
            (say_err if r.status == "failed" else say)(_describe(n_finished, len(inputs), r))
            if bar is not None:
                bar.update(1)

        def run_split(i: int) -> FileResult:
            t0 = time.perf_counter()
            try:
                return process_file(_SplitDetector(self, reader), inputs[i], names[i], out, opts, settings,
                                    gt_points, gt_file, single_pair=single_pair, overwrite=overwrite)
            except Exception as exc:
                return _failed(inputs[i], names[i], exc, t0)

        pending = deque(range(len(inputs)))
        tries = [0] * len(inputs)
        inflight: dict = {}
        try:
            while pending or inflight:
                busy = {a for a, _ in inflight.values()}
                for a in [a for a in self._actors if a not in busy]:
                    if not pending:
                        break
                    i = pending.popleft()
                    # split a large file only near the end, when whole files no longer keep every worker busy
                    allow = min_tiles if len(pending) < len(self._actors) else None
                    ref = a.process.remote(str(inputs[i].absolute()), names[i], out_abs, worker_opts, settings,
                                           gt_ref, gt_file, single_pair, overwrite, allow)
                    inflight[ref] = (a, i)
                if not inflight:
                    for i in pending:  # every worker died and none may be started any more
                        finish(i, FileResult(inputs[i], names[i], "failed",
                                             error=f"{inputs[i]}: no Ray workers left (all died); see the Ray logs"))
                    pending.clear()
                    break
                done, _ = ray.wait(list(inflight), num_returns=1)
                for ref in done:
                    a, i = inflight.pop(ref)
                    try:
                        r = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # process() returns failures; this is a bug
                        r = _failed(inputs[i], names[i], _cause(exc), time.perf_counter())
                    except ray.exceptions.RayError as exc:  # the worker died (node lost, process killed)
                        self._replace(a)
                        tries[i] += 1
                        if tries[i] <= self.max_task_retries:
                            pending.appendleft(i)  # outputs are atomic and the marker comes last: safe to redo
                            continue
                        r = FileResult(inputs[i], names[i], "failed",
                                       error=f"{inputs[i]}: the Ray worker died while processing it, {tries[i]} "
                                             f"time(s) ({type(exc).__name__}); rerun to retry this file")
                    if isinstance(r, _Deferred):
                        r = run_split(i)
                    finish(i, r)
        finally:
            if bar is not None:
                bar.close()
            _cancel(ray, inflight)
        final = [r for r in results if r is not None]
        write_index(index_path, final)
        return BatchResult(final, out, index_path)


def _cause(exc) -> BaseException:
    """The exception raised inside a Ray task."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _cancel(ray, refs) -> None:
    for ref in refs:
        try:
            ray.cancel(ref)
        except Exception:  # already finished, or its worker is gone
            pass


def _quiet(_msg: str) -> None:
    pass


def detect_files_ray(
    paths: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] = "mitodet-out",
    *,
    address: str | None = None,
    num_workers: int | None = None,
    cpus_per_worker: int = 1,
    tile_parallel_min_tiles: int | None = DEFAULT_TILE_PARALLEL_MIN_TILES,
    detector=None,
    model: str | os.PathLike[str] = "default",
    **options: Any,
) -> BatchResult:
    """Detect mitoses in every image of ``paths`` on a Ray cluster; outputs as :func:`detect_files`.

    Args:
        paths, out_dir: as for :func:`~mitodet.inference.pipeline.detect_files`.
        address: an existing Ray cluster (``"auto"``, ``"HEAD_IP:6379"``); None: ``RAY_ADDRESS``
            if set, else a local cluster on this machine (stopped at the end).
        num_workers: Ray actors, each holding the model (None: one per ``cpus_per_worker``
            CPUs of the cluster).
        cpus_per_worker: CPUs (and torch threads) per actor.
        tile_parallel_min_tiles: split a file of at least this many tiles over all workers
            when fewer files than workers are left to start; None never splits.
        detector, model: the detector, or the model to load (on the driver; sent to the workers).
        **options: the other keyword arguments of ``detect_files`` (``mpp``, ``threshold``,
            ``gt``, ``tissue``, ``heatmap``, ``overwrite``, ``recursive``, ``reader``,
            ``progress``, ``log``, ``log_error``...).

    Returns:
        A :class:`~mitodet.inference.pipeline.BatchResult`, as the local path returns.

    Raises:
        ImportError: Ray is missing (``pip install 'mitodet[ray]'``).
        ValueError / FileNotFoundError: bad arguments, a missing model or inputs.
    """
    with RayDetectorPool(detector, model=model, num_workers=num_workers, cpus_per_worker=cpus_per_worker,
                         address=address) as pool:
        return pool.detect_files(paths, out_dir, tile_parallel_min_tiles=tile_parallel_min_tiles, **options)


__all__ = ["RAY_INSTALL_HINT", "DEFAULT_TILE_PARALLEL_MIN_TILES", "import_ray", "SlidePlan", "plan_tiles",
           "run_batch", "finish_detections", "RayDetectorPool", "detect_files_ray"]
