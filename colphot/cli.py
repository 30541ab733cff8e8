"""Command line: ``colphot demo | measure | run`` (thin over the public API)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _config(path: str | None):
    from colphot.config import ForcedPhotConfig

    return ForcedPhotConfig.from_file(path) if path else ForcedPhotConfig()


def _cmd_measure(args: argparse.Namespace) -> int:
    import polars as pl

    import colphot
    from colphot.exceptions import MissingReferenceError

    config = _config(args.config)
    tile = colphot.read_tile(args.tile)
    refs = pl.scan_parquet(args.refs, hive_partitioning=True).collect()
    try:
        table = colphot.forced_photometry(tile, refs, config, in_band=args.in_band)
    except MissingReferenceError as err:  # name the reference catalog too
        raise MissingReferenceError(f"{err} [references: {args.refs}]") from err
    written = colphot.write_forced(table, args.out, config=config,
                                   inputs=[colphot.provenance(tile, config,
                                                              in_band=args.in_band)])
    where = written[0] if table.height else args.out
    print(f"{args.tile}: {table.height} sources measured -> {where}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import colphot

    client = None
    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler)
    summary = colphot.run(
        tiles=args.tiles, refs=args.refs, out=args.out, config=_config(args.config),
        client=client, n_workers=args.workers, resume=args.resume, in_band=args.in_band,
    )
    print(summary)
    return 0 if not summary.failed else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from colphot.sim.demo import run_demo

    return run_demo(Path(args.out), seed=args.seed, n_workers=args.workers)


def build_parser() -> argparse.ArgumentParser:
    """The ``colphot`` argument parser."""
    parser = argparse.ArgumentParser(prog="colphot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="simulate a small survey, measure it, compare with truth")
    demo.add_argument("--out", default="colphot-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--workers", type=int, default=None,
                      help="threads measuring tiles (default: all cores)")
    demo.set_defaults(func=_cmd_demo)

    measure = sub.add_parser("measure", help="forced photometry of one tile")
    measure.add_argument("tile", help="tile FITS path or URL")
    measure.add_argument("--refs", required=True, help="reference catalog Parquet (file or folder)")
    measure.add_argument("--out", required=True, help="output dataset root")
    measure.add_argument("--config", help="JSON or YAML file of ForcedPhotConfig parameters")
    measure.add_argument("--in-band", help="in-band catalog with heavy footprints (Parquet "
                         "file or hive root): deblended measurement with noise replacement")
    measure.set_defaults(func=_cmd_measure)

    run = sub.add_parser("run", help="forced photometry of many tiles on Dask")
    run.add_argument("--tiles", required=True,
                     help="tile URL template with {band}/{tract}/{patch}, or a glob")
    run.add_argument("--refs", required=True, help="hive-partitioned reference Parquet root")
    run.add_argument("--out", required=True, help="output dataset root (local or s3://)")
    run.add_argument("--scheduler", help="address of an existing Dask scheduler")
    run.add_argument("--workers", type=int, default=None, help="workers of the local cluster")
    run.add_argument("--config", help="JSON or YAML file of ForcedPhotConfig parameters")
    run.add_argument("--resume", action="store_true", help="skip tiles whose output is valid")
    run.add_argument("--in-band", help="in-band catalogs with heavy footprints: a template "
                     "with {band}/{tract}/{patch} or a hive root (band=/tract=/patch=); "
                     "deblended measurement with noise replacement")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``colphot`` command."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    code = args.func(args)
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
