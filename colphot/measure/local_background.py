"""Local background: a sigma-clipped mean in an annulus around each source (LSST's LocalBackground).

The clipping follows afw's MEANCLIP: start from the median with a width of
``n_sigma * 0.741 * IQR``, then ``n_iter`` times take the mean and standard deviation of the pixels
within ``n_sigma`` standard deviations of the current centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = ["LocalBackgroundResult", "measure_local_background", "FLAGS"]

FLAGS = (
    (0, "flag", "general failure"),
    (1, "flag_noGoodPixels", "no good pixel in the annulus"),
    (2, "flag_noPsf", "no PSF model to size the annulus"),
)


@dataclass(frozen=True)
class LocalBackgroundResult:
    """Clipped mean (``level``) and standard deviation (``scatter``) per pixel, image units."""

    level: np.ndarray
    scatter: np.ndarray
    flag: np.ndarray
    flag_no_good_pixels: np.ndarray


def measure_local_background(
    image: np.ndarray,
    mask: np.ndarray | None,
    x: np.ndarray,
    y: np.ndarray,
    inner: np.ndarray,
    outer: np.ndarray,
    *,
    bad_mask_bits: int = 0,
    n_sigma: float = 3.0,
    n_iter: int = 3,
) -> LocalBackgroundResult:
    """Sigma-clipped mean and scatter of the pixels in an annulus around each position.

    Parameters
    ----------
    image
        2D pixel values.
    mask
        2D bit planes or ``None``; pixels with any of ``bad_mask_bits`` are excluded.
    x, y
        Centres, array pixel coordinates (0-based).
    inner, outer
        Per-source annulus radii, pixels (pixel centres with ``inner <= d < outer`` count).
    n_sigma, n_iter
        Clipping threshold (standard deviations) and number of iterations.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x, y: expected 1D arrays of one length, got shapes {x.shape}, {y.shape}")
    inner = np.ascontiguousarray(np.broadcast_to(inner, x.shape), dtype=np.float64)
    outer = np.ascontiguousarray(np.broadcast_to(outer, x.shape), dtype=np.float64)
    if mask is None:
        mask = np.zeros((1, 1), dtype=np.uint32)
        bad_mask_bits = 0
    n = x.shape[0]
    level = np.full(n, np.nan)
    scatter = np.full(n, np.nan)
    nogood = np.zeros(n, dtype=np.bool_)
    _background_kernel(image, mask, np.uint64(bad_mask_bits), x, y, inner, outer,
                       float(n_sigma), int(n_iter), level, scatter, nogood)
    return LocalBackgroundResult(level, scatter, nogood.copy(), nogood)


