"""``mitodet detect``: find mitotic figures in HPF images and whole-slide images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mitodet.commands._common import fail

DESCRIPTION = """\
Find mitotic figures in H&E images and write, per image, the detections (CSV, QuPath
GeoJSON, MIDOG JSON), an overlay picture, and a clinical read-out: the count, the tissue
area, mitoses per mm², the 10-HPF hotspot and the Nottingham mitotic score.

PATH can be high-power-field images (PNG, JPEG, BMP, TIFF; 8-bit RGB, RGBA or grey),
whole-slide images (SVS, NDPI, MRXS, SCN, BIF, pyramidal TIFF / OME-TIFF, ...; vendor
formats need OpenSlide: pip install "mitodet[wsi]") and folders of them.

The pixel size (µm per pixel) is read from the file; --mpp overrides it. A file that does
not state it (or states a screen value such as 72 or 96 dpi) is refused with a message:
pass --mpp then (0.25 for a typical x40 scan, 0.5 for x20). mitodet never guesses it.
"""

EPILOG = """\
outputs, in --out (NAME = the file name without extension):
  NAME.csv            detections: x,y,score (level-0 pixels), x_um,y_um
  NAME.geojson        the same for QuPath (File > Import objects)
  NAME.midog.json     the same in millimetres (grand-challenge "Multiple points")
  NAME.overlay.jpg    the detections drawn on the image (on a thumbnail for slides);
                      with --gt: matched (TP), spurious (FP) and missed (FN) in colours
  NAME.heatmap.jpg    where the network's Global Bank attends (HPF images; with --heatmap)
  NAME.summary.md     the read-out; NAME.summary.json the same, written last
  summary.csv         one line per input: done / skipped (already done) / failed + why

A stopped run can be started again with the same command: finished images are skipped.
Slides: background is found on a thumbnail and skipped; only tissue is analysed.
The Nottingham score uses the cut-off table row for --field-area-mm2 (default 0.237 mm²,
the digital standard HPF); the row used is written in the summary.
Automated counts are an aid: a pathologist reviews them.

