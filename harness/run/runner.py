"""Run a suite: build and export artifacts (cached), run each job in fresh worker processes (a latency
pass, then a memory pass), and append one RunRecord per job to the results store as it completes."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from harness import __version__
from harness.engine.context import git_commit
from harness.errors import HarnessInputError
from harness.prepare.external import describe
from harness.launch.local import LocalLauncher
from harness.config import paths
from harness.config.paths import PROJECT_ROOT
from harness.prepare.progress import latest as latest_progress
from harness.config.project import current_project
from harness.launch import interrupts
from harness.runtimes import runtime_class
from harness.launch import launcher_for
from harness.launch.base import launcher_class
from harness.protocol import PrepareRequest, WorkerRequest, WorkerResult, error_text
from harness.run.job import JobRun
from harness.results.store import ResultsStore
from harness.config.suite import Suite
from harness.config.targets import get_target
from harness.types import Artifact, Job, RunRecord, TargetProfile
from harness.zoo import MODELS, discover, discover_all, get_model

PREPARATION_FILE = "preparation.jsonl"
"""In a run folder: each model's preparation steps, seconds and peak memory each (``SuiteRunner._record_preparation``)."""


@dataclass
class RunSummary:
    results_path: Path
    statuses: dict[str, int] = field(default_factory=dict)
    exports_built: int = 0
    exports_reused: int = 0
    skipped_completed: int = 0

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status not in ("ok", "unsupported"))


@dataclass(frozen=True)
class PlannedJob:
    job: Job
    export_error: str = ""


