"""Pixel size: what a file says (TIFF tags, Aperio and OME metadata, image dpi), the screen rule, and ``--mpp``.

See :mod:`mitodet.inference.slide` for the rules."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mitodet.checks import MPP_RANGE, check_mpp


class MissingMppError(ValueError):
    """Neither the file nor the caller gives a pixel size."""


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


def plausible_pixel_size(mpp: float | None, what: str) -> PixelSize:
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
    return plausible_pixel_size(per_unit_um / res, f"{what} ({unit})")


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


def pil_pixel_size(info: dict[str, Any]) -> PixelSize:
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


def tiff_pixel_size(tif, page) -> PixelSize:
    desc = page.description or ""
    m = _APERIO_MPP.search(desc)
    if m:
        ps = plausible_pixel_size(float(m.group(1)), "Aperio ImageDescription MPP")
        if ps.mpp is not None:
            return ps
    ome = getattr(tif, "ome_metadata", None)
    if ome:
        m = _OME_SIZE.search(ome)
        if m:
            unit = _OME_UNIT.search(ome).group(1) if _OME_UNIT.search(ome) else "µm"
            scale = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}.get(unit)
            if scale is not None:
                ps = plausible_pixel_size(float(m.group(1)) * scale, "OME PhysicalSizeX")
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
