"""The JSON process protocol shared by every child the harness starts (worker, prepare):
one JSON object on stdin, one JSON line on stdout; whatever else anything prints goes to stderr."""
from __future__ import annotations

import faulthandler
import json
import os
import sys
import traceback
from typing import Any, Callable

PROTOCOL_VERSION = 1


def serve(handler: Callable[..., dict[str, Any]], interactive: bool = False) -> int:
    """Run ``handler`` on the request read from stdin and write its result as one line on stdout.

    The request is the first line of stdin (or, if that is not a whole JSON object, all of it). With
    ``interactive`` the handler is called as ``handler(request, send, receive)``: ``send(obj)`` writes a JSON
    line on the result channel now, ``receive()`` reads the next line of stdin ('' at EOF) — the lockstep
    protocol (``harness.lockstep``). An exception becomes ``{"status": "failed", "error": ...}`` with the
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
            raise ValueError("the request must be a JSON object")
        if request.get("protocol", PROTOCOL_VERSION) != PROTOCOL_VERSION:
            raise ValueError(f"this process speaks protocol {PROTOCOL_VERSION}, the request has {request.get('protocol')}")
        result = handler(request, send, sys.stdin.readline) if interactive else handler(request)
    except Exception as exc:  # reported to the harness as a failed job, with the traceback's tail
        traceback.print_exc()
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}".strip()[:2000],
                  "measurements": [], "context": {}}
    result["protocol"] = PROTOCOL_VERSION
    with out:
        out.write(json.dumps(result) + "\n")
    return 0
