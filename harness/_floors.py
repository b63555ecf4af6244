"""The floors of the package, declared once. A module imports only its own floor and those below
(``tests/test_architecture.py`` checks every import against this table), a board receives floors 0 and 1
(``harness.launch.ssh.WORKER_SIDE`` is derived from it), and the documentation's map of the code is generated
from it (``docs/hooks/reference.py``)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Floor:
    number: int
    name: str
    modules: tuple[str, ...]
    """Module prefixes: a module belongs to the floor of its longest matching prefix."""
    runs_in: str
    holds: str


FLOORS: tuple[Floor, ...] = (
    Floor(0, "floor", ("harness", "harness.types", "harness.errors", "harness.stats", "harness.hashing",
                       "harness.capture", "harness.registry", "harness.protocol", "harness.pyfile", "harness.plugins",
                       "harness.diffusion", "harness.sampling", "harness.rounds", "harness._floors"),
          "everywhere",
          "frozen dataclasses, pure statistics, the one registry per extension kind, the typed versioned worker "
          "protocol (`WorkerRequest` / `WorkerResult`, `serve` / `parse_result`), diffusion samplers in numpy "
          "(`diffusion`; `sampling` is its old name, kept for model files), this table (`_floors`)"),
    Floor(1, "worker side", ("harness.engine", "harness.runtimes", "harness.energy", "harness.profiling",
                             "harness.worker"),
          "every worker: local, on a board (the worker bundle), emulated",
          "the timing loop (`engine/measure`), whether the machine was quiet and cool (`engine/quiet`), a denoiser's "
          "whole sampling loop as one inference (`engine/sampling_loop`), memory pass, device timers, CPU state, run "
          "context; one adapter per runtime (load / infer / sync); energy probes; per-op profilers (`OP_PROFILERS`), "
          "the op-family map, the machine's measured ceilings; the worker's modes"),
    Floor(2, "config, results", ("harness.config", "harness.results"), "host",
          "suites, target profiles, the user's project file, the `[cluster]` and `[optimize]` tables, paths (strict "
          "TOML, one-line errors); the append-only store and the one validating reader/writer of records, folders of "
          "runs read as a history (`results/runs`)"),
    Floor(3, "analysis, launch", ("harness.analysis", "harness.launch"), "host, CI, lab nodes",
          "pure functions: the metric catalogue (`analysis/metrics`), compare, gate, Pareto, sweep fronts, "
          "whether a point meets a budget (`analysis/budget`), fidelity, roofline arithmetic, change points and "
          "history, disturbed passes; launchers, one contract (`launch/base`) registered by reach: local process, SSH "
          "board, emulated rootfs; lockstep pairs, Ctrl-C "
          "handling, the prepare child under its memory cap and per-variant time limit (`launch/preparing`), what "
          "runs on a Ray node (`launch/cluster`)"),
    Floor(4, "prepare", ("harness.prepare", "harness.compress", "harness.exporters", "harness.zoo", "harness.training",
                       "harness.digits", "harness.model_helpers"),
          "the prepare child (`python -m harness.prepare`)",
          "building and training generators, declared models and checkpoints, compressing, exporting (ONNX, TFLite, "
          "ExecuTorch), channel and attention-head pruning, the content-addressed artifact cache and the identity of "
          "a model's code in it (`prepare/identity`), the check of a user's model before anything runs "
          "(`prepare/dry_run`), FLOPs and bytes per inference (`prepare/work`); and the model-file API (`zoo`, "
          "`model_helpers`, `training`, `digits`: what a model file imports)"),
    Floor(5, "report", ("harness.report",), "host",
          "CSV, HTML, plots, where the time goes (`report/profile`), the deployment card (`report/card`), the lab's "
          "lanes, the history page, sample images, pytest-benchmark JSON"),
    Floor(6, "run", ("harness.run",), "host",
          "planning a suite (`run/runner`), one job as named steps (`run/job`), the same suite across a Ray lab "
          "(`run/lab`: lanes, file transport, node checks, build fan-out, scheduling), A/B sessions, sweeps, "
          "`harness optimize`'s search (`run/optimize`) and its knobs (`run/knobs`)"),
    Floor(7, "entry points", ("harness.cli", "harness.api", "harness.pytest_plugin", "harness.__main__"), "host",
          "thin: parse, call, print; the Python API returns pandas"),
)

WORKER_FLOORS = (0, 1)
"""What a board receives (the worker bundle)."""
NOT_ON_BOARDS = ("harness.hashing", "harness._floors")
"""Floor-0 modules a worker never imports: the artifact hashing of the host, and this table."""


def floor_of(module: str) -> int:
    """The floor of a module (its longest matching prefix); -1 when no floor holds it."""
    best = (-1, -1)
    for floor in FLOORS:
        for prefix in floor.modules:
            if module == prefix or module.startswith(prefix + "."):
                best = max(best, (len(prefix), floor.number))
    return best[1]


def worker_side() -> tuple[str, ...]:
    """The paths inside the ``harness`` package that a board receives: floors ``WORKER_FLOORS``' modules (a folder
    for a package, ``name.py`` for a module), ``__init__.py`` for the package itself."""
    out = []
    for floor in FLOORS:
        if floor.number not in WORKER_FLOORS:
            continue
        for module in floor.modules:
            if module in NOT_ON_BOARDS:
                continue
            out.append("__init__.py" if module == "harness" else _path(module))
    return tuple(out)


def _path(module: str) -> str:
    from importlib.util import find_spec

    spec = find_spec(module)
    relative = module.removeprefix("harness.").replace(".", "/")
    return f"{relative}/" if spec is not None and spec.submodule_search_locations is not None else f"{relative}.py"
