"""The example CI workflow: its files exist and its gate command works on the committed baseline."""
from __future__ import annotations

import shlex

import yaml

from harness.gate import load_gate_config
from harness.paths import PROJECT_ROOT
from harness.store import read_records
from harness.suite import load_suite
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
