"""Kills: the driver of a ``colphot run`` with its own cluster, and (the soak) a random worker in
each of 20 runs. Real processes and real signals; every wait is bounded."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import colphot
from colphot.runner.run import MANIFEST_NAME

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]

ROW_KEY = ["band", "tract", "patch", "objectId"]
PARTS = "band=*/tract=*/patch=*/part-0.parquet"

#: A worker preload (``distributed.worker.preload``) that makes each tile take ``SLOW`` s longer,
#: so that the driver can be killed with tiles still to do.
PRELOAD = '''
import time

import colphot.runner.run as module

real = getattr(module.forced_photometry, "__wrapped__", module.forced_photometry)


def make_slow(real):  # distributed may run a preload file more than once: wrap once
    def slow(*args, **kwargs):
        time.sleep({seconds})
        return real(*args, **kwargs)

    slow.__wrapped__ = real
    return slow


module.forced_photometry = make_slow(real)
'''


def _stat(pid: int) -> tuple[int, str, int] | None:
    """``(ppid, state, start time)`` of a process from ``/proc/<pid>/stat``; ``None`` if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), fields[0], int(fields[19])


def _descendants(root: int) -> dict[int, int]:
    """Every live descendant of ``root``: pid -> start time (to tell a reused pid)."""
    table: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st[1] != "Z":
                table[int(entry.name)] = (st[0], st[2])
    out: dict[int, int] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, start) in table.items():
            if ppid == parent and pid not in out:
                out[pid] = start
                frontier.append(pid)
    return out


def _alive(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] != "Z" and st[2] == start


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


def _parts(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.glob(PARTS)}


def _cli(survey, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "colphot.cli", "run", "--tiles", survey.tiles_template,
            "--refs", survey.refs_root, "--out", str(out), "--workers", "2", *extra]


