"""What the viewer may serve: the images of one ``mitodet detect`` output folder.

The browser never sends a path. It names an image by the ``NAME`` of its
``NAME.summary.json`` (a key of :class:`Catalog`, looked up, never joined to a path), and
asks for one of a fixed set of that image's outputs (:data:`LAYERS`). Every file the
catalog hands out is checked to resolve, symlinks followed, inside the output folder, or to
be the very input file the summary records; anything else is refused
(:class:`NotServable`). Nothing read from the folder is executed or unpickled: summaries are
JSON, points CSV/GeoJSON, pictures PNG/JPEG.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: the outputs of an image the viewer may serve, by the name the page asks for
LAYERS = {
    "tissue": ".tissue.png",
    "heatmap": ".heatmap.jpg",
    "overlay": ".overlay.jpg",
}
SUMMARY_SUFFIX = ".summary.json"
RESCAN_S = 1.0  # how often the folder is rescanned for images a running detect adds
REVIEWED_SUFFIX = ".reviewed.geojson"


class NotServable(LookupError):
    """A request for something the viewer does not serve (unknown image, a file outside the
    output folder, a missing output): the server answers 404."""


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve(strict=True).relative_to(root)
    except (OSError, ValueError):
        return False
    return True


@dataclass
class ImageEntry:
    """One finished image of the output folder."""

    name: str
    summary: dict[str, Any]
    out_dir: Path  # resolved
    _candidates: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = field(default=None, repr=False)
    _mask: Any = field(default=None, repr=False)  # (the mask,) once read; None: not read yet
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def output(self, suffix: str) -> Path:
        """``OUT/NAME<suffix>``, refused unless it is a file that resolves inside ``OUT``."""
        p = self.out_dir / f"{self.name}{suffix}"
        if not p.is_file() or not _inside(p, self.out_dir):
            raise NotServable(f"{self.name}{suffix}: not in the output folder")
        return p

    def has(self, suffix: str) -> bool:
        try:
            self.output(suffix)
        except NotServable:
            return False
        return True

    @property
    def reviewed_path(self) -> Path:
        """Where the corrections of this image are saved (may not exist yet)."""
        return self.out_dir / f"{self.name}{REVIEWED_SUFFIX}"

    @property
    def image_path(self) -> Path:
        """The input file detection ran on, as the summary records it."""
        p = self.summary.get("image_path") or self.summary.get("image")
        if not p:
            raise NotServable(f"{self.name}: the summary records no input image")
        path = Path(p)
        if not path.is_file():
            raise NotServable(
                f"{self.name}: the input {path} is not there any more (moved or deleted); the pixels cannot be shown"
            )
        return path.resolve()

    @property
    def mpp(self) -> float:
        return float(self.summary["mpp"])

    @property
    def image_shape(self) -> tuple[int, int]:
        h, w = self.summary["image_shape"][:2]
        return int(h), int(w)

    @property
    def threshold(self) -> float:
        return float(self.summary.get("score_threshold") or 0.0)

    def candidates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(points, scores, atypical)`` of every candidate, by descending score (``atypical``:
        P(atypical), NaN where not classified; None without the classifier):
        ``NAME.candidates.csv``, or ``NAME.csv`` (the detections at the operating threshold)
        for folders written before candidates were kept."""
        with self._lock:
            if self._candidates is None:
                try:
                    path = self.output(".candidates.csv")
                except NotServable:
                    path = self.output(".csv")
                self._candidates = read_detection_csv(path)
            return self._candidates

    def tissue_mask(self):
        """The read-out's tissue mask (``NAME.tissue.png``), or None (all tissue); read once."""
        from mitodet.inference.pipeline import load_tissue_png

        with self._lock:
            if self._mask is None:
                mask = None
                if self.has(LAYERS["tissue"]):
                    method = (self.summary.get("tissue") or {}).get("method", "")
                    mask = load_tissue_png(self.output(LAYERS["tissue"]), self.image_shape, method)
                self._mask = (mask,)
            return self._mask[0]

    def row(self) -> dict[str, Any]:
        """The image's line in the page's list."""
        s = self.summary
        hot = s.get("hotspot") or {}
        nott = s.get("nottingham") or {}
        ev = s.get("evaluation") or None
        return {
            "name": self.name,
            "image": Path(str(s.get("image", ""))).name,
            "kind": s.get("kind"),
            "count": s.get("count"),
            "tissue_area_mm2": s.get("tissue_area_mm2"),
            "count_per_10hpf": s.get("count_per_10hpf"),
            "hotspot_count_per_10hpf": hot.get("count_per_10hpf"),
            "score": nott.get("score"),
            "threshold": self.threshold,
            "reviewed": self.reviewed_path.is_file(),
            "f1": None if not ev else ev.get("f1"),
        }


