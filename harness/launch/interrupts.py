"""Ctrl-C that is never lost: a SIGINT is remembered as well as raised.

Python raises KeyboardInterrupt wherever the main thread happens to be when its handler runs. When that is inside
a finalizer (an object's ``__del__``, a weakref callback: a progress bar, a temporary file, a subprocess object
being collected), Python prints "Exception ignored in …" and the interrupt is gone: the user pressed Ctrl-C and the
suite ran on. While ``watching()`` is active, the handler also sets a flag that ``check()`` turns into a
KeyboardInterrupt at the harness's next safe point (between jobs, while waiting for a child).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

_requested = False


def requested() -> bool:
    """Whether Ctrl-C was pressed while ``watching()`` was active (and not yet acted upon by ``check()``)."""
    return _requested


def request() -> None:
    """Remember a Ctrl-C caught elsewhere (e.g. in a helper thread) for the main thread's next ``check()``."""
    global _requested
    _requested = True


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed (even if its own KeyboardInterrupt was swallowed)."""
    global _requested
    if _requested:
        _requested = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def watching() -> Iterator[None]:
    """Remember Ctrl-C for ``check()`` during the block, then restore the previous handler (which still runs: the
    default one raises KeyboardInterrupt, a notebook's interrupts its cell). Outside the main thread, or where
    SIGINT is ignored (a background job started with nohup), nothing changes."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN or previous is None:  # ignored, or a handler installed outside Python: leave it
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        global _requested
        _requested = True
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    _requested = False
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested = False
