"""Launchers, host side: start a child (worker or prepare) and return its result — a local process, an SSH board,
an emulated arm64 rootfs, two workers in lockstep. They speak ``harness.protocol`` and know nothing of suites."""
from __future__ import annotations

from typing import Any


def launcher_for(target: Any, with_models: bool, local: Any = None) -> Any:
    """The launcher that reaches ``target`` (a TargetProfile) from this machine: an SSH board, an emulated rootfs,
    or ``local`` (default: a fresh ``LocalLauncher``). ``with_models``: the target runs PyTorch eager, so a board's
    worker bundle carries the model code."""
    if target.reach == "ssh":
        from harness.launch.ssh import SshLauncher

        return SshLauncher(target.ssh, with_models)
    if target.reach == "emulated":
        from harness.launch.emulated import EmulatedLauncher

        return EmulatedLauncher(target.emulated, with_models)
    if local is None:
        from harness.launch.local import LocalLauncher

        local = LocalLauncher()
    return local
