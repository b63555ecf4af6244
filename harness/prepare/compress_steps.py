"""Compression as content-addressed steps of the artifact cache, like exports: the id of a compressed
artifact hashes its parent's id, the method, its parameters, the variant's name and the tool versions, so
re-running a suite compresses (and trains) nothing twice. A compressor that raises gives a ``failed``
artifact carrying the error, and the suite goes on."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.prepare.artifacts import ArtifactCache, ModelIO, atomic_savez
from harness.compress import Calibration, LatentSource, compressor, failure_text
from harness.types import Artifact, CompressionSpec


def _step(variant: CompressionSpec) -> tuple[str, dict[str, Any]]:
    """The step and config a compressed artifact's id hashes: the variant, and the source of a user's code it names
    (``student_builder``: an edited builder file is another student)."""
    config: dict[str, Any] = {"name": variant.name, "params": dict(variant.params)}
    builder = variant.params.get("student_builder", "")
    if builder:
        config["student_builder_sha256"] = _module_digest(str(builder).partition(":")[0])
    return f"compress-{variant.method}", config


def _module_digest(module: str) -> str:
    """sha256 of an importable module's source file ('' when it cannot be found: the compressor then says why)."""
    import hashlib
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return ""
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()


def _failure(exc: Exception, variant: CompressionSpec, model: str) -> str:
    return failure_text(exc, variant.method, variant.name, model)


def compress_torch(cache: ArtifactCache, parent: Artifact, parent_model: Any, variant: CompressionSpec,
                   latents: LatentSource | None) -> tuple[Artifact, Any]:
    """A compressed torch artifact and its module (None when the compression failed)."""
    import torch

    from harness.prepare.torch_model import load_torch_artifact

    comp = compressor(variant.method)
    step, config = _step(variant)
    artifact_id, cached, folder = cache.begin(parent.id, step, config, comp.tool_versions())
    if cached:
        return cached, load_torch_artifact(cached) if cached.status == "ok" else None
    path = folder / "model.pt"
    recipe = {key: parent.recipe[key] for key in ("model", "builder_kwargs", "seed", "source")}
    recipe["step"] = step
    base = dict(id=artifact_id, format="torch", path=str(path), model=parent.model, variant=variant.name,
                batch_size=None, parent_id=parent.id)
    try:
        model, info = comp.compress(parent_model, variant.params, latents)
    except Exception as exc:  # a compressor's failure is a result to record
        return cache.store(Artifact(bytes=0, status="failed", error=_failure(exc, variant, parent.model),
                                    recipe={**recipe, "compress": list(parent.recipe.get("compress", ()))},
                                    **base), None), None
    structure = info.pop("structure", None)
    recipe["compress"] = [*parent.recipe.get("compress", ()),
                          {"method": variant.method, "params": dict(variant.params), "structure": structure}]
    staged = folder / "model.pt.tmp"
    torch.save(model.state_dict(), staged)
    artifact = Artifact(bytes=staged.stat().st_size, recipe=recipe,
                        compression={**parent.compression, **info}, **base)
    return cache.store(artifact, staged), model


def expected_outputs(cache: ArtifactCache, artifact: Artifact, model: Any, io: ModelIO) -> str:
    """What a compressed torch model computes on the evaluation inputs: its exports must reproduce this."""
    import torch

    path = cache.root / artifact.id / f"expected-{Path(io.inputs_path).parent.name}.npz"
    if not path.is_file():
        with np.load(io.inputs_path, allow_pickle=False) as data:
            inputs = [torch.from_numpy(data[name]) for name in data.files]
        with torch.no_grad():
            out = model(*inputs)
        outputs = out if isinstance(out, (tuple, list)) else [out]
        atomic_savez(path, {f"output_{i}": o.numpy() for i, o in enumerate(outputs)})
    return str(path)


FILE_STAGES = {"onnx": ("model.onnx", "onnxruntime", "ONNX Runtime"), "tflite": ("model.tflite", "litert", "LiteRT")}
"""stage → (file name, runtime that checks the compressed file, its display name)."""


