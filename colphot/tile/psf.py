"""PSF models of a tile: a constant image, or images sampled on a grid of tile positions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from colphot.measure.adaptive_moments import adaptive_moments, determinant_radius

__all__ = ["PsfModel", "bilinear_weights", "psf_adaptive_sigma", "psf_moments_sigma"]


def psf_adaptive_sigma(images: np.ndarray) -> np.ndarray:
    """Determinant radius ``(Ixx Iyy - Ixy^2)^(1/4)`` of the adaptive moments of PSF images,
    pixels: LSST's ``psf.computeShape(position).getDeterminantRadius()``, the PSF sigma
    LocalBackground sizes its annulus with.

    ``images`` is ``(n, k, k)``, each centred on its middle pixel; the Gaussian weight stays
    on that pixel (SdssShape's ``computeAdaptiveMoments`` on the kernel image, as
    meas_algorithms' ``ImagePsf`` does). For a Gaussian PSF it is its sigma; unlike the
    unweighted moments it is insensitive to the PSF's wings and to the stamp size.
    """
    return determinant_radius(*adaptive_moments(np.asarray(images, dtype=np.float64)))


def psf_moments_sigma(images: np.ndarray) -> np.ndarray:
    """Determinant radius ``(Ixx Iyy - Ixy^2)^(1/4)`` of the unweighted moments of PSF
    images, pixels.

    ``images`` is ``(n, k, k)``, each centred on its middle pixel; the result is ``(n,)``
    (for a Gaussian PSF, its sigma). Sensitive to the wings and the stamp size; colphot's
    annulus uses :func:`psf_adaptive_sigma`, as LSST does.
    """
    n, k, _ = images.shape
    c = (k - 1) / 2.0
    yy, xx = np.mgrid[0:k, 0:k] - c
    total = images.sum(axis=(1, 2))
    mx = (images * xx).sum(axis=(1, 2)) / total
    my = (images * yy).sum(axis=(1, 2)) / total
    dx = xx[None] - mx[:, None, None]
    dy = yy[None] - my[:, None, None]
    ixx = (images * dx * dx).sum(axis=(1, 2)) / total
    iyy = (images * dy * dy).sum(axis=(1, 2)) / total
    ixy = (images * dx * dy).sum(axis=(1, 2)) / total
    det = np.clip(ixx * iyy - ixy * ixy, 0.0, None)
    return det**0.25


@dataclass(eq=False)
class PsfModel:
    """A PSF sampled at one or more tile positions.

    Attributes
    ----------
    images
        ``(n, k, k)`` float64 PSF images, ``k`` odd, each centred on its middle pixel and
        normalised to sum 1.
    grid_x, grid_y
        ``(n,)`` array pixel coordinates (0-based, this tile's array) where each image applies;
        ignored when ``n == 1`` (a constant PSF).
    """

    images: np.ndarray
    grid_x: np.ndarray
    grid_y: np.ndarray

    def __post_init__(self) -> None:
        images = np.asarray(self.images, dtype=np.float64)
        if images.ndim == 2:
            images = images[None]
        if images.ndim != 3 or images.shape[1] != images.shape[2] or images.shape[1] % 2 == 0:
            raise ValueError(f"PSF images must be (n, k, k) with k odd, got shape {images.shape}")
        sums = images.sum(axis=(1, 2))
        if not np.all(np.isfinite(sums)) or np.any(sums <= 0):
            raise ValueError("PSF images must be finite with a positive sum")
        self.images = images / sums[:, None, None]
        n = images.shape[0]
        self.grid_x = np.broadcast_to(np.asarray(self.grid_x, dtype=np.float64), (n,)).copy()
        self.grid_y = np.broadcast_to(np.asarray(self.grid_y, dtype=np.float64), (n,)).copy()

    @cached_property
    def sigmas(self) -> np.ndarray:
        """``(n,)`` adaptive-moment sigma (determinant radius, pixels) of each sampled image:
        :func:`psf_adaptive_sigma`, computed on first use."""
        return psf_adaptive_sigma(self.images)

    @classmethod
    def constant(cls, image: np.ndarray) -> PsfModel:
        """A PSF that is the same everywhere on the tile."""
        return cls(np.asarray(image)[None] if np.ndim(image) == 2 else image, [0.0], [0.0])

    @property
    def size(self) -> int:
        """Side ``k`` of the PSF images, pixels."""
        return int(self.images.shape[1])

    def weights(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interpolation of the sampled PSFs at array pixel positions ``(x, y)``.

        Returns ``(index, weight)``, both ``(len(x), 4)``: the PSF at a position is
        ``sum_j weight[:, j] * images[index[:, j]]``. Samples on a regular grid are interpolated
        bilinearly (clamped to the grid outside it); irregular samples use the nearest one.
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        m = x.shape[0]
        index = np.zeros((m, 4), dtype=np.int64)
        weight = np.zeros((m, 4), dtype=np.float64)
        n = self.images.shape[0]
        if n == 1:
            weight[:, 0] = 1.0
            return index, weight
        gx = np.unique(self.grid_x)
        gy = np.unique(self.grid_y)
        lookup = {(a, b): i for i, (a, b) in enumerate(zip(self.grid_x, self.grid_y, strict=True))}
        if len(gx) * len(gy) == n and len(lookup) == n:
            table = np.array([[lookup[(a, b)] for a in gx] for b in gy], dtype=np.int64)
            flat, weight = bilinear_weights(gx, gy, x, y)
            return table.ravel()[flat], weight
        d2 = (x[:, None] - self.grid_x[None]) ** 2 + (y[:, None] - self.grid_y[None]) ** 2
        index[:, 0] = np.argmin(d2, axis=1)
        weight[:, 0] = 1.0
        return index, weight

    def sigma_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Adaptive-moment sigma (determinant radius) of the PSF at array positions ``(x, y)``,
        pixels: the sampled images' sigmas interpolated with :meth:`weights`."""
        index, weight = self.weights(x, y)
        return (self.sigmas[index] * weight).sum(axis=1)


def bilinear_weights(nodes_x: np.ndarray, nodes_y: np.ndarray, x: np.ndarray, y: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear interpolation weights on a regular grid, clamped outside it.

    Parameters
    ----------
    nodes_x, nodes_y
        Sorted, distinct node coordinates along x (``nx``) and y (``ny``), pixels.
    x, y
        Positions, pixels.

    Returns
    -------
    index, weight
        ``(m, 4)`` each: flat node index ``iy * nx + ix`` of the corners (lower-left,
        lower-right, upper-left, upper-right) and their weights, which sum to 1.
    """
    nodes_x = np.asarray(nodes_x, dtype=np.float64)
    nodes_y = np.asarray(nodes_y, dtype=np.float64)
    ix, tx = _bracket(nodes_x, np.atleast_1d(np.asarray(x, dtype=np.float64)))
    iy, ty = _bracket(nodes_y, np.atleast_1d(np.asarray(y, dtype=np.float64)))
    nx = nodes_x.size
    ix1 = np.minimum(ix + 1, nx - 1)
    iy1 = np.minimum(iy + 1, nodes_y.size - 1)
    index = np.stack([iy * nx + ix, iy * nx + ix1, iy1 * nx + ix, iy1 * nx + ix1], axis=1)
    weight = np.stack([(1 - tx) * (1 - ty), tx * (1 - ty), (1 - tx) * ty, tx * ty], axis=1)
    return index, weight


def _bracket(grid: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell index and fractional position of ``v`` along a sorted grid (clamped at the ends)."""
    if len(grid) == 1:
        return np.zeros(v.shape, dtype=np.int64), np.zeros(v.shape)
    i = np.clip(np.searchsorted(grid, v, side="right") - 1, 0, len(grid) - 2)
    t = np.clip((v - grid[i]) / (grid[i + 1] - grid[i]), 0.0, 1.0)
    t = np.where(np.isfinite(t), t, 0.0)
    return i, t
