"""``colphot demo`` end to end: the survey is made, measured and summarised against its truth."""

from __future__ import annotations

import polars as pl
import pytest

import colphot
from colphot.cli import main
from colphot.sim.demo import blend_summary, truth_summary
from colphot.table.forced import unflagged_nans


@pytest.mark.slow
def test_demo_measures_every_tile_and_recovers_isolated_stars(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "measured 12 tiles" in printed and "isolated_stars" in printed
    assert "blended stars, deblended psfFlux and undeblended_psfFlux" in printed

    measured = colphot.open_forced(tmp_path / "forced").collect()
    # every NaN value has its flag set (apertures over NO_DATA included)
    assert unflagged_nans(measured) == {}
    assert measured["ap12Flux_flag_noData"].sum() > 0
    truth = pl.read_parquet(tmp_path / "survey" / "truth.parquet")
    # every reference object on a tile is measured in every band, once per tile
    assert measured.select("band", "tract", "patch", "objectId").is_duplicated().sum() == 0
    assert set(measured["band"].unique()) == {"g", "r", "i"}
    summary = truth_summary(measured, truth)
    for row in summary.iter_rows(named=True):
        assert row["isolated_stars"] > 200, row
        assert abs(row["median_psfFlux_over_true"] - 1) < 0.003, row
        assert 0.85 < row["pull_sigma"] < 1.2, row
    # crowded stars are biased bright by their neighbours' light: the isolation cut matters
    crowded = truth_summary(measured, truth, isolation=-1.0)
    assert (crowded["isolated_stars"] > summary["isolated_stars"]).all()
    # blended stars: deblended fluxes unbiased, the undeblended copies carry the neighbours
    blends = blend_summary(measured, truth)
    assert blends.height == 9
    for row in blends.iter_rows(named=True):
        assert row["blended_stars"] > 40, row
        assert abs(row["deblended_median"] - 1) < 0.005, row
        assert row["deblended_pull"] < 1.15, row
        if row["neighbour_ratio"] != "<= 1":
            assert row["undeblended_median"] - 1 > 5 * abs(row["deblended_median"] - 1), row
            assert row["undeblended_pull"] > 1.5 * row["deblended_pull"], row
