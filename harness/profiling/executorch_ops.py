"""ExecuTorch per-op profile from its ETDump: the program is loaded with event tracing on
(``Runtime.load_program(enable_etdump=True)``), run, and the dump read with ``executorch.devtools.Inspector``. Events
are one per operator XNNPACK ran inside its delegate (XNNPACK's own operator names, as in the LiteRT profile), one
per op run by a portable kernel outside any delegate (``native_call_<op>.out``, inside an ``OPERATOR_CALL`` event
that wraps it and is not counted again), one ``DELEGATE_CALL`` per delegate call and one ``Method::execute`` per
inference. The delegate call's time not covered by its operators is kept as a row of its own
(the delegate's dispatch and layout work); the warm-up run is left out."""
from __future__ import annotations

import re
import statistics
import tempfile
from pathlib import Path
from typing import Any, Mapping

from harness.profiling.litert_ops import xnnpack_family, xnnpack_op_type
from harness.profiling.ops import OpProfile, aggregate
from harness.registry import OP_PROFILERS

EXECUTE, DELEGATE_CALL, OPERATOR_CALL = "Method::execute", "DELEGATE_CALL", "OPERATOR_CALL"
DELEGATE_PROVIDER, PORTABLE_PROVIDER = "XNNPACK delegate", "portable kernels"


def portable_op_type(name: str) -> str:
    """``native_call_native_group_norm.out`` → ``native_group_norm`` (an aten op name the family map knows)."""
    return re.sub(r"\.[A-Za-z_]*out$|\.default$", "", name.removeprefix("native_call_"))


def read_events(events: list[tuple[str, bool, list[float]]], runs: int
                ) -> tuple[list[tuple[str, str, str, float]], list[float]]:
    """(op events as (name, op type, provider, ms), each run's ms) from ETDump events given as (name, delegated,
    per-execution ms) in the Inspector's order, keeping each event's last ``runs`` executions (the warm-up first).

    Several events share a name: every delegate call is a ``DELEGATE_CALL`` and XNNPACK numbers its operators per
    delegate (``Convolution … #1`` in each). The Inspector lists a delegate's operators before the ``DELEGATE_CALL``
    that ran them (as it lists a portable op before its ``OPERATOR_CALL``), so each delegate call's dispatch time is
    its own time less that of the operators listed since the previous call, and its operators are named by it."""
    run_ms = next((list(raw)[-runs:] for name, _, raw in events if name == EXECUTE), [])
    rows: list[tuple[str, str, str, float]] = []
    inner: list[list[float]] = []  # the current delegate call's operators, per execution
    call = 0
    for name, delegated, raw in events:
        tail = [float(ms) for ms in list(raw)[-runs:]]
        if name == DELEGATE_CALL:
            spent = [sum(t[i] for t in inner if i < len(t)) for i in range(len(tail))]
            rows.extend(("delegate dispatch", "delegate", DELEGATE_PROVIDER, max(ms - used, 0.0))
                        for ms, used in zip(tail, spent))
            inner, call = [], call + 1
        elif name.startswith(("Method::", "Program::")) or name == OPERATOR_CALL:
            continue
        elif delegated:
            op_type = xnnpack_op_type(re.sub(r"\s*#\d+$", "", name))
            rows.extend((f"call {call}: {name}", op_type, DELEGATE_PROVIDER, ms) for ms in tail)
            inner.append(tail)
        else:
            rows.extend((name, portable_op_type(name), PORTABLE_PROVIDER, ms) for ms in tail)
    return rows, run_ms


def _inspector_events(etdump: str) -> list[tuple[str, bool, list[float]]]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from executorch.devtools import Inspector

        inspector = Inspector(etdump_path=etdump)
    out: list[tuple[str, bool, list[float]]] = []
    for block in inspector.event_blocks:
        for event in block.events:
            if event.perf_data is None:
                continue
            out.append((str(event.name), bool(event.is_delegated_op), [float(ms) for ms in event.perf_data.raw]))
    return out


def profile_executorch(runtime: Any, artifact: Any, inputs: Mapping[str, Any], runs: int) -> OpProfile:
    runtime.etdump = True
    runtime.load(artifact)
    for _ in range(runs + 1):  # the first is the warm-up, left out below
        runtime.infer(inputs)
        runtime.sync()
    with tempfile.TemporaryDirectory(prefix="edge-harness-etdump-") as tmp:
        etdump = str(Path(tmp) / "run.etdp")
        runtime.program.write_etdump_result_to_file(etdump, str(Path(tmp) / "debug.bin"))
        events = _inspector_events(etdump)
    rows, run_ms = read_events(events, runs)
    if not run_ms:
        return OpProfile(runtime.name, "ExecuTorch ETDump (Inspector)", 0, 0.0, (),
                         ("the ETDump has no Method::execute event: this ExecuTorch build traces no events",))
    ops = aggregate(rows, len(run_ms), family=lambda t: xnnpack_family(t) if t.startswith("XNNPACK ") else None)
    return OpProfile(runtime.name, "ExecuTorch ETDump (Inspector)", len(run_ms), statistics.median(run_ms), ops,
                     ("XNNPACK's operators are its own (fused, folded), not the graph's nodes; 'delegate dispatch' is "
                      "the delegate calls' time outside them",))


OP_PROFILERS.register("executorch")(profile_executorch)
