"""Suite files (TOML): which models, formats, batch sizes and targets to measure, and how."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from harness.config.cluster import ClusterSettings, cluster_from_table
from harness.errors import HarnessInputError
from harness.config.tomlconfig import check_keys, check_list_of, check_plain_name, read_toml
from harness.types import FORMATS, CompressionSpec, RunSettings

_SCHEMA = {
    "name": str,
    "description": str,
    "models": (list, str),
    "targets": list,
    "formats": list,
    "batch_sizes": list,
    "export_tolerance": (float, int),
    "settings": dict,
    "variants": list,
    "cluster": dict,
}
_VARIANT_KEYS = {"name": str, "method": str, "after": str, "models": list}
_SETTING_TYPES = {f.name: (float, int) if f.type in ("float", "float | None") else str if f.type == "str" else int
                  for f in dataclasses.fields(RunSettings)}


@dataclass(frozen=True)
class Suite:
    name: str
    models: tuple[str, ...] | None
    """The generators to measure (a name or a list; none given: every model in models/ and the project's)."""
    targets: tuple[str, ...]
    """Target profiles to run on (``harness list targets``)."""
    formats: tuple[str, ...]
    """torch, onnx, tflite, executorch: each model is exported to each."""
    batch_sizes: tuple[int, ...]
    export_tolerance: float
    """Largest absolute difference from PyTorch allowed when an export is validated (default 1e-3)."""
    settings: RunSettings
    """``[settings]``: how each job is measured."""
    source: str = ""
    variants: tuple[CompressionSpec, ...] = ()
    """Compressed variants measured beside the fp32 model, in order (a variant may build on an earlier one)."""
    cluster: ClusterSettings | None = None
    """``[cluster]``: run across a Ray cluster (``harness.run.lab``); None = on this machine."""

    def select_variants(self, names: tuple[str, ...]) -> "Suite":
        """Only the named variants and those they build on; ("none",) keeps none."""
        if names == ("none",):
            return dataclasses.replace(self, variants=())
        by_name = {v.name: v for v in self.variants}
        wanted: set[str] = set()
        for name in names:
            if name not in by_name:
                known = ", ".join(by_name) or "none defined"
                raise HarnessInputError(f"{self.source}: no variant {name!r} (known: {known})")
            while name:
                wanted.add(name)
                name = by_name[name].after
        return dataclasses.replace(self, variants=tuple(v for v in self.variants if v.name in wanted))


def load_suite(path: Path) -> Suite:
    data = read_toml(path)
    suite = suite_from_table(path, data)  # unknown keys and wrong types first
    if not {"models", "targets", "variants"} & set(data):
        what = "is empty" if not data else "names no models, targets or variants"
        raise HarnessInputError(f"{path}: the suite {what} (it would run every model with default settings): "
                                "name at least its models or targets")
    return suite


def suite_from_table(path: Path, data: dict) -> Suite:
    """A Suite from a parsed suite table (errors name ``path``)."""
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
        name=check_plain_name(path, "name", data["name"]) if "name" in data else
        re.sub(r"[^A-Za-z0-9._-]", "_", path.stem).lstrip("._-") or "suite",
        models=tuple(models) if models is not None else None,
        targets=tuple(data.get("targets", ["x86-cpu"])),
        formats=formats,
        batch_sizes=tuple(batch_sizes),
        export_tolerance=float(data.get("export_tolerance", 1e-4)),
        settings=settings,
        source=str(path),
        variants=load_variants(path, data.get("variants", [])),
        cluster=cluster_from_table(path, data["cluster"]) if "cluster" in data else None,
    )


def load_variants(path: Path, tables: list) -> tuple[CompressionSpec, ...]:
    """``[[variants]]`` tables: name, method, after, models (default: all), and the compressor's parameters."""
    from harness.compress import compressor, resolve_params

    variants: list[CompressionSpec] = []
    stages: dict[str, str] = {"fp32": "torch"}
    scopes: dict[str, tuple[str, ...]] = {"fp32": ()}
    for i, table in enumerate(tables):
        where = f"variants[{i}]"
        if not isinstance(table, dict):
            raise HarnessInputError(f"{path}: {where} must be a table ([[variants]])")
        if "method" not in table:
            raise HarnessInputError(f"{path}: {where} needs a 'method' (a compressor: harness list compressors)")
        fixed = {k: v for k, v in table.items() if k in _VARIANT_KEYS}
        check_keys(path, fixed, _VARIANT_KEYS, where=where)
        method = table["method"]
        try:
            comp = compressor(method)
            params = resolve_params(method, {k: v for k, v in table.items() if k not in _VARIANT_KEYS})
        except HarnessInputError as exc:
            raise HarnessInputError(f"{path}: {where}: {exc}") from None
        name = table.get("name", method)
        after = table.get("after", "")
        if name in stages:
            raise HarnessInputError(f"{path}: {where}: variant name {name!r} is used twice (or is reserved)")
        if after and after not in stages:
            raise HarnessInputError(f"{path}: {where}: 'after' = {after!r} names no earlier variant")
        if after and comp.stage == "torch" and stages[after] != "torch":
            raise HarnessInputError(f"{path}: {where}: {method} works on a PyTorch model, but {after!r} is an "
                                    f"{stages[after]} file")
        if after and comp.stage != "torch" and stages[after] not in ("torch", comp.stage):
            raise HarnessInputError(f"{path}: {where}: {method} works on a {comp.stage} file, but {after!r} is an "
                                    f"{stages[after]} file")
        models = table.get("models", [])
        check_list_of(path, f"{where}.models", models, str)
        parent_scope = scopes[after or "fp32"]
        if parent_scope and (not models or not set(models) <= set(parent_scope)):
            raise HarnessInputError(f"{path}: {where}: 'after' = {after!r} is made only of "
                                    f"{', '.join(parent_scope)}; list those (or fewer) in 'models'")
        stages[name] = comp.stage
        scopes[name] = tuple(models)
        variants.append(CompressionSpec(name=name, method=method, params=params, after=after, models=tuple(models)))
    return tuple(variants)
