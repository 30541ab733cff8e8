"""A small synthetic survey on disk: one tract of overlapping patches, tiles, references, truth.

Layout written under ``out`` (a local folder or an fsspec URL)::

    tiles/{band}/{tract}/{patch}.fits        afw Exposure layout (colphot.tile.write)
    refs/tract=0/patch={patch}/part-0.parquet reference catalog (catalogs/reference.yaml)
    in_band/band={band}/tract=0/patch={patch}/part-0.parquet
                                             in-band catalog with heavy footprints
                                             (catalogs/in_band.yaml, colphot.sim.blends)
    truth.parquet                            id, is_star, {band}_flux_true (nJy), parent, ...

Objects whose detection discs overlap form blends (:mod:`colphot.sim.blends`): the reference
catalog gives each child its blend's parent id, and the in-band catalogs carry the parents' and
children's heavy footprints as a perfect flux-conserving deblender would split them. Besides the
random field objects, designed star pairs and triples test the deblending.

Pixel coordinates are 0-based. The tract frame has its own TAN WCS (ICRS, north up, east left);
a patch tile is a window of it whose array pixel ``[0, 0]`` is tract pixel ``xy0``.
"""

from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from astropy.wcs import WCS

from colphot._fs import join, put_url
from colphot.sim.blends import FWHM_PER_SIGMA, blend_families, footprint_radius, in_band_frame
from colphot.sim.scene import (
    MASK_PLANES,
    Defects,
    GriddedPsf,
    Sources,
    render_tile,
)
from colphot.tile.ap_corr import ChebyshevField
from colphot.tile.fits import AB_NJY_ZEROPOINT
from colphot.tile.write import write_tile

if TYPE_CHECKING:
    from colphot._typing import PathLike, StorageOptions

__all__ = ["BAND_SPECS", "BandSpec", "PatchGeometry", "SurveyInfo", "make_survey", "tract_wcs"]


@dataclass(frozen=True)
class BandSpec:
    """How one band is observed.

    Attributes
    ----------
    sky_sigma
        Sky noise per pixel, nJy.
    gain
        Electrons per nJy of source flux (source Poisson noise), nJy⁻¹.
    psf_sigma
        Core sigma of the PSF at the lower-left and upper-right tile corners, pixels.
    magzero
        ``None``: pixels in nJy (``BUNIT='nJy'``); else pixels in counts with this AB zero point.
    offset, slope
        Magnitude relative to r: ``m_band = m_r + offset + slope * colour`` (colour in [0, 1]).
    """

    sky_sigma: float
    gain: float
    psf_sigma: tuple[float, float]
    magzero: float | None
    offset: float
    slope: float


#: The bands make_survey knows. A 22 mag star has S/N ~ 65 in g and r.
BAND_SPECS: dict[str, BandSpec] = {
    "g": BandSpec(10.0, 2.0, (1.7, 2.2), None, 0.3, 0.9),
    "r": BandSpec(9.0, 2.0, (1.6, 2.1), None, 0.0, 0.0),
    "i": BandSpec(12.0, 2.0, (1.6, 2.0), 27.0, -0.1, -0.5),
    "z": BandSpec(16.0, 2.0, (1.6, 2.0), None, -0.15, -0.75),
    "y": BandSpec(25.0, 2.0, (1.7, 2.1), None, -0.2, -0.9),
}

TRACT = 0
PIXEL_SCALE = 0.2  # arcsec per pixel
RA0, DEC0 = 150.0, 2.0  # degrees
SATURATION = 5000.0  # nJy per pixel
EDGE_WIDTH = 4  # pixels
_NO_DATA_HEIGHT = 40  # pixels: height of the lower-left NO_DATA strip
REF_BAND = "r"
FIRST_ID = 1_000_000
FIRST_PARENT_ID = 2_000_000_000
BLEND_MARGIN = 60.0  # pixels: designed blends keep this far from the tract edge and NO_DATA
IN_BAND_TEMPLATE = "in_band/band={band}/tract={tract}/patch={patch}/part-0.parquet"


@dataclass(frozen=True)
class PatchGeometry:
    """One patch of the tract, tract pixels.

    Attributes
    ----------
    patch
        Sequential index ``ix + iy * nx_patches``.
    x0, y0
        Tract pixel of the tile's array pixel ``[0, 0]`` (the tile's ``xy0``).
    nx, ny
        Tile size, pixels.
    inner
        ``(x_start, x_stop, y_start, y_stop)``: the region the patch owns (each tract position
        belongs to exactly one inner region), tract pixels.
    """

    patch: int
    x0: int
    y0: int
    nx: int
    ny: int
    inner: tuple[float, float, float, float]


