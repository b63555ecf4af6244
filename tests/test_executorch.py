"""ExecuTorch as a format: real exports (torch.export → XNNPACK partitioner → .pte), the real runtime, PT2E int8 for
ExecuTorch and TFLite with coverage read from each graph, the worker contract and a user's own .pte."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from harness.prepare.artifacts import load_outputs
from harness.protocol import PROTOCOL_VERSION
from harness.config.paths import PROJECT_ROOT
from harness.runtimes import RuntimeOptions, runtime_class, runtimes_for_format
from harness.worker import load_inputs
from tests.helpers import build_all
from tests.test_cli import harness

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tiny_models_dir, shared_cache):
    return build_all(tiny_models_dir, shared_cache, "tiny_gen", formats=("executorch",))


def test_export_is_a_delegated_pte_that_matches_pytorch(built):
    _, base, _, exports = built
    art = exports["executorch"]
    assert art.status == "ok", art.error
    assert art.format == "executorch" and art.path.endswith(".pte") and art.parent_id == base.id
    assert art.export_max_abs_error is not None and art.export_max_abs_error < 1e-5
    assert open(art.path, "rb").read()[4:6] == b"ET"  # the flatbuffer file identifier (ET12)
    delegation = art.compression["delegation"]
    # TinyGen: Linear → ReLU → view → ConvTranspose2d → tanh; both compute ops in one XNNPACK delegate call.
    assert delegation["compute_ops"] == 2 and delegation["ops_delegated_fraction"] == 1.0
    assert delegation["delegates"] == {"XnnpackBackend": 1}, delegation
    assert delegation["ops_int8_fraction"] == 0.0


def test_runtime_loads_infers_matches_and_sets_threads(built):
    from executorch.extension.pybindings import _C

    _, _, io, exports = built
    assert runtimes_for_format("executorch") == ["executorch"]
    rt = runtime_class("executorch")(RuntimeOptions(threads=1))
    assert rt.missing() is None and rt.versions()["executorch"]
    rt.preload()
    rt.load(exports["executorch"])
    assert _C._threadpool_get_thread_count() == 1
    outputs = rt.infer(load_inputs(io.inputs_path))
    rt.sync()
    reference = load_outputs(io.reference_path)
    assert outputs[0].shape == reference[0].shape == (1, 1, 8, 8)
    np.testing.assert_allclose(outputs[0], reference[0], rtol=1e-5, atol=1e-5)
    again = rt.infer(load_inputs(io.inputs_path))
    assert not np.shares_memory(again[0], outputs[0]) and np.array_equal(again[0], outputs[0])  # copied out


def test_missing_executorch_is_named(monkeypatch):
    import importlib.util

    from harness.runtimes import executorch_rt

    real = importlib.util.find_spec
    monkeypatch.setattr(executorch_rt.importlib.util, "find_spec",
                        lambda name, *a: None if name == "executorch" else real(name, *a))
    assert "'executorch'" in executorch_rt.ExecuTorchRuntime.missing()


def test_worker_contract_for_the_executorch_runtime(built, tmp_path):
    _, _, io, exports = built
    job = {"protocol": PROTOCOL_VERSION, "mode": "latency", "artifact": exports["executorch"].to_dict(),
           "runtime": "executorch", "runtime_options": {"threads": 1}, "inputs_path": io.inputs_path,
           "outputs_path": str(tmp_path / "out.npz"), "batch_size": 1,
           "settings": {"min_runs": 5, "min_duration_s": 0.01, "warmup_min_runs": 2, "warmup_max_runs": 10}}
    proc = subprocess.run([sys.executable, "-m", "harness.worker"], input=json.dumps(job), capture_output=True,
                          text=True, timeout=180, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # the runtime's native log lines went to stderr
    result = json.loads(lines[0])
    assert result["status"] == "ok", result.get("error")
    metrics = {m["metric"]: m for m in result["measurements"]}
    assert {"import_time", "load_time", "first_inference", "latency", "throughput"} <= set(metrics)
    assert len(metrics["latency"]["samples"]) >= 5 and metrics["latency"]["value"] > 0
    assert result["context"]["runtime_versions"]["executorch"]
    assert result["context"]["threads"] == 1
    np.testing.assert_allclose(load_outputs(tmp_path / "out.npz")[0], load_outputs(io.reference_path)[0],
                               rtol=1e-5, atol=1e-5)


def test_a_users_pte_is_measured_with_its_signature(built, tmp_path):
    pte = tmp_path / "gen.pte"
    pte.write_bytes(open(built[3]["executorch"].path, "rb").read())
    out = tmp_path / "run"
    proc = harness("run", "--artifact", str(pte), "--quick", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["status"] == "ok", records
    assert (records[0]["format"], records[0]["runtime"], records[0]["variant"]) == ("executorch", "executorch",
                                                                                    "external")
    assert any(m["metric"] == "latency" and m["value"] > 0 for m in records[0]["measurements"])


class ConvNet(nn.Module):
    """Conv2d → ReLU → ConvTranspose2d → GroupNorm → Linear: every compute-op kind, and a norm XNNPACK leaves to
    ExecuTorch's portable kernels."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 4, 2, 1)
        self.norm = nn.GroupNorm(2, 4)
        self.head = nn.Linear(16 * 16 * 4, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.up(torch.relu(self.conv(x))))
        return self.head(y.flatten(1))


