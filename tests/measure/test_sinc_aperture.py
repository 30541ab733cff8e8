"""Sinc apertures against an independent numpy transcription of LSST's construction.

The reference below follows meas_base ``calcImageKSpaceReal`` (k-space Airy function on a
``(2h - 1)^2`` grid, inverse FFT, first quadrant reflected) and afw ``offsetImage`` with
``lanczos5`` (integer move ``floor(d + 0.5)``, separable normalised Lanczos-5 correlation with
afw's kernel centre, ``doCopyEdge``) and ``computeSincFlux`` (sum of coefficients times pixels
over the coefficient box clipped to the image) line by line, with plain numpy and no colphot
code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import j1

from colphot.measure.aperture import measure_apertures


def _lsst_coefficients(radius: float) -> np.ndarray:
    """meas_base calcImageKSpaceReal(0, radius), transcribed loop by loop."""
    log2 = max(int(math.ceil(math.log10(2.0 * radius) / math.log10(2.0))), 3)
    hwid = 2**log2
    wid = 2 * hwid - 1
    cen = wid // 2
    c = np.zeros((wid, wid), dtype=complex)
    for iy in range(wid):
        fy = (iy + cen + 1) % wid  # FftShifter: index of row iy in FFT order
        ky = (iy - cen) / wid
        for ix in range(wid):
            fx = (ix + cen + 1) % wid
            kx = (ix - cen) / wid
            k = math.hypot(kx, ky)
            c[fy, fx] = radius * j1(2 * math.pi * radius * k) / k if k > 0 else 0.0
    c[0, 0] = math.pi * radius * radius
    # FFTW_BACKWARD is unnormalised; the C++ then divides by wid^2: numpy's ifft2
    c = np.fft.ifft2(c)
    out = np.empty((wid, wid))
    for iy in range(wid):
        for ix in range(wid):
            fx = hwid - ix - 1 if ix < hwid else ix - hwid + 1
            fy = hwid - iy - 1 if iy < hwid else iy - hwid + 1
            out[iy, ix] = c[fy, fx].real
    return out  # xy0 = (-wid // 2, -wid // 2)


def _lanczos5_kernel(frac: float) -> tuple[np.ndarray, int]:
    """afw's lanczos5 warping kernel as offsetImage sets it up: parameter -frac, centre
    order - 1 (+1 when the parameter is negative), normalised."""
    n = 5
    par = -frac
    ctr = n - 1 + (1 if par < 0 else 0)
    u = (np.arange(2 * n) - ctr - par) * math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(np.abs(u) > 1e-5, np.sin(u) * np.sin(u / n) / (u * u / n), 1.0)
    return k / k.sum(), ctr


def _offset(img: np.ndarray, dx: float, dy: float) -> tuple[np.ndarray, int, int]:
    """afw offsetImage(img, dx, dy, "lanczos5") for dx, dy >= 1: the shifted image and its
    integer origin move."""
    ox, oy = math.floor(dx + 0.5), math.floor(dy + 0.5)
    kx, cx = _lanczos5_kernel(dx - ox)
    ky, cy = _lanczos5_kernel(dy - oy)
    h, w = img.shape
    out = img.copy()  # doCopyEdge
    nt = kx.size
    # separable correlation: out[j, i] = sum_ab img[j + b - cy, i + a - cx] ky[b] kx[a]
    for j in range(cy, h - (nt - 1 - cy)):
        for i in range(cx, w - (nt - 1 - cx)):
            patch = img[j - cy:j - cy + nt, i - cx:i - cx + nt]
            out[j, i] = ky @ patch @ kx
    return out, ox, oy


def _lsst_sinc_flux(image: np.ndarray, variance: np.ndarray, x: float, y: float, r: float
                    ) -> tuple[float, float, bool]:
    coeff = _lsst_coefficients(float(np.float32(r)))
    wid = coeff.shape[0]
    shifted, ox, oy = _offset(coeff, x, y)
    x0, y0 = -(wid // 2) + ox, -(wid // 2) + oy
    ny, nx = image.shape
    a, b = max(x0, 0), min(x0 + wid, nx)
    c, d = max(y0, 0), min(y0 + wid, ny)
    cs = shifted[c - y0:d - y0, a - x0:b - x0]
    truncated = (a, b, c, d) != (x0, x0 + wid, y0, y0 + wid)
    flux = float((cs * image[c:d, a:b]).sum())
    err = float(np.sqrt((cs**2 * variance[c:d, a:b]).sum()))
    return flux, err, truncated


@pytest.fixture(scope="module")
def field():
    rng = np.random.default_rng(7)
    ny, nx = 140, 150
    yy, xx = np.mgrid[0:ny, 0:nx]
    image = rng.normal(0.0, 1.0, (ny, nx))
    for cx, cy, f, s in [(40.3, 50.7, 5e3, 1.6), (90.8, 70.2, 2e4, 2.4), (60.5, 100.5, 1e4, 3.0)]:
        image += f / (2 * np.pi * s * s) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    variance = rng.uniform(0.5, 2.0, (ny, nx))
    return image, variance


RADII = (3.0, 4.5, 6.0, 9.0)


@pytest.mark.parametrize("pos", [(40.3, 50.7), (90.8, 70.2), (60.5, 100.5), (75.01, 64.99),
                                 (70.49, 71.51), (33.0, 44.0)])
def test_sinc_equals_lsst_construction(field, pos):
    image, variance = field
    x, y = pos
    res = measure_apertures(image, variance, np.array([x]), np.array([y]), RADII, method="sinc")
    for k, r in enumerate(RADII):
        flux, err, trunc = _lsst_sinc_flux(image, variance, x, y, r)
        assert not trunc
        assert res.flux[0, k] == pytest.approx(flux, rel=1e-6, abs=1e-9 * abs(image).max())
        assert res.flux_err[0, k] == pytest.approx(err, rel=1e-6)
        assert not res.sinc_truncated[0, k] and not res.flag[0, k]


def test_sinc_coefficients_truncated_near_border(field):
    image, variance = field
    # 20 px from the left border: the r = 9 coefficient box (63 px) is cut, its aperture not
    x, y = 20.3, 70.6
    res = measure_apertures(image, variance, np.array([x]), np.array([y]), RADII, method="sinc")
    flux, err, trunc = _lsst_sinc_flux(image, variance, x, y, 9.0)
    assert trunc
    assert res.sinc_truncated[0, 3] and not res.truncated[0, 3] and not res.flag[0, 3]
    assert res.flux[0, 3] == pytest.approx(flux, rel=1e-6)
    assert res.flux_err[0, 3] == pytest.approx(err, rel=1e-6)
    # the r = 3 box (15 px) is whole
    assert not res.sinc_truncated[0, 0]


def test_aperture_truncated_when_cut_inside_aperture_box(field):
    image, variance = field
    # the r = 6 aperture box reaches column -1: LSST sets apertureTruncated and the general flag
    res = measure_apertures(image, variance, np.array([5.2]), np.array([70.0]), RADII,
                            method="sinc")
    assert res.truncated[0, 2] and res.flag[0, 2] and np.isnan(res.flux[0, 2])
    assert not res.truncated[0, 0] and res.sinc_truncated[0, 0]


def test_sinc_flux_of_band_limited_source():
    """A well-sampled Gaussian point-sampled at pixel centres: the sinc aperture is the
    integral of the continuous profile over the circle, F (1 - exp(-r^2 / 2 s^2)).

    Not at r = 3: LSST's 15-pixel coefficient image there is the 15-periodic alias of the
    circle's band-limited weight, 2.6 % high for this broad profile (the ~1 % by which LSST's
    r = 3 sinc fluxes exceed overlap-area sums on real PSFs); from 4.5 px (31 pixels) on it
    is exact to a few 1e-4.
    """
    ny = nx = 101
    yy, xx = np.mgrid[0:ny, 0:nx]
    s, f = 2.5, 1.0e4
    for cx, cy in [(50.0, 50.0), (50.37, 49.81), (50.5, 50.5)]:
        image = f / (2 * np.pi * s * s) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
        radii = RADII[1:]
        res = measure_apertures(image, np.ones_like(image), np.array([cx]), np.array([cy]),
                                radii, method="sinc")
        truth = f * (1 - np.exp(-np.square(radii) / (2 * s * s)))
        np.testing.assert_allclose(res.flux[0], truth, rtol=1e-3)


def test_sinc_above_max_radius_is_center_sum(field):
    image, variance = field
    x, y = np.array([60.3, 90.6]), np.array([70.2, 80.9])
    radii = (3.0, 12.0, 17.0)
    sinc = measure_apertures(image, variance, x, y, radii, method="sinc")
    center = measure_apertures(image, variance, x, y, radii, method="center")
    np.testing.assert_array_equal(sinc.flux[:, 1:], center.flux[:, 1:])
    np.testing.assert_array_equal(sinc.flux_err[:, 1:], center.flux_err[:, 1:])
    assert not sinc.sinc_truncated[:, 1:].any()
    # with max_sinc_radius below 3 every radius is a centre sum
    low = measure_apertures(image, variance, x, y, radii, method="sinc", max_sinc_radius=2.0)
    np.testing.assert_array_equal(low.flux, center.flux)


def test_sinc_nan_pixel_in_coefficient_box(field):
    image, variance = field
    bad = image.copy()
    bad[70, 72] = np.nan  # 12 px from the centre: inside the r = 9 box (63 px), outside r = 3's
    res = measure_apertures(bad, variance, np.array([60.0]), np.array([70.0]), RADII,
                            method="sinc")
    assert res.no_data[0, 3] and np.isnan(res.flux[0, 3]) and res.flag[0, 3]
    assert not res.no_data[0, 0] and np.isfinite(res.flux[0, 0])


def test_aperture_box_rounds_as_box2i_expand(field):
    """LSST's aperture box is ``Box2I(ellipse.computeBBox(), EXPAND)``: pixels
    ``floor(min + 0.5) .. ceil(max + 0.5) - 1``. A 4.5-pixel circle centred on column 4 spans
    -0.5 .. 8.5: pixels 0 .. 8, on the tile (measured on the clipped coefficients); a hair
    further left it reaches pixel -1 (truncated)."""
    image, variance = field
    res = measure_apertures(image, variance, np.array([4.0, 3.99]), np.array([70.0, 70.0]),
                            (4.5,), method="sinc")
    assert not res.truncated[0, 0] and res.sinc_truncated[0, 0] and not res.flag[0, 0]
    flux, err, trunc = _lsst_sinc_flux(image, variance, 4.0, 70.0, 4.5)
    assert trunc and res.flux[0, 0] == pytest.approx(flux, rel=1e-6)
    assert res.truncated[1, 0] and res.flag[1, 0] and np.isnan(res.flux[1, 0])
