"""Downstream exports: time and peak memory of the Object table and the HATS catalog.

Run: ``python benchmarks/bench_downstream.py [--scale 1 10] [--keep DIR]``

For each scale, the demo survey (3 bands, 2 x 2 patches, ~2,200 objects) and a survey ``scale``
times larger in area and objects (more patches, the same density) are simulated and measured
with ``colphot run``; then, each in a fresh process, ``colphot.object_table`` and, when the
``[hats]`` extra is installed, ``colphot.export.hats.to_hats`` of the Object table. Printed:
rows, wall time and the peak resident memory of the exporting process (its Dask workers
excluded), side by side for the scales, so that growth with the survey size shows.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, sys, time


def main():
    sys.path.insert(0, sys.argv[1])
    from _memory import peak_rss_mib

    what, src, dst = sys.argv[2:5]
    t = time.perf_counter()
    if what == "objects":
        from colphot.objects import object_table
        rows = sum(object_table(src, dst, refs=sys.argv[5])["rows"].values())
    else:
        from colphot.export.hats import to_hats
        to_hats(src, dst, n_workers=2)
        rows = None
    print(json.dumps({"seconds": time.perf_counter() - t, "peak_mib": peak_rss_mib(),
                      "rows": rows}))


if __name__ == "__main__":  # the export's Dask workers are spawned processes
    main()
"""


def child(what: str, src: str, dst: str, refs: str = "") -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(CHILD)
    try:
        out = subprocess.run([sys.executable, f.name, os.path.dirname(os.path.abspath(__file__)),
                              what, src, dst, refs], check=True, capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    args = parser.parse_args()
    import colphot
    from colphot.sim import make_survey

    work = Path(args.keep or tempfile.mkdtemp(prefix="colphot-downstream-"))
    try:
        import colphot.export.hats  # noqa: F401
        has_hats = True
    except ImportError:
        has_hats = False
    results = []
    for scale in args.scale:
        side = max(2, round(2 * math.sqrt(scale)))
        n = side * side / 4  # patches relative to the demo's 2 x 2
        t = time.perf_counter()
        info = make_survey(work / f"survey-{scale}", n_patches=(side, side),
                           n_stars=round(800 * n), n_galaxies=round(1200 * n),
                           n_blends=round(60 * n))
        colphot.run(info.tiles_template, info.refs_root, work / f"forced-{scale}",
                    n_workers=2, progress=False, clobber=True)
        setup = time.perf_counter() - t
        obj = child("objects", str(work / f"forced-{scale}"), str(work / f"objects-{scale}"),
                    info.refs_root)
        row = {"scale": f"{scale}x ({side}x{side} patches)", "objects": obj["rows"],
               "setup_s": setup, "objects_s": obj["seconds"], "objects_mib": obj["peak_mib"]}
        if has_hats:
            h = child("hats", str(work / f"objects-{scale}"), str(work / f"hats-{scale}"))
            row.update(hats_s=h["seconds"], hats_mib=h["peak_mib"])
        results.append(row)
        print(json.dumps(row), flush=True)
    print()
    head = ["survey", "objects", "Object table s", "peak MiB", "HATS s", "peak MiB"]
    print("".join(f"{h:<24}" for h in head))
    for r in results:
        cells = [r["scale"], str(r["objects"]), f"{r['objects_s']:.2f}",
                 f"{r['objects_mib']:.0f}", f"{r.get('hats_s', float('nan')):.2f}",
                 f"{r.get('hats_mib', float('nan')):.0f}"]
        print("".join(f"{c:<24}" for c in cells))


if __name__ == "__main__":
    main()
