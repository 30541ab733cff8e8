"""3. Measurement kernels at fixed positions: arrays in, arrays out (numpy and numba only)."""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile

import numba

#: Kernels compiled when the package was built (``pip install .``: setup.py runs
#: :func:`colphot._warmup.prebuild`), numba cache files that :func:`_seed_cache` copies into
#: numba's cache location on import.
PREBUILT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_prebuilt")


def _probe() -> None:
    """A function numba is asked to cache, to learn whether it can cache this folder's."""


def _ensure_cache_location() -> None:
    """Give numba somewhere to cache the kernels.

    numba caches compiled kernels beside their sources or, where that is not writable, in its
    user cache directory; with neither (a read-only install and no writable home, as in many
    containers) it refuses to define them and colphot could not be imported. Then the cache goes
    to ``<tmp>/colphot-numba-<uid>``, shared by the processes of that user on the machine.
    """
    try:
        numba.njit(cache=True)(_probe)
    except RuntimeError:
        uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
        numba.config.CACHE_DIR = os.path.join(tempfile.gettempdir(), f"colphot-numba-{uid}")


def _index_key(path: str) -> object:
    """numba's version and source stamp recorded in a cache index (``None`` if unreadable)."""
    try:
        with open(path, "rb") as f:
            version = pickle.load(f)
            stamp = pickle.loads(f.read())[0]
        return version, stamp
    except Exception:  # noqa: BLE001 -- any unreadable index is as good as none
        return None


def _seed_cache() -> None:
    """Copy the prebuilt kernels (:data:`PREBUILT`) into the folder numba caches this
    package's kernels in (beside the sources, ``NUMBA_CACHE_DIR``, the user cache or the
    temporary fallback).

    Kernel by kernel: an index already there for the same sources and numba is kept (it may
    hold more specialisations than the prebuilt one); a missing, unreadable or stale one (an
    older install's) is replaced with the prebuilt index and its data files, data first, each
    by an atomic rename, so that a process starting at the same time never sees an index
    without its data. numba still checks every index against the sources' content hash, its
    version and the CPU, so files built for another machine or release are ignored and the
    kernels compile as without them. ``COLPHOT_PREBUILT=0`` turns the copy off.
    """
    if os.environ.get("COLPHOT_PREBUILT", "1") == "0" or not os.path.isdir(PREBUILT):
        return
    try:
        target = numba.njit(cache=True)(_probe)._cache._cache_path
        names = os.listdir(PREBUILT)
        os.makedirs(target, exist_ok=True)
        for index in (n for n in names if n.endswith(".nbi")):
            here = os.path.join(target, index)
            key = _index_key(os.path.join(PREBUILT, index))
            if key is None or (os.path.exists(here) and _index_key(here) == key):
                continue
            stem = index[:-len("nbi")]
            for name in [n for n in names if n.startswith(stem) and n.endswith(".nbc")] + [index]:
                fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{name}.")
                os.close(fd)
                shutil.copyfile(os.path.join(PREBUILT, name), tmp)
                os.replace(tmp, os.path.join(target, name))
    except (AttributeError, OSError, RuntimeError):
        return  # numba's internals moved, or nowhere to write: the kernels compile on use


_ensure_cache_location()
_seed_cache()
