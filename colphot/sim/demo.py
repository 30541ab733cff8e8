"""``colphot demo``: simulate a survey, measure every tile, compare with the truth."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl

from colphot.config import ForcedPhotConfig

__all__ = ["DEMO_CONFIG", "blend_summary", "run_demo", "truth_summary"]


def truth_summary(measured: pl.DataFrame, truth: pl.DataFrame, *,
                  isolation: float = 10.0) -> pl.DataFrame:
    """Per band: rows, and for clean isolated stars the median psfFlux/true and the pull sigma.

    ``measured`` is a forced-source table, ``truth`` has ``id``, ``is_star``, ``nearest_px``
    (distance to the nearest other object, pixels) and ``<band>_flux_true`` (nJy). A star is
    used when it is farther than ``isolation`` pixels from any other object and none of its
    PSF-flux or pixel flags is set. The pull sigma is 1.4826 x the median absolute deviation of
    ``(psfFlux - true) / psfFluxErr``.
    """
    rows = []
    for band in sorted(measured["band"].unique().to_list()):
        part = measured.filter(pl.col("band") == band)
        true_col = f"{band}_flux_true"
        stars = (
            part.join(truth.select("id", "is_star", "nearest_px", true_col), left_on="objectId",
                      right_on="id")
            .filter(pl.col("is_star") & (pl.col("nearest_px") > isolation)
                    & ~pl.col("psfFlux_flag") & ~pl.col("pixelFlags_edge")
                    & ~pl.col("pixelFlags_saturated") & ~pl.col("pixelFlags_bad")
                    & ~pl.col("pixelFlags_interpolated"))
        )
        ratio = (stars["psfFlux"] / stars[true_col]).to_numpy()
        pull = ((stars["psfFlux"] - stars[true_col]) / stars["psfFluxErr"]).to_numpy()
        mad = np.median(np.abs(pull - np.median(pull))) if pull.size else np.nan
        rows.append({
            "band": band,
            "rows": part.height,
            "objects": part["objectId"].n_unique(),
            "isolated_stars": stars.height,
            "median_psfFlux_over_true": float(np.median(ratio)) if ratio.size else np.nan,
            "pull_sigma": float(1.4826 * mad),
            "flagged_rows": int(part["psfFlux_flag"].sum()),
        })
    return pl.DataFrame(rows)


def _stats(flux: np.ndarray, err: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Median flux/true and pull sigma (1.4826 MAD of (flux - true)/err)."""
    ok = np.isfinite(flux) & np.isfinite(err)
    if not ok.any():
        return np.nan, np.nan
    ratio = flux[ok] / true[ok]
    pull = (flux[ok] - true[ok]) / err[ok]
    return float(np.median(ratio)), float(1.4826 * np.median(np.abs(pull - np.median(pull))))


def blend_summary(measured: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Per band and neighbour flux ratio: blended stars' deblended and undeblended accuracy.

    Columns: median psfFlux/true and pull sigma of the deblended ``psfFlux`` and of
    ``undeblended_psfFlux`` (see :func:`truth_summary` for the pull sigma).

    ``measured`` is a deblended forced-source table with ``undeblended_psfFlux``; ``truth`` has
    ``id``, ``is_star``, ``parent`` (0 when isolated), ``neighbour_flux_ratio`` (the nearest
    blend member's flux over the star's own) and ``<band>_flux_true``. Stars with a PSF-flux or
    pixel flag set are left out. The ratio bins are ``<= 1`` (the star is the brighter),
    ``1-5`` and ``> 5``.
    """
    rows = []
    for band in sorted(measured["band"].unique().to_list()):
        true_col = f"{band}_flux_true"
        stars = (
            measured.filter(pl.col("band") == band)
            .join(truth.select("id", "is_star", "parent", "neighbour_flux_ratio", true_col),
                  left_on="objectId", right_on="id")
            .filter(pl.col("is_star") & (pl.col("parent") != 0) & ~pl.col("psfFlux_flag")
                    & ~pl.col("undeblended_psfFlux_flag") & ~pl.col("pixelFlags_edge")
                    & ~pl.col("pixelFlags_saturated") & ~pl.col("pixelFlags_bad")
                    & ~pl.col("pixelFlags_interpolated"))
        )
        ratio = stars["neighbour_flux_ratio"].to_numpy()
        for label, sel in (("<= 1", ratio <= 1), ("1-5", (ratio > 1) & (ratio <= 5)),
                           ("> 5", ratio > 5)):
            part = stars.filter(pl.Series(sel))
            true = part[true_col].to_numpy()
            deb = _stats(part["psfFlux"].to_numpy(), part["psfFluxErr"].to_numpy(), true)
            und = _stats(part["undeblended_psfFlux"].to_numpy(),
                         part["undeblended_psfFluxErr"].to_numpy(), true)
            rows.append({"band": band, "neighbour_ratio": label, "blended_stars": part.height,
                         "deblended_median": deb[0], "deblended_pull": deb[1],
                         "undeblended_median": und[0], "undeblended_pull": und[1]})
    return pl.DataFrame(rows)


#: The demo's measurement: LSST's defaults, plus the undeblended PSF and aperture copies.
DEMO_CONFIG = ForcedPhotConfig(undeblended_plugins=("psf_flux", "aperture"))


def run_demo(out: Path, *, seed: int = 0, n_workers: int | None = None) -> int:
    """Make the demo survey under ``out``, measure it with :func:`colphot.run`, print a summary.

    Returns the process exit code (0 when every tile was measured).
    """
    import colphot
    from colphot._warmup import WarmUp
    from colphot.sim import make_survey

    out = Path(out)
    t0 = time.perf_counter()
    warm = WarmUp(n_workers)  # compiles the kernels in other processes while the survey is made
    info = make_survey(out / "survey", seed=seed)
    t_survey = time.perf_counter() - t0
    warm.wait()
    t1 = time.perf_counter()
    print(f"simulated {len(info.tile_paths)} tiles and {info.n_objects} reference objects "
          f"in {t_survey:.1f} s -> {out / 'survey'}")
    if t1 - t0 > t_survey + 0.05:
        print(f"compiled the measurement kernels alongside (once per machine): ready after "
              f"{t1 - t0:.1f} s")
    result_root = out / "forced"
    summary = colphot.run(
        tiles=info.tiles_template, refs=info.refs_root, out=result_root,
        n_workers=n_workers, processes=False, progress=False, in_band=info.in_band_root,
        config=DEMO_CONFIG,
    )
    t2 = time.perf_counter()
    print(f"measured {summary.n_measured} tiles (deblended, in-band catalogs "
          f"{info.in_band_root}) in {t2 - t1:.1f} s -> {result_root}")
    measured = colphot.open_forced(result_root).collect()
    truth = pl.read_parquet(info.truth_path)
    with pl.Config(tbl_rows=20, tbl_cols=10, tbl_width_chars=120, float_precision=4):
        print("isolated stars, psfFlux against the truth:")
        print(truth_summary(measured, truth))
        print("blended stars, deblended psfFlux and undeblended_psfFlux against the truth:")
        print(blend_summary(measured, truth))
    from colphot.qa import write_qa

    paths = write_qa(result_root, out / "qa", truth=info.truth_path, refs=info.refs_root)
    print(f"QA figures ({len(paths)}) -> {out / 'qa'}: " + ", ".join(p.name for p in paths))
    if summary.failed:
        for failure in summary.failed:
            print(f"FAILED {failure}")
        return 1
    return 0
