"""The query example (examples/query_results.py): DuckDB SQL over the run output agrees with
polars on the same rows, locally and on S3 (moto), and reads only the partitions it filters."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROW_KEY = ["band", "tract", "patch", "objectId"]

@pytest.fixture(scope="module")
def queries():
    """examples/query_results.py as a module."""
    path = Path(__file__).resolve().parents[2] / "examples" / "query_results.py"
    spec = importlib.util.spec_from_file_location("colphot_example_queries", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_duckdb_per_band_equals_polars(queries, local_run, local_rows):
    import colphot

    out = str(local_run[1])
    sql = queries.duckdb_per_band(out)
    lazy = queries.per_band(colphot.open_forced(out))
    assert sql["band"].to_list() == lazy["band"].to_list() == sorted(set(local_rows["band"]))
    assert sql["rows"].to_list() == lazy["rows"].to_list()
    assert sql["unflagged"].to_list() == lazy["unflagged"].to_list()
    # medians computed from the rows themselves, not from either engine
    for band, group in local_rows.group_by("band"):
        good = group.filter(~pl.col("psfFlux_flag"))
        row = sql.filter(pl.col("band") == band[0])
        np.testing.assert_allclose(row["median_psfFlux_nJy"][0],
                                   np.median(good["psfFlux"].to_numpy()), rtol=1e-12)
        assert row["rows"][0] == group.height


def test_duckdb_colours_brute_force(queries, local_run, local_rows):
    got = queries.duckdb_colours(str(local_run[1]), n=5)
    key = [k for k in ROW_KEY if k != "band"]
    r = local_rows.filter((pl.col("band") == "r") & ~pl.col("psfFlux_flag")
                          & (pl.col("psfFlux") > 0))
    g = local_rows.filter((pl.col("band") == "g") & ~pl.col("psfFlux_flag")
                          & (pl.col("psfFlux") > 0))
    both = r.join(g, on=key, suffix="_g").sort("psfMag", "objectId", "patch").head(5)
    assert got["objectId"].to_list() == both["objectId"].to_list()
    np.testing.assert_allclose(got["g_minus_r"].to_numpy(),
                               (both["psfMag_g"] - both["psfMag"]).to_numpy(), rtol=1e-12)
    assert got.height == 5


def test_duckdb_reads_s3_through_fsspec(queries, local_run, local_rows, s3_bucket, s3_options):
    import fsspec

    fs = fsspec.filesystem("s3", **s3_options)
    fs.put(str(local_run[1]) + "/", f"{s3_bucket}/forced/", recursive=True)
    sql = queries.duckdb_per_band(f"s3://{s3_bucket}/forced", s3_options)
    assert sql["rows"].sum() == local_rows.height
