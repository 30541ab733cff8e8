"""Interrupted runs restarted with ``resume``: only the missing tiles are measured."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

import colphot
from colphot.config import ForcedPhotConfig
from colphot.runner.run import MANIFEST_NAME

ROW_KEY = ["band", "tract", "patch", "objectId"]


def _parts(root: Path) -> dict[str, int]:
    """Part path relative to ``root`` -> modification time (ns)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns
            for p in root.glob("band=*/tract=*/patch=*/part-0.parquet")}


def test_resume_after_a_partial_run_measures_only_the_missing_tiles(survey, dask_client,
                                                                    local_rows, tmp_path):
    out = tmp_path / "forced"
    first = colphot.run(survey.tile_paths[::2], survey.refs_root, out, client=dask_client,
                        progress=False)
    assert first.n_measured == 4
    before = _parts(out)
    time.sleep(0.01)
    summary = colphot.run(survey.tiles_template, survey.refs_root, out, client=dask_client,
                          resume=True, progress=False)
    assert (summary.n_skipped, summary.n_measured, summary.n_failed) == (4, 4, 0)
    assert {r.url for r in summary.skipped} == set(survey.tile_paths[::2])
    after = _parts(out)
    assert len(after) == 8
    assert {k: after[k] for k in before} == before  # kept parts were not rewritten
    assert_frame_equal(colphot.open_forced(out).collect().sort(ROW_KEY), local_rows)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["counts"]["skipped"] == 4 and manifest["execution"]["resume"] is True
    assert manifest["counts"]["rows"] == local_rows.height


def test_resume_redoes_damaged_and_differently_configured_parts(survey, dask_client, local_run,
                                                                tmp_path):
    out = Path(shutil.copytree(local_run[1], tmp_path / "forced"))
    parts = sorted(_parts(out))
    (out / parts[0]).write_bytes((out / parts[0]).read_bytes()[:-100])  # truncated footer
    (out / parts[1]).unlink()
    other = ForcedPhotConfig(aperture_radii=(3.0, 6.0))
    fields = dict(kv.split("=") for kv in parts[2].split("/")[:3])
    tile = survey.tiles_template.format(**fields)
    colphot.run([tile], survey.refs_root, tmp_path / "other", client=dask_client, config=other,
                progress=False)
    shutil.copy(tmp_path / "other" / parts[2], out / parts[2])
    summary = colphot.run(survey.tiles_template, survey.refs_root, out, client=dask_client,
                          resume=True, progress=False)
    redone = sorted(str(Path(r.part).relative_to(out)) for r in summary.measured)
    assert redone == parts[:3]
    assert summary.n_skipped == 5
    assert_frame_equal(colphot.open_forced(out).collect().sort(ROW_KEY),
                       colphot.open_forced(local_run[1]).collect().sort(ROW_KEY))


def test_rerun_without_resume_is_idempotent(survey, dask_client, local_rows, tmp_path):
    out = tmp_path / "forced"
    for _ in range(2):
        summary = colphot.run(survey.tiles_template, survey.refs_root, out, client=dask_client,
                              progress=False)
        assert summary.n_measured == 8 and summary.n_skipped == 0
    assert_frame_equal(colphot.open_forced(out).collect().sort(ROW_KEY), local_rows)


@pytest.mark.slow
def test_cli_run_killed_then_resumed(survey, slow_client, local_rows, tmp_path):
    """A real interruption: the driver process is killed mid-run, then ``resume`` finishes."""
    client = slow_client
    client.wait_for_workers(2, timeout=60)
    client.slow(0.5)
    out = tmp_path / "forced"
    code = "import sys; from colphot.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "run", "--tiles", survey.tiles_template, "--refs",
           survey.refs_root, "--out", str(out), "--scheduler", client.scheduler.address]
    env = dict(os.environ, PYTHONPATH=str(Path(colphot.__file__).parents[1]))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        end = time.monotonic() + 60
        while not _parts(out) and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    # the tiles already executing finish on the workers: wait until none is
    end = time.monotonic() + 60
    while time.monotonic() < end and (any(client.processing().values()) or any(
            client.run(lambda dask_worker: len(dask_worker.state.executing)).values())):
        time.sleep(0.05)
    done = _parts(out)
    assert 1 <= len(done) < 8, f"interrupted after {len(done)} tiles"
    assert not (out / MANIFEST_NAME).exists()
    summary = colphot.run(survey.tiles_template, survey.refs_root, out, client=client,
                          resume=True, progress=False)
    assert summary.n_skipped == len(done)
    assert summary.n_measured == 8 - len(done)
    assert {k: v for k, v in _parts(out).items() if k in done} == done
    assert_frame_equal(colphot.open_forced(out).collect().sort(ROW_KEY), local_rows)
