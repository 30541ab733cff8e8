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
                out.append(Column(
                    col["name"].format(ap=token), col["dtype"], unit,
                    col["description"].format(ap=token, radius=f"{radius:g}"), col["producer"],
                ))
        else:
            out.append(Column(col["name"], col["dtype"], unit, col["description"],
                              col["producer"]))
    return out


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

