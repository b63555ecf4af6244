"""What every launcher is: the contract the harness holds a launcher to, whatever it reaches (this machine, a board
over SSH, an emulated rootfs, a lane of a Ray lab, a plugin's device).

A launcher class is registered under the ``reach`` a target profile names (``harness.registry.LAUNCHERS``;
``register_lazy`` for one that should not be imported until a target needs it) and is made by
``for_target(target, with_models)``. A reach of a plugin reads its own target table: a profile with
``reach = "mine"`` may carry a ``[mine]`` table, which loading the profile hands to the launcher class's
``check_table(path, table)`` (if it has one) and keeps as ``TargetProfile.reach_options``."""
from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

from harness.protocol import WorkerRequest, WorkerResult


@runtime_checkable
class Launcher(Protocol):
    """Starts one child (a measurement worker, or the prepare child) per request, where the target is, and answers
    with its ``WorkerResult`` — also for a child that crashed, hung, ran out of memory, or could not be reached."""

    name: str
    """The reach it implements ("local", "ssh", "emulated", "cluster", a plugin's)."""
    on_this_machine: bool
    """Its workers run on this machine's CPUs (so two of them must not measure at once here)."""
    probe_first: bool
    """The harness checks the device once before its first job (reachable, Python packages, runtimes)."""
    timings_real: bool
    """Its latencies are the device's (False under emulation: every timing is labelled, never compared)."""

    @property
    def where(self) -> str:
        """Where its children run, in words ("this machine", "pi@10.0.0.7:22", ...)."""

    def run(self, request: WorkerRequest | Mapping[str, Any], timeout_s: float, memory_cap_bytes: int | None = None,
            module: str = "harness.worker") -> WorkerResult:
        """One request in a fresh child, within ``timeout_s`` and (where the reach can enforce it) the memory cap."""

    def close(self) -> None:
        """Release what it holds (connections, staged files); it may be used again after."""


def launcher_class(reach: str) -> Any:
    """The launcher class registered for ``reach`` (a one-line error naming the known reaches otherwise)."""
    from harness.registry import LAUNCHERS

    return LAUNCHERS.get(reach)
