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


def serve(handler: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """Run ``handler`` on the request read from stdin and write its result as one line on stdout.

    An exception becomes ``{"status": "failed", "error": ...}`` with the traceback on stderr.
    """
    result_fd = os.dup(1)
    os.dup2(2, 1)  # native libraries that print to stdout now print to stderr
    sys.stdout = sys.stderr
    faulthandler.enable()  # a native crash leaves the Python stack on stderr, which the harness records
    try:
        request = json.loads(sys.stdin.read())
        if not isinstance(request, dict):
            raise ValueError("the request must be a JSON object")
        if request.get("protocol", PROTOCOL_VERSION) != PROTOCOL_VERSION:
            raise ValueError(f"this process speaks protocol {PROTOCOL_VERSION}, the request has {request.get('protocol')}")
        result = handler(request)
    except Exception as exc:  # reported to the harness as a failed job, with the traceback's tail
        traceback.print_exc()
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}".strip()[:2000],
                  "measurements": [], "context": {}}
    result["protocol"] = PROTOCOL_VERSION
    with os.fdopen(result_fd, "w") as out:
        out.write(json.dumps(result) + "\n")
    return 0
