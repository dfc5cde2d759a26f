"""The training loop: the paper's recipe by default, resumable, with validation.

Default schedule (the paper's): SGD, momentum 0.9, weight decay 1e-4, learning rate 1e-3,
20,000 iterations, with a linear warm-up. Every ``val_every`` iterations the model is
scored with the contest F1 (8 um, optimal one-to-one matching) on fixed crops from the
held-out slides; the best checkpoint is kept together with the threshold that maximised
F1 there, which becomes the model's operating threshold.

Determinism: crop ``i`` of epoch ``e`` depends only on (seed, e, i), and the torch RNG is
saved with every checkpoint, so a run resumed after a kill continues exactly where it
stopped (up to the last checkpoint, or the very last iteration when it was stopped by
SIGINT/SIGTERM, which write a checkpoint before exiting).

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1, or ``distributed=True``) the model is
wrapped in DistributedDataParallel; ``batch_size`` stays the global batch and each rank
takes its contiguous share of the same crops, rank 0 alone validates and writes, and the
torch RNG is re-seeded per (seed, rank, iteration). See ``docs/distributed.md``.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mitodet.config import (  # TrainConfig is defined there (re-exported here)
    ModelConfig,
    TrainConfig,
    model_config_from_dict,
    save_json,
    to_dict,
    train_config_from_dict,  # noqa: F401  (re-exported)
)
from mitodet.runtime import keep_freed_memory


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message says where and what to try."""


def resolve_model_config(cfg: TrainConfig) -> ModelConfig:
    from mitodet.models.presets import get_preset

    if cfg.init_from:
        from mitodet.inference.predictor import resolve_model_dir
        from mitodet.models.io import read_model_config

        base = to_dict(read_model_config(resolve_model_dir(cfg.init_from))[0])
        base["weights_backbone"] = None  # the folder's weights replace any backbone initialisation
    else:
        base = to_dict(get_preset(cfg.preset))
    base.update(cfg.model_overrides)
    return model_config_from_dict(base)


def lr_at(cfg: TrainConfig, it: int) -> float:
    lr = cfg.lr
    if cfg.warmup_iters and it < cfg.warmup_iters:
        lr *= 0.001 + (1 - 0.001) * it / cfg.warmup_iters
    for f in cfg.lr_decay_at:
        if it >= f * cfg.iterations:
            lr *= 0.1
    return lr


class _StopFlag:
    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum, frame) -> None:  # noqa: ARG002
        self.signum = signum


