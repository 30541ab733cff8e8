"""PSF flux: a linear fit of the PSF model at each fixed position.

The model at a source is the interpolation of the sampled PSF images (weights from
:meth:`colphot.tile.psf.PsfModel.weights`), evaluated at the source's sub-pixel position by
degree-7 B-spline interpolation of the samples (:mod:`colphot.measure._bspline`: unbiased to
1e-4 on pixel-convolved PSFs of FWHM 2.5 px, where Lanczos-5 loses 0.13 %) and normalised to sum
1. As LSST's PsfFlux, the fit region is the model's box clipped to the tile (clipping sets
``flag_edge`` and the general flag) less the pixels with any of the bad mask bits (LSST's
``badMaskPlanes``, none by default); with ``P`` the model, ``D`` the pixels and ``V`` their
variance over it: ``flux = sum(P D) / sum(P^2)``, ``err = sqrt(sum(P^2 V)) / sum(P^2)``,
``area = (sum P)^2 / sum(P^2)``, ``npixels`` the region's pixel count and ``chi2 = sum((D -
flux P)^2 / V)``, all over the fit region. No pixel is dropped for its value: a non-finite
pixel value or variance in the region (NO_DATA in a coadd) makes the flux or its error
non-finite, which LSST reports as a failure (``PixelValueError``: NaN flux, general flag);
colphot also sets ``flag_noData``. An empty region sets ``flag_noGoodPixels``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from colphot._arrays import as_mask, as_plane
from colphot.measure._bspline import MARGIN, TAPS, bspline_coefficients, bspline_taps
from colphot.measure._prefetch import prefetch_box
from colphot.measure.footprints import Footprints, check_footprints, source_region, touches

__all__ = ["PsfFluxResult", "measure_psf_flux", "FLAGS"]

FLAGS = (
    (0, "flag", "general failure"),
    (1, "flag_edge", "PSF model box extends past the tile; fit on the pixels on the tile"),
    (2, "flag_noGoodPixels", "no good pixel under the PSF model"),
    (3, "flag_noPsf", "the tile has no PSF model"),
    (4, "flag_noData", "a non-finite pixel value or variance in the fit region"),
)

#: LLVM fast-math flags of the kernels: reassociation (vectorised sums) and fused multiply-add
#: only; NaN and infinity semantics are kept, so the finiteness tests stay.
_FAST = {"reassoc", "contract"}


@dataclass(frozen=True)
class PsfFluxResult:
    """PSF fluxes of ``n`` sources (image units), with their fit statistics and flags."""

    flux: np.ndarray
    flux_err: np.ndarray
    area: np.ndarray
    chi2: np.ndarray
    npixels: np.ndarray
    flag: np.ndarray
    flag_edge: np.ndarray
    flag_no_good_pixels: np.ndarray
    flag_no_data: np.ndarray


def measure_psf_flux(
    image: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray | None,
    x: np.ndarray,
    y: np.ndarray,
    psf_images: np.ndarray,
    psf_index: np.ndarray,
    psf_weight: np.ndarray,
    *,
    bad_mask_bits: int = 0,
    footprints: Footprints | None = None,
    psf_coefficients: np.ndarray | None = None,
) -> PsfFluxResult:
    """Fit the PSF model's amplitude at fixed positions.

    Parameters
    ----------
    image, variance
        2D pixel values and variance; every pixel of the fit region is used, as in LSST (a
        non-finite one gives a NaN flux with ``flag_no_data``).
    mask
        2D integer bit planes or ``None``; pixels with any of ``bad_mask_bits`` set are left out
        of the fit region.
    x, y
        Positions in array pixel coordinates (0-based, pixel centres at integers).
    psf_images
        ``(m, k, k)`` PSF samples, ``k`` odd, centred on the middle pixel.
    psf_index, psf_weight
        ``(n, j)`` indices into ``psf_images`` and weights whose combination is each source's PSF.
    footprints
        Deblended measurement: one heavy footprint per source, whose pixels replace
        ``image``'s (the noise-replaced image) for that source only; ``None`` measures
        ``image`` as it is.
    psf_coefficients
        ``bspline_coefficients(psf_images)`` (:mod:`colphot.measure._bspline`) when already
        computed, to share them between calls; ``None`` computes them.

    Returns
    -------
    PsfFluxResult
        ``flux`` and ``flux_err`` in image units, ``area`` in pixels (over the fit region);
        NaN with flags on failure.
    """
    image = as_plane("image", image)
    variance = as_plane("variance", variance, shape=image.shape, dtype=image.dtype)
    mask = as_mask("mask", mask, shape=image.shape)
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x, y: expected 1D arrays of one length, got shapes {x.shape}, {y.shape}")
    n = x.shape[0]
    psf_index = np.asarray(psf_index)
    psf_weight = np.asarray(psf_weight)
    if psf_index.ndim != 2 or psf_index.shape[0] != n or psf_weight.shape != psf_index.shape:
        raise ValueError(f"psf_index, psf_weight: expected ({n}, j) arrays, got shapes "
                         f"{psf_index.shape}, {psf_weight.shape}")
    if mask is None:
        mask = np.zeros((1, 1), dtype=np.uint32)
        bad_mask_bits = 0
    psf_images = np.ascontiguousarray(psf_images, dtype=np.float64)
    if psf_images.ndim != 3 or psf_images.shape[1] != psf_images.shape[2] \
            or psf_images.shape[1] % 2 == 0:
        raise ValueError(f"psf_images: expected (m, k, k) with k odd, got shape "
                         f"{psf_images.shape}")
    if psf_coefficients is None:
        psf_coefficients = bspline_coefficients(psf_images)
    coeffs = np.ascontiguousarray(psf_coefficients, dtype=np.float64)
    big = psf_images.shape[1] + 2 * MARGIN
    if coeffs.shape != (psf_images.shape[0], big, big):
        raise ValueError(f"psf_coefficients: expected shape {(psf_images.shape[0], big, big)}, "
                         f"got {coeffs.shape}")
    out_f = np.full(n, np.nan)
    out_e = np.full(n, np.nan)
    out_a = np.full(n, np.nan)
    out_c = np.full(n, np.nan)
    out_n = np.zeros(n, dtype=np.int32)
    edge = np.zeros(n, dtype=np.bool_)
    nogood = np.zeros(n, dtype=np.bool_)
    nodata = np.zeros(n, dtype=np.bool_)
    _psf_flux_kernel(image, variance, mask, np.uint64(bad_mask_bits), x, y, coeffs,
                     np.ascontiguousarray(psf_index, dtype=np.int64),
                     np.ascontiguousarray(psf_weight, dtype=np.float64),
                     out_f, out_e, out_a, out_c, out_n, edge, nogood, nodata,
                     *check_footprints(footprints, n, image.shape))
    return PsfFluxResult(out_f, out_e, out_a, out_c, out_n, edge | nogood | nodata, edge,
                         nogood, nodata)


@njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def shifted_psf(coeffs, index, weight, dx, dy, base, tmp, model, wx, wy):
    """Fill ``model`` (k x k) with the interpolated PSF shifted by ``(dx, dy)`` pixels.

    ``coeffs`` are the ``(m, K, K)`` B-spline coefficients of the PSF images (``K = k + 2
    MARGIN``); ``base`` (K x K) and ``tmp`` (K x k) are scratch, ``wx`` and ``wy`` hold 9 taps.
    Model pixel ``j`` is the spline at sample position ``j - d``, ``-0.5 <= d <= 0.5``: with
    ``t = -d`` and ``u = t - floor(t)``, ``sum_m b(u + 3 - m) coeffs[j + floor(t) + 1 + m]``
    along each axis, written as 9 taps at a fixed offset (one of them zero) so that the tap loops
    unroll into registers and the pixel loops vectorise.
    """
    big = coeffs.shape[1]
    k = model.shape[0]
    n_used = 0
    last = 0
    for t in range(index.shape[0]):
        if weight[t] != 0.0:
            n_used += 1
            last = t
    if n_used == 1 and weight[last] == 1.0:
        # one PSF image (a constant PSF, or a position on a grid node): its own coefficients
        src = coeffs[index[last]]
    else:
        for i in range(big):
            for j in range(big):
                base[i, j] = 0.0
        for t in range(index.shape[0]):
            w = weight[t]
            if w != 0.0:
                img = coeffs[index[t]]
                for i in range(big):
                    for j in range(big):
                        base[i, j] += w * img[i, j]
        src = base
    tx = -dx
    ty = -dy
    fx = math.floor(tx)
    fy = math.floor(ty)
    # 9 taps at a fixed offset: the 8 B-spline weights, placed after a zero when floor(t) = 0
    bspline_taps(tx - fx, wx[1:])
    bspline_taps(ty - fy, wy[1:])
    if fx < 0.0:
        for m in range(TAPS):
            wx[m] = wx[m + 1]
        wx[TAPS] = 0.0
    else:
        wx[0] = 0.0
    if fy < 0.0:
        for m in range(TAPS):
            wy[m] = wy[m + 1]
        wy[TAPS] = 0.0
    else:
        wy[0] = 0.0
    for r in range(big):
        for j in range(k):
            acc = 0.0
            for m in range(TAPS + 1):
                acc += wx[m] * src[r, j + m]
            tmp[r, j] = acc
    for i in range(k):
        for j in range(k):
            acc = 0.0
            for m in range(TAPS + 1):
                acc += wy[m] * tmp[i + m, j]
            model[i, j] = acc
    total = 0.0
    for i in range(k):
        for j in range(k):
            total += model[i, j]
    if total != 0.0:
        inv = 1.0 / total
        for i in range(k):
            for j in range(k):
                model[i, j] *= inv


@njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _clean_stamp_sums(image, oy, ox, variance, mask, has_mask, badbits, y0, x0, model, sums):
    """Fit sums over a stamp wholly on the tile, assuming no pixel masked.

    Fills ``sums`` with ``(sum P, sum P^2, sum P D, sum P^2 V)`` and returns False when some
    pixel has a bad mask bit after all; the sums are then invalid.
    The loops have no branch, so they vectorise. Pixel ``(j, i)`` of the tile is
    ``image[j - oy, i - ox]`` (``image`` may be the source's region with its footprint
    inserted).
    """
    k = model.shape[0]
    sp = 0.0
    spp = 0.0
    spd = 0.0
    sppv = 0.0
    bits = np.uint64(0)
    for i in range(k):
        drow = image[y0 + i - oy]
        vrow = variance[y0 + i]
        prow = model[i]
        for j in range(k):
            d = np.float64(drow[x0 + j - ox])
            v = np.float64(vrow[x0 + j])
            p = prow[j]
            pp = p * p
            sp += p
            spp += pp
            spd += p * d
            sppv += pp * v
        if has_mask:
            mrow = mask[y0 + i]
            for j in range(k):
                bits |= np.uint64(mrow[x0 + j])
    sums[0] = sp
    sums[1] = spp
    sums[2] = spd
    sums[3] = sppv
    return (bits & badbits) == 0


#: Sources ahead whose stamp rows are prefetched while the current one is measured.
_AHEAD = 4


@njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _psf_flux_kernel(image, variance, mask, badbits, xs, ys, coeffs, index, weight,
                     out_f, out_e, out_a, out_c, out_n, edge, nogood, nodata,
                     fx0, fy0, fw, fh, foff, fval, fmsk):
    ny, nx = image.shape
    region = np.empty((1, 1), dtype=image.dtype)
    big = coeffs.shape[1]
    k = big - 2 * MARGIN
    c = k // 2
    has_mask = mask.shape[0] == ny and mask.shape[1] == nx
    base = np.zeros((big, big))
    tmp = np.zeros((big, k))
    model = np.empty((k, k))
    sums = np.empty(4)
    # the fit region's pixels (data, variance, inverse variance, indicator) when it is not the
    # whole stamp
    gd = np.empty((k, k))
    gv = np.empty((k, k))
    giv = np.empty((k, k))
    gw = np.empty((k, k))
    wx = np.empty(TAPS + 1)
    wy = np.empty(TAPS + 1)
    for s in range(xs.shape[0]):
        x = xs[s]
        y = ys[s]
        if not (math.isfinite(x) and math.isfinite(y)):
            nogood[s] = True
            continue
        if s + _AHEAD < xs.shape[0]:
            xn = xs[s + _AHEAD]
            yn = ys[s + _AHEAD]
            prefetch_box(image, yn - c - 1, yn + c, xn - c - 1, xn + c)
            prefetch_box(variance, yn - c - 1, yn + c, xn - c - 1, xn + c)
            if has_mask:
                prefetch_box(mask, yn - c - 1, yn + c, xn - c - 1, xn + c)
        xi = int(math.floor(x + 0.5))
        yi = int(math.floor(y + 0.5))
        shifted_psf(coeffs, index[s], weight[s], x - xi, y - yi, base, tmp, model, wx, wy)
        x0 = xi - c
        y0 = yi - c
        on_tile = x0 >= 0 and y0 >= 0 and x0 + k <= nx and y0 + k <= ny
        r0 = max(y0, 0)
        r1 = min(y0 + k - 1, ny - 1)
        c0 = max(x0, 0)
        c1 = min(x0 + k - 1, nx - 1)
        # the pixels this source is measured on: its footprint inserted where it reaches
        if touches(s, r0, r1, c0, c1, fx0, fy0, fw, fh):
            region = source_region(image, r0, r1, c0, c1, s, fx0, fy0, fw, fh, foff, fval,
                                   fmsk, region)
            img = region
            oy = r0
            ox = c0
        else:
            img = image
            oy = 0
            ox = 0
        if on_tile and _clean_stamp_sums(img, oy, ox, variance, mask, has_mask, badbits, y0,
                                         x0, model, sums):
            # the common case: the whole stamp is good
            spp = sums[1]
            f = sums[2] / spp
            e = math.sqrt(sums[3]) / spp
            out_a[s] = sums[0] * sums[0] / spp  # LSST records area and npixels first
            out_n[s] = k * k
            if not (math.isfinite(f) and math.isfinite(e)):
                nodata[s] = True  # LSST: PixelValueError
                continue
            chi2 = 0.0
            for i in range(k):
                drow = img[y0 + i - oy]
                vrow = variance[y0 + i]
                prow = model[i]
                for j in range(k):
                    r = np.float64(drow[x0 + j - ox]) - f * prow[j]
                    chi2 += r * r / np.float64(vrow[x0 + j])
            out_f[s] = f
            out_e[s] = e
            out_c[s] = chi2
            continue
        if not on_tile:
            edge[s] = True
            gd[:, :] = 0.0
            gv[:, :] = 0.0
            giv[:, :] = 0.0
            gw[:, :] = 0.0
        i_lo = max(0, -y0)
        i_hi = min(k, ny - y0)
        j_lo = max(0, -x0)
        j_hi = min(k, nx - x0)
        for i in range(i_lo, i_hi):
            drow = img[y0 + i - oy]
            for j in range(j_lo, j_hi):
                d = np.float64(drow[x0 + j - ox])
                v = np.float64(variance[y0 + i, x0 + j])
                good = True
                if has_mask:
                    good = (np.uint64(mask[y0 + i, x0 + j]) & badbits) == 0
                gd[i, j] = d if good else 0.0
                gv[i, j] = v if good else 0.0
                giv[i, j] = 1.0 / v if good else 0.0
                gw[i, j] = 1.0 if good else 0.0
        sp = 0.0
        spd = 0.0
        spp = 0.0
        sppv = 0.0
        npix = 0.0
        for i in range(k):
            for j in range(k):
                p = model[i, j] * gw[i, j]
                pp = p * p
                sp += p
                spd += p * gd[i, j]
                spp += pp * gw[i, j]
                sppv += pp * gv[i, j]
                npix += gw[i, j]
        if npix == 0.0 or spp <= 0.0:
            nogood[s] = True
            continue
        out_n[s] = np.int32(npix)
        out_a[s] = sp * sp / spp
        f = spd / spp
        e = math.sqrt(sppv) / spp
        if not (math.isfinite(f) and math.isfinite(e)):
            nodata[s] = True  # LSST: PixelValueError
            continue
        chi2 = 0.0
        for i in range(k):
            for j in range(k):
                r = gd[i, j] - f * model[i, j] * gw[i, j]
                chi2 += r * r * giv[i, j]
        out_f[s] = f
        out_e[s] = e
        out_c[s] = chi2
