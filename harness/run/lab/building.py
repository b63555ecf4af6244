"""Build work across a lab: models prepared on build nodes in parallel, their artifacts copied back by content."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from harness.launch.cluster import BUILD_RESOURCE, prepare_on_node, read_files
from harness.protocol import WorkerResult
from harness.run.lab.nodes import first_line, mismatch
from harness.run.lab.transport import rebase_paths
from harness.run.runner import RunSummary

NO_BUILDER_GRACE_S = 10.0
"""Preparations still waiting this long after the last build node died are made on the driver instead."""


class ClusterPreparing:
    """The lab's prepare fan-out, mixed into ``LabRunner``: each model's prepare step as a Ray task on a node declaring
    ``edge-build``, all at once; the files its result names that this machine lacks copied here (sizes decide,
    never the path); a node of other code refused; the models left when no build node is alive handed back."""

    def _prepare_on_cluster(self, ray: Any, summary: RunSummary, bar: Any, done: set[str]) -> list[str]:
        """Prepare on build nodes; returns the models left unprepared when no build node is left alive."""
        from harness.hashing import file_sha256
        from harness.zoo import get_model

        task = ray.remote(num_cpus=0, max_retries=1)(prepare_on_node).options(resources={BUILD_RESOURCE: 1})
        pending: dict[Any, tuple[str, float]] = {}
        for model in self.models:
            spec = get_model(model)
            files = [spec.source, self._decoder_source(spec), spec.checkpoint.path if spec.checkpoint else ""]
            ref = task.remote(self.prepare_request(model).to_dict(), self.suite.settings.prepare_timeout_s,
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
