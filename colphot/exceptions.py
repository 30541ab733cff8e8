"""Errors and warnings raised by colphot.

Every error derives from :class:`ColphotError` and also from the builtin it refines, so callers
can catch either. Per-source problems are never exceptions: they become flagged rows.
"""

from __future__ import annotations

__all__ = [
    "ColphotError",
    "ColphotWarning",
    "EstimatedVarianceWarning",
    "MissingReferenceError",
    "NoPsfWarning",
    "OutputMismatchError",
    "ReferenceCatalogError",
    "SchemaError",
    "TileFormatError",
]


class ColphotError(Exception):
    """Base class of every colphot error."""


class TileFormatError(ColphotError, ValueError):
    """A tile file cannot be read: the message names the file, the HDU and the key."""


class ReferenceCatalogError(ColphotError, ValueError):
    """A reference catalog is unusable: the message names the column and what was expected."""


class MissingReferenceError(ColphotError, LookupError):
    """Rows of two catalogs that should join on ``id`` do not."""


class SchemaError(ColphotError, ValueError):
    """A frame disagrees with its table definition in ``catalogs/``."""


class OutputMismatchError(SchemaError):
    """An output dataset holds another measurement (configuration, table version, colphot
    version or columns): the message lists the differences."""


class ColphotWarning(UserWarning):
    """Base class of colphot's warnings."""


class EstimatedVarianceWarning(ColphotWarning):
    """A tile had no variance plane; a constant variance was estimated from the image."""


class NoPsfWarning(ColphotWarning):
    """A tile had no PSF; PSF-dependent measurements are flagged."""