examples:
  mitodet detect slide.svs
  mitodet detect hpf/ --mpp 0.2455 --out results/
  mitodet detect frame.png --mpp 0.25 --gt frame.csv     # also prints precision/recall/F1
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "detect",
        help="find mitotic figures in images and slides; counts and scores",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, slides or folders")
    p.add_argument(
        "--model",
        default="default",
        metavar="default|DIR",
        help="the bundled model (default) or a model folder from 'mitodet train'",
    )
    p.add_argument("--out", default="mitodet-out", metavar="DIR", help="output folder (default: ./mitodet-out)")
    p.add_argument(
        "--mpp",
        type=float,
        default=None,
        metavar="UM_PER_PX",
        help="pixel size in micrometres per pixel for every input; overrides the files' metadata",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="T",
        help="keep detections with score >= T (default: the model's operating threshold; 0 keeps every candidate)",
    )
    p.add_argument(
        "--gt",
        default=None,
        metavar="FILE",
        help="ground-truth points (CSV, MITOS-ATYPIA-14 *_mitosis.csv, MIDOG JSON); prints "
        "precision/recall/F1 per image (matched within --radius-um) and draws TP/FP/FN",
    )
    p.add_argument(
        "--radius-um",
        type=float,
        default=None,
        metavar="UM",
        help="matching distance for --gt in micrometres (default by the file's format, as "
        "'mitodet evaluate' scores it: 7.5 for MIDOG JSON, else 8, the MITOS-ATYPIA-14 criterion)",
    )
    p.add_argument(
        "--field-area-mm2",
        type=float,
        default=0.237,
        metavar="MM2",
        help="area of one high-power field for the per-10-HPF count and the Nottingham score "
        "(default 0.237, the digital standard HPF)",
    )
    p.add_argument(
        "--tissue",
        choices=("auto", "on", "off"),
        default="auto",
        help="find tissue and skip background: auto = for slides only (default)",
    )
    p.add_argument("--heatmap", action="store_true", help="also write NAME.heatmap.jpg (the GLB heat-map, HPF images)")
    p.add_argument("--no-heatmap", action="store_true", help="no heat-map (the default; kept for older scripts)")
    p.add_argument("--no-overlay", action="store_true", help="do not write NAME.overlay.jpg")
    p.add_argument("--recursive", action="store_true", help="also look into sub-folders of folder inputs")
    p.add_argument("--overwrite", action="store_true", help="process every input again, even if already done")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu (default), cuda or cuda:N: where the network runs (refused at once where there is no such GPU)",
    )
    p.add_argument(
        "--case-by",
        choices=("folder", "file", "all"),
        default="folder",
        help="which images form a case, whose counts and tissue are summed into one read-out "
        "(<case>.case.json/.md, cases.csv): the images of one input folder (default), each file, or all",
    )
    p.add_argument(
        "--extrapolate-score",
        action="store_true",
        help="give a case with less than 10 HPF of tissue a Nottingham score scaled to 10 HPF (flagged "
        "EXTRAPOLATED everywhere); by default its score is withheld with the reason",
    )
    p.add_argument(
        "--allow-coarse",
        action="store_true",
        help="run images coarser than twice the model's working pixel size (mitoses unresolved; by default "
        "such a file fails before any tile runs, with the reason)",
    )
    p.add_argument(
        "--reader",
        choices=("auto", "openslide", "tifffile"),
        default="auto",
        help="slide reader (default: OpenSlide for vendor formats, tifffile for TIFF pyramids)",
    )
    p.add_argument("--batch-size", type=int, default=4, metavar="N", help="tiles per forward pass (default 4)")
    p.add_argument(
        "--tile-px",
        type=int,
        default=512,
        metavar="PX",
        help="tile side at the model's working resolution (default 512)",
    )
    p.add_argument(
        "--onnx",
        action="store_true",
        help="run the encoder and neck in ONNX Runtime (needs the 'onnx' extra; about 1.25x faster)",
    )
    p.add_argument(
        "--no-second-stage",
        action="store_true",
        help="run the detector alone: skip the model's second stage (the CNN that re-scores each "
        "candidate at native resolution), and use the detector's own threshold",
    )
    p.add_argument(
        "--no-atypical",
        action="store_true",
        help="do not classify the detections atypical / normal (the model's atypical/ classifier)",
    )
    p.add_argument(
        "--flip-tta",
        action="store_true",
        help="test-time augmentation: also run each tile mirrored and average the scores "
        "(about 2x slower; on the MITOS-ATYPIA-14 frames it removed 3 of 10 false "
        "positives, see the model card)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for the network (default: torch's choice, one per core); use 1 on a "
        "machine busy with other work",
    )
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="where to run: local (this process, the default) or ray (Ray workers: a Ray cluster "
        "started on this machine for this run, or the cluster of --address / $RAY_ADDRESS; "
        "needs pip install 'mitodet[ray]'; see docs/distributed.md)",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="with --backend ray: an existing Ray cluster (auto, HEAD_IP:6379 or ray://HEAD_IP:10001); "
        "default: $RAY_ADDRESS when set, else a Ray cluster on this machine",
    )
    p.add_argument(
        "--ray-workers",
        type=int,
        default=None,
        metavar="N",
        help="with --backend ray: workers, each holding the model and using --threads CPUs "
        "(default: as many as the cluster's CPUs allow)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _fail(msg: str) -> int:
    return fail("detect", msg)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mitodet.checks import check_device, check_mpp, check_threshold, positive_int
    from mitodet.config import DetectConfig
    from mitodet.data.records import DataFormatError
    from mitodet.inference.pipeline import detect_files
    from mitodet.inference.predictor import Detector

    try:
        if args.mpp is not None:
            check_mpp(args.mpp, "--mpp")
        check_threshold(args.threshold, "--threshold")
        config = DetectConfig(  # every option checked here, before the model loads
            mpp=args.mpp,
            threshold=args.threshold,
            gt=args.gt,
            field_area_mm2=args.field_area_mm2,
            tissue=args.tissue,
            heatmap=args.heatmap and not args.no_heatmap,
            overlay=not args.no_overlay,
            radius_um=args.radius_um,
            reader=args.reader,
            allow_coarse=args.allow_coarse,
            recursive=args.recursive,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        positive_int(args.batch_size, "--batch-size")
        check_device(args.device, "--device")  # before the model loads
        for flag, value in (("--ray-workers", args.ray_workers), ("--threads", args.threads)):
            if value is not None:
                positive_int(value, flag)
    except ValueError as exc:
        return _fail(str(exc))
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:  # before the model loads: a typo answers at once
        return _fail(f"no such file or folder: {', '.join(map(str, missing))}; check the path(s)")
    if args.backend == "ray" and args.device != "cpu":
        return _fail("--backend ray runs its workers on CPUs; drop --device (or use the local backend on the GPU)")
    if args.backend != "ray" and (args.address is not None or args.ray_workers is not None):
        return _fail("--address and --ray-workers need --backend ray")
    if args.backend == "ray":
        from mitodet.inference.ray_backend import import_ray

        try:
            import_ray()
        except ImportError as exc:
            return _fail(str(exc))
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        detector = Detector.load(
            args.model,
            second_stage=not args.no_second_stage,
            atypical=not args.no_atypical,
            tile_px=args.tile_px,
            batch_size=args.batch_size,
            flip_tta=args.flip_tta,
            backend="onnx" if args.onnx else "torch",
            device=args.device,
        )
    except (FileNotFoundError, ValueError, ImportError) as exc:
        return _fail(str(exc))

    def say(msg: str) -> None:
        tqdm.write(msg, file=sys.stdout)

    def say_err(msg: str) -> None:
        tqdm.write(msg, file=sys.stderr)

    options = dict(config=config, log=say, log_error=say_err)
    try:
        if args.backend == "ray":
            from mitodet.inference.ray_backend import detect_files_ray

            batch = detect_files_ray(
                args.paths,
                args.out,
                detector=detector,
                address=args.address,
                num_workers=args.ray_workers,
                cpus_per_worker=args.threads or 1,
                **options,
            )
        else:
            batch = detect_files(args.paths, args.out, detector=detector, **options)
    except (ValueError, FileNotFoundError, DataFormatError, TimeoutError) as exc:
        return _fail(str(exc))
    n_done, n_skip, n_fail = batch.count("done"), batch.count("skipped"), batch.count("failed")
    from mitodet.report.case import write_cases

    try:
        for case in write_cases(
            batch.results, batch.out_dir, args.case_by, args.field_area_mm2, extrapolate=args.extrapolate_score
        ):
            print(case.line())
    except (OSError, ValueError) as exc:
        return _fail(f"writing the case read-out into {batch.out_dir}: {exc}")
    print(
        f"mitodet detect: {n_done} done, {n_skip} skipped (already done), {n_fail} failed; "
        f"outputs in {batch.out_dir}, index {batch.index_path}"
    )
    return 0 if batch.ok else 1
