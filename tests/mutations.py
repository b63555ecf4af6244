"""Malformed inputs made from real ones, for the fuzz tests and ``benchmarks/reliability.py``.

Every generator takes a ``random.Random`` (hypothesis drives one in the tests, a seeded one in the benchmark)
and returns the bytes of a file a user might hand the harness: a real results file with one field of one
record changed, removed or given a value of the wrong type or size; a real file cut, prefixed, padded with
binary bytes or nested deeply; TOML suites and target profiles gone wrong.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable

SMALL_RUN = Path(__file__).parent / "fixtures" / "results" / "small-run.jsonl"
"""A real results file: `harness run` of tiny_gen and nan_gen (ONNX, TFLite, an fp16 variant), batch 1,
min_runs 6 with no minimum duration (few samples: fast to compare and gate), 8 fidelity samples."""


class Raw(str):
    """Text spliced into the JSON as it is (NaN, Infinity, numbers too long to convert, deep nesting)."""


BAD_VALUES: list[Any] = [
    "", "x", "１２", "\u202e\x00", -1, 0, 1.5, -0.0, 2**63, 10**30, 1e308, -1e308, 1e-320, True, False, None,
    [], {}, [1, "a"], {"a": 1}, [[[]]], {"p50": "fast"}, "NaN",
    float("nan"), float("inf"), float("-inf"),
    Raw("1e400"), Raw("-1e400"), Raw("9" * 5000), Raw("[" * 50_000 + "]" * 50_000),
]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a JSON value: dict keys and list indices, internal nodes included."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value[:4]):  # the first few samples stand for the rest
            out.extend(_paths(item, (*prefix, i)))
    return out


def _dumps(value: Any) -> str:
    """JSON text; ``Raw`` values go in verbatim, NaN and infinities as Python's json writes them."""
    raws: dict[str, str] = {}

    def mark(v: Any) -> Any:
        if isinstance(v, Raw):
            token = f"__RAW_{len(raws)}__"
            raws[f'"{token}"'] = str(v)
            return token
        if isinstance(v, dict):
            return {k: mark(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mark(x) for x in v]
        return v

    text = json.dumps(mark(value))
    for token, raw in raws.items():
        text = text.replace(token, raw)
    return text


def mutate_record(rng: random.Random, record: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``record`` with one place replaced by a bad value, deleted, or (a list) extended."""
    record = json.loads(json.dumps(record))
    path = rng.choice(_paths(record))
    parent = record
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    action = rng.choice(["replace", "replace", "replace", "delete", "append"])
    if action == "delete":
        del parent[key]
    elif action == "append" and isinstance(parent[key], list):
        parent[key].append(rng.choice(BAD_VALUES))
    else:
        parent[key] = rng.choice(BAD_VALUES)
    return record


def mutated_results(rng: random.Random, source: Path = SMALL_RUN) -> bytes:
    """The real results file with 1–3 fields of its records mutated."""
    lines = source.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(records))
        records[i] = mutate_record(rng, records[i])
    return ("\n".join(_dumps(r) for r in records) + "\n").encode()


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def _bom(rng: random.Random, data: bytes) -> bytes:
    return b"\xef\xbb\xbf" + data


def _binary(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) + data[at:]


def _crlf(rng: random.Random, data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


def _empty(rng: random.Random, data: bytes) -> bytes:
    return rng.choice([b"", b"\n", b"   \n\n", b"\x00"])


def _garbage_line(rng: random.Random, data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    junk = rng.choice([b"[1, 2]\n", b"42\n", b'"text"\n', b"null\n", b"{\n", b"{}\n", b"not json\n",
                       b"[" * 100_000 + b"\n", b'{"a":' * 100_000 + b"\n"])
    lines.insert(rng.randrange(len(lines) + 1), junk)
    return b"".join(lines)


def _huge_samples(rng: random.Random, data: bytes) -> bytes:
    records = [json.loads(line) for line in data.decode().splitlines()]
    record = rng.choice(records)
    for m in record.get("measurements", []):
        if m.get("samples"):
            m["samples"] = [rng.choice([1e300, 1e15, 1e16, -1e15, 0.0, 5e-324]) for _ in m["samples"]]
            break
    return ("\n".join(_dumps(r) for r in records) + "\n").encode()


FILE_MUTATIONS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "truncated": _truncate, "byte-order mark": _bom, "binary bytes": _binary, "CRLF line ends": _crlf,
    "empty": _empty, "garbage or deeply nested line": _garbage_line, "huge sample values": _huge_samples,
}


def mutated_file(rng: random.Random, source: Path = SMALL_RUN) -> tuple[str, bytes]:
    """(what was done, bytes): one whole-file corruption of the real results file."""
    name = rng.choice(sorted(FILE_MUTATIONS))
    return name, FILE_MUTATIONS[name](rng, source.read_bytes())


TOML_BAD_VALUES = ['"../../outside"', '"a/b"', "-1", "0", "1.5", "inf", "nan", "true", "[]", '[1, "a"]', "{}",
                   '"x"', "99999999999999999999999", '"\\u0000"', '""', '["x86-cpu", "x86-cpu"]',
                   '[999999, 0]', '"ARM"']


def mutated_toml(rng: random.Random, text: str) -> tuple[str, str]:
    """(what was done, TOML text): one mutation of a real suite or target file."""
    lines = text.splitlines()
    assignments = [i for i, line in enumerate(lines) if "=" in line and not line.lstrip().startswith("#")]
    kind = rng.choice(["deep arrays", "deep tables", "value replaced", "value replaced", "value replaced",
                       "line deleted", "unknown key", "empty", "truncated", "binary", "duplicate key"])
    if kind == "deep arrays":
        depth = rng.choice([100, 1_000, 10_000, 100_000])
        return kind, f"x = {'[' * depth}{']' * depth}\n" + text
    if kind == "deep tables":
        depth = rng.choice([100, 1_000, 10_000])
        return kind, text + "\n[" + ".".join(["t"] * depth) + "]\nx = 1\n"
    if kind == "value replaced" and assignments:
        i = rng.choice(assignments)
        key = lines[i].split("=", 1)[0]
        lines[i] = f"{key}= {rng.choice(TOML_BAD_VALUES)}"
        return f"{kind} ({key.strip()})", "\n".join(lines) + "\n"
    if kind == "line deleted" and assignments:
        del lines[rng.choice(assignments)]
        return kind, "\n".join(lines) + "\n"
    if kind == "unknown key":
        return kind, "colour = \"blue\"\n" + text
    if kind == "empty":
        return kind, rng.choice(["", "\n", "# only a comment\n"])
    if kind == "truncated":
        return kind, text[: rng.randrange(len(text))]
    if kind == "binary":
        at = rng.randrange(len(text))
        return kind, text[:at] + "".join(chr(rng.randrange(1, 0x3000)) for _ in range(8)) + text[at:]
    if kind == "duplicate key" and assignments:
        i = rng.choice(assignments)
        lines.insert(i, lines[i])
        return kind, "\n".join(lines) + "\n"
    return "unchanged", text


def suite_base(default_suite_text: str) -> str:
    """suites/full.toml without its variants' model lists, so that a valid mutant runs nothing when no models
    are found (the fuzzers point EDGE_HARNESS_MODELS at an empty folder) instead of naming unknown models."""
    return "\n".join(line for line in default_suite_text.splitlines() if not line.startswith("models = [")) + "\n"
