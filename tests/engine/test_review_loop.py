"""The review loop as a recipe (docs/review.md): detect -> correct in QuPath (simulated edits
of the GeoJSON: a detection deleted, one reclassified "Not mitotic", a missed mitosis added)
-> evaluate against the corrected points -> the read-out recomputed from them (``mitodet
readout``) -> a data spec that reads them -> fine-tune the model from its own weights
(``init_from``)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from mitodet.cli import main


def test_detect_review_reimport_finetune(tmp_path, tiny_model_dir, capsys):
    from mitodet.synthetic import synthetic_scene

    img, _, _ = synthetic_scene((192, 192), n_mitoses=3, n_lookalikes=2, mpp=0.5, seed=3)
    (tmp_path / "case1").mkdir()
    Image.fromarray(np.asarray(img)).save(tmp_path / "case1" / "field.png")
    out = tmp_path / "out"
    assert (
        main(
            [
                "detect",
                str(tmp_path / "case1"),
                "--model",
                str(tiny_model_dir),
                "--mpp",
                "0.5",
                "--threshold",
                "0",
                "--out",
                str(out),
                "--no-progress",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    doc = json.loads((out / "field.geojson").read_text())
    dets = [f for f in doc["features"] if f["properties"]["objectType"] == "detection"][:3]
    assert len(dets) == 3
    # the pathologist's corrections in QuPath
    dets[1]["properties"]["classification"] = {"name": "Not mitotic"}
    added = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [150.0, 40.0]},
        "properties": {"objectType": "annotation", "classification": {"name": "Mitotic figure"}},
    }
    reviewed_dir = tmp_path / "reviewed"
    reviewed_dir.mkdir()
    reviewed = reviewed_dir / "field.geojson"
    reviewed.write_text(json.dumps({"type": "FeatureCollection", "features": [dets[0], dets[1], added]}))
    # evaluate the detections against the reviewed truth: 2 mitoses in it (1 confirmed, 1 added)
    capsys.readouterr()
    assert main(["evaluate", "--gt", str(reviewed_dir), "--pred", str(out), "--mpp", "0.5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["tp"] + res["fn"] == 2 and res["tp"] >= 1
    # the read-out a pathologist signs, recomputed from the corrected points: 2 mitoses
    capsys.readouterr()
    ro = tmp_path / "readout"
    assert (
        main(
            [
                "readout",
                str(tmp_path / "case1" / "field.png"),
                "--points",
                str(reviewed_dir),
                "--mpp",
                "0.5",
                "--out",
                str(ro),
            ]
        )
        == 0
    )
    s = json.loads((ro / "field.summary.json").read_text())
    assert s["count"] == 2 and s["hotspot"]["count"] == 2
    case = json.loads((ro / "case1.case.json").read_text())
    assert case["count"] == 2 and case["score_status"] == "withheld"  # one small field: under 10 HPF
    assert "case case1: 1 image(s), 2 mitoses" in capsys.readouterr().out
    # the corrected points as training data, and a fine-tune from the model's own weights
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "sources": [
                    {
                        "reader": "qupath_geojson",
                        "path": str(reviewed),
                        "image": str(tmp_path / "case1" / "field.png"),
                        "mpp": 0.5,
                    }
                ],
                "val_fraction": 0.0,
            }
        )
    )
    cfg = tmp_path / "finetune.json"
    cfg.write_text(
        json.dumps(
            {
                "train": {
                    "init_from": str(tiny_model_dir),
                    "iterations": 2,
                    "batch_size": 1,
                    "lr": 0.001,
                    "warmup_iters": 0,
                    "checkpoint_every": 1000,
                    "val_every": 1000,
                    "log_every": 1,
                    "threads": 1,
                    "sampler": {"crop_px": 64, "piece_px": [16, 32]},
                },
                "data": str(spec),
            }
        )
    )
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "ft"), "--no-progress"]) == 0
    tuned = json.loads((tmp_path / "ft" / "model" / "config.json").read_text())["model"]
    base = json.loads((tiny_model_dir / "config.json").read_text())["model"]
    assert tuned["preset"] == base["preset"]  # the folder's model, not the default preset
    from safetensors.torch import load_file

    w_base, w_tuned = (
        load_file(str(tiny_model_dir / "model.safetensors")),
        load_file(str(tmp_path / "ft" / "model" / "model.safetensors")),
    )
    moved = {
        k: float((w_tuned[k].float() - w_base[k].float()).abs().max())
        for k in w_base
        if w_base[k].is_floating_point() and "running" not in k
    }
    worst = sorted(moved.items(), key=lambda kv: -kv[1])[:3]
    assert worst[0][1] < 0.05, worst  # started from the folder's weights, two small steps away
