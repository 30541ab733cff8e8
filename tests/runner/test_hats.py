"""HATS export (colphot.export.hats.to_hats) on the 2-worker cluster, read back with lsdb.

Truth is independent of hats and lsdb: the source dataset read by polars, brute-force numpy
angular distances for the cone search and the nearest-neighbour cross-match, the column
definitions of catalogs/ for units and descriptions, the parts' own colphot metadata for the
provenance.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import colphot
from colphot.exceptions import SchemaError
from colphot.parquet.metadata import read_colphot_metadata
from colphot.table.schema import forced_columns

pytest.importorskip("hats_import")
pytest.importorskip("lsdb")

from colphot.export.hats import HEALPIX_COLUMN, to_hats  # noqa: E402

pytestmark = [
    # lsdb and nested-pandas use pandas options and keywords that pandas 3 deprecates
    pytest.mark.filterwarnings("ignore::DeprecationWarning:lsdb.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:nested_pandas.*"),
    pytest.mark.filterwarnings("ignore:The 'mode.chained_assignment' option:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning"),
]

ROW_KEY = ["band", "tract", "patch", "objectId"]
SECRET = "colphot-test-secret-9f3c1b7e"  # conftest's s3_options secret


def _lsdb_rows(catalog) -> pl.DataFrame:
    """Every row of an lsdb catalog as polars (``_healpix_29`` from the index kept)."""
    frame = catalog.compute().reset_index()
    return pl.from_pandas(frame)


def _sep_arcsec(ra1, dec1, ra2, dec2):
    """Angular separation (Vincenty), degrees in, arcsec out; broadcasts."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(a, dtype=np.float64))
                            for a in (ra1, dec1, ra2, dec2))
    dra = ra2 - ra1
    num = np.hypot(np.cos(dec2) * np.sin(dra),
                   np.cos(dec1) * np.sin(dec2) - np.sin(dec1) * np.cos(dec2) * np.cos(dra))
    den = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(dra)
    return np.degrees(np.arctan2(num, den)) * 3600.0


@pytest.fixture(scope="module")
def forced_hats(local_run, local_rows, dask_client, tmp_path_factory):
    """The forced-source dataset as a HATS catalog, split in at least two leaves."""
    out = tmp_path_factory.mktemp("hats") / "forced"
    # one row fewer than the dataset per leaf: hats-import has to split the sky
    result = to_hats(local_run[1], out, client=dask_client, pixel_threshold=local_rows.height - 1)
    assert result == os.fspath(out)
    return out


@pytest.fixture(scope="module")
def forced_catalog(forced_hats):
    import lsdb

    return lsdb.open_catalog(forced_hats)


def test_hats_catalog_holds_exactly_the_source_rows(forced_hats, forced_catalog, local_rows):
    import hats

    rows = _lsdb_rows(forced_catalog)
    assert forced_catalog.get_healpix_pixels().__len__() >= 2
    assert set(rows.columns) == set(local_rows.columns) | {HEALPIX_COLUMN}
    got = rows.select(local_rows.columns).sort(ROW_KEY)
    assert_frame_equal(got, local_rows, check_exact=True)
    # leaves and partition_info.csv agree, and each row sits in the leaf of its _healpix_29
    catalog = hats.read_hats(forced_hats)
    assert catalog.catalog_info.total_rows == local_rows.height
    pixels = {(p.order, p.pixel) for p in catalog.get_healpix_pixels()}
    info = pl.read_csv(forced_hats / "partition_info.csv")
    assert {(o, n) for o, n in info.select("Norder", "Npix").iter_rows()} == pixels
    leaves = glob.glob(str(forced_hats / "dataset/Norder=*/Dir=*/Npix=*.parquet"))
    assert len(leaves) == len(pixels)
    for leaf in leaves:
        parts = dict(s.split("=") for s in leaf[:-len(".parquet")].split("/")[-3:])
        order, npix = int(parts["Norder"]), int(parts["Npix"])
        assert (order, npix) in pixels and int(parts["Dir"]) == npix // 10_000 * 10_000
        index = pq.read_table(leaf, columns=[HEALPIX_COLUMN])[HEALPIX_COLUMN].to_numpy()
        assert len(index) > 0
        assert np.all(index >> (2 * (29 - order)) == npix)
        assert np.all(np.diff(index) >= 0)


