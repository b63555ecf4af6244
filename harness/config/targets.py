"""Target profiles: one TOML file per device in targets/. A user adds a device by dropping a file."""
from __future__ import annotations

import os
from pathlib import Path

from harness.errors import HarnessInputError
from harness.registry import LAUNCHERS, RUNTIMES
from harness.runtimes.litert_rt import LITERT_APIS
from harness.runtimes.onnxruntime_rt import EXECUTION_MODES, GRAPH_LEVELS
from harness.config.tomlconfig import check_keys, check_list_of, read_toml
from harness.types import EmulatedSettings, FitBudget, SshSettings, TargetProfile

ARCHES = ("x86_64", "aarch64", "arm64", "armv8l", "armv7l", "armv6l", "riscv64", "i686", "ppc64le", "s390x",
          "loongarch64", "mips64")
"""What ``uname -m`` (Python's ``platform.machine()``) prints on the boards and hosts people use (Linux; arm64 on
macOS)."""

REACHES = ("local", "ssh", "emulated")
"""The built-in reaches: this machine, a board over SSH, or an arm64 rootfs under qemu-user. A plugin adds one by
registering a launcher class in ``harness.registry.LAUNCHERS`` (``harness.launch.base``)."""

_SCHEMA = {
    "name": str,
    "description": str,
    "arch": str,
    "reach": str,
    "runtimes": list,
    "threads": int,
    "memory_cap_mb": int,
    "cpu_affinity": list,
    "energy": dict,
    "thermal": dict,
    "onnxruntime": dict,
    "litert": dict,
    "ssh": dict,
    "emulated": dict,
    "fit": dict,
}
_FIT_SCHEMA = {"memory_mb": (float, int), "storage_mb": (float, int), "margin": (float, int), "source": str}
_SSH_SCHEMA = {"host": str, "port": int, "user": str, "identity_file": str, "known_hosts": str, "python": str,
               "workdir": str, "connect_timeout_s": (float, int)}
_ORT_SCHEMA = {"graph_optimization": str, "execution_mode": str}
_LITERT_SCHEMA = {"xnnpack": bool, "api": str}


