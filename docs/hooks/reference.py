"""MkDocs hook: the reference pages, generated from the code at build time (never edited by hand, never stale):
every command's --help, the metric catalogue, the registered compressors with their parameters, the search knobs,
the run settings with their defaults and docstrings, every configuration file's keys from the schemas its reader
checks, the results format, the worker protocol, the registries, and the test slices."""
from __future__ import annotations

import dataclasses
import inspect
import io
import contextlib
from typing import Any, Mapping

from mkdocs.structure.files import File


def _cli() -> str:
    from harness.cli import _parser

    parser = _parser()
    out = ["# Commands", "", "Every `harness` command, as `--help` prints it.", ""]
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, command in sub.choices.items():
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            command.print_help()
        out += [f"## harness {name}", "", "```text", text.getvalue().rstrip(), "```", ""]
    return "\n".join(out)


def _metrics() -> str:
    from harness.analysis.metrics import CATALOGUE

    out = ["# Metrics", "", "The metric catalogue (`harness/analysis/metrics.py`): what compare, the gate, the summary "
           "table and the report read. The gate's default threshold is a fraction of the base value for a relative "
           "change, in the metric's unit for an absolute one; – means reported, never gated unless a gate file sets "
           "one.", "", "| metric | label | unit | better | change | test | gate threshold | summary column |",
           "|---|---|---|---|---|---|---|---|"]
    for m in CATALOGUE:
        column = f"`{m.summary_column}`" if m.summary_column else "–"
        threshold = "–" if m.threshold is None else f"{m.threshold:g}"
        out.append(f"| `{m.name}` | {m.label} | {m.unit} | {m.better} | {m.change} | {m.test} | {threshold} | "
                   f"{column} |")
    return "\n".join(out) + "\n"


def _compressors() -> str:
    from harness.compress import compressor
    from harness.registry import COMPRESSORS

    out = ["# Compressors", "", "Registered in `COMPRESSORS` (`harness list compressors`); a suite's `[[variants]]` "
           "name one with `method` and set its parameters.", ""]
    for name in COMPRESSORS.names():
        comp = compressor(name)
        out += [f"## `{name}`", "", f"{comp.description} (works on: {comp.stage}).", ""]
        params = dict(getattr(comp, "params", {}))
        if params:
            out += ["| parameter | default |", "|---|---|"] + [f"| `{k}` | `{v!r}` |" for k, v in params.items()]
        doc = inspect.getdoc(type(comp)) or ""
        out += ["", doc, ""] if doc else [""]
    return "\n".join(out)


def _knobs() -> str:
    from harness.registry import SEARCH_KNOBS
    from harness.run import knobs as module

    out = ["# Search knobs", "", "What `harness optimize` turns (`SEARCH_KNOBS`, `harness optimize --list-knobs`), "
           "cheapest first.", "", inspect.getdoc(module) or "", "", "| knob | priority | proposes |", "|---|---|---|"]
    for name in SEARCH_KNOBS.names():
        knob = SEARCH_KNOBS.get(name)
        out.append(f"| `{name}` | {getattr(knob, 'priority', '')} | {knob.description} |")
    return "\n".join(out) + "\n"


def _settings() -> str:
    from harness.config.optimize import Budget
    from harness.types import RunSettings

    def table(cls: type) -> list[str]:
        docs = _field_docs(cls)
        rows = ["| key | default | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else "–"
            rows.append(f"| `{f.name}` | `{default!r}` | {docs.get(f.name, '')} |")
        return rows

    return "\n".join(["# Settings", "", "## `[settings]` of a suite", "", inspect.getdoc(RunSettings) or "", "",
                      *table(RunSettings), "", "## Budget terms of `[optimize]` and `harness optimize`", "",
                      inspect.getdoc(Budget) or "", "", *table(Budget), ""])


def _field_docs(cls: type) -> dict[str, str]:
    """A dataclass field's docstring (the string literal after it in the class body), on one line."""
    import ast
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    found = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr) \
                and isinstance(getattr(after, "value", None), ast.Constant) and isinstance(after.value.value, str):
            found[node.target.id] = " ".join(after.value.value.split()).replace("|", "\\|")
    return found


def _type_name(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "list": "array",
             "dict": "table"}
    return " or ".join(dict.fromkeys(names.get(k.__name__, k.__name__) for k in kinds))


def _keys(schema: Mapping[str, Any], docs: Mapping[str, str] | None = None) -> list[str]:
    docs = docs or {}
    rows = ["| key | type | meaning |", "|---|---|---|"]
    rows += [f"| `{key}` | {_type_name(kind)} | {docs.get(key, '')} |" for key, kind in schema.items()]
    return rows + [""]


