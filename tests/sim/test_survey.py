"""colphot.tile.write and colphot.sim.survey: the afw FITS layout and the survey file tree."""

from __future__ import annotations

import uuid

import fsspec
import numpy as np
import polars as pl
import pytest
from astropy.io import fits

from colphot.references.load import validate_references
from colphot.references.select import on_tile
from colphot.sim import BAND_SPECS, MASK_PLANES, GriddedPsf, make_survey, tract_wcs
from colphot.tile.fits import read_tile
from colphot.tile.write import write_tile

SHAPE = (40, 50)


def _planes(seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.normal(0.0, 3.0, SHAPE)
    variance = np.full(SHAPE, 9.0)
    mask = rng.integers(0, 1 << 9, SHAPE).astype(np.int32)
    return image, variance, mask


def test_write_tile_layout_with_psf_cube(tmp_path):
    image, variance, mask = _planes()
    psf = GriddedPsf.regular(SHAPE, lambda u, v: 1.6 + 0.3 * u + 0.2 * v, n=2)
    path = tmp_path / "sub" / "tile.fits"
    write_tile(path, image, variance=variance, mask=mask, mask_planes=MASK_PLANES,
               wcs=tract_wcs(SHAPE), psf_images=psf.images(),
               psf_grid=(psf.sample_x, psf.sample_y), band="g", tract=0, patch=3,
               xy0=(900, 1800), bunit="nJy")
    assert sorted(p.name for p in path.parent.iterdir()) == ["tile.fits"]
    with fits.open(path) as hdul:
        names = [h.header.get("EXTNAME") for h in hdul[1:]]
        assert names == ["IMAGE", "MASK", "VARIANCE", "PSF", "PSF_GRID"]
        assert [h.header.get("EXTTYPE") for h in hdul[1:]] == names
        assert hdul[0].data is None
        assert (hdul[0].header["BAND"], hdul[0].header["TRACT"], hdul[0].header["PATCH"]) \
            == ("g", 0, 3)
        for name in ("IMAGE", "MASK", "VARIANCE"):
            h = hdul[name].header
            assert (h["LTV1"], h["LTV2"]) == (-900, -1800)
            assert h["CTYPE1"] == "RA---TAN" and h["CTYPE2"] == "DEC--TAN"
        assert hdul["IMAGE"].header["BUNIT"] == "nJy" and "MAGZERO" not in hdul["IMAGE"].header
        assert hdul["IMAGE"].data.dtype == np.dtype(">f4")
        assert hdul["VARIANCE"].data.dtype == np.dtype(">f4")
        assert hdul["MASK"].data.dtype == np.dtype(">i4")
        np.testing.assert_array_equal(hdul["MASK"].data, mask)
        for plane, bit in MASK_PLANES.items():
            assert hdul["MASK"].header[f"MP_{plane}"] == bit
        assert hdul["PSF"].data.shape == (4, psf.size, psf.size)
        grid = hdul["PSF_GRID"].data
        assert grid.columns["x"].format == "D" and grid.columns["y"].format == "D"
        np.testing.assert_array_equal(grid["x"], [0.0, 49.0, 0.0, 49.0])
        np.testing.assert_array_equal(grid["y"], [0.0, 0.0, 39.0, 39.0])

    tile = read_tile(path)
    assert tile.xy0 == (900, 1800) and tile.mask_planes == MASK_PLANES
    assert (tile.band, tile.tract, tile.patch, tile.flux_scale) == ("g", 0, 3, 1.0)
    np.testing.assert_allclose(tile.image, image.astype(np.float32))
    np.testing.assert_allclose(tile.psf.images, psf.images() / psf.images().sum(axis=(1, 2),
                                                                             keepdims=True))


def test_write_tile_magzero_constant_psf_no_mask(tmp_path):
    image, variance, _ = _planes(1)
    path = tmp_path / "tile.fits"
    write_tile(path, image, variance=variance, wcs=tract_wcs(SHAPE),
               psf_images=GriddedPsf.regular(SHAPE, lambda u, v: 2.0 + 0 * u).images()[0],
               magzero=27.0)
    with fits.open(path) as hdul:
        assert [h.header.get("EXTNAME") for h in hdul[1:]] == ["IMAGE", "VARIANCE", "PSF"]
        assert hdul["IMAGE"].header["MAGZERO"] == 27.0 and "BUNIT" not in hdul["IMAGE"].header
        assert "BAND" not in hdul[0].header
        assert (hdul["IMAGE"].header["LTV1"], hdul["IMAGE"].header["LTV2"]) == (0, 0)
    tile = read_tile(path)
    per_count = 10 ** (-0.4 * (27.0 - 31.4))
    assert tile.flux_scale == pytest.approx(per_count)
    np.testing.assert_allclose(tile.image, image * per_count, rtol=1e-6)
    assert tile.mask is None and tile.psf.images.shape[0] == 1


def test_write_tile_to_fsspec_url():
    image, variance, mask = _planes(2)
    url = f"memory://colphot-test-{uuid.uuid4().hex}/t.fits"
    write_tile(url, image, variance=variance, mask=mask, wcs=tract_wcs(SHAPE), band="r")
    with fsspec.open(url, "rb") as f, fits.open(f) as hdul:
        assert hdul[0].header["BAND"] == "r"
        np.testing.assert_array_equal(hdul["MASK"].data, mask)
    fsspec.filesystem("memory").rm(url.split("://", 1)[1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(bunit="nJy", magzero=27.0), "bunit or magzero"),
        (dict(psf_images=np.ones((4, 5, 5))), "psf_grid: required"),
        (dict(psf_images=np.ones((4, 5, 5)), psf_grid=([0, 1], [0, 1])), "expected 4 x and y"),
        (dict(psf_images=np.ones((6, 6))), "k odd"),
        (dict(mask=np.zeros((3, 3), np.int32)), "mask: shape"),
        (dict(mask=np.zeros(SHAPE)), "integer bit planes"),
        (dict(mask=np.zeros(SHAPE, np.int32), mask_planes={"BAD": 31}), r"\[0, 30\]"),
    ],
)
def test_write_tile_rejects_bad_input(tmp_path, kwargs, match):
    image, variance, _ = _planes()
    with pytest.raises(ValueError, match=match):
        write_tile(tmp_path / "x.fits", image, variance=variance, wcs=tract_wcs(SHAPE), **kwargs)
    assert not list(tmp_path.iterdir())


