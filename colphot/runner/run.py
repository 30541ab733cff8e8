"""``run``: forced photometry of many tiles on Dask distributed, local disk or S3.

One task per tile (tiles are independent): read the tile, select its references, measure,
write the tile's Parquet part straight to its final name (``band=…/tract=…/patch=…``). The
driver collects results as they complete, reports progress, and writes ``_common_metadata``
and the run manifest ``_manifest.json`` last. A failed tile is recorded with its URL and
reason and does not stop the others.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import pyarrow.parquet as pq

from colphot._fs import filesystem, has_glob, is_local, join, put_atomic
from colphot._typing import PathLike, StorageOptions
from colphot.config import ForcedPhotConfig
from colphot.exceptions import (
    ColphotError,
    MissingReferenceError,
    ReferenceCatalogError,
    TileFormatError,
)
from colphot.parquet.metadata import read_colphot_metadata
from colphot.parquet.write import (
    partition_path,
    prepare_output,
    write_common_metadata,
    write_partition,
)
from colphot.references.in_band import empty_in_band, scan_in_band
from colphot.runner.plan import WorkUnit, absolute_url, find_tiles, plan_units, redact_url
from colphot.runner.refs import group_by_tract, has_column, list_refs, refs_source, select_refs
from colphot.table.forced import forced_photometry, provenance
from colphot.tile.fits import read_tile

if TYPE_CHECKING:
    import polars as pl
    from distributed import Client

    from colphot.tile.tile import Tile

__all__ = ["MANIFEST_NAME", "RunSummary", "TileResult", "in_band_for", "list_in_band",
           "measure_unit",
           "part_status", "run", "tile_read_options", "write_part"]

MANIFEST_NAME = "_manifest.json"
#: fsspec block size for remote tiles, bytes: large enough that a plane is a few requests,
#: small enough that HDUs the measurement does not need are mostly not fetched.
TILE_BLOCK_SIZE = 4 * 2**20
_FOOTER_BLOCK = 64 * 2**10
#: Errors that a retry cannot fix: the tile fails at once with its reason.
_PERMANENT = (ColphotError, FileNotFoundError, PermissionError, ValueError)

Status = Literal["measured", "skipped", "failed"]


@dataclass
class TileResult:
    """What happened to one tile.

    Attributes
    ----------
    url, band, tract, patch, part
        The work unit (tile URL, identity, output part URL).
    status
        ``"measured"``, ``"skipped"`` (resume found a valid part) or ``"failed"``.
    rows
        Rows in the tile's part (``None`` when failed).
    seconds
        Wall time of the task, seconds; ``timings`` splits it into read/refs/measure/write.
    error
        ``"ExceptionType: message"`` of a failed tile.
    worker
        Address of the Dask worker that ran the task.
    provenance
        :meth:`colphot.Tile.provenance` of the tile (kept for ``_common_metadata``).
    """

    url: str
    band: str
    tract: int
    patch: int
    part: str
    status: Status
    rows: int | None = None
    seconds: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    worker: str | None = None
    provenance: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, unit: WorkUnit, status: Status, **kwargs: Any) -> TileResult:
        """A result for ``unit``."""
        return cls(unit.url, unit.band, unit.tract, unit.patch, unit.part, status, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready entry of the run manifest (URLs without credentials)."""
        out = dataclasses.asdict(self)
        out.pop("provenance")
        out["url"] = redact_url(self.url)
        out["part"] = redact_url(self.part)
        if self.seconds is not None:
            out["seconds"] = round(self.seconds, 4)
        return out

    def __str__(self) -> str:
        if self.status == "failed":
            return f"{redact_url(self.url)}: {self.error}"
        return f"{redact_url(self.url)}: {self.status}, {self.rows} rows"


