"""Survey benchmark: ``colphot.run`` on the demo survey with 1 and 2 Dask workers, disk and S3.

Run: ``python benchmarks/bench_survey.py [--workers 1 2] [--patches 2] [--patch-size 1000]``

Makes the demo survey (``colphot.sim.make_survey``: 3 bands x 2 x 2 patches of 1000 px by
default), uploads it to a local S3 endpoint (moto's server on 127.0.0.1, in this process), and
for each worker count starts a ``LocalCluster`` of single-threaded worker processes and measures:

- wall time of a cold run (fresh workers: imports, numba cache loads) and of a warm run, from
  local disk and from S3 (reading tiles and references from S3, writing parts to S3);
- the speed-up of the warm runs;
- peak resident memory of each worker (``VmHWM``) and its resident size when idle;
- bytes the S3 server sent per tile during the run (counted on the server, so the reads of
  every worker process count) against the tile's size, with the number of GET requests,
  and the reference catalog bytes read per tile against the catalog's size.

Every run is checked against the local-disk run with 1 worker (same rows, same values).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import polars as pl

ROW_KEY = ["band", "tract", "patch", "objectId"]


class CountingApp:
    """WSGI middleware counting the body bytes and the requests of GETs, per path."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.bytes: dict[str, int] = defaultdict(int)
        self.gets: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        body = self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "GET":
            return body
        return self._count(environ.get("PATH_INFO", ""), body)

    def _count(self, path: str, body: Any) -> Any:
        with self.lock:
            self.gets[path] += 1
        try:
            for chunk in body:
                with self.lock:
                    self.bytes[path] += len(chunk)
                yield chunk
        finally:
            if hasattr(body, "close"):
                body.close()

    def reset(self) -> None:
        with self.lock:
            self.bytes.clear()
            self.gets.clear()


def start_s3() -> tuple[Any, CountingApp, str]:
    """moto's S3 server on 127.0.0.1 (free port) behind :class:`CountingApp`."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    counter = CountingApp(DomainDispatcherApplication(create_backend_app))

    class CountingServer(ThreadedMotoServer):
        def _server_entry(self) -> None:  # moto's, with the app wrapped
            self._server = make_server(self._ip_address, self._port, counter, True,
                                       request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    server = CountingServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, counter, f"http://{host}:{port}"


def worker_memory(client: Any) -> dict[str, tuple[float, float]]:
    """Worker address -> (current RSS, peak RSS), MiB."""

    return client.run(_rss_now_and_peak)


def _rss_now_and_peak() -> tuple[float, float]:
    """This process's (current, peak) resident size, MiB (run on each worker)."""
    import psutil
    from _memory import peak_rss_mib  # the workers inherit this script's sys.path

    return psutil.Process().memory_info().rss / 2**20, peak_rss_mib()


def timed_run(tiles: str, refs: str, out: str, client: Any, options: dict | None) -> tuple[
        float, Any]:
    import colphot

    t0 = time.perf_counter()
    summary = colphot.run(tiles, refs, out, client=client, storage_options=options,
                          progress=False)
    elapsed = time.perf_counter() - t0
    if summary.failed:
        raise RuntimeError(str(summary))
    return elapsed, summary


