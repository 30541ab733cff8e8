"""Outputs cannot mix: one dataset holds one measurement, and a corrupt part is named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import colphot
from colphot.config import ForcedPhotConfig
from colphot.exceptions import OutputMismatchError, SchemaError
from colphot.parquet.metadata import PACKAGES, read_colphot_metadata


@pytest.fixture()
def measured(sim):
    s = sim.make_sim_tile(n_side=3)
    return s.tile, colphot.forced_photometry(s.tile, s.refs), s


def test_write_into_another_configuration_refuses_then_clobbers(measured, tmp_path):
    tile, df, s = measured
    colphot.write_forced(df, tmp_path, inputs=[tile.provenance()])
    before = sorted(p.read_bytes() for p in tmp_path.rglob("*.parquet"))
    other = ForcedPhotConfig(aperture_radii=(3.0, 6.0))
    df2 = colphot.forced_photometry(tile, s.refs, other)
    with pytest.raises(OutputMismatchError, match=r"_common_metadata: .*another measurement "
                       r"\(differs in \['config.aperture_radii', 'columns'\]\).*--clobber"):
        colphot.write_forced(df2, tmp_path, config=other)
    assert sorted(p.read_bytes() for p in tmp_path.rglob("*.parquet")) == before
    colphot.write_forced(df2, tmp_path, config=other, overwrite=True)
    out = colphot.open_forced(tmp_path).collect()
    assert "ap12Flux" not in out.columns and out.height == df2.height
    # the same configuration again: no complaint
    colphot.write_forced(df2, tmp_path, config=other)


def test_versions_recorded(measured, tmp_path):
    tile, df, _ = measured
    written = colphot.write_forced(df, tmp_path, inputs=[tile.provenance()])
    info = read_colphot_metadata(pq.read_schema(written[0]))
    assert set(info["versions"]) == set(PACKAGES)
    assert info["versions"]["numpy"] and info["colphot_version"] == colphot.__version__


def test_corrupt_or_mixed_parts_are_named_by_open_forced(measured, tmp_path):
    tile, df, s = measured
    written = colphot.write_forced(df, tmp_path / "a", inputs=[tile.provenance()])
    part = Path(written[0])
    part.write_bytes(part.read_bytes()[:-200])
    with pytest.raises(SchemaError, match=rf"{part}: not a readable Parquet part"):
        colphot.open_forced(tmp_path / "a")
    # parts of two configurations put side by side by hand
    colphot.write_forced(df, tmp_path / "b", inputs=[tile.provenance()])
    other = ForcedPhotConfig(aperture_radii=(3.0, 6.0))
    moved = colphot.forced_photometry(tile.__class__(**{**tile.__dict__, "patch": 43}), s.refs,
                                      other)
    colphot.write_forced(moved, tmp_path / "c", config=other)
    shutil.copytree(tmp_path / "c" / "band=r" / "tract=9813" / "patch=43",
                    tmp_path / "b" / "band=r" / "tract=9813" / "patch=43")
    with pytest.raises(SchemaError, match=r"different measurements.*config.aperture_radii"):
        colphot.open_forced(tmp_path / "b")
