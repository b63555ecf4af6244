"""CSV and HTML views derived from a results file."""
from __future__ import annotations

import pandas as pd

from harness.report import write_report
from harness.report.tables import neutralise_formulas, tidy_frame
from harness.results.store import ResultsStore
from tests.test_store_config import record


def test_tidy_csv_has_one_row_per_measurement_and_latency_stats(tmp_path):
    frame = tidy_frame([record()])
    assert list(frame["metric"]) == ["latency", "latency_p50"]
    assert frame.loc[0, "value"] == 1.5 and frame.loc[0, "unit"] == "ms"


def test_formula_cells_are_neutralised():
    frame = pd.DataFrame({"a": ["=1+1", "+x", "-y", "@z", "ok", None], "n": [-1, 2, 3, 4, 5, 6]})
    out = neutralise_formulas(frame)
    assert list(out["a"][:5]) == ["'=1+1", "'+x", "'-y", "'@z", "ok"]
    assert list(out["n"]) == [-1, 2, 3, 4, 5, 6]  # numbers are not text


def test_report_files_are_written_and_html_escapes_user_strings(tmp_path):
    import dataclasses

    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(record("a"))
    evil = dataclasses.replace(record("b", "failed"), model="<script>alert(1)</script>",
                               error="=HYPERLINK(\"x\") <img src=x onerror=alert(2)>")
    store.append(evil)
    paths = write_report(store.path)
    html = paths["html"].read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch
    csv = pd.read_csv(paths["csv"])
    assert csv["error"].dropna().str.startswith("'=").any()
    summary = pd.read_csv(paths["summary"])
    assert summary.loc[0, "latency_p50_ms"] == 1.5
