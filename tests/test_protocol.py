"""The typed, versioned worker protocol: requests and results round-trip, and children and harnesses of other
versions refuse each other with an error naming both."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.config.paths import PROJECT_ROOT
from harness.launch.local import LocalLauncher
from harness.protocol import (MODES, PROTOCOL_VERSION, STATUSES, ProtocolError, WorkerRequest, WorkerResult,
                              parse_result, wire)
from harness.types import RUN_STATUSES


def test_a_request_round_trips_with_every_field():
    request = WorkerRequest("latency", runtime="onnxruntime", artifact={"id": "a"}, cpu_affinity=(0, 1),
                            settings={"min_runs": 5}, lockstep={"block_s": 0.05})
    data = request.to_dict()
    assert data["protocol"] == PROTOCOL_VERSION and data["cpu_affinity"] == [0, 1]
    assert data["batch_size"] == 1 and data["samples_path"] == ""  # every field is sent, defaults too
    assert WorkerRequest.from_dict(json.loads(json.dumps(data))) == request
    with pytest.raises(ProtocolError, match="the request speaks protocol 1, this Edge Harness speaks 5"):
        WorkerRequest.from_dict({"mode": "probe"})  # no version: read as version 1, which had no sampling mode
    looped = WorkerRequest("sampling", sampler={"sampler": {"steps": 4}, "inputs": ["x", "t"]})
    assert WorkerRequest.from_dict(json.loads(json.dumps(looped.to_dict()))) == looped


@pytest.mark.parametrize("data, message", [
    ({"mode": "latency", "protocol": PROTOCOL_VERSION + 1}, f"speaks protocol {PROTOCOL_VERSION + 1}"),
    ({"mode": "dance", "protocol": PROTOCOL_VERSION}, "unknown worker mode 'dance'"),
    ({"mode": "latency", "warp": 9, "protocol": PROTOCOL_VERSION}, "does not know: warp"),
    ({"runtime": "onnxruntime", "protocol": PROTOCOL_VERSION}, "no mode"),
    (["latency"], "must be a JSON object"),
])
def test_a_request_of_another_version_or_shape_is_refused(data, message):
    with pytest.raises(ProtocolError, match=message):
        WorkerRequest.from_dict(data)


def test_results_round_trip_and_statuses_are_one_closed_set():
    assert STATUSES == RUN_STATUSES and set(MODES) == {"outputs", "latency", "sampling", "profile", "layers",
                                                              "memory", "energy", "inspect", "probe", "ceilings",
                                                              "loadgen", "start", "sustained"}
    result = WorkerResult("ok", measurements=({"metric": "latency"},), context={"threads": 1},
                          extra={"signature": [{"name": "z"}]})
    data = result.to_dict()
    assert data["protocol"] == PROTOCOL_VERSION and data["signature"] == [{"name": "z"}]
    assert WorkerResult.from_dict(data) == result
    with pytest.raises(ProtocolError, match="unknown status 'fine'"):
        WorkerResult("fine")


def test_the_harness_refuses_a_result_of_another_version_naming_both():
    newer = json.dumps({"protocol": PROTOCOL_VERSION + 1, "status": "ok"})
    result = parse_result(newer, "", "worker exited with code 0")
    assert result.status == "failed"
    assert f"speaks protocol {PROTOCOL_VERSION + 1}, this Edge Harness speaks {PROTOCOL_VERSION}" in result.error
    unversioned = parse_result(json.dumps({"status": "ok"}), "", "worker exited with code 0")
    assert unversioned.status == "failed" and "names no protocol version" in unversioned.error
    odd = parse_result(json.dumps({"protocol": PROTOCOL_VERSION, "status": "fine"}), "", "exited")
    assert odd.status == "failed" and "unknown status 'fine'" in odd.error


def test_a_worker_refuses_a_request_of_another_version_naming_both():
    request = json.dumps({"protocol": PROTOCOL_VERSION + 1, "mode": "probe"})
    proc = subprocess.run([sys.executable, "-m", "harness.worker"], input=request, capture_output=True, text=True,
                          timeout=60, cwd=PROJECT_ROOT)
    result = json.loads(proc.stdout)
    assert result["status"] == "failed" and result["protocol"] == PROTOCOL_VERSION
    assert f"the request speaks protocol {PROTOCOL_VERSION + 1}, this Edge Harness speaks {PROTOCOL_VERSION}" \
        in result["error"]


def test_launchers_stamp_the_version_on_what_they_send(tmp_path):
    echo = tmp_path / "python"  # a child that answers with the request it was sent, as its result's context
    echo.write_text("#!/bin/sh\nread line\nprintf '{\"protocol\": %s, \"status\": \"ok\", \"context\": %s}\\n' "
                    f"{PROTOCOL_VERSION} \"$line\"\n")
    echo.chmod(0o755)
    sent = LocalLauncher(str(echo)).run(WorkerRequest("probe"), 30).context
    assert sent == WorkerRequest("probe").to_dict() and sent["protocol"] == PROTOCOL_VERSION
    plain = LocalLauncher(str(echo)).run({"model": "m"}, 30).context  # the prepare child's request
    assert plain == wire({"model": "m"}) == {"protocol": PROTOCOL_VERSION, "model": "m"}


def test_the_prepare_request_is_typed_and_refuses_what_it_does_not_know():
    from harness.protocol import PrepareRequest

    request = PrepareRequest(model="m", source="/p/m.py", cache="/c", formats=("onnx",), batch_sizes=(1, 4),
                             tolerance=1e-3, timeout_s=60, variants=({"name": "int8", "method": "quant-dynamic"},))
    wired = wire(request.to_dict())
    assert wired["protocol"] == PROTOCOL_VERSION and wired["batch_sizes"] == [1, 4]
    assert PrepareRequest.from_dict(wired) == request
    with pytest.raises(ProtocolError, match="prepare request fields this harness does not know: turbo"):
        PrepareRequest.from_dict(wired | {"turbo": True})
    with pytest.raises(ProtocolError, match="the prepare request has no cache, source"):
        PrepareRequest.from_dict({k: v for k, v in wired.items() if k not in ("cache", "source")})
