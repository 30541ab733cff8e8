"""Two-thread scaling of the kernels on one tile, next to what this machine itself scales.

Run: ``python benchmarks/bench_threads.py [--size 4096] [--n 10000] [--rounds 10]``

``bench_tile.py`` times one thread and two threads in separate calls; on a shared VM their
ratio moves by +-20 % from run to run. Here each round times the two halves of the sources one
after the other on one thread, then both at once on two threads (each thread its own half, as
when a tile is split between two threads or Dask workers), then both threads on the *same*
half (same pixels, shared cache). The minimum over the rounds of each is printed, next to two
probes of the machine: a compute-bound loop and a DRAM-streaming loop on two threads.

If the kernels scale on the same half but less on different halves, the limit is the memory
system the two cores share, not the GIL or the code.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@njit(nogil=True, fastmath=True, cache=True)
def _compute(a: np.ndarray, reps: int) -> float:
    s = np.zeros_like(a)
    for _ in range(reps):
        for i in range(a.shape[0]):
            s[i] = s[i] * 0.999 + a[i]
    return s.sum()


@njit(nogil=True, fastmath={"reassoc"}, cache=True)
def _stream(a: np.ndarray, reps: int) -> float:
    s = 0.0
    for _ in range(reps):
        for i in range(a.shape[0]):
            s += a[i]
    return s


def _scaling(first: Callable[[], object], second: Callable[[], object],
             rounds: int, pool: ThreadPoolExecutor) -> tuple[float, float]:
    """(one thread, two threads) minimum wall times, seconds, of running both callables."""
    one = two = np.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        first()
        second()
        t1 = time.perf_counter()
        list(pool.map(lambda f: f(), [first, second]))
        t2 = time.perf_counter()
        one, two = min(one, t1 - t0), min(two, t2 - t1)
    return one, two


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)

    from bench_tile import RADII, ordered_scene

    from colphot.measure.aperture import measure_apertures
    from colphot.measure.psf_flux import measure_psf_flux

    image, variance, psf, x, y = ordered_scene(args.size, args.n)
    n = x.size
    idx = np.zeros((n, 1), dtype=np.int64)
    wts = np.ones((n, 1))
    halves = (slice(0, n // 2), slice(n // 2, n))

    def aperture(s: slice) -> Callable[[], object]:
        return lambda: measure_apertures(image, variance, x[s], y[s], RADII)

    def psf_flux(s: slice) -> Callable[[], object]:
        return lambda: measure_psf_flux(image, variance, None, x[s], y[s], psf[None], idx[s],
                                        wts[s])

    small = np.ones(2048)
    big = [np.ones(40_000_000, dtype=np.float32) for _ in range(2)]
    _compute(small, 1)
    _stream(big[0], 1)
    rows = []
    with ThreadPoolExecutor(2) as pool:
        for name, make in (("10 exact apertures", aperture), ("PSF flux", psf_flux)):
            make(slice(0, 10))()  # compile / load the numba cache
            one, two = _scaling(make(halves[0]), make(halves[1]), args.rounds, pool)
            rows.append((f"{name}, each thread its own half", one, two))
            one, two = _scaling(make(halves[0]), make(halves[0]), args.rounds, pool)
            rows.append((f"{name}, both threads the same half", one, two))
        one, two = _scaling(lambda: _compute(small, 100_000), lambda: _compute(small, 100_000),
                            args.rounds, pool)
        rows.append(("machine: compute-bound loop (L1)", one, two))
        one, two = _scaling(lambda: _stream(big[0], 2), lambda: _stream(big[1], 2),
                            args.rounds, pool)
        rows.append(("machine: streaming 160 MB arrays (DRAM)", one, two))

    print(f"\nTile {args.size}x{args.size}, {n} sources; minimum of {args.rounds} rounds\n")
    print(f"{'work (two halves)':46s} {'1 thread':>10s} {'2 threads':>10s} {'scaling':>8s}")
    for name, one, two in rows:
        print(f"{name:46s} {one * 1e3:8.1f}ms {two * 1e3:8.1f}ms {one / two:7.2f}x")


if __name__ == "__main__":
    main()
