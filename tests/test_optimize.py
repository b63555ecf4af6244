"""`harness optimize`: the budget's judgement (pure), the [optimize] table, the knobs, and two real searches on
tiny models — one whose budget is reachable only through mixed precision (a layer int8 cannot hold kept float),
with a trial that crashes, Ctrl-C and --resume; one whose budget is not reachable (the nearest miss, the front and
the reasons), through the Python API. No budget term in the searches depends on timing: they cannot flake on a
busy machine."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.analysis.budget import baseline_ms, judge
from harness.config.optimize import Budget, OptimizeSpec, optimize_from_table, parse_duration
from harness.config.paths import PROJECT_ROOT
from harness.errors import HarnessInputError
from harness.run.knobs import Candidate, Distill, MixedPrecision, Quantize, spec
from harness.run.optimize import SearchState, _choice, _confirmable, first_under

FIXTURES = Path(__file__).parent / "fixtures"


# -- the budget (pure) -----------------------------------------------------------------------------------------
def _row(p50=1.0, lo=0.9, hi=1.1, psnr=35.0, labels=0.97, size=1.0, memory=100.0, runs_ok=1, **extra) -> dict:
    return {"latency_ms": p50, "latency_low_ms": lo, "latency_high_ms": hi, "latency_p90_ms": p50 * 1.2,
            "psnr_db": psnr, "label_agreement": labels, "size_mb": size, "peak_rss_mb": memory, "runs_ok": runs_ok,
            **extra}


def test_confirm_needs_the_speedups_ci_lower_bound_above_the_bar():
    budget = {"min_speedup": 5.0, "min_psnr": 30.0}
    met = judge(_row(p50=1.0, lo=0.95, hi=1.05), 6.0, budget)
    assert met.met and met.speedup == pytest.approx(6.0) and met.speedup_low == pytest.approx(6.0 / 1.05)
    # the median clears 5× but the CI's upper latency bound does not: not met with confidence
    unsure = judge(_row(p50=1.15, lo=1.0, hi=1.3), 6.0, budget)
    assert not unsure.met and unsure.reasons == ("speed-up 5.22× (CI low 4.62×) < 5×",)
    assert judge(_row(), 6.0, {"min_psnr": 40.0}).reasons == ("PSNR 35.0 dB < 40 dB",)


def test_the_screen_keeps_points_that_may_still_meet_the_budget():
    budget = {"min_speedup": 5.0, "min_psnr": 30.0, "min_labels": 0.95}
    close = _row(p50=1.5, lo=1.4, hi=1.6, psnr=29.5, labels=0.93)  # 4× (≥ 0.8 of 5×), 0.5 dB and 0.02 short
    assert judge(close, 6.0, budget, rung="screen").met
    assert not judge(close, 6.0, budget, rung="confirm").met
    far = judge(_row(p50=2.0, psnr=25.0, labels=0.8), 6.0, budget, rung="screen")
    assert far.reasons == ("speed-up 3.00× < 5×", "PSNR 25.0 dB < 30 dB", "labels 0.800 < 0.95")


def test_every_budget_term_says_what_missed():
    budget = {"max_p50_ms": 0.5, "max_p90_ms": 0.5, "max_memory_mb": 50, "max_size_mb": 0.5}
    verdict = judge(_row(), 6.0, budget)
    assert verdict.reasons == ("p50 1 ms (CI high 1.1) > 0.5 ms", "p90 1.2 ms > 0.5 ms", "peak memory 100 MB > 50 MB",
                               "size 1 MB > 0.5 MB")
    failed = judge({"runs_ok": 0, "status": "crashed", "error": "worker killed by SIGSEGV\ntraceback"}, 6.0, budget)
    assert failed.reasons == ("crashed: worker killed by SIGSEGV",) and failed.figures["latency_ms"] is None


def test_a_throughput_budget_counts_images_per_second_at_the_points_batch():
    budget = {"min_throughput": 3000.0}
    four = _row(p50=1.2, lo=1.1, hi=1.4, batch_size=4)  # 4 images in 1.2 ms: 3333/s, 2857/s at the CI's high
    assert judge(four, 6.0, budget, rung="screen").met
    verdict = judge(four, 6.0, budget)
    assert verdict.reasons == ("throughput 3333 images/s (CI low 2857) < 3000 at batch 4",)
    assert verdict.figures["batch"] == 4 and verdict.figures["throughput"] == pytest.approx(4e3 / 1.2)
    assert judge(_row(p50=1.0, lo=0.95, hi=1.05, batch_size=4), 6.0, budget).met
    assert judge(_row(), 6.0, budget, rung="screen").reasons == ("throughput 1000 images/s < 3000 at batch 1",)


def test_a_busy_machine_never_confirms_a_speedup():
    budget = {"min_speedup": 2.0, "min_psnr": 30.0}
    busy = _row(disturbed="contended: 1.4 other cores busy")
    assert judge(busy, 6.0, budget, rung="screen").met  # the screen is noisy anyway
    assert judge(busy, 6.0, budget).reasons == ("latency not judged: its latency pass was contended: 1.4 other "
                                                "cores busy",)
    assert not judge(_row(), 6.0, budget, baseline_disturbed="hot: 85 °C").met
    assert judge(busy, 6.0, {"min_psnr": 30.0}).met  # no latency term: nothing to judge from the timing


def test_a_screen_whose_fp32_was_slowed_by_other_load_reads_against_the_quiet_baseline(tmp_path):
    """A busy moment during a screen step slowed fp32 (114 ms against the baseline step's quiet 31 ms): every
    candidate's speed-up would read ~3.6× too high and the search would chase it. The screen then reads against the
    baseline's quiet fp32, and says so; a quiet screen keeps its own reference."""
    from harness.run.optimize import _Search

    state = SearchState(OptimizeSpec("m", "t", Budget(min_speedup=5.0), formats=("onnx",)))
    fp32 = {"variant": "fp32", "format": "onnx", "runtime": "onnxruntime", "target": "t", "batch_size": 1}
    quiet = {"candidate": "baseline", "knob": "baseline", "variant": "fp32", "format": "onnx",
             "runtime": "onnxruntime", "row": _row(p50=31.4, latency_runs_ms=[31.4], batch_size=1)}
    state.steps = [{"step": "baseline-1", "rung": "baseline", "seconds": 1.0, "points": [quiet], "candidates": []}]
    said = []
    search = _Search(state, None, tmp_path, None, False, said.append)
    candidate = Candidate("distill", (spec("distill", {"amount": 0.5}),))
    point = _row(p50=11.2, **{k: v for k, v in fp32.items() if k != "variant"}, variant=candidate.variant)
    busy = _row(p50=114.0, latency_runs_ms=[114.0], disturbed="contended: 1.0 other cores busy", **fp32)

    class Target:
        name = "t"

    (judged,) = search._judge("screen", [candidate], [busy, point], [], [Target()])
    assert judged["verdict"]["speedup"] == pytest.approx(31.4 / 11.2)  # not 114 / 11.2 = 10.2×
    assert judged["verdict"]["reference_from"] == "the baseline step's quiet fp32"
    assert said and "against the baseline step's quiet fp32 (31.4 ms)" in said[0]
    # a point the same load slowed keeps the step's own fp32: both slowed, the ratio stays fair
    slowed = dict(point, latency_ms=40.0, disturbed="contended: 1.0 other cores busy")
    (judged,) = search._judge("screen", [candidate], [busy, slowed], [], [Target()])
    assert judged["verdict"]["speedup"] == pytest.approx(114.0 / 40.0) and "reference_from" not in judged["verdict"]
    calm = _row(p50=33.0, latency_runs_ms=[33.0], **fp32)
    (judged,) = search._judge("screen", [candidate], [calm, point], [], [Target()])
    assert judged["verdict"]["speedup"] == pytest.approx(33.0 / 11.2) and len(said) == 2


def test_a_denoiser_is_judged_over_its_sampling_loop():
    row = _row(psnr=45.0, loop_psnr_db=20.0, loop_label_agreement=0.9, loop_latency_ms=10.0,
               loop_latency_low_ms=9.0, loop_latency_high_ms=11.0)
    base = {"loop_latency_runs_ms": [60.0, 55.0], "latency_runs_ms": [1.0]}
    assert baseline_ms(base, loop=True) == 55.0  # the lower of the two rounds
    verdict = judge(row, 55.0, {"min_speedup": 5.0, "min_psnr": 30.0}, loop=True)
    assert verdict.reasons == ("loop PSNR 20.0 dB < 30 dB",) and verdict.speedup_low == pytest.approx(5.0)


# -- the [optimize] table ----------------------------------------------------------------------------------------
def test_durations_and_tables_are_checked():
    assert [parse_duration(t) for t in ("90s", "4m", "1.5h", 45, "30")] == [90, 240, 5400, 45, 30]
    with pytest.raises(HarnessInputError, match="duration such as"):
        parse_duration("4 minutes")
    spec_ = optimize_from_table("p.toml", {"model": "m", "target": "t", "min_speedup": 5, "time_limit": "4m",
                                           "formats": ["onnx"]})
    assert spec_.budget == Budget(min_speedup=5.0) and spec_.time_limit_s == 240 and spec_.formats == ("onnx",)
    over = optimize_from_table("cli", {"min_psnr": 30}, base=spec_)
    assert over.budget.terms() == {"min_speedup": 5.0, "min_psnr": 30.0} and over.model == "m"
    for table, message in (({"model": "m", "target": "t", "min_speed": 5}, "unknown key 'min_speed'"),
                           ({"model": "m", "target": "t", "min_labels": 95}, "share of samples"),
                           ({"model": "m", "target": "t", "max_size_mb": 0}, "positive number"),
                           ({"target": "t"}, "needs a model and a target"),
                           ({"model": "m", "target": "t", "formats": ["pte"]}, "formats: pte")):
        with pytest.raises(HarnessInputError, match=message):
            optimize_from_table("p.toml", table)


def test_a_bad_optimize_table_in_the_project_file_is_a_one_line_error(tmp_path):
    from harness.config.project import load_project

    (tmp_path / "edge-harness.toml").write_text('[optimize]\nmodel = "m"\nmin_psnr = "high"\n')
    with pytest.raises(HarnessInputError, match=r"\[optimize\] 'min_psnr' must be float or int"):
        load_project(tmp_path / "edge-harness.toml")


# -- the knobs -------------------------------------------------------------------------------------------------
def _state(points=(), budget=None, formats=("onnx", "tflite"), methods=()) -> SearchState:
    spec_ = OptimizeSpec("m", "t", Budget(**(budget or {"min_psnr": 30.0})), formats=formats, methods=methods)
    state = SearchState(spec_)
    state.steps = [{"step": "screen-1", "rung": "screen", "seconds": 1.0, "points": list(points),
                    "candidates": [{"key": p["candidate"]} for p in points]}]
    return state


def _point(candidate: Candidate, fmt="onnx", runtime="onnxruntime", speedup=2.0, psnr=35.0, met=True, layer=None,
           fidelity_failed=False) -> dict:
    return {"candidate": candidate.key, "knob": candidate.knob, "variant": candidate.variant, "format": fmt,
            "runtime": runtime, "target": "t", "chain": candidate.chain, "deploy": candidate.deploy,
            "layer": layer or {}, "reason": "",
            "verdict": {"met": met, "speedup": speedup, "psnr_db": psnr, "labels": None, "latency_ms": 1 / speedup,
                        "size_mb": 1.0, "fidelity_failed": fidelity_failed}}


def test_quantize_proposes_the_int8_paths_the_formats_reach():
    names = [c.key for c in Quantize().propose(_state(formats=("onnx",)))]
    assert names == ["quant-dynamic", "quant-static"]
    names = [c.key for c in Quantize().propose(_state(formats=("tflite",), budget={"max_size_mb": 1.0}))]
    assert names == ["tflite-dynamic", "tflite-int8", "pt2e-int8", "tflite-fp16", "tflite-weight-only"]
    assert [c.key for c in Quantize().propose(_state(methods=("quant-static",)))] == ["quant-static"]
    # once fp32 is measured, the size-only methods come only where its size or memory is over the cap (a target's
    # generous [fit] on a small model adds none of them)
    state = _state(formats=("tflite",), budget={"max_size_mb": 2048.0, "max_memory_mb": 4096.0})
    fits = {"candidate": "baseline", "verdict": {"met": False, "reasons": ["speed-up 1.00× < 5×"]}}
    state.steps.insert(0, {"step": "baseline-1", "rung": "baseline", "seconds": 1.0, "points": [fits],
                           "candidates": []})
    assert [c.key for c in Quantize().propose(state)] == ["tflite-dynamic", "tflite-int8", "pt2e-int8"]
    fits["verdict"]["reasons"].append("size 3.1e+03 MB > 2048 MB")
    assert "tflite-fp16" in [c.key for c in Quantize().propose(state)]


def test_mixed_precision_keeps_float_the_layer_that_falls_under_the_floor_one_more_each_round():
    static = Candidate("quantize", (spec("quant-static"),))
    layer = {"first_break": "lift", "worst": "act", "layers": [["lift", 42.6], ["mix", 13.4], ["act", 9.6]]}
    failed = _point(static, psnr=15.8, met=False, fidelity_failed=True, layer=layer)
    (first,) = MixedPrecision().propose(_state([failed]))
    assert first.chain[-1].params["keep_float_layers"] == ["mix"] and first.key == "quant-static(keep_float_layers=mix)"
    # still lost: the next layer under the floor joins it
    again = _point(first, psnr=20.0, met=False, fidelity_failed=True,
                   layer={"layers": [["lift", 42.6], ["mix", 100.0], ["act", 12.0]], "first_break": "act"})
    proposed = MixedPrecision().propose(_state([failed, again]))
    assert [c.chain[-1].params["keep_float_layers"] for c in proposed] == [["mix"], ["mix", "act"]]
    # a point that kept fidelity, or one that is not static int8, proposes nothing
    assert MixedPrecision().propose(_state([_point(static)])) == []


def test_mixed_precision_for_pt2e_reads_the_layers_of_another_format_and_uses_xnnpacks_quantizer():
    pt2e = Candidate("quantize", (spec("pt2e-int8"),))
    failed = _point(pt2e, fmt="executorch", runtime="executorch", psnr=18.0, met=False, fidelity_failed=True)
    # ExecuTorch has no layers pass: without another format's layers there is nothing to keep float
    assert MixedPrecision().propose(_state([failed], formats=("executorch",))) == []
    # ONNX Runtime's static int8 of the same parent says where int8 breaks this model
    static = _point(Candidate("quantize", (spec("quant-static"),)), psnr=18.5, met=False, fidelity_failed=True,
                    layer={"first_break": "temb", "layers": [["conv", 41.0], ["temb", 12.0]]})
    proposed = {c.key: c for c in MixedPrecision().propose(_state([failed, static]))}
    mixed = proposed["pt2e-int8(quantizer=xnnpack, keep_float_layers=temb)"]
    assert mixed.chain[-1].method == "pt2e-int8" and mixed.chain[-1].params["quantizer"] == "xnnpack"
    assert mixed.chain[-1].params["keep_float_layers"] == ["temb"]
    # the same PT2E step measured on TFLite (its own layers pass) is read first
    tflite = _point(pt2e, fmt="tflite", runtime="litert", psnr=18.0, met=False, fidelity_failed=True,
                    layer={"first_break": "conv", "layers": [["conv", 14.0], ["temb", 40.0]]})
    keys = [c.key for c in MixedPrecision().propose(_state([failed, tflite]))]
    assert keys == ["pt2e-int8(quantizer=xnnpack, keep_float_layers=conv)"] * 2  # one key: measured once


def test_the_distillation_width_search_is_deterministic_and_moves_on():
    state = _state(budget={"min_speedup": 5.0, "min_psnr": 30.0})
    first, second = Distill().propose(state)
    assert first.chain[0].params["amount"] == 0.5 and first.key == "distill(amount=0.5)"
    assert second.key == "distill(amount=0.75)"
    measured = _state([_point(first, speedup=3.0, psnr=36.0, met=False), _point(second, speedup=4.5, psnr=33.0,
                                                                                 met=False)],
                      budget={"min_speedup": 5.0, "min_psnr": 30.0})
    (next_a,), (next_b,) = Distill().propose(measured), Distill().propose(measured)
    assert next_a.key == next_b.key not in (first.key, second.key)  # a resumed search asks the same width again
    assert 0.25 <= next_a.chain[0].params["amount"] <= 0.9
    from harness.run.knobs import _score

    budget = {"min_speedup": 5.0, "min_psnr": 30.0}
    assert _score(_point(first, speedup=3.0, psnr=36.0), budget) == pytest.approx(0.6)  # speed is what is short
    assert _score(_point(first, speedup=8.0, psnr=27.0), budget) == pytest.approx(0.9)  # fidelity is
    assert _score({"verdict": {"speedup": None}}, budget) == -100.0


def test_a_student_cut_short_that_missed_only_on_fidelity_trains_again_for_longer():
    from harness.run.knobs import TrainLonger

    budget = {"min_speedup": 5.0, "min_psnr": 30.0, "min_labels": 0.95}
    student = Candidate("distill", (spec("distill", {"amount": 0.75, "max_train_s": 90.0}, named=("amount",)),))
    missed = _point(student, speedup=6.4, psnr=33.8, met=False, fidelity_failed=True)
    missed["verdict"]["reasons"], missed["verdict"]["labels"] = ["labels 0.941 < 0.95"], 0.941
    missed["training"] = {"steps_done": 1046, "stopped": "max_train_s = 90 s ran out after 1046 of 3000 steps"}
    (longer,) = TrainLonger().propose(_state([missed], budget=budget))
    assert longer.key == "distill(amount=0.75, max_train_s=270)"
    assert longer.chain[0].params["max_train_s"] == 270.0 and longer.chain[0].params["steps"] == 600  # as before
    finished = dict(missed, training={"steps_done": 3000})
    slow = dict(missed, verdict=dict(missed["verdict"], reasons=["speed-up 3.00× < 5×", "labels 0.941 < 0.95"]))
    assert TrainLonger().propose(_state([finished], budget=budget)) == []  # more time would change nothing
    assert TrainLonger().propose(_state([slow], budget=budget)) == []  # better fidelity would not make it faster


def test_the_batch_knob_turns_only_for_a_throughput_budget_and_the_choice_is_the_most_images_per_second():
    from harness.run.knobs import Batch

    quick = Candidate("quantize", (spec("quant-dynamic"),))
    assert Batch().propose(_state([_point(quick)])) == []  # no throughput term: batching buys nothing asked for
    state = _state([_point(quick)], budget={"min_throughput": 5000.0, "min_psnr": 30.0})
    proposed = Batch().propose(state)
    assert [c.key for c in proposed] == ["fp32 @batch=2", "quant-dynamic @batch=2", "fp32 @batch=4",
                                         "quant-dynamic @batch=4", "fp32 @batch=8", "quant-dynamic @batch=8"]
    one, eight = _point(quick), _point(Candidate("batch", quick.chain, (("batch", 8),)), speedup=1.5)
    one["verdict"]["throughput"], eight["verdict"]["throughput"] = 2000.0, 6000.0
    state.steps.append({"step": "confirm-1", "rung": "confirm", "seconds": 1.0, "candidates": [],
                        "points": [one, eight]})
    assert _choice(state)["candidate"] == "quant-dynamic @batch=8"  # slower per batch, more images per second


def test_the_ort_options_knob_tries_the_promising_onnx_points_with_other_session_options():
    from harness.run.knobs import OrtOptions

    onnx, tflite = Candidate("quantize", (spec("quant-dynamic"),)), Candidate("quantize", (spec("tflite-dynamic"),))
    state = _state([_point(onnx), _point(tflite, "tflite", "litert", speedup=4.0)])
    assert [c.key for c in OrtOptions().propose(state)] == [
        "quant-dynamic @onnx_graph_optimization=extended", "quant-dynamic @onnx_execution_mode=parallel"]
    assert OrtOptions().propose(_state([_point(tflite, "tflite", "litert")], formats=("tflite",))) == []


def test_candidates_round_trip_and_the_choice_is_the_fastest_confirmed_point():
    chain = Candidate("compose", (spec("distill", {"amount": 0.5}, named=("amount",)),
                                  spec("quant-static", after="distill(amount=0.5)")), (("threads", 1),))
    assert Candidate.from_dict(json.loads(json.dumps(chain.to_dict()))) == chain
    assert chain.key == "distill(amount=0.5) → quant-static after distill(amount=0.5) @threads=1"
    slow, fast = Candidate("quantize", (spec("quant-static"),)), Candidate("quantize", (spec("quant-dynamic"),))
    state = _state([_point(slow, speedup=2.0), _point(fast, speedup=3.0), _point(fast, "tflite", "litert", 1.0)])
    assert [p["candidate"] for p in _confirmable(state)] == ["quant-dynamic", "quant-static", "quant-dynamic"]
    state.steps.append({"step": "confirm-1", "rung": "confirm", "seconds": 1.0,
                        "candidates": [{"key": "quant-dynamic"}, {"key": "quant-static"}],
                        "points": [_point(slow, speedup=2.0), _point(fast, speedup=3.0, met=False)]})
    assert _choice(state)["candidate"] == "quant-static" and _confirmable(state) == []
    assert first_under({"layers": [["a", 50.0], ["b", 20.0]]}, 30.0) == ("b", 20.0)


# -- real searches ------------------------------------------------------------------------------------------------
def _env(tmp_path: Path, plugins: str = "") -> dict:
    env = {"EDGE_HARNESS_MODELS": str(FIXTURES / "optimize"), "EDGE_HARNESS_CACHE": str(tmp_path / "cache"),
           "EDGE_HARNESS_REPORTS": str(tmp_path / "reports"), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": str(tmp_path)}
    if plugins:
        env["EDGE_HARNESS_PLUGINS"] = plugins
    return env


SEARCH = ["--model", "fragile_mlp", "--target", "x86-cpu", "--min-psnr", "30", "--max-size-mb", "0.04",
          "--format", "onnx", "--knob", "quantize", "--knob", "mixed-precision", "--knob", "crashing",
          "--method", "quant-static", "--method", "quant-dynamic", "--method", "segfault-compress",
          "--time-limit", "10m", "--no-progress"]


@pytest.mark.slow
def test_mixed_precision_finds_the_fragile_layer_through_a_crash_a_ctrl_c_and_a_resume(tmp_path):
    """int8 loses the image (15.8 dB); the search keeps the layer where fidelity falls under the floor float and
    recovers it (≥ 30 dB, inside the size budget); a candidate that segfaults its compressor is a rejected trial;
    Ctrl-C after the first screen keeps the trials and --resume finishes without measuring them again."""
    out, env = tmp_path / "search", _env(tmp_path, str(FIXTURES / "plugins" / "crashing_knob.py"))
    command = [sys.executable, "-m", "harness", "optimize", *SEARCH]
    proc = subprocess.Popen([*command, "--out", str(out)], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    trials, deadline = out / "trials.jsonl", time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if trials.is_file() and len(trials.read_text().splitlines()) >= 2:  # baseline-1 and screen-1 recorded
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.1)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert f"harness optimize --resume {out}" in err
    interrupted = json.loads((out / "optimize.json").read_text())
    assert interrupted["status"] == "interrupted" and interrupted["chosen"] is None

    done = subprocess.run([sys.executable, "-m", "harness", "optimize", "--resume", str(out), "--no-progress"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = [json.loads(line)["step"] for line in trials.read_text().splitlines()]
    assert steps[:2] == ["baseline-1", "screen-1"] and len(steps) == len(set(steps))  # nothing measured twice
    card = json.loads((out / "optimize.json").read_text())
    assert card["status"] == "met" and card["schema_version"] == 1
    chosen = card["chosen"]
    assert chosen["candidate"] == "quant-static(keep_float_layers=mix)"
    assert chosen["psnr_db"] >= 30 and chosen["size_mb"] <= 0.04
    assert chosen["recipe"][0]["params"]["keep_float_layers"] == ["mix"]
    shipped = out / chosen["artifact"]
    assert shipped.is_file() and shipped.stat().st_size <= 0.04 * 2**20
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"])
    image = session.run(None, {session.get_inputs()[0].name: np.zeros((1, 16), np.float32)})[0]
    assert image.shape == (1, 1, 8, 8) and np.isfinite(image).all()
    reasons = {t["candidate"]: t["reason"] for t in card["trials"] if t["rung"] == "screen"}
    assert reasons["quant-static"].startswith("PSNR 15.8 dB < 30 dB; falls under 30 dB at mix")
    assert reasons["segfault-compress"].startswith("crashed:") and "SIGSEGV" in reasons["segfault-compress"]
    html = (out / "index.html").read_text()
    assert "Deployment card: budget met" in html and "keep_float_layers=mix" in html and "<svg" in html
    assert "budget met: quant-static(keep_float_layers=mix)" in done.stderr


API_SEARCH = """
import json, sys
import harness.api as eh
found = eh.optimize("fragile_mlp", "x86-cpu", min_psnr=30, min_throughput=1e9, formats=["onnx"],
                    knobs=["quantize", "mixed-precision", "batch"], methods=["quant-dynamic"], time_limit="5m",
                    out=sys.argv[1])
trials = found.trials()
batched = trials[trials["candidate"].str.startswith("fp32 @batch=")]
print(json.dumps({"status": found.status, "choice": found.choice, "miss": found.card["nearest_miss"],
                  "front": found.card["front"], "columns": list(trials.columns), "rows": len(trials),
                  "batched": batched[["candidate", "batch", "speedup", "reason"]].to_dict("records")}))
"""


@pytest.mark.slow
def test_an_unreachable_budget_gives_the_front_and_the_reasons_through_the_api(tmp_path):
    proc = subprocess.run([sys.executable, "-c", API_SEARCH, str(tmp_path / "search")], cwd=PROJECT_ROOT,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.splitlines()[-1])
    assert found["status"] == "not met" and found["choice"] is None
    assert found["miss"]["candidate"] == "quant-dynamic"
    assert found["miss"]["reason"].startswith("PSNR 15.8 dB < 30 dB; throughput ")
    assert "images/s < 1e+09 at batch 1; falls under 30 dB at" in found["miss"]["reason"]
    assert found["front"] and any(f.startswith("fp32") for f in found["front"])
    assert {"candidate", "format", "runtime", "speedup", "psnr_db", "reason"} <= set(found["columns"])
    assert found["rows"] >= 2 and "nothing more to try" not in proc.stderr
    # a throughput term lets the search batch: fp32 at 2, 4 and 8, each against fp32 ONNX Runtime at its own batch
    batched = {row["candidate"]: row for row in found["batched"]}
    assert set(batched) == {"fp32 @batch=2", "fp32 @batch=4", "fp32 @batch=8"}, found["batched"]
    for size in (2, 4, 8):
        row = batched[f"fp32 @batch={size}"]
        assert row["batch"] == size and row["speedup"] == 1.0 and f"< 1e+09 at batch {size}" in row["reason"]
    assert math.isfinite(found["miss"]["psnr_db"])


def test_the_project_files_optimize_table_is_the_default_and_the_call_overrides_it(tmp_path, monkeypatch):
    from harness import api
    from harness.config import project

    (tmp_path / "edge-harness.toml").write_text('[optimize]\nmodel = "my_gan"\ntarget = "x86-cpu"\nmin_psnr = 30\n'
                                                'min_speedup = 5\ntime_limit = "45m"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(project, "_CACHE", {})
    spec_ = api._optimize_spec(api._optimize_table(None, None, "4m", {"min_speedup": 1.5, "formats": ("onnx",)}))
    assert spec_.model == "my_gan" and spec_.time_limit_s == 240 and spec_.formats == ("onnx",)
    assert spec_.budget.terms() == {"min_speedup": 1.5, "min_psnr": 30.0}


@pytest.mark.parametrize("args, message", [
    (["--model", "nope", "--target", "x86-cpu"], "unknown model 'nope' (known: "),
    (["--model", "fragile_mlp", "--target", "nowhere"], "unknown target 'nowhere'"),
    (["--model", "fragile_mlp", "--target", "x86-cpu", "--knob", "magic"], "unknown search knob 'magic'"),
    (["--model", "fragile_mlp", "--target", "x86-cpu", "--time-limit", "4minutes"], "duration such as 90s"),
    (["--target", "x86-cpu"], "needs a model and a target"),
])
def test_bad_searches_are_one_line_errors_before_anything_runs(tmp_path, args, message):
    out = tmp_path / "search"
    proc = subprocess.run([sys.executable, "-m", "harness", "optimize", *args, "--min-psnr", "30", "--out", str(out)],
                          cwd=PROJECT_ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists()


def test_the_width_search_bisects_towards_the_peak_when_the_sampler_keeps_asking_a_measured_width():
    from harness.run.knobs import _between

    # the VAE search's widths: the best (0.9) lost fidelity, 0.75 was faithful but slow: the peak lies between
    assert _between({0.25: 0.27, 0.5: 0.26, 0.75: 0.61, 0.9: 0.88}, 0.25, 0.9) == 0.8
    assert _between({0.5: 0.2, 0.55: 0.3, 0.6: 0.1}, 0.25, 0.9) is None  # both gaps closed on the grid


def test_the_chosen_file_is_the_confirmed_one_at_the_chosen_batch(tmp_path):
    """A variant confirmed at several batches (the batch knob) has one file per batch (an export's batch is fixed):
    the card copies the one its choice was measured with, from the newest confirm step (confirm-10 after confirm-9)."""
    from harness.run.optimize import _copy_chosen

    def confirm(step: str, batch: int) -> None:
        folder = tmp_path / step / "run-1"
        folder.mkdir(parents=True)
        model = tmp_path / "cache" / f"{step}-b{batch}" / "model.onnx"
        model.parent.mkdir(parents=True)
        model.write_bytes(f"{step} batch {batch}".encode())
        artifact = {"variant": "v", "format": "onnx", "path": str(model), "batch_size": batch}
        (folder / "requests.jsonl").write_text(json.dumps({"target": "t", "request": {
            "runtime": "onnxruntime", "artifact": artifact}}) + "\n")

    confirm("confirm-9", 8)
    confirm("confirm-10", 1)
    chosen = {"variant": "v", "target": "t", "runtime": "onnxruntime", "format": "onnx", "verdict": {"batch": 8}}
    assert _copy_chosen(tmp_path, chosen) == "chosen/model.onnx"
    assert (tmp_path / "chosen" / "model.onnx").read_bytes() == b"confirm-9 batch 8"
    chosen["verdict"]["batch"] = 1
    _copy_chosen(tmp_path, chosen)
    assert (tmp_path / "chosen" / "model.onnx").read_bytes() == b"confirm-10 batch 1"
