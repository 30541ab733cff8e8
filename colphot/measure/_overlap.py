"""Exact and sampled overlap of a pixel with a circle (numba kernels, no Python objects).

Coordinates are relative to the circle's centre, in pixels. The exact area uses
``F(x, y) = sgn(x) sgn(y) A(|x|, |y|)``, the signed area of the circle inside the rectangle from
the centre to the corner ``(x, y)``; a pixel's overlap is the inclusion-exclusion of ``F`` over its
four corners. ``A`` has a closed form with one square root and one arcsine.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["asin01", "band_constants", "band_integral", "exact_overlap", "sampled_overlap"]


@njit(cache=True, nogil=True, inline="always")
def _quadrant_area(x: float, y: float, r: float) -> float:
    """Area of ``{0 <= u <= x, 0 <= v <= y, u^2 + v^2 <= r^2}`` for ``x, y >= 0``."""
    x = min(x, r)
    y = min(y, r)
    r2 = r * r
    if x * x + y * y <= r2:
        return x * y
    x1 = math.sqrt(max(r2 - y * y, 0.0))
    # integral of sqrt(r^2 - u^2) from x1 to x
    g_x = 0.5 * (x * math.sqrt(max(r2 - x * x, 0.0)) + r2 * math.asin(min(x / r, 1.0)))
    g_x1 = 0.5 * (x1 * math.sqrt(max(r2 - x1 * x1, 0.0)) + r2 * math.asin(min(x1 / r, 1.0)))
    return x1 * y + (g_x - g_x1)


@njit(cache=True, nogil=True, inline="always")
def _signed_area(x: float, y: float, r: float) -> float:
    a = _quadrant_area(abs(x), abs(y), r)
    if (x < 0.0) != (y < 0.0):
        return -a
    return a


@njit(cache=True, nogil=True)
def exact_overlap(u0: float, v0: float, u1: float, v1: float, r: float) -> float:
    """Exact area of the rectangle ``[u0, u1] x [v0, v1]`` inside the circle of radius ``r``."""
    return (
        _signed_area(u1, v1, r)
        - _signed_area(u0, v1, r)
        - _signed_area(u1, v0, r)
        + _signed_area(u0, v0, r)
    )


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


@njit(cache=True, nogil=True, inline="always")
def _g(x: float, r: float, r2: float) -> float:
    """``integral_0^x sqrt(r^2 - t^2) dt`` for ``0 <= x <= r``."""
    return 0.5 * (x * math.sqrt(max(r2 - x * x, 0.0)) + r2 * math.asin(min(x / r, 1.0)))


@njit(cache=True, nogil=True)
def band_constants(v: float, r: float, r2: float, out: np.ndarray, at: int) -> None:
    """Per-row constants of one band edge ``v`` for :func:`band_integral`.

    Stores ``(|v| clamped to r, x1 = sqrt(r^2 - y^2), G(x1), sign(v))`` at ``out[at:at + 4]``.
    """
    y = min(abs(v), r)
    x1 = math.sqrt(max(r2 - y * y, 0.0))
    out[at] = y
    out[at + 1] = x1
    out[at + 2] = _g(x1, r, r2)
    out[at + 3] = -1.0 if v < 0.0 else 1.0


@njit(cache=True, nogil=True)
def band_integral(u: float, r: float, r2: float, c: np.ndarray) -> float:
    """``H(u) = F(u, v1) - F(u, v0)``: signed circle area in the row band from 0 to ``u``.

    ``c`` holds :func:`band_constants` of ``v0`` at 0..3 and of ``v1`` at 4..7. A pixel's
    overlap is ``H(u1) - H(u0)``; neighbouring pixels share their edge's ``H``, and the arcsine
    of ``G(|u|)`` is computed at most once per edge.
    """
    x = min(abs(u), r)
    su = -1.0 if u < 0.0 else 1.0
    gx = -1.0
    total = 0.0
    for t in range(2):
        y = c[4 * t]
        x1 = c[4 * t + 1]
        if x * x + y * y <= r2:
            a = x * y
        else:
            if gx < 0.0:
                gx = _g(x, r, r2)
            a = x1 * y + (gx - c[4 * t + 2])
        if t == 0:
            total -= c[3] * a
        else:
            total += c[7] * a
    return su * total


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
