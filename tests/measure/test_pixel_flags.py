"""Pixel flags: mask bits in the footprint box and the 3 x 3 centre, LSST column names."""

from __future__ import annotations

import numpy as np
import pytest

import colphot
from colphot.measure.pixel_flags import PIXEL_FLAGS, gather_mask_bits, pixel_flags

PLANES = {"BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "EDGE": 4, "DETECTED": 5, "SUSPECT": 7,
          "NO_DATA": 8}
SHAPE = (60, 70)
HALF = 5


def _flags(mask, x, y, half=HALF, planes=PLANES):
    foot, cent, off = gather_mask_bits(mask, np.atleast_1d(np.asarray(x, float)),
                                       np.atleast_1d(np.asarray(y, float)), half)
    return pixel_flags(foot, cent, off, planes)


def test_gathered_bits_are_box_ors():
    rng = np.random.default_rng(3)
    mask = (rng.random(SHAPE) < 0.02).astype(np.uint32) << rng.integers(0, 9, SHAPE).astype(
        np.uint32)
    x = rng.uniform(-0.5, SHAPE[1] - 0.5, 200)
    y = rng.uniform(-0.5, SHAPE[0] - 0.5, 200)
    foot, cent, off = gather_mask_bits(mask, x, y, HALF)
    assert not off.any()
    for i in range(x.size):
        xi, yi = int(np.floor(x[i] + 0.5)), int(np.floor(y[i] + 0.5))
        box = mask[max(yi - HALF, 0):yi + HALF + 1, max(xi - HALF, 0):xi + HALF + 1]
        centre = mask[max(yi - 1, 0):yi + 2, max(xi - 1, 0):xi + 2]
        assert foot[i] == np.bitwise_or.reduce(box, axis=None)
        assert cent[i] == np.bitwise_or.reduce(centre, axis=None)


PLANE_COLUMNS = {}
for _suffix, _names, _where in PIXEL_FLAGS:
    for _name in _names:
        PLANE_COLUMNS.setdefault(_name, []).append((_suffix, _where))


@pytest.mark.parametrize("plane", ["SAT", "NO_DATA", "BAD", "INTRP", "CR", "SUSPECT"])
@pytest.mark.parametrize("offset, expect_foot, expect_centre",
                         [(0, True, True), (1, True, True), (2, True, False),
                          (HALF, True, False), (HALF + 1, False, False)])
def test_plane_under_source_sets_its_columns(plane, offset, expect_foot, expect_centre):
    mask = np.zeros(SHAPE, dtype=np.uint32)
    mask[30, 35 + offset] = 1 << PLANES[plane]
    flags = _flags(mask, 35.2, 29.9)
    expected = {f"pixelFlags_{s}": (expect_foot if w == "footprint" else expect_centre)
                for s, w in PLANE_COLUMNS[plane]}
    for suffix, _, _ in PIXEL_FLAGS:
        col = f"pixelFlags_{suffix}"
        assert flags[col][0] == expected.get(col, False), col
    assert flags["pixelFlags_edge"][0] == (plane == "NO_DATA" and expect_foot)
    assert not flags["pixelFlags_offimage"][0]


def test_edge_plane_and_offimage():
    mask = np.zeros(SHAPE, dtype=np.uint32)
    mask[10, 12] = 1 << PLANES["EDGE"]
    flags = _flags(mask, [10.0, 40.0, -0.6, 69.5, 20.0], [10.0, 40.0, 20.0, 20.0, np.nan])
    np.testing.assert_array_equal(flags["pixelFlags_edge"], [True, False, True, True, True])
    np.testing.assert_array_equal(flags["pixelFlags_offimage"],
                                  [False, False, True, True, True])


def test_planes_the_tile_does_not_define_are_false():
    mask = np.full(SHAPE, 0xFFFF, dtype=np.uint32)
    flags = _flags(mask, 30.0, 30.0, planes={"SAT": 1})
    assert flags["pixelFlags_saturated"][0] and flags["pixelFlags_saturatedCenter"][0]
    for suffix, names, _ in PIXEL_FLAGS:
        if names != ("SAT",):
            assert not flags[f"pixelFlags_{suffix}"][0], suffix


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="x, y"):
        gather_mask_bits(np.zeros(SHAPE, dtype=np.uint32), np.array([1.0, 2.0]),
                         np.array([1.0]), 2)


def test_forced_flags_on_sat_nodata_and_edge_sources(sim):
    """Forced photometry: SAT and NO_DATA under sources, sources on the tile border."""
    s = sim.make_sim_tile(n_side=4, spacing=50, margin=40)
    tile = s.tile
    x, y = s.x, s.y
    xi, yi = np.floor(x + 0.5).astype(int), np.floor(y + 0.5).astype(int)
    tile.mask[yi[0], xi[0]] |= 1 << PLANES["SAT"]                # centre of source 0
    tile.mask[yi[1] + 8, xi[1] - 3] |= 1 << PLANES["SAT"]        # footprint of source 1
    tile.mask[yi[2] - 2:yi[2] + 3, xi[2] - 2:xi[2] + 3] |= 1 << PLANES["NO_DATA"]
    tile.image[yi[2] - 2:yi[2] + 3, xi[2] - 2:xi[2] + 3] = np.nan
    ny, nx = tile.shape
    edge_x = np.array([0.2, nx - 1.0, 60.0])
    edge_y = np.array([60.0, 100.0, ny - 8.0])
    refs = s.refs.vstack(sim.refs_at(tile.wcs, edge_x, edge_y, first_id=10_000))
    df = colphot.forced_photometry(tile, refs)
    n = x.size
    sat = df["pixelFlags_saturated"].to_numpy()
    sat_c = df["pixelFlags_saturatedCenter"].to_numpy()
    nodata = df["pixelFlags_nodata"].to_numpy()
    edge = df["pixelFlags_edge"].to_numpy()
    np.testing.assert_array_equal(np.nonzero(sat)[0], [0, 1])
    np.testing.assert_array_equal(np.nonzero(sat_c)[0], [0])
    np.testing.assert_array_equal(np.nonzero(nodata)[0], [2])
    # NO_DATA in the footprint and the three sources whose footprint leaves the tile
    np.testing.assert_array_equal(np.nonzero(edge)[0], [2, n, n + 1, n + 2])
    assert not df["pixelFlags_offimage"].any()
    # NO_DATA pixels are excluded from the PSF fit (default psf_bad_mask_planes)
    assert df["psfFlux_npixels"][2] == 41 * 41 - 25 and np.isfinite(df["psfFlux"][2])
    # the NaN pixels make every aperture of source 2 NaN, as in LSST (no masking)
    assert np.isnan(df["ap03Flux"][2])
