"""Batch detection on a Ray cluster: files spread over workers, and the tiles of a large slide too.

:func:`detect_files_ray` is :func:`~mitodet.inference.pipeline.detect_files` (what
``mitodet detect --backend ray`` runs) with the work spread over Ray actors. This module
keeps only what is Ray's (the cluster, the actors, retries, the schedulers); the plan, the
batch loop (index, log, progress) and each file's steps are the local path's
(:mod:`mitodet.inference.batch`, :mod:`mitodet.inference.process`):

* **Files.** :class:`RayFileExecutor` is the :class:`~mitodet.inference.batch.FileExecutor`
  of the pool: each actor holds one :class:`~mitodet.inference.predictor.Detector` (put in
  Ray's object store once and fetched once per node) and runs
  :func:`~mitodet.inference.batch.run_file` on one input of the plan at a time, so a file's
  outputs and its ``NAME.summary.json`` marker are exactly what the local path writes, and
  a rerun, with either backend, skips finished files (the run key is the same).
* **Tiles of one large slide.** Near the end of a batch (fewer files left to start than
  there are workers, e.g. a batch of one slide), a file with at least
  ``tile_parallel_min_tiles`` tiles is split: the driver runs that file's steps itself with
  :meth:`RayDetectorPool.detect_source` as the tile runner, which plans the tiles with
  :meth:`Detector.plan_tiles`, has each actor run :meth:`Detector.run_batch` on its own
  batches (reading their regions from the file itself), and merges the detections (small
  point arrays) with :meth:`Detector.merge`. These are the three steps
  :meth:`Detector.detect_source` runs on one process, so the network sees the same inputs
  and the detections are the same.

What travels over the network: file paths, settings and the ground-truth points to the
actors; the model once per node; detections back. **Images do not travel**: every node
reads the input files itself, and the actors write the outputs themselves, so the inputs
and the output folder must be on a filesystem that every node mounts at the same path.

Ray is an optional dependency (``pip install 'mitodet[ray]'``), imported on first use.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mitodet.checks import check_threshold, positive_int
from mitodet.config import DetectConfig
from mitodet.inference.batch import BatchPlan, BatchResult, plan_batch, run_batch, run_file
from mitodet.inference.predictor import TilePlan
from mitodet.inference.process import FileResult, failed_result

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


# ----------------------------------------------------------------------------- helpers


def _count_tiles(detector, path: Path, mpp: float | None, reader: str) -> int | None:
    """Tiles of the working grid of ``path`` (None when it cannot be opened: the file's run
    then reports why)."""
    from mitodet.inference.slide import open_image, resolve_mpp

    try:
        with open_image(path, reader=reader) as src:
            m, _ = resolve_mpp(path, src.pixel_size, mpp)
            return len(detector.tiles_for(src.shape, m))
    except Exception:
        return None


# ----------------------------------------------------------------------------- the actor


@dataclass(frozen=True)
class _Deferred:
    """A worker's answer for a file large enough to be split over all workers."""

    n_tiles: int


