"""QA figures of a forced-source dataset: PNG files drawn with matplotlib's Agg renderer.

:func:`write_qa` writes the figure set. Each figure is drawn from arrays that a small pure
function returns (``flux_vs_truth``, ``pulls``, ``pull_histogram``, ``colour_magnitude``,
``colour_colour``, ``sky_grid``, ``density_map``, ``depth_map``, ``flag_fractions``), so that
the numbers drawn can be checked without reading pixels. No pyplot state is touched: figures are
:class:`matplotlib.figure.Figure` objects on an Agg canvas.

Figures (file names are stable):

``psf_flux_vs_truth_<band>.png`` (with truth)
    psfFlux against the true flux and their ratio, stars and galaxies of the truth apart.
``pulls.png`` (with truth)
    Per band, histogram of ``(psfFlux - true) / psfFluxErr`` for clean isolated stars, the
    selection and statistics of :func:`colphot.sim.demo.truth_summary`, against N(0, 1).
``colour_magnitude.png`` (2 or more bands)
    One panel per pair of neighbouring bands: ``b1 - b2`` against ``b2`` (PSF magnitudes of
    the Object table, S/N >= 5 and no PSF-flux flag in both bands).
``colour_colour.png`` (3 or more bands)
    One panel per three neighbouring bands: ``b1 - b2`` against ``b2 - b3``.
``sky_density.png``
    Primary objects per arcmin² in sky cells.
``depth_5sigma.png``
    Per band, the AB magnitude of 5 x the median psfFluxErr of the unflagged rows in each cell.
``flag_fractions.png``
    Per band, the fraction of rows with each ``*_flag`` and ``pixelFlags_*`` column set.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from colphot._fs import filesystem, is_local, join, polars_storage_options, put_url, strip_protocol
from colphot._typing import PathLike, StorageOptions
from colphot.exceptions import SchemaError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FIGURE_NAMES",
    "colour_colour",
    "colour_magnitude",
    "density_map",
    "depth_map",
    "flag_fractions",
    "flux_vs_truth",
    "order_bands",
    "primary_pivot",
    "pull_histogram",
    "pulls",
    "sky_grid",
    "write_qa",
]

#: AB magnitude of 1 nJy.
AB_NJY_ZEROPOINT = 31.4
#: Bands in wavelength order; other band names follow, alphabetically.
BAND_ORDER = ("u", "g", "r", "i", "z", "y")
#: Columns of the forced-source table the figures need.
REQUIRED_COLUMNS = ("objectId", "band", "tract", "patch", "coord_ra", "coord_dec", "psfFlux",
                    "psfFluxErr", "psfFlux_flag")
#: Further columns read when present (clean-star selection, the primary-copy fallback).
OPTIONAL_COLUMNS = ("psfMag", "centroid_x", "centroid_y", "pixelFlags_edge",
                    "pixelFlags_saturated", "pixelFlags_bad", "pixelFlags_interpolated")
#: Flags that exclude a star from the pull histogram (those of ``truth_summary``); a missing
#: column counts as unset.
CLEAN_FLAGS = ("psfFlux_flag", "pixelFlags_edge", "pixelFlags_saturated", "pixelFlags_bad",
               "pixelFlags_interpolated")
#: Truth columns besides ``<band>_flux_true``.
TRUTH_COLUMNS = ("id", "is_star", "nearest_px")
#: Isolation of the stars in the pull histogram, pixels to the nearest other object.
ISOLATION = 10.0
#: Pull histogram range (+-) and bins.
PULL_LIMIT, PULL_BINS = 5.0, 40
#: Minimum S/N in each band of a colour.
SNR_MIN = 5.0
#: Mean primary objects per sky cell aimed at, and the most cells along an axis.
PER_CELL, MAX_CELLS = 8.0, 60
DPI = 100

#: Every fixed file name; truth figures are ``psf_flux_vs_truth_<band>.png``.
FIGURE_NAMES = ("pulls.png", "colour_magnitude.png", "colour_colour.png", "sky_density.png",
                "depth_5sigma.png", "flag_fractions.png")
_TRUTH_PREFIX = "psf_flux_vs_truth_"

_VALUE_COLUMNS = ("psfFlux", "psfFluxErr", "psfMag", "psfFlux_flag")


# --------------------------------------------------------------------------------------------
# the entry point


def write_qa(
    dataset: PathLike,
    out_dir: PathLike,
    *,
    truth: PathLike | pl.DataFrame | None = None,
    objects: PathLike | pl.DataFrame | pl.LazyFrame | None = None,
    refs: PathLike | pl.DataFrame | None = None,
    storage_options: StorageOptions = None,
) -> list[Path | str]:
    """Write the QA figures of a forced-source dataset as PNG files under ``out_dir``.

    Parameters
    ----------
    dataset
        Root of a forced-source dataset written by ``colphot run`` / ``write_forced`` (local
        folder or fsspec URL).
    out_dir
        Output folder (created) or fsspec URL. Figures of the fixed names (see
        :data:`FIGURE_NAMES` and ``psf_flux_vs_truth_<band>.png``) that this call does not
        write, left there by an earlier call, are removed, so that the folder shows one
        dataset.
    truth
        The survey's truth Parquet (:attr:`colphot.sim.SurveyInfo.truth_path`) or that frame:
        ``id``, ``is_star``, ``nearest_px`` and ``<band>_flux_true`` (nJy) for every band of
        the dataset. Without it the truth figures are not drawn.
    objects
        A written Object table (opened with ``colphot.objects.open_objects``) or that frame.
        Default: ``colphot.objects.object_frame(dataset)``. Rows with ``detect_isPrimary``
        false are left out. Until ``colphot.objects`` is installed, a stand-in built here
        (:func:`primary_pivot`).
    refs
        Reference catalog handed to ``object_frame`` (each object's primary patch) when
        ``objects`` is not given.
    storage_options
        fsspec options for remote ``dataset``, ``truth``, ``objects`` and ``out_dir``.

    Returns
    -------
    list
        The files written, in drawing order: :class:`pathlib.Path` for a local ``out_dir``,
        URL strings otherwise. Colour-magnitude needs 2 bands and colour-colour 3; with fewer
        that figure is not written.

    Raises
    ------
    FileNotFoundError
        ``dataset`` holds no dataset, or ``truth`` / ``objects`` does not exist (the message
        names the path).
    ValueError
        The dataset has no rows.
    SchemaError
        The dataset, truth or Object table lacks a column the figures need (named).
    """
    forced, flags = _load_forced(dataset, storage_options)
    bands = order_bands(forced["band"].unique().to_list())
    truth_df = None if truth is None else _load_truth(truth, bands, storage_options)
    objs = _load_objects(dataset, forced, bands, objects, storage_options, refs=refs)

    figures: list[tuple[str, Figure]] = []
    if truth_df is not None:
        from colphot.sim.demo import truth_summary

        summary = truth_summary(_with_clean_flags(forced), truth_df, isolation=ISOLATION)
        stats = {row["band"]: row for row in summary.iter_rows(named=True)}
        for band in bands:
            figures.append((f"{_TRUTH_PREFIX}{band}.png",
                            _plot_flux_vs_truth(band, flux_vs_truth(forced, truth_df, band),
                                                stats[band])))
        figures.append(("pulls.png", _plot_pulls(
            {b: pulls(forced, truth_df, b) for b in bands}, stats)))
    is_star = _star_lookup(truth_df)
    if len(bands) >= 2:
        figures.append(("colour_magnitude.png",
                        _plot_colours(colour_magnitude(objs, bands), is_star, kind="cmd")))
    if len(bands) >= 3:
        figures.append(("colour_colour.png",
                        _plot_colours(colour_colour(objs, bands), is_star, kind="ccd")))
    ra, dec = _sky(objs["coord_ra"].to_numpy()), objs["coord_dec"].to_numpy()
    ok = np.isfinite(ra) & np.isfinite(dec)
    grid = sky_grid(ra[ok], dec[ok])
    figures.append(("sky_density.png",
                    _plot_density(density_map(ra[ok], dec[ok], *grid), grid, int(ok.sum()))))
    # coarser cells for the depth (about 4x the rows per cell): a median of few errors is noisy
    depth_grid = sky_grid(ra[ok], dec[ok], per_cell=4 * PER_CELL)
    depths = {}
    for band in bands:
        rows = forced.filter((pl.col("band") == band) & ~pl.col("psfFlux_flag").fill_null(True))
        depths[band] = depth_map(_sky(rows["coord_ra"].to_numpy()), rows["coord_dec"].to_numpy(),
                                 rows["psfFluxErr"].to_numpy(), *depth_grid)
    figures.append(("depth_5sigma.png", _plot_depth(depths, depth_grid)))
    figures.append(("flag_fractions.png", _plot_flags(flags, bands)))

    written = [_save(fig, out_dir, name, storage_options) for name, fig in figures]
    _remove_stale(out_dir, {name for name, _ in figures}, storage_options)
    return written


# --------------------------------------------------------------------------------------------
# inputs


def order_bands(bands: Sequence[str]) -> list[str]:
    """Bands in wavelength order (:data:`BAND_ORDER`), unknown names after, alphabetically."""
    rank = {b: i for i, b in enumerate(BAND_ORDER)}
    return sorted(set(bands), key=lambda b: (rank.get(b, len(rank)), b))


def _load_forced(dataset: PathLike, storage_options: StorageOptions
                 ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The needed columns of every row, and the flag fractions per band (one lazy scan)."""
    from colphot.parquet.read import open_forced

    text = os.fspath(dataset)
    lazy = open_forced(text, storage_options=storage_options)
    schema = lazy.collect_schema()
    missing = [c for c in REQUIRED_COLUMNS if c not in schema]
    if missing:
        raise SchemaError(f"{text}: forced-source dataset has no column(s) {missing} "
                          f"(QA figures need {list(REQUIRED_COLUMNS)})")
    columns = [*REQUIRED_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in schema)]
    forced = lazy.select(columns).collect()
    if forced.height == 0:
        raise ValueError(f"{text}: the forced-source dataset has no rows to draw")
    return forced, flag_fractions(lazy)


