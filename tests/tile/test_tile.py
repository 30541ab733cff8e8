"""Tile: every field checked and the planes normalised before any kernel sees them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import colphot
from colphot.measure.aperture import _apertures_kernel
from colphot.table.forced import unflagged_nans


@pytest.fixture()
def base(sim):
    return sim.make_sim_tile(n_side=2)


@pytest.mark.parametrize("convert", [
    lambda a: a.astype(">f4"),            # big-endian
    lambda a: a.astype(np.float16),
    lambda a: np.round(a).astype(np.int16),
    lambda a: np.asfortranarray(a),
    lambda a: a[:, ::-1][:, ::-1],        # a non-contiguous view
], ids=["big-endian", "float16", "int16", "fortran", "strided"])
def test_odd_pixel_arrays_are_normalised_without_new_compiles(base, convert):
    colphot.forced_photometry(base.tile, base.refs)  # float32 compiled (or cached)
    before = set(_apertures_kernel.signatures)
    tile = dataclasses.replace(base.tile, image=convert(base.tile.image.copy()),
                               variance=convert(base.tile.variance.copy()))
    assert tile.image.dtype == np.float32 and tile.image.flags.c_contiguous
    assert tile.image.dtype.isnative and tile.variance.dtype == tile.image.dtype
    df = colphot.forced_photometry(tile, base.refs)
    assert set(_apertures_kernel.signatures) == before
    assert unflagged_nans(df) == {}
    ref = colphot.forced_photometry(base.tile, base.refs)
    # the same numbers (up to float16 / integer rounding of the pixels)
    diff = np.abs(df["psfFlux"].to_numpy() - ref["psfFlux"].to_numpy())
    assert np.all(diff < ref["psfFluxErr"].to_numpy())


@pytest.mark.parametrize(("field", "value", "error", "message"), [
    ("image", np.zeros((4, 5, 6), np.float32), ValueError, r"image: expected a 2-D array"),
    ("image", np.zeros((0, 5), np.float32), ValueError, r"image: empty array"),
    ("image", np.zeros((20, 20), bool), TypeError, r"image: expected real numbers"),
    ("image", np.zeros((20, 20), complex), TypeError, r"image: expected real numbers"),
    ("variance", np.ones((10, 10), np.float32), ValueError, r"variance: shape \(10, 10\)"),
    ("mask", np.zeros((10, 10), np.int32), ValueError, r"mask: shape \(10, 10\) does not"),
    ("mask", "auto", TypeError, r"mask: expected integer bit planes"),
    ("wcs", None, TypeError, r"wcs: expected a 2-axis celestial astropy WCS, got NoneType"),
    ("psf", np.ones((5, 5)), TypeError, r"psf: expected a colphot PsfModel"),
    ("band", "../../x", ValueError, r"band: .*path separator"),
    ("band", "", ValueError, r"band: empty"),
    ("band", "__HIVE_DEFAULT_PARTITION__", ValueError, r"band: .*hive null token"),
    ("tract", 1.5, ValueError, r"tract: expected a non-negative integer"),
    ("patch", -1, ValueError, r"patch: expected a non-negative integer"),
    ("xy0", (1.5, 2), ValueError, r"xy0: expected two integers"),
    ("mask_planes", {"SAT": 40}, ValueError, r"mask_planes: 'SAT' -> 40"),
])
def test_bad_fields_raise_naming_the_field(base, field, value, error, message):
    if field == "image":  # keep the other planes consistent with the odd image
        shape = value.shape if value.ndim == 2 and 0 not in value.shape else None
        kwargs = {"image": value}
        if shape is not None:
            kwargs.update(variance=np.ones(shape, np.float32), mask=None)
    else:
        kwargs = {field: value}
    with pytest.raises(error, match=message):
        dataclasses.replace(base.tile, **kwargs)


def test_int32_mask_bits_are_kept(base):
    mask = np.zeros(base.tile.shape, np.int32)
    mask[3, 4] = np.int32(-2**31)  # bit 31
    tile = dataclasses.replace(base.tile, mask=mask)
    assert tile.mask.dtype == np.uint32 and tile.mask[3, 4] == 2**31
