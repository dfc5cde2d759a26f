"""Run a detector on an image of any size at the model's working resolution.

The working grid is the level-0 image resampled to the model's mpp (``W_work =
round(W0 * mpp / model_mpp)``). It is cut into overlapping tiles
(:mod:`mitodet.inference.tiling`); each tile's read box is read from the pyramid level
closest to, but not coarser than, the working mpp and resampled on its own (bilinear,
Pillow's sub-pixel ``box``, with a margin so adjacent tiles resample exactly as the whole
image would). Tiles run through the network in batches, and each detection is kept only
by the tile whose core holds its centre. Points come back in the input's level-0 pixels.

Only one batch of tiles is in memory at a time, so memory is bounded whatever the image
size. With a tissue mask (:mod:`mitodet.inference.tissue`), tiles with almost no tissue are
skipped and detections off the tissue are dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from mitodet.checks import check_device, check_mpp, check_threshold, positive_int
from mitodet.config import TISSUE_MODES
from mitodet.data import transforms as T
from mitodet.data.sampler import boxes_to_points
from mitodet.inference.tiling import Tile, make_tiles, merge_tile_detections
from mitodet.runtime import keep_freed_memory

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "weights" / "rdlm-cpu"

THUMBNAIL_MAX_SIDE = 4096
"""Long side of the thumbnail used for overlays of slides and for tissue detection."""


@dataclass(frozen=True)
class Detections:
    """Detections on one image.

    Attributes:
        points: (N, 2) float64 x, y in the input image's level-0 pixels, by descending score.
        scores: (N,) float64 in [0, 1].
        mpp: micrometres per pixel of the input image.
        image_shape: (H, W) of the input image.
        threshold: the threshold already applied (0 when every candidate is kept).
        tissue: the tissue mask used (:class:`~mitodet.inference.tissue.TissueMask`), or None
            when the whole image counted as tissue.
        info: how the run went: ``tiles``, ``tiles_run``, ``tiles_skipped``, ``level``,
            ``level_mpp``, ``n_off_tissue`` (detections dropped off the tissue), ``seconds``,
            and with a second stage ``n_rescored`` (candidates it re-scored) and ``second_stage_seconds``...
        first_scores: (N,) the first stage's (detector's) scores when a second stage
            re-scored the candidates (``scores`` are then the combined scores), else None.
        atypical: (N,) P(atypical) of each detection when the atypical classifier ran
            (:meth:`Detector.classify_atypical`), else None.
    """

    points: np.ndarray
    scores: np.ndarray
    mpp: float
    image_shape: tuple[int, int]
    threshold: float
    tissue: Any = None
    info: dict = field(default_factory=dict, compare=False)
    first_scores: np.ndarray | None = field(default=None, compare=False)
    atypical: np.ndarray | None = field(default=None, compare=False)

    def above(self, threshold: float) -> "Detections":
        keep = self.scores >= threshold
        first = None if self.first_scores is None else self.first_scores[keep]
        return replace(
            self,
            points=self.points[keep],
            scores=self.scores[keep],
            threshold=max(threshold, self.threshold),
            first_scores=first,
            atypical=None if self.atypical is None else self.atypical[keep],
        )

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def points_um(self) -> np.ndarray:
        return self.points * self.mpp


def source_patches(source, points: np.ndarray, mpp: float, cfg) -> np.ndarray:
    """Patches of ``cfg.patch_px`` at ``cfg.mpp`` around level-0 ``points`` of an image source
    whose level-0 pixel size is ``mpp`` (a patch stage's input: second stage, atypical)."""
    from mitodet.models.rescorer import read_patches

    return read_patches(
        lambda x0, y0, x1, y1: source.read_region(0, (x0, y0, x1, y1)),
        source.shape,
        points,
        cfg.patch_px * cfg.mpp / mpp,
        cfg.patch_px,
    )


def resolve_model_dir(model: str | Path | None) -> Path:
    """``None`` / ``"default"`` -> the bundled model; anything else must be a model folder."""
    if model is None or str(model) == "default":
        if not (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"the bundled default model is missing from {DEFAULT_MODEL_DIR}; "
                "reinstall mitodet or pass --model DIR of a model trained with `mitodet train`"
            )
        return DEFAULT_MODEL_DIR
    path = Path(model)
    if not path.is_dir():
        raise FileNotFoundError(
            f"model folder {path} does not exist; pass 'default' or a folder holding model.safetensors and config.json"
        )
    return path


class Detector:
    """A loaded model plus how to run it on images of any size.

    Args:
        model: a :class:`~mitodet.models.detector.MitosisDetector` (eval mode is set).
        threshold: operating score threshold; ``None`` uses the one stored with the model.
        tile_px: tile side at the working resolution.
        overlap_px: tile overlap at the working resolution (default: 2.5x the box size, at
            least 32 px); must exceed the object size.
        batch_size: tiles per forward pass.
        flip_tta: also run the horizontally flipped tile and average the two score maps
            by matching detections (test-time augmentation; ~2x slower).
        model_dir: where the model was loaded from (recorded in summaries).
        rescorer: a second stage (:class:`~mitodet.models.rescorer.Rescorer`) that re-scores
            every candidate on a native-resolution patch; its config's ``threshold`` is then
            the operating threshold (``threshold`` overrides it). :meth:`load` adds the one
            stored in the model folder unless ``second_stage=False``.
        device: ``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"``: where both stages run; a
            device this machine lacks is refused here, before any work.
        backend: ``"torch"`` (default) or ``"onnx"``: the encoder and neck run in ONNX Runtime
            (the ``onnx`` extra), the heads in torch; 1.25x faster per HPF in
            ``benchmarks/speed.py``, outputs within 1e-5 of torch's (``tests/inference/test_fastpath.py``).
    """

    def __init__(
        self,
        model,
        threshold: float | None = None,
        tile_px: int = 512,
        overlap_px: int | None = None,
        batch_size: int = 4,
        flip_tta: bool = False,
        model_dir: str | Path | None = None,
        backend: str = "torch",
        rescorer=None,
        device: str = "cpu",
        atypical=None,
    ) -> None:
        if backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        self.device = check_device(device)
        if self.device != "cpu":
            if backend == "onnx":
                raise ValueError("the ONNX backend runs on the CPU; use backend 'torch' with a CUDA device")
            model = model.to(self.device)
            rescorer = None if rescorer is None else rescorer.to(self.device)
            atypical = None if atypical is None else atypical.to(self.device)
        keep_freed_memory()  # glibc reuses freed tensors: 1.56x per HPF in benchmarks/speed.py (mitodet.runtime)
        self.torch_model = model.eval()  # the GLB heat-map needs the torch neck
        self.backend = backend
        if backend == "onnx":
            try:
                import onnxruntime  # noqa: F401
            except ImportError as exc:
                raise ImportError("the ONNX backend needs ONNX Runtime: pip install 'mitodet[onnx]'") from exc
            from mitodet.inference.fastpath import with_onnx_backbone

            model = with_onnx_backbone(model)
        self.model = model.eval()
        self.config = model.config
        self.rescorer = None if rescorer is None else rescorer.eval()
        self.atypical = None if atypical is None else atypical.eval()
        stored = self.config.score_threshold if rescorer is None else rescorer.config.threshold
        self.threshold = check_threshold(threshold, default=float(stored))
        self.tile_px = int(tile_px)
        box = self.config.box_size_px
        self.overlap_px = int(overlap_px if overlap_px is not None else max(32, round(2.5 * box)))
        if not 0 < self.overlap_px < self.tile_px:
            raise ValueError(f"overlap_px ({self.overlap_px}) must be > 0 and smaller than tile_px ({self.tile_px})")
        self.batch_size = positive_int(batch_size, "batch_size")
        self.flip_tta = flip_tta
        self.model_dir = None if model_dir is None else Path(model_dir)

    @classmethod
    def load(
        cls, model: str | Path | None = "default", second_stage: bool = True, atypical: bool = True, **kwargs
    ) -> "Detector":
        """Load the bundled model (``"default"``) or a model folder written by ``mitodet train``.

        Args:
            model: ``"default"`` or a model folder.
            second_stage: run the folder's second stage (``rescorer/``) when it has one.
            atypical: classify each detection atypical / normal with the folder's
                ``atypical/`` classifier when it has one.
            **kwargs: go to :class:`Detector` (``threshold``, ``tile_px``, ``batch_size``,
                ``device``...).
        """
        from mitodet.models.atypical import has_atypical, load_atypical
        from mitodet.models.io import load_detector
        from mitodet.models.rescorer import has_rescorer, load_rescorer

        path = resolve_model_dir(model)
        rescorer = load_rescorer(path) if second_stage and has_rescorer(path) else None
        classifier = load_atypical(path) if atypical and has_atypical(path) else None
        return cls(load_detector(path), model_dir=path, rescorer=rescorer, atypical=classifier, **kwargs)

    @property
    def mpp(self) -> float:
        """The model's working resolution in micrometres per pixel."""
        return float(self.config.mpp)

    @property
    def has_glb(self) -> bool:
        """Whether the model has the GLB neck (and so a vault layer for the eq. 9 heat-map)."""
        return self.config.glb is not None

    def network(self):
        """The detector network as this backend runs it (the ONNX Runtime copy is built here
        again after the Detector was sent to another process: see :meth:`__getstate__`)."""
        if self.model is None:
            from mitodet.inference.fastpath import with_onnx_backbone

            self.model = with_onnx_backbone(self.torch_model).eval()
        return self.model

    def __getstate__(self) -> dict:
        """Pickled as it is (a Ray worker gets the same Detector), except that an ONNX Runtime
        session does not pickle: it is rebuilt on first use where the Detector lands, with
        that process's thread count."""
        state = self.__dict__.copy()
        if self.backend == "onnx":
            state["model"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        keep_freed_memory()  # as __init__ does, in the process the Detector lands in
        self.__dict__.update(state)

    def working_grid(self, shape_hw: tuple[int, int], mpp: float) -> tuple[int, int]:
        """(height, width) of an image of ``shape_hw`` level-0 px at ``mpp`` on the working grid."""
        s = check_mpp(mpp) / self.mpp
        h0, w0 = shape_hw
        return max(1, round(h0 * s)), max(1, round(w0 * s))

    def tiles_for(self, shape_hw: tuple[int, int], mpp: float) -> list[Tile]:
        """Every tile of the working grid of an image of ``shape_hw`` level-0 px at ``mpp``."""
        hw, ww = self.working_grid(shape_hw, mpp)
        return make_tiles(hw, ww, self.tile_px, self.overlap_px, min_overlap=int(np.ceil(self.config.box_size_px)))

    @torch.inference_mode()
    def predict_working(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Run the network on images already at the working resolution.

        Returns, per image, (points (N, 2) x, y in that image's pixels, scores (N,)).
        """
        # torch.tensor copies, so read-only arrays (e.g. from Pillow) are fine
        tensors = [
            torch.tensor(np.ascontiguousarray(im)).permute(2, 0, 1).to(self.device).float().div_(255.0) for im in images
        ]
        net = self.network()
        outs = [{k: v.cpu() for k, v in o.items()} for o in net(tensors)]
        res = [(boxes_to_points(o["boxes"].numpy()), o["scores"].numpy().astype(np.float64)) for o in outs]
        if self.flip_tta:
            flipped = [{k: v.cpu() for k, v in o.items()} for o in net([t.flip(-1) for t in tensors])]
            res = [
                _merge_flip(r, o, im.shape[1], self.config.box_size_px / 2) for r, o, im in zip(res, flipped, images)
            ]
        return res

    # ------------------------------------------------------------------ public entry points

    def detect_array(
        self, image: np.ndarray, mpp: float, threshold: float | None = None, progress: bool = False, tissue: str = "off"
    ) -> Detections:
        """Detect mitoses in an (H, W, 3) uint8 RGB image of pixel size ``mpp`` (um/px).

        Args:
            image: (H, W, 3) uint8 RGB.
            mpp: micrometres per pixel of ``image``.
            threshold: score threshold (None: the model's operating threshold; 0: every candidate).
            progress: show a tqdm bar over tile batches.
            tissue: ``"off"`` (default: the whole image is tissue), ``"on"`` (detect tissue,
                skip background tiles, drop detections off tissue).
        """
        from mitodet.inference.slide import ArraySource

        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            shape = getattr(image, "shape", None)
            raise ValueError(
                f"expected an (H, W, 3) uint8 RGB image, got {shape} {getattr(image, 'dtype', type(image))}"
            )
        if tissue not in ("on", "off"):
            raise ValueError(f"tissue must be 'on' or 'off' for an array, got {tissue!r}")
        return self.detect_source(
            ArraySource(image), check_mpp(mpp), threshold=threshold, progress=progress, tissue=tissue
        )

    def detect_path(
        self,
        path: str | Path,
        mpp: float | None = None,
        threshold: float | None = None,
        tissue: str = "auto",
        progress: bool = False,
        reader: str = "auto",
    ) -> Detections:
        """Detect mitoses in an HPF image (PNG, JPEG, TIFF) or a whole-slide image.

        Args:
            path: the image file.
            mpp: micrometres per level-0 pixel; overrides the file's metadata. None: read it
                from the file (refused with :class:`~mitodet.inference.slide.MissingMppError`
                when the file has none).
            threshold: score threshold (None: the model's; 0: every candidate).
            tissue: ``"auto"`` (tissue detection for slides only), ``"on"`` or ``"off"``.
            progress: show a tqdm bar over tile batches.
            reader: ``"auto"``, ``"openslide"`` or ``"tifffile"`` (see :func:`~mitodet.inference.slide.open_image`).
        """
        from mitodet.inference.slide import open_image, resolve_mpp

        with open_image(path, reader=reader) as src:
            m, source = resolve_mpp(path, src.pixel_size, mpp)
            det = self.detect_source(src, m, threshold=threshold, tissue=tissue, progress=progress)
            det.info.update(mpp_source=source, source=src.describe())
            return det

    def detect_source(
        self,
        source,
        mpp: float,
        threshold: float | None = None,
        tissue: str = "auto",
        progress: bool = False,
        thumbnail: tuple[np.ndarray, tuple[float, float]] | None = None,
        tissue_mask=None,
    ) -> Detections:
        """Detect mitoses in an open :class:`~mitodet.inference.slide.ImageSource`.

        The three steps are public so that other executors (the Ray backend) run the same
        code: :meth:`plan_tiles`, :meth:`run_batch` on each of ``plan.batches``, :meth:`merge`.

        Args:
            source: the image.
            mpp: micrometres per level-0 pixel.
            threshold: as in :meth:`detect_path`.
            tissue: ``"auto"`` (on for slides, off for HPF images), ``"on"`` or ``"off"``.
            progress: tqdm bar over tile batches.
            thumbnail: ``(thumb, (dx, dy))`` from :func:`~mitodet.inference.slide.read_thumbnail`,
                to avoid reading it twice (used for tissue detection).
            tissue_mask: a ready :class:`~mitodet.inference.tissue.TissueMask` (overrides ``tissue``).
        """
        t_start = time.perf_counter()
        check_threshold(threshold)
        plan = self.plan_tiles(source, mpp, tissue=tissue, thumbnail=thumbnail, tissue_mask=tissue_mask)
        per_tile: list[tuple[np.ndarray, np.ndarray]] = []
        for batch in _progress(plan.batches, progress):
            per_tile.extend(self.run_batch(source, plan, batch))
        return self.merge(source, plan, per_tile, threshold=threshold, t_start=t_start)

    def plan_tiles(
        self,
        source,
        mpp: float,
        tissue: str = "auto",
        thumbnail: tuple[np.ndarray, tuple[float, float]] | None = None,
        tissue_mask=None,
    ) -> "TilePlan":
        """The working grid of ``source``, its tiles, the batches to run and the tissue mask.

        Args: as for :meth:`detect_source`.
        """
        from mitodet.inference.slide import best_level, read_thumbnail
        from mitodet.inference.tissue import MIN_TILE_TISSUE_FRACTION

        mpp = check_mpp(mpp)
        if tissue not in TISSUE_MODES:
            _bad_tissue(tissue)
        h0, w0 = source.shape
        mask = tissue_mask
        if mask is None and (tissue == "on" or (tissue == "auto" and source.kind == "wsi")):
            thumb, (dx, dy) = thumbnail if thumbnail is not None else read_thumbnail(source, THUMBNAIL_MAX_SIDE)
            mask = tissue_from_thumbnail(thumb, dx * mpp, (h0, w0))

        # the working grid and the level it is read from
        hw, ww = self.working_grid((h0, w0), mpp)
        sx, sy = ww / w0, hw / h0
        level = best_level(source, self.mpp / mpp)
        ldx, ldy = source.level_downsample(level)
        fx, fy = 1.0 / (sx * ldx), 1.0 / (sy * ldy)  # level pixels per working pixel

        tiles = self.tiles_for((h0, w0), mpp)
        run: list[Tile] = []
        for t in tiles:
            if mask is not None:
                x0, y0, x1, y1 = t.read
                if mask.fraction((x0 / sx, y0 / sy, x1 / sx, y1 / sy)) < MIN_TILE_TISSUE_FRACTION:
                    continue
            run.append(t)
        n = self.batch_size
        batches = [run[i : i + n] for i in range(0, len(run), n)]
        return TilePlan(tiles, run, batches, mask, float(mpp), level, (fx, fy), (sx, sy), (hw, ww), mpp * ldx)

    def run_batch(self, source, plan: "TilePlan", batch: Sequence[Tile]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Read one batch of ``plan``'s tiles from ``source`` and run the network.

        Returns:
            ``[(points, scores)]`` per tile, points (N, 2) x, y in working-grid pixels.
        """
        from mitodet.inference.slide import resize_region

        fx, fy = plan.scale
        crops = []
        for t in batch:
            x0, y0, x1, y1 = t.read
            crops.append(resize_region(source, plan.level, (x0 * fx, y0 * fy, x1 * fx, y1 * fy), (x1 - x0, y1 - y0)))
        return [(t.to_image(pts), sc) for t, (pts, sc) in zip(batch, self.predict_working(crops))]

    def merge(
        self,
        source,
        plan: "TilePlan",
        per_tile: Sequence[tuple[np.ndarray, np.ndarray]],
        threshold: float | None = None,
        t_start: float | None = None,
        extra_info: dict | None = None,
    ) -> Detections:
        """Merge the detections of every tile of ``plan.run`` (in that order) into :class:`Detections`.

        Each detection is kept by the tile whose core holds it; points go back to level-0
        pixels, those off the tissue are dropped, the rest sorted by score and thresholded.
        """
        from mitodet.inference.tissue import KEEP_MARGIN_UM

        thr = check_threshold(threshold, default=self.threshold)
        if len(per_tile) != len(plan.run):
            raise ValueError(f"expected one result per tile run ({len(plan.run)}), got {len(per_tile)}")
        pts, sc = merge_tile_detections((t, p, s) for t, (p, s) in zip(plan.run, per_tile))
        sx, sy = plan.working_to_level0
        # back to level-0 pixels (pixel-centre convention)
        if len(pts):
            pts = np.stack([(pts[:, 0] + 0.5) / sx - 0.5, (pts[:, 1] + 0.5) / sy - 0.5], axis=1)
        n_off = 0
        if plan.mask is not None and len(pts):
            keep = plan.mask.contains(pts, margin_px=KEEP_MARGIN_UM / plan.mpp)
            n_off = int((~keep).sum())
            pts, sc = pts[keep], sc[keep]
        first, t_second = None, 0.0
        if self.rescorer is not None:
            t2 = time.perf_counter()
            pts, first, sc = self.rescore(source, pts, sc, plan.mpp)
            t_second = time.perf_counter() - t2
        order = np.argsort(-sc, kind="stable")
        info = {
            "tiles": len(plan.tiles),
            "tiles_run": len(plan.run),
            "tiles_skipped": len(plan.tiles) - len(plan.run),
            "tile_px": self.tile_px,
            "overlap_px": self.overlap_px,
            "working_mpp": self.mpp,
            "working_shape": list(plan.working_shape),
            "level": plan.level,
            "level_mpp": plan.level_mpp,
            "n_off_tissue": n_off,
            "n_candidates": int(len(sc)),
            "seconds": 0.0 if t_start is None else time.perf_counter() - t_start,
            **(extra_info or {}),
        }
        if first is not None:
            info.update(n_rescored=int(len(first)), second_stage_seconds=t_second)
        h0, w0 = source.shape
        det = Detections(
            pts[order].reshape(-1, 2),
            sc[order],
            plan.mpp,
            (int(h0), int(w0)),
            0.0,
            plan.mask,
            info,
            None if first is None else first[order],
        )
        return det.above(thr)

    def rescore(
        self, source, points: np.ndarray, scores: np.ndarray, mpp: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The second stage: candidates (level-0 ``points``, first-stage ``scores``) of ``source``
        (level-0 pixel size ``mpp``) -> (points, first-stage scores, combined scores) of the
        candidates scoring at least the rescorer's ``min_candidate_score``."""
        from mitodet.models.rescorer import combine_scores

        cfg = self.rescorer.config
        keep = scores >= cfg.min_candidate_score
        points, scores = points[keep], scores[keep]
        second = self.rescorer.probabilities(source_patches(source, points, mpp, cfg))
        return points, scores, combine_scores(scores, second, cfg.combine)

    def classify_atypical(self, source, points: np.ndarray, mpp: float) -> np.ndarray:
        """P(atypical) of each level-0 point of ``source`` (level-0 pixel size ``mpp``), from a
        patch read at the classifier's own resolution; (N,) float64."""
        if self.atypical is None:
            raise ValueError("this model folder has no atypical classifier (atypical/)")
        if not len(points):
            return np.zeros(0)
        return self.atypical.probabilities(source_patches(source, points, mpp, self.atypical.config))

    @torch.inference_mode()
    def glb_activation(
        self, image: np.ndarray, mpp: float, layer: str = "vault", max_working_px: int = 4096 * 4096
    ) -> np.ndarray:
        """The channel-mean activation of the GLB vault (or a gain) layer for eq. 9.

        Args:
            image: (H, W, 3) uint8 RGB at ``mpp``; it is resampled to the working mpp.
            mpp: micrometres per pixel of ``image``.
            layer: ``"vault"`` or ``"gainN"``.
            max_working_px: refuse images larger than this at the working resolution.

        Returns:
            (h, w) float array (stride 4 of the working grid); resize it to the image with
            :func:`mitodet.report.viz.heatmap_overlay`.

        Raises:
            ValueError: the model has no GLB, or the image is too large.
        """
        if not self.has_glb:
            raise ValueError(f"the model ({self.config.preset}) has no GLB neck, so there is no vault layer to show")
        mpp = check_mpp(mpp)
        s = mpp / self.mpp
        if image.shape[0] * image.shape[1] * s * s > max_working_px:
            raise ValueError(
                f"image of {image.shape[1]} x {image.shape[0]} px is too large for a heat-map "
                f"(more than {max_working_px} px at the working resolution)"
            )
        work, _ = T.resample(image, np.zeros((0, 2)), s)
        tensor = torch.tensor(np.ascontiguousarray(work)).permute(2, 0, 1).to(self.device).float().div_(255.0)
        act = self.torch_model.glb_activation(tensor, layer=layer).cpu().numpy().astype(np.float64)
        # the network pads the image to a multiple of size_divisible: cut the padding off
        div = int(getattr(self.torch_model.transform, "size_divisible", 1) or 1)
        h, w = work.shape[:2]
        hp, wp = -(-h // div) * div, -(-w // div) * div
        ah, aw = act.shape
        return act[: max(1, int(np.ceil(ah * h / hp))), : max(1, int(np.ceil(aw * w / wp)))]


@dataclass(frozen=True)
class TilePlan:
    """How :meth:`Detector.detect_source` tiles one image (from :meth:`Detector.plan_tiles`).

    Attributes:
        tiles: every tile of the working grid (working-resolution pixels).
        run: the tiles to run (those with tissue), in row-major order.
        batches: ``run`` cut into batches of ``detector.batch_size``.
        mask: the tissue mask (:class:`~mitodet.inference.tissue.TissueMask`) or None.
        mpp: micrometres per level-0 pixel of the image.
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
    mpp: float
    level: int
    scale: tuple[float, float]
    working_to_level0: tuple[float, float]
    working_shape: tuple[int, int]
    level_mpp: float


def tissue_from_thumbnail(
    thumb: np.ndarray, thumb_mpp: float, image_shape: tuple[int, int], min_cell_um: float = 4.0, max_side: int = 2048
):
    """Tissue mask from a thumbnail, computed on a grid of at least ``min_cell_um`` cells."""
    from PIL import Image

    from mitodet.inference.tissue import detect_tissue

    th, tw = thumb.shape[:2]
    f = max(1.0, min_cell_um / thumb_mpp, max(th, tw) / float(max_side))
    if f > 1.0:
        nw, nh = max(1, round(tw / f)), max(1, round(th / f))
        small = np.asarray(Image.fromarray(thumb).resize((nw, nh), Image.Resampling.BOX), dtype=np.uint8)
        cell_um = thumb_mpp * tw / nw
    else:
        small, cell_um = thumb, thumb_mpp
    return detect_tissue(small, cell_um, image_shape)


def _bad_tissue(value) -> str:
    raise ValueError(f"tissue must be one of {TISSUE_MODES}, got {value!r}")


def _progress(batches: list, progress: bool) -> Iterable:
    if progress and len(batches) > 1:
        from tqdm import tqdm

        return tqdm(batches, desc="tiles", unit="batch", leave=False, disable=None)
    return batches


def _merge_flip(res, flipped_out, width: int, radius: float):
    """Average scores of the plain and the h-flipped pass; unmatched detections keep half."""
    from mitodet.evaluation.matching import match_points

    p1, s1 = res
    p2 = boxes_to_points(flipped_out["boxes"].numpy())
    s2 = flipped_out["scores"].numpy().astype(np.float64)
    if len(p2):
        p2[:, 0] = width - 1 - p2[:, 0]
    m = match_points(p1, p2, radius)
    g, q = m.pairs[:, 0], m.pairs[:, 1]
    alone1, alone2 = ~m.matched_gt, ~m.matched_pred
    pts = np.concatenate([(p1[g] + p2[q]) / 2, p1[alone1], p2[alone2]]).reshape(-1, 2)
    sc = np.concatenate([(s1[g] + s2[q]) / 2, s1[alone1] / 2, s2[alone2] / 2])
    return pts.astype(np.float64), sc.astype(np.float64)