def _read_parquet(path: PathLike, what: str, storage_options: StorageOptions,
                  columns: Sequence[str] | None = None) -> pl.DataFrame:
    text = os.fspath(path)
    fs, p = filesystem(text, storage_options)
    if not fs.isfile(p):
        raise FileNotFoundError(f"{text}: {what} file not found")
    with fs.open(p, "rb") as f:
        return pl.read_parquet(f, columns=list(columns) if columns is not None else None)


def _load_truth(truth: PathLike | pl.DataFrame, bands: Sequence[str],
                storage_options: StorageOptions) -> pl.DataFrame:
    """The truth columns the figures need; :class:`SchemaError` naming any that is missing."""
    needed = [*TRUTH_COLUMNS, *(f"{b}_flux_true" for b in bands)]
    if isinstance(truth, pl.DataFrame):
        name, frame = "truth frame", truth
    else:
        name = os.fspath(truth)
        fs, p = filesystem(name, storage_options)
        if not fs.isfile(p):
            raise FileNotFoundError(f"{name}: truth file not found")
        with fs.open(p, "rb") as f:
            schema = pl.read_parquet_schema(f)
        missing = [c for c in needed if c not in schema]
        if missing:
            raise SchemaError(f"{name}: truth has no column(s) {missing} "
                              f"(needed: {needed}; one <band>_flux_true per measured band)")
        frame = _read_parquet(name, "truth", storage_options, needed)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise SchemaError(f"{name}: truth has no column(s) {missing} "
                          f"(needed: {needed}; one <band>_flux_true per measured band)")
    return frame.select(needed)


