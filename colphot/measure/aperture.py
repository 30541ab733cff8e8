"""Circular-aperture fluxes: every radius of a source in one pass over its pixels.

Per pixel row, the pixels wholly inside a circle form one span; spans of growing radii nest, so
each radius's span sum is the previous one plus two short side segments, and every interior
pixel is read once for all radii. Only the pixels that straddle a circle get a fractional
weight (exact area, n x n sub-pixel samples, or the centre test). For the exact area every
square root and arcsine a source needs (at its row and column edges, per radius) is tabulated
first, in vectorised loops; see :mod:`colphot.measure._overlap`. No pixel is masked, as in LSST:
a non-finite pixel value or variance under an aperture (NO_DATA in a coadd) gives a NaN flux and
error, flagged ``flag_noData``.

``method="sinc"`` is LSST's ``CircularApertureFlux``: radii up to ``max_sinc_radius`` are sinc
apertures (the band-limited image integrated over the circle, :mod:`colphot.measure._sinc`),
larger ones the pixel-centre sum (meas_base ``computeNaiveFlux``, here ``"center"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from colphot._arrays import as_plane
from colphot._typing import ApertureMethod
from colphot.measure._overlap import band_h as _h
from colphot.measure._overlap import circle_integral as _g
from colphot.measure._overlap import sampled_overlap
from colphot.measure._sinc import coefficient_stack as _sinc_stack
from colphot.measure._sinc import sinc_apertures
from colphot.measure.footprints import (
    Footprints,
    check_footprints,
    pick_row,
    source_rows,
    touches,
)

__all__ = ["ApertureResult", "measure_apertures", "FLAGS", "MAX_SINC_RADIUS"]

#: (bit, name, description) of the aperture flags; bit 0 is the general flag.
FLAGS = (
    (0, "flag", "general failure"),
    (1, "flag_apertureTruncated", "aperture extends past the tile"),
    (2, "flag_noData", "a pixel in the aperture has no data (non-finite value or variance)"),
    (3, "flag_sincCoeffsTruncated", "the sinc coefficient image extends past the tile"),
)

#: meas_base ``ApertureFluxControl.maxSincRadius``: the largest radius, pixels, measured with
#: sinc coefficients by ``method="sinc"``.
MAX_SINC_RADIUS = 10.0


@dataclass(frozen=True)
class ApertureResult:
    """Aperture sums of ``n`` sources at ``k`` radii.

    Attributes
    ----------
    flux, flux_err
        ``(n, k)`` weighted sums of pixel values and ``sqrt(sum(w V))``, image units; NaN where
        truncated or where a pixel has no data.
    truncated
        ``(n, k)`` bool, the aperture extends past the image.
    no_data
        ``(n, k)`` bool, a pixel in the aperture has a non-finite value or variance.
    sinc_truncated
        ``(n, k)`` bool, the sinc coefficient image extends past the image (sinc radii only;
        False for other radii and methods). The flux is then summed over the coefficients on
        the image, and is NaN and ``truncated`` only where the aperture itself is cut.
    """

    flux: np.ndarray
    flux_err: np.ndarray
    truncated: np.ndarray
    no_data: np.ndarray
    sinc_truncated: np.ndarray

    @property
    def flag(self) -> np.ndarray:
        """``(n, k)`` general failure flag: truncated or no data. As in meas_base, a truncated
        sinc coefficient image alone does not set it."""
        return self.truncated | self.no_data


def measure_apertures(
    image: np.ndarray,
    variance: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radii: np.ndarray | list[float] | tuple[float, ...],
    *,
    method: ApertureMethod = "exact",
    subpixels: int = 5,
    footprints: Footprints | None = None,
    max_sinc_radius: float = MAX_SINC_RADIUS,
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
        pixel; 5 reproduces SExtractor), ``"center"``, or ``"sinc"`` (LSST's
        ``CircularApertureFlux``: sinc coefficients up to ``max_sinc_radius``, ``"center"``
        above).
    footprints
        Deblended measurement: one heavy footprint per source, whose pixels replace
        ``image``'s (the noise-replaced image) for that source only; ``None`` measures
        ``image`` as it is.
    max_sinc_radius
        With ``method="sinc"``, the largest radius, pixels, measured with sinc coefficients
        (meas_base ``maxSincRadius``); ignored otherwise.

    Returns
    -------
    ApertureResult
        Sums in image units; an aperture not wholly on the image is NaN and ``truncated``, one
        over a pixel without data NaN and ``no_data``. A sinc aperture reads every pixel of its
        coefficient box (15 x 15 pixels at r = 3, 63 x 63 at r = 9): ``no_data`` there
        extends to that box, and a box cut by the border sets ``sinc_truncated``.
    """
    radii_arr = np.asarray(radii, dtype=np.float64)
    if radii_arr.ndim != 1 or radii_arr.size == 0 or np.any(np.diff(radii_arr) <= 0):
        raise ValueError(f"radii: expected increasing positive radii, got {radii_arr}")
    if np.any(radii_arr <= 0):
        raise ValueError(f"radii: expected positive radii, got {radii_arr}")
    image = as_plane("image", image)
    variance = as_plane("variance", variance, shape=image.shape, dtype=image.dtype)
    if method == "sinc":
        max_sinc_radius = float(max_sinc_radius)
        if math.isnan(max_sinc_radius):
            raise ValueError("max_sinc_radius: expected a number, got NaN")
        mode, n_sub = 1, 1  # the radii above max_sinc_radius
    elif method == "exact":
        mode, n_sub = 0, 1
    elif method == "subpixel":
        mode, n_sub = 1, int(subpixels)
    elif method == "center":
        mode, n_sub = 1, 1
    else:
        raise ValueError(
            f"method: expected 'exact', 'subpixel', 'center' or 'sinc', got {method!r}")
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
    sinc_truncated = np.zeros((n, k), dtype=np.bool_)
    fp = check_footprints(footprints, n, image.shape)
    is_sinc = radii_arr <= max_sinc_radius if method == "sinc" else np.zeros(k, dtype=np.bool_)
    if not is_sinc.all():
        # every radius, so that the naive sums are those of method="center" bit for bit
        _apertures_kernel(image, variance, x, y, radii_arr, mode, n_sub, flux, var, truncated,
                          *fp)
    if is_sinc.any():
        ks = np.flatnonzero(is_sinc)
        stack, half = _sinc_stack(tuple(float(r) for r in radii_arr[ks]))
        s_flux = np.full((n, ks.size), np.nan)
        s_var = np.full((n, ks.size), np.nan)
        s_trunc = np.ones((n, ks.size), dtype=np.bool_)
        s_sinc = np.zeros((n, ks.size), dtype=np.bool_)
        sinc_apertures(image, variance, x, y, radii_arr[ks], stack, half, s_flux, s_var,
                       s_trunc, s_sinc, *fp)
        flux[:, ks] = s_flux
        var[:, ks] = s_var
        truncated[:, ks] = s_trunc
        sinc_truncated[:, ks] = s_sinc
    with np.errstate(invalid="ignore"):
        err = np.sqrt(var)
    no_data = ~truncated & ~(np.isfinite(flux) & np.isfinite(err))
    flux[no_data] = np.nan
    err[no_data] = np.nan
    return ApertureResult(flux=flux, flux_err=err, truncated=truncated, no_data=no_data,
                          sinc_truncated=sinc_truncated)


