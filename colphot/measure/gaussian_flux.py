"""Gaussian flux with fixed moments (LSST's GaussianFlux in forced mode).

The weight is the elliptical Gaussian ``w = exp(-d^T Q^-1 d / 2)`` of the reference's second
moments ``Q`` (pixels^2) at the fixed centre. For a Gaussian source with moments ``Q`` and flux
``F``, ``sum(w D) = F / 2``, hence ``flux = 2 sum(w D)`` and ``err = 2 sqrt(sum(w^2 V))``.
The weight is summed over a box of +-4 sigma along the major axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from colphot._arrays import as_plane
from colphot.measure._prefetch import prefetch_box
from colphot.measure.footprints import Footprints, check_footprints, source_region, touches

__all__ = ["GaussianFluxResult", "measure_gaussian_flux", "FLAGS"]

FLAGS = (
    (0, "flag", "general failure: window truncated by the tile, non-finite pixels, or bad shape"),
    (1, "flag_badShape", "shape missing, non-finite or not positive definite"),
)

_N_SIGMA = 4.0


@dataclass(frozen=True)
class GaussianFluxResult:
    """Gaussian fluxes of ``n`` sources (image units) and flags."""

    flux: np.ndarray
    flux_err: np.ndarray
    flag: np.ndarray
    flag_bad_shape: np.ndarray


def measure_gaussian_flux(
    image: np.ndarray,
    variance: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    ixx: np.ndarray,
    iyy: np.ndarray,
    ixy: np.ndarray,
    *,
    footprints: Footprints | None = None,
) -> GaussianFluxResult:
    """Flux in an elliptical Gaussian weight of fixed moments at fixed positions.

    Parameters
    ----------
    image, variance
        2D pixel values and variance.
    x, y
        Centres in array pixel coordinates (0-based).
    ixx, iyy, ixy
        Second moments of the weight in pixel coordinates, pixels^2.
    footprints
        Deblended measurement: one heavy footprint per source, whose pixels replace
        ``image``'s (the noise-replaced image) for that source only; ``None`` measures
        ``image`` as it is.

    Returns
    -------
    GaussianFluxResult
        ``flux``, ``flux_err`` in image units; NaN with ``flag_bad_shape`` when the moments are
        unusable; ``flag`` also when the window leaves the image or covers non-finite pixels.
    """
    image = as_plane("image", image)
    variance = as_plane("variance", variance, shape=image.shape, dtype=image.dtype)
    args = [np.ascontiguousarray(a, dtype=np.float64) for a in (x, y, ixx, iyy, ixy)]
    shapes = [a.shape for a in args]
    if args[0].ndim != 1 or any(s != shapes[0] for s in shapes):
        raise ValueError(
            f"x, y, ixx, iyy, ixy: expected 1D arrays of one length, got shapes {shapes}"
        )
    n = args[0].shape[0]
    flux = np.full(n, np.nan)
    err = np.full(n, np.nan)
    flag = np.zeros(n, dtype=np.bool_)
    bad = np.zeros(n, dtype=np.bool_)
    _gaussian_kernel(image, variance, *args, flux, err, flag, bad,
                     *check_footprints(footprints, n, image.shape))
    return GaussianFluxResult(flux, err, flag | bad, bad)


#: Sources ahead whose window rows are prefetched while the current one is measured.
_AHEAD = 4


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _half_width(moment: float) -> float:
    """Half-width of the weight window, pixels: ``_N_SIGMA`` sigma of a second moment
    (pixels^2)."""
    return _N_SIGMA * math.sqrt(moment)


@njit(cache=True, nogil=True, error_model="numpy")
def _gaussian_kernel(image, variance, xs, ys, ixx, iyy, ixy, flux, err, flag, bad,
                     fx0, fy0, fw, fh, foff, fval, fmsk):
    ny, nx = image.shape
    region = np.empty((1, 1), dtype=image.dtype)
    cut = 2.0 * _N_SIGMA * _N_SIGMA
    ex = np.empty(16)
    for s in range(xs.shape[0]):
        if s + _AHEAD < xs.shape[0]:
            xn = xs[s + _AHEAD]
            yn = ys[s + _AHEAD]
            # clamped: the moments ahead are not validated yet
            hx = _half_width(min(max(ixx[s + _AHEAD], 0.0), 1e6)) + 1.0
            hy = _half_width(min(max(iyy[s + _AHEAD], 0.0), 1e6)) + 1.0
            prefetch_box(image, yn - hy, yn + hy, xn - hx, xn + hx)
            prefetch_box(variance, yn - hy, yn + hy, xn - hx, xn + hx)
        x = xs[s]
        y = ys[s]
        a = ixx[s]
        b = iyy[s]
        c = ixy[s]
        det = a * b - c * c
        if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)) or a <= 0.0 \
                or b <= 0.0 or det <= 0.0:
            bad[s] = True
            continue
        if not (math.isfinite(x) and math.isfinite(y)):
            flag[s] = True
            continue
        # inverse moments
        pa = b / det
        pb = a / det
        pc = -c / det
        hx = int(math.ceil(_half_width(a)))
        hy = int(math.ceil(_half_width(b)))
        xi = int(math.floor(x + 0.5))
        yi = int(math.floor(y + 0.5))
        i0 = yi - hy
        i1 = yi + hy
        j0 = xi - hx
        j1 = xi + hx
        if i0 < 0 or j0 < 0 or i1 >= ny or j1 >= nx:
            flag[s] = True
            i0 = max(i0, 0)
            j0 = max(j0, 0)
            i1 = min(i1, ny - 1)
            j1 = min(j1, nx - 1)
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
        # w = exp(-q/2) factored: exp(-pa dx^2/2) per column, exp(-pb dy^2/2) per row, and
        # the cross term exp(-pc dx dy) by a geometric recurrence along the row, so a pixel
        # costs a few multiplications instead of one exp
        nxs = j1 - j0 + 1
        if nxs > ex.shape[0]:
            ex = np.empty(nxs)
        for t in range(nxs):
            dx = j0 + t - x
            ex[t] = math.exp(-0.5 * pa * dx * dx)
        swd = 0.0
        swwv = 0.0
        any_bad = False
        for i in range(i0, i1 + 1):
            dy = i - y
            ey = math.exp(-0.5 * pb * dy * dy)
            cross = math.exp(-pc * dy * (j0 - x))
            step = math.exp(-pc * dy)
            drow = img[i - oy, j0 - ox:j1 - ox + 1]
            vrow = variance[i, j0:j1 + 1]
            for t in range(nxs):
                dx = j0 + t - x
                q = pa * dx * dx + pb * dy * dy + 2.0 * pc * dx * dy
                w = ey * ex[t] * cross if q <= cut else 0.0
                cross *= step
                d = drow[t]
                v = vrow[t]
                if (abs(d) < math.inf) & (abs(v) < math.inf):
                    swd += w * d
                    swwv += w * w * v
                elif w > 0.0:
                    any_bad = True  # a non-finite pixel inside the window
        if any_bad:
            flag[s] = True
        flux[s] = 2.0 * swd
        err[s] = 2.0 * math.sqrt(swwv)
