"""colphot.run against a real S3 HTTP endpoint (moto on 127.0.0.1) with 2 worker processes.

The survey is uploaded to a bucket, measured reading tiles and references from S3 and writing
parts to S3, and compared row for row with the run on local disk.
"""

from __future__ import annotations

import json

import polars as pl
import pytest
import s3fs
from polars.testing import assert_frame_equal

import colphot
from colphot.config import ForcedPhotConfig
from colphot.exceptions import ReferenceCatalogError
from colphot.runner.plan import find_tiles, plan_units
from colphot.runner.run import MANIFEST_NAME, part_status, write_part

ROW_KEY = ["band", "tract", "patch", "objectId"]
SECRET = "colphot-test-secret-9f3c1b7e"  # conftest's s3_options secret


@pytest.fixture()
def s3_survey(survey, s3_options, s3_bucket):
    """The tiny survey uploaded to ``s3://<bucket>/survey``; returns ``(fs, root URL)``."""
    fs = s3fs.S3FileSystem(**s3_options)
    fs.put(survey.root + "/", f"{s3_bucket}/survey", recursive=True)
    fs.invalidate_cache()
    return fs, f"s3://{s3_bucket}/survey"


@pytest.fixture()
def s3_run(s3_survey, s3_options, dask_client):
    """``(summary, fs, out URL)`` of a run reading and writing S3 on the 2-worker cluster."""
    fs, root = s3_survey
    out = root.rsplit("/", 1)[0] + "/forced"
    summary = colphot.run(f"{root}/tiles/{{band}}/{{tract}}/{{patch}}.fits", f"{root}/refs", out,
                          client=dask_client, storage_options=s3_options, progress=False)
    return summary, fs, out


def test_s3_run_equals_local_run_row_for_row(s3_run, local_rows, local_run, s3_options):
    summary, fs, out = s3_run
    assert summary.n_failed == 0, str(summary)
    assert summary.n_measured == 8
    assert all(r.worker.startswith("tcp://") for r in summary.results)
    rows = colphot.open_forced(out, storage_options=s3_options).collect().sort(ROW_KEY)
    assert_frame_equal(rows, local_rows)
    assert [r.rows for r in summary.results] == [r.rows for r in local_run[0].results]
    assert all(r.url.startswith("s3://") and r.part.startswith(out) for r in summary.results)
    parts = fs.glob(out[5:] + "/band=*/tract=*/patch=*/part-0.parquet")
    assert len(parts) == 8
    assert fs.exists(out[5:] + "/_common_metadata")


@pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning")
def test_dask_dataframe_reads_the_s3_output(s3_run, local_rows, s3_options):
    import dask.dataframe as dd

    _, _, out = s3_run
    ddf = dd.read_parquet(out, storage_options=s3_options)
    assert {"band", "tract", "patch", "objectId", "psfFlux"} <= set(ddf.columns)
    frame = ddf.compute(scheduler="sync")
    assert len(frame) == local_rows.height
    medians = frame.groupby("band", observed=True)["psfFlux"].median().to_dict()
    expected = local_rows.group_by("band").agg(pl.col("psfFlux").fill_nan(None).median())
    for band, value in expected.iter_rows():
        assert medians[band] == pytest.approx(value, rel=1e-12)


def test_manifest_on_s3_and_no_credentials_anywhere(s3_run, s3_options, dask_client):
    summary, fs, out = s3_run
    manifest = json.loads(fs.cat(out[5:] + "/" + MANIFEST_NAME))
    assert manifest["counts"]["measured"] == 8
    assert manifest["inputs"]["out"] == out
    assert all(t["url"].startswith("s3://") for t in manifest["tiles"])
    for path in fs.find(out[5:]):
        data = fs.cat(path)
        assert SECRET.encode() not in data and b"colphot-test-key" not in data, path
        assert s3_options["endpoint_url"].encode() not in data, path
    logs = json.dumps({**dask_client.get_worker_logs(), "s": dask_client.get_scheduler_logs()})
    assert SECRET not in logs
    assert SECRET not in str(summary)


def test_resume_on_s3_skips_every_valid_part(s3_run, s3_options, dask_client):
    summary, fs, out = s3_run
    root = out.rsplit("/", 1)[0] + "/survey"
    victim = summary.results[3]
    fs.rm(victim.part)
    again = colphot.run(f"{root}/tiles/*/*/*.fits", f"{root}/refs", out, client=dask_client,
                        storage_options=s3_options, resume=True, progress=False)
    assert again.n_skipped == 7 and again.n_measured == 1
    assert [r.url for r in again.measured] == [victim.url]
    assert [r.rows for r in again.results] == [r.rows for r in summary.results]


