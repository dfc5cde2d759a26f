"""The one set of checks (mitodet.checks): the same answer from the CLI, the library and Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitodet.checks import (
    MPP_RANGE,
    as_points,
    atomic_save,
    atomic_write_text,
    check_mpp,
    check_threshold,
    positive_int,
    state_digest,
)


def test_threshold_and_mpp():
    assert check_threshold(None, default=0.4) == 0.4 and check_threshold("0.5") == 0.5
    for bad in (-0.1, 1.5, float("nan"), "x", True):
        with pytest.raises(ValueError, match=r"--threshold must lie in \[0, 1\]"):
            check_threshold(bad, "--threshold")
    assert check_mpp(0.25) == 0.25
    for bad in (MPP_RANGE[0] / 2, MPP_RANGE[1] * 2, 0, -1, float("inf"), "abc"):
        with pytest.raises(ValueError, match="mpp"):
            check_mpp(bad)


def test_library_and_cli_refuse_the_same_pixel_size(tiny_model_dir, tmp_path, capsys):
    from mitodet.cli import main
    from mitodet.inference.predictor import Detector

    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="outside the plausible range"):
        Detector.load(tiny_model_dir).detect_array(img, mpp=10.0)  # once any positive value was run
    (tmp_path / "a.png").write_bytes(b"")
    assert main(["detect", str(tmp_path / "a.png"), "--mpp", "10", "--model", str(tiny_model_dir)]) != 0
    assert "outside the plausible range" in capsys.readouterr().err


def test_positive_int_and_points():
    assert positive_int(3, "n") == 3 and positive_int(2.0, "n") == 2
    for bad in (0, -2, 1.5, True, "3"):
        with pytest.raises(ValueError, match="n must"):
            positive_int(bad, "n")  # "n must be a positive integer"
    assert as_points([], "p").shape == (0, 2)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        as_points(np.zeros((2, 4)), "p")  # a box array is not 4 points (once silently reshaped)
    with pytest.raises(ValueError, match="NaN"):
        as_points([[0, np.nan]], "p")


def test_atomic_writes_leave_old_or_new_never_half(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")

    def half_then_fail(tmp):
        with open(tmp, "w") as fh:
            fh.write("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_save(target, half_then_fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "b.txt", "x")


def test_state_digest_is_bitwise():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert state_digest(a) == state_digest(b)
    with torch.no_grad():
        b.bias[0] += 1e-7
    assert state_digest(a) != state_digest(b)
    assert state_digest(a, extra=b"x") != state_digest(a)


def test_device_refused_where_there_is_none(capsys, tiny_model_dir):
    import torch

    from mitodet.checks import check_device
    from mitodet.cli import main

    assert check_device(None) == "cpu" and check_device("CPU") == "cpu"
    with pytest.raises(ValueError, match="'cpu', 'cuda' or 'cuda:N'"):
        check_device("gpu")
    if torch.cuda.is_available():  # a machine with a GPU: the model runs there
        from mitodet.inference.predictor import Detector

        det = Detector.load(tiny_model_dir, device="cuda")
        out = det.detect_array(np.zeros((128, 128, 3), np.uint8), mpp=0.5)
        assert out.points.shape[1] == 2
        return
    with pytest.raises(ValueError, match="no CUDA GPU"):
        check_device("cuda")
    assert main(["detect", "x.png", "--device", "cuda", "--model", "no-such-model"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err  # refused before the model (or the input) was looked at
