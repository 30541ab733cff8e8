"""Circular-aperture fluxes: every radius of a source in one pass over its pixels.

Per pixel row, the pixels wholly inside a circle form one span; spans of growing radii nest, so
each radius's span sum is the previous one plus two short side segments, and every interior
pixel is read once for all radii. Only the pixels that straddle a circle get a fractional
weight (exact area, n x n sub-pixel samples, or the centre test). No pixel is masked, as in LSST:
a NaN under an aperture gives a NaN flux.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from colphot._typing import ApertureMethod
from colphot.measure._overlap import band_constants, band_integral, sampled_overlap

__all__ = ["ApertureResult", "measure_apertures", "FLAGS"]

#: (bit, name, description) of the aperture flags; bit 0 is the general flag.
FLAGS = (
    (0, "flag", "general failure"),
    (1, "flag_apertureTruncated", "aperture extends past the tile"),
)


@dataclass(frozen=True)
class ApertureResult:
    """Aperture sums of ``n`` sources at ``k`` radii.

    Attributes
    ----------
    flux, flux_err
        ``(n, k)`` weighted sums of pixel values and ``sqrt(sum(w V))``, image units; NaN where
        truncated.
    truncated
        ``(n, k)`` bool, the aperture extends past the image.
    """

    flux: np.ndarray
    flux_err: np.ndarray
    truncated: np.ndarray


def measure_apertures(
    image: np.ndarray,
    variance: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radii: np.ndarray | list[float] | tuple[float, ...],
    *,
    method: ApertureMethod = "exact",
    subpixels: int = 5,
) -> ApertureResult:
    """Sum pixel values in circular apertures at fixed positions.

    Parameters
    ----------
    image, variance
        2D pixel values and their variance (any float dtype).
    x, y
        Aperture centres in array pixel coordinates (0-based, pixel centres at integers).
    radii
        Aperture radii, pixels, in increasing order.
    method
        ``"exact"`` overlap area, ``"subpixel"`` (``subpixels`` x ``subpixels`` samples per
        pixel; 5 reproduces SExtractor), or ``"center"``.

    Returns
    -------
    ApertureResult
        Sums in image units; an aperture not wholly on the image is NaN and ``truncated``.
    """
    radii_arr = np.asarray(radii, dtype=np.float64)
    if radii_arr.ndim != 1 or radii_arr.size == 0 or np.any(np.diff(radii_arr) <= 0):
        raise ValueError(f"radii: expected increasing positive radii, got {radii_arr}")
    if np.any(radii_arr <= 0):
        raise ValueError(f"radii: expected positive radii, got {radii_arr}")
    if image.ndim != 2 or image.shape != variance.shape:
        raise ValueError(f"image and variance must be 2D of one shape, got {image.shape}, "
                         f"{variance.shape}")
    if method == "exact":
        mode, n_sub = 0, 1
    elif method == "subpixel":
        mode, n_sub = 1, int(subpixels)
    elif method == "center":
        mode, n_sub = 1, 1
    else:
        raise ValueError(f"method: expected 'exact', 'subpixel' or 'center', got {method!r}")
    if n_sub < 1:
        raise ValueError(f"subpixels: expected >= 1, got {subpixels}")
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x, y: expected 1D arrays of one length, got shapes {x.shape}, {y.shape}")
    n, k = x.shape[0], radii_arr.shape[0]
    flux = np.full((n, k), np.nan)
    var = np.full((n, k), np.nan)
    truncated = np.ones((n, k), dtype=np.bool_)
    _apertures_kernel(image, variance, x, y, radii_arr, mode, n_sub, flux, var, truncated)
    return ApertureResult(flux=flux, flux_err=np.sqrt(var), truncated=truncated)


@njit(cache=True, nogil=True, inline="always")
def _exact_segment(image, variance, j, i0, i1, x, r, r2, band, f, v):
    """Add the exact-overlap weighted pixels ``i0..i1`` of row ``j``; edges share ``H(u)``."""
    if i1 < i0:
        return f, v
    h_prev = band_integral(i0 - 0.5 - x, r, r2, band)
    for i in range(i0, i1 + 1):
        h_next = band_integral(i + 0.5 - x, r, r2, band)
        w = h_next - h_prev
        h_prev = h_next
        f += w * image[j, i]
        v += w * variance[j, i]
    return f, v


@njit(cache=True, nogil=True)
def _apertures_kernel(image, variance, xs, ys, radii, mode, n_sub, flux, var, truncated):
    ny, nx = image.shape
    k_all = radii.shape[0]
    tot_f = np.empty(k_all)
    tot_v = np.empty(k_all)
    band = np.empty(8)
    for s in range(xs.shape[0]):
        x = xs[s]
        y = ys[s]
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        kmax = 0
        while kmax < k_all:
            r = radii[kmax]
            if x - r < -0.5 or x + r > nx - 0.5 or y - r < -0.5 or y + r > ny - 0.5:
                break
            kmax += 1
        if kmax == 0:
            continue
        for k in range(kmax):
            tot_f[k] = 0.0
            tot_v[k] = 0.0
        rmax = radii[kmax - 1]
        j_lo = int(math.floor(y - rmax - 0.5)) + 1
        j_hi = int(math.ceil(y + rmax + 0.5)) - 1
        j_lo = max(j_lo, 0)
        j_hi = min(j_hi, ny - 1)
        for j in range(j_lo, j_hi + 1):
            dy0 = j - 0.5 - y
            dy1 = j + 0.5 - y
            hy = max(abs(dy0), abs(dy1))
            ly = 0.0 if dy0 <= 0.0 <= dy1 else min(abs(dy0), abs(dy1))
            a_prev = 1
            b_prev = 0  # empty span
            row_f = 0.0
            row_v = 0.0
            for k in range(kmax):
                r = radii[k]
                if ly >= r:
                    continue
                r2 = r * r
                w_out = math.sqrt(r2 - ly * ly)
                i_lo = max(int(math.floor(x - w_out - 0.5)) + 1, 0)
                i_hi = min(int(math.ceil(x + w_out + 0.5)) - 1, nx - 1)
                if hy < r:
                    w_in = math.sqrt(r2 - hy * hy)
                    a = int(math.ceil(x - w_in + 0.5))
                    b = int(math.floor(x + w_in - 0.5))
                else:
                    a = 1
                    b = 0
                if a <= b:
                    if a_prev <= b_prev:
                        for i in range(a, a_prev):
                            row_f += image[j, i]
                            row_v += variance[j, i]
                        for i in range(b_prev + 1, b + 1):
                            row_f += image[j, i]
                            row_v += variance[j, i]
                    else:
                        for i in range(a, b + 1):
                            row_f += image[j, i]
                            row_v += variance[j, i]
                    a_prev = a
                    b_prev = b
                    edge_lo = a - 1
                    edge_hi = b + 1
                else:
                    edge_lo = i_hi
                    edge_hi = i_hi + 1
                f = row_f
                v = row_v
                if mode == 0:
                    band_constants(dy0, r, r2, band, 0)
                    band_constants(dy1, r, r2, band, 4)
                    f, v = _exact_segment(image, variance, j, i_lo, edge_lo, x, r, r2, band,
                                          f, v)
                    f, v = _exact_segment(image, variance, j, edge_hi, i_hi, x, r, r2, band,
                                          f, v)
                else:
                    for i in range(i_lo, edge_lo + 1):
                        w = sampled_overlap(i - 0.5 - x, dy0, r, n_sub)
                        f += w * image[j, i]
                        v += w * variance[j, i]
                    for i in range(edge_hi, i_hi + 1):
                        w = sampled_overlap(i - 0.5 - x, dy0, r, n_sub)
                        f += w * image[j, i]
                        v += w * variance[j, i]
                tot_f[k] += f
                tot_v[k] += v
        for k in range(kmax):
            flux[s, k] = tot_f[k]
            var[s, k] = tot_v[k]
            truncated[s, k] = False
