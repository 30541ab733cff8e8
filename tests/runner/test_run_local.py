"""colphot.run on local disk: results, manifest, failures, empty tiles, retries, the CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import colphot
from colphot.config import ForcedPhotConfig
from colphot.parquet.metadata import read_colphot_metadata
from colphot.runner import run as run_module
from colphot.runner.plan import WorkUnit, find_tiles, plan_units
from colphot.runner.run import MANIFEST_NAME, measure_unit, part_status, write_part

ROW_KEY = ["band", "tract", "patch", "objectId"]


def _parts(root: Path) -> list[Path]:
    return sorted(root.glob("band=*/tract=*/patch=*/part-0.parquet"))


def test_run_equals_measuring_each_tile_with_the_whole_catalog(survey, local_run, local_rows):
    summary, out = local_run
    everything = pl.read_parquet(f"{survey.refs_root}/**/*.parquet", hive_partitioning=True)
    expected = pl.concat([colphot.forced_photometry(colphot.read_tile(p), everything)
                          for p in survey.tile_paths]).sort(ROW_KEY)
    assert_frame_equal(local_rows.select(expected.columns), expected)
    assert summary.n_measured == len(survey.tile_paths) == len(_parts(out))
    assert summary.n_rows == local_rows.height
    assert colphot.run is run_module.run


def test_summary_and_manifest(survey, local_run):
    summary, out = local_run
    assert [(r.band, r.patch) for r in summary.results] == sorted(
        (b, p) for b in survey.bands for p in survey.patches)
    for r in summary.results:
        assert r.status == "measured" and r.error is None
        assert set(r.timings) == {"read", "refs", "measure", "write"}
        assert r.worker.startswith("tcp://127.0.0.1")
        assert pq.read_metadata(r.part).num_rows == r.rows
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["counts"] == {"tiles": 8, "measured": 8, "skipped": 0, "failed": 0,
                                  "rows": summary.n_rows}
    assert manifest["inputs"]["tiles"] == survey.tiles_template
    assert manifest["config"] == ForcedPhotConfig().to_dict()
    assert manifest["execution"]["n_workers"] == 2
    assert [t["part"] for t in manifest["tiles"]] == [r.part for r in summary.results]
    assert "provenance" not in manifest["tiles"][0]
    # written last: no part is newer than _common_metadata, nor that newer than the manifest
    newest = max(p.stat().st_mtime_ns for p in _parts(out))
    common = (out / "_common_metadata").stat().st_mtime_ns
    assert newest <= common <= (out / MANIFEST_NAME).stat().st_mtime_ns
    meta = read_colphot_metadata(pq.read_schema(out / "_common_metadata"))
    assert {i["uri"] for i in meta["inputs"]} == set(survey.tile_paths)
    assert str(summary).startswith(f"colphot run {summary.run_id}: 8 tiles, 8 measured")


def test_parts_carry_their_tile_provenance(survey, local_run):
    summary, _ = local_run
    for r in summary.results:
        meta = read_colphot_metadata(pq.read_schema(r.part))
        assert [i["uri"] for i in meta["inputs"]] == [r.url]
        assert (meta["inputs"][0]["band"], meta["inputs"][0]["patch"]) == (r.band, r.patch)


def test_failed_tile_reported_and_others_measured(survey, dask_client, tmp_path):
    tiles = shutil.copytree(Path(survey.root) / "tiles", tmp_path / "tiles")
    broken = tiles / "g" / "0" / "9.fits"
    broken.write_bytes(b"SIMPLE  = not really a FITS file" + b" " * 3000)
    missing = tmp_path / "tiles" / "r" / "0" / "5.fits"
    urls = sorted(str(p) for p in tiles.glob("*/*/*.fits")) + [str(missing)]
    summary = colphot.run(urls, survey.refs_root, tmp_path / "out", client=dask_client,
                          progress=False)
    assert summary.n_measured == 8 and summary.n_failed == 2
    by_patch = {(r.band, r.patch): r for r in summary.failed}
    assert by_patch[("g", 9)].url == str(broken)
    assert by_patch[("g", 9)].error.startswith("TileFormatError: ")
    assert by_patch[("r", 5)].error.startswith("FileNotFoundError: ")
    text = str(summary)
    assert f"FAILED {broken}: TileFormatError" in text and f"FAILED {missing}: " in text
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    failed = {t["url"]: t for t in manifest["tiles"] if t["status"] == "failed"}
    assert set(failed) == {str(broken), str(missing)}
    assert failed[str(broken)]["error"] == by_patch[("g", 9)].error
    assert not (tmp_path / "out" / "band=g" / "tract=0" / "patch=9").exists()


def test_tile_without_references_writes_an_empty_valid_part(survey, tmp_path):
    far = tmp_path / "far.parquet"
    pl.DataFrame({"id": [1], "coord_ra": [10.0], "coord_dec": [-40.0]}).write_parquet(far)
    unit = plan_units(find_tiles(survey.tile_paths[0]), tmp_path / "out")[0]
    config = ForcedPhotConfig()
    result = measure_unit(unit, str(far), config)
    assert (result.status, result.rows, result.worker) == ("measured", 0, None)
    table = pq.read_table(unit.part)
    assert table.num_rows == 0 and "psfFlux" in table.column_names
    assert part_status(unit.part, config)[0] == 0
    assert part_status(unit.part, ForcedPhotConfig(aperture_radii=(3.0,))) is None
    skipped = measure_unit(unit, str(far), config, resume=True)
    assert (skipped.status, skipped.rows) == ("skipped", 0)
    assert skipped.provenance["uri"] == unit.url


def test_tract_without_references_gives_an_empty_part(survey, dask_client, tmp_path):
    """The tile's tract has no partition in the catalog: zero rows, the catalog's columns."""
    refs = tmp_path / "refs"
    shutil.copytree(Path(survey.refs_root) / "tract=0", refs / "tract=7")
    summary = colphot.run(survey.tile_paths[:1], refs, tmp_path / "out", client=dask_client,
                          progress=False)
    assert summary.n_measured == 1 and summary.n_rows == 0
    unit = plan_units(find_tiles(survey.tile_paths[0]), tmp_path / "direct")[0]
    assert measure_unit(unit, str(refs), ForcedPhotConfig(), prune_tract=True).rows == 0
    got, expected = (pq.read_table(p) for p in (summary.results[0].part, unit.part))
    assert got.num_rows == 0 and got.schema.equals(expected.schema, check_metadata=False)


def test_tasks_get_the_listed_files_of_their_tract(survey, tmp_path, monkeypatch,
                                                   thread_client):
    seen: list[object] = []
    real = run_module.select_refs

    def recording(refs, *args, **kwargs):
        seen.append(refs)
        return real(refs, *args, **kwargs)

    monkeypatch.setattr(run_module, "select_refs", recording)
    summary = colphot.run(survey.tile_paths[:2], survey.refs_root, tmp_path, client=thread_client,
                          progress=False)
    assert summary.n_measured == 2
    files = sorted(str(p) for p in Path(survey.refs_root).glob("tract=0/*/*.parquet"))
    assert seen == [files, files]


def test_header_contradicting_path_fails_the_tile(survey, tmp_path):
    wrong = tmp_path / "tiles" / "g" / "0" / "3.fits"
    wrong.parent.mkdir(parents=True)
    shutil.copy(next(p for p in survey.tile_paths if p.endswith("g/0/1.fits")), wrong)
    unit = plan_units(find_tiles(str(wrong)), tmp_path / "out")[0]
    result = measure_unit(unit, survey.refs_root, ForcedPhotConfig())
    assert result.status == "failed"
    assert result.error == (f"TileFormatError: {wrong}: header PATCH = 1 but the tile path "
                            "gives patch 3")


def test_tile_without_image_hdu_is_planned_and_fails_alone(survey, tmp_path):
    """A file with MASK and VARIANCE but no IMAGE HDU, named only by its primary header, is
    planned like any tile and then fails as that tile (the plan itself does not fail)."""
    from astropy.io import fits

    src = next(p for p in survey.tile_paths if p.endswith("r/0/2.fits"))
    path = tmp_path / "no_image.fits"
    with fits.open(src) as hdul:
        assert hdul[0].header["BAND"] == "r"
        del hdul["IMAGE"]
        hdul.writeto(path)
    found = find_tiles([str(path)])
    assert found == [(str(path), "r", 0, 2)]
    unit = plan_units(found, tmp_path / "out")[0]
    result = measure_unit(unit, survey.refs_root, ForcedPhotConfig())
    assert result.status == "failed"
    assert result.error.startswith(f"TileFormatError: {path}: no IMAGE HDU")


def test_write_part_is_whole_or_absent(tmp_path, local_run):
    summary, _ = local_run
    unit = WorkUnit("x.fits", "g", 0, 0, str(tmp_path / "band=g/tract=0/patch=0/part-0.parquet"))
    bad = pl.DataFrame({"objectId": [1]})
    with pytest.raises(Exception):  # noqa: B017 - any encoding error
        write_part(bad, unit.part, config=ForcedPhotConfig(), provenance={})
    assert not Path(unit.part).exists()
    assert list(tmp_path.rglob("*")) == [] or all(p.is_dir() for p in tmp_path.rglob("*"))


@pytest.fixture()
def thread_client():
    """An in-process cluster (threads), so tests can patch what the task calls."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client


