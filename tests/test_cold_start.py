"""Cold start: numba's kernel cache, filled once per machine, usable from a read-only install.

Each test runs fresh Python processes with their own empty ``NUMBA_CACHE_DIR`` (or none), so
what they see is what a new machine, container or cluster worker sees.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Measures one tile of a tiny simulated survey with the given config and prints, per kernel,
#: how many signatures were compiled and how many came from the cache.
MEASURE = r"""
import json, sys, tempfile
import colphot
from colphot import _warmup
from colphot.config import ForcedPhotConfig
from colphot.runner.refs import select_refs
from colphot.sim import make_survey
from colphot.tile.fits import read_tile

deblended = sys.argv[1] == "deblended"
with tempfile.TemporaryDirectory() as d:
    info = make_survey(d, bands=("r",), n_patches=1, patch_size=300, overlap=0, n_stars=30,
                       n_galaxies=30, n_blends=3, seed=5)
    tile = read_tile(info.tile_paths[0])
    refs = select_refs(info.refs_root, tile.wcs, tile.shape)
    df = colphot.forced_photometry(tile, refs, ForcedPhotConfig(),
                                   in_band=info.in_band_root if deblended else None)
stats = {k.py_func.__qualname__: [sum(k.stats.cache_misses.values()),
                                  sum(k.stats.cache_hits.values())] for k in _warmup._kernels()}
print(json.dumps({"rows": df.height, "stats": stats}))
"""


def _env(**values: str | None) -> dict[str, str]:
    """The environment of a fresh process: no numba settings and, unless asked for, no
    prebuilt kernels (an installed wheel has them: these tests are about compiling)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.pop("COLPHOT_WARMUP", None)
    env["COLPHOT_PREBUILT"] = "0"
    for key, value in values.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _python(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_warmup_compiles_once_and_later_processes_compile_nothing(tmp_path):
    """``colphot warmup`` (2 processes) fills an empty cache; a later process measuring a tile,
    plain or deblended, loads every kernel from it and compiles none."""
    env = _env(NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    done = _python(["-m", "colphot.cli", "warmup", "-j", "2"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "compiled the kernels" in done.stdout
    assert str(tmp_path / "cache") in done.stdout
    again = _python(["-m", "colphot.cli", "warmup"], env, tmp_path)
    assert "already compiled" in again.stdout
    for mode in ("plain", "deblended"):
        out = _python(["-c", MEASURE, mode], env, tmp_path)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["rows"] > 0
        used = {name: s for name, s in result["stats"].items() if sum(s) > 0}
        assert "_psf_flux_kernel" in used and "_apertures_kernel" in used
        if mode == "deblended":
            assert "_meanclip" in used
        compiled = {name: s[0] for name, s in used.items() if s[0] > 0}
        assert not compiled, f"{mode}: compiled after the warm-up: {compiled}"


def _package_copy(root: Path) -> Path:
    """``root/colphot``: the package as an install lays it out (catalogs inside), no caches."""
    shutil.copytree(REPO / "colphot", root / "colphot",
                    ignore=shutil.ignore_patterns("__pycache__", "_prebuilt"))
    shutil.copytree(REPO / "catalogs", root / "colphot" / "catalogs")
    return root


@pytest.mark.slow
def test_prebuilt_kernels_serve_a_fresh_install_with_an_empty_cache(tmp_path):
    """What ``pip install .`` does (setup.py's build hook): prebuild compiles the kernels into
    the package being built; a new process of that install, with an empty NUMBA_CACHE_DIR as on
    a fresh machine, measures a tile, plain and deblended, compiling nothing: the kernels are
    copied from the package into the cache and loaded."""
    from colphot._warmup import prebuild

    build_lib = _package_copy(tmp_path / "build")
    seconds, n_files = prebuild(str(build_lib), n_jobs=2)
    prebuilt = build_lib / "colphot" / "measure" / "_prebuilt"
    assert n_files == len(list(prebuilt.iterdir())) > 10
    site = tmp_path / "site"  # the install: a copy elsewhere (the cache must not be path-bound)
    shutil.copytree(build_lib, site)
    from numba.core.caching import _CacheLocator

    for mode in ("plain", "deblended"):
        cache = tmp_path / f"cache-{mode}"
        if mode == "deblended":
            # an older install's index left where numba looks: replaced, not trusted
            where = cache / _CacheLocator.get_suitable_cache_subpath(
                str(site / "colphot" / "measure" / "__init__.py"))
            where.mkdir(parents=True)
            stale = next(n.name for n in prebuilt.iterdir() if "_psf_flux_kernel" in n.name
                         and n.suffix == ".nbi")
            (where / stale).write_bytes(b"not an index")
        env = _env(PYTHONPATH=str(site), NUMBA_CACHE_DIR=str(cache), COLPHOT_PREBUILT="1")
        out = _python(["-c", MEASURE, mode], env, tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        used = {name: s for name, s in result["stats"].items() if sum(s) > 0}
        assert "_psf_flux_kernel" in used and "sinc_apertures" in used
        compiled = {name: s[0] for name, s in used.items() if s[0] > 0}
        assert not compiled, f"{mode}: compiled despite the prebuilt kernels: {compiled}"
        assert any(cache.rglob("*.nbi"))  # seeded, where numba looks


def test_read_only_install_without_a_writable_home_still_imports_and_caches(tmp_path):
    """numba caches beside the sources or in the user's cache folder; with neither writable,
    it refused to define the kernels and colphot could not be imported. Here neither can be
    created (each path runs through a regular file, which even root cannot write into)."""
    pkg = tmp_path / "site"
    shutil.copytree(REPO / "colphot", pkg / "colphot",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for folder in list((pkg / "colphot").rglob("*")):
        if folder.is_dir():
            (folder / "__pycache__").write_text("")  # not a folder: numba cannot cache here
    (pkg / "colphot" / "__pycache__").write_text("")
    blocker = tmp_path / "file"
    blocker.write_text("")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = _env(PYTHONPATH=str(pkg), HOME=str(blocker / "home"), XDG_CACHE_HOME=None,
               TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1")
    code = (
        "import numpy as np, numba\n"
        "import colphot\n"
        "from colphot.measure.psf_flux import measure_psf_flux\n"
        f"assert colphot.__file__.startswith({str(pkg)!r}), colphot.__file__\n"
        "image = np.zeros((41, 41)); image[20, 20] = 7.0\n"
        "res = measure_psf_flux(image, np.ones_like(image), None, np.array([20.0]),\n"
        "                       np.array([20.0]), np.ones((1, 1, 1)), np.zeros((1, 1), int),\n"
        "                       np.ones((1, 1)))\n"
        "print(numba.config.CACHE_DIR, res.flux[0])\n"
    )
    first = _python(["-c", code], env, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    cache_dir, flux = first.stdout.split()
    assert float(flux) == pytest.approx(7.0)
    assert Path(cache_dir).parent == tmp
    assert any(Path(cache_dir).rglob("*.nbi")), "nothing was cached"