def test_killed_driver_takes_its_workers_down_and_resume_completes(survey, local_rows,
                                                                   tmp_path):
    """SIGKILL the driver of ``colphot run --workers 2`` once a part exists: every process it
    started (the nannies' worker processes) exits within 10 s; ``--resume`` then measures the
    remaining tiles, keeps the finished parts, and the dataset equals a clean run's."""
    preload = tmp_path / "slow_preload.py"
    preload.write_text(PRELOAD.format(seconds=0.6))
    out = tmp_path / "forced"
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__PRELOAD=json.dumps([str(preload)]))
    log = open(tmp_path / "driver.log", "wb")
    proc = subprocess.Popen(_cli(survey, out), env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    family: dict[int, int] = {}
    try:
        end = time.monotonic() + 120
        while not _parts(out) and proc.poll() is None and time.monotonic() < end:
            family.update(_descendants(proc.pid))
            time.sleep(0.02)
        family.update(_descendants(proc.pid))
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert _parts(out), "no part within 120 s"
        family = {p: s for p, s in family.items() if _alive(p, s)}
        workers = [p for p in family if "spawn_main" in _cmdline(p)]
        assert len(workers) == 2, {p: _cmdline(p) for p in family}
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        end = killed + 30
        while any(_alive(p, s) for p, s in family.items()) and time.monotonic() < end:
            time.sleep(0.02)
        took = time.monotonic() - killed
        left = {p: _cmdline(p) for p, s in family.items() if _alive(p, s)}
    finally:
        for pid, start in family.items():  # only the processes this test started
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
    print(f"driver killed: its {len(family)} processes exited in {took:.2f} s")
    assert not left, f"still running {took:.1f} s after the driver was killed: {left}"
    assert took < 10, f"the driver's processes took {took:.1f} s to exit"

    done = _parts(out)
    assert 1 <= len(done) < 8, f"interrupted after {len(done)} tiles"
    assert not (out / MANIFEST_NAME).exists()
    resumed = subprocess.run(_cli(survey, out, "--resume"), capture_output=True, text=True,
                             timeout=180)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["counts"]["skipped"] == len(done), manifest["counts"]
    assert manifest["counts"]["measured"] == 8 - len(done)
    assert manifest["counts"]["failed"] == 0
    assert {k: v for k, v in _parts(out).items() if k in done} == done  # kept, not rewritten
    rows = colphot.open_forced(out).collect()
    assert rows.select(ROW_KEY).is_duplicated().sum() == 0
    assert_frame_equal(rows.sort(ROW_KEY), local_rows)


# --------------------------------------------------------------------------------------------
# the soak

N_RUNS = 20
#: Extra seconds per tile on the soak's workers (a worker preload, so restarted workers too): a
#: run of the 8 tiles on 2 workers then takes about a second, long enough to be hit.
SOAK_SLOW = 0.12
#: Upper bound of the moment of each run's kill, seconds after the run starts.
KILL_WITHIN = 0.8


class Killer:
    """SIGKILLs one random worker process of ``cluster`` at a random moment (uniform in
    ``[0, within]`` s) unless ``done`` is set first; records what it did."""

    def __init__(self, cluster, rng: random.Random, within: float) -> None:
        self.cluster, self.delay = cluster, rng.uniform(0.0, within)
        self.rng = random.Random(rng.random())
        self.done = threading.Event()
        self.killed: int | None = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name="worker-killer", daemon=True)

    def _pids(self) -> list[int]:
        """Worker processes up and registered: a worker killed while its nanny is still
        starting it leaves that nanny stuck (distributed's own race, see the report), which is
        not what this soak is about."""
        from distributed.core import Status

        out = []
        for nanny in list(self.cluster.workers.values()):
            process = getattr(nanny, "process", None)
            if process is not None and getattr(process, "status", None) == Status.running \
                    and nanny.worker_address in self.cluster.scheduler_info["workers"]:
                out.append(process.pid)
        return sorted(p for p in out if p)

    def _run(self) -> None:
        try:
            if self.done.wait(self.delay):
                return  # the run ended first
            pids = self._pids()
            if pids:
                self.killed = self.rng.choice(pids)
                os.kill(self.killed, signal.SIGKILL)
        except ProcessLookupError:  # it died on its own just now
            pass
        except BaseException:
            self.error = traceback.format_exc()

    def __enter__(self) -> Killer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the killer thread did not stop"


def test_soak_runs_with_random_worker_kills_give_identical_results(survey, tmp_path):
    """20 runs of the tiny survey into fresh folders on one dedicated 2-worker cluster (the
    runner's own ``LocalCluster`` set-up), each with one worker SIGKILLed at a random moment:
    every run measures every tile, once, and gives the same frame as the first."""
    import dask
    import distributed  # noqa: F401 - its config defaults loaded before dask.config.set

    from colphot.runner.run import _local_client

    rng = random.Random(8128)
    preload = tmp_path / "slow_preload.py"
    preload.write_text(PRELOAD.format(seconds=SOAK_SLOW))
    start = time.monotonic()
    reference = None
    log: list[str] = []
    with dask.config.set({"distributed.worker.preload": [str(preload)]}):
        cluster, client = _local_client(2, True)
    try:
        client.wait_for_workers(2, timeout=60)
        for i in range(N_RUNS):
            out = tmp_path / f"run-{i:02d}"
            t0 = time.monotonic()
            with Killer(cluster, rng, KILL_WITHIN) as killer:
                summary = colphot.run(survey.tiles_template, survey.refs_root, out,
                                      client=client, retries=2, progress=False)
            took = time.monotonic() - t0
            assert killer.error is None, killer.error
            what = f"(pid {killer.killed})" if killer.killed else "(after the run)"
            log.append(f"run {i:2d}: {took:4.1f} s, kill at {killer.delay:.2f} s {what}, "
                       f"{len(client.scheduler_info()['workers'])} workers after")
            assert summary.n_failed == 0, f"run {i}: {summary}"
            assert summary.n_measured == 8, f"run {i}: {summary}"
            assert len(list(out.glob(PARTS))) == 8
            rows = colphot.open_forced(out).collect()
            assert rows.select(ROW_KEY).is_duplicated().sum() == 0, f"run {i}"
            rows = rows.sort(ROW_KEY)
            if reference is None:
                reference = rows
            else:
                assert_frame_equal(rows, reference)
            first = summary.results[0]
            assert pl.read_parquet(first.part).height == first.rows
        assert len(cluster.workers) == 2  # no nanny lost on the way
        client.wait_for_workers(2, timeout=60)  # none restarting while the cluster closes
    finally:
        client.close(timeout=30)
        cluster.close(timeout=60)
    elapsed = time.monotonic() - start
    kills = sum("pid" in line for line in log)
    leftovers = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.tmp"))
    print("\n".join(log))
    print(f"soak: {N_RUNS} runs, {kills} workers killed mid-run, {elapsed:.1f} s; "
          f"temporary files left by killed writers: {leftovers}")
    assert kills >= N_RUNS - 4, "most kills should land while a run is going"


