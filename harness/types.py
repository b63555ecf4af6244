"""Core types: small, frozen, serialisable dataclasses that flow between the pure steps.

model spec → artifact (torch) → export → artifact (onnx | tflite) → job → worker → run record.
Times are in seconds unless a field name says otherwise; sizes are in bytes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

SCHEMA_VERSION = 1
"""Version of the JSON run-record schema written to results.jsonl."""

RUN_STATUSES = ("ok", "failed", "crashed", "timeout", "oom", "unsupported", "unreachable")
"""``unreachable``: the target could not be reached (SSH connection refused, lost or not trusted)."""
FORMATS = ("torch", "onnx", "tflite", "executorch")


@dataclass(frozen=True)
class ModelSpec:
    """A generator in the zoo.

    ``builder(**kwargs)`` returns an ``nn.Module`` in eval mode with deterministic weights for ``seed``;
    ``make_inputs(batch, seed)`` returns the ordered example inputs (name → float32 array).
    """

    name: str
    builder: Callable[..., Any]
    make_inputs: Callable[[int, int], dict[str, Any]]
    seed: int = 0
    description: str = ""
    kind: str = "generator"
    builder_kwargs: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    """Path of the file that defines the spec: a models/*.py file, or the project config declaring it (the worker
    rebuilds torch models from it)."""
    training: Any = None
    """A ``harness.training.DigitsTraining`` when the generator is trained on digits (weights cached), else None."""
    checkpoint: Any = None
    """A ``harness.prepare.checkpoints.Checkpoint``: the user's weights, loaded after the builder (None = as built)."""
    output_range: tuple[float, float] | None = None
    """The output's nominal value range, when declared: PSNR is taken over it (else inferred, see fidelity)."""
    sampler: Any = None
    """A ``harness.diffusion.Sampler`` for a denoiser: its jobs also measure the whole sampling loop (None = one
    call is the whole generation)."""


@dataclass(frozen=True)
class CompressionSpec:
    """One compressed variant of every model in a suite: a registered compressor and its parameters.

    ``after`` names the variant this one is applied to ('' = the fp32 model), e.g. int8 quantization of a
    channel-pruned model.
    """

    name: str
    """The variant's name in records and reports (a plain name: letters, digits, '-', '_')."""
    method: str
    """A registered compressor (``harness list compressors``)."""
    params: Mapping[str, Any] = field(default_factory=dict)
    after: str = ""
    """The variant this one is applied to ('' = the fp32 model)."""
    models: tuple[str, ...] = ()
    """The models this variant is made of (() = every model of the suite)."""

    def applies_to(self, model: str) -> bool:
        return not self.models or model in self.models

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "method": self.method, "params": dict(self.params), "after": self.after,
                "models": list(self.models)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CompressionSpec":
        fields = _known_fields(cls, data)
        fields["models"] = tuple(fields.get("models", ()))
        return cls(**fields)


@dataclass(frozen=True)
class Artifact:
    """One file a runtime can load. ``id`` = hash(parent id, step, config, tool versions)."""

    id: str
    format: str
    path: str
    bytes: int
    model: str
    variant: str
    batch_size: int | None
    parent_id: str | None
    recipe: Mapping[str, Any]
    status: str = "ok"
    error: str = ""
    export_max_abs_error: float | None = None
    sha256: str = ""
    """sha256 of the file's bytes ('' for a failed export)."""
    gzip_bytes: int | None = None
    """Size after gzip -6 (bytes): what zeroed weights buy on disk or over the air, where dense kernels gain nothing."""
    compression: Mapping[str, Any] = field(default_factory=dict)
    """What the compression steps behind this artifact changed (sparsity, channels kept, quantized fractions)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Artifact":
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class SshSettings:
    """How to reach a board over SSH. Host keys are checked against ``known_hosts``; never auto-accepted."""

    host: str
    user: str
    python: str
    """Absolute path of the board's Python (the remote PATH comes from a login shell: do not rely on it)."""
    port: int = 22
    identity_file: str = ""
    known_hosts: str = "~/.ssh/known_hosts"
    workdir: str = "/tmp/edge-harness"
    """Folder on the board for the worker bundle, artifacts and inputs (content-addressed, reused)."""
    connect_timeout_s: float = 10.0


@dataclass(frozen=True)
class EmulatedSettings:
    """An arm64 Debian rootfs run under qemu-user (scripts/arm64-rootfs.sh builds it)."""

    rootfs: str
    python: str = "/opt/edge-venv/bin/python"


@dataclass(frozen=True)
class FitBudget:
    """What one application may take on the device (a target profile's ``[fit]`` table): ``memory_mb`` of resident
    memory (MB = MiB here, as peak RSS is shown) and ``storage_mb`` of model files (0 = not declared), the share of
    each a verdict of "fits" keeps free (``margin``), and where the figures come from (``source``)."""

    memory_mb: float = 0.0
    """Resident memory one application may use (MiB), judged against the worker's peak RSS; 0 = not declared."""
    storage_mb: float = 0.0
    """What the model file may take (MiB), judged against the artifact's size; 0 = not declared."""
    margin: float = 0.10
    """The share of each budget a verdict of "fits" keeps free (under the budget by less: "tight")."""
    source: str = ""
    """Where the figures come from (shown with the verdicts)."""

    @property
    def declared(self) -> bool:
        return bool(self.memory_mb or self.storage_mb)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TargetProfile:
    """A device profile loaded from ``targets/<name>.toml``."""

    name: str
    description: str
    arch: str
    reach: str
    runtimes: tuple[str, ...]
    threads: int
    """Intra-op threads given to each runtime; 0 means all cores available to the worker."""
    onnx_graph_optimization: str = "all"
    onnx_execution_mode: str = "sequential"
    """``[onnxruntime] execution_mode``: "sequential", or "parallel" (independent branches at once)."""
    litert_xnnpack: bool = True
    """LiteRT applies its default XNNPACK delegate (``[litert] xnnpack = false``: the built-in kernels only)."""
    litert_api: str = "interpreter"
    """``[litert] api``: "interpreter" (the classic Interpreter), or "compiled" (the CompiledModel API, whose
    XNNPACK weight cache the start pass uses)."""
    memory_cap_mb: int = 0
    """Resident-memory cap per worker (MiB); a worker above it is killed and its job recorded ``oom``. 0 = none.
    Enforced for local targets."""
    energy: Mapping[str, Any] = field(default_factory=dict)
    """[energy] table: sources (probe names, in order of preference), power_model, meter, jetson_rail, vcgencmd."""
    cpu_affinity: tuple[int, ...] = ()
    """CPUs the worker is pinned to (os.sched_setaffinity); empty = every CPU."""
    thermal: Mapping[str, Any] = field(default_factory=dict)
    """[thermal] table: cooldown_to_c, cooldown_max_s, throttle_freq_drop (the RunSettings fields of those names,
    for this target's jobs)."""
    ssh: SshSettings | None = None
    emulated: EmulatedSettings | None = None
    reach_options: Mapping[str, Any] = field(default_factory=dict)
    """A plugin reach's own table (``[<reach>]`` of the profile), checked by its launcher class."""
    fit: FitBudget = field(default_factory=FitBudget)
    """``[fit]``: the memory and storage an application may take on the device; every job is judged against it."""
    source: str = ""

    @property
    def memory_cap_bytes(self) -> int | None:
        return self.memory_cap_mb * 2**20 if self.memory_cap_mb else None


@dataclass(frozen=True)
class RunSettings:
    """How the harness measures one artifact (the timing loop's stopping rule and caps)."""

    warmup_min_runs: int = 5
    warmup_max_runs: int = 200
    warmup_max_s: float = 5.0
    warmup_tolerance: float = 0.10
    """Warm-up ends when the medians of its first and second halves differ by at most this fraction."""
    min_runs: int = 50
    min_duration_s: float = 1.0
    max_duration_s: float = 30.0
    target_ci_rel_width: float | None = None
    """Optional: keep sampling until the 95% CI of the median is this narrow (fraction of the median)."""
    memory_runs: int = 5
    energy_min_s: float = 2.0
    """Shortest energy window (seconds): sensor counters update every ~1–100 ms."""
    timeout_s: float = 300.0
    """Wall-clock limit for one worker process (seconds)."""
    prepare_timeout_s: float = 1800.0
    """Wall-clock limit for building and exporting one model, all formats and batch sizes (seconds)."""
    prepare_memory_mb: int = 0
    """Resident-memory cap of the prepare child (MiB; 0 = ``PREPARE_MEMORY_SHARE`` of this machine's memory). A
    variant whose compression or export passes it fails alone (``oom``), and the model is prepared again
    without it."""
    variant_timeout_s: float = 0.0
    """Wall-clock limit for one variant's compression or export step in the prepare child (seconds; 0 = only
    ``prepare_timeout_s``). A variant that passes it fails alone (``timeout``)."""
    rounds: int = 1
    """Latency is measured in this many fresh worker processes, one after another, and their samples pooled.
    Each process lands at another memory layout and moment of the machine: pooling rounds averages those
    run-level effects, which within-process samples cannot see. The rounds' medians and p90s are kept
    (``latency_round_medians``, ``latency_round_p90s``), and ``harness gate`` tests the medians when both sides
    have at least 5 (``harness ab`` sessions: the pairs' ratios, see ``harness.analysis.compare``)."""
    fidelity_samples: int = 256
    """Size of the fidelity sample set each artifact generates after its timing pass (0 = fidelity from the
    timing batch only). PSNR, max-abs error and, for digits-trained generators, Fréchet distance and label
    agreement are taken over it."""
    loop_samples: int = 64
    """For a denoiser with a sampler: how many images the whole sampling loop generates for the trajectory's
    fidelity (from the same initial noises as the fp32 pipeline; 0 = the timing batch's images only)."""
    profile_runs: int = 10
    """Profiled inferences in each job's profile pass (a worker of its own, after the timing passes): per-op times
    from the runtime's profiler, and the roofline (0 = no profile pass)."""
    start_runs: int = 3
    """Cold and warm start: this many pairs of fresh worker processes, each timed from its creation to its first
    result — cold (the runtime's start-up cache empty, the artifact dropped from the page cache), then warm (that
    cache present, the file cached); 0 = no start pass (``harness.engine.start``)."""
    sustained_s: float = 0.0
    """Sustained mode: run each job this long (seconds) in one more worker, in windows of ``sustained_window_s``: per
    window the p50 / p90, CPU frequency, temperature and energy; the last windows against the first
    (``harness.engine.sustained``). 0 = off."""
    sustained_window_s: float = 10.0
    """Sustained mode's window (seconds): each one's p50 / p90, clock, temperature and energy are recorded."""
    contention_max_cores: float = 0.25
    """A timed pass during which other processes kept more than this many of the worker's CPUs busy (``/proc/stat``
    against the worker's own CPU time) is flagged ``contended`` and kept out of verdicts (best variant, speed-ups,
    the gate) unless accepted."""
    quiet_wait_s: float = 0.0
    """Before timing, wait up to this long (seconds) for the worker's CPUs to be quiet (others at most
    ``contention_max_cores``); 0 = do not wait."""
    contention_retries: int = 0
    """Measure a contended latency pass again, in a fresh worker, up to this many times (the last one is kept)."""
    cooldown_to_c: float | None = None
    """Before timing, wait until the hottest thermal zone reads at most this (°C); None = no cooldown. A target
    profile's ``[thermal]`` table sets it for its jobs."""
    cooldown_max_s: float = 120.0
    """The cooldown's cap (seconds): a pass that starts hotter is flagged."""
    throttle_freq_drop: float = 0.10
    """A pass during which the CPUs' mean frequency fell by more than this fraction is flagged ``throttled``."""
    loadgen: str = ""
    """MLPerf LoadGen scenarios to measure each job under as well, in a worker of their own after the memory pass:
    'single-stream', 'offline' or both ('single-stream,offline'); '' = none (``harness.engine.loadgen``)."""

    def __post_init__(self) -> None:
        if self.min_runs < 1 or self.warmup_min_runs < 1:
            raise ValueError("min_runs and warmup_min_runs must be at least 1")
        if self.warmup_max_runs < self.warmup_min_runs:
            raise ValueError("warmup_max_runs must be >= warmup_min_runs")
        if self.min_duration_s < 0 or self.max_duration_s <= 0:
            raise ValueError("min_duration_s must be >= 0 and max_duration_s > 0")
        if self.max_duration_s < self.min_duration_s:
            raise ValueError("max_duration_s must be >= min_duration_s")
        if not 0 < self.warmup_tolerance < 1:
            raise ValueError("warmup_tolerance must be a fraction between 0 and 1")
        if self.target_ci_rel_width is not None and self.target_ci_rel_width <= 0:
            raise ValueError("target_ci_rel_width must be positive")
        if self.fidelity_samples < 0 or self.loop_samples < 0 or self.profile_runs < 0 or self.start_runs < 0:
            raise ValueError("fidelity_samples, loop_samples, profile_runs and start_runs must be >= 0")
        if self.sustained_s < 0 or self.sustained_window_s <= 0:
            raise ValueError("sustained_s must be >= 0 and sustained_window_s > 0")
        if self.rounds < 1:
            raise ValueError("rounds must be at least 1")
        if self.prepare_memory_mb < 0 or self.variant_timeout_s < 0:
            raise ValueError("prepare_memory_mb and variant_timeout_s must be >= 0")
        if self.timeout_s <= 0 or self.prepare_timeout_s <= 0 or self.memory_runs < 1:
            raise ValueError("timeout_s and prepare_timeout_s must be positive and memory_runs at least 1")
        if self.contention_max_cores < 0 or self.quiet_wait_s < 0 or self.contention_retries < 0:
            raise ValueError("contention_max_cores, quiet_wait_s and contention_retries must be >= 0")
        if self.loadgen:
            names = [n.strip() for n in self.loadgen.split(",") if n.strip()]
            if not names or any(n not in ("single-stream", "offline") for n in names):
                raise ValueError(f"loadgen must name 'single-stream' and/or 'offline', not {self.loadgen!r}")
        if self.cooldown_max_s < 0 or not 0 < self.throttle_freq_drop < 1:
            raise ValueError("cooldown_max_s must be >= 0 and throttle_freq_drop a fraction between 0 and 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunSettings":
        return cls(**_known_fields(cls, data))


@dataclass(frozen=True)
class Measurement:
    """One measured quantity. ``method`` says how it was obtained (e.g. ``perf_counter``, ``vmhwm``)."""

    metric: str
    """A name of the metric catalogue (``harness.analysis.metrics``)."""
    value: float
    """The headline figure: the median for a distribution."""
    unit: str
    method: str
    """How it was obtained: ``perf_counter``, ``vmhwm``, ``rapl``, ``modelled``, …"""
    samples: tuple[float, ...] | None = None
    """The raw samples of a distribution (e.g. every timed run's ms)."""
    stats: Mapping[str, float] | None = None
    """Summary statistics of the samples: n, mean, p50, p90, p99, CI bounds, …"""
    note: str = ""
    """Caveats a reader must see with the number (e.g. a modelled energy's assumptions)."""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.samples is not None:
            out["samples"] = list(self.samples)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Measurement":
        known = _known_fields(cls, data)
        if known.get("samples") is not None:
            if not isinstance(known["samples"], list):
                raise ValueError("'samples' must be a list of numbers")
            known["samples"] = tuple(known["samples"])
        if known.get("stats") is not None and not isinstance(known["stats"], dict):
            raise ValueError("'stats' must be an object")
        return cls(**known)


@dataclass(frozen=True)
class Job:
    """One artifact measured by one runtime on one target."""

    artifact: Artifact
    runtime: str
    target: str
    settings: RunSettings
    inputs_path: str
    reference_path: str
    """fp32 PyTorch outputs for the inputs: fidelity is measured against these."""
    batch_size: int
    expected_path: str = ""
    """Outputs this artifact must reproduce within the export tolerance (its own PyTorch model's); '' = the
    fp32 reference for an uncompressed artifact, and no check for a post-export compression (only fidelity)."""
    samples_path: str = ""
    """The fidelity sample set's inputs ('' = none), and below its fp32 PyTorch outputs."""
    samples_reference_path: str = ""
    sampler: Mapping[str, Any] | None = None
    """A denoiser's ``Sampler.to_dict()`` with its input order and timestep type (``{"sampler": …, "inputs": [...],
    "time_dtype": …}``, and ``"decoder": {"input": …, "artifact": its fp32 artifact in the job's format}`` for a
    latent diffusion): the job also measures the whole sampling loop. The loop's initial noise for timing and its fp32 PyTorch final images, then
    the loop's sample set (initial noises) and its fp32 final images, follow."""
    loop_inputs_path: str = ""
    loop_reference_path: str = ""
    loop_samples_path: str = ""
    loop_samples_reference_path: str = ""
    layers_reference_path: str = ""
    """The fp32 PyTorch model's leaf-module outputs on the inputs (``ModelIO.layers_reference_path``; '' = none)."""
    work: Mapping[str, Any] | None = None
    """FLOPs and bytes per inference of the model the artifact was made from (``harness.prepare.work.Work.to_dict()``,
    or ``{"error": …}``); None for a user's own artifact (no PyTorch model to count on)."""

    @property
    def key(self) -> str:
        """Stable identity of the job in a results store (used to resume)."""
        return f"{self.artifact.id}:{self.runtime}:{self.target}:b{self.batch_size}"


@dataclass(frozen=True)
class RunRecord:
    """The result of one job: what ran, where, how it went and what was measured."""

    job_key: str
    """model/variant/format/runtime/target/batch: the job's identity, the same in every run (resume and compare
    match on it)."""
    model: str
    variant: str
    """"fp32", or the name of a suite's ``[[variants]]`` entry."""
    format: str
    """torch, onnx, tflite or executorch (or a plugin exporter's)."""
    runtime: str
    target: str
    batch_size: int
    artifact_id: str
    """The content address of the measured file in the artifact cache."""
    artifact_bytes: int
    status: str
    """One of ``RUN_STATUSES``: ok, failed, crashed, timeout, oom, unsupported, unreachable."""
    error: str
    """Why the job is not ok, first line first ('' when ok)."""
    measurements: tuple[Measurement, ...]
    context: Mapping[str, Any]
    """Where and how it ran: machine, runtime versions, threads, CPU state, the quiet check, warnings, the
    artifact's recipe and what compression changed."""
    started_at: str
    """ISO 8601, UTC."""
    duration_s: float
    """Wall-clock seconds of the whole job (every pass)."""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, not {self.status!r}")

    def measurement(self, metric: str) -> Measurement | None:
        return next((m for m in self.measurements if m.metric == metric), None)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["measurements"] = [m.to_dict() for m in self.measurements]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunRecord":
        """Raises ValueError or TypeError, with what is wrong, for a record of the wrong shape."""
        known = _known_fields(cls, data)
        measurements = known.get("measurements", ())
        if not isinstance(measurements, list) or not all(isinstance(m, dict) for m in measurements):
            raise ValueError("'measurements' must be a list of objects")
        known["measurements"] = tuple(Measurement.from_dict(m) for m in measurements)
        if not isinstance(known.get("context", {}), dict):
            raise ValueError("'context' must be an object")
        return cls(**known)


def _known_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the fields ``cls`` declares: readers ignore unknown fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}

