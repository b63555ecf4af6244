"""A device lab on Ray, node side: what runs on a cluster node, and how a node joins.

A node declares what it can measure as Ray custom resources: ``edge-target:<target>`` (1 per device: its own CPU
for a local target, or each board it reaches over SSH — boards run no Ray daemon) and ``edge-build`` (it takes
host-side work: training, compression, export). ``harness node start`` writes them for ``ray start``.

Runs on a node:
- ``Lane`` (a Ray actor holding one ``edge-target:<target>`` unit for its lifetime, so one measurement at a time
  per device): runs each worker request through the node's own launcher (local process, SSH board, emulated rootfs)
  after putting the files the request names into a node-local, content-addressed stage (their bytes come through
  Ray's object store, fetched only when the node lacks them), and sends the output files back as bytes.
- ``prepare_on_node`` (a Ray task needing ``edge-build``): the prepare child into the node's own artifact cache,
  with a manifest of the cache folders its result names; ``read_files`` sends the ones the driver lacks.
- ``node_identity``: harness version, Python, a digest of the harness code — compared with the driver's before any
  job.

CPUs: a node's local measurements and its build work never share CPUs. A node with ``--measure-cpus`` pins its
local targets' workers there (``MEASURE_CPUS_ENV``) and its build work to the other CPUs (``BUILD_CPUS_ENV``);
without it a node may declare local targets or ``edge-build``, not both (``node_resources`` refuses).
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from harness.errors import HarnessInputError
from harness.launch.base import launcher_class

TARGET_PREFIX = "edge-target:"
BUILD_RESOURCE = "edge-build"
MEASURE_CPUS_ENV = "EDGE_HARNESS_MEASURE_CPUS"
"""On a node: the CPUs its local targets are measured on (comma-separated), set by ``harness node start``."""
BUILD_CPUS_ENV = "EDGE_HARNESS_BUILD_CPUS"
"""On a node: the CPUs its build work runs on (comma-separated), set by ``harness node start``."""
STAGE_DIR = Path(tempfile.gettempdir()) / f"edge-harness-cluster-{os.getuid()}"
"""Node-local, content-addressed copies of the files workers read (``<sha256[:20]>/<name>``), and their outputs."""


def target_resource(target: str) -> str:
    """The Ray custom resource of one target profile."""
    return TARGET_PREFIX + target


def ray_module() -> Any:
    """Ray, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise HarnessInputError("a cluster run needs Ray, which is not installed: pip install 'edge-harness[cluster]'"
                                ) from None
    return ray


def parse_cpus(text: str) -> tuple[int, ...]:
    """'0,2-3' → (0, 2, 3)."""
    cpus: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        try:
            cpus.extend(range(int(low), int(high or low) + 1))
        except ValueError:
            raise HarnessInputError(f"CPU list {text!r}: expected numbers and ranges like 0,2-3") from None
    return tuple(sorted(set(cpus)))


def node_resources(targets: Iterable[Any], build: bool, measure_cpus: tuple[int, ...] = ()) -> dict[str, float]:
    """The custom resources of a node reaching ``targets`` (TargetProfiles; one device each) and taking build work
    if ``build``. A node measuring on its own CPUs takes build work only beside reserved measuring CPUs."""
    targets = list(targets)
    local = [t.name for t in targets if launcher_class(t.reach).on_this_machine]  # they run on this node's CPUs
    if build and local and not measure_cpus:
        raise HarnessInputError(
            f"this node measures {', '.join(local)} on its own CPUs and would build beside them: reserve measuring "
            "CPUs with --measure-cpus (build work gets the others), or drop --build")
    if measure_cpus:
        available = os.sched_getaffinity(0)
        outside = [c for c in measure_cpus if c not in available]
        if outside:
            raise HarnessInputError(f"--measure-cpus {','.join(map(str, outside))}: not CPUs of this machine "
                                    f"(it has {','.join(map(str, sorted(available)))})")
        if build and not set(available) - set(measure_cpus):
            raise HarnessInputError("--measure-cpus takes every CPU: none is left for --build")
    resources = {target_resource(t.name): 1.0 for t in targets}
    if build:
        resources[BUILD_RESOURCE] = 1.0
    return resources


