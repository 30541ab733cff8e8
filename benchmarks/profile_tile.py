"""Where forced photometry's time goes on the benchmark tile: a py-spy profile by stage.

Run: ``python benchmarks/profile_tile.py [--size 4096] [--n 10000] [--repeat 8]``

Samples ``colphot.forced_photometry`` (full default plugin set) with py-spy (``pip install
.[bench]``) and prints the share of samples per function called from it, numba compilation and
cache loading left out. Numba kernels show as the Python line that calls them, which is the
granularity wanted here; inside a kernel, time the parts by A/B runs.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _child(size: int, n: int, repeat: int) -> None:
    from bench_tile import _tile_and_refs, make_scene

    import colphot

    image, variance, psf, x, y = make_scene(size, n)
    tile, refs = _tile_and_refs(image, variance, psf, x, y)
    colphot.forced_photometry(tile, refs.head(10))  # compile / load the numba cache
    t0 = time.perf_counter()
    for _ in range(repeat):
        colphot.forced_photometry(tile, refs)
    dt = (time.perf_counter() - t0) / repeat
    print(f"forced_photometry: {n / dt:,.0f} sources/s ({dt / n * 1e6:.1f} us per source)")


def summarise(raw: str) -> list[tuple[str, float]]:
    """Share of py-spy ``raw`` samples per function called by ``forced_photometry``/``_measure``."""
    total = 0
    by: collections.Counter[str] = collections.Counter()
    with open(raw) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            if not any(fr.startswith("forced_photometry ") for fr in frames):
                continue
            if any("compile" in fr.lower() for fr in frames):
                continue
            key = "forced_photometry (own)"
            for i, fr in enumerate(frames):
                if fr.startswith(("_measure ", "forced_photometry ")) and i + 1 < len(frames):
                    key = frames[i + 1].split(" (")[0]
            by[key] += int(count)
            total += int(count)
    return [(k, v / total) for k, v in by.most_common()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.size, args.n, args.repeat)
    spy = shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy not found: pip install '.[bench]'")
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "profile.txt")
        cmd = [spy, "record", "-r", "200", "-f", "raw", "-o", raw, "--", sys.executable,
               os.path.abspath(__file__), "--child", "--size", str(args.size), "--n",
               str(args.n), "--repeat", str(args.repeat)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        print(out.stdout.strip())
        rows = summarise(raw)
    print(f"\n{'stage (function called by forced_photometry)':48s} {'share':>7s}")
    for name, share in rows:
        if share >= 0.002:
            print(f"{name:48s} {100 * share:6.1f}%")


if __name__ == "__main__":
    main()