def _calibration(n: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(n)]


def test_pt2e_int8_for_executorch_counts_int8_and_delegated_ops(tmp_path):
    from harness.compress import compressor, resolve_params
    from harness.exporters.executorch_export import lower_to_pte

    model, inputs = ConvNet().eval(), _calibration(1)[0]
    fp32 = lower_to_pte(torch.export.export(model, (torch.from_numpy(inputs["x"]),)), str(tmp_path / "fp32.pte"))
    assert fp32["compute_ops"] == 3 and fp32["ops_int8_fraction"] == 0.0
    assert fp32["portable_ops"] == {"aten.native_group_norm": 1}

    comp = compressor("pt2e-int8")
    assert comp.stage == "export" and comp.formats == ("executorch", "tflite")
    info = comp.export_file(model, inputs, str(tmp_path / "int8.pte"), "executorch", resolve_params("pt2e-int8", {}),
                            _calibration())
    coverage = info["coverage"]
    assert coverage["compute_ops"] == 3
    assert coverage["ops_int8_fraction"] == 1.0 and coverage["weights_int8_fraction"] == 1.0
    assert coverage["ops_delegated_fraction"] == 1.0 and info["quantizer"] == "XNNPACKQuantizer"
    assert (tmp_path / "int8.pte").stat().st_size < (tmp_path / "fp32.pte").stat().st_size / 2

    rt = runtime_class("executorch")(RuntimeOptions(threads=1))
    from harness.types import Artifact

    rt.load(Artifact(id="int8", format="executorch", path=str(tmp_path / "int8.pte"), bytes=0, model="convnet",
                     variant="pt2e-int8", batch_size=1, parent_id=None, recipe={}))
    with torch.no_grad():
        reference = model(torch.from_numpy(inputs["x"])).numpy()
    out = rt.infer(inputs)[0]
    assert out.shape == reference.shape and not np.array_equal(out, reference)
    assert np.abs(out - reference).max() < 0.1 * np.abs(reference).max()  # int8: close, not equal


def test_pt2e_int8_for_tflite_quantizes_what_litert_torch_annotates(tmp_path):
    """litert-torch's PT2EQuantizer annotates conv2d and linear, not conv_transpose2d: the coverage read back from
    the .tflite says exactly that; the XNNPACKQuantizer's annotations reach the transposed convolution too."""
    from harness.compress import compressor, resolve_params
    from harness.compress.tflite_quant import tflite_coverage

    model, inputs = ConvNet().eval(), _calibration(1)[0]
    comp = compressor("pt2e-int8")
    info = comp.export_file(model, inputs, str(tmp_path / "int8.tflite"), "tflite", resolve_params("pt2e-int8", {}),
                            _calibration())
    assert info["quantizer"] == "PT2EQuantizer"
    coverage = tflite_coverage(str(tmp_path / "int8.tflite"))
    assert coverage == info["coverage"]
    assert coverage["op_types"].get("TRANSPOSE_CONV") == 1
    assert coverage["compute_ops"] == 3 and 0.0 < coverage["ops_int8_fraction"] < 1.0
    xnn = comp.export_file(model, inputs, str(tmp_path / "xnn.tflite"), "tflite",
                           resolve_params("pt2e-int8", {"quantizer": "xnnpack"}), _calibration())
    assert xnn["quantizer"] == "XNNPACKQuantizer"
    assert xnn["coverage"]["ops_int8_fraction"] >= coverage["ops_int8_fraction"]


