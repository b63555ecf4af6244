"""The harness's own cost at the sizes users ship (a benchmark, not a test): a first report of

- ``ddpm_cifar10``: diffusers' ``UNet2DModel`` at the DDPM-CIFAR10 config (google/ddpm-cifar10-32: 35.7 M
  parameters, 32×32, self-attention at 16×16), declared by config with an integer timestep, random weights;
- ``cyclegan_256``: CycleGAN's ResNet generator at 256×256 (``benchmarks/models/cyclegan_resnet.py``: 11.4 M
  parameters, ~57 GMAC per image), declared from a package the way a user declares theirs;

each in a fresh project made by ``harness init`` and run with the suite ``harness init`` writes (``quick``: fp32 in
PyTorch, ONNX and TFLite, ONNX Runtime dynamic int8 and fp16), from an empty cache, as a new user's first
``harness run``. With ``--suite deep`` the variants that cost most to prepare are added (ONNX Runtime static int8
with its calibration, PT2E int8 for TFLite and ExecuTorch, channel pruning, a 20-step distillation) and the
ExecuTorch format, to time each preparation step at that size.

Per model: wall time to the first report (``index.html`` appears) and to the end, every preparation step's seconds
and the prepare process's peak memory (``preparation.jsonl``), each job's status and where its time went
(``pass_seconds``), its peak RSS and file size, and whether it would fit each shipped board (its x86 peak held
against the Pi 4, Pi 5, Jetson Orin Nano and x86 profiles' ``[fit]``, labelled as such). Writes ``benchmarks/results/real-size-<suite>-<date>.json`` and prints a Markdown table.

Usage: python benchmarks/real_size.py [--suite quick|deep] [--models ddpm_cifar10,cyclegan_256]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from harness.analysis.fit import judge_fit
from harness.config.paths import builtin_dir
from harness.config.targets import load_target
from harness.results.store import read_records

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ("rpi4", "rpi5", "jetson-orin-nano", "x86-cpu")
"""The shipped profiles with a ``[fit]`` table, each job's x86 peak and file held against them."""

MODELS = {
    "ddpm_cifar10": '''
[models.ddpm_cifar10]   # google/ddpm-cifar10-32's config.json; random weights
factory = "diffusers:UNet2DModel"
inputs = [{ name = "sample", shape = [3, 32, 32] },
          { name = "timestep", shape = [], kind = "integer", low = 0, high = 1000 }]
output = "sample"
[models.ddpm_cifar10.kwargs]
sample_size = 32
in_channels = 3
out_channels = 3
layers_per_block = 2
block_out_channels = [128, 256, 256, 256]
down_block_types = ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"]
up_block_types = ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
norm_num_groups = 32
norm_eps = 1e-6
downsample_padding = 0
flip_sin_to_cos = false
freq_shift = 1
''',
    "cyclegan_256": '''
[models.cyclegan_256]   # CycleGAN's ResNet generator, 256x256 (benchmarks/models); seeded random weights
factory = "cyclegan_resnet:ResnetGenerator"
inputs = [{ name = "image", shape = [3, 256, 256], kind = "uniform", low = -1.0, high = 1.0 }]
output_range = [-1.0, 1.0]
''',
}

FORMATS_DEEP = 'formats = ["torch", "onnx", "tflite", "executorch"]'
DEEP_VARIANTS = '''
[[variants]]
name = "int8-static"
method = "quant-static"

[[variants]]
name = "pt2e-int8"
method = "pt2e-int8"

[[variants]]
name = "channels-50"
method = "prune-channels"
amount = 0.5

[[variants]]
name = "distill-50"
method = "distill"
amount = 0.5
steps = 20
max_train_s = 300   # at 256x256 one step is ~100 s: the steps done in 5 minutes are recorded
'''


def project(folder: Path, model: str, suite: str) -> None:
    """``harness init`` in ``folder``, its example model replaced by ``model``, the init's quick suite pointed at it
    (and, for ``deep``, given the costly variants and ExecuTorch)."""
    subprocess.run([sys.executable, "-m", "harness", "init"], cwd=folder, check=True, capture_output=True)
    config = folder / "edge-harness.toml"
    text = config.read_text()
    text = text[:text.index("[models.")].replace('default_suite = "ci"', 'default_suite = "quick"')
    models = ROOT / "benchmarks" / "models"  # where the ResNet generator's package is imported from
    config.write_text(f'python_path = ["{models}"]\n' + text + MODELS[model])
    quick = folder / "bench" / "suites" / "quick.toml"
    head, _, settings = quick.read_text().partition("[settings]")
    head = re.sub(r"(?m)^models = .*$", f'models = ["{model}"]', head)
    if suite == "deep":
        head = re.sub(r"(?m)^formats = .*$", FORMATS_DEEP, head)
        settings = settings.split("[[variants]]")[0] + DEEP_VARIANTS
    quick.write_text(head + "[settings]" + settings)


