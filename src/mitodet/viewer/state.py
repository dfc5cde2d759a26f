"""The viewer's state without the web layer (shared by ``mitodet view`` and ``mitodet report``):
the catalog of the output folder, the ground truth detect was given, the live read-out at
any threshold, and the read-out recomputed from the reviewed points."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from mitodet.viewer.catalog import Catalog, ImageEntry
from mitodet.viewer.review import load_review

CROP_UM = 40.0  # side of a gallery crop (about four cell diameters)
REVIEWED_DIR = "reviewed"  # OUT/reviewed/: the read-out of the reviewed points


def finite(v: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class Viewer:
    """The state behind the app: the catalog, the open slides, the ground truth read once."""

    def __init__(self, out_dir: str | Path) -> None:
        self.catalog = Catalog(out_dir)
        self._gt: dict[str, tuple[np.ndarray, float] | None] = {}
        self._lock = threading.Lock()

    def entry(self, name: str) -> ImageEntry:
        return self.catalog.get(name)

    def reader(self, e: ImageEntry) -> str:
        return str((e.summary.get("source") or {}).get("reader") or "auto")

    def ground_truth(self, e: ImageEntry) -> tuple[np.ndarray, float] | None:
        """``(mitoses in px, radius in um)`` of the ground truth detect was given, or None."""
        ev = e.summary.get("evaluation") or None
        if not ev:
            return None
        with self._lock:
            if e.name not in self._gt:
                from mitodet.evaluation.io import load_points

                try:
                    ps = load_points(ev["gt_file"])[ev["gt_image"]]
                    self._gt[e.name] = (ps.to_pixels(e.mpp).mitoses()[0], float(ev["radius_um"]))
                except (OSError, ValueError, KeyError):
                    self._gt[e.name] = None  # moved since: the page says so (has_gt false)
            return self._gt[e.name]

    def readout(self, e: ImageEntry, points: np.ndarray, scores: np.ndarray | None) -> dict[str, Any]:
        from mitodet.inference.pipeline import readout_summary

        field = float(e.summary.get("field_area_mm2") or 0.237)
        return readout_summary(points, scores, e.mpp, e.image_shape, e.tissue_mask(), field)

    def reviewed_mitoses(self, e: ImageEntry) -> np.ndarray | None:
        r = load_review(e.reviewed_path)
        if r is None:
            return None
        pts = [[p["x"], p["y"]] for p in r["points"] if p["label"] == "mitosis"]
        return np.asarray(pts, dtype=np.float64).reshape(-1, 2)

    def cases(self, reviewed: bool) -> list[dict[str, Any]]:
        """The cases of the folder (``*.case.json``), recomputed from the reviewed points of
        the images that have them when ``reviewed``."""
        from mitodet.report.case import CaseReadout, case_readout

        out = []
        by_image = {str(self.entry(n).summary.get("image")): n for n in self.catalog.names()}
        for f in sorted(self.catalog.out_dir.glob("*.case.json")):
            try:
                c = CaseReadout.from_json(json.loads(f.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                continue
            names = [by_image[i] for i in c.images if i in by_image]
            n_rev = sum(self.entry(n).reviewed_path.is_file() for n in names)
            row = {**c.to_json(), "names": names, "n_reviewed": n_rev}
            if reviewed and n_rev:
                docs = [self.image_summary(self.entry(n), reviewed=True) for n in names]
                r = case_readout(c.case, docs, c.failed, c.field_area_mm2, c.extrapolated)
                row = {**r.to_json(), "names": names, "n_reviewed": n_rev, "source": "reviewed"}
            out.append(row)
        return out

    def image_summary(self, e: ImageEntry, reviewed: bool) -> dict[str, Any]:
        """The image's summary; with ``reviewed`` and a saved review, its read-out recomputed
        from the reviewed points (no evaluation: the review is the new truth)."""
        pts = self.reviewed_mitoses(e) if reviewed else None
        if pts is None:
            return e.summary
        s = self.readout(e, pts, None)
        s.update(
            image=e.summary.get("image"),
            image_path=e.summary.get("image_path"),
            name=e.name,
            kind=e.summary.get("kind"),
            status="complete",
            points=str(e.reviewed_path),
            notes=[f"read-out of the reviewed points in {e.reviewed_path.name} (not of the model's detections)"],
        )
        return s

    def write_reviewed_readout(self) -> dict[str, Any]:
        """``OUT/reviewed/``: per image ``NAME.summary.json``/``.md`` from the reviewed points
        (the model's for images not reviewed), per case ``.case.json``/``.md``, ``cases.csv``:
        what ``mitodet readout`` writes, from the same functions."""
        from mitodet.checks import atomic_write_text
        from mitodet.report.case import CASE_COLUMNS, CaseReadout, case_markdown, case_row
        from mitodet.report.outputs import summary_markdown, write_merged_csv

        dst = self.catalog.out_dir / REVIEWED_DIR
        dst.mkdir(exist_ok=True)
        n = 0
        for name in self.catalog.names():
            e = self.entry(name)
            if e.reviewed_path.is_file():
                s = self.image_summary(e, reviewed=True)
                atomic_write_text(dst / f"{name}.summary.json", json.dumps(finite(s), indent=2) + "\n")
                atomic_write_text(dst / f"{name}.summary.md", summary_markdown(s))
                n += 1
        cases = self.cases(reviewed=True)
        for c in cases:
            cr = CaseReadout.from_json(c)
            atomic_write_text(dst / f"{cr.case}.case.json", json.dumps(finite(cr.to_json()), indent=2) + "\n")
            atomic_write_text(dst / f"{cr.case}.case.md", case_markdown(cr))
        rows = [case_row(CaseReadout.from_json(c)) for c in cases]
        write_merged_csv(dst / "cases.csv", CASE_COLUMNS, rows, key=lambda row: row.get("case"))
        return {"folder": str(dst), "images_reviewed": n, "cases": len(cases)}
