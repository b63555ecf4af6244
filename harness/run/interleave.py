"""Interleaved A/B latency (``harness ab``): a baseline's and a candidate's latency rounds measured turn about in
one session, so that drift of the machine over seconds to minutes lands on both sides alike.

Two runs (e.g. ``harness run`` of the same suite in the base branch's checkout and in the pull request's) each keep
their jobs' latency requests in ``requests.jsonl``. For every job that succeeded in both, the session runs pairs
of rounds: in each pair a fresh worker per side — each side with its own python, checkout and environment —
loads and warms up, then the two take turns of a few tens of milliseconds of timed calls (``harness.launch.lockstep``)
until both have their samples; the baseline leads in even pairs, the candidate in odd ones; both workers of a pair
run on the same CPUs (``pair_cpus``). Each side's records
are written with the session's pooled latency in place of the run's own. Memory, size, fidelity and energy
stay those of the runs. ``harness gate`` sees the pairing (one session id, one round per pair) and tests the
pairs' ratios (see ``harness.analysis.compare``).

Local targets only: a job on an SSH or emulated target is left out with a warning.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from harness.errors import HarnessInputError
from harness.launch.local import LocalLauncher
from harness.launch.lockstep import DEFAULT_BLOCK_S, run_pair
from harness.rounds import pool_rounds
from harness.config.paths import PROJECT_ROOT
from harness.results.requests import read_requests
from harness.results.store import ResultsStore, read_records
from harness.types import Measurement, RunRecord

DEFAULT_PAIRS = 8
"""Rounds per side in a session: 8 pairs all one way give a two-sided Wilcoxon p of 0.008."""


@dataclass(frozen=True)
class Side:
    """One side of a session: a run folder and how to start its workers."""

    name: str
    run_dir: Path
    python: str = sys.executable
    root: Path = PROJECT_ROOT
    """The checkout whose worker measures this side."""
    env: Mapping[str, str] = field(default_factory=dict)

    def launcher(self) -> LocalLauncher:
        return LocalLauncher(self.python, self.root, self.env)


@dataclass(frozen=True)
class Session:
    """What a session wrote: the two results files, the jobs measured and those left out (with why)."""

    session_id: str
    results: Mapping[str, Path]
    jobs: tuple[str, ...]
    left_out: Mapping[str, str]
    failed: Mapping[str, str]
    """Job key → which side's worker failed, how, and in which round."""


def _ok_records(side: Side) -> dict[str, RunRecord]:
    """The side's successful records by what they measure (model, variant, format, runtime, target, batch): not by
    their job key, which holds the artifact id, and so differs whenever the model's code does (a changed model
    is what a session compares)."""
    results = side.run_dir / "results.jsonl" if side.run_dir.is_dir() else side.run_dir
    return {session_key(r): r for r in read_records(results) if r.status == "ok"}


def session_key(record: RunRecord) -> str:
    """``model/variant/format/runtime/target/bBATCH``: a job as both sides of a session name it."""
    return (f"{record.model}/{record.variant}/{record.format}/{record.runtime}/{record.target}/"
            f"b{record.batch_size}")


