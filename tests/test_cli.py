"""The command line: one line per error (type, file, what is wrong), exit 2 for bad usage, 1 for
failed work; --debug shows the traceback."""

from __future__ import annotations

import polars as pl
import pytest

from colphot.cli import main
from colphot.exceptions import ReferenceCatalogError


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["measure", "--refs", "x"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["bogus"])
    assert info.value.code == 2


def test_bad_config_file_exits_2_naming_it(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("subpixels: [1,\n")
    assert main(["measure", "t.fits", "--refs", "r", "--out", "o", "--config", str(cfg)]) == 2
    line = _one_line(capsys)
    assert line.startswith("colphot measure: usage: --config: ") and str(cfg) in line
    assert "line 2" in line
    assert main(["run", "--tiles", "t", "--refs", "r", "--out", "o", "--config",
                 str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: no such file" in _one_line(capsys)


def test_failed_work_exits_1_with_one_line(sim, tmp_path, capsys):
    assert main(["measure", str(tmp_path / "none.fits"), "--refs", "r", "--out", "o"]) == 1
    line = _one_line(capsys)
    assert line == f"colphot measure: FileNotFoundError: {tmp_path / 'none.fits'}: tile file " \
                   "not found"
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"SIMPLE  = garbage" + b" " * 3000)
    assert main(["measure", str(bad), "--refs", "r", "--out", "o"]) == 1
    assert _one_line(capsys).startswith(f"colphot measure: TileFormatError: {bad}")


def test_missing_or_garbage_reference_catalog(sim, tmp_path, capsys):
    from colphot.tile.write import write_tile

    s = sim.make_sim_tile(n_side=2)
    tile = tmp_path / "t.fits"
    write_tile(tile, s.tile.image, variance=s.tile.variance, wcs=s.tile.wcs, band="r",
               tract=1, patch=2, psf_images=s.tile.psf.images, bunit="nJy")
    garbage = tmp_path / "refs.parquet"
    garbage.write_bytes(b"PAR1 not really")
    for refs in (tmp_path / "missing.parquet", garbage):
        assert main(["measure", str(tile), "--refs", str(refs), "--out",
                     str(tmp_path / "o")]) == 1
        line = _one_line(capsys)
        assert line.startswith(f"colphot measure: ReferenceCatalogError: {refs}: cannot read "
                               "the reference catalog")
    ok = tmp_path / "ok.parquet"
    s.refs.write_parquet(ok)
    assert main(["measure", str(tile), "--refs", str(ok), "--out", str(tmp_path / "o")]) == 0
    assert pl.scan_parquet(tmp_path / "o" / "**" / "*.parquet").collect().height == 4


def test_debug_shows_the_traceback(tmp_path):
    garbage = tmp_path / "refs.parquet"
    garbage.write_bytes(b"nope")
    with pytest.raises((FileNotFoundError, ReferenceCatalogError)):
        main(["--debug", "measure", str(tmp_path / "none.fits"), "--refs", str(garbage),
              "--out", "o"])
