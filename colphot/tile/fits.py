"""``read_tile``: a coadd tile from a FITS file on local disk or any fsspec URL."""

from __future__ import annotations

import math
import os
import re
import warnings
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import wcs_to_celestial_frame

from colphot._fs import is_local
from colphot._identity import band_problem, parse_index
from colphot._typing import PathLike, StorageOptions
from colphot.exceptions import EstimatedVarianceWarning, TileFormatError
from colphot.tile.ap_corr import ChebyshevField, read_ap_corr
from colphot.tile.mask import mask_planes_from_header
from colphot.tile.psf import PsfModel
from colphot.tile.tile import Tile

__all__ = ["read_tile", "tile_identity", "AB_NJY_ZEROPOINT"]

#: AB magnitude of 1 nJy.
AB_NJY_ZEROPOINT = 31.4


def read_tile(
    url: PathLike,
    *,
    psf: np.ndarray | PathLike | None = None,
    ap_corr: dict[str, ChebyshevField] | PathLike | None = None,
    storage_options: StorageOptions = None,
) -> Tile:
    """Read a coadd tile in afw "Exposure" layout (or a plain 2D FITS image).

    Parameters
    ----------
    url
        Local path or fsspec URL (``s3://bucket/key.fits``). Remote files are read lazily:
        only the HDUs the tile needs are fetched.
    psf
        A PSF image (2D, odd size) or a path to a FITS file whose first 2D HDU is one, for
        tiles that carry no ``PSF`` HDU. It is normalised to sum 1.
    ap_corr
        An aperture-correction map (:mod:`colphot.tile.ap_corr`) or a path to a FITS file
        with an ``APCORR`` table HDU, for tiles that carry no ``APCORR`` HDU.
    storage_options
        fsspec options (``endpoint_url``, ``key``, ``anon``, ...) for remote URLs.

    Returns
    -------
    Tile
        Pixel values calibrated to nJy when the file says how (``BUNIT='nJy'``, ``MAGZERO`` or
        ``FLUXMAG0``); otherwise in the file's own units, recorded in ``Tile.flux_unit``.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    TileFormatError
        An HDU or key is missing or inconsistent; the message names the file, HDU and key.
    """
    name = os.fspath(url)
    try:
        if is_local(name):
            local = name.split("://", 1)[1] if "://" in name else name
            if not os.path.exists(local):
                raise FileNotFoundError(f"{name}: tile file not found")
            opened = fits.open(local, memmap=False, lazy_load_hdus=True)
        else:
            try:
                opened = fits.open(
                    name, use_fsspec=True, fsspec_kwargs=dict(storage_options or {}),
                    lazy_load_hdus=True,
                )
            except FileNotFoundError as err:
                raise FileNotFoundError(f"{name}: tile file not found") from err
        with opened as hdul:
            try:
                return _tile_from_hdul(hdul, name, psf, ap_corr)
            except VerifyError as err:  # a header card astropy cannot parse
                raise TileFormatError(f"{name}: unparsable header card ({err})") from err
    except OSError as err:
        if isinstance(err, FileNotFoundError) or _storage_failed(name, storage_options):
            raise  # the storage, not the file: transient, for the caller (Dask) to retry
        raise TileFormatError(f"{name}: not a readable FITS file ({err})") from err


def _storage_failed(name: str, storage_options: StorageOptions) -> bool:
    """Whether a remote file's first bytes cannot be fetched now (an outage, not a bad file)."""
    if is_local(name):
        return False
    try:
        from colphot._fs import filesystem

        fs, path = filesystem(name, storage_options)
        fs.cat_file(path, start=0, end=2880)
    except Exception:  # whatever the storage client raises
        return True
    return False


def _find_hdu(hdul: fits.HDUList, name: str) -> int | None:
    """Index of the HDU named ``name`` by EXTNAME, else by EXTTYPE."""
    for key in ("EXTNAME", "EXTTYPE"):
        for i, hdu in enumerate(hdul):
            value = hdu.header.get(key)
            if isinstance(value, str) and value.strip().upper() == name:
                return i
    return None