def _load_objects(dataset: PathLike, forced: pl.DataFrame, bands: Sequence[str],
                  objects: PathLike | pl.DataFrame | pl.LazyFrame | None,
                  storage_options: StorageOptions, *, refs: Any = None) -> pl.DataFrame:
    """Primary Object-table rows: objectId, coord_ra, coord_dec, ``<band>_psf*`` present."""
    have_module = importlib.util.find_spec("colphot.objects") is not None
    name = "Object table"
    if isinstance(objects, pl.DataFrame | pl.LazyFrame):
        lazy = objects.lazy()
    elif objects is not None:
        name = os.fspath(objects)
        if have_module:
            from colphot.objects import open_objects

            lazy = open_objects(name, **({"storage_options": storage_options}
                                         if storage_options else {}))
        else:  # the Object table is hive Parquet partitioned by tract
            fs, p = filesystem(name, storage_options)
            if not fs.exists(p):
                raise FileNotFoundError(f"{name}: Object table not found")
            source = name if name.endswith(".parquet") else join(name, "**/*.parquet")
            lazy = pl.scan_parquet(source, hive_partitioning=True,
                                   storage_options=None if is_local(name)
                                   else polars_storage_options(storage_options))
    elif have_module:
        from colphot.objects.build import object_frame

        lazy = object_frame(dataset, refs, storage_options=storage_options)
    else:
        return primary_pivot(forced, bands)
    schema = lazy.collect_schema()
    missing = [c for c in ("objectId", "coord_ra", "coord_dec") if c not in schema]
    if missing:
        raise SchemaError(f"{name}: Object table has no column(s) {missing}")
    wanted = [f"{b}_{c}" for b in bands for c in _VALUE_COLUMNS]
    if not any(f"{b}_psfMag" in schema or f"{b}_psfFlux" in schema for b in bands):
        raise SchemaError(f"{name}: Object table has none of the columns "
                          f"{[f'{b}_psfMag' for b in bands]} or {[f'{b}_psfFlux' for b in bands]}")
    if "detect_isPrimary" in schema:
        lazy = lazy.filter(pl.col("detect_isPrimary").fill_null(False))
    return lazy.select("objectId", "coord_ra", "coord_dec",
                       *(c for c in wanted if c in schema)).collect()


