"""Reports are views derived from results.jsonl: a tidy CSV, a wide summary CSV and one HTML page."""
from __future__ import annotations

from pathlib import Path

from harness.report.compression import compression_frame
from harness.report.html import write_html
from harness.report.tables import summary_frame, tidy_frame, write_csv
from harness.results.store import read_records


def write_report(results_path: Path, out_dir: Path | None = None) -> dict[str, Path]:
    """Write results.csv, summary.csv and index.html next to ``results_path`` (or into ``out_dir``)."""
    records = read_records(results_path)
    out_dir = out_dir or results_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out_dir / "results.csv",
        "summary": out_dir / "summary.csv",
        "html": out_dir / "index.html",
    }
    write_csv(tidy_frame(records), paths["csv"])
    summary = compression_frame(summary_frame(records))
    write_csv(summary, paths["summary"])
    write_html(records, summary, paths["html"], title=f"Edge Harness report: {results_path.parent.name}",
               run_dir=results_path.parent)
    return paths
