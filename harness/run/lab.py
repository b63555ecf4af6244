"""A suite across a device lab scheduled by Ray (``harness run --cluster ADDRESS``).

This process stays the one writer of the run's results store (append-only, fsynced, resumable); Ray places the
work and carries requests, results and files:

- **Lanes.** Each device is a unit of the custom resource ``edge-target:<target>`` (``harness.launch.cluster``). A
  lane is a Ray actor holding one unit for its whole life, on the node that reaches the device, so one
  measurement runs per device at a time while devices measure in parallel. Here, one thread per lane takes the
  next job of its target and measures it as named steps (``harness.run.job``) with a launcher whose passes run
  in that actor. Each record says which node, lane and board measured it, and when.
- **Build work fans out.** Each model's prepare step (training, compression, calibration, export, references) is
  a Ray task on a node declaring ``edge-build``, all models at once (none: here, one after another). Artifacts stay
  content-addressed: a build node writes into its own cache and this process copies the cache folders its result
  names that it lacks (``read_files`` on that node: only what is missing, verified by size), so the driver holds
  every file a record refers to and nodes need no shared filesystem. Lanes get the files a request names through
  Ray's object store, put once per file here and fetched by a node only if its stage lacks that sha256. On a
  build node as here, the prepare child runs under the memory cap and the time limit per variant step, and a
  variant that runs away fails alone, named (``harness.launch.preparing.prepare_isolating``).
- **Faults.** A node that dies or stops answering ends its lanes; a job it was measuring is measured once more on
  another lane of the same target (``retry``), else recorded ``unreachable`` naming the node. A target with no
  lane left has its remaining jobs recorded ``unreachable``. Ctrl-C kills the lab's actors and tasks and keeps
  every record written; ``--resume`` completes the run without duplicates.
- **Refusals before any job**: no cluster at the address, a node running another harness code or Python, a suite
  target that no node declares, one SSH board reached by two lanes (two nodes declaring it, or two targets naming
  it): they would measure it at once.

``lab.jsonl`` in the run folder gets one line per session: the lanes (node, board, CPUs), each prepare step's
node and span, and the makespan; the report draws the lanes' timelines from it and the records.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.cluster import ClusterSettings
from harness.errors import HarnessInputError
from harness.launch import interrupts
from harness.launch.base import launcher_class
from harness.launch.cluster import (BUILD_RESOURCE, TARGET_PREFIX, Lane, node_identity, prepare_on_node,
                                    ray_module, read_files, target_resource)
from harness.protocol import INPUT_FILE_KEYS, WorkerResult, request_artifacts, wire
from harness.run.job import JobRun
from harness.run.runner import BoardState, PlannedJob, RunSummary, SuiteRunner, runs_torch
from harness.types import RunRecord, TargetProfile

ANSWER_SLACK_S = 120.0
"""A lane that has not answered 2 × ``timeout_s`` + this many seconds after a request is taken for lost: a pass may
wait for another local target's pass on the same CPUs (up to ``timeout_s``) and for its files to arrive."""
LAB_FILE = "lab.jsonl"
NO_BUILDER_GRACE_S = 10.0
"""Preparations still waiting this long after the last build node died are made on the driver instead."""


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