def _image_hdu(hdul: fits.HDUList, name: str) -> tuple[int, str]:
    """``(index, layout)`` of the tile's image HDU: ``"afw"`` for an HDU named ``IMAGE``,
    else ``"plain"`` for the first 2D image HDU (reading headers only)."""
    i_image = _find_hdu(hdul, "IMAGE")
    if i_image is not None:
        return i_image, "afw"
    planes_present = [p for p in ("MASK", "VARIANCE") if _find_hdu(hdul, p) is not None]
    if planes_present:
        raise TileFormatError(
            f"{name}: no IMAGE HDU (EXTNAME or EXTTYPE 'IMAGE') although the file has "
            f"{'/'.join(planes_present)} HDUs"
        )
    for i, hdu in enumerate(hdul):
        if hdu.is_image and hdu.header.get("NAXIS") == 2:
            return i, "plain"
    raise TileFormatError(f"{name}: no IMAGE HDU and no 2D image HDU in the file")


def tile_identity(hdul: fits.HDUList, name: str, *, require_image: bool = True
                  ) -> tuple[str | None, int | None, int | None]:
    """``(band, tract, patch)`` of a tile from its headers, as :func:`read_tile` reads them.

    Each is looked up in the image HDU's header first, then in the primary header; the band
    is ``BAND``, else ``FILTER`` (of the same header). Reads headers only, so it also serves
    to learn a tile's identity without its pixels. ``None`` for what neither header gives.

    Parameters
    ----------
    hdul
        The open tile file.
    name
        The file's path or URL, for error messages.
    require_image
        When False, a file without a usable image HDU is named from its primary header alone
        (so that a run can plan it and report it as a failed tile).

    Raises
    ------
    TileFormatError
        The file has no image HDU (with ``require_image``), or ``TRACT``/``PATCH`` is not an
        integer.
    """
    try:
        i_image, _ = _image_hdu(hdul, name)
    except TileFormatError:
        if require_image:
            raise
        i_image = 0
    header, primary = hdul[i_image].header, hdul[0].header
    where = (f"{name}[HDU {i_image}]", f"{name}[HDU 0]")
    return (_identity(header, primary, ("BAND", "FILTER"), str, where),
            _identity(header, primary, ("TRACT",), int, where),
            _identity(header, primary, ("PATCH",), int, where))


def _tile_from_hdul(hdul: fits.HDUList, name: str, psf_arg: Any, ap_corr_arg: Any = None
                    ) -> Tile:
    i_image, layout = _image_hdu(hdul, name)
    image_hdu = hdul[i_image]
    header = image_hdu.header
    primary = hdul[0].header
    where = f"{name}[HDU {i_image}]"
    image = _read_2d(image_hdu, where, "IMAGE")
    # header values first: a bad number names its key before wcslib sees the header
    scale, unit = _calibration(header, primary, where)
    xy0 = _xy0(header, where)
    _check_wcs_keys(header, where)
    wcs = _celestial_wcs(header, where)
    shape = image.shape

    mask = None
    planes: dict[str, int] = {}
    variance = None
    estimated = False
    psf_model = None
    if layout == "afw":
        i_mask = _find_hdu(hdul, "MASK")
        if i_mask is not None:
            mask_raw = _read_2d(hdul[i_mask], f"{name}[HDU {i_mask}]", "MASK", shape=shape)
            if not np.issubdtype(mask_raw.dtype, np.integer):
                raise TileFormatError(
                    f"{name}[HDU {i_mask}] MASK: expected integer bit planes, got {mask_raw.dtype}"
                )
            mask = mask_raw.astype(np.uint32, copy=False)
            planes = mask_planes_from_header(hdul[i_mask].header)
        i_var = _find_hdu(hdul, "VARIANCE")
        if i_var is not None:
            variance = _read_2d(hdul[i_var], f"{name}[HDU {i_var}]", "VARIANCE", shape=shape)
        i_psf = _find_hdu(hdul, "PSF")
        if i_psf is not None:
            psf_model = _read_psf(hdul, i_psf, name)
    if psf_model is None and psf_arg is not None:
        psf_model = _psf_from_argument(psf_arg)
    i_apcorr = _find_hdu(hdul, "APCORR")
    if i_apcorr is not None:
        where_ac = f"{name}[HDU {i_apcorr}] APCORR"
        ap_corr = read_ap_corr(_hdu_data(hdul[i_apcorr], where_ac), where_ac)
    else:
        ap_corr = _ap_corr_from_argument(ap_corr_arg)

    if variance is None:
        variance = _estimate_variance(image, name)
        estimated = True
    image = image.astype(np.float32, copy=False)
    variance = variance.astype(np.float32, copy=False)
    if scale is not None and scale != 1.0:
        image = image * np.float32(scale)
        variance = variance * np.float32(scale * scale)

    band, tract, patch = tile_identity(hdul, name)
    return Tile(
        image=image,
        mask=mask,
        variance=variance,
        wcs=wcs,
        psf=psf_model,
        band=band,
        tract=tract,
        patch=patch,
        xy0=xy0,
        mask_planes=planes,
        flux_scale=scale,
        flux_unit=unit,
        variance_estimated=estimated,
        uri=name,
        ap_corr=ap_corr,
    )