def measure(folder: Path, out: Path, cache: Path) -> dict:
    """One ``harness run`` of the project's quick suite, watched from outside."""
    cmd = [sys.executable, "-m", "harness", "run", "--suite", "quick", "--out", str(out), "--cache", str(cache),
           "--no-progress"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_report = None
    while proc.poll() is None:
        time.sleep(0.5)
        if first_report is None and (out / "index.html").exists():
            first_report = round(time.monotonic() - t0, 1)
    _, err = proc.communicate()
    total = round(time.monotonic() - t0, 1)
    records = read_records(out / "results.jsonl") if (out / "results.jsonl").exists() else []
    steps = [json.loads(line) for line in (out / "preparation.jsonl").read_text().splitlines()] \
        if (out / "preparation.jsonl").exists() else []
    return {"command": " ".join(cmd), "exit_code": proc.returncode, "first_report_s": first_report,
            "total_s": total, "stderr_tail": err[-3000:], "preparation": steps,
            "jobs": [job(r) for r in records]}


def job(r) -> dict:
    """A record's status, time, peak and file size, and its fit against each shipped board."""
    peak = r.measurement("peak_rss")
    entry = {"variant": r.variant, "format": r.format, "runtime": r.runtime, "status": r.status,
             "error": (r.error or "")[:300], "duration_s": r.duration_s,
             "pass_seconds": r.context.get("pass_seconds"),
             "peak_rss_mb": round(peak.value / 2**20, 1) if peak else None,
             "size_mb": round(r.artifact_bytes / 2**20, 2) if r.artifact_bytes else None}
    if r.status == "ok":
        entry["fit"] = {}
        for name in BOARDS:
            budget = load_target(builtin_dir("targets") / f"{name}.toml").fit  # the shipped profiles
            verdict = judge_fit(peak.value if peak else None, r.artifact_bytes, budget,
                                f"measured on x86-cpu, judged against {name}'s [fit]")
            entry["fit"][name] = verdict.to_dict() if verdict else None
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=("quick", "deep"), default="quick")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    results = {"date": datetime.now().isoformat(timespec="seconds"), "suite": args.suite, "machine":
               subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() + " CPUs", "models": {}}
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="real-size-") as tmp:
            folder = Path(tmp)
            project(folder, model, args.suite)
            print(f"{model}: harness run (suite {args.suite}) in {folder}", file=sys.stderr)
            results["models"][model] = measure(folder, folder / "run", folder / "cache")
        found = results["models"][model]
        print(f"{model}: first report {found['first_report_s']} s, total {found['total_s']} s, exit "
              f"{found['exit_code']}", file=sys.stderr)
    out = ROOT / "benchmarks" / "results" / f"real-size-{args.suite}-{datetime.now():%Y%m%d}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"| model | first report | total | preparation step | s | peak MiB |\n|---|---|---|---|---|---|")
    for model, found in results["models"].items():
        for i, step in enumerate(found["preparation"]):
            head = (f"| {model} | {found['first_report_s']} s | {found['total_s']} s" if i == 0 else "| | |")
            print(f"{head} | {step['step']} | {step['seconds']} | {step['peak_mb']} |")
    print(f"\n| model | variant | runtime | peak MB | file MB | " + " | ".join(BOARDS) + " |\n|---|---|---|---:|---:|"
          + "---|" * len(BOARDS))
    for model, found in results["models"].items():
        for j in found["jobs"]:
            fits = [(j.get("fit") or {}).get(b) for b in BOARDS]
            print(f"| {model} | {j['variant']} | {j['runtime']} | {j['peak_rss_mb']} | {j['size_mb']} | "
                  + " | ".join(f"{f['verdict']} ({f['memory_headroom']:.0%} free)" if f and
                               f["memory_headroom"] is not None else (f or {}).get("verdict", j["status"])
                               for f in fits) + " |")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
