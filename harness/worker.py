"""The measurement worker: ``python -m harness.worker`` reads one JSON job on stdin and writes one JSON
result on stdout. The same worker runs locally, over SSH or on a fleet node.

Job fields: ``cpu_affinity`` (optional list of CPU numbers, applied first), ``mode`` ('outputs' | 'latency' |
'memory' | 'energy' (with ``energy``: the target's [energy] table); 'inspect' with ``format`` and ``path``; 'probe'), ``artifact`` (Artifact dict), ``runtime``,
``runtime_options`` ({threads, graph_optimization}), ``inputs_path`` (.npz), ``settings`` (RunSettings
dict), ``batch_size`` and, for 'outputs' and 'latency', ``outputs_path`` (.npz written with the first
inference's outputs); for 'latency' optionally ``samples_path`` (.npz of the fidelity sample set's inputs)
and ``samples_outputs_path`` (.npz written with its outputs, after the timed runs), and ``lockstep``
({block_s}: measure in turns with another worker, ``harness.lockstep``). Result fields: ``status``,
``error``, ``measurements``, ``context``.

Anything a native library prints to stdout is moved to stderr, so stdout carries only the result.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
import time
from typing import Any

from harness.jsonproc import serve

WORKER_PACKAGES = ("numpy", "psutil")
"""What the worker itself needs on a board, besides a runtime (numpy is imported lazily so that the
board check can say it is missing)."""


def load_inputs(path: str) -> dict[str, Any]:
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {name: np.ascontiguousarray(data[name]) for name in data.files}


def save_outputs(path: str, outputs: Any) -> None:
    import numpy as np

    np.savez(path, **{f"output_{i}": np.asarray(o) for i, o in enumerate(outputs)})


def generate_samples(runtime: Any, samples: dict[str, Any], batch_size: int) -> list[Any]:
    """Outputs for the fidelity sample set, run as whole batches of ``batch_size`` (an exported artifact has
    a fixed batch); a remainder smaller than one batch is left out."""
    import numpy as np

    total = len(next(iter(samples.values())))
    chunks: list[list[Any]] = []
    for start in range(0, total - batch_size + 1, batch_size):
        outputs = runtime.infer({k: np.ascontiguousarray(v[start:start + batch_size]) for k, v in samples.items()})
        runtime.sync()
        chunks.append([np.asarray(o) for o in outputs])
    if not chunks:
        return []
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def probe() -> dict[str, Any]:
    """The board check: the machine, the worker's own packages, and what each runtime is missing."""
    from harness.context import machine_context
    from harness.runtimes import RUNTIMES  # importing the package registers the built-in adapters

    missing = [p for p in WORKER_PACKAGES if importlib.util.find_spec(p) is None]
    return {"status": "ok", "error": "", "measurements": [], "context": machine_context(),
            "missing_packages": missing,
            "runtimes": {name: RUNTIMES.get(name).missing() for name in RUNTIMES.names()}}


def run_job(job: dict[str, Any], send: Any = None, receive: Any = None) -> dict[str, Any]:
    """One request; ``send``/``receive`` are the lockstep channel (``harness.jsonproc.serve``)."""
    from harness.context import machine_context
    from harness.runtimes import RuntimeOptions, runtime_class
    from harness.types import Artifact, Measurement, RunSettings

    if job.get("mode") == "probe":
        return probe()
    if job.get("mode") == "inspect":  # the inputs of a user's artifact, read by loading it
        from harness.external import read_signature

        return {"status": "ok", "error": "", "signature": read_signature(job["format"], job["path"]),
                "measurements": [], "context": {}}
    affinity = job.get("cpu_affinity") or []
    if affinity:
        import os

        available = sorted(os.sched_getaffinity(0))
        if not set(affinity) <= set(available):
            return {"status": "unsupported", "measurements": [], "context": {},
                    "error": f"cpu_affinity {sorted(affinity)} is not available here (CPUs: {available})"}
        os.sched_setaffinity(0, affinity)
    runtime_cls = runtime_class(job["runtime"])
    # The library's import is timed first: missing() and versions() may import it themselves (the CUDA adapters
    # ask torch or onnxruntime for their devices), after which preload() would find it imported and time ~0.
    t0 = time.perf_counter_ns()
    try:
        runtime_cls.preload()
    except ImportError:
        pass  # missing() names what is not installed
    import_ms = (time.perf_counter_ns() - t0) / 1e6
    context = machine_context()
    if affinity:
        context["cpu_affinity"] = sorted(affinity)
    missing = runtime_cls.missing()
    if missing:
        return {"status": "unsupported", "error": missing, "measurements": [], "context": context}
    context["runtime_versions"] = runtime_cls.versions()
    options = RuntimeOptions(**job.get("runtime_options", {}))
    if options.threads == 0:  # "all cores": the same explicit count for every runtime, not each one's default
        options = dataclasses.replace(options, threads=context["cores_available"])
    context["threads"] = options.threads
    runtime = runtime_cls(options)
    artifact = Artifact.from_dict(job["artifact"])
    inputs = load_inputs(job["inputs_path"])
    mode = job["mode"]
    if mode == "outputs":
        runtime.load(artifact)
        outputs = runtime.infer(inputs)
        runtime.sync()
        save_outputs(job["outputs_path"], outputs)
        measurements: tuple = ()
    elif mode == "latency":
        from harness.measure import run_latency_pass

        import os

        from harness.cpustate import read_cpu_state, state_warnings

        settings = RunSettings.from_dict(job["settings"])
        cpus = os.sched_getaffinity(0)
        context["cpu_state_before"] = read_cpu_state(cpus)
        from harness.device_timing import device_timer_for

        pause = None
        if job.get("lockstep"):
            from harness.lockstep import worker_pause
            from harness.measure import Pause

            pause = Pause(worker_pause(send, receive), float(job["lockstep"]["block_s"]))
        result = run_latency_pass(runtime, artifact, inputs, settings, int(job["batch_size"]),
                                  device_timer=device_timer_for(runtime), pause=pause)
        context["cpu_state_after"] = read_cpu_state(cpus)
        context["warnings"] = state_warnings(context["cpu_state_before"], context["cpu_state_after"])
        save_outputs(job["outputs_path"], result.first_outputs)
        if job.get("samples_path"):  # after timing, so that it never disturbs a timed run
            save_outputs(job["samples_outputs_path"],
                         generate_samples(runtime, load_inputs(job["samples_path"]), int(job["batch_size"])))
        measurements = (Measurement("import_time", import_ms, "ms", "perf_counter"), *result.measurements)
    elif mode == "memory":
        from harness.memory import run_memory_pass

        settings = RunSettings.from_dict(job["settings"])
        measurements = run_memory_pass(runtime, artifact, inputs, settings.memory_runs)
    elif mode == "energy":
        from harness.energy.window import run_energy_pass

        settings = RunSettings.from_dict(job["settings"])
        measurements, unavailable = run_energy_pass(runtime, artifact, inputs, settings, int(job["batch_size"]),
                                                    job.get("energy", {}))
        context["energy_unavailable"] = unavailable
    else:
        raise ValueError(f"unknown worker mode {mode!r}")
    return {
        "status": "ok",
        "error": "",
        "measurements": [m.to_dict() for m in measurements],
        "context": context,
    }


def main() -> int:
    return serve(run_job, interactive=True)


if __name__ == "__main__":
    sys.exit(main())
