"""Cold start: the first tile and the demo from an empty numba cache, against sep and photutils.

Run: ``python benchmarks/bench_cold_start.py [--repo PATH]``

Every figure comes from a fresh Python process whose ``NUMBA_CACHE_DIR`` is a new empty folder
(``--repo`` measures another checkout of colphot, put first on ``PYTHONPATH``, for a
before/after). Printed side by side:

- ``import``: seconds to import what a tile's measurement needs (``colphot.table.forced``;
  sep; photutils.aperture);
- ``first tile``: seconds from the import to the first tile's result, the tile read from its
  FITS file (colphot: ``read_tile``, the references on it, ``forced_photometry`` with the
  default plugins; sep: ``sum_circle`` at the same positions and radii; photutils:
  ``aperture_photometry``), and ``second tile`` for the next tile in the same process;
- the same for colphot after ``colphot warmup`` filled the cache (its own time printed), and
  with the cache left by an earlier process (what every later process on the machine sees);
- ``colphot demo`` and ``colphot run --workers 2`` (worker processes) on the demo survey;
- the same first tile and demo from a wheel of the checkout (``pip wheel``, which compiles the
  kernels for this machine into the package: setup.py), installed into a fresh folder, again
  with an empty ``NUMBA_CACHE_DIR``; and the time ``pip wheel`` took (``--no-wheel`` skips).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TILE_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
kind = sys.argv[1]
if kind == "colphot":
    import colphot.table.forced
    import colphot
    from colphot.runner.refs import select_refs
    from colphot.tile.fits import read_tile
elif kind == "sep":
    import sep
    from astropy.io import fits
else:
    import photutils.aperture
    from astropy.io import fits
t_import = time.perf_counter() - t0
refs_root, paths = sys.argv[2], sys.argv[3:]
times = []
import numpy as np
import polars as pl
for path in paths:
    t = time.perf_counter()
    if kind == "colphot":
        tile = read_tile(path)
        refs = select_refs(refs_root, tile.wcs, tile.shape)
        n = colphot.forced_photometry(tile, refs).height
    else:
        with fits.open(path) as hdul:
            image = np.ascontiguousarray(hdul[1].data, dtype=np.float64)
            from astropy.wcs import WCS
            wcs = WCS(hdul[1].header)
        refs = pl.read_parquet(refs_root + "/**/*.parquet")
        x, y = wcs.all_world2pix(refs["coord_ra"].to_numpy(), refs["coord_dec"].to_numpy(), 0)
        on = (x > 0) & (y > 0) & (x < image.shape[1] - 1) & (y < image.shape[0] - 1)
        x, y = x[on], y[on]
        radii = [3.0, 4.5, 6.0, 9.0, 12.0, 17.0, 25.0, 35.0, 50.0, 70.0]
        if kind == "sep":
            for r in radii:
                sep.sum_circle(image, x, y, r, subpix=0)
        else:
            photutils.aperture.aperture_photometry(
                image, [photutils.aperture.CircularAperture(np.c_[x, y], r) for r in radii])
        n = x.size
    times.append(time.perf_counter() - t)
print(json.dumps({"import": t_import, "tiles": times, "n": n}))
"""


