"""The protocol between the harness and every child it starts (a measurement worker, locally, on a board over SSH,
in an emulated rootfs, on a cluster node; the prepare child): one JSON request on stdin, one JSON result line on
stdout, whatever else anything prints goes to stderr.

Requests to a worker are ``WorkerRequest``s, to the prepare child ``PrepareRequest``s, and results of both
``WorkerResult``s, each with ``to_dict`` / ``from_dict``;
both carry ``protocol`` (``PROTOCOL_VERSION``). A child and a harness of different versions (a board's old worker
bundle, ``harness ab --baseline-root`` of an old checkout) refuse each other with an error naming both versions.
A request without ``protocol`` is read as version 1 (harnesses before the typed protocol did not send it).
Version 2 added the ``sampling`` mode (a denoiser's whole sampling loop) and its ``sampler`` field; version 3 the
sampler's ``decoder`` (a second artifact the worker loads) and the ``profile``, ``layers`` and ``ceilings`` modes;
version 4 the ``loadgen`` mode (MLPerf LoadGen's scenarios). ``serve`` is the child's side (one request, one
result), ``parse_result`` the harness's: every launcher returns a ``WorkerResult`` and the host reads its fields.
``request_artifacts`` lists the artifacts a launcher must stage.

Standard library and ``harness.types`` only: this module ships in the worker bundle.
"""
from __future__ import annotations

import dataclasses
import faulthandler
import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from harness.capture import tail
from harness.types import RUN_STATUSES

PROTOCOL_VERSION = 5

STATUSES = RUN_STATUSES
"""Every status a child's result (and so a run record) can have — one closed set, ``harness.types.RUN_STATUSES``:
ok; failed (the child reported an error); crashed (killed by a signal, or no result); timeout; oom (memory cap or
MemoryError); unsupported (this runtime or option cannot run here); unreachable (the board or node could not be
reached)."""

MODES = ("outputs", "latency", "sampling", "profile", "layers", "memory", "energy", "inspect", "probe", "ceilings",
         "loadgen", "start", "sustained")
"""What a worker request asks: 'outputs' (one inference, outputs saved), 'latency' (the timing pass), 'sampling' (a
denoiser's whole loop), 'profile' (per-op times from the runtime's profiler), 'layers' (intermediate tensors), 'memory', 'energy', 'inspect' (the
inputs of a user's artifact), 'probe' (the board check), 'ceilings' (the machine's peak GFLOP/s and bandwidth),
'loadgen' (MLPerf LoadGen's scenarios, ``harness.engine.loadgen``), 'start' (this fresh process's time to a
first result, cold or warm: ``harness.engine.start``), 'sustained' (minutes in windows: ``harness.engine.sustained``)."""

INPUT_FILE_KEYS = ("inputs_path", "samples_path")
"""Request fields naming input files a remote or emulated launcher must copy to where the worker runs."""
OUTPUT_FILE_KEYS = ("outputs_path", "samples_outputs_path")
"""Request fields naming files the worker writes, which such a launcher brings back."""

READY = {"lockstep": "ready"}
"""In lockstep (``harness.launch.lockstep``) the worker writes this line when it pauses, then waits for ``go``."""


class ProtocolError(ValueError):
    """A request or result that does not follow this protocol (or another version of it)."""


def _check_version(data: Mapping[str, Any], what: str, default: int | None) -> None:
    version = data.get("protocol", default)
    if version is None:
        raise ProtocolError(f"{what} names no protocol version (this Edge Harness speaks {PROTOCOL_VERSION}): run the "
                            f"same version of Edge Harness on both sides")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"{what} speaks protocol {version}, this Edge Harness speaks {PROTOCOL_VERSION}: run the "
                            f"same version of Edge Harness on both sides")


