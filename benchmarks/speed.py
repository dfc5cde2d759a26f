"""CPU inference speed: seconds per HPF, FLOPs and achieved FLOP/s, and the fast-path steps.

Part 1 runs, on the same input image(s):
  (a) stock torchvision ``fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` with
      its own transform (it resizes every image to an 800 px shorter side),
  (b) mitodet's ``rdlm`` paper preset (ResNet-50, 256-channel FPN + GLB) at 0.425 um/px,
      tiled by :class:`mitodet.inference.predictor.Detector`,
  (c) the shipped default model (``--model``; a random ``rdlm-cpu`` if it is not there yet),
and reports seconds per HPF-equivalent (2084 x 2084 px at 0.25 um/px, 0.2715 mm^2), the
model FLOPs per network input (``torch.utils.flop_counter``: convolutions and matrix
products; RoIAlign and NMS are not counted) and the achieved FLOP/s against this CPU's
fp32 matmul peak measured with ``torch.mm`` at the same thread count.

Part 2 takes the shipped model from a plain baseline (``torch.no_grad``, 512 px tiles, one
tile per forward) through inference mode, fewer RPN proposals, channels-last, 4 tiles per
forward and an ONNX Runtime backbone (when ``onnxruntime`` is installed), each step on top
of the previous one, with its time ratio and a check that the detections above the
operating threshold are unchanged (matched within 1 px and 0.001 in score).

Parts 1 and 2 run as mitodet runs, with glibc keeping freed memory for reuse
(:func:`mitodet.runtime.keep_freed_memory`, set before anything is timed). Part 3 measures
that setting on its own: the shipped model with ``Detector``'s defaults on the same input,
in fresh processes with and without it (``MITODET_MALLOC=system``), alternating, with the
minor page faults and kernel CPU time per HPF. (It must be a fresh process: a process whose
heap was shaped by the C library's defaults does not behave like one that started with the
setting.)

Random weights give the same backbone cost as trained ones; the proposal and detection
counts (so the RoI-head cost) can differ, and a random model has no detections above the
threshold, so the detection check is only informative with a trained ``--model``.

Usage: python benchmarks/speed.py [--model DIR] [--image auto|real|synthetic] [--threads 2]
       [--repeats 3] [--proposals 300 50] [--out docs/benchmarks/speed.md] [--quick]
Prints markdown tables; the full mode also writes them to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import (
    DOCS,
    HPF_MM2,
    HPF_MPP,
    HPF_PX,
    command_line,
    environment_line,
    hpf_equivalents,
    median_time,
    self_stat,
    shipped_detector,
    write_doc,
)
from mitodet.runtime import MALLOC_ENV

TOL_PX = 1.0  # detections of two runs are "the same" within this distance (input pixels) ...
TOL_SCORE = 1e-3  # ... and this score difference


# ----------------------------------------------------------------------------- inputs
def load_inputs(kind: str, quick: bool) -> tuple[list[tuple[str, np.ndarray, float]], str]:
    """The images every model sees: [(name, (H, W, 3) uint8, mpp)] and a description."""
    from mitodet.data.spec import default_data_root

    frames = default_data_root() / "mitos_atypia14" / "A03" / "frames" / "x40"
    names = ("A03_03Ab", "A03_00Ab")
    have_real = all((frames / f"{n}.tiff").is_file() for n in names)
    if kind == "real" and not have_real:
        raise SystemExit(f"error: --image real needs the MITOS-ATYPIA-14 frames in {frames}")
    use_real = kind == "real" or (kind == "auto" and have_real)
    if use_real:
        from mitodet.data.images import read_rgb
        from mitodet.data.readers import read_mitos_atypia14

        mpp = 0.2455
        if quick:
            rec = {r.extra["frame"]: r for r in read_mitos_atypia14(frames.parents[2])}["A03_03Ab"]
            x, y = rec.mitoses[0] if len(rec.mitoses) else (768, 688)
            img = read_rgb(frames / "A03_03Ab.tiff")
            x0 = int(np.clip(x - 256, 0, img.shape[1] - 512))
            y0 = int(np.clip(y - 256, 0, img.shape[0] - 512))
            crop = np.ascontiguousarray(img[y0 : y0 + 512, x0 : x0 + 512])
            return [("A03_03Ab crop", crop, mpp)], (
                f"a 512 x 512 crop of the real MITOS-ATYPIA-14 frame A03_03Ab "
                f"(x0={x0}, y0={y0}) at {mpp} um/px, around a labelled mitosis"
            )
        imgs = [(n, read_rgb(frames / f"{n}.tiff"), mpp) for n in names]
        return imgs, (f"the two real MITOS-ATYPIA-14 frames A03_03Ab and A03_00Ab (1539 x 1376 px each at {mpp} um/px)")
    from mitodet.synthetic import synthetic_scene

    side = 512 if quick else HPF_PX
    img, _, _ = synthetic_scene(
        (side, side), n_mitoses=3 if quick else 12, n_lookalikes=3 if quick else 12, mpp=HPF_MPP, seed=0
    )
    return [("synthetic", img, HPF_MPP)], (
        f"a SYNTHETIC {side} x {side} px scene at {HPF_MPP} um/px (mitodet.synthetic; timing only, never accuracy)"
    )


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.require(img, requirements=["C", "W"])).permute(2, 0, 1).float().div_(255.0)


# ----------------------------------------------------------------------------- runners
class NetInputs:
    """Counts network inputs (tiles or resized images) through a model's backbone."""

    def __init__(self, model) -> None:
        self.count = 0
        self.shapes: list[tuple[int, int]] = []
        self.handle = model.backbone.register_forward_pre_hook(self._hook)

    def _hook(self, module, args) -> None:
        x = args[0]
        self.count += int(x.shape[0])
        self.shapes.append(tuple(int(s) for s in x.shape[-2:]))


