"""The report's "where the time goes" views of the records' profile passes (pure: records in, rows and 0..1 plot
geometry out): per model, target and batch, one stacked bar per job — its op families' time per inference, side by
side across runtimes and variants — with the heaviest ops, the placement on providers / delegates (flagged where an
accelerated run left ops on plain CPU kernels), the profiler's overhead and the fidelity-by-layer line (PSNR per
layer against the fp32 PyTorch model, where it first drops); and per target a roofline: arithmetic
intensity × achieved GFLOP/s against the measured compute and bandwidth ceilings."""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from harness.profiling.families import FAMILIES
from harness.profiling.ops import OpProfile
from harness.report.plots import log_axis
from harness.types import RunRecord

CPU_FALLBACKS = {"CPUExecutionProvider": ("CUDAExecutionProvider", "TensorrtExecutionProvider"),
                 "CPU builtin kernels": ("XNNPACK delegate",)}
"""A provider that is the plain-CPU fallback of an accelerated one: ops there, beside ops on the accelerated one,
are flagged."""


def _label(r: RunRecord) -> str:
    return f"{r.variant} · {r.format}/{r.runtime}"


def placement_flag(profile: OpProfile) -> str:
    """'' when every op ran where the run meant, else which ops fell back to plain CPU kernels (count, time share)."""
    placement = profile.placement()
    for fallback, accelerated in CPU_FALLBACKS.items():
        if fallback in placement and any(a in placement for a in accelerated):
            names = sorted({op.type for op in profile.ops if op.provider == fallback})
            entry = placement[fallback]
            return (f"{entry['ops']:.0f} op(s) on {fallback} ({entry['share']:.0%} of op time): "
                    f"{', '.join(names[:6])}")
    return ""


def layer_line(r: RunRecord) -> dict[str, Any] | None:
    """The job's fidelity by layer as a sparkline (PSNR per matched layer, 0..1 of 0–100 dB) and one sentence:
    where PSNR first fell by ≥ 6 dB and the lowest layer; None without a layers pass."""
    found = r.context.get("layer_fidelity")
    if not found or not found.get("layers"):
        return None
    layers = found["layers"]
    n = len(layers)
    layers = [dict(row, psnr=row["psnr"] if isinstance(row.get("psnr"), (int, float)) else 0.0) for row in layers]
    points = [((i + 0.5) / n, min(max(row["psnr"], 0.0), 100.0) / 100.0) for i, row in enumerate(layers)]
    worst = min(layers, key=lambda row: row["psnr"])
    if found.get("first_break"):
        row = next(row for row in layers if row["layer"] == found["first_break"])
        text = (f"first drop at {found['first_break']}: −{found['drop_db']:.1f} dB to {row['psnr']:.1f} dB; lowest "
                f"{worst['layer']} {worst['psnr']:.1f} dB")
    else:
        text = f"no drop ≥ 6 dB; lowest {worst['layer']} {worst['psnr']:.1f} dB"
    return {"points": points, "text": f"{text} ({found['matched']} of {found['modules']} layers matched)",
            "layers": [(row["layer"], row["psnr"]) for row in layers]}


def _work_line(r: RunRecord) -> str:
    """FLOPs and bytes per inference and the op families that hold the FLOPs ('' without a count)."""
    flops, moved = r.measurement("flops"), r.measurement("bytes_moved")
    if flops is None or moved is None:
        return ""
    by = (r.context.get("roofline") or {}).get("work_by_family", {})
    total = sum(v.get("flops", 0.0) for v in by.values()) or 1.0
    shares = ", ".join(f"{f} {v['flops'] / total:.0%}" for f, v in by.items() if v.get("flops", 0.0) / total >= 0.01)
    return f"{flops.value / 1e6:.4g} MFLOP, {moved.value / 2**20:.3g} MiB moved per inference ({shares} of FLOPs)"


