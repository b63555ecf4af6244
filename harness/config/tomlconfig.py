"""Strict TOML reading: unknown keys and wrong types are one-line errors that name the file."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Mapping

from harness.errors import HarnessInputError


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessInputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise HarnessInputError(f"{path}: is a folder, not a TOML file") from None
    except OSError as exc:
        raise HarnessInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HarnessInputError(f"{path}: not valid TOML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise HarnessInputError(f"{path}: not valid TOML here: tables or arrays nested too deeply") from None


PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""Names that become file or folder names (a suite's run folder): letters, digits, '.', '_', '-'; no path."""


def check_plain_name(path: Path, key: str, value: str) -> str:
    if not PLAIN_NAME.fullmatch(value) or ".." in value:
        raise HarnessInputError(f"{path}: {key} {value[:60]!r} must be a plain name (letters, digits, '.', '_', "
                                "'-'; at most 100; no '/' or '..'): it names a folder")
    return value


def check_keys(path: Path, table: Mapping[str, Any], schema: Mapping[str, type | tuple[type, ...]],
               where: str = "") -> None:
    """Reject keys not in ``schema`` and values of the wrong type (bool is not accepted as a number)."""
    prefix = f"[{where}] " if where else ""
    for key, value in table.items():
        if key not in schema:
            allowed = ", ".join(sorted(schema))
            raise HarnessInputError(f"{path}: {prefix}unknown key {key!r} (allowed: {allowed})")
        expected = schema[key]
        types = expected if isinstance(expected, tuple) else (expected,)
        if isinstance(value, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(value, types)
        if not ok:
            names = " or ".join(t.__name__ for t in types)
            raise HarnessInputError(f"{path}: {prefix}{key!r} must be {names}, not {type(value).__name__}")


def check_list_of(path: Path, key: str, values: list[Any], kind: type) -> None:
    if not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        raise HarnessInputError(f"{path}: {key!r} must be a list of {kind.__name__}")
