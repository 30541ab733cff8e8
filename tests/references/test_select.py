"""Placing references on a tile: world -> pixel in the WCS's own frame, shapes, footprints."""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
import polars as pl
import pytest
from astropy.coordinates import FK5, Galactic, SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from colphot.exceptions import ColphotWarning
from colphot.references.select import (
    on_tile,
    sky_moments_to_pixel,
    sky_to_pixel,
    tile_footprint,
)

SHAPE = (200, 300)


def _header_wcs(**cards):
    header = fits.Header()
    header["NAXIS"] = 2
    header["NAXIS1"] = SHAPE[1]
    header["NAXIS2"] = SHAPE[0]
    for k, v in cards.items():
        header[k] = v
    return WCS(header)


def _sky_sample(wcs, n=50, seed=0):
    """ICRS positions spread over (and a little beyond) the tile."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-20, SHAPE[1] + 20, n)
    y = rng.uniform(-20, SHAPE[0] + 20, n)
    sky = wcs.pixel_to_world(x, y).icrs
    return sky.ra.deg, sky.dec.deg


def _sip_wcs():
    return _header_wcs(
        CTYPE1="RA---TAN-SIP", CTYPE2="DEC--TAN-SIP", CRVAL1=151.3, CRVAL2=1.62, CRPIX1=120.0,
        CRPIX2=90.0, CD1_1=-4.66e-5, CD1_2=1.6e-7, CD2_1=1.1e-7, CD2_2=4.66e-5, RADESYS="ICRS",
        A_ORDER=2, B_ORDER=2, A_2_0=5.2e-6, A_1_1=1.5e-5, A_0_2=2.0e-6, B_2_0=1.1e-5,
        B_1_1=3.3e-6, B_0_2=2.1e-5,
    )


WCS_CASES = {
    "tan_icrs": lambda sim: sim.tan_wcs(SHAPE, ra0=45.0, dec0=30.0),
    "tan_sip": lambda sim: _sip_wcs(),
    "tan_fk5_j2000": lambda sim: _header_wcs(
        CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=200.0, CRVAL2=-40.0, CRPIX1=150.0,
        CRPIX2=100.0, CDELT1=-1e-4, CDELT2=1e-4, RADESYS="FK5", EQUINOX=2000.0),
    "tan_fk5_j1975": lambda sim: _header_wcs(
        CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=200.0, CRVAL2=-40.0, CRPIX1=150.0,
        CRPIX2=100.0, CDELT1=-1e-4, CDELT2=1e-4, RADESYS="FK5", EQUINOX=1975.0),
    "galactic_tan": lambda sim: _header_wcs(
        CTYPE1="GLON-TAN", CTYPE2="GLAT-TAN", CRVAL1=18.0, CRVAL2=0.5, CRPIX1=150.0,
        CRPIX2=100.0, CDELT1=-3.3e-4, CDELT2=3.3e-4),
    "galactic_car": lambda sim: _header_wcs(
        CTYPE1="GLON-CAR", CTYPE2="GLAT-CAR", CRVAL1=18.0, CRVAL2=0.0, CRPIX1=1161.5,
        CRPIX2=-388.5, CD1_1=-3.3333333e-4, CD2_2=3.3333333e-4),
}
FRAMES = {
    "tan_icrs": "icrs", "tan_sip": "icrs", "tan_fk5_j2000": FK5(equinox="J2000"),
    "tan_fk5_j1975": FK5(equinox="J1975"), "galactic_tan": Galactic(), "galactic_car": Galactic(),
}


@pytest.mark.parametrize("case", sorted(WCS_CASES))
def test_sky_to_pixel_matches_explicit_frame_transform(sim, case):
    """ICRS -> the WCS's native frame with astropy.coordinates, then all_world2pix (0-based)."""
    wcs = WCS_CASES[case](sim)
    ra, dec = _sky_sample(wcs)
    native = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs").transform_to(FRAMES[case])
    lon, lat = native.spherical.lon.deg, native.spherical.lat.deg
    ex, ey = wcs.all_world2pix(lon, lat, 0, tolerance=1e-12, maxiter=100)
    x, y = sky_to_pixel(wcs, ra, dec)
    np.testing.assert_allclose(x, ex, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y, ey, rtol=0, atol=1e-6)
    # and SkyCoord.to_pixel agrees
    tx, ty = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs").to_pixel(wcs)
    np.testing.assert_allclose(x, tx, rtol=0, atol=1e-6)


def test_frame_matters(sim):
    """Reading an FK5 J1975 tile as if it were ICRS would move sources by arcminutes."""
    wcs = WCS_CASES["tan_fk5_j1975"](sim)
    ra, dec = _sky_sample(wcs, n=5)
    x, y = sky_to_pixel(wcs, ra, dec)
    naive_x, naive_y = wcs.all_world2pix(ra, dec, 0)
    assert np.all(np.hypot(x - naive_x, y - naive_y) > 100)