@dataclass(frozen=True)
class WorkerRequest:
    """One job for a measurement worker. Paths are on the machine the worker runs on (launchers rewrite them)."""

    mode: str
    runtime: str = ""
    artifact: Mapping[str, Any] | None = None
    """An ``Artifact.to_dict()``."""
    runtime_options: Mapping[str, Any] = field(default_factory=dict)
    """``RuntimeOptions`` fields: threads (0 = every core the worker may use), graph_optimization, litert_xnnpack,
    litert_api, onnx_execution_mode (the last three sent only when not the default, so an older worker reads the
    request)."""
    cpu_affinity: tuple[int, ...] = ()
    inputs_path: str = ""
    outputs_path: str = ""
    samples_path: str = ""
    """'latency': the fidelity sample set's inputs (.npz), run after the timed runs."""
    samples_outputs_path: str = ""
    settings: Mapping[str, Any] | None = None
    """A ``RunSettings.to_dict()``."""
    batch_size: int = 1
    energy: Mapping[str, Any] | None = None
    """'energy': the target's [energy] table."""
    lockstep: Mapping[str, Any] | None = None
    """'latency' in turns with another worker: ``{"block_s": seconds}``."""
    format: str = ""
    path: str = ""
    """'inspect': the artifact's format and file."""
    sampler: Mapping[str, Any] | None = None
    """'sampling': ``{"sampler": Sampler.to_dict(), "inputs": [the denoiser's input names, in order],
    "time_dtype": its timestep input's dtype, "decoder": {"artifact": Artifact.to_dict(), "input": its input name}
    (only with a decoder)}``; the inputs file holds the loop's initial noise, the samples file the sample set's."""
    start: Mapping[str, Any] | None = None
    """'start': ``{"cache": "cold" | "warm", "cache_id": the start-up cache folder's name on the worker's machine,
    "last": remove that folder afterwards}``."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ProtocolError(f"unknown worker mode {self.mode!r} (known: {', '.join(MODES)})")

    def to_dict(self) -> dict[str, Any]:
        """The wire form: ``protocol`` and every field (a worker of the same version may rely on each one)."""
        out: dict[str, Any] = {"protocol": PROTOCOL_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerRequest:
        """Read a request; another protocol version, an unknown field or a missing mode is a ProtocolError."""
        if not isinstance(data, Mapping):
            raise ProtocolError("the request must be a JSON object")
        _check_version(data, "the request", default=1)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"protocol"})
        if unknown:
            raise ProtocolError(f"request fields this worker does not know: {', '.join(unknown)} (a newer harness?)")
        if "mode" not in data:
            raise ProtocolError("the request has no mode")
        values = {k: v for k, v in data.items() if k in known}
        if "cpu_affinity" in values:
            values["cpu_affinity"] = tuple(values["cpu_affinity"] or ())
        return cls(**values)

    def replace(self, **changes: Any) -> WorkerRequest:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class PrepareRequest:
    """What the prepare child (``python -m harness.prepare``) is asked: build one generator, compute its inputs and
    fp32 reference, compress and export it through the artifact cache. Paths are on the machine it runs on."""

    model: str
    source: str
    """The model file (or project file) that registers ``model``."""
    cache: str
    """The artifact cache folder."""
    formats: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    tolerance: float
    """Largest absolute difference from PyTorch an export may have (its validation)."""
    timeout_s: float
    """Each validation worker's time limit."""
    variants: tuple[Mapping[str, Any], ...] = ()
    """``CompressionSpec.to_dict()``s."""
    samples: int = 0
    """Size of the fidelity sample set."""
    loop_samples: int = 0
    """A denoiser with a sampler: how many images its loop's sample set generates."""
    progress_path: str = ""
    """Progress lines go there (``harness.prepare.progress``): the step it is in, for time limits and the display."""
    decoder_source: str = ""
    """The model file of the sampler's decoder, when it is another file."""
    prepare_memory_mb: int = 0
    """On a lab's build node: the memory cap of the child it starts there."""
    variant_timeout_s: float = 0.0
    """On a lab's build node: the time limit of each variant step."""
    layers: bool = False
    """Also the fp32 model's layer outputs ("where fidelity breaks")."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": PROTOCOL_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = [dict(v) if isinstance(v, Mapping) else v for v in value] if isinstance(value, tuple) \
                else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrepareRequest:
        """Read a prepare request; an unknown field or a missing one is a ProtocolError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"protocol"})
        if unknown:
            raise ProtocolError(f"prepare request fields this harness does not know: {', '.join(unknown)}")
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in data
                         and f.default is dataclasses.MISSING)
        if missing:
            raise ProtocolError(f"the prepare request has no {', '.join(missing)}")
        values = {k: v for k, v in data.items() if k in known}
        for key in ("formats", "batch_sizes", "variants"):
            if key in values:
                values[key] = tuple(values[key] or ())
        return cls(**values)

    def replace(self, **changes: Any) -> PrepareRequest:
        return dataclasses.replace(self, **changes)