def _jsonl(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()


def _last_good(ckpt_dir: Path) -> str:
    from mitodet.engine.checkpoint import read_checkpoint_meta

    meta = read_checkpoint_meta(ckpt_dir)
    where = (
        f"the last good checkpoint (iteration {meta['iteration']}) is in {ckpt_dir}"
        if meta
        else "no checkpoint was written yet"
    )
    return f"{where}. Lower --lr, raise warmup_iters, or check the data for broken images"


def _drop_log_rows_after(path: Path, iteration: int) -> None:
    """Drop log rows past the checkpoint a run resumes from (and a line cut short by a
    kill): those iterations run again, so the log of a resumed run reads like that of an
    uninterrupted one."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("iteration", 0) <= iteration:
            keep.append(line + "\n")
    from mitodet.checks import atomic_write_text

    atomic_write_text(path, "".join(keep))


def build_datasets(cfg: TrainConfig, model_cfg: ModelConfig, spec, progress: bool = True, with_val: bool = True):
    """Records -> slide-disjoint split -> in-memory sources -> train dataset, fixed val crops.

    ``with_val=False`` skips reading the validation images (the ranks > 0 of a distributed
    run, which never validate); the split and ``info`` are the same.
    """
    from mitodet.data.sampler import MosaicDataset, MosaicSampler, load_sources, split_by_slide
    from mitodet.data.spec import read_sources

    records = [r for r in read_sources(spec.sources, spec.base) if not r.extra.get("position_unknown")]
    train_rec, val_rec = split_by_slide(records, spec.val_fraction, spec.split_seed)
    # never-annotated images (MIDOG++'s GT450 scans) are neither negatives nor validation;
    # dropped after the split so that the split itself does not depend on them
    train_rec = [r for r in train_rec if r.labelled]
    val_rec = [r for r in val_rec if r.labelled]
    if cfg.exclude_labs:  # leave-one-lab-out: after the split, so the other labs' split is unchanged
        from mitodet.evaluation.wholefield import lab_group

        unknown = sorted(set(cfg.exclude_labs) - {lab_group(r) for r in train_rec + val_rec})
        if unknown:
            raise ValueError(
                f"exclude_labs {unknown} name no lab of the data spec; its labs: "
                f"{sorted({lab_group(r) for r in train_rec + val_rec})}"
            )
        train_rec = [r for r in train_rec if lab_group(r) not in cfg.exclude_labs]
        val_rec = [r for r in val_rec if lab_group(r) not in cfg.exclude_labs]
    if not train_rec:
        raise ValueError("the data spec gives no training records")
    mined = 0
    if cfg.mined_negatives:
        train_rec, mined = add_mined_negatives(train_rec, cfg)
    train_src = load_sources(train_rec, model_cfg.mpp, progress=progress)
    train_ds = MosaicDataset(
        MosaicSampler(train_src, cfg.sampler, model_cfg.box_size_px, seed=cfg.seed),
        length=max(cfg.iterations * cfg.batch_size, 1),
    )
    val = None
    if val_rec and with_val:
        val_src = load_sources(val_rec, model_cfg.mpp, progress=progress)
        vs = MosaicSampler(
            val_src, dataclasses.replace(cfg.sampler, augment=False), model_cfg.box_size_px, seed=10_000 + cfg.seed
        )
        val = [vs.sample(0, i) for i in range(cfg.val_crops)]
    info = {
        "records": len(records),
        "train_records": len(train_rec),
        "val_records": len(val_rec),
        "train_slides": len({r.slide for r in train_rec}),
        "val_slides": len({r.slide for r in val_rec}),
        "train_mitoses": int(sum(len(r.mitoses) for r in train_rec)),
        "val_mitoses": int(sum(len(r.mitoses) for r in val_rec)),
        "val_slide_ids": sorted({r.slide for r in val_rec}),
        "exclude_labs": list(cfg.exclude_labs),
        "mined_negatives": mined,
    }
    return train_ds, val, info


def add_mined_negatives(records, cfg: TrainConfig):
    """``(records, n)``: ``records`` with the mined candidates of ``cfg.mined_negatives`` added
    as look-alikes (label 0) on the label-complete ones (see :class:`TrainConfig`), and how
    many were added. A candidate within ``cfg.radius_um`` of a labelled object is not one."""
    from mitodet.engine.rescorer_train import COMPLETE_PATCH_SOURCES, far_candidates, read_candidates
    from mitodet.evaluation.wholefield import label_complete

    path = Path(cfg.mined_negatives)
    if not path.is_file():
        raise ValueError(
            f"mined_negatives {path}: no such file; mine the candidates first (`mitodet train-rescorer` writes "
            "OUT/candidates.npz) or leave mined_negatives empty"
        )
    _key, cands = read_candidates(path)
    out, added, seen = [], 0, 0
    for rec in records:
        got = cands.get(str(rec.image))
        if got is None or not (label_complete(rec) or rec.source in COMPLETE_PATCH_SOURCES):
            out.append(rec)
            continue
        seen += 1
        pts = far_candidates(*got, rec.points, rec.mpp, cfg.radius_um, cfg.mined_min_score, cfg.mined_per_image)
        added += len(pts)
        out.append(
            dataclasses.replace(
                rec,
                points=np.concatenate([rec.points, pts]),
                labels=np.concatenate([rec.labels, np.zeros(len(pts), rec.labels.dtype)]),
            )
        )
    if not seen:
        raise ValueError(
            f"mined_negatives {path}: none of the label-complete training images is in it (mined by another "
            "data spec?); mine them again for this data"
        )
    return out, added


@torch.inference_mode()
def validate(model, val_crops, mpp: float, radius_um: float, batch_size: int = 8) -> dict[str, Any]:
    """Contest F1 on fixed validation crops: every candidate, threshold swept."""
    from mitodet.data.sampler import boxes_to_points
    from mitodet.evaluation.metrics import evaluate_images

    model.eval()
    device = next(model.parameters()).device
    gts, preds, scores = [], [], []
    for i in range(0, len(val_crops), batch_size):
        chunk = val_crops[i : i + batch_size]
        outs = model([torch.from_numpy(im).permute(2, 0, 1).float().div(255.0).to(device) for im, _ in chunk])
        for (_, pts), o in zip(chunk, outs):
            gts.append(pts)
            preds.append(boxes_to_points(o["boxes"].cpu().numpy()))
            scores.append(o["scores"].cpu().numpy().astype(np.float64))
    rep = evaluate_images(gts, preds, scores, mpp, radius_um=radius_um)
    thr = rep.best_threshold if rep.best_threshold is not None else 0.5
    at = evaluate_images(gts, preds, scores, mpp, radius_um=radius_um, threshold=thr)
    return {
        "val_f1": at.f1,
        "val_precision": at.precision,
        "val_recall": at.recall,
        "val_tp": at.tp,
        "val_fp": at.fp,
        "val_fn": at.fn,
        "val_threshold": float(thr),
        "val_ap": rep.average_precision,
        "val_crops": len(val_crops),
    }


def train(
    cfg: TrainConfig,
    spec,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    *,
    distributed: bool | None = None,
    device: str | None = None,
    sync_bn: bool = False,
) -> dict[str, Any]:
    """Train a detector; returns a summary. See the module docstring for the recipe.

    Layout of ``out_dir``: ``config.json`` (resolved train/model/data config),
    ``metrics.jsonl``, ``checkpoints/`` (resumable), ``best/`` (model folder of the best
    validation F1, with its threshold), ``model/`` (the final model to use = best, or the
    last weights when there is no validation split).

    Args:
        cfg: the recipe; ``cfg.batch_size`` is the global batch (split over the ranks).
        spec: a :class:`~mitodet.data.spec.DataSpec`.
        out_dir: output folder; in a distributed run only rank 0 writes to it, and every
            rank resumes from its checkpoint, so on several nodes it must be one shared folder.
        resume: continue from ``out_dir/checkpoints`` when it holds a checkpoint.
        progress: progress bars (rank 0 only).
        distributed: data-parallel training (DistributedDataParallel) over the processes
            that ``torchrun`` started (docs/distributed.md); ``None``: when the environment
            says ``WORLD_SIZE`` > 1.
        device: ``cpu``, ``cuda`` or ``cuda:N``; ``None``: the CPU for a single process,
            ``cuda:LOCAL_RANK`` for a distributed one when CUDA is available (else the CPU).
        sync_bn: distributed on GPUs only: turn trainable BatchNorm layers (``norm='bn'``)
            into SyncBatchNorm, so batch statistics are taken over the global batch.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (on every rank at once when distributed).
        KeyboardInterrupt: stopped by SIGINT/SIGTERM after writing a checkpoint.
        ValueError: a bad config, a global batch that does not split over the ranks, or
            ranks that see different checkpoints.
    """
    from mitodet.engine import distributed as D

    if distributed is None:
        distributed = D.distributed_requested()
    if sync_bn and not distributed:
        raise ValueError(
            "sync_bn (--sync-bn) is for distributed training; a single process already sees the whole batch"
        )
    ctx = D.init_distributed(device) if distributed else D.SingleProcess(D.resolve_device(device, False))
    try:
        summary = _train(cfg, spec, Path(out_dir), resume, progress, ctx, sync_bn)
    except (KeyboardInterrupt, NonFiniteLossError):
        ctx.close()  # every rank stops here together: the group can be closed cleanly
        raise
    ctx.close()
    return summary


def _allreduce_step(
    ctx, losses: dict[str, torch.Tensor], loss: torch.Tensor, stop_requested: bool
) -> tuple[float, dict[str, float], int, bool]:
    """One small all-reduce per step: the mean loss terms over ranks (for the log), the
    number of ranks whose loss is not finite, and whether any rank was asked to stop, so
    that every rank takes the same decision at the same iteration."""
    vals = torch.stack([v.detach().float() for v in losses.values()] + [loss.detach().float()]) / ctx.world_size
    flags = torch.tensor(
        [0.0 if bool(torch.isfinite(loss)) else 1.0, 1.0 if stop_requested else 0.0], device=vals.device
    )
    buf = ctx.all_reduce_sum(torch.cat([vals, flags])).cpu().tolist()
    n = len(losses)
    return buf[n], dict(zip(losses, buf[:n])), int(round(buf[n + 1])), buf[n + 2] > 0


def _prepare_folder(cfg: TrainConfig, model_cfg: ModelConfig, spec, out: Path, resume: bool, ctx) -> dict | None:
    """Rank 0 checks that ``out`` holds no run of another config and writes ``config.json``;
    every rank must see the same checkpoint (or none), and all of them raise the same error
    instead of some waiting for the others forever. Returns the checkpoint's metadata to
    resume from, or None."""
    from mitodet.engine.checkpoint import read_checkpoint_meta

    resolved = {"train": to_dict(cfg), "model": to_dict(model_cfg), "data": spec.to_dict()}
    ckpt_dir = out / "checkpoints"
    meta = read_checkpoint_meta(ckpt_dir) if resume else None

    def check_and_write_config() -> None:
        if meta is not None:
            old = json.loads((out / "config.json").read_text())
            for key in ("train", "model", "data"):
                a, b = dict(old[key]), dict(resolved[key])
                if key == "train":  # a longer or shorter run may resume; the rest must match
                    for k in ("iterations", "threads"):  # neither changes the results
                        a.pop(k, None), b.pop(k, None)
                    stock = to_dict(TrainConfig())
                    for k in set(b) - set(a):  # a setting added since the run began, at its default
                        if b[k] == stock.get(k):
                            b.pop(k)
                if a != b:
                    raise ValueError(
                        f"{out} holds a run with a different {key} config; use a new --out folder "
                        "or --no-resume to start over"
                    )
        save_json(resolved, out / "config.json")

    problem = None
    if ctx.is_main:
        try:
            check_and_write_config()
        except (ValueError, OSError) as exc:
            if not ctx.distributed:
                raise
            problem = str(exc)
    views = ctx.all_gather_object((problem, meta["tensors"] if meta else None))
    problems = [p for p, _ in views if p]
    if problems:
        raise ValueError(problems[0])
    if len({t for _, t in views}) > 1:
        seen = ", ".join(f"rank {r}: {t or 'none'}" for r, (_, t) in enumerate(views))
        raise ValueError(
            f"the ranks see different checkpoints in {ckpt_dir} ({seen}); --out must be one "
            "folder that every node reads (a shared filesystem), so all ranks resume from the "
            "same checkpoint"
        )
    return meta


def _build_model(cfg: TrainConfig, model_cfg: ModelConfig, sync_bn: bool):
    """The detector to train, seeded: built from its config, or (fine-tuning) with every weight
    of ``cfg.init_from``; trainable BatchNorm turned into SyncBatchNorm when ``sync_bn``."""
    from mitodet.engine import distributed as D
    from mitodet.models.builder import build_detector

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = build_detector(model_cfg)
    if cfg.init_from:  # fine-tuning: every weight from the folder (a checkpoint, when resuming, replaces them)
        from safetensors.torch import load_file

        from mitodet.inference.predictor import resolve_model_dir
        from mitodet.models.io import WEIGHTS_NAME

        src = resolve_model_dir(cfg.init_from) / WEIGHTS_NAME
        try:
            model.load_state_dict(load_file(str(src)), strict=True)
        except (RuntimeError, OSError) as exc:
            raise ValueError(
                f"init_from {cfg.init_from!r}: {src} does not fit the model to train ({str(exc).splitlines()[0]}); "
                "fine-tuning keeps the folder's architecture, so drop the model_overrides that change it"
            ) from None
    if sync_bn:
        if not D.has_running_stats(model):
            raise ValueError(
                f"sync_bn (--sync-bn): the model has no trainable BatchNorm (norm={model_cfg.norm!r}); drop --sync-bn"
            )
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _data_parallel(model, ctx, sync_bn: bool):
    """What the loop calls forward on: the model itself, or (distributed) its DDP wrapper."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    from mitodet.engine import distributed as D

    dev = ctx.device
    # Construction broadcasts rank 0's parameters and buffers. Every trainable parameter
    # takes part in every step's loss (crops without mitoses too), so there is no
    # unused-parameter search. Buffers are re-broadcast at each forward only when they
    # change (trainable BatchNorm without SyncBatchNorm); frozen BN's never do.
    return DistributedDataParallel(
        model,
        device_ids=[dev.index] if dev.type == "cuda" else None,
        find_unused_parameters=False,
        forward_sync_buffers=D.has_running_stats(model) and not sync_bn,
    )


def _train(cfg: TrainConfig, spec, out: Path, resume: bool, progress: bool, ctx, sync_bn: bool) -> dict[str, Any]:
    """The training loop of :func:`train` on one rank of ``ctx`` (a
    :class:`~mitodet.engine.distributed.DistContext`, or a
    :class:`~mitodet.engine.distributed.SingleProcess`: a world of size one)."""
    from mitodet.engine import distributed as D
    from mitodet.engine.checkpoint import load_checkpoint, save_checkpoint
    from mitodet.models.io import save_detector

    main, rank, world, dev = ctx.is_main, ctx.rank, ctx.world_size, ctx.device
    D.check_batch_split(cfg.batch_size, world)
    if sync_bn and dev.type != "cuda":
        raise ValueError("sync_bn (--sync-bn) needs GPUs: torch has no SyncBatchNorm on the CPU; drop --sync-bn")
    if main:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    keep_freed_memory()  # fewer page faults per step on glibc (see mitodet.runtime)
    model_cfg = resolve_model_config(cfg)
    ckpt_dir = out / "checkpoints"
    meta = _prepare_folder(cfg, model_cfg, spec, out, resume, ctx)
    model = _build_model(cfg, model_cfg, sync_bn)
    train_ds, val_crops, data_info = build_datasets(cfg, model_cfg, spec, progress=progress and main, with_val=main)
    if main:
        save_json(data_info, out / "data_split.json")
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    start, best = 0, {"val_f1": -1.0}
    if meta is not None:
        meta = load_checkpoint(ckpt_dir, model, optimizer)
        start, best = meta["iteration"], meta.get("best", best)
        if main:
            _drop_log_rows_after(out / "metrics.jsonl", start)
            print(f"resuming from the checkpoint of iteration {start} in {ckpt_dir}", flush=True)
    forward = _data_parallel(model, ctx, sync_bn)
    metrics = out / "metrics.jsonl"
    stop = _StopFlag()
    old_handlers = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = None
    if progress and main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.iterations, initial=start, desc=f"train {model_cfg.preset}", unit="it", dynamic_ncols=True)

    def checkpoint(it: int) -> None:
        if main:
            save_checkpoint(ckpt_dir, it, model, optimizer, {"best": best})

    def run_validation(it: int) -> None:
        nonlocal best
        if not val_crops:
            return
        res = validate(model, val_crops, model_cfg.mpp, cfg.radius_um)
        res.update(iteration=it, kind="val")
        _jsonl(metrics, res)
        if cfg.snapshots:
            save_detector(
                model,
                out / "snapshots" / f"it{it:06d}",
                model_cfg.replace(score_threshold=round(res["val_threshold"], 4)),
                extra={"validation": res},
            )
        if res["val_f1"] > best["val_f1"]:
            best = res
            save_detector(
                model,
                out / "best",
                model_cfg.replace(score_threshold=round(res["val_threshold"], 4)),
                extra={"validation": res, "data_split": {k: v for k, v in data_info.items() if k != "val_slide_ids"}},
            )
        model.train()

    model.train()
    t0, t_log, it = time.time(), time.time(), start
    try:
        bs = cfg.batch_size
        per_epoch = len(train_ds) // bs
        while it < cfg.iterations:
            epoch, indices = D.rank_batch_indices(it, bs, per_epoch, rank, world)
            train_ds.set_epoch(epoch)
            batch = [train_ds[i] for i in indices]
            images = [b[0].to(dev) for b in batch]
            targets = [{"boxes": b[1]["boxes"].to(dev), "labels": b[1]["labels"].to(dev)} for b in batch]
            for g in optimizer.param_groups:
                g["lr"] = lr_at(cfg, it)
            if ctx.distributed:
                torch.manual_seed(D.rank_iteration_seed(cfg.seed, rank, it))
            losses = forward(images, targets)
            loss = sum(losses.values())
            loss_value, terms, bad_ranks, stop_all = _allreduce_step(ctx, losses, loss, stop.signum is not None)
            if bad_ranks:
                raise NonFiniteLossError(
                    f"non-finite loss at iteration {it} on {bad_ranks} of {world} ranks "
                    f"(mean terms {terms}); {_last_good(ckpt_dir)}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # distributed: DDP all-reduces (averages) the gradients here
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            it += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}", best_f1=f"{best['val_f1']:.3f}")
            if main and (it % cfg.log_every == 0 or it == cfg.iterations):
                now = time.time()
                _jsonl(
                    metrics,
                    {
                        "kind": "train",
                        "iteration": it,
                        "lr": lr_at(cfg, it - 1),
                        "loss": loss_value,
                        **terms,
                        "sec_per_it": (now - t_log) / cfg.log_every,
                        "elapsed_s": now - t0,
                    },
                )
                t_log = now
            validating = it % cfg.val_every == 0 or it == cfg.iterations
            if validating and main:
                run_validation(it)
            # distributed: what every rank was told in this step's all-reduce; one process: the flag now
            stopping = stop_all if ctx.distributed else stop.signum is not None
            saving = it % cfg.checkpoint_every == 0 or it == cfg.iterations or stopping
            if saving:
                checkpoint(it)
            if validating or saving:
                ctx.barrier()  # the others wait while rank 0 validates and writes
            if stopping:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        if main:
            print(f"stopped at iteration {it}; checkpoint saved in {ckpt_dir}. Run the same command again to resume.")
        raise
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        if bar is not None:
            bar.close()

    run = {"iterations": it, "best": best, "data": data_info, "wall_s_this_session": time.time() - t0}
    return _finish(model, out, ctx, run)