def test_sky_to_pixel_on_hsc_tan_sip_header(shared_file):
    path = shared_file("lsst/HSC-0908120-056-small.fits")
    with fits.open(path) as hdul:
        header = hdul[1].header
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # astropy's FITSFixedWarning on the afw header
        wcs = WCS(header, relax=True).celestial
    assert wcs.sip is not None and header["RADESYS"].strip() == "FK5"
    yy, xx = np.mgrid[0:200:13, 0:200:17]
    sky = wcs.pixel_to_world(xx.ravel() + 0.3, yy.ravel() - 0.2).icrs
    fk5 = sky.transform_to(FK5(equinox="J2000"))
    ex, ey = wcs.all_world2pix(fk5.ra.deg, fk5.dec.deg, 0, tolerance=1e-12, maxiter=100)
    x, y = sky_to_pixel(wcs, sky.ra.deg, sky.dec.deg)
    np.testing.assert_allclose(x, ex, atol=1e-6)
    np.testing.assert_allclose(y, ey, atol=1e-6)
    np.testing.assert_allclose(x, xx.ravel() + 0.3, atol=1e-6)


def test_on_tile_keeps_pixels_of_the_tile(sim):
    wcs = sim.tan_wcs(SHAPE)
    ny, nx = SHAPE
    px = np.array([-0.4999, -0.5001, nx - 0.4999, nx - 0.5001, 10.0, 150.0, 20.0, 1e4])
    py = np.array([10.0, 10.0, 10.0, 10.0, -0.4999, ny - 0.5001, ny - 0.4999, 5.0])
    ra, dec = wcs.pixel_to_world_values(px, py)
    refs = pl.DataFrame({"id": np.arange(px.size, dtype=np.int64) + 100,
                         "coord_ra": ra, "coord_dec": dec})
    kept, x, y = on_tile(refs, wcs, SHAPE)
    inside = (px >= -0.5) & (px < nx - 0.5) & (py >= -0.5) & (py < ny - 0.5)
    # 1e-4 px either side of the pixel grid's border [-0.5, n - 0.5)
    assert kept["id"].to_list() == list(np.arange(px.size)[inside] + 100)
    np.testing.assert_allclose(x, px[inside], atol=1e-7)
    np.testing.assert_allclose(y, py[inside], atol=1e-7)


def test_on_tile_skips_nonfinite_with_warning(sim):
    wcs = sim.tan_wcs(SHAPE)
    ra, dec = wcs.pixel_to_world_values(np.array([10.0, 20.0, 30.0, 40.0]),
                                        np.array([10.0, 20.0, 30.0, 40.0]))
    ra = ra.copy()
    dec = dec.copy()
    ra[1] = np.nan
    dec[2] = np.inf
    dec[3] = 95.0
    refs = pl.DataFrame({"id": [11, 22, 33, 44], "coord_ra": ra, "coord_dec": dec})
    with pytest.warns(ColphotWarning, match=r"cat\.parquet: 3 reference\(s\).*\[22, 33, 44\]"):
        kept, x, _ = on_tile(refs, wcs, SHAPE, source="cat.parquet")
    assert kept["id"].to_list() == [11]
    assert x == pytest.approx([10.0])


def test_on_tile_empty(sim):
    refs = pl.DataFrame({"id": [], "coord_ra": [], "coord_dec": []},
                        schema={"id": pl.Int64, "coord_ra": pl.Float64, "coord_dec": pl.Float64})
    kept, x, y = on_tile(refs, sim.tan_wcs(SHAPE), SHAPE)
    assert kept.height == 0 and x.size == 0 and y.size == 0


# ------------------------------------------------------------------------------------------
# shapes: Q_pix = J^-1 Q_sky J^-T with J the pixel -> (east, north) arcsec Jacobian


