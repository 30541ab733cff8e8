"""Plan a survey run: find the tiles (local or ``s3://``) and pair each with its output part.

A tile list is a URL template with ``{band}``, ``{tract}`` and ``{patch}`` placeholders
(``s3://bucket/tiles/{band}/{tract}/{patch}.fits``), a glob (``root/tiles/*/*/*.fits``, read as
``…/{band}/{tract}/{patch}.fits``), or an explicit list of URLs. Each becomes a
:class:`WorkUnit`: tile URL, band, tract, patch and the output part
``{out}/band=…/tract=…/patch=…/part-0.parquet``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from colphot._fs import filesystem, has_glob, is_local, join, redact_url, strip_protocol
from colphot._typing import PathLike, StorageOptions
from colphot.parquet.write import PART_NAME, partition_path

__all__ = [
    "WorkUnit",
    "absolute_url",
    "expand_tiles",
    "find_tiles",
    "header_identity",
    "parse_tile_url",
    "plan_units",
    "redact_url",
    "template_regex",
]

_FIELDS = ("band", "tract", "patch")
_GROUPS = {"band": r"(?P<band>[^/]+?)", "tract": r"(?P<tract>-?\d+)",
           "patch": r"(?P<patch>-?\d+)"}
_HEADER_BLOCK = 64 * 2**10  # bytes fetched per request when peeking at remote headers
#: ``…/{band}/{tract}/{patch}.fits`` at the end of a path without a template.
_CONVENTION = re.compile(
    r"(?:^|/)(?P<band>[^/]+)/(?P<tract>-?\d+)/(?P<patch>-?\d+)\.fits(?:\.fz)?$")


@dataclass(frozen=True)
class WorkUnit:
    """One tile to measure and where its rows go.

    Attributes
    ----------
    url
        Tile FITS path or URL.
    band, tract, patch
        Identity of the tile, from its URL or, where the URL does not say, its headers
        (:func:`find_tiles`); :func:`plan_units` refuses a tile without all three. The tile's
        headers must agree with it when the tile is measured (see
        :func:`colphot.runner.run.measure_unit`).
    part
        URL of the output Parquet part, ``{out}/band=…/tract=…/patch=…/part-0.parquet``.
    """

    url: str
    band: str
    tract: int
    patch: int
    part: str

    @property
    def key(self) -> str:
        """``band=…/tract=…/patch=…``: the unit's partition folder, unique within a run."""
        return partition_path(self.band, self.tract, self.patch)


def absolute_url(url: PathLike) -> str:
    """``url`` unchanged when remote, else an absolute local path (workers may run elsewhere)."""
    text = os.fspath(url)
    if not is_local(text):
        return text
    return os.path.abspath(strip_protocol(text))


def template_regex(template: str) -> re.Pattern[str]:
    """Regular expression matching the paths a template names, one group per placeholder.

    ``{band}`` matches one path component, ``{tract}``/``{patch}`` integers; glob characters
    in the literal parts keep their glob meaning (``*``, ``**``, ``?``).

    >>> template_regex("t/{band}/{tract}/{patch}.fits").match("t/g/0/3.fits").groupdict()
    {'band': 'g', 'tract': '0', 'patch': '3'}
    """
    pieces = re.split(r"(\{band\}|\{tract\}|\{patch\})", template)
    out = []
    seen: set[str] = set()
    for piece in pieces:
        name = piece[1:-1] if piece in ("{band}", "{tract}", "{patch}") else None
        if name is not None:
            out.append(_GROUPS[name] if name not in seen else f"(?P={name})")
            seen.add(name)
            continue
        escaped = re.escape(piece)
        escaped = escaped.replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        out.append(escaped)
    return re.compile("".join(out) + "$")


def parse_tile_url(url: str, pattern: re.Pattern[str] | None = None
                   ) -> tuple[str | None, int | None, int | None]:
    """``(band, tract, patch)`` from a tile URL, by ``pattern`` or the
    ``…/{band}/{tract}/{patch}.fits`` convention; ``None`` for what neither gives."""
    path = strip_protocol(url)
    match = None
    if pattern is not None:
        match = pattern.search(path)
    if match is None:
        match = _CONVENTION.search(path)
    if match is None:
        return None, None, None
    groups = match.groupdict()
    band = groups.get("band")
    tract = groups.get("tract")
    patch = groups.get("patch")
    return band, None if tract is None else int(tract), None if patch is None else int(patch)


