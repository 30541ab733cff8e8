"""colphot.sim.blends and the survey's blends: detection discs, families, heavy footprints.

The checks are made from the outside: flux conservation of the children against the parent's
pixels, the exact split of noise-free light, the tiles' own pixels and masks read back with
colphot's reader, separations recomputed from the truth positions, connected components
against a brute-force graph.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from scipy.sparse.csgraph import connected_components

from colphot.references.select import on_tile
from colphot.sim import (
    BAND_SPECS,
    MASK_PLANES,
    GriddedPsf,
    Sources,
    blend_families,
    footprint_radius,
    gaussian,
    in_band_frame,
    make_survey,
    render_boxes,
    render_model,
    render_tile,
)
from colphot.tile.fits import read_tile

EPS32 = float(np.finfo(np.float32).eps)
IN_BAND_YAML = Path(__file__).resolve().parents[2] / "catalogs" / "in_band.yaml"
#: One tract of 2 x 1 patches of 420 px (760 x 420 px), a band in nJy and one in counts.
SMALL = dict(seed=11, bands=("r", "i"), n_patches=(2, 1), patch_size=420, overlap=40,
             n_stars=40, n_galaxies=30, n_blends=6)
FIRST_PARENT = 2_000_000_000


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_survey(tmp_path_factory.mktemp("blends"), **SMALL)


@pytest.fixture(scope="module")
def truth(small):
    return pl.read_parquet(small.truth_path)


@pytest.fixture(scope="module")
def in_band(small):
    return pl.scan_parquet(f"{small.in_band_root}/**/*.parquet", hive_partitioning=True).collect()


def _partitions(small):
    for band in small.bands:
        for patch in small.patches:
            yield band, patch


def _box(row: dict) -> tuple[np.ndarray, np.ndarray]:
    """Mask and flux of an in-band row as (height, width) arrays."""
    shape = (row["footprint_height"], row["footprint_width"])
    return (np.asarray(row["footprint_mask"], dtype=bool).reshape(shape),
            np.asarray(row["footprint_flux"], dtype=np.float32).reshape(shape))


# --------------------------------------------------------------------------------------------
# footprint_radius, blend_families


def test_footprint_radius_reaches_the_threshold_isophote():
    flux = np.array([2e5, 5e4, 10.0])
    qxx, qyy = np.array([0.0, 6.0, 0.0]), np.array([0.0, 2.0, 0.0])
    sigma, sky = 1.8, 9.0
    r = footprint_radius(flux, qxx, qyy, sigma, sky, threshold=2.0, grow=3.0)
    q = 0.5 * (qxx + qyy)
    # at r - grow the object's circularised double-Gaussian profile (core and wing) is at 2 sky
    # sigmas per pixel
    for k in range(2):
        d = np.array(r[k] - 3.0)
        level = flux[k] * (0.9 * gaussian(d, np.array(0.0), sigma**2 + q[k], sigma**2 + q[k])
                           + 0.1 * gaussian(d, np.array(0.0), 4 * sigma**2 + q[k],
                                            4 * sigma**2 + q[k]))
        assert level == pytest.approx(2.0 * sky, rel=1e-9)
    # the faint one gets the default minimum, 2 FWHM of the PSF core
    assert r[2] == pytest.approx(2 * 2.355 * sigma)
    assert footprint_radius(10.0, 0.0, 0.0, sigma, sky, minimum=1.5)[0] == pytest.approx(2.0)


def test_blend_families_chain_and_isolated():
    # a chain of three discs, each overlapping the next (not the first and the third), and one
    # far away; given first so that the chain is family 1
    x = np.array([100.0, 0.0, 9.0, 18.0])
    y = np.array([0.0, 0.0, 0.0, 0.0])
    labels = blend_families(x, y, np.full(4, 5.0))
    np.testing.assert_array_equal(labels, [0, 1, 1, 1])
    assert labels.dtype == np.int64
    # discs that only touch (distance == sum of radii) do not overlap
    np.testing.assert_array_equal(blend_families([0.0, 10.0], [0.0, 0.0], [5.0, 5.0]), [0, 1])
    assert blend_families(np.zeros(0), np.zeros(0), np.zeros(0)).shape == (0,)


def test_blend_families_match_connected_components():
    rng = np.random.default_rng(4)
    n = 700
    x, y = rng.uniform(0, 900, n), rng.uniform(0, 900, n)
    r = rng.uniform(3, 25, n)
    labels = blend_families(x, y, r, chunk=64)
    graph = np.hypot(x[:, None] - x, y[:, None] - y) < r[:, None] + r
    k, expected = connected_components(graph, directed=False)
    assert labels.max() + 1 == k
    # same partition: a one-to-one map between the two labellings
    pairs = set(zip(labels.tolist(), expected.tolist(), strict=True))
    assert len(pairs) == k
    # families are numbered in the order of their first object
    first = [int(np.flatnonzero(labels == f)[0]) for f in range(k)]
    assert first == sorted(first)


# --------------------------------------------------------------------------------------------
# render_boxes and in_band_frame on hand-made scenes


def _psf(shape):
    return GriddedPsf.regular(shape, lambda u, v: 1.6 + 0.5 * u + 0.3 * v)


def test_box_render_equals_the_full_tile_render():
    shape = (90, 120)
    psf = _psf(shape)
    src = Sources([30.3, 61.7, 118.2], [40.6, 44.1, 3.0], [1e4, 3e3, 5e3],
                  [0.0, 4.0, 0.0], [0.0, 2.5, 0.0], [0.0, 1.2, 0.0])
    boxes = np.array([[25, 10, 30, 40], [20, 40, 50, 45], [-5, 100, 20, 30]])
    stamps = render_boxes(boxes, src, psf)
    for k, (i0, j0, h, w) in enumerate(boxes):
        alone = Sources(src.x[k:k + 1], src.y[k:k + 1], src.flux[k:k + 1], src.qxx[k:k + 1],
                        src.qyy[k:k + 1], src.qxy[k:k + 1])
        # the full render padded by the box reach beyond the tile (third box)
        pad = 10
        full = np.pad(np.zeros(shape), pad)
        full[pad:-pad, pad:-pad] = render_model(shape, alone, psf)
        big = render_model((shape[0] + 2 * pad, shape[1] + 2 * pad),
                           Sources(alone.x + pad, alone.y + pad, alone.flux, alone.qxx,
                                   alone.qyy, alone.qxy),
                           GriddedPsf(psf.nodes_x + pad, psf.nodes_y + pad, psf.sigma, psf.size))
        region = big[i0 + pad:i0 + pad + h, j0 + pad:j0 + pad + w]
        assert stamps[k].shape == (h, w) and stamps[k].max() > 0
        np.testing.assert_allclose(stamps[k], region, rtol=1e-10, atol=1e-10 * region.max())
        on_tile = full[i0 + pad:i0 + pad + h, j0 + pad:j0 + pad + w]
        inside = on_tile > 0
        np.testing.assert_allclose(stamps[k][inside], on_tile[inside], rtol=1e-10)


def test_children_split_the_parent_by_the_full_tile_models():
    """Each child's value is the pixel times its model over the blend's model, with the
    models rendered on the whole tile."""
    shape = (80, 100)
    psf = _psf(shape)
    src = Sources([40.2, 47.9, 52.0, 90.0], [38.4, 41.3, 30.0, 70.0], [2e4, 8e3, 5e3, 1e4],
                  [0.0, 0.0, 5.0, 0.0], [0.0, 0.0, 3.0, 0.0], [0.0, 0.0, -1.0, 0.0])
    ids, parents = np.array([11, 12, 13, 14]), np.array([77, 77, 77, 0])
    radius = np.array([9.0, 8.0, 10.0, 9.0])
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 10.0, shape).astype(np.float32) \
        + render_model(shape, src, psf).astype(np.float32)
    frame = in_band_frame(image, src, psf, ids, parents, radius, band="g", tract=2, patch=5,
                          xy0=(1000, 2000))
    assert frame["id"].to_list() == [11, 12, 13, 14, 77]
    rows = {r["id"]: r for r in frame.iter_rows(named=True)}
    alone = [render_model(shape, Sources(src.x[k:k + 1], src.y[k:k + 1], src.flux[k:k + 1],
                                         src.qxx[k:k + 1], src.qyy[k:k + 1], src.qxy[k:k + 1]),
                          psf) for k in range(3)]
    total = sum(alone)
    parent = rows[77]
    y0, x0 = parent["footprint_y0"] - 2000, parent["footprint_x0"] - 1000
    mask, flux = _box(parent)
    box = np.s_[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]]
    np.testing.assert_array_equal(flux, np.where(mask, image[box], 0))
    # the parent's mask is the union of the members' discs
    yy, xx = np.mgrid[box]
    union = np.zeros(mask.shape, bool)
    for k in range(3):
        union |= (xx - src.x[k]) ** 2 + (yy - src.y[k]) ** 2 <= radius[k] ** 2
    np.testing.assert_array_equal(mask, union)
    for k, obj in enumerate((11, 12, 13)):
        row = rows[obj]
        assert row["parent"] == 77
        assert (row["footprint_x0"], row["footprint_y0"]) \
            == (parent["footprint_x0"], parent["footprint_y0"])
        cmask, cflux = _box(row)
        np.testing.assert_array_equal(cmask, mask)
        expected = np.where(mask, image[box] * alone[k][box] / total[box], 0.0)
        np.testing.assert_allclose(cflux, expected, rtol=2 * EPS32, atol=1e-30)
    assert rows[14]["parent"] == 0 and (rows[14]["band"], rows[14]["tract"]) == ("g", 2)


def test_noise_free_blend_splits_into_the_true_fluxes():
    """Without noise the children's heavy footprints hold their own light, so their sums are
    the true fluxes when the footprint holds all of it."""
    shape = (90, 130)
    psf = _psf(shape)
    fwhm = 2.355 * 2.4
    flux = np.array([8e4, 1.5e4, 3e4])
    x = np.array([40.3, 40.3 + 2.0 * fwhm, 95.0])
    y = np.array([40.2, 40.2 + 0.5 * fwhm, 55.0])
    src = Sources(x, y, flux)
    arrays = render_tile(shape, src, psf, sky_sigma=1e-6, gain=1e15,
                         rng=np.random.default_rng(1))
    radius = footprint_radius(flux, 0.0, 0.0, 2.4, 1e-6)
    frame = in_band_frame(arrays.image, src, psf, [5, 6, 7], [9, 9, 0], radius, band="r",
                          tract=0, patch=0, xy0=(0, 0))
    sums = {r["id"]: float(np.sum(r["footprint_flux"], dtype=np.float64))
            for r in frame.iter_rows(named=True)}
    assert sums[5] == pytest.approx(flux[0], rel=1e-3)
    assert sums[6] == pytest.approx(flux[1], rel=1e-3)
    assert sums[9] == pytest.approx(flux[0] + flux[1], rel=1e-3)
    assert sums[7] == pytest.approx(flux[2], rel=1e-3)  # isolated: its own disc


def test_in_band_frame_edges_schema_and_nan():
    shape = (50, 60)
    psf = _psf(shape)
    # 0: isolated, clipped by the left edge; 1: isolated, off the tile; 2/3: a blend whose
    # member 3 lies off the tile (its disc misses it) while member 2 is on it
    src = Sources([1.0, -30.0, 57.0, 70.5], [25.0, 25.0, 10.0, 10.0], [1e4] * 4)
    radius = np.array([6.0, 6.0, 7.0, 7.0])
    image = render_model(shape, src, psf).astype(np.float32)
    image[:5, :] = np.nan  # a NO_DATA strip under the blend's footprint
    frame = in_band_frame(image, src, psf, [1, 2, 3, 4], [0, 0, 50, 50], radius, band="z",
                          tract=7, patch=3, xy0=(10, 20))
    assert frame["id"].to_list() == [1, 3, 4, 50]
    definition = yaml.safe_load(IN_BAND_YAML.read_text())
    names = {"int64": pl.Int64, "int32": pl.Int32, "str": pl.String,
             "list[bool]": pl.List(pl.Boolean), "list[float32]": pl.List(pl.Float32)}
    assert dict(frame.schema) == {c["name"]: names[c["dtype"]] for c in definition["columns"]}
    assert frame.columns == [c["name"] for c in definition["columns"]]
    rows = {r["id"]: r for r in frame.iter_rows(named=True)}
    # clipped at the tile's left edge, in the parent frame
    assert rows[1]["footprint_x0"] == 10 and rows[1]["footprint_width"] == 8
    for row in rows.values():
        assert row["footprint_x0"] >= 10 and row["footprint_y0"] >= 20
        assert row["footprint_x0"] + row["footprint_width"] <= 10 + shape[1]
        assert row["footprint_y0"] + row["footprint_height"] <= 20 + shape[0]
        assert len(row["footprint_mask"]) == row["footprint_width"] * row["footprint_height"]
    mask, flux = _box(rows[50])
    _, child = _box(rows[4])
    # NO_DATA pixels stay in the footprint with their NaN; the off-tile child gets its share
    assert np.isnan(flux[mask]).any() and (np.isnan(flux) == np.isnan(child)).all()
    assert np.nansum(child) > 0
    assert not np.isnan(flux[~mask]).any() and (flux[~mask] == 0).all()
    empty = in_band_frame(image, Sources([], [], []), psf, [], [], [], band="z", tract=7,
                          patch=3, xy0=(0, 0))
    assert empty.height == 0 and empty.schema == frame.schema
    with pytest.raises(ValueError, match="parent id is also an object id"):
        in_band_frame(image, src, psf, [1, 2, 3, 4], [0, 0, 4, 4], radius, band="z", tract=7,
                      patch=3, xy0=(0, 0))


# --------------------------------------------------------------------------------------------
# the survey's in-band catalogs


def test_survey_in_band_partitions(small, truth, in_band):
    """(c) every reference object on a tile has one row there; parents have rows; boxes fit."""
    refs = pl.scan_parquet(small.refs_root, hive_partitioning=True).collect()
    parent_ids = set(truth.filter(pl.col("parent") > 0)["parent"].to_list())
    assert parent_ids and min(parent_ids) >= FIRST_PARENT
    assert not refs["id"].is_in(list(parent_ids)).any()  # parents are not reference rows
    for band, patch in _partitions(small):
        path = small.in_band_template.format(band=band, tract=0, patch=patch)
        raw = pl.read_parquet(path)
        assert not {"band", "tract", "patch"} & set(raw.columns)
        part = in_band.filter((pl.col("band") == band) & (pl.col("patch") == patch))
        assert part.height == raw.height and (part["tract"] == 0).all()
        assert part["id"].is_unique().all() and part["id"].is_sorted()
        tile = read_tile(small.tiles_template.format(band=band, tract=0, patch=patch))
        kept, _, _ = on_tile(refs, tile.wcs, tile.shape)
        counts = part.group_by("id").len()
        on = kept.join(counts, on="id", how="left")
        assert on["len"].to_list() == [1] * kept.height, (band, patch)
        # children carry their reference parent, and every parent has a top-level row
        children = part.filter(pl.col("parent") != 0)
        assert set(children["parent"].to_list()) <= set(
            part.filter(pl.col("parent") == 0)["id"].to_list())
        ref_parent = children.join(refs.select("id", pl.col("parent").alias("ref_parent")),
                                   on="id")
        assert ref_parent.height == children.height
        assert (ref_parent["parent"] == ref_parent["ref_parent"]).all()
        x0, y0 = tile.xy0
        ny, nx = tile.shape
        w, h = part["footprint_width"].to_numpy(), part["footprint_height"].to_numpy()
        assert (part["footprint_mask"].list.len().to_numpy() == w * h).all()
        assert (part["footprint_flux"].list.len().to_numpy() == w * h).all()
        fx, fy = part["footprint_x0"].to_numpy(), part["footprint_y0"].to_numpy()
        assert (w >= 1).all() and (h >= 1).all()
        assert (fx >= x0).all() and (fy >= y0).all()
        assert (fx + w <= x0 + nx).all() and (fy + h <= y0 + ny).all()
        assert part["footprint_mask"].list.any().all()


def test_survey_flux_conservation_and_observed_pixels(small, in_band):
    """(a) children sum to their parent's pixels; top-level rows are the tile's pixels."""
    n_blends = 0
    for band, patch in _partitions(small):
        tile = read_tile(small.tiles_template.format(band=band, tract=0, patch=patch))
        image = tile.image  # nJy: the reader applies MAGZERO
        x0, y0 = tile.xy0
        part = in_band.filter((pl.col("band") == band) & (pl.col("patch") == patch))
        rows = {r["id"]: r for r in part.iter_rows(named=True)}
        kids: dict[int, list[dict]] = {}
        for row in rows.values():
            if row["parent"]:
                kids.setdefault(row["parent"], []).append(row)
        for row in rows.values():
            if row["parent"]:
                continue
            mask, flux = _box(row)
            i, j = row["footprint_y0"] - y0, row["footprint_x0"] - x0
            pixels = image[i:i + mask.shape[0], j:j + mask.shape[1]]
            np.testing.assert_allclose(flux[mask], pixels[mask], rtol=4 * EPS32, atol=0)
            assert (flux[~mask] == 0).all()
            if row["id"] not in kids:
                continue
            n_blends += 1
            total = np.zeros(mask.shape)
            for kid in kids[row["id"]]:
                kmask, kflux = _box(kid)
                assert (kid["footprint_x0"], kid["footprint_y0"]) \
                    == (row["footprint_x0"], row["footprint_y0"])
                np.testing.assert_array_equal(kmask, mask)
                total += kflux.astype(np.float64)
            finite = np.isfinite(flux)
            np.testing.assert_array_equal(np.isfinite(total), finite)
            err = np.abs(total[finite] - flux[finite])
            assert (err <= 4 * EPS32 * np.abs(flux[finite].astype(np.float64))).all()
    assert n_blends >= 10


def test_survey_designed_blends(small, truth):
    """(d) designed groups: separations 1-3 FWHM, flux ratios 1-20, consistent truth."""
    fwhm = 2.355 * max(BAND_SPECS["r"].psf_sigma)
    designed = truth.filter(pl.col("designed_blend"))
    assert designed.height == 4 * 2 + 2 * 3 and designed["is_star"].all()
    # blend truth is consistent: sizes count members, isolated objects have no neighbour
    sizes = truth.filter(pl.col("parent") > 0).group_by("parent").len()
    check = truth.join(sizes, on="parent", how="left")
    blended = check.filter(pl.col("parent") > 0)
    assert (blended["blend_size"] == blended["len"]).all() and (blended["len"] >= 2).all()
    alone = truth.filter(pl.col("parent") == 0)
    assert (alone["blend_size"] == 1).all()
    assert alone["neighbour_sep_fwhm"].is_nan().all()
    assert alone["neighbour_flux_ratio"].is_nan().all()
    assert not blended["neighbour_sep_fwhm"].is_nan().any()

    pure = (truth.group_by("parent").agg(pl.col("designed_blend").all().alias("pure"),
                                         pl.len().alias("n"))
            .filter((pl.col("parent") > 0) & pl.col("pure")))
    assert pure.height >= 4 and set(pure["n"].to_list()) <= {2, 3}
    bright = 10 ** (-0.4 * (np.array([20.5, 18.0]) - 31.4))
    for parent in pure["parent"].to_list():
        group = truth.filter(pl.col("parent") == parent)
        x, y = group["x_tract"].to_numpy(), group["y_tract"].to_numpy()
        flux = group["r_flux_true"].to_numpy()
        d = np.hypot(x[:, None] - x, y[:, None] - y) / fwhm
        np.fill_diagonal(d, np.inf)
        near = d.argmin(axis=1)
        np.testing.assert_allclose(group["neighbour_sep_fwhm"].to_numpy(), d.min(axis=1))
        np.testing.assert_allclose(group["neighbour_flux_ratio"].to_numpy(), flux[near] / flux)
        assert (d.min(axis=1) >= 1 - 1e-9).all() and (d.min(axis=1) <= 3 + 1e-9).all()
        assert bright[0] * 0.999 <= flux.max() <= bright[1] * 1.001
        assert flux.max() / flux.min() <= 20 * (1 + 1e-9)
        if group.height == 2:
            ratio = group["neighbour_flux_ratio"].to_numpy()
            assert ratio[0] * ratio[1] == pytest.approx(1.0)
            assert group["neighbour_sep_fwhm"][0] == pytest.approx(group["neighbour_sep_fwhm"][1])


def test_survey_designed_blends_avoid_edges_and_no_data(small, truth):
    """Designed stars lie 60 px or more from the tract edge and from any NO_DATA pixel."""
    ny, nx = small.tract_shape
    no_data = np.zeros(small.tract_shape, dtype=bool)
    for patch in small.patches:
        tile = read_tile(small.tiles_template.format(band="r", tract=0, patch=patch))
        x0, y0 = tile.xy0
        h, w = tile.shape
        no_data[y0:y0 + h, x0:x0 + w] |= (tile.mask & (1 << MASK_PLANES["NO_DATA"])) != 0
    assert no_data.any()
    yy, xx = np.nonzero(no_data)
    designed = truth.filter(pl.col("designed_blend"))
    for x, y in designed.select("x_tract", "y_tract").iter_rows():
        assert 60 <= x <= nx - 61 and 60 <= y <= ny - 61
        assert math.sqrt(((xx - x) ** 2 + (yy - y) ** 2).min()) >= 60 - 0.5
