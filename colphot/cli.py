"""Command line: ``colphot demo | measure | run | objects | hats | qa | warmup`` (thin)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


class _UsageError(Exception):
    """A problem with what the command was asked to do (exit status 2)."""


def _config(path: str | None):
    from colphot.config import ForcedPhotConfig

    if not path:
        return ForcedPhotConfig()
    try:
        return ForcedPhotConfig.from_file(path)
    except FileNotFoundError as err:
        raise _UsageError(f"--config: {path}: no such file") from err
    except (TypeError, ValueError) as err:
        raise _UsageError(f"--config: {err}") from err


def _read_refs(path: str):
    """The reference catalog of ``colphot measure``: one error naming the file."""
    import polars as pl

    from colphot.exceptions import ReferenceCatalogError
    from colphot.runner.refs import refs_source

    try:
        return pl.scan_parquet(refs_source(path), hive_partitioning=True).collect()
    except Exception as err:  # polars' own errors for missing, empty or non-Parquet files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ReferenceCatalogError(
            f"{path}: cannot read the reference catalog ({type(err).__name__}: {first})"
        ) from err


def _cmd_measure(args: argparse.Namespace) -> int:
    import colphot
    from colphot.exceptions import MissingReferenceError

    config = _config(args.config)
    tile = colphot.read_tile(args.tile)
    refs = _read_refs(args.refs)
    try:
        table = colphot.forced_photometry(tile, refs, config, in_band=args.in_band)
    except MissingReferenceError as err:  # name the reference catalog too
        raise MissingReferenceError(f"{err} [references: {args.refs}]") from err
    written = colphot.write_forced(table, args.out, config=config, overwrite=args.clobber,
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
        clobber=args.clobber,
    )
    print(summary)
    return 0 if not summary.failed else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from colphot.sim.demo import run_demo

    return run_demo(Path(args.out), seed=args.seed, n_workers=args.workers)


def _cmd_objects(args: argparse.Namespace) -> int:
    from colphot.objects import object_table

    result = object_table(args.forced, args.out, refs=args.refs, overwrite=args.clobber)
    print(f"colphot objects: {sum(result['rows'].values())} objects in "
          f"{len(result['rows'])} tract(s) -> {args.out} ({result['seconds']:.1f} s)")
    return 0


def _cmd_hats(args: argparse.Namespace) -> int:
    from colphot.export.hats import to_hats

    client = None
    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler)
    out = to_hats(args.dataset, args.hats_dir, catalog_name=args.name, client=client,
                  n_workers=args.workers, highest_order=args.highest_order,
                  pixel_threshold=args.pixel_threshold, overwrite=args.clobber)
    print(f"colphot hats: HATS catalog -> {out}")
    return 0


def _cmd_qa(args: argparse.Namespace) -> int:
    from colphot.qa import write_qa

    paths = write_qa(args.dataset, args.out, truth=args.truth, objects=args.objects,
                     refs=args.refs)
    print(f"colphot qa: {len(paths)} figures -> {args.out}")
    return 0


def _cmd_warmup(args: argparse.Namespace) -> int:
    from colphot._warmup import cache_location, is_cached, warm_up

    if is_cached() and not args.force:
        print(f"colphot warmup: the kernels are already compiled in {cache_location()}")
        return 0
    seconds = warm_up(args.jobs)
    print(f"colphot warmup: compiled the kernels in {seconds:.1f} s with {args.jobs or 'all'} "
          f"processes into {cache_location()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``colphot`` argument parser."""
    parser = argparse.ArgumentParser(prog="colphot", description=__doc__)
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of one line")
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
    measure.add_argument("--clobber", action="store_true",
                         help="replace an output dataset of another measurement")
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
    run.add_argument("--clobber", action="store_true",
                     help="replace an output dataset of another measurement")
    run.add_argument("--in-band", help="in-band catalogs with heavy footprints: a template "
                     "with {band}/{tract}/{patch} or a hive root (band=/tract=/patch=); "
                     "deblended measurement with noise replacement")
    run.set_defaults(func=_cmd_run)

    objects = sub.add_parser("objects", help="the wide Object table (one row per object, "
                             "<band>_<column>) of a forced-source dataset, by tract")
    objects.add_argument("forced", help="forced-source dataset root (local or s3://)")
    objects.add_argument("out", help="Object table root (tract=<t>/part-0.parquet)")
    objects.add_argument("--refs", help="reference catalog (for refBand, detect_isPrimary and "
                         "each object's patch)")
    objects.add_argument("--clobber", action="store_true", help="replace an existing table")
    objects.set_defaults(func=_cmd_objects)

    hats = sub.add_parser("hats", help="HATS catalog (for LSDB) of a colphot dataset "
                          "(forced-source or Object table)")
    hats.add_argument("dataset", help="dataset root (local or s3://)")
    hats.add_argument("hats_dir", help="HATS catalog folder (local or s3://)")
    hats.add_argument("--name", help="catalog name (default: the folder's name)")
    hats.add_argument("--scheduler", help="address of an existing Dask scheduler")
    hats.add_argument("--workers", type=int, default=None, help="workers of the local cluster")
    hats.add_argument("--highest-order", type=int, default=10)
    hats.add_argument("--pixel-threshold", type=int, default=1_000_000)
    hats.add_argument("--clobber", action="store_true", help="replace an existing catalog")
    hats.set_defaults(func=_cmd_hats)

    qa = sub.add_parser("qa", help="PNG figures of a forced-source dataset (truth, colours, "
                        "depth, flags)")
    qa.add_argument("dataset", help="forced-source dataset root (local or s3://)")
    qa.add_argument("--truth", help="truth Parquet (adds psfFlux-vs-truth and pull figures)")
    qa.add_argument("--objects", help="a written Object table (default: built from DATASET)")
    qa.add_argument("--refs", help="reference catalog (each object's primary patch)")
    qa.add_argument("--out", required=True, help="output folder or URL for the PNG files")
    qa.set_defaults(func=_cmd_qa)

    warmup = sub.add_parser("warmup", help="compile the measurement kernels into numba's cache "
                            "(once per machine; after an install, in a container image)")
    warmup.add_argument("-j", "--jobs", type=int, default=None,
                        help="processes compiling at once (default: all cores, at most 2)")
    warmup.add_argument("--force", action="store_true", help="run even when already cached")
    warmup.set_defaults(func=_cmd_warmup)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``colphot`` command.

    Exit status: 0 done, 1 the work failed (a bad file, a failed tile), 2 bad usage (arguments,
    a config file). An error prints one line, ``colphot <command>: <Type>: <message>``;
    ``--debug`` shows the traceback instead.
    """
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print(f"colphot {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        usage = isinstance(err, _UsageError)
        kind = "usage" if usage else type(err).__name__
        text = " ".join(str(err).split()) or repr(err)
        print(f"colphot {args.command}: {kind}: {text[:2000]}", file=sys.stderr)
        return 2 if usage else 1
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