@dataclass(frozen=True)
class SurveyInfo:
    """What :func:`make_survey` wrote.

    Attributes
    ----------
    root
        The output folder or URL.
    tiles_template
        ``{root}/tiles/{band}/{tract}/{patch}.fits`` with the placeholders left in.
    refs_root
        Root of the hive-partitioned reference Parquet (``tract=…/patch=…``).
    in_band_root
        Root of the hive-partitioned in-band catalogs (``band=…/tract=…/patch=…``).
    in_band_template
        ``{root}/in_band/band={band}/tract={tract}/patch={patch}/part-0.parquet`` with the
        placeholders left in.
    truth_path
        The truth Parquet file.
    tile_paths
        Every tile written, band-major.
    bands, tract, patches
        What the tiles cover.
    n_objects
        Rows of the reference catalog.
    tract_shape
        ``(ny, nx)`` of the tract, pixels.
    pixel_scale
        Arcsec per pixel.
    """

    root: str
    tiles_template: str
    refs_root: str
    in_band_root: str
    in_band_template: str
    truth_path: str
    tile_paths: list[str]
    bands: tuple[str, ...]
    tract: int
    patches: list[int]
    n_objects: int
    tract_shape: tuple[int, int]
    pixel_scale: float


def make_survey(
    out: PathLike,
    *,
    seed: int = 0,
    bands: tuple[str, ...] | list[str] = ("g", "r", "i"),
    n_patches: int | tuple[int, int] = (2, 2),
    patch_size: int = 1000,
    overlap: int = 100,
    n_stars: int = 800,
    n_galaxies: int = 1200,
    n_blends: int = 60,
    storage_options: StorageOptions = None,
) -> SurveyInfo:
    """Simulate one tract of overlapping patches and write tiles, references and truth.

    Parameters
    ----------
    out
        Output folder or fsspec URL; files already there with the same names are replaced.
    seed
        Seed of every random draw: the output is a function of the arguments.
    bands
        Bands to render, from :data:`BAND_SPECS`. ``i`` is written in counts with
        ``MAGZERO = 27`` (a count is ``10**(-0.4 * (27 - 31.4))`` = 57.54 nJy); the others
        in nJy (``BUNIT = 'nJy'``).
    n_patches
        ``(nx, ny)`` patches, or ``k`` for ``k x k``.
    patch_size
        Side of each (square) tile, pixels.
    overlap
        Pixels shared by neighbouring tiles; each patch owns up to the middle of its overlaps.
    n_stars, n_galaxies
        Randomly placed objects (r from 18 to 24 AB for stars, 20 to 25 AB for galaxies).
        A few stars on defects are added per patch: on bad columns, saturated, in and near
        the NO_DATA strip, at the tract edge (truth column ``defect``).
    n_blends
        Designed star groups (0: none): two thirds pairs, one third triples, at least
        60 px from the tract edge and the NO_DATA strips, members 1 to 3 PSF FWHM of the
        reference band apart (FWHM = 2.355 x its largest core sigma), brightest member r
        from 18 to 20.5 AB and the others 1 to 20 times fainter (truth ``designed_blend``);
        each group goes where it blends with no other object when a few hundred random
        positions allow, else anywhere in bounds. Every object gets a detection disc
        (:func:`colphot.sim.blends.footprint_radius`, the largest over the bands); objects
        whose discs overlap, transitively, are the children of a blend parent with an id
        from 2 000 000 000 up (the reference catalog's ``parent``; parents are not
        reference rows). Each tile gets an in-band catalog with the heavy footprints of
        every object and parent touching it.
    storage_options
        fsspec options for a remote ``out``.

    Returns
    -------
    SurveyInfo
        The paths written and the survey's shape.
    """
    bands = tuple(bands)
    unknown = [b for b in bands if b not in BAND_SPECS]
    if unknown or not bands:
        raise ValueError(f"bands: expected some of {sorted(BAND_SPECS)}, got {list(bands)}")
    npx, npy = (n_patches, n_patches) if isinstance(n_patches, int) else tuple(n_patches)
    if npx < 1 or npy < 1:
        raise ValueError(f"n_patches: expected at least one patch, got {n_patches!r}")
    if not 0 <= overlap < patch_size:
        raise ValueError(f"overlap: expected 0 <= overlap < patch_size, got {overlap}")
    if n_blends < 0:
        raise ValueError(f"n_blends: expected a count >= 0, got {n_blends}")
    root = str(out).rstrip("/")
    geometries = patch_layout((npx, npy), patch_size, overlap)
    shape = (npy * (patch_size - overlap) + overlap, npx * (patch_size - overlap) + overlap)
    wcs = tract_wcs(shape)
    ref_band = REF_BAND if REF_BAND in bands else bands[0]
    fwhm = FWHM_PER_SIGMA * max(BAND_SPECS[ref_band].psf_sigma)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    truth = _objects(rng, shape, geometries, bands, n_stars, n_galaxies)
    field_radius = _radius({b: truth[f"{b}_flux_true"] for b in bands}, truth["qxx"],
                           truth["qyy"])
    designed = _designed_blends(np.random.default_rng(np.random.SeedSequence([seed, 2])),
                                shape, n_blends, fwhm, bands,
                                (truth["x"], truth["y"], field_radius))
    _add_designed(truth, designed, bands, rng)
    _blend_columns(truth, bands, ref_band, fwhm)
    defects = _tract_defects(shape, geometries, truth)
    ra, dec = wcs.pixel_to_world_values(truth["x"], truth["y"])
    truth["coord_ra"] = np.asarray(ra, dtype=np.float64)
    truth["coord_dec"] = np.asarray(dec, dtype=np.float64)
    truth["patch"] = assign_patch(truth["x"], truth["y"], geometries)

    psfs = {(b, g.patch): _tile_psf(BAND_SPECS[b], g) for b in bands for g in geometries}
    core_var = np.zeros(truth["x"].size)
    for g in geometries:
        sel = truth["patch"] == g.patch
        core_var[sel] = psfs[(ref_band, g.patch)].core_variance_at(
            truth["x"][sel] - g.x0, truth["y"][sel] - g.y0)

    tile_paths = []
    template = join(root, "tiles/{band}/{tract}/{patch}.fits")
    in_band_template = join(root, IN_BAND_TEMPLATE)
    for ib, band in enumerate(bands):
        spec = BAND_SPECS[band]
        for g in geometries:
            path = template.format(band=band, tract=TRACT, patch=g.patch)
            _write_patch_tile(path, in_band_template.format(band=band, tract=TRACT, patch=g.patch),
                              band, ib, spec, g, wcs, truth, defects, psfs[(band, g.patch)],
                              seed=seed, storage_options=storage_options)
            tile_paths.append(path)

    refs = _reference_frame(truth, wcs, core_var, ref_band)
    refs_root = join(root, "refs")
    for (patch,), part in refs.partition_by("patch", as_dict=True, maintain_order=True).items():
        _write_parquet(part.drop("tract", "patch"),
                       join(refs_root, f"tract={TRACT}/patch={patch}/part-0.parquet"),
                       storage_options)
    truth_path = join(root, "truth.parquet")
    _write_parquet(_truth_frame(truth, bands), truth_path, storage_options)
    return SurveyInfo(
        root=root, tiles_template=template, refs_root=refs_root,
        in_band_root=join(root, "in_band"), in_band_template=in_band_template,
        truth_path=truth_path,
        tile_paths=tile_paths, bands=bands, tract=TRACT, patches=[g.patch for g in geometries],
        n_objects=refs.height, tract_shape=shape, pixel_scale=PIXEL_SCALE,
    )


