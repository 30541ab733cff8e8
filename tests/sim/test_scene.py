"""colphot.sim.scene: PSF normalisation, gridded PSF = PsfModel interpolation, noise, defects."""

from __future__ import annotations

import numpy as np
import pytest

from colphot.sim.scene import (
    MASK_PLANES,
    WING_FLUX,
    WING_RATIO,
    Defects,
    GriddedPsf,
    Sources,
    add_noise,
    apply_defects,
    bilinear_weights,
    double_gaussian,
    psf_image,
    render_model,
    render_tile,
)
from colphot.tile.psf import PsfModel


def _grid(shape=(300, 400), lo=1.6, hi=2.2, n=3) -> GriddedPsf:
    return GriddedPsf.regular(shape, lambda u, v: lo + (hi - lo) * (0.7 * u + 0.3 * v), n=n)


def _dense(index: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    """``(m, n)`` weight of every sample (indices may repeat when clamped)."""
    out = np.zeros((index.shape[0], n))
    for j in range(index.shape[1]):
        np.add.at(out, (np.arange(index.shape[0]), index[:, j]), weight[:, j])
    return out


@pytest.mark.parametrize("sigma", [1.2, 1.6, 2.2])
def test_psf_image_samples_the_unit_profile(sigma):
    image = psf_image(sigma, 61, dx=0.3, dy=-0.2)
    assert image.shape == (61, 61)
    assert image.sum() == pytest.approx(1.0, abs=1e-9)
    yy, xx = np.mgrid[0:61, 0:61] - 30.0
    assert (image * xx).sum() == pytest.approx(0.3, abs=1e-9)
    assert (image * yy).sum() == pytest.approx(-0.2, abs=1e-9)
    # second moment of the double Gaussian: (1 - f) s^2 + f (2 s)^2
    expected = ((1 - WING_FLUX) + WING_FLUX * WING_RATIO**2) * sigma**2
    assert (image * (xx - 0.3) ** 2).sum() == pytest.approx(expected, rel=1e-6)
    assert image[30, 30] == pytest.approx(double_gaussian(-0.3, 0.2, sigma))


def test_psf_image_is_not_renormalised():
    small = psf_image(2.0, 9)
    assert small.sum() < 0.97  # the wing outside a 9 x 9 stamp is lost, not folded back


@pytest.mark.parametrize("position", [(60.0, 60.0), (60.3, 59.7), (61.49, 58.51)])
def test_star_sums_to_its_flux(position):
    psf = _grid(shape=(121, 121), lo=1.5, hi=2.2)
    model = render_model((121, 121), Sources([position[0]], [position[1]], [1234.5]), psf)
    assert model.sum() == pytest.approx(1234.5, rel=1e-3)
    assert model.sum() == pytest.approx(1234.5, rel=1e-6)
    yy, xx = np.mgrid[0:121, 0:121]
    assert (model * xx).sum() / model.sum() == pytest.approx(position[0], abs=1e-6)
    assert (model * yy).sum() / model.sum() == pytest.approx(position[1], abs=1e-6)


def test_galaxy_flux_and_moments_are_analytic():
    sigma = 1.8
    psf = GriddedPsf.regular((151, 151), lambda u, v: np.full_like(u, sigma))
    q = (6.0, 3.0, 1.5)
    model = render_model((151, 151), Sources([75.2], [74.6], [500.0], *[[v] for v in q]), psf)
    assert model.sum() == pytest.approx(500.0, rel=1e-6)
    yy, xx = np.mgrid[0:151, 0:151]
    dx, dy = xx - 75.2, yy - 74.6
    psf_m2 = ((1 - WING_FLUX) + WING_FLUX * WING_RATIO**2) * sigma**2
    assert (model * dx * dx).sum() / 500.0 == pytest.approx(q[0] + psf_m2, rel=1e-5)
    assert (model * dy * dy).sum() / 500.0 == pytest.approx(q[1] + psf_m2, rel=1e-5)
    assert (model * dx * dy).sum() / 500.0 == pytest.approx(q[2], rel=1e-5)


def test_grid_weights_are_psf_model_weights():
    grid = _grid()
    model = PsfModel(grid.images(), grid.sample_x, grid.sample_y)
    x = np.array([0.0, 57.3, 199.5, 250.25, 399.0, -30.0, 450.0, 123.4])
    y = np.array([0.0, 12.9, 149.5, 280.0, 299.0, 150.0, -10.0, 310.0])
    ours = _dense(*grid.weights(x, y), grid.sample_x.size)
    theirs = _dense(*model.weights(x, y), grid.sample_x.size)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0)


def test_true_psf_is_the_interpolated_psf_model():
    grid = _grid()
    model = PsfModel(grid.images(), grid.sample_x, grid.sample_y)
    x, y = 137.0, 211.0  # integer position: the stamp is centred on the source
    index, weight = model.weights(np.array([x]), np.array([y]))
    expected = np.tensordot(weight[0], model.images[index[0]], axes=1)
    truth = grid.image_at(x, y)
    np.testing.assert_allclose(truth, expected, rtol=0, atol=1e-6 * truth.max())
    # a rendered star is flux x the true PSF, also at a sub-pixel position
    xs, ys = 137.3, 210.8
    star = render_model((300, 400), Sources([xs], [ys], [1000.0]), grid)
    k = grid.size // 2
    stamp = star[211 - k:211 + k + 1, 137 - k:137 + k + 1]
    np.testing.assert_allclose(stamp, 1000.0 * grid.image_at(xs, ys), rtol=0, atol=1e-9)


