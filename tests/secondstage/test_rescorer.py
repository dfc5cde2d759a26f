"""The second stage: patches, model files, the Detector integration and its training command."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mitodet.models.rescorer import (
    Rescorer,
    RescorerConfig,
    array_reader,
    combine_scores,
    has_rescorer,
    load_rescorer,
    read_patches,
    save_rescorer,
)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def test_read_patches_centres_and_pads_black():
    img = np.zeros((20, 30, 3), np.uint8)
    img[..., 0] = np.arange(30)[None, :]  # red = column
    img[..., 1] = np.arange(20)[:, None]  # green = row
    (p,) = read_patches(array_reader(img), img.shape[:2], np.array([[10.0, 5.0]]), 4, 4)
    assert p[:, :, 0].tolist() == [[8, 9, 10, 11]] * 4  # columns 8..11 around x = 10
    assert p[:, 0, 1].tolist() == [3, 4, 5, 6]
    (edge,) = read_patches(array_reader(img), img.shape[:2], np.array([[0.0, 0.0]]), 4, 4)
    assert (edge[:2] == 0).all() and (edge[:, :2] == 0).all() and edge[2, 2, 0] == 0 and edge[3, 3, 1] == 1
    big = read_patches(array_reader(img), img.shape[:2], np.array([[15.0, 10.0]]), 8, 4)
    assert big.shape == (1, 4, 4, 3)  # resized from 8 image pixels to 4


def test_config_checks_and_combine():
    with pytest.raises(ValueError, match="combine must be one of"):
        RescorerConfig(combine="max")
    with pytest.raises(ValueError, match="unknown rescorer settings"):
        RescorerConfig.from_dict({"patchpx": 64})
    assert combine_scores(np.array([0.25]), np.array([1.0]), "geometric")[0] == pytest.approx(0.5)
    assert combine_scores(np.array([0.25]), np.array([0.7]), "second")[0] == pytest.approx(0.7)
    assert combine_scores(np.array([0.8]), np.array([0.5]), "product")[0] == pytest.approx(0.4)
    assert combine_scores(np.array([0.8, 0.3]), np.array([0.5, 0.9]), "min").tolist() == [0.5, 0.3]
    # the veto rules never raise a candidate above its first-stage score; geometric can
    f, s = np.array([0.87]), np.array([1.0])
    assert (
        combine_scores(f, s, "geometric")[0]
        > f[0]
        >= max(combine_scores(f, s, "product")[0], combine_scores(f, s, "min")[0])
    )


def test_files_round_trip_and_damaged_file(tmp_path):
    torch.manual_seed(1)
    m = Rescorer(RescorerConfig(patch_px=32, threshold=0.7))
    save_rescorer(m, tmp_path)
    assert has_rescorer(tmp_path) and (tmp_path / "rescorer" / "model.safetensors").is_file()
    back = load_rescorer(tmp_path)
    assert back.config == m.config
    x = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(back.probabilities(x), m.eval().probabilities(x), atol=1e-6)
    (tmp_path / "rescorer" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot be read as safetensors.*--no-second-stage"):
        load_rescorer(tmp_path)
    (tmp_path / "rescorer" / "config.json").write_text("{")
    with pytest.raises(ValueError, match="not a mitodet rescorer config"):
        load_rescorer(tmp_path)


def test_load_runs_the_stored_second_stage_unless_told_not_to(tiny_model_dir, tmp_path):
    from mitodet.inference.predictor import Detector

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    save_rescorer(Rescorer(RescorerConfig(threshold=0.3, min_candidate_score=0.0)), folder)
    det = Detector.load(folder)
    assert det.rescorer is not None and det.threshold == 0.3
    assert Detector.load(folder, second_stage=False).rescorer is None
    img = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    found = det.detect_array(img, 0.5, threshold=0.0)
    assert found.first_scores is not None and len(found.first_scores) == len(found)


def test_train_rescorer_end_to_end(tiny_model_dir, amibr_spec, tmp_path, capsys):
    from mitodet.cli import main

    cfg = tmp_path / "cfg.json"
    cfg.write_text(
        json.dumps(
            {
                "epochs": 1,
                "batch_size": 4,
                "mine_score": 0.0,
                "positive_sources": [],
                "rescorer": {"patch_px": 32, "min_candidate_score": 0.0},
            }
        )
    )
    out = tmp_path / "run"
    args = [
        "train-rescorer",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(amibr_spec),
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"]["positives"] > 0 and 0 <= summary["threshold"] <= 1
    assert has_rescorer(out / "model") and (out / "model" / "model.safetensors").is_file()
    stored = json.loads((out / "model" / "rescorer" / "config.json").read_text())
    assert (
        stored["rescorer"]["threshold"] == summary["threshold"]
        and "whole-field F1" in stored["extra"]["threshold_rule"]
    )
    assert "threshold" in capsys.readouterr().out
    # a rerun reuses the mined candidates
    mtime = (out / "candidates.npz").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "candidates.npz").stat().st_mtime_ns == mtime
    capsys.readouterr()
    # the pipeline then validates with the second stage on
    assert (
        main(
            [
                "validate",
                "--model",
                str(out / "model"),
                "--data",
                str(amibr_spec),
                "--split",
                "all",
                "--no-progress",
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["second_stage"] is True and res["threshold"] == summary["threshold"]
    assert [r["lab"] for r in res["rows"]] == ["midog21-aperio-cs2", "midog21-hamamatsu-xr", "tupac16", "all"]
    assert res["rows"][-1]["mitoses"] == 12


def test_cli_errors_name_the_fix(tmp_path, capsys):
    from mitodet.cli import main

    assert main(["validate", "--density", "0"]) == 2
    assert "--density must be > 0" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["train-rescorer", "--out", str(tmp_path / "o"), "--config", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["train-rescorer", "--out", str(tmp_path / "o"), "--config", str(tmp_path / "none.json")]) == 2
    assert "not found" in capsys.readouterr().err
    bad.write_text(json.dumps({"epochz": 1}))
    assert main(["train-rescorer", "--out", str(tmp_path / "o"), "--config", str(bad)]) == 2
    assert "unknown rescorer training settings ['epochz']" in capsys.readouterr().err


def test_validate_picks_a_snapshot_and_writes_its_threshold(tiny_model_dir, amibr_spec, tmp_path, capsys):
    from mitodet.cli import main
    from mitodet.models.io import read_model_config

    run = tmp_path / "run"
    for it in ("it000100", "it000200"):
        shutil.copytree(tiny_model_dir, run / "snapshots" / it)
    (run / "config.json").write_text(json.dumps({"train": {}, "data": str(amibr_spec)}))
    assert main(["validate", "--snapshots", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "it000100: best whole-field F1@10" in out and "chosen: it000200" in out  # same weights: the later wins
    cfg, extra = read_model_config(run / "model-wholefield")
    assert "whole-field F1" in extra["threshold_rule"] and (run / "model-wholefield" / "train_config.json").is_file()
    # --write-threshold stores the pooled best threshold as the operating one
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    assert (
        main(
            [
                "validate",
                "--model",
                str(folder),
                "--data",
                str(amibr_spec),
                "--split",
                "all",
                "--json",
                "--no-progress",
                "--write-threshold",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert read_model_config(folder)[0].score_threshold == pytest.approx(res["rows"][-1]["best_threshold"], abs=1e-4)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["validate", "--snapshots", str(empty)]) == 2
    assert "holds no model" in capsys.readouterr().err


def test_dark_blobs_are_ranked_by_haematoxylin_density():
    from mitodet.engine.rescorer_train import dark_blobs

    img = np.full((120, 120, 3), 225, np.uint8)
    img[:, :20] = 0  # black padding is not tissue
    yy, xx = np.mgrid[:120, :120]
    img[(xx - 50) ** 2 + (yy - 50) ** 2 <= 36] = (120, 90, 170)  # a pale nucleus
    img[(xx - 90) ** 2 + (yy - 80) ** 2 <= 36] = (40, 20, 90)  # a dark, compact one
    found = dark_blobs(img, 0.25, 5, min_area_um2=1.0)
    assert len(found) == 2
    np.testing.assert_allclose(found[0], [90, 80], atol=0.5)
    np.testing.assert_allclose(found[1], [50, 50], atol=0.5)
    assert len(dark_blobs(img, 0.25, 0)) == 0 and len(dark_blobs(np.zeros_like(img), 0.25, 3)) == 0


def test_batch_applies_the_optional_stain_augmentations():
    from mitodet.engine.rescorer_train import RescorerTrainConfig, Samples, _batch

    red = np.zeros((96, 96, 3), np.uint8)
    red[...] = (200, 60, 90)
    blue = np.zeros((96, 96, 3), np.uint8)
    blue[...] = (60, 60, 200)
    s = Samples([red, blue], np.array([0, 1]), np.array([[48.0, 48.0], [48.0, 48.0]]), np.array([1, 0]), 0.25)
    plain = {"hed_sigma": 0.0, "hed_bias": 0.0, "brightness": 0.0, "contrast": 0.0, "jitter_um": 0.0}
    cfg = RescorerTrainConfig.from_dict(plain)
    x = _batch(s, np.array([0] * 8), cfg, np.random.default_rng(0))
    assert torch.allclose(x, x[:1].expand_as(x), atol=2 / 255)  # no augmentation: the same red patch
    mixed = RescorerTrainConfig.from_dict({**plain, "fourier_mix": 1.0})
    x = _batch(s, np.array([0] * 16), mixed, np.random.default_rng(0))
    # half of the partners are the blue image: some patches take its colour
    blue_mean = x[:, 2].mean((1, 2))
    assert (blue_mean > 90 / 255 + 0.05).any() and (blue_mean < 90 / 255 + 0.01).any()
    hsv = RescorerTrainConfig.from_dict({**plain, "hsv_hue": 0.2, "stain_matrix_sigma": 0.1})
    x = _batch(s, np.array([0] * 8), hsv, np.random.default_rng(0))
    assert x.std(0).max() > 0.02  # colours differ between draws
