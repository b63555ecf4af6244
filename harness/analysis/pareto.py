"""Noise-aware Pareto fronts over measured points (pure functions).

A point has objectives, each with a direction (``min`` or ``max``) and an interval ``(low, high)`` that says how
well it is known (for latency: the lowest CI bound of the median to the highest over repeated runs; for exact
figures such as size, low == high). Point A dominates B when A is nowhere worse — its interval is not entirely on
the bad side of B's — and somewhere better — its interval is entirely on the good side of B's. Two points whose
latencies overlap are tied on latency, so run-to-run noise cannot push a point off the front.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

DIRECTIONS = ("min", "max")


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"objective {self.name!r}: direction must be min or max, not {self.direction!r}")


@dataclass(frozen=True)
class Point:
    """One candidate: ``values[name] = (low, high)`` for every objective."""

    key: str
    values: Mapping[str, tuple[float, float]] = field(default_factory=dict)


def _better(a: tuple[float, float], b: tuple[float, float], direction: str) -> bool:
    """a's interval lies entirely on the good side of b's."""
    return a[1] < b[0] if direction == "min" else a[0] > b[1]


def dominates(a: Point, b: Point, objectives: Sequence[Objective]) -> bool:
    """A is nowhere worse than B and somewhere better (interval-wise)."""
    strictly = False
    for o in objectives:
        if _better(b.values[o.name], a.values[o.name], o.direction):
            return False
        strictly = strictly or _better(a.values[o.name], b.values[o.name], o.direction)
    return strictly


def pareto_front(points: Sequence[Point], objectives: Sequence[Objective]) -> list[Point]:
    """The points no other point dominates, in input order."""
    return [p for p in points if not any(dominates(q, p, objectives) for q in points if q is not p)]


def best_under(points: Sequence[Point], limits: Mapping[str, float], objectives: Sequence[Objective],
               rank_by: str) -> Point | None:
    """Among points within every limit (a ``min`` objective's high end ≤ its limit, a ``max`` one's low end ≥ it),
    the best by ``rank_by`` (its interval midpoint); None when no point fits."""
    direction = {o.name: o.direction for o in objectives}

    def fits(p: Point) -> bool:
        for name, limit in limits.items():
            low, high = p.values[name]
            if (direction[name] == "min" and high > limit) or (direction[name] == "max" and low < limit):
                return False
        return True

    candidates = [p for p in points if fits(p)]
    if not candidates:
        return None
    sign = 1.0 if direction[rank_by] == "min" else -1.0
    return min(candidates, key=lambda p: sign * sum(p.values[rank_by]) / 2.0)
