"""``mitodet report``: one self-contained HTML page per case (no script, no external link,
pictures embedded), with detect's numbers, or the reviewed ones where a review was saved."""

from __future__ import annotations

import json
import re

NAME = "CMU-1-Small-Region"


def test_report_is_self_contained_and_says_the_numbers(fresh_out, capsys):
    from mitodet.cli import main

    assert main(["report", str(fresh_out)]) == 0
    (page,) = sorted((fresh_out / "report").glob("*.html"))
    assert page.name == "case-A.html" and str(page) in capsys.readouterr().out
    html = page.read_text()
    case = json.loads((fresh_out / "case-A.case.json").read_text())
    summary = json.loads((fresh_out / f"{NAME}.summary.json").read_text())
    assert "<script" not in html.lower()
    assert not re.findall(r"""(?:src|href)\s*=\s*['"](?!data:)""", html)  # every picture inline, no link out
    assert "http://" not in html and "https://" not in html
    assert f"{case['count']} in {case['tissue_area_mm2']:.3f} mm²" in html
    assert case["score_status"] == "withheld" and "withheld" in html  # 2.7 HPF: below the 10 a score needs
    # the hotspot picture and one gallery crop per detection
    assert html.count("data:image/jpeg;base64,") == 1 + summary["count"]
    assert f"threshold {summary['score_threshold']:.3f}" in html


def test_report_uses_the_review_where_there_is_one(client, fresh_out):
    from mitodet.cli import main

    cands = client.get(f"/api/images/{NAME}/candidates").get_json()["points"]
    pts = [
        {"x": x, "y": y, "label": "mitosis", "origin": "model", "score": s, "reviewed": True}
        for x, y, s, _ in cands[:2]
    ]
    assert client.post(f"/api/images/{NAME}/review", json={"threshold": 0.99, "points": pts}).status_code == 200
    assert main(["report", str(fresh_out), "--max-gallery", "1"]) == 0
    html = (fresh_out / "report" / "case-A.html").read_text()
    area = json.loads((fresh_out / f"{NAME}.summary.json").read_text())["tissue_area_mm2"]
    assert "reviewed points" in html and f"2 in {area:.3f} mm²" in html
    assert html.count("data:image/jpeg;base64,") == 1 + 1 and "1 more not shown" in html


def test_report_refuses_a_folder_without_cases(tmp_path, capsys):
    from mitodet.cli import main

    assert main(["report", str(tmp_path)]) == 2
    assert "no finished detection" in capsys.readouterr().err
