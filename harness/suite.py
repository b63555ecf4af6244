"""Suite files (TOML): which models, formats, batch sizes and targets to measure, and how."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessInputError
from harness.tomlconfig import check_keys, check_list_of, read_toml
from harness.types import FORMATS, RunSettings

_SCHEMA = {
    "name": str,
    "description": str,
    "models": (list, str),
    "targets": list,
    "formats": list,
    "batch_sizes": list,
    "export_tolerance": (float, int),
    "settings": dict,
}
_SETTING_TYPES = {f.name: (float, int) if f.type in ("float", "float | None") else int
                  for f in dataclasses.fields(RunSettings)}


@dataclass(frozen=True)
class Suite:
    name: str
    models: tuple[str, ...] | None
    """None means every model in models/."""
    targets: tuple[str, ...]
    formats: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    export_tolerance: float
    settings: RunSettings
    source: str = ""


def load_suite(path: Path) -> Suite:
    data = read_toml(path)
    check_keys(path, data, _SCHEMA)
    models = data.get("models", "all")
    if isinstance(models, str):
        if models != "all":
            raise HarnessInputError(f"{path}: 'models' must be \"all\" or a list of model names")
        models = None
    else:
        check_list_of(path, "models", models, str)
    for key in ("targets", "formats"):
        check_list_of(path, key, data.get(key, []), str)
    formats = tuple(data.get("formats", FORMATS))
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise HarnessInputError(f"{path}: unknown format {bad[0]!r} (known: {', '.join(FORMATS)})")
    batch_sizes = data.get("batch_sizes", [1])
    check_list_of(path, "batch_sizes", batch_sizes, int)
    if not batch_sizes or min(batch_sizes) < 1:
        raise HarnessInputError(f"{path}: 'batch_sizes' must be a non-empty list of integers >= 1")
    raw = data.get("settings", {})
    check_keys(path, raw, _SETTING_TYPES, where="settings")
    try:
        settings = RunSettings(**raw)
    except ValueError as exc:
        raise HarnessInputError(f"{path}: [settings] {exc}") from None
    return Suite(
        name=data.get("name", path.stem),
        models=tuple(models) if models is not None else None,
        targets=tuple(data.get("targets", ["x86-cpu"])),
        formats=formats,
        batch_sizes=tuple(batch_sizes),
        export_tolerance=float(data.get("export_tolerance", 1e-4)),
        settings=settings,
        source=str(path),
    )
