"""Errors the CLI turns into one-line messages and exit code 2."""


class HarnessInputError(Exception):
    """Bad user input (unknown name, malformed file, bad option): exit code 2, no traceback."""
