"""A lab's lanes: one Ray actor per device unit on the node that reaches it, and the launcher whose requests run in
that actor (``LaneLauncher``, following ``harness.launch.base.Launcher``)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.protocol import WorkerResult, wire
from harness.run.lab.nodes import first_line
from harness.run.lab.transport import FileRefs
from harness.run.runner import BoardState
from harness.types import TargetProfile

ANSWER_SLACK_S = 120.0
"""A lane that has not answered 2 × ``timeout_s`` + this many seconds after a request is taken for lost: a pass may
wait for another local target's pass on the same CPUs (up to ``timeout_s``) and for its files to arrive."""


class LaneLauncher:
    """A launcher whose requests run in a lane's actor on its node; ``lost`` says why the node is gone ('' while
    it answers), after which every request is ``unreachable`` at once. ``overhead_s``: round trips minus the time
    the node spent (scheduling, transfer, serialisation)."""

    name = "cluster"
    on_this_machine = False  # the lane's node measures (the lab's CPU locks hold a node's own CPUs there)
    probe_first = False  # the target's own reach says whether its device is checked: ``launcher_class``
    timings_real = True

    def __init__(self, ray: Any, actor: Any, where: str, files: FileRefs) -> None:
        self.ray, self.actor, self.where, self.files = ray, actor, where, files
        self.lost = ""
        self.overhead_s = 0.0

    def run(self, request: Any, timeout_s: float, memory_cap_bytes: int | None = None,
            module: str = "harness.worker", on_wait: Any = None) -> WorkerResult:
        if self.lost:
            return WorkerResult.failure("unreachable", self.lost)
        data = wire(request)
        t0 = time.monotonic()
        try:
            answer = self.ray.get(self.actor.run.remote(data, timeout_s, memory_cap_bytes, module,
                                                        self.files.for_request(data)),
                                  timeout=2 * timeout_s + ANSWER_SLACK_S)
        except self.ray.exceptions.GetTimeoutError:
            self.lost = f"{self.where} did not answer within {2 * timeout_s + ANSWER_SLACK_S:g} s"
            self.ray.kill(self.actor)
            return WorkerResult.failure("unreachable", self.lost)
        except self.ray.exceptions.RayTaskError as exc:  # the lane raised (e.g. a full disk while staging)
            return WorkerResult.failure("failed", f"on {self.where}: {first_line(exc.cause if exc.cause else exc)}")
        except self.ray.exceptions.RayError as exc:
            self.lost = f"{self.where} was lost mid-job ({type(exc).__name__})"
            return WorkerResult.failure("unreachable", self.lost)
        self.overhead_s += max(0.0, time.monotonic() - t0 - answer["node_s"])
        for key, content in answer["files"].items():
            Path(data[key]).write_bytes(content)
        return answer["result"].with_context(cluster_node=self.where)

    def close(self) -> None:
        """Nothing here: the lab ends its lanes' actors (``Lane.close`` closes the launcher on the node)."""


@dataclass
class LaneState:
    """One lane: its target (with the node's measuring CPUs applied), actor, launcher, who it is."""

    name: str
    target: TargetProfile
    actor: Any
    launcher: LaneLauncher
    identity: dict[str, Any]
    board: BoardState | None = None
    alive: bool = True
    jobs: int = 0

    def describe(self) -> dict[str, Any]:
        return {"lane": self.name, "target": self.target.name, "node": self.identity.get("hostname", ""),
                "node_ip": self.identity.get("node_ip", ""), "node_id": self.identity.get("node_id", "")[:12],
                "board": self.identity.get("board", ""), "cpu_affinity": list(self.target.cpu_affinity),
                "threads": self.target.threads}
