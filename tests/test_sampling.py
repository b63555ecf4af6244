"""Diffusion sampling loops: the DDIM / DDPM arithmetic, the loop timed as one inference (its latency is the sum of
its steps plus the sampler's arithmetic, under the harness's timing rules), errors that compound over a trajectory,
and a denoiser with a sampler measured end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.fidelity import psnr
from harness.engine.measure import run_latency_pass
from harness.engine.sampling_loop import NOISE_INPUT, SamplingLoop
from harness.sampling import Sampler, alpha_bars, sample, timesteps
from harness.types import RunSettings

DENOISER = Path(__file__).parent / "fixtures" / "denoiser"


def _oracle(x0: np.ndarray, sampler: Sampler):
    """A perfect noise predictor for the clean images ``x0``."""
    abar = alpha_bars(sampler)

    def denoise(x: np.ndarray, t: np.ndarray) -> np.ndarray:
        a = abar[t.astype(np.int64)][:, None, None, None]
        return ((x - np.sqrt(a) * x0) / np.sqrt(1 - a)).astype(np.float32)

    return denoise


@pytest.mark.parametrize("method", ["ddim", "ddpm"])
def test_a_perfect_denoiser_walks_back_to_its_clean_images(method):
    sampler = Sampler(method, steps=10)
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-0.9, 0.9, (4, 1, 8, 8)).astype(np.float32)
    noise = rng.standard_normal(x0.shape).astype(np.float32)
    np.testing.assert_allclose(sample(_oracle(x0, sampler), sampler, noise), x0, atol=1e-4)


def test_the_schedule_is_the_one_the_zoo_denoiser_was_trained_with():
    import torch

    sampler = Sampler()
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)  # harness.training's denoiser objective
    np.testing.assert_allclose(alpha_bars(sampler), torch.cumprod(1 - betas, dim=0).numpy(), rtol=1e-12)
    ts = timesteps(Sampler(steps=20))
    assert len(ts) == 20 and ts[0] == 999 and ts[-1] == 0 and np.all(np.diff(ts) < 0)
    assert list(timesteps(Sampler(steps=4))) == [999, 666, 333, 0]


def test_ddpm_noise_is_seeded_and_ddim_is_deterministic():
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    def denoise(x, t):
        return 0.3 * x
    a, b = (sample(denoise, Sampler("ddpm", steps=8, seed=3), noise) for _ in range(2))
    c = sample(denoise, Sampler("ddpm", steps=8, seed=4), noise)
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert not np.allclose(a, sample(denoise, Sampler("ddim", steps=8), noise))


def test_ddpm_gives_each_image_its_own_noise_whatever_the_batches():
    """The worker generates a sample set batch by batch; the reference in one call: the same images."""
    sampler = Sampler("ddpm", steps=6, seed=2)
    noise = np.random.default_rng(5).standard_normal((6, 1, 4, 4)).astype(np.float32)
    def denoise(x, t):
        return 0.2 * x
    whole = sample(denoise, sampler, noise)
    parts = [sample(denoise, sampler, noise[i:i + 2], rows=np.arange(i, i + 2)) for i in (0, 2, 4)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert not np.allclose(whole[0], whole[1])


@pytest.mark.parametrize("fields, message", [
    ({"method": "euler"}, "method must be one of ddim, ddpm"),
    ({"steps": 0}, "steps must be between 1 and train_steps"),
    ({"steps": 2000}, "steps must be between 1 and train_steps"),
    ({"beta_start": 0.1, "beta_end": 0.01}, "0 < beta_start < beta_end < 1"),
    ({"stepz": 3}, "unknown sampler field\\(s\\) stepz"),
])
def test_a_bad_sampler_is_a_clear_error(fields, message):
    with pytest.raises(ValueError, match=message):
        Sampler.from_dict(fields)


def test_an_error_that_looks_fine_on_one_step_compounds_over_the_trajectory():
    """A denoiser off by a constant 0.03 in its noise prediction: 36 dB on one step, under 30 dB after 20."""
    sampler = Sampler("ddim", steps=20)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    weights = rng.standard_normal((64, 64)).astype(np.float32) / 8

    def base(x, t):
        return np.tanh((x.reshape(len(x), -1) @ weights).reshape(x.shape)) * (0.5 + t[:, None, None, None] / 2000)

    def off(x, t):
        return base(x, t) + 0.03

    t = np.full(16, 500.0, dtype=np.float32)
    one_step = psnr(off(noise, t), base(noise, t))
    loop = psnr(sample(off, sampler, noise), sample(base, sampler, noise))
    assert one_step > 35 and loop < 30


# -- the loop timed as one inference -------------------------------------------------------------------------------
class _FakeClock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


class _SteppedRuntime:
    """A denoiser that takes exactly ``step_ns`` of the fake clock per call, and counts its calls and syncs."""

    def __init__(self, clock: _FakeClock, step_ns: int) -> None:
        self.clock, self.step_ns, self.calls, self.syncs, self.order = clock, step_ns, 0, 0, []

    def load(self, artifact) -> None:
        pass

    def infer(self, inputs):
        self.clock.ns += self.step_ns
        self.calls += 1
        self.order = list(inputs)
        return [np.zeros_like(inputs["x"])]

    def sync(self) -> None:
        self.syncs += 1


def test_a_loops_latency_is_the_sum_of_its_steps_under_the_harness_timing_rules():
    clock = _FakeClock()
    runtime = _SteppedRuntime(clock, step_ns=1_000_000)  # 1 ms per denoiser call; the arithmetic takes no time
    sampler = Sampler("ddim", steps=7)
    loop = SamplingLoop(runtime, sampler, ["t", "x"], clock=clock)
    settings = RunSettings(min_runs=12, min_duration_s=0.0, warmup_min_runs=3, warmup_max_runs=3)
    result = run_latency_pass(loop, None, {NOISE_INPUT: np.ones((2, 1, 4, 4), np.float32)}, settings, 2, clock=clock)
    latency = next(m for m in result.measurements if m.metric == "latency")
    assert latency.samples and all(s == 7.0 for s in latency.samples)  # 7 steps × 1 ms, every timed loop
    assert len(latency.samples) >= 12 and runtime.calls == 7 * len(loop.loops) == runtime.syncs
    timed = loop.loops[-len(latency.samples):]
    assert all(steps == [1_000_000] * 7 for steps in timed)
    assert runtime.order == ["t", "x"]  # the denoiser's own input order
    assert result.first_outputs[0].shape == (2, 1, 4, 4)


def test_a_sampler_naming_inputs_the_denoiser_lacks_is_refused():
    with pytest.raises(ValueError, match="the sampler's inputs \\('x', 't'\\) are not the denoiser's \\('z'\\)"):
        SamplingLoop(_SteppedRuntime(_FakeClock(), 1), Sampler(), ["z"])


def test_the_worker_refuses_a_malformed_sampler_in_one_line(tmp_path):
    from harness.launch.local import LocalLauncher
    from harness.protocol import WorkerRequest

    inputs = tmp_path / "noise.npz"
    np.savez(inputs, noise=np.zeros((1, 1, 8, 8), np.float32))
    request = WorkerRequest("sampling", runtime="onnxruntime", artifact={
        "id": "a", "format": "onnx", "path": str(tmp_path / "none.onnx"), "bytes": 0, "model": "m",
        "variant": "fp32", "batch_size": 1, "parent_id": None, "recipe": {}}, inputs_path=str(inputs),
        outputs_path=str(tmp_path / "out.npz"), sampler={"sampler": {"method": "magic"}, "inputs": ["x", "t"]})
    result = LocalLauncher().run(request, 60)
    assert result["status"] == "failed"
    assert "sampler method must be one of ddim, ddpm, not 'magic'" in result["error"]


# -- end to end -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_denoiser_with_a_sampler_is_measured_over_its_whole_loop_beside_one_step(tmp_path):
    from harness.cli import QUICK_SETTINGS
    from harness.config.paths import targets_dir
    from harness.config.suite import Suite
    from harness.report import write_report
    from harness.results.store import read_records
    from harness.run.runner import SuiteRunner
    from harness.types import CompressionSpec

    suite = Suite(name="den", models=("tiny_denoiser",), targets=("x86-cpu",), formats=("torch", "onnx"),
                  batch_sizes=(2,), export_tolerance=1e-4,
                  settings=RunSettings(**QUICK_SETTINGS | {"loop_samples": 16}),
                  variants=(CompressionSpec("half", "fp16"),))
    runner = SuiteRunner(suite, out_dir=tmp_path / "r", cache_dir=tmp_path / "cache", models_dir=DENOISER,
                         targets_dir=targets_dir(), progress=False)
    summary = runner.run()
    records = read_records(summary.results_path)
    assert summary.statuses == {"ok": 3}, [r.error for r in records]
    by = {(r.variant, r.format): r for r in records}
    for record in records:
        loop, step = record.measurement("loop_latency"), record.measurement("loop_step_latency")
        assert loop.samples and "DDIM 5 steps, 2 image(s) per loop" in loop.note
        overhead = record.measurement("loop_overhead")  # per loop: its time less its 5 steps' (ms)
        assert len(overhead.samples) == len(loop.samples)
        assert all(0 <= o < total for o, total in zip(overhead.samples, loop.samples)), (overhead.samples, loop.samples)
        assert step.stats["n"] == 5 * len(loop.samples)  # every step of every timed loop
        assert "16 samples" in record.measurement("loop_nonfinite_outputs").note
        timed_s = sum(loop.samples) / 1e3
        quiet = record.context["loop_contention"]  # the loop's own pass checked how busy the machine was
        assert timed_s <= quiet["window_s"] <= record.context["pass_seconds"]["sampling"], (quiet, timed_s)
        assert quiet["own_cores"] > 0 and quiet["limit_cores"] == 0.25, quiet
        assert quiet["contended"] == (quiet["others_cores"] > 0.25), quiet
    assert by[("fp32", "torch")].measurement("loop_max_abs_error").value < 1e-5  # the reference pipeline itself
    assert by[("fp32", "onnx")].measurement("loop_psnr").value > 80  # the export walks the same path
    half = by[("half", "onnx")]
    assert 20 < half.measurement("loop_psnr").value < by[("fp32", "onnx")].measurement("loop_psnr").value
    html = write_report(summary.results_path)["html"].read_text()
    assert "Diffusion: one step and the whole sampling loop" in html
    row = json.loads(json.dumps(half.to_dict()))  # the loop figures travel in the versioned JSON
    assert {"loop_latency", "loop_psnr"} <= {m["metric"] for m in row["measurements"]}


# -- distilling a denoiser on its trajectories ------------------------------------------------------------------
def _tiny_denoiser():
    from harness.compress import LatentSource
    from harness.zoo import get_model, load_model_file

    load_model_file(DENOISER / "tiny_denoiser.py")
    spec = get_model("tiny_denoiser")
    return spec, spec.builder(**spec.builder_kwargs), LatentSource(spec.make_inputs, spec.seed, sampler=spec.sampler)


def test_trajectory_batches_mix_the_teachers_sampling_states_with_fresh_inputs():
    from harness.compress.distill import TRAJECTORY_POOL, TrajectoryBatches

    spec, teacher, source = _tiny_denoiser()
    batches = TrajectoryBatches.of(teacher, source, seed=0)
    assert batches.size == TRAJECTORY_POOL * spec.sampler.steps  # every step of every trajectory
    visited_t = set(np.unique(batches.pool["t"]).tolist())
    assert visited_t == {float(t) for t in timesteps(spec.sampler)}
    batch = batches.batch(8, 3)
    assert batch["x"].shape == (8, 1, 8, 8) and batch["t"].dtype == np.float32
    assert set(batch["t"][:4].tolist()) <= visited_t  # the first half from trajectories
    np.testing.assert_array_equal(batch["x"][4:], source.batch(4, 3)["x"])  # the second half fresh
    assert np.array_equal(batch["x"], batches.batch(8, 3)["x"])  # seeded


def test_distilling_on_trajectories_needs_a_sampler_and_records_its_data():
    from harness.compress import LatentSource, compressor, resolve_params

    spec, teacher, source = _tiny_denoiser()
    params = resolve_params("distill", {"data": "trajectories", "steps": 5})
    _, info = compressor("distill").compress(teacher, params, source)
    assert "teacher's sampling trajectories" in info["distillation"]["data"]
    with pytest.raises(ValueError, match="needs a denoiser that declares a sampler"):
        compressor("distill").compress(teacher, params, LatentSource(spec.make_inputs, spec.seed))


# -- a latent diffusion's decoder after the loop ------------------------------------------------------------------
LATENT = Path(__file__).parent / "fixtures" / "latent"


class _SteppedDecoder(_SteppedRuntime):
    def infer(self, inputs):
        self.clock.ns += self.step_ns
        self.calls += 1
        self.order = list(inputs)
        return [np.zeros((len(inputs["z"]), 1, 8, 8), np.float32)]


def test_a_decoders_time_is_part_of_the_loop_and_kept_apart():
    clock = _FakeClock()
    denoiser, decoder = _SteppedRuntime(clock, step_ns=1_000_000), _SteppedDecoder(clock, step_ns=3_000_000)
    loop = SamplingLoop(denoiser, Sampler("ddim", steps=4, decoder="d"), ["x", "t"], clock=clock, decoder=decoder,
                        decoder_input="z", decoder_artifact="decoder-artifact")
    settings = RunSettings(min_runs=5, min_duration_s=0.0, warmup_min_runs=2, warmup_max_runs=2)
    result = run_latency_pass(loop, None, {NOISE_INPUT: np.ones((2, 4, 4, 4), np.float32)}, settings, 2, clock=clock)
    latency = next(m for m in result.measurements if m.metric == "latency")
    assert all(s == 4 * 1.0 + 3.0 for s in latency.samples)  # 4 steps of 1 ms and one 3 ms decode
    assert loop.decodes == [3_000_000] * len(loop.loops) and decoder.calls == decoder.syncs == len(loop.loops)
    assert decoder.order == ["z"] and result.first_outputs[0].shape == (2, 1, 8, 8)  # the decoder's images


def test_a_decoder_needs_its_input_name():
    with pytest.raises(ValueError, match="decoder needs the name of its input"):
        SamplingLoop(_SteppedRuntime(_FakeClock(), 1), Sampler(), ["x", "t"], decoder=object())


def test_launchers_stage_the_decoders_artifact_beside_the_denoisers():
    from harness.protocol import WorkerRequest, request_artifacts, wire

    request = WorkerRequest("sampling", artifact={"id": "d", "path": "/a/den.onnx"}, sampler={
        "sampler": Sampler(decoder="vae").to_dict(), "decoder": {"input": "z", "artifact": {"path": "/a/dec.onnx"}}})
    staged = wire(request)
    found = request_artifacts(staged)
    assert [a["path"] for a in found] == ["/a/den.onnx", "/a/dec.onnx"]
    found[1]["path"] = "/board/dec.onnx"  # rewritten in place, as a launcher does
    assert staged["sampler"]["decoder"]["artifact"]["path"] == "/board/dec.onnx"


@pytest.mark.slow
def test_a_latent_diffusion_is_measured_through_its_decoder(tmp_path):
    from harness.build.artifacts import load_outputs
    from harness.cli import QUICK_SETTINGS
    from harness.config.paths import targets_dir
    from harness.config.suite import Suite
    from harness.results.store import read_records
    from harness.run.runner import SuiteRunner
    from harness.types import CompressionSpec

    suite = Suite(name="latent", models=("tiny_latent", "tiny_latent_mismatched"), targets=("x86-cpu",),
                  formats=("torch", "onnx"), batch_sizes=(2,), export_tolerance=1e-4,
                  settings=RunSettings(**QUICK_SETTINGS | {"loop_samples": 8}),
                  variants=(CompressionSpec("half", "fp16", models=("tiny_latent",)),))
    runner = SuiteRunner(suite, out_dir=tmp_path / "r", cache_dir=tmp_path / "cache", models_dir=LATENT,
                         targets_dir=targets_dir(), progress=False)
    records = read_records(runner.run().results_path)
    mismatched = [r for r in records if r.model == "tiny_latent_mismatched"]
    assert mismatched and all(r.status == "failed" for r in mismatched)
    assert "the sampler's decoder 'tiny_bad_decoder' must take one input shaped like the denoiser's 'x' (4, 4, 4), " \
           "not z (4, 2, 2)" in mismatched[0].error
    by = {(r.variant, r.format): r for r in records if r.model == "tiny_latent"}
    assert {r.status for r in by.values()} == {"ok"}, [r.error for r in by.values()]
    for record in by.values():
        decode, loop = record.measurement("loop_decode_latency"), record.measurement("loop_latency")
        assert 0 < decode.value < loop.value and len(decode.samples) == len(loop.samples)
        assert "DDIM 4 steps + decoder tiny_latent_decoder" in loop.note
        overhead = record.measurement("loop_overhead").samples  # per loop: its time less its steps' and decode's
        assert all(0 <= o < total - d for o, total, d in zip(overhead, loop.samples, decode.samples)), overhead
    assert by[("fp32", "torch")].measurement("loop_max_abs_error").value < 1e-5  # the reference pipeline itself
    assert by[("fp32", "onnx")].measurement("loop_psnr").value > 80  # denoiser and decoder exported
    assert 20 < by[("half", "onnx")].measurement("loop_psnr").value < by[("fp32", "onnx")].measurement("loop_psnr").value
    references = [load_outputs(p)[0] for p in (tmp_path / "cache" / "io").rglob("images.npz")]
    assert references and all(r.shape[1:] == (1, 8, 8) for r in references)  # the decoder's images, not latents