def large_catalog_read(fs: Any, options: dict[str, str], counter: CountingApp, info: Any,
                       *, rows_per_tract: int, row_group: int = 25_000) -> str:
    """Bytes one tile's reference selection reads from a large catalog on S3.

    The catalog: 4 tracts, each with ``rows_per_tract`` synthetic rows sorted by declination
    in row groups of ``row_group`` rows (tract 0 also holds the survey's own references).
    Tract pruning skips the other tracts' files; row-group statistics skip the groups outside
    the tile's declination band.
    """
    import io

    import numpy as np

    from colphot.runner.refs import select_refs
    from colphot.tile.fits import read_tile

    rng = np.random.default_rng(1)
    template = pl.read_parquet(next(Path(info.refs_root).rglob("*.parquet")))  # same schema
    total = 0
    for tract in range(4):
        ra0 = 150.0 if tract == 0 else 150.0 + 10.0 * tract
        frame = pl.DataFrame({
            "id": np.arange(rows_per_tract, dtype=np.int64) + 10**9 * (tract + 1),
            "coord_ra": rng.uniform(ra0 - 0.5, ra0 + 0.5, rows_per_tract),
            "coord_dec": rng.uniform(1.5, 2.5, rows_per_tract),
        }).sort("coord_dec")
        frame = frame.with_columns(
            pl.lit(template[c][0], dtype=template.schema[c]).alias(c)
            for c in template.columns if c not in frame.columns).select(template.columns)
        buf = io.BytesIO()
        frame.write_parquet(buf, row_group_size=row_group, statistics=True)
        fs.pipe(f"bench/bigrefs/tract={tract}/patch=99/part-0.parquet", buf.getvalue())
        total += buf.tell()
    for part in Path(info.refs_root).rglob("*.parquet"):
        fs.put(str(part), "bench/bigrefs/" + str(part.relative_to(info.refs_root)))
        total += part.stat().st_size
    tile = read_tile(info.tile_paths[0])
    counter.reset()
    t0 = time.perf_counter()
    chosen = select_refs("s3://bench/bigrefs", tile.wcs, tile.shape, tract=0,
                         storage_options=options)
    elapsed = time.perf_counter() - t0
    read = sum(v for k, v in counter.bytes.items() if k.startswith("/bench/bigrefs/"))
    return (f"  large catalog ({4 * rows_per_tract + info.n_objects:,} rows in 4 tracts, "
            f"{total / 2**20:.1f} MiB): one tile's selection read {read / 2**20:.2f} MiB "
            f"({read / total:.3f} of it) in {elapsed:.2f} s and kept {chosen.height:,} rows")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--patches", type=int, default=2, help="patches per side")
    parser.add_argument("--patch-size", type=int, default=1000, help="tile side, pixels")
    parser.add_argument("--bands", nargs="+", default=["g", "r", "i"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--big-catalog-rows", type=int, default=1_000_000,
                        help="rows per tract of the large reference catalog (0: skip)")
    args = parser.parse_args(argv)

    import logging

    import s3fs
    from distributed import Client, LocalCluster

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request log lines

    import colphot
    from colphot.sim import make_survey

    work = Path(tempfile.mkdtemp(prefix="colphot-bench-"))
    t0 = time.perf_counter()
    info = make_survey(work / "survey", seed=args.seed, bands=tuple(args.bands),
                       n_patches=args.patches, patch_size=args.patch_size)
    tile_sizes = {p: Path(p).stat().st_size for p in info.tile_paths}
    refs_size = sum(p.stat().st_size for p in Path(info.refs_root).rglob("*.parquet"))
    print(f"demo survey: {len(info.tile_paths)} tiles ({len(info.bands)} bands x "
          f"{len(info.patches)} patches of {args.patch_size} px, "
          f"{statistics.median(tile_sizes.values()) / 2**20:.1f} MiB each), "
          f"{info.n_objects} references ({refs_size / 2**10:.0f} KiB); made in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)

    server, counter, endpoint = start_s3()
    options = {"key": "bench", "secret": "bench-secret", "endpoint_url": endpoint}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("bench")
    fs.put(str(work / "survey") + "/", "bench/survey", recursive=True)
    s3_tiles = "s3://bench/survey/tiles/{band}/{tract}/{patch}.fits"
    s3_refs = "s3://bench/survey/refs"

    reference: pl.DataFrame | None = None
    rows: dict[int, dict[str, Any]] = {}
    traffic: dict[str, Any] = {}
    for n in args.workers:
        t0 = time.perf_counter()
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
            client.wait_for_workers(n)
            start = time.perf_counter() - t0
            idle = worker_memory(client)
            cold, _ = timed_run(info.tiles_template, info.refs_root, str(work / f"cold{n}"),
                                client, None)
            warm, warm_summary = timed_run(info.tiles_template, info.refs_root,
                                           str(work / f"local{n}"), client, None)
            counter.reset()
            s3_time, s3_summary = timed_run(s3_tiles, s3_refs, f"s3://bench/out{n}", client,
                                            options)
            traffic[n] = (dict(counter.bytes), dict(counter.gets), s3_summary)
            memory = worker_memory(client)
        local = colphot.open_forced(work / f"local{n}").collect().sort(ROW_KEY)
        remote = colphot.open_forced(f"s3://bench/out{n}", storage_options=options).collect()
        reference = local if reference is None else reference
        same = local.equals(reference) and remote.sort(ROW_KEY).equals(reference)
        rows[n] = {
            "cluster start, s": start, "cold run (disk), s": cold, "warm run (disk), s": warm,
            "warm run (S3), s": s3_time,
            "task time per tile (disk), s": statistics.median(
                r.seconds for r in warm_summary.results),
            "task time per tile (S3), s": statistics.median(
                r.seconds for r in s3_summary.results),
            "idle RSS per worker, MiB": max(v[0] for v in idle.values()),
            "peak RSS per worker, MiB": max(v[1] for v in memory.values()),
            "rows": local.height, "equal to 1-worker disk run": same,
        }
        print(f"  {n} worker(s) done", file=sys.stderr, flush=True)

    print()
    names = list(next(iter(rows.values())))
    header = f"{'':30s}" + "".join(f"{f'{n} worker' + ('s' if n > 1 else ''):>14s}"
                                   for n in rows)
    print(header)
    for name in names:
        cells = []
        for n in rows:
            v = rows[n][name]
            cells.append(f"{v:14.2f}" if isinstance(v, float) else f"{v!s:>14s}")
        print(f"{name:30s}" + "".join(cells))
    if len(rows) > 1:
        first, last = min(rows), max(rows)
        for what in ("warm run (disk), s", "warm run (S3), s"):
            print(f"speed-up {first} -> {last} workers, {what[:-3]}: "
                  f"x{rows[first][what] / rows[last][what]:.2f}")

    got, gets, _ = traffic[max(traffic)]
    print("\nS3 reads during the run (counted by the server, all workers):")
    ratios, requests = [], []
    for url, size in sorted(((u, s) for u, s in tile_sizes.items())):
        key = "/bench/survey/" + str(Path(url).relative_to(work / "survey"))
        ratios.append(got.get(key, 0) / size)
        requests.append(gets.get(key, 0))
    print(f"  tile bytes read / tile size: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); GET requests per tile: median "
          f"{statistics.median(requests):.0f} (max {max(requests)}); tile "
          f"{statistics.median(tile_sizes.values()) / 2**20:.2f} MiB")
    refs_read = sum(v for k, v in got.items() if k.startswith("/bench/survey/refs/"))
    n_tiles = len(tile_sizes)
    print(f"  reference catalog bytes read per tile: {refs_read / n_tiles / 2**10:.1f} KiB "
          f"of a {refs_size / 2**10:.0f} KiB catalog ({refs_read / n_tiles / refs_size:.2f} of "
          "it: partitions this small are fetched whole for their footer, then the row groups "
          "in the tile's box again)")
    if args.big_catalog_rows:
        print(large_catalog_read(fs, options, counter, info,
                                 rows_per_tract=args.big_catalog_rows))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"  driver peak RSS (incl. the moto server): {peak:.0f} MiB")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
