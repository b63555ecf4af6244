"""The report of a user's run: which project, config file, checkpoint and commit it measured; why a best-variant
table is empty; repeated warnings grouped; Pareto labels that do not overprint; wide tables that scroll inside the
page (checked in a real headless Chromium, like ``test_report_views``)."""
from __future__ import annotations

import dataclasses
import hashlib
import html as htmllib
import itertools
import json
import re
import subprocess
from types import SimpleNamespace
from xml.etree import ElementTree as ET

import pytest

from harness.report import write_report
from harness.report.html import warnings
from harness.report.tables import summary_frame
from harness.results.store import ResultsStore
from harness.worker import flag_contention
from tests.helpers import QUICK_SETTINGS_TOML
from tests.test_gate import job, lognormal
from tests.test_project import Net, project, write_config  # noqa: F401  (project: the fixture)
from tests.test_report_views import chromium, needs_chromium

SHA = "5f" * 32
USER_CONTEXT = {
    "commit": "1111111111111111111111111111111111111111", "harness_version": "0.9.0", "suite": "mine",
    "project": "/home/ana/studio/edge-harness.toml",
    "project_commit": "abcdef0123456789abcdef0123456789abcdef01+dirty",
    "model_source": "/home/ana/studio/edge-harness.toml",
    "checkpoint": {"path": "/home/ana/studio/weights/generator.safetensors", "key": "ema", "strict": True,
                   "sha256": SHA},
}


def report(tmp_path, records) -> str:
    store = ResultsStore(tmp_path / "results.jsonl")
    for r in records:
        store.append(r)
    return write_report(store.path)["html"].read_text()


def section(html: str, anchor: str) -> str:
    """The page from ``id="anchor"`` to the next h2."""
    start = html.index(f'id="{anchor}"')
    end = html.find("<h2", start)
    return html[start:end if end > 0 else None]


def text_of(fragment: str) -> str:
    return htmllib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)))


# --- what was measured ---------------------------------------------------------------------------------------------

def test_the_page_names_project_config_checkpoint_and_commits(tmp_path):
    records = [dataclasses.replace(job(lognormal(1)), context=dict(USER_CONTEXT)),
               dataclasses.replace(job(lognormal(2), variant="int8"), context=dict(USER_CONTEXT))]
    block = text_of(section(report(tmp_path, records), "project"))
    assert "/home/ana/studio" in block and "/home/ana/studio/edge-harness.toml" in block
    assert "abcdef0123456789abcdef0123456789abcdef01+dirty" in block  # the project's commit, whole
    assert "/home/ana/studio/weights/generator.safetensors" in block and "ema" in block and SHA in block
    assert "1111111111111111111111111111111111111111" in block and "0.9.0" in block  # the harness that measured
    assert block.count(SHA) == 1  # one model, one checkpoint: one row, whatever the number of jobs


def test_a_run_without_project_says_built_ins(tmp_path):
    block = text_of(section(report(tmp_path, [job(lognormal(1))]), "project"))
    assert "no project config" in block


def test_a_context_of_any_shape_is_read_as_text(tmp_path):
    """A record's context holds whatever its writer put there (the results fuzz test once gave a list as the commit:
    unhashable); the project block reads every value as text."""
    odd = dataclasses.replace(job(lognormal(1)), context={
        "project": ["a", "b"], "project_commit": {"x": 1}, "commit": ["c"], "harness_version": 3,
        "suite": ["s"], "model_source": 7, "checkpoint": ["not", "a", "table"]})
    block = text_of(section(report(tmp_path, [odd]), "project"))
    assert "['a', 'b']" in block and "['c']" in block


# --- an empty best-variant table says why --------------------------------------------------------------------------

def contended(r, others=1.2):
    return dataclasses.replace(r, context={"contention": {"contended": True, "others_cores": others,
                                                          "limit_cores": 1.0}})


@pytest.mark.parametrize("records, expected", [
    ([contended(job(lognormal(1))), contended(job(lognormal(2), variant="int8"), 1.5)],
     ["every job's latency pass was disturbed (2 of 2", "other processes kept 1.20 CPU(s) busy",
      "re-run on a quiet machine"]),
    ([job(lognormal(1), psnr=12.0), job(lognormal(2), variant="int8", psnr=21.5)],
     ["no job passed the fidelity bar", "best PSNR 21.5 dB, by int8 onnx/onnxruntime"]),
    ([job(status="failed", error="boom"), job(variant="int8", status="timeout")],
     ["no job succeeded (1 failed, 1 timeout)"]),
    ([contended(job(lognormal(1))), job(lognormal(2), variant="int8", psnr=12.0), job(variant="fp16", status="oom")],
     ["1 oom", "1 disturbed", "1 below the fidelity bar"]),
])
def test_an_empty_best_variant_table_says_why(tmp_path, records, expected):
    best = text_of(section(report(tmp_path, records), "best"))
    assert "No best variant for gen · x86-cpu · batch 1:" in best
    for phrase in expected:
        assert phrase in best


