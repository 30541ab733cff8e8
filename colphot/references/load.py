"""Validate reference catalogs against ``catalogs/reference.yaml``."""

from __future__ import annotations

import polars as pl

from colphot._catalogs import POLARS_DTYPES, load_catalog
from colphot.exceptions import ReferenceCatalogError

__all__ = ["validate_references"]


def validate_references(refs: pl.DataFrame | pl.LazyFrame, *, source: str = "references"
                        ) -> pl.DataFrame:
    """Check a reference catalog and cast its columns to the defined types.

    Parameters
    ----------
    refs
        Reference catalog with at least ``id``, ``coord_ra``, ``coord_dec`` (degrees, ICRS).
    source
        Name of the catalog (file or URL) used in error messages.

    Returns
    -------
    polars.DataFrame
        The catalog with every defined column cast to its type; other columns are kept.

    Raises
    ------
    ReferenceCatalogError
        A required column is missing, a column cannot be cast, or ``id`` has nulls or duplicates.
    """
    if isinstance(refs, pl.LazyFrame):
        refs = refs.collect()
    if not isinstance(refs, pl.DataFrame):
        raise TypeError(f"{source}: expected a polars DataFrame, got {type(refs).__name__}")
    definition = load_catalog("reference")
    casts = []
    for col in definition["columns"]:
        name = col["name"]
        dtype = getattr(pl, POLARS_DTYPES[col["dtype"]])
        if name not in refs.columns:
            if col.get("required"):
                raise ReferenceCatalogError(
                    f"{source}: missing required column {name!r} ({col['dtype']}"
                    f"{', ' + col['unit'] if col.get('unit') else ''}); "
                    f"columns present: {refs.columns}"
                )
            continue
        if refs.schema[name] != dtype:
            casts.append((name, dtype, col["dtype"]))
    for name, dtype, label in casts:
        original = refs[name]
        try:
            refs = refs.with_columns(pl.col(name).cast(dtype, strict=True))
        except Exception as err:  # polars raises InvalidOperationError and friends
            raise ReferenceCatalogError(
                f"{source}: column {name!r} cannot be read as {label} ({refs.schema[name]})"
            ) from err
        if original.dtype.is_float() and dtype.is_integer():
            # polars truncates 1.5 -> 1 and rounds large ids: a float id column is not an id
            lossy = (refs[name].cast(pl.Float64) != original.cast(pl.Float64)).any()
            if lossy:
                raise ReferenceCatalogError(
                    f"{source}: column {name!r} cannot be read as {label} ({original.dtype}): "
                    "non-integer values"
                )
    if refs["id"].null_count():
        raise ReferenceCatalogError(f"{source}: column 'id' has {refs['id'].null_count()} nulls")
    dup = refs["id"].is_duplicated()
    if dup.any():
        examples = refs["id"].filter(dup).unique().head(5).to_list()
        raise ReferenceCatalogError(
            f"{source}: column 'id' must be unique; {int(dup.sum())} rows share ids, "
            f"e.g. {examples}"
        )
    return refs