def load_target(path: Path) -> TargetProfile:
    data = read_toml(path)
    reach = data.get("reach")
    if isinstance(reach, str) and reach not in LAUNCHERS:  # before the keys: its table would be an unknown key
        raise HarnessInputError(f"{path}: reach {reach!r} is not supported here (supported: "
                                f"{', '.join(LAUNCHERS.names())}; a plugin adds one)")
    plugin_reach = isinstance(reach, str) and reach not in REACHES and reach not in _SCHEMA
    check_keys(path, data, _SCHEMA | ({reach: dict} if plugin_reach else {}))
    for required in ("name", "arch", "reach", "runtimes"):
        if required not in data:
            raise HarnessInputError(f"{path}: missing required key {required!r}")
    check_list_of(path, "runtimes", data["runtimes"], str)
    if data["arch"] not in ARCHES:
        raise HarnessInputError(f"{path}: unknown arch {data['arch'][:40]!r} (known: {', '.join(ARCHES)}; what "
                                "`uname -m` prints on the device)")
    for runtime in data["runtimes"]:
        if runtime not in RUNTIMES:
            raise HarnessInputError(f"{path}: unknown runtime {runtime!r} (known: {', '.join(RUNTIMES.names())})")
    threads = data.get("threads", 0)
    if threads < 0:
        raise HarnessInputError(f"{path}: 'threads' must be >= 0 (0 = all available cores)")
    affinity = data.get("cpu_affinity", [])
    check_list_of(path, "cpu_affinity", affinity, int)
    if any(c < 0 for c in affinity) or len(set(affinity)) != len(affinity):
        raise HarnessInputError(f"{path}: 'cpu_affinity' must list distinct CPU numbers >= 0")
    if data["reach"] == "local" and affinity:
        usable = sorted(os.sched_getaffinity(0))
        missing = sorted(set(affinity) - set(usable))
        if missing:
            raise HarnessInputError(f"{path}: 'cpu_affinity' names CPU {', '.join(map(str, missing))}, which this "
                                    f"machine does not let the harness use (CPUs: {_ranges(usable)})")
    energy = _load_energy(path, data.get("energy", {}))
    thermal = data.get("thermal", {})
    check_keys(path, thermal, _THERMAL_SCHEMA, where="thermal")
    if any(v < 0 for v in thermal.values()) or not 0 < thermal.get("throttle_freq_drop", 0.1) < 1:
        raise HarnessInputError(f"{path}: [thermal] values must be >= 0 and throttle_freq_drop a fraction (0-1)")
    memory_cap_mb = data.get("memory_cap_mb", 0)
    if memory_cap_mb < 0:
        raise HarnessInputError(f"{path}: 'memory_cap_mb' must be >= 0 (0 = no cap)")
    ort = data.get("onnxruntime", {})
    check_keys(path, ort, _ORT_SCHEMA, where="onnxruntime")
    level = ort.get("graph_optimization", "all")
    if level not in GRAPH_LEVELS:
        raise HarnessInputError(f"{path}: [onnxruntime] graph_optimization must be one of {', '.join(GRAPH_LEVELS)}")
    mode = ort.get("execution_mode", "sequential")
    if mode not in EXECUTION_MODES:
        raise HarnessInputError(f"{path}: [onnxruntime] execution_mode must be one of {', '.join(EXECUTION_MODES)}")
    litert = data.get("litert", {})
    check_keys(path, litert, _LITERT_SCHEMA, where="litert")
    if litert.get("api", "interpreter") not in LITERT_APIS:
        raise HarnessInputError(f"{path}: [litert] api must be one of {', '.join(LITERT_APIS)}")
    fit = _load_fit(path, data.get("fit", {}))
    ssh = _load_ssh(path, data) if data["reach"] == "ssh" else None
    emulated = _load_emulated(path, data) if data["reach"] == "emulated" else None
    if data["reach"] != "emulated" and "emulated" in data:
        raise HarnessInputError(f"{path}: an [emulated] table needs reach = \"emulated\"")
    if data["reach"] != "ssh" and "ssh" in data:
        raise HarnessInputError(f"{path}: an [ssh] table needs reach = \"ssh\"")
    reach_options = data.get(data["reach"], {}) if plugin_reach else {}
    if plugin_reach:
        check_table = getattr(LAUNCHERS.get(data["reach"]), "check_table", None)
        if check_table is not None:
            check_table(path, reach_options)  # the reach's own table: a one-line HarnessInputError when wrong
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
        onnx_execution_mode=mode,
        litert_xnnpack=litert.get("xnnpack", True),
        litert_api=litert.get("api", "interpreter"),
        memory_cap_mb=memory_cap_mb,
        cpu_affinity=tuple(affinity),
        energy=energy,
        thermal=thermal,
        ssh=ssh,
        emulated=emulated,
        reach_options=reach_options,
        fit=fit,
        source=str(path),
    )


def _ranges(cpus: list[int]) -> str:
    """[0, 1, 2, 5] → '0-2, 5'."""
    spans: list[list[int]] = []
    for cpu in cpus:
        if spans and spans[-1][1] == cpu - 1:
            spans[-1][1] = cpu
        else:
            spans.append([cpu, cpu])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _load_fit(path: Path, table: dict) -> FitBudget:
    """``[fit]``: memory_mb and storage_mb ≥ 0 (0 = not declared), margin a fraction in [0, 1), source."""
    check_keys(path, table, _FIT_SCHEMA, where="fit")
    if any(not 0 <= table.get(key, 0) < float("inf") for key in ("memory_mb", "storage_mb")):
        raise HarnessInputError(f"{path}: [fit] memory_mb and storage_mb must be >= 0 (MiB; 0 = not declared)")
    margin = table.get("margin", FitBudget.margin)
    if not 0 <= margin < 1:
        raise HarnessInputError(f"{path}: [fit] margin must be a fraction in [0, 1) (0.1 = keep 10% free)")
    if table and not (table.get("memory_mb") or table.get("storage_mb")):
        raise HarnessInputError(f"{path}: [fit] declares neither memory_mb nor storage_mb")
    return FitBudget(memory_mb=float(table.get("memory_mb", 0)), storage_mb=float(table.get("storage_mb", 0)),
                     margin=float(margin), source=table.get("source", ""))


