"""3. Measurement kernels at fixed positions: arrays in, arrays out (numpy and numba only)."""

from __future__ import annotations

import os
import tempfile

import numba


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


_ensure_cache_location()
