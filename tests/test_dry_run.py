"""The user's model is checked before anything runs: every way a declared model cannot run is one line naming the
input and the fix, exit 2, and no job is measured (``harness.prepare.dry_run``)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from harness.errors import HarnessInputError
from tests.test_project import project  # noqa: F401  (the fixture: a project folder with package `pkg`)
from tests.test_results_fuzz import cli

CONDITIONAL = textwrap.dedent('''
    import torch
    from torch import nn

    class Cond(nn.Module):
        """A class-conditional generator: latent + integer label through nn.Embedding."""

        def __init__(self, classes: int = 10) -> None:
            super().__init__()
            self.embed = nn.Embedding(classes, 4)
            self.fc = nn.Linear(8, 16)

        def forward(self, z, label):
            return torch.tanh(self.fc(torch.cat([z, self.embed(label)], 1))).view(-1, 1, 4, 4)

    class Noisy(nn.Module):
        """StyleGAN-style noise injection: fresh noise drawn inside forward at every call."""

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 16)

        def forward(self, z):
            h = self.fc(z)
            return torch.tanh(h + 0.1 * torch.randn_like(h)).view(-1, 1, 4, 4)

    class Dropped(nn.Module):
        """Dropout (pix2pix's decoder): off in eval mode, where the harness measures, so deterministic."""

        def __init__(self) -> None:
            super().__init__()
            self.fc, self.drop = nn.Linear(4, 16), nn.Dropout(0.5)

        def forward(self, z):
            return torch.tanh(self.drop(self.fc(z))).view(-1, 1, 4, 4)

    class Normalising(nn.Module):
        """Normalises its input in place: deterministic, as long as each call gets its own copy of the inputs."""

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 16)

        def forward(self, z):
            z.sub_(0.5).div_(0.5)
            return torch.tanh(self.fc(z)).view(-1, 1, 4, 4)

    def not_a_module():
        return {"weights": 1}

    def raises():
        raise ValueError("width must be even")
