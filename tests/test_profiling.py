"""Where the time goes: the op-name map, FLOP and byte counts against hand-computed values, the roofline arithmetic,
a profile of a tiny model in each runtime (real profilers), and a profile pass that cannot fail a measured job."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harness.analysis.roofline import ridge_point, roofline_point
from harness.prepare.work import count_work
from harness.profiling import families
from harness.profiling.families import FAMILIES, op_family
from harness.profiling.litert_ops import xnnpack_family, xnnpack_op_type
from harness.profiling.ops import OpProfile, aggregate

TINY = Path(__file__).parent / "fixtures" / "models"


# -- one map of op names across runtimes -------------------------------------------------------------------------
@pytest.mark.parametrize("names, family", [
    (("Conv", "FusedConv", "QLinearConv", "ConvInteger", "CONV_2D", "DEPTHWISE_CONV_2D", "aten::conv2d",
      "aten::mkldnn_convolution", "quantized::conv2d"), "conv"),
    (("ConvTranspose", "TRANSPOSE_CONV", "aten::conv_transpose2d"), "conv-transpose"),
    (("Gemm", "MatMul", "MatMulInteger", "DynamicQuantizeMatMul", "FULLY_CONNECTED", "BATCH_MATMUL", "aten::linear",
      "aten::addmm", "quantized::linear_dynamic"), "matmul"),
    (("Relu", "LeakyRelu", "Tanh", "Sigmoid", "RELU", "LEAKY_RELU", "TANH", "LOGISTIC", "aten::relu", "aten::tanh",
      "aten::silu"), "activation"),
    (("BatchNormalization", "InstanceNormalization", "GroupNormalization", "aten::batch_norm", "aten::group_norm",
      "aten::instance_norm"), "norm"),
    (("Concat", "CONCATENATION", "aten::cat"), "concat"),
    (("Reshape", "Transpose", "ReorderOutput", "RESHAPE", "TRANSPOSE", "aten::view", "aten::permute"), "layout"),
    (("Resize", "RESIZE_NEAREST_NEIGHBOR", "aten::upsample_nearest2d"), "resize"),
    (("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QUANTIZE", "DEQUANTIZE",
      "aten::quantize_per_tensor"), "quantize"),
    (("DELEGATE",), "delegate"),
])
def test_each_runtimes_op_names_land_on_one_family(names, family):
    assert {n: op_family(n) for n in names} == {n: family for n in names}


def test_an_unknown_op_is_other_and_every_mapped_family_is_listed():
    assert op_family("MyCustomOp") == "other" and op_family("aten::my_custom") == "other"
    assert set(families._EXACT.values()) <= set(FAMILIES)


def test_the_op_name_map_has_no_key_written_twice():
    tree = ast.parse(Path(families.__file__).read_text())
    literal = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                   and getattr(n.targets[0], "id", "") == "_EXACT")
    keys = [k.value for k in literal.keys]
    assert sorted(k for k in set(keys) if keys.count(k) > 1) == []


@pytest.mark.parametrize("xnnpack, op_type, family", [
    ("Deconvolution (NHWC, F32) Subconv2D", "XNNPACK Deconvolution", "conv-transpose"),
    ("Convolution (NHWC, F32) IGEMM", "XNNPACK Convolution", "conv"),
    ("Delegate/Fully Connected (NC, F32) GEMM", "XNNPACK Fully Connected", "matmul"),
    ("TanH (NC)", "XNNPACK TanH", "activation"),
    ("Static Reshape (NC)", "XNNPACK Static Reshape", "layout"),
])
def test_xnnpack_operator_names_map_onto_the_same_families(xnnpack, op_type, family):
    assert xnnpack_op_type(xnnpack) == op_type and xnnpack_family(op_type) == family


def test_op_rows_aggregate_per_op_with_shares_families_and_placement():
    events = [("n1", "Conv", "CPU", 2.0), ("n1", "Conv", "CPU", 4.0), ("n2", "Relu", "CPU", 1.0),
              ("n2", "Relu", "CPU", 1.0), ("n3", "ConvTranspose", "CUDA", 2.0), ("n3", "ConvTranspose", "CUDA", 2.0)]
    rows = aggregate(events, runs=2)
    assert [(r.name, r.family, r.calls, r.total_ms, r.mean_ms) for r in rows] == [
        ("n1", "conv", 2, 6.0, 3.0), ("n3", "conv-transpose", 2, 4.0, 2.0), ("n2", "activation", 2, 2.0, 1.0)]
    assert sum(r.share for r in rows) == pytest.approx(1.0) and rows[0].share == pytest.approx(0.5)
    profile = OpProfile("r", "m", 2, 6.0, rows)
    assert profile.families() == {"conv": 3.0, "conv-transpose": 2.0, "activation": 1.0}  # ms per run
    assert profile.placement() == {"CPU": {"ops": 2, "share": pytest.approx(8 / 12)},
                                   "CUDA": {"ops": 1, "share": pytest.approx(4 / 12)}}
    assert OpProfile.from_dict(profile.to_dict()) == profile


# -- FLOPs and bytes against hand-computed values ---------------------------------------------------------------
def _work(module: nn.Module, *shape: int):
    return count_work(module.eval(), {"x": np.zeros(shape, np.float32)})


def test_linear_flops_are_two_per_multiply_add_and_its_bytes_are_its_tensors():
    work = _work(nn.Linear(100, 256), 3, 100)
    assert work.flops == 2 * 3 * 100 * 256  # bias not counted
    # addmm reads the bias (256), the input (3×100) and the weight (100×256; its transpose is a view) and writes 3×256
    assert work.bytes == 4 * (256 + 3 * 100 + 100 * 256 + 3 * 256)
    assert dict(work.by_family) == {"matmul": {"flops": work.flops, "bytes": work.bytes}}


def test_conv2d_flops():
    work = _work(nn.Conv2d(3, 8, 3, padding=1), 2, 3, 10, 12)
    assert work.flops == 2 * 2 * 8 * 10 * 12 * 3 * 3 * 3  # N · Cout · Hout · Wout · Cin · k · k multiply-adds
    assert set(work.by_family) == {"conv"}


def test_conv_transpose2d_flops_and_family():
    work = _work(nn.ConvTranspose2d(4, 8, 4, stride=2, padding=1), 2, 4, 5, 5)
    assert work.flops == 2 * 2 * 4 * 5 * 5 * 8 * 4 * 4  # every input pixel scatters a Cout·k·k patch
    assert set(work.by_family) == {"conv-transpose"}


def test_the_seed_mlp_generator_does_its_textbook_multiply_adds():
    from harness.config.paths import models_dir
    from harness.zoo import get_model, load_model_file

    load_model_file(models_dir() / "mlp_gan.py")
    spec = get_model("mlp_gan")
    model = spec.builder(**spec.builder_kwargs).eval()
    work = count_work(model, spec.make_inputs(4, 0))
    # latent 100 → 256 → 784: 100·256 + 256·784 multiply-adds per sample, 2 FLOPs each; biases, ReLU, Tanh: 0
    assert work.flops == 4 * 2 * (100 * 256 + 256 * 784)
    assert work.by_family["matmul"]["flops"] == work.flops and work.by_family["activation"]["flops"] == 0


# -- the roofline arithmetic -------------------------------------------------------------------------------------
def test_roofline_point_for_a_memory_bound_and_a_compute_bound_job():
    assert ridge_point(100.0, 20.0) == 5.0  # FLOP/byte where the roofs meet
    slow = roofline_point(flops=2e9, bytes_moved=1e9, latency_ms=200.0, peak_gflops=100.0, bandwidth_gbs=20.0)
    assert slow.intensity == 2.0 and slow.achieved_gflops == pytest.approx(10.0)
    assert slow.attainable_gflops == pytest.approx(40.0) and slow.bound == "memory"  # 2 FLOP/B × 20 GB/s
    assert slow.peak_fraction == pytest.approx(0.1) and slow.roof_fraction == pytest.approx(0.25)
    dense = roofline_point(flops=1e10, bytes_moved=1e8, latency_ms=200.0, peak_gflops=100.0, bandwidth_gbs=20.0)
    assert dense.bound == "compute" and dense.attainable_gflops == 100.0 and dense.achieved_gflops == pytest.approx(50)
    with pytest.raises(ValueError, match="must be positive"):
        roofline_point(0, 1, 1, 1, 1)


# -- the worker's profile and ceilings modes --------------------------------------------------------------------
def test_a_runtime_without_a_profiler_is_noted_not_failed(monkeypatch):
    import harness.profiling
    from harness.protocol import WorkerRequest
    from harness.worker import Loaded, profile

    monkeypatch.setattr(harness.profiling, "op_profiler", lambda runtime: None)
    job = Loaded(runtime=None, artifact=None, inputs={}, context={}, import_ms=0.0)
    assert profile(WorkerRequest("profile", runtime="mystery"), job) == ()
    assert job.context["op_profile_unavailable"] == "no op profiler is registered for the runtime 'mystery'"


def test_the_ceilings_mode_measures_peak_compute_and_bandwidth_at_the_jobs_threads_and_checks_quiet():
    """Both ceilings at the requested threads (the bandwidth no longer on one thread against a multi-thread GEMM),
    in GFLOP/s and GB/s: each within 10× of the same operation timed here (a unit slip of 1000× fails), with the
    quiet check of a timed pass around them."""
    import os
    import time

    from threadpoolctl import threadpool_limits

    from harness.launch.local import LocalLauncher
    from harness.protocol import WorkerRequest

    cpus = sorted(os.sched_getaffinity(0))
    threads = min(2, len(cpus))
    result = LocalLauncher().run(WorkerRequest("ceilings", runtime_options={"threads": threads}), 120)
    assert result.status == "ok", result.error
    ceilings = result.extra["ceilings"]
    assert ceilings["threads"] == threads
    assert f"GEMM 1024³ via NumPy's BLAS, {threads} BLAS thread(s)" in ceilings["peak_method"]
    assert f"{threads} thread(s) each copying 1/{threads}" in ceilings["bandwidth_method"], ceilings
    assert ceilings["precision"] == "float32"

    def best(fn) -> float:
        fn()
        return min(_timed(fn) for _ in range(3))

    def _timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    a = np.ones((1024, 1024), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        gflops_here = 2 * 1024 ** 3 / best(lambda: a @ a) / 1e9
    src = np.ones(16 * 2**20, dtype=np.float32)  # 64 MiB, one thread
    dst = np.empty_like(src)
    gbs_here = 2 * src.nbytes / best(lambda: np.copyto(dst, src)) / 1e9
    assert 0.1 < ceilings["peak_gflops"] / gflops_here < 10, (ceilings, gflops_here)
    assert 0.1 < ceilings["bandwidth_gbs"] / gbs_here < 10, (ceilings, gbs_here)

    busy = ceilings["contention"]  # the measuring worker's CPUs, apart from the worker itself
    assert busy["cpus"] == cpus and busy["window_s"] > 0 and busy["own_cores"] > 0, busy
    assert busy["limit_cores"] == 0.25 and busy["contended"] == (busy["others_cores"] > 0.25), busy


def test_the_copy_is_split_into_one_exact_chunk_per_thread():
    from harness.profiling.ceilings import copy_chunks

    chunks = copy_chunks(10, 3)
    assert [(c.start, c.stop) for c in chunks] == [(0, 3), (3, 6), (6, 10)]
    assert len(copy_chunks(10, 0)) == 1 and len(copy_chunks(2, 8)) == 2


def test_a_lower_precision_jobs_roofline_point_says_it_is_placed_against_float32_ceilings():
    from harness.analysis.roofline import precision_note

    assert precision_note({}) == "" and precision_note({"coverage": {"ops_int8_fraction": 0.0}}) == ""
    note = precision_note({"coverage": {"ops_int8_fraction": 0.75, "ops_fp16_fraction": 0.0}})
    assert note.startswith("computes in int8 (75% of compute ops), placed against float32 ceilings"), note
    assert "fp16 (100% of compute ops)" in precision_note({"coverage": {"ops_fp16_fraction": 1.0}})
    assert "int8 (2 quantized layer(s))" in precision_note({"quantized_layers": ["fc", "up"]})


@pytest.mark.slow
def test_a_tiny_model_is_profiled_in_every_runtime_after_its_timing_passes(tmp_path):
    from harness.api import QUICK_SETTINGS
    from harness.config.paths import targets_dir
    from harness.config.suite import Suite
    from harness.results.store import read_records
    from harness.run.runner import SuiteRunner
    from harness.types import RunSettings

    from harness.types import CompressionSpec

    suite = Suite(name="prof", models=("tiny_gen",), targets=("x86-cpu",), formats=("torch", "onnx", "tflite"),
                  batch_sizes=(2,), export_tolerance=1e-4, variants=(CompressionSpec("half", "fp16"),),
                  settings=RunSettings(**QUICK_SETTINGS | {"profile_runs": 4}))
    runner = SuiteRunner(suite, out_dir=tmp_path / "r", cache_dir=tmp_path / "cache", models_dir=TINY,
                         targets_dir=targets_dir(), progress=False)
    every = read_records(runner.run().results_path)
    half = next(r for r in every if r.variant == "half")  # float16 inside: the ONNX probe keeps each tensor's type
    assert half.status == "ok" and half.context["layer_fidelity"]["matched"] >= 2, half.context
    assert half.context["roofline"]["precision_note"].startswith("computes in fp16"), half.context["roofline"]
    assert half.measurement("peak_fraction").note == half.context["roofline"]["precision_note"]
    records = {r.runtime: r for r in every if r.variant == "fp32"}
    assert {r.status for r in records.values()} == {"ok"}, [r.error for r in records.values()]
    expected = {"torch": ("aten::linear", "CPU"), "onnxruntime": ("FusedGemm", "CPUExecutionProvider"),  # Gemm + ReLU fused
                "litert": ("XNNPACK Fully Connected", "XNNPACK delegate")}
    for runtime, (op_type, provider) in expected.items():
        record = records[runtime]
        profile = OpProfile.from_dict(record.context["op_profile"])
        assert profile.runs == 4 and profile.run_ms > 0
        assert any(op.type == op_type and op.provider == provider and op.family == "matmul" for op in profile.ops), \
            [(o.type, o.provider) for o in profile.ops]
        assert any(op.family == "conv-transpose" for op in profile.ops)  # the ConvTranspose2d, whatever its name
        assert all(op.calls % 4 == 0 for op in profile.ops if op.family != "host")  # every op of every profiled run
        assert record.measurement("profiler_overhead").value > 0
        # the roofline: tiny_gen's Linear 8 → 64 and ConvTranspose 4 → 1 (k 4, 4×4 in) per sample, batch 2
        assert record.measurement("flops").value == 2 * 2 * (8 * 64 + 4 * 4 * 4 * 1 * 4 * 4)
        assert 0 < record.measurement("peak_fraction").value < 1
        roofline = record.context["roofline"]
        ridge = ridge_point(roofline["ceilings"]["peak_gflops"], roofline["ceilings"]["bandwidth_gbs"])
        intensity = record.measurement("arithmetic_intensity").value
        assert intensity == pytest.approx(record.measurement("flops").value / record.measurement("bytes_moved").value)
        assert intensity < 1  # tiny_gen moves more bytes than it does FLOPs
        assert roofline["bound"] == ("memory" if intensity < ridge else "compute"), (intensity, ridge)
        assert roofline["ceilings"]["contention"]["window_s"] > 0  # the ceilings pass's own quiet check, kept
        assert roofline["precision_note"] == ""  # fp32 against fp32 ceilings
        layers = record.context["layer_fidelity"]  # an fp32 export: every matched layer as the fp32 model's
        assert layers["first_break"] is None and "up" in {row["layer"] for row in layers["layers"]}
        assert min(row["psnr"] for row in layers["layers"]) > 60
    passes = [r.context["pass_seconds"] for r in records.values()]
    assert sum("ceilings" in p for p in passes) == 1  # the target's ceilings: measured once per run
    from harness.report import write_report

    html = write_report(tmp_path / "r" / "results.jsonl")["html"].read_text()
    assert "Where the time goes" in html and "Roofline · x86-cpu" in html
    assert html.count('class="seg f-conv-transpose"') == 4  # one bar segment per job (fp32 × 3 runtimes, fp16)
    assert html.count("no drop ≥ 6 dB; lowest") == 3  # the fidelity-by-layer line of each fp32 job
    assert html.count("layers matched)") == 4  # and of the fp16 one (whose first layer loses some dB)


@pytest.mark.slow
def test_harness_profile_prints_where_the_time_goes(tmp_path, shared_cache):
    from tests.test_cli import harness

    proc = harness("profile", "--model", "tiny_gen", "--format", "tflite", "--variant", "none", "--quick",
                   "--runs", "3", "--no-progress", "--out", str(tmp_path / "p"), "--cache", str(shared_cache),
                   env={"EDGE_HARNESS_MODELS": str(TINY)})
    assert proc.returncode == 0, proc.stderr
    assert "tiny_gen · x86-cpu · batch 1" in proc.stderr
    assert "fp32 · tflite/litert:" in proc.stderr and "ms of ops per inference" in proc.stderr
    assert "XNNPACK Fully Connected (" in proc.stderr and "roofline on x86-cpu: peak" in proc.stderr
    assert "× the timing pass's median" in proc.stderr


def test_harness_profile_refuses_zero_runs(tmp_path):
    from tests.test_cli import harness

    proc = harness("profile", "--runs", "0", "--out", str(tmp_path / "p"))
    assert proc.returncode != 0 and "--runs must be at least 1, not 0" in proc.stderr


# -- where fidelity breaks ---------------------------------------------------------------------------------------
from harness.analysis.layer_fidelity import DROP_DB, compare_layers, match_by_chain  # noqa: E402


def test_the_first_layer_that_loses_several_db_is_named_and_layouts_are_aligned():
    rng = np.random.default_rng(0)
    ref = {name: rng.standard_normal((2, 4, 3, 5)).astype(np.float32) for name in ("a", "b", "c", "d")}
    noisy = {k: v + 1e-6 * rng.standard_normal(v.shape).astype(np.float32) for k, v in ref.items()}
    noisy["c"] = ref["c"] + 0.3 * rng.standard_normal(ref["c"].shape).astype(np.float32)  # broken here
    noisy["d"] = ref["d"] + 0.3 * rng.standard_normal(ref["d"].shape).astype(np.float32)
    noisy["b"] = noisy["b"].transpose(0, 2, 3, 1)  # channels-last, as LiteRT keeps it
    found = compare_layers(ref, ["a", "b", "c", "d", "missing"], noisy)
    assert [row["layer"] for row in found.layers] == ["a", "b", "c", "d"] and found.modules == 5
    assert found.first_break == "c" and found.drop_db >= DROP_DB and found.worst in ("c", "d")
    assert found.layers[1]["psnr"] > 60  # the transposed tensor was compared in the reference's layout


def test_identical_layers_do_not_break_and_nan_is_the_worst_possible():
    ref = {"a": np.ones((1, 3), np.float32), "b": np.arange(3, dtype=np.float32)[None]}
    same = compare_layers(ref, ["a", "b"], dict(ref))
    assert same.first_break is None and [r["psnr"] for r in same.layers] == [100.0, 100.0]
    nan = compare_layers(ref, ["a", "b"], {"a": ref["a"], "b": np.full((1, 3), np.nan, np.float32)})
    assert nan.first_break == "b" and nan.layers[1]["psnr"] == 0.0 and nan.layers[1]["max_abs_error"] is None


def test_litert_tensors_match_modules_by_scope_chain_with_their_fused_activation():
    ref = {"net.0": np.array([[-1.0, 2.0]], np.float32), "net.1": np.array([[3.0, 4.0]], np.float32)}
    chains = {"net": "M/Seq_net", "net.0": "M/Seq_net/Lin_0", "net.1": "M/Seq_net/Lin_1"}
    tensors = {"M/Seq_net/Lin_0;;M": np.array([[0.0, 2.0]], np.float32),   # FULLY_CONNECTED + fused RELU
               "M/Seq_net/Lin_1;1": np.array([[9.0, 9.0, 9.0]], np.float32),  # another shape: not the output
               "M;;M/Seq_net/Lin_1;2": np.array([[7.0, 7.0]], np.float32),  # a functional op at the root, not fused
               "M/Seq_net/Lin_1;": np.array([[3.0, 4.0]], np.float32), "unrelated": np.zeros((1, 2), np.float32)}
    found = match_by_chain(tensors, chains, ref, {"M/Seq_net/Lin_0;;M": "RELU"})
    assert set(found) == {"net.0", "net.1"} and [a for _, a in found["net.0"]] == ["RELU"]
    assert [c.tolist() for c, _ in found["net.1"]] == [[[3.0, 4.0]]]  # the 3-wide tensor does not fit
    fused_first = {"M;;M/Seq_net/Lin_0;1": np.array([[0.0, 2.0]], np.float32)}  # the relu's root scope listed first
    assert [a for _, a in match_by_chain(fused_first, chains, ref, {"M;;M/Seq_net/Lin_0;1": "RELU"})["net.0"]] \
        == ["RELU"]
    assert match_by_chain(fused_first, chains, ref, {}) == {}  # without a fused activation it is not net.0's
    result = compare_layers(ref, ["net.0", "net.1"], found)
    assert [r["psnr"] for r in result.layers] == [100.0, 100.0]  # relu(reference) is what the fused op wrote


def test_of_several_tensors_named_after_a_module_the_closest_reading_is_its_output():
    rng = np.random.default_rng(2)
    ref = {"conv": rng.standard_normal((1, 4, 4, 4)).astype(np.float32)}  # C = H = W: two layouts fit
    nhwc = ref["conv"].transpose(0, 2, 3, 1)
    other_step = ref["conv"] * 3.0 + 1.0  # a step inside the module, also named after it
    found = compare_layers(ref, ["conv"], {"conv": [(other_step, None), (nhwc, None)]})
    assert found.layers[0]["psnr"] == 100.0 and found.layers[0]["readings"] == 4 and found.first_break is None
    broken = compare_layers(ref, ["conv"], {"conv": [(other_step, None), (nhwc + 1.0, None)]})
    assert broken.first_break == "conv"  # no reading is close: the layer is broken


class _Broken(nn.Module):
    """conv1 → relu (functional: LiteRT fuses it into conv1) → conv2 → ConvTranspose → tanh."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
        self.out = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.up(torch.relu(self.conv2(torch.relu(self.conv1(x))))))


