"""The wide Object table as a lazy frame: one row per object, ``<band>_<column>`` side by side.

A forced-source dataset holds one row per (object, tile). :func:`object_frame` picks each
object's primary copy (one tract/patch, the same in every band), spreads the bands into
Rubin-style columns and adds the reference columns once. Everything stays a polars
``LazyFrame`` over the Parquet parts: filtering on ``tract`` reads only that tract's files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from colphot._catalogs import load_catalog, polars_dtype
from colphot._fs import filesystem, join
from colphot._typing import PathLike, StorageOptions
from colphot.exceptions import SchemaError
from colphot.parquet.metadata import read_colphot_metadata
from colphot.parquet.read import open_forced

__all__ = ["BAND_ORDER", "ObjectColumn", "TileBox", "home_patches", "object_columns",
           "object_frame", "ordered_bands", "tile_boxes"]

#: Band order of the wide columns when the bands are the usual ones (others follow, sorted).
BAND_ORDER = ("u", "g", "r", "i", "z", "y")


@dataclass(frozen=True)
class ObjectColumn:
    """One Object-table column: name, polars dtype, unit (None if dimensionless), description."""

    name: str
    dtype: pl.DataType
    unit: str | None
    description: str


@dataclass(frozen=True)
class TileBox:
    """Pixel box of a measured tile in its tract's frame: ``x0 <= x < x0 + width``."""

    band: str
    tract: int | None
    patch: int | None
    x0: int
    y0: int
    width: int
    height: int


def _parts(fs: Any, base: str) -> list[str]:
    return sorted(p for p in fs.glob(join(base, "**/*.parquet")) if "/band=" in "/" + p)


def tile_boxes(forced: PathLike, *, storage_options: StorageOptions = None
               ) -> tuple[list[TileBox], Any]:
    """The box of every tile of a forced-source dataset, from its parts' provenance.

    Returns the boxes and the Arrow schema of one part (for units and descriptions).

    Raises
    ------
    FileNotFoundError
        No part under ``forced``.
    SchemaError
        A part records no tile box (``inputs`` without ``xy0``/``shape``).
    """
    fs, base = filesystem(forced, storage_options)
    parts = _parts(fs, base)
    if not parts:
        raise FileNotFoundError(f"{os.fspath(forced)}: no forced-source parts "
                                "(band=/tract=/patch=/*.parquet)")
    boxes: list[TileBox] = []
    schema = None
    for path in parts:
        with fs.open(path, "rb") as f:
            part_schema = pq.read_schema(f)
        schema = schema or part_schema
        inputs = read_colphot_metadata(part_schema).get("inputs") or []
        if not inputs or any("xy0" not in i or "shape" not in i for i in inputs):
            raise SchemaError(f"{path}: its colphot metadata records no tile box (inputs[].xy0, "
                              "inputs[].shape), needed to choose primary copies")
        for i in inputs:
            boxes.append(TileBox(str(i["band"]), i.get("tract"), i.get("patch"),
                                 int(i["xy0"][0]), int(i["xy0"][1]), int(i["shape"][1]),
                                 int(i["shape"][0])))
    return boxes, schema


def ordered_bands(bands: set[str]) -> list[str]:
    """``bands`` in the order of :data:`BAND_ORDER`, others after it, sorted."""
    known = [b for b in BAND_ORDER if b in bands]
    return known + sorted(bands - set(known))


def object_columns(bands: list[str], forced_schema: Any) -> list[ObjectColumn]:
    """The Object table's columns for ``bands``, units and descriptions from the forced parts'
    schema (so a dataset in uncalibrated units keeps its unit)."""
    spec = load_catalog("object")
    out = [ObjectColumn(c["name"], polars_dtype(c["dtype"]), c.get("unit"), c["description"])
           for c in spec["columns"]]
    exclude = set(spec["band_columns"]["exclude"])
    template = spec["band_columns"]["description"]
    measured = pl.from_arrow(forced_schema.empty_table()).schema
    for band in bands:
        for field in forced_schema:
            if field.name in exclude:
                continue
            meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
            out.append(ObjectColumn(
                f"{band}_{field.name}", measured[field.name], meta.get("unit"),
                template.format(band=band, description=meta.get("description", "")),
            ))
    return out


