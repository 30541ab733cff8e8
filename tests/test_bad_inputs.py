"""A corpus of malformed inputs built from one valid simulated tile, run as a user runs them.

Each case mutates the tile file (header values, HDUs, planes, bytes), the reference catalog or
the configuration, then reads the tile and measures it. Every case must end in one of three
outcomes: a clear error (a colphot error, or ``FileNotFoundError``/``TypeError``/``ValueError``
naming the file, key, column or parameter), flagged rows (a NaN value always with its flag), or
valid rows. ``python tests/test_bad_inputs.py`` prints the count per outcome.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
from astropy.io import fits

import colphot
from colphot.config import ForcedPhotConfig
from colphot.exceptions import ColphotError
from colphot.table.forced import unflagged_nans


def _tests_conftest():
    """``tests/conftest.py`` by path (a plain ``import conftest`` may find a sub-folder's)."""
    spec = importlib.util.spec_from_file_location(
        "colphot_tests_conftest", Path(__file__).resolve().parent / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


make_sim_tile = _tests_conftest().make_sim_tile

HEADER_KEYS = ["BAND", "FILTER", "TRACT", "PATCH", "MAGZERO", "FLUXMAG0", "BUNIT", "LTV1",
               "LTV2", "RADESYS", "CTYPE1", "CRPIX1", "CRVAL2", "CD1_1"]
BAD_VALUES = ["", "../../x", "a/b", "__HIVE_DEFAULT_PARTITION__", 1.5, -1, "abc", -1000.0,
              1e30, True, 0]


def _valid(root: Path):
    """The valid tile file and its reference catalog."""
    from colphot.tile.write import write_tile

    s = make_sim_tile(n_side=3, spacing=40, margin=30)
    path = root / "valid.fits"
    mask = np.zeros(s.tile.shape, np.int32)
    mask[5:8, 5:8] = 1 << s.tile.mask_planes["NO_DATA"]
    image = s.tile.image.copy()
    image[5:8, 5:8] = np.nan
    write_tile(path, image, variance=s.tile.variance, mask=mask,
               mask_planes=s.tile.mask_planes, wcs=s.tile.wcs, psf_images=s.tile.psf.images,
               band="r", tract=1, patch=2, bunit="nJy")
    return path, s.refs


def _header_case(key: str, value, hdu: int) -> Callable[[fits.HDUList], None]:
    def mutate(hdul: fits.HDUList) -> None:
        hdul[hdu].header[key] = value
    return mutate


def _cases() -> dict[str, tuple[str, Callable]]:
    """name -> (what it mutates: "file" | "refs" | "config", mutation)."""
    cases: dict[str, tuple[str, Callable]] = {}
    for key in HEADER_KEYS:
        for value in BAD_VALUES:
            hdu = 0 if key in ("BAND", "FILTER", "TRACT", "PATCH") else 1
            cases[f"header {key}={value!r}"] = ("file", _header_case(key, value, hdu))

    def drop(name):
        return lambda hdul: hdul.remove(hdul[name])

    def plane(name, fn):
        def mutate(hdul):
            hdul[name].data = fn(hdul[name].data)
        return mutate

    for name in ("IMAGE", "MASK", "VARIANCE", "PSF"):
        cases[f"no {name} HDU"] = ("file", drop(name))
    cases["3-D image"] = ("file", plane("IMAGE", lambda d: np.stack([d, d])))
    cases["int16 image"] = ("file", plane("IMAGE", lambda d: np.nan_to_num(d).astype(np.int16)))
    cases["float64 image"] = ("file", plane("IMAGE", lambda d: d.astype(np.float64)))
    cases["all-NaN image"] = ("file", plane("IMAGE", lambda d: np.full_like(d, np.nan)))
    cases["float mask"] = ("file", plane("MASK", lambda d: d.astype(np.float32)))
    cases["small mask"] = ("file", plane("MASK", lambda d: d[:10, :10]))
    cases["small variance"] = ("file", plane("VARIANCE", lambda d: d[:-1]))
    cases["negative variance"] = ("file", plane("VARIANCE", lambda d: -d))
    cases["NaN variance"] = ("file", plane("VARIANCE", lambda d: np.full_like(d, np.nan)))
    cases["zero variance"] = ("file", plane("VARIANCE", lambda d: np.zeros_like(d)))
    cases["even PSF"] = ("file", plane("PSF", lambda d: np.ones((20, 20))))
    cases["NaN PSF"] = ("file", plane("PSF", lambda d: np.full_like(d, np.nan)))
    cases["zero PSF"] = ("file", plane("PSF", lambda d: np.zeros_like(d)))
    cases["truncated file"] = ("bytes", lambda raw: raw[: len(raw) // 2])
    cases["empty file"] = ("bytes", lambda raw: b"")
    cases["not FITS"] = ("bytes", lambda raw: b"PAR1" + raw[4:])

    def refs_case(fn):
        return ("refs", fn)

    cases["refs without coord_dec"] = refs_case(lambda r: r.drop("coord_dec"))
    cases["refs string ids"] = refs_case(lambda r: r.with_columns(pl.col("id").cast(pl.String)))
    cases["refs float ids 1.5"] = refs_case(lambda r: r.with_columns(id=pl.col("id") + 0.5))
    cases["refs duplicate ids"] = refs_case(lambda r: pl.concat([r, r.head(1)]))
    cases["refs null id"] = refs_case(lambda r: r.with_columns(
        id=pl.when(pl.col("id") == r["id"][0]).then(None).otherwise(pl.col("id"))))
    cases["refs NaN coordinates"] = refs_case(lambda r: r.with_columns(coord_ra=float("nan")))
    cases["refs dec 95"] = refs_case(lambda r: r.with_columns(coord_dec=95.0))
    cases["refs text coordinates"] = refs_case(lambda r: r.with_columns(coord_ra=pl.lit("x")))
    cases["refs NaN shapes"] = refs_case(lambda r: r.with_columns(
        shape_xx=float("nan"), shape_yy=0.1, shape_xy=0.0))
    cases["refs negative shapes"] = refs_case(lambda r: r.with_columns(
        shape_xx=-1.0, shape_yy=0.1, shape_xy=0.0))
    cases["refs empty"] = refs_case(lambda r: r.head(0))
    for name, kwargs in {
        "config subpixels=100000": {"subpixels": 100000},
        "config subpixels=2.5": {"subpixels": 2.5},
        "config radii='3,6'": {"aperture_radii": "3,6"},
        "config n_sigma=-3": {"local_background_n_sigma": -3},
        "config n_iter=-1": {"local_background_n_iter": -1},
        "config method='sinc?'": {"aperture_method": "sinc?"},
        "config plugins='psf_flux'": {"plugins": "psf_flux"},
        "config radius 1e9": {"aperture_radii": (3, 1e9)},
    }.items():
        cases[name] = ("config", kwargs)
    return cases


CASES = _cases()


def run_case(name: str, root: Path) -> str:
    """The outcome of one case: ``"clear error"``, ``"flagged rows"`` or ``"valid"``; anything
    else raises."""
    what, mutation = CASES[name]
    valid, refs = _valid(root)
    path = root / "case.fits"
    config = ForcedPhotConfig()
    if what == "file":
        with fits.open(valid) as hdul:
            copy = fits.HDUList([h.copy() for h in hdul])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mutation(copy)
                copy.writeto(path, overwrite=True)
        except (ValueError, TypeError, KeyError, fits.VerifyError):
            return "not writable"
    elif what == "bytes":
        path.write_bytes(mutation(valid.read_bytes()))
    else:
        path = valid
    try:
        if what == "refs":
            refs = mutation(refs)
        if what == "config":
            config = ForcedPhotConfig(**mutation)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy's and colphot's: not outcomes here
            tile = colphot.read_tile(path)
            df = colphot.forced_photometry(tile, refs, config)
    except (ColphotError, FileNotFoundError, TypeError, ValueError) as err:
        text = str(err)
        named = str(path) in text or any(word in text for word in (
            "column", "'id'", "coord_", "subpixels", "aperture_", "local_background",
            "plugins", "psf"))
        assert named, f"{name}: unclear error {type(err).__name__}: {text}"
        if not isinstance(err, ColphotError | FileNotFoundError):
            assert what == "config", f"{name}: {type(err).__name__} outside the config: {text}"
        return "clear error"
    assert unflagged_nans(df) == {}, f"{name}: {unflagged_nans(df)}"
    flags = [c for c in df.columns if c.endswith("_flag")]
    flagged = df.select(pl.any_horizontal(flags)).to_series().any() if df.height else False
    return "flagged rows" if flagged else "valid"


def test_every_bad_input_ends_clearly(tmp_path):
    outcomes = Counter(run_case(name, tmp_path) for name in CASES)
    assert set(outcomes) <= {"clear error", "flagged rows", "valid", "not writable"}
    assert outcomes["clear error"] > 100


def test_dataclass_replace_keeps_checks(tmp_path):
    valid, _ = _valid(tmp_path)
    tile = colphot.read_tile(valid)
    assert dataclasses.replace(tile).image.dtype == np.float32


if __name__ == "__main__":
    counts: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            outcome = run_case(case, Path(tmp))
            counts[outcome] += 1
            print(f"{outcome:14s} {case}")
    print(dict(counts), "of", len(CASES))
