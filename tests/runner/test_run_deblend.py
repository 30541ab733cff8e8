"""``colphot run --in-band``: deblended measurement of a survey on Dask, local disk and S3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import s3fs
from polars.testing import assert_frame_equal

import colphot
from colphot.config import ForcedPhotConfig
from colphot.exceptions import OutputMismatchError
from colphot.measure.noise_replacer import noise_seed
from colphot.parquet.metadata import read_colphot_metadata
from colphot.runner.refs import select_refs
from colphot.runner.run import MANIFEST_NAME

ROW_KEY = ["band", "tract", "patch", "objectId"]
CONFIG = ForcedPhotConfig(undeblended_plugins=("psf_flux", "aperture"))


@pytest.fixture(scope="module")
def deblended_run(survey, dask_client, tmp_path_factory):
    out = tmp_path_factory.mktemp("forced-deblended")
    summary = colphot.run(survey.tiles_template, survey.refs_root, out, config=CONFIG,
                          client=dask_client, progress=False, in_band=survey.in_band_root)
    assert summary.n_failed == 0, str(summary)
    return summary, out


def test_run_equals_deblending_each_tile(survey, deblended_run):
    summary, out = deblended_run
    rows = colphot.open_forced(out).collect().sort(ROW_KEY)
    assert "undeblended_psfFlux" in rows.columns and "undeblended_ap12Flux" in rows.columns
    expected = []
    for path in survey.tile_paths[::3]:
        tile = colphot.read_tile(path)
        refs = select_refs(survey.refs_root, tile.wcs, tile.shape)
        df = colphot.forced_photometry(tile, refs, CONFIG, in_band=survey.in_band_root)
        expected.append(df)
        got = rows.filter((pl.col("band") == tile.band) & (pl.col("patch") == tile.patch))
        assert_frame_equal(got, df.sort(ROW_KEY), check_column_order=False)
    assert sum(d.height for d in expected) > 0


def test_parts_record_the_in_band_catalog_and_seed(survey, deblended_run):
    summary, out = deblended_run
    for result in summary.results:
        info = read_colphot_metadata(pq.read_schema(result.part))
        deblend = info["inputs"][0]["deblend"]
        assert deblend["in_band"] == survey.in_band_root
        assert deblend["noise_seed"] == noise_seed(0, result.band, result.tract, result.patch)
    common = pq.read_schema(Path(out) / "_common_metadata")
    assert "undeblended_ap70Flux" in common.names
    assert common.field("undeblended_psfFlux").metadata[b"unit"] == b"nJy"
    manifest = json.loads((Path(out) / MANIFEST_NAME).read_text())
    assert manifest["inputs"]["in_band"] == survey.in_band_root


def test_template_gives_the_same_rows_and_resume_keeps_them(survey, deblended_run, dask_client,
                                                             tmp_path):
    _, out = deblended_run
    summary = colphot.run(survey.tiles_template, survey.refs_root, tmp_path / "t", config=CONFIG,
                          client=dask_client, progress=False, in_band=survey.in_band_template)
    assert summary.n_failed == 0, str(summary)
    a = colphot.open_forced(out).collect().sort(ROW_KEY)
    b = colphot.open_forced(tmp_path / "t").collect().sort(ROW_KEY)
    assert_frame_equal(a, b)
    again = colphot.run(survey.tiles_template, survey.refs_root, tmp_path / "t", config=CONFIG,
                        client=dask_client, progress=False, in_band=survey.in_band_template,
                        resume=True)
    assert again.n_skipped == len(survey.tile_paths)
    # not deblended: another measurement, refused before anything is measured...
    with pytest.raises(OutputMismatchError, match=r"_common_metadata: the dataset holds "
                       r"another measurement \(differs in \['columns'\]\)"):
        colphot.run(survey.tiles_template, survey.refs_root, tmp_path / "t", config=CONFIG,
                    client=dask_client, progress=False, resume=True)
    assert_frame_equal(colphot.open_forced(tmp_path / "t").collect().sort(ROW_KEY), a)
    # ... unless clobbered: then every part is measured again, plain
    plain = colphot.run(survey.tiles_template, survey.refs_root, tmp_path / "t", config=CONFIG,
                        client=dask_client, progress=False, resume=True, clobber=True)
    assert plain.n_measured == len(survey.tile_paths)
    assert "undeblended_psfFlux" not in colphot.open_forced(tmp_path / "t").collect_schema()


def test_tile_without_in_band_rows_fails_alone(survey, dask_client, tmp_path):
    in_band = shutil.copytree(survey.in_band_root, tmp_path / "in_band")
    victim = next(Path(in_band).glob("band=g/tract=0/patch=*/part-0.parquet"))
    patch = int(victim.parent.name.split("=")[1])
    frame = pl.read_parquet(victim)
    frame.head(frame.height // 2).write_parquet(victim)
    summary = colphot.run(survey.tiles_template, survey.refs_root, tmp_path / "out",
                          config=CONFIG, client=dask_client, progress=False, in_band=in_band)
    assert summary.n_failed == 1 and summary.n_measured == len(survey.tile_paths) - 1
    failed = summary.failed[0]
    assert (failed.band, failed.patch) == ("g", patch)
    assert failed.error.startswith("MissingReferenceError: ")
    assert str(in_band) in failed.error and "[references: " in failed.error
    assert not (tmp_path / "out" / "band=g" / "tract=0" / f"patch={patch}").exists()


def test_deblended_run_on_s3_equals_local(survey, deblended_run, dask_client, s3_options,
                                          s3_bucket):
    fs = s3fs.S3FileSystem(**s3_options)
    fs.put(survey.root + "/", f"{s3_bucket}/survey", recursive=True)
    fs.invalidate_cache()
    root = f"s3://{s3_bucket}/survey"
    out = f"s3://{s3_bucket}/forced-deblended"
    summary = colphot.run(f"{root}/tiles/{{band}}/{{tract}}/{{patch}}.fits", f"{root}/refs", out,
                          config=CONFIG, client=dask_client, storage_options=s3_options,
                          progress=False, in_band=f"{root}/in_band")
    assert summary.n_failed == 0, str(summary)
    rows = colphot.open_forced(out, storage_options=s3_options).collect().sort(ROW_KEY)
    assert_frame_equal(rows, colphot.open_forced(deblended_run[1]).collect().sort(ROW_KEY))


def test_cli_measure_with_in_band(survey, tmp_path, capsys):
    from colphot.cli import main

    tile = survey.tile_paths[1]
    assert main(["measure", tile, "--refs", survey.refs_root, "--out", str(tmp_path / "o"),
                 "--in-band", survey.in_band_root]) == 0
    assert "sources measured" in capsys.readouterr().out
    part = next((tmp_path / "o").rglob("part-0.parquet"))
    info = read_colphot_metadata(pq.read_schema(part))
    assert info["inputs"][0]["deblend"]["in_band"] == survey.in_band_root
    t = colphot.read_tile(tile)
    want = colphot.forced_photometry(t, select_refs(survey.refs_root, t.wcs, t.shape),
                                     in_band=survey.in_band_root)
    got = colphot.open_forced(tmp_path / "o").collect()
    assert_frame_equal(got.sort("objectId"), want.sort("objectId"), check_column_order=False)


def test_in_band_root_is_listed_once_by_partition(survey, tmp_path):
    from colphot.runner.run import list_in_band

    groups = list_in_band(survey.in_band_root)
    assert groups is not None and len(groups) == len(survey.tile_paths)
    for key, files in groups.items():
        assert len(files) == 1 and f"/{key}/" in files[0]
    assert list_in_band(survey.in_band_template) is None
    assert list_in_band(next(iter(groups.values()))[0]) is None
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "all.parquet").write_bytes(Path(next(iter(groups.values()))[0]).read_bytes())
    assert list_in_band(str(flat)) is None  # not hive-partitioned: tasks scan the root
