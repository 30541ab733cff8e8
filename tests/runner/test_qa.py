"""QA figures (``colphot.qa.write_qa``) of the runner's output: files, pixels and numbers.

The figures are checked with an image reader (not blank: enough distinct colours and enough
non-background pixels in the middle of the canvas, where the plot area is), and the numbers
drawn are checked against direct numpy computations from the forced-source table.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from colphot.exceptions import SchemaError
from colphot.qa import figures as qa
from colphot.qa import write_qa

#: Figures without truth; the 2-band survey has no colour-colour diagram.
BASE = {"colour_magnitude.png", "sky_density.png", "depth_5sigma.png", "flag_fractions.png"}
TRUTH = {"psf_flux_vs_truth_g.png", "psf_flux_vs_truth_r.png", "pulls.png"}


def plot_area(path) -> tuple[int, float]:
    """``(distinct RGB colours, non-background fraction)`` of the middle 60 % of a PNG."""
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] >= 200 and img.shape[1] >= 200, img.shape
    h, w = img.shape[:2]
    rgb = np.round(img[h // 5: 4 * h // 5, w // 5: 4 * w // 5, :3] * 255).astype(np.uint8)
    colours, counts = np.unique(rgb.reshape(-1, 3), axis=0, return_counts=True)
    return len(colours), 1.0 - counts.max() / counts.sum()


def assert_drawn(path) -> None:
    """Data drawn: > 10 distinct colours and > 1 % of the pixels off the background (a coarse
    sky map of few cells has few colours; anti-aliased text alone has many colours but few
    pixels)."""
    n_colours, filled = plot_area(path)
    assert n_colours > 10 and filled > 0.01, f"{path}: blank? {n_colours} colours, {filled:.4f}"


@pytest.fixture(scope="module")
def qa_truth(local_run, survey, tmp_path_factory):
    """``(paths, out_dir)`` of the figures of the tiny survey, with truth."""
    out = tmp_path_factory.mktemp("qa-truth")
    return write_qa(local_run[1], out, truth=survey.truth_path), out


@pytest.fixture(scope="module")
def three_band(tmp_path_factory):
    """``(survey, forced root)``: one 200 px patch in g, r, i, measured on local threads."""
    from colphot.runner.run import run
    from colphot.sim import make_survey

    root = tmp_path_factory.mktemp("qa-three-band")
    info = make_survey(root / "survey", seed=5, bands=("g", "r", "i"), n_patches=1,
                       patch_size=200, overlap=0, n_stars=70, n_galaxies=30, n_blends=0)
    summary = run(info.tiles_template, info.refs_root, root / "forced", n_workers=1,
                  processes=False, progress=False)
    assert summary.n_failed == 0, str(summary)
    return info, root / "forced"


def test_blank_canvas_is_detected(tmp_path):
    """The check fails on a figure with axes, labels and a title but no data."""
    fig = qa._figure(6.4, 4.8)
    ax = fig.subplots()
    ax.set_xlabel("x [mag]")
    ax.set_title("nothing")
    path = qa._save(fig, tmp_path, "blank.png", None)
    with pytest.raises(AssertionError, match="blank"):
        assert_drawn(path)
    fig = qa._figure(6.4, 4.8)
    qa._no_data(fig.subplots(), "no clean isolated stars")  # text in the middle, no data
    path = qa._save(fig, tmp_path, "no-data.png", None)
    with pytest.raises(AssertionError, match="blank"):
        assert_drawn(path)


def test_figures_with_truth(qa_truth):
    paths, out = qa_truth
    assert all(isinstance(p, Path) and p.parent == out for p in paths)
    assert {p.name for p in paths} == BASE | TRUTH
    assert sorted(p.name for p in out.iterdir()) == sorted(BASE | TRUTH)
    for path in paths:
        assert_drawn(path)


def test_figures_without_truth_and_stale_ones_removed(qa_truth, local_run, tmp_path):
    """Without truth no truth figure; a rerun removes those of an earlier run with truth."""
    out = tmp_path / "qa"
    shutil.copytree(qa_truth[1], out)
    paths = write_qa(local_run[1], out)
    assert {p.name for p in paths} == BASE
    assert sorted(p.name for p in out.iterdir()) == sorted(BASE)
    for path in paths:
        assert_drawn(path)


def test_one_band_has_no_colour_figures(local_run, survey, tmp_path):
    one = tmp_path / "forced-g"
    shutil.copytree(Path(local_run[1]) / "band=g", one / "band=g")
    paths = write_qa(one, tmp_path / "qa", truth=survey.truth_path)
    assert {p.name for p in paths} == {"psf_flux_vs_truth_g.png", "pulls.png",
                                       "sky_density.png", "depth_5sigma.png",
                                       "flag_fractions.png"}


def test_three_bands_colour_colour(three_band, tmp_path):
    info, forced_root = three_band
    paths = write_qa(forced_root, tmp_path / "qa", truth=info.truth_path)
    names = {p.name for p in paths}
    assert {"colour_magnitude.png", "colour_colour.png", "psf_flux_vs_truth_i.png"} <= names
    for path in paths:  # the sky maps of ~100 objects have a few cells: checked on local_run
        if path.name not in ("sky_density.png", "depth_5sigma.png"):
            assert_drawn(path)


@pytest.mark.parametrize("source", ["write_qa", "primary_pivot"])
def test_colours_are_forced_magnitudes(three_band, source):
    """One patch, no duplicates: the colours drawn are psfMag differences of the forced rows,
    from the Object table write_qa uses (``colphot.objects`` when installed) and from the
    stand-in pivot."""
    import colphot

    _, forced_root = three_band
    forced = colphot.open_forced(forced_root).collect()
    if source == "primary_pivot":
        objects = qa.primary_pivot(forced, ["g", "r", "i"])
    else:
        objects = qa._load_objects(forced_root, forced, ["g", "r", "i"], None, None)
    (cc,) = qa.colour_colour(objects, ["i", "g", "r"])
    cmd = qa.colour_magnitude(objects, ["g", "r", "i"])
    assert cc["bands"] == ("g", "r", "i") and [p["bands"] for p in cmd] == [("g", "r"),
                                                                             ("r", "i")]
    mag, good = {}, {}
    for band in "gri":
        rows = forced.filter(pl.col("band") == band).sort("objectId")
        ids = rows["objectId"].to_numpy()
        m = rows["psfMag"].to_numpy().astype(np.float64)
        flux, err = rows["psfFlux"].to_numpy(), rows["psfFluxErr"].to_numpy()
        mag[band] = dict(zip(ids, m, strict=True))
        good[band] = dict(zip(ids, np.isfinite(m) & ~rows["psfFlux_flag"].to_numpy()
                              & (flux / err >= qa.SNR_MIN), strict=True))
    ids = sorted(i for i in mag["g"] if all(good[b][i] for b in "gri"))
    assert len(ids) > 20
    order = np.argsort(cc["objectId"])
    assert cc["objectId"][order].tolist() == ids
    np.testing.assert_allclose(cc["x"][order], [mag["g"][i] - mag["r"][i] for i in ids])
    np.testing.assert_allclose(cc["y"][order], [mag["r"][i] - mag["i"][i] for i in ids])
    ri = cmd[1]
    sel = np.argsort(ri["objectId"])
    assert set(ri["objectId"]) == {i for i in mag["r"] if good["r"][i] and good["i"][i]}
    np.testing.assert_allclose(ri["y"][sel], [mag["i"][i] for i in ri["objectId"][sel]])


def test_pulls_are_the_truth_comparison(local_rows, survey):
    """The pull histogram's data, from a direct numpy match of the forced rows to the truth,
    and the same stars and sigma as the demo's ``truth_summary``."""
    from colphot.sim.demo import truth_summary

    truth = pl.read_parquet(survey.truth_path)
    lookup = {row["id"]: row for row in truth.iter_rows(named=True)}
    summary = truth_summary(local_rows, truth)
    for band in ("g", "r"):
        rows = local_rows.filter(pl.col("band") == band)
        expected = []
        for row in rows.iter_rows(named=True):
            t = lookup[row["objectId"]]
            flagged = any(row[c] for c in qa.CLEAN_FLAGS)
            if t["is_star"] and t["nearest_px"] > qa.ISOLATION and not flagged:
                expected.append((row["psfFlux"] - t[f"{band}_flux_true"]) / row["psfFluxErr"])
        got = qa.pulls(local_rows, truth, band)
        assert len(expected) > 20
        np.testing.assert_allclose(np.sort(got), np.sort(expected), rtol=1e-12)
        counts, edges = qa.pull_histogram(got)
        np.testing.assert_array_equal(counts, np.histogram(expected, np.linspace(-5, 5, 41))[0])
        assert np.allclose(edges, np.linspace(-5, 5, 41))
        s = summary.filter(pl.col("band") == band).row(0, named=True)
        assert s["isolated_stars"] == got.size
        mad = np.median(np.abs(got - np.median(got)))
        assert np.isclose(1.4826 * mad, s["pull_sigma"])


