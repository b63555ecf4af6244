"""Tabular views of run records (pandas): tidy long format and a wide one-row-per-job summary."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from harness.analysis.disturbance import disturbance
from harness.analysis.fit import fit_of
from harness.analysis.metrics import METRICS
from harness.profiling.ops import OpProfile
from harness.types import RunRecord

ID_COLUMNS = ["model", "variant", "format", "runtime", "target", "batch_size", "status", "artifact_id"]
LATENCY_STATS = ("min", "mean", "std", "cv", "p50", "p90", "p95", "p99", "median_ci_low", "median_ci_high", "n")


def tidy_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per measurement (latency statistics become rows ``latency_<stat>``)."""
    rows = []
    for r in records:
        ids = {c: getattr(r, c) for c in ID_COLUMNS}
        if not r.measurements:
            rows.append({**ids, "metric": None, "value": None, "unit": None, "method": None, "error": r.error})
        for m in r.measurements:
            rows.append({**ids, "metric": m.metric, "value": m.value, "unit": m.unit, "method": m.method,
                         "error": r.error})
            if m.stats:
                for stat in LATENCY_STATS:
                    if stat in m.stats:
                        unit = "" if stat in ("cv", "n") else m.unit
                        rows.append({**ids, "metric": f"{m.metric}_{stat}", "value": m.stats[stat],
                                     "unit": unit, "method": m.method, "error": r.error})
    return pd.DataFrame(rows, columns=[*ID_COLUMNS, "metric", "value", "unit", "method", "error"])


def summary_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per job with the figures people compare first (the catalogue's metrics in their ``summary_column``,
    read by the catalogue's own definition)."""
    rows = []
    records = list(records)
    for r in records:
        lat = r.measurement("latency")
        fit = fit_of(r, records)  # measured with the job, or estimated from its run where it could not run
        stats = lat.stats if lat and lat.stats else {}

        def value(metric: str) -> float | None:
            m = r.measurement(metric)
            return m.value if m else None

        def catalogue(metric: str) -> float | None:  # a metric of the catalogue: its one definition
            return METRICS[metric].value(r)

        rows.append({
            **{c: getattr(r, c) for c in ID_COLUMNS},
            "latency_p50_ms": catalogue("latency_p50"),
            "latency_p90_ms": catalogue("latency_p90"),
            "latency_ci_low_ms": stats.get("median_ci_low"),
            "latency_ci_high_ms": stats.get("median_ci_high"),
            "latency_cv": stats.get("cv"),
            "samples": stats.get("n"),
            "gpu_latency_p50_ms": catalogue("gpu_latency_p50"),
            "throughput_items_s": value("throughput"),
            "load_ms": value("load_time"),
            "first_inference_ms": value("first_inference"),
            "peak_rss_mb": catalogue("peak_memory"),
            "gpu_memory_mb": value("gpu_memory") / 2**20 if value("gpu_memory") is not None else None,
            "size_mb": r.artifact_bytes / 2**20 if r.artifact_bytes else None,
            "nonfinite_outputs": catalogue("nonfinite_outputs"),
            "nonfinite_mismatch": value("nonfinite_mismatch"),
            "max_abs_error": value("max_abs_error"),
            "psnr_db": value("psnr"),
            "frechet_distance": value("frechet_distance"),
            "frechet_distance_digits": catalogue("frechet_distance_digits"),
            "label_agreement": catalogue("label_agreement"),
            "loop_latency_p50_ms": catalogue("loop_latency_p50"),
            "loop_step_ms": value("loop_step_latency"),
            "loop_decode_ms": value("loop_decode_latency"),
            "flops": value("flops"),
            "achieved_gflops": value("achieved_gflops"),
            "peak_fraction": value("peak_fraction"),
            "top_op_family": _top_family(r),
            "profiler_overhead": value("profiler_overhead"),
            "loop_psnr_db": catalogue("loop_psnr"),
            "loop_frechet_distance": value("loop_frechet_distance"),
            "loop_nonfinite_outputs": value("loop_nonfinite_outputs"),
            "loop_nonfinite_mismatch": value("loop_nonfinite_mismatch"),
            "loop_label_agreement": catalogue("loop_label_agreement"),
            "distill_loss": value("distill_loss"),
            "gzip_mb": value("artifact_gzip_size") / 2**20 if value("artifact_gzip_size") else None,
            "weight_sparsity": value("weight_sparsity"),
            "parameters": value("parameters"),
            "ops_quantized_fraction": _sum_or_none(value("ops_int8_fraction"), value("ops_fp16_fraction")),
            "weights_quantized_fraction": _sum_or_none(value("weights_int8_fraction"), value("weights_fp16_fraction")),
            "energy_per_image_j": catalogue("energy_per_image"),
            "images_per_kwh": value("images_per_kwh"),
            "loop_energy_per_image_j": catalogue("loop_energy_per_image"),
            "energy_per_inference_j": catalogue("energy_per_inference"),
            "energy_method": r.measurement("energy_per_inference").method if r.measurement("energy_per_inference") else None,
            "sustained_p50_ms": catalogue("sustained_latency"),
            "sustained_ratio": catalogue("sustained_ratio"),
            "cold_start_ms": catalogue("cold_start"),
            "warm_start_ms": catalogue("warm_start"),
            "start_cache": (r.context.get("start") or {}).get("warm", {}).get("cache"),
            "fits": fit.verdict if fit else None,
            "fit_memory_headroom": fit.memory_headroom if fit else None,
            "fit_storage_headroom": fit.storage_headroom if fit else None,
            "fit_basis": fit.basis if fit else None,
            "error": r.error.splitlines()[0] if r.error else "",
            "disturbed": disturbance(r),
            "loop_disturbed": disturbance(r, "loop"),
            "loadgen_ss_p50_ms": value("loadgen_ss_p50"),
            "loadgen_ss_p90_ms": value("loadgen_ss_p90"),
            "loadgen_ss_p90_early_stopping_ms": value("loadgen_ss_p90_early_stopping"),
            "loadgen_offline_items_s": value("loadgen_offline_throughput"),
            "loadgen_validity": ", ".join(
                f"{scenario}: {found.get('results', {}).get('result_validity', '?')}"
                + (" (measured under contention)" if (found.get("contention") or {}).get("contended") else "")
                for scenario, found in (r.context.get("loadgen") or {}).items()),
        })
    return pd.DataFrame(rows)


def _top_family(r: RunRecord) -> str | None:
    """The op family that took the most time in the job's profile pass (None without one)."""
    raw = r.context.get("op_profile")
    return next(iter(OpProfile.from_dict(raw).families()), None) if raw else None


def _sum_or_none(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells starting with = + - @ (or tab/CR) with ' so spreadsheets do not run them."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(
                lambda v: "'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v
            )
    return out


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    neutralise_formulas(frame).to_csv(path, index=False)
