"""`harness ab`: interleaved A/B sessions with real workers, and what the gate makes of them."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from harness.analysis.compare import METRICS, compare_metric, job_key
from harness.analysis.gate import GateConfig, run_gate
from harness.results.requests import REQUESTS_FILE, read_requests
from harness.config.paths import PROJECT_ROOT
from harness.results.store import read_records
from tests.mutations import SMALL_RUN
from tests.conftest import FIXTURES
from tests.test_cli import harness


@pytest.mark.slow
def test_ab_session_measures_both_sides_afresh_and_a_crashing_candidate_fails_the_gate(tmp_path, tiny_models_dir,
                                                                                          shared_cache):
    """Real runs and sessions (minutes on a busy machine). Nothing here depends on the machine being quiet: the
    verdict on two pairs is read with disturbed passes accepted, so a session timed beside other load (which the
    gate would otherwise leave out as contended) still shows the two-pair rule."""
    env = {"EDGE_HARNESS_MODELS": str(tiny_models_dir)}
    run = tmp_path / "run"
    proc = harness("run", "--variant", "none", "--model", "tiny_gen", "--quick", "--format", "torch", "--format",
                   "onnx", "--target", "x86-cpu", "--out", str(run), "--cache", str(shared_cache), env=env)
    assert proc.returncode == 0, proc.stderr
    records = {r.job_key: r for r in read_records(run / "results.jsonl")}
    requests = read_requests(run)
    assert set(requests) == set(records) and len(records) == 4  # torch, onnx × batch 1, 8
    assert all(e["reach"] == "local" and "outputs_path" not in e["request"] for e in requests.values())

    same = harness("ab", "--baseline", str(run), "--candidate", str(run), "--out", str(tmp_path / "same"),
                   "--pairs", "2", env=env)
    assert same.returncode == 0, same.stderr
    assert same.stdout.split()[:2] == ["harness", "gate"]
    base = read_records(tmp_path / "same" / "baseline" / "results.jsonl")
    cand = read_records(tmp_path / "same" / "candidate" / "results.jsonl")
    assert len(base) == len(cand) == 4
    for b, c in zip(base, cand):
        assert b.status == c.status == "ok"
        assert b.context["ab"]["session"] == c.context["ab"]["session"]
        assert (b.context["ab"]["side"], c.context["ab"]["side"]) == ("baseline", "candidate")
        run_latency = records[b.job_key].measurement("latency")
        for r in (b, c):
            rounds = r.measurement("latency_round_medians")
            assert len(rounds.samples) == 2  # one round per pair
            assert r.measurement("latency").samples != run_latency.samples  # measured afresh, not copied
            for kept in ("peak_rss", "load_time", "first_inference"):  # the run's: not measured in a session
                assert r.measurement(kept).value == records[b.job_key].measurement(kept).value
    # The gate tests a session over its pairs: the ratio is the median of the pairs' ratios, and two pairs can never
    # be significant (p ≥ 0.5 whatever they measure), which the verdict says rather than calling it noise.
    c = compare_metric(METRICS["latency_p50"], job_key(base[0]), [base[0]], [cand[0]])
    assert c.test == "wilcoxon signed-rank over paired rounds" and c.min_p == pytest.approx(0.5)
    pair_ratios = [y / x for x, y in zip(base[0].measurement("latency_round_medians").samples,
                                         cand[0].measurement("latency_round_medians").samples)]
    assert c.ratio == pytest.approx(float(np.median(pair_ratios)))
    p50 = next(v for v in run_gate([base[0]], [cand[0]], GateConfig(accept_disturbed=True)).verdicts
               if v.comparison.metric == "latency_p50")
    assert p50.outcome == "info" and p50.reason.startswith("not gated: α=0.05")

    # Ctrl-C during a session (here: after its first pair) keeps the whole pairs measured: a shorter session.
    from harness.run.interleave import Side, run_ab

    def interrupt_after_one(line):
        if line.startswith("ab: pair 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_ab(Side("baseline", run), Side("candidate", run), tmp_path / "cut", pairs=3, say=interrupt_after_one)
    cut = [read_records(tmp_path / "cut" / side / "results.jsonl") for side in ("baseline", "candidate")]
    assert [len(records) for records in cut] == [4, 4]
    for r in cut[0] + cut[1]:
        assert r.context["ab"]["pairs"] == 1 and r.measurement("latency").samples  # one whole pair kept

    # --baseline-root: the baseline's workers import that checkout's code (here a copy whose ONNX Runtime
    # adapter refuses to infer), the candidate's this one's.
    base_root = tmp_path / "base-checkout"
    shutil.copytree(PROJECT_ROOT / "harness", base_root / "harness",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(base_root / "harness" / "runtimes" / "onnxruntime_rt.py", "a") as f:
        f.write("\n\ndef _refuse(self, inputs):\n    raise RuntimeError('the base checkout worker ran')\n\n"
                "OnnxRuntime.infer = _refuse\n")
    other = harness("ab", "--baseline", str(run), "--candidate", str(run), "--out", str(tmp_path / "root"),
                    "--pairs", "1", "--baseline-root", str(base_root), env=env)
    assert other.returncode == 1, other.stderr
    side = {name: {(r.format, r.batch_size): r for r in read_records(tmp_path / "root" / name / "results.jsonl")}
            for name in ("baseline", "candidate")}
    for batch in (1, 8):
        assert "the base checkout worker ran" in side["baseline"][("onnx", batch)].error
        assert side["candidate"][("onnx", batch)].status == "ok" and side["baseline"][("torch", batch)].status == "ok"
    gate = harness("gate", "--baseline", str(tmp_path / "root" / "baseline"), "--candidate",
                   str(tmp_path / "root" / "candidate"))
    assert gate.returncode == 0, gate.stderr  # a baseline that broke is not a regression; one pair never is

    # The candidate's own environment reaches only its workers: a plugin that makes ONNX Runtime segfault.
    plugin = FIXTURES / "plugins" / "crashing_onnxruntime.py"
    crash = harness("ab", "--baseline", str(run), "--candidate", str(run), "--out", str(tmp_path / "crash"),
                    "--pairs", "1", f"--candidate-env=EDGE_HARNESS_PLUGINS={plugin}", env=env)
    assert crash.returncode == 1
    assert "crashed: ab:" in crash.stderr and "candidate pair 1: worker killed by SIGSEGV" in crash.stderr
    side = {name: {(r.format, r.batch_size): r for r in read_records(tmp_path / "crash" / name / "results.jsonl")}
            for name in ("baseline", "candidate")}
    for batch in (1, 8):
        crashed = side["candidate"][("onnx", batch)]
        assert crashed.status == "crashed" and "A/B session pair 1" in crashed.error
        assert side["baseline"][("onnx", batch)].status == "ok" and side["candidate"][("torch", batch)].status == "ok"
    gate = harness("gate", "--baseline", str(tmp_path / "crash" / "baseline"), "--candidate",
                   str(tmp_path / "crash" / "candidate"))
    assert gate.returncode == 1 and "2 broken" in gate.stderr


def test_ab_input_errors_are_one_line_exit_2(tmp_path):
    run = tmp_path / "old-run"
    run.mkdir()
    (run / "results.jsonl").write_bytes(SMALL_RUN.read_bytes())  # a run from before requests.jsonl was kept
    cases = [
        (["--baseline", str(tmp_path / "nope"), "--candidate", str(run)], "not a run folder"),
        (["--baseline", str(run), "--candidate", str(run)], f"no {REQUESTS_FILE}"),
        (["--baseline", str(run), "--candidate", str(run), "--baseline-env", "NOEQUALS"], "expected KEY=VALUE"),
        (["--baseline", str(run), "--candidate", str(run), "--baseline-root", str(tmp_path)],
         "not an Edge Harness checkout"),
    ]
    for args, message in cases:
        proc = harness("ab", *args, "--out", str(tmp_path / "s"))
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr
    (run / REQUESTS_FILE).write_text(json.dumps({"nothing": 1}) + "\n")
    proc = harness("ab", "--baseline", str(run), "--candidate", str(run), "--out", str(tmp_path / "s"))
    assert proc.returncode == 2 and "not a request entry" in proc.stderr