def flop_count(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def matmul_peak(n: int, repeats: int) -> float:
    """Best fp32 ``torch.mm`` rate (FLOP/s) for n x n matrices at the current thread count."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    best = math.inf
    for _ in range(max(5, repeats)):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


def make_step_detector(model, *, grad: str = "inference", tile_px: int = 512, batch_size: int = 1):
    """A :class:`Detector` whose forward runs under ``torch.no_grad`` or ``torch.inference_mode``."""
    from mitodet.data.sampler import boxes_to_points
    from mitodet.inference.predictor import Detector

    class StepDetector(Detector):
        def predict_working(self, images):
            ctx = torch.inference_mode() if grad == "inference" else torch.no_grad()
            with ctx:
                outs = self.model([to_tensor(im) for im in images])
                return [(boxes_to_points(o["boxes"].numpy()), o["scores"].numpy().astype(np.float64)) for o in outs]

    return StepDetector(model, tile_px=tile_px, batch_size=batch_size)


def compare(base, other, threshold: float) -> dict:
    """Detections of two runs (lists of Detections, per image) at ``threshold``."""
    from mitodet.evaluation.matching import match_points

    n_a = n_b = matched = 0
    max_ds = max_dx = 0.0
    for a, b in zip(base, other):
        a, b = a.above(threshold), b.above(threshold)
        n_a, n_b = n_a + len(a.scores), n_b + len(b.scores)
        if len(a.scores) and len(b.scores):
            m = match_points(a.points, b.points, TOL_PX)
            matched += m.tp
            if m.tp:
                ds = np.abs(a.scores[m.pairs[:, 0]] - b.scores[m.pairs[:, 1]])
                max_ds = max(max_ds, float(ds.max()))
                max_dx = max(max_dx, float(m.distances.max()))
    same = n_a == n_b == matched and max_ds <= TOL_SCORE
    return {"n_base": n_a, "n": n_b, "matched": matched, "max_dscore": max_ds, "max_dpx": max_dx, "same": same}


def describe_change(c: dict) -> str:
    if c["n_base"] == 0 and c["n"] == 0:
        return "none on either side"
    txt = f"{c['matched']}/{c['n_base']} matched, {c['n']} now"
    if c["matched"]:
        txt += f", max shift {c['max_dpx']:.2f} px, max dscore {c['max_dscore']:.1e}"
    return ("same: " if c["same"] else "CHANGED: ") + txt


# ----------------------------------------------------------------------------- part 3
def _proc_counters() -> tuple[int, float]:
    """(minor page faults, kernel CPU seconds) of this process so far."""
    fields = self_stat()
    return int(fields[7]), int(fields[12]) / os.sysconf("SC_CLK_TCK")


def alloc_child(args) -> int:
    """In a fresh process: the shipped model with Detector's defaults, timed on the input."""
    torch.set_num_threads(args.threads)
    from mitodet.runtime import malloc_state

    images, _ = load_inputs(args.image, args.quick)
    det, _ = shipped_detector(args.model, tile_px=args.tile)  # as parts 1 and 2: random when missing

    def fn():
        return [det.detect_array(im, mpp, threshold=0.0) for _, im, mpp in images]

    fn()  # warm-up
    f0, k0 = _proc_counters()
    t, _ = median_time(fn, args.repeats)
    f1, k1 = _proc_counters()
    print(
        json.dumps(
            {"s": t, "faults": (f1 - f0) / args.repeats, "sys_s": (k1 - k0) / args.repeats, "malloc": malloc_state()}
        )
    )
    return 0


def allocator_ab(args, n_hpf: float) -> list[tuple[str, float, float, float, str]]:
    """Part 3: [(setting, s / HPF, faults / HPF, kernel s / HPF, state)] from fresh processes."""
    runs: dict[str, list[dict]] = {"system": [], "keep": []}
    for _ in range(1 if args.quick else args.repeats):
        for mode in ("system", "keep"):
            env = dict(os.environ)
            env.pop(MALLOC_ENV, None)
            if mode == "system":
                env[MALLOC_ENV] = "system"
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--_alloc-child",
                "--threads",
                str(args.threads),
                "--image",
                args.image,
                "--tile",
                str(args.tile),
                "--repeats",
                str(args.repeats),
            ]
            cmd += ["--model", str(args.model)] if args.model else []
            cmd += ["--quick"] if args.quick else []
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"the allocator run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            runs[mode].append(json.loads(lines[-1]))
    out = []
    for mode, label in (
        ("system", "C library defaults (`MITODET_MALLOC=system`)"),
        ("keep", "glibc keeps freed memory (mitodet's default)"),
    ):
        rs = runs[mode]
        med = statistics.median
        out.append(
            (
                label,
                med(r["s"] for r in rs) / n_hpf,
                med(r["faults"] for r in rs) / n_hpf,
                med(r["sys_s"] for r in rs) / n_hpf,
                rs[0]["malloc"],
            )
        )
    return out


