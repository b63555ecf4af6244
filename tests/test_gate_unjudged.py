"""A busy runner never turns the gate into a silent PASS: gated comparisons that could not be judged (a disturbed
pass, a test that cannot reach α) are counted in the headline, on stderr and in JUnit, and fail the gate (exit 3)
when the gate file or the command line asks."""
from __future__ import annotations

import dataclasses
from xml.etree import ElementTree as ET

import numpy as np

from harness.analysis.gate import EXIT_NOT_JUDGED, GateConfig, junit_xml, load_gate_config, markdown_summary, \
    run_gate
from harness.results.store import ResultsStore
from harness.run.interleave import session_quiet
from tests.test_gate import job, lognormal
from tests.test_results_fuzz import cli


def contended(record):
    return dataclasses.replace(record, context={"contention": {"contended": True, "others_cores": 0.9,
                                                               "limit_cores": 0.25, "cpus": [0]}})


def runs(slowdown: float = 1.30):
    """Five jobs; the candidate's first job is ``slowdown`` times slower and was measured under contention."""
    base = [job(lognormal(i), model=f"m{i}") for i in range(5)]
    cand = [job(lognormal(10 + i) * (slowdown if i == 0 else 1.0), model=f"m{i}") for i in range(5)]
    cand[0] = contended(cand[0])
    return base, cand


def test_a_contended_slower_candidate_passes_only_with_the_unjudged_count_in_every_view():
    base, cand = runs()
    result = run_gate(base, cand, GateConfig())
    assert not result.failed and result.exit_code == 0  # nothing judged regressed
    assert [v.comparison.metric for v in result.unjudged] == ["latency_p50", "latency_p90"]
    assert result.unjudged_text() == "2 of 20 gated comparisons not judged (2 disturbed)"
    summary = markdown_summary(result)
    headline = summary.splitlines()[0]
    assert "PASS" in headline and "2 of 20 gated comparisons not judged (2 disturbed)" in headline
    assert "harness ab" in summary and "contention_retries" in summary  # what to do
    visible = summary.split("<details>")[0]  # not folded away
    assert visible.count("not gated: the candidate: measured under contention") == 2
    suite = ET.fromstring(junit_xml(result).split("\n", 1)[1])
    assert suite.get("skipped") == "2" and suite.get("failures") == "0"
    assert [c.get("name") for c in suite if c.find("skipped") is not None] == ["latency_p50", "latency_p90"]


def test_fail_on_unjudged_makes_it_exit_3_and_a_junit_failure():
    base, cand = runs()
    result = run_gate(base, cand, GateConfig(fail_on_unjudged=True))
    assert result.exit_code == EXIT_NOT_JUDGED == 3 and result.headline == "NOT JUDGED"
    assert markdown_summary(result).startswith("## Edge Harness regression gate: ❌ **NOT JUDGED**: 2 of 20")
    suite = ET.fromstring(junit_xml(result).split("\n", 1)[1])
    assert suite.get("failures") == "2"
    assert {c.find("failure").get("type") for c in suite if c.find("failure") is not None} == {"not-judged"}
    # a regression elsewhere is a regression (exit 1), whatever else was not judged
    base, cand = runs()
    cand[1] = job(lognormal(11) * 1.5, model="m1")
    assert run_gate(base, cand, GateConfig(fail_on_unjudged=True)).exit_code == 1
    # every pass quiet: judged, nothing to fail on
    base, cand = runs(slowdown=1.0)
    cand[0] = dataclasses.replace(cand[0], context={})
    assert run_gate(base, cand, GateConfig(fail_on_unjudged=True)).exit_code == 0


