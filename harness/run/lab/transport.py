"""How files reach a lab's nodes and come back: the files a request names go into Ray's object store once each, a
lane fetches what its stage lacks by sha256, and a build node's cache paths are rebased onto this machine's."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from harness.protocol import INPUT_FILE_KEYS, request_artifacts


class FileRefs:
    """The files requests name, each put into Ray's object store once (path → (sha256, object ref))."""

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self._known: dict[tuple[str, int, int], tuple[str, Any]] = {}
        self._lock = threading.Lock()

    def _ref(self, path: str, sha256: str = "") -> tuple[str, Any]:
        from harness.hashing import file_sha256

        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._known.get(key)
        if known is None:  # read, hashed and put outside the lock: other lanes go on meanwhile
            known = (sha256 or file_sha256(path), self.ray.put(Path(path).read_bytes()))
            with self._lock:
                known = self._known.setdefault(key, known)
        return known

    def for_request(self, request: dict[str, Any]) -> dict[str, tuple[str, Any]]:
        refs: dict[str, tuple[str, Any]] = {}
        for artifact in request_artifacts(request):
            refs[artifact["path"]] = self._ref(artifact["path"], artifact.get("sha256", ""))
            source = artifact.get("recipe", {}).get("source")
            if artifact.get("format") == "torch" and source and Path(source).is_file():
                refs[source] = self._ref(source)
        for key in INPUT_FILE_KEYS:
            if request.get(key):
                refs[request[key]] = self._ref(request[key])
        return refs


def rebase_paths(value: Any, old_root: str, new_root: str) -> Any:
    """``value`` (a JSON document) with every string path under ``old_root`` moved under ``new_root``."""
    if isinstance(value, dict):
        return {k: rebase_paths(v, old_root, new_root) for k, v in value.items()}
    if isinstance(value, list):
        return [rebase_paths(v, old_root, new_root) for v in value]
    if isinstance(value, str) and value.startswith(old_root.rstrip(os.sep) + os.sep):
        return new_root.rstrip(os.sep) + value[len(old_root.rstrip(os.sep)):]
    return value
