"""Errors the CLI turns into one-line messages and exit code 2."""


class HarnessInputError(Exception):
    """Bad user input (unknown name, malformed file, bad option): exit code 2, no traceback."""


EXTRAS = {"executorch": "executorch", "ray": "cluster", "diffusers": "diffusers", "mlperf_loadgen": "loadgen"}
"""Top-level modules an optional extra of the harness installs, and that extra's name."""


def missing_package(exc: BaseException) -> str | None:
    """What to install, when ``exc`` (or what caused it) is a ``ModuleNotFoundError``: "python package 'executorch'
    is not installed here (pip install 'edge-harness[executorch]')"; None otherwise."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            top = exc.name.split(".")[0]
            if top in EXTRAS:
                return f"python package '{top}' is not installed here (pip install 'edge-harness[{EXTRAS[top]}]')"
            return f"module '{exc.name}' is not installed here"  # its pip name may differ (cv2, PIL, sklearn)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        seen += 1
    return None
