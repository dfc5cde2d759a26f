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

from pathlib import Path

from mitodet.checks import MPP_RANGE
from mitodet.data.images import ImageReadError, read_rgb
from mitodet.inference.slide.pixel_size import (
    NO_PIXEL_SIZE,
    MissingMppError,
    PixelSize,
    mpp_from_resolution,
    pil_pixel_size,
    resolve_mpp,
)
from mitodet.inference.slide.sources import (
    FLAT_MAX_PIXELS,
    HPF_SUFFIXES,
    IMAGE_SUFFIXES,
    MAX_SEGMENT_BYTES,
    OPENSLIDE_SUFFIXES,
    TIFF_BASED_WSI,
    TIFF_SUFFIXES,
    WSI_MIN_PIXELS,
    ArraySource,
    ImageSource,
    SlideReadError,
)
from mitodet.inference.slide.thumbnails import best_level, read_thumbnail, resize_region
from mitodet.inference.slide.tiff import TiffSlide, open_tiff
from mitodet.inference.slide.vendor import OpenSlideSlide, import_openslide, openslide_available, openslide_format


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
    return ArraySource(read_rgb(path), pil_pixel_size(info), path, reader="pillow")


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
        return open_tiff(p, reader)
    if suffix in OPENSLIDE_SUFFIXES:
        if openslide_available():
            return OpenSlideSlide(p)
        if suffix in TIFF_BASED_WSI:
            return TiffSlide(p)
        import_openslide(p)  # raises with the install hint
    # unknown ending: a whole-slide format OpenSlide knows, else anything Pillow reads
    if openslide_format(p) is not None:
        return OpenSlideSlide(p)
    try:
        return _open_flat(p)
    except ImageReadError as exc:
        raise SlideReadError(
            f"{p}: not a supported image ({exc}); mitodet reads PNG, JPEG, TIFF and, through "
            f"OpenSlide, {', '.join(s.lstrip('.').upper() for s in OPENSLIDE_SUFFIXES)}"
        ) from exc


__all__ = [
    "HPF_SUFFIXES",
    "TIFF_SUFFIXES",
    "OPENSLIDE_SUFFIXES",
    "IMAGE_SUFFIXES",
    "MPP_RANGE",
    "FLAT_MAX_PIXELS",
    "WSI_MIN_PIXELS",
    "MAX_SEGMENT_BYTES",
    "NO_PIXEL_SIZE",
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
