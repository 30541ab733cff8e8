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

from colphot._arrays import as_mask, as_plane
from colphot.measure._prefetch import prefetch_box
from colphot.measure.footprints import Footprints, check_footprints, source_region, touches

__all__ = ["LocalBackgroundResult", "clipped_mean_std", "measure_local_background", "FLAGS"]

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
    footprints: Footprints | None = None,
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
    footprints
        Deblended measurement: one heavy footprint per source, whose pixels replace
        ``image``'s (the noise-replaced image) for that source only; ``None`` measures
        ``image`` as it is.
    """
    image = as_plane("image", image)
    mask = as_mask("mask", mask, shape=image.shape)
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
                       float(n_sigma), int(n_iter), level, scatter, nogood,
                       *check_footprints(footprints, n, image.shape))
    return LocalBackgroundResult(level, scatter, nogood.copy(), nogood)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _insertion_sort(a: np.ndarray, n: int) -> None:
    """Sort ``a[:n]`` in place (for the few values left at the end of a selection)."""
    for t in range(1, n):
        v = a[t]
        u = t - 1
        while u >= 0 and a[u] > v:
            a[u + 1] = a[u]
            u -= 1
        a[u + 1] = v


@njit(cache=True, nogil=True, error_model="numpy")
def _kth_and_next(vals: np.ndarray, k: int, work: np.ndarray,
                  tmp: np.ndarray) -> tuple[float, float]:
    """The k-th and (k+1)-th smallest of ``vals`` (0-based; the second is ``inf`` when k is
    the last index). ``vals`` is left untouched; ``work`` and ``tmp`` are scratch of at least
    its size.

    Quickselect with a median-of-three pivot and a branch-free three-way split (every value is
    written to both ends of ``tmp`` and only one write is kept), so the time does not hang on
    mispredicted comparisons. Values equal to the pivot stop the search at once.
    """
    n = vals.shape[0]
    for t in range(n):
        work[t] = vals[t]
    upper = math.inf  # smallest value discarded above the current range
    while n > 16:
        p0 = work[0]
        p1 = work[n // 2]
        p2 = work[n - 1]
        pivot = max(min(p0, p1), min(max(p0, p1), p2))
        n_lo = 0
        n_hi = 0
        for t in range(n):
            v = work[t]
            tmp[n_lo] = v
            n_lo += v < pivot
            tmp[n - 1 - n_hi] = v
            n_hi += v > pivot
        n_eq = n - n_lo - n_hi
        if k < n_lo:
            for t in range(n_lo):
                work[t] = tmp[t]
            n = n_lo
            upper = pivot  # the pivot is a value: the smallest of those discarded above
        elif k < n_lo + n_eq:
            if k + 1 < n_lo + n_eq:
                return pivot, pivot
            nxt = upper
            for t in range(n - n_hi, n):
                nxt = min(nxt, tmp[t])
            return pivot, nxt
        else:
            k -= n_lo + n_eq
            for t in range(n_hi):
                work[t] = tmp[n - n_hi + t]
            n = n_hi
    _insertion_sort(work, n)  # the last few
    return work[k], (work[k + 1] if k + 1 < n else upper)


@njit(cache=True, nogil=True, error_model="numpy")
def _quantile(vals: np.ndarray, pos: float, work: np.ndarray, tmp: np.ndarray,
              below: int = 0, n_total: int = -1) -> float:
    """Quantile at fractional index ``pos`` (numpy's default linear method).

    ``vals`` may be a part of the data holding ranks ``below`` onwards (of ``n_total`` values
    in all, default ``len(vals)``), as long as it holds the two ranks around ``pos``.
    """
    n_total = vals.shape[0] if n_total < 0 else n_total
    lo = int(math.floor(pos))
    low, high = _kth_and_next(vals, lo - below, work, tmp)
    if pos == lo or lo + 1 >= n_total:
        return low
    # numpy's lerp: from the nearer end
    t = pos - lo
    diff = high - low
    return low + diff * t if t < 0.5 else high - diff * (1.0 - t)


#: Bins of the histogram that localises the quartiles' ranks (plus one below and one above).
_N_BINS = 512


@njit(cache=True, nogil=True, error_model="numpy")
def _quartiles(vals: np.ndarray) -> tuple[float, float, float]:
    """(q25, median, q75) of ``vals`` (numpy's percentiles, linear interpolation)."""
    n = vals.shape[0]
    work = np.empty(n)
    tmp = np.empty(2 * n)
    counts = np.empty(_N_BINS + 2, dtype=np.int64)
    bins = np.empty(n, dtype=np.int32)
    return _quartiles_with(vals, work, tmp, counts, bins)


@njit(cache=True, nogil=True, error_model="numpy")
def _quartiles_with(vals: np.ndarray, work: np.ndarray, tmp: np.ndarray, counts: np.ndarray,
                    bins: np.ndarray) -> tuple[float, float, float]:
    """:func:`_quartiles` with caller-provided scratch: ``work`` of n values, ``tmp`` of 2n,
    ``counts`` of ``_N_BINS + 2`` integers and ``bins`` of n int32.

    For large inputs the ranks are first localised: a 32-value sample gives a range
    that holds the quartiles, a histogram of ``_N_BINS`` equal bins over that range (one bin
    below, one above) counts the values, and each quantile's two ranks are then selected
    among the few values of the bins that hold them. The binning is monotone in the value, so
    the result is exact whatever the data; a range that misses a quartile only makes its bin
    (the one below or above) larger.
    """
    n = vals.shape[0]
    qs = (0.25, 0.5, 0.75)
    if n >= 512:
        m = 32
        sample = tmp[:m]  # no allocation per source; tmp is free until the selections
        for t in range(m):
            sample[t] = vals[(t * (n - 1)) // (m - 1)]
        # about 2.4 sigma of the sample quartiles' rank scatter beyond them
        lo, hi = _two_order_statistics(sample, int(qs[0] * (m - 1)) - 6,
                                       int(math.ceil(qs[2] * (m - 1))) + 6)
        if hi > lo and math.isfinite(counts.shape[0] / (hi - lo)):
            return _binned_quartiles(vals, lo, hi, work, tmp, counts, bins)
    # every argument given, as _bin_quantile gives them: one specialisation to compile, not two
    zero = np.int64(0)
    return (_quantile(vals, qs[0] * (n - 1), work, tmp, zero, n),
            _quantile(vals, qs[1] * (n - 1), work, tmp, zero, n),
            _quantile(vals, qs[2] * (n - 1), work, tmp, zero, n))


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _two_order_statistics(a: np.ndarray, r0: int, r1: int) -> tuple[float, float]:
    """The values of ranks ``r0`` and ``r1`` (0-based) of a small array.

    Each value's rank is counted against all the others (ties broken by position) in
    branch-free loops: for a few dozen values as cheap as sorting them, with no
    data-dependent branch.
    """
    m = a.shape[0]
    v0 = a[0]
    v1 = a[0]
    for i in range(m):
        ai = a[i]
        rank = 0
        for t in range(m):
            at = a[t]
            rank += (at < ai) | ((at == ai) & (t < i))
        v0 = ai if rank == r0 else v0
        v1 = ai if rank == r1 else v1
    return v0, v1


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _bin_of_rank(counts: np.ndarray, rank: int, b: int, cum: int) -> tuple[int, int]:
    """``(bin, values below it)`` of the value of ``rank``, scanning from bin ``b`` with ``cum``
    values below it."""
    while rank >= cum + counts[b]:
        cum += counts[b]
        b += 1
    return b, cum


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _bin_quantile(vals: np.ndarray, bins: np.ndarray, counts: np.ndarray, pos: float,
                  b: int, cum: int, out: np.ndarray, tmp: np.ndarray) -> tuple[float, int, int]:
    """Quantile at ``pos`` from the values of the bins that hold its two ranks.

    Scans ``counts`` from bin ``b`` (``cum`` values below it); returns the quantile and where
    the scan stopped, for the next, higher quantile.
    """
    n = vals.shape[0]
    k = int(math.floor(pos))
    first, below = _bin_of_rank(counts, k, b, cum)
    last, _ = _bin_of_rank(counts, min(k + 1, n - 1), first, below)
    c = 0
    for i in range(n):  # branch-free compaction
        bi = bins[i]
        out[c] = vals[i]
        c += (bi >= first) & (bi <= last)
    return _quantile(out[:c], pos, tmp, tmp[c:], below, n), first, below


@njit(cache=True, nogil=True, error_model="numpy")
def _binned_quartiles(vals: np.ndarray, lo: float, hi: float, work: np.ndarray, tmp: np.ndarray,
                      counts: np.ndarray, bins: np.ndarray) -> tuple[float, float, float]:
    """Quartiles of ``vals`` with their ranks localised by a histogram over ``[lo, hi)``."""
    n = vals.shape[0]
    n_bins = counts.shape[0] - 2
    scale = n_bins / (hi - lo)
    top = n_bins + 1.0
    bins = bins[:n]  # 0 below lo, n_bins + 1 at or above hi
    for i in range(n):
        bins[i] = np.int32(min(max((vals[i] - lo) * scale + 1.0, 0.0), top))
    counts[:] = 0
    for i in range(n):
        counts[bins[i]] += 1
    out = work[:n]
    q25, b, cum = _bin_quantile(vals, bins, counts, 0.25 * (n - 1), 0, 0, out, tmp)
    q50, b, cum = _bin_quantile(vals, bins, counts, 0.5 * (n - 1), b, cum, out, tmp)
    q75, b, cum = _bin_quantile(vals, bins, counts, 0.75 * (n - 1), b, cum, out, tmp)
    return q25, q50, q75


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _take(row, ox, mask, has_mask, badbits, i, j0, j1, buf, m):
    """Append the good pixels ``j0..j1`` of row ``i`` to ``buf[m:]`` (pixel ``j`` is
    ``row[j - ox]``, its mask ``mask[i, j]``); return the new count.

    Branch-free compaction over row slices: each value is written, the count advances only
    for good ones.
    """
    if j1 < j0:
        return m
    seg = row[j0 - ox:j1 - ox + 1]
    inf = math.inf
    if has_mask:
        mseg = mask[i, j0:j1 + 1]
        for t in range(seg.shape[0]):
            v = np.float64(seg[t])
            buf[m] = v
            m += (abs(v) < inf) & ((np.uint64(mseg[t]) & badbits) == 0)
    else:
        for t in range(seg.shape[0]):
            v = np.float64(seg[t])
            buf[m] = v
            m += abs(v) < inf
    return m


@njit(cache=True, nogil=True, fastmath={"reassoc"}, error_model="numpy")
def _clipped_sums(vals: np.ndarray, center: float, hw: float) -> tuple[float, float, int]:
    """Sum, sum of squares and number of ``vals`` with ``|v - center| <= hw`` (branch-free)."""
    acc = 0.0
    acc2 = 0.0
    cnt = 0
    for t in range(vals.shape[0]):
        v = vals[t]
        keep = abs(v - center) <= hw
        w = v if keep else 0.0
        acc += w
        acc2 += w * w
        cnt += keep
    return acc, acc2, cnt


@njit(cache=True, nogil=True, error_model="numpy")
def _meanclip(vals: np.ndarray, n_sigma: float, n_iter: int, work: np.ndarray, tmp: np.ndarray,
              counts: np.ndarray, bins: np.ndarray) -> tuple[float, float]:
    """afw's MEANCLIP and STDEVCLIP of ``vals`` (finite, at least one), with the scratch of
    :func:`_quartiles_with`."""
    q25, center, q75 = _quartiles_with(vals, work, tmp, counts, bins)
    hw = n_sigma * 0.741 * (q75 - q25)
    mean = center
    std = 0.0
    for _ in range(n_iter):
        acc, acc2, cnt = _clipped_sums(vals, center, hw)
        if cnt == 0:
            break
        mean = acc / cnt
        var = acc2 / cnt - mean * mean
        std = math.sqrt(var * cnt / (cnt - 1)) if cnt > 1 and var > 0 else 0.0
        center = mean
        hw = n_sigma * std
    return mean, std


def clipped_mean_std(values: np.ndarray, *, n_sigma: float = 3.0, n_iter: int = 3
                     ) -> tuple[float, float]:
    """Sigma-clipped mean and standard deviation of the finite ``values`` (afw's MEANCLIP,
    STDEVCLIP: as the local background clips its annulus); ``(nan, nan)`` when none is finite.
    """
    vals = np.asarray(values, dtype=np.float64).ravel()
    vals = vals[np.isfinite(vals)]
    n = vals.shape[0]
    if n == 0:
        return math.nan, math.nan
    return _meanclip(vals, float(n_sigma), int(n_iter), np.empty(n), np.empty(2 * n),
                     np.empty(_N_BINS + 2, dtype=np.int64), np.empty(n, dtype=np.int32))


#: Sources ahead whose annulus rows are prefetched while the current one is measured.
_AHEAD = 2


@njit(cache=True, nogil=True, error_model="numpy")
def _background_kernel(image, mask, badbits, xs, ys, inner, outer, n_sigma, n_iter,
                       level, scatter, nogood, fx0, fy0, fw, fh, foff, fval, fmsk):
    ny, nx = image.shape
    region = np.empty((1, 1), dtype=image.dtype)
    has_mask = mask.shape[0] == ny and mask.shape[1] == nx
    buf = np.empty(16)
    work = np.empty(16)
    tmp = np.empty(2 * 16)
    counts = np.empty(_N_BINS + 2, dtype=np.int64)
    bins = np.empty(16, dtype=np.int32)
    for s in range(xs.shape[0]):
        x = xs[s]
        y = ys[s]
        r0 = inner[s]
        r1 = outer[s]
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(r1)):
            nogood[s] = True
            continue
        if s + _AHEAD < xs.shape[0]:
            xn = xs[s + _AHEAD]
            yn = ys[s + _AHEAD]
            rn = outer[s + _AHEAD]
            prefetch_box(image, yn - rn, yn + rn, xn - rn, xn + rn)
            if has_mask:
                prefetch_box(mask, yn - rn, yn + rn, xn - rn, xn + rn)
        i0 = max(int(math.floor(y - r1)), 0)
        i1 = min(int(math.ceil(y + r1)), ny - 1)
        j0 = max(int(math.floor(x - r1)), 0)
        j1 = min(int(math.ceil(x + r1)), nx - 1)
        need = (i1 - i0 + 1) * (j1 - j0 + 1)
        if need > buf.shape[0]:
            buf = np.empty(need)
            work = np.empty(need)
            tmp = np.empty(2 * need)
            bins = np.empty(need, dtype=np.int32)
        # the pixels this source is measured on: its footprint inserted where it reaches
        if touches(s, i0, i1, j0, j1, fx0, fy0, fw, fh):
            region = source_region(image, i0, i1, j0, j1, s, fx0, fy0, fw, fh, foff, fval,
                                   fmsk, region)
            img = region
            oy = i0
            ox = j0
        else:
            img = image
            oy = 0
            ox = 0
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
                # clamped to the outer span, also for a centre off the image
                ka = min(max(int(math.floor(x - w0)) + 1, ja), jb + 1)
                kb = max(min(int(math.ceil(x + w0)) - 1, jb), ka - 1)
            else:
                ka = jb + 1
                kb = jb
            row = img[i - oy]
            m = _take(row, ox, mask, has_mask, badbits, i, ja, ka - 1, buf, m)
            m = _take(row, ox, mask, has_mask, badbits, i, kb + 1, jb, buf, m)
        if m == 0:
            nogood[s] = True
            continue
        level[s], scatter[s] = _meanclip(buf[:m], n_sigma, n_iter, work, tmp, counts, bins)
