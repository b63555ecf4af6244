"""The lab view of a run measured across a Ray cluster (``harness.run.lab``): one lane per device with its jobs
on a shared time axis, the build nodes' prepare steps above them, and how busy each lane was (pure: records and
``lab.jsonl`` lines in, numbers and 0..1 positions out)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from harness.types import RunRecord


def read_lab(run_dir: Path) -> list[dict[str, Any]]:
    """The sessions of ``lab.jsonl`` in a run folder (none for a run on one machine)."""
    path = run_dir / "lab.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def lab_lanes(records: Sequence[RunRecord], sessions: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Lanes with their job bars, busy and idle seconds; None when no record was measured on a cluster.

    ``makespan_s``: first prepare or job start to last job end (seconds) of the last session (a resumed run has
    several; ``earlier_sessions_jobs`` counts the records left out); a lane's ``busy_share`` is its jobs' time over
    the makespan, ``idle_s`` the rest."""
    spans = [(r, r.context["cluster"]) for r in records if isinstance(r.context.get("cluster"), dict)]
    if not spans:
        return None
    earlier = 0
    if sessions:  # a resumed run: the last session's timeline (the gap between sessions is no one's idle time)
        last = sessions[-1]
        kept = [(r, c) for r, c in spans if last["start_unix"] <= c["start_unix"] <= last["end_unix"]]
        earlier, spans = len(spans) - len(kept), kept or spans
        sessions = [last]
    prepares = [p for s in sessions for p in s.get("prepare", ())]
    start = min([c["start_unix"] for _, c in spans] + [p["start_unix"] for p in prepares])
    end = max([c["end_unix"] for _, c in spans] + [p["end_unix"] for p in prepares])
    makespan = max(end - start, 1e-9)

    def bar(t0: float, t1: float) -> tuple[float, float]:
        return (t0 - start) / makespan, max((t1 - t0) / makespan, 0.002)

    described = {lane["lane"]: lane for s in sessions for lane in s.get("lanes", ())}
    lanes: dict[str, dict[str, Any]] = {}
    for r, c in sorted(spans, key=lambda item: item[1]["start_unix"]):
        lane = lanes.setdefault(c["lane"], {
            "lane": c["lane"], "target": r.target, "node": c.get("node", ""), "node_ip": c.get("node_ip", ""),
            "board": c.get("board", ""), "alive": described.get(c["lane"], {}).get("alive", True),
            "jobs": [], "busy_s": 0.0, "overhead_s": 0.0})
        x, width = bar(c["start_unix"], c["end_unix"])
        lane["jobs"].append({"x": x, "w": width, "status": r.status, "seconds": c["end_unix"] - c["start_unix"],
                             "label": f"{r.model} {r.variant} {r.format}/{r.runtime} b{r.batch_size}"
                                      + (f" (attempt {c['attempt']})" if c.get("attempt", 1) > 1 else "")})
        lane["busy_s"] += c["end_unix"] - c["start_unix"]
        lane["overhead_s"] += c.get("overhead_s", 0.0)
    for lane in lanes.values():
        lane["busy_share"] = lane["busy_s"] / makespan
        lane["idle_s"] = max(0.0, makespan - lane["busy_s"])
    builds: dict[str, dict[str, Any]] = {}
    for p in sorted(prepares, key=lambda p: p["start_unix"]):
        row = builds.setdefault(p["node"] or "?", {"node": p["node"] or "?", "bars": [], "busy_s": 0.0})
        x, width = bar(p["start_unix"], p["end_unix"])
        row["bars"].append({"x": x, "w": width, "status": p["status"], "label": f"prepare {p['model']}",
                            "seconds": p["end_unix"] - p["start_unix"]})
        row["busy_s"] += p["end_unix"] - p["start_unix"]
    jobs = sum(len(lane["jobs"]) for lane in lanes.values())
    return {"makespan_s": makespan, "lanes": sorted(lanes.values(), key=lambda lane: lane["lane"]),
            "builds": list(builds.values()), "jobs": jobs, "earlier_sessions_jobs": earlier,
            "overhead_ms_per_job": 1000 * sum(lane["overhead_s"] for lane in lanes.values()) / max(jobs, 1),
            "prepare_s": sum(row["busy_s"] for row in builds.values()),
            "measure_s": sum(lane["busy_s"] for lane in lanes.values())}