def test_the_gate_file_key_and_the_flag(tmp_path):
    base, cand = runs()
    for name, records in (("base", base), ("cand", cand)):
        store = ResultsStore(tmp_path / name / "results.jsonl")
        for r in records:
            store.append(r)
    (tmp_path / "gate.toml").write_text("fail_on_unjudged = true\n")
    assert load_gate_config(tmp_path / "gate.toml").fail_on_unjudged
    (tmp_path / "bad.toml").write_text('fail_on_unjudged = "yes"\n')
    code, err = cli("gate", "--baseline", str(tmp_path / "base"), "--candidate", str(tmp_path / "cand"),
                    "--config", str(tmp_path / "bad.toml"), "--markdown", str(tmp_path / "x.md"))
    assert code == 2 and "fail_on_unjudged" in err
    md = tmp_path / "summary.md"
    code, err = cli("gate", "--baseline", str(tmp_path / "base"), "--candidate", str(tmp_path / "cand"),
                    "--markdown", str(md))
    assert code == 0
    assert err.strip().splitlines()[-1].startswith(
        "gate: pass: 0 regressions, 0 broken, 0 missing; 2 of 20 gated comparisons not judged (2 disturbed): re-run")
    for extra in (["--fail-on-unjudged"], ["--config", str(tmp_path / "gate.toml")]):
        code, err = cli("gate", "--baseline", str(tmp_path / "base"), "--candidate", str(tmp_path / "cand"),
                        "--markdown", str(md), *extra)
        assert code == 3 and "gate: NOT JUDGED: 0 regressions" in err, (extra, err)
    from harness import api

    frame = api.gate(tmp_path / "base", tmp_path / "cand", config=tmp_path / "gate.toml")
    assert frame.attrs["exit_code"] == 3 and frame.attrs["unjudged"] == 2 and not frame.attrs["failed"]
    assert sorted(frame[frame["not_judged"] != ""]["metric"]) == ["latency_p50", "latency_p90"]


def test_an_ab_session_is_judged_by_its_own_quiet_readings():
    quiet = {"contention": {"contended": False, "others_cores": 0.01, "limit_cores": 0.25}, "throttled": False}
    busy = {"contention": {"contended": True, "others_cores": 0.8, "limit_cores": 0.25}, "throttled": False,
            "warnings": ["other processes kept 0.80 of the worker's 1 CPU(s) busy while it was timed"]}
    assert session_quiet([quiet] * 8) == {"throttled": False, "contention": quiet["contention"] | {
        "rounds": 8, "rounds_contended": 0, "contended": False}}
    mixed = session_quiet([quiet, busy, quiet])
    assert mixed["contention"]["contended"] and mixed["contention"]["rounds_contended"] == 1
    assert mixed["contention"]["others_cores"] == 0.8
    assert session_quiet([quiet, quiet | {"throttled": True}])["throttled"]


def test_an_ab_record_replaces_the_runs_quiet_check_by_the_sessions():
    """The run's latency pass was contended (and its cooldown not reached); the session's pairs were quiet: the
    session's record is judged quiet, and carries none of the run's contention warnings."""
    from harness.analysis.disturbance import disturbance
    from harness.run.interleave import _side_record
    from harness.types import Measurement

    record = dataclasses.replace(job(lognormal(1)), context={
        "contention": {"contended": True, "others_cores": 1.2, "limit_cores": 0.25},
        "cooldown": {"reached": False, "temp_c_end": 90, "limit_c": 60}, "machine": "x",
        "warnings": ["other processes kept 1.20 of the worker's 1 CPU(s) busy while it was timed (limit 0.25)",
                     "something else"]})
    assert disturbance(record)
    samples = tuple(float(x) for x in lognormal(2, 50))
    from harness import stats

    rounds = [[Measurement("latency", float(np.median(samples)), "ms", "perf_counter", samples=samples,
                           stats=stats.summarize(samples))]] * 2
    quiet = {"contention": {"contended": False, "others_cores": 0.0, "limit_cores": 0.25}, "throttled": False}
    out = _side_record(record, rounds, [quiet, quiet], None, {"session": "s", "side": "baseline"})
    assert disturbance(out) == ""
    assert out.context["machine"] == "x" and "cooldown" not in out.context
    assert out.context["warnings"] == ["something else"]
    busy = {"contention": {"contended": True, "others_cores": 0.7, "limit_cores": 0.25}}
    assert "contention" in disturbance(_side_record(record, rounds, [quiet, busy], None, {"session": "s"}))


def test_the_templates_turn_it_on():
    """Both CI workflows gate with --fail-on-unjudged and say what to do when it trips."""
    from harness.config.paths import PROJECT_ROOT

    for path in (PROJECT_ROOT / "examples" / "user-project-ci.yml",
                 PROJECT_ROOT / ".github" / "workflows" / "edge-harness-gate.yml"):
        import yaml

        text = path.read_text()
        runs = [step.get("run", "") for job in yaml.safe_load(text)["jobs"].values() for step in job["steps"]]
        gates = [run for run in runs if "harness gate" in run]  # each step runs one gate
        assert gates and all(run.count("harness gate") == 1 and "--fail-on-unjudged" in run for run in gates), path
        assert "exit 3" in text and "harness ab" in text, path