''')


def declare(project, inputs: str, factory: str = "pkg.cond:Cond", extra: str = "") -> None:
    (project / "pkg" / "cond.py").write_text(CONDITIONAL)
    (project / "edge-harness.toml").write_text(textwrap.dedent(f'''
        [models.cond]
        factory = "{factory}"
        inputs = {inputs}
    ''') + extra)


def check(project) -> str:
    """The dry run's one-line error for the project's model ('' when it runs)."""
    from harness.prepare.declared import register_declared
    from harness.prepare.dry_run import dry_run
    from harness.config.project import add_import_paths, load_project
    from harness.zoo import get_model

    config = load_project(project / "edge-harness.toml")
    add_import_paths(config)
    register_declared(project / "edge-harness.toml", config.models)
    try:
        dry_run(get_model("cond"))
    except HarnessInputError as exc:
        assert "\n" not in str(exc), str(exc)
        return str(exc)
    return ""


LATENT = '{ name = "z", shape = [4] }'
LABEL = '{ name = "label", shape = [], kind = "integer", low = 0, high = 10 }'


@pytest.mark.parametrize("inputs, expected", [
    (f"[{LATENT}, {LABEL}]", ""),
    (f"[{LATENT}]", "forward() argument 'label' has no declared input: declare one input per argument, in "
                    "forward's order (z, label); 1 declared (z)"),
    (f'[{LATENT}, {{ name = "label", shape = [] }}]',
     "input 'label' is used as an index (e.g. nn.Embedding) but declared float32: declare it kind = \"integer\", "
     "low = 0, high = <number of classes> (high is exclusive)"),
    (f'[{LATENT}, {{ name = "label", shape = [], kind = "integer", low = 0, high = 1000 }}]',
     "an integer input indexes out of range (IndexError: index out of range in self; drew label = "),
    (f'[{{ name = "z", shape = [5] }}, {LABEL}]',
     "forward failed on the declared inputs (z: float32 (1, 5), label: int64 (1,)): RuntimeError: mat1 and mat2 "
     "shapes cannot be multiplied"),
    (f'[{LATENT}, {LABEL}, {{ name = "extra", shape = [2] }}]',
     "3 inputs declared (z, label, extra) but forward() takes 2 (z, label): remove 'extra'"),
])
def test_each_way_a_model_cannot_run_is_one_line_naming_the_input(project, inputs, expected):
    declare(project, inputs)
    message = check(project)
    assert (expected in message) if expected else message == "", message
    if expected:
        assert message.startswith(f"{project / 'edge-harness.toml'}: model 'cond': ")


@pytest.mark.parametrize("factory, expected", [
    ("pkg.cond:Noisy", "forward is not deterministic: two calls on the same inputs differ by "),
    ("pkg.cond:Dropped", ""),
    ("pkg.cond:Normalising", ""),
])
def test_noise_drawn_inside_forward_is_named_before_it_reads_as_a_broken_export(project, factory, expected):
    """A StyleGAN-style generator drawing its noise in forward: every export "failed" with "export error 0.709
    exceeds tolerance" and no word about why. Now one line before any job; dropout (off in eval mode) passes."""
    declare(project, f"[{LATENT}]", factory)
    message = check(project)
    assert (expected in message and "declare the noise as an input" in message) if expected else message == "", message


@pytest.mark.parametrize("factory, expected", [
    ("pkg.cond:not_a_module", "returned a dict, not a torch nn.Module"),
    ("pkg.cond:raises", "pkg.cond:raises(**{}) failed: ValueError: width must be even"),
])
def test_a_factory_that_raises_or_returns_no_module_stops_the_run_before_any_job(project, tmp_path, factory,
                                                                                 expected):
    declare(project, f"[{LATENT}]", factory)
    (project / "s.toml").write_text('models = ["cond"]\ntargets = ["x86-cpu"]\nformats = ["onnx"]\n')
    out = tmp_path / "run"
    code, err = cli("run", "--suite", str(project / "s.toml"), "--out", str(out), "--no-progress",
                    "--cache", str(tmp_path / "cache"))
    assert code == 2 and expected in err and err.count("\n") == 1, err
    assert not (out / "results.jsonl").exists()  # no failed job per format: nothing ran


def test_a_float_label_stops_the_run_with_exit_2_before_any_job(project, tmp_path):
    declare(project, f'[{LATENT}, {{ name = "label", shape = [] }}]')
    (project / "s.toml").write_text('models = ["cond"]\ntargets = ["x86-cpu"]\nformats = ["onnx", "tflite"]\n')
    out = tmp_path / "run"
    code, err = cli("run", "--suite", str(project / "s.toml"), "--out", str(out), "--no-progress",
                    "--cache", str(tmp_path / "cache"))
    assert code == 2 and err.count("\n") == 1 and "input 'label' is used as an index" in err, err
    assert not (out / "results.jsonl").exists()


def test_an_unknown_model_in_a_suite_names_the_suite_file(project, tmp_path):
    declare(project, f"[{LATENT}, {LABEL}]")
    (project / "s.toml").write_text('models = ["cnod"]\ntargets = ["x86-cpu"]\nformats = ["onnx"]\n')
    code, err = cli("run", "--suite", str(project / "s.toml"), "--out", str(tmp_path / "r"), "--no-progress")
    assert code == 2 and f"{project / 's.toml'}: unknown model 'cnod' (known: " in err and "cond" in err, err


def test_a_checkpoint_whose_keys_carry_one_prefix_suggests_checkpoint_key(project, tmp_path):
    from harness.prepare.checkpoints import Checkpoint, load_checkpoint

    declare(project, f"[{LATENT}, {LABEL}]")
    import sys

    sys.path.insert(0, str(project))
    from pkg.cond import Cond

    model = Cond()
    save_file({f"ema.model.{k}": v.clone() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    with pytest.raises(HarnessInputError, match=r"set checkpoint_key = 'ema.model'"):
        load_checkpoint(Cond(), Checkpoint(str(tmp_path / "w.safetensors")))
    with pytest.raises(HarnessInputError, match=r"set checkpoint_key = 'ema.model'$"):
        load_checkpoint(Cond(), Checkpoint(str(tmp_path / "w.safetensors"), key="ema"))  # the rest of it
    load_checkpoint(Cond(), Checkpoint(str(tmp_path / "w.safetensors"), key="ema.model"))  # the fix works
    other = {f"gen.{k}": torch.zeros(1) for k in ("a", "b")}  # a prefix, but not the model's keys: no hint
    save_file(other, tmp_path / "o.safetensors")
    with pytest.raises(HarnessInputError) as info:
        load_checkpoint(Cond(), Checkpoint(str(tmp_path / "o.safetensors")))
    assert "checkpoint_key" not in str(info.value)


def test_a_passed_check_is_not_repeated_until_the_model_changes(project, tmp_path, monkeypatch):
    from harness.prepare.declared import register_declared
    from harness.prepare.dry_run import check_in_child
    from harness.config.project import add_import_paths, load_project
    from harness.launch.local import LocalLauncher
    from harness.zoo import get_model

    declare(project, f"[{LATENT}, {LABEL}]")
    config = load_project(project / "edge-harness.toml")
    add_import_paths(config)
    register_declared(project / "edge-harness.toml", config.models)
    cache = tmp_path / "cache"
    check_in_child(get_model("cond"), 120, cache_dir=cache)  # a real child: passes, remembered
    assert len(list((cache / "checks").glob("cond-*.ok"))) == 1
    started = []
    real_run = LocalLauncher.run
    monkeypatch.setattr(LocalLauncher, "run", lambda self, *a, **k: started.append(a) or real_run(self, *a, **k))
    check_in_child(get_model("cond"), 120, cache_dir=cache)
    assert started == []  # unchanged: not checked again
    source = project / "pkg" / "cond.py"
    source.write_text(source.read_text().replace("nn.Linear(8, 16)", "nn.Linear(9, 16)"))  # now it cannot run
    with pytest.raises(HarnessInputError, match="forward failed on the declared inputs"):
        check_in_child(get_model("cond"), 120, cache_dir=cache)
    assert len(started) == 1


def test_a_check_that_learnt_something_new_runs_again_on_a_model_that_passed(project, tmp_path, monkeypatch):
    """An upgraded harness whose check now refuses more (a non-deterministic forward) must not serve the old pass:
    the version stays 0.1.0 between builds, so the key holds the checking module's own source."""
    from harness.prepare import dry_run as module
    from harness.prepare.declared import register_declared
    from harness.config.project import add_import_paths, load_project
    from harness.zoo import get_model

    declare(project, f"[{LATENT}, {LABEL}]")
    config = load_project(project / "edge-harness.toml")
    add_import_paths(config)
    register_declared(project / "edge-harness.toml", config.models)
    before = module.passed_key(get_model("cond"))
    newer = tmp_path / "dry_run.py"
    newer.write_text(Path(module.__file__).read_text() + "\n# a new check\n")
    monkeypatch.setattr(module, "__file__", str(newer))
    assert module.passed_key(get_model("cond")) != before
