"""Reference catalogs validated against catalogs/reference.yaml: one error naming the column."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import yaml

from colphot.exceptions import ReferenceCatalogError
from colphot.references.load import validate_references


@pytest.fixture(scope="module")
def definition(sim):
    with open(sim.repo_root() / "catalogs" / "reference.yaml") as f:
        return yaml.safe_load(f)


def _refs(**overrides):
    data = {"id": [1, 2, 3], "coord_ra": [10.0, 10.1, 10.2], "coord_dec": [-5.0, -5.1, -5.2]}
    data.update(overrides)
    return pl.DataFrame(data)


def test_required_columns_are_id_ra_dec(definition):
    required = {c["name"] for c in definition["columns"] if c.get("required")}
    assert required == {"id", "coord_ra", "coord_dec"}


@pytest.mark.parametrize("column", ["id", "coord_ra", "coord_dec"])
def test_missing_required_column_named(column):
    refs = _refs().drop(column)
    with pytest.raises(ReferenceCatalogError, match=f"refs.parquet: missing required column "
                                                    f"'{column}'"):
        validate_references(refs, source="refs.parquet")


def test_duplicate_ids_named():
    refs = _refs(id=[5, 7, 5])
    with pytest.raises(ReferenceCatalogError, match=r"column 'id' must be unique.*\[5\]"):
        validate_references(refs)


def test_null_ids_named():
    refs = _refs(id=[1, None, 3])
    with pytest.raises(ReferenceCatalogError, match="column 'id' has 1 nulls"):
        validate_references(refs)


@pytest.mark.parametrize(
    "column, values",
    [("coord_ra", ["ten", "10.1", "x"]), ("id", [1.5, 2.0, 3.0]), ("parent", ["a", "b", "c"])],
)
def test_uncastable_column_named(column, values):
    refs = _refs(**{column: values})
    with pytest.raises(ReferenceCatalogError, match=f"column '{column}' cannot be read as"):
        validate_references(refs)


def test_columns_cast_to_defined_types_and_extras_kept(definition):
    refs = pl.DataFrame({
        "id": np.array([1, 2, 3], dtype=np.int32),
        "coord_ra": np.array([10, 11, 12], dtype=np.int64),
        "coord_dec": np.array([1.0, 2.0, 3.0], dtype=np.float32),
        "shape_xx": [0.1, 0.2, None],
        "magnitude_extra": [20.0, 21.0, 22.0],
    })
    out = validate_references(refs.lazy())
    types = {c["name"]: c["dtype"] for c in definition["columns"]}
    assert types["id"] == "int64" and out.schema["id"] == pl.Int64
    assert types["coord_ra"] == "float64" and out.schema["coord_ra"] == pl.Float64
    assert out.schema["coord_dec"] == pl.Float64 and out.schema["shape_xx"] == pl.Float64
    assert out["coord_ra"].to_list() == [10.0, 11.0, 12.0]
    assert out["magnitude_extra"].to_list() == [20.0, 21.0, 22.0]
    assert out["shape_xx"].null_count() == 1


def test_not_a_frame_raises_type_error():
    with pytest.raises(TypeError, match="expected a polars DataFrame"):
        validate_references({"id": [1]})


def test_integral_float_ids_accepted():
    out = validate_references(_refs(id=[1.0, 2.0, 3.0]))
    assert out.schema["id"] == pl.Int64 and out["id"].to_list() == [1, 2, 3]
