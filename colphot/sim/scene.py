"""Render simulated coadd pixels: a gridded double-Gaussian PSF, stars, galaxies, noise, defects.

Everything here is numpy on arrays in one tile's 0-based array pixel coordinates (pixel ``[i, j]``
has its centre at ``x = j``, ``y = i``); fluxes are nJy and pixel values nJy per pixel.

The PSF family is a double Gaussian: a core of sigma ``s`` with 90 % of the flux and a wing of
sigma ``2 s`` with 10 %, evaluated at pixel centres (no pixel-response convolution). A tile's PSF
is defined on a regular grid of sample positions; the *true* PSF at any position is the bilinear
combination of the samples' analytic profiles, with the weights :meth:`colphot.PsfModel.weights`
uses (clamped outside the grid). The sampled images written to the tile are therefore an exact
model of the rendered sources.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from colphot.tile.psf import bilinear_weights
from colphot.tile.write import DEFAULT_MASK_PLANES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "MASK_PLANES",
    "WING_FLUX",
    "WING_RATIO",
    "Defects",
    "GriddedPsf",
    "SceneArrays",
    "Sources",
    "add_noise",
    "apply_defects",
    "bilinear_weights",
    "double_gaussian",
    "gaussian",
    "psf_image",
    "psf_stamp_size",
    "render_boxes",
    "render_model",
    "render_tile",
]

#: LSST-style mask plane -> bit used by the simulated tiles (afw's usual assignment).
MASK_PLANES: dict[str, int] = dict(DEFAULT_MASK_PLANES)

#: Fraction of the PSF flux in the wide Gaussian.
WING_FLUX = 0.1
#: Wing sigma / core sigma.
WING_RATIO = 2.0
#: Stamps extend this many times the widest Gaussian sigma of a source (flux beyond: < 1e-7).
STAMP_SIGMAS = 6.0


# --------------------------------------------------------------------------------------------
# analytic profiles


def gaussian(dx: np.ndarray, dy: np.ndarray, cxx: float, cyy: float, cxy: float = 0.0
             ) -> np.ndarray:
    """Unit-integral elliptical Gaussian of covariance ``[[cxx, cxy], [cxy, cyy]]``.

    Parameters
    ----------
    dx, dy
        Offsets from the centre, pixels (broadcast together).
    cxx, cyy, cxy
        Second moments, pixels².

    Returns
    -------
    numpy.ndarray
        Profile value per unit area, pixels⁻² (sums to ~1 over pixel centres when well sampled).
    """
    det = cxx * cyy - cxy * cxy
    q = (cyy * dx * dx + cxx * dy * dy - 2.0 * cxy * dx * dy) / det
    return np.exp(-0.5 * q) / (2.0 * math.pi * math.sqrt(det))


def double_gaussian(dx: np.ndarray, dy: np.ndarray, sigma: float) -> np.ndarray:
    """Unit-integral double-Gaussian PSF of core sigma ``sigma`` (pixels) at offsets (dx, dy).

    The core holds ``1 - WING_FLUX`` of the flux, the wing (sigma ``WING_RATIO * sigma``) the
    rest. Units as :func:`gaussian`.
    """
    s2 = sigma * sigma
    w2 = (WING_RATIO * sigma) ** 2
    return (1.0 - WING_FLUX) * gaussian(dx, dy, s2, s2) + WING_FLUX * gaussian(dx, dy, w2, w2)


def psf_image(sigma: float, size: int, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """The double-Gaussian PSF sampled at the pixel centres of a ``size`` x ``size`` stamp.

    Parameters
    ----------
    sigma
        Core sigma, pixels.
    size
        Side of the stamp, pixels (odd for a stamp centred on its middle pixel).
    dx, dy
        Offset of the profile centre from the middle of the stamp, pixels.

    Returns
    -------
    numpy.ndarray
        ``(size, size)`` float64, the continuous unit-integral profile at pixel centres: not
        renormalised after sampling, so it sums to 1 minus what falls outside the stamp.
    """
    c = (size - 1) / 2.0
    grid = np.arange(size, dtype=np.float64) - c
    return double_gaussian(grid[None, :] - dx, grid[:, None] - dy, sigma)


def psf_stamp_size(sigma_max: float) -> int:
    """Odd PSF stamp side that holds ±5 wing sigmas of core sigma ``sigma_max`` (pixels)."""
    return 2 * int(math.ceil(5.0 * WING_RATIO * sigma_max)) + 1


# --------------------------------------------------------------------------------------------
# spatially varying PSF




@dataclass(frozen=True)
class GriddedPsf:
    """A double-Gaussian PSF whose core sigma is sampled on a regular grid of tile positions.

    Attributes
    ----------
    nodes_x, nodes_y
        Sorted node coordinates along x (``nx``) and y (``ny``), 0-based array pixels.
    sigma
        ``(ny, nx)`` core sigma at each node, pixels.
    size
        Side of the sampled PSF images, pixels (odd).
    """

    nodes_x: np.ndarray
    nodes_y: np.ndarray
    sigma: np.ndarray
    size: int

    def __post_init__(self) -> None:
        sigma = np.asarray(self.sigma, dtype=np.float64)
        if sigma.shape != (len(self.nodes_y), len(self.nodes_x)):
            raise ValueError(
                f"sigma: expected shape {(len(self.nodes_y), len(self.nodes_x))}, got {sigma.shape}"
            )
        if self.size % 2 == 0:
            raise ValueError(f"size: expected an odd stamp side, got {self.size}")

    @classmethod
    def regular(cls, shape: tuple[int, int],
                sigma_at_fraction: Callable[[np.ndarray, np.ndarray], np.ndarray], *, n: int = 3,
                size: int | None = None) -> GriddedPsf:
        """An ``n`` x ``n`` grid from corner pixel to corner pixel of an array of ``shape``.

        ``sigma_at_fraction(u, v)`` gives the core sigma (pixels) at fractional position
        ``u = x / (nx - 1)``, ``v = y / (ny - 1)`` (arrays in [0, 1]).
        """
        ny, nx = shape
        nodes_x = np.linspace(0.0, nx - 1.0, n)
        nodes_y = np.linspace(0.0, ny - 1.0, n)
        u, v = np.meshgrid(np.linspace(0.0, 1.0, n), np.linspace(0.0, 1.0, n))
        sigma = np.asarray(sigma_at_fraction(u, v), dtype=np.float64)
        return cls(nodes_x, nodes_y, sigma, size or psf_stamp_size(float(sigma.max())))

    @property
    def sample_x(self) -> np.ndarray:
        """``(n,)`` x of each sample, in the order of :meth:`images` (row by row), pixels."""
        return np.tile(np.asarray(self.nodes_x, dtype=np.float64), len(self.nodes_y))

    @property
    def sample_y(self) -> np.ndarray:
        """``(n,)`` y of each sample, in the order of :meth:`images`, pixels."""
        return np.repeat(np.asarray(self.nodes_y, dtype=np.float64), len(self.nodes_x))

    @property
    def sample_sigma(self) -> np.ndarray:
        """``(n,)`` core sigma of each sample, pixels."""
        return np.asarray(self.sigma, dtype=np.float64).ravel()

    def images(self) -> np.ndarray:
        """``(n, size, size)`` PSF images of the samples, centred on the middle pixel."""
        return np.stack([psf_image(s, self.size) for s in self.sample_sigma])

    def weights(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(index, weight)``, ``(m, 4)`` each: the true PSF at ``(x, y)`` is
        ``sum_j weight[:, j] * profile(sample_sigma[index[:, j]])``."""
        return bilinear_weights(self.nodes_x, self.nodes_y, x, y)

    def image_at(self, x: float, y: float, *, size: int | None = None) -> np.ndarray:
        """True PSF of a source at ``(x, y)``, on a stamp centred on pixel ``round(x, y)``.

        Returns a ``(size, size)`` unit-integral profile sampled at pixel centres (a source of
        flux ``F`` at ``(x, y)`` adds ``F`` times this to the stamp).
        """
        size = size or self.size
        index, weight = self.weights(np.array([x]), np.array([y]))
        dx = x - math.floor(x + 0.5)
        dy = y - math.floor(y + 0.5)
        sig = self.sample_sigma
        return sum(w * psf_image(sig[i], size, dx, dy)
                   for i, w in zip(index[0], weight[0], strict=True))

    def core_variance_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Weighted core second moment ``sum_j w_j s_j²`` at ``(x, y)``, pixels²."""
        index, weight = self.weights(x, y)
        return (weight * self.sample_sigma[index] ** 2).sum(axis=1)


# --------------------------------------------------------------------------------------------
# sources


@dataclass(frozen=True)
class Sources:
    """Sources to render, in array pixel coordinates.

    Attributes
    ----------
    x, y
        ``(m,)`` true centres, 0-based array pixels.
    flux
        ``(m,)`` total fluxes, nJy.
    qxx, qyy, qxy
        ``(m,)`` intrinsic second moments before the PSF, pixels² (0 for point sources).
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    qxx: np.ndarray = field(default_factory=lambda: np.zeros(0))
    qyy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    qxy: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        n = np.size(self.x)
        for name in ("x", "y", "flux", "qxx", "qyy", "qxy"):
            value = np.atleast_1d(np.asarray(getattr(self, name), dtype=np.float64))
            if name.startswith("q") and value.size == 0:
                value = np.zeros(n)
            if value.shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},), got {value.shape}")
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return int(self.x.size)


