"""A run folder's ``requests.jsonl``: the worker request that measured each job's latency (without its per-run
output files), kept so that ``harness ab`` can replay a job in fresh workers beside another checkout's."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from harness.errors import HarnessInputError

REQUESTS_FILE = "requests.jsonl"
"""In a run folder: one line per job whose latency was measured: the worker request that measured it."""


def append_request(out_dir: Path, job_key: str, target: str, reach: str, request: Mapping[str, Any],
                   timeout_s: float, memory_cap_bytes: int | None) -> None:
    """Keep the latency request of a job (without its per-run output files) so a session can replay it."""
    replayable = {k: v for k, v in request.items()
                  if k not in ("outputs_path", "samples_path", "samples_outputs_path")}
    entry = {"job_key": job_key, "target": target, "reach": reach, "timeout_s": timeout_s,
             "memory_cap_bytes": memory_cap_bytes, "request": replayable}
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / REQUESTS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def read_requests(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Job key → the latest request entry of that job in ``run_dir``."""
    path = run_dir / REQUESTS_FILE
    if not path.is_file():
        raise HarnessInputError(f"{run_dir}: no {REQUESTS_FILE}: not a run folder of `harness run`, or one made "
                                f"before `harness ab` existed (run the suite again)")
    out: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            out[entry["job_key"]] = entry
        except (json.JSONDecodeError, KeyError, TypeError):
            raise HarnessInputError(f"{path}:{number}: not a request entry") from None
    return out
