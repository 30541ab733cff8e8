"""PsfModel: normalisation, moments, interpolation weights over a grid of samples."""

from __future__ import annotations

import numpy as np
import pytest

from colphot.tile.psf import PsfModel, psf_adaptive_sigma, psf_moments_sigma


@pytest.mark.parametrize("sigma", [1.5, 2.0, 3.3])
def test_moments_sigma_of_gaussian(sim, sigma):
    image = sim.psf_image(41, profile=sim.gaussian2d, ixx=sigma**2, iyy=sigma**2)
    assert psf_moments_sigma(image[None])[0] == pytest.approx(sigma, rel=1e-6)


def test_moments_sigma_is_determinant_radius(sim):
    ixx, iyy, ixy = 4.0, 2.25, 1.0
    image = sim.psf_image(41, profile=sim.gaussian2d, ixx=ixx, iyy=iyy, ixy=ixy)
    expected = (ixx * iyy - ixy**2) ** 0.25
    assert psf_moments_sigma(image[None])[0] == pytest.approx(expected, rel=1e-6)


def test_double_gaussian_sigma(sim):
    """Unweighted: sigma^2 of the mixture is the flux-weighted sum of the component
    variances. The model's sigma (LSST's, for the annulus) is the adaptive one, which the
    Gaussian weight keeps close to the core: between the core's 1.5 and that mixture value
    (GalSim's FindAdaptiveMom agrees to 1e-3: tests/tile/test_psf_adaptive.py)."""
    image = sim.psf_image(61)
    mixture = np.sqrt(0.9 * 1.5**2 + 0.1 * 3.0**2)
    assert psf_moments_sigma(image[None])[0] == pytest.approx(mixture, rel=1e-6)
    psf = PsfModel.constant(image)
    assert psf.sigmas[0] == pytest.approx(psf_adaptive_sigma(psf.images)[0], rel=1e-12)
    assert 1.5 < psf.sigmas[0] < mixture - 0.1
    np.testing.assert_allclose(psf.sigma_at(np.array([0.0, 500.0]), np.array([3.0, -2.0])),
                               psf.sigmas[0])


def test_images_normalised_to_unit_sum(sim):
    raw = 7.5 * sim.psf_image(21)
    psf = PsfModel.constant(raw)
    assert psf.images.shape == (1, 21, 21) and psf.size == 21
    assert psf.images.sum() == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(psf.images[0], raw / raw.sum())


@pytest.mark.parametrize(
    "images, match",
    [(np.ones((20, 20)), "k odd"), (np.ones((1, 21, 19)), "k odd"), (np.ones(21), "k odd"),
     (np.zeros((21, 21)), "positive sum"), (np.full((21, 21), np.nan), "finite")],
)
def test_invalid_images_raise(images, match):
    with pytest.raises(ValueError, match=match):
        PsfModel(images, [0.0], [0.0])


def _grid_model():
    gx = np.array([0.0, 100.0, 250.0] * 2)
    gy = np.array([0.0] * 3 + [80.0] * 3)
    images = np.ones((6, 5, 5))
    return PsfModel(images, gx, gy), gx, gy


def test_bilinear_weights_reproduce_bilinear_functions():
    """Interpolating f(gx, gy) = a + b x + c y + d x y over the grid is exact inside a cell."""
    model, gx, gy = _grid_model()
    values = 1.0 + 0.3 * gx - 0.7 * gy + 0.01 * gx * gy
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 250, 200)
    y = rng.uniform(0, 80, 200)
    index, weight = model.weights(x, y)
    np.testing.assert_allclose(weight.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(weight >= 0)
    np.testing.assert_allclose((values[index] * weight).sum(axis=1),
                               1.0 + 0.3 * x - 0.7 * y + 0.01 * x * y, rtol=1e-10)


def test_weights_at_nodes_and_clamped_outside():
    model, gx, gy = _grid_model()
    index, weight = model.weights(gx, gy)
    picked = np.array([index[i][np.argmax(weight[i])] for i in range(gx.size)])
    np.testing.assert_array_equal(picked, np.arange(6))
    np.testing.assert_allclose(weight.max(axis=1), 1.0)
    # outside the grid the nearest edge of the grid is used
    index, weight = model.weights(np.array([-50.0, 400.0]), np.array([-10.0, 200.0]))
    for i, node in enumerate([0, 5]):
        mass = {j: w for j, w in zip(index[i], weight[i], strict=True) if w > 0}
        assert mass == {node: pytest.approx(1.0)}


def test_irregular_samples_use_the_nearest():
    images = np.ones((3, 5, 5))
    gx = np.array([10.0, 50.0, 30.0])
    gy = np.array([10.0, 12.0, 40.0])
    model = PsfModel(images, gx, gy)
    x = np.array([12.0, 48.0, 29.0, 31.0])
    y = np.array([9.0, 15.0, 35.0, 20.0])
    index, weight = model.weights(x, y)
    d2 = (x[:, None] - gx) ** 2 + (y[:, None] - gy) ** 2
    np.testing.assert_array_equal(index[:, 0], np.argmin(d2, axis=1))
    np.testing.assert_array_equal(weight[:, 0], 1.0)


def test_sigma_at_interpolates_grid_sigmas(sim):
    sig = {0.0: 1.4, 100.0: 2.2}
    images = [sim.psf_image(31, profile=sim.gaussian2d, ixx=s**2, iyy=s**2)
              for s in sig.values()]
    model = PsfModel(np.array(images), list(sig), [0.0, 0.0])
    np.testing.assert_allclose(model.sigma_at(np.array([0.0, 25.0, 100.0]), np.zeros(3)),
                               [1.4, 1.4 + 0.25 * 0.8, 2.2], rtol=1e-4)
