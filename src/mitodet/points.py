"""Validation of point arrays: :func:`mitodet.checks.as_points`, kept importable here."""

from __future__ import annotations

from mitodet.checks import as_points

__all__ = ["as_points"]