def _load_ssh(path: Path, data: dict) -> SshSettings:
    table = data.get("ssh")
    if not isinstance(table, dict):
        raise HarnessInputError(f"{path}: reach = \"ssh\" needs an [ssh] table (host, user, python, ...)")
    check_keys(path, table, _SSH_SCHEMA, where="ssh")
    for required in ("host", "user", "python"):
        if not table.get(required):
            raise HarnessInputError(f"{path}: [ssh] missing required key {required!r}")
    if not table["python"].startswith("/"):
        raise HarnessInputError(f"{path}: [ssh] python must be an absolute path (e.g. /usr/bin/python3): "
                                "the remote PATH depends on the login shell")
    if not 0 < table.get("port", 22) < 65536:
        raise HarnessInputError(f"{path}: [ssh] port must be between 1 and 65535")
    settings = {k: v for k, v in table.items()}
    for key in ("identity_file", "known_hosts"):
        if settings.get(key):
            settings[key] = str(Path(settings[key]).expanduser())
    settings.setdefault("known_hosts", str(Path("~/.ssh/known_hosts").expanduser()))
    return SshSettings(**settings)


def _folders(folders: Path | list[Path]) -> list[Path]:
    return folders if isinstance(folders, list) else [folders]


def target_files(folders: Path | list[Path]) -> dict[str, Path]:
    """name → profile file; a later folder (the project's) overrides an earlier one (the built-ins) by name."""
    found: dict[str, Path] = {}
    for folder in _folders(folders):
        for path in sorted(folder.glob("*.toml")):
            found[path.stem] = path
    return dict(sorted(found.items()))


def list_targets(folders: Path | list[Path]) -> list[str]:
    return list(target_files(folders))


def get_target(folders: Path | list[Path], name: str) -> TargetProfile:
    path = target_files(folders).get(name)
    if path is None:
        known = ", ".join(list_targets(folders)) or "none"
        where = ", ".join(str(f) for f in _folders(folders))
        raise HarnessInputError(f"unknown target {name!r} (known: {known}; profiles live in {where})")
    return load_target(path)


_THERMAL_SCHEMA = {"cooldown_to_c": (float, int), "cooldown_max_s": (float, int), "throttle_freq_drop": (float, int)}
_ENERGY_SCHEMA = {"sources": list, "power_model": dict, "meter": dict, "jetson_rail": str, "vcgencmd": str}
_POWER_MODEL_SCHEMA = {"idle_w": (float, int), "active_w_per_core": (float, int), "error_band": (float, int)}
_METER_SCHEMA = {"command": list, "reports": str, "interval_s": (float, int)}


def _load_energy(path: Path, table: dict) -> dict:
    from harness.energy import ENERGY_PROBES

    check_keys(path, table, _ENERGY_SCHEMA, where="energy")
    sources = table.get("sources", [])
    check_list_of(path, "[energy] sources", sources, str)
    for name in sources:
        if name not in ENERGY_PROBES:
            raise HarnessInputError(f"{path}: [energy] unknown source {name!r} (known: {', '.join(ENERGY_PROBES.names())})")
    model = table.get("power_model", {})
    check_keys(path, model, _POWER_MODEL_SCHEMA, where="energy.power_model")
    if any(v < 0 for v in model.values()):
        raise HarnessInputError(f"{path}: [energy.power_model] values must be >= 0")
    if "modelled" in sources and not {"idle_w", "active_w_per_core"} <= set(model):
        raise HarnessInputError(f"{path}: the 'modelled' energy source needs [energy.power_model] idle_w and "
                                "active_w_per_core (watts)")
    meter = table.get("meter", {})
    check_keys(path, meter, _METER_SCHEMA, where="energy.meter")
    check_list_of(path, "[energy.meter] command", meter.get("command", []), str)
    if meter.get("reports", "joules") not in ("joules", "watts"):
        raise HarnessInputError(f"{path}: [energy.meter] reports must be \"joules\" or \"watts\"")
    return table


def _load_emulated(path: Path, data: dict) -> EmulatedSettings:
    from harness.config.paths import cache_dir

    table = data.get("emulated", {})
    check_keys(path, table, {"rootfs": str, "python": str}, where="emulated")
    rootfs = table.get("rootfs") or str(cache_dir() / "arm64-rootfs")
    python = table.get("python", "/opt/edge-venv/bin/python")
    if not python.startswith("/"):
        raise HarnessInputError(f"{path}: [emulated] python must be an absolute path inside the rootfs")
    return EmulatedSettings(rootfs=str(Path(rootfs).expanduser()), python=python)
