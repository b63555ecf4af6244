"""Shared helpers for the tests that build real artifacts of the tiny fixture generator."""
from __future__ import annotations

from pathlib import Path

from harness.artifacts import ArtifactCache, load_outputs
from harness.launcher import LocalLauncher
from harness.zoo import discover, get_model


def worker_validate(artifact, runtime, inputs_path):
    """The same validation the runner uses: run the artifact once in a fresh worker."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "o.npz")
        result = LocalLauncher().run(
            {"mode": "outputs", "artifact": artifact.to_dict(), "runtime": runtime,
             "runtime_options": {"threads": 1}, "inputs_path": inputs_path, "outputs_path": out},
            timeout_s=120,
        )
        if result["status"] != "ok":
            raise RuntimeError(result["error"])
        return load_outputs(out)


def build_all(models_dir: Path, cache_root: Path, name: str, batch: int = 1, tolerance: float = 1e-4):
    """Torch artifact, io and ONNX/TFLite exports for one fixture model."""
    from harness.exporters import exporter_for_format

    discover(models_dir)
    spec = get_model(name)
    model = spec.builder(**spec.builder_kwargs)
    cache = ArtifactCache(cache_root, validate=worker_validate)
    base = cache.torch_artifact(spec, model)
    io = cache.model_io(spec, model, batch)
    exports = {fmt: cache.export(base, model, exporter_for_format(fmt), io, batch, tolerance)
               for fmt in ("onnx", "tflite")}
    return cache, base, io, exports
