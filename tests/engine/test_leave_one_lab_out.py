"""Leave-one-lab-out of the detector: ``exclude_labs`` drops a lab from its training and
validation without moving the other labs' slides between train and validation, and the
held-out lab chooses neither the checkpoint nor the threshold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mitodet.config import ModelConfig, train_config_from_dict
from mitodet.data.spec import DataSpec
from mitodet.engine.train import TrainConfig, build_datasets


def _spec(tmp_path, labs=("lab-a", "lab-b"), slides_per_lab=6):
    rows = ["image,x,y,slide,domain"]
    img = np.full((160, 160, 3), 200, np.uint8)
    for lab in labs:
        for s in range(slides_per_lab):
            name = f"{lab}-{s}.png"
            Image.fromarray(img).save(tmp_path / name)
            rows.append(f"{name},80,80,{lab}-slide{s},{lab}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return DataSpec(
        sources=[{"reader": "points_csv", "path": "labels.csv", "mpp": 0.25}],
        val_fraction=0.34,
        split_seed=0,
        base=tmp_path,
    )


def _slides(info):
    return set(info["val_slide_ids"])


def test_exclude_labs_drops_one_lab_and_keeps_the_others_split(tmp_path):
    spec = _spec(tmp_path)
    base = TrainConfig(iterations=1, batch_size=1, val_crops=1)
    _, _, every = build_datasets(base, ModelConfig(), spec, progress=False)
    cfg = train_config_from_dict({"iterations": 1, "batch_size": 1, "val_crops": 1, "exclude_labs": ["lab-b"]})
    assert cfg.exclude_labs == ("lab-b",)
    _, _, info = build_datasets(cfg, ModelConfig(), spec, progress=False)
    assert every["train_records"] + every["val_records"] == 12
    assert info["train_records"] + info["val_records"] == 6  # lab-b's 6 images are gone
    assert all(s.startswith("lab-a") for s in _slides(info))
    # lab-a's validation slides are those of the run that used both labs
    assert _slides(info) == {s for s in _slides(every) if s.startswith("lab-a")}
    assert info["exclude_labs"] == ["lab-b"]


def test_an_unknown_lab_is_refused_with_the_labs_there_are(tmp_path):
    spec = _spec(tmp_path)
    cfg = TrainConfig(iterations=1, batch_size=1, exclude_labs=("lab-c",))
    with pytest.raises(ValueError, match=r"lab-c.*'lab-a', 'lab-b'"):
        build_datasets(cfg, ModelConfig(), spec, progress=False)


def test_validation_records_never_give_an_excluded_lab(monkeypatch):
    import mitodet.data.spec as spec_mod
    from mitodet.data.records import ImageRecord
    from mitodet.evaluation import wholefield as W

    def crop(slide):
        return ImageRecord(Path(f"{slide}.png"), np.zeros((0, 2)), np.zeros(0, np.int64), 0.25, slide, source="amibr")

    records = [crop(f"TUPAC16:{i:02d}") for i in range(4)] + [crop(f"MIDOG21:{i:03d}") for i in range(1, 5)]
    monkeypatch.setattr(spec_mod, "read_sources", lambda sources, base: records)
    spec = DataSpec(sources=[], val_fraction=0.5, base=Path("."))
    every = W.validation_records(spec, "all")
    assert {W.lab_group(r) for r in every} == {"tupac16", "midog21-hamamatsu-xr"}
    kept = W.validation_records(spec, "all", exclude=("tupac16",))
    assert kept == [r for r in every if W.lab_group(r) != "tupac16"] and kept


def test_the_snapshot_pick_leaves_the_held_out_lab_out(tmp_path, monkeypatch, capsys):
    """``mitodet validate --snapshots RUN`` of a leave-one-lab-out run validates without its lab."""
    import mitodet.commands.validate as V
    from mitodet.cli import main

    run = tmp_path / "run"
    for it in (100, 200):
        (run / "snapshots" / f"it{it}").mkdir(parents=True)
        (run / "snapshots" / f"it{it}" / "config.json").write_text(json.dumps({"model": {}}))
    (run / "config.json").write_text(json.dumps({"train": {"exclude_labs": ["tupac16"]}, "data": "shared"}))
    seen = []

    def fake_validate(model, **kw):
        seen.append(kw["exclude_labs"])
        f1 = 0.5 if model.name == "it100" else 0.7
        return {"rows": [{"best_f1": f1, "best_threshold": 0.9, "recall": 0.8}]}

    monkeypatch.setattr(V, "validate", fake_validate)
    assert main(["validate", "--snapshots", str(run), "--no-progress"]) == 0
    assert seen == [("tupac16",), ("tupac16",)]
    doc = json.loads((run / "model-wholefield" / "config.json").read_text())
    assert doc["model"]["score_threshold"] == 0.9
    assert "without the held-out labs ['tupac16']" in doc["extra"]["threshold_rule"]
    assert "chosen: it200" in capsys.readouterr().out