# --------------------------------------------------------------------------------------------
# geometry


def patch_layout(n_patches: tuple[int, int], patch_size: int, overlap: int
                 ) -> list[PatchGeometry]:
    """Square tiles of ``patch_size`` pixels stepping by ``patch_size - overlap`` over a tract.

    Inner regions split each overlap in the middle and reach the tract's outer pixel edges.
    """
    step = patch_size - overlap
    npx, npy = n_patches

    def bounds(i: int, n: int) -> tuple[float, float]:
        lo = -0.5 if i == 0 else i * step + overlap / 2.0 - 0.5
        hi = n * step + overlap - 0.5 if i == n - 1 else (i + 1) * step + overlap / 2.0 - 0.5
        return lo, hi

    out = []
    for iy in range(npy):
        for ix in range(npx):
            bx, by = bounds(ix, npx), bounds(iy, npy)
            out.append(PatchGeometry(ix + iy * npx, ix * step, iy * step, patch_size,
                                     patch_size, (bx[0], bx[1], by[0], by[1])))
    return out


def assign_patch(x: np.ndarray, y: np.ndarray, geometries: list[PatchGeometry]) -> np.ndarray:
    """Patch whose inner region holds each tract position (``-1`` off the tract)."""
    patch = np.full(np.shape(x), -1, dtype=np.int64)
    for g in geometries:
        x0, x1, y0, y1 = g.inner
        patch[(x >= x0) & (x < x1) & (y >= y0) & (y < y1)] = g.patch
    return patch


def tract_wcs(shape: tuple[int, int], *, pixel_scale: float = PIXEL_SCALE, ra0: float = RA0,
              dec0: float = DEC0) -> WCS:
    """TAN WCS (ICRS, north up, east left) centred on a tract of ``shape`` pixels.

    ``pixel_scale`` in arcsec per pixel, ``ra0``/``dec0`` in degrees.
    """
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    s = pixel_scale / 3600.0
    w.wcs.cd = np.array([[-s, 0.0], [0.0, s]])
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.wcs.set()
    return w