def primary_pivot(forced: pl.DataFrame, bands: Sequence[str]) -> pl.DataFrame:
    """A stand-in Object table: one row per object from the forced rows of one patch.

    TEMPORARY, used only while ``colphot.objects`` (the real Object table) is not installed.
    Each object keeps the (tract, patch) whose tile edges its centroid is farthest from,
    averaged over bands (the tile bounds taken as the extent of the centroids measured on it),
    which for tiles of one size and overlap is the patch's inner region; without centroids,
    the lowest tract and patch. Columns: ``objectId``, ``coord_ra``, ``coord_dec``, ``tract``,
    ``patch`` and, per band, ``<band>_psfFlux``, ``<band>_psfFluxErr``, ``<band>_psfMag``,
    ``<band>_psfFlux_flag`` (null where the object was not measured in the band).
    """
    frame = forced
    if {"centroid_x", "centroid_y"} <= set(frame.columns):
        def good(c: str) -> pl.Expr:
            return pl.col(c).filter(pl.col(c).is_finite())

        bounds = frame.group_by("band", "tract", "patch").agg(
            good("centroid_x").min().alias("_x0"), good("centroid_x").max().alias("_x1"),
            good("centroid_y").min().alias("_y0"), good("centroid_y").max().alias("_y1"))
        x, y = pl.col("centroid_x"), pl.col("centroid_y")
        frame = frame.join(bounds, on=["band", "tract", "patch"]).with_columns(
            pl.min_horizontal(x - pl.col("_x0"), pl.col("_x1") - x, y - pl.col("_y0"),
                              pl.col("_y1") - y).fill_nan(None).alias("_edge"))
    else:
        frame = frame.with_columns(pl.lit(0.0).alias("_edge"))
    home = (
        frame.group_by("objectId", "tract", "patch").agg(pl.col("_edge").mean())
        .with_columns(pl.col("_edge").fill_null(-math.inf))
        .sort(["objectId", "_edge", "tract", "patch"], descending=[False, True, False, False])
        .unique("objectId", keep="first", maintain_order=True)
        .select("objectId", "tract", "patch")
    )
    primary = frame.join(home, on=["objectId", "tract", "patch"])
    wide = primary.group_by("objectId").agg(
        pl.col("coord_ra").first(), pl.col("coord_dec").first(), pl.col("tract").first(),
        pl.col("patch").first())
    values = [c for c in _VALUE_COLUMNS if c in primary.columns]
    for band in bands:
        part = primary.filter(pl.col("band") == band).select(
            "objectId", *(pl.col(c).alias(f"{band}_{c}") for c in values))
        wide = wide.join(part, on="objectId", how="left")
    return wide.sort("objectId")


def _with_clean_flags(forced: pl.DataFrame) -> pl.DataFrame:
    """``forced`` with any missing :data:`CLEAN_FLAGS` column added as all false."""
    return forced.with_columns(pl.lit(False).alias(c) for c in CLEAN_FLAGS
                               if c not in forced.columns)


def _star_lookup(truth: pl.DataFrame | None) -> pl.DataFrame | None:
    return None if truth is None else truth.select(pl.col("id").alias("objectId"), "is_star")


# --------------------------------------------------------------------------------------------
# the numbers drawn


def flux_vs_truth(forced: pl.DataFrame, truth: pl.DataFrame, band: str, *,
                  isolation: float = ISOLATION) -> dict[str, np.ndarray]:
    """Rows of ``band`` matched to the truth on ``objectId`` = ``id`` (every patch's copy).

    Returns ``true`` (``<band>_flux_true``, nJy), ``flux`` / ``err`` (psfFlux / psfFluxErr,
    nJy), ``is_star`` and ``clean``: a star farther than ``isolation`` pixels from any other
    object with none of :data:`CLEAN_FLAGS` set (the selection of
    :func:`colphot.sim.demo.truth_summary`).
    """
    true_col = f"{band}_flux_true"
    flagged = pl.any_horizontal(pl.col(c).fill_null(True) for c in CLEAN_FLAGS)
    rows = (
        _with_clean_flags(forced).filter(pl.col("band") == band)
        .join(truth.select("id", "is_star", "nearest_px", true_col), left_on="objectId",
              right_on="id")
        .with_columns((pl.col("is_star") & (pl.col("nearest_px") > isolation) & ~flagged)
                      .fill_null(False).alias("_clean"))
    )
    return {
        "true": rows[true_col].cast(pl.Float64).to_numpy(),
        "flux": rows["psfFlux"].cast(pl.Float64).to_numpy(),
        "err": rows["psfFluxErr"].cast(pl.Float64).to_numpy(),
        "is_star": rows["is_star"].fill_null(False).to_numpy(),
        "clean": rows["_clean"].to_numpy(),
    }


def pulls(forced: pl.DataFrame, truth: pl.DataFrame, band: str, *,
          isolation: float = ISOLATION) -> np.ndarray:
    """``(psfFlux - true) / psfFluxErr`` of the clean isolated stars of ``band`` (finite)."""
    d = flux_vs_truth(forced, truth, band, isolation=isolation)
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = (d["flux"] - d["true"]) / d["err"]
    return pull[d["clean"] & np.isfinite(pull)]