# ----------------------------------------------------------------------------- main
def pipeline_part(emit, images, n_hpf: float, model_dir: Path, repeats: int) -> None:
    """Part 4: the shipped pipeline's first and second stage timed apart."""
    from mitodet.inference.predictor import Detector

    emit("## The shipped pipeline: first and second stage")
    emit()
    pipe = Detector.load(model_dir) if (model_dir / "model.safetensors").is_file() else None
    if pipe is None or pipe.rescorer is None:
        emit(f"The model at {model_dir} has no second stage (`rescorer/`): nothing to split.")
    else:

        def run_pipe():
            out = [pipe.detect_array(im, mpp, threshold=0.0) for _, im, mpp in images]
            return (sum(o.info["second_stage_seconds"] for o in out), sum(o.info["n_rescored"] for o in out))

        run_pipe()  # warm-up
        walls, seconds2, n2 = [], [], 0
        for _ in range(repeats):
            t = time.perf_counter()
            s2, n2 = run_pipe()
            walls.append(time.perf_counter() - t)
            seconds2.append(s2)
        wall, s2 = statistics.median(walls), statistics.median(seconds2)
        emit(
            f"`Detector.detect_array` with the model's second stage ({pipe.rescorer.config.patch_px} px patches at "
            f"{pipe.rescorer.config.mpp} um/px, candidates >= {pipe.rescorer.config.min_candidate_score}); median "
            f"of {repeats} run(s) after a warm-up."
        )
        emit()
        emit("| stage | s / HPF | candidates / HPF |")
        emit("|---|---:|---:|")
        emit(f"| first stage (detector, tiling, merge) | {(wall - s2) / n_hpf:.3f} | |")
        emit(f"| second stage (patches + CNN) | {s2 / n_hpf:.3f} | {n2 / n_hpf:.1f} |")
        emit(f"| **both** | **{wall / n_hpf:.3f}** | |")
    emit()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument(
        "--model",
        default=None,
        help="shipped model folder (default: the bundled rdlm-cpu; a random rdlm-cpu when it is missing)",
    )
    ap.add_argument(
        "--image",
        choices=("auto", "real", "synthetic"),
        default="auto",
        help="input: the real MITOS-ATYPIA-14 frames (auto: when present) or a synthetic HPF",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median), after a warm-up")
    ap.add_argument("--tile", type=int, default=512, help="tile side at the working resolution")
    ap.add_argument(
        "--proposals",
        type=int,
        nargs=2,
        default=(300, 50),
        metavar=("PRE", "POST"),
        help="test-time RPN proposals (per level before NMS, per tile after NMS) for the fast path",
    )
    ap.add_argument("--matmul-n", type=int, default=2048)
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime step")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"markdown file to write (full mode default: {DOCS / 'speed.md'}; quick mode: none)",
    )
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: one 512 x 512 crop, 1 repeat, all stages (< 1 min)"
    )
    ap.add_argument(
        "--pipeline-only",
        action="store_true",
        help="only time the shipped pipeline's two stages (part 4); writes docs/benchmarks/speed_pipeline.md",
    )
    ap.add_argument("--_alloc-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._alloc_child:
        if args.quick:
            args.repeats = 1
        return alloc_child(args)
    if args.quick:
        args.repeats = 1
    elif args.out is None:
        args.out = DOCS / ("speed_pipeline.md" if args.pipeline_only else "speed.md")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    lines: list[str] = []

    def emit(s: str = "") -> None:
        lines.append(s)
        print(s, flush=True)

    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    from mitodet.inference.predictor import DEFAULT_MODEL_DIR, Detector
    from mitodet.models import build_detector, load_detector
    from mitodet.models.builder import count_parameters
    from mitodet.runtime import keep_freed_memory

    keep_freed_memory()  # as Detector does; part 3 measures it on its own

    images, input_desc = load_inputs(args.image, args.quick)
    n_hpf = sum(hpf_equivalents(im.shape[:2], mpp) for _, im, mpp in images)
    model_dir = Path(args.model) if args.model else DEFAULT_MODEL_DIR
    if args.pipeline_only:
        emit(f"Command: `{command_line()}`")
        emit()
        emit(f"Machine: {environment_line(args.threads)}.")
        emit()
        emit(
            f"Input: {input_desc}; {n_hpf:.3f} HPF-equivalents in all (1 HPF-equivalent = {HPF_PX} x {HPF_PX} px "
            f"at {HPF_MPP} um/px)."
        )
        emit()
        pipeline_part(emit, images, n_hpf, model_dir, args.repeats)
        write_doc(args.out, "Inference speed of the shipped pipeline on CPU", "\n".join(lines))
        return 0
    if (model_dir / "model.safetensors").is_file():
        shipped = load_detector(model_dir)
        shipped_name = f"shipped `{shipped.config.preset}` ({model_dir.name}, trained)"
        shipped_note = f"The shipped model is {model_dir}."
    else:
        shipped = build_detector("rdlm-cpu").eval()
        shipped_name = "`rdlm-cpu` (RANDOM weights: shipped model missing)"
        shipped_note = (
            f"**No shipped model was found at {model_dir}**, so row (c) and part 2 use a randomly "
            "initialised `rdlm-cpu` (same architecture and settings). Its backbone cost is the "
            "trained model's; its proposal and detection counts are not, and it has no detections "
            "above the threshold, so the detection checks below cannot show a change."
        )

    emit(f"Command: `{command_line()}`")
    emit()
    emit(f"Machine: {environment_line(args.threads)}.")
    emit()
    emit(
        f"Input: {input_desc}; {n_hpf:.3f} HPF-equivalents in all (1 HPF-equivalent = {HPF_PX} x {HPF_PX} px "
        f"at {HPF_MPP} um/px = {HPF_MM2:.4f} mm^2). "
        + (
            "Quick mode: part 1 times ONE cold run (the FLOP-counting one), part 2 one run after a warm-up. "
            if args.quick
            else f"Times: median of {args.repeats} runs after a warm-up (the FLOP-counting run). "
        )
        + shipped_note
    )
    emit()

    peak = matmul_peak(args.matmul_n, args.repeats)
    emit(
        f"fp32 matmul peak (`torch.mm`, {args.matmul_n} x {args.matmul_n}, {args.threads} thread(s), best of "
        f"{max(5, args.repeats)}): **{peak / 1e9:.1f} GFLOP/s**."
    )
    emit()

    # ------------------------------------------------------------------ part 1
    emit("## Models on the same input")
    emit()
    emit(
        "| model | network input | parameters | inputs | s / HPF | GFLOP / input | GFLOP / HPF | achieved GFLOP/s | % of matmul peak |"
    )
    emit("|---|---|---:|---:|---:|---:|---:|---:|---:|")

    stock = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    tensors = [to_tensor(im) for _, im, _ in images]

    def run_stock():
        with torch.inference_mode():
            for t in tensors:
                stock([t])

    rdlm = Detector(build_detector("rdlm").eval(), tile_px=600)  # the paper's 600 x 600 network input
    ship = Detector(shipped, tile_px=args.tile)

    def runner(det):
        return lambda: [det.detect_array(im, mpp, threshold=0.0) for _, im, mpp in images]

    rows = [
        (
            "(a) torchvision `fasterrcnn_resnet50_fpn` (stock, random)",
            stock,
            run_stock,
            "its transform: 800 px shorter side",
        ),
        (
            "(b) `rdlm` paper preset (random)",
            rdlm.model,
            runner(rdlm),
            f"600 px tiles (the paper's input size) at {rdlm.mpp} um/px",
        ),
        (f"(c) {shipped_name}", ship.model, runner(ship), f"{args.tile} px tiles at {ship.mpp} um/px"),
    ]
    part1 = {}
    for name, model, fn, how in rows:
        counter = NetInputs(model)
        t0 = time.perf_counter()
        flops = flop_count(fn)  # also the warm-up
        t_flop = time.perf_counter() - t0
        n_inputs = counter.count
        shapes = sorted(set(counter.shapes))
        counter.handle.remove()
        if args.quick:
            t = t_flop  # quick mode: the FLOP-counting run is the only (cold) run
        else:
            t, _ = median_time(fn, args.repeats)
        s_hpf = t / n_hpf
        part1[name] = s_hpf
        shape_txt = ", ".join(f"{h}x{w}" for h, w in shapes[:3]) + (" ..." if len(shapes) > 3 else "")
        emit(
            f"| {name} | {how} ({shape_txt}) | {count_parameters(model):,} | {n_inputs} | {s_hpf:.3f} | "
            f"{flops / max(1, n_inputs) / 1e9:.2f} | {flops / n_hpf / 1e9:.1f} | {flops / t / 1e9:.1f} | "
            f"{100 * flops / t / peak:.0f}% |"
        )
    emit()
    emit(
        "Inputs: network forward inputs (tiles or resized images) for the whole input; shapes are after the "
        "models' own padding to a multiple of 32. FLOPs count convolutions and matrix products "
        "(multiply-add = 2 FLOPs); RoIAlign, NMS and resampling are not counted but are in the times."
    )
    emit()
    del stock, rdlm

    # ------------------------------------------------------------------ part 2
    emit("## Fast path of the shipped model")
    emit()
    pre, post = args.proposals
    thr = float(shipped.config.score_threshold)
    steps = [
        ("baseline: `torch.no_grad`, 1 tile per forward", {}),
        ("+ `torch.inference_mode`", {"grad": "inference"}),
        (
            f"+ fewer proposals (pre-NMS {pre}/level, post-NMS {post}; preset "
            f"{shipped.config.rpn_pre_nms_top_n_test}/{shipped.config.rpn_post_nms_top_n_test})",
            {"proposals": (pre, post)},
        ),
        ("+ channels-last", {"channels_last": True}),
        ("+ 4 tiles per forward", {"batch": 4}),
    ]
    onnx_reason = None
    if args.no_onnx:
        onnx_reason = "skipped (--no-onnx)"
    else:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401

            steps.append(("+ ONNX Runtime backbone (encoder + neck)", {"onnx": True}))
        except ImportError:
            onnx_reason = "not run: `onnxruntime`/`onnx` are not installed (pip install 'mitodet[onnx]')"

    from mitodet.inference.fastpath import backbone_parity, set_test_proposals, to_channels_last, with_onnx_backbone

    emit(
        f"Each step adds one change to the previous one. Detections are compared with the baseline's at the "
        f"operating threshold {thr:g} (matched within {TOL_PX:g} px, score within {TOL_SCORE:g})."
    )
    emit()
    emit(
        "| step | s / HPF | x vs previous | x vs baseline | detections >= threshold vs baseline | top-20 candidates vs baseline |"
    )
    emit("|---|---:|---:|---:|---|---|")
    settings = {"grad": "no_grad", "proposals": None, "channels_last": False, "batch": 1, "onnx": False}
    base_dets, prev_t, base_t = None, None, None
    tmp = tempfile.TemporaryDirectory(prefix="mitodet-speed-")
    onnx_diff = None
    results = []
    for label, change in steps:
        settings.update(change)
        model = copy.deepcopy(shipped).eval()
        if settings["proposals"]:
            set_test_proposals(model, *settings["proposals"])
        if settings["onnx"]:
            model = with_onnx_backbone(model, Path(tmp.name) / "backbone.onnx", threads=args.threads)
            onnx_diff = backbone_parity(shipped, model, torch.randn(2, 3, 256, 320))
            if settings["channels_last"]:
                model.to(memory_format=torch.channels_last)  # the torch heads; ONNX Runtime picks its own layout
        elif settings["channels_last"]:
            to_channels_last(model)
        det = make_step_detector(model, grad=settings["grad"], tile_px=args.tile, batch_size=settings["batch"])
        fn = runner(det)
        dets = fn()  # warm-up, and the detections of this step
        t, _ = median_time(fn, args.repeats)
        s_hpf = t / n_hpf
        if base_dets is None:
            base_dets, base_t, prev_t = dets, t, t
        at_thr = compare(base_dets, dets, thr)
        # the 20 best candidates of the baseline (whatever their score), per image
        k = 20
        top_thr = min((float(np.sort(d.scores)[-k]) if len(d.scores) >= k else 0.0) for d in base_dets)
        top = compare(base_dets, dets, max(top_thr, 1e-9))
        results.append((label, s_hpf, prev_t / t, base_t / t, at_thr, top))
        emit(
            f"| {label} | {s_hpf:.3f} | {prev_t / t:.2f} | {base_t / t:.2f} | {describe_change(at_thr)} | "
            f"{describe_change(top)} |"
        )
        prev_t = t
    tmp.cleanup()
    emit()
    if onnx_reason:
        emit(f"ONNX Runtime step: {onnx_reason}.")
    if onnx_diff is not None:
        emit(
            f"ONNX Runtime parity: on a random normalised (2, 3, 256, 320) batch the neck outputs differ by at "
            f"most {onnx_diff[0]:.2e} (absolute), {onnx_diff[1]:.2e} of the level's largest value (relative)."
        )
    emit()
    emit(
        "x > 1 is faster. 'top-20 candidates' compares every candidate scoring at least the baseline's 20th best "
        "score on each image, to show changes that the threshold would hide."
    )
    emit()
    # ------------------------------------------------------------------ part 4 (printed before part 3)
    pipeline_part(emit, images, n_hpf, model_dir, args.repeats)
    # ------------------------------------------------------------------ part 3
    emit("## Allocator: glibc keeping freed memory")
    emit()
    emit(
        f"The shipped model with `Detector`'s defaults (inference mode, 4 tiles per forward, {args.tile} px tiles) on "
        f"the same input, in fresh processes, alternating the two settings; median of "
        f"{1 if args.quick else args.repeats} process(es) per setting, each the median of {args.repeats} run(s) "
        "after a warm-up. Page faults and kernel time are per HPF-equivalent."
    )
    emit()
    emit("| allocator | s / HPF | x vs C library defaults | minor page faults / HPF | kernel CPU s / HPF |")
    emit("|---|---:|---:|---:|---:|")
    try:
        ab = allocator_ab(args, n_hpf)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    for label, s_hpf, faults, sys_s, _ in ab:
        emit(f"| {label} | {s_hpf:.3f} | {ab[0][1] / s_hpf:.2f} | {faults:,.0f} | {sys_s:.2f} |")
    emit()
    emit(f"Setting in the second process: {ab[1][4]}.")
    emit()
    emit(f"Total benchmark time: {time.perf_counter() - t_start:.0f} s.")
    write_doc(args.out, "Inference speed on CPU", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
