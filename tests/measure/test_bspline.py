"""Degree-7 B-spline interpolation of PSF images, against closed forms."""

from __future__ import annotations

from math import comb, factorial

import numpy as np
import pytest

from colphot.measure._bspline import MARGIN, bspline_coefficients, bspline_taps
from colphot.measure.psf_flux import shifted_psf


def beta7(x: np.ndarray) -> np.ndarray:
    """The centred B-spline of degree 7 from its truncated-power form."""
    x = np.asarray(x, dtype=float)
    out = np.zeros_like(x)
    for k in range(9):
        t = x + 4.0 - k
        out += (-1) ** k * comb(8, k) * np.where(t > 0, t, 0.0) ** 7
    return out / factorial(7)


@pytest.mark.parametrize("u", [0.0, 0.125, 0.5, 0.731, 0.999])
def test_taps_are_the_b_spline_at_the_eight_offsets(u):
    out = np.empty(8)
    bspline_taps(u, out)
    assert np.allclose(out, beta7(u + 3.0 - np.arange(8)), rtol=0, atol=1e-12)
    assert out.sum() == pytest.approx(1.0, abs=1e-14)


def test_coefficients_interpolate_the_samples():
    rng = np.random.default_rng(2)
    images = rng.uniform(0.0, 1.0, (2, 15, 15))
    coeffs = bspline_coefficients(images)
    assert coeffs.shape == (2, 15 + 2 * MARGIN, 15 + 2 * MARGIN)
    # at the integers the spline is sum_t c[i + t] b(t), t = -3..3
    b = beta7(np.arange(-3, 4))
    recon = np.zeros((2, 15, 15))
    for ty in range(7):
        for tx in range(7):
            recon += b[ty] * b[tx] * coeffs[:, MARGIN - 3 + ty:MARGIN - 3 + ty + 15,
                                            MARGIN - 3 + tx:MARGIN - 3 + tx + 15]
    assert np.allclose(recon, images, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dx, dy", [(0.5, 0.0), (-0.5, 0.25), (0.37, -0.11), (0.0, 0.0)])
def test_shift_of_a_well_sampled_gaussian_matches_the_analytic_one(dx, dy):
    """A sigma = 2.5 px Gaussian is well sampled: the shifted spline is the Gaussian centred at
    the shift to 4e-7 of the peak (normalised Lanczos-5 taps are off by 1.2e-3)."""
    k = 41
    c = k // 2
    yy, xx = np.mgrid[0:k, 0:k] - c
    sigma = 2.5
    image = np.exp(-0.5 * (xx**2 + yy**2) / sigma**2)
    image /= image.sum()
    coeffs = bspline_coefficients(image[None])
    big = k + 2 * MARGIN
    model = np.empty((k, k))
    shifted_psf(coeffs, np.zeros(1, dtype=np.int64), np.ones(1), dx, dy, np.zeros((big, big)),
                np.zeros((big, k)), model, np.empty(9), np.empty(9))
    truth = np.exp(-0.5 * ((xx - dx) ** 2 + (yy - dy) ** 2) / sigma**2)
    truth /= truth.sum()
    assert np.max(np.abs(model - truth)) < 1e-6 * truth.max()
