"""PSF flux: the linear PSF fit against simulated truth and closed-form expectations."""

from __future__ import annotations

import numpy as np
import pytest

import colphot
from colphot.measure.psf_flux import measure_psf_flux
from colphot.tile.psf import PsfModel

SHAPE = (101, 101)


def _fit(image, variance, x, y, psf, mask=None, bad_mask_bits=0):
    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.atleast_1d(np.asarray(y, dtype=float))
    index, weight = psf.weights(x, y)
    return measure_psf_flux(image, variance, mask, x, y, psf.images, index, weight,
                            bad_mask_bits=bad_mask_bits)


@pytest.fixture(scope="module")
def psf(sim):
    return PsfModel.constant(sim.psf_image(41))


def test_simulated_stars_unbiased_with_unit_pulls(sim):
    """The acceptance bar: 900 isolated stars, S/N ~ 80-350, random sub-pixel positions."""
    s = sim.make_sim_tile(n_side=30, spacing=40, seed=3)
    df = colphot.forced_photometry(s.tile, s.refs)
    assert df.height == s.flux.size
    assert np.array_equal(df["objectId"].to_numpy(), s.ids)
    flux = df["psfFlux"].to_numpy()
    err = df["psfFluxErr"].to_numpy()
    assert not df["psfFlux_flag"].any()
    bias = np.mean(flux / s.flux) - 1.0
    assert abs(bias) < 2e-3, f"psfFlux bias {bias:.2%}"
    pull = (flux - s.flux) / err
    pull_sigma = np.std(pull, ddof=1)
    assert 0.9 <= pull_sigma <= 1.1, f"pull sigma {pull_sigma:.3f}"
    # the error is the noise-only error of a linear fit: sigma / sqrt(sum P^2) ~ sigma sqrt(area)
    assert np.allclose(err, s.noise_sigma * np.sqrt(df["psfFlux_area"].to_numpy()), rtol=1e-5)


def test_noiseless_star_on_pixel_centre_is_exact(sim, psf):
    image = sim.render(SHAPE, [50.0], [50.0], [1234.5])
    res = _fit(image, np.ones(SHAPE), 50.0, 50.0, psf)
    assert res.flux[0] == pytest.approx(1234.5, rel=1e-9)
    assert res.chi2[0] == pytest.approx(0.0, abs=1e-12)
    assert not res.flag[0]


@pytest.mark.parametrize("dx, dy", [(0.5, 0.0), (0.5, 0.5), (-0.31, 0.17), (0.25, -0.45)])
def test_noiseless_subpixel_shift_bias_below_0p2_percent(sim, psf, dx, dy):
    x, y = 50.0 + dx, 50.0 + dy
    image = sim.render(SHAPE, [x], [y], [1000.0])
    res = _fit(image, np.ones(SHAPE), x, y, psf)
    assert abs(res.flux[0] / 1000.0 - 1.0) < 2e-3


def test_error_area_and_npixels_closed_form(sim, psf):
    """With a constant variance V and a normalised model P (centred star):
    err = sqrt(V / sum P^2), area = 1 / sum P^2, npixels = k^2."""
    p = sim.psf_image(41)
    p = p / p.sum()
    var = 2.5
    image = sim.render(SHAPE, [50.0], [50.0], [1000.0])
    res = _fit(image, np.full(SHAPE, var), 50.0, 50.0, psf)
    assert res.flux_err[0] == pytest.approx(np.sqrt(var / np.sum(p * p)), rel=1e-9)
    assert res.area[0] == pytest.approx(1.0 / np.sum(p * p), rel=1e-9)
    assert res.npixels[0] == 41 * 41


