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
