"""Reference shapes as Rubin's Object table has them: adaptive moments in pixels² of the
reference (tract) WCS, transformed to each tile's pixels (LSST's refWcs / TransformedShape).

Truth is GalSim: elliptical Gaussian galaxies convolved with a Gaussian PSF, drawn on a tile
whose WCS differs from the reference WCS in scale and orientation; the reference shapes are
GalSim's ``FindAdaptiveMom`` of each galaxy drawn in the reference frame. For a Gaussian
profile a Gaussian weight with the observed moments returns the total flux, so
``gaussianFlux`` must equal the GalSim flux.
"""

from __future__ import annotations

import math

import galsim
import numpy as np
import polars as pl
import pytest
from astropy.wcs import WCS

import colphot
from colphot.config import ForcedPhotConfig
from colphot.references.select import ref_moments_to_tile
from colphot.tile.psf import PsfModel
from colphot.tile.tile import Tile

RA0, DEC0 = 150.0, 2.0
REF_SCALE = 0.2  # arcsec per reference pixel (Rubin's tract)
TILE_SCALE = 0.168  # arcsec per tile pixel (HSC)
TILE_ROTATION = 30.0  # degrees between the frames


def _wcs(scale: float, rotation_deg: float, shape: tuple[int, int]) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [RA0, DEC0]
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    t = math.radians(rotation_deg)
    s = scale / 3600.0
    w.wcs.cd = [[-s * math.cos(t), s * math.sin(t)], [s * math.sin(t), s * math.cos(t)]]
    return w


def _galsim_wcs(w: WCS) -> galsim.JacobianWCS:
    """GalSim's local WCS (arcsec per pixel, (u, v) = (-RA offset... ) at the tangent point)."""
    cd = w.wcs.cd * 3600.0
    # astropy's CD maps pixel offsets to (RA, Dec) intermediate degrees; GalSim's u is west
    # to east as +RA, v north: u = cd[0] . d, v = cd[1] . d with u increasing eastward
    return galsim.JacobianWCS(cd[0, 0], cd[0, 1], cd[1, 0], cd[1, 1])


@pytest.fixture(scope="module")
def survey():
    rng = np.random.default_rng(2024)
    psf = galsim.Gaussian(fwhm=0.7)  # arcsec
    shape = (400, 400)
    ref_wcs = _wcs(REF_SCALE, 0.0, shape)
    tile_wcs = _wcs(TILE_SCALE, TILE_ROTATION, shape)
    gtile = _galsim_wcs(tile_wcs)
    gref = _galsim_wcs(ref_wcs)
    n = 36
    gx, gy = np.meshgrid(np.arange(6), np.arange(6))
    # positions on the tile: a grid with random sub-pixel phases, 55 px apart
    tx = 60.0 + 55.0 * gx.ravel() + rng.uniform(-0.5, 0.5, n)
    ty = 60.0 + 55.0 * gy.ravel() + rng.uniform(-0.5, 0.5, n)
    ra, dec = tile_wcs.pixel_to_world_values(tx, ty)
    flux = rng.uniform(2e4, 1e5, n)
    hlr = rng.uniform(0.25, 0.8, n)  # arcsec
    e1 = rng.uniform(-0.3, 0.3, n)
    e2 = rng.uniform(-0.3, 0.3, n)
    image = galsim.ImageD(shape[1], shape[0], wcs=gtile)
    ref_moments = np.empty((n, 3))
    for i in range(n):
        gal = galsim.Gaussian(half_light_radius=hlr[i], flux=flux[i]).shear(e1=e1[i], e2=e2[i])
        obs = galsim.Convolve(gal, psf)
        # on the tile: the stamp centred at the true position (GalSim's 1-based pixels)
        ix, iy = int(round(tx[i])), int(round(ty[i]))
        stamp = obs.drawImage(nx=61, ny=61, wcs=gtile, offset=(tx[i] - ix, ty[i] - iy),
                              dtype=np.float64)
        stamp.setCenter(ix + 1, iy + 1)
        b = stamp.bounds & image.bounds
        image[b] += stamp[b]
        # the reference measurement: adaptive moments in reference pixels
        ref_stamp = obs.drawImage(nx=81, ny=81, wcs=gref, dtype=np.float64)
        hsm = galsim.hsm.FindAdaptiveMom(ref_stamp)
        sigma = hsm.moments_sigma
        g = hsm.observed_shape
        # moments from sigma and the (distortion-free) shear: M = sigma^2 (1 - g^2)^-1 [...]
        e = galsim.Shear(g1=g.g1, g2=g.g2)
        m = e.getMatrix()
        ref_moments[i] = (sigma**2 * (m @ m)[0, 0], sigma**2 * (m @ m)[1, 1],
                          sigma**2 * (m @ m)[0, 1])
    k = 41
    psf_image = galsim.Convolve(psf, galsim.Pixel(TILE_SCALE)).drawImage(
        nx=k, ny=k, scale=TILE_SCALE, method="no_pixel", dtype=np.float64).array
    tile = Tile(image=image.array.copy(), mask=None, variance=np.full(shape, 1e-6),
                wcs=tile_wcs, psf=PsfModel.constant(psf_image))
    refs = pl.DataFrame({"id": np.arange(1, n + 1), "coord_ra": ra, "coord_dec": dec,
                         "shape_xx": ref_moments[:, 0], "shape_yy": ref_moments[:, 1],
                         "shape_xy": ref_moments[:, 2]})
    return {"tile": tile, "refs": refs, "flux": flux, "ref_wcs": ref_wcs,
            "tile_wcs": tile_wcs}


