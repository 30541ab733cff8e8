"""forced_photometry: one tile + references -> the forced-source table."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import polars as pl
import pytest
from astropy.coordinates import SkyCoord
from photutils.aperture import CircularAperture

import colphot
from colphot.config import ForcedPhotConfig, aperture_name
from colphot.exceptions import ColphotWarning, NoPsfWarning, ReferenceCatalogError
from colphot.table.schema import forced_columns, polars_schema


def test_schema_rows_and_identity(sim_tile):
    s = sim_tile
    refs = s.refs.with_columns(parent=pl.Series([None, 5] + [0] * (s.refs.height - 2),
                                                dtype=pl.Int64))
    df = colphot.forced_photometry(s.tile, refs)
    assert df.schema == polars_schema(forced_columns(ForcedPhotConfig()))
    assert df["objectId"].to_list() == refs["id"].to_list()
    assert df["parentObjectId"].to_list()[:3] == [0, 5, 0]
    assert df["band"].unique().to_list() == ["r"]
    assert df["tract"].unique().to_list() == [9813] and df["patch"].unique().to_list() == [42]
    np.testing.assert_array_equal(df["coord_ra"].to_numpy(), refs["coord_ra"].to_numpy())
    assert not df["centroid_flag"].any()


def test_centroids_in_parent_frame_match_astropy(sim_tile):
    s = sim_tile
    df = colphot.forced_photometry(s.tile, s.refs)
    sky = SkyCoord(s.refs["coord_ra"].to_numpy() * u.deg, s.refs["coord_dec"].to_numpy() * u.deg)
    px, py = sky.to_pixel(s.tile.wcs)
    x0, y0 = s.tile.xy0
    assert (x0, y0) == (1000, 2000)
    np.testing.assert_allclose(df["centroid_x"].to_numpy(), px + x0, rtol=0, atol=1e-8)
    np.testing.assert_allclose(df["centroid_y"].to_numpy(), py + y0, rtol=0, atol=1e-8)
    np.testing.assert_allclose(df["centroid_x"].to_numpy(), s.x + x0, atol=1e-6)


def test_row_order_independent_of_spatial_sorting(sim_tile):
    s = sim_tile
    perm = np.random.default_rng(0).permutation(s.refs.height)
    df = colphot.forced_photometry(s.tile, s.refs)
    shuffled = colphot.forced_photometry(s.tile, s.refs[perm])
    assert shuffled["objectId"].to_list() == s.refs[perm]["id"].to_list()
    assert shuffled.sort("objectId").equals(df.sort("objectId"))


@pytest.mark.parametrize("method, subpixels", [("exact", 5), ("subpixel", 5), ("center", 1)])
def test_aperture_columns_equal_photutils(sim, method, subpixels):
    s = sim.make_sim_tile(n_side=5, spacing=45, margin=75, seed=4)
    tile = s.tile
    # add sources near the border so that the large apertures are truncated
    ny, nx = tile.shape
    extra = sim.refs_at(tile.wcs, [2.3, nx - 10.6, 100.2], [50.7, 90.1, ny - 30.4],
                        first_id=9000)
    refs = s.refs.vstack(extra)
    cfg = ForcedPhotConfig(aperture_method=method, subpixels=subpixels)
    df = colphot.forced_photometry(tile, refs, cfg)
    x = df["centroid_x"].to_numpy() - tile.xy0[0]
    y = df["centroid_y"].to_numpy() - tile.xy0[1]
    error = np.sqrt(tile.variance.astype(np.float64))
    for r in cfg.aperture_radii:
        name = f"ap{aperture_name(r)}Flux"
        truncated = (x - r < -0.5) | (x + r > nx - 0.5) | (y - r < -0.5) | (y + r > ny - 0.5)
        np.testing.assert_array_equal(df[f"{name}_flag_apertureTruncated"].to_numpy(),
                                      truncated)
        np.testing.assert_array_equal(df[f"{name}_flag"].to_numpy(), truncated)
        assert np.isnan(df[name].to_numpy()[truncated]).all()
        assert np.isnan(df[f"{name}Err"].to_numpy()[truncated]).all()
        ok = ~truncated
        if not ok.any():
            continue
        ap = CircularAperture(np.column_stack([x[ok], y[ok]]), r)
        flux, err = ap.do_photometry(tile.image, error=error, method=method,
                                     subpixels=subpixels)
        np.testing.assert_allclose(df[name].to_numpy()[ok], flux, rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(df[f"{name}Err"].to_numpy()[ok], err, rtol=1e-9)
    # the LSST radii: the first is 3 px, the last 70 px, both present
    assert "ap03Flux" in df.columns and "ap70Flux" in df.columns
    assert df["ap03Flux_flag_apertureTruncated"].sum() == 1          # x = 2.3
    assert df["ap70Flux_flag_apertureTruncated"].sum() == 3          # the three extras


def test_edge_sources_flagged_not_dropped(sim_tile):
    s = sim_tile
    ny, nx = s.tile.shape
    refs = s.refs.vstack(_refs_at(s.tile.wcs, [0.0, nx - 4.0], [150.0, 12.0]))
    df = colphot.forced_photometry(s.tile, refs)
    edge = df.filter(pl.col("objectId") >= 5000)
    assert edge.height == 2
    assert edge["psfFlux_flag_edge"].all() and edge["psfFlux_flag"].all()
    assert edge["psfFlux"].is_finite().all()
    # meas_base: pixelFlags_edge comes from the EDGE mask plane (or a centre off the image),
    # not from a footprint crossing the border
    assert not edge["pixelFlags_edge"].any() and not edge["pixelFlags_offimage"].any()
    assert edge["ap03Flux_flag_apertureTruncated"].to_list() == [True, False]
    assert edge["ap04p5Flux_flag_apertureTruncated"].all()
    inner = df.filter(pl.col("objectId") < 5000)
    assert not inner["psfFlux_flag_edge"].any() and not inner["pixelFlags_edge"].any()


def _refs_at(wcs, x, y):
    ra, dec = wcs.pixel_to_world_values(np.asarray(x, float), np.asarray(y, float))
    return pl.DataFrame({"id": np.arange(5000, 5000 + len(x), dtype=np.int64),
                         "coord_ra": ra, "coord_dec": dec})


def test_off_tile_and_nan_refs_are_skipped(sim_tile):
    s = sim_tile
    ny, nx = s.tile.shape
    off = _refs_at(s.tile.wcs, [-3.0, nx + 5.0, 50.0], [50.0, 50.0, -40.0])
    bad = pl.DataFrame({"id": [7001, 7002], "coord_ra": [np.nan, 150.0],
                        "coord_dec": [2.2, np.nan]})
    refs = pl.concat([s.refs, off, bad])
    with pytest.warns(ColphotWarning, match=r"2 reference\(s\).*\[7001, 7002\]"):
        df = colphot.forced_photometry(s.tile, refs)
    assert df["objectId"].to_list() == s.refs["id"].to_list()


def test_nothing_on_the_tile_gives_empty_table(sim):
    s = sim.make_sim_tile(n_side=2, with_psf=False)
    far = pl.DataFrame({"id": [1, 2], "coord_ra": [10.0, 11.0], "coord_dec": [-40.0, -41.0]})
    df = colphot.forced_photometry(s.tile, far)      # no NoPsfWarning for zero rows
    assert df.height == 0
    assert df.schema == polars_schema(forced_columns(ForcedPhotConfig()))


def test_tile_without_psf_warns_and_flags(sim):
    s = sim.make_sim_tile(n_side=3, with_psf=False)
    with pytest.warns(NoPsfWarning, match="memory://sim: no PSF model"):
        df = colphot.forced_photometry(s.tile, s.refs)
    assert df["psfFlux_flag_noPsf"].all() and df["psfFlux_flag"].all()
    assert df["psfFlux"].is_nan().all() and df["psfMag"].is_nan().all()
    assert df["localBackground_flag_noPsf"].all()
    assert not df["psfFlux_flag_edge"].any()
    # the other algorithms still measure
    assert df["ap12Flux"].is_finite().all()
    # the footprint is the config's circle of footprint_radius pixels, PSF or not
    tile = s.tile
    xi = int(np.floor(s.x[4] + 0.5))
    yi = int(np.floor(s.y[4] + 0.5))
    tile.mask[yi + 4, xi] = 1 << 1  # 4 +- 0.5 px from the centroid: inside
    tile.mask[yi + 4, xi + 4] = 1 << 3  # 5.66 +- 0.7 px: outside
    with pytest.warns(NoPsfWarning):
        df = colphot.forced_photometry(tile, s.refs, ForcedPhotConfig(footprint_radius=5))
    assert df["pixelFlags_saturated"].to_list() == [i == 4 for i in range(9)]
    assert not df["pixelFlags_cr"].any()


def test_psf_free_config_does_not_warn(sim):
    s = sim.make_sim_tile(n_side=2, with_psf=False)
    cfg = ForcedPhotConfig(plugins=("aperture", "pixel_flags"))
    df = colphot.forced_photometry(s.tile, s.refs, cfg)
    assert df.schema == polars_schema(forced_columns(cfg))
    assert not any(c.startswith(("psfFlux", "gaussianFlux", "localBackground"))
                   for c in df.columns)


def test_bad_references_raise_named_errors(sim_tile):
    with pytest.raises(ReferenceCatalogError, match="'coord_dec'"):
        colphot.forced_photometry(sim_tile.tile, sim_tile.refs.drop("coord_dec"))
    dup = sim_tile.refs.with_columns(id=pl.lit(3, dtype=pl.Int64))
    with pytest.raises(ReferenceCatalogError, match="'id' must be unique"):
        colphot.forced_photometry(sim_tile.tile, dup)


def test_lazy_references_accepted(sim_tile):
    df = colphot.forced_photometry(sim_tile.tile, sim_tile.refs.lazy(),
                                   ForcedPhotConfig(plugins=("aperture",)))
    assert df.height == sim_tile.refs.height


def test_null_and_all_invalid_coordinates_never_crash(sim_tile):
    s = sim_tile
    with_null = s.refs.with_columns(
        coord_dec=pl.when(pl.col("id") == s.ids[1]).then(None).otherwise(pl.col("coord_dec")))
    with pytest.warns(ColphotWarning, match=rf"1 reference\(s\).*\[{s.ids[1]}\]"):
        df = colphot.forced_photometry(s.tile, with_null)
    assert df["objectId"].to_list() == [i for i in s.ids.tolist() if i != s.ids[1]]
    all_bad = pl.DataFrame({"id": [1, 2], "coord_ra": [np.nan, 10.0],
                            "coord_dec": [1.0, np.inf]})
    with pytest.warns(ColphotWarning, match=r"2 reference\(s\)"):
        df = colphot.forced_photometry(s.tile, all_bad)
    assert df.height == 0
    assert df.schema == polars_schema(forced_columns(ForcedPhotConfig()))


@pytest.mark.parametrize("strip", [32.0, 112.0])
def test_spatial_order_is_a_permutation_keeping_neighbours_together(strip):
    from colphot.table.forced import spatial_order

    rng = np.random.default_rng(4)
    x = rng.uniform(0, 4000, 5000)
    y = rng.uniform(0, 4000, 5000)
    x[::97] = np.nan
    order = spatial_order(x, y, strip=strip)
    assert np.array_equal(np.sort(order), np.arange(x.size))
    # consecutive finite sources are close: far closer on average than in input order
    def median_step(xs, ys):
        step = np.hypot(np.diff(xs), np.diff(ys))
        return np.median(step[np.isfinite(step)])

    assert median_step(x[order], y[order]) < 0.1 * median_step(x, y)
