"""Pyramidal and large TIFF / OME-TIFF read with tifffile, one tile or strip at a time through a byte-bounded cache."""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mitodet.data.images import read_rgb
from mitodet.inference.slide.pixel_size import NO_PIXEL_SIZE, tiff_pixel_size
from mitodet.inference.slide.sources import MAX_SEGMENT_BYTES, WSI_MIN_PIXELS, ArraySource, ImageSource, SlideReadError
from mitodet.inference.slide.vendor import OpenSlideSlide, openslide_format


class TiffSlide(ImageSource):
    """A (pyramidal) TIFF / OME-TIFF read tile by tile (or strip by strip) with tifffile.

    Levels are tifffile's ``series[0].levels`` (SubIFD pyramids, OME pyramids, SVS, and
    reduced-resolution pages). Decoded tiles are kept in a least-recently-used cache of at
    most ``cache_bytes``, so neighbouring, overlapping reads decode each tile about once.
    Tiles are read row by row, so the cache only has to keep the tiles shared by two rows of
    reads: 32 MB holds a row of 256-px RGB tiles across a slide about 40,000 px wide at the
    level read; on wider slides the shared tiles are decoded twice, which costs decoding
    time, not memory.
    """

    def __init__(self, path: str | Path, cache_bytes: int = 32 * 2**20) -> None:
        import tifffile

        self.path = Path(path)
        self.kind = "wsi"
        self.reader = "tifffile"
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = int(cache_bytes)
        with _quiet_tifffile():
            try:
                self._tif = tifffile.TiffFile(self.path)
            except Exception as exc:
                raise SlideReadError(
                    f"{self.path}: not a readable TIFF ({type(exc).__name__}: {exc}); the file "
                    "may be truncated or in another format"
                ) from exc
            try:
                self._init_levels()
            except SlideReadError:
                self._tif.close()
                raise
            except Exception as exc:
                self._tif.close()
                raise SlideReadError(
                    f"{self.path}: cannot read the TIFF's structure ({type(exc).__name__}: "
                    f"{exc}); the file may be truncated or corrupt"
                ) from exc

    def _init_levels(self) -> None:
        tif = self._tif
        if not tif.series:
            raise SlideReadError(f"{self.path}: the TIFF holds no image")
        series = tif.series[0]
        pages = []
        for lvl in series.levels:
            page = lvl.keyframe if getattr(lvl, "keyframe", None) is not None else lvl.pages[0]
            pages.append(page)
        file_size = self.path.stat().st_size
        dims = []
        for k, page in enumerate(pages):
            if page.dtype != np.uint8:
                raise SlideReadError(
                    f"{self.path}: level {k} has {page.dtype} samples; mitodet expects 8-bit RGB "
                    "H&E. Convert it to 8 bits per channel first"
                )
            spp = int(page.samplesperpixel)
            if spp not in (1, 3, 4):
                raise SlideReadError(f"{self.path}: {spp} samples per pixel; expected grey, RGB or RGBA")
            if spp > 1 and int(page.planarconfig) != 1:
                raise SlideReadError(
                    f"{self.path}: planar (separate-plane) colour TIFF is not supported for slides; "
                    "re-save it with contiguous (interleaved) samples"
                )
            if int(page.photometric) == 3:
                raise SlideReadError(f"{self.path}: palette-colour TIFF; mitodet expects RGB H&E")
            ends = np.asarray(page.dataoffsets, dtype=np.int64) + np.asarray(page.databytecounts, dtype=np.int64)
            present = np.asarray(page.databytecounts, dtype=np.int64) > 0
            if present.any() and int(ends[present].max()) > file_size:
                raise SlideReadError(
                    f"{self.path}: truncated: level {k}'s image data reaches byte "
                    f"{int(ends[present].max())} but the file has {file_size} bytes; re-copy it"
                )
            if page.is_tiled:
                seg_px = int(page.tilewidth) * int(page.tilelength)
            else:
                seg_px = int(page.imagewidth) * min(int(page.rowsperstrip or page.imagelength), int(page.imagelength))
            if seg_px * spp > MAX_SEGMENT_BYTES:
                raise SlideReadError(
                    f"{self.path}: level {k} is stored in blocks of {seg_px * spp / 2**20:.0f} MB "
                    f"(declared {page.imagewidth} x {page.imagelength} px); too large to read piece "
                    "by piece - re-save it as a tiled pyramidal TIFF"
                )
            dims.append((int(page.imagewidth), int(page.imagelength)))
        self._pages = pages
        self.level_dimensions = tuple(dims)
        self.pixel_size = tiff_pixel_size(tif, pages[0])

    def _segment(self, level: int, index: int) -> np.ndarray | None:
        key = (level, index)
        seg = self._cache.get(key)
        if seg is not None:
            self._cache.move_to_end(key)
            return seg
        page = self._pages[level]
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        if count == 0:
            return None  # a sparse (empty) tile
        fh = self._tif.filehandle
        with self._tif.filehandle.lock:
            fh.seek(offset)
            data = fh.read(count)
        if len(data) != count:
            raise SlideReadError(f"{self.path}: truncated: tile/strip {index} of level {level} is cut short")
        try:
            arr, _, _ = page.decode(
                data, index, jpegtables=page.jpegtables, jpegheader=getattr(page, "jpegheader", None)
            )
        except Exception as exc:
            raise SlideReadError(
                f"{self.path}: cannot decode tile/strip {index} of level {level} "
                f"({type(exc).__name__}: {exc}); the file may be corrupt"
            ) from exc
        if arr is None:
            return None
        arr = np.asarray(arr)
        arr = arr.reshape(arr.shape[-3:])  # (h, w, samples)
        self._cache[key] = arr
        self._cache_bytes += arr.nbytes
        while self._cache_bytes > self._cache_limit and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return arr

    def _read(self, level: int, box: tuple[int, int, int, int]) -> np.ndarray:
        page = self._pages[level]
        x0, y0, x1, y1 = box
        spp = int(page.samplesperpixel)
        out = np.full((y1 - y0, x1 - x0, spp), 255, dtype=np.uint8)
        width, height = self.level_dimensions[level]
        if page.is_tiled:
            tw, tl = int(page.tilewidth), int(page.tilelength)
            across = math.ceil(width / tw)
            blocks = [
                (ty * across + tx, tx * tw, ty * tl, tw, tl)
                for ty in range(y0 // tl, (y1 - 1) // tl + 1)
                for tx in range(x0 // tw, (x1 - 1) // tw + 1)
            ]
        else:
            rps = min(int(page.rowsperstrip or height), height)
            blocks = [(s, 0, s * rps, width, rps) for s in range(y0 // rps, (y1 - 1) // rps + 1)]
        for index, bx, by, bw, bh in blocks:
            seg = self._segment(level, index)
            if seg is None:
                continue
            # intersect the block with the box (the decoded block may be padded at the edges)
            ix0, iy0 = max(x0, bx), max(y0, by)
            ix1, iy1 = min(x1, bx + min(bw, seg.shape[1])), min(y1, by + min(bh, seg.shape[0]))
            if ix1 <= ix0 or iy1 <= iy0:
                continue
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = seg[iy0 - by : iy1 - by, ix0 - bx : ix1 - bx, :spp]
        if spp == 1:
            return np.repeat(out, 3, axis=2)
        return out[:, :, :3] if spp == 4 else out

    def close(self) -> None:
        self._cache.clear()
        self._tif.close()


@contextmanager
def _quiet_tifffile():
    """tifffile logs a warning for a corrupt file before raising; the raised error is enough."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def open_tiff(path: Path, reader: str) -> ImageSource:
    """A TIFF: an HPF read whole, or a slide (pyramid or large) read by region."""
    import tifffile

    fmt = openslide_format(path) if reader == "auto" else None
    if fmt not in (None, "generic-tiff"):
        return OpenSlideSlide(path)  # a vendor TIFF (Aperio, Philips, Ventana, Trestle...)
    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            series = tif.series[0] if tif.series else None
            n_levels = len(series.levels) if series is not None else 0
            shape = tuple(series.levels[0].shape) if series is not None else ()
            ps = tiff_pixel_size(tif, tif.pages[0]) if len(tif.pages) else NO_PIXEL_SIZE
    except Exception as exc:
        raise SlideReadError(
            f"{path}: cannot decode the TIFF ({type(exc).__name__}: {exc}); the file may be "
            "truncated or not a TIFF - re-export it"
        ) from exc
    if series is None:
        raise SlideReadError(f"{path}: the TIFF holds no image")
    hw = shape[:2] if len(shape) >= 2 and shape[-1] in (1, 3, 4) else shape[-2:]
    n_px = int(np.prod(hw, dtype=np.int64)) if hw else 0
    if n_levels > 1 or n_px > WSI_MIN_PIXELS:
        if reader == "openslide":
            return OpenSlideSlide(path)
        return TiffSlide(path)
    return ArraySource(read_rgb(path), ps, path, reader="tifffile")
