"""Pixel flags: mask bits under each source, LSST's way.

``…Center`` flags look at the 3 x 3 pixels around the rounded centroid; the plain flags at the
whole footprint: the source's heavy footprint in deblended measurement (an in-band catalog given,
:func:`colphot.measure.footprints.footprint_mask_bits`), else the PSF model's box.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from colphot._arrays import as_mask

__all__ = ["PIXEL_FLAGS", "gather_mask_bits", "pixel_flags"]

#: (column suffix, mask plane(s), where): where is "footprint" or "center".
PIXEL_FLAGS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("nodata", ("NO_DATA",), "footprint"),
    ("bad", ("BAD",), "footprint"),
    ("saturated", ("SAT",), "footprint"),
    ("saturatedCenter", ("SAT",), "center"),
    ("interpolated", ("INTRP",), "footprint"),
    ("interpolatedCenter", ("INTRP",), "center"),
    ("cr", ("CR",), "footprint"),
    ("crCenter", ("CR",), "center"),
    ("suspect", ("SUSPECT",), "footprint"),
    ("suspectCenter", ("SUSPECT",), "center"),
)


def gather_mask_bits(
    mask: np.ndarray, x: np.ndarray, y: np.ndarray, half_size: np.ndarray | int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OR of the mask bits in each source's footprint box and in its 3 x 3 centre.

    Parameters
    ----------
    mask
        2D integer bit planes.
    x, y
        Centroids, array pixel coordinates (0-based).
    half_size
        Half side of the footprint box around the rounded centroid, pixels.

    Returns
    -------
    footprint, center, offimage
        ``uint64`` ORs of the bits (0 where off the image) and a bool "centre off the image".
    """
    mask = np.asarray(mask)
    mask = as_mask("mask", mask, shape=mask.shape if mask.ndim == 2 else (-1, -1))
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x, y: expected 1D arrays of one length, got shapes {x.shape}, {y.shape}")
    half = np.ascontiguousarray(np.broadcast_to(half_size, x.shape), dtype=np.int64)
    n = x.shape[0]
    foot = np.zeros(n, dtype=np.uint64)
    cent = np.zeros(n, dtype=np.uint64)
    off = np.zeros(n, dtype=np.bool_)
    _gather_kernel(mask, x, y, half, foot, cent, off)
    return foot, cent, off


@njit(cache=True, nogil=True)
def _gather_kernel(mask, xs, ys, half, foot, cent, off):
    ny, nx = mask.shape
    for s in range(xs.shape[0]):
        x = xs[s]
        y = ys[s]
        if not (math.isfinite(x) and math.isfinite(y)) or x < -0.5 or y < -0.5 \
                or x >= nx - 0.5 or y >= ny - 0.5:
            off[s] = True
            continue
        xi = int(math.floor(x + 0.5))
        yi = int(math.floor(y + 0.5))
        h = half[s]
        acc = np.uint64(0)
        for i in range(max(yi - h, 0), min(yi + h, ny - 1) + 1):
            for j in range(max(xi - h, 0), min(xi + h, nx - 1) + 1):
                acc |= np.uint64(mask[i, j])
        foot[s] = acc
        acc = np.uint64(0)
        for i in range(max(yi - 1, 0), min(yi + 1, ny - 1) + 1):
            for j in range(max(xi - 1, 0), min(xi + 1, nx - 1) + 1):
                acc |= np.uint64(mask[i, j])
        cent[s] = acc


def pixel_flags(
    footprint_bits: np.ndarray,
    center_bits: np.ndarray,
    offimage: np.ndarray,
    planes: dict[str, int],
) -> dict[str, np.ndarray]:
    """Turn gathered mask bits into ``pixelFlags_*`` columns (absent planes give False).

    ``edge`` is set for sources off the image or with EDGE or NO_DATA pixels in the footprint.
    """

    def bits(names: tuple[str, ...]) -> np.uint64:
        value = 0
        for name in names:
            if name in planes:
                value |= 1 << planes[name]
        return np.uint64(value)

    out: dict[str, np.ndarray] = {"pixelFlags_offimage": offimage.copy()}
    out["pixelFlags_edge"] = offimage | ((footprint_bits & bits(("EDGE", "NO_DATA"))) != 0)
    for suffix, names, where in PIXEL_FLAGS:
        source = footprint_bits if where == "footprint" else center_bits
        out[f"pixelFlags_{suffix}"] = (source & bits(names)) != 0
    return out
