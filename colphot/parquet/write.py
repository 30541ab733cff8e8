"""``write_forced``: forced-source frames to hive-partitioned Parquet, each file whole or absent."""

from __future__ import annotations

import io
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from colphot._fs import filesystem, is_local, join, put_atomic
from colphot._typing import PathLike, StorageOptions
from colphot.config import ForcedPhotConfig
from colphot.exceptions import SchemaError
from colphot.parquet.metadata import METADATA_KEY, astropy_yaml, colphot_metadata
from colphot.table.schema import PARTITION_KEYS, Column, arrow_schema, forced_columns

__all__ = ["write_forced", "partition_path", "HIVE_NULL"]

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
PART_NAME = "part-0.parquet"


def partition_path(band: str | None, tract: int | None, patch: int | None) -> str:
    """Relative folder ``band=…/tract=…/patch=…`` of one tile's rows."""
    values = [HIVE_NULL if v is None else str(v) for v in (band, tract, patch)]
    return "/".join(f"{k}={v}" for k, v in zip(PARTITION_KEYS, values, strict=True))


def write_forced(
    df: pl.DataFrame,
    root: PathLike,
    *,
    config: ForcedPhotConfig | None = None,
    inputs: list[dict[str, Any]] | None = None,
    storage_options: StorageOptions = None,
) -> list[str]:
    """Write a forced-source table as hive-partitioned Parquet under ``root``.

    Parameters
    ----------
    df
        Output of :func:`colphot.forced_photometry` (one or more tiles).
    root
        Local folder or fsspec URL (``s3://bucket/prefix``).
    config
        The configuration that produced ``df`` (recorded in the metadata; default config if None).
    inputs
        Provenance of the tiles (:meth:`colphot.Tile.provenance`); each file records the
        entries of its own band/tract/patch, and their ``flux_unit`` sets the flux columns' unit.
    storage_options
        fsspec options for remote roots; never written anywhere.

    Returns
    -------
    list of str
        The files written, one per band/tract/patch (``…/part-0.parquet``), plus
        ``_common_metadata`` at the root. Each file appears whole or not at all; rewriting a
        partition replaces its file.
    """
    config = config or ForcedPhotConfig()
    inputs = inputs or []
    fs, base = filesystem(root, storage_options)
    local = is_local(root)
    columns = forced_columns(config)
    expected = [c.name for c in columns]
    if df.columns != expected:
        missing = sorted(set(expected) - set(df.columns))
        extra = sorted(set(df.columns) - set(expected))
        raise SchemaError(
            f"write_forced: frame columns do not match catalogs/forced_source.yaml for this "
            f"config (missing {missing[:5]}, unexpected {extra[:5]})"
        )
    written: list[str] = []
    groups = df.partition_by(list(PARTITION_KEYS), as_dict=True, maintain_order=True) \
        if df.height else {}
    for key, part in groups.items():
        band, tract, patch = key
        mine = [i for i in inputs
                if (i.get("band"), i.get("tract"), i.get("patch")) == (band, tract, patch)]
        unit = mine[0].get("flux_unit", "nJy") if mine else "nJy"
        table = _to_arrow(part, forced_columns(config, flux_unit=unit), config, mine)
        path = join(base, partition_path(band, tract, patch), PART_NAME)
        _write_atomic(fs, path, table, local)
        written.append(path)
    common = _schema_with_metadata(columns, config, inputs)
    common_path = join(base, "_common_metadata")
    buf = io.BytesIO()
    pq.write_metadata(common, buf)
    put_atomic(fs, common_path, buf.getvalue(), local)
    written.append(common_path)
    return written


def _schema_with_metadata(columns: list[Column], config: ForcedPhotConfig,
                          inputs: list[dict[str, Any]]) -> pa.Schema:
    schema = arrow_schema(columns, exclude=PARTITION_KEYS)
    meta = {
        METADATA_KEY: colphot_metadata(config, inputs),
        "table_meta_yaml": astropy_yaml(schema, {"colphot_config": config.to_dict()}),
    }
    return schema.with_metadata(meta)


def _to_arrow(part: pl.DataFrame, columns: list[Column], config: ForcedPhotConfig,
              inputs: list[dict[str, Any]]) -> pa.Table:
    schema = _schema_with_metadata(columns, config, inputs)
    table = part.drop(list(PARTITION_KEYS)).to_arrow()
    return table.cast(schema)


def _write_atomic(fs: Any, path: str, table: pa.Table, local: bool) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    put_atomic(fs, path, buf.getvalue(), local)


