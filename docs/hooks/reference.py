"""MkDocs hook: the reference pages, generated from the code at build time (never edited by hand, never stale):
every command's --help, the metric catalogue, the registered compressors with their parameters, the search knobs,
and the run settings with their defaults and docstrings."""
from __future__ import annotations

import dataclasses
import inspect
import io
import contextlib

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


PAGES = {"reference/floors.md": _floors, "reference/cli.md": _cli, "reference/metrics.md": _metrics, "reference/compressors.md": _compressors,
         "reference/knobs.md": _knobs, "reference/settings.md": _settings}


def on_files(files, config):
    for path, make in PAGES.items():
        files.append(File.generated(config, path, content=make()))
    return files
