"""The metric catalogue: every metric that runs can be compared and gated on, defined once — its name, label, unit,
which direction is better, how a change is expressed, which significance test judges it, its default gate
threshold, the summary-table column that shows it, and how its value (and samples) are read from a record.

Read by ``compare`` (what to compare and how), ``gate`` (default thresholds), ``report.tables`` (the summary
columns these metrics fill) and the HTML report (its glossary of gated metrics). Adding a metric is one entry here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from harness.types import RunRecord

PSNR_CAP_DB = 100.0
"""PSNRs above this are float round-off against the reference (an export of the fp32 model): ties, not wins."""
BETTER = ("lower", "higher")
CHANGES = ("relative", "absolute")
TESTS = ("mann-whitney-u", "bootstrap", "none")


@dataclass(frozen=True)
class Metric:
    """A metric runs are compared on.

    ``change`` 'relative': thresholds and changes are fractions of the base value (0.10 = 10%); 'absolute': in the
    metric's own unit (dB for PSNR). ``test``: 'mann-whitney-u' or 'bootstrap' over the samples, 'none' for a metric
    with one value per run (a threshold alone decides; size and fidelity are deterministic, memory nearly so).
    ``threshold``: the gate's default worst acceptable change (None: reported, never gated unless a gate file sets
    one). ``rounds``: the measurement holding this statistic per latency round (fresh worker), when rounds are kept.
    ``summary_column``: the column of the report's summary table that shows it (None: not shown there as such).
    """

    name: str
    label: str
    unit: str
    better: str
    change: str
    test: str
    value: Callable[[RunRecord], float | None]
    samples: Callable[[RunRecord], Sequence[float] | None] = lambda r: None
    threshold: float | None = None
    rounds: str | None = None
    summary_column: str | None = None
    description: str = ""
    sampled: str = "latency"
    """The sampled measurement behind a tested metric (its stats hold the statistic of a record without rounds)."""
    method: Callable[[RunRecord], str | None] | None = None
    """For a figure some methods measure and others model (energy): the method of a record's figure. Runs whose
    methods differ are not compared; a modelled figure is reported, never gated."""

    def __post_init__(self) -> None:
        if self.better not in BETTER or self.change not in CHANGES or self.test not in TESTS:
            raise ValueError(f"metric {self.name}: better/change/test must be one of {BETTER}/{CHANGES}/{TESTS}")

    @property
    def gated(self) -> bool:
        return self.threshold is not None


def measured(metric: str, scale: float = 1.0) -> Callable[[RunRecord], float | None]:
    """The value of measurement ``metric`` × ``scale`` (None where the record has none)."""
    def value(r: RunRecord) -> float | None:
        m = r.measurement(metric)
        return m.value * scale if m is not None else None

    return value


def energy_per_image(r: RunRecord) -> float | None:
    """J per generated image; a record from before it was measured: its J per inference over its batch size."""
    m = r.measurement("energy_per_image")
    if m is not None:
        return m.value
    per_inference = r.measurement("energy_per_inference")
    return per_inference.value / max(1, r.batch_size or 1) if per_inference is not None else None


def method_of(*metrics: str) -> Callable[[RunRecord], str | None]:
    """The method of the first of ``metrics`` the record has (None: none)."""
    def method(r: RunRecord) -> str | None:
        return next((m.method for name in metrics if (m := r.measurement(name)) is not None), None)

    return method


def psnr(r: RunRecord) -> float | None:
    """PSNR vs fp32 (dB), capped at ``PSNR_CAP_DB``: identical outputs (a record cannot hold an infinite PSNR, so
    the fidelity step leaves it out and records max-abs error 0) and round-off read as the cap, so a job that goes
    from identical to degraded is compared, and identical vs 150 dB is no change."""
    m = r.measurement("psnr")
    if m is not None:
        return min(m.value, PSNR_CAP_DB)
    err = r.measurement("max_abs_error")
    return PSNR_CAP_DB if err is not None and err.value == 0 else None


def loop_psnr(r: RunRecord) -> float | None:
    """The sampling loop's PSNR vs the fp32 pipeline (dB), capped like ``psnr``."""
    m = r.measurement("loop_psnr")
    if m is not None:
        return min(m.value, PSNR_CAP_DB)
    err = r.measurement("loop_max_abs_error")
    return PSNR_CAP_DB if err is not None and err.value == 0 else None


def samples_of(metric: str) -> Callable[[RunRecord], Sequence[float] | None]:
    def samples(r: RunRecord) -> Sequence[float] | None:
        m = r.measurement(metric)
        return m.samples if m is not None and m.samples else None

    return samples


def stat_of(metric: str, key: str) -> Callable[[RunRecord], float | None]:
    """Statistic ``key`` (p50, p90, …) of a sampled measurement."""
    def value(r: RunRecord) -> float | None:
        m = r.measurement(metric)
        return float(m.stats[key]) if m is not None and m.stats and key in m.stats else None

    return value