def test_cone_search_equals_brute_force(forced_catalog, local_rows):
    ra, dec = local_rows["coord_ra"].to_numpy(), local_rows["coord_dec"].to_numpy()
    ra0, dec0 = float(np.median(ra)) + 0.004, float(np.median(dec)) - 0.003
    dist = np.sort(np.unique(_sep_arcsec(ra0, dec0, ra, dec)))
    k = len(dist) // 3  # a radius halfway between two rows' distances: no row on the edge
    radius = float(dist[k] + dist[k + 1]) / 2
    assert dist[k + 1] - dist[k] > 1e-6
    inside = _sep_arcsec(ra0, dec0, ra, dec) < radius
    expected = local_rows.filter(pl.Series(inside)).sort(ROW_KEY)
    got = _lsdb_rows(forced_catalog.cone_search(ra0, dec0, radius)).select(
        local_rows.columns).sort(ROW_KEY)
    assert 0 < expected.height < local_rows.height
    assert_frame_equal(got, expected, check_exact=True)


def test_crossmatch_equals_brute_force_nearest_neighbour(forced_catalog, local_rows, survey):
    import lsdb

    # a second catalog: the truth positions moved by ~0.35" and a third of them dropped
    truth = pl.read_parquet(survey.truth_path).select("id", "coord_ra", "coord_dec")
    rng = np.random.default_rng(11)
    keep = rng.random(truth.height) > 1 / 3
    truth = truth.filter(pl.Series(keep))
    offset = rng.normal(0.0, 0.35 / 3600, size=(truth.height, 2))
    other = pl.DataFrame({
        "truth_id": truth["id"],
        "ra": truth["coord_ra"].to_numpy() + offset[:, 0] / np.cos(np.radians(
            truth["coord_dec"].to_numpy())),
        "dec": truth["coord_dec"].to_numpy() + offset[:, 1],
    })
    radius = 1.0
    right = lsdb.from_dataframe(other.to_pandas(), ra_column="ra", dec_column="dec",
                                catalog_name="other", margin_threshold=5.0)
    matched = _lsdb_rows(forced_catalog.crossmatch(
        right, n_neighbors=1, radius_arcsec=radius, suffixes=("", "_other"),
        suffix_method="overlapping_columns", log_changes=False))
    got = matched.select(*ROW_KEY, "truth_id", "_dist_arcsec").sort(ROW_KEY)

    sep = _sep_arcsec(local_rows["coord_ra"].to_numpy()[:, None],
                      local_rows["coord_dec"].to_numpy()[:, None],
                      other["ra"].to_numpy()[None, :], other["dec"].to_numpy()[None, :])
    nearest = np.argmin(sep, axis=1)
    best = sep[np.arange(len(nearest)), nearest]
    hit = best < radius
    expected = local_rows.select(ROW_KEY).with_columns(
        truth_id=other["truth_id"].gather(nearest), _dist_arcsec=pl.Series(best),
    ).filter(pl.Series(hit)).sort(ROW_KEY)
    assert 0 < expected.height < local_rows.height  # dropped objects find no partner
    assert_frame_equal(got.drop("_dist_arcsec"), expected.drop("_dist_arcsec"),
                       check_dtypes=False)
    np.testing.assert_allclose(got["_dist_arcsec"], expected["_dist_arcsec"], atol=1e-6)


