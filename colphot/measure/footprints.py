"""Heavy footprints: the pixels each source is measured with in deblended measurement.

LSST's NoiseReplacer replaces every top-level footprint of an image with noise, then, one source
at a time, inserts the source's heavy footprint (its deblended pixels), measures it and puts the
noise back. colphot measures every source independently instead: each kernel reads the pixels
of the source's own footprint from :class:`Footprints` and every other pixel from the
noise-replaced image (:mod:`colphot.measure.noise_replacer`): where a source's footprint touches
the region a kernel reads, the kernel reads a copy of that region with the footprint inserted
(:func:`source_region`, :func:`source_rows`), elsewhere the image itself. No shared image is
mutated, so sources run in any order and on any thread.

A footprint is a box in the tile's array frame (0-based) with two flat arrays over its pixels,
row-major: ``mask`` (1 inside the footprint) and ``values`` (the pixel values inside).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = [
    "Footprints",
    "clip_footprints",
    "conserve_flux",
    "footprint_mask_bits",
    "mark_footprints",
    "pick_row",
    "source_region",
    "source_rows",
    "touches",
]


@dataclass(frozen=True)
class Footprints:
    """Heavy footprints, one row each, in a tile's array frame.

    Attributes
    ----------
    x0, y0
        ``(m,)`` int64 array column and row of each box's first pixel.
    width, height
        ``(m,)`` int64 box sizes, pixels (0 for an empty footprint).
    offset
        ``(m,)`` int64 start of each box's pixels in ``values`` and ``mask``.
    values
        Flat float32 pixel values of every box, row-major (image units).
    mask
        Flat uint8, 1 where the box pixel belongs to the footprint.
    clipped
        ``(m,)`` bool, the box was cut by the tile border.
    """

    x0: np.ndarray
    y0: np.ndarray
    width: np.ndarray
    height: np.ndarray
    offset: np.ndarray
    values: np.ndarray
    mask: np.ndarray
    clipped: np.ndarray

    def __len__(self) -> int:
        return int(self.x0.shape[0])

    @classmethod
    def empty(cls) -> Footprints:
        """No footprint: the kernels then read the image alone (plain measurement)."""
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z, z, np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.uint8),
                   np.zeros(0, dtype=np.bool_))

    def take(self, index: np.ndarray | slice) -> Footprints:
        """The footprints of rows ``index`` (the pixel arrays are shared, not copied)."""
        if not isinstance(index, slice):
            index = np.asarray(index, dtype=np.int64)
        return Footprints(self.x0[index], self.y0[index], self.width[index], self.height[index],
                          self.offset[index], self.values, self.mask, self.clipped[index])

    def with_values(self, values: np.ndarray) -> Footprints:
        """The same boxes and masks with other pixel values."""
        return Footprints(self.x0, self.y0, self.width, self.height, self.offset,
                          np.ascontiguousarray(values, dtype=np.float32), self.mask, self.clipped)

    def kernel_args(self) -> tuple[np.ndarray, ...]:
        """``(x0, y0, width, height, offset, values, mask)`` as the kernels take them."""
        return (np.ascontiguousarray(self.x0, dtype=np.int64),
                np.ascontiguousarray(self.y0, dtype=np.int64),
                np.ascontiguousarray(self.width, dtype=np.int64),
                np.ascontiguousarray(self.height, dtype=np.int64),
                np.ascontiguousarray(self.offset, dtype=np.int64),
                np.ascontiguousarray(self.values, dtype=np.float32),
                np.ascontiguousarray(self.mask, dtype=np.uint8))


def check_footprints(footprints: Footprints | None, n: int | None,
                     shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Kernel arguments of ``footprints`` (one per source when ``n`` is given), or empty ones.

    Raises ``ValueError`` unless every box lies on an image of ``shape`` and its pixels within
    ``values`` and ``mask`` (the kernels do not check indices).
    """
    if footprints is None:
        return Footprints.empty().kernel_args()
    if n is not None and len(footprints) != n:
        raise ValueError(f"footprints: expected one per source ({n}), got {len(footprints)}")
    args = footprints.kernel_args()
    x0, y0, w, h, off, values, mask = args
    if len(x0):
        ny, nx = shape[0], shape[1]
        inside = (x0 >= 0) & (y0 >= 0) & (w >= 0) & (h >= 0) & (x0 + w <= nx) & (y0 + h <= ny)
        stored = (off >= 0) & (off + w * h <= min(values.shape[0], mask.shape[0]))
        if not (inside & stored).all():
            bad = np.flatnonzero(~(inside & stored))[:5].tolist()
            raise ValueError(f"footprints: rows {bad} have boxes off a {nx} x {ny} image or "
                             "pixels beyond the value/mask arrays (clip_footprints makes them)")
    return args


