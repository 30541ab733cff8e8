"""Peak resident memory of the calling process, for the benchmarks."""

from __future__ import annotations

import resource


def peak_rss_mib() -> float:
    """This process's peak resident size, MiB.

    ``VmHWM`` from ``/proc/self/status`` (Linux) starts afresh at exec, so a spawned child or
    Dask worker reports its own pages; ``ru_maxrss`` (the fallback elsewhere) keeps the
    parent's peak across the spawn.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