class LaneLauncher:
    """A launcher whose requests run in a lane's actor on its node; ``lost`` says why the node is gone ('' while
    it answers), after which every request is ``unreachable`` at once. ``overhead_s``: round trips minus the time
    the node spent (scheduling, transfer, serialisation)."""

    name = "cluster"
    on_this_machine = False  # the lane's node measures (the lab's CPU locks hold a node's own CPUs there)
    probe_first = False  # the target's own reach says whether its device is checked: ``launcher_class``
    timings_real = True

    def __init__(self, ray: Any, actor: Any, where: str, files: FileRefs) -> None:
        self.ray, self.actor, self.where, self.files = ray, actor, where, files
        self.lost = ""
        self.overhead_s = 0.0

    def run(self, request: Any, timeout_s: float, memory_cap_bytes: int | None = None,
            module: str = "harness.worker", on_wait: Any = None) -> WorkerResult:
        if self.lost:
            return WorkerResult.failure("unreachable", self.lost)
        data = wire(request)
        t0 = time.monotonic()
        try:
            answer = self.ray.get(self.actor.run.remote(data, timeout_s, memory_cap_bytes, module,
                                                        self.files.for_request(data)),
                                  timeout=2 * timeout_s + ANSWER_SLACK_S)
        except self.ray.exceptions.GetTimeoutError:
            self.lost = f"{self.where} did not answer within {2 * timeout_s + ANSWER_SLACK_S:g} s"
            self.ray.kill(self.actor)
            return WorkerResult.failure("unreachable", self.lost)
        except self.ray.exceptions.RayTaskError as exc:  # the lane raised (e.g. a full disk while staging)
            return WorkerResult.failure("failed", f"on {self.where}: {first_line(exc.cause if exc.cause else exc)}")
        except self.ray.exceptions.RayError as exc:
            self.lost = f"{self.where} was lost mid-job ({type(exc).__name__})"
            return WorkerResult.failure("unreachable", self.lost)
        self.overhead_s += max(0.0, time.monotonic() - t0 - answer["node_s"])
        for key, content in answer["files"].items():
            Path(data[key]).write_bytes(content)
        return answer["result"].with_context(cluster_node=self.where)

    def close(self) -> None:
        """Nothing here: the lab ends its lanes' actors (``Lane.close`` closes the launcher on the node)."""


@dataclass
class LaneState:
    """One lane: its target (with the node's measuring CPUs applied), actor, launcher, who it is."""

    name: str
    target: TargetProfile
    actor: Any
    launcher: LaneLauncher
    identity: dict[str, Any]
    board: BoardState | None = None
    alive: bool = True
    jobs: int = 0

    def describe(self) -> dict[str, Any]:
        return {"lane": self.name, "target": self.target.name, "node": self.identity.get("hostname", ""),
                "node_ip": self.identity.get("node_ip", ""), "node_id": self.identity.get("node_id", "")[:12],
                "board": self.identity.get("board", ""), "cpu_affinity": list(self.target.cpu_affinity),
                "threads": self.target.threads}


def rebase_paths(value: Any, old_root: str, new_root: str) -> Any:
    """``value`` (a JSON document) with every string path under ``old_root`` moved under ``new_root``."""
    if isinstance(value, dict):
        return {k: rebase_paths(v, old_root, new_root) for k, v in value.items()}
    if isinstance(value, list):
        return [rebase_paths(v, old_root, new_root) for v in value]
    if isinstance(value, str) and value.startswith(old_root.rstrip(os.sep) + os.sep):
        return new_root.rstrip(os.sep) + value[len(old_root.rstrip(os.sep)):]
    return value


def first_line(exc: BaseException) -> str:
    """``Type: message`` of an exception, its first line only."""
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def mismatch(theirs: dict[str, Any], mine: dict[str, Any]) -> str:
    """How a node's harness and Python differ from this process's ('' when they are the same)."""
    differs = [f"{what} {theirs.get(key)} (here {mine[key]})" for key, what in
               (("harness_version", "edge-harness"), ("python", "Python")) if theirs.get(key) != mine[key]]
    if not differs and theirs.get("code_digest") != mine["code_digest"]:
        differs.append("other harness code (a different checkout or local changes)")
    return "; ".join(differs)


def _answers(ray: Any, refs: list[Any], timeout_s: float) -> list[Any]:
    """Each ref's value, or a short reason (a string) for one that failed or did not come within ``timeout_s``."""
    ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    out: list[Any] = []
    for ref in refs:
        try:
            out.append(ray.get(ref, timeout=0.1))
        except ray.exceptions.GetTimeoutError:
            out.append(f"no answer within {timeout_s:g} s")
        except ray.exceptions.RayError as exc:
            out.append(type(exc).__name__)
    return out


