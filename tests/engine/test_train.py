"""``mitodet train`` end to end on the tiny synthetic set: deterministic resume after a
real ``kill -9``, and the clear stop on a non-finite loss."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
import torch
from engine_helpers import ROOT, mitodet_cmd, run, subprocess_env, tiny_train, write_config
from safetensors.torch import load_file


def _tensors(path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    differ = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    assert not differ, f"{what}: {len(differ)} tensors differ, e.g. {differ[:3]}"


def _log(out) -> list[tuple]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # everything but the timings
    return [tuple((k, v) for k, v in r.items() if k not in ("sec_per_it", "elapsed_s")) for r in rows]


@pytest.mark.slow
def test_resume_after_kill_9_equals_an_uninterrupted_run(tiny_data, tmp_path):
    # The stock RPN/RoI sampling is on, so the torch RNG saved in the checkpoint matters.
    iterations = 10
    train = tiny_train(iterations=iterations, checkpoint_every=1, val_every=4, warmup_iters=2)
    cfg = write_config(tmp_path / "cfg.json", train, tiny_data / "spec.json")
    whole, cut = tmp_path / "whole", tmp_path / "cut"

    def cmd(out):
        return mitodet_cmd("train", "--config", str(cfg), "--out", str(out), "--no-progress")

    reference = subprocess.Popen(
        cmd(whole), cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    victim = subprocess.Popen(
        cmd(cut), cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = cut / "checkpoints" / "last.json"
    deadline = time.time() + 240
    killed_after = None
    while time.time() < deadline and victim.poll() is None:
        try:
            killed_after = json.loads(last.read_text())["iteration"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            killed_after = None
        if killed_after is not None and killed_after >= 3:
            os.kill(victim.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL, f"the run was not killed mid-way (rc {victim.returncode})"
    assert killed_after is not None and 3 <= killed_after < iterations
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err[-3000:]

    resumed = run(cmd(cut))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"done: {iterations} iterations" in resumed.stdout
    start = int(re.search(r"resuming from the checkpoint of iteration (\d+)", resumed.stdout).group(1))
    assert killed_after <= start < iterations

    final = f"ckpt-{iterations:07d}.safetensors"
    # Weights, optimizer momentum and the torch RNG state: bitwise equal.
    _assert_same_tensors(
        _tensors(cut / "checkpoints" / final), _tensors(whole / "checkpoints" / final), "final checkpoint"
    )
    for folder in ("model", "best"):
        _assert_same_tensors(
            _tensors(cut / folder / "model.safetensors"), _tensors(whole / folder / "model.safetensors"), folder
        )
    assert (
        json.loads((cut / "summary.json").read_text())["best"]
        == json.loads((whole / "summary.json").read_text())["best"]
    )
    # The rows of the iterations done twice were dropped on resume: the logs read the same.
    assert _log(cut) == _log(whole)


def test_nonfinite_loss_is_a_clear_stop(tiny_data, tmp_path, capsys):
    from mitodet.cli import main
    from mitodet.data.spec import load_spec
    from mitodet.engine.train import NonFiniteLossError, train, train_config_from_dict

    recipe = tiny_train(lr=1e10, iterations=5, threads=0)  # threads 0: leave this process's setting alone
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at iteration 1 .*no checkpoint was written yet"):
        train(train_config_from_dict(recipe), load_spec(tiny_data / "noval.json"), tmp_path / "lib", progress=False)

    cfg = write_config(tmp_path / "cfg.json", recipe, tiny_data / "noval.json")
    rc = main(["train", "--config", str(cfg), "--out", str(tmp_path / "cli"), "--no-progress"])
    assert rc == 3
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "Lower --lr" in err
    assert not (tmp_path / "cli" / "model").exists()


@pytest.mark.parametrize(
    "case, message",
    [
        ("not json", "is not valid JSON"),
        ("a list", "must be a JSON object"),
        ("sampler key", r"unknown sampler keys \['colour'\]"),
        ("reader setting", r"reader 'points_csv': .*'colour'.*its settings are"),
        ("glb key", r"unknown glb keys \['colour'\]"),
        ("wrong type", r"invalid train config: .*check the types"),
        ("pieces not a list", r"sampler.piece_px must be a list, got 3"),
    ],
)
def test_bad_train_configs_exit_2_with_the_fix(tiny_data, tmp_path, capsys, case, message):
    from mitodet.cli import main

    cfg = tmp_path / "cfg.json"
    spec = tiny_data / "noval.json"
    recipe = tiny_train(iterations=1, threads=0)
    if case == "not json":
        cfg.write_text('{"train": {"preset": "rdlm-cpu",}')
    elif case == "a list":
        cfg.write_text("[1, 2]")
    elif case == "sampler key":
        recipe["sampler"]["colour"] = 1
        write_config(cfg, recipe, spec)
    elif case == "reader setting":
        doc = json.loads(spec.read_text())
        doc["sources"][0]["colour"] = 1
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps(doc))
        write_config(cfg, recipe, spec)
    elif case == "wrong type":
        recipe["iterations"] = "ten"
        write_config(cfg, recipe, spec)
    elif case == "pieces not a list":
        recipe["sampler"]["piece_px"] = 3
        write_config(cfg, recipe, spec)
    else:
        recipe["model_overrides"]["glb"] = {"colour": 1}
        write_config(cfg, recipe, spec)
    rc = main(["train", "--config", str(cfg), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert re.search(message, err), err


def test_a_run_begun_before_a_setting_existed_resumes(tiny_data, tmp_path):
    """A config.json written before a train setting was added (so without its key) resumes
    while the setting stays at its default, and is refused when it does not."""
    from mitodet.data.spec import load_spec
    from mitodet.engine.train import train, train_config_from_dict

    spec = load_spec(tiny_data / "noval.json")
    out = tmp_path / "run"
    train(train_config_from_dict(tiny_train(iterations=2, checkpoint_every=1, threads=0)), spec, out, progress=False)
    doc = json.loads((out / "config.json").read_text())
    for key in ("exclude_labs", "mined_negatives", "mined_min_score", "mined_per_image"):
        del doc["train"][key]  # as an older mitodet wrote it
    (out / "config.json").write_text(json.dumps(doc))
    changed = tiny_train(iterations=3, checkpoint_every=1, threads=0, mined_per_image=4)
    with pytest.raises(ValueError, match="different train config"):
        train(train_config_from_dict(changed), spec, out, progress=False)
    summary = train(
        train_config_from_dict(tiny_train(iterations=3, checkpoint_every=1, threads=0)), spec, out, progress=False
    )
    assert summary["iterations"] == 3
