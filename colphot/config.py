"""Forced-photometry configuration: one frozen, keyword-only, serialisable dataclass."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
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


#: Largest aperture radius, pixels (a kernel's time grows with its square).
MAX_RADIUS = 1000.0
#: Largest sub-pixel sampling per pixel side (time grows with its square).
MAX_SUBPIXELS = 64


def _names(name: str, value: Any) -> tuple[str, ...]:
    """A tuple of names from a list of strings (a bare string is an error, not its letters)."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name}: expected a list of names, got {value!r}")
    out = tuple(value)
    bad = [v for v in out if not isinstance(v, str)]
    if bad:
        raise TypeError(f"{name}: expected names (strings), got {bad}")
    return out


def _integer(name: str, value: Any, low: int, high: int) -> int:
    """An integer in ``[low, high]`` (2.5 or True is an error, not 2 or 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if not (isinstance(value, float) and value.is_integer()):
            raise TypeError(f"{name}: expected an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name}: expected an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _number(name: str, value: Any, low: float, high: float, *, low_open: bool = False
            ) -> float:
    """A finite real number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    number = float(value)
    inside = (low < number if low_open else low <= number) and number <= high
    if not (math.isfinite(number) and inside):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}: expected a number in {bracket}{low:g}, {high:g}], got "
                         f"{value!r}")
    return number


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
        ``"sinc"`` (LSST's CircularApertureFlux: sinc-interpolated coefficients up to
        ``max_sinc_radius``, the pixel-centre sum above it), ``"exact"`` pixel-circle overlap,
        ``"subpixel"`` n x n sampling of each pixel, or ``"center"`` (a pixel counts whole when
        its centre is inside the circle).
    max_sinc_radius
        Largest radius, pixels, measured with sinc coefficients (LSST: 10).
    subpixels
        Samples per pixel side for ``"subpixel"`` (5 reproduces SExtractor's FLUX_APER).
    psf_bad_mask_planes
        Mask planes whose pixels the PSF fit ignores (LSST's ``badMaskPlanes``: none).
    local_background_inner, local_background_outer
        Annulus radii of the local background in units of the PSF's Gaussian sigma (LSST: 7, 15).
    local_background_bad_mask_planes
        Mask planes excluded from the background annulus.
    local_background_n_sigma, local_background_n_iter
        Sigma clipping: rejection threshold (sigma) and iterations (LSST: 3, 3).
    footprint_radius
        Radius, pixels, of the circular footprint that pixel flags look in when no in-band
        catalog gives the sources' footprints (LSST uses the reference's detection footprint,
        which a reference catalog does not carry).
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
    apply_ap_corr
        Scale ``psfFlux`` and ``gaussianFlux`` by the tile's aperture-correction map, with
        ``_apCorr``, ``_apCorrErr`` and ``_flag_apCorr`` columns (LSST's ``doApCorr``: true).
    """

    plugins: tuple[str, ...] = ALGORITHMS
    aperture_radii: tuple[float, ...] = DEFAULT_RADII
    aperture_method: ApertureMethod = "sinc"
    max_sinc_radius: float = 10.0
    subpixels: int = 5
    psf_bad_mask_planes: tuple[str, ...] = ()
    local_background_inner: float = 7.0
    local_background_outer: float = 15.0
    local_background_bad_mask_planes: tuple[str, ...] = ("BAD", "SAT", "NO_DATA")
    local_background_n_sigma: float = 3.0
    local_background_n_iter: int = 3
    footprint_radius: float = 5.0
    noise_source: str = "measure"
    noise_offset: float = 0.0
    noise_seed: int = 0
    conserve_flux: bool = False
    undeblended_plugins: tuple[str, ...] = ()
    apply_ap_corr: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("plugins", "psf_bad_mask_planes", "local_background_bad_mask_planes",
                     "undeblended_plugins"):
            object.__setattr__(self, name, _names(name, getattr(self, name)))
        unknown = [p for p in self.plugins if p not in ALGORITHMS]
        if unknown:
            raise ValueError(f"plugins: unknown algorithm(s) {unknown}; choose from {ALGORITHMS}")
        plugins = tuple(a for a in ALGORITHMS if a in self.plugins or a == "centroid")
        object.__setattr__(self, "plugins", plugins)
        if isinstance(self.aperture_radii, str | bytes) or not hasattr(
                self.aperture_radii, "__iter__"):
            raise TypeError(f"aperture_radii: expected a list of radii in pixels, got "
                            f"{self.aperture_radii!r}")
        radii = tuple(sorted(_number("aperture_radii", r, 0.0, MAX_RADIUS, low_open=True)
                             for r in self.aperture_radii))
        if not radii or len(set(radii)) != len(radii):
            raise ValueError(f"aperture_radii: need distinct positive radii, got {radii}")
        tokens = [aperture_name(r) for r in radii]
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"aperture_radii: radii {radii} give clashing column names {tokens}")
        object.__setattr__(self, "aperture_radii", radii)
        if self.aperture_method not in ("sinc", "exact", "subpixel", "center"):
            raise ValueError(
                f"aperture_method: expected 'sinc', 'exact', 'subpixel' or 'center', "
                f"got {self.aperture_method!r}"
            )
        object.__setattr__(self, "max_sinc_radius", _number(
            "max_sinc_radius", self.max_sinc_radius, 0.0, MAX_RADIUS))
        object.__setattr__(self, "subpixels", _integer("subpixels", self.subpixels, 1,
                                                        MAX_SUBPIXELS))
        object.__setattr__(self, "footprint_radius",
                           _number("footprint_radius", self.footprint_radius, 0.0, 1000.0))
        object.__setattr__(self, "local_background_n_iter",
                           _integer("local_background_n_iter", self.local_background_n_iter,
                                    0, 100))
        object.__setattr__(self, "local_background_n_sigma",
                           _number("local_background_n_sigma", self.local_background_n_sigma,
                                   0.0, 1e3, low_open=True))
        for name in ("local_background_inner", "local_background_outer"):
            object.__setattr__(self, name, _number(name, getattr(self, name), 0.0, 200.0,
                                                   low_open=True))
        if not self.local_background_inner < self.local_background_outer:
            raise ValueError(
                "local_background_inner/outer: need 0 < inner < outer, got "
                f"{self.local_background_inner}, {self.local_background_outer}"
            )
        unknown = [p for p in self.undeblended_plugins if p not in UNDEBLENDED]
        if unknown:
            raise ValueError(f"undeblended_plugins: unknown algorithm(s) {unknown}; choose from "
                             f"{UNDEBLENDED}")
        object.__setattr__(self, "undeblended_plugins",
                           tuple(a for a in UNDEBLENDED if a in self.undeblended_plugins))
        if self.noise_source not in NOISE_SOURCES:
            raise ValueError(f"noise_source: expected one of {NOISE_SOURCES}, got "
                             f"{self.noise_source!r}")
        object.__setattr__(self, "noise_seed", _integer("noise_seed", self.noise_seed, 0,
                                                         2**63 - 1))
        object.__setattr__(self, "noise_offset", _number("noise_offset", self.noise_offset,
                                                          -1e30, 1e30))
        for name in ("conserve_flux", "apply_ap_corr"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected true or false, got {getattr(self, name)!r}")

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
        """Read a JSON or YAML file of parameters.

        Raises ``ValueError`` (or ``TypeError``) naming the file: unreadable YAML with its line,
        no mapping, an unknown parameter, a value of the wrong type or range.
        """
        import yaml

        name = os.fspath(path)
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(f"{name}: not a YAML/JSON file{where} ({problem})") from err
        if not isinstance(data, dict):
            raise ValueError(f"{name}: a config file holds a mapping of parameters")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{name}: {err}") from err
