"""Lockstep latency: two workers (a baseline's and a candidate's) take turns measuring in short blocks, so that
both see the machine as it is within a fraction of a second of each other.

Worker side: a latency request with ``lockstep = {"block_s": …}`` makes the timing loop pause after its load and
first inference (the warm-up then runs in a turn of its own, never beside the other side's import and load), before
its first steady-state sample and after every ``block_s`` of timed calls: the worker writes ``{"lockstep": "ready"}`` on
its result channel and waits for a ``go`` line on stdin. Paused time never counts toward the loop's durations.
The final result line follows as usual.

Harness side: ``LockstepWorker`` starts one such worker and hands it turns; ``run_pair`` alternates two of them
until both have finished. A worker that dies, hangs or answers garbage ends with a failure result, as with the
plain launcher.
"""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import tempfile
import time
from typing import Any

from harness.launch import interrupts
from harness.launch.local import LocalLauncher, _kill
from harness.protocol import READY, WorkerResult, exit_result, wire

DEFAULT_BLOCK_S = 0.05
"""One turn of timed calls (seconds): short against the seconds over which a shared machine's speed wanders."""


class LockstepWorker:
    """One worker process run in turns. ``turn()`` lets it measure one block and returns once it is paused again
    (True) or has finished (False); ``result`` then holds its final result."""

    def __init__(self, launcher: LocalLauncher, request: dict[str, Any], deadline: float) -> None:
        self.deadline = deadline
        self.result: WorkerResult | None = None
        self.pauses = 0
        self.root = launcher.root
        self._stderr = tempfile.TemporaryFile(mode="w+")  # a file: a chatty worker cannot fill a pipe and stall
        self.proc = launcher.start(stderr=self._stderr)
        self._buffer = ""
        self._send(json.dumps(wire(request)))

    def wait_ready(self) -> bool:
        """Until the worker is paused (True) or finished (False)."""
        while True:
            line = self._read_line()
            if line is None:
                return False
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                message = None
            if message == READY:
                self.pauses += 1
                return True
            self._finish(line)
            return False

    def turn(self) -> bool:
        if self.result is not None:
            return False
        self._send("go")  # if it has died, reading says how
        return self.wait_ready()

    def close(self) -> None:
        if self.proc.poll() is None:
            _kill(self.proc)
        self._stderr.close()

    def _send(self, line: str) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except OSError:  # a broken pipe: the worker is gone, and reading its stdout says how
            pass

    def _read_line(self) -> str | None:
        """The next line on the worker's stdout; None once a failure result is set (death, timeout)."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while "\n" not in self._buffer:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    _kill(self.proc)
                    self.result = WorkerResult.failure("timeout", "worker exceeded the session's time limit",
                                                      self._stderr_text())
                    return None
                if not sel.select(min(left, 1.0)):
                    interrupts.check()  # a Ctrl-C whose KeyboardInterrupt a finalizer swallowed
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 65536).decode("utf-8", "replace")
                if not chunk:  # EOF: the worker is gone
                    return self._ended()
                self._buffer += chunk
        line, self._buffer = self._buffer.split("\n", 1)
        return line

    def _ended(self) -> None:
        """EOF on stdout: a last unterminated line is the result; otherwise say how the worker died."""
        self._finish(self._buffer)

    def _finish(self, stdout: str) -> None:
        """The worker's last words (its result line, or nothing): wait for it to exit and judge."""
        try:
            code = self.proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # wrote something, then kept running
            _kill(self.proc)
            code = self.proc.wait()
        self.result = exit_result(code, stdout, self._stderr_text())

    def _stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()


def _checked(worker: LockstepWorker) -> WorkerResult:
    """A worker's result; an 'ok' from one that never paused measured alone, so it is no lockstep result."""
    result = worker.result or WorkerResult.failure("crashed", "worker ended without a result")
    if result.ok and worker.pauses == 0:
        return WorkerResult.failure("failed", f"the worker of {worker.root} ignored the lockstep request and measured "
                                        f"alone (an Edge Harness from before `harness ab`?)")
    return result


def run_pair(first: tuple[LocalLauncher, dict[str, Any]], second: tuple[LocalLauncher, dict[str, Any]],
             timeout_s: float, block_s: float = DEFAULT_BLOCK_S) -> tuple[WorkerResult, WorkerResult]:
    """Two latency requests measured in lockstep: both workers load, then warm up in turns, then take turns of
    ``block_s`` (``first`` always starts a round of turns) until both have finished. Returns both final results."""
    deadline = time.monotonic() + timeout_s
    workers = [LockstepWorker(launcher, request | {"lockstep": {"block_s": block_s}}, deadline)
               for launcher, request in (first, second)]
    try:
        active = [w.wait_ready() for w in workers]
        while any(active):
            for i, w in enumerate(workers):
                if active[i]:
                    active[i] = w.turn()
        return tuple(_checked(w) for w in workers)
    finally:
        for w in workers:
            w.close()

