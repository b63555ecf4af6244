"""A pytest plugin for users who write their benchmarks as tests (registered as the ``edge_harness`` plugin).

The ``edge_harness`` fixture measures artifact files or zoo models with the harness itself — the same fresh
worker processes, timing loop and statistics as ``harness run`` — and returns the run records::

    def test_generator_is_fast_enough(edge_harness):
        (record,) = edge_harness.measure("build/generator.onnx")
        assert record.status == "ok"
        assert record.measurement("latency").stats["p50"] < 5.0   # ms

Every record of the session goes to one run folder (``--edge-harness-out``, default
``reports/pytest-<time>``): results.jsonl, the CSVs and HTML report, and ``pytest-benchmark.json`` in
pytest-benchmark's format, so ``harness gate`` and ``pytest-benchmark compare`` both read the session.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("edge-harness")
    group.addoption("--edge-harness-out", metavar="DIR", default=None,
                    help="run folder for the edge_harness fixture's measurements (default: reports/pytest-<time>)")
    group.addoption("--edge-harness-quick", action="store_true",
                    help="few runs per job: a smoke test of the benchmarks, not a measurement")


class EdgeHarness:
    """What the fixture returns. ``out_dir`` holds every measurement of the session."""

    def __init__(self, out_dir: Path, quick: bool) -> None:
        self.out_dir = out_dir
        self.quick = quick
        self.used = False

    def measure(self, *artifacts: str | Path, models: Sequence[str] = (), formats: Sequence[str] = ("onnx",),
                target: str = "x86-cpu", batch_sizes: Sequence[int] = (1,), settings: dict[str, Any] | None = None,
                suite: str | Path | None = None) -> list:
        """Measure artifact files (.onnx/.tflite, as they are) and/or zoo models (exported to ``formats``) on
        ``target``; returns this call's RunRecords. ``settings`` overrides RunSettings fields (e.g. min_runs);
        ``suite`` takes variants and settings from a suite file."""
        from harness.config import paths
        from harness.cli import QUICK_SETTINGS
        from harness.run.runner import SuiteRunner
        from harness.results.store import read_records
        from harness.config.suite import load_suite
        from harness.plugins import load_plugins

        load_plugins()
        base = load_suite(Path(suite) if suite else paths.default_suite())
        run_settings = dataclasses.replace(base.settings, **(QUICK_SETTINGS if self.quick else {}),
                                           **(settings or {}))
        spec = dataclasses.replace(base, name="pytest", models=tuple(models), targets=(target,),
                                   formats=tuple(formats), batch_sizes=tuple(batch_sizes), settings=run_settings,
                                   variants=base.variants if suite else ())
        results = self.out_dir / "results.jsonl"
        before = len(read_records(results)) if results.exists() else 0
        runner = SuiteRunner(spec, out_dir=self.out_dir, cache_dir=paths.cache_dir(), progress=False,
                             external=tuple(Path(a) for a in artifacts))
        runner.run()
        self.used = True
        return read_records(results)[before:] if results.exists() else []


@pytest.fixture(scope="session")
def edge_harness(request: pytest.FixtureRequest) -> EdgeHarness:
    option = request.config.getoption("--edge-harness-out")
    out = Path(option) if option else Path("reports") / f"pytest-{datetime.now():%Y%m%d-%H%M%S}"
    harness = EdgeHarness(out.resolve(), request.config.getoption("--edge-harness-quick"))
    yield harness
    if harness.used and (out / "results.jsonl").exists():
        from harness.report import write_report
        from harness.report.pytest_benchmark import write_pytest_benchmark
        from harness.results.store import read_records

        write_report(out / "results.jsonl")
        write_pytest_benchmark(read_records(out / "results.jsonl"), out / "pytest-benchmark.json")
        request.config.stash[_REPORT] = out


_REPORT = pytest.StashKey[Path]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    out = config.stash.get(_REPORT, None)
    if out is not None:
        terminalreporter.write_line(f"edge-harness: {out / 'index.html'} (gate with: harness gate --baseline "
                                    f"BASE --candidate {out})")
