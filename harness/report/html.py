"""The HTML view: one self-contained page (inline CSS and SVG, no network), autoescaped by jinja2."""
from __future__ import annotations

import base64
import math
import re
from pathlib import Path
from typing import Any, Sequence

import jinja2
import pandas as pd

from harness.analysis.disturbance import disturbance
from harness.analysis.fit import fit_of
from harness.report.compression import LABEL_AGREEMENT_FLOOR, PSNR_FLOOR_DB
from harness.report.images import reference_file, sample_file
from harness.analysis.metrics import CATALOGUE
from harness.report.lab import lab_lanes, read_lab
from harness.report.plots import (best_variant_gaps, best_variants, latency_boxes, pareto_plots, per_target, start_bars,
                                   sustained_views)
from harness.report.profile import roofline_plots, time_breakdown
from harness.stats import robust_cv
from harness.types import RunRecord

HIGH_CV = 0.10
"""Robust coefficient of variation (1.4826·MAD / median) above which a job's latency is called noisy. Robust, so
that a few outliers (one page fault in thousands of runs) do not flag a steady job."""

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("harness.report", "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
)


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


_ENV.filters["fmt"] = _fmt


def variant_groups(summary: pd.DataFrame) -> list[dict]:
    """Per model, target and batch size: every variant's jobs, fp32 first, when the run has variants."""
    if summary.empty or set(summary["variant"]) <= {"fp32"}:
        return []
    groups = []
    for (model, target, batch), frame in summary.groupby(["model", "target", "batch_size"], sort=True):
        frame = frame.assign(_base=frame["variant"] != "fp32").sort_values(["_base", "variant", "format", "runtime"])
        groups.append({"model": model, "target": target, "batch": batch, "rows": frame.to_dict("records")})
    return groups


def loop_rows(summary: pd.DataFrame) -> list[dict]:
    """Jobs of denoisers measured over their whole sampling loop, for the one-step vs loop table."""
    if summary.empty or "loop_latency_p50_ms" not in summary.columns:
        return []
    frame = summary[summary["loop_latency_p50_ms"].notna()]
    frame = frame.assign(_base=frame["variant"] != "fp32").sort_values(
        ["model", "target", "batch_size", "_base", "variant", "format", "runtime"])
    return frame.to_dict("records")


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _job_name(r: Any) -> str:
    return f"{r.model} · {r.variant} · {r.format}/{r.runtime} · b{r.batch_size} · {r.target}"


def warnings(records: Sequence[RunRecord], summary: pd.DataFrame) -> list[str]:
    """What a reader must know before trusting the numbers, each saying what to do about it; a warning several
    jobs share is one line with its count and first jobs (``warning_groups``)."""
    lines = []
    for w in warning_groups(records, summary):
        jobs = w["jobs"]
        if len(jobs) > 1:
            shown = ", ".join(jobs[:3]) + (", …" if len(jobs) > 3 else "")
            lines.append(f"{w['text']} (×{w['count']} in {len(jobs)} jobs: {shown})")
        else:
            lines.append(w["text"])
    return lines


