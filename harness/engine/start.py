"""Cold and warm start, inside one fresh worker process: how long from the process's creation to its first result,
and where that time went (the interpreter and the harness's own imports, the runtime library's import, the load,
the first inference).

Cold: the runtime's start-up cache folder is emptied and the artifact's file is dropped from the page cache
(``posix_fadvise(DONTNEED)``, then counted back with ``mincore``: what is still resident is said, never assumed).
Warm: the next process, with that cache folder as the cold one left it and the file just read. The runtime's own
libraries stay in the page cache either way (other processes map them): the figure is a first run of *this model*,
not of a freshly booted device. Times in ms; on Linux the process's creation time is the kernel's, in clock ticks
(10 ms), against ``CLOCK_BOOTTIME``."""
from __future__ import annotations

import functools
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


def clock_now() -> float:
    """The clock ``process_age_ms`` measures against: seconds since boot (``CLOCK_BOOTTIME``) on Linux, where the
    process's start time is read in the same units; the wall clock elsewhere."""
    if _proc_start_s() is not None:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.time()


@functools.lru_cache(maxsize=1)
def _proc_start_s() -> float | None:
    """This process's start, in seconds since boot (``/proc/self/stat`` field 22, in clock ticks); None off Linux.
    Read once: every worker request takes ``clock_now()`` on entry."""
    if not hasattr(time, "CLOCK_BOOTTIME"):
        return None
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")  # fields[0] is field 3 (the state)
    except (OSError, ValueError, IndexError):
        return None


def process_age_ms(now: float | None = None) -> float:
    """Milliseconds from this process's creation to ``now`` (a ``clock_now()``; default: the call). On Linux both
    are seconds since boot: the kernel's start time in clock ticks (10 ms), not psutil's, whose boot time is whole
    seconds (an offset of up to 1 s). Elsewhere psutil's creation time against the wall clock."""
    started = _proc_start_s()
    if started is not None:
        now = time.clock_gettime(time.CLOCK_BOOTTIME) if now is None else now
        return (now - started) * 1e3
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
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:  # no C library by that name (a musl board): residency is not checked
        return None
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
    if os.stat(path).st_uid != os.getuid() and not os.access(path, os.W_OK):
        return (f"not checked: mincore reports {resident} of {total} pages, but it cannot see the page cache of a "
                "file this user neither owns nor may write")
    return (f"not fully dropped: {resident} of {total} pages still resident (another process maps or locks the "
            "file: a cold start it was not)")


def page_cache_state(path: str) -> str:
    counted = resident_pages(path)
    return "not checked" if counted is None else f"{counted[0]} of {counted[1]} pages resident"


STALE_S = 6 * 3600
"""A start-up cache folder older than this (seconds) was left by a start pass that failed: a cold start removes it."""


def prepare_cache(cache_id: str, cold: bool) -> Path:
    """The runtime's start-up cache folder: emptied for a cold start (which also removes folders a failed pass left
    behind, older than ``STALE_S``), kept as it is for a warm one."""
    folder = cache_folder(cache_id)
    if cold:
        if folder.exists():
            shutil.rmtree(folder)
        now = time.time()
        for old in folder.parent.glob("*") if folder.parent.is_dir() else ():
            try:
                if now - old.stat().st_mtime > STALE_S:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
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
