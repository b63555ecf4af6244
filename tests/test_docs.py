"""The documentation site builds, strictly (no broken link, no page outside the nav), its reference pages are
generated from the code (every command, metric, compressor, search knob, configuration key, record field and test
file appears without anyone writing it down), and its pages open in the real headless Chromium the report tests use,
every link inside the site landing on a file of the site."""
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
    import harness.compress  # noqa: F401  (names the built-in compressors)
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
    files = (tmp_path / "site" / "reference" / "files" / "index.html").read_text()
    for key in ("export_tolerance", "known_hosts", "graph_optimization", "xnnpack", "fail_on_unjudged",
                "time_limit", "join_timeout_s", "output_range"):
        assert key in files, key
    results = (tmp_path / "site" / "reference" / "results" / "index.html").read_text()
    assert "schema_version" in results and "artifact_id" in results and "unreachable" in results
    protocol = (tmp_path / "site" / "reference" / "protocol" / "index.html").read_text()
    from harness.protocol import MODES, PROTOCOL_VERSION

    assert f"Version <strong>{PROTOCOL_VERSION}</strong>" in protocol and all(m in protocol for m in MODES)
    registries = (tmp_path / "site" / "reference" / "registries" / "index.html").read_text()
    assert "LAUNCHERS" in registries and "for_target" in registries and "jetson-ina" in registries
    tests = (tmp_path / "site" / "reference" / "tests" / "index.html").read_text()
    assert all(p.name in tests for p in (PROJECT_ROOT / "tests").glob("test_*.py"))
    _check_links(tmp_path / "site")
    _open_in_chromium(tmp_path / "site")


def _check_links(site: Path) -> None:
    """Every href and src inside the site that is not an external address lands on a file of the site."""
    from html.parser import HTMLParser
    from urllib.parse import unquote, urlsplit

    class Links(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.found += [v for k, v in attrs if k in ("href", "src") and v]

    broken = []
    for page in site.rglob("*.html"):
        parser = Links()
        parser.feed(page.read_text())
        for link in parser.found:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or not parts.path:
                continue  # an external address, or an anchor on the same page
            path = unquote(parts.path)
            target = (site / path.lstrip("/") if path.startswith("/") else page.parent / path).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(site)} → {link}")
    assert broken == []


def _open_in_chromium(site: Path) -> None:
    from tests.test_report_views import CHROMIUM, chromium

    if CHROMIUM is None:
        pytest.skip("Debian package 'chromium' is not installed: the site was built and its links checked")
    for page in ("index.html", "reference/cli/index.html", "reference/metrics/index.html"):
        proc = chromium("--dump-dom", (site / page).as_uri())
        assert proc.returncode == 0 and "</html>" in proc.stdout, proc.stderr[-2000:]
        assert "Edge Harness" in proc.stdout and "Getting started" in proc.stdout  # the navigation rendered
    cli = chromium("--dump-dom", (site / "reference" / "cli" / "index.html").as_uri()).stdout
    from harness.cli import _parser

    sub = next(a for a in _parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert all(f"harness {name}" in cli for name in sub.choices)  # every verb, as the browser shows it
    metrics = chromium("--dump-dom", (site / "reference" / "metrics" / "index.html").as_uri()).stdout
    from harness.analysis.metrics import CATALOGUE

    assert all(m.name in metrics for m in CATALOGUE)
