"""Content-addressed artifacts: ``id = sha256(parent id, step, config, tool versions)``.

Layout: ``<cache>/<id>/artifact.json`` (the Artifact) next to the file it describes. A step whose id is
already in the cache is not run again, so re-running a suite re-exports nothing that is unchanged.
Example inputs and fp32 PyTorch reference outputs are cached the same way under ``<cache>/io/<key>/``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from harness.capture import captured_output, tail
from harness.errors import missing_package
from harness.exporters import Exporter
from harness.hashing import file_sha256
from harness.types import Artifact, ModelSpec
from harness.prepare.identity import code_digest


SAMPLES_SEED_OFFSET = 900_000
"""The fidelity sample set's inputs use seed ``spec.seed + SAMPLES_SEED_OFFSET``."""
LOOP_SEED_OFFSET = 800_000
"""A sampling loop's initial noise: seed ``spec.seed + LOOP_SEED_OFFSET`` for timing, ``+ 1`` for its sample set."""


def content_id(parent_id: str | None, step: str, config: Mapping[str, Any], tools: Mapping[str, str]) -> str:
    """The cache key and lineage of an artifact: a hash of everything that determines its bytes."""
    blob = json.dumps(
        {"parent": parent_id, "step": step, "config": config, "tools": tools}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def max_abs_error(outputs: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Largest |output − reference| over all outputs; inf when shapes or counts differ, or when an output is
    NaN / ±inf where the reference is not the same (NaN where the reference is NaN, and the same infinity,
    agree: an export that reproduces a model's NaN computes what the model computes)."""
    if len(outputs) != len(reference):
        return float("inf")
    worst = 0.0
    for out, ref in zip(outputs, reference):
        if np.shape(out) != np.shape(ref):
            return float("inf")
        out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
        finite = np.isfinite(out) & np.isfinite(ref)
        agree = (np.isnan(out) & np.isnan(ref)) | (np.isinf(out) & (out == ref))
        if not np.all(finite | agree):
            return float("inf")
        if finite.any():
            worst = max(worst, float(np.max(np.abs(out[finite] - ref[finite]))))
    return worst


def output_scale(reference: list[np.ndarray]) -> float:
    """max(1, largest finite |value|) of the reference outputs: the export tolerance is relative to it."""
    finite = [np.abs(r[np.isfinite(r)]) for r in reference]
    return max([1.0] + [float(f.max()) for f in finite if f.size])


def load_outputs(path: str | Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return [data[f"output_{i}"] for i in range(len(data.files))]


@dataclass
class ExportStats:
    """What this process built, for tests and the run summary."""

    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ModelIO:
    """Cached example inputs and fp32 PyTorch reference outputs for one model and batch size, and the
    model's fidelity sample set (inputs and fp32 outputs; '' when the suite measures none)."""

    inputs_path: str
    reference_path: str
    samples_path: str = ""
    samples_reference_path: str = ""
    loop_inputs_path: str = ""
    """A denoiser with a sampler: the loop's initial noise for the timing batch ('' = none), its fp32 PyTorch final
    images, then the loop's sample set (initial noises) and its final images."""
    loop_reference_path: str = ""
    loop_samples_path: str = ""
    loop_samples_reference_path: str = ""
    layers_reference_path: str = ""
    """The fp32 PyTorch model's leaf-module outputs on the example inputs (``harness.prepare.layers``): a JSON file
    with the modules' order and scope chains, beside an .npz of the outputs in that order."""


LAYERS_MAX_BYTES = 256 * 2**20
"""The fp32 model's layer outputs are kept for "where fidelity breaks" up to this size per model and batch."""


REFERENCE_CHUNK = 8
"""The fp32 reference runs this many samples per call: 64 images of a 256×256 generator in one batch held 4 GB of
activations (``benchmarks/real_size.py``); the outputs do not depend on the split."""


def run_in_chunks(model: Any, inputs: list[np.ndarray], chunk: int = REFERENCE_CHUNK) -> list[np.ndarray]:
    """``model``'s outputs (each a float array over all samples) for inputs split along the batch into
    ``chunk``-sized calls, under ``torch.no_grad``."""
    import torch

    parts: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(inputs[0]), chunk):
            out = model(*(torch.from_numpy(np.ascontiguousarray(a[start:start + chunk])) for a in inputs))
            parts.append([o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])])
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


class ArtifactCache:
    """Builds artifacts once; later calls with the same recipe return the cached Artifact."""

    def __init__(self, root: Path, validate: Callable[[Artifact, str, str], list[np.ndarray]]) -> None:
        """``validate(artifact, runtime, inputs_path)`` runs an artifact in a worker and returns its outputs."""
        self.root = root
        self.validate = validate
        self.stats = ExportStats()
        root.mkdir(parents=True, exist_ok=True)

    # -- lookup -------------------------------------------------------------------------------------
    def lookup(self, artifact_id: str) -> Artifact | None:
        meta = self.root / artifact_id / "artifact.json"
        if not meta.is_file():
            return None
        artifact = Artifact.from_dict(json.loads(meta.read_text()))
        if artifact.status == "ok" and not Path(artifact.path).is_file():
            return None  # file removed behind our back: rebuild
        if artifact.status == "ok" and artifact.gzip_bytes is None:  # cached by an older harness
            artifact = dataclasses.replace(artifact, gzip_bytes=gzip_size(Path(artifact.path)))
            _write_meta(self.root / artifact_id, artifact)
        return artifact

    def store(self, artifact: Artifact, staged_file: Path | None) -> Artifact:
        """Move a staged file into place and write its description atomically."""
        folder = self.root / artifact.id
        folder.mkdir(parents=True, exist_ok=True)
        if staged_file is not None:
            os.replace(staged_file, artifact.path)
        if artifact.status == "ok":
            path = Path(artifact.path)
            artifact = dataclasses.replace(artifact, sha256=file_sha256(path), gzip_bytes=gzip_size(path))
        _write_meta(folder, artifact)
        if artifact.id not in self.stats.built:
            self.stats.built.append(artifact.id)
        return artifact

    def begin(self, parent_id: str | None, step: str, config: Mapping[str, Any],
              tools: Mapping[str, str]) -> tuple[str, Artifact | None, Path]:
        """A step's artifact id, the cached artifact when there is one (counted as reused), and its folder."""
        artifact_id = content_id(parent_id, step, config, tools)
        cached = self.lookup(artifact_id)
        folder = self.root / artifact_id
        if cached:
            return artifact_id, self.reuse(cached), folder
        folder.mkdir(parents=True, exist_ok=True)
        return artifact_id, None, folder

    def reuse(self, artifact: Artifact) -> Artifact:
        self.stats.reused.append(artifact.id)
        return artifact

    # -- steps --------------------------------------------------------------------------------------
    def model_io(self, spec: ModelSpec, model: Any, batch_size: int, weights: Mapping[str, Any] | None = None,
                 samples: int = 0, loop_samples: int = 0, decoder: tuple | None = None,
                 layers: bool = False) -> ModelIO:
        """Example inputs (seeded) and the fp32 PyTorch outputs for them; with ``samples`` > 0 also the
        fidelity sample set: that many inputs drawn with seed ``spec.seed + SAMPLES_SEED_OFFSET`` (never
        the timing inputs, calibration or distillation latents) and their fp32 outputs. ``decoder``: a sampler's
        decoder as (spec, model, weights), which turns the loop's final latents into its reference images.
        ``layers``: also the fp32 model's leaf-module outputs (for "where fidelity breaks")."""
        inputs_path, reference_path = self._inputs_and_outputs(spec, model, batch_size, spec.seed, weights)
        samples_path = samples_reference_path = ""
        if samples > 0:
            samples_path, samples_reference_path = self._inputs_and_outputs(
                spec, model, samples, spec.seed + SAMPLES_SEED_OFFSET, weights)
        loop: dict[str, str] = {}
        if spec.sampler is not None:
            loop["loop_inputs_path"], loop["loop_reference_path"] = self._loop_io(
                spec, model, batch_size, spec.seed + LOOP_SEED_OFFSET, weights, decoder)
            if loop_samples > 0:
                loop["loop_samples_path"], loop["loop_samples_reference_path"] = self._loop_io(
                    spec, model, loop_samples, spec.seed + LOOP_SEED_OFFSET + 1, weights, decoder)
        return ModelIO(inputs_path, reference_path, samples_path, samples_reference_path, **loop,
                       layers_reference_path=self._layer_reference(spec, model, batch_size, weights) if layers else "")

    def _layer_reference(self, spec: ModelSpec, model: Any, batch_size: int,
                         weights: Mapping[str, Any] | None) -> str:
        """The fp32 model's leaf-module outputs on the example inputs of ``batch_size`` (cached)."""
        from harness.prepare.layers import layer_outputs, scope_chains

        key = content_id(
            None,
            "layers",
            {"model": spec.name, "batch": batch_size, "seed": spec.seed, "source": code_digest(spec, model),
             "builder_kwargs": dict(spec.builder_kwargs), "weights": (weights or {}).get("weights_sha256", ""),
             "code": hashlib.sha256(Path(__file__).with_name("layers.py").read_bytes()).hexdigest()},
            {"torch": version("torch"), "numpy": np.__version__},
        )
        folder = self.root / "io" / key
        index_path, arrays_path = folder / "layers.json", folder / "layers.npz"
        if not index_path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            try:
                outputs, order = layer_outputs(model, spec.make_inputs(batch_size, spec.seed))
                total = sum(a.nbytes for a in outputs.values())
                if total > LAYERS_MAX_BYTES:
                    index = {"unavailable": f"the layer outputs at batch {batch_size} take {total / 2**20:.0f} MiB "
                                            f"(more than {LAYERS_MAX_BYTES // 2**20} MiB are not kept)"}
                else:
                    atomic_savez(arrays_path, {f"output_{i}": outputs[path] for i, path in enumerate(order)})
                    index = {"order": order, "chains": scope_chains(model), "arrays": arrays_path.name}
            except Exception as exc:  # the reference is for a note in the report: it never fails the model
                index = {"unavailable": f"reading the fp32 model's layer outputs failed: {type(exc).__name__}: "
                                        f"{exc}"[:300]}
            tmp = index_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(index))
            os.replace(tmp, index_path)
        return str(index_path)

    def _loop_io(self, spec: ModelSpec, model: Any, count: int, seed: int,
                 weights: Mapping[str, Any] | None, decoder: tuple | None = None) -> tuple[str, str]:
        """``count`` initial noises and the images the fp32 PyTorch denoiser generates from them through the
        model's sampler (the same numpy loop the worker runs around every artifact), then through the fp32
        PyTorch decoder when the sampler has one."""
        from harness import diffusion
        from harness.engine.sampling_loop import CONDITION_PREFIX, NOISE_INPUT, ROW_INPUT
        from harness.diffusion import sample

        sampler = spec.sampler
        conditioned = sampler.conditioning_inputs(list(spec.make_inputs(1, 0)))
        key = content_id(
            None,
            "loop-io",
            {"model": spec.name, "count": count, "seed": seed, "source": code_digest(spec, model),
             "builder_kwargs": dict(spec.builder_kwargs), "weights": (weights or {}).get("weights_sha256", ""),
             "sampler": sampler.to_dict(),
             "sampling_code": hashlib.sha256(Path(diffusion.__file__).read_bytes()).hexdigest(),
             **({"conditioning": conditioned} if conditioned else {}),
             **({"decoder": {"model": decoder[0].name, "source": code_digest(decoder[0], decoder[1]),
                             "builder_kwargs": dict(decoder[0].builder_kwargs),
                             "weights": (decoder[2] or {}).get("weights_sha256", "")}} if decoder else {})},
            {"torch": version("torch"), "numpy": np.__version__},
        )
        folder = self.root / "io" / key
        inputs_path, reference_path = folder / "noise.npz", folder / "images.npz"
        if not (inputs_path.is_file() and reference_path.is_file()):
            folder.mkdir(parents=True, exist_ok=True)
            example = spec.make_inputs(1, 0)
            names = list(example)
            noise = np.random.default_rng(seed).standard_normal(
                (count, *example[sampler.image_input].shape[1:])).astype(np.float32)

            # each image's own conditioning, seeded like the model's inputs, the same at every step
            drawn = spec.make_inputs(count, seed) if conditioned else {}
            condition = {n: drawn[n] for n in conditioned}

            def denoise(x: np.ndarray, t: np.ndarray) -> np.ndarray:
                time_dtype = example[sampler.time_input].dtype
                values = {sampler.image_input: x, sampler.time_input: t.astype(time_dtype), **condition}
                return run_in_chunks(model, [values[n] for n in names])[0]

            atomic_savez(inputs_path, {NOISE_INPUT: noise, ROW_INPUT: np.arange(count, dtype=np.int64),
                                       **{CONDITION_PREFIX + n: a for n, a in condition.items()}})
            images = sample(denoise, sampler, noise)
            if decoder:
                images = run_in_chunks(decoder[1], [images])[0]
            atomic_savez(reference_path, {"output_0": images})
        return str(inputs_path), str(reference_path)

    def _inputs_and_outputs(self, spec: ModelSpec, model: Any, count: int, seed: int,
                            weights: Mapping[str, Any] | None) -> tuple[str, str]:
        key = content_id(
            None,
            "io",
            {"model": spec.name, "batch": count, "seed": seed, "source": code_digest(spec, model),
             "builder_kwargs": dict(spec.builder_kwargs), "weights": (weights or {}).get("weights_sha256", "")},
            {"torch": version("torch"), "numpy": np.__version__},
        )
        folder = self.root / "io" / key
        inputs_path, reference_path = folder / "inputs.npz", folder / "reference.npz"
        if not (inputs_path.is_file() and reference_path.is_file()):
            folder.mkdir(parents=True, exist_ok=True)
            inputs = spec.make_inputs(count, seed)
            outputs = run_in_chunks(model, list(inputs.values()))
            atomic_savez(inputs_path, inputs)
            atomic_savez(reference_path, {f"output_{i}": o for i, o in enumerate(outputs)})
        return str(inputs_path), str(reference_path)

    def torch_artifact(self, spec: ModelSpec, model: Any, weights: Mapping[str, Any] | None = None) -> Artifact:
        """The fp32 eager baseline: the model's state_dict, rebuilt from its model file by the worker.
        ``weights``: what ``harness.training.build_trained`` says about trained weights ({} = as built)."""
        import torch

        config = {"model": spec.name, "builder_kwargs": dict(spec.builder_kwargs), "seed": spec.seed,
                  "source_sha256": code_digest(spec, model)}
        if weights:
            config["weights_sha256"] = weights["weights_sha256"]
        artifact_id, cached, folder = self.begin(None, "build", config, {"torch": version("torch")})
        if cached:
            return cached
        staged = folder / "model.pt.tmp"
        torch.save(model.state_dict(), staged)
        path = folder / "model.pt"
        recipe = {"step": "build", "model": spec.name, "builder_kwargs": dict(spec.builder_kwargs),
                  "seed": spec.seed, "source": spec.source}
        if weights:
            recipe["checkpoint" if "checkpoint" in weights else "training"] = \
                {k: v for k, v in weights.items() if k != "cached"}
        artifact = Artifact(
            id=artifact_id, format="torch", path=str(path), bytes=staged.stat().st_size, model=spec.name,
            variant="fp32", batch_size=None, parent_id=None, recipe=recipe,
        )
        return self.store(artifact, staged)

    def export(
        self,
        parent: Artifact,
        model: Any,
        exporter: Exporter,
        io: ModelIO,
        batch_size: int,
        tolerance: float,
        expected_path: str | None = None,
    ) -> Artifact:
        """Export ``model`` (built from ``parent``) and validate it against what ``model`` computes
        (``expected_path``; by default the fp32 reference).

        The export fails, and stays failed in the cache, when its max-abs error exceeds
        ``tolerance × max(1, max |reference|)``.
        """
        config = {"batch": batch_size, "tolerance": tolerance}
        artifact_id, cached, folder = self.begin(parent.id, f"export-{exporter.name}", config,
                                                 exporter.tool_versions())
        if cached:
            return cached
        path = folder / f"model{exporter.suffix}"
        base = dict(
            id=artifact_id, format=exporter.format, path=str(path), model=parent.model,
            variant=parent.variant, batch_size=batch_size, parent_id=parent.id,
            recipe={"step": f"export-{exporter.name}", **config, "tools": exporter.tool_versions()},
            compression=dict(parent.compression),
        )
        inputs = _load_npz(io.inputs_path)
        log: list[str] = []
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            staged = Path(tmp) / path.name
            try:
                with captured_output(log):
                    found = exporter.export(model, inputs, str(staged))
            except Exception as exc:  # an exporter failure is a result to record, not a crash
                detail = tail("".join(log), 5)
                error = f"{exporter.name} export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                if missing := missing_package(exc):
                    detail, error = "", f"{exporter.name} export needs what is not installed: {missing}"
                return self.store(Artifact(bytes=0, status="failed", error=f"{error}\n{detail}".strip(), **base), None)
            size = staged.stat().st_size
            shutil.move(str(staged), str(path))
        if found:  # what the exporter read from its result (ExecuTorch: the share delegated)
            base["compression"] = {**base["compression"], **found}
        artifact = Artifact(bytes=size, **base)
        try:
            outputs = self.validate(artifact, exporter.validation_runtime, io.inputs_path)
        except RuntimeError as exc:
            failed = Artifact(bytes=size, status="failed", error=f"validation failed: {exc}", **base)
            return self.store(failed, None)
        reference = load_outputs(expected_path or io.reference_path)
        err = max_abs_error(outputs, reference)
        scale = output_scale(reference)
        if err > tolerance * scale:
            error = (f"export error {err:.3g} exceeds tolerance {tolerance * scale:.3g} (max-abs vs PyTorch)"
                     if math.isfinite(err) else "export outputs are NaN/inf where PyTorch's are not, or the other way "
                                                "round (or differ in count or shape)")
            failed = Artifact(bytes=size, status="failed", export_max_abs_error=err if math.isfinite(err) else None,
                              error=error, **base)
            return self.store(failed, None)
        return self.store(Artifact(bytes=size, export_max_abs_error=err, **base), None)


def gzip_size(path: Path) -> int:
    """Bytes of the file after zlib/gzip level 6: zeroed weights shrink here, not in the file itself."""
    compressor = zlib.compressobj(6)
    size = 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            size += len(compressor.compress(chunk))
    return size + len(compressor.flush())


def _write_meta(folder: Path, artifact: Artifact) -> None:
    tmp = folder / "artifact.json.tmp"
    tmp.write_text(json.dumps(artifact.to_dict(), indent=1))
    os.replace(tmp, folder / "artifact.json")


def _load_npz(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def atomic_savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` as one .npz, whole or not at all (a reader never sees half a file)."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