@njit(cache=True, nogil=True, inline="always")
def touches(s, r0, r1, c0, c1, fx0, fy0, fw, fh):
    """True when footprint ``s`` has pixels in rows ``r0..r1`` and columns ``c0..c1`` (False
    with no footprints, ``fx0`` empty)."""
    if fx0.shape[0] == 0:
        return False
    return fy0[s] <= r1 and fy0[s] + fh[s] > r0 and fx0[s] <= c1 and fx0[s] + fw[s] > c0


@njit(cache=True, nogil=True)
def source_rows(image, r0, r1, c0, c1, s, fx0, fy0, fw, fh, foff, fval, fmsk, buf):
    """Rows of the image source ``s`` is measured on, where its footprint reaches.

    Of the region rows ``r0..r1``, columns ``c0..c1`` (on the image) a kernel reads, the rows
    the footprint crosses, ``lo..hi``, are copied with the footprint's pixels inserted. Returns
    ``(rows, lo, hi)``: region row ``j`` is ``rows[j - lo]`` for ``lo <= j <= hi`` (with the
    image's column numbering; only columns ``c0..c1`` are written) and ``image[j]`` otherwise
    (:func:`pick_row`). ``rows`` is ``buf`` when it is large enough, else a new array.
    """
    lo = max(r0, fy0[s])
    hi = min(r1, fy0[s] + fh[s] - 1)
    out = buf
    if buf.shape[0] < hi - lo + 1 or buf.shape[1] != image.shape[1]:
        out = np.empty((hi - lo + 1, image.shape[1]), dtype=image.dtype)
    x0 = fx0[s]
    a = max(x0, c0)
    b = min(x0 + fw[s] - 1, c1)
    for j in range(lo, hi + 1):
        row = image[j]
        orow = out[j - lo]
        for i in range(c0, a):
            orow[i] = row[i]
        base = foff[s] + (j - fy0[s]) * fw[s] - x0
        for i in range(a, b + 1):
            orow[i] = fval[base + i] if fmsk[base + i] else row[i]
        for i in range(b + 1, c1 + 1):
            orow[i] = row[i]
    return out, lo, hi


@njit(cache=True, nogil=True)
def source_region(image, r0, r1, c0, c1, s, fx0, fy0, fw, fh, foff, fval, fmsk, buf):
    """The image source ``s`` is measured on over rows ``r0..r1``, columns ``c0..c1`` (on the
    image), its footprint inserted: pixel ``(j, i)`` is ``out[j - r0, i - c0]``. ``out`` is
    ``buf`` when large enough, else a new array.

    For kernels with small regions (a PSF stamp, an annulus box, a Gaussian window): one compact
    copy per source, then the same loops as over ``image`` with an origin offset.
    """
    out = buf
    if buf.shape[0] < r1 - r0 + 1 or buf.shape[1] < c1 - c0 + 1:
        out = np.empty((max(r1 - r0 + 1, buf.shape[0]), max(c1 - c0 + 1, buf.shape[1])),
                       dtype=image.dtype)
    w = c1 - c0 + 1
    for j in range(r0, r1 + 1):
        row = image[j, c0:c1 + 1]
        orow = out[j - r0]
        for i in range(w):
            orow[i] = row[i]
    lo, hi = max(r0, fy0[s]), min(r1, fy0[s] + fh[s] - 1)
    x0 = fx0[s]
    a = max(x0, c0)
    b = min(x0 + fw[s] - 1, c1)
    for j in range(lo, hi + 1):
        orow = out[j - r0]
        base = foff[s] + (j - fy0[s]) * fw[s] - x0
        for i in range(a, b + 1):
            orow[i - c0] = fval[base + i] if fmsk[base + i] else orow[i - c0]
    return out


