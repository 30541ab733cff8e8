"""Spitzer/GLIMPSE IRAC 4.5 um mosaic (photutils-datasets): a plain FITS image with a Galactic
CAR WCS and no variance, measured at the GLIMPSE point-source catalog's (l, b) positions."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import polars as pl
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import wcs_to_celestial_frame
from photutils.aperture import CircularAperture

import colphot
from colphot.config import ForcedPhotConfig, aperture_name
from colphot.exceptions import EstimatedVarianceWarning, NoPsfWarning

IMAGE = "photutils-datasets/spitzer_example_image.fits"
CATALOG = "photutils-datasets/spitzer_example_catalog.xml"


@pytest.fixture(scope="module")
def spitzer(shared_file):
    path = shared_file(IMAGE)
    with pytest.warns(EstimatedVarianceWarning, match="no VARIANCE HDU"):
        tile = colphot.read_tile(path)
    with fits.open(path) as hdul:
        data = hdul[0].data.copy()
        wcs = WCS(hdul[0].header)
    catalog = Table.read(shared_file(CATALOG))
    galactic = SkyCoord(catalog["l"], catalog["b"], frame="galactic")
    icrs = galactic.icrs
    refs = pl.DataFrame({"id": np.arange(len(catalog), dtype=np.int64) + 1,
                         "coord_ra": icrs.ra.deg, "coord_dec": icrs.dec.deg})
    return tile, data, wcs, catalog, galactic, refs


def test_plain_galactic_image_reads(spitzer):
    tile, data, wcs, *_ = spitzer
    assert tile.shape == data.shape == (513, 1025)
    np.testing.assert_array_equal(tile.image, data)
    assert tile.mask is None and tile.psf is None
    assert tile.flux_unit == "MJy/sr" and tile.flux_scale is None
    assert wcs_to_celestial_frame(tile.wcs).name == "galactic"
    assert list(tile.wcs.wcs.ctype) == ["GLON-CAR", "GLAT-CAR"]
    # the estimated variance is one constant, a clipped variance of the image: close to
    # astropy's sigma-clipped standard deviation (different clipping rules, hence 15 %)
    assert tile.variance_estimated
    assert np.all(tile.variance == tile.variance[0, 0])
    _, _, std = sigma_clipped_stats(data[np.isfinite(data)], sigma=3.0, maxiters=10)
    assert np.sqrt(tile.variance[0, 0]) == pytest.approx(std, rel=0.15)


@pytest.fixture(scope="module")
def measured(spitzer):
    tile, *_, refs = spitzer
    with pytest.warns(NoPsfWarning, match="no PSF model"):
        # photutils' exact overlap is colphot's "exact" method (LSST's default is sinc)
        return colphot.forced_photometry(tile, refs, ForcedPhotConfig(aperture_method="exact"))


def test_sources_placed_on_the_image(spitzer, measured):
    tile, data, wcs, _, galactic, refs = spitzer
    # astropy alone: which catalog positions fall on the pixels, and where
    px, py = galactic.to_pixel(wcs)
    ny, nx = data.shape
    inside = (px >= -0.5) & (px < nx - 0.5) & (py >= -0.5) & (py < ny - 0.5)
    assert inside.sum() >= 223
    assert measured["objectId"].to_list() == refs["id"].filter(pl.Series(inside)).to_list()
    x = measured["centroid_x"].to_numpy()
    y = measured["centroid_y"].to_numpy()
    assert tile.xy0 == (0, 0)
    np.testing.assert_allclose(x, px[inside], atol=1e-6)
    np.testing.assert_allclose(y, py[inside], atol=1e-6)
    # each catalog source sits on a local peak: distance to the brightest pixel within +-3 px
    dist = []
    for xs, ys in zip(x, y, strict=True):
        i, j = int(round(ys)), int(round(xs))
        i0, j0 = max(i - 3, 0), max(j - 3, 0)
        box = data[i0:i + 4, j0:j + 4]
        bi, bj = np.unravel_index(np.nanargmax(box), box.shape)
        dist.append(np.hypot(j0 + bj - xs, i0 + bi - ys))
    dist = np.array(dist)
    assert np.median(dist) < 0.75
    assert np.mean(dist <= 1.5) > 0.9


def test_apertures_equal_photutils_at_catalog_positions(spitzer, measured):
    tile, data, wcs, _, galactic, _ = spitzer
    px, py = galactic.to_pixel(wcs)
    ny, nx = data.shape
    inside = (px >= -0.5) & (px < nx - 0.5) & (py >= -0.5) & (py < ny - 0.5)
    px, py = px[inside], py[inside]
    error = np.sqrt(tile.variance.astype(np.float64))
    checked = 0
    for r in ForcedPhotConfig().aperture_radii:
        name = f"ap{aperture_name(r)}Flux"
        flux = measured[name].to_numpy()
        truncated = (px - r < -0.5) | (px + r > nx - 0.5) | (py - r < -0.5) | (py + r > ny - 0.5)
        np.testing.assert_array_equal(measured[f"{name}_flag_apertureTruncated"].to_numpy(),
                                      truncated)
        ok = ~truncated
        if not ok.any():
            continue
        ref, ref_err = CircularAperture(np.column_stack([px[ok], py[ok]]), r).do_photometry(
            data, error=error, method="exact")
        # the mosaic has 3 NaN pixels: both give NaN for the apertures that cover them
        np.testing.assert_array_equal(np.isnan(flux[ok]), np.isnan(ref))
        np.testing.assert_allclose(flux[ok], ref, rtol=1e-9, equal_nan=True)
        # colphot flags them (flag_noData) and leaves their error NaN too
        nodata = measured[f"{name}_flag_noData"].to_numpy()[ok]
        np.testing.assert_array_equal(nodata, np.isnan(ref))
        err = measured[f"{name}Err"].to_numpy()[ok]
        assert np.isnan(err[nodata]).all()
        np.testing.assert_allclose(err[~nodata], ref_err[~nodata], rtol=1e-9)
        checked += int(ok.sum())
    assert checked > 1000


def test_aperture_fluxes_agree_with_glimpse_photometry(spitzer, measured):
    """Independent photometry: GLIMPSE PSF-fit f4_5 (mJy). A 3 px (3.6") aperture minus the
    median of a 8-14 px annulus holds ~1/1.11 of an IRAC 4.5 um point source's flux (the IRAC
    handbook's aperture correction for a 3 native-pixel radius is 1.113)."""
    tile, data, _, catalog, _, refs = spitzer
    on = np.isin(refs["id"].to_numpy(), measured["objectId"].to_numpy())
    f45 = np.asarray(catalog["f4_5"])[on]
    x = measured["centroid_x"].to_numpy()
    y = measured["centroid_y"].to_numpy()
    yy, xx = np.indices(data.shape)
    background = np.empty(x.size)
    for k in range(x.size):
        d2 = (xx - x[k]) ** 2 + (yy - y[k]) ** 2
        background[k] = np.nanmedian(data[(d2 >= 64) & (d2 < 196)])
    net = measured["ap03Flux"].to_numpy() - background * np.pi * 9.0
    pixel = (1.2 * u.arcsec) ** 2
    mjy = (net * u.MJy / u.sr * pixel).to_value(u.mJy)
    ok = np.isfinite(mjy)
    assert ok.sum() > 200
    ratio = mjy[ok] / f45[ok]
    assert 0.85 < np.median(ratio) < 0.95
    assert np.mean(np.abs(ratio / np.median(ratio) - 1) < 0.15) > 0.8