def _missing_value(name: str, dtype: pl.DataType, missing_true: set[str]) -> pl.Expr:
    """The value a column takes in a band the object was not measured in."""
    if dtype == pl.Boolean:
        flag = name.endswith("_flag") or name in missing_true
        return pl.lit(True if flag else None, dtype=pl.Boolean)
    if dtype.is_float():
        return pl.lit(float("nan"), dtype=dtype)
    return pl.lit(None, dtype=dtype)


def _placed(forced: PathLike, boxes: list[TileBox], storage_options: StorageOptions,
            tract: int | None | EllipsisType) -> pl.LazyFrame:
    """The forced rows (of one ``tract`` unless it is ``...``) with ``_inner``: how far inside
    its tile box each row lies (pixels; -inf without a centroid)."""
    rows = open_forced(forced, storage_options=storage_options)
    if tract is not ...:
        rows = rows.filter(pl.col("tract").is_null() if tract is None
                           else pl.col("tract") == tract)
    box_frame = pl.LazyFrame(
        [(b.band, b.tract, b.patch, b.x0, b.y0, b.width, b.height) for b in boxes],
        schema={"band": pl.String, "tract": pl.Int64, "patch": pl.Int64, "_x0": pl.Int64,
                "_y0": pl.Int64, "_w": pl.Int64, "_h": pl.Int64},
        orient="row",
    ).unique(["band", "tract", "patch"])
    x, y = pl.col("centroid_x"), pl.col("centroid_y")
    x0, y0 = pl.col("_x0"), pl.col("_y0")
    inner = pl.min_horizontal(x - x0, x0 + pl.col("_w") - 1 - x, y - y0,
                              y0 + pl.col("_h") - 1 - y).fill_nan(float("-inf")) \
        .fill_null(float("-inf"))
    return rows.join(box_frame, on=["band", "tract", "patch"], how="left") \
        .with_columns(_inner=inner)


def home_patches(forced: PathLike, refs: PathLike | pl.LazyFrame | pl.DataFrame | None = None,
                 *, storage_options: StorageOptions = None,
                 boxes: tuple[list[TileBox], Any] | None = None) -> pl.LazyFrame:
    """Each object's primary copy: ``objectId``, ``tract``, ``patch``, lazily.

    The reference catalog's ``tract``/``patch`` when it has them; otherwise, over every tract,
    the tile in which the object lies farthest inside the tile box (ties to the lowest tract,
    patch). Only these three columns are read from the forced rows.
    """
    boxes_list = (boxes or tile_boxes(forced, storage_options=storage_options))[0]
    ref_frame = _reference_frame(refs)
    if ref_frame is not None and {"tract", "patch"} <= set(ref_frame.collect_schema().names()):
        return ref_frame.select("objectId", "tract", "patch")
    placed = _placed(forced, boxes_list, storage_options, ...)
    return placed.group_by("objectId").agg(
        pl.struct("tract", "patch").sort_by(
            ["_inner", "tract", "patch"], descending=[True, False, False]).first()
        .alias("_home")
    ).unnest("_home")


