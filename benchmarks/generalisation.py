"""Generalisation: whole-field accuracy on labs held out of the second stage, per variant and seed.

Usage: python benchmarks/generalisation.py --detector DIR --weights-backbone mobilenet_v2-b0353104.pth
       [--seeds 0 1] [--heldout midog21-aperio-cs2 tupac16 atnorm] [--work runs/generalisation]
       [--epochs N] [--threads 2] [--quick]

Variants (every second stage under the same recipe and budget: the config's epochs over its samples):

- ``first stage``: the detector alone at its whole-field threshold (one detector, no seeds);
- ``two-stage, all labs``: the second stage trained on every lab's training slides,
  threshold by whole-field F1 on the validation slides of all labs;
- ``two-stage, without LAB`` (leave-one-lab-out): the second stage trained without any
  image of LAB, its threshold chosen on the validation slides of the *other* labs; then
  tested on every label-complete crop of LAB (recall, FP/mm2, F1 at 10 mitoses/mm2) at
  that threshold, beside the best F1 any threshold would give there (the calibration gap).
  ``atnorm`` holds out both mitosis-only sets (TCGA ``atnorm_br`` and MIDOG++ ``atnorm_md``):
  they have no negatives, so only recall at the threshold is reported for them.

Caveat printed with the table: with the bundled detector, the first stage was trained on the
training slides of every lab; only the second stage is left out, and the first stage's
candidates on the held-out lab's training slides are in-domain. For a full leave-one-lab-out,
pass a detector trained without the lab (``exclude_labs`` in its config, e.g.
``configs/experiments/rdlm-cpu-without-tupac16.json``, then ``mitodet validate --snapshots``,
which chooses its checkpoint and threshold without that lab too): its held-out labs are
read from the detector's ``train_config.json`` and the table says so.

First-stage candidates are mined once per image (``<work>/candidates.npz``, shared by all
runs); the second stage re-scores them exactly as ``Detector.rescore`` does in ``mitodet detect``.
Resumable: finished runs (``<work>/<variant>/seed<k>/summary.json``) are reused.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOCS, command_line, environment_line, mean_sd, write_doc  # noqa: E402

HELDOUT_GROUPS = {"atnorm": ("tcga", "midogpp")}


def _groups(name: str) -> tuple[str, ...]:
    return HELDOUT_GROUPS.get(name, (name,))


def _results(records, cands, det, rescore: bool, memo: dict | None = None):
    """FieldResults of ``records`` from mined first-stage candidates, re-scored when asked.

    With ``memo``, each image's second-stage probabilities are computed once (exactly as
    ``Detector.rescore`` does) and every score combination is formed from them in numpy."""
    from mitodet.data.images import read_rgb
    from mitodet.evaluation import wholefield as W
    from mitodet.inference.slide import ArraySource
    from mitodet.models.rescorer import combine_scores

    out = []
    for rec in records:
        pts, sc = (np.asarray(a, dtype=np.float64) for a in cands[str(rec.image)])
        img = read_rgb(rec.image)
        if rescore:
            how = det.rescorer.config.combine
            key = str(rec.image)
            if memo is None or key not in memo:
                cfg = det.rescorer.config
                det.rescorer.config = cfg.replace(combine="second")
                try:
                    got = det.rescore(ArraySource(img), pts, sc, rec.mpp)
                finally:
                    det.rescorer.config = cfg
                if memo is None:
                    pts, first, second = got
                else:
                    memo[key] = got
            if memo is not None:
                pts, first, second = memo[key]
            sc = combine_scores(first, second, how)
        out.append(
            W.FieldResult(
                str(rec.image),
                W.lab_group(rec),
                W.tissue_area_mm2(img, rec.mpp),
                rec.mitoses * rec.mpp,
                pts * rec.mpp,
                sc,
            )
        )
    return out


def _patches(records, cands, det) -> np.ndarray:
    """The second stage's input patches of every candidate it would see on ``records``."""
    from mitodet.data.images import read_rgb
    from mitodet.models.rescorer import array_reader, read_patches

    cfg = det.rescorer.config
    out = []
    for rec in records:
        pts, sc = (np.asarray(a, dtype=np.float64) for a in cands[str(rec.image)])
        pts = pts[sc >= cfg.min_candidate_score]
        img = read_rgb(rec.image)
        out.append(read_patches(array_reader(img), img.shape[:2], pts, cfg.patch_px * cfg.mpp / rec.mpp, cfg.patch_px))
    return np.concatenate(out) if out else np.zeros((0, cfg.patch_px, cfg.patch_px, 3), np.uint8)


