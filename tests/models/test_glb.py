"""The GLB neck: shapes per FPN level, and the calibration add really happens."""

import pytest
import torch

from mitodet.models.encoder import LevelSpec, build_encoder
from mitodet.models.glb import GlobalBank, PyramidNeck


@pytest.mark.parametrize("encoder", ["resnet18", "mobilenet_v2", "mobilenet_v3_small"])
@pytest.mark.parametrize("size", [(96, 96), (100, 132)])
def test_glb_outputs_match_fpn_levels(encoder, size):
    torch.manual_seed(0)
    enc = build_encoder(encoder).eval()
    x = torch.rand(1, 3, *size)
    feats = enc(x)
    for lv in enc.levels:  # the encoder's declared strides are what it produces
        assert feats[lv.name].shape[1] == lv.channels
        assert feats[lv.name].shape[-1] == -(-size[1] // lv.stride)
    plain = PyramidNeck(enc.levels, 32)
    glb = PyramidNeck(enc.levels, 32, glb_k=16, glb_m=24)
    glb.fpn.load_state_dict(plain.fpn.state_dict())
    p, c = plain(feats), glb(feats)
    assert list(p) == list(c) == ["0", "1", "2", "3", "pool"]
    for k in p:
        assert c[k].shape == p[k].shape
    # CAL_i = FPN_i + GAIN_i (eq. 3), checked from outside: every level is moved off the plain
    # FPN by the gains, and with the gain branches silenced the neck is the plain FPN exactly
    for k in p:
        assert (c[k] - p[k]).abs().amax() > 1e-4, k
    with torch.no_grad():
        for prm in glb.glb.gains.parameters():
            prm.zero_()
    silenced = glb(feats)
    for k in p:
        assert torch.equal(silenced[k], p[k]), k


def test_bypassing_the_calibration_is_detected(monkeypatch):
    torch.manual_seed(0)
    enc = build_encoder("resnet18").eval()
    feats = enc(torch.rand(1, 3, 64, 64))
    neck = PyramidNeck(enc.levels, 32, glb_k=16, glb_m=16)
    with_glb = neck(feats)
    monkeypatch.setattr(GlobalBank, "forward", lambda self, f, cal: list(cal))  # the add skipped
    bypassed = neck(feats)
    assert any(not torch.allclose(with_glb[k], bypassed[k]) for k in with_glb)


def test_vault_is_at_finest_stride_with_m_channels():
    levels = (LevelSpec("c2", 8, 4), LevelSpec("c3", 8, 8), LevelSpec("c4", 8, 16), LevelSpec("c5", 8, 32))
    bank = GlobalBank(levels, [4, 8, 16, 32, 64], out_channels=12, k=5, m=7)
    feats = [torch.rand(1, 8, 16 // 2**i, 16 // 2**i) for i in range(4)]
    vl = bank.vault_layer(feats)
    assert vl.shape == (1, 7, 16, 16)
    # stride 4 -> no downsampling (one conv); stride 64 -> four stride-2 convs.
    assert sum(isinstance(m, torch.nn.Conv2d) for m in bank.gains[0]) == 1
    assert sum(isinstance(m, torch.nn.Conv2d) for m in bank.gains[4]) == 4


def test_neck_checks_encoder_levels_at_construction():
    bad = (LevelSpec("c2", 8, 4), LevelSpec("c3", 8, 4), LevelSpec("c4", 8, 16), LevelSpec("c5", 8, 32))
    with pytest.raises(ValueError, match="double"):
        PyramidNeck(bad, 16)
    with pytest.raises(ValueError, match="k > 0"):
        GlobalBank((LevelSpec("c2", 8, 4),), [4], 8, k=0, m=4)


def test_encoder_unknown_name():
    with pytest.raises(ValueError, match="vgg"):
        build_encoder("vgg")