def test_pt2e_refuses_a_bad_quantizer_name():
    from harness.compress import resolve_params
    from harness.errors import HarnessInputError

    with pytest.raises(HarnessInputError, match="quantizer must be one of backend, xnnpack"):
        resolve_params("pt2e-int8", {"quantizer": "qnnpack"})


def test_etdump_events_become_op_rows_without_the_warm_up():
    from harness.profiling.executorch_ops import DELEGATE_PROVIDER, PORTABLE_PROVIDER, read_events
    from harness.profiling.families import op_family

    # As the Inspector lists them: each delegate's operators, then the DELEGATE_CALL that ran them (XNNPACK numbers
    # its operators per delegate, so "#1" comes back); a portable op, then the OPERATOR_CALL wrapping it.
    events = [("Method::init", False, [5.0]),
              ("Deconvolution (NC, QS8, QC8W) IGEMM #1", True, [9.0, 0.4, 0.5]),
              ("TanH (NC) #1", True, [1.0, 0.1, 0.1]),
              ("DELEGATE_CALL", False, [10.0, 0.6, 0.7]),
              ("native_call_native_group_norm.out", False, [2.0, 0.2, 0.3]),
              ("OPERATOR_CALL", False, [2.1, 0.21, 0.31]),  # wraps the portable op above: not counted twice
              ("Deconvolution (NC, QS8, QC8W) IGEMM #1", True, [3.0, 0.3, 0.3]),
              ("DELEGATE_CALL", False, [4.0, 0.35, 0.4]),
              ("Method::execute", False, [12.5, 1.4, 1.6])]
    rows, run_ms = read_events(events, runs=2)
    assert run_ms == [1.4, 1.6]
    by = {}
    for name, op_type, provider, ms in rows:
        by.setdefault((name, op_type, provider), []).append(ms)
    assert by[("call 0: Deconvolution (NC, QS8, QC8W) IGEMM #1", "XNNPACK Deconvolution", DELEGATE_PROVIDER)] == [0.4, 0.5]
    assert by[("call 1: Deconvolution (NC, QS8, QC8W) IGEMM #1", "XNNPACK Deconvolution", DELEGATE_PROVIDER)] == [0.3, 0.3]
    assert by[("native_call_native_group_norm.out", "native_group_norm", PORTABLE_PROVIDER)] == [0.2, 0.3]
    # each delegate call's time outside its own operators: (0.6 - 0.5, 0.7 - 0.6), then (0.35 - 0.3, 0.4 - 0.3)
    assert by[("delegate dispatch", "delegate", DELEGATE_PROVIDER)] == pytest.approx([0.1, 0.1, 0.05, 0.1])
    assert not any(name.startswith("Method::") or name in ("DELEGATE_CALL", "OPERATOR_CALL") for name, *_ in rows)
    assert op_family("native_group_norm") == "norm"


def test_etdump_profile_of_a_real_pte(built):
    from harness.profiling import op_profiler

    _, _, io, exports = built
    rt = runtime_class("executorch")(RuntimeOptions(threads=1))
    profile = op_profiler("executorch")(rt, exports["executorch"], load_inputs(io.inputs_path), 3)
    assert profile.runs == 3 and profile.run_ms > 0, profile.notes
    families = {op.family for op in profile.ops}
    assert "conv-transpose" in families and "matmul" in families
    assert {op.provider for op in profile.ops} == {"XNNPACK delegate"}