@dataclass
class RunSummary:
    """The outcome of :func:`run`.

    Attributes
    ----------
    out
        Output dataset root.
    manifest
        URL of the run manifest (``{out}/_manifest.json``).
    results
        One :class:`TileResult` per tile, in plan order (band, tract, patch).
    wall_seconds
        Wall time of the whole run, seconds.
    run_id
        Identifier of the run (also in the manifest and the Dask task keys).
    """

    out: str
    manifest: str
    results: list[TileResult]
    wall_seconds: float
    run_id: str

    @property
    def measured(self) -> list[TileResult]:
        """Tiles measured in this run."""
        return [r for r in self.results if r.status == "measured"]

    @property
    def skipped(self) -> list[TileResult]:
        """Tiles whose valid part was kept (``resume=True``)."""
        return [r for r in self.results if r.status == "skipped"]

    @property
    def failed(self) -> list[TileResult]:
        """Tiles that failed, with their reason."""
        return [r for r in self.results if r.status == "failed"]

    @property
    def n_measured(self) -> int:
        """Number of tiles measured in this run."""
        return len(self.measured)

    @property
    def n_skipped(self) -> int:
        """Number of tiles skipped by ``resume``."""
        return len(self.skipped)

    @property
    def n_failed(self) -> int:
        """Number of failed tiles."""
        return len(self.failed)

    @property
    def n_rows(self) -> int:
        """Rows in the parts of measured and skipped tiles."""
        return sum(r.rows or 0 for r in self.results)

    def __str__(self) -> str:
        lines = [
            f"colphot run {self.run_id}: {len(self.results)} tiles, {self.n_measured} measured, "
            f"{self.n_skipped} skipped, {self.n_failed} failed; {self.n_rows} rows in "
            f"{self.wall_seconds:.1f} s -> {redact_url(self.out)}",
        ]
        lines += [f"  FAILED {r}" for r in self.failed]
        lines.append(f"  manifest: {redact_url(self.manifest)}")
        return "\n".join(lines)


class _Hidden:
    """Storage options in a box whose repr shows nothing: task arguments appear in Dask's
    logs ("Compute Failed ... args"), credentials must not."""

    __slots__ = ("value",)

    def __init__(self, value: StorageOptions) -> None:
        self.value = dict(value or {})

    def __repr__(self) -> str:
        return "<storage options>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Hidden, (self.value,))


# --------------------------------------------------------------------------------------------
# the task: one tile


def tile_read_options(storage_options: StorageOptions) -> dict[str, Any]:
    """fsspec options for reading remote tiles: ``storage_options`` plus a block cache of
    :data:`TILE_BLOCK_SIZE` blocks unless the caller chose a block size or cache type."""
    options = dict(storage_options or {})
    options.setdefault("default_block_size", TILE_BLOCK_SIZE)
    options.setdefault("default_cache_type", "blockcache")
    return options


def part_status(part: str, config: ForcedPhotConfig, *, storage_options: StorageOptions = None,
                in_band: str | None = None) -> tuple[int, dict[str, Any] | None] | None:
    """``(rows, tile provenance)`` of a valid existing part, else ``None``.

    Valid: the Parquet footer reads, carries the ``colphot`` metadata key, and records the
    same configuration and the same in-band catalog (``None``: not deblended); a part measured
    otherwise is measured again.
    """
    fs, path = filesystem(part, storage_options)
    try:
        if not is_local(part):
            fs.invalidate_cache(path)
        with fs.open(path, "rb", block_size=_FOOTER_BLOCK) as f:
            meta = pq.read_metadata(f)
        info = read_colphot_metadata(meta.schema.to_arrow_schema())
    except (OSError, ValueError):  # absent, unreadable or not Parquet (ArrowInvalid)
        return None
    if not info or info.get("config") != config.to_dict():
        return None
    inputs = info.get("inputs") or [None]
    deblend = (inputs[0] or {}).get("deblend") or {}
    if deblend.get("in_band") != (None if in_band is None else redact_url(in_band)):
        return None
    return meta.num_rows, inputs[0]


def write_part(df: pl.DataFrame, part: str, *, config: ForcedPhotConfig,
               provenance: dict[str, Any], storage_options: StorageOptions = None) -> int:
    """Write one tile's rows to its part file, whole or not at all; returns the row count.

    Unlike :func:`colphot.write_forced` it writes an empty part for a tile without rows (so a
    resumed run knows the tile is done) and no ``_common_metadata`` (the driver writes that
    once, at the end). Locally: temporary file and rename; on S3: one put of the finished
    bytes, so an error while encoding leaves no object behind.
    """
    fs, path = filesystem(part, storage_options)
    return write_partition(fs, path, df, config, [provenance])


