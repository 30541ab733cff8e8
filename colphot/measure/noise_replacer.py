"""Noise replacement (LSST's NoiseReplacer): every top-level footprint's pixels become noise.

The noise-replaced image is built once per tile; each source then sees its own heavy footprint
over it (:mod:`colphot.measure.footprints`), never its neighbours'. The noise is Gaussian with
the mean and standard deviation that ``noise_source`` chooses (``NoiseReplacerConfig``):

- ``"measure"`` (LSST's default): the image's sigma-clipped mean and standard deviation
  (afw's MEANCLIP/STDEVCLIP, 3 sigma, 3 iterations) over its finite pixels, or a regular
  sample of :data:`MEASURE_SAMPLE` of them on a larger tile;
- ``"variance"``: mean 0, each pixel's own variance;
- ``"variance_median"``: mean 0, the median of the finite positive variances.

``noise_offset`` is added to the mean. Draws come from numpy's PCG64, one stream per block of
:data:`N_BLOCKS` row blocks spawned from :func:`noise_seed`, in row-major order of the block's
replaced pixels: the same tile, footprints and configuration give the same image, bit for bit,
whatever the number of threads that fill the blocks. Non-finite pixels (NO_DATA) stay as they are;
a pixel whose variance is not finite and positive gets the mean under ``"variance"``.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from colphot.measure.footprints import Footprints, mark_footprints
from colphot.measure.local_background import clipped_mean_std

__all__ = ["MEASURE_SAMPLE", "N_BLOCKS", "NoiseReplaced", "noise_seed", "replace_with_noise"]

NoiseSource = Literal["measure", "variance", "variance_median"]

#: Pixels the ``"measure"`` noise source clips at most (a regular sample of a larger tile).
MEASURE_SAMPLE = 1 << 18
#: Row blocks of a tile with their own noise stream (the threads' unit of work).
N_BLOCKS = 16


def noise_seed(base: int, band: str | None, tract: int | None, patch: int | None) -> int:
    """The 63-bit seed of a tile's noise: a hash of ``base`` and the tile's band/tract/patch.

    >>> noise_seed(0, "r", 0, 3) == noise_seed(0, "r", 0, 3) != noise_seed(0, "g", 0, 3)
    True
    """
    text = f"colphot-noise/{int(base)}/{band}/{tract}/{patch}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


@dataclass(frozen=True)
class NoiseReplaced:
    """A noise-replaced image and how it was made.

    Attributes
    ----------
    image
        Copy of the tile's image (same dtype) with the replaced pixels drawn from noise.
    replaced
        Number of pixels replaced.
    mean, sigma
        Mean and standard deviation of the noise (``sigma`` NaN for ``"variance"``, where each
        pixel has its own), image units.
    """

    image: np.ndarray
    replaced: int
    mean: float
    sigma: float

    def provenance(self) -> dict[str, Any]:
        """What the output metadata records of the noise."""
        return {"replaced_pixels": self.replaced, "noise_mean": self.mean,
                "noise_sigma": self.sigma}


def replace_with_noise(
    image: np.ndarray,
    variance: np.ndarray,
    footprints: Footprints,
    *,
    seed: int,
    source: NoiseSource = "measure",
    offset: float = 0.0,
    n_threads: int = 1,
) -> NoiseReplaced:
    """Replace the pixels of ``footprints`` with Gaussian noise.

    Parameters
    ----------
    image, variance
        The tile's pixels and their variance (image units and their square).
    footprints
        The footprints to replace (clipped to the tile): the top-level ones and every measured
        source's.
    seed
        Seed of the noise (see :func:`noise_seed`).
    source, offset
        Where the noise's mean and standard deviation come from (module docstring), and a
        constant added to the mean (image units).
    n_threads
        Threads filling the row blocks (the result does not depend on it).

    Returns
    -------
    NoiseReplaced
        The new image (``image`` is not modified) and the noise's parameters.
    """
    if source not in ("measure", "variance", "variance_median"):
        raise ValueError(f"noise_source: expected 'measure', 'variance' or 'variance_median', "
                         f"got {source!r}")
    mean, sigma = float(offset), float("nan")
    if source == "variance_median":
        var = np.asarray(variance, dtype=np.float64).reshape(-1)
        var = var[np.isfinite(var) & (var > 0)]
        sigma = float(np.sqrt(np.median(var))) if var.size else 0.0
    elif source == "measure":
        pixels = np.asarray(image).reshape(-1)
        step = max(pixels.size // MEASURE_SAMPLE, 1)
        clip_mean, clip_std = clipped_mean_std(pixels[::step])
        mean += clip_mean if np.isfinite(clip_mean) else 0.0
        sigma = clip_std if np.isfinite(clip_std) else 0.0
    replaced = mark_footprints(footprints, image.shape)
    out = np.empty(image.shape, dtype=image.dtype)
    ny = image.shape[0]
    bounds = np.linspace(0, ny, N_BLOCKS + 1).astype(np.int64)
    streams = np.random.SeedSequence(seed).spawn(N_BLOCKS)

    def fill(b: int) -> int:
        r0, r1 = bounds[b], bounds[b + 1]
        out[r0:r1] = image[r0:r1]
        flat = out[r0:r1].reshape(-1)
        index = np.flatnonzero(replaced[r0:r1].reshape(-1))
        index = index[np.isfinite(flat[index])]
        draws = np.random.Generator(np.random.PCG64(streams[b])).standard_normal(index.size)
        if source == "variance":
            var = np.asarray(variance[r0:r1]).reshape(-1)[index].astype(np.float64)
            scale = np.sqrt(np.where(np.isfinite(var) & (var > 0), var, 0.0))
            flat[index] = mean + scale * draws
        else:
            flat[index] = mean + sigma * draws
        return int(index.size)

    if n_threads > 1:
        with ThreadPoolExecutor(n_threads) as pool:
            counts = list(pool.map(fill, range(N_BLOCKS)))
    else:
        counts = [fill(b) for b in range(N_BLOCKS)]
    return NoiseReplaced(out, sum(counts), float(mean), float(sigma))
