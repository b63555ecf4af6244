"""The one validating reader of results files, and the writer's guarantee that every record stays writable.

Every command that reads results (``report``, ``compare``, ``gate``, ``ab``, ``sweep``, ``--resume``) goes
through ``parse_records``: each line is checked for structure and types before a ``RunRecord`` is built, and
anything wrong is a one-line ``HarnessInputError`` naming the file, the line and the field. Numbers must be finite
and within ``MAX_MAGNITUDE``: the harness never writes larger ones, and the statistics downstream (squares, sums
of 10^5 samples, integer conversions for plots) stay finite below it.

``json_line`` is the writer's side, with the reader's rules: a record whose values the reader would refuse (NaN,
±inf, beyond ±1e15, a negative duration) or that JSON cannot hold (numpy scalars, other objects) is written anyway
— such a measurement, sample or statistic is left out and named in ``context["unwritable"]``, other non-finite
numbers in the context become null — so no value can cost a run its results.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from harness.errors import HarnessInputError
from harness.types import RUN_STATUSES, SCHEMA_VERSION, RunRecord

MAX_MAGNITUDE = 1e15
"""Largest |number| accepted in a record (latencies in ms, bytes, counts, joules all stay far below)."""

DURATION_UNITS = ("ms", "s", "us", "ns")
DURATION_STATS = ("min", "max", "mean", "p50", "p90", "p95", "p99", "median_ci_low", "median_ci_high")
"""Statistics of a duration's samples that are durations themselves (never negative)."""

_TEXT_FIELDS = ("job_key", "model", "variant", "format", "runtime", "target", "artifact_id", "error",
                "started_at")
_REQUIRED = ("job_key", "model", "variant", "format", "runtime", "target", "batch_size", "status")


