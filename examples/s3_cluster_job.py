"""A survey-scale forced-photometry job on S3 with a Dask cluster.

1. simulate the demo survey locally (``colphot.sim.make_survey``) and upload it to S3;
2. measure every tile with :func:`colphot.run` on a Dask cluster: each worker reads its tile
   and only the references around it from S3 and writes its Parquet part to S3;
3. open the results from S3 with :func:`colphot.open_forced` (polars, lazy, hive partitions).

Run against a real bucket (credentials from the usual AWS environment variables or files)::

    python examples/s3_cluster_job.py --bucket my-bucket --prefix colphot-demo \\
        [--endpoint-url https://s3.example.org] [--scheduler tcp://scheduler:8786]

or self-contained, with a throwaway S3 server (moto) on 127.0.0.1 and a local cluster::

    python examples/s3_cluster_job.py --moto

Equivalent command line for step 2: ``colphot run --tiles
s3://BUCKET/PREFIX/survey/tiles/{band}/{tract}/{patch}.fits --refs s3://BUCKET/PREFIX/survey/refs
--out s3://BUCKET/PREFIX/forced [--scheduler ADDRESS]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import polars as pl


def start_moto() -> tuple[object, dict[str, str]]:
    """A moto S3 server on 127.0.0.1 (free port) and storage options for it."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, {"key": "demo", "secret": "demo", "endpoint_url": f"http://{host}:{port}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", default=os.environ.get("COLPHOT_S3_BUCKET", "colphot-demo"))
    parser.add_argument("--prefix", default=os.environ.get("COLPHOT_S3_PREFIX", "demo"))
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                        help="S3 endpoint (default: AWS, or $AWS_ENDPOINT_URL)")
    parser.add_argument("--scheduler", help="address of a running Dask scheduler")
    parser.add_argument("--workers", type=int, default=2, help="workers of a local cluster")
    parser.add_argument("--moto", action="store_true",
                        help="use a throwaway S3 server on 127.0.0.1 instead of a real bucket")
    args = parser.parse_args(argv)

    import s3fs
    from distributed import Client, LocalCluster

    import colphot
    from colphot.sim import make_survey

    server = None
    if args.moto:
        server, storage_options = start_moto()
    else:  # credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, instance roles...
        storage_options = {"endpoint_url": args.endpoint_url} if args.endpoint_url else {}

    # 1. the survey, made locally and uploaded
    fs = s3fs.S3FileSystem(**storage_options)
    if not fs.exists(args.bucket):
        fs.mkdir(args.bucket)
    root = f"{args.bucket}/{args.prefix}".rstrip("/")
    with tempfile.TemporaryDirectory() as tmp:
        info = make_survey(Path(tmp) / "survey", seed=0)
        fs.put(info.root + "/", f"{root}/survey", recursive=True)
    print(f"uploaded {len(info.tile_paths)} tiles and {info.n_objects} references to "
          f"s3://{root}/survey")

    # 2. the job: one task per tile on the cluster
    tiles = f"s3://{root}/survey/tiles/{{band}}/{{tract}}/{{patch}}.fits"
    refs = f"s3://{root}/survey/refs"
    out = f"s3://{root}/forced"
    if args.scheduler:
        cluster = None
        client = Client(args.scheduler)
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0")
        client = Client(cluster)
    print(f"Dask dashboard: {client.dashboard_link}")
    try:
        summary = colphot.run(tiles, refs, out, client=client, storage_options=storage_options)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    print(summary)

    # 3. the results, straight from S3
    lf = colphot.open_forced(out, storage_options=storage_options)
    table = (
        lf.filter(~pl.col("psfFlux_flag"))
        .group_by("band", "patch")
        .agg(pl.len().alias("rows"), pl.col("psfMag").median().alias("median_psfMag"))
        .sort("band", "patch")
        .collect()
    )
    print(table)
    if server is not None:
        server.stop()
    return 0 if not summary.failed else 1


if __name__ == "__main__":
    sys.exit(main())