def _check_listening(address: str, timeout_s: float = 5.0) -> None:
    """A one-line error when nothing answers at ``host:port`` (Ray itself would retry for many minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise HarnessInputError(f"--cluster {address}: expected host:port of the Ray head (or 'auto')")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise HarnessInputError(f"cannot join the Ray cluster at {address}: nothing answers there "
                                f"({exc.strerror or type(exc).__name__}); start its head with `harness node start "
                                "--head`") from None


def with_node_cpus(target: TargetProfile, identity: dict[str, Any]) -> TargetProfile:
    """A local target measured on a node with reserved measuring CPUs is pinned there (threads at most as many)."""
    cpus = tuple(identity.get("measure_cpus") or ())
    if target.reach != "local" or not cpus:
        return target
    threads = min(target.threads, len(cpus)) if target.threads else len(cpus)
    return dataclasses.replace(target, cpu_affinity=cpus, threads=threads)


LOOPBACK_HOSTS = ("localhost", "127.", "::1", "[::1]")
"""Hosts that name each node's own machine: a board there is told apart by its node's address too."""


def board_key(lane: dict[str, Any]) -> str:
    """The board a lane measures, as ``host:port`` (its SSH user left out: one board, whoever logs in); a loopback
    host is qualified by the lane's node address. '' for a lane measuring no board (a local or emulated target)."""
    board = str(lane.get("board") or "")
    if not board:
        return ""
    where = board.rpartition("@")[2].lower()
    if where.startswith(LOOPBACK_HOSTS):
        return f"{where} on {lane.get('node_ip') or lane.get('node') or '?'}"
    return where


def refuse_shared_boards(lanes: list[dict[str, Any]]) -> None:
    """A one-line error when two lanes (``LaneState.describe()``) measure the same SSH board: two nodes declaring
    it, or two targets naming it, would measure it at once."""
    seen: dict[str, dict[str, Any]] = {}
    for lane in lanes:
        key = board_key(lane)
        if not key:
            continue
        if key in seen:
            first = seen[key]

            def who(x: dict[str, Any]) -> str:
                return (f"node {x.get('node', '?')} ({x.get('node_ip', '?')}, {str(x.get('node_id', ''))[:12]}) as "
                        f"target {x.get('target', '?')}")

            raise HarnessInputError(
                f"board {key} is reached by two lanes, {who(first)} and {who(lane)}: they would measure it at "
                f"once; declare it on one node, as one target (harness node start --targets …)")
        seen[key] = lane


