"""``forced_photometry``: one tile and a reference catalog in, a forced-source table out."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from colphot._fs import redact_url
from colphot.config import ForcedPhotConfig
from colphot.exceptions import NoPsfWarning
from colphot.measure._bspline import bspline_coefficients
from colphot.measure.aperture import measure_apertures
from colphot.measure.footprints import Footprints
from colphot.measure.gaussian_flux import measure_gaussian_flux
from colphot.measure.local_background import measure_local_background
from colphot.measure.pixel_flags import pixel_flag_columns
from colphot.measure.psf_flux import measure_psf_flux
from colphot.references.load import validate_references
from colphot.references.select import on_tile, ref_moments_to_tile
from colphot.table.deblend import Deblend, deblend_provenance, prepare_deblend
from colphot.table.schema import forced_columns, polars_schema
from colphot.tile.ap_corr import apply_ap_corr
from colphot.tile.fits import AB_NJY_ZEROPOINT
from colphot.tile.tile import Tile

if TYPE_CHECKING:
    from astropy.wcs import WCS

    from colphot._typing import PathLike, StorageOptions

__all__ = ["forced_photometry", "provenance", "spatial_order", "strip_height", "unflagged_nans"]


def strip_height(config: ForcedPhotConfig) -> float:
    """Height, pixels, of the row strips in which :func:`forced_photometry` visits sources:
    1.6 times the largest aperture radius (32 without apertures), within [32, 256]."""
    reach = max(config.aperture_radii) if "aperture" in config.plugins else 32.0
    return min(max(1.6 * reach, 32.0), 256.0)


def spatial_order(x: np.ndarray, y: np.ndarray, *, strip: float) -> np.ndarray:
    """Permutation visiting positions in rows of sources ``strip`` pixels high, swept in x.

    The pixels that the apertures of neighbouring sources share are then still in cache: about
    10 % faster than Z-order for 70-pixel apertures when ``strip`` is about 1.6 times the
    largest radius (:func:`strip_height`). Non-finite positions go first.
    """
    band = np.floor(np.nan_to_num(y, nan=-1.0) / strip)
    return np.lexsort((np.nan_to_num(x, nan=-1.0), band))


def forced_photometry(
    tile: Tile,
    refs: pl.DataFrame | pl.LazyFrame,
    config: ForcedPhotConfig | None = None,
    *,
    in_band: pl.DataFrame | pl.LazyFrame | PathLike | None = None,
    n_threads: int = 1,
    storage_options: StorageOptions = None,
    in_band_name: str | None = None,
    ref_wcs: WCS | None = None,
) -> pl.DataFrame:
    """Measure every reference object that falls on a tile, LSST ForcedPhotCoadd style.

    Parameters
    ----------
    tile
        The tile (see :func:`colphot.read_tile`); pixel values in nJy when calibrated.
    refs
        Reference catalog (``catalogs/reference.yaml``): ``id``, ``coord_ra``, ``coord_dec``
        (degrees, ICRS) and optionally ``parent``, ``shape_xx/yy/xy`` (pixel² of ``ref_wcs``,
        as in Rubin's Object table), ``centroid_flag``, ``shape_flag``, ``refBand``,
        ``detect_isPrimary`` and ``deblend_nChild``.
    config
        Algorithms and parameters; defaults to :class:`ForcedPhotConfig()`.
    in_band
        In-band catalog with heavy footprints (``catalogs/in_band.yaml``): a polars frame or
        a Parquet file, glob or hive root. Given, the measurement is deblended: every
        top-level footprint is replaced by noise and each source measured with only its own
        footprint inserted (LSST's NoiseReplacer); ``config.undeblended_plugins`` also run on
        the original image as ``undeblended_`` columns. The tile's band/tract/patch select the
        rows; every reference on the tile needs one.
    n_threads
        Threads that measure the sources (each kernel splits them; results do not depend on
        it).
    storage_options
        fsspec options for a remote ``in_band``.
    in_band_name
        How errors name the in-band catalog (default: its path, or ``"in_band"`` for a frame).
    ref_wcs
        WCS of the pixels in which the reference shapes are given (LSST's ``refWcs``: the
        tract's). ``None``: the tile's own WCS, which is the tract's for a coadd patch (the
        shapes are then used as they are); otherwise they are transformed to the tile's pixels
        with the local linearisation of ``ref_wcs`` -> sky -> tile WCS at each reference.

    Returns
    -------
    polars.DataFrame
        One row per reference on the tile's pixels, columns as in
        ``catalogs/forced_source.yaml`` (fluxes in nJy, or the tile's unit if uncalibrated;
        positions in parent-frame pixels). A source that cannot be measured gets NaN and flags.

    Raises
    ------
    MissingReferenceError
        A reference on the tile has no in-band row for the tile.
    ReferenceCatalogError
        A bad reference or in-band catalog (the message names it, the column and ids).
    """
    config = config or ForcedPhotConfig()
    if not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(f"n_threads: expected an integer >= 1, got {n_threads!r}")
    refs = _with_n_child(validate_references(refs))
    kept, x, y = on_tile(refs, tile.wcs, tile.shape)
    order = spatial_order(x, y, strip=strip_height(config))
    kept = kept[order]
    x = np.ascontiguousarray(x[order])
    y = np.ascontiguousarray(y[order])
    deblend = None if in_band is None else prepare_deblend(
        tile, kept, in_band, config, source=in_band_name, storage_options=storage_options,
        n_threads=n_threads)
    columns = _measure(tile, kept, x, y, config, deblend, n_threads, ref_wcs)
    schema = polars_schema(forced_columns(config, deblended=deblend is not None))
    frame = pl.DataFrame({name: columns[name] for name in schema.names()}, schema=schema)
    return _restore_order(frame, order)


def provenance(tile: Tile, config: ForcedPhotConfig | None = None, *,
               in_band: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What the output metadata records of a measured tile (``inputs`` of
    :func:`colphot.write_forced`): :meth:`Tile.provenance`, plus for a deblended measurement
    the in-band catalog's name and the noise replacement's source and seed."""
    out = tile.provenance()
    if in_band is not None:
        name = redact_url(in_band if isinstance(in_band, str) else os.fspath(in_band))
        out["deblend"] = deblend_provenance(tile, config or ForcedPhotConfig(), name)
    return out


def unflagged_nans(frame: pl.DataFrame) -> dict[str, int]:
    """Rows per column whose value is NaN (or null) while its algorithm's flag is not set.

    colphot's promise, LSST's rule: a measurement that is NaN has its ``<algorithm>_flag`` set
    (and a specific flag). A float column belongs to the longest ``X_flag`` whose ``X`` it
    starts with (``ap12FluxErr`` to ``ap12Flux_flag``, ``centroid_x`` to ``centroid_flag``);
    columns without one (``psfMag``, NaN for a flux <= 0) are not checked; ``X_apCorr`` and
    ``X_apCorrErr`` belong to ``X_flag_apCorr``. Empty when the frame keeps the promise.
    """
    flags = sorted((c[:-5] for c in frame.columns if c.endswith("_flag")), key=len,
                   reverse=True)
    out: dict[str, int] = {}
    for column, dtype in frame.schema.items():
        if not dtype.is_float():
            continue
        base = column.removesuffix("Err")
        if base.endswith("_apCorr") and f"{base[:-7]}_flag_apCorr" in frame.columns:
            flag = f"{base[:-7]}_flag_apCorr"  # the correction, not the measurement, is missing
        else:
            owner = next((f for f in flags if column.startswith(f)), None)
            if owner is None:
                continue
            flag = f"{owner}_flag"
        bad = (frame[column].is_nan().fill_null(True) & ~frame[flag]).sum()
        if bad:
            out[column] = int(bad)
    return out


def _restore_order(frame: pl.DataFrame, order: np.ndarray) -> pl.DataFrame:
    """Rows measured in ``order`` back to the input order."""
    return frame[np.argsort(order, kind="stable")]


def _threaded(fn: Callable[[slice], Any], n: int, n_threads: int) -> Any:
    """``fn(slice(0, n))``, or ``fn`` over ``n_threads`` contiguous slices in a thread pool with
    the results joined (the kernels release the GIL)."""
    if n_threads <= 1 or n < 2 * n_threads:
        return fn(slice(0, n))
    bounds = np.linspace(0, n, n_threads + 1).astype(np.int64)
    with ThreadPoolExecutor(n_threads) as pool:
        parts = list(pool.map(lambda i: fn(slice(bounds[i], bounds[i + 1])), range(n_threads)))
    first = parts[0]
    if isinstance(first, tuple):
        return tuple(np.concatenate(p) for p in zip(*parts, strict=True))
    return type(first)(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                          for f in dataclasses.fields(first)})


def _with_n_child(refs: pl.DataFrame) -> pl.DataFrame:
    """``refs`` with ``deblend_nChild`` counted from ``parent`` over the whole catalog given
    (before the selection of the tile's references, so that a parent whose children straddle
    the tile edge keeps its count) when the catalog has no such column."""
    if "deblend_nChild" in refs.columns or "parent" not in refs.columns:
        return refs
    counts = refs.filter(pl.col("parent").fill_null(0) != 0).group_by("parent").len()
    n_child = refs.select("id").join(counts.rename({"parent": "id"}), on="id", how="left",
                                     maintain_order="left")["len"].fill_null(0)
    return refs.with_columns(deblend_nChild=n_child.cast(pl.Int32))


def _reference_identity(refs: pl.DataFrame) -> dict[str, Any]:
    """``refBand``, ``detect_isPrimary`` and ``deblend_nChild`` carried from the references
    (``deblend_nChild`` counted from ``parent`` when the catalog has no such column)."""
    n = refs.height
    out: dict[str, Any] = {
        # "" rather than null when unknown: astropy's Parquet reader fails on null strings
        "refBand": refs["refBand"].fill_null("") if "refBand" in refs.columns
        else pl.repeat("", n, dtype=pl.String, eager=True),
        "detect_isPrimary": refs["detect_isPrimary"] if "detect_isPrimary" in refs.columns
        else pl.repeat(None, n, dtype=pl.Boolean, eager=True),
    }
    if "deblend_nChild" in refs.columns:
        out["deblend_nChild"] = refs["deblend_nChild"].fill_null(0).cast(pl.Int32)
    else:
        out["deblend_nChild"] = np.zeros(n, dtype=np.int32)
    return out


def _reference_flag(refs: pl.DataFrame, name: str) -> np.ndarray:
    """A reference flag column (``centroid_flag``, ``shape_flag``) as bools; null counts as
    set, an absent column as unset."""
    if name not in refs.columns:
        return np.zeros(refs.height, dtype=bool)
    return refs[name].fill_null(True).to_numpy().astype(bool)


#: General failure flags that a flagged reference centroid sets (LSST's SafeCentroidExtractor:
#: each algorithm measures at the transformed centroid but sets its general flag).
#: PixelFlags reads the centroid itself, without the extractor, so its flag is not among them.
_CENTROID_DEPENDENT = ("psfFlux_flag", "gaussianFlux_flag", "localBackground_flag")


def _propagate_reference_flags(out: dict[str, Any], refs: pl.DataFrame) -> None:
    """Reference flags onto the forced columns, LSST's way: ``centroid_flag`` of the reference
    sets ``centroid_flag`` and every algorithm's general flag (apertures included); its
    ``shape_flag`` sets ``gaussianFlux_flag``."""
    bad_centroid = _reference_flag(refs, "centroid_flag")
    bad_shape = _reference_flag(refs, "shape_flag")
    out["centroid_flag"] = np.asarray(out["centroid_flag"]) | bad_centroid
    for name in list(out):
        if name in _CENTROID_DEPENDENT or (name.startswith(("ap", "undeblended_"))
                                           and name.endswith("_flag")):
            out[name] = np.asarray(out[name]) | bad_centroid
    if "gaussianFlux_flag" in out:
        out["gaussianFlux_flag"] = out["gaussianFlux_flag"] | bad_shape


def _magnitudes(flux: np.ndarray, flux_err: np.ndarray, calibrated: bool
                ) -> tuple[np.ndarray, np.ndarray]:
    """AB magnitude and its error of nJy fluxes (NaN for flux <= 0 or uncalibrated tiles)."""
    if not calibrated:
        return np.full(flux.shape, np.nan), np.full(flux.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        positive = flux > 0
        mag = np.where(positive, AB_NJY_ZEROPOINT - 2.5 * np.log10(flux), np.nan)
        mag_err = np.where(positive, 2.5 / math.log(10) * flux_err / flux, np.nan)
    return mag, mag_err


def _measure(tile: Tile, refs: pl.DataFrame, x: np.ndarray, y: np.ndarray,
             config: ForcedPhotConfig, deblend: Deblend | None, n_threads: int,
             ref_wcs: WCS | None = None) -> dict[str, Any]:
    n = x.size
    x0, y0 = tile.xy0
    calibrated = tile.flux_unit == "nJy"
    out: dict[str, Any] = {
        "objectId": refs["id"],
        "parentObjectId": refs["parent"].fill_null(0) if "parent" in refs.columns
        else np.zeros(n, dtype=np.int64),
        "band": pl.repeat(tile.band, n, dtype=pl.String, eager=True),
        "tract": pl.repeat(tile.tract, n, dtype=pl.Int64, eager=True),
        "patch": pl.repeat(tile.patch, n, dtype=pl.Int64, eager=True),
        "coord_ra": refs["coord_ra"],
        "coord_dec": refs["coord_dec"],
        **_reference_identity(refs),
        "centroid_x": x + x0,
        "centroid_y": y + y0,
        "centroid_flag": ~(np.isfinite(x) & np.isfinite(y)),
    }
    plugins = set(config.plugins)
    psf = tile.psf
    needs_psf = plugins & {"psf_flux", "local_background"}
    if psf is None and needs_psf and n:
        warnings.warn(f"{tile.uri or 'tile'}: no PSF model; {sorted(needs_psf)} flagged "
                      "(_flag_noPsf) on every row", NoPsfWarning, stacklevel=3)
    image = tile.image if deblend is None else deblend.image
    fps = None if deblend is None else deblend.footprints

    def own(sl: slice) -> Footprints | None:
        return None if fps is None else fps.take(sl)

    if "psf_flux" in plugins:
        out.update(_psf_columns(tile, image, x, y, config, calibrated, own, n_threads))
    if "aperture" in plugins:
        out.update(_aperture_columns(tile, image, x, y, config, own, n_threads))
    if deblend is not None:
        if "psf_flux" in config.undeblended_plugins:
            cols = _psf_columns(tile, tile.image, x, y, config, calibrated, lambda sl: None,
                                n_threads)
            out.update({f"undeblended_{k}": v for k, v in cols.items()
                        if k in _UNDEBLENDED_PSF})
        if "aperture" in config.undeblended_plugins:
            cols = _aperture_columns(tile, tile.image, x, y, config, lambda sl: None, n_threads)
            out.update({f"undeblended_{k}": v for k, v in cols.items()})
    if "gaussian_flux" in plugins:
        shape_cols = ("shape_xx", "shape_yy", "shape_xy")
        if all(c in refs.columns for c in shape_cols):
            moments = [refs[c].fill_null(np.nan).to_numpy().astype(np.float64)
                       for c in shape_cols]
            ixx, iyy, ixy = ref_moments_to_tile(
                ref_wcs, tile.wcs, refs["coord_ra"].to_numpy(), refs["coord_dec"].to_numpy(),
                *moments)
        else:
            ixx = iyy = ixy = np.full(n, np.nan)
        res = _threaded(lambda sl: measure_gaussian_flux(
            image, tile.variance, x[sl], y[sl], ixx[sl], iyy[sl], ixy[sl], footprints=own(sl)),
            n, n_threads)
        out["gaussianFlux"] = res.flux
        out["gaussianFluxErr"] = res.flux_err
        out["gaussianFlux_flag"] = res.flag
        out["gaussianFlux_flag_badShape"] = res.flag_bad_shape
    if "local_background" in plugins:
        if psf is not None:
            sigma = psf.sigma_at(x, y)
            inner = config.local_background_inner * sigma
            outer = config.local_background_outer * sigma
            bits = tile.mask_bits(config.local_background_bad_mask_planes)
            res = _threaded(lambda sl: measure_local_background(
                image, tile.mask, x[sl], y[sl], inner[sl], outer[sl], bad_mask_bits=bits,
                n_sigma=config.local_background_n_sigma,
                n_iter=config.local_background_n_iter, footprints=own(sl)), n, n_threads)
            out["localBackground_instFlux"] = res.level
            out["localBackground_instFluxErr"] = res.scatter
            out["localBackground_flag"] = res.flag
            out["localBackground_flag_noGoodPixels"] = res.flag_no_good_pixels
            out["localBackground_flag_noPsf"] = np.zeros(n, dtype=bool)
        else:
            out["localBackground_instFlux"] = np.full(n, np.nan)
            out["localBackground_instFluxErr"] = np.full(n, np.nan)
            out["localBackground_flag"] = np.ones(n, dtype=bool)
            out["localBackground_flag_noGoodPixels"] = np.zeros(n, dtype=bool)
            out["localBackground_flag_noPsf"] = np.ones(n, dtype=bool)
    if "pixel_flags" in plugins:
        out.update(_pixel_flag_columns(tile, x, y, config, fps))
    if config.apply_ap_corr:
        names = tuple(name for name, plugin in (("psfFlux", "psf_flux"),
                                                ("gaussianFlux", "gaussian_flux"))
                      if plugin in plugins)
        out.update(apply_ap_corr(out, tile.ap_corr, out["centroid_x"], out["centroid_y"],
                                 names))
    _propagate_reference_flags(out, refs)
    if "psf_flux" in plugins:
        out["psfMag"], out["psfMagErr"] = _magnitudes(out["psfFlux"], out["psfFluxErr"],
                                                      calibrated)
    return out


#: PSF-flux columns that have an ``undeblended_`` copy.
_UNDEBLENDED_PSF = ("psfFlux", "psfFluxErr", "psfFlux_flag", "psfFlux_flag_edge",
                    "psfFlux_flag_noGoodPixels", "psfFlux_flag_noPsf", "psfFlux_flag_noData")


def _aperture_columns(tile: Tile, image: np.ndarray, x: np.ndarray, y: np.ndarray,
                      config: ForcedPhotConfig, own: Callable[[slice], Footprints | None],
                      n_threads: int) -> dict[str, Any]:
    sinc = {"max_sinc_radius": config.max_sinc_radius} if config.aperture_method == "sinc" \
        else {}
    res = _threaded(lambda sl: measure_apertures(
        image, tile.variance, x[sl], y[sl], config.aperture_radii, method=config.aperture_method,
        subpixels=config.subpixels, footprints=own(sl), **sinc), x.size, n_threads)
    out: dict[str, Any] = {}
    for k, token in enumerate(config.aperture_names):
        out[f"ap{token}Flux"] = res.flux[:, k]
        out[f"ap{token}FluxErr"] = res.flux_err[:, k]
        out[f"ap{token}Flux_flag"] = res.flag[:, k]
        out[f"ap{token}Flux_flag_apertureTruncated"] = res.truncated[:, k]
        out[f"ap{token}Flux_flag_noData"] = res.no_data[:, k]
        out[f"ap{token}Flux_flag_sincCoeffsTruncated"] = res.sinc_truncated[:, k]
    return out


def _pixel_flag_columns(tile: Tile, x: np.ndarray, y: np.ndarray, config: ForcedPhotConfig,
                        footprints: Footprints | None) -> dict[str, Any]:
    """LSST's base_PixelFlags: mask bits in each source's footprint (its in-band footprint
    when deblended, else the pixels within ``config.footprint_radius`` of the centroid) and in
    its 3 x 3 centre."""
    return pixel_flag_columns(tile.mask, tile.mask_planes, x, y,
                              radius=float(config.footprint_radius), footprints=footprints,
                              shape=tile.shape)


def _psf_columns(tile: Tile, image: np.ndarray, x: np.ndarray, y: np.ndarray,
                 config: ForcedPhotConfig, calibrated: bool,
                 own: Callable[[slice], Footprints | None], n_threads: int) -> dict[str, Any]:
    n = x.size
    psf = tile.psf
    if psf is None:
        nan = np.full(n, np.nan)
        return {
            "psfFlux": nan, "psfFluxErr": nan, "psfFlux_area": nan, "psfFlux_chi2": nan,
            "psfFlux_npixels": np.zeros(n, dtype=np.int32),
            "psfFlux_flag": np.ones(n, dtype=bool), "psfFlux_flag_edge": np.zeros(n, dtype=bool),
            "psfFlux_flag_noGoodPixels": np.zeros(n, dtype=bool),
            "psfFlux_flag_noPsf": np.ones(n, dtype=bool),
            "psfFlux_flag_noData": np.zeros(n, dtype=bool), "psfMag": nan, "psfMagErr": nan,
        }
    index, weight = psf.weights(x, y)
    bits = tile.mask_bits(config.psf_bad_mask_planes)
    coeffs = bspline_coefficients(psf.images)
    res = _threaded(lambda sl: measure_psf_flux(
        image, tile.variance, tile.mask, x[sl], y[sl], psf.images, index[sl], weight[sl],
        bad_mask_bits=bits, footprints=own(sl), psf_coefficients=coeffs), n, n_threads)
    mag, mag_err = _magnitudes(res.flux, res.flux_err, calibrated)
    return {
        "psfFlux": res.flux, "psfFluxErr": res.flux_err, "psfFlux_area": res.area,
        "psfFlux_chi2": res.chi2, "psfFlux_npixels": res.npixels, "psfFlux_flag": res.flag,
        "psfFlux_flag_edge": res.flag_edge, "psfFlux_flag_noGoodPixels": res.flag_no_good_pixels,
        "psfFlux_flag_noPsf": np.zeros(n, dtype=bool), "psfFlux_flag_noData": res.flag_no_data,
        "psfMag": mag, "psfMagErr": mag_err,
    }