def _finish(model, out: Path, ctx, run: dict[str, Any]) -> dict[str, Any]:
    """Rank 0 writes ``out/model`` (the best validation's model, else the last weights) and
    ``summary.json``; every rank returns rank 0's summary."""
    from mitodet.models.io import load_detector, save_detector

    summary = None
    if ctx.is_main:
        final = out / "model"
        if (out / "best" / "model.safetensors").is_file():
            chosen = load_detector(out / "best")
            extra = json.loads((out / "best" / "config.json").read_text()).get("extra", {})
            save_detector(chosen, final, extra=extra)
        else:
            save_detector(model, final, extra={"note": "no validation split: last weights, stock threshold"})
        summary = {
            "iterations": run["iterations"],
            "best": run["best"],
            "model_dir": str(final),
            "data": run["data"],
            "wall_s_this_session": run["wall_s_this_session"],
        }
    if not ctx.distributed:
        save_json(summary, out / "summary.json")
        return summary
    # A cheap end-of-run guard: DDP keeps the replicas equal by construction (the same
    # averaged gradients, the same optimizer step); the summary says so, or a warning does.
    digests = ctx.all_gather_object(parameter_digest(model))
    if ctx.is_main:
        summary.update(world_size=ctx.world_size, param_digest_per_rank=digests)
        if len(set(digests)) > 1:
            print(
                f"warning: the ranks ended with different weights ({digests}); model/ holds rank 0's", file=sys.stderr
            )
        save_json(summary, out / "summary.json")
    return ctx.broadcast_object(summary)  # every rank returns rank 0's summary (with the best validation)


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's and buffer's bytes in state-dict order (equal digests:
    bitwise-equal weights)."""
    from mitodet.checks import state_digest

    return state_digest(model)