def expand_tiles(tiles: str, *, storage_options: StorageOptions = None) -> list[str]:
    """The tile URLs that a template, glob or plain URL names, sorted.

    A template's placeholders become ``*`` and are globbed with fsspec; a plain URL is
    returned as is (whether it exists is the measuring task's business).
    """
    text = absolute_url(tiles)
    has_fields = any(f"{{{f}}}" in text for f in _FIELDS)
    if not has_fields and not has_glob(text):
        return [text]
    pattern_text = text
    for f in _FIELDS:
        pattern_text = pattern_text.replace(f"{{{f}}}", "*")
    fs, pattern = filesystem(pattern_text, storage_options)
    if not is_local(text):
        fs.invalidate_cache()  # a listing cached before the tiles were uploaded must not hide them
    found = sorted(fs.glob(pattern))
    if is_local(text):
        return [p for p in found if not fs.isdir(p)]
    return [fs.unstrip_protocol(p) for p in found]


def find_tiles(tiles: str | Sequence[PathLike], *, storage_options: StorageOptions = None
               ) -> list[tuple[str, str | None, int | None, int | None]]:
    """Find tiles and parse their identity.

    Parameters
    ----------
    tiles
        A template (``root/tiles/{band}/{tract}/{patch}.fits``), a glob, or a list of
        templates, globs and URLs (local paths or ``s3://``).
    storage_options
        fsspec options for remote URLs.

    Returns
    -------
    list of (url, band, tract, patch)
        Sorted by band, tract, patch and URL, without duplicate URLs. Fields the URL does not
        give are read from the tile's headers (``BAND``/``FILTER``, ``TRACT``, ``PATCH``) and
        stay ``None`` when those do not give them either.
    """
    items: Iterable[PathLike] = [tiles] if isinstance(tiles, str | os.PathLike) else tiles
    found: dict[str, tuple[str, str | None, int | None, int | None]] = {}
    for item in items:
        text = absolute_url(item)
        regex = template_regex(strip_protocol(text)) \
            if any(f"{{{f}}}" in text for f in _FIELDS) else None
        for url in expand_tiles(text, storage_options=storage_options):
            found.setdefault(url, (url, *parse_tile_url(url, regex)))
    for url, band, tract, patch in list(found.values()):
        if band is None or tract is None or patch is None:
            h_band, h_tract, h_patch = header_identity(url, storage_options=storage_options)
            found[url] = (url, band if band is not None else h_band,
                          tract if tract is not None else h_tract,
                          patch if patch is not None else h_patch)
    return sorted(found.values(), key=_sort_key)


def header_identity(url: str, *, storage_options: StorageOptions = None
                    ) -> tuple[str | None, int | None, int | None]:
    """``(band, tract, patch)`` from a tile's headers, read as :func:`colphot.read_tile` reads
    them (:func:`colphot.tile.fits.tile_identity`: the image HDU's header, then the primary).

    Reads only the headers (remote files through fsspec with 64 KiB blocks); a missing or
    unreadable file, or a non-integer ``TRACT``/``PATCH``, gives ``(None, None, None)``, to be
    reported when the tile is measured.
    """
    from astropy.io import fits

    from colphot.tile.fits import tile_identity

    options: dict[str, Any] = {}
    if not is_local(url):
        options = dict(use_fsspec=True, fsspec_kwargs={
            "default_block_size": _HEADER_BLOCK, **(storage_options or {})})
    try:
        with fits.open(strip_protocol(url) if is_local(url) else url, lazy_load_hdus=True,
                       memmap=False, **options) as hdul:
            # a tile without an image HDU is still planned (from its primary header) and
            # then reported as a failed tile, not a failed plan
            return tile_identity(hdul, url, require_image=False)
    except (OSError, ValueError):  # TileFormatError is a ValueError
        return None, None, None


def _sort_key(row: tuple[str, str | None, int | None, int | None]) -> tuple[Any, ...]:
    url, band, tract, patch = row
    return (band or "", -1 if tract is None else tract, -1 if patch is None else patch, url)


def plan_units(tiles: list[tuple[str, str | None, int | None, int | None]], out: PathLike
               ) -> list[WorkUnit]:
    """Work units of found tiles writing under ``out``.

    Raises
    ------
    ValueError
        Two tiles share a band/tract/patch (their parts would overwrite each other), or a
        tile's URL does not give its band, tract and patch.
    """
    root = absolute_url(out)
    units = []
    by_key: dict[str, str] = {}
    for url, band, tract, patch in tiles:
        if band is None or tract is None or patch is None:
            raise ValueError(
                f"tiles: cannot tell band/tract/patch of {redact_url(url)}; name tiles "
                "…/{band}/{tract}/{patch}.fits or give a template with those placeholders"
            )
        key = partition_path(band, tract, patch)
        if key in by_key:
            raise ValueError(
                f"tiles: {redact_url(by_key[key])} and {redact_url(url)} are both {key}"
            )
        by_key[key] = url
        units.append(WorkUnit(url, band, tract, patch, join(root, key, PART_NAME)))
    return units