@njit(cache=True, nogil=True, inline="always")
def pick_row(image, rows, lo, hi, j):
    """Row ``j`` of a source's image: ``rows[j - lo]`` where its footprint reaches
    (:func:`source_rows`), else ``image[j]``."""
    return rows[j - lo] if lo <= j <= hi else image[j]


# --------------------------------------------------------------------------------------------
# building footprints


def clip_footprints(
    x0: np.ndarray,
    y0: np.ndarray,
    width: np.ndarray,
    height: np.ndarray,
    values: np.ndarray,
    value_offset: np.ndarray,
    mask: np.ndarray,
    mask_offset: np.ndarray,
    image: np.ndarray,
) -> Footprints:
    """Footprints cut to a tile, their pixels copied into one contiguous layout.

    Parameters
    ----------
    x0, y0, width, height
        ``(m,)`` boxes in the tile's array frame, pixels (may reach past the tile).
    values, value_offset
        Flat pixel values of the boxes (row-major) and where each box's start; an offset of -1
        means "no values": the footprint takes the tile's own pixels (``image``).
    mask, mask_offset
        Flat footprint membership (bool or 0/1) and where each box's starts.
    image
        The tile's pixels.

    Returns
    -------
    Footprints
        Boxes clipped to the tile (width/height 0 when wholly off it), ``clipped`` set where
        the box was cut.
    """
    x0 = np.ascontiguousarray(x0, dtype=np.int64)
    y0 = np.ascontiguousarray(y0, dtype=np.int64)
    width = np.ascontiguousarray(width, dtype=np.int64)
    height = np.ascontiguousarray(height, dtype=np.int64)
    ny, nx = image.shape
    cx0 = np.clip(x0, 0, nx)
    cy0 = np.clip(y0, 0, ny)
    cw = np.clip(x0 + width, 0, nx) - cx0
    ch = np.clip(y0 + height, 0, ny) - cy0
    cw = np.where((cw > 0) & (ch > 0), cw, 0)
    ch = np.where(cw > 0, ch, 0)
    clipped = (cw != width) | (ch != height)
    offset = np.zeros(x0.shape[0], dtype=np.int64)
    if x0.shape[0]:
        np.cumsum((cw * ch)[:-1], out=offset[1:])
    total = int((cw * ch).sum())
    out_values = np.zeros(total, dtype=np.float32)
    out_mask = np.zeros(total, dtype=np.uint8)
    _clip_kernel(image, x0, y0, width, np.ascontiguousarray(values, dtype=np.float32),
                 np.ascontiguousarray(value_offset, dtype=np.int64),
                 np.ascontiguousarray(mask, dtype=np.uint8),
                 np.ascontiguousarray(mask_offset, dtype=np.int64),
                 cx0, cy0, cw, ch, offset, out_values, out_mask)
    return Footprints(cx0, cy0, cw, ch, offset, out_values, out_mask, clipped)


