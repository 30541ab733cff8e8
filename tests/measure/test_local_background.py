"""Local background: annulus selection, afw-style MEANCLIP, noise statistics, flags."""

from __future__ import annotations

import numpy as np
import pytest

import colphot
from colphot.exceptions import NoPsfWarning
from colphot.measure.local_background import _quartiles, measure_local_background

SHAPE = (120, 130)


def _annulus(shape, x, y, inner, outer, mask=None):
    """Numpy selection: pixel centres with inner <= d < outer, finite, unmasked."""
    yy, xx = np.indices(shape)
    d2 = (xx - x) ** 2 + (yy - y) ** 2
    sel = (d2 >= inner**2) & (d2 < outer**2)
    if mask is not None:
        sel &= mask == 0
    return sel


def _meanclip(values, n_sigma, n_iter):
    """afw MEANCLIP as documented: median, +-n_sigma * 0.741 IQR, then n_iter mean/std passes."""
    q25, med, q75 = np.percentile(values, [25, 50, 75])
    center, hw = med, n_sigma * 0.741 * (q75 - q25)
    mean, std = center, 0.0
    for _ in range(n_iter):
        keep = values[np.abs(values - center) <= hw]
        if keep.size == 0:
            break
        mean, std = keep.mean(), keep.std(ddof=1) if keep.size > 1 else 0.0
        center, hw = mean, n_sigma * std
    return mean, std


@pytest.fixture(scope="module")
def field():
    rng = np.random.default_rng(4)
    image = rng.normal(50.0, 4.0, SHAPE)
    # outliers that the clipping must reject
    image[rng.integers(0, SHAPE[0], 300), rng.integers(0, SHAPE[1], 300)] += 500.0
    return image


@pytest.mark.parametrize(
    "x, y, inner, outer",
    [(60.0, 55.0, 3.0, 5.0), (60.3, 54.6, 7.2, 15.1), (64.5, 60.5, 10.0, 25.0),
     (3.2, 110.0, 5.0, 12.0), (60.0, 60.0, 0.0, 1.5)],
)
def test_annulus_pixels_selected_by_centre_distance(field, x, y, inner, outer):
    """n_iter=0 returns the median and a huge n_sigma with one pass the plain mean/std:
    both pin down exactly which pixels were used (inner inclusive, outer exclusive)."""
    values = field[_annulus(SHAPE, x, y, inner, outer)]
    res0 = measure_local_background(field, None, np.array([x]), np.array([y]), inner, outer,
                                    n_iter=0)
    assert res0.level[0] == pytest.approx(np.median(values), rel=1e-12)
    res1 = measure_local_background(field, None, np.array([x]), np.array([y]), inner, outer,
                                    n_sigma=1e12, n_iter=1)
    assert res1.level[0] == pytest.approx(values.mean(), rel=1e-12)
    assert res1.scatter[0] == pytest.approx(values.std(ddof=1), rel=1e-9)


@pytest.mark.parametrize("n_sigma, n_iter", [(3.0, 3), (2.0, 1), (2.5, 5)])
def test_clipped_mean_matches_meanclip_reference(field, n_sigma, n_iter):
    rng = np.random.default_rng(12)
    x = rng.uniform(20, 110, 20)
    y = rng.uniform(20, 100, 20)
    res = measure_local_background(field, None, x, y, 6.0, 18.0, n_sigma=n_sigma,
                                   n_iter=n_iter)
    for i in range(x.size):
        mean, std = _meanclip(field[_annulus(SHAPE, x[i], y[i], 6.0, 18.0)], n_sigma, n_iter)
        assert res.level[i] == pytest.approx(mean, rel=1e-12)
        assert res.scatter[i] == pytest.approx(std, rel=1e-9)