@pytest.mark.parametrize("n_bad", [0, 1, 40])
def test_fit_sums_match_numpy_on_noisy_pixels(sim, psf, n_bad):
    """Star on a pixel centre (the model is the PSF image itself): flux, error and chi2 equal
    the formulas evaluated with numpy over the good pixels, whether or not some are masked."""
    rng = np.random.default_rng(3 + n_bad)
    image = sim.render(SHAPE, [50.0], [50.0], [900.0]) + rng.normal(0, 0.7, SHAPE)
    variance = rng.uniform(0.3, 0.7, SHAPE)
    mask = np.zeros(SHAPE, dtype=np.uint32)
    bad = rng.choice(41 * 41, n_bad, replace=False)
    mask[30 + bad // 41, 30 + bad % 41] = 1 << 0
    res = _fit(image, variance, 50.0, 50.0, psf, mask=mask, bad_mask_bits=1 << 0)
    p = psf.images[0]
    d = image[30:71, 30:71]
    v = variance[30:71, 30:71]
    good = mask[30:71, 30:71] == 0
    flux = np.sum((p * d)[good]) / np.sum((p * p)[good])
    assert res.flux[0] == pytest.approx(flux, rel=1e-12)
    assert res.flux_err[0] == pytest.approx(
        np.sqrt(np.sum((p * p * v)[good])) / np.sum((p * p)[good]), rel=1e-12)
    assert res.chi2[0] == pytest.approx(np.sum(((d - flux * p) ** 2 / v)[good]), rel=1e-10)
    assert res.npixels[0] == good.sum()
    # LSST: the area is over the fit region, not the whole model
    assert res.area[0] == pytest.approx(p[good].sum() ** 2 / np.sum((p * p)[good]), rel=1e-12)


def test_chi2_of_pure_noise_fit_follows_degrees_of_freedom(sim, psf):
    rng = np.random.default_rng(5)
    shape = (600, 600)
    x, y = np.meshgrid(np.arange(30, 580, 45.0), np.arange(30, 580, 45.0))
    x, y = x.ravel(), y.ravel()
    image = sim.render(shape, x, y, np.full(x.size, 800.0)) + rng.normal(0, 2.0, shape)
    res = _fit(image, np.full(shape, 4.0), x, y, psf)
    # chi2 of a one-parameter linear fit over n pixels: mean n - 1, std sqrt(2 (n - 1))
    dof = res.npixels - 1
    z = (res.chi2.sum() - dof.sum()) / np.sqrt(2 * dof.sum())
    assert abs(z) < 4


def test_masked_pixels_are_left_out_nonfinite_ones_fail(sim, psf):
    """LSST's PsfFlux: pixels of the bad mask planes leave the fit region; every other pixel
    is used whatever its value, so a NaN in the region fails the fit (PixelValueError: NaN,
    general flag; colphot adds flag_noData) and a zero variance is kept."""
    rng = np.random.default_rng(7)
    image = sim.render(SHAPE, [50.0], [50.0], [1000.0]) + rng.normal(0, 0.5, SHAPE)
    variance = np.full(SHAPE, 0.25)
    clean = _fit(image, variance, 50.0, 50.0, psf)
    dirty = image.copy()
    dirty[48, 51] += 5e4          # a cosmic ray, masked BAD
    mask = np.zeros(SHAPE, dtype=np.uint32)
    mask[48, 51] = 1 << 0
    mask[60, 60] = 1 << 3         # another plane, not excluded
    res = _fit(dirty, variance, 50.0, 50.0, psf, mask=mask, bad_mask_bits=1 << 0)
    assert res.npixels[0] == 41 * 41 - 1
    assert not res.flag[0]
    assert abs(res.flux[0] - clean.flux[0]) < 0.2 * clean.flux_err[0]
    # without the mask the cosmic ray ruins the fit
    unmasked = _fit(dirty, variance, 50.0, 50.0, psf, mask=mask, bad_mask_bits=0)
    assert unmasked.npixels[0] == 41 * 41
    assert unmasked.flux[0] > 1000.0 + 50 * clean.flux_err[0]
    # a NaN pixel in the region: the measurement fails
    nan = image.copy()
    nan[53, 47] = np.nan
    got = _fit(nan, variance, 50.0, 50.0, psf, mask=mask, bad_mask_bits=1 << 0)
    assert np.isnan(got.flux[0]) and np.isnan(got.flux_err[0])
    assert got.flag[0] and got.flag_no_data[0] and not got.flag_no_good_pixels[0]
    # ... unless it is masked out
    mask[53, 47] = 1 << 0
    got = _fit(nan, variance, 50.0, 50.0, psf, mask=mask, bad_mask_bits=1 << 0)
    assert np.isfinite(got.flux[0]) and not got.flag[0]


@pytest.mark.parametrize("defect", ["nan", "+inf", "-inf", "varnan", "varinf"])
def test_each_nonfinite_pixel_fails_the_fit(sim, psf, defect):
    """One non-finite value or variance anywhere in the stamp (far from the core): NaN flux,
    general flag and flag_noData, as LSST's PixelValueError."""
    rng = np.random.default_rng(11)
    image = sim.render(SHAPE, [50.3], [49.8], [800.0]) + rng.normal(0, 0.5, SHAPE)
    variance = np.full(SHAPE, 0.25)
    where = (50 + 17, 50 - 19)
    kind, value = {"nan": ("image", np.nan), "+inf": ("image", np.inf),
                   "-inf": ("image", -np.inf), "varnan": ("variance", np.nan),
                   "varinf": ("variance", np.inf)}[defect]
    planes = {"image": image.copy(), "variance": variance.copy()}
    planes[kind][where] = value
    got = _fit(planes["image"], planes["variance"], [50.3, 20.0], [49.8, 20.0], psf)
    assert np.isnan(got.flux[0]) and np.isnan(got.flux_err[0])
    assert got.flag[0] and got.flag_no_data[0]
    assert got.npixels[0] == 41 * 41
    # a source whose stamp does not reach the pixel is unaffected
    if abs(20 - where[0]) > 20 or abs(20 - where[1]) > 20:
        assert np.isfinite(got.flux[1]) and not got.flag_no_data[1]


@pytest.mark.parametrize("value", [0.0, -0.01])
def test_nonpositive_variance_pixel_is_used(sim, psf, value):
    """LSST keeps a pixel whatever its variance: the flux (unweighted) is unchanged and the
    error is sqrt(sum P^2 V) with that pixel's variance."""
    rng = np.random.default_rng(13)
    image = sim.render(SHAPE, [50.3], [49.8], [800.0]) + rng.normal(0, 0.5, SHAPE)
    variance = np.full(SHAPE, 0.25)
    clean = _fit(image, variance, 50.3, 49.8, psf)
    where = (51, 49)  # in the core, where P^2 is large enough to show in the error
    variance[where] = value
    got = _fit(image, variance, 50.3, 49.8, psf)
    assert got.flux[0] == pytest.approx(clean.flux[0], rel=1e-12)
    assert got.npixels[0] == 41 * 41 and not got.flag[0]
    # the pixel's lower variance enters sum(P^2 V)
    assert got.flux_err[0] < clean.flux_err[0]


def test_edge_flag_fits_pixels_on_the_tile(sim, psf):
    x, y = 5.0, 70.0
    image = sim.render(SHAPE, [x], [y], [1000.0])
    res = _fit(image, np.ones(SHAPE), x, y, psf)
    assert res.flag_edge[0] and res.flag[0]
    assert not res.flag_no_good_pixels[0]
    assert res.npixels[0] == (5 + 21) * 41   # columns 0..25 of the 41-pixel box are on the tile
    assert res.flux[0] == pytest.approx(1000.0, rel=1e-9)


def test_no_good_pixels_gives_nan_and_flags(sim, psf):
    image = sim.render(SHAPE, [50.0], [50.0], [1000.0])
    mask = np.zeros(SHAPE, dtype=np.uint32)
    mask[20:81, 20:81] = 1 << 8
    res = _fit(image, np.ones(SHAPE), [50.0, 90.0, np.nan], [50.0, 90.0, 10.0], psf,
               mask=mask, bad_mask_bits=1 << 8)
    assert np.isnan(res.flux[0]) and np.isnan(res.flux_err[0])
    assert res.flag_no_good_pixels[0] and res.flag[0] and res.npixels[0] == 0
    assert np.isfinite(res.flux[1])               # a source elsewhere is unaffected
    assert np.isnan(res.flux[2]) and res.flag[2]  # NaN position: flagged, not raised


def test_gridded_psf_fits_position_dependent_psf(sim):
    """Stars rendered with a PSF that widens across the tile: the grid model follows it."""
    shape = (200, 200)
    nodes = [40.0, 160.0]
    sig = {(gx, gy): 1.2 + 0.006 * gx + 0.003 * gy for gx in nodes for gy in nodes}
    images, gxs, gys = [], [], []
    for (gx, gy), s1 in sig.items():
        images.append(sim.psf_image(41, sigma1=s1, sigma2=2 * s1))
        gxs.append(gx)
        gys.append(gy)
    grid = PsfModel(np.array(images), gxs, gys)
    image = np.zeros(shape)
    for (gx, gy), s1 in sig.items():
        image += sim.render(shape, [gx], [gy], [1000.0], sigma1=s1, sigma2=2 * s1)
    x = np.array([k[0] for k in sig])
    y = np.array([k[1] for k in sig])
    res = _fit(image, np.ones(shape), x, y, grid)
    # the model is normalised over its 41 x 41 box: the fit recovers the flux inside that box
    in_box = 1000.0 * np.array([im.sum() for im in images])
    assert np.allclose(res.flux, in_box, rtol=1e-9)
    assert np.allclose(res.flux, 1000.0, rtol=1e-4)
    constant = PsfModel.constant(images[0])
    res_c = _fit(image, np.ones(shape), x, y, constant)
    assert np.max(np.abs(res_c.flux / 1000.0 - 1.0)) > 0.05


def test_forced_psf_mag_is_ab_magnitude_of_flux(sim_tile):
    import astropy.units as u

    df = colphot.forced_photometry(sim_tile.tile, sim_tile.refs)
    flux = df["psfFlux"].to_numpy()
    expected = (flux * u.nJy).to(u.ABmag).value
    assert np.allclose(df["psfMag"].to_numpy(), expected, rtol=0, atol=1e-5)
    expected_err = 2.5 / np.log(10) * df["psfFluxErr"].to_numpy() / flux
    assert np.allclose(df["psfMagErr"].to_numpy(), expected_err, rtol=1e-5)


def test_uncalibrated_tile_has_no_magnitudes(sim):
    s = sim.make_sim_tile(n_side=3, flux_unit="count")
    df = colphot.forced_photometry(s.tile, s.refs)
    assert df["psfFlux"].is_finite().all()
    assert df["psfMag"].is_nan().all()


def test_length_mismatch_raises(psf):
    image = np.ones(SHAPE)
    index, weight = psf.weights(np.array([10.0]), np.array([10.0]))
    with pytest.raises(ValueError, match="x, y"):
        measure_psf_flux(image, image, None, np.array([10.0, 20.0]), np.array([10.0]),
                         psf.images, index, weight)
    with pytest.raises(ValueError, match="psf_index"):
        measure_psf_flux(image, image, None, np.array([10.0, 20.0]), np.array([10.0, 20.0]),
                         psf.images, index, weight)


def test_psf_between_grid_nodes_is_the_weighted_sum_of_node_images(sim):
    """Off the nodes the model is the bilinear sum of the node images, shifted: the fit equals
    the fit with that sum as a constant PSF, and recovers a star rendered with it."""
    shape = (200, 200)
    nodes = [40.0, 160.0]
    images, gxs, gys, sigmas = [], [], [], []
    for gy in nodes:
        for gx in nodes:
            s1 = 1.1 + 0.004 * gx + 0.002 * gy
            images.append(sim.psf_image(41, sigma1=s1, sigma2=2 * s1))
            gxs.append(gx)
            gys.append(gy)
            sigmas.append(s1)
    grid = PsfModel(np.array(images), gxs, gys)
    rng = np.random.default_rng(11)
    x = rng.uniform(60, 140, 6)
    y = rng.uniform(60, 140, 6)
    index, weight = grid.weights(x, y)
    assert np.all(np.count_nonzero(weight, axis=1) == 4)
    res = _fit(np.zeros(shape), np.ones(shape), x, y, grid)  # only the shapes matter here
    for s in range(x.size):
        image = np.zeros(shape)
        for t in range(4):
            s1 = sigmas[index[s, t]]
            image += weight[s, t] * sim.render(shape, [x[s]], [y[s]], [1000.0], sigma1=s1,
                                               sigma2=2 * s1)
        res = _fit(image, np.ones(shape), x[s], y[s], grid)
        mixed = PsfModel.constant((weight[s, :, None, None] * grid.images[index[s]]).sum(axis=0))
        res_c = _fit(image, np.ones(shape), x[s], y[s], mixed)
        assert res.flux[0] == pytest.approx(res_c.flux[0], rel=1e-12)
        assert res.flux[0] == pytest.approx(1000.0, rel=2e-4)