def _with_identity(tile: Tile, unit: WorkUnit) -> Tile:
    """``tile`` with band/tract/patch from ``unit`` where its headers say nothing.

    Raises
    ------
    TileFormatError
        The headers contradict the tile's path.
    """
    missing = {}
    for name in ("band", "tract", "patch"):
        have, want = getattr(tile, name), getattr(unit, name)
        if have is None:
            missing[name] = want
        elif have != want:
            raise TileFormatError(
                f"{redact_url(unit.url)}: header {name.upper()} = {have!r} but the tile path "
                f"gives {name} {want!r}"
            )
    return dataclasses.replace(tile, **missing) if missing else tile


def is_template(in_band: str) -> bool:
    """True for an in-band source with ``{band}``, ``{tract}`` or ``{patch}`` placeholders."""
    return any(f"{{{k}}}" in in_band for k in ("band", "tract", "patch"))


def in_band_for(in_band: str, unit: WorkUnit) -> str:
    """The in-band catalog of one tile: a template with ``{band}``, ``{tract}``, ``{patch}``
    filled in, else the root, file or glob itself (its rows are then selected by the tile's
    band/tract/patch, pushed down to the scan)."""
    if is_template(in_band):
        return in_band.format(band=unit.band, tract=unit.tract, patch=unit.patch)
    return in_band


#: ``band=…/tract=…/patch=…/`` folders in an in-band file's path.
_IN_BAND_FOLDERS = re.compile(r"(?:^|/)band=([^/]+)/tract=(-?\d+)/patch=(-?\d+)/")


def list_in_band(in_band: str, *, storage_options: StorageOptions = None
                 ) -> dict[str, list[str]] | None:
    """The files of a hive-partitioned in-band root by partition (``band=…/tract=…/patch=…``),
    listed once for the run, so that no task lists the root again; ``None`` for a template, a
    file, a glob, or a root whose files are not all in such folders (tasks then scan it with
    the tile's band/tract/patch pushed down)."""
    if is_template(in_band) or in_band.endswith(".parquet") or has_glob(in_band):
        return None
    fs, path = filesystem(in_band, storage_options)
    if not is_local(in_band):
        fs.invalidate_cache()
    found = sorted(p for p, info in fs.glob(join(path, "**/*.parquet"), detail=True).items()
                   if info.get("type") == "file")
    groups: dict[str, list[str]] = {}
    for p in found:
        m = _IN_BAND_FOLDERS.findall(p)
        if len(m) != 1:
            return None
        band, tract, patch = m[0]
        url = p if is_local(in_band) else fs.unstrip_protocol(p)
        groups.setdefault(partition_path(band, int(tract), int(patch)), []).append(url)
    return groups or None


