"""Context of a run: the machine, CPU, python, OS, runtime versions, git commit."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """x86 'model name'; on ARM boards the board 'Model' (e.g. Raspberry Pi 4 Model B), else 'Hardware'."""
    fields: dict[str, str] = {}
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    for key in ("model name", "Model", "Hardware"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine()


def machine_context() -> dict[str, Any]:
    """What the worker sees of its machine (no user names, no credentials)."""
    try:
        cores_available = len(os.sched_getaffinity(0))
    except AttributeError:
        cores_available = os.cpu_count() or 0
    return {
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "cores_available": cores_available,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def git_commit(repo: Path) -> str:
    """Commit of the harness checkout ('+dirty' when it has changes), or '' outside git."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit}+dirty" if commit and dirty else commit
