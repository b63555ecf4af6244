"""The measurement worker: ``python -m harness.worker`` reads one ``WorkerRequest`` (``harness.protocol``) on stdin
and writes one ``WorkerResult`` line on stdout. The same worker runs locally, over SSH on a board (from the worker
bundle: this module, the floor modules, ``engine``, ``runtimes`` and ``energy``), in an emulated rootfs, or on a
cluster node.

Each mode is one function of ``MODES``: 'probe' (the board check) and 'inspect' (a user's artifact's inputs) need
no runtime instance; 'outputs', 'latency', 'memory' and 'energy' get a loaded-on-demand runtime, the inputs and the
run context ('sampling' wraps the runtime in a denoiser's whole sampling loop). Anything a native library prints to stdout is moved to stderr, so stdout carries only the result.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
import time
from typing import Any, Callable

from harness.protocol import WorkerRequest, WorkerResult, serve

WORKER_PACKAGES = ("numpy", "psutil")
"""What the worker itself needs on a board, besides a runtime (numpy is imported lazily so that the
board check can say it is missing)."""


def load_inputs(path: str) -> dict[str, Any]:
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {name: np.ascontiguousarray(data[name]) for name in data.files}


def save_outputs(path: str, outputs: Any) -> None:
    """Outputs as .npz at ``path``; nothing where the request names no file (a replayed request)."""
    import numpy as np

    if not path:
        return
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


# -- modes without a runtime instance -----------------------------------------------------------------------------
def probe(request: WorkerRequest | None = None) -> WorkerResult:
    """The board check: the machine, the worker's own packages, and what each runtime is missing."""
    from harness.engine.context import machine_context
    from harness.runtimes import RUNTIMES  # importing the package registers the built-in adapters

    missing = [p for p in WORKER_PACKAGES if importlib.util.find_spec(p) is None]
    return WorkerResult("ok", context=machine_context(), extra={
        "missing_packages": missing, "runtimes": {name: RUNTIMES.get(name).missing() for name in RUNTIMES.names()}})


def inspect(request: WorkerRequest) -> WorkerResult:
    """The inputs of a user's artifact, read by loading it."""
    from harness.runtimes.signature import read_signature

    return WorkerResult("ok", extra={"signature": read_signature(request.format, request.path)})


def ceilings(request: WorkerRequest) -> WorkerResult:
    """The machine's peak GFLOP/s and memory bandwidth for the roofline, at the request's thread count (0 = every
    core the worker may use), with the quiet check of a timed pass around them (``ceilings["contention"]``; the
    request's settings, else the defaults, set its limit and any wait for quiet)."""
    import os

    from harness.profiling.ceilings import measure_ceilings
    from harness.types import RunSettings

    if request.cpu_affinity:
        os.sched_setaffinity(0, list(request.cpu_affinity))
    threads = int((request.runtime_options or {}).get("threads", 0)) or len(os.sched_getaffinity(0))
    settings = RunSettings.from_dict(request.settings or {})
    context: dict[str, Any] = {}
    with watch_quiet(settings, context, "contention", "ceilings: "):
        measured = measure_ceilings(threads)
    measured = dataclasses.replace(measured, contention=context.pop("contention"))
    return WorkerResult("ok", extra={"ceilings": measured.to_dict()}, context=context)


# -- modes that run the artifact ----------------------------------------------------------------------------------
@dataclasses.dataclass
class Loaded:
    """What a measuring mode gets: the runtime (not yet loaded with the artifact), the artifact, the inputs, the
    run context so far, the import time of the runtime's library (ms) and the lockstep channel."""

    runtime: Any
    artifact: Any
    inputs: dict[str, Any]
    context: dict[str, Any]
    import_ms: float
    send: Any = None
    receive: Any = None
    options: Any = None
    """The ``RuntimeOptions`` the runtime was made with (a second adapter, e.g. a sampler's decoder, gets the same)."""


def outputs(request: WorkerRequest, job: Loaded) -> tuple:
    job.runtime.load(job.artifact)
    result = job.runtime.infer(job.inputs)
    job.runtime.sync()
    save_outputs(request.outputs_path, result)
    return ()