def patch_wcs(wcs: WCS, geometry: PatchGeometry) -> WCS:
    """The tract WCS with ``CRPIX`` moved to the patch tile's array frame."""
    out = wcs.deepcopy()
    out.wcs.crpix = wcs.wcs.crpix - np.array([geometry.x0, geometry.y0], dtype=np.float64)
    out.wcs.set()
    return out


# --------------------------------------------------------------------------------------------
# objects


def _power_law_mags(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float
                    ) -> np.ndarray:
    """Magnitudes in [lo, hi] with ``dN/dm ~ 10**(slope m)`` (AB)."""
    a, b = 10.0 ** (slope * lo), 10.0 ** (slope * hi)
    return np.log10(a + rng.uniform(0.0, 1.0, n) * (b - a)) / slope


def _intrinsic_shapes(rng: np.random.Generator, n: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Galaxy moments ``(qxx, qyy, qxy)``, pixels²: determinant radius 1-4 px, axis ratio
    0.4-1, random orientation."""
    sigma = rng.uniform(1.0, 4.0, n)
    q = rng.uniform(0.4, 1.0, n)
    theta = rng.uniform(0.0, math.pi, n)
    a2, b2 = sigma**2 / q, sigma**2 * q
    c, s = np.cos(theta), np.sin(theta)
    return a2 * c * c + b2 * s * s, a2 * s * s + b2 * c * c, (a2 - b2) * s * c


def _defect_stars(shape: tuple[int, int], geometries: list[PatchGeometry]
                  ) -> list[tuple[float, float, float, str]]:
    """``(x, y, r_mag, label)`` of stars placed on the defects of :func:`_tract_defects`."""
    ny, nx = shape
    stars = []
    for g in geometries:
        ax, bx, ay, by = g.inner
        w, h = bx - ax, by - ay
        col_a, col_b = _bad_columns(g)
        stars.append((col_a[0] + 0.2, ay + 0.5 * h + 0.3, 20.5, "bad_column"))
        stars.append((col_b[0] - 0.25, ay + 0.4 * h + 0.1, 20.5, "bad_column"))
        stars.append((ax + 0.5 * w + 0.37, ay + 0.25 * h + 0.61, 15.5, "saturated_interpolated"))
        stars.append((ax + 0.15 * w + 0.12, ay + 0.7 * h + 0.44, 16.5, "saturated"))
    stars.append((nx / 8 + 0.3, 20.4, 20.0, "no_data"))
    stars.append((nx / 16 + 0.7, 37.2, 20.0, "no_data"))
    stars.append((3 * nx / 16 + 0.4, _NO_DATA_HEIGHT + 3.1, 20.0, "near_no_data"))
    stars.append((nx - 2.3, 0.4 * ny + 0.2, 20.0, "edge"))
    stars.append((0.6 * nx + 0.1, 1.7, 20.0, "edge"))
    return stars


@dataclass(frozen=True)
class DesignedBlends:
    """Stars of the designed groups, tract pixels.

    Attributes
    ----------
    x, y
        ``(m,)`` positions, tract pixels.
    mag_r
        ``(m,)`` r magnitudes, AB.
    colour
        ``(m,)`` colours in [0, 1] (see :class:`BandSpec`).
    """

    x: np.ndarray
    y: np.ndarray
    mag_r: np.ndarray
    colour: np.ndarray

    def __len__(self) -> int:
        return int(self.x.size)


def _allowed(x: np.ndarray, y: np.ndarray, shape: tuple[int, int], margin: float) -> np.ndarray:
    """Positions at least ``margin`` pixels from the tract edge and the NO_DATA strips."""
    ny, nx = shape
    ok = (x >= margin) & (x <= nx - 1.0 - margin) & (y >= margin) & (y <= ny - 1.0 - margin)
    for x_start, x_stop, y_start, y_stop in _no_data_strips(shape):
        # distance to the strip's pixel area [start - 0.5, stop - 0.5]
        dx = np.maximum(np.maximum(x_start - 0.5 - x, x - (x_stop - 0.5)), 0.0)
        dy = np.maximum(np.maximum(y_start - 0.5 - y, y - (y_stop - 0.5)), 0.0)
        ok &= dx * dx + dy * dy >= margin * margin
    return ok


def _band_flux(mag_r: np.ndarray, colour: np.ndarray, band: str) -> np.ndarray:
    """True flux in ``band`` of objects of r magnitude ``mag_r`` and ``colour``, nJy."""
    spec = BAND_SPECS[band]
    return 10.0 ** (-0.4 * (mag_r + spec.offset + spec.slope * colour - AB_NJY_ZEROPOINT))


def _radius(fluxes: dict[str, np.ndarray], qxx: np.ndarray, qyy: np.ndarray) -> np.ndarray:
    """Detection-disc radius, pixels: the largest :func:`footprint_radius` over the bands of
    ``fluxes`` (band -> nJy), each with its largest PSF core sigma and its sky noise."""
    radius = np.zeros(np.shape(qxx))
    for band, flux in fluxes.items():
        spec = BAND_SPECS[band]
        radius = np.maximum(radius, footprint_radius(flux, qxx, qyy, max(spec.psf_sigma),
                                                     spec.sky_sigma))
    return radius


def _designed_blends(rng: np.random.Generator, shape: tuple[int, int], n_blends: int,
                     fwhm: float, bands: tuple[str, ...],
                     others: tuple[np.ndarray, np.ndarray, np.ndarray], *,
                     margin: float = BLEND_MARGIN, tries: int = 256, batch: int = 16
                     ) -> DesignedBlends:
    """Designed star groups: ``n_blends`` groups, two thirds pairs and one third triples.

    A group is a chain: each star after the first lies 1 to 3 ``fwhm`` (pixels) from the one
    before, a triple's third star on the side away from the first (so it is at least
    sqrt(2) FWHM from it). The brightest star, a random one of the group, has r uniform in
    18-20.5 AB; each other one is fainter by a factor log-uniform in 1-20; colours are uniform
    in [0, 1]. Every star is at least ``margin`` pixels from the tract edge and the NO_DATA
    strips. The group is put where its stars' detection discs miss those of ``others``
    (``(x, y, radius)`` of the objects already placed, tract pixels) and of the groups before
    it, by 2 pixels, when one of ``tries`` random positions allows; otherwise at the first
    position that keeps the margin (it then blends with its neighbours).
    """
    sizes = np.where(np.arange(n_blends) < round(n_blends * 2 / 3), 2, 3)
    ox, oy, orad = (np.asarray(v, dtype=np.float64) for v in others)
    xs, ys, mags, colours = [], [], [], []
    for size in sizes:
        sep = rng.uniform(1.0, 3.0, size - 1) * fwhm
        theta = rng.uniform(0.0, 2.0 * math.pi)
        turn = rng.uniform(-0.5 * math.pi, 0.5 * math.pi, size - 2)
        angles = theta + np.concatenate([[0.0], np.cumsum(turn)])
        dx = np.concatenate([[0.0], np.cumsum(sep * np.cos(angles))])
        dy = np.concatenate([[0.0], np.cumsum(sep * np.sin(angles))])
        ratio = np.exp(rng.uniform(0.0, math.log(20.0), size))
        ratio[rng.integers(size)] = 1.0
        mag = rng.uniform(18.0, 20.5) + 2.5 * np.log10(ratio)
        colour = rng.uniform(0.0, 1.0, size)
        radius = _radius({b: _band_flux(mag, colour, b) for b in bands}, np.zeros(size),
                         np.zeros(size))
        ax = rng.uniform(0.0, shape[1] - 1.0, tries)
        ay = rng.uniform(0.0, shape[0] - 1.0, tries)
        ok = np.flatnonzero(np.all(_allowed(ax[:, None] + dx, ay[:, None] + dy, shape, margin),
                                   axis=1))
        if ok.size == 0:
            raise ValueError(
                f"n_blends: no room for designed blends {margin:g} px from the edges and the "
                f"NO_DATA strips of a {shape[1]} x {shape[0]} px tract; use n_blends=0")
        chosen = int(ok[0])
        for start in range(0, ok.size, batch):
            cand = ok[start:start + batch]
            mx = (ax[cand, None] + dx)[:, :, None]  # (c, size, 1)
            my = (ay[cand, None] + dy)[:, :, None]
            reach = radius[None, :, None] + orad[None, None, :] + 2.0
            clear = np.all((mx - ox) ** 2 + (my - oy) ** 2 >= reach**2, axis=(1, 2))
            if clear.any():
                chosen = int(cand[np.argmax(clear)])
                break
        gx, gy = ax[chosen] + dx, ay[chosen] + dy
        ox, oy, orad = (np.concatenate([ox, gx]), np.concatenate([oy, gy]),
                        np.concatenate([orad, radius]))
        xs.append(gx)
        ys.append(gy)
        mags.append(mag)
        colours.append(colour)

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0)

    return DesignedBlends(cat(xs), cat(ys), cat(mags), cat(colours))


def _objects(rng: np.random.Generator, shape: tuple[int, int], geometries: list[PatchGeometry],
             bands: tuple[str, ...], n_stars: int, n_galaxies: int) -> dict[str, np.ndarray]:
    """Truth columns of the field: positions (tract pixels), kind, intrinsic moments, per-band
    fluxes (nJy) of the random stars, random galaxies and defect stars."""
    ny, nx = shape
    placed = _defect_stars(shape, geometries)
    n_def = len(placed)
    n = n_stars + n_galaxies + n_def
    x = np.concatenate([rng.uniform(0.0, nx - 1.0, n_stars + n_galaxies),
                        [p[0] for p in placed]])
    y = np.concatenate([rng.uniform(0.0, ny - 1.0, n_stars + n_galaxies),
                        [p[1] for p in placed]])
    is_star = np.concatenate([np.ones(n_stars, bool), np.zeros(n_galaxies, bool),
                              np.ones(n_def, bool)])
    mag_r = np.concatenate([_power_law_mags(rng, n_stars, 18.0, 24.0, 0.2),
                            _power_law_mags(rng, n_galaxies, 20.0, 25.0, 0.3),
                            [p[2] for p in placed]])
    qxx, qyy, qxy = (np.zeros(n) for _ in range(3))
    gal = slice(n_stars, n_stars + n_galaxies)
    qxx[gal], qyy[gal], qxy[gal] = _intrinsic_shapes(rng, n_galaxies)
    colour = rng.uniform(0.0, 1.0, n)
    truth: dict[str, np.ndarray] = {
        "id": FIRST_ID + rng.permutation(n).astype(np.int64),
        "x": x, "y": y, "is_star": is_star, "qxx": qxx, "qyy": qyy, "qxy": qxy,
        "defect": np.array([""] * (n - n_def) + [p[3] for p in placed], dtype=object),
        "designed_blend": np.zeros(n, dtype=bool),
    }
    for band in bands:
        truth[f"{band}_flux_true"] = _band_flux(mag_r, colour, band)
    return truth


def _add_designed(truth: dict[str, np.ndarray], designed: DesignedBlends,
                  bands: tuple[str, ...], rng: np.random.Generator) -> None:
    """Append the designed stars to ``truth`` in place, with ids after the field's (in a
    random order drawn from ``rng``)."""
    m = len(designed)
    n = truth["id"].size
    zeros = np.zeros(m)
    extra: dict[str, np.ndarray] = {
        "id": FIRST_ID + n + rng.permutation(m).astype(np.int64),
        "x": designed.x, "y": designed.y, "is_star": np.ones(m, dtype=bool),
        "qxx": zeros, "qyy": zeros, "qxy": zeros,
        "defect": np.array([""] * m, dtype=object),
        "designed_blend": np.ones(m, dtype=bool),
        **{f"{b}_flux_true": _band_flux(designed.mag_r, designed.colour, b) for b in bands},
    }
    for name, value in extra.items():
        truth[name] = np.concatenate([truth[name], value])


def _blend_columns(truth: dict[str, np.ndarray], bands: tuple[str, ...], ref_band: str,
                   fwhm: float) -> None:
    """Add footprint radii, families, parents and blend truth to ``truth`` in place.

    ``radius`` (pixels) is the largest :func:`footprint_radius` over ``bands`` (each with its
    largest PSF core sigma and its sky noise); ``family`` labels overlapping discs; a family of
    two or more gets ``parent`` ids from :data:`FIRST_PARENT_ID` up (0 when isolated),
    ``blend_size`` its member count, and each member the reference-band flux ratio and the
    distance (in ``fwhm`` units) of its blend's nearest other member (NaN when isolated).
    """
    radius = _radius({b: truth[f"{b}_flux_true"] for b in bands}, truth["qxx"], truth["qyy"])
    family = blend_families(truth["x"], truth["y"], radius)
    size = np.bincount(family)
    blended = size >= 2
    parent_of_family = np.zeros(size.size, dtype=np.int64)
    parent_of_family[blended] = FIRST_PARENT_ID + np.arange(int(blended.sum()), dtype=np.int64)
    truth["radius"] = radius
    truth["family"] = family
    truth["parent"] = parent_of_family[family]
    truth["blend_size"] = size[family].astype(np.int64)

    ratio = np.full(family.size, np.nan)
    sep = np.full(family.size, np.nan)
    members = np.flatnonzero(blended[family])
    if members.size:
        mx, my, mf = truth["x"][members], truth["y"][members], family[members]
        flux = truth[f"{ref_band}_flux_true"][members]
        for start in range(0, members.size, 512):
            rows = np.arange(start, min(start + 512, members.size))
            d2 = (mx[rows, None] - mx[None]) ** 2 + (my[rows, None] - my[None]) ** 2
            d2[(mf[rows, None] != mf[None]) | (rows[:, None] == np.arange(members.size))] = np.inf
            near = np.argmin(d2, axis=1)
            ratio[members[rows]] = flux[near] / flux[rows]
            sep[members[rows]] = np.sqrt(d2[np.arange(rows.size), near]) / fwhm
    truth["neighbour_flux_ratio"] = ratio
    truth["neighbour_sep_fwhm"] = sep


# --------------------------------------------------------------------------------------------
# defects, PSFs, tiles


def _bad_columns(g: PatchGeometry) -> tuple[tuple[int, int, int, float], ...]:
    """Two partial bad columns in the patch's inner region, tract pixels: one zeroed, one hot."""
    ax, bx, ay, by = g.inner
    w, h = bx - ax, by - ay
    return (
        (int(round(ax + 0.3 * w)), int(round(ay + 0.2 * h)), int(round(ay + 0.8 * h)), 0.0),
        (int(round(ax + 0.7 * w)), int(round(ay + 0.1 * h)), int(round(by - 0.1 * h)), 3.0e4),
    )


