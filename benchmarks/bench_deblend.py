"""Deblended vs plain forced photometry on a crowded tile: time on 1 and 2 threads, peak memory.

Run: ``python benchmarks/bench_deblend.py [--size 4096] [--n 10000] [--repeat 5]``

A 4096^2 tile with ``n`` PSF stars, half of them in blended pairs at 1-3 PSF FWHM with flux
ratios 1-20, and an in-band catalog with the heavy footprints a perfect deblender gives (the
observed pixels of each blend split in proportion to the true models). The same
``colphot.forced_photometry`` call a user makes is timed with and without ``in_band=``, in
interleaved rounds (best of ``--repeat``), on 1 and 2 threads (``n_threads``); the preparation
(join, footprints, noise image) is inside the deblended time. Peak RSS is measured in a fresh
process per mode.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _memory import peak_rss_mib  # noqa: E402

SIGMA = 1.8  # PSF core sigma, pixels (bench_tile's double Gaussian)
NOISE = 5.0
STAMP = 12  # half size of each star's stamp, pixels


def _psf(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    r2 = dx * dx + dy * dy
    core = np.exp(-0.5 * r2 / SIGMA**2) / (2 * math.pi * SIGMA**2)
    wing = np.exp(-0.5 * r2 / (2 * SIGMA) ** 2) / (2 * math.pi * (2 * SIGMA) ** 2)
    return 0.9 * core + 0.1 * wing


def make_crowded(size: int, n: int, seed: int = 2):
    """Image, variance, PSF stamp, positions, fluxes, footprints (parent-frame boxes and flat
    lists) and the blend structure of a crowded tile."""
    rng = np.random.default_rng(seed)
    n_pairs = n // 4
    n_single = n - 2 * n_pairs
    fwhm = 2.3548 * SIGMA * 1.08  # the wing widens the double Gaussian's FWHM a little
    xs = rng.uniform(40, size - 41, n_single + n_pairs)
    ys = rng.uniform(40, size - 41, n_single + n_pairs)
    flux = 10 ** rng.uniform(3, 5, n_single + n_pairs)
    sep = rng.uniform(1, 3, n_pairs) * fwhm
    ang = rng.uniform(0, 2 * math.pi, n_pairs)
    ratio = rng.uniform(1, 20, n_pairs)
    x = np.concatenate([xs, xs[n_single:] + sep * np.cos(ang)])
    y = np.concatenate([ys, ys[n_single:] + sep * np.sin(ang)])
    f = np.concatenate([flux, flux[n_single:] / ratio])
    image = rng.normal(0.0, NOISE, (size, size)).astype(np.float32)
    models = []
    for xi, yi, fi in zip(x, y, f, strict=True):
        cx, cy = int(round(xi)), int(round(yi))
        gy, gx = np.mgrid[cy - STAMP:cy + STAMP + 1, cx - STAMP:cx + STAMP + 1]
        m = fi * _psf(gx - xi, gy - yi)
        image[cy - STAMP:cy + STAMP + 1, cx - STAMP:cx + STAMP + 1] += m.astype(np.float32)
        models.append((cx - STAMP, cy - STAMP, m))
    variance = np.full((size, size), NOISE**2, dtype=np.float32)
    k = 2 * STAMP + 1
    yy, xx = np.mgrid[0:k, 0:k] - STAMP
    psf = _psf(xx.astype(float), yy.astype(float))
    # footprint radius: where the star's profile falls to the noise level, plus 2 pixels
    peak = f * _psf(np.zeros(1), np.zeros(1))
    radius = np.clip(SIGMA * np.sqrt(2 * np.log(np.maximum(peak / NOISE, 1.0))) + 2.0, 4.0,
                     STAMP)
    pair_of = np.full(x.size, -1)
    pair_of[n_single:n_single + n_pairs] = np.arange(n_pairs)
    pair_of[n_single + n_pairs:] = np.arange(n_pairs)
    return image, variance, psf, x, y, f, radius, models, pair_of


def in_band_frame(image, x, y, radius, models, pair_of, ids):
    """The in-band catalog: isolated stars with their observed pixels, each pair a parent with
    its observed pixels and two children sharing them by their true models."""
    import polars as pl
    import pyarrow as pa

    rows = {k: [] for k in ("id", "parent", "x0", "y0", "w", "h")}
    masks, fluxes, has_flux = [], [], []
    parent_base = int(ids.max()) + 1

    def add(oid, parent, x0, y0, mask, values):
        h, w = mask.shape
        for k, v in zip(("id", "parent", "x0", "y0", "w", "h"), (oid, parent, x0, y0, w, h),
                        strict=True):
            rows[k].append(v)
        masks.append(mask.ravel())
        fluxes.append(values.ravel().astype(np.float32) if values is not None
                      else np.zeros(0, np.float32))
        has_flux.append(values is not None)

    def disc(i, x0, y0, h, w):
        gy, gx = np.mgrid[y0:y0 + h, x0:x0 + w]
        return (gx - x[i]) ** 2 + (gy - y[i]) ** 2 <= radius[i] ** 2

    members: dict[int, list[int]] = {}
    for i in range(x.size):
        if pair_of[i] < 0:
            r = int(math.ceil(radius[i]))
            x0, y0 = int(round(x[i])) - r, int(round(y[i])) - r
            m = disc(i, x0, y0, 2 * r + 1, 2 * r + 1)
            add(int(ids[i]), 0, x0, y0, m, np.where(m, image[y0:y0 + 2 * r + 1,
                                                            x0:x0 + 2 * r + 1], 0))
        else:
            members.setdefault(int(pair_of[i]), []).append(i)
    for p, (a, b) in members.items():
        r = int(math.ceil(max(radius[a], radius[b])))
        x0 = int(math.floor(min(x[a], x[b]))) - r
        y0 = int(math.floor(min(y[a], y[b]))) - r
        w = int(math.ceil(max(x[a], x[b]))) + r + 1 - x0
        h = int(math.ceil(max(y[a], y[b]))) + r + 1 - y0
        m = disc(a, x0, y0, h, w) | disc(b, x0, y0, h, w)
        obs = image[y0:y0 + h, x0:x0 + w].astype(np.float64)
        model = []
        for i in (a, b):
            mx0, my0, stamp = models[i]
            box = np.zeros((h, w))
            sy = slice(max(my0 - y0, 0), min(my0 + stamp.shape[0] - y0, h))
            sx = slice(max(mx0 - x0, 0), min(mx0 + stamp.shape[1] - x0, w))
            box[sy, sx] = stamp[sy.start - (my0 - y0):sy.stop - (my0 - y0),
                                sx.start - (mx0 - x0):sx.stop - (mx0 - x0)]
            model.append(box)
        total = model[0] + model[1]
        pid = parent_base + p
        add(pid, 0, x0, y0, m, np.where(m, obs, 0))
        for i, mod in zip((a, b), model, strict=True):
            share = np.divide(mod, total, out=np.zeros_like(mod), where=total > 0)
            add(int(ids[i]), pid, x0, y0, m, np.where(m, obs * share, 0))

    def lists(parts, dtype, valid=None):
        lengths = np.array([p.size for p in parts])
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        values = pa.array(np.concatenate(parts).astype(dtype))
        mask = None if valid is None else pa.array(~np.asarray(valid))
        return pl.Series(pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask))

    return pl.DataFrame({
        "id": np.array(rows["id"], np.int64), "band": "r", "tract": 0, "patch": 0,
        "parent": np.array(rows["parent"], np.int64),
        "footprint_x0": np.array(rows["x0"], np.int64),
        "footprint_y0": np.array(rows["y0"], np.int64),
        "footprint_width": np.array(rows["w"], np.int32),
        "footprint_height": np.array(rows["h"], np.int32),
        "footprint_mask": lists(masks, np.bool_),
        "footprint_flux": lists(fluxes, np.float32),
    })


def build(size: int, n: int):
    """The tile, references, in-band catalog and truth of the crowded scene."""
    import polars as pl
    from astropy.wcs import WCS

    from colphot.tile.psf import PsfModel
    from colphot.tile.tile import Tile

    image, variance, psf, x, y, f, radius, models, pair_of = make_crowded(size, n)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [size / 2, size / 2]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    ra, dec = wcs.pixel_to_world_values(x, y)
    ids = np.arange(1, x.size + 1, dtype=np.int64)
    refs = pl.DataFrame({"id": ids, "coord_ra": ra, "coord_dec": dec,
                         "shape_xx": np.full(x.size, 3.75), "shape_yy": np.full(x.size, 3.75),
                         "shape_xy": np.zeros(x.size)})
    tile = Tile(image=image, mask=np.zeros(image.shape, dtype=np.uint32), variance=variance,
                wcs=wcs, psf=PsfModel.constant(psf), band="r", tract=0, patch=0,
                mask_planes={"BAD": 0, "SAT": 1, "NO_DATA": 8})
    return tile, refs, in_band_frame(image, x, y, radius, models, pair_of, ids), f, pair_of


MODES = ("plain", "deblended", "deblended+undeblended")


def _config(mode: str):
    from colphot.config import ForcedPhotConfig

    return ForcedPhotConfig(undeblended_plugins=("psf_flux", "aperture")
                            if mode == "deblended+undeblended" else ())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--memory-child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        return _memory_child(args.size, args.n, args.memory_child)

    import colphot

    t0 = time.perf_counter()
    tile, refs, in_band, flux, pair_of = build(args.size, args.n)
    print(f"built the scene in {time.perf_counter() - t0:.1f} s: {refs.height} sources, "
          f"{int((pair_of >= 0).sum())} in blends, {in_band.height} in-band rows")
    runs = {}
    for threads in (1, 2):
        for mode in MODES:
            cfg = _config(mode)
            ib = None if mode == "plain" else in_band
            runs[(mode, threads)] = (lambda c=cfg, i=ib, t=threads:
                                     colphot.forced_photometry(tile, refs, c, in_band=i,
                                                               n_threads=t))
    for mode in MODES:  # compile / load the numba caches
        colphot.forced_photometry(tile, refs.head(20), _config(mode),
                                  in_band=None if mode == "plain" else in_band)
    best = dict.fromkeys(runs, math.inf)
    out = {}
    for _ in range(args.repeat):
        for key, fn in runs.items():
            t = time.perf_counter()
            out[key] = fn()
            best[key] = min(best[key], time.perf_counter() - t)
    memory = {mode: _peak_memory(args.size, args.n, mode) for mode in MODES}

    # accuracy on the blended stars, against the truth of the scene
    deb = out[("deblended+undeblended", 1)]
    blended = pair_of >= 0
    isolated = ~blended
    print(f"\nTile {args.size}x{args.size}, {refs.height} sources (half in blended pairs); "
          f"best of {args.repeat} interleaved rounds\n")
    print(f"{'run':24s} {'1 thread s':>11s} {'2 threads s':>12s} {'2T/1T':>7s} "
          f"{'x plain 1T':>11s} {'x plain 2T':>11s} {'peak RSS MB':>12s} {'of which scene':>15s}")
    for mode in MODES:
        t1, t2 = best[(mode, 1)], best[(mode, 2)]
        print(f"{mode:24s} {t1:11.3f} {t2:12.3f} {t1 / t2:7.2f} "
              f"{t1 / best[('plain', 1)]:11.2f} {t2 / best[('plain', 2)]:11.2f} "
              f"{memory[mode][1]:12.0f} {memory[mode][0]:15.0f}")
    same = all(out[(m, 1)].equals(out[(m, 2)]) for m in MODES)
    print(f"\n1- and 2-thread results identical: {same}")
    true = flux[deb["objectId"].to_numpy() - 1]
    for label, col in (("deblended psfFlux", "psfFlux"),
                       ("undeblended_psfFlux", "undeblended_psfFlux")):
        ratio = deb[col].to_numpy() / true
        print(f"median {label}/true: blended stars {np.nanmedian(ratio[blended]):.4f}, "
              f"isolated stars {np.nanmedian(ratio[isolated]):.4f}")
    print("\ntarget (issue 9): deblended at most 1.5x plain, 2-thread scaling as plain")
    for threads in (1, 2):
        r = best[("deblended", threads)] / best[("plain", threads)]
        print(f"  deblended / plain, {threads} thread(s): {r:.2f}  "
              f"{'met' if r <= 1.5 else 'not met'}")


def _memory_child(size: int, n: int, mode: str) -> None:
    import colphot

    tile, refs, in_band, _, _ = build(size, n)
    base = peak_rss_mib()
    colphot.forced_photometry(tile, refs, _config(mode),
                              in_band=None if mode == "plain" else in_band)
    print(base, peak_rss_mib())


def _peak_memory(size: int, n: int, mode: str) -> tuple[float, float]:
    """Peak RSS, MiB, of a fresh process after building the scene and after measuring it."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--memory-child", mode, "--size", str(size),
         "--n", str(n)], capture_output=True, text=True, check=True,
    )
    scene, total = out.stdout.strip().splitlines()[-1].split()
    return float(scene), float(total)


if __name__ == "__main__":
    main()