def test_sky_maps_and_flag_fractions(local_rows):
    ra, dec = local_rows["coord_ra"].to_numpy(), local_rows["coord_dec"].to_numpy()
    ra_edges, dec_edges = qa.sky_grid(ra, dec)
    assert ra_edges[0] <= ra.min() and ra.max() <= ra_edges[-1]
    assert dec_edges[0] <= dec.min() and dec.max() <= dec_edges[-1]
    # density: per arcmin², so counts = density x cell area
    density = qa.density_map(ra, dec, ra_edges, dec_edges)
    dec_mid = np.radians(0.5 * (dec_edges[:-1] + dec_edges[1:]))
    area = (np.diff(ra_edges)[None, :] * np.cos(dec_mid)[:, None]
            * np.diff(dec_edges)[:, None] * 3600.0)
    counts, _, _ = np.histogram2d(dec, ra, bins=[dec_edges, ra_edges])
    np.testing.assert_allclose(density * area, counts, atol=1e-9)
    # depth: 31.4 - 2.5 log10(5 x median psfFluxErr) of the rows in each cell
    err = local_rows["psfFluxErr"].to_numpy()
    depth = qa.depth_map(ra, dec, err, ra_edges, dec_edges)
    iy = np.clip(np.searchsorted(dec_edges, dec, side="right") - 1, 0, dec_edges.size - 2)
    ix = np.clip(np.searchsorted(ra_edges, ra, side="right") - 1, 0, ra_edges.size - 2)
    checked = 0
    for cy in range(dec_edges.size - 1):
        for cx in range(ra_edges.size - 1):
            e = err[(iy == cy) & (ix == cx) & np.isfinite(err) & (err > 0)]
            if e.size:
                assert np.isclose(depth[cy, cx], 31.4 - 2.5 * np.log10(5 * np.median(e)))
                checked += 1
            else:
                assert np.isnan(depth[cy, cx])
    assert checked > 4
    # flag fractions: the mean of each flag column per band
    fractions = qa.flag_fractions(local_rows)
    assert fractions.columns == ["flag", "g", "r"]
    flags = fractions["flag"].to_list()
    assert {"psfFlux_flag", "pixelFlags_edge", "centroid_flag"} <= set(flags)
    assert not any(f.endswith("_flag_edge") for f in flags)  # summary flags only
    for band in ("g", "r"):
        rows = local_rows.filter(pl.col("band") == band)
        for flag, fraction in zip(flags, fractions[band], strict=True):
            assert np.isclose(fraction, rows[flag].to_numpy().mean()), (band, flag)
    assert fractions.filter(pl.col("flag") == "pixelFlags_edge")["g"][0] > 0


