"""A user's project: config found upwards, built-ins overridden by name, generators declared by import path with
their checkpoint (every checkpoint problem a one-line exit 2), `harness init`."""
from __future__ import annotations

import pickle
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from harness.prepare.checkpoints import Checkpoint, load_checkpoint
from harness.errors import HarnessInputError
from harness.config.project import find_config
from tests.helpers import QUICK_SETTINGS_TOML
from tests.test_results_fuzz import cli

NET = textwrap.dedent('''
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, width: int = 8) -> None:
            super().__init__()
            self.fc = nn.Linear(4, width)
            self.out = nn.Linear(width, 16)

        def forward(self, z):
            return torch.tanh(self.out(torch.relu(self.fc(z)))).view(-1, 1, 4, 4)

    def make(width: int = 8):
        return Net(width)
''')


class Net(torch.nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, width)
        self.out = torch.nn.Linear(width, 16)


@pytest.fixture
def project(tmp_path, monkeypatch, isolated_models):
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "nets.py").write_text(NET)
    (root / "sub" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(root / "sub" / "deeper")  # found from a folder below the config
    for key in ("EDGE_HARNESS_MODELS", "EDGE_HARNESS_TARGETS", "EDGE_HARNESS_PROJECT"):
        monkeypatch.delenv(key, raising=False)
    # each test's project has its own package `pkg`: forget another test's, and the import path it added
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [m for m in sys.modules if m == "pkg" or m.startswith("pkg.")]:
        monkeypatch.delitem(sys.modules, name)
    return root


def write_config(root, extra: str = "", checkpoint: str = 'checkpoint = "w.safetensors"') -> None:
    (root / "edge-harness.toml").write_text(textwrap.dedent(f'''
        [models.net]
        factory = "pkg.nets:make"
        kwargs = {{ width = 8 }}
        inputs = [{{ name = "z", shape = [4] }}]
        {checkpoint}
        {extra}
    '''))


def test_config_found_upwards_and_in_pyproject(project):
    assert find_config() is None
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.edge-harness]\ntargets_dir = "."\n')
    assert find_config() == project / "pyproject.toml"
    write_config(project)
    assert find_config() == project / "edge-harness.toml"  # the dedicated file wins in the same folder


def test_a_declared_model_with_its_checkpoint_is_listed(project):
    save_file({k: v.contiguous() for k, v in Net().state_dict().items()}, project / "w.safetensors")
    write_config(project)
    code, err = cli("list", "models")
    assert code == 0, err


@pytest.mark.parametrize("make, config, message", [
    (lambda p: p.write_bytes(b"\x20\x00\x00\x00\x00\x00\x00\x00{\"fc"), {}, "not a readable safetensors file"),
    (lambda p: save_file({"fc.weight": torch.zeros(8, 4)}, p), {},
     "does not match the model's parameters: missing fc.bias, out.bias, out.weight"),
    (lambda p: save_file({k: v.contiguous() for k, v in Net().state_dict().items()} | {"extra": torch.zeros(1)}, p),
     {}, "unexpected extra"),
    (lambda p: save_file({k: v.contiguous() for k, v in Net(6).state_dict().items()}, p), {},
     "tensors of the wrong shape (checkpoint vs model): fc.bias (6,) vs (8,)"),
    (lambda p: save_file({f"g.{k}": v.contiguous() for k, v in Net().state_dict().items()}, p),
     {"key": "ema"}, "no 'ema' in the checkpoint (checkpoint_key = 'ema'; found: g.fc.bias"),
])
def test_checkpoint_problems_are_one_line_naming_the_file(tmp_path, make, config, message):
    path = tmp_path / "w.safetensors"
    make(path)
    with pytest.raises(HarnessInputError) as info:
        load_checkpoint(Net(), Checkpoint(str(path), config.get("key", "")))
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value) and "\n" not in str(info.value)


class Sneaky:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_torch_checkpoints_nested_prefixed_and_refused(tmp_path):
    state = Net().state_dict()
    nested = tmp_path / "nested.pt"
    torch.save({"epoch": 3, "state_dict": {"generator": state}}, nested)
    model = Net()
    load_checkpoint(model, Checkpoint(str(nested), "state_dict.generator"))
    assert torch.equal(model.fc.weight, state["fc.weight"])
    prefixed = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, prefixed)
    load_checkpoint(Net(), Checkpoint(str(prefixed), "module"))
    with pytest.raises(HarnessInputError, match=r"nested state_dicts under: state_dict \(set checkpoint_key\)"):
        load_checkpoint(Net(), Checkpoint(str(nested)))
    pickled = tmp_path / "pickled.pt"
    with open(pickled, "wb") as f:
        pickle.dump({"fc.weight": Sneaky()}, f)
    with pytest.raises(HarnessInputError, match="refused by torch.load\\(weights_only=True\\)"):
        load_checkpoint(Net(), Checkpoint(str(pickled)))
    with pytest.raises(HarnessInputError, match="checkpoint not found"):
        load_checkpoint(Net(), Checkpoint(str(tmp_path / "none.pt")))