def read_detection_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``detect``'s ``x,y,score,...[,atypical_probability]`` CSV -> (points, scores,
    atypical or None), by descending score."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    pts = np.array([[float(r["x"]), float(r["y"])] for r in rows], dtype=np.float64).reshape(-1, 2)
    sc = np.array([float(r["score"]) if r.get("score") else np.nan for r in rows], dtype=np.float64)
    atyp = None
    if rows and "atypical_probability" in rows[0]:
        atyp = np.array([float(r["atypical_probability"] or "nan") for r in rows], dtype=np.float64)
    order = np.argsort(-np.nan_to_num(sc, nan=-1.0), kind="stable")
    return pts[order], sc[order], None if atyp is None else atyp[order]


class Catalog:
    """The finished images (``NAME.summary.json`` with status ``complete``) of ``out_dir``,
    rescanned when the folder changes (a detect run still going adds images)."""

    def __init__(self, out_dir: str | Path) -> None:
        root = Path(out_dir)
        if not root.is_dir():
            raise ValueError(f"{root}: no such folder; give the --out folder of a `mitodet detect` run")
        self.out_dir = root.resolve()
        self._entries: dict[str, ImageEntry] = {}
        self._stamp: tuple | None = None
        self._checked = -RESCAN_S
        self._lock = threading.Lock()
        self.refresh(force=True)
        if not self._entries:
            raise ValueError(
                f"{root}: holds no finished detection (*.summary.json); run `mitodet detect IMAGES --out {root}` first"
            )

    def refresh(self, force: bool = False) -> None:
        """Rescan the folder, at most once a second (every request asks: tiles included)."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._checked < RESCAN_S:
                return
            self._checked = now
            files = sorted(self.out_dir.glob(f"*{SUMMARY_SUFFIX}"))
            stamp = tuple((f.name, f.stat().st_mtime_ns) for f in files if f.is_file())
            if stamp == self._stamp:
                return
            entries = {}
            for f in files:
                if not _inside(f, self.out_dir):
                    continue  # a summary symlinked in from elsewhere is not this folder's
                try:
                    doc = json.loads(f.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if not isinstance(doc, dict) or doc.get("status") != "complete" or "mpp" not in doc:
                    continue
                name = f.name[: -len(SUMMARY_SUFFIX)]
                old = self._entries.get(name)
                keep = old is not None and old.summary == doc
                entries[name] = old if keep else ImageEntry(name, doc, self.out_dir)
            self._entries, self._stamp = entries, stamp

    def names(self) -> list[str]:
        self.refresh()
        return sorted(self._entries)

    def get(self, name: str) -> ImageEntry:
        self.refresh()
        try:
            return self._entries[name]
        except KeyError:
            raise NotServable(f"no image {name!r} in this output folder") from None

    def case_rows(self) -> list[dict[str, str]]:
        """``cases.csv`` as detect wrote it (empty when there is none)."""
        p = self.out_dir / "cases.csv"
        if not p.is_file() or not _inside(p, self.out_dir):
            return []
        with open(p, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
