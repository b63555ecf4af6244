"""The prepare step, in its own process: ``python -m harness.prepare`` builds one generator from its model
file, computes the seeded example inputs and fp32 reference outputs, and exports and validates each format
through the artifact cache. A model that crashes or hangs while being built or exported takes down this
process only.

Request: ``model``, ``source`` (the model file), ``cache`` (folder), ``formats``, ``batch_sizes``,
``tolerance``, ``timeout_s`` (for each validation worker).
Result: ``status``, ``torch`` (Artifact dict), ``batches`` ({batch: {"io": {...}, "exports": {fmt: Artifact
dict}}}), ``built`` and ``reused`` (artifact ids).
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.jsonproc import serve


def validate_in_worker(timeout_s: float):
    """A validation function for ArtifactCache: run an artifact once in a fresh worker, return its outputs."""
    from harness.artifacts import load_outputs
    from harness.launcher import LocalLauncher

    def validate(artifact, runtime: str, inputs_path: str) -> list[np.ndarray]:
        with tempfile.TemporaryDirectory(prefix="edge-harness-") as tmp:
            outputs_path = str(Path(tmp) / "outputs.npz")
            job = {"mode": "outputs", "artifact": artifact.to_dict(), "runtime": runtime,
                   "runtime_options": {"threads": 1}, "inputs_path": inputs_path, "outputs_path": outputs_path}
            result = LocalLauncher().run(job, timeout_s)
            if result["status"] != "ok":
                detail = result.get("error", "") or result["status"]
                raise RuntimeError(f"{result['status']}: {detail}")
            return load_outputs(outputs_path)

    return validate


def prepare(request: dict[str, Any]) -> dict[str, Any]:
    from harness.artifacts import ArtifactCache
    from harness.exporters import exporter_for_format
    from harness.zoo import get_model, load_model_file

    load_model_file(Path(request["source"]))
    spec = get_model(request["model"])
    model = spec.builder(**spec.builder_kwargs)
    cache = ArtifactCache(Path(request["cache"]), validate=validate_in_worker(float(request["timeout_s"])))
    base = cache.torch_artifact(spec, model)
    batches: dict[str, Any] = {}
    for batch in request["batch_sizes"]:
        io = cache.model_io(spec, model, int(batch))
        exports = {
            fmt: cache.export(base, model, exporter_for_format(fmt), io, int(batch), float(request["tolerance"])).to_dict()
            for fmt in request["formats"] if fmt != "torch"
        }
        batches[str(batch)] = {"io": dataclasses.asdict(io), "exports": exports}
    return {"status": "ok", "error": "", "torch": base.to_dict(), "batches": batches,
            "built": cache.stats.built, "reused": cache.stats.reused}


if __name__ == "__main__":
    sys.exit(serve(prepare))
