"""One job, run as named steps — the artifact's own figures, the latency pass (and its further rounds), fidelity
against the fp32 reference, the export tolerance, a denoiser's sampling loop, the memory pass, the energy pass, the
profile pass (per-op times and the roofline; its failure is noted, never the job's) — each ending the job with a
record when it fails. The runner plans jobs and keeps the store; this module measures one.

Every pass runs in a fresh worker through the target's launcher (``harness.protocol`` requests).
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.analysis.fidelity import compression_measurements, output_fidelity, sample_fidelity
from harness.analysis.fit import judge_fit
from harness.analysis.layer_fidelity import compare_layers, match_by_chain
from harness.analysis.roofline import precision_note, roofline_point
from harness.prepare.artifacts import load_outputs, max_abs_error, output_scale
from harness.exporters.onnx_probe import probe_onnx
from harness.config.suite import Suite
from harness.rounds import pool_rounds
from harness.launch.base import launcher_class
from harness.profiling.ops import OpProfile
from harness.protocol import WorkerRequest, WorkerResult, error_text
from harness.report.images import save_sample_grids
from harness.results.requests import append_request
from harness.types import Job, Measurement, RunRecord, TargetProfile
from harness.zoo import get_model


def worker_request(job: Job, target: TargetProfile, mode: str, outputs_path: str = "",
                   samples_outputs_path: str = "") -> WorkerRequest:
    """The request for one pass of ``job`` on ``target``."""
    return WorkerRequest(
        mode=mode, artifact=job.artifact.to_dict(), runtime=job.runtime,
        runtime_options={"threads": target.threads, "graph_optimization": target.onnx_graph_optimization,
                         **({} if target.litert_xnnpack else {"litert_xnnpack": False}),
                         **({} if target.litert_api == "interpreter" else {"litert_api": target.litert_api}),
                         **({} if target.onnx_execution_mode == "sequential"
                            else {"onnx_execution_mode": target.onnx_execution_mode})},
        cpu_affinity=tuple(target.cpu_affinity), inputs_path=job.inputs_path, outputs_path=outputs_path,
        samples_path=job.samples_path if samples_outputs_path else "", samples_outputs_path=samples_outputs_path,
        settings=job.settings.to_dict() | dict(target.thermal), batch_size=job.batch_size,
        energy=dict(target.energy) if mode in ("energy", "sustained") else None)


def worker_measurements(target: TargetProfile, raw: Iterable[Mapping[str, Any]]) -> list[Measurement]:
    """Measurements from a worker; under emulation every one is labelled so it is never read as a timing."""
    measurements = [Measurement.from_dict(m) for m in raw]
    reach = launcher_class(target.reach)
    if reach.timings_real:
        return measurements
    note = getattr(reach, "timings_note", "")
    return [dataclasses.replace(m, method=f"{m.method}+{target.reach}", note=note) for m in measurements]


def _contended(result: WorkerResult) -> bool:
    """Whether a latency pass's worker flagged it as measured under contention."""
    return bool((result.context.get("contention") or {}).get("contended"))


def loop_energy(sampler: Mapping[str, Any], measured: Iterable[Measurement], batch_size: int) -> list[Measurement]:
    """``loop_energy_per_image`` / ``loop_images_per_kwh`` per energy method: the steps of the sampler's loop × the
    energy of one denoiser call, over the images a call makes (the decoder of a latent loop is not included)."""
    from harness.diffusion import Sampler
    from harness.energy.window import per_image

    steps = int(sampler.get("steps", Sampler.steps))
    decoder = sampler.get("decoder", "")
    note = f"{steps} denoiser steps × J per call" + (f"; the decoder {decoder} not included" if decoder else "")
    out: list[Measurement] = []
    for m in measured:
        if m.metric == "energy_per_inference":
            out.extend(per_image(m.value, batch_size, m.method, note, prefix="loop_", steps=steps))
    return out


START_PARTS = ("interpreter_ms", "import_ms", "load_ms", "first_inference_ms")
"""Where a start's time goes (``harness.engine.start``): the medians of each, over the processes, in the stats."""


