"""``open_forced``: a forced-source dataset as a polars LazyFrame with hive partitions."""

from __future__ import annotations

import os
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from colphot._fs import filesystem, is_local, join, polars_storage_options
from colphot._typing import PathLike, StorageOptions

__all__ = ["open_forced", "polars_storage_options"]

_HIVE_SCHEMA = {"band": pl.String, "tract": pl.Int64, "patch": pl.Int64}


def open_forced(root: PathLike, *, storage_options: StorageOptions = None) -> pl.LazyFrame:
    """Open a forced-source dataset written by :func:`colphot.write_forced`.

    Parameters
    ----------
    root
        Local folder or ``s3://`` URL of the dataset.
    storage_options
        fsspec-style options (``key``, ``secret``, ``endpoint_url``, ``anon``); translated for
        polars.

    Returns
    -------
    polars.LazyFrame
        Every row, with ``band``, ``tract``, ``patch`` from the hive partition folders. A
        dataset whose tiles had no source on them (only ``_common_metadata`` written) opens as
        an empty frame with the dataset's schema.

    Raises
    ------
    FileNotFoundError
        ``root`` holds neither Parquet parts nor ``_common_metadata``.
    """
    text = os.fspath(root)
    fs, path = filesystem(text, storage_options)
    if not fs.glob(join(path, "**/*.parquet")):
        return _empty_dataset(fs, path, text)
    source: Any = join(text, "**/*.parquet")
    options = None if is_local(text) else polars_storage_options(storage_options)
    return pl.scan_parquet(
        source, hive_partitioning=True, hive_schema=_HIVE_SCHEMA, storage_options=options,
    )


def _empty_dataset(fs: Any, path: str, text: str) -> pl.LazyFrame:
    """An empty LazyFrame with the schema recorded in the dataset's ``_common_metadata``
    (which holds every column but the hive partition keys)."""
    try:
        with fs.open(join(path, "_common_metadata"), "rb") as f:
            schema = pq.read_schema(f)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{text}: no Parquet parts and no _common_metadata") from err
    empty = pl.from_arrow(schema.empty_table())
    assert isinstance(empty, pl.DataFrame)
    return empty.with_columns(
        pl.lit(None, dtype=dtype).alias(key) for key, dtype in _HIVE_SCHEMA.items()
    ).lazy()
