"""``harness optimize``: search compressions and deployment settings for the variant that meets a budget.

The search is a loop of steps, each a normal measured run (fresh workers, the artifact cache, fp32 beside every
candidate) through the sweep's measuring step (``harness.run.sweep.measure_rounds``):

1. **baseline**: fp32 in every format searched, short passes: the reference, whether the model is a denoiser (its
   fidelity is judged over the sampling loop), and a clear error when the model cannot run at all.
2. **screen** (multi-fidelity's cheap rung): the knobs (``harness.run.knobs``) propose candidates from what has
   been measured; up to ``SCREEN_BATCH`` are measured in one short run (few timed runs, ``SCREEN_SETTINGS``:
   64 fidelity samples, a short layers pass so a point that loses fidelity says where). Each point (a candidate in
   one format and runtime) is judged at the screen rung (``harness.analysis.budget``): rejected only when it
   misses by more than the screen's margins.
3. **confirm**: the points that may still meet the budget (best screen speed-up first, ``CONFIRM_TOP`` at a time)
   are measured with the full settings in ``CONFIRM_REPEATS`` separate runs beside fp32, and judged with
   confidence: the speed-up's CI lower bound over the lower of the runs' fp32 ONNX Runtime p50s.

It stops when a point is confirmed (the fastest confirmed point is chosen; its file is copied to
``<out>/chosen/``), when no knob proposes anything new, or at the time limit (a timer interrupts the running step;
what it measured is kept and judged). Every step is a line of ``trials.jsonl``; ``--resume`` replays them, so the
knobs propose the same candidates and nothing measured is measured again (a step cut short continues in its own
run folder). The card (``optimize.json``, ``index.html``) holds the choice, the budget and every trial with the
reason it was rejected.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from harness.analysis.budget import baseline_ms, fidelity_failed, judge
from harness.config.optimize import OptimizeSpec, optimize_from_table
from harness.errors import HarnessInputError
from harness.launch import interrupts
from harness.run.knobs import Candidate, knobs as load_knobs
from harness.types import CompressionSpec

SCHEMA_VERSION = 1
SCREEN_SETTINGS = dict(min_runs=10, min_duration_s=0.2, max_duration_s=5.0, warmup_min_runs=2, warmup_max_runs=50,
                       warmup_max_s=0.5, memory_runs=1, profile_runs=2, fidelity_samples=64, loop_samples=8,
                       rounds=1, energy_min_s=0.1, start_runs=0)
"""The screen's short passes: a latency good to ~10–20 %, fidelity over 64 samples (8 sampling loops), layers."""
BASELINE_SETTINGS = {**SCREEN_SETTINGS, "profile_runs": 0}
SCREEN_BATCH = 8
CONFIRM_TOP = 2
CONFIRM_REPEATS = 2
MIN_STEP_S = 10.0
"""No step is started with less time than this left."""
TRIALS_FILE, CARD_FILE, SPEC_FILE = "trials.jsonl", "optimize.json", "spec.json"
ORT = ("onnx", "onnxruntime")


@dataclass
class SearchState:
    """What the search has measured (the steps of ``trials.jsonl``), as the knobs read it."""

    spec: OptimizeSpec
    target_threads: int = 0
    loop: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def budget(self) -> dict[str, float]:
        return self.spec.budget.terms()

    @property
    def formats(self) -> tuple[str, ...]:
        return self.spec.formats

    @property
    def methods(self) -> tuple[str, ...]:
        return self.spec.methods

    @property
    def batch(self) -> int:
        return self.spec.batch

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def time_limit_s(self) -> float:
        return self.spec.time_limit_s

    def allowed(self, method: str) -> bool:
        return not self.spec.methods or method in self.spec.methods

    def points(self, rung: str = "screen") -> list[dict[str, Any]]:
        return [p for step in self.steps if step["rung"] == rung for p in step["points"]]

    def measured(self, rung: str) -> set[str]:
        """Candidates measured at ``rung``; of a step the time limit cut short, only those it reached."""
        return {c["key"] for step in self.steps if step["rung"] == rung for c in step["candidates"]
                if not step.get("cut_short") or any(p["candidate"] == c["key"] for p in step["points"])}

    def spent_s(self) -> float:
        return sum(step["seconds"] for step in self.steps)