def measure_unit(unit: WorkUnit, refs: str | Sequence[str], config: ForcedPhotConfig,
                 storage_options: StorageOptions | _Hidden = None, *,
                 resume: bool = False, prune_tract: bool | None = None,
                 in_band: str | None = None, in_band_files: list[str] | None = None
                 ) -> TileResult:
    """Measure one tile and write its part (the Dask task; also callable directly).

    ``refs``: the catalog root, file or glob, or the list of its Parquet files to read
    (:func:`run` lists the catalog once and passes each task the files of its tract).
    ``prune_tract``: read only the tile's tract of the catalog (``None``: when the catalog
    has a ``tract`` column, which costs a footer read; :func:`run` decides once per run).
    ``in_band``: the in-band catalog root, file or template (:func:`in_band_for`) for a
    deblended measurement; ``in_band_files``: the root's files of this tile's partition, when
    the run listed them (:func:`list_in_band`).
    Errors no retry can fix (a malformed tile, a missing file, a bad catalog) return a
    ``"failed"`` result at once; others (network, a dying worker) raise, for Dask to retry.
    """
    options = storage_options.value if isinstance(storage_options, _Hidden) else storage_options
    start = time.perf_counter()
    worker = _worker_address()
    if resume:
        done = part_status(unit.part, config, storage_options=options, in_band=in_band)
        if done is not None:
            return TileResult.of(unit, "skipped", rows=done[0], worker=worker,
                                 seconds=time.perf_counter() - start, provenance=done[1])
    timings: dict[str, float] = {}
    mark = start
    _remove_stale(unit.part, options)
    try:
        read_options = None if is_local(unit.url) else tile_read_options(options)
        tile = _with_identity(read_tile(unit.url, storage_options=read_options), unit)
        mark = _lap(timings, "read", mark)
        if prune_tract is None:
            prune_tract = has_column(refs, "tract", storage_options=options)
        selected = select_refs(refs, tile.wcs, tile.shape,
                               tract=tile.tract if prune_tract else None,
                               storage_options=options)
        mark = _lap(timings, "refs", mark)
        catalog: Any = None if in_band is None else in_band_for(in_band, unit)
        if in_band_files is not None:
            catalog = scan_in_band(in_band_files, storage_options=options) if in_band_files \
                else empty_in_band()
        try:
            df = forced_photometry(tile, selected, config, in_band=catalog,
                                   storage_options=options, in_band_name=redact_url(
                                       in_band_for(in_band, unit)) if in_band else None)
        except MissingReferenceError as err:  # name the reference catalog too
            names = refs if isinstance(refs, str) else (refs[0] if refs else "")
            raise MissingReferenceError(
                f"{err} [references: {redact_url(str(names))}]") from err
        mark = _lap(timings, "measure", mark)
        info = dict(provenance(tile, config, in_band=None if in_band is None
                               else redact_url(in_band)), uri=redact_url(unit.url))
        rows = write_part(df, unit.part, config=config, provenance=info,
                          storage_options=options)
        _lap(timings, "write", mark)
    except _PERMANENT as err:
        return TileResult.of(unit, "failed", error=_reason(err), worker=worker, timings=timings,
                             seconds=time.perf_counter() - start)
    return TileResult.of(unit, "measured", rows=rows, seconds=time.perf_counter() - start,
                         timings=timings, worker=worker, provenance=info)


def _remove_stale(part: str, storage_options: StorageOptions) -> None:
    """Remove the tile's part of an earlier run before measuring it again, so that a tile that
    fails now leaves no old rows behind."""
    fs, path = filesystem(part, storage_options)
    try:
        fs.rm(path)
    except FileNotFoundError:
        pass


def _lap(timings: dict[str, float], name: str, mark: float) -> float:
    now = time.perf_counter()
    timings[name] = round(now - mark, 4)
    return now


def _reason(err: BaseException) -> str:
    text = str(err).strip() or repr(err)
    return f"{type(err).__name__}: {text}"


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):  # not running inside a Dask worker
        return None


# --------------------------------------------------------------------------------------------
# the driver


