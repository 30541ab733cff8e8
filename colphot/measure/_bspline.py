"""Degree-7 cardinal B-spline interpolation of sampled PSF images.

A sampled PSF ``s[i, j]`` is interpolated by ``f(y, x) = sum c[p, q] b(y - p) b(x - q)``, with
``b`` the centred B-spline of degree 7 and ``c`` the coefficients for which ``f`` passes through
every sample (zero outside the image). The coefficients are computed once per PSF image
(:func:`bspline_coefficients`); shifting the model to a source's sub-pixel position is then a
separable 8-tap filter (:func:`bspline_taps`).

Why degree 7: on GalSim-rendered, pixel-convolved Moffat (beta 3.5) and double-Gaussian PSFs of
FWHM 2.5 px, the flux bias of a PSF fit over random phases is -0.13 % with Lanczos-5 and
-0.33 % with Lanczos-3, +0.013 % / +0.026 % with a quintic spline (what ``scipy.ndimage``
offers), -0.017 % / +0.002 % with the exact band-limited (FFT) shift and -0.005 % / +0.007 %
with degree 7, which needs 8 taps against Lanczos-5's 11 (``benchmarks/bench_psf_model.py``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["DEGREE", "MARGIN", "TAPS", "bspline_coefficients", "bspline_taps"]

#: Degree of the B-spline.
DEGREE = 7
#: Taps of the shift filter (``DEGREE + 1``).
TAPS = DEGREE + 1
#: Coefficients kept beyond each edge of the image: all that a model pixel inside the image's
#: box reaches at any shift in ``[-0.5, 0.5]``.
MARGIN = TAPS // 2

#: Zero padding of the prefilter's FFT, pixels. The coefficients of a lone sample decay by the
#: filter's largest pole, 0.536, per pixel, so 48 pixels leave wrap-around below 1e-13.
_PAD = 48

#: The degree-7 B-spline at the integers 0, 1, 2, 3 (times 5040 = 7!).
_B7_AT_INTEGERS = np.array([2416.0, 1191.0, 120.0, 1.0]) / 5040.0


def bspline_coefficients(images: np.ndarray) -> np.ndarray:
    """Interpolating degree-7 B-spline coefficients of PSF images.

    Parameters
    ----------
    images
        ``(m, k, k)`` samples, pixel centres at integers, zero beyond the image.

    Returns
    -------
    numpy.ndarray
        ``(m, k + 2 MARGIN, k + 2 MARGIN)`` float64 coefficients; ``[:, MARGIN + i,
        MARGIN + j]`` belongs to sample ``[:, i, j]``. The linear map commutes with weighted sums,
        so the coefficients of an interpolated PSF are the same sum of these.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images: expected (m, k, k), got shape {images.shape}")
    m, k, _ = images.shape
    n = k + 2 * _PAD
    padded = np.zeros((m, n, n))
    padded[:, _PAD:_PAD + k, _PAD:_PAD + k] = images
    # the sampled B-spline's transfer function, separable: B(f) = sum_t b(t) exp(-2 pi i f t)
    fy = np.fft.fftfreq(n)
    fx = np.fft.rfftfreq(n)
    by = _transfer(fy)
    bx = _transfer(fx)
    spectrum = np.fft.rfft2(padded, axes=(1, 2)) / (by[:, None] * bx[None, :])
    coeffs = np.fft.irfft2(spectrum, s=(n, n), axes=(1, 2))
    lo = _PAD - MARGIN
    hi = _PAD + k + MARGIN
    return np.ascontiguousarray(coeffs[:, lo:hi, lo:hi])


def _transfer(f: np.ndarray) -> np.ndarray:
    """``B(f)`` of the B-spline sampled at the integers (real and positive: it is even)."""
    out = np.full(f.shape, _B7_AT_INTEGERS[0])
    for t in range(1, 4):
        out += 2.0 * _B7_AT_INTEGERS[t] * np.cos(2.0 * np.pi * f * t)
    return out


@njit(cache=True, nogil=True)
def bspline_taps(u: float, out: np.ndarray) -> None:
    """The 8 B-spline weights ``out[m] = b(u + 3 - m)``, ``0 <= u < 1``, which sum to 1.

    Cox-de Boor recursion for uniform knots, degree 0 to 7, in place.
    """
    out[0] = 1.0
    for p in range(1, DEGREE + 1):
        inv = 1.0 / p
        out[p] = (u * inv) * out[p - 1]
        for m in range(p - 1, 0, -1):
            out[m] = ((u + p - m) * out[m - 1] + (m + 1 - u) * out[m]) * inv
        out[0] = ((1.0 - u) * inv) * out[0]