class _Eager:
    """The PyTorch eager adapter's surface for ``intermediate_tensors``: a loaded model, infer, sync."""

    name = "torch"

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def load(self, artifact) -> None:
        pass

    def infer(self, inputs):
        return [self.model(*(torch.from_numpy(v) for v in inputs.values())).detach().numpy()]

    def sync(self) -> None:
        pass


@pytest.mark.slow
def test_a_deliberately_broken_layer_is_found_in_every_runtime(tmp_path):
    import copy
    from types import SimpleNamespace

    from harness.prepare.layers import layer_outputs, scope_chains
    from harness.exporters.onnx_export import OnnxExporter
    from harness.exporters.onnx_probe import probe_onnx
    from harness.exporters.tflite_export import TFLiteExporter
    from harness.profiling.tensors import fused_activations, intermediate_tensors
    from harness.runtimes import RuntimeOptions
    from harness.runtimes.litert_rt import LiteRTRuntime
    from harness.runtimes.onnxruntime_rt import OnnxRuntime

    torch.manual_seed(0)
    model = _Broken().eval()
    broken = copy.deepcopy(model)
    with torch.no_grad():  # conv2 alone is wrong: its weights carry noise as large as themselves
        broken.conv2.weight.add_(torch.randn_like(broken.conv2.weight) * broken.conv2.weight.std())
    inputs = {"x": np.random.default_rng(1).standard_normal((2, 1, 8, 8)).astype(np.float32)}
    reference, order = layer_outputs(model, inputs)
    assert order == ["conv1", "conv2", "up", "out"]

    def check(candidate):
        found = compare_layers(reference, order, candidate)
        assert found.first_break == "conv2", found
        by = {row["layer"]: row["psnr"] for row in found.layers}
        assert by["conv1"] >= 90 and by["conv2"] < 40  # fine before the broken layer, broken at it
        return found

    check(intermediate_tensors(_Eager(broken), None, inputs))

    onnx_path, probe_path = tmp_path / "broken.onnx", tmp_path / "probe.onnx"
    OnnxExporter.export(broken, inputs, str(onnx_path))
    probe = probe_onnx(onnx_path, probe_path)
    tensors = intermediate_tensors(OnnxRuntime(RuntimeOptions(threads=1)), SimpleNamespace(path=str(probe_path)),
                                   inputs)
    found = check({probe[name]: array for name, array in tensors.items() if name in probe})
    assert {"conv1", "conv2", "up"} <= {row["layer"] for row in found.layers}

    tflite_path = tmp_path / "broken.tflite"
    TFLiteExporter.export(broken, inputs, str(tflite_path))
    tensors = intermediate_tensors(LiteRTRuntime(RuntimeOptions(threads=1)), SimpleNamespace(path=str(tflite_path)),
                                   inputs)
    candidate = match_by_chain(tensors, scope_chains(broken), reference, fused_activations(str(tflite_path)))
    assert "RELU" in [a for _, a in candidate["conv1"]]  # LiteRT fused the functional relu into conv1's CONV_2D
    found = check(candidate)  # NHWC, and here C = H = W = 8: both readings tried
    assert {"conv1", "conv2", "up", "out"} == {row["layer"] for row in found.layers}
