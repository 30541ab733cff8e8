"""catalogs/*.yaml <-> code: the produced columns and the algorithms' flag tables agree with the
table definitions, both ways."""

from __future__ import annotations

import astropy.units as u
import polars as pl
import pytest
import yaml

import colphot
from colphot.config import ALGORITHMS, DEFAULT_RADII, UNDEBLENDED
from colphot.measure import aperture, gaussian_flux, local_background, psf_flux
from colphot.measure.aperture import MAX_SINC_RADIUS
from colphot.measure.pixel_flags import pixel_flag_names

POLARS = {"int64": pl.Int64, "int32": pl.Int32, "float64": pl.Float64, "float32": pl.Float32,
          "bool": pl.Boolean, "str": pl.String}

#: measure module -> (producer name in the YAML, column prefix)
FLAG_TABLES = {
    psf_flux: ("psf_flux", "psfFlux"),
    aperture: ("aperture", "ap{ap}Flux"),
    gaussian_flux: ("gaussian_flux", "gaussianFlux"),
    local_background: ("local_background", "localBackground"),
}


def _load(sim, name):
    with open(sim.repo_root() / "catalogs" / f"{name}.yaml") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def forced_yaml(sim):
    return _load(sim, "forced_source")


def _token(radius):
    whole = int(radius)
    return f"{whole:02d}" if radius == whole else f"{whole:02d}p{str(radius).split('.')[1]}"


def _expanded(columns):
    """The columns of the default config: {ap} for every radius, the `radii: sinc` ones for
    the radii up to LSST's maxSincRadius (the default method is sinc)."""
    out = []
    for col in columns:
        if "{ap}" in col["name"]:
            radii = [r for r in DEFAULT_RADII
                     if col.get("radii") != "sinc" or r <= MAX_SINC_RADIUS]
            out += [dict(col, name=col["name"].format(ap=_token(r))) for r in radii]
        else:
            out.append(col)
    return out


def _whole_tile_in_band(tile, refs):
    """An in-band catalog giving every reference the whole tile as its isolated footprint."""
    ny, nx = tile.shape
    n = refs.height
    return pl.DataFrame({
        "id": refs["id"], "band": tile.band, "tract": tile.tract, "patch": tile.patch,
        "parent": 0, "footprint_x0": tile.xy0[0], "footprint_y0": tile.xy0[1],
        "footprint_width": pl.Series([nx] * n, dtype=pl.Int32),
        "footprint_height": pl.Series([ny] * n, dtype=pl.Int32),
        "footprint_mask": pl.Series([[True] * (nx * ny)] * n),
        "footprint_flux": pl.Series([None] * n, dtype=pl.List(pl.Float32)),
    })


@pytest.mark.parametrize("deblended", [False, True], ids=["plain", "deblended"])
def test_every_produced_column_is_declared_both_ways(sim, forced_yaml, deblended):
    s = sim.make_sim_tile(n_side=2)
    if deblended:
        config = colphot.ForcedPhotConfig(undeblended_plugins=("psf_flux", "aperture"))
        df = colphot.forced_photometry(s.tile, s.refs, config,
                                       in_band=_whole_tile_in_band(s.tile, s.refs))
    else:
        df = colphot.forced_photometry(s.tile, s.refs)
    declared = [c for c in _expanded(forced_yaml["columns"])
                if deblended or not c["producer"].startswith("undeblended_")]
    assert df.columns == [c["name"] for c in declared]
    for col in declared:
        assert df.schema[col["name"]] == POLARS[col["dtype"]], col["name"]
        assert "unit" in col, col["name"]
        assert isinstance(col["description"], str) and len(col["description"]) > 10
    assert "ap04p5Flux" in df.columns and "ap70FluxErr" in df.columns
    assert ("undeblended_ap70FluxErr" in df.columns) == deblended


def test_units_parse_and_flags_are_dimensionless_bools(forced_yaml):
    for col in forced_yaml["columns"]:
        if col["unit"] is not None:
            u.Unit(col["unit"])
        if "_flag" in col["name"]:
            assert col["dtype"] == "bool" and col["unit"] is None, col["name"]


def test_producers_are_known_algorithms(forced_yaml):
    producers = {c["producer"] for c in forced_yaml["columns"]}
    assert producers == {"identity", *ALGORITHMS, *(f"undeblended_{a}" for a in UNDEBLENDED),
                         "psf_flux_ap_corr", "gaussian_flux_ap_corr"}
    for col in forced_yaml["columns"]:
        if col["producer"].startswith("undeblended_"):
            plain = col["name"].removeprefix("undeblended_")
            assert plain in {c["name"] for c in forced_yaml["columns"]}, col["name"]
    assert forced_yaml["partition_by"] == ["band", "tract", "patch"]


@pytest.mark.parametrize("module", list(FLAG_TABLES), ids=lambda m: m.__name__)
def test_flag_tables_match_yaml_flag_columns(forced_yaml, module):
    producer, prefix = FLAG_TABLES[module]
    flags = module.FLAGS
    bits = [b for b, _, _ in flags]
    assert bits == list(range(len(flags)))
    assert flags[0][1] == "flag"
    assert all(desc for _, _, desc in flags)
    from_code = {f"{prefix}_{name}" for _, name, _ in flags}
    from_yaml = {c["name"] for c in forced_yaml["columns"]
                 if c["producer"] == producer and "_flag" in c["name"]}
    assert from_code == from_yaml


def test_pixel_flag_table_matches_yaml(forced_yaml):
    from_yaml = [c["name"] for c in forced_yaml["columns"] if c["producer"] == "pixel_flags"]
    assert from_yaml == pixel_flag_names()


def test_reference_definition(sim):
    ref = _load(sim, "reference")
    names = [c["name"] for c in ref["columns"]]
    assert len(names) == len(set(names))
    for col in ref["columns"]:
        assert set(col) >= {"name", "dtype", "unit", "required", "description"}
        assert col["dtype"] in POLARS
        if col["unit"] is not None:
            u.Unit(col["unit"])
    assert {c["name"]: c["unit"] for c in ref["columns"]}["coord_ra"] == "deg"


def test_in_band_definition(sim):
    from colphot._catalogs import polars_dtype

    ib = _load(sim, "in_band")
    names = [c["name"] for c in ib["columns"]]
    assert len(names) == len(set(names))
    assert {"id", "band", "tract", "patch", "parent", "footprint_x0", "footprint_y0",
            "footprint_width", "footprint_height", "footprint_mask", "footprint_flux"} == set(names)
    for col in ib["columns"]:
        assert set(col) >= {"name", "dtype", "unit", "required", "description"}
        polars_dtype(col["dtype"])
        if col["unit"] is not None:
            u.Unit(col["unit"])
    assert polars_dtype("list[float32]") == pl.List(pl.Float32)
