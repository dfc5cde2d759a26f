"""``mitodet report``: one self-contained HTML file per case, for sharing.

Each ``<case>.html`` holds the case read-out (count, tissue, HPF, per 10 HPF, the Nottingham
score with its rule and status), and per image its read-out, a hotspot picture with the
detections drawn, and a gallery of the detections by score. Pictures are embedded as
``data:`` JPEGs and the styles inline: no script, no external link, so it opens from an
e-mail attachment. Where an image was reviewed in ``mitodet view`` the reviewed points are
reported (and said to be).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

GALLERY_PX = 120
HOTSPOT_PX = 560

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d2330;margin:24px;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #d8dde6}
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #e4e7ec;text-align:left}
th{color:#667085;font-weight:normal}.big{font-size:22px;font-weight:700}.muted{color:#667085}
.warn{background:#fff4e0;padding:6px 10px;border-left:4px solid #f0a000}
.gal{display:flex;flex-wrap:wrap;gap:6px}.gal figure{margin:0;font-size:12px;text-align:center}
.gal img{width:120px;height:120px;display:block}.no{opacity:.45}
"""


def _jpeg(a: np.ndarray, quality: int = 85) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _f(v: Any, nd: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _region(src, box: tuple[float, float, float, float], max_px: int) -> tuple[np.ndarray, float]:
    """Level-0 ``box`` read from the coarsest level that still gives ``max_px`` pixels, resized
    to fit ``max_px``; returns (RGB, level-0 pixels per output pixel)."""
    from PIL import Image

    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 1.0)
    level = 0
    for k in range(len(src.level_dimensions)):
        if side / max(src.level_downsample(k)) >= max_px:
            level = k
    dx, dy = src.level_downsample(level)
    a = src.read_region(
        level, (int(x0 / dx), int(y0 / dy), max(int(x0 / dx) + 1, int(x1 / dx)), max(int(y0 / dy) + 1, int(y1 / dy)))
    )
    f = max(a.shape[:2]) / max_px
    if f > 1:
        a = np.asarray(
            Image.fromarray(a).resize(
                (max(1, round(a.shape[1] / f)), max(1, round(a.shape[0] / f))), Image.Resampling.BOX
            )
        )
    return a, side / max(a.shape[:2])


def _image_section(v, name: str, max_gallery: int) -> str:
    from mitodet.inference.slide import open_image
    from mitodet.report.viz import draw_detections
    from mitodet.viewer.state import CROP_UM

    e = v.entry(name)
    reviewed = e.reviewed_path.is_file()
    s = v.image_summary(e, reviewed=reviewed)
    if reviewed:
        pts = v.reviewed_mitoses(e)
        scores = [None] * len(pts)
        source = f"reviewed points ({e.reviewed_path.name})"
    else:
        allp, alls, _ = e.candidates()
        keep = alls >= e.threshold
        pts, scores = allp[keep], alls[keep].tolist()
        source = f"the model's detections at threshold {e.threshold:.3f}"
    hot = s.get("hotspot") or {}
    n = s.get("nottingham") or {}
    parts = [f"<h2>{_e(Path(str(s.get('image', name))).name)}</h2>"]
    parts.append(f"<p class='muted'>Read-out of {_e(source)}.</p>")
    parts.append(
        "<table>"
        f"<tr><th>Mitoses</th><td>{_e(s.get('count'))}</td></tr>"
        f"<tr><th>Tissue</th><td>{_f(s.get('tissue_area_mm2'), 3)} mm²</td></tr>"
        f"<tr><th>Per 10 HPF (tissue)</th><td>{_f(s.get('count_per_10hpf'))}</td></tr>"
        f"<tr><th>Hotspot</th><td>{_e(hot.get('count'))} in {_e(hot.get('n_fields'))} HPF: "
        f"{_f(hot.get('count_per_10hpf'))} per 10 HPF{' (extrapolated)' if hot.get('extrapolated') else ''}</td></tr>"
        + (
            f"<tr><th>Called atypical</th><td>{_e(s['atypical']['count'])} (P(atypical) >= "
            f"{s['atypical']['threshold']:.2f})</td></tr>"
            if s.get("atypical")
            else ""
        )
        + f"<tr><th>Nottingham score (this image)</th><td>{_e(n.get('score') if n.get('score') is not None else 'n/a')}</td></tr>"
        "</table>"
    )
    try:
        src = open_image(e.image_path, reader=v.reader(e) if v.reader(e) in ("openslide", "tifffile") else "auto")
    except (OSError, ValueError) as exc:
        parts.append(f"<p class='warn'>No pictures: {_e(exc)}</p>")
        return "\n".join(parts)
    with src:
        if hot.get("box_px"):
            x0, y0, x1, y1 = (float(t) for t in hot["box_px"])
            pad = 0.04 * max(x1 - x0, y1 - y0)
            box = (x0 - pad, y0 - pad, x1 + pad, y1 + pad)
            a, per = _region(src, box, HOTSPOT_PX)
            inside = (pts[:, 0] >= box[0]) & (pts[:, 0] < box[2]) & (pts[:, 1] >= box[1]) & (pts[:, 1] < box[3])
            local = (pts[inside] - np.array(box[:2])) / per
            a = draw_detections(a, local, radius_px=max(4.0, 8.0 / (e.mpp * per)), width=2)
            parts.append(f"<p><img alt='hotspot' src='{_jpeg(a)}' style='max-width:100%'></p>")
        half = CROP_UM / e.mpp / 2
        figs = []
        order = sorted(range(len(pts)), key=lambda i: -(scores[i] if scores[i] is not None else 2.0))
        for i in order[:max_gallery]:
            x, y = pts[i]
            crop, _ = _region(src, (x - half, y - half, x + half, y + half), GALLERY_PX)
            label = "added" if scores[i] is None else f"{scores[i]:.3f}"
            figs.append(
                f"<figure><img alt='detection' src='{_jpeg(crop, 80)}'><figcaption>{_e(label)}</figcaption></figure>"
            )
        more = f"<p class='muted'>{len(pts) - max_gallery} more not shown.</p>" if len(pts) > max_gallery else ""
        if figs:
            parts.append(f"<h3>Detections, by score</h3><div class='gal'>{''.join(figs)}</div>{more}")
    return "\n".join(parts)


