"""Forced-photometry configuration: one frozen, keyword-only, serialisable dataclass."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from colphot._typing import ApertureMethod

__all__ = ["ALGORITHMS", "DEFAULT_RADII", "NOISE_SOURCES", "UNDEBLENDED", "ForcedPhotConfig",
           "aperture_name"]

#: Algorithms in execution order (centroid first, pixel flags last, as meas_base orders plugins).
ALGORITHMS: tuple[str, ...] = (
    "centroid",
    "psf_flux",
    "aperture",
    "gaussian_flux",
    "local_background",
    "pixel_flags",
)

#: Algorithms that can also run on the original image of a deblended measurement
#: (``undeblended_`` columns, LSST's ``ForcedMeasurementConfig.undeblended``).
UNDEBLENDED: tuple[str, ...] = ("psf_flux", "aperture")

#: Where the noise of noise replacement comes from (LSST's ``NoiseReplacerConfig.noiseSource``
#: without ``meta``).
NOISE_SOURCES: tuple[str, ...] = ("measure", "variance", "variance_median")

#: LSST's default circular-aperture radii, pixels.
DEFAULT_RADII: tuple[float, ...] = (3.0, 4.5, 6.0, 9.0, 12.0, 17.0, 25.0, 35.0, 50.0, 70.0)


def aperture_name(radius: float) -> str:
    """Two-digit column token of an aperture radius: 3 -> ``03``, 4.5 -> ``04p5``, 70 -> ``70``."""
    whole = int(radius)
    frac = radius - whole
    if frac == 0:
        return f"{whole:02d}"
    return f"{whole:02d}p{str(f'{radius:g}').split('.', 1)[1]}"


@dataclass(frozen=True, kw_only=True)
class ForcedPhotConfig:
    """Parameters of :func:`colphot.forced_photometry`.

    Parameters
    ----------
    plugins
        Algorithms to run, a subset of :data:`ALGORITHMS` (``centroid`` always runs).
    aperture_radii
        Circular-aperture radii, pixels (sorted on construction).
    aperture_method
        ``"exact"`` pixel-circle overlap, ``"subpixel"`` n x n sampling of each pixel, or
        ``"center"`` (a pixel counts whole when its centre is inside the circle).
    subpixels
        Samples per pixel side for ``"subpixel"`` (5 reproduces SExtractor's FLUX_APER).
    psf_bad_mask_planes
        Mask planes whose pixels the PSF fit ignores (non-finite pixels are always ignored).
    local_background_inner, local_background_outer
        Annulus radii of the local background in units of the PSF's Gaussian sigma (LSST: 7, 15).
    local_background_bad_mask_planes
        Mask planes excluded from the background annulus.
    local_background_n_sigma, local_background_n_iter
        Sigma clipping: rejection threshold (sigma) and iterations (LSST: 3, 3).
    footprint_radius
        Half size, pixels, of the box in which pixel flags are gathered when the tile has no PSF
        (otherwise the PSF model's box, LSST's footprint stand-in when no in-band catalog is
        given).
    noise_source, noise_offset, noise_seed
        Deblended measurement (an in-band catalog given): the noise that replaces every
        top-level footprint (LSST's ``NoiseReplacerConfig``): ``"measure"`` (the image's clipped
        mean and standard deviation, LSST's default), ``"variance"`` (each pixel's variance)
        or ``"variance_median"``; a constant added to its mean (image units); and the base of
        the per-tile seed, which is hashed with the tile's band/tract/patch.
    conserve_flux
        Deblended measurement: share the observed pixels of each blend among its children in
        proportion to their in-band values before insertion (the deblender's ``conserveFlux``).
    undeblended_plugins
        Deblended measurement: algorithms of :data:`UNDEBLENDED` also run on the original
        image, as ``undeblended_`` columns (LSST's default: none).
    """

    plugins: tuple[str, ...] = ALGORITHMS
    aperture_radii: tuple[float, ...] = DEFAULT_RADII
    aperture_method: ApertureMethod = "exact"
    subpixels: int = 5
    psf_bad_mask_planes: tuple[str, ...] = ("BAD", "NO_DATA")
    local_background_inner: float = 7.0
    local_background_outer: float = 15.0
    local_background_bad_mask_planes: tuple[str, ...] = ("BAD", "SAT", "NO_DATA")
    local_background_n_sigma: float = 3.0
    local_background_n_iter: int = 3
    footprint_radius: int = 5
    noise_source: str = "measure"
    noise_offset: float = 0.0
    noise_seed: int = 0
    conserve_flux: bool = False
    undeblended_plugins: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("plugins", "aperture_radii", "psf_bad_mask_planes",
                     "local_background_bad_mask_planes", "undeblended_plugins"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        unknown = [p for p in self.plugins if p not in ALGORITHMS]
        if unknown:
            raise ValueError(f"plugins: unknown algorithm(s) {unknown}; choose from {ALGORITHMS}")
        plugins = tuple(a for a in ALGORITHMS if a in self.plugins or a == "centroid")
        object.__setattr__(self, "plugins", plugins)
        radii = tuple(sorted(float(r) for r in self.aperture_radii))
        if any(not r > 0 for r in radii) or len(set(radii)) != len(radii):
            raise ValueError(f"aperture_radii: need distinct positive radii, got {radii}")
        tokens = [aperture_name(r) for r in radii]
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"aperture_radii: radii {radii} give clashing column names {tokens}")
        object.__setattr__(self, "aperture_radii", radii)
        if self.aperture_method not in ("exact", "subpixel", "center"):
            raise ValueError(
                f"aperture_method: expected 'exact', 'subpixel' or 'center', "
                f"got {self.aperture_method!r}"
            )
        if int(self.subpixels) < 1:
            raise ValueError(f"subpixels: expected an integer >= 1, got {self.subpixels}")
        unknown = [p for p in self.undeblended_plugins if p not in UNDEBLENDED]
        if unknown:
            raise ValueError(f"undeblended_plugins: unknown algorithm(s) {unknown}; choose from "
                             f"{UNDEBLENDED}")
        object.__setattr__(self, "undeblended_plugins",
                           tuple(a for a in UNDEBLENDED if a in self.undeblended_plugins))
        if self.noise_source not in NOISE_SOURCES:
            raise ValueError(f"noise_source: expected one of {NOISE_SOURCES}, got "
                             f"{self.noise_source!r}")
        if not isinstance(self.noise_seed, int) or isinstance(self.noise_seed, bool) \
                or self.noise_seed < 0:
            raise ValueError(f"noise_seed: expected a non-negative integer, got "
                             f"{self.noise_seed!r}")
        if not isinstance(self.conserve_flux, bool):
            raise ValueError(f"conserve_flux: expected true or false, got {self.conserve_flux!r}")
        if not 0 < self.local_background_inner < self.local_background_outer:
            raise ValueError(
                "local_background_inner/outer: need 0 < inner < outer, got "
                f"{self.local_background_inner}, {self.local_background_outer}"
            )

    @property
    def aperture_names(self) -> tuple[str, ...]:
        """Column tokens of the aperture radii (``03``, ``04p5``, ...)."""
        return tuple(aperture_name(r) for r in self.aperture_radii)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every parameter."""
        out = dataclasses.asdict(self)
        out.pop("extra")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ForcedPhotConfig:
        """Build from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"config: unknown parameter(s) {unknown}; known: {sorted(names)}")
        return cls(**data)

    def to_json(self) -> str:
        """The configuration as JSON text."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ForcedPhotConfig:
        """Read a JSON or YAML file of parameters."""
        import yaml

        with open(path) as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{os.fspath(path)}: a config file holds a mapping of parameters")
        return cls.from_dict(data)
