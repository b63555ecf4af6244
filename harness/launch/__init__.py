"""Launchers, host side: start a child (worker or prepare) and return its result — a local process, an SSH board,
an emulated arm64 rootfs, two workers in lockstep. They speak ``harness.protocol`` and know nothing of suites; each
follows ``harness.launch.base.Launcher`` and is registered by the reach it implements (``LAUNCHERS``)."""
from __future__ import annotations

from typing import Any


def launcher_for(target: Any, with_models: bool, local: Any = None) -> Any:
    """The launcher that reaches ``target`` (a TargetProfile) from this machine: the class registered for its reach,
    made by ``for_target``; ``local`` (default: a fresh ``LocalLauncher``) for a local target. ``with_models``: the
    target runs PyTorch eager, so a board's worker bundle carries the model code."""
    from harness.launch.base import launcher_class

    if target.reach == "local" and local is not None:
        return local
    return launcher_class(target.reach).for_target(target, with_models)
