"""Forced-source Parquet: metadata survives pyarrow, polars (hive) and astropy round trips."""

from __future__ import annotations

import json
import warnings

import astropy.units as u
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml
from astropy.table import Table

import colphot
from colphot.config import DEFAULT_RADII, ForcedPhotConfig
from colphot.exceptions import SchemaError
from colphot.measure.aperture import MAX_SINC_RADIUS
from colphot.table.schema import _APERTURE_HOW

PARTITIONS = ("band", "tract", "patch")


def _token(radius: float) -> str:
    whole = int(radius)
    return f"{whole:02d}" if radius == whole else f"{whole:02d}p{str(radius).split('.')[1]}"


@pytest.fixture(scope="module")
def yaml_columns(sim):
    """catalogs/forced_source.yaml read directly, templates expanded for the default radii."""
    with open(sim.repo_root() / "catalogs" / "forced_source.yaml") as f:
        data = yaml.safe_load(f)
    out = {}
    for col in data["columns"]:
        if "{ap}" in col["name"]:
            for r in DEFAULT_RADII:
                sinc = r <= MAX_SINC_RADIUS  # the default method is LSST's sinc
                if col.get("radii") == "sinc" and not sinc:
                    continue
                t = _token(r)
                how, how_err = _APERTURE_HOW["sinc" if sinc else "center"]
                out[col["name"].format(ap=t)] = dict(col, description=col["description"].format(
                    ap=t, radius=f"{r:g}", how=how, how_err=how_err))
        else:
            out[col["name"]] = col
    return data["version"], out


@pytest.fixture(scope="module")
def dataset(sim, tmp_path_factory):
    """Two bands of one patch, plus one uncalibrated tile with no tract/patch."""
    root = tmp_path_factory.mktemp("forced")
    frames, inputs = [], []
    for band, seed, unit, tract, patch in (("g", 1, "nJy", 9813, 42), ("r", 2, "nJy", 9813, 42),
                                          ("i", 3, "count", None, None)):
        s = sim.make_sim_tile(n_side=3, seed=seed, band=band, tract=tract, patch=patch,
                              flux_unit=unit)
        s.tile.uri = f"memory://{band}.fits"
        frames.append(colphot.forced_photometry(s.tile, s.refs))
        inputs.append(s.tile.provenance())
    table = pl.concat(frames)
    written = colphot.write_forced(table, root, inputs=inputs)
    return root, table, inputs, written


def _part(root, band, tract=9813, patch=42):
    t = "__HIVE_DEFAULT_PARTITION__" if tract is None else tract
    p = "__HIVE_DEFAULT_PARTITION__" if patch is None else patch
    return root / f"band={band}" / f"tract={t}" / f"patch={p}" / "part-0.parquet"


def test_written_files(dataset):
    root, _, _, written = dataset
    expected = {str(_part(root, "g")), str(_part(root, "r")),
                str(_part(root, "i", None, None)), str(root / "_common_metadata")}
    assert set(written) == expected
    leftovers = [p for p in root.rglob("*") if p.is_file() and str(p) not in expected]
    assert leftovers == []


def test_pyarrow_field_metadata_units_and_descriptions(dataset, yaml_columns):
    root, table, _, _ = dataset
    _, columns = yaml_columns
    schema = pq.read_schema(_part(root, "g"))
    assert schema.names == [c for c in table.columns if c not in PARTITIONS]
    for field in schema:
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        col = columns[field.name]
        assert meta["description"] == col["description"], field.name
        assert meta.get("unit") == col["unit"], field.name


def test_pyarrow_colphot_key(dataset, yaml_columns):
    root, _, inputs, _ = dataset
    version, _ = yaml_columns
    meta = json.loads(pq.read_schema(_part(root, "r")).metadata[b"colphot"])
    assert meta["colphot_version"] == colphot.__version__
    assert meta["table"] == "forced_source" and meta["schema_version"] == version
    assert ForcedPhotConfig.from_dict(meta["config"]) == ForcedPhotConfig()
    assert meta["config"]["aperture_radii"] == list(DEFAULT_RADII)
    # each file records its own tile's provenance
    assert meta["inputs"] == [json.loads(json.dumps(inputs[1]))]
    assert meta["inputs"][0]["uri"] == "memory://r.fits"
    common = json.loads(pq.read_schema(root / "_common_metadata").metadata[b"colphot"])
    assert len(common["inputs"]) == 3


def test_pyarrow_values(dataset):
    root, table, _, _ = dataset
    got = pl.from_arrow(pq.read_table(_part(root, "g")))
    expected = table.filter(pl.col("band") == "g").drop(PARTITIONS)
    assert got.equals(expected)