def test_units_and_descriptions_in_every_leaf(forced_hats, local_run):
    from astropy.table import Table

    part = glob.glob(str(local_run[1] / "band=*/tract=*/patch=*/part-0.parquet"))[0]
    config = colphot.ForcedPhotConfig.from_dict(read_colphot_metadata(pq.read_schema(part))
                                                ["config"])
    definitions = {c.name: c for c in forced_columns(config)}
    leaves = glob.glob(str(forced_hats / "dataset/Norder=*/Dir=*/Npix=*.parquet"))
    for leaf in leaves:
        table = Table.read(leaf)  # astropy: from the leaf's table_meta_yaml
        schema = pq.read_schema(leaf)  # pyarrow: field metadata
        assert set(table.colnames) == set(definitions) | {HEALPIX_COLUMN}
        for name, column in definitions.items():
            assert table[name].description == column.description, name
            assert (str(table[name].unit) if table[name].unit is not None else None) == \
                column.unit, name
            meta = schema.field(name).metadata
            assert meta[b"description"].decode() == column.description
            assert (meta.get(b"unit", b"").decode() or None) == column.unit
        assert "HEALPix" in table[HEALPIX_COLUMN].description
        assert str(table["psfFlux"].unit) == "nJy" and str(table["coord_ra"].unit) == "deg"
        assert table["band"].dtype.kind == "U"
        assert json.loads(schema.metadata[b"colphot"])["config"] == config.to_dict()
    common = pq.read_schema(forced_hats / "dataset/_common_metadata")
    assert common.field("psfFlux").metadata[b"unit"] == b"nJy"


def test_properties_hold_the_provenance(forced_hats, local_run):
    import hats

    part = glob.glob(str(local_run[1] / "band=*/tract=*/patch=*/part-0.parquet"))[0]
    source = read_colphot_metadata(pq.read_schema(part))
    info = hats.read_hats(forced_hats).catalog_info
    extra = info.extra_dict()
    assert info.catalog_name == "forced" and info.catalog_type == "source"
    assert (info.ra_column, info.dec_column) == ("coord_ra", "coord_dec")
    assert extra["colphot_version"] == source["colphot_version"] == colphot.__version__
    assert extra["colphot_table"] == "forced_source"
    assert int(extra["colphot_schema_version"]) == source["schema_version"]
    assert json.loads(extra["colphot_config"]) == source["config"]
    assert json.loads(extra["colphot_versions"]) == source["versions"]
    assert extra["colphot_source"] == os.fspath(local_run[1])
    text = (forced_hats / "hats.properties").read_text()
    assert "colphot_config=" in text and "hats_builder=hats-import" in text


def test_object_table_exports(local_run, dask_client, tmp_path):
    objects = pytest.importorskip("colphot.objects")
    import lsdb
    from astropy.table import Table

    table_root = tmp_path / "objects"
    objects.object_table(local_run[1], table_root)
    expected = pl.read_parquet(str(table_root / "tract=*/part-0.parquet"),
                               hive_partitioning=False).sort("objectId")
    out = to_hats(table_root, tmp_path / "objects_hats", client=dask_client)
    rows = _lsdb_rows(lsdb.open_catalog(out))
    assert set(rows.columns) == set(expected.columns) | {HEALPIX_COLUMN}
    assert_frame_equal(rows.select(expected.columns).sort("objectId"), expected,
                       check_exact=True)
    leaf = glob.glob(str(tmp_path / "objects_hats/dataset/Norder=*/Dir=*/Npix=*.parquet"))[0]
    table = Table.read(leaf)
    source = pq.read_schema(str(next((table_root / "tract=0").glob("*.parquet"))))
    for field in source:
        want = (field.metadata or {}).get(b"unit")
        assert (str(table[field.name].unit) if table[field.name].unit is not None
                else None) == (want.decode() if want else None), field.name
        assert table[field.name].description == field.metadata[b"description"].decode()


