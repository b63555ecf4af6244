"""The deployment card of ``harness optimize`` as one self-contained HTML page: the choice (or the nearest miss and
the Pareto front), a speed-up × PSNR plot of every trial with the budget's bars, and every trial with its reason."""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Mapping

from harness.report.html import _ENV


def write_card_html(card: Mapping[str, Any], path: Path) -> Path:
    chosen = card.get("chosen")
    headline = ("budget met" if card["status"] == "met" else
                "interrupted" if card["status"] == "interrupted" else "budget not met")
    html = _ENV.get_template("card.html.j2").render(
        title=f"harness optimize: {card['model']} on {card['target']}", card=card, chosen=chosen, headline=headline,
        candidates=len({t["candidate"] for t in card["trials"]}), plot=_plot(card))
    path.write_text(html, encoding="utf-8")
    return path


def _plot(card: Mapping[str, Any], width: int = 560, height: int = 300, pad: int = 44) -> str:
    """Speed-up (x, log) × PSNR (y, capped at 60 dB) of every trial point; the budget's bars dashed."""
    points = [(t["speedup"], min(float(t["psnr_db"]), 60.0), t["met"],
               f"{t['candidate']} {t['format']}/{t['runtime']} ({t['step']})") for t in card["trials"]
              if isinstance(t.get("speedup"), (int, float)) and t["speedup"] > 0
              and isinstance(t.get("psnr_db"), (int, float, str)) and t.get("psnr_db") not in (None, "-inf")]
    points = [(s, p, m, label) for s, p, m, label in points if not math.isnan(p)]
    if not points:
        return ""
    budget = card.get("budget", {})
    xs = [math.log10(s) for s, _, _, _ in points] + ([math.log10(budget["min_speedup"])] if budget.get("min_speedup") else [])
    ys = [p for _, p, _, _ in points] + ([budget["min_psnr"]] if budget.get("min_psnr") is not None else [])
    x0, x1 = min(xs) - 0.05, max(xs) + 0.05
    y0, y1 = min(ys) - 2, max(ys) + 2

    def sx(v: float) -> float:
        return pad + (math.log10(v) - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(v: float) -> float:
        return height - pad - (v - y0) / (y1 - y0) * (height - 2 * pad)

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="trials: speed-up against PSNR">',
             f'<rect class="frame" x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}"/>']
    if budget.get("min_speedup"):
        x = sx(budget["min_speedup"])
        parts.append(f'<line class="bar" x1="{x:.1f}" x2="{x:.1f}" y1="{pad}" y2="{height - pad}"/>')
    if budget.get("min_psnr") is not None:
        y = sy(budget["min_psnr"])
        parts.append(f'<line class="bar" x1="{pad}" x2="{width - pad}" y1="{y:.1f}" y2="{y:.1f}"/>')
    for s, p, met, label in points:
        verdict = "passed its rung" if met else "rejected"
        parts.append(f'<circle class="pt{" met" if met else ""}" cx="{sx(s):.1f}" cy="{sy(p):.1f}" r="4">'
                     f'<title>{html.escape(label)}: {s:.2f}×, {p:.1f} dB, {verdict}</title></circle>')
    parts.append(f'<text x="{width / 2:.0f}" y="{height - 8}" text-anchor="middle">speed-up over fp32 ONNX Runtime '
                 f'({10 ** x0:.2g}× – {10 ** x1:.2g}×, log)</text>')
    parts.append(f'<text x="12" y="{height / 2:.0f}" transform="rotate(-90 12 {height / 2:.0f})" '
                 f'text-anchor="middle">PSNR dB ({y0:.0f} – {y1:.0f}, capped at 60)</text></svg>')
    return "\n".join(parts)
