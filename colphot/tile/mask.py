"""Mask planes: ``MP_<NAME> = bit`` header keys to a name -> bit mapping."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["KNOWN_PLANES", "mask_planes_from_header"]

#: The planes colphot's measurements look at; others in a header are kept but unused.
KNOWN_PLANES: tuple[str, ...] = (
    "BAD", "SAT", "INTRP", "CR", "EDGE", "DETECTED", "SUSPECT", "NO_DATA", "CLIPPED",
    "SENSOR_EDGE", "REJECTED", "INEXACT_PSF",
)


def mask_planes_from_header(header: Mapping[str, object]) -> dict[str, int]:
    """Mask plane name -> bit number from the ``MP_<NAME>`` keys of a FITS header.

    Keys whose value is not an integer in [0, 63] are ignored.
    """
    planes: dict[str, int] = {}
    for key in header:
        if not isinstance(key, str) or not key.startswith("MP_"):
            continue
        value = header[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 64:
            continue
        planes[key[3:]] = value
    return planes
