"""The one set of checks and small helpers that the CLI, the library and the Ray backend share.

- values: :func:`check_threshold`, :func:`check_mpp` (the plausible range of a scan's pixel
  size, :data:`MPP_RANGE`), :func:`positive_int`, :func:`as_points`;
- files: :func:`atomic_write` (a unique temporary file in the target's folder, flushed and
  fsync'ed, then renamed into place: a crash leaves the old file or the new one, never half
  of one) and its byte / text / JSON forms;
- :func:`state_digest`: the SHA-256 of modules' weights, the one hash behind the model
  fingerprint (resume key of ``detect``) and the training parameter digest.

Every check raises ``ValueError`` whose message names the value and what is allowed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: micrometres per pixel a scan can plausibly have: below 0.02 or above 5 um/px a value is
#: a screen or print default (72 dpi = 352.8 um/px), not a microscope's resolution
MPP_RANGE: tuple[float, float] = (0.02, 5.0)


def check_threshold(value: Any, name: str = "threshold", default: float | None = None) -> float | None:
    """``value`` as a float in [0, 1] (``default`` when ``value`` is None)."""
    if value is None:
        return default
    try:
        thr = float(value)
    except (TypeError, ValueError):
        thr = float("nan")
    if isinstance(value, bool) or not 0.0 <= thr <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return thr


def check_mpp(value: Any, name: str = "mpp") -> float:
    """``value`` as a pixel size in um/px inside :data:`MPP_RANGE`."""
    lo, hi = MPP_RANGE
    try:
        m = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of micrometres per pixel, got {value!r}") from None
    if isinstance(value, bool) or not (math.isfinite(m) and lo <= m <= hi):
        raise ValueError(
            f"{name} {value!r} is outside the plausible range {lo}-{hi} um/px; x40 scans are about 0.25, x20 about 0.5"
        )
    return m


def check_device(value: Any, name: str = "device") -> str:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"``, refused when that device is not here (before any
    model is loaded): the message says what this machine has."""
    import torch

    dev = str(value or "cpu").strip().lower()
    if dev == "cpu":
        return dev
    if dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit()):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(
                f"{name} {value!r}: this machine has no CUDA GPU that torch can use; run on the CPU "
                "(the default) or on a machine with one"
            )
        if ":" in dev and int(dev[5:]) >= n:
            raise ValueError(f"{name} {value!r}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
        return dev
    raise ValueError(f"{name} must be 'cpu', 'cuda' or 'cuda:N', got {value!r}")


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1 (an integral float is accepted; a bool is not)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer))
    if not ok or not math.isfinite(value) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def as_points(points: object, name: str = "points") -> np.ndarray:
    """``points`` as a float64 (N, 2) array of (x, y); empty input gives (0, 2).

    Raises:
        ValueError: another shape (a (2, 4) box array is *not* 4 points) or non-finite
            coordinates; the message names ``name``.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        return pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(
            f"{name} must be an array of shape (N, 2) holding (x, y); got shape {pts.shape}. "
            "Pass np.zeros((0, 2)) for an image without points."
        )
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"{name} holds NaN or infinite coordinates; drop those rows first")
    return pts


def _read_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


#: read once (os.umask can only be read by setting it, which is not thread-safe)
_UMASK = _read_umask()


def _file_mode() -> int:
    return 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsync'ed and renamed onto
    ``path``, on an exception removed. ``suffix`` keeps a writer that insists on a file
    ending (``np.savez`` appends ``.npz``) writing to the yielded name.

    Raises:
        FileNotFoundError: the target's folder does not exist.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {str(folder)!r} does not exist; create it first")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _file_mode())
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); returns the path.
    The file gets the permissions an ordinary new file would get (0666 minus the umask)."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically; see :func:`atomic_write`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_save(path: str | os.PathLike[str], save: Callable[[str], Any], suffix: str = ".tmp") -> Path:
    """``save(temp_path)`` then the atomic rename (for writers that take a file name, such as
    ``safetensors.torch.save_file``)."""
    with atomic_write(path, suffix) as tmp:
        save(str(tmp))
    return Path(path)


def state_digest(*modules, extra: bytes = b"") -> str:
    """SHA-256 (hex) of ``extra`` and every parameter's and buffer's name and bytes, module
    by module in state-dict order: equal digests mean bitwise-equal weights."""
    h = hashlib.sha256(extra)
    for module in modules:
        for k, v in module.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