def test_bilinear_weights_single_node_and_clamping():
    index, weight = bilinear_weights([5.0], [7.0], np.array([0.0, 100.0]), np.array([3.0, 9.0]))
    np.testing.assert_array_equal(_dense(index, weight, 1), [[1.0], [1.0]])
    index, weight = bilinear_weights([0.0, 10.0], [0.0, 10.0], np.array([2.5, -4.0]),
                                     np.array([5.0, 20.0]))
    dense = _dense(index, weight, 4)
    np.testing.assert_allclose(dense[0], [0.375, 0.125, 0.375, 0.125])
    np.testing.assert_allclose(dense[1], [0.0, 0.0, 1.0, 0.0])


def test_noise_has_the_stated_variance():
    rng = np.random.default_rng(3)
    model = np.zeros((300, 300))
    model[:150] = 400.0
    image, variance = add_noise(model, sky_sigma=5.0, gain=2.0, rng=rng)
    np.testing.assert_allclose(variance[150:], 25.0)
    np.testing.assert_allclose(variance[:150], 25.0 + 200.0)
    assert np.std(image[150:]) == pytest.approx(5.0, rel=0.02)
    assert np.std(image[:150] - 400.0) == pytest.approx(15.0, rel=0.02)


def test_defects_set_mask_planes_and_damage_pixels():
    shape = (80, 100)
    rng = np.random.default_rng(4)
    model = render_model(shape, Sources([50.0, 20.0], [40.0, 60.0], [2e5, 2e5]),
                         GriddedPsf.regular(shape, lambda u, v: np.full_like(u, 1.6)))
    image, variance = add_noise(model, sky_sigma=10.0, gain=2.0, rng=rng)
    defects = Defects(bad_columns=((10, 5, 30, 0.0), (90, 0, 80, 3e4)),
                      no_data=((0, 30, 0, 8),), interpolated=((50.0, 40.0, 5.0),),
                      saturation=3000.0, edge_width=3)
    out, var, mask = apply_defects(image, variance, model, defects)
    bit = {k: 1 << v for k, v in MASK_PLANES.items()}
    assert mask.dtype == np.int32 and out is not image
    assert np.all(mask[5:30, 10] & bit["BAD"]) and not np.any(mask[30:, 10] & bit["BAD"])
    assert np.all(out[8:30, 10] == 0.0) and np.all(out[3:77, 90] == 3e4)
    assert np.all(np.isnan(out[:8, :30])) and np.all(np.isinf(var[:8, :30]))
    assert np.all(mask[:8, :30] & bit["NO_DATA"]) and not np.any(mask[:8, :30] & bit["DETECTED"])
    assert np.nanmax(np.where(mask & bit["BAD"], -np.inf, out)) <= 3000.0
    sat = (mask & bit["SAT"]) != 0
    assert sat[40, 50] and sat[60, 20] and np.all(out[sat] == 3000.0)
    intrp = (mask & bit["INTRP"]) != 0
    assert intrp[40, 50] and not intrp[60, 20] and not np.any(intrp & ~sat)
    edge = (mask & bit["EDGE"]) != 0
    assert edge[:3].all() and edge[:, -3:].all() and not edge[3:-3, 3:-3].any()
    detected = (mask & bit["DETECTED"]) != 0
    assert detected[40, 50] and not detected[40, 75]


def test_defects_off_the_tile_leave_it_alone():
    """Defects of a neighbour's region (stops before the tile's first pixel) touch nothing."""
    shape = (30, 400)
    image, variance, model = np.ones(shape), np.ones(shape), np.zeros(shape)
    defects = Defects(bad_columns=((5, -60, -20, 0.0),), no_data=((-380, -180, 0, 10),
                                                                  (0, 10, -50, -5)),
                      edge_width=0)
    out, var, mask = apply_defects(image, variance, model, defects)
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(var, variance)
    assert not mask.any()


def test_render_tile_types_and_reproducibility():
    shape = (64, 64)
    psf = GriddedPsf.regular(shape, lambda u, v: 1.6 + 0.4 * u)
    sources = Sources([20.0, 40.5], [30.0, 31.2], [5e3, 8e3], [0.0, 4.0], [0.0, 2.0],
                      [0.0, 0.5])
    a = render_tile(shape, sources, psf, sky_sigma=5.0, gain=2.0, rng=np.random.default_rng(1))
    b = render_tile(shape, sources, psf, sky_sigma=5.0, gain=2.0, rng=np.random.default_rng(1))
    assert a.image.dtype == np.float32 and a.variance.dtype == np.float32
    assert a.mask.dtype == np.int32
    np.testing.assert_array_equal(a.image, b.image)
    assert a.model.sum() == pytest.approx(13e3, rel=1e-4)


def test_sources_validate_lengths():
    with pytest.raises(ValueError, match="flux: expected shape"):
        Sources([1.0, 2.0], [1.0, 2.0], [1.0])