def test_a_mismatched_checkpoint_stops_a_run_before_anything_runs(project, tmp_path):
    save_file({k: v.contiguous() for k, v in Net(6).state_dict().items()}, project / "w.safetensors")
    write_config(project)
    (project / "s.toml").write_text('models = ["net"]\ntargets = ["x86-cpu"]\nformats = ["onnx"]\n')
    out = tmp_path / "run"
    code, err = cli("run", "--suite", str(project / "s.toml"), "--out", str(out), "--no-progress",
                    "--cache", str(tmp_path / "cache"))
    assert code == 2 and err.count("\n") == 1, err
    assert f"{project / 'w.safetensors'}: tensors of the wrong shape" in err
    assert not out.exists()


@pytest.mark.parametrize("table, message", [
    ('factory = "pkg.nets"\ninputs = [{ name = "z", shape = [4] }]', "must look like 'package.module:ClassOrFunction'"),
    ('factory = "nope.nets:make"\ninputs = [{ name = "z", shape = [4] }]', "cannot import 'nope.nets'"),
    ('factory = "pkg.nets:missing"\ninputs = [{ name = "z", shape = [4] }]', "has no 'missing'"),
    ('factory = "pkg.nets:make"', "needs 'inputs'"),
    ('factory = "pkg.nets:make"\ninputs = [{ name = "z", shape = [0] }]', "shape must hold sizes >= 1"),
    ('factory = "pkg.nets:make"\ninputs = [{ name = "z", shape = [4], kind = "gauss" }]', "kind must be one of"),
    ('factory = "pkg.nets:make"\ninputs = [{ name = "z", shape = [4] }]\noutput_range = [1, -1]', "high > low"),
    ('factory = "pkg.nets:make"\ninputs = [{ name = "z", shape = [4] }]\ncolour = 1', "unknown key 'colour'"),
    ('factory = "pkg.nets:make"\ninputs = [{ name = "z", shape = [4] }]\nsampler = { method = "magic" }',
     "sampler method must be one of ddim, ddpm, euler, dpmsolver++"),
    ('factory = "pkg.nets:make"\ninputs = [{ name = "x", shape = [4] }, { name = "t", shape = [], kind = "integer", '
     'low = 0, high = 1000 }]\nsampler = { method = "euler", steps = 10 }', "Euler with linspace spacing steps "
     "through fractional timesteps, which the integer input 't' would truncate"),
    ('factory = "pkg.nets:make"\ninputs = [{ name = "x", shape = [4] }, { name = "t", shape = [] }]\n'
     'sampler = { scheduler = "missing/scheduler_config.json", steps = 10 }', "missing"),
    ('factory = "pkg.nets:make"\ninputs = [{ name = "z", shape = [4] }]\nsampler = { steps = 4 }',
     "the sampler's inputs ('x', 't') are not among the denoiser's ('z'): 'x', 't' missing"),
])
def test_bad_model_declarations_are_one_line(project, table, message):
    (project / "edge-harness.toml").write_text(f"[models.net]\n{table}\n")
    code, err = cli("list", "models")
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_project_entries_override_built_ins_by_name(project):
    (project / "targets").mkdir()
    (project / "targets" / "x86-cpu.toml").write_text(
        'name = "x86-cpu"\ndescription = "mine"\narch = "x86_64"\nreach = "local"\nruntimes = ["onnxruntime"]\n')
    (project / "models").mkdir()
    (project / "models" / "dcgan.py").write_text(textwrap.dedent('''
        from harness.model_helpers import latent_inputs, seeded
        from harness.zoo import register_model
        from pkg.nets import Net

        @register_model("dcgan", make_inputs=latent_inputs((4,)), description="my own dcgan")
        def build():
            return seeded(Net, seed=0)
    '''))
    (project / "edge-harness.toml").write_text('targets_dir = "targets"\nmodels_dir = "models"\n')
    from harness.config import paths
    from harness.config.targets import get_target
    from harness.zoo import discover_all, get_model

    assert get_target(paths.targets_dirs(), "x86-cpu").description == "mine"
    assert "dcgan" in discover_all() and get_model("dcgan").description == "my own dcgan"


