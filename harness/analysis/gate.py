"""The regression gate: a change fails only when it is both significant and larger than its metric's threshold.

Thresholds come from defaults, a gate TOML file, and per-job overrides (by model, variant, format, runtime,
target). Verdicts are pure; markdown and JUnit XML are views of them.

Exit codes of ``harness gate``: 0 pass, 1 regression (or a job broken or missing), 2 error (bad input, nothing to
compare), 3 not judged: a gated metric could not be judged (its pass was disturbed, or its test cannot reach α) and
the gate file says ``fail_on_unjudged = true`` (or ``--fail-on-unjudged``). Without that, such comparisons are
counted in the headline, on stderr and in JUnit (as skipped), never hidden.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence
from xml.etree import ElementTree as ET

from harness.analysis.disturbance import OTHER_PASSES, PASS_OF_METRIC, disturbance
from harness.analysis.metrics import CATALOGUE
from harness.analysis.compare import (KEY_FIELDS, METRICS, NOT_GATED_PREFIXES, Comparison, JobKey, compare_runs, job_key,
                             key_label, p_text)
from harness.errors import HarnessInputError
from harness.config.tomlconfig import check_keys, read_toml
from harness.types import RunRecord

DEFAULT_THRESHOLDS: dict[str, float | None] = {m.name: m.threshold for m in CATALOGUE}
"""Worst acceptable change per metric: fractions for relative metrics (0.10 = 10% worse), metric units for
absolute ones (PSNR: dB lower; NaN/inf outputs: any new share fails; label agreement: share of latents; FD: feature² higher). The p50 default is set
from the gate benchmark on a shared 2-core machine, where a whole run drifted by 8.7–12.5% against the same
configuration measured just before (benchmarks/gate_power.py; docs/guides/ci.md). Latency of an interleaved A/B session
(``harness ab``) stayed within 1.5% of 1 in A/A there: such jobs may take a tighter threshold in a gate file."""
DEFAULT_PAIRED_THRESHOLDS: dict[str, float | None] = {"latency_p50": 0.03}
"""Thresholds for comparisons tested over interleaved pairs (``harness ab``), replacing the table above for those.
Set from the gate benchmark's 5% slowdown (benchmarks/gate_power.py --slowdown 0.05; docs/guides/ci.md): with 8 pairs per
session the A/A p50 ratios stayed within 1.5% of 1, the 5%-slowed jobs measured ×1.04 at the least."""
TIMED_METRICS = frozenset({"latency_p50", "latency_p90", "gpu_latency_p50"})
"""Metrics read from the latency pass, whose worker checks the machine was quiet (``harness.engine.quiet``)."""
DEFAULT_ALPHA = 0.05
"""Significance level for the sampled metrics (latency): a p-value at or above it is noise. With 5 latency rounds
per side, 0.05 lets the rounds' medians overlap twice (exact p = 0.032); 0.01 would demand complete separation."""


@dataclass(frozen=True)
class Override:
    """Thresholds for the jobs whose fields all equal ``match`` (e.g. model = 'dcgan', target = 'rpi4')."""

    match: Mapping[str, Any]
    thresholds: Mapping[str, float | None]

    def applies(self, key: JobKey) -> bool:
        return all(str(dict(zip(KEY_FIELDS, key))[k]) == str(v) for k, v in self.match.items())


@dataclass(frozen=True)
class GateConfig:
    """``thresholds[metric]`` None = that metric is reported but never fails the gate."""

    thresholds: Mapping[str, float | None] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    alpha: float = DEFAULT_ALPHA
    fail_on_missing: bool = True
    """A job that succeeded in the baseline and is absent or failed in the candidate fails the gate."""
    overrides: tuple[Override, ...] = ()
    accept_disturbed: bool = False
    """Gate latencies measured under contention or throttling too (``harness.analysis.disturbance``); by default
    such a comparison is reported, not gated."""
    paired: Mapping[str, float | None] = field(default_factory=lambda: dict(DEFAULT_PAIRED_THRESHOLDS))
    """Thresholds for comparisons over interleaved pairs (an A/B session), in place of ``thresholds``."""
    fail_on_unjudged: bool = False
    """A gated metric that could not be judged (disturbed pass, untestable α) fails the gate (exit 3)."""

    def threshold(self, key: JobKey, metric: str, paired: bool = False) -> float | None:
        """The last matching override wins, then (for a comparison over interleaved pairs) the paired table, then
        the file's table, then the default."""
        value = self.thresholds.get(metric, DEFAULT_THRESHOLDS[metric])
        if paired and metric in self.paired:
            value = self.paired[metric]
        for o in self.overrides:
            if o.applies(key) and metric in o.thresholds:
                value = o.thresholds[metric]
        return value