class TimestepNet(nn.Module):
    """A sinusoidal timestep embedding (mul → sin / cos → cat) feeding a linear layer, beside a conv on the image."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.temb = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None] * torch.linspace(0.01, 1.0, 4)[None]
        emb = self.temb(torch.cat([torch.sin(angles), torch.cos(angles)], dim=1))
        return self.conv(x) + emb[:, :, None, None]


def test_keep_float_before_leaves_the_timestep_embedding_unquantized(tmp_path):
    from harness.compress import compressor, resolve_params
    from harness.compress.pt2e import upstream_nodes
    from harness.errors import HarnessInputError

    model = TimestepNet().eval()
    args = (torch.randn(1, 1, 8, 8), torch.tensor([500.0]))
    graph = torch.export.export(model, args).module().graph
    kept = upstream_nodes(graph, ["sin", "cos"])
    targets = {str(getattr(n.target, "__name__", "")) for n in graph.nodes if n.name in kept}
    assert {"sin.default", "cos.default", "mul.Tensor"} <= targets  # the ops and what feeds them
    assert not any("convolution" in t or "linear" in t for t in targets)  # downstream layers are not kept

    rng = np.random.default_rng(2)
    calibration = [{"x": rng.standard_normal((1, 1, 8, 8)).astype(np.float32),
                    "t": rng.uniform(0, 1000, (1,)).astype(np.float32)} for _ in range(4)]
    inputs = calibration[0]
    comp = compressor("pt2e-int8")
    info = comp.export_file(model, inputs, str(tmp_path / "keep.pte"), "executorch",
                            resolve_params("pt2e-int8", {"keep_float_before": ["sin", "cos"]}), calibration)
    assert info["kept_float_before"] == ["sin", "cos"] and info["coverage"]["ops_int8_fraction"] == 1.0
    with pytest.raises(ValueError, match="no sine op in the exported graph"):
        comp.export_file(model, inputs, str(tmp_path / "typo.pte"), "executorch",
                         resolve_params("pt2e-int8", {"keep_float_before": ["sine"]}), calibration)
    with pytest.raises(ValueError, match="needs quantizer = \"xnnpack\" for TFLite"):
        comp.export_file(model, inputs, str(tmp_path / "keep.tflite"), "tflite",
                         resolve_params("pt2e-int8", {"keep_float_before": ["sin"]}), calibration)
    with pytest.raises(HarnessInputError, match="keep_float_before must be a list of aten op names"):
        resolve_params("pt2e-int8", {"keep_float_before": [""]})


def test_keep_float_layers_leaves_a_named_layer_and_what_feeds_it_float(tmp_path):
    """Mixed precision for PT2E: ``keep_float_layers = ["temb"]`` keeps the linear layer's nodes float, with the
    sin / cos / cat feeding it (up to the nearest op with weights), and nothing else; an unknown layer is one line
    naming the graph's layers; TFLite with litert-torch's quantizer refuses it (no node filter)."""
    from harness.compress import compressor, resolve_params
    from harness.compress.pt2e import layer_graph_nodes
    from harness.errors import HarnessInputError

    model = TimestepNet().eval()
    args = (torch.randn(1, 1, 8, 8), torch.tensor([500.0]))
    graph = torch.export.export(model, args).module().graph
    kept = {str(getattr(n.target, "__name__", "")) for n in graph.nodes if n.name in layer_graph_nodes(graph, ["temb"])}
    assert {"linear.default", "sin.default", "cos.default", "cat.default"} <= kept
    assert not any("conv" in t for t in kept)  # the image path is not kept
    with pytest.raises(ValueError, match=r"no node of layer tmeb in the exported graph \(its layers: .*temb"):
        layer_graph_nodes(graph, ["tmeb"])

    rng = np.random.default_rng(2)
    calibration = [{"x": rng.standard_normal((1, 1, 8, 8)).astype(np.float32),
                    "t": rng.uniform(0, 1000, (1,)).astype(np.float32)} for _ in range(4)]
    comp = compressor("pt2e-int8")
    whole = comp.export_file(model, calibration[0], str(tmp_path / "all.pte"), "executorch",
                             resolve_params("pt2e-int8", {}), calibration)
    mixed = comp.export_file(model, calibration[0], str(tmp_path / "mixed.pte"), "executorch",
                             resolve_params("pt2e-int8", {"keep_float_layers": ["temb"]}), calibration)
    assert mixed["kept_float_layers"] == ["temb"]
    assert mixed["coverage"]["ops_int8_fraction"] < whole["coverage"]["ops_int8_fraction"] == 1.0  # the linear is float
    with pytest.raises(ValueError, match="keep_float_layers needs quantizer = \"xnnpack\" for TFLite"):
        comp.export_file(model, calibration[0], str(tmp_path / "keep.tflite"), "tflite",
                         resolve_params("pt2e-int8", {"keep_float_layers": ["temb"]}), calibration)
    with pytest.raises(HarnessInputError, match="keep_float_layers must list module paths"):
        resolve_params("pt2e-int8", {"keep_float_layers": [""]})