def _checked(cache: ArtifactCache, artifact: Artifact, runtime: str, runtime_name: str, variant: CompressionSpec,
             io: ModelIO, base: dict[str, Any]) -> Artifact:
    """``artifact`` once it has loaded and run in a worker of ``runtime``; else a failed artifact saying so."""
    try:
        cache.validate(artifact, runtime, io.inputs_path)
    except RuntimeError as exc:
        failed = Artifact(bytes=artifact.bytes, status="failed", compression=artifact.compression,
                          error=f"{runtime_name} cannot run the {variant.method} model: {exc}", **base)
        return cache.store(failed, None)
    return artifact


def compress_file(cache: ArtifactCache, parent: Artifact, variant: CompressionSpec, calibration: Calibration,
                  io: ModelIO) -> Artifact:
    """A compressed copy of an exported ONNX or TFLite artifact, checked to load and run (in a worker)."""
    comp = compressor(variant.method)
    step, config = _step(variant)
    artifact_id, cached, folder = cache.begin(parent.id, step, config, comp.tool_versions())
    if cached:
        return cached
    file_name, runtime, runtime_name = FILE_STAGES[comp.stage]
    path = folder / file_name
    base = dict(id=artifact_id, format=comp.stage, path=str(path), model=parent.model, variant=variant.name,
                batch_size=parent.batch_size, parent_id=parent.id,
                recipe={"step": step, "params": dict(variant.params), "tools": comp.tool_versions()})
    if parent.status != "ok":
        return cache.store(Artifact(bytes=0, status="failed", error=f"its parent failed: {parent.error}",
                                    **base), None)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        staged = Path(tmp) / path.name
        try:
            info = comp.compress_file(parent.path, str(staged), variant.params, calibration)
        except Exception as exc:
            return cache.store(Artifact(bytes=0, status="failed", error=_failure(exc, variant, parent.model), **base), None)
        artifact = Artifact(bytes=staged.stat().st_size, compression={**parent.compression, **info}, **base)
        artifact = cache.store(artifact, staged)
    return _checked(cache, artifact, runtime, runtime_name, variant, io, base)


def compress_export(cache: ArtifactCache, parent: Artifact, parent_model: Any, variant: CompressionSpec, fmt: str,
                    calibration: Calibration, io: ModelIO, batch_size: int) -> Artifact:
    """A compressed file of format ``fmt`` written straight from a torch variant by an ``export``-stage compressor
    (PT2E), checked to load and run in a worker by the format's runtime. Its fidelity is measured, not gated (no
    expected outputs: quantization changes them)."""
    from harness.exporters import exporter_for_format

    comp = compressor(variant.method)
    exporter = exporter_for_format(fmt)
    step, config = _step(variant)
    artifact_id, cached, folder = cache.begin(parent.id, step, {**config, "format": fmt, "batch": batch_size},
                                              comp.tool_versions())
    if cached:
        return cached
    path = folder / f"model{exporter.suffix}"
    base = dict(id=artifact_id, format=fmt, path=str(path), model=parent.model, variant=variant.name,
                batch_size=batch_size, parent_id=parent.id,
                recipe={"step": step, "params": dict(variant.params), "tools": comp.tool_versions()})
    if parent.status != "ok" or parent_model is None:
        return cache.store(Artifact(bytes=0, status="failed", error=f"its parent failed: {parent.error}",
                                    **base), None)
    with np.load(io.inputs_path, allow_pickle=False) as data:
        inputs = {name: data[name] for name in data.files}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        staged = Path(tmp) / path.name
        try:
            info = comp.export_file(parent_model, inputs, str(staged), fmt, variant.params, calibration)
        except Exception as exc:
            return cache.store(Artifact(bytes=0, status="failed", error=_failure(exc, variant, parent.model), **base),
                               None)
        artifact = Artifact(bytes=staged.stat().st_size, compression={**parent.compression, **info}, **base)
        artifact = cache.store(artifact, staged)
    return _checked(cache, artifact, exporter.validation_runtime, exporter.validation_runtime, variant, io, base)