def render_model(shape: tuple[int, int], sources: Sources, psf: GriddedPsf) -> np.ndarray:
    """Noise-free image of ``sources`` seen through ``psf``.

    Each source is ``flux x sum_j w_j [(1-f) N(Q + s_j² I) + f N(Q + 4 s_j² I)]`` evaluated at
    pixel centres relative to its exact position, with the bilinear weights ``w_j`` of the PSF
    grid at the source (``Q`` its intrinsic moments), on a stamp of ±6 of its widest sigmas.

    Parameters
    ----------
    shape
        ``(ny, nx)`` of the image, pixels.
    sources
        What to draw (positions may lie off the image; their light on it is drawn).
    psf
        The tile's PSF.

    Returns
    -------
    numpy.ndarray
        ``(ny, nx)`` float64 model, nJy per pixel.
    """
    model = np.zeros(shape, dtype=np.float64)
    for k, amp, cxx, cyy, cxy in _source_gaussians(sources, psf):
        _add_gaussians(model, sources.x[k], sources.y[k], amp, cxx, cyy, cxy)
    return model


def render_boxes(boxes: np.ndarray, sources: Sources, psf: GriddedPsf) -> list[np.ndarray]:
    """Noise-free image of each source alone on its own box of the tile.

    Source ``k`` is drawn as :func:`render_model` draws it on the whole tile (the PSF at its
    tile position), on the box ``boxes[k] = (i0, j0, ny, nx)``: tile pixels ``[i0:i0 + ny,
    j0:j0 + nx]``. Equal to that region of ``render_model`` of the tile to rounding (the
    offsets are taken from the box origin).

    Parameters
    ----------
    boxes
        ``(m, 4)`` integer boxes ``(i0, j0, ny, nx)``, tile array pixels (may reach off the
        tile).
    sources
        The ``m`` sources, tile array coordinates.
    psf
        The tile's PSF.

    Returns
    -------
    list of numpy.ndarray
        ``m`` float64 images of shape ``(ny_k, nx_k)``, nJy per pixel.
    """
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if boxes.shape[0] != len(sources):
        raise ValueError(f"boxes: expected {len(sources)} boxes, got {boxes.shape[0]}")
    out = [np.zeros((int(b[2]), int(b[3])), dtype=np.float64) for b in boxes]
    for k, amp, cxx, cyy, cxy in _source_gaussians(sources, psf):
        i0, j0 = int(boxes[k, 0]), int(boxes[k, 1])
        _add_gaussians(out[k], sources.x[k] - j0, sources.y[k] - i0, amp, cxx, cyy, cxy)
    return out


