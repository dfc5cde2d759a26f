"""How fast ``mitodet view`` is usable, how fast it serves tiles of a big slide, and its memory.

1. Writes a SYNTHETIC 50,000 x 50,000 px pyramidal tiled TIFF (levels as top-level pages,
   OpenSlide's generic-TIFF layout, zlib): glass everywhere but a 4,000 px block of real H&E
   (the shipped CC0 sample, mirrored) in the middle, at the sample's 0.499 um/px, so it is a
   25 x 25 mm slide that is mostly glass, as real ones are.
2. Runs ``mitodet detect`` on it (the tissue mask limits it to the block).
3. Starts ``mitodet view`` in a subprocess and measures: seconds until the server answers,
   and (with Playwright and Chromium) until the image page is usable in headless Chromium
   (every marker drawn, the read-out shown); the median and 95th percentile of ``--requests``
   random deep-zoom tile requests over the 8 finest levels, and as many on the tissue at the
   3 finest (sequential, no server cache: every tile is read and encoded); the
   server's resident memory (VmRSS) after start, after the tiles, and its peak (VmHWM).

    python benchmarks/viewer.py [--work runs/viewer-bench] [--size 50000] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, command_line, load_note, write_doc  # noqa: E402

SAMPLE = ROOT / "samples" / "CMU-1-Small-Region.svs"
MPP = 0.499
TILE = 256
GLASS = 242


def _block(side: int) -> np.ndarray:
    """A ``side`` square of real H&E: the sample's pixels, mirrored to fill it."""
    from mitodet.inference.slide import open_image

    with open_image(SAMPLE) as src:
        h, w = src.shape
        a = src.read_region(0, (0, 0, w, h))
    reps = (math.ceil(side / h) + 1, math.ceil(side / w) + 1)
    rows = [
        np.concatenate([a if (i + j) % 2 == 0 else a[:, ::-1] for j in range(reps[1])], axis=1) for i in range(reps[0])
    ]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:side, :side])


def write_slide(path: Path, size: int, block_px: int) -> None:
    import tifffile
    from PIL import Image

    block0 = _block(block_px)
    b0 = (size - block_px) // 2
    glass = np.full((TILE, TILE, 3), GLASS, dtype=np.uint8)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        k = 0
        while True:
            s = 2**k
            w = h = math.ceil(size / s)
            bx0, bside = b0 // s, max(1, block_px // s)
            block = (
                block0 if k == 0 else np.asarray(Image.fromarray(block0).resize((bside, bside), Image.Resampling.BOX))
            )

            def tiles(w=w, h=h, bx0=bx0, bside=bside, block=block):
                for ty in range(0, h, TILE):
                    for tx in range(0, w, TILE):
                        x0, y0, x1, y1 = (
                            max(tx, bx0),
                            max(ty, bx0),
                            min(tx + TILE, bx0 + bside),
                            min(ty + TILE, bx0 + bside),
                        )
                        if x1 <= x0 or y1 <= y0:
                            yield glass
                            continue
                        t = glass.copy()
                        t[y0 - ty : y1 - ty, x0 - tx : x1 - tx] = block[y0 - bx0 : y1 - bx0, x0 - bx0 : x1 - bx0]
                        yield t

            res = 1e4 / (MPP * s)
            extra = (
                {"description": f"mitodet SYNTHETIC viewer benchmark slide; mpp={MPP}"}
                if k == 0
                else {"subfiletype": 1}
            )
            tif.write(
                tiles(),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                compression="zlib",
                resolution=(res, res),
                resolutionunit="CENTIMETER",
                metadata=None,
                **extra,
            )
            if max(w, h) <= 1024:
                break
            k += 1