def request_artifacts(staged: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The artifact dicts inside a wire-form request (the job's, and a sampler's decoder), for a launcher to copy
    where the worker runs and rewrite in place with the paths there."""
    found = [staged.get("artifact"), ((staged.get("sampler") or {}).get("decoder") or {}).get("artifact")]
    return [a for a in found if isinstance(a, dict) and a.get("path")]


def wire(request: WorkerRequest | Mapping[str, Any]) -> dict[str, Any]:
    """A request as sent — a WorkerRequest's ``to_dict()``, or a plain request (the prepare child's) with
    ``protocol`` stamped on unless it names one — as a fresh copy a launcher may rewrite (paths on a board)."""
    data = request.to_dict() if isinstance(request, WorkerRequest) else {"protocol": PROTOCOL_VERSION} | dict(request)
    return json.loads(json.dumps(data))


@dataclass(frozen=True)
class WorkerResult:
    """What a child answers (or what the launcher says for one that could not: killed, hung, unreachable).

    ``measurements`` are ``Measurement.to_dict()``s; ``extra`` holds what one mode adds (``signature`` for
    'inspect'; ``runtimes`` and ``missing_packages`` for 'probe'; ``ceilings`` for 'ceilings'; the prepare child's
    ``batches``)."""

    status: str
    error: str = ""
    measurements: tuple[Mapping[str, Any], ...] = ()
    context: Mapping[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ProtocolError(f"unknown status {self.status!r} (known: {', '.join(STATUSES)})")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def replace(self, **changes: Any) -> WorkerResult:
        return dataclasses.replace(self, **changes)

    def with_context(self, **values: Any) -> WorkerResult:
        """This result with ``values`` added to its context (a launcher's labels: emulated, the node it ran on)."""
        return dataclasses.replace(self, context=dict(self.context) | values)

    def to_dict(self) -> dict[str, Any]:
        out = {"protocol": PROTOCOL_VERSION, "status": self.status, "error": self.error,
               "measurements": [dict(m) for m in self.measurements], "context": dict(self.context)}
        if self.stderr_tail:
            out["stderr_tail"] = self.stderr_tail
        return out | dict(self.extra)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerResult:
        """Read a result; another protocol version or an unknown status is a ProtocolError."""
        if not isinstance(data, Mapping) or "status" not in data:
            raise ProtocolError("a result must be a JSON object with a status")
        _check_version(data, "the worker", default=None)
        core = {"protocol", "status", "error", "measurements", "context", "stderr_tail"}
        return cls(status=data["status"], error=str(data.get("error") or ""),
                   measurements=tuple(data.get("measurements") or ()), context=dict(data.get("context") or {}),
                   stderr_tail=str(data.get("stderr_tail") or ""),
                   extra={k: v for k, v in data.items() if k not in core})

    @classmethod
    def failure(cls, status: str, error: str, stderr: str = "") -> WorkerResult:
        """A child that gave no result (killed, hung, unreachable), with the tail of its stderr."""
        return cls(status=status, error=error, stderr_tail=tail(stderr) if stderr else "")


# -- the child's side ---------------------------------------------------------------------------------------------
def serve(handler: Callable[..., WorkerResult | dict[str, Any]], interactive: bool = False) -> int:
    """Run ``handler`` on the request read from stdin and write its result as one line on stdout.

    The request is the first line of stdin (or, if that is not a whole JSON object, all of it); its version is
    checked here (``handler`` gets the dict). With ``interactive`` the handler is called as
    ``handler(request, send, receive)``: ``send(obj)`` writes a JSON line on the result channel now, ``receive()``
    reads the next line of stdin ('' at EOF) — the lockstep channel. An exception becomes a 'failed' result with the
    traceback on stderr.
    """
    result_fd = os.dup(1)
    os.dup2(2, 1)  # native libraries that print to stdout now print to stderr
    sys.stdout = sys.stderr
    faulthandler.enable()  # a native crash leaves the Python stack on stderr, which the harness records
    out = os.fdopen(result_fd, "w")

    def send(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    try:
        text = sys.stdin.readline()
        try:
            request = json.loads(text)
        except json.JSONDecodeError:
            request = json.loads(text + sys.stdin.read())
        if not isinstance(request, dict):
            raise ProtocolError("the request must be a JSON object")
        _check_version(request, "the request", default=1)
        result = handler(request, send, sys.stdin.readline) if interactive else handler(request)
        if isinstance(result, WorkerResult):
            result = result.to_dict()
    except Exception as exc:  # reported to the harness as a failed job, with the traceback's tail
        traceback.print_exc()
        result = WorkerResult("failed", f"{type(exc).__name__}: {exc}".strip()[:2000]).to_dict()
    result["protocol"] = PROTOCOL_VERSION
    with out:
        out.write(json.dumps(result) + "\n")
    return 0


def worker_pause(send: Callable[[dict[str, Any]], None], receive: Callable[[], str]) -> Callable[[], None]:
    """The worker's lockstep pause: say ready, wait for the harness's ``go`` (EOF or anything else is an error)."""
    def pause() -> None:
        send(READY)
        line = receive()
        if line.strip() != "go":
            raise RuntimeError(f"lockstep: expected 'go' from the harness, got {line.strip()[:40]!r}"
                               if line else "lockstep: the harness closed the channel")
    return pause


# -- the harness's side -------------------------------------------------------------------------------------------
def signal_name(returncode: int) -> str:
    import signal

    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def exit_result(returncode: int, stdout: str, stderr: str) -> WorkerResult:
    """The result of a child that has exited: ``crashed`` if a signal killed it, else what it wrote."""
    if returncode < 0:
        return WorkerResult.failure("crashed", f"worker killed by {signal_name(returncode)}", stderr)
    return parse_result(stdout, stderr, f"worker exited with code {returncode}")


def error_text(result: WorkerResult) -> str:
    """A failed result's error, with the tail of the child's stderr."""
    text = result.error or result.status
    if result.stderr_tail:
        text += "\n" + result.stderr_tail
    return text


def parse_result(stdout: str, stderr: str, exited: str) -> WorkerResult:
    """The child's result (its last stdout line), checked against this protocol; a ``crashed`` result saying what
    came instead, or a ``failed`` one naming both versions. ``exited`` describes how the child ended, e.g. "worker
    exited with code 3". A MemoryError is ``oom``."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    try:
        data = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or "status" not in data:
        what = "no result" if not lines else "a result that is not a JSON object with a status"
        return WorkerResult.failure("crashed", f"{exited} and {what}", stderr)
    try:
        result = WorkerResult.from_dict(data)
    except ProtocolError as exc:
        return WorkerResult.failure("failed", str(exc), stderr)
    if result.status == "failed" and result.error.startswith("MemoryError"):
        result = dataclasses.replace(result, status="oom")
    if not result.ok and stderr:
        result = dataclasses.replace(result, stderr_tail=tail(stderr))
    return result