def run_python(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Run Python in ``cwd``, away from any checkout (``-m`` puts the working directory first
    on ``sys.path``, before ``PYTHONPATH``)."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, *args], env=env, check=True, capture_output=True,
                         text=True, cwd=cwd)
    return time.perf_counter() - t, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]),
                        help="colphot checkout to measure (default: this one)")
    parser.add_argument("--no-wheel", action="store_true",
                        help="skip the rows of a wheel install (building it takes minutes)")
    args = parser.parse_args()
    repo = str(Path(args.repo).resolve())
    work = Path(tempfile.mkdtemp(prefix="colphot-cold-"))

    def env(cache: str | None = None, root: str = repo, **extra: str) -> dict[str, str]:
        e = dict(os.environ, PYTHONPATH=root, **extra)
        e["NUMBA_CACHE_DIR"] = cache or tempfile.mkdtemp(dir=work, prefix="numba-")
        return e

    # the demo survey (its tiles are the benchmark's tiles)
    run_python(["-c", "import sys; from colphot.sim import make_survey; "
                "make_survey(sys.argv[1])", str(work / "survey")], env(), work)
    survey = work / "survey"
    tiles = sorted(str(p) for p in (survey / "tiles").rglob("*.fits"))[:2]
    refs_root = str(survey / "refs")
    if not tiles or not Path(refs_root).exists():
        raise SystemExit(f"no demo survey tiles under {survey}")
    script = work / "tile.py"
    script.write_text(TILE_SCRIPT)

    rows: list[tuple[str, str, str, str]] = []

    def tile_row(label: str, kind: str, e: dict[str, str]) -> None:
        _, out = run_python([str(script), kind, refs_root, *tiles], e, work)
        r = json.loads(out.strip().splitlines()[-1])
        rows.append((label, f"{r['import']:.2f}", f"{r['tiles'][0]:.2f}", f"{r['tiles'][1]:.2f}"))

    tile_row("colphot, empty cache", "colphot", env())
    has_warmup = (Path(repo) / "colphot" / "_warmup.py").exists()
    if has_warmup:
        cache = tempfile.mkdtemp(dir=work, prefix="numba-")
        t, _ = run_python(["-m", "colphot.cli", "warmup", "-j", "2"], env(cache), work)
        rows.append(("colphot warmup -j 2, empty cache", "", f"{t:.2f} (whole command)", ""))
        tile_row("colphot after colphot warmup", "colphot", env(cache))
    cache = tempfile.mkdtemp(dir=work, prefix="numba-")
    run_python([str(script), "colphot", refs_root, *tiles], env(cache), work)
    tile_row("colphot, cache of an earlier run", "colphot", env(cache))
    tile_row("sep (10 apertures)", "sep", env())
    tile_row("photutils (10 apertures)", "photutils", env())

    for label, cmd, warm in (
        ("colphot demo, empty cache", ["demo", "--out", str(work / "demo")], False),
        ("colphot demo, warm cache", ["demo", "--out", str(work / "demo")], True),
        ("colphot run --workers 2, empty cache",
         ["run", "--tiles", str(survey / "tiles" / "{band}" / "{tract}" / "{patch}.fits"),
          "--refs", refs_root, "--out", str(work / "run"), "--workers", "2", "--clobber"],
         False),
    ):
        cache = tempfile.mkdtemp(dir=work, prefix="numba-")
        if warm:
            run_python(["-m", "colphot.cli", *cmd], env(cache), work)
        t, _ = run_python(["-m", "colphot.cli", *cmd], env(cache), work)
        rows.append((label, "", f"{t:.2f} (whole command)", ""))

    if not args.no_wheel:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pip", "wheel", repo, "--no-deps", "-q", "-w",
                        str(work / "wheel")], check=True, cwd=work)
        built = time.perf_counter() - t
        rows.append(("pip wheel (compiles the kernels)", "", f"{built:.2f} (whole command)", ""))
        wheel = next((work / "wheel").glob("colphot-*.whl"))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                        str(work / "site"), str(wheel)], check=True, cwd=work)
        site = str(work / "site")
        tile_row("colphot wheel install, empty cache", "colphot", env(root=site))
        cache = tempfile.mkdtemp(dir=work, prefix="numba-")
        t, _ = run_python(["-m", "colphot.cli", "demo", "--out", str(work / "demo-wheel")],
                          env(cache, root=site), work)
        rows.append(("colphot demo, wheel install, empty cache", "", f"{t:.2f} (whole command)",
                     ""))

    probe = "import colphot; print(colphot.__file__)"
    where = run_python(["-c", probe], env(), work)[1].strip()
    print(f"colphot from {where}; {os.cpu_count()} cores; every row a fresh process, seconds")
    widths = (40, 8, 24, 12)
    head = ("", "import", "first tile", "second tile")
    print("".join(f"{h:<{w}}" for h, w in zip(head, widths, strict=True)))
    for row in rows:
        print("".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
