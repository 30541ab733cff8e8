"""3. Measurement kernels at fixed positions: arrays in, arrays out (numpy and numba only)."""

from __future__ import annotations

import os
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


def _seed_cache() -> None:
    """Copy the prebuilt kernels (:data:`PREBUILT`) into the folder numba caches this
    package's kernels in (beside the sources, ``NUMBA_CACHE_DIR``, the user cache or the
    temporary fallback), where they are not there yet.

    A cache file that already exists is kept (it may hold more specialisations than the
    prebuilt one). numba checks each index against the sources' content hash, its own version
    and the CPU, so files built for another machine or release are ignored and the kernels
    compile as without them. Data files are copied before indices, each by an atomic rename, so
    that a process starting at the same time never sees an index without its data.
    ``COLPHOT_PREBUILT=0`` turns the copy off.
    """
    if os.environ.get("COLPHOT_PREBUILT", "1") == "0" or not os.path.isdir(PREBUILT):
        return
    try:
        target = numba.njit(cache=True)(_probe)._cache._cache_path
        names = sorted(os.listdir(PREBUILT), key=lambda n: (n.endswith(".nbi"), n))
        os.makedirs(target, exist_ok=True)
        for name in names:
            dst = os.path.join(target, name)
            if os.path.exists(dst):
                continue
            tmp = f"{dst}.{os.getpid()}.tmp"
            shutil.copyfile(os.path.join(PREBUILT, name), tmp)
            os.replace(tmp, dst)
    except (AttributeError, OSError, RuntimeError):
        return  # numba's internals moved, or nowhere to write: the kernels compile on use


_ensure_cache_location()
_seed_cache()
