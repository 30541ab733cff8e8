"""Deblended measurement of one tile: in-band footprints joined, the image noise-replaced.

LSST's ``ForcedMeasurementTask.run`` with a ``NoiseReplacer``: every top-level footprint of the
tile is replaced by noise, then each source is measured with only its own heavy footprint
inserted. Here the noise-replaced image is built once and each source reads its footprint's
pixels over it (:mod:`colphot.measure.footprints`), so the measurement stays vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from colphot.config import ForcedPhotConfig
from colphot.measure.footprints import Footprints, clip_footprints, conserve_flux
from colphot.measure.noise_replacer import noise_seed, replace_with_noise
from colphot.references.in_band import join_in_band

if TYPE_CHECKING:
    import polars as pl

    from colphot._typing import PathLike, StorageOptions
    from colphot.tile.tile import Tile

__all__ = ["Deblend", "deblend_provenance", "prepare_deblend"]


@dataclass(frozen=True)
class Deblend:
    """What deblended measurement of a tile needs.

    Attributes
    ----------
    image
        The tile's image with every top-level footprint (and every measured source's) replaced
        by noise.
    footprints
        One heavy footprint per source, in measurement order, clipped to the tile.
    provenance
        The noise's parameters and seed, for the output metadata.
    """

    image: np.ndarray
    footprints: Footprints
    provenance: dict[str, Any]


def deblend_provenance(tile: Tile, config: ForcedPhotConfig, in_band: str) -> dict[str, Any]:
    """The ``deblend`` entry of a tile's provenance: in-band catalog, noise source and seed."""
    return {
        "in_band": in_band,
        "noise_source": config.noise_source,
        "noise_offset": config.noise_offset,
        "noise_seed": noise_seed(config.noise_seed, tile.band, tile.tract, tile.patch),
        "conserve_flux": config.conserve_flux,
    }


def prepare_deblend(
    tile: Tile,
    refs: pl.DataFrame,
    in_band: pl.DataFrame | pl.LazyFrame | PathLike,
    config: ForcedPhotConfig,
    *,
    source: str | None = None,
    storage_options: StorageOptions = None,
    n_threads: int = 1,
) -> Deblend:
    """Join the in-band catalog to ``refs`` (in measurement order) and noise-replace the tile.

    Raises the errors of :func:`colphot.references.in_band.join_in_band`.
    """
    join = join_in_band(refs, in_band, tile, source=source, storage_options=storage_options)
    rows = clip_footprints(join.x0, join.y0, join.width, join.height, join.values,
                           join.value_offset, join.mask, join.mask_offset, tile.image)
    if config.conserve_flux:
        rows = conserve_flux(rows, (join.parent != 0) & join.has_values, tile.image)
    replace = np.union1d(np.flatnonzero(join.top_level), join.source_row)
    info = deblend_provenance(tile, config, join.source)
    noise = replace_with_noise(tile.image, tile.variance, rows.take(replace),
                               seed=info["noise_seed"], source=config.noise_source,
                               offset=config.noise_offset, n_threads=n_threads)
    info.update(noise.provenance())
    return Deblend(noise.image, rows.take(join.source_row), info)
