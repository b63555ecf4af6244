"""An edited model is measured again, always: an artifact's id covers the code the model runs (the user's package
included), not only the file that declares it (``harness.prepare.identity``)."""
from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import QUICK_SETTINGS_TOML

GEN = textwrap.dedent('''
    import torch
    from torch import nn

    from {pkg}.blocks import act


    class Gen(nn.Module):
        def __init__(self, width: int = {width}) -> None:
            super().__init__()
            self.fc = nn.Linear(4, width)
            self.out = nn.Linear(width, 64)

        def forward(self, z):
            return torch.tanh(self.out(act(self.fc(z)))).view(-1, 1, 8, 8)


    def make():
        return Gen()
''')
BLOCKS = "import torch\n\n\ndef act(x):\n    return torch.relu(x)\n"
CONFIG = textwrap.dedent('''
    suites_dir = "bench"
    [models.gen]
    factory = "{pkg}.gen:make"
    inputs = [{{ name = "z", shape = [4] }}]
    output_range = [-1.0, 1.0]
''')

CI_SUITE = 'models = ["gen"]\ntargets = ["x86-cpu-1t"]\nformats = ["onnx"]\nbatch_sizes = [1]\n' + QUICK_SETTINGS_TOML


def make_project(root: Path, pkg: str = "userpkg", width: int = 8) -> Path:
    (root / pkg).mkdir(parents=True)
    (root / pkg / "__init__.py").write_text("")
    (root / pkg / "gen.py").write_text(GEN.format(pkg=pkg, width=width))
    (root / pkg / "blocks.py").write_text(BLOCKS)
    (root / "edge-harness.toml").write_text(CONFIG.format(pkg=pkg))
    (root / "bench").mkdir()
    (root / "bench" / "ci.toml").write_text(CI_SUITE)
    return root


# -- the digest itself (in this process) --------------------------------------------------------------------


@pytest.fixture
def fresh_package(monkeypatch, isolated_models):
    """Import path and module table restored after the test (each test's package is its own)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in [m for m in sys.modules if m.startswith("pkg_")]:  # this file's packages are all pkg_*
        del sys.modules[name]


def _digest(root: Path, pkg: str) -> str:
    from harness.prepare.declared import register_declared
    from harness.prepare.identity import code_digest
    from harness.config.project import load_project
    from harness.zoo import get_model

    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    register_declared(root / "edge-harness.toml", load_project(root / "edge-harness.toml").models)
    spec = get_model("gen")
    return code_digest(spec, spec.builder(**spec.builder_kwargs))


def test_the_digest_follows_the_model_code_its_helpers_and_nothing_else(tmp_path, fresh_package):
    from harness.prepare.identity import model_code
    from harness.zoo import get_model

    root = make_project(tmp_path / "p", "pkg_digest")
    first = _digest(root, "pkg_digest")
    files, _ = model_code(get_model("gen"), get_model("gen").builder())
    # no stdlib, no torch, and of the harness only the class a declared model is given (harness.prepare.outputs)
    assert {name for name, _ in files} == {"pkg_digest.gen", "pkg_digest.blocks", "harness.prepare.outputs"}
    assert _digest(root, "pkg_digest") == first  # unchanged: the same id

    gen = root / "pkg_digest" / "gen.py"
    gen.write_text(gen.read_text().replace("return torch.tanh(", "return 0 * torch.tanh("))
    edited = _digest(root, "pkg_digest")
    assert edited != first  # forward edited

    blocks = root / "pkg_digest" / "blocks.py"
    blocks.write_text(blocks.read_text().replace("relu", "sigmoid"))
    assert _digest(root, "pkg_digest") not in (first, edited)  # a helper the model imports


def test_the_same_code_in_another_folder_has_the_same_digest(tmp_path, fresh_package):
    """Modules are named by import name: a CI cache restored into another checkout path still hits."""
    here = _digest(make_project(tmp_path / "a", "pkg_moved"), "pkg_moved")
    for name in [m for m in sys.modules if m.startswith("pkg_moved")]:
        del sys.modules[name]
    sys.path.remove(str(tmp_path / "a"))
    from harness.registry import MODELS

    MODELS._items.clear()  # another project in this process (isolated_models restores the table)
    assert _digest(make_project(tmp_path / "b", "pkg_moved"), "pkg_moved") == here


def test_a_model_file_that_imports_the_users_package(tmp_path, fresh_package):
    """A ``@register_model`` file in models_dir whose generator lives in the user's package: editing the package
    (not the model file) changes the digest."""
    from harness.prepare.identity import code_digest
    from harness.zoo import get_model, load_model_file

    root = make_project(tmp_path / "p", "pkg_mf")
    sys.path.insert(0, str(root))
    (root / "models").mkdir()
    (root / "models" / "gen_file.py").write_text(textwrap.dedent('''
        from harness.model_helpers import latent_inputs
        from harness.zoo import register_model
        from pkg_mf.gen import Gen


        @register_model("gen_file", make_inputs=latent_inputs((4,)))
        def build():
            return Gen().eval()
    '''))
    load_model_file(root / "models" / "gen_file.py")
    spec = get_model("gen_file")
    first = code_digest(spec, spec.builder())
    blocks = root / "pkg_mf" / "blocks.py"
    blocks.write_text(blocks.read_text().replace("relu", "gelu"))
    assert code_digest(spec, spec.builder()) != first


def test_a_model_class_from_a_base_class_module_and_an_installed_package(tmp_path, fresh_package):
    """A base class in another user module is part of the code; a class from an installed package counts by
    the package's version (torch.nn: torch)."""
    from harness.prepare.identity import model_code
    from harness.zoo import get_model

    root = make_project(tmp_path / "p", "pkg_base")
    (root / "pkg_base" / "base.py").write_text("from torch import nn\n\n\nclass Base(nn.Module):\n    pass\n")
    gen = root / "pkg_base" / "gen.py"
    gen.write_text(gen.read_text().replace("class Gen(nn.Module)", "class Gen(__import__('pkg_base.base')."
                                                                    "base.Base)"))
    _digest(root, "pkg_base")
    files, packages = model_code(get_model("gen"), get_model("gen").builder())
    assert "pkg_base.base" in {name for name, _ in files}
    assert "torch" in {name for name, _ in packages}