@dataclass(frozen=True)
class OptimizeResult:
    folder: Path
    card: dict[str, Any]
    status: str
    """"met", "not met" (the search ended: nothing more to try or the time limit), "interrupted" (Ctrl-C)."""


def run_optimize(spec: OptimizeSpec | None, out: Path | None = None, cache: Path | None = None, resume: bool = False,
                 progress: bool = True, say: Callable[[str], None] = print) -> OptimizeResult:
    """Search until the budget is met with confidence, nothing is left to try, or the time limit; write the card.
    ``resume``: continue the search in ``out`` (its spec unless ``spec`` is given)."""
    from harness.config import paths
    from harness.config.targets import get_target
    from harness.run.runner import new_run_dir

    if resume:
        if out is None:
            raise HarnessInputError("--resume: name the search folder")
        spec = spec or optimize_from_table(out / SPEC_FILE, saved_table(out))
    if spec is None:
        raise HarnessInputError("harness optimize needs a model and a target")
    knobs = load_knobs(spec.knobs)
    target = get_target(paths.targets_dirs(), spec.target)
    budget, from_fit = spec.budget.within(target.fit)  # a variant that does not fit the device is no answer
    spec = dataclasses.replace(spec, budget=budget)
    from harness.zoo import discover_all

    known = discover_all()
    if spec.model not in known:
        raise HarnessInputError(f"unknown model {spec.model!r} (known: {', '.join(sorted(known)) or 'none'})")
    out = out or new_run_dir(paths.reports_dir(), f"optimize-{spec.model}")
    out.mkdir(parents=True, exist_ok=True)
    (out / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=1))
    state = SearchState(spec, target_threads=target.threads)
    if resume and (out / TRIALS_FILE).is_file():
        state.steps = [_step_from_json(json.loads(line)) for line in (out / TRIALS_FILE).read_text().splitlines()
                       if line.strip()]
        state.loop = any(step.get("loop") for step in state.steps)
    elif (out / TRIALS_FILE).exists():
        (out / TRIALS_FILE).unlink()
    search = _Search(state, target, out, cache, progress, say)
    say(f"optimize {spec.model} on {spec.target} b{spec.batch}: {spec.budget.describe()}; time limit "
        f"{_clock(spec.time_limit_s)}" + (f", {_clock(state.spent_s())} spent before" if state.steps else "")
        + (f" ({', '.join(from_fit)}: the target's [fit])" if from_fit else "")
        + f"; knobs: {', '.join(k.name for k in knobs)} → {out}")
    status = search.run(knobs)
    card = write_card(out, state, status, search.chosen)
    return OptimizeResult(out, card, status)