def test_init_writes_a_starter_and_never_overwrites(project):
    code, err = cli("init", "--dir", str(project))
    assert code == 0, err
    assert (project / "edge-harness.toml").is_file() and (project / "bench" / "suites" / "quick.toml").is_file()
    from harness.config.suite import load_suite

    ci = load_suite(project / "bench" / "suites" / "ci.toml")  # what the CI template runs and gates
    assert ci.settings.rounds >= 5 and list(ci.models) == ["my_generator"]
    assert ci.settings.contention_retries >= 1
    before = (project / "edge-harness.toml").read_text()
    code, err = cli("init", "--dir", str(project))
    assert code == 2 and "already exists; harness init never overwrites" in err
    assert (project / "edge-harness.toml").read_text() == before
    code, err = cli("list", "suites")
    assert code == 0
    # the starter names a placeholder package: listing models says what to edit, in one line
    code, err = cli("list", "models")
    assert code == 2 and "cannot import 'mypkg.generator'" in err and err.count("\n") == 1


DENOISER = textwrap.dedent('''
    import torch
    from torch import nn

    class Denoiser(nn.Module):
        """x (1×8×8) and an integer timestep → predicted noise; the timestep enters at the end (a plain chain of
        convolutions before it, which channel pruning and distillation can thin; skips are issue 16's)."""

        def __init__(self, ch: int = 8) -> None:
            super().__init__()
            self.inp = nn.Conv2d(1, ch, 3, padding=1)
            self.mid = nn.Conv2d(ch, ch, 3, padding=1)
            self.out = nn.Conv2d(ch, 1, 3, padding=1)
            self.temb = nn.Linear(1, 1)

        def forward(self, x, t):
            h = torch.relu(self.mid(torch.relu(self.inp(x))))
            return self.out(h) + self.temb(t.float().unsqueeze(1) / 1000.0)[:, :, None, None]
''')


@pytest.mark.slow
def test_every_kind_of_compressor_works_on_a_declared_model_with_a_timestep_input(project, tmp_path):
    (project / "pkg" / "denoise.py").write_text(DENOISER)
    (project / "edge-harness.toml").write_text(textwrap.dedent('''
        [models.denoiser]
        factory = "pkg.denoise:Denoiser"
        inputs = [{ name = "x", shape = [1, 8, 8] }, { name = "t", shape = [], kind = "integer", low = 0, high = 1000 }]
        seed = 3
        sampler = { method = "ddpm", steps = 4 }
    '''))
    (project / "s.toml").write_text('models = ["denoiser"]\ntargets = ["x86-cpu"]\nformats = ["onnx", "tflite"]\n'
                                    + QUICK_SETTINGS_TOML + textwrap.dedent('''
        [[variants]]
        name = "distill"
        method = "distill"
        amount = 0.5
        steps = 20
        [[variants]]
        name = "l1"
        method = "prune-l1"
        [[variants]]
        name = "int8"
        method = "quant-static"
        calibration_batches = 2
        [[variants]]
        name = "tfl"
        method = "tflite-dynamic"
    '''))
    out = tmp_path / "run"
    code, err = cli("run", "--suite", str(project / "s.toml"), "--out", str(out), "--no-progress",
                    "--cache", str(tmp_path / "cache"))
    assert (out / "results.jsonl").is_file(), err
    from harness.results.records import parse_records

    records = {(r.variant, r.format): r for r in parse_records(out / "results.jsonl")}
    assert code == 0, (err, {k: r.error for k, r in records.items() if r.status != "ok"})
    assert set(records) == {("fp32", "onnx"), ("fp32", "tflite"), ("distill", "onnx"), ("distill", "tflite"),
                            ("l1", "onnx"), ("l1", "tflite"), ("int8", "onnx"), ("tfl", "tflite")}
    distill = records[("distill", "onnx")]
    assert any(m.metric == "distill_loss" for m in distill.measurements)
    for record in records.values():  # its int64 timestep: the sampling loop passes the model's own type
        assert record.measurement("loop_latency").samples, (record.variant, record.format)
    # DDPM draws fresh noise per image and step: the worker (one image at a time) walks the reference's paths
    assert records[("fp32", "onnx")].measurement("loop_psnr").value > 60
    assert distill.context["model_source"] == str(project / "edge-harness.toml")
