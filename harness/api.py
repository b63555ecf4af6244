"""The Python API, for notebooks and scripts: the same engine and workers as the command line, results as pandas.

    import harness.api as eh

    run = eh.run("mine", quick=True)               # a suite file or name (None: the project's default suite)
    run.summary()                                  # one row per job: latency, speed-ups, size, fidelity, flags
    run.measurements()                             # tidy: one row per measurement
    run.html                                       # the report (index.html)

    old = eh.load("reports/mine-20261128-101500")  # any run folder or results.jsonl
    eh.gate(old, run)                              # the CI gate's verdicts as a DataFrame (.attrs["failed"])
    found = eh.optimize("my_gan", "x86-cpu", min_speedup=5, min_psnr=30, time_limit="45m")
    found.choice, found.trials()                   # the deployment card's choice, every trial with its reason

Bad input raises ``harness.errors.HarnessInputError`` with the command line's one-line message.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.errors import HarnessInputError
from harness.types import RunRecord

QUICK_SETTINGS = dict(min_runs=5, min_duration_s=0.05, max_duration_s=5.0, warmup_min_runs=2,
                      warmup_max_runs=20, warmup_max_s=1.0, memory_runs=2, energy_min_s=0.1,
                      profile_runs=0, start_runs=0)
"""``--quick``: few runs per job, no profile or start pass — a smoke test, not a measurement (``harness profile`` profiles)."""


@dataclass(frozen=True)
class Run:
    """A run folder's results: records and the derived tables."""

    path: Path
    """The run folder (results.jsonl, CSVs, index.html, samples/)."""
    records: tuple[RunRecord, ...]
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    """This call's jobs by status (empty for a loaded run)."""
    artifacts_built: int = 0
    artifacts_reused: int = 0
    already_done: int = 0
    """Jobs skipped by ``resume`` because the run had them already."""

    @property
    def results_path(self) -> Path:
        return self.path / "results.jsonl"

    @property
    def html(self) -> Path:
        return self.path / "index.html"

    def measurements(self) -> Any:
        """Tidy pandas DataFrame: one row per measurement (latency statistics as latency_p50, … rows)."""
        from harness.report.tables import tidy_frame

        return tidy_frame(self.records)

    def summary(self) -> Any:
        """Wide pandas DataFrame: one row per job, with speed-ups, size ratios, fidelity and flags."""
        from harness.report.compression import compression_frame
        from harness.report.tables import summary_frame

        return compression_frame(summary_frame(self.records))

    @property
    def failed(self) -> int:
        return sum(1 for r in self.records if r.status not in ("ok", "unsupported"))


def load(path: str | Path) -> Run:
    """A run from its folder or its results.jsonl (validated: one-line errors)."""
    from harness.results.store import read_records

    path = Path(path)
    results = path / "results.jsonl" if path.is_dir() else path
    return Run(results.parent, tuple(read_records(results)))


def build_suite(suite: str | Path | None = None, *, models: Sequence[str] = (), targets: Sequence[str] = (),
                formats: Sequence[str] = (), variants: Sequence[str] = (), artifacts: Sequence[str | Path] = (),
                quick: bool = False, settings: dict[str, Any] | None = None) -> Any:
    """A ``Suite``: a file or name (``harness.config.paths.find_suite``) with the command line's overrides."""
    from harness.config import paths
    from harness.config.suite import load_suite

    loaded = load_suite(paths.find_suite(suite))
    overrides: dict[str, Any] = {}
    if targets:
        overrides["targets"] = tuple(targets)
    if models or artifacts:
        overrides["models"] = tuple(models)
    if formats:
        overrides["formats"] = tuple(formats)
    changes = (QUICK_SETTINGS if quick else {}) | (settings or {})
    if changes:
        try:
            overrides["settings"] = dataclasses.replace(loaded.settings, **changes)
        except (TypeError, ValueError) as exc:
            raise HarnessInputError(f"settings: {exc}") from None
    loaded = dataclasses.replace(loaded, **overrides)
    if variants:
        loaded = loaded.select_variants(tuple(variants))
    if artifacts:
        loaded = dataclasses.replace(loaded, variants=())
    return loaded


