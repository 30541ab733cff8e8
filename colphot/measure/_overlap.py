"""Exact and sampled overlap of a pixel with a circle (numba kernels, no Python objects).

Coordinates are relative to the circle's centre, in pixels. The exact area uses
``F(x, y) = sgn(x) sgn(y) A(|x|, |y|)``, the signed area of the circle inside the rectangle from
the centre to the corner ``(x, y)``. For ``x, y >= 0`` clamped to ``r`` and
``x1 = sqrt(r^2 - y^2)``: ``A = x y`` when the corner is inside, else
``x1 y + G(x) - G(x1)`` with ``G(x) = integral_0^x sqrt(r^2 - t^2) dt``. Within one pixel row
(the band between row edges ``v0`` and ``v1``), ``H(u) = F(u, v1) - F(u, v0)`` and a pixel's
overlap is ``H(u1) - H(u0)``: neighbouring pixels share an edge's ``H``, and ``G`` is needed only
at the row's and columns' edges, which the aperture kernel tabulates once per source.
"""

from __future__ import annotations

import math

from numba import njit

__all__ = ["asin01", "band_h", "circle_integral", "sampled_overlap"]


# fdlibm's rational approximation of asin on [0, 1/2] (Sun Microsystems, 1993): asin(t) =
# t + t R(t^2), R = P/Q; for t >= 1/2, asin(t) = pi/2 - 2 asin(sqrt((1 - t)/2)).
_PS = (1.66666666666666657415e-01, -3.25565818622400915405e-01, 2.01212532134862925881e-01,
       -4.00555345006794114027e-02, 7.91534994289814532176e-04, 3.47933107596021167570e-05)
_QS = (-2.40339491173441421878e+00, 2.02094576023350569471e+00, -6.88283971605453293030e-01,
       7.70381505559019352791e-02)
_PIO2 = math.pi / 2


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def asin01(t: float) -> float:
    """``asin(t)`` for ``0 <= t <= 1``, within 2 ulp of libm's, with no branch or call.

    Both regimes are computed and one is selected, so a loop of calls vectorises (libm's asin
    is a call per value: about 7x slower here).
    """
    small = t < 0.5
    z = t * t if small else (1.0 - t) * 0.5
    s = math.sqrt(z)
    base = t if small else s
    p = z * (_PS[0] + z * (_PS[1] + z * (_PS[2] + z * (_PS[3] + z * (_PS[4] + z * _PS[5])))))
    q = 1.0 + z * (_QS[0] + z * (_QS[1] + z * (_QS[2] + z * _QS[3])))
    poly = base + base * (p / q)
    return poly if small else _PIO2 - 2.0 * poly


@njit(cache=True, nogil=True, fastmath={"reassoc"}, error_model="numpy", inline="always")
def circle_integral(x: float, r: float, r2: float) -> float:
    """``G(x) = integral_0^x sqrt(r^2 - t^2) dt`` for ``0 <= x <= r`` (pixels^2)."""
    return 0.5 * (x * math.sqrt(max(r2 - x * x, 0.0)) + r2 * asin01(min(x / r, 1.0)))


@njit(cache=True, nogil=True, fastmath={"reassoc"}, error_model="numpy", inline="always")
def band_h(u: float, gu: float, r: float, r2: float, y0: float, x10: float, g10: float, s0: float,
       y1: float, x11: float, g11: float, s1: float) -> float:
    """``H(u) = F(u, v1) - F(u, v0)``: signed circle area in the row band from 0 to ``u``.

    ``F(x, y)`` is the signed area of the circle inside the rectangle from the centre to the
    corner ``(x, y)``; ``gu = G(min(|u|, r))`` comes from the source's column table and
    ``(y, x1, G(x1), sign)`` of the band's edges ``v0``, ``v1`` from its row table (``y = |v|``
    clamped to ``r``, ``x1 = sqrt(r^2 - y^2)``). A pixel's overlap is ``H(u1) - H(u0)``, so
    neighbouring pixels share their common edge's ``H``.
    """
    xa = min(abs(u), r)
    if xa * xa + y1 * y1 <= r2:
        a1 = xa * y1
    else:
        a1 = x11 * y1 + (gu - g11)
    if xa * xa + y0 * y0 <= r2:
        a0 = xa * y0
    else:
        a0 = x10 * y0 + (gu - g10)
    total = s1 * a1 - s0 * a0
    return -total if u < 0.0 else total


@njit(cache=True, nogil=True)
def sampled_overlap(u0: float, v0: float, r: float, n: int) -> float:
    """Fraction of ``n x n`` sample points of the unit pixel at ``(u0, v0)`` inside radius ``r``.

    Samples sit at ``u0 + (i + 0.5) / n`` (SExtractor's and photutils' sub-pixel grid); a point
    counts when strictly inside the circle. ``n = 1`` is the pixel-centre test.
    """
    r2 = r * r
    step = 1.0 / n
    count = 0
    for j in range(n):
        v = v0 + (j + 0.5) * step
        v2 = v * v
        for i in range(n):
            u = u0 + (i + 0.5) * step
            if u * u + v2 < r2:
                count += 1
    return count / (n * n)
