"""Cases: the read-out of a set of images of one tumour, as a pathologist reports it.

A pathologist photographs (or a scanner gives) several fields of one case and reports one
mitotic count for the case. :func:`case_readout` sums the detections and the tissue area of
the case's images and derives per mm2, per 10 HPF and the Nottingham mitotic score from that
total. A score needs at least :data:`MIN_HPF_FOR_SCORE` (10) high-power fields of tissue, the
area the grading rule counts over; below that it is **withheld** with the reason, unless the
user asks for an extrapolated score, which is then flagged (``extrapolated``) in every output.
With ground truth, P/R/F1 are pooled over the case (TP, FP, FN summed).

Which images form a case: by default the images of one input folder (``case_by="folder"``);
``"file"`` makes each image its own case, ``"all"`` the whole batch one case.

Outputs (:func:`write_cases`): ``<case>.case.json`` and ``<case>.case.md`` per case, and
``cases.csv``, one row per case (merged by case with the rows of earlier runs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mitodet.report.readout import DIGITAL_HPF_AREA_MM2, count_per_10hpf, count_per_mm2, mitotic_score

MIN_HPF_FOR_SCORE = 10.0
CASE_RULES = ("folder", "file", "all")
CASES_INDEX = "cases.csv"
CASE_COLUMNS = (
    "case",
    "images",
    "failed",
    "count",
    "tissue_area_mm2",
    "hpf_equivalents",
    "count_per_mm2",
    "count_per_10hpf",
    "mitotic_score",
    "score_status",
    "precision",
    "recall",
    "f1",
    "atypical_count",
    "atypical_fraction",
)


@dataclass
class CaseReadout:
    """The read-out of one case (see the module docstring); ``to_json`` / ``from_json`` round-trip."""

    case: str
    images: list[str]
    count: int
    tissue_area_mm2: float
    field_area_mm2: float
    hpf_equivalents: float
    count_per_mm2: float | None
    count_per_10hpf: float | None
    score: int | None
    score_status: str  # "given", "extrapolated" or "withheld"
    reason: str  # why withheld / extrapolated ("" when given)
    failed: list[str] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None
    atypical_count: int | None = None  # mitoses called atypical, when every image was classified
    atypical_fraction: float | None = None

    @property
    def extrapolated(self) -> bool:
        return self.score_status == "extrapolated"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "extrapolated": self.extrapolated}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CaseReadout:
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def line(self) -> str:
        """One console line."""
        score = {
            "given": f"score {self.score}",
            "extrapolated": f"score {self.score} EXTRAPOLATED ({self.reason})",
            "withheld": f"score withheld ({self.reason})",
        }[self.score_status]
        per10 = "n/a" if self.count_per_10hpf is None else f"{self.count_per_10hpf:.1f}"
        ev = ""
        if self.evaluation:
            e = self.evaluation
            ev = f", pooled P {e['precision']:.3f} R {e['recall']:.3f} F1 {e['f1']:.3f}"
        fail = f", {len(self.failed)} image(s) failed" if self.failed else ""
        return (
            f"case {self.case}: {len(self.images)} image(s), {self.count} mitoses in {self.tissue_area_mm2:.3f} mm2 "
            f"({self.hpf_equivalents:.1f} HPF), {per10} per 10 HPF, {score}{ev}{fail}"
        )


def case_name(path: Path, rule: str) -> str:
    """The case an input belongs to under ``rule`` (one of :data:`CASE_RULES`)."""
    return _case_key(path, rule)[1]


def _case_key(path: Path, rule: str) -> tuple[str, str]:
    """(identity, display name) of the case of ``path``: the identity is a resolved path, so
    two folders of one name in different places are two cases."""
    p = Path(path).resolve()
    if rule == "folder":
        return str(p.parent), p.parent.name or "case"
    if rule == "file":
        return str(p), p.stem
    if rule == "all":
        return "all", "all"
    raise ValueError(f"case rule must be one of {CASE_RULES}, got {rule!r}")


def case_readout(
    case: str,
    summaries: Sequence[dict[str, Any]],
    failed: Sequence[str] = (),
    field_area_mm2: float = DIGITAL_HPF_AREA_MM2,
    extrapolate: bool = False,
) -> CaseReadout:
    """The read-out of one case from its images' summaries (``mitodet detect``'s
    ``NAME.summary.json`` documents)."""
    count = int(sum(int(s.get("count") or 0) for s in summaries))
    area = float(sum(float(s.get("tissue_area_mm2") or 0.0) for s in summaries))
    hpf = area / field_area_mm2
    per_mm2 = count_per_mm2(count, area) if area > 0 else None
    per10 = count_per_10hpf(count, area, field_area_mm2, 10) if area > 0 else None
    score, status, reason = None, "withheld", ""

    def graded() -> int | None:
        nonlocal reason
        try:
            return mitotic_score(per10, field_area_mm2).score
        except ValueError as exc:  # a field area outside the Nottingham table
            reason = str(exc)
            return None

    if area <= 0:
        reason = "no tissue"
    elif hpf >= MIN_HPF_FOR_SCORE:
        score = graded()
        status = "given" if score is not None else "withheld"
    elif extrapolate:
        score = graded()
        if score is not None:
            status, reason = "extrapolated", f"from {hpf:.1f} HPF of tissue, scaled to 10"
    else:
        reason = (
            f"{hpf:.1f} HPF of tissue, fewer than the {MIN_HPF_FOR_SCORE:g} the grade is counted over; add fields "
            "of the case, or ask for an extrapolated score (--extrapolate-score)"
        )
    evaluations = [s["evaluation"] for s in summaries if s.get("evaluation")]
    ev = None
    if evaluations:
        tp, fp, fn = (sum(int(e[k]) for e in evaluations) for k in ("tp", "fp", "fn"))
        from mitodet.evaluation.metrics import precision_recall_f1

        p, r, f1 = precision_recall_f1(tp, fp, fn)
        ev = {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f1, "images": len(evaluations)}
    atypical_count = atypical_fraction = None
    if summaries and all(s.get("atypical") for s in summaries):
        atypical_count = int(sum(int(s["atypical"]["count"]) for s in summaries))
        atypical_fraction = atypical_count / count if count else None
    return CaseReadout(
        atypical_count=atypical_count,
        atypical_fraction=atypical_fraction,
        case=case,
        images=[str(s.get("image", s.get("name", ""))) for s in summaries],
        count=count,
        tissue_area_mm2=area,
        field_area_mm2=float(field_area_mm2),
        hpf_equivalents=hpf,
        count_per_mm2=per_mm2,
        count_per_10hpf=per10,
        score=score,
        score_status=status,
        reason=reason,
        failed=list(failed),
        evaluation=ev,
    )


def case_markdown(c: CaseReadout) -> str:
    lines = [
        f"# Case {c.case}",
        "",
        "| | |",
        "|---|---|",
        f"| Images | {len(c.images)}{f' ({len(c.failed)} more failed: not counted)' if c.failed else ''} |",
        f"| Mitoses | {c.count} |",
        f"| Tissue area | {c.tissue_area_mm2:.3f} mm² ({c.hpf_equivalents:.1f} HPF of {c.field_area_mm2:g} mm²) |",
        f"| Mitoses per mm² | {'n/a' if c.count_per_mm2 is None else f'{c.count_per_mm2:.2f}'} |",
        f"| Mitoses per 10 HPF | {'n/a' if c.count_per_10hpf is None else f'{c.count_per_10hpf:.1f}'} |",
    ]
    if c.score_status == "given":
        lines.append(f"| Nottingham mitotic score | **{c.score}** |")
    elif c.score_status == "extrapolated":
        lines.append(f"| Nottingham mitotic score | **{c.score} (EXTRAPOLATED: {c.reason})** |")
    else:
        lines.append(f"| Nottingham mitotic score | withheld: {c.reason} |")
    if c.atypical_count is not None:
        frac = "n/a" if c.atypical_fraction is None else f"{100 * c.atypical_fraction:.0f} %"
        per10 = "n/a" if not c.hpf_equivalents else f"{10 * c.atypical_count / c.hpf_equivalents:.1f}"
        lines.append(f"| Called atypical | {c.atypical_count} ({frac} of the mitoses; {per10} per 10 HPF) |")
    if c.evaluation:
        e = c.evaluation
        lines.append(
            f"| Against ground truth (pooled over {e['images']} image(s)) | P {e['precision']:.3f}, "
            f"R {e['recall']:.3f}, F1 {e['f1']:.3f} (TP {e['tp']}, FP {e['fp']}, FN {e['fn']}) |"
        )
    lines += ["", "Images: " + ", ".join(f"`{Path(i).name}`" for i in c.images)]
    if c.failed:
        lines.append("Failed (see summary.csv): " + ", ".join(f"`{Path(i).name}`" for i in c.failed))
    lines += [
        "",
        "The count is the sum over the case's images and the score is computed from that total "
        f"over their tissue (at least {MIN_HPF_FOR_SCORE:g} HPF for a score). Automated counts are an aid: "
        "review the detections (the overlays, or the GeoJSON in QuPath) before reporting.",
    ]
    return "\n".join(lines) + "\n"


def safe_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "case"


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def case_row(c: CaseReadout) -> dict[str, str]:
    e = c.evaluation or {}
    return {
        "case": c.case,
        "images": str(len(c.images)),
        "failed": str(len(c.failed)),
        "count": str(c.count),
        "tissue_area_mm2": _fmt(c.tissue_area_mm2),
        "hpf_equivalents": _fmt(c.hpf_equivalents),
        "count_per_mm2": _fmt(c.count_per_mm2),
        "count_per_10hpf": _fmt(c.count_per_10hpf),
        "mitotic_score": _fmt(c.score),
        "score_status": c.score_status,
        "precision": _fmt(e.get("precision")),
        "recall": _fmt(e.get("recall")),
        "f1": _fmt(e.get("f1")),
        "atypical_count": _fmt(c.atypical_count),
        "atypical_fraction": _fmt(c.atypical_fraction),
    }


def write_cases(
    results: Iterable,
    out_dir: str | Path,
    case_by: str = "folder",
    field_area_mm2: float = DIGITAL_HPF_AREA_MM2,
    extrapolate: bool = False,
) -> list[CaseReadout]:
    """Group a batch's results (``FileResult`` s of ``detect_files``) into cases and write
    each case's ``.case.json`` / ``.case.md`` and the cohort's ``cases.csv`` into ``out_dir``."""
    from mitodet.checks import atomic_write_text
    from mitodet.report.outputs import write_merged_csv

    if case_by not in CASE_RULES:
        raise ValueError(f"case rule must be one of {CASE_RULES}, got {case_by!r}")
    out = Path(out_dir)
    # every finished image in the folder counts, from this run or an earlier one: a case's
    # read-out is rebuilt from all its images, never from the last batch alone
    summaries: dict[str, dict] = {}
    for f in sorted(out.glob("*.summary.json")):
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("status") == "complete" and (doc.get("image_path") or doc.get("image")):
            summaries[str(Path(doc.get("image_path") or doc["image"]).resolve())] = doc
    failed: dict[str, str] = {}
    for r in results:
        key = str(Path(r.path).resolve())
        if r.summary is not None and r.status in ("done", "skipped"):
            s = r.summary  # a FileSummary, or (from callers of their own) its JSON dict
            summaries[key] = s.to_json() if hasattr(s, "to_json") else s
        else:
            summaries.pop(key, None)
            failed[key] = str(r.path)
    groups: dict[str, tuple[str, list[dict], list[str]]] = {}
    for key, doc in summaries.items():
        ident, name = _case_key(Path(key), case_by)
        groups.setdefault(ident, (name, [], []))[1].append(doc)
    for key, shown in failed.items():
        ident, name = _case_key(Path(key), case_by)
        groups.setdefault(ident, (name, [], []))[2].append(shown)
    used: set[str] = set()
    readouts = []
    for ident in sorted(groups, key=lambda i: groups[i][0]):
        name, docs, bad = groups[ident]
        shown, k = safe_name(name), 1
        while shown.lower() in used:  # two cases of one name (or one file name) stay apart
            k += 1
            shown = f"{safe_name(name)}-{k}"
        used.add(shown.lower())
        c = case_readout(shown, docs, bad, field_area_mm2, extrapolate)
        stem = out / f"{shown}.case"
        atomic_write_text(stem.with_suffix(".case.json"), json.dumps(c.to_json(), indent=2) + "\n")
        atomic_write_text(stem.with_suffix(".case.md"), case_markdown(c))
        readouts.append(c)
    write_merged_csv(out / CASES_INDEX, CASE_COLUMNS, [case_row(c) for c in readouts], key=lambda row: row.get("case"))
    return readouts


__all__ = [
    "CASE_RULES",
    "CASES_INDEX",
    "MIN_HPF_FOR_SCORE",
    "CaseReadout",
    "case_markdown",
    "case_name",
    "case_readout",
    "case_row",
    "safe_name",
    "write_cases",
]
