"""Deblended measurement: in-band footprints joined on id, noise replacement, undeblended copies.

Truth here is independent of colphot's kernels: an explicit LSST-style NoiseReplacer written
out in the test (replace every top-level footprint with the noise, insert one source's heavy
footprint, measure it alone with the plain code path, put the noise back), simulated stars of
known flux, and the plain measurement for isolated sources.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import colphot
from colphot.config import ForcedPhotConfig
from colphot.exceptions import MissingReferenceError, ReferenceCatalogError
from colphot.references.select import on_tile
from colphot.table.deblend import prepare_deblend
from colphot.table.forced import spatial_order, strip_height

RADIUS = 9.0
PARENT0 = 10_000


def _disc(xc, yc, r, x0, y0, w, h):
    yy, xx = np.mgrid[y0:y0 + h, x0:x0 + w]
    return (xx - xc) ** 2 + (yy - yc) ** 2 <= r * r


def _lists(parts, dtype, valid=None):
    lengths = np.array([np.size(p) for p in parts])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = pa.array(np.concatenate([np.ravel(p) for p in parts]).astype(dtype))
    mask = None if valid is None else pa.array(~np.asarray(valid, dtype=bool))
    return pl.Series(pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask))


def in_band_frame(image, x, y, ids, families, models=None, *, xy0=(0, 0), radius=RADIUS,
                  parent_values=True, band="r", tract=9813, patch=42):
    """Footprints of discs of ``radius`` around each source; ``families`` lists groups of
    indices that blend (one parent each). A child's values are the observed pixels split by
    the true ``models`` (a perfect flux-conserving deblender); without models, 0.6 x the
    observed pixels (any values will do for the equivalence tests)."""
    rows = []
    in_family = {i for fam in families for i in fam}

    def box(members):
        x0 = int(np.floor(min(x[i] for i in members) - radius)) - 2
        y0 = int(np.floor(min(y[i] for i in members) - radius)) - 2
        x1 = int(np.ceil(max(x[i] for i in members) + radius)) + 3
        y1 = int(np.ceil(max(y[i] for i in members) + radius)) + 3
        return x0, y0, x1 - x0, y1 - y0

    def add(oid, parent, b, mask, values):
        rows.append((oid, parent, b[0] + xy0[0], b[1] + xy0[1], b[2], b[3], mask, values))

    for i in range(len(x)):
        if i in in_family:
            continue
        b = box([i])
        m = _disc(x[i], y[i], radius, *b)
        obs = image[b[1]:b[1] + b[3], b[0]:b[0] + b[2]]
        add(int(ids[i]), 0, b, m, np.where(m, obs, 0) if parent_values else None)
    for k, fam in enumerate(families):
        b = box(fam)
        m = np.zeros((b[3], b[2]), bool)
        for i in fam:
            m |= _disc(x[i], y[i], radius, *b)
        obs = image[b[1]:b[1] + b[3], b[0]:b[0] + b[2]].astype(np.float64)
        add(PARENT0 + k, 0, b, m, np.where(m, obs, 0) if parent_values else None)
        total = sum(models[i][b[1]:b[1] + b[3], b[0]:b[0] + b[2]] for i in fam) \
            if models is not None else None
        for i in fam:
            if models is None:
                vals = 0.6 * obs
            else:
                mod = models[i][b[1]:b[1] + b[3], b[0]:b[0] + b[2]]
                vals = obs * np.divide(mod, total, out=np.zeros_like(mod), where=total > 0)
            add(int(ids[i]), PARENT0 + k, b, m, np.where(m, vals, 0))
    has = [r[7] is not None for r in rows]
    return pl.DataFrame({
        "id": np.array([r[0] for r in rows], np.int64),
        "band": band, "tract": tract, "patch": patch,
        "parent": np.array([r[1] for r in rows], np.int64),
        "footprint_x0": np.array([r[2] for r in rows], np.int64),
        "footprint_y0": np.array([r[3] for r in rows], np.int64),
        "footprint_width": np.array([r[4] for r in rows], np.int32),
        "footprint_height": np.array([r[5] for r in rows], np.int32),
        "footprint_mask": _lists([r[6] for r in rows], np.bool_),
        "footprint_flux": _lists([r[7] if r[7] is not None else np.zeros(0) for r in rows],
                                 np.float32, valid=has),
    })


@pytest.fixture(scope="module")
def scene(sim):
    """A 16-star grid tile with a companion added to six stars (six blended pairs)."""
    c = sim
    s = c.make_sim_tile(n_side=4, spacing=60, margin=80, flux_range=(500.0, 5000.0), seed=5,
                        xy0=(300, 700))
    rng = np.random.default_rng(11)
    n0 = s.x.size
    x = np.concatenate([s.x, s.x[:6] + rng.uniform(3, 5, 6)])
    y = np.concatenate([s.y, s.y[:6] + rng.uniform(-2, 2, 6)])
    flux = np.concatenate([s.flux, s.flux[:6] * rng.uniform(0.1, 1.0, 6)])
    models = [c.render(s.tile.shape, x[i], y[i], flux[i]) for i in range(x.size)]
    image = sum(models) + rng.normal(0.0, 1.0, s.tile.shape)
    tile = dataclasses.replace(s.tile, image=image.astype(np.float32))
    refs = c.refs_at(tile.wcs, x, y, first_id=1)
    families = [[k, n0 + k] for k in range(6)]
    return dict(tile=tile, refs=refs, x=x, y=y, flux=flux, models=models, families=families,
                image=image)


def _measured_order(tile, refs, config):
    kept, xs, ys = on_tile(refs, tile.wcs, tile.shape)
    order = spatial_order(xs, ys, strip=strip_height(config))
    return kept[order], order


def _numeric(df):
    return [c for c in df.columns if df.schema[c].is_numeric()
            and c not in ("objectId", "parentObjectId", "tract", "patch")]


@pytest.mark.parametrize("method", ["exact", "subpixel"])
def test_equals_explicit_noise_replacer(scene, method):
    """Every plugin's value equals the plain measurement of an image with the noise and only
    the source's own heavy footprint inserted, LSST's sequential NoiseReplacer written out."""
    tile, refs = scene["tile"], scene["refs"]
    ib = in_band_frame(scene["image"], scene["x"], scene["y"], refs["id"].to_numpy(),
                       scene["families"], xy0=tile.xy0)
    config = ForcedPhotConfig(aperture_method=method)
    deb = colphot.forced_photometry(tile, refs, config, in_band=ib)
    kept, order = _measured_order(tile, refs, config)
    prep = prepare_deblend(tile, kept, ib, config)
    fp = prep.footprints
    cols = [c for c in _numeric(deb) if not c.startswith("pixelFlags")]
    work = prep.image.copy()  # the image LSST's NoiseReplacer would hold
    for t, src in enumerate(order):
        x0, y0, w, h, off = (int(v[t]) for v in (fp.x0, fp.y0, fp.width, fp.height, fp.offset))
        box = work[y0:y0 + h, x0:x0 + w]
        keep = box.copy()
        inside = fp.mask[off:off + w * h].reshape(h, w).astype(bool)
        box[inside] = fp.values[off:off + w * h].reshape(h, w)[inside]  # insertSource
        one = colphot.forced_photometry(dataclasses.replace(tile, image=work),
                                        refs[int(src):int(src) + 1], config)
        box[:] = keep  # removeSource
        got = deb[int(src)].select(cols).to_numpy().astype(float)
        want = one.select(cols).to_numpy().astype(float)
        np.testing.assert_array_equal(got, want)
    assert np.array_equal(work, prep.image)


def test_isolated_sources_agree_with_plain(scene):
    """Sources whose measurement region touches no other footprint: deblended == plain."""
    tile, refs = scene["tile"], scene["refs"]
    ib = in_band_frame(scene["image"], scene["x"], scene["y"], refs["id"].to_numpy(),
                       scene["families"], xy0=tile.xy0)
    config = ForcedPhotConfig(aperture_radii=(3.0, 6.0, 12.0, 17.0))
    deb = colphot.forced_photometry(tile, refs, config, in_band=ib)
    plain = colphot.forced_photometry(tile, refs, config)
    x, y = scene["x"], scene["y"]
    d = np.hypot(x[:, None] - x[None], y[:, None] - y[None])
    np.fill_diagonal(d, np.inf)
    sigma = tile.psf.sigma_at(x, y)
    reach = np.maximum(17.0, config.local_background_outer * sigma) + RADIUS + 2
    clear = d.min(axis=1) > reach + 2
    assert clear.sum() >= 4
    cols = _numeric(plain)
    a = deb.filter(pl.Series(clear)).select(cols).to_numpy().astype(float)
    b = plain.filter(pl.Series(clear)).select(cols).to_numpy().astype(float)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    blended = ~clear & np.isin(np.arange(x.size), np.ravel(scene["families"]))
    assert np.all(np.abs(deb["psfFlux"].to_numpy()[blended] - plain["psfFlux"].to_numpy()[blended])
                  > 1e-3 * np.abs(plain["psfFlux"].to_numpy()[blended]))


def test_perfect_deblender_removes_neighbour_light(scene):
    """With heavy footprints split by the true models, blended stars' psfFlux is unbiased;
    the undeblended copy carries the neighbour's light."""
    tile, refs = scene["tile"], scene["refs"]
    ib = in_band_frame(scene["image"], scene["x"], scene["y"], refs["id"].to_numpy(),
                       scene["families"], scene["models"], xy0=tile.xy0)
    config = ForcedPhotConfig(undeblended_plugins=("psf_flux", "aperture"))
    deb = colphot.forced_photometry(tile, refs, config, in_band=ib)
    members = np.ravel(scene["families"])
    truth = scene["flux"][members]
    err = deb["psfFluxErr"].to_numpy()[members]
    pull = (deb["psfFlux"].to_numpy()[members] - truth) / err
    bias = (deb["undeblended_psfFlux"].to_numpy()[members] - truth) / err
    assert np.all(np.abs(pull) < 4)
    assert np.median(bias) > 10 * max(np.median(np.abs(pull)), 0.5)
    plain = colphot.forced_photometry(tile, refs, config)
    for col in ("psfFlux", "psfFluxErr", "ap12Flux", "ap12FluxErr", "ap12Flux_flag"):
        assert deb[f"undeblended_{col}"].equals(plain[col].alias(f"undeblended_{col}"))


