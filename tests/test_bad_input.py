"""Malformed artifact files and results from the future: one-line errors naming the file, exit code 2."""
from __future__ import annotations

import json
import os

import onnx
import pytest

from tests.helpers import build_all
from tests.test_cli import harness
from tests.test_store_config import record


@pytest.fixture(scope="module")
def good(tiny_models_dir, shared_cache):
    _, _, _, exports = build_all(tiny_models_dir, shared_cache, "tiny_gen", formats=("onnx", "tflite", "executorch"))
    return {fmt: open(a.path, "rb").read() for fmt, a in exports.items()}


def _onnx_edit(data: bytes, edit) -> bytes:
    model = onnx.load_model_from_string(data)
    edit(model)
    return model.SerializeToString()


def _set_opset(model, version):
    model.opset_import[0].version = version


def _rename_first_op(model):
    model.graph.node[0].op_type = "FrobnicateXYZ"


MALFORMED = {
    "truncated.onnx": (lambda g: g["onnx"][: len(g["onnx"]) // 2], "not a readable ONNX model"),
    "random.onnx": (lambda g: os.urandom(2048), "ONNX model"),
    "empty.onnx": (lambda g: b"", "empty file"),
    "future-opset.onnx": (lambda g: _onnx_edit(g["onnx"], lambda m: _set_opset(m, 99)), "uses ONNX opset 99"),
    "unknown-op.onnx": (lambda g: _onnx_edit(g["onnx"], _rename_first_op), "No Op registered for FrobnicateXYZ"),
    "truncated.tflite": (lambda g: g["tflite"][: len(g["tflite"]) // 2], "litert cannot load it"),
    "random.tflite": (lambda g: os.urandom(2048), "not a TFLite flatbuffer"),
    "tiny.tflite": (lambda g: b"TFL", "too short to be a TFLite model"),
    "truncated.pte": (lambda g: g["executorch"][: len(g["executorch"]) // 2], "executorch cannot load it"),
    "random.pte": (lambda g: os.urandom(2048), "not an ExecuTorch program"),
    "tiny.pte": (lambda g: b"\x00\x00\x00\x00ET", "too short to be an ExecuTorch program"),
    "model.pb": (lambda g: b"\x08\x01", "unknown artifact type '.pb'"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_artifact_is_a_one_line_error(name, good, tmp_path):
    make, message = MALFORMED[name]
    path = tmp_path / name
    path.write_bytes(make(good))
    proc = harness("run", "--artifact", str(path), "--quick", "--out", str(tmp_path / "run"), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(path) in lines[0] and message in lines[0]


def test_missing_artifact_file(tmp_path):
    proc = harness("run", "--artifact", str(tmp_path / "nope.onnx"))
    assert proc.returncode == 2 and "nope.onnx: file not found" in proc.stderr


def test_results_from_a_future_schema_are_exit_2(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(record().to_dict() | {"schema_version": 99}) + "\n")
    proc = harness("report", str(path))
    assert proc.returncode == 2
    assert f"{path}:1: results use schema_version 99" in proc.stderr and "Traceback" not in proc.stderr


def test_measured_results_survive_a_later_bad_input(tmp_path, tiny_models_dir, shared_cache):
    """A bad file given on resume is refused before anything is touched: earlier results stay intact."""
    out = tmp_path / "run"
    env = {"EDGE_HARNESS_MODELS": str(tiny_models_dir)}
    first = harness("run", "--variant", "none", "--model", "tiny_gen", "--format", "onnx", "--quick", "--out", str(out),
                    "--cache", str(shared_cache), env=env)
    assert first.returncode == 0, first.stderr
    before = (out / "results.jsonl").read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    again = harness("run", "--artifact", str(bad), "--out", str(out), "--resume", env=env)
    assert again.returncode == 2
    assert (out / "results.jsonl").read_bytes() == before