def _get(url: str, timeout: float = 30.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _mem_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            k, v = line.split(":")
            out[k] = int(v.split()[0])
    return out


def _page_ready_s(url: str, t_start: float) -> float | None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path(chromium).exists():
        return None
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=args, headless=True)
        page = b.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=60000)
        t = time.perf_counter() - t_start
        b.close()
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--work", type=Path, default=ROOT / "runs" / "viewer-bench", help="scratch folder (the slide is ~0.2 GB)"
    )
    ap.add_argument("--size", type=int, default=50_000, help="slide side in pixels (default 50000)")
    ap.add_argument("--block", type=int, default=4000, help="side of the tissue block in pixels (default 4000)")
    ap.add_argument("--requests", type=int, default=200, help="tile requests to time (default 200)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random tile addresses")
    ap.add_argument("--doc", type=Path, default=None, help="also write the table to this Markdown file")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the detect run (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="smoke test: a 6,000 px slide, 20 tiles, a temporary folder")
    args = ap.parse_args()
    if args.quick:
        import tempfile

        scratch = tempfile.TemporaryDirectory()  # kept alive (and removed) with main's frame
        args.work, args.size, args.block, args.requests, args.doc = Path(scratch.name), 6000, 1000, 20, None
    args.work.mkdir(parents=True, exist_ok=True)
    slide = args.work / f"synthetic-{args.size}.tif"
    if not slide.is_file():
        t = time.perf_counter()
        tmp = slide.with_suffix(".tif.part")
        write_slide(tmp, args.size, args.block)
        tmp.replace(slide)
        print(
            f"made the slide {slide} ({slide.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s",
            flush=True,
        )
    out = args.work / "out"
    mitodet = [sys.executable, "-m", "mitodet.cli"]
    threads = [] if args.threads is None else ["--threads", str(args.threads)]
    subprocess.run([*mitodet, "detect", str(slide), "--out", str(out), "--no-progress", *threads], check=True)
    name = slide.stem
    summary = json.loads((out / f"{name}.summary.json").read_text())

    t0 = time.perf_counter()
    proc = subprocess.Popen([*mitodet, "view", str(out), "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://[\d.]+:\d+/", line)
        if not m:
            raise SystemExit(f"mitodet view did not start: {line!r}")
        base = m.group(0)
        _get(base)
        t_server = time.perf_counter() - t0
        mem_start = _mem_kb(proc.pid)
        t_page = _page_ready_s(f"{base}image/{name}", t0)
        dzi = _get(f"{base}dz/{name}.dzi").decode()
        w = int(re.search(r'Width="(\d+)"', dzi).group(1))
        h = int(re.search(r'Height="(\d+)"', dzi).group(1))
        top = math.ceil(math.log2(max(w, h)))
        rng = random.Random(args.seed)
        lat = []
        for _ in range(args.requests):
            level = rng.randint(top - 7, top)
            s = 2 ** (top - level)
            cols, rows = math.ceil(math.ceil(w / s) / 254), math.ceil(math.ceil(h / s) / 254)
            c, r = rng.randrange(cols), rng.randrange(rows)
            t = time.perf_counter()
            _get(f"{base}dz/{name}_files/{level}/{c}_{r}.jpeg")
            lat.append(time.perf_counter() - t)
        # what a reader browses: tiles on the tissue, at the 3 finest levels
        b0 = (w - args.block) // 2
        lat_tissue = []
        for _ in range(args.requests):
            level = rng.randint(top - 2, top)
            s = 2 ** (top - level)
            c = rng.randrange(b0 // s // 254, (b0 + args.block) // s // 254)
            r = rng.randrange(b0 // s // 254, (b0 + args.block) // s // 254)
            t = time.perf_counter()
            _get(f"{base}dz/{name}_files/{level}/{c}_{r}.jpeg")
            lat_tissue.append(time.perf_counter() - t)
        mem_end = _mem_kb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    def stats(values: list[float]) -> str:
        ms = sorted(1000 * v for v in values)
        p95 = ms[min(len(ms) - 1, math.ceil(0.95 * len(ms)) - 1)]
        return f"median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms"

    rows = [
        (
            "slide",
            f"{w} x {h} px at {MPP} um/px, {slide.stat().st_size / 1e6:.0f} MB on disk (synthetic; real H&E block)",
        ),
        ("detections / candidates", f"{summary['count']} / {summary['detection'].get('n_candidates')}"),
        ("server answers", f"{t_server:.2f} s after `mitodet view` starts"),
        (
            "image page usable in Chromium",
            "n/a (no Playwright/Chromium)" if t_page is None else f"{t_page:.2f} s after start",
        ),
        (f"tile latency, {args.requests} random tiles anywhere, 8 finest levels", stats(lat)),
        (f"tile latency, {args.requests} random tiles on the tissue, 3 finest levels", stats(lat_tissue)),
        (
            "server memory (VmRSS)",
            f"{mem_start['VmRSS'] / 1024:.0f} MB after start, {mem_end['VmRSS'] / 1024:.0f} MB after the tiles; "
            f"peak {mem_end['VmHWM'] / 1024:.0f} MB (level 0 would be {w * h * 3 / 2**30:.1f} GiB)",
        ),
    ]
    table = "| | |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    body = f"Command: `{command_line()}`\n\n{table}\n\nMachine: {load_note()}.\n"
    print(body)
    write_doc(args.doc, "Viewer: time to a usable page, tile latency, memory", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
