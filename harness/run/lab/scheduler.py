"""The lab's scheduling: one queue per target, one thread per lane taking its target's next job, a job lost with its
node measured once more on another lane (``retry``) or recorded ``unreachable``; the session written to
``lab.jsonl``."""
from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
from typing import Any

from harness.config.cluster import ClusterSettings
from harness.errors import HarnessInputError
from harness.launch import interrupts
from harness.launch.base import launcher_class
from harness.launch.cluster import BUILD_RESOURCE, Lane, node_identity, target_resource
from harness.run.job import JobRun
from harness.run.lab.building import ClusterPreparing
from harness.run.lab.lanes import LaneLauncher, LaneState
from harness.run.lab.nodes import answers, check_nodes, first_line, join, mismatch, refuse_shared_boards, with_node_cpus
from harness.run.lab.transport import FileRefs
from harness.run.runner import BoardState, PlannedJob, RunSummary, SuiteRunner, runs_torch
from harness.types import RunRecord

LAB_FILE = "lab.jsonl"


class LabRunner(ClusterPreparing, SuiteRunner):
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
        identities = answers(ray, [actor.identity.remote() for _, _, actor in pending], self.cluster.join_timeout_s)
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

    # -- running --------------------------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        ray = join(self.cluster)
        started = time.time()
        self._identity = node_identity()
        try:
            nodes = check_nodes(ray, self._identity, self.cluster.join_timeout_s)
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