class _Worker:
    """One Ray actor: a loaded detector, one file or one group of tile batches at a time."""

    def __init__(self, detector, threads: int) -> None:
        import torch

        torch.set_num_threads(int(threads))  # before the detector's first use builds an ONNX session
        self.detector = detector
        self._src = None
        self._src_key: tuple | None = None

    def ready(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()

    def process(self, plan: BatchPlan, i: int, min_tiles: int | None):
        """Input ``i`` of ``plan`` through :func:`~mitodet.inference.batch.run_file` (a failure
        comes back as a failed FileResult), or :class:`_Deferred` when ``min_tiles`` is given
        and the file has at least that many tiles."""
        if min_tiles is not None:
            n = _count_tiles(self.detector, plan.inputs[i], plan.config.mpp, plan.config.reader)
            if n is not None and n >= min_tiles:
                return _Deferred(n)
        return run_file(plan, i, detector=self.detector)

    def run_tiles(self, path: str, reader: str, plan, batches: list[list]) -> list[tuple[np.ndarray, np.ndarray]]:
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
            out.extend(self.detector.run_batch(self._src, plan, batch))
        return out

    def close(self) -> None:
        if self._src is not None:
            self._src.close()
        self._src, self._src_key = None, None


# ----------------------------------------------------------------------------- the pool


def _check_positive_int(name: str, value, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    return positive_int(value, name)


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

    def __init__(
        self,
        detector=None,
        *,
        model: str | os.PathLike[str] = "default",
        num_workers: int | None = None,
        cpus_per_worker: int = 1,
        address: str | None = None,
        max_restarts: int = 2,
        max_task_retries: int = 2,
        start_timeout_s: float = 600.0,
    ) -> None:
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
                n_cpus = (
                    num_workers * cpus_per_worker
                    if num_workers is not None
                    else max(os.cpu_count() or 1, cpus_per_worker)
                )
                ray.init(num_cpus=n_cpus, include_dashboard=False)
            else:
                where = address or os.environ.get("RAY_ADDRESS")
                try:
                    ray.init(address=address)
                except (ConnectionError, TimeoutError, RuntimeError) as exc:
                    raise ValueError(
                        f"cannot reach the Ray cluster at {where!r} ({type(exc).__name__}: {exc}); "
                        "check the address (--address or RAY_ADDRESS) and that `ray status` works "
                        "on this machine, or leave both unset for a local cluster"
                    ) from None
            self._started = True
        try:
            total = int(ray.cluster_resources().get("CPU", 0))
            n = num_workers or max(1, total // cpus_per_worker)
            if n * cpus_per_worker > total:
                raise ValueError(
                    f"{n} workers x {cpus_per_worker} CPUs need {n * cpus_per_worker} CPUs but the Ray "
                    f"cluster has {total}; pass fewer workers (--ray-workers) or add nodes"
                )
            # the model goes into the object store once; each node fetches it once. Dead workers
            # are replaced here rather than by Ray's max_restarts, whose restart can fail when a
            # constructor argument lives in the object store (ray-project/ray#53727)
            self._detector_ref = ray.put(detector)  # an ONNX session is rebuilt on each worker (Detector.__getstate__)
            self._cpus_per_worker = cpus_per_worker
            self._restarts_left = max_restarts
            self.max_task_retries = max_task_retries
            self._actor_cls = ray.remote(_Worker).options(num_cpus=cpus_per_worker)
            self._actors = [self._new_actor() for _ in range(n)]
            try:
                self.hosts = ray.get([a.ready.remote() for a in self._actors], timeout=start_timeout_s)
            except ray.exceptions.GetTimeoutError:
                raise TimeoutError(
                    f"{n} Ray workers did not start within {start_timeout_s:g} s; check "
                    "`ray status` for free CPUs and that mitodet is installed on every node"
                ) from None
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

    def detect_source(
        self,
        source,
        mpp: float,
        threshold: float | None = None,
        tissue: str = "auto",
        progress: bool = False,
        thumbnail=None,
        tissue_mask=None,
        reader: str = "auto",
    ):
        """:meth:`Detector.detect_source` with the tile batches spread over the workers.

        The workers open ``source.path`` themselves (with ``reader``) and read their tiles'
        regions; only detections come back. The result equals the single-process one.
        """
        if source.path is None:
            raise ValueError(
                "the Ray backend reads images from files; an in-memory image has no path to send "
                "(use Detector.detect_array)"
            )
        t0 = time.perf_counter()
        check_threshold(threshold)
        plan = self.detector.plan_tiles(source, mpp, tissue=tissue, thumbnail=thumbnail, tissue_mask=tissue_mask)
        per_batch = self._scatter(str(Path(source.path).absolute()), reader, plan, progress)
        per_tile = [r for b in per_batch for r in b]
        return self.detector.merge(
            source,
            plan,
            per_tile,
            threshold=threshold,
            t_start=t0,
            extra_info={"backend": "ray", "ray_workers": self.num_workers},
        )

    def detect_path(
        self,
        path: str | os.PathLike[str],
        mpp: float | None = None,
        threshold: float | None = None,
        tissue: str = "auto",
        progress: bool = False,
        reader: str = "auto",
    ):
        """:meth:`Detector.detect_path` with the tiles spread over the workers (same result)."""
        from mitodet.inference.slide import open_image, resolve_mpp

        with open_image(path, reader=reader) as src:
            m, how = resolve_mpp(path, src.pixel_size, mpp)
            det = self.detect_source(src, m, threshold=threshold, tissue=tissue, progress=progress, reader=reader)
            det.info.update(mpp_source=how, source=src.describe())
            return det

    def _scatter(self, path: str, reader: str, plan: TilePlan, progress: bool) -> list[list[tuple]]:
        """Run ``plan.batches`` on the actors, two groups in flight per actor; per-batch results in order."""
        nb = len(plan.batches)
        if nb == 0:
            return []
        if not self._actors:
            raise RuntimeError("no Ray workers left (all died); see the Ray logs")
        # ~8 groups per worker balance the load; a group is at least one batch
        size = max(1, nb // (8 * len(self._actors)))
        # what the workers need of the plan (level and scale), without the tile lists and the mask
        plan_ref = self._ray.put(replace(plan, tiles=[], run=[], batches=[], mask=None))
        groups = [(i, min(nb, i + size)) for i in range(0, nb, size)]
        out: list[list[tuple] | None] = [None] * nb
        bar = None
        if progress and len(groups) > 1:
            from tqdm import tqdm

            bar = tqdm(total=nb, desc="tile batches", unit="batch", leave=False, disable=None)

        def submit(actor, g, _left):
            return actor.run_tiles.remote(path, reader, plan_ref, plan.batches[g[0] : g[1]])

        try:  # two groups in flight per worker; a group whose worker died is pure work: run again
            with contextlib.closing(_schedule(self, groups, submit, 2, lambda g, exc: True)) as done:
                for (i0, i1), res, error in done:
                    if error is not None:  # reading or running the tiles failed, or no worker is left
                        raise error
                    k = 0
                    for b in range(i0, i1):
                        n = len(plan.batches[b])
                        out[b] = res[k : k + n]
                        k += n
                    if bar is not None:
                        bar.update(i1 - i0)
        finally:
            if bar is not None:
                bar.close()
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ a batch of files

    def detect_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        out_dir: str | os.PathLike[str] = "mitodet-out",
        *,
        tile_parallel_min_tiles: int | None = DEFAULT_TILE_PARALLEL_MIN_TILES,
        config: DetectConfig | None = None,
        log: Callable[[str], None] | None = None,
        log_error: Callable[[str], None] | None = None,
        **options: Any,
    ) -> BatchResult:
        """:func:`~mitodet.inference.pipeline.detect_files` on the pool's workers (see the module
        docstring): the same plan (checks, options, run key: a rerun with either backend skips)
        and the same batch loop; the arguments are those of ``detect_files`` plus
        ``tile_parallel_min_tiles`` (None: never split a file)."""
        executor = RayFileExecutor(self, tile_parallel_min_tiles)
        cfg = DetectConfig.of(config, **options)
        plan = plan_batch(paths, out_dir, cfg, detector=self.detector)
        return run_batch(plan, executor, log, log_error)


class RayFileExecutor:
    """The files of a plan spread over a :class:`RayDetectorPool`'s workers, one file per worker
    at a time (a :class:`~mitodet.inference.batch.FileExecutor`).

    A file whose worker died is started again on another worker up to the pool's
    ``max_task_retries`` (its outputs are atomic and its marker comes last: safe to redo).
    Near the end of the batch (fewer files left than workers), a worker answers for a file of
    at least ``min_tiles`` tiles with :class:`_Deferred`, and the driver runs that file itself
    with its tiles spread over every worker (:meth:`RayDetectorPool.detect_source`)."""

    def __init__(self, pool: "RayDetectorPool", min_tiles: int | None = DEFAULT_TILE_PARALLEL_MIN_TILES) -> None:
        self.pool = pool
        self.min_tiles = _check_positive_int("tile_parallel_min_tiles", min_tiles)

    def run(self, plan: BatchPlan):
        pool, ray = self.pool, self.pool._ray
        inputs, names = plan.inputs, plan.names
        # what the workers get: no detector (they hold their own), absolute paths (their
        # working folder is not ours), no progress bars
        remote = replace(
            plan,
            detector=None,
            inputs=[p.absolute() for p in inputs],
            out_dir=plan.out_dir.absolute(),
            index_path=plan.index_path.absolute(),
            config=plan.config.replace(progress=False),
        )
        plan_ref = ray.put(remote)
        tiles = functools.partial(pool.detect_source, reader=plan.config.reader)
        tries = [0] * len(inputs)

        def submit(actor, i, left):
            # split a large file only near the end, when whole files no longer keep every worker busy
            allow = self.min_tiles if left < len(pool._actors) else None
            return actor.process.remote(plan_ref, i, allow)

        def retry(i, _exc) -> bool:  # outputs are atomic and the marker comes last: safe to redo
            tries[i] += 1
            return tries[i] <= pool.max_task_retries

        with contextlib.closing(_schedule(pool, range(len(inputs)), submit, 1, retry)) as done:
            for i, r, error in done:
                if isinstance(error, ray.exceptions.RayError) and not isinstance(error, ray.exceptions.RayTaskError):
                    r = FileResult(
                        inputs[i],
                        names[i],
                        "failed",
                        error=f"{inputs[i]}: the Ray worker died while processing it, {tries[i]} "
                        f"time(s) ({type(error).__name__}); rerun to retry this file",
                    )
                elif isinstance(error, _NoWorkers):
                    r = FileResult(inputs[i], names[i], "failed", error=f"{inputs[i]}: {error}")
                elif error is not None:  # process() raised (it returns failures: a bug)
                    r = failed_result(inputs[i], names[i], error, time.perf_counter())
                elif isinstance(r, _Deferred):
                    r = run_file(plan, i, tiles=tiles)
                yield i, r


class _NoWorkers(RuntimeError):
    """Every worker died and none may be started any more."""


def _schedule(pool: "RayDetectorPool", tasks, submit, per_actor: int, retry):
    """The one scheduler of this backend: ``tasks`` onto the pool's actors, ``per_actor`` in
    flight on each (``submit(actor, task, tasks_left)`` starts one and returns its ref),
    yielding ``(task, result, error)`` as each finishes; ``error`` is the exception the task
    raised, or None. A task whose worker died (a lost node, a killed process) is started
    again when ``retry(task, exc)`` says so (the dead worker is replaced while the pool's
    ``max_restarts`` allows), else yielded with that error. When no worker is left, every task
    not run is yielded with a :class:`_NoWorkers` error. Closing the generator cancels what is in flight."""
    ray = pool._ray
    pending = deque(tasks)
    inflight: dict = {}
    load: dict = {}
    try:
        while pending or inflight:
            for a in list(pool._actors):
                while pending and load.get(a, 0) < per_actor:
                    task = pending.popleft()
                    inflight[submit(a, task, len(pending))] = (a, task)
                    load[a] = load.get(a, 0) + 1
            if not inflight:
                gone = _NoWorkers("no Ray workers left (all died); see the Ray logs")
                while pending:
                    yield pending.popleft(), None, gone
                return
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                a, task = inflight.pop(ref)
                load[a] -= 1
                try:
                    res = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # the task raised
                    yield task, None, _cause(exc)
                    continue
                except ray.exceptions.RayError as exc:  # the worker died
                    pool._replace(a)
                    if retry(task, exc):
                        pending.appendleft(task)
                        continue
                    yield task, None, exc
                    continue
                yield task, res, None
    finally:
        _cancel(ray, inflight)  # after an error or an interrupt: leave no work queued on the actors


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
    with RayDetectorPool(
        detector, model=model, num_workers=num_workers, cpus_per_worker=cpus_per_worker, address=address
    ) as pool:
        return pool.detect_files(paths, out_dir, tile_parallel_min_tiles=tile_parallel_min_tiles, **options)


__all__ = [
    "RAY_INSTALL_HINT",
    "DEFAULT_TILE_PARALLEL_MIN_TILES",
    "import_ray",
    "RayDetectorPool",
    "RayFileExecutor",
    "detect_files_ray",
]
