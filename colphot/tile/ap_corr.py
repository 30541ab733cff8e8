"""Aperture-correction maps: per-algorithm, spatially varying flux corrections of a tile.

LSST's coadds carry an ``ApCorrMap``: for each aperture-corrected algorithm a field of the
correction (``base_PsfFlux_instFlux``) and of its uncertainty (``base_PsfFlux_instFluxErr``)
over the image, each a ``ChebyshevBoundedField``. colphot stores the same map in a tile's
``APCORR`` binary-table HDU, one row per field:

``name``
    the field's name, LSST's (``base_PsfFlux_instFlux``, ``base_PsfFlux_instFluxErr``,
    ``base_GaussianFlux_instFlux``, ``base_GaussianFlux_instFluxErr``);
``nx``, ``ny``
    number of Chebyshev coefficients along x and y (order + 1);
``coefficients``
    the ``ny x nx`` coefficients, row-major (y slow), a variable-length array;
``xmin``, ``xmax``, ``ymin``, ``ymax``
    the parent-frame pixel extent mapped onto ``[-1, 1]`` (afw's ``Box2D`` of the image's
    bounding box: from the first pixel's lower edge, ``x0 - 0.5``, to the last one's upper edge).

A field of one coefficient is a constant. :func:`apply_ap_corr` applies a map to the measured
fluxes the way LSST's ``ApplyApCorrTask`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.polynomial import chebyshev

from colphot.exceptions import TileFormatError

__all__ = ["AP_CORR_MODELS", "ApCorrMap", "ChebyshevField", "ap_corr_hdu", "apply_ap_corr",
           "read_ap_corr"]

#: colphot flux column -> LSST algorithm name (the prefix of its fields in an ApCorrMap); the
#: algorithms LSST aperture-corrects (``shouldApCorr=True`` in meas_base).
AP_CORR_MODELS: dict[str, str] = {"psfFlux": "base_PsfFlux", "gaussianFlux": "base_GaussianFlux"}


@dataclass(frozen=True)
class ChebyshevField:
    """A 2D Chebyshev series over a pixel box, afw's ``ChebyshevBoundedField``.

    Attributes
    ----------
    coefficients
        ``(ny, nx)`` coefficients; ``coefficients[j, i]`` multiplies ``T_j(v) T_i(u)``.
    bbox
        ``(xmin, xmax, ymin, ymax)``: the parent-frame pixel extent that maps onto
        ``u, v`` in ``[-1, 1]``.
    """

    coefficients: np.ndarray
    bbox: tuple[float, float, float, float]

    def __post_init__(self) -> None:
        c = np.array(self.coefficients, dtype=np.float64, ndmin=2)
        if c.ndim != 2 or c.size == 0 or not np.all(np.isfinite(c)):
            raise ValueError(f"coefficients: expected a non-empty finite 2D array, got {c!r}")
        xmin, xmax, ymin, ymax = (float(v) for v in self.bbox)
        if not (np.isfinite([xmin, xmax, ymin, ymax]).all() and xmax > xmin and ymax > ymin):
            raise ValueError(f"bbox: expected xmin < xmax, ymin < ymax, got {self.bbox!r}")
        c.setflags(write=False)
        object.__setattr__(self, "coefficients", c)
        object.__setattr__(self, "bbox", (xmin, xmax, ymin, ymax))

    @classmethod
    def constant(cls, value: float) -> ChebyshevField:
        """A field equal to ``value`` everywhere."""
        return cls(np.array([[float(value)]]), (-1.0, 1.0, -1.0, 1.0))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The field at parent-frame pixel positions ``(x, y)`` (NaN where they are NaN)."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        c = self.coefficients
        if c.size == 1:
            return np.where(np.isfinite(x) & np.isfinite(y), c[0, 0], np.nan)
        xmin, xmax, ymin, ymax = self.bbox
        u = (2.0 * x - (xmin + xmax)) / (xmax - xmin)
        v = (2.0 * y - (ymin + ymax)) / (ymax - ymin)
        # chebval2d(v, u, c) sums c[j, i] T_j(v) T_i(u)
        return chebyshev.chebval2d(v, u, c)


#: Field name -> field.
ApCorrMap = Mapping[str, ChebyshevField]


def ap_corr_hdu(ap_corr: ApCorrMap) -> Any:
    """The ``APCORR`` binary-table HDU of a map (see the module docstring)."""
    from astropy.io import fits

    names = sorted(ap_corr)
    fields = [ap_corr[n] for n in names]
    width = max([len(n) for n in names] + [1])
    coeffs = np.empty(len(fields), dtype=object)
    coeffs[:] = [f.coefficients.ravel() for f in fields]
    columns = [
        fits.Column("name", f"{width}A", array=np.array(names, dtype=f"U{width}")),
        fits.Column("nx", "J", array=np.array([f.coefficients.shape[1] for f in fields])),
        fits.Column("ny", "J", array=np.array([f.coefficients.shape[0] for f in fields])),
        fits.Column("coefficients", "PD()", array=coeffs),
        *[fits.Column(k, "D", array=np.array([f.bbox[i] for f in fields]))
          for i, k in enumerate(("xmin", "xmax", "ymin", "ymax"))],
    ]
    hdu = fits.BinTableHDU.from_columns(columns)
    hdu.header["EXTNAME"] = "APCORR"
    hdu.header["EXTTYPE"] = "APCORR"
    return hdu


def read_ap_corr(data: Any, where: str) -> dict[str, ChebyshevField]:
    """An aperture-correction map from an ``APCORR`` table's data (FITS_rec or any mapping of
    columns); a missing column or an inconsistent row raises ``TileFormatError`` naming
    ``where`` (``file[HDU n] APCORR``), the column and the row."""
    need = ("name", "nx", "ny", "coefficients", "xmin", "xmax", "ymin", "ymax")
    have = list(getattr(data, "names", None) or getattr(data, "columns", None) or [])
    missing = [c for c in need if c not in have]
    if missing:
        raise TileFormatError(f"{where}: missing column(s) {missing} (has {have})")
    out: dict[str, ChebyshevField] = {}
    for row in range(len(data["name"])):
        name = str(data["name"][row]).strip()
        nx, ny = int(data["nx"][row]), int(data["ny"][row])
        coeffs = np.asarray(data["coefficients"][row], dtype=np.float64)
        if nx < 1 or ny < 1 or coeffs.size != nx * ny:
            raise TileFormatError(f"{where}: row {row} ({name!r}): column coefficients holds "
                                  f"{coeffs.size} values for nx x ny = {nx} x {ny}")
        if name in out:
            raise TileFormatError(f"{where}: column name: {name!r} appears twice")
        bbox = tuple(float(data[k][row]) for k in ("xmin", "xmax", "ymin", "ymax"))
        try:
            out[name] = ChebyshevField(coeffs.reshape(ny, nx), bbox)  # type: ignore[arg-type]
        except ValueError as err:
            raise TileFormatError(f"{where}: row {row} ({name!r}): {err}") from err
    return out


def apply_ap_corr(columns: dict[str, Any], ap_corr: ApCorrMap | None, x: np.ndarray,
                  y: np.ndarray, names: tuple[str, ...], *, flag_failures: bool = True
                  ) -> dict[str, np.ndarray]:
    """Aperture-correct fluxes in place of ``columns``, as LSST's ``ApplyApCorrTask``.

    For each ``name`` (``psfFlux``, ``gaussianFlux``) of :data:`AP_CORR_MODELS`, with the
    map's ``<model>_instFlux`` field ``c`` and ``<model>_instFluxErr`` field ``e`` at the
    centroid: ``<name>`` becomes ``flux * c`` and ``<name>Err`` ``err * c`` (LSST's default,
    naive error: the correction's own uncertainty, shared by all sources, is not added);
    ``<name>_apCorr`` records ``c``; ``<name>_apCorrErr`` is 0, as LSST writes it with
    ``UseNaiveFluxErr`` (the ``instFluxErr`` field must be in the map, but is not evaluated).

    ``<name>_flag_apCorr`` is set where the correction cannot be applied: the map lacks either
    field (then every row, the fluxes are left uncorrected and ``_apCorr`` is NaN, and the
    general flag is not touched), or ``c`` is not finite and positive at the centroid (then,
    with ``flag_failures``, LSST's ``doFlagApCorrFailures``, the general ``<name>_flag`` is
    set too, and the flux is left uncorrected).

    Parameters
    ----------
    columns
        Measured columns; those of ``names`` are replaced.
    ap_corr
        The tile's map, or ``None`` (no map: every row flagged ``_flag_apCorr``).
    x, y
        Centroids in parent-frame pixels.
    names
        Flux columns to correct (keys of :data:`AP_CORR_MODELS`).

    Returns
    -------
    dict
        The new and replaced columns.
    """
    n = np.asarray(x).shape[0]
    out: dict[str, np.ndarray] = {}
    for name in names:
        model = AP_CORR_MODELS[name]
        value = (ap_corr or {}).get(f"{model}_instFlux")
        error = (ap_corr or {}).get(f"{model}_instFluxErr")
        if value is None or error is None:
            out[f"{name}_apCorr"] = np.full(n, np.nan)
            out[f"{name}_apCorrErr"] = np.full(n, np.nan)
            out[f"{name}_flag_apCorr"] = np.ones(n, dtype=bool)
            continue
        c = value.evaluate(x, y)
        # LSST's UseNaiveFluxErr: the error field must exist, but its value is not used and
        # _apCorrErr is 0
        e = np.zeros(n)
        with np.errstate(invalid="ignore"):
            good = np.isfinite(c) & (c > 0.0)
        flux = np.asarray(columns[name], dtype=np.float64)
        err = np.asarray(columns[f"{name}Err"], dtype=np.float64)
        out[name] = np.where(good, flux * c, flux)
        out[f"{name}Err"] = np.where(good, np.abs(err * c), err)
        out[f"{name}_apCorr"] = c
        out[f"{name}_apCorrErr"] = e
        out[f"{name}_flag_apCorr"] = ~good
        if flag_failures:
            out[f"{name}_flag"] = np.asarray(columns[f"{name}_flag"], dtype=bool) | ~good
    return out
