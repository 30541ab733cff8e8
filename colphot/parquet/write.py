"""``write_forced``: forced-source frames to hive-partitioned Parquet, each file whole or absent."""

from __future__ import annotations

import functools
import io
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from colphot._catalogs import load_catalog
from colphot._fs import filesystem, join, put_atomic
from colphot._identity import HIVE_NULL, band_problem, index_problem
from colphot._typing import PathLike, StorageOptions
from colphot.config import ForcedPhotConfig
from colphot.exceptions import OutputMismatchError, SchemaError
from colphot.parquet.metadata import (
    METADATA_KEY,
    astropy_yaml,
    colphot_metadata,
    read_colphot_metadata,
)
from colphot.parquet.read import differing_keys
from colphot.table.schema import PARTITION_KEYS, arrow_schema, forced_columns

__all__ = ["write_forced", "write_partition", "write_common_metadata", "partition_path",
           "prepare_output", "HIVE_NULL"]

PART_NAME = "part-0.parquet"


def partition_path(band: str | None, tract: int | None, patch: int | None) -> str:
    """Relative folder ``band=…/tract=…/patch=…`` of one tile's rows.

    Raises
    ------
    SchemaError
        A value that cannot name a folder (:mod:`colphot._identity`): a band with a path
        separator, ``..`` or the hive null token, a negative or non-integer tract or patch. A
        missing (``None``) value becomes the hive null folder.
    """
    problems = []
    if band is not None and (why := band_problem(band)):
        problems.append(f"band: {why}")
    for key, value in (("tract", tract), ("patch", patch)):
        if value is not None and (why := index_problem(value)):
            problems.append(f"{key}: {why}")
    if problems:
        raise SchemaError(f"partition values cannot name an output folder: {'; '.join(problems)}")
    values = [HIVE_NULL if v is None else str(v) for v in (band, tract, patch)]
    return "/".join(f"{k}={v}" for k, v in zip(PARTITION_KEYS, values, strict=True))