class LabRunner(SuiteRunner):
    """``SuiteRunner`` over a Ray cluster (``ClusterSettings``); the same records, plan and resume."""

    def __init__(self, *args: Any, cluster: ClusterSettings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cluster = cluster
        self._lock = threading.RLock()
        self._ready = threading.Condition(self._lock)
        self._queues: dict[str, collections.deque] = {t.name: collections.deque() for t in self.targets}
        self._down: dict[str, str] = {}
        self._in_flight: collections.Counter = collections.Counter()
        self._fed = False
        self._stop = threading.Event()
        self._prepare_refs: list[Any] = []
        self.lanes: list[LaneState] = []
        self.prepare_spans: list[dict[str, Any]] = []
        self._errors: list[BaseException] = []
        self._identity: dict[str, Any] = {}

    # -- joining --------------------------------------------------------------------------------------------------
    def _join(self) -> Any:
        ray = ray_module()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import logging

        if self.cluster.address != "auto":
            _check_listening(self.cluster.address)
        here = os.getcwd()
        try:
            # Ray adds the driver's current folder to every worker's sys.path: from a checkout, nodes would import
            # the driver's harness (where that path exists) instead of their own, and the version check would
            # check nothing. Joined from an empty folder, each node runs the harness installed there.
            os.chdir(self._neutral_dir())
            ray.init(address=self.cluster.address, log_to_driver=False, logging_level=logging.ERROR,
                     namespace="edge-harness")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise HarnessInputError(f"cannot join the Ray cluster at {self.cluster.address}: {first} (start one "
                                    "with `harness node start --head --targets …`)") from None
        finally:
            os.chdir(here)
        return ray

    @staticmethod
    def _neutral_dir() -> str:
        import tempfile

        folder = Path(tempfile.gettempdir()) / "edge-harness-driver"
        folder.mkdir(exist_ok=True)
        return str(folder)

    def _check_nodes(self, ray: Any) -> list[dict[str, Any]]:
        """Every live node that declares lab resources, checked against this harness before any job."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [n for n in ray.nodes() if n.get("Alive") and any(
            k.startswith(TARGET_PREFIX) or k == BUILD_RESOURCE for k in n.get("Resources", {}))]
        identify = ray.remote(num_cpus=0)(node_identity)
        refs = [identify.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
                for n in nodes]
        answers = _answers(ray, refs, self.cluster.join_timeout_s)
        answered = []
        for node, answer in zip(nodes, answers):
            if isinstance(answer, str):  # a node dying or gone that Ray still lists: left out, said so
                print(f"lab: node {node['NodeManagerAddress']} ({node['NodeID'][:12]}) left out: it did not answer "
                      f"the version check ({answer})", file=sys.stderr)
            else:
                answered.append((node, answer))
        for node, theirs in answered:
            differs = mismatch(theirs, self._identity)
            if differs:
                raise HarnessInputError(
                    f"node {theirs['hostname']} ({node['NodeManagerAddress']}) runs {differs}: install "
                    "the same harness and Python on every node before running the suite there")
        return [n for n, _ in answered]

    def _start_lanes(self, ray: Any, nodes: list[dict[str, Any]]) -> None:
        """One actor per device unit of each suite target, pinned to the checked node declaring it; a target no
        node declares is refused."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        lane_actor = ray.remote(num_cpus=0, max_restarts=0, max_concurrency=1)(Lane)
        files = FileRefs(ray)
        missing = [t.name for t in self.targets
                   if not sum(n["Resources"].get(target_resource(t.name), 0) for n in nodes)]
        if missing:
            raise HarnessInputError(
                f"no node of the cluster declares target(s) {', '.join(missing)}: start a node that reaches them "
                f"with `harness node start --targets {','.join(missing)}` (resource {target_resource(missing[0])})")
        pending = []
        for target in self.targets:
            i = 0
            for node in nodes:
                for _ in range(int(node["Resources"].get(target_resource(target.name), 0))):
                    actor = lane_actor.options(
                        resources={target_resource(target.name): 1},
                        scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
                    ).remote(target, runs_torch(target))
                    pending.append((f"{target.name}#{i}", target, actor))
                    i += 1
        identities = _answers(ray, [actor.identity.remote() for _, _, actor in pending], self.cluster.join_timeout_s)
        for (name, target, actor), identity in zip(pending, identities):
            if isinstance(identity, str) or mismatch(identity, self._identity):
                why = identity if isinstance(identity, str) else f"its node runs {mismatch(identity, self._identity)}"
                print(f"lab: lane {name} left out: {why}", file=sys.stderr)
                ray.kill(actor)
                continue
            where = f"node {identity['hostname']} ({identity['node_ip']})" + (
                f", board {identity['board']}" if identity.get("board") else "")
            self.lanes.append(LaneState(name, with_node_cpus(target, identity), actor,
                                        LaneLauncher(ray, actor, where, files), identity))
        refuse_shared_boards([lane.describe() for lane in self.lanes])
        started = {lane.target.name for lane in self.lanes}
        lost = [t.name for t in self.targets if t.name not in started]
        if lost:
            raise HarnessInputError(f"no lane of target(s) {', '.join(lost)} started on the cluster (their nodes did "
                                    "not answer): check them with `ray status`")

    # -- the queue ------------------------------------------------------------------------------------------------
    def _enqueue(self, planned: PlannedJob, summary: RunSummary, bar: Any, done: set[str], attempt: int = 0,
                 front: bool = False) -> None:
        with self._ready:
            if planned.job.key in done:
                summary.skipped_completed += 1
                bar.update(1)
                return
            target = planned.job.target
            if target in self._down:
                if planned.export_error:  # not made: that is what its record says, whatever became of the lane
                    self._keep_unmade(planned, summary, bar)
                else:
                    self._keep_unreachable(planned, self._down[target], summary, bar)
                return
            queue = self._queues[target]
            queue.appendleft((planned, attempt)) if front else queue.append((planned, attempt))
            self._ready.notify_all()

    def _next(self, target: str) -> tuple[PlannedJob, int] | None:
        """The target's next job, or None once every job is fed and none is queued or in flight on another lane
        (a job whose node is lost comes back for a retry)."""
        with self._ready:
            while not self._stop.is_set():
                if self._queues[target]:
                    self._in_flight[target] += 1
                    return self._queues[target].popleft()
                if self._fed and not self._in_flight[target]:
                    return None
                self._ready.wait(0.5)
            return None

    def _finished(self, target: str) -> None:
        with self._ready:
            self._in_flight[target] -= 1
            self._ready.notify_all()

    def _keep_unmade(self, planned: PlannedJob, summary: RunSummary, bar: Any) -> None:
        job = planned.job
        run = JobRun(job, self.targets_by_name[job.target], None, BoardState(), self.suite, self.out_dir,
                     self.cache_dir, self.job_context(job))
        self.keep(run.run(planned.export_error), summary, bar)

    def _keep_unreachable(self, planned: PlannedJob, why: str, summary: RunSummary, bar: Any) -> None:
        job = planned.job
        run = JobRun(job, self.targets_by_name[job.target], None, BoardState(down=why), self.suite, self.out_dir,
                     self.cache_dir, self.job_context(job))
        self.keep(run.record("unreachable", why), summary, bar)

    # -- lanes ----------------------------------------------------------------------------------------------------
    def _lane(self, lane: LaneState, summary: RunSummary, bar: Any, done: set[str]) -> None:
        try:
            self._lane_jobs(lane, summary, bar, done)
        except Exception as exc:  # a harness bug outside any job: the lane ends, its target's jobs are not lost
            lane.launcher.lost = f"harness error in lane {lane.name}: {first_line(exc)}"
            with self._ready:
                lane.alive = False
                bar.write(f"lab: {lane.launcher.lost} (please report it)", file=sys.stderr)
                self._drain_if_last(lane, summary, bar)

    def _lane_jobs(self, lane: LaneState, summary: RunSummary, bar: Any, done: set[str]) -> None:
        while not self._stop.is_set():
            item = self._next(lane.target.name)
            if item is None:
                return
            planned, attempt = item
            try:
                try:
                    record = self._measure(lane, planned, attempt)
                except Exception as exc:  # a harness bug: this job fails, the lab goes on
                    record = self._harness_error(planned.job, exc)
                if self._stop.is_set():
                    return  # interrupted mid-job: not recorded, so --resume measures it
                if lane.launcher.lost or (lane.board is not None and lane.board.down):
                    lane.launcher.lost = lane.launcher.lost or lane.board.down
                    self._lose(lane, planned, attempt, record, summary, bar, done)
                    return
                with self._lock:
                    lane.jobs += 1
                    self.keep(record, summary, bar)
            finally:
                self._finished(lane.target.name)

    def _measure(self, lane: LaneState, planned: PlannedJob, attempt: int) -> RunRecord:
        job = planned.job
        if lane.board is None and not planned.export_error:
            lane.board = self.check_board(lane.target, lane.launcher)
        started = time.time()
        record = JobRun(job, lane.target, lane.launcher, lane.board or BoardState(), self.suite, self.out_dir,
                        self.cache_dir, self.job_context(job)).run(planned.export_error)
        record.context["cluster"] = lane.describe() | {
            "start_unix": round(started, 3), "end_unix": round(time.time(), 3), "attempt": attempt + 1,
            "overhead_s": round(lane.launcher.overhead_s, 4)}
        lane.launcher.overhead_s = 0.0
        return record

    def _lose(self, lane: LaneState, planned: PlannedJob, attempt: int, record: RunRecord, summary: RunSummary,
              bar: Any, done: set[str]) -> None:
        """The lane's node was lost during this job: retry it once elsewhere, or keep what it says."""
        with self._ready:
            lane.alive = False
            others = [other for other in self.lanes if other.alive and other.target.name == lane.target.name]
            bar.write(f"lab: {lane.name}: {lane.launcher.lost}"
                      + (f"; {len(others)} other lane(s) of {lane.target.name} go on" if others else ""),
                      file=sys.stderr)
            if record.status in ("unreachable", "unsupported") and self.cluster.retry and attempt == 0 and others:
                self._enqueue(planned, summary, bar, done, attempt=1, front=True)
            else:
                self.keep(record, summary, bar)
            self._drain_if_last(lane, summary, bar)

    def _drain_if_last(self, lane: LaneState, summary: RunSummary, bar: Any) -> None:
        """When no lane of the target is left, its queued (and later) jobs are recorded ``unreachable``."""
        with self._ready:
            if any(other.alive and other.target.name == lane.target.name for other in self.lanes):
                return
            why = f"every lane of target {lane.target.name} was lost (last: {lane.launcher.lost})"
            self._down[lane.target.name] = why
            queue = self._queues[lane.target.name]
            while queue:
                queued, _ = queue.popleft()
                if queued.export_error:
                    self._keep_unmade(queued, summary, bar)
                else:
                    self._keep_unreachable(queued, why, summary, bar)

    # -- preparing ------------------------------------------------------------------------------------------------
    def _feed(self, ray: Any, summary: RunSummary, bar: Any, done: set[str]) -> None:
        """Prepare every model (on build nodes, in parallel, or here) and queue its jobs as each is ready."""
        try:
            builders = sum(n["Resources"].get(BUILD_RESOURCE, 0) for n in ray.nodes() if n.get("Alive"))
            left = list(self.models)
            if self.cluster.build == "cluster" and builders:
                left = self._prepare_on_cluster(ray, summary, bar, done)
                if left and not self._stop.is_set():
                    bar.write(f"lab: no build node is left: preparing {', '.join(left)} here", file=sys.stderr)
            elif self._measures_here():
                bar.write("lab: warning: preparing models on this machine, whose CPUs a lane also measures on: "
                          "give the lab a build node (harness node start --build) for undisturbed timings",
                          file=sys.stderr)
            for model in left:
                if self._stop.is_set():
                    return
                started = time.time()
                self.status(f"preparing {model} here")
                prepared, faults = self._prepare(model)  # memory cap, time limit, a runaway variant fails alone
                self._prepared(model, prepared, {"hostname": "driver"}, started, 0, summary, bar, done, faults)
            if not self._stop.is_set():
                for planned in self.external_jobs():
                    self._enqueue(planned, summary, bar, done)
        finally:
            with self._ready:
                self._fed = True
                self._ready.notify_all()

    def _measures_here(self) -> bool:
        """Whether a lane measures on this machine's own CPUs (a local or emulated target of the driver's node)."""
        import ray

        here = ray.get_runtime_context().get_node_id()
        return any(lane.identity.get("node_id") == here and launcher_class(lane.target.reach).on_this_machine
                   for lane in self.lanes)

    def _prepare_on_cluster(self, ray: Any, summary: RunSummary, bar: Any, done: set[str]) -> list[str]:
        """Prepare on build nodes; returns the models left unprepared when no build node is left alive."""
        from harness.hashing import file_sha256
        from harness.zoo import get_model

        task = ray.remote(num_cpus=0, max_retries=1)(prepare_on_node).options(resources={BUILD_RESOURCE: 1})
        pending: dict[Any, tuple[str, float]] = {}
        for model in self.models:
            spec = get_model(model)
            files = [spec.source, self._decoder_source(spec), spec.checkpoint.path if spec.checkpoint else ""]
            ref = task.remote(self.prepare_request(model), self.suite.settings.prepare_timeout_s,
                              {p: file_sha256(p) for p in files if p and Path(p).is_file()})
            pending[ref] = (model, time.time())
        self._prepare_refs = list(pending)
        self.status(f"preparing {len(pending)} model(s) on the cluster's build nodes")
        no_builder_since: float | None = None
        while pending and not self._stop.is_set():
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                model, started = pending.pop(ref)
                node: dict[str, Any] = {"hostname": "?"}
                copied = 0
                faults: dict[str, tuple[str, str]] = {}
                try:
                    answer = ray.get(ref)
                    node = answer["node"]
                    faults = {name: (status, error) for name, (status, error) in answer.get("faults", {}).items()}
                    differs = mismatch(node, self._identity)
                    if differs:
                        prepared = WorkerResult.failure("failed", f"prepared on node {node['hostname']}, which "
                                                                  f"runs {differs}: not used")
                    else:
                        prepared, copied = self._import_prepared(ray, answer)
                except ray.exceptions.RayTaskError as exc:
                    prepared = WorkerResult.failure("failed",
                                                    f"preparing on a build node: {first_line(exc.cause or exc)}")
                except ray.exceptions.RayError as exc:
                    prepared = WorkerResult.failure("unreachable",
                                                    f"the build node was lost ({type(exc).__name__})")
                self._prepared(model, prepared, node, started, copied, summary, bar, done, faults)
            if not ready:  # a build node that died takes its resource with it: nothing could ever run these
                alive = sum(n["Resources"].get(BUILD_RESOURCE, 0) for n in ray.nodes() if n.get("Alive"))
                no_builder_since = None if alive else (no_builder_since or time.monotonic())
                if no_builder_since is not None and time.monotonic() - no_builder_since > NO_BUILDER_GRACE_S:
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    return [model for model, _ in pending.values()]
        return []

    def _import_prepared(self, ray: Any, answer: dict[str, Any]) -> tuple[WorkerResult, int]:
        """A build node's prepare result with this machine's cache paths, after copying the files it lacks (the
        same path on two machines is two caches: sizes decide, never the path); and the bytes copied."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        result, root = answer["result"], answer["root"]
        if not result.ok or not root:
            return result, 0
        mine = str(self.cache_dir.resolve())
        lacking = [rel for rel, size in answer["manifest"].items()
                   if not (Path(mine) / rel).is_file() or (Path(mine) / rel).stat().st_size != size]
        copied = 0
        if lacking:
            fetch = ray.remote(num_cpus=0)(read_files).options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(answer["node"]["node_id"], soft=False))
            for rel, content in ray.get(fetch.remote(root, lacking)).items():
                path = Path(mine) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
                tmp.write_bytes(content)
                os.replace(tmp, path)
                copied += len(content)
        return result.replace(extra=rebase_paths(dict(result.extra), root, mine)), copied

    def _prepared(self, model: str, prepared: WorkerResult, node: dict[str, Any], started: float, copied: int,
                  summary: RunSummary, bar: Any, done: set[str],
                  faults: dict[str, tuple[str, str]] | None = None) -> None:
        with self._lock:
            self.prepare_spans.append({"model": model, "node": node.get("hostname", ""),
                                       "node_ip": node.get("node_ip", ""), "status": prepared.status,
                                       "start_unix": round(started, 3), "end_unix": round(time.time(), 3),
                                       "copied_bytes": copied})
        for planned in self.jobs_for(model, prepared, faults):
            self._enqueue(planned, summary, bar, done)

    # -- running --------------------------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        ray = self._join()
        started = time.time()
        self._identity = node_identity()
        try:
            nodes = self._check_nodes(ray)
            self._start_lanes(ray, nodes)
            summary, done, bar = self.begin()
            threads = [self._thread("lab-feed", self._feed, ray, summary, bar, done)]
            threads += [self._thread(f"lab-{lane.name}", self._lane, lane, summary, bar, done) for lane in self.lanes]
            try:
                with interrupts.watching():
                    for thread in threads:
                        thread.start()
                    while any(t.is_alive() for t in threads):
                        time.sleep(0.2)
                        interrupts.check()
                        if self._errors:
                            raise self._errors[0]
            except BaseException:
                self._stop.set()
                with self._ready:
                    self._ready.notify_all()
                self._cancel(ray)
                for thread in threads:
                    thread.join(5)
                raise
            finally:
                bar.close()
                self.status = lambda text: None
                self._write_lab(started)
        finally:
            self._cancel(ray)
            ray.shutdown()
        summary.exports_built = len(self.exports_built)
        summary.exports_reused = len(self.exports_reused)
        return summary

    def _thread(self, name: str, work: Any, *args: Any) -> threading.Thread:
        """A daemon thread running ``work(*args)``; a Ctrl-C that reaches it (a child's wait checks for one) stops
        the lab quietly, from the main thread."""
        def guarded() -> None:
            try:
                work(*args)
            except KeyboardInterrupt:
                self._stop.set()
                interrupts.request()
            except Exception as exc:  # re-raised in the main thread: a run never ends quietly short of jobs
                self._errors.append(exc)
                self._stop.set()

        return threading.Thread(target=guarded, name=name, daemon=True)

    def _cancel(self, ray: Any) -> None:
        """Stop the lab's work: prepare tasks cancelled, lane actors killed (their workers die with them)."""
        for ref in self._prepare_refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # finished or already gone
                pass
        self._prepare_refs = []
        for lane in self.lanes:
            try:
                ray.kill(lane.actor)
            except Exception:  # its node is gone
                pass

    def _write_lab(self, started: float) -> None:
        """One line of ``lab.jsonl``: the lanes, the prepare spans, the session's span."""
        line = {"schema_version": 1, "address": self.cluster.address, "start_unix": round(started, 3),
                "end_unix": round(time.time(), 3), "lanes": [lane.describe() | {"alive": lane.alive, "jobs": lane.jobs}
                                                            for lane in self.lanes],
                "prepare": self.prepare_spans}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / LAB_FILE, "a") as fh:
            fh.write(json.dumps(line) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