def test_failures_on_s3_are_reported_and_logged_without_secrets(s3_survey, s3_options,
                                                                dask_client):
    fs, root = s3_survey
    # a catalog whose first partition is fine (the driver opens it) and second is not
    fs.copy(root[5:] + "/refs/tract=0/patch=0/part-0.parquet",
            root[5:] + "/bad-refs/tract=0/patch=0/part-0.parquet")
    fs.pipe(root[5:] + "/bad-refs/tract=0/patch=1/part-0.parquet", b"not parquet at all")
    tiles = [f"{root}/tiles/g/0/0.fits", f"{root}/tiles/g/0/7.fits"]
    summary = colphot.run(tiles, f"{root}/bad-refs", root + "/out", client=dask_client,
                          storage_options=s3_options, retries=0, progress=False)
    assert summary.n_failed == 2
    reasons = {r.patch: r.error for r in summary.failed}
    assert reasons[7].startswith("FileNotFoundError: ")
    assert "parquet" in reasons[0].lower()  # the catalog could not be read: polars' error
    logs = json.dumps({**dask_client.get_worker_logs(), "s": dask_client.get_scheduler_logs()})
    assert "Compute Failed" in logs  # the task raised on a worker: Dask logged it
    assert SECRET not in logs and SECRET not in str(summary)
    manifest = fs.cat(root[5:] + "/out/" + MANIFEST_NAME)
    assert SECRET.encode() not in manifest


def test_unreadable_catalog_fails_fast(s3_survey, s3_options, dask_client):
    _, root = s3_survey
    with pytest.raises(ReferenceCatalogError, match=r"refs: cannot read the reference catalog"):
        colphot.run(f"{root}/tiles/g/0/0.fits", f"{root}/no-refs-here", root + "/out",
                    client=dask_client, storage_options=s3_options, progress=False)


def test_s3_part_write_is_whole_or_absent(s3_survey, s3_options):
    fs, root = s3_survey
    unit = plan_units(find_tiles(f"{root}/tiles/r/0/1.fits", storage_options=s3_options),
                      root + "/atomic")[0]
    with pytest.raises(Exception):  # noqa: B017 - an encoding error inside the writer
        write_part(pl.DataFrame({"objectId": [1, 2]}), unit.part, config=ForcedPhotConfig(),
                   provenance={"flux_unit": "nJy"}, storage_options=s3_options)
    fs.invalidate_cache()
    assert not fs.exists(unit.part)
    assert part_status(unit.part, ForcedPhotConfig(), storage_options=s3_options) is None
    fs.pipe(unit.part[5:], b"PAR1 truncated")  # a damaged object is not a valid part
    assert part_status(unit.part, ForcedPhotConfig(), storage_options=s3_options) is None


def test_find_tiles_on_s3(s3_survey, s3_options, survey):
    _, root = s3_survey
    found = find_tiles(f"{root}/tiles/{{band}}/{{tract}}/{{patch}}.fits",
                       storage_options=s3_options)
    assert [(b, t, p) for _, b, t, p in found] == [
        (b, 0, p) for b in sorted(survey.bands) for p in sorted(survey.patches)]
    assert found[0][0] == f"{root}/tiles/g/0/0.fits"


@pytest.mark.slow
def test_seaweedfs_s3_run_equals_local_run(survey, weed_options, dask_client, local_rows):
    """The same run against a real S3 server: SeaweedFS's ``weed`` S3 gateway."""
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **weed_options)
    fs.mkdir("colphot-weed")
    fs.put(survey.root + "/", "colphot-weed/survey", recursive=True)
    root = "s3://colphot-weed/survey"
    out = "s3://colphot-weed/forced"
    summary = colphot.run(f"{root}/tiles/{{band}}/{{tract}}/{{patch}}.fits", f"{root}/refs", out,
                          client=dask_client, storage_options=weed_options, progress=False)
    assert summary.n_measured == 8, str(summary)
    rows = colphot.open_forced(out, storage_options=weed_options).collect().sort(ROW_KEY)
    assert_frame_equal(rows, local_rows)
    again = colphot.run(f"{root}/tiles/*/*/*.fits", f"{root}/refs", out, client=dask_client,
                        storage_options=weed_options, resume=True, progress=False)
    assert again.n_skipped == 8 and again.n_measured == 0


def test_remote_tiles_are_read_lazily(survey, s3_options, s3_bucket, monkeypatch):
    """A tile on S3 with a large HDU the measurement does not need: that HDU is not fetched."""
    import io

    import numpy as np
    from astropy.io import fits

    from colphot.runner.run import TILE_BLOCK_SIZE, tile_read_options
    from colphot.tile.fits import read_tile

    src = next(p for p in survey.tile_paths if p.endswith("g/0/0.fits"))
    buf = io.BytesIO()
    with fits.open(src) as hdul:
        extra = fits.ImageHDU(np.zeros((3000, 3000), dtype=np.float32), name="COADD_INPUTS")
        fits.HDUList([*hdul, extra]).writeto(buf)
    data = buf.getvalue()
    fs = s3fs.S3FileSystem(**s3_options)
    fs.pipe(f"{s3_bucket}/tiles/g/0/0.fits", data)
    fetched: list[int] = []
    real = s3fs.core.S3File._fetch_range

    def counting(self, start, end):
        fetched.append(end - start)
        return real(self, start, end)

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", counting)
    tile = read_tile(f"s3://{s3_bucket}/tiles/g/0/0.fits",
                     storage_options=tile_read_options(s3_options))
    needed = len(data) - 3000 * 3000 * 4
    assert tile.image.shape == (300, 300) and tile.psf is not None
    assert needed <= sum(fetched) <= needed + 2 * TILE_BLOCK_SIZE
    assert sum(fetched) < 0.25 * len(data)
