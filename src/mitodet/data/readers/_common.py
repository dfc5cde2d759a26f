"""Helpers shared by the dataset readers: strict parsing with file:line error messages.

Coordinate convention of every reader (stated once here, repeated in each docstring):
points are (x, y) = (column, row) in level-0 pixels of the record's image, with the
*pixel-centre* convention: the pixel in column ``i`` and row ``j`` has its centre at
``(i, j)``, so an image of width ``w`` covers ``-0.5 <= x < w - 0.5`` and its geometric
centre is ``((w - 1) / 2, (h - 1) / 2)``. Integer annotation coordinates (MITOS-ATYPIA-14,
ICPR 2012 pixel lists, TUPAC16 row/col) are pixel indices and are used unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mitodet.data.records import DataFormatError

__all__ = [
    "format_error",
    "iter_data_lines",
    "parse_coordinate",
    "parse_number",
    "image_size",
    "check_dir",
    "points_array",
]


def format_error(path: Path | str, line: int | None, what: str, fix: str) -> DataFormatError:
    """Build a ``DataFormatError`` whose message reads ``"<file>:<line>: <what>. <fix>"``.

    Args:
        path: the offending file.
        line: 1-based line number, or ``None`` when the problem is the whole file.
        what: what is wrong, quoting the bad value.
        fix: how to fix it.
    """
    where = f"{path}:{line}" if line is not None else f"{path}"
    return DataFormatError(f"{where}: {what}. {fix}")


def check_dir(path: Path | str, what: str, fix: str) -> Path:
    """Return ``Path(path)`` or raise ``DataFormatError`` if it is not an existing folder."""
    path = Path(path)
    if not path.is_dir():
        raise format_error(path, None, f"{what} folder not found", fix)
    return path


def iter_data_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, stripped_text)`` for every non-blank line of a text file.

    Line numbers are 1-based and count blank lines, so they match what an editor shows.
    A UTF-8 byte-order mark and Windows line ends are accepted.

    Raises:
        DataFormatError: the file is missing, unreadable or not UTF-8 text.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise format_error(
            path, None, "file not found", "Check the path, or restore the file from the dataset"
        ) from None
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise format_error(
            path,
            line,
            f"not UTF-8 text ({e.reason} at byte {e.start})",
            "Save the file as plain UTF-8 CSV/text",
        ) from None
    except OSError as e:
        raise format_error(path, None, f"cannot read file ({e})", "Check permissions") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped:
            yield number, stripped


def parse_number(text: str, path: Path, line: int, name: str) -> float:
    """Parse a finite float, or raise naming the file, line, column name and value."""
    try:
        value = float(text)
    except ValueError:
        raise format_error(path, line, f"{name} is {text!r}, not a number", "Write a plain decimal number") from None
    if not math.isfinite(value):
        raise format_error(
            path,
            line,
            f"{name} is {text!r}, not a finite number",
            "Remove the row or give a finite value",
        )
    return value


def parse_coordinate(text: str, path: Path, line: int, name: str) -> float:
    """Parse a finite, non-negative pixel coordinate (level-0 pixels)."""
    value = parse_number(text, path, line, name)
    if value < 0:
        raise format_error(
            path,
            line,
            f"{name} is {text!r}, a negative pixel coordinate",
            "Coordinates are level-0 pixels from the image's top-left corner (>= 0); fix or remove the row",
        )
    return value


def image_size(path: Path) -> tuple[int, int]:
    """Return ``(width, height)`` in pixels from the image header, without decoding pixels.

    Raises:
        DataFormatError: the file is missing or not an image PIL can identify.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise format_error(path, None, "image not found", "Check the dataset folder") from None
    except (UnidentifiedImageError, OSError) as e:
        raise format_error(path, None, f"not a readable image ({e})", "Replace the file with a valid image") from None


def points_array(points: list[tuple[float, float]] | list[list[float]]) -> np.ndarray:
    """Return ``points`` as a float64 ``(N, 2)`` array; ``(0, 2)`` when empty."""
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)