class _Search:
    def __init__(self, state: SearchState, target: Any, out: Path, cache: Path | None, progress: bool,
                 say: Callable[[str], None]) -> None:
        self.state, self.target, self.out, self.cache, self.progress, self.say = state, target, out, cache, progress, say
        self.chosen: dict[str, Any] | None = None
        self.deadline = time.monotonic() + max(0.0, state.spec.time_limit_s - state.spent_s())
        self.timed_out = False

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self, knobs: Sequence[Any]) -> str:
        timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), self._time_up)
        timer.daemon = True
        timer.start()
        try:
            self.chosen = _choice(self.state)
            if not any(step["rung"] == "baseline" for step in self.state.steps):
                self._step("baseline", [])
            while self.chosen is None:
                if self.deadline - time.monotonic() < MIN_STEP_S:
                    self.timed_out = True
                    break
                pending = _confirmable(self.state)
                if pending:
                    self._step("confirm", pending)
                    self.chosen = _choice(self.state)
                    continue
                fresh = self._proposals(knobs)
                if not fresh:
                    break
                self._step("screen", fresh)
        except KeyboardInterrupt:
            if not self.timed_out:
                return "interrupted"
        finally:
            timer.cancel()
            if self.timed_out:
                _drain()
        return "met" if self.chosen else "not met"

    def _time_up(self) -> None:
        self.timed_out = True
        interrupts.request()

    def _proposals(self, knobs: Sequence[Any]) -> list[Candidate]:
        done, fresh, keys = self.state.measured("screen"), [], set()
        for knob in knobs:
            for candidate in knob.propose(self.state):
                if candidate.key not in done and candidate.key not in keys:
                    keys.add(candidate.key)
                    fresh.append(candidate)
        if not fresh:
            return []
        first = fresh[0].deploy  # one deployment per run: the target profile is the run's
        return [c for c in fresh if c.deploy == first][:SCREEN_BATCH]

    # -- one step ----------------------------------------------------------------------------------------------
    def _step(self, rung: str, work: Sequence[Any]) -> None:
        from harness.config.suite import suite_from_table

        state, spec = self.state, self.state.spec
        index = 1 + sum(1 for step in state.steps if step["rung"] == rung)
        name = f"{rung}-{index}"
        if rung == "confirm":
            candidates = list({p["candidate"]: _candidate_of(p) for p in work}.values())
            formats = sorted({p["format"] for p in work} | {ORT[0]})
            settings, repeats = {"profile_runs": 0, "start_runs": 0}, CONFIRM_REPEATS  # where fidelity breaks: the screen's
        else:
            candidates, formats = list(work), sorted(set(spec.formats) | {ORT[0]})
            settings, repeats = (BASELINE_SETTINGS if rung == "baseline" else SCREEN_SETTINGS), 1
        remaining = max(MIN_STEP_S, self.deadline - time.monotonic())
        settings = {**settings, "timeout_s": min(300.0, remaining), "prepare_timeout_s": min(1800.0, remaining)}
        deploy = candidates[0].deploy if candidates else ()
        batch = int(dict(deploy).get("batch", spec.batch))  # a batch is the suite's, the rest the target profile's
        suite = suite_from_table(Path(f"harness optimize ({name})"), {
            "name": f"optimize-{name}", "models": [spec.model], "targets": [spec.target], "formats": formats,
            "batch_sizes": [batch], "export_tolerance": 1e-4, "settings": settings})
        suite = dataclasses.replace(suite, variants=_variants(candidates))
        profile = _profile_changes(deploy)
        targets = [self.target] + ([_deployed(self.target, profile)] if profile else [])
        what = ", ".join(c.key for c in candidates) or "fp32"
        self.say(f"[{_clock(self._elapsed())}] {name}: {what}")
        started = time.monotonic()
        from harness.run.sweep import measure_rounds

        rows, results, cut_short = [], [], False
        try:
            rows, results = measure_rounds(suite, self.out / name, repeats, targets, cache=self.cache,
                                           progress=self.progress, resume=True)
        except KeyboardInterrupt:
            if not self.timed_out:
                raise
            rows, results, cut_short = *_partial(self.out / name, repeats), True
            self.say(f"[{_clock(self._elapsed())}] time limit: {name} cut short; judging what it measured")
        step = {"step": name, "rung": rung, "seconds": round(time.monotonic() - started, 2),
                "candidates": [c.to_dict() for c in candidates], "folder": name, "cut_short": cut_short}
        step["points"] = self._judge(rung, candidates, rows, results, targets)
        if rung == "baseline":
            self._check_baseline(rows)
        step["loop"] = state.loop
        state.steps.append(_step_from_json(json.loads(json.dumps(_step_to_json(step), default=str))))
        with (self.out / TRIALS_FILE).open("a") as fh:
            fh.write(json.dumps(_step_to_json(step), default=str) + "\n")
        self.say(self._progress_line(name))

    def _elapsed(self) -> float:
        return self.state.spec.time_limit_s - max(0.0, self.deadline - time.monotonic())

    def _judge(self, rung: str, candidates: Sequence[Candidate], rows: list[dict[str, Any]], results: Sequence[Path],
               targets: Sequence[Any]) -> list[dict[str, Any]]:
        base_target = targets[0].name
        fp32 = next((r for r in rows if r["variant"] == "fp32" and (r["format"], r["runtime"]) == ORT
                     and r["target"] == base_target and r.get("runs_ok")), None)
        if rung == "baseline":
            self.state.loop = bool(fp32 and fp32.get("loop_latency_ms"))
        loop = self.state.loop
        reference = baseline_ms(fp32, loop) if fp32 else None
        reference_disturbed = (fp32 or {}).get("loop_disturbed" if loop else "disturbed") or ""
        quiet = None  # a busy moment slowed this screen's fp32: a quiet point's speed-up would read too high
        if rung == "screen" and reference is not None and reference_disturbed:
            quiet = self._quiet_baseline_ms(loop, fp32.get("batch_size"))
            if quiet is not None and quiet < reference:
                self.say(f"screen: fp32's reference pass was disturbed ({reference:.3g} ms: {reference_disturbed}); "
                         f"the step's quiet points read against the baseline step's quiet fp32 ({quiet:.3g} ms)")
            else:
                quiet = None
        layers, training = _layer_fidelity(results), _training(results)
        budget = self.state.budget
        points = []
        for candidate in candidates or [Candidate("baseline")]:
            where = targets[-1].name if _profile_changes(candidate.deploy) else base_target
            for row in rows:
                if row["variant"] != candidate.variant or row["target"] != where:
                    continue
                row_quiet = not row.get("loop_disturbed" if loop else "disturbed")
                # a point slowed by the same load keeps the step's own (slowed) fp32: the ratio stays fair
                from_quiet = quiet is not None and row_quiet
                verdict = judge(row, quiet if from_quiet else reference, budget, loop,
                                "screen" if rung == "baseline" else rung, "" if from_quiet else reference_disturbed)
                layer = layers.get((row["variant"], row["format"], row["runtime"], row["target"]), {})
                points.append({
                    "candidate": candidate.key, "knob": candidate.knob, "variant": row["variant"],
                    "format": row["format"], "runtime": row["runtime"], "target": row["target"],
                    "chain": candidate.chain, "deploy": candidate.deploy, "row": _plain(row),
                    "layer": layer, "training": training.get(row["variant"], {}),
                    "verdict": {"met": verdict.met, "reasons": list(verdict.reasons), "speedup": verdict.speedup,
                                "speedup_low": verdict.speedup_low, "speedup_high": verdict.speedup_high,
                                "psnr_db": verdict.psnr_db, "labels": verdict.labels,
                                "fidelity_failed": fidelity_failed(verdict), **verdict.figures,
                                **({"reference_from": "the baseline step's quiet fp32"} if from_quiet else {})},
                    "reason": _reason(candidate, row, verdict, layer),
                })
        return points

    def _quiet_baseline_ms(self, loop: bool, batch: Any) -> float | None:
        """The baseline step's fp32 ONNX Runtime reference at ``batch`` where its pass was quiet (None otherwise):
        what a screen step reads its speed-ups against when its own fp32 pass was disturbed (a screen's disturbed
        passes are not refused, so a slowed fp32 would make every candidate look faster)."""
        for point in self.state.points("baseline"):
            row = point.get("row") or {}
            if (point["variant"], point["format"], point["runtime"]) != ("fp32", *ORT) \
                    or row.get("batch_size") != batch or row.get("loop_disturbed" if loop else "disturbed"):
                continue
            return baseline_ms(row, loop)
        return None

    def _check_baseline(self, rows: list[dict[str, Any]]) -> None:
        """A model whose fp32 reference cannot be measured ends the search with its error."""
        budget = self.state.budget
        if self.timed_out:
            return  # the time limit cut the baseline short: the card says so, not a false error
        ort = next((r for r in rows if r["variant"] == "fp32" and (r["format"], r["runtime"]) == ORT), None)
        if ort is None or not ort.get("runs_ok"):
            if "min_speedup" in budget:
                error = (ort or {}).get("error") or "no job ran"
                raise HarnessInputError(f"{self.state.spec.model}: fp32 ONNX Runtime, the speed-up's reference, "
                                        f"did not run: {str(error).splitlines()[0][:200]}")
            return
        labels_key = "loop_label_agreement" if self.state.loop else "label_agreement"
        if "min_labels" in budget and ort.get(labels_key) is None:
            raise HarnessInputError(f"{self.state.spec.model}: --min-labels: no label agreement is measured for this "
                                    f"model (a digits classifier reads only 8×8 digits generators); drop min_labels")

    def _progress_line(self, name: str) -> str:
        best = _best(self.state)
        what = "none yet" if best is None else (
            f"{best['variant']} {best['format']}/{best['runtime']}"
            + "".join(f" @{k}={v}" for k, v in best["deploy"])
            + f" {best['verdict']['speedup']:.2f}× at {_db(best['verdict']['psnr_db'])}"
            + (" (confirmed)" if best["rung"] == "confirm" else " (screen)"))
        screened = len(self.state.measured("screen"))
        return f"[{_clock(self._elapsed())} of {_clock(self.state.spec.time_limit_s)}] {name} done; " \
               f"{screened} candidates screened; best feasible so far: {what}"


