"""`harness report`, `compare` and `gate`, end to end through the command line (``harness.cli.main``), on real
results files mutated field by field and corrupted whole (tests/mutations.py): whatever the file, a command
exits 0, 1 or 2, never with a traceback, and an error is one line that names the file."""
from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import main
from tests.mutations import SMALL_RUN, mutated_file, mutated_results

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                derandomize=True)


def cli(*args: str) -> tuple[int, str]:
    """Exit code and stderr of ``harness ARGS`` run in this process: an uncaught exception fails the test."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, err.getvalue()


def check_outcome(code: int, stderr: str, path) -> None:
    assert code in (0, 1, 2), stderr
    assert "Traceback" not in stderr
    if code == 2:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr
        assert lines[0].startswith("harness: error: ") and str(path) in lines[0], stderr


def run_all(tmp_path, path) -> None:
    code, err = cli("report", str(path), "--out", str(tmp_path / "report"))
    check_outcome(code, err, path)
    code, err = cli("compare", str(SMALL_RUN), str(path))
    check_outcome(code, err, path)
    code, err = cli("gate", "--baseline", str(SMALL_RUN), "--candidate", str(path),
                    "--junit", str(tmp_path / "junit.xml"), "--markdown", str(tmp_path / "summary.md"))
    check_outcome(code, err, path)
    code, err = cli("gate", "--baseline", str(path), "--candidate", str(SMALL_RUN),
                    "--markdown", str(tmp_path / "summary.md"))
    check_outcome(code, err, path)


def test_the_real_results_file_passes_every_command(tmp_path):
    for args in (["report", str(SMALL_RUN), "--out", str(tmp_path)], ["compare", str(SMALL_RUN), str(SMALL_RUN)],
                 ["gate", "--baseline", str(SMALL_RUN), "--candidate", str(SMALL_RUN), "--markdown",
                  str(tmp_path / "s.md")]):
        code, err = cli(*args)
        assert code == 0, err


@FUZZ
@given(st.randoms(use_true_random=False))
def test_fuzz_records_mutated_field_by_field(tmp_path, rng):
    path = tmp_path / "results.jsonl"
    path.write_bytes(mutated_results(rng))
    run_all(tmp_path, path)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_fuzz_whole_file_corruptions(tmp_path, rng):
    path = tmp_path / "results.jsonl"
    _, data = mutated_file(rng)
    path.write_bytes(data)
    run_all(tmp_path, path)


@pytest.mark.parametrize("data, message", [
    (b"", "is empty"),
    (b"\xef\xbb\xbf", "is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\xff", "not UTF-8 text"),
    (b"[" * 100_000 + b"\n", "nested too deeply"),
    (b"[1, 2]\n", "must be an object"),
])
def test_named_corruptions_say_what_is_wrong(tmp_path, data, message):
    path = tmp_path / "results.jsonl"
    path.write_bytes(data)
    code, err = cli("report", str(path))
    assert code == 2 and message in err and str(path) in err, err


def test_a_byte_order_mark_is_read_past(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + SMALL_RUN.read_bytes())
    code, err = cli("report", str(path), "--out", str(tmp_path / "r"))
    assert code == 0, err


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", "1", "batch_size must be an integer, not str"),
    ("batch_size", 1.5, "batch_size must be an integer, not float"),
    ("job_key", 7, "job_key must be a string, not int"),
    ("status", "fine", "status must be one of"),
    ("measurements", {"latency": 1}, "measurements must be a list, not dict"),
])
def test_wrong_types_name_line_and_field(tmp_path, field, value, message):
    import json

    lines = SMALL_RUN.read_text().splitlines()
    record = json.loads(lines[2]) | {field: value}
    lines[2] = json.dumps(record)
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, err = cli("gate", "--baseline", str(SMALL_RUN), "--candidate", str(path))
    assert code == 2 and f"{path}:3: malformed record: {message}" in err, err


def test_huge_and_non_finite_sample_values_are_refused_with_the_field(tmp_path):
    import json

    lines = SMALL_RUN.read_text().splitlines()
    record = json.loads(lines[0])
    index = next(i for i, m in enumerate(record["measurements"]) if m["metric"] == "latency")
    record["measurements"][index]["samples"][3] = 1e300
    lines[0] = json.dumps(record)
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, err = cli("compare", str(SMALL_RUN), str(path))
    assert code == 2 and f"measurements[{index}].samples[3] must be a finite number" in err, err
    lines[0] = lines[0].replace("1e+300", "NaN")
    path.write_text("\n".join(lines) + "\n")
    code, err = cli("compare", str(SMALL_RUN), str(path))
    assert code == 2 and f"measurements[{index}].samples[3] must be a finite number" in err, err
