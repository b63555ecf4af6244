"""Diffusion sampling loops: the DDIM / DDPM / Euler / DPM-Solver++ arithmetic (checked step for step against
diffusers' schedulers), the loop timed as one inference (its latency is the sum of its steps plus the sampler's
arithmetic, under the harness's timing rules), errors that compound over a trajectory, and a denoiser with a sampler
measured end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.fidelity import psnr
from harness.engine.measure import run_latency_pass
from harness.engine.sampling_loop import NOISE_INPUT, SamplingLoop
from harness.diffusion import Sampler, alpha_bars, sample, timesteps
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
    ({"method": "magic"}, "method must be one of ddim, ddpm, euler, dpmsolver\\+\\+, not 'magic'"),
    ({"steps": 0}, "steps must be between 1 and train_steps"),
    ({"steps": 2000}, "steps must be between 1 and train_steps"),
    ({"beta_start": 0.1, "beta_end": 0.01}, "0 < beta_start < beta_end < 1"),
    ({"stepz": 3}, "unknown sampler field\\(s\\) stepz"),
    ({"timestep_spacing": "even"}, "timestep_spacing must be one of linspace, leading, trailing, not 'even'"),
    ({"beta_schedule": "cosine"}, "beta_schedule must be one of linear, scaled_linear, not 'cosine'"),
    ({"steps_offset": 1}, "steps_offset applies to 'leading' spacing only, not 'linspace'"),
    ({"timestep_spacing": "leading", "steps_offset": -1}, "steps_offset must be an integer >= 0"),
    ({"method": "euler", "clip": 1.0}, "clip applies to ddim and ddpm only \\(euler never clips x0"),
    ({"timestep_spacing": "trailing", "steps": 61}, "'trailing' spacing gives 62 timesteps, not 61"),
    ({"timestep_spacing": "leading", "steps": 10, "steps_offset": 100},
     "timesteps must lie in 0 … 999, not up to 1000"),
    ({"method": "dpmsolver++", "steps": 1000}, "its timesteps repeat; use fewer steps"),
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


def test_a_conditional_denoiser_gets_each_images_own_conditioning_at_every_step():
    """A text-conditioned UNet's ``encoder_hidden_states`` (or a class label) is no timestep and no image: each image
    keeps its own for the whole trajectory, in the denoiser's input order; a loop input without it is refused."""
    from harness.engine.sampling_loop import CONDITION_PREFIX

    class Conditioned:
        def __init__(self) -> None:
            self.seen: list[tuple[list[str], np.ndarray]] = []

        def load(self, artifact) -> None:
            pass

        def infer(self, inputs):
            self.seen.append((list(inputs), np.array(inputs["text"])))
            return [np.zeros_like(inputs["x"]) + inputs["text"][:, :1, None, None]]

        def sync(self) -> None:
            pass

    runtime = Conditioned()
    loop = SamplingLoop(runtime, Sampler("ddim", steps=5), ["x", "t", "text"])
    text = np.arange(6, dtype=np.float32).reshape(2, 3)
    loop.infer({NOISE_INPUT: np.ones((2, 1, 4, 4), np.float32), CONDITION_PREFIX + "text": text})
    assert len(runtime.seen) == 5 and all(order == ["x", "t", "text"] for order, _ in runtime.seen)
    assert all(np.array_equal(seen, text) for _, seen in runtime.seen)  # row i keeps its own, every step
    with pytest.raises(KeyError, match="no conditioning for 'text'"):
        loop.infer({NOISE_INPUT: np.ones((2, 1, 4, 4), np.float32)})


def test_a_sampler_naming_inputs_the_denoiser_lacks_is_refused():
    with pytest.raises(ValueError, match="the sampler's inputs \\('x', 't'\\) are not among the denoiser's "
                                         "\\('z', 't'\\): 'x' missing"):
        SamplingLoop(_SteppedRuntime(_FakeClock(), 1), Sampler(), ["z", "t"])


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
    assert result.status == "failed"
    assert "sampler method must be one of ddim, ddpm, euler, dpmsolver++, not 'magic'" in result.error


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