# -- what the steps say ---------------------------------------------------------------------------------------
def _confirmable(state: SearchState) -> list[dict[str, Any]]:
    """Screen points that may still meet the budget and were not confirmed yet, best speed-up first."""
    confirmed = {(p["candidate"], p["format"], p["runtime"]) for p in state.points("confirm")}
    tried = state.measured("confirm")
    found = [p for p in state.points("screen") if p["verdict"]["met"] and p["candidate"] not in tried
             and (p["candidate"], p["format"], p["runtime"]) not in confirmed]
    found.sort(key=lambda p: _faster(p, state.budget))
    keys: list[str] = []
    for p in found:
        if p["candidate"] not in keys:
            keys.append(p["candidate"])
    top = set(keys[:CONFIRM_TOP])
    return [p for p in found if p["candidate"] in top and p["deploy"] == found[0]["deploy"]] if found else []


def _choice(state: SearchState) -> dict[str, Any] | None:
    """The fastest confirmed point that met the budget (smaller file on a tie), or None."""
    met = [dict(p, rung="confirm") for p in state.points("confirm") if p["verdict"]["met"]]
    met.sort(key=lambda p: (_faster(p, state.budget), p["verdict"].get("size_mb") or 0.0))
    return met[0] if met else None


def _faster(point: Mapping[str, Any], budget: Mapping[str, float]) -> float:
    """A sort key, fastest first: the most images per second for a throughput budget (a larger batch may win),
    else the lowest latency at the search's batch."""
    verdict = point["verdict"]
    if "min_throughput" in budget:
        return -(verdict.get("throughput") or 0.0)
    return verdict.get("latency_ms") or float("inf")


