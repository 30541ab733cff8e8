"""Query the output of a ``colphot run`` with polars, DuckDB and dask.dataframe.

The output is hive-partitioned Parquet (``band=…/tract=…/patch=…/part-0.parquet``), local or on
S3, so both engines prune partitions from filters on ``band``/``tract``/``patch``.

Run on an existing output (local folder or ``s3://``; S3 credentials from the environment)::

    python examples/query_results.py OUT [--refs REFS] [--endpoint-url URL]

or without arguments: simulates the demo survey, measures it, then queries it.

Queries shown:

- polars: rows and median PSF magnitude per band of unflagged measurements;
- polars: one row per object, one ``<band>_psfFlux`` column per band, each object taken from
  its home patch (overlapping tiles measure an object more than once; the reference catalog's
  ``patch`` partition says which patch owns it);
- DuckDB (SQL): the same per-band statistics, and the five brightest unflagged objects of
  band ``r`` with their ``g - r`` colour, a self-join on ``objectId`` over hive partitions;
  an ``s3://`` output is read through fsspec (``duckdb.register_filesystem``), so no DuckDB
  extension needs downloading;
- dask.dataframe: the same per-band statistics, lazily over the partitions, and a filter on the
  ``band`` partition key that reads only that band's files.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import polars as pl


def per_band(lf: pl.LazyFrame) -> pl.DataFrame:
    """Rows, unflagged rows and median psfFlux (nJy) / psfMag (AB) per band."""
    good = ~pl.col("psfFlux_flag")
    return (
        lf.group_by("band")
        .agg(
            pl.len().alias("rows"),
            good.sum().alias("unflagged"),
            pl.col("psfFlux").filter(good).median().alias("median_psfFlux_nJy"),
            pl.col("psfMag").filter(good).median().alias("median_psfMag"),
        )
        .sort("band")
        .collect()
    )


def wide_fluxes(lf: pl.LazyFrame, refs: pl.LazyFrame | None) -> pl.DataFrame:
    """One row per object: ``objectId``, ``coord_ra``, ``coord_dec``, ``<band>_psfFlux`` and
    ``<band>_psfFluxErr`` (nJy), measured on the object's home patch when ``refs`` (with its
    ``patch`` partition) is given, else on the first patch that measured it."""
    rows = lf.select("objectId", "band", "tract", "patch", "coord_ra", "coord_dec", "psfFlux",
                     "psfFluxErr")
    if refs is not None:
        home = refs.select(pl.col("id").alias("objectId"), pl.col("patch").alias("home"))
        rows = rows.join(home, on="objectId").filter(pl.col("patch") == pl.col("home"))
    rows = rows.sort("objectId", "band", "patch").unique(["objectId", "band"], keep="first")
    long = rows.collect()
    wide = long.pivot(on="band", index="objectId", values=["psfFlux", "psfFluxErr"],
                      aggregate_function="first")
    bands = sorted(long["band"].unique().to_list())
    rename = {f"{v}_{b}": f"{b}_{v}" for b in bands for v in ("psfFlux", "psfFluxErr")}
    positions = long.group_by("objectId").agg(pl.col("coord_ra", "coord_dec").first())
    wide = wide.rename({k: v for k, v in rename.items() if k in wide.columns})
    ordered = [f"{b}_{v}" for b in bands for v in ("psfFlux", "psfFluxErr")]
    return positions.join(wide, on="objectId").select(
        "objectId", "coord_ra", "coord_dec", *ordered).sort("objectId")


def duckdb_connection(storage_options: dict[str, Any] | None = None) -> Any:
    """An in-memory DuckDB connection that reads ``s3://`` through s3fs (``storage_options``
    as for colphot, e.g. ``{"endpoint_url": ...}``) as well as local paths."""
    import duckdb
    import fsspec

    con = duckdb.connect()
    con.register_filesystem(fsspec.filesystem("s3", **(storage_options or {})))
    return con


def _glob(out: str) -> str:
    """The Parquet parts of a run output, as a DuckDB glob."""
    return out.rstrip("/") + "/**/*.parquet"


def duckdb_per_band(out: str, storage_options: dict[str, Any] | None = None) -> pl.DataFrame:
    """:func:`per_band` in SQL with DuckDB over the hive-partitioned output."""
    con = duckdb_connection(storage_options)
    sql = f"""
        SELECT band,
               count(*)                                         AS rows,
               count(*) FILTER (WHERE NOT psfFlux_flag)         AS unflagged,
               median(psfFlux) FILTER (WHERE NOT psfFlux_flag)  AS median_psfFlux_nJy,
               median(psfMag) FILTER (WHERE NOT psfFlux_flag)   AS median_psfMag
        FROM read_parquet('{_glob(out)}', hive_partitioning = true)
        GROUP BY band ORDER BY band
    """
    return con.sql(sql).pl()


def duckdb_colours(out: str, storage_options: dict[str, Any] | None = None, *, n: int = 5
                   ) -> pl.DataFrame:
    """The ``n`` brightest unflagged objects in ``r`` with their ``g - r`` PSF colour (AB),
    joining bands on ``objectId`` within each patch; the filters on the ``band`` partition key
    let DuckDB read only the g and r files."""
    con = duckdb_connection(storage_options)
    src = f"read_parquet('{_glob(out)}', hive_partitioning = true)"
    sql = f"""
        SELECT r.objectId, r.tract, r.patch, r.psfMag AS r_psfMag,
               g.psfMag - r.psfMag AS g_minus_r
        FROM {src} AS r JOIN {src} AS g
          ON g.objectId = r.objectId AND g.tract = r.tract AND g.patch = r.patch
        WHERE r.band = 'r' AND g.band = 'g' AND NOT r.psfFlux_flag AND NOT g.psfFlux_flag
              AND r.psfFlux > 0 AND g.psfFlux > 0
        ORDER BY r.psfMag, r.objectId, r.patch LIMIT {int(n)}
    """
    return con.sql(sql).pl()


def dask_queries(out: str, storage_options: dict[str, Any] | None) -> None:
    """The per-band statistics and a partition-pruned band with dask.dataframe."""
    import dask.dataframe as dd

    ddf = dd.read_parquet(out, storage_options=storage_options,
                          columns=["band", "objectId", "psfFlux", "psfFlux_flag"])
    good = ddf[~ddf["psfFlux_flag"]]
    by_band = good.groupby("band", observed=True)["psfFlux"]
    stats = by_band.count().to_frame("unflagged").join(
        by_band.median().to_frame("median_psfFlux_nJy")).compute()
    print("dask.dataframe: unflagged rows and median psfFlux (nJy) per band (as polars above)")
    print(stats.sort_index())
    g_only = dd.read_parquet(out, storage_options=storage_options,
                             filters=[("band", "==", "g")], columns=["objectId", "psfFlux"])
    print(f"dask.dataframe: band g alone reads {g_only.npartitions} of {ddf.npartitions} parts, "
          f"{len(g_only)} rows")


def demo_output(folder: Path) -> tuple[str, str]:
    """Simulate and measure the demo survey under ``folder``; returns (output, refs)."""
    import colphot
    from colphot.sim import make_survey

    info = make_survey(folder / "survey", seed=0)
    out = str(folder / "forced")
    summary = colphot.run(info.tiles_template, info.refs_root, out, n_workers=2, progress=False)
    print(summary)
    return out, info.refs_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="run output root (local or s3://)")
    parser.add_argument("--refs", help="reference catalog root, to pick each object's home patch")
    parser.add_argument("--endpoint-url", help="S3 endpoint for s3:// URLs")
    args = parser.parse_args(argv)

    import colphot
    from colphot.runner.refs import scan_refs

    storage_options = {"endpoint_url": args.endpoint_url} if args.endpoint_url else None
    with tempfile.TemporaryDirectory() as tmp:
        out, refs_root = (args.out, args.refs) if args.out else demo_output(Path(tmp))
        lf = colphot.open_forced(out, storage_options=storage_options)
        refs = scan_refs(refs_root, storage_options=storage_options) if refs_root else None
        with pl.Config(tbl_rows=8, tbl_cols=12, float_precision=3):
            print("polars: per band")
            print(per_band(lf))
            print("polars: one row per object, one column per band")
            print(wide_fluxes(lf, refs))
            print("DuckDB: per band (as polars above)")
            print(duckdb_per_band(out, storage_options))
            print("DuckDB: brightest objects in r and their g - r colour")
            print(duckdb_colours(out, storage_options))
        dask_queries(out, storage_options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
