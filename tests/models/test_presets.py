"""Presets: every Table 1 row builds, trains a step and infers; parameter-count relations."""

import pytest
import torch

from mitodet.config import ConfigError, FocalConfig, GLBConfig, ModelConfig
from mitodet.models import build_detector, get_preset, list_presets
from mitodet.models.builder import count_parameters
from mitodet.models.presets import PAPER_PRESETS, register_preset

TABLE1 = {
    "fpn": (None, None),
    "fpn-fl-g0": (None, (0.5, 0.0)),
    "fpn-fl": (None, (0.5, 0.5)),
    "fpn-fl-g1": (None, (0.5, 1.0)),
    "fpn-fl-g2": (None, (0.5, 2.0)),
    "glb-fpn": ((256, 256), None),
    "glb-fpn-m512": ((256, 512), None),
    "rdlm-g0": ((256, 256), (0.5, 0.0)),
    "rdlm": ((256, 256), (0.5, 0.5)),
    "rdlm-g1": ((256, 256), (0.5, 1.0)),
    "rdlm-g2": ((256, 256), (0.5, 2.0)),
}


def _targets(size=128):
    return [
        {"boxes": torch.tensor([[40.0, 40.0, 66.0, 66.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]


def test_table1_settings_exact():
    assert set(PAPER_PRESETS) == set(TABLE1)
    for name, (glb, focal) in TABLE1.items():
        cfg = get_preset(name)
        assert cfg.encoder == "resnet50" and cfg.fpn_channels == 256
        assert (cfg.glb.k, cfg.glb.m) == glb if glb else cfg.glb is None
        assert (cfg.focal.alpha, cfg.focal.gamma) == focal if focal else cfg.focal is None


@pytest.fixture(scope="module")
def param_counts():
    return {n: count_parameters(build_detector(n)) for n in ("fpn", "fpn-fl", "glb-fpn", "glb-fpn-m512", "rdlm")}


def test_parameter_relations(param_counts):
    c = param_counts
    assert c["rdlm"] == c["glb-fpn"]  # the focal loss adds no parameters
    assert c["fpn-fl"] == c["fpn"]
    assert c["glb-fpn"] > c["fpn"]
    assert c["glb-fpn-m512"] > c["glb-fpn"]
    assert c["rdlm"] > c["fpn-fl"]  # what the paper's remark can mean at equal k, m


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_trains_and_infers(name):
    torch.manual_seed(0)
    model = build_detector(
        get_preset(name).replace(
            rpn_pre_nms_top_n_train=200,
            rpn_post_nms_top_n_train=100,
            rpn_pre_nms_top_n_test=100,
            rpn_post_nms_top_n_test=50,
            box_batch_size_per_image=32,
        )
    )
    model.train()
    images = [torch.rand(3, 96, 96), torch.rand(3, 96, 96)]
    losses = model(images, _targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and out[0]["boxes"].shape[1] == 4
    assert ((out[0]["scores"] >= 0) & (out[0]["scores"] <= 1)).all()


def test_no_mitosis_image_gives_finite_loss_and_zero_box_regression():
    torch.manual_seed(0)
    model = build_detector("rdlm-cpu").train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model([torch.rand(3, 96, 96)], [empty])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box_reg"].item() == 0.0
    assert losses["loss_rpn_box_reg"].item() == 0.0


def test_focal_heads_score_with_sigmoid():
    torch.manual_seed(0)
    focal = build_detector("rdlm-cpu")
    plain = build_detector("glb-fpn-cpu")
    logits = torch.tensor([[2.0, -1.0], [0.0, 3.0]])
    assert torch.allclose(focal.roi_heads.class_scores(logits), torch.sigmoid(logits))
    assert torch.allclose(plain.roi_heads.class_scores(logits), torch.softmax(logits, -1))
    # Bias starts at the prior for the mitosis sigmoid.
    b = focal.roi_heads.box_predictor.cls_score.bias
    assert torch.sigmoid(b[1]).item() == pytest.approx(0.01, rel=1e-4)


def test_rpn_focal_option():
    torch.manual_seed(0)
    cfg = get_preset("rdlm-cpu")
    model = build_detector(cfg.replace(focal=FocalConfig(0.5, 0.5, rpn=True))).train()
    assert model.rpn.focal_alpha == 0.5
    losses = model([torch.rand(3, 96, 96)], _targets()[:1])
    assert torch.isfinite(losses["loss_objectness"])


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda: get_preset("rdlm-xl"), "rdlm-xl"),
        (lambda: GLBConfig(k=-1, m=256), "-1"),
        (lambda: GLBConfig(k=256, m=-5), "-5"),
        (lambda: FocalConfig(alpha=0.5, gamma=-0.5), "-0.5"),
        (lambda: FocalConfig(alpha=1.2, gamma=0.5), "1.2"),
        (lambda: FocalConfig(alpha=-0.1, gamma=0.5), "-0.1"),
        (lambda: ModelConfig(mpp=0.0), "0.0"),
        (lambda: ModelConfig(mpp=-0.25), "-0.25"),
        (lambda: ModelConfig(encoder="vgg16"), "vgg16"),
    ],
)
def test_bad_config_values_are_named(make, needle):
    with pytest.raises(ConfigError, match=f".*{needle}.*"):
        make()


def test_registry_refuses_duplicates():
    with pytest.raises(ConfigError, match="already registered"):
        register_preset("rdlm", lambda: get_preset("rdlm"))


def test_weights_never_downloaded_by_default(monkeypatch):
    # every way torchvision / torch.hub could fetch weights is cut: building every preset
    # with its defaults must not reach for any of them
    import socket
    import urllib.request

    import torch.hub

    def no_network(*a, **k):
        raise AssertionError(f"a download was attempted: {a[:1]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    for name in list_presets():
        assert get_preset(name).weights_backbone is None
        build_detector(name)
