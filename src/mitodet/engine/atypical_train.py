"""Training and benchmarking the atypical-mitosis classifier (:mod:`mitodet.models.atypical`).

The protocol is that of the AMi-Br benchmark (Banerjee et al., arXiv 2506.21444;
``DeepMicroscopy/AMi-Br_Benchmark``): train on AMi-Br, five folds of a slide-grouped,
class-stratified split (``StratifiedGroupKFold(5, shuffle=True, random_state=42)``), the best
epoch of each fold by validation balanced accuracy; test every fold's model on the AMi-Br test
crops and on the two hold-out sets AtNorM-Br (TCGA) and AtNorM-MD (MIDOG++); report balanced
accuracy at probability 0.5 and AUROC, mean and spread over the five folds. Two departures,
both stated in the table: the benchmark's own AMi-Br train/test file list is not in
``../shared/data``, so the AMi-Br test set here is the first of five slide-grouped stratified
folds of all AMi-Br (seed 42, 20 %), the rest being the training part; and the recipe is ours
(MobileNetV2 from ImageNet on 112 px of the 128 px crops, CPU-sized), not their GPU backbones.

The AtNorM sets are test sets only: no model trained here sees them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mitodet.models.atypical import AtypicalClassifier, AtypicalConfig, load_atypical, save_atypical

UNANIMOUS_NOTE = "AMi-Br: both experts' labels agree with the consensus; AtNorM-MD: all five votes agree"


@dataclass(frozen=True)
class AtypicalTrainConfig:
    """The recipe (``configs/atypical.json`` holds the shipped one)."""

    atypical: AtypicalConfig = field(default_factory=AtypicalConfig)
    epochs: int = 12
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-4
    patience: int = 4  # epochs without a better validation balanced accuracy before stopping
    seed: int = 0
    hed_sigma: float = 0.05
    hed_bias: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    folds: int = 5
    split_seed: int = 42

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "folds"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AtypicalTrainConfig":
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown atypical training settings {unknown}; known: {sorted(known)}")
        if "atypical" in d:
            d["atypical"] = AtypicalConfig.from_dict(d["atypical"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_config(path: str | Path | None) -> AtypicalTrainConfig:
    if path is None:
        return AtypicalTrainConfig()
    p = Path(path)
    try:
        return AtypicalTrainConfig.from_dict(json.loads(p.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ValueError(f"{p}: no such config; see configs/atypical.json") from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{p}: not a JSON atypical training config ({exc}); see configs/atypical.json") from None


# ----------------------------------------------------------------------------- data


@dataclass
class CropSet:
    """Mitosis-centred crops with their class.

    ``unanimous`` marks the crops on which every expert agreed (None: the set has no
    per-expert labels); ``groups`` the slide of each crop (splits keep a slide together)."""

    name: str
    images: np.ndarray  # (N, P, P, 3) uint8
    atypical: np.ndarray  # (N,) bool
    groups: np.ndarray  # (N,) str
    unanimous: np.ndarray | None

    def __len__(self) -> int:
        return len(self.atypical)

    def subset(self, idx: np.ndarray) -> "CropSet":
        return CropSet(
            self.name,
            self.images[idx],
            self.atypical[idx],
            self.groups[idx],
            None if self.unanimous is None else self.unanimous[idx],
        )


def _read_crops(paths: list[Path], size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            out[i] = np.asarray(im)
    return out


def load_amibr(root: str | Path, size: int = 128) -> CropSet:
    """AMi-Br through its reader: the class of each crop's own mitosis, its slide, and
    whether both experts agreed with the consensus."""
    from mitodet.data.readers import read_amibr

    recs = read_amibr(root)
    atyp = np.array([bool(r.extra["atypical"][0]) for r in recs])
    experts = [r.extra.get("experts", ()) for r in recs]
    unanimous = None
    if all(len(e) == 2 for e in experts):
        unanimous = np.array([all(e.split()[0] == ("AMF" if a else "NMF") for e in ex) for ex, a in zip(experts, atyp)])
    return CropSet(
        "AMi-Br", _read_crops([r.image for r in recs], size), atyp, np.array([r.slide for r in recs]), unanimous
    )


def load_atnorm(root: str | Path, name: str, size: int = 128) -> CropSet:
    """AtNorM-Br / AtNorM-MD through their reader (five experts' votes for AtNorM-MD)."""
    from mitodet.data.readers import read_atnorm

    recs = read_atnorm(root)
    atyp = np.array([bool(r.extra["atypical"][0]) for r in recs])
    unanimous = None
    if all("expert_votes" in r.extra for r in recs):
        unanimous = np.array([len({v.strip().lower() for v in r.extra["expert_votes"]}) == 1 for r in recs])
    return CropSet(name, _read_crops([r.image for r in recs], size), atyp, np.array([r.slide for r in recs]), unanimous)


def protocol_split(crops: CropSet, cfg: AtypicalTrainConfig) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """(test indices, [(train, val) indices of each fold]) of AMi-Br: slide-grouped and
    class-stratified, as the benchmark (see the module docstring for the test part)."""
    from sklearn.model_selection import StratifiedGroupKFold

    y, g = crops.atypical.astype(int), crops.groups
    outer = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=cfg.split_seed)
    rest, test = next(outer.split(np.zeros(len(y)), y, g))
    inner = StratifiedGroupKFold(n_splits=cfg.folds, shuffle=True, random_state=cfg.split_seed)
    folds = [(rest[tr], rest[va]) for tr, va in inner.split(np.zeros(len(rest)), y[rest], g[rest])]
    return test, folds