def before_timing(settings: Any, cpus: tuple[int, ...], context: dict[str, Any]) -> None:
    """Thermal cooldown and the wait for quiet CPUs, when the settings ask for them (what happened goes into
    ``context``: ``cooldown``, ``quiet_wait``)."""
    from harness.engine.quiet import cool_down, wait_for_quiet

    if settings.cooldown_to_c is not None:
        context["cooldown"] = cool_down(cpus, settings.cooldown_to_c, settings.cooldown_max_s)
    if settings.quiet_wait_s > 0:
        context["quiet_wait"] = wait_for_quiet(cpus, settings.contention_max_cores, settings.quiet_wait_s)


def flag_contention(settings: Any, busy: dict[str, Any], context: dict[str, Any], what: str = "") -> dict[str, Any]:
    """``busy`` (a ``BusyWindow`` reading) with its limit and whether beyond it; a warning when it is."""
    others = busy.get("others_cores")
    busy["limit_cores"] = settings.contention_max_cores
    busy["contended"] = others is not None and others > settings.contention_max_cores
    if busy["contended"]:
        context.setdefault("warnings", []).append(
            f"{what}other processes kept {others:.2f} of the worker's {len(busy['cpus'])} CPU(s) busy while it was "
            f"timed (limit {settings.contention_max_cores:g}): this pass is left out of verdicts; stop the other "
            f"load, or set quiet_wait_s{'' if what else ' / contention_retries'}")  # retries: the latency pass only
    return busy


class watch_quiet:
    """Around a timed pass other than the latency pass (sampling loop, LoadGen scenario): wait for quiet when
    the settings ask, then record how busy the worker's CPUs were apart from it in ``context[key]``."""

    def __init__(self, settings: Any, context: dict[str, Any], key: str, what: str) -> None:
        import os

        self.settings, self.context, self.key, self.what = settings, context, key, what
        self.cpus = tuple(sorted(os.sched_getaffinity(0)))

    def __enter__(self) -> "watch_quiet":
        from harness.engine.quiet import BusyWindow, wait_for_quiet

        if self.settings.quiet_wait_s > 0:
            self.context[f"{self.key}_quiet_wait"] = wait_for_quiet(
                self.cpus, self.settings.contention_max_cores, self.settings.quiet_wait_s)
        self.window = BusyWindow(self.cpus).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.context[self.key] = flag_contention(self.settings, self.window.stop(), self.context, self.what)


def after_timing(settings: Any, busy: dict[str, Any], context: dict[str, Any]) -> None:
    """The pass's flags: ``contention`` (how busy the CPUs were apart from the worker, and whether beyond the
    limit), ``throttled``, a cooldown that did not reach its limit; each with a warning saying what to do."""
    from harness.engine.quiet import throttled

    context["contention"] = flag_contention(settings, busy, context)
    warnings = context.setdefault("warnings", [])
    if busy.get("steal_share") and busy["steal_share"] > 0.05:
        warnings.append(f"the hypervisor gave {busy['steal_share']:.0%} of the CPUs' time to other guests during "
                        "the pass (steal): timings of a shared VM; prefer a dedicated machine")
    context["throttled"] = throttled(context.get("cpu_state_before", {}), context.get("cpu_state_after", {}),
                                     settings.throttle_freq_drop)
    cooldown = context.get("cooldown")
    if cooldown and cooldown.get("reached") is False:
        temp = cooldown.get("temp_c_end")
        where = [f"{temp:.0f} °C (limit {cooldown['limit_c']:g} °C)"] if temp is not None else []
        where += ["the CPU clock still thermally capped"] if cooldown.get("cooling_end") else []
        warnings.append(f"the cooldown stopped after {cooldown['waited_s']:g} s at {' with '.join(where)}: "
                        "the pass started hot")


def latency(request: WorkerRequest, job: Loaded) -> tuple:
    import os

    from harness.engine.cpustate import read_cpu_state, state_warnings
    from harness.engine.device_timing import device_timer_for
    from harness.engine.measure import Pause, run_latency_pass
    from harness.engine.quiet import BusyWindow
    from harness.types import Measurement, RunSettings

    settings = RunSettings.from_dict(request.settings or {})
    cpus = tuple(sorted(os.sched_getaffinity(0)))
    before_timing(settings, cpus, job.context)
    job.context["cpu_state_before"] = read_cpu_state(cpus)
    pause = None
    window = BusyWindow(cpus)
    if request.lockstep:
        from harness.protocol import worker_pause

        wait = worker_pause(job.send, job.receive)

        def paused() -> None:  # the other side's turn: its CPU time is not contention of ours
            window.suspend()
            wait()
            window.resume()

        pause = Pause(paused, float(request.lockstep["block_s"]))
    window.start()
    result = run_latency_pass(job.runtime, job.artifact, job.inputs, settings, request.batch_size,
                              device_timer=device_timer_for(job.runtime), pause=pause)
    busy = window.stop()
    job.context["cpu_state_after"] = read_cpu_state(cpus)
    job.context["warnings"] = state_warnings(job.context["cpu_state_before"], job.context["cpu_state_after"])
    after_timing(settings, busy, job.context)
    save_outputs(request.outputs_path, result.first_outputs)
    if request.samples_path:  # after timing, so that it never disturbs a timed run
        save_outputs(request.samples_outputs_path,
                     generate_samples(job.runtime, load_inputs(request.samples_path), request.batch_size))
    return (Measurement("import_time", job.import_ms, "ms", "perf_counter"), *result.measurements)