def test_a_group_with_a_winner_gets_no_excuse(tmp_path):
    best = text_of(section(report(tmp_path, [job(lognormal(1)), contended(job(lognormal(2), variant="int8"))]),
                           "best"))
    assert "No best variant" not in best and "fp32" in best


# --- repeated warnings ---------------------------------------------------------------------------------------------

def twelve_contended_jobs():
    """A 12-job run on a busy machine: each job's latency pass and its retry flagged by the worker's own check."""
    settings = SimpleNamespace(contention_max_cores=1.0)
    records = []
    for i in range(12):
        context: dict = {}
        for others in (1.05 + 0.05 * i, 1.5 + 0.05 * i):
            busy = flag_contention(settings, {"others_cores": others, "cpus": [0, 1]}, context)
        context["contention"] = busy
        records.append(dataclasses.replace(job(lognormal(i), variant=f"v{i:02d}"), job_key=f"k{i}",
                                           context=context))
    return records


def test_repeated_warnings_are_grouped_with_a_count_and_their_jobs(tmp_path):
    records = twelve_contended_jobs()
    found = warnings(records, summary_frame(records).assign(flags=""))
    worker = [w for w in found if "of the worker's" in w]
    assert len(worker) == 1, worker
    assert "other processes kept 1.05–2.05 of the worker's 2 CPU(s) busy" in worker[0]
    assert "(×24 in 12 jobs" in worker[0]

    page = report(tmp_path, records)
    items = re.findall(r"<li>(.*?)</li>\s*(?=<li>|</ul>)", section(page, "warnings"), re.S)
    grouped = [text_of(i) for i in items if "of the worker" in i]
    assert len(grouped) == 1 and "×24 in 12 jobs" in grouped[0]
    assert all(f"gen · v{i:02d} · onnx/onnxruntime" in grouped[0] for i in range(12))  # which jobs, folded
    assert "<details" in items[[i for i, t in enumerate(items) if "of the worker" in t][0]]
    assert len(items) <= 4  # the disturbed-jobs headline, the worker's sentence, the variants' flag: no 24 bullets


def test_a_warning_seen_once_keeps_its_job_in_front(tmp_path):
    hot = dataclasses.replace(job(lognormal(1)), context={"warnings": ["temperature rose 50 → 80 °C"]})
    assert warnings([hot], summary_frame([hot])) == [
        "gen · fp32 · onnx/onnxruntime · b1 · x86-cpu: temperature rose 50 → 80 °C"]


# --- Pareto labels -------------------------------------------------------------------------------------------------

def crowded_front(n: int = 14):
    """``n`` variants, each a little slower and more faithful than the last: all on the front, markers close."""
    return [job(lognormal(i, median=1.0 + 0.02 * i, sigma=0.01), variant=f"prune-l1-{i:02d}", psnr=30.0 + i)
            for i in range(n)]


def pareto_svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(s) for s in re.findall(r'<svg[^>]*aria-label="Pareto plot.*?</svg>', page, re.S)]


def label_box(text: ET.Element) -> tuple[float, float, float, float]:
    """A generous guess at an 11 px label's box (left, top, right, bottom in px): 0.6 em a character."""
    x, y, width = float(text.get("x")), float(text.get("y")), 0.6 * 11 * len(text.text or "")
    left = x - width if text.get("text-anchor") == "end" else x
    return left, y - 9, left + width, y + 3


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_pareto_labels_do_not_overprint(tmp_path):
    page = report(tmp_path, crowded_front())
    (svg,) = pareto_svgs(page)
    labels = [t for t in svg.findall("text")]  # the axis's texts are in its <g>
    front = [c.find("title").text.split(":")[0] for c in svg.findall("circle") if "front" in c.get("class")]
    assert len(front) == 14
    boxes = [label_box(t) for t in labels]
    for (a, ta), (b, tb) in itertools.combinations(zip(boxes, labels), 2):
        assert not overlap(a, b), (ta.text, tb.text)
    width = float(svg.get("width"))
    assert all(0 <= box[0] and box[2] <= width for box in boxes)
    unlabelled = text_of(section(page, "pareto").split("</svg>")[1].split("<h3")[0])
    assert all(name in {t.text for t in labels} or name in unlabelled for name in front)
    assert len(labels) >= 6  # placed, not dropped wholesale


