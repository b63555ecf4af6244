"""The ``[cluster]`` table of a suite or project file: run the suite across a Ray cluster (``harness.run.lab``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.tomlconfig import check_keys
from harness.errors import HarnessInputError


@dataclass(frozen=True)
class ClusterSettings:
    """How a suite uses a Ray cluster.

    ``address``: the head's ``host:port`` (``auto``: the cluster this machine is part of); ``retry``: a job whose
    node was lost mid-job is measured once more on another lane of its target; ``build``: ``cluster`` prepares models
    on the nodes that declare ``edge-build`` (here when none does), ``driver`` always here; ``join_timeout_s``: how
    long nodes may take to answer the version check and start their lanes (seconds)."""

    address: str = "auto"
    retry: bool = True
    build: str = "cluster"
    join_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.build not in ("cluster", "driver"):
            raise HarnessInputError(f"[cluster] build = {self.build!r}: expected 'cluster' or 'driver'")
        if not self.address:
            raise HarnessInputError("[cluster] address is empty: give host:port of the Ray head, or 'auto'")
        if self.join_timeout_s <= 0:
            raise HarnessInputError(f"[cluster] join_timeout_s must be > 0, not {self.join_timeout_s}")


_KEYS = {"address": str, "retry": bool, "build": str, "join_timeout_s": (float, int)}


def cluster_from_table(path: Path | str, table: Any) -> ClusterSettings:
    """ClusterSettings from a ``[cluster]`` table (errors name ``path``)."""
    if not isinstance(table, dict):
        raise HarnessInputError(f"{path}: 'cluster' must be a table ([cluster] with address = \"host:port\")")
    check_keys(Path(path), table, _KEYS, where="cluster")
    try:
        return ClusterSettings(**table)
    except HarnessInputError as exc:
        raise HarnessInputError(f"{path}: {exc}") from None