def test_transient_errors_are_retried_then_reported(survey, tmp_path, monkeypatch,
                                                    thread_client):
    calls: dict[str, int] = {}
    real = run_module.read_tile

    def flaky(url, **kwargs):
        calls[url] = calls.get(url, 0) + 1
        if url.endswith("g/0/0.fits") and calls[url] == 1:
            raise ConnectionError("connection reset by peer")
        if url.endswith("r/0/3.fits"):
            raise TimeoutError("read timed out")
        return real(url, **kwargs)

    monkeypatch.setattr(run_module, "read_tile", flaky)
    summary = colphot.run(survey.tiles_template, survey.refs_root, tmp_path, client=thread_client,
                          retries=1, progress=False)
    g0 = next(p for p in survey.tile_paths if p.endswith("g/0/0.fits"))
    r3 = next(p for p in survey.tile_paths if p.endswith("r/0/3.fits"))
    assert calls[g0] == 2 and calls[r3] == 2  # one retry each
    assert summary.n_measured == 7
    assert [str(f) for f in summary.failed] == [f"{r3}: TimeoutError: read timed out"]


def test_progress_bar_and_closing_line(survey, dask_client, tmp_path, capsys):
    colphot.run(survey.tile_paths[:2], survey.refs_root, tmp_path, client=dask_client)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("[############------------] 1/2 tiles, 0 failed")
    assert err[1].startswith("[########################] 2/2 tiles, 0 failed")
    assert err[-1].startswith("colphot run: 2 measured, 0 skipped, 0 failed in ")