def _ap_corr_from_argument(ap_corr: Any) -> dict[str, ChebyshevField] | None:
    """``read_tile``'s ``ap_corr``: a map as it is, or the ``APCORR`` HDU of a FITS file."""
    if ap_corr is None or isinstance(ap_corr, dict):
        return ap_corr
    path = os.fspath(ap_corr)
    with fits.open(path) as hdul:
        i = _find_hdu(hdul, "APCORR")
        if i is None:
            raise TileFormatError(f"{path}: no APCORR HDU (EXTNAME or EXTTYPE 'APCORR')")
        where = f"{path}[HDU {i}] APCORR"
        return read_ap_corr(_hdu_data(hdul[i], where), where)


def _hdu_data(hdu: Any, where: str) -> Any:
    """``hdu.data``, with truncated or corrupt data reported as one error naming the HDU."""
    try:
        return hdu.data
    except OSError:
        raise  # read_tile tells a storage failure from a damaged file
    except (ValueError, TypeError) as err:
        raise TileFormatError(f"{where}: cannot read the data ({err})") from err


def _read_2d(hdu: Any, where: str, what: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    data = _hdu_data(hdu, f"{where} {what}")
    if data is None or data.ndim != 2:
        got = None if data is None else data.shape
        raise TileFormatError(f"{where} {what}: expected a 2D array, got {got}")
    if shape is not None and data.shape != shape:
        raise TileFormatError(
            f"{where} {what}: shape {data.shape} does not match the IMAGE shape {shape}"
        )
    return np.asarray(data)


def _celestial_wcs(header: fits.Header, where: str) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header, naxis=2, relax=True)
        except Exception as err:  # astropy raises several types for broken WCS keys
            raise TileFormatError(f"{where} IMAGE: invalid WCS keys ({err})") from err
    if not wcs.has_celestial or wcs.celestial.naxis != 2:
        raise TileFormatError(
            f"{where} IMAGE: no celestial WCS (CTYPE1/CTYPE2 = "
            f"{header.get('CTYPE1')!r}/{header.get('CTYPE2')!r})"
        )
    celestial = wcs.celestial
    with np.errstate(all="ignore"):
        det = float(np.linalg.det(celestial.pixel_scale_matrix))
    if not (math.isfinite(det) and det != 0.0):
        raise TileFormatError(f"{where} IMAGE: the WCS pixel matrix (CD/PC x CDELT) is singular "
                              f"or not finite (determinant {det!r})")
    try:
        wcs_to_celestial_frame(celestial)
        with np.errstate(all="ignore"):
            celestial.pixel_to_world(0.0, 0.0)
    except Exception as err:  # astropy's errors for frames it cannot build
        raise TileFormatError(
            f"{where} IMAGE: the WCS has no usable celestial frame (RADESYS = "
            f"{header.get('RADESYS')!r}, EQUINOX = {header.get('EQUINOX')!r}: {err})") from err
    return celestial