def sampling(request: WorkerRequest, job: Loaded) -> tuple:
    """The whole sampling loop, timed as one inference (``loop_latency``: ms per generated batch, with its
    ``loop_step_latency``, the decoder's ``loop_decode_latency`` and the sampler's ``loop_overhead``); then the
    loop's sample set, for the trajectory's fidelity."""
    from harness.engine.measure import run_latency_pass
    from harness.engine.sampling_loop import SamplingLoop
    from harness.diffusion import Sampler
    from harness.types import Artifact, Measurement, RunSettings
    from harness import stats

    settings = RunSettings.from_dict(request.settings or {})
    spec = dict(request.sampler or {})
    sampler = Sampler.from_dict(spec.get("sampler", {}))
    decoder = dict(spec.get("decoder") or {})
    if sampler.decoder and not decoder.get("artifact"):
        raise ValueError(f"the sampler names the decoder {sampler.decoder!r} but the request carries no artifact "
                         "for it")
    loop = SamplingLoop(job.runtime, sampler, spec.get("inputs", ()), spec.get("time_dtype", "float32"),
                        decoder=type(job.runtime)(job.options) if decoder else None,
                        decoder_input=decoder.get("input", ""),
                        decoder_artifact=Artifact.from_dict(decoder["artifact"]) if decoder else None)
    with watch_quiet(settings, job.context, "loop_contention", "sampling loop: "):
        result = run_latency_pass(loop, job.artifact, job.inputs, settings, request.batch_size)
    by = {m.metric: m for m in result.measurements}
    n = len(by["latency"].samples)
    timed = loop.loops[-n:]  # the steady-state loops: the last ones run
    decodes_ms = [ns / 1e6 for ns in loop.decodes[-n:]] if decoder else [0.0] * n
    step_ms = [ns / 1e6 for steps in timed for ns in steps]
    overhead_ms = [total - sum(ns for ns in steps) / 1e6 - dec
                   for total, steps, dec in zip(by["latency"].samples, timed, decodes_ms)]
    note = f"{sampler.label}, {request.batch_size} image(s) per loop"
    decode = (Measurement("loop_decode_latency", stats.summarize(decodes_ms)["p50"], "ms", "perf_counter",
                          samples=tuple(round(v, 6) for v in decodes_ms), stats=stats.summarize(decodes_ms),
                          note=f"the decoder {sampler.decoder} on the loop's final latents, once per loop"),) \
        if decoder else ()
    out = decode + (
        Measurement("loop_latency", by["latency"].value, "ms", "perf_counter", samples=by["latency"].samples,
                    stats=by["latency"].stats, note=f"one whole sampling loop: {note}"),
        Measurement("loop_step_latency", stats.summarize(step_ms)["p50"], "ms", "perf_counter",
                    stats=stats.summarize(step_ms), note=f"one denoiser step within the loop ({len(step_ms)} steps)"),
        Measurement("loop_overhead", stats.summarize(overhead_ms)["p50"], "ms", "perf_counter",
                    samples=tuple(round(v, 6) for v in overhead_ms),
                    note="a loop's time not spent in its denoiser steps" + (" or its decoder" if decoder else "")
                         + ": the sampler's arithmetic"),
        Measurement("loop_throughput", request.batch_size / (by["latency"].value / 1e3), "items/s", "batch/median",
                    note="generated images per second"),
        Measurement("loop_first", by["first_inference"].value, "ms", "perf_counter",
                    note="the first whole loop after load"),
    )
    save_outputs(request.outputs_path, result.first_outputs)
    if request.samples_path:  # after timing, so that it never disturbs a timed run
        save_outputs(request.samples_outputs_path,
                     generate_samples(loop, load_inputs(request.samples_path), request.batch_size))
    return out


