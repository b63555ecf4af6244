"""Launchers start a child process (the worker, or the prepare step) for one request and return its JSON
result — or say how it died.

A crashing, hanging, memory-hungry or killed child becomes a result with status ``crashed``, ``timeout``
or ``oom`` and the tail of its stderr; it never takes the suite down.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import psutil

from harness.config.paths import PROJECT_ROOT
from harness.launch import interrupts
from harness.protocol import WorkerRequest, WorkerResult, exit_result, wire

POLL_S = 0.05
"""How often the memory cap is checked (seconds): a burst can overshoot by what it allocates in this time."""
INTERRUPT_CHECK_S = 1.0
"""Waiting for a child, the harness looks at least this often (seconds) for a Ctrl-C a finalizer swallowed."""
WAIT_CALLBACK_S = 0.5
"""How often ``run``'s ``on_wait`` is called while a child runs (seconds)."""
PREPARE_MEMORY_SHARE = 0.6
"""Default memory cap of a prepare child: this share of the machine's physical memory (the rest keeps the machine,
and the harness, alive)."""


def prepare_memory_cap(prepare_memory_mb: int) -> int:
    """A prepare child's memory cap in bytes: ``[settings] prepare_memory_mb``, or by default
    ``PREPARE_MEMORY_SHARE`` of this machine's physical memory."""
    if prepare_memory_mb > 0:
        return prepare_memory_mb * 2**20
    return int(psutil.virtual_memory().total * PREPARE_MEMORY_SHARE)


def _rss(pid: int) -> int:
    """Resident set size of ``pid`` and its children (bytes); 0 once it has gone."""
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return 0


class LocalLauncher:
    """Runs ``python -m <module>`` as a fresh child process on this machine.

    ``root``: the project checkout whose code the child imports (its cwd, first on PYTHONPATH); ``env``: extra
    environment variables for the child. ``harness ab`` runs a baseline checkout's worker with its own python
    and root beside the candidate's.
    """

    name = "local"
    on_this_machine = True
    probe_first = False
    timings_real = True

    def __init__(self, python: str = sys.executable, root: Path = PROJECT_ROOT,
                 env: Mapping[str, str] | None = None) -> None:
        self.python = python
        self.root = Path(root)
        self.env = dict(env or {})

    @classmethod
    def for_target(cls, target: Any, with_models: bool) -> "LocalLauncher":
        """The launcher of a local target (this checkout's Python; the target's own pinning is in its requests)."""
        return cls()

    @property
    def where(self) -> str:
        return "this machine"

    def close(self) -> None:
        """Nothing to release: every request is its own process."""

    def argv(self, module: str) -> list[str]:
        """The command that starts the child (subclasses run it elsewhere, e.g. inside a rootfs)."""
        return [self.python, "-m", module]

    def start(self, module: str = "harness.worker", stderr: Any = subprocess.PIPE) -> subprocess.Popen:
        """Start the child with pipes for stdin and stdout, in its own session (killable as a group), dying with
        the harness."""
        env = dict(os.environ) | self.env
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root), env.get("PYTHONPATH")]))
        return subprocess.Popen(
            self.argv(module), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
            text=True, env=env, cwd=str(self.root), start_new_session=True, preexec_fn=_die_with_parent,
        )

    def run(self, request: WorkerRequest | Mapping[str, Any], timeout_s: float, memory_cap_bytes: int | None = None,
            module: str = "harness.worker", on_wait: Callable[[], None] | None = None) -> WorkerResult:
        """Run one request in a fresh child; ``on_wait`` is called about every ``WAIT_CALLBACK_S`` while it runs
        (the harness shows the child's progress with it)."""
        proc = self.start(module)
        try:
            return self._wait(proc, request, timeout_s, memory_cap_bytes, on_wait)
        except BaseException:  # Ctrl-C or any error here: never leave a worker running behind us
            _kill(proc)
            raise

    def _wait(self, proc: subprocess.Popen, request: WorkerRequest | Mapping[str, Any], timeout_s: float,
              memory_cap_bytes: int | None, on_wait: Callable[[], None] | None = None) -> WorkerResult:
        deadline = time.monotonic() + timeout_s
        payload: str | None = json.dumps(wire(request))
        peak, last_callback = 0, time.monotonic()
        while True:
            wait = max(0.0, deadline - time.monotonic())
            if memory_cap_bytes:
                wait = POLL_S
            elif on_wait is not None:
                wait = min(wait, WAIT_CALLBACK_S)
            try:
                stdout, stderr = proc.communicate(payload, timeout=min(wait, INTERRUPT_CHECK_S))
                break
            except subprocess.TimeoutExpired:
                payload = None  # sent with the first call
                interrupts.check()  # a Ctrl-C whose KeyboardInterrupt a finalizer swallowed
                if on_wait is not None and time.monotonic() - last_callback >= WAIT_CALLBACK_S:
                    last_callback = time.monotonic()
                    on_wait()
                if memory_cap_bytes:
                    peak = max(peak, _rss(proc.pid))
                    if peak > memory_cap_bytes:
                        stderr = _kill(proc)
                        return WorkerResult.failure("oom", f"worker exceeded the memory cap: resident {peak / 2**20:.0f} MiB "
                                                    f"> {memory_cap_bytes / 2**20:.0f} MiB", stderr)
                if time.monotonic() >= deadline:
                    stderr = _kill(proc)
                    return WorkerResult.failure("timeout", f"worker exceeded {timeout_s:g} s", stderr)
        return exit_result(proc.returncode, stdout, stderr)


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when the harness dies (even by kill -9)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass  # not Linux: a worker then outlives a killed harness until its own work ends


def _kill(proc: subprocess.Popen) -> str:
    """Kill the child and its process group; return what it wrote to stderr."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    _, stderr = proc.communicate()
    return stderr or ""
