"""A real afw Exposure (HSC cutout from lsst/afw): arrays, xy0, TAN-SIP centroids, mask flags."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import polars as pl
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from photutils.aperture import CircularAperture

import colphot
from colphot.config import ForcedPhotConfig, aperture_name

FILE = "lsst/HSC-0908120-056-small.fits"


@pytest.fixture(scope="module")
def hsc(shared_file):
    path = shared_file(FILE)
    with fits.open(path) as hdul:
        image = hdul[1].data.copy()
        mask = hdul[2].data.copy()
        variance = hdul[3].data.copy()
        header = hdul[1].header.copy()
        mask_header = hdul[2].header.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # FITSFixedWarning about the afw header
        wcs = WCS(header, relax=True).celestial
    return path, image, mask, variance, header, mask_header, wcs


def _gaussian_psf(sigma=1.8, size=11):
    yy, xx = np.mgrid[0:size, 0:size] - size // 2
    return np.exp(-(xx**2 + yy**2) / (2 * sigma**2))


def test_arrays_match_astropy(hsc):
    path, image, mask, variance, header, mask_header, _ = hsc
    tile = colphot.read_tile(path)
    assert tile.shape == (200, 200)
    np.testing.assert_array_equal(tile.image, image)
    assert mask.dtype == np.uint16             # BZERO 32768 int16 -> uint16
    np.testing.assert_array_equal(tile.mask, mask)
    np.testing.assert_array_equal(tile.variance, variance)
    assert not tile.variance_estimated
    assert tile.xy0 == (100, 100)
    assert tile.xy0 == (-header["LTV1"], -header["LTV2"])
    planes = {k[3:]: v for k, v in mask_header.items() if k.startswith("MP_")}
    assert tile.mask_planes == planes
    assert planes["SAT"] == 1 and planes["NO_DATA"] == 9 and planes["DETECTED"] == 5
    # FLUXMAG0 = 0 and no BUNIT: the tile stays in its own units
    assert tile.flux_scale is None and tile.flux_unit == "count"
    assert tile.psf is None


def test_tan_sip_centroids_in_parent_frame(hsc):
    path, *_, wcs = hsc
    assert wcs.sip is not None
    tile = colphot.read_tile(path)
    rng = np.random.default_rng(2)
    x = rng.uniform(2, 197, 30)
    y = rng.uniform(2, 197, 30)
    sky = wcs.pixel_to_world(x, y).icrs
    refs = pl.DataFrame({"id": np.arange(30, dtype=np.int64), "coord_ra": sky.ra.deg,
                         "coord_dec": sky.dec.deg})
    cfg = ForcedPhotConfig(plugins=("aperture",), aperture_radii=(2.0,))
    df = colphot.forced_photometry(tile, refs, cfg)
    px, py = SkyCoord(sky.ra, sky.dec, frame="icrs").to_pixel(wcs)
    np.testing.assert_allclose(df["centroid_x"].to_numpy(), px + 100, atol=1e-6)
    np.testing.assert_allclose(df["centroid_y"].to_numpy(), py + 100, atol=1e-6)
    np.testing.assert_allclose(df["centroid_x"].to_numpy(), x + 100, atol=1e-6)


def test_mask_bits_give_pixel_flags(hsc, tmp_path):
    """A forced source on a pixel with a mask bit gets that plane's pixelFlags_* columns."""
    path, *_, wcs = hsc
    copy = tmp_path / "hsc_flagged.fits"
    shutil.copy(path, copy)
    cases = {  # plane -> (x, y, expected true columns)
        "SAT": (30, 30, {"saturated", "saturatedCenter"}),
        "INTRP": (70, 30, {"interpolated", "interpolatedCenter"}),
        "CR": (110, 30, {"cr", "crCenter"}),
        "SUSPECT": (150, 30, {"suspect", "suspectCenter"}),
        # meas_base: BAD, NO_DATA and EDGE have their Center flags too; NO_DATA alone does
        # not set edge
        "BAD": (30, 80, {"bad", "badCenter"}),
        "NO_DATA": (70, 80, {"nodata", "nodataCenter"}),
        "EDGE": (110, 80, {"edge", "edgeCenter"}),
        "DETECTED": (150, 80, set()),
        "CROSSTALK": (30, 130, set()),
    }
    with fits.open(copy, mode="update") as hdul:
        planes = {k[3:]: v for k, v in hdul[2].header.items() if k.startswith("MP_")}
        data = hdul[2].data
        for plane, (x, y, _) in cases.items():
            data[y - 6:y + 7, x - 6:x + 7] = 0        # a clean neighbourhood
            data[y, x] |= np.uint16(1 << planes[plane])
        hdul[2].data = data
    tile = colphot.read_tile(copy, psf=_gaussian_psf())
    xs = np.array([c[0] for c in cases.values()], dtype=float) + 0.2
    ys = np.array([c[1] for c in cases.values()], dtype=float) - 0.3
    sky = wcs.pixel_to_world(xs, ys).icrs
    refs = pl.DataFrame({"id": np.arange(1, len(cases) + 1, dtype=np.int64),
                         "coord_ra": sky.ra.deg, "coord_dec": sky.dec.deg})
    df = colphot.forced_photometry(tile, refs)
    flag_cols = [c for c in df.columns if c.startswith("pixelFlags_")]
    for i, (plane, (_, _, expected)) in enumerate(cases.items()):
        got = {c.removeprefix("pixelFlags_") for c in flag_cols if df[c][i]}
        assert got == expected, plane


def test_forced_apertures_on_real_peaks_equal_photutils(hsc):
    path, image, _, variance, _, _, wcs = hsc
    tile = colphot.read_tile(path, psf=_gaussian_psf())
    # the brightest local maxima, found with numpy alone
    core = image[1:-1, 1:-1]
    peak = np.ones_like(core, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx or dy:
                peak &= core > image[1 + dy:image.shape[0] - 1 + dy,
                                     1 + dx:image.shape[1] - 1 + dx]
    snr = core / np.sqrt(variance[1:-1, 1:-1])
    py, px = np.nonzero(peak & (snr > 10))
    assert px.size >= 5
    px, py = px + 1.0, py + 1.0
    sky = wcs.pixel_to_world(px, py).icrs
    refs = pl.DataFrame({"id": np.arange(px.size, dtype=np.int64),
                         "coord_ra": sky.ra.deg, "coord_dec": sky.dec.deg})
    # photutils' exact overlap is colphot's "exact" method (LSST's default is sinc)
    df = colphot.forced_photometry(tile, refs, ForcedPhotConfig(aperture_method="exact"))
    x = df["centroid_x"].to_numpy() - 100
    y = df["centroid_y"].to_numpy() - 100
    np.testing.assert_allclose(x, px, atol=1e-6)
    error = np.sqrt(variance.astype(np.float64))
    for r in ForcedPhotConfig().aperture_radii:
        name = f"ap{aperture_name(r)}Flux"
        ok = ~df[f"{name}_flag_apertureTruncated"].to_numpy()
        if not ok.any():
            continue
        flux, err = CircularAperture(np.column_stack([x[ok], y[ok]]), r).do_photometry(
            image, error=error, method="exact")
        np.testing.assert_allclose(df[name].to_numpy()[ok], flux, rtol=1e-9)
        np.testing.assert_allclose(df[f"{name}Err"].to_numpy()[ok], err, rtol=1e-9)
    # the peaks are real sources: positive PSF fluxes with S/N well above 10
    snr_psf = (df["psfFlux"] / df["psfFluxErr"]).to_numpy()
    assert np.all(snr_psf > 10)