def profile(request: WorkerRequest, job: Loaded) -> tuple:
    """Per-op profile (``context["op_profile"]``: ``harness.profiling.ops.OpProfile``) with the runtime's own profiler,
    in a worker of its own: ``settings.profile_runs`` profiled inferences after one warm-up. A runtime without a
    profiler says so in ``op_profile_unavailable``."""
    from harness.profiling import op_profiler
    from harness.types import RunSettings

    settings = RunSettings.from_dict(request.settings or {})
    profiler = op_profiler(request.runtime)
    if profiler is None:
        job.context["op_profile_unavailable"] = f"no op profiler is registered for the runtime {request.runtime!r}"
        return ()
    result = profiler(job.runtime, job.artifact, job.inputs, max(1, settings.profile_runs))
    if not result.ops:
        job.context["op_profile_unavailable"] = "; ".join(result.notes) or "the profiler recorded no op"
        return ()
    job.context["op_profile"] = result.to_dict()
    return ()


def layers(request: WorkerRequest, job: Loaded) -> tuple:
    """Intermediate tensors of one inference on the job's inputs (``harness.profiling.tensors``), for "where fidelity
    breaks": saved to ``outputs_path`` in order, their names in ``context["tensor_names"]`` (and, for a .tflite file,
    the activations its ops fuse in ``context["fused_activations"]``)."""
    from harness.profiling.tensors import intermediate_tensors

    tensors = intermediate_tensors(job.runtime, job.artifact, job.inputs)
    names = list(tensors)
    save_outputs(request.outputs_path, [tensors[n] for n in names])
    job.context["tensor_names"] = names
    if job.artifact.format == "tflite":
        from harness.profiling.tensors import fused_activations

        job.context["fused_activations"] = fused_activations(job.artifact.path)
    return ()


def memory(request: WorkerRequest, job: Loaded) -> tuple:
    from harness.engine.memory import run_memory_pass
    from harness.types import RunSettings

    settings = RunSettings.from_dict(request.settings or {})
    return tuple(run_memory_pass(job.runtime, job.artifact, job.inputs, settings.memory_runs))


def energy(request: WorkerRequest, job: Loaded) -> tuple:
    from harness.energy.window import run_energy_pass
    from harness.types import RunSettings

    settings = RunSettings.from_dict(request.settings or {})
    measurements, unavailable = run_energy_pass(job.runtime, job.artifact, job.inputs, settings, request.batch_size,
                                                dict(request.energy or {}))
    job.context["energy_unavailable"] = unavailable
    return tuple(measurements)


def start(request: WorkerRequest, job: Loaded) -> tuple:
    """This fresh process's time to a first result (``harness.engine.start``): cold (the runtime's start-up cache
    emptied, the file dropped from the page cache) or warm (both as the previous process left them). ``start_time``
    (ms) = the interpreter's start up to this request (Python, the worker's imports, reading the request) + the
    runtime library's import + the load + the first inference; the harness's own work between (the run context,
    the inputs file, the caches) is left out. Which cache the runtime used goes into ``context["start"]``."""
    from harness.engine.start import drop_from_page_cache, page_cache_state, prepare_cache, remove_cache
    from harness.engine.start import time_first_result
    from harness.types import Measurement

    spec = dict(request.start or {})
    cold = spec.get("cache") == "cold"
    folder = prepare_cache(str(spec.get("cache_id", "")), cold)
    page_cache = drop_from_page_cache(job.artifact.path) if cold else page_cache_state(job.artifact.path)
    runtime = type(job.runtime)(dataclasses.replace(job.options, cache_dir=str(folder)))
    try:
        timed = time_first_result(runtime, job.artifact, job.inputs)
    finally:
        if spec.get("last"):  # the pair's cache goes, whether or not this process got a result
            remove_cache(str(spec.get("cache_id", "")))
    cache = getattr(runtime, "start_cache", "") or getattr(runtime, "no_start_cache", "")
    entered = float(job.context.pop("_entered_ms", 0.0))
    total = entered + job.import_ms + timed["load_ms"] + timed["first_inference_ms"]
    which = "cold" if cold else "warm"
    parts = {"interpreter_ms": entered, "import_ms": job.import_ms, **timed}
    job.context["start"] = {"kind": which, "cache": cache or f"none: {request.runtime} keeps no start-up cache here",
                            "page_cache": page_cache, **{k: round(v, 3) for k, v in parts.items()}}
    return (Measurement("start_time", total, "ms", "process creation → first result",
                        stats={k: float(v) for k, v in parts.items()},
                        note=f"{which}: {job.context['start']['cache']}; artifact file {page_cache}"),)


