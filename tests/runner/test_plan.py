"""colphot.runner.plan and colphot.runner.refs: finding tiles, work units, per-tile references."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from colphot.references.select import on_tile, sky_to_pixel
from colphot.runner.plan import (
    expand_tiles,
    find_tiles,
    header_identity,
    parse_tile_url,
    plan_units,
    redact_url,
    template_regex,
)
from colphot.runner.refs import (
    DEFAULT_MARGIN,
    group_by_tract,
    list_refs,
    refs_source,
    scan_refs,
    select_refs,
    sky_box,
)
from colphot.tile.fits import read_tile

# --------------------------------------------------------------------------------------------
# templates and URLs


def test_template_regex_parses_fields_and_keeps_glob_meaning():
    rx = template_regex("/data/{band}/{tract}/{patch}.fits")
    assert rx.match("/data/HSC-R/9813/42.fits").groupdict() == {
        "band": "HSC-R", "tract": "9813", "patch": "42"}
    assert rx.match("/data/g/x/42.fits") is None  # tract must be an integer
    assert rx.match("/data/g/0/1.fits.bak") is None
    rx = template_regex("b/*/calexp_{band}_{tract}_{patch}.fits")
    assert rx.match("b/run7/calexp_i_0_3.fits").groupdict() == {
        "band": "i", "tract": "0", "patch": "3"}
    assert rx.match("b/a/b/calexp_i_0_3.fits") is None  # * stays within one folder
    assert template_regex("b/**/{band}.fits").match("b/x/y/g.fits").group("band") == "g"


def test_template_regex_repeated_placeholder_must_agree():
    rx = template_regex("t/{band}/{tract}/{patch}-{band}.fits")
    assert rx.match("t/g/0/1-g.fits") is not None
    assert rx.match("t/g/0/1-r.fits") is None


def test_parse_tile_url_template_then_convention():
    rx = template_regex("bucket/coadd_{band}_t{tract}_p{patch}.fits")
    assert parse_tile_url("s3://bucket/coadd_z_t3_p17.fits", rx) == ("z", 3, 17)
    assert parse_tile_url("s3://bucket/tiles/r/0/3.fits") == ("r", 0, 3)
    assert parse_tile_url("/x/tiles/r/0/3.fits.fz") == ("r", 0, 3)
    assert parse_tile_url("/x/tile.fits") == (None, None, None)


def test_redact_url_strips_credentials_only():
    assert redact_url("s3://AKIA:secret@bucket/k") == "s3://bucket/k"
    assert redact_url("https://u:p@host/x@y") == "https://host/x@y"
    assert redact_url("/local/a@b/tile.fits") == "/local/a@b/tile.fits"


# --------------------------------------------------------------------------------------------
# finding tiles on disk


def test_find_tiles_template_glob_and_list_agree(survey):
    by_template = find_tiles(survey.tiles_template)
    assert [u for u, *_ in by_template] == sorted(survey.tile_paths, key=lambda p: (
        p.split("/")[-3], int(p.split("/")[-1][:-5])))
    assert {(b, t, p) for _, b, t, p in by_template} == {
        (b, 0, p) for b in survey.bands for p in survey.patches}
    glob = survey.tiles_template.replace("{band}/{tract}/{patch}", "*/*/*")
    assert find_tiles(glob) == by_template
    assert find_tiles(list(reversed(survey.tile_paths))) == by_template
    assert find_tiles([survey.tiles_template, survey.tile_paths[0]]) == by_template


def test_find_tiles_reads_headers_when_the_path_says_nothing(survey, tmp_path):
    src = next(p for p in survey.tile_paths if p.endswith("r/0/2.fits"))
    renamed = tmp_path / "some_tile.fits"
    shutil.copy(src, renamed)
    assert find_tiles([str(renamed)]) == [(str(renamed), "r", 0, 2)]
    assert header_identity(str(tmp_path / "missing.fits")) == (None, None, None)


@pytest.mark.parametrize("key", ["BAND", "FILTER"])
def test_plan_identity_follows_read_tile_when_headers_disagree(survey, tmp_path, key):
    """The IMAGE header comes before the primary header, for the plan as for read_tile."""
    from astropy.io import fits

    src = next(p for p in survey.tile_paths if p.endswith("r/0/2.fits"))
    path = tmp_path / "some_tile.fits"
    with fits.open(src) as hdul:
        assert hdul[0].header["BAND"] == "r"
        hdul["IMAGE"].header[key] = "z"
        hdul.writeto(path)
    tile = read_tile(path)
    assert (tile.band, tile.tract, tile.patch) == ("z", 0, 2)
    unit = plan_units(find_tiles([str(path)]), tmp_path / "out")[0]
    assert (unit.band, unit.tract, unit.patch) == (tile.band, tile.tract, tile.patch)
    assert header_identity(str(path)) == ("z", 0, 2)
    with fits.open(src) as hdul:
        hdul["IMAGE"].header["TRACT"] = "north"
        hdul.writeto(tmp_path / "bad_tract.fits")
    assert header_identity(str(tmp_path / "bad_tract.fits")) == (None, None, None)


def test_expand_tiles_plain_url_kept_and_empty_glob(tmp_path):
    assert expand_tiles(str(tmp_path / "a.fits")) == [str(tmp_path / "a.fits")]
    assert expand_tiles(str(tmp_path / "{band}/{tract}/{patch}.fits")) == []


def test_plan_units_parts_and_errors(survey, tmp_path):
    found = find_tiles(survey.tiles_template)
    units = plan_units(found, tmp_path / "out")
    assert len(units) == len(survey.tile_paths)
    u = units[0]
    assert u.part == f"{tmp_path}/out/band={u.band}/tract={u.tract}/patch={u.patch}/part-0.parquet"
    assert u.key == f"band={u.band}/tract={u.tract}/patch={u.patch}"
    remote = plan_units(found[:1], "s3://bucket/run/")
    assert remote[0].part.startswith("s3://bucket/run/band=")
    with pytest.raises(ValueError, match="are both band=g/tract=0/patch=0"):
        plan_units([("a/g/0/0.fits", "g", 0, 0), ("b/g/0/0.fits", "g", 0, 0)], tmp_path)
    with pytest.raises(ValueError, match=r"cannot tell band/tract/patch of /x/t\.fits"):
        plan_units([("/x/t.fits", None, None, None)], tmp_path)


# --------------------------------------------------------------------------------------------
# references


def test_sky_box_plain_and_wrapping():
    df = pl.DataFrame({"coord_ra": [359.5, 0.5, 10.0, 180.0], "coord_dec": [0.0, 0.0, 0.0, 5.0]})
    wrap = df.filter(sky_box(359.0, 1.0, -1.0, 1.0))["coord_ra"].to_list()
    assert wrap == [359.5, 0.5]
    plain = df.filter(sky_box(5.0, 200.0, -1.0, 1.0))["coord_ra"].to_list()
    assert plain == [10.0]


def test_refs_source_forms(tmp_path):
    assert refs_source(tmp_path) == f"{tmp_path}/**/*.parquet"
    assert refs_source("s3://b/refs/") == "s3://b/refs/**/*.parquet"
    assert refs_source("s3://b/refs.parquet") == "s3://b/refs.parquet"
    assert refs_source("s3://b/refs/tract=0/*/*.parquet") == "s3://b/refs/tract=0/*/*.parquet"


def test_list_refs_and_group_by_tract(survey, tmp_path):
    files = list_refs(survey.refs_root)
    assert files == sorted(str(p) for p in Path(survey.refs_root).glob("**/*.parquet"))
    assert list_refs(files[1]) == [files[1]]
    assert list_refs(tmp_path) == [] and list_refs(tmp_path / "missing") == []
    assert group_by_tract(files) == {0: files}
    moved = [f.replace("tract=0", "tract=3") if "patch=1" in f else f for f in files]
    assert group_by_tract(moved) == {0: [moved[0], *moved[2:]], 3: [moved[1]]}
    assert group_by_tract(["/r/a.parquet", "/r/tract=0/b.parquet"]) is None
    assert group_by_tract(["/r/tract=x/a.parquet"]) is None
    # a list of files reads like the glob: same rows, same hive columns
    tile = read_tile(survey.tile_paths[0])
    by_list = select_refs(files, tile.wcs, tile.shape, tract=0)
    assert by_list.equals(select_refs(survey.refs_root, tile.wcs, tile.shape, tract=0))


def test_select_refs_keeps_every_ref_on_the_tile_and_few_others(survey):
    everything = pl.read_parquet(f"{survey.refs_root}/**/*.parquet", hive_partitioning=True)
    for path in survey.tile_paths[:4]:
        tile = read_tile(path)
        chosen = select_refs(survey.refs_root, tile.wcs, tile.shape, tract=tile.tract)
        on_all = on_tile(everything, tile.wcs, tile.shape)[0]
        on_chosen = on_tile(chosen, tile.wcs, tile.shape)[0]
        assert on_chosen["id"].to_list() == on_all["id"].to_list()
        # refs of neighbouring patch partitions are found (tiles overlap their neighbours)
        assert chosen["patch"].n_unique() > 1
        assert chosen.height < everything.height
        # only a thin margin around the tile: DEFAULT_MARGIN (5 arcsec) in pixels, plus one
        x, y = sky_to_pixel(tile.wcs, chosen["coord_ra"].to_numpy(),
                            chosen["coord_dec"].to_numpy())
        m = DEFAULT_MARGIN * 3600.0 / survey.pixel_scale + 1.0
        ny, nx = tile.shape
        assert (x > -m).all() and (x < nx + m).all() and (y > -m).all() and (y < ny + m).all()
        assert set(chosen.columns) >= {"id", "coord_ra", "coord_dec", "tract", "patch"}


def test_select_refs_prunes_other_tracts_without_reading_them(survey, tmp_path):
    refs = shutil.copytree(survey.refs_root, tmp_path / "refs")
    bad = refs / "tract=7" / "patch=0"
    bad.mkdir(parents=True)
    (bad / "part-0.parquet").write_bytes(b"this is not parquet")
    tile = read_tile(survey.tile_paths[0])
    chosen = select_refs(refs, tile.wcs, tile.shape, tract=0)
    expected = select_refs(survey.refs_root, tile.wcs, tile.shape, tract=0)
    assert chosen.sort("id").equals(expected.sort("id"))
    with pytest.raises(Exception, match="parquet|Parquet|magic"):
        select_refs(refs, tile.wcs, tile.shape, tract=None)  # all tracts: reads the bad file


def test_select_refs_across_ra_zero(sim, tmp_path):
    shape = (200, 200)
    wcs = sim.tan_wcs(shape, ra0=0.0, dec0=0.0, scale_arcsec=1.0)
    x = np.array([5.0, 100.0, 195.0, 100.0])
    y = np.array([100.0, 100.0, 100.0, 5.0])
    refs = sim.refs_at(wcs, x, y)
    refs = refs.with_columns(pl.col("coord_ra") % 360.0)
    far = pl.DataFrame({"id": [99], "coord_ra": [180.0], "coord_dec": [0.0]})
    path = tmp_path / "refs.parquet"
    pl.concat([refs, far]).write_parquet(path)
    ras = refs["coord_ra"].to_list()
    assert min(ras) < 1.0 and max(ras) > 359.0  # the tile straddles RA = 0
    chosen = select_refs(str(path), wcs, shape)
    assert sorted(chosen["id"].to_list()) == sorted(refs["id"].to_list())


def test_scan_refs_is_lazy_with_hive_columns(survey):
    lf = scan_refs(survey.refs_root)
    assert isinstance(lf, pl.LazyFrame)
    schema = lf.collect_schema()
    assert schema["tract"] == pl.Int64 and schema["patch"] == pl.Int64
    plan = lf.filter(pl.col("tract") == 0).explain()
    assert "tract" in plan