def _no_data_strips(shape: tuple[int, int]) -> tuple[tuple[int, int, int, int], ...]:
    """The two NO_DATA corner strips, ``(x_start, x_stop, y_start, y_stop)`` tract pixels."""
    ny, nx = shape
    return ((0, nx // 4, 0, _NO_DATA_HEIGHT), (nx - nx // 4, nx, ny - 30, ny))


def _tract_defects(shape: tuple[int, int], geometries: list[PatchGeometry],
                   truth: dict[str, np.ndarray]) -> Defects:
    """The tract's defects in tract pixels: bad columns, two NO_DATA corner strips, INTRP
    over the core of one saturated star per patch."""
    columns = tuple(c for g in geometries for c in _bad_columns(g))
    no_data = _no_data_strips(shape)
    sel = truth["defect"] == "saturated_interpolated"
    interpolated = tuple((float(a), float(b), 12.0) for a, b in
                         zip(truth["x"][sel], truth["y"][sel], strict=True))
    return Defects(bad_columns=columns, no_data=no_data, interpolated=interpolated,
                   saturation=SATURATION, edge_width=EDGE_WIDTH)


def _shift_defects(defects: Defects, x0: int, y0: int) -> Defects:
    """``defects`` in the frame of a tile whose pixel ``[0, 0]`` is tract pixel ``(x0, y0)``."""
    return dataclasses.replace(
        defects,
        bad_columns=tuple((x - x0, a - y0, b - y0, v) for x, a, b, v in defects.bad_columns),
        no_data=tuple((a - x0, b - x0, c - y0, d - y0) for a, b, c, d in defects.no_data),
        interpolated=tuple((x - x0, y - y0, r) for x, y, r in defects.interpolated),
    )


def _tile_psf(spec: BandSpec, g: PatchGeometry) -> GriddedPsf:
    """3 x 3 PSF grid over the tile, core sigma rising from one corner to the opposite one."""
    lo, hi = spec.psf_sigma
    return GriddedPsf.regular((g.ny, g.nx), lambda u, v: lo + (hi - lo) * 0.5 * (u + v))


def _write_patch_tile(path: str, in_band_path: str, band: str, band_index: int, spec: BandSpec,
                      g: PatchGeometry, wcs: WCS, truth: dict[str, np.ndarray], defects: Defects,
                      psf: GriddedPsf, *, seed: int, storage_options: StorageOptions) -> None:
    """Render one band of one patch and write its tile and its in-band catalog."""
    margin = 64
    x = truth["x"] - g.x0
    y = truth["y"] - g.y0
    near = (x > -margin) & (x < g.nx + margin) & (y > -margin) & (y < g.ny + margin)
    flux = truth[f"{band}_flux_true"]
    sources = Sources(x[near], y[near], flux[near],
                      truth["qxx"][near], truth["qyy"][near], truth["qxy"][near])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, band_index, g.patch]))
    arrays = render_tile((g.ny, g.nx), sources, psf, sky_sigma=spec.sky_sigma, gain=spec.gain,
                         rng=rng, defects=_shift_defects(defects, g.x0, g.y0))

    # in-band rows: every object whose disc may reach the tile, with its whole family
    r = truth["radius"]
    gap_x = np.maximum(np.maximum(-x, x - (g.nx - 1.0)), 0.0)
    gap_y = np.maximum(np.maximum(-y, y - (g.ny - 1.0)), 0.0)
    touch = gap_x**2 + gap_y**2 <= r**2
    sel = np.isin(truth["family"], np.unique(truth["family"][touch]))
    frame = in_band_frame(
        arrays.image,
        Sources(x[sel], y[sel], flux[sel], truth["qxx"][sel], truth["qyy"][sel],
                truth["qxy"][sel]),
        psf, truth["id"][sel], truth["parent"][sel], r[sel],
        band=band, tract=TRACT, patch=g.patch, xy0=(g.x0, g.y0))
    _write_parquet(frame.drop("band", "tract", "patch"), in_band_path, storage_options)

    image, variance = arrays.image, arrays.variance
    if spec.magzero is not None:
        per_count = 10.0 ** (-0.4 * (spec.magzero - AB_NJY_ZEROPOINT))  # nJy per count
        image = (image / per_count).astype(np.float32)
        variance = (variance / per_count**2).astype(np.float32)
    write_tile(
        path, image, variance=variance, mask=arrays.mask, mask_planes=MASK_PLANES,
        wcs=patch_wcs(wcs, g), psf_images=psf.images(), psf_grid=(psf.sample_x, psf.sample_y),
        band=band, tract=TRACT, patch=g.patch, xy0=(g.x0, g.y0),
        bunit="nJy" if spec.magzero is None else None, magzero=spec.magzero,
        ap_corr=SIM_AP_CORR, storage_options=storage_options,
    )


