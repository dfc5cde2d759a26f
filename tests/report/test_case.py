"""Cases: counts and tissue summed over a case's images; a score only from >= 10 HPF of tissue."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mitodet.report.case import CaseReadout, case_name, case_readout, write_cases
from mitodet.report.readout import DIGITAL_HPF_AREA_MM2


def _summary(count, area, tp=None, fp=None, fn=None, image="x.png"):
    s = {"count": count, "tissue_area_mm2": area, "image": image}
    if tp is not None:
        s["evaluation"] = {"tp": tp, "fp": fp, "fn": fn}
    return s


def test_ten_half_fields_make_one_score_from_the_total():
    # ten frames of half an HPF each: 5 HPF in all -> withheld; twenty -> 10 HPF, a score
    half = DIGITAL_HPF_AREA_MM2 / 2
    few = case_readout("c", [_summary(1, half)] * 10)
    assert few.score is None and few.score_status == "withheld" and "5.0 HPF" in few.reason
    assert few.count == 10 and few.hpf_equivalents == pytest.approx(5.0)
    assert few.count_per_10hpf == pytest.approx(20.0)  # the density is still reported
    forced = case_readout("c", [_summary(1, half)] * 10, extrapolate=True)
    assert forced.score == 3 and forced.extrapolated and "EXTRAPOLATED" in forced.line()
    enough = case_readout("c", [_summary(1, half)] * 20)
    # 20 mitoses over 10 HPF (the 0.55 mm row: <= 8 / 9-17 / >= 18) -> score 3, from the total
    assert enough.score_status == "given" and enough.count_per_10hpf == pytest.approx(20.0) and enough.score == 3
    one_false = case_readout("c", [_summary(1, DIGITAL_HPF_AREA_MM2 * 10)])
    assert one_false.score == 1  # one detection in 10 HPF is score 1, not the x18.6 of half a field


def test_pooled_evaluation_and_round_trip():
    c = case_readout("c", [_summary(3, 1.0, 2, 1, 0), _summary(1, 1.5, 1, 0, 2)])
    assert (c.evaluation["tp"], c.evaluation["fp"], c.evaluation["fn"]) == (3, 1, 2)
    assert c.evaluation["precision"] == pytest.approx(0.75) and c.evaluation["recall"] == pytest.approx(0.6)
    assert CaseReadout.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_case_rules():
    p = Path("/data/case17/field3.png")
    assert (case_name(p, "folder"), case_name(p, "file"), case_name(p, "all")) == ("case17", "field3", "all")
    with pytest.raises(ValueError, match="case rule"):
        case_name(p, "slide")


def test_write_cases_groups_by_folder_and_merges_the_cohort(tmp_path):
    class R:
        def __init__(self, path, summary, status="done"):
            self.path, self.summary, self.status = Path(path), summary, status

    hpf = DIGITAL_HPF_AREA_MM2
    batch = [
        R("/d/a/1.png", _summary(4, 6 * hpf)),
        R("/d/a/2.png", _summary(6, 6 * hpf)),
        R("/d/b/1.png", _summary(2, hpf)),
        R("/d/b/bad.png", None, "failed"),
    ]
    cases = {c.case: c for c in write_cases(batch, tmp_path)}
    assert cases["a"].count == 10 and cases["a"].score_status == "given"
    assert cases["b"].score_status == "withheld" and cases["b"].failed == ["/d/b/bad.png"]
    assert json.loads((tmp_path / "a.case.json").read_text())["count"] == 10
    assert "withheld" in (tmp_path / "b.case.md").read_text()
    write_cases([R("/d/c/1.png", _summary(1, hpf))], tmp_path)  # a later run adds its case
    with open(tmp_path / "cases.csv", newline="") as fh:
        rows = {r["case"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"a", "b", "c"} and rows["b"]["failed"] == "1" and rows["a"]["mitotic_score"] != ""


def test_cases_are_rebuilt_from_every_run_and_never_merged_by_name(tmp_path):
    class R:
        def __init__(self, path, summary, status="done"):
            self.path, self.summary, self.status = Path(path), summary, status

    hpf = DIGITAL_HPF_AREA_MM2
    a1, a2 = tmp_path / "pA" / "hpf" / "1.png", tmp_path / "pA" / "hpf" / "2.png"
    b1 = tmp_path / "pB" / "hpf" / "1.png"

    def done(path, count):  # what detect leaves in the output folder for a finished image
        s = {**_summary(count, 6 * hpf, image=str(path)), "image_path": str(path), "status": "complete"}
        (tmp_path / f"{path.parent.parent.name}-{path.stem}.summary.json").write_text(json.dumps(s))
        return R(path, s)

    write_cases([done(a1, 4)], tmp_path)
    cases = {c.case: c for c in write_cases([done(a2, 6), done(b1, 1)], tmp_path)}
    # patient A's folder holds both of its runs' images; patient B's "hpf" is another case
    assert sorted(cases) == ["hpf", "hpf-2"]
    counts = sorted(c.count for c in cases.values())
    assert counts == [1, 10] and sorted(len(c.images) for c in cases.values()) == [1, 2]


def test_a_field_area_outside_the_table_withholds_the_score():
    c = case_readout("c", [_summary(30, 5.0)], field_area_mm2=0.5)
    assert c.score is None and c.score_status == "withheld" and "Nottingham table" in c.reason