def write_forced(
    df: pl.DataFrame,
    root: PathLike,
    *,
    config: ForcedPhotConfig | None = None,
    inputs: list[dict[str, Any]] | None = None,
    storage_options: StorageOptions = None,
    overwrite: bool = False,
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
    overwrite
        Write into a dataset that records another configuration, table version, colphot
        version or set of columns, removing its parts first. Without it such a dataset is left
        untouched and :class:`~colphot.exceptions.OutputMismatchError` lists the differences
        (LSST refuses a differing config, schema or package list unless told to clobber).

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
    deblended = any(c.startswith("undeblended_") for c in df.columns)
    columns = forced_columns(config, deblended=deblended)
    expected = [c.name for c in columns]
    if df.columns != expected:
        missing = sorted(set(expected) - set(df.columns))
        extra = sorted(set(df.columns) - set(expected))
        raise SchemaError(
            f"write_forced: frame columns do not match catalogs/forced_source.yaml for this "
            f"config (missing {missing[:5]}, unexpected {extra[:5]})"
        )
    prepare_output(fs, base, config, deblended=deblended, overwrite=overwrite)
    written: list[str] = []
    groups = df.partition_by(list(PARTITION_KEYS), as_dict=True, maintain_order=True) \
        if df.height else {}
    for key, part in groups.items():
        band, tract, patch = key
        mine = [i for i in inputs
                if (i.get("band"), i.get("tract"), i.get("patch")) == (band, tract, patch)]
        path = join(base, partition_path(band, tract, patch), PART_NAME)
        write_partition(fs, path, part, config, mine)
        written.append(path)
    written.append(write_common_metadata(fs, base, config, inputs, deblended=deblended))
    return written


def _recorded(fs: Any, base: str) -> list[tuple[str, dict[str, Any], list[str]]]:
    """``(file, colphot metadata, column names)`` of what a dataset already holds: its
    ``_common_metadata`` when there is one, else every part (a run stopped before the end)."""
    common = join(base, "_common_metadata")
    files = [common] if fs.exists(common) else sorted(fs.glob(join(base, "**/*.parquet")))
    out = []
    for path in files:
        try:
            with fs.open(path, "rb") as f:
                schema = pq.read_schema(f)
        except Exception:  # unreadable: not ours to judge, a stale file all the same
            out.append((path, {}, []))
            continue
        out.append((path, read_colphot_metadata(schema), schema.names))
    return out


def prepare_output(fs: Any, base: str, config: ForcedPhotConfig, *, deblended: bool,
                   overwrite: bool) -> None:
    """Make sure a write into ``base`` cannot mix two measurements in one dataset.

    When the dataset records another configuration, table or schema version, colphot version
    or set of columns: with ``overwrite``, remove its parts, ``_common_metadata`` and manifest;
    else raise :class:`~colphot.exceptions.OutputMismatchError` naming the file and the keys.
    A new or matching dataset is left as it is.
    """
    from colphot import __version__

    want = {"config": config.to_dict(), "schema_version": load_catalog("forced_source")["version"],
            "table": "forced_source", "colphot_version": __version__}
    columns = arrow_schema(forced_columns(config, deblended=deblended),
                           exclude=PARTITION_KEYS).names
    for path, info, names in _recorded(fs, base):
        have = {k: info.get(k) for k in want}
        keys = differing_keys(want, have)
        if names != columns:
            keys.append("columns")
        if not keys:
            continue
        if not overwrite:
            raise OutputMismatchError(
                f"{path}: the dataset holds another measurement (differs in {keys}); write "
                "elsewhere, or overwrite it (overwrite=True, --clobber) to replace its parts")
        stale = sorted(fs.glob(join(base, "**/*.parquet")))
        stale += [p for p in (join(base, "_common_metadata"), join(base, "_manifest.json"))
                  if fs.exists(p)]
        for p in stale:
            fs.rm(p)
        return


def write_partition(fs: Any, path: str, part: pl.DataFrame, config: ForcedPhotConfig,
                    inputs: list[dict[str, Any]]) -> int:
    """Write one band/tract/patch's rows to ``path`` on ``fs``, whole or absent.

    ``inputs`` is that tile's provenance; the first entry's ``flux_unit`` (nJy if absent) sets
    the flux columns' unit. An empty frame gives a valid part with no rows. Returns the row
    count.
    """
    unit = (inputs[0].get("flux_unit") if inputs else None) or "nJy"
    deblended = any(c.startswith("undeblended_") for c in part.columns)
    table = _to_arrow(part, config, unit, inputs, deblended)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    put_atomic(fs, path, buf.getvalue())
    return table.num_rows


def write_common_metadata(fs: Any, base: str, config: ForcedPhotConfig,
                          inputs: list[dict[str, Any]], *, deblended: bool = False) -> str:
    """Write the dataset's ``_common_metadata`` (schema, config, provenance) under ``base``;
    returns its path. ``deblended``: the parts have the ``undeblended_`` columns."""
    buf = io.BytesIO()
    pq.write_metadata(_schema_with_metadata(config, "nJy", inputs, deblended), buf)
    path = join(base, "_common_metadata")
    put_atomic(fs, path, buf.getvalue())
    return path


@functools.lru_cache(maxsize=32)
def _schema_and_yaml(config: ForcedPhotConfig, flux_unit: str, deblended: bool
                     ) -> tuple[pa.Schema, str]:
    """The Arrow schema of a part and its astropy ``table_meta_yaml`` (building the YAML
    costs tens of milliseconds, and both depend only on the config, the flux unit and whether
    the measurement was deblended)."""
    schema = arrow_schema(forced_columns(config, flux_unit=flux_unit, deblended=deblended),
                          exclude=PARTITION_KEYS)
    return schema, astropy_yaml(schema, {"colphot_config": config.to_dict()})


def _schema_with_metadata(config: ForcedPhotConfig, flux_unit: str,
                          inputs: list[dict[str, Any]], deblended: bool) -> pa.Schema:
    schema, yaml_text = _schema_and_yaml(config, flux_unit, deblended)
    return schema.with_metadata({
        METADATA_KEY: colphot_metadata(config, inputs),
        "table_meta_yaml": yaml_text,
        # astropy's Parquet reader sizes string columns (refBand) from these keys
        **{f"table::len::{f.name}": "16" for f in schema if pa.types.is_string(f.type)},
    })


def _to_arrow(part: pl.DataFrame, config: ForcedPhotConfig, flux_unit: str,
              inputs: list[dict[str, Any]], deblended: bool) -> pa.Table:
    schema = _schema_with_metadata(config, flux_unit, inputs, deblended)
    return part.drop(list(PARTITION_KEYS)).to_arrow().cast(schema)
