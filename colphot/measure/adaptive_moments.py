"""Adaptive second moments of PSF images: the shape LSST gives a PSF (``Psf::computeShape``).

LSST measures an image PSF's shape with meas_base's ``SdssShapeAlgorithm::computeAdaptiveMoments``
run on the PSF's kernel image about its centre (meas_algorithms ``ImagePsf::doComputeShape``);
LocalBackground sizes its annulus from that shape's determinant radius. The moments are those of
an elliptical Gaussian weight ``w = exp(-x^T W^-1 x / 2)`` matched to the image (Bernstein &
Jarvis 2002): with ``S`` the second moments of ``w I`` about the centre, the weight is updated to
``(S^-1 - W^-1)^-1`` until ``S = W / 2``; ``W`` is then the result (for a Gaussian image, its
covariance). This is the fixed point GalSim's ``galsim.hsm.FindAdaptiveMom`` finds, whose
``moments_sigma`` is the determinant radius ``(Ixx Iyy - Ixy^2)^(1/4)``.

As in SdssShape: the first weight is round with ``W = 1.5`` px^2; the sums run over the pixels
within ``4 sqrt(max(Wxx, Wyy))`` of the centre (the box expanded to whole pixels) where the
weight's exponent is at most 14; a weight narrower than 0.5 px (``Wxx`` or ``Wyy < 0.25`` or
``det W < 0.0625``) samples each pixel on a 4 x 4 grid at +-0.125 and +-0.375 px instead; the
iteration stops when ``e1``, ``e2`` of ``S`` change by less than ``tol1`` and ``Sxx`` by less than
``tol2`` relative, after at most ``max_iter`` iterations. When the iteration fails (no
convergence, a singular or negative matrix, sums <= 0) the result is the unweighted second
moments in the last box (``flag_unweighted``); when those fail too, ``1/12`` px^2 (a single pixel)
if the sum in the box is positive, else NaN (``flag_unweightedBad``). The general ``flag`` marks
every such fallback; the moments are still returned (LSST's ``ImagePsf`` uses them regardless).

LSST keeps the centre fixed (the kernel image's centre pixel); ``recentre=True`` also moves the
weight's centre to the weighted centroid as GalSim does, for images not centred on their middle
pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = ["AdaptiveMomentsResult", "FLAGS", "adaptive_moments", "determinant_radius",
           "measure_adaptive_moments"]

FLAGS = (
    (0, "flag", "adaptive moments failed; the moments are a fallback"),
    (1, "flag_unweighted", "weighted moments did not converge; unweighted moments in the box"),
    (2, "flag_unweightedBad", "weighted and unweighted moments invalid; 1/12 px^2 or NaN"),
    (3, "flag_shift", "weighted centroid moved more than 2 px from the starting centre"),
    (4, "flag_maxIter", "no convergence within max_iter iterations"),
)

_FLT_EPS = float(np.finfo(np.float32).eps)
_MAX_SHIFT = 2.0  # SdssShape's maxShift, clipped to [2, 10]; LSST's default control gives 2


@dataclass(frozen=True)
class AdaptiveMomentsResult:
    """Adaptive moments of ``n`` images: ``ixx``, ``iyy``, ``ixy`` in pixel^2, the weighted
    centroid ``x``, ``y`` (array pixel coordinates of each image) and the flags."""

    ixx: np.ndarray
    iyy: np.ndarray
    ixy: np.ndarray
    x: np.ndarray
    y: np.ndarray
    n_iter: np.ndarray
    flag: np.ndarray
    flag_unweighted: np.ndarray
    flag_unweighted_bad: np.ndarray
    flag_shift: np.ndarray
    flag_max_iter: np.ndarray


def measure_adaptive_moments(
    images: np.ndarray,
    *,
    recentre: bool = False,
    max_iter: int = 100,
    tol1: float = 1e-5,
    tol2: float = 1e-4,
) -> AdaptiveMomentsResult:
    """Adaptive second moments of each image about its middle pixel, LSST SdssShape style.

    Parameters
    ----------
    images
        ``(n, ny, nx)`` (or one ``(ny, nx)``) images; the weight starts at pixel
        ``((nx - 1) // 2, (ny - 1) // 2)``, the kernel centre of an odd PSF image.
    recentre
        ``False`` (LSST's PSF shape): the weight stays on the middle pixel. ``True``: it
        follows the weighted centroid (GalSim's ``FindAdaptiveMom``); convergence then also
        needs the centre to move by less than ``1e-4`` px.
    max_iter, tol1, tol2
        SdssShape's ``maxIter``, ``tol1`` (on ``e1``, ``e2``) and ``tol2`` (relative, on
        ``Sxx``); their LSST defaults.

    Returns
    -------
    AdaptiveMomentsResult
        Moments in pixel^2; on failure the fallback described in the module docstring with
        ``flag`` and the specific flags set.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"images: expected (n, ny, nx), got shape {images.shape}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    images = np.ascontiguousarray(images)
    n = images.shape[0]
    out = np.full((n, 5), np.nan)
    n_iter = np.zeros(n, dtype=np.int32)
    bits = np.zeros(n, dtype=np.int64)
    _adaptive_kernel(images, bool(recentre), int(max_iter), float(tol1), float(tol2), out,
                     n_iter, bits)
    flags = [(bits >> b) & 1 == 1 for b, _, _ in FLAGS]
    return AdaptiveMomentsResult(out[:, 0].copy(), out[:, 1].copy(), out[:, 2].copy(),
                                 out[:, 3].copy(), out[:, 4].copy(), n_iter, *flags)


def adaptive_moments(images: np.ndarray, *, recentre: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ixx, iyy, ixy)``, pixel^2, of each image: :func:`measure_adaptive_moments`'s
    moments (fallbacks included) without the flags."""
    r = measure_adaptive_moments(images, recentre=recentre)
    return r.ixx, r.iyy, r.ixy


def determinant_radius(ixx: np.ndarray, iyy: np.ndarray, ixy: np.ndarray) -> np.ndarray:
    """``(Ixx Iyy - Ixy^2)^(1/4)``, pixels (afw's ``Quadrupole::getDeterminantRadius``; the
    sigma of a round Gaussian); NaN where the determinant is negative or a moment is NaN."""
    det = np.asarray(ixx) * np.asarray(iyy) - np.asarray(ixy) ** 2
    with np.errstate(invalid="ignore"):
        return np.where(det >= 0.0, np.abs(det) ** 0.25, np.nan)


@njit(cache=True, nogil=True)
def _inverse(a11, a12, a22):
    """SdssShape's ``getWeights``: ``(ok, det, inverse)`` of a 2x2 symmetric matrix; not ok
    when an element is NaN or ``det < FLT_EPSILON``."""
    if math.isnan(a11) or math.isnan(a12) or math.isnan(a22):
        return False, math.nan, math.nan, math.nan, math.nan
    det = a11 * a22 - a12 * a12
    if math.isnan(det) or det < _FLT_EPS:
        return False, det, math.nan, math.nan, math.nan
    return True, det, a22 / det, -a12 / det, a11 / det


@njit(cache=True, nogil=True)
def _box(lo_limit, hi_limit, c, r):
    """Pixels ``[lo, hi]`` of ``[c - r, c + r]`` expanded to whole pixels, clipped."""
    lo = max(int(math.ceil(c - r - 0.5)), lo_limit)
    hi = min(int(math.floor(c + r + 0.5)), hi_limit)
    return lo, hi


@njit(cache=True, nogil=True)
def _calcmom(img, xc, yc, x0, x1, y0, y1, interp, w11, w12, w22, sums):
    """Weighted sums over the box ``[x0, x1] x [y0, y1]`` about ``(xc, yc)``.

    ``sums`` gets ``(sum wI, sum wI x, sum wI y, sum wI dx^2, sum wI dx dy, sum wI dy^2)``
    (``x``, ``y`` absolute, ``dx``, ``dy`` from the centre). Returns 0 when the sum and both
    diagonal sums are positive, else -1 (SdssShape's ``calcmom``).
    """
    s0 = 0.0
    sx = 0.0
    sy = 0.0
    sxx = 0.0
    sxy = 0.0
    syy = 0.0
    for i in range(y0, y1 + 1):
        y = i - yc
        for j in range(x0, x1 + 1):
            x = j - xc
            v = img[i, j]
            if interp:
                xl = x - 0.375
                xh = x + 0.375
                yl = y - 0.375
                yh = y + 0.375
                e = xl * xl * w11 + yl * yl * w22 + 2.0 * xl * yl * w12
                e = max(e, xh * xh * w11 + yh * yh * w22 + 2.0 * xh * yh * w12)
                e = max(e, xl * xl * w11 + yh * yh * w22 + 2.0 * xl * yh * w12)
                e = max(e, xh * xh * w11 + yl * yl * w22 + 2.0 * xh * yl * w12)
                if e <= 9.0:
                    for a in range(4):
                        yy = yl + 0.25 * a
                        for b in range(4):
                            xx = xl + 0.25 * b
                            ex = xx * xx * w11 + 2.0 * xx * yy * w12 + yy * yy * w22
                            m = v * math.exp(-0.5 * ex)
                            s0 += m
                            sx += m * (xx + xc)
                            sy += m * (yy + yc)
                            sxx += xx * xx * m
                            sxy += xx * yy * m
                            syy += yy * yy * m
            else:
                ex = x * x * w11 + 2.0 * x * y * w12 + y * y * w22
                if ex <= 14.0:
                    m = v * math.exp(-0.5 * ex)
                    s0 += m
                    sx += m * j
                    sy += m * i
                    sxx += x * x * m
                    sxy += x * y * m
                    syy += y * y * m
    sums[0] = s0
    sums[1] = sx
    sums[2] = sy
    sums[3] = sxx
    sums[4] = sxy
    sums[5] = syy
    return 0 if (s0 > 0.0 and sxx > 0.0 and syy > 0.0) else -1


@njit(cache=True, nogil=True)
def _one(img, recentre, max_iter, tol1, tol2, sums, res):
    """Adaptive moments of one image (SdssShape's ``getAdaptiveMoments``). Fills ``res`` with
    ``(xx, yy, xy, x, y)``; returns ``(flag bits, iterations)``."""
    ny, nx = img.shape
    xc = float((nx - 1) // 2)
    yc = float((ny - 1) // 2)
    xc0 = xc
    yc0 = yc
    s11 = 1.5
    s12 = 0.0
    s22 = 1.5
    w11 = -1.0
    w12 = -1.0
    w22 = -1.0
    e1_old = 1e6
    e2_old = 1e6
    o11_old = 1e6
    interp = False
    unweighted = False
    shift = False
    bx0, bx1, by0, by1 = 0, -1, 0, -1
    sums[:] = 0.0
    res[:] = math.nan
    it = 0
    while it < max_iter:
        r = min(4.0 * math.sqrt(max(s11, s22)), 1000.0)
        bx0, bx1 = _box(0, nx - 1, xc, r)
        by0, by1 = _box(0, ny - 1, yc, r)
        ok, det, a11, a12, a22 = _inverse(s11, s12, s22)
        if not ok:
            unweighted = True
            break
        if s11 * s22 < s12 * s12 - _FLT_EPS:
            return 1, it
        ow11, ow12, ow22 = w11, w12, w22
        w11, w12, w22 = a11, a12, a22
        if (s11 < 0.25 or s22 < 0.25 or det < 0.0625) and not interp:
            interp = True  # stays set for this image
            if it > 0:
                o11_old = 1e6  # force at least one more iteration
                w11, w12, w22 = ow11, ow12, ow22
                it -= 1
        if w11 < 0.0 or w11 > 1e6 or abs(w12) > 1e6 or w22 < 0.0 or w22 > 1e6:
            return 1, it  # SdssShape throws: FAILURE, no moments
        if _calcmom(img, xc, yc, bx0, bx1, by0, by1, interp, w11, w12, w22, sums) < 0:
            unweighted = True
            break
        cx = sums[1] / sums[0]
        cy = sums[2] / sums[0]
        res[3] = cx
        res[4] = cy
        if abs(cx - xc0) > _MAX_SHIFT or abs(cy - yc0) > _MAX_SHIFT:
            shift = True
        o11 = sums[3] / sums[0]
        o22 = sums[5] / sums[0]
        o12 = sums[4] / sums[0]
        if o11 <= 0.0 or o22 <= 0.0:
            unweighted = True
            break
        d = o11 + o22
        e1 = (o11 - o22) / d
        e2 = 2.0 * o12 / d
        still = recentre and (abs(cx - xc) >= 1e-4 or abs(cy - yc) >= 1e-4)
        if (it > 0 and abs(e1 - e1_old) < tol1 and abs(e2 - e2_old) < tol1
                and abs(o11 / o11_old - 1.0) < tol2 and not still):
            break
        e1_old = e1
        e2_old = e2
        o11_old = o11
        ok, _, i11, i12, i22 = _inverse(o11, o12, o22)
        if not ok:
            unweighted = True
            break
        ok, _, n11, n12, n22 = _inverse(i11 - w11, i12 - w12, i22 - w22)
        if not ok:
            unweighted = True  # the product-of-Gaussians assumption failed
            break
        s11, s12, s22 = n11, n12, n22
        if s11 <= 0.0 or s22 <= 0.0:
            unweighted = True
            break
        if recentre:
            # Gaussian step to the centre: mu - c = (1 + S_new W^-1) (<x>_w - c)
            gx = cx - xc
            gy = cy - yc
            xc += gx + (s11 * w11 + s12 * w12) * gx + (s11 * w12 + s12 * w22) * gy
            yc += gy + (s12 * w11 + s22 * w12) * gx + (s12 * w12 + s22 * w22) * gy
            if not (abs(xc - xc0) <= _MAX_SHIFT + 1.0 and abs(yc - yc0) <= _MAX_SHIFT + 1.0):
                shift = True
                unweighted = True
                xc = min(max(xc, xc0 - _MAX_SHIFT), xc0 + _MAX_SHIFT)
                yc = min(max(yc, yc0 - _MAX_SHIFT), yc0 + _MAX_SHIFT)
                break
        it += 1
    bits = 0
    if it == max_iter:
        unweighted = True
        bits |= 1 << 4
    if sums[3] + sums[5] == 0.0:
        unweighted = True
    if unweighted:
        st = _calcmom(img, xc, yc, bx0, bx1, by0, by1, interp, 0.0, 0.0, 0.0, sums)
        if st < 0 or sums[0] <= 0.0:
            bits |= 1 | (1 << 2)
            if shift:
                bits |= 1 << 3
            if sums[0] > 0.0:
                res[0] = 1.0 / 12.0
                res[1] = 1.0 / 12.0
                res[2] = 0.0
            return bits, it
        s11 = sums[3] / sums[0]
        s12 = sums[4] / sums[0]
        s22 = sums[5] / sums[0]
        bits |= 1 | (1 << 1)
    if shift:
        bits |= 1 | (1 << 3)
    res[0] = s11
    res[1] = s22
    res[2] = s12
    if s11 * s22 < (1.0 + 1e-6) * s12 * s12:
        bits |= 1  # singular moments (SdssShape raises if no flag is set)
    return bits, it


@njit(cache=True, nogil=True)
def _adaptive_kernel(images, recentre, max_iter, tol1, tol2, out, n_iter, bits):
    sums = np.zeros(6)
    res = np.empty(5)
    for s in range(images.shape[0]):
        b, it = _one(images[s], recentre, max_iter, tol1, tol2, sums, res)
        bits[s] = b
        n_iter[s] = it
        for q in range(5):
            out[s, q] = res[q]
