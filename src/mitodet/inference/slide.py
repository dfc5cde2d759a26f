"""Open high-power fields and whole-slide images behind one region-reading interface.

Every input becomes an :class:`ImageSource`: a stack of pyramid levels (level 0 = full
resolution) from which rectangular regions are read as ``(h, w, 3)`` uint8 RGB. Detection
(:mod:`mitodet.inference.predictor`) only ever asks for tile-sized regions and a bounded
thumbnail, so memory stays bounded whatever the slide size; only HPF-sized flat images
(PNG, JPEG, small TIFF) are held in memory whole.

Readers (:func:`open_image`):

* **HPF images** (``.png``, ``.jpg``/``.jpeg``, ``.bmp``, and ``.tif``/``.tiff`` without a pyramid and
  at most :data:`WSI_MIN_PIXELS` pixels) are read whole with
  :func:`mitodet.data.images.read_rgb` (8-bit RGB, RGBA or grey). Flat PNG/JPEG files larger
  than :data:`FLAT_MAX_PIXELS` are refused (they cannot be read region by region): convert
  them to a tiled pyramidal TIFF.
* **Pyramidal or large TIFF / OME-TIFF** (reduced levels as SubIFDs or as further pages,
  tiled or stripped, any codec tifffile + imagecodecs decode) are read with tifffile, one
  tile or strip at a time, through a small byte-bounded cache (:class:`TiffSlide`).
* **Vendor whole-slide formats** (SVS, NDPI, MRXS, SCN, SVSLIDE, BIF, VMS/VMU, CZI, and TIFFs
  that OpenSlide recognises as a vendor format such as Philips or Ventana) are read with
  OpenSlide (the ``wsi`` extra: ``pip install "mitodet[wsi]"``, i.e. ``openslide-bin`` and
  ``openslide-python``). Without OpenSlide, the TIFF-based ones (SVS, SCN, BIF, SVSLIDE)
  fall back to tifffile; the others raise with the install hint.

Pixel size (:func:`resolve_mpp`). The mpp (micrometres per level-0 pixel) comes from
``--mpp`` when given (it overrides the file), else from the file:

* OpenSlide: ``openslide.mpp-x`` (and ``-y``); failing that ``tiff.XResolution`` with
  ``tiff.ResolutionUnit`` centimeter / inch;
* TIFF: Aperio's ``MPP = x`` in the ImageDescription, OME-XML ``PhysicalSizeX`` (with its
  unit), else XResolution with ResolutionUnit centimetre (``mpp = 1e4 / res``) or inch
  (``mpp = 25400 / res``); a resolution without a unit (ResolutionUnit NONE) is no size;
* PNG ``pHYs`` / JPEG JFIF density / BMP pixels per metre, as Pillow reports ``dpi``
  (``mpp = 25400 / dpi``).

The screen rule: a metadata value outside :data:`MPP_RANGE` (0.02-5 um/px, i.e. above about
5,000 dpi) is not a scan resolution but a screen or print default (72 dpi = 352.8 um/px,
96 dpi = 264.6 um/px, 300 dpi = 84.7 um/px; even a 2400 dpi flatbed gives 10.6 um/px, and a
x5 slide scan is about 2 um/px), so it is ignored and reported. With neither a usable value
in the file nor ``--mpp``, :func:`resolve_mpp` refuses with :class:`MissingMppError`
naming the file; mitodet never guesses a pixel size. ``--mpp`` must lie in the same range.
Pixels are taken as square: mpp-x is used, and a file whose mpp-y differs by more than 2 %
gets a note.
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mitodet.checks import MPP_RANGE, check_mpp
from mitodet.data.images import ImageReadError, read_rgb

HPF_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
OPENSLIDE_SUFFIXES: tuple[str, ...] = (".svs", ".ndpi", ".mrxs", ".scn", ".svslide", ".bif", ".vms", ".vmu", ".czi")
_TIFF_BASED_WSI = (".svs", ".scn", ".bif", ".svslide")
IMAGE_SUFFIXES: tuple[str, ...] = HPF_SUFFIXES + TIFF_SUFFIXES + OPENSLIDE_SUFFIXES
"""File name endings :func:`mitodet.inference.pipeline.collect_inputs` picks up in folders."""

"""Plausible scan resolutions in um/px; metadata outside is a screen/print default."""

FLAT_MAX_PIXELS = 150_000_000
"""Largest flat PNG/JPEG mitodet reads whole (about 12,000 x 12,000 px, 450 MB as RGB)."""

WSI_MIN_PIXELS = 100_000_000
"""A TIFF above this many level-0 pixels goes through the region reader even without a pyramid."""

MAX_SEGMENT_BYTES = 256 * 2**20
"""Largest decoded TIFF tile/strip accepted (a whole slide stored as one strip is refused)."""

_INSTALL_HINT = 'install the "wsi" extra: pip install "mitodet[wsi]" (openslide-bin and openslide-python)'


class SlideReadError(ImageReadError):
    """A slide or image could not be opened or read; the message names the file and the fix."""


class MissingMppError(ValueError):
    """Neither the file nor the caller gives a pixel size."""


# ----------------------------------------------------------------------------- pixel size


@dataclass(frozen=True)
class PixelSize:
    """What a file says about its pixel size.

    Attributes:
        mpp: micrometres per level-0 pixel (x), or None when the file gives no usable value.
        source: where ``mpp`` came from, e.g. ``"openslide.mpp-x"`` or ``"TIFF XResolution (cm)"``.
        note: why a value in the file was not used (e.g. a 72 dpi screen default), or None.
        mpp_y: the y pixel size when the file gives one.
    """

    mpp: float | None
    source: str
    note: str | None = None
    mpp_y: float | None = None


NO_PIXEL_SIZE = PixelSize(None, "none")


def _plausible(mpp: float | None, what: str) -> PixelSize:
    if mpp is None or not math.isfinite(mpp) or mpp <= 0:
        return PixelSize(None, "none", f"{what} gives no pixel size")
    lo, hi = MPP_RANGE
    if not lo <= mpp <= hi:
        dpi = 25400.0 / mpp
        return PixelSize(
            None,
            "none",
            f"{what} says {mpp:.4g} um/px ({dpi:.4g} dpi), outside the plausible scan "
            f"range {lo}-{hi} um/px: a screen/print default, not a scan resolution; ignored",
        )
    return PixelSize(float(mpp), what)


def mpp_from_resolution(resolution: float, unit: str, what: str = "resolution tag") -> PixelSize:
    """Pixel size from a resolution in pixels per ``unit`` (``"inch"``, ``"centimeter"``/``"cm"``,
    ``"millimeter"``, ``"micrometer"``), with the screen rule applied."""
    try:
        res = float(resolution)
    except (TypeError, ValueError):
        return PixelSize(None, "none", f"{what}: resolution {resolution!r} is not a number")
    per_unit_um = {
        "inch": 25400.0,
        "centimeter": 1e4,
        "cm": 1e4,
        "millimeter": 1e3,
        "mm": 1e3,
        "micrometer": 1.0,
        "um": 1.0,
    }.get(str(unit).lower())
    if per_unit_um is None:
        return PixelSize(None, "none", f"{what} has no physical unit (ResolutionUnit {unit!r})")
    if not (math.isfinite(res) and res > 0):
        return PixelSize(None, "none", f"{what}: resolution {res!r} is not positive")
    return _plausible(per_unit_um / res, f"{what} ({unit})")


def resolve_mpp(path: str | Path, file_size: PixelSize, override: float | None = None) -> tuple[float, str]:
    """The pixel size to use: ``override`` (``--mpp``) if given, else the file's.

    Returns:
        ``(mpp, source)``.

    Raises:
        ValueError: ``override`` outside :data:`MPP_RANGE`.
        MissingMppError: neither is available; the message names the file and says to pass --mpp.
    """
    if override is not None:
        return check_mpp(override, "--mpp"), "--mpp"
    if file_size.mpp is not None:
        return float(file_size.mpp), file_size.source
    why = f" ({file_size.note})" if file_size.note else " (the file has no resolution metadata)"
    raise MissingMppError(
        f"{path}: unknown pixel size{why}; pass --mpp UM_PER_PX (e.g. --mpp 0.25 for a x40 "
        "scan), mitodet does not guess it"
    )


def _pil_pixel_size(info: dict[str, Any]) -> PixelSize:
    dpi = info.get("dpi")
    if not dpi:
        return PixelSize(None, "none", "the image header has no dpi / pHYs resolution")
    try:
        dx = float(dpi[0])
        dy = float(dpi[1]) if len(dpi) > 1 else dx
    except (TypeError, ValueError, IndexError):
        return PixelSize(None, "none", f"the image header's dpi {dpi!r} is not a number pair")
    ps = mpp_from_resolution(dx, "inch", "image dpi")
    if ps.mpp is not None and dy > 0:
        return PixelSize(ps.mpp, ps.source, None, 25400.0 / dy)
    return ps


_APERIO_MPP = re.compile(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)")
_OME_SIZE = re.compile(r'PhysicalSizeX="([0-9.eE+-]+)"')
_OME_UNIT = re.compile(r'PhysicalSizeXUnit="([^"]+)"')


def _tiff_pixel_size(tif, page) -> PixelSize:
    desc = page.description or ""
    m = _APERIO_MPP.search(desc)
    if m:
        ps = _plausible(float(m.group(1)), "Aperio ImageDescription MPP")
        if ps.mpp is not None:
            return ps
    ome = getattr(tif, "ome_metadata", None)
    if ome:
        m = _OME_SIZE.search(ome)
        if m:
            unit = _OME_UNIT.search(ome).group(1) if _OME_UNIT.search(ome) else "µm"
            scale = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}.get(unit)
            if scale is not None:
                ps = _plausible(float(m.group(1)) * scale, "OME PhysicalSizeX")
                if ps.mpp is not None:
                    return ps
    tags = page.tags
    if "XResolution" not in tags:
        return PixelSize(None, "none", "the TIFF has no XResolution tag")
    unit_code = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2  # TIFF default: inch
    unit = {1: "none", 2: "inch", 3: "centimeter"}.get(unit_code, f"code {unit_code}")

    def ratio(v) -> float:
        return v[0] / v[1] if isinstance(v, tuple) and len(v) == 2 and v[1] else float("nan")

    xres = ratio(tags["XResolution"].value)
    ps = mpp_from_resolution(xres, unit, "TIFF XResolution")
    if ps.mpp is not None and "YResolution" in tags:
        yres = ratio(tags["YResolution"].value)
        y = mpp_from_resolution(yres, unit, "TIFF YResolution").mpp
        return PixelSize(ps.mpp, ps.source, None, y)
    return ps


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
        self.pixel_size = _tiff_pixel_size(tif, pages[0])

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


class OpenSlideSlide(ImageSource):
    """A whole-slide image read with OpenSlide (transparent areas become white)."""

    def __init__(self, path: str | Path) -> None:
        openslide = _import_openslide(path)
        self.path = Path(path)
        self.kind = "wsi"
        self.reader = "openslide"
        try:
            self._slide = openslide.OpenSlide(str(self.path))
        except Exception as exc:
            raise SlideReadError(
                f"{self.path}: OpenSlide cannot open it ({type(exc).__name__}: {exc}); it is not a "
                "supported whole-slide image or it is corrupt"
            ) from exc
        self.level_dimensions = tuple((int(w), int(h)) for w, h in self._slide.level_dimensions)
        self.pixel_size = self._pixel_size()

    def _pixel_size(self) -> PixelSize:
        props = self._slide.properties
        mx, my = props.get("openslide.mpp-x"), props.get("openslide.mpp-y")
        if mx:
            try:
                ps = _plausible(float(mx), "openslide.mpp-x")
            except ValueError:
                ps = PixelSize(None, "none", f"openslide.mpp-x {mx!r} is not a number")
            if ps.mpp is not None:
                try:
                    y = float(my) if my else None
                except ValueError:
                    y = None
                return PixelSize(ps.mpp, ps.source, None, y)
            note = ps.note
        else:
            note = "the slide has no openslide.mpp-x property"
        xres, unit = props.get("tiff.XResolution"), props.get("tiff.ResolutionUnit")
        if xres and unit:
            ps = mpp_from_resolution(xres, unit, "tiff.XResolution")
            if ps.mpp is not None:
                return ps
            note = f"{note}; {ps.note}"
        return PixelSize(None, "none", note)

    def _read(self, level: int, box: tuple[int, int, int, int]) -> np.ndarray:
        x0, y0, x1, y1 = box
        # OpenSlide divides the level-0 location by its own downsample: use the same one
        ds = float(self._slide.level_downsamples[level])
        try:
            region = self._slide.read_region((int(round(x0 * ds)), int(round(y0 * ds))), level, (x1 - x0, y1 - y0))
        except Exception as exc:
            raise SlideReadError(
                f"{self.path}: OpenSlide failed to read level {level} region {box} "
                f"({type(exc).__name__}: {exc}); the slide may be corrupt"
            ) from exc
        rgba = np.asarray(region, dtype=np.uint8)
        rgb = rgba[:, :, :3].astype(np.uint16)
        a = rgba[:, :, 3:4].astype(np.uint16)
        # composite on white: empty (transparent) slide areas read as glass
        return ((rgb * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)

    def close(self) -> None:
        self._slide.close()


def _import_openslide(path: str | Path | None = None):
    try:
        import openslide
    except (ImportError, OSError) as exc:
        where = f"{path}: " if path is not None else ""
        raise SlideReadError(
            f"{where}reading this whole-slide format needs OpenSlide, which is not available ({exc}); {_INSTALL_HINT}"
        ) from exc
    return openslide


def openslide_available() -> bool:
    """Whether OpenSlide (openslide-python with its library) can be imported."""
    try:
        _import_openslide()
    except SlideReadError:
        return False
    return True


def _openslide_format(path: Path) -> str | None:
    if not openslide_available():
        return None
    import openslide

    try:
        return openslide.OpenSlide.detect_format(str(path))
    except Exception:
        return None


def _open_flat(path: Path) -> ArraySource:
    """A PNG/JPEG (or other Pillow format) field read whole."""
    from PIL import Image

    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        # read the header only, so an absurd declared size gets our message, not Pillow's
        Image.MAX_IMAGE_PIXELS = None
        with Image.open(path) as im:
            w, h = im.size
            info = dict(im.info)
    except Exception as exc:
        Image.MAX_IMAGE_PIXELS = old_limit
        # let read_rgb produce its standard message for undecodable files
        read_rgb(path)
        raise SlideReadError(f"{path}: cannot read the image header ({exc})") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    if w * h > FLAT_MAX_PIXELS:
        raise SlideReadError(
            f"{path}: declares {w} x {h} pixels, more than mitodet reads whole from a flat "
            f"PNG/JPEG ({FLAT_MAX_PIXELS:,} px); convert it to a tiled pyramidal TIFF "
            "(e.g. vips tiffsave in.png out.tif --tile --pyramid --compression jpeg)"
        )
    return ArraySource(read_rgb(path), _pil_pixel_size(info), path, reader="pillow")


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


def _open_tiff(path: Path, reader: str) -> ImageSource:
    """A TIFF: an HPF read whole, or a slide (pyramid or large) read by region."""
    import tifffile

    fmt = _openslide_format(path) if reader == "auto" else None
    if fmt not in (None, "generic-tiff"):
        return OpenSlideSlide(path)  # a vendor TIFF (Aperio, Philips, Ventana, Trestle...)
    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            series = tif.series[0] if tif.series else None
            n_levels = len(series.levels) if series is not None else 0
            shape = tuple(series.levels[0].shape) if series is not None else ()
            ps = _tiff_pixel_size(tif, tif.pages[0]) if len(tif.pages) else NO_PIXEL_SIZE
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


def open_image(path: str | Path, reader: str = "auto") -> ImageSource:
    """Open an HPF image or a whole-slide image for region reads.

    Args:
        path: the file (a ``.mrxs`` with its data folder beside it, etc.).
        reader: ``"auto"`` (see the module docstring), or force ``"openslide"`` or
            ``"tifffile"`` for slides.

    Raises:
        SlideReadError / ImageReadError: missing, empty, truncated, not an image, not 8-bit,
            absurd declared size, unsupported format; the message names the file.
    """
    if reader not in ("auto", "openslide", "tifffile"):
        raise ValueError(f"reader must be 'auto', 'openslide' or 'tifffile', got {reader!r}")
    p = Path(path)
    if not p.exists():
        raise SlideReadError(f"{p}: no such file")
    if p.is_dir():
        raise SlideReadError(f"{p}: is a folder, not an image file")
    if p.stat().st_size == 0:
        raise SlideReadError(f"{p}: the file is empty (0 bytes); re-export or re-copy it")
    suffix = p.suffix.lower()
    if reader == "openslide":
        return OpenSlideSlide(p)
    if reader == "tifffile":
        return TiffSlide(p)
    if suffix in HPF_SUFFIXES:
        return _open_flat(p)
    if suffix in TIFF_SUFFIXES:
        return _open_tiff(p, reader)
    if suffix in OPENSLIDE_SUFFIXES:
        if openslide_available():
            return OpenSlideSlide(p)
        if suffix in _TIFF_BASED_WSI:
            return TiffSlide(p)
        _import_openslide(p)  # raises with the install hint
    # unknown ending: a whole-slide format OpenSlide knows, else anything Pillow reads
    if _openslide_format(p) is not None:
        return OpenSlideSlide(p)
    try:
        return _open_flat(p)
    except ImageReadError as exc:
        raise SlideReadError(
            f"{p}: not a supported image ({exc}); mitodet reads PNG, JPEG, TIFF and, through "
            f"OpenSlide, {', '.join(s.lstrip('.').upper() for s in OPENSLIDE_SUFFIXES)}"
        ) from exc


# ----------------------------------------------------------------------------- thumbnails


def best_level(source: ImageSource, downsample: float) -> int:
    """The coarsest level whose downsample is at most ``downsample`` (level 0 if none)."""
    best, best_d = 0, 1.0
    for k in range(len(source.level_dimensions)):
        d = max(source.level_downsample(k))
        # 0.1 % slack: level sizes are rounded, so a nominal 2x level may be 2.0004x
        if d <= downsample * 1.001 and d > best_d:
            best, best_d = k, d
    return best


def resize_region(
    source: ImageSource,
    level: int,
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    filter: str = "bilinear",
) -> np.ndarray:
    """Read the sub-pixel ``box`` (x0, y0, x1, y1 in pixels of ``level``, edges) resampled to
    ``size = (width, height)``.

    A margin of source pixels around the box is read so the filter sees real neighbours,
    which makes adjacent boxes resample exactly as one large image would (Pillow's ``box``
    argument keeps the sub-pixel alignment).
    """
    from PIL import Image

    x0, y0, x1, y1 = (float(v) for v in box)
    out_w, out_h = int(size[0]), int(size[1])
    scale = max((x1 - x0) / out_w, (y1 - y0) / out_h, 1.0)
    pad = int(math.ceil(scale)) + 2
    if (
        abs((x1 - x0) - out_w) < 1e-9
        and abs((y1 - y0) - out_h) < 1e-9
        and all(abs(v - round(v)) < 1e-9 for v in (x0, y0))
    ):
        return source.read_region(level, (round(x0), round(y0), round(x0) + out_w, round(y0) + out_h))
    rx0, ry0 = int(math.floor(x0)) - pad, int(math.floor(y0)) - pad
    rx1, ry1 = int(math.ceil(x1)) + pad, int(math.ceil(y1)) + pad
    w, h = source.level_dimensions[level]
    # never read beyond the image: resampling then clamps at the true image edge, as a
    # whole-image resize does
    rx0, ry0, rx1, ry1 = max(0, rx0), max(0, ry0), min(w, rx1), min(h, ry1)
    crop = source.read_region(level, (rx0, ry0, rx1, ry1))
    resample = {"bilinear": Image.Resampling.BILINEAR, "box": Image.Resampling.BOX}[filter]
    im = Image.fromarray(crop).resize((out_w, out_h), resample, box=(x0 - rx0, y0 - ry0, x1 - rx0, y1 - ry0))
    return np.asarray(im, dtype=np.uint8)


def read_thumbnail(
    source: ImageSource, max_side: int = 4096, chunk_bytes: int = 64 * 2**20
) -> tuple[np.ndarray, tuple[float, float]]:
    """A thumbnail of the whole image with its long side at most ``max_side`` pixels.

    The finest pyramid level that fits in ``max_side`` is the thumbnail as it is; without
    one (a flat or shallow pyramid), the level just finer than needed is resampled. Either
    way the level is read in horizontal bands of at most ``chunk_bytes`` (each band
    resampled on its own), so memory stays bounded even for a slide without a pyramid.

    Returns:
        ``(thumb (th, tw, 3) uint8, (dx, dy))`` with ``dx, dy`` level-0 pixels per thumbnail
        pixel. An image no larger than ``max_side`` is returned at full resolution.
    """
    from PIL import Image

    h0, w0 = source.shape
    d = max(1.0, max(h0, w0) / float(max_side))
    tw, th = max(1, round(w0 / d)), max(1, round(h0 / d))
    full = source.in_memory()
    if full is not None:
        if (tw, th) == (w0, h0):
            return full, (1.0, 1.0)
        return (
            np.asarray(Image.fromarray(full).resize((tw, th), Image.Resampling.BOX), dtype=np.uint8),
            (w0 / tw, h0 / th),
        )
    fits = [k for k, (w, h) in enumerate(source.level_dimensions) if max(w, h) <= max_side]
    if fits:
        # the finest pyramid level that fits is the thumbnail: read as is, no resampling
        level = min(fits, key=lambda k: max(source.level_downsample(k)))
        tw, th = source.level_dimensions[level]
    else:
        level = best_level(source, min(w0 / tw, h0 / th))
    wl, hl = source.level_dimensions[level]
    fy = hl / th  # level pixels per thumbnail pixel (rows)
    rows_per_chunk = max(1, int(chunk_bytes // max(1, wl * 3 * fy)))
    out = np.empty((th, tw, 3), dtype=np.uint8)
    for r0 in range(0, th, rows_per_chunk):
        r1 = min(th, r0 + rows_per_chunk)
        out[r0:r1] = resize_region(source, level, (0.0, r0 * fy, float(wl), r1 * fy), (tw, r1 - r0), "box")
    return out, (w0 / tw, h0 / th)


__all__ = [
    "HPF_SUFFIXES",
    "TIFF_SUFFIXES",
    "OPENSLIDE_SUFFIXES",
    "IMAGE_SUFFIXES",
    "MPP_RANGE",
    "FLAT_MAX_PIXELS",
    "WSI_MIN_PIXELS",
    "SlideReadError",
    "MissingMppError",
    "PixelSize",
    "mpp_from_resolution",
    "resolve_mpp",
    "ImageSource",
    "ArraySource",
    "TiffSlide",
    "OpenSlideSlide",
    "openslide_available",
    "open_image",
    "best_level",
    "resize_region",
    "read_thumbnail",
]