def sustained(request: WorkerRequest, job: Loaded) -> tuple:
    """Minutes of back-to-back inferences in windows (``harness.engine.sustained``): ``sustained_latency`` (the last
    windows' median p50, ms; each window's p50 as a sample), ``sustained_ratio`` (last windows / first windows), and
    every window (p50, p90, MHz, °C, cooling state, J per inference where the target has an energy source) in
    ``context["sustained"]``."""
    import os

    from harness.energy.window import available_probes
    from harness.engine.cpustate import read_cpu_state
    from harness.engine.measure import warm_up
    from harness.engine.sustained import edges, run_windows, sustained_ratio
    from harness.types import Measurement, RunSettings

    settings = RunSettings.from_dict(request.settings or {})
    cpus = tuple(sorted(os.sched_getaffinity(0)))
    probes, unavailable = available_probes(dict(request.energy or {}))
    before_timing(settings, cpus, job.context)  # the target's cooldown: the previous job's heat is not this one's start
    state_before = read_cpu_state(cpus)
    job.runtime.load(job.artifact)

    def call() -> None:
        job.runtime.infer(job.inputs)
        job.runtime.sync()

    warm_up(call, settings, time.perf_counter_ns)
    windows = run_windows(call, settings.sustained_s, settings.sustained_window_s, cpus, probes[:1])
    k, first, last = edges(windows)
    ratio = sustained_ratio(windows)
    contended = sum(1 for w in windows if w.others_cores is not None and w.others_cores > settings.contention_max_cores)
    job.context["sustained"] = {"duration_s": settings.sustained_s, "window_s": settings.sustained_window_s,
                                "edge_windows": k, "windows": [w.to_dict() for w in windows],
                                "contended_windows": contended, "energy_unavailable": unavailable,
                                "cpu_state_before": state_before, "cooldown": job.context.get("cooldown")}
    if contended:
        job.context.setdefault("warnings", []).append(
            f"sustained run: other processes kept more than {settings.contention_max_cores:g} of the worker's CPUs "
            f"busy in {contended} of {len(windows)} windows: its curve mixes their load with the device's own drift")
    out = [Measurement("sustained_latency", last, "ms", "perf_counter per window", samples=tuple(
        w.p50_ms for w in windows[-k:]), stats={"first_p50": first, "last_p50": last, "windows": float(len(windows)),
                                                "window_s": settings.sustained_window_s},
        note=f"the median p50 of the last {k} of {len(windows)} windows of {settings.sustained_window_s:g} s (the "
             "samples: those windows' p50s; every window in context.sustained)")]
    if ratio is not None:
        out.append(Measurement("sustained_ratio", ratio, "ratio", f"last {k} / first {k} windows' median p50"))
    return tuple(out)


def loadgen(request: WorkerRequest, job: Loaded) -> tuple | WorkerResult:
    """The artifact under MLPerf LoadGen's scenarios (``RunSettings.loadgen``), after the harness's warm-up:
    ``loadgen_ss_p50`` / ``_p90`` / ``_p90_early_stopping`` (ms per inference of the batch) and
    ``loadgen_offline_throughput`` (items/s); LoadGen's results and settings in ``context["loadgen"]``."""
    from harness.engine.loadgen import figures, parse_scenarios, run_scenario, warm_median_ns
    from harness.engine.measure import warm_up
    from harness.types import Measurement, RunSettings

    settings = RunSettings.from_dict(request.settings or {})
    scenarios = parse_scenarios(settings.loadgen)
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError:
        return WorkerResult("unsupported", "MLPerf LoadGen is not installed here (pip install mlcommons-loadgen)",
                            context=job.context)
    job.runtime.load(job.artifact)

    def infer() -> None:
        job.runtime.infer(job.inputs)
        job.runtime.sync()

    expected_ns = warm_median_ns(infer, warm_up, settings)
    found: dict[str, Any] = {}
    out = []
    for scenario in scenarios:
        with watch_quiet(settings, job.context, "loadgen_contention", f"LoadGen {scenario}: "):
            run = run_scenario(infer, scenario, expected_ns, settings.min_duration_s, settings.min_runs)
        found[scenario] = dict(run) | {"contention": job.context.pop("loadgen_contention")}
        r = run["results"]
        validity = f"LoadGen result {r.get('result_validity', '?')}" + (
            f" ({r['result_invalid_reason']})" if r.get("result_invalid_reason") else "")
        given = figures(scenario, r)
        if scenario == "single-stream":
            for metric, ns in given.items():
                out.append(Measurement(metric, ns / 1e6, "ms", "mlperf-loadgen SingleStream",
                                       note=f"{validity}; {r.get('result_query_count', '?')} queries"))
        elif given:
            throughput = given["loadgen_offline_throughput"] * request.batch_size
            out.append(Measurement("loadgen_offline_throughput", throughput, "items/s", "mlperf-loadgen Offline",
                                   note=f"{validity}; one sample = one batch of {request.batch_size}"))
    job.context["loadgen"] = found
    return tuple(out)


