"""``write_tile``: a tile to FITS in afw "Exposure" layout (the inverse of ``read_tile``)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from astropy.io import fits

from colphot._fs import put_url
from colphot._typing import PathLike, StorageOptions
from colphot.tile.ap_corr import ChebyshevField, ap_corr_hdu

if TYPE_CHECKING:
    from astropy.wcs import WCS

__all__ = ["DEFAULT_MASK_PLANES", "write_tile"]

#: LSST afw's usual mask plane -> bit assignment, used when ``mask_planes`` is not given.
DEFAULT_MASK_PLANES: dict[str, int] = {
    "BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "EDGE": 4, "DETECTED": 5, "SUSPECT": 7,
    "NO_DATA": 8,
}


def write_tile(
    path: PathLike,
    image: np.ndarray,
    *,
    variance: np.ndarray,
    mask: np.ndarray | None = None,
    mask_planes: Mapping[str, int] | None = None,
    wcs: WCS,
    psf_images: np.ndarray | None = None,
    psf_grid: tuple[np.ndarray, np.ndarray] | np.ndarray | None = None,
    band: str | None = None,
    tract: int | None = None,
    patch: int | None = None,
    xy0: tuple[int, int] = (0, 0),
    bunit: str | None = None,
    magzero: float | None = None,
    ap_corr: Mapping[str, ChebyshevField] | None = None,
    storage_options: StorageOptions = None,
) -> None:
    """Write a tile as a multi-extension FITS file that :func:`colphot.read_tile` reads back.

    The layout is afw's Exposure: an empty primary HDU (``BAND``, ``TRACT``, ``PATCH``), then
    ``IMAGE`` (float32), ``MASK`` (int32 bit planes, ``MP_<NAME> = bit`` keys), ``VARIANCE``
    (float32), ``PSF`` (a ``(k, k)`` image or ``(n, k, k)`` cube) and, for a cube, ``PSF_GRID``
    (float64 columns ``x``, ``y``). Each image HDU carries ``EXTNAME`` and ``EXTTYPE``, the
    celestial WCS and ``LTV1 = -x0``, ``LTV2 = -y0`` (plus afw's ``A`` physical WCS).

    Parameters
    ----------
    path
        Local path or fsspec URL (``s3://bucket/key.fits``). Local files are written to a
        temporary name in the same folder and renamed, so the file is whole or absent; parent
        folders are created.
    image
        2D pixel values, in nJy per pixel (``bunit='nJy'``) or counts (``magzero``).
    variance
        2D variance of ``image``, same shape, in the square of the image unit.
    mask
        2D integer bit planes, same shape (values must fit in int32), or ``None`` for no
        ``MASK`` HDU.
    mask_planes
        Mask plane name -> bit number (0-30); :data:`DEFAULT_MASK_PLANES` when ``None``.
    wcs
        Celestial WCS of the array (its header is written with ``relax=True``).
    psf_images
        PSF image ``(k, k)`` or cube ``(n, k, k)``, ``k`` odd, each centred on its middle pixel;
        ``None`` for no ``PSF`` HDU.
    psf_grid
        For a cube with ``n > 1``: ``(x, y)`` arrays of length ``n`` (or an ``(n, 2)`` array),
        the 0-based array pixel coordinates where each PSF image applies.
    band, tract, patch
        Identity of the tile, written to the primary header when given.
    xy0
        Parent-frame (tract) pixel coordinates of array pixel ``[0, 0]``, pixels.
    bunit
        Pixel unit written as ``BUNIT`` (``'nJy'`` for calibrated tiles).
    magzero
        AB magnitude of one pixel count, written as ``MAGZERO``: a value ``c`` is
        ``c * 10**(-0.4 * (magzero - 31.4))`` nJy. At most one of ``bunit``/``magzero``.
    ap_corr
        Aperture-correction map written as an ``APCORR`` table HDU
        (:mod:`colphot.tile.ap_corr`); ``None`` for none.
    storage_options
        fsspec options for remote URLs.

    Raises
    ------
    ValueError
        Arrays of the wrong dimension, shape or dtype; a PSF cube without a matching grid;
        both ``bunit`` and ``magzero``.
    """
    image = _check_2d(image, "image")
    variance = _check_2d(variance, "variance", image.shape)
    if bunit is not None and magzero is not None:
        raise ValueError(f"give bunit or magzero, not both (bunit={bunit!r}, magzero={magzero!r})")
    if magzero is not None and not np.isfinite(magzero):
        raise ValueError(f"magzero: expected a finite magnitude, got {magzero!r}")

    primary = fits.PrimaryHDU()
    if band is not None:
        primary.header["BAND"] = (str(band), "band of the coadd")
    if tract is not None:
        primary.header["TRACT"] = (int(tract), "skymap tract")
    if patch is not None:
        primary.header["PATCH"] = (int(patch), "skymap patch")

    base = _plane_header(wcs, xy0)
    image_header = base.copy()
    if bunit is not None:
        image_header["BUNIT"] = (str(bunit), "unit of the pixel values")
    if magzero is not None:
        image_header["MAGZERO"] = (float(magzero), "AB magnitude of one pixel count")
    hdus: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU] = [
        primary, _named(fits.ImageHDU(image.astype(np.float32), header=image_header), "IMAGE"),
    ]
    if mask is not None:
        hdus.append(_mask_hdu(mask, image.shape, mask_planes, base))
    variance_header = base.copy()
    hdus.append(_named(fits.ImageHDU(variance.astype(np.float32), header=variance_header),
                       "VARIANCE"))
    if psf_images is not None:
        hdus.extend(_psf_hdus(psf_images, psf_grid))
    if ap_corr is not None:
        hdus.append(ap_corr_hdu(ap_corr))
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer)
    put_url(path, buffer.getvalue(), storage_options)


def _check_2d(array: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2D array, got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name}: shape {array.shape} does not match the image shape {shape}")
    return array


def _named(hdu: fits.ImageHDU | fits.BinTableHDU, name: str) -> fits.ImageHDU | fits.BinTableHDU:
    hdu.header["EXTNAME"] = name
    hdu.header["EXTTYPE"] = name
    return hdu


def _plane_header(wcs: WCS, xy0: tuple[int, int]) -> fits.Header:
    """WCS, ``LTV`` and afw's physical ``A`` WCS keys shared by the pixel planes."""
    x0, y0 = (int(v) for v in xy0)
    header = fits.Header()
    celestial = wcs.celestial if wcs.naxis > 2 else wcs
    header.extend(celestial.to_header(relax=True))
    header["LTV1"] = (-x0, "minus the parent x of pixel [0, 0] (xy0 = -LTV)")
    header["LTV2"] = (-y0, "minus the parent y of pixel [0, 0]")
    header["WCSNAMEA"] = "PHYSICAL"
    header["CTYPE1A"] = "LINEAR"
    header["CTYPE2A"] = "LINEAR"
    header["CRPIX1A"] = 1.0
    header["CRPIX2A"] = 1.0
    header["CRVAL1A"] = float(x0)
    header["CRVAL2A"] = float(y0)
    return header


def _mask_hdu(mask: np.ndarray, shape: tuple[int, ...],
              mask_planes: Mapping[str, int] | None, base: fits.Header) -> fits.ImageHDU:
    mask = _check_2d(mask, "mask", shape)
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"mask: expected integer bit planes, got dtype {mask.dtype}")
    if mask.size and (int(mask.min()) < 0 or int(mask.max()) > np.iinfo(np.int32).max):
        raise ValueError("mask: values must be in [0, 2**31 - 1] to be written as int32")
    planes = dict(DEFAULT_MASK_PLANES if mask_planes is None else mask_planes)
    header = base.copy()
    for name, bit in planes.items():
        if not 0 <= int(bit) <= 30:
            raise ValueError(f"mask_planes: bit of {name!r} must be in [0, 30], got {bit!r}")
        key = f"MP_{name.upper()}"
        # long keys need HIERARCH; spelling it out avoids astropy's VerifyWarning
        card = key if len(key) <= 8 else f"HIERARCH {key}"
        header[card] = (int(bit), f"mask plane {name.upper()}")
    return _named(fits.ImageHDU(mask.astype(np.int32), header=header), "MASK")


def _psf_hdus(psf_images: np.ndarray, psf_grid: tuple[np.ndarray, np.ndarray] | np.ndarray | None
              ) -> list[fits.ImageHDU | fits.BinTableHDU]:
    images = np.asarray(psf_images, dtype=np.float64)
    if images.ndim not in (2, 3) or images.shape[-1] != images.shape[-2] \
            or images.shape[-1] % 2 == 0:
        raise ValueError(
            f"psf_images: expected (k, k) or (n, k, k) with k odd, got shape {images.shape}"
        )
    hdus: list[fits.ImageHDU | fits.BinTableHDU] = [_named(fits.ImageHDU(images), "PSF")]
    if images.ndim == 2 or images.shape[0] == 1:
        return hdus
    if psf_grid is None:
        raise ValueError(f"psf_grid: required for a cube of {images.shape[0]} PSF images")
    if isinstance(psf_grid, np.ndarray) and psf_grid.ndim == 2 and psf_grid.shape[1] == 2:
        gx, gy = psf_grid[:, 0], psf_grid[:, 1]
    else:
        gx, gy = psf_grid
    gx = np.asarray(gx, dtype=np.float64).ravel()
    gy = np.asarray(gy, dtype=np.float64).ravel()
    n = images.shape[0]
    if gx.size != n or gy.size != n:
        raise ValueError(f"psf_grid: expected {n} x and y positions, got {gx.size} and {gy.size}")
    table = fits.BinTableHDU.from_columns([
        fits.Column(name="x", format="D", array=gx, unit="pixel"),
        fits.Column(name="y", format="D", array=gy, unit="pixel"),
    ])
    hdus.append(_named(table, "PSF_GRID"))
    return hdus


