"""Import weight and direction: `import colphot` stays light; measure/ is arrays in, out."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

HEAVY = ("dask", "distributed", "s3fs")


def _loaded_after(code: str, sim) -> set[str]:
    """Top-level module names in sys.modules after running ``code`` in a fresh interpreter."""
    script = code + "\nimport sys, json\nprint(json.dumps(sorted({m.split('.')[0] for m in " \
                    "sys.modules})))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=sim.repo_root(), check=True, timeout=120)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_colphot_is_light(sim):
    loaded = _loaded_after("import colphot", sim)
    assert "colphot" in loaded
    assert not loaded & set(HEAVY)
    assert not loaded & {"polars", "astropy", "numba", "pyarrow"}


def test_single_tile_api_loads_no_dask_or_s3fs(sim):
    loaded = _loaded_after(
        "import colphot\n"
        "colphot.read_tile, colphot.forced_photometry, colphot.write_forced, "
        "colphot.open_forced, colphot.ForcedPhotConfig, colphot.Tile", sim)
    assert {"polars", "astropy", "numba"} <= loaded
    assert not loaded & set(HEAVY)


def test_measure_modules_load_no_polars_astropy_dask(sim):
    modules = sorted(p.stem for p in (sim.repo_root() / "colphot" / "measure").glob("*.py")
                     if p.stem != "__init__")
    assert {"aperture", "psf_flux", "gaussian_flux", "local_background", "pixel_flags"} <= set(
        modules)
    code = "\n".join(f"import colphot.measure.{m}" for m in modules)
    loaded = _loaded_after(code, sim)
    assert "numba" in loaded
    assert not loaded & {"polars", "astropy", "pyarrow", "fsspec", *HEAVY}


def _imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


#: package -> colphot packages it must not import (the data flow runs one way)
FORBIDDEN = {
    "measure": ("colphot.tile", "colphot.references", "colphot.table", "colphot.parquet",
                "colphot.runner", "colphot.sim", "colphot._fs", "colphot.cli", "polars",
                "astropy", "dask", "distributed", "pyarrow", "fsspec", "s3fs"),
    "tile": ("colphot.references", "colphot.table", "colphot.parquet", "colphot.runner",
             "colphot.sim", "colphot.cli", "dask", "distributed"),
    "references": ("colphot.table", "colphot.parquet", "colphot.runner", "colphot.sim",
                   "colphot.cli", "dask", "distributed"),
    "table": ("colphot.parquet", "colphot.runner", "colphot.sim", "colphot.cli", "dask",
              "distributed"),
    "parquet": ("colphot.runner", "colphot.sim", "colphot.cli", "dask", "distributed"),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(sim, package):
    folder = sim.repo_root() / "colphot" / package
    files = sorted(folder.glob("*.py"))
    assert files
    bad = []
    for path in files:
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package]):
                bad.append(f"{path.name}: {name}")
    assert bad == []
