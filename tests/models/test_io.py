"""Model files: safetensors + JSON round trip, no pickle, backbone weight files."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mitodet.models import build_detector, load_detector, save_detector
from mitodet.models.encoder import build_encoder, load_backbone_weights


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_detector("rdlm-cpu").eval()
    x = [torch.rand(3, 96, 96)]
    with torch.no_grad():
        ref = model(x)[0]
    save_detector(model, tmp_path / "m", model.config.replace(score_threshold=0.42))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    doc = json.loads((tmp_path / "m" / "config.json").read_text())
    assert doc["model"]["preset"] == "rdlm-cpu" and doc["model"]["glb"] == {"k": 64, "m": 64}
    loaded = load_detector(tmp_path / "m")
    assert loaded.config.score_threshold == 0.42
    with torch.no_grad():
        out = loaded(x)[0]
    assert torch.equal(ref["boxes"], out["boxes"]) and torch.equal(ref["scores"], out["scores"])


class _Payload:
    """Unpickling this runs code: it creates the file named in the pickle."""

    def __init__(self, flag):
        self.flag = str(flag)

    def __reduce__(self):
        return (Path.touch, (Path(self.flag),))


def test_loading_never_unpickles(tmp_path):
    # a pickled state dict (what torch.save writes) in place of the safetensors file: loading
    # must refuse it without running the code inside it
    import pickle

    model = build_detector("fpn-cpu")
    save_detector(model, tmp_path)
    flag = tmp_path / "code-ran"
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(pickle.dumps({"state": _Payload(flag)}))
    assert pickle.loads(weights.read_bytes()) and flag.exists()  # the payload does run when unpickled
    flag.unlink()
    with pytest.raises(ValueError, match="cannot be read as safetensors"):
        load_detector(tmp_path)
    assert not flag.exists()


def test_missing_or_mismatched_model_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_detector(tmp_path)
    save_detector(build_detector("fpn-cpu"), tmp_path)
    doc = json.loads((tmp_path / "config.json").read_text())
    doc["model"]["glb"] = {"k": 64, "m": 64}
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="does not fit"):
        load_detector(tmp_path)


def test_damaged_model_folders_are_clear_errors(tmp_path):
    save_detector(build_detector("fpn-cpu"), tmp_path)
    good = (tmp_path / "config.json").read_text()
    (tmp_path / "config.json").write_text(json.dumps({"preset": "fpn-cpu"}))
    with pytest.raises(ValueError, match="no 'model' settings"):
        load_detector(tmp_path)
    doc = json.loads(good)
    doc["model"]["glb"] = {"k": 64, "colour": 1}
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"invalid model settings .*unknown glb keys \['colour'\]"):
        load_detector(tmp_path)
    (tmp_path / "config.json").write_text(good)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # an interrupted copy
    with pytest.raises(ValueError, match="cannot be read as safetensors.*copy it again"):
        load_detector(tmp_path)


def test_backbone_weights_from_local_file(tmp_path):
    torch.manual_seed(1)
    from torchvision.models import resnet18

    tv = resnet18(weights=None)
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in tv.state_dict().items()}, str(path))
    enc = build_encoder("resnet18")
    missing = load_backbone_weights(enc, path)
    assert missing == []
    assert torch.equal(enc.stem[0].weight, tv.conv1.weight)
    assert torch.equal(enc.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    enc2 = build_encoder("resnet18")
    load_backbone_weights(enc2, tmp_path / "r18.pth")
    assert torch.equal(enc2.layer1[0].conv1.weight, tv.layer1[0].conv1.weight)


def test_backbone_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_backbone_weights(build_encoder("resnet18"), tmp_path / "nope.pth")
    from torchvision.models import resnet34

    torch.save(resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ValueError, match="do not fit"):
        load_backbone_weights(build_encoder("resnet18"), tmp_path / "r34.pth")