def _threshold_value(path: Path, where: str, metric: str, value: Any) -> float | None:
    if metric not in METRICS:
        raise HarnessInputError(f"{path}: [{where}] unknown metric {metric!r} (known: {', '.join(METRICS)})")
    if value == "off":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
        raise HarnessInputError(f"{path}: [{where}] {metric} must be a number >= 0 or \"off\", not {value!r}")
    return float(value)


GATE_SCHEMA = {"alpha": float, "fail_on_missing": bool, "thresholds": dict, "overrides": list,
               "accept_disturbed": bool, "paired": dict, "fail_on_unjudged": bool}
"""The keys of a gate TOML file (``harness gate --config``) and their types."""


def load_gate_config(path: Path | None) -> GateConfig:
    """Read a gate TOML file (None: the defaults). Unknown keys and bad values are one-line errors."""
    if path is None:
        return GateConfig()
    data = read_toml(path)
    check_keys(path, data, GATE_SCHEMA)
    alpha = data.get("alpha", DEFAULT_ALPHA)
    if not 0 < alpha < 1:
        raise HarnessInputError(f"{path}: alpha must be within (0, 1), not {alpha}")
    thresholds = dict(DEFAULT_THRESHOLDS)
    for metric, value in data.get("thresholds", {}).items():
        thresholds[metric] = _threshold_value(path, "thresholds", metric, value)
    # A metric the file sets in [thresholds] (and not in [paired]) keeps that value for pairs too: an explicit
    # "off" or a looser limit is not silently tightened by the default paired table.
    paired = {m: v for m, v in DEFAULT_PAIRED_THRESHOLDS.items() if m not in data.get("thresholds", {})}
    for metric, value in data.get("paired", {}).items():
        paired[metric] = _threshold_value(path, "paired", metric, value)
    overrides = []
    for i, table in enumerate(data.get("overrides", [])):
        where = f"overrides {i + 1}"
        if not isinstance(table, dict):
            raise HarnessInputError(f"{path}: [[overrides]] entries must be tables")
        match = {k: v for k, v in table.items() if k in KEY_FIELDS}
        if not match:
            raise HarnessInputError(f"{path}: [{where}] matches every job: name at least one of {', '.join(KEY_FIELDS)}")
        values = {k: _threshold_value(path, where, k, v) for k, v in table.items() if k not in KEY_FIELDS}
        overrides.append(Override(match, values))
    return GateConfig(thresholds, alpha, data.get("fail_on_missing", True), tuple(overrides),
                      data.get("accept_disturbed", False), paired, data.get("fail_on_unjudged", False))


@dataclass(frozen=True)
class Verdict:
    """A comparison judged: 'regression', 'improvement' (significant and beyond the threshold the other way),
    'noise' (within the threshold or not significant), or 'info' (metric switched off / not comparable)."""

    comparison: Comparison
    threshold: float | None
    significant: bool
    outcome: str
    reason: str
    not_judged: str = ""
    """Why a gated metric could not be judged ('' when it was, or is not gated at all): one of ``NOT_JUDGED``."""


NOT_JUDGED = {"disturbed": "a timed pass measured under contention, throttling or heat",
              "untestable": "its test cannot reach a p-value below α with this few rounds or pairs"}
"""Causes of a gated comparison that was not judged, and what each means."""
UNJUDGED_ADVICE = ("re-run on a quiet runner, measure base and head side by side with `harness ab` (interleaved "
                   "pairs, 8 by default), or set contention_retries in the suite's [settings]")
