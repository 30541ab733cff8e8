"""The wide Object table against the forced-source rows it came from, and Rubin's schema."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

import colphot
from colphot.objects import object_frame, object_table, open_objects


@pytest.fixture(scope="module")
def forced(local_run):
    return Path(local_run[1])


@pytest.fixture(scope="module")
def refs(survey):
    return pl.read_parquet(Path(survey.refs_root) / "**" / "*.parquet", hive_partitioning=True)


def _boxes(root: Path) -> dict[tuple[str, int, int], tuple[int, int, int, int]]:
    """(band, tract, patch) -> (x0, y0, width, height), read straight from each part's footer."""
    out = {}
    for path in root.rglob("part-*.parquet"):
        meta = json.loads(pq.read_schema(path).metadata[b"colphot"])
        for i in meta["inputs"]:
            out[(i["band"], i["tract"], i["patch"])] = (i["xy0"][0], i["xy0"][1], i["shape"][1],
                                                        i["shape"][0])
    return out


def test_every_object_once_with_the_values_of_its_home_patch_rows(forced, refs):
    """With the reference catalog: each object's row holds, in every band, the forced row of
    the patch the reference catalog puts it in."""
    objects = object_frame(forced, refs).collect()
    rows = colphot.open_forced(forced).collect()
    assert objects["objectId"].is_unique().all()
    assert set(objects["objectId"]) == set(rows["objectId"])
    home = dict(zip(refs["id"], zip(refs["tract"], refs["patch"], strict=True), strict=True))
    by_key = {(r["objectId"], r["band"], r["tract"], r["patch"]): r
              for r in rows.iter_rows(named=True)}
    checked = 0
    for obj in objects.iter_rows(named=True):
        tract, patch = home[obj["objectId"]]
        assert (obj["tract"], obj["patch"]) == (tract, patch)
        assert obj["detect_isPrimary"] == bool(
            refs.filter(pl.col("id") == obj["objectId"])["detect_isPrimary"][0])
        for band in ("g", "r"):
            src = by_key.get((obj["objectId"], band, tract, patch))
            if src is None:
                assert obj[f"{band}_psfFlux_flag"] is True
                assert math.isnan(obj[f"{band}_psfFlux"])
                continue
            for col in ("psfFlux", "psfFluxErr", "ap12Flux", "gaussianFlux", "centroid_x",
                        "pixelFlags_saturated", "psfFlux_flag"):
                a, b = obj[f"{band}_{col}"], src[col]
                assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), \
                    (obj["objectId"], band, col, a, b)
            checked += 1
    assert checked > 100


def test_without_references_the_primary_copy_is_the_patch_it_lies_deepest_in(forced):
    """No reference catalog: every object comes from the patch whose tile box it lies farthest
    inside (computed here with numpy from the parts' recorded boxes), the same in each band."""
    objects = object_frame(forced).collect()
    rows = colphot.open_forced(forced).collect()
    boxes = _boxes(forced)
    x0, y0, w, h = (np.array([boxes[k][i] for k in zip(rows["band"], rows["tract"],
                                                         rows["patch"], strict=True)])
                    for i in range(4))
    cx, cy = rows["centroid_x"].to_numpy(), rows["centroid_y"].to_numpy()
    depth = np.minimum.reduce([cx - x0, x0 + w - 1 - cx, cy - y0, y0 + h - 1 - cy])
    rows = rows.with_columns(depth=pl.Series(np.nan_to_num(depth, nan=-np.inf)))
    best = rows.sort(["objectId", "depth", "tract", "patch"],
                     descending=[False, True, False, False]).unique("objectId", keep="first",
                                                                     maintain_order=True)
    expected = dict(zip(best["objectId"], best["patch"], strict=True))
    got = dict(zip(objects["objectId"], objects["patch"], strict=True))
    assert got == expected
    # objects in patch overlaps exist, and each is still listed once
    assert rows.group_by("objectId", "band").len()["len"].max() > 1
    assert objects["objectId"].is_unique().all()
    # no detect_isPrimary without references: True except for blend parents of other rows
    parents = set(rows["parentObjectId"]) - {0}
    assert (~objects["detect_isPrimary"]).sum() == len(parents & set(objects["objectId"]))
    assert (objects["refBand"] == "").all()


