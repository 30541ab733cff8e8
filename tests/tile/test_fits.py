"""read_tile: afw Exposure layout and plain FITS, calibration, and one clear error per bad input."""

from __future__ import annotations

import re

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from colphot.exceptions import EstimatedVarianceWarning, TileFormatError
from colphot.tile.fits import read_tile
from colphot.tile.psf import PsfModel

SHAPE = (64, 80)


def _hdus(sim, *, key="EXTNAME", shape=SHAPE, mask_shape=None, var_shape=None, psf=True,
          image_header=None, primary=None, mask_dtype=np.int32, seed=0):
    """An afw-layout HDU list plus the arrays written into it."""
    rng = np.random.default_rng(seed)
    image = rng.normal(10.0, 2.0, shape).astype(np.float32)
    mask = rng.integers(0, 1 << 9, mask_shape or shape).astype(mask_dtype)
    variance = rng.uniform(3.0, 5.0, var_shape or shape).astype(np.float32)
    wcs = sim.tan_wcs(shape, ra0=210.0, dec0=-5.0)
    header = wcs.to_header()
    header["LTV1"] = -1000
    header["LTV2"] = -2000
    for k, v in (image_header or {}).items():
        header[k] = v
    ph = fits.Header()
    ph["BAND"] = "i"
    ph["TRACT"] = 9813
    ph["PATCH"] = 41
    for k, v in (primary or {}).items():
        ph[k] = v
    mask_header = header.copy()
    for name, bit in sim.MASK_PLANES.items():
        mask_header[f"HIERARCH MP_{name}"] = bit
    hdus = [fits.PrimaryHDU(header=ph),
            fits.ImageHDU(image, header=header),
            fits.ImageHDU(mask, header=mask_header),
            fits.ImageHDU(variance, header=header)]
    for hdu, name in zip(hdus[1:], ("IMAGE", "MASK", "VARIANCE"), strict=True):
        hdu.header[key] = name
    psf_image = sim.psf_image(21)
    if psf:
        hdus.append(fits.ImageHDU(psf_image, name="PSF"))
    return fits.HDUList(hdus), dict(image=image, mask=mask, variance=variance, wcs=wcs,
                                    psf=psf_image)


def _write(tmp_path, hdul, name="tile.fits"):
    path = tmp_path / name
    hdul.writeto(path)
    return path


@pytest.mark.parametrize("key", ["EXTNAME", "EXTTYPE"])
def test_afw_layout_roundtrip(sim, tmp_path, key):
    hdul, truth = _hdus(sim, key=key)
    path = _write(tmp_path, hdul)
    tile = read_tile(path)
    np.testing.assert_array_equal(tile.image, truth["image"])
    np.testing.assert_array_equal(tile.mask, truth["mask"])
    assert np.issubdtype(tile.mask.dtype, np.unsignedinteger)
    np.testing.assert_array_equal(tile.variance, truth["variance"])
    assert tile.mask_planes == sim.MASK_PLANES
    assert tile.xy0 == (1000, 2000)
    assert (tile.band, tile.tract, tile.patch) == ("i", 9813, 41)
    assert tile.flux_unit == "count" and tile.flux_scale is None
    assert not tile.variance_estimated
    assert tile.uri == str(path)
    px = np.array([0.0, 10.3, 79.0])
    py = np.array([0.0, 40.7, 63.0])
    np.testing.assert_allclose(tile.wcs.pixel_to_world_values(px, py),
                               truth["wcs"].pixel_to_world_values(px, py), rtol=0, atol=1e-10)
    np.testing.assert_allclose(tile.psf.images[0], truth["psf"] / truth["psf"].sum(), rtol=1e-12)
    prov = tile.provenance()
    assert prov["uri"] == str(path) and prov["shape"] == [64, 80] and prov["xy0"] == [1000, 2000]
    assert prov["has_psf"] and prov["has_mask"]


