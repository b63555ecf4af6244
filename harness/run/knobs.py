"""The knobs ``harness optimize`` turns: each proposes candidates (a chain of compressions, and deployment changes
to the target profile) from what the search has measured so far. Registered once in ``SEARCH_KNOBS``; a plugin
adds one with ``@SEARCH_KNOBS.register("name")`` on a class with ``name``, ``description``, ``priority`` and
``propose(state) -> list[Candidate]``. A knob must be deterministic in the state (a resumed search asks again
and must get the same candidates), and may propose a candidate again: the search measures each key once.

Built in:
- ``quantize``: every int8 path the search's formats reach (ONNX Runtime dynamic and static, TFLite dynamic-range
  and full-integer, PT2E); fp16 and weight-only variants only when the budget limits size or memory (on a CPU they
  buy no speed).
- ``mixed-precision``: a static int8 point (ONNX Runtime's or PT2E's) that lost fidelity goes again with the layer
  where its fidelity broke kept float (the layers pass's first layer under the PSNR floor, else its first break,
  else its worst layer), and what feeds it, one more layer per round (at most ``MAX_FLOAT_LAYERS``):
  ``keep_float_layers`` found by measurement. ExecuTorch has no layers pass: a PT2E point there reads the layers of
  the same int8 step measured in another format (TFLite, else ONNX Runtime's static int8 of the same parent).
- ``distill``: the student's width (``amount``, continuous): 0.5 and 0.75 first, then what Optuna's Gaussian-process
  sampler asks given the widths measured so far (``_score``: the lowest of speed-up / bar and fidelity / floor, a
  single peak where they cross); a denoiser's student trains on its sampling trajectories.
- ``train-longer``: the best student that missed only on fidelity, and whose training ``max_train_s`` cut short,
  trained again with three times the time.
- ``compose``: a distilled student that kept fidelity with room to spare, quantized to int8.
- ``threads``: the most promising points again at one intra-op thread (``threads`` on the target profile).
- ``litert-xnnpack``: the most promising TFLite points again with LiteRT's built-in kernels only
  (``[litert] xnnpack = false`` on the target profile).
- ``ort-options``: the two most promising ONNX Runtime points again with graph optimisation "extended" (without
  the CPU layout transforms "all" adds) and with the "parallel" execution mode (``[onnxruntime]`` of the profile).
- ``batch``: only when the budget asks for throughput: fp32 and the two most promising points again at larger
  batches (``BATCHES``; the speed-up is then against fp32 ONNX Runtime at that batch, measured in the same run).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

from harness.registry import SEARCH_KNOBS
from harness.types import CompressionSpec

MAX_FLOAT_LAYERS = 4
"""Mixed precision keeps at most this many layers float before it gives the point up."""
DISTILL_STEP = 0.05
"""Distillation widths are searched on this grid (amount = share of channels removed)."""
STUDENT_STEPS, STUDENT_LR = 3000, 0.003
"""The students' training (the recipe of the compression study in docs/measured/compression.md), cut at a tenth of the time limit
(``max_train_s``, at most 300 s): on a slow machine the time, not the step count, bounds it."""
LONGER, MAX_TRAIN_S = 3.0, 900.0
"""``train-longer``: the new training budget is this multiple of the old one, capped."""
BATCHES = (2, 4, 8)
"""The batch sizes the ``batch`` knob tries (those above the search's own)."""
COMPOSE_MARGIN_DB = 3.0
"""A distilled student is quantized on top only when its PSNR clears the floor by this much (int8 costs some)."""


@dataclass(frozen=True)
class Candidate:
    """One thing to measure: ``chain`` of compressions (each applied to the one before; () = the fp32 model) and
    ``deploy``: changes to the target profile (e.g. ``(("threads", 1),)``)."""

    knob: str
    chain: tuple[CompressionSpec, ...] = ()
    deploy: tuple[tuple[str, Any], ...] = ()

    @property
    def variant(self) -> str:
        return self.chain[-1].name if self.chain else "fp32"

    @property
    def key(self) -> str:
        where = "".join(f" @{k}={v}" for k, v in self.deploy)
        return " → ".join(s.name for s in self.chain) + where if self.chain else f"fp32{where}"

    def to_dict(self) -> dict[str, Any]:
        return {"knob": self.knob, "key": self.key, "chain": [s.to_dict() for s in self.chain],
                "deploy": [list(d) for d in self.deploy]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Candidate":
        return cls(data["knob"], tuple(CompressionSpec.from_dict(s) for s in data.get("chain", ())),
                   tuple((k, v) for k, v in data.get("deploy", ())))


class SearchView(Protocol):
    """What a knob may read of the search (``harness.run.optimize.SearchState``)."""

    budget: Mapping[str, float]
    formats: tuple[str, ...]
    methods: tuple[str, ...]
    loop: bool
    seed: int
    batch: int
    target_threads: int
    time_limit_s: float

    def points(self, rung: str = "screen") -> list[Mapping[str, Any]]:
        """Measured points: {"candidate", "knob", "variant", "format", "runtime", "target", "chain", "deploy",
        "verdict": {"met", "reasons", "speedup", "psnr_db", "labels", "fidelity_failed"}, "layer": {...}}."""

    def allowed(self, method: str) -> bool:
        """Whether the user's ``methods`` let this compressor be used."""


def spec(method: str, given: Mapping[str, Any] | None = None, after: str = "",
         named: Sequence[str] | None = None) -> CompressionSpec:
    """A compression step named after its method and parameters (``named``: only these; the rest are the same
    for every candidate of one search). The name is the search's key for it."""
    from harness.compress import resolve_params
    from harness.run.sweep import point_name

    given = dict(given or {})
    shown = {k: v for k, v in given.items() if named is None or k in named}
    name = point_name(method, {k: ("+".join(v) if isinstance(v, (list, tuple)) else v) for k, v in shown.items()})
    if after:
        name = f"{name} after {after}"
    return CompressionSpec(name=name, method=method, params=resolve_params(method, given), after=after)


def _stage_reached(method: str, formats: Sequence[str]) -> bool:
    from harness.compress import compressor

    stage = compressor(method).stage
    if stage == "export":  # PT2E is quantized while exported: to TFLite or ExecuTorch
        return bool({"tflite", "executorch"} & set(formats))
    return stage == "torch" or stage in formats


def _size_binds(state: SearchView) -> bool:
    """Whether the budget's size or memory cap binds: it has one, and fp32 (the baseline, once measured) is over it
    in some format. A generous cap — the target's ``[fit]`` on a small model — adds no size-only candidates."""
    terms = {"max_size_mb": "size ", "max_memory_mb": "peak memory "}
    caps = [words for term, words in terms.items() if term in state.budget]
    if not caps:
        return False
    baseline = state.points("baseline")
    return not baseline or any(reason.startswith(tuple(caps)) for point in baseline
                               for reason in point["verdict"].get("reasons", ()))


@SEARCH_KNOBS.register("quantize")
class Quantize:
    name = "quantize"
    description = ("int8 in every format searched: ONNX Runtime dynamic / static, TFLite dynamic-range / full "
                   "integer, PT2E; fp16 and weight-only when the budget's size or memory cap binds (fp32 is over it)")
    priority = 10
    SPEED = ("quant-dynamic", "quant-static", "tflite-dynamic", "tflite-int8", "pt2e-int8")
    SIZE = ("fp16", "tflite-fp16", "tflite-weight-only")

    def propose(self, state: SearchView) -> list[Candidate]:
        methods = list(self.SPEED)
        if _size_binds(state):
            methods += self.SIZE
        return [Candidate(self.name, (spec(m),)) for m in methods
                if state.allowed(m) and _stage_reached(m, state.formats)]


@SEARCH_KNOBS.register("mixed-precision")
class MixedPrecision:
    name = "mixed-precision"
    description = ("static int8 (ONNX Runtime, PT2E) with the layers where fidelity broke kept float, found from "
                   f"the layers pass (one more per round, at most {MAX_FLOAT_LAYERS})")
    priority = 20
    METHODS = ("quant-static", "pt2e-int8")

    def propose(self, state: SearchView) -> list[Candidate]:
        out = []
        screened = state.points("screen")
        for point in screened:
            chain = point["chain"]
            last = chain[-1] if chain else None
            if last is None or last.method not in self.METHODS or not point["verdict"].get("fidelity_failed"):
                continue
            kept = list(last.params.get("keep_float_layers", []))
            layer = point.get("layer") or _layers_elsewhere(point, screened)
            floor = state.budget.get("min_psnr")
            under = next((name for name, psnr in layer.get("layers", []) if floor is not None and psnr < floor
                          and name not in kept), None)
            culprit = under or layer.get("first_break") or layer.get("worst")
            if not culprit or culprit in kept or len(kept) >= MAX_FLOAT_LAYERS:
                continue
            given = {k: v for k, v in last.params.items() if k == "keep_float_before" and v}
            if last.method == "pt2e-int8":  # litert-torch's quantizer takes no node filter: XNNPACK's for TFLite too
                given["quantizer"] = "xnnpack"
            step = spec(last.method, {**given, "keep_float_layers": [*kept, culprit]}, after=last.after)
            out.append(Candidate(self.name, (*chain[:-1], step)))
        return out


def _layers_elsewhere(point: Mapping[str, Any], screened: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """For a point without its own layers pass (ExecuTorch): the layers of the same chain measured in another
    format, else of ONNX Runtime's static int8 of the same parent with the same layers kept float (the layers int8
    breaks are the model's, not the runtime's); {} when neither was measured."""
    chain = point["chain"]
    kept = list(chain[-1].params.get("keep_float_layers", []))
    same = [p for p in screened if p["chain"] == chain and p.get("layer")]
    static = [p for p in screened if p.get("layer") and len(p["chain"]) == len(chain)
              and p["chain"][:-1] == chain[:-1] and p["chain"][-1].method == "quant-static"
              and list(p["chain"][-1].params.get("keep_float_layers", [])) == kept]
    return next((p["layer"] for p in same + static), {})


@SEARCH_KNOBS.register("distill")
class Distill:
    name = "distill"
    description = ("distillation into a thinner student: widths 0.5 and 0.75, then the width Optuna's Gaussian "
                   "process asks from the widths measured so far (trajectories for a denoiser)")
    priority = 30
    LOW, HIGH, FIRST = 0.25, 0.9, (0.5, 0.75)

    def propose(self, state: SearchView) -> list[Candidate]:
        if not state.allowed("distill"):
            return []
        measured: dict[float, float] = {}
        for point in state.points("screen"):
            chain = point["chain"]
            if point["knob"] == self.name and len(chain) == 1 and not point["deploy"]:
                amount = chain[0].params["amount"]
                measured[amount] = max(_score(point, state.budget), measured.get(amount, -1e9))
        if measured and max(measured.values()) <= -100.0:
            return []  # no student could be built or run: another width will not help
        if not measured:
            return [Candidate(self.name, (self.student(amount, state),)) for amount in self.FIRST]
        amount = _ask_width(measured, state.seed, self.LOW, self.HIGH)
        return [] if amount is None else [Candidate(self.name, (self.student(amount, state),))]

    @staticmethod
    def student(amount: float, state: SearchView) -> CompressionSpec:
        given: dict[str, Any] = {"amount": round(amount, 4), "steps": STUDENT_STEPS, "lr": STUDENT_LR,
                                 "max_train_s": round(min(300.0, max(5.0, 0.1 * state.time_limit_s)), 1)}
        if state.loop:
            given["data"] = "trajectories"
        return spec("distill", given, named=("amount",))


def _score(point: Mapping[str, Any], budget: Mapping[str, float]) -> float:
    """How close a width comes to the budget: the lowest of speed-up / bar, PSNR / floor and labels / floor (each
    term the budget has; ≥ 1 = met). A wider cut raises the first and lowers the others, so the score rises to a
    single peak where they cross: a shape a Gaussian process finds in few trials. Without a speed bar: the
    speed-up, when fidelity holds. -100 for a point that did not run."""
    verdict = point["verdict"]
    speedup, psnr, labels = verdict.get("speedup"), verdict.get("psnr_db"), verdict.get("labels")
    if speedup is None:
        return -100.0
    terms = []
    if budget.get("min_psnr"):
        terms.append(min(float(psnr), 1e3) / budget["min_psnr"] if psnr is not None else 0.0)
    if budget.get("min_labels"):
        terms.append(float(labels) / budget["min_labels"] if labels is not None else 0.0)
    if budget.get("min_speedup"):
        return min([float(speedup) / budget["min_speedup"], *terms])
    return float(speedup) if not verdict.get("fidelity_failed") else min(terms or [0.0]) - 1.0


def _ask_width(measured: Mapping[float, float], seed: int, low: float, high: float) -> float | None:
    """The next width Optuna's Gaussian-process sampler asks for, given the widths measured and their scores;
    None when it asks only for widths already measured (the grid of ``DISTILL_STEP`` is exhausted where it looks)."""
    import optuna
    from optuna.distributions import FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dist = FloatDistribution(low, high, step=DISTILL_STEP)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.GPSampler(seed=seed, n_startup_trials=2))
    for amount, score in sorted(measured.items()):
        study.add_trial(optuna.trial.create_trial(params={"amount": amount}, distributions={"amount": dist},
                                                  value=score))
    for _ in range(8):
        trial = study.ask({"amount": dist})
        amount = round(trial.params["amount"], 4)
        if amount not in measured:
            return amount
        study.tell(trial, measured[amount])
    return _between(measured, low, high)


def _between(measured: Mapping[float, float], low: float, high: float) -> float | None:
    """When the sampler keeps asking for measured widths (its optimum sits on one): the grid width halfway between
    the best-scoring width and its better-scoring neighbour (the side the peak lies on), else the other side; None
    when both gaps are closed."""
    widths = sorted(measured)
    best = max(widths, key=lambda w: measured[w])
    i = widths.index(best)
    sides = [widths[i - 1] if i > 0 else low, widths[i + 1] if i + 1 < len(widths) else high]
    sides.sort(key=lambda w: -measured.get(w, -1e9))
    for side in sides:
        middle = round(round((best + side) / 2 / DISTILL_STEP) * DISTILL_STEP, 4)
        if min(best, side) < middle < max(best, side) and middle not in measured and low <= middle <= high:
            return middle
    return None


@SEARCH_KNOBS.register("train-longer")
class TrainLonger:
    name = "train-longer"
    description = (f"a student whose training the time budget cut short and that missed only on fidelity, trained "
                   f"again with {LONGER}× the time (at most {MAX_TRAIN_S:g} s)")
    priority = 35

    def propose(self, state: SearchView) -> list[Candidate]:
        out, seen = [], set()
        points = sorted(state.points("confirm") + state.points("screen"), key=lambda p: -_score(p, state.budget))
        for point in points:
            chain, verdict = point["chain"], point["verdict"]
            if len(chain) != 1 or chain[0].method != "distill" or point["deploy"] or chain[0].name in seen:
                continue
            seen.add(chain[0].name)
            reasons = verdict.get("reasons") or []
            only_fidelity = verdict.get("fidelity_failed") and not any("speed-up" in r or "p50" in r or "p90" in r
                                                                      for r in reasons)
            budget_s = float(chain[0].params.get("max_train_s") or 0)
            if not (point.get("training") or {}).get("stopped") or not only_fidelity or budget_s >= MAX_TRAIN_S:
                continue
            given = {k: v for k, v in chain[0].params.items() if k in ("amount", "steps", "lr", "data")}
            given["max_train_s"] = round(min(MAX_TRAIN_S, budget_s * LONGER), 1)
            out.append(Candidate(self.name, (spec("distill", given, named=("amount", "max_train_s")),)))
            if len(out) == 1:
                break
        return out


@SEARCH_KNOBS.register("compose")
class Compose:
    name = "compose"
    description = f"a distilled student that keeps fidelity with {COMPOSE_MARGIN_DB:g} dB to spare, then int8"
    priority = 40

    def propose(self, state: SearchView) -> list[Candidate]:
        floor = state.budget.get("min_psnr")
        out, seen = [], set()
        for point in state.points("screen"):
            chain, verdict = point["chain"], point["verdict"]
            if len(chain) != 1 or chain[0].method != "distill" or point["deploy"] or chain[0].name in seen:
                continue
            psnr = verdict.get("psnr_db")
            if verdict.get("met") or psnr is None or (floor is not None and psnr < floor + COMPOSE_MARGIN_DB):
                continue
            seen.add(chain[0].name)
            for method in ("quant-dynamic", "quant-static", "tflite-dynamic"):
                if state.allowed(method) and _stage_reached(method, state.formats):
                    out.append(Candidate(self.name, (chain[0], spec(method, after=chain[0].name))))
        return out


def _promising(state: SearchView, formats: Sequence[str] | None = None, count: int = 2) -> list[Mapping[str, Any]]:
    """The ``count`` fastest compressed screen points (in ``formats``) that kept fidelity, one per candidate."""
    points = [p for p in state.points("screen") if not p["deploy"] and not p["verdict"].get("fidelity_failed")
              and p["verdict"].get("speedup") is not None and p["variant"] != "fp32"
              and (formats is None or p["format"] in formats)]
    points.sort(key=lambda p: -p["verdict"]["speedup"])
    out, seen = [], set()
    for point in points:
        if point["candidate"] not in seen:
            seen.add(point["candidate"])
            out.append(point)
    return out[:count]


def _again(knob: str, points: Sequence[Mapping[str, Any]], *deploys: tuple[tuple[str, Any], ...]) -> list[Candidate]:
    """``points``' compressions measured again under each deployment change (target-profile settings)."""
    return [Candidate(knob, tuple(p["chain"]), deploy) for deploy in deploys for p in points]


@SEARCH_KNOBS.register("threads")
class Threads:
    name = "threads"
    description = "the two most promising points again at one intra-op thread"
    priority = 50

    def propose(self, state: SearchView) -> list[Candidate]:
        if state.target_threads == 1:
            return []
        return _again(self.name, _promising(state), (("threads", 1),))


@SEARCH_KNOBS.register("litert-xnnpack")
class LiteRTDelegate:
    name = "litert-xnnpack"
    description = ("the two most promising TFLite points again without LiteRT's default XNNPACK delegate (its "
                   "built-in kernels can be faster, e.g. for transposed convolutions)")
    priority = 50

    def propose(self, state: SearchView) -> list[Candidate]:
        if "tflite" not in state.formats:
            return []
        return _again(self.name, _promising(state, ("tflite",)), (("litert_xnnpack", False),))


@SEARCH_KNOBS.register("ort-options")
class OrtOptions:
    name = "ort-options"
    description = ("the two most promising ONNX Runtime points again with graph optimisation 'extended' and with "
                   "the 'parallel' execution mode")
    priority = 50

    def propose(self, state: SearchView) -> list[Candidate]:
        if "onnx" not in state.formats:
            return []
        return _again(self.name, _promising(state, ("onnx",)), (("onnx_graph_optimization", "extended"),),
                      (("onnx_execution_mode", "parallel"),))


@SEARCH_KNOBS.register("batch")
class Batch:
    name = "batch"
    description = ("only for a throughput budget: fp32 and the two most promising points again at batches "
                   f"{', '.join(map(str, BATCHES))}")
    priority = 40

    def propose(self, state: SearchView) -> list[Candidate]:
        if "min_throughput" not in state.budget:
            return []
        chains = [()] + [tuple(p["chain"]) for p in _promising(state)]
        return [Candidate(self.name, chain, (("batch", size),)) for size in BATCHES if size > state.batch
                for chain in chains]


def knobs(names: Sequence[str] = ()) -> list[Any]:
    """The knobs to turn (every registered one by default), cheapest first."""
    chosen = [SEARCH_KNOBS.get(n)() for n in (names or SEARCH_KNOBS.names())]
    return sorted(chosen, key=lambda k: (getattr(k, "priority", 100), k.name))
