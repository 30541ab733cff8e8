"""Place reference objects on a tile.

Sky -> pixels through the tile's WCS; shapes -> the tile's pixel moments (from the reference
WCS's pixels, or from the sky tangent plane).
"""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
import polars as pl
from astropy.coordinates import ICRS, SkyCoord
from astropy.wcs import WCS, WCSCOMPARE_CRPIX
from astropy.wcs.utils import wcs_to_celestial_frame

from colphot.exceptions import ColphotWarning

__all__ = [
    "on_tile",
    "ref_moments_to_tile",
    "same_up_to_shift",
    "sky_moments_to_pixel",
    "sky_to_pixel",
    "tile_footprint",
]


def sky_to_pixel(wcs: WCS, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ICRS ``(ra, dec)`` in degrees to 0-based array pixel coordinates of ``wcs``.

    The WCS's own frame (FK5, Galactic, ...) is honoured through astropy.
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    if ra.size == 0:
        return np.empty(0), np.empty(0)
    coords = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        x, y = wcs.world_to_pixel(coords)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def sky_moments_to_pixel(
    wcs: WCS, x: np.ndarray, y: np.ndarray, sxx: np.ndarray, syy: np.ndarray, sxy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Second moments in the sky tangent plane (arcsec², x = east, y = north) to pixels².

    Uses the local Jacobian ``J`` (arcsec per pixel) of the WCS at each array position
    ``(x, y)``, by central differences of one pixel: ``Q_pix = J^-1 Q_sky J^-T``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    j11, j12, j21, j22 = _sky_jacobian(wcs, x, y)
    det = j11 * j22 - j12 * j21
    # inverse Jacobian (pixels per arcsec)
    return _congruence(j22 / det, -j12 / det, -j21 / det, j11 / det, sxx, syy, sxy)


def ref_moments_to_tile(
    ref_wcs: WCS | None, tile_wcs: WCS, ra: np.ndarray, dec: np.ndarray, ixx: np.ndarray,
    iyy: np.ndarray, ixy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Second moments in pixels² of ``ref_wcs`` to pixels² of ``tile_wcs``.

    Rubin's Object ``shape_xx/yy/xy`` are in pixels of the tract WCS. At each object's ICRS
    position ``(ra, dec)`` (degrees) the local affine map from reference pixels to tile
    pixels, ``J = d(tile pixel) / d(ref pixel) = B^-1 A`` with ``A`` and ``B`` the Jacobians
    (arcsec per pixel, ICRS east/north) of the two WCSs there, by central differences of one
    pixel, gives ``M_tile = J M_ref J^T`` (LSST's ForcedTransformedShape).

    ``ref_wcs=None``, or a ``ref_wcs`` that differs from ``tile_wcs`` only by ``CRPIX`` (a
    patch of its tract: ``J`` is the identity), returns the moments unchanged. NaN moments or
    positions give NaN.
    """
    ixx = np.asarray(ixx, dtype=np.float64)
    iyy = np.asarray(iyy, dtype=np.float64)
    ixy = np.asarray(ixy, dtype=np.float64)
    if ref_wcs is None or same_up_to_shift(ref_wcs, tile_wcs):
        return ixx, iyy, ixy
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    if ra.size == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    ok = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0)
    xr = np.full(ra.shape, np.nan)
    yr = np.full(ra.shape, np.nan)
    xt = np.full(ra.shape, np.nan)
    yt = np.full(ra.shape, np.nan)
    xr[ok], yr[ok] = sky_to_pixel(ref_wcs, ra[ok], dec[ok])
    xt[ok], yt[ok] = sky_to_pixel(tile_wcs, ra[ok], dec[ok])
    a11, a12, a21, a22 = _sky_jacobian(ref_wcs, xr, yr)
    b11, b12, b21, b22 = _sky_jacobian(tile_wcs, xt, yt)
    det = b11 * b22 - b12 * b21
    # J = B^-1 A
    j11 = (b22 * a11 - b12 * a21) / det
    j12 = (b22 * a12 - b12 * a22) / det
    j21 = (b11 * a21 - b21 * a11) / det
    j22 = (b11 * a22 - b21 * a12) / det
    return _congruence(j11, j12, j21, j22, ixx, iyy, ixy)


def same_up_to_shift(a: WCS, b: WCS) -> bool:
    """True when two celestial WCSs differ at most by ``CRPIX`` (a translation of the pixel
    grid, as a patch's WCS is its tract's): same wcslib parameters otherwise, same SIP
    coefficients, no lookup-table distortions."""
    if a is b:
        return True
    if any(getattr(w, k) is not None for w in (a, b)
           for k in ("cpdis1", "cpdis2", "det2im1", "det2im2")):
        return False
    if not a.wcs.compare(b.wcs, cmp=WCSCOMPARE_CRPIX):
        return False
    if (a.sip is None) != (b.sip is None):
        return False
    if a.sip is not None:
        for k in ("a", "b", "ap", "bp"):
            pa, pb = getattr(a.sip, k), getattr(b.sip, k)
            if (pa is None) != (pb is None) or (pa is not None and not np.array_equal(pa, pb)):
                return False
    return True


def _sky_jacobian(wcs: WCS, x: np.ndarray, y: np.ndarray, h: float = 1.0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Local Jacobian ``d(east, north) / d(x, y)`` of ``wcs`` at array positions ``(x, y)``,
    arcsec per pixel, ICRS tangent plane: ``(j11, j12, j21, j22)`` = (d east/dx, d east/dy,
    d north/dx, d north/dy), by central differences of ``h`` pixels."""
    n = x.size
    px = np.concatenate([x, x + h, x - h, x, x])
    py = np.concatenate([y, y, y, y + h, y - h])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lon, lat = wcs.pixel_to_world_values(px, py)
        frame = wcs_to_celestial_frame(wcs)
        if not isinstance(frame, ICRS):
            icrs = SkyCoord(lon, lat, unit="deg", frame=frame).icrs
            lon, lat = icrs.ra.deg, icrs.dec.deg
        east, north = _offsets_arcsec(np.tile(lon[:n], 4), np.tile(lat[:n], 4), lon[n:],
                                      lat[n:])
    j11 = (east[:n] - east[n:2 * n]) / (2 * h)
    j21 = (north[:n] - north[n:2 * n]) / (2 * h)
    j12 = (east[2 * n:3 * n] - east[3 * n:]) / (2 * h)
    j22 = (north[2 * n:3 * n] - north[3 * n:]) / (2 * h)
    return j11, j12, j21, j22


def _congruence(a11, a12, a21, a22, sxx, syy, sxy
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``A S A^T`` for the symmetric ``S = [[sxx, sxy], [sxy, syy]]``, elementwise."""
    sxx = np.asarray(sxx, dtype=np.float64)
    syy = np.asarray(syy, dtype=np.float64)
    sxy = np.asarray(sxy, dtype=np.float64)
    ixx = a11 * a11 * sxx + 2 * a11 * a12 * sxy + a12 * a12 * syy
    iyy = a21 * a21 * sxx + 2 * a21 * a22 * sxy + a22 * a22 * syy
    ixy = a11 * a21 * sxx + (a11 * a22 + a12 * a21) * sxy + a12 * a22 * syy
    return ixx, iyy, ixy


def _offsets_arcsec(lon0: np.ndarray, lat0: np.ndarray, lon: np.ndarray, lat: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """East and north offsets, arcsec, of ``(lon, lat)`` from ``(lon0, lat0)`` (degrees).

    The longitude and latitude of each point in the frame whose origin is ``(lon0, lat0)``
    (astropy's ``SkyCoord.spherical_offsets_to``), by the same two rotations in numpy.
    """
    lon0, lat0 = np.radians(lon0), np.radians(lat0)
    lon, lat = np.radians(lon), np.radians(lat)
    dlon = lon - lon0
    cos_lat = np.cos(lat)
    x1 = cos_lat * np.cos(dlon)
    y1 = cos_lat * np.sin(dlon)
    z1 = np.sin(lat)
    x2 = x1 * np.cos(lat0) + z1 * np.sin(lat0)
    z2 = z1 * np.cos(lat0) - x1 * np.sin(lat0)
    to_arcsec = 180.0 * 3600.0 / np.pi
    return (np.arctan2(y1, x2) * to_arcsec,
            np.arctan2(z2, np.hypot(x2, y1)) * to_arcsec)


def on_tile(
    refs: pl.DataFrame, wcs: WCS, shape: tuple[int, int], *, source: str = "references"
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Keep the references whose position falls on the tile's pixels.

    Returns the kept rows and their array pixel coordinates ``(x, y)``. Rows with non-finite
    coordinates are dropped with a :class:`ColphotWarning` naming how many and a few ids.
    """
    ra = refs["coord_ra"].to_numpy().astype(np.float64)
    dec = refs["coord_dec"].to_numpy().astype(np.float64)
    finite = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)
    if not finite.all():
        ids = refs["id"].filter(pl.Series(~finite)).head(5).to_list()
        warnings.warn(
            f"{source}: {int((~finite).sum())} reference(s) with non-finite or invalid "
            f"coord_ra/coord_dec skipped, e.g. ids {ids}",
            ColphotWarning,
            stacklevel=3,
        )
    x = np.full(ra.shape, np.nan)
    y = np.full(ra.shape, np.nan)
    x[finite], y[finite] = sky_to_pixel(wcs, ra[finite], dec[finite])
    ny, nx = shape
    keep = finite & (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    return refs.filter(pl.Series(keep)), x[keep], y[keep]


def tile_footprint(wcs: WCS, shape: tuple[int, int], *, margin: float = 0.0
                   ) -> tuple[float, float, float, float]:
    """ICRS bounding box ``(ra_min, ra_max, dec_min, dec_max)`` of a tile, degrees.

    Sampled along the tile's border; ``ra_min > ra_max`` when the box wraps through RA = 0.
    ``margin`` widens it, degrees. Used to prune reference catalogs before exact placement.
    """
    ny, nx = shape
    t = np.linspace(0.0, 1.0, 33)
    bx = np.concatenate([t * (nx - 1), np.full_like(t, nx - 1), t * (nx - 1), np.zeros_like(t)])
    by = np.concatenate([np.zeros_like(t), t * (ny - 1), np.full_like(t, ny - 1), t * (ny - 1)])
    # outer pixel edges: border pixel centres moved half a pixel away from the tile centre
    sky = wcs.pixel_to_world(bx + 0.5 * np.sign(bx - (nx - 1) / 2),
                             by + 0.5 * np.sign(by - (ny - 1) / 2))
    icrs = sky.icrs
    ra = np.mod(icrs.ra.deg, 360.0)
    dec = icrs.dec.deg
    dec_min = max(float(dec.min()) - margin, -90.0)
    dec_max = min(float(dec.max()) + margin, 90.0)
    if dec_max >= 89.0 or dec_min <= -89.0:
        return 0.0, 360.0, dec_min, dec_max
    # smallest arc containing all RAs
    s = np.sort(ra)
    gaps = np.diff(np.concatenate([s, [s[0] + 360.0]]))
    i = int(np.argmax(gaps))
    lo = s[(i + 1) % len(s)]
    hi = s[i]
    widen = margin / max(np.cos(np.radians(max(abs(dec_min), abs(dec_max)))), 1e-3)
    return float((lo - widen) % 360.0), float((hi + widen) % 360.0), dec_min, dec_max