def test_afw_file_without_mask_and_variance(sim, tmp_path):
    hdul, truth = _hdus(sim, psf=False)
    del hdul[3]
    del hdul[2]
    path = _write(tmp_path, hdul)
    with pytest.warns(EstimatedVarianceWarning, match=f"{re.escape(str(path))}: no VARIANCE"):
        tile = read_tile(path)
    assert tile.mask is None and tile.mask_planes == {}
    assert tile.variance_estimated
    # the image is N(10, 2): the clipped estimate is close to 2^2
    assert tile.variance[0, 0] == pytest.approx(4.0, rel=0.1)
    np.testing.assert_array_equal(tile.image, truth["image"])


def test_xy0_from_crval_a_keys(sim, tmp_path):
    hdul, _ = _hdus(sim)
    for hdu in hdul[1:4]:
        del hdu.header["LTV1"], hdu.header["LTV2"]
        hdu.header["CRVAL1A"] = 300
        hdu.header["CRVAL2A"] = 400
    tile = read_tile(_write(tmp_path, hdul))
    assert tile.xy0 == (300, 400)


@pytest.mark.parametrize(
    "where, key, value, one_count",
    [("image", "BUNIT", "nJy", 1.0 * u.nJy),
     ("image", "MAGZERO", 27.0, (27.0 * u.ABmag).to(u.nJy)),
     ("primary", "MAGZERO", 30.5, (30.5 * u.ABmag).to(u.nJy)),
     # FLUXMAG0: counts of a 0th-magnitude (AB) source
     ("primary", "FLUXMAG0", 6.3e10, (0.0 * u.ABmag).to(u.nJy) / 6.3e10)],
)
def test_calibration_to_njy(sim, tmp_path, where, key, value, one_count):
    kwargs = {"image_header": {key: value}} if where == "image" else {"primary": {key: value}}
    hdul, truth = _hdus(sim, **kwargs)
    tile = read_tile(_write(tmp_path, hdul))
    scale = one_count.to_value(u.nJy)
    assert tile.flux_unit == "nJy"
    np.testing.assert_allclose(tile.image, truth["image"] * scale, rtol=1e-6)
    np.testing.assert_allclose(tile.variance, truth["variance"] * scale**2, rtol=1e-6)


def test_zero_fluxmag0_leaves_tile_uncalibrated(sim, tmp_path):
    hdul, truth = _hdus(sim, primary={"FLUXMAG0": 0.0, "BUNIT": "adu"})
    tile = read_tile(_write(tmp_path, hdul))
    assert tile.flux_scale is None and tile.flux_unit == "adu"
    np.testing.assert_array_equal(tile.image, truth["image"])


def test_plain_image_estimates_variance(sim, tmp_path):
    rng = np.random.default_rng(1)
    shape = (300, 310)
    image = rng.normal(7.0, 3.0, shape).astype(np.float32)
    image[100:110, 100:110] += 500.0      # a bright blob the clipping rejects
    path = tmp_path / "plain.fits"
    fits.PrimaryHDU(image, header=sim.tan_wcs(shape).to_header()).writeto(path)
    psf = sim.psf_image(15)
    with pytest.warns(EstimatedVarianceWarning, match=re.escape(str(path))):
        tile = read_tile(path, psf=psf)
    assert tile.variance_estimated and tile.mask is None
    assert np.all(tile.variance == tile.variance[0, 0])
    assert np.sqrt(tile.variance[0, 0]) == pytest.approx(3.0, rel=0.02)
    np.testing.assert_allclose(tile.psf.images[0], psf / psf.sum())


def test_psf_argument_from_file(sim, tmp_path):
    hdul, _ = _hdus(sim, psf=False)
    path = _write(tmp_path, hdul)
    psf_path = tmp_path / "psf.fits"
    psf = sim.psf_image(25, sigma1=2.0, sigma2=4.0)
    fits.PrimaryHDU(psf).writeto(psf_path)
    tile = read_tile(path, psf=psf_path)
    np.testing.assert_allclose(tile.psf.images[0], psf / psf.sum(), rtol=1e-12)
    assert read_tile(path).psf is None


