"""Property-based tests (hypothesis) of the edges: tile arrays, tile headers, reference
catalogs and the configuration.

Each generated case ends either in a colphot error that names what is wrong (the argument, the
file with its HDU and key, the column, the parameter) or in a forced-source table whose every
NaN value has its flag set. Never an exception from deep inside numpy, astropy, numba or
polars, never a hang.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import colphot
from colphot.config import ForcedPhotConfig
from colphot.exceptions import ColphotWarning, ReferenceCatalogError, TileFormatError
from colphot.table.forced import unflagged_nans
from colphot.tile.fits import read_tile

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

#: A few reals that break naive code.
AWKWARD = st.sampled_from([0.0, -0.0, 1e-300, -1.0, 1e30, -1e30, 1e300, math.nan, math.inf,
                           -math.inf, 0.5, 2.5])


@pytest.fixture(scope="module")
def base(sim):
    return sim.make_sim_tile(n_side=2, spacing=30, margin=20)


def _measure(tile, refs, config=None) -> pl.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColphotWarning)
        df = colphot.forced_photometry(tile, refs, config)
    assert unflagged_nans(df) == {}, unflagged_nans(df)
    return df


# --------------------------------------------------------------------------------------------
# tile arrays


DTYPES = ["f2", "f4", "f8", ">f4", ">f8", "i2", "i4", "u1", "u2", "?", "c8"]


@SETTINGS
@given(dtype=st.sampled_from(DTYPES), var_dtype=st.sampled_from(DTYPES),
       order=st.sampled_from("CF"), extra_dim=st.booleans(), bad_values=st.lists(AWKWARD,
                                                                                 max_size=4),
       mask_dtype=st.sampled_from(["i4", "u4", "i8", "u1", "f4", ">i4", None]),
       mask_shrink=st.booleans())
def test_tile_arrays(base, dtype, var_dtype, order, extra_dim, bad_values, mask_dtype,
                     mask_shrink):
    rng = np.random.default_rng(len(bad_values))
    image = base.tile.image.astype(np.float64).copy()
    for v in bad_values:
        image[rng.integers(image.shape[0]), rng.integers(image.shape[1])] = v
    with np.errstate(all="ignore"):
        arr = np.asarray(image if dtype not in ("i2", "i4", "u1", "u2")
                         else np.nan_to_num(image, posinf=0, neginf=0), dtype=dtype, order=order)
        var = np.asarray(base.tile.variance, dtype=var_dtype, order=order)
    if extra_dim:
        arr = arr[None]
    mask = None
    if mask_dtype is not None:
        shape = base.tile.shape if not mask_shrink else (5, 5)
        mask = np.zeros(shape, dtype=mask_dtype)
    try:
        tile = dataclasses.replace(base.tile, image=arr, variance=var, mask=mask)
    except (TypeError, ValueError) as err:
        assert str(err).split(":")[0] in ("image", "variance", "mask"), err
        event(f"clear error: {type(err).__name__}")
        return
    event("measured")
    assert tile.image.dtype in (np.float32, np.float64) and tile.image.flags.c_contiguous
    assert tile.variance.dtype == tile.image.dtype
    _measure(tile, base.refs)


# --------------------------------------------------------------------------------------------
# tile headers


HEADER_VALUES = st.one_of(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                                  max_size=12),
                          st.integers(-2**40, 2**40), AWKWARD.filter(math.isfinite),
                          st.booleans())
HEADER_KEYS = ["BAND", "FILTER", "TRACT", "PATCH", "MAGZERO", "FLUXMAG0", "LTV1", "LTV2",
               "BUNIT", "RADESYS", "EQUINOX", "CTYPE1", "CRVAL2", "CD1_1"]


@SETTINGS
@given(changes=st.dictionaries(st.sampled_from(HEADER_KEYS), HEADER_VALUES, min_size=1,
                               max_size=3),
       where=st.sampled_from(["image", "primary"]))
def test_tile_headers(base, tmp_path_factory, changes, where):
    path = Path(tmp_path_factory.mktemp("hdr")) / "tile.fits"
    header = base.tile.wcs.to_header()
    primary = fits.Header({"BAND": "r", "TRACT": 1, "PATCH": 2})
    target = header if where == "image" else primary
    for key, value in changes.items():
        try:
            target[key] = value
        except (ValueError, TypeError):
            assume(False)  # astropy cannot even hold it: not a file anyone can write
    hdus = [fits.PrimaryHDU(header=primary),
            fits.ImageHDU(base.tile.image, header=header, name="IMAGE"),
            fits.ImageHDU(base.tile.variance, header=header, name="VARIANCE"),
            fits.ImageHDU(base.tile.psf.images[0], name="PSF")]
    try:
        fits.HDUList(hdus).writeto(path)
    except (ValueError, TypeError, OSError, fits.VerifyError):
        assume(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tile = read_tile(path)
    except TileFormatError as err:
        text = str(err)
        assert str(path) in text and "HDU" in text, text
        event("clear error: TileFormatError")
        return
    event("measured")
    _measure(tile, base.refs)


# --------------------------------------------------------------------------------------------
# reference catalogs


COLUMN_VALUES = st.one_of(
    st.lists(st.one_of(st.none(), AWKWARD, st.floats(-400, 400)), min_size=4, max_size=4),
    st.lists(st.one_of(st.none(), st.integers(-2**62, 2**62)), min_size=4, max_size=4),
    st.lists(st.text(max_size=3), min_size=4, max_size=4),
)
REF_COLUMNS = ["id", "coord_ra", "coord_dec", "parent", "shape_xx", "shape_yy", "shape_xy",
               "detect_isPrimary"]


@SETTINGS
@given(changes=st.dictionaries(st.sampled_from(REF_COLUMNS), COLUMN_VALUES, max_size=3),
       drop=st.lists(st.sampled_from(REF_COLUMNS), max_size=1))
def test_reference_catalogs(base, changes, drop):
    refs = base.refs.with_columns(shape_xx=pl.lit(0.1), shape_yy=pl.lit(0.1),
                                  shape_xy=pl.lit(0.0))
    for column, values in changes.items():
        try:
            series = pl.Series(column, values, strict=False)
        except (TypeError, OverflowError, pl.exceptions.PolarsError):
            assume(False)
        refs = refs.with_columns(series)
    refs = refs.drop([c for c in drop if c in refs.columns])
    try:
        df = _measure(base.tile, refs)
    except ReferenceCatalogError as err:
        assert any(f"'{c}'" in str(err) for c in REF_COLUMNS), err
        event("clear error: ReferenceCatalogError")
        return
    event("measured")
    assert df["objectId"].n_unique() == df.height


# --------------------------------------------------------------------------------------------
# configuration


CONFIG_VALUES = {
    "aperture_radii": st.one_of(st.lists(st.one_of(AWKWARD, st.floats(0.1, 2000)), max_size=4),
                                st.text(max_size=4)),
    "aperture_method": st.sampled_from(["exact", "subpixel", "center", "gaussian"]),
    "subpixels": st.one_of(st.integers(-5, 200), AWKWARD, st.booleans()),
    "local_background_inner": st.one_of(AWKWARD, st.floats(0.1, 30)),
    "local_background_outer": st.one_of(AWKWARD, st.floats(0.1, 300)),
    "local_background_n_sigma": st.one_of(AWKWARD, st.integers(-3, 10)),
    "local_background_n_iter": st.one_of(st.integers(-3, 300), AWKWARD),
    "footprint_radius": st.one_of(st.integers(-3, 5000), AWKWARD),
    "plugins": st.one_of(st.text(max_size=8), st.lists(st.sampled_from(
        ["psf_flux", "aperture", "gaussian_flux", "local_background", "pixel_flags", "kron"]),
        max_size=3)),
}


@SETTINGS
@given(params=st.fixed_dictionaries({}, optional=CONFIG_VALUES))
def test_configurations(base, params):
    try:
        config = ForcedPhotConfig(**params)
    except (TypeError, ValueError) as err:
        name = str(err).split(":")[0]
        assert name in CONFIG_VALUES or name == "local_background_inner/outer", err
        event(f"clear error: {type(err).__name__}")
        return
    event("measured")
    df = _measure(base.tile, base.refs, config)
    assert df.height == base.refs.height