def _source_gaussians(sources: Sources, psf: GriddedPsf
                      ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``(k, amp, cxx, cyy, cxy)``: the Gaussian components of each source ``k`` (nJy, px²)."""
    if len(sources) == 0:
        return
    index, weight = psf.weights(sources.x, sources.y)
    s2 = psf.sample_sigma[index] ** 2  # (m, 4)
    fracs = np.array([1.0 - WING_FLUX, WING_FLUX])
    scales = np.array([1.0, WING_RATIO**2])
    for k in range(len(sources)):
        keep = weight[k] > 0
        var = (s2[k][keep][:, None] * scales[None, :]).ravel()  # (c,)
        amp = (sources.flux[k] * weight[k][keep][:, None] * fracs[None, :]).ravel()
        cxx = sources.qxx[k] + var
        cyy = sources.qyy[k] + var
        cxy = np.full_like(var, sources.qxy[k])
        yield k, amp, cxx, cyy, cxy


def _add_gaussians(model: np.ndarray, x: float, y: float, amp: np.ndarray, cxx: np.ndarray,
                   cyy: np.ndarray, cxy: np.ndarray) -> None:
    """Add ``sum_c amp_c N(cov_c)`` centred at ``(x, y)`` to ``model`` in place.

    The stamp reaches :data:`STAMP_SIGMAS` times the widest component's major-axis sigma around
    the pixel nearest ``(x, y)``. Each Gaussian factors as ``exp(a dx²) exp(b dy²)
    exp(c dx dy)``: the first two are per column and per row, so an axis-aligned sum is one
    matrix product and only the cross term is evaluated per pixel.
    """
    ny, nx = model.shape
    if not (math.isfinite(x) and math.isfinite(y)):
        return
    aligned = not cxy.any()
    if aligned:
        major2 = float(np.maximum(cxx, cyy).max())
    else:
        major2 = float((0.5 * (cxx + cyy) + np.sqrt(0.25 * (cxx - cyy) ** 2 + cxy**2)).max())
    half = int(math.ceil(STAMP_SIGMAS * math.sqrt(major2)))
    xc, yc = math.floor(x + 0.5), math.floor(y + 0.5)
    j0, j1 = max(xc - half, 0), min(xc + half + 1, nx)
    i0, i1 = max(yc - half, 0), min(yc + half + 1, ny)
    if j0 >= j1 or i0 >= i1:
        return
    dx = np.arange(j0, j1, dtype=np.float64) - x
    dy = np.arange(i0, i1, dtype=np.float64) - y
    det = cxx * cyy - cxy * cxy
    norm = amp / (2.0 * math.pi * np.sqrt(det))
    gx = np.exp(np.multiply.outer(-0.5 * cyy / det, dx * dx))  # (c, w)
    gy = np.exp(np.multiply.outer(-0.5 * cxx / det, dy * dy))  # (c, h)
    if aligned:
        model[i0:i1, j0:j1] += (norm[:, None] * gy).T @ gx
        return
    cross = np.exp(np.multiply.outer(cxy / det, np.multiply.outer(dy, dx)))  # (c, h, w)
    cross *= (norm[:, None] * gy)[:, :, None]
    cross *= gx[:, None, :]
    model[i0:i1, j0:j1] += cross.sum(axis=0)


# --------------------------------------------------------------------------------------------
# noise and defects


def add_noise(model: np.ndarray, *, sky_sigma: float, gain: float, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian noise of a background-subtracted coadd.

    Parameters
    ----------
    model
        Noise-free image, nJy per pixel (sky already subtracted: zero mean background).
    sky_sigma
        Standard deviation of the sky noise, nJy per pixel.
    gain
        Electrons per nJy of source flux, for the source Poisson term, nJy⁻¹.
    rng
        Random generator.

    Returns
    -------
    image, variance
        ``model + N(0, sqrt(variance))`` (float64) and ``variance = sky_sigma² +
        max(model, 0) / gain`` (float64), nJy and nJy².
    """
    variance = sky_sigma**2 + np.clip(model, 0.0, None) / gain
    image = model + rng.standard_normal(model.shape) * np.sqrt(variance)
    return image, variance


@dataclass(frozen=True)
class Defects:
    """Where a tile's pixels are damaged, in its array pixel coordinates.

    Attributes
    ----------
    bad_columns
        ``(x, y_start, y_stop, value)``: column ``x`` from row ``y_start`` to ``y_stop``
        (exclusive) gets BAD and pixel value ``value`` (nJy).
    no_data
        ``(x_start, x_stop, y_start, y_stop)`` rectangles (stop exclusive) with no input: NO_DATA,
        image NaN, variance inf, no DETECTED.
    interpolated
        ``(x, y, radius)`` circles (pixels): saturated pixels inside also get INTRP.
    saturation
        Pixel values above this (nJy) are clipped to it and get SAT.
    edge_width
        Border of the array that gets EDGE, pixels.
    detection_sigma
        DETECTED where the noise-free model exceeds this many noise sigmas.
    """

    bad_columns: tuple[tuple[int, int, int, float], ...] = ()
    no_data: tuple[tuple[int, int, int, int], ...] = ()
    interpolated: tuple[tuple[float, float, float], ...] = ()
    saturation: float = math.inf
    edge_width: int = 4
    detection_sigma: float = 3.0


def apply_defects(image: np.ndarray, variance: np.ndarray, model: np.ndarray, defects: Defects,
                  *, planes: dict[str, int] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Damage ``image``/``variance`` as ``defects`` says and build the mask.

    Parameters
    ----------
    image, variance
        Noisy image (nJy) and its variance (nJy²); not modified.
    model
        Noise-free image, nJy (for DETECTED).
    defects
        The defects.
    planes
        Mask plane -> bit, :data:`MASK_PLANES` by default.

    Returns
    -------
    image, variance, mask
        Copies with the defects applied, and the ``int32`` mask.
    """
    planes = planes or MASK_PLANES
    bit = {name: np.int32(1 << b) for name, b in planes.items()}
    image = image.copy()
    variance = variance.copy()
    ny, nx = image.shape
    mask = np.zeros(image.shape, dtype=np.int32)
    mask[model > defects.detection_sigma * np.sqrt(variance)] |= bit["DETECTED"]

    saturated = image > defects.saturation
    image[saturated] = defects.saturation
    mask[saturated] |= bit["SAT"]
    if defects.interpolated and saturated.any():
        yy, xx = np.nonzero(saturated)
        hit = np.zeros(yy.size, dtype=bool)
        for cx, cy, radius in defects.interpolated:
            hit |= (xx - cx) ** 2 + (yy - cy) ** 2 <= radius * radius
        mask[yy[hit], xx[hit]] |= bit["INTRP"]

    for x, y_start, y_stop, value in defects.bad_columns:
        if 0 <= x < nx:
            rows = _span(y_start, y_stop, ny)
            image[rows, int(x)] = value
            mask[rows, int(x)] |= bit["BAD"]

    for x_start, x_stop, y_start, y_stop in defects.no_data:
        box = (_span(y_start, y_stop, ny), _span(x_start, x_stop, nx))
        image[box] = np.nan
        variance[box] = np.inf
        mask[box] = (mask[box] & ~bit["DETECTED"]) | bit["NO_DATA"]

    w = int(defects.edge_width)
    if w > 0:
        for border in (np.s_[:w, :], np.s_[-w:, :], np.s_[:, :w], np.s_[:, -w:]):
            mask[border] |= bit["EDGE"]
    return image, variance, mask


def _span(start: float, stop: float, n: int) -> slice:
    """``[start, stop)`` clipped to ``[0, n)``: empty when the range misses the axis (a
    negative ``stop`` must not count from the end)."""
    lo = min(max(int(start), 0), n)
    return slice(lo, max(min(int(stop), n), lo))


@dataclass(frozen=True)
class SceneArrays:
    """Rendered planes of one tile: ``model``/``image`` nJy, ``variance`` nJy², ``mask`` bits."""

    model: np.ndarray
    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray


def render_tile(shape: tuple[int, int], sources: Sources, psf: GriddedPsf, *, sky_sigma: float,
                gain: float, rng: np.random.Generator, defects: Defects | None = None
                ) -> SceneArrays:
    """Model, noise and defects of one tile.

    Parameters
    ----------
    shape
        ``(ny, nx)``, pixels.
    sources
        Sources in the tile's array coordinates (fluxes nJy).
    psf
        The tile's PSF.
    sky_sigma, gain, rng
        As :func:`add_noise`.
    defects
        As :func:`apply_defects`; ``Defects()`` (EDGE and DETECTED only) by default.

    Returns
    -------
    SceneArrays
        ``image`` and ``variance`` float32, ``mask`` int32, ``model`` float64.
    """
    model = render_model(shape, sources, psf)
    image, variance = add_noise(model, sky_sigma=sky_sigma, gain=gain, rng=rng)
    image, variance, mask = apply_defects(image, variance, model, defects or Defects())
    return SceneArrays(model, image.astype(np.float32), variance.astype(np.float32), mask)