#: LLVM fast-math flags: reassociation only (vectorised sums); NaN and infinity semantics are
#: kept. No fused multiply-add: the exact overlap compares ``x^2 + y^2`` with ``r^2`` and takes
#: ``sqrt(r^2 - y^2)`` of the same numbers, and contracting one but not the other costs 1e-9 of a
#: small circle's area.
_FAST = {"reassoc"}


@njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy", inline="always")
def _span_sums(drow, vrow, a: int, b: int, f: float, v: float) -> tuple[float, float]:
    """``f + sum(drow[a..b])``, ``v + sum(vrow[a..b])`` (inclusive; nothing when b < a).

    The loop runs over slices from index 0, which the compiler vectorises (a loop over
    ``a..b`` keeps numba's negative-index handling and stays scalar).
    """
    if b < a:
        return f, v
    ds = drow[a:b + 1]
    vs = vrow[a:b + 1]
    sf = 0.0
    sv = 0.0
    for i in range(ds.shape[0]):
        sf += ds[i]
        sv += vs[i]
    return f + sf, v + sv


@njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy", inline="always")
def _exact_edge(drow, vrow, i0, i1, x, gk, e0, r, r2, c, f, v):
    """Add pixels ``i0..i1`` of a row weighted by their exact overlap with the circle.

    ``gk[e - e0]`` is ``G`` at column edge ``e``; ``c`` the band's eight row constants (see
    :func:`_h`); consecutive pixels share their edge's ``H``.
    """
    if i1 < i0:
        return f, v
    y0, x10, g10, s0, y1, x11, g11, s1 = c
    h_prev = _h(i0 - 0.5 - x, gk[i0 - e0], r, r2, y0, x10, g10, s0, y1, x11, g11, s1)
    for i in range(i0, i1 + 1):
        h_next = _h(i + 0.5 - x, gk[i + 1 - e0], r, r2, y0, x10, g10, s0, y1, x11, g11, s1)
        w = h_next - h_prev
        h_prev = h_next
        f += w * drow[i]
        v += w * vrow[i]
    return f, v


@njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy", inline="always")
def _sampled_edge(drow, vrow, i0, i1, x, dy0, r, n_sub, f, v):
    """Add pixels ``i0..i1`` of a row weighted by their sampled overlap (``n_sub``^2 points)."""
    for i in range(i0, i1 + 1):
        w = sampled_overlap(i - 0.5 - x, dy0, r, n_sub)
        f += w * drow[i]
        v += w * vrow[i]
    return f, v


@njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _apertures_kernel(image, variance, xs, ys, radii, mode, n_sub, flux, var, truncated,
                      fx0, fy0, fw, fh, foff, fval, fmsk):
    ny, nx = image.shape
    region = np.empty((1, nx), dtype=image.dtype)
    k_all = radii.shape[0]
    tot_f = np.empty(k_all)
    tot_v = np.empty(k_all)
    r_max_all = radii[k_all - 1]
    width = int(2.0 * r_max_all) + 4
    gcol = np.empty((k_all, width))  # G(min(|u|, r)) at the source's column edges
    # at the source's row edges: |v| clamped to r, x1 = sqrt(r^2 - |v|^2), G(x1), sign(v)
    ry = np.empty((k_all, width))
    rx1 = np.empty((k_all, width))
    rg = np.empty((k_all, width))
    rsg = np.empty((k_all, width))
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
        rmax = radii[kmax - 1]
        # column edge e sits at e - 0.5; e0 is the first edge any radius needs
        e0 = int(math.floor(x - rmax - 0.5)) + 1
        f0 = int(math.floor(y - rmax - 0.5)) + 1  # likewise for row edges
        for k in range(kmax):
            tot_f[k] = 0.0
            tot_v[k] = 0.0
            # every square root (and, for the exact area, arcsine) the source needs, at its
            # row and column edges, in loops of independent evaluations that vectorise
            # (asin01 has no call or branch)
            r = radii[k]
            r2 = r * r
            lo = max(int(math.floor(y - r - 0.5)) + 1, 0)
            hi = min(int(math.ceil(y + r + 0.5)) - 1, ny - 1) + 1
            yk = ry[k, lo - f0:hi + 1 - f0]
            xk = rx1[k, lo - f0:hi + 1 - f0]
            for t in range(yk.shape[0]):
                vv = lo + t - 0.5 - y
                yc = min(abs(vv), r)
                yk[t] = yc
                xk[t] = math.sqrt(max(r2 - yc * yc, 0.0))
            if mode == 0:
                gr = rg[k, lo - f0:hi + 1 - f0]
                sk = rsg[k, lo - f0:hi + 1 - f0]
                for t in range(yk.shape[0]):
                    gr[t] = _g(xk[t], r, r2)
                    sk[t] = -1.0 if lo + t - 0.5 - y < 0.0 else 1.0
                lo = int(math.floor(x - r - 0.5)) + 1
                hi = int(math.ceil(x + r + 0.5))  # last edge: right edge of the last pixel
                gc = gcol[k, lo - e0:hi + 1 - e0]
                for t in range(gc.shape[0]):
                    gc[t] = _g(min(abs(lo + t - 0.5 - x), r), r, r2)
        j_lo = max(int(math.floor(y - rmax - 0.5)) + 1, 0)
        j_hi = min(int(math.ceil(y + rmax + 0.5)) - 1, ny - 1)
        c_lo = max(int(math.floor(x - rmax - 0.5)) + 1, 0)  # columns any radius reads
        c_hi = min(int(math.ceil(x + rmax + 0.5)) - 1, nx - 1)
        # the pixels this source is measured on: its footprint inserted where it reaches
        fr0, fr1 = 1, 0  # rows of the footprint: read from ``region``
        if touches(s, j_lo, j_hi, c_lo, c_hi, fx0, fy0, fw, fh):
            region, fr0, fr1 = source_rows(image, j_lo, j_hi, c_lo, c_hi, s, fx0, fy0, fw, fh,
                                           foff, fval, fmsk, region)
        for j in range(j_lo, j_hi + 1):
            dy0 = j - 0.5 - y
            dy1 = j + 0.5 - y
            hy = max(abs(dy0), abs(dy1))
            ly = 0.0 if dy0 <= 0.0 <= dy1 else min(abs(dy0), abs(dy1))
            drow = pick_row(image, region, fr0, fr1, j)
            vrow = variance[j]
            a_prev = 1
            b_prev = 0  # empty span
            row_f = 0.0
            row_v = 0.0
            for k in range(kmax):
                r = radii[k]
                if ly >= r:
                    continue
                r2 = r * r
                # the circle's half-widths at the band's edges come from the row table:
                # widest at the edge nearer the centre (r itself when the band holds it),
                # narrowest at the farther one
                e_near, e_far = (j, j + 1) if abs(dy0) <= abs(dy1) else (j + 1, j)
                w_out = math.sqrt(r2) if ly == 0.0 else rx1[k, e_near - f0]
                i_lo = max(int(math.floor(x - w_out - 0.5)) + 1, 0)
                i_hi = min(int(math.ceil(x + w_out + 0.5)) - 1, nx - 1)
                if hy < r:
                    w_in = rx1[k, e_far - f0]
                    a = int(math.ceil(x - w_in + 0.5))
                    b = int(math.floor(x + w_in - 0.5))
                else:
                    a = 1
                    b = 0
                if a <= b:
                    # pixels wholly inside: the previous radius's span plus two side segments
                    if a_prev <= b_prev:
                        row_f, row_v = _span_sums(drow, vrow, a, a_prev - 1, row_f, row_v)
                        row_f, row_v = _span_sums(drow, vrow, b_prev + 1, b, row_f, row_v)
                    else:
                        row_f, row_v = _span_sums(drow, vrow, a, b, row_f, row_v)
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
                    # the band's edges: v0 = j - 0.5 - y (row edge j), v1 (row edge j + 1)
                    lo = j - f0
                    c = (ry[k, lo], rx1[k, lo], rg[k, lo], rsg[k, lo],
                         ry[k, lo + 1], rx1[k, lo + 1], rg[k, lo + 1], rsg[k, lo + 1])
                    gk = gcol[k]
                    f, v = _exact_edge(drow, vrow, i_lo, edge_lo, x, gk, e0, r, r2, c, f, v)
                    f, v = _exact_edge(drow, vrow, edge_hi, i_hi, x, gk, e0, r, r2, c, f, v)
                else:
                    f, v = _sampled_edge(drow, vrow, i_lo, edge_lo, x, dy0, r, n_sub, f, v)
                    f, v = _sampled_edge(drow, vrow, edge_hi, i_hi, x, dy0, r, n_sub, f, v)
                tot_f[k] += f
                tot_v[k] += v
        for k in range(kmax):
            flux[s, k] = tot_f[k]
            var[s, k] = tot_v[k]
            truncated[s, k] = False