def run(
    tiles: str | list[str],
    refs: PathLike,
    out: PathLike,
    *,
    config: ForcedPhotConfig | None = None,
    client: Client | None = None,
    storage_options: StorageOptions = None,
    resume: bool = False,
    n_workers: int | None = None,
    processes: bool = True,
    retries: int = 2,
    progress: bool = True,
    in_band: PathLike | None = None,
    clobber: bool = False,
) -> RunSummary:
    """Forced photometry of every tile of a survey, one Dask task per tile.

    Parameters
    ----------
    tiles
        Tile URL template with ``{band}``, ``{tract}``, ``{patch}``
        (``s3://bucket/tiles/{band}/{tract}/{patch}.fits``), a glob, or a list of URLs.
    refs
        Reference catalog: hive-partitioned Parquet root (``tract=…/patch=…``), a file or a
        glob, local or ``s3://``. Its files are listed once, here; each task reads only the
        files of its tract and its tile's sky box.
    out
        Output dataset root, local or ``s3://``: one part per tile under
        ``band=…/tract=…/patch=…/part-0.parquet``, then ``_common_metadata`` and
        ``_manifest.json``.
    config
        Measurement configuration (default :class:`colphot.ForcedPhotConfig`).
    client
        A :class:`distributed.Client` of an existing cluster; by default a ``LocalCluster`` of
        ``n_workers`` single-threaded workers is started and closed at the end.
    storage_options
        fsspec options (``endpoint_url``, ``key``, ``secret``, ...) for every remote URL;
        credentials otherwise come from the usual environment. Never written to the manifest,
        the metadata or logs.
    resume
        Keep tiles whose part exists, reads, and records the same configuration.
    n_workers
        Workers of the default local cluster (default: ``min(2, cpu count)``).
    processes
        Local cluster of processes (default) or threads.
    retries
        Dask retries of a task that raised a transient error (network, storage); also how
        often a finished result lost with its worker is submitted again. (A task running on
        a worker that dies is rescheduled by Dask itself.)
    progress
        Print a progress bar and a closing line to stderr.
    in_band
        In-band catalogs with heavy footprints (``catalogs/in_band.yaml``) for a deblended
        measurement: a template with ``{band}``, ``{tract}``, ``{patch}`` naming each tile's
        Parquet file, or a hive root (``band=…/tract=…/patch=…``), file or glob whose rows the
        tiles' band/tract/patch select. A tile whose references lack in-band rows fails with
        :class:`~colphot.exceptions.MissingReferenceError`.
    clobber
        ``out`` may hold a dataset of another measurement (configuration, table version,
        colphot version, deblended or not): remove its parts first. Without it the run refuses
        such a dataset before measuring anything (:class:`~colphot.exceptions.
        OutputMismatchError` listing the differences), with ``resume`` too.

    Returns
    -------
    RunSummary
        Per-tile status, row counts and timings; failed tiles with URL and reason.

    Raises
    ------
    ValueError
        No tile matches ``tiles``, or two tiles share a band/tract/patch.
    ReferenceCatalogError
        The reference catalog cannot be opened (no file, not Parquet).
    """
    config = config or ForcedPhotConfig()
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    found = find_tiles(tiles, storage_options=storage_options)
    if not found:
        raise ValueError(f"tiles: nothing matches {_redacted(tiles)}")
    units = plan_units(found, out)
    root = absolute_url(out)
    source = refs_source(refs)
    ref_files, prune_tract = _list_catalog(source, storage_options)
    in_band_url = None if in_band is None else absolute_url(in_band)
    out_fs, out_base = filesystem(root, storage_options)
    if not is_local(root):
        out_fs.invalidate_cache()
    prepare_output(out_fs, out_base, config, deblended=in_band_url is not None,
                   overwrite=clobber)
    run_id = f"{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    own = client is None
    cluster = None
    warm = None
    if own:
        from colphot._warmup import WarmUp

        # compile the kernels once, split over processes, while the cluster starts: its
        # workers then load them from numba's cache instead of each compiling them all
        warm = WarmUp(n_workers)
        cluster, client = _local_client(n_workers, processes)
    try:
        if warm is not None:
            warm.wait()
        in_band_groups = None if in_band_url is None else list_in_band(
            in_band_url, storage_options=storage_options)
        results = _map_units(client, units, ref_files, config, storage_options, run_id=run_id,
                             resume=resume, prune_tract=prune_tract, retries=retries,
                             progress=progress, in_band=in_band_url,
                             in_band_groups=in_band_groups)
        n_workers_seen = len(client.scheduler_info().get("workers", {}))
    finally:
        if own:
            client.close()
            cluster.close()
    summary = RunSummary(out=root, manifest=join(root, MANIFEST_NAME), results=results,
                         wall_seconds=time.perf_counter() - t0, run_id=run_id)
    manifest = _manifest(summary, tiles=tiles, refs=source, in_band=in_band_url, config=config,
                         started=started,
                         resume=resume, retries=retries, n_workers=n_workers_seen)
    _write_footer(root, config, results, manifest, storage_options,
                  deblended=in_band_url is not None)
    if progress:
        print(f"colphot run: {summary.n_measured} measured, {summary.n_skipped} skipped, "
              f"{summary.n_failed} failed in {summary.wall_seconds:.1f} s", file=sys.stderr)
    return summary


