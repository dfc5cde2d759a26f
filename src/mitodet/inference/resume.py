"""Resumable runs: the run key of a file, and whether its outputs from an earlier run stand.

Every output is written atomically; ``NAME.summary.json`` is written last and records the
run key (:func:`run_key`: the input's path, size and modification time, and the settings of
:meth:`mitodet.config.DetectConfig.run_settings`, the model's fingerprint among them) and the
list of outputs. :func:`claim` decides, before any work, whether a file is finished (same
key, every output there) or is to be processed: then its marker goes first, so that a crash
mid-way is never mistaken for a finished file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mitodet.checks import state_digest


def model_fingerprint(detector) -> str:
    """SHA-256 (16 hex) of the model's weights and config, and of its second stage when it runs one."""
    from dataclasses import asdict

    from mitodet.config import to_dict

    extra = json.dumps(to_dict(detector.config), sort_keys=True, default=str).encode()
    modules = [detector.network()]
    for stage in (getattr(detector, "rescorer", None), getattr(detector, "atypical", None)):
        if stage is not None:
            d = asdict(stage.config)
            # a setting added after models were shipped is hashed only when it is not at its
            # default, so that those models keep their fingerprint (and finished runs their key)
            for k, default in getattr(stage.config, "FINGERPRINT_DEFAULTS", {}).items():
                if d.get(k) == default:
                    d.pop(k)
            extra += json.dumps(d, sort_keys=True).encode()
            modules.append(stage)
    return state_digest(*modules, extra=extra)[:16]


def file_identity(path: Path) -> dict[str, Any]:
    try:
        st = path.stat()
        return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {"path": str(path.absolute()), "size": None, "mtime_ns": None}


def run_key(settings: dict[str, Any], path: Path) -> str:
    """The key that decides whether an earlier output of ``path`` is still valid."""
    doc = {"input": file_identity(path), **settings}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:20]


def complete_summary(marker: Path, key: str, out_dir: Path) -> dict[str, Any] | None:
    """The summary of a finished earlier run with this key, else None."""
    if not marker.is_file():
        return None
    try:
        doc = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("status") != "complete" or doc.get("run", {}).get("key") != key:
        return None
    if not all((out_dir / name).is_file() for name in doc.get("outputs", [])):
        return None
    return doc


def owner(marker: Path) -> str | None:
    """The absolute input path an existing summary was written for (None: none, or unknown)."""
    try:
        doc = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc.get("image_path") if isinstance(doc, dict) else None


def claim(out_dir: Path, name: str, path: Path, key: str, overwrite: bool) -> dict[str, Any] | None:
    """Before any work on ``path`` (outputs ``out_dir/name.*``): the summary of its finished
    earlier run with this ``key`` (the file is then skipped), or None after claiming its
    outputs: its marker ``NAME.summary.json`` is removed, so the file counts as not done until
    the marker is back.

    Raises:
        ValueError: the outputs hold another input's results under this name (same name in
            another folder), unless ``overwrite``.
    """
    from mitodet.inference.inputs import output_paths

    marker = output_paths(out_dir, name)["summary_json"]
    if not overwrite:
        done = complete_summary(marker, key, out_dir)
        if done is not None:
            return done
        other = owner(marker)  # another input's results under this name are never replaced silently
        if other is not None and other != str(path.resolve()):
            raise ValueError(
                f"{path}: {out_dir / name}.* hold the results of another input, {other} (same name); give this "
                "batch its own --out, rename one of the files, or pass --overwrite to replace them"
            )
    marker.unlink(missing_ok=True)
    return None