# ----------------------------------------------------------------------------- training


def _augment(batch: np.ndarray, cfg: AtypicalTrainConfig, rng: np.random.Generator) -> torch.Tensor:
    from mitodet.data import transforms as T

    s = int(cfg.atypical.input_px)
    p = batch.shape[1]
    out = np.empty((len(batch), s, s, 3), dtype=np.uint8)
    for j, img in enumerate(batch):
        y0, x0 = (int(v) for v in rng.integers(0, p - s + 1, size=2))
        patch = img[y0 : y0 + s, x0 : x0 + s]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        patch = np.ascontiguousarray(np.rot90(patch, int(rng.integers(4))))
        patch = T.hed_jitter(patch, rng, cfg.hed_sigma, cfg.hed_bias)
        out[j] = T.brightness_contrast(patch, rng, cfg.brightness, cfg.contrast)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


def metrics(atypical: np.ndarray, prob: np.ndarray, unanimous: np.ndarray | None, threshold: float) -> dict:
    """Balanced accuracy at ``threshold`` and AUROC, on all crops and on the unanimous ones."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    def two(y, p):
        if len(np.unique(y)) < 2:
            return None, None
        return float(balanced_accuracy_score(y, p >= threshold)), float(roc_auc_score(y, p))

    y = atypical.astype(int)
    ba, auc = two(y, prob)
    out = {"n": int(len(y)), "n_atypical": int(y.sum()), "balanced_accuracy": ba, "auroc": auc}
    if unanimous is not None:
        bu, au = two(y[unanimous], prob[unanimous])
        out.update(n_unanimous=int(unanimous.sum()), balanced_accuracy_unanimous=bu, auroc_unanimous=au)
    return out


def fit(
    train: CropSet,
    val: CropSet,
    cfg: AtypicalTrainConfig,
    weights_backbone: str | Path | None,
    log: Path | None = None,
    progress: bool = True,
) -> tuple[AtypicalClassifier, list[dict]]:
    """Train on ``train`` (class-balanced sampling), keep the epoch with the best validation
    balanced accuracy (AUROC breaks ties), stop after ``patience`` epochs without one."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = AtypicalClassifier(cfg.atypical, weights_backbone)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(train)
    steps = max(1, n // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps * cfg.epochs)
    w = np.where(train.atypical, 1.0 / max(1, train.atypical.sum()), 1.0 / max(1, (~train.atypical).sum()))
    w = w / w.sum()
    labels = torch.from_numpy(train.atypical.astype(np.float32))
    best, best_key, best_state, history, stale = None, (-1.0, -1.0), None, [], 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps * cfg.epochs, desc="train atypical", unit="step", dynamic_ncols=True)
    t0 = time.time()
    for epoch in range(cfg.epochs):
        model.train()
        draw = rng.choice(n, size=steps * cfg.batch_size, replace=True, p=w)  # balanced, as WeightedRandomSampler
        losses = []
        for s in range(steps):
            which = draw[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            x = _augment(train.images[which], cfg, rng)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), labels[which])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(losses[-50:]):.3f}")
        m = metrics(val.atypical, model.probabilities(val.images), val.unanimous, cfg.atypical.threshold)
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val": m, "elapsed_s": time.time() - t0}
        history.append(row)
        if log is not None:
            with open(log, "a") as f:
                f.write(json.dumps(row) + "\n")
        key = (m["balanced_accuracy"] or 0.0, m["auroc"] or 0.0)
        if key > best_key:
            best_key, best, stale = key, epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if bar is not None:
        bar.close()
    model.load_state_dict(best_state)
    history.append({"best_epoch": best})
    return model.eval(), history


