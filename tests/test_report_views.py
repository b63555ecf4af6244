"""The report's views: sample grids, plot geometry, warnings, and the whole page in a real headless Chromium."""
from __future__ import annotations

import dataclasses
import io
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from harness.report.html import warnings
from harness.report.images import as_images, grid_png, reference_file, sample_file, save_sample_grids
from harness.report.plots import best_variants, log_axis, pareto_plots
from harness.types import Measurement
from tests.test_cli import harness
from tests.test_gate import job, lognormal

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian package 'chromium' is not installed "
                                                              "(make setup installs it when run as root)")


def test_generator_outputs_become_images():
    assert as_images(np.zeros((4, 1, 8, 8))).shape == (4, 8, 8)
    assert as_images(np.zeros((4, 3, 8, 8))).shape == (4, 8, 8, 3)
    assert as_images(np.zeros((4, 64))).shape == (4, 8, 8)
    assert as_images(np.zeros((4, 192))).shape == (4, 8, 8, 3)
    assert as_images(np.zeros((4, 10))) is None
    assert as_images(np.zeros((4, 2, 8, 8))) is None


def test_grid_png_maps_the_value_range_and_scales():
    from PIL import Image

    images = np.stack([np.full((2, 2), -1.0), np.full((2, 2), 1.0), np.full((2, 2), 0.0)])
    png = Image.open(io.BytesIO(grid_png(images, (-1.0, 1.0), scale=2)))
    assert png.size == ((3 * 3 - 1) * 2, 2 * 2)  # 3 images of 2 px with 1-px gaps, doubled
    pixels = np.asarray(png)
    assert pixels[0, 0] == 0 and pixels[0, 6] == 255 and pixels[0, 12] == 128 and pixels[0, 4] == 255  # gap white


def test_sample_grids_share_the_reference_scale(tmp_path):
    ref = [np.linspace(-1, 1, 2 * 64).reshape(2, 1, 8, 8).astype(np.float32)]
    assert save_sample_grids(tmp_path, "job-a", "gen", 1, ref, ref) == sample_file(tmp_path, "job-a")
    assert sample_file(tmp_path, "job-a").read_bytes() == reference_file(tmp_path, "gen", 1).read_bytes()
    dimmer = [ref[0] * 0.5]
    save_sample_grids(tmp_path, "job-b", "gen", 1, dimmer, ref)
    assert sample_file(tmp_path, "job-b").read_bytes() != reference_file(tmp_path, "gen", 1).read_bytes()
    assert save_sample_grids(tmp_path, "job-c", "gen", 1, [np.zeros((2, 10))], [np.zeros((2, 10))]) is None


def test_log_axis_ticks_are_1_2_5_steps_inside_the_range():
    a, b, ticks = log_axis(0.03, 4.0)
    labels = [label for _, label in ticks]
    assert labels == ["0.05", "0.1", "0.2", "0.5", "1", "2", "5"]  # the axis ends at 10^0.7 ≈ 5.01
    assert all(0 <= pos <= 1 for pos, _ in ticks) and a <= np.log10(0.03) and b >= np.log10(4.0)


def summary_rows(*rows):
    base = {"model": "gen", "target": "x86-cpu", "batch_size": 1, "format": "onnx", "runtime": "onnxruntime",
            "status": "ok", "label_agreement": None, "speedup_vs_fp32_onnxruntime": None}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_pareto_front_and_best_faithful_variant():
    summary = summary_rows(
        {"variant": "fp32", "latency_p50_ms": 1.0, "psnr_db": None, "size_mb": 4.0},
        {"variant": "fast-bad", "latency_p50_ms": 0.2, "psnr_db": 12.0, "size_mb": 1.0},
        {"variant": "good", "latency_p50_ms": 0.5, "psnr_db": 35.0, "size_mb": 1.0},
        {"variant": "dominated", "latency_p50_ms": 0.8, "psnr_db": 20.0, "size_mb": 2.0},
    )
    (plot,) = pareto_plots(summary)
    front = {p["label"].split()[0] for p in plot["points"] if p["front"]}
    assert front == {"fp32", "fast-bad", "good"}
    assert all(0 < p["x"] < 1 and 0 < p["y"] < 1 for p in plot["points"])
    (best,) = best_variants(summary, min_psnr=30.0, min_labels=0.9)
    assert best["variant"] == "good"


def test_warnings_name_noisy_jobs_emulation_state_changes_and_flags():
    steady = job(lognormal(1))
    noisy = dataclasses.replace(job(lognormal(2, sigma=0.4)), variant="noisy")
    spiky = job(np.concatenate([lognormal(3), [500.0] * 3]))  # a few outliers: robust CV stays low
    lat = steady.measurement("latency")
    emulated = dataclasses.replace(steady, target="rpi4-emulated", measurements=(
        dataclasses.replace(lat, method="perf_counter+emulated"),))
    hot = dataclasses.replace(steady, context={"warnings": ["temperature rose 50 → 80 °C during the run"]})
    summary = summary_rows({"variant": "int8", "flags": "changed nothing: outputs identical to fp32 onnx/onnxruntime"})
    found = warnings([steady, noisy, spiky, emulated, hot], summary)
    assert sum("noisy latency" in w for w in found) == 1 and "1 jobs" in found[0] and "noisy" in found[0]
    assert any("rpi4-emulated" in w and "emulated CPU" in w for w in found)
    assert any("temperature rose" in w for w in found)
    assert any("int8" in w and "changed nothing" in w for w in found)
    assert not warnings([steady], summary_rows())