@njit(cache=True, nogil=True)
def _select(vals: np.ndarray, k: int) -> float:
    """The k-th smallest value (0-based); reorders ``vals`` in place (Hoare quickselect)."""
    lo = 0
    hi = vals.shape[0] - 1
    while lo < hi:
        pivot = vals[(lo + hi) // 2]
        i = lo
        j = hi
        while i <= j:
            while vals[i] < pivot:
                i += 1
            while vals[j] > pivot:
                j -= 1
            if i <= j:
                vals[i], vals[j] = vals[j], vals[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return vals[k]


@njit(cache=True, nogil=True)
def _quantile_in(vals: np.ndarray, start: int, pos: float) -> float:
    """Quantile at fractional index ``pos`` of all ``vals``, searched in ``vals[start:]``.

    Valid when every element before ``start`` is <= every element from ``start`` on (true after
    a selection); reorders ``vals[start:]``. Linear interpolation, numpy's default method.
    """
    lo = int(math.floor(pos))
    part = vals[start:]
    low = _select(part, lo - start)
    if lo + 1 >= vals.shape[0] or pos == lo:
        return low
    high = vals[lo + 1]
    for t in range(lo + 2, vals.shape[0]):
        if vals[t] < high:
            high = vals[t]
    return low + (pos - lo) * (high - low)


@njit(cache=True, nogil=True)
def _quartiles(vals: np.ndarray) -> tuple[float, float, float]:
    """(q25, median, q75) of ``vals``, reordering it; three selections on shrinking ranges."""
    n = vals.shape[0]
    p50 = 0.5 * (n - 1)
    k = int(math.floor(p50))
    med = _quantile_in(vals, 0, p50)
    # vals[:k] <= vals[k] <= vals[k + 1:]: the lower quartile lies in vals[:k + 1]
    q25 = _quantile_in(vals[: k + 1], 0, 0.25 * (n - 1)) if k > 0 else vals[0]
    if 0.25 * (n - 1) > k - 1 and k + 1 < n:
        # interpolation may reach past the sub-range: redo on the whole array (tiny n only)
        q25 = _quantile_in(vals, 0, 0.25 * (n - 1))
    q75 = _quantile_in(vals, k, 0.75 * (n - 1))
    return q25, med, q75


@njit(cache=True, nogil=True, inline="always")
def _take(image, mask, has_mask, badbits, i, j0, j1, buf, m):
    """Append the good pixels ``j0..j1`` of row ``i`` to ``buf[m:]``; return the new count."""
    for j in range(j0, j1 + 1):
        v = image[i, j]
        if not math.isfinite(v):
            continue
        if has_mask and (np.uint64(mask[i, j]) & badbits) != 0:
            continue
        buf[m] = v
        m += 1
    return m


@njit(cache=True, nogil=True)
def _background_kernel(image, mask, badbits, xs, ys, inner, outer, n_sigma, n_iter,
                       level, scatter, nogood):
    ny, nx = image.shape
    has_mask = mask.shape[0] == ny and mask.shape[1] == nx
    buf = np.empty(16)
    for s in range(xs.shape[0]):
        x = xs[s]
        y = ys[s]
        r0 = inner[s]
        r1 = outer[s]
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(r1)):
            nogood[s] = True
            continue
        i0 = max(int(math.floor(y - r1)), 0)
        i1 = min(int(math.ceil(y + r1)), ny - 1)
        j0 = max(int(math.floor(x - r1)), 0)
        j1 = min(int(math.ceil(x + r1)), nx - 1)
        need = (i1 - i0 + 1) * (j1 - j0 + 1)
        if need > buf.shape[0]:
            buf = np.empty(need)
        m = 0
        r02 = r0 * r0
        r12 = r1 * r1
        for i in range(i0, i1 + 1):
            dy2 = (i - y) * (i - y)
            if dy2 >= r12:
                continue
            # pixel centres with r0 <= |d| < r1: the outer span minus the inner one
            w1 = math.sqrt(r12 - dy2)
            ja = max(int(math.floor(x - w1)) + 1, j0)
            jb = min(int(math.ceil(x + w1)) - 1, j1)
            if dy2 < r02:
                w0 = math.sqrt(r02 - dy2)
                ka = max(int(math.floor(x - w0)) + 1, ja)
                kb = min(int(math.ceil(x + w0)) - 1, jb)
            else:
                ka = jb + 1
                kb = jb
            m = _take(image, mask, has_mask, badbits, i, ja, ka - 1, buf, m)
            m = _take(image, mask, has_mask, badbits, i, kb + 1, jb, buf, m)
        if m == 0:
            nogood[s] = True
            continue
        vals = buf[:m]
        q25, center, q75 = _quartiles(vals)
        hw = n_sigma * 0.741 * (q75 - q25)
        mean = center
        std = 0.0
        for _ in range(n_iter):
            acc = 0.0
            acc2 = 0.0
            cnt = 0
            for t in range(m):
                v = vals[t]
                if abs(v - center) <= hw:
                    acc += v
                    acc2 += v * v
                    cnt += 1
            if cnt == 0:
                break
            mean = acc / cnt
            var = acc2 / cnt - mean * mean
            std = math.sqrt(var * cnt / (cnt - 1)) if cnt > 1 and var > 0 else 0.0
            center = mean
            hw = n_sigma * std
        level[s] = mean
        scatter[s] = std
