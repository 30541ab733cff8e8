"""Write and open the Object table: Parquet by tract, documented like the forced-source table."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from colphot._fs import (
    filesystem,
    is_local,
    join,
    polars_storage_options,
    put_atomic,
    redact_url,
)
from colphot._typing import PathLike, StorageOptions
from colphot.objects.build import (
    ObjectColumn,
    home_patches,
    object_columns,
    object_frame,
    ordered_bands,
    tile_boxes,
)
from colphot.parquet.metadata import (
    METADATA_KEY,
    astropy_yaml,
    package_versions,
    read_colphot_metadata,
)

__all__ = ["object_table", "open_objects", "object_arrow_schema"]

PART_NAME = "part-0.parquet"


def object_arrow_schema(columns: list[ObjectColumn]) -> pa.Schema:
    """Arrow schema of the Object table with ``unit``/``description`` field metadata."""
    types = pl.DataFrame(schema={c.name: c.dtype for c in columns}).to_arrow().schema
    fields = []
    for c in columns:
        meta = {"description": c.description}
        if c.unit:
            meta["unit"] = c.unit
        fields.append(pa.field(c.name, types.field(c.name).type, metadata=meta))
    return pa.schema(fields)


def object_table(
    forced: PathLike,
    out: PathLike,
    *,
    refs: PathLike | pl.LazyFrame | pl.DataFrame | None = None,
    storage_options: StorageOptions = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the wide Object table of a forced-source dataset, one Parquet file per tract.

    Parameters
    ----------
    forced
        Root of the forced-source dataset (local folder or fsspec URL).
    out
        Root of the Object table: ``out/tract=<t>/part-0.parquet`` plus ``_common_metadata``.
    refs
        The reference catalog, for ``refBand``, ``detect_isPrimary`` and primary patches
        (see :func:`colphot.objects.build.object_frame`).
    storage_options
        fsspec options for remote roots (never written anywhere).
    overwrite
        Replace an Object table already at ``out``; without it, existing parts raise
        ``FileExistsError``.

    Returns
    -------
    dict
        ``paths`` written, ``rows`` per tract, ``seconds``.

    Each tract is computed by polars' streaming engine and written to a local temporary file,
    then moved (or uploaded in one put) into place, so every file appears whole or not at all.
    """
    t0 = time.perf_counter()
    fs, base = filesystem(out, storage_options)
    existing = list(fs.glob(join(base, "tract=*", "*.parquet")))
    if existing and not overwrite:
        raise FileExistsError(f"{os.fspath(out)}: already holds an Object table "
                              f"({len(existing)} parts); pass overwrite=True (--clobber)")
    boxes, forced_schema = tile_boxes(forced, storage_options=storage_options)
    bands = ordered_bands({b.band for b in boxes})
    columns = object_columns(bands, forced_schema)
    schema = object_arrow_schema(columns)
    source_meta = read_colphot_metadata(forced_schema)
    meta = {
        METADATA_KEY: json.dumps({
            "colphot_version": source_meta.get("colphot_version"),
            "versions": package_versions(),
            "table": "object",
            "schema_version": 1,
            "config": source_meta.get("config"),
            "inputs": [{"forced_source": redact_url(os.fspath(forced)), "bands": bands}],
        }, sort_keys=True, default=str),
        "table_meta_yaml": astropy_yaml(schema, {"colphot_table": "object"}),
    }
    # astropy's Parquet reader sizes string columns from these keys
    meta.update({f"table::len::{f.name}": "16" for f in schema if pa.types.is_string(f.type)
                 or pa.types.is_large_string(f.type)})
    schema = schema.with_metadata(meta)
    tracts = sorted({b.tract for b in boxes}, key=lambda t: (t is None, t))
    written: list[str] = []
    rows: dict[str, int] = {}
    for old in existing:
        fs.rm(old)
    with tempfile.TemporaryDirectory(prefix="colphot-home-") as tmp:
        # every object's primary tract/patch, computed once over all tracts (three integer
        # columns, streamed to disk), so each tract's pass reads only its own rows
        home_path = os.path.join(tmp, "home.parquet")
        home_patches(forced, refs, storage_options=storage_options,
                     boxes=(boxes, forced_schema)).sink_parquet(home_path, engine="streaming")
        for tract in tracts:
            home = pl.scan_parquet(home_path).filter(
                pl.col("tract").is_null() if tract is None else pl.col("tract") == tract)
            part = object_frame(forced, refs, storage_options=storage_options,
                                boxes=(boxes, forced_schema), tract=tract, home=home)
            key = "__HIVE_DEFAULT_PARTITION__" if tract is None else str(tract)
            path = join(base, f"tract={key}", PART_NAME)
            rows[key] = _write_part(fs, path, part, schema)
            written.append(path)
    common = join(base, "_common_metadata")
    buf = pa.BufferOutputStream()
    pq.write_metadata(schema, buf)
    put_atomic(fs, common, buf.getvalue().to_pybytes())
    written.append(common)
    return {"paths": written, "rows": rows, "seconds": time.perf_counter() - t0}


def _write_part(fs: Any, path: str, part: pl.LazyFrame, schema: pa.Schema) -> int:
    """Stream ``part`` to a local temporary Parquet file with ``schema``, then put it in place."""
    tmpdir = tempfile.mkdtemp(prefix="colphot-objects-")
    try:
        raw = os.path.join(tmpdir, "raw.parquet")
        part.sink_parquet(raw, engine="streaming")
        final = os.path.join(tmpdir, PART_NAME)
        n = 0
        source = pq.ParquetFile(raw)
        with pq.ParquetWriter(final, schema) as writer:
            for batch in source.iter_batches(batch_size=65536):
                table = pa.Table.from_batches([batch]).cast(schema)
                writer.write_table(table)
                n += table.num_rows
            if n == 0:
                writer.write_table(schema.empty_table())
        with open(final, "rb") as f:
            put_atomic(fs, path, f.read())
        return n
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def open_objects(root: PathLike, *, storage_options: StorageOptions = None) -> pl.LazyFrame:
    """Open an Object table written by :func:`object_table` as a lazy frame."""
    text = os.fspath(root)
    fs, base = filesystem(text, storage_options)
    if not fs.glob(join(base, "tract=*", "*.parquet")):
        raise FileNotFoundError(f"{text}: no Object table parts (tract=*/part-0.parquet)")
    options = None if is_local(text) else polars_storage_options(storage_options)
    return pl.scan_parquet(join(text, "tract=*", "*.parquet"), hive_partitioning=False,
                           storage_options=options)