"""What to do when gated metrics were not judged."""
EXIT_NOT_JUDGED = 3


def judge(c: Comparison, config: GateConfig) -> Verdict:
    threshold = config.threshold(c.key, c.metric, c.paired)
    significant = c.p_value is None or c.p_value < config.alpha
    test = f"p={p_text(c.p_value)}" if c.p_value is not None else "one value per run"
    change = _change_text(c)
    if threshold is None or c.note.startswith(NOT_GATED_PREFIXES):
        return Verdict(c, threshold, significant, "info", c.note or "threshold off")
    if c.p_value is not None and c.min_p is not None and c.min_p >= config.alpha:
        return Verdict(c, threshold, False, "info", untestable_reason(c, config.alpha), "untestable")
    by_pairs = c.paired and c.metric in config.paired and threshold == config.paired[c.metric] and \
        not any(o.applies(c.key) and c.metric in o.thresholds for o in config.overrides)
    limit = _limit_text(c, threshold) + (" for A/B pairs" if by_pairs else "")
    if c.worse_by > threshold and significant:
        return Verdict(c, threshold, True, "regression", f"{change} worse, beyond {limit} ({test})")
    if -c.worse_by > threshold and significant:
        return Verdict(c, threshold, True, "improvement", f"{change} better ({test})")
    why = "within " + limit if abs(c.worse_by) <= threshold else f"not significant ({test} ≥ α={config.alpha})"
    return Verdict(c, threshold, significant, "noise", f"{change} {'worse' if c.worse_by > 0 else 'better'}: {why}")


def untestable_reason(c: Comparison, alpha: float) -> str:
    """Why a comparison cannot fail the gate at ``alpha``: its test cannot reach a p-value below it."""
    return (f"not gated: α={alpha:g} is at or below the smallest p-value {c.test} can give here "
            f"({p_text(c.min_p or 0.0)}; {c.note}) — measure more rounds or pairs, or raise alpha")


def _change_text(c: Comparison) -> str:
    if not math.isfinite(c.worse_by):  # e.g. PSNR from identical outputs (+inf) to a finite figure
        return f"{c.base:.3g} → {c.candidate:.3g} {c.spec.unit}"
    if c.spec.change == "relative":
        return f"{abs(c.worse_by):.1%}"
    return f"{abs(c.worse_by):.3g} {c.spec.unit}"


def _limit_text(c: Comparison, threshold: float) -> str:
    return f"{threshold * 100:g}%" if c.spec.change == "relative" else f"{threshold:g} {c.spec.unit}"


@dataclass(frozen=True)
class GateResult:
    verdicts: tuple[Verdict, ...]
    broken: tuple[tuple[JobKey, RunRecord], ...]
    missing: tuple[JobKey, ...]
    new: tuple[JobKey, ...]
    fail_on_missing: bool
    fail_on_unjudged: bool = False

    @property
    def regressions(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.outcome == "regression"]

    @property
    def untestable(self) -> list[Verdict]:
        """Comparisons that α makes impossible to find significant (their metric is not gated at all)."""
        return [v for v in self.verdicts if v.not_judged == "untestable"]

    @property
    def unjudged(self) -> list[Verdict]:
        """Gated comparisons that could not be judged (disturbed, untestable α)."""
        return [v for v in self.verdicts if v.not_judged]

    @property
    def gated(self) -> list[Verdict]:
        """Comparisons of gated metrics: judged (regression, improvement, noise) or not judged."""
        return [v for v in self.verdicts if v.outcome != "info" or v.not_judged]

    def unjudged_text(self) -> str:
        """'N of M gated comparisons not judged (K disturbed, J untestable at α)', or '' when all were judged."""
        if not self.unjudged:
            return ""
        counts = {cause: sum(1 for v in self.unjudged if v.not_judged == cause) for cause in NOT_JUDGED}
        why = ", ".join(f"{n} {cause}" for cause, n in counts.items() if n)
        return f"{len(self.unjudged)} of {len(self.gated)} gated comparisons not judged ({why})"

    @property
    def failed(self) -> bool:
        return bool(self.regressions) or (self.fail_on_missing and bool(self.broken or self.missing))

    @property
    def not_judged(self) -> bool:
        """No regression, but gated metrics were not judged and the gate is told to fail on that."""
        return not self.failed and self.fail_on_unjudged and bool(self.unjudged)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else EXIT_NOT_JUDGED if self.not_judged else 0

    @property
    def headline(self) -> str:
        return "FAIL" if self.failed else "NOT JUDGED" if self.not_judged else "pass"