def benchmark_sets(cfg: AtypicalTrainConfig, data_root: str | Path, limit: int | None = None):
    """``(AMi-Br, its folds, the test sets)`` of the benchmark: all AMi-Br, the protocol's
    ``[(train, val)]`` indices into it, and ``[AMi-Br's test part, AtNorM-Br, AtNorM-MD]``
    (``limit``: a random ``limit`` crops of each set, for a smoke test)."""
    root = Path(data_root)
    size = int(cfg.atypical.patch_px)
    amibr = load_amibr(root / "amibr", size)
    tests = [load_atnorm(root / "atnorm_br", "AtNorM-Br", size), load_atnorm(root / "atnorm_md", "AtNorM-MD", size)]
    if limit is not None:
        rng = np.random.default_rng(0)
        amibr = amibr.subset(np.sort(rng.permutation(len(amibr))[:limit]))
        tests = [t.subset(np.sort(rng.permutation(len(t))[:limit])) for t in tests]
    test_idx, folds = protocol_split(amibr, cfg)
    return amibr, folds, [amibr.subset(test_idx), *tests]


def benchmark(
    cfg: AtypicalTrainConfig,
    data_root: str | Path,
    out_dir: str | Path,
    weights_backbone: str | Path | None,
    progress: bool = True,
    limit: int | None = None,
) -> list[dict]:
    """The AMi-Br benchmark protocol (``limit``: a random ``limit`` crops of each set, for a
    smoke test): per fold, train (or reuse ``out_dir/foldK`` from an
    earlier run: resumable), then test on AMi-Br's test part, AtNorM-Br and AtNorM-MD; last,
    the mean probability of the fold models (``fold: "ensemble"``). Rows go to
    ``out_dir/rows.json`` as they come."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    amibr, folds, sets = benchmark_sets(cfg, data_root, limit)
    rows: list[dict] = []
    all_probs: list[dict[str, np.ndarray]] = []
    for k, (tr, va) in enumerate(folds, 1):
        fold_dir = out / f"fold{k}"
        done = fold_dir / "atypical" / "config.json"
        if done.is_file():
            model = load_atypical(fold_dir)
            info = json.loads(done.read_text())["extra"]
        else:
            t = time.time()
            model, hist = fit(
                amibr.subset(tr), amibr.subset(va), cfg, weights_backbone, out / f"fold{k}.log.jsonl", progress
            )
            info = {
                "fold": k,
                "best_epoch": hist[-1]["best_epoch"],
                "train_s": time.time() - t,
                "n_train": int(len(tr)),
            }
            save_atypical(model, fold_dir, extra=info)
        probs = {}
        for s in sets:
            probs[s.name] = model.probabilities(s.images)
            m = metrics(s.atypical, probs[s.name], s.unanimous, cfg.atypical.threshold)
            rows.append(
                {"fold": k, "set": s.name, **m, "best_epoch": info.get("best_epoch"), "train_s": info.get("train_s")}
            )
            print(
                f"fold {k} {s.name}: balanced accuracy {m['balanced_accuracy']:.4f}, AUROC {m['auroc']:.4f} (n {m['n']})",
                flush=True,
            )
        all_probs.append(probs)
        (out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    # the fold models as one: their mean probability (what an ensemble would ship)
    for s in sets:
        mean = np.mean([p[s.name] for p in all_probs], axis=0)
        rows.append(
            {"fold": "ensemble", "set": s.name, **metrics(s.atypical, mean, s.unanimous, cfg.atypical.threshold)}
        )
    (out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    return rows


def train_atypical_ensemble(
    cfg: AtypicalTrainConfig,
    data_root: str | Path,
    model_dir: str | Path,
    work_dir: str | Path,
    weights_backbone: str | Path | None,
    progress: bool = True,
) -> dict:
    """The benchmark's fold models as one classifier (their probabilities averaged): runs
    :func:`benchmark` in ``work_dir`` (reusing the folds an earlier run of the same config
    finished there), then writes ``model_dir/atypical`` with the ensemble's measured accuracy."""
    from mitodet.models.atypical import AtypicalEnsemble

    work = Path(work_dir)
    done = work / "config.json"
    if done.is_file() and AtypicalTrainConfig.from_dict(json.loads(done.read_text())) != cfg:
        raise ValueError(f"{work} holds folds of another config; give another --work, or the config of {done}")
    rows = benchmark(cfg, data_root, work, weights_backbone, progress)
    ens = AtypicalEnsemble(cfg.atypical.replace(members=cfg.folds))
    for k, member in enumerate(ens.members, 1):
        member.load_state_dict(load_atypical(work / f"fold{k}").state_dict())
    measured = {
        r["set"]: {k: v for k, v in r.items() if k not in ("fold", "set")} for r in rows if r["fold"] == "ensemble"
    }
    extra = {
        "trained_on": f"AMi-Br: {cfg.folds} models, one per slide-grouped fold of its training part "
        "(AtNorM-Br and AtNorM-MD never seen)",
        "measured": measured,
        "per_fold": [r for r in rows if r["fold"] != "ensemble"],
        "config": cfg.to_dict(),
    }
    save_atypical(ens, model_dir, extra=extra)
    return extra


