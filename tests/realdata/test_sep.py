"""Real ESO image from the sep repository against SExtractor's own FLUX_APER catalog.

SExtractor ran with PHOT_APERTURES 10 (diameter, so r = 5 px), 5 x 5 sub-pixel sampling of the
boundary pixels, its BACKGROUND check image ``back.fits`` subtracted, GAIN 0 (background noise
only, the global background rms). The image has no celestial WCS, so the kernel
``colphot.measure.aperture.measure_apertures`` is called directly at ``X_IMAGE - 1, Y_IMAGE - 1``.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from colphot.measure.aperture import measure_apertures

# the ESO header carries non-standard "ESO-LOG" cards that astropy reports when reading it
pytestmark = pytest.mark.filterwarnings(
    "ignore:The following header keyword is invalid:astropy.utils.exceptions.AstropyUserWarning"
)

#: SExtractor FLAGS bit 16: "the object's aperture data are incomplete or corrupted".
APER_INCOMPLETE = 16


@pytest.fixture(scope="module")
def sep_data(shared_file):
    image = fits.getdata(shared_file("sep/image.fits")).astype(np.float32)
    back = fits.getdata(shared_file("sep/back.fits")).astype(np.float32)
    # ASCII_HEAD: "#  21 FLAGS ..." gives the 1-based column of each parameter (vectors such
    # as FLUX_RADIUS(3) span several columns)
    header = [line.split() for line in shared_file("sep/image.cat").read_text().splitlines()
              if line.startswith("#")]
    cat = np.loadtxt(shared_file("sep/image.cat"))
    cols = {parts[2]: cat[:, int(parts[1]) - 1] for parts in header}
    return image, back, cols


def test_catalog_layout(sep_data):
    image, back, cols = sep_data
    assert image.shape == back.shape == (256, 256)
    assert len(cols["NUMBER"]) == 65
    assert {"X_IMAGE", "Y_IMAGE", "FLUX_APER", "FLUXERR_APER", "FLAGS"} <= set(cols)


def test_subpixel_apertures_reproduce_sextractor_flux_aper(sep_data):
    image, back, cols = sep_data
    import sep

    data = image - back
    x = cols["X_IMAGE"] - 1.0
    y = cols["Y_IMAGE"] - 1.0
    # GAIN = 0: FLUXERR_APER is the global background rms times sqrt(aperture area); sep
    # computes the same global rms from the same pixels and mesh (BACK_SIZE 64, FILTER 3)
    bkg = sep.Background(image, bw=64, bh=64, fw=3, fh=3)
    np.testing.assert_allclose(bkg.back(), back, rtol=1e-5)
    variance = np.full(data.shape, bkg.globalrms**2, dtype=np.float32)
    res = measure_apertures(data, variance, x, y, [5.0], method="subpixel", subpixels=5)
    flux, err, truncated = res.flux[:, 0], res.flux_err[:, 0], res.truncated[:, 0]

    # Excluded: apertures that leave the image. colphot returns NaN + apertureTruncated for
    # them (LSST semantics) while SExtractor sums the part on the image. These are the five
    # objects within 5 px of the border (numbers 3, 4, 5, 11, 27), all with FLAGS bit 16.
    ny, nx = data.shape
    off = (x - 5 < -0.5) | (x + 5 > nx - 0.5) | (y - 5 < -0.5) | (y + 5 > ny - 0.5)
    np.testing.assert_array_equal(truncated, off)
    assert cols["NUMBER"][off].astype(int).tolist() == [3, 4, 5, 11, 27]
    assert np.all(cols["FLAGS"][off].astype(int) & APER_INCOMPLETE)
    assert np.isnan(flux[off]).all()

    keep = ~off
    assert keep.sum() == 60          # including the saturated (FLAGS 4) and blended objects
    np.testing.assert_allclose(flux[keep], cols["FLUX_APER"][keep], rtol=2e-4)
    np.testing.assert_allclose(err[keep], cols["FLUXERR_APER"][keep], rtol=1e-5)


def test_subpixel_apertures_equal_sep_on_same_pixels(sep_data):
    import sep

    image, back, cols = sep_data
    data = image - back
    x = cols["X_IMAGE"] - 1.0
    y = cols["Y_IMAGE"] - 1.0
    res = measure_apertures(data, np.ones_like(data), x, y, [3.0, 5.0, 8.0],
                            method="subpixel", subpixels=5)
    for k, r in enumerate([3.0, 5.0, 8.0]):
        flux, _, _ = sep.sum_circle(data, x, y, r, subpix=5)
        ok = ~res.truncated[:, k]
        np.testing.assert_allclose(res.flux[ok, k], flux[ok], rtol=1e-9)
