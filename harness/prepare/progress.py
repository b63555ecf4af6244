"""Progress of long preparation (training, distillation, calibration, export) in a child process, shown by the
harness while it waits: the child appends JSON lines to the file named by ``EDGE_HARNESS_PROGRESS`` (the harness
sets it per model), the harness reads the last one. Standard library only; a child without the variable reports
nothing and pays nothing."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ENV = "EDGE_HARNESS_PROGRESS"
EVERY_S = 0.5
"""At most one line per this many seconds per step (and always the last one)."""

_started: dict[str, float] = {}
_written: dict[str, float] = {}
_current: list[str] = [""]


def peak_mb() -> float:
    """This process's peak resident memory so far (MiB; ``ru_maxrss``), 0 where it cannot be read."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # bytes on macOS, KiB on Linux


def report(what: str, done: int | None = None, total: int | None = None) -> None:
    """Note that the child is doing ``what`` (e.g. "training dcgan"), ``done`` of ``total`` units so far. Each line
    also carries the wall clock ``t`` (s since the epoch) and the process's ``peak_mb`` so far: the preparation's
    timeline (``harness.launch.preparing.timeline``)."""
    path = os.environ.get(ENV)
    if not path:
        return
    now = time.monotonic()
    if what != _current[0]:  # a step begins (again: a second variant's distillation has its own start)
        _current[0] = what
        _started[what] = now
        _written.pop(what, None)
    start = _started[what]
    last = done is not None and total is not None and done >= total
    if not last and now - _written.get(what, 0.0) < EVERY_S and what in _written:
        return
    _written[what] = now
    eta = None
    if done and total and done < total:
        eta = (now - start) / done * (total - done)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"what": what, "done": done, "total": total, "eta_s": eta,
                                "elapsed_s": round(now - start, 1), "t": round(time.time(), 3),
                                "peak_mb": peak_mb()}) + "\n")
    except OSError:
        pass  # progress is a courtesy: never a reason to fail


def latest(path: Path) -> str:
    """The last progress line as text: 'training dcgan 120/600, ~45 s left' ('' when there is none yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        text = str(entry.get("what", ""))
        if entry.get("total"):
            text += f" {entry.get('done', 0)}/{entry['total']}"
        if entry.get("eta_s") is not None:
            eta = float(entry["eta_s"])
            text += f", ~{eta:.0f} s left" if eta < 120 else f", ~{eta / 60:.0f} min left"
        return text
    return ""
