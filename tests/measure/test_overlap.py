"""The overlap primitives behind the exact apertures, against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from colphot.measure._overlap import asin01, band_h, circle_integral


@njit
def _asin_many(t):
    out = np.empty_like(t)
    for i in range(t.shape[0]):
        out[i] = asin01(t[i])
    return out


def test_asin01_within_two_ulp_of_libm():
    rng = np.random.default_rng(0)
    t = np.concatenate([rng.random(200_000), np.linspace(0.0, 1.0, 10_001),
                        1.0 - np.logspace(-16, -1, 200), np.logspace(-300, -1, 200)])
    got = _asin_many(t)
    want = np.array([math.asin(v) for v in t])
    ulp = np.abs(got - want) / np.spacing(np.maximum(np.abs(want), 1e-300))
    assert ulp.max() <= 2.0
    assert got[t == 0.0][0] == 0.0 and got[t == 1.0][0] == pytest.approx(math.pi / 2, abs=0)


@pytest.mark.parametrize("r", [0.3, 1.0, 4.5, 70.0])
def test_circle_integral_is_the_area_under_the_arc(r):
    x = np.linspace(0.0, r, 7)
    # the quarter disc's area up to x, by numerical quadrature
    from scipy.integrate import quad

    for xi in x:
        want, _ = quad(lambda t: math.sqrt(max(r * r - t * t, 0.0)), 0.0, xi, epsabs=1e-14)
        assert circle_integral(xi, r, r * r) == pytest.approx(want, rel=1e-10, abs=1e-13)
    assert circle_integral(r, r, r * r) == pytest.approx(math.pi * r * r / 4, rel=1e-15)


@pytest.mark.parametrize("cx, cy, r", [(0.3, -0.2, 2.7), (0.0, 0.0, 1.0), (0.49, 0.5, 6.2)])
def test_band_h_differences_tile_the_circle(cx, cy, r):
    """Pixel overlaps H(u1) - H(u0) over every row and column add up to the circle's area and
    each lies in [0, 1]; compared with 64 x 64 sub-pixel sampling pixel by pixel."""
    r2 = r * r
    n = int(math.ceil(r)) + 2
    total = 0.0
    for j in range(-n, n + 1):
        v0, v1 = j - 0.5 - cy, j + 0.5 - cy
        rows = []
        for v in (v0, v1):
            y = min(abs(v), r)
            x1 = math.sqrt(max(r2 - y * y, 0.0))
            rows.append((y, x1, circle_integral(x1, r, r2), -1.0 if v < 0 else 1.0))
        (y0, x10, g10, s0), (y1, x11, g11, s1) = rows
        for i in range(-n, n + 1):
            u0, u1 = i - 0.5 - cx, i + 0.5 - cx
            h = [band_h(u, circle_integral(min(abs(u), r), r, r2), r, r2, y0, x10, g10, s0,
                        y1, x11, g11, s1) for u in (u0, u1)]
            w = h[1] - h[0]
            s = (np.arange(64) + 0.5) / 64
            inside = ((u0 + s)[None, :] ** 2 + (v0 + s)[:, None] ** 2 < r2).mean()
            assert -1e-12 <= w <= 1 + 1e-12
            assert w == pytest.approx(inside, abs=0.03)
            total += w
    assert total == pytest.approx(math.pi * r2, rel=1e-12)
