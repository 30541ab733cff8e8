"""Pixel flags: mask bits under each source, as LSST meas_base's ``PixelFlagsAlgorithm``.

For every source, with Rubin's column names (``base_PixelFlags_flag_X`` -> ``pixelFlags_X``,
``base_PixelFlags_flag`` -> ``pixelFlags``):

* ``pixelFlags`` -- general failure: the centroid is not finite (LSST: no centroid, or a
  measurement error).
* ``pixelFlags_offimage`` -- the centroid is not in the float box of the image, LSST's
  ``Box2D(bbox).contains``: ``-0.5 <= x < nx - 0.5`` and ``-0.5 <= y < ny - 0.5`` (array pixel
  coordinates, 0-based; a non-finite centroid is off the image). It also sets ``edge``,
  ``edgeCenter`` and ``edgeCenterAll``.
* ``pixelFlags_<plane>`` -- the plane is set on any pixel of the source's footprint, clipped to
  the image. The footprint is the source's deblended heavy footprint when one is given
  (:class:`colphot.measure.footprints.Footprints`), else colphot's stand-in for LSST's
  reference footprint: the pixels whose centres lie within ``radius`` pixels of the centroid
  (``dx**2 + dy**2 <= radius**2``).
* ``pixelFlags_<plane>Center`` / ``pixelFlags_<plane>CenterAll`` -- the plane is set on any /
  on every pixel of the 3 x 3 box around ``positionToIndex(centroid) = floor(c + 0.5)``,
  clipped to the image. As in LSST, "every pixel" of an empty clipped box is vacuously true:
  a centroid more than 1.5 px off the image sets every ``...CenterAll`` flag of the planes the
  mask defines. With a non-finite centroid the centre flags are not computed (only the
  footprint flags and the ``edge*`` flags of ``offimage`` are set), as in LSST.

The planes are LSST's seven (EDGE, NO_DATA, INTRP, SAT, CR, BAD, SUSPECT) plus ``extra_planes``
(LSST's ``masksFpAnywhere``/``masksFpCenter``; default :data:`COADD_PLANES`, Rubin's coadd
forced photometry), named by the lowercased plane name. LSST has no rule that a footprint cut
by the image border sets ``edge``: only the EDGE mask plane (and ``offimage``) does; NO_DATA
sets ``nodata`` only. A plane the mask does not define never sets its flags.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from colphot._arrays import as_mask
from colphot.measure.footprints import Footprints, footprint_mask_bits

__all__ = [
    "BASE_PLANES",
    "COADD_PLANES",
    "GENERAL_FLAG",
    "PIXEL_FLAGS",
    "pixel_flag_columns",
    "pixel_flag_names",
    "pixel_flag_table",
]

#: Rubin's name of ``base_PixelFlags_flag`` (sdm_schemas: DiaSource ``pixelFlags``).
GENERAL_FLAG = "pixelFlags"

#: LSST's built-in planes, in the order of its schema, and their column suffixes.
BASE_PLANES: tuple[tuple[str, str], ...] = (
    ("EDGE", "edge"),
    ("NO_DATA", "nodata"),
    ("INTRP", "interpolated"),
    ("SAT", "saturated"),
    ("CR", "cr"),
    ("BAD", "bad"),
    ("SUSPECT", "suspect"),
)

#: ``masksFpAnywhere`` = ``masksFpCenter`` of Rubin's ``ForcedPhotCoaddConfig``.
COADD_PLANES: tuple[str, ...] = ("CLIPPED", "SENSOR_EDGE", "REJECTED", "INEXACT_PSF")

#: ``(column suffix, mask plane, where)`` of the built-in planes, in LSST's schema order;
#: ``where`` is "footprint" (any pixel of the footprint), "center" (any pixel of the 3 x 3
#: centre) or "centerAll" (every pixel of the 3 x 3 centre).
PIXEL_FLAGS: tuple[tuple[str, str, str], ...] = (
    tuple((suffix, plane, "footprint") for plane, suffix in BASE_PLANES)
    + tuple((suffix + "Center", plane, "center") for plane, suffix in BASE_PLANES)
    + tuple((suffix + "CenterAll", plane, "centerAll") for plane, suffix in BASE_PLANES)
)


def _check_extra(extra_planes: tuple[str, ...]) -> tuple[str, ...]:
    extra = tuple(extra_planes)
    base = {plane for plane, _ in BASE_PLANES}
    for plane in extra:
        if not isinstance(plane, str) or not plane:
            raise TypeError(f"extra_planes: expected mask-plane names, got {plane!r}")
    taken = {suffix for _, suffix in BASE_PLANES} | {"offimage"}
    seen = [p.lower() for p in extra]
    dup = sorted({p for p in extra
                  if p in base or p.lower() in taken or seen.count(p.lower()) > 1})
    if dup:
        raise ValueError(f"extra_planes: {dup} repeat a plane or column (LSST would add a "
                         "field twice)")
    return extra


def pixel_flag_table(extra_planes: tuple[str, ...] = COADD_PLANES
                     ) -> tuple[tuple[str, str, str], ...]:
    """``(column suffix, plane, where)`` of every mask-plane flag, in LSST's schema order.

    :data:`PIXEL_FLAGS`, then ``<plane>Center`` of each extra plane, ``<plane>CenterAll`` of
    each, and ``<plane>`` of each (``plane`` lowercased), as ``PixelFlagsAlgorithm`` adds them.
    """
    extra = _check_extra(extra_planes)
    return (PIXEL_FLAGS
            + tuple((p.lower() + "Center", p, "center") for p in extra)
            + tuple((p.lower() + "CenterAll", p, "centerAll") for p in extra)
            + tuple((p.lower(), p, "footprint") for p in extra))


def pixel_flag_names(extra_planes: tuple[str, ...] = COADD_PLANES) -> list[str]:
    """The column names :func:`pixel_flag_columns` returns, in order."""
    return [GENERAL_FLAG, "pixelFlags_offimage"] + [
        f"pixelFlags_{suffix}" for suffix, _, _ in pixel_flag_table(extra_planes)]


def pixel_flag_columns(
    mask: np.ndarray | None,
    planes: dict[str, int],
    x: np.ndarray,
    y: np.ndarray,
    *,
    radius: np.ndarray | float,
    footprints: Footprints | None = None,
    extra_planes: tuple[str, ...] = COADD_PLANES,
    shape: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """LSST's ``base_PixelFlags`` columns of every source (see the module docstring).

    Parameters
    ----------
    mask
        2D integer bit planes of the image, or None (no mask: every mask-plane flag False,
        only ``pixelFlags``, ``offimage`` and the ``edge*`` flags it sets can be True).
    planes
        Mask-plane name -> bit number (0-63); planes not in it never set their flags.
    x, y
        ``(n,)`` centroids, array pixel coordinates (0-based, pixel centres on integers).
    radius
        Radius, pixels, of each source's circular footprint (scalar or ``(n,)``; a NaN radius
        gives an empty footprint). Not used when ``footprints`` is given.
    footprints
        One deblended heavy footprint per source, clipped to the image
        (:func:`colphot.measure.footprints.clip_footprints`): the footprint flags are then the
        OR of the mask over its pixels.
    extra_planes
        More planes, LSST's ``masksFpAnywhere`` = ``masksFpCenter``.
    shape
        ``(ny, nx)`` of the image; needed only when ``mask`` is None.

    Returns
    -------
    dict
        Boolean ``(n,)`` arrays, keyed and ordered as :func:`pixel_flag_names`.
    """
    table = pixel_flag_table(extra_planes)
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x, y: expected 1D arrays of one length, got shapes {x.shape}, {y.shape}")
    n = x.shape[0]
    if mask is not None:
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"mask: expected a 2D array, got shape {mask.shape}")
        if shape is not None and tuple(shape) != mask.shape:
            raise ValueError(f"shape {tuple(shape)} does not match the mask's {mask.shape}")
        mask = as_mask("mask", mask, shape=mask.shape)
        ny, nx = mask.shape
    elif shape is None:
        raise ValueError("shape: needed when there is no mask")
    else:
        ny, nx = (int(v) for v in shape)
    for name, bit in planes.items():
        if isinstance(bit, bool) or not isinstance(bit, int | np.integer) or not 0 <= bit < 64:
            raise ValueError(f"planes: {name!r} -> {bit!r} is not a bit number 0-63")
    if footprints is not None and len(footprints) != n:
        raise ValueError(f"footprints: expected one per source ({n}), got {len(footprints)}")
    r = np.broadcast_to(np.asarray(radius, dtype=np.float64), (n,))
    if footprints is None and (r < 0).any():
        raise ValueError("radius: must not be negative")

    finite = np.isfinite(x) & np.isfinite(y)
    off = ~((x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5))
    foot = np.zeros(n, dtype=np.uint64)
    cany = np.zeros(n, dtype=np.uint64)
    call = np.zeros(n, dtype=np.uint64)
    if mask is not None:
        _pixel_flags_kernel(mask, x, y, np.ascontiguousarray(r), footprints is None,
                            foot, cany, call)
        if footprints is not None:
            foot = footprint_mask_bits(mask, footprints)

    sources = {"footprint": foot, "center": cany, "centerAll": call}
    out: dict[str, np.ndarray] = {GENERAL_FLAG: ~finite, "pixelFlags_offimage": off}
    for suffix, plane, where in table:
        if plane in planes:
            out[f"pixelFlags_{suffix}"] = (sources[where] & np.uint64(1 << int(planes[plane]))) != 0
        else:
            out[f"pixelFlags_{suffix}"] = np.zeros(n, dtype=np.bool_)
    for suffix in ("edge", "edgeCenter", "edgeCenterAll"):
        out[f"pixelFlags_{suffix}"] |= off
    return out


@njit(cache=True, nogil=True)
def _pixel_flags_kernel(mask, xs, ys, rs, circle, foot, cany, call):
    """Per source: OR of the mask over the circle (when ``circle``), OR and AND over the
    clipped 3 x 3 centre (AND of no pixel: all ones). Non-finite centroids are skipped."""
    ny, nx = mask.shape
    for s in range(xs.shape[0]):
        x = xs[s]
        y = ys[s]
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        if circle:
            acc = np.uint64(0)
            r = rs[s]
            if r >= 0.0:  # False for NaN
                r2 = r * r
                # bounds one pixel wide of the circle, cut by the exact test below
                # (clamped as floats first: no integer overflow for far-off centroids)
                j0 = int(min(max(0.0, math.ceil(y - r) - 1.0), float(ny)))
                j1 = int(max(min(ny - 1.0, math.floor(y + r) + 1.0), -1.0))
                for j in range(j0, j1 + 1):
                    dy = j - y
                    dy2 = dy * dy
                    rem = r2 - dy2
                    if rem < 0.0:
                        continue
                    w = math.sqrt(rem)
                    lo = int(min(max(0.0, math.ceil(x - w) - 1.0), float(nx)))
                    hi = int(max(min(nx - 1.0, math.floor(x + w) + 1.0), -1.0))
                    while lo <= hi:
                        dx = lo - x
                        if dx * dx + dy2 <= r2:
                            break
                        lo += 1
                    while hi >= lo:
                        dx = hi - x
                        if dx * dx + dy2 <= r2:
                            break
                        hi -= 1
                    row = mask[j]
                    for i in range(lo, hi + 1):
                        acc |= np.uint64(row[i])
            foot[s] = acc
        xc = math.floor(x + 0.5)
        yc = math.floor(y + 0.5)
        a = np.uint64(0)
        b = ~np.uint64(0)
        i0 = max(xc - 1.0, 0.0)
        i1 = min(xc + 1.0, nx - 1.0)
        k0 = max(yc - 1.0, 0.0)
        k1 = min(yc + 1.0, ny - 1.0)
        if i0 <= i1 and k0 <= k1:
            for j in range(int(k0), int(k1) + 1):
                row = mask[j]
                for i in range(int(i0), int(i1) + 1):
                    v = np.uint64(row[i])
                    a |= v
                    b &= v
        cany[s] = a
        call[s] = b
