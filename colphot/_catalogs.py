"""Read the table definitions in ``catalogs/`` (installed as ``colphot/catalogs``)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import polars as pl
import yaml

__all__ = ["catalog_dir", "load_catalog", "polars_dtype", "POLARS_DTYPES"]

#: dtype names used in the YAML files -> polars type names (``list[...]`` of any of them too).
POLARS_DTYPES = {
    "int64": "Int64", "int32": "Int32", "float64": "Float64", "float32": "Float32",
    "bool": "Boolean", "str": "String",
}


def polars_dtype(name: str) -> pl.DataType:
    """The polars type of a YAML dtype name: ``float32``, ``list[bool]``, ..."""
    if name.startswith("list[") and name.endswith("]"):
        return pl.List(polars_dtype(name[5:-1]))
    return getattr(pl, POLARS_DTYPES[name])()


def catalog_dir() -> Path:
    """The folder holding the table definitions (installed package or source checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "catalogs", here.parent / "catalogs"):
        if (candidate / "forced_source.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"colphot table definitions not found next to {here}")


@functools.cache
def load_catalog(name: str) -> dict[str, Any]:
    """The parsed YAML definition of table ``name`` (``reference``, ``in_band``, ...)."""
    path = catalog_dir() / f"{name}.yaml"
    with open(path) as f:
        data = yaml.safe_load(f)
    for col in data["columns"]:
        inner = col["dtype"].removeprefix("list[").removesuffix("]")
        if inner not in POLARS_DTYPES:
            raise ValueError(f"{path}: column {col['name']}: unknown dtype {col['dtype']!r}")
    return data
