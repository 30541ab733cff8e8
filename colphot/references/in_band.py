"""Join an in-band catalog (``catalogs/in_band.yaml``) to the references on id, for one tile.

LSST's ``ForcedPhotCoaddTask`` attaches to each reference the heavy footprint of the same id in
the band's measurement catalog and raises ``LookupError`` when one is missing
(``generateMeasCat``, ``attachFootprints``). Here the in-band catalog is scanned lazily with the
tile's band/tract/patch pushed down (hive partitions or columns), joined on ``id`` with polars,
checked, and turned into the arrays :mod:`colphot.measure.footprints` works on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from colphot._catalogs import load_catalog, polars_dtype
from colphot._fs import has_glob, is_local, polars_storage_options, redact_url
from colphot.exceptions import MissingReferenceError, ReferenceCatalogError

if TYPE_CHECKING:
    from colphot._typing import PathLike, StorageOptions
    from colphot.tile.tile import Tile

__all__ = ["InBandJoin", "empty_in_band", "join_in_band", "scan_in_band"]

_IDENTITY = ("band", "tract", "patch")
_FLUX, _MASK = "footprint_flux", "footprint_mask"


@dataclass(frozen=True)
class InBandJoin:
    """The in-band rows of one tile joined to its references, as arrays.

    Attributes
    ----------
    ids, parent
        ``(m,)`` id and parent of each in-band row of the tile.
    x0, y0, width, height
        ``(m,)`` footprint boxes in the tile's **array** frame (parent frame minus ``xy0``).
    values, value_offset
        Flat float32 footprint values and each row's start (-1: null, the tile's own pixels).
    mask, mask_offset
        Flat bool footprint membership and each row's start.
    source_row
        ``(n,)`` for each reference, in the references' order, the row whose footprint is
        inserted when it is measured: its own, or for a child without values its parent's.
    source
        Name of the in-band catalog (file, root or ``"in_band"``) for messages.
    """

    ids: np.ndarray
    parent: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    width: np.ndarray
    height: np.ndarray
    values: np.ndarray
    value_offset: np.ndarray
    mask: np.ndarray
    mask_offset: np.ndarray
    source_row: np.ndarray
    source: str

    @property
    def top_level(self) -> np.ndarray:
        """``(m,)`` bool: rows with ``parent == 0`` (blend parents and isolated objects)."""
        return self.parent == 0

    @property
    def has_values(self) -> np.ndarray:
        """``(m,)`` bool: rows with their own footprint values."""
        return self.value_offset >= 0


def scan_in_band(in_band: PathLike | list[str], *, storage_options: StorageOptions = None
                 ) -> pl.LazyFrame:
    """A lazy scan of an in-band catalog: a Parquet file, a glob, a hive root
    (``band=…/tract=…/patch=…/*.parquet`` below it) or a list of its files, local or ``s3://``
    (hive keys in the files' folders are read as columns)."""
    source: str | list[str]
    if isinstance(in_band, list):
        source = [os.fspath(p) for p in in_band]
        local = all(is_local(p) for p in source)
    else:
        text = os.fspath(in_band).rstrip("/")
        source = text if text.endswith(".parquet") or has_glob(text) else f"{text}/**/*.parquet"
        local = is_local(source)
    return pl.scan_parquet(source, hive_partitioning=True,
                           hive_schema={"band": pl.String, "tract": pl.Int64,
                                        "patch": pl.Int64},
                           storage_options=None if local else polars_storage_options(
                               storage_options))


def empty_in_band() -> pl.LazyFrame:
    """An in-band catalog without rows (a tile whose partition has no file)."""
    return pl.LazyFrame(schema={c["name"]: polars_dtype(c["dtype"])
                                for c in load_catalog("in_band")["columns"]})


def join_in_band(
    refs: pl.DataFrame,
    in_band: pl.DataFrame | pl.LazyFrame | PathLike,
    tile: Tile,
    *,
    source: str | None = None,
    storage_options: StorageOptions = None,
) -> InBandJoin:
    """The in-band rows of ``tile`` and, for each reference, the footprint it is measured with.

    Parameters
    ----------
    refs
        The references on the tile (``id`` column), in measurement order.
    in_band
        In-band catalog: a polars frame, or a Parquet file, glob or hive root.
    tile
        The tile; its band, tract and patch select the rows (pushed down to the scan).
    source
        Name of the catalog in messages (default: the path, or ``"in_band"`` for a frame).
    storage_options
        fsspec options for a remote catalog.

    Raises
    ------
    MissingReferenceError
        References without an in-band row for this tile: how many, a few ids, both inputs.
    ReferenceCatalogError
        A missing or mistyped column, rows whose band/tract/patch contradict the tile, duplicate
        ids, a list whose length is not the box's, or a reference footprint off the tile.
    """
    if isinstance(in_band, pl.DataFrame | pl.LazyFrame):
        lf = in_band.lazy()
        name = source or "in_band"
    else:
        name = source or redact_url(os.fspath(in_band))
        lf = scan_in_band(in_band, storage_options=storage_options)
    try:
        schema = lf.collect_schema()
    except Exception as err:  # polars' own errors for a missing or unreadable source
        raise ReferenceCatalogError(f"{name}: cannot read the in-band catalog ({err})") from err
    identity = {"band": tile.band, "tract": tile.tract, "patch": tile.patch}
    lf = lf.with_columns([pl.lit(v, dtype=polars_dtype("str" if k == "band" else "int64"))
                          .alias(k) for k, v in identity.items() if k not in schema])
    lf = _cast(lf, schema, name)
    predicate = pl.lit(True)
    for key, value in identity.items():
        if value is not None:
            predicate = predicate & (pl.col(key) == value)
    try:
        rows = lf.filter(predicate).collect()
    except Exception as err:
        raise ReferenceCatalogError(f"{name}: cannot read the in-band catalog ({err})") from err
    ref_ids = refs["id"]
    dup = rows["id"].is_duplicated()
    if dup.any():
        raise ReferenceCatalogError(
            f"{name}: ids must be unique within a tile's band/tract/patch {_tile_label(tile)}; "
            f"{int(dup.sum())} rows share ids, e.g. {rows['id'].filter(dup).unique().head(5)}"
            .replace("\n", " "))
    index = (pl.DataFrame({"id": ref_ids})
             .join(rows.select("id").with_row_index("__row"), on="id", how="left",
                   maintain_order="left")["__row"])
    if index.null_count():
        _missing(lf, ref_ids.filter(index.is_null()), tile, name, rows.height)
    own = index.cast(pl.Int64).to_numpy()
    _check_lengths(rows, name)
    join = _arrays(rows, own, tile, name)
    off = _off_tile(join, join.source_row, tile.shape)
    if off.any():
        ids = ref_ids.filter(pl.Series(off)).head(5).to_list()
        raise ReferenceCatalogError(
            f"{name}: {int(off.sum())} reference(s) whose footprint box is not on the tile "
            f"{tile.uri or ''} {_tile_label(tile)}, e.g. ids {ids}")
    return join


def _tile_label(tile: Tile) -> str:
    return f"(band {tile.band!r}, tract {tile.tract}, patch {tile.patch})"


def _cast(lf: pl.LazyFrame, schema: pl.Schema, name: str) -> pl.LazyFrame:
    """Check the required columns and cast them to their defined types."""
    casts = []
    present = set(schema.names()) | set(_IDENTITY)
    for col in load_catalog("in_band")["columns"]:
        column = col["name"]
        if column not in present:
            raise ReferenceCatalogError(
                f"{name}: missing required column {column!r} ({col['dtype']}) of the in-band "
                f"catalog; columns present: {schema.names()}")
        want = polars_dtype(col["dtype"])
        have = schema.get(column)
        if have is not None and have != want:
            textual = have == pl.String or isinstance(have, pl.Categorical | pl.Enum)
            if isinstance(want, pl.List) != isinstance(have, pl.List) or textual != (
                    want == pl.String):
                raise ReferenceCatalogError(
                    f"{name}: column {column!r} cannot be read as {col['dtype']} ({have})")
            casts.append(pl.col(column).cast(want, strict=True))
    return lf.with_columns(casts) if casts else lf


def _missing(lf: pl.LazyFrame, ids: pl.Series, tile: Tile, name: str, n_rows: int) -> None:
    """Raise for references without an in-band row of this tile.

    A catalog with no row at all for the tile's band/tract/patch contradicts the tile (the
    catalog of another band or patch); otherwise the ids are missing, and the message says
    where else the catalog has them (a neighbouring patch's overlap, say).
    """
    examples = ids.head(5).to_list()
    elsewhere = (lf.filter(pl.col("id").is_in(ids.implode()))
                 .select("id", *_IDENTITY).head(5).collect())
    found = "; ".join(f"id {r['id']}: band {r['band']!r}, tract {r['tract']}, patch "
                      f"{r['patch']}" for r in elsewhere.iter_rows(named=True))
    if n_rows == 0 and elsewhere.height:
        raise ReferenceCatalogError(
            f"{name}: no in-band row is for the tile {tile.uri or ''} {_tile_label(tile)}: the "
            f"rows of its references are for another band, tract or patch ({found})")
    hint = f"; the catalog has rows of them for other tiles ({found})" if found else ""
    raise MissingReferenceError(
        f"{ids.len()} reference id(s) have no row in the in-band catalog {name} for the tile "
        f"{tile.uri or ''} {_tile_label(tile)}, e.g. {examples}; every reference on a tile "
        f"needs its footprint (LSST's attachFootprints){hint}")


def _check_lengths(rows: pl.DataFrame, name: str) -> None:
    """No nulls where a value is needed; each list column holds width x height non-null values
    (the flux list may be null as a whole: the tile's own pixels)."""
    if rows.height == 0:
        return
    nulls = [c for c in ("id", "parent", "footprint_x0", "footprint_y0", "footprint_width",
                         "footprint_height", _MASK) if rows[c].null_count()]
    if nulls:
        bad = pl.any_horizontal(pl.col(c).is_null() for c in nulls)
        ids = rows.filter(bad)["id"].head(5).to_list()
        raise ReferenceCatalogError(f"{name}: null values in column(s) {nulls}, e.g. ids {ids}")
    area = rows["footprint_width"].cast(pl.Int64) * rows["footprint_height"].cast(pl.Int64)
    bad_box = (rows["footprint_width"] < 1) | (rows["footprint_height"] < 1)
    bad_mask = rows[_MASK].list.len() != area
    n_flux = rows[_FLUX].list.len()
    bad_flux = n_flux.is_not_null() & (n_flux != area)
    holes = (rows[_MASK].list.eval(pl.element().is_null().any()).list.first().fill_null(False)
             | rows[_FLUX].list.eval(pl.element().is_null().any()).list.first()
             .fill_null(False))
    for bad, what in ((bad_box, "a footprint box of width or height below 1"),
                      (bad_mask, "a footprint_mask whose length is not width x height"),
                      (bad_flux, "a footprint_flux whose length is not width x height"),
                      (holes, "null elements inside footprint_mask or footprint_flux")):
        if bad.any():
            ids = rows["id"].filter(bad).head(5).to_list()
            raise ReferenceCatalogError(f"{name}: {int(bad.sum())} row(s) with {what}, e.g. "
                                        f"ids {ids}")


def _flat(series: pl.Series, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Values of a list column and each row's start in them (-1 for a null list)."""
    arr = series.rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    offsets = np.asarray(arr.offsets.to_numpy(), dtype=np.int64)[:-1]
    values = np.asarray(arr.values.to_numpy(zero_copy_only=False), dtype=dtype)
    nulls = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    return values, np.where(nulls, -1, offsets)


def _arrays(rows: pl.DataFrame, own: np.ndarray, tile: Tile, name: str) -> InBandJoin:
    ids = rows["id"].to_numpy()
    parent = rows["parent"].to_numpy()
    values, value_offset = _flat(rows[_FLUX], np.float32)
    mask, mask_offset = _flat(rows[_MASK], np.bool_)
    # a child without values is measured with the heavy footprint of the first ancestor that
    # has values, or of its top-level ancestor (NoiseReplacer's parent chain)
    use = own.copy()
    order = np.argsort(ids, kind="stable")
    for _ in range(8):  # deblend trees are one or two levels deep
        lacking = (value_offset[use] < 0) & (parent[use] != 0)
        if not lacking.any():
            break
        wanted = parent[use[lacking]]
        pos = np.minimum(np.searchsorted(ids[order], wanted), max(ids.size - 1, 0))
        found = ids[order][pos] == wanted
        if not found.all():
            ids_bad = ids[use[lacking][~found]][:5].tolist()
            raise ReferenceCatalogError(
                f"{name}: {int((~found).sum())} child row(s) without footprint_flux whose "
                f"parent has no row for the tile {_tile_label(tile)}, e.g. ids {ids_bad}: a "
                "child needs its deblended values or a top-level ancestor's footprint")
        use[np.flatnonzero(lacking)] = order[pos]
    else:
        raise ReferenceCatalogError(f"{name}: the parent chains of some rows do not end at a "
                                    "top-level row (parent = 0)")
    x0, y0 = tile.xy0
    return InBandJoin(
        ids=ids, parent=parent,
        x0=rows["footprint_x0"].to_numpy().astype(np.int64) - int(x0),
        y0=rows["footprint_y0"].to_numpy().astype(np.int64) - int(y0),
        width=rows["footprint_width"].to_numpy().astype(np.int64),
        height=rows["footprint_height"].to_numpy().astype(np.int64),
        values=values, value_offset=value_offset, mask=mask, mask_offset=mask_offset,
        source_row=use, source=name,
    )


def _off_tile(join: InBandJoin, rows: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rows whose footprint box misses the tile's pixels entirely."""
    ny, nx = shape
    x0, y0 = join.x0[rows], join.y0[rows]
    return (x0 >= nx) | (y0 >= ny) | (x0 + join.width[rows] <= 0) | (y0 + join.height[rows] <= 0)
