"""Sinc aperture photometry: LSST meas_base's ``SincCoeffs`` and ``computeSincFlux``.

The flux in a circle of radius ``r`` is the integral, over the circle, of the band-limited
(sinc-interpolated) image, which is linear in the pixels: ``sum(c * I)`` with a coefficient
image ``c`` that is the inverse Fourier transform of the circle's transform
``r J1(2 pi r k) / k`` (``pi r^2`` at ``k = 0``; ``k`` in cycles per pixel), sampled on the
DFT grid of a ``w x w`` image, ``w = 2 h - 1``, ``h = 2^max(3, ceil(log2(2 r)))`` (so
``w = 15`` at ``r = 3``, 31 at 4.5 and 6, 63 at 9 and 10). No taper and no pixel response
enter (meas_base ``calcImageKSpaceReal``; the real-space and tapered constructions in
``SincCoeffs.cc`` are not used for circles); the image is the first quadrant of the inverse
transform reflected about the centre, so it is exactly symmetric. As in LSST, the coefficients
are computed once per radius for a centred aperture and cached (:func:`sinc_coefficients`).

Per source they are moved to the aperture centre as ``afw::math::offsetImage`` does with
meas_base's default ``shiftKernel="lanczos5"``: the integer part ``floor(x + 0.5)`` moves the
box, the fraction ``f = x - floor(x + 0.5)`` (in [-0.5, 0.5)) is a separable, normalised
10-tap Lanczos-5 correlation, ``out[i] = sum_m c[i + m] L5(m + f)`` for ``m = -4..5`` when
``f <= 0`` and ``m = -5..4`` when ``f > 0`` (the kernel centre moved by one so the largest
taps straddle the shift), and the ``4``/``5`` pixels along each border that the kernel does not
fit keep their unshifted values (``convolve`` with ``doCopyEdge``). The flux is ``sum(c' I)``
and its error ``sqrt(sum(c'^2 V))`` over the shifted box (meas_base ``computeSincFlux``);
a box cut by the image border sets ``flag_sincCoeffsTruncated`` and is summed over the pixels
that remain, unless the cut reaches the aperture's own pixel box, when the flux is NaN and
``flag_apertureTruncated`` (and the general flag) are set.

Differences from LSST, all below 1e-6 of a flux: coefficients, shifts and sums are float64
(LSST stores ``SincCoeffs<float>`` images and sums in float32), and the centre is not rounded
to float32 first (``offsetImage`` takes ``float dx, dy``: up to 5e-4 px at parent coordinates
below 16384). LSST's radius is rounded to float32 (``SincCoeffs<float>::cache``), as here.
``offsetImage`` also keeps ``f = x`` without an integer move when both ``|x|, |y| < 1``; such a
centre is within a pixel of the image corner, where every aperture is truncated, so this is
not reproduced.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit
from scipy.special import j1

from colphot.measure.footprints import pick_row, source_rows, touches

__all__ = [
    "LANCZOS_ORDER",
    "coefficient_half_width",
    "coefficient_stack",
    "lanczos_taps",
    "shifted_sinc_coefficients",
    "sinc_apertures",
    "sinc_coefficients",
]

#: Order of the Lanczos kernel that moves the coefficients (meas_base ``shiftKernel``).
LANCZOS_ORDER = 5


def coefficient_half_width(radius: float) -> int:
    """Half width ``h - 1`` of the ``(2h - 1)``-pixel square coefficient image of ``radius``
    (pixels), ``h = 2^max(3, ceil(log2(2 radius)))`` computed as meas_base does."""
    log2 = max(int(math.ceil(math.log10(2.0 * radius) / math.log10(2.0))), 3)
    return 2 ** log2 - 1


@functools.lru_cache(maxsize=128)
def _coefficients(radius: float) -> np.ndarray:
    half = coefficient_half_width(radius)
    hwid = half + 1
    wid = 2 * hwid - 1
    f = np.fft.fftfreq(wid)  # cycles per pixel, FFT order: 0, 1/w, ..., -1/w
    k = np.hypot(f[:, None], f[None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        airy = radius * j1(2.0 * np.pi * radius * k) / k
    airy[0, 0] = np.pi * radius * radius
    q = np.fft.ifft2(airy).real[:hwid, :hwid]  # the first quadrant; ifft2 divides by w^2
    d = np.abs(np.arange(wid) - half)  # distance from the centre pixel
    out = np.ascontiguousarray(q[d[:, None], d[None, :]])
    out.setflags(write=False)
    return out


def sinc_coefficients(radius: float) -> np.ndarray:
    """Sinc aperture coefficients of a circle of ``radius`` pixels centred on a pixel.

    Returns the read-only, cached ``(w, w)`` float64 image (``w = 2 h + 1``,
    ``h = coefficient_half_width(radius)``) whose centre pixel ``[h, h]`` is the aperture
    centre: the flux of an aperture centred on pixel ``(x0, y0)`` is
    ``sum(c * image[y0 - h:y0 + h + 1, x0 - h:x0 + h + 1])``. The radius is rounded to
    float32 first, as LSST caches it.
    """
    r = float(np.float32(radius))
    if not (math.isfinite(r) and r > 0.0):
        raise ValueError(f"radius: expected a positive finite radius, got {radius}")
    return _coefficients(r)


@functools.lru_cache(maxsize=32)
def coefficient_stack(radii: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The coefficients of ``radii`` in one zero-padded ``(k, w_max, w_max)`` array (each in
    the top-left corner) and their half widths."""
    coeffs = [sinc_coefficients(r) for r in radii]
    wmax = max(c.shape[0] for c in coeffs)
    stack = np.zeros((len(coeffs), wmax, wmax))
    for i, c in enumerate(coeffs):
        stack[i, :c.shape[0], :c.shape[1]] = c
    half = np.array([(c.shape[0] - 1) // 2 for c in coeffs], dtype=np.int64)
    stack.setflags(write=False)
    half.setflags(write=False)
    return stack, half


@njit(cache=True, nogil=True)
def lanczos_taps(frac: float, taps: np.ndarray) -> int:
    """Fill ``taps`` (``2 * LANCZOS_ORDER``) with the normalised Lanczos weights that move an
    image by ``frac`` pixels (``|frac| <= 0.5``) as ``offsetImage`` does; returns the kernel
    centre index ``ctr``: ``out[i] = sum_t in[i + t - ctr] * taps[t]``.

    afw's kernel parameter is ``-frac`` and its centre ``order - 1``, moved up by one when the
    parameter is negative; tap ``t`` is ``L(t - ctr + frac)``,
    ``L(u) = sin(pi u) sin(pi u / n) / (pi u * pi u / n)`` (1 where ``|pi u| <= 1e-5``).
    """
    n = taps.shape[0] // 2
    d = -frac
    ctr = n - 1 + (1 if d < 0.0 else 0)
    inv_n = 1.0 / n
    s = 0.0
    for t in range(2 * n):
        a1 = (t - ctr - d) * math.pi
        a2 = a1 * inv_n
        v = math.sin(a1) * math.sin(a2) / (a1 * a2) if abs(a1) > 1.0e-5 else 1.0
        taps[t] = v
        s += v
    for t in range(2 * n):
        taps[t] /= s
    return ctr


@njit(cache=True, nogil=True)
def _shift_x(coeff, w, kx, ctrx, tmp):
    """``tmp[j, i] = sum_t coeff[j, i + t - ctrx] kx[t]`` for every row and the columns the
    kernel fits, ``ctrx .. w - 2n + ctrx``."""
    nt = kx.shape[0]
    ng = w - nt + 1  # good columns
    for j in range(w):
        crow = coeff[j]
        trow = tmp[j, ctrx:ctrx + ng]
        for i in range(ng):
            trow[i] = 0.0
        for t in range(nt):
            kv = kx[t]
            cs = crow[t:t + ng]
            for i in range(ng):
                trow[i] += kv * cs[i]


@njit(cache=True, nogil=True)
def _shifted_row(coeff, tmp, w, j, ky, ctry, ctrx, orow):
    """Row ``j`` of the shifted coefficients into ``orow[:w]``: the y pass over ``tmp`` where
    the kernel fits, the unshifted ``coeff`` along the borders (``doCopyEdge``)."""
    nt = ky.shape[0]
    ng = w - nt + 1
    crow = coeff[j]
    if j < ctry or j >= ctry + ng:
        for i in range(w):
            orow[i] = crow[i]
        return
    for i in range(ctrx):
        orow[i] = crow[i]
    for i in range(ctrx + ng, w):
        orow[i] = crow[i]
    og = orow[ctrx:ctrx + ng]
    for i in range(ng):
        og[i] = 0.0
    for t in range(nt):
        kv = ky[t]
        ts = tmp[j + t - ctry, ctrx:ctrx + ng]
        for i in range(ng):
            og[i] += kv * ts[i]


@njit(cache=True, nogil=True)
def _shift_full(coeff, fx, fy, out):
    n = LANCZOS_ORDER
    w = coeff.shape[0]
    kx = np.empty(2 * n)
    ky = np.empty(2 * n)
    ctrx = lanczos_taps(fx, kx)
    ctry = lanczos_taps(fy, ky)
    tmp = np.zeros((w, w))
    orow = np.empty(w)
    _shift_x(coeff, w, kx, ctrx, tmp)
    for j in range(w):
        _shifted_row(coeff, tmp, w, j, ky, ctry, ctrx, orow)
        for i in range(w):
            out[j, i] = orow[i]


def shifted_sinc_coefficients(radius: float, x: float, y: float) -> tuple[np.ndarray, int, int]:
    """The sinc coefficients of a circle of ``radius`` pixels centred at ``(x, y)`` (array
    pixel coordinates), moved there as LSST's ``offsetImage`` with Lanczos-5 does.

    Returns ``(c, x0, y0)``: pixel ``(row y0 + j, column x0 + i)`` has weight ``c[j, i]``.
    One source at a time, for inspection; :func:`sinc_apertures` does the same for many.
    """
    coeff = sinc_coefficients(radius)
    half = (coeff.shape[0] - 1) // 2
    ox = math.floor(x + 0.5)
    oy = math.floor(y + 0.5)
    out = np.empty_like(coeff)
    _shift_full(np.ascontiguousarray(coeff), x - ox, y - oy, out)
    return out, ox - half, oy - half


@njit(cache=True, nogil=True)
def _aperture_off_image(x, y, r, nx, ny):
    """True when the aperture's integer pixel box (``Box2I(ellipse.computeBBox(), EXPAND)``:
    pixels ``floor(min + 0.5) .. ceil(max + 0.5) - 1``, every pixel the box overlaps) is not
    on the image."""
    x_min = x - r
    y_min = y - r
    x_max = x_min + 2.0 * r
    y_max = y_min + 2.0 * r
    return (math.floor(x_min + 0.5) < 0 or math.ceil(x_max + 0.5) - 1 > nx - 1
            or math.floor(y_min + 0.5) < 0 or math.ceil(y_max + 0.5) - 1 > ny - 1)


#: LLVM fast-math flags of the sums: reassociation only (vectorised dot products); NaN and
#: infinity semantics are kept, so a pixel without data still gives a NaN flux.
_FAST = {"reassoc"}


@njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def sinc_apertures(image, variance, xs, ys, radii, stack, half, flux, var, truncated,
                   sinc_truncated, fx0, fy0, fw, fh, foff, fval, fmsk):
    """Sinc aperture sums of every source at every radius (see the module docstring).

    ``stack``/``half`` are :func:`coefficient_stack` of ``radii``. Fills ``flux[s, k]``
    (``sum(c' I)``), ``var[s, k]`` (``sum(c'^2 V)``), ``truncated`` (left True where the
    aperture's pixel box is off the image or the centre is not finite; False where measured)
    and ``sinc_truncated``
    (the shifted coefficient box is not wholly on the image). The footprint arrays are
    :meth:`Footprints.kernel_args` (empty for plain measurement): where source ``s``'s footprint
    reaches its box, its pixels replace ``image``'s.
    """
    ny, nx = image.shape
    n_t = 2 * LANCZOS_ORDER
    k_all = radii.shape[0]
    wmax = stack.shape[1]
    tmp = np.zeros((wmax, wmax))
    orow = np.empty(wmax)
    kx = np.empty(n_t)
    ky = np.empty(n_t)
    measured = np.empty(k_all, dtype=np.bool_)
    region = np.empty((1, nx), dtype=image.dtype)
    for s in range(xs.shape[0]):
        x = xs[s]
        y = ys[s]
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        ox = int(math.floor(x + 0.5))
        oy = int(math.floor(y + 0.5))
        h_reg = -1
        for k in range(k_all):
            h = half[k]
            sinc_truncated[s, k] = ox - h < 0 or ox + h > nx - 1 or oy - h < 0 or oy + h > ny - 1
            # the clipped box always holds the aperture's box (h >= 2 r - 1), so the aperture
            # is cut exactly when its box is off the image
            measured[k] = not _aperture_off_image(x, y, radii[k], nx, ny)
            if measured[k]:
                h_reg = max(h_reg, h)
        if h_reg < 0:
            continue
        ctrx = lanczos_taps(x - ox, kx)
        ctry = lanczos_taps(y - oy, ky)
        j_lo = max(oy - h_reg, 0)
        j_hi = min(oy + h_reg, ny - 1)
        c_lo = max(ox - h_reg, 0)
        c_hi = min(ox + h_reg, nx - 1)
        fr0, fr1 = 1, 0
        if touches(s, j_lo, j_hi, c_lo, c_hi, fx0, fy0, fw, fh):
            region, fr0, fr1 = source_rows(image, j_lo, j_hi, c_lo, c_hi, s, fx0, fy0, fw, fh,
                                           foff, fval, fmsk, region)
        for k in range(k_all):
            if not measured[k]:
                continue
            h = half[k]
            w = 2 * h + 1
            coeff = stack[k]
            _shift_x(coeff, w, kx, ctrx, tmp)
            x0 = ox - h
            y0 = oy - h
            a = max(0, -x0)  # the box's columns on the image
            b = min(w - 1, nx - 1 - x0)
            f = 0.0
            v = 0.0
            for j in range(max(0, -y0), min(w - 1, ny - 1 - y0) + 1):
                _shifted_row(coeff, tmp, w, j, ky, ctry, ctrx, orow)
                drow = pick_row(image, region, fr0, fr1, y0 + j)[x0 + a:x0 + b + 1]
                vrow = variance[y0 + j, x0 + a:x0 + b + 1]
                cs = orow[a:b + 1]
                sf = 0.0
                sv = 0.0
                for i in range(cs.shape[0]):
                    c = cs[i]
                    sf += c * drow[i]
                    sv += c * c * vrow[i]
                f += sf
                v += sv
            flux[s, k] = f
            var[s, k] = v
            truncated[s, k] = False
