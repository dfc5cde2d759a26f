"""Dataset readers: one function per label format, each returning ``list[ImageRecord]``.

Readers only turn files into records (image path, points (N, 2) as (x, y) = (column, row) in
level-0 pixels of the record's image, labels 1 = mitosis / 0 = hard negative, mpp, slide,
domain, optional scores). They never decode whole-slide or frame images; sampling,
resampling to a working mpp and augmentation are shared code elsewhere.

Coordinate convention (all readers): pixel-centre -- the pixel in column ``i``, row ``j`` has
its centre at ``(i, j)``; a ``w x h`` image spans ``-0.5 <= x < w - 0.5`` and its centre is
``((w - 1) / 2, (h - 1) / 2)``. Integer coordinates from label files are pixel indices.

``READERS`` maps the data-spec names to the functions; ``get_reader(name)`` looks one up and
names the known readers when it is missing.
"""

from __future__ import annotations

from collections.abc import Callable

from mitodet.data.readers.generic import read_points_csv, read_qupath_geojson
from mitodet.data.readers.icpr12 import read_icpr12, read_icpr12_patches
from mitodet.data.readers.midog import read_midog
from mitodet.data.readers.mitos_atypia14 import read_mitos_atypia14
from mitodet.data.readers.patches import read_amibr, read_atnorm, read_mitos_atypia14_patches
from mitodet.data.readers.tupac16 import read_tupac16_aux, read_tupac16_patches
from mitodet.data.records import ImageRecord

__all__ = [
    "READERS",
    "get_reader",
    "read_amibr",
    "read_atnorm",
    "read_icpr12",
    "read_icpr12_patches",
    "read_midog",
    "read_mitos_atypia14",
    "read_mitos_atypia14_patches",
    "read_points_csv",
    "read_qupath_geojson",
    "read_tupac16_aux",
    "read_tupac16_patches",
]

#: data-spec name -> reader function (each returns ``list[ImageRecord]``)
READERS: dict[str, Callable[..., list[ImageRecord]]] = {
    "mitos_atypia14": read_mitos_atypia14,
    "mitos_atypia14_patches": read_mitos_atypia14_patches,
    "icpr12": read_icpr12,
    "icpr12_patches": read_icpr12_patches,
    "tupac16_aux": read_tupac16_aux,
    "tupac16_patches": read_tupac16_patches,
    "midog": read_midog,
    "amibr": read_amibr,
    "atnorm": read_atnorm,
    "points_csv": read_points_csv,
    "qupath_geojson": read_qupath_geojson,
}


def get_reader(name: str) -> Callable[..., list[ImageRecord]]:
    """Return the reader registered as ``name``.

    Raises:
        KeyError: ``name`` is not registered; the message lists the known names.
    """
    try:
        return READERS[name]
    except KeyError:
        raise KeyError(f"unknown dataset reader {name!r}; known readers: {', '.join(sorted(READERS))}") from None
