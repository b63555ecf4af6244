"""How much does the harness add to each inference? (a benchmark, not a test)

For each model's batch-1 ONNX and TFLite artifact, in ONE process, alternating rounds:
  bare      a plain ``session.run`` / ``set_tensor + invoke + get_tensor`` loop, timed per call
  harness   the harness's own loop (``run_latency_pass`` through the runtime adapter)
  profiler  ONNX Runtime's own profiler (``enable_profiling``; ``model_run`` event durations), ONNX only
Reports medians (µs) of the per-round medians, harness − bare and harness / bare, and checks the target:
the harness adds at most max(5%, 10 µs). Writes reports/overhead-<time>.json.

Usage: python benchmarks/overhead.py [--rounds 5] [--runs 2000] [--models mlp_gan vae_decoder dcgan]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path


from harness.config import paths
from harness.plugins import load_plugins
from harness.cli import QUICK_SETTINGS
from harness.engine.context import machine_context
from harness.engine.measure import run_latency_pass
from harness.run.runner import SuiteRunner
from harness.runtimes import RuntimeOptions, runtime_class
from harness.config.suite import Suite
from harness.types import RunSettings
from harness.worker import load_inputs

THREADS = 1  # one intra-op thread everywhere, so both loops run the same kernels the same way


def bare_onnx(path: str, inputs: dict, runs: int, warmup: int) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    clock, samples = time.perf_counter_ns, []
    for _ in range(warmup):
        sess.run(None, inputs)
    for _ in range(runs):
        t0 = clock()
        sess.run(None, inputs)
        samples.append(clock() - t0)
    return statistics.median(samples) / 1e3


def bare_tflite(path: str, inputs: dict, runs: int, warmup: int) -> float:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path, num_threads=THREADS)
    it.allocate_tensors()
    ins = [d["index"] for d in it.get_input_details()]
    outs = [d["index"] for d in it.get_output_details()]
    arrays = list(inputs.values())
    clock, samples = time.perf_counter_ns, []

    def once() -> None:
        for i, a in zip(ins, arrays):
            it.set_tensor(i, a)
        it.invoke()
        for o in outs:
            it.get_tensor(o)

    for _ in range(warmup):
        once()
    for _ in range(runs):
        t0 = clock()
        once()
        samples.append(clock() - t0)
    return statistics.median(samples) / 1e3


def profiler_onnx(path: str, inputs: dict, runs: int, warmup: int) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    with tempfile.TemporaryDirectory() as tmp:
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        for _ in range(warmup + runs):
            sess.run(None, inputs)
        events = json.loads(Path(sess.end_profiling()).read_text())
    runs_us = [e["dur"] for e in events if e.get("name") == "model_run"]
    return statistics.median(runs_us[warmup:])


def harness_loop(runtime: str, artifact, inputs: dict, runs: int, warmup: int) -> float:
    settings = RunSettings(min_runs=runs, min_duration_s=0.0, max_duration_s=600, warmup_min_runs=warmup,
                           warmup_max_runs=warmup, warmup_tolerance=0.5)
    rt = runtime_class(runtime)(RuntimeOptions(threads=THREADS))
    result = run_latency_pass(rt, artifact, inputs, settings, batch_size=1)
    return next(m for m in result.measurements if m.metric == "latency").value * 1e3


def artifacts(models: list[str]) -> list[tuple]:
    """Batch-1 ONNX and TFLite artifacts from the cache (exported and validated if missing)."""
    suite = Suite(name="overhead", models=tuple(models), targets=("x86-cpu",), formats=("onnx", "tflite"),
                  batch_sizes=(1,), export_tolerance=1e-4, settings=RunSettings(**QUICK_SETTINGS))
    runner = SuiteRunner(suite, out_dir=Path(tempfile.mkdtemp()), cache_dir=paths.cache_dir(),
                         models_dir=paths.models_dir(), targets_dir=paths.targets_dir(), progress=False)
    seen, found = set(), []
    for planned in runner.plan():
        art = planned.job.artifact
        if art.status == "ok" and art.id not in seen:
            seen.add(art.id)
            found.append((art, planned.job.runtime, load_inputs(planned.job.inputs_path)))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=2000, help="timed calls per loop per round")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--models", nargs="+", default=["mlp_gan", "vae_decoder", "dcgan"])
    args = parser.parse_args()
    load_plugins()

    rows = []
    for art, runtime, inputs in artifacts(args.models):
        bare_fn = bare_onnx if art.format == "onnx" else bare_tflite
        # Fewer calls for slow models: about 2 s per loop per round at most.
        probe = bare_fn(art.path, inputs, 20, 5)
        runs = max(200, min(args.runs, int(2e6 / max(probe, 1))))
        bare, ours, prof = [], [], []
        for _ in range(args.rounds):  # alternate, so drift on a shared machine hits both alike
            bare.append(bare_fn(art.path, inputs, runs, args.warmup))
            ours.append(harness_loop(runtime, art, inputs, runs, args.warmup))
            if art.format == "onnx":
                prof.append(profiler_onnx(art.path, inputs, runs, args.warmup))
        b, h = statistics.median(bare), statistics.median(ours)
        row = {
            "model": art.model, "format": art.format, "runtime": runtime, "runs_per_round": runs,
            "rounds": args.rounds, "bare_us": round(b, 3), "harness_us": round(h, 3),
            "profiler_model_run_us": round(statistics.median(prof), 3) if prof else None,
            "overhead_us": round(h - b, 3), "ratio": round(h / b, 4),
            "allowed_us": round(max(0.05 * b, 10.0), 3),
        }
        row["within_target"] = row["overhead_us"] <= row["allowed_us"]
        rows.append(row)
        print(f"{row['model']:14} {row['format']:6} bare {b:10.2f} µs  harness {h:10.2f} µs  "
              f"Δ {h - b:+8.2f} µs  ratio {h / b:6.3f}  profiler {row['profiler_model_run_us'] or float('nan'):10.2f} µs  "
              f"{'ok' if row['within_target'] else 'OVER TARGET'}", flush=True)
    out = paths.reports_dir() / f"overhead-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"context": machine_context(), "threads": THREADS, "rows": rows}, indent=1))
    print(f"written {out}")
    return 0 if all(r["within_target"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
