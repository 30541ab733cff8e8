"""Pixel flags: mask bits in the footprint (a circle, or the heavy footprint) and the 3 x 3
centre, LSST's rules and Rubin's column names (rule-by-rule tests: test_pixel_flags_lsst.py)."""

from __future__ import annotations

import numpy as np
import pytest

import colphot
from colphot.config import ForcedPhotConfig
from colphot.measure.pixel_flags import PIXEL_FLAGS, pixel_flag_columns

PLANES = {"BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "EDGE": 4, "DETECTED": 5, "SUSPECT": 7,
          "NO_DATA": 8}
SHAPE = (60, 70)
RADIUS = 5.0


def _flags(mask, x, y, radius=RADIUS, planes=PLANES):
    return pixel_flag_columns(mask, planes, np.atleast_1d(np.asarray(x, float)),
                              np.atleast_1d(np.asarray(y, float)), radius=radius,
                              extra_planes=())


def test_flags_are_circle_and_centre_ors():
    rng = np.random.default_rng(3)
    mask = (rng.random(SHAPE) < 0.02).astype(np.uint32) << rng.integers(0, 9, SHAPE).astype(
        np.uint32)
    x = rng.uniform(-0.5, SHAPE[1] - 0.5, 200)
    y = rng.uniform(-0.5, SHAPE[0] - 0.5, 200)
    flags = _flags(mask, x, y)
    assert not flags["pixelFlags_offimage"].any()
    jj, ii = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    for i in range(x.size):
        xi, yi = int(np.floor(x[i] + 0.5)), int(np.floor(y[i] + 0.5))
        foot = np.bitwise_or.reduce(mask[(ii - x[i]) ** 2 + (jj - y[i]) ** 2 <= RADIUS ** 2])
        centre = mask[max(yi - 1, 0):yi + 2, max(xi - 1, 0):xi + 2]
        bits = {"footprint": foot, "center": np.bitwise_or.reduce(centre, axis=None),
                "centerAll": np.bitwise_and.reduce(centre, axis=None)}
        for suffix, plane, where in PIXEL_FLAGS:
            assert flags[f"pixelFlags_{suffix}"][i] == bool(bits[where] & (1 << PLANES[plane]))


PLANE_COLUMNS = {}
for _suffix, _plane, _where in PIXEL_FLAGS:
    PLANE_COLUMNS.setdefault(_plane, []).append((_suffix, _where))


@pytest.mark.parametrize("plane", ["SAT", "NO_DATA", "BAD", "INTRP", "CR", "SUSPECT"])
@pytest.mark.parametrize("offset, expect_foot, expect_centre",
                         [(0, True, True), (1, True, True), (2, True, False),
                          (5, True, False), (6, False, False)])
def test_plane_under_source_sets_its_columns(plane, offset, expect_foot, expect_centre):
    mask = np.zeros(SHAPE, dtype=np.uint32)
    mask[30, 35 + offset] = 1 << PLANES[plane]  # 4.8 px from the centroid at offset 5
    flags = _flags(mask, 35.2, 29.9)
    expected = {f"pixelFlags_{s}": {"footprint": expect_foot, "center": expect_centre,
                                    "centerAll": False}[w]
                for s, w in PLANE_COLUMNS[plane]}
    for suffix, _, _ in PIXEL_FLAGS:
        col = f"pixelFlags_{suffix}"
        assert flags[col][0] == expected.get(col, False), col
    # LSST: NO_DATA sets nodata only, never edge
    assert not flags["pixelFlags_edge"][0]
    assert not flags["pixelFlags_offimage"][0]


def test_edge_plane_and_offimage():
    mask = np.zeros(SHAPE, dtype=np.uint32)
    mask[10, 12] = 1 << PLANES["EDGE"]
    flags = _flags(mask, [10.0, 40.0, -0.6, 69.5, 20.0], [10.0, 40.0, 20.0, 20.0, np.nan])
    np.testing.assert_array_equal(flags["pixelFlags_edge"], [True, False, True, True, True])
    np.testing.assert_array_equal(flags["pixelFlags_offimage"],
                                  [False, False, True, True, True])
    np.testing.assert_array_equal(flags["pixelFlags"], [False, False, False, False, True])


def test_planes_the_tile_does_not_define_are_false():
    mask = np.full(SHAPE, 0xFFFF, dtype=np.uint32)
    flags = _flags(mask, 30.0, 30.0, planes={"SAT": 1})
    assert flags["pixelFlags_saturated"][0] and flags["pixelFlags_saturatedCenter"][0]
    assert flags["pixelFlags_saturatedCenterAll"][0]
    for suffix, plane, _ in PIXEL_FLAGS:
        if plane != "SAT":
            assert not flags[f"pixelFlags_{suffix}"][0], suffix


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="x, y"):
        pixel_flag_columns(np.zeros(SHAPE, dtype=np.uint32), PLANES, np.array([1.0, 2.0]),
                           np.array([1.0]), radius=2.0)


def test_forced_flags_on_sat_nodata_and_edge_sources(sim):
    """Forced photometry: SAT and NO_DATA under sources, sources on the tile border."""
    s = sim.make_sim_tile(n_side=4, spacing=50, margin=40)
    tile = s.tile
    x, y = s.x, s.y
    xi, yi = np.floor(x + 0.5).astype(int), np.floor(y + 0.5).astype(int)
    tile.mask[yi[0], xi[0]] |= 1 << PLANES["SAT"]                # centre of source 0
    # footprint of source 1: <= 2.92 px from the centroid, outside its 3 x 3 centre
    tile.mask[yi[1] + 2, xi[1] - 1] |= 1 << PLANES["SAT"]
    tile.mask[yi[2] - 2:yi[2] + 3, xi[2] - 2:xi[2] + 3] |= 1 << PLANES["NO_DATA"]
    tile.image[yi[2] - 2:yi[2] + 3, xi[2] - 2:xi[2] + 3] = np.nan
    ny, nx = tile.shape
    edge_x = np.array([0.2, nx - 1.0, 60.0])
    edge_y = np.array([60.0, 100.0, ny - 8.0])
    refs = s.refs.vstack(sim.refs_at(tile.wcs, edge_x, edge_y, first_id=10_000))
    df = colphot.forced_photometry(tile, refs)
    sat = df["pixelFlags_saturated"].to_numpy()
    sat_c = df["pixelFlags_saturatedCenter"].to_numpy()
    nodata = df["pixelFlags_nodata"].to_numpy()
    edge = df["pixelFlags_edge"].to_numpy()
    np.testing.assert_array_equal(np.nonzero(sat)[0], [0, 1])
    np.testing.assert_array_equal(np.nonzero(sat_c)[0], [0])
    np.testing.assert_array_equal(np.nonzero(nodata)[0], [2])
    # LSST: neither NO_DATA nor a footprint leaving the tile sets edge (only EDGE, offimage)
    assert not edge.any()
    assert not df["pixelFlags_offimage"].any()
    # NO_DATA pixels are in the PSF fit unless psf_bad_mask_planes names them (LSST: none)
    excluded = "NO_DATA" in ForcedPhotConfig().psf_bad_mask_planes
    assert df["psfFlux_npixels"][2] == 41 * 41 - 25 * excluded
    # the NaN pixels make every aperture of source 2 NaN, as in LSST (no masking)
    assert np.isnan(df["ap03Flux"][2])
