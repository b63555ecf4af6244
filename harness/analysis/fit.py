"""Will it fit: a job's memory and storage against what its target lets one application take (``[fit]``).

A job measured on its target is judged with its measured peak RSS (the worker process: its runtime's imports
included) and its artifact's file size. A job that could not run there (the board was unreachable, the runtime
missing) gets an estimate, labelled as one: the runtime's measured base footprint (its worker's RSS after imports,
on the same target where another job of it ran there, else on the targets it ran on in the same run), plus what this artifact added over that base where it was measured on
another target, or else its weights (the file's size) and its largest activation (the most bytes one op touched in
the FLOPs/bytes pass). Pure functions over records; sizes in MiB (shown as MB, like peak RSS)."""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

from harness.types import FitBudget, RunRecord

MIB = 2**20
VERDICTS = ("fits", "tight", "unknown", "does not fit")
"""Per resource, and for the job (its worst): headroom ≥ the margin; in [0, margin); a declared budget with no figure
to hold against it (a job that never ran, whose runtime ran nowhere in its run); over the budget."""
NOT_RUN = ("unreachable", "unsupported")
"""Statuses of a job that never ran on its target: estimated when the run measured enough elsewhere."""


@dataclass(frozen=True)
class FitVerdict:
    """``verdict`` (one of ``VERDICTS``) and, per resource, the figure used, the budget and the headroom (the
    budget's share left free: 0.25 = a quarter free, negative = over). ``basis``: "measured", "measured under
    emulation" or "estimate: …" (how the memory figure was made)."""

    verdict: str
    memory_mb: float | None
    memory_budget_mb: float
    memory_headroom: float | None
    storage_mb: float | None
    storage_budget_mb: float
    storage_headroom: float | None
    margin: float
    basis: str
    source: str = ""

    @property
    def estimated(self) -> bool:
        return self.basis.startswith("estimate")

    def words(self) -> str:
        """One line: 'fits: memory 812 MB of 3072 (74% free), storage 4.2 MB of 1024 (100% free)'."""
        parts = []
        for what, used, budget, room in (("memory", self.memory_mb, self.memory_budget_mb, self.memory_headroom),
                                         ("storage", self.storage_mb, self.storage_budget_mb, self.storage_headroom)):
            if room is None:
                parts += [f"{what} not known (budget {budget:g} MB)"] if budget else []
                continue
            free = f"{room:.0%} free" if room >= 0 else f"{-room:.0%} over"
            parts.append(f"{what} {used:.4g} MB of {budget:g} ({free})")
        estimate = " (estimate)" if self.estimated else ""
        return f"{self.verdict}{estimate}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FitVerdict":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _headroom(used: float | None, budget: float) -> float | None:
    return None if used is None or not budget else 1.0 - used / budget


def _verdict(headroom: float | None, margin: float) -> str | None:
    if headroom is None:
        return None
    return "fits" if headroom >= margin else "tight" if headroom >= 0 else "does not fit"


def judge_fit(peak_rss_bytes: float | None, artifact_bytes: float | None, budget: FitBudget,
              basis: str = "measured") -> FitVerdict | None:
    """The job's verdict against ``budget``: its worst resource's; a declared resource with no figure reads
    "unknown" (a job is never said to fit on the half that is known). None when the budget declares nothing or no
    declared resource has a figure."""
    if not budget.declared:
        return None
    memory = peak_rss_bytes / MIB if peak_rss_bytes is not None and budget.memory_mb else None
    storage = artifact_bytes / MIB if artifact_bytes is not None and budget.storage_mb else None
    rooms = (_headroom(memory, budget.memory_mb), _headroom(storage, budget.storage_mb))
    verdicts = [_verdict(room, budget.margin) or "unknown"
                for room, declared in zip(rooms, (budget.memory_mb, budget.storage_mb)) if declared]
    if all(v == "unknown" for v in verdicts):
        return None
    worst = max(verdicts, key=VERDICTS.index)
    return FitVerdict(worst, memory, budget.memory_mb, rooms[0], storage, budget.storage_mb, rooms[1],
                      budget.margin, basis, budget.source)


def budget_of(record: RunRecord) -> FitBudget | None:
    """The ``[fit]`` budget the record's target declared when the job ran (``context["fit_budget"]``)."""
    raw = record.context.get("fit_budget")
    return FitBudget(**raw) if raw else None


def fit_of(record: RunRecord, records: Iterable[RunRecord] = ()) -> FitVerdict | None:
    """The record's verdict: the one measured with it (``context["fit"]``), or, for a job that never ran on its
    target, an estimate from the other ``records`` of its run (None when there is too little to estimate from)."""
    if record.context.get("fit"):
        return FitVerdict.from_dict(record.context["fit"])
    budget = budget_of(record)
    if budget is None or record.status not in NOT_RUN:
        return None
    return estimate_fit(record, list(records), budget)


def estimate_fit(record: RunRecord, records: list[RunRecord], budget: FitBudget) -> FitVerdict | None:
    """An estimate for a job that did not run on its target (see the module docstring); None without a measured
    base footprint of its runtime."""
    ran = [r for r in records if r.status == "ok" and r.runtime == record.runtime
           and r.measurement("rss_baseline") is not None]
    anywhere = ran
    here = [r for r in ran if r.target == record.target]  # the target itself, before it dropped: the best guess
    ran = here or ran
    if not ran:
        return judge_fit(None, record.artifact_bytes, budget, "estimate: file size only (its runtime ran nowhere "
                                                                 "in this run)") if budget.storage_mb else None
    base = statistics.median(r.measurement("rss_baseline").value for r in ran)
    where = sorted({r.target for r in ran})
    same = [r for r in anywhere if r.artifact_id == record.artifact_id and r.measurement("peak_rss_over_baseline")]
    if same:
        model = statistics.median(r.measurement("peak_rss_over_baseline").value for r in same)
        how = f"this artifact's measured peak over its runtime's base on {', '.join(sorted({r.target for r in same}))}"
    else:
        weights = float(record.artifact_bytes or 0)
        largest = float((record.context.get("work") or {}).get("largest_op_bytes") or 0)
        model = weights + largest
        how = "its weights (file size)" + (" and its largest activation (FLOPs/bytes pass)" if largest else "")
    basis = f"estimate: {record.runtime}'s base footprint measured on {', '.join(where)} + {how}"
    return judge_fit(base + model, record.artifact_bytes, budget, basis)

