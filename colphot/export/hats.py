"""``to_hats``: a colphot Parquet dataset as a HATS catalog (hats-import on Dask) for LSDB.

Any hive-partitioned colphot dataset with ``coord_ra``/``coord_dec`` works: the forced-source
table of ``colphot run`` (``band=…/tract=…/patch=…/part-0.parquet``) or the wide Object table
(``tract=…/part-0.parquet``). What the HATS catalog holds::

    HATS_DIR/hats.properties          HATS properties + colphot's provenance (colphot_* keys)
    HATS_DIR/partition_info.csv       the HEALPix pixels (Norder, Npix)
    HATS_DIR/dataset/Norder=k/Dir=d/Npix=n.parquet
                                      the rows of each pixel, sorted by _healpix_29 (then
                                      objectId), every column of the dataset plus the hive
                                      keys the parts' folders carried (band, tract, patch) and
                                      HATS's _healpix_29
    HATS_DIR/dataset/_common_metadata, _metadata, skymap*.fits, point_map.fits

Units and descriptions travel twice in every leaf: as Arrow field metadata (``unit``,
``description``, what pyarrow, polars and ``lsdb``'s schema show) and as astropy's
``table_meta_yaml`` schema key (``astropy.table.Table.read(leaf)`` restores ``unit`` and
``description``), with the ``colphot`` JSON of the dataset (its version, config, table and
schema version; without the per-tile ``inputs``, which name tiles, not HEALPix pixels).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from colphot._fs import filesystem, is_local, join, redact_url
from colphot._identity import HIVE_NULL
from colphot._typing import PathLike, StorageOptions
from colphot.exceptions import SchemaError
from colphot.parquet.metadata import METADATA_KEY, read_colphot_metadata
from colphot.parquet.read import SHARED_KEYS, differing_keys

try:
    from hats_import.catalog.file_readers import InputReader
except ImportError as err:  # pragma: no cover - the extra is missing
    raise ImportError("colphot's HATS export needs hats, hats-import and lsdb: "
                      "pip install 'colphot[hats]'") from err

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["HEALPIX_COLUMN", "RA_COLUMN", "DEC_COLUMN", "to_hats"]

RA_COLUMN = "coord_ra"
DEC_COLUMN = "coord_dec"
#: HATS's spatial index column (hats.pixel_math.spatial_index.SPATIAL_INDEX_COLUMN).
HEALPIX_COLUMN = "_healpix_29"
_HEALPIX_DESCRIPTION = (
    "HEALPix index at order 29 (nested scheme) of (coord_ra, coord_dec): HATS's spatial index, "
    "added by hats-import; the rows of each leaf are sorted by it."
)
#: HATS catalog type of each colphot table (one row per object, or per object and tile).
_CATALOG_TYPES = {"forced_source": "source", "object": "object"}
_NAME_BAD = re.compile(r"[^A-Za-z0-9._-]")
_HIVE_SEGMENT = re.compile(r"^([^=/]+)=([^/]*)$")


def to_hats(
    dataset: PathLike,
    hats_dir: PathLike,
    *,
    catalog_name: str | None = None,
    storage_options: StorageOptions = None,
    client: Client | None = None,
    n_workers: int | None = None,
    highest_order: int = 10,
    lowest_order: int = 0,
    pixel_threshold: int = 1_000_000,
    tmp_dir: PathLike | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> str:
    """Write a HATS catalog of a hive-partitioned colphot Parquet dataset with hats-import.

    Parameters
    ----------
    dataset
        Root (local folder or fsspec URL) of a colphot dataset: the forced-source table
        (``band=…/tract=…/patch=…``) or the Object table (``tract=…``); any hive-partitioned
        Parquet with ``coord_ra``/``coord_dec`` in degrees.
    hats_dir
        The catalog folder to write (local or fsspec URL, e.g. ``s3://bucket/hats/forced``).
    catalog_name
        ``obs_collection`` of ``hats.properties`` (letters, digits, ``._-``); default: the last
        part of ``hats_dir``.
    storage_options
        fsspec options for both URLs (``key``, ``secret``, ``endpoint_url``, ...); handed to
        the workers inside their tasks, never written to the catalog or to a temporary file.
    client
        A :class:`distributed.Client` of an existing cluster (its workers must import colphot
        and reach ``tmp_dir``); by default a ``LocalCluster`` of ``n_workers`` single-threaded
        worker processes is started and closed at the end (call ``to_hats`` under
        ``if __name__ == "__main__":`` in a script).
    n_workers
        Workers of the default local cluster (default: ``min(2, cpu count)``).
    highest_order, lowest_order, pixel_threshold
        hats-import's partitioning: pixels are merged from ``highest_order`` down to
        ``lowest_order`` while they hold at most ``pixel_threshold`` rows. hats-import keeps a
        dense histogram of ``highest_order`` in each mapping task (``96 * 4**order`` bytes:
        100 MB at order 10, 1.6 GB at 12), so orders above 11 need large workers.
    tmp_dir
        Local folder (shared by the workers on a multi-machine cluster) for hats-import's
        intermediate files; default: the system's temporary folder. Removed at the end.
    overwrite
        Replace an existing non-empty ``hats_dir``; without it such a folder raises
        :class:`FileExistsError` before any work.
    progress
        Show hats-import's progress bars.

    Returns
    -------
    str
        ``hats_dir``, which ``lsdb.open_catalog`` (with a ``UPath`` carrying the storage
        options for a remote one) opens.

    The catalog appears whole or not at all: hats-import writes it into a hidden sibling
    (``.<name>.colphot-tmp-<hex>`` beside ``hats_dir``), which a local rename then moves into
    place (and removes on any error). On an object store, where nothing renames a prefix, the
    objects are copied server-side with ``hats.properties`` and ``properties`` last, so a
    reader that finds ``hats.properties`` (what ``hats.read_hats``, ``lsdb.open_catalog`` and
    ``hats.io.validation.is_valid_catalog`` look for first) finds a complete catalog; a failed
    copy removes what it had copied.

    Raises
    ------
    FileNotFoundError
        ``dataset`` holds no Parquet parts (the message names it).
    SchemaError
        A part is not readable Parquet, parts differ in columns or in the measurement they
        record, ``coord_ra``/``coord_dec`` are missing (the message names the part and the
        column), or the dataset has no rows.
    FileExistsError
        ``hats_dir`` exists and is not empty, without ``overwrite``.
    ValueError
        Bad ``catalog_name``, orders or ``pixel_threshold`` (hats-import's own checks).
    """
    info = inspect_dataset(dataset, storage_options)
    out_text = os.fspath(hats_dir).rstrip("/")
    name = catalog_name if catalog_name is not None else _default_name(out_text)
    if not name or _NAME_BAD.search(name):
        raise ValueError(f"catalog_name {name!r}: use letters, digits, '.', '_' and '-' only")
    out_fs, out_path = filesystem(out_text, storage_options)
    _check_target(out_fs, out_path, out_text, overwrite)

    from hats_import import ImportArguments, pipeline_with_client
    from upath import UPath

    staging_path = _staging_sibling(out_path)
    local_tmp = tempfile.mkdtemp(prefix="colphot-hats-",
                                 dir=os.fspath(tmp_dir) if tmp_dir is not None else None)
    own_cluster = None
    try:
        schema_file = os.path.join(local_tmp, "colphot_schema.parquet")
        pq.write_metadata(info.leaf_schema, schema_file)
        reader = HivePartReader(info.root_path, info.hive_types)
        inputs: list[Any] = [p if is_local(dataset) else UPath(p, **(storage_options or {}))
                             for p in info.part_urls]
        if _is_local_fs(out_fs):
            os.makedirs(staging_path, exist_ok=False)
            output_path: Any = staging_path
        else:
            output_path = UPath(out_fs.unstrip_protocol(staging_path), **(storage_options or {}))
        sort = "objectId" if "objectId" in info.leaf_schema.names else None
        args = ImportArguments(
            output_path=output_path,
            output_artifact_name=name,
            input_file_list=inputs,
            file_reader=reader,
            catalog_type=_CATALOG_TYPES.get(str(info.metadata.get("table")), "object"),
            ra_column=RA_COLUMN,
            dec_column=DEC_COLUMN,
            sort_columns=sort,
            use_schema_file=schema_file,
            expected_total_rows=info.n_rows,
            highest_healpix_order=highest_order,
            lowest_healpix_order=lowest_order,
            pixel_threshold=pixel_threshold,
            tmp_dir=local_tmp,
            resume=False,
            progress_bar=progress,
            simple_progress_bar=True,
            addl_hats_properties=_provenance_properties(info, dataset),
        )
        if client is None:
            own_cluster, client = _local_client(n_workers)
        with client.as_current():  # hats-import's steps look the client up
            pipeline_with_client(args, client)
        _promote(out_fs, join(staging_path, name), out_path, overwrite)
    finally:
        if own_cluster is not None:
            client.close()  # type: ignore[union-attr]
            own_cluster.close()
        shutil.rmtree(local_tmp, ignore_errors=True)
        _remove(out_fs, staging_path)
    return out_text


# ------------------------------------------------------------------------------------------
# The dataset: parts, hive keys, schema, provenance


@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`inspect_dataset` found.

    Attributes
    ----------
    root_path
        The dataset root as its filesystem names it (no protocol).
    part_urls
        Every part, as a local path or a full URL.
    hive_types
        ``{key: "int64" | "string"}`` of the hive keys in the parts' folders that are not
        columns of the files, in folder order.
    leaf_schema
        Arrow schema of the rows handed to hats-import (file columns with the hive keys
        inserted), with unit/description field metadata and ``table_meta_yaml``/``colphot``
        schema metadata for the leaves (``_healpix_29`` described in the YAML).
    metadata
        The ``colphot`` JSON of the first part.
    n_rows
        Rows of all parts (from their footers).
    """

    root_path: str
    part_urls: list[str]
    hive_types: dict[str, str]
    leaf_schema: pa.Schema
    metadata: dict[str, Any]
    n_rows: int


def inspect_dataset(dataset: PathLike, storage_options: StorageOptions = None) -> DatasetInfo:
    """Read every part's footer and check that the dataset can become one HATS catalog.

    Raises :class:`FileNotFoundError` (no parts) or :class:`~colphot.exceptions.SchemaError`
    (unreadable part, parts that differ, no ``coord_ra``/``coord_dec``, no rows), naming the
    dataset, part and column.
    """
    text = os.fspath(dataset).rstrip("/")
    fs, root = filesystem(text, storage_options)
    root = root.rstrip("/")
    parts = sorted(p for p in fs.glob(join(root, "**/*.parquet"))
                   if not os.path.basename(p).startswith((".", "_")))
    if not parts:
        raise FileNotFoundError(f"{text}: no Parquet parts (**/*.parquet) to export")

    def footer(part: str) -> pq.FileMetaData:
        try:
            with fs.open(part, "rb") as f:
                return pq.read_metadata(f)
        except Exception as err:  # pyarrow's ArrowInvalid, OSError, ...
            raise SchemaError(f"{_url(fs, part)}: not a readable Parquet part ({err})") from err

    if is_local(text) or len(parts) < 4:
        footers = [footer(p) for p in parts]
    else:
        with ThreadPoolExecutor(8) as pool:
            footers = list(pool.map(footer, parts))
    schemas = [f.schema.to_arrow_schema() for f in footers]
    first, first_info = schemas[0], read_colphot_metadata(schemas[0])
    shared = {k: first_info.get(k) for k in SHARED_KEYS}
    for part, schema in zip(parts[1:], schemas[1:], strict=True):
        if not schema.remove_metadata().equals(first.remove_metadata()):
            raise SchemaError(f"{_url(fs, part)} and {_url(fs, parts[0])} have different "
                              "columns or types: one HATS catalog holds one table")
        other = read_colphot_metadata(schema)
        if (theirs := {k: other.get(k) for k in SHARED_KEYS}) != shared:
            raise SchemaError(
                f"{_url(fs, part)} and {_url(fs, parts[0])} belong to different measurements "
                f"(they differ in {differing_keys(shared, theirs)})")
    hive_values = [_hive_values(root, p) for p in parts]
    keys = list(hive_values[0])
    for part, values in zip(parts, hive_values, strict=True):
        if list(values) != keys:
            raise SchemaError(f"{_url(fs, part)}: hive folders {list(values)} differ from "
                              f"{keys} of {_url(fs, parts[0])}")
    keys = [k for k in keys if k not in first.names]
    for column in (RA_COLUMN, DEC_COLUMN):
        if column not in first.names:
            raise SchemaError(f"{_url(fs, parts[0])}: no column {column!r} (HATS partitions "
                              f"the sky by {RA_COLUMN}/{DEC_COLUMN}, in degrees)")
    if HEALPIX_COLUMN in first.names:
        raise SchemaError(f"{_url(fs, parts[0])}: already has a {HEALPIX_COLUMN!r} column, "
                          "which hats-import adds")
    n_rows = sum(f.num_rows for f in footers)
    if n_rows == 0:
        raise SchemaError(f"{text}: its {len(parts)} parts hold no rows; a HATS catalog "
                          "needs at least one")
    definitions = _column_definitions(first_info.get("table"))
    hive_types = {k: _hive_type(k, [v[k] for v in hive_values], definitions) for k in keys}
    lengths = {k: max((len(v[k]) for v in hive_values if v[k] is not None), default=1)
               for k, t in hive_types.items() if t == "string"}
    schema = _leaf_schema(first, hive_types, definitions, lengths)
    return DatasetInfo(root, [_url(fs, p) if not is_local(text) else p for p in parts],
                       hive_types, schema, first_info, n_rows)


def _url(fs: Any, path: str) -> str:
    """A path of ``fs`` as a URL (local paths stay plain)."""
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return path
    return redact_url(fs.unstrip_protocol(path))


def _hive_values(root: str, part: str) -> dict[str, str | None]:
    """``{key: value}`` of the ``key=value`` folders between ``root`` and ``part`` (values
    percent-decoded; the hive null token gives ``None``)."""
    rel = part[len(root):] if part.startswith(root) else part
    out: dict[str, str | None] = {}
    for segment in rel.strip("/").split("/")[:-1]:
        if m := _HIVE_SEGMENT.match(segment):
            value = urllib.parse.unquote(m.group(2))
            out[m.group(1)] = None if value == HIVE_NULL else value
    return out


def _column_definitions(table: Any) -> dict[str, dict[str, Any]]:
    """Column definitions of a colphot table (``catalogs/<table>.yaml``) by name; empty when
    the table is unknown."""
    from colphot._catalogs import load_catalog

    if not isinstance(table, str) or not re.fullmatch(r"[A-Za-z0-9_]+", table):
        return {}
    try:
        return {c["name"]: c for c in load_catalog(table)["columns"]}
    except (FileNotFoundError, KeyError, ValueError):
        return {}


def _hive_type(key: str, values: list[str | None], definitions: dict[str, Any]) -> str:
    """``int64`` or ``string`` for a hive key: the table definition's dtype when it has the
    column, else ``int64`` when every value is an integer."""
    dtype = definitions.get(key, {}).get("dtype")
    if dtype in ("int64", "int32"):
        return "int64"
    if dtype == "str":
        return "string"
    present = [v for v in values if v is not None]
    return "int64" if present and all(re.fullmatch(r"-?\d+", v) for v in present) else "string"


def _leaf_schema(files: pa.Schema, hive_types: dict[str, str],
                 definitions: dict[str, Any], lengths: dict[str, int]) -> pa.Schema:
    """The rows' schema: the files' columns with the hive keys inserted before
    ``coord_ra``, field metadata kept; schema metadata ``colphot`` (without ``inputs``) and
    ``table_meta_yaml`` covering ``_healpix_29`` too."""
    fields = list(files)
    at = files.names.index(RA_COLUMN)
    for offset, (key, kind) in enumerate(hive_types.items()):
        spec = definitions.get(key, {})
        meta = {"description": spec.get("description")
                or f"Hive partition key {key!r} of the colphot dataset's folders."}
        if spec.get("unit"):
            meta["unit"] = spec["unit"]
        fields.insert(at + offset, pa.field(key, pa.int64() if kind == "int64" else pa.string(),
                                            metadata=meta))
    schema = pa.schema(fields)
    info = read_colphot_metadata(files)
    info.pop("inputs", None)
    yaml_fields = [pa.field(HEALPIX_COLUMN, pa.int64(),
                            metadata={"description": _HEALPIX_DESCRIPTION}), *schema]
    metadata = {
        "table_meta_yaml": _astropy_yaml(yaml_fields, _yaml_meta(files)),
        METADATA_KEY: json.dumps(info, sort_keys=True, default=str),
    }
    # astropy's Parquet reader sizes string columns from these keys: the files' own, and the
    # longest value of each string hive key
    metadata.update({k.decode(): v.decode() for k, v in (files.metadata or {}).items()
                     if k.startswith(b"table::len::")})
    metadata.update({f"table::len::{k}": str(n) for k, n in lengths.items()})
    return schema.with_metadata(metadata)


def _yaml_meta(schema: pa.Schema) -> dict[str, Any]:
    """The table ``meta`` of the files' own ``table_meta_yaml`` (empty without one)."""
    raw = (schema.metadata or {}).get(b"table_meta_yaml")
    if not raw:
        return {}
    from astropy.table import meta as table_meta

    try:
        header = table_meta.get_header_from_yaml(raw.decode().split("\n"))
    except Exception:  # not astropy's YAML: not ours to repair
        return {}
    return dict(header.get("meta") or {})


def _astropy_yaml(fields: list[pa.Field], meta: dict[str, Any]) -> str:
    """astropy's ``table_meta_yaml`` of ``fields`` (unit, description from field metadata),
    so that ``astropy.table.Table.read`` of a leaf restores them."""
    from astropy.table import Table
    from astropy.table import meta as table_meta

    table = Table(meta=meta)
    for field in fields:
        info = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        t = field.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            dtype = np.dtype(str)
        elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            dtype = np.dtype(t.to_pandas_dtype())
        else:
            dtype = np.dtype(object)
        table[field.name] = np.zeros(0, dtype=dtype)
        table[field.name].unit = info.get("unit")
        table[field.name].description = info.get("description")
    return "\n".join(table_meta.get_yaml_from_table(table))


def _provenance_properties(info: DatasetInfo, dataset: PathLike) -> dict[str, str]:
    """``colphot_*`` keys of ``hats.properties``: the dataset's colphot version, table,
    schema version, configuration and dependency versions (JSON), its URL (without
    credentials) and the exporting colphot's version."""
    from colphot import __version__

    meta = info.metadata
    values: dict[str, Any] = {
        "colphot_version": meta.get("colphot_version"),
        "colphot_table": meta.get("table"),
        "colphot_schema_version": meta.get("schema_version"),
        "colphot_config": meta.get("config"),
        "colphot_versions": meta.get("versions"),
        "colphot_source": redact_url(os.fspath(dataset)),
        "colphot_exported_by": f"colphot {__version__}",
    }
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True,
                                                                 default=str)
        # hats writes values raw and reads them with escapes processed: double backslashes.
        out[key] = text.replace("\r", " ").replace("\n", " ").replace("\\", "\\\\")
    return out


# ------------------------------------------------------------------------------------------
# The reader hats-import runs on the workers


class HivePartReader(InputReader):
    """hats-import ``InputReader`` of one colphot part: its rows, in chunks, with the hive
    keys of its folders as columns (hats-import's own Parquet readers know no hive keys).

    Parameters
    ----------
    root
        The dataset root as its filesystem names it (no protocol); only ``key=value`` folders
        below it are read.
    hive_types
        ``{key: "int64" | "string"}`` of the keys to add.
    chunksize
        Rows per chunk.
    """

    def __init__(self, root: str, hive_types: dict[str, str], chunksize: int = 500_000):
        self.root = root
        self.hive_types = dict(hive_types)
        self.chunksize = chunksize

    def read(self, input_file: Any, read_columns: list[str] | None = None):
        """Yield ``pyarrow.Table`` chunks of ``input_file`` (a path or ``UPath``)."""
        from hats.io import file_io

        upath = file_io.get_upath(input_file)
        if not upath.exists():
            raise FileNotFoundError(f"File not found at path: {upath}")
        values = _hive_values(self.root, upath.path)
        file_columns = None
        if read_columns is not None:
            file_columns = [c for c in read_columns if c not in self.hive_types]
        parquet_file = file_io.read_parquet_file(upath)
        for batch in parquet_file.iter_batches(batch_size=self.chunksize, columns=file_columns):
            table = pa.Table.from_batches([batch])
            at = table.column_names.index(RA_COLUMN) if RA_COLUMN in table.column_names else 0
            for offset, (key, kind) in enumerate(self.hive_types.items()):
                if read_columns is not None and key not in read_columns:
                    continue
                arrow_type = pa.int64() if kind == "int64" else pa.string()
                value = values.get(key)
                if value is not None and kind == "int64":
                    value = int(value)
                column = pa.array(np.full(table.num_rows, value, dtype=object)
                                  if value is not None else [None] * table.num_rows,
                                  type=arrow_type)
                table = table.add_column(at + offset, key, column)
            yield table.replace_schema_metadata()


# ------------------------------------------------------------------------------------------
# Output: checks, staging, promotion


def _default_name(out_text: str) -> str:
    base = out_text.rstrip("/").rsplit("/", 1)[-1] or "colphot"
    return _NAME_BAD.sub("_", base)


def _is_local_fs(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def _check_target(fs: Any, path: str, text: str, overwrite: bool) -> None:
    """Refuse a non-empty ``hats_dir`` before any work, unless ``overwrite``."""
    if _is_local_fs(fs):
        if os.path.isfile(path):
            raise FileExistsError(f"{text}: a file, not a catalog folder")
        full = os.path.isdir(path) and bool(os.listdir(path))
    else:
        full = bool(fs.exists(path) and fs.find(path, maxdepth=None))
    if full and not overwrite:
        raise FileExistsError(f"{text}: exists and is not empty; write elsewhere or overwrite "
                              "it (overwrite=True, --clobber)")


def _staging_sibling(out_path: str) -> str:
    parent, _, base = out_path.rstrip("/").rpartition("/")
    hidden = f".{base}.colphot-tmp-{uuid.uuid4().hex[:12]}"
    return f"{parent}/{hidden}" if parent else hidden


def _promote(fs: Any, built: str, out_path: str, overwrite: bool) -> None:
    """Move the finished catalog ``built`` to ``out_path`` (see :func:`to_hats`)."""
    if _is_local_fs(fs):
        if os.path.isdir(out_path) and not os.listdir(out_path):
            os.rmdir(out_path)
        if os.path.exists(out_path):
            if not overwrite:  # appeared while we worked
                raise FileExistsError(f"{out_path}: appeared while the catalog was written")
            trash = _staging_sibling(out_path) + "-old"
            os.rename(out_path, trash)
            os.rename(built, out_path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(built, out_path)
        return
    if fs.exists(out_path) and fs.find(out_path):
        if not overwrite:
            raise FileExistsError(f"{fs.unstrip_protocol(out_path)}: appeared while the catalog "
                                  "was written")
        fs.rm(out_path, recursive=True)
    sources = sorted(fs.find(built))
    last = {join(built, "hats.properties"), join(built, "properties")}
    ordered = [s for s in sources if s not in last] + [s for s in sources if s in last]
    targets = [join(out_path, s[len(built):]) for s in ordered]
    try:
        first = [i for i, s in enumerate(ordered) if s not in last]
        fs.copy([ordered[i] for i in first], [targets[i] for i in first])
        final = [i for i, s in enumerate(ordered) if s in last]
        if final:
            fs.copy([ordered[i] for i in final], [targets[i] for i in final])
    except BaseException:
        _remove(fs, out_path)
        raise
    fs.invalidate_cache()


def _remove(fs: Any, path: str) -> None:
    """Remove a folder or prefix if it exists (best effort)."""
    try:
        if _is_local_fs(fs):
            shutil.rmtree(path, ignore_errors=True)
        elif fs.exists(path):
            fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass


def _local_client(n_workers: int | None) -> tuple[Any, Client]:
    """A ``LocalCluster`` of ``n_workers`` single-threaded worker processes and its client."""
    from distributed import Client, LocalCluster

    n = n_workers or min(2, os.cpu_count() or 1)
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address="127.0.0.1:0")
    return cluster, Client(cluster, set_as_default=False)  # the caller's default stays