def test_trajectories_of_a_conditional_teacher_keep_each_ones_conditioning():
    """A class-conditioned denoiser's trajectories: each keeps its own label at every step, and the pool holds the
    labels beside the (x_t, t) pairs, so a student learns the conditioned states the loop visits."""
    import torch

    from harness.compress import LatentSource
    from harness.compress.distill import TRAJECTORY_POOL, TrajectoryBatches

    class Conditioned(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(10, 16)
            self.seen: list[torch.Tensor] = []

        def forward(self, x, t, label):
            self.seen.append(label.clone())
            return torch.tanh(x + self.embed(label).reshape(-1, 1, 4, 4) * 0.1)

    def make_inputs(batch: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {"x": rng.standard_normal((batch, 1, 4, 4)).astype(np.float32),
                "t": rng.uniform(0, 999, batch).astype(np.float32), "label": rng.integers(0, 10, batch)}

    teacher = Conditioned()
    source = LatentSource(make_inputs, 3, sampler=Sampler("ddim", steps=3))
    batches = TrajectoryBatches.of(teacher, source, seed=0)
    assert len(teacher.seen) == 3 and all(torch.equal(teacher.seen[0], s) for s in teacher.seen[1:])
    assert batches.size == TRAJECTORY_POOL * 3 and batches.pool["label"].dtype == np.int64
    assert sorted(batches.batch(8, 1)) == ["label", "t", "x"]


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
    from harness.prepare.artifacts import load_outputs
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


# -- diffusers' schedulers, step for step ----------------------------------------------------------------------
TOL = {"rtol": 1e-4, "atol": 1e-5}
"""float32 loops on both sides: they differ by rounding (diffusers' ᾱ is a float32 running product, the harness's
float64; its 1 − ᾱ near t = 0 keeps ~4 digits), which stays under a third of this over 25 steps."""


def _fake_eps(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A deterministic stand-in for a noise predictor, the same numpy on both sides (float32)."""
    return (0.9 * np.tanh(x) + 0.05 * np.sin(t / 37.0)[:, None, None, None]).astype(np.float32)


def _ours(sampler: Sampler, noise: np.ndarray):
    """The denoiser's inputs (x, t) at every step, and the loop's output."""
    seen = []

    def denoise(x, t):
        seen.append((x.copy(), t.copy()))
        return _fake_eps(x, t)

    return seen, sample(denoise, sampler, noise)


def _theirs(scheduler, steps: int, noise: np.ndarray):
    """diffusers' own loop (as its pipelines run it, in torch float32): the model's inputs at every step, the output."""
    import torch

    scheduler.set_timesteps(steps)
    x = torch.from_numpy(noise) * scheduler.init_noise_sigma
    seen = []
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t).numpy()
        t_in = np.full(len(noise), float(t), dtype=np.float32)
        seen.append((model_input, t_in))
        x = scheduler.step(torch.from_numpy(_fake_eps(model_input, t_in)), t, x).prev_sample
    return seen, x.numpy()


def _scheduler(config: dict):
    diffusers = pytest.importorskip("diffusers", reason="diffusers' schedulers are the reference")
    return getattr(diffusers, config["_class_name"]).from_config(config)


def _assert_step_for_step(sampler: Sampler, scheduler, steps: int, seed: int = 0) -> None:
    noise = np.random.default_rng(seed).standard_normal((2, 3, 4, 4)).astype(np.float32)
    (ours, out), (theirs, ref) = _ours(sampler, noise), _theirs(scheduler, steps, noise)
    assert len(ours) == len(theirs) == steps
    for i, ((x, t), (ref_x, ref_t)) in enumerate(zip(ours, theirs)):
        np.testing.assert_array_equal(t, ref_t, err_msg=f"step {i}'s timestep")
        np.testing.assert_allclose(x, ref_x, **TOL, err_msg=f"the model's input at step {i}")
    np.testing.assert_allclose(out, ref, **TOL, err_msg="the final sample")


_METHODS = {"EulerDiscreteScheduler": "euler", "DPMSolverMultistepScheduler": "dpmsolver++",
            "DDIMScheduler": "ddim", "DDPMScheduler": "ddpm"}
_SCHEDULES = {"linear": {}, "scaled_linear": {"beta_start": 0.00085, "beta_end": 0.012}}  # the latter: SD's


@pytest.mark.parametrize("name, extra, spacing, offset", [
    (name, extra, spacing, offset)
    for name, extra in [("EulerDiscreteScheduler", {}), ("DPMSolverMultistepScheduler", {}),
                        ("DDIMScheduler", {"clip_sample": False})]
    for spacing, offset in [("linspace", 0), ("leading", 1), ("trailing", 0)]
    if (name, spacing) != ("DDIMScheduler", "linspace")])  # refused: tested with the errors below
@pytest.mark.parametrize("schedule", ["linear", "scaled_linear"])
@pytest.mark.parametrize("steps", [10, 25])
def test_euler_dpmsolver_and_ddim_walk_diffusers_schedulers_path_step_for_step(name, extra, spacing, offset,
                                                                               schedule, steps):
    config = {"_class_name": name, "beta_schedule": schedule, "timestep_spacing": spacing, "steps_offset": offset,
              **_SCHEDULES[schedule], **extra}
    sampler = Sampler.from_diffusers(config, steps)
    assert sampler == Sampler(_METHODS[name], steps, clip=0.0 if name == "DDIMScheduler" else None,
                              timestep_spacing=spacing, steps_offset=offset, beta_schedule=schedule,
                              **_SCHEDULES[schedule])
    _assert_step_for_step(sampler, _scheduler(config), steps)


@pytest.mark.parametrize("spacing, offset, steps", [("linspace", 0, 10), ("linspace", 0, 25), ("leading", 1, 10),
                                                    ("leading", 0, 25), ("trailing", 0, 10), ("trailing", 0, 25)])
@pytest.mark.parametrize("clip_sample", [True, False])
def test_ddpm_walks_diffusers_path_step_for_step_given_the_same_noise(monkeypatch, spacing, offset, steps,
                                                                      clip_sample):
    """diffusers draws DDPM's noise from torch's generator: here it gets the harness's, step by step."""
    import torch
    from harness.diffusion import step_noise

    config = {"_class_name": "DDPMScheduler", "timestep_spacing": spacing, "steps_offset": offset,
              "clip_sample": clip_sample}
    scheduler = _scheduler(config)
    sampler = Sampler.from_diffusers(config, steps, seed=7)
    assert sampler.clip == (1.0 if clip_sample else 0.0)
    draws = []

    def harness_noise(shape, generator=None, device=None, dtype=None, **_):
        draws.append(len(draws))
        return torch.from_numpy(step_noise(sampler, tuple(shape), draws[-1], np.arange(shape[0])))

    import diffusers.schedulers.scheduling_ddpm as ddpm
    monkeypatch.setattr(ddpm, "randn_tensor", harness_noise)
    _assert_step_for_step(sampler, scheduler, steps)
    assert len(draws) == steps - (timesteps(sampler)[-1] == 0)  # diffusers adds none at t = 0


def test_real_scheduler_configs_map_with_the_keys_diffusers_ignores():
    """An SDXL-style Euler config (keys it carries from PNDM, which EulerDiscreteScheduler ignores too) and a
    DPM-Solver++ config whose lower_order_final / euler_at_final / lambda_min_clipped change nothing here."""
    euler = {"_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.19.0.dev0", "beta_end": 0.012,
             "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
             "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
             "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
             "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False}
    sampler = Sampler.from_diffusers(euler, 30, image_input="latents", decoder="vae")
    assert sampler == Sampler("euler", 30, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              timestep_spacing="leading", steps_offset=1, image_input="latents", decoder="vae")
    _assert_step_for_step(sampler, _scheduler(euler), 30)
    dpm = {"_class_name": "DPMSolverMultistepScheduler", "lower_order_final": False, "euler_at_final": True,
           "lambda_min_clipped": -5.1, "timestep_spacing": "trailing", "steps_offset": 1}  # offset: not 'leading'
    sampler = Sampler.from_diffusers(dpm, 12)
    assert sampler.steps_offset == 0 and sampler.timestep_spacing == "trailing"
    _assert_step_for_step(sampler, _scheduler(dpm), 12, seed=1)


def _sigma_oracle(x0: np.ndarray, sampler: Sampler):
    """A perfect noise predictor for the clean images ``x0`` at any (fractional) t: ᾱ = 1 / (1 + σ(t)²), σ linear in t
    between training steps, as Euler's timesteps are."""
    abar = alpha_bars(sampler)
    train = np.sqrt((1 - abar) / abar)

    def denoise(x: np.ndarray, t: np.ndarray) -> np.ndarray:
        a = 1 / (1 + np.interp(t.astype(np.float64), np.arange(len(train)), train) ** 2)[:, None, None, None]
        return ((x - np.sqrt(a) * x0) / np.sqrt(1 - a)).astype(np.float32)

    return denoise


@pytest.mark.parametrize("method", ["euler", "dpmsolver++", "ddim", "ddpm"])
@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
def test_a_perfect_denoiser_walks_back_to_its_clean_images_on_every_method_and_spacing(method, spacing):
    sampler = Sampler(method, steps=10, timestep_spacing=spacing)
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-0.9, 0.9, (4, 1, 8, 8)).astype(np.float32)
    noise = rng.standard_normal(x0.shape).astype(np.float32)
    np.testing.assert_allclose(sample(_sigma_oracle(x0, sampler), sampler, noise), x0, atol=1e-4)


@pytest.mark.parametrize("config, message", [
    ({"_class_name": "PNDMScheduler"}, "unsupported diffusers scheduler 'PNDMScheduler' \\(supported: DDIMScheduler, "
                                       "DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler\\)"),
    ({}, "unsupported diffusers scheduler None"),
    ({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver++"},
     "DPMSolverMultistepScheduler algorithm_type = 'sde-dpmsolver\\+\\+' is not supported by the harness's "
     "dpmsolver\\+\\+ \\(supported: 'dpmsolver\\+\\+'\\)"),
    ({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3}, "solver_order = 3 is not supported"),
    ({"_class_name": "DPMSolverMultistepScheduler", "solver_type": "heun"}, "solver_type = 'heun' is not supported"),
    ({"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": True}, "use_karras_sigmas = True is not"),
    ({"_class_name": "DPMSolverMultistepScheduler", "prediction_type": "v_prediction"},
     "prediction_type = 'v_prediction' is not supported by the harness's dpmsolver\\+\\+ \\(supported: 'epsilon'\\)"),
    ({"_class_name": "DPMSolverMultistepScheduler", "thresholding": True}, "thresholding = True is not supported"),
    ({"_class_name": "DPMSolverMultistepScheduler", "final_sigmas_type": "sigma_min"},
     "final_sigmas_type = 'sigma_min' is not supported"),
    ({"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -3.0},
     "lambda_min_clipped = -3.0 clips this schedule's λ\\(t\\)"),
    ({"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": True}, "use_karras_sigmas = True is not"),
    ({"_class_name": "EulerDiscreteScheduler", "interpolation_type": "log_linear"}, "interpolation_type = 'log_lin"),
    ({"_class_name": "EulerDiscreteScheduler", "beta_schedule": "squaredcos_cap_v2"},
     "beta_schedule = 'squaredcos_cap_v2' is not supported by the harness's euler \\(supported: 'linear', "
     "'scaled_linear'\\)"),
    ({"_class_name": "EulerDiscreteScheduler", "trained_betas": [0.1, 0.2]}, "trained_betas = \\[0.1, 0.2\\] is not"),
    ({"_class_name": "DDIMScheduler", "clip_sample": False, "timestep_spacing": "linspace"},
     "timestep_spacing = 'linspace' is not supported by the harness's ddim \\(diffusers' DDIM then steps from t to "
     "t − num_train_timesteps // steps, not to its next timestep\\) \\(supported: 'leading', 'trailing'\\)"),
    ({"_class_name": "DDIMScheduler"}, "DDIMScheduler clip_sample = True is not supported"),  # its default
    ({"_class_name": "DDIMScheduler", "clip_sample": False, "set_alpha_to_one": False},
     "set_alpha_to_one = False is not supported"),
    ({"_class_name": "DDPMScheduler", "variance_type": "fixed_large"}, "variance_type = 'fixed_large' is not"),
    ({"_class_name": "DDPMScheduler", "timestep_spacing": "linspace", "_steps": 27},
     "DDPMScheduler timestep_spacing = 'linspace' rounds 27 of 1000 timesteps otherwise than the harness's ddpm"),
    ({"_class_name": "EulerDiscreteScheduler", "timestep_spacing": "trailing", "_steps": 61},
     "gives 62 timesteps, not 61"),
])
def test_a_scheduler_config_the_loops_do_not_reproduce_is_a_one_line_error(config, message):
    config = dict(config)
    steps = config.pop("_steps", 10)
    with pytest.raises(ValueError, match=message) as caught:
        Sampler.from_diffusers(config, steps)
    assert "\n" not in str(caught.value)


def test_the_scheduler_config_sets_what_it_says_and_only_that():
    config = {"_class_name": "EulerDiscreteScheduler"}
    with pytest.raises(ValueError, match="sampler field\\(s\\) train_steps come from the scheduler config "
                                         "\\(EulerDiscreteScheduler\\); set them there"):
        Sampler.from_diffusers(config, 10, train_steps=500)
    with pytest.raises(ValueError, match="unknown sampler field\\(s\\) stepz"):
        Sampler.from_diffusers(config, 10, stepz=3)
    assert Sampler.from_diffusers({"_class_name": "DDPMScheduler", "clip_sample_range": 2.0}, 10).clip == 2.0


def test_from_dict_reads_a_scheduler_config_given_inline_or_by_path(tmp_path, monkeypatch):
    config = {"_class_name": "DPMSolverMultistepScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
              "beta_end": 0.012, "timestep_spacing": "leading", "steps_offset": 1}
    expected = Sampler("dpmsolver++", 25, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                       timestep_spacing="leading", steps_offset=1, seed=3)
    folder = tmp_path / "model" / "scheduler"
    folder.mkdir(parents=True)
    (folder / "scheduler_config.json").write_text(json.dumps(config))
    assert Sampler.from_dict({"scheduler": config, "steps": 25, "seed": 3}) == expected
    assert Sampler.from_dict({"scheduler": str(folder / "scheduler_config.json"), "steps": 25, "seed": 3}) == expected
    assert Sampler.from_dict({"scheduler": str(folder), "steps": 25, "seed": 3}) == expected  # its folder
    assert Sampler.from_dict({"scheduler": "scheduler", "steps": 25, "seed": 3}, root=folder.parent) == expected
    monkeypatch.chdir(tmp_path)
    assert Sampler.from_dict({"scheduler": "model/scheduler", "steps": 25, "seed": 3}) == expected  # from the cwd
    assert Sampler.from_dict({"scheduler": config}).steps == 20  # the sampler's default
    with pytest.raises(ValueError, match="sampler scheduler: cannot read .*none.json: No such file or directory"):
        Sampler.from_dict({"scheduler": "none.json"})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="sampler scheduler: .*bad.json is not JSON"):
        Sampler.from_dict({"scheduler": "bad.json"})
    with pytest.raises(ValueError, match="sampler scheduler must be a diffusers scheduler config \\(a table\\) or the "
                                         "path of its JSON file, not int"):
        Sampler.from_dict({"scheduler": 3})


def test_the_project_file_forms_parse():
    """The TOML a user writes under [models.NAME] (here without the table around it)."""
    import tomllib

    euler = tomllib.loads('sampler = { method = "euler", steps = 30, beta_schedule = "scaled_linear", '
                          'beta_start = 0.00085, beta_end = 0.012, timestep_spacing = "leading", steps_offset = 1 }')
    dpm = tomllib.loads('sampler = { method = "dpmsolver++", steps = 20, timestep_spacing = "trailing" }')
    named = tomllib.loads('sampler = { scheduler = "scheduler/scheduler_config.json", steps = 25, '
                          'image_input = "x", time_input = "t" }')
    inline = tomllib.loads('sampler = { steps = 25, scheduler = { _class_name = "EulerDiscreteScheduler", '
                           'beta_schedule = "scaled_linear", beta_start = 0.00085, beta_end = 0.012, '
                           'timestep_spacing = "leading", steps_offset = 1 } }')
    assert Sampler.from_dict(euler["sampler"]).label == "Euler 30 steps, leading spacing"
    assert Sampler.from_dict(dpm["sampler"]).label == "DPM-Solver++ 2M 20 steps, trailing spacing"
    assert named["sampler"]["scheduler"] == "scheduler/scheduler_config.json"
    assert Sampler.from_dict(inline["sampler"]) == Sampler("euler", 25, beta_start=0.00085, beta_end=0.012,
                                                           beta_schedule="scaled_linear", timestep_spacing="leading",
                                                           steps_offset=1)


def test_new_fields_stay_out_of_an_existing_samplers_dict_and_round_trip():
    """An existing sampler's dict (and so the ids made from it) is what it was; the new fields travel when set."""
    assert Sampler().to_dict() == {"method": "ddim", "steps": 20, "train_steps": 1000, "beta_start": 1e-4,
                                   "beta_end": 0.02, "image_input": "x", "time_input": "t", "clip": 1.0, "seed": 0,
                                   "decoder": ""}
    assert Sampler("euler").to_dict()["clip"] == 0.0 and "timestep_spacing" not in Sampler("euler").to_dict()
    for sampler in (Sampler("ddpm", 7, seed=2), Sampler("euler", 12, timestep_spacing="trailing"),
                    Sampler("dpmsolver++", 9, beta_schedule="scaled_linear", timestep_spacing="leading",
                            steps_offset=1),
                    Sampler("ddim", 10, timestep_spacing="leading", steps_offset=1, clip=0.0)):
        assert Sampler.from_dict(json.loads(json.dumps(sampler.to_dict()))) == sampler
    assert Sampler("ddim", 10, timestep_spacing="leading", steps_offset=1).to_dict()["steps_offset"] == 1
    assert timesteps(Sampler("euler", 4)).dtype == np.float32 and timesteps(Sampler("euler", 4))[1] == np.float32(666)
    assert list(timesteps(Sampler("ddim", 4, timestep_spacing="leading", steps_offset=1))) == [751, 501, 251, 1]
    assert list(timesteps(Sampler("dpmsolver++", 4))) == [999, 749, 500, 250]


def test_the_old_module_name_is_the_same_module():
    """Model files written against ``harness.sampling`` keep working: it is ``harness.diffusion`` under its old name."""
    import harness.diffusion
    from harness.sampling import Sampler as OldSampler

    import harness.sampling

    assert harness.sampling is harness.diffusion and OldSampler is harness.diffusion.Sampler
