"""The one place that turns a path or URL plus ``storage_options`` into fsspec objects."""

from __future__ import annotations

import os
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from colphot._typing import PathLike, StorageOptions

__all__ = ["filesystem", "is_local", "join", "strip_protocol"]


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