def test_gridded_psf_hdu(sim, tmp_path):
    hdul, _ = _hdus(sim, psf=False)
    cube = np.array([sim.psf_image(21, sigma1=s, sigma2=2 * s) for s in (1.2, 1.4, 1.6, 1.8)])
    gx = np.array([10.0, 70.0, 10.0, 70.0])
    gy = np.array([10.0, 10.0, 55.0, 55.0])
    hdul.append(fits.ImageHDU(cube, name="PSF"))
    hdul.append(fits.BinTableHDU.from_columns(
        [fits.Column(name="x", format="D", array=gx), fits.Column(name="y", format="D",
                                                                  array=gy)],
        name="PSF_GRID"))
    tile = read_tile(_write(tmp_path, hdul))
    assert isinstance(tile.psf, PsfModel)
    np.testing.assert_array_equal(tile.psf.grid_x, gx)
    np.testing.assert_array_equal(tile.psf.grid_y, gy)
    np.testing.assert_allclose(tile.psf.images, cube / cube.sum(axis=(1, 2))[:, None, None])


# ------------------------------------------------------------------------------------------
# bad input: one clear error naming the file and what is wrong


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "missing.fits"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        read_tile(path)


def test_not_a_fits_file(tmp_path):
    path = tmp_path / "notes.fits"
    path.write_text("this is not FITS\n" * 200)
    with pytest.raises(TileFormatError, match=re.escape(str(path))):
        read_tile(path)


def test_no_image_hdu(tmp_path):
    path = tmp_path / "table_only.fits"
    fits.HDUList([fits.PrimaryHDU(),
                  fits.BinTableHDU.from_columns([fits.Column(name="a", format="D",
                                                             array=np.ones(3))])]).writeto(path)
    with pytest.raises(TileFormatError, match=f"{re.escape(str(path))}.*no IMAGE HDU"):
        read_tile(path)


def test_afw_file_missing_its_image_hdu(sim, tmp_path):
    """MASK and VARIANCE but no IMAGE: the mask must not be read as the image."""
    hdul, _ = _hdus(sim)
    del hdul[1]
    path = _write(tmp_path, hdul)
    with pytest.raises(TileFormatError, match=f"{re.escape(str(path))}.*IMAGE"):
        read_tile(path)


def test_image_hdu_not_2d(sim, tmp_path):
    hdul, _ = _hdus(sim)
    header = hdul[1].header
    hdul[1] = fits.ImageHDU(np.zeros((2, 64, 80), dtype=np.float32), header=header)
    hdul[1].header["EXTNAME"] = "IMAGE"
    path = _write(tmp_path, hdul)
    with pytest.raises(TileFormatError, match=f"{re.escape(str(path))}.*IMAGE.*2D"):
        read_tile(path)


def test_no_celestial_wcs(sim, tmp_path):
    hdul, _ = _hdus(sim)
    for key in sim.tan_wcs(SHAPE).to_header():
        hdul[1].header.remove(key, ignore_missing=True)
    assert "CTYPE1" not in hdul[1].header
    path = _write(tmp_path, hdul)
    with pytest.raises(TileFormatError,
                       match=f"{re.escape(str(path))}.*no celestial WCS"):
        read_tile(path)


def test_linear_wcs_is_not_celestial(sim, tmp_path):
    hdul, _ = _hdus(sim)
    hdul[1].header["CTYPE1"] = "LINEAR"
    hdul[1].header["CTYPE2"] = "LINEAR"
    with pytest.raises(TileFormatError, match="no celestial WCS"):
        read_tile(_write(tmp_path, hdul))


@pytest.mark.parametrize("which", ["MASK", "VARIANCE"])
def test_plane_shape_mismatch(sim, tmp_path, which):
    kwargs = {"mask_shape": (64, 79)} if which == "MASK" else {"var_shape": (63, 80)}
    hdul, _ = _hdus(sim, **kwargs)
    path = _write(tmp_path, hdul)
    with pytest.raises(TileFormatError,
                       match=f"{re.escape(str(path))}.*{which}.*does not match the IMAGE"):
        read_tile(path)


def test_float_mask_rejected(sim, tmp_path):
    hdul, _ = _hdus(sim, mask_dtype=np.float32)
    with pytest.raises(TileFormatError, match="MASK.*integer"):
        read_tile(_write(tmp_path, hdul))


def test_bad_tract_value(sim, tmp_path):
    hdul, _ = _hdus(sim, primary={"TRACT": "north"})
    with pytest.raises(TileFormatError, match="TRACT.*integer"):
        read_tile(_write(tmp_path, hdul))


