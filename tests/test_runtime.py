"""mitodet.runtime: glibc keeps freed tensors for reuse instead of page-faulting them in again."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from mitodet import runtime

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# 20 allocations of a 64 MB array, each freed: with glibc's defaults every one is a fresh
# mmap whose pages fault in again; with keep_freed_memory() the freed block is reused.
_FAULTS = textwrap.dedent("""
    import sys
    import numpy as np
    if sys.argv[1] == "keep":
        from mitodet.runtime import keep_freed_memory, malloc_state
        print(keep_freed_memory(), malloc_state(), file=sys.stderr)
    def faults():
        return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])
    np.ones(8 << 20)
    f0 = faults()
    for _ in range(20):
        a = np.ones(8 << 20)
        del a
    print(faults() - f0)
""")


def _faults(mode: str, env_system: bool = False) -> int:
    import os

    env = dict(os.environ)
    env.pop(runtime.MALLOC_ENV, None)
    if env_system:
        env[runtime.MALLOC_ENV] = "system"
    proc = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's")
def test_keep_freed_memory_stops_page_faults_of_reallocated_blocks():
    default = _faults("system")
    kept = _faults("keep")
    # 20 x 64 MB = 327,680 pages of 4 KiB with the defaults, or 640 faults where the kernel
    # backs them with 2 MiB transparent huge pages (this machine does either, by the moment)
    assert default >= 500, default
    assert kept < default / 20, (kept, default)


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's")
def test_environment_variable_keeps_the_c_library_defaults():
    # MITODET_MALLOC=system: the C library's defaults, faulting as often as they do
    env, system, kept = _faults("keep", env_system=True), _faults("system"), _faults("keep")
    assert env >= system / 2 and env > 20 * max(kept, 1), (env, system, kept)


def test_state_is_reported(monkeypatch):
    monkeypatch.setattr(runtime, "_state", None)
    monkeypatch.setenv(runtime.MALLOC_ENV, "system")
    assert runtime.keep_freed_memory() is False
    assert "MITODET_MALLOC=system" in runtime.malloc_state()
    if GLIBC:
        assert runtime.keep_freed_memory(force=True) is True
        assert runtime.malloc_state().startswith("glibc")
        assert runtime.keep_freed_memory() is True  # once applied, it stays applied
