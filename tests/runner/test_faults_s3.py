"""colphot.run against an S3 endpoint that misbehaves: a fault-injecting HTTP proxy in front of
moto drops connections mid-response and mid-upload and answers 500/503, by rule.

The proxy (:class:`FaultProxy`) is a threaded ``http.server`` on 127.0.0.1 that forwards every
request to the moto server and, when a :class:`Rule` matches the request's method and path,
injects that rule's fault instead. Dask workers (separate processes) reach it over HTTP like
any S3 endpoint: nothing in s3fs, botocore or Dask is mocked.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import random
import socket
import struct
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
from polars.testing import assert_frame_equal

import colphot
from colphot.runner.run import MANIFEST_NAME

ROW_KEY = ["band", "tract", "patch", "objectId"]

#: Actions of a rule: forward and cut the response halfway through its body (or before any
#: byte of it when the body is empty, e.g. a PUT's: the request took effect, its answer is
#: lost); read half the request body and cut (nothing reaches moto); answer an S3 XML error.
ACTIONS = ("drop_response", "drop_upload", "error")
#: S3 error codes and messages the proxy answers with, by HTTP status.
S3_ERRORS = {500: ("InternalError", "We encountered an internal error. Please try again."),
             503: ("ServiceUnavailable", "Service is unable to handle request.")}
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
               "trailer", "upgrade", "expect", "content-length"}


@dataclasses.dataclass
class Rule:
    """Inject ``action`` into requests whose method is ``method`` (``None``: any) and whose URL
    path (without the query) contains ``path``.

    Which matching requests: the ``nth`` ones (1-based, counted over every request the rule
    matches, faulted or not), else each with probability ``fraction`` (seeded), at most
    ``limit`` times (``None``: unbounded). With neither ``nth`` nor ``fraction``: every one.
    """

    method: str | None
    path: str
    action: str
    status: int = 503
    nth: frozenset[int] | None = None
    fraction: float | None = None
    limit: int | None = None
    seed: int = 0
    matched: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}")
        if self.nth is not None:
            self.nth = frozenset(self.nth)
        self._rng = random.Random(self.seed)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self.path in path

    def fires(self) -> bool:
        """Count one matching request; whether this one is faulted (call under the lock)."""
        self.matched += 1
        if self.limit is not None and self.fired >= self.limit:
            return False
        if self.nth is not None:
            hit = self.matched in self.nth
        elif self.fraction is not None:
            hit = self._rng.random() < self.fraction
        else:
            hit = True
        self.fired += hit
        return hit


class FaultProxy:
    """A fault-injecting HTTP/1.1 proxy on 127.0.0.1 (free port) in front of ``upstream``.

    ``rules`` is consulted in order for each request; the first rule that fires acts (every
    matching rule counts the request). ``log`` holds ``(method, path, action or status)`` of
    every request, in arrival order.
    """

    def __init__(self, upstream: str, rules: list[Rule] | None = None) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.rules = list(rules or [])
        self.log: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30  # an idle keep-alive connection is closed after this

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs=dict(
            poll_interval=0.05), name="fault-proxy", daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def faults(self, action: str | None = None) -> list[tuple[str, str, str]]:
        """Log entries of injected faults (of ``action``)."""
        with self.lock:
            return [e for e in self.log if e[2] in ACTIONS and (action is None or e[2] == action)]

    # -- one request ---------------------------------------------------------------------

    def _pick(self, method: str, path: str) -> Rule | None:
        with self.lock:
            chosen = None
            for rule in self.rules:
                if rule.matches(method, path) and rule.fires() and chosen is None:
                    chosen = rule
            return chosen

    def _record(self, method: str, path: str, what: str) -> None:
        with self.lock:
            self.log.append((method, path, what))

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        method, target = h.command, h.path
        path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
        rule = self._pick(method, path)
        length = int(h.headers.get("Content-Length") or 0)
        if rule is not None and rule.action == "drop_upload" and length:
            h.rfile.read(max(1, length // 2))
            self._record(method, path, rule.action)
            return _abort(h)
        body = _read_body(h, length)
        if rule is not None and rule.action == "error":
            self._record(method, path, rule.action)
            return _send_error(h, rule.status, path)
        status, reason, headers, data = self._forward(method, target, h.headers, body)
        if rule is not None and rule.action == "drop_response":
            self._record(method, path, rule.action)
            if data:
                _send_head(h, status, reason, headers, len(data))
                h.wfile.write(data[: len(data) // 2])
            return _abort(h)
        self._record(method, path, str(status))
        _send_head(h, status, reason, headers, len(data) if method != "HEAD" else None)
        if method != "HEAD":
            h.wfile.write(data)

    def _forward(self, method: str, target: str, headers, body: bytes
                 ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    conn.putheader(name, value)
            if body or method in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()


def _read_body(h: BaseHTTPRequestHandler, length: int) -> bytes:
    if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
        out = bytearray()
        for _ in range(1 << 20):  # bounded: a chunk per iteration
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                break
            out += h.rfile.read(size)
            h.rfile.readline()
        return bytes(out)
    return h.rfile.read(length) if length else b""


def _send_head(h: BaseHTTPRequestHandler, status: int, reason: str,
               headers: list[tuple[str, str]], length: int | None) -> None:
    h.send_response_only(status, reason)
    for name, value in headers:
        if name.lower() not in _HOP_BY_HOP or (length is None and name.lower() ==
                                                "content-length"):
            h.send_header(name, value)
    if length is not None:
        h.send_header("Content-Length", str(length))
    h.end_headers()


def _send_error(h: BaseHTTPRequestHandler, status: int, path: str) -> None:
    code, message = S3_ERRORS[status]
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><Resource>{path}</Resource>"
            f"<RequestId>FAULT{random.getrandbits(32):08X}</RequestId></Error>").encode()
    h.send_response_only(status)
    h.send_header("Content-Type", "application/xml")
    h.send_header("Content-Length", str(len(body)) if h.command != "HEAD" else "0")
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def _abort(h: BaseHTTPRequestHandler) -> None:
    """Cut the connection: a reset (unread data, zero linger), no orderly end of response."""
    h.close_connection = True
    try:
        h.wfile.flush()
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture()
def proxy(s3_endpoint):
    """A :class:`FaultProxy` in front of moto, without rules (tests set ``proxy.rules``)."""
    with FaultProxy(s3_endpoint) as p:
        yield p


@pytest.fixture()
def survey_on_s3(survey, s3_options, s3_bucket):
    """The tiny survey uploaded to ``s3://<bucket>/survey`` (straight to moto): ``(fs, root)``
    with ``fs`` talking to moto directly, never through the proxy."""
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)
    fs.put(survey.root + "/", f"{s3_bucket}/survey", recursive=True)
    fs.invalidate_cache()
    return fs, f"s3://{s3_bucket}/survey"


def _via(proxy: FaultProxy, s3_options: dict, **extra) -> dict:
    return {**s3_options, "endpoint_url": proxy.url, **extra}


class PartWatcher:
    """Lists ``prefix`` on moto every ``interval`` s in a thread and reads every
    ``part-0.parquet`` object it sees (each new ETag once) completely with pyarrow."""

    def __init__(self, fs: s3fs.S3FileSystem, prefix: str, interval: float = 0.05) -> None:
        self.fs, self.prefix, self.interval = fs, prefix, interval
        self.seen: dict[tuple[str, str], int] = {}  # (path, ETag) -> rows
        self.bad: list[str] = []
        self.polls = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="part-watcher", daemon=True)

    def __enter__(self) -> PartWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the part watcher did not stop"

    def _loop(self) -> None:
        end = time.monotonic() + 300  # bounded even if never stopped
        while not self.stop.is_set() and time.monotonic() < end:
            self.poll()
            self.stop.wait(self.interval)

    def poll(self) -> None:
        try:
            self.fs.invalidate_cache()
            found = self.fs.find(self.prefix, detail=True) if self.fs.exists(self.prefix) else {}
        except FileNotFoundError:
            found = {}
        self.polls += 1
        for path, info in found.items():
            if not path.endswith("/part-0.parquet"):
                continue
            key = (path, str(info.get("ETag")))
            if key in self.seen:
                continue
            try:
                data = self.fs.cat_file(path)
                table = pq.read_table(pa.BufferReader(data))
                self.seen[key] = table.num_rows
            except Exception as err:  # a partial object: the assertion names it
                self.bad.append(f"{path} ({info.get('size')} B listed): {err!r}")
                self.seen[key] = -1


def _run(root: str, out: str, options: dict, client, **kwargs):
    return colphot.run(f"{root}/tiles/{{band}}/{{tract}}/{{patch}}.fits", f"{root}/refs", out,
                       client=client, storage_options=options, progress=False, **kwargs)


#: botocore retries bounded for the persistent-fault tests: 2 attempts per request ("standard"
#: mode, the AWS default elsewhere), so a run's outcome is decided in seconds.
FEW_RETRIES = {"config_kwargs": {"retries": {"total_max_attempts": 2, "mode": "standard"}}}
TASK_RETRIES = 2  # colphot.run's default Dask retries


def _manifest(fs: s3fs.S3FileSystem, out: str) -> dict:
    fs.invalidate_cache()
    return json.loads(fs.cat_file(f"{out[5:]}/{MANIFEST_NAME}"))


def _parts(fs: s3fs.S3FileSystem, out: str) -> list[str]:
    fs.invalidate_cache()
    return sorted(fs.glob(f"{out[5:]}/band=*/tract=*/patch=*/part-0.parquet"))


def _rows_without(rows, band: str, patch: int):
    import polars as pl

    return rows.filter(~((pl.col("band") == band) & (pl.col("patch") == patch)))


# --------------------------------------------------------------------------------------------
# the proxy itself


def test_proxy_forwards_and_injects_each_fault(proxy, s3_options, s3_bucket):
    """Each action as a client sees it, through s3fs without botocore or s3fs retries (aiohttp
    still resends an idempotent request once when a reused connection is cut: two faults)."""
    direct = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)
    direct.pipe(f"{s3_bucket}/a/x.bin", b"x" * 10_000)
    opts = _via(proxy, s3_options,
                config_kwargs={"retries": {"mode": "standard", "total_max_attempts": 1}})
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **opts)
    fs.retries = 1  # no s3fs retry either: every fault surfaces
    x, y = f"{s3_bucket}/a/x.bin", f"{s3_bucket}/a/y.bin"
    assert fs.cat_file(x) == b"x" * 10_000
    proxy.rules = [Rule("GET", "/a/x.bin", "drop_response", nth={1}),
                   Rule("GET", "/a/x.bin", "error", status=503, nth={2}),
                   Rule("PUT", "/a/y.bin", "drop_upload", nth={1, 2}),
                   Rule("PUT", "/a/y.bin", "error", status=500, nth={3}),
                   Rule("PUT", "/a/y.bin", "drop_response", nth={4, 5})]
    with pytest.raises(Exception, match="Not enough data to satisfy content length"):
        fs.cat_file(x)
    with pytest.raises(OSError, match="Service is unable to handle request"):
        fs.cat_file(x)
    assert fs.cat_file(x) == b"x" * 10_000  # 3rd: forwarded
    closed = "Connection was closed before we received a valid response"
    with pytest.raises(Exception, match=closed):
        fs.pipe_file(y, b"y" * 10_000)
    assert not direct.exists(y)  # half an upload never reaches moto
    with pytest.raises(OSError, match="internal error"):
        fs.pipe_file(y, b"y" * 10_000)
    assert not direct.exists(y)
    with pytest.raises(Exception, match=closed):
        fs.pipe_file(y, b"y" * 10_000)
    direct.invalidate_cache()
    assert direct.cat_file(y) == b"y" * 10_000  # applied, its answer lost
    fs.pipe_file(y, b"z" * 10)  # 6th: forwarded
    assert direct.cat_file(y) == b"z" * 10
    assert [r.fired for r in proxy.rules] == [1, 1, 2, 1, 2]
    assert [e[2] for e in proxy.faults()] == ["drop_response", "error", "drop_upload",
                                              "drop_upload", "error", "drop_response",
                                              "drop_response"]
    fraction = Rule(None, "/nothing", "error", fraction=0.5, limit=3, seed=1)
    assert sum(fraction.fires() for _ in range(100)) == 3 and fraction.matched == 100


# --------------------------------------------------------------------------------------------
# runs through the proxy


def test_transient_faults_are_absorbed_and_no_partial_part_is_visible(
        survey_on_s3, proxy, s3_options, dask_client, local_rows):
    """The first 2 GETs of tiles cut mid-body, the next 2 answered 503; the first 2 PUTs of
    parts cut mid-upload, the next 2 answered 500, the next 2 applied but their answer cut.
    Default s3fs/botocore retries: every tile measured, rows as without faults, and a
    watcher listing the output every 50 ms never sees a part that does not read whole."""
    fs, root = survey_on_s3
    out = root.rsplit("/", 1)[0] + "/forced"
    proxy.rules = [
        Rule("GET", ".fits", "drop_response", nth={1, 2}),
        Rule("GET", ".fits", "error", status=503, nth={3, 4}),
        Rule("PUT", "/part-0.parquet", "drop_upload", nth={1, 2}),
        Rule("PUT", "/part-0.parquet", "error", status=500, nth={3, 4}),
        Rule("PUT", "/part-0.parquet", "drop_response", nth={5, 6}),
    ]
    with PartWatcher(fs, out[5:]) as watcher:
        summary = _run(root, out, _via(proxy, s3_options), dask_client)
        seen_during_run = dict(watcher.seen)
    assert [r.fired for r in proxy.rules] == [2] * 5, proxy.rules
    assert summary.n_failed == 0, str(summary)
    assert summary.n_measured == 8
    rows = colphot.open_forced(out, storage_options=s3_options).collect().sort(ROW_KEY)
    assert rows.select(ROW_KEY).is_duplicated().sum() == 0
    assert_frame_equal(rows, local_rows)
    assert watcher.bad == []
    assert seen_during_run, "the watcher saw no part while the run went"
    assert watcher.polls >= 3
    watcher.poll()  # the final state too: 8 parts, each whole
    assert watcher.bad == [] and len(_parts(fs, out)) == 8
    manifest = _manifest(fs, out)
    assert manifest["counts"]["measured"] == 8 and manifest["counts"]["failed"] == 0


def test_random_faults_on_every_kind_of_request(survey_on_s3, proxy, s3_options, dask_client,
                                                local_rows):
    """Faults on a seeded fraction of all requests (listings, HEADs, tile and catalog GETs by
    s3fs and polars, PUTs), a bounded number of each kind: the run still equals the clean one."""
    fs, root = survey_on_s3
    out = root.rsplit("/", 1)[0] + "/forced"
    proxy.rules = [
        Rule(None, "/", "drop_response", fraction=0.1, limit=4, seed=11),
        Rule(None, "/", "error", status=503, fraction=0.1, limit=4, seed=12),
        Rule("PUT", "/", "drop_upload", fraction=0.3, limit=2, seed=13),
    ]
    with PartWatcher(fs, out[5:]) as watcher:
        summary = _run(root, out, _via(proxy, s3_options), dask_client)
    assert summary.n_failed == 0, str(summary)
    assert sum(r.fired for r in proxy.rules) >= 6, proxy.rules
    assert watcher.bad == []
    rows = colphot.open_forced(out, storage_options=s3_options).collect().sort(ROW_KEY)
    assert_frame_equal(rows, local_rows)


def _assert_one_failed(summary, fs, out, local_rows, *, band: str, patch: int, reason: str):
    assert summary.n_failed == 1, str(summary)
    assert summary.n_measured == 7
    (failed,) = summary.failed
    assert (failed.band, failed.tract, failed.patch) == (band, 0, patch)
    assert failed.url.endswith(f"/tiles/{band}/0/{patch}.fits")
    assert failed.error and reason in failed.error, failed.error
    assert failed.rows is None and failed.provenance is None
    fs.invalidate_cache()
    assert not fs.exists(failed.part[5:])  # no part, not even a partial one
    assert len(_parts(fs, out)) == 7
    manifest = _manifest(fs, out)
    assert manifest["counts"] == {"tiles": 8, "measured": 7, "skipped": 0, "failed": 1,
                                  "rows": summary.n_rows}
    entries = [t for t in manifest["tiles"] if t["status"] == "failed"]
    assert [(t["url"], t["error"]) for t in entries] == [(failed.url, failed.error)]
    assert "FAILED" in str(summary) and failed.url in str(summary)
    rows = colphot.open_forced(out, storage_options={**FEW_RETRIES, **_direct(fs)}
                               ).collect().sort(ROW_KEY)
    assert_frame_equal(rows, _rows_without(local_rows, band, patch))
    return failed


def _direct(fs: s3fs.S3FileSystem) -> dict:
    return {k: fs.storage_options[k] for k in ("key", "secret", "endpoint_url")}


def test_persistent_read_fault_fails_that_tile_only(survey_on_s3, proxy, s3_options,
                                                    dask_client, local_rows):
    """Every GET of one tile answered 503: that tile fails with the store's reason, no part;
    the 7 others are measured, and the manifest lists the failure."""
    fs, root = survey_on_s3
    out = root.rsplit("/", 1)[0] + "/forced"
    rule = Rule("GET", "/tiles/r/0/2.fits", "error", status=503)
    proxy.rules = [rule]
    summary = _run(root, out, _via(proxy, s3_options, **FEW_RETRIES), dask_client)
    _assert_one_failed(summary, fs, out, local_rows, band="r", patch=2,
                       reason="Service is unable to handle request")
    assert rule.matched >= 2  # botocore retried (and Dask too, once the defect is fixed)


def test_storage_error_reading_a_tile_is_retried_and_not_called_malformed(
        survey_on_s3, proxy, s3_options, dask_client):
    fs, root = survey_on_s3
    rule = Rule("GET", "/tiles/g/0/3.fits", "error", status=503)
    proxy.rules = [rule]
    summary = colphot.run([f"{root}/tiles/g/0/3.fits"], f"{root}/refs", root + "/out",
                          client=dask_client, progress=False,
                          storage_options=_via(proxy, s3_options, **FEW_RETRIES))
    (failed,) = summary.failed
    assert not failed.error.startswith("TileFormatError"), failed.error
    # each Dask attempt: botocore's 2 for the read, 2 for read_tile's probe of the storage
    assert rule.matched == (TASK_RETRIES + 1) * 2 * 2


@pytest.mark.parametrize("action", ["error", "drop_upload"])
def test_persistent_write_fault_fails_that_tile_only(action, survey_on_s3, proxy, s3_options,
                                                     dask_client, local_rows):
    """Every PUT of one part answered 500 (or cut mid-upload): after botocore's and Dask's
    retries that tile fails with the store's reason and has no part; the others are measured."""
    fs, root = survey_on_s3
    out = root.rsplit("/", 1)[0] + "/forced"
    rule = Rule("PUT", "/band=g/tract=0/patch=1/part-0.parquet", action, status=500)
    proxy.rules = [rule]
    summary = _run(root, out, _via(proxy, s3_options, **FEW_RETRIES), dask_client)
    reason = "internal error" if action == "error" else "Connection was closed"
    failed = _assert_one_failed(summary, fs, out, local_rows, band="g", patch=1, reason=reason)
    if action == "error":  # each of the 3 Dask attempts: botocore's 2 attempts
        assert rule.matched == (TASK_RETRIES + 1) * 2
        assert failed.error.startswith("OSError: ")
    else:  # s3fs (5 tries) and aiohttp (once more) resend after a cut connection too
        assert rule.matched >= (TASK_RETRIES + 1) * 2 * 5
        assert failed.error.startswith("ConnectionClosedError: ")
    assert rule.fired == rule.matched
