"""PSF flux of isolated stars rendered by GalSim: unbiased with unit pulls on sharp PSFs.

Truth is independent of colphot: GalSim draws every star (pixel-convolved, at a random
sub-pixel phase) and the PSF image the same way, centred on a pixel. Each configuration is a
pixel-convolved Moffat (beta 3.5, truncated at 4 FWHM so that the stamp holds all the flux) or a
double Gaussian, at FWHM 2.5, 3.5 and 5 px. Stars sit on a grid, one per cell, with S/N drawn
log-uniformly in three bins (20-100, 100-500, 500-5000). The noise is Gaussian with the exact
variance (sky plus the star's own shot noise), which is also the tile's variance plane.

The photometry is the user's path, ``forced_photometry`` on a ``Tile`` with a reference
catalog. Each noise field is used twice, added and subtracted ("antithetic" pairs): the PSF flux
is linear in the pixels, so the pairs' fluxes straddle the noise-free flux symmetrically and the
median of flux/true shows the model's bias to ~1e-5 even in the 20-100 bin, where 10^4
independent stars would leave a statistical error of 3e-4. The noise terms of a pair's pulls
have one magnitude, so the pull sigma over a bin's 12,000 values has the statistical error of
its 6,000 independent noise draws, 0.009.
"""

from __future__ import annotations

import math
import zlib

import galsim
import numpy as np
import polars as pl
import pytest

import colphot
from colphot.config import ForcedPhotConfig
from colphot.tile.psf import PsfModel
from colphot.tile.tile import Tile

BINS = ((20.0, 100.0), (100.0, 500.0), (500.0, 5000.0))
SKY_VARIANCE = 100.0  # (image units)^2 per pixel
GAIN = 1.0  # e- per image unit: the star's shot-noise variance is its model value / GAIN
N_PHASES = 200  # distinct GalSim stamps per PSF (random sub-pixel phases)
N_STARS = 1500  # stars per S/N bin and noise field
N_FIELDS = 4  # independent noise fields, each used with + and - sign

CONFIG = ForcedPhotConfig(plugins=("psf_flux",))


def galsim_psf(kind: str, fwhm: float) -> galsim.GSObject:
    if kind == "moffat":
        return galsim.Moffat(beta=3.5, fwhm=fwhm, trunc=4.0 * fwhm)
    core = galsim.Add([galsim.Gaussian(sigma=1.0, flux=0.9), galsim.Gaussian(sigma=2.0, flux=0.1)])
    return core.dilate(fwhm / core.calculateFWHM())


def draw(psf: galsim.GSObject, k: int, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """``psf`` integrated over the pixels of a ``k`` x ``k`` stamp, centred ``(dx, dy)`` from
    its middle pixel: real-space convolution with the pixel (GalSim's FFT drawing of the double
    Gaussian is off by 1e-4 of the peak)."""
    pixelised = galsim.Convolve(psf, galsim.Pixel(1.0), real_space=True)
    return pixelised.drawImage(nx=k, ny=k, scale=1.0, offset=(dx, dy), method="no_pixel",
                               dtype=np.float64).array


def stamp_size(fwhm: float) -> int:
    return 2 * math.ceil(4.0 * fwhm + 1.5) + 1


def snr_flux(snr: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Flux at which a PSF fit with model ``p`` has S/N ``snr``: ``err^2 = (sum P^2 sky +
    F sum P^3 / gain) / (sum P^2)^2``, solved for ``F = snr err``."""
    s2, s3 = np.sum(p * p), np.sum(p**3)
    a = SKY_VARIANCE / s2
    b = s3 / (GAIN * s2 * s2)
    return 0.5 * (snr**2 * b + np.sqrt(snr**4 * b * b + 4.0 * snr**2 * a))


@pytest.fixture(scope="module", params=[(kind, fwhm) for kind in ("moffat", "double_gaussian")
                                        for fwhm in (2.5, 3.5, 5.0)],
                ids=lambda p: f"{p[0]}-fwhm{p[1]}")
def measured(request, sim):
    kind, fwhm = request.param
    rng = np.random.default_rng(zlib.crc32(f"{kind} {fwhm}".encode()))
    psf = galsim_psf(kind, fwhm)
    k = stamp_size(fwhm)
    psf_image = draw(psf, k)
    # every star's light is inside its stamp, so the true PSF flux is the total flux
    assert psf_image.sum() > 1.0 - 2e-5
    phases = rng.uniform(-0.5, 0.5, (N_PHASES, 2))
    stamps = np.stack([draw(psf, k, dx, dy) for dx, dy in phases])

    cell = k + 2
    side = math.ceil(math.sqrt(N_STARS))
    shape = (side * cell, side * cell)
    gy, gx = np.divmod(np.arange(N_STARS), side)
    c = cell // 2
    wcs = sim.tan_wcs(shape)
    rows = []
    for lo, hi in BINS:
        which = rng.integers(0, N_PHASES, N_STARS)
        flux = snr_flux(np.exp(rng.uniform(np.log(lo), np.log(hi), N_STARS)),
                        psf_image / psf_image.sum())
        model = np.zeros(shape)
        for s in range(N_STARS):
            y0, x0 = gy[s] * cell + 1, gx[s] * cell + 1
            model[y0:y0 + k, x0:x0 + k] = flux[s] * stamps[which[s]]
        variance = SKY_VARIANCE + model / GAIN
        x = gx * cell + c + phases[which, 0]
        y = gy * cell + c + phases[which, 1]
        refs = sim.refs_at(wcs, x, y)
        for _ in range(N_FIELDS):
            noise = rng.standard_normal(shape) * np.sqrt(variance)
            for sign in (1.0, -1.0):
                tile = Tile(image=model + sign * noise, mask=None, variance=variance, wcs=wcs,
                            psf=PsfModel.constant(psf_image), band="r", flux_scale=1.0)
                df = colphot.forced_photometry(tile, refs, CONFIG)
                assert np.array_equal(df["objectId"].to_numpy(), refs["id"].to_numpy())
                assert not df["psfFlux_flag"].any()
                rows.append(pl.DataFrame({
                    "bin": np.full(N_STARS, f"{lo:g}-{hi:g}"),
                    "ratio": df["psfFlux"].to_numpy() / flux,
                    "pull": (df["psfFlux"].to_numpy() - flux) / df["psfFluxErr"].to_numpy(),
                    "snr": flux / df["psfFluxErr"].to_numpy(),
                }))
    return pl.concat(rows)


def test_psf_flux_unbiased_with_unit_pulls_in_every_snr_bin(measured):
    for (lo, hi), part in zip(BINS, measured.partition_by("bin", maintain_order=True),
                              strict=True):
        snr = part["snr"].to_numpy()
        # the bins hold what they say (S/N from the fit's own error)
        assert snr.min() > 0.99 * lo and snr.max() < 1.01 * hi
        bias = float(np.median(part["ratio"].to_numpy())) - 1.0
        assert abs(bias) <= 3e-4, f"S/N {lo:g}-{hi:g}: median flux/true - 1 = {bias:+.5f}"
        sigma = float(np.std(part["pull"].to_numpy(), ddof=1))
        assert 0.97 <= sigma <= 1.03, f"S/N {lo:g}-{hi:g}: pull sigma {sigma:.3f}"
