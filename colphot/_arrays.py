"""Check and normalise the pixel arrays handed to colphot's public API, once, at the edge.

The numba kernels are compiled for C-ordered, native-endian float32/float64 pixels and uint32 or
uint64 masks and do no bounds checks; everything else is turned into those here (so no kernel
compiles again for an odd dtype) or refused with an error naming the argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_mask", "as_plane"]


def as_plane(name: str, value: Any, *, shape: tuple[int, ...] | None = None,
             dtype: np.dtype | None = None) -> np.ndarray:
    """A 2-D pixel plane as a C-ordered, native-endian float32 or float64 array.

    float16 and integers of up to 16 bits become float32, larger integers float64; ``dtype``
    forces one of the two (a variance follows its image). Raises ``TypeError`` for booleans,
    complex numbers or objects and ``ValueError`` for another number of dimensions, an empty
    plane or a ``shape`` it does not have.
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array, got shape {arr.shape}")
    if 0 in arr.shape:
        raise ValueError(f"{name}: empty array of shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name}: shape {arr.shape} does not match the image's {tuple(shape)}")
    if dtype is None:
        small = arr.dtype.kind == "f" and arr.itemsize <= 4 or arr.itemsize <= 2
        dtype = np.dtype(np.float32 if small else np.float64)
    return np.ascontiguousarray(arr, dtype=dtype)


def as_mask(name: str, value: Any, *, shape: tuple[int, ...]) -> np.ndarray | None:
    """A 2-D integer bit-plane mask as C-ordered native uint32 (uint64 for 64-bit masks), the
    bits unchanged (an int32 mask is reinterpreted, not converted); ``None`` stays ``None``."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer bit planes, got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: shape {arr.shape} does not match the image's {tuple(shape)}")
    unsigned = np.dtype(f"u{max(arr.itemsize, 4)}" if arr.itemsize <= 8 else "u8")
    native = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    if native.itemsize in (4, 8):
        out = native.view(unsigned.newbyteorder("="))
    else:
        out = native.astype(native.dtype.str.replace("i", "u"), copy=False).astype(unsigned)
    return np.ascontiguousarray(out)