# -- the user's loop, end to end ----------------------------------------------------------------------------


def harness_in(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=root, capture_output=True, text=True,
                          timeout=timeout)


def run_suite(root: Path, out: Path, cache: Path) -> tuple[dict, dict]:
    """``harness run --suite ci`` in the project: (artifacts built/reused, fp32 ONNX record)."""
    proc = harness_in(root, "run", "--suite", "ci", "--out", str(out), "--cache", str(cache), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = re.search(r"artifacts built (\d+), reused (\d+)", proc.stderr)
    assert found, proc.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    onnx = next(r for r in records if r["format"] == "onnx" and r["variant"] == "fp32")
    return {"built": int(found[1]), "reused": int(found[2])}, onnx


def metric(record: dict, name: str) -> float:
    return next(m["value"] for m in record["measurements"] if m["metric"] == name)


@pytest.mark.slow
def test_an_edited_model_is_rebuilt_and_measured_again(tmp_path):
    root = make_project(tmp_path / "proj", "pkg_loop")
    cache = tmp_path / "cache"
    first, record = run_suite(root, tmp_path / "r1", cache)
    assert first["built"] > 0 and metric(record, "psnr") > 100
    again, _ = run_suite(root, tmp_path / "r2", cache)
    assert again["built"] == 0 and again["reused"] > 0  # unchanged code: nothing rebuilt

    gen = root / "pkg_loop" / "gen.py"
    gen.write_text(gen.read_text().replace("return torch.tanh(", "return 0 * torch.tanh("))
    edited, record = run_suite(root, tmp_path / "r3", cache)
    assert edited["built"] > 0, "an edited forward was served from the cache"
    assert record["artifact_id"] != _read_id(tmp_path / "r1")

    blocks = root / "pkg_loop" / "blocks.py"
    blocks.write_text(blocks.read_text().replace("relu", "sigmoid"))
    helper, _ = run_suite(root, tmp_path / "r4", cache)
    assert helper["built"] > 0, "an edited helper module was served from the cache"


def _read_id(out: Path) -> str:
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    return next(r["artifact_id"] for r in records if r["format"] == "onnx" and r["variant"] == "fp32")


@pytest.mark.slow
def test_the_ci_flow_with_one_shared_cache_fails_a_slowed_head(tmp_path):
    """examples/user-project-ci.yml's pull-request flow: head measured first, then base, one cache for both (one
    actions/cache key), then an interleaved session and the gate. The head's generator is ~100× slower."""
    head = make_project(tmp_path / "head", "pkg_ci", width=16384)
    base = make_project(tmp_path / "base", "pkg_ci", width=8)
    for root in (head, base):
        (root / "bench" / "ci.toml").write_text(CI_SUITE.replace("min_runs = 5", "min_runs = 5\nrounds = 5"))
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    run_suite(head, runs / "head", cache)
    base_counts, _ = run_suite(base, runs / "base", cache)
    assert base_counts["built"] > 0  # the base's own model, not the head's export
    assert _read_id(runs / "head") != _read_id(runs / "base")
    ab = harness_in(tmp_path, "ab", "--baseline", str(runs / "base"), "--candidate", str(runs / "head"),
                    "--out", str(runs / "ab"), "--pairs", "6")
    assert ab.returncode == 0, ab.stderr[-3000:]
    gate = harness_in(tmp_path, "gate", "--baseline", str(runs / "ab" / "baseline"),
                      "--candidate", str(runs / "ab" / "candidate"), "--markdown", str(tmp_path / "summary.md"))
    assert gate.returncode == 1, gate.stderr[-3000:]  # before the fix: both sides measured the head's export, PASS
    summary = (tmp_path / "summary.md").read_text()
    assert "FAIL" in summary and "❌ regression" in summary, summary


def test_a_reused_torch_artifact_is_rebuilt_from_this_runs_model_file():
    """The same code in two checkouts shares ids; the worker must rebuild from this run's folder, not the folder
    the artifact was first built from (it may be gone)."""
    from harness.prepare.child import _rebuilt_from_here

    batches = {"1": {"variants": {"fp32": {"artifacts": {
        "torch": {"recipe": {"model": "gen", "source": "/gone/edge-harness.toml"}},
        "onnx": {"recipe": {"step": "export-onnx"}}}}},
        "decoder": {"artifacts": {"torch": {"recipe": {"model": "dec", "source": "/gone/dec.py"}}}}}}
    out = _rebuilt_from_here(batches, {"gen": "/here/edge-harness.toml", "dec": "/here/dec.py"})
    fp32 = out["1"]["variants"]["fp32"]["artifacts"]
    assert fp32["torch"]["recipe"]["source"] == "/here/edge-harness.toml"
    assert "source" not in fp32["onnx"]["recipe"]
    assert out["1"]["decoder"]["artifacts"]["torch"]["recipe"]["source"] == "/here/dec.py"

