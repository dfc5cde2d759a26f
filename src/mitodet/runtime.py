"""Process-wide settings for long CPU jobs: how glibc's ``malloc`` treats freed tensors.

PyTorch allocates CPU tensors with the C library's ``malloc``. glibc serves every block
above its mmap threshold (dynamic, at most 32 MB) with a fresh ``mmap`` and returns it to
the kernel on ``free``, so a detection forward pass, whose activations are tens of MB each,
page-faults and zeroes its whole working set again on every batch. ``benchmarks/speed.py``
(part 3, fresh processes, the shipped ``rdlm-cpu`` on two real HPF frames, 2 cores) measured
369,106 minor page faults, 1.61 s of kernel time and 2.72 s per HPF with glibc's defaults
against 6,036 faults, 0.03 s and 1.74 s with freed memory kept (1.56x).

:func:`keep_freed_memory` raises glibc's mmap and trim thresholds (``mallopt``) so that
freed blocks stay in the heap and are reused. The price: the process keeps its peak
resident size instead of shrinking between batches. :class:`~mitodet.inference.predictor.Detector` and
:func:`~mitodet.engine.train.train` call it; set ``MITODET_MALLOC=system`` to keep the C
library's defaults. It does nothing where the C library is not glibc (macOS, Windows,
musl) or where another allocator (jemalloc, tcmalloc through ``LD_PRELOAD``) serves
``malloc``, as those keep freed memory themselves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

MALLOC_ENV = "MITODET_MALLOC"
"""Environment variable: ``system`` leaves the C library's allocator settings alone."""

KEEP_BYTES = 1 << 30
"""Blocks up to this size come from the heap, and up to this much free heap top is kept."""

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3

_state: str | None = None


def malloc_state() -> str:
    """What :func:`keep_freed_memory` did in this process, in words (for benchmark reports)."""
    return _state or "C library defaults (keep_freed_memory not called)"


def keep_freed_memory(force: bool = False) -> bool:
    """Make glibc keep freed blocks of up to 1 GiB for reuse instead of unmapping them.

    Args:
        force: apply it even when ``MITODET_MALLOC=system`` is set.

    Call it early: a process whose heap was already shaped by glibc's defaults may gain
    little (``benchmarks/speed.py`` measures the setting in fresh processes for that reason).

    Returns:
        True when glibc's thresholds are set now (or were already), False when nothing
        was changed (not glibc, ``MITODET_MALLOC=system``, or ``mallopt`` refused).
    """
    global _state
    if _state is not None and _state.startswith("glibc"):
        return True
    if not force and os.environ.get(MALLOC_ENV, "").strip().lower() == "system":
        _state = f"C library defaults ({MALLOC_ENV}=system)"
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        _state = "C library defaults (not glibc)"
        return False
    if "malloc" in os.environ.get("LD_PRELOAD", ""):
        _state = "another allocator through LD_PRELOAD (left alone)"
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
    except (OSError, AttributeError):
        ok = False
    _state = (
        "glibc, freed blocks up to 1 GiB kept for reuse (mallopt mmap/trim thresholds)"
        if ok
        else "C library defaults (mallopt refused)"
    )
    return ok


__all__ = ["MALLOC_ENV", "keep_freed_memory", "malloc_state"]
