"""Plugins (EDGE_HARNESS_PLUGINS) reach every process that uses an extension: the harness, each worker, and the
prepare child that exports — where an exporter plugin is needed."""
from __future__ import annotations

import pytest

from harness.results.store import read_records
from tests.conftest import FIXTURES
from tests.test_cli import harness


@pytest.mark.slow
def test_a_plugin_exporter_is_used_by_the_prepare_child(tmp_path, tiny_models_dir):
    plugin = FIXTURES / "plugins" / "marked_onnx_exporter.py"
    out = tmp_path / "run"
    proc = harness("run", "--variant", "none", "--model", "tiny_gen", "--quick", "--format", "onnx", "--target",
                   "x86-cpu", "--out", str(out), "--cache", str(tmp_path / "cache"),
                   env={"EDGE_HARNESS_MODELS": str(tiny_models_dir), "EDGE_HARNESS_PLUGINS": str(plugin)})
    assert proc.returncode == 0, proc.stderr
    records = read_records(out / "results.jsonl")
    assert records and all(r.status == "ok" for r in records)
    for r in records:
        assert r.context["artifact_recipe"]["tools"]["plugin"] == "marked-onnx-exporter"


def test_plugins_load_at_each_entry_point_not_as_an_import_side_effect():
    import ast

    from harness.config.paths import PACKAGE_DIR

    callers = sorted(str(p.relative_to(PACKAGE_DIR)) for p in PACKAGE_DIR.rglob("*.py")
                     if any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", "")) ==
                            "load_plugins" for n in ast.walk(ast.parse(p.read_text()))))
    assert callers == ["api.py", "cli.py", "launch/cluster.py", "prepare/child.py", "prepare/dry_run.py",
                       "pytest_plugin.py", "worker.py"]  # launch/cluster: a lab node's lanes (its own plugins)


def test_a_broken_plugin_in_a_worker_is_a_failed_result_naming_it(tmp_path):
    """Plugins load inside the worker's request handling: a plugin that raises is one 'failed' result, and what a
    plugin prints never reaches the result channel."""
    from harness.launch.local import LocalLauncher
    from harness.protocol import WorkerRequest

    chatty = tmp_path / "chatty.py"
    chatty.write_text("print('hello from a plugin')\n")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no licence server')\n")
    ok = LocalLauncher(env={"EDGE_HARNESS_PLUGINS": str(chatty)}).run(WorkerRequest("probe"), 60)
    assert ok.status == "ok"
    failed = LocalLauncher(env={"EDGE_HARNESS_PLUGINS": str(broken)}).run(WorkerRequest("probe"), 60)
    assert failed.status == "failed"
    assert f"{broken}: plugin failed to import: RuntimeError: no licence server" in failed.error


PINNED_TARGET = """name = "{name}"
arch = "x86_64"
reach = "pinned"
runtimes = ["onnxruntime"]
threads = 1
[pinned]
cpus = {cpus}
"""


@pytest.mark.slow
def test_a_plugin_adds_a_reach_with_its_own_target_table(tmp_path, tiny_models_dir):
    """A new reach is one plugin file (a launcher class registered by its name) and a profile naming it: the profile's
    own table goes to the launcher, every job runs through it, and a wrong table is a one-line error."""
    import shutil

    from harness.config.paths import builtin_dir

    plugin = FIXTURES / "plugins" / "pinned_reach.py"
    targets = tmp_path / "targets"
    shutil.copytree(builtin_dir("targets"), targets)
    (targets / "pinned-cpu.toml").write_text(PINNED_TARGET.format(name="pinned-cpu", cpus='"0"'))
    env = {"EDGE_HARNESS_MODELS": str(tiny_models_dir), "EDGE_HARNESS_PLUGINS": str(plugin),
           "EDGE_HARNESS_TARGETS": str(targets)}
    proc = harness("run", "--variant", "none", "--model", "tiny_gen", "--quick", "--format", "onnx", "--target",
                   "pinned-cpu", "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "cache"), env=env)
    assert proc.returncode == 0, proc.stderr
    records = read_records(tmp_path / "run" / "results.jsonl")
    assert records and {(r.status, r.target) for r in records} == {("ok", "pinned-cpu")}
    for record in records:
        assert record.context["launcher"] == "pinned to CPUs 0" and record.context["cores_available"] == 1
        assert record.measurement("latency").value > 0

    (targets / "pinned-cpu.toml").write_text(PINNED_TARGET.format(name="pinned-cpu", cpus="3"))
    bad = harness("run", "--variant", "none", "--model", "tiny_gen", "--quick", "--target", "pinned-cpu", "--out",
                  str(tmp_path / "bad"),
                  env=env)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad.stderr
    assert '[pinned] cpus must be a CPU list such as "0" or "0-1"' in bad.stderr
    (targets / "pinned-cpu.toml").write_text(PINNED_TARGET.format(name="pinned-cpu", cpus='"0"'))
    without = harness("run", "--variant", "none", "--model", "tiny_gen", "--quick", "--target", "pinned-cpu", "--out",
                      str(tmp_path / "no"),
                      env={k: v for k, v in env.items() if k != "EDGE_HARNESS_PLUGINS"})
    assert without.returncode == 2 and "reach 'pinned' is not supported here (supported: emulated, local, ssh;" \
        in without.stderr


def test_a_lazy_member_is_imported_at_its_first_lookup_and_a_plugin_can_still_replace_it(tmp_path, monkeypatch):
    """Built-in members are named by module (listing imports nothing, a lookup imports one module); a plugin that
    replaces one before anything imported it wins for good: importing the built-in's module later cannot undo it."""
    import importlib
    import sys

    (tmp_path / "holder_registry.py").write_text("from harness.registry import Registry\nREG = Registry('thing')\n")
    (tmp_path / "builtin_member.py").write_text("from holder_registry import REG\n\n\n@REG.register('a')\n"
                                                "class A:\n    pass\n\n\n@REG.register('b')\nclass B:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("holder_registry", "builtin_member"):
        sys.modules.pop(name, None)
    reg = importlib.import_module("holder_registry").REG
    reg.register_lazy("a", "builtin_member")  # the module registers it when imported
    reg.register_lazy("b", "builtin_member:B")  # or the attribute is taken
    assert reg.names() == ["a", "b"] and "builtin_member" not in sys.modules
    assert reg.get("a").__name__ == "A" and "builtin_member" in sys.modules
    assert reg.get("b").__name__ == "B"  # filled by the same import

    sys.modules.pop("builtin_member")
    fresh = importlib.import_module("holder_registry").REG
    fresh._items.clear()
    fresh.register_lazy("a", "builtin_member")

    @fresh.register("a", replace=True)
    class Mine:
        pass

    importlib.import_module("builtin_member")  # the built-in's module, imported afterwards anyway
    assert fresh.get("a") is Mine
    from harness.errors import HarnessInputError

    with pytest.raises(HarnessInputError, match="unknown thing 'c' \\(known: a, b\\)"):
        fresh.get("c")
    fresh.register_lazy("d", "builtin_member")
    with pytest.raises(ValueError, match="builtin_member did not register the thing 'd'"):
        fresh.get("d")
