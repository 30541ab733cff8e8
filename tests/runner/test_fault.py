"""A worker process killed mid-run: the run completes, every tile's rows present exactly once."""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import colphot

ROW_KEY = ["band", "tract", "patch", "objectId"]


def _wait(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.02)


@pytest.mark.slow
def test_killed_worker_does_not_lose_or_duplicate_tiles(survey, slow_client, local_rows,
                                                        tmp_path):
    client = slow_client
    client.wait_for_workers(2, timeout=60)
    log = tmp_path / "starts.log"
    client.slow(1.5, str(log))
    out = tmp_path / "forced"
    holder: dict[str, object] = {}

    def target() -> None:
        try:
            holder["summary"] = colphot.run(survey.tiles_template, survey.refs_root, out,
                                            client=client, retries=2, progress=False)
        except BaseException:  # reported by the main thread, with its traceback
            holder["error"] = traceback.format_exc()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    _wait(lambda: any(out.glob("band=*/tract=*/patch=*/part-0.parquet")), 60,
          "the first tile to finish")
    pids = client.run(os.getpid)
    by_pid = {pid: addr for addr, pid in pids.items()}

    def fresh_worker() -> str | None:
        """A worker that started its current tile under 0.5 s ago (>= 1 s of it left)."""
        latest: dict[int, float] = {}
        for line in log.read_text().splitlines():
            pid, t = line.split()
            latest[int(pid)] = float(t)
        now = time.time()
        young = [by_pid[p] for p, t in latest.items() if p in by_pid and now - t < 0.5]
        return sorted(young)[0] if young else None

    _wait(lambda: fresh_worker() is not None, 30, "a worker to start a tile")
    victim = fresh_worker() or ""
    busy = {w: keys for w, keys in client.processing().items() if keys}
    assert busy.get(victim), "the chosen worker holds no tile to interrupt"
    os.kill(pids[victim], signal.SIGKILL)
    thread.join(timeout=120)
    assert not thread.is_alive(), "the run did not finish after a worker was killed"
    assert "error" not in holder, holder.get("error")
    summary = holder["summary"]

    assert summary.n_failed == 0, str(summary)
    assert summary.n_measured == len(survey.tile_paths)
    # the tiles the dead worker held were measured again elsewhere
    interrupted = {tuple(str(k).split("-")[1:4]) for k in busy[victim]}
    rerun = [r for r in summary.results if (r.band, str(r.tract), str(r.patch)) in interrupted]
    assert rerun and all(r.worker != victim for r in rerun)
    rows = colphot.open_forced(out).collect()
    # exactly once: no (tile, object) twice, and the same rows as an undisturbed run
    assert rows.select(ROW_KEY).is_duplicated().sum() == 0
    assert_frame_equal(rows.sort(ROW_KEY), local_rows)
    parts = sorted(out.glob("band=*/tract=*/patch=*/*.parquet"))
    assert len(parts) == len(survey.tile_paths)
    assert pl.read_parquet(parts[0]).height == summary.results[0].rows
