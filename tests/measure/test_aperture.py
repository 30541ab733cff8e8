"""Circular apertures: photutils on the same pixels, closed forms, and simulated stars."""

from __future__ import annotations

import numpy as np
import pytest
from photutils.aperture import CircularAperture

from colphot.config import DEFAULT_RADII
from colphot.measure.aperture import measure_apertures

LSST_RADII = [3.0, 4.5, 6.0, 9.0, 12.0, 17.0, 25.0, 35.0, 50.0, 70.0]


def test_default_radii_are_lsst_radii():
    assert list(DEFAULT_RADII) == LSST_RADII


@pytest.fixture(scope="module")
def random_field():
    rng = np.random.default_rng(11)
    shape = (300, 320)
    image = rng.normal(10.0, 3.0, shape).astype(np.float32)
    variance = rng.uniform(1.0, 4.0, shape).astype(np.float32)
    # every aperture fits: centres at least 70.5 px from each border
    x = rng.uniform(70.5, 320 - 71.0, 40)
    y = rng.uniform(70.5, 300 - 71.0, 40)
    return image, variance, x, y


#: Centres on integer and half-integer pixel positions: circles through pixel corners/edges.
#: For "subpixel"/"center" these put sample points exactly on the circle, where photutils'
#: answer depends on floating-point rounding (see test_subpixel_ties_follow_strict_rule), so
#: they are compared with photutils for the exact method only.
TIE_X = np.array([150.0, 150.5, 160.0, 140.5])
TIE_Y = np.array([150.0, 150.5, 140.5, 160.0])


def _photutils(image, variance, x, y, r, method, subpixels=5):
    aperture = CircularAperture(np.column_stack([x, y]), r)
    error = np.sqrt(variance.astype(np.float64))
    return aperture.do_photometry(image, error=error, method=method, subpixels=subpixels)


@pytest.mark.parametrize(
    "method, subpixels",
    [("exact", 5), ("subpixel", 5), ("subpixel", 3), ("center", 5)],
)
def test_all_lsst_radii_match_photutils(random_field, method, subpixels):
    image, variance, x, y = random_field
    if method == "exact":
        x, y = np.concatenate([x, TIE_X]), np.concatenate([y, TIE_Y])
    res = measure_apertures(image, variance, x, y, LSST_RADII, method=method,
                            subpixels=subpixels)
    assert res.flux.shape == (x.size, len(LSST_RADII))
    assert not res.truncated.any()
    for k, r in enumerate(LSST_RADII):
        flux, err = _photutils(image, variance, x, y, r, method, subpixels)
        np.testing.assert_allclose(res.flux[:, k], flux, rtol=1e-9, err_msg=f"r={r}")
        np.testing.assert_allclose(res.flux_err[:, k], err, rtol=1e-9, err_msg=f"r={r}")


def test_truncated_apertures_are_nan_and_flagged(random_field):
    image, variance, _, _ = random_field
    ny, nx = image.shape
    x = np.array([0.0, 2.6, 10.2, 160.0, 319.0, 315.7, 160.3, -0.4, 200.0])
    y = np.array([150.0, 150.0, 40.0, 3.4, 150.0, 290.1, 250.0, 100.0, 229.5])
    radii = np.asarray(LSST_RADII)
    res = measure_apertures(image, variance, x, y, radii)
    # an aperture is truncated when the circle leaves the pixel grid [-0.5, n - 0.5]
    expected = (
        (x[:, None] - radii < -0.5) | (x[:, None] + radii > nx - 0.5)
        | (y[:, None] - radii < -0.5) | (y[:, None] + radii > ny - 0.5)
    )
    assert expected.any() and (~expected).any()
    np.testing.assert_array_equal(res.truncated, expected)
    assert np.isnan(res.flux[expected]).all() and np.isnan(res.flux_err[expected]).all()
    for k, r in enumerate(radii):
        ok = ~expected[:, k]
        if ok.any():
            flux, err = _photutils(image, variance, x[ok], y[ok], r, "exact")
            np.testing.assert_allclose(res.flux[ok, k], flux, rtol=1e-9)
            np.testing.assert_allclose(res.flux_err[ok, k], err, rtol=1e-9)


@pytest.mark.parametrize("x, y, r, n", [(10.0, 10.0, 3.0, 5), (10.0, 10.0, 2.0, 5),
                                        (10.0, 10.0, 3.0, 3), (10.0, 10.0, 1.0, 1),
                                        (10.5, 10.0, 2.5, 1), (10.25, 9.75, 1.5, 2)])
def test_subpixel_ties_follow_strict_rule(x, y, r, n):
    """A sample point counts when strictly inside the circle, decided in exact arithmetic
    (photutils' compiled loop gives rounding-dependent answers on these ties)."""
    from fractions import Fraction

    size = 21
    xs, ys, rr = Fraction(x), Fraction(y), Fraction(r)
    count = 0
    for j in range(size):
        for i in range(size):
            for a in range(n):
                for b in range(n):
                    u = i - Fraction(1, 2) + Fraction(2 * a + 1, 2 * n) - xs
                    v = j - Fraction(1, 2) + Fraction(2 * b + 1, 2 * n) - ys
                    count += u * u + v * v < rr * rr
    image = np.ones((size, size))
    method = "center" if n == 1 else "subpixel"
    res = measure_apertures(image, image, np.array([x]), np.array([y]), [r], method=method,
                            subpixels=n)
    assert res.flux[0, 0] * n * n == pytest.approx(count, abs=1e-9)


