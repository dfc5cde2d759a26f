"""Every command: each flag documented, one error style, one exit-code rule (commands/_common.py)."""

from __future__ import annotations

import argparse

import pytest

from mitodet.cli import build_parser, main


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_every_flag_has_help():
    missing = [
        f"{name} {a.option_strings or a.dest}"
        for name, p in _commands().items()
        for a in p._actions
        if not isinstance(a, argparse._HelpAction) and not (a.help and a.help.strip())
    ]
    assert missing == []


@pytest.mark.parametrize(
    "argv, command",
    [
        (["detect", "x.png", "--threshold", "2"], "detect"),
        (["evaluate", "--gt", "no-such.csv", "--pred", "no-such.csv"], "evaluate"),
        (["validate", "--threshold", "-1"], "validate"),
        (["train", "--out", "o", "--config", "no-such.json"], "train"),
        (["train-rescorer", "--model", "no-such-model", "--out", "o"], "train-rescorer"),
        (["readout", "x.png", "--points", "no-such.csv"], "readout"),
    ],
)
def test_usage_errors_share_one_style_and_exit_2(argv, command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mitodet {command}: error: "), err
