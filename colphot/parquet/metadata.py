"""File metadata of forced-source Parquet: the ``colphot`` JSON key and astropy's YAML header."""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import pyarrow as pa

from colphot._catalogs import load_catalog
from colphot.config import ForcedPhotConfig

__all__ = ["METADATA_KEY", "PACKAGES", "colphot_metadata", "astropy_yaml", "package_versions",
           "read_colphot_metadata"]

METADATA_KEY = "colphot"


def colphot_metadata(config: ForcedPhotConfig, inputs: list[dict[str, Any]],
                     extra: dict[str, Any] | None = None) -> str:
    """JSON text of the ``colphot`` schema key: version, config, inputs, schema version."""
    from colphot import __version__

    payload = {
        "colphot_version": __version__,
        "versions": package_versions(),
        "table": "forced_source",
        "schema_version": load_catalog("forced_source")["version"],
        "config": config.to_dict(),
        "inputs": inputs,
    }
    if extra:
        payload.update(extra)
    return json.dumps(payload, sort_keys=True, default=str)


#: The packages whose versions every output records (LSST's writePackageVersions).
PACKAGES = ("numpy", "numba", "astropy", "polars", "pyarrow", "fsspec", "dask", "distributed",
            "s3fs")


@functools.cache
def package_versions() -> dict[str, str | None]:
    """Versions of colphot's main dependencies (``None`` for one not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def astropy_yaml(schema: pa.Schema, meta: dict[str, Any] | None = None) -> str:
    """astropy's ``table_meta_yaml`` for ``schema``, so ``Table.read`` restores units."""
    from astropy.table import Table
    from astropy.table import meta as table_meta

    table = Table(meta=meta or {})
    for field in schema:
        info = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        dtype = np.dtype(str) if pa.types.is_string(field.type) else field.type.to_pandas_dtype()
        table[field.name] = np.zeros(0, dtype=dtype)
        table[field.name].unit = info.get("unit")
        table[field.name].description = info.get("description")
    return "\n".join(table_meta.get_yaml_from_table(table))


def read_colphot_metadata(schema: pa.Schema) -> dict[str, Any]:
    """The ``colphot`` JSON of a Parquet schema as a dict (empty if absent)."""
    raw = (schema.metadata or {}).get(METADATA_KEY.encode())
    return json.loads(raw) if raw else {}
