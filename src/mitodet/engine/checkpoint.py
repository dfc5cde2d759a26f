"""Resumable training checkpoints as safetensors (tensors) + JSON (everything else).

A checkpoint is committed by writing ``last.json`` last: it names the tensor file of that
iteration, so a kill at any moment leaves either the previous or the new checkpoint whole.
Nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mitodet.checks import atomic_save
from mitodet.config import save_json


def save_checkpoint(
    folder: Path, iteration: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, Any]
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        st = optimizer.state.get(p, {})
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim.{i}.{key}"] = val.detach().cpu().contiguous().reshape(val.shape)
    tensors["rng.torch"] = torch.get_rng_state()
    name = f"ckpt-{iteration:07d}.safetensors"
    atomic_save(folder / name, lambda tmp: save_file(tensors, tmp))
    previous = read_checkpoint_meta(folder)
    save_json({"iteration": iteration, "tensors": name, **meta}, folder / "last.json")
    if previous and previous.get("tensors") != name:
        (folder / previous["tensors"]).unlink(missing_ok=True)
    return folder / name


def read_checkpoint_meta(folder: Path) -> dict[str, Any] | None:
    path = folder / "last.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimizer state and torch RNG; returns the checkpoint's meta.

    Tensors are read on the CPU and copied to the device of the model's parameters, so a
    checkpoint written on one device resumes on another.
    """
    meta = read_checkpoint_meta(folder)
    if meta is None:
        raise FileNotFoundError(f"no checkpoint in {folder}")
    tensors = load_file(str(folder / meta["tensors"]))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for key, val in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            p = params[int(i)]
            optimizer.state[p][name] = val.to(p.device, copy=True)
    torch.set_rng_state(tensors["rng.torch"])
    return meta
