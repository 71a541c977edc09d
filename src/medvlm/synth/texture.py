"""Smooth random fields and small raster helpers shared by the derm, path and ct generators (numpy only).

Value noise: random values on a coarse lattice, interpolated with smoothstep weights. A field of `cells`
lattice cells across an axis varies on a scale of (axis length / cells) samples; values lie in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def noise_lattice(rng: np.random.Generator, cells: Sequence[int]) -> np.ndarray:
    """Random lattice values in [-1, 1] with (cells + 2) nodes per axis (float32), for `sample_lattice`."""
    return rng.uniform(-1.0, 1.0, size=tuple(int(c) + 2 for c in cells)).astype(np.float32)


def sample_lattice(lattice: np.ndarray, *coords: np.ndarray) -> np.ndarray:
    """Smoothly interpolate a 2D lattice at float coordinates (lattice units, clipped to its extent).

    coords: one array per lattice axis, broadcastable to a common shape; returns that shape (float32).
    """
    if lattice.ndim != 2 or len(coords) != 2:
        raise ValueError("sample_lattice takes a 2D lattice and two coordinate arrays")
    rows, cols = lattice.shape
    u = np.clip(np.asarray(coords[0], dtype=np.float32), 0.0, rows - 1.001)
    v = np.clip(np.asarray(coords[1], dtype=np.float32), 0.0, cols - 1.001)
    i = u.astype(np.int32)
    j = v.astype(np.int32)
    wu = _smoothstep(u - i.astype(np.float32))
    wv = _smoothstep(v - j.astype(np.float32))
    flat = lattice.astype(np.float32).ravel()
    corner = i * cols + j
    top = flat.take(corner) * (1 - wv) + flat.take(corner + 1) * wv
    bottom = flat.take(corner + cols) * (1 - wv) + flat.take(corner + cols + 1) * wv
    return top * (1 - wu) + bottom * wu


def smooth_noise(rng: np.random.Generator, shape: Sequence[int], cells: Sequence[int] | int) -> np.ndarray:
    """A smooth random field of `shape` (any number of axes) in [-1, 1], float32.

    cells: lattice cells across each axis (an int applies to all); more cells = finer detail.
    The lattice is interpolated one axis at a time (elementwise work only: no BLAS threads on small arrays).
    """
    shape = tuple(int(s) for s in shape)
    if isinstance(cells, int | np.integer):
        cells = (int(cells),) * len(shape)
    field = noise_lattice(rng, cells)
    for axis, (size, n_cells) in enumerate(zip(shape, cells, strict=True)):
        position = (np.arange(size, dtype=np.float32) + np.float32(0.5)) * np.float32(n_cells / size) + np.float32(0.5)
        index = position.astype(np.intp)
        weight = _smoothstep(position - index.astype(np.float32))
        expand = [None] * field.ndim
        expand[axis] = slice(None)
        weight = weight[tuple(expand)]
        field = np.take(field, index, axis=axis) * (1 - weight) + np.take(field, index + 1, axis=axis) * weight
    return np.ascontiguousarray(field, dtype=np.float32)


def layered_noise(rng: np.random.Generator, shape: Sequence[int], cells: int) -> np.ndarray:
    """Two octaves of `smooth_noise` (cells and 2.3 x cells), which hides the lattice's axis-aligned
    blockiness when the field is thresholded into shapes; roughly in [-1, 1], float32."""
    coarse = smooth_noise(rng, shape, max(1, int(cells)))
    fine = smooth_noise(rng, shape, max(2, int(round(2.3 * cells))))
    return (coarse * np.float32(0.75) + fine * np.float32(0.35)).astype(np.float32)


def ridges(field: np.ndarray, width: float) -> np.ndarray:
    """Thin network-like lines where a noise field crosses zero: exp(-(field / width)^2), in (0, 1]."""
    return np.exp(-np.square(field / width)).astype(np.float32)