def run_gate(base: Sequence[RunRecord], cand: Sequence[RunRecord], config: GateConfig) -> GateResult:
    """Judge every comparable metric; raises HarnessInputError when no job can be compared."""
    comparisons, status = compare_runs(base, cand, list(METRICS))
    common = {job_key(r) for r in base} & {job_key(r) for r in cand}
    if not common:
        raise HarnessInputError("the baseline and the candidate share no job: nothing to compare (do they measure "
                                "the same models, variants, formats, runtimes, targets and batch sizes?)")
    disturbed = {} if config.accept_disturbed else {
        (job_key(r), timed): f"{side}: {why}" for side, records in (("baseline", base), ("candidate", cand))
        for r in records for timed in ("latency", *OTHER_PASSES) if (why := disturbance(r, timed))}
    verdicts = []
    for c in comparisons:
        timed = PASS_OF_METRIC.get(c.metric, "latency" if c.metric in TIMED_METRICS else "")
        if timed and (c.key, timed) in disturbed:
            verdict = judge(c, config)
            if verdict.outcome != "info" or verdict.not_judged:  # a gated metric, left unjudged
                verdict = Verdict(c, verdict.threshold, False, "info",
                                  f"not gated: the {disturbed[(c.key, timed)]} — re-measure on a quiet machine, or "
                                  "set accept_disturbed = true in the gate file", "disturbed")
            verdicts.append(verdict)
        else:
            verdicts.append(judge(c, config))
    return GateResult(tuple(verdicts), tuple(status["broken"]), tuple(status["missing"]), tuple(status["new"]),
                      config.fail_on_missing, config.fail_on_unjudged)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    if unit == "bytes":
        return f"{value / 2**20:.3g} MiB"
    return f"{value:.4g}" + (f" {unit}" if unit else "")


def markdown_summary(result: GateResult, title: str = "Edge Harness regression gate") -> str:
    """A GitHub-flavoured markdown summary (for $GITHUB_STEP_SUMMARY): verdict, regressions, then all metrics."""
    unjudged = result.unjudged_text()
    if result.failed:
        verdict = "❌ **FAIL**"
    elif result.not_judged:
        verdict = f"❌ **NOT JUDGED**: {unjudged}"
    else:
        verdict = "✅ **PASS**" + (f" — ⚠️ {unjudged}" if unjudged else "")
    lines = [f"## {title}: {verdict}", ""]
    improvements = [v for v in result.verdicts if v.outcome == "improvement"]
    judged = len(result.gated) - len(result.unjudged)
    lines.append(f"{len(result.regressions)} regressions, {len(improvements)} improvements, "
                 f"{len(result.broken)} jobs broken, {len(result.missing)} missing, {len(result.new)} new; "
                 f"{judged} gated comparisons judged, {len(result.unjudged)} not judged, "
                 f"{len(result.verdicts) - len(result.gated)} reported only.")
    lines.append("")
    if unjudged:
        causes = sorted({v.not_judged for v in result.unjudged})
        lines += [f"⚠️ **{unjudged}**: " + "; ".join(f"{c}: {NOT_JUDGED[c]}" for c in causes) +
                  f". What to do: {UNJUDGED_ADVICE}." +
                  ("" if result.fail_on_unjudged else " (`--fail-on-unjudged` or `fail_on_unjudged = true` in the "
                                                      "gate file makes this a failure.)"), ""]
        lines += _table(result.unjudged) + [""]
    for key, record in result.broken:
        first = (record.error or record.status).splitlines()[0] if (record.error or record.status) else ""
        lines.append(f"- ❌ `{_md(key_label(key))}` now **{record.status}**: {_md(first)}")
    for key in result.missing:
        lines.append(f"- ❌ `{_md(key_label(key))}` is missing from the candidate")
    if result.broken or result.missing:
        lines.append("")
    changed = [v for v in result.verdicts if v.outcome in ("regression", "improvement")]
    rest = [v for v in result.verdicts if v.outcome not in ("regression", "improvement") and not v.not_judged]
    if changed:
        lines += _table(sorted(changed, key=lambda v: v.outcome != "regression")) + [""]
    if rest:  # collapsed: on a quiet change this is every row
        lines += [f"<details><summary>{len(rest)} comparisons within noise or reported only</summary>", ""]
        lines += _table(rest) + ["", "</details>"]
    return "\n".join(lines) + "\n"


