"""The forced-source table's columns from ``catalogs/forced_source.yaml`` and a config."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from colphot._catalogs import POLARS_DTYPES, load_catalog
from colphot.config import ForcedPhotConfig

__all__ = ["Column", "forced_columns", "polars_schema", "arrow_schema", "PARTITION_KEYS"]

PARTITION_KEYS: tuple[str, ...] = ("band", "tract", "patch")

_ARROW = {
    "int64": pa.int64(), "int32": pa.int32(), "float64": pa.float64(),
    "float32": pa.float32(), "bool": pa.bool_(), "str": pa.string(),
}


@dataclass(frozen=True)
class Column:
    """One output column: name, dtype name, unit (``None`` if dimensionless), description."""

    name: str
    dtype: str
    unit: str | None
    description: str
    producer: str


def forced_columns(config: ForcedPhotConfig | None = None, *, flux_unit: str = "nJy",
                   deblended: bool = False) -> list[Column]:
    """The forced-source columns, in order, for the algorithms ``config`` runs.

    Aperture templates are expanded for every radius; ``flux_unit`` replaces ``nJy`` for tiles
    measured in their own units. ``deblended`` (an in-band catalog was given) adds the
    ``undeblended_`` columns of ``config.undeblended_plugins``.
    """
    config = config or ForcedPhotConfig()
    active = {"identity", *config.plugins}
    if config.apply_ap_corr:
        active |= {f"{p}_ap_corr" for p in ("psf_flux", "gaussian_flux") if p in active}
    if deblended:
        active |= {f"undeblended_{p}" for p in config.undeblended_plugins}
    out: list[Column] = []
    for col in load_catalog("forced_source")["columns"]:
        if col["producer"] not in active:
            continue
        unit = col.get("unit")
        if unit == "nJy":
            unit = flux_unit
        if "{ap}" in col["name"]:
            for radius, token in zip(config.aperture_radii, config.aperture_names, strict=True):
                sinc = _is_sinc(config, radius)
                if col.get("radii") == "sinc" and not sinc:
                    continue
                how, how_err = _APERTURE_HOW["sinc" if sinc else _naive(config)]
                out.append(Column(
                    col["name"].format(ap=token), col["dtype"], unit,
                    col["description"].format(ap=token, radius=f"{radius:g}", how=how,
                                              how_err=how_err),
                    col["producer"],
                ))
        else:
            out.append(Column(col["name"], col["dtype"], unit, col["description"],
                              col["producer"]))
    return out


#: How an aperture flux and its error are computed, by method, for the column descriptions.
_APERTURE_HOW = {
    "sinc": ("the integral over the circle of the sinc-interpolated image (LSST's "
             "CircularApertureFlux sinc photometry: a sum of pixel values times sinc "
             "coefficients, meas_base SincCoeffs)",
             "sqrt(sum(c^2 V)) with c the shifted sinc coefficients"),
    "center": ("the sum of the pixels whose centre is inside the circle (meas_base "
               "computeNaiveFlux)", "sqrt(sum(V)) over those pixels"),
    "exact": ("the sum of pixel values weighted by each pixel's exact overlap area with the "
              "circle (not LSST's default)", "sqrt(sum(w V)) with w the overlap fractions"),
    "subpixel": ("the sum of pixel values weighted by the fraction of n x n sub-pixel samples "
                 "inside the circle (not LSST's default)",
                 "sqrt(sum(w V)) with w the sampled fractions"),
}


def _is_sinc(config: ForcedPhotConfig, radius: float) -> bool:
    return config.aperture_method == "sinc" and radius <= config.max_sinc_radius


def _naive(config: ForcedPhotConfig) -> str:
    """The method of the radii not measured with sinc coefficients."""
    return "center" if config.aperture_method == "sinc" else config.aperture_method


def polars_schema(columns: list[Column]) -> pl.Schema:
    """Polars schema of ``columns``."""
    return pl.Schema({c.name: getattr(pl, POLARS_DTYPES[c.dtype])() for c in columns})


def arrow_schema(columns: list[Column], *, exclude: tuple[str, ...] = ()) -> pa.Schema:
    """Arrow schema of ``columns`` with ``unit`` and ``description`` field metadata."""
    fields = []
    for c in columns:
        if c.name in exclude:
            continue
        meta = {"description": c.description}
        if c.unit:
            meta["unit"] = c.unit
        fields.append(pa.field(c.name, _ARROW[c.dtype], metadata=meta))
    return pa.schema(fields)