class SuiteRunner:
    def __init__(
        self,
        suite: Suite,
        out_dir: Path,
        cache_dir: Path,
        models_dir: Path | list[Path] | None = None,
        targets_dir: Path | list[Path] | None = None,
        launcher: Any | None = None,
        progress: bool = True,
        resume: bool = False,
        external: tuple[Path, ...] = (),
        targets: list[TargetProfile] | None = None,
    ) -> None:
        """``models_dir`` / ``targets_dir``: where models and profiles are (default: the built-ins plus the current
        project's, ``harness.config.paths``); ``external``: artifact files the user brings (measured as they are, without
        a PyTorch reference); ``targets``: profiles to use instead of loading the suite's by name (e.g. a sweep's
        thread variants)."""
        self.suite = suite
        self.out_dir = out_dir
        self.launcher = launcher or LocalLauncher()
        self.progress = progress
        self.resume = resume
        self.models = self._select_models(models_dir)
        folders = targets_dir if targets_dir is not None else paths.targets_dirs()
        self.targets = targets if targets is not None else [get_target(folders, name) for name in suite.targets]
        self._model_contexts: dict[str, dict[str, Any]] = {}
        self.targets_by_name = {t.name: t for t in self.targets}
        self.cache_dir = cache_dir
        self._check_models()
        self.exports_built: list[str] = []
        self.exports_reused: list[str] = []
        self.store = ResultsStore(out_dir / "results.jsonl")
        # Validated up front: a broken file is a one-line input error before anything is measured.
        self.external = [describe(path, cache_dir, self.launcher, suite.settings.timeout_s) for path in external]
        self.commit = git_commit(PROJECT_ROOT) if paths.is_checkout() else ""  # an installed harness: its version
        project = current_project()
        self.project_context = {"project": str(project.source),
                                "project_commit": git_commit(project.root)} if project else {}
        self.launchers = {t.name: self._launcher_for(t) for t in self.targets}
        self.boards: dict[str, BoardState] = {}
        self.status: Any = lambda text: None
        """Shows what the harness is doing between jobs (set by ``run`` to the progress bar's status)."""
        self._between_models: Any = lambda: None
        self.on_model_done: Any = None
        """Called with the results path before each model after the first (``harness run`` rewrites the report)."""

    def _launcher_for(self, target: TargetProfile) -> Any:
        return launcher_for(target, runs_torch(target), self.launcher)

    def _model_context(self, model: str) -> dict[str, Any]:
        """Where the model comes from (its file or project config) and, for a user's checkpoint, which one."""
        if model not in self._model_contexts:
            from harness.hashing import file_sha256

            try:
                spec = get_model(model)
            except HarnessInputError:  # a user's own artifact file: no model behind it
                self._model_contexts[model] = {}
                return {}
            ctx: dict[str, Any] = {"model_source": spec.source}
            if spec.checkpoint is not None:
                ctx["checkpoint"] = spec.checkpoint.to_dict() | {"sha256": file_sha256(Path(spec.checkpoint.path))}
            self._model_contexts[model] = ctx
        return self._model_contexts[model]

    def _check_models(self) -> None:
        """Before anything is measured, a user's model that cannot run is an input error (``harness.prepare.dry_run``,
        in a child of its own): its factory, its declared inputs against ``forward``, one call at batch 1; a declared
        checkpoint that does not fit it. The built-in zoo's models are known to run."""
        from harness.prepare.dry_run import check_in_child
        from harness.zoo import is_builtin

        for name in self.models:
            spec = get_model(name)
            if is_builtin(spec.source) and spec.checkpoint is None:
                continue
            check_in_child(spec, self.suite.settings.prepare_timeout_s, self._decoder_source(spec), self.cache_dir)

    def _select_models(self, models_dir: Path | list[Path] | None) -> list[str]:
        available = discover(models_dir) if models_dir is not None else discover_all()
        for variant in self.suite.variants:
            unknown = [m for m in variant.models if m not in available]
            if unknown:
                raise HarnessInputError(f"{self.suite.source}: variant {variant.name!r} names unknown model(s) "
                                        f"{', '.join(unknown)} (known: {', '.join(available)})")
        if self.suite.models is None:
            return available
        for name in self.suite.models:
            if name not in available:
                where = f"{self.suite.source}: " if self.suite.source else ""
                raise HarnessInputError(f"{where}unknown model {name!r} (known: "
                                        f"{', '.join(sorted(available)) or 'none'})")
        return list(self.suite.models)

    # -- planning -----------------------------------------------------------------------------------
    def _runtimes_for(self, target: TargetProfile, fmt: str) -> list[str]:
        return [r for r in target.runtimes if fmt in runtime_class(r).formats]

    def _variant_formats(self, model: str) -> list[tuple[str, tuple[str, ...]]]:
        """(variant, formats it is measured in) for one model; variants limited to other models are left out."""
        from harness.compress import variant_formats

        out = [("fp32", self.suite.formats)]
        for v in self.suite.variants:
            if not v.applies_to(model):
                continue
            out.append((v.name, variant_formats(v, self.suite.formats)))
        return out

    def job_count(self) -> int:
        models = sum(
            len(self._runtimes_for(t, fmt)) for model in self.models for t in self.targets
            for _, formats in self._variant_formats(model) for fmt in formats
        ) * len(self.suite.batch_sizes)
        external = sum(len(self._runtimes_for(t, a.format)) for t in self.targets for a, _ in self.external)
        return models + external

    def plan(self) -> Iterator[PlannedJob]:
        """Yield jobs model by model; each model is built and exported in its own process first."""
        for i, model_name in enumerate(self.models):
            if i:
                self._between_models()  # the report so far, before the next model's preparation
            self.status(f"preparing {model_name}")
            prepared, faults = self._prepare(model_name)
            self.status("")
            yield from self.jobs_for(model_name, prepared, faults)
        yield from self.external_jobs()

    def _prepare(self, model_name: str) -> tuple[WorkerResult, dict[str, tuple[str, str]]]:
        """The model's prepare result, and the variants left out of it: variant → (status, error). The child runs
        under a memory cap and a time limit per variant step; a variant whose step it was stopped or died in is left
        out and the model prepared again without it (``harness.launch.preparing.prepare_isolating``)."""
        from harness.launch.local import prepare_memory_cap
        from harness.launch.preparing import prepare_isolating

        settings = self.suite.settings

        def launch(request: dict[str, Any], wait: Any) -> WorkerResult:
            return self.launcher.run(request, settings.prepare_timeout_s,
                                     memory_cap_bytes=prepare_memory_cap(settings.prepare_memory_mb),
                                     module="harness.prepare", on_wait=wait)

        def show(progress_path: Path) -> None:
            text = latest_progress(progress_path)
            self.status(f"preparing {model_name}" + (f": {text}" if text else ""))

        def record(attempt: int, status: str, progress_path: Path) -> None:
            self._record_preparation(model_name, attempt, status, progress_path)

        return prepare_isolating(launch, self.prepare_request(model_name), settings.variant_timeout_s, show, record,
                                 label=model_name)

    def _record_preparation(self, model: str, attempt: int, status: str, progress_path: Path) -> None:
        """Append the preparation's steps (``harness.launch.preparing.timeline``: seconds and peak memory each) to
        ``preparation.jsonl`` in the run folder: what a first report of a large model spent its time on."""
        from harness.launch.preparing import timeline

        steps = timeline(progress_path, time.time())
        if not steps:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / PREPARATION_FILE, "a", encoding="utf-8") as f:
            for step in steps:
                f.write(json.dumps({"model": model, "attempt": attempt, "status": status, **step}) + "\n")

    def prepare_request(self, model_name: str) -> PrepareRequest:
        """The request of the prepare child (``harness.prepare``) for one model (``progress_path`` and the
        variants left out are set per attempt: ``harness.launch.preparing.prepare_isolating``)."""
        spec = get_model(model_name)
        variants = [v for v in self.suite.variants if v.applies_to(model_name)]
        settings = self.suite.settings
        return PrepareRequest(
            model=model_name, source=spec.source, cache=str(self.cache_dir), formats=tuple(self.suite.formats),
            batch_sizes=tuple(self.suite.batch_sizes), tolerance=self.suite.export_tolerance,
            timeout_s=settings.timeout_s, variants=tuple(v.to_dict() for v in variants),
            samples=settings.fidelity_samples, loop_samples=settings.loop_samples,
            decoder_source=self._decoder_source(spec),
            prepare_memory_mb=settings.prepare_memory_mb,  # a build node's cap (harness.launch.cluster)
            variant_timeout_s=settings.variant_timeout_s,  # and its time limit per variant step
            layers=settings.profile_runs > 0)

    def jobs_for(self, model_name: str, prepared: WorkerResult,
                 faults: dict[str, tuple[str, str]] | None = None) -> Iterator[PlannedJob]:
        """The jobs of one model from its prepare result (carrying the failure when preparing failed), and those
        of the variants left out of it (``faults``: variant → (status, error); with those built on them)."""
        spec = get_model(model_name)
        if not prepared.ok:
            yield from self._unprepared_jobs(spec, prepared)
            return
        self.exports_built += prepared.extra["built"]
        self.exports_reused += prepared.extra["reused"]
        if faults:
            yield from self._left_out_jobs(spec, faults)
        for batch in self.suite.batch_sizes:
            entry = prepared.extra["batches"][str(batch)]
            io = entry["io"]
            for variant, formats in self._variant_formats(model_name):
                produced = entry["variants"].get(variant, {"expected_path": "", "artifacts": {}})
                for fmt in formats:
                    if fmt not in produced["artifacts"]:
                        continue
                    artifact = Artifact.from_dict(produced["artifacts"][fmt])
                    for target in self.targets:
                        for runtime in self._runtimes_for(target, fmt):
                            job = Job(artifact, runtime, target.name, self.suite.settings,
                                      io["inputs_path"], io["reference_path"], batch,
                                      expected_path=produced["expected_path"], work=produced.get("work"),
                                      layers_reference_path=io.get("layers_reference_path", ""),
                                      samples_path=io.get("samples_path", ""),
                                      samples_reference_path=io.get("samples_reference_path", ""),
                                      **self._loop(spec, io, entry.get("decoder"), fmt))
                            yield PlannedJob(job, artifact.error if artifact.status != "ok" else "")

    def external_jobs(self) -> Iterator[PlannedJob]:
        """The jobs of the artifact files the user brought."""
        for artifact, inputs_path in self.external:
            for target in self.targets:
                for runtime in self._runtimes_for(target, artifact.format):
                    yield PlannedJob(Job(artifact, runtime, target.name, self.suite.settings, inputs_path, "",
                                         artifact.batch_size or 1))

    @staticmethod
    def _decoder_source(spec: Any) -> str:
        """The model file of a sampler's decoder, when it is registered here ('' otherwise: prepare says so)."""
        name = spec.sampler.decoder if spec.sampler is not None else ""
        return get_model(name).source if name and name in MODELS.names() else ""

    @staticmethod
    def _loop(spec: Any, io: dict[str, Any], decoder: dict[str, Any] | None, fmt: str) -> dict[str, Any]:
        """A denoiser's sampling-loop fields of its jobs (none for a model without a sampler); its decoder's
        artifact in the job's format."""
        if spec.sampler is None or not io.get("loop_inputs_path"):
            return {}
        example = spec.make_inputs(1, spec.seed)
        loop = {"sampler": spec.sampler.to_dict(), "inputs": list(example),
                "time_dtype": str(example[spec.sampler.time_input].dtype)}
        if decoder:
            loop["decoder"] = {"input": decoder["input"], "artifact": decoder["artifacts"].get(fmt)}
        return {"sampler": loop,
                **{k: io.get(k, "") for k in ("loop_inputs_path", "loop_reference_path", "loop_samples_path",
                                              "loop_samples_reference_path")}}

    def _unprepared_jobs(self, spec: Any, prepared: WorkerResult | None,
                         only: dict[str, tuple[str, str]] | None = None) -> Iterator[PlannedJob]:
        """Every job of a model whose prepare step failed, crashed or hung, carrying that status; with ``only``,
        the jobs of those variants, each with its own (status, error)."""
        default = ((prepared.status, f"preparing {spec.name} {prepared.status}: {error_text(prepared)}")
                   if prepared is not None else ("failed", ""))
        for batch in self.suite.batch_sizes:
            for variant, formats in self._variant_formats(spec.name):
                if only is not None and variant not in only:
                    continue
                status, error = only[variant] if only is not None else default
                for fmt in formats:
                    placeholder = Artifact(id=f"unprepared-{spec.name}-{variant}-{fmt}-b{batch}", format=fmt,
                                           path="", bytes=0, model=spec.name, variant=variant, batch_size=batch,
                                           parent_id=None, recipe={}, status=status, error=error)
                    for target in self.targets:
                        for runtime in self._runtimes_for(target, fmt):
                            job = Job(placeholder, runtime, target.name, self.suite.settings, "", "", batch)
                            yield PlannedJob(job, error)

    def _left_out_jobs(self, spec: Any, faults: dict[str, tuple[str, str]]) -> Iterator[PlannedJob]:
        """The jobs of the variants a prepare fault left out, and of those built on them."""
        from harness.launch.preparing import built_on, failure_for

        variants = [v for v in self.suite.variants if v.applies_to(spec.name)]
        causes = built_on(faults, variants)
        yield from self._unprepared_jobs(spec, None, {v: failure_for(v, c, faults) for v, c in causes.items()})

    # -- running ------------------------------------------------------------------------------------
    def begin(self) -> tuple[RunSummary, set[str], Any]:
        """Before the first job: the store's torn last record cut, the jobs already done (``--resume``), the progress
        bar (``status`` shows on it)."""
        from tqdm import tqdm

        summary = RunSummary(self.store.path)
        torn = self.store.repair()
        if torn:
            print(f"{self.store.path}: removed a torn last record ({torn} bytes) left by an interrupted run",
                  file=sys.stderr)
        done = self.store.completed_keys() if self.resume else set()
        bar = tqdm(total=self.job_count(), unit="job", file=sys.stderr, disable=not self.progress,
                   dynamic_ncols=True)
        self.status = lambda text: bar.set_description_str(text[:90]) if text else None
        return summary, done, bar

    def run(self) -> RunSummary:
        summary, done, bar = self.begin()
        self._between_models = lambda: self._model_done(bar)
        try:
            with interrupts.watching():
                self._run_planned(summary, done, bar)
        finally:
            bar.close()
            self.status, self._between_models = (lambda text: None), (lambda: None)
            for launcher in self.launchers.values():
                if hasattr(launcher, "close"):
                    launcher.close()
        summary.exports_built = len(self.exports_built)
        summary.exports_reused = len(self.exports_reused)
        return summary

    def _run_planned(self, summary: "RunSummary", done: set[str], bar: Any) -> None:
        """Measure each planned job and append its record; a Ctrl-C whose KeyboardInterrupt was swallowed (it landed
        in a finalizer) still stops the suite here, after the record of the job it interrupted."""
        for planned in self.plan():
            interrupts.check()  # a Ctrl-C during the model's preparation
            job = planned.job
            label = f"{job.artifact.model} {job.artifact.format}/{job.runtime} b{job.batch_size} @{job.target}"
            bar.set_description_str(label[:60])
            if job.key in done:
                summary.skipped_completed += 1
                bar.update(1)
                continue
            try:
                record = self._run_job(job, self.targets_by_name[job.target], planned.export_error)
            except Exception as exc:  # a harness bug or an input nobody foresaw: this job fails, the suite goes on
                record = self._harness_error(job, exc)
            self.keep(record, summary, bar)
            interrupts.check()

    def keep(self, record: RunRecord, summary: "RunSummary", bar: Any) -> None:
        """Append a job's record to the store (the one writer), count it, say what went wrong."""
        label = f"{record.model} {record.format}/{record.runtime} b{record.batch_size} @{record.target}"
        self.store.append(record)
        summary.statuses[record.status] = summary.statuses.get(record.status, 0) + 1
        if record.status not in ("ok",):
            first_line = record.error.splitlines()[0] if record.error else ""
            bar.write(f"{record.status}: {label}: {first_line}", file=sys.stderr)
        for warning in record.context.get("warnings", []):
            bar.write(f"warning: {label}: {warning}", file=sys.stderr)
        bar.update(1)

    def _harness_error(self, job: Job, exc: Exception) -> RunRecord:
        """The record of a job whose measurement raised in the harness itself (not in a worker)."""
        import traceback

        tail = "".join(traceback.format_exception(exc)[-3:]).strip()
        return RunRecord(
            job_key=job.key, model=job.artifact.model, variant=job.artifact.variant, format=job.artifact.format,
            runtime=job.runtime, target=job.target, batch_size=job.batch_size, artifact_id=job.artifact.id,
            artifact_bytes=job.artifact.bytes, status="failed",
            error=f"harness error while measuring: {type(exc).__name__}: {exc} (please report it)\n{tail}",
            measurements=(), context={"commit": self.commit, "harness_version": __version__,
                                      "suite": self.suite.name},
            started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), duration_s=0.0)

    def _model_done(self, bar: Any) -> None:
        """After a model's last job: the report so far (a first report while later models still prepare)."""
        if self.on_model_done is None or not self.store.path.is_file():
            return
        try:
            self.on_model_done(self.store.path)
        except Exception as exc:  # the interim report is a courtesy; the final one reports the error
            bar.write(f"warning: interim report not written: {type(exc).__name__}: {exc}", file=sys.stderr)

    # -- boards -------------------------------------------------------------------------------------
    def _board(self, target: TargetProfile) -> "BoardState":
        """Check a remote board once, before its first job: reachable, python packages, runtimes."""
        if target.name not in self.boards:
            self.boards[target.name] = self.check_board(target, self.launchers[target.name])
        return self.boards[target.name]

    @staticmethod
    def check_board(target: TargetProfile, launcher: Any) -> "BoardState":
        """A remote board's state from a probe through ``launcher``: reachable, python packages, runtimes (none for
        a reach that needs no check: this machine)."""
        if not launcher_class(target.reach).probe_first:
            state = BoardState()
        else:
            probe = launcher.run(WorkerRequest("probe"), 120)
            if probe.status == "unreachable":
                state = BoardState(down=f"board {target.name} unreachable: {probe.error}")
            elif not probe.ok:
                state = BoardState(down=f"board {target.name} check failed ({probe.status}): {error_text(probe)}",
                                   down_status="unsupported")
            else:
                ctx = dict(probe.context)
                python = getattr(target.ssh or target.emulated, "python", "") or getattr(launcher, "python", "")
                where = f"python {ctx.get('python')} on {ctx.get('machine')}, {python}"
                state = BoardState(context=ctx, missing_runtimes={
                    name: f"board {target.name}: {why} ({where})" for name, why in probe.extra["runtimes"].items() if why})
                if probe.extra["missing_packages"]:
                    state.down = (f"board {target.name}: the worker needs python packages "
                                  f"{', '.join(probe.extra['missing_packages'])} ({where})")
                    state.down_status = "unsupported"
                if ctx.get("machine") != target.arch:
                    print(f"warning: target {target.name} says arch {target.arch}, the board reports "
                          f"{ctx.get('machine')}: fix 'arch' in {target.source}", file=sys.stderr)
        return state

    def _run_job(self, job: Job, target: TargetProfile, export_error: str) -> RunRecord:
        """One job as named steps (``harness.run.job``)."""
        board = self._board(target) if not export_error else BoardState()
        return JobRun(job, target, self.launchers[target.name], board, self.suite, self.out_dir, self.cache_dir,
                      self.job_context(job)).run(export_error)

    def job_context(self, job: Job) -> dict[str, Any]:
        """What every record of this run starts its context with (commit, suite, project, model source)."""
        return {"commit": self.commit, "harness_version": __version__, "suite": self.suite.name} \
            | self.project_context | self._model_context(job.artifact.model)