def pull_histogram(values: np.ndarray, *, limit: float = PULL_LIMIT, bins: int = PULL_BINS
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, edges)`` of ``values`` in ``bins`` equal bins over ``[-limit, limit]``."""
    edges = np.linspace(-limit, limit, bins + 1)
    counts, _ = np.histogram(values, bins=edges)
    return counts, edges


def _magnitude(objects: pl.DataFrame, band: str) -> pl.Expr:
    if f"{band}_psfMag" in objects.columns:
        return pl.col(f"{band}_psfMag").cast(pl.Float64)
    flux = pl.col(f"{band}_psfFlux").cast(pl.Float64)
    return pl.when(flux > 0).then(AB_NJY_ZEROPOINT - 2.5 * flux.log10())


def _usable(objects: pl.DataFrame, band: str, snr_min: float) -> pl.Expr:
    """Finite magnitude, no PSF-flux flag, S/N >= ``snr_min`` (the checks whose columns
    exist)."""
    ok = _magnitude(objects, band).is_finite().fill_null(False)
    if f"{band}_psfFlux_flag" in objects.columns:
        ok = ok & ~pl.col(f"{band}_psfFlux_flag").fill_null(True)
    if {f"{band}_psfFlux", f"{band}_psfFluxErr"} <= set(objects.columns):
        snr = pl.col(f"{band}_psfFlux") / pl.col(f"{band}_psfFluxErr")
        ok = ok & (snr >= snr_min).fill_null(False)
    return ok


def _present(objects: pl.DataFrame, bands: Sequence[str]) -> list[str]:
    return [b for b in bands
            if f"{b}_psfMag" in objects.columns or f"{b}_psfFlux" in objects.columns]


def colour_magnitude(objects: pl.DataFrame, bands: Sequence[str], *,
                     snr_min: float = SNR_MIN) -> list[dict[str, Any]]:
    """Per neighbouring band pair ``(b1, b2)``: colour ``b1 - b2`` and magnitude ``b2``.

    Each entry has ``bands`` (the pair), ``x`` (colour, mag), ``y`` (``b2`` PSF magnitude, AB)
    and ``objectId``, over the objects usable in both bands (finite PSF magnitude, no PSF-flux
    flag, S/N >= ``snr_min``).
    """
    present = order_bands(_present(objects, bands))
    out = []
    for b1, b2 in zip(present, present[1:], strict=False):
        rows = objects.filter(_usable(objects, b1, snr_min) & _usable(objects, b2, snr_min))
        rows = rows.select("objectId", (_magnitude(objects, b1) - _magnitude(objects, b2))
                           .alias("x"), _magnitude(objects, b2).alias("y"))
        out.append({"bands": (b1, b2), "x": rows["x"].to_numpy(), "y": rows["y"].to_numpy(),
                    "objectId": rows["objectId"].to_numpy()})
    return out


def colour_colour(objects: pl.DataFrame, bands: Sequence[str], *,
                  snr_min: float = SNR_MIN) -> list[dict[str, Any]]:
    """Per three neighbouring bands ``(b1, b2, b3)``: ``x = b1 - b2``, ``y = b2 - b3``.

    Same selection as :func:`colour_magnitude`, in all three bands.
    """
    present = order_bands(_present(objects, bands))
    out = []
    for b1, b2, b3 in zip(present, present[1:], present[2:], strict=False):
        ok = (_usable(objects, b1, snr_min) & _usable(objects, b2, snr_min)
              & _usable(objects, b3, snr_min))
        m1, m2, m3 = (_magnitude(objects, b) for b in (b1, b2, b3))
        rows = objects.filter(ok).select("objectId", (m1 - m2).alias("x"), (m2 - m3).alias("y"))
        out.append({"bands": (b1, b2, b3), "x": rows["x"].to_numpy(),
                    "y": rows["y"].to_numpy(), "objectId": rows["objectId"].to_numpy()})
    return out


def _sky(ra: np.ndarray) -> np.ndarray:
    """RA in degrees, moved to (-180, 180] when the values straddle RA 0."""
    ra = np.asarray(ra, dtype=np.float64)
    if ra.size and np.nanmax(ra) - np.nanmin(ra) > 180.0:
        return np.where(ra > 180.0, ra - 360.0, ra)
    return ra


def sky_grid(ra: np.ndarray, dec: np.ndarray, *, per_cell: float = PER_CELL,
             max_cells: int = MAX_CELLS) -> tuple[np.ndarray, np.ndarray]:
    """``(ra_edges, dec_edges)``, degrees: square cells on the sky over the positions, sized
    for about ``per_cell`` positions each (at most ``max_cells`` along an axis)."""
    if ra.size == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    ra0, ra1, dec0, dec1 = ra.min(), ra.max(), dec.min(), dec.max()
    cos_dec = max(math.cos(math.radians(0.5 * (dec0 + dec1))), 1e-3)
    width = max((ra1 - ra0) * cos_dec, 1e-6)
    height = max(dec1 - dec0, 1e-6)
    n_cells = max(ra.size / per_cell, 1.0)
    cell = max(math.sqrt(width * height / n_cells), width / max_cells, height / max_cells)
    nx, ny = max(1, math.ceil(width / cell)), max(1, math.ceil(height / cell))
    pad_ra = 0.5 * (nx * cell / cos_dec - (ra1 - ra0))  # centre the grid on the positions
    pad_dec = 0.5 * (ny * cell - (dec1 - dec0))
    return (ra0 - pad_ra + np.arange(nx + 1) * cell / cos_dec,
            dec0 - pad_dec + np.arange(ny + 1) * cell)


def _cells(ra: np.ndarray, dec: np.ndarray, ra_edges: np.ndarray, dec_edges: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Flat cell index (``iy * nx + ix``) of each position and whether it is on the grid."""
    nx, ny = ra_edges.size - 1, dec_edges.size - 1
    ix = np.searchsorted(ra_edges, ra, side="right") - 1
    iy = np.searchsorted(dec_edges, dec, side="right") - 1
    ix[ra == ra_edges[-1]] = nx - 1  # the last edge belongs to the last cell
    iy[dec == dec_edges[-1]] = ny - 1
    ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    return iy * nx + ix, ok