def _best(state: SearchState) -> dict[str, Any] | None:
    """The best point so far: the chosen one, else the fastest that passed its rung."""
    chosen = _choice(state)
    if chosen:
        return chosen
    passed = [dict(p, rung="screen") for p in state.points("screen") if p["verdict"]["met"]
              and p["variant"] != "fp32"]
    passed.sort(key=lambda p: -(p["verdict"].get("throughput") or 0.0) if "min_throughput" in state.budget
                else -(p["verdict"]["speedup"] or 0.0))
    return passed[0] if passed else None


def _reason(candidate: Candidate, row: Mapping[str, Any], verdict: Any, layer: Mapping[str, Any]) -> str:
    """Why a point was rejected, in words a user can act on; "" when it passed."""
    if verdict.met:
        return ""
    text = "; ".join(verdict.reasons)
    floor = verdict.figures.get("min_psnr")
    under = first_under(layer, floor) if floor is not None else None
    if fidelity_failed(verdict) and under:
        text += f"; falls under {floor:g} dB at {under[0]}, {under[1]:.1f} dB"
    elif fidelity_failed(verdict) and layer.get("first_break"):
        text += f"; first break at {layer['first_break']}, {layer['first_break_psnr']:.1f} dB"
    elif fidelity_failed(verdict) and layer.get("worst"):
        text += f"; lowest layer {layer['worst']}, {layer['worst_psnr']:.1f} dB"
    return text


def first_under(layer: Mapping[str, Any], floor: float) -> tuple[str, float] | None:
    """The first layer (in execution order) whose PSNR against fp32 falls under ``floor`` dB, with its PSNR."""
    return next(((name, psnr) for name, psnr in layer.get("layers", []) if psnr < floor), None)


