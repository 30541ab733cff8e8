"""Reference identity and flags carried to the forced table, as LSST's forced measurement does.

- ForcedTransformedCentroid copies the reference's ``slot_Centroid_flag`` to ``centroid_flag``;
  every algorithm that reads the centroid (meas_base's SafeCentroidExtractor) then sets its
  general failure flag when that flag is set, and still measures at the centroid.
- SafeShapeExtractor: a usable shape whose ``slot_Shape_flag`` is set sets the general flag of
  the algorithm reading it (GaussianFlux).
- ``refBand``, ``detect_isPrimary`` and ``deblend_nChild`` are the reference catalog's (the
  Object table's), so that users can de-duplicate patch overlaps and blend families.
"""

from __future__ import annotations

import numpy as np
import polars as pl

import colphot
from colphot import ForcedPhotConfig


def test_reference_centroid_and_shape_flags(sim_tile):
    refs = sim_tile.refs
    n = refs.height
    rng = np.random.default_rng(2)
    bad_centroid = rng.random(n) < 0.3
    bad_shape = rng.random(n) < 0.3
    flagged = refs.with_columns(
        centroid_flag=pl.Series(bad_centroid), shape_flag=pl.Series(bad_shape),
        shape_xx=pl.lit(3.0), shape_yy=pl.lit(3.0), shape_xy=pl.lit(0.0))
    clean = flagged.drop("centroid_flag", "shape_flag")
    config = ForcedPhotConfig(apply_ap_corr=False)
    a = colphot.forced_photometry(sim_tile.tile, clean, config)
    b = colphot.forced_photometry(sim_tile.tile, flagged, config)
    # the measurements themselves are unchanged: the centroid is still used
    for col in ("psfFlux", "ap09Flux", "gaussianFlux", "localBackground_instFlux"):
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy())
    assert not a["centroid_flag"].any()
    np.testing.assert_array_equal(b["centroid_flag"].to_numpy(), bad_centroid)
    for flag in ("psfFlux_flag", "localBackground_flag", "ap03Flux_flag", "ap70Flux_flag"):
        np.testing.assert_array_equal(b[flag].to_numpy(), a[flag].to_numpy() | bad_centroid)
    # PixelFlags reads the centroid without SafeCentroidExtractor: its flag is untouched
    np.testing.assert_array_equal(b["pixelFlags"].to_numpy(), a["pixelFlags"].to_numpy())
    np.testing.assert_array_equal(b["gaussianFlux_flag"].to_numpy(),
                                  a["gaussianFlux_flag"].to_numpy() | bad_centroid | bad_shape)
    # the specific flags say what the measurement itself met, not the reference
    np.testing.assert_array_equal(b["psfFlux_flag_edge"].to_numpy(),
                                  a["psfFlux_flag_edge"].to_numpy())


def test_identity_columns_carried(sim_tile):
    refs = sim_tile.refs
    n = refs.height
    ids = refs["id"].to_numpy()
    parent = np.zeros(n, dtype=np.int64)
    parent[1:4] = ids[0]          # the first object has three children
    parent[5] = ids[4]            # the fifth one child
    given = refs.with_columns(
        parent=pl.Series(parent), refBand=pl.Series(["i" if k % 2 else "r" for k in range(n)]),
        detect_isPrimary=pl.Series(np.arange(n) % 3 != 0),
        deblend_nChild=pl.Series(np.arange(n) % 4, dtype=pl.Int16))
    got = colphot.forced_photometry(sim_tile.tile, given).sort("objectId")
    want = given.sort("id")
    assert got["refBand"].to_list() == want["refBand"].to_list()
    assert got["detect_isPrimary"].to_list() == want["detect_isPrimary"].to_list()
    assert got["deblend_nChild"].dtype == pl.Int32
    assert got["deblend_nChild"].to_list() == want["deblend_nChild"].to_list()

    # without those columns: empty refBand (astropy cannot read null strings), null
    # detect_isPrimary, children counted from parent
    bare = colphot.forced_photometry(sim_tile.tile, refs.with_columns(parent=pl.Series(parent)))
    bare = bare.sort("objectId")
    assert bare["refBand"].to_list() == [""] * n
    assert bare["detect_isPrimary"].null_count() == n
    counts = {int(i): int((parent == i).sum()) for i in ids}
    assert bare["deblend_nChild"].to_list() == [counts[int(i)] for i in bare["objectId"]]
    assert bare.filter(pl.col("objectId") == ids[0])["deblend_nChild"][0] == 3