def test_same_inputs_bit_identical_and_seed_recorded(scene, tmp_path):
    tile, refs = scene["tile"], scene["refs"]
    ib = in_band_frame(scene["image"], scene["x"], scene["y"], refs["id"].to_numpy(),
                       scene["families"], xy0=tile.xy0)
    config = ForcedPhotConfig(noise_source="variance")
    a = colphot.forced_photometry(tile, refs, config, in_band=ib)
    b = colphot.forced_photometry(tile, refs, config, in_band=ib.sample(fraction=1.0,
                                                                          shuffle=True, seed=1))
    c2 = colphot.forced_photometry(tile, refs, config, in_band=ib, n_threads=2)
    assert a.equals(b) and a.equals(c2)
    other = colphot.forced_photometry(tile, refs, dataclasses.replace(config, noise_seed=7),
                                      in_band=ib)
    assert not a.equals(other)
    prov = colphot.provenance(tile, config, in_band="catalog.parquet")
    colphot.write_forced(a, tmp_path, config=config, inputs=[prov])
    meta = pl.read_parquet_schema  # noqa: F841 (the schema is read with pyarrow below)
    import pyarrow.parquet as pq

    from colphot.parquet.metadata import read_colphot_metadata
    part = next(tmp_path.rglob("part-0.parquet"))
    info = read_colphot_metadata(pq.read_schema(part))
    deblend = info["inputs"][0]["deblend"]
    from colphot.measure.noise_replacer import noise_seed
    assert deblend["noise_seed"] == noise_seed(0, tile.band, tile.tract, tile.patch)
    assert deblend["in_band"] == "catalog.parquet" and deblend["noise_source"] == "variance"
    assert colphot.open_forced(tmp_path).collect().height == a.height