CATALOGUE: tuple[Metric, ...] = (
    Metric("latency_p50", "latency p50", "ms", "lower", "relative", "mann-whitney-u", stat_of("latency", "p50"),
           samples_of("latency"), threshold=0.10, rounds="latency_round_medians", summary_column="latency_p50_ms",
           description="median steady-state latency of one inference (host clock)"),
    Metric("latency_p90", "latency p90", "ms", "lower", "relative", "bootstrap", stat_of("latency", "p90"),
           samples_of("latency"), threshold=0.20, rounds="latency_round_p90s", summary_column="latency_p90_ms",
           description="90th-percentile steady-state latency"),
    Metric("gpu_latency_p50", "GPU latency p50", "ms", "lower", "relative", "mann-whitney-u",
           stat_of("gpu_latency", "p50"), samples_of("gpu_latency"), threshold=0.10,
           rounds="gpu_latency_round_medians", summary_column="gpu_latency_p50_ms", sampled="gpu_latency",
           description="median GPU time of each inference by the device timer (PyTorch on CUDA)"),
    Metric("peak_memory", "peak RSS", "MiB", "lower", "relative", "none", measured("peak_rss", 1 / 2**20),
           threshold=0.10, summary_column="peak_rss_mb", description="peak resident memory of the worker process"),
    Metric("cold_start", "cold start", "ms", "lower", "relative", "mann-whitney-u", stat_of("cold_start", "p50"),
           samples_of("cold_start"), summary_column="cold_start_ms", sampled="cold_start",
           description="a fresh process's time to its first result with nothing cached: the runtime's start-up "
                       "cache empty, the file dropped from the page cache (median over the start pass's processes; "
                       "reported, and gated where a gate file sets a threshold — with start_runs ≥ 4: 3 processes a "
                       "side cannot reach p < 0.05, so the default 3 never gates)"),
    Metric("warm_start", "warm start", "ms", "lower", "relative", "mann-whitney-u", stat_of("warm_start", "p50"),
           samples_of("warm_start"), summary_column="warm_start_ms", sampled="warm_start",
           description="a fresh process's time to its first result with the runtime's start-up cache and the file "
                       "cached, as a second launch finds them"),
    Metric("sustained_latency", "sustained p50", "ms", "lower", "relative", "none",
           measured("sustained_latency"), summary_column="sustained_p50_ms", sampled="sustained_latency",
           description="sustained mode: the median p50 of the last quarter of a minutes-long run's windows (windows "
                       "of one process are not independent samples: compared by a threshold alone); reported, gated "
                       "where a gate file sets a threshold"),
    Metric("sustained_ratio", "sustained / start", "ratio", "lower", "absolute", "none", measured("sustained_ratio"),
           summary_column="sustained_ratio",
           description="sustained mode: the last windows' median p50 over the first windows' (1.0 = flat)"),
    Metric("energy_per_image", "energy per image", "J", "lower", "relative", "none", energy_per_image,
           threshold=0.15, summary_column="energy_per_image_j", method=method_of("energy_per_image",
                                                                               "energy_per_inference"),
           description="energy per generated image (one inference's energy over the images of its batch), by the "
                       "method the record names (modelled figures are never gated)"),
    Metric("energy_per_inference", "energy per inference", "J", "lower", "relative", "none",
           measured("energy_per_inference"), summary_column="energy_per_inference_j",
           method=method_of("energy_per_inference"),
           description="energy of one inference at the job's batch size (gate on energy per image; this one is "
                       "reported, and gated where a gate file sets a threshold)"),
    Metric("loop_energy_per_image", "energy per loop image", "J", "lower", "relative", "none",
           measured("loop_energy_per_image"), threshold=0.15, summary_column="loop_energy_per_image_j",
           method=method_of("loop_energy_per_image"),
           description="a denoiser's energy per generated image over its whole sampling loop (every step; the "
                       "decoder of a latent loop not included)"),
    Metric("size", "artifact size", "bytes", "lower", "relative", "none",
           lambda r: float(r.artifact_bytes) if r.artifact_bytes else None, threshold=0.01,
           description="the artifact file's size"),
    Metric("psnr", "PSNR vs fp32", "dB", "higher", "absolute", "none", psnr, threshold=1.0,
           description="PSNR of the outputs against fp32 PyTorch on the same inputs (identical and round-off "
                       "read as 100 dB)"),
    Metric("nonfinite_outputs", "NaN/inf outputs", "fraction", "lower", "absolute", "none",
           measured("nonfinite_outputs"), threshold=0.0, summary_column="nonfinite_outputs",
           description="share of output values that are NaN or ±inf: any new share fails"),
    Metric("label_agreement", "label agreement", "fraction", "higher", "absolute", "none",
           measured("label_agreement"), threshold=0.02, summary_column="label_agreement",
           description="share of latents on which a digits classifier reads the same digit as for fp32"),
    Metric("frechet_distance_digits", "FD to real digits", "feature²", "lower", "absolute", "none",
           measured("frechet_distance_digits"), threshold=5.0, summary_column="frechet_distance_digits",
           description="Fréchet distance of the samples' classifier features to real digits"),
    Metric("loop_latency_p50", "sampling loop p50", "ms", "lower", "relative", "mann-whitney-u",
           stat_of("loop_latency", "p50"), samples_of("loop_latency"), threshold=0.10,
           summary_column="loop_latency_p50_ms", sampled="loop_latency",
           description="median time of a denoiser's whole sampling loop: one generated batch, every step"),
    Metric("loop_psnr", "loop PSNR vs fp32", "dB", "higher", "absolute", "none", loop_psnr, threshold=1.0,
           summary_column="loop_psnr_db",
           description="PSNR of the sampling loop's final images against the fp32 pipeline's from the same noise"),
    Metric("loop_label_agreement", "loop label agreement", "fraction", "higher", "absolute", "none",
           measured("loop_label_agreement"), threshold=0.02, summary_column="loop_label_agreement",
           description="share of initial noises on which a digits classifier reads the same digit in the loop's "
                       "final image as in the fp32 pipeline's"),
)

METRICS: dict[str, Metric] = {m.name: m for m in CATALOGUE}
"""The catalogue by name."""
