"""The results store: an append-only JSON-lines file of RunRecords, one per line, synced as written.

Each record carries ``schema_version``. Readers ignore unknown fields; records from an older schema are
upgraded by ``upgrade_to_N`` functions; a record from a newer schema is a clear error.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.errors import HarnessInputError
from harness.types import SCHEMA_VERSION, RunRecord

# version N → function upgrading a version N-1 record dict to version N. Empty while only v1 exists.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def upgrade(record: dict[str, Any], source: str = "") -> dict[str, Any]:
    version = record.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise HarnessInputError(f"{source}: record has no valid schema_version")
    if version > SCHEMA_VERSION:
        raise HarnessInputError(
            f"{source}: results use schema_version {version}, this harness reads up to {SCHEMA_VERSION}: "
            "upgrade edge-harness"
        )
    while version < SCHEMA_VERSION:
        version += 1
        record = UPGRADES[version](record)
        record["schema_version"] = version
    return record


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
        data = (json.dumps(record.to_dict(), allow_nan=False, default=_json_default) + "\n").encode("utf-8")
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
        return {r.job_key for r in read_records(self.path)}


def read_records(path: Path) -> list[RunRecord]:
    """All records of a results file. A truncated last line (an interrupted write) is skipped."""
    if not path.is_file():
        raise HarnessInputError(f"{path}: results file not found")
    records: list[RunRecord] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                continue  # the last write was interrupted: everything before it is intact
            raise HarnessInputError(f"{path}:{number}: not a JSON record") from None
        if not isinstance(data, dict):
            raise HarnessInputError(f"{path}:{number}: a record must be a JSON object")
        try:
            records.append(RunRecord.from_dict(upgrade(data, f"{path}:{number}")))
        except (TypeError, ValueError) as exc:
            raise HarnessInputError(f"{path}:{number}: malformed record: {exc}") from None
    return records


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")