#: The aperture-correction map written with every simulated tile: the PSF model is the exact
#: PSF normalised to the total flux, so psfFlux needs no correction (1, uncertainty 0). There
#: is no base_GaussianFlux field, as there is no single right one for the sim's extended
#: sources: gaussianFlux is left uncorrected with gaussianFlux_flag_apCorr set, LSST's
#: behaviour for a missing field.
SIM_AP_CORR: dict[str, ChebyshevField] = {
    "base_PsfFlux_instFlux": ChebyshevField.constant(1.0),
    "base_PsfFlux_instFluxErr": ChebyshevField.constant(0.0),
}

# --------------------------------------------------------------------------------------------
# tables


def _reference_frame(truth: dict[str, np.ndarray], wcs: WCS, core_var: np.ndarray,
                     ref_band: str) -> pl.DataFrame:
    """Reference rows (catalogs/reference.yaml), sorted by patch then id."""
    # Rubin's Object shapes: moments in pixels² of the tract WCS, the PSF's core included
    sxx = truth["qxx"] + core_var
    syy = truth["qyy"] + core_var
    sxy = truth["qxy"]
    n = truth["x"].size
    return pl.DataFrame({
        "id": truth["id"],
        "coord_ra": truth["coord_ra"],
        "coord_dec": truth["coord_dec"],
        "parent": truth["parent"],
        "detect_isPrimary": np.ones(n, dtype=bool),
        "shape_xx": sxx,
        "shape_yy": syy,
        "shape_xy": sxy,
        "refBand": [ref_band] * n,
        "tract": np.full(n, TRACT, dtype=np.int64),
        "patch": truth["patch"],
    }).filter(pl.col("patch") >= 0).sort("patch", "id")