def test_quartiles_match_numpy_percentiles():
    rng = np.random.default_rng(0)
    for n in list(range(1, 40)) + [101, 511, 512, 1000, 2440, 5000]:
        for trial in range(20):
            v = rng.normal(size=n)
            if trial % 3 == 0:
                v = np.round(v * 2.0)       # many ties
            if trial % 5 == 1:
                v = np.sort(v)              # sorted input: the sample brackets see a ramp
            if trial % 7 == 2:
                v[: n // 2] = 0.0           # half of the values identical
            np.testing.assert_array_equal(_quartiles(v.copy()), np.percentile(v, [25, 50, 75]))


def test_quartiles_exact_when_the_sample_misleads():
    """The ranks are localised from a strided sample; data that fools the sample (sampled
    values all huge or all tiny, a range of denormals, values near the float limits) must still
    give numpy's percentiles exactly."""
    rng = np.random.default_rng(5)
    n = 2000
    sampled = (np.arange(32) * (n - 1)) // 31
    cases = []
    v = rng.normal(size=n)
    v[sampled] = 1e6                               # the sample sees only outliers
    cases.append(v)
    v = rng.normal(size=n)
    v[sampled] = -1e6
    cases.append(v)
    v = rng.normal(size=n)
    v[sampled] = np.linspace(0.0, 1e-3, 32)        # a narrow sample range inside the data
    cases.append(v)
    cases.append(rng.normal(size=n) * 1e-310)      # denormals: the bin scale overflows
    cases.append(rng.normal(size=n) * 1e307)
    cases.append(np.repeat(rng.normal(size=40), 50))  # 50 copies of each value
    for v in cases:
        np.testing.assert_array_equal(_quartiles(v.copy()), np.percentile(v, [25, 50, 75]))


def test_masked_and_nonfinite_pixels_excluded(field):
    image = field.copy()
    mask = np.zeros(SHAPE, dtype=np.uint32)
    sel = _annulus(SHAPE, 60.0, 60.0, 5.0, 12.0)
    rows, cols = np.nonzero(sel)
    image[rows[::3], cols[::3]] = 1e6
    mask[rows[::3], cols[::3]] = 1 << 1           # SAT
    image[rows[1::7], cols[1::7]] = np.nan
    mask[rows[2::5], cols[2::5]] |= 1 << 5        # DETECTED: not excluded
    keep = sel & (mask & (1 << 1) == 0) & np.isfinite(image)
    res = measure_local_background(image, mask, np.array([60.0]), np.array([60.0]), 5.0, 12.0,
                                   bad_mask_bits=1 << 1, n_sigma=1e12, n_iter=1)
    assert res.level[0] == pytest.approx(image[keep].mean(), rel=1e-12)


def test_no_good_pixels_and_nan_positions_flagged(field):
    mask = np.zeros(SHAPE, dtype=np.uint32)
    mask[30:91, 30:91] = 1 << 8
    res = measure_local_background(field, mask, np.array([60.0, 60.0, np.nan]),
                                   np.array([60.0, 110.0, 50.0]), 5.0, 12.0,
                                   bad_mask_bits=1 << 8)
    assert np.isnan(res.level[0]) and res.flag[0] and res.flag_no_good_pixels[0]
    assert np.isfinite(res.level[1]) and not res.flag[1]
    assert np.isnan(res.level[2]) and res.flag[2]


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="x, y"):
        measure_local_background(np.ones((20, 20)), None, np.array([5.0, 6.0]),
                                 np.array([5.0]), 2.0, 4.0)


def test_forced_background_recovers_noise_mean_and_sigma(sim):
    """Pure N(mu, sigma) noise plus bright stars: level ~ mu, scatter ~ sigma."""
    mu, sigma = 120.0, 6.0
    s = sim.make_sim_tile(n_side=6, spacing=70, margin=45, flux_range=(2e5, 5e5),
                          noise_sigma=sigma, background=mu, seed=9)
    df = colphot.forced_photometry(s.tile, s.refs)
    level = df["localBackground_instFlux"].to_numpy()
    scatter = df["localBackground_instFluxErr"].to_numpy()
    assert not df["localBackground_flag"].any()
    # ~1400 annulus pixels per source (7..15 PSF sigmas, sigma ~ 1.7 px): the mean is known to
    # sigma / 37 and the standard deviation to 1.9 % per source
    assert np.all(np.abs(level - mu) < 0.15 * sigma)
    assert abs(level.mean() - mu) < 0.02 * sigma
    # 3-sigma clipping of a Gaussian removes 0.27 % of it and 1.4 % of its standard deviation
    assert np.all(np.abs(scatter / sigma - 1.0) < 0.1)
    assert abs(scatter.mean() / sigma - 1.0) < 0.03


def test_forced_background_without_psf_is_flagged(sim):
    s = sim.make_sim_tile(n_side=2, with_psf=False)
    with pytest.warns(NoPsfWarning, match="no PSF"):
        df = colphot.forced_photometry(s.tile, s.refs)
    assert df["localBackground_flag_noPsf"].all() and df["localBackground_flag"].all()
    assert df["localBackground_instFlux"].is_nan().all()
