"""Demo survey -> forced photometry -> Object table -> HATS -> LSDB cone search and cross-match.

Needs the HATS extra (``pip install 'colphot[hats]'``: hats, hats-import, lsdb)::

    python examples/hats_lsdb.py [OUT] [--workers N]

``OUT`` (default: a temporary folder, removed at the end) receives::

    OUT/survey/        the simulated demo survey (tiles, references, truth)
    OUT/forced/        colphot run: the forced-source table (band=/tract=/patch=)
    OUT/objects/       the wide Object table (tract=), one row per object
    OUT/hats/objects/  its HATS catalog (hats.properties, partition_info.csv, dataset/Norder=...)

Then LSDB opens the catalog, runs a cone search around the field centre, and cross-matches it
against a second catalog: the survey's truth, its positions scattered by 0.3 arcsec and a
third of its objects dropped, as an external catalog (Gaia, another survey) would be. One
Dask ``LocalCluster`` serves every step.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def external_catalog(truth_path: str, *, seed: int = 1, scatter_arcsec: float = 0.3,
                     keep: float = 2 / 3) -> pl.DataFrame:
    """A mock external catalog of the survey's truth: ``ext_id``, ``ra``, ``dec``,
    ``r_flux_true``, ``is_star``; positions scattered, some objects missing."""
    truth = pl.read_parquet(truth_path)
    rng = np.random.default_rng(seed)
    truth = truth.filter(pl.Series(rng.random(truth.height) < keep))
    dec = truth["coord_dec"].to_numpy()
    d = rng.normal(0.0, scatter_arcsec / 3600.0, size=(truth.height, 2))
    return pl.DataFrame({
        "ext_id": truth["id"],
        "ra": truth["coord_ra"].to_numpy() + d[:, 0] / np.cos(np.radians(dec)),
        "dec": dec + d[:, 1],
        "r_flux_true": truth["r_flux_true"],
        "is_star": truth["is_star"],
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", help="output folder (default: a temporary one)")
    parser.add_argument("--workers", type=int, default=2, help="local Dask workers")
    args = parser.parse_args(argv)

    import lsdb
    from distributed import Client, LocalCluster

    import colphot
    from colphot.export.hats import to_hats
    from colphot.sim import make_survey

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="colphot-hats-demo-"))
    t0 = time.perf_counter()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        info = make_survey(out / "survey", seed=0)
        print(f"survey: {len(info.tile_paths)} tiles, {info.n_objects} objects -> {info.root}")

        summary = colphot.run(info.tiles_template, info.refs_root, out / "forced",
                              client=client, progress=False, clobber=True)
        print(f"colphot run: {summary.n_measured} tiles measured -> {out / 'forced'}")

        try:
            from colphot.objects import object_table
        except ImportError:  # TODO: remove once colphot.objects ships (issue 10)
            object_table = None
        if object_table is not None:
            result = object_table(out / "forced", out / "objects", refs=info.refs_root,
                                  overwrite=True)
            table, flux = out / "objects", "r_psfFlux"
            print(f"Object table: {sum(result['rows'].values())} objects -> {table}")
        else:  # TODO: export the Object table instead when colphot.objects exists
            table, flux = out / "forced", "psfFlux"
            print("colphot.objects not available: exporting the forced-source table")

        hats_dir = out / "hats" / table.name
        t = time.perf_counter()
        to_hats(table, hats_dir, client=client, overwrite=True)
        print(f"HATS catalog in {time.perf_counter() - t:.1f} s -> {hats_dir}")
        print("  " + ", ".join(sorted(p.name for p in hats_dir.iterdir())))

        catalog = lsdb.open_catalog(hats_dir)
        print(f"lsdb: {catalog.hc_structure.catalog_info.total_rows} rows in "
              f"{len(catalog.get_healpix_pixels())} HEALPix partition(s); provenance: colphot "
              f"{catalog.hc_structure.catalog_info.extra_dict()['colphot_version']}")

        # cone search: 30 arcsec around the field centre
        centre = pl.read_parquet(info.truth_path).select(
            pl.col("coord_ra").mean(), pl.col("coord_dec").mean()).row(0)
        cone = catalog.cone_search(ra=centre[0], dec=centre[1], radius_arcsec=30.0).compute()
        print(f"\ncone search, 30\" around ({centre[0]:.5f}, {centre[1]:.5f}): "
              f"{len(cone)} rows")
        print(cone[["objectId", "coord_ra", "coord_dec", flux]].head(8).to_string())

        # cross-match with the mock external catalog (its own HATS catalog, with a margin)
        ext = external_catalog(info.truth_path)
        right = lsdb.from_dataframe(ext.to_pandas(), ra_column="ra", dec_column="dec",
                                    catalog_name="external", margin_threshold=5.0)
        matched = catalog.crossmatch(right, n_neighbors=1, radius_arcsec=1.0,
                                     suffixes=("", "_ext"), suffix_method="overlapping_columns",
                                     log_changes=False).compute()
        stars = matched[matched["is_star"] & (matched[flux] > 0)]
        if "band" in stars.columns:  # the forced-source table: one row per band
            stars = stars[stars["band"] == "r"]
        ratio = (stars[flux] / stars["r_flux_true"]).median()
        total = catalog.hc_structure.catalog_info.total_rows
        print(f"\ncross-match within 1\": {len(matched)} of {total} rows have a counterpart "
              f"among the {ext.height} external objects (nearest one); median separation "
              f"{matched['_dist_arcsec'].median():.2f}\"")
        print(f"stars: median {flux} / r_flux_true = {ratio:.4f} over {len(stars)} rows")
    print(f"\ndone in {time.perf_counter() - t0:.1f} s")
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":  # Dask's worker processes re-import this file
    sys.exit(main())
