"""The documentation site builds, strictly (no broken link, no page outside the nav), and its reference pages are
generated from the code: every command, metric, compressor and search knob appears without anyone writing it down."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.config.paths import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"


def _nav_pages(nav: list) -> set[str]:
    found = set()
    for entry in nav:
        for value in (entry.values() if isinstance(entry, dict) else [entry]):
            found |= _nav_pages(value) if isinstance(value, list) else {value}
    return found


def test_every_page_is_in_the_nav_and_the_readme_stays_short():
    config = yaml.safe_load((PROJECT_ROOT / "mkdocs.yml").read_text().replace("!!python", "#"))
    nav = _nav_pages(config["nav"])
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages - nav == set(), "pages outside the nav"
    generated = {p for p in nav if p.startswith("reference/")}
    assert nav - pages == generated  # the reference pages exist only in the build
    readme = (PROJECT_ROOT / "README.md").read_text().splitlines()
    assert len(readme) <= 200
    assert readme[3].startswith("make bench") and readme[4].startswith("make test")  # the two fresh-machine commands
    for link in re.findall(r"\]\((docs/[^)#]+)", "\n".join(readme)):
        assert (PROJECT_ROOT / link).exists(), link


@pytest.mark.skipif(shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None,
                    reason="mkdocs is not installed (pip install -e '.[docs]')")
def test_the_site_builds_strictly_with_reference_pages_from_the_code(tmp_path):
    from harness.compress import compressor  # noqa: F401  (registers the compressors)
    from harness.registry import COMPRESSORS, SEARCH_KNOBS
    from harness.run import knobs  # noqa: F401

    mkdocs = str(Path(sys.executable).parent / "mkdocs")
    proc = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    for command in ("run", "optimize", "sweep", "gate", "ab", "history", "init"):
        assert f"harness {command}" in cli
    assert "--min-speedup" in cli
    compressors = (tmp_path / "site" / "reference" / "compressors" / "index.html").read_text()
    assert all(name in compressors for name in COMPRESSORS.names()) and "keep_float_layers" in compressors
    knobs_page = (tmp_path / "site" / "reference" / "knobs" / "index.html").read_text()
    assert all(name in knobs_page for name in SEARCH_KNOBS.names())
    metrics = (tmp_path / "site" / "reference" / "metrics" / "index.html").read_text()
    assert "latency_p50" in metrics and "loop_psnr" in metrics
    settings = (tmp_path / "site" / "reference" / "settings" / "index.html").read_text()
    assert "min_duration_s" in settings and "max_memory_mb" in settings
    assert (tmp_path / "site" / "guides" / "optimize" / "index.html").is_file()
