"""A per-op profile of one artifact on one runtime, in one form whatever the profiler: each op (a node of the graph,
or a top-level PyTorch op) with its type, family, calls, total and mean time and share of the profiled inference,
and the execution provider or delegate that ran it. Profilers register per runtime in ``OP_PROFILERS``; a profiler
is ``profile(runtime, artifact, inputs, runs) -> OpProfile``: it loads the artifact into the (fresh) adapter with
profiling on, runs ``runs`` profiled inferences after one warm-up, and returns only the profiled runs."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from harness.profiling.families import op_family
from harness.registry import OP_PROFILERS  # noqa: F401  (profilers register here)


@dataclass(frozen=True)
class OpTime:
    """One op over the profiled runs. Times in ms; ``share`` of the summed op time of one run (0–1)."""

    name: str
    type: str
    family: str
    provider: str
    calls: int
    total_ms: float
    mean_ms: float
    share: float


@dataclass(frozen=True)
class OpProfile:
    """``ops`` heaviest first; ``run_ms``: the median profiled inference (the profiler's own clock, ms), set against
    the timing pass's median to state the profiler's overhead; ``method``: what measured it."""

    runtime: str
    method: str
    runs: int
    run_ms: float
    ops: tuple[OpTime, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OpProfile":
        values = dict(data)
        values["ops"] = tuple(OpTime(**o) for o in values.get("ops", ()))
        values["notes"] = tuple(values.get("notes", ()))
        return cls(**values)

    def families(self) -> dict[str, float]:
        """ms per run in each op family, heaviest first."""
        out: dict[str, float] = {}
        for op in self.ops:
            out[op.family] = out.get(op.family, 0.0) + op.total_ms / max(self.runs, 1)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def placement(self) -> dict[str, dict[str, float]]:
        """Per provider / delegate: ``ops`` (distinct ops) and ``share`` of op time (0–1)."""
        total = sum(op.total_ms for op in self.ops) or 1.0
        out: dict[str, dict[str, float]] = {}
        for op in self.ops:
            entry = out.setdefault(op.provider, {"ops": 0, "share": 0.0})
            entry["ops"] += 1
            entry["share"] += op.total_ms / total
        return out


def aggregate(events: Iterable[tuple[str, str, str, float]], runs: int,
              family: Callable[[str], str | None] | None = None) -> tuple[OpTime, ...]:
    """Per-op rows from (name, op type, provider, ms) events over ``runs`` runs, heaviest first. ``family``: a
    profiler's own family for an op type it knows better than the shared map (None = use the map)."""
    by: dict[tuple[str, str, str], list[float]] = {}
    for name, op_type, provider, ms in events:
        by.setdefault((name, op_type, provider), []).append(ms)
    total = sum(sum(v) for v in by.values()) or 1.0

    def family_of(op_type: str) -> str:
        return (family(op_type) if family else None) or op_family(op_type)

    rows = [OpTime(name, op_type, family_of(op_type), provider, len(times), sum(times), sum(times) / len(times),
                   sum(times) / total)
            for (name, op_type, provider), times in by.items()]
    return tuple(sorted(rows, key=lambda r: -r.total_ms))
