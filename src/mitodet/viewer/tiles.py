"""Deep-zoom tiles of an input, read through the same readers detection used.

OpenSlide's :class:`openslide.deepzoom.DeepZoomGenerator` cuts the tiles; it reads pixels
from :class:`SourceSlide`, an :class:`openslide.AbstractSlide` over mitodet's
:class:`~mitodet.inference.slide.ImageSource` (OpenSlide itself for the slides it opens,
tifffile for pyramidal TIFFs it does not, Pillow for flat HPF images). So a tile shows the
pixels the model saw, whole-slide images stream region by region (never loaded whole), and
an HPF image is held once in memory.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from openslide import AbstractSlide
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

TILE_PX = 254  # + 1 px overlap each side = 256, OpenSlide's default
OVERLAP_PX = 1
JPEG_QUALITY = 85


class SourceSlide(AbstractSlide):
    """An :class:`~mitodet.inference.slide.ImageSource` as OpenSlide's slide interface
    (thread-safe: reads are serialised, the readers keep one file handle)."""

    def __init__(self, path: Path, mpp: float, reader: str = "auto") -> None:
        from mitodet.inference.slide import open_image

        super().__init__()
        self._src = open_image(path, reader=reader if reader in ("openslide", "tifffile") else "auto")
        self._mpp = float(mpp)
        self._lock = threading.Lock()

    @classmethod
    def detect_format(cls, filename) -> str | None:  # pragma: no cover - not used for discovery
        return None

    def close(self) -> None:
        self._src.close()

    @property
    def level_count(self) -> int:
        return len(self._src.level_dimensions)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple((int(w), int(h)) for w, h in self._src.level_dimensions)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(max(self._src.level_downsample(k)) for k in range(self.level_count))

    @property
    def properties(self) -> Mapping[str, str]:
        return {"openslide.mpp-x": str(self._mpp), "openslide.mpp-y": str(self._mpp)}

    @property
    def associated_images(self) -> Mapping[str, Image.Image]:
        return {}

    def get_best_level_for_downsample(self, downsample: float) -> int:
        best = 0
        for k, d in enumerate(self.level_downsamples):
            if d <= downsample * 1.0001:
                best = k
        return best

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image:
        """RGBA ``size`` region of ``level`` whose top left is ``location`` in level-0 pixels."""
        dx, dy = self._src.level_downsample(level)
        x0, y0 = int(round(location[0] / dx)), int(round(location[1] / dy))
        w, h = int(size[0]), int(size[1])
        with self._lock:
            rgb = self._src.read_region(level, (x0, y0, x0 + w, y0 + h))
        rgba = np.empty((h, w, 4), dtype=np.uint8)
        rgba[..., :3] = rgb
        rgba[..., 3] = 255
        return Image.fromarray(rgba, "RGBA")

    def crop(self, box: tuple[int, int, int, int], out_px: int) -> Image.Image:
        """Level-0 ``box`` (x0, y0, x1, y1) resized to ``out_px`` square (the gallery)."""
        x0, y0, x1, y1 = box
        with self._lock:
            rgb = self._src.read_region(0, (x0, y0, x1, y1))
        return Image.fromarray(rgb).resize((out_px, out_px), Image.Resampling.LANCZOS)


class TileServer:
    """Deep-zoom generators of the images being viewed, the last ``keep`` open."""

    def __init__(self, keep: int = 4) -> None:
        self._open: OrderedDict[Path, tuple[SourceSlide, DeepZoomGenerator]] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def get(self, path: Path, mpp: float, reader: str = "auto") -> tuple[SourceSlide, DeepZoomGenerator]:
        """The slide and its generator (``reader``: the one detection used, from the summary)."""
        with self._lock:
            hit = self._open.pop(path, None)
            if hit is None:
                slide = SourceSlide(path, mpp, reader)
                hit = (slide, DeepZoomGenerator(slide, tile_size=TILE_PX, overlap=OVERLAP_PX, limit_bounds=False))
            self._open[path] = hit
            while len(self._open) > self._keep:
                _, (old, _) = self._open.popitem(last=False)
                old.close()
            return hit

    def dzi(self, path: Path, mpp: float, reader: str = "auto") -> str:
        return self.get(path, mpp, reader)[1].get_dzi("jpeg")

    def tile(self, path: Path, mpp: float, level: int, col: int, row: int, reader: str = "auto") -> bytes:
        """One JPEG tile; ValueError for an address that does not exist."""
        dz = self.get(path, mpp, reader)[1]
        if not 0 <= level < dz.level_count:
            raise ValueError(f"no deep-zoom level {level} (0..{dz.level_count - 1})")
        cols, rows = dz.level_tiles[level]
        if not (0 <= col < cols and 0 <= row < rows):
            raise ValueError(f"no tile ({col}, {row}) at level {level} ({cols} x {rows} tiles)")
        tile = dz.get_tile(level, (col, row))
        buf = io.BytesIO()
        tile.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
        return buf.getvalue()

    def close(self) -> None:
        with self._lock:
            for slide, _ in self._open.values():
                slide.close()
            self._open.clear()
