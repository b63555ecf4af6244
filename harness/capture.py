"""Capture what native libraries print (file descriptors 1 and 2) during a noisy call."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


@contextlib.contextmanager
def captured_output(log: list[str]) -> Iterator[None]:
    """Redirect fd 1 and fd 2 into a temp file; append its text to ``log`` when the block ends."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            log.append(sink.read().decode("utf-8", "replace"))


def tail(text: str, lines: int = 30) -> str:
    """The last ``lines`` non-empty lines of ``text``."""
    kept = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])