def _cd(scale_arcsec, theta_deg, flip):
    """CD matrix: pixel offsets -> (xi, eta) degrees, xi toward east (increasing RA)."""
    t = np.radians(theta_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    parity = np.diag([1.0, 1.0]) if flip else np.diag([-1.0, 1.0])
    return scale_arcsec / 3600.0 * rot @ parity


@pytest.mark.parametrize("theta", [0.0, 30.0, 90.0, 137.0])
@pytest.mark.parametrize("flip", [False, True])
def test_round_shape_stays_round(sim, theta, flip):
    wcs = sim.tan_wcs(SHAPE, cd=_cd(0.2, theta, flip), ra0=80.0, dec0=-30.0)
    x = np.array([150.0, 10.0])
    y = np.array([100.0, 180.0])
    ixx, iyy, ixy = sky_moments_to_pixel(wcs, x, y, np.full(2, 0.16), np.full(2, 0.16),
                                         np.zeros(2))
    np.testing.assert_allclose(ixx, 0.16 / 0.2**2, rtol=1e-4)
    np.testing.assert_allclose(iyy, 0.16 / 0.2**2, rtol=1e-4)
    np.testing.assert_allclose(ixy, 0.0, atol=1e-4)


@pytest.mark.parametrize(
    "theta, flip, axis",
    [(0.0, False, "x"),      # north up, east left: east is -x
     (90.0, False, "y"),     # rotated by 90 degrees: east is along -y
     (0.0, True, "x"),       # east right (parity flip): east is +x
     (90.0, True, "y")],
)
def test_east_elongated_shape_maps_to_expected_axis(sim, theta, flip, axis):
    wcs = sim.tan_wcs(SHAPE, cd=_cd(0.5, theta, flip), ra0=10.0, dec0=45.0)
    ixx, iyy, ixy = sky_moments_to_pixel(wcs, np.array([150.0]), np.array([100.0]),
                                         np.array([1.0]), np.array([0.25]), np.array([0.0]))
    major, minor = (ixx, iyy) if axis == "x" else (iyy, ixx)
    assert major[0] == pytest.approx(1.0 / 0.25, rel=1e-4)
    assert minor[0] == pytest.approx(0.25 / 0.25, rel=1e-4)
    assert ixy[0] == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("theta", [25.0, -70.0])
@pytest.mark.parametrize("flip", [False, True])
def test_general_shape_transform_near_reference_pixel(sim, theta, flip):
    cd = _cd(0.3, theta, flip)
    wcs = sim.tan_wcs(SHAPE, cd=cd, ra0=150.0, dec0=2.0)
    q_sky = np.array([[0.5, 0.2], [0.2, 0.3]])
    j = cd * 3600.0
    jinv = np.linalg.inv(j)
    q_pix = jinv @ q_sky @ jinv.T
    x = np.array([(SHAPE[1] - 1) / 2.0])
    y = np.array([(SHAPE[0] - 1) / 2.0])
    ixx, iyy, ixy = sky_moments_to_pixel(wcs, x, y, [0.5], [0.3], [0.2])
    np.testing.assert_allclose([ixx[0], iyy[0], ixy[0]], [q_pix[0, 0], q_pix[1, 1],
                                                          q_pix[0, 1]], rtol=1e-6, atol=1e-9)
    # an east-north elongated shape: the sign of ixy follows the parity and rotation
    assert np.sign(ixy[0]) == np.sign(q_pix[0, 1])


def test_shape_transform_in_galactic_wcs(sim):
    """On a Galactic tile, 'east/north' are still ICRS directions: rotate by the angle between
    the two frames' north directions at the source."""
    wcs = WCS_CASES["galactic_tan"](sim)
    x, y = np.array([150.0]), np.array([100.0])
    c = wcs.pixel_to_world(x, y)
    # position angle (east of ICRS north) of Galactic north at the source
    gal_north = SkyCoord(l=c.galactic.l, b=c.galactic.b + 1 * u.arcsec, frame="galactic")
    pa = c.icrs.position_angle(gal_north.icrs).rad[0]
    # a shape elongated along Galactic north: in ICRS (east, north) its axis is (sin pa, cos pa)
    v = np.array([np.sin(pa), np.cos(pa)])
    q_sky = 1.0 * np.outer(v, v) + 0.2 * (np.eye(2) - np.outer(v, v))
    ixx, iyy, ixy = sky_moments_to_pixel(wcs, x, y, [q_sky[0, 0]], [q_sky[1, 1]],
                                         [q_sky[0, 1]])
    scale = 3.3e-4 * 3600.0
    # Galactic north is +y on this WCS (CDELT2 > 0, no rotation)
    assert iyy[0] == pytest.approx(1.0 / scale**2, rel=1e-3)
    assert ixx[0] == pytest.approx(0.2 / scale**2, rel=1e-3)
    assert abs(ixy[0]) < 1e-3 * iyy[0]


# ------------------------------------------------------------------------------------------
# footprints


def test_footprint_contains_the_tile(sim):
    """Every position on the tile's pixels, up to the outer pixel edges, is in the box."""
    wcs = sim.tan_wcs(SHAPE, ra0=123.0, dec0=-60.0)
    ra_min, ra_max, dec_min, dec_max = tile_footprint(wcs, SHAPE)
    ra, dec = _sky_sample(wcs, n=500)
    ny, nx = SHAPE
    corners = wcs.pixel_to_world_values(np.array([-0.49, nx - 0.51, -0.49, nx - 0.51]),
                                        np.array([-0.49, -0.49, ny - 0.51, ny - 0.51]))
    ra = np.concatenate([ra, corners[0]])
    dec = np.concatenate([dec, corners[1]])
    x, y = sky_to_pixel(wcs, ra, dec)
    on = (x >= -0.5) & (x < SHAPE[1] - 0.5) & (y >= -0.5) & (y < SHAPE[0] - 0.5)
    assert on.sum() > 100
    assert np.all((ra[on] >= ra_min) & (ra[on] <= ra_max))
    assert np.all((dec[on] >= dec_min) & (dec[on] <= dec_max))
    assert ra_min < ra_max


def test_footprint_wraps_through_ra_zero(sim):
    wcs = sim.tan_wcs(SHAPE, ra0=0.001, dec0=10.0, scale_arcsec=1.0)
    ra_min, ra_max, dec_min, dec_max = tile_footprint(wcs, SHAPE, margin=0.01)
    assert ra_min > ra_max                     # wraps
    assert 359.9 < ra_min < 360.0 and 0.0 < ra_max < 0.1
    assert dec_min < 10.0 < dec_max
