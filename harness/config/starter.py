"""``harness init``: a commented starter project config and suite, written into the user's project. Never
overwrites a file: if one exists, nothing is written and the error names it."""
from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessInputError

CONFIG = '''\
# Edge Harness project config (harness init). `harness` finds this file from this folder or any below it.
# Built-in models, targets and suites stay available; yours override them by name.

# suites_dir = "bench/suites"       # your suites: harness run --suite NAME
# targets_dir = "bench/targets"     # your device profiles (copy one: harness list targets shows where they are)
# models_dir = "bench/models"       # model files with @register_model, if you prefer Python to the table below
suites_dir = "bench/suites"
default_suite = "quick"             # what `harness run` runs
# reports_dir = "reports"           # run folders (default: ./reports next to this file)
# python_path = ["src"]             # where your package is imported from (default: this folder, and src/)

# Your generator, declared by import path. EDIT the factory, its inputs and the checkpoint.
[models.my_generator]
factory = "mypkg.generator:Generator"     # package.module:ClassOrFunction returning a torch nn.Module
kwargs = { }                              # its keyword arguments, e.g. { latent_dim = 100, ngf = 64 }
# One table per forward() argument, in order; shape is after the batch dimension.
# kind: normal (latents, default) | uniform (low, high) | integer (low, high: e.g. diffusion timesteps)
inputs = [{ name = "z", shape = [100] }]
# inputs = [{ name = "x", shape = [3, 32, 32] }, { name = "t", shape = [], kind = "integer", low = 0, high = 1000 }]
output_range = [-1.0, 1.0]                # the output's value range (tanh: [-1, 1]; sigmoid: [0, 1]): PSNR's peak
# checkpoint = "checkpoints/generator.safetensors"   # or a torch state_dict file (loaded with weights_only=True)
# checkpoint_key = "generator"            # the state_dict inside the file, e.g. "state_dict", "ema"
'''

SUITE = '''\
# A quick suite for your generator (harness init): fp32 in every format, and two compressed variants.
models = ["my_generator"]
targets = ["x86-cpu"]                 # harness list targets
formats = ["torch", "onnx", "tflite"]
batch_sizes = [1]
export_tolerance = 1e-4

[settings]
min_runs = 30
min_duration_s = 0.5
max_duration_s = 10.0
fidelity_samples = 64

[[variants]]                          # harness list compressors
name = "int8-dynamic"
method = "quant-dynamic"

[[variants]]
name = "fp16"
method = "fp16"
'''

CI_SUITE = '''\
# The suite your CI gates (harness init; examples/user-project-ci.yml runs `harness run --suite ci`).
# Latency in 5 rounds (a fresh worker each) per job: `harness gate` tests the rounds' medians, so that one busy
# moment of a shared runner does not pass for a change. With one round, two runs of unchanged code raised false
# alarms once latency was gated; this shape is the one the gate benchmark measured (docs/guides/ci.md).
models = ["my_generator"]
targets = ["x86-cpu-1t"]              # one intra-op thread: a shared runner's other vCPU stays for the rest
formats = ["onnx"]                    # add the formats you ship; each job adds about 5 x 1-10 s
batch_sizes = [1]

[settings]
rounds = 5
min_runs = 50
min_duration_s = 0.5
max_duration_s = 10.0
contention_retries = 1                # a latency pass timed while other processes kept the CPU busy: measured again
fidelity_samples = 64
start_runs = 0                        # the gate judges latency; cold and warm start come from the other suites
'''
"""The gate's suite: the shape of the built-in ``gate`` suite (suites/gate.toml), for the user's model."""


def write_starter(folder: Path) -> list[Path]:
    """Write edge-harness.toml, bench/suites/quick.toml and bench/suites/ci.toml into ``folder``; return the paths
    written."""
    files = {folder / "edge-harness.toml": CONFIG, folder / "bench" / "suites" / "quick.toml": SUITE,
             folder / "bench" / "suites" / "ci.toml": CI_SUITE}
    existing = [path for path in files if path.exists()]
    if existing:
        raise HarnessInputError(f"{existing[0]}: already exists; harness init never overwrites a file "
                                "(move it away or edit it)")
    if not folder.is_dir():
        raise HarnessInputError(f"{folder}: no such folder")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)
