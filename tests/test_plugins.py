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
    assert callers == ["api.py", "cli.py", "prepare/child.py", "prepare/dry_run.py", "pytest_plugin.py", "worker.py"]


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
