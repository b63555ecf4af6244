"""Cold and warm start, inside one fresh worker process: how long from the process's creation to its first result,
and where that time went (the interpreter and the harness's own imports, the runtime library's import, the load,
the first inference).

Cold: the runtime's start-up cache folder is emptied and the artifact's file is dropped from the page cache
(``posix_fadvise(DONTNEED)``, then counted back with ``mincore``: what is still resident is said, never assumed).
Warm: the next process, with that cache folder as the cold one left it and the file just read. The runtime's own
libraries stay in the page cache either way (other processes map them): the figure is a first run of *this model*,
not of a freshly booted device. Times in ms; the process's creation time has the kernel's clock-tick resolution
(10 ms on Linux)."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

CACHE_ROOT = "edge-harness-start"
"""Under the worker machine's temp folder: one start-up cache folder per job and pair of processes."""


def cache_folder(cache_id: str) -> Path:
    """The start-up cache folder named ``cache_id`` on this machine (the host names it; the worker makes it)."""
    if not cache_id or "/" in cache_id or cache_id.startswith("."):
        raise ValueError(f"bad start cache id {cache_id!r}")
    return Path(tempfile.gettempdir()) / CACHE_ROOT / cache_id


def process_age_ms(now: float | None = None) -> float:
    """Milliseconds from this process's creation (psutil: the kernel's start time, in clock ticks) to ``now`` (a
    ``time.time()``; default: the call, taken before psutil is imported)."""
    now = time.time() if now is None else now
    import psutil

    return (now - psutil.Process().create_time()) * 1e3


def resident_pages(path: str) -> tuple[int, int] | None:
    """(pages of ``path`` in the page cache, pages in all) by ``mincore`` on a read-only mapping; None where that
    cannot be asked (not Linux, an empty file, no libc)."""
    import ctypes
    import ctypes.util
    import mmap

    size = os.path.getsize(path)
    if size == 0 or not hasattr(os, "posix_fadvise"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            vector = (ctypes.c_ubyte * pages)()
            if libc.mincore(address, size, vector) != 0:
                return None
            return sum(v & 1 for v in vector), pages
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)


def drop_from_page_cache(path: str) -> str:
    """Ask the kernel to drop ``path``'s clean pages (no root needed), then say what is still resident."""
    if not hasattr(os, "posix_fadvise"):
        return "not dropped: this OS has no posix_fadvise (the file may be read from the page cache)"
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            os.fsync(fd)  # dirty pages cannot be dropped: write them out first
        except OSError:
            pass
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    counted = resident_pages(path)
    if counted is None:
        return "dropped (posix_fadvise DONTNEED; residency not checked)"
    resident, total = counted
    if resident == 0:
        return f"dropped: 0 of {total} pages resident"
    return f"not fully dropped: {resident} of {total} pages still resident (mapped or locked by another process?)"


def page_cache_state(path: str) -> str:
    counted = resident_pages(path)
    return "not checked" if counted is None else f"{counted[0]} of {counted[1]} pages resident"


def prepare_cache(cache_id: str, cold: bool) -> Path:
    """The runtime's start-up cache folder: emptied for a cold start, kept as it is for a warm one."""
    folder = cache_folder(cache_id)
    if cold and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def remove_cache(cache_id: str) -> None:
    shutil.rmtree(cache_folder(cache_id), ignore_errors=True)


def time_first_result(runtime: Any, artifact: Any, inputs: Any) -> dict[str, float]:
    """Load, then one inference: their times (ms)."""
    t0 = time.perf_counter()
    runtime.load(artifact)
    t1 = time.perf_counter()
    runtime.infer(inputs)
    runtime.sync()
    t2 = time.perf_counter()
    return {"load_ms": (t1 - t0) * 1e3, "first_inference_ms": (t2 - t1) * 1e3}
