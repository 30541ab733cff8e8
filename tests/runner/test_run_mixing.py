"""colphot run: a dataset holds one measurement; a tile that fails leaves no old part."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import colphot
from colphot.config import ForcedPhotConfig
from colphot.exceptions import OutputMismatchError


def test_run_refuses_another_measurement_and_a_failed_tile_keeps_no_old_part(
        survey, dask_client, tmp_path):
    out = tmp_path / "out"
    first = colphot.run(survey.tiles_template, survey.refs_root, out, client=dask_client,
                        progress=False)
    assert first.n_failed == 0
    other = ForcedPhotConfig(aperture_radii=(3.0, 6.0))
    with pytest.raises(OutputMismatchError, match="config.aperture_radii"):
        colphot.run(survey.tiles_template, survey.refs_root, out, client=dask_client,
                    config=other, progress=False)
    # the same configuration with one tile broken: its part of the first run is removed
    tiles = shutil.copytree(Path(survey.root) / "tiles", tmp_path / "tiles")
    broken = sorted(tiles.glob("g/0/*.fits"))[0]
    broken.write_bytes(b"not FITS" * 400)
    again = colphot.run(str(tiles / "{band}" / "{tract}" / "{patch}.fits"), survey.refs_root,
                        out, client=dask_client, progress=False)
    assert again.n_failed == 1
    assert not Path(again.failed[0].part).exists()
    clobbered = colphot.run(survey.tiles_template, survey.refs_root, out, client=dask_client,
                            config=other, progress=False, clobber=True)
    assert clobbered.n_failed == 0
    assert "ap12Flux" not in colphot.open_forced(out).collect_schema()
