"""Gaussian flux with fixed moments: closed forms for Gaussian sources, flags."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import colphot
from colphot.measure.gaussian_flux import measure_gaussian_flux

SHAPE = (101, 101)


def _one(image, variance, x, y, ixx, iyy, ixy):
    x = np.atleast_1d(np.asarray(x, dtype=float))
    a = [np.broadcast_to(np.asarray(v, dtype=float), x.shape) for v in (y, ixx, iyy, ixy)]
    return measure_gaussian_flux(image, variance, x, *a)


@pytest.mark.parametrize(
    "x, y, ixx, iyy, ixy",
    [(50.0, 50.0, 4.0, 4.0, 0.0), (50.3, 49.8, 6.0, 3.0, 1.5), (49.6, 50.45, 2.5, 9.0, -2.0),
     (50.1, 50.2, 20.0, 12.0, 5.0)],
)
def test_noiseless_gaussian_with_matching_moments(sim, x, y, ixx, iyy, ixy):
    flux = 5000.0
    image = sim.render(SHAPE, [x], [y], [flux], profile=sim.gaussian2d, half=50,
                       ixx=ixx, iyy=iyy, ixy=ixy)
    variance = np.full(SHAPE, 2.0)
    res = _one(image, variance, x, y, ixx, iyy, ixy)
    assert res.flux[0] == pytest.approx(flux, rel=1e-3)
    assert not res.flag[0] and not res.flag_bad_shape[0]
    # err = 2 sqrt(V sum w^2) and sum w^2 = sum exp(-q) ~ pi sqrt(det Q)
    det = ixx * iyy - ixy * ixy
    assert res.flux_err[0] == pytest.approx(2.0 * np.sqrt(2.0 * np.pi * np.sqrt(det)), rel=1e-3)


def test_noisy_gaussians_unbiased(sim):
    rng = np.random.default_rng(8)
    shape = (400, 400)
    xs, ys = np.meshgrid(np.arange(25, 380, 35.0), np.arange(25, 380, 35.0))
    x = xs.ravel() + rng.uniform(-0.5, 0.5, xs.size)
    y = ys.ravel() + rng.uniform(-0.5, 0.5, xs.size)
    ixx, iyy, ixy = 5.0, 3.0, 1.0
    image = sim.render(shape, x, y, np.full(x.size, 3000.0), profile=sim.gaussian2d, half=17,
                       ixx=ixx, iyy=iyy, ixy=ixy)
    image += rng.normal(0.0, 1.5, shape)
    n = x.size
    res = measure_gaussian_flux(image, np.full(shape, 2.25), x, y, np.full(n, ixx),
                                np.full(n, iyy), np.full(n, ixy))
    pull = (res.flux - 3000.0) / res.flux_err
    assert abs(pull.mean()) < 4 / np.sqrt(n)
    assert 0.85 < pull.std(ddof=1) < 1.15


@pytest.mark.parametrize(
    "ixx, iyy, ixy",
    [(np.nan, 3.0, 0.0), (3.0, 3.0, np.inf), (-1.0, 3.0, 0.0), (3.0, 0.0, 0.0),
     (2.0, 2.0, 2.0), (1.0, 4.0, 3.0)],
)
def test_bad_shape_flagged_nan(ixx, iyy, ixy):
    image = np.ones(SHAPE)
    res = _one(image, image, 50.0, 50.0, ixx, iyy, ixy)
    assert np.isnan(res.flux[0]) and np.isnan(res.flux_err[0])
    assert res.flag_bad_shape[0] and res.flag[0]


def test_window_cut_by_the_edge_is_measured_unflagged(sim):
    """meas_base clips the window to the image and sets no flag (LSST's behaviour)."""
    image = sim.render(SHAPE, [3.0], [50.0], [1000.0], profile=sim.gaussian2d, ixx=4.0,
                       iyy=4.0)
    res = _one(image, np.ones(SHAPE), [3.0, 50.0], [50.0, 50.0], 4.0, 4.0, 0.0)
    assert not res.flag[0] and not res.flag_bad_shape[0]
    # the weight's pixels left of column 0 are missing: 2 sum(w D) over the rest
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    q = ((xx - 3.0) ** 2 + (yy - 50.0) ** 2) / 4.0
    want = 2 * np.sum(np.where(q <= 14, np.exp(-0.5 * q) * image, 0.0))
    assert res.flux[0] == pytest.approx(want, rel=1e-9)
    assert res.flux[0] < 0.999 * 1000.0
    assert not res.flag[1]


def test_nonfinite_pixel_sets_general_flag():
    image = np.ones(SHAPE)
    image[51, 50] = np.nan
    res = _one(image, np.ones(SHAPE), [50.0, 20.0], [50.0, 20.0], 4.0, 4.0, 0.0)
    assert res.flag[0] and not res.flag_bad_shape[0]
    assert not res.flag[1]


def test_forced_gaussian_flux_with_reference_pixel_shapes_on_rotated_wcs(sim):
    """Reference shapes in pixels² of a reference (tract) WCS, as Rubin's Object table has
    them, measured on a tile whose WCS is rotated, flipped and of another scale: LSST's
    TransformedShape through ref_wcs."""
    theta = np.radians(35.0)
    s = 0.25 / 3600.0
    cd = s * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    shape = (160, 160)
    wcs = sim.tan_wcs(shape, cd=cd, ra0=35.0, dec0=-20.0)
    ref_cd = np.array([[-0.2, 0.0], [0.0, 0.2]]) / 3600.0
    ref_wcs = sim.tan_wcs((400, 400), cd=ref_cd, ra0=35.0, dec0=-20.0)
    q_pix = np.array([[7.0, 2.0], [2.0, 3.5]])        # source moments in tile pixels^2
    j = cd * 3600.0                                    # tile pixel -> (east, north) arcsec
    a = ref_cd * 3600.0                                # reference pixel -> arcsec
    q_sky = j @ q_pix @ j.T
    q_ref = np.linalg.inv(a) @ q_sky @ np.linalg.inv(a).T
    x = np.array([50.2, 110.7])
    y = np.array([60.4, 100.1])
    flux = np.array([2000.0, 7000.0])
    image = sim.render(shape, x, y, flux, profile=sim.gaussian2d, half=30, ixx=q_pix[0, 0],
                       iyy=q_pix[1, 1], ixy=q_pix[0, 1])
    from colphot.tile.tile import Tile

    tile = Tile(image=image.astype(np.float32), mask=None,
                variance=np.ones(shape, dtype=np.float32), wcs=wcs, psf=None, band="g")
    cfg = colphot.ForcedPhotConfig(plugins=("gaussian_flux",))
    refs = sim.refs_at(wcs, x, y, shape_xx=np.full(2, q_ref[0, 0]),
                       shape_yy=np.full(2, q_ref[1, 1]), shape_xy=np.full(2, q_ref[0, 1]))
    df = colphot.forced_photometry(tile, refs, cfg, ref_wcs=ref_wcs)
    # a weight equal to the source's moments returns F sqrt(det Q) / sqrt(det 2Q) * 2 = F
    np.testing.assert_allclose(df["gaussianFlux"].to_numpy(), flux, rtol=1e-3)
    assert not df["gaussianFlux_flag"].any()
    # shapes already in the tile's pixels need no ref_wcs (the default: the tile's own)
    refs = sim.refs_at(wcs, x, y, shape_xx=np.full(2, q_pix[0, 0]),
                       shape_yy=np.full(2, q_pix[1, 1]), shape_xy=np.full(2, q_pix[0, 1]))
    df = colphot.forced_photometry(tile, refs, cfg)
    np.testing.assert_allclose(df["gaussianFlux"].to_numpy(), flux, rtol=1e-3)


def test_forced_without_shapes_flags_bad_shape(sim_tile):
    cfg = colphot.ForcedPhotConfig(plugins=("gaussian_flux",))
    df = colphot.forced_photometry(sim_tile.tile, sim_tile.refs, cfg)
    assert df["gaussianFlux_flag_badShape"].all() and df["gaussianFlux_flag"].all()
    assert df["gaussianFlux"].is_nan().all()
    # a null shape is a bad shape too, the others are measured
    refs = sim_tile.refs.with_columns(
        shape_xx=pl.lit(0.2), shape_yy=pl.lit(0.2), shape_xy=pl.lit(0.0)
    ).with_columns(
        shape_xx=pl.when(pl.col("id") == sim_tile.ids[0]).then(None).otherwise(pl.col("shape_xx"))
    )
    df = colphot.forced_photometry(sim_tile.tile, refs, cfg)
    bad = df["gaussianFlux_flag_badShape"].to_numpy()
    assert bad[0] and not bad[1:].any()


def test_length_mismatch_raises():
    one = np.array([4.0])
    with pytest.raises(ValueError, match="ixx"):
        measure_gaussian_flux(np.ones(SHAPE), np.ones(SHAPE), np.array([10.0, 20.0]),
                              np.array([10.0, 20.0]), one, one, np.array([0.0]))
