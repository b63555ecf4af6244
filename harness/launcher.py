"""Launchers start a worker process for one job and return its JSON result — or say how it died.

A crashing, hanging or killed worker becomes a result with status ``crashed`` / ``timeout`` and the
tail of its stderr; it never takes the suite down.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

from harness.capture import tail
from harness.paths import PROJECT_ROOT


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class LocalLauncher:
    """Runs ``python -m harness.worker`` as a fresh child process on this machine."""

    name = "local"

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    def run(self, job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        try:
            proc = subprocess.run(
                [self.python, "-m", "harness.worker"],
                input=json.dumps(job),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=env,
                cwd=str(PROJECT_ROOT),
            )
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            return _failure("timeout", f"worker exceeded {timeout_s:g} s", stderr)
        if proc.returncode < 0:
            return _failure("crashed", f"worker killed by {_signal_name(proc.returncode)}", proc.stderr)
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        if not lines:
            return _failure("crashed", f"worker exited with code {proc.returncode} and no result", proc.stderr)
        try:
            result = json.loads(lines[-1])
        except json.JSONDecodeError:
            return _failure("crashed", "worker wrote a result that is not JSON", proc.stderr)
        if result.get("status") != "ok" and proc.stderr:
            result["stderr_tail"] = tail(proc.stderr)
        return result


def _failure(status: str, error: str, stderr: str) -> dict[str, Any]:
    return {"status": status, "error": error, "measurements": [], "context": {}, "stderr_tail": tail(stderr)}