def run(suite: str | Path | None = None, *, models: Sequence[str] = (), targets: Sequence[str] = (),
        formats: Sequence[str] = (), variants: Sequence[str] = (), artifacts: Sequence[str | Path] = (),
        quick: bool = False, settings: dict[str, Any] | None = None, out: str | Path | None = None,
        cache: str | Path | None = None, resume: bool = False, progress: bool = False, report: bool = True,
        cluster: str | None = None) -> Run:
    """Run a suite (as ``harness run``) and return its results. ``settings`` overrides ``[settings]`` fields;
    ``cluster``: a Ray cluster's address (or ``auto``) to run it across (``harness.run.lab``), instead of the suite's
    or project's ``[cluster]`` table; ``"local"`` runs here whatever they say."""
    from harness.config import paths
    from harness.plugins import load_plugins
    from harness.report import write_report
    from harness.results.store import read_records
    from harness.run.runner import SuiteRunner, latest_run_dir, new_run_dir

    load_plugins()
    spec = build_suite(suite, models=models, targets=targets, formats=formats, variants=variants,
                       artifacts=artifacts, quick=quick, settings=settings)
    if resume and out is None:
        folder = latest_run_dir(paths.reports_dir(), spec.name)
    elif resume and not (Path(out) / "results.jsonl").is_file():
        raise HarnessInputError(f"--resume --out {out}: no run to resume there (no results.jsonl); "
                                "drop --resume to start a new run in that folder")
    else:
        folder = Path(out) if out is not None else new_run_dir(paths.reports_dir(), spec.name)
    lab = cluster_settings(spec, cluster)
    kwargs = dict(out_dir=folder, cache_dir=Path(cache) if cache else paths.cache_dir(), progress=progress,
                  resume=resume, external=tuple(Path(a) for a in artifacts))
    if lab is not None:
        from harness.run.lab import LabRunner

        runner: SuiteRunner = LabRunner(spec, cluster=lab, **kwargs)
    else:
        runner = SuiteRunner(spec, **kwargs)
    if report:  # index.html after each model: a first report while later models still prepare
        runner.on_model_done = write_report
    if progress:
        print(f"suite {spec.name}: {len(runner.models)} models × {1 + len(spec.variants)} variants × "
              f"{', '.join(spec.formats)}" + (f" + {len(runner.external)} artifact files" if runner.external else "")
              + f" on {', '.join(spec.targets)}" + (f" across the Ray cluster at {lab.address}" if lab else "")
              + f" → {folder}", file=sys.stderr)
    summary = runner.run()
    records = tuple(read_records(summary.results_path)) if summary.results_path.exists() else ()
    if records and report:
        write_report(summary.results_path)
    return Run(folder, records, dict(summary.statuses), summary.exports_built, summary.exports_reused,
               summary.skipped_completed)


def cluster_settings(spec: Any, cluster: str | None) -> Any:
    """The cluster a run uses: ``cluster`` (an address, ``auto``, or ``local`` for none), else the suite's
    ``[cluster]``, else the project's; None = this machine."""
    import dataclasses

    from harness.config.cluster import ClusterSettings
    from harness.config.project import current_project

    project = current_project()
    configured = spec.cluster or (project.cluster if project else None)
    if cluster == "local":
        return None
    if cluster:
        return dataclasses.replace(configured, address=cluster) if configured else ClusterSettings(address=cluster)
    return configured


