"""Synthetic survey: truth catalog, tiles in the real FITS layout, reference Parquet.

:func:`make_survey` writes a small tract of overlapping patches; :mod:`colphot.sim.scene` renders
the pixels (a gridded double-Gaussian PSF that the written PSF model reproduces exactly, stars,
Gaussian galaxies, noise and mask defects) and can be used in memory; :mod:`colphot.sim.blends`
finds the blends and builds the in-band catalogs' heavy footprints.
"""

from __future__ import annotations

from colphot.sim.blends import FWHM_PER_SIGMA, blend_families, footprint_radius, in_band_frame
from colphot.sim.scene import (
    MASK_PLANES,
    Defects,
    GriddedPsf,
    SceneArrays,
    Sources,
    add_noise,
    apply_defects,
    bilinear_weights,
    double_gaussian,
    gaussian,
    psf_image,
    render_boxes,
    render_model,
    render_tile,
)
from colphot.sim.survey import BAND_SPECS, BandSpec, SurveyInfo, make_survey, tract_wcs

__all__ = [
    "BAND_SPECS",
    "FWHM_PER_SIGMA",
    "MASK_PLANES",
    "BandSpec",
    "Defects",
    "GriddedPsf",
    "SceneArrays",
    "Sources",
    "SurveyInfo",
    "add_noise",
    "apply_defects",
    "bilinear_weights",
    "blend_families",
    "double_gaussian",
    "footprint_radius",
    "gaussian",
    "in_band_frame",
    "make_survey",
    "psf_image",
    "render_boxes",
    "render_model",
    "render_tile",
    "tract_wcs",
]