def test_primary_pivot_one_row_per_object(local_rows, survey):
    """The stand-in Object table: each object once, from (nearly always) its own patch."""
    wide = qa.primary_pivot(local_rows, ["g", "r"])
    assert wide.height == local_rows["objectId"].n_unique() == wide["objectId"].n_unique()
    assert {"g_psfMag", "r_psfFlux", "r_psfFlux_flag", "coord_ra"} <= set(wide.columns)
    truth = pl.read_parquet(survey.truth_path).select(pl.col("id").alias("objectId"),
                                                      pl.col("patch").alias("home"))
    joined = wide.join(truth, on="objectId")
    assert (joined["patch"] == joined["home"]).mean() > 0.95
    row = wide.row(0, named=True)
    source = local_rows.filter((pl.col("objectId") == row["objectId"])
                               & (pl.col("patch") == row["patch"]) & (pl.col("band") == "r"))
    assert source["psfFlux"][0] == row["r_psfFlux"]


def test_fsspec_out_dir(local_run):
    import fsspec

    fs = fsspec.filesystem("memory")
    paths = write_qa(local_run[1], "memory://colphot-qa-test/figures")
    assert paths and all(isinstance(p, str) and p.startswith("memory://") for p in paths)
    assert fs.cat(paths[0])[:8] == b"\x89PNG\r\n\x1a\n"
    fs.rm("/colphot-qa-test", recursive=True)


def test_bad_inputs_name_the_path(local_run, survey, tmp_path):
    missing = tmp_path / "no-such-dataset"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        write_qa(missing, tmp_path / "qa")
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(Path(local_run[1]) / "_common_metadata", empty / "_common_metadata")
    with pytest.raises(ValueError, match=f"{empty}.*no rows"):
        write_qa(empty, tmp_path / "qa")
    no_truth = tmp_path / "truth.parquet"
    with pytest.raises(FileNotFoundError, match=str(no_truth)):
        write_qa(local_run[1], tmp_path / "qa", truth=no_truth)
    pl.read_parquet(survey.truth_path).drop("r_flux_true").write_parquet(no_truth)
    with pytest.raises(SchemaError, match=f"{no_truth}.*r_flux_true"):
        write_qa(local_run[1], tmp_path / "qa", truth=no_truth)
    assert not (tmp_path / "qa").exists()  # nothing written before the inputs were checked