def test_a_band_missing_for_a_patch_is_nan_with_flags_set(forced, tmp_path, refs):
    """Remove the r-band part of one patch: its objects keep g, and their r columns are NaN
    floats with the general flags, pixelFlags_edge and pixelFlags_offimage True, other flags
    null (Rubin sets <band>_pixelFlags_edge when there is no data)."""
    copy = tmp_path / "forced"
    shutil.copytree(forced, copy)
    gone = next(iter(sorted((copy / "band=r").rglob("part-*.parquet"))))
    patch = int(gone.parent.name.split("=")[1])
    gone.unlink()
    objects = object_frame(copy, refs).collect()
    lost = objects.filter(pl.col("patch") == patch)
    assert lost.height > 0
    assert lost["r_psfFlux"].is_nan().all() and lost["r_ap12Flux"].is_nan().all()
    assert lost["r_psfFlux_flag"].all() and lost["r_centroid_flag"].all()
    assert lost["r_pixelFlags_edge"].all() and lost["r_pixelFlags_offimage"].all()
    assert lost["r_pixelFlags_saturated"].is_null().all()
    assert lost["g_psfFlux"].is_finite().any()
    kept = objects.filter(pl.col("patch") != patch)
    assert kept["r_psfFlux"].is_finite().any()


def test_written_table_by_tract_with_units_descriptions_and_provenance(forced, refs, tmp_path):
    out = tmp_path / "objects"
    result = object_table(forced, out, refs=refs)
    parts = sorted(out.glob("tract=*/part-0.parquet"))
    assert parts and (out / "_common_metadata").exists()
    assert sum(result["rows"].values()) == object_frame(forced, refs).collect().height
    table = open_objects(out).collect()
    assert table.equals(object_frame(forced, refs).collect())
    from astropy.table import Table

    t = Table.read(parts[0])
    assert str(t["g_psfFlux"].unit) == "nJy" and str(t["coord_ra"].unit) == "deg"
    assert t["r_ap12Flux"].description.startswith("r-band forced measurement:")
    meta = json.loads(pq.read_schema(parts[0]).metadata[b"colphot"])
    assert meta["table"] == "object" and meta["config"]["plugins"]
    assert meta["colphot_version"] == colphot.__version__
    with pytest.raises(FileExistsError, match="already holds an Object table"):
        object_table(forced, out, refs=refs)
    object_table(forced, out, refs=refs, overwrite=True)


def test_cli_objects(forced, tmp_path, survey):
    from colphot.cli import main

    out = tmp_path / "cli-objects"
    assert main(["objects", str(forced), str(out), "--refs", survey.refs_root]) == 0
    assert open_objects(out).select(pl.len()).collect().item() > 0
    assert main(["objects", str(tmp_path / "nothing"), str(out)]) == 1


def test_column_names_against_rubins_object_table(forced, refs):
    """The Object table of Rubin's DP1 schema (lsst-sdm-schemas): colphot's columns that exist
    there carry the same unit; the core quantities exist under the same name."""
    from importlib.resources import files

    import yaml

    spec = yaml.safe_load((files("lsst.sdm.schemas") / "dp1.yaml").read_text())
    rubin = {c["name"]: c for t in spec["tables"] if t["name"] == "Object"
             for c in t["columns"]}
    ours = object_frame(forced, refs).collect_schema()
    units = {f.name: (f.metadata or {}).get(b"unit", b"").decode()
             for f in pq.read_schema(next(iter(Path(forced).rglob("part-*.parquet"))))}
    rubin_type = {"double": pl.Float64, "float": pl.Float32, "long": pl.Int64,
                  "int": pl.Int32, "boolean": pl.Boolean, "char": pl.String}
    same, other_type = [], []
    for name, dtype in ours.items():
        if name not in rubin:
            continue
        base = name.split("_", 1)[1] if name[:2] in {"g_", "r_"} else name
        unit = units.get(base, "") or ""
        r_unit = rubin[name].get("ivoa:unit") or ""
        # the same units spelled differently: astropy's AB magnitude, pixel's abbreviation
        alias = {"pix": "pixel", "mag(AB)": "mag"}
        assert alias.get(unit, unit) == alias.get(r_unit, r_unit), (name, unit, r_unit)
        (same if rubin_type.get(rubin[name]["datatype"]) == dtype else other_type).append(name)
    print(f"{len(same)} columns with Rubin's name, unit and type; {len(other_type)} with "
          f"Rubin's name and unit in a wider type: {other_type[:12]}")
    core = {"objectId", "coord_ra", "coord_dec", "tract", "patch", "refBand", "parentObjectId",
            "g_psfFlux", "g_psfFluxErr", "g_psfFlux_flag", "g_psfMag", "g_psfMagErr",
            "g_ap12Flux", "g_ap12FluxErr", "g_ap12Flux_flag", "g_psfFlux_area",
            "g_pixelFlags_saturated", "g_pixelFlags_edge", "g_centroid_flag", "r_psfFlux"}
    assert core <= set(same) | set(other_type)