def gate(baseline: Run | str | Path | Sequence[Run | str | Path], candidate: Run | str | Path | Sequence[Any],
         config: str | Path | None = None) -> Any:
    """The CI gate's verdicts (one row per job and metric) as a DataFrame (``not_judged``: why a gated metric
    could not be judged, '' when it was); ``.attrs`` holds ``failed`` (a regression or a broken / missing job),
    ``exit_code`` (what ``harness gate`` would exit with: 3 when the gate file's fail_on_unjudged trips),
    ``unjudged`` (the count) and ``markdown``."""
    import pandas as pd

    from harness.analysis.gate import load_gate_config, markdown_summary, run_gate

    def records(side: Any) -> list[RunRecord]:
        items = side if isinstance(side, (list, tuple)) else [side]
        return [r for item in items for r in (item if isinstance(item, Run) else load(item)).records]

    result = run_gate(records(baseline), records(candidate), load_gate_config(Path(config) if config else None))
    rows = [{"model": v.comparison.key[0], "variant": v.comparison.key[1], "format": v.comparison.key[2],
             "runtime": v.comparison.key[3], "target": v.comparison.key[4], "batch_size": v.comparison.key[5],
             "metric": v.comparison.metric, "base": v.comparison.base, "candidate": v.comparison.candidate,
             "ratio": v.comparison.ratio, "p_value": v.comparison.p_value, "threshold": v.threshold,
             "outcome": v.outcome, "why": v.reason, "not_judged": v.not_judged} for v in result.verdicts]
    frame = pd.DataFrame(rows)
    frame.attrs["failed"] = bool(result.failed)
    frame.attrs["exit_code"] = result.exit_code
    frame.attrs["unjudged"] = len(result.unjudged)
    frame.attrs["markdown"] = markdown_summary(result)
    return frame


@dataclass(frozen=True)
class Optimization:
    """What ``optimize`` found: ``card`` (the deployment card, as ``optimize.json``), ``choice`` (the chosen point, or
    None when the budget was not met), ``status`` ("met", "not met", "interrupted") and the search folder."""

    folder: Path
    card: dict
    status: str

    @property
    def choice(self) -> dict | None:
        return self.card.get("chosen")

    def trials(self) -> Any:
        """Every measured point of every step (screen and confirm), with the reason it was rejected."""
        import pandas as pd

        return pd.DataFrame(self.card.get("trials", []))

    @property
    def html(self) -> Path:
        return self.folder / "index.html"


def optimize(model: str | None = None, target: str | None = None, time_limit: str | float | None = None,
             out: str | Path | None = None, resume: bool = False, cache: str | Path | None = None,
             progress: bool = False, say: Any = None, **budget_and_search: Any) -> Optimization:
    """Search compressions and deployment settings for the variant of ``model`` that meets a budget on ``target``:
    ``min_speedup``, ``min_psnr``, ``min_labels``, ``max_p50_ms``, ``max_p90_ms``, ``max_memory_mb``,
    ``max_size_mb``, ``min_throughput``, ``batch``, ``formats``, ``knobs``, ``methods``, ``seed`` (as ``harness optimize`` and the
    project file's ``[optimize]`` table, which this call's arguments override). ``resume``: continue the search
    in ``out``."""
    from harness.run.optimize import run_optimize

    given = {"model": model, "target": target, "time_limit": time_limit, **budget_and_search}
    if resume:  # the saved search, with what this call changes (a longer time limit, another budget term)
        from harness.run.optimize import saved_table

        if out is None:
            raise HarnessInputError("resume: name the search folder (out=...)")
        table = saved_table(Path(out))
        table.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in given.items() if v is not None})
    else:
        table = _optimize_table(model, target, time_limit, budget_and_search)
    spec = _optimize_spec(table)
    result = run_optimize(spec, out=Path(out) if out else None, cache=Path(cache) if cache else None, resume=resume,
                          progress=progress, say=say or (lambda line: print(line, file=sys.stderr)))
    return Optimization(result.folder, result.card, result.status)


def _optimize_table(model: str | None, target: str | None, time_limit: Any, rest: dict) -> dict:
    """The project's [optimize] table overlaid with the given values (None = not given)."""
    from harness.config.project import current_project

    project = current_project()
    table = dict(project.optimize) if project else {}
    given = {"model": model, "target": target, "time_limit": time_limit, **rest}
    table.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in given.items() if v is not None})
    return table


def _optimize_spec(table: dict) -> Any:
    from harness.config.optimize import optimize_from_table
    from harness.config.project import current_project

    project = current_project()
    return optimize_from_table(project.source if project else "harness optimize", table)