def _local_client(n_workers: int | None, processes: bool) -> tuple[Any, Client]:
    """The run's own ``LocalCluster`` of ``n_workers`` single-threaded workers, and a client.

    Its worker processes exit by themselves when this process dies (distributed's nanny keeps
    a pipe to each; a SIGKILLed driver takes its workers down within a second). Its nannies
    are kept for the whole run: distributed's ``SpecCluster`` closes a nanny for good when,
    ``distributed.deploy.lost-worker-timeout`` (15 s) after its worker died, no worker of that
    name is registered -- as when the nanny is restarting it after a later death. Workers that
    keep dying (killed, out of memory) would take the nannies with them one by one, and the
    run would then wait forever for tasks no worker is left to run. A nanny restarts its own
    worker; :func:`run` closes the cluster at the end.
    """
    from distributed import Client, LocalCluster
    from distributed.deploy.cluster import Cluster

    n = n_workers or min(2, os.cpu_count() or 1)
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                           dashboard_address="127.0.0.1:0")
    if processes and hasattr(Cluster, "_update_worker_status"):
        base = Cluster._update_worker_status  # the worker table only, no delayed close

        def keep_nannies(op: str, msg: Any) -> None:
            base(cluster, op, msg)

        cluster._update_worker_status = keep_nannies
    return cluster, Client(cluster)


def _list_catalog(source: str, storage_options: StorageOptions) -> tuple[list[str], bool]:
    """The catalog's Parquet files, listed once for the whole run, and whether tasks can
    prune them by tract; fails fast on an unreadable catalog."""
    try:
        files = list_refs(source, storage_options=storage_options)
        # no file listed: a scan of the source itself raises polars' own error naming it
        has_tract = has_column(files or source, "tract", storage_options=storage_options)
    except Exception as err:  # polars has its own error types for missing/invalid sources
        raise ReferenceCatalogError(
            f"refs: cannot read the reference catalog {redact_url(source)} ({_reason(err)})"
        ) from err
    if not files:  # polars found files where the fsspec listing found none
        raise ReferenceCatalogError(
            f"refs: cannot read the reference catalog {redact_url(source)} (no Parquet file "
            "listed)"
        )
    return files, has_tract


def _map_units(client: Client, units: list[WorkUnit], ref_files: list[str],
               config: ForcedPhotConfig, storage_options: StorageOptions, *, run_id: str,
               resume: bool, prune_tract: bool, retries: int, progress: bool,
               in_band: str | None = None,
               in_band_groups: dict[str, list[str]] | None = None) -> list[TileResult]:
    """Submit one task per unit, gather results as they complete, in plan order.

    A result lost before it reached the driver (its worker died after the task finished: Dask
    then recomputes the key, and fetching it can fail) is submitted again, up to ``retries``
    times: tasks are idempotent, the part is simply written again.
    """
    from distributed import as_completed

    hidden = _Hidden(storage_options)
    groups = group_by_tract(ref_files) if prune_tract else None

    def task_refs(unit: WorkUnit) -> list[str]:
        """The catalog files a unit's task reads: those of its tract when the catalog is
        hive-partitioned by tract, else all. A tract without files gets the catalog's first
        file, which polars needs for the schema and then skips by its ``tract`` value: the tile
        has no reference, with the catalog's columns, as a scan of the whole catalog gives."""
        if groups is None:
            return ref_files
        return groups.get(unit.tract) or ref_files[:1]

    pending: dict[Any, WorkUnit] = {}
    attempts: dict[str, int] = {}

    def submit(unit: WorkUnit) -> Any:
        attempts[unit.key] = attempts.get(unit.key, 0) + 1
        key = f"colphot-{unit.band}-{unit.tract}-{unit.patch}-{run_id}-{attempts[unit.key]}"
        future = client.submit(measure_unit, unit, task_refs(unit), config, hidden,
                               resume=resume, prune_tract=prune_tract, in_band=in_band,
                               in_band_files=None if in_band_groups is None
                               else in_band_groups.get(unit.key, []),
                               key=key,
                               retries=retries, pure=False)
        pending[future] = unit
        return future

    bar = _Progress(len(units), enabled=progress)
    done: dict[str, TileResult] = {}
    queue = as_completed([submit(u) for u in units])
    for future in queue:
        unit = pending.pop(future)
        try:
            status = future.status
            if status == "finished":
                result = future.result()
            elif status not in ("error", "cancelled") and attempts[unit.key] <= retries:
                # lost with its worker after it completed ("lost", or pending again while Dask
                # recomputes it): measure it again, as for a result lost on the way
                queue.add(submit(unit))
                continue
            else:  # raised after its retries, lost its workers too often, or was cancelled
                result = TileResult.of(unit, "failed", error=_future_error(future))
        except Exception as err:  # the finished result could not be fetched
            if attempts[unit.key] <= retries:
                queue.add(submit(unit))
                continue
            result = TileResult.of(unit, "failed", error=f"result lost: {_reason(err)}")
        finally:
            future.release()
        done[unit.key] = result
        bar.update(result)
    bar.close()
    return [done[u.key] for u in units]


