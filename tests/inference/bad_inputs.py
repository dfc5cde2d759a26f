"""Bad inputs for the detect tests: a corpus of broken files and the error each must give.

A plain module (not conftest.py) so module-scoped fixtures can import it whatever order
pytest collects the test folders in.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import tifffile
from PIL import Image

from mitodet.synthetic import synthetic_scene


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png_bytes(w: int = 100_000, h: int = 100_000) -> bytes:
    """A valid PNG header declaring w x h RGB pixels, with (almost) no data."""
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def huge_tiff_bytes(w: int = 100_000, h: int = 100_000) -> bytes:
    """A little-endian baseline TIFF declaring one w x h grey strip, with 100 data bytes."""
    data_at = 8 + 2 + 12 * 9 + 4
    entries = [
        (256, 4, w),
        (257, 4, h),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, data_at),
        (277, 3, 1),
        (278, 4, h),
        (279, 4, 100),
    ]
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for tag, typ, val in entries:
        out += struct.pack("<HHI", tag, typ, 1) + (struct.pack("<HH", val, 0) if typ == 3 else struct.pack("<I", val))
    return out + struct.pack("<I", 0) + b"\x00" * 100


def write_bad_corpus(folder) -> dict[str, str]:
    """Write the bad-input corpus into ``folder``; returns {file name: regex the error must match}."""
    img, _, _ = synthetic_scene((96, 96), mpp=0.5, n_mitoses=0, n_lookalikes=0)
    (folder / "empty.png").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", dpi=(50800, 50800))
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    buf = io.BytesIO()
    tifffile.imwrite(buf, img, resolution=(2e4, 2e4), resolutionunit="CENTIMETER", compression="zlib")
    (folder / "truncated.tif").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "notes.png").write_text("this is a text file, not a PNG\n")
    Image.fromarray(img[:, :, 0].astype(np.uint16) * 256).save(folder / "sixteen.png", dpi=(50800, 50800))
    (folder / "huge.png").write_bytes(huge_png_bytes())
    (folder / "huge.tif").write_bytes(huge_tiff_bytes())
    Image.fromarray(img).save(folder / "nompp.png")
    (folder / "garbage.svs").write_bytes(np.random.default_rng(0).bytes(4096))
    return {
        "empty.png": "empty",
        "truncated.jpg": "truncated",
        "truncated.tif": "truncated",
        "notes.png": "not an image|cannot decode",
        "sixteen.png": "16-bit|8-bit",
        "huge.png": "100000 x 100000",
        "huge.tif": "100000 x 100000|truncated",
        "nompp.png": "--mpp",
        "garbage.svs": "not a supported|not a readable|corrupt",
    }
