"""Target profiles: one TOML file per device in targets/. A user adds a device by dropping a file."""
from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessInputError
from harness.registry import RUNTIMES
from harness.runtimes.onnxruntime_rt import GRAPH_LEVELS
from harness.tomlconfig import check_keys, check_list_of, read_toml
from harness.types import TargetProfile

REACHES = ("local",)
"""How a target is reached. SSH and emulated targets arrive with the target-profiles issue."""

_SCHEMA = {
    "name": str,
    "description": str,
    "arch": str,
    "reach": str,
    "runtimes": list,
    "threads": int,
    "memory_cap_mb": int,
    "onnxruntime": dict,
}
_ORT_SCHEMA = {"graph_optimization": str}


def load_target(path: Path) -> TargetProfile:
    data = read_toml(path)
    check_keys(path, data, _SCHEMA)
    for required in ("name", "arch", "reach", "runtimes"):
        if required not in data:
            raise HarnessInputError(f"{path}: missing required key {required!r}")
    check_list_of(path, "runtimes", data["runtimes"], str)
    if data["reach"] not in REACHES:
        raise HarnessInputError(f"{path}: reach {data['reach']!r} is not supported here (supported: {', '.join(REACHES)})")
    for runtime in data["runtimes"]:
        if runtime not in RUNTIMES:
            raise HarnessInputError(f"{path}: unknown runtime {runtime!r} (known: {', '.join(RUNTIMES.names())})")
    threads = data.get("threads", 0)
    if threads < 0:
        raise HarnessInputError(f"{path}: 'threads' must be >= 0 (0 = all available cores)")
    memory_cap_mb = data.get("memory_cap_mb", 0)
    if memory_cap_mb < 0:
        raise HarnessInputError(f"{path}: 'memory_cap_mb' must be >= 0 (0 = no cap)")
    ort = data.get("onnxruntime", {})
    check_keys(path, ort, _ORT_SCHEMA, where="onnxruntime")
    level = ort.get("graph_optimization", "all")
    if level not in GRAPH_LEVELS:
        raise HarnessInputError(f"{path}: [onnxruntime] graph_optimization must be one of {', '.join(GRAPH_LEVELS)}")
    if data["name"] != path.stem:
        raise HarnessInputError(f"{path}: name {data['name']!r} must match the file name {path.stem!r}")
    return TargetProfile(
        name=data["name"],
        description=data.get("description", ""),
        arch=data["arch"],
        reach=data["reach"],
        runtimes=tuple(data["runtimes"]),
        threads=threads,
        onnx_graph_optimization=level,
        memory_cap_mb=memory_cap_mb,
        source=str(path),
    )


def list_targets(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.toml"))


def get_target(folder: Path, name: str) -> TargetProfile:
    path = folder / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(list_targets(folder)) or "none"
        raise HarnessInputError(f"unknown target {name!r} (known: {known}; profiles live in {folder})")
    return load_target(path)