def _layer_fidelity(results: Sequence[Path]) -> dict[tuple, dict[str, Any]]:
    """(variant, format, runtime, target) → the layers pass's first break and worst layer, from the run records."""
    from harness.results.store import read_records

    found: dict[tuple, dict[str, Any]] = {}
    for path in results:
        for record in read_records(path):
            layers = record.context.get("layer_fidelity")
            if not layers:
                continue
            psnr = {row["layer"]: row["psnr"] for row in layers.get("layers", [])}
            entry = {"first_break": layers.get("first_break"), "worst": layers.get("worst"),
                     "layers": [[row["layer"], round(row["psnr"], 2)] for row in layers.get("layers", [])]}
            entry["first_break_psnr"] = psnr.get(entry["first_break"]) if entry["first_break"] else None
            entry["worst_psnr"] = psnr.get(entry["worst"]) if entry["worst"] else None
            found.setdefault((record.variant, record.format, record.runtime, record.target), entry)
    return found


def _training(results: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """variant → how its student's training went (``steps_done``, and ``stopped`` when ``max_train_s`` ended it),
    from the artifacts the runs' requests name."""
    found: dict[str, dict[str, Any]] = {}
    for path in results:
        requests = path.with_name("requests.jsonl")
        if not requests.is_file():
            continue
        for line in requests.read_text().splitlines():
            try:
                artifact = json.loads(line).get("request", {}).get("artifact", {})
            except ValueError:
                continue
            trained = (artifact.get("compression") or {}).get("distillation") or {}
            if trained and artifact.get("variant"):
                found.setdefault(artifact["variant"], {k: trained[k] for k in ("steps_done", "stopped", "train_seconds")
                                                       if k in trained})
    return found


def _partial(folder: Path, repeats: int) -> tuple[list[dict[str, Any]], list[Path]]:
    """The rows of a step cut short by the time limit: what its runs' results files hold."""
    from harness.analysis.sweep_fronts import aggregate
    from harness.report.compression import compression_frame
    from harness.report.tables import summary_frame
    from harness.results.store import read_records

    rounds, files = [], []
    for i in range(repeats):
        path = folder / f"run-{i + 1}" / "results.jsonl"
        if path.is_file() and path.stat().st_size:
            rounds.append(compression_frame(summary_frame(read_records(path))).to_dict("records"))
            files.append(path)
    return aggregate(rounds), files


def _drain() -> None:
    """Forget a time-limit interrupt that arrived after the last step (it must not stop the card's writing)."""
    try:
        interrupts.check()
    except KeyboardInterrupt:
        pass


def _variants(candidates: Sequence[Candidate]) -> tuple[CompressionSpec, ...]:
    out: dict[str, CompressionSpec] = {}
    for candidate in candidates:
        for step in candidate.chain:
            out.setdefault(step.name, step)
    return tuple(out.values())


def _profile_changes(deploy: Sequence[tuple[str, Any]]) -> tuple[tuple[str, Any], ...]:
    """The changes a candidate makes to the target profile (a batch size is the run's, not the profile's)."""
    return tuple((k, v) for k, v in deploy if k != "batch")


def _deployed(target: Any, deploy: Sequence[tuple[str, Any]]) -> Any:
    changes = dict(deploy)
    label = "".join(f"@{k}={v}" for k, v in deploy)
    return dataclasses.replace(target, name=f"{target.name}{label}", **changes)


def _candidate_of(point: Mapping[str, Any]) -> Candidate:
    return Candidate(point["knob"], tuple(point["chain"]), tuple(point["deploy"]))


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    from harness.run.sweep import _finite

    return _finite(dict(row))


def _step_to_json(step: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(step)
    out["points"] = [dict(p, chain=[s.to_dict() for s in p["chain"]], deploy=[list(d) for d in p["deploy"]])
                     for p in step["points"]]
    return out


def _step_from_json(step: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(step)
    out["points"] = [dict(p, chain=tuple(CompressionSpec.from_dict(s) for s in p["chain"]),
                          deploy=tuple((k, v) for k, v in p["deploy"])) for p in step.get("points", [])]
    return out


def saved_table(out: Path) -> dict[str, Any]:
    """The spec a search folder was started with, as an ``[optimize]`` table (``--resume``)."""
    path = out / SPEC_FILE
    if not path.is_file():
        raise HarnessInputError(f"--resume: {out} holds no search ({SPEC_FILE} not found)")
    try:
        return _spec_table(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise HarnessInputError(f"--resume: {path} cannot be read ({exc})") from None


def _spec_table(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A saved spec (``spec.json``) as an ``[optimize]`` table."""
    table = {k: v for k, v in saved.items() if k not in ("budget", "time_limit_s")}
    table.update(saved.get("budget", {}))
    table["time_limit"] = saved["time_limit_s"]
    table["formats"], table["knobs"], table["methods"] = (list(saved.get(k, [])) for k in ("formats", "knobs",
                                                                                          "methods"))
    return table


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _db(value: Any) -> str:
    return "∞ dB" if value is None or value == float("inf") else f"{value:.1f} dB"


# -- the card ------------------------------------------------------------------------------------------------
def write_card(out: Path, state: SearchState, status: str, chosen: Mapping[str, Any] | None) -> dict[str, Any]:
    """optimize.json, trials.csv and index.html in ``out``; the chosen artifact copied to ``out/chosen/``."""
    from harness.analysis.sweep_fronts import fronts
    from harness.report.card import write_card_html

    spec = state.spec
    trials = []
    for step in state.steps:
        for p in step["points"]:
            trials.append({"step": step["step"], "rung": step["rung"], "candidate": p["candidate"],
                           "knob": p["knob"], "variant": p["variant"], "format": p["format"],
                           "runtime": p["runtime"], "target": p["target"], "met": p["verdict"]["met"],
                           "speedup": p["verdict"]["speedup"], "speedup_low": p["verdict"]["speedup_low"],
                           "latency_ms": p["verdict"]["latency_ms"], "psnr_db": p["verdict"]["psnr_db"],
                           "labels": p["verdict"]["labels"], "size_mb": p["verdict"]["size_mb"],
                           "peak_memory_mb": p["verdict"]["peak_memory_mb"],
                           "batch": p["verdict"].get("batch"), "throughput": p["verdict"].get("throughput"),
                           "reason": p["reason"],
                           "first_break": (p.get("layer") or {}).get("first_break")})
    rows = [dict(p["row"], variant=p["candidate"])
            for p in state.points("confirm") + state.points("screen") + state.points("baseline")
            if p["row"].get("latency_ms") is not None]
    unique: dict[tuple, dict[str, Any]] = {}
    for row in rows:  # a point confirmed counts with its confirmed figures, not its screen's
        unique.setdefault((row["variant"], row["format"], row["runtime"], row["target"]), row)
    rows = list(unique.values())
    for row in rows:  # the front is drawn over the budget's own fidelity (the loop's for a denoiser)
        if state.loop:
            row["psnr_db"], row["latency_ms"] = row.get("loop_psnr_db"), row.get("loop_latency_ms")
            row["latency_low_ms"], row["latency_high_ms"] = row.get("loop_latency_low_ms"), row.get(
                "loop_latency_high_ms")
        if row.get("psnr_db") == "inf":
            row["psnr_db"] = float("inf")
    front = fronts([r for r in rows if r.get("latency_ms") is not None], {})
    artifact = _copy_chosen(out, chosen) if chosen else None
    card = {
        "schema_version": SCHEMA_VERSION, "status": status, "model": spec.model, "target": spec.target,
        "batch": spec.batch, "budget": spec.budget.terms(), "budget_text": spec.budget.describe(),
        "loop": state.loop, "time_limit_s": spec.time_limit_s, "time_spent_s": round(state.spent_s(), 1),
        "spec": spec.to_dict(),
        "chosen": _chosen_card(chosen, artifact) if chosen else None,
        "front": front[0]["front"] if front else [],
        "nearest_miss": _nearest_miss(state) if not chosen else None,
        "steps": [{"step": s["step"], "rung": s["rung"], "seconds": s["seconds"], "folder": s["folder"],
                   "candidates": [c["key"] for c in s["candidates"]]} for s in state.steps],
        "trials": trials,
    }
    from harness.run.sweep import _finite

    card = _finite(card)
    (out / CARD_FILE).write_text(json.dumps(card, indent=1, default=str))
    import pandas as pd

    from harness.report.tables import write_csv

    write_csv(pd.DataFrame(trials), out / "trials.csv")
    write_card_html(card, out / "index.html")
    return card


def _chosen_card(chosen: Mapping[str, Any], artifact: str | None) -> dict[str, Any]:
    verdict = chosen["verdict"]
    runs = chosen["row"].get("runs_ok")
    return {"runs": runs, "note": "" if runs is None or runs >= CONFIRM_REPEATS else
            f"confirmed on {runs} of {CONFIRM_REPEATS} runs: the time limit cut the confirm step short",
            "candidate": chosen["candidate"], "variant": chosen["variant"], "format": chosen["format"],
            "runtime": chosen["runtime"], "target": chosen["target"], "deploy": dict(chosen["deploy"]),
            "recipe": [s.to_dict() for s in chosen["chain"]], "artifact": artifact,
            "speedup": verdict["speedup"], "speedup_ci": [verdict["speedup_low"], verdict["speedup_high"]],
            "latency_ms": verdict["latency_ms"], "latency_ci_ms": [verdict["latency_low_ms"], verdict["latency_high_ms"]],
            "baseline_ms": verdict["baseline_ms"], "p90_ms": verdict["p90_ms"], "psnr_db": verdict["psnr_db"],
            "labels": verdict["labels"], "size_mb": verdict["size_mb"], "peak_memory_mb": verdict["peak_memory_mb"],
            "batch": verdict.get("batch"), "throughput": verdict.get("throughput"),
            "throughput_ci_low": verdict.get("throughput_low")}


def _nearest_miss(state: SearchState) -> dict[str, Any] | None:
    """When nothing met the budget: the point that came closest (``knobs._score``: the lowest of speed-up / bar and
    fidelity / floor), judged by its most thorough measurement (confirmed, else screened), and why it missed."""
    from harness.run.knobs import _score

    confirmed = {(p["candidate"], p["format"], p["runtime"], p["target"]) for p in state.points("confirm")}
    points = state.points("confirm") + [p for p in state.points("screen")
                                        if (p["candidate"], p["format"], p["runtime"], p["target"]) not in confirmed]
    points = [p for p in points if p["variant"] != "fp32" and p["verdict"]["speedup"] is not None]
    if not points:
        return None
    pick = max(points, key=lambda p: _score(p, state.budget))
    rung = "confirm" if (pick["candidate"], pick["format"], pick["runtime"], pick["target"]) in confirmed else "screen"
    reason = pick["reason"] or "passed the screen; not confirmed before the search ended"
    return {"candidate": pick["candidate"], "format": pick["format"], "runtime": pick["runtime"], "rung": rung,
            "speedup": pick["verdict"]["speedup"], "psnr_db": pick["verdict"]["psnr_db"],
            "labels": pick["verdict"]["labels"], "reason": reason}


def _copy_chosen(out: Path, chosen: Mapping[str, Any]) -> str | None:
    """Copy the chosen job's artifact file (from the confirm run's requests) to ``out/chosen/``."""
    def newest_first(path: Path) -> tuple[int, int]:
        step, run = path.parts[-3], path.parts[-2]
        return int(step.rpartition("-")[2] or 0), int(run.rpartition("-")[2] or 0)

    batch = chosen["verdict"].get("batch")
    for requests in sorted(out.glob("confirm-*/run-*/requests.jsonl"), key=newest_first, reverse=True):
        for line in requests.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            artifact = entry.get("request", {}).get("artifact", {})
            if (artifact.get("variant") == chosen["variant"] and entry.get("target") == chosen["target"]
                    and entry.get("request", {}).get("runtime") == chosen["runtime"]
                    and artifact.get("format") == chosen["format"] and Path(artifact.get("path", "")).is_file()
                    and (batch is None or artifact.get("batch_size") in (None, batch))):
                source = Path(artifact["path"])
                folder = out / "chosen"
                folder.mkdir(exist_ok=True)
                shutil.copy2(source, folder / source.name)
                return str(Path("chosen") / source.name)
    return None