def density_map(ra: np.ndarray, dec: np.ndarray, ra_edges: np.ndarray, dec_edges: np.ndarray
                ) -> np.ndarray:
    """Positions per arcmin² in each cell, shape ``(n_dec, n_ra)``."""
    nx, ny = ra_edges.size - 1, dec_edges.size - 1
    index, ok = _cells(np.asarray(ra, float), np.asarray(dec, float), ra_edges, dec_edges)
    counts = np.bincount(index[ok], minlength=nx * ny).reshape(ny, nx).astype(np.float64)
    dec_mid = np.radians(0.5 * (dec_edges[:-1] + dec_edges[1:]))
    area = np.diff(ra_edges)[None, :] * np.cos(dec_mid)[:, None] * np.diff(dec_edges)[:, None]
    return counts / (area * 3600.0)


def depth_map(ra: np.ndarray, dec: np.ndarray, flux_err: np.ndarray, ra_edges: np.ndarray,
              dec_edges: np.ndarray, *, n_sigma: float = 5.0) -> np.ndarray:
    """AB magnitude of ``n_sigma`` x the median flux error (nJy) in each cell (NaN without
    rows), shape ``(n_dec, n_ra)``. Rows with a non-finite or non-positive error are left
    out."""
    nx, ny = ra_edges.size - 1, dec_edges.size - 1
    err = np.asarray(flux_err, dtype=np.float64)
    index, ok = _cells(np.asarray(ra, float), np.asarray(dec, float), ra_edges, dec_edges)
    ok &= np.isfinite(err) & (err > 0)
    out = np.full(nx * ny, np.nan)
    if ok.any():
        med = (pl.DataFrame({"cell": index[ok], "err": err[ok]})
               .group_by("cell").agg(pl.col("err").median()))
        cells = med["cell"].to_numpy()
        out[cells] = AB_NJY_ZEROPOINT - 2.5 * np.log10(n_sigma * med["err"].to_numpy())
    return out.reshape(ny, nx)