def case_html(v, case: dict[str, Any], max_gallery: int = 60) -> str:
    """One case's self-contained HTML page."""
    from mitodet import __version__
    from mitodet.report.readout import NOTTINGHAM_TABLE_SOURCE, nottingham_row

    field = float(case.get("field_area_mm2") or 0.237)
    try:
        c = nottingham_row(field).cutoffs
        rule = (
            f"Nottingham mitotic score from mitoses per 10 HPF of {field:g} mm2: 1 for {c['score_1']}, 2 for "
            f"{c['score_2']}, 3 for {c['score_3']} ({NOTTINGHAM_TABLE_SOURCE}). A case score needs at least 10 HPF of "
            "tissue."
        )
    except ValueError:
        rule = f"Nottingham mitotic score ({NOTTINGHAM_TABLE_SOURCE}); no row for fields of {field:g} mm2."
    status = case.get("score_status")
    score = case.get("score")
    score_txt = {"given": f"{score}", "extrapolated": f"{score} (EXTRAPOLATED)"}.get(status, "withheld")
    reason = f"<div class='muted'>{_e(case.get('reason'))}</div>" if case.get("reason") else ""
    src = "reviewed points where reviewed" if case.get("source") == "reviewed" else "the model's detections"
    head = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>mitodet case {_e(case['case'])}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>Case {_e(case['case'])}</h1>"
        f"<p class='muted'>mitodet {__version__}: a research tool, not a diagnostic device; read-out of {_e(src)}.</p>"
        "<table>"
        f"<tr><th>Mitotic score</th><td><span class='big'>{_e(score_txt)}</span>{reason}</td></tr>"
        f"<tr><th>Mitoses</th><td>{_e(case.get('count'))} in {_f(case.get('tissue_area_mm2'), 3)} mm² of tissue "
        f"({_f(case.get('hpf_equivalents'))} HPF)</td></tr>"
        f"<tr><th>Per 10 HPF</th><td>{_f(case.get('count_per_10hpf'))}</td></tr>"
        + (
            f"<tr><th>Called atypical</th><td>{_e(case['atypical_count'])} of {_e(case.get('count'))}</td></tr>"
            if case.get("atypical_count") is not None
            else ""
        )
        + f"<tr><th>Images</th><td>{len(case.get('names', []))} ({_e(case.get('n_reviewed', 0))} reviewed)</td></tr>"
        "</table>"
        f"<p class='muted'>{_e(rule)}</p>"
    )
    body = [_image_section(v, n, max_gallery) for n in case.get("names", [])]
    return head + "\n".join(body) + "</body></html>\n"


def write_reports(out_dir: str | Path, dest: str | Path | None = None, max_gallery: int = 60) -> list[Path]:
    """``dest/<case>.html`` for every case of a detect output folder (``dest``: ``OUT/report``)."""
    from mitodet.checks import atomic_write_text
    from mitodet.report.case import safe_name
    from mitodet.viewer.state import Viewer

    v = Viewer(out_dir)
    cases = v.cases(reviewed=True)
    if not cases:
        raise ValueError(
            f"{out_dir}: no case files (*.case.json); rerun `mitodet detect` with this --out to write them"
        )
    dst = Path(dest) if dest is not None else v.catalog.out_dir / "report"
    dst.mkdir(parents=True, exist_ok=True)
    return [atomic_write_text(dst / f"{safe_name(c['case'])}.html", case_html(v, c, max_gallery)) for c in cases]