def group_job_warnings(found: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """(job, warning) pairs → one entry per warning text, its figures left out of the match: {"text", "count",
    "jobs"}, in first-seen order. Figures that differ between jobs are shown as their range (lowest–highest);
    a warning of one job keeps the job's name in front."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for job, text in found:
        groups.setdefault(_NUMBER.sub("#", text), []).append((job, text))
    out = []
    for members in groups.values():
        jobs = list(dict.fromkeys(job for job, _ in members))
        text = _merge_figures([text for _, text in members])
        if len(jobs) == 1:
            text = f"{jobs[0]}: {text}" + (f" (×{len(members)})" if len(members) > 1 else "")
        out.append({"text": text, "count": len(members), "jobs": jobs})
    return out


def _merge_figures(texts: Sequence[str]) -> str:
    """Texts alike but for their figures → one text, each figure that varies written as lowest–highest."""
    words = _NUMBER.split(texts[0])
    figures = list(zip(*(_NUMBER.findall(t) for t in texts)))
    merged = []
    for values in figures:
        lo, hi = min(values, key=float), max(values, key=float)
        merged.append(lo if float(lo) == float(hi) else f"{lo}–{hi}")
    return "".join(w + (merged[i] if i < len(merged) else "") for i, w in enumerate(words))


def warning_groups(records: Sequence[RunRecord], summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The report's warnings as {"text", "count", "jobs"}: run-wide ones first (noisy jobs, disturbed jobs,
    emulation, modelled energy: "jobs" empty), then each job's own (its worker's warnings and its variant's flags)
    grouped by text (``group_job_warnings``)."""
    found, noisy, per_job = [], [], []
    for r in records:
        lat = r.measurement("latency")
        job = _job_name(r)
        if r.status == "ok" and lat is not None and lat.samples and "emulated" not in lat.method:
            cv = robust_cv(lat.samples)
            if cv > HIGH_CV:
                noisy.append((cv, job))
        for w in r.context.get("warnings", ()) or ():
            per_job.append((job, str(w)))
    if noisy:
        noisy.sort(reverse=True)
        worst = "; ".join(f"{job} {cv:.0%}" for cv, job in noisy[:3])
        found.insert(0, f"{len(noisy)} jobs with a noisy latency distribution (robust CV = 1.4826·MAD/median > "
                        f"{HIGH_CV:.0%}; worst: {worst}): close other programs, use fewer threads (e.g. target "
                        "x86-cpu-1t) or a longer min_duration_s")
    disturbed = [(_job_name(r), why)
                 for r in records if r.status == "ok" and (why := disturbance(r) or disturbance(r, "loop"))]
    if disturbed:
        found.insert(0, f"{len(disturbed)} jobs timed on a disturbed machine, kept out of the best-variant table, "
                        f"speed-ups and the gate (first: {disturbed[0][0]}: {disturbed[0][1]}): stop the other load "
                        "and re-run them, or set quiet_wait_s / contention_retries in the suite's [settings]")
    emulated = sorted({r.target for r in records
                       if (m := r.measurement("latency")) is not None and "emulated" in m.method})
    for target in emulated:
        found.append(f"{target}: timings come from an emulated CPU (qemu-user) and are labelled 'emulated': "
                     "they show that artifacts load and agree, not how fast a real board is")
    modelled = sorted({r.target for r in records
                       if (m := r.measurement("energy_per_inference")) is not None and m.method == "modelled"})
    for target in modelled:
        found.append(f"{target}: energy is modelled from CPU time and the profile's power model, not measured "
                     "(see each figure's error band)")
    if "flags" in summary:
        for row in summary[summary["flags"].fillna("") != ""].to_dict("records"):
            job = (f"{row['model']} · {row['variant']} · {row['format']}/{row['runtime']} · b{row['batch_size']} · "
                   f"{row['target']}")
            per_job.extend((job, flag) for flag in str(row["flags"]).split("; "))  # one finding each
    return [{"text": text, "count": 1, "jobs": []} for text in found] + group_job_warnings(per_job)


def project_context(records: Sequence[RunRecord]) -> dict[str, Any]:
    """What the records were measured from: the user's project (its folder, config file and git commit, '' when
    not in git), the harness (version, commit), the suites, and each model's source file and checkpoint (path,
    state_dict key, strict, sha256); distinct values, in first-seen order."""
    projects, harnesses, suites, models = {}, {}, {}, {}

    def text(value: Any) -> str:  # a context holds whatever a record's writer put there: read as text
        return "" if value is None else str(value)

    for r in records:
        ctx = r.context if isinstance(r.context, dict) else {}
        if ctx.get("project"):
            config, commit = text(ctx["project"]), text(ctx.get("project_commit"))
            projects[(config, commit)] = {"folder": str(Path(config).parent), "config": config, "commit": commit}
        if ctx.get("harness_version") or ctx.get("commit"):
            version, commit = text(ctx.get("harness_version")), text(ctx.get("commit"))
            harnesses[(version, commit)] = {"version": version, "commit": commit}
        if ctx.get("suite"):
            suites[text(ctx["suite"])] = None
        checkpoint = ctx.get("checkpoint") if isinstance(ctx.get("checkpoint"), dict) else {}
        if ctx.get("model_source") or checkpoint:
            source = text(ctx.get("model_source"))
            key = (r.model, source, text(checkpoint.get("path")), text(checkpoint.get("sha256")))
            models[key] = {"model": r.model, "source": source, "checkpoint": checkpoint}
    return {"projects": list(projects.values()), "harness": list(harnesses.values()), "suites": list(suites),
            "models": list(models.values())}


def loadgen_rows(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """Jobs measured by MLPerf LoadGen too: the harness's loop and LoadGen's scenarios side by side."""
    if summary.empty or "loadgen_ss_p50_ms" not in summary:
        return []
    measured = summary[summary["loadgen_ss_p50_ms"].notna() | summary["loadgen_offline_items_s"].notna()]
    rows = []
    for row in measured.to_dict("records"):
        ratio = (row["loadgen_ss_p50_ms"] / row["latency_p50_ms"]
                 if row.get("loadgen_ss_p50_ms") and row.get("latency_p50_ms") else None)
        rows.append(row | {"ss_p50_ratio": ratio})
    return rows


def _data_uri(path: Path) -> str | None:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.is_file() else None


def sample_grids(records: Sequence[RunRecord], run_dir: Path) -> list[dict[str, Any]]:
    """Per model and batch: the fp32 reference's samples, then every successful job's, same latents."""
    groups: dict[tuple, dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: (r.model, r.batch_size, r.variant != "fp32", r.variant, r.format,
                                            r.runtime, r.target)):
        image = _data_uri(sample_file(run_dir, r.job_key)) if r.status == "ok" else None
        if image is None:
            continue
        group = groups.setdefault((r.model, r.batch_size), {
            "model": r.model, "batch": r.batch_size, "rows": [],
            "reference": _data_uri(reference_file(run_dir, r.model, r.batch_size))})
        psnr = r.measurement("psnr")
        group["rows"].append({"label": f"{r.variant} · {r.format}/{r.runtime} · {r.target}", "image": image,
                              "psnr": psnr.value if psnr else None})
    return list(groups.values())


def run_contexts(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Distinct machine contexts of the run, with CPU governor, frequency and temperature where readable."""
    contexts, seen = [], set()
    for r in records:
        keys = ("cpu_model", "cores_available", "threads", "python", "os", "commit", "runtime_versions")
        ctx = {k: r.context.get(k) for k in keys}
        before, after = r.context.get("cpu_state_before") or {}, r.context.get("cpu_state_after") or {}
        ctx["governor"] = before.get("governor")
        ctx["freq"] = " → ".join(f"{v:.0f}" for v in (before.get("freq_mhz"), after.get("freq_mhz")) if v)
        ctx["temp"] = " → ".join(f"{v:.0f}" for v in (before.get("temp_c"), after.get("temp_c")) if v is not None)
        key = repr(sorted((k, v) for k, v in ctx.items() if k not in ("freq", "temp")))
        if any(v for v in ctx.values()) and key not in seen:
            seen.add(key)
            contexts.append({"target": r.target, "runtime": r.runtime, **ctx})
    return contexts


def fit_rows(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Will it fit: per job with a verdict (measured, or estimated where it could not run), the figures against its
    target's ``[fit]``; the budgets' sources once per target."""
    rows = []
    for r in records:
        fit = fit_of(r, records)
        if fit is not None:
            rows.append({"model": r.model, "variant": r.variant, "format": r.format, "runtime": r.runtime,
                         "target": r.target, "batch_size": r.batch_size, "status": r.status, **fit.to_dict(),
                         "estimated": fit.estimated})
    return rows


def write_html(records: Sequence[RunRecord], summary: pd.DataFrame, path: Path, title: str,
               run_dir: Path | None = None) -> None:
    """Render the report; ``run_dir`` holds the samples/ folder (default: the HTML's folder)."""
    failures = [r for r in records if r.status != "ok"]
    html = _ENV.get_template("report.html.j2").render(
        title=title,
        rows=summary.to_dict("records"),
        best=best_variants(summary, PSNR_FLOOR_DB, LABEL_AGREEMENT_FLOOR),
        best_gaps=best_variant_gaps(summary, PSNR_FLOOR_DB, LABEL_AGREEMENT_FLOOR),
        project=project_context(records),
        psnr_floor=PSNR_FLOOR_DB,
        label_floor=LABEL_AGREEMENT_FLOOR,
        variant_groups=variant_groups(summary),
        loop_rows=loop_rows(summary),
        breakdown=time_breakdown(records),
        rooflines=roofline_plots(records),
        boxes=latency_boxes(records),
        pareto=pareto_plots(summary),
        targets=per_target(summary),
        grids=sample_grids(records, run_dir or path.parent),
        warnings=warning_groups(records, summary),
        contexts=run_contexts(records),
        lab=lab_lanes(records, read_lab(run_dir or path.parent)),
        loadgen=loadgen_rows(summary),
        fit=fit_rows(records),
        starts=start_bars(records),
        sustained=sustained_views(records),
        failures=failures,
        n_ok=sum(1 for r in records if r.status == "ok"),
        n_total=len(records),
        metrics=[m for m in CATALOGUE if any(m.value(r) is not None for r in records if r.status == "ok")],
    )
    path.write_text(html, encoding="utf-8")
