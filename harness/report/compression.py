"""What each compressed variant buys, side by side with the fp32 model measured in the same run: speed-up
over fp32 ONNX Runtime and over fp32 on its own runtime, size ratios, fidelity — and flags for the traps
(a "compressed" variant that changed nothing, got slower, or draws something else). Pure pandas."""
from __future__ import annotations

import math

import pandas as pd

LABEL_AGREEMENT_FLOOR = 0.9
"""Below this share of latents on which the digits classifier reads the same digit as from fp32, flag it."""
PSNR_FLOOR_DB = 30.0
"""Below this PSNR vs fp32 a variant is flagged: its samples visibly differ from the reference's."""
SLOWER_MARGIN = 1.05
"""A variant is flagged slower when its median is this much above fp32's and the two CIs do not overlap."""
SPARSE_NO_GAIN = 1.10
"""A pruned-but-dense variant less than this much faster than fp32 is flagged as sparsity that buys no speed."""

_KEY = ["model", "target", "batch_size"]


def _fp32(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[(summary["variant"] == "fp32") & (summary["status"] == "ok")]


def compression_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` plus speed-up, size-ratio and flag columns (one row per job, fp32 rows included)."""
    out = summary.copy()
    if out.empty:
        return out.assign(speedup_vs_fp32_onnxruntime=None, speedup_vs_fp32_same_runtime=None,
                          loop_speedup_vs_fp32_onnxruntime=None, size_ratio_vs_fp32=None, gzip_ratio_vs_fp32=None,
                          flags="")
    fp32 = _fp32(summary)
    ort = fp32[fp32["runtime"] == "onnxruntime"].set_index(_KEY)
    same = fp32.set_index([*_KEY, "format", "runtime"])
    sizes = fp32.drop_duplicates(["model", "batch_size", "format"]).set_index(["model", "batch_size", "format"])

    def lookup(frame: pd.DataFrame, key: tuple, column: str) -> float | None:
        if key not in frame.index:
            return None
        value = frame.loc[key, column]
        value = value.iloc[0] if isinstance(value, pd.Series) else value
        return float(value) if pd.notna(value) else None

    speed_ort, speed_same, loop_ort, size_ratio, gzip_ratio, flags = [], [], [], [], [], []
    for _, row in out.iterrows():
        key = (row["model"], row["target"], row["batch_size"])
        p50 = row.get("latency_p50_ms")
        ok = row["status"] == "ok" and pd.notna(p50) and p50 > 0
        timed = ok and not row.get("disturbed")  # a disturbed pass's latency is no basis for a speed-up
        ort_p50 = lookup(undisturbed(ort), key, "latency_p50_ms") if timed else None
        same_p50 = lookup(undisturbed(same), (*key, row["format"], row["runtime"]), "latency_p50_ms") if timed else None
        speed_ort.append(ort_p50 / p50 if ok and ort_p50 else None)
        speed_same.append(same_p50 / p50 if ok and same_p50 else None)
        loop_p50 = row.get("loop_latency_p50_ms")
        ort_loop = lookup(undisturbed(ort, "loop_disturbed"), key, "loop_latency_p50_ms") \
            if "loop_latency_p50_ms" in ort.columns else None
        loop_timed = not row.get("loop_disturbed")  # a loop timed under contention is no basis for a speed-up
        loop_ort.append(ort_loop / loop_p50 if row["status"] == "ok" and pd.notna(loop_p50) and loop_p50 > 0
                        and ort_loop and loop_timed else None)
        size_key = (row["model"], row["batch_size"], row["format"])
        base_size, base_gzip = lookup(sizes, size_key, "size_mb"), lookup(sizes, size_key, "gzip_mb")
        size_ratio.append(row["size_mb"] / base_size if base_size and pd.notna(row["size_mb"]) else None)
        gzip_ratio.append(row["gzip_mb"] / base_gzip if base_gzip and pd.notna(row.get("gzip_mb")) else None)
        if ok and row["variant"] != "fp32":
            flags.append("; ".join(_flags(row, same, key)
                                   + ([f"latency not compared: {row['disturbed']}"] if row.get("disturbed") else [])))
        else:
            nonfinite = row.get("nonfinite_outputs")
            flags.append(f"non-finite outputs: {nonfinite:.1%} of values NaN/inf (the model itself, in fp32)"
                         if row["status"] == "ok" and pd.notna(nonfinite) and nonfinite > 0 else "")
    return out.assign(speedup_vs_fp32_onnxruntime=speed_ort, speedup_vs_fp32_same_runtime=speed_same,
                      loop_speedup_vs_fp32_onnxruntime=loop_ort, size_ratio_vs_fp32=size_ratio,
                      gzip_ratio_vs_fp32=gzip_ratio, flags=flags)


def undisturbed(frame: pd.DataFrame, column: str = "disturbed") -> pd.DataFrame:
    """The rows whose timings (``column``: 'disturbed' for the latency pass, 'loop_disturbed' for the sampling
    loop's) are fit for verdicts (``harness.analysis.disturbance``)."""
    if column not in frame.columns:
        return frame
    return frame[frame[column].fillna("") == ""]


def _flags(row: pd.Series, same: pd.DataFrame, key: tuple) -> list[str]:
    """Warnings for one compressed variant's job, each saying what was seen."""
    found = []
    quantized, weights = row.get("ops_quantized_fraction"), row.get("weights_quantized_fraction")
    if pd.notna(quantized) and quantized == 0:
        found.append("weights stored narrower, but compute stays fp32" if pd.notna(weights) and weights > 0
                     else "no compute op was quantized")
    base_key = (*key, row["format"], row["runtime"])
    if base_key in same.index:
        base = same.loc[base_key]
        base = base.iloc[0] if isinstance(base, pd.DataFrame) else base
        # Identical outputs give identical error figures; different outputs practically never do.
        if all(_same(row.get(c), base.get(c)) for c in ("max_abs_error", "psnr_db")):
            found.append(f"changed nothing: outputs identical to fp32 {row['format']}/{row['runtime']}")
        lo, base_hi = row.get("latency_ci_low_ms"), base.get("latency_ci_high_ms")
        ratio = row["latency_p50_ms"] / base["latency_p50_ms"]
        if row.get("disturbed") or base.get("disturbed"):  # no latency verdict from a disturbed pass
            if base.get("disturbed") and not row.get("disturbed"):
                found.append(f"latency not compared: fp32 {row['format']}/{row['runtime']} was {base['disturbed']}")
        elif pd.notna(lo) and pd.notna(base_hi) and lo > base_hi and ratio > SLOWER_MARGIN:
            found.append(f"slower than fp32 {row['format']}/{row['runtime']} (×{ratio:.2f} the latency)")
        sparsity = row.get("weight_sparsity")
        if (not row.get("disturbed") and not base.get("disturbed") and pd.notna(sparsity) and sparsity >= 0.1
                and 1.0 / ratio < SPARSE_NO_GAIN and "slower" not in " ".join(found)):
            found.append(f"{sparsity:.0%} zeros in dense kernels: no speed-up (×{1.0 / ratio:.2f})")
    nonfinite, mismatch = row.get("nonfinite_outputs"), row.get("nonfinite_mismatch")
    if pd.notna(mismatch) and mismatch > 0:
        found.append(f"non-finite outputs: {nonfinite:.1%} of values NaN/inf, {mismatch:.1%} where fp32 PyTorch "
                     "differs (NaN/inf on one side only): no PSNR, not a usable variant")
    elif pd.notna(nonfinite) and nonfinite > 0:
        found.append(f"non-finite outputs: {nonfinite:.1%} of values NaN/inf, as in fp32 PyTorch")
    psnr = row.get("psnr_db")
    if pd.notna(psnr) and math.isfinite(psnr) and psnr < PSNR_FLOOR_DB:
        found.append(f"PSNR {psnr:.1f} dB < {PSNR_FLOOR_DB:.0f} dB vs fp32")
    agreement = row.get("label_agreement")
    if pd.notna(agreement) and agreement < LABEL_AGREEMENT_FLOOR:
        found.append(f"draws another digit than fp32 on {1 - agreement:.0%} of latents")
    found.extend(_loop_flags(row))
    return found


def _loop_flags(row: pd.Series) -> list[str]:
    """A denoiser's sampling loop: errors that compound over the trajectory, which one step does not show."""
    loop, step = row.get("loop_psnr_db"), row.get("psnr_db")
    found = []
    mismatch = row.get("loop_nonfinite_mismatch")
    if pd.notna(mismatch) and mismatch > 0:
        found.append(f"the sampling loop's images are NaN/inf where the fp32 pipeline's are not ({mismatch:.1%} of "
                     "values): no loop PSNR, not a usable variant")
    if pd.notna(loop) and math.isfinite(loop) and loop < PSNR_FLOOR_DB:
        if pd.notna(step) and step >= PSNR_FLOOR_DB:
            found.append(f"drifts over the sampling loop: PSNR {step:.1f} dB on one step, {loop:.1f} dB on the "
                         "final images")
        else:
            found.append(f"sampling loop PSNR {loop:.1f} dB < {PSNR_FLOOR_DB:.0f} dB vs the fp32 pipeline")
    agreement = row.get("loop_label_agreement")
    if pd.notna(agreement) and agreement < LABEL_AGREEMENT_FLOOR:
        found.append(f"the sampling loop draws another digit than fp32 from {1 - agreement:.0%} of noises")
    return found


def _same(a: object, b: object) -> bool:
    """Equal, or both missing (a missing PSNR means outputs identical to the reference)."""
    if pd.isna(a) and pd.isna(b):
        return True
    return not pd.isna(a) and not pd.isna(b) and a == b