def time_breakdown(records: Iterable[RunRecord]) -> list[dict[str, Any]]:
    """Per (model, target, batch): its profiled jobs, each a stacked bar of op families (ms per inference, ``x``/``w``
    in 0..1 of the group's slowest job), its three heaviest ops, placement and flag, the profiler's overhead."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        raw = r.context.get("op_profile") if r.status == "ok" else None
        if not raw:
            continue
        profile = OpProfile.from_dict(raw)
        families = profile.families()
        total = sum(families.values())
        overhead = r.measurement("profiler_overhead")
        latency = r.measurement("latency")
        groups.setdefault((r.model, r.target, r.batch_size), []).append({
            "label": _label(r), "runtime": r.runtime, "total_ms": total, "families": families,
            "latency_ms": latency.value if latency else None, "run_ms": profile.run_ms,
            "overhead": overhead.value if overhead else None, "method": profile.method,
            "top": [{"name": op.name, "type": op.type, "family": op.family, "mean_ms": op.mean_ms,
                     "share": op.share, "provider": op.provider} for op in profile.ops[:3]],
            "placement": {p: dict(v) for p, v in profile.placement().items()}, "flag": placement_flag(profile),
            "notes": list(profile.notes), "layers": layer_line(r), "work": _work_line(r),
            "layers_unavailable": r.context.get("layer_fidelity_unavailable", "")})
    out = []
    for (model, target, batch), jobs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        widest = max(j["total_ms"] for j in jobs) or 1.0
        for job in jobs:
            x, segments = 0.0, []
            for family in FAMILIES:
                ms = job["families"].get(family, 0.0)
                if ms <= 0:
                    continue
                segments.append({"family": family, "ms": ms, "share": ms / (job["total_ms"] or 1.0), "x": x,
                                 "w": ms / widest})
                x += ms / widest
            job["segments"] = segments
        out.append({"model": model, "target": target, "batch": batch, "jobs": jobs,
                    "families": [f for f in FAMILIES if any(f in j["families"] for j in jobs)]})
    return out


def roofline_plots(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Per target with measured ceilings: log-log axes of intensity (FLOP/byte) and GFLOP/s, the memory roof (a
    polyline up to the ridge point) and the compute roof, and a point per job (0..1 coordinates)."""
    by_target: dict[str, list[RunRecord]] = {}
    for r in records:
        if r.status == "ok" and r.context.get("roofline") and r.measurement("achieved_gflops"):
            by_target.setdefault(r.target, []).append(r)
    plots = []
    for target, members in sorted(by_target.items()):
        ceilings = members[0].context["roofline"]["ceilings"]
        peak, bandwidth = ceilings["peak_gflops"], ceilings["bandwidth_gbs"]
        intensities = [r.measurement("arithmetic_intensity").value for r in members]
        achieved = [r.measurement("achieved_gflops").value for r in members]
        ridge = peak / bandwidth
        xa, xb, x_ticks = log_axis(min(min(intensities), ridge) / 2, max(max(intensities), ridge) * 2)
        ya, yb, y_ticks = log_axis(min(achieved) / 2, peak * 2)

        def px(v: float) -> float:
            return (math.log10(v) - xa) / (xb - xa)

        def py(v: float) -> float:
            return (math.log10(v) - ya) / (yb - ya)

        lo = 10 ** xa
        roof = [(px(lo), py(max(lo * bandwidth, 10 ** ya))), (px(ridge), py(peak)), (1.0, py(peak))]
        points = [{"label": f"{r.model} {_label(r)} b{r.batch_size}", "x": px(i), "y": py(a), "intensity": i,
                   "gflops": a, "bound": r.context["roofline"]["bound"],
                   "peak_fraction": r.measurement("peak_fraction").value}
                  for r, i, a in zip(members, intensities, achieved)]
        plots.append({"target": target, "roof": roof, "points": points, "x_ticks": x_ticks, "y_ticks": y_ticks,
                      "peak": peak, "bandwidth": bandwidth, "ridge": ridge, "peak_method": ceilings["peak_method"],
                      "bandwidth_method": ceilings["bandwidth_method"]})
    return plots


def profile_text(records: Iterable[RunRecord], top: int = 5) -> str:
    """``harness profile``'s printout: per job, time per inference by op family, the heaviest ops, placement, the
    roofline figures and the profiler's overhead."""
    records = list(records)
    lines = []
    for group in time_breakdown(records):
        lines.append(f"{group['model']} · {group['target']} · batch {group['batch']}")
        for job in group["jobs"]:
            fams = ", ".join(f"{f} {ms:.3g} ms ({ms / (job['total_ms'] or 1):.0%})"
                             for f, ms in list(job["families"].items())[:top])
            lines.append(f"  {job['label']}: {job['total_ms']:.3g} ms of ops per inference — {fams}")
            for op in job["top"]:
                lines.append(f"      {op['type']} ({op['name']}, {op['provider']}): {op['mean_ms']:.3g} ms per call, "
                             f"{op['share']:.0%}")
            if job["flag"]:
                lines.append(f"      ! {job['flag']}")
            if job["work"]:
                lines.append(f"      work: {job['work']}")
            if job["layers"]:
                lines.append(f"      fidelity by layer: {job['layers']['text']}")
            elif job["layers_unavailable"]:
                lines.append(f"      fidelity by layer: unavailable: {job['layers_unavailable']}")
            if job["overhead"] is not None:
                lines.append(f"      profiler: {job['run_ms']:.3g} ms per profiled inference = "
                             f"{job['overhead']:.2f}× the timing pass's median")
    for plot in roofline_plots(records):
        lines.append(f"roofline on {plot['target']}: peak {plot['peak']:.3g} GFLOP/s ({plot['peak_method']}), "
                     f"bandwidth {plot['bandwidth']:.3g} GB/s ({plot['bandwidth_method']}), ridge "
                     f"{plot['ridge']:.3g} FLOP/byte")
        for p in plot["points"]:
            lines.append(f"  {p['label']}: {p['intensity']:.3g} FLOP/byte, {p['gflops']:.3g} GFLOP/s = "
                         f"{p['peak_fraction']:.1%} of peak ({p['bound']}-bound)")
    return "\n".join(lines)
