"""The SSH launcher: the same worker on a board. It uploads a self-contained worker bundle (a zip of the
``harness`` package), the artifact and its inputs over SFTP, runs the worker with one command string
built by ``shlex.join``, and reads back the JSON result and the outputs file.

Host keys are verified against the profile's known_hosts file (paramiko's RejectPolicy: an unknown or
changed key refuses the connection). A connection that cannot be made, is refused, or drops mid-job
gives status ``unreachable``; the suite goes on with other targets.
"""
from __future__ import annotations

import hashlib
import io
import json
import posixpath
import shlex
import socket
import time
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from harness._floors import worker_side
from harness.hashing import file_sha256
from harness.protocol import (INPUT_FILE_KEYS, OUTPUT_FILE_KEYS, WorkerRequest, WorkerResult, parse_result,
                              request_artifacts, wire)
from harness.types import SshSettings

REMOTE_EXIT_TIMEOUT = 124
"""Exit status of coreutils ``timeout`` when it stopped the worker."""


WORKER_SIDE = worker_side()
"""What a board needs to measure ONNX and TFLite artifacts: the worker, the floor modules it speaks and computes
with, the engine, the runtime adapters, the energy probes and the op profilers (paths inside the ``harness``
package): floors 0 and 1 of ``harness._floors``."""


def bundle_files(with_models: bool = False) -> list[Path]:
    """The package files of the worker bundle: the worker side only, or (``with_models``, for a target that runs
    PyTorch eager, which rebuilds the generator from its model code) the whole package with its built-in zoo."""
    root = Path(__file__).resolve().parent.parent
    files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    if with_models:
        return files
    return [p for p in files if any(str(p.relative_to(root)).startswith(entry) if entry.endswith("/")
                                    else str(p.relative_to(root)) == entry for entry in WORKER_SIDE)]