def _table(verdicts: Sequence[Verdict]) -> list[str]:
    lines = ["| job | metric | base | candidate | ratio (95% CI) | p | threshold | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        c = v.comparison
        ci = f" ({c.ci_low:.3f}–{c.ci_high:.3f})" if c.ci_low is not None else ""
        ratio = f"{c.ratio:.3f}{ci}" if c.ratio is not None else "–"
        icon = {"regression": "❌ ", "improvement": "🟢 ", "noise": "", "info": "ℹ️ "}[v.outcome]
        threshold = _limit_text(c, v.threshold) if v.threshold is not None else "off"
        p = p_text(c.p_value) if c.p_value is not None else "–"
        lines.append(f"| {_md(key_label(c.key))} | {c.spec.label} | {_fmt(c.base, c.spec.unit)} | "
                     f"{_fmt(c.candidate, c.spec.unit)} | {ratio} | {p} | {threshold} | "
                     f"{icon}{v.outcome}: {_md(v.reason)} |")
    return lines


def _md(text: str) -> str:
    """Escape what would break a markdown table cell or inject markup."""
    out = text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("\n", " ")
    return out.replace("<", "&lt;").replace(">", "&gt;")


def junit_xml(result: GateResult) -> str:
    """JUnit XML: one testcase per job and metric (a regression is a failure; a gated metric not judged is skipped,
    or a failure of type 'not-judged' when the gate fails on those), plus one per broken or missing job.
    ElementTree escapes every attribute and text."""
    suite = ET.Element("testsuite", name="edge-harness-gate")
    failures = skipped = 0
    for v in result.verdicts:
        c = v.comparison
        case = ET.SubElement(suite, "testcase", classname=_xml(key_label(c.key)), name=c.metric)
        if v.outcome == "regression":
            failures += 1
            ET.SubElement(case, "failure", message=_xml(v.reason), type="regression").text = _xml(
                f"base {_fmt(c.base, c.spec.unit)}, candidate {_fmt(c.candidate, c.spec.unit)}, {c.note}")
        elif v.not_judged and result.fail_on_unjudged:
            failures += 1
            ET.SubElement(case, "failure", message=_xml(f"not judged ({v.not_judged}): {v.reason}"),
                          type="not-judged").text = _xml(UNJUDGED_ADVICE)
        elif v.not_judged:
            skipped += 1
            ET.SubElement(case, "skipped", message=_xml(f"not judged ({v.not_judged}): {v.reason}"))
        else:
            ET.SubElement(case, "system-out").text = _xml(f"{v.outcome}: {v.reason}")
    for key, record in result.broken:
        case = ET.SubElement(suite, "testcase", classname=_xml(key_label(key)), name="status")
        if result.fail_on_missing:
            failures += 1
            ET.SubElement(case, "failure", message=f"now {record.status}", type="broken").text = _xml(record.error)
    for key in result.missing:
        case = ET.SubElement(suite, "testcase", classname=_xml(key_label(key)), name="status")
        if result.fail_on_missing:
            failures += 1
            ET.SubElement(case, "failure", message="missing from the candidate", type="missing")
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("errors", "0")
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """Drop characters XML 1.0 cannot carry (control characters from a user's error text)."""
    return _NOT_XML.sub("\ufffd", text)
