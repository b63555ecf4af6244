"""Folders of run results read as a history: every ``results.jsonl`` under the given folders is one run, ordered by
when it was measured (its first record's ``started_at``), labelled by the commit it measured."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.errors import HarnessInputError
from harness.results.store import read_records
from harness.types import RunRecord

MAX_DEPTH = 4
"""How deep under each given folder results files are looked for (a CI artifact folder of run folders)."""


@dataclass(frozen=True)
class HistoricRun:
    """One run of a history: where it is, when it started (ISO 8601, UTC), the commit it measured."""

    path: Path
    started_at: str
    commit: str
    records: tuple[RunRecord, ...]

    @property
    def label(self) -> str:
        return f"{self.started_at[:16].replace('T', ' ')} {self.commit[:8]}".strip()


def find_runs(folders: Sequence[Path]) -> list[HistoricRun]:
    """Every run under ``folders`` (a run folder, its results.jsonl, or folders holding run folders), oldest first;
    a folder without any is a one-line error, as is a results file that does not read."""
    found: dict[Path, None] = {}
    for folder in folders:
        if folder.is_file():
            found[folder.resolve()] = None
            continue
        if not folder.is_dir():
            raise HarnessInputError(f"{folder}: no such folder")
        files = [p for depth in range(MAX_DEPTH + 1) for p in folder.glob("/".join(["*"] * depth + ["results.jsonl"]))]
        if not files:
            raise HarnessInputError(f"{folder}: no run results in it (results.jsonl, up to {MAX_DEPTH} folders down)")
        found.update({p.resolve(): None for p in files})
    runs = []
    for path in found:
        records = tuple(read_records(path))
        if not records:
            continue
        commit = next((r.context.get("project_commit") or r.context.get("commit") for r in records
                       if r.context.get("project_commit") or r.context.get("commit")), "")
        runs.append(HistoricRun(path.parent, min(r.started_at for r in records), commit or "", records))
    return sorted(runs, key=lambda run: (run.started_at, str(run.path)))
