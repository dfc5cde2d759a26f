"""The atypical classifier: its files, its training protocol's split and metrics, and its path
through ``mitodet detect`` (CSV, GeoJSON, MIDOG JSON, summary, case, ``--no-atypical``).

The pipeline tests use a random-weights classifier with threshold 0 (every detection is then
called atypical) or 1.0 (none is): the plumbing is real, the probabilities are not."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch


def _model_with_classifier(src, dst, threshold: float):
    from mitodet.models.atypical import AtypicalClassifier, AtypicalConfig, save_atypical

    shutil.copytree(src, dst)
    torch.manual_seed(0)
    save_atypical(AtypicalClassifier(AtypicalConfig(threshold=threshold)), dst, extra={"note": "random, for tests"})
    return dst


def test_files_round_trip_and_bad_files_name_the_fix(tmp_path):
    from mitodet.models.atypical import AtypicalClassifier, AtypicalConfig, has_atypical, load_atypical, save_atypical

    torch.manual_seed(0)
    m = AtypicalClassifier(AtypicalConfig(input_px=96))
    save_atypical(m, tmp_path)
    assert has_atypical(tmp_path) and not list((tmp_path / "atypical").glob("*.tmp*"))
    back = load_atypical(tmp_path)
    patches = np.random.default_rng(0).integers(0, 255, (3, 128, 128, 3), dtype=np.uint8)
    np.testing.assert_allclose(back.probabilities(patches), m.probabilities(patches))
    assert back.config == m.config
    (tmp_path / "atypical" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="safetensors.*--no-atypical"):
        load_atypical(tmp_path)
    with pytest.raises(ValueError, match="input_px"):
        AtypicalConfig(input_px=200)
    with pytest.raises(ValueError, match="unknown atypical settings"):
        AtypicalConfig.from_dict({"threshold": 0.5, "colour": "red"})


def test_test_time_augmentation_averages_the_dihedral_views():
    from mitodet.models.atypical import AtypicalClassifier, AtypicalConfig, tta_views

    patches = np.random.default_rng(2).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    assert len(tta_views(patches, "none")) == 1 and len(tta_views(patches, "flip")) == 2
    d4 = tta_views(patches, "d4")
    assert len({v.tobytes() for v in d4}) == 8  # the 8 symmetries of the square are all different here
    np.testing.assert_array_equal(d4[1][0], np.rot90(patches[0]))
    np.testing.assert_array_equal(d4[4][0], patches[0][:, ::-1])
    # a stand-in network whose answer depends on orientation: the top-left pixel's red value
    from mitodet.models.rescorer import PatchClassifier

    def corner(self, views, batch_size=128):
        return views[:, 0, 0, 0] / 255.0

    crops = np.random.default_rng(3).integers(0, 255, (3, 128, 128, 3), dtype=np.uint8)
    c = crops[:, 8:120, 8:120, 0].astype(float)  # the centre 112 px the network sees
    corners = [c[:, 0, 0], c[:, 0, -1], c[:, -1, -1], c[:, -1, 0]]  # what each rotation or mirror puts top-left
    m = AtypicalClassifier(AtypicalConfig(input_px=112))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PatchClassifier, "probabilities", corner)
        np.testing.assert_allclose(m.probabilities(crops), c[:, 0, 0] / 255.0)
        m.config = m.config.replace(tta="flip")
        np.testing.assert_allclose(m.probabilities(crops), (c[:, 0, 0] + c[:, 0, -1]) / 2 / 255.0)
        m.config = m.config.replace(tta="d4")  # each corner twice (a rotation and a mirror image)
        np.testing.assert_allclose(m.probabilities(crops), np.mean(corners, axis=0) / 255.0)
    with pytest.raises(ValueError, match="tta must be one of"):
        AtypicalConfig(tta="rotate")


def test_adabn_re_estimates_the_statistics_on_the_centre_the_network_sees():
    """AdaBN (the benchmark's transductive row) changes BatchNorm statistics only, from the
    centre ``input_px`` of the patches: a frame around the centre makes no difference."""
    from mitodet.models.atypical import AtypicalClassifier, AtypicalConfig, adapt_atypical

    torch.manual_seed(0)
    m = AtypicalClassifier(AtypicalConfig(input_px=32, patch_px=48)).eval()
    rng = np.random.default_rng(4)
    patches = rng.integers(0, 120, (6, 48, 48, 3), dtype=np.uint8)  # a darker domain
    framed = patches.copy()
    framed[:, :8] = 255  # outside the centre 32 px
    a, b = adapt_atypical(m, patches), adapt_atypical(m, framed)
    bn0 = next(x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d))
    bna = next(x for x in a.modules() if isinstance(x, torch.nn.BatchNorm2d))
    assert not torch.allclose(bn0.running_mean, bna.running_mean)  # the statistics moved
    for (k, w0), (_, wa) in zip(m.state_dict().items(), a.state_dict().items()):
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(w0, wa), k  # the weights did not
    np.testing.assert_allclose(a.probabilities(patches), b.probabilities(patches), rtol=1e-6)
    assert not np.allclose(a.probabilities(patches), m.probabilities(patches))


def test_an_ensemble_averages_its_members_and_round_trips(tmp_path):
    from mitodet.models.atypical import (
        AtypicalClassifier,
        AtypicalConfig,
        AtypicalEnsemble,
        load_atypical,
        save_atypical,
    )

    torch.manual_seed(0)
    ens = AtypicalEnsemble(AtypicalConfig(members=3))
    patches = np.random.default_rng(1).integers(0, 255, (4, 128, 128, 3), dtype=np.uint8)
    each = [m.probabilities(patches) for m in ens.members]
    np.testing.assert_allclose(ens.probabilities(patches), np.mean(each, axis=0))
    save_atypical(ens, tmp_path)
    back = load_atypical(tmp_path)
    assert isinstance(back, AtypicalEnsemble) and len(back.members) == 3
    np.testing.assert_allclose(back.probabilities(patches), ens.probabilities(patches))
    assert isinstance(AtypicalClassifier(AtypicalConfig()), AtypicalClassifier)


def test_metrics_and_split_follow_the_protocol():
    from mitodet.engine.atypical_train import AtypicalTrainConfig, CropSet, metrics, protocol_split

    y = np.array([1, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.4, 0.6, 0.1, 0.2, 0.3])
    m = metrics(y.astype(bool), p, np.array([True, True, False, True, True, True]), 0.5)
    # at 0.5: atypical recall 1/2, normal recall 3/4 -> balanced 0.625; AUROC 7/8
    assert m["balanced_accuracy"] == pytest.approx(0.625) and m["auroc"] == pytest.approx(7 / 8)
    assert m["n_unanimous"] == 5 and m["balanced_accuracy_unanimous"] == pytest.approx(0.75)
    rng = np.random.default_rng(0)
    n = 400
    groups = np.array([f"s{i % 40}" for i in range(n)])
    crops = CropSet("x", np.zeros((n, 1, 1, 3), np.uint8), rng.random(n) < 0.25, groups, None)
    test, folds = protocol_split(crops, AtypicalTrainConfig())
    assert len(folds) == 5
    for tr, va in folds:
        # slides never straddle train / validation / test
        assert not set(groups[tr]) & set(groups[va]) and not (set(groups[tr]) | set(groups[va])) & set(groups[test])
        assert len(np.intersect1d(tr, va)) == 0
    assert sorted(np.concatenate([test, folds[0][0], folds[0][1]]).tolist()) == list(range(n))


@pytest.mark.parametrize("threshold, called", [(0.0, True), (1.0, False)])
def test_detect_writes_the_class_everywhere(tiny_model_dir, tmp_path, threshold, called):
    from PIL import Image

    from mitodet.cli import main
    from mitodet.evaluation.io import load_points
    from mitodet.synthetic import synthetic_scene

    model = _model_with_classifier(tiny_model_dir, tmp_path / "model", threshold)
    img, pts, lab = synthetic_scene((256, 256), mpp=0.5, n_mitoses=3, n_lookalikes=1, seed=1)
    src = tmp_path / "case" / "f.png"
    src.parent.mkdir()
    Image.fromarray(img).save(src, dpi=(50800, 50800))
    out = tmp_path / "out"
    argv = ["detect", str(src), "--model", str(model), "--out", str(out), "--threshold", "0", "--no-progress"]
    assert main(argv) == 0
    rows = list(csv.DictReader(open(out / "f.csv")))
    assert rows and all(0.0 <= float(r["atypical_probability"]) <= 1.0 for r in rows)
    s = json.loads((out / "f.summary.json").read_text())
    assert s["atypical"]["count"] == (len(rows) if called else 0) and s["atypical"]["threshold"] == threshold
    names = [f["properties"]["classification"]["name"] for f in json.loads((out / "f.geojson").read_text())["features"]]
    points = [n for n in names if n != "Hotspot"]
    assert set(points) == {"Atypical mitotic figure" if called else "Mitotic figure"}
    assert load_points(out / "f.geojson")["f"].labels.tolist() == [1] * len(rows)  # atypical ones are mitoses
    assert len(load_points(out / "f.csv")["f"].points) == len(rows)  # the new column does not stop the CSV reader
    midog = json.loads((out / "f.midog.json").read_text())["points"]
    assert [p["atypical_probability"] for p in midog] == pytest.approx([float(r["atypical_probability"]) for r in rows])
    case = json.loads((out / "case.case.json").read_text())
    assert case["atypical_count"] == s["atypical"]["count"]
    assert "Called atypical" in (out / "f.summary.md").read_text()
    # with ground truth the overlay shows TP / FP / FN, and still the atypical ones (and the run completes)
    gt = tmp_path / "gt.csv"
    gt.write_text("image,x,y\n" + "".join(f"f,{x},{y}\n" for x, y in pts[lab == 1]))
    assert main([*argv, "--gt", str(gt)]) == 0
    assert json.loads((out / "f.summary.json").read_text())["evaluation"]["n_gt"] == 3
    assert (out / "f.overlay.jpg").stat().st_size > 0
    # --no-atypical: none of it (and the run key changes, so the file is redone)
    assert main([*argv, "--no-atypical"]) == 0
    assert "atypical_probability" not in open(out / "f.csv").readline()
    assert "atypical" not in json.loads((out / "f.summary.json").read_text())