def object_frame(forced: PathLike, refs: PathLike | pl.LazyFrame | pl.DataFrame | None = None,
                 *, storage_options: StorageOptions = None,
                 boxes: tuple[list[TileBox], Any] | None = None,
                 tract: int | None | EllipsisType = ...,
                 home: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """The wide Object table of a forced-source dataset, lazily.

    Parameters
    ----------
    forced
        Root of a forced-source dataset written by :func:`colphot.run` or
        :func:`colphot.write_forced` (local folder or fsspec URL).
    refs
        The reference catalog (Parquet file, folder or frame; ``id`` is ``objectId``). Its
        ``tract``/``patch`` columns, when present, name each object's primary patch, and its
        ``refBand`` and ``detect_isPrimary`` are carried over.
    storage_options
        fsspec options for remote datasets.
    tract
        Only the objects whose primary copy is in this tract (``None``: rows without a tract);
        the forced rows of other tracts are not read. Default: every tract.
    home
        :func:`home_patches`'s result, when the caller computes it once for several tracts.

    Returns
    -------
    polars.LazyFrame
        One row per object measured on at least one tile, columns as
        :func:`object_columns` (``catalogs/object.yaml``), sorted by ``objectId``. The primary
        copy of an object in overlapping patches is the reference catalog's patch or, without
        one, the patch in which the object lies farthest inside the tile box (the patch's
        inner region for evenly overlapping skymap patches); ties go to the lowest tract, patch.

    ``boxes`` is :func:`tile_boxes`'s result when the caller has already read the footers.
    """
    boxes, schema = boxes or tile_boxes(forced, storage_options=storage_options)
    bands = ordered_bands({b.band for b in boxes})
    columns = object_columns(bands, schema)
    spec = load_catalog("object")
    missing_true = set(spec["band_columns"]["missing_true"])
    exclude = set(spec["band_columns"]["exclude"])

    ref_frame = _reference_frame(refs)
    if home is None:
        home = home_patches(forced, refs, storage_options=storage_options,
                            boxes=(boxes, schema))
    placed = _placed(forced, boxes, storage_options, tract)
    primary = placed.join(home, on=["objectId", "tract", "patch"], how="semi")

    base = primary.group_by("objectId").agg(
        pl.col("parentObjectId").first(), pl.col("coord_ra").first(),
        pl.col("coord_dec").first(), pl.col("tract").first(), pl.col("patch").first(),
    )
    if ref_frame is not None:
        names = ref_frame.collect_schema().names()
        extra = [pl.col(c) for c in ("refBand", "detect_isPrimary") if c in names]
        base = base.join(ref_frame.select("objectId", *extra), on="objectId", how="left")
    names = base.collect_schema().names()
    if "refBand" not in names:
        base = base.with_columns(refBand=pl.lit("", dtype=pl.String))
    if "detect_isPrimary" not in names:
        parents = primary.select(pl.col("parentObjectId").alias("objectId")).unique()
        base = base.join(parents.with_columns(_is_parent=pl.lit(True)), on="objectId",
                         how="left").with_columns(
            detect_isPrimary=pl.col("_is_parent").is_null()).drop("_is_parent")

    wide = base
    measured = [f.name for f in schema if f.name not in exclude]
    for band in bands:
        one = primary.filter(pl.col("band") == band).select(
            "objectId", *[pl.col(c).alias(f"{band}_{c}") for c in measured])
        wide = wide.join(one.with_columns(_seen=pl.lit(True)), on="objectId", how="left")
        wide = wide.with_columns([
            pl.when(pl.col("_seen").is_null())
            .then(_missing_value(c.name.removeprefix(f"{band}_"), c.dtype, missing_true))
            .otherwise(pl.col(c.name)).alias(c.name)
            for c in columns if c.name.startswith(f"{band}_")
            and c.name.removeprefix(f"{band}_") in measured
        ]).drop("_seen")
    return wide.select([pl.col(c.name).cast(c.dtype) for c in columns]).sort("objectId")


def _reference_frame(refs: PathLike | pl.LazyFrame | pl.DataFrame | None) -> pl.LazyFrame | None:
    """``refs`` as a lazy frame with ``objectId`` (its ``id``), or None."""
    if refs is None:
        return None
    if isinstance(refs, pl.DataFrame):
        frame = refs.lazy()
    elif isinstance(refs, pl.LazyFrame):
        frame = refs
    else:
        text = os.fspath(refs)
        source = text if text.endswith(".parquet") else join(text, "**/*.parquet")
        frame = pl.scan_parquet(source, hive_partitioning=True)
    names = frame.collect_schema().names()
    if "id" not in names:
        raise SchemaError(f"refs: no 'id' column (has {names[:8]})")
    keep = [c for c in ("id", "tract", "patch", "refBand", "detect_isPrimary") if c in names]
    frame = frame.select(keep).rename({"id": "objectId"})
    casts = {"tract": pl.Int64, "patch": pl.Int64, "refBand": pl.String,
             "detect_isPrimary": pl.Boolean}
    return frame.with_columns([pl.col(c).cast(t) for c, t in casts.items() if c in keep]) \
        .unique("objectId", keep="first")
