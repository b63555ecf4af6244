"""Latency samples in pytest-benchmark's JSON format, so ``pytest-benchmark compare`` (and anything that reads
its storage, such as github-action-benchmark) can read a harness run.

Statistics are computed by pytest-benchmark's own ``Stats`` class; times are in seconds, as it expects.
One benchmark per successful job; the job's identity goes into ``params`` and ``extra_info``.
"""
from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from harness.types import RunRecord

MS_PER_S = 1000.0


def pytest_benchmark_document(records: Iterable[RunRecord]) -> dict[str, Any]:
    """The JSON document pytest-benchmark writes with ``--benchmark-json`` (with raw data)."""
    import pytest_benchmark
    from pytest_benchmark.stats import Stats

    benchmarks = []
    commit = ""
    for r in records:
        latency = r.measurement("latency")
        if r.status != "ok" or latency is None or not latency.samples:
            continue
        commit = commit or str(r.context.get("commit", ""))
        stats = Stats()
        for ms in latency.samples:
            stats.update(ms / MS_PER_S)
        stats_dict = stats.as_dict()
        stats_dict["data"] = [ms / MS_PER_S for ms in latency.samples]
        stats_dict["iterations"] = 1
        params = {"model": r.model, "variant": r.variant, "format": r.format, "runtime": r.runtime,
                  "target": r.target, "batch_size": r.batch_size}
        param = "-".join(str(v) for v in params.values())
        benchmarks.append({
            "group": f"{r.model} b{r.batch_size} @{r.target}",
            "name": f"edge_harness[{param}]",
            "fullname": f"edge_harness::{r.model}[{param}]",
            "params": params,
            "param": param,
            "extra_info": {"artifact_id": r.artifact_id, "artifact_bytes": r.artifact_bytes,
                           "timing_method": latency.method, "started_at": r.started_at},
            "options": {"timer": latency.method, "disable_gc": False, "min_rounds": len(latency.samples),
                        "max_time": None, "min_time": None, "warmup": True},
            "stats": stats_dict,
        })
    return {
        "machine_info": {"node": platform.node(), "machine": platform.machine(), "system": platform.system(),
                         "python_version": platform.python_version(), "release": platform.release()},
        "commit_info": {"id": commit.removesuffix("+dirty"), "dirty": commit.endswith("+dirty")},
        "benchmarks": benchmarks,
        "datetime": datetime.now(timezone.utc).isoformat(),
        "version": pytest_benchmark.__version__,
    }


def write_pytest_benchmark(records: Iterable[RunRecord], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(pytest_benchmark_document(records), indent=2), encoding="utf-8")
    return path