@lru_cache(maxsize=2)
def worker_bundle(with_models: bool = False) -> tuple[bytes, str]:
    """A deterministic zip of the worker bundle (``bundle_files``) and its sha256."""
    root = Path(__file__).resolve().parent.parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in bundle_files(with_models):
            info = zipfile.ZipInfo(str(Path("harness") / path.relative_to(root)), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


class Unreachable(Exception):
    """The board could not be reached or the connection was lost."""


class SshLauncher:
    """Runs each request on a board over SSH: the worker bundle (floors 0 and 1, model code for PyTorch targets)
    uploaded once per content, artifacts and inputs staged by content, outputs brought back."""

    name = "ssh"
    on_this_machine = False
    probe_first = True
    timings_real = True

    @classmethod
    def for_target(cls, target: Any, with_models: bool) -> "SshLauncher":
        return cls(target.ssh, with_models)

    def __init__(self, settings: SshSettings, with_models: bool = False) -> None:
        """``with_models``: the target runs PyTorch eager, so the bundle carries the model code (``bundle_files``)."""
        self.settings = settings
        self.with_models = with_models
        self._client: Any = None
        self._sftp: Any = None
        self._uploaded: set[str] = set()

    @property
    def where(self) -> str:
        return f"{self.settings.user}@{self.settings.host}:{self.settings.port}"

    # -- connection ---------------------------------------------------------------------------------
    def _connect(self) -> Any:
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            self.close()
        import paramiko

        s = self.settings
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(s.known_hosts)
        except OSError as exc:
            raise Unreachable(f"cannot read known_hosts {s.known_hosts}: {exc.strerror}") from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                s.host, port=s.port, username=s.user, key_filename=s.identity_file or None,
                timeout=s.connect_timeout_s, banner_timeout=s.connect_timeout_s, auth_timeout=s.connect_timeout_s,
                allow_agent=False, look_for_keys=not s.identity_file,
            )
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc) or "does not match" in str(exc):
                raise Unreachable(f"host key of {s.host}:{s.port} is not trusted: {exc} "
                                  f"(add it to {s.known_hosts} after checking its fingerprint)") from None
            raise Unreachable(f"ssh to {self.where} failed: {exc}") from None
        except (OSError, EOFError) as exc:
            client.close()
            raise Unreachable(f"cannot connect to {self.where}: {exc}") from None
        self._client = client
        self._sftp = client.open_sftp()
        self._uploaded.clear()
        return client

    def close(self) -> None:
        for handle in (self._sftp, self._client):
            try:
                if handle is not None:
                    handle.close()
            except Exception:  # closing a dead connection may raise anything: it is gone either way
                pass
        self._client = self._sftp = None

    # -- files --------------------------------------------------------------------------------------
    def _mkdirs(self, remote_dir: str) -> None:
        parts = remote_dir.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            path = "/" + "/".join(parts[:i])
            try:
                self._sftp.stat(path)
            except FileNotFoundError:
                self._sftp.mkdir(path)

    def _upload(self, local: str, remote: str, size: int) -> None:
        """Upload unless a file of the same size is already at the (content-addressed) remote path."""
        if remote in self._uploaded:
            return
        try:
            if self._sftp.stat(remote).st_size == size:
                self._uploaded.add(remote)
                return
        except FileNotFoundError:
            pass
        self._mkdirs(posixpath.dirname(remote))
        tmp = remote + ".part"
        self._sftp.put(local, tmp)
        self._sftp.posix_rename(tmp, remote)
        self._uploaded.add(remote)

    def _upload_bundle(self) -> str:
        data, digest = worker_bundle(self.with_models)
        remote = posixpath.join(self.settings.workdir, f"worker-{digest[:16]}.zip")
        if remote not in self._uploaded:
            try:
                present = self._sftp.stat(remote).st_size == len(data)
            except FileNotFoundError:
                present = False
            if not present:
                self._mkdirs(self.settings.workdir)
                with self._sftp.open(remote + ".part", "wb") as fh:
                    fh.write(data)
                self._sftp.posix_rename(remote + ".part", remote)
            self._uploaded.add(remote)
        return remote

    def _stage(self, request: WorkerRequest | Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """Upload what the request refers to; return it with board paths, and the remote output paths."""
        wd = self.settings.workdir
        staged = wire(request)
        for artifact in request_artifacts(staged):
            digest = artifact.get("sha256") or file_sha256(artifact["path"])
            remote = posixpath.join(wd, "artifacts", digest[:20], Path(artifact["path"]).name)
            self._upload(artifact["path"], remote, Path(artifact["path"]).stat().st_size)
            artifact["path"] = remote
            source = artifact.get("recipe", {}).get("source")
            if artifact.get("format") == "torch" and source:
                remote_src = posixpath.join(wd, "models", file_sha256(source)[:20], Path(source).name)
                self._upload(source, remote_src, Path(source).stat().st_size)
                artifact["recipe"]["source"] = remote_src
        for key in INPUT_FILE_KEYS:
            if staged.get(key):
                local = staged[key]
                remote = posixpath.join(wd, "io", file_sha256(local)[:20] + ".npz")
                self._upload(local, remote, Path(local).stat().st_size)
                staged[key] = remote
        remote_outputs: dict[str, str] = {}
        for key in OUTPUT_FILE_KEYS:
            if staged.get(key):
                remote_outputs[key] = posixpath.join(wd, "out", f"{time.time_ns()}-{key}.npz")
                self._mkdirs(posixpath.dirname(remote_outputs[key]))
                staged[key] = remote_outputs[key]
        return staged, remote_outputs

    # -- running ------------------------------------------------------------------------------------
    def command(self, bundle: str, timeout_s: float, module: str) -> str:
        """The one command string run on the board (every word quoted by shlex.join)."""
        return shlex.join(["/usr/bin/timeout", "--kill-after=5", f"{timeout_s:g}", "/usr/bin/env",
                           f"PYTHONPATH={bundle}", self.settings.python, "-m", module])

    def run(self, request: WorkerRequest | Mapping[str, Any], timeout_s: float, memory_cap_bytes: int | None = None,
            module: str = "harness.worker") -> WorkerResult:
        """Run one request on the board. ``memory_cap_bytes`` is not enforced over SSH yet."""
        import paramiko

        try:
            return self._run(request, timeout_s, module)
        except Unreachable as exc:
            self.close()
            return WorkerResult.failure("unreachable", str(exc))
        except (OSError, EOFError, socket.timeout, paramiko.SSHException) as exc:
            self.close()
            return WorkerResult.failure("unreachable", f"connection to {self.where} lost: {type(exc).__name__}: {exc}")

    def _run(self, request: WorkerRequest | Mapping[str, Any], timeout_s: float, module: str) -> WorkerResult:
        client = self._connect()
        bundle = self._upload_bundle()
        staged, remote_outputs = self._stage(request)
        stdin, stdout, stderr = client.exec_command(self.command(bundle, timeout_s, module),
                                                    timeout=timeout_s + 30)
        stdin.write(json.dumps(staged))
        stdin.channel.shutdown_write()
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
        status = stdout.channel.recv_exit_status()
        if status == -1:
            raise Unreachable(f"connection to {self.where} closed before the worker finished")
        if status == REMOTE_EXIT_TIMEOUT or status == 128 + 9:
            return WorkerResult.failure("timeout", f"worker exceeded {timeout_s:g} s on {self.settings.host}", err)
        if status > 128:
            return WorkerResult.failure("crashed", f"worker on {self.settings.host} killed by signal {status - 128}", err)
        result = parse_result(out, err, f"worker on {self.settings.host} exited with code {status}")
        if result.ok:
            for key, remote in remote_outputs.items():
                self._sftp.get(remote, wire(request)[key])
                self._sftp.remove(remote)
        return result.with_context(launcher=f"ssh {self.where}")
