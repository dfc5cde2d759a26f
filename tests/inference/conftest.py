"""Fixtures for the detect tests: a tiny random model, a network-free blob detector, and
writers for small test images and pyramidal TIFFs.

The images here are cartoons (pink "tissue", dark discs as "mitoses") or SYNTHETIC scenes:
they exercise reading, tiling and outputs, never detection accuracy.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from bad_inputs import write_bad_corpus  # tests/inference is on sys.path (pytest rootdir import mode)
from PIL import Image

from mitodet.inference.predictor import Detector

PINK = (232, 160, 210)
DARK = (60, 20, 90)
GLASS = (246, 246, 244)


class _NoNet:
    """Stands in for the network: a config and nothing else."""

    def __init__(self, config) -> None:
        self.config = config

    def eval(self) -> "_NoNet":
        return self

    def state_dict(self) -> dict:
        return {}


class BlobDetector(Detector):
    """A Detector whose 'network' returns the centroids of dark blobs in each tile.

    A blob cut by a tile's read-box edge gives a centroid within its radius of that edge,
    i.e. in the overlap margin, which the ownership rule discards; the tile whose core
    holds the centre sees the blob whole. So a correct tiling path finds every blob once.
    """

    def __init__(self, mpp: float = 0.5, tile_px: int = 128, overlap_px: int = 40, **kw) -> None:
        from mitodet.models.presets import get_preset

        cfg = get_preset("fpn-cpu").replace(mpp=mpp)
        super().__init__(_NoNet(cfg), tile_px=tile_px, overlap_px=overlap_px, **kw)
        self.crop_shapes: list[tuple[int, int]] = []

    def predict_working(self, images):
        from scipy import ndimage

        out = []
        for im in images:
            self.crop_shapes.append(im.shape[:2])
            dark = im.astype(np.float32).mean(axis=2) < 100
            lab, n = ndimage.label(dark)
            if n == 0:
                out.append((np.zeros((0, 2)), np.zeros(0)))
                continue
            com = np.asarray(ndimage.center_of_mass(dark, lab, range(1, n + 1)), dtype=np.float64).reshape(-1, 2)
            out.append((com[:, ::-1].copy(), np.full(n, 0.9)))
        return out


def disc_image(shape, discs, radius, tissue_boxes=None, seed=0) -> np.ndarray:
    """Glass with pink tissue boxes (x0, y0, x1, y1) (all tissue when None) and dark discs at (x, y)."""
    h, w = shape
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = GLASS if tissue_boxes is not None else PINK
    for x0, y0, x1, y1 in tissue_boxes or []:
        img[y0:y1, x0:x1] = PINK
    noise = rng.integers(-3, 4, size=(h, w, 1))
    img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for x, y in discs:
        img[(xx - x) ** 2 + (yy - y) ** 2 <= radius * radius] = DARK
    return img


def _halve(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    x = img[:h, :w].astype(np.uint16)
    return ((x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2] + 2) // 4).astype(np.uint8)


def write_pyramid(
    path,
    image: np.ndarray,
    mpp: float,
    levels: int = 2,
    tile: int = 64,
    layout: str = "pages",
    compression: str | None = "zlib",
) -> Path:
    """Write ``image`` as a tiled pyramidal TIFF (2x2-mean levels) with resolution tags in cm."""

    path = Path(path)
    common = dict(
        tile=(tile, tile), photometric="rgb", compression=compression, resolutionunit="CENTIMETER", metadata=None
    )
    with tifffile.TiffWriter(path) as tif:
        level = image
        for k in range(levels):
            res = 1e4 / (mpp * 2**k)
            extra = {}
            if k == 0 and layout == "subifds" and levels > 1:
                extra["subifds"] = levels - 1
            elif k > 0:
                extra["subfiletype"] = 1
            tif.write(level, resolution=(res, res), **common, **extra)
            level = _halve(level)
    return path


def save_png(path, image: np.ndarray, mpp: float | None = None) -> Path:
    kw = {} if mpp is None else {"dpi": (25400.0 / mpp, 25400.0 / mpp)}
    Image.fromarray(image).save(path, **kw)
    return Path(path)


@pytest.fixture
def dh():
    """Detect-test helpers."""
    return SimpleNamespace(
        BlobDetector=BlobDetector,
        disc_image=disc_image,
        write_pyramid=write_pyramid,
        save_png=save_png,
        write_bad_corpus=write_bad_corpus,
        PINK=PINK,
        DARK=DARK,
        GLASS=GLASS,
    )
