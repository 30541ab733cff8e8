"""The one place that turns a path or URL plus ``storage_options`` into fsspec objects."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from colphot._typing import PathLike, StorageOptions

__all__ = ["filesystem", "is_local", "join", "put_atomic", "put_url", "strip_protocol"]


def filesystem(url: PathLike, storage_options: StorageOptions = None) -> tuple[Any, str]:
    """Return ``(fs, path)`` for a local path or any fsspec URL (``s3://bucket/key``)."""
    return url_to_fs(os.fspath(url), **(storage_options or {}))


def is_local(url: PathLike) -> bool:
    """True when ``url`` names a local file (a plain path or ``file://``)."""
    protocol = fsspec.utils.get_protocol(os.fspath(url))
    return protocol in ("file", "local")


def join(root: PathLike, *parts: str) -> str:
    """Join URL parts with ``/`` (also for local paths, which accept it)."""
    out = os.fspath(root).rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


def strip_protocol(url: PathLike) -> str:
    """``url`` without its ``protocol://`` prefix."""
    text = os.fspath(url)
    return text.split("://", 1)[1] if "://" in text else text


def put_atomic(fs: Any, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` on ``fs`` so that the file is whole or absent.

    Locally: a temporary file beside ``path``, then a rename (removed again on any error). On
    object stores: one put of the complete bytes (``fs.pipe_file``), which the store applies
    whole or not at all; nothing is streamed, so an error cannot leave a partial object.
    """
    if not isinstance(fs, LocalFileSystem):
        fs.pipe_file(path, data)
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def put_url(url: PathLike, data: bytes, storage_options: StorageOptions = None) -> None:
    """:func:`put_atomic` to a local path or fsspec URL."""
    fs, path = filesystem(url, storage_options)
    put_atomic(fs, path, data)