def test_s3_round_trip(local_run, local_rows, dask_client, s3_options, s3_bucket):
    import lsdb
    import s3fs
    from upath import UPath

    fs = s3fs.S3FileSystem(**s3_options)
    fs.put(str(local_run[1]) + "/", f"{s3_bucket}/forced", recursive=True)
    fs.invalidate_cache()
    url = f"s3://{s3_bucket}/hats/forced"
    assert to_hats(f"s3://{s3_bucket}/forced", url, storage_options=s3_options,
                   client=dask_client) == url
    fs.invalidate_cache()
    catalog = lsdb.open_catalog(UPath(url, **s3_options))
    rows = _lsdb_rows(catalog).select(local_rows.columns).sort(ROW_KEY)
    assert_frame_equal(rows, local_rows, check_exact=True)
    written = fs.find(f"{s3_bucket}/hats")
    assert f"{s3_bucket}/hats/forced/hats.properties" in written
    assert all(p.startswith(f"{s3_bucket}/hats/forced/") for p in written)  # no staging left
    for path in written:
        assert SECRET.encode() not in fs.cat(path), path


def _write(path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_bad_inputs_raise_one_clear_error_and_write_nothing(local_run, dask_client, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"{empty}: no Parquet parts"):
        to_hats(empty, tmp_path / "out", client=dask_client)

    no_dec = tmp_path / "no_dec"
    _write(no_dec / "tract=0/part-0.parquet",
           pa.table({"objectId": [1, 2], "coord_ra": [10.0, 10.1]}))
    with pytest.raises(SchemaError, match=r"tract=0/part-0.parquet: no column 'coord_dec'"):
        to_hats(no_dec, tmp_path / "out", client=dask_client)

    mixed = tmp_path / "mixed"
    _write(mixed / "tract=0/part-0.parquet",
           pa.table({"coord_ra": [10.0], "coord_dec": [1.0]}))
    _write(mixed / "tract=1/part-0.parquet",
           pa.table({"coord_ra": [10.0], "coord_dec": [1.0], "x": [1]}))
    with pytest.raises(SchemaError, match="different columns"):
        to_hats(mixed, tmp_path / "out", client=dask_client)

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        to_hats(local_run[1], taken, client=dask_client)
    assert os.listdir(taken) == ["keep.txt"]

    # hats-import fails mid-way (no pixel can hold a single row): nothing appears
    with pytest.raises(ValueError, match="exceeds threshold"):
        to_hats(local_run[1], tmp_path / "out", client=dask_client, pixel_threshold=1)
    assert sorted(os.listdir(tmp_path)) == ["empty", "mixed", "no_dec", "taken"]


def test_overwrite_replaces_a_catalog_whole(local_run, local_rows, dask_client, tmp_path):
    import hats
    from distributed import default_client

    out = tmp_path / "cat"
    to_hats(local_run[1], out, client=dask_client, catalog_name="first")
    with pytest.raises(FileExistsError, match="not empty"):
        to_hats(local_run[1], out, client=dask_client)
    (out / "stale.txt").write_text("from before")
    # without a client: its own LocalCluster of one worker, closed at the end
    to_hats(local_run[1], out, n_workers=1, catalog_name="second", overwrite=True)
    assert not (out / "stale.txt").exists()
    catalog = hats.read_hats(out)
    assert catalog.catalog_name == "second"
    assert catalog.catalog_info.total_rows == local_rows.height
    assert os.listdir(tmp_path) == ["cat"]  # no staging or old copy left beside it
    assert default_client() is dask_client  # the own cluster's client never became default


def test_cli_hats_in_a_fresh_process_starts_its_own_cluster(local_run, local_rows, tmp_path):
    """``colphot hats`` with no scheduler: its own LocalCluster, no default client around
    (hats-import looks the client up; before the fix this failed with 'No clients found')."""
    import subprocess
    import sys

    import lsdb

    out = tmp_path / "cli-hats"
    done = subprocess.run([sys.executable, "-m", "colphot.cli", "hats", str(local_run[1]),
                           str(out), "--workers", "1"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert lsdb.open_catalog(out).compute().shape[0] == local_rows.height