MODES: dict[str, Callable[..., Any]] = {"probe": probe, "inspect": inspect, "ceilings": ceilings, "outputs": outputs,
                                        "latency": latency, "sampling": sampling, "profile": profile, "layers": layers,
                                        "memory": memory, "energy": energy, "loadgen": loadgen, "start": start,
                                        "sustained": sustained}
"""Every mode of ``harness.protocol.MODES``: probe / inspect / ceilings take the request; the others the request and
a ``Loaded``."""
REQUEST_ONLY = ("probe", "inspect", "ceilings")


def _prepare_runtime(request: WorkerRequest, send: Any, receive: Any) -> Loaded | WorkerResult:
    """Pin the CPUs, import the runtime's library (timed), check it can run here, make the runtime instance."""
    from harness.engine.context import machine_context
    from harness.runtimes import RuntimeOptions, runtime_class
    from harness.types import Artifact

    affinity = list(request.cpu_affinity)
    if affinity:
        import os

        available = sorted(os.sched_getaffinity(0))
        if not set(affinity) <= set(available):
            return WorkerResult("unsupported", f"cpu_affinity {sorted(affinity)} is not available here "
                                               f"(CPUs: {available})")
        os.sched_setaffinity(0, affinity)
    runtime_cls = runtime_class(request.runtime)
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
        return WorkerResult("unsupported", missing, context=context)
    context["runtime_versions"] = runtime_cls.versions()
    options = RuntimeOptions(**request.runtime_options)
    if options.threads == 0:  # "all cores": the same explicit count for every runtime, not each one's default
        options = dataclasses.replace(options, threads=context["cores_available"])
    context["threads"] = options.threads
    if options.litert_api != "interpreter" and "tflite" in runtime_cls.formats:  # which LiteRT API timed the job
        context["litert_api"] = "compiled" if options.litert_xnnpack else "interpreter (xnnpack = false)"
    return Loaded(runtime_cls(options), Artifact.from_dict(request.artifact or {}), load_inputs(request.inputs_path),
                  context, import_ms, send, receive, options)


def _start_clock() -> float:
    from harness.engine.start import clock_now

    return clock_now()


def run_job(data: dict[str, Any], send: Any = None, receive: Any = None) -> WorkerResult:
    """One request; ``send``/``receive`` are the lockstep channel (``harness.protocol.serve``). Plugins load here,
    inside ``serve``: a broken one is a failed result naming it, and what it prints goes to stderr."""
    from harness.plugins import load_plugins

    entered = _start_clock()  # a start pass times the interpreter's own start up to here
    load_plugins()
    request = WorkerRequest.from_dict(data)
    mode = MODES[request.mode]
    if request.mode in REQUEST_ONLY:
        return mode(request)
    job = _prepare_runtime(request, send, receive)
    if isinstance(job, WorkerResult):
        return job
    if request.mode == "start":
        from harness.engine.start import process_age_ms

        job.context["_entered_ms"] = process_age_ms(entered)
    measurements = mode(request, job)
    if isinstance(measurements, WorkerResult):  # the mode found it cannot run here
        return measurements
    return WorkerResult("ok", measurements=tuple(m.to_dict() for m in measurements), context=job.context)


def main() -> int:
    return serve(run_job, interactive=True)


if __name__ == "__main__":
    sys.exit(main())
