"""Training the second stage (:mod:`mitodet.models.rescorer`) on mined candidates.

1. **Records**: the detector's own data spec plus the mitosis-only crop sets
   (``positive_sources``: AtNorM-Br, AtNorM-MD), split by slide exactly as the detector's
   training split them, so its validation slides stay unseen by both stages.
2. **Mining** (:func:`mine_candidates`): the first stage runs on every training image and
   keeps every candidate scoring >= ``mine_score``; cached in ``<out>/candidates.npz``
   (keyed by the detector's weights), so leave-one-lab-out runs mine once.
3. **Samples**: every labelled mitosis is a positive (jittered by up to ``jitter_um``, the
   first stage's localisation error); negatives are the labelled look-alikes and the
   first stage's candidates farther than ``negative_radius_um`` from every mitosis on images
   whose labels are complete (AMi-Br crops, the look-alike patch sets), at most
   ``max_negatives_per_image`` of them (the highest-scoring: the hardest); and, with
   ``dark_blob_negatives`` > 0, that many of the darkest haematoxylin blobs (compact nuclei,
   :func:`dark_blobs`) farther than ``negative_radius_um`` from every mitosis on those
   images, whether the detector fired there or not. Candidates on the
   mitosis-only sets (AtNorM) are unlabelled and never used.
4. **Training**: AdamW, cosine schedule, flips / 90-degree rotations / HED jitter /
   brightness-contrast, classes weighted to balance; optionally (off by default, compared
   in ``benchmarks/generalisation.py``) Fourier amplitude mixing with another image's patch
   (``fourier_mix``), random stain matrices (``stain_matrix_sigma``) and HSV jitter.
5. **Threshold**: whole-field F1 (:mod:`mitodet.evaluation.wholefield`) on the validation
   slides' label-complete crops (held-out labs excluded: they are for testing).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mitodet.checks import atomic_save
from mitodet.data.records import ImageRecord
from mitodet.models.rescorer import Rescorer, RescorerConfig, array_reader, read_patches, save_rescorer

#: mitosis-only crop sets used as extra positives (class by folder, the mitosis at the centre)
DEFAULT_POSITIVE_SOURCES: tuple[dict, ...] = (
    {"reader": "atnorm", "root": "${MITODET_DATA}/atnorm_br"},
    {"reader": "atnorm", "root": "${MITODET_DATA}/atnorm_md"},
)
#: look-alike patch sets: small patches whose only mitosis, if any, is the labelled one at the
#: centre, so a candidate away from it is a negative (their mitosis crops of unknown
#: position are dropped before)
COMPLETE_PATCH_SOURCES = ("tupac16_patches", "mitos_atypia14_patches")


@dataclass(frozen=True)
class RescorerTrainConfig:
    """The second stage's recipe (``configs/rescorer.json`` holds the shipped one)."""

    rescorer: RescorerConfig = field(default_factory=RescorerConfig)
    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 0
    mine_score: float = 0.05
    negative_radius_um: float = 8.0
    max_negatives_per_image: int = 6
    dark_blob_negatives: int = 0
    jitter_um: float = 2.0
    hed_sigma: float = 0.15
    hed_bias: float = 0.1
    brightness: float = 0.15
    contrast: float = 0.15
    stain_matrix_sigma: float = 0.0
    hsv_hue: float = 0.0
    hsv_saturation: float = 0.0
    fourier_mix: float = 0.0
    fourier_beta: float = 0.1
    exclude_labs: tuple[str, ...] = ()
    positive_sources: tuple[dict, ...] = DEFAULT_POSITIVE_SOURCES
    density_per_mm2: float = 10.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RescorerTrainConfig":
        if not isinstance(d, dict):
            raise ValueError(f"the rescorer config must be a JSON object, got {d!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown rescorer training settings {unknown}; known: {sorted(known)}")
        d = dict(d)
        if "rescorer" in d:
            d["rescorer"] = RescorerConfig.from_dict(d["rescorer"])
        for k in ("exclude_labs", "positive_sources"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["exclude_labs"], d["positive_sources"] = list(self.exclude_labs), list(self.positive_sources)
        return d


def split_records(spec, cfg: RescorerTrainConfig) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """(train, val) records: the detector's spec + the positive sources, split by slide as
    the detector's training split them; records of unknown mitosis position are dropped, and
    unlabelled images (``ImageRecord.labelled`` False) after the split (so it is unchanged)."""
    from mitodet.data.sampler import split_by_slide
    from mitodet.data.spec import read_sources

    records = read_sources(list(spec.sources) + list(cfg.positive_sources), spec.base)
    records = [r for r in records if not r.extra.get("position_unknown")]
    train, val = split_by_slide(records, spec.val_fraction, spec.split_seed)
    return [r for r in train if r.labelled], [r for r in val if r.labelled]


def _image(rec: ImageRecord, mpp: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The record's image, resampled to ``mpp`` when it differs by more than 2 %."""
    from mitodet.data import transforms as T
    from mitodet.data.images import read_rgb

    img = read_rgb(rec.image)
    if abs(rec.mpp / mpp - 1) > 0.02:
        img, pts = T.resample(img, rec.points, rec.mpp / mpp)
        return img, pts, mpp
    return img, rec.points, rec.mpp


def mine_candidates(
    detector, records: Sequence[ImageRecord], cache: Path | None = None, progress: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """First-stage candidates (level-0 points, scores) of every record's image, by path.

    ``detector`` must run without a second stage. With ``cache``, results are read from and
    added to that ``.npz`` (keyed by the detector's weights digest), so a rerun mines only
    what is missing.
    """
    from mitodet.data.images import read_rgb

    if detector.rescorer is not None:
        raise ValueError("mine with the first stage alone (Detector.load(..., second_stage=False))")
    key = _detector_key(detector)
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if cache is not None and cache.is_file():
        cached_key, cached = read_candidates(cache)
        if cached_key == key:
            found = cached
    todo = [r for r in records if str(r.image) not in found]
    it = todo
    if progress and todo:
        from tqdm import tqdm

        it = tqdm(todo, desc="mining candidates", unit="image", dynamic_ncols=True)
    for n, rec in enumerate(it):
        det = detector.detect_array(read_rgb(rec.image), rec.mpp, threshold=0.0)
        found[str(rec.image)] = (det.points.astype(np.float32), det.scores.astype(np.float32))
        if cache is not None and ((n + 1) % 2000 == 0 or n + 1 == len(todo)):
            _save_cache(cache, key, found)
    return found


def read_candidates(path: Path) -> tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``(detector key, {image path: (points, scores)})`` of a candidates file written by
    :func:`mine_candidates`; a file that is not one raises ``ValueError`` naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return str(z["key"]), {str(n): (z[f"p{i}"], z[f"s{i}"]) for i, n in enumerate(z["names"])}
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(
            f"{path}: not a candidates file of `mitodet train-rescorer` ({exc}); mine it again (delete it and rerun)"
        ) from None


def far_candidates(
    points: np.ndarray,
    scores: np.ndarray,
    away_from: np.ndarray,
    mpp: float,
    radius_um: float,
    min_score: float,
    k: int,
) -> np.ndarray:
    """The ``k`` best mined candidates (by descending score) scoring at least ``min_score``
    that lie farther than ``radius_um`` from every point of ``away_from`` (the same pixels,
    ``mpp`` um each): the mined negatives of an image, for the second stage and the detector."""
    pts, sc = np.asarray(points, np.float64).reshape(-1, 2), np.asarray(scores, np.float64)
    keep = sc >= min_score
    pts, sc = pts[keep], sc[keep]
    if len(pts) and len(away_from):
        d = np.hypot(pts[:, None, 0] - away_from[None, :, 0], pts[:, None, 1] - away_from[None, :, 1]).min(axis=1)
        far = d * mpp > radius_um
        pts, sc = pts[far], sc[far]
    return pts[np.argsort(-sc, kind="stable")][:k]


def _detector_key(detector) -> str:
    from mitodet.inference.pipeline import model_fingerprint

    return model_fingerprint(detector)


def _save_cache(path: Path, key: str, found: dict) -> None:
    names = sorted(found)
    arrays = {"key": np.array(key), "names": np.array(names)}
    for i, n in enumerate(names):
        arrays[f"p{i}"], arrays[f"s{i}"] = found[n]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(path, lambda tmp: np.savez(tmp, **arrays), suffix=".npz")


@dataclass
class Samples:
    """Training samples: per image (in memory, at the rescorer's mpp), the centres and labels."""

    images: list[np.ndarray]
    image_index: np.ndarray  # (N,)
    centres: np.ndarray  # (N, 2) x, y in that image's pixels
    labels: np.ndarray  # (N,) 1 mitosis, 0 not
    mpp: float

    def counts(self) -> dict[str, int]:
        return {
            "images": len(self.images),
            "positives": int(self.labels.sum()),
            "negatives": int((self.labels == 0).sum()),
        }


def dark_blobs(image: np.ndarray, mpp: float, k: int, min_area_um2: float = 12.0) -> np.ndarray:
    """Centres (x, y) of the ``k`` darkest haematoxylin blobs of an RGB image, darkest first.

    Haematoxylin optical density by colour deconvolution (Ruifrok & Johnston, the matrix of
    :mod:`mitodet.data.transforms`); blobs = connected regions above the image's 90th
    percentile of at least ``min_area_um2``; ranked by their mean density.
    """
    from scipy import ndimage

    from mitodet.data.transforms import HED_FROM_RGB

    if k <= 0:
        return np.zeros((0, 2))
    od = -np.log(np.maximum(image.astype(np.float32) / 255.0, 1e-3))
    h = od.reshape(-1, 3) @ HED_FROM_RGB.astype(np.float32)
    h = h[:, 0].reshape(image.shape[:2])
    tissue = image.max(axis=2) > 8  # not the black padding of border crops
    if not tissue.any():
        return np.zeros((0, 2))
    mask = (h > np.percentile(h[tissue], 90)) & tissue
    lab, n = ndimage.label(mask)
    if n == 0:
        return np.zeros((0, 2))
    idx = np.arange(1, n + 1)
    area = ndimage.sum(mask, lab, idx) * mpp * mpp
    dens = ndimage.mean(h, lab, idx)
    com = np.asarray(ndimage.center_of_mass(mask, lab, idx), dtype=np.float64).reshape(-1, 2)[:, ::-1]
    ok = area >= min_area_um2
    order = np.argsort(-dens[ok], kind="stable")
    return com[ok][order][:k]


def build_samples(
    records: Sequence[ImageRecord], candidates: dict, cfg: RescorerTrainConfig, progress: bool = True
) -> Samples:
    """Positives, labelled look-alikes and mined negatives of ``records`` (see the module doc)."""
    from mitodet.evaluation.wholefield import label_complete

    rmpp = cfg.rescorer.mpp
    images, idx, centres, labels = [], [], [], []
    it = records
    if progress:
        from tqdm import tqdm

        it = tqdm(records, desc="loading patches", unit="image", dynamic_ncols=True)
    for rec in it:
        img, pts, mpp = _image(rec, rmpp)
        scale = rec.mpp / mpp
        mit = pts[rec.labels == 1]
        neg = [pts[rec.labels == 0]]
        negatives_valid = label_complete(rec) or rec.source in COMPLETE_PATCH_SOURCES
        if negatives_valid and str(rec.image) in candidates:
            cp, cs = candidates[str(rec.image)]
            neg.append(
                far_candidates(
                    np.asarray(cp, np.float64) * scale,
                    cs,
                    mit,
                    mpp,
                    cfg.negative_radius_um,
                    cfg.mine_score,
                    cfg.max_negatives_per_image,
                )
            )
        if negatives_valid and cfg.dark_blob_negatives > 0:
            blobs = dark_blobs(img, mpp, 4 * cfg.dark_blob_negatives)
            if len(blobs) and len(mit):
                d = np.hypot(blobs[:, None, 0] - mit[None, :, 0], blobs[:, None, 1] - mit[None, :, 1]).min(axis=1)
                blobs = blobs[d * mpp > cfg.negative_radius_um]
            neg.append(blobs[: cfg.dark_blob_negatives])
        neg_a = np.concatenate(neg) if neg else np.zeros((0, 2))
        if not len(mit) and not len(neg_a):
            continue
        k = len(images)
        images.append(img)
        for arr, lab in ((mit, 1), (neg_a, 0)):
            if len(arr):
                idx.append(np.full(len(arr), k))
                centres.append(arr)
                labels.append(np.full(len(arr), lab))
    return Samples(images, np.concatenate(idx), np.concatenate(centres), np.concatenate(labels).astype(np.int64), rmpp)


def _batch(
    samples: Samples, which: np.ndarray, cfg: RescorerTrainConfig, rng: np.random.Generator | None
) -> torch.Tensor:
    from mitodet.data import transforms as T

    p = cfg.rescorer.patch_px
    out = np.empty((len(which), p, p, 3), dtype=np.uint8)
    jitter = cfg.jitter_um / samples.mpp
    for j, i in enumerate(which):
        img = samples.images[samples.image_index[i]]
        c = samples.centres[i].copy()
        if rng is not None and jitter > 0:
            c += rng.uniform(-jitter, jitter, size=2)
        patch = read_patches(array_reader(img), img.shape[:2], c[None], p, p)[0]
        if rng is not None:
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            patch = np.rot90(patch, int(rng.integers(4)))
            patch = np.ascontiguousarray(patch)
            if cfg.fourier_mix > 0 and rng.random() < cfg.fourier_mix:  # another image's spectrum
                k = int(rng.integers(len(samples.labels)))
                o_img = samples.images[samples.image_index[k]]
                other = read_patches(array_reader(o_img), o_img.shape[:2], samples.centres[k][None], p, p)[0]
                patch = T.fourier_amplitude_mix(patch, other, rng, cfg.fourier_beta)
            if cfg.stain_matrix_sigma > 0:
                patch = T.stain_matrix_jitter(patch, rng, cfg.stain_matrix_sigma)
            patch = T.hed_jitter(patch, rng, cfg.hed_sigma, cfg.hed_bias)
            if cfg.hsv_hue > 0 or cfg.hsv_saturation > 0:
                patch = T.hsv_jitter(patch, rng, cfg.hsv_hue, cfg.hsv_saturation)
            patch = T.brightness_contrast(patch, rng, cfg.brightness, cfg.contrast)
        out[j] = patch
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


def fit(
    samples: Samples,
    cfg: RescorerTrainConfig,
    weights_backbone: str | Path | None,
    log: Path | None = None,
    progress: bool = True,
) -> Rescorer:
    """Train a :class:`Rescorer` on ``samples``; one JSON line per epoch in ``log``."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = Rescorer(cfg.rescorer, weights_backbone)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(samples.labels)
    steps_per_epoch = max(1, n // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.1)
    pos = max(1, int(samples.labels.sum()))
    pos_weight = torch.tensor((n - pos) / pos, dtype=torch.float32)
    labels = torch.from_numpy(samples.labels).float()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="train rescorer", unit="step", dynamic_ncols=True)
    t0 = time.time()
    model.train()
    for epoch in range(cfg.epochs):
        order = rng.permutation(n)
        losses = []
        for s in range(steps_per_epoch):
            which = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            x = _batch(samples, which, cfg, rng)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), labels[which], pos_weight=pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses[-50:]):.3f}")
        if log is not None:
            with open(log, "a") as f:
                f.write(
                    json.dumps({"epoch": epoch + 1, "loss": float(np.mean(losses)), "elapsed_s": time.time() - t0})
                    + "\n"
                )
    if bar is not None:
        bar.close()
    return model.eval()


def train_rescorer(
    detector_dir: str | Path,
    out: str | Path,
    cfg: RescorerTrainConfig,
    spec=None,
    weights_backbone: str | Path | None = None,
    progress: bool = True,
    candidates_cache: str | Path | None = None,
    records: tuple[list[ImageRecord], list[ImageRecord]] | None = None,
) -> dict[str, Any]:
    """Mine, train and calibrate a second stage for the detector in ``detector_dir``.

    Writes ``<out>/model`` (the detector's files + ``rescorer/``), ``<out>/metrics.jsonl``,
    ``<out>/candidates.npz`` (or ``candidates_cache``, which runs can share) and
    ``<out>/summary.json``; returns the summary. ``records``: (train, val) instead of the
    spec's split (a benchmark's subsets).

    The threshold is chosen by whole-field F1 on the label-complete crops of the validation
    slides, of the labs the run trained on: with ``exclude_labs`` the held-out labs are
    never used to choose it, so that a table can say how it holds on a lab never seen.
    """
    from mitodet.data.spec import load_spec, training_data
    from mitodet.evaluation import wholefield as W
    from mitodet.inference.predictor import Detector, resolve_model_dir

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    detector_dir = resolve_model_dir(detector_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if spec is None:
        spec = load_spec(training_data(detector_dir))
    t0 = time.time()
    train_rec, val_rec = records if records is not None else split_records(spec, cfg)
    train_rec = [r for r in train_rec if W.lab_group(r) not in cfg.exclude_labs]
    first = Detector.load(detector_dir, second_stage=False)
    cache = Path(candidates_cache) if candidates_cache is not None else out / "candidates.npz"
    cands = mine_candidates(first, train_rec, cache=cache, progress=progress)
    t_mine = time.time() - t0
    samples = build_samples(train_rec, cands, cfg, progress=progress)
    model = fit(samples, cfg, weights_backbone, log=out / "metrics.jsonl", progress=progress)
    t_fit = time.time() - t0 - t_mine
    # calibrate: whole-field F1 on the validation slides' label-complete crops
    calib = [r for r in val_rec if W.label_complete(r) and W.lab_group(r) not in cfg.exclude_labs]
    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(detector_dir, model_dir, ignore=shutil.ignore_patterns("rescorer", "snapshots"))
    save_rescorer(model, model_dir, cfg.rescorer, extra={"training": cfg.to_dict()})
    det = Detector.load(model_dir)
    res = W.collect(det, calib, progress=progress)
    thr = W.best_threshold(W.sweep(res), cfg.density_per_mm2)
    save_rescorer(
        model,
        model_dir,
        cfg.rescorer.replace(threshold=thr),
        extra={
            "training": cfg.to_dict(),
            "samples": samples.counts(),
            "threshold_rule": f"whole-field F1 at {cfg.density_per_mm2:g} mitoses/mm2 on {len(calib)} label-complete validation crops"
            + (f" (labs {list(cfg.exclude_labs)} held out of training and calibration)" if cfg.exclude_labs else ""),
        },
    )
    summary = {
        "threshold": thr,
        "samples": samples.counts(),
        "train_records": len(train_rec),
        "calibration_records": len(calib),
        "mine_seconds": t_mine,
        "fit_seconds": t_fit,
        "exclude_labs": list(cfg.exclude_labs),
        "seed": cfg.seed,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