def train_atypical(
    cfg: AtypicalTrainConfig,
    data_root: str | Path,
    model_dir: str | Path,
    weights_backbone: str | Path | None,
    progress: bool = True,
) -> dict:
    """One model: trained on AMi-Br's training part (fold 1's validation crops pick the
    epoch), never on AtNorM; written to ``model_dir/atypical`` with its measured accuracy."""
    root = Path(data_root)
    size = int(cfg.atypical.patch_px)
    amibr = load_amibr(root / "amibr", size)
    test_idx, folds = protocol_split(amibr, cfg)
    tr, va = folds[0]
    t = time.time()
    model, hist = fit(amibr.subset(tr), amibr.subset(va), cfg, weights_backbone, None, progress)
    t_set = amibr.subset(test_idx)
    results = {"AMi-Br test": metrics(t_set.atypical, model.probabilities(t_set.images), t_set.unanimous, 0.5)}
    for sub, name in (("atnorm_br", "AtNorM-Br"), ("atnorm_md", "AtNorM-MD")):
        s = load_atnorm(root / sub, name, size)
        results[name] = metrics(s.atypical, model.probabilities(s.images), s.unanimous, cfg.atypical.threshold)
    extra = {
        "trained_on": f"AMi-Br ({len(tr)} crops of the training part; AtNorM-Br and AtNorM-MD never seen)",
        "best_epoch": hist[-1]["best_epoch"],
        "train_s": time.time() - t,
        "measured": results,
        "config": cfg.to_dict(),
    }
    save_atypical(model, model_dir, extra=extra)
    return extra