def test_polars_open_forced_with_hive_columns(dataset):
    root, table, _, _ = dataset
    lf = colphot.open_forced(root)
    assert isinstance(lf, pl.LazyFrame)
    df = lf.collect()
    assert df.schema["band"] == pl.String and df.schema["tract"] == pl.Int64
    assert df.schema["patch"] == pl.Int64
    assert set(df.columns) == set(table.columns)
    got = df.select(table.columns).sort("band", "objectId")
    assert got.equals(table.sort("band", "objectId"))
    i_rows = df.filter(pl.col("band") == "i")
    assert i_rows.height == 9
    assert i_rows["tract"].null_count() == 9 and i_rows["patch"].null_count() == 9
    # partition pruning on the hive columns
    r_rows = lf.filter((pl.col("band") == "r") & (pl.col("patch") == 42)).select(
        "objectId", "psfFlux").collect()
    assert r_rows.height == 9


def test_astropy_table_sees_units(dataset, yaml_columns):
    root, table, _, _ = dataset
    _, columns = yaml_columns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = Table.read(_part(root, "g"))
    assert len(t) == 9
    assert t["psfFlux"].unit == u.nJy and t["ap04p5FluxErr"].unit == u.nJy
    assert t["coord_ra"].unit == u.deg and t["centroid_x"].unit == u.pix
    assert t["psfMag"].unit == u.ABmag
    assert t["psfFlux_flag"].unit is None
    assert t["gaussianFlux"].description == columns["gaussianFlux"]["description"]
    np.testing.assert_array_equal(np.asarray(t["objectId"]),
                                  table.filter(pl.col("band") == "g")["objectId"].to_numpy())
    # quantities convert through the stored unit
    flux = u.Quantity(t["psfFlux"]).to(u.uJy)
    np.testing.assert_allclose(flux.value, np.asarray(t["psfFlux"]) / 1000.0)


def test_uncalibrated_tile_records_its_unit(dataset):
    root, _, _, _ = dataset
    schema = pq.read_schema(_part(root, "i", None, None))
    assert schema.field("psfFlux").metadata[b"unit"] == b"count"
    assert schema.field("ap03FluxErr").metadata[b"unit"] == b"count"
    assert schema.field("coord_ra").metadata[b"unit"] == b"deg"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = Table.read(_part(root, "i", None, None))
    assert t["psfFlux"].unit == u.count


def test_rewrite_replaces_partition(sim, tmp_path):
    s = sim.make_sim_tile(n_side=2)
    df = colphot.forced_photometry(s.tile, s.refs)
    colphot.write_forced(df, tmp_path, inputs=[s.tile.provenance()])
    colphot.write_forced(df, tmp_path, inputs=[s.tile.provenance()])
    assert colphot.open_forced(tmp_path).collect().height == df.height
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "_common_metadata", "part-0.parquet"]


def test_frame_not_matching_the_definition_is_rejected(sim, tmp_path):
    s = sim.make_sim_tile(n_side=2)
    df = colphot.forced_photometry(s.tile, s.refs)
    with pytest.raises(SchemaError, match=r"missing \['psfFlux'\]"):
        colphot.write_forced(df.drop("psfFlux"), tmp_path)
    with pytest.raises(SchemaError, match=r"unexpected \['extra'\]"):
        colphot.write_forced(df.with_columns(extra=pl.lit(1)), tmp_path)
    cfg = ForcedPhotConfig(plugins=("aperture",), aperture_radii=(5.0,))
    with pytest.raises(SchemaError, match="forced_source.yaml"):
        colphot.write_forced(df, tmp_path, config=cfg)
    assert not any(tmp_path.rglob("*.parquet"))


def test_custom_config_recorded(sim, tmp_path):
    s = sim.make_sim_tile(n_side=2)
    cfg = ForcedPhotConfig(plugins=("aperture",), aperture_radii=(2.5, 7.0),
                           aperture_method="subpixel", subpixels=7)
    df = colphot.forced_photometry(s.tile, s.refs, cfg)
    (part, _) = colphot.write_forced(df, tmp_path, config=cfg)
    schema = pq.read_schema(part)
    meta = json.loads(schema.metadata[b"colphot"])
    assert ForcedPhotConfig.from_dict(meta["config"]) == cfg
    assert "ap02p5Flux" in schema.names and "ap07Flux" in schema.names
    assert schema.field("ap02p5Flux").metadata[b"description"].decode().startswith(
        "Flux in a circular aperture of radius 2.5 pixels, the sum of pixel values weighted by "
        "the fraction of n x n sub-pixel samples")


def test_dataset_of_empty_tiles_opens_empty(sim, tmp_path):
    s = sim.make_sim_tile(n_side=2)
    far = pl.DataFrame({"id": [1], "coord_ra": [10.0], "coord_dec": [-40.0]})
    df = colphot.forced_photometry(s.tile, far)
    assert colphot.write_forced(df, tmp_path) == [str(tmp_path / "_common_metadata")]
    got = colphot.open_forced(tmp_path).collect()
    assert got.height == 0 and set(got.columns) == set(df.columns)
    assert {c: got.schema[c] for c in df.columns} == dict(df.schema)


def test_open_forced_names_a_root_without_a_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Parquet parts and no _common_metadata"):
        colphot.open_forced(tmp_path)