def test_energy_modelled_warning():
    r = job(lognormal(1), energy=0.01)
    assert any("modelled" in w for w in warnings([r], summary_rows()))
    measured = dataclasses.replace(r, measurements=tuple(
        dataclasses.replace(m, method="rapl") if m.metric == "energy_per_inference" else m for m in r.measurements))
    assert not any("modelled" in w for w in warnings([measured], summary_rows()))


# --- the whole page, from a real run -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, tiny_models_dir, shared_cache):
    out = tmp_path_factory.mktemp("report") / "run"
    proc = harness("run", "--model", "tiny_gen", "--variant", "fp16", "--variant", "prune-l1-50", "--format", "onnx",
                   "--format", "tflite", "--quick", "--out", str(out), "--cache", str(shared_cache), "--no-progress",
                   env={"EDGE_HARNESS_MODELS": str(tiny_models_dir)})
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.slow
def test_report_page_has_every_section_and_embeds_its_images(report_dir):
    html = (report_dir / "index.html").read_text()
    for anchor in ("best", "warnings", "latency", "pareto", "samples", "variants", "memory", "jobs", "context"):
        assert f'id="{anchor}"' in html
    jobs_ok = sum(1 for line in (report_dir / "results.jsonl").read_text().splitlines() if '"status": "ok"' in line)
    assert html.count('<img class="samples" src="data:image/png;base64,') == jobs_ok + 2  # + a reference per batch
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing fetched from a network
    assert "Content-Security-Policy" in html
    assert html.count("<circle") >= 6  # Pareto markers: fp32, fp16, pruned × formats, per batch size


def chromium(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", *args], capture_output=True, text=True, timeout=timeout)


def console_messages(page) -> list[str]:
    """Console output of a page loaded in headless Chromium: errors, CSP violations, failed loads, logs."""
    proc = chromium("--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "</html>" in proc.stdout
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


@needs_chromium
def test_browser_check_catches_console_errors_and_network_loads(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<!doctype html><html><head><meta http-equiv="Content-Security-Policy" content="default-src '
                    "'none'; img-src data:; script-src 'unsafe-inline'\"></head><body>"
                    '<img src="https://cdn.example.com/x.png"><script>undefinedFunction();</script></body></html>')
    messages = "\n".join(console_messages(page))
    assert "Content Security Policy" in messages and "undefinedFunction is not defined" in messages


@pytest.mark.slow
@needs_chromium
def test_report_loads_in_headless_chromium_without_console_errors(report_dir):
    page = report_dir / "index.html"
    assert console_messages(page) == []
    shot = report_dir / "screenshot.png"
    proc = chromium("--hide-scrollbars", "--window-size=1400,2400", f"--screenshot={shot}", page.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2400, 1400)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # drawn: text, plots and samples, not a blank page


def test_per_target_table_renders_in_the_page(tmp_path):
    from harness.report import write_report
    from harness.results.store import ResultsStore

    store = ResultsStore(tmp_path / "results.jsonl")
    store.append(job(lognormal(1)))
    store.append(dataclasses.replace(job(lognormal(2, median=40.0)), target="rpi4", job_key="b"))
    html = write_report(store.path)["html"].read_text()
    assert 'id="targets"' in html and "<th>rpi4</th>" in html and "<td>40</td>" in html.replace("<td>40.0</td>", "<td>40</td>")


def test_gpu_columns_appear_only_when_a_job_has_gpu_figures(tmp_path):
    from harness.rounds import device_latency
    from harness.report import write_report
    from harness.results.store import ResultsStore

    cpu_only = ResultsStore(tmp_path / "cpu" / "results.jsonl")
    cpu_only.append(job(lognormal(1)))
    assert "CUDA events" not in write_report(cpu_only.path)["html"].read_text()

    gpu = job(lognormal(2))
    gpu = dataclasses.replace(gpu, target="cuda-gpu", runtime="torch-cuda", job_key="g", measurements=gpu.measurements + (
        device_latency([0.25, 0.4375, 0.75], "cuda-event"),
        Measurement("gpu_memory", 7.25 * 2**20, "bytes", "nvml-process")))
    both = ResultsStore(tmp_path / "gpu" / "results.jsonl")
    both.append(job(lognormal(1)))
    both.append(gpu)
    html = write_report(both.path)["html"].read_text()
    assert "<th>GPU p50 ms (CUDA events)</th>" in html and "<th>GPU memory MB</th>" in html
    assert "<td>0.438</td>" in html and "<td>7.25</td>" in html  # 0.4375 ms to 3 digits, 7.25 MiB: no other cell
