"""Generated samples as image grids (PNG, Pillow), so a report shows what each variant draws.

Every variant of a model is given the same latents (the fidelity sample set), and every grid is scaled with
the fp32 reference's value range, so differences between rows are differences between the models.
Files: ``<run>/samples/<job hash>.png`` per job and ``<run>/samples/reference-<model>-b<batch>.png``.
"""
from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

GRID_SAMPLES = 8
"""Samples per grid row (the first ones of the sample set)."""
SCALE = 3
"""Each pixel drawn as SCALE × SCALE pixels (digits are 8×8 to 16×16)."""


def sample_file(run_dir: Path, job_key: str) -> Path:
    return run_dir / "samples" / f"{hashlib.sha256(job_key.encode()).hexdigest()[:20]}.png"


def reference_file(run_dir: Path, model: str, batch_size: int) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in model)
    return run_dir / "samples" / f"reference-{safe}-b{batch_size}.png"


def as_images(output: np.ndarray) -> np.ndarray | None:
    """(N, H, W) or (N, H, W, 3) float images from a generator output, or None when it is not an image.

    Accepts NCHW with 1 or 3 channels, NHW, and flat (N, D) with D a square (grey) or 3 × a square (RGB).
    """
    x = np.asarray(output, dtype=np.float32)
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)
    if x.ndim == 3:
        return x
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side == x.shape[1] and side > 1:
            return x.reshape(-1, side, side)
        side = math.isqrt(x.shape[1] // 3)
        if x.shape[1] % 3 == 0 and side * side * 3 == x.shape[1] and side > 1:
            return x.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)
    return None


NONFINITE_RGB = (255, 0, 255)
"""Colour of a pixel whose value is NaN or ±inf (magenta: no generator draws it by accident in grey digits)."""


def grid_png(images: np.ndarray, value_range: tuple[float, float], scale: int = SCALE) -> bytes:
    """One row of images as PNG bytes, values mapped linearly from ``value_range`` to 0–255 and clipped;
    NaN / ±inf pixels drawn in ``NONFINITE_RGB``."""
    from PIL import Image

    lo, hi = value_range
    span = hi - lo if hi > lo else 1.0
    bad = ~np.isfinite(images)
    pixels = np.clip((np.where(bad, lo, images) - lo) / span * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if bad.any():
        if pixels.ndim == 3:  # grey: to RGB so the non-finite colour shows
            pixels = np.repeat(pixels[..., None], 3, axis=-1)
        else:
            bad = bad.any(axis=-1)
        pixels[bad] = NONFINITE_RGB
    gap = 1
    n, h, w = pixels.shape[:3]
    shape = (h, n * (w + gap) - gap) + pixels.shape[3:]
    row = np.full(shape, 255, dtype=np.uint8)
    for i, img in enumerate(pixels):
        row[:, i * (w + gap): i * (w + gap) + w] = img
    image = Image.fromarray(row, mode="RGB" if row.ndim == 3 else "L")
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def save_sample_grids(run_dir: Path, job_key: str, model: str, batch_size: int,
                      outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> Path | None:
    """Write this job's grid (and the reference grid, once) from the first output; None when not images."""
    if not outputs or not reference:
        return None
    images, ref_images = as_images(outputs[0][:GRID_SAMPLES]), as_images(reference[0][:GRID_SAMPLES])
    if images is None or ref_images is None or images.shape != ref_images.shape:
        return None
    finite = ref_images[np.isfinite(ref_images)]
    value_range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    path = sample_file(run_dir, job_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    ref_path = reference_file(run_dir, model, batch_size)
    if not ref_path.exists():
        ref_path.write_bytes(grid_png(ref_images, value_range))
    path.write_bytes(grid_png(images, value_range))
    return path
