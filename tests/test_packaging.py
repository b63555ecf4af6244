"""Edge Harness as an installed tool: the wheel holds the built-in zoo, targets and suites; installed into a fresh
environment, it runs from a user's project that is not a checkout — the project's own package and generator
class, a safetensors checkpoint the test writes, its own target profile (overriding a built-in by name) and
suite — through the command line and the Python API.

The fresh environment gets the harness only from the wheel (``pip install --no-deps``); its dependencies (torch,
onnxruntime, …) come from the test's own environment through a path entry, so that the test does not reinstall
gigabytes. The checkout is never on its path: the harness it imports is the installed one (asserted)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from harness.config.paths import PROJECT_ROOT
from tests.helpers import QUICK_SETTINGS_TOML

pytestmark = pytest.mark.slow


def test_every_harness_package_is_in_the_wheel_list():
    listed = set(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(PROJECT_ROOT).parts) for p in (PROJECT_ROOT / "harness").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


GENERATOR = '''
import torch
from torch import nn


class Generator(nn.Module):
    """latent → 1×8×8 through a residual skip."""

    def __init__(self, latent: int = 16, width: int = 32) -> None:
        super().__init__()
        self.fc = nn.Linear(latent, width)
        self.out = nn.Linear(width, 64)
        self.skip = nn.Linear(latent, 64)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.out(torch.relu(self.fc(z))) + self.skip(z)).view(-1, 1, 8, 8)
'''

CONFIG = '''
targets_dir = "bench/targets"
suites_dir = "bench/suites"
default_suite = "mine"

[models.studio_gen]
factory = "studio.nets:Generator"
kwargs = { latent = 16, width = 32 }
inputs = [{ name = "z", shape = [16] }]
output_range = [-1.0, 1.0]
checkpoint = "weights/generator.safetensors"
checkpoint_key = "ema"
'''

TARGET = '''
name = "x86-cpu"
description = "the studio laptop, one thread"
arch = "x86_64"
reach = "local"
runtimes = ["torch", "onnxruntime", "litert"]
threads = 1
'''

SUITE = '''
models = ["studio_gen"]
targets = ["x86-cpu"]
formats = ["torch", "onnx"]
batch_sizes = [1]
''' + QUICK_SETTINGS_TOML + '''
[[variants]]
name = "int8"
method = "quant-dynamic"
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A fresh venv with the harness from its wheel, and a user project beside it."""
    root = tmp_path_factory.mktemp("installed")
    wheels = root / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(PROJECT_ROOT)], check=True, capture_output=True, timeout=300)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(next(wheels.glob("*.whl")))], check=True, capture_output=True, timeout=300)

    project = root / "studio"
    (project / "src" / "studio").mkdir(parents=True)
    (project / "src" / "studio" / "__init__.py").write_text("")
    (project / "src" / "studio" / "nets.py").write_text(GENERATOR)
    (project / "edge-harness.toml").write_text(CONFIG)
    (project / "bench" / "targets").mkdir(parents=True)
    (project / "bench" / "targets" / "x86-cpu.toml").write_text(TARGET)
    (project / "bench" / "suites").mkdir(parents=True)
    (project / "bench" / "suites" / "mine.toml").write_text(SUITE)
    (project / "weights").mkdir()
    write_checkpoint = f'''
import sys, torch
sys.path.insert(0, "src")
from studio.nets import Generator
from safetensors.torch import save_file
torch.manual_seed(7)
state = Generator(16, 32).state_dict()
save_file({{f"ema.{{k}}": v.contiguous() for k, v in state.items()}} | {{"step": torch.tensor(1000)}},
          "weights/generator.safetensors")
'''
    subprocess.run([str(python), "-c", write_checkpoint], cwd=project, check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_HARNESS_", "PYTHONPATH"))}
    env["EDGE_HARNESS_CACHE"] = str(root / "cache")
    return {"python": python, "bin": venv / "bin" / "harness", "project": project, "env": env, "site": site}


def run(installed: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed["bin"]), *args], cwd=cwd or installed["project"], env=installed["env"],
                          capture_output=True, text=True, timeout=600)