CONFIG = ForcedPhotConfig(plugins=("gaussian_flux",))


def test_rubin_style_pixel_shapes_give_galsim_flux(survey):
    df = colphot.forced_photometry(survey["tile"], survey["refs"], CONFIG,
                                   ref_wcs=survey["ref_wcs"])
    ratio = df["gaussianFlux"].to_numpy() / survey["flux"]
    assert not df["gaussianFlux_flag"].any()
    assert np.all(np.abs(ratio - 1) < 0.01), ratio


def test_shapes_in_the_wrong_frame_are_visibly_wrong(survey):
    """Without ref_wcs the shapes are taken as tile pixels²: off by the scale ratio."""
    df = colphot.forced_photometry(survey["tile"], survey["refs"], CONFIG)
    ratio = df["gaussianFlux"].to_numpy() / survey["flux"]
    assert np.median(ratio) > 1.05 or np.median(ratio) < 0.95


def test_moment_transform_scales_and_rotates(survey):
    """A round moment of s² reference px² is (s REF_SCALE / TILE_SCALE)² tile px², whatever
    the rotation; an elongated one turns with the frame."""
    ra, dec = np.array([RA0]), np.array([DEC0])
    ixx, iyy, ixy = ref_moments_to_tile(survey["ref_wcs"], survey["tile_wcs"], ra, dec,
                                        np.array([4.0]), np.array([4.0]), np.array([0.0]))
    f = (REF_SCALE / TILE_SCALE) ** 2
    assert ixx[0] == pytest.approx(4.0 * f, rel=1e-6)
    assert iyy[0] == pytest.approx(4.0 * f, rel=1e-6)
    assert ixy[0] == pytest.approx(0.0, abs=1e-6)
    ixx, iyy, ixy = ref_moments_to_tile(survey["ref_wcs"], survey["tile_wcs"], ra, dec,
                                        np.array([9.0]), np.array([1.0]), np.array([0.0]))
    # trace and determinant are invariant up to the scale; the position angle turns
    assert ixx[0] + iyy[0] == pytest.approx(10.0 * f, rel=1e-6)
    assert ixx[0] * iyy[0] - ixy[0] ** 2 == pytest.approx(9.0 * f * f, rel=1e-6)
    angle = 0.5 * math.degrees(math.atan2(2 * ixy[0], ixx[0] - iyy[0]))
    assert abs(abs(angle) - TILE_ROTATION) < 1e-3