def test_no_tiles_is_an_error(tmp_path, dask_client):
    with pytest.raises(ValueError, match=r"tiles: nothing matches .*\{band\}"):
        colphot.run(str(tmp_path / "{band}/{tract}/{patch}.fits"), tmp_path, tmp_path / "o",
                    client=dask_client)


@pytest.mark.slow
def test_default_local_cluster_and_cli(survey, tmp_path, dask_client, capsys, monkeypatch):
    import distributed

    from colphot.cli import main

    opened = []  # the CLI's Client on --scheduler, closed here so it does not outlive the cluster

    def client(*args, **kwargs):
        opened.append(real(*args, **kwargs))
        return opened[-1]

    real = distributed.Client
    monkeypatch.setattr(distributed, "Client", client)

    summary = colphot.run(survey.tile_paths[:2], survey.refs_root, tmp_path / "a",
                          n_workers=1, progress=False)
    assert summary.n_measured == 2
    code = main(["run", "--tiles", survey.tiles_template, "--refs", survey.refs_root,
                 "--out", str(tmp_path / "b"), "--scheduler", dask_client.scheduler.address])
    for c in opened:
        c.close()
    assert code == 0
    assert "8 tiles, 8 measured, 0 skipped, 0 failed" in capsys.readouterr().out
    assert len(_parts(tmp_path / "b")) == 8
    assert os.path.exists(tmp_path / "b" / MANIFEST_NAME)


def test_result_lost_on_the_way_is_measured_again(survey, dask_client, tmp_path, monkeypatch):
    """A finished result that cannot be fetched (its worker died meanwhile) is resubmitted."""
    import distributed

    real = distributed.Future.result
    failures: list[str] = []

    def result(self, *args, **kwargs):
        if "-g-0-1-" in str(self.key) and not failures:
            failures.append(str(self.key))
            raise RuntimeError("gather failed: worker lost")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(distributed.Future, "result", result)
    summary = colphot.run(survey.tiles_template, survey.refs_root, tmp_path, client=dask_client,
                          progress=False)
    assert failures and failures[0].endswith("-1")  # first attempt's key
    assert summary.n_measured == 8 and summary.n_failed == 0
    assert len(_parts(tmp_path)) == 8
    monkeypatch.setattr(distributed.Future, "result", lambda self, *a, **k: (_ for _ in ()).throw(
        RuntimeError("gather failed")))
    summary = colphot.run(survey.tile_paths[:1], survey.refs_root, tmp_path / "x",
                          client=dask_client, retries=1, progress=False)
    assert [r.error for r in summary.failed] == ["result lost: RuntimeError: gather failed"]