class _Bad(Exception):
    """A field of one record is wrong: ``field`` is its path (``measurements[2].samples[7]``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")


def _type_name(value: Any) -> str:
    return "null" if value is None else "bool" if isinstance(value, bool) else type(value).__name__


def _number(value: Any, field: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(field, f"must be a number, not {_type_name(value)}")
    number = float(value) if abs(value) <= MAX_MAGNITUDE else math.inf
    if not math.isfinite(number):
        raise _Bad(field, f"must be a finite number within ±{MAX_MAGNITUDE:g}, not {value!r:.40}")
    if minimum is not None and number < minimum:
        raise _Bad(field, f"must be >= {minimum:g}, not {value!r}")
    return number


def _integer(value: Any, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(field, f"must be an integer, not {_type_name(value)}")
    if not minimum <= value <= MAX_MAGNITUDE:
        raise _Bad(field, f"must be an integer from {minimum} to {MAX_MAGNITUDE:g}, not {value}")
    return value


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise _Bad(field, f"must be a string, not {_type_name(value)}")
    return value


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(field, f"must be an object, not {_type_name(value)}")
    return value


def _measurement(data: Any, field: str) -> None:
    m = _object(data, field)
    for key in ("metric", "unit", "method"):
        if key not in m:
            raise _Bad(f"{field}.{key}", "is missing")
        _text(m[key], f"{field}.{key}")
    if "value" not in m:
        raise _Bad(f"{field}.value", "is missing")
    floor = 0.0 if m["unit"] in DURATION_UNITS else None  # a duration is never negative
    _number(m["value"], f"{field}.value", floor)
    _text(m.get("note", ""), f"{field}.note")
    samples = m.get("samples")
    if samples is not None:
        if not isinstance(samples, list):
            raise _Bad(f"{field}.samples", f"must be a list of numbers, not {_type_name(samples)}")
        for i, sample in enumerate(samples):
            _number(sample, f"{field}.samples[{i}]", floor)
    stats = m.get("stats")
    if stats is not None:
        for key, value in _object(stats, f"{field}.stats").items():
            _number(value, f"{field}.stats.{key}", floor if key in DURATION_STATS else None)


def _context(data: Any) -> None:
    """The context is free-form, except the keys the report, compare and gate read."""
    ctx = _object(data, "context")
    warnings = ctx.get("warnings")
    if warnings is not None:
        if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
            raise _Bad("context.warnings", "must be a list of strings")
    for side in ("cpu_state_before", "cpu_state_after"):
        state = ctx.get(side)
        if state is None:
            continue
        state = _object(state, f"context.{side}")
        for key in ("freq_mhz", "temp_c"):
            if state.get(key) is not None:
                _number(state[key], f"context.{side}.{key}")
    if ctx.get("runtime_versions") is not None:
        _object(ctx["runtime_versions"], "context.runtime_versions")
    ab = ctx.get("ab")
    if ab is not None:
        ab = _object(ab, "context.ab")
        if "pairs" in ab:
            _integer(ab["pairs"], "context.ab.pairs", 0)
        if "session" in ab:
            _text(ab["session"], "context.ab.session")


def check_record(data: Any) -> RunRecord:
    """A RunRecord from one parsed line (already upgraded to this schema); raises ``_Bad`` naming the field."""
    record = _object(data, "the record")
    for key in _REQUIRED:
        if key not in record:
            raise _Bad(key, "is missing")
    for key in _TEXT_FIELDS:
        if key in record:
            _text(record[key], key)
    if record["status"] not in RUN_STATUSES:
        raise _Bad("status", f"must be one of {', '.join(RUN_STATUSES)}, not {str(record['status'])[:40]!r}")
    _integer(record["batch_size"], "batch_size", 1)
    _integer(record.get("artifact_bytes", 0), "artifact_bytes", 0)
    _number(record.get("duration_s", 0.0), "duration_s", 0.0)
    measurements = record.get("measurements", [])
    if not isinstance(measurements, list):
        raise _Bad("measurements", f"must be a list, not {_type_name(measurements)}")
    for i, m in enumerate(measurements):
        _measurement(m, f"measurements[{i}]")
    _context(record.get("context", {}))
    full = {"error": "", "artifact_id": "", "artifact_bytes": 0, "measurements": [], "context": {},
            "started_at": "", "duration_s": 0.0} | record
    return RunRecord.from_dict(full)


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
"""version N → the function upgrading a version N-1 record dict to version N. Empty while only v1 exists."""


def _upgrade(record: dict[str, Any]) -> dict[str, Any]:
    version = record.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _Bad("schema_version", "must be an integer >= 1")
    if version > SCHEMA_VERSION:
        raise HarnessInputError(f"results use schema_version {version}, this harness reads up to "
                                f"{SCHEMA_VERSION}: upgrade edge-harness")
    while version < SCHEMA_VERSION:
        version += 1
        record = UPGRADES[version](record)
        record["schema_version"] = version
    return record


def parse_records(path: Path, allow_empty: bool = False) -> list[RunRecord]:
    """Every record of a results file, validated. A torn last line (an interrupted write) is skipped; anything
    else wrong is a ``HarnessInputError`` naming ``path``, the line and the field. An empty file (a run that
    stopped before its first record) is an error unless ``allow_empty``."""
    try:
        if not path.is_file():
            raise HarnessInputError(f"{path}: results file not found" if not path.exists()
                                    else f"{path}: not a results file (a folder or a special file)")
        raw = path.read_bytes()
    except OSError as exc:
        raise HarnessInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (some editors write one) is not part of the data
    except UnicodeDecodeError as exc:
        raise HarnessInputError(f"{path}: not a results file: byte {exc.start} is not UTF-8 text "
                                "(a binary file?)") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    records: list[RunRecord] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except RecursionError:
            raise HarnessInputError(f"{path}:{number}: not a run record: JSON nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, or an integer of more digits than Python converts
            if number == len(lines) and isinstance(exc, json.JSONDecodeError) and not text.endswith("\n"):
                continue  # the last write was interrupted: everything before it is intact
            raise HarnessInputError(f"{path}:{number}: not a JSON record: {str(exc).splitlines()[0][:120]}") from None
        try:
            records.append(check_record(_upgrade(_object(data, "the record"))))
        except _Bad as exc:
            raise HarnessInputError(f"{path}:{number}: malformed record: {exc}") from None
        except HarnessInputError as exc:
            raise HarnessInputError(f"{path}:{number}: {exc}") from None
        except (TypeError, ValueError) as exc:  # a field the checks above do not know about
            raise HarnessInputError(f"{path}:{number}: malformed record: {exc}") from None
    if not records and not allow_empty:
        what = "is empty" if not text.strip() else "holds no complete record"
        raise HarnessInputError(f"{path}: {what}: no job was recorded (did the run stop before its first job?)")
    return records


def _plain(value: Any) -> Any:
    """A copy made of JSON's types: numpy scalars become Python numbers, unknown objects their text (floats,
    NaN included, are kept)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "item"):
        try:
            return _plain(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _finite_or_none(value: Any) -> Any:
    """Non-finite floats become None (in a value already made ``_plain``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def _finite_number(value: Any, duration: bool = False) -> bool:
    """What the reader accepts as a number (``_number``): finite, within ±MAX_MAGNITUDE, ≥ 0 for a duration."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and abs(value) <= MAX_MAGNITUDE and (value >= 0 or not duration))


def json_line(record: RunRecord) -> bytes:
    """One results-file line for ``record``: strict JSON, whatever its values (see the module docstring)."""
    data = _plain(record.to_dict())
    kept, dropped = [], []
    for m in data["measurements"]:
        duration = m.get("unit") in DURATION_UNITS
        if not _finite_number(m.get("value"), duration):
            dropped.append(f"{m.get('metric')}={m.get('value')!r}")
            continue
        if isinstance(m.get("samples"), list):
            bad = [x for x in m["samples"] if not _finite_number(x, duration)]
            if bad:
                m["samples"] = [x for x in m["samples"] if _finite_number(x, duration)]
                dropped.append(f"{len(bad)} of the {m.get('metric')} samples (e.g. {bad[0]!r})")
        if isinstance(m.get("stats"), dict):
            bad = [k for k, v in m["stats"].items() if not _finite_number(v, duration and k in DURATION_STATS)]
            if bad:
                m["stats"] = {k: v for k, v in m["stats"].items() if k not in bad}
                dropped.append(f"{m.get('metric')} statistics {', '.join(bad)}")
        kept.append(m)
    data["measurements"] = kept
    data = _finite_or_none(data)
    if dropped:
        data["context"]["unwritable"] = ("left out, not a finite number within ±1e15 (durations ≥ 0): "
                                         + "; ".join(dropped))
    return (json.dumps(data, allow_nan=False) + "\n").encode("utf-8")
