"""``open_forced``: a forced-source dataset as a polars LazyFrame with hive partitions."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from colphot._fs import filesystem, is_local, join, polars_storage_options
from colphot._typing import PathLike, StorageOptions
from colphot.exceptions import SchemaError
from colphot.parquet.metadata import read_colphot_metadata

__all__ = ["check_parts", "differing_keys", "open_forced", "polars_storage_options"]

_HIVE_SCHEMA = {"band": pl.String, "tract": pl.Int64, "patch": pl.Int64}


def open_forced(root: PathLike, *, storage_options: StorageOptions = None,
                check: bool = True) -> pl.LazyFrame:
    """Open a forced-source dataset written by :func:`colphot.write_forced`.

    Parameters
    ----------
    root
        Local folder or ``s3://`` URL of the dataset.
    storage_options
        fsspec-style options (``key``, ``secret``, ``endpoint_url``, ``anon``); translated for
        polars.
    check
        Read every part's footer first (one small read per part), so that a corrupt part or
        parts of different configurations are reported here, naming the files.

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
    SchemaError
        With ``check``: a part is not readable Parquet, or parts record different
        configurations or table versions (the message names the files and the keys).
    """
    text = os.fspath(root)
    fs, path = filesystem(text, storage_options)
    parts = sorted(fs.glob(join(path, "**/*.parquet")))
    if not parts:
        return _empty_dataset(fs, path, text)
    if check:
        check_parts(fs, parts)
    source: Any = join(text, "**/*.parquet")
    options = None if is_local(text) else polars_storage_options(storage_options)
    return pl.scan_parquet(
        source, hive_partitioning=True, hive_schema=_HIVE_SCHEMA, storage_options=options,
    )


#: What parts of one dataset must share (keys of the ``colphot`` metadata).
SHARED_KEYS = ("config", "schema_version", "table")


def check_parts(fs: Any, parts: list[str]) -> None:
    """Read each part's footer: all readable Parquet with the same :data:`SHARED_KEYS`.

    Raises :class:`~colphot.exceptions.SchemaError` naming the first bad file, or two files
    that differ and the keys in which they do.
    """

    def footer(part: str) -> dict[str, Any]:
        try:
            with fs.open(part, "rb") as f:
                schema = pq.read_schema(f)
        except Exception as err:  # pyarrow's ArrowInvalid, OSError, ...
            raise SchemaError(f"{part}: not a readable Parquet part ({err})") from err
        info = read_colphot_metadata(schema)
        return {k: info.get(k) for k in SHARED_KEYS}

    if is_local(parts[0]) or len(parts) < 4:
        footers = [footer(p) for p in parts]
    else:
        with ThreadPoolExecutor(8) as pool:
            footers = list(pool.map(footer, parts))
    first = footers[0]
    for part, other in zip(parts[1:], footers[1:], strict=True):
        if other != first:
            keys = differing_keys(first, other)
            raise SchemaError(f"{part} and {parts[0]} belong to different measurements "
                              f"(they differ in {keys}): one dataset holds one configuration")


def differing_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Keys (``config.<name>`` inside the configs) whose values differ between two metadata
    dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if key == "config" and isinstance(va, dict) and isinstance(vb, dict):
            out += [f"config.{k}" for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k)]
        elif va != vb:
            out.append(key)
    return out


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