def test_noise_sources(scene):
    from colphot.measure.footprints import Footprints
    from colphot.measure.noise_replacer import replace_with_noise

    tile = scene["tile"]
    ny, nx = tile.shape
    box = Footprints(np.array([0]), np.array([0]), np.array([nx]), np.array([ny // 2]),
                     np.array([0]), np.zeros(nx * (ny // 2), np.float32),
                     np.ones(nx * (ny // 2), np.uint8), np.array([False]))
    var = np.full(tile.shape, 4.0, np.float32)
    var[: ny // 4] = 9.0
    v = replace_with_noise(tile.image, var, box, seed=3, source="variance", offset=0.5).image
    assert np.std(v[: ny // 4]) == pytest.approx(3.0, rel=0.02)
    assert np.std(v[ny // 4: ny // 2]) == pytest.approx(2.0, rel=0.02)
    assert np.mean(v[: ny // 2]) == pytest.approx(0.5, abs=0.02)
    np.testing.assert_array_equal(v[ny // 2:], tile.image[ny // 2:])
    m = replace_with_noise(tile.image, var, box, seed=3, source="measure")
    assert m.sigma == pytest.approx(1.0, rel=0.03)  # the scene's sky noise
    assert np.std(m.image[: ny // 2]) == pytest.approx(1.0, rel=0.03)
    med = replace_with_noise(tile.image, var, box, seed=3, source="variance_median")
    assert med.sigma == pytest.approx(2.0)


def test_conserve_flux_from_models(scene):
    """Heavy footprints holding the true models, shared by conserve_flux, equal the perfect
    deblender's split of the observed pixels."""
    tile, refs = scene["tile"], scene["refs"]
    ids = refs["id"].to_numpy()
    split = in_band_frame(scene["image"], scene["x"], scene["y"], ids, scene["families"],
                          scene["models"], xy0=tile.xy0)
    noiseless = in_band_frame(sum(scene["models"]), scene["x"], scene["y"], ids,
                              scene["families"], scene["models"], xy0=tile.xy0)
    # children carry their models: the split of the noise-free image
    children = noiseless.filter(pl.col("parent") != 0)
    models = pl.concat([split.filter(pl.col("parent") == 0), children]).sort("id")
    config = ForcedPhotConfig(conserve_flux=True)
    a = colphot.forced_photometry(tile, refs, config, in_band=models)
    b = colphot.forced_photometry(tile, refs, ForcedPhotConfig(), in_band=split)
    cols = _numeric(a)
    np.testing.assert_allclose(a.select(cols).to_numpy().astype(float),
                               b.select(cols).to_numpy().astype(float), rtol=2e-5, atol=1e-6)


def test_parent_without_values_takes_tile_pixels(scene):
    tile, refs = scene["tile"], scene["refs"]
    args = (scene["image"], scene["x"], scene["y"], refs["id"].to_numpy(), scene["families"])
    with_values = in_band_frame(*args, xy0=tile.xy0)
    without = in_band_frame(*args, xy0=tile.xy0, parent_values=False)
    assert without["footprint_flux"].null_count() == refs.height - 6
    a = colphot.forced_photometry(tile, refs, in_band=with_values)
    b = colphot.forced_photometry(tile, refs, in_band=without)
    assert a.equals(b)


def test_pixel_flags_use_the_footprint(scene):
    tile, refs = scene["tile"], scene["refs"]
    ib = in_band_frame(scene["image"], scene["x"], scene["y"], refs["id"].to_numpy(),
                       scene["families"], xy0=tile.xy0)
    mask = np.zeros(tile.shape, np.uint32)
    x, y = scene["x"], scene["y"]
    sat = 1 << tile.mask_planes["SAT"]
    # a saturated pixel 7 px from source 10: inside its 9 px footprint, outside the 5 px
    # circle that stands in for a footprint without an in-band catalog
    mask[int(round(y[10])), int(round(x[10])) + 7] = sat
    # one 3 px from source 11, inside both; one 15 px from source 12, outside both
    mask[int(round(y[11])) + 3, int(round(x[11]))] = sat
    mask[int(round(y[12])), int(round(x[12])) - 15] = sat
    t = dataclasses.replace(tile, mask=mask)
    deb = colphot.forced_photometry(t, refs, in_band=ib)
    plain = colphot.forced_photometry(t, refs)
    assert deb["pixelFlags_saturated"][10] and not plain["pixelFlags_saturated"][10]
    assert deb["pixelFlags_saturated"][11] and plain["pixelFlags_saturated"][11]
    assert not deb["pixelFlags_saturated"][12] and not plain["pixelFlags_saturated"][12]


# --------------------------------------------------------------------------------------------
# bad input


@pytest.fixture()
def small(scene):
    tile, refs = scene["tile"], scene["refs"]
    ib = in_band_frame(scene["image"], scene["x"], scene["y"], refs["id"].to_numpy(),
                       scene["families"], xy0=tile.xy0)
    return tile, refs, ib


def test_missing_reference_ids(small):
    tile, refs, ib = small
    dropped = ib.filter(~pl.col("id").is_in([3, 5, 7]))
    with pytest.raises(MissingReferenceError, match=r"3 reference id\(s\).*in_band.*\[3, 5, 7\]"):
        colphot.forced_photometry(tile, refs, in_band=dropped)
    assert issubclass(MissingReferenceError, LookupError)
    # in-band rows without a reference are not measured
    extra = colphot.forced_photometry(tile, refs.filter(pl.col("id") != 4), in_band=ib)
    assert extra.height == refs.height - 1


def test_band_tract_patch_contradicting_the_tile(small, tmp_path):
    tile, refs, ib = small
    path = tmp_path / "g.parquet"
    ib.with_columns(band=pl.lit("g")).write_parquet(path)
    with pytest.raises(ReferenceCatalogError, match=r"g\.parquet: no in-band row is for the tile"
                       r".*another band.*band 'g'"):
        colphot.forced_photometry(tile, refs, in_band=path)
    with pytest.raises(ReferenceCatalogError, match=r"another band, tract or patch.*patch 43"):
        colphot.forced_photometry(tile, refs, in_band=ib.with_columns(patch=pl.lit(43)))


def test_footprint_off_the_tile(small):
    tile, refs, ib = small
    moved = ib.with_columns(
        footprint_x0=pl.when(pl.col("id") == 2).then(pl.lit(-5000))
        .otherwise(pl.col("footprint_x0")))
    with pytest.raises(ReferenceCatalogError, match=r"footprint box is not on the tile.*\[2\]"):
        colphot.forced_photometry(tile, refs, in_band=moved)


def test_corrupt_list_column_names_the_id(small):
    tile, refs, ib = small
    short = ib.with_columns(
        footprint_flux=pl.when(pl.col("id") == 9).then(pl.col("footprint_flux").list.head(10))
        .otherwise(pl.col("footprint_flux")))
    with pytest.raises(ReferenceCatalogError, match=r"footprint_flux whose length.*\[9\]"):
        colphot.forced_photometry(tile, refs, in_band=short)
    wide = ib.with_columns(footprint_width=pl.col("footprint_width") + 1)
    with pytest.raises(ReferenceCatalogError, match="footprint_mask whose length"):
        colphot.forced_photometry(tile, refs, in_band=wide)


def test_missing_column_and_duplicate_ids(small):
    tile, refs, ib = small
    with pytest.raises(ReferenceCatalogError, match="missing required column 'footprint_mask'"):
        colphot.forced_photometry(tile, refs, in_band=ib.drop("footprint_mask"))
    with pytest.raises(ReferenceCatalogError, match="ids must be unique"):
        colphot.forced_photometry(tile, refs, in_band=pl.concat([ib, ib.head(2)]))
    with pytest.raises(ReferenceCatalogError, match="cannot read the in-band catalog"):
        colphot.forced_photometry(tile, refs, in_band="/nonexistent/in_band.parquet")


def test_null_widths_null_list_elements_and_categorical_band(small):
    tile, refs, ib = small
    nulled = ib.with_columns(footprint_width=pl.when(pl.col("id") == 6).then(None)
                             .otherwise(pl.col("footprint_width")))
    with pytest.raises(ReferenceCatalogError, match=r"null values.*footprint_width.*\[6\]"):
        colphot.forced_photometry(tile, refs, in_band=nulled)
    holes = ib.with_columns(footprint_flux=pl.when(pl.col("id") == 8).then(
        pl.col("footprint_flux").list.eval(pl.when(pl.element() > 0).then(pl.element())))
        .otherwise(pl.col("footprint_flux")))
    assert holes["footprint_flux"].list.eval(pl.element().is_null().any()).list.first().any()
    with pytest.raises(ReferenceCatalogError, match=r"null elements.*\[8\]"):
        colphot.forced_photometry(tile, refs, in_band=holes)
    categorical = ib.with_columns(pl.col("band").cast(pl.Categorical))
    assert colphot.forced_photometry(tile, refs, in_band=categorical).equals(
        colphot.forced_photometry(tile, refs, in_band=ib))


def test_child_without_values_takes_its_ancestors_footprint(small):
    tile, refs, ib = small
    child = ib.filter(pl.col("parent") != 0)["id"][0]
    parent = ib.filter(pl.col("id") == child)["parent"][0]
    no_values = ib.with_columns(footprint_flux=pl.when(pl.col("id") == child).then(None)
                                .otherwise(pl.col("footprint_flux")))
    deb = colphot.forced_photometry(tile, refs, in_band=no_values)
    # measured with the parent's footprint: the observed pixels of the whole blend
    parent_row = ib.filter(pl.col("id") == parent)
    as_parent = ib.filter(pl.col("id") != child).vstack(
        parent_row.with_columns(id=pl.lit(child, dtype=pl.Int64)))
    want = colphot.forced_photometry(tile, refs, in_band=as_parent)
    i = refs["id"].to_list().index(child)
    assert deb["psfFlux"][i] == want["psfFlux"][i]
    orphan = no_values.filter(pl.col("id") != parent)
    with pytest.raises(ReferenceCatalogError, match=r"without footprint_flux whose parent"):
        colphot.forced_photometry(tile, refs, in_band=orphan)


def test_provenance_redacts_credentials(small):
    tile, _, _ = small
    prov = colphot.provenance(tile, in_band="s3://key:secret@bucket/in_band")
    assert prov["deblend"]["in_band"] == "s3://bucket/in_band"


def test_kernels_refuse_footprints_off_the_image():
    from colphot.measure.aperture import measure_apertures
    from colphot.measure.footprints import Footprints

    image = np.zeros((20, 20), np.float32)
    fp = Footprints(np.array([15]), np.array([0]), np.array([10]), np.array([2]),
                    np.array([0]), np.zeros(20, np.float32), np.ones(20, np.uint8),
                    np.array([False]))
    with pytest.raises(ValueError, match="boxes off a 20 x 20 image"):
        measure_apertures(image, image, np.array([10.0]), np.array([10.0]), [3.0],
                          footprints=fp)


def test_local_background_off_edge_centre_reads_only_its_region():
    """A centre past the image edge with a wide region buffer left by an earlier source."""
    from colphot.measure.footprints import Footprints
    from colphot.measure.local_background import measure_local_background

    image = np.ones((50, 50), np.float32)
    big = np.full(2500, 1e6, np.float32)
    small_ = np.ones(100, np.float32)
    fp = Footprints(np.array([0, 40]), np.array([0, 20]), np.array([50, 10]),
                    np.array([50, 10]), np.array([0, 2500]), np.concatenate([big, small_]),
                    np.ones(2600, np.uint8), np.array([False, False]))
    x, y = np.array([25.0, 53.0]), np.array([25.0, 25.0])
    both = measure_local_background(image, None, x, y, np.array([20.0, 2.5]),
                                    np.array([24.0, 4.9]), footprints=fp)
    alone = measure_local_background(image, None, x[1:], y[1:], np.array([2.5]),
                                     np.array([4.9]), footprints=fp.take([1]))
    np.testing.assert_array_equal(both.level[1:], alone.level)
    assert alone.level[0] == 1.0
