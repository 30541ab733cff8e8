"""The one place that turns a path or URL plus ``storage_options`` into fsspec objects."""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from colphot._typing import PathLike, StorageOptions

__all__ = ["filesystem", "has_glob", "is_local", "join", "polars_storage_options", "put_atomic",
           "put_url", "redact_url", "strip_protocol"]

_GLOB_CHARS = re.compile(r"[*?\[]")


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


def has_glob(url: str) -> bool:
    """True when the path part of ``url`` holds a glob character (``*``, ``?``, ``[``)."""
    return _GLOB_CHARS.search(strip_protocol(url)) is not None


def redact_url(url: str) -> str:
    """``url`` without a ``user:password@`` part, for manifests and logs."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1", url)


def polars_storage_options(storage_options: StorageOptions) -> dict[str, str] | None:
    """fsspec/s3fs ``storage_options`` in the form polars' object store takes."""
    if not storage_options:
        return None
    out: dict[str, str] = {}
    client = dict(storage_options.get("client_kwargs") or {})
    mapping = {
        "key": "aws_access_key_id", "secret": "aws_secret_access_key",
        "token": "aws_session_token", "endpoint_url": "aws_endpoint_url",
        "region_name": "aws_region",
    }
    for src, dst in mapping.items():
        value = storage_options.get(src, client.get(src))
        if value is not None:
            out[dst] = str(value)
    if storage_options.get("anon"):
        out["aws_skip_signature"] = "true"
    endpoint = out.get("aws_endpoint_url", "")
    if endpoint.startswith("http://"):
        out["aws_allow_http"] = "true"
    out.setdefault("aws_region", "us-east-1")
    return out