TINY = dict(bands=("r", "i"), n_patches=(2, 2), patch_size=160, overlap=20, n_stars=12,
            n_galaxies=10, n_blends=3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("survey")
    return make_survey(root, seed=5, **TINY)


def test_survey_file_tree(tiny):
    from pathlib import Path

    root = Path(tiny.root)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    expected = sorted(
        [f"tiles/{b}/0/{p}.fits" for b in ("r", "i") for p in range(4)]
        + [f"refs/tract=0/patch={p}/part-0.parquet" for p in range(4)]
        + [f"in_band/band={b}/tract=0/patch={p}/part-0.parquet" for b in ("r", "i")
           for p in range(4)]
        + ["truth.parquet"]
    )
    assert files == expected
    assert tiny.tile_paths == [tiny.tiles_template.format(band=b, tract=0, patch=p)
                               for b in ("r", "i") for p in range(4)]
    assert tiny.in_band_template.format(band="i", tract=0, patch=3) \
        == str(root / "in_band/band=i/tract=0/patch=3/part-0.parquet")
    assert tiny.in_band_root == str(root / "in_band")
    assert tiny.tract_shape == (300, 300) and tiny.patches == [0, 1, 2, 3]


def test_survey_references_and_truth(tiny):
    refs = pl.scan_parquet(tiny.refs_root, hive_partitioning=True).collect()
    refs = validate_references(refs)
    assert refs["id"].is_unique().all() and refs.height == tiny.n_objects
    assert refs["detect_isPrimary"].all()
    assert set(refs["refBand"]) == {"r"} and set(refs["tract"]) == {0}
    assert (refs["shape_xx"] > 0).all() and (refs["shape_yy"] > 0).all()
    # partition files hold no partition columns
    part = pl.read_parquet(f"{tiny.refs_root}/tract=0/patch=0/part-0.parquet")
    assert "patch" not in part.columns and "tract" not in part.columns

    truth = pl.read_parquet(tiny.truth_path)
    assert {"id", "is_star", "r_flux_true", "i_flux_true", "parent", "blend_size",
            "designed_blend", "neighbour_flux_ratio", "neighbour_sep_fwhm"} <= set(truth.columns)
    assert sorted(truth["id"]) == sorted(refs["id"])
    # the reference catalog names each child's blend parent, as the truth does
    joined = refs.join(truth, on="id", suffix="_truth")
    assert (joined["parent"] == joined["parent_truth"]).all()
    assert set(truth["defect"]) >= {"", "bad_column", "saturated", "no_data", "edge"}
    field = truth.filter(pl.col("is_star") & (pl.col("defect") == "") & ~pl.col("designed_blend"))
    assert field.height == 12 and (field["r_flux_true"] > 10 ** (-0.4 * (24 - 31.4)) * 0.999).all()
    # 3 designed groups: 2 pairs and a triple, stars only
    designed = truth.filter(pl.col("designed_blend"))
    assert designed.height == 7 and designed["is_star"].all()
    assert (designed["defect"] == "").all() and (designed["parent"] > 0).all()

    for patch in tiny.patches:
        tile = read_tile(tiny.tiles_template.format(band="r", tract=0, patch=patch))
        mine = refs.filter(pl.col("patch") == patch)
        kept, x, y = on_tile(mine, tile.wcs, tile.shape)
        assert kept.height == mine.height  # every reference is on its own patch's tile
        # ... and away from the overlap with the neighbours (inner region, overlap 20 px)
        assert np.all(((x > 9) | (tile.xy0[0] == 0)) & ((y > 9) | (tile.xy0[1] == 0)))


def test_survey_tiles_are_calibrated(tiny):
    r = read_tile(tiny.tiles_template.format(band="r", tract=0, patch=0))
    i = read_tile(tiny.tiles_template.format(band="i", tract=0, patch=0))
    assert r.flux_scale == 1.0 and r.flux_unit == "nJy"
    with fits.open(tiny.tiles_template.format(band="i", tract=0, patch=0)) as hdul:
        assert hdul["IMAGE"].header["MAGZERO"] == 27.0
    assert i.flux_scale == pytest.approx(10 ** (-0.4 * (27.0 - 31.4)))
    assert r.xy0 == (0, 0) and i.psf.images.shape[0] == 9
    tile = read_tile(tiny.tiles_template.format(band="i", tract=0, patch=3))
    assert tile.xy0 == (140, 140)
    quiet = (tile.mask == 0)
    # sky noise, in nJy after the reader's MAGZERO conversion
    assert np.median(np.sqrt(tile.variance[quiet])) == pytest.approx(BAND_SPECS["i"].sky_sigma,
                                                                    rel=1e-3)
    assert np.std(tile.image[quiet]) == pytest.approx(BAND_SPECS["i"].sky_sigma, rel=0.1)


def test_survey_is_deterministic(tiny, tmp_path):
    again = make_survey(tmp_path, seed=5, **TINY)
    assert pl.read_parquet(again.truth_path).equals(pl.read_parquet(tiny.truth_path))
    for a, b in zip(tiny.tile_paths, again.tile_paths, strict=True):
        with fits.open(a) as ha, fits.open(b) as hb:
            np.testing.assert_array_equal(ha["IMAGE"].data, hb["IMAGE"].data)
    mine = pl.scan_parquet(f"{tiny.in_band_root}/**/*.parquet", hive_partitioning=True)
    theirs = pl.scan_parquet(f"{again.in_band_root}/**/*.parquet", hive_partitioning=True)
    key = ["band", "patch", "id"]
    assert mine.collect().sort(key).equals(theirs.collect().sort(key))
    other = make_survey(tmp_path / "other", seed=6, **TINY)
    assert not pl.read_parquet(other.truth_path).equals(pl.read_parquet(tiny.truth_path))


def test_designed_blends_leave_the_field_as_it_was(tiny, tmp_path):
    """Adding designed blends changes neither the field objects nor their ids."""
    plain = make_survey(tmp_path, seed=5, **{**TINY, "n_blends": 0})
    without = pl.read_parquet(plain.truth_path)
    with_blends = pl.read_parquet(tiny.truth_path)
    assert not without["designed_blend"].any()
    cols = ["id", "x_tract", "y_tract", "r_flux_true", "i_flux_true", "intrinsic_xy", "defect"]
    assert with_blends.filter(~pl.col("designed_blend")).select(cols).equals(without.select(cols))


def test_make_survey_rejects_unknown_band(tmp_path):
    with pytest.raises(ValueError, match="bands: expected some of"):
        make_survey(tmp_path, bands=("q",))


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(n_blends=-1), "n_blends: expected a count"),
    (dict(n_patches=1, patch_size=100, overlap=0, n_blends=1), "n_blends: no room"),
])
def test_make_survey_rejects_bad_blends(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_survey(tmp_path, bands=("r",), n_stars=1, n_galaxies=1, **kwargs)
