"""Gaussian flux with fixed moments: LSST's GaussianFlux (``SdssShapeAlgorithm::
computeFixedMomentsFlux``) in forced mode.

The weight is the elliptical Gaussian ``w = exp(-d^T Q^-1 d / 2)`` of the reference's second
moments ``Q`` (pixels^2) centred on the fixed position, unnormalised (``w = 1`` at the centre).
As in meas_base:

- the window is the box of half-width ``min(4 sqrt(max(Qxx, Qyy)), 1000)`` pixels around the
  centre (every pixel it overlaps), cut to the image: a window cut by the image edge uses the
  pixels it has and is *not* flagged;
- a pixel counts when ``d^T Q^-1 d <= 14`` at its centre; for sub-pixel shapes (``Qxx < 0.25``,
  ``Qyy < 0.25`` or ``det Q < 0.0625``) a pixel counts when that holds (with bound 9) at all
  four corners of its central 0.75 x 0.75 square, and contributes the *sum* (not the mean) of
  its value times ``w`` at 4 x 4 sub-pixel points, as meas_base's ``calcmom`` does;
- ``flux = 2 sum(w D)``, exact for a Gaussian source whose moments are ``Q``
  (``sum(w D) = F / 2``; in general ``2 F sqrt(det Q) / sqrt(det(Q + C))`` for a Gaussian of
  moments ``C``);
- ``err = 2 sqrt(V_c pi sqrt(det Q))`` with ``V_c`` the variance of the pixel holding the centre
  (``(int(x), int(y))``, truncated towards zero as meas_base's ``static_cast<int>``); it does
  not depend on the other pixels' variances;
- a non-finite pixel where the weight counts gives a NaN flux (meas_base propagates the NaN;
  colphot also raises the general flag, which meas_base leaves unset).
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
    (0, "flag", "general failure: bad shape, centre off the image, or a non-finite pixel "
                "inside the weight"),
    (1, "flag_badShape", "shape missing, non-finite, singular or unusable as a weight"),
)

#: Half-width of the window in sigma of the larger moment (meas_base
#: ``computeAdaptiveMomentsBBox``), and its cap, pixels.
_N_SIGMA = 4.0
_MAX_RADIUS = 1000.0
#: A pixel's weight counts where ``d^T Q^-1 d`` is at most this (meas_base ``calcmom``) ...
_MAX_EXPON = 14.0
#: ... or, for sub-pixel shapes, at most this at the four corners of its sub-sampled square.
_MAX_EXPON_INTERP = 9.0
#: Sub-pixel shapes: below these moments and determinant (pixels^2, pixels^4), sub-sample.
_INTERP_MOMENT = 0.25
#: Smallest usable determinant of the moments (meas_base ``getWeights``: float epsilon).
_MIN_DET = float(np.finfo(np.float32).eps)
#: Largest usable weight (inverse-moment) element, pixels^-2 (meas_base ``calcmom``).
_MAX_WEIGHT = 1e6


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
        Centres in array pixel coordinates (0-based, pixel centres at integers).
    ixx, iyy, ixy
        Second moments of the weight in pixel coordinates, pixels^2.
    footprints
        Deblended measurement: one heavy footprint per source, whose pixels replace
        ``image``'s (the noise-replaced image) for that source only; ``None`` measures
        ``image`` as it is.

    Returns
    -------
    GaussianFluxResult
        ``flux``, ``flux_err`` in image units (see the module docstring for the definitions).
        Both NaN with ``flag`` when the shape is unusable (also ``flag_bad_shape``: non-finite,
        ``ixx iyy < (1 + 1e-6) ixy^2``, determinant below float epsilon, or an inverse-moment
        element negative or above 1e6) or the centre is off the image; ``flux`` NaN with
        ``flag`` when a pixel inside the weight is non-finite. A window cut by the image edge
        is measured on the pixels it has and not flagged.
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
def _radius(a: float, b: float) -> float:
    """Half-width of the window, pixels, for moments ``a = Qxx``, ``b = Qyy`` (pixels^2)."""
    return min(_N_SIGMA * math.sqrt(max(a, b)), _MAX_RADIUS)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _usable_shape(a: float, b: float, c: float) -> bool:
    """meas_base's tests of a shape used as a weight: SafeShapeExtractor (finite,
    ``Qxx Qyy >= (1 + 1e-6) Qxy^2``), getWeights (``det >= float eps``) and calcmom (inverse
    moments ``0 <= W11, W22 <= 1e6``, ``|W12| <= 1e6``)."""
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return False
    if a * b < (1.0 + 1.0e-6) * c * c:
        return False
    det = a * b - c * c
    if det < _MIN_DET:
        return False
    w11 = b / det
    w22 = a / det
    w12 = -c / det
    return 0.0 <= w11 <= _MAX_WEIGHT and 0.0 <= w22 <= _MAX_WEIGHT and abs(w12) <= _MAX_WEIGHT


@njit(cache=True, nogil=True, error_model="numpy")
def _gaussian_kernel(image, variance, xs, ys, ixx, iyy, ixy, flux, err, flag, bad,
                     fx0, fy0, fw, fh, foff, fval, fmsk):
    ny, nx = image.shape
    region = np.empty((1, 1), dtype=image.dtype)
    for s in range(xs.shape[0]):
        if s + _AHEAD < xs.shape[0]:
            xn = xs[s + _AHEAD]
            yn = ys[s + _AHEAD]
            # clamped: the moments ahead are not validated yet
            h = _radius(min(max(ixx[s + _AHEAD], 0.0), 1e6),
                        min(max(iyy[s + _AHEAD], 0.0), 1e6)) + 1.0
            prefetch_box(image, yn - h, yn + h, xn - h, xn + h)
        x = xs[s]
        y = ys[s]
        a = ixx[s]
        b = iyy[s]
        c = ixy[s]
        if not _usable_shape(a, b, c):
            bad[s] = True
            continue
        # the centre pixel, truncated towards zero (meas_base's static_cast<int>)
        if not (x > -1.0 and x < nx and y > -1.0 and y < ny):
            flag[s] = True
            continue
        det = a * b - c * c
        w11 = b / det
        w22 = a / det
        w12 = -c / det
        # the window: every pixel the box centre +- radius overlaps, cut to the image
        r = _radius(a, b)
        j0 = max(int(math.ceil(x - r - 0.5)), 0)
        j1 = min(int(math.floor(x + r + 0.5)), nx - 1)
        i0 = max(int(math.ceil(y - r - 0.5)), 0)
        i1 = min(int(math.floor(y + r + 0.5)), ny - 1)
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
        if a < _INTERP_MOMENT or b < _INTERP_MOMENT or det < _INTERP_MOMENT * _INTERP_MOMENT:
            total = _subsampled_sum(img, oy, ox, i0, i1, j0, j1, x, y, w11, w12, w22)
        else:
            total = _weighted_sum(img, oy, ox, i0, i1, j0, j1, x, y, w11, w12, w22, b)
        if math.isfinite(total):
            flux[s] = 2.0 * total
        else:
            flag[s] = True  # a non-finite pixel where the weight counts
        v = variance[int(y), int(x)]
        err[s] = 2.0 * math.sqrt(v * math.pi * math.sqrt(det))


@njit(cache=True, nogil=True, error_model="numpy")
def _weighted_sum(img, oy, ox, i0, i1, j0, j1, x, y, w11, w12, w22, qyy):
    """``sum(w D)`` over the pixels of rows ``i0..i1``, columns ``j0..j1`` (image frame;
    ``img`` holds them from ``(oy, ox)``) whose centre has ``q = d^T W d <= 14``.

    Along a row, ``q = w11 (dx - u)^2 + dy^2 / qyy`` with ``u = -w12 dy / w11``: only the
    columns of ``|dx - u| <= sqrt((14 - dy^2/qyy) / w11)`` (plus a pixel of slack, the test
    itself is on ``q``) are visited, one ``exp`` per counted pixel.
    """
    total = 0.0
    for i in range(i0, i1 + 1):
        dy = i - y
        rest = _MAX_EXPON - dy * dy / qyy
        if rest < 0.0:
            continue
        half = math.sqrt(rest / w11) + 1.0
        u = x - w12 * dy / w11
        c0 = max(j0, int(math.ceil(u - half)))
        c1 = min(j1, int(math.floor(u + half)))
        row = img[i - oy]
        tyy = w22 * dy * dy
        txy = 2.0 * w12 * dy
        for j in range(c0, c1 + 1):
            dx = j - x
            q = dx * (w11 * dx + txy) + tyy
            if q <= _MAX_EXPON:
                total += math.exp(-0.5 * q) * row[j - ox]
    return total


@njit(cache=True, nogil=True, error_model="numpy")
def _subsampled_sum(img, oy, ox, i0, i1, j0, j1, x, y, w11, w12, w22):
    """meas_base's sub-sampled ``sum(w D)`` for sub-pixel shapes: a pixel counts when ``q``
    at the four corners of its central 0.75 x 0.75 square is at most 9, and adds its value
    times the weight at each of 4 x 4 points spaced 0.25 pixel (a sum, not a mean)."""
    total = 0.0
    for i in range(i0, i1 + 1):
        dy = i - y
        yl = dy - 0.375
        yh = dy + 0.375
        row = img[i - oy]
        for j in range(j0, j1 + 1):
            dx = j - x
            xl = dx - 0.375
            xh = dx + 0.375
            q = max(max(xl * xl * w11 + yl * yl * w22 + 2.0 * xl * yl * w12,
                        xh * xh * w11 + yh * yh * w22 + 2.0 * xh * yh * w12),
                    max(xl * xl * w11 + yh * yh * w22 + 2.0 * xl * yh * w12,
                        xh * xh * w11 + yl * yl * w22 + 2.0 * xh * yl * w12))
            if q > _MAX_EXPON_INTERP:
                continue
            d = row[j - ox]
            for ky in range(4):
                sy = yl + 0.25 * ky
                for kx in range(4):
                    sx = xl + 0.25 * kx
                    total += d * math.exp(-0.5 * (sx * sx * w11 + 2.0 * sx * sy * w12
                                                  + sy * sy * w22))
    return total