def test_label_placement_keeps_labels_leaders_and_bounds_apart():
    from harness.report.plots import _segment_hits_box, place_labels

    markers = [(200 + 9 * i, 120 - 4 * i, 6 + i % 3) for i in range(16)]  # a tight diagonal run of markers
    texts = [f"variant-{i} onnx/onnxruntime" for i in range(16)]
    bounds = (0.0, 0.0, 600.0, 260.0)
    spots = place_labels(markers, texts, list(range(16)), bounds)
    assert spots == place_labels(markers, texts, list(range(16)), bounds)  # deterministic
    placed = [s for s in spots if s is not None]
    assert len(placed) >= 10
    for a, b in itertools.combinations(placed, 2):
        assert not overlap(a["box"], b["box"])
    for s in placed:
        box = s["box"]
        assert bounds[0] <= box[0] and bounds[1] <= box[1] and box[2] <= bounds[2] and box[3] <= bounds[3]
        assert box[1] < s["y"] < box[3]  # the baseline inside its box
        assert not any(_segment_hits_box(o["leader"], box) for o in placed if o is not s and o["leader"])


# --- in the browser ------------------------------------------------------------------------------------------------

MEASURE = """<script>
window.addEventListener("load", function () {
  var labels = [];
  document.querySelectorAll('svg[aria-label^="Pareto plot"] > text').forEach(function (t) {
    var b = t.getBBox();
    labels.push({text: t.textContent, x: b.x, y: b.y, w: b.width, h: b.height});
  });
  var out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({scrollWidth: document.documentElement.scrollWidth,
                                    innerWidth: window.innerWidth, labels: labels});
  document.body.appendChild(out);
});
</script>"""


def measured_in_chromium(page, width: int) -> dict:
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    proc = chromium(f"--window-size={width},900", "--virtual-time-budget=3000", "--dump-dom", probe.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="measured">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stdout[-2000:]
    return json.loads(htmllib.unescape(found.group(1)))


@needs_chromium
def test_in_chromium_the_page_never_scrolls_sideways_and_labels_stay_apart(tmp_path):
    busy = [dataclasses.replace(r, model="busy", context=r.context | USER_CONTEXT) for r in twelve_contended_jobs()]
    records = crowded_front() + busy
    report(tmp_path, records)
    got = measured_in_chromium(tmp_path / "index.html", 800)
    assert got["innerWidth"] == 800
    assert got["scrollWidth"] <= got["innerWidth"], got["scrollWidth"]  # the variants table is ~1500 px wide
    boxes = [(b["x"], b["y"], b["x"] + b["w"], b["y"] + b["h"]) for b in got["labels"]]
    assert len(boxes) >= 6
    for (a, la), (b, lb) in itertools.combinations(zip(boxes, got["labels"]), 2):
        shrunk = (a[0] + 0.5, a[1] + 0.5, a[2] - 0.5, a[3] - 0.5)  # sub-pixel font metrics
        assert not overlap(shrunk, b), (la, lb)


# --- a real user project, end to end -------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_users_run_report_names_its_project_checkpoint_and_commit(project, tmp_path):
    from safetensors.torch import save_file

    from tests.test_results_fuzz import cli

    save_file({k: v.contiguous() for k, v in Net(8).state_dict().items()}, project / "w.safetensors")
    write_config(project)
    (project / "s.toml").write_text('models = ["net"]\ntargets = ["x86-cpu"]\nformats = ["onnx"]\n'
                                    + QUICK_SETTINGS_TOML)
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    out = tmp_path / "run"
    code, err = cli("run", "--suite", str(project / "s.toml"), "--out", str(out), "--no-progress",
                    "--cache", str(tmp_path / "cache"))
    assert code == 0, err
    block = text_of(section((out / "index.html").read_text(), "project"))
    assert str(project / "edge-harness.toml") in block and head in block
    assert str(project / "w.safetensors") in block
    assert hashlib.sha256((project / "w.safetensors").read_bytes()).hexdigest() in block

