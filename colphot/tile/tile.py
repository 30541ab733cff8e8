"""The in-memory tile: one band's coadd of one tract/patch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.wcs import WCS

from colphot._arrays import as_mask, as_plane
from colphot._identity import band_problem, parse_index
from colphot.tile.ap_corr import ChebyshevField
from colphot.tile.psf import PsfModel

__all__ = ["Tile"]


@dataclass(eq=False)
class Tile:
    """One coadd tile ready to measure.

    Attributes
    ----------
    image
        2D pixel values (float32 or float64), in ``flux_unit`` per pixel.
    mask
        2D unsigned integer bit planes, or ``None`` (no mask).
    variance
        2D variance of ``image``, (``flux_unit``)^2.
    wcs
        Celestial FITS WCS of the array (astropy; 1-based FITS convention inside, colphot uses it
        through ``pixel_to_world_values``/``world_to_pixel_values``, which are 0-based).
    psf
        PSF model, or ``None``.
    band, tract, patch
        Identity of the tile (``tract``/``patch`` may be ``None``).
    xy0
        Parent-frame pixel coordinates ``(x0, y0)`` of the array's pixel ``[0, 0]``.
    mask_planes
        Mask plane name -> bit number.
    flux_scale
        Multiply pixel values by this to get nJy (1.0 when already nJy); ``None`` if uncalibrated.
    flux_unit
        Unit of pixel values after ``flux_scale`` is applied: ``"nJy"`` when calibrated.
    variance_estimated
        True when the variance was estimated from the image rather than read.
    uri
        Where the tile was read from.
    ap_corr
        Aperture-correction map (:mod:`colphot.tile.ap_corr`): LSST field name
        (``base_PsfFlux_instFlux``, ...) -> :class:`~colphot.tile.ap_corr.ChebyshevField` over
        parent-frame pixels; ``None`` when the tile has none.
    """

    image: np.ndarray
    mask: np.ndarray | None
    variance: np.ndarray
    wcs: WCS
    psf: PsfModel | None = None
    band: str | None = None
    tract: int | None = None
    patch: int | None = None
    xy0: tuple[int, int] = (0, 0)
    mask_planes: dict[str, int] = field(default_factory=dict)
    flux_scale: float | None = 1.0
    flux_unit: str = "nJy"
    variance_estimated: bool = False
    uri: str | None = None
    ap_corr: dict[str, ChebyshevField] | None = None

    def __post_init__(self) -> None:
        """Check every field and normalise the planes (C order, native byte order, float32 or
        float64 pixels with the variance in the image's dtype, uint32/uint64 masks), so that
        the kernels see one set of types; errors name the field."""
        self.image = as_plane("image", self.image)
        self.variance = as_plane("variance", self.variance, shape=self.image.shape,
                                 dtype=self.image.dtype)
        self.mask = as_mask("mask", self.mask, shape=self.image.shape)
        if not isinstance(self.wcs, WCS) or not self.wcs.has_celestial \
                or self.wcs.naxis != 2:
            raise TypeError(f"wcs: expected a 2-axis celestial astropy WCS, got "
                            f"{type(self.wcs).__name__}")
        if self.psf is not None and not isinstance(self.psf, PsfModel):
            raise TypeError(f"psf: expected a colphot PsfModel or None, got "
                            f"{type(self.psf).__name__}")
        if self.band is not None and (why := band_problem(self.band)):
            raise ValueError(f"band: {why}")
        for key in ("tract", "patch"):
            value = getattr(self, key)
            if value is not None:
                try:
                    setattr(self, key, parse_index(value))
                except ValueError as err:
                    raise ValueError(f"{key}: {err}") from err
        try:
            x0, y0 = self.xy0
            if any(isinstance(v, bool) or int(v) != v for v in (x0, y0)):
                raise ValueError
            self.xy0 = (int(x0), int(y0))
        except (TypeError, ValueError, OverflowError) as err:
            raise ValueError(f"xy0: expected two integers, got {self.xy0!r}") from err
        planes = dict(self.mask_planes or {})
        bits = 8 * (self.mask.itemsize if self.mask is not None else 8)
        for plane, bit in planes.items():
            if not isinstance(plane, str) or isinstance(bit, bool) or not isinstance(bit, int) \
                    or not 0 <= bit < bits:
                raise ValueError(f"mask_planes: {plane!r} -> {bit!r} is not a name and a bit "
                                 f"number in [0, {bits})")
        self.mask_planes = planes
        if self.ap_corr is not None:
            bad = {k: type(v).__name__ for k, v in dict(self.ap_corr).items()
                   if not isinstance(k, str) or not isinstance(v, ChebyshevField)}
            if bad:
                raise TypeError(f"ap_corr: expected field names -> ChebyshevField, got {bad}")
            self.ap_corr = dict(self.ap_corr)

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the pixel arrays."""
        return self.image.shape  # type: ignore[return-value]

    def mask_bits(self, planes: tuple[str, ...] | list[str]) -> int:
        """OR of the bit values of the named planes that this tile's mask defines."""
        value = 0
        for name in planes:
            bit = self.mask_planes.get(name)
            if bit is not None:
                value |= 1 << bit
        return value

    def provenance(self) -> dict[str, Any]:
        """What the output metadata records of this tile."""
        return {
            "uri": self.uri,
            "band": self.band,
            "tract": self.tract,
            "patch": self.patch,
            "shape": list(self.shape),
            "xy0": list(self.xy0),
            "flux_unit": self.flux_unit,
            "flux_scale": self.flux_scale,
            "variance_estimated": self.variance_estimated,
            "has_psf": self.psf is not None,
            "has_mask": self.mask is not None,
            "ap_corr": sorted(self.ap_corr) if self.ap_corr is not None else None,
        }
