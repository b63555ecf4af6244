"""Suite files and target profiles mutated from the real ones (tests/mutations.py), through the command line:
`harness run --suite` (with no models to measure, so a valid suite costs nothing) and `harness list targets`.
Whatever the file, exit 0, 1 or 2, never a traceback; an error is one line that names the file."""
from __future__ import annotations

import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.config import paths
from tests.mutations import mutated_toml, suite_base
from tests.test_results_fuzz import cli

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                derandomize=True)
DEFAULT_SUITE = suite_base((paths.PROJECT_ROOT / "suites" / "full.toml").read_text())
X86_TARGET = (paths.PROJECT_ROOT / "targets" / "x86-cpu.toml").read_text()


def _one_line_or_ok(code: int, err: str, path) -> None:
    assert code in (0, 1, 2), err
    assert "Traceback" not in err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("harness: error: ") and str(path) in lines[0], err


@FUZZ
@given(st.randoms(use_true_random=False))
def test_fuzz_suite_files_through_run(tmp_path, monkeypatch, rng):
    empty_models = tmp_path / "models"
    empty_models.mkdir(exist_ok=True)
    monkeypatch.setenv("EDGE_HARNESS_MODELS", str(empty_models))
    reports = tmp_path / "a" / "reports"  # a suite name is the run folder's name: ../../outside would leave it
    monkeypatch.setenv("EDGE_HARNESS_REPORTS", str(reports))
    _, text = mutated_toml(rng, DEFAULT_SUITE)
    path = tmp_path / "suite.toml"
    path.write_text(text, encoding="utf-8")
    code, err = cli("run", "--suite", str(path), "--no-progress", "--cache", str(tmp_path / "c"))
    _one_line_or_ok(code, err, path)
    assert not list(tmp_path.glob("outside*")) and not list(tmp_path.glob("a/outside*"))
    shutil.rmtree(reports, ignore_errors=True)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_fuzz_target_profiles_through_list(tmp_path, monkeypatch, rng):
    folder = tmp_path / "targets"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    monkeypatch.setenv("EDGE_HARNESS_TARGETS", str(folder))
    _, text = mutated_toml(rng, X86_TARGET)
    path = folder / "x86-cpu.toml"
    path.write_text(text, encoding="utf-8")
    code, err = cli("list", "targets")
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:  # the broken profile is named on its own row, and one error line says so
        assert err.strip().splitlines() == ["harness: error: 1 target profile(s) cannot be used (above)"]
