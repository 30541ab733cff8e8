"""7. Exports of colphot datasets to other catalog formats (HATS, for LSDB)."""

from __future__ import annotations

from typing import Any

__all__ = ["to_hats"]


def __getattr__(name: str) -> Any:
    # Lazy: importing colphot.export must not import hats, hats-import or lsdb (an extra).
    if name == "to_hats":
        from colphot.export.hats import to_hats

        return to_hats
    raise AttributeError(f"module 'colphot.export' has no attribute {name!r}")