def _header_number(header: fits.Header, key: str, where: str) -> float:
    """A finite real header value (``TileFormatError`` naming the key otherwise)."""
    try:
        value = header[key]
    except VerifyError as err:
        raise TileFormatError(f"{where} {key}: unparsable card ({err})") from err
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TileFormatError(f"{where} {key}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise TileFormatError(f"{where} {key}: expected a finite number, got {value!r}")
    return number


def _xy0(header: fits.Header, where: str = "") -> tuple[int, int]:
    out = []
    for keys, sign in ((("LTV1", "LTV2"), -1.0), (("CRVAL1A", "CRVAL2A"), 1.0)):
        if keys[0] in header or keys[1] in header:
            if sign > 0 and not (keys[0] in header and keys[1] in header):
                continue
            for key in keys:
                value = _header_number(header, key, where) if key in header else 0.0
                if abs(value) > 2**31 or value != round(value):
                    raise TileFormatError(
                        f"{where} {key}: expected an integer pixel offset within 2**31, got "
                        f"{header[key]!r}")
                out.append(int(round(sign * value)))
            return out[0], out[1]
    return 0, 0


def _identity(header: fits.Header, primary: fits.Header, keys: tuple[str, ...], kind: type,
              where: tuple[str, str]) -> Any:
    """The first of ``keys`` in the image header, then the primary one (``where`` names
    them in errors), parsed as a tract/patch number (``kind`` int) or a band."""
    for h, at in zip((header, primary), where, strict=True):
        for key in keys:
            if key in h:
                value = h[key]
                if kind is int:
                    try:
                        return parse_index(value)
                    except ValueError as err:
                        raise TileFormatError(f"{at} {key}: {err}") from err
                text = value.strip() if isinstance(value, str) else value
                why = band_problem(text)
                if why:
                    raise TileFormatError(f"{at} {key}: not a usable band name ({why})")
                return text
    return None


#: Accepted range of MAGZERO (AB magnitude of one pixel unit).
_MAGZERO_RANGE = (-50.0, 100.0)


def _calibration(header: fits.Header, primary: fits.Header, where: str) -> tuple[float | None, str]:
    """``(scale to nJy or None, unit)`` from BUNIT, MAGZERO or FLUXMAG0.

    A MAGZERO or FLUXMAG0 that is present but unusable (not a finite number, MAGZERO outside
    [-50, 100], FLUXMAG0 negative) is an error, not silently ignored; 0 means uncalibrated.
    """
    for h in (header, primary):  # every calibration key present must be usable
        if "BUNIT" in h and not isinstance(h["BUNIT"], str):
            raise TileFormatError(f"{where} BUNIT: expected a unit name, got {h['BUNIT']!r}")
        for key in ("MAGZERO", "FLUXMAG0"):
            if key in h:
                _header_number(h, key, where)
    for h in (header, primary):
        bunit = h.get("BUNIT")
        if isinstance(bunit, str) and bunit.strip().lower() == "njy":
            return 1.0, "nJy"
    for h in (header, primary):
        if "MAGZERO" in h:
            magzero = _header_number(h, "MAGZERO", where)
            if magzero == 0:
                continue  # the conventional "no zero point"
            if not _MAGZERO_RANGE[0] <= magzero <= _MAGZERO_RANGE[1]:
                raise TileFormatError(f"{where} MAGZERO: expected an AB zero point in "
                                      f"{list(_MAGZERO_RANGE)}, got {magzero!r}")
            return 10.0 ** (-0.4 * (magzero - AB_NJY_ZEROPOINT)), "nJy"
    for h in (header, primary):
        if "FLUXMAG0" in h:
            fluxmag0 = _header_number(h, "FLUXMAG0", where)
            if fluxmag0 == 0:
                continue  # the conventional "not calibrated"
            if not 0 < fluxmag0 < 1e300:
                raise TileFormatError(f"{where} FLUXMAG0: expected a positive flux of a "
                                      f"zero-magnitude source, got {fluxmag0!r}")
            return 10.0 ** (0.4 * AB_NJY_ZEROPOINT) / fluxmag0, "nJy"
    for h in (header, primary):
        bunit = h.get("BUNIT")
        if isinstance(bunit, str) and bunit.strip():
            return None, bunit.strip()
    return None, "count"


#: Numeric WCS keywords (a text or boolean value is a malformed header, not to be ignored).
_WCS_NUMBERS = re.compile(r"(CRPIX|CRVAL|CDELT|CROTA)[12]|CD[12]_[12]|PC[12]_[12]|EQUINOX|"
                          r"EPOCH|LONPOLE|LATPOLE|PV[12]_\d+")
_WCS_TEXT = re.compile(r"CTYPE[12]|CUNIT[12]|RADESYS|RADECSYS")


def _check_wcs_keys(header: fits.Header, where: str) -> None:
    """Each celestial WCS keyword present has the type FITS gives it."""
    for key in header:
        if _WCS_NUMBERS.fullmatch(key):
            _header_number(header, key, where)
        elif _WCS_TEXT.fullmatch(key) and not isinstance(header[key], str):
            raise TileFormatError(f"{where} {key}: expected a text value, got {header[key]!r}")


def _estimate_variance(image: np.ndarray, name: str) -> np.ndarray:
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        raise TileFormatError(f"{name}: IMAGE has no finite pixel to estimate a variance from")
    sample = finite[:: max(1, finite.size // 1_000_000)].astype(np.float64)
    for _ in range(5):
        med = np.median(sample)
        sigma = 1.4826 * np.median(np.abs(sample - med))
        if sigma <= 0:
            break
        sample = sample[np.abs(sample - med) < 3 * sigma]
    sigma = float(np.std(sample)) if sample.size else 0.0
    warnings.warn(
        f"{name}: no VARIANCE HDU; using a constant variance {sigma**2:.6g} estimated from the "
        "image (clipped standard deviation)",
        EstimatedVarianceWarning,
        stacklevel=4,
    )
    return np.full(image.shape, sigma * sigma, dtype=np.float32)


def _read_psf(hdul: fits.HDUList, i_psf: int, name: str) -> PsfModel:
    where = f"{name}[HDU {i_psf}] PSF"
    data = _hdu_data(hdul[i_psf], where)
    if data is None or data.ndim not in (2, 3):
        got = None if data is None else data.shape
        raise TileFormatError(f"{where}: expected a 2D image or a 3D cube, got {got}")
    data = np.asarray(data, dtype=np.float64)
    if data.shape[-1] != data.shape[-2] or data.shape[-1] % 2 == 0:
        raise TileFormatError(
            f"{where}: PSF images must be square with an odd side, got {data.shape}"
        )
    if data.ndim == 2 or data.shape[0] == 1:
        model = _psf_model(data.reshape(-1, *data.shape[-2:])[:1], [0.0], [0.0], where)
        return model
    i_grid = _find_hdu(hdul, "PSF_GRID")
    if i_grid is None:
        raise TileFormatError(f"{name}: PSF cube of {data.shape[0]} images but no PSF_GRID HDU")
    table = _hdu_data(hdul[i_grid], f"{name}[HDU {i_grid}] PSF_GRID")
    names = [] if table is None else [c.lower() for c in table.columns.names]
    if "x" not in names or "y" not in names:
        raise TileFormatError(
            f"{name}[HDU {i_grid}] PSF_GRID: expected columns x and y, got {names}"
        )
    gx = np.asarray(table.field(names.index("x")), dtype=np.float64)
    gy = np.asarray(table.field(names.index("y")), dtype=np.float64)
    if len(gx) != data.shape[0]:
        raise TileFormatError(
            f"{name}[HDU {i_grid}] PSF_GRID: {len(gx)} rows for {data.shape[0]} PSF images"
        )
    return _psf_model(data, gx, gy, where)


def _psf_model(images: np.ndarray, gx: Any, gy: Any, where: str) -> PsfModel:
    try:
        return PsfModel(images, gx, gy)
    except ValueError as err:
        raise TileFormatError(f"{where}: {err}") from err


def _psf_from_argument(psf: Any) -> PsfModel:
    if isinstance(psf, PsfModel):
        return psf
    if isinstance(psf, np.ndarray):
        if psf.ndim != 2:
            raise ValueError(f"psf: expected a 2D image, got shape {psf.shape}")
        return PsfModel.constant(psf)
    path = os.fspath(psf)
    with fits.open(path) as hdul:
        for hdu in hdul:
            if hdu.is_image and hdu.data is not None and hdu.data.ndim == 2:
                return _psf_model(np.asarray(hdu.data, dtype=np.float64)[None], [0.0], [0.0],
                                  f"{path}[PSF]")
    raise TileFormatError(f"{path}: no 2D image HDU to use as a PSF")