def start_node(address: str | None, targets: list[Any], build: bool, measure_cpus: tuple[int, ...],
               extra: list[str]) -> int:
    """``ray start`` for a node of the lab (``address`` None: the head), with its resources and CPU split in the
    environment its Ray workers inherit; usage reporting off. Returns ray's exit status."""
    import shutil
    import subprocess

    resources = node_resources(targets, build, measure_cpus)
    ray = shutil.which("ray", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if ray is None:
        ray_module()
        raise HarnessInputError("the `ray` command is not on PATH (it comes with pip install 'edge-harness[cluster]')")
    argv = [ray, "start", "--disable-usage-stats", f"--resources={json.dumps(resources)}"]
    argv += ["--head"] if address is None else [f"--address={address}"]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    if measure_cpus:
        env[MEASURE_CPUS_ENV] = ",".join(map(str, measure_cpus))
        env[BUILD_CPUS_ENV] = ",".join(map(str, sorted(set(os.sched_getaffinity(0)) - set(measure_cpus))))
    return subprocess.call(argv + list(extra), env=env)


# -- on a node ------------------------------------------------------------------------------------------------------
def code_digest() -> str:
    """sha256 of the harness package's code as shipped to boards (every .py file): equal code, equal digest."""
    from harness.launch.ssh import worker_bundle

    return worker_bundle(True)[1]


def node_identity() -> dict[str, Any]:
    """Who this process is: harness version and code digest, Python, host, Ray node, its CPU split."""
    from harness import __version__

    identity = {"harness_version": __version__, "python": platform.python_version(), "code_digest": code_digest(),
                "hostname": socket.gethostname(), "pid": os.getpid(),
                "measure_cpus": list(parse_cpus(os.environ.get(MEASURE_CPUS_ENV, ""))),
                "build_cpus": list(parse_cpus(os.environ.get(BUILD_CPUS_ENV, "")))}
    try:
        import ray

        context = ray.get_runtime_context()
        identity["node_id"] = context.get_node_id()
        identity["node_ip"] = ray.util.get_node_ip_address()
    except Exception:  # outside Ray (the driver's own identity)
        identity["node_id"], identity["node_ip"] = "", ""
    return identity


def _staged_file(sha256: str, name: str, ref: Any) -> str:
    """A node-local copy of a file, fetched from the object store only when the node does not have it yet."""
    import ray

    path = STAGE_DIR / sha256[:20] / name
    if not path.is_file():
        data = ray.get(ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.{os.getpid()}.part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return str(path)


def stage_request(request: dict[str, Any], blobs: dict[str, tuple[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """The request with node-local paths (every file it names is in ``blobs``: driver path → (sha256, object
    ref)), and where its outputs go on this node (request key → node path)."""
    from harness.protocol import INPUT_FILE_KEYS, OUTPUT_FILE_KEYS, request_artifacts

    staged = json.loads(json.dumps(request))

    def local(path: str) -> str:
        sha256, ref = blobs[path]
        return _staged_file(sha256, Path(path).name, ref)

    for artifact in request_artifacts(staged):
        artifact["path"] = local(artifact["path"])
        source = artifact.get("recipe", {}).get("source")
        if artifact.get("format") == "torch" and source in blobs:
            artifact["recipe"]["source"] = local(source)
    for key in INPUT_FILE_KEYS:
        if staged.get(key):
            staged[key] = local(staged[key])
    outputs: dict[str, str] = {}
    out_dir = STAGE_DIR / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    for key in OUTPUT_FILE_KEYS:
        if staged.get(key):
            outputs[key] = staged[key] = str(out_dir / f"{os.getpid()}-{time.time_ns()}-{key}.npz")
    return staged, outputs


def node_profile(target: Any) -> tuple[Any, str]:
    """The node's own profile of ``target`` when it has one by that name (its SSH key, known_hosts and paths are
    this node's), else the driver's; and where it came from."""
    from harness.config import paths
    from harness.config.targets import get_target
    from harness.errors import HarnessInputError

    try:
        own = get_target(paths.targets_dirs(), target.name)
    except HarnessInputError:
        return target, "the driver's"
    return own, own.source


class Lane:
    """One device of the lab, on the node that reaches it (a Ray actor holding the target's resource unit).

    ``target``: its TargetProfile; ``with_models``: the target runs PyTorch eager (the bundle carries model code).
    """

    def __init__(self, target: Any, with_models: bool) -> None:
        from harness.launch import launcher_for
        from harness.plugins import load_plugins

        load_plugins()  # this node's plugins: a reach (or runtime) a plugin registers is reached from here
        self.target, self.profile_source = node_profile(target)
        self.launcher = launcher_for(self.target, with_models)

    def identity(self) -> dict[str, Any]:
        board = "" if self.launcher.on_this_machine else self.launcher.where
        return node_identity() | {"board": board, "profile_source": self.profile_source}

    def run(self, request: dict[str, Any], timeout_s: float, memory_cap_bytes: int | None, module: str,
            blobs: dict[str, tuple[str, Any]]) -> dict[str, Any]:
        """Run one request here; the result, the output files' bytes (request key → bytes) and the seconds it took
        on this node."""
        t0 = time.monotonic()
        staged, outputs = stage_request(request, blobs)
        try:
            with self._cpus_held():
                result = self.launcher.run(staged, timeout_s, memory_cap_bytes=memory_cap_bytes, module=module)
            files = {key: Path(path).read_bytes() for key, path in outputs.items()
                     if result.ok and Path(path).is_file()}
        finally:
            for path in outputs.values():
                Path(path).unlink(missing_ok=True)
        return {"result": result, "files": files, "node_s": time.monotonic() - t0}

    @contextlib.contextmanager
    def _cpus_held(self) -> Iterator[None]:
        """A local or emulated target's pass holds this node's measuring CPUs (a file lock per CPU; every CPU
        without a split): two local targets of one node, or of nodes sharing a machine's CPUs, never measure at
        once. A board's pass holds nothing here (it measures on the board)."""
        if not self.launcher.on_this_machine:
            yield
            return
        import fcntl

        cpus = parse_cpus(os.environ.get(MEASURE_CPUS_ENV, "")) or tuple(sorted(os.sched_getaffinity(0)))
        STAGE_DIR.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as held:
            for cpu in cpus:  # one lock per CPU, taken in ascending order: overlapping sets exclude, never deadlock
                fh = held.enter_context(open(STAGE_DIR / f"measuring-cpu-{cpu}.lock", "w"))
                fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def close(self) -> None:
        self.launcher.close()


def _pinned_to_build_cpus() -> Any:
    """Pin this process (and the children it starts) to the node's build CPUs, if it has a split; returns the
    previous affinity to restore."""
    cpus = parse_cpus(os.environ.get(BUILD_CPUS_ENV, ""))
    previous = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    return previous


def cache_folders(result: Any, root: str) -> set[str]:
    """The cache folders (relative to ``root``) holding the files a prepare result (its ``extra``) names."""
    folders: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and value.startswith(root + os.sep):
            rel = Path(value).relative_to(root)
            folders.add(str(rel.parent) if len(rel.parts) > 1 else str(rel))

    walk(result)
    return folders


def manifest(root: str, folders: Iterable[str]) -> dict[str, int]:
    """Every file under ``folders`` of ``root``: relative path → bytes."""
    found: dict[str, int] = {}
    base = Path(root)
    for folder in folders:
        path = base / folder
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            if not file.name.endswith(".part") and not file.name.startswith("."):
                found[str(file.relative_to(base))] = file.stat().st_size
    return found


def prepare_on_node(request: dict[str, Any], timeout_s: float, sources: dict[str, str]) -> dict[str, Any]:
    """The prepare child on this node, into this node's artifact cache. ``sources``: model file → sha256 on the
    driver (the node must see the same files at the same paths)."""
    from harness.config import paths
    from harness.hashing import file_sha256
    from harness.launch.local import LocalLauncher
    from harness.protocol import WorkerResult

    identity = node_identity()
    where = f"node {identity['hostname']} ({identity['node_ip']})"
    for path, digest in sources.items():
        if not Path(path).is_file() or file_sha256(path) != digest:
            why = "is missing" if not Path(path).is_file() else "differs from the driver's"
            return {"result": WorkerResult.failure("failed", f"model file {path} {why} on {where}: build nodes "
                                                             "need the project at the same path"), "root": "",
                    "manifest": {},
                    "node": identity}
    root = str(paths.cache_dir().resolve())
    previous = _pinned_to_build_cpus()
    try:
        from harness.launch.local import prepare_memory_cap
        from harness.launch.preparing import prepare_isolating

        cap = prepare_memory_cap(int(request.get("prepare_memory_mb", 0)))

        def launch(attempt: dict[str, Any], wait: Any) -> WorkerResult:
            return LocalLauncher().run(attempt, timeout_s, memory_cap_bytes=cap, module="harness.prepare",
                                       on_wait=wait)

        # as on the driver: a variant that runs away on this node fails alone, named; the rest is prepared
        result, faults = prepare_isolating(launch, request | {"cache": root},
                                           float(request.get("variant_timeout_s", 0)), label=request["model"])
    finally:
        os.sched_setaffinity(0, previous)
    files = manifest(root, cache_folders(dict(result.extra), root)) if result.ok else {}
    return {"result": result, "root": root, "manifest": files, "node": identity,
            "faults": {name: list(fault) for name, fault in faults.items()}}


def read_files(root: str, relative: list[str]) -> dict[str, bytes]:
    """The bytes of files under ``root`` (relative path → bytes)."""
    return {rel: (Path(root) / rel).read_bytes() for rel in relative}
