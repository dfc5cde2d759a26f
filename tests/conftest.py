"""Shared test fixtures.

Tests that need the real data in ``../shared/data`` use the ``shared_data`` fixture and are
marked ``data``; they are skipped (with the reason) where that folder is absent, and run in
CI where it is present. Set ``MITODET_DATA`` to point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MITODET_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real data not found at {DATA} (set MITODET_DATA)")
    return DATA


@pytest.fixture
def one_thread():
    """One torch thread for the test: on a machine shared with other work, two OpenMP threads
    spin at every barrier and a tiny forward pass takes seconds instead of milliseconds."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-weights rdlm-cpu model folder (detections are random; plumbing is real)."""
    import torch

    from mitodet.models import build_detector, save_detector

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model") / "rdlm-cpu-random"
    save_detector(build_detector("rdlm-cpu"), out)
    return out