def flag_fractions(forced: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """Per band, the fraction of rows with each flag set.

    Flags are the boolean columns named ``*_flag`` or ``pixelFlags_*``, in table order.
    Returns one row per flag: ``flag`` and one column per band (fractions in [0, 1]).
    """
    lazy = forced.lazy()
    schema = lazy.collect_schema()
    flags = [c for c, t in schema.items() if t == pl.Boolean
             and (c.endswith("_flag") or c.startswith("pixelFlags_"))]
    if not flags:
        return pl.DataFrame({"flag": []}, schema={"flag": pl.String})
    per_band = (lazy.group_by("band").agg(pl.col(c).cast(pl.Float64).mean() for c in flags)
                .collect())
    out = pl.DataFrame({"flag": flags})
    for row in per_band.iter_rows(named=True):
        out = out.with_columns(pl.Series(row["band"], [row[c] or 0.0 for c in flags],
                                         dtype=pl.Float64))
    return out.select("flag", *order_bands(per_band["band"].to_list()))


# --------------------------------------------------------------------------------------------
# drawing

_BAND_COLOURS = {"u": "#56b4e9", "g": "#009e73", "r": "#d55e00", "i": "#cc79a7",
                 "z": "#7f7f7f", "y": "#e69f00"}


def _band_colour(band: str) -> str:
    return _BAND_COLOURS.get(band, "#333333")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _panels(fig: Figure, n: int, *, max_cols: int = 3) -> list[Axes]:
    ncols = min(n, max_cols)
    nrows = math.ceil(n / ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


def _robust_limits(values: np.ndarray, lo: float = 0.5, hi: float = 99.5, pad: float = 0.05
                   ) -> tuple[float, float] | None:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None
    a, b = np.percentile(v, [lo, hi])
    span = (b - a) or 1.0
    return float(a - pad * span), float(b + pad * span)


def _marker_size(n: int) -> float:
    """Scatter marker area (points²): larger for fewer points, so small samples stay visible."""
    return float(np.clip(3000.0 / max(n, 1), 4.0, 30.0))


def _no_data(ax: Axes, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _plot_flux_vs_truth(band: str, d: dict[str, np.ndarray], stats: dict[str, Any]) -> Figure:
    fig = _figure(6.4, 7.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    size = _marker_size(d["true"].size)
    groups = [("galaxies", ~d["is_star"], "0.6", size),
              ("stars (flagged or blended)", d["is_star"] & ~d["clean"], "#e69f00", 1.5 * size),
              ("clean isolated stars", d["clean"], "#0072b2", 1.5 * size)]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = d["flux"] / d["true"]
    for label, sel, colour, size in groups:
        pos = sel & (d["flux"] > 0) & (d["true"] > 0)
        top.scatter(d["true"][pos], d["flux"][pos], s=size, c=colour, lw=0, alpha=0.7,
                    label=f"{label} ({int(sel.sum())})")
        fin = sel & np.isfinite(ratio) & (d["true"] > 0)
        bottom.scatter(d["true"][fin], ratio[fin], s=size, c=colour, lw=0, alpha=0.7)
    true_pos = d["true"][d["true"] > 0]
    if true_pos.size:
        line = np.array([true_pos.min(), true_pos.max()])
        top.plot(line, line, color="k", lw=0.8, label="psfFlux = true")
        top.set_xscale("log")
        top.set_yscale("log")
    else:
        _no_data(top)
    bottom.axhline(1.0, color="k", lw=0.8)
    bottom.set_ylim(0.5, 1.5)
    top.set_ylabel(f"{band} psfFlux [nJy]")
    bottom.set_xlabel(f"{band} true flux [nJy]")
    bottom.set_ylabel("psfFlux / true flux")
    top.legend(loc="upper left", fontsize="small", markerscale=2)
    top.set_title(f"{band}: psfFlux vs truth — clean isolated stars: median ratio "
                  f"{stats['median_psfFlux_over_true']:.4f}, pull σ {stats['pull_sigma']:.3f}",
                  fontsize="medium")
    return fig


def _plot_pulls(values: dict[str, np.ndarray], stats: dict[str, Any]) -> Figure:
    fig = _figure(4.0 * min(len(values), 3), 3.8 * math.ceil(len(values) / 3))
    x = np.linspace(-PULL_LIMIT, PULL_LIMIT, 400)
    for ax, (band, v) in zip(_panels(fig, len(values)), values.items(), strict=True):
        counts, edges = pull_histogram(v)
        ax.stairs(counts, edges, fill=True, color=_band_colour(band), alpha=0.6,
                  label=f"{band} ({v.size} stars)")
        width = edges[1] - edges[0]
        ax.plot(x, v.size * width * np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi), color="k",
                lw=1.0, label="N(0, 1)")
        outside = int(np.sum(np.abs(v) > PULL_LIMIT))
        s = stats[band]
        ax.set_title(f"{band}: σ(MAD) {s['pull_sigma']:.3f}, {outside} beyond ±{PULL_LIMIT:g}",
                     fontsize="medium")
        ax.set_xlabel("(psfFlux − true) / psfFluxErr")
        ax.set_ylabel("stars per bin")
        ax.legend(fontsize="small")
        if v.size == 0:
            _no_data(ax, "no clean isolated stars")
    fig.suptitle("PSF-flux pulls of clean isolated stars")
    return fig


def _plot_colours(panels: list[dict[str, Any]], is_star: pl.DataFrame | None, *, kind: str
                  ) -> Figure:
    fig = _figure(max(6.0, 4.6 * min(len(panels), 3)), 4.4 * math.ceil(len(panels) / 3))
    for ax, p in zip(_panels(fig, len(panels)), panels, strict=True):
        x, y = p["x"], p["y"]
        if is_star is not None and x.size:
            star = (pl.DataFrame({"objectId": p["objectId"]})
                    .join(is_star, on="objectId", how="left")["is_star"]
                    .fill_null(False).to_numpy())
            groups = [("galaxies (truth)", ~star, "#e69f00"), ("stars (truth)", star, "#0072b2")]
        else:
            groups = [("objects", np.ones(x.size, dtype=bool), "#0072b2")]
        size = _marker_size(x.size)
        for label, sel, colour in groups:
            ax.scatter(x[sel], y[sel], s=size, c=colour, lw=0, alpha=0.6,
                       label=f"{label} ({int(sel.sum())})")
        bands = p["bands"]
        colour_label = f"{bands[0]} − {bands[1]} [mag]"
        if kind == "cmd":
            ax.set_xlabel(colour_label)
            ax.set_ylabel(f"{bands[1]} psfMag [mag AB]")
            ax.invert_yaxis()
        else:
            ax.set_xlabel(colour_label)
            ax.set_ylabel(f"{bands[1]} − {bands[2]} [mag]")
            lim = _robust_limits(y)
            if lim:
                ax.set_ylim(*lim)
        lim = _robust_limits(x)
        if lim:
            ax.set_xlim(*lim)
        if x.size:
            ax.legend(fontsize="small", markerscale=2)
        else:
            _no_data(ax)
    title = "colour-magnitude" if kind == "cmd" else "colour-colour"
    fig.suptitle(f"{title}: PSF magnitudes, S/N ≥ {SNR_MIN:g} and no psfFlux flag in each band",
                 fontsize="medium")
    return fig


def _sky_axes(ax: Axes, grid: tuple[np.ndarray, np.ndarray]) -> None:
    ra_edges, dec_edges = grid
    ax.set_xlim(ra_edges[-1], ra_edges[0])  # east to the left
    ax.set_ylim(dec_edges[0], dec_edges[-1])
    ax.set_aspect(1.0 / max(math.cos(math.radians(dec_edges.mean())), 1e-3))
    from matplotlib.ticker import MaxNLocator

    ax.ticklabel_format(useOffset=False)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.set_xlabel("RA [deg]")
    ax.set_ylabel("Dec [deg]")


def _plot_density(density: np.ndarray, grid: tuple[np.ndarray, np.ndarray], n: int) -> Figure:
    fig = _figure(6.0, 5.2)
    ax = fig.subplots()
    mesh = ax.pcolormesh(grid[0], grid[1], density, cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="objects per arcmin²")
    _sky_axes(ax, grid)
    cell = (grid[1][1] - grid[1][0]) * 60.0
    ax.set_title(f"sky density of {n} primary objects ({cell:.2f}′ cells)", fontsize="medium")
    return fig


def _plot_depth(depths: dict[str, np.ndarray], grid: tuple[np.ndarray, np.ndarray]) -> Figure:
    n = len(depths)
    fig = _figure(5.0 * min(n, 3), 4.4 * math.ceil(n / 3))
    for ax, (band, depth) in zip(_panels(fig, n), depths.items(), strict=True):
        finite = depth[np.isfinite(depth)]
        # the scale spans the bulk of the cells; shallower ones (NO_DATA, edges) saturate
        vmin = float(np.percentile(finite, 5)) - 0.1 if finite.size else None
        mesh = ax.pcolormesh(grid[0], grid[1], np.ma.masked_invalid(depth), cmap="magma",
                             vmin=vmin)
        fig.colorbar(mesh, ax=ax, label=f"{band} 5σ depth [mag AB]", extend="min")
        _sky_axes(ax, grid)
        median = f"median {np.median(finite):.2f}" if finite.size else "no data"
        ax.set_title(f"{band}: 5 × median psfFluxErr ({median})", fontsize="medium")
    fig.suptitle("5σ point-source depth")
    return fig


def _plot_flags(fractions: pl.DataFrame, bands: Sequence[str]) -> Figure:
    flags = fractions["flag"].to_list()
    bands = [b for b in bands if b in fractions.columns]
    fig = _figure(7.5, max(3.0, 0.22 * len(flags) * max(1, len(bands)) ** 0.5 + 1.5))
    ax = fig.subplots()
    if not flags:
        _no_data(ax, "no flag columns")
        return fig
    pos = np.arange(len(flags))
    height = 0.8 / max(1, len(bands))
    for k, band in enumerate(bands):
        ax.barh(pos - 0.4 + (k + 0.5) * height, 100.0 * fractions[band].to_numpy(),
                height=height, color=_band_colour(band), label=band)
    ax.set_yticks(pos, flags, fontsize="small")
    ax.set_ylim(len(flags) - 0.5, -0.5)
    ax.set_xlabel("rows with the flag set [%]")
    ax.legend(title="band")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("flag fractions per band (every row of the forced-source table)",
                 fontsize="medium")
    return fig


# --------------------------------------------------------------------------------------------
# output


def _save(fig: Figure, out_dir: PathLike, name: str, storage_options: StorageOptions
          ) -> Path | str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    url = join(out_dir, name)
    put_url(url, buf.getvalue(), storage_options)
    return Path(strip_protocol(url)) if is_local(out_dir) else url


def _remove_stale(out_dir: PathLike, written: set[str], storage_options: StorageOptions
                  ) -> None:
    """Remove this module's figures in ``out_dir`` that this call did not write."""
    fs, path = filesystem(out_dir, storage_options)
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return
    for name in names:
        ours = name in FIGURE_NAMES or (name.startswith(_TRUTH_PREFIX) and name.endswith(".png"))
        if ours and name not in written:
            fs.rm_file(join(path, name))
