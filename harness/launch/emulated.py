"""The emulated launcher: the same worker inside an arm64 Debian rootfs, run by qemu-user through binfmt_misc
(built by scripts/arm64-rootfs.sh). For functional checks — do the artifacts load and agree on aarch64 —
never for latency: every timing from it is labelled ``emulated``.

Each worker runs as ``unshare -m`` (a private mount namespace, so nothing stays mounted if it is killed):
mount /proc in the rootfs, bind a Raspberry Pi 4 cpuinfo over /proc/cpuinfo (onnxruntime crashes on import
under qemu when it sees the host's x86 cpuinfo), then chroot and exec the rootfs's Python.
"""
from __future__ import annotations

import os
import shlex
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

from harness.hashing import file_sha256
from harness.launch.local import LocalLauncher
from harness.protocol import INPUT_FILE_KEYS, OUTPUT_FILE_KEYS, WorkerRequest, WorkerResult, request_artifacts, wire
from harness.launch.ssh import worker_bundle
from harness.types import EmulatedSettings

RPI4_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n"
    f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n" for i in range(4)
) + "Hardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"

EMULATED_NOTE = "qemu-user emulation: a functional check, never a latency claim (many times slower than native)"


class EmulatedLauncher(LocalLauncher):
    """Runs each request in the arm64 rootfs under qemu-user, on this machine's CPUs: real aarch64 code paths,
    timings that are the emulator's (labelled, never compared with a device's)."""

    name = "emulated"
    probe_first = True
    timings_real = False
    timings_note = EMULATED_NOTE

    @classmethod
    def for_target(cls, target: Any, with_models: bool) -> "EmulatedLauncher":
        return cls(target.emulated, with_models)

    @property
    def where(self) -> str:
        return f"emulated aarch64 in {self.rootfs}"

    def __init__(self, settings: EmulatedSettings, with_models: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.with_models = with_models
        self.rootfs = Path(settings.rootfs)
        self.stage_dir = "/tmp/edge-harness"

    def missing(self) -> str | None:
        if not (self.rootfs / self.settings.python.lstrip("/")).exists():
            return (f"emulated arm64 rootfs not built at {self.rootfs}: run scripts/arm64-rootfs.sh as root "
                    "(about 5-10 minutes once, then cached)")
        if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
            return "binfmt_misc has no qemu-aarch64 handler: run scripts/arm64-rootfs.sh as root to enable it"
        if os.geteuid() != 0:
            return "the emulated target needs root (unshare, mount, chroot)"
        if not shutil.which("unshare") or not shutil.which("chroot"):
            return "the emulated target needs unshare and chroot (util-linux, coreutils)"
        return None

    def argv(self, module: str) -> list[str]:
        bundle = self._bundle()
        cpuinfo = self.rootfs / "etc" / "edge-harness-cpuinfo"
        if not cpuinfo.exists():
            cpuinfo.write_text(RPI4_CPUINFO)
        root = shlex.quote(str(self.rootfs))
        script = (f"mount -t proc proc {root}/proc && mount --bind {shlex.quote(str(cpuinfo))} {root}/proc/cpuinfo && "
                  + shlex.join(["exec", "chroot", str(self.rootfs), "/usr/bin/env", f"PYTHONPATH={bundle}",
                                self.settings.python, "-m", module]))
        return ["unshare", "--mount", "--propagation", "private", "--fork", "/bin/sh", "-c", script]

    def _bundle(self) -> str:
        data, digest = worker_bundle(self.with_models)
        inside = f"/opt/edge-harness/worker-{digest[:16]}.zip"
        target = self.rootfs / inside.lstrip("/")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return inside

    def _copy_in(self, local: str, inside: str) -> str:
        target = self.rootfs / inside.lstrip("/")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, target)
        return inside

    def run(self, request: WorkerRequest | Mapping[str, Any], timeout_s: float, memory_cap_bytes: int | None = None,
            module: str = "harness.worker") -> WorkerResult:
        why = self.missing()
        if why:
            return WorkerResult("unsupported", why)
        staged = wire(request)
        for artifact in request_artifacts(staged):
            digest = artifact.get("sha256") or file_sha256(artifact["path"])
            artifact["path"] = self._copy_in(
                artifact["path"], f"{self.stage_dir}/artifacts/{digest[:20]}/{Path(artifact['path']).name}")
            source = artifact.get("recipe", {}).get("source")
            if artifact.get("format") == "torch" and source:
                artifact["recipe"]["source"] = self._copy_in(
                    source, f"{self.stage_dir}/models/{file_sha256(source)[:20]}/{Path(source).name}")
        for key in INPUT_FILE_KEYS:
            if staged.get(key):
                staged[key] = self._copy_in(staged[key], f"{self.stage_dir}/io/{file_sha256(staged[key])[:20]}.npz")
        outputs_inside: dict[str, str] = {}
        for key in OUTPUT_FILE_KEYS:
            if staged.get(key):
                outputs_inside[key] = f"{self.stage_dir}/out/{time.time_ns()}-{key}.npz"
                (self.rootfs / outputs_inside[key].lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                staged[key] = outputs_inside[key]
        result = super().run(staged, timeout_s, memory_cap_bytes, module)
        for key, inside in outputs_inside.items():
            produced = self.rootfs / inside.lstrip("/")
            if produced.exists():
                shutil.move(str(produced), wire(request)[key])
        return result.with_context(launcher=f"emulated aarch64 (qemu-user) in {self.rootfs}", emulated=True)
