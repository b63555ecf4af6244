"""Cold and warm start: the page cache really dropped (and counted back), each runtime's start-up cache written by
the cold process and read by the warm one, and a suite's jobs with both figures, their parts and the report's
section. (Over SSH: tests/test_ssh.py.)"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from harness.engine.start import CACHE_ROOT, drop_from_page_cache, page_cache_state, resident_pages
from harness.results.store import read_records
from tests.helpers import QUICK_SETTINGS_TOML, memory_backed
from tests.test_cli import harness


def test_a_file_is_dropped_from_the_page_cache_and_counted_back(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x01" * (1 << 20))  # 1 MiB: 256 pages of 4 KiB
    if memory_backed(path):
        pytest.skip(f"{tmp_path} is on {memory_backed(path)}: its pages are the storage, nothing to drop")
    path.read_bytes()
    resident, total = resident_pages(str(path))
    assert total == (1 << 20) // __import__("mmap").PAGESIZE and resident > 0
    said = drop_from_page_cache(str(path))
    assert said == f"dropped: 0 of {total} pages resident", said
    assert resident_pages(str(path)) == (0, total)
    path.read_bytes()
    assert page_cache_state(str(path)) == f"{total} of {total} pages resident"


SUITE = """
models = ["tiny_gen"]
targets = ["x86-cpu"]
formats = ["torch", "onnx", "tflite", "executorch"]
batch_sizes = [1]
""" + QUICK_SETTINGS_TOML.replace("start_runs = 0", "start_runs = 2")


@pytest.mark.slow
@pytest.mark.export
def test_every_runtime_starts_cold_then_warm_and_onnx_runtime_reads_back_its_own_cache(tmp_path, tiny_models_dir,
                                                                                       shared_cache):
    leftovers = set((Path(tempfile.gettempdir()) / CACHE_ROOT).glob("*"))
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = tmp_path / "run"
    proc = harness("run", "--suite", str(suite), "--out", str(out), "--cache", str(shared_cache), "--no-progress",
                   env={"EDGE_HARNESS_MODELS": str(tiny_models_dir)})
    assert proc.returncode == 0, proc.stderr
    records = read_records(out / "results.jsonl")
    assert {r.runtime for r in records} == {"torch", "onnxruntime", "litert", "executorch"}
    for r in records:
        for kind in ("cold", "warm"):
            m = r.measurement(f"{kind}_start")
            assert m is not None and len(m.samples) == 2, (r.runtime, kind)  # one per fresh process
            parts = {k: m.stats[k] for k in ("interpreter_ms", "import_ms", "load_ms", "first_inference_ms")}
            assert all(v > 0 for v in parts.values()), (r.runtime, kind, parts)
            assert parts["interpreter_ms"] < m.value and parts["load_ms"] < m.value
        start = r.context["start"]
        dropped = "not fully dropped: " if memory_backed(shared_cache) else "dropped: 0 of"  # tmpfs keeps its pages
        assert all(p.startswith(dropped) for p in start["cold"]["page_cache"]), start
        if r.runtime == "onnxruntime":
            assert start["cold"]["cache"].startswith("written: ONNX Runtime optimised the graph and saved it")
            assert start["warm"]["cache"].startswith("read: ONNX Runtime's saved optimised model")
            assert all(p.endswith("pages resident") and not p.startswith("0 of") for p in start["warm"]["page_cache"])
        else:
            assert start["warm"]["cache"].startswith("none: ") and start["cold"]["cache"] == start["warm"]["cache"]
        assert r.context["pass_seconds"]["start"] > 0
    torch_import = next(r for r in records if r.runtime == "torch").measurement("cold_start").stats["import_ms"]
    ort_import = next(r for r in records if r.runtime == "onnxruntime").measurement("cold_start").stats["import_ms"]
    assert torch_import > ort_import  # PyTorch eager's import cost is its own part, and the largest here
    assert set((Path(tempfile.gettempdir()) / CACHE_ROOT).glob("*")) <= leftovers  # every cache folder removed
    html = (out / "index.html").read_text()
    assert "Cold and warm start" in html and "runtime import" in html
    import pandas as pd

    summary = pd.read_csv(out / "summary.csv")
    assert summary["cold_start_ms"].notna().all() and summary["warm_start_ms"].notna().all()


@pytest.mark.slow
@pytest.mark.export
def test_litert_s_compiled_model_api_measures_and_reads_back_its_xnnpack_weight_cache(tmp_path, tiny_models_dir,
                                                                                       shared_cache):
    """``[litert] api = "compiled"``: the same .tflite through ai-edge-litert's CompiledModel; the start pass's cold
    process packs the weights and writes XNNPACK's weight cache, the warm one maps it; outputs match the fp32
    reference as the Interpreter's do, and the record says which API timed it; a bad api is one line."""
    from harness.config.paths import targets_dir

    targets = tmp_path / "targets"
    targets.mkdir()
    profile = (targets_dir() / "x86-cpu.toml").read_text().replace('name = "x86-cpu"', 'name = "compiled"')
    assert 'api = "interpreter"' in profile
    (targets / "compiled.toml").write_text(profile.replace('api = "interpreter"', 'api = "compiled"'))
    (targets / "bad.toml").write_text(profile.replace('name = "compiled"', 'name = "bad"')
                                      .replace('api = "interpreter"', 'api = "jit"'))
    suite = tmp_path / "suite.toml"
    suite.write_text('models = ["tiny_gen"]\ntargets = ["compiled"]\nformats = ["tflite"]\nbatch_sizes = [1]\n'
                     + QUICK_SETTINGS_TOML.replace("start_runs = 0", "start_runs = 1"))
    env = {"EDGE_HARNESS_MODELS": str(tiny_models_dir), "EDGE_HARNESS_TARGETS": str(targets)}
    out = tmp_path / "run"
    proc = harness("run", "--suite", str(suite), "--out", str(out), "--cache", str(shared_cache), "--no-progress",
                   env=env)
    assert proc.returncode == 0, proc.stderr
    (record,) = read_records(out / "results.jsonl")
    assert record.status == "ok" and record.runtime == "litert" and record.context["litert_api"] == "compiled"
    assert record.measurement("max_abs_error").value < 1e-4
    start = record.context["start"]
    assert start["cold"]["cache"].startswith("written: LiteRT packed the weights"), start
    assert start["warm"]["cache"].startswith("read: LiteRT's XNNPACK weight cache"), start
    bad = harness("run", "--suite", str(suite), "--target", "bad", "--out", str(tmp_path / "bad"), "--no-progress",
                  "--cache", str(shared_cache), env=env)
    assert bad.returncode == 2 and "[litert] api must be one of interpreter, compiled" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
