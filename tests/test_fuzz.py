"""Fuzzing the loaders with hypothesis (small budget): whatever the bytes, a loader either succeeds or
raises HarnessInputError with one line that names the file — never another exception."""
from __future__ import annotations

import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessInputError
from harness.prepare.external import check_static
from harness.results.store import read_records
from harness.config.suite import load_suite
from harness.config.targets import load_target
from tests.test_store_config import record

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

toml_scalars = st.one_of(st.integers(-5, 10), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                         st.text(string.ascii_letters + "-_ ", max_size=8))
toml_values = st.one_of(toml_scalars, st.lists(toml_scalars, max_size=4))
target_keys = st.sampled_from(["name", "description", "arch", "reach", "runtimes", "threads", "memory_cap_mb",
                               "speed", "onnxruntime"])
suite_keys = st.sampled_from(["name", "models", "targets", "formats", "batch_sizes", "export_tolerance",
                              "settings", "colour"])


def toml_text(table: dict) -> str:
    """A TOML document for a flat table (values JSON-encoded, which is valid TOML for these types)."""
    return "\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items()) + "\n"


def _one_line_naming(exc: HarnessInputError, path) -> bool:
    text = str(exc)
    return "\n" not in text.strip() and str(path) in text


@FUZZ
@given(st.dictionaries(target_keys, toml_values, max_size=7))
def test_fuzz_target_profiles(tmp_path, table):
    path = tmp_path / "t.toml"
    path.write_text(toml_text(table))
    try:
        load_target(path)
    except HarnessInputError as exc:
        assert _one_line_naming(exc, path)


@FUZZ
@given(st.dictionaries(suite_keys, toml_values, max_size=7),
       st.dictionaries(st.sampled_from(["min_runs", "min_duration_s", "max_duration_s", "warmup_tolerance",
                                        "target_ci_rel_width", "timeout_s", "bogus"]), toml_scalars, max_size=4))
def test_fuzz_suites(tmp_path, table, settings_table):
    path = tmp_path / "s.toml"
    text = toml_text(table)
    if "settings" not in table:
        text += "[settings]\n" + toml_text(settings_table)
    path.write_text(text)
    try:
        load_suite(path)
    except HarnessInputError as exc:
        assert _one_line_naming(exc, path)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_toml_bytes(tmp_path, blob):
    path = tmp_path / "t.toml"
    path.write_bytes(blob)
    for loader in (load_target, load_suite):
        try:
            loader(path)
        except HarnessInputError as exc:
            assert _one_line_naming(exc, path)


GOOD_LINE = json.dumps(record().to_dict())


@FUZZ
@given(st.lists(st.one_of(st.just(GOOD_LINE), st.text(max_size=60),
                          st.builds(lambda k, v: json.dumps(json.loads(GOOD_LINE) | {k: v}),
                                    st.sampled_from(["schema_version", "status", "measurements", "batch_size"]),
                                    st.one_of(st.integers(-2, 5), st.text(max_size=5), st.none(),
                                              st.lists(st.integers(), max_size=2)))),
                max_size=5))
def test_fuzz_results_reader(tmp_path, lines):
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines))
    try:
        read_records(path)
    except HarnessInputError as exc:
        assert "\n" not in str(exc).strip() and str(path) in str(exc)


@FUZZ
@given(st.binary(max_size=400), st.sampled_from([".onnx", ".tflite"]))
def test_fuzz_artifact_static_checks(tmp_path, blob, suffix):
    path = tmp_path / f"a{suffix}"
    path.write_bytes(blob)
    try:
        check_static(path)
    except HarnessInputError as exc:
        assert _one_line_naming(exc, path)
