"""colphot: columnar forced photometry of survey coadds.

Read a tile, measure a reference catalog on it, store a documented Parquet table::

    import colphot
    tile = colphot.read_tile("g/0/3.fits")
    table = colphot.forced_photometry(tile, refs)
    colphot.write_forced(table, "out/", inputs=[tile.provenance()])
    colphot.open_forced("out/").filter(...).collect()
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "ForcedPhotConfig",
    "PsfModel",
    "Tile",
    "forced_photometry",
    "object_table",
    "open_forced",
    "open_objects",
    "provenance",
    "read_tile",
    "run",
    "to_hats",
    "write_forced",
    "__version__",
]

_LAZY = {
    "ForcedPhotConfig": "colphot.config",
    "PsfModel": "colphot.tile.psf",
    "Tile": "colphot.tile.tile",
    "read_tile": "colphot.tile.fits",
    "forced_photometry": "colphot.table.forced",
    "write_forced": "colphot.parquet.write",
    "open_forced": "colphot.parquet.read",
    "provenance": "colphot.table.forced",
    "run": "colphot.runner.run",
    "object_table": "colphot.objects.write",
    "open_objects": "colphot.objects.write",
    "to_hats": "colphot.export.hats",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'colphot' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