def _row(results, thr: float, density: float, complete: bool) -> dict:
    from mitodet.evaluation import wholefield as W

    sw = W.sweep(results)
    at = sw.at(thr, density)
    row = {"threshold": thr, "recall": at["recall"], "mitoses": sw.n_gt, "crops": len(results)}
    if complete:
        best = W.best_threshold(sw, density)
        row.update(
            fp_per_mm2=at["fp_per_mm2"],
            f1=at["f1_at_density"],
            area_mm2=sw.area_mm2,
            best_threshold=best,
            best_f1=sw.at(best, density)["f1_at_density"],
        )
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", required=True, help="first-stage model folder")
    ap.add_argument("--weights-backbone", help="torchvision MobileNetV2 ImageNet state dict for the second stage")
    ap.add_argument("--config", type=Path, default=Path(__file__).resolve().parents[1] / "configs" / "rescorer.json")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--heldout", nargs="+", default=["midog21-aperio-cs2", "tupac16", "atnorm"])
    ap.add_argument("--work", type=Path, default=Path("runs/generalisation"))
    ap.add_argument("--epochs", type=int, help="override the config's epochs")
    ap.add_argument("--density", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="a few images per lab, 1 epoch: checks the plumbing")
    ap.add_argument("--out", type=Path, default=DOCS / "generalisation.md", help="markdown file to write (full mode)")
    ap.add_argument(
        "--name",
        default="",
        help="tag added to every two-stage variant's name (e.g. the augmentation "
        "compared); rows are then merged into --merge's table",
    )
    ap.add_argument(
        "--combine",
        nargs="+",
        choices=["second", "geometric", "product", "min", "second+adabn"],
        default=["second", "geometric", "second+adabn"],
        help="score combinations to measure",
    )
    ap.add_argument("--no-all-labs", action="store_true", help="skip the second stage trained on every lab")
    ap.add_argument(
        "--calibrate-on",
        metavar="LAB",
        help="calibration on a held-out lab: hold LAB out of training as well, and choose a second threshold "
        "on all of LAB's label-complete crops (beside the usual one, on the other labs' validation slides)",
    )
    ap.add_argument(
        "--merge",
        type=Path,
        nargs="*",
        default=[],
        help="rows.json files of earlier runs to put in the same table (same detector)",
    )
    ap.add_argument(
        "--table-only",
        action="store_true",
        help="train and measure nothing: write the table of the --merge rows.json files (one A/B table "
        "of runs measured separately)",
    )
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    variants = [(c.split("+")[0], c.endswith("+adabn")) for c in args.combine]
    if args.calibrate_on is not None and (args.calibrate_on in args.heldout or args.calibrate_on == "atnorm"):
        ap.error(
            f"--calibrate-on {args.calibrate_on}: name a lab with label-complete crops that is not in --heldout "
            "(e.g. midog21-aperio-cs2 or tupac16)"
        )
    # labs the detector itself was trained without (a detector-level leave-one-lab-out run):
    # they are not part of `all-val`, and the caveat under the table says which labs are fully held out
    det_doc = Path(args.detector) / "train_config.json"
    args.detector_excluded = (
        list(json.loads(det_doc.read_text()).get("train", {}).get("exclude_labs", [])) if det_doc.is_file() else []
    )
    if args.table_only:
        rows, seen = [], set()
        for path in args.merge:  # each (variant, lab, seed) once: the first file that measured it
            for r in json.loads(path.read_text()):
                key = (r["variant"], r["tested_on"], r.get("seed"))
                if key not in seen:
                    seen.add(key)
                    rows.append(r)
        if not rows:
            print("error: --table-only needs --merge with at least one rows.json", file=sys.stderr)
            return 2
        args.seeds = sorted({r["seed"] for r in rows if r.get("seed") is not None})  # what the files hold
        first = next((r["threshold"] for r in rows if r["variant"] == "first stage"), float("nan"))
        args.min_candidate_score = 0.1
        md = to_markdown(rows, args, first, None)
        md = md.replace(
            "\n\nMachine:",
            "\n\nThis call measured nothing: it merges the rows of "
            + ", ".join(f"`{p}`" for p in args.merge)
            + ", each measured by the command at the top of the `table.md` beside it (the two-stage variants:"
            " `--name TAG --config configs/experiments/rescorer-TAG.json`); the machine line below is this call's."
            "\n\nMachine:",
            1,
        )
        print(md)
        write_doc(args.out, "Generalisation: second-stage variants on held-out labs (A/B)", md)
        return 0

    import torch

    torch.set_num_threads(args.threads)
    from mitodet.data.spec import load_spec, training_data
    from mitodet.engine.rescorer_train import (
        RescorerTrainConfig,
        mine_candidates,
        split_records,
        train_rescorer,
    )
    from mitodet.evaluation import wholefield as W
    from mitodet.inference.predictor import Detector
    from mitodet.models.rescorer import adapt_batchnorm

    doc = json.loads(args.config.read_text()) if args.config.is_file() else {}
    if args.epochs is not None:
        doc["epochs"] = args.epochs
    if args.quick:
        doc.update(epochs=1, batch_size=8)
    base = RescorerTrainConfig.from_dict(doc)
    spec = load_spec(training_data(Path(args.detector)))
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "candidates.npz"
    progress = not args.no_progress
    t_start = time.time()

    train_rec, val_rec = split_records(spec, base)
    if args.quick:  # a handful of images of every lab

        def few(recs, n):
            seen: dict[str, int] = {}
            keep = []
            for r in recs:
                g = W.lab_group(r)
                if seen.get(g, 0) < n:
                    seen[g] = seen.get(g, 0) + 1
                    keep.append(r)
            return keep

        train_rec, val_rec = few(train_rec, 6), few(val_rec, 4)
    all_rec = train_rec + val_rec
    first = Detector.load(args.detector, second_stage=False)
    cands = mine_candidates(first, all_rec, cache=cache, progress=progress)
    first_thr = first.threshold

    def lab_records(groups, complete: bool):
        return [r for r in all_rec if W.lab_group(r) in groups and (W.label_complete(r) == complete)]

    val_complete = [r for r in val_rec if W.label_complete(r) and W.lab_group(r) not in args.detector_excluded]
    rows: list[dict] = []
    # 1. the first stage alone
    for name in ["all-val", *args.heldout]:
        groups = _groups(name)
        complete = name == "all-val" or name != "atnorm"
        recs = val_complete if name == "all-val" else lab_records(groups, complete)
        if recs:
            res = _results(recs, cands, first, False)
            rows.append(
                {
                    "variant": "first stage",
                    "tested_on": name,
                    "seed": None,
                    **_row(res, first_thr, args.density, complete),
                    "recall_of_candidates": W.sweep(res).at(base.rescorer.min_candidate_score)["recall"],
                }
            )

    def run(variant: str, exclude: tuple[str, ...], seed: int, tests: list[str], cal_lab: str | None = None) -> None:
        out = work / re.sub(r"[^\w.-]+", "_", variant).strip("_") / f"seed{seed}"
        cfg = RescorerTrainConfig.from_dict(
            {**base.to_dict(), "seed": seed, "exclude_labs": list(exclude), "threads": args.threads}
        )
        summary_path = out / "summary.json"
        if not summary_path.is_file() or args.quick:
            train_rescorer(
                args.detector,
                out,
                cfg,
                spec=spec,
                weights_backbone=args.weights_backbone,
                progress=progress,
                candidates_cache=cache,
                **({"records": (train_rec, val_rec)} if args.quick else {}),
            )
        summary = json.loads(summary_path.read_text())
        det = Detector.load(out / "model")
        # the threshold's data: the validation slides of the labs the run trained on, and with
        # cal_lab also every label-complete crop of that lab, which the run held out of training
        # (the same trained model under both rules: a paired comparison)
        calibs = [("", [r for r in val_complete if W.lab_group(r) not in exclude])]
        if cal_lab is not None:
            calibs.append((f", threshold on {cal_lab}", lab_records(_groups(cal_lab), True)))
        trained = det.rescorer
        memo: dict = {}  # second-stage probabilities per image, shared by the combinations
        for (combine, adabn), (cal_name, calib) in [(v, c) for v in variants for c in calibs]:
            det.rescorer = trained  # each variant's threshold is chosen on its calibration crops
            det.rescorer.config = trained.config.replace(combine=combine)
            if adabn:
                det.rescorer = adapt_batchnorm(trained, _patches(calib, cands, det))
            thr = W.best_threshold(W.sweep(_results(calib, cands, det, True, None if adabn else memo)), args.density)
            for name in tests:
                groups = _groups(name)
                complete = name == "all-val" or name != "atnorm"
                recs = val_complete if name == "all-val" else lab_records(groups, complete)
                if not recs:
                    continue
                if adabn:  # statistics of the tested lab's own candidates (no labels used)
                    det.rescorer = adapt_batchnorm(trained, _patches(recs, cands, det))
                row = _row(_results(recs, cands, det, True, None if adabn else memo), thr, args.density, complete)
                label = combine + (", AdaBN" if adabn else "") + cal_name
                rows.append(
                    {
                        "variant": f"{variant} ({label})",
                        "tested_on": name,
                        "seed": seed,
                        "fit_seconds": summary["fit_seconds"],
                        "samples": summary["samples"],
                        **row,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)

    # variant-major, so that a run stopped early has every seed of the variants it reached
    tag = f" [{args.name}]" if args.name else ""
    if not args.no_all_labs:
        for seed in args.seeds:
            run(f"two-stage{tag}, all labs", (), seed, ["all-val"])
    for name in args.heldout:
        cal = args.calibrate_on
        for seed in args.seeds:
            if cal is None:
                run(f"two-stage{tag}, without {name}", _groups(name), seed, [name])
            else:  # both labs held out of training; thresholds by either rule, tested on `name`
                run(f"two-stage{tag}, without {name} and {cal}", _groups(name) + _groups(cal), seed, [name], cal)
    own = list(rows)
    for path in args.merge:  # earlier variants' second-stage rows, for one table
        rows += [r for r in json.loads(path.read_text()) if r["variant"] != "first stage"]
    args.min_candidate_score = base.rescorer.min_candidate_score
    md = to_markdown(rows, args, first_thr, time.time() - t_start)
    print(md)
    if not args.quick:
        write_doc(args.out, "Generalisation: whole-field accuracy on held-out labs", md)
    (work / "rows.json").write_text(json.dumps(own, indent=2, default=float) + "\n")
    return 0


def to_markdown(rows: list[dict], args, first_thr: float, seconds: float | None) -> str:
    lines = [
        f"Command: `{command_line()}`",
        "",
        f"Machine: {environment_line(args.threads)}",
        "",
        f"Density for F1: {args.density:g} mitoses per mm2 (see `mitodet.evaluation.wholefield`). "
        f"Matching 8 um, one-to-one. First-stage threshold {first_thr:.3f}. Mean +- sd over seeds "
        f"{args.seeds} (n = {len(args.seeds)})" + ("." if seconds is None else f"; total {seconds / 60:.1f} min."),
        "",
        "| variant | tested on | crops | mitoses | mm2 | threshold | recall | FP/mm2 | F1@D | best thr there "
        "| best F1@D there |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys: list[tuple[str, str]] = []
    for r in rows:
        if (r["variant"], r["tested_on"]) not in keys:
            keys.append((r["variant"], r["tested_on"]))
    for variant, tested in keys:
        rs = [r for r in rows if r["variant"] == variant and r["tested_on"] == tested]
        r0 = rs[0]
        get = lambda k: mean_sd([r.get(k) for r in rs])  # noqa: E731
        lines.append(
            f"| {variant} | {tested} | {r0['crops']} | {r0['mitoses']} | "
            f"{r0.get('area_mm2', float('nan')):.2f} | {get('threshold')} | {get('recall')} | "
            f"{get('fp_per_mm2')} | {get('f1')} | {get('best_threshold')} | {get('best_f1')} |"
        )
    cand = [r for r in rows if r["variant"] == "first stage"]
    if cand:
        lines += [
            "",
            f"First-stage recall among the candidates the second stage sees (score >= "
            f"{getattr(args, 'min_candidate_score', 'min_candidate_score')}): "
            + ", ".join(f"{r['tested_on']} {r['recall_of_candidates']:.3f}" for r in cand)
            + ".",
        ]
    lines += [
        "",
        "Each two-stage row names its score combination: `second` = the second stage's probability, "
        "`geometric` = sqrt(first x second), `product` = first x second and `min` = the lower of the two (the "
        "veto rules: the second stage can only lower a score); `[tag]` = the training variant "
        "(`configs/experiments/rescorer-<tag>.json`, otherwise `configs/rescorer.json`); `AdaBN` = the second stage's BatchNorm statistics re-estimated "
        "on the candidates of the images it scores (the calibration crops when choosing the threshold, the "
        "tested lab's crops when testing; no labels used). Each variant has its own threshold, chosen on the "
        "calibration crops; `threshold on LAB` = chosen instead on every label-complete crop of LAB, a lab that "
        "run held out of training as well (`--calibrate-on`), on the same trained model as the row above it.",
    ]
    lines += [
        "",
        "`tested on`: `all-val` = the label-complete crops of the validation slides of every lab (never "
        "trained on by either stage); a lab name = every label-complete crop of that lab, which the second stage "
        "of that row never saw (its threshold was chosen on the other labs' validation slides). `atnorm` rows "
        "(TCGA + MIDOG++ mitosis-only crops) have no negatives: recall only.",
    ]
    held = list(getattr(args, "detector_excluded", []) or [])
    if held:
        lines += [
            "",
            f"The first stage was trained without {held} (`exclude_labs` in its config; its checkpoint and "
            "threshold were chosen without them too): on those labs **both stages** are held out, a full "
            "leave-one-lab-out. On any other held-out lab only the second stage is, and `all-val` leaves "
            f"{held} out.",
        ]
    else:
        lines += [
            "",
            "Caveat: the first stage was trained on the training slides of every lab, so on a held-out lab's "
            "training slides its candidates are in-domain; only the second stage is left out here.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
