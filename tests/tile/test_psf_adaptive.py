"""The PSF sigma that sizes the local-background annulus: adaptive moments, as LSST.

Truth is GalSim's ``hsm.FindAdaptiveMom`` on the same PSF images (its ``moments_sigma`` is the
determinant radius of the adaptive moments, what LSST's ``psf.computeShape().
getDeterminantRadius()`` gives LocalBackground).
"""

from __future__ import annotations

import galsim
import numpy as np
import polars as pl
import pytest
from astropy.wcs import WCS

import colphot
from colphot.config import ForcedPhotConfig
from colphot.measure.adaptive_moments import measure_adaptive_moments
from colphot.tile.psf import PsfModel, psf_adaptive_sigma, psf_moments_sigma
from colphot.tile.tile import Tile


def _psf(kind: str, fwhm: float) -> galsim.GSObject:
    if kind == "moffat2.5":
        return galsim.Moffat(beta=2.5, fwhm=fwhm)
    if kind == "moffat3.5":
        return galsim.Moffat(beta=3.5, fwhm=fwhm)
    if kind == "double_gaussian":
        core = galsim.Add([galsim.Gaussian(sigma=1.0, flux=0.9),
                           galsim.Gaussian(sigma=2.0, flux=0.1)])
        return core.dilate(fwhm / core.calculateFWHM())
    if kind == "elliptical":
        return galsim.Moffat(beta=3.0, fwhm=fwhm).shear(e1=0.12, e2=-0.07)
    return galsim.Gaussian(fwhm=fwhm)


def _draw(psf: galsim.GSObject, k: int) -> galsim.Image:
    return psf.drawImage(nx=k, ny=k, scale=1.0, dtype=np.float64)


KINDS = ("gaussian", "moffat2.5", "moffat3.5", "double_gaussian", "elliptical")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fwhm", [2.5, 3.5, 5.0])
@pytest.mark.parametrize("k", [25, 41, 61])
def test_psf_sigma_equals_galsim_adaptive_moments(kind, fwhm, k):
    image = _draw(_psf(kind, fwhm), k)
    truth = galsim.hsm.FindAdaptiveMom(image).moments_sigma
    got = psf_adaptive_sigma(image.array[None])[0]
    assert got == pytest.approx(truth, rel=1e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_adaptive_moments_match_galsim_shape(kind):
    """The moments themselves, not only their determinant: GalSim's observed shape (e1, e2 of
    the adaptive moments) and sigma."""
    image = _draw(_psf(kind, 3.5), 41)
    hsm = galsim.hsm.FindAdaptiveMom(image)
    r = measure_adaptive_moments(image.array)
    ixx, iyy, ixy = r.ixx[0], r.iyy[0], r.ixy[0]
    assert not r.flag[0]
    e1 = (ixx - iyy) / (ixx + iyy)
    e2 = 2 * ixy / (ixx + iyy)
    assert e1 == pytest.approx(hsm.observed_shape.e1, abs=2e-4)
    assert e2 == pytest.approx(hsm.observed_shape.e2, abs=2e-4)


def test_adaptive_sigma_is_stamp_independent_where_unweighted_is_not():
    image = {k: _draw(_psf("moffat2.5", 3.5), k).array for k in (25, 61)}
    adaptive = [psf_adaptive_sigma(image[k][None])[0] for k in (25, 61)]
    unweighted = [psf_moments_sigma(image[k][None])[0] for k in (25, 61)]
    assert adaptive[0] == pytest.approx(adaptive[1], rel=1e-4)
    assert unweighted[1] > 1.1 * unweighted[0]  # the wings reach farther on the bigger stamp


def test_local_background_annulus_uses_adaptive_sigma():
    """Through forced_photometry: a background level only between 7 and 15 adaptive sigmas is
    what localBackground returns; the unweighted sigma (18 % larger for this Moffat) would put
    the annulus partly outside it."""
    k = 41
    psf_image = _draw(_psf("moffat2.5", 3.5), k).array
    sigma = psf_adaptive_sigma(psf_image[None])[0]
    assert psf_moments_sigma(psf_image[None])[0] > 1.15 * sigma
    shape = (201, 201)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    r = np.hypot(xx - 100.0, yy - 100.0)
    image = np.where((r > 7 * sigma) & (r < 15 * sigma), 5.0, -50.0)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [101.0, 101.0]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    tile = Tile(image=image, mask=None, variance=np.ones(shape), wcs=wcs,
                psf=PsfModel.constant(psf_image))
    refs = pl.DataFrame({"id": [1], "coord_ra": [150.0], "coord_dec": [2.0]})
    df = colphot.forced_photometry(tile, refs, ForcedPhotConfig(plugins=("local_background",)))
    assert df["localBackground_instFlux"][0] == pytest.approx(5.0)
    assert not df["localBackground_flag"][0]
