"""Shared helpers for the tests that build real artifacts of the tiny fixture generator."""
from __future__ import annotations

from pathlib import Path

from harness.prepare.artifacts import ArtifactCache
from harness.prepare.child import validate_in_worker
from harness.zoo import discover, get_model


def build_all(models_dir: Path, cache_root: Path, name: str, batch: int = 1, tolerance: float = 1e-4,
              formats: tuple[str, ...] = ("onnx", "tflite")):
    """Torch artifact, io and exports (by default ONNX and TFLite) for one fixture model."""
    from harness.exporters import exporter_for_format

    discover(models_dir)
    spec = get_model(name)
    model = spec.builder(**spec.builder_kwargs)
    cache = ArtifactCache(cache_root, validate=validate_in_worker(120))
    base = cache.torch_artifact(spec, model)
    io = cache.model_io(spec, model, batch)
    exports = {fmt: cache.export(base, model, exporter_for_format(fmt), io, batch, tolerance)
               for fmt in formats}
    return cache, base, io, exports


QUICK_SETTINGS_TOML = """[settings]
min_runs = 5
min_duration_s = 0.02
warmup_min_runs = 2
warmup_max_runs = 10
memory_runs = 1
energy_min_s = 0.05
fidelity_samples = 16
profile_runs = 0
start_runs = 0
"""
"""A suite's [settings] for tests that run whole suites: few runs, no per-op profile pass and no start pass (the
profiling and start tests ask for theirs): a smoke test of the machinery."""


def memory_backed(path) -> str:
    """The filesystem type holding ``path`` when its pages are its storage (tmpfs, ramfs: nothing to drop from the
    page cache), else ''."""
    from pathlib import Path

    best = ("", "")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, kind, *_ = line.split()
            if str(Path(path).resolve()).startswith(mount.rstrip("/") + "/") and len(mount) > len(best[0]):
                best = (mount, kind)
    except OSError:
        return ""
    return best[1] if best[1] in ("tmpfs", "ramfs") else ""