def test_the_installed_harness_is_the_wheel_not_the_checkout(installed):
    where = subprocess.run([str(installed["python"]), "-c", "import harness, harness.config.paths as p; "
                            "print(harness.__file__); print(p.is_checkout())"], cwd=installed["project"],
                           env=installed["env"], capture_output=True, text=True, check=True).stdout.split()
    assert where[0].startswith(installed["site"]) and where[1] == "False"


def test_lists_show_built_ins_and_the_projects_own(installed, tmp_path):
    targets = run(installed, "list", "targets")
    assert targets.returncode == 0, targets.stderr
    rows = {line.split()[0]: line for line in targets.stdout.splitlines()}
    assert "the studio laptop" in rows["x86-cpu"] and "bench/targets/x86-cpu.toml" in rows["x86-cpu"]
    assert rows["rpi4"].endswith("[built-in]") and rows["x86-cpu-1t"].endswith("[built-in]")
    models = run(installed, "list", "models")
    assert models.returncode == 0, models.stderr
    assert "studio_gen" in models.stdout and "edge-harness.toml]" in models.stdout
    assert "dcgan" in models.stdout and "[built-in]" in models.stdout
    suites = run(installed, "list", "suites")
    assert "mine" in suites.stdout and "default" in suites.stdout
    # outside any project, in an empty folder: the built-ins only
    bare = run(installed, "list", "targets", cwd=tmp_path)
    assert bare.returncode == 0 and "x86-cpu " in bare.stdout and "studio laptop" not in bare.stdout


def test_run_report_and_gate_from_the_users_project(installed):
    project = installed["project"]
    proc = run(installed, "run", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    results = Path(proc.stdout.strip().splitlines()[-1])
    assert results.parent.parent == project / "reports" and results.parent.name.startswith("mine-")
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert {(r["variant"], r["format"]) for r in records} == {("fp32", "torch"), ("fp32", "onnx"), ("int8", "onnx")}
    assert all(r["status"] == "ok" and r["model"] == "studio_gen" for r in records)
    context = records[0]["context"]
    assert context["model_source"] == str(project / "edge-harness.toml")
    assert context["checkpoint"]["path"] == str(project / "weights" / "generator.safetensors")
    assert context["checkpoint"]["key"] == "ema" and len(context["checkpoint"]["sha256"]) == 64
    assert context["target_description"] == "the studio laptop, one thread" and context["threads"] == 1
    psnr = {m["metric"]: m for m in next(r for r in records if r["variant"] == "int8")["measurements"]}["psnr"]
    assert psnr["note"].startswith("declared range [-1,1]")

    report = run(installed, "report", str(results.parent), "--out", str(project / "re-derived"))
    assert report.returncode == 0 and (project / "re-derived" / "index.html").is_file(), report.stderr
    gate = run(installed, "gate", "--baseline", str(results), "--candidate", str(results))
    assert gate.returncode == 0 and "PASS" in gate.stdout, gate.stdout + gate.stderr

    # the same checkpoint again: nothing is built twice; a changed checkpoint builds and exports again
    again = run(installed, "run", "--no-progress", "--variant", "none")
    assert again.returncode == 0 and "artifacts built 0" in again.stderr, again.stderr
    rewrite = ('import torch; from safetensors.torch import load_file, save_file; '
               'd = load_file("weights/generator.safetensors"); d["ema.fc.bias"] += 0.5; '
               'save_file(d, "weights/generator.safetensors")')
    subprocess.run([str(installed["python"]), "-c", rewrite], cwd=project, check=True, env=installed["env"])
    changed = run(installed, "run", "--no-progress", "--variant", "none")
    assert changed.returncode == 0 and "artifacts built 2" in changed.stderr, changed.stderr


PYTHON_API = '''
import harness.api as eh

run = eh.run(quick=True, variants=["none"])
summary = run.summary()
tidy = run.measurements()
print(len(summary), sorted(summary["format"]), summary["status"].tolist())
print(int((tidy["metric"] == "latency_p50").sum()), run.html.is_file())
again = eh.load(run.path)
verdicts = eh.gate(run, again)
print(verdicts.attrs["failed"], sorted(set(verdicts["metric"]))[:2])
'''


def test_python_api_from_the_users_project(installed):
    proc = subprocess.run([str(installed["python"]), "-c", PYTHON_API], cwd=installed["project"],
                          env=installed["env"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "2 ['onnx', 'torch'] ['ok', 'ok']"
    assert lines[1] == "2 True"
    assert lines[2].startswith("False ")
