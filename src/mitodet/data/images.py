"""Reading HPF-sized images (PNG, JPEG, TIFF) into 8-bit RGB arrays with clear errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

# Refuse decompression bombs with a clear message instead of PIL's warning/exception text.
MAX_PIXELS = 40_000 * 40_000


class ImageReadError(ValueError):
    """An image could not be read; the message names the file and the fix."""


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an 8-bit RGB, RGBA or grey image as (H, W, 3) uint8.

    Raises:
        ImageReadError: missing, empty, truncated, not an image, not 8-bit, or absurd size.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: the file is empty (0 bytes); re-export or re-copy it")
    if path.suffix.lower() in (".tif", ".tiff"):
        return _read_tiff(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageReadError(
                        f"{path}: declared size {w}x{h} is beyond {MAX_PIXELS} pixels; "
                        "open whole slides through the WSI path (SVS/NDPI/pyramidal TIFF)"
                    )
                mode = im.mode
                if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    raise ImageReadError(
                        f"{path}: {mode} image (16-bit or float); mitodet expects 8-bit RGB H&E. "
                        "Convert it to 8 bits per channel first"
                    )
                im.load()
                rgb = im.convert("RGB")
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(
            f"{path}: cannot decode the image ({exc}); the file may be truncated or not an "
            "image - re-export it as PNG, JPEG or TIFF"
        ) from exc
    return np.asarray(rgb)


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            shape = page.shape
            if np.prod(shape[:2], dtype=np.int64) > MAX_PIXELS:
                raise ImageReadError(
                    f"{path}: declared size {shape} is beyond {MAX_PIXELS} pixels; "
                    "open whole slides through the WSI path"
                )
            arr = page.asarray()
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise ImageReadError(
            f"{path}: cannot decode the TIFF ({type(exc).__name__}: {exc}); the file may be truncated - re-export it"
        ) from exc
    if arr.dtype != np.uint8:
        raise ImageReadError(
            f"{path}: {arr.dtype} samples; mitodet expects 8-bit RGB H&E. Convert it to 8 bits per channel first"
        )
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, :3]
    elif arr.ndim == 3 and arr.shape[0] in (3, 4):  # planar
        arr = np.moveaxis(arr[:3], 0, -1)
    else:
        raise ImageReadError(f"{path}: unsupported TIFF layout {arr.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    return np.ascontiguousarray(arr)
