"""Per-tile reference selection from a hive-partitioned Parquet catalog with Polars lazy scans.

A worker reads only the references its tile needs: hive partitions are pruned by tract (refs
near a patch border may sit in the neighbouring patch's partition, so patches are not pruned
by their number) and a sky box around the tile's footprint is pushed down to the Parquet scan,
where row-group statistics skip whole files and row groups outside it. The scan runs on Polars'
streaming engine, so a catalog larger than memory is fine.

A run lists the catalog's files once (:func:`list_refs`, on the driver) and hands each task the
files of its tile's tract (:func:`group_by_tract`), so no task lists the catalog prefix again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import polars as pl

from colphot._fs import filesystem, is_local, join
from colphot._typing import PathLike, StorageOptions
from colphot.parquet.read import polars_storage_options
from colphot.references.select import tile_footprint
from colphot.runner.plan import absolute_url, has_glob

if TYPE_CHECKING:
    from astropy.wcs import WCS

__all__ = ["DEFAULT_MARGIN", "group_by_tract", "has_column", "list_refs", "refs_source",
           "scan_refs", "select_refs", "sky_box"]

#: Margin added around a tile's footprint before cutting the catalog, degrees (5 arcsec).
DEFAULT_MARGIN = 5.0 / 3600.0

_HIVE_SCHEMA = {"tract": pl.Int64, "patch": pl.Int64}
#: A ``tract=…`` folder in a file's path (a hive partition key, as polars reads it).
_TRACT_FOLDER = re.compile(r"(?:^|/)tract=([^/]*)/")
_INTEGER = re.compile(r"-?\d+")


def refs_source(refs: PathLike) -> str:
    """What :func:`polars.scan_parquet` reads for a catalog root, file or glob.

    A folder (hive root) becomes ``{root}/**/*.parquet``; a ``.parquet`` file or a glob is
    kept.
    """
    text = absolute_url(os.fspath(refs).rstrip("/"))
    if text.endswith(".parquet") or has_glob(text):
        return text
    return join(text, "**/*.parquet")


def list_refs(refs: PathLike, *, storage_options: StorageOptions = None) -> list[str]:
    """The Parquet files of a catalog root, file or glob (see :func:`refs_source`), sorted.

    One fsspec listing (a glob of the source); folders the glob matches are left out. Local
    files are absolute paths, remote ones URLs (``s3://bucket/…``). An empty list when nothing
    matches (a missing root included).
    """
    source = refs_source(refs)
    fs, pattern = filesystem(source, storage_options)
    if not is_local(source):
        fs.invalidate_cache()  # a listing cached before the catalog was uploaded must not hide it
    found = fs.glob(pattern, detail=True)
    files = sorted(path for path, info in found.items() if info.get("type") == "file")
    return files if is_local(source) else [fs.unstrip_protocol(path) for path in files]


def group_by_tract(files: Sequence[str]) -> dict[int, list[str]] | None:
    """The files of a listed catalog (:func:`list_refs`) by the tract of their ``tract=N/``
    folder, in listing order.

    ``None`` unless every file lies in exactly one such folder with an integer value, i.e. for
    a catalog not hive-partitioned by tract (a scan's ``tract`` predicate then does the
    pruning, if the catalog has a ``tract`` column).
    """
    groups: dict[int, list[str]] = {}
    for path in files:
        found = _TRACT_FOLDER.findall(path)
        if len(found) != 1 or not _INTEGER.fullmatch(found[0]):
            return None
        groups.setdefault(int(found[0]), []).append(path)
    return groups


def scan_refs(refs: PathLike | Sequence[str], *, storage_options: StorageOptions = None
              ) -> pl.LazyFrame:
    """A lazy scan of a reference catalog with ``tract``/``patch`` hive partitions.

    Parameters
    ----------
    refs
        Hive root (``…/refs`` holding ``tract=…/patch=…/*.parquet``), a Parquet file or a glob,
        or a list of Parquet files (their ``tract=…/patch=…`` folders still read as hive
        partitions); local or ``s3://``.
    storage_options
        fsspec-style options (``key``, ``secret``, ``endpoint_url``, ...), translated for polars.
    """
    source: str | list[str]
    if isinstance(refs, str | os.PathLike):
        source = refs_source(refs)
        local = is_local(source)
    else:
        source = [os.fspath(path) for path in refs]
        local = all(is_local(path) for path in source)
    options = None if local else polars_storage_options(storage_options)
    return pl.scan_parquet(source, hive_partitioning=True, hive_schema=_HIVE_SCHEMA,
                           storage_options=options)


def has_column(refs: PathLike | Sequence[str], name: str, *,
               storage_options: StorageOptions = None) -> bool:
    """True when the catalog's schema (hive partition keys included) has column ``name``.

    Reads one Parquet footer. The runner asks once per run whether it can prune by tract.
    """
    return name in scan_refs(refs, storage_options=storage_options).collect_schema().names()


def sky_box(ra_min: float, ra_max: float, dec_min: float, dec_max: float) -> pl.Expr:
    """Polars predicate keeping ``coord_ra``/``coord_dec`` (degrees) inside a box.

    ``ra_min > ra_max`` means the box wraps through RA = 0 (``[ra_min, 360) ∪ [0, ra_max]``).
    Reference RAs are taken to lie in [0, 360) degrees.

    >>> str(sky_box(359.0, 1.0, -1.0, 1.0)).count("coord_ra")
    2
    """
    dec = pl.col("coord_dec").is_between(dec_min, dec_max)
    ra = pl.col("coord_ra")
    if ra_min <= ra_max:
        return dec & ra.is_between(ra_min, ra_max)
    return dec & ((ra >= ra_min) | (ra <= ra_max))


def select_refs(
    refs: PathLike | Sequence[str] | pl.LazyFrame,
    wcs: WCS,
    shape: tuple[int, int],
    *,
    tract: int | None = None,
    margin: float = DEFAULT_MARGIN,
    storage_options: StorageOptions = None,
) -> pl.DataFrame:
    """The references in a tile's sky box, read with partition pruning and predicate pushdown.

    Parameters
    ----------
    refs
        Catalog root/file/glob or list of files (see :func:`scan_refs`) or a ready lazy
        frame.
    wcs, shape
        The tile's celestial WCS and ``(ny, nx)`` pixel shape.
    tract
        Keep only the partition ``tract=…``; ``None`` reads every tract. Give it only for a
        catalog with a ``tract`` column or partition key (see :func:`has_column`).
    margin
        Widening of the footprint box, degrees.
    storage_options
        fsspec-style options for remote catalogs.

    Returns
    -------
    polars.DataFrame
        Catalog rows inside the box (a superset of the rows on the tile's pixels, which
        :func:`colphot.forced_photometry` then places exactly), in catalog order.
    """
    lf = refs if isinstance(refs, pl.LazyFrame) else scan_refs(
        refs, storage_options=storage_options)
    ra_min, ra_max, dec_min, dec_max = tile_footprint(wcs, shape, margin=margin)
    predicate = sky_box(ra_min, ra_max, dec_min, dec_max)
    if tract is not None:
        predicate = (pl.col("tract") == tract) & predicate
    return lf.filter(predicate).collect(engine="streaming")