def start_measurement(kind: str, measured: list[Measurement]) -> Measurement:
    """``cold_start`` / ``warm_start``: one sample per fresh process (ms, creation → first result), its median as the
    value, the parts' medians and the sampled statistics in its stats."""
    from harness.stats import summarize

    samples = tuple(m.value for m in measured)
    parts = {part: float(statistics.median(m.stats.get(part, 0.0) for m in measured)) for part in START_PARTS}
    first = measured[0]
    return Measurement(f"{kind}_start", float(statistics.median(samples)), "ms", first.method, samples=samples,
                       stats=summarize(samples) | parts, note=first.note)


class Stop(Exception):
    """A step ended the job: ``status`` and ``error`` go into its record."""

    def __init__(self, status: str, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error


class JobRun:
    """Measure one job. ``board`` is the runner's ``BoardState`` for the target (notes unreachable results);
    ``context`` starts the record's context (commit, suite, project, model)."""

    STEPS = ("artifact_figures", "latency", "fidelity", "tolerance", "sampling", "memory", "fit", "loadgen",
             "energy", "start", "sustained", "profile", "layers")

    def __init__(self, job: Job, target: TargetProfile, launcher: Any, board: Any, suite: Suite, out_dir: Path,
                 cache_dir: Path, context: dict[str, Any]) -> None:
        self.job, self.target, self.launcher, self.board = job, target, launcher, board
        self.suite, self.out_dir, self.cache_dir = suite, out_dir, cache_dir
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.t0 = time.monotonic()
        self.context = dict(context) | {
            "target_description": target.description, "artifact_sha256": job.artifact.sha256,
            "artifact_recipe": dict(job.artifact.recipe)}
        if target.fit.declared:  # what the target lets one application take: the job is judged against it
            self.context["fit_budget"] = target.fit.to_dict()
        if job.work and job.work.get("largest_op_bytes"):  # for an estimate where the job cannot run
            self.context["work"] = {"largest_op_bytes": job.work["largest_op_bytes"]}
        self.passes: dict[str, float] = {}
        self.context["pass_seconds"] = self.passes  # where the job's wall time went: each pass, and the harness's
        self.measurements: list[Measurement] = []
        self.outputs: list[Any] = []
        self.samples: list[Any] | None = None

    # -- the record ----------------------------------------------------------------------------------------------
    def record(self, status: str, error: str) -> RunRecord:
        job = self.job
        self.passes["harness"] = round(max(0.0, time.monotonic() - self.t0 - sum(
            v for k, v in self.passes.items() if k != "harness")), 3)
        return RunRecord(
            job_key=job.key, model=job.artifact.model, variant=job.artifact.variant, format=job.artifact.format,
            runtime=job.runtime, target=job.target, batch_size=job.batch_size, artifact_id=job.artifact.id,
            artifact_bytes=job.artifact.bytes, status=status, error=error, measurements=tuple(self.measurements),
            context=self.context, started_at=self.started, duration_s=round(time.monotonic() - self.t0, 3))

    def run(self, export_error: str = "") -> RunRecord:
        """Every step in order; the first that stops the job gives its record."""
        if export_error:
            status = self.job.artifact.status if self.job.artifact.status in ("crashed", "timeout", "oom") else "failed"
            return self.record(status, export_error)
        if self.board.down:
            return self.record(self.board.down_status, self.board.down)
        if self.job.runtime in self.board.missing_runtimes:
            return self.record("unsupported", self.board.missing_runtimes[self.job.runtime])
        try:
            for step in self.STEPS:
                getattr(self, step)()
        except Stop as stop:
            return self.record(stop.status, stop.error)
        return self.record("ok", "")

    def _pass(self, name: str, request: WorkerRequest, what: str = "", keep_context: bool = False,
              extra_s: float = 0.0) -> WorkerResult:
        """One worker pass, timed into ``pass_seconds``; a result that is not ok stops the job. ``keep_context``: the
        result's context (machine, runtime versions, launcher) goes into the record, whatever the status.
        ``extra_s``: seconds the pass runs by design, on top of the worker's time limit (sustained mode)."""
        t = time.monotonic()
        try:
            result = self.launcher.run(request, self.job.settings.timeout_s + extra_s,
                                       memory_cap_bytes=self.target.memory_cap_bytes)
        finally:
            self.passes[name] = round(self.passes.get(name, 0.0) + time.monotonic() - t, 3)
        self.board.note(result.status, result.error)
        if keep_context:
            self.context.update(result.context)
        if not result.ok:
            raise Stop(result.status, what + error_text(result))
        return result

    def _not_measured(self, key: str, what: str, stop: Stop) -> None:
        """An optional pass that could not run: ``context[f"{key}_unavailable"]`` and a warning, the job goes on."""
        why = f"{stop.status}: {(stop.error.splitlines() or [''])[0][:300]}"
        self.context[f"{key}_unavailable"] = why
        self.context.setdefault("warnings", []).append(f"{what} not measured: {why}")

    def _keep_quiet_check(self, result: WorkerResult, key: str, prefix: str) -> None:
        """A timed pass's own quiet check (``key`` in its context; '' when it travels inside another entry) and its
        contention warnings (those starting with ``prefix``) go into the record."""
        context = result.context
        if key and context.get(key):
            self.context[key] = context[key]
        self.context.setdefault("warnings", []).extend(
            w for w in context.get("warnings", []) if w.startswith(prefix) and "busy" in w)

    # -- the steps -----------------------------------------------------------------------------------------------
    def artifact_figures(self) -> None:
        """Size, gzip size and the export's own validation error: known before anything runs."""
        artifact = self.job.artifact
        self.measurements.append(Measurement("artifact_size", artifact.bytes, "bytes", "stat"))
        if artifact.export_max_abs_error is not None and math.isfinite(artifact.export_max_abs_error):
            self.measurements.append(Measurement("export_max_abs_error", artifact.export_max_abs_error, "abs",
                                                 "validation-vs-own-torch-model"))
        if artifact.gzip_bytes is not None:
            self.measurements.append(Measurement("artifact_gzip_size", artifact.gzip_bytes, "bytes", "zlib-6"))

    def latency(self) -> None:
        """The timing pass (its first outputs and the sample set's outputs kept for fidelity), then any further
        rounds in fresh workers, pooled. The request is kept for ``harness ab``."""
        job, target = self.job, self.target
        with tempfile.TemporaryDirectory(prefix="edge-harness-") as tmp:
            outputs_path = str(Path(tmp) / "outputs.npz")
            samples_outputs_path = str(Path(tmp) / "samples.npz") if job.samples_path else ""
            request = worker_request(job, target, "latency", outputs_path, samples_outputs_path)
            result = self._pass("latency", request, keep_context=True)
            for retry in range(job.settings.contention_retries):  # a contended pass, measured again
                if not _contended(result):
                    break
                self.context["contention_retries"] = retry + 1
                result = self._pass("latency", request, keep_context=True)
            latency = worker_measurements(target, result.measurements)
            contended_rounds = int(_contended(result))
            for _ in range(job.settings.rounds - 1):
                more = self._pass("latency", worker_request(job, target, "latency", str(Path(tmp) / "round.npz")),
                                  "latency round: ")
                contended_rounds += int(_contended(more))
                latency = pool_rounds(latency, worker_measurements(target, more.measurements), job.batch_size)
            if isinstance(self.context.get("contention"), dict) and job.settings.rounds > 1:
                self.context["contention"] = dict(self.context["contention"]) | {
                    "rounds_contended": contended_rounds, "contended": contended_rounds > 0}
            self.measurements.extend(latency)
            append_request(self.out_dir, job.key, target.name, target.reach, request.to_dict(),
                           job.settings.timeout_s, target.memory_cap_bytes)
            self.outputs = load_outputs(outputs_path)
            self.samples = load_outputs(samples_outputs_path) if samples_outputs_path else None

    def fidelity(self) -> None:
        """Against the fp32 PyTorch reference (a user's own artifact has none: no figure, rather than a made-up one);
        the sample grids for the report."""
        job = self.job
        if not job.reference_path:
            return
        reference = load_outputs(job.reference_path)
        samples_reference = load_outputs(job.samples_reference_path) if self.samples else None
        save_sample_grids(self.out_dir, job.key, job.artifact.model, job.batch_size,
                          self.samples or self.outputs, samples_reference or reference)
        if self.samples:  # none when the sample set is smaller than one batch
            fidelity = sample_fidelity(self.samples, samples_reference, get_model(job.artifact.model), self.cache_dir)
        else:
            fidelity = output_fidelity(self.outputs, reference, get_model(job.artifact.model).output_range)
        if fidelity is None:
            raise Stop("failed", "outputs differ in count or shape from the PyTorch reference")
        self.measurements.extend(fidelity)

    def tolerance(self) -> None:
        """The outputs must reproduce what they are expected to (PyTorch fp32 for an export of it; the variant's own
        PyTorch model for an export of a compressed one) within the suite's export tolerance."""
        job = self.job
        self.measurements.extend(compression_measurements(job.artifact))
        if not job.expected_path:
            return
        expected = load_outputs(job.expected_path)
        err = max_abs_error(self.outputs, expected)
        allowed = self.suite.export_tolerance * output_scale(expected)
        if err > allowed:
            what = "PyTorch" if job.expected_path == job.reference_path else f"its {job.artifact.variant} PyTorch model"
            how = f"by {err:.3g} (tolerance {allowed:.3g})" if math.isfinite(err) else "in where outputs are NaN/inf"
            raise Stop("failed", f"outputs on {self.target.name} differ from {what} {how}")

    def sampling(self) -> None:
        """A denoiser with a sampler: the whole loop timed as one inference in a fresh worker (``loop_*``
        figures), and the trajectory's fidelity — the final images against the fp32 PyTorch pipeline's from the
        same initial noise — beside the one-step figures."""
        job, target = self.job, self.target
        if not job.sampler or not job.loop_inputs_path:
            return
        decoder_name = job.sampler["sampler"].get("decoder", "")
        if decoder_name:
            decoder = (job.sampler.get("decoder") or {}).get("artifact")
            if not decoder or decoder.get("status", "ok") != "ok":
                why = (decoder or {}).get("error") or "none was made"
                raise Stop("failed", f"sampling loop: the decoder {decoder_name} has no {job.artifact.format} "
                                     f"artifact: {why}")
        with tempfile.TemporaryDirectory(prefix="edge-harness-") as tmp:
            outputs_path = str(Path(tmp) / "loop.npz")
            samples_outputs_path = str(Path(tmp) / "loop-samples.npz") if job.loop_samples_path else ""
            request = dataclasses.replace(
                worker_request(job, target, "sampling", outputs_path, samples_outputs_path),
                inputs_path=job.loop_inputs_path, samples_path=job.loop_samples_path, sampler=dict(job.sampler))
            result = self._pass("sampling", request, "sampling loop: ")
            self.measurements.extend(worker_measurements(target, result.measurements))
            self._keep_quiet_check(result, "loop_contention", "sampling loop: ")
            images = load_outputs(samples_outputs_path) if samples_outputs_path else []
            reference = load_outputs(job.loop_samples_reference_path) if images else []
            if not images:  # no sample set, or one smaller than a batch: the timing batch's images
                images, reference = load_outputs(outputs_path), load_outputs(job.loop_reference_path)
        image_model = get_model(decoder_name or job.artifact.model)  # the images are the decoder's, if any
        fidelity = sample_fidelity(images, reference, image_model, self.cache_dir, images=True)
        if fidelity is None:
            raise Stop("failed", "the sampling loop's images differ in count or shape from the fp32 pipeline's")
        self.measurements.extend(dataclasses.replace(m, metric=f"loop_{m.metric}") for m in fidelity)

    def memory(self) -> None:
        memory = self._pass("memory", worker_request(self.job, self.target, "memory"), "memory pass: ")
        self.measurements.extend(worker_measurements(self.target, memory.measurements))

    def fit(self) -> None:
        """Will it fit: the measured peak RSS (the worker's, its runtime's imports included) and the file's size
        against the target's ``[fit]`` (``context["fit"]``); under emulation the emulator's own memory is in the
        peak, and the verdict says so."""
        peak = next((m.value for m in self.measurements if m.metric == "peak_rss"), None)
        basis = "measured" if launcher_class(self.target.reach).timings_real else "measured under emulation"
        verdict = judge_fit(peak, self.job.artifact.bytes, self.target.fit, basis)
        if verdict is not None:
            self.context["fit"] = verdict.to_dict()

    def loadgen(self) -> None:
        """MLPerf LoadGen's scenarios (``settings.loadgen``) in a worker of their own, beside the harness's loop: the
        measurements and LoadGen's results and settings (``context["loadgen"]``). A LoadGen that cannot run is a
        note (``loadgen_unavailable``) and a warning, never the job's end."""
        if not self.job.settings.loadgen:
            return
        try:
            result = self._pass("loadgen", worker_request(self.job, self.target, "loadgen"), "LoadGen pass: ")
        except Stop as stop:
            self._not_measured("loadgen", "MLPerf LoadGen was", stop)
            return
        self.measurements.extend(worker_measurements(self.target, result.measurements))
        self.context["loadgen"] = result.context.get("loadgen", {})
        self._keep_quiet_check(result, "", "LoadGen ")

    def energy(self) -> None:
        """Only for a target with energy sources; the record says which sources were unavailable and why."""
        if not self.target.energy.get("sources"):
            return
        energy = self._pass("energy", worker_request(self.job, self.target, "energy"), "energy pass: ")
        measured = [Measurement.from_dict(m) for m in energy.measurements]
        self.measurements.extend(measured)
        self.context["energy_unavailable"] = energy.context.get("energy_unavailable", {})
        if self.job.sampler:  # a denoiser: one generated image takes every step of its loop
            self.measurements.extend(loop_energy(self.job.sampler["sampler"], measured, self.job.batch_size))

    def start(self) -> None:
        """Cold and warm start (``settings.start_runs`` pairs of fresh workers, ``harness.engine.start``):
        ``cold_start`` and ``warm_start`` (ms, one sample per process; their parts' medians in the stats), the
        cache each runtime used and the page cache's state in ``context["start"]``. A start pass that fails is a
        note and a warning (``start_unavailable``), never the job's end."""
        runs = self.job.settings.start_runs
        if runs <= 0:
            return
        cache_id = f"{self.job.artifact.id[:12]}-{uuid.uuid4().hex[:8]}"
        found: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": []}
        raw: dict[str, list[Measurement]] = {"cold": [], "warm": []}
        try:
            for i in range(runs):
                for kind in ("cold", "warm"):
                    request = dataclasses.replace(worker_request(self.job, self.target, "start"), start={
                        "cache": kind, "cache_id": f"{cache_id}-{i}", "last": kind == "warm"})
                    result = self._pass("start", request, f"{kind} start: ")
                    raw[kind].extend(worker_measurements(self.target, result.measurements))
                    found[kind].append(result.context.get("start", {}))
        except Stop as stop:
            self._not_measured("start", "cold/warm start was", stop)
            return
        for kind in ("cold", "warm"):
            self.measurements.append(start_measurement(kind, raw[kind]))
        self.context["start"] = {kind: {"cache": runs_[-1].get("cache", ""), "page_cache": [r.get("page_cache", "")
                                                                                         for r in runs_]}
                                 for kind, runs_ in found.items()}

    def sustained(self) -> None:
        """Sustained mode (``settings.sustained_s`` > 0): one worker runs the job for minutes, in windows
        (``harness.engine.sustained``); the windows go into ``context["sustained"]``. A sustained pass that fails is
        a note and a warning (``sustained_unavailable``), never the job's end."""
        seconds = self.job.settings.sustained_s
        if seconds <= 0:
            return
        try:
            result = self._pass("sustained", worker_request(self.job, self.target, "sustained"), "sustained pass: ",
                                extra_s=seconds)
        except Stop as stop:
            self._not_measured("sustained", "the sustained run was", stop)
            return
        self.measurements.extend(worker_measurements(self.target, result.measurements))
        self.context["sustained"] = result.context.get("sustained", {})
        self.context.setdefault("warnings", []).extend(
            w for w in result.context.get("warnings", []) if w.startswith("sustained run:"))

    def profile(self) -> None:
        """Where the time goes, after every timed pass: per-op times from the runtime's own profiler in a worker of
        its own (``context["op_profile"]``, and the profiler's overhead against the timing pass), and the roofline:
        the model's FLOPs and bytes per inference against the target's measured ceilings. A profiler that fails or
        is missing is noted in the record (``op_profile_unavailable``); the job's status stays what its
        measurements made it."""
        job, target = self.job, self.target
        if job.settings.profile_runs <= 0:
            return
        latency = next((m for m in self.measurements if m.metric == "latency"), None)
        try:
            result = self._pass("profile", worker_request(job, target, "profile"), "profile pass: ")
            found = result.context
            if found.get("op_profile"):
                profile = OpProfile.from_dict(found["op_profile"])
                self.context["op_profile"] = found["op_profile"]
                measured = [Measurement(
                    "profile_run_time", profile.run_ms, "ms", profile.method,
                    note=f"median of {profile.runs} profiled inferences, the profiler's own clock")]
                if latency is not None and latency.value > 0 and profile.run_ms > 0:
                    measured.append(Measurement(
                        "profiler_overhead", profile.run_ms / latency.value, "ratio",
                        "profiled median / timing median",
                        note="how much the profiler itself slows an inference (1 = not at all)"))
                self.measurements.extend(worker_measurements(target, [m.to_dict() for m in measured]))
            elif found.get("op_profile_unavailable"):
                self.context["op_profile_unavailable"] = found["op_profile_unavailable"]
        except Stop as stop:
            self.context["op_profile_unavailable"] = f"{stop.status}: {(stop.error.splitlines() or [''])[0][:300]}"
        except Exception as exc:  # a profile that cannot be read is a note, never the measured job's end
            self.context["op_profile_unavailable"] = f"{type(exc).__name__}: {exc}"[:300]
        try:
            self._roofline(latency)
        except Exception as exc:
            self.context["roofline_unavailable"] = f"{type(exc).__name__}: {exc}"[:300]

    def _roofline(self, latency: Measurement | None) -> None:
        job, target = self.job, self.target
        work = job.work or {}
        if not launcher_class(target.reach).timings_real or latency is None or not job.work:
            return
        if job.runtime.endswith("-cuda"):
            self.context["roofline_unavailable"] = "the measured ceilings are the host CPU's, not the GPU's"
            return
        if work.get("error") or not work.get("flops") or not work.get("bytes"):
            self.context["roofline_unavailable"] = (f"counting FLOPs failed: {work['error']}" if work.get("error") else
                                                    "the FLOP counter counted no matmul or convolution in this model "
                                                    "(quantized PyTorch ops are not counted)")
            return
        ceilings = self._ceilings()
        if ceilings is None:
            return
        point = roofline_point(work["flops"], work["bytes"], latency.value, ceilings["peak_gflops"],
                               ceilings["bandwidth_gbs"])
        method = "flop_counter / latency p50"
        note = precision_note(job.artifact.compression, ceilings.get("precision", "float32"))
        self.measurements.extend([
            Measurement("flops", work["flops"], "FLOP", "torch.utils.flop_counter",
                        note="per inference of the batch; 2 per multiply-add of matmul/conv only"),
            Measurement("bytes_moved", work["bytes"], "bytes", "aten op tensor sizes",
                        note="per inference of the batch: every non-view op's tensor inputs and outputs"),
            Measurement("arithmetic_intensity", point.intensity, "FLOP/byte", "flops / bytes_moved"),
            Measurement("achieved_gflops", point.achieved_gflops, "GFLOP/s", method),
            Measurement("peak_fraction", point.peak_fraction, "fraction", f"achieved / {ceilings['peak_method']}",
                        note=note),
            Measurement("roof_fraction", point.roof_fraction, "fraction", "achieved / min(peak, intensity × bandwidth)",
                        note=note),
        ])
        self.context["roofline"] = {"bound": point.bound, "attainable_gflops": point.attainable_gflops,
                                    "ceilings": ceilings, "work_by_family": dict(work.get("by_family", {})),
                                    "work_method": work.get("method", ""), "precision_note": note}

    def _ceilings(self) -> dict[str, Any] | None:
        """The target's ceilings, measured once per run in a worker of their own (at the target's threads)."""
        board = self.board
        if board.ceilings is None and not board.ceilings_error:
            request = WorkerRequest("ceilings", runtime_options={"threads": self.target.threads},
                                    cpu_affinity=tuple(self.target.cpu_affinity), settings=self.job.settings.to_dict())
            t = time.monotonic()
            result = self.launcher.run(request, self.job.settings.timeout_s)
            self.passes["ceilings"] = round(time.monotonic() - t, 3)
            if result.ok and result.extra.get("ceilings"):
                board.ceilings = result.extra["ceilings"]
            else:
                board.ceilings_error = f"measuring the target's ceilings {result.status}: {error_text(result)}"[:300]
        if board.ceilings_error:
            self.context["roofline_unavailable"] = board.ceilings_error
        return board.ceilings

    def layers(self) -> None:
        """Where fidelity breaks, with the profile pass: the artifact's intermediate tensors on the job's inputs (a
        worker of its own; ONNX through a probe copy whose layer boundaries are outputs) against the fp32 PyTorch
        model's leaf-module outputs, PSNR per layer and the first layer that loses ``DROP_DB`` or more
        (``context["layer_fidelity"]``). A failure is noted (``layer_fidelity_unavailable``), never the job's."""
        job = self.job
        if job.settings.profile_runs <= 0 or not job.layers_reference_path:
            return
        from harness.profiling.tensors import TENSOR_RUNTIMES, unsupported_note

        if job.runtime not in TENSOR_RUNTIMES:  # known in advance: no worker started to find it out
            self.context["layer_fidelity_unavailable"] = unsupported_note(job.runtime)
            return
        try:
            self._layers()
        except Exception as exc:  # a layer comparison that cannot be made is a note, never the measured job's end
            self.context["layer_fidelity_unavailable"] = f"{type(exc).__name__}: {exc}"[:300]

    def _layers(self) -> None:
        import json

        job = self.job
        index = json.loads(Path(job.layers_reference_path).read_text())
        if index.get("unavailable"):
            self.context["layer_fidelity_unavailable"] = index["unavailable"]
            return
        arrays = load_outputs(Path(job.layers_reference_path).with_name(index["arrays"]))
        reference = dict(zip(index["order"], arrays))
        with tempfile.TemporaryDirectory(prefix="edge-harness-layers-") as tmp:
            artifact, probe = job.artifact, {}
            if artifact.format == "onnx":
                probe_path = Path(tmp) / "probe.onnx"
                probe = probe_onnx(artifact.path, probe_path)
                artifact = dataclasses.replace(artifact, id=f"{artifact.id}-layer-probe", path=str(probe_path),
                                               sha256="", bytes=probe_path.stat().st_size)
            outputs_path = str(Path(tmp) / "layers.npz")
            request = dataclasses.replace(worker_request(job, self.target, "layers", outputs_path),
                                          artifact=artifact.to_dict())
            try:
                result = self._pass("layers", request, "layers pass: ")
            except Stop as stop:
                self.context["layer_fidelity_unavailable"] = \
                    f"{stop.status}: {(stop.error.splitlines() or [''])[0][:300]}"
                return
            found_context = result.context
            names, arrays = found_context.get("tensor_names", []), load_outputs(outputs_path)
            if len(names) != len(arrays):
                self.context["layer_fidelity_unavailable"] = (f"the layers pass named {len(names)} tensors and "
                                                              f"saved {len(arrays)}")
                return
            tensors = dict(zip(names, arrays))
        if artifact.format == "onnx":
            candidate: dict[str, Any] = {probe[name]: array for name, array in tensors.items() if name in probe}
        elif artifact.format == "tflite":
            candidate = match_by_chain(tensors, index["chains"], reference, found_context.get("fused_activations", {}))
        else:
            candidate = tensors
        found = compare_layers(reference, index["order"], candidate)
        if not found.layers:
            self.context["layer_fidelity_unavailable"] = (
                f"no intermediate tensor matched one of the model's {found.modules} layers"
                + (f" ({'; '.join(found.notes)})" if found.notes else ""))
            return
        self.context["layer_fidelity"] = found.to_dict()

