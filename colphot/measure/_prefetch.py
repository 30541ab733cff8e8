"""A software prefetch for numba kernels (LLVM's ``llvm.prefetch`` intrinsic).

Kernels that visit sources in spatial order ask for the next sources' pixel rows while they
measure the current one: the rows of a small stamp lie 16 KiB apart on a 4096-pixel-wide tile,
a pattern the hardware prefetchers do not follow, so without it every row is a cache miss.
"""

from __future__ import annotations

import math

from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["prefetch", "prefetch_box"]

# LLVM 15 and later name the intrinsic for opaque pointers
_NAME = "llvm.prefetch.p0" if llvm.llvm_version_info >= (15,) else "llvm.prefetch.p0i8"


@intrinsic
def prefetch(typingctx, arr, index):  # type: ignore[no-untyped-def]
    """Hint that ``arr[index]`` (a 1D array) will be read soon; no effect on results."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(index, types.Integer)):
        return None
    sig = types.void(arr, index)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]],
                                       wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _NAME)
        # read (0), high temporal locality (3), data cache (1)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def prefetch_box(arr, y0: float, y1: float, x0: float, x1: float) -> None:
    """Prefetch the cache lines of the rows ``y0..y1`` and columns ``x0..x1`` of a 2D array
    (pixel coordinates, clipped to the array; nothing for non-finite bounds)."""
    if not (math.isfinite(y0) and math.isfinite(y1) and math.isfinite(x0)
            and math.isfinite(x1)):
        return
    ny, nx = arr.shape
    j0 = min(max(int(y0), 0), ny - 1)
    j1 = min(max(int(y1) + 1, 0), ny - 1)
    i0 = min(max(int(x0), 0), nx - 1)
    i1 = min(max(int(x1) + 1, 0), nx - 1)
    step = max(64 // arr.itemsize, 1)  # elements per 64-byte cache line
    for j in range(j0, j1 + 1):
        row = arr[j]
        for i in range(i0, i1 + step, step):
            prefetch(row, min(i, i1))
