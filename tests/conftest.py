"""Shared fixtures: the real data folder and a small simulated tile with known truth.

The simulation is self-contained (no ``colphot.sim``) so that every truth used by the tests is
written out here: a double-Gaussian PSF sampled at pixel centres, point sources rendered with the
*same* analytic profile evaluated at pixel centres (so the sampled PSF model is exact for a source
on a pixel centre), isolated on a grid, and Gaussian noise of known variance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from astropy.wcs import WCS

from colphot.tile.psf import PsfModel
from colphot.tile.tile import Tile

#: LSST-style mask planes used by the simulated tiles.
MASK_PLANES: dict[str, int] = {
    "BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "EDGE": 4, "DETECTED": 5, "SUSPECT": 7,
    "NO_DATA": 8,
}


def repo_root() -> Path:
    """The folder holding ``pyproject.toml`` above this file."""
    here = Path(__file__).resolve().parent
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file():
            return candidate
    raise RuntimeError(f"no pyproject.toml above {here}")


# --------------------------------------------------------------------------------------------
# real data


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` relative to the repository root; skips when the folder is absent."""
    path = (repo_root() / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        pytest.skip(f"shared data folder not found: {path}")
    return path


@pytest.fixture(scope="session")
def shared_file(shared_data):
    """``shared_file("sep/image.fits")`` -> Path; skips naming the file when it is missing."""

    def get(relative: str) -> Path:
        path = shared_data / relative
        if not path.is_file():
            pytest.skip(f"shared data file not found: {path}")
        return path

    return get


# --------------------------------------------------------------------------------------------
# analytic profiles


def gaussian2d(dx, dy, ixx, iyy, ixy=0.0):
    """Unit-flux elliptical Gaussian of second moments ``(ixx, iyy, ixy)`` at offsets (dx, dy)."""
    det = ixx * iyy - ixy * ixy
    q = (iyy * dx * dx + ixx * dy * dy - 2.0 * ixy * dx * dy) / det
    return np.exp(-0.5 * q) / (2.0 * np.pi * np.sqrt(det))


def double_gaussian(dx, dy, sigma1=1.5, sigma2=3.0, frac2=0.1):
    """Unit-flux double Gaussian PSF (LSST's default shape: sigma2 = 2 sigma1, 10 % wing)."""
    return (1.0 - frac2) * gaussian2d(dx, dy, sigma1**2, sigma1**2) + frac2 * gaussian2d(
        dx, dy, sigma2**2, sigma2**2
    )


def psf_image(size: int = 41, profile=double_gaussian, **kwargs) -> np.ndarray:
    """``profile`` sampled at the pixel centres of a ``size`` x ``size`` stamp centred on its
    middle pixel (not normalised: PsfModel normalises)."""
    c = size // 2
    yy, xx = np.mgrid[0:size, 0:size] - c
    return profile(xx.astype(float), yy.astype(float), **kwargs)


def render(shape, x, y, flux, *, profile=double_gaussian, half=20, **kwargs) -> np.ndarray:
    """Sum of point sources: ``flux * profile(pixel centre - position)`` over a +-half box."""
    image = np.zeros(shape, dtype=np.float64)
    ny, nx = shape
    for xs, ys, fs in zip(np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(flux), strict=True):
        xi, yi = int(np.floor(xs + 0.5)), int(np.floor(ys + 0.5))
        i0, i1 = max(yi - half, 0), min(yi + half + 1, ny)
        j0, j1 = max(xi - half, 0), min(xi + half + 1, nx)
        if i0 >= i1 or j0 >= j1:
            continue
        yy, xx = np.mgrid[i0:i1, j0:j1]
        image[i0:i1, j0:j1] += fs * profile(xx - xs, yy - ys, **kwargs)
    return image


def tan_wcs(shape, *, scale_arcsec=0.2, ra0=150.0, dec0=2.2, cd=None, radesys="ICRS") -> WCS:
    """A TAN WCS centred on the array; ``cd`` (degrees/pixel) defaults to north up, east left."""
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    s = scale_arcsec / 3600.0
    w.wcs.cd = np.array([[-s, 0.0], [0.0, s]]) if cd is None else np.asarray(cd, dtype=float)
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = radesys
    w.wcs.set()
    return w


# --------------------------------------------------------------------------------------------
# simulated tile


@dataclass
class SimTile:
    """A simulated tile and its truth (array coordinates, 0-based; fluxes in nJy)."""

    tile: Tile
    refs: pl.DataFrame
    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    noise_sigma: float
    background: float
    psf_kwargs: dict = field(default_factory=dict)

    @property
    def ids(self) -> np.ndarray:
        return self.refs["id"].to_numpy()


def make_sim_tile(
    *,
    n_side: int = 8,
    spacing: int = 40,
    margin: int = 30,
    flux_range: tuple[float, float] = (500.0, 2000.0),
    noise_sigma: float = 1.0,
    background: float = 0.0,
    seed: int = 1,
    xy0: tuple[int, int] = (0, 0),
    band: str | None = "r",
    tract: int | None = 9813,
    patch: int | None = 42,
    with_psf: bool = True,
    psf_size: int = 41,
    psf_kwargs: dict | None = None,
    wcs_kwargs: dict | None = None,
    flux_unit: str = "nJy",
    dtype=np.float32,
) -> SimTile:
    """Stars on an ``n_side`` x ``n_side`` grid at random sub-pixel offsets, plus noise.

    Pixel values are ``render(...) + background + N(0, noise_sigma)``; the variance plane is
    the constant ``noise_sigma**2``; the mask is all zeros with :data:`MASK_PLANES`.
    """
    psf_kwargs = dict(psf_kwargs or {})
    rng = np.random.default_rng(seed)
    size = 2 * margin + (n_side - 1) * spacing
    shape = (size, size)
    gx, gy = np.meshgrid(np.arange(n_side), np.arange(n_side))
    x = margin + spacing * gx.ravel() + rng.uniform(-0.5, 0.5, n_side * n_side)
    y = margin + spacing * gy.ravel() + rng.uniform(-0.5, 0.5, n_side * n_side)
    flux = rng.uniform(*flux_range, n_side * n_side)
    image = render(shape, x, y, flux, **psf_kwargs)
    image += background + rng.normal(0.0, noise_sigma, shape)
    wcs = tan_wcs(shape, **(wcs_kwargs or {}))
    ra, dec = wcs.pixel_to_world_values(x, y)
    refs = pl.DataFrame({
        "id": np.arange(1, x.size + 1, dtype=np.int64) * 10 + 7,
        "coord_ra": np.asarray(ra, dtype=np.float64),
        "coord_dec": np.asarray(dec, dtype=np.float64),
    })
    psf = PsfModel.constant(psf_image(psf_size, **psf_kwargs)) if with_psf else None
    tile = Tile(
        image=image.astype(dtype),
        mask=np.zeros(shape, dtype=np.uint32),
        variance=np.full(shape, noise_sigma**2, dtype=dtype),
        wcs=wcs,
        psf=psf,
        band=band,
        tract=tract,
        patch=patch,
        xy0=xy0,
        mask_planes=dict(MASK_PLANES),
        flux_scale=1.0 if flux_unit == "nJy" else None,
        flux_unit=flux_unit,
        uri="memory://sim",
    )
    return SimTile(tile, refs, x, y, flux, noise_sigma, background, psf_kwargs)


def refs_at(wcs: WCS, x, y, *, first_id: int = 1, **extra) -> pl.DataFrame:
    """A reference frame with objects at array positions ``(x, y)`` of ``wcs``."""
    ra, dec = wcs.pixel_to_world_values(np.asarray(x, float), np.asarray(y, float))
    n = np.size(ra)
    data = {
        "id": np.arange(first_id, first_id + n, dtype=np.int64),
        "coord_ra": np.atleast_1d(np.asarray(ra, dtype=np.float64)),
        "coord_dec": np.atleast_1d(np.asarray(dec, dtype=np.float64)),
    }
    data.update({k: np.asarray(v) for k, v in extra.items()})
    return pl.DataFrame(data)


class SimKit:
    """The simulation helpers, handed to tests through the ``sim`` fixture."""

    MASK_PLANES = MASK_PLANES
    gaussian2d = staticmethod(gaussian2d)
    double_gaussian = staticmethod(double_gaussian)
    psf_image = staticmethod(psf_image)
    render = staticmethod(render)
    tan_wcs = staticmethod(tan_wcs)
    make_sim_tile = staticmethod(make_sim_tile)
    refs_at = staticmethod(refs_at)
    repo_root = staticmethod(repo_root)


@pytest.fixture(scope="session")
def sim() -> type[SimKit]:
    """Simulation helpers (see :class:`SimKit`)."""
    return SimKit


@pytest.fixture()
def sim_tile() -> SimTile:
    """A fresh 8 x 8-star simulated tile (330 x 330 px, S/N ~ 100-300), xy0 = (1000, 2000)."""
    return make_sim_tile(xy0=(1000, 2000))