def run_ab(baseline: Side, candidate: Side, out: Path, pairs: int = DEFAULT_PAIRS, block_s: float = DEFAULT_BLOCK_S,
           pin: bool = True, say: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> Session:
    """Measure every job both runs completed in ``pairs`` pairs of rounds, each pair two workers in lockstep
    (turns of ``block_s`` seconds) on the same CPUs (``pair_cpus``; ``pin=False``: wherever the OS puts them);
    write ``out/baseline/results.jsonl`` and ``out/candidate/results.jsonl``."""
    if pairs < 1:
        raise HarnessInputError(f"--pairs must be at least 1, not {pairs}")
    sides = (baseline, candidate)
    records = {s.name: _ok_records(s) for s in sides}
    requests = {s.name: read_requests(s.run_dir) for s in sides}
    left_out: dict[str, str] = {}
    jobs = []
    for key in sorted(set(records["baseline"]) & set(records["candidate"])):
        entries = [requests[s.name].get(records[s.name][key].job_key) for s in sides]
        if any(e is None for e in entries):
            left_out[key] = "no latency request recorded"
        elif any(e["reach"] != "local" for e in entries):
            left_out[key] = f"target {entries[0]['target']} is not local ({entries[0]['reach']})"
        else:
            jobs.append(key)
    for key, why in left_out.items():
        say(f"warning: ab: {key} left out: {why}")
    if not jobs:
        raise HarnessInputError(f"{baseline.run_dir} and {candidate.run_dir}: no job succeeded in both on a local "
                                f"target with a recorded request: nothing to measure")
    paths = {s.name: out / s.name / "results.jsonl" for s in sides}
    for path in paths.values():
        if path.exists():
            raise HarnessInputError(f"{path}: already holds a session's results: choose another --out")
    session_id = uuid.uuid4().hex[:12]
    launchers = {s.name: s.launcher() for s in sides}
    rounds: dict[tuple[str, str], list[list[Measurement]]] = {(s.name, k): [] for s in sides for k in jobs}
    quiet: dict[tuple[str, str], list[dict[str, Any]]] = {(s.name, k): [] for s in sides for k in jobs}
    """Each round's own quiet check (its worker's context): a session is judged by how it was measured."""
    available = sorted(os.sched_getaffinity(0))
    pinned: dict[str, list[list[int] | None]] = {}
    failed: dict[str, tuple[str, str, str]] = {}
    """Job key → (the side whose worker failed, its status, what happened): the job is not measured further."""
    interrupted = False
    try:
        with tempfile.TemporaryDirectory(prefix="edge-harness-ab-") as tmp:
            for i in range(pairs):
                order = sides if i % 2 == 0 else sides[::-1]
                for key in jobs:
                    if key in failed:
                        continue
                    entries = {s.name: requests[s.name][records[s.name][key].job_key] for s in sides}
                    cpus = pair_cpus(entries["baseline"]["request"], available, i) if pin else None
                    pinned.setdefault(key, []).append(cpus)
                    results = run_pair(*[(launchers[s.name], dict(entries[s.name]["request"]) | {
                        "outputs_path": str(Path(tmp) / f"{s.name}.npz")} | ({"cpu_affinity": cpus} if cpus else {}))
                        for s in order], timeout_s=2 * max(e["timeout_s"] for e in entries.values()),
                        block_s=block_s)
                    for side, result in zip(order, results):
                        if not result.ok:
                            error = (result.error or result.status).splitlines()[0]
                            failed[key] = (side.name, result.status, f"pair {i + 1}: {error}")
                            say(f"{result.status}: ab: {key}: {side.name} {failed[key][2]}")
                            break
                        rounds[(side.name, key)].append([Measurement.from_dict(m) for m in result.measurements])
                        quiet[(side.name, key)].append(dict(result.context))
                say(f"ab: pair {i + 1}/{pairs} done")
    except KeyboardInterrupt:  # keep the whole pairs measured so far: a shorter session, still paired
        interrupted = True
        for key in jobs:
            if key not in failed:
                done = min(len(rounds[(s.name, key)]) for s in sides)
                for s in sides:
                    del rounds[(s.name, key)][done:]
                    del quiet[(s.name, key)][done:]
                del pinned.get(key, [])[done:]
    for side in sides:
        store = ResultsStore(paths[side.name])
        for key in jobs:
            if not rounds[(side.name, key)] and key not in failed:
                continue  # interrupted before its first pair
            why = failed.get(key, ("", "", ""))
            store.append(_side_record(records[side.name][key], rounds[(side.name, key)], quiet[(side.name, key)],
                                      why[1:] if why[0] == side.name else None,
                                      {"session": session_id, "side": side.name,
                                       "pairs": len(pinned.get(key, [])) if interrupted else pairs,
                                       "block_s": block_s, "pair_cpus": pinned.get(key, []),
                                       "python": side.python, "root": str(side.root), "env": dict(side.env)}))
    if interrupted:
        raise KeyboardInterrupt
    return Session(session_id, paths, tuple(jobs), left_out,
                   {key: f"{side} {status} in {what}" for key, (side, status, what) in failed.items()})


def pair_cpus(request: Mapping[str, Any], available: list[int], pair: int) -> list[int] | None:
    """The CPUs both workers of pair number ``pair`` are pinned to: as many as the job's threads, rotating over
    the available CPUs from the last one pair by pair. None (left as the request says) when the request pins
    its own CPUs or uses every core. On a shared 2-vCPU VM, 17 of 96 A/A pairs differed by more than 5% unpinned,
    4 of 352 pinned (benchmarks/gate_power.py, docs/guides/ci.md)."""
    threads = int(request.get("runtime_options", {}).get("threads", 0))
    n = len(available)
    if request.get("cpu_affinity") or threads <= 0 or threads >= n:
        return None
    return sorted(available[(n - 1 - pair * threads - k) % n] for k in range(threads))


SESSION_METRICS = frozenset({"latency", "latency_round_medians", "latency_round_p90s", "throughput", "gpu_latency"})
"""What a session measures anew. Import, load and first-inference times stay the run's: in a session the two
workers start side by side, so those would be measured under each other's load."""


QUIET_KEYS = ("contention", "throttled", "cooldown", "contention_retries")
"""The run's quiet check of its latency pass: replaced in a session's records by the session's own."""
CONTENTION_WARNING = "busy while it was timed"
"""In the worker's warning of a contended pass (``harness.worker.flag_contention``)."""


def session_quiet(contexts: list[dict[str, Any]]) -> dict[str, Any]:
    """The session's quiet check over its rounds' worker contexts: ``contention`` (contended when any round was,
    with how many; the busiest round's reading) and ``throttled`` (any round). A session has no cooldown."""
    readings = [c["contention"] for c in contexts if isinstance(c.get("contention"), dict)]
    out: dict[str, Any] = {"throttled": any(bool(c.get("throttled")) for c in contexts)}
    if readings:
        busiest = max(readings, key=lambda r: r.get("others_cores") or 0.0)
        contended = sum(1 for r in readings if r.get("contended"))
        out["contention"] = dict(busiest) | {"rounds": len(readings), "rounds_contended": contended,
                                             "contended": contended > 0}
    return out


def _side_record(record: RunRecord, side_rounds: list[list[Measurement]], side_quiet: list[dict[str, Any]],
                 failure: tuple[str, str] | None, ab: dict[str, Any]) -> RunRecord:
    """The run's record with the session's latency: its latency-pass measurements replaced by the pooled rounds,
    its quiet check by the session's (``session_quiet``). The side whose worker failed gets that status (so a
    candidate that now crashes fails the gate); the other side keeps its rounds, which are then unpaired."""
    replaced = SESSION_METRICS
    kept = tuple(m for m in record.measurements if m.metric not in replaced)
    context = {k: v for k, v in record.context.items() if k not in QUIET_KEYS} | session_quiet(side_quiet)
    session_warnings = [w for c in side_quiet for w in c.get("warnings", []) if CONTENTION_WARNING in w]
    context["warnings"] = [w for w in record.context.get("warnings", []) if CONTENTION_WARNING not in w] + \
        list(dict.fromkeys(session_warnings))
    context |= {"ab": ab}
    if failure is not None:
        status, what = failure
        return dataclasses.replace(record, status=status, error=f"A/B session {what}", measurements=kept,
                                   context=context)
    if not side_rounds:  # the other side failed in the first pair, before this one measured: no latency here
        return dataclasses.replace(record, measurements=kept, context=context | {
            "ab": ab | {"unmeasured": "the other side's worker failed before this side's first round"}})
    pooled = list(side_rounds[0])
    for more in side_rounds[1:]:
        pooled = pool_rounds(pooled, more, record.batch_size)
    fresh = tuple(m for m in pooled if m.metric in SESSION_METRICS)
    return dataclasses.replace(record, measurements=kept + fresh, context=context)
