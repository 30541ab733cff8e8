"""Sub-pixel PSF model candidates side by side on GalSim-rendered sharp PSFs.

Run: ``python benchmarks/bench_psf_model.py [--n 200]``

For each PSF (pixel-convolved Moffat beta 3.5 truncated at 4 FWHM, and a double Gaussian, at
FWHM 2.5, 3.5 and 5 px), GalSim draws the PSF image centred on a pixel and ``--n`` noiseless
unit-flux stars at random sub-pixel phases, with real-space pixel integration. Every candidate
shifts the PSF image to the star's phase, and the same linear fit ``sum(P D) / sum(P^2)`` over
the stamp gives the flux. Printed per PSF and candidate: the median of flux/true - 1 over the
phases and its spread (rms over phases), in units of 1e-4, and the pull sigma that spread alone
implies at S/N 2000 (``sqrt(1 + (2000 rms)^2)``). Candidates: Lanczos-3 and Lanczos-5
(normalised taps; colphot used Lanczos-5 before), a cubic interpolating spline (scipy's
``RectBivariateSpline``, photutils' ``ImagePSF`` interpolant), a quintic spline
(``scipy.ndimage``), the exact band-limited shift (FFT of a 2x zero-padded stamp), colphot's
``measure_psf_flux`` (degree-7 B-spline), and photutils ``PSFPhotometry`` with ``ImagePSF`` and
fixed positions on the same pixels.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import galsim
import numpy as np
from scipy import interpolate, ndimage

from colphot.measure.psf_flux import measure_psf_flux

PSFS = [(kind, fwhm) for kind in ("moffat", "double_gaussian") for fwhm in (2.5, 3.5, 5.0)]


def galsim_psf(kind: str, fwhm: float) -> galsim.GSObject:
    if kind == "moffat":
        return galsim.Moffat(beta=3.5, fwhm=fwhm, trunc=4.0 * fwhm)
    core = galsim.Add([galsim.Gaussian(sigma=1.0, flux=0.9), galsim.Gaussian(sigma=2.0, flux=0.1)])
    return core.dilate(fwhm / core.calculateFWHM())


def draw(psf: galsim.GSObject, k: int, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    pixelised = galsim.Convolve(psf, galsim.Pixel(1.0), real_space=True)
    return pixelised.drawImage(nx=k, ny=k, scale=1.0, offset=(dx, dy), method="no_pixel",
                               dtype=np.float64).array


def lanczos(order: int):
    def shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
        m = np.arange(-order, order + 1)

        def taps(d: float) -> np.ndarray:
            z = -d - m
            w = np.where(np.abs(z) < order, np.sinc(z) * np.sinc(z / order), 0.0)
            return w / w.sum()

        k = img.shape[0]
        p = np.pad(img, order)
        wx, wy = taps(dx), taps(dy)
        tmp = sum(wx[i] * p[:, i:i + k] for i in range(2 * order + 1))
        return sum(wy[i] * tmp[i:i + k, :] for i in range(2 * order + 1))
    return shift


def cubic_spline(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    k = img.shape[0]
    grid = np.arange(k, dtype=float)
    spline = interpolate.RectBivariateSpline(grid, grid, img, kx=3, ky=3, s=0)
    return spline(grid - dy, grid - dx, grid=True)


def quintic_spline(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    return ndimage.shift(img, (dy, dx), order=5, mode="constant", cval=0.0)


def fft_shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    k = img.shape[0]
    n = 2 * k
    p = np.zeros((n, n))
    p[:k, :k] = img
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    spectrum = np.fft.rfft2(p) * np.exp(-2j * np.pi * (fx * dx + fy * dy))
    return np.fft.irfft2(spectrum, s=(n, n))[:k, :k]


SHIFTS = {
    "Lanczos-3": lanczos(3),
    "Lanczos-5": lanczos(5),
    "cubic spline": cubic_spline,
    "quintic spline": quintic_spline,
    "exact FFT shift": fft_shift,
}


def fit(model: np.ndarray, data: np.ndarray) -> float:
    model = model / model.sum()
    return float(np.sum(model * data) / np.sum(model * model))


def photutils_fluxes(psf_image: np.ndarray, stamps: np.ndarray, phases: np.ndarray) -> np.ndarray:
    from astropy.table import Table
    from photutils.psf import ImagePSF, PSFPhotometry

    k = psf_image.shape[0]
    c = k // 2
    model = ImagePSF(psf_image / psf_image.sum())
    model.x_0.fixed = True
    model.y_0.fixed = True
    phot = PSFPhotometry(model, (k, k))
    out = np.empty(len(stamps))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (stamp, (dx, dy)) in enumerate(zip(stamps, phases, strict=True)):
            init = Table({"x": [c + dx], "y": [c + dy], "flux": [1.0]})
            out[i] = phot(stamp, error=np.ones_like(stamp), init_params=init)["flux_fit"][0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="stars (phases) per PSF")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    names = [*SHIFTS, "colphot (B-spline 7)", "photutils PSFPhotometry"]
    print(f"median flux/true - 1 and rms over {args.n} random phases, units of 1e-4; "
          "[pull sigma implied at S/N 2000]")
    width = 24
    print(f"{'PSF':<24}" + "".join(f"{n:>{width}}" for n in names))
    seconds = dict.fromkeys(names, 0.0)
    for kind, fwhm in PSFS:
        psf = galsim_psf(kind, fwhm)
        k = 2 * math.ceil(4.0 * fwhm + 1.5) + 1
        psf_image = draw(psf, k)
        phases = rng.uniform(-0.5, 0.5, (args.n, 2))
        stamps = np.stack([draw(psf, k, dx, dy) for dx, dy in phases])
        ratios = {}
        for name, shift in SHIFTS.items():
            t = time.perf_counter()
            ratios[name] = np.array([fit(shift(psf_image, dx, dy), s)
                                     for s, (dx, dy) in zip(stamps, phases, strict=True)])
            seconds[name] += time.perf_counter() - t
        t = time.perf_counter()
        c = k // 2
        ones = np.ones((1, 1))
        zero = np.zeros((1, 1), dtype=np.int64)
        ratios[names[-2]] = np.array([
            measure_psf_flux(s, np.ones_like(s), None, np.array([c + dx]), np.array([c + dy]),
                             psf_image[None], zero, ones).flux[0]
            for s, (dx, dy) in zip(stamps, phases, strict=True)])
        seconds[names[-2]] += time.perf_counter() - t
        t = time.perf_counter()
        ratios[names[-1]] = photutils_fluxes(psf_image, stamps, phases)
        seconds[names[-1]] += time.perf_counter() - t
        cells = []
        for name in names:
            r = ratios[name] - 1.0
            rms = float(np.std(r))
            cells.append(f"{np.median(r) * 1e4:+7.1f} {rms * 1e4:5.1f} "
                         f"[{math.sqrt(1 + (2000 * rms) ** 2):.2f}]")
        label = f"{kind} FWHM {fwhm} px"
        print(f"{label:<24}" + "".join(f"{c:>{width}}" for c in cells), flush=True)
    print("\nwall time of the whole column, s (numpy reference shifts, not tuned; colphot's is "
          "its kernel called once per star):")
    print(f"{'':<24}" + "".join(f"{seconds[n]:>{width}.2f}" for n in names))


if __name__ == "__main__":
    main()