def test_own_cluster_keeps_its_nannies_when_workers_keep_dying(survey, local_rows, tmp_path,
                                                               monkeypatch):
    """``run`` with its own cluster (``client=None``): both workers SIGKILLed, one after the
    other, mid-run. Their nannies restart them and the run completes.

    With ``distributed.deploy.lost-worker-timeout`` shortened to 0.2 s, distributed's
    ``SpecCluster`` would close each nanny whose worker has not re-registered 0.2 s after
    dying (which a restarting worker never has): with the default 15 s this happens to a
    worker killed again while restarting, and once no nanny is left ``run`` waits forever.
    """
    import dask
    import distributed  # noqa: F401 - its config defaults loaded before dask.config.set

    import colphot.runner.run as module

    captured = {}
    real = module._local_client

    def capture(n_workers, processes):  # the real cluster, remembered for the killer
        captured["cluster"], client = real(n_workers, processes)
        return captured["cluster"], client

    monkeypatch.setattr(module, "_local_client", capture)
    preload = tmp_path / "slow_preload.py"
    preload.write_text(PRELOAD.format(seconds=0.5))
    out = tmp_path / "forced"
    holder: dict[str, object] = {}

    def target() -> None:
        try:
            holder["summary"] = colphot.run(survey.tiles_template, survey.refs_root, out,
                                            n_workers=2, progress=False)
        except BaseException:
            holder["error"] = traceback.format_exc()

    def worker_pids() -> list[int]:
        cluster = captured.get("cluster")
        nannies = list(cluster.workers.values()) if cluster is not None else []
        return sorted(p for n in nannies
                      if (p := getattr(getattr(n, "process", None), "pid", None)))

    config = {"distributed.worker.preload": [str(preload)],
              "distributed.deploy.lost-worker-timeout": "0.2s"}
    with dask.config.set(config):
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        end = time.monotonic() + 120
        while (not _parts(out) or len(worker_pids()) < 2) and time.monotonic() < end \
                and thread.is_alive():
            time.sleep(0.02)
        first = worker_pids()
        assert len(first) == 2 and _parts(out), (first, holder)
        os.kill(first[0], signal.SIGKILL)
        time.sleep(1.0)  # the nanny is restarting it (the 0.2 s check has passed)
        os.kill(first[1], signal.SIGKILL)
        thread.join(timeout=90)
    assert not thread.is_alive(), (
        f"run() still waiting 90 s after its workers were killed; nannies left: "
        f"{len(captured['cluster'].workers)}")
    assert "error" not in holder, holder.get("error")
    summary = holder["summary"]
    assert summary.n_failed == 0 and summary.n_measured == 8, str(summary)
    rows = colphot.open_forced(out).collect()
    assert rows.select(ROW_KEY).is_duplicated().sum() == 0
    assert_frame_equal(rows.sort(ROW_KEY), local_rows)