def _truth_frame(truth: dict[str, np.ndarray], bands: tuple[str, ...]) -> pl.DataFrame:
    """Truth rows: id, is_star, fluxes (nJy), position, intrinsic shape, defect label, blend.

    ``parent`` is the blend's parent id (0 when isolated), ``blend_size`` its member count (1
    when isolated), ``designed_blend`` marks the designed groups' stars, and
    ``neighbour_flux_ratio`` / ``neighbour_sep_fwhm`` give the reference-band flux of the
    nearest other member of the blend over the object's own and its distance in reference-band
    FWHM (NaN when isolated).
    """
    return pl.DataFrame({
        "id": truth["id"],
        "is_star": truth["is_star"],
        **{f"{b}_flux_true": truth[f"{b}_flux_true"] for b in bands},
        "coord_ra": truth["coord_ra"],
        "coord_dec": truth["coord_dec"],
        "tract": np.full(truth["x"].size, TRACT, dtype=np.int64),
        "patch": truth["patch"],
        "x_tract": truth["x"],
        "y_tract": truth["y"],
        "intrinsic_xx": truth["qxx"],
        "intrinsic_yy": truth["qyy"],
        "intrinsic_xy": truth["qxy"],
        "nearest_px": _nearest_distance(truth["x"], truth["y"]),
        "defect": pl.Series(truth["defect"].tolist(), dtype=pl.String),
        "parent": truth["parent"],
        "blend_size": truth["blend_size"],
        "designed_blend": truth["designed_blend"],
        "neighbour_flux_ratio": truth["neighbour_flux_ratio"],
        "neighbour_sep_fwhm": truth["neighbour_sep_fwhm"],
    }).sort("id")


def _nearest_distance(x: np.ndarray, y: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Distance from each position to the nearest other one, pixels (inf when alone)."""
    out = np.full(x.size, np.inf)
    for start in range(0, x.size, chunk):
        d2 = (x[start:start + chunk, None] - x[None]) ** 2 \
            + (y[start:start + chunk, None] - y[None]) ** 2
        rows = np.arange(d2.shape[0])
        d2[rows, start + rows] = np.inf
        out[start:start + chunk] = np.sqrt(d2.min(axis=1))
    return out


def _write_parquet(df: pl.DataFrame, url: str, storage_options: StorageOptions) -> None:
    """Write ``df`` to one Parquet file at a local path or fsspec URL, whole or absent."""
    buf = io.BytesIO()
    df.write_parquet(buf)
    put_url(url, buf.getvalue(), storage_options)