def runs_torch(target: TargetProfile) -> bool:
    """Whether the target runs PyTorch eager (a board's worker bundle then carries the model code)."""
    return any("torch" in runtime_class(r).formats for r in target.runtimes)


@dataclass
class BoardState:
    """What the harness knows about a target during a run."""

    down: str = ""
    """Why the target's remaining jobs are not run ('' while it is usable)."""
    down_status: str = "unreachable"
    missing_runtimes: dict[str, str] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    unreachable_in_a_row: int = 0
    ceilings: dict[str, Any] | None = None
    """The target's peak GFLOP/s and bandwidth for the roofline, measured once per run (``harness.profiling``)."""
    ceilings_error: str = ""

    def note(self, status: str, error: str) -> None:
        """After two unreachable results in a row, give up on the board for the rest of the run."""
        self.unreachable_in_a_row = self.unreachable_in_a_row + 1 if status == "unreachable" else 0
        if self.unreachable_in_a_row >= 2:
            self.down = f"board unreachable since an earlier job of this run: {error}"


def new_run_dir(reports: Path, suite_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return reports / f"{suite_name}-{stamp}"


def latest_run_dir(reports: Path, suite_name: str) -> Path:
    runs = sorted(p for p in reports.glob(f"{suite_name}-*") if (p / "results.jsonl").is_file())
    if not runs:
        raise HarnessInputError(f"--resume: no earlier run of suite {suite_name!r} in {reports}")
    return runs[-1]
