"""The prepare step cannot take the machine down: it runs under a memory cap and a time limit per variant step, and
a variant that runs away fails alone, named; fp32 and the other variants are prepared and measured
(``harness.launch.preparing``)."""
from __future__ import annotations

import json

import pytest

from harness.results.store import read_records
from harness.launch.preparing import built_on, current_step
from harness.types import CompressionSpec
from tests.conftest import FIXTURES
from tests.helpers import QUICK_SETTINGS_TOML
from tests.test_cli import harness


def test_the_step_a_child_was_in_names_its_variant(tmp_path):
    path = tmp_path / "progress.jsonl"
    lines = ["building", "training on digits (vae)", "reference outputs, batch 1", "exporting fp32 → onnx, batch 1",
             "compressing: half (fp16), batch 1", "compressing: student (distill)", "distilling the student"]
    expected = [("building", None), ("building", None), ("reference outputs, batch 1", None),
                ("exporting fp32 → onnx, batch 1", None), ("compressing: half (fp16), batch 1", "half"),
                ("compressing: student (distill)", "student"), ("compressing: student (distill)", "student")]
    for line, want in zip(lines, expected):
        with path.open("a") as f:
            f.write(json.dumps({"what": line}) + "\n")
        assert current_step(path) == want, line
    with path.open("a") as f:
        f.write(json.dumps({"what": "exporting student → tflite, batch 1"}) + "\nnot json\n")
    assert current_step(path) == ("exporting student → tflite, batch 1", "student")
    assert current_step(tmp_path / "none.jsonl") == ("", None)


def test_variants_built_on_a_failed_one_go_with_it():
    variants = [CompressionSpec("a", "distill"), CompressionSpec("b", "fp16", after="a"),
                CompressionSpec("c", "quant-dynamic", after="b"), CompressionSpec("d", "fp16")]
    assert built_on(["a"], variants) == {"a": "a", "b": "a", "c": "a"}
    assert built_on([], variants) == {}


@pytest.mark.slow
def test_a_runaway_variant_fails_alone_and_fp32_is_measured(tmp_path, tiny_models_dir):
    """A compressor that allocates without bound (the prepare child passes its 700 MiB cap: oom) and one that never
    returns (its step passes variant_timeout_s: timeout), each with a variant built on it; fp32 and fp16 measure."""
    suite = tmp_path / "s.toml"
    suite.write_text('models = ["tiny_gen"]\ntargets = ["x86-cpu"]\nformats = ["onnx"]\nbatch_sizes = [1]\n'
                     + QUICK_SETTINGS_TOML + "prepare_memory_mb = 700\nvariant_timeout_s = 15\n" + '''
[[variants]]
name = "hog"
method = "hog-memory"
[[variants]]
name = "hog-then-int8"
method = "quant-dynamic"
after = "hog"
[[variants]]
name = "stuck"
method = "never-returns"
[[variants]]
name = "half"
method = "fp16"
''')
    out = tmp_path / "run"
    proc = harness("run", "--suite", str(suite), "--out", str(out), "--cache", str(tmp_path / "cache"),
                   "--no-progress", env={"EDGE_HARNESS_MODELS": str(tiny_models_dir),
                                         "EDGE_HARNESS_PLUGINS": str(FIXTURES / "plugins" / "runaway_compressors.py")},
                   timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]
    records = {r.variant: r for r in read_records(out / "results.jsonl")}
    assert set(records) == {"fp32", "hog", "hog-then-int8", "stuck", "half"}
    assert records["fp32"].status == "ok" and records["fp32"].measurement("latency")
    assert records["half"].status == "ok"
    hog, stuck = records["hog"], records["stuck"]
    assert hog.status == "oom" and "variant hog oom" in hog.error and "> 700 MiB" in hog.error, hog.error
    assert "compressing: hog (hog-memory)" in hog.error
    assert stuck.status == "timeout" and "variant_timeout_s = 15 s" in stuck.error, stuck.error
    after = records["hog-then-int8"]
    assert after.status == "failed" and "built on hog, which failed" in after.error
    assert proc.stderr.count("preparing the rest again") == 2
