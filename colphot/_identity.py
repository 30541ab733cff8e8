"""A tile's identity (band, tract, patch) as it may name a hive partition folder.

Every writer builds paths ``band=…/tract=…/patch=…`` from these values, so they are checked
once, here, before any of them names a path: a band is a non-empty name without a path
separator, ``..``, ``=``, control characters or polars' hive null token; a tract or patch is a
non-negative integer (not a bool, not 1.5).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["HIVE_NULL", "band_problem", "index_problem", "parse_index"]

#: The folder name hive readers (polars, pyarrow) read as null.
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"

#: Largest tract or patch number accepted (int64 in the tables).
_MAX_INDEX = 2**62


def band_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a band (a partition folder name), or ``None`` when it can."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__} {value!r}"
    if not value.strip():
        return "empty"
    if value != value.strip():
        return f"leading or trailing blanks in {value!r}"
    if value == HIVE_NULL:
        return f"{value!r} is the hive null token"
    if any(c in value for c in "/\\=") or ".." in value:
        return f"{value!r} holds a path separator, '=' or '..'"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{value!r} holds control characters"
    if len(value) > 64:
        return f"longer than 64 characters ({len(value)})"
    return None


def parse_index(value: Any) -> int:
    """A tract or patch number from ``value`` (an integer, an integral float or its text).

    Raises ``ValueError`` saying why when it is not a non-negative integer.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("+").isdigit():
            raise ValueError(f"expected a non-negative integer, got {value!r}")
        number: Any = int(text)
    elif isinstance(value, numbers.Integral):
        number = int(value)
    elif isinstance(value, numbers.Real):
        if not math.isfinite(float(value)) or float(value) != math.floor(float(value)):
            raise ValueError(f"expected a non-negative integer, got {value!r}")
        number = int(value)
    else:
        raise ValueError(f"expected a non-negative integer, got {type(value).__name__} "
                         f"{value!r}")
    if not 0 <= number <= _MAX_INDEX:
        raise ValueError(f"expected a non-negative integer below 2**62, got {value!r}")
    return number


def index_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a tract or patch number, or ``None`` when it can."""
    try:
        parse_index(value)
    except ValueError as err:
        return str(err)
    return None