def _files() -> str:
    from harness.analysis.gate import GATE_SCHEMA, GateConfig
    from harness.config import cluster, optimize, project, suite, targets
    from harness.config.cluster import ClusterSettings
    from harness.prepare import declared
    from harness.types import CompressionSpec, EmulatedSettings, FitBudget, SshSettings, TargetProfile

    target_docs = _field_docs(TargetProfile)
    out = ["# Configuration files", "",
           "Every key each TOML reader accepts, from the schema it checks (an unknown key or a value of the wrong "
           "type is a one-line error naming the file and the key). Inline tables must fit on one line (TOML).", "",
           "## A suite (`suites/<name>.toml`)", "", *_keys(suite._SCHEMA, _field_docs(suite.Suite)),
           "`[settings]`: the run settings ([Settings](settings.md)). `[[variants]]`: a compressed variant; its keys "
           "are these and the parameters of its `method` ([Compressors](compressors.md)):", "",
           *_keys(suite._VARIANT_KEYS, _field_docs(CompressionSpec)),
           "## A target profile (`targets/<name>.toml`)", "", *_keys(targets._SCHEMA, target_docs),
           f"`reach`: {', '.join(f'`{r}`' for r in targets.REACHES)}, or a plugin's ([Registries](registries.md)); "
           "a plugin reach's own `[<reach>]` table goes to its launcher. "
           f"`arch`: what `uname -m` prints ({', '.join(targets.ARCHES)}).", "",
           "### `[ssh]`", "", *_keys(targets._SSH_SCHEMA, _field_docs(SshSettings)),
           "### `[emulated]`", "", *_keys({"rootfs": str, "python": str}, _field_docs(EmulatedSettings)),
           "### `[onnxruntime]`", "", *_keys(targets._ORT_SCHEMA),
           "### `[litert]`", "", *_keys(targets._LITERT_SCHEMA),
           "### `[thermal]`", "", *_keys(targets._THERMAL_SCHEMA),
           "### `[fit]`", "", *_keys(targets._FIT_SCHEMA, _field_docs(FitBudget)),
           "### `[energy]`", "", *_keys(targets._ENERGY_SCHEMA),
           "`[energy.power_model]`:", "", *_keys(targets._POWER_MODEL_SCHEMA),
           "`[energy.meter]`:", "", *_keys(targets._METER_SCHEMA),
           f"## The project file (`{project.CONFIG_FILE}`)", "", *_keys(project._SCHEMA, _field_docs(project.Project)),
           "### `[models.<name>]`: a generator declared by its factory", "", *_keys(declared._MODEL_SCHEMA),
           "Each entry of its `inputs`:", "", *_keys(declared._INPUT_SCHEMA),
           "### `[cluster]` (a project or a suite)", "", *_keys(cluster._KEYS, _field_docs(ClusterSettings)),
           "### `[optimize]`", "", *_keys(optimize._SCHEMA),
           "## A gate file (`harness gate --config`)", "", *_keys(GATE_SCHEMA, _field_docs(GateConfig))]
    return "\n".join(out)


def _fields(cls: type) -> list[str]:
    """A dataclass's fields as a table: name, type, its docstring."""
    docs = _field_docs(cls)
    rows = ["| field | type | meaning |", "|---|---|---|"]
    rows += [f"| `{f.name}` | `{f.type}` | {docs.get(f.name, '')} |" for f in dataclasses.fields(cls)]
    return rows + [""]


def _results() -> str:
    from harness.results import records
    from harness.types import RUN_STATUSES, SCHEMA_VERSION, Measurement, RunRecord

    upgrades = ", ".join(f"{v - 1} → {v}" for v in sorted(records.UPGRADES)) or "none yet (only version 1 exists)"
    return "\n".join(["# Results format", "",
                      f"A run folder's `results.jsonl` holds one JSON record per line, schema version "
                      f"**{SCHEMA_VERSION}**. Readers ignore unknown fields; an older record is upgraded on reading "
                      f"(upgrades: {upgrades}); a newer one is a one-line error. The CSV and the HTML report are "
                      "views of these records.", "",
                      f"Statuses: {', '.join(f'`{s}`' for s in RUN_STATUSES)}.", "",
                      "## A record", "", inspect.getdoc(RunRecord) or "", "", *_fields(RunRecord),
                      "## A measurement", "", inspect.getdoc(Measurement) or "", "", *_fields(Measurement),
                      "## The reader", "", inspect.getdoc(records) or "", ""])