def test_circle_touching_the_border_is_not_truncated():
    image = np.ones((21, 21))
    res = measure_apertures(image, image, np.array([9.5, 9.5]), np.array([10.0, 10.0]),
                            [10.0, 10.5])
    assert not res.truncated[0, 0]          # 9.5 - 10 = -0.5: on the edge
    assert res.truncated[0, 1]
    assert res.flux[0, 0] == pytest.approx(np.pi * 100.0, rel=1e-12)


def test_exact_area_of_constant_image():
    """On a constant image the exact sum is the circle area, and err = sqrt(pi r^2 V)."""
    shape = (200, 200)
    rng = np.random.default_rng(2)
    x = rng.uniform(80, 120, 25)
    y = rng.uniform(80, 120, 25)
    radii = [0.3, 0.7, 1.0, 3.0, 4.5, 17.0, 35.0, 70.0]
    res = measure_apertures(np.full(shape, 2.0), np.full(shape, 9.0), x, y, radii)
    area = np.pi * np.asarray(radii) ** 2
    np.testing.assert_allclose(res.flux, 2.0 * area[None, :].repeat(25, 0), rtol=1e-11)
    np.testing.assert_allclose(res.flux_err, np.sqrt(9.0 * area)[None, :].repeat(25, 0),
                               rtol=1e-11)


def test_nan_pixel_under_aperture_gives_nan_only_there():
    image = np.ones((100, 100))
    image[50, 53] = np.nan          # 3 px from the first centre
    res = measure_apertures(image, np.ones((100, 100)), np.array([50.0, 20.0]),
                            np.array([50.0, 20.0]), [2.0, 4.5])
    assert np.isfinite(res.flux[0, 0]) and np.isnan(res.flux[0, 1])
    assert not res.truncated[0, 1]
    assert np.isfinite(res.flux[1]).all()


def test_nan_position_is_flagged_not_raised():
    image = np.ones((50, 50))
    res = measure_apertures(image, image, np.array([np.nan, 25.0]), np.array([25.0, 25.0]),
                            [3.0])
    assert res.truncated[0, 0] and np.isnan(res.flux[0, 0])
    assert res.flux[1, 0] == pytest.approx(9 * np.pi)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(radii=[3.0, 2.0]), "radii"),
        (dict(radii=[-1.0, 2.0]), "radii"),
        (dict(radii=[]), "radii"),
        (dict(radii=[3.0], method="elliptical"), "method"),
        (dict(radii=[3.0], method="subpixel", subpixels=0), "subpixels"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    image = np.ones((20, 20))
    with pytest.raises(ValueError, match=match):
        measure_apertures(image, image, np.array([10.0]), np.array([10.0]), **kwargs)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"variance: shape \(20, 21\) does not match"):
        measure_apertures(np.ones((20, 20)), np.ones((20, 21)), np.array([10.0]),
                          np.array([10.0]), [3.0])


def test_simulated_stars_enclosed_flux(sim):
    """Aperture sums on simulated stars: enclosed fraction of the double Gaussian, unit pulls."""
    s = sim.make_sim_tile(n_side=12, spacing=40, seed=21)
    radii = [4.5, 9.0, 12.0]
    res = measure_apertures(s.tile.image, s.tile.variance, s.x, s.y, radii)

    def enclosed(r, sigma1=1.5, sigma2=3.0, frac2=0.1):
        return (1 - frac2) * (1 - np.exp(-r * r / (2 * sigma1**2))) + frac2 * (
            1 - np.exp(-r * r / (2 * sigma2**2))
        )

    for k, r in enumerate(radii):
        expected = s.flux * enclosed(r)
        # with a constant variance the error is exactly sigma sqrt(pi r^2)
        np.testing.assert_allclose(res.flux_err[:, k], s.noise_sigma * np.sqrt(np.pi) * r,
                                   rtol=1e-6)
        pull = (res.flux[:, k] - expected) / res.flux_err[:, k]
        assert abs(np.mean(pull)) < 4 / np.sqrt(pull.size), f"r={r}: mean pull {pull.mean()}"
        assert 0.85 < np.std(pull, ddof=1) < 1.15, f"r={r}: pull sigma {pull.std()}"


def test_length_mismatch_raises():
    """x and y of different lengths must not reach the kernel (it would read past y)."""
    with pytest.raises(ValueError, match="x, y"):
        measure_apertures(np.ones((20, 20)), np.ones((20, 20)), np.array([5.0, 10.0]),
                          np.array([5.0]), [3.0])


def test_no_data_pixels_flag_the_aperture():
    """A NaN pixel (NO_DATA) or an infinite variance under an aperture: NaN flux and error with
    flag_noData; apertures that miss it are unaffected."""
    image = np.ones((60, 60), np.float32)
    variance = np.ones((60, 60), np.float32)
    image[30, 36] = np.nan
    variance[10, 10] = np.inf
    x = np.array([30.0, 10.0, 45.0])
    y = np.array([30.0, 10.0, 45.0])
    res = measure_apertures(image, variance, x, y, [3.0, 9.0])
    assert not res.no_data[0, 0] and res.no_data[0, 1]
    assert np.isnan(res.flux[0, 1]) and np.isnan(res.flux_err[0, 1])
    assert res.flux[0, 0] == pytest.approx(np.pi * 9, rel=1e-9)
    assert res.no_data[1].all() and np.isnan(res.flux[1]).all() and np.isnan(res.flux_err[1]).all()
    assert not res.no_data[2].any() and np.isfinite(res.flux[2]).all()
    np.testing.assert_array_equal(res.flag, res.no_data | res.truncated)
