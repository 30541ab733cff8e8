"""Blends of the simulated survey: detection discs, blend families, and perfect heavy footprints.

A simulated object is "detected" in a disc around its true centre (:func:`footprint_radius`);
objects whose discs overlap, transitively, form one family (:func:`blend_families`), and a family
of two or more objects is a blend with a parent. :func:`in_band_frame` writes one tile's
in-band catalog (``catalogs/in_band.yaml``) with the heavy footprints a *perfect* deblender with
flux conservation gives: each child receives the observed pixels of the parent's footprint in
proportion to its own noise-free model, so the children sum to the parent's pixels exactly.

Everything is numpy on positions in pixels (0-based, pixel centres at integers) and fluxes in
nJy; nothing here needs Dask.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow as pa

from colphot.sim.scene import WING_FLUX, WING_RATIO, GriddedPsf, Sources, render_boxes

__all__ = [
    "FWHM_PER_SIGMA",
    "blend_families",
    "footprint_radius",
    "in_band_frame",
]

#: Gaussian FWHM / sigma, as the survey rounds it.
FWHM_PER_SIGMA = 2.355


def footprint_radius(
    flux: np.ndarray | float,
    qxx: np.ndarray | float,
    qyy: np.ndarray | float,
    psf_sigma: np.ndarray | float,
    sky_sigma: np.ndarray | float,
    *,
    threshold: float = 1.0,
    grow: float = 2.0,
    minimum: np.ndarray | float | None = None,
) -> np.ndarray:
    """Radius of each object's detection disc, pixels.

    The object is approximated by a circular Gaussian of its total flux and variance
    ``sigma² = psf_sigma² + (qxx + qyy) / 2`` (the PSF's core plus the mean intrinsic second
    moment); the disc reaches where that profile's surface brightness falls to
    ``threshold * sky_sigma`` per pixel, is grown by ``grow`` pixels and is at least
    ``minimum`` (2 PSF FWHM, ``2 * 2.355 * psf_sigma``, by default). The PSF's wing (10 % of
    the flux at twice the core sigma) is ignored: the disc is a generous detection footprint,
    not an isophote.

    Parameters
    ----------
    flux
        Total fluxes, nJy (``<= 0`` gives the minimum radius).
    qxx, qyy
        Intrinsic second moments, pixels² (0 for point sources).
    psf_sigma
        PSF core sigma, pixels.
    sky_sigma
        Sky noise per pixel, nJy.
    threshold
        Detection level in units of ``sky_sigma``.
    grow
        Pixels added to the isophotal radius.
    minimum
        Smallest radius, pixels; ``None`` for 2 PSF FWHM.

    Returns
    -------
    numpy.ndarray
        float64 radii, pixels, broadcast over the inputs (at least 1-D).
    """
    flux, qxx, qyy, psf_sigma, sky_sigma = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(v, dtype=np.float64))
          for v in (flux, qxx, qyy, psf_sigma, sky_sigma)))
    q = 0.5 * (qxx + qyy)
    v1 = psf_sigma**2 + q
    v2 = (WING_RATIO * psf_sigma) ** 2 + q
    level = threshold * sky_sigma

    def profile(r: np.ndarray) -> np.ndarray:
        return flux * ((1.0 - WING_FLUX) * np.exp(-0.5 * r * r / v1) / (2.0 * math.pi * v1)
                       + WING_FLUX * np.exp(-0.5 * r * r / v2) / (2.0 * math.pi * v2))

    # the isophote lies below the radius where the wider component alone, doubled, would reach
    # the level; bisect on [0, that radius] (the profile falls monotonically)
    with np.errstate(divide="ignore", invalid="ignore"):
        top = np.sqrt(2.0 * np.maximum(v1, v2) * np.log(np.maximum(
            2.0 * flux / (2.0 * math.pi * v1 * level), 1.0)))
    lo = np.zeros_like(top)
    hi = np.where(np.isfinite(top), top, 0.0) + 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        above = profile(mid) > level
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    radius = np.where(profile(np.zeros_like(lo)) > level, lo, 0.0) + grow
    if minimum is None:
        minimum = 2.0 * FWHM_PER_SIGMA * psf_sigma
    return np.maximum(radius, np.asarray(minimum, dtype=np.float64))


def blend_families(x: np.ndarray, y: np.ndarray, radius: np.ndarray, *, chunk: int = 256
                   ) -> np.ndarray:
    """Label objects whose discs overlap, transitively (connected components).

    Two discs overlap when the distance between their centres is less than the sum of their
    radii. Pairs are found in chunks of ``chunk`` objects (sorted by ``x``) against the objects
    within reach along ``x``; components by vectorised union-find (min-label propagation with
    pointer jumping).

    Parameters
    ----------
    x, y
        ``(n,)`` disc centres, pixels.
    radius
        ``(n,)`` disc radii, pixels.
    chunk
        Objects per vectorised block.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` int64 family labels ``0 .. k-1``, numbered in the order of each family's first
        object in the input.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    radius = np.broadcast_to(np.asarray(radius, dtype=np.float64), x.shape)
    n = x.size
    if y.shape != x.shape:
        raise ValueError(f"y: expected shape {x.shape}, got {y.shape}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(x, kind="stable")
    xs, ys, rs = x[order], y[order], radius[order]
    reach = 2.0 * float(rs.max())
    first: list[np.ndarray] = []
    second: list[np.ndarray] = []
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        # candidates: sorted objects after this block's first one, within reach along x
        hi = int(np.searchsorted(xs, xs[stop - 1] + reach, side="right"))
        cols = np.arange(start, hi)
        rows = np.arange(start, stop)
        d2 = (xs[rows, None] - xs[None, cols]) ** 2 + (ys[rows, None] - ys[None, cols]) ** 2
        hit = (d2 < (rs[rows, None] + rs[None, cols]) ** 2) & (cols[None, :] > rows[:, None])
        a, b = np.nonzero(hit)
        first.append(order[rows[a]])
        second.append(order[cols[b]])
    i = np.concatenate(first)
    j = np.concatenate(second)
    labels = np.arange(n, dtype=np.int64)
    while True:
        low = np.minimum(labels[i], labels[j])
        new = labels.copy()
        np.minimum.at(new, i, low)
        np.minimum.at(new, j, low)
        new = new[new]  # labels are indices of smaller-or-equal objects: jump to their label
        if np.array_equal(new, labels):
            break
        labels = new
    _, family = np.unique(labels, return_inverse=True)
    return family.astype(np.int64)


def _disc(x: float, y: float, r: float, shape: tuple[int, int]
          ) -> tuple[int, int, np.ndarray] | None:
    """``(i0, j0, mask)``: the tile pixels within ``r`` of ``(x, y)`` on their tight box."""
    ny, nx = shape
    if not (math.isfinite(x) and math.isfinite(y) and r >= 0):
        return None
    j0, j1 = max(math.ceil(x - r), 0), min(math.floor(x + r) + 1, nx)
    i0, i1 = max(math.ceil(y - r), 0), min(math.floor(y + r) + 1, ny)
    if j0 >= j1 or i0 >= i1:
        return None
    dx2 = (np.arange(j0, j1, dtype=np.float64) - x) ** 2
    dy2 = (np.arange(i0, i1, dtype=np.float64) - y) ** 2
    mask = dy2[:, None] + dx2[None, :] <= r * r
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    mask = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return i0 + int(rows[0]), j0 + int(cols[0]), mask


def _list_series(name: str, values: list[np.ndarray], dtype: type[np.generic]) -> pl.Series:
    """A polars List series from per-row numpy arrays, via one flat array and its offsets.

    The Arrow arrays are assembled from the numpy buffers (booleans bit-packed), which keeps
    ``pyarrow.array``'s pandas import out of the simulation.
    """
    sizes = np.array([v.size for v in values], dtype=np.int64)
    offsets = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(sizes)])
    flat = np.concatenate(values).astype(dtype) if values else np.zeros(0, dtype=dtype)
    if dtype is np.bool_:
        kind = pa.bool_()
        data = pa.py_buffer(np.packbits(flat, bitorder="little"))
    else:
        kind = pa.from_numpy_dtype(np.dtype(dtype))
        data = pa.py_buffer(np.ascontiguousarray(flat))
    child = pa.Array.from_buffers(kind, flat.size, [None, data])
    arrow = pa.Array.from_buffers(pa.large_list(kind), sizes.size,
                                  [None, pa.py_buffer(offsets)], children=[child])
    return pl.Series(name, arrow)


def in_band_frame(
    image: np.ndarray,
    sources: Sources,
    psf: GriddedPsf,
    ids: np.ndarray,
    parents: np.ndarray,
    radius: np.ndarray,
    *,
    band: str,
    tract: int,
    patch: int,
    xy0: tuple[int, int],
) -> pl.DataFrame:
    """One tile's in-band catalog with a perfect, flux-conserving deblender's heavy footprints.

    An object's footprint is its disc of ``radius`` around its true centre, restricted to the
    tile. An isolated object (``parent == 0``) gets a row when its disc covers a tile pixel
    centre: its footprint is the disc and its values the observed pixels. A blend (the objects
    sharing a parent id) gets rows when the union of its members' discs covers a tile pixel:
    one for the parent (``id`` = the parent id, ``parent`` = 0; footprint the union, values the
    observed pixels) and one per member, also a member whose own disc misses the tile. A
    child's footprint is the parent's, its values the observed pixels times
    ``M_child / sum_members M``, where ``M`` is the member's noise-free model alone on the
    footprint box, drawn as :func:`colphot.sim.scene.render_model` draws it on the tile (the
    PSF at the member's tile position; :func:`colphot.sim.scene.render_boxes`); 0 where the
    members' models sum to 0. Non-finite pixels (NO_DATA) stay in the footprint with
    non-finite values, as a heavy footprint copies the coadd's pixels.

    Parameters
    ----------
    image
        ``(ny, nx)`` observed pixels of the tile, nJy (after noise and defects; NaN allowed).
    sources
        Every object that may touch the tile, tile array coordinates (true centres, this band's
        fluxes in nJy, intrinsic moments in pixels²); every member of a blend that touches the
        tile must be included.
    psf
        The tile's PSF (the one the pixels were rendered with).
    ids
        ``(m,)`` object ids.
    parents
        ``(m,)`` blend parent id of each object, 0 when isolated.
    radius
        ``(m,)`` footprint radii, pixels (:func:`footprint_radius`).
    band, tract, patch
        The tile's band, tract and patch (columns of every row).
    xy0
        Parent-frame pixel of the tile's array pixel ``[0, 0]`` (footprint boxes are in the
        parent frame).

    Returns
    -------
    polars.DataFrame
        The columns of ``catalogs/in_band.yaml`` with its dtypes, one row per footprint,
        sorted by ``id``.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image: expected a 2-D array, got shape {image.shape}")
    shape = (int(image.shape[0]), int(image.shape[1]))
    m = len(sources)
    ids = np.asarray(ids, dtype=np.int64).ravel()
    parents = np.asarray(parents, dtype=np.int64).ravel()
    radius = np.broadcast_to(np.asarray(radius, dtype=np.float64), (m,))
    for name, value in (("ids", ids), ("parents", parents)):
        if value.shape != (m,):
            raise ValueError(f"{name}: expected shape ({m},), got {value.shape}")
    blend_ids = np.unique(parents[parents != 0])
    if np.isin(blend_ids, ids).any():
        raise ValueError("parents: a parent id is also an object id")

    row_id: list[int] = []
    row_parent: list[int] = []
    row_box: list[tuple[int, int, int, int]] = []  # (i0, j0, height, width), array frame
    row_mask: list[np.ndarray] = []
    row_flux: list[np.ndarray] = []
    discs = [_disc(float(sources.x[k]), float(sources.y[k]), float(radius[k]), shape)
             for k in range(m)]

    def add(obj: int, parent: int, i0: int, j0: int, mask: np.ndarray, flux: np.ndarray
            ) -> None:
        row_id.append(obj)
        row_parent.append(parent)
        row_box.append((i0, j0, mask.shape[0], mask.shape[1]))
        row_mask.append(mask.ravel())
        row_flux.append(flux.astype(np.float32).ravel())

    for k in np.flatnonzero(parents == 0):
        disc = discs[k]
        if disc is None:
            continue
        i0, j0, mask = disc
        pixels = image[i0:i0 + mask.shape[0], j0:j0 + mask.shape[1]]
        add(int(ids[k]), 0, i0, j0, mask, np.where(mask, pixels, 0.0))

    # blends: the union of the members' discs, then every touching blend's members rendered
    # alone on its box in one pass
    blends: list[tuple[int, np.ndarray, int, int, np.ndarray]] = []
    for parent in blend_ids:
        members = np.flatnonzero(parents == parent)
        hits = [discs[k] for k in members if discs[k] is not None]
        if not hits:
            continue
        i0 = min(d[0] for d in hits)
        j0 = min(d[1] for d in hits)
        i1 = max(d[0] + d[2].shape[0] for d in hits)
        j1 = max(d[1] + d[2].shape[1] for d in hits)
        mask = np.zeros((i1 - i0, j1 - j0), dtype=bool)
        for di, dj, dm in hits:
            mask[di - i0:di - i0 + dm.shape[0], dj - j0:dj - j0 + dm.shape[1]] |= dm
        blends.append((int(parent), members, i0, j0, mask))
    drawn = np.concatenate([b[1] for b in blends]) if blends else np.zeros(0, dtype=np.int64)
    boxes = np.array([(i0, j0, *mask.shape) for _, members, i0, j0, mask in blends
                      for _ in members], dtype=np.int64).reshape(-1, 4)
    models = iter(render_boxes(boxes, Sources(
        sources.x[drawn], sources.y[drawn], sources.flux[drawn], sources.qxx[drawn],
        sources.qyy[drawn], sources.qxy[drawn]), psf))

    for parent, members, i0, j0, mask in blends:
        h, w = mask.shape
        pixels = image[i0:i0 + h, j0:j0 + w].astype(np.float64)
        add(parent, 0, i0, j0, mask, np.where(mask, pixels, 0.0))
        layers = np.stack([next(models) for _ in members])
        total = layers.sum(axis=0)
        lit = mask & (total > 0)
        share = np.divide(layers, total, out=np.zeros_like(layers), where=lit[None])
        for k, frac in zip(members, share, strict=True):
            add(int(ids[k]), parent, i0, j0, mask, np.where(lit, pixels * frac, 0.0))

    order = np.argsort(np.asarray(row_id, dtype=np.int64), kind="stable")
    boxes = np.asarray(row_box, dtype=np.int64).reshape(-1, 4)[order]
    n = order.size
    return pl.DataFrame([
        pl.Series("id", np.asarray(row_id, dtype=np.int64)[order], dtype=pl.Int64),
        pl.Series("band", [band] * n, dtype=pl.String),
        pl.Series("tract", np.full(n, tract, dtype=np.int64), dtype=pl.Int64),
        pl.Series("patch", np.full(n, patch, dtype=np.int64), dtype=pl.Int64),
        pl.Series("parent", np.asarray(row_parent, dtype=np.int64)[order], dtype=pl.Int64),
        pl.Series("footprint_x0", boxes[:, 1] + int(xy0[0]), dtype=pl.Int64),
        pl.Series("footprint_y0", boxes[:, 0] + int(xy0[1]), dtype=pl.Int64),
        pl.Series("footprint_width", boxes[:, 3].astype(np.int32), dtype=pl.Int32),
        pl.Series("footprint_height", boxes[:, 2].astype(np.int32), dtype=pl.Int32),
        _list_series("footprint_mask", [row_mask[k] for k in order], np.bool_),
        _list_series("footprint_flux", [row_flux[k] for k in order], np.float32),
    ])
