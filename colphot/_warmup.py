"""Compile the measurement kernels once per machine, split over processes.

The numba kernels are compiled on first use and cached on disk (``cache=True``: beside the
sources, or in ``NUMBA_CACHE_DIR``, or numba's user cache directory), so any later process on the
machine loads them in under a second. From an empty cache, compiling them all takes about 13 s
of one core, and the compiler runs one function at a time per process; worker processes started
together would each compile everything. :class:`WarmUp` instead compiles disjoint groups of the
kernels in parallel processes, each by measuring a tiny simulated tile exactly as a survey tile
is read (float32 pixels, uint32 mask), and returns once the cache holds them all.
:func:`colphot.run` does this before its own cluster measures anything; ``colphot warmup``
does it on demand (a ``RUN`` step of a container image, a cluster's setup).

``COLPHOT_WARMUP=0`` in the environment turns the automatic warm-up off.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

__all__ = ["GROUPS", "WarmUp", "cache_location", "compile_group", "is_cached", "prebuild",
           "warm_up"]

#: ``(plugins, deblended)`` of each warm-up process, balanced by compile time (about 6-7 s each
#: on one core here): disjoint sets of kernels, so that two processes halve the wall time.
GROUPS: tuple[tuple[tuple[str, ...], bool], ...] = (
    (("centroid", "psf_flux", "aperture"), False),
    (("centroid", "gaussian_flux", "local_background", "pixel_flags"), True),
)


def _kernels() -> tuple[Any, ...]:
    """The top-level numba dispatchers a tile's measurement calls."""
    from colphot.measure import (
        _sinc,
        adaptive_moments,
        aperture,
        footprints,
        gaussian_flux,
        local_background,
        pixel_flags,
        psf_flux,
    )

    return (aperture._apertures_kernel, _sinc.sinc_apertures, psf_flux._psf_flux_kernel,
            gaussian_flux._gaussian_kernel, local_background._background_kernel,
            local_background._meanclip, pixel_flags._pixel_flags_kernel, footprints._clip_kernel,
            footprints._mark_kernel, footprints._mask_bits_kernel,
            adaptive_moments._adaptive_kernel)


def is_cached() -> bool:
    """True when numba's cache holds an index for every top-level kernel.

    Reads numba's private cache attributes; when they are not there (another numba), it says
    False, and a warm-up then costs about a second of loading the cache.
    """
    try:
        return all(os.path.exists(k._cache._cache_file._index_path) for k in _kernels())
    except AttributeError:
        return False


def cache_location() -> str | None:
    """The folder numba caches colphot's kernels in, or None when unknown."""
    try:
        return str(_kernels()[0]._cache._cache_path)
    except AttributeError:
        return None


def compile_group(i: int) -> None:
    """Measure a tiny simulated tile with the plugins of :data:`GROUPS` ``[i]``."""
    import colphot
    from colphot.config import ForcedPhotConfig
    from colphot.runner.refs import select_refs
    from colphot.sim import make_survey
    from colphot.tile.fits import read_tile

    plugins, deblended = GROUPS[i]
    with tempfile.TemporaryDirectory(prefix="colphot-warmup-") as d:
        info = make_survey(d, bands=("g",), n_patches=1, patch_size=256, overlap=0,
                           n_stars=20, n_galaxies=20, n_blends=2)
        tile = read_tile(info.tile_paths[0])
        refs = select_refs(info.refs_root, tile.wcs, tile.shape)
        colphot.forced_photometry(tile, refs, ForcedPhotConfig(plugins=plugins),
                                  in_band=info.in_band_root if deblended else None)


class WarmUp:
    """A warm-up started in the background; :meth:`wait` for it.

    Does nothing when the cache is already filled, when ``n_jobs`` (default: the CPU count) is
    below 2 (the first tile then compiles, as fast as a warm-up could) or when
    ``COLPHOT_WARMUP=0``. A warm-up that fails costs nothing but time: the first tile compiles.
    """

    def __init__(self, n_jobs: int | None = None) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._futures: list[Future[None]] = []
        n = min(n_jobs or os.cpu_count() or 1, os.cpu_count() or 1, len(GROUPS))
        if n < 2 or os.environ.get("COLPHOT_WARMUP", "1") == "0" or is_cached():
            return
        self._pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
        self._futures = [self._pool.submit(compile_group, i) for i in range(len(GROUPS))]

    def wait(self) -> None:
        """Block until the warm-up processes are done (at once when there are none)."""
        if self._pool is None:
            return
        try:
            for f in self._futures:
                f.result()
        except Exception:  # noqa: BLE001 -- the first tile compiles instead
            pass
        finally:
            self._pool.shutdown()
            self._pool = None


def warm_up(n_jobs: int | None = None) -> float:
    """Fill numba's cache with every kernel, ``n_jobs`` processes at a time; seconds taken.

    Unlike :class:`WarmUp` it also runs with one job (in this process) and lets errors out.
    """
    t0 = time.perf_counter()
    n = min(n_jobs or os.cpu_count() or 1, len(GROUPS))
    if n < 2:
        for i in range(len(GROUPS)):
            compile_group(i)
    else:
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
            for f in [pool.submit(compile_group, i) for i in range(len(GROUPS))]:
                f.result()
    return time.perf_counter() - t0


def prebuild(build_lib: str, n_jobs: int = 2) -> tuple[float, int]:
    """Compile every kernel for this machine into the package being built under
    ``build_lib``: numba cache files in ``colphot/measure/_prebuilt``, which the installed
    package copies into numba's cache location on import (:mod:`colphot.measure`).

    The warm-up runs in a new process that imports ``build_lib``'s colphot with an empty,
    temporary ``NUMBA_CACHE_DIR``; ``n_jobs`` processes share the work. numba keys the files
    by the sources' content hash, its version and the CPU, so they serve exactly the installs
    built on this machine with this numba. Returns ``(seconds, files written)``; raises when
    the warm-up fails (the build then goes on without prebuilt kernels).
    """
    import shutil
    import subprocess
    import sys

    t0 = time.perf_counter()
    build_lib = os.path.abspath(build_lib)
    out = os.path.join(build_lib, "colphot", "measure", "_prebuilt")
    shutil.rmtree(out, ignore_errors=True)  # a reused build folder: no stale kernels
    with tempfile.TemporaryDirectory(prefix="colphot-prebuild-") as d:
        cache = os.path.join(d, "cache")
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
        # build_lib first; pip's build isolation reaches its build requirements through the
        # PYTHONPATH it set (a sitecustomize), which must stay
        path = os.pathsep.join(p for p in (build_lib, os.environ.get("PYTHONPATH")) if p)
        env.update(NUMBA_CACHE_DIR=cache, PYTHONPATH=path, COLPHOT_WARMUP="0",
                   COLPHOT_PREBUILT="0")
        subprocess.run([sys.executable, "-c",
                        f"from colphot._warmup import warm_up; warm_up({int(n_jobs)})"],
                       env=env, cwd=d, check=True, timeout=1800)
        folders = [os.path.join(cache, f) for f in os.listdir(cache) if f.startswith("measure_")]
        if len(folders) != 1:
            raise RuntimeError(f"expected one numba cache folder of colphot.measure in {cache}, "
                               f"found {sorted(os.listdir(cache))}")
        os.makedirs(out, exist_ok=True)
        names = [n for n in os.listdir(folders[0]) if n.endswith((".nbi", ".nbc"))]
        for name in names:
            shutil.copyfile(os.path.join(folders[0], name), os.path.join(out, name))
    return time.perf_counter() - t0, len(names)