@njit(cache=True, nogil=True)
def _clip_kernel(image, x0, y0, width, values, voff, mask, moff, cx0, cy0, cw, ch, offset,
                 out_values, out_mask):
    for s in range(x0.shape[0]):
        w = cw[s]
        for r in range(ch[s]):
            j = cy0[s] + r  # tile row
            src = (j - y0[s]) * width[s] + (cx0[s] - x0[s])  # index in the original box
            dst = offset[s] + r * w
            row = image[j]
            for t in range(w):
                m = mask[moff[s] + src + t] != 0
                out_mask[dst + t] = m
                if voff[s] < 0:
                    out_values[dst + t] = row[cx0[s] + t] if m else 0.0
                else:
                    out_values[dst + t] = values[voff[s] + src + t] if m else 0.0


def mark_footprints(footprints: Footprints, shape: tuple[int, int]) -> np.ndarray:
    """Boolean image of ``shape``: True on every pixel of any of ``footprints``."""
    out = np.zeros(shape, dtype=np.uint8)
    _mark_kernel(*check_footprints(footprints, None, shape), out)
    return out.view(np.bool_)


@njit(cache=True, nogil=True)
def _mark_kernel(fx0, fy0, fw, fh, foff, fval, fmsk, out):
    for s in range(fx0.shape[0]):
        w = fw[s]
        for r in range(fh[s]):
            orow = out[fy0[s] + r]
            base = foff[s] + r * w
            for t in range(w):
                orow[fx0[s] + t] |= fmsk[base + t]


def conserve_flux(footprints: Footprints, children: np.ndarray, image: np.ndarray) -> Footprints:
    """Share the observed pixels of blends among their children in proportion to their values.

    LSST's deblender ``conserveFlux``: at each pixel of a child footprint the child gets
    ``image * v_child / sum(v)``, with its value clipped at 0 (a template is not negative) and
    the sum over every child footprint holding the pixel (the children of one parent, since
    parents' footprints do not overlap); 0 where the sum is 0. Flux in a parent's pixels that
    no child covers is not given to any child. Rows not in ``children`` (parents, isolated
    objects) keep their values.

    Parameters
    ----------
    footprints
        Footprints clipped to the tile.
    children
        Boolean ``(m,)``: the rows that are deblended children.
    image
        The tile's observed pixels (image units).
    """
    total = np.zeros(image.shape, dtype=np.float64)
    args = check_footprints(footprints, None, image.shape)
    children = np.ascontiguousarray(children, dtype=np.bool_)
    values = args[5].copy()
    _conserve_kernel(*args, children, image, total, values)
    return footprints.with_values(values)


@njit(cache=True, nogil=True)
def _conserve_kernel(fx0, fy0, fw, fh, foff, fval, fmsk, children, image, total, out):
    for phase in range(2):
        for s in range(fx0.shape[0]):
            if not children[s]:
                continue
            w = fw[s]
            for r in range(fh[s]):
                j = fy0[s] + r
                base = foff[s] + r * w
                for t in range(w):
                    if fmsk[base + t]:
                        i = fx0[s] + t
                        v = max(np.float64(fval[base + t]), 0.0)
                        if phase == 0:
                            total[j, i] += v
                        else:
                            sv = total[j, i]
                            out[base + t] = image[j, i] * (v / sv) if sv > 0.0 else 0.0


def footprint_mask_bits(mask: np.ndarray, footprints: Footprints) -> np.ndarray:
    """``uint64`` OR of the mask bits under each footprint's pixels (0 for an empty one)."""
    out = np.zeros(len(footprints), dtype=np.uint64)
    _mask_bits_kernel(mask, *check_footprints(footprints, None, mask.shape), out)
    return out


@njit(cache=True, nogil=True)
def _mask_bits_kernel(mask, fx0, fy0, fw, fh, foff, fval, fmsk, out):
    for s in range(fx0.shape[0]):
        w = fw[s]
        acc = np.uint64(0)
        for r in range(fh[s]):
            mrow = mask[fy0[s] + r]
            base = foff[s] + r * w
            for t in range(w):
                acc |= np.uint64(mrow[fx0[s] + t]) * np.uint64(fmsk[base + t])
        out[s] = acc
