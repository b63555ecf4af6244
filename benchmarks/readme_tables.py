"""The README's full-suite tables, printed from a run's results (a view of the raw records, not new numbers).

Usage: python benchmarks/readme_tables.py RUN_DIR_OR_RESULTS_JSONL [--target x86-cpu]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from harness.report.compression import compression_frame
from harness.report.tables import summary_frame
from harness.results.store import read_records

FP32_MODELS = ("mlp_gan", "dcgan", "vae_decoder", "unet_denoiser")
VARIANT_ROWS = (("dcgan", "separable", "onnxruntime"), ("dcgan", "torch-int8", "torch"),
                ("dcgan", "int8-static", "onnxruntime"), ("dcgan", "tflite-dynamic", "litert"),
                ("dcgan", "prune-l1-50", "onnxruntime"), ("vae_decoder", "tflite-int8", "litert"),
                ("vae_decoder", "distill-75", "litert"), ("mlp_gan", "tflite-dynamic", "litert"),
                ("mlp_gan", "distill-75", "litert"), ("unet_denoiser", "tflite-int8", "litert"),
                ("unet_denoiser", "int8-static", "onnxruntime"))


def num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--target", default="x86-cpu")
    args = parser.parse_args()
    path = args.run / "results.jsonl" if args.run.is_dir() else args.run
    frame = compression_frame(summary_frame(read_records(path)))
    frame = frame[frame.target == args.target]
    print("| model | batch | format | p50 ms (95% CI) | items/s | peak RSS MB | size MB | max abs err |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    fp32 = frame[(frame.variant == "fp32") & (frame.status == "ok")]
    for model in FP32_MODELS:
        for _, r in fp32[fp32.model == model].sort_values(["batch_size", "format"], key=lambda c: c.map(
                {"torch": 0, "onnx": 1, "tflite": 2}).fillna(c) if c.name == "format" else c).iterrows():
            print(f"| {model} | {r.batch_size} | {r.format} | {num(r.latency_p50_ms)} ({num(r.latency_ci_low_ms)}–"
                  f"{num(r.latency_ci_high_ms)}) | {r.throughput_items_s:,.0f} | {r.peak_rss_mb:.0f} | {r.size_mb:.2f} "
                  f"| {num(r.max_abs_error, 2) if r.max_abs_error else 0} |")
    print()
    print("| model | variant | runtime | b1: × fp32 ORT | b1: × fp32 same runtime | b8: × fp32 ORT | PSNR dB (b1) | "
          "labels | size |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for model, variant, runtime in VARIANT_ROWS:
        rows = frame[(frame.model == model) & (frame.variant == variant) & (frame.runtime == runtime)]
        if rows.empty:
            print(f"| {model} | {variant} | {runtime} | not in this run | | | | | |")
            continue
        b1, b8 = rows[rows.batch_size == 1], rows[rows.batch_size == 8]

        def cell(part, column: str, digits: int = 3) -> str:
            if part.empty or part.iloc[0].status != "ok":
                return part.iloc[0].status if not part.empty else "–"
            return num(part.iloc[0][column], digits)

        print(f"| {model} | {variant} | {runtime} | {cell(b1, 'speedup_vs_fp32_onnxruntime')} | "
              f"{cell(b1, 'speedup_vs_fp32_same_runtime')} | {cell(b8, 'speedup_vs_fp32_onnxruntime')} | "
              f"{cell(b1, 'psnr_db')} | {cell(b1, 'label_agreement')} | {cell(b1, 'size_ratio_vs_fp32', 2)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
