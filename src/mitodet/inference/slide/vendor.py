"""Vendor whole-slide formats read with OpenSlide (the ``wsi`` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mitodet.inference.slide.pixel_size import PixelSize, mpp_from_resolution, plausible_pixel_size
from mitodet.inference.slide.sources import WSI_INSTALL_HINT, ImageSource, SlideReadError


class OpenSlideSlide(ImageSource):
    """A whole-slide image read with OpenSlide (transparent areas become white)."""

    def __init__(self, path: str | Path) -> None:
        openslide = import_openslide(path)
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
                ps = plausible_pixel_size(float(mx), "openslide.mpp-x")
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


def import_openslide(path: str | Path | None = None):
    try:
        import openslide
    except (ImportError, OSError) as exc:
        where = f"{path}: " if path is not None else ""
        raise SlideReadError(
            f"{where}reading this whole-slide format needs OpenSlide, which is not available ({exc}); {WSI_INSTALL_HINT}"
        ) from exc
    return openslide


def openslide_available() -> bool:
    """Whether OpenSlide (openslide-python with its library) can be imported."""
    try:
        import_openslide()
    except SlideReadError:
        return False
    return True


def openslide_format(path: Path) -> str | None:
    if not openslide_available():
        return None
    import openslide

    try:
        return openslide.OpenSlide.detect_format(str(path))
    except Exception:
        return None
