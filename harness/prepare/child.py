"""The prepare step, in its own process: ``python -m harness.prepare`` builds one generator from its model
file, computes the seeded example inputs and fp32 reference outputs, and exports and validates each format
through the artifact cache. A model that crashes or hangs while being built or exported takes down this
process only.

Request: a ``harness.protocol.PrepareRequest`` (its fields say what each is). A generator that declares digits training is trained
here on first use (weights cached under ``<cache>/weights``).
Result: ``status``, ``batches`` ({batch: {"io": {...}, "variants":
{variant: {"expected_path": outputs its artifacts must reproduce ('' = none: judged by fidelity only),
"artifacts": {fmt: Artifact dict}, "work": FLOPs and bytes per inference (``harness.prepare.work``)}},
"decoder": {"input": name, "artifacts": {fmt: Artifact dict}} (a sampler's
decoder, fp32, in each format)}}) with "fp32" first, ``built`` and ``reused`` (artifact ids).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.prepare import progress
from harness.protocol import PrepareRequest


def validate_in_worker(timeout_s: float):
    """A validation function for ArtifactCache: run an artifact once in a fresh worker, return its outputs."""
    from harness.prepare.artifacts import load_outputs
    from harness.launch.local import LocalLauncher
    from harness.protocol import WorkerRequest

    def validate(artifact, runtime: str, inputs_path: str) -> list[np.ndarray]:
        with tempfile.TemporaryDirectory(prefix="edge-harness-") as tmp:
            outputs_path = str(Path(tmp) / "outputs.npz")
            request = WorkerRequest("outputs", artifact=artifact.to_dict(), runtime=runtime,
                                    runtime_options={"threads": 1}, inputs_path=inputs_path, outputs_path=outputs_path)
            result = LocalLauncher().run(request, timeout_s)
            if not result.ok:
                raise RuntimeError(f"{result.status}: {result.error or result.status}")
            return load_outputs(outputs_path)

    return validate


def prepare(wire_request: dict[str, Any]) -> dict[str, Any]:
    from harness.prepare.artifacts import ArtifactCache
    from harness.compress import LatentSource, calibration_batches, compressor, variant_formats
    from harness.prepare.compress_steps import compress_export, compress_file, compress_torch, expected_outputs
    from harness.prepare.torch_model import own_builder
    from harness.exporters import exporter_for_format
    from harness.training import build_trained
    from harness.types import Artifact, CompressionSpec
    from harness.zoo import get_model, load_model_file

    from harness.plugins import load_plugins

    load_plugins()  # inside serve: a broken plugin is a failed result naming it
    request = PrepareRequest.from_dict(wire_request)
    if request.progress_path:
        os.environ[progress.ENV] = request.progress_path  # training and distillation report through it
    progress.report("building")
    load_model_file(Path(request.source))
    spec = get_model(request.model)
    model, weights = build_trained(spec, Path(request.cache))
    cache = ArtifactCache(Path(request.cache), validate=validate_in_worker(float(request.timeout_s)))
    tolerance = float(request.tolerance)
    base = cache.torch_artifact(spec, model, weights)
    decoder = _loop_decoder(spec, request, cache)
    variants = [CompressionSpec.from_dict(v) for v in request.variants]
    torch_stage = [v for v in variants if compressor(v.method).stage == "torch"]
    export_stage = [v for v in variants if compressor(v.method).stage == "export"]
    file_stage = [v for v in variants if compressor(v.method).stage not in ("torch", "export")]

    # Torch-level variants (in suite order: a variant may build on an earlier one).
    torch_variants: dict[str, tuple[Artifact, Any]] = {"fp32": (base, model)}
    formats = {"fp32": tuple(request.formats)} | {v.name: variant_formats(v, request.formats)
                                                     for v in torch_stage}
    for v in torch_stage:
        parent, parent_model = torch_variants[v.after or "fp32"]
        if parent_model is None:
            torch_variants[v.name] = (_failed_child(parent, v.name), None)
            continue
        progress.report(f"compressing: {v.name} ({v.method})")
        torch_variants[v.name] = compress_torch(cache, parent, parent_model, v,
                                                LatentSource(spec.make_inputs, spec.seed, own_builder(spec),
                                                             spec.sampler))

    batches: dict[str, Any] = {}
    for batch in request.batch_sizes:
        progress.report(f"reference outputs, batch {batch}")
        io = cache.model_io(spec, model, int(batch), weights, int(request.samples),
                            int(request.loop_samples), decoder=decoder and decoder[:3],
                            layers=bool(request.layers))
        entries: dict[str, Any] = {}
        for name, (artifact, variant_model) in torch_variants.items():
            expected = io.reference_path
            if name != "fp32" and variant_model is not None:
                expected = expected_outputs(cache, artifact, variant_model, io)
            exports = {"torch": artifact}
            for fmt in formats[name]:
                if fmt == "torch":
                    continue
                if variant_model is None:
                    exports[fmt] = _failed_child(artifact, name, fmt)
                else:
                    progress.report(f"exporting {name} → {fmt}, batch {batch}")
                    exports[fmt] = cache.export(artifact, variant_model, exporter_for_format(fmt), io, int(batch),
                                                tolerance, expected_path=expected)
            entries[name] = {"expected_path": expected, "artifacts": exports,
                             "work": _work(variant_model, spec.make_inputs(int(batch), spec.seed))}
        for v in export_stage:  # PT2E: quantized while exported, from a torch variant
            parent, parent_model = torch_variants.get(v.after or "fp32", (None, None))
            if parent is None:
                continue
            calibration = calibration_batches(spec.make_inputs, int(batch), spec.seed,
                                              int(v.params.get("calibration_batches", 16)))
            made = {}
            for fmt in variant_formats(v, request.formats):
                progress.report(f"compressing: {v.name} ({v.method}) → {fmt}, batch {batch}")
                made[fmt] = compress_export(cache, parent, parent_model, v, fmt, calibration, io, int(batch))
            entries[v.name] = {"expected_path": "", "artifacts": made,
                               "work": entries.get(v.after or "fp32", {}).get("work")}
        for v in file_stage:
            parent = entries.get(v.after or "fp32", {}).get("artifacts", {}).get(compressor(v.method).stage)
            if parent is None:  # the suite does not export that format: nothing to quantize
                continue
            calibration = calibration_batches(spec.make_inputs, int(batch), spec.seed,
                                              int(v.params.get("calibration_batches", 16)))
            progress.report(f"compressing: {v.name} ({v.method}), batch {batch}")
            artifact = compress_file(cache, parent, v, calibration, io)
            entries[v.name] = {"expected_path": "", "artifacts": {artifact.format: artifact},
                               "work": entries.get(v.after or "fp32", {}).get("work")}
        batches[str(batch)] = {
            "io": dataclasses.asdict(io),
            **({"decoder": _decoder_exports(cache, decoder, request, int(batch))} if decoder else {}),
            "variants": {name: {"expected_path": e["expected_path"], "work": e["work"],
                                "artifacts": {fmt: a.to_dict() for fmt, a in e["artifacts"].items()
                                              if fmt in request.formats}}
                         for name, e in entries.items()},
        }
    sources = {spec.name: spec.source, **({decoder[0].name: decoder[0].source} if decoder else {})}
    return {"status": "ok", "error": "", "batches": _rebuilt_from_here(batches, sources),
            "built": cache.stats.built, "reused": cache.stats.reused}


def _rebuilt_from_here(batches: dict[str, Any], sources: dict[str, str]) -> dict[str, Any]:
    """Torch artifacts point their worker at this run's model file. The same code checked out in another folder
    has the same ids (``harness.prepare.identity``), so a reused artifact may name the folder it was first built
    from: that folder may be gone, or be another checkout of the project (CI's base and head)."""
    for entries in batches.values():
        artifacts = [*(a for e in entries["variants"].values() for a in e["artifacts"].values()),
                     *entries.get("decoder", {}).get("artifacts", {}).values()]
        for artifact in artifacts:
            recipe = artifact.get("recipe") or {}
            if recipe.get("source") and recipe.get("model") in sources:
                artifact["recipe"] = {**recipe, "source": sources[recipe["model"]]}
    return batches


def _work(model: Any, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """FLOPs and bytes of one inference (``harness.prepare.work``), or ``{"error": why}`` when counting fails."""
    from harness.prepare.work import count_work

    if model is None:
        return None
    try:
        return count_work(model, inputs).to_dict()
    except Exception as exc:  # an op the counter cannot run under its dispatch mode: the roofline is left out
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def _loop_decoder(spec: Any, request: PrepareRequest, cache: Any) -> tuple | None:
    """A sampler's decoder: (its spec, model, weights, input name, fp32 torch artifact), or None without one. A
    decoder that is not registered, or whose input is not the denoiser's image, is a one-line error."""
    from harness.errors import HarnessInputError
    from harness.training import build_trained
    from harness.zoo import MODELS, get_model, load_model_file

    if spec.sampler is None or not spec.sampler.decoder:
        return None
    name = spec.sampler.decoder
    if name not in MODELS.names() and request.decoder_source:
        load_model_file(Path(request.decoder_source))
    if name not in MODELS.names():
        raise HarnessInputError(f"{spec.name}: the sampler's decoder {name!r} is not a registered model")
    dspec = get_model(name)
    example, latent = dspec.make_inputs(1, dspec.seed), spec.make_inputs(1, spec.seed)[spec.sampler.image_input]
    if len(example) != 1 or next(iter(example.values())).shape[1:] != latent.shape[1:]:
        shapes = ", ".join(f"{k} {tuple(v.shape[1:])}" for k, v in example.items())
        raise HarnessInputError(f"{spec.name}: the sampler's decoder {name!r} must take one input shaped like the "
                                f"denoiser's {spec.sampler.image_input!r} {tuple(latent.shape[1:])}, not {shapes}")
    progress.report(f"building the decoder {name}")
    dmodel, dweights = build_trained(dspec, Path(request.cache))
    return dspec, dmodel, dweights, next(iter(example)), cache.torch_artifact(dspec, dmodel, dweights)


def _decoder_exports(cache: Any, decoder: tuple, request: PrepareRequest, batch: int) -> dict[str, Any]:
    """The decoder's fp32 artifact in each of the suite's formats at ``batch``, validated like any export."""
    from harness.exporters import exporter_for_format

    dspec, dmodel, dweights, input_name, base = decoder
    io = cache.model_io(dspec, dmodel, batch, dweights)
    artifacts = {"torch": base}
    for fmt in request.formats:
        if fmt != "torch":
            progress.report(f"exporting the decoder {dspec.name} → {fmt}, batch {batch}")
            artifacts[fmt] = cache.export(base, dmodel, exporter_for_format(fmt), io, batch,
                                          float(request.tolerance))
    return {"input": input_name, "artifacts": {fmt: a.to_dict() for fmt, a in artifacts.items()
                                               if fmt in request.formats}}


def _failed_child(parent: Any, variant: str, fmt: str | None = None) -> Any:
    """A failed artifact standing for what could not be made because its parent failed."""
    return dataclasses.replace(parent, id=f"{parent.id}-{variant}-{fmt or parent.format}", variant=variant,
                               format=fmt or parent.format, path="", status="failed",
                               error=parent.error or "its parent failed")

