"""Bad input, counted: does any file a user hands the harness, or any model output, end in a traceback, a
killed suite or lost results? (a benchmark, not a test: the fuzz tests run a smaller share of the same inputs)

Classes, each generated from real files with a seeded random source (tests/mutations.py), run through the
command line in this process (``harness.cli.main``: an exception escaping it is a traceback):
  results-field   a real results file with 1-3 fields of its records changed, removed or extended with a
                  value of the wrong type or size → report, compare, gate (as candidate and as baseline)
  results-file    the real file cut, prefixed with a byte-order mark, padded with binary bytes, CRLF, emptied,
                  given a garbage or deeply nested line, or huge sample values → the same four commands
  suite-toml      suites/full.toml mutated (deep nesting, bad values and names, deleted lines, binary) →
                  harness run (with no models to measure: a valid suite costs nothing)
  target-toml     targets/x86-cpu.toml mutated the same way → harness list targets
  artifact        --artifact files: missing, a folder, a symlink loop, empty, cut or random-byte .onnx/.tflite
  resume          --resume --out on folders that never held a run
  nonfinite-suite a suite with a NaN-producing generator, a diverging distillation (inf/NaN student) and a
                  compressor that fails inside PyTorch, beside a normal generator: the suite must finish with
                  every job recorded
Writes benchmarks/results/reliability-<date>.json: per class the inputs tried, exit codes, tracebacks and the
first line of each, multi-line errors.

Usage: python benchmarks/reliability.py [--per-class 200] [--seed 0]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.cli import main  # noqa: E402
from tests.mutations import SMALL_RUN, mutated_file, mutated_results, mutated_toml, suite_base  # noqa: E402


class Tally:
    def __init__(self) -> None:
        self.inputs = 0
        self.calls = 0
        self.codes: Counter[int] = Counter()
        self.tracebacks: list[str] = []
        self.multiline: list[str] = []
        self.kinds: Counter[str] = Counter()

    def call(self, *args: str) -> int:
        err = io.StringIO()
        self.calls += 1
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(list(args))
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        except BaseException as exc:  # noqa: BLE001 - this is what the benchmark counts
            self.tracebacks.append(f"{args[0]}: {type(exc).__name__}: {str(exc)[:200]}")
            return -1
        self.codes[code] += 1
        if code == 2 and len(err.getvalue().strip().splitlines()) != 1:
            self.multiline.append(err.getvalue()[:300])
        return code

    def summary(self) -> dict:
        return {"inputs": self.inputs, "command_calls": self.calls, "exit_codes": dict(sorted(self.codes.items())),
                "tracebacks": len(self.tracebacks), "traceback_examples": self.tracebacks[:10],
                "multi_line_errors": len(self.multiline), "multi_line_examples": self.multiline[:5],
                "kinds": dict(self.kinds)}


def results_commands(tally: Tally, path: Path, tmp: Path) -> None:
    tally.call("report", str(path), "--out", str(tmp / "report"))
    tally.call("compare", str(SMALL_RUN), str(path))
    tally.call("gate", "--baseline", str(SMALL_RUN), "--candidate", str(path), "--markdown", str(tmp / "s.md"),
               "--junit", str(tmp / "j.xml"))
    tally.call("gate", "--baseline", str(path), "--candidate", str(SMALL_RUN), "--markdown", str(tmp / "s.md"))


def nonfinite_suite(tmp: Path) -> dict:
    """The nonfinite suite of tests/test_nonfinite.py, run once through the CLI."""
    from tests.test_nonfinite import SUITE, expected_jobs, models_folder

    models = models_folder(tmp)
    suite = tmp / "suite.toml"
    suite.write_text(SUITE)
    out = tmp / "run"
    os.environ["EDGE_HARNESS_MODELS"] = str(models)
    tally = Tally()
    tally.inputs = 1
    code = tally.call("run", "--suite", str(suite), "--out", str(out), "--no-progress", "--cache", str(tmp / "c"))
    del os.environ["EDGE_HARNESS_MODELS"]
    lines = (out / "results.jsonl").read_text().splitlines() if (out / "results.jsonl").is_file() else []
    statuses = Counter(json.loads(line)["status"] for line in lines)
    return tally.summary() | {"exit_code": code, "jobs_planned": expected_jobs(), "records": len(lines),
                              "statuses": dict(statuses), "report": (out / "index.html").is_file()}


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    classes: dict[str, dict] = {}
    started = time.time()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        tally = Tally()
        for _ in range(args.per_class):
            path = tmp / "results.jsonl"
            path.write_bytes(mutated_results(rng))
            tally.inputs += 1
            results_commands(tally, path, tmp)
        classes["results-field"] = tally.summary()

        tally = Tally()
        for _ in range(args.per_class):
            kind, data = mutated_file(rng)
            tally.kinds[kind] += 1
            path = tmp / "results.jsonl"
            path.write_bytes(data)
            tally.inputs += 1
            results_commands(tally, path, tmp)
        classes["results-file"] = tally.summary()

        empty_models = tmp / "no-models"
        empty_models.mkdir()
        os.environ["EDGE_HARNESS_MODELS"] = str(empty_models)
        os.environ["EDGE_HARNESS_REPORTS"] = str(tmp / "reports")
        tally = Tally()
        default_suite = suite_base((ROOT / "suites" / "full.toml").read_text())
        for i in range(args.per_class):
            kind, text = mutated_toml(rng, default_suite)
            tally.kinds[kind.split(" (")[0]] += 1
            path = tmp / "suite.toml"
            path.write_text(text, encoding="utf-8")
            tally.inputs += 1
            tally.call("run", "--suite", str(path), "--out", str(tmp / f"run-{i}"), "--no-progress",
                       "--cache", str(tmp / "c"))
        classes["suite-toml"] = tally.summary()
        del os.environ["EDGE_HARNESS_MODELS"]

        tally = Tally()
        targets = tmp / "targets"
        targets.mkdir()
        os.environ["EDGE_HARNESS_TARGETS"] = str(targets)
        x86 = (ROOT / "targets" / "x86-cpu.toml").read_text()
        for _ in range(args.per_class):
            kind, text = mutated_toml(rng, x86)
            tally.kinds[kind.split(" (")[0]] += 1
            (targets / "x86-cpu.toml").write_text(text, encoding="utf-8")
            tally.inputs += 1
            tally.call("list", "targets")
        classes["target-toml"] = tally.summary()
        del os.environ["EDGE_HARNESS_TARGETS"]

        tally = Tally()
        loop = tmp / "loop.onnx"
        os.symlink(loop, loop)
        artifacts = [tmp / "missing.onnx", tmp, loop]
        for suffix in (".onnx", ".tflite"):
            for size in (0, 1, 16, 4096):
                path = tmp / f"random-{size}{suffix}"
                path.write_bytes(bytes(rng.randrange(256) for _ in range(size)))
                artifacts.append(path)
        for path in artifacts:
            tally.inputs += 1
            tally.call("run", "--artifact", str(path), "--quick", "--out", str(tmp / "art"), "--no-progress",
                       "--cache", str(tmp / "c"))
        classes["artifact"] = tally.summary()

        tally = Tally()
        for folder in (tmp / "never-made", tmp / "no-models", tmp / "reports"):
            tally.inputs += 1
            tally.call("run", "--resume", "--out", str(folder), "--no-progress")
        classes["resume"] = tally.summary()
        del os.environ["EDGE_HARNESS_REPORTS"]

        classes["nonfinite-suite"] = nonfinite_suite(tmp / "nonfinite")

    total = {"inputs": sum(c["inputs"] for c in classes.values()),
             "tracebacks": sum(c["tracebacks"] for c in classes.values()),
             "multi_line_errors": sum(c["multi_line_errors"] for c in classes.values())}
    result = {"date": datetime.now().isoformat(timespec="seconds"), "seed": args.seed,
              "per_class": args.per_class, "wall_s": round(time.time() - started, 1), "total": total,
              "classes": classes}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"reliability-{datetime.now():%Y%m%d}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    for name, c in classes.items():
        print(f"{name:16} inputs {c['inputs']:4}  exit codes {c['exit_codes']}  tracebacks {c['tracebacks']}  "
              f"multi-line errors {c['multi_line_errors']}")
    print(f"total: {total}; {result['wall_s']} s → {path}")


if __name__ == "__main__":
    main_benchmark()
