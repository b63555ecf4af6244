"""The example CI workflow: its files exist and its gate command works on the committed baseline."""
from __future__ import annotations

import shlex

import yaml

from harness.analysis.gate import load_gate_config
from harness.config.paths import PROJECT_ROOT
from harness.results.store import read_records
from harness.config.suite import load_suite
from tests.test_cli import harness

WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "edge-harness-gate.yml"


def commands() -> list[list[str]]:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["gate"]["steps"]
    return [shlex.split(step["run"].replace("\n", " ")) for step in steps if "run" in step]


def test_workflow_runs_the_suite_and_gates_on_committed_files():
    runs = {c[1]: c for c in commands() if c[0] == "harness"}
    run, gate = runs["run"], runs["gate"]
    suite = load_suite(PROJECT_ROOT / run[run.index("--suite") + 1])
    baseline = PROJECT_ROOT / gate[gate.index("--baseline") + 1]
    records = read_records(baseline)
    assert records and all(r.status == "ok" for r in records)
    assert {r.model for r in records} == set(suite.models) and {r.target for r in records} == set(suite.targets)
    assert gate[gate.index("--candidate") + 1] == run[run.index("--out") + 1]
    load_gate_config(PROJECT_ROOT / gate[gate.index("--config") + 1])


def test_gate_passes_the_baseline_against_itself(tmp_path):
    gate = next(c for c in commands() if c[:2] == ["harness", "gate"])
    baseline = gate[gate.index("--baseline") + 1]
    config = gate[gate.index("--config") + 1]
    proc = harness("gate", "--baseline", baseline, "--candidate", baseline, "--config", config,
                   "--markdown", str(tmp_path / "summary.md"), "--junit", str(tmp_path / "junit.xml"))
    assert proc.returncode == 0, proc.stderr
    assert "PASS" in (tmp_path / "summary.md").read_text()


def test_pull_request_job_measures_base_and_head_then_gates_their_interleaved_session():
    import posixpath

    from harness.cli import _parser

    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["ab"]
    checkouts = {step["with"].get("path"): step["with"] for step in job["steps"]
                 if step.get("uses", "").startswith("actions/checkout")}
    assert set(checkouts) == {"candidate", "base"} and "base.sha" in checkouts["base"]["ref"]
    parsed = {}
    for step in job["steps"]:
        if "harness" not in step.get("run", ""):
            continue
        argv = shlex.split(step["run"].replace("\n", " "))
        assert argv[:3] == ["python", "-m", "harness"]
        args = _parser().parse_args(argv[3:])  # every flag exists
        where = step["working-directory"]

        def at(path, where=where):
            return posixpath.normpath(posixpath.join(where, str(path)))

        parsed[(args.command, where)] = (args, at)
    (base, at_base), (cand, at_cand) = parsed[("run", "base")], parsed[("run", "candidate")]
    ab, at_ab = parsed[("ab", "candidate")]
    gate, at_gate = parsed[("gate", "candidate")]
    assert at_base(base.suite) == "base/suites/gate.toml" and at_cand(cand.suite) == "candidate/suites/gate.toml"
    assert at_ab(ab.baseline) == at_base(base.out) and at_ab(ab.candidate) == at_cand(cand.out)
    assert at_ab(ab.baseline_root) == "base"
    assert [at_gate(p) for p in gate.baseline] == [at_ab(ab.out) + "/baseline"]
    assert [at_gate(p) for p in gate.candidate] == [at_ab(ab.out) + "/candidate"]
    load_gate_config(PROJECT_ROOT / gate.config)


def test_the_user_project_template_runs_harness_commands_that_parse():
    """examples/user-project-ci.yml: installs from the package index, runs the project's suite, gates it."""
    from harness.cli import _parser

    template = yaml.safe_load((PROJECT_ROOT / "examples" / "user-project-ci.yml").read_text())
    steps = template["jobs"]["bench"]["steps"]
    install = next(s["run"] for s in steps if 'pip install "$EDGE_HARNESS"' in s.get("run", ""))
    assert install.index("torch==2.13.0") < install.index('pip install "$EDGE_HARNESS"')
    from packaging.requirements import Requirement

    assert Requirement(template["env"]["EDGE_HARNESS"]).name == "edge-harness"  # one variable, a valid pip spec
    seen = set()
    for step in steps:
        for line in step.get("run", "").splitlines():
            argv = shlex.split(line.replace("$GITHUB_STEP_SUMMARY", "summary.md"))
            if argv[:1] == ["harness"]:
                _parser().parse_args(argv[1:])  # every flag exists
                seen.add(argv[1])
    assert seen == {"run", "ab", "gate"}
    assert all("--baseline-root" not in s.get("run", "") for s in steps)  # the harness is the same on both sides


def test_the_user_template_gates_nothing_when_the_base_has_no_config(tmp_path):
    """The pull request that first adds the harness: the base has no config, so the template notes it in the
    summary and skips the base's run and the gate (its shell step run here, for real, on both kinds of base)."""
    import subprocess

    template = yaml.safe_load((PROJECT_ROOT / "examples" / "user-project-ci.yml").read_text())
    steps = template["jobs"]["bench"]["steps"]
    probe = next(s for s in steps if s.get("id") == "base")
    gated = [s for s in steps if "steps.base.outputs.configured == 'true'" in s.get("if", "")]
    assert {s["name"] for s in gated} == {"Measure the base", "Interleaved session of base and head, gated"}
    for config, expected in ((None, "false"), ("edge-harness.toml", "true"), ("pyproject.toml", "true")):
        work = tmp_path / str(config)
        (work / "base").mkdir(parents=True)
        if config == "edge-harness.toml":
            (work / "base" / config).write_text("[models]\n")
        elif config == "pyproject.toml":
            (work / "base" / config).write_text("[project]\nname = 'x'\n[tool.edge-harness]\n")
        out, summary = work / "out", work / "summary"
        proc = subprocess.run(["bash", "-e", "-c", probe["run"]], cwd=work, capture_output=True, text=True,
                              env={"GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary), "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        assert out.read_text().strip() == f"configured={expected}"
        assert ("nothing is gated" in summary.read_text()) == (expected == "false") if summary.exists() \
            else expected == "true"
