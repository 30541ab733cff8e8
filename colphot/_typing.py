"""Type aliases shared across colphot."""

from __future__ import annotations

import os
from typing import Any, Literal, TypeAlias

PathLike: TypeAlias = str | os.PathLike[str]
StorageOptions: TypeAlias = dict[str, Any] | None
ApertureMethod: TypeAlias = Literal["sinc", "exact", "subpixel", "center"]
