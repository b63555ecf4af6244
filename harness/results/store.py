"""The results store: an append-only JSON-lines file of RunRecords, one per line, synced as written.

Each record carries ``schema_version``. Readers ignore unknown fields; records from an older schema are
upgraded by ``harness.results.records.UPGRADES``; a record from a newer schema is a clear error. Reading validates every record and
writing never fails on a value (``harness.results.records``).
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Iterator

from harness.results.records import json_line, parse_records
from harness.types import RunRecord


_DEFERRED = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is done, then deliver them.

    In the main thread, Python-level handlers note the signal (Python runs handlers in the main thread whichever
    thread the kernel picked, so this holds in a process with native thread pools, e.g. PyTorch's); elsewhere the
    calling thread blocks the signals (which only helps where no other thread can take them)."""
    if threading.current_thread() is not threading.main_thread():
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(_DEFERRED))
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        return
    pending: list[int] = []
    handlers = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in _DEFERRED}
    try:
        yield
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)  # now handled as it would have been: KeyboardInterrupt for Ctrl-C


class ResultsStore:
    """Append-only JSONL of RunRecords at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def repair(self) -> int:
        """Cut a torn last line (a write interrupted by a crash) so appends start on a clean line.

        Returns the number of bytes removed. The job of a torn record has no complete record, so a resumed
        run measures it again.
        """
        if not self.path.is_file():
            return 0
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if not data or data.endswith(b"\n"):
                return 0
            keep = data.rfind(b"\n") + 1
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
            return len(data) - keep

    def append(self, record: RunRecord) -> None:
        """Append one record and fsync it. Ctrl-C and SIGTERM wait until the record is whole on disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json_line(record)
        with _signals_deferred():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)

    def __iter__(self) -> Iterator[RunRecord]:
        return iter(read_records(self.path))

    def completed_keys(self) -> set[str]:
        """Job keys already in the store (any final status): what ``--resume`` skips."""
        if not self.path.exists():
            return set()
        return {r.job_key for r in parse_records(self.path, allow_empty=True)}


def read_records(path: Path) -> list[RunRecord]:
    """All records of a results file, validated (``harness.results.records.parse_records``)."""
    return parse_records(path)
