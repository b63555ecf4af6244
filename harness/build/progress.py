"""Progress of long preparation (training, distillation, calibration, export) in a child process, shown by the
harness while it waits: the child appends JSON lines to the file named by ``EDGE_HARNESS_PROGRESS`` (the harness
sets it per model), the harness reads the last one. Standard library only; a child without the variable reports
nothing and pays nothing."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

ENV = "EDGE_HARNESS_PROGRESS"
EVERY_S = 0.5
"""At most one line per this many seconds per step (and always the last one)."""

_started: dict[str, float] = {}
_written: dict[str, float] = {}


def report(what: str, done: int | None = None, total: int | None = None) -> None:
    """Note that the child is doing ``what`` (e.g. "training dcgan"), ``done`` of ``total`` units so far."""
    path = os.environ.get(ENV)
    if not path:
        return
    now = time.monotonic()
    start = _started.setdefault(what, now)
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
                                "elapsed_s": round(now - start, 1)}) + "\n")
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
