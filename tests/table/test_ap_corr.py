"""Aperture corrections, as LSST's ApplyApCorrTask applies them (meas_base applyApCorr.py):

- for each algorithm LSST aperture-corrects (PsfFlux, GaussianFlux), the map's
  ``<model>_instFlux`` field c and ``<model>_instFluxErr`` field e at the centroid;
- flux -> flux * c, fluxErr -> fluxErr * c (``UseNaiveFluxErr``), ``_apCorr`` = c,
  ``_apCorrErr`` = 0 (``UseNaiveFluxErr``: e must exist but is not used), ``_flag_apCorr``
  unset where c is finite and > 0;
- where c is bad: ``_flag_apCorr`` and (``doFlagApCorrFailures``) the general flag set,
  flux left as it was;
- a map without the fields: ``_flag_apCorr`` on every row, the general flag untouched.

The Chebyshev fields are checked against T_n(t) = cos(n arccos t), afw's bounded-field
definition over the image's Box2D.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import colphot
from colphot import ForcedPhotConfig
from colphot.exceptions import TileFormatError
from colphot.table.forced import unflagged_nans
from colphot.tile.ap_corr import ChebyshevField, ap_corr_hdu, read_ap_corr
from colphot.tile.write import write_tile


def _cheb_direct(coeffs: np.ndarray, bbox, x, y) -> np.ndarray:
    """sum c[j, i] T_j(v) T_i(u) with T_n(t) = cos(n arccos t), u, v in [-1, 1]."""
    xmin, xmax, ymin, ymax = bbox
    u = (2 * np.asarray(x) - xmin - xmax) / (xmax - xmin)
    v = (2 * np.asarray(y) - ymin - ymax) / (ymax - ymin)
    out = np.zeros(np.shape(u))
    for j in range(coeffs.shape[0]):
        for i in range(coeffs.shape[1]):
            out += coeffs[j, i] * np.cos(j * np.arccos(v)) * np.cos(i * np.arccos(u))
    return out


def test_chebyshev_field_matches_definition():
    rng = np.random.default_rng(4)
    coeffs = rng.normal(0.0, 0.1, (3, 4))
    coeffs[0, 0] = 1.0
    bbox = (999.5, 1329.5, 1999.5, 2329.5)
    field = ChebyshevField(coeffs, bbox)
    x = rng.uniform(bbox[0], bbox[1], 200)
    y = rng.uniform(bbox[2], bbox[3], 200)
    np.testing.assert_allclose(field.evaluate(x, y), _cheb_direct(coeffs, bbox, x, y),
                               rtol=1e-12, atol=1e-14)
    assert np.all(ChebyshevField.constant(1.02).evaluate(x, y) == 1.02)
    assert np.isnan(ChebyshevField.constant(1.0).evaluate(np.array([np.nan]),
                                                          np.array([3.0]))[0])


def test_fits_round_trip_and_bad_table(tmp_path, sim_tile):
    t = sim_tile.tile
    ny, nx = t.shape
    bbox = (t.xy0[0] - 0.5, t.xy0[0] + nx - 0.5, t.xy0[1] - 0.5, t.xy0[1] + ny - 0.5)
    ap = {"base_PsfFlux_instFlux": ChebyshevField(np.array([[1.03, 0.01], [0.02, 0.0]]), bbox),
          "base_PsfFlux_instFluxErr": ChebyshevField.constant(0.004)}
    path = tmp_path / "tile.fits"
    write_tile(path, t.image, variance=t.variance, mask=t.mask,
                       mask_planes=t.mask_planes, wcs=t.wcs, psf_images=t.psf.images[0],
                       band="r", tract=1, patch=2, xy0=t.xy0, bunit="nJy", ap_corr=ap)
    back = colphot.read_tile(path)
    assert sorted(back.ap_corr) == sorted(ap)
    for k, f in ap.items():
        np.testing.assert_array_equal(back.ap_corr[k].coefficients, f.coefficients)
        assert back.ap_corr[k].bbox == f.bbox
    # a table whose coefficients do not fill nx x ny names the HDU, the row and the column
    hdu = ap_corr_hdu(ap)
    hdu.data["nx"][0] = 3
    with pytest.raises(TileFormatError, match=r"t\.fits\[HDU 5\] APCORR: row 0 .*coefficients"):
        read_ap_corr(hdu.data, "t.fits[HDU 5] APCORR")


def _corrected_tile(sim_tile, psf_value, err_value=None):
    t = sim_tile.tile
    ap = {"base_PsfFlux_instFlux": psf_value,
          "base_PsfFlux_instFluxErr": err_value or ChebyshevField.constant(0.01)}
    t.ap_corr = ap
    return t


def test_forced_applies_lsst_correction(sim_tile):
    t = sim_tile.tile
    ny, nx = t.shape
    bbox = (t.xy0[0] - 0.5, t.xy0[0] + nx - 0.5, t.xy0[1] - 0.5, t.xy0[1] + ny - 0.5)
    coeffs = np.array([[1.05, 0.02], [-0.01, 0.005]])
    plain = colphot.forced_photometry(t, sim_tile.refs, ForcedPhotConfig(apply_ap_corr=False))
    assert "psfFlux_apCorr" not in plain.columns
    tile = _corrected_tile(sim_tile, ChebyshevField(coeffs, bbox))
    got = colphot.forced_photometry(tile, sim_tile.refs)
    c = _cheb_direct(coeffs, bbox, got["centroid_x"].to_numpy(), got["centroid_y"].to_numpy())
    np.testing.assert_allclose(got["psfFlux_apCorr"].to_numpy(), c, rtol=1e-12)
    np.testing.assert_array_equal(got["psfFlux_apCorrErr"].to_numpy(), 0.0)
    np.testing.assert_allclose(got["psfFlux"].to_numpy(), plain["psfFlux"].to_numpy() * c,
                               rtol=1e-12)
    np.testing.assert_allclose(got["psfFluxErr"].to_numpy(),
                               plain["psfFluxErr"].to_numpy() * c, rtol=1e-12)
    # magnitudes follow the corrected flux
    np.testing.assert_allclose(got["psfMag"].to_numpy(),
                               31.4 - 2.5 * np.log10(plain["psfFlux"].to_numpy() * c),
                               rtol=1e-6)
    assert not got["psfFlux_flag_apCorr"].any()
    assert (got["psfFlux_flag"] == plain["psfFlux_flag"]).all()
    # no GaussianFlux fields in the map: flagged, uncorrected, general flag untouched
    assert got["gaussianFlux_flag_apCorr"].all()
    assert got["gaussianFlux_apCorr"].is_nan().all()
    np.testing.assert_array_equal(got["gaussianFlux"].to_numpy(),
                                  plain["gaussianFlux"].to_numpy())
    assert (got["gaussianFlux_flag"] == plain["gaussianFlux_flag"]).all()
    assert unflagged_nans(got) == {}


def test_bad_correction_sets_flags(sim_tile):
    t = sim_tile.tile
    ny, nx = t.shape
    bbox = (t.xy0[0] - 0.5, t.xy0[0] + nx - 0.5, t.xy0[1] - 0.5, t.xy0[1] + ny - 0.5)
    # c = 0.5 + u: negative on the left third of the tile
    tile = _corrected_tile(sim_tile, ChebyshevField(np.array([[0.5, 1.0]]), bbox))
    plain = colphot.forced_photometry(t, sim_tile.refs, ForcedPhotConfig(apply_ap_corr=False))
    got = colphot.forced_photometry(tile, sim_tile.refs)
    u = (2 * got["centroid_x"].to_numpy() - bbox[0] - bbox[1]) / (bbox[1] - bbox[0])
    bad = 0.5 + u <= 0
    assert 0 < bad.sum() < got.height
    np.testing.assert_array_equal(got["psfFlux_flag_apCorr"].to_numpy(), bad)
    np.testing.assert_array_equal(got["psfFlux_flag"].to_numpy(),
                                  bad | plain["psfFlux_flag"].to_numpy())
    np.testing.assert_array_equal(got["psfFlux"].to_numpy()[bad],
                                  plain["psfFlux"].to_numpy()[bad])
    # the error field is not evaluated (UseNaiveFluxErr): a negative one changes nothing
    tile = _corrected_tile(sim_tile, ChebyshevField.constant(1.0),
                           ChebyshevField.constant(-0.1))
    got = colphot.forced_photometry(tile, sim_tile.refs)
    assert not got["psfFlux_flag_apCorr"].any()
    assert (got["psfFlux_apCorrErr"] == 0.0).all()


def test_tile_without_map_flags_every_row(sim_tile):
    got = colphot.forced_photometry(sim_tile.tile, sim_tile.refs)
    assert got["psfFlux_flag_apCorr"].all() and got["gaussianFlux_flag_apCorr"].all()
    plain = colphot.forced_photometry(sim_tile.tile, sim_tile.refs,
                                      ForcedPhotConfig(apply_ap_corr=False))
    assert got.select(pl.col("psfFlux")).equals(plain.select(pl.col("psfFlux")))
    assert not got["psfFlux_flag"].any()
