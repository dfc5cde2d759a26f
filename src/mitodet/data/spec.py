"""Data specs: which sources to read (through the readers) and how to split them.

A spec is JSON::

    {
      "sources": [
        {"reader": "amibr", "root": "${MITODET_DATA}/amibr"},
        {"reader": "midog", "json_path": "MIDOG++.json", "image_dir": "images/"},
        {"reader": "points_csv", "path": "labels.csv", "image_root": "frames/", "mpp": 0.25}
      ],
      "val_fraction": 0.15,
      "split_seed": 0,
      "full_frames": [{"reader": "mitos_atypia14", "root": "${MITODET_DATA}/mitos_atypia14"}]
    }

``reader`` names a function of :data:`mitodet.data.readers.READERS`; the other keys are
its keyword arguments. Relative paths are resolved against the spec file's folder;
``${MITODET_DATA}`` expands to that variable, or to ``../shared/data`` beside the project.
``val_fraction`` of the *slides* (not crops) go to validation; ``full_frames`` are kept out
of training entirely and used for whole-image validation. The name ``shared`` selects the
built-in spec over the data shipped beside the project.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mitodet.data.records import ImageRecord

PATH_KEYS = ("root", "path", "json_path", "image_dir", "image_root")

# The built-in spec. The atnorm_* sets are left out: their file names carry no slide id,
# and they come from the same public cohorts (MIDOG, TCGA) as AMi-Br, so they could put
# crops of validation slides into training. The ICPR 2012 MITOS lab is reserved for external
# testing (../shared/data/README.md): none of its images may be trained or tuned on, so its
# reader is kept (and tested on made-up fixtures) but no built-in spec names it.
SHARED_SPEC: dict[str, Any] = {
    "sources": [
        {"reader": "amibr", "root": "${MITODET_DATA}/amibr"},
        {"reader": "tupac16_patches", "root": "${MITODET_DATA}/tupac16_patches"},
        {"reader": "mitos_atypia14_patches", "root": "${MITODET_DATA}/mitos_atypia14_h03_patches"},
    ],
    "val_fraction": 0.15,
    "split_seed": 0,
    "full_frames": [{"reader": "mitos_atypia14", "root": "${MITODET_DATA}/mitos_atypia14"}],
}


def default_data_root() -> Path:
    env = os.environ.get("MITODET_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


@dataclass
class DataSpec:
    sources: list[dict[str, Any]]
    val_fraction: float = 0.15
    split_seed: int = 0
    full_frames: list[dict[str, Any]] = field(default_factory=list)
    base: Path = field(default_factory=Path.cwd)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": self.sources,
            "val_fraction": self.val_fraction,
            "split_seed": self.split_seed,
            "full_frames": self.full_frames,
        }


def load_spec(spec: str | Path | dict) -> DataSpec:
    """Parse a spec: ``"shared"``, a JSON file path, or a dict."""
    base = Path.cwd()
    if isinstance(spec, dict):
        doc = spec
    elif str(spec) == "shared":
        doc = SHARED_SPEC
    else:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(
                f"data spec {path} not found; pass 'shared' or a JSON spec file (see mitodet.data.spec for the format)"
            )
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"data spec {path} is not valid JSON: {exc}") from exc
        base = path.parent
    if not isinstance(doc.get("sources"), list) or not doc["sources"]:
        raise ValueError(f"data spec {spec} needs a non-empty 'sources' list")
    return DataSpec(
        sources=list(doc["sources"]),
        val_fraction=float(doc.get("val_fraction", 0.15)),
        split_seed=int(doc.get("split_seed", 0)),
        full_frames=list(doc.get("full_frames", [])),
        base=base,
    )


def training_data(model_dir: str | Path) -> Any:
    """The data spec a model folder was trained on (the ``data`` of its ``train_config.json``),
    else ``"shared"``."""
    path = Path(model_dir) / "train_config.json"
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8")).get("data", "shared")
        except json.JSONDecodeError:
            pass
    return "shared"


def _resolve(value: str, base: Path) -> str:
    if "${MITODET_DATA}" in value:
        value = value.replace("${MITODET_DATA}", str(default_data_root()))
    p = Path(os.path.expandvars(value))
    return str(p if p.is_absolute() else base / p)


def read_sources(entries: list[dict[str, Any]], base: Path) -> list[ImageRecord]:
    """Run the named readers; every entry's records, concatenated."""
    from mitodet.data.readers import READERS

    records: list[ImageRecord] = []
    for entry in entries:
        entry = dict(entry)
        name = entry.pop("reader", None)
        if name not in READERS:
            raise ValueError(f"data spec: unknown reader {name!r}; known readers: {', '.join(sorted(READERS))}")
        kwargs = {k: (_resolve(v, base) if k in PATH_KEYS and isinstance(v, str) else v) for k, v in entry.items()}
        reader = READERS[name]
        try:
            inspect.signature(reader).bind(**kwargs)
        except TypeError as exc:
            params = ", ".join(inspect.signature(reader).parameters)
            raise ValueError(f"data spec: reader {name!r}: {exc}; its settings are: {params}") from None
        records.extend(reader(**kwargs))
    return records
