"""Pixel flags against meas_base's PixelFlagsAlgorithm (src/PixelFlags.cc), rule by rule.

The truth is written here from LSST's definition, with hand-made masks:

* footprint flags: OR of the mask over the footprint clipped to the image (the heavy
  footprint's pixels, else the pixels whose centres are within ``radius`` of the centroid);
* ``...Center`` / ``...CenterAll``: OR / AND over the 3 x 3 box at ``floor(c + 0.5)``, clipped
  to the image (AND over no pixel is all ones);
* offimage: not ``Box2D(bbox).contains(c)``, i.e. not ``-0.5 <= c < n - 0.5``; it sets
  edge, edgeCenter, edgeCenterAll;
* non-finite centroid: the general flag, footprint flags, no centre flags.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colphot.measure.footprints import Footprints, clip_footprints
from colphot.measure.pixel_flags import (
    COADD_PLANES,
    PIXEL_FLAGS,
    pixel_flag_columns,
    pixel_flag_names,
    pixel_flag_table,
)

PLANES = {"BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "EDGE": 4, "DETECTED": 5, "SUSPECT": 7,
          "NO_DATA": 8, "CLIPPED": 9, "SENSOR_EDGE": 10, "REJECTED": 11, "INEXACT_PSF": 12}
SHAPE = (40, 50)  # ny, nx
SAT = 1 << PLANES["SAT"]

#: LSST's seven planes and their field names, in the order PixelFlagsAlgorithm adds them.
LSST_PLANES = [("EDGE", "edge"), ("NO_DATA", "nodata"), ("INTRP", "interpolated"),
               ("SAT", "saturated"), ("CR", "cr"), ("BAD", "bad"), ("SUSPECT", "suspect")]

#: base_PixelFlags_flag* -> Rubin's pixelFlags*, ForcedPhotCoaddConfig's extra planes.
EXPECTED_NAMES = (
    ["pixelFlags", "pixelFlags_offimage"]
    + [f"pixelFlags_{s}" for s in ("edge", "nodata", "interpolated", "saturated", "cr", "bad",
                                   "suspect")]
    + [f"pixelFlags_{s}Center" for s in ("edge", "nodata", "interpolated", "saturated", "cr",
                                         "bad", "suspect")]
    + [f"pixelFlags_{s}CenterAll" for s in ("edge", "nodata", "interpolated", "saturated", "cr",
                                            "bad", "suspect")]
    + ["pixelFlags_clippedCenter", "pixelFlags_sensor_edgeCenter", "pixelFlags_rejectedCenter",
       "pixelFlags_inexact_psfCenter", "pixelFlags_clippedCenterAll",
       "pixelFlags_sensor_edgeCenterAll", "pixelFlags_rejectedCenterAll",
       "pixelFlags_inexact_psfCenterAll", "pixelFlags_clipped", "pixelFlags_sensor_edge",
       "pixelFlags_rejected", "pixelFlags_inexact_psf"]
)


def _run(mask, x, y, radius=4.0, planes=PLANES, **kw):
    return pixel_flag_columns(mask, planes, np.atleast_1d(np.asarray(x, float)),
                              np.atleast_1d(np.asarray(y, float)), radius=radius, **kw)


def _true(flags, i=0):
    """Names of the columns set for source ``i``."""
    return {k for k, v in flags.items() if v[i]}


def _zeros():
    return np.zeros(SHAPE, dtype=np.uint32)


# --------------------------------------------------------------------------------------------
# columns


def test_column_names_follow_lsst_schema_order():
    assert pixel_flag_names() == EXPECTED_NAMES
    assert pixel_flag_names(COADD_PLANES) == EXPECTED_NAMES
    assert pixel_flag_names(()) == EXPECTED_NAMES[:23]
    flags = _run(_zeros(), 20.0, 20.0)
    assert list(flags) == EXPECTED_NAMES
    assert all(v.dtype == np.bool_ and v.shape == (1,) for v in flags.values())
    assert not any(v[0] for v in flags.values())


def test_flag_table_lists_plane_and_region():
    assert len(PIXEL_FLAGS) == 21
    for (plane, name), k in zip(LSST_PLANES, range(7), strict=True):
        assert PIXEL_FLAGS[k] == (name, plane, "footprint")
        assert PIXEL_FLAGS[7 + k] == (name + "Center", plane, "center")
        assert PIXEL_FLAGS[14 + k] == (name + "CenterAll", plane, "centerAll")
    assert pixel_flag_table(("STREAK",))[21:] == (
        ("streakCenter", "STREAK", "center"), ("streakCenterAll", "STREAK", "centerAll"),
        ("streak", "STREAK", "footprint"))


# --------------------------------------------------------------------------------------------
# the circular footprint


def test_sat_15_px_away_is_not_in_a_radius_4_footprint():
    mask = _zeros()
    mask[20, 35] = SAT
    assert _true(_run(mask, 20.0, 20.0, radius=4.0)) == set()


def test_sat_inside_the_circle_sets_saturated_only():
    mask = _zeros()
    mask[20, 23] = SAT  # 3 px away: in the circle, outside the 3 x 3 centre
    assert _true(_run(mask, 20.0, 20.0, radius=4.0)) == {"pixelFlags_saturated"}


def test_pixel_just_outside_the_circle_is_not_in_it():
    x, y = 20.3, 20.0
    mask = _zeros()
    mask[23, 23] = SAT  # dx = 2.7, dy = 3: d^2 = 16.29 > 16
    assert _true(_run(mask, x, y, radius=4.0)) == set()
    mask[22, 23] = SAT  # dx = 2.7, dy = 2: d^2 = 11.29
    assert _true(_run(mask, x, y, radius=4.0)) == {"pixelFlags_saturated"}


def test_pixel_centre_on_the_circle_is_in_it():
    mask = _zeros()
    mask[24, 23] = SAT  # (3, 4) from (20, 20): d = 5 exactly
    assert _true(_run(mask, 20.0, 20.0, radius=5.0)) == {"pixelFlags_saturated"}
    assert _true(_run(mask, 20.0, 20.0, radius=4.999)) == set()


def test_radius_per_source():
    mask = _zeros()
    mask[20, 26] = SAT
    flags = _run(mask, [20.0, 20.0, 20.0], [20.0, 20.0, 20.0], radius=np.array([5.9, 6.0,
                                                                                 np.nan]))
    np.testing.assert_array_equal(flags["pixelFlags_saturated"], [False, True, False])


def test_footprint_is_clipped_to_the_image_and_border_crossing_sets_no_edge():
    mask = _zeros()
    mask[0, 0] = SAT
    flags = _run(mask, [3.0, 48.5], [3.0, 38.0], radius=10.0)
    assert _true(flags, 0) == {"pixelFlags_saturated"}
    assert _true(flags, 1) == set()


# --------------------------------------------------------------------------------------------
# the 3 x 3 centre


def test_center_any_and_all():
    mask = _zeros()
    mask[21, 19] = SAT
    one = _run(mask, 20.0, 20.0)
    assert _true(one) == {"pixelFlags_saturated", "pixelFlags_saturatedCenter"}
    mask[19:22, 19:22] = SAT
    nine = _run(mask, 20.0, 20.0)
    assert _true(nine) == {"pixelFlags_saturated", "pixelFlags_saturatedCenter",
                           "pixelFlags_saturatedCenterAll"}
    mask[19, 19] = 0  # eight of nine
    assert "pixelFlags_saturatedCenterAll" not in _true(_run(mask, 20.0, 20.0))


def test_center_all_needs_the_plane_on_every_pixel_not_any_bit():
    mask = _zeros()
    mask[19:22, 19:22] = SAT
    mask[20, 20] = 1 << PLANES["CR"]  # the middle pixel has a bit, but not SAT
    flags = _run(mask, 20.0, 20.0)
    assert flags["pixelFlags_saturatedCenter"][0] and flags["pixelFlags_crCenter"][0]
    assert not flags["pixelFlags_saturatedCenterAll"][0]
    assert not flags["pixelFlags_crCenterAll"][0]


def test_center_box_is_at_position_to_index():
    mask = _zeros()
    mask[20, 12] = SAT
    # floor(10.5 + 0.5) = 11: columns 10..12; floor(10.49 + 0.5) = 10: columns 9..11
    flags = _run(mask, [10.5, 10.49], [20.0, 20.0], radius=1.0)
    np.testing.assert_array_equal(flags["pixelFlags_saturatedCenter"], [True, False])
    # the circle of radius 1 reaches column 12 from 10.5 neither (d = 1.5)
    np.testing.assert_array_equal(flags["pixelFlags_saturated"], [False, False])
    # y: floor(19.5 + 0.5) = 20 -> rows 19..21, floor(18.4999 + 0.5) = 18 -> rows 17..19
    flags = _run(mask, [11.0, 11.0], [19.5, 18.4999], radius=0.0)
    np.testing.assert_array_equal(flags["pixelFlags_saturatedCenter"], [True, False])


def test_center_all_at_the_corner_is_over_the_clipped_pixels():
    mask = _zeros()
    mask[0:2, 0:2] = SAT  # the 2 x 2 pixels of the clipped 3 x 3 box around (0, 0)
    flags = _run(mask, [0.0, -0.5, 0.4], [0.0, -0.5, 0.2])
    for i in range(3):
        assert _true(flags, i) == {"pixelFlags_saturated", "pixelFlags_saturatedCenter",
                                   "pixelFlags_saturatedCenterAll"}
    mask[1, 1] = 0
    flags = _run(mask, 0.0, 0.0)
    assert flags["pixelFlags_saturatedCenter"][0]
    assert not flags["pixelFlags_saturatedCenterAll"][0]
    # the opposite corner: rows 38..39, columns 48..49
    mask = _zeros()
    mask[38:, 48:] = SAT
    assert _run(mask, 49.2, 39.4)["pixelFlags_saturatedCenterAll"][0]


# --------------------------------------------------------------------------------------------
# off the image, EDGE and NO_DATA


def test_offimage_is_box2d_contains():
    ny, nx = SHAPE
    x = np.array([-0.5, np.nextafter(-0.5, -1), nx - 0.5, np.nextafter(nx - 0.5, 0), 20.0,
                  20.0, 20.0, 20.0])
    y = np.array([20.0, 20.0, 20.0, 20.0, -0.5, np.nextafter(-0.5, -1), ny - 0.5,
                  np.nextafter(ny - 0.5, 0)])
    flags = _run(_zeros(), x, y)
    off = np.array([False, True, True, False, False, True, True, False])
    np.testing.assert_array_equal(flags["pixelFlags_offimage"], off)
    for name in ("pixelFlags_edge", "pixelFlags_edgeCenter", "pixelFlags_edgeCenterAll"):
        np.testing.assert_array_equal(flags[name], off)
    for i in np.flatnonzero(off):
        assert _true(flags, i) == {"pixelFlags_offimage", "pixelFlags_edge",
                                   "pixelFlags_edgeCenter", "pixelFlags_edgeCenterAll"}


def test_offimage_sets_edge_without_an_edge_plane():
    flags = _run(_zeros(), -2.0, 10.0, planes={"SAT": 1})
    assert {"pixelFlags_offimage", "pixelFlags_edge", "pixelFlags_edgeCenter",
            "pixelFlags_edgeCenterAll"} <= _true(flags)


def test_just_off_the_image_the_centre_is_the_clipped_box():
    mask = _zeros()
    mask[9:12, 0] = SAT  # column 0: all that is left of columns -2..0
    flags = _run(mask, -0.7, 10.0, radius=1.0)
    assert _true(flags) == {"pixelFlags_offimage", "pixelFlags_edge", "pixelFlags_edgeCenter",
                            "pixelFlags_edgeCenterAll", "pixelFlags_saturated",
                            "pixelFlags_saturatedCenter", "pixelFlags_saturatedCenterAll"}


def test_far_off_the_image_every_center_all_is_set():
    """LSST: the clipped 3 x 3 box is empty, and AND over no pixel has every bit."""
    planes = {"SAT": 1, "CR": 3}
    flags = _run(_zeros(), [-1.6, 60.0, 1e300], [10.0, 10.0, 10.0], planes=planes)
    expected = {"pixelFlags_offimage", "pixelFlags_edge", "pixelFlags_edgeCenter",
                "pixelFlags_edgeCenterAll", "pixelFlags_saturatedCenterAll",
                "pixelFlags_crCenterAll"}
    for i in range(3):
        assert _true(flags, i) == expected
    # -1.4: floor(-0.9) = -1, the box reaches column 0
    assert _true(_run(_zeros(), -1.4, 10.0, planes=planes)) == expected - {
        "pixelFlags_saturatedCenterAll", "pixelFlags_crCenterAll"}


def test_nodata_sets_nodata_not_edge():
    mask = _zeros()
    mask[18:23, 18:23] = 1 << PLANES["NO_DATA"]
    assert _true(_run(mask, 20.0, 20.0)) == {"pixelFlags_nodata", "pixelFlags_nodataCenter",
                                             "pixelFlags_nodataCenterAll"}


def test_edge_plane_sets_edge():
    mask = _zeros()
    mask[20, 22] = 1 << PLANES["EDGE"]
    assert _true(_run(mask, 20.0, 20.0)) == {"pixelFlags_edge"}
    mask[20, 21] = 1 << PLANES["EDGE"]
    assert _true(_run(mask, 20.0, 20.0)) == {"pixelFlags_edge", "pixelFlags_edgeCenter"}


@pytest.mark.parametrize("plane, name", LSST_PLANES + [(p, p.lower()) for p in COADD_PLANES])
def test_each_plane_sets_its_own_columns(plane, name):
    mask = _zeros()
    mask[19:22, 19:22] = 1 << PLANES[plane]
    mask[20, 24] = 1 << PLANES["DETECTED"]
    assert _true(_run(mask, 20.0, 20.0)) == {f"pixelFlags_{name}", f"pixelFlags_{name}Center",
                                             f"pixelFlags_{name}CenterAll"}


def test_planes_the_mask_does_not_define_are_false():
    mask = np.full(SHAPE, 0xFFFFFFFF, dtype=np.uint32)
    flags = _run(mask, 20.0, 20.0, planes={"SAT": 1})
    assert _true(flags) == {"pixelFlags_saturated", "pixelFlags_saturatedCenter",
                            "pixelFlags_saturatedCenterAll"}
    assert _true(_run(mask, 20.0, 20.0, planes={})) == set()


def test_signed_and_high_bit_masks():
    mask = np.zeros(SHAPE, dtype=np.int32)
    mask[20, 21] = np.int32(-(2**31))  # bit 31 of an int32 mask
    flags = _run(mask, 20.0, 20.0, planes={"SAT": 31})
    assert _true(flags) == {"pixelFlags_saturated", "pixelFlags_saturatedCenter"}
    mask64 = np.zeros(SHAPE, dtype=np.uint64)
    mask64[20, 21] = np.uint64(1) << np.uint64(40)
    assert _true(_run(mask64, 20.0, 20.0, planes={"SAT": 40})) == {
        "pixelFlags_saturated", "pixelFlags_saturatedCenter"}


# --------------------------------------------------------------------------------------------
# non-finite centroids, no mask


def test_non_finite_centre_sets_flag_and_no_centre_flags():
    mask = np.full(SHAPE, 0xFFFF, dtype=np.uint32)
    flags = _run(mask, [np.nan, 20.0, np.inf], [20.0, np.nan, 20.0], radius=100.0)
    # the circle around a non-finite centroid has no pixel; offimage sets the edge flags
    for i in range(3):
        assert _true(flags, i) == {"pixelFlags", "pixelFlags_offimage", "pixelFlags_edge",
                                   "pixelFlags_edgeCenter", "pixelFlags_edgeCenterAll"}
    assert not _run(mask, 20.0, 20.0)["pixelFlags"][0]


def test_non_finite_centre_keeps_its_heavy_footprint_flags():
    mask = _zeros()
    mask[5, 5] = SAT
    fp = Footprints(np.array([4]), np.array([4]), np.array([3]), np.array([3]), np.array([0]),
                    np.zeros(9, np.float32), np.ones(9, np.uint8), np.array([False]))
    flags = _run(mask, np.nan, 5.0, footprints=fp)
    assert _true(flags) == {"pixelFlags", "pixelFlags_offimage", "pixelFlags_edge",
                            "pixelFlags_edgeCenter", "pixelFlags_edgeCenterAll",
                            "pixelFlags_saturated"}


def test_no_mask():
    flags = _run(None, [20.0, -3.0, np.nan], [20.0, 20.0, 20.0], shape=SHAPE)
    assert _true(flags, 0) == set()
    assert _true(flags, 1) == {"pixelFlags_offimage", "pixelFlags_edge",
                               "pixelFlags_edgeCenter", "pixelFlags_edgeCenterAll"}
    assert _true(flags, 2) == _true(flags, 1) | {"pixelFlags"}
    with pytest.raises(ValueError, match="shape"):
        _run(None, 20.0, 20.0)


# --------------------------------------------------------------------------------------------
# heavy footprints


def test_heavy_footprint_pixels_set_the_footprint_flags():
    """An L-shaped footprint in a 6 x 4 box: its pixels count, its box's other pixels not, the
    radius is not used, and the centre flags still come from the 3 x 3 box."""
    mask = _zeros()
    member = np.zeros((4, 6), np.uint8)
    member[:, 0] = 1
    member[3, :] = 1
    x0, y0 = 10, 20
    mask[y0 + 0, x0 + 3] = SAT                     # in the box, not in the footprint
    mask[y0 + 3, x0 + 5] = 1 << PLANES["CR"]       # in the footprint, 5 px from the centroid
    mask[y0 + 1, x0 + 1] = 1 << PLANES["INTRP"]    # 3 x 3 centre only
    image = np.zeros(SHAPE, np.float32)
    fp = clip_footprints(np.array([x0]), np.array([y0]), np.array([6]), np.array([4]),
                         np.zeros(24, np.float32), np.array([0]), member.ravel(),
                         np.array([0]), image)
    flags = _run(mask, x0 + 0.0, y0 + 1.0, radius=0.5, footprints=fp)
    assert _true(flags) == {"pixelFlags_cr", "pixelFlags_interpolatedCenter"}
    circle = _run(mask, x0 + 0.0, y0 + 1.0, radius=0.5)
    assert _true(circle) == {"pixelFlags_interpolatedCenter"}


def test_heavy_footprint_is_clipped_to_the_image():
    mask = _zeros()
    mask[0, 0] = SAT
    image = np.zeros(SHAPE, np.float32)
    # a 6 x 6 box from (-3, -3): only its 3 x 3 on the image counts; no edge for the cut
    fp = clip_footprints(np.array([-3, 30]), np.array([-3, 30]), np.array([6, 4]),
                         np.array([6, 4]), np.zeros(52, np.float32), np.array([0, 36]),
                         np.ones(52, np.uint8), np.array([0, 36]), image)
    assert fp.clipped.tolist() == [True, False]
    flags = _run(mask, [5.0, 31.0], [5.0, 31.0], footprints=fp)
    assert _true(flags, 0) == {"pixelFlags_saturated"}
    assert _true(flags, 1) == set()


def test_footprints_one_per_source():
    with pytest.raises(ValueError, match="one per source"):
        _run(_zeros(), [1.0, 2.0], [1.0, 2.0], footprints=Footprints.empty())


# --------------------------------------------------------------------------------------------
# extra planes


def test_extra_planes_produce_their_columns():
    mask = _zeros()
    mask[20, 23] = 1 << PLANES["CLIPPED"]                 # footprint only
    mask[21, 21] = 1 << PLANES["SENSOR_EDGE"]             # centre (and footprint)
    mask[19:22, 19:22] |= 1 << PLANES["REJECTED"]         # all nine
    flags = _run(mask, 20.0, 20.0)
    assert _true(flags) == {"pixelFlags_clipped", "pixelFlags_sensor_edge",
                            "pixelFlags_sensor_edgeCenter", "pixelFlags_rejected",
                            "pixelFlags_rejectedCenter", "pixelFlags_rejectedCenterAll"}
    streak = _run(mask, 20.0, 20.0, planes={"STREAK": 9}, extra_planes=("STREAK",))
    assert list(streak)[-3:] == ["pixelFlags_streakCenter", "pixelFlags_streakCenterAll",
                                 "pixelFlags_streak"]
    assert _true(streak) == {"pixelFlags_streak"}
    assert not any(k.startswith("pixelFlags_clipped")
                   for k in _run(mask, 20.0, 20.0, extra_planes=()))


@pytest.mark.parametrize("extra", [("SAT",), ("STREAK", "STREAK"), ("streak", "STREAK"),
                                   ("Edge",), ("OFFIMAGE",)])
def test_extra_planes_must_be_new(extra):
    with pytest.raises(ValueError, match="extra_planes"):
        _run(_zeros(), 1.0, 1.0, extra_planes=extra)


def test_bad_arguments():
    with pytest.raises(ValueError, match="x, y"):
        pixel_flag_columns(_zeros(), PLANES, np.array([1.0, 2.0]), np.array([1.0]), radius=2.0)
    with pytest.raises(ValueError, match="radius"):
        _run(_zeros(), 1.0, 1.0, radius=-1.0)
    with pytest.raises(ValueError, match="bit number"):
        _run(_zeros(), 1.0, 1.0, planes={"SAT": 64})
    with pytest.raises(TypeError, match="integer"):
        _run(np.zeros(SHAPE, np.float32), 1.0, 1.0)


# --------------------------------------------------------------------------------------------
# property: the circle footprint against brute force


def _brute_force(mask, planes, x, y, radius):
    """Every column from the definitions, with numpy over every pixel of the image."""
    ny, nx = mask.shape
    jj, ii = np.mgrid[0:ny, 0:nx]
    m = mask.astype(np.uint64)
    out = {name: np.zeros(x.size, bool) for name in EXPECTED_NAMES}
    table = ([(p, n, "footprint") for p, n in LSST_PLANES]
             + [(p, n + "Center", "center") for p, n in LSST_PLANES]
             + [(p, n + "CenterAll", "centerAll") for p, n in LSST_PLANES]
             + [(p, p.lower() + "Center", "center") for p in COADD_PLANES]
             + [(p, p.lower() + "CenterAll", "centerAll") for p in COADD_PLANES]
             + [(p, p.lower(), "footprint") for p in COADD_PLANES])
    for s in range(x.size):
        finite = math.isfinite(x[s]) and math.isfinite(y[s])
        off = not (-0.5 <= x[s] < nx - 0.5 and -0.5 <= y[s] < ny - 0.5)
        dx = ii - x[s]
        dy = jj - y[s]
        # a circle around a non-finite centroid has no pixel
        inside = (dx * dx + dy * dy <= radius[s] * radius[s]) & finite
        foot = np.bitwise_or.reduce(m[inside]) if inside.any() else np.uint64(0)
        cany, call = np.uint64(0), np.uint64(0)
        if finite:
            xc, yc = math.floor(x[s] + 0.5), math.floor(y[s] + 0.5)
            box = (np.abs(ii - xc) <= 1) & (np.abs(jj - yc) <= 1)
            cany = np.bitwise_or.reduce(m[box]) if box.any() else np.uint64(0)
            call = np.bitwise_and.reduce(m[box]) if box.any() else ~np.uint64(0)
        bits = {"footprint": foot, "center": cany, "centerAll": call}
        out["pixelFlags"][s] = not finite
        out["pixelFlags_offimage"][s] = off
        for plane, name, where in table:
            if plane in planes:
                out[f"pixelFlags_{name}"][s] = bool(bits[where] & np.uint64(1 << planes[plane]))
        for name in ("edge", "edgeCenter", "edgeCenterAll"):
            out[f"pixelFlags_{name}"][s] |= off
    return out


@st.composite
def _scenes(draw):
    ny = draw(st.integers(1, 14))
    nx = draw(st.integers(1, 14))
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))
    rng = np.random.default_rng(seed)
    mask = np.where(rng.random((ny, nx)) < density,
                    rng.integers(0, 2**13, (ny, nx)), 0).astype(np.uint32)
    n = draw(st.integers(1, 8))
    coord = st.one_of(st.floats(-4.0, 18.0), st.integers(-3, 16).map(float),
                      st.integers(-8, 34).map(lambda v: v / 2.0),
                      st.sampled_from([math.nan, math.inf, -math.inf]))
    radius = st.one_of(st.floats(0.0, 9.0), st.integers(0, 6).map(float),
                       st.sampled_from([0.5, 1.5, math.sqrt(2.0), math.sqrt(5.0), math.nan,
                                        math.inf]))
    x = np.array(draw(st.lists(coord, min_size=n, max_size=n)))
    y = np.array(draw(st.lists(coord, min_size=n, max_size=n)))
    r = np.array(draw(st.lists(radius, min_size=n, max_size=n)))
    return mask, x, y, r


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(_scenes())
def test_circle_flags_equal_brute_force(scene):
    mask, x, y, r = scene
    got = pixel_flag_columns(mask, PLANES, x, y, radius=r)
    want = _brute_force(mask, PLANES, x, y, r)
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