def _protocol() -> str:
    from harness import protocol

    return "\n".join(["# Worker protocol", "", f"Version **{protocol.PROTOCOL_VERSION}**.", "",
                      inspect.getdoc(protocol) or "", "",
                      "## Modes", "", " ".join(_attribute_doc(protocol, "MODES").split()), "",
                      "## Statuses", "", " ".join(_attribute_doc(protocol, "STATUSES").split()), "",
                      "## A request", "", inspect.getdoc(protocol.WorkerRequest) or "", "",
                      *_fields(protocol.WorkerRequest),
                      "## A result", "", inspect.getdoc(protocol.WorkerResult) or "", "",
                      *_fields(protocol.WorkerResult),
                      "## The prepare child's request", "", inspect.getdoc(protocol.PrepareRequest) or "", "",
                      *_fields(protocol.PrepareRequest), ""])


def _attribute_doc(module: Any, name: str) -> str:
    """The docstring after a module-level assignment."""
    import ast

    body = ast.parse(inspect.getsource(module)).body
    for node, after in zip(body, body[1:]):
        targets = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        if name in targets and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            return str(after.value.value)
    return ""


def _registries() -> str:
    import harness.compress  # noqa: F401  (each package names its built-in members)
    import harness.energy  # noqa: F401
    import harness.exporters  # noqa: F401
    import harness.profiling  # noqa: F401
    import harness.run.knobs  # noqa: F401
    import harness.runtimes  # noqa: F401
    from harness import registry
    from harness.launch import base

    out = ["# Registries", "", inspect.getdoc(registry) or "", "",
           "One registry per extension kind; a plugin (`EDGE_HARNESS_PLUGINS`, or the project's `plugins`) registers "
           "into it. What each holds now (built-in members are named lazily: listing them imports nothing):", "",
           "| registry | kind | registered |", "|---|---|---|"]
    for name, value in vars(registry).items():
        if isinstance(value, registry.Registry) and name != "MODELS":
            out.append(f"| `{name}` | {value.kind} | {', '.join(f'`{n}`' for n in value.names())} |")
    out += ["", "## The launcher contract (a target reach)", "", inspect.getdoc(base) or "", "", "```python",
            inspect.getsource(base.Launcher), "```", ""]
    return "\n".join(out)


def _tests() -> str:
    import ast
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    markers = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    conftest = ast.parse((root / "tests" / "conftest.py").read_text())
    slices: dict[str, tuple[str, ...]] = {}
    for node in conftest.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "SLICES":
            slices = ast.literal_eval(node.value)
    out = ["# Test slices", "", "`make test` runs everything (CI); `make test-fast` (`-m \"not slow\"`) the tests that "
           "export nothing and run no suite, in under five minutes here. Each file's slices come from "
           "`tests/conftest.py` (`SLICES`): someone adding a runtime runs `pytest -m export`, someone touching the "
           "SSH launcher `pytest -m ssh`.", "", "| marker | what its tests need |", "|---|---|"]
    out += [f"| `{m.split(':', 1)[0]}` | {m.split(':', 1)[1].strip()} |" for m in markers]
    out += ["", "| file | covers | slices |", "|---|---|---|"]
    for path in sorted((root / "tests").glob("test_*.py")):
        doc = (ast.get_docstring(ast.parse(path.read_text())) or "").split("\n\n")[0]
        doc = " ".join(doc.split()).replace("|", "\\|")
        out.append(f"| `{path.name}` | {doc} | {', '.join(slices.get(path.name, ())) or '–'} |")
    return "\n".join(out) + "\n"


def _floors() -> str:
    from harness._floors import FLOORS, NOT_ON_BOARDS, WORKER_FLOORS

    out = ["# Floors of the code", "", "Generated from `harness/_floors.py`. A module imports only its own floor and "
           "those below; a module belongs to the floor of its longest matching prefix. A board receives floors "
           f"{' and '.join(map(str, WORKER_FLOORS))} (not {', '.join(f'`{m}`' for m in NOT_ON_BOARDS)}).", "",
           "| floor | room | modules | runs in | holds |", "|---:|---|---|---|---|"]
    for floor in FLOORS:
        modules = ", ".join(f"`{m}`" for m in floor.modules)
        out.append(f"| {floor.number} | {floor.name} | {modules} | {floor.runs_in} | {floor.holds} |")
    return "\n".join(out) + "\n"


PAGES = {"reference/floors.md": _floors, "reference/cli.md": _cli, "reference/metrics.md": _metrics,
         "reference/compressors.md": _compressors, "reference/knobs.md": _knobs, "reference/settings.md": _settings,
         "reference/files.md": _files, "reference/results.md": _results, "reference/protocol.md": _protocol,
         "reference/registries.md": _registries, "reference/tests.md": _tests}


def on_files(files, config):
    for path, make in PAGES.items():
        files.append(File.generated(config, path, content=make()))
    return files