def test_even_psf_rejected(sim, tmp_path):
    hdul, _ = _hdus(sim, psf=False)
    hdul.append(fits.ImageHDU(np.ones((20, 20)), name="PSF"))
    with pytest.raises(TileFormatError, match="PSF.*odd"):
        read_tile(_write(tmp_path, hdul))


def test_psf_cube_without_grid(sim, tmp_path):
    hdul, _ = _hdus(sim, psf=False)
    hdul.append(fits.ImageHDU(np.ones((3, 21, 21)), name="PSF"))
    with pytest.raises(TileFormatError, match="PSF_GRID"):
        read_tile(_write(tmp_path, hdul))


def test_truncated_file_names_file_and_hdu(sim, tmp_path):
    """A partial download: astropy warns, colphot raises one TileFormatError naming the HDU."""
    from astropy.utils.exceptions import AstropyUserWarning

    hdul, _ = _hdus(sim, psf=False)
    path = _write(tmp_path, hdul)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5000])
    with pytest.raises(TileFormatError,
                       match=f"{re.escape(str(path))}\\[HDU 3\\] VARIANCE: cannot read"):
        with pytest.warns(AstropyUserWarning, match="truncated"):
            read_tile(path)


#: (where, key, value, what the error says): header values that must not pass silently.
BAD_HEADERS = [
    ("primary", "BAND", "../../x", r"BAND: not a usable band name"),
    ("primary", "BAND", "a/b", r"BAND: not a usable band name.*path separator"),
    ("primary", "BAND", "__HIVE_DEFAULT_PARTITION__", r"BAND: .*hive null token"),
    ("primary", "TRACT", 1.5, r"TRACT: expected a non-negative integer"),
    ("primary", "TRACT", -3, r"TRACT: expected a non-negative integer"),
    ("primary", "PATCH", True, r"PATCH: expected a non-negative integer"),
    ("image", "MAGZERO", "abc", r"MAGZERO: expected a number, got 'abc'"),
    ("image", "MAGZERO", -1000.0, r"MAGZERO: expected an AB zero point"),
    ("image", "FLUXMAG0", -5.0, r"FLUXMAG0: expected a positive flux"),
    ("image", "LTV1", "abc", r"LTV1: expected a number, got 'abc'"),
    ("image", "LTV1", 0.5, r"LTV1: expected an integer pixel offset"),
    ("image", "LTV2", 1e12, r"LTV2: expected an integer pixel offset within 2\*\*31"),
    ("image", "RADESYS", "NONSENSE", r"no usable celestial frame \(RADESYS = 'NONSENSE'"),
]


@pytest.mark.parametrize(("where", "key", "value", "message"), BAD_HEADERS,
                         ids=[f"{k}={v!r}" for _, k, v, _ in BAD_HEADERS])
def test_bad_header_values_name_file_hdu_and_key(sim, tmp_path, where, key, value, message):
    kwargs = {"primary": {key: value}} if where == "primary" else {"image_header": {key: value}}
    hdul, _ = _hdus(sim, **kwargs)
    path = _write(tmp_path, hdul)
    with pytest.raises(TileFormatError, match=message) as info:
        read_tile(path)
    assert str(path) in str(info.value) and "HDU" in str(info.value)


def _replace_card(path, key, old_value, text):
    """Rewrite the card ``key = old_value`` of a written file as ``key = text`` (FITS allows
    NAN/INF spelled in a card, astropy's writer does not produce them)."""
    raw = path.read_bytes()
    card = fits.Card(key, old_value).image.encode()
    assert card in raw
    path.write_bytes(raw.replace(card, f"{key:<8}= {text:>20}".ljust(80).encode()))


@pytest.mark.parametrize(("key", "text"), [("MAGZERO", "NAN"), ("MAGZERO", "INF"),
                                           ("FLUXMAG0", "-INF")])
def test_nan_and_infinite_header_numbers(sim, tmp_path, key, text):
    hdul, _ = _hdus(sim, image_header={key: 27.0})
    path = _write(tmp_path, hdul)
    _replace_card(path, key, 27.0, text)
    with pytest.raises(TileFormatError, match=rf"{re.escape(str(path))}\[HDU 1\] {key}: "
                                              r"unparsable card"):
        read_tile(path)
