"""Artifacts a user brings (``harness run --artifact model.onnx``): validate the file, read its inputs,
make seeded example inputs, and describe it as an Artifact.

Validation is in two layers, both before anything is measured: static checks in this process (ONNX:
protobuf parse, ``onnx.checker`` with full type inference, a known opset; TFLite and ExecuTorch: the flatbuffer
file identifier), then a load by the runtime in a fresh worker (which may crash without harm). Any problem is
a one-line HarnessInputError naming the file.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessInputError
from harness.protocol import WorkerRequest
from harness.types import Artifact

SUFFIX_FORMATS = {".onnx": "onnx", ".tflite": "tflite", ".pte": "executorch"}
FORMAT_RUNTIME = {"onnx": "onnxruntime", "tflite": "litert", "executorch": "executorch"}


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (at most 300 characters), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def detect_format(path: Path) -> str:
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise HarnessInputError(f"{path}: unknown artifact type {path.suffix!r} (expected .onnx, .tflite or .pte)")
    return fmt


def check_onnx(path: Path, data: bytes) -> None:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise HarnessInputError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None
    known = onnx.defs.onnx_opset_version()
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > known:
            raise HarnessInputError(f"{path}: uses ONNX opset {opset.version}, newer than the newest this onnx "
                                    f"knows ({known}): re-export with opset <= {known}")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError, RuntimeError) as exc:
        raise HarnessInputError(f"{path}: invalid ONNX model: {first_line(exc)}") from None


def check_tflite(path: Path, data: bytes) -> None:
    if len(data) < 8:
        raise HarnessInputError(f"{path}: too short to be a TFLite model ({len(data)} bytes)")
    ident = data[4:8]
    if ident != b"TFL3":
        raise HarnessInputError(f"{path}: not a TFLite flatbuffer (file identifier {ident!r}, expected b'TFL3')")


def check_pte(path: Path, data: bytes) -> None:
    """An ExecuTorch program is a flatbuffer with file identifier ``ET`` + two digits (``ET12``)."""
    if len(data) < 8:
        raise HarnessInputError(f"{path}: too short to be an ExecuTorch program ({len(data)} bytes)")
    ident = data[4:8]
    if ident[:2] != b"ET" or not ident[2:].isdigit():
        raise HarnessInputError(f"{path}: not an ExecuTorch program (file identifier {ident!r}, expected b'ET' and "
                                "two digits)")


_STATIC_CHECKS = {"onnx": check_onnx, "tflite": check_tflite, "executorch": check_pte}


def check_static(path: Path) -> tuple[str, bytes]:
    """Format and bytes of a file that passed the static checks."""
    fmt = detect_format(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HarnessInputError(f"{path}: file not found") from None
    except OSError as exc:
        raise HarnessInputError(f"{path}: cannot read: {exc.strerror}") from None
    if not data:
        raise HarnessInputError(f"{path}: empty file")
    _STATIC_CHECKS[fmt](path, data)
    return fmt, data


def make_inputs(signature: list[dict[str, Any]], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded example inputs: standard normal for floats, zeros for integers and booleans."""
    rng = np.random.default_rng(seed)
    out = {}
    for spec in signature:
        dtype = np.dtype(spec["dtype"])
        if dtype.kind == "f":
            out[spec["name"]] = rng.standard_normal(spec["shape"]).astype(dtype)
        else:
            out[spec["name"]] = np.zeros(spec["shape"], dtype=dtype)
    return out


def describe(path: Path, cache_dir: Path, launcher: Any, timeout_s: float) -> tuple[Artifact, str]:
    """Validate a user's artifact and return it with the path of its seeded example inputs (.npz)."""
    try:
        path = path.resolve(strict=True)
    except FileNotFoundError:
        raise HarnessInputError(f"{path}: file not found") from None
    except (RuntimeError, OSError) as exc:  # a symlink loop: RuntimeError before Python 3.13, OSError after
        raise HarnessInputError(f"{path}: cannot resolve the path: {getattr(exc, 'strerror', None) or exc}") from None
    fmt, data = check_static(path)
    digest = hashlib.sha256(data).hexdigest()
    runtime = FORMAT_RUNTIME[fmt]
    result = launcher.run(WorkerRequest("inspect", format=fmt, path=str(path), runtime=runtime), timeout_s)
    if not result.ok:
        raise HarnessInputError(f"{path}: {runtime} cannot load it ({result.status}): "
                                f"{first_line(Exception(result.error))}")
    signature = result.extra["signature"]
    folder = cache_dir / "io" / f"external-{digest[:20]}"
    folder.mkdir(parents=True, exist_ok=True)
    inputs_path = folder / "inputs.npz"
    if not inputs_path.is_file():
        tmp = folder / "inputs.tmp.npz"
        np.savez(tmp, **make_inputs(signature))
        os.replace(tmp, inputs_path)
    batch = signature[0]["shape"][0] if signature and signature[0]["shape"] else 1
    artifact = Artifact(
        id=f"external-{digest[:20]}", format=fmt, path=str(path), bytes=len(data), model=path.stem,
        variant="external", batch_size=int(batch), parent_id=None,
        recipe={"step": "external", "source": str(path), "signature": signature}, sha256=digest,
    )
    return artifact, str(inputs_path)