def _future_error(future: Any) -> str:
    """``"ExceptionType: message"`` of a future that did not finish."""
    try:
        err = future.exception()
    except BaseException as exc:  # a cancelled future raises CancelledError here
        err = exc
    return _reason(err) if err is not None else f"task {future.status}"


class _Progress:
    """A text progress bar on stderr: redrawn in place on a terminal, one line per tile
    otherwise."""

    def __init__(self, total: int, *, enabled: bool, width: int = 24) -> None:
        self.total, self.enabled, self.width = total, enabled, width
        self.count = 0
        self.failed = 0
        self.start = time.perf_counter()
        self.tty = enabled and sys.stderr.isatty()

    def update(self, result: TileResult) -> None:
        self.count += 1
        self.failed += result.status == "failed"
        if not self.enabled:
            return
        filled = self.width * self.count // max(self.total, 1)
        bar = "#" * filled + "-" * (self.width - filled)
        what = f"{result.band}/{result.tract}/{result.patch} {result.status}"
        line = (f"[{bar}] {self.count}/{self.total} tiles, {self.failed} failed, "
                f"{time.perf_counter() - self.start:.0f} s  {what}")
        if self.tty:
            print(f"\r{line:<100}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr, flush=True)


def _redacted(tiles: str | list[str] | Any) -> Any:
    if isinstance(tiles, str | os.PathLike):
        return redact_url(os.fspath(tiles))
    return [redact_url(os.fspath(t)) for t in tiles]


def _manifest(summary: RunSummary, *, tiles: Any, refs: str, in_band: str | None,
              config: ForcedPhotConfig,
              started: datetime, resume: bool, retries: int, n_workers: int) -> dict[str, Any]:
    """The run manifest: inputs, config, execution, counts and per-tile status."""
    from colphot import __version__

    return {
        "colphot_version": __version__,
        "run_id": summary.run_id,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(summary.wall_seconds, 3),
        "inputs": {"tiles": _redacted(tiles), "refs": redact_url(refs),
                   "in_band": None if in_band is None else redact_url(in_band),
                   "out": redact_url(summary.out)},
        "config": config.to_dict(),
        "execution": {"n_workers": n_workers, "retries": retries, "resume": resume},
        "counts": {"tiles": len(summary.results), "measured": summary.n_measured,
                   "skipped": summary.n_skipped, "failed": summary.n_failed,
                   "rows": summary.n_rows},
        "tiles": [r.to_dict() for r in summary.results],
    }


def _write_footer(root: str, config: ForcedPhotConfig, results: list[TileResult],
                  manifest: dict[str, Any], storage_options: StorageOptions, *,
                  deblended: bool = False) -> None:
    """``_common_metadata`` (schema, config, tile provenance) then ``_manifest.json``."""
    fs, base = filesystem(root, storage_options)
    inputs = [r.provenance for r in results if r.provenance is not None]
    write_common_metadata(fs, base, config, inputs, deblended=deblended)
    text = json.dumps(manifest, indent=1, sort_keys=False, default=str)
    put_atomic(fs, join(base, MANIFEST_NAME), text.encode())
