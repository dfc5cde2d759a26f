"""The image-source interface every reader implements, the in-memory source, the formats and limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mitodet.data.images import ImageReadError
from mitodet.inference.slide.pixel_size import NO_PIXEL_SIZE, PixelSize

TIFF_BASED_WSI = (".svs", ".scn", ".bif", ".svslide")
HPF_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
OPENSLIDE_SUFFIXES: tuple[str, ...] = (".svs", ".ndpi", ".mrxs", ".scn", ".svslide", ".bif", ".vms", ".vmu", ".czi")
IMAGE_SUFFIXES: tuple[str, ...] = HPF_SUFFIXES + TIFF_SUFFIXES + OPENSLIDE_SUFFIXES
"""File name endings :func:`mitodet.inference.pipeline.collect_inputs` picks up in folders."""

FLAT_MAX_PIXELS = 150_000_000
"""Largest flat PNG/JPEG mitodet reads whole (about 12,000 x 12,000 px, 450 MB as RGB)."""

WSI_MIN_PIXELS = 100_000_000
"""A TIFF above this many level-0 pixels goes through the region reader even without a pyramid."""

MAX_SEGMENT_BYTES = 256 * 2**20
"""Largest decoded TIFF tile/strip accepted (a whole slide stored as one strip is refused)."""

WSI_INSTALL_HINT = 'install the "wsi" extra: pip install "mitodet[wsi]" (openslide-bin and openslide-python)'


class SlideReadError(ImageReadError):
    """A slide or image could not be opened or read; the message names the file and the fix."""


# ----------------------------------------------------------------------------- sources


class ImageSource:
    """A readable image: pyramid levels, pixel size from the file, region reads.

    Attributes:
        path: the file (None for an in-memory array).
        kind: ``"hpf"`` (read whole, a field of view) or ``"wsi"`` (read region by region).
        reader: ``"array"``, ``"pillow"``, ``"tifffile"`` or ``"openslide"``.
        pixel_size: what the file says about its mpp (:class:`PixelSize`).
        level_dimensions: ``(width, height)`` of every level, level 0 first.
    """

    path: Path | None
    kind: str
    reader: str
    pixel_size: PixelSize
    level_dimensions: tuple[tuple[int, int], ...]

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of level 0."""
        w, h = self.level_dimensions[0]
        return h, w

    def level_downsample(self, level: int) -> tuple[float, float]:
        """Level-0 pixels per pixel of ``level``, per axis ``(dx, dy)``."""
        w0, h0 = self.level_dimensions[0]
        w, h = self.level_dimensions[level]
        return w0 / w, h0 / h

    def in_memory(self) -> np.ndarray | None:
        """The whole level-0 image when it is held in memory (HPF images), else None."""
        return None

    def read_region(self, level: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """Read ``box = (x0, y0, x1, y1)`` (half-open, pixels of ``level``) as (h, w, 3) uint8.

        Parts of the box outside the image are white (255), like empty slide glass.
        """
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"empty region {box}")
        w, h = self.level_dimensions[level]
        cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if (cx0, cy0, cx1, cy1) == (x0, y0, x1, y1):
            return self._read(level, (x0, y0, x1, y1))
        out = np.full((y1 - y0, x1 - x0, 3), 255, dtype=np.uint8)
        if cx1 > cx0 and cy1 > cy0:
            out[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = self._read(level, (cx0, cy0, cx1, cy1))
        return out

    def _read(self, level: int, box: tuple[int, int, int, int]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "ImageSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts about the source (for summaries)."""
        return {
            "path": None if self.path is None else str(self.path),
            "kind": self.kind,
            "reader": self.reader,
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "mpp_in_file": self.pixel_size.mpp,
            "mpp_in_file_source": self.pixel_size.source,
            "mpp_note": self.pixel_size.note,
        }


class ArraySource(ImageSource):
    """An in-memory (H, W, 3) uint8 image (one level)."""

    def __init__(
        self,
        image: np.ndarray,
        pixel_size: PixelSize = NO_PIXEL_SIZE,
        path: str | Path | None = None,
        reader: str = "array",
        kind: str = "hpf",
    ) -> None:
        a = np.asarray(image)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {a.shape} {a.dtype}")
        self.image = a
        self.path = None if path is None else Path(path)
        self.kind = kind
        self.reader = reader
        self.pixel_size = pixel_size
        self.level_dimensions = ((a.shape[1], a.shape[0]),)

    def in_memory(self) -> np.ndarray:
        return self.image

    def _read(self, level: int, box: tuple[int, int, int, int]) -> np.ndarray:
        x0, y0, x1, y1 = box
        return self.image[y0:y1, x0:x1]
