"""Reader registry and the ``python -m mitodet.data.readers`` summary."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from mitodet.data import readers
from mitodet.data.readers import READERS, get_reader
from mitodet.data.readers.__main__ import main


def test_registry_names_and_lookup() -> None:
    assert set(READERS) == {
        "mitos_atypia14",
        "mitos_atypia14_patches",
        "icpr12",
        "icpr12_patches",
        "tupac16_aux",
        "tupac16_patches",
        "midog",
        "amibr",
        "atnorm",
        "points_csv",
        "qupath_geojson",
    }
    for _name, function in READERS.items():
        assert getattr(readers, function.__name__) is function
        assert inspect.signature(function).return_annotation in ("list[ImageRecord]",)
        assert function.__doc__ and "Returns:" in function.__doc__
    assert get_reader("midog") is readers.read_midog
    with pytest.raises(KeyError, match="'midogg'; known readers: amibr, atnorm"):
        get_reader("midogg")


@pytest.mark.data
def test_summary_prints_one_line_per_set(shared_data: Path, capsys) -> None:
    assert main([str(shared_data)]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert lines["mitos_atypia14_labels"][2:6] == ["1200", "749", "2884", "11"]
    assert lines["midogpp"][2:5] == ["553", "11937", "14349"]
    assert lines["amibr"][2] == "3720"
    assert lines["mitos_atypia14"][2:6] == ["3", "8", "8", "2"]  # A03_00Ab, A03_03Ab, A05_00Aa
    assert "icpr12_patches" not in lines  # withdrawn


def test_summary_with_missing_root(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "none")]) == 2
    assert "MITODET_DATA" in capsys.readouterr().err
