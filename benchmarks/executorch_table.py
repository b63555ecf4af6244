"""The README's ExecuTorch table: per zoo model, ExecuTorch vs ONNX Runtime vs LiteRT, fp32 and int8 (PT2E int8 for
ExecuTorch and LiteRT, ONNX Runtime's static int8 and LiteRT's dynamic-range int8 beside them), printed from a run's
summary (a view of the measured records, not new numbers).

Usage: python benchmarks/executorch_table.py RUN_DIR_OR_SUMMARY_CSV   (e.g. the run `make bench` wrote)
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

ROWS = (("fp32", "onnxruntime"), ("fp32", "litert"), ("fp32", "executorch"), ("int8-static", "onnxruntime"),
        ("tflite-dynamic", "litert"), ("pt2e-int8", "litert"), ("pt2e-int8", "executorch"))
MODELS = ("vae_decoder", "mlp_gan", "unet_denoiser", "dcgan")


def num(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    frame = pd.read_csv(args.run / "summary.csv" if args.run.is_dir() else args.run)
    frame = frame[frame.batch_size == 1]
    print("| model | variant | runtime | p50 ms | speed-up vs fp32, same runtime | peak RSS MB | size MB | PSNR dB | "
          "int8 compute ops | flags |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for model in MODELS:
        for variant, runtime in ROWS:
            row = frame[(frame.model == model) & (frame.variant == variant) & (frame.runtime == runtime)]
            if row.empty:
                continue
            r = row.iloc[0]
            flags = r.get("flags")
            flags = "" if not isinstance(flags, str) else flags.split(";")[0]
            quantized = r.get("ops_quantized_fraction")
            print(f"| {model} | {variant} | {runtime} | {num(r.latency_p50_ms)} | "
                  f"{num(r.speedup_vs_fp32_same_runtime) if variant != 'fp32' else ''} | {num(r.peak_rss_mb)} | "
                  f"{num(r.size_mb)} | {num(r.psnr_db)} | "
                  f"{'' if variant == 'fp32' else f'{quantized:.0%}' if pd.notna(quantized) else '–'} | {flags} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
